//! The worker and auth over WASI HTTP (the kit's client), with the internal token, the
//! caller's id and the request's trace on every call. Wasm only: the decisions around these
//! calls are in plain Rust and tested natively against in-memory stand-ins.

use std::cell::{Cell, RefCell};

use futures::{Stream, StreamExt as _};
use mp3conv_contract::job::{Job, JobId, JobPage, LinkRequest};
use mp3conv_contract::options::Options;
use mp3conv_contract::quota::{LIMITS_HEADER, Limits, Quota};
use mp3conv_kit::Trace;
use mp3conv_kit::http::{self, HttpError, Method, Request, Response};
use serde::de::DeserializeOwned;

use crate::config::Config;
use crate::error::{ApiError, upstream_error};
use crate::jobs::{MAX_JSON_BYTES, REPLAYED_HEADER};
use crate::upstream::{
    Answered, Auth, Chunk, Download, EventStream, JobsQuery, Streamed, Upload, Worker,
    auth_request, worker_request,
};

/// Largest job page read from the worker.
const MAX_PAGE_BYTES: usize = MAX_JSON_BYTES * 64;
/// Largest single job read from the worker.
const MAX_JOB_BYTES: usize = MAX_JSON_BYTES * 16;

/// Sends a call; no answer is logged (with the trace id) and becomes the matching error.
fn send(request: Request, trace: &Trace) -> Result<Response, ApiError> {
    http::send(request).map_err(|err| failed(err, trace))
}

fn failed(err: HttpError, trace: &Trace) -> ApiError {
    if err.is_transient() {
        eprintln!(
            "gateway: trace {}: upstream unreachable: {err}",
            trace.log_id()
        );
    }
    ApiError::from(err)
}

/// The worker's internal API.
pub struct SpinWorker<'a> {
    pub config: &'a Config,
    pub trace: &'a Trace,
    /// The caller's `Idempotency-Key`, passed on with each job-creating call: the worker
    /// checks it and answers a repeated request with its first job.
    pub idempotency_key: Option<&'a str>,
    /// The caller's own limits as their header's value (empty: the defaults), once known.
    pub limits: RefCell<String>,
    /// Whether the last job-creating call answered an earlier request's job.
    pub replayed: Cell<bool>,
}

impl SpinWorker<'_> {
    fn request(&self, method: Method, owner: &str, path_and_query: &str) -> Request {
        let request = worker_request(self.config, self.trace, method, owner, path_and_query);
        let limits = self.limits.borrow();
        match limits.is_empty() {
            true => request,
            false => request.header(LIMITS_HEADER, limits.as_str()),
        }
    }

    /// A job-creating call, with the caller's `Idempotency-Key` if any.
    fn creating(&self, owner: &str, path_and_query: &str) -> Request {
        let request = self.request(Method::Post, owner, path_and_query);
        match self.idempotency_key {
            Some(key) => request.header("idempotency-key", key),
            None => request,
        }
    }

    /// A call whose success is any status below 400; the rest become the matching error.
    fn call(&self, request: Request) -> Result<Response, ApiError> {
        let response = send(request, self.trace)?;
        self.checked(response)
    }

    fn checked(&self, response: Response) -> Result<Response, ApiError> {
        let status = response.status();
        if status < 400 {
            return Ok(response);
        }
        let headers = response.headers().to_vec();
        let body = response.read(MAX_JSON_BYTES).unwrap_or_default();
        Err(upstream_error(status, &headers, body))
    }

    /// The job a job-creating call answered, noting whether it repeats an earlier request's.
    fn created(&self, response: Response) -> Result<Job, ApiError> {
        let replayed = response.headers().iter().any(|(name, value)| {
            name.eq_ignore_ascii_case(REPLAYED_HEADER) && value.as_slice() == b"true"
        });
        self.replayed.set(replayed);
        self.json(response, MAX_JOB_BYTES)
    }

    fn json<T: DeserializeOwned>(&self, response: Response, limit: usize) -> Result<T, ApiError> {
        let body = response
            .read(limit)
            .map_err(|err| failed(err, self.trace))?;
        serde_json::from_slice(&body).map_err(|err| {
            ApiError::Internal(format!("the worker's answer is not as agreed: {err}"))
        })
    }
}

