//! `/internal/jobs`: intake, listing, status, audio download and deletion.

use std::ops::Range;
use std::str::FromStr;
use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State as AxumState};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;
use mp3conv_contract::event::{Envelope, Event};
use mp3conv_contract::job::{DEFAULT_PAGE, MAX_PAGE};
use serde::Deserialize;

use super::Owner;
use crate::State;
use crate::error::Error;
use crate::job::{Bitrate, InvalidBitrate, Job, JobId, JobPage, LinkRequest, Source, Status};
use crate::queue::{JobMessage, MessageExt as _, Route};

/// Largest JSON body accepted for a link.
const LINK_BODY_LIMIT: usize = 64 * 1024;

/// Query of `POST /internal/jobs`.
#[derive(Debug, Deserialize)]
pub(super) struct CreateQuery {
    /// Original file name of an upload (used for the ID3 title).
    filename: Option<String>,
    /// `128`, `192` (default), `256`, `320` or `v0`..`v9`.
    bitrate: Option<String>,
}

fn parse_bitrate(value: Option<&str>) -> Result<Bitrate, Error> {
    value.map_or(Ok(Bitrate::default()), |b| {
        Bitrate::from_str(b).map_err(|e| Error::bad_request(InvalidBitrate::CODE, e.to_string()))
    })
}

fn traceparent(headers: &HeaderMap) -> Option<String> {
    headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= 128)
        .map(str::to_owned)
}

/// `POST /internal/jobs`: an upload (the body is the video, streamed into the blob store;
/// `?filename=` and `?bitrate=`) or, with `Content-Type: application/json`, a link
/// `{"url": "...", "bitrate": "..."}`. Answers 202 with the queued job.
///
/// Errors: 400 `empty_upload`, `invalid_bitrate`, `invalid_url`, `link_forbidden`,
/// `invalid_json`, `unknown_field`, `body_read`; 413 `too_large`.
pub(super) async fn create(
    AxumState(state): AxumState<Arc<State>>,
    Owner(owner): Owner,
    Query(query): Query<CreateQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<impl IntoResponse, Error> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.trim_start().starts_with("application/json"));
    let job = if is_json {
        let bytes = axum::body::to_bytes(body, LINK_BODY_LIMIT)
            .await
            .map_err(|e| Error::bad_request("invalid_json", e.to_string()))?;
        let link =
            LinkRequest::parse(&bytes).map_err(|e| Error::bad_request(e.code(), e.to_string()))?;
        let bitrate = match link.bitrate {
            Some(bitrate) => bitrate,
            None => parse_bitrate(query.bitrate.as_deref())?,
        };
        let url = state
            .fetcher
            .check_url(&link.url)
            .map_err(|e| Error::BadRequest {
                code: e.code(),
                message: e.to_string(),
            })?;
        let job = Job::new(owner, Source::Link { url: url.into() }, bitrate);
        state.jobs.insert(&job).await?;
        job
    } else {
        let bitrate = parse_bitrate(query.bitrate.as_deref())?;
        let limit = state.config.max_video_bytes;
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > limit) {
            let mut stream = body.into_data_stream().map_err(std::io::Error::other);
            crate::storage::drain(&mut stream).await;
            return Err(Error::TooLarge { limit });
        }
        let filename = query
            .filename
            .filter(|f| !f.trim().is_empty())
            .unwrap_or_else(|| "video".to_owned());
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let job = Job::new(
            owner,
            Source::Upload {
                filename: filename.clone(),
                content_type,
            },
            bitrate,
        );
        let stream = body.into_data_stream().map_err(std::io::Error::other);
        let size = state
            .videos
            .put(&job.video_id, &filename, Box::pin(stream), limit)
            .await?;
        if size == 0 {
            state.videos.delete(&job.video_id).await?;
            return Err(Error::bad_request("empty_upload", "the upload is empty"));
        }
        state.metrics.bytes_in.inc_by(size);
        if let Err(e) = state.jobs.insert(&job).await {
            let _ = state.videos.delete(&job.video_id).await;
            return Err(e);
        }
        job
    };
    // Announced before a converter can take it, so that its `job.queued` comes before the
    // converter's events.
    state.events.job(&job);
    let message = JobMessage::for_job(&job, 1).outgoing(Route::Video, traceparent(&headers));
    if let Err(e) = state.queue.publish(Route::Video, message).await {
        // Not queued means not accepted: leave nothing behind and let the caller retry.
        let _ = state.jobs.delete(job.id).await;
        let _ = state.videos.delete(&job.video_id).await;
        state.events.publish(Envelope::new(
            job.owner.clone(),
            Event::JobDeleted { job_id: job.id },
        ));
        return Err(e);
    }
    state.metrics.job(Status::Queued);
    tracing::info!(job_id = %job.id, "job queued");
    Ok((StatusCode::ACCEPTED, Json(job)))
}

