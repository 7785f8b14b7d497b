//! The Spin entry point: `POST` a CloudEvent with the events token; 200 once handled (the
//! source acks), 400 for an event that can never be handled, 503 when it cannot be handled now
//! (the source retries); 401 without the token, 413 past the size limit (see [`crate::http`]).
//! Settings, outbound calls, replies and bodies come from `mp3conv_kit`; every log line
//! names the request's trace id and the event.

use std::time::Duration;

use mp3conv_contract::event::Event;
use mp3conv_contract::job::{Job, JobId};
use mp3conv_kit::Trace;
use mp3conv_kit::http::{self, Method, Request};
use mp3conv_kit::reply::{self, Reply};
use spin_sdk::http::{IncomingRequest, Method as SpinMethod, ResponseOutparam};
use spin_sdk::http_component;

use crate::config::{Config, EventsAuth};
use crate::event::MAX_EVENT_BYTES;
use crate::http::Refusal;
use crate::notify::{self, Failure, Outside};

/// The largest worker answer read (a job is a few hundred bytes).
const MAX_JOB_BYTES: usize = 1 << 20;

#[http_component]
async fn handle(request: IncomingRequest, out: ResponseOutparam) {
    let trace = reply::trace(&request);
    let reply = match serve(request, &trace).await {
        Ok(reply) => reply,
        Err(refusal) => refusal.reply(),
    };
    reply::send(out, reply).await;
}

/// Checks the caller and the size before reading anything, then reads the event, at most
/// [`MAX_EVENT_BYTES`] of it.
async fn serve(request: IncomingRequest, trace: &Trace) -> Result<Reply, Refusal> {
    if !matches!(request.method(), SpinMethod::Post) {
        return Err(Refusal::MethodNotAllowed);
    }
    let headers = reply::headers(&request);
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let config = Config::load(|name| spin_sdk::variables::get(name).ok()).map_err(|err| {
        log(trace, "-", &format!("configuration: {err}"));
        Refusal::Misconfigured
    })?;
    if !config.events.allows(header("authorization")) {
        if config.events == EventsAuth::Closed {
            log(
                trace,
                "-",
                "events_token is not set: every event is refused",
            );
        }
        return Err(Refusal::Unauthorized);
    }
    let body = reply::read_body(request, MAX_EVENT_BYTES, 0).await?;
    let spin = Spin {
        config: &config,
        trace,
    };
    let result = match mp3conv_sql::open(&config.database) {
        Ok(db) => notify::handle(&config, db.as_ref(), &spin, &headers, &body),
        Err(err) => {
            log(trace, "-", &format!("database: {}", err.message));
            Err(Failure::Transient(err.message))
        }
    };
    Ok(crate::http::answer(&result))
}

fn log(trace: &Trace, event_id: &str, line: &str) {
    eprintln!(
        "notifier: trace={} event={event_id}: {line}",
        trace.log_id()
    );
}

struct Spin<'a> {
    config: &'a Config,
    trace: &'a Trace,
}

impl Outside for Spin<'_> {
    fn job(&self, job_id: &JobId, owner: &str) -> Result<Option<Job>, String> {
        let request = Request::to(
            Method::Get,
            &self.config.worker_url,
            &format!("/internal/jobs/{job_id}"),
        )
        .bearer(&self.config.worker_token)
        .header("x-mp3conv-owner", owner)
        .trace(self.trace)
        .timeout(self.config.outbound_timeout);
        let response = http::send(request).map_err(|err| err.to_string())?;
        match response.status() {
            200 => {
                let body = response
                    .read(MAX_JOB_BYTES)
                    .map_err(|err| err.to_string())?;
                serde_json::from_slice(&body)
                    .map(Some)
                    .map_err(|err| format!("the worker's job is not a job: {err}"))
            }
            404 => Ok(None),
            other => Err(format!("the worker answered {other}")),
        }
    }

    fn publish(&self, owner: &str, event: &Event) -> Result<(), String> {
        let request = Request::to(Method::Post, &self.config.worker_url, "/internal/events")
            .bearer(&self.config.worker_token)
            .header("x-mp3conv-owner", owner)
            .trace(self.trace)
            .json(event)
            .timeout(self.config.outbound_timeout);
        let response = http::send(request).map_err(|err| err.to_string())?;
        match response.status() {
            200..=299 => Ok(()),
            other => Err(format!("the worker answered {other}")),
        }
    }

    fn post(&self, url: &str, headers: &[(String, String)], body: &[u8]) -> Result<u16, String> {
        let request = Request::new(Method::Post, url)
            .map_err(|err| err.to_string())?
            .headers(headers.iter().cloned())
            .trace_outside(self.trace)
            .body(body)
            .timeout(self.config.outbound_timeout);
        // The status is the answer: the receiver's body is not read.
        http::send(request)
            .map(|response| response.status())
            .map_err(|err| err.to_string())
    }

    fn sleep(&self, duration: Duration) {
        std::thread::sleep(duration);
    }

    fn now_ms(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }

    fn new_id(&self) -> String {
        uuid::Uuid::new_v4().to_string()
    }

    fn log(&self, event_id: &str, line: &str) {
        log(self.trace, event_id, line);
    }
}
