//! The converter: takes jobs off the `video` queue, converts them and announces the result.
//!
//! A delivery is acked only once the job reached a final state that is stored and announced
//! (the announcement confirmed by the broker). Every step is idempotent, so a redelivery after a
//! crash redoes at most the unfinished steps: blobs are named after the job (rewriting replaces),
//! and a job already done or failed is only announced if it was not yet.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use tokio::io::AsyncWriteExt;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio_util::io::ReaderStream;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::State;
use crate::convert::{self, Conversion};
use crate::error::{Error, error_chain};
use crate::job::{Audio, Job, Source, Status};
use crate::queue::{Delivery, JobMessage, Outcome, Route};

/// Pause before a delivery is requeued because a dependency failed, so a broken database does
/// not turn into a hot redelivery loop.
const REQUEUE_PAUSE: Duration = Duration::from_secs(1);
/// Pause before reconnecting to the queue.
const RECONNECT_PAUSE: Duration = Duration::from_secs(1);

/// Consumes until `shutdown`, then lets in-flight jobs finish within the grace period and
/// abandons the rest (their deliveries go back to the queue).
pub(crate) async fn run(state: Arc<State>, shutdown: CancellationToken) {
    let concurrency = state.config.concurrency;
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
        traceparent = delivery.traceparent.as_deref().unwrap_or(""),
    );
    let traceparent = delivery.traceparent.clone();
    async {
        let outcome = process(state, &message, traceparent).await;
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
}

impl Failure {
    fn transient(code: &'static str, error: &Error) -> Self {
        Self {
            code,
            message: error.to_string(),
            permanent: false,
        }
    }
}

enum Stop {
    /// The job was deleted meanwhile.
    Deleted,
    /// The attempt failed.
    Failed(Failure),
}

impl From<Failure> for Stop {
    fn from(failure: Failure) -> Self {
        Self::Failed(failure)
    }
}

async fn process(state: &State, message: &JobMessage, traceparent: Option<String>) -> Outcome {
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
        return finish(state, &mut job, message.attempt, traceparent, Outcome::Ack).await;
    }
    let attempt = message.attempt.max(1);
    let max_attempts = state.config.queue.max_attempts;
    let failure = match attempt_conversion(state, &mut job, attempt).await {
        Ok(()) => return finish(state, &mut job, attempt, traceparent, Outcome::Ack).await,
        Err(Stop::Deleted) => return cleanup_deleted(state, &job).await,
        Err(Stop::Failed(failure)) => failure,
    };
    tracing::warn!(code = failure.code, message = %failure.message, permanent = failure.permanent, "attempt failed");
    if failure.permanent {
        job.fail(failure.code, failure.message);
        return save_and_finish(state, job, attempt, traceparent, Outcome::Ack).await;
    }
    if attempt < max_attempts {
        job.set_status(Status::Queued);
        match state.jobs.save(&job).await {
            Ok(true) => {}
            Ok(false) => return cleanup_deleted(state, &job).await,
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
    save_and_finish(state, job, attempt, traceparent, Outcome::DeadLetter).await
}

async fn save_and_finish(
    state: &State,
    mut job: Job,
    attempt: u32,
    traceparent: Option<String>,
    then: Outcome,
) -> Outcome {
    match state.jobs.save(&job).await {
        Ok(true) => {
            state.metrics.job(job.status);
            finish(state, &mut job, attempt, traceparent, then).await
        }
        Ok(false) => cleanup_deleted(state, &job).await,
        Err(e) => {
            tracing::warn!(error = %error_chain(&e), "cannot save the job");
            Outcome::Requeue
        }
    }
}

/// Announces a job in a final state unless that was done already, then settles with `then`.
async fn finish(
    state: &State,
    job: &mut Job,
    attempt: u32,
    traceparent: Option<String>,
    then: Outcome,
) -> Outcome {
    if job.announced {
        return then;
    }
    let announcement = JobMessage::for_job(job, attempt).outgoing(Route::Mp3, traceparent);
    if let Err(e) = state.queue.publish(Route::Mp3, announcement).await {
        tracing::warn!(error = %error_chain(&e), "cannot announce; will retry");
        return Outcome::Requeue;
    }
    job.announced = true;
    match state.jobs.save(job).await {
        Ok(_) => then,
        // Announced but not recorded: a redelivery announces again with the same message_id.
        Err(_) => Outcome::Requeue,
    }
}

async fn cleanup_deleted(state: &State, job: &Job) -> Outcome {
    tracing::info!("job deleted while converting; removing its files");
    let video = state.videos.delete(&job.video_id).await;
    let audio = state.mp3s.delete(&job.id.to_string()).await;
    match (video, audio) {
        (Ok(()), Ok(())) => Outcome::Ack,
        _ => Outcome::Requeue,
    }
}

async fn save(state: &State, job: &Job) -> Result<(), Stop> {
    match state.jobs.save(job).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(Stop::Deleted),
        Err(e) => Err(Failure::transient("storage_unavailable", &e).into()),
    }
}

/// How often a conversion's progress is written to its job.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);

