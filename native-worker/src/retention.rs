//! What a finished job leaves behind, removed when it is due (see [`RetentionConfig`]).
//!
//! A job's video goes as soon as its conversion has finished (done or failed for good), unless
//! the operator keeps sources: the converter removes it (see [`remove_source`]). A finished
//! job then carries [`Job::expires_at`]: for a done job, when its MP3 expires; for a failed or
//! expired one, when its record goes. Every API-serving process sweeps what is due every
//! [`RetentionConfig::sweep_interval`], [`DUE_BATCH`] jobs at a time:
//! - a done job becomes `expired`: its MP3s (the whole file and its tracks) are removed, and so
//!   is its video if it was kept; the record stays listed until its new `expires_at`;
//! - a failed or expired job's record is removed, with whatever files are left.
//!
//! Several replicas may sweep at once: each job's change is a compare-and-set on its stored
//! expiry ([`JobStore::replace_due`], [`JobStore::delete_due`]), so exactly one sweeper wins
//! each job, and only the winner counts its files. The files go before the record changes,
//! while the job still lists them: a sweep cut short anywhere (a crash, a shutdown, a store
//! error) leaves the job due and the next sweep does it again, so no file is ever left that
//! no record names. Removing a file twice (two sweepers) is harmless. The job is due then:
//! its audio answering an error a moment before the record says `expired` is the price.

use std::sync::Arc;

use mp3conv_contract::event::{Envelope, Event};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::State;
use crate::config::RetentionConfig;
use crate::error::{Error, error_chain};
use crate::job::{Job, Status, track_blob_id};
use crate::jobs::{DUE_BATCH, JobStore};
use crate::metrics::Removed;
use crate::storage::BlobStore;

/// What a sweep changed.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A done job's MP3 expired; the job as it is now stored.
    Expired(Job),
    /// A job's record was removed.
    Deleted(Job),
}

/// What one [`sweep_due`] call removed (another replica may have removed more).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    /// Done jobs that became expired.
    pub expired: usize,
    /// Records removed.
    pub deleted: usize,
    /// Files removed: MP3s, tracks and videos kept past the conversion.
    pub files: usize,
}

/// The stores a sweep works on.
pub struct Stores<'a> {
    pub jobs: &'a dyn JobStore,
    pub videos: &'a dyn BlobStore,
    pub mp3s: &'a dyn BlobStore,
}

/// Sweeps every job due before `now` (see the module's documentation), counting what it
/// removes in `removed` and telling `changed` of each job it changed.
pub async fn sweep_due(
    stores: &Stores<'_>,
    policy: &RetentionConfig,
    now: OffsetDateTime,
    removed: &Removed,
    mut changed: impl FnMut(Change),
) -> Result<Swept, Error> {
    let mut swept = Swept::default();
    loop {
        let batch = stores.jobs.due(now, DUE_BATCH).await?;
        let full = batch.len() == DUE_BATCH as usize;
        for job in batch {
            // Only finished jobs carry an expiry; `due` lists nothing else.
            let Some(was) = job.expires_at else { continue };
            // A lost race (another replica, or its owner's delete) leaves the job no longer
            // due, so the next batch does not list it again.
            // Files first, then the record: a sweep cut short (a crash, a shutdown, a store
            // error) leaves the job as it was, due, and the next sweep does it again (removing
            // a missing file is harmless). Only the compare-and-set's winner counts.
            if job.status == Status::Done {
                let video = remove_video(stores.videos, &job).await?;
                let mp3s = remove_mp3s(stores.mp3s, &job).await?;
                let mut expired = job.clone();
                expired.expire(now + policy.expired);
                if stores.jobs.replace_due(&expired, was).await? {
                    removed.mp3s.inc_by(mp3s as u64);
                    if video {
                        removed.videos.inc();
                    }
                    tracing::info!(job_id = %job.id, owner = %job.owner, "the MP3 expired");
                    swept.expired += 1;
                    swept.files += mp3s + usize::from(video);
                    changed(Change::Expired(expired));
                }
            } else {
                // Leftovers only: an expired job's MP3s went at expiry and a failed job has
                // none; a video kept past a failure goes now.
                remove_video(stores.videos, &job).await?;
                remove_mp3s(stores.mp3s, &job).await?;
                if stores.jobs.delete_due(job.id, was).await? {
                    removed.jobs.inc();
                    tracing::info!(job_id = %job.id, owner = %job.owner, status = %job.status, "removed a finished job's record");
                    swept.deleted += 1;
                    changed(Change::Deleted(job));
                }
            }
        }
        if !full {
            return Ok(swept);
        }
    }
}