/// Query of `GET /internal/jobs`.
#[derive(Debug, Deserialize)]
pub(super) struct ListQuery {
    /// If given, must be the owner named by the header.
    owner: Option<String>,
    /// Page size, 1-100 (default 20).
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// `GET /internal/jobs?limit=&cursor=`: the owner's jobs, newest first.
///
/// Errors: 400 `invalid_cursor`, `invalid_limit`, `owner_mismatch`.
pub(super) async fn list(
    AxumState(state): AxumState<Arc<State>>,
    Owner(owner): Owner,
    Query(query): Query<ListQuery>,
) -> Result<impl IntoResponse, Error> {
    if query.owner.as_ref().is_some_and(|o| *o != owner) {
        return Err(Error::bad_request(
            "owner_mismatch",
            "?owner= must match the X-Mp3conv-Owner header",
        ));
    }
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(Error::bad_request(
            "invalid_limit",
            format!("limit must be between 1 and {MAX_PAGE}"),
        ));
    }
    let before = query
        .cursor
        .as_deref()
        .map(JobId::from_str)
        .transpose()
        .map_err(|_| Error::bad_request("invalid_cursor", "the cursor is not one we gave out"))?;
    let jobs = state.jobs.list(&owner, before, limit).await?;
    let next_cursor = (jobs.len() == limit as usize)
        .then(|| jobs.last().map(|j| j.id))
        .flatten();
    Ok(Json(JobPage { jobs, next_cursor }))
}

pub(super) async fn owned_job(state: &State, owner: &str, id: &str) -> Result<Job, Error> {
    let id = JobId::from_str(id).map_err(|_| Error::NotFound)?;
    match state.jobs.get(id).await? {
        Some(job) if job.owner == owner => Ok(job),
        _ => Err(Error::NotFound),
    }
}

