//! The two services the gateway calls, as small traits: the worker's internal API ([`Worker`])
//! and the auth function ([`Auth`]). The component implements them over WASI HTTP
//! (`crate::spin`); the tests implement them in memory (`crate::testing`), so everything the
//! gateway decides around the calls runs natively.

use bytes::Bytes;
use futures::Stream;
pub use mp3conv_contract::job::Download;
use mp3conv_contract::job::{Job, JobId, JobPage, LinkRequest};
use mp3conv_contract::options::Options;
use mp3conv_contract::quota::{Limits, Quota};

use mp3conv_kit::Trace;
use mp3conv_kit::http::{Method, Request};

use crate::config::Config;
use crate::error::ApiError;

/// A chunk of a body sent on as it arrives; an `Err` means the body is refused part-way.
pub type Chunk = Result<Bytes, ApiError>;

/// Which page of the owner's jobs (`GET /internal/jobs?limit=&cursor=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobsQuery {
    pub limit: u32,
    pub cursor: Option<JobId>,
}

impl JobsQuery {
    /// The worker's query string.
    pub fn to_query(&self) -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        query.append_pair("limit", &self.limit.to_string());
        if let Some(cursor) = self.cursor {
            query.append_pair("cursor", &cursor.to_string());
        }
        query.finish()
    }
}

/// An uploaded file, as the worker is told about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    /// The file's name, made safe ([`crate::upload::clean_filename`]).
    pub filename: String,
    /// The `Content-Type` the worker gets ([`crate::upload::upload_content_type`]).
    pub content_type: String,
    /// Whether the job waits for [`Worker::start_job`] (`POST /v1/jobs`, whose options may
    /// come after the file) rather than being queued at once (`POST /upload`).
    pub hold: bool,
}

impl Upload {
    /// The worker's query string (`?filename=&hold=true`).
    pub fn to_query(&self) -> String {
        use mp3conv_contract::job::upload_query::{FILENAME, HOLD};
        let mut query = form_urlencoded::Serializer::new(String::new());
        query.append_pair(FILENAME, &self.filename);
        if self.hold {
            query.append_pair(HOLD, "true");
        }
        query.finish()
    }
}

/// An event stream asked of the worker (`GET /internal/events` or
/// `GET /internal/jobs/{id}/events`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventStream {
    /// One job's events, or all of the owner's.
    pub job: Option<JobId>,
    /// Where to resume (`Last-Event-ID`), already checked.
    pub last_event_id: Option<String>,
    /// When the worker ends the stream, in unix milliseconds (`X-Mp3conv-Stream-Until`).
    pub until_ms: i64,
}

impl EventStream {
    /// The worker's path.
    pub fn path(&self) -> String {
        match self.job {
            Some(id) => format!("/internal/jobs/{id}/events"),
            None => "/internal/events".to_owned(),
        }
    }

    /// The request headers the worker reads.
    pub fn headers(&self) -> Vec<(String, String)> {
        let mut headers = vec![
            ("accept".to_owned(), "text/event-stream".to_owned()),
            (
                "x-mp3conv-stream-until".to_owned(),
                self.until_ms.to_string(),
            ),
        ];
        if let Some(id) = &self.last_event_id {
            headers.push(("last-event-id".to_owned(), id.clone()));
        }
        headers
    }
}

/// A response whose body is streamed on to the client.
#[derive(Debug)]
pub struct Streamed<B> {
    pub status: u16,
    /// Every header the worker sent, as text; the gateway picks which to pass on.
    pub headers: Vec<(String, String)>,
    pub body: B,
}

/// An answer read whole (auth's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answered {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

/// The worker's internal API, called for a verified `owner` (its user id). An answer of 400 or
/// more is an `Err` (see [`crate::error::upstream_error`]); no answer is
/// [`ApiError::WorkerUnavailable`].
// Spin's executor is single-threaded: no `Send` bounds wanted on these futures.
#[allow(async_fn_in_trait)]
pub trait Worker {
    /// A body being streamed on (an MP3, an event stream).
    type Audio;

