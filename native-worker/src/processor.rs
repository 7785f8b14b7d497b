//! The converter: takes jobs off the `video` queue, converts them and announces the result.
//!
//! A delivery is acked only once the job reached a final state that is stored and announced
//! (the announcement confirmed by the broker). Every step is idempotent, so a redelivery after a
//! crash redoes at most the unfinished steps: blobs are named after the job (rewriting replaces),
//! and a job already done or failed is only announced if it was not yet.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use time::OffsetDateTime;
use tokio::io::AsyncWriteExt;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio_util::io::ReaderStream;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use mp3conv_contract::quota::Limit;

use crate::State;
use crate::config::QueueKind;
use crate::convert::{self, ConvertError, Request};
use crate::error::{Error, error_chain};
use crate::job::{Audio, Job, JobId, Source, Status, Track, track_blob_id};
use crate::jobs::Saved;
use crate::queue::{Delivery, JobMessage, MessageExt as _, Outcome, Route};

/// Pause before a delivery is requeued because a dependency failed, so a broken database does
/// not turn into a hot redelivery loop.
const REQUEUE_PAUSE: Duration = Duration::from_secs(1);
/// Pause before reconnecting to the queue.
const RECONNECT_PAUSE: Duration = Duration::from_secs(1);

/// Consumes until `shutdown`, then lets in-flight jobs finish within the grace period and
/// abandons the rest (their deliveries go back to the queue).
pub(crate) async fn run(state: Arc<State>, shutdown: CancellationToken) {
    // Jobs in hand: one per conversion slot plus one per download slot, so that links being
    // downloaded (see `fetch`) leave the conversion slots to jobs ready to convert.
    let concurrency = state.config.concurrency + state.config.fetch.concurrency;
    let semaphore = Arc::new(Semaphore::new(concurrency));
    let prefetch = u16::try_from(concurrency).unwrap_or(u16::MAX);
    let mut tasks = JoinSet::new();
    'consuming: while !shutdown.is_cancelled() {
        let mut deliveries = tokio::select! {
            () = shutdown.cancelled() => break,
            consumed = state.queue.consume(prefetch) => match consumed {
                Ok(deliveries) => deliveries,
                Err(e) => {
                    tracing::warn!(error = %error_chain(&e), "cannot consume; retrying");
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(RECONNECT_PAUSE) => continue,
                    }
                }
            },
        };
        loop {
            let permit = tokio::select! {
                () = shutdown.cancelled() => break 'consuming,
                permit = Arc::clone(&semaphore).acquire_owned() => permit.expect("never closed"),
            };
            let next = tokio::select! {
                () = shutdown.cancelled() => break 'consuming,
                next = deliveries.next() => next,
            };
            match next {
                Some(Ok(delivery)) => {
                    let state = Arc::clone(&state);
                    tasks.spawn(async move {
                        handle(&state, delivery).await;
                        drop(permit);
                    });
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %error_chain(&e), "queue connection lost; reconnecting");
                    break;
                }
                None => {
                    tracing::warn!("queue consumer ended; reconnecting");
                    break;
                }
            }
            while tasks.try_join_next().is_some() {}
        }
    }
    let grace = state.config.shutdown_grace;
    let drained =
        tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(
            in_flight = tasks.len(),
            "grace period over; stopping conversions for redelivery"
        );
        tasks.shutdown().await;
    }
}

async fn handle(state: &State, delivery: Delivery) {
    let message: JobMessage = match serde_json::from_slice(&delivery.body) {
        Ok(message) => message,
        Err(e) => {
            tracing::error!(error = %e, "unreadable message; dead-lettering it");
            state.metrics.dead_lettered.inc();
            if let Err(e) = delivery.settle(Outcome::DeadLetter).await {
                tracing::warn!(error = %error_chain(&e), "could not dead-letter");
            }
            return;
        }
    };
    let span = tracing::info_span!(
        "job",
        job_id = %message.job_id,
        attempt = message.attempt,
        redelivered = delivery.redelivered,
        trace_id = %trace_id(delivery.traceparent.as_deref()),
    );
    let traceparent = delivery.traceparent.clone();
    let deadline = delivery_deadline(state, delivery.received_at);
    async {
        let outcome = leased(state, &message, deadline, traceparent).await;
        if outcome == Outcome::Requeue {
            tokio::time::sleep(REQUEUE_PAUSE).await;
        }
        if outcome == Outcome::DeadLetter {
            state.metrics.dead_lettered.inc();
        }
        tracing::info!(?outcome, "settling");
        if let Err(e) = delivery.settle(outcome).await {
            // The broker redelivers it; the steps done so far are not repeated.
            tracing::warn!(error = %error_chain(&e), "could not settle the delivery");
        }
    }
    .instrument(span)
    .await;
}

/// Why an attempt stopped short of an MP3.
struct Failure {
    code: &'static str,
    message: String,
    permanent: bool,
    /// The option at fault, if one is.
    field: Option<&'static str>,
}

