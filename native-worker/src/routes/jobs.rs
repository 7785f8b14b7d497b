//! `/internal/jobs`: intake (uploads, held uploads and their start, links), listing, status,
//! audio download and deletion.

use std::ops::Range;
use std::str::FromStr;
use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, RawQuery, State as AxumState};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;
use mp3conv_contract::event::{Envelope, Event};
use mp3conv_contract::job::upload_query::{self, HOLD};
use mp3conv_contract::job::{DEFAULT_PAGE, Download, MAX_PAGE};
use mp3conv_contract::options::{OptionError, Options, json_object};
use serde::Deserialize;
use tracing::Instrument as _;

use super::Owner;
use crate::State;
use crate::error::Error;
use crate::idempotency;
use crate::job::{Audio, Job, JobId, JobPage, LinkRequest, Source, Status, track_blob_id};
use crate::queue::{JobMessage, MessageExt as _, Route};
use crate::quota::{self, Admission};
use mp3conv_contract::quota::Limits;

/// Largest JSON body accepted for a link or a start.
const JSON_BODY_LIMIT: usize = 64 * 1024;

/// What the query of `POST /internal/jobs` asks for.
#[derive(Debug, Default)]
struct CreateQuery {
    /// Original file name of an upload (used for the ID3 title).
    filename: Option<String>,
    /// Hold the upload until it is started (`hold=true`).
    hold: bool,
    /// Every other parameter: an option, read by [`Options::set`].
    options: Options,
}

/// Reads the query of `POST /internal/jobs` onto `options` (a link's body's, or none): a
/// parameter given twice, or in the query and the body, is refused (`duplicate_field`).
fn create_query(query: Option<&str>, options: Options) -> Result<CreateQuery, OptionError> {
    let mut read = CreateQuery {
        options,
        ..CreateQuery::default()
    };
    let mut hold = None;
    for (name, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match name.as_ref() {
            upload_query::FILENAME => {
                if read.filename.replace(value.into_owned()).is_some() {
                    return Err(duplicate(upload_query::FILENAME));
                }
            }
            HOLD => {
                let held = match value.trim().to_ascii_lowercase().as_str() {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => {
                        return Err(OptionError {
                            field: HOLD.to_owned(),
                            code: "invalid_option",
                            message: "`hold` must be true or false".to_owned(),
                        });
                    }
                };
                if hold.replace(held).is_some() {
                    return Err(duplicate(HOLD));
                }
            }
            option => read.options.set(option, &value)?,
        }
    }
    read.options.check()?;
    read.hold = hold.unwrap_or(false);
    Ok(read)
}

fn duplicate(field: &str) -> OptionError {
    OptionError {
        field: field.to_owned(),
        code: "duplicate_field",
        message: format!("`{field}` is given more than once"),
    }
}

fn traceparent(headers: &HeaderMap) -> Option<String> {
    headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= 128)
        .map(str::to_owned)
}

/// Options from a JSON object, by the contract's one rule; a refused option names its field.
fn json_options(body: &[u8]) -> Result<Options, Error> {
    Ok(Options::from_json(&json_object(body)?)?)
}

