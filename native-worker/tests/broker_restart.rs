//! RabbitMQ restarted in the middle of a run: the worker reconnects, declares its queues again
//! and resumes consuming, and every job it accepted is converted and announced exactly once.
//!
//! Live events lose what was published while the broker was away: open streams are told to
//! resync, and a resume from before the gap gets a resync too.
//!
//! Its own test binary: it stops the broker everything else uses, so nothing may run beside it
//! (cargo runs test binaries one after another).

mod common;

use std::time::{Duration, Instant};

use common::{Backend, TestApp, media, spawn_with};
use futures::StreamExt;
use mp3conv_contract::event::{Frame, Parser};

/// An event stream of one owner, read frame by frame.
struct EventStream {
    body: std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    parser: Parser,
    frames: std::collections::VecDeque<Frame>,
}

impl EventStream {
    async fn open(app: &TestApp, owner: &str, last_event_id: Option<&str>) -> EventStream {
        let mut request = app.request(reqwest::Method::GET, "/internal/events", owner);
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        EventStream {
            body: Box::pin(response.bytes_stream()),
            parser: Parser::new(),
            frames: Default::default(),
        }
    }

    async fn next(&mut self) -> Frame {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(frame) = self.frames.pop_front() {
                return frame;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let chunk = tokio::time::timeout(left, self.body.next())
                .await
                .expect("a frame in time")
                .expect("the stream is open")
                .unwrap();
            self.frames.extend(self.parser.feed(&chunk));
        }
    }
}

fn rabbitmqctl(args: &[&str]) {
    let output = std::process::Command::new("rabbitmqctl")
        .args(args)
        .output()
        .expect("running rabbitmqctl (the test command installs RabbitMQ)");
    assert!(
        output.status.success(),
        "rabbitmqctl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_survive_a_broker_restart() {
    // One conversion at a time, each at real-time speed (3 s), so one is converting and the
    // others wait in the queue when the broker goes.
    let app = spawn_with(Backend::Services, |c| {
        c.concurrency = 1;
        c.convert.read_rate = Some(1.0);
    })
    .await;
    let clip = media("mp4");
    let mut stream = EventStream::open(&app, "rita", None).await;
    let mut accepted = Vec::new();
    for _ in 0..4 {
        accepted.push(app.upload_ok("rita", "clip.mp4", clip.clone()).await);
    }

    let last: serde_json::Value = app
        .job("rita", accepted.last().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(last["status"], "queued", "the run is still under way");

    // The broker stops (connections drop, unacknowledged deliveries return to their durable
    // queues) and comes back.
    let before_gap = stream.next().await;
    assert_eq!(before_gap.event, "job.queued");
    rabbitmqctl(&["stop_app"]);
    // While it is down, an upload cannot be queued: refused with 503, nothing left behind.
    let refused = app.upload("rita", "clip.mp4", clip.clone()).await;
    assert_eq!(refused.status(), 503, "{}", refused.text().await.unwrap());
    rabbitmqctl(&["start_app"]);
    rabbitmqctl(&["await_startup"]);

    // After the restart the worker takes new jobs again...
    let deadline = Instant::now() + Duration::from_secs(60);
    let after = loop {
        let response = app.upload("rita", "clip.mp4", clip.clone()).await;
        if response.status() == 202 {
            let job: serde_json::Value = response.json().await.unwrap();
            break job["id"].as_str().unwrap().to_owned();
        }
        // Reconnecting takes the worker a moment; until then it says 503, never 5xx else.
        assert_eq!(response.status(), 503);
        assert!(Instant::now() < deadline, "the worker never reconnected");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    accepted.push(after);

    // The open stream was told events may be lost (after what it got before the restart)...
    loop {
        let frame = stream.next().await;
        if frame.event == "resync" {
            break;
        }
    }
    // ...and a resume from before the gap cannot pretend continuity.
    let mut resumed = EventStream::open(&app, "rita", before_gap.id.as_deref()).await;
    assert_eq!(resumed.next().await.event, "resync");

    // ...and every accepted job is done, with one announcement each.
    for id in &accepted {
        let job = app.settled("rita", id).await;
        assert_eq!(job["status"], "done", "{job}");
    }
    for id in &accepted {
        let announced = app.announcements(id).await;
        assert_eq!(announced.len(), 1, "{id}: {announced:?}");
    }
    let page: serde_json::Value = app
        .request(reqwest::Method::GET, "/internal/jobs?limit=100", "rita")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        page["jobs"].as_array().unwrap().len(),
        accepted.len(),
        "the refused upload left no job"
    );
    app.stop().await;
}
