//! Retention (issue #19): a finished job's video goes at once, its MP3 expires after a period
//! (410 `audio_expired`), its record later; sweepers in several replicas at once remove each
//! file once. Both backends.

#[macro_use]
mod common;

use std::time::{Duration, Instant};

use common::{Backend, JOB_DEADLINE, Stores, TestApp, media, spawn_with};
use native_worker::config::RetentionConfig;
use native_worker::job::{Audio, Bitrate, Job, Source, Status, Track, track_blob_id};
use native_worker::metrics::Removed;
use native_worker::retention::{Change, Stores as SweptStores, Swept, sweep_due};
use serde_json::Value;
use time::OffsetDateTime;

/// The counter of `kind` in `mp3conv_worker_retention_removed_total`.
async fn removed(app: &TestApp, kind: &str) -> u64 {
    let metrics = app.metrics().await;
    let prefix = format!("mp3conv_worker_retention_removed_total{{kind=\"{kind}\"}} ");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map_or(0, |value| value.trim().parse().unwrap())
}

/// Waits until the gauge of `kind` in `mp3conv_worker_stored_bytes` reads `bytes` (the sweep
/// sets it).
async fn wait_for_stored(app: &TestApp, kind: &str, bytes: u64) {
    let prefix = format!("mp3conv_worker_stored_bytes{{kind=\"{kind}\"}} ");
    let deadline = Instant::now() + JOB_DEADLINE;
    loop {
        let metrics = app.metrics().await;
        let now = metrics
            .lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .map(|value| value.trim().parse::<u64>().unwrap());
        if now == Some(bytes) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{kind} stayed {now:?}, not {bytes}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The job's `expires_at`, as a time.
fn expires_at(job: &Value) -> OffsetDateTime {
    let text = job["expires_at"]
        .as_str()
        .unwrap_or_else(|| panic!("no expires_at: {job}"));
    OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).unwrap()
}

/// Asserts `at` is `after` from now, give or take the test's own pace.
fn assert_from_now(at: OffsetDateTime, after: Duration) {
    let now = OffsetDateTime::now_utc();
    let expected = now + after;
    assert!(
        at > expected - Duration::from_secs(60) && at <= expected + Duration::from_secs(1),
        "{at} is not {after:?} from {now}"
    );
}

/// By default a done job's video and a failed job's video are gone as soon as they finish,
/// and both carry the default expiry: 7 days for the MP3, 7 for the failed record.
async fn sources_go_when_conversions_finish(backend: Backend) {
    let app = spawn_with(backend, |_| {}).await;
    let stores = Stores::of(&app).await;
    let done = app.upload_ok("rita", "talk.mp4", media("mp4")).await;
    let failed = app.upload_ok("rita", "silent.mp4", media("no-audio")).await;
    let done = app.settled("rita", &done).await;
    let failed = app.settled("rita", &failed).await;
    assert_eq!(done["status"], "done", "{done}");
    assert_eq!(failed["status"], "failed", "{failed}");
    let week = Duration::from_secs(7 * 24 * 3600);
    for job in [&done, &failed] {
        let video = job["video_id"].as_str().unwrap();
        assert_eq!(stores.videos.size(video).await.unwrap(), None, "{job}");
        assert_from_now(expires_at(job), week);
    }
    assert_eq!(removed(&app, "video").await, 2);
    // The MP3 is untouched and served.
    let mp3 = app.mp3("rita", done["id"].as_str().unwrap()).await;
    assert_eq!(mp3.len() as u64, done["audio"]["size"].as_u64().unwrap());
    // The listing shows when the MP3 goes.
    let listed = app.jobs("rita").await;
    assert!(
        listed["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|job| job.get("expires_at").is_some()),
        "{listed}"
    );
    app.stop().await;
}

/// With sources kept and short periods: the video stays beside the MP3, both go when the MP3
/// expires (the job answers 410 `audio_expired` and stays listed as expired), then the record
/// goes.
async fn an_mp3_expires_then_its_record_goes(backend: Backend) {
    let app = spawn_with(backend, |c| {
        c.retention.keep_sources = true;
        // Long enough to look at the done job before it expires, even on a loaded machine.
        c.retention.audio = Duration::from_secs(4);
        c.retention.expired = Duration::from_secs(2);
        c.retention.sweep_interval = Duration::from_millis(100);
    })
    .await;
    let stores = Stores::of(&app).await;
    let id = app.upload_ok("sam", "talk.mp4", media("mp4")).await;
    let done = app.settled("sam", &id).await;
    assert_eq!(done["status"], "done", "{done}");
    let video = done["video_id"].as_str().unwrap().to_owned();
    let video_bytes = stores.videos.size(&video).await.unwrap().expect("kept");
    assert_eq!(removed(&app, "video").await, 0);
    // Both the kept video and the MP3 count in what is stored.
    wait_for_stored(&app, "video", video_bytes).await;
    wait_for_stored(&app, "mp3", done["audio"]["size"].as_u64().unwrap()).await;

    let expired = app.wait_for("sam", &id, |j| j["status"] == "expired").await;
    // The record changes first, then the files go, then they are counted.
    let deadline = Instant::now() + JOB_DEADLINE;
    while removed(&app, "mp3").await == 0 {
        assert!(Instant::now() < deadline, "the MP3 was never removed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(expired["audio"].is_null(), "{expired}");
    assert!(expires_at(&expired) > expires_at(&done), "{expired}");
    let response = app.audio("sam", &id).await.send().await.unwrap();
    assert_eq!(response.status(), 410);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "audio_expired", "{body}");
    assert_eq!(stores.mp3s.size(&id).await.unwrap(), None);
    assert_eq!(stores.videos.size(&video).await.unwrap(), None);
    assert_eq!(removed(&app, "mp3").await, 1);
    assert_eq!(removed(&app, "video").await, 1);
    wait_for_stored(&app, "video", 0).await;
    wait_for_stored(&app, "mp3", 0).await;
    let listed = app.jobs("sam").await;
    assert_eq!(listed["jobs"][0]["status"], "expired", "{listed}");

    // Then the record goes (counted once its leftovers went too).
    let deadline = Instant::now() + JOB_DEADLINE;
    while removed(&app, "job").await == 0 {
        assert!(Instant::now() < deadline, "the expired record stayed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(app.job("sam", &id).await.status(), 404);
    assert_eq!(app.jobs("sam").await["jobs"], serde_json::json!([]));
    app.stop().await;
}

/// A done job due `due` ago (in the future when negative), with an MP3 and `tracks` track
/// MP3s stored.
async fn done_job(stores: &Stores, owner: &str, tracks: u32, due: time::Duration) -> Job {
    let mut job = Job::new(
        owner.into(),
        Source::link("http://x.test/v.mp4"),
        Bitrate::default(),
    );
    let audio = |id: String| Audio {
        id,
        size: 3,
        duration: 1.0,
        bitrate: Bitrate::default(),
    };
    Stores::put(stores.mp3s.as_ref(), &job.id.to_string(), b"mp3").await;
    job.audio = Some(audio(job.id.to_string()));
    for number in 1..=tracks {
        let id = track_blob_id(job.id, number);
        Stores::put(stores.mp3s.as_ref(), &id, b"trk").await;
        job.tracks.push(Track {
            number,
            title: format!("Part {number}"),
            start: 0.0,
            end: 1.0,
            audio: audio(id),
            crc32: 0,
        });
    }
    job.set_status(Status::Done);
    job.expires_at = Some(whole_seconds_ago(due));
    stores.jobs.insert(&job).await.unwrap();
    job
}

/// Now less `ago`, in whole seconds, as expiries are kept.
fn whole_seconds_ago(ago: time::Duration) -> OffsetDateTime {
    OffsetDateTime::now_utc().replace_nanosecond(0).unwrap() - ago
}

/// One sweep of `stores` at `now` with the default policy: what it did and told.
async fn sweep_at(stores: &Stores, now: OffsetDateTime, removed: &Removed) -> (Swept, Vec<Change>) {
    let stores = SweptStores {
        jobs: stores.jobs.as_ref(),
        videos: stores.videos.as_ref(),
        mp3s: stores.mp3s.as_ref(),
    };
    let mut changes = Vec::new();
    let swept = sweep_due(
        &stores,
        &RetentionConfig::default(),
        now,
        removed,
        |change| changes.push(change),
    )
    .await
    .unwrap();
    (swept, changes)
}

/// Two sweepers (as two replicas' would) at once on hundreds of due jobs, more than one batch:
/// each MP3 is removed and counted once, each due job expires once, each due failed record
/// goes once; what is not due stays. A later sweep removes the expired records.
async fn two_sweepers_remove_each_file_once(backend: Backend) {
    let app = spawn_with(backend, |c| {
        // This test's sweepers are the only ones.
        c.retention.sweep_interval = Duration::from_secs(3600);
    })
    .await;
    let stores = Stores::of(&app).await;
    let minute = time::Duration::minutes(1);
    let mut due = Vec::new();
    for n in 0..260 {
        due.push(done_job(&stores, "tess", n % 3, minute).await);
    }
    let mut later = Vec::new();
    for _ in 0..5 {
        later.push(done_job(&stores, "tess", 1, -time::Duration::hours(1)).await);
    }
    let mut failed = Vec::new();
    for _ in 0..30 {
        let mut job = Job::new(
            "tess".into(),
            Source::link("http://x.test/f.mp4"),
            Bitrate::default(),
        );
        job.fail("link_not_found", "gone");
        job.expires_at = Some(whole_seconds_ago(minute));
        stores.jobs.insert(&job).await.unwrap();
        failed.push(job);
    }
    let files: usize = due.iter().map(|j| 1 + j.tracks.len()).sum();

    let (first, second) = (Removed::default(), Removed::default());
    let now = OffsetDateTime::now_utc();
    let ((a, a_changes), (b, b_changes)) = tokio::join!(
        sweep_at(&stores, now, &first),
        sweep_at(&stores, now, &second)
    );
    assert_eq!(a.expired + b.expired, due.len(), "{a:?} {b:?}");
    assert_eq!(a.deleted + b.deleted, failed.len(), "{a:?} {b:?}");
    assert_eq!(a.files + b.files, files, "{a:?} {b:?}");
    assert_eq!(first.mp3s.get() + second.mp3s.get(), files as u64);
    assert_eq!(first.jobs.get() + second.jobs.get(), failed.len() as u64);
    assert_eq!(
        first.videos.get() + second.videos.get(),
        0,
        "none were kept"
    );
    assert_eq!(a_changes.len() + b_changes.len(), due.len() + failed.len());
    for change in a_changes.iter().chain(&b_changes) {
        match change {
            Change::Expired(job) => {
                assert_eq!(job.status, Status::Expired);
                assert!(job.expires_at.unwrap() > now + time::Duration::days(29));
            }
            Change::Deleted(job) => assert_eq!(job.status, Status::Failed),
        }
    }
    for job in &due {
        let stored = stores.jobs.get(job.id).await.unwrap().unwrap();
        assert_eq!(stored.status, Status::Expired);
        assert!(stored.audio.is_none() && stored.tracks.is_empty());
        assert_eq!(stores.mp3s.size(&job.id.to_string()).await.unwrap(), None);
        for track in &job.tracks {
            assert_eq!(stores.mp3s.size(&track.audio.id).await.unwrap(), None);
        }
    }
    for job in &failed {
        assert!(stores.jobs.get(job.id).await.unwrap().is_none());
    }
    for job in &later {
        assert_eq!(stores.jobs.get(job.id).await.unwrap().unwrap(), *job);
        assert_eq!(
            stores.mp3s.size(&job.tracks[0].audio.id).await.unwrap(),
            Some(3)
        );
    }

    // A month later the expired records are due, and the later MP3s too.
    let (swept, _) = sweep_at(&stores, now + time::Duration::days(31), &Removed::default()).await;
    assert_eq!(
        swept,
        Swept {
            expired: later.len(),
            deleted: due.len(),
            files: later.len() * 2,
        }
    );
    for job in &due {
        assert!(stores.jobs.get(job.id).await.unwrap().is_none());
    }
    app.stop().await;
}

/// Jobs finished before retention existed (no expiry) get their dates once, as a worker
/// starting on the upgraded store gives them; sweeps then treat them as any other.
async fn older_finished_jobs_get_their_dates(backend: Backend) {
    let app = spawn_with(backend, |_| {}).await;
    let stores = Stores::of(&app).await;
    let mut done = done_job(&stores, "old", 0, time::Duration::ZERO).await;
    done.expires_at = None;
    assert!(stores.jobs.save(&done).await.unwrap());
    let mut failed = Job::new(
        "old".into(),
        Source::link("http://x.test/gone.mp4"),
        Bitrate::default(),
    );
    failed.fail("link_not_found", "gone");
    stores.jobs.insert(&failed).await.unwrap();
    let queued = Job::new(
        "old".into(),
        Source::link("http://x.test/later.mp4"),
        Bitrate::default(),
    );
    stores.jobs.insert(&queued).await.unwrap();

    let now = whole_seconds_ago(time::Duration::ZERO);
    let (audio, record) = (time::Duration::days(7), time::Duration::days(3));
    let given = stores
        .jobs
        .backfill_expiry(now + audio, now + record)
        .await
        .unwrap();
    assert_eq!(given, 2);
    let again = stores.jobs.backfill_expiry(now, now).await.unwrap();
    assert_eq!(again, 0, "once only");
    let jobs = stores.jobs.as_ref();
    let get = |id| async move { jobs.get(id).await.unwrap().unwrap() };
    assert_eq!(get(done.id).await.expires_at, Some(now + audio));
    assert_eq!(get(failed.id).await.expires_at, Some(now + record));
    assert_eq!(get(queued.id).await.expires_at, None);

    let (swept, _) = sweep_at(
        &stores,
        now + audio + time::Duration::SECOND,
        &Removed::default(),
    )
    .await;
    assert_eq!((swept.expired, swept.deleted), (1, 1), "{swept:?}");
    assert_eq!(get(done.id).await.status, Status::Expired);
    assert!(stores.jobs.get(failed.id).await.unwrap().is_none());
    app.stop().await;
}

on_both_backends!(
    sources_go_when_conversions_finish,
    older_finished_jobs_get_their_dates,
    an_mp3_expires_then_its_record_goes,
    two_sweepers_remove_each_file_once,
);