impl Worker for SpinWorker<'_> {
    type Audio = Response;

    async fn job(&self, owner: &str, id: JobId) -> Result<Job, ApiError> {
        let response =
            self.call(self.request(Method::Get, owner, &format!("/internal/jobs/{id}")))?;
        self.json(response, MAX_JOB_BYTES)
    }

    async fn jobs(&self, owner: &str, query: JobsQuery) -> Result<JobPage, ApiError> {
        let path = format!("/internal/jobs?{}", query.to_query());
        let response = self.call(self.request(Method::Get, owner, &path))?;
        self.json(response, MAX_PAGE_BYTES)
    }

    async fn delete_job(&self, owner: &str, id: JobId) -> Result<(), ApiError> {
        let path = format!("/internal/jobs/{id}");
        self.call(self.request(Method::Delete, owner, &path))
            .map(drop)
    }

    async fn create_link_job(&self, owner: &str, link: &LinkRequest) -> Result<Job, ApiError> {
        let request = self.creating(owner, "/internal/jobs").json(link);
        self.created(self.call(request)?)
    }

    async fn create_upload_job<S>(
        &self,
        owner: &str,
        upload: &Upload,
        mut body: S,
    ) -> Result<Job, ApiError>
    where
        S: Stream<Item = Chunk> + Unpin,
    {
        let path = format!("/internal/jobs?{}", upload.to_query());
        let request = self
            .creating(owner, &path)
            .header("content-type", upload.content_type.as_str());
        let mut sending = http::start(request).map_err(|err| failed(err, self.trace))?;
        // Nothing is held: each chunk read from the client is written before the next is read.
        let response = loop {
            match body.next().await {
                Some(Ok(chunk)) => {
                    if sending.write(&chunk).is_err() {
                        // The worker stopped reading: its answer says why.
                        break sending.stop();
                    }
                }
                Some(Err(err)) => {
                    sending.abort();
                    return Err(err);
                }
                None => break sending.finish(),
            }
        };
        let response = self.checked(response.map_err(|err| failed(err, self.trace))?)?;
        self.created(response)
    }

    async fn start_job(&self, owner: &str, id: JobId, options: &Options) -> Result<Job, ApiError> {
        let path = format!("/internal/jobs/{id}/start");
        let request = self.creating(owner, &path).json(options);
        self.created(self.call(request)?)
    }

    async fn download(
        &self,
        owner: &str,
        id: JobId,
        what: Download,
        forwarded: &[(String, String)],
    ) -> Result<Streamed<Response>, ApiError> {
        let request = self
            .request(Method::Get, owner, &what.worker_path(id))
            .headers(forwarded.to_vec());
        Ok(streamed(self.call(request)?))
    }

    fn replayed(&self) -> bool {
        self.replayed.get()
    }

    fn limit_to(&self, limits: Limits) {
        *self.limits.borrow_mut() = limits.to_header();
    }

    async fn quota(&self, owner: &str) -> Result<Quota, ApiError> {
        let response = self.call(self.request(Method::Get, owner, "/internal/usage"))?;
        self.json(response, MAX_JSON_BYTES)
    }

    async fn events(
        &self,
        owner: &str,
        stream: &EventStream,
    ) -> Result<Streamed<Response>, ApiError> {
        let request = self
            .request(Method::Get, owner, &stream.path())
            .headers(stream.headers());
        Ok(streamed(self.call(request)?))
    }
}

/// A worker response whose body is to be streamed on, with its headers as text.
fn streamed(response: Response) -> Streamed<Response> {
    let headers = response
        .headers()
        .iter()
        .map(|(name, value)| (name.clone(), String::from_utf8_lossy(value).into_owned()))
        .collect();
    Streamed {
        status: response.status(),
        headers,
        body: response,
    }
}

/// The auth function (Spin service chaining).
pub struct SpinAuth<'a> {
    pub config: &'a Config,
    pub trace: &'a Trace,
}

impl SpinAuth<'_> {
    fn call(&self, method: Method, path: &str, authorization: &str) -> Result<Answered, ApiError> {
        let request = auth_request(self.config, self.trace, method, path, authorization);
        let response = send(request, self.trace)?;
        let (status, headers) = (response.status(), response.headers().to_vec());
        let body = response
            .read(MAX_JSON_BYTES)
            .map_err(|err| failed(err, self.trace))?;
        Ok(Answered {
            status,
            headers,
            body,
        })
    }
}

impl Auth for SpinAuth<'_> {
    async fn login(&self, authorization: &str) -> Result<Answered, ApiError> {
        self.call(Method::Post, "/auth/login", authorization)
    }

    async fn delete_account(&self, authorization: &str) -> Result<Answered, ApiError> {
        self.call(Method::Delete, "/auth/me", authorization)
    }
}
