//! `/internal/events` and `/internal/jobs/{id}/events`: a user's live events as Server-Sent
//! Events, and `POST /internal/events` for the notifier.
//!
//! A stream starts with `retry: 3000` (so the headers and first bytes go out at once), sends a
//! `: keepalive` comment after each `events.heartbeat` of silence, and ends cleanly at the
//! gateway's `X-Mp3conv-Stream-Until` (unix ms), at `events.max_stream` at the latest, or when
//! the worker shuts down. An open stream reads no store at all.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State as AxumState};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mp3conv_contract::event::{self, Envelope, Event};
use serde_json::json;
use time::OffsetDateTime;

use super::Owner;
use super::jobs::owned_job;
use crate::State;
use crate::error::Error;
use crate::events::StreamSlot;
use crate::events::hub::{Live, Replay, Subscription};
use crate::job::{Job, JobId};

/// Header carrying the time a stream must end by, in unix milliseconds.
pub const STREAM_UNTIL: &str = "x-mp3conv-stream-until";
/// What `retry:` tells clients to wait before reconnecting, in milliseconds.
const RETRY_MILLIS: u64 = 3000;
/// Largest body `POST /internal/events` reads.
const EVENT_BODY_LIMIT: usize = 64 * 1024;

/// The resume point of a request: a non-empty `Last-Event-ID`. One that cannot be an id of
/// ours (longer than 64 characters, or not printable ASCII) resumes nothing and gets a resync.
fn last_event_id(headers: &HeaderMap) -> Option<String> {
    let value = headers.get("last-event-id")?.as_bytes();
    if value.is_empty() {
        return None;
    }
    let valid = value.len() <= 64 && value.iter().all(|b| b.is_ascii_graphic());
    Some(if valid {
        String::from_utf8_lossy(value).into_owned()
    } else {
        // Never an id in any buffer.
        String::new()
    })
}

/// When the stream ends: the gateway's time, capped by `events.max_stream`.
fn end_of_stream(state: &State, headers: &HeaderMap) -> tokio::time::Instant {
    let cap = state.config.events.max_stream;
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let asked = headers
        .get(STREAM_UNTIL)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|until| Duration::from_millis(until.saturating_sub(now_ms)));
    let length = asked.map_or(cap, |asked| asked.min(cap));
    tokio::time::Instant::now() + length
}

/// What a stream follows.
enum Follow {
    /// Every event of its owner.
    Owner,
    /// One job, until it ends; `seen` is the newest state sent (its update time and
    /// progress): older progress is not sent again.
    Job {
        id: JobId,
        seen: (OffsetDateTime, u8),
    },
}

/// One open stream.
struct EventStream {
    state: Arc<State>,
    owner: String,
    queued: VecDeque<Bytes>,
    live: Subscription,
    until: tokio::time::Instant,
    follow: Follow,
    /// Nothing more after `queued`.
    finished: bool,
    _slot: StreamSlot,
}

impl EventStream {
    /// The next chunk of the body, or `None` once the stream ends.
    async fn next(&mut self) -> Option<Bytes> {
        if let Some(chunk) = self.queued.pop_front() {
            return Some(chunk);
        }
        if self.finished {
            return None;
        }
        let idle = tokio::time::sleep(self.state.config.events.heartbeat);
        tokio::pin!(idle);
        let shutdown = self.state.shutdown.clone();
        loop {
            let live = tokio::select! {
                biased;
                () = shutdown.cancelled() => return None,
                () = tokio::time::sleep_until(self.until) => return None,
                live = self.live.recv() => live,
                () = &mut idle => return Some(Bytes::from(event::comment("keepalive"))),
            };
            match live {
                Live::Event(envelope) => {
                    if let Some(frame) = self.accept(&envelope) {
                        return Some(frame);
                    }
                }
                Live::Resync => return self.resync().await,
                Live::Closed => return None,
            }
        }
    }

    /// The frame for a live event, if this stream sends it.
    fn accept(&mut self, envelope: &Envelope) -> Option<Bytes> {
        let Follow::Job { id, seen } = &mut self.follow else {
            return Some(Bytes::from(envelope.to_sse()));
        };
        let job = match &envelope.event {
            Event::JobQueued { job } | Event::JobProgress { job } if job.id == *id => job,
            Event::JobDone { job, .. } | Event::JobFailed { job } if job.id == *id => job,
            Event::JobDeleted { job_id } if job_id == id => {
                self.finished = true;
                return Some(Bytes::from(envelope.to_sse()));
            }
            _ => return None,
        };
        if envelope.event.ends_job() {
            self.finished = true;
        } else {
            let at = (job.updated_at, job.progress);
            if at <= *seen {
                return None;
            }
            *seen = at;
        }
        Some(Bytes::from(envelope.to_sse()))
    }

    /// After events were lost: a `resync` frame, or for a job stream its current state (read
    /// again), since that is all the client needs.
    async fn resync(&mut self) -> Option<Bytes> {
        let Follow::Job { id, .. } = self.follow else {
            let resync = Event::Resync {
                reason: "events were missed".into(),
            };
            return Some(Bytes::from(event::frame(None, &resync)));
        };
        match self.state.jobs.get(id).await {
            Ok(Some(job)) if job.owner == self.owner => Some(self.state_frame(job)),
            Ok(_) => {
                self.finished = true;
                let deleted = Envelope::new(self.owner.clone(), Event::JobDeleted { job_id: id });
                Some(Bytes::from(deleted.to_sse()))
            }
            Err(e) => {
                tracing::warn!(error = %crate::error::error_chain(&e), "cannot read the job; ending its stream");
                None
            }
        }
    }

