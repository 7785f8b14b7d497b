//! Live job events over HTTP, as the gateway uses them: `GET /internal/events`,
//! `GET /internal/jobs/{id}/events` (Server-Sent Events) and `POST /internal/events`.

#[macro_use]
mod common;

use std::collections::VecDeque;
use std::pin::Pin;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{Backend, JOB_DEADLINE, Names, TestApp, media, spawn, spawn_named, spawn_with};
use futures::{Stream, StreamExt};
use mp3conv_contract::event::{Envelope, Event, Frame, Parser};
use native_worker::config::Role;
use reqwest::Method;
use serde_json::{Value, json};

on_both_backends!(
    a_stream_follows_jobs_and_resumes,
    an_expiring_job_tells_its_owners_stream,
    streams_are_private_and_job_streams_end,
    posted_notifications_reach_the_owner,
);

/// Unix milliseconds `after` from now, for `X-Mp3conv-Stream-Until`.
fn until(after: Duration) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    (now + after).as_millis().to_string()
}

type Chunks = Pin<Box<dyn Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>;

/// A client end of an event stream.
struct Sse {
    chunks: Chunks,
    parser: Parser,
    frames: VecDeque<Frame>,
    /// Everything received, comments included.
    raw: String,
    ended: bool,
}

impl Sse {
    /// Opens `path` for `owner` with extra `headers`; the response as it came.
    async fn request(
        app: &TestApp,
        path: &str,
        owner: &str,
        headers: &[(&str, String)],
    ) -> reqwest::Response {
        let mut request = app.request(Method::GET, path, owner);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        request.send().await.unwrap()
    }

    /// Opens a stream that must be accepted.
    async fn open(app: &TestApp, path: &str, owner: &str, headers: &[(&str, String)]) -> Sse {
        let response = Sse::request(app, path, owner, headers).await;
        assert_eq!(response.status(), 200, "{path}");
        Sse::from(response).await
    }

