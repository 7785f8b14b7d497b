//! Retention's sweeper (issue #19): how fast expired MP3s go, in each store.
//!
//! In each store (embedded: SQLite and a local directory; the cluster's: MongoDB and GridFS on
//! the test server), [`JOBS`] done jobs whose MP3s expired a minute ago, each with a 16 KiB
//! MP3, are swept by one sweeper, then (stored again) by two at once, as two replicas would.
//! The baseline, in the same run on the same stores, removes the same MP3s and records with
//! the stores' plain deletes, one job after another, with nothing to look up or compare:
//! the least any removal costs. Medians of [`RUNS`] rounds, the three interleaved.
//!
//! Usage: `retention-bench`, with `MP3CONV_TEST_MONGO_URL` set
//! (`eval "$(scripts/services.sh env)"`). `RETENTION_BENCH_STORES=cluster` (or `embedded`)
//! measures one store; `RETENTION_BENCH_RUNS=1` fewer rounds.

use std::time::{Duration, Instant};

use anyhow::Context;
use futures::{StreamExt, TryStreamExt};
use mp3conv_bench::median;
use native_worker::config::RetentionConfig;
use native_worker::job::{Audio, Bitrate, Job, Source, Status};
use native_worker::jobs::JobStore;
use native_worker::metrics::Removed;
use native_worker::retention::{Stores, sweep_due};
use native_worker::storage::BlobStore;
use time::OffsetDateTime;

const JOBS: usize = 10_000;
const RUNS: usize = 3;
const MP3: &[u8] = &[0x55; 16 << 10];
/// Stores written to at once while preparing a round (not measured).
const PREPARING: usize = 32;

struct Backend {
    name: &'static str,
    jobs: Box<dyn JobStore>,
    mp3s: Box<dyn BlobStore>,
    videos: Box<dyn BlobStore>,
    /// Removed after the run: the directory, or the database.
    _dir: Option<tempfile::TempDir>,
    db: Option<mongodb::Database>,
}

async fn embedded() -> anyhow::Result<Backend> {
    use native_worker::jobs::sqlite::SqliteJobs;
    use native_worker::storage::local::LocalStore;
    let dir = tempfile::tempdir()?;
    Ok(Backend {
        name: "embedded (SQLite, local files)",
        jobs: Box::new(SqliteJobs::open(&dir.path().join("jobs.sqlite")).await?),
        mp3s: Box::new(LocalStore::open(dir.path().join("mp3s")).await?),
        videos: Box::new(LocalStore::open(dir.path().join("videos")).await?),
        _dir: Some(dir),
        db: None,
    })
}

async fn cluster() -> anyhow::Result<Backend> {
    use native_worker::jobs::mongo::MongoJobs;
    use native_worker::storage::gridfs::GridFsStore;
    let url = std::env::var("MP3CONV_TEST_MONGO_URL")
        .context("MP3CONV_TEST_MONGO_URL: eval \"$(scripts/services.sh env)\"")?;
    let client = mongodb::Client::with_uri_str(&url).await?;
    // What an interrupted run left.
    for name in client.list_database_names().await? {
        if name.starts_with("retention_bench_") {
            client.database(&name).drop().await?;
        }
    }
    let database = format!("retention_bench_{}", std::process::id());
    let db = client.database(&database);
    db.drop().await?;
    Ok(Backend {
        name: "cluster (MongoDB, GridFS)",
        jobs: Box::new(MongoJobs::open(db.clone()).await?),
        mp3s: Box::new(GridFsStore::open(db.clone(), "mp3s").await?),
        videos: Box::new(GridFsStore::open(db.clone(), "videos").await?),
        _dir: None,
        db: Some(db),
    })
}

/// Stores [`JOBS`] done jobs due a minute ago, each with its MP3.
async fn prepare(backend: &Backend) -> anyhow::Result<Vec<Job>> {
    let due = OffsetDateTime::now_utc().replace_nanosecond(0)? - time::Duration::minutes(1);
    let jobs: Vec<Job> = (0..JOBS)
        .map(|_| {
            Job::new(
                "bench".into(),
                Source::link("http://x.test/v.mp4"),
                Bitrate::default(),
            )
        })
        .collect();
    // GridFS files are written in bulk (one file and one chunk each, as the store reads
    // them): setting up is not what is measured, and one at a time it takes minutes.
    if let Some(db) = &backend.db {
        use mongodb::bson::{Binary, DateTime, doc, spec::BinarySubtype};
        let now = DateTime::now();
        for batch in jobs.chunks(1000) {
            let files = batch.iter().map(|job| {
                doc! {
                    "_id": job.id.to_string(),
                    "length": MP3.len() as i64,
                    "chunkSize": 255 * 1024,
                    "uploadDate": now,
                    "filename": "a.mp3",
                }
            });
            db.collection("mp3s.files").insert_many(files).await?;
            let chunks = batch.iter().map(|job| {
                doc! {
                    "files_id": job.id.to_string(),
                    "n": 0,
                    "data": Binary { subtype: BinarySubtype::Generic, bytes: MP3.to_vec() },
                }
            });
            db.collection("mp3s.chunks").insert_many(chunks).await?;
        }
    }
    futures::stream::iter(jobs)
        .map(|mut job| async {
            let id = job.id.to_string();
            let size = if backend.db.is_some() {
                MP3.len() as u64
            } else {
                let body = futures::stream::iter([Ok(bytes::Bytes::from_static(MP3))]);
                backend
                    .mp3s
                    .put(&id, "a.mp3", Box::pin(body), u64::MAX)
                    .await?
            };
            anyhow::ensure!(backend.mp3s.size(&id).await? == Some(size));
            job.audio = Some(Audio {
                id,
                size,
                duration: 1.0,
                bitrate: Bitrate::default(),
            });
            job.set_status(Status::Done);
            job.expires_at = Some(due);
            backend.jobs.insert(&job).await?;
            anyhow::Ok(job)
        })
        .buffer_unordered(PREPARING)
        .try_collect()
        .await
}

