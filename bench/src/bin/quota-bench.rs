//! What a user's quota adds to each new job (issue #19), in each store.
//!
//! In each store (embedded: SQLite; the cluster's: MongoDB on the test server), a user with
//! [`HISTORIES`] finished jobs and [`RECENT`] jobs made in the last hour makes [`SAMPLES`] more.
//! Each new job pays the quota's two checks, as intake does: [`quota::admit`] (the user's usage
//! read before anything is stored) and [`quota::confirm`] (the job noted as made, the usage
//! read again). The baseline, in the same run on the same store, is what every new job costs
//! without quotas: storing its record (`JobStore::insert`). The two are timed one after the
//! other for each job; medians and 99th percentiles.
//!
//! Usage: `quota-bench`, with `MP3CONV_TEST_MONGO_URL` set (`eval "$(scripts/services.sh env)"`).

use std::time::{Duration, Instant};

use anyhow::Context;
use mp3conv_contract::quota::Limits;
use native_worker::config::QuotaConfig;
use native_worker::job::{Audio, Bitrate, Job, Source, Status};
use native_worker::jobs::JobStore;
use native_worker::quota;
use time::OffsetDateTime;

/// Finished jobs of the user's, in each round: a light user and a heavy one.
const HISTORIES: [usize; 2] = [100, 1_000];
const RECENT: usize = 50;
const SAMPLES: usize = 400;
const OWNER: &str = "heavy-user";

async fn embedded(dir: &std::path::Path) -> anyhow::Result<Box<dyn JobStore>> {
    use native_worker::jobs::sqlite::SqliteJobs;
    Ok(Box::new(SqliteJobs::open(&dir.join("jobs.sqlite")).await?))
}

async fn cluster() -> anyhow::Result<(Box<dyn JobStore>, mongodb::Database)> {
    use native_worker::jobs::mongo::MongoJobs;
    let url = std::env::var("MP3CONV_TEST_MONGO_URL")
        .context("MP3CONV_TEST_MONGO_URL: eval \"$(scripts/services.sh env)\"")?;
    let client = mongodb::Client::with_uri_str(&url).await?;
    for name in client.list_database_names().await? {
        if name.starts_with("quota_bench_") {
            client.database(&name).drop().await?;
        }
    }
    let db = client.database(&format!("quota_bench_{}", std::process::id()));
    Ok((Box::new(MongoJobs::open(db.clone()).await?), db))
}

fn job() -> Job {
    Job::new(
        OWNER.into(),
        Source::link("http://x.test/v.mp4"),
        Bitrate::default(),
    )
}

/// The user's past: finished jobs with their MP3s, and jobs made in the last hour.
async fn history(jobs: &dyn JobStore, finished: usize) -> anyhow::Result<()> {
    let now = OffsetDateTime::now_utc();
    for n in 0..finished {
        let mut done = job();
        done.audio = Some(Audio {
            id: done.id.to_string(),
            size: 3_000_000 + n as u64,
            duration: 180.0,
            bitrate: Bitrate::default(),
        });
        done.set_status(Status::Done);
        jobs.insert(&done).await?;
        if n < RECENT {
            jobs.note_made(OWNER, done.id, now).await?;
        }
    }
    Ok(())
}

/// Percentile `p` (0-100) of sorted `values`.
fn percentile(values: &[Duration], p: usize) -> Duration {
    values[(values.len() * p / 100).min(values.len() - 1)]
}

fn micros(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

async fn measure(name: &str, jobs: &dyn JobStore, finished: usize) -> anyhow::Result<()> {
    history(jobs, finished).await?;
    // No limit refuses here: the checks run in full whatever the numbers.
    let limits = Limits::default();
    let config = QuotaConfig::default();
    let gate = quota::Gate::default();
    let (mut inserts, mut checks) = (Vec::new(), Vec::new());
    for _ in 0..SAMPLES {
        let new = job();
        let started = Instant::now();
        let now = OffsetDateTime::now_utc();
        quota::admit(jobs, OWNER, &limits, &config, u64::MAX, now).await?;
        let admitted = started.elapsed();
        let started = Instant::now();
        jobs.insert(&new).await?;
        inserts.push(started.elapsed());
        let started = Instant::now();
        quota::confirm(jobs, &gate, &new, &limits, &config, now).await?;
        checks.push(admitted + started.elapsed());
    }
    inserts.sort();
    checks.sort();
    let (base, cost) = (percentile(&inserts, 50), percentile(&checks, 50));
    println!(
        "| {name}, {finished} finished jobs | {} / {} | {} / {} | {:.2}x |",
        micros(base),
        micros(percentile(&inserts, 99)),
        micros(cost),
        micros(percentile(&checks, 99)),
        cost.as_secs_f64() / base.as_secs_f64()
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    println!(
        "A user with 100 or 1,000 finished jobs and {RECENT} made in the last hour makes \
         {SAMPLES} more; each one's quota checks (usage before, note and usage after) against \
         storing its record."
    );
    println!();
    println!(
        "| store | job insert (baseline) p50 / p99 | quota checks p50 / p99 | checks / insert |"
    );
    println!("|---|---|---|---|");
    for finished in HISTORIES {
        let dir = tempfile::tempdir()?;
        measure(
            "embedded (SQLite)",
            embedded(dir.path()).await?.as_ref(),
            finished,
        )
        .await?;
    }
    for finished in HISTORIES {
        let (jobs, db) = cluster().await?;
        let measured = measure("cluster (MongoDB)", jobs.as_ref(), finished).await;
        db.drop().await?;
        measured?;
    }
    Ok(())
}
