//! Following a job to its end on the server's live event stream (`GET /v1/jobs/{id}/events`),
//! with polling as the fallback.
//!
//! The stream sends the job's current state first, then its changes, and ends right after the
//! job's final event. A server also ends streams after a few minutes: the client then reconnects
//! with `Last-Event-ID` (the server answers 204 when the job has meanwhile ended, and one poll
//! reads how). An older server answers 404/405/406: the client polls. A stream that breaks twice
//! in a row (a transport error, an error answer, a `resync`, nothing for [`SILENCE`] although
//! the server heartbeats every 15 s, or an end before any event) also sends the client to
//! polling, so `--wait` never hangs on a stream.

use std::fmt::Display;
use std::time::Duration;

use futures::{Stream, StreamExt as _};
use mp3conv_contract::event::{Event, Parser};
use mp3conv_contract::job::{JobId, PublicJob};

use super::{Client, Failure, Progress, check};

/// A stream silent for longer than this is broken (the server heartbeats every 15 s).
pub(super) const SILENCE: Duration = Duration::from_secs(45);
/// Breaks in a row after which the client polls instead.
const MAX_BREAKS: u32 = 2;
/// The pause before reconnecting until the server says otherwise (`retry:`).
const DEFAULT_RETRY: Duration = Duration::from_secs(1);
/// The longest pause a server's `retry:` can ask for.
const MAX_RETRY: Duration = Duration::from_secs(10);

/// What the answer to a stream request means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Answer {
    /// The event stream: read it.
    Stream,
    /// No stream to follow here (an older server, too many streams, or the job already ended
    /// since the last event seen): poll.
    Poll,
    /// A failure of the server's or of the way there: counts as a break.
    Break,
    /// The request itself is refused (the login): fail as any request would.
    Fail,
}

/// Reads a stream request's answer from its status and content type.
pub(super) fn answer(status: u16, content_type: Option<&str>) -> Answer {
    let event_stream = content_type.is_some_and(|ct| {
        ct.trim_start()
            .to_ascii_lowercase()
            .starts_with("text/event-stream")
    });
    match status {
        200 if event_stream => Answer::Stream,
        401 | 403 => Answer::Fail,
        408 | 500..=599 => Answer::Break,
        // 204: the job ended since the last event seen; 404/405/406: an older server (or no such
        // job, which polling reports); 429: too many streams open; anything else: not a stream.
        _ => Answer::Poll,
    }
}

/// How reading one stream ended, short of the job's end.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Ended {
    /// The job is done or failed (boxed: a job is large beside the other variants).
    Job(Box<PublicJob>),
    /// The job was deleted.
    Deleted,
    /// The server ended the stream cleanly (its time limit), after `events` of the job's events.
    Closed { events: usize },
    /// The server cannot replay what was missed.
    Resync,
    /// The connection or the answer failed, or the stream went silent.
    Broke(String),
}

/// What to do after a stream ended.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Next {
    /// The job ended (done or failed).
    Finished(Box<PublicJob>),
    /// The job was deleted while being followed.
    Deleted,
    /// Open the stream again after this pause, resuming from the last event seen.
    Reconnect(Duration),
    /// Give up on the stream: poll.
    Poll,
}

/// The state kept across the connections that follow one job.
#[derive(Debug)]
pub(super) struct Follower {
    job: JobId,
    last_event_id: Option<String>,
    retry: Duration,
    /// Streams in a row that broke (reset by every event of the job).
    breaks: u32,
}

impl Follower {
    pub(super) fn new(job: JobId) -> Follower {
        Follower {
            job,
            last_event_id: None,
            retry: DEFAULT_RETRY,
            breaks: 0,
        }
    }

    /// The id to resume from (`Last-Event-ID`), once a frame had one.
    pub(super) fn last_event_id(&self) -> Option<&str> {
        self.last_event_id.as_deref()
    }