/// One sweep over everything due, by `sweepers` sweepers at once; how long it took. Fails
/// unless each job expired exactly once.
async fn sweep(backend: &Backend, sweepers: usize) -> anyhow::Result<Duration> {
    let stores = Stores {
        jobs: backend.jobs.as_ref(),
        videos: backend.videos.as_ref(),
        mp3s: backend.mp3s.as_ref(),
    };
    let policy = RetentionConfig::default();
    let removed = Removed::default();
    let now = OffsetDateTime::now_utc();
    let started = Instant::now();
    let swept = futures::future::try_join_all(
        (0..sweepers).map(|_| sweep_due(&stores, &policy, now, &removed, |_| {})),
    )
    .await?;
    let took = started.elapsed();
    let expired: usize = swept.iter().map(|s| s.expired).sum();
    anyhow::ensure!(expired == JOBS, "{expired} of {JOBS} expired");
    anyhow::ensure!(removed.mp3s.get() == JOBS as u64, "MP3s counted twice");
    Ok(took)
}

/// The baseline: each job's MP3 and record deleted in turn.
async fn plain_deletes(backend: &Backend, jobs: &[Job]) -> anyhow::Result<Duration> {
    let started = Instant::now();
    for job in jobs {
        backend.mp3s.delete(&job.id.to_string()).await?;
        backend.jobs.delete(job.id).await?;
    }
    Ok(started.elapsed())
}

/// Removes what a sweep left (the expired records) before the next round.
async fn clear(backend: &Backend, jobs: &[Job]) -> anyhow::Result<()> {
    futures::stream::iter(jobs)
        .map(|job| backend.jobs.delete(job.id))
        .buffer_unordered(PREPARING)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}

fn rate(took: Duration) -> String {
    format!("{:.0}", JOBS as f64 / took.as_secs_f64())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    println!(
        "| store | baseline: plain deletes, files/s | one sweeper, files/s (x baseline) | two sweepers at once, files/s (x baseline) |"
    );
    println!("|---|---|---|---|");
    // A store alone, or fewer rounds, on request: the cluster's rounds take many minutes on
    // the test server.
    let stores =
        std::env::var("RETENTION_BENCH_STORES").unwrap_or_else(|_| "embedded,cluster".into());
    let runs: usize = match std::env::var("RETENTION_BENCH_RUNS") {
        Ok(runs) => runs
            .parse()
            .context("RETENTION_BENCH_RUNS: a number of rounds")?,
        Err(_) => RUNS,
    };
    let mut backends = Vec::new();
    for store in stores.split(',').map(str::trim) {
        backends.push(match store {
            "embedded" => embedded().await?,
            "cluster" => cluster().await?,
            other => anyhow::bail!("RETENTION_BENCH_STORES: no store {other:?}"),
        });
    }
    for backend in backends {
        let (mut plain, mut one, mut two) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..runs {
            let jobs = prepare(&backend).await?;
            plain.push(plain_deletes(&backend, &jobs).await?);
            let jobs = prepare(&backend).await?;
            one.push(sweep(&backend, 1).await?);
            clear(&backend, &jobs).await?;
            let jobs = prepare(&backend).await?;
            two.push(sweep(&backend, 2).await?);
            clear(&backend, &jobs).await?;
        }
        let (plain, one, two) = (median(&mut plain), median(&mut one), median(&mut two));
        println!(
            "| {} | {} | {} ({:.2}x) | {} ({:.2}x) |",
            backend.name,
            rate(plain),
            rate(one),
            plain.as_secs_f64() / one.as_secs_f64(),
            rate(two),
            plain.as_secs_f64() / two.as_secs_f64(),
        );
        if let Some(db) = &backend.db {
            db.drop().await?;
        }
    }
    println!();
    println!(
        "{JOBS} expired jobs with a 16 KiB MP3 each per round, medians of {runs} rounds; \
         a ratio above 1 is faster than the baseline."
    );
    Ok(())
}