    /// A stream from an accepted response; its first bytes must be `retry:`.
    async fn from(response: reqwest::Response) -> Sse {
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        assert_eq!(response.headers()["cache-control"], "no-store");
        let mut sse = Sse {
            chunks: Box::pin(response.bytes_stream()),
            parser: Parser::new(),
            frames: VecDeque::new(),
            raw: String::new(),
            ended: false,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !sse.raw.contains("\n\n") {
            assert!(sse.read(deadline).await, "the stream ended at once");
        }
        assert!(sse.raw.starts_with("retry: 3000\n\n"), "{:?}", sse.raw);
        sse
    }

    /// Reads one chunk; false once the body ended.
    async fn read(&mut self, deadline: Instant) -> bool {
        if self.ended {
            return false;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let chunk = tokio::time::timeout(left, self.chunks.next())
            .await
            .unwrap_or_else(|_| panic!("nothing came in time; so far: {}", self.raw));
        match chunk {
            Some(Ok(bytes)) => {
                self.raw.push_str(&String::from_utf8_lossy(&bytes));
                self.frames.extend(self.parser.feed(&bytes));
                true
            }
            Some(Err(e)) => panic!("the stream broke: {e}"),
            None => {
                self.ended = true;
                false
            }
        }
    }

    /// The next frame, or `None` when the stream ended first.
    async fn next(&mut self) -> Option<Frame> {
        let deadline = Instant::now() + JOB_DEADLINE;
        loop {
            if let Some(frame) = self.frames.pop_front() {
                return Some(frame);
            }
            if !self.read(deadline).await {
                return None;
            }
        }
    }

    /// Every frame until the stream ends.
    async fn rest(&mut self) -> Vec<Frame> {
        let mut frames = Vec::new();
        while let Some(frame) = self.next().await {
            frames.push(frame);
        }
        frames
    }

    /// Frames until every job of `jobs` had its final event.
    async fn until_final(&mut self, jobs: &[&str]) -> Vec<Frame> {
        let mut open: Vec<&str> = jobs.to_vec();
        let mut frames = Vec::new();
        while !open.is_empty() {
            let frame = self
                .next()
                .await
                .expect("the stream ended before the jobs did");
            let data: Value = serde_json::from_str(&frame.data).unwrap();
            if ["job.done", "job.failed", "job.deleted"].contains(&frame.event.as_str()) {
                let id = data["job"]["id"].as_str().or(data["job_id"].as_str());
                open.retain(|j| Some(*j) != id);
            }
            frames.push(frame);
        }
        frames
    }
}

fn data(frame: &Frame) -> Value {
    serde_json::from_str(&frame.data).unwrap()
}

fn job_id_of(frame: &Frame) -> String {
    let data = data(frame);
    data["job"]["id"]
        .as_str()
        .or(data["job_id"].as_str())
        .unwrap_or_default()
        .to_owned()
}

/// Checks one job's events: queued, then progress (percent never going back), then `last`.
fn assert_job_story(frames: &[Frame], id: &str, last: &str) -> Value {
    let mine: Vec<&Frame> = frames.iter().filter(|f| job_id_of(f) == id).collect();
    let kinds: Vec<&str> = mine.iter().map(|f| f.event.as_str()).collect();
    assert!(kinds.len() >= 3, "{id}: {kinds:?}");
    assert_eq!(kinds[0], "job.queued", "{kinds:?}");
    assert_eq!(kinds[kinds.len() - 1], last, "{kinds:?}");
    assert!(
        kinds[1..kinds.len() - 1]
            .iter()
            .all(|k| *k == "job.progress"),
        "{kinds:?}"
    );
    let mut percent = 0;
    for frame in &mine[1..mine.len() - 1] {
        let job = &data(frame)["job"];
        assert!(
            ["downloading", "converting", "queued"].contains(&job["status"].as_str().unwrap()),
            "{job}"
        );
        let now = job["progress"].as_u64().unwrap();
        assert!(now >= percent, "progress went back: {kinds:?}");
        percent = now;
    }
    for frame in &mine {
        assert_eq!(
            data(frame)["type"],
            frame.event,
            "the data repeats the type"
        );
    }
    data(mine[mine.len() - 1])
}

/// Retention's changes reach the owner's stream: `job.expired` when the MP3 goes (the public
/// job, expired, without audio), then `job.deleted` when the record goes.
async fn an_expiring_job_tells_its_owners_stream(backend: Backend) {
    let app = spawn_with(backend, |c| {
        c.retention.audio = Duration::from_secs(1);
        c.retention.expired = Duration::from_secs(1);
        c.retention.sweep_interval = Duration::from_millis(100);
    })
    .await;
    let mut stream = Sse::open(&app, "/internal/events", "ivy", &[]).await;
    let id = app.upload_ok("ivy", "clip.mp4", media("mp4")).await;
    stream.until_final(&[&id]).await;
    let mut after = Vec::new();
    while !after.iter().any(|f: &Frame| f.event == "job.deleted") {
        let frame = stream.next().await.expect("the stream ended");
        if job_id_of(&frame) == id {
            after.push(frame);
        }
    }
    let kinds: Vec<&str> = after.iter().map(|f| f.event.as_str()).collect();
    assert_eq!(kinds, ["job.expired", "job.deleted"]);
    let expired = data(&after[0]);
    assert_eq!(expired["job"]["status"], "expired", "{expired}");
    assert!(expired["job"]["audio"].is_null(), "{expired}");
    assert!(expired["job"]["expires_at"].is_string(), "{expired}");
    assert!(expired["job"].get("owner").is_none(), "the public shape");
    app.stop().await;
}

async fn a_stream_follows_jobs_and_resumes(backend: Backend) {
    let app = spawn(backend).await;
    let mut stream = Sse::open(&app, "/internal/events", "ema", &[]).await;
    let done = app.upload_ok("ema", "clip.mp4", media("mp4")).await;
    let failed = app.upload_ok("ema", "silent.mp4", media("no-audio")).await;
    let frames = stream.until_final(&[&done, &failed]).await;

    let last = assert_job_story(&frames, &done, "job.done");
    assert_eq!(last["audio_url"], format!("/v1/jobs/{done}/audio"));
    assert_eq!(last["job"]["status"], "done");
    assert_eq!(last["job"]["progress"], 100);
    assert!(last["job"]["audio"]["size"].as_u64().unwrap() > 0);
    assert!(last["job"].get("owner").is_none(), "the public shape");
    let last = assert_job_story(&frames, &failed, "job.failed");
    assert_eq!(last["job"]["error"]["code"], "no_audio");

    let ids: Vec<String> = frames.iter().map(|f| f.id.clone().unwrap()).collect();
    let unique: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "every event has its own id");

    // Resuming from the first event replays exactly the rest: same ids, same order, then
    // the stream ends at the gateway's time.
    let short = until(Duration::from_millis(1500));
    let mut resumed = Sse::open(
        &app,
        "/internal/events",
        "ema",
        &[
            ("last-event-id", ids[0].clone()),
            ("x-mp3conv-stream-until", short.clone()),
        ],
    )
    .await;
    let replayed: Vec<Frame> = resumed.rest().await;
    assert_eq!(replayed, frames[1..].to_vec());

    // An id this server does not have: one resync frame, without an id.
    let mut lost = Sse::open(
        &app,
        "/internal/events",
        "ema",
        &[
            (
                "last-event-id",
                "0190aaaa-0000-7000-8000-000000000000".into(),
            ),
            ("x-mp3conv-stream-until", until(Duration::from_millis(500))),
        ],
    )
    .await;
    let frames = lost.rest().await;
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(frames[0].event, "resync");
    assert_eq!(frames[0].id, None);
    assert!(data(&frames[0])["reason"].is_string());
    app.stop().await;
}

async fn streams_are_private_and_job_streams_end(backend: Backend) {
    let app = spawn(backend).await;
    let mut mallory = Sse::open(&app, "/internal/events", "mallory", &[]).await;
    let id = app.upload_ok("ema", "clip.mp4", media("mp4")).await;

    // Followed from the start, the job stream ends right after the final event.
    let response = Sse::request(&app, &format!("/internal/jobs/{id}/events"), "ema", &[]).await;
    let mut follow = Sse::from(response).await;
    let frames = follow.rest().await;
    assert!(follow.ended);
    let kinds: Vec<&str> = frames.iter().map(|f| f.event.as_str()).collect();
    assert_eq!(kinds.last(), Some(&"job.done"), "{kinds:?}");
    assert!(
        kinds[..kinds.len() - 1]
            .iter()
            .all(|k| ["job.queued", "job.progress"].contains(k)),
        "{kinds:?}"
    );
    let percents: Vec<u64> = frames
        .iter()
        .map(|f| data(f)["job"]["progress"].as_u64().unwrap())
        .collect();
    assert!(percents.is_sorted(), "{percents:?}");
    assert!(frames.iter().all(|f| job_id_of(f) == id));

    // Another owner's job is not there at all.
    let other = Sse::request(&app, &format!("/internal/jobs/{id}/events"), "mallory", &[]).await;
    assert_eq!(other.status(), 404);
    let missing = Sse::request(&app, "/internal/jobs/nope/events", "ema", &[]).await;
    assert_eq!(missing.status(), 404);

    // A finished job: its state, then the end; resumed: 204, nothing more will come.
    let mut finished = Sse::open(&app, &format!("/internal/jobs/{id}/events"), "ema", &[]).await;
    let frames = finished.rest().await;
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(frames[0].event, "job.done");
    assert!(frames[0].id.is_some());
    assert_eq!(
        data(&frames[0])["audio_url"],
        format!("/v1/jobs/{id}/audio")
    );
    let resumed = Sse::request(
        &app,
        &format!("/internal/jobs/{id}/events"),
        "ema",
        &[("last-event-id", frames[0].id.clone().unwrap())],
    )
    .await;
    assert_eq!(resumed.status(), 204);

    // Mallory's stream saw none of it: the first thing it gets is its own notification.
    let posted = app
        .request(Method::POST, "/internal/events", "mallory")
        .json(&notification(&id))
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 202);
    let posted: Value = posted.json().await.unwrap();
    let first = mallory.next().await.unwrap();
    assert_eq!(first.event, "notification.created", "{first:?}");
    assert_eq!(first.id.as_deref(), posted["id"].as_str());
    app.stop().await;
}