    /// Reads one stream's body until the job ends or the stream does; reports each percent
    /// to `progress`. Each chunk must come within `silence`.
    pub(super) async fn read<S, B, E>(
        &mut self,
        body: S,
        silence: Duration,
        mut progress: impl FnMut(u8),
    ) -> Ended
    where
        S: Stream<Item = Result<B, E>>,
        B: AsRef<[u8]>,
        E: Display,
    {
        let mut body = std::pin::pin!(body);
        let mut parser = Parser::new();
        let mut events = 0;
        loop {
            let chunk = match tokio::time::timeout(silence, body.next()).await {
                Err(_) => {
                    return Ended::Broke(format!(
                        "the stream was silent for {}",
                        humantime::format_duration(silence)
                    ));
                }
                Ok(None) => return Ended::Closed { events },
                Ok(Some(Err(err))) => return Ended::Broke(format!("the stream broke off: {err}")),
                Ok(Some(Ok(chunk))) => chunk,
            };
            for frame in parser.feed(chunk.as_ref()) {
                if let Some(millis) = frame.retry {
                    self.retry = Duration::from_millis(millis).min(MAX_RETRY);
                }
                // The parser carries the id from frame to frame; an empty one resets it.
                if let Some(id) = &frame.id {
                    self.last_event_id = (!id.is_empty()).then(|| id.clone());
                }
                match frame.event() {
                    Some(Event::Resync { .. }) => return Ended::Resync,
                    Some(event) if event.job_id() != Some(self.job) => {}
                    Some(Event::JobQueued { job } | Event::JobProgress { job }) => {
                        events += 1;
                        self.breaks = 0;
                        progress(job.progress);
                    }
                    Some(
                        Event::JobDone { job, .. }
                        | Event::JobFailed { job }
                        | Event::JobExpired { job },
                    ) => {
                        return Ended::Job(Box::new(job));
                    }
                    Some(Event::JobDeleted { .. }) => return Ended::Deleted,
                    // Not ours, or not about the job: skipped.
                    Some(Event::NotificationCreated { .. }) | None => {}
                }
            }
        }
    }

    /// Decides what follows a stream's end.
    pub(super) fn next(&mut self, ended: Ended) -> Next {
        match ended {
            Ended::Job(job) => Next::Finished(job),
            Ended::Deleted => Next::Deleted,
            // The server's time limit on a healthy stream: carry on where it stopped.
            Ended::Closed { events } if events > 0 => Next::Reconnect(self.retry),
            Ended::Closed { .. } | Ended::Resync | Ended::Broke(_) => {
                self.breaks += 1;
                if self.breaks >= MAX_BREAKS {
                    Next::Poll
                } else {
                    Next::Reconnect(self.retry)
                }
            }
        }
    }
}

/// The conversion percent on the "convert" progress bar, which only moves forward.
pub(super) struct Percent {
    progress: Progress,
    shown: u64,
}

impl Percent {
    pub(super) fn new(progress: Progress) -> Percent {
        Percent { progress, shown: 0 }
    }

    pub(super) fn show(&mut self, percent: u8) {
        let percent = u64::from(percent.min(100));
        if percent > self.shown {
            self.progress.advance(percent - self.shown);
            self.shown = percent;
        }
    }

    pub(super) fn finish(&self) {
        self.progress.finish();
    }
}