    /// One job.
    async fn job(&self, owner: &str, id: JobId) -> Result<Job, ApiError>;
    /// A page of the owner's jobs, newest first.
    async fn jobs(&self, owner: &str, query: JobsQuery) -> Result<JobPage, ApiError>;
    /// Deletes a job.
    async fn delete_job(&self, owner: &str, id: JobId) -> Result<(), ApiError>;
    /// Creates a job from a link.
    async fn create_link_job(&self, owner: &str, link: &LinkRequest) -> Result<Job, ApiError>;
    /// Creates a job from a file whose bytes arrive as `body`, written to the worker chunk
    /// by chunk; a held one ([`Upload::hold`]) waits for [`Worker::start_job`]. At an `Err`
    /// chunk the request is abandoned unfinished (the worker sees an aborted body and makes no
    /// job) and that error is returned.
    async fn create_upload_job<S>(
        &self,
        owner: &str,
        upload: &Upload,
        body: S,
    ) -> Result<Job, ApiError>
    where
        S: Stream<Item = Chunk> + Unpin;
    /// Queues a held job with its final `options` (a preset resolved, the bitrate inside):
    /// `POST /internal/jobs/{id}/start`.
    async fn start_job(&self, owner: &str, id: JobId, options: &Options) -> Result<Job, ApiError>;
    /// Opens a job's MP3, one of its tracks or their ZIP, passing on `forwarded` (`Range`,
    /// `If-None-Match`).
    async fn download(
        &self,
        owner: &str,
        id: JobId,
        what: Download,
        forwarded: &[(String, String)],
    ) -> Result<Streamed<Self::Audio>, ApiError>;
    /// Whether the last job-creating call was answered with an earlier request's job (the
    /// worker's `Idempotent-Replayed: true`).
    fn replayed(&self) -> bool;
    /// Hands the caller's own limits (their overrides of the defaults, known once the caller
    /// is) to every later call: the worker enforces them.
    fn limit_to(&self, limits: Limits);
    /// The owner's quota: limits and usage (`GET /internal/usage`).
    async fn quota(&self, owner: &str) -> Result<Quota, ApiError>;
    /// Opens an event stream of the owner's: a success is 200 (the stream) or 204 (a job
    /// already over, asked to resume).
    async fn events(
        &self,
        owner: &str,
        stream: &EventStream,
    ) -> Result<Streamed<Self::Audio>, ApiError>;
}

/// The auth function. Its answers are given whole; what they mean is the gateway's to say.
#[allow(async_fn_in_trait)]
pub trait Auth {
    /// `POST /auth/login` with the client's HTTP Basic `authorization`.
    async fn login(&self, authorization: &str) -> Result<Answered, ApiError>;
    /// `DELETE /auth/me` with the client's bearer `authorization`.
    async fn delete_account(&self, authorization: &str) -> Result<Answered, ApiError>;
}

/// A call to the worker's internal API on behalf of `owner`: the internal token, the owner's
/// id and the request's trace ride on every one.
pub fn worker_request(
    config: &Config,
    trace: &Trace,
    method: Method,
    owner: &str,
    path_and_query: &str,
) -> Request {
    Request::to(method, &config.worker_url, path_and_query)
        .bearer(&config.worker_token)
        .header("x-mp3conv-owner", owner)
        .trace(trace)
}

/// A call to auth with the client's own `authorization`, and the request's trace.
pub fn auth_request(
    config: &Config,
    trace: &Trace,
    method: Method,
    path: &str,
    authorization: &str,
) -> Request {
    let request = Request::to(method, &config.auth_url, path)
        .header("authorization", authorization)
        .trace(trace);
    match method {
        // An empty body, sent with `Content-Length: 0`.
        Method::Post => request.body(Vec::new()),
        _ => request,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn every_call_carries_the_trace() {
        let config = crate::config::tests::load(&crate::config::tests::variables()).unwrap();
        let incoming = [("x-request-id", "req-7"), ("traceparent", PARENT)];
        let trace =
            Trace::from_headers(|name| incoming.iter().find(|(n, _)| *n == name).map(|(_, v)| *v));
        let header = |request: &Request, name: &str| {
            request
                .wire_headers()
                .into_iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| String::from_utf8(v).unwrap())
        };
        let worker = worker_request(&config, &trace, Method::Get, "u1", "/internal/jobs");
        assert_eq!(worker.url(), "http://127.0.0.1:8090/internal/jobs");
        let login = auth_request(&config, &trace, Method::Post, "/auth/login", "Basic YTpi");
        assert_eq!(login.url(), "http://auth.spin.internal/auth/login");
        for request in [&worker, &login] {
            assert_eq!(header(request, "x-request-id").as_deref(), Some("req-7"));
            assert_eq!(header(request, "traceparent").as_deref(), Some(PARENT));
        }
        assert_eq!(
            header(&worker, "authorization").as_deref(),
            Some("Bearer a-long-internal-token")
        );
        assert_eq!(header(&worker, "x-mp3conv-owner").as_deref(), Some("u1"));
        assert_eq!(
            header(&login, "authorization").as_deref(),
            Some("Basic YTpi")
        );
        assert_eq!(header(&login, "content-length").as_deref(), Some("0"));
    }

    #[test]
    fn worker_queries() {
        let id: JobId = "0192f1a4-7c2b-7d3e-8f00-123456789abc".parse().unwrap();
        assert_eq!(
            JobsQuery {
                limit: 5,
                cursor: Some(id)
            }
            .to_query(),
            "limit=5&cursor=0192f1a4-7c2b-7d3e-8f00-123456789abc"
        );
        let mut upload = Upload {
            filename: "a b&c.mp4".into(),
            content_type: "video/mp4".into(),
            hold: true,
        };
        assert_eq!(upload.to_query(), "filename=a+b%26c.mp4&hold=true");
        upload.hold = false;
        assert_eq!(upload.to_query(), "filename=a+b%26c.mp4");
        assert_eq!(
            Download::Tracks.worker_path(id),
            format!("/internal/jobs/{id}/tracks.zip")
        );
    }
}