impl Failure {
    fn transient(code: &'static str, error: &Error) -> Self {
        Self {
            code,
            message: error.to_string(),
            permanent: false,
            field: None,
        }
    }
}

impl From<crate::fetch::FetchError> for Failure {
    fn from(e: crate::fetch::FetchError) -> Self {
        Self {
            code: e.code(),
            message: e.to_string(),
            permanent: e.is_permanent(),
            field: None,
        }
    }
}

impl From<ConvertError> for Failure {
    fn from(e: ConvertError) -> Self {
        Self {
            code: e.code(),
            message: e.to_string(),
            permanent: e.is_permanent(),
            field: e.field(),
        }
    }
}

enum Stop {
    /// The job was deleted meanwhile.
    Deleted,
    /// Another converter holds the job's lease now: this attempt must not write.
    LeaseLost,
    /// The delivery's time ran out before the conversion began (waiting for a slot): the
    /// job did nothing wrong, so it goes back to the queue without using up an attempt.
    OutOfTime,
    /// The attempt failed.
    Failed(Failure),
}

impl From<Failure> for Stop {
    fn from(failure: Failure) -> Self {
        Self::Failed(failure)
    }
}

/// When an attempt must stop so that the delivery is settled before the broker's consumer
/// timeout takes it back (and hands it to another converter while this one still works):
/// a tenth of the timeout, at most a minute, before it. The in-process queue has no timeout.
fn delivery_deadline(state: &State, received_at: Instant) -> Option<tokio::time::Instant> {
    if state.config.queue.kind != QueueKind::Rabbitmq {
        return None;
    }
    Some(tokio::time::Instant::from_std(
        received_at + state.config.queue.delivery_budget(),
    ))
}

/// How much earlier than its expiry a converter stops working under a lease it could not
/// renew: the clock skew between converters that the lease tolerates (another converter
/// whose clock runs this much ahead sees the lease expire this much sooner).
fn lease_skew(ttl: Duration) -> Duration {
    ttl / 6
}

/// Processes the delivery as the job's only converter: takes the job's lease (one atomic
/// compare-and-set in the job store), renews it while working, releases it at the end. A
/// delivery of a job leased elsewhere (a redelivery or duplicate while it converts) is put off
/// and tried again later; if the holder died, its lease expires and a later try takes over.
async fn leased(
    state: &State,
    message: &JobMessage,
    deadline: Option<tokio::time::Instant>,
    traceparent: Option<String>,
) -> Outcome {
    let id = message.job_id;
    let ttl = state.config.lease_ttl;
    // One holder per delivery, not per process: a duplicate handled by this same process
    // must wait like any other.
    let holder = format!("{}/{}", state.holder, uuid::Uuid::new_v4().simple());
    // The lease runs from before the request: its expiry is never later than we think.
    let asked = tokio::time::Instant::now();
    let now = time::OffsetDateTime::now_utc();
    match state.jobs.acquire_lease(id, &holder, now, now + ttl).await {
        Ok(true) => {}
        Ok(false) => return defer(state, message, traceparent).await,
        Err(e) => {
            tracing::warn!(error = %error_chain(&e), "job store unavailable");
            return Outcome::Requeue;
        }
    }
    // Tracks this attempt started storing, for the cleanup should the job be deleted.
    let written = AtomicU32::new(0);
    let outcome = tokio::select! {
        outcome = process(state, message, deadline, traceparent, &holder, &written) => outcome,
        // The attempt (and its ffmpeg) is dropped before the lease could pass to another.
        () = keep_lease(state, id, &holder, asked) => lease_lost(state, message, &written).await,
    };
    if let Err(e) = state.jobs.release_lease(id, &holder).await {
        tracing::debug!(error = %error_chain(&e), "lease not released; it expires");
    }
    outcome
}

/// Renews the job's lease every third of its length; returns once it is lost: taken by
/// another converter or gone with its job, or about to expire (by [`lease_skew`]) because
/// renewals kept failing. `asked` is when the lease was requested.
async fn keep_lease(state: &State, id: JobId, holder: &str, asked: tokio::time::Instant) {
    let ttl = state.config.lease_ttl;
    let mut expires = asked + ttl;
    let mut next = asked + ttl / 3;
    loop {
        let renewal = async {
            tokio::time::sleep_until(next).await;
            let sent = tokio::time::Instant::now();
            let until = time::OffsetDateTime::now_utc() + ttl;
            (sent, state.jobs.renew_lease(id, holder, until).await)
        };
        let (sent, renewed) = tokio::select! {
            () = tokio::time::sleep_until(expires - lease_skew(ttl)) => {
                tracing::warn!("the job's lease could not be renewed and runs out");
                return;
            }
            renewed = renewal => renewed,
        };
        next = sent + ttl / 3;
        match renewed {
            Ok(true) => expires = sent + ttl,
            Ok(false) => {
                tracing::warn!("the job's lease was taken over or the job deleted");
                return;
            }
            // Keep working while the lease still runs: the next renewal may get through.
            Err(e) => tracing::warn!(error = %error_chain(&e), "cannot renew the job's lease"),
        }
    }
}