    /// The frame of a job's current state (a fresh id); ends the stream after it when final.
    fn state_frame(&mut self, job: Job) -> Bytes {
        if let Follow::Job { seen, .. } = &mut self.follow {
            *seen = (job.updated_at, job.progress);
        }
        if job.status.is_terminal() {
            self.finished = true;
        }
        let envelope = Envelope::new(self.owner.clone(), Event::for_job(job.into()));
        Bytes::from(envelope.to_sse())
    }

    fn into_response(self) -> Response {
        let body = futures::stream::unfold(self, |mut stream| async move {
            let chunk = stream.next().await?;
            Some((Ok::<_, Infallible>(chunk), stream))
        });
        let mut response = Response::new(Body::from_stream(body));
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
        response
    }
}

/// `GET /internal/events`: the owner's live events (see the module documentation). With a
/// `Last-Event-ID`, first the owner's events after it, or one `resync` frame (no id) when this
/// process no longer has (or never had) it.
///
/// Errors: 429 / 503 `too_many_streams` (with `Retry-After`).
pub(super) async fn owner_stream(
    AxumState(state): AxumState<Arc<State>>,
    Owner(owner): Owner,
    headers: HeaderMap,
) -> Result<Response, Error> {
    let slot = state.events.stream_slot(&owner)?;
    let until = end_of_stream(&state, &headers);
    let resume = last_event_id(&headers);
    let mut live = state.events.hub.subscribe(&owner, resume.as_deref());
    let mut queued = VecDeque::from([Bytes::from(event::retry(RETRY_MILLIS))]);
    match std::mem::replace(&mut live.replay, Replay::Nothing) {
        Replay::Nothing => {}
        Replay::Events(events) => queued.extend(events.iter().map(|e| Bytes::from(e.to_sse()))),
        Replay::Resync => {
            let resync = Event::Resync {
                reason: "cannot resume from that event".into(),
            };
            queued.push_back(Bytes::from(event::frame(None, &resync)));
        }
    }
    let stream = EventStream {
        state: Arc::clone(&state),
        owner,
        queued,
        live,
        until,
        follow: Follow::Owner,
        finished: false,
        _slot: slot,
    };
    Ok(stream.into_response())
}

/// `GET /internal/jobs/{id}/events`: the job's current state (one frame), then its live
/// events, ending after a final one (done, failed, deleted). A job already final gets its
/// state frame only, or 204 when the request resumes (`Last-Event-ID`): there is nothing more.
///
/// Errors: 404 `not_found`; 429 / 503 `too_many_streams`.
pub(super) async fn job_stream(
    AxumState(state): AxumState<Arc<State>>,
    Owner(owner): Owner,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Error> {
    let slot = state.events.stream_slot(&owner)?;
    let until = end_of_stream(&state, &headers);
    // Subscribed before the state is read: nothing between the two is missed.
    let live = state.events.hub.subscribe(&owner, None);
    let job = owned_job(&state, &owner, &id).await?;
    if job.status.is_terminal() && last_event_id(&headers).is_some() {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let mut stream = EventStream {
        state: Arc::clone(&state),
        owner,
        queued: VecDeque::from([Bytes::from(event::retry(RETRY_MILLIS))]),
        live,
        until,
        follow: Follow::Job {
            id: job.id,
            seen: (job.updated_at, job.progress),
        },
        finished: false,
        _slot: slot,
    };
    let first = stream.state_frame(job);
    stream.queued.push_back(first);
    Ok(stream.into_response())
}

/// `POST /internal/events`: publishes one event for the owner; only `notification.created`
/// (the notifier's, once it recorded a notification). 202 `{"id": "<event id>"}`.
///
/// Errors: 400 `unsupported_event` (another type), `invalid_json`.
pub(super) async fn publish(
    AxumState(state): AxumState<Arc<State>>,
    Owner(owner): Owner,
    body: Body,
) -> Result<impl IntoResponse, Error> {
    let bytes = axum::body::to_bytes(body, EVENT_BODY_LIMIT)
        .await
        .map_err(|e| Error::bad_request("invalid_json", e.to_string()))?;
    let value: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| Error::bad_request("invalid_json", e.to_string()))?;
    if value.get("type").and_then(|t| t.as_str()) != Some(event::NOTIFICATION_CREATED) {
        return Err(Error::bad_request(
            "unsupported_event",
            format!("only {} events may be posted", event::NOTIFICATION_CREATED),
        ));
    }
    let event: Event = serde_json::from_value(value)
        .map_err(|e| Error::bad_request("invalid_json", e.to_string()))?;
    let envelope = Envelope::new(owner, event);
    let id = envelope.id.clone();
    state.events.publish(envelope);
    Ok((StatusCode::ACCEPTED, Json(json!({ "id": id }))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_points_are_checked() {
        let mut headers = HeaderMap::new();
        assert_eq!(last_event_id(&headers), None);
        headers.insert("last-event-id", HeaderValue::from_static(""));
        assert_eq!(last_event_id(&headers), None, "empty means none");
        headers.insert("last-event-id", HeaderValue::from_static("0193a5b0-7c1d"));
        assert_eq!(last_event_id(&headers).as_deref(), Some("0193a5b0-7c1d"));
        for bad in ["has space", &"x".repeat(65)] {
            headers.insert("last-event-id", HeaderValue::from_str(bad).unwrap());
            assert_eq!(last_event_id(&headers).as_deref(), Some(""), "{bad}");
        }
    }
}