/// `POST /internal/jobs`: an upload (the body is the video, streamed into the blob store;
/// `?filename=`, `?hold=` and any option as a parameter, e.g. `?bitrate=320&start=5`) or, with
/// `Content-Type: application/json`, a link `{"url": "...", ...options}` (options may be
/// parameters too, each in one place only). Answers 202 with the queued job, or with
/// `hold=true` (uploads only) the held job: stored, not queued, not listed, no event, until
/// `POST /internal/jobs/{id}/start`.
///
/// Errors: 400 `empty_upload`, `invalid_url`, `link_forbidden`, `invalid_json`, `body_read`,
/// and for options (with `field`) `invalid_option`, `invalid_bitrate`, `unknown_field`,
/// `duplicate_field`, `field_too_large`; 413 `too_large`. With `Idempotency-Key` (see
/// [`idempotency`]): 202 with the first job and `Idempotent-Replayed: true` for a repeated
/// request, 422 `idempotency_key_reused`, 409 `idempotency_key_in_use`, 400
/// `invalid_idempotency_key`.
pub(super) async fn create(
    AxumState(state): AxumState<Arc<State>>,
    Owner(owner): Owner,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Error> {
    let key = idempotency::key(&headers);
    let limits = quota::limits(&state.config.quota, &headers);
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.trim_start().starts_with("application/json"));
    let (job, key) = if is_json {
        let bytes = axum::body::to_bytes(body, JSON_BODY_LIMIT)
            .await
            .map_err(|e| Error::bad_request("invalid_json", e.to_string()))?;
        let key = key?;
        let limits = limits?;
        let link = LinkRequest::parse(&bytes)?;
        let query = create_query(query.as_deref(), link.options)?;
        if query.hold {
            return Err(Error::Option(OptionError {
                field: HOLD.to_owned(),
                code: "invalid_option",
                message: "`hold` applies to uploads, not links".to_owned(),
            }));
        }
        let url = state
            .fetcher
            .check_url(&link.url)
            .map_err(|e| Error::BadRequest {
                code: e.code(),
                message: e.to_string(),
            })?;
        let admission = admit(&state, &owner, &limits, key.as_deref()).await?;
        let mut job = Job::with_options(owner, Source::link(url), query.options);
        job.limits = admission.media;
        state.jobs.insert(&job).await?;
        // Claimed once stored, so that a claim always names a job that exists (one whose job
        // is missing was deleted, and is taken over).
        if let Some(key) = &key {
            let print = idempotency::fingerprint(&job, None);
            let claimed = idempotency::claim(state.jobs.as_ref(), &job, key, &print).await;
            if !matches!(claimed, Ok(None)) {
                // Nobody heard of this job yet: no event, no message.
                let _ = state.jobs.delete(job.id).await;
                return replay(&state, claimed, &headers).await;
            }
        }
        confirm(&state, &job, &limits, key.as_deref()).await?;
        (job, key)
    } else {
        let read = create_query(query.as_deref(), Options::default())
            .map_err(Error::from)
            .and_then(|query| Ok((query, key?, limits?)));
        let (query, key, limits) = match read {
            Ok(read) => read,
            Err(e) => {
                // Read a little of the video first, so that a client still sending it gets
                // the answer rather than a reset.
                let mut stream = body.into_data_stream().map_err(std::io::Error::other);
                crate::storage::drain(&mut stream).await;
                return Err(e);
            }
        };
        let admitted = match admit(&state, &owner, &limits, key.as_deref()).await {
            Ok(admitted) => admitted,
            Err(e) => {
                let mut stream = body.into_data_stream().map_err(std::io::Error::other);
                crate::storage::drain(&mut stream).await;
                return Err(e);
            }
        };
        let limit = admitted.max_bytes;
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > limit) {
            let mut stream = body.into_data_stream().map_err(std::io::Error::other);
            crate::storage::drain(&mut stream).await;
            return Err(refused(&state, admitted.too_large(&limits)));
        }
        let filename = query
            .filename
            .filter(|f| !f.trim().is_empty())
            .unwrap_or_else(|| "video".to_owned());
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut job = Job::with_options(
            owner,
            Source::Upload {
                filename: filename.clone(),
                content_type,
            },
            query.options,
        );
        job.held = query.hold;
        // With a key, the bytes are hashed on their way to the store.
        let hasher = key
            .as_ref()
            .map(|_| Arc::new(std::sync::Mutex::new(idempotency::Hasher::default())));
        let hashing = hasher.clone();
        let stream = body
            .into_data_stream()
            .map_err(std::io::Error::other)
            .inspect_ok(move |chunk| {
                if let Some(hasher) = &hashing {
                    hasher
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .update(chunk);
                }
            });
        let size = state
            .videos
            .put(&job.video_id, &filename, Box::pin(stream), limit)
            .await
            .map_err(|e| match e {
                Error::TooLarge { .. } => refused(&state, admitted.too_large(&limits)),
                e => e,
            })?;
        job.video_bytes = size;
        job.limits = admitted.media;
        if size == 0 {
            state.videos.delete(&job.video_id).await?;
            return Err(Error::bad_request("empty_upload", "the upload is empty"));
        }
        state.metrics.bytes_in.inc_by(size);
        let hash = hasher.map(|hasher| {
            std::mem::take(&mut *hasher.lock().unwrap_or_else(|e| e.into_inner())).finish()
        });
        if let Err(e) = state.jobs.insert(&job).await {
            let _ = state.videos.delete(&job.video_id).await;
            return Err(e);
        }
        // A held upload's options come at its start: its key is claimed there.
        if let (Some(key), Some(hash), false) = (&key, &hash, job.held) {
            let print = idempotency::fingerprint(&job, Some(hash));
            let claimed = idempotency::claim(state.jobs.as_ref(), &job, key, &print).await;
            if !matches!(claimed, Ok(None)) {
                // A replay or a refusal: this request's job and copy of the video go.
                let _ = state.jobs.delete(job.id).await;
                let _ = state.videos.delete(&job.video_id).await;
                return replay(&state, claimed, &headers).await;
            }
        }
        // A held upload is counted at its start, once its key is claimed: a retry answered
        // there with its first job must not count as one made.
        if !job.held
            && let Err(e) = confirm(&state, &job, &limits, key.as_deref()).await
        {
            let _ = state.videos.delete(&job.video_id).await;
            return Err(e);
        }
        if job.held {
            if let Some(hash) = &hash {
                idempotency::hold_hash(state.jobs.as_ref(), &job, hash).await?;
            }
            // Nobody hears of it until it is started: no event, no message.
            tracing::info!(job_id = %job.id, "upload held for its options");
            return Ok((StatusCode::ACCEPTED, Json(job)).into_response());
        }
        (job, key)
    };
    queue_keyed(&state, job, &headers, key.as_deref()).await
}