/// After the lease was lost mid-attempt: a deleted job's files are removed (the attempt may
/// have stored its MP3 and `written` tracks just before); any other job goes back to the
/// queue, so that it is not lost whoever holds it now (a redelivery waits for that holder, see
/// [`defer`]).
async fn lease_lost(state: &State, message: &JobMessage, written: &AtomicU32) -> Outcome {
    match state.jobs.get(message.job_id).await {
        Ok(None) => cleanup_deleted(state, &message.video_fid, message.job_id, written).await,
        Ok(Some(_)) => Outcome::Requeue,
        Err(e) => {
            tracing::warn!(error = %error_chain(&e), "job store unavailable");
            Outcome::Requeue
        }
    }
}

/// A delivery of a job another converter holds: acknowledged when the job is gone or already
/// finished and announced, else sent back through a retry waiting room (its attempt number
/// unchanged) so that it is tried again once the holder is done or its lease expired.
async fn defer(state: &State, message: &JobMessage, traceparent: Option<String>) -> Outcome {
    match state.jobs.get(message.job_id).await {
        Ok(None) => return Outcome::Ack,
        Ok(Some(job)) if job.status.is_terminal() && job.announced => {
            state.metrics.duplicates.inc();
            return Outcome::Ack;
        }
        Ok(Some(_)) => {}
        Err(e) => {
            tracing::warn!(error = %error_chain(&e), "job store unavailable");
            return Outcome::Requeue;
        }
    }
    state.metrics.deferred.inc();
    tracing::info!("another converter holds the job; trying again later");
    let max_attempts = state.config.queue.max_attempts;
    if max_attempts < 2 {
        // No waiting room: back on the queue after the requeue pause.
        return Outcome::Requeue;
    }
    let (route, deferred) = deferral(message, max_attempts, traceparent);
    match state.queue.publish(route, deferred).await {
        Ok(()) => Outcome::Ack,
        Err(e) => {
            tracing::warn!(error = %error_chain(&e), "cannot put the delivery off");
            Outcome::Requeue
        }
    }
}

/// A deferred delivery: the message as it came (same attempt number), through a waiting
/// room (`video.retry.N`, N = its attempt, at least 2): the room only sets how long it
/// waits.
fn deferral(
    message: &JobMessage,
    max_attempts: u32,
    traceparent: Option<String>,
) -> (Route, crate::queue::Outgoing) {
    let route = Route::Retry {
        attempt: message.attempt.clamp(2, max_attempts),
    };
    (route, message.outgoing(route, traceparent))
}

async fn process(
    state: &State,
    message: &JobMessage,
    deadline: Option<tokio::time::Instant>,
    traceparent: Option<String>,
    holder: &str,
    written: &AtomicU32,
) -> Outcome {
    let mut job = match state.jobs.get(message.job_id).await {
        Ok(Some(job)) => job,
        Ok(None) => {
            tracing::info!("job no longer exists");
            return Outcome::Ack;
        }
        Err(e) => {
            tracing::warn!(error = %error_chain(&e), "job store unavailable");
            return Outcome::Requeue;
        }
    };
    if job.owner != message.owner || job.video_id != message.video_fid {
        tracing::error!("message does not match its job; dead-lettering it");
        return Outcome::DeadLetter;
    }
    if job.status.is_terminal() {
        if job.announced {
            state.metrics.duplicates.inc();
        }
        return finish(
            state,
            &mut job,
            message.attempt,
            traceparent,
            holder,
            Outcome::Ack,
        )
        .await;
    }
    let attempt = message.attempt.max(1);
    let max_attempts = state.config.queue.max_attempts;
    let attempted = attempt_conversion(state, &mut job, attempt, holder, deadline, written).await;
    let failure = match attempted {
        Ok(()) => {
            // Its `job.done`, routed to the streams before the announcement on `mp3`, so the
            // notification another process makes of it comes after it. Out of the delivery's
            // deadline: the job is done and saved.
            state.events.announce_job(&job).await;
            return finish(state, &mut job, attempt, traceparent, holder, Outcome::Ack).await;
        }
        Err(Stop::Deleted) => {
            return cleanup_deleted(state, &job.video_id, job.id, written).await;
        }
        Err(Stop::LeaseLost) => return lease_lost(state, message, written).await,
        Err(Stop::OutOfTime) => {
            tracing::info!("no conversion slot before the delivery's deadline; requeueing");
            return Outcome::Requeue;
        }
        Err(Stop::Failed(failure)) => failure,
    };
    tracing::warn!(code = failure.code, message = %failure.message, permanent = failure.permanent, "attempt failed");
    if failure.permanent {
        match failure.field {
            Some(field) => job.fail_option(failure.code, failure.message, field),
            None => job.fail(failure.code, failure.message),
        }
        job.expire_after(state.config.retention.failed);
        return save_and_finish(
            state,
            job,
            attempt,
            traceparent,
            holder,
            Outcome::Ack,
            written,
        )
        .await;
    }
    if attempt < max_attempts {
        job.set_status(Status::Queued);
        match state.jobs.save_held(&job, holder).await {
            // Routed before the retry is queued, which another converter may take.
            Ok(Saved::Saved) => state.events.announce_job(&job).await,
            Ok(Saved::Gone) => {
                return cleanup_deleted(state, &job.video_id, job.id, written).await;
            }
            Ok(Saved::NotHeld) => return lease_lost(state, message, written).await,
            Err(_) => return Outcome::Requeue,
        }
        let retry = JobMessage {
            attempt: attempt + 1,
            ..message.clone()
        };
        let route = Route::Retry {
            attempt: attempt + 1,
        };
        return match state
            .queue
            .publish(route, retry.outgoing(route, traceparent))
            .await
        {
            Ok(()) => {
                state.metrics.retries.inc();
                Outcome::Ack
            }
            Err(e) => {
                tracing::warn!(error = %error_chain(&e), "cannot schedule the retry");
                Outcome::Requeue
            }
        };
    }
    job.fail(
        failure.code,
        format!("gave up after {attempt} attempts: {}", failure.message),
    );
    job.expire_after(state.config.retention.failed);
    save_and_finish(
        state,
        job,
        attempt,
        traceparent,
        holder,
        Outcome::DeadLetter,
        written,
    )
    .await
}