/// Removes a job's MP3 and its tracks' MP3s; how many files that was (removing a missing
/// one is harmless).
async fn remove_mp3s(mp3s: &dyn BlobStore, job: &Job) -> Result<usize, Error> {
    mp3s.delete(&job.id.to_string()).await?;
    for number in 1..=job.tracks.len() as u32 {
        mp3s.delete(&track_blob_id(job.id, number)).await?;
    }
    Ok(usize::from(job.audio.is_some()) + job.tracks.len())
}

/// Removes a job's video, whatever the policy now (it may have been kept under another);
/// whether it was there.
async fn remove_video(videos: &dyn BlobStore, job: &Job) -> Result<bool, Error> {
    let there = videos.size(&job.video_id).await?.is_some();
    if there {
        videos.delete(&job.video_id).await?;
    }
    Ok(there)
}

/// Removes a finished job's video unless the operator keeps sources; counts it if it was
/// still there. A failure is logged, not fatal: the job's record removal takes it later.
pub(crate) async fn remove_source(state: &State, job: &Job) {
    if state.config.retention.keep_sources {
        return;
    }
    let removed = async {
        let there = state.videos.size(&job.video_id).await?.is_some();
        if there {
            state.videos.delete(&job.video_id).await?;
        }
        Ok::<_, Error>(there)
    };
    match removed.await {
        Ok(true) => {
            state.metrics.removed.videos.inc();
            tracing::info!("removed the video: its conversion has finished");
        }
        Ok(false) => {}
        Err(e) => {
            tracing::warn!(error = %error_chain(&e), "cannot remove the finished job's video")
        }
    }
}

/// Sweeps every [`RetentionConfig::sweep_interval`] until `shutdown`, publishing what changed
/// to the owners' event streams; a sweep cut short resumes at the next tick or in the next
/// process.
pub(crate) async fn run(state: Arc<State>, shutdown: CancellationToken) {
    let policy = &state.config.retention;
    let mut ticks = tokio::time::interval(policy.sweep_interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stores = Stores {
        jobs: state.jobs.as_ref(),
        videos: state.videos.as_ref(),
        mp3s: state.mp3s.as_ref(),
    };
    // Jobs finished before retention existed get their dates from now.
    let now = OffsetDateTime::now_utc();
    match state
        .jobs
        .backfill_expiry(now + policy.audio, now + policy.failed)
        .await
    {
        Ok(0) => {}
        Ok(given) => tracing::info!(jobs = given, "finished jobs without an expiry got one"),
        Err(e) => tracing::warn!(error = %error_chain(&e), "cannot date older finished jobs"),
    }
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let publish = |change: Change| match change {
            Change::Expired(job) => state.events.job(&job),
            Change::Deleted(job) => state.events.publish(Envelope::new(
                job.owner.clone(),
                Event::JobDeleted { job_id: job.id },
            )),
        };
        let swept = tokio::select! {
            () = shutdown.cancelled() => return,
            swept = sweep_due(
                &stores,
                policy,
                OffsetDateTime::now_utc(),
                &state.metrics.removed,
                publish,
            ) => swept,
        };
        // Idempotency keys past their day go with the sweep.
        let stale = OffsetDateTime::now_utc() - crate::idempotency::KEY_LIFETIME;
        if let Err(e) = state.jobs.prune_keys(stale).await {
            tracing::warn!(error = %error_chain(&e), "cannot prune idempotency keys");
        }
        // What is kept, for the operators' graphs.
        match state.jobs.stored_totals().await {
            Ok((videos, all)) => state.metrics.stored(videos, all),
            Err(e) => tracing::warn!(error = %error_chain(&e), "cannot total the stored bytes"),
        }
        // And notes of jobs made before the quota's window.
        let counted_since = OffsetDateTime::now_utc() - state.config.quota.rate_window;
        if let Err(e) = state.jobs.prune_made(counted_since).await {
            tracing::warn!(error = %error_chain(&e), "cannot prune the notes of jobs made");
        }
        match swept {
            Ok(swept) if swept == Swept::default() => {}
            Ok(swept) => tracing::info!(
                expired = swept.expired,
                deleted = swept.deleted,
                files = swept.files,
                "retention sweep"
            ),
            Err(e) => tracing::warn!(error = %error_chain(&e), "cannot sweep expired jobs"),
        }
    }
}
