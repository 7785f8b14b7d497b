//! Live job events over Server-Sent Events, end to end: a client opens `GET /v1/events` or
//! `GET /v1/jobs/{id}/events` on the gateway, as `EventSource` or the CLI would, and watches
//! jobs move, in `mp3conv up` and in the cluster's shape (host + API-role worker + converter
//! on RabbitMQ, MariaDB and the MongoDB-compatible server).

mod common;

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use common::api::{self, JOB_DEADLINE, System, expect, expect_error, send};
use common::media;
use mp3conv_contract::event::{Event, Frame, Parser};
use reqwest::{Method, RequestBuilder, Response};
use serde_json::Value;
use tokio::time::Instant;

/// How a stream is opened.
enum Auth<'a> {
    Bearer(&'a str),
    /// A ticket from `POST /v1/events/ticket`, in the query (as a browser's `EventSource`).
    Ticket(String),
}

/// One open event stream, read frame by frame.
struct Stream {
    response: Response,
    parser: Parser,
    frames: VecDeque<Frame>,
    /// Everything received, comments included.
    raw: String,
    ended: bool,
}

/// The request for a stream at `path`, resuming after `last_event_id` if given (as the
/// `Last-Event-ID` header for a bearer, as `?last_event_id=` with a ticket).
fn stream_request(
    system: &System,
    path: &str,
    auth: &Auth<'_>,
    last_event_id: Option<&str>,
) -> RequestBuilder {
    let mut query = Vec::new();
    let request = match auth {
        Auth::Bearer(token) => {
            let request = system.request(Method::GET, path).bearer_auth(token);
            match last_event_id {
                Some(id) => request.header("last-event-id", id),
                None => request,
            }
        }
        Auth::Ticket(ticket) => {
            query.push(("ticket", ticket.clone()));
            if let Some(id) = last_event_id {
                query.push(("last_event_id", id.to_owned()));
            }
            system.request(Method::GET, path)
        }
    };
    request.query(&query).header("accept", "text/event-stream")
}

impl Stream {
    /// Opens a stream, which must answer 200 `text/event-stream` as documented.
    async fn open(
        system: &System,
        path: &str,
        auth: &Auth<'_>,
        last_event_id: Option<&str>,
    ) -> Stream {
        let response = stream_request(system, path, auth, last_event_id)
            .send()
            .await
            .expect("the system answers");
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned());
        if status != 200 {
            let body = response.text().await.unwrap_or_default();
            panic!("GET {path}: {status} {body}");
        }
        assert!(response.headers().contains_key("x-request-id"));
        assert_eq!(response.headers()["cache-control"], "no-store");
        // The stream's body is checked frame by frame below; its status and type here.
        api::conforms("GET", path, status, content_type.as_deref(), b"");
        Stream {
            response,
            parser: Parser::new(),
            frames: VecDeque::new(),
            raw: String::new(),
            ended: false,
        }
    }

    /// The next frame, or `None` once the stream has ended; fails the test if nothing comes
    /// within `within`.
    async fn next(&mut self, within: Duration) -> Option<Frame> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(frame) = self.frames.pop_front() {
                return Some(frame);
            }
            if self.ended {
                return None;
            }
            match tokio::time::timeout_at(deadline, self.response.chunk()).await {
                Err(_) => panic!("nothing within {within:?}; so far:\n{}", self.raw),
                Ok(Ok(Some(bytes))) => {
                    self.raw.push_str(&String::from_utf8_lossy(&bytes));
                    self.frames.extend(self.parser.feed(&bytes));
                }
                Ok(Ok(None)) => self.ended = true,
                Ok(Err(e)) => panic!("the stream broke: {e}; so far:\n{}", self.raw),
            }
        }
    }

    /// The next frame, which must be one of our events with an id.
    async fn event(&mut self, within: Duration) -> (String, Event) {
        let frame = self
            .next(within)
            .await
            .unwrap_or_else(|| panic!("the stream ended; so far:\n{}", self.raw));
        let event = frame
            .event()
            .unwrap_or_else(|| panic!("not an event: {frame:?}"));
        assert_eq!(frame.event, event.kind(), "the SSE name is the type");
        let id = frame.id.unwrap_or_else(|| panic!("no id: {event:?}"));
        (id, event)
    }

    /// Events up to and including the final one of `job` (done, failed or deleted).
    async fn until_final(&mut self, job: &str) -> Vec<(String, Event)> {
        let mut seen = Vec::new();
        loop {
            let (id, event) = self.event(JOB_DEADLINE).await;
            let ends =
                event.ends_job() && event.job_id().map(|j| j.to_string()) == Some(job.into());
            seen.push((id, event));
            if ends {
                return seen;
            }
        }
    }

    /// Reads until a comment line `: keepalive` arrives; no event may come first.
    async fn heartbeat(&mut self, within: Duration) {
        let deadline = Instant::now() + within;
        while !self.raw.contains("\n: keepalive\n") {
            match tokio::time::timeout_at(deadline, self.response.chunk()).await {
                Err(_) => panic!("no heartbeat within {within:?}; so far:\n{}", self.raw),
                Ok(Ok(Some(bytes))) => {
                    self.raw.push_str(&String::from_utf8_lossy(&bytes));
                    self.frames.extend(self.parser.feed(&bytes));
                    assert!(self.frames.is_empty(), "not idle: {:?}", self.frames);
                }
                Ok(other) => panic!("the stream ended: {other:?}; so far:\n{}", self.raw),
            }
        }
    }
}