/// An attempt that reached the delivery deadline (its ffmpeg is stopped when the attempt is
/// dropped). Permanent: another attempt would take as long.
fn too_long(state: &State) -> Stop {
    let timeout = state.config.queue.broker_consumer_timeout;
    Stop::Failed(Failure {
        code: "too_long",
        message: format!(
            "the conversion would outlast the queue's delivery timeout ({}s)",
            timeout.as_secs()
        ),
        permanent: true,
        field: None,
    })
}

/// What the job's owner keeps and may keep, bytes, if they have a storage limit.
async fn storage_use(state: &State, job: &Job) -> Result<Option<(u64, u64)>, Stop> {
    let Some(limit) = job.limits.storage_bytes else {
        return Ok(None);
    };
    let usage = state
        .jobs
        .usage(&job.owner, OffsetDateTime::now_utc())
        .await
        .map_err(|e| Failure::transient("storage_unavailable", &e))?;
    Ok(Some((usage.stored_bytes, limit)))
}

/// A link's video that does not fit in its owner's storage (`(stored, limit)`): permanent,
/// the job fails (and its video goes with it).
fn over_storage(state: &State, (stored, limit): (u64, u64)) -> Stop {
    state.metrics.refused(Limit::StorageBytes);
    Stop::Failed(Failure {
        code: "quota_exceeded",
        message: crate::quota::storage_full(stored, limit),
        permanent: true,
        field: None,
    })
}

/// A video longer than its owner's limit: permanent, the job fails.
fn too_long_for_quota(seconds: f64, max: u64) -> Stop {
    Stop::Failed(Failure {
        code: "quota_exceeded",
        message: crate::quota::too_long(seconds, max),
        permanent: true,
        field: None,
    })
}

/// Saves a job's final state, if this converter still holds its lease, and announces it.
async fn save_and_finish(
    state: &State,
    mut job: Job,
    attempt: u32,
    traceparent: Option<String>,
    holder: &str,
    then: Outcome,
    written: &AtomicU32,
) -> Outcome {
    source_goes(state, &mut job);
    match state.jobs.save_held(&job, holder).await {
        Ok(Saved::Saved) => {
            state.metrics.job(job.status);
            // Routed to the streams before the announcement on `mp3`, so the notification
            // another process makes of it comes after it.
            state.events.announce_job(&job).await;
            finish(state, &mut job, attempt, traceparent, holder, then).await
        }
        Ok(Saved::Gone) => cleanup_deleted(state, &job.video_id, job.id, written).await,
        Ok(Saved::NotHeld) => {
            tracing::warn!("lost the job's lease; its new holder settles it");
            Outcome::Requeue
        }
        Err(e) => {
            tracing::warn!(error = %error_chain(&e), "cannot save the job");
            Outcome::Requeue
        }
    }
}

/// A finished job's video stops counting in its owner's storage as it is saved finished, unless
/// the operator keeps sources: [`finish`] removes it next.
fn source_goes(state: &State, job: &mut Job) {
    if !state.config.retention.keep_sources {
        job.video_bytes = 0;
    }
}

