//! Live job events (`GET /v1/events`, `GET /v1/jobs/{id}/events`): what a user's stream
//! carries, the envelope the worker passes between its processes, and the Server-Sent Events
//! framing both ends use.
//!
//! On the wire, each event is one SSE frame:
//!
//! ```text
//! id: 0193a5b0-7c1d-7e3f-9a40-5f2b1c3d4e5f
//! event: job.progress
//! data: {"type":"job.progress","job":{...}}
//! ```
//!
//! The `data` line is the JSON of [`Event`], which repeats the type, so a client may read
//! either. Ids are UUIDs v7 assigned once, where the event happens: the same event has the same
//! id on every stream and on every API replica, which is what `Last-Event-ID` resumes from.

use serde::{Deserialize, Serialize};

use crate::job::{JobId, PublicJob, Status};
use crate::notification::Notification;

/// `job.queued`: a job was created.
pub const JOB_QUEUED: &str = "job.queued";
/// `job.progress`: a job moved (downloading, converting, percent).
pub const JOB_PROGRESS: &str = "job.progress";
/// `job.done`: the MP3 is ready.
pub const JOB_DONE: &str = "job.done";
/// `job.failed`: the job will not produce an MP3.
pub const JOB_FAILED: &str = "job.failed";
/// `job.expired`: the job's MP3 expired and is gone; the record stays for a while.
pub const JOB_EXPIRED: &str = "job.expired";
/// `job.deleted`: the job and its files are gone.
pub const JOB_DELETED: &str = "job.deleted";
/// `notification.created`: a new notification.
pub const NOTIFICATION_CREATED: &str = "notification.created";
/// `resync`: the stream cannot replay what the client missed; refetch the state.
pub const RESYNC: &str = "resync";

/// The media type of an event stream.
pub const EVENT_STREAM: &str = "text/event-stream";

/// Whether one `Accept` header value takes an event stream: one of its media ranges is
/// `text/event-stream` (any case, any parameters) with a `q` above 0. Wildcards (`*/*`,
/// `text/*`) do not count: a stream is asked for by name. The gateway serves a stream only to
/// such a request (406 otherwise), and the host counts exactly those apart, by this one rule.
pub fn accepts_event_stream(accept: &str) -> bool {
    accept.split(',').any(|range| {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or_default().trim_matches([' ', '\t']);
        media.eq_ignore_ascii_case(EVENT_STREAM)
            && !parts.any(|parameter| {
                parameter.split_once('=').is_some_and(|(name, value)| {
                    name.trim().eq_ignore_ascii_case("q")
                        && value.trim().parse::<f32>().is_ok_and(|q| q <= 0.0)
                })
            })
    })
}

/// Whether a request is for an event stream, as the host counts streams (apart from ordinary
/// requests) and as the gateway serves them: a `GET` (or a `HEAD`, which the gateway answers
/// as a `GET`: it opens the stream too, so it must be counted and stopped like one) of a path
/// ending in `/events` whose `Accept` values take `text/event-stream`
/// ([`accepts_event_stream`]). Only such requests may take a stream's slot, so a header alone
/// cannot move other work out of the ordinary cap.
pub fn is_stream_request<'a>(
    method: &str,
    path: &str,
    mut accept: impl Iterator<Item = &'a str>,
) -> bool {
    matches!(method, "GET" | "HEAD")
        && path.ends_with("/events")
        && accept.any(accepts_event_stream)
}

/// One event as a user's stream carries it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Event {
    /// A job was created.
    #[serde(rename = "job.queued")]
    JobQueued { job: PublicJob },
    /// A job changed status before finishing, or its conversion advanced.
    #[serde(rename = "job.progress")]
    JobProgress { job: PublicJob },
    /// The MP3 is ready at `audio_url` (a path on the API's origin).
    #[serde(rename = "job.done")]
    JobDone { job: PublicJob, audio_url: String },
    /// The job failed; `job.error` says why.
    #[serde(rename = "job.failed")]
    JobFailed { job: PublicJob },
    /// The job's MP3 expired; `job.expires_at` says when its record goes.
    #[serde(rename = "job.expired")]
    JobExpired { job: PublicJob },
    /// The job was deleted (by its owner, or when its record expired).
    #[serde(rename = "job.deleted")]
    JobDeleted { job_id: JobId },
    /// A notification was recorded for the user.
    #[serde(rename = "notification.created")]
    NotificationCreated { notification: Notification },
    /// What the client missed cannot be replayed (too old, or never seen by this server):
    /// refetch the jobs and notifications, then carry on with this stream.
    #[serde(rename = "resync")]
    Resync { reason: String },
}