/// A fresh stream ticket for `token`'s user.
async fn ticket(system: &System, token: &str) -> String {
    let body = expect(system.authed(token, Method::POST, "/v1/events/ticket"), 201).await;
    let ticket = body["ticket"].as_str().expect("a ticket").to_owned();
    assert!(ticket.len() >= 40, "{body}");
    assert!(body["expires_at"].is_string(), "{body}");
    ticket
}

/// Uploads test media `kind` as `name`; the created job.
async fn upload(system: &System, token: &str, kind: &str, name: &str) -> Value {
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(std::fs::read(media(kind)).unwrap())
            .file_name(name.to_owned())
            .mime_str("video/mp4")
            .unwrap(),
    );
    expect(
        system
            .authed(token, Method::POST, "/v1/jobs")
            .multipart(form),
        202,
    )
    .await
}

fn job_of(event: &Event) -> String {
    event.job_id().expect("a job's event").to_string()
}

fn progress_of(event: &Event) -> Option<u8> {
    match event {
        Event::JobProgress { job } => Some(job.progress),
        _ => None,
    }
}

/// What a user's stream must show for an upload: queued, progress that never goes back, done
/// with the audio's address; the job's own stream shows the same ending and then ends; the
/// notification follows. Another user's stream, open all along, sees only that user's job,
/// which fails with the reason.
async fn streams_follow_jobs_and_only_their_owners(system: &System) {
    let alice = system.user("alice").await;
    let bob = system.user("bob").await;
    let mut alices = Stream::open(system, "/v1/events", &Auth::Bearer(&alice), None).await;
    let bobs_ticket = ticket(system, &bob).await;
    let mut bobs = Stream::open(system, "/v1/events", &Auth::Ticket(bobs_ticket), None).await;

    let job = upload(system, &alice, "clip-60", "Long talk.mp4").await;
    let id = job["id"].as_str().unwrap().to_owned();
    let mut own = Stream::open(
        system,
        &format!("/v1/jobs/{id}/events"),
        &Auth::Bearer(&alice),
        None,
    )
    .await;

    let seen = alices.until_final(&id).await;
    let kinds: Vec<_> = seen.iter().map(|(_, e)| e.kind()).collect();
    assert_eq!(kinds.first(), Some(&"job.queued"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"job.done"), "{kinds:?}");
    assert!(seen.iter().all(|(_, e)| job_of(e) == id), "{seen:?}");
    let progress: Vec<u8> = seen.iter().filter_map(|(_, e)| progress_of(e)).collect();
    assert!(!progress.is_empty(), "no progress event: {kinds:?}");
    assert!(
        progress.windows(2).all(|w| w[0] <= w[1]),
        "progress went back: {progress:?}"
    );
    let ids: HashSet<_> = seen.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(ids.len(), seen.len(), "every event has its own id");
    let Some((_, Event::JobDone { job, audio_url })) = seen.last() else {
        unreachable!()
    };
    assert_eq!(audio_url, &format!("/v1/jobs/{id}/audio"));
    assert_eq!(job.progress, 100);
    let audio = send(system.authed(&alice, Method::GET, audio_url)).await;
    assert_eq!(audio.status(), 200);
    assert_eq!(audio.headers()["content-type"], "audio/mpeg");

    // The job's own stream: its state when opened, then its events, ending with done.
    let mine = own.until_final(&id).await;
    assert!(mine.iter().all(|(_, e)| job_of(e) == id), "{mine:?}");
    assert_eq!(mine.last().unwrap().1, seen.last().unwrap().1);
    assert!(
        own.next(Duration::from_secs(10)).await.is_none(),
        "it ends after done"
    );

    // The notifier's record of it reaches the stream as well.
    loop {
        let (_, event) = alices.event(JOB_DEADLINE).await;
        if let Event::NotificationCreated { notification } = event {
            assert_eq!(notification.job_id.to_string(), id);
            // Notifications link with the public address (`public_url`).
            let link = notification.audio_url.expect("a done job's link");
            assert!(link.ends_with(audio_url.as_str()), "{link}");
            break;
        }
    }

    // Bob's stream was open all along. Had any of Alice's events reached it, they would come
    // before the events of his own job, which starts now.
    expect_error(
        system
            .authed(&bob, Method::GET, &format!("/v1/jobs/{id}/events"))
            .header("accept", "text/event-stream"),
        404,
        "not_found",
    )
    .await;
    let failing = upload(system, &bob, "mute", "Silent film.mp4").await;
    let bobs_id = failing["id"].as_str().unwrap().to_owned();
    let his = bobs.until_final(&bobs_id).await;
    assert!(his.iter().all(|(_, e)| job_of(e) == bobs_id), "{his:?}");
    assert_eq!(his[0].1.kind(), "job.queued");
    let Some((_, Event::JobFailed { job })) = his.last() else {
        panic!("{his:?}")
    };
    let error = job.error.as_ref().expect("the reason");
    assert_eq!(error.code, "no_audio");
    assert!(!error.message.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn streams_follow_jobs_and_only_their_owners_embedded() {
    let system = System::embedded(&[]);
    streams_follow_jobs_and_only_their_owners(&system).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn streams_follow_jobs_and_only_their_owners_with_split_roles() {
    let system = System::services_split();
    streams_follow_jobs_and_only_their_owners(&system).await;
    // Idle now: the default heartbeat (15 s) passes through worker, gateway and host.
    let alice = system.user("idle").await;
    let mut idle = Stream::open(&system, "/v1/events", &Auth::Bearer(&alice), None).await;
    idle.heartbeat(Duration::from_secs(25)).await;
}

/// A client that lost its stream and comes back with the last id it saw gets exactly what it
/// missed, in order, with the same ids, whether it resumes with the header (a bearer client)
/// or the query (a browser with a new ticket); an id the server does not know gets `resync`.
async fn a_reconnect_gets_exactly_the_missed_events(system: &System) {
    let alice = system.user("resumer").await;
    let mut all_along = Stream::open(system, "/v1/events", &Auth::Bearer(&alice), None).await;
    let mut lost = Stream::open(system, "/v1/events", &Auth::Bearer(&alice), None).await;
    let job = upload(system, &alice, "clip", "Short.mp4").await;
    let id = job["id"].as_str().unwrap().to_owned();
    let (last_seen, first) = lost.event(JOB_DEADLINE).await;
    assert_eq!(first.kind(), "job.queued");
    drop(lost);

    let mut expected = all_along.until_final(&id).await;
    assert_eq!(expected[0].0, last_seen, "both streams carry the same ids");
    expected.remove(0);
    loop {
        let event = all_along.event(JOB_DEADLINE).await;
        let notified = matches!(event.1, Event::NotificationCreated { .. });
        expected.push(event);
        if notified {
            break;
        }
    }

    let by_header = Stream::open(
        system,
        "/v1/events",
        &Auth::Bearer(&alice),
        Some(&last_seen),
    )
    .await;
    let fresh_ticket = ticket(system, &alice).await;
    let by_query = Stream::open(
        system,
        "/v1/events",
        &Auth::Ticket(fresh_ticket),
        Some(&last_seen),
    )
    .await;
    let mut resumed = [by_header, by_query];
    for stream in &mut resumed {
        let mut replayed = Vec::new();
        for _ in 0..expected.len() {
            replayed.push(stream.event(Duration::from_secs(30)).await);
        }
        assert_eq!(replayed, expected);
    }
    // Nothing more was replayed: the next event on each is the one that happens next.
    expect(
        system.authed(&alice, Method::DELETE, &format!("/v1/jobs/{id}")),
        204,
    )
    .await;
    for stream in &mut resumed {
        let (_, next) = stream.event(Duration::from_secs(30)).await;
        assert!(
            matches!(&next, Event::JobDeleted { job_id } if job_id.to_string() == id),
            "{next:?}"
        );
    }

    let mut unknown = Stream::open(
        system,
        "/v1/events",
        &Auth::Bearer(&alice),
        Some("0190c2d4-0000-7000-8000-000000000000"),
    )
    .await;
    let frame = unknown.next(Duration::from_secs(30)).await.unwrap();
    assert!(
        matches!(frame.event(), Some(Event::Resync { .. })),
        "{frame:?}"
    );
    assert_eq!(frame.id, None, "a resync keeps the client's last id");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reconnect_gets_exactly_the_missed_events_embedded() {
    let system = System::embedded(&[]);
    a_reconnect_gets_exactly_the_missed_events(&system).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reconnect_gets_exactly_the_missed_events_on_services() {
    let system = System::services_with_eventing();
    a_reconnect_gets_exactly_the_missed_events(&system).await;
}

/// A stream whose worker dies under it reaches the client broken, not ended: an end is what
/// a stream does when its time is up, a break is what tells a client to resume at once, and
/// the gateway passing the worker's answer on must not turn the one into the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stream_whose_worker_dies_breaks_for_the_client_on_services() {
    let mut system = System::services();
    let alice = system.user("alice").await;
    let mut stream = Stream::open(&system, "/v1/events", &Auth::Bearer(&alice), None).await;
    drop(system.worker.take());
    let ending = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match stream.response.chunk().await {
                Ok(Some(bytes)) => stream.raw.push_str(&String::from_utf8_lossy(&bytes)),
                Ok(None) => break Ok(()),
                Err(err) => break Err(err),
            }
        }
    })
    .await
    .expect("the stream ends or breaks once its worker is gone");
    assert!(
        ending.is_err(),
        "the stream ended as if its time were up; received:\n{}",
        stream.raw
    );
}

/// Who may open a stream, and for how long: a token or a single-use, short-lived ticket; the
/// stream ends by itself within its time and a client carries on where it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn streams_need_a_token_or_a_fresh_ticket_and_end_on_time() {
    // Both limits are what this test is about: a 1 s ticket and a 3 s stream.
    let system = System::embedded_with(
        &[],
        &[
            ("SPIN_VARIABLE_EVENT_TICKET_SECONDS", "1"),
            ("SPIN_VARIABLE_EVENT_STREAM_SECONDS", "3"),
        ],
    );
    let alice = system.user("gatekeeper").await;
    let stream = |request: RequestBuilder| request.header("accept", "text/event-stream");

    expect_error(
        stream(system.request(Method::GET, "/v1/events")),
        401,
        "missing_token",
    )
    .await;
    expect_error(
        stream(system.authed("not-a-token", Method::GET, "/v1/events")),
        401,
        "invalid_token",
    )
    .await;
    expect_error(
        system.authed(&alice, Method::GET, "/v1/events"),
        406,
        "not_acceptable",
    )
    .await;
    expect_error(
        system.request(Method::POST, "/v1/events/ticket"),
        401,
        "missing_token",
    )
    .await;
    expect_error(
        stream(system.request(Method::GET, "/v1/events?ticket=forged")),
        401,
        "invalid_ticket",
    )
    .await;

    let once = ticket(&system, &alice).await;
    // A ticket is no token.
    expect_error(
        system.authed(&once, Method::GET, "/v1/me"),
        401,
        "invalid_token",
    )
    .await;
    let mut opened = Stream::open(&system, "/v1/events", &Auth::Ticket(once.clone()), None).await;
    expect_error(
        stream(system.request(Method::GET, &format!("/v1/events?ticket={once}"))),
        401,
        "invalid_ticket",
    )
    .await;
    let stale = ticket(&system, &alice).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    expect_error(
        stream(system.request(Method::GET, &format!("/v1/events?ticket={stale}"))),
        401,
        "invalid_ticket",
    )
    .await;

    // The stream opened with the used ticket ends cleanly after its 3 s.
    let started = Instant::now();
    assert!(opened.next(Duration::from_secs(15)).await.is_none());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(opened.raw.starts_with("retry: "), "{}", opened.raw);

    // A finished job's stream: its final state, then the end; asked again by a client that
    // already saw it, 204 tells `EventSource` to stop reconnecting.
    let job = upload(&system, &alice, "clip", "Done.mp4").await;
    let id = job["id"].as_str().unwrap().to_owned();
    system.settled(&alice, &id).await;
    let path = format!("/v1/jobs/{id}/events");
    let mut finished = Stream::open(&system, &path, &Auth::Bearer(&alice), None).await;
    let (last, state) = finished.event(Duration::from_secs(30)).await;
    assert_eq!(state.kind(), "job.done");
    assert!(finished.next(Duration::from_secs(10)).await.is_none());
    let again = send(stream(
        system
            .authed(&alice, Method::GET, &path)
            .header("last-event-id", last),
    ))
    .await;
    assert_eq!(again.status(), 204);
}