/// Removes a finished job's video (see [`crate::retention`]), announces the job unless that
/// was done already, then settles with `then`.
async fn finish(
    state: &State,
    job: &mut Job,
    attempt: u32,
    traceparent: Option<String>,
    holder: &str,
    then: Outcome,
) -> Outcome {
    crate::retention::remove_source(state, job).await;
    // An expired job was done long ago: telling of it now would tell of nothing to download.
    if job.announced || job.status == Status::Expired {
        return then;
    }
    let announcement = JobMessage::for_job(job, attempt).outgoing(Route::Mp3, traceparent);
    let message_id = announcement.message_id.clone();
    if let Err(e) = state.queue.publish(Route::Mp3, announcement).await {
        tracing::warn!(error = %error_chain(&e), "cannot announce; will retry");
        return Outcome::Requeue;
    }
    tracing::info!(%message_id, "announced");
    job.announced = true;
    match state.jobs.save_held(job, holder).await {
        Ok(_) => then,
        // Announced but not recorded: a redelivery announces again with the same message_id.
        Err(_) => Outcome::Requeue,
    }
}

/// The trace id of a message's `traceparent`, or nothing when it has none (or a broken one).
fn trace_id(traceparent: Option<&str>) -> String {
    traceparent
        .and_then(|t| mp3conv_contract::trace::TraceParent::parse(t).ok())
        .map(|t| t.trace_id().to_string())
        .unwrap_or_default()
}

/// Removes the files of a job deleted while this attempt held it: its video, its MP3 and the
/// `written` tracks this attempt began to store.
async fn cleanup_deleted(state: &State, video_id: &str, id: JobId, written: &AtomicU32) -> Outcome {
    tracing::info!("job deleted while converting; removing its files");
    let video = state.videos.delete(video_id).await;
    let audio = state.mp3s.delete(&id.to_string()).await;
    let tracks = remove_tracks(state, id, written).await;
    match (video, audio, tracks) {
        (Ok(()), Ok(()), Ok(())) => Outcome::Ack,
        _ => Outcome::Requeue,
    }
}

/// Removes the `written` tracks an attempt began to store (each tried, the last error
/// returned).
async fn remove_tracks(state: &State, id: JobId, written: &AtomicU32) -> Result<(), Error> {
    let mut removed = Ok(());
    for number in 1..=written.load(Ordering::SeqCst) {
        if let Err(e) = state.mp3s.delete(&track_blob_id(id, number)).await {
            removed = Err(e);
        }
    }
    removed
}

/// Saves the job if this converter still holds its lease.
async fn save(state: &State, job: &Job, holder: &str) -> Result<(), Stop> {
    match state.jobs.save_held(job, holder).await {
        Ok(Saved::Saved) => Ok(()),
        Ok(Saved::Gone) => Err(Stop::Deleted),
        Ok(Saved::NotHeld) => Err(Stop::LeaseLost),
        Err(e) => Err(Failure::transient("storage_unavailable", &e).into()),
    }
}

/// Fetches the job's video page image into `dir` when its cover may be that image (the
/// default, `auto`); `None` when there is none or it cannot be had.
async fn page_image(state: &State, job: &Job, dir: &std::path::Path) -> Option<std::path::PathBuf> {
    if !matches!(
        job.options.cover,
        None | Some(mp3conv_contract::options::Cover::Auto)
    ) {
        return None;
    }
    let link = job.source.page()?.thumbnail.as_deref()?;
    let path = dir.join("page-image");
    match state.fetcher.image(link, &path).await {
        Ok(size) => {
            tracing::debug!(size, "fetched the page's image");
            Some(path)
        }
        Err(e) => {
            tracing::warn!(code = e.code(), error = %e, "no cover from the page's image");
            None
        }
    }
}

/// How often a conversion's progress is written to its job.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);

/// One attempt within the delivery's `deadline`. Downloading and waiting for a slot count
/// against it too, but running out there is no fault of the job's ([`Stop::OutOfTime`]);
/// only a conversion that outlasts it is [`too_long`].
async fn attempt_conversion(
    state: &State,
    job: &mut Job,
    attempt: u32,
    holder: &str,
    deadline: Option<tokio::time::Instant>,
    written: &AtomicU32,
) -> Result<(), Stop> {
    let Some(deadline) = deadline else {
        let slot = prepare(state, job, attempt, holder).await?;
        return convert_job(state, job, holder, slot, written).await;
    };
    let slot = tokio::time::timeout_at(deadline, prepare(state, job, attempt, holder))
        .await
        .unwrap_or(Err(Stop::OutOfTime))?;
    tokio::time::timeout_at(deadline, convert_job(state, job, holder, slot, written))
        .await
        .unwrap_or_else(|_| Err(too_long(state)))
}

