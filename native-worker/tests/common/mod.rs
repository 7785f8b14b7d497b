//! Starts the worker on port 0 against real services (or embedded) and talks to it over HTTP.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures::StreamExt;
use lapin::options::{BasicGetOptions, BasicPublishOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use native_worker::config::{JobStoreConfig, QueueKind, StorageConfig};
use native_worker::job::Job;
use native_worker::jobs::JobStore;
use native_worker::queue::memory::MemoryQueue;
use native_worker::queue::rabbitmq::QueueNames;
use native_worker::queue::{JobQueue, Outgoing, Route};
use native_worker::storage::BlobStore;
use native_worker::{Config, OWNER_HEADER, Worker};
use secrecy::SecretString;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Runs `$test(Backend)` once per backend set (`#[macro_use] mod common;`).
#[allow(unused_macros)]
macro_rules! on_both_backends {
    ($($test:ident),* $(,)?) => {$(
        mod $test {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn embedded() {
                super::$test(super::Backend::Embedded).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn services() {
                super::$test(super::Backend::Services).await;
            }
        }
    )*};
}

pub const TOKEN: &str = "test-internal-token-0123456789";
/// How long a job may take to settle in a test before it counts as lost.
pub const JOB_DEADLINE: Duration = Duration::from_secs(60);

pub fn amqp_url() -> String {
    std::env::var("MP3CONV_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

pub fn mongo_url() -> String {
    std::env::var("MP3CONV_TEST_MONGO_URL")
        .unwrap_or_else(|_| "mongodb://127.0.0.1:27217/?directConnection=true".into())
}

/// The pinned yt-dlp that `scripts/services.sh` installs, which resolves video pages.
pub fn ytdlp() -> std::path::PathBuf {
    std::env::var_os("MP3CONV_TEST_YTDLP")
        .expect("MP3CONV_TEST_YTDLP names yt-dlp: eval \"$(scripts/services.sh env)\"")
        .into()
}

/// Which backends a worker uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Local directory, SQLite, in-process queue.
    Embedded,
    /// GridFS, MongoDB jobs, RabbitMQ.
    Services,
}

/// Unique names for one test's queues and database.
#[derive(Clone)]
pub struct Names {
    pub prefix: String,
    pub database: String,
}

impl Names {
    pub fn new() -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        Self {
            prefix: format!("t-{}.", &id[..12]),
            database: format!("worker_test_{}", &id[..12]),
        }
    }
}

/// A config for `backend`, with short retries and links allowed to reach 127.0.0.1.
pub fn config(backend: Backend, names: &Names, dir: &Path) -> Config {
    let mut config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        internal_token: Some(SecretString::from(TOKEN)),
        concurrency: 2,
        shutdown_grace: Duration::from_secs(10),
        ..Config::default()
    };
    config.queue.retry_delay = Duration::from_millis(100);
    config.queue.prefix = names.prefix.clone();
    config.queue.expires = Some(Duration::from_secs(600));
    config.fetch.allow = vec!["127.0.0.1/32".parse().unwrap()];
    config.fetch.pages.ytdlp = ytdlp();
    config.convert.temp_dir = Some(dir.to_path_buf());
    match backend {
        Backend::Embedded => {
            config.storage = StorageConfig::Local {
                dir: dir.join("blobs"),
            };
            config.jobs = JobStoreConfig::Sqlite {
                path: dir.join("jobs.sqlite"),
            };
            config.queue.kind = QueueKind::Memory;
        }
        Backend::Services => {
            let url = SecretString::from(mongo_url());
            config.storage = StorageConfig::Gridfs {
                url: url.clone(),
                database: names.database.clone(),
            };
            config.jobs = JobStoreConfig::Mongo {
                url,
                database: names.database.clone(),
            };
            config.queue.kind = QueueKind::Rabbitmq;
            config.queue.url = SecretString::from(amqp_url());
        }
    }
    config
}

/// A running worker.
pub struct TestApp {
    pub backend: Backend,
    pub base: String,
    pub client: reqwest::Client,
    pub names: Names,
    pub dir: tempfile::TempDir,
    memory: Option<MemoryQueue>,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<Result<(), native_worker::Error>>>,
    seen: Mutex<Vec<Value>>,
}

pub async fn spawn(backend: Backend) -> TestApp {
    spawn_with(backend, |_| {}).await
}

pub async fn spawn_with(backend: Backend, tweak: impl FnOnce(&mut Config)) -> TestApp {
    spawn_named(backend, Names::new(), tweak).await
}

/// A worker on `names`' queues and database (a second process of the same deployment).
pub async fn spawn_named(
    backend: Backend,
    names: Names,
    tweak: impl FnOnce(&mut Config),
) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(backend, &names, dir.path());
    tweak(&mut config);
    let worker = Worker::build(config).await.expect("worker builds");
    let memory = worker.memory_queue().cloned();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let handle = tokio::spawn(worker.run_until_stopped(listener, async move {
        let _ = stopped.await;
    }));
    TestApp {
        backend,
        base,
        client: http_client(),
        names,
        dir,
        memory,
        stop: Some(stop),
        handle: Some(handle),
        seen: Mutex::new(Vec::new()),
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// A request as the gateway makes it, for `owner`.
    pub fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        owner: &str,
    ) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.url(path))
            .bearer_auth(TOKEN)
            .header(OWNER_HEADER, owner)
    }

    pub async fn upload(&self, owner: &str, filename: &str, bytes: Vec<u8>) -> reqwest::Response {
        self.request(reqwest::Method::POST, "/internal/jobs", owner)
            .query(&[("filename", filename)])
            .header("content-type", "application/octet-stream")
            .body(bytes)
            .send()
            .await
            .unwrap()
    }

    /// Uploads and returns the created job id (asserting 202).
    pub async fn upload_ok(&self, owner: &str, filename: &str, bytes: Vec<u8>) -> String {
        let response = self.upload(owner, filename, bytes).await;
        assert_eq!(response.status(), 202, "{}", response.text().await.unwrap());
        let job: Value = response.json().await.unwrap();
        assert_eq!(job["status"], "queued");
        job["id"].as_str().unwrap().to_owned()
    }

    /// How many videos the store holds.
    pub async fn videos(&self) -> u64 {
        match self.backend {
            Backend::Embedded => std::fs::read_dir(self.dir.path().join("blobs/videos"))
                .unwrap()
                .count() as u64,
            Backend::Services => count(&self.names.database, "videos.files").await,
        }
    }

    pub async fn link(&self, owner: &str, url: &str) -> reqwest::Response {
        self.request(reqwest::Method::POST, "/internal/jobs", owner)
            .json(&serde_json::json!({"url": url}))
            .send()
            .await
            .unwrap()
    }

    pub async fn job(&self, owner: &str, id: &str) -> reqwest::Response {
        self.request(reqwest::Method::GET, &format!("/internal/jobs/{id}"), owner)
            .send()
            .await
            .unwrap()
    }

    /// Polls the job until it is done or failed and announced.
    pub async fn settled(&self, owner: &str, id: &str) -> Value {
        self.wait_for(owner, id, |job| job["announced"] == true)
            .await
    }

    /// Polls the job until `condition` holds (fails the test after [`JOB_DEADLINE`]).
    pub async fn wait_for(
        &self,
        owner: &str,
        id: &str,
        condition: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + JOB_DEADLINE;
        loop {
            let response = self.job(owner, id).await;
            assert_eq!(response.status(), 200);
            let job: Value = response.json().await.unwrap();
            if condition(&job) {
                return job;
            }
            assert!(Instant::now() < deadline, "job never got there: {job}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The Prometheus exposition text of `/metrics`.
    pub async fn metrics(&self) -> String {
        let response = self.client.get(self.url("/metrics")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        response.text().await.unwrap()
    }

    /// Announcements (bodies) for `job_id` seen so far on the `mp3` queue.
    pub async fn announcements(&self, job_id: &str) -> Vec<Value> {
        match &self.memory {
            Some(memory) => memory
                .announcements()
                .into_iter()
                .map(|m| serde_json::from_slice::<Value>(&m.body).unwrap())
                .filter(|m| m["job_id"] == job_id)
                .collect(),
            None => {
                let drained = drain(&QueueNames::new(&self.names.prefix).mp3()).await;
                let mut seen = self.seen.lock().unwrap();
                seen.extend(drained.into_iter().map(|(_, body)| body));
                seen.iter()
                    .filter(|m| m["job_id"] == job_id)
                    .cloned()
                    .collect()
            }
        }
    }

    /// Publishes `message` on the `video` queue, as the intake does (a duplicate, say).
    pub async fn publish_video(&self, message: Outgoing) {
        match &self.memory {
            Some(memory) => memory.publish(Route::Video, message).await.unwrap(),
            None => publish_raw(&QueueNames::new(&self.names.prefix).video(), &message.body).await,
        }
    }

    /// Dead-lettered bodies.
    pub async fn dead_letters(&self) -> Vec<Vec<u8>> {
        match &self.memory {
            Some(memory) => memory
                .dead_letters()
                .into_iter()
                .map(|b| b.to_vec())
                .collect(),
            None => drain(&QueueNames::new(&self.names.prefix).dead())
                .await
                .into_iter()
                .map(|(_, body)| serde_json::to_vec(&body).unwrap())
                .collect(),
        }
    }

    pub async fn audio(&self, owner: &str, id: &str) -> reqwest::RequestBuilder {
        self.request(
            reqwest::Method::GET,
            &format!("/internal/jobs/{id}/audio"),
            owner,
        )
    }

    /// The MP3 of `owner`'s job `id`, whole.
    pub async fn mp3(&self, owner: &str, id: &str) -> Vec<u8> {
        body(self.audio(owner, id).await.send().await.unwrap()).await
    }

    /// `owner`'s job list (the first page).
    pub async fn jobs(&self, owner: &str) -> Value {
        let response = self
            .request(reqwest::Method::GET, "/internal/jobs", owner)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    /// Stops the worker and asserts it shut down cleanly.
    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        let result = tokio::time::timeout(Duration::from_secs(30), self.handle.take().unwrap())
            .await
            .expect("worker stops within 30 s")
            .expect("worker task does not panic");
        assert!(result.is_ok(), "worker stopped with {result:?}");
    }
}

/// Takes every message currently on `queue` (acking them); bodies that are not JSON become
/// JSON strings.
pub async fn drain(queue: &str) -> Vec<(BasicProperties, Value)> {
    let connection = Connection::connect(&amqp_url(), ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let mut out = Vec::new();
    while let Some(message) = channel
        .basic_get(queue.into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
    {
        let body = serde_json::from_slice(&message.delivery.data).unwrap_or_else(|_| {
            Value::String(String::from_utf8_lossy(&message.delivery.data).into())
        });
        out.push((message.delivery.properties.clone(), body));
    }
    let _ = connection.close(200, "done".into()).await;
    out
}

/// Number of messages ready on `queue`.
pub async fn queue_depth(queue: &str) -> u32 {
    let connection = Connection::connect(&amqp_url(), ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let declared = channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let _ = connection.close(200, "done".into()).await;
    declared.message_count()
}

/// Publishes raw bytes to `queue` and waits for the broker's confirm.
pub async fn publish_raw(queue: &str, body: &[u8]) {
    let connection = Connection::connect(&amqp_url(), ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    channel.confirm_select(Default::default()).await.unwrap();
    let confirm = channel
        .basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            body,
            BasicProperties::default().with_delivery_mode(2),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(confirm.is_ack());
    let _ = connection.close(200, "done".into()).await;
}

/// The worker's stores, opened beside it (the same SQLite file and directory, or database).
pub struct Stores {
    pub jobs: Box<dyn JobStore>,
    pub videos: Box<dyn BlobStore>,
    pub mp3s: Box<dyn BlobStore>,
}

impl Stores {
    pub async fn of(app: &TestApp) -> Stores {
        use native_worker::jobs::{mongo::MongoJobs, sqlite::SqliteJobs};
        use native_worker::storage::{gridfs::GridFsStore, local::LocalStore};
        match app.backend {
            Backend::Embedded => {
                let dir = app.dir.path();
                Stores {
                    jobs: Box::new(SqliteJobs::open(&dir.join("jobs.sqlite")).await.unwrap()),
                    videos: Box::new(LocalStore::open(dir.join("blobs/videos")).await.unwrap()),
                    mp3s: Box::new(LocalStore::open(dir.join("blobs/mp3s")).await.unwrap()),
                }
            }
            Backend::Services => {
                let client = mongodb::Client::with_uri_str(mongo_url()).await.unwrap();
                let db = client.database(&app.names.database);
                Stores {
                    jobs: Box::new(MongoJobs::open(db.clone()).await.unwrap()),
                    videos: Box::new(GridFsStore::open(db.clone(), "videos").await.unwrap()),
                    mp3s: Box::new(GridFsStore::open(db, "mp3s").await.unwrap()),
                }
            }
        }
    }

    pub async fn put(store: &dyn BlobStore, id: &str, bytes: &[u8]) {
        let body = futures::stream::iter([Ok(bytes::Bytes::copy_from_slice(bytes))]);
        let size = store
            .put(id, "blob", Box::pin(body), u64::MAX)
            .await
            .unwrap();
        assert_eq!(size, bytes.len() as u64);
    }
}

/// A job inserted straight into a test database's `jobs` collection.
pub async fn insert_job(database: &str, job: &Job) {
    let client = mongodb::Client::with_uri_str(mongo_url()).await.unwrap();
    let store = native_worker::jobs::mongo::MongoJobs::open(client.database(database))
        .await
        .unwrap();
    store.insert(job).await.unwrap();
}

/// Counts documents in a collection of a test database.
pub async fn count(database: &str, collection: &str) -> u64 {
    let client = mongodb::Client::with_uri_str(mongo_url()).await.unwrap();
    client
        .database(database)
        .collection::<mongodb::bson::Document>(collection)
        .count_documents(mongodb::bson::doc! {})
        .await
        .unwrap()
}

/// Test media, generated once per test binary with ffmpeg's lavfi sources (3 s, 160x120).
pub fn media(kind: &str) -> Vec<u8> {
    if kind == "truncated" {
        // Cut the index-at-end MP4 in half: its moov atom is gone.
        let whole = media("mp4");
        return whole[..whole.len() / 2].to_vec();
    }
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    static MADE: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    let dir = DIR.get_or_init(|| tempfile::tempdir().unwrap());
    let made = MADE.get_or_init(|| Mutex::new(HashMap::new()));
    let mut made = made.lock().unwrap();
    if let Some(path) = made.get(kind) {
        return std::fs::read(path).unwrap();
    }
    let video = [
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=160x120:rate=10:duration=3",
    ];
    let audio = ["-f", "lavfi", "-i", "sine=frequency=440:duration=3"];
    let h264_aac = [
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
    ];
    // QCIF, the size H.263 (3gp) and RealVideo take.
    let qcif = [
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=176x144:rate=10:duration=3",
    ];
    let (file, args): (&str, Vec<&str>) = match kind {
        "mp4" => ("a.mp4", [&video[..], &audio, &h264_aac].concat()),
        "m4a" => ("a.m4a", [&audio[..], &["-c:a", "aac"]].concat()),
        "mp3" => ("a.mp3", audio.to_vec()),
        "ogg" => ("a.ogg", [&audio[..], &["-c:a", "libvorbis"]].concat()),
        "wav" => ("a.wav", audio.to_vec()),
        "flac" => ("a.flac", audio.to_vec()),
        "aac" => ("a.aac", [&audio[..], &["-c:a", "aac"]].concat()),
        "flv" => ("a.flv", [&qcif[..], &audio].concat()),
        "ts" => ("a.ts", [&qcif[..], &audio].concat()),
        "wmv" => ("a.wmv", [&qcif[..], &audio].concat()),
        "3gp" => (
            "a.3gp",
            [&qcif[..], &audio, &["-c:v", "h263", "-c:a", "aac"]].concat(),
        ),
        // A phone's recording: 8 kHz mono, whose MP3 frames are three times as long.
        "8k.3gp" => (
            "a8k.3gp",
            [
                &qcif[..],
                &[
                    "-f",
                    "lavfi",
                    "-i",
                    "sine=frequency=440:duration=3:sample_rate=8000",
                ],
                &["-c:v", "h263", "-c:a", "aac", "-ac", "1"],
            ]
            .concat(),
        ),
        "rm" => (
            "a.rm",
            [&qcif[..], &audio, &["-c:v", "rv10", "-c:a", "ac3"]].concat(),
        ),
        "nut" => ("a.nut", [&qcif[..], &audio].concat()),
        "au" => ("a.au", audio.to_vec()),
        "dts" => (
            "a.dts",
            [
                &audio[..],
                &["-ar", "48000", "-c:a", "dca", "-strict", "-2"],
            ]
            .concat(),
        ),

        "mp4-faststart" => (
            "b.mp4",
            [&video[..], &audio, &h264_aac, &["-movflags", "+faststart"]].concat(),
        ),
        "webm" => (
            "c.webm",
            [
                &video[..],
                &audio,
                &[
                    "-c:v",
                    "libvpx-vp9",
                    "-deadline",
                    "realtime",
                    "-cpu-used",
                    "8",
                    "-c:a",
                    "libopus",
                ],
            ]
            .concat(),
        ),
        "mkv" => ("d.mkv", [&video[..], &audio, &h264_aac].concat()),
        "mov" => ("e.mov", [&video[..], &audio, &h264_aac].concat()),
        "avi" => (
            "f.avi",
            [&video[..], &audio, &["-c:v", "mpeg4", "-c:a", "libmp3lame"]].concat(),
        ),
        // Frames of 36 megapixels, more than a cover is taken from.
        "huge-frames" => (
            "h.mp4",
            [
                &[
                    "-f",
                    "lavfi",
                    "-i",
                    "testsrc=size=6000x6000:rate=1:duration=3",
                ][..],
                &audio,
                &h264_aac,
            ]
            .concat(),
        ),
        // An MP3 whose cover is a 6000 x 6000 PNG.
        "huge-picture" => (
            "i.mp3",
            [
                &audio[..],
                &["-f", "lavfi", "-i", "color=c=red:size=6000x6000:d=1"],
                &["-map", "0", "-map", "1", "-frames:v", "1", "-c:v", "png"],
                &["-disposition:v", "attached_pic"],
            ]
            .concat(),
        ),
        // 50 ms of sound: shorter than any clip that can be asked for.
        "blip" => (
            "j.wav",
            ["-f", "lavfi", "-i", "sine=frequency=440:duration=0.05"].to_vec(),
        ),
        // A site's thumbnail: one 1280x720 JPEG picture.
        "thumbnail.jpg" => (
            "k.jpg",
            [
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=1280x720:d=1",
                "-frames:v",
                "1",
            ]
            .to_vec(),
        ),
        "no-audio" => (
            "g.mp4",
            [&video[..], &["-c:v", "libx264", "-preset", "ultrafast"]].concat(),
        ),
        other => panic!("no media kind {other}"),
    };
    let path = dir.path().join(file);
    let status = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-y"])
        .args(&args)
        .arg(&path)
        .status()
        .unwrap();
    assert!(status.success(), "ffmpeg could not make {kind}");
    made.insert(kind.into(), path.clone());
    std::fs::read(path).unwrap()
}

/// ffprobe's JSON for the media `bytes`: its `format` and `streams`.
pub fn probe_json(bytes: &[u8]) -> Value {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), bytes).unwrap();
    let output = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-print_format", "json"])
        .args(["-show_format", "-show_streams"])
        .arg(file.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Runs ffprobe on bytes; returns (format name, duration, title tag).
pub fn probe(bytes: &[u8]) -> (String, f64, String) {
    let info = probe_json(bytes);
    let format = &info["format"];
    (
        format["format_name"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        format["duration"].as_str().unwrap().parse().unwrap(),
        format["tags"]["title"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

/// A stand-in for a video link host, on 127.0.0.1 port 0.
pub async fn link_host() -> String {
    use axum::Router;
    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse;
    use axum::routing::get;
    let video = media("mp4-faststart");
    let app = Router::new()
        .route(
            "/clip.mp4",
            get(move || {
                let video = video.clone();
                async move { ([(header::CONTENT_TYPE, "video/mp4")], video) }
            }),
        )
        .route("/missing.mp4", get(|| async { StatusCode::NOT_FOUND }))
        .route(
            "/page.html",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                    "<html><body>not a video</body></html>",
                )
                    .into_response()
            }),
        )
        .route(
            "/to-metadata",
            get(|| async {
                (
                    StatusCode::FOUND,
                    [(header::LOCATION, "http://169.254.169.254/latest/meta-data/")],
                )
            }),
        )
        .route(
            "/to-private-name",
            get(|| async {
                (
                    StatusCode::FOUND,
                    [(header::LOCATION, "http://10.1.2.3/clip.mp4")],
                )
            }),
        );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}

/// Concatenates a response body.
pub async fn body(response: reqwest::Response) -> Vec<u8> {
    let mut out = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    out
}

/// The worker binary as its own process, configured through the environment.
pub struct Process {
    pub child: Child,
    pub base: String,
}

pub fn worker_command(names: &Names, temp: &std::path::Path, read_rate: Option<&str>) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mp3conv-worker"));
    let vars = [
        ("INTERNAL_TOKEN", TOKEN.to_owned()),
        ("LISTEN", "127.0.0.1:0".to_owned()),
        ("CONCURRENCY", "2".to_owned()),
        ("STORAGE__KIND", "gridfs".to_owned()),
        ("STORAGE__URL", mongo_url()),
        ("STORAGE__DATABASE", names.database.clone()),
        ("JOBS__KIND", "mongo".to_owned()),
        ("JOBS__URL", mongo_url()),
        ("JOBS__DATABASE", names.database.clone()),
        ("QUEUE__KIND", "rabbitmq".to_owned()),
        ("QUEUE__URL", amqp_url()),
        ("QUEUE__PREFIX", names.prefix.clone()),
        ("QUEUE__EXPIRES", "10m".to_owned()),
        ("QUEUE__RETRY_DELAY", "100ms".to_owned()),
        ("CONVERT__TEMP_DIR", temp.display().to_string()),
        ("FETCH__PAGES__YTDLP", ytdlp().display().to_string()),
    ];
    for (key, value) in vars {
        command.env(format!("MP3CONV_WORKER__{key}"), value);
    }
    if let Some(rate) = read_rate {
        command.env("MP3CONV_WORKER__CONVERT__READ_RATE", rate);
    }
    command
        // `WORKER_TEST_LOG=info` shows what the worker processes did, to follow a failure.
        .env(
            "RUST_LOG",
            std::env::var("WORKER_TEST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    command
}

pub async fn start(mut command: Command) -> Process {
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
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        http_client()
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .header(native_worker::OWNER_HEADER, "olivia")
    }

    pub async fn wait_for(&self, id: &str, condition: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + JOB_DEADLINE;
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

/// A reqwest client: reqwest is built without a crypto provider of its own (the build links only
/// ring), so the process's is installed first. Idempotent.
/// An answer of the internal API: status, whether it repeats an earlier request's job
/// (`Idempotent-Replayed`), its `Retry-After`, and its JSON.
pub struct Answer {
    pub status: u16,
    pub replayed: bool,
    pub retry_after: Option<u64>,
    pub body: Value,
}

impl Answer {
    /// The job's id, asserting there is a job.
    pub fn id(&self) -> &str {
        self.body["id"]
            .as_str()
            .unwrap_or_else(|| panic!("no job: {}", self.body))
    }

    /// The error's code, if an error.
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or_default()
    }

    /// Sends `request`; its answer.
    pub async fn of(request: reqwest::RequestBuilder) -> Answer {
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers();
        let replayed = headers
            .get("idempotent-replayed")
            .is_some_and(|v| v == "true");
        let retry_after = headers
            .get("retry-after")
            .map(|v| v.to_str().unwrap().parse().unwrap());
        let body = response.json().await.unwrap_or(Value::Null);
        Answer {
            status,
            replayed,
            retry_after,
            body,
        }
    }
}

pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}