/// The quota's first check of a new job of `owner` (see [`quota`]). A repeated request is
/// not checked: it is answered with its first job, whatever the quota says now.
async fn admit(
    state: &State,
    owner: &str,
    limits: &Limits,
    key: Option<&str>,
) -> Result<Admission, Error> {
    let service_max = state.config.max_video_bytes;
    if let Some(key) = key
        && idempotency::is_claimed(state.jobs.as_ref(), owner, key).await?
    {
        return Ok(Admission::repeat(limits, service_max));
    }
    let now = time::OffsetDateTime::now_utc();
    quota::admit(
        state.jobs.as_ref(),
        owner,
        limits,
        &state.config.quota,
        service_max,
        now,
    )
    .await
    .map_err(|e| refused(state, e))
}

/// The quota's second check of a stored `job` (see [`quota::confirm`]): refused, the job
/// and its key go (the caller removes its video).
async fn confirm(
    state: &State,
    job: &Job,
    limits: &Limits,
    key: Option<&str>,
) -> Result<(), Error> {
    let now = time::OffsetDateTime::now_utc();
    let confirmed = quota::confirm(
        state.jobs.as_ref(),
        &state.quota_gate,
        job,
        limits,
        &state.config.quota,
        now,
    )
    .await;
    if let Err(e) = confirmed {
        release(state, job, key).await;
        return Err(refused(state, e));
    }
    Ok(())
}

/// Counts a quota's refusal in the metrics, passing any error on.
fn refused(state: &State, e: Error) -> Error {
    if let Error::Quota { limit, .. } = &e {
        tracing::info!(%limit, "refused by the user's quota");
        state.metrics.refused(*limit);
    }
    e
}

/// Queues a stored job; if that fails, lets go of the key it claimed, so a retry can make it.
/// This runs to its end on a task of its own: a request dropped on the way (its client gone)
/// would otherwise leave a job stored and never queued.
async fn queue_keyed(
    state: &Arc<State>,
    job: Job,
    headers: &HeaderMap,
    key: Option<&str>,
) -> Result<Response, Error> {
    let state = Arc::clone(state);
    let traceparent = traceparent(headers);
    let key = key.map(str::to_owned);
    let queueing = async move {
        let key_holder = job.clone();
        let queued = queue(&state, job, traceparent).await;
        if queued.is_err() {
            release(&state, &key_holder, key.as_deref()).await;
        }
        queued
    };
    tokio::spawn(queueing.in_current_span())
        .await
        .map_err(Error::internal)?
        .map(IntoResponse::into_response)
}