/// Gets the job ready to convert: its link downloaded, a conversion slot taken.
async fn prepare<'a>(
    state: &'a State,
    job: &mut Job,
    attempt: u32,
    holder: &str,
) -> Result<tokio::sync::SemaphorePermit<'a>, Stop> {
    if attempt == 1 && job.status == Status::Queued {
        // From its creation to a converter taking it up: how long converters keep people
        // waiting (scaling from zero, a backlog).
        let waited = OffsetDateTime::now_utc() - job.created_at;
        state
            .metrics
            .queue_wait_seconds
            .observe(waited.as_seconds_f64().max(0.0));
    }
    job.attempts = attempt;
    let limit = job
        .limits
        .max_bytes
        .map_or(state.config.max_video_bytes, |max| {
            max.min(state.config.max_video_bytes)
        });
    if let Source::Link { url, .. } = &job.source {
        let present = state
            .videos
            .size(&job.video_id)
            .await
            .map_err(|e| Failure::transient("storage_unavailable", &e))?;
        if present.is_none() {
            let url = url.clone();
            // The owner's storage as it is now: the download may bring what is left.
            let storage = storage_use(state, job).await?;
            let room = storage.map(|(stored, limit)| limit.saturating_sub(stored));
            let limit = room.map_or(limit, |room| room.min(limit));
            job.set_status(Status::Downloading);
            save(state, job, holder).await?;
            state.metrics.job(Status::Downloading);
            state.events.job(job);
            let too_large = |e: crate::fetch::FetchError| match (e, storage) {
                (crate::fetch::FetchError::TooLarge(_), Some(storage))
                    if room.is_some_and(|room| room <= limit) =>
                {
                    over_storage(state, storage)
                }
                (e, _) => Stop::from(Failure::from(e)),
            };
            let opened = state.fetcher.open(&url, limit).await.map_err(too_large)?;
            // What the page said is recorded before its media comes: a redelivery after a
            // crash finds the media stored and would not resolve the page again.
            if let (Some(page), Source::Link { page: recorded, .. }) =
                (&opened.page, &mut job.source)
            {
                *recorded = Some(page.clone());
                save(state, job, holder).await?;
                state.events.job(job);
            }
            // What the page says of the media's length spares downloading one too long.
            if let (Some(seconds), Some(max)) = (
                opened.page.as_ref().and_then(|page| page.duration),
                job.limits.max_duration_secs,
            ) && seconds > max as f64
            {
                state.metrics.refused(Limit::MaxDurationSecs);
                return Err(too_long_for_quota(seconds, max));
            }
            let size = state
                .fetcher
                .store(opened, state.videos.as_ref(), &job.video_id, limit)
                .await
                .map_err(too_large)?;
            state.metrics.bytes_in.inc_by(size);
            job.video_bytes = size;
            // Other downloads of the owner's may have filled the room meanwhile: counted with
            // them, the video must still fit.
            if storage.is_some() {
                save(state, job, holder).await?;
                if let Some((stored, limit)) = storage_use(state, job).await?
                    && stored > limit
                {
                    return Err(over_storage(state, (stored, limit)));
                }
            }
        }
    }
    // A downloaded link waits for a conversion slot as an upload does: queued.
    match state.conversion_slots.try_acquire() {
        Ok(slot) => Ok(slot),
        Err(_) => {
            if job.status != Status::Queued {
                job.set_status(Status::Queued);
                save(state, job, holder).await?;
                state.events.job(job);
            }
            Ok(state
                .conversion_slots
                .acquire()
                .await
                .expect("never closed"))
        }
    }
}