fn notification(job_id: &str) -> Value {
    json!({
        "type": "notification.created",
        "notification": {
            "id": "n-1",
            "job_id": job_id,
            "status": "done",
            "title": "clip",
            "message": "clip.mp3 is ready",
            "audio_url": format!("/v1/jobs/{job_id}/audio"),
            "error_code": null,
            "created_at": "2026-11-30T10:00:00Z",
            "read": false
        }
    })
}

async fn posted_notifications_reach_the_owner(backend: Backend) {
    let app = spawn(backend).await;
    let job_id = "0193a5b0-7c1d-7e3f-9a40-5f2b1c3d4e5f";
    let mut stream = Sse::open(&app, "/internal/events", "nina", &[]).await;
    let posted = app
        .request(Method::POST, "/internal/events", "nina")
        .json(&notification(job_id))
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 202);
    let posted: Value = posted.json().await.unwrap();
    let frame = stream.next().await.unwrap();
    assert_eq!(frame.event, "notification.created");
    assert_eq!(frame.id.as_deref(), posted["id"].as_str());
    assert_eq!(data(&frame)["notification"]["job_id"], job_id);

    let refused = [
        (
            json!({"type": "job.deleted", "job_id": job_id}),
            "unsupported_event",
        ),
        (
            json!({"type": "resync", "reason": "x"}),
            "unsupported_event",
        ),
        (json!({"notification": {}}), "unsupported_event"),
        (json!({"type": "notification.created"}), "invalid_json"),
    ];
    for (body, code) in refused {
        let response = app
            .request(Method::POST, "/internal/events", "nina")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{body}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["code"], code, "{body}");
    }
    let garbage = app
        .request(Method::POST, "/internal/events", "nina")
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_eq!(garbage.status(), 400);
    let unauthorized = app
        .client
        .get(app.url("/internal/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.status(), 401);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_end_on_time_and_keep_alive_when_idle() {
    let app = spawn_with(Backend::Embedded, |c| {
        c.events.heartbeat = Duration::from_millis(200);
        c.events.max_stream = Duration::from_secs(3);
    })
    .await;
    // The gateway's end time.
    let started = Instant::now();
    let mut stream = Sse::open(
        &app,
        "/internal/events",
        "ivy",
        &[("x-mp3conv-stream-until", until(Duration::from_millis(1200)))],
    )
    .await;
    assert!(stream.rest().await.is_empty());
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1100) && took < Duration::from_secs(3),
        "{took:?}"
    );
    let keepalives = stream.raw.matches(": keepalive\n\n").count();
    assert!(keepalives >= 3, "{keepalives} in {:?}", stream.raw);

    // Asked for longer than the worker allows (or not at all): its own cap.
    for asked in [
        Some(until(Duration::from_secs(60))),
        None,
        Some("junk".into()),
    ] {
        let started = Instant::now();
        let headers: Vec<(&str, String)> = asked
            .iter()
            .map(|v| ("x-mp3conv-stream-until", v.clone()))
            .collect();
        let mut stream = Sse::open(&app, "/internal/events", "ivy", &headers).await;
        stream.rest().await;
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(2900) && took < Duration::from_secs(10),
            "{asked:?}: {took:?}"
        );
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_streams_are_limited_per_user_and_per_process() {
    let app = spawn_with(Backend::Embedded, |c| {
        c.events.heartbeat = Duration::from_millis(100);
        c.events.max_streams_per_user = 2;
        c.events.max_streams = 3;
    })
    .await;
    let a1 = Sse::open(&app, "/internal/events", "ann", &[]).await;
    let _a2 = Sse::open(&app, "/internal/events", "ann", &[]).await;
    for path in ["/internal/events", "/internal/jobs/nope/events"] {
        let third = Sse::request(&app, path, "ann", &[]).await;
        assert_eq!(third.status(), 429, "{path}");
        assert_eq!(third.headers()["retry-after"], "5");
        let body: Value = third.json().await.unwrap();
        assert_eq!(body["error"]["code"], "too_many_streams");
    }
    let _b1 = Sse::open(&app, "/internal/events", "bob", &[]).await;
    let full = Sse::request(&app, "/internal/events", "cat", &[]).await;
    assert_eq!(full.status(), 503);
    assert!(full.headers().contains_key("retry-after"));
    let body: Value = full.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_streams");
    assert!(
        !body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("backend")
    );

    // A stream the client dropped gives its slot back (noticed at its next keepalive).
    drop(a1);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let response = Sse::request(&app, "/internal/events", "ann", &[]).await;
        if response.status() == 200 {
            break;
        }
        assert_eq!(response.status(), 429);
        assert!(Instant::now() < deadline, "the slot never came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_streams_end_when_the_worker_stops() {
    let app = spawn(Backend::Embedded).await;
    let mut stream = Sse::open(&app, "/internal/events", "sam", &[]).await;
    let started = Instant::now();
    app.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the stream held the shutdown up"
    );
    assert!(stream.rest().await.is_empty());
    assert!(stream.ended);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_replicas_see_the_events_of_jobs_converted_elsewhere() {
    let names = Names::new();
    let api_a = spawn_named(Backend::Services, names.clone(), |c| c.role = Role::Api).await;
    let api_b = spawn_named(Backend::Services, names.clone(), |c| c.role = Role::Api).await;
    let converter = spawn_named(Backend::Services, names.clone(), |c| {
        c.role = Role::Converter
    })
    .await;
    let mut on_a = Sse::open(&api_a, "/internal/events", "ola", &[]).await;
    let mut other_on_a = Sse::open(&api_a, "/internal/events", "otto", &[]).await;

    let id = api_b.upload_ok("ola", "clip.mp4", media("mp4")).await;
    let frames = on_a.until_final(&[&id]).await;
    let last = assert_job_story(&frames, &id, "job.done");
    assert_eq!(last["audio_url"], format!("/v1/jobs/{id}/audio"));

    // A notification posted on B reaches A's stream, and only its owner's.
    let posted = api_b
        .request(Method::POST, "/internal/events", "otto")
        .json(&notification(&id))
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 202);
    let first = other_on_a.next().await.unwrap();
    assert_eq!(first.event, "notification.created", "otto saw ola's events");

    // A's replay buffer has the events B and the converter published.
    let mut resumed = Sse::open(
        &api_a,
        "/internal/events",
        "ola",
        &[
            ("last-event-id", frames[0].id.clone().unwrap()),
            ("x-mp3conv-stream-until", until(Duration::from_millis(1000))),
        ],
    )
    .await;
    assert_eq!(resumed.rest().await, frames[1..].to_vec());
    converter.stop().await;
    api_b.stop().await;
    api_a.stop().await;
}