async fn attempt_conversion(state: &State, job: &mut Job, attempt: u32) -> Result<(), Stop> {
    job.attempts = attempt;
    let limit = state.config.max_video_bytes;
    if let Source::Link { url } = &job.source {
        let present = state
            .videos
            .size(&job.video_id)
            .await
            .map_err(|e| Failure::transient("storage_unavailable", &e))?;
        if present.is_none() {
            let url = url.clone();
            job.set_status(Status::Downloading);
            save(state, job).await?;
            state.metrics.job(Status::Downloading);
            let size = state
                .fetcher
                .download(&url, state.videos.as_ref(), &job.video_id, limit)
                .await
                .map_err(|e| Failure {
                    code: e.code(),
                    message: e.to_string(),
                    permanent: e.is_permanent(),
                })?;
            state.metrics.bytes_in.inc_by(size);
        }
    }
    job.set_status(Status::Converting);
    job.progress = 0;
    save(state, job).await?;
    state.metrics.job(Status::Converting);

    let work = temp_dir(state).map_err(|e| Failure::transient("temp_unavailable", &e))?;
    let output = work.path().join("audio.mp3");
    // ffmpeg needs seekable input: a stored file is read in place, anything else is copied out.
    let input = match state.videos.local_file(&job.video_id).await {
        Ok(Some(path)) => path,
        _ => {
            let copy = work.path().join("video");
            copy_video(state, &job.video_id, &copy).await?;
            copy
        }
    };

    let title = job.source.title();
    let (progress, mut progress_rx) = watch::channel(0u8);
    let conversion = Conversion {
        input: &input,
        output: &output,
        bitrate: job.bitrate,
        title: &title,
    };
    let started = Instant::now();
    let converting =
        async move { convert::to_mp3(&state.config.convert, conversion, &progress).await };
    let jobs = Arc::clone(&state.jobs);
    let id = job.id;
    let reporting = async move {
        // At most one write per PROGRESS_EVERY (values in between are skipped, never waited
        // for): clients poll, they need no more, and every write is disk traffic beside
        // ffmpeg's. The job's final save sets 100.
        let mut last_write: Option<Instant> = None;
        while progress_rx.changed().await.is_ok() {
            if last_write.is_some_and(|at| at.elapsed() < PROGRESS_EVERY) {
                continue;
            }
            let percent = *progress_rx.borrow_and_update();
            last_write = Some(Instant::now());
            if let Err(e) = jobs.set_progress(id, percent).await {
                tracing::debug!(error = %error_chain(&e), "progress not saved");
            }
        }
    };
    let (converted, ()) = tokio::join!(converting, reporting);
    let converted = converted.map_err(|e| Failure {
        code: e.code(),
        message: e.to_string(),
        permanent: e.is_permanent(),
    })?;
    state
        .metrics
        .conversion_seconds
        .observe(started.elapsed().as_secs_f64());
    let converted_at = Instant::now();

    let audio_id = job.id.to_string();
    let file = tokio::fs::File::open(&output)
        .await
        .map_err(|e| Failure::transient("temp_unavailable", &Error::internal(e)))?;
    let size = state
        .mp3s
        .put(
            &audio_id,
            &format!("{title}.mp3"),
            Box::pin(ReaderStream::new(file)),
            u64::MAX,
        )
        .await
        .map_err(|e| Failure::transient("storage_unavailable", &e))?;
    state.metrics.bytes_out.inc_by(size);
    job.audio = Some(Audio {
        id: audio_id,
        size,
        duration: converted.duration,
        bitrate: job.bitrate,
    });
    job.progress = 100;
    job.error = None;
    job.set_status(Status::Done);
    save(state, job).await?;
    state.metrics.job(Status::Done);
    tracing::info!(
        size,
        duration = converted.duration,
        convert_ms = (converted_at - started).as_millis() as u64,
        store_ms = converted_at.elapsed().as_millis() as u64,
        "converted"
    );
    Ok(())
}

fn temp_dir(state: &State) -> Result<tempfile::TempDir, Error> {
    let builder = {
        let mut b = tempfile::Builder::new();
        b.prefix("mp3conv-job-");
        b
    };
    match &state.config.convert.temp_dir {
        Some(dir) => builder.tempdir_in(dir),
        None => builder.tempdir(),
    }
    .map_err(Error::internal)
}

/// Copies the video into a seekable local file for ffmpeg.
async fn copy_video(state: &State, video_id: &str, path: &std::path::Path) -> Result<(), Stop> {
    let transient = |e: Error| Stop::from(Failure::transient("storage_unavailable", &e));
    let Some(size) = state.videos.size(video_id).await.map_err(transient)? else {
        return Err(Failure {
            code: "video_missing",
            message: "the video is missing from storage".into(),
            permanent: false,
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
    while let Some(chunk) = stream
        .try_next()
        .await
        .map_err(|e| transient(Error::unavailable("blob store", e)))?
    {
        file.write_all(&chunk)
            .await
            .map_err(|e| transient(Error::internal(e)))?;
    }
    file.flush()
        .await
        .map_err(|e| transient(Error::internal(e)))?;
    Ok(())
}