/// Converts a prepared job in its slot and stores the MP3 (and its tracks, counting them in
/// `written` as it starts each).
async fn convert_job(
    state: &State,
    job: &mut Job,
    holder: &str,
    _slot: tokio::sync::SemaphorePermit<'_>,
    written: &AtomicU32,
) -> Result<(), Stop> {
    job.set_status(Status::Converting);
    job.progress = 0;
    save(state, job, holder).await?;
    state.metrics.job(Status::Converting);
    state.events.job(job);

    let work = crate::sweep::JobDir::create(state.config.convert.temp_dir.as_deref())
        .map_err(|e| Failure::transient("temp_unavailable", &Error::internal(e)))?;
    // A stored file is read in place; anything else is copied out, and the conversion starts
    // on the copy while it is being made if the container allows (see `convert::early`).
    let (input, copy) = match state.videos.local_file(&job.video_id).await {
        Ok(Some(path)) => (path, None),
        _ => {
            let (made, copying) = convert::copying();
            (work.path().join("video"), Some((made, copying)))
        }
    };
    let (made, copying) = copy.unzip();
    let copied = async {
        let Some(made) = made else {
            return Ok(());
        };
        let reading = Instant::now();
        copy_video(state, &job.video_id, &input, made).await?;
        let read = reading.elapsed();
        state.metrics.stages.read_video.observe(read.as_secs_f64());
        tracing::info!(
            read_ms = read.as_millis() as u64,
            "video read out of storage"
        );
        Ok::<_, Stop>(())
    };

    let name = job.source.title();
    let audio_id = job.id.to_string();
    let (progress, mut progress_rx) = watch::channel(0u8);
    // The whole MP3 is stored while ffmpeg writes it, when it can be (see `stored`).
    let (mp3_written, written_rx) = watch::channel(convert::Written::Nothing);
    let storing = crate::stored::store_while_written(&*state.mp3s, &audio_id, &name, written_rx);
    let started = Instant::now();
    // One per conversion, however many times it runs ffmpeg (cover, loudness, tracks).
    state.metrics.ffmpeg_runs.inc();
    let converting = {
        let (job, input, work, name) = (&*job, &input, &work, &name);
        let copying = copying.as_ref();
        async move {
            // Dropped once the conversion is over, which the storing hears.
            let mp3_written = mp3_written;
            // A video page's image is the cover when the media has no picture of its own;
            // without it (none, refused, broken) the cover comes from the media as for any
            // source.
            let image = page_image(state, job, work.path()).await;
            let request = Request {
                input,
                copying,
                dir: work.path(),
                bitrate: job.bitrate,
                options: &job.options,
                max_duration_secs: job.limits.max_duration_secs,
                naming: convert::plan::Naming {
                    name,
                    title: job.source.page_title(),
                    artist: job.source.page().and_then(|p| p.uploader.as_deref()),
                    image: image.as_deref(),
                },
                written: Some(&mp3_written),
            };
            convert::convert(&state.config.convert, request, &progress).await
        }
    };
    let jobs = Arc::clone(&state.jobs);
    let id = job.id;
    let mut snapshot = job.clone();
    let event_interval = state.config.events.progress_interval;
    let reporting = async move {
        // At most one write per PROGRESS_EVERY (values in between are skipped, never waited
        // for): clients poll, they need no more, and every write is disk traffic beside
        // ffmpeg's. The job's final save sets 100.
        let mut last_write: Option<Instant> = None;
        // At most one event per `event_interval`, always with the latest percent: a value
        // held back goes out when the interval is over (unless the conversion ended first;
        // its final event follows anyway).
        let mut next_event = tokio::time::Instant::now();
        let mut unsent = false;
        loop {
            tokio::select! {
                changed = progress_rx.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let percent = *progress_rx.borrow_and_update();
                    unsent = percent != snapshot.progress;
                    if last_write.is_none_or(|at| at.elapsed() >= PROGRESS_EVERY) {
                        last_write = Some(Instant::now());
                        if let Err(e) = jobs.set_progress(id, percent).await {
                            tracing::debug!(error = %error_chain(&e), "progress not saved");
                        }
                    }
                }
                () = tokio::time::sleep_until(next_event), if unsent => {}
            }
            let now = tokio::time::Instant::now();
            if unsent && now >= next_event {
                unsent = false;
                next_event = now + event_interval;
                snapshot.progress = *progress_rx.borrow();
                state.events.job(&snapshot);
            }
        }
    };
    let (copied, (converted, (), stored)) = tokio::join!(copied, async {
        tokio::join!(converting, reporting, storing)
    });
    let stored = match stored {
        Ok(stored) => stored,
        Err(e) => {
            tracing::warn!(error = %error_chain(&e), "the MP3 could not be stored while written");
            None
        }
    };
    // A failed copy is the attempt's failure, whatever the conversion made of it.
    let converted = copied.and_then(|()| {
        converted.map_err(|e| {
            if let ConvertError::OverQuota { .. } = e {
                state.metrics.refused(Limit::MaxDurationSecs);
            }
            Stop::from(Failure::from(e))
        })
    });
    let converted = match converted {
        Ok(converted) => converted,
        Err(e) => {
            // An MP3 stored before a later pass failed (its tracks) is no job's.
            if stored.is_some()
                && let Err(e) = state.mp3s.delete(&audio_id).await
            {
                tracing::warn!(error = %error_chain(&e), "the MP3 of a failed conversion stays");
            }
            return Err(e);
        }
    };
    if let Some(outcome) = converted.early.outcome() {
        state
            .metrics
            .early_starts
            .get_or_create(&crate::metrics::OutcomeLabel { outcome })
            .inc();
    }
    let converting = started.elapsed().as_secs_f64();
    state.metrics.conversion_seconds.observe(converting);
    state.metrics.stages.convert.observe(converting);
    let converted_at = Instant::now();

    let size = match stored {
        Some(size) => {
            state.metrics.bytes_out.inc_by(size);
            size
        }
        None => {
            let filename = crate::stored::filename(converted.title.as_deref(), &name);
            store(state, &audio_id, &filename, &converted.audio)
                .await?
                .0
        }
    };
    let way = if stored.is_some() {
        "while_written"
    } else {
        "after"
    };
    state
        .metrics
        .mp3_stores
        .get_or_create(&crate::metrics::WayLabel { way })
        .inc();
    job.audio = Some(Audio {
        id: audio_id,
        size,
        duration: converted.duration,
        bitrate: job.bitrate,
    });
    let mut tracks = Vec::with_capacity(converted.tracks.len());
    for track in &converted.tracks {
        // Counted before it is stored: a store interrupted half-way leaves a blob too.
        written.fetch_max(track.number, Ordering::SeqCst);
        let id = track_blob_id(job.id, track.number);
        let filename = format!("{:02} - {}.mp3", track.number, track.title);
        let (size, crc32) = store(state, &id, &filename, &track.path).await?;
        tracks.push(Track {
            number: track.number,
            title: track.title.clone(),
            start: track.start,
            end: track.end,
            audio: Audio {
                id,
                size,
                duration: track.duration,
                bitrate: job.bitrate,
            },
            crc32,
        });
    }
    job.tracks = tracks;
    state
        .metrics
        .stages
        .store_audio
        .observe(converted_at.elapsed().as_secs_f64());
    job.progress = 100;
    job.error = None;
    job.set_status(Status::Done);
    job.expire_after(state.config.retention.audio);
    source_goes(state, job);
    save(state, job, holder).await?;
    state.metrics.job(Status::Done);
    tracing::info!(
        size,
        duration = converted.duration,
        tracks = job.tracks.len(),
        early = ?converted.early,
        stored = way,
        convert_ms = (converted_at - started).as_millis() as u64,
        store_ms = converted_at.elapsed().as_millis() as u64,
        "converted"
    );
    Ok(())
}

