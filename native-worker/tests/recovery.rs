//! Failure and recovery against the real services: poison messages, retries, dead letters, and a
//! worker process killed in the middle of a conversion.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Backend, Names, count, drain, media, queue_depth, spawn};
use native_worker::job::{Job, Source};
use native_worker::queue::rabbitmq::QueueNames;
use native_worker::queue::{JobMessage, Route};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

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

/// The worker binary as its own process, configured through the environment.
struct Process {
    child: Child,
    base: String,
}

fn worker_command(names: &Names, temp: &std::path::Path, read_rate: Option<&str>) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mp3conv-worker"));
    let vars = [
        ("INTERNAL_TOKEN", common::TOKEN.to_owned()),
        ("LISTEN", "127.0.0.1:0".to_owned()),
        ("CONCURRENCY", "2".to_owned()),
        ("STORAGE__KIND", "gridfs".to_owned()),
        ("STORAGE__URL", common::mongo_url()),
        ("STORAGE__DATABASE", names.database.clone()),
        ("JOBS__KIND", "mongo".to_owned()),
        ("JOBS__URL", common::mongo_url()),
        ("JOBS__DATABASE", names.database.clone()),
        ("QUEUE__KIND", "rabbitmq".to_owned()),
        ("QUEUE__URL", common::amqp_url()),
        ("QUEUE__PREFIX", names.prefix.clone()),
        ("QUEUE__EXPIRES", "10m".to_owned()),
        ("QUEUE__RETRY_DELAY", "100ms".to_owned()),
        ("CONVERT__TEMP_DIR", temp.display().to_string()),
    ];
    for (key, value) in vars {
        command.env(format!("MP3CONV_WORKER__{key}"), value);
    }
    if let Some(rate) = read_rate {
        command.env("MP3CONV_WORKER__CONVERT__READ_RATE", rate);
    }
    command
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    command
}

async fn start(mut command: Command) -> Process {
    let mut child = command.spawn().expect("the worker binary starts");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("the worker prints its address")
        .unwrap()
        .expect("a line");
    let base = line
        .rsplit_once(' ')
        .map(|(_, url)| url.to_owned())
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    Process { child, base }
}

impl Process {
    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        reqwest::Client::new()
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(common::TOKEN)
            .header(native_worker::OWNER_HEADER, "olivia")
    }

    async fn wait_for(&self, id: &str, condition: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + common::JOB_DEADLINE;
        loop {
            let job: Value = self
                .request(reqwest::Method::GET, &format!("/internal/jobs/{id}"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if condition(&job) {
                return job;
            }
            assert!(Instant::now() < deadline, "job never got there: {job}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_conversion_finishes_the_job_exactly_once_after_restart() {
    let names = Names::new();
    let temp = tempfile::tempdir().unwrap();
    // Read at real time, so the 3 s conversion is surely still running when the kill lands.
    let first = start(worker_command(&names, temp.path(), Some("1"))).await;
    let upload = first
        .request(reqwest::Method::POST, "/internal/jobs")
        .query(&[("filename", "interrupted.mp4")])
        .body(media("mp4"))
        .send()
        .await
        .unwrap();
    assert_eq!(upload.status(), 202);
    let job: Value = upload.json().await.unwrap();
    let id = job["id"].as_str().unwrap().to_owned();
    let converting = first
        .wait_for(&id, |j| {
            j["status"] == "converting" && j["progress"].as_u64().unwrap_or(0) >= 10
        })
        .await;
    assert!(
        converting["progress"].as_u64().unwrap() < 100,
        "{converting}"
    );

    let mut first = first;
    first.child.start_kill().unwrap(); // SIGKILL: no cleanup at all
    first.child.wait().await.unwrap();

    let second = start(worker_command(&names, temp.path(), None)).await;
    let done = second.wait_for(&id, |j| j["announced"] == true).await;
    assert_eq!(done["status"], "done", "{done}");

    // Graceful stop (SIGTERM) of the second worker.
    let pid = second.child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let mut second = second;
    let exit = tokio::time::timeout(Duration::from_secs(30), second.child.wait())
        .await
        .expect("the worker stops on SIGTERM")
        .unwrap();
    assert!(exit.success(), "{exit}");

    let queues = QueueNames::new(&names.prefix);
    let announcements: Vec<Value> = drain(&queues.mp3())
        .await
        .into_iter()
        .map(|(_, b)| b)
        .collect();
    assert_eq!(announcements.len(), 1, "{announcements:?}");
    assert_eq!(announcements[0]["job_id"], id.as_str());
    assert_eq!(announcements[0]["status"], "done");
    assert_eq!(count(&names.database, "mp3s.files").await, 1);
    assert_eq!(count(&names.database, "videos.files").await, 1);
    assert_eq!(queue_depth(&queues.video()).await, 0);
    assert_eq!(queue_depth(&queues.dead()).await, 0);
}