/// `GET /internal/jobs/{id}`.
pub(super) async fn get(
    AxumState(state): AxumState<Arc<State>>,
    Owner(owner): Owner,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, Error> {
    Ok(Json(owned_job(&state, &owner, &id).await?))
}

/// `DELETE /internal/jobs/{id}`: removes the job, its video and its MP3. 204.
pub(super) async fn delete(
    AxumState(state): AxumState<Arc<State>>,
    Owner(owner): Owner,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, Error> {
    let job = owned_job(&state, &owner, &id).await?;
    // The job goes first: once it is gone, a converter still working on it cleans up after
    // itself instead of completing it.
    if state.jobs.delete(job.id).await? {
        state.events.publish(Envelope::new(
            job.owner.clone(),
            Event::JobDeleted { job_id: job.id },
        ));
    }
    state.videos.delete(&job.video_id).await?;
    state.mp3s.delete(&job.id.to_string()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /internal/jobs/{id}/audio`: the MP3, streamed. Supports a single `Range` (206, or 416
/// `range_not_satisfiable`), `ETag` and `If-None-Match` (304). 409 `not_ready` before done.
pub(super) async fn audio(
    AxumState(state): AxumState<Arc<State>>,
    Owner(owner): Owner,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Error> {
    let job = owned_job(&state, &owner, &id).await?;
    let audio = match (&job.status, &job.audio) {
        (Status::Done, Some(audio)) => audio.clone(),
        (status, _) => return Err(Error::NotReady(status.as_str())),
    };
    let etag = format!("\"{}-{}\"", audio.id, audio.size);
    let etag_value = HeaderValue::from_str(&etag).map_err(Error::internal)?;
    let if_none_match: Vec<&str> = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let if_none_match = (!if_none_match.is_empty()).then(|| if_none_match.join(","));
    if mp3conv_contract::http::none_match(if_none_match.as_deref(), &etag) {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag_value)]).into_response());
    }
    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        Some(value) => parse_range(value, audio.size)?,
        None => None,
    };
    let (status, span) = match range {
        Some(span) => (StatusCode::PARTIAL_CONTENT, span),
        None => (StatusCode::OK, 0..audio.size),
    };
    let stream = state.mp3s.get(&audio.id, span.clone()).await?;
    let mut response = Response::new(Body::from_stream(stream));
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("audio/mpeg"));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::ETAG, etag_value);
    h.insert(
        header::CONTENT_LENGTH,
        HeaderValue::from(span.end - span.start),
    );
    if status == StatusCode::PARTIAL_CONTENT {
        let value = format!("bytes {}-{}/{}", span.start, span.end - 1, audio.size);
        h.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_str(&value).map_err(Error::internal)?,
        );
    }
    Ok(response)
}

/// Parses a `Range` header against a file of `size` bytes. `Ok(None)` means "send it all":
/// other units and multiple ranges are allowed to be ignored (RFC 9110 §14.2).
fn parse_range(value: &str, size: u64) -> Result<Option<Range<u64>>, Error> {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let unsatisfiable = Error::RangeNotSatisfiable { size };
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Err(unsatisfiable);
    };
    let number = |s: &str| s.trim().parse::<u64>().ok();
    let range = match (first.trim().is_empty(), last.trim().is_empty()) {
        // bytes=-N: the last N bytes.
        (true, false) => {
            let n = number(last).ok_or(Error::RangeNotSatisfiable { size })?;
            if n == 0 || size == 0 {
                return Err(unsatisfiable);
            }
            size.saturating_sub(n)..size
        }
        // bytes=A-
        (false, true) => {
            let start = number(first).ok_or(Error::RangeNotSatisfiable { size })?;
            start..size
        }
        // bytes=A-B
        (false, false) => {
            let (Some(start), Some(end)) = (number(first), number(last)) else {
                return Err(unsatisfiable);
            };
            if end < start {
                return Err(unsatisfiable);
            }
            start..end.saturating_add(1).min(size)
        }
        (true, true) => return Err(unsatisfiable),
    };
    if range.start >= size {
        return Err(unsatisfiable);
    }
    Ok(Some(range))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_parsed_against_the_size() {
        let ok = [
            ("bytes=0-99", Some(0..100)),
            ("bytes=100-", Some(100..1000)),
            ("bytes=-10", Some(990..1000)),
            ("bytes=-5000", Some(0..1000)),
            ("bytes=990-5000", Some(990..1000)),
            ("bytes=0-0", Some(0..1)),
            ("items=0-5", None),
            ("bytes=0-1,5-6", None),
        ];
        for (header, expected) in ok {
            assert_eq!(parse_range(header, 1000).unwrap(), expected, "{header}");
        }
        for bad in [
            "bytes=1000-",
            "bytes=5-2",
            "bytes=-0",
            "bytes=x-1",
            "bytes=-",
            "bytes=7",
        ] {
            assert!(
                matches!(
                    parse_range(bad, 1000),
                    Err(Error::RangeNotSatisfiable { size: 1000 })
                ),
                "{bad}"
            );
        }
    }
}