/// Stores the MP3 at `path` as the blob `id` of the MP3 store; returns its size and CRC-32
/// (computed on the bytes as they go to the store).
async fn store(
    state: &State,
    id: &str,
    filename: &str,
    path: &std::path::Path,
) -> Result<(u64, u32), Stop> {
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| Failure::transient("temp_unavailable", &Error::internal(e)))?;
    let crc = Arc::new(std::sync::Mutex::new(crc32fast::Hasher::new()));
    let hashing = Arc::clone(&crc);
    // Large reads: each is a trip to the blocking pool (the default is 4 KiB).
    let body = ReaderStream::with_capacity(file, 256 * 1024).inspect_ok(move |chunk| {
        hashing.lock().expect("never poisoned").update(chunk);
    });
    let size = state
        .mp3s
        .put(id, filename, Box::pin(body), u64::MAX)
        .await
        .map_err(|e| Failure::transient("storage_unavailable", &e))?;
    state.metrics.bytes_out.inc_by(size);
    let crc32 = crc.lock().expect("never poisoned").clone().finalize();
    Ok((size, crc32))
}

/// Copies the video into a seekable local file for ffmpeg.
async fn copy_video(
    state: &State,
    video_id: &str,
    path: &std::path::Path,
    made: convert::CopyProgress,
) -> Result<(), Stop> {
    let transient = |e: Error| Stop::from(Failure::transient("storage_unavailable", &e));
    let Some(size) = state.videos.size(video_id).await.map_err(transient)? else {
        return Err(Failure {
            code: "video_missing",
            message: "the video is missing from storage".into(),
            permanent: false,
            field: None,
        }
        .into());
    };
    let mut stream = state
        .videos
        .get(video_id, 0..size)
        .await
        .map_err(transient)?;
    let mut file = tokio::fs::File::create(path)
        .await
        .map_err(|e| transient(Error::internal(e)))?;
    // A write returns once its bytes are handed to the writing thread, and the next waits for
    // them to be in the file: each chunk is announced once the next is written.
    let mut handed = 0u64;
    while let Some(chunk) = stream
        .try_next()
        .await
        .map_err(|e| transient(Error::unavailable("blob store", e)))?
    {
        let in_file = handed;
        file.write_all(&chunk)
            .await
            .map_err(|e| transient(Error::internal(e)))?;
        made.wrote(in_file);
        handed += chunk.len() as u64;
    }
    file.flush()
        .await
        .map_err(|e| transient(Error::internal(e)))?;
    made.finished(handed);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deferred_delivery_keeps_its_attempt_number() {
        let job = Job::new(
            "dora".into(),
            Source::link("http://example.com/a.mp4"),
            Default::default(),
        );
        for (attempt, room) in [(1, 2), (2, 2), (3, 3)] {
            let message = JobMessage::for_job(&job, attempt);
            let (route, outgoing) = deferral(&message, 3, None);
            assert_eq!(route, Route::Retry { attempt: room });
            let sent: JobMessage = serde_json::from_slice(&outgoing.body).unwrap();
            assert_eq!(
                sent.attempt, attempt,
                "a deferral must not use up an attempt"
            );
        }
    }

    #[test]
    fn a_lease_tolerates_a_sixth_of_its_length_of_clock_skew() {
        // Renewed every 10 s, a 30 s lease given up 5 s before it runs out: two renewals may
        // fail, a third must get through.
        assert_eq!(lease_skew(Duration::from_secs(30)), Duration::from_secs(5));
    }
}