/// The path of a job's MP3 on the public API.
pub fn audio_path(id: JobId) -> String {
    format!("/v1/jobs/{id}/audio")
}

impl Event {
    /// The event for a job in its current state: queued, progress, done or failed.
    pub fn for_job(job: PublicJob) -> Event {
        match job.status {
            Status::Queued => Event::JobQueued { job },
            Status::Downloading | Status::Converting => Event::JobProgress { job },
            Status::Done => Event::JobDone {
                audio_url: audio_path(job.id),
                job,
            },
            Status::Failed => Event::JobFailed { job },
            Status::Expired => Event::JobExpired { job },
        }
    }

    /// The SSE event name (the `type` of the JSON).
    pub fn kind(&self) -> &'static str {
        match self {
            Event::JobQueued { .. } => JOB_QUEUED,
            Event::JobProgress { .. } => JOB_PROGRESS,
            Event::JobDone { .. } => JOB_DONE,
            Event::JobFailed { .. } => JOB_FAILED,
            Event::JobExpired { .. } => JOB_EXPIRED,
            Event::JobDeleted { .. } => JOB_DELETED,
            Event::NotificationCreated { .. } => NOTIFICATION_CREATED,
            Event::Resync { .. } => RESYNC,
        }
    }

    /// The job it is about, if any.
    pub fn job_id(&self) -> Option<JobId> {
        match self {
            Event::JobQueued { job }
            | Event::JobProgress { job }
            | Event::JobDone { job, .. }
            | Event::JobFailed { job }
            | Event::JobExpired { job } => Some(job.id),
            Event::JobDeleted { job_id } => Some(*job_id),
            Event::NotificationCreated { notification } => Some(notification.job_id),
            Event::Resync { .. } => None,
        }
    }

    /// Whether no conversion will happen to its job after it (done, failed, expired,
    /// deleted).
    pub fn ends_job(&self) -> bool {
        matches!(
            self,
            Event::JobDone { .. }
                | Event::JobFailed { .. }
                | Event::JobExpired { .. }
                | Event::JobDeleted { .. }
        )
    }
}

/// An event with its id and owner, as the worker passes it from where it happened to the API
/// processes holding streams (the RabbitMQ events exchange, or in process).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// A UUID v7, assigned where the event happened.
    pub id: String,
    /// The user whose streams may see it.
    pub owner: String,
    pub event: Event,
}

impl Envelope {
    /// A new event for `owner` with a fresh id.
    pub fn new(owner: impl Into<String>, event: Event) -> Envelope {
        Envelope {
            id: uuid::Uuid::now_v7().to_string(),
            owner: owner.into(),
            event,
        }
    }

    /// The SSE frame a stream sends for it (never the owner).
    pub fn to_sse(&self) -> String {
        frame(Some(&self.id), &self.event)
    }
}

/// The SSE frame for `event`, with an `id:` line when it has one (a `resync` has none, so the
/// client's `Last-Event-ID` stays the last event it really saw).
pub fn frame(id: Option<&str>, event: &Event) -> String {
    let data = serde_json::to_string(event).expect("an Event always serializes");
    match id {
        Some(id) => format!("id: {id}\nevent: {}\ndata: {data}\n\n", event.kind()),
        None => format!("event: {}\ndata: {data}\n\n", event.kind()),
    }
}

/// An SSE comment (heartbeats; ignored by clients). `text` must be one line.
pub fn comment(text: &str) -> String {
    format!(": {text}\n\n")
}

/// The `retry:` field telling `EventSource` how long to wait before reconnecting.
pub fn retry(millis: u64) -> String {
    format!("retry: {millis}\n\n")
}

