//! Intake with conversion options (issue #18), over HTTP against both backend sets: options as
//! upload query parameters, held uploads and their start, the sweeper of abandoned held
//! uploads, and a split job's tracks (one by one and as a ZIP) and their deletion.

#[macro_use]
mod common;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{Backend, JOB_DEADLINE, Stores, TestApp, media, spawn, spawn_named, spawn_with};
use futures::StreamExt;
use mp3conv_contract::event::{Frame, Parser};
use mp3conv_contract::options::Options;
use native_worker::job::{Audio, Bitrate, Job, Source, Status, Track, track_blob_id};
use native_worker::jobs::JobStore;
use native_worker::storage::BlobStore;
use reqwest::Method;
use serde_json::{Value, json};

on_both_backends!(
    upload_query_parameters_are_options,
    a_held_upload_waits_for_its_start,
    a_held_upload_starts_once,
    a_refused_start_leaves_the_upload_held,
    abandoned_held_uploads_are_removed,
    tracks_are_served_one_by_one_and_as_a_zip,
    deleting_a_job_removes_its_tracks,
);

/// The error code and field of an error answer.
async fn refusal(response: reqwest::Response) -> (u16, String, Option<String>) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    assert!(body["error"]["message"].is_string(), "{body}");
    (
        status,
        body["error"]["code"].as_str().unwrap().to_owned(),
        body["error"]["field"].as_str().map(str::to_owned),
    )
}

fn refused(code: &str, field: &str) -> (u16, String, Option<String>) {
    (400, code.to_owned(), Some(field.to_owned()))
}

/// Uploads with `query` (besides the file name); the answer as it came.
async fn upload_with(app: &TestApp, owner: &str, query: &[(&str, &str)]) -> reqwest::Response {
    app.request(Method::POST, "/internal/jobs", owner)
        .query(&[("filename", "clip.mp4")])
        .query(query)
        .header("content-type", "application/octet-stream")
        .body(media("mp4"))
        .send()
        .await
        .unwrap()
}

/// A held upload: its job as answered (202).
async fn upload_held(app: &TestApp, owner: &str) -> Value {
    let response = upload_with(app, owner, &[("hold", "true")]).await;
    assert_eq!(response.status(), 202);
    let job: Value = response.json().await.unwrap();
    assert_eq!(job["held"], true, "{job}");
    assert_eq!(job["status"], "queued");
    job
}

async fn start(
    app: &TestApp,
    owner: &str,
    id: &str,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    app.request(Method::POST, &format!("/internal/jobs/{id}/start"), owner)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
}

