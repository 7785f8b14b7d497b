//! A job's life across deliveries and processes: one conversion at a time per job (a lease on
//! the job record), children that die with the worker, and what a crash leaves behind swept on
//! start-up.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use common::{Backend, Names, media, spawn_named, spawn_with, start, worker_command};
use mongodb::bson::{Binary, DateTime, Document, doc, oid::ObjectId, spec::BinarySubtype};
use native_worker::job::{Job, Source};
use native_worker::queue::{JobMessage, MessageExt as _, Route};
use serde_json::Value;

/// Polls `/metrics` until `line` appears (fails after [`common::JOB_DEADLINE`]).
async fn wait_for_metric(app: &common::TestApp, line: &str) -> String {
    let deadline = Instant::now() + common::JOB_DEADLINE;
    loop {
        let metrics = app.metrics().await;
        if metrics.lines().any(|l| l == line) {
            return metrics;
        }
        assert!(
            Instant::now() < deadline,
            "{line} never appeared:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The same job message delivered a second time while the first delivery converts: one
/// ffmpeg run, progress that never goes back, one announcement.
async fn a_duplicate_delivery_never_converts_twice(backend: Backend) {
    // Real-time reading keeps the 3 s clip converting while the duplicate arrives.
    let app = spawn_with(backend, |config| config.convert.read_rate = Some(1.0)).await;
    let id = app.upload_ok("dora", "twice.mp4", media("mp4")).await;
    let converting = app
        .wait_for("dora", &id, |j| {
            j["status"] == "converting" && j["progress"].as_u64().unwrap_or(0) >= 10
        })
        .await;
    let job: Job = serde_json::from_value(converting.clone()).unwrap();
    app.publish_video(JobMessage::for_job(&job, 1).outgoing(Route::Video, None))
        .await;

    let mut last = converting["progress"].as_u64().unwrap();
    let deadline = Instant::now() + common::JOB_DEADLINE;
    loop {
        let job: Value = app.job("dora", &id).await.json().await.unwrap();
        let status = job["status"].as_str().unwrap();
        assert!(matches!(status, "converting" | "done"), "{job}");
        let progress = job["progress"].as_u64().unwrap();
        assert!(progress >= last, "progress went back from {last}: {job}");
        last = progress;
        if job["announced"] == true {
            break;
        }
        assert!(Instant::now() < deadline, "job never got there: {job}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The duplicate comes back once the job is finished, and is only acknowledged.
    let metrics = wait_for_metric(&app, "mp3conv_worker_duplicate_deliveries_total 1").await;
    assert!(
        metrics
            .lines()
            .any(|l| l == "mp3conv_worker_ffmpeg_runs_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.lines().any(
            |l| l.starts_with("mp3conv_worker_deferred_deliveries_total ")
                && l != "mp3conv_worker_deferred_deliveries_total 0"
        ),
        "the duplicate was never put off: {metrics}"
    );
    let announced = app.announcements(&id).await;
    assert_eq!(announced.len(), 1, "{announced:?}");
    assert_eq!(announced[0]["status"], "done");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_delivery_never_converts_twice_embedded() {
    a_duplicate_delivery_never_converts_twice(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_delivery_never_converts_twice_on_services() {
    a_duplicate_delivery_never_converts_twice(Backend::Services).await;
}

/// Pids of the running (not zombie) processes whose parent is `parent` and whose name is
/// `name`.
fn children(parent: u32, name: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": comm may hold spaces, so split around the parentheses.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = &stat[open + 1..close];
        let mut rest = stat[close + 1..].split_whitespace();
        let state = rest.next().unwrap_or("");
        let ppid: u32 = rest.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        if ppid == parent && comm == name && state != "Z" {
            found.push(pid);
        }
    }
    found
}

/// Whether `pid` is still a live (not zombie) process.
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rfind(')')
            .and_then(|close| stat[close + 1..].split_whitespace().next())
            .is_some_and(|state| state != "Z"),
        Err(_) => false,
    }
}

/// The worker's conversion directories in `temp`.
fn job_dirs(temp: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(temp)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("mp3conv-job-"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_takes_its_ffmpeg_along_and_a_restart_sweeps_its_temp_dir() {
    let names = Names::new();
    let temp = tempfile::tempdir().unwrap();
    // A tenth of real time: the 3 s clip converts for 30 s, far past the checks below.
    let first = start(worker_command(&names, temp.path(), Some("0.1"))).await;
    let upload = first
        .request(reqwest::Method::POST, "/internal/jobs")
        .query(&[("filename", "orphaned.mp4")])
        .body(media("mp4"))
        .send()
        .await
        .unwrap();
    assert_eq!(upload.status(), 202);
    let id = upload.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    first
        .wait_for(&id, |j| {
            j["status"] == "converting" && j["progress"].as_u64().unwrap_or(0) >= 1
        })
        .await;
    let worker_pid = first.child.id().unwrap();
    let ffmpeg = children(worker_pid, "ffmpeg");
    assert_eq!(ffmpeg.len(), 1, "one ffmpeg converts");
    let stale = job_dirs(temp.path());
    assert_eq!(stale.len(), 1, "{stale:?}");
    // The binary sets umask 077: what it creates is for its user alone.
    let lock = temp.path().join(&stale[0]).join(".lock");
    let mode = std::fs::metadata(&lock).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "{} is {mode:o}", lock.display());

    let mut first = first;
    first.child.start_kill().unwrap(); // SIGKILL: no cleanup at all
    first.child.wait().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(ffmpeg[0]) {
        assert!(
            Instant::now() < deadline,
            "ffmpeg {} outlived its worker by 5 s",
            ffmpeg[0]
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The next worker on the same temp directory removes what the dead one left, before it
    // takes any work.
    let second = start(worker_command(&names, temp.path(), None)).await;
    let left: Vec<String> = job_dirs(temp.path())
        .into_iter()
        .filter(|d| stale.contains(d))
        .collect();
    assert!(
        left.is_empty(),
        "stale temp dirs survived a restart: {left:?}"
    );
    drop(second);
}

/// A GridFS file document (with one chunk) in `bucket`, uploaded `age` ago.
async fn gridfs_file(db: &mongodb::Database, bucket: &str, id: &str, age: Duration) {
    let uploaded =
        DateTime::from_millis(DateTime::now().timestamp_millis() - age.as_millis() as i64);
    db.collection::<Document>(&format!("{bucket}.files"))
        .insert_one(doc! {
            "_id": id, "length": 4_i64, "chunkSize": 261_120_i32,
            "uploadDate": uploaded, "filename": "x.mp4",
        })
        .await
        .unwrap();
    gridfs_chunk(db, bucket, id, 0, age).await;
}

/// Chunk `n` of file `id` in `bucket`, written `age` ago (its ObjectId carries the time).
async fn gridfs_chunk(db: &mongodb::Database, bucket: &str, id: &str, n: i32, age: Duration) {
    let seconds = (std::time::SystemTime::now() - age)
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as u32;
    let mut bytes = ObjectId::new().bytes();
    bytes[..4].copy_from_slice(&seconds.to_be_bytes());
    db.collection::<Document>(&format!("{bucket}.chunks"))
        .insert_one(doc! {
            "_id": ObjectId::from_bytes(bytes), "files_id": id, "n": n,
            "data": Binary { subtype: BinarySubtype::Generic, bytes: b"abcd".to_vec() },
        })
        .await
        .unwrap();
}

async fn ids(db: &mongodb::Database, collection: &str, field: &str) -> Vec<String> {
    use futures::TryStreamExt;
    let mut ids: Vec<String> = db
        .collection::<Document>(collection)
        .find(doc! {})
        .await
        .unwrap()
        .try_collect::<Vec<Document>>()
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.get_str(field).unwrap().to_owned())
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_removes_old_orphan_gridfs_files_and_keeps_the_rest() {
    let names = Names::new();
    let client = mongodb::Client::with_uri_str(common::mongo_url())
        .await
        .unwrap();
    let db = client.database(&names.database);
    let day = Duration::from_secs(24 * 3600);
    let fresh = Duration::from_secs(60);
    let upload = |name: &str| Source::Upload {
        filename: name.into(),
        content_type: None,
    };
    // A job with its video and MP3: both stay, however old.
    let kept = Job::new("olga".into(), upload("kept.mp4"), Default::default());
    common::insert_job(&names.database, &kept).await;
    gridfs_file(&db, "videos", &kept.video_id, 2 * day).await;
    gridfs_file(&db, "mp3s", &kept.id.to_string(), 2 * day).await;
    // Files of jobs that no longer exist, from two days ago: removed.
    let gone_video = Job::new("olga".into(), upload("a.mp4"), Default::default());
    let gone_mp3 = Job::new("olga".into(), upload("b.mp4"), Default::default());
    gridfs_file(&db, "videos", &gone_video.video_id, 2 * day).await;
    gridfs_file(&db, "mp3s", &gone_mp3.id.to_string(), 2 * day).await;
    // Chunks of an upload that never finished, two days ago: removed.
    let broken = Job::new("olga".into(), upload("c.mp4"), Default::default());
    gridfs_chunk(&db, "videos", &broken.video_id, 0, 2 * day).await;
    // A minute old, without a job: maybe an upload in flight in another replica; it stays.
    let recent = Job::new("olga".into(), upload("d.mp4"), Default::default());
    gridfs_file(&db, "videos", &recent.video_id, fresh).await;
    let in_flight = Job::new("olga".into(), upload("e.mp4"), Default::default());
    gridfs_chunk(&db, "videos", &in_flight.video_id, 0, 2 * day).await;
    gridfs_chunk(&db, "videos", &in_flight.video_id, 1, fresh).await;

    let app = spawn_named(Backend::Services, names.clone(), |_| {}).await;
    // The sweep runs in the background once the worker serves; its end is counted.
    let metrics = wait_for_metric(&app, "mp3conv_worker_gridfs_sweeps_total 1").await;
    assert!(
        metrics
            .lines()
            .any(|l| l == "mp3conv_worker_gridfs_orphans_removed_total 3"),
        "{metrics}"
    );
    let mut videos = vec![
        kept.video_id.clone(),
        recent.video_id.clone(),
        in_flight.video_id.clone(),
    ];
    videos.sort();
    let mut video_files = vec![kept.video_id.clone(), recent.video_id.clone()];
    video_files.sort();
    assert_eq!(ids(&db, "videos.files", "_id").await, video_files);
    assert_eq!(ids(&db, "videos.chunks", "files_id").await, videos);
    assert_eq!(
        ids(&db, "mp3s.files", "_id").await,
        vec![kept.id.to_string()]
    );
    assert_eq!(
        ids(&db, "mp3s.chunks", "files_id").await,
        vec![kept.id.to_string()]
    );
    app.stop().await;
}

/// A new link job of `owner`'s in `store`, leased by holder "a" from now for 30 s.
async fn leased_job(
    store: &dyn native_worker::jobs::JobStore,
    owner: &str,
) -> (Job, time::OffsetDateTime, time::Duration) {
    let job = Job::new(
        owner.into(),
        Source::link("http://example.com/a.mp4"),
        Default::default(),
    );
    store.insert(&job).await.unwrap();
    let now = time::OffsetDateTime::now_utc();
    let ttl = time::Duration::seconds(30);
    assert!(
        store
            .acquire_lease(job.id, "a", now, now + ttl)
            .await
            .unwrap()
    );
    (job, now, ttl)
}

/// What the converter relies on from a job store's lease: one holder at a time, taken over only
/// after it expires, untouched by saves.
async fn lease_contract(store: &dyn native_worker::jobs::JobStore) {
    let (job, now, ttl) = leased_job(store, "lena").await;
    assert!(
        !store
            .acquire_lease(job.id, "b", now, now + ttl)
            .await
            .unwrap()
    );
    assert!(
        store
            .acquire_lease(job.id, "a", now, now + ttl)
            .await
            .unwrap()
    );
    assert!(store.save(&job).await.unwrap());
    assert!(
        !store
            .acquire_lease(job.id, "b", now, now + ttl)
            .await
            .unwrap(),
        "a save dropped the lease"
    );
    assert!(store.renew_lease(job.id, "a", now + ttl).await.unwrap());
    // Expired: another takes it over and the old holder can no longer renew or release it.
    let later = now + ttl + time::Duration::seconds(1);
    assert!(
        store
            .acquire_lease(job.id, "b", later, later + ttl)
            .await
            .unwrap()
    );
    assert!(!store.renew_lease(job.id, "a", later + ttl).await.unwrap());
    store.release_lease(job.id, "a").await.unwrap();
    assert!(
        !store
            .acquire_lease(job.id, "c", later, later + ttl)
            .await
            .unwrap()
    );
    store.release_lease(job.id, "b").await.unwrap();
    assert!(
        store
            .acquire_lease(job.id, "c", later, later + ttl)
            .await
            .unwrap()
    );
    let missing = native_worker::job::JobId::new();
    assert!(
        !store
            .acquire_lease(missing, "a", now, now + ttl)
            .await
            .unwrap()
    );
    // The lease never shows in the job.
    let stored = store.get(job.id).await.unwrap().unwrap();
    assert_eq!(stored, job);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_leases_are_exclusive_until_they_expire() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = native_worker::jobs::sqlite::SqliteJobs::open(&dir.path().join("jobs.sqlite"))
        .await
        .unwrap();
    lease_contract(&sqlite).await;
    let client = mongodb::Client::with_uri_str(common::mongo_url())
        .await
        .unwrap();
    let mongo =
        native_worker::jobs::mongo::MongoJobs::open(client.database(&Names::new().database))
            .await
            .unwrap();
    lease_contract(&mongo).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_stops_before_the_brokers_consumer_timeout() {
    // The setting under test, shrunk: 4 s, so attempts stop at 3.6 s; a tenth of real time
    // makes the 3 s clip take 30 s. (The default, 30 min, is checked in config.rs.)
    let app = spawn_with(Backend::Services, |config| {
        config.convert.read_rate = Some(0.1);
        config.queue.broker_consumer_timeout = Duration::from_secs(4);
        // Validation wants a download to fit the delivery's time (default checked there too).
        config.fetch.deadline = Duration::from_secs(3);
    })
    .await;
    let started = Instant::now();
    let id = app.upload_ok("tim", "long.mp4", media("mp4")).await;
    let settled = app.settled("tim", &id).await;
    assert_eq!(settled["status"], "failed", "{settled}");
    assert_eq!(settled["error"]["code"], "too_long", "{settled}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(app.announcements(&id).await.len(), 1);
    app.stop().await;
}

/// The jobs collection of a test database.
async fn jobs_collection(database: &str) -> mongodb::Collection<Document> {
    mongodb::Client::with_uri_str(common::mongo_url())
        .await
        .unwrap()
        .database(database)
        .collection("jobs")
}

/// Another converter takes the job's lease over while this one converts (as it may once a
/// stalled converter's lease expired): this one stops at its next renewal, writes nothing and
/// gives the delivery back, so the job still finishes once, announced once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_converter_that_loses_the_lease_stops_and_requeues() {
    // The setting under test, shrunk so that renewals come every second (default checked in
    // config.rs); half of real time makes the 3 s clip take 6 s.
    let app = spawn_with(Backend::Services, |config| {
        config.convert.read_rate = Some(0.5);
        config.lease_ttl = Duration::from_secs(3);
    })
    .await;
    let id = app.upload_ok("lars", "taken.mp4", media("mp4")).await;
    app.wait_for("lars", &id, |j| j["status"] == "converting")
        .await;
    let until = time::OffsetDateTime::now_utc() + time::Duration::seconds(2);
    let taken = jobs_collection(&app.names.database)
        .await
        .update_one(
            doc! {"_id": &id},
            doc! {"$set": {"lease_holder": "thief", "lease_until": (until.unix_timestamp_nanos() / 1_000_000) as i64}},
        )
        .await
        .unwrap();
    assert_eq!(taken.matched_count, 1);

    let settled = app.settled("lars", &id).await;
    assert_eq!(settled["status"], "done", "{settled}");
    let metrics = app.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l == "mp3conv_worker_ffmpeg_runs_total 2"),
        "the first conversion was not stopped and redone: {metrics}"
    );
    assert_eq!(app.announcements(&id).await.len(), 1);
    app.stop().await;
}

/// A job deleted while it converts, noticed by the lease's renewal: the attempt stops and the
/// job's files go too, an MP3 stored just before included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_deleted_under_the_lease_leaves_no_files() {
    let app = spawn_with(Backend::Services, |config| {
        config.convert.read_rate = Some(0.1);
        config.lease_ttl = Duration::from_secs(3);
    })
    .await;
    let id = app.upload_ok("dina", "gone.mp4", media("mp4")).await;
    app.wait_for("dina", &id, |j| j["status"] == "converting")
        .await;
    let db = mongodb::Client::with_uri_str(common::mongo_url())
        .await
        .unwrap()
        .database(&app.names.database);
    // As if the attempt had stored its MP3 and the job's deletion came right after.
    gridfs_file(&db, "mp3s", &id, Duration::ZERO).await;
    let deleted = jobs_collection(&app.names.database)
        .await
        .delete_one(doc! {"_id": &id})
        .await
        .unwrap();
    assert_eq!(deleted.deleted_count, 1);

    // A GridFS delete removes the files document, then the chunks: wait for both.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let videos = ids(&db, "videos.files", "_id").await;
        let mp3s = ids(&db, "mp3s.files", "_id").await;
        let chunks = ids(&db, "mp3s.chunks", "files_id").await;
        if videos.is_empty() && mp3s.is_empty() && chunks.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "files of the deleted job stayed: {videos:?} {mp3s:?} chunks of {chunks:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.stop().await;
}

/// What the converter's fencing and the GridFS sweep rely on from a job store: a save by a
/// converter that no longer holds the lease writes nothing, and existence checks in batches.
async fn fencing_and_batches(store: &dyn native_worker::jobs::JobStore) {
    use native_worker::jobs::Saved;
    let (job, now, ttl) = leased_job(store, "fred").await;
    let mut done = job.clone();
    done.progress = 100;
    assert_eq!(store.save_held(&done, "a").await.unwrap(), Saved::Saved);
    // "a" stalled past its lease and "b" took over.
    let later = now + ttl + time::Duration::seconds(1);
    assert!(
        store
            .acquire_lease(job.id, "b", later, later + ttl)
            .await
            .unwrap()
    );
    let mut stale = done.clone();
    stale.progress = 7;
    assert_eq!(store.save_held(&stale, "a").await.unwrap(), Saved::NotHeld);
    assert_eq!(store.get(job.id).await.unwrap().unwrap(), done);
    let missing = Job::new(
        "fred".into(),
        Source::link("http://example.com/b.mp4"),
        Default::default(),
    );
    assert_eq!(store.save_held(&missing, "a").await.unwrap(), Saved::Gone);

    // More ids than one query takes.
    let mut ids: Vec<native_worker::job::JobId> = (0..native_worker::jobs::EXISTING_BATCH + 20)
        .map(|_| native_worker::job::JobId::new())
        .collect();
    ids.push(job.id);
    let found = store.existing(&ids).await.unwrap();
    assert_eq!(found.into_iter().collect::<Vec<_>>(), vec![job.id]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saves_are_fenced_by_the_lease_and_existence_is_asked_in_batches() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = native_worker::jobs::sqlite::SqliteJobs::open(&dir.path().join("jobs.sqlite"))
        .await
        .unwrap();
    fencing_and_batches(&sqlite).await;
    let client = mongodb::Client::with_uri_str(common::mongo_url())
        .await
        .unwrap();
    let mongo =
        native_worker::jobs::mongo::MongoJobs::open(client.database(&Names::new().database))
            .await
            .unwrap();
    fencing_and_batches(&mongo).await;
}

/// Serves the test clip at `/gated.mp4` on 127.0.0.1 port 0, each response held back until
/// the returned sender sends `true`.
async fn gated_link_host() -> (String, tokio::sync::watch::Sender<bool>) {
    use axum::http::header;
    let (open, opened) = tokio::sync::watch::channel(false);
    let video = media("mp4-faststart");
    let app = axum::Router::new().route(
        "/gated.mp4",
        axum::routing::get(move || {
            let (video, mut opened) = (video.clone(), opened.clone());
            async move {
                let _ = opened.wait_for(|open| *open).await;
                ([(header::CONTENT_TYPE, "video/mp4")], video)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, open)
}

/// A job whose delivery runs out of time while it waits for a conversion slot goes back to
/// the queue and converts later, its attempt unspent; it does not fail as `too_long` (that is
/// only for a conversion that itself outlasts the delivery).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_that_runs_out_waiting_for_a_slot_is_requeued_not_failed() {
    // The settings under test, shrunk: 20 s of consumer timeout gives each delivery 18 s
    // (the 30 min default and the rule are checked in config.rs), and one conversion slot.
    // A quarter of real time makes the 3 s clip convert in 12 s.
    let app = spawn_with(Backend::Services, |config| {
        config.concurrency = 1;
        config.convert.read_rate = Some(0.25);
        config.queue.broker_consumer_timeout = Duration::from_secs(20);
        config.fetch.deadline = Duration::from_secs(15);
    })
    .await;
    let (host, open) = gated_link_host().await;
    // W: a link, received at t = 0; its download is held back.
    let response = app.link("wendy", &format!("{host}/gated.mp4")).await;
    assert_eq!(response.status(), 202);
    let waiting = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.wait_for("wendy", &waiting, |j| j["status"] == "downloading")
        .await;
    // H: an upload received 9 s later takes the free slot and converts until about t = 21,
    // past W's 18 s but within its own (t = 27). The pause is what the test is about: H must
    // outlast W's delivery yet fit its own.
    tokio::time::sleep(Duration::from_secs(9)).await;
    let holding = app.upload_ok("hank", "holds.mp4", media("mp4")).await;
    app.wait_for("hank", &holding, |j| j["status"] == "converting")
        .await;
    // Now W downloads and waits for the slot H holds until after W's delivery ran out.
    open.send(true).unwrap();

    let held = app.settled("hank", &holding).await;
    assert_eq!(held["status"], "done", "{held}");
    let settled = app.settled("wendy", &waiting).await;
    assert_eq!(settled["status"], "done", "{settled}");
    assert_eq!(settled["attempts"], 1, "{settled}");
    assert_eq!(app.announcements(&waiting).await.len(), 1);
    app.stop().await;
}