/// One dispatched SSE frame, as a client reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frame {
    pub id: Option<String>,
    /// `message` when the frame names none.
    pub event: String,
    pub data: String,
    pub retry: Option<u64>,
}

impl Frame {
    /// The event in its `data`, if it is one of ours.
    pub fn event(&self) -> Option<Event> {
        serde_json::from_str(&self.data).ok()
    }
}

/// A streaming SSE parser after the WHATWG rules: feed it bytes as they arrive, take the
/// frames each chunk completes. Comments and unknown fields are skipped; a frame without data
/// is not dispatched (but its `retry:` is kept for the next one).
#[derive(Debug, Default)]
pub struct Parser {
    buffer: Vec<u8>,
    current: Frame,
    has_data: bool,
    /// Set once a line was seen, to strip a leading byte-order mark once.
    started: bool,
}

/// Lines longer than this are cut off: a hostile server cannot grow the parser without bound.
const MAX_LINE: usize = 1 << 20;

impl Parser {
    pub fn new() -> Parser {
        Parser::default()
    }

    /// Feeds `bytes`; returns the frames completed by them.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Frame> {
        let mut frames = Vec::new();
        self.buffer.extend_from_slice(bytes);
        while let Some(end) = self.buffer.iter().position(|&b| b == b'\n' || b == b'\r') {
            // A CR LF pair is one line end; a CR at the end of the buffer waits for its LF.
            let mut skip = 1;
            if self.buffer[end] == b'\r' {
                match self.buffer.get(end + 1) {
                    Some(b'\n') => skip = 2,
                    Some(_) => {}
                    None => break,
                }
            }
            let line: Vec<u8> = self.buffer.drain(..end + skip).take(end).collect();
            let mut line = String::from_utf8_lossy(&line).into_owned();
            if !self.started {
                self.started = true;
                if let Some(rest) = line.strip_prefix('\u{feff}') {
                    line = rest.to_owned();
                }
            }
            if let Some(frame) = self.line(&line) {
                frames.push(frame);
            }
        }
        if self.buffer.len() > MAX_LINE {
            self.buffer.clear();
        }
        frames
    }

    fn line(&mut self, line: &str) -> Option<Frame> {
        if line.is_empty() {
            let mut frame = std::mem::take(&mut self.current);
            let dispatch = std::mem::take(&mut self.has_data);
            // The id and retry outlive the frame.
            self.current.id.clone_from(&frame.id);
            self.current.retry = frame.retry;
            if !dispatch {
                return None;
            }
            if frame.event.is_empty() {
                frame.event = "message".to_owned();
            }
            return Some(frame);
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => self.current.event = value.to_owned(),
            "data" => {
                if self.has_data {
                    self.current.data.push('\n');
                }
                self.current.data.push_str(value);
                self.has_data = true;
            }
            "id" if !value.contains('\0') => self.current.id = Some(value.to_owned()),
            "retry" => {
                if let Ok(millis) = value.parse() {
                    self.current.retry = Some(millis);
                }
            }
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{Bitrate, Source};

    fn job(status: Status) -> PublicJob {
        let mut job = crate::job::Job::new(
            "alice".into(),
            Source::Upload {
                filename: "talk.mp4".into(),
                content_type: None,
            },
            Bitrate::default(),
        );
        job.status = status;
        job.into()
    }

    #[test]
    fn events_name_their_type_in_json_and_in_the_frame() {
        let done = Event::for_job(job(Status::Done));
        let json: serde_json::Value = serde_json::to_value(&done).unwrap();
        assert_eq!(json["type"], "job.done");
        let id = done.job_id().unwrap();
        assert_eq!(json["audio_url"], format!("/v1/jobs/{id}/audio"));
        assert!(done.ends_job());
        let envelope = Envelope::new("alice", done.clone());
        let sse = envelope.to_sse();
        assert!(sse.starts_with(&format!("id: {}\nevent: job.done\ndata: {{", envelope.id)));
        assert!(sse.ends_with("}\n\n"));
        assert!(!sse.contains("alice"), "the owner stays inside the worker");
        let frames = Parser::new().feed(sse.as_bytes());
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].event().unwrap(), done);
        assert_eq!(frames[0].id.as_deref(), Some(envelope.id.as_str()));
    }

    #[test]
    fn the_state_decides_the_event() {
        let kinds: Vec<_> = [
            Status::Queued,
            Status::Downloading,
            Status::Converting,
            Status::Done,
            Status::Failed,
            Status::Expired,
        ]
        .map(|s| Event::for_job(job(s)).kind())
        .into();
        assert_eq!(
            kinds,
            [
                JOB_QUEUED,
                JOB_PROGRESS,
                JOB_PROGRESS,
                JOB_DONE,
                JOB_FAILED,
                JOB_EXPIRED
            ]
        );
        assert!(Event::for_job(job(Status::Expired)).ends_job());
        assert!(!Event::for_job(job(Status::Converting)).ends_job());
        let resync = Event::Resync {
            reason: "too old".into(),
        };
        assert_eq!(resync.job_id(), None);
        assert!(!frame(None, &resync).contains("id:"));
    }

    #[test]
    fn envelope_ids_are_unique_and_ordered() {
        let a = Envelope::new("u", Event::Resync { reason: "x".into() });
        let b = Envelope::new("u", Event::Resync { reason: "x".into() });
        assert_ne!(a.id, b.id);
        assert!(a.id < b.id);
        let back: Envelope = serde_json::from_str(&serde_json::to_string(&a).unwrap()).unwrap();
        assert_eq!(back, a);
    }

    #[test]
    fn the_parser_follows_the_sse_rules_across_chunks() {
        let mut parser = Parser::new();
        let text = "\u{feff}retry: 3000\n\n: keepalive\n\nid: 1\nevent: a\ndata: x\r\ndata: y\r\n\r\ndata:z\n\nid: 2\nfoo: bar\n\n";
        let mut frames = Vec::new();
        // One byte at a time: every split point must work, CR LF included.
        for byte in text.as_bytes() {
            frames.extend(parser.feed(std::slice::from_ref(byte)));
        }
        assert_eq!(
            frames,
            [
                Frame {
                    id: Some("1".into()),
                    event: "a".into(),
                    data: "x\ny".into(),
                    retry: Some(3000),
                },
                Frame {
                    id: Some("1".into()),
                    event: "message".into(),
                    data: "z".into(),
                    retry: Some(3000),
                },
            ]
        );
        assert_eq!(frames[1].event(), None, "not one of ours");
    }

    #[test]
    fn streams_are_asked_for_by_name_with_a_positive_q() {
        for yes in [
            "text/event-stream",
            "TEXT/Event-Stream; charset=utf-8",
            "application/json, text/event-stream;q=0.5",
            "\ttext/event-stream ",
            "text/event-stream;q=0.001",
        ] {
            assert!(accepts_event_stream(yes), "{yes}");
        }
        for no in [
            "",
            "*/*",
            "text/*",
            "text/event-streamx",
            "text/event-stream;q=0",
            "text/event-stream; q=0.0",
            "application/json",
        ] {
            assert!(!accepts_event_stream(no), "{no}");
        }
        let stream =
            |method, path, accept: &[&str]| is_stream_request(method, path, accept.iter().copied());
        assert!(stream("GET", "/v1/events", &["text/event-stream"]));
        assert!(stream(
            "GET",
            "/v1/jobs/x/events",
            &["a/b", "text/event-stream"]
        ));
        assert!(stream("HEAD", "/v1/events", &["text/event-stream"]));
        assert!(!stream("POST", "/v1/events", &["text/event-stream"]));
        assert!(!stream("GET", "/v1/jobs", &["text/event-stream"]));
        assert!(!stream("GET", "/v1/events/ticket", &["text/event-stream"]));
        assert!(!stream("GET", "/v1/events", &["text/event-stream;q=0"]));
        assert!(!stream("GET", "/v1/events", &[]));
    }

    #[test]
    fn a_line_without_end_is_bounded() {
        let mut parser = Parser::new();
        let junk = vec![b'a'; MAX_LINE + 1];
        assert!(parser.feed(&junk).is_empty());
        assert!(parser.buffer.is_empty());
        assert_eq!(parser.feed(b"data: ok\n\n")[0].data, "ok");
    }
}