/// The answer to a claim that did not make the key this request's: the first job (queued
/// again if its request seems to have died before queueing it), or why not.
async fn replay(
    state: &State,
    claimed: Result<Option<Job>, Error>,
    headers: &HeaderMap,
) -> Result<Response, Error> {
    let first = claimed?.ok_or(Error::KeyInUse)?;
    if idempotency::stalled(&first, time::OffsetDateTime::now_utc()) {
        tracing::warn!(job_id = %first.id, "a repeated request's job was never queued: queueing it");
        let message = JobMessage::for_job(&first, 1).outgoing(Route::Video, traceparent(headers));
        state.queue.publish(Route::Video, message).await?;
    }
    Ok(replayed(first))
}

/// The answer repeating an earlier request's job.
fn replayed(first: Job) -> Response {
    tracing::info!(job_id = %first.id, "idempotent request repeated");
    (
        StatusCode::ACCEPTED,
        [(idempotency::REPLAYED_HEADER, "true")],
        Json(first),
    )
        .into_response()
}

/// Lets go of `key` after `job`'s creation failed, so a retry can make the job.
async fn release(state: &State, job: &Job, key: Option<&str>) {
    if let Some(key) = key
        && let Err(e) = state.jobs.release_key(&job.owner, key, job.id).await
    {
        tracing::warn!(error = %crate::error::error_chain(&e), "cannot release an idempotency key");
    }
}