/// Ids of the owner's jobs as listed (first page of 100).
async fn listed(app: &TestApp, owner: &str) -> Vec<String> {
    let page: Value = app
        .request(Method::GET, "/internal/jobs", owner)
        .query(&[("limit", "100")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    page["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap().to_owned())
        .collect()
}

fn id_of(job: &Value) -> String {
    job["id"].as_str().unwrap().to_owned()
}

async fn upload_query_parameters_are_options(backend: Backend) {
    let host = common::link_host().await;
    let app = spawn(backend).await;
    let response = upload_with(
        &app,
        "uma",
        &[("bitrate", "320"), ("title", "Hi there"), ("start", "0.5")],
    )
    .await;
    assert_eq!(response.status(), 202);
    let job: Value = response.json().await.unwrap();
    assert_eq!(job["bitrate"], "320", "{job}");
    assert_eq!(job["options"], json!({"title": "Hi there", "start": 0.5}));
    assert!(job.get("held").is_none(), "{job}");

    for (query, expected) in [
        (vec![("speed", "2")], refused("unknown_field", "speed")),
        (
            vec![("bitrate", "999")],
            refused("invalid_bitrate", "bitrate"),
        ),
        (
            vec![("start", "20"), ("end", "10")],
            refused("invalid_option", "end"),
        ),
        (
            vec![("title", "a"), ("title", "b")],
            refused("duplicate_field", "title"),
        ),
        (vec![("hold", "later")], refused("invalid_option", "hold")),
    ] {
        let response = upload_with(&app, "uma", &query).await;
        assert_eq!(refusal(response).await, expected, "{query:?}");
    }

    // A link's options, in its body and its query; each in one place only.
    let url = format!("{host}/clip.mp4");
    let link = app
        .request(Method::POST, "/internal/jobs", "uma")
        .query(&[("title", "From the query")])
        .json(&json!({"url": url, "bitrate": 128}))
        .send()
        .await
        .unwrap();
    assert_eq!(link.status(), 202);
    let link: Value = link.json().await.unwrap();
    assert_eq!(link["bitrate"], "128");
    assert_eq!(link["options"], json!({"title": "From the query"}));
    for (query, body, expected) in [
        (
            vec![("bitrate", "320")],
            json!({"url": url, "bitrate": 128}),
            refused("duplicate_field", "bitrate"),
        ),
        (
            vec![("hold", "true")],
            json!({"url": url}),
            refused("invalid_option", "hold"),
        ),
        (
            vec![],
            json!({"url": url, "normalize": -20}),
            refused("invalid_option", "normalize"),
        ),
    ] {
        let response = app
            .request(Method::POST, "/internal/jobs", "uma")
            .query(&query)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(refusal(response).await, expected, "{body}");
    }

    // Only the two accepted jobs were made.
    let mut ids = listed(&app, "uma").await;
    ids.sort();
    let mut accepted = vec![id_of(&job), id_of(&link)];
    accepted.sort();
    assert_eq!(ids, accepted);
    for id in &accepted {
        assert_eq!(app.settled("uma", id).await["status"], "done");
    }
    app.stop().await;
}

/// A client end of the owner's event stream.
struct Events {
    chunks: futures::stream::BoxStream<'static, reqwest::Result<Bytes>>,
    parser: Parser,
    frames: VecDeque<Frame>,
}

impl Events {
    async fn open(app: &TestApp, owner: &str) -> Events {
        let response = app
            .request(Method::GET, "/internal/events", owner)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        Events {
            chunks: response.bytes_stream().boxed(),
            parser: Parser::new(),
            frames: VecDeque::new(),
        }
    }

    /// Frames up to and including the final event (`job.done` / `job.failed`) of `id`.
    async fn until_final(&mut self, id: &str) -> Vec<Frame> {
        let deadline = Instant::now() + JOB_DEADLINE;
        let mut frames = Vec::new();
        loop {
            while let Some(frame) = self.frames.pop_front() {
                let done = ["job.done", "job.failed"].contains(&frame.event.as_str())
                    && job_of(&frame) == id;
                frames.push(frame);
                if done {
                    return frames;
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let chunk = tokio::time::timeout(left, self.chunks.next())
                .await
                .unwrap_or_else(|_| panic!("no final event for {id}: {frames:?}"))
                .expect("the stream ended")
                .unwrap();
            self.frames.extend(self.parser.feed(&chunk));
        }
    }
}

fn job_of(frame: &Frame) -> String {
    let data: Value = serde_json::from_str(&frame.data).unwrap_or_default();
    data["job"]["id"]
        .as_str()
        .or(data["job_id"].as_str())
        .unwrap_or_default()
        .to_owned()
}

async fn a_held_upload_waits_for_its_start(backend: Backend) {
    let app = spawn(backend).await;
    let mut events = Events::open(&app, "hana").await;
    let held = upload_held(&app, "hana").await;
    let held_id = id_of(&held);
    // A job uploaded after it converts while it waits: the converter runs, the held job is
    // simply not queued. Nothing is heard of the held job meanwhile.
    let other = app.upload_ok("hana", "other.mp4", media("mp4")).await;
    let frames = events.until_final(&other).await;
    assert!(
        frames.iter().all(|f| job_of(f) == other),
        "events while held: {frames:?}"
    );
    assert_eq!(app.settled("hana", &other).await["status"], "done");
    let waiting: Value = app.job("hana", &held_id).await.json().await.unwrap();
    assert_eq!(
        (
            &waiting["status"],
            &waiting["progress"],
            &waiting["attempts"],
            &waiting["held"]
        ),
        (&json!("queued"), &json!(0), &json!(0), &json!(true)),
        "{waiting}"
    );
    assert_eq!(
        listed(&app, "hana").await,
        std::slice::from_ref(&other),
        "held jobs are not listed"
    );
    assert!(app.announcements(&held_id).await.is_empty());

    // Started with its final options: these replace the upload's, the bitrate goes apart.
    let response = start(
        &app,
        "hana",
        &held_id,
        json!({"bitrate": "v2", "title": "Started", "year": 2024}).to_string(),
    )
    .await;
    assert_eq!(response.status(), 202);
    let started: Value = response.json().await.unwrap();
    assert!(started.get("held").is_none(), "{started}");
    assert_eq!(started["status"], "queued");
    assert_eq!(started["bitrate"], "v2");
    assert_eq!(
        started["options"],
        json!({"title": "Started", "year": 2024})
    );
    assert_eq!(started["video_id"], held["video_id"]);

    // Its events: queued first (before any of the converter's), then progress, then done.
    let frames: Vec<Frame> = events
        .until_final(&held_id)
        .await
        .into_iter()
        .filter(|f| job_of(f) == held_id)
        .collect();
    let kinds: Vec<&str> = frames.iter().map(|f| f.event.as_str()).collect();
    assert_eq!(kinds.first(), Some(&"job.queued"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"job.done"), "{kinds:?}");
    assert!(
        kinds[1..kinds.len() - 1]
            .iter()
            .all(|k| *k == "job.progress"),
        "{kinds:?}"
    );
    let job = app.settled("hana", &held_id).await;
    assert_eq!(job["status"], "done", "{job}");
    assert_eq!(job["options"]["title"], "Started");
    assert_eq!(app.announcements(&held_id).await.len(), 1);
    let mut ids = listed(&app, "hana").await;
    ids.sort();
    let mut both = vec![held_id, other];
    both.sort();
    assert_eq!(ids, both);
    app.stop().await;
}

async fn a_held_upload_starts_once(backend: Backend) {
    let app = spawn(backend).await;
    let id = id_of(&upload_held(&app, "sam").await);
    for (owner, job) in [
        ("eve", id.as_str()),
        ("sam", "0192f1a4-7c2b-7d3e-8f00-123456789abc"),
        ("sam", "not-a-job"),
    ] {
        let response = start(&app, owner, job, "{}").await;
        assert_eq!(refusal(response).await.1, "not_found", "{owner} {job}");
    }
    assert_eq!(start(&app, "sam", &id, "{}").await.status(), 202);
    let again = start(&app, "sam", &id, "{}").await;
    assert_eq!(refusal(again).await, (409, "not_held".into(), None));
    // A job uploaded without hold was never held.
    let queued = app.upload_ok("sam", "b.mp4", media("mp4")).await;
    let response = start(&app, "sam", &queued, "{}").await;
    assert_eq!(refusal(response).await, (409, "not_held".into(), None));
    for id in [&id, &queued] {
        let job = app.settled("sam", id).await;
        assert_eq!(job["status"], "done");
        assert_eq!(job["attempts"], 1, "converted once: {job}");
        assert_eq!(app.announcements(id).await.len(), 1);
    }
    app.stop().await;
}

async fn a_refused_start_leaves_the_upload_held(backend: Backend) {
    let app = spawn(backend).await;
    let held = upload_held(&app, "rex").await;
    let id = id_of(&held);
    for (body, expected) in [
        (
            json!({"normalize": -20}).to_string(),
            refused("invalid_option", "normalize"),
        ),
        (
            json!({"speed": 2}).to_string(),
            refused("unknown_field", "speed"),
        ),
        (
            json!({"start": 20, "end": 10}).to_string(),
            refused("invalid_option", "end"),
        ),
        (
            json!({"bitrate": 999}).to_string(),
            refused("invalid_bitrate", "bitrate"),
        ),
        (
            json!({"title": "x".repeat(257)}).to_string(),
            refused("field_too_large", "title"),
        ),
        ("not json".to_owned(), (400, "invalid_json".into(), None)),
        ("[1]".to_owned(), (400, "invalid_json".into(), None)),
    ] {
        let response = start(&app, "rex", &id, body.clone()).await;
        assert_eq!(refusal(response).await, expected, "{body}");
        let job: Value = app.job("rex", &id).await.json().await.unwrap();
        assert_eq!(job, held, "{body} changed the held job");
    }
    assert!(listed(&app, "rex").await.is_empty());
    assert_eq!(
        start(&app, "rex", &id, r#"{"bitrate": 128}"#)
            .await
            .status(),
        202
    );
    let job = app.settled("rex", &id).await;
    assert_eq!(
        (&job["status"], &job["bitrate"]),
        (&json!("done"), &json!("128"))
    );
    app.stop().await;
}

/// Polls until the replicas together counted `expected` abandoned uploads removed (each is
/// counted once its job and video are gone; fails after [`JOB_DEADLINE`]).
async fn wait_removed(apps: &[&TestApp], expected: u64) {
    let deadline = Instant::now() + JOB_DEADLINE;
    loop {
        let mut removed = 0;
        for app in apps {
            removed += counter(app, REMOVED).await;
        }
        assert!(removed <= expected, "{removed} removals counted");
        if removed == expected {
            return;
        }
        assert!(Instant::now() < deadline, "only {removed} removed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The value of a counter in `/metrics`.
async fn counter(app: &TestApp, name: &str) -> u64 {
    let metrics = app.metrics().await;
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name}:\n{metrics}"))
        .parse()
        .unwrap()
}

const REMOVED: &str = "mp3conv_worker_held_uploads_removed_total";

async fn abandoned_held_uploads_are_removed(backend: Backend) {
    // The setting under test: held uploads count as abandoned after 2 s here. Finished jobs
    // keep their videos, so that what the held sweep leaves shows.
    let app = spawn_with(backend, |c| {
        c.held_upload_seconds = 2;
        c.retention.keep_sources = true;
    })
    .await;
    let abandoned = upload_held(&app, "abe").await;
    let started = id_of(&upload_held(&app, "abe").await);
    assert_eq!(start(&app, "abe", &started, "{}").await.status(), 202);
    let queued = app.upload_ok("abe", "c.mp4", media("mp4")).await;
    wait_removed(&[&app], 1).await;
    assert_eq!(app.job("abe", &id_of(&abandoned)).await.status(), 404);
    let stores = Stores::of(&app).await;
    let video = abandoned["video_id"].as_str().unwrap();
    assert_eq!(stores.videos.size(video).await.unwrap(), None, "its video");
    for id in [&started, &queued] {
        let job = app.settled("abe", id).await;
        assert_eq!(job["status"], "done", "{job}");
        let video = job["video_id"].as_str().unwrap();
        assert!(stores.videos.size(video).await.unwrap().is_some());
    }
    app.stop().await;
}

/// Two API replicas sweep the same store at once: every abandoned upload is removed once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_remove_each_abandoned_upload_once() {
    let first = spawn_with(Backend::Services, |c| c.held_upload_seconds = 1).await;
    let second = spawn_named(Backend::Services, first.names.clone(), |c| {
        c.held_upload_seconds = 1
    })
    .await;
    let mut ids = Vec::new();
    for app in [&first, &second, &first, &second, &first] {
        ids.push(id_of(&upload_held(app, "rae").await));
    }
    wait_removed(&[&first, &second], ids.len() as u64).await;
    for id in &ids {
        assert_eq!(first.job("rae", id).await.status(), 404);
    }
    let database = &first.names.database;
    assert_eq!(common::count(database, "videos.files").await, 0);
    assert_eq!(common::count(database, "jobs").await, 0);
    second.stop().await;
    first.stop().await;
}

/// Bytes standing in for an MP3 (the routes serve what is stored).
fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u8)
                .wrapping_mul(31)
                .wrapping_add(seed ^ (i >> 9) as u8)
        })
        .collect()
}

fn audio(id: String, bytes: &[u8]) -> Audio {
    Audio {
        id,
        size: bytes.len() as u64,
        duration: 1.0,
        bitrate: Bitrate::default(),
    }
}

/// A finished job split into `tracks` (title, bytes), written straight into the stores with
/// its video, its MP3 and its tracks' MP3s, as the converter leaves one.
async fn split_job(stores: &Stores, owner: &str, tracks: &[(&str, Vec<u8>)]) -> Job {
    let mut options = Options::default();
    options.set("split", "chapters").unwrap();
    let mut job = Job::with_options(
        owner.to_owned(),
        Source::Upload {
            filename: "Talk: part 1/2 — é.mp4".into(),
            content_type: None,
        },
        options,
    );
    let whole = bytes(5000, 1);
    Stores::put(stores.videos.as_ref(), &job.video_id, b"the video").await;
    Stores::put(stores.mp3s.as_ref(), &job.id.to_string(), &whole).await;
    job.audio = Some(audio(job.id.to_string(), &whole));
    for (number, (title, bytes)) in (1u32..).zip(tracks) {
        let id = track_blob_id(job.id, number);
        Stores::put(stores.mp3s.as_ref(), &id, bytes).await;
        job.tracks.push(Track {
            number,
            title: (*title).to_owned(),
            start: f64::from(number - 1),
            end: f64::from(number),
            audio: audio(id, bytes),
            crc32: crc32fast::hash(bytes),
        });
    }
    job.progress = 100;
    job.attempts = 1;
    job.announced = true;
    job.set_status(Status::Done);
    stores.jobs.insert(&job).await.unwrap();
    job
}

/// What Python's zipfile and Info-ZIP's `unzip -t` make of a ZIP: its entries' names and
/// bytes, in order.
fn unzip(zip: &[u8]) -> Vec<(String, Vec<u8>)> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tracks.zip");
    std::fs::write(&path, zip).unwrap();
    let tested = std::process::Command::new("unzip")
        .args(["-t", "-q"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        tested.status.success(),
        "unzip -t: {}",
        String::from_utf8_lossy(&tested.stdout)
    );
    let out = dir.path().join("out");
    let script = "import sys, zipfile, json\n\
                  z = zipfile.ZipFile(sys.argv[1])\n\
                  assert z.testzip() is None\n\
                  assert all(i.compress_type == zipfile.ZIP_STORED for i in z.infolist())\n\
                  assert all(i.flag_bits & 0x808 == 0x800 for i in z.infolist()), 'utf-8, no descriptor'\n\
                  z.extractall(sys.argv[2])\n\
                  print(json.dumps(z.namelist()))";
    let read = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(&path)
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        read.status.success(),
        "{}",
        String::from_utf8_lossy(&read.stderr)
    );
    let names: Vec<String> = serde_json::from_slice(&read.stdout).unwrap();
    names
        .into_iter()
        .map(|name| {
            let bytes = std::fs::read(out.join(&name)).unwrap();
            (name, bytes)
        })
        .collect()
}

async fn tracks_are_served_one_by_one_and_as_a_zip(backend: Backend) {
    let app = spawn(backend).await;
    let stores = Stores::of(&app).await;
    // The last spans several GridFS chunks (255 KiB each).
    let tracks = [
        ("Intro", bytes(70_000, 2)),
        ("Café ☕ / encore", bytes(1, 3)),
        ("..\\..\\secret", bytes(600_000, 4)),
    ];
    let job = split_job(&stores, "tia", &tracks).await;
    let id = job.id.to_string();
    let path = |rest: &str| format!("/internal/jobs/{id}/{rest}");

    // Each track is saved as its ZIP entry is named.
    let saved_as = [
        "attachment; filename=\"01 - Intro.mp3\"; filename*=UTF-8''01%20-%20Intro.mp3",
        "attachment; filename=\"02 - Caf_ _ _ encore.mp3\"; \
         filename*=UTF-8''02%20-%20Caf%C3%A9%20%E2%98%95%20_%20encore.mp3",
        "attachment; filename=\"03 - _.._secret.mp3\"; filename*=UTF-8''03%20-%20_.._secret.mp3",
    ];
    for (number, (_, expected)) in (1usize..).zip(&tracks) {
        let response = app
            .request(Method::GET, &path(&format!("tracks/{number}")), "tia")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "audio/mpeg");
        assert_eq!(response.headers()["accept-ranges"], "bytes");
        assert_eq!(
            response.headers()["content-disposition"],
            saved_as[number - 1],
            "track {number}"
        );
        let etag = response.headers()["etag"].to_str().unwrap().to_owned();
        assert_eq!(&common::body(response).await, expected, "track {number}");
        let cached = app
            .request(Method::GET, &path(&format!("tracks/{number}")), "tia")
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(cached.status(), 304);
    }
    let part = app
        .request(Method::GET, &path("tracks/3"), "tia")
        .header("range", "bytes=300000-300099")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(
        part.headers()["content-range"],
        "bytes 300000-300099/600000"
    );
    assert_eq!(common::body(part).await, tracks[2].1[300_000..300_100]);
    let outside = app
        .request(Method::GET, &path("tracks/2"), "tia")
        .header("range", "bytes=1-")
        .send()
        .await
        .unwrap();
    assert_eq!(refusal(outside).await.1, "range_not_satisfiable");
    for missing in ["tracks/4", "tracks/0", "tracks/x"] {
        let response = app
            .request(Method::GET, &path(missing), "tia")
            .send()
            .await
            .unwrap();
        assert_eq!(
            refusal(response).await,
            (404, "no_such_track".into(), None),
            "{missing}"
        );
    }
    let theirs = app
        .request(Method::GET, &path("tracks.zip"), "eve")
        .send()
        .await
        .unwrap();
    assert_eq!(refusal(theirs).await.1, "not_found");

    let zip = app
        .request(Method::GET, &path("tracks.zip"), "tia")
        .send()
        .await
        .unwrap();
    assert_eq!(zip.status(), 200);
    assert_eq!(zip.headers()["content-type"], "application/zip");
    let length: usize = zip.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        zip.headers()["content-disposition"],
        "attachment; filename=\"Talk_ part 1_2 _ _.zip\"; \
         filename*=UTF-8''Talk_%20part%201_2%20%E2%80%94%20%C3%A9.zip"
    );
    let zip = common::body(zip).await;
    assert_eq!(zip.len(), length, "Content-Length is exact");
    let entries = unzip(&zip);
    let expected: Vec<(String, Vec<u8>)> = [
        "01 - Intro.mp3",
        "02 - Café ☕ _ encore.mp3",
        "03 - _.._secret.mp3",
    ]
    .into_iter()
    .zip(&tracks)
    .map(|(name, (_, bytes))| (name.to_owned(), bytes.clone()))
    .collect();
    assert_eq!(entries.len(), expected.len());
    for ((name, bytes), (want_name, want)) in entries.iter().zip(&expected) {
        assert_eq!(name, want_name);
        assert!(bytes == want, "{name}: different bytes");
    }
    app.stop().await;
}

