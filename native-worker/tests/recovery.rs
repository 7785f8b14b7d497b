//! Failure and recovery against the real services: poison messages, retries, dead letters, and a
//! worker process killed in the middle of a conversion.

mod common;

use std::time::{Duration, Instant};

use common::{Backend, Names, count, drain, media, queue_depth, spawn, start, worker_command};
use native_worker::job::{Job, Source};
use native_worker::queue::rabbitmq::QueueNames;
use native_worker::queue::{JobMessage, MessageExt as _, Route};
use serde_json::Value;

/// Polls `queue` until it yields at least one message.
async fn first_messages(queue: &str) -> Vec<Value> {
    let deadline = Instant::now() + common::JOB_DEADLINE;
    loop {
        let messages: Vec<Value> = drain(queue).await.into_iter().map(|(_, b)| b).collect();
        if !messages.is_empty() {
            return messages;
        }
        assert!(Instant::now() < deadline, "nothing arrived on {queue}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_message_is_dead_lettered() {
    let app = spawn(Backend::Services).await;
    let names = QueueNames::new(&app.names.prefix);
    common::publish_raw(&names.video(), b"{this is not json").await;
    let dead = first_messages(&names.dead()).await;
    assert_eq!(dead, vec![Value::String("{this is not json".into())]);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_keeps_failing_is_retried_then_dead_lettered_and_failed() {
    let app = spawn(Backend::Services).await;
    let names = QueueNames::new(&app.names.prefix);
    // A job whose video never reached storage: every attempt fails the same transient way.
    let job = Job::new(
        "mallory".into(),
        Source::Upload {
            filename: "ghost.mp4".into(),
            content_type: None,
        },
        Default::default(),
    );
    common::insert_job(&app.names.database, &job).await;
    let message = JobMessage::for_job(&job, 1).outgoing(Route::Video, None);
    common::publish_raw(&names.video(), &message.body).await;

    let settled = app.settled("mallory", &job.id.to_string()).await;
    assert_eq!(settled["status"], "failed", "{settled}");
    assert_eq!(settled["error"]["code"], "video_missing");
    assert_eq!(settled["attempts"], 3);
    assert!(
        settled["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("gave up after 3 attempts"),
        "{settled}"
    );
    let dead = first_messages(&names.dead()).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["job_id"], job.id.to_string());
    assert_eq!(dead[0]["attempt"], 3);
    let announced = app.announcements(&job.id.to_string()).await;
    assert_eq!(announced.len(), 1);
    assert_eq!(announced[0]["status"], "failed");
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("mp3conv_worker_retries_total 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("mp3conv_worker_dead_lettered_total 1"),
        "{metrics}"
    );
    app.stop().await;
}

/// Sends SIGTERM to `worker` and waits (30 s at most) for a clean exit.
async fn stop_gracefully(mut worker: common::Process) {
    let pid = worker.child.id().unwrap().to_string();
    let signalled = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(signalled.success());
    let exit = tokio::time::timeout(Duration::from_secs(30), worker.child.wait())
        .await
        .expect("the worker stops within its grace period")
        .unwrap();
    assert!(exit.success(), "{exit}");
}

/// Asserts what one done job `id` left in `names`' services: one announcement of it, one MP3,
/// and nothing on the `video` queue or in its dead letters.
async fn settled_once(names: &Names, id: &str) {
    let queues = QueueNames::new(&names.prefix);
    let announcements: Vec<Value> = drain(&queues.mp3())
        .await
        .into_iter()
        .map(|(_, b)| b)
        .collect();
    assert_eq!(announcements.len(), 1, "{announcements:?}");
    assert_eq!(announcements[0]["job_id"], id);
    assert_eq!(announcements[0]["status"], "done");
    assert_eq!(count(&names.database, "mp3s.files").await, 1);
    assert_eq!(queue_depth(&queues.video()).await, 0);
    assert_eq!(queue_depth(&queues.dead()).await, 0);
}

/// Uploads a 3 s video as `filename` to `worker` (reading at real time) and waits until its
/// conversion is past 10% and short of `before` percent: the job's id.
async fn converting_upload(worker: &common::Process, filename: &str, before: u64) -> String {
    let upload = worker
        .request(reqwest::Method::POST, "/internal/jobs")
        .query(&[("filename", filename)])
        .body(media("mp4"))
        .send()
        .await
        .unwrap();
    assert_eq!(upload.status(), 202);
    let job: Value = upload.json().await.unwrap();
    let id = job["id"].as_str().unwrap().to_owned();
    let converting = worker
        .wait_for(&id, |j| {
            j["status"] == "converting" && j["progress"].as_u64().unwrap_or(0) >= 10
        })
        .await;
    assert!(
        converting["progress"].as_u64().unwrap() < before,
        "{converting}"
    );
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_conversion_finishes_the_job_exactly_once_after_restart() {
    let names = Names::new();
    let temp = tempfile::tempdir().unwrap();
    // Read at real time, so the 3 s conversion is surely still running when the kill lands.
    let first = start(worker_command(&names, temp.path(), Some("1"))).await;
    let id = converting_upload(&first, "interrupted.mp4", 100).await;

    let mut first = first;
    first.child.start_kill().unwrap(); // SIGKILL: no cleanup at all
    first.child.wait().await.unwrap();

    let second = start(worker_command(&names, temp.path(), None)).await;
    let done = second.wait_for(&id, |j| j["announced"] == true).await;
    assert_eq!(done["status"], "done", "{done}");

    // Graceful stop (SIGTERM) of the second worker.
    stop_gracefully(second).await;
    settled_once(&names, &id).await;
    // The finished job's video is gone (retention's default), not stored again.
    assert_eq!(count(&names.database, "videos.files").await, 0);
}

/// SIGTERM in the middle of a conversion: the worker takes no new delivery, finishes the job
/// within its grace period and acknowledges it before it exits, so nothing goes back to the
/// queue for another converter to take up again (the consuming channel stays open for the
/// jobs in hand).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_told_to_stop_finishes_and_settles_its_job() {
    let names = Names::new();
    let temp = tempfile::tempdir().unwrap();
    // Read at real time: the 3 s conversion is still running when SIGTERM lands.
    let worker = start(worker_command(&names, temp.path(), Some("1"))).await;
    let id = converting_upload(&worker, "stopping.mp4", 60).await;

    stop_gracefully(worker).await;
    // Settled before the worker went: no delivery handed back.
    settled_once(&names, &id).await;
}