/// Announces a stored job and queues it for a converter; on failure removes it and its video.
async fn queue(
    state: &State,
    job: Job,
    traceparent: Option<String>,
) -> Result<(StatusCode, Json<Job>), Error> {
    // Announced, and routed to every stream, before a converter can take it: its `job.queued`
    // comes before the converter's events, which another process may publish.
    state.events.announce_job(&job).await;
    let message = JobMessage::for_job(&job, 1).outgoing(Route::Video, traceparent);
    if let Err(e) = state.queue.publish(Route::Video, message).await {
        // Not queued means not accepted: leave nothing behind (nor count it as made) and let
        // the caller retry.
        let _ = state.jobs.delete(job.id).await;
        let _ = state.jobs.forget_made(&job.owner, job.id).await;
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

/// `POST /internal/jobs/{id}/start`: queues a held upload with its final options (the JSON
/// body: [`Options`], a preset already applied, the bitrate inside), which replace any given
/// with the upload. Answers 202 with the queued job.
///
/// Errors: 404 `not_found` (also another owner's job); 409 `not_held` (not held, or started
/// already); 400 `invalid_json`, and for options (with `field`) `invalid_option`,
/// `invalid_bitrate`, `unknown_field`, `field_too_large`: the job stays held then. If it cannot
/// be queued, the job and its video are removed (503).
pub(super) async fn start(
    AxumState(state): AxumState<Arc<State>>,
    Owner(owner): Owner,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Error> {
    let key = idempotency::key(&headers)?;
    let held = owned_job(&state, &owner, &id).await?;
    if !held.held {
        return Err(Error::NotHeld);
    }
    let bytes = axum::body::to_bytes(body, JSON_BODY_LIMIT)
        .await
        .map_err(|e| Error::bad_request("invalid_json", e.to_string()))?;
    let options = json_options(&bytes)?;
    // The bitrate and the rest split as for any new job.
    let asked = Job::with_options(held.owner.clone(), held.source.clone(), options);
    let mut job = held;
    job.bitrate = asked.bitrate;
    job.options = asked.options;
    job.held = false;
    job.set_status(Status::Queued);
    if let Some(key) = &key {
        let hash = match idempotency::held_hash(state.jobs.as_ref(), &owner, job.id).await? {
            Some(hash) => hash,
            // Held without a key: its bytes are read back once.
            None => stored_hash(&state, &job.video_id).await?,
        };
        let print = idempotency::fingerprint(&job, Some(&hash));
        let claimed = idempotency::claim(state.jobs.as_ref(), &job, key, &print).await;
        if !matches!(claimed, Ok(None)) {
            // A replay or a refusal: this held upload and its video go.
            if state.jobs.delete(job.id).await? {
                let _ = state.videos.delete(&job.video_id).await;
            }
            let _ = idempotency::forget_held(state.jobs.as_ref(), &owner, job.id).await;
            return replay(&state, claimed, &headers).await;
        }
    }
    if !state.jobs.start_held(&job).await? {
        // Another start won (it keeps the key it claimed), or the job was deleted (or swept)
        // meanwhile.
        return Err(match state.jobs.get(job.id).await? {
            Some(_) => Error::NotHeld,
            None => {
                release(&state, &job, key.as_deref()).await;
                Error::NotFound
            }
        });
    }
    let _ = idempotency::forget_held(state.jobs.as_ref(), &owner, job.id).await;
    // Counted now, with the limits of this request: refused, the job goes, and its video.
    let limits = quota::limits(&state.config.quota, &headers);
    let confirmed = match limits {
        Ok(limits) => confirm(&state, &job, &limits, key.as_deref()).await,
        Err(e) => {
            let _ = state.jobs.delete(job.id).await;
            release(&state, &job, key.as_deref()).await;
            Err(e)
        }
    };
    if let Err(e) = confirmed {
        let _ = state.videos.delete(&job.video_id).await;
        return Err(e);
    }
    queue_keyed(&state, job, &headers, key.as_deref()).await
}

/// The SHA-256 of a stored video, read back from the store.
async fn stored_hash(state: &State, video_id: &str) -> Result<String, Error> {
    let size = state.videos.size(video_id).await?.ok_or(Error::NotFound)?;
    let mut stream = state.videos.get(video_id, 0..size).await?;
    let mut hasher = idempotency::Hasher::default();
    while let Some(chunk) = stream
        .try_next()
        .await
        .map_err(|e| Error::unavailable("blob store", e))?
    {
        hasher.update(&chunk);
    }
    Ok(hasher.finish())
}

/// `GET /internal/usage`: the owner's quota: their limits (the defaults with the overrides in
/// `X-Mp3conv-Limits`) and what they use of them.
///
/// Errors: 400 `invalid_limits`.
pub(super) async fn usage(
    AxumState(state): AxumState<Arc<State>>,
    Owner(owner): Owner,
    headers: HeaderMap,
) -> Result<Json<mp3conv_contract::quota::Quota>, Error> {
    let limits = quota::limits(&state.config.quota, &headers)?;
    let now = time::OffsetDateTime::now_utc();
    let quota = quota::quota(
        state.jobs.as_ref(),
        &owner,
        limits,
        &state.config.quota,
        now,
    )
    .await?;
    Ok(Json(quota))
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

/// `DELETE /internal/jobs/{id}`: removes the job, its video, its MP3 and its tracks' MP3s.
/// 204.
pub(super) async fn delete(
    AxumState(state): AxumState<Arc<State>>,
    Owner(owner): Owner,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, Error> {
    let job = owned_job(&state, &owner, &id).await?;
    // The job goes first: once it is gone, a converter still working on it cleans up after
    // itself instead of completing it.
    // A held upload was never announced: its owner's streams have nothing to forget.
    if state.jobs.delete(job.id).await? && !job.held {
        state.events.publish(Envelope::new(
            job.owner.clone(),
            Event::JobDeleted { job_id: job.id },
        ));
    }
    state.videos.delete(&job.video_id).await?;
    state.mp3s.delete(&job.id.to_string()).await?;
    for number in 1..=job.tracks.len() as u32 {
        state.mp3s.delete(&track_blob_id(job.id, number)).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /internal/jobs/{id}/audio`: the MP3, streamed, saved as the job's download name
/// (`Content-Disposition`). Supports a single `Range` (206, or 416 `range_not_satisfiable`),
/// `ETag` and `If-None-Match` (304). 409 `not_ready` before done, 410 `audio_expired` once
/// expired.
pub(super) async fn audio(
    AxumState(state): AxumState<Arc<State>>,
    Owner(owner): Owner,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Error> {
    let job = owned_job(&state, &owner, &id).await?;
    let audio = match (&job.status, &job.audio) {
        (Status::Done, Some(audio)) => audio,
        (Status::Expired, _) => return Err(Error::Expired),
        (status, _) => return Err(Error::NotReady(status.as_str())),
    };
    serve_mp3(&state, audio, &job.download_name(Download::Audio), &headers).await
}

/// An MP3 from the MP3 store, streamed as an attachment saved as `name`: a single `Range`
/// (206, or 416 `range_not_satisfiable`), `ETag` (the blob id and size: blobs never change in
/// place) and `If-None-Match` (304). The one rule for a job's MP3 and its tracks.
pub(super) async fn serve_mp3(
    state: &State,
    audio: &Audio,
    name: &str,
    headers: &HeaderMap,
) -> Result<Response, Error> {
    let etag = format!("\"{}-{}\"", audio.id, audio.size);
    let etag_value = HeaderValue::from_str(&etag).map_err(Error::internal)?;
    let disposition = attachment_header(name)?;
    let if_none_match: Vec<&str> = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let if_none_match = (!if_none_match.is_empty()).then(|| if_none_match.join(","));
    if mp3conv_contract::http::none_match(if_none_match.as_deref(), &etag) {
        return Ok((
            StatusCode::NOT_MODIFIED,
            [
                (header::ETAG, etag_value),
                (header::CONTENT_DISPOSITION, disposition),
            ],
        )
            .into_response());
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
    h.insert(header::CONTENT_DISPOSITION, disposition);
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

/// `Content-Disposition` of a download saved as `name`.
pub(super) fn attachment_header(name: &str) -> Result<HeaderValue, Error> {
    HeaderValue::from_str(&mp3conv_contract::http::attachment(name)).map_err(Error::internal)
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
    fn upload_queries_read_every_other_parameter_as_an_option() {
        let read = create_query(
            Some("filename=My%20clip.mp4&hold=true&bitrate=320&start=1:30&title=T%C3%AAte"),
            Options::default(),
        )
        .unwrap();
        assert_eq!(read.filename.as_deref(), Some("My clip.mp4"));
        assert!(read.hold);
        assert_eq!(read.options.bitrate, Some("320".parse().unwrap()));
        assert_eq!(read.options.start.map(|s| s.millis()), Some(90_000));
        assert_eq!(read.options.title.as_deref(), Some("Tête"));
        let plain = create_query(None, Options::default()).unwrap();
        assert!(!plain.hold && plain.filename.is_none() && plain.options.is_empty());
        assert!(
            !create_query(Some("hold=0"), Options::default())
                .unwrap()
                .hold
        );

        let mut body = Options::default();
        body.set("bitrate", "128").unwrap();
        for (query, base, field, code) in [
            ("speed=2", Options::default(), "speed", "unknown_field"),
            (
                "bitrate=999",
                Options::default(),
                "bitrate",
                "invalid_bitrate",
            ),
            (
                "start=20&end=10",
                Options::default(),
                "end",
                "invalid_option",
            ),
            ("hold=maybe", Options::default(), "hold", "invalid_option"),
            (
                "hold=true&hold=false",
                Options::default(),
                "hold",
                "duplicate_field",
            ),
            (
                "filename=a&filename=b",
                Options::default(),
                "filename",
                "duplicate_field",
            ),
            (
                "title=a&title=b",
                Options::default(),
                "title",
                "duplicate_field",
            ),
            // A link's body and its query name the same option.
            ("bitrate=320", body.clone(), "bitrate", "duplicate_field"),
            // Bytes that are not UTF-8 are read lossily, then refused by name.
            ("%FF=1", Options::default(), "\u{FFFD}", "unknown_field"),
        ] {
            let err = create_query(Some(query), base).unwrap_err();
            assert_eq!((err.field.as_str(), err.code), (field, code), "{query}");
        }
    }

    #[tokio::test]
    async fn refused_options_name_their_field_in_the_body() {
        let err = create_query(Some("normalize=-20"), Options::default()).unwrap_err();
        let response = Error::from(err).into_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"]["code"], "invalid_option");
        assert_eq!(body["error"]["field"], "normalize");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("normalize")
        );
        let plain = Error::NotHeld.into_response();
        assert_eq!(plain.status(), StatusCode::CONFLICT);
        let body = axum::body::to_bytes(plain.into_body(), 4096).await.unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"]["code"], "not_held");
        assert!(body["error"].get("field").is_none(), "{body}");
    }

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