async fn zip_refusals(app: &TestApp, stores: &Stores) {
    // Not split: no tracks; not done: not ready.
    let plain = app.upload_ok("tia", "a.mp4", media("mp4")).await;
    let job = app.settled("tia", &plain).await;
    assert_eq!(job["status"], "done");
    for rest in ["tracks.zip", "tracks/1"] {
        let response = app
            .request(
                Method::GET,
                &format!("/internal/jobs/{plain}/{rest}"),
                "tia",
            )
            .send()
            .await
            .unwrap();
        assert_eq!(
            refusal(response).await,
            (404, "no_tracks".into(), None),
            "{rest}"
        );
    }
    let held = id_of(&upload_held(app, "tia").await);
    let response = app
        .request(
            Method::GET,
            &format!("/internal/jobs/{held}/tracks.zip"),
            "tia",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(refusal(response).await, (409, "not_ready".into(), None));

    // Past 4 GiB, a ZIP needs ZIP64: refused before a byte is sent.
    let mut huge = split_job(stores, "tia", &[("a", bytes(10, 5)), ("b", bytes(10, 6))]).await;
    for track in &mut huge.tracks {
        track.audio.size = 3 << 30;
    }
    assert!(stores.jobs.save(&huge).await.unwrap());
    let response = app
        .request(
            Method::GET,
            &format!("/internal/jobs/{}/tracks.zip", huge.id),
            "tia",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        refusal(response).await,
        (409, "too_large_for_zip".into(), None)
    );

    // A track whose stored MP3 is shorter than its record: the ZIP is cut off, never a
    // well-formed archive with wrong contents. Where the cut lands depends on whether the
    // server had flushed its head before the store ran short: before it, the connection
    // closes with no response at all; after it, a 200 whose body ends early.
    let mut short = split_job(stores, "tia", &[("a", bytes(1000, 7))]).await;
    short.tracks[0].audio.size = 2000;
    assert!(stores.jobs.save(&short).await.unwrap());
    let sent = app
        .request(
            Method::GET,
            &format!("/internal/jobs/{}/tracks.zip", short.id),
            "tia",
        )
        .send()
        .await;
    match sent {
        Err(e) => assert!(!e.is_timeout() && !e.is_connect(), "{e:?}"),
        Ok(response) => {
            assert_eq!(response.status(), 200);
            assert!(response.bytes().await.is_err(), "a short body must fail");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zips_are_refused_when_they_cannot_be_right_embedded() {
    let app = spawn(Backend::Embedded).await;
    zip_refusals(&app, &Stores::of(&app).await).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zips_are_refused_when_they_cannot_be_right_on_services() {
    let app = spawn(Backend::Services).await;
    zip_refusals(&app, &Stores::of(&app).await).await;
    app.stop().await;
}

async fn deleting_a_job_removes_its_tracks(backend: Backend) {
    let app = spawn(backend).await;
    let stores = Stores::of(&app).await;
    let tracks = [
        ("a", bytes(300, 8)),
        ("b", bytes(300_000, 9)),
        ("c", bytes(5, 10)),
    ];
    let job = split_job(&stores, "dan", &tracks).await;
    let kept = split_job(&stores, "dan", &tracks[..1]).await;
    let blobs = |job: &Job| -> Vec<String> {
        let mut ids = vec![job.id.to_string()];
        ids.extend((1..=job.tracks.len() as u32).map(|n| track_blob_id(job.id, n)));
        ids
    };
    for id in blobs(&job) {
        assert!(stores.mp3s.size(&id).await.unwrap().is_some(), "{id}");
    }
    let deleted = app
        .request(Method::DELETE, &format!("/internal/jobs/{}", job.id), "dan")
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    for id in blobs(&job) {
        assert_eq!(stores.mp3s.size(&id).await.unwrap(), None, "{id}");
    }
    assert_eq!(stores.videos.size(&job.video_id).await.unwrap(), None);
    assert!(stores.jobs.get(job.id).await.unwrap().is_none());
    // Another job's tracks are not touched.
    for id in blobs(&kept) {
        assert!(stores.mp3s.size(&id).await.unwrap().is_some(), "{id}");
    }
    app.stop().await;
}

/// A converter that died while writing a split job's tracks, for a job deleted meanwhile,
/// leaves track MP3s no job owns: the start-up GridFS sweep removes them like any orphan.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphan_track_blobs_are_swept_from_gridfs() {
    use native_worker::jobs::mongo::MongoJobs;
    use native_worker::storage::gridfs::GridFsStore;
    let names = common::Names::new();
    let client = mongodb::Client::with_uri_str(common::mongo_url())
        .await
        .unwrap();
    let db = client.database(&names.database);
    let mp3s = GridFsStore::open(db.clone(), "mp3s").await.unwrap();
    let jobs = MongoJobs::open(db.clone()).await.unwrap();
    let live = Job::new(
        "ola".into(),
        Source::link("http://x.test/a.mp4"),
        Bitrate::default(),
    );
    jobs.insert(&live).await.unwrap();
    let gone = native_worker::job::JobId::new();
    let kept = [track_blob_id(live.id, 1), track_blob_id(live.id, 2)];
    let orphans = [track_blob_id(gone, 1), track_blob_id(gone, 12)];
    for id in kept.iter().chain(&orphans) {
        Stores::put(&mp3s, id, b"track").await;
    }
    // The setting under test: every file is old enough to be swept.
    let app = spawn_named(Backend::Services, names, |c| c.orphan_age = Duration::ZERO).await;
    let deadline = Instant::now() + JOB_DEADLINE;
    while counter(&app, "mp3conv_worker_gridfs_sweeps_total").await == 0 {
        assert!(Instant::now() < deadline, "the sweep never ended");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for id in &kept {
        assert_eq!(mp3s.size(id).await.unwrap(), Some(5), "{id}");
    }
    for id in &orphans {
        assert_eq!(mp3s.size(id).await.unwrap(), None, "{id}");
    }
    assert_eq!(
        counter(&app, "mp3conv_worker_gridfs_orphans_removed_total").await,
        2
    );
    app.stop().await;
}