impl Client {
    /// Follows the job on its event stream until it is done or failed. `Ok(None)`: the stream
    /// cannot be followed (an older server, or it keeps breaking): poll instead.
    pub(super) async fn follow_events(
        &self,
        id: JobId,
        token: &str,
        percent: &mut Percent,
    ) -> Result<Option<PublicJob>, Failure> {
        let mut follower = Follower::new(id);
        let url = self.url(&format!("/v1/jobs/{id}/events"));
        loop {
            let mut request = self
                .http
                .get(&url)
                .header(reqwest::header::ACCEPT, "text/event-stream")
                .bearer_auth(token);
            if let Some(last) = follower.last_event_id() {
                request = request.header("last-event-id", last);
            }
            // The server sends its first bytes at once: the headers must not take longer
            // than the silence allowed afterwards.
            let ended = match tokio::time::timeout(SILENCE, request.send()).await {
                Err(_) => Ended::Broke("no answer to the stream request".into()),
                Ok(Err(err)) => Ended::Broke(format!("the stream request failed: {err}")),
                Ok(Ok(response)) => {
                    let status = response.status().as_u16();
                    let content_type = response
                        .headers()
                        .get(reqwest::header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok());
                    match answer(status, content_type) {
                        Answer::Stream => {
                            follower
                                .read(response.bytes_stream(), SILENCE, |p| percent.show(p))
                                .await
                        }
                        Answer::Poll => {
                            tracing::debug!(status, "no event stream for the job: polling");
                            return Ok(None);
                        }
                        Answer::Break => Ended::Broke(format!("the stream answered {status}")),
                        Answer::Fail => {
                            return match check(response).await {
                                Err(failure) => Err(failure),
                                Ok(_) => Ok(None),
                            };
                        }
                    }
                }
            };
            tracing::debug!(?ended, "the job's event stream ended");
            match follower.next(ended) {
                Next::Finished(job) => return Ok(Some(*job)),
                Next::Deleted => {
                    return Err(Failure::JobFailed(format!(
                        "{id} was deleted before it finished"
                    )));
                }
                Next::Reconnect(pause) => tokio::time::sleep(pause).await,
                Next::Poll => {
                    tracing::debug!("the job's event stream keeps breaking: polling");
                    return Ok(None);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mp3conv_contract::event::{Envelope, comment, frame, retry};
    use mp3conv_contract::job::{Bitrate, Job, Source, Status};

    fn job(status: Status, progress: u8) -> PublicJob {
        let mut job = Job::new(
            "alice".into(),
            Source::Upload {
                filename: "talk.mp4".into(),
                content_type: None,
            },
            Bitrate::default(),
        );
        job.status = status;
        job.progress = progress;
        job.into()
    }

    fn with_id(mut job: PublicJob, id: JobId) -> PublicJob {
        job.id = id;
        job
    }

    /// `text` as a body in chunks of `size` bytes (every frame split somewhere).
    fn chunks(text: &str, size: usize) -> impl Stream<Item = Result<Vec<u8>, String>> {
        let chunks: Vec<_> = text
            .as_bytes()
            .chunks(size)
            .map(|c| Ok(c.to_vec()))
            .collect();
        futures::stream::iter(chunks)
    }

    async fn read_all(
        follower: &mut Follower,
        body: impl Stream<Item = Result<Vec<u8>, String>>,
    ) -> (Ended, Vec<u8>) {
        let mut seen = Vec::new();
        let ended = follower
            .read(body, Duration::from_secs(5), |p| seen.push(p))
            .await;
        (ended, seen)
    }

    #[tokio::test]
    async fn frames_split_across_chunks_show_progress_and_end_on_done() {
        let converting = job(Status::Converting, 40);
        let id = converting.id;
        let progress = Envelope::new("alice", Event::for_job(converting));
        let other = Envelope::new("alice", Event::for_job(job(Status::Converting, 99)));
        let later = Envelope::new(
            "alice",
            Event::for_job(with_id(job(Status::Converting, 80), id)),
        );
        let done = Envelope::new("alice", Event::for_job(with_id(job(Status::Done, 100), id)));
        let text = [
            retry(3000),
            progress.to_sse(),
            comment("keepalive"),
            other.to_sse(),
            later.to_sse(),
            done.to_sse(),
        ]
        .concat()
        .replace('\n', "\r\n");
        for size in [1, 3, 7, 64, text.len()] {
            let mut follower = Follower::new(id);
            let (ended, seen) = read_all(&mut follower, chunks(&text, size)).await;
            match ended {
                Ended::Job(job) => assert_eq!((job.id, job.status), (id, Status::Done)),
                other => panic!("chunks of {size}: {other:?}"),
            }
            assert_eq!(
                seen,
                [40, 80],
                "chunks of {size}: another job's events are skipped"
            );
            assert_eq!(follower.last_event_id(), Some(done.id.as_str()));
            assert_eq!(follower.retry, Duration::from_secs(3));
        }
    }

    #[tokio::test]
    async fn failed_and_deleted_end_the_stream() {
        let failed = job(Status::Failed, 10);
        let id = failed.id;
        let text = frame(Some("1"), &Event::for_job(failed));
        let (ended, _) = read_all(&mut Follower::new(id), chunks(&text, 5)).await;
        assert!(matches!(ended, Ended::Job(job) if job.status == Status::Failed));
        let text = frame(Some("2"), &Event::JobDeleted { job_id: id });
        let mut follower = Follower::new(id);
        let (ended, _) = read_all(&mut follower, chunks(&text, 5)).await;
        assert_eq!(follower.next(ended), Next::Deleted);
    }

    #[tokio::test]
    async fn the_server_ending_a_healthy_stream_means_reconnect_from_the_last_id() {
        let queued = job(Status::Queued, 0);
        let id = queued.id;
        let mut follower = Follower::new(id);
        let text = [
            retry(2000),
            frame(Some("first"), &Event::for_job(queued.clone())),
            frame(
                Some("second"),
                &Event::for_job(with_id(job(Status::Converting, 5), id)),
            ),
        ]
        .concat();
        let (ended, seen) = read_all(&mut follower, chunks(&text, 10)).await;
        assert_eq!(ended, Ended::Closed { events: 2 });
        assert_eq!(seen, [0, 5]);
        assert_eq!(follower.last_event_id(), Some("second"));
        // Many healthy streams in a row never fall back to polling.
        for _ in 0..5 {
            assert_eq!(
                follower.next(Ended::Closed { events: 1 }),
                Next::Reconnect(Duration::from_secs(2))
            );
        }
        // A frame on the next stream without an id keeps the last one.
        let text = frame(
            None,
            &Event::for_job(with_id(job(Status::Converting, 6), id)),
        );
        let (ended, _) = read_all(&mut follower, chunks(&text, 10)).await;
        assert_eq!(ended, Ended::Closed { events: 1 });
        assert_eq!(follower.last_event_id(), Some("second"));
    }

    #[tokio::test]
    async fn two_breaks_in_a_row_fall_back_to_polling_but_an_event_between_them_does_not() {
        let converting = job(Status::Converting, 30);
        let id = converting.id;
        let mut follower = Follower::new(id);
        let broken = futures::stream::iter([
            Ok(b"retry: 10\n\n".to_vec()),
            // Another job's event: it carries the retry (the parser reports it with a frame),
            // but it is no sign of health for this job.
            Ok(frame(Some("x"), &Event::for_job(job(Status::Converting, 1))).into_bytes()),
            Err("connection reset".to_owned()),
        ]);
        let (ended, _) = read_all(&mut follower, broken).await;
        assert!(matches!(&ended, Ended::Broke(why) if why.contains("connection reset")));
        assert_eq!(
            follower.next(ended),
            Next::Reconnect(Duration::from_millis(10))
        );
        // A stream with one of the job's events: the count starts again.
        let text = frame(Some("a"), &Event::for_job(converting));
        let (ended, _) = read_all(&mut follower, chunks(&text, 4)).await;
        assert_eq!(ended, Ended::Closed { events: 1 });
        assert!(matches!(follower.next(ended), Next::Reconnect(_)));
        assert!(matches!(
            follower.next(Ended::Broke("x".into())),
            Next::Reconnect(_)
        ));
        // An end without any event, or a resync, is a break too.
        assert_eq!(follower.next(Ended::Closed { events: 0 }), Next::Poll);
        let mut follower = Follower::new(id);
        let text = frame(
            None,
            &Event::Resync {
                reason: "too old".into(),
            },
        );
        let (ended, _) = read_all(&mut follower, chunks(&text, 4)).await;
        assert_eq!(ended, Ended::Resync);
        assert!(matches!(follower.next(ended), Next::Reconnect(_)));
        assert_eq!(follower.next(Ended::Resync), Next::Poll);
    }

    #[tokio::test]
    async fn a_silent_stream_is_broken() {
        let id = JobId::new();
        let mut follower = Follower::new(id);
        // Heartbeats, then nothing at all (the connection stays open).
        let body = futures::stream::iter([Ok::<_, String>(comment("keepalive").into_bytes())])
            .chain(futures::stream::pending());
        let ended = follower.read(body, Duration::from_millis(50), |_| {}).await;
        assert!(
            matches!(&ended, Ended::Broke(why) if why.contains("silent")),
            "{ended:?}"
        );
    }

    #[test]
    fn answers_decide_between_the_stream_polling_and_failing() {
        let sse = Some("text/event-stream; charset=utf-8");
        let json = Some("application/json");
        let table = [
            (200, sse, Answer::Stream),
            (200, Some("Text/Event-Stream"), Answer::Stream),
            (200, json, Answer::Poll),
            (200, None, Answer::Poll),
            (204, None, Answer::Poll),
            (404, json, Answer::Poll),
            (405, json, Answer::Poll),
            (406, json, Answer::Poll),
            (429, json, Answer::Poll),
            (401, json, Answer::Fail),
            (403, json, Answer::Fail),
            (500, json, Answer::Break),
            (502, None, Answer::Break),
            (503, json, Answer::Break),
        ];
        for (status, content_type, expected) in table {
            assert_eq!(
                answer(status, content_type),
                expected,
                "{status} {content_type:?}"
            );
        }
    }

    #[test]
    fn the_percent_only_moves_forward() {
        let mut percent = Percent::new(Progress::new(false, "convert", 100));
        percent.show(30);
        percent.show(20);
        percent.show(250);
        assert_eq!(percent.shown, 100);
    }

    /// A recorded request: its path and headers.
    type Seen = std::sync::Arc<std::sync::Mutex<Vec<(String, http::HeaderMap)>>>;

    /// A server on 127.0.0.1 answering each request with the next of `script` (status,
    /// content type, body), recording the requests.
    async fn fake_server(script: Vec<(u16, &'static str, String)>) -> (Client, Seen) {
        use http_body_util::Full;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let script = std::sync::Arc::new(std::sync::Mutex::new(std::collections::VecDeque::from(
            script,
        )));
        let seen = Seen::default();
        let recorded = seen.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (script, recorded) = (script.clone(), recorded.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request: http::Request<_>| {
                        recorded
                            .lock()
                            .unwrap()
                            .push((request.uri().path().to_owned(), request.headers().clone()));
                        let (status, content_type, body) = script
                            .lock()
                            .unwrap()
                            .pop_front()
                            .expect("a request past the script");
                        let response = http::Response::builder()
                            .status(status)
                            .header("content-type", content_type)
                            .body(Full::new(bytes::Bytes::from(body)))
                            .unwrap();
                        async move { Ok::<_, std::convert::Infallible>(response) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        mp3conv_host::tls::install_crypto_provider();
        let client = Client {
            server: format!("http://{address}"),
            json: false,
            http: reqwest::Client::new(),
            terminal: false,
        };
        (client, seen)
    }

    const SSE: &str = "text/event-stream";
    const JSON: &str = "application/json";

    #[tokio::test]
    async fn the_client_resumes_from_the_last_event_and_ends_on_done() {
        let converting = job(Status::Converting, 50);
        let id = converting.id;
        let first = [retry(5), frame(Some("a"), &Event::for_job(converting))].concat();
        let done = Event::for_job(with_id(job(Status::Done, 100), id));
        let second = [comment("keepalive"), frame(Some("b"), &done)].concat();
        let (client, seen) = fake_server(vec![(200, SSE, first), (200, SSE, second)]).await;
        let mut percent = Percent::new(Progress::new(false, "convert", 100));
        let job = client
            .follow_events(id, "tok", &mut percent)
            .await
            .unwrap()
            .expect("followed on the stream");
        assert_eq!((job.id, job.status), (id, Status::Done));
        assert_eq!(percent.shown, 50);
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 2);
        for (path, headers) in seen.iter() {
            assert_eq!(path, &format!("/v1/jobs/{id}/events"));
            assert_eq!(headers["accept"], "text/event-stream");
            assert_eq!(headers["authorization"], "Bearer tok");
        }
        assert!(!seen[0].1.contains_key("last-event-id"));
        assert_eq!(seen[1].1["last-event-id"], "a");
    }

    #[tokio::test]
    async fn an_older_server_means_polling_and_a_refused_login_fails() {
        let body = r#"{"error":{"code":"not_found","message":"no such route"}}"#.to_owned();
        let id = JobId::new();
        let (client, seen) = fake_server(vec![(404, JSON, body)]).await;
        let mut percent = Percent::new(Progress::new(false, "convert", 100));
        let followed = client.follow_events(id, "tok", &mut percent).await.unwrap();
        assert!(followed.is_none());
        assert_eq!(seen.lock().unwrap().len(), 1);

        let body = r#"{"error":{"code":"invalid_token","message":"expired"}}"#.to_owned();
        let (client, _) = fake_server(vec![(401, JSON, body)]).await;
        match client.follow_events(id, "tok", &mut percent).await {
            Err(Failure::Auth(message)) => assert!(message.contains("mp3conv login"), "{message}"),
            other => panic!("{other:?}"),
        }
    }
}