/// Publishes `envelope` to the events exchange as process `origin`'s event number `seq`.
async fn publish_event(prefix: &str, origin: &str, seq: i64, envelope: &Envelope) {
    use lapin::options::BasicPublishOptions;
    use lapin::types::{AMQPValue, FieldTable, LongString};
    use lapin::{BasicProperties, Connection, ConnectionProperties};
    let connection = Connection::connect(&common::amqp_url(), ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    channel.confirm_select(Default::default()).await.unwrap();
    let mut headers = FieldTable::default();
    headers.insert(
        "x-mp3conv-origin".into(),
        AMQPValue::LongString(LongString::from(origin)),
    );
    headers.insert("x-mp3conv-seq".into(), AMQPValue::LongLongInt(seq));
    let confirm = channel
        .basic_publish(
            format!("{prefix}events").as_str().into(),
            "".into(),
            BasicPublishOptions::default(),
            &serde_json::to_vec(envelope).unwrap(),
            BasicProperties::default().with_headers(headers),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(confirm.is_ack());
    let _ = connection.close(200, "done".into()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_lost_between_processes_mean_resync() {
    let app = spawn_with(Backend::Services, |c| c.role = Role::Api).await;
    let prefix = app.names.prefix.clone();
    let mut stream = Sse::open(&app, "/internal/events", "gus", &[]).await;
    let posted = app
        .request(Method::POST, "/internal/events", "gus")
        .json(&notification("0193a5b0-7c1d-7e3f-9a40-5f2b1c3d4e5f"))
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 202);
    let before = stream.next().await.unwrap();
    assert_eq!(before.event, "notification.created");
    let before_id = before.id.clone().unwrap();

    // Another process's events: the first one seen from it is no loss, whatever its number.
    let event = |job: &str| {
        Envelope::new(
            "gus",
            serde_json::from_value::<Event>(notification(job)).unwrap(),
        )
    };
    let first = event("0193a5b0-7c1d-7e3f-9a40-000000000001");
    publish_event(&prefix, "fake-process", 41, &first).await;
    let frame = stream.next().await.unwrap();
    assert_eq!(frame.id.as_deref(), Some(first.id.as_str()), "{frame:?}");
    assert!(
        !stream.raw.contains("fake-process"),
        "the origin is not shown"
    );
    let next = event("0193a5b0-7c1d-7e3f-9a40-000000000002");
    publish_event(&prefix, "fake-process", 42, &next).await;
    let frame = stream.next().await.unwrap();
    assert_eq!(frame.id.as_deref(), Some(next.id.as_str()), "{frame:?}");
    let resumed = Sse::open(
        &app,
        "/internal/events",
        "gus",
        &[
            ("last-event-id", before_id.clone()),
            ("x-mp3conv-stream-until", until(Duration::from_millis(500))),
        ],
    )
    .await
    .rest()
    .await;
    let ids: Vec<Option<String>> = resumed.iter().map(|f| f.id.clone()).collect();
    assert_eq!(
        ids,
        [Some(first.id.clone()), Some(next.id.clone())],
        "no loss yet"
    );

    // Number 43 never arrives (as if the queue or the publisher had dropped it).
    let after = event("0193a5b0-7c1d-7e3f-9a40-000000000004");
    publish_event(&prefix, "fake-process", 44, &after).await;
    let frame = stream.next().await.unwrap();
    assert_eq!(frame.event, "resync", "{frame:?}");
    let frame = stream.next().await.unwrap();
    assert_eq!(
        frame.id.as_deref(),
        Some(after.id.as_str()),
        "then live again"
    );

    // A resume from before the loss cannot be trusted; one from after it can.
    for from in [&before_id, &next.id] {
        let frames = Sse::open(
            &app,
            "/internal/events",
            "gus",
            &[
                ("last-event-id", from.clone()),
                ("x-mp3conv-stream-until", until(Duration::from_millis(500))),
            ],
        )
        .await
        .rest()
        .await;
        assert_eq!(frames.len(), 1, "{frames:?}");
        assert_eq!(frames[0].event, "resync", "from {from}");
    }
    let frames = Sse::open(
        &app,
        "/internal/events",
        "gus",
        &[
            ("last-event-id", after.id.clone()),
            ("x-mp3conv-stream-until", until(Duration::from_millis(500))),
        ],
    )
    .await
    .rest()
    .await;
    assert!(frames.is_empty(), "{frames:?}");
    app.stop().await;
}
