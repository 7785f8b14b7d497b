//! Uploads held for their options (`POST /internal/jobs?hold=true`) that were never started.
//!
//! The gateway stores a multipart upload's file before it has read the options that follow
//! it, then starts the job (`POST /internal/jobs/{id}/start`). If it dies in between, the
//! client never got an answer and nobody will start the job: after
//! [`held_upload_seconds`](crate::Config::held_upload_seconds) it is abandoned, and every
//! API-serving process looks for such jobs periodically and removes them with their videos.
//!
//! Several replicas may sweep at once: each removal is a compare-and-set on the job still being
//! held (see [`JobStore::delete_abandoned`]), so a job is removed once, and never after it was
//! started; the video goes after its job, and removing it twice is harmless.

use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::State;
use crate::error::{Error, error_chain};
use crate::jobs::{HELD_BATCH, JobStore};
use crate::storage::BlobStore;

/// Removes the jobs held since before `before`, [`HELD_BATCH`] at a time, with their videos,
/// counting each in `removed` once its video is gone too; returns how many this call removed
/// (another replica may have removed others).
pub async fn sweep_abandoned(
    jobs: &dyn JobStore,
    videos: &dyn BlobStore,
    before: OffsetDateTime,
    removed_total: &Counter,
) -> Result<usize, Error> {
    let mut removed = 0;
    loop {
        let batch = jobs.abandoned(before, HELD_BATCH).await?;
        let full = batch.len() == HELD_BATCH as usize;
        for job in batch {
            // Lost races (started, or removed by another replica) are skipped: neither lists
            // the job again, so the loop ends.
            if jobs.delete_abandoned(job.id, before).await? {
                videos.delete(&job.video_id).await?;
                removed_total.inc();
                tracing::info!(job_id = %job.id, owner = %job.owner, "removed an abandoned held upload");
                removed += 1;
            }
        }
        if !full {
            return Ok(removed);
        }
    }
}

/// Sweeps every [`Config::held_sweep_interval`](crate::Config::held_sweep_interval) until
/// `shutdown`; a sweep cut short by shutdown resumes in the next process.
pub(crate) async fn run(state: Arc<State>, shutdown: CancellationToken) {
    let age = state.config.held_upload_age();
    let mut ticks = tokio::time::interval(state.config.held_sweep_interval());
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let before = OffsetDateTime::now_utc() - age;
        let swept = tokio::select! {
            () = shutdown.cancelled() => return,
            swept = sweep_abandoned(
                state.jobs.as_ref(),
                state.videos.as_ref(),
                before,
                &state.metrics.held_uploads_removed,
            ) => swept,
        };
        match swept {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, "removed abandoned held uploads"),
            Err(e) => {
                tracing::warn!(error = %error_chain(&e), "cannot sweep abandoned held uploads");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::job::{Job, Source, Status};
    use crate::jobs::sqlite::SqliteJobs;
    use crate::storage::local::LocalStore;

    fn upload(owner: &str, held: bool) -> Job {
        let mut job = Job::new(
            owner.into(),
            Source::Upload {
                filename: "a.mp4".into(),
                content_type: None,
            },
            Default::default(),
        );
        job.held = held;
        job
    }

    async fn store_video(videos: &LocalStore, job: &Job) {
        let body = futures::stream::iter([Ok(bytes::Bytes::from_static(b"video"))]);
        videos
            .put(&job.video_id, "a.mp4", Box::pin(body), 1024)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn held_jobs_are_unlisted_started_once_and_swept_when_abandoned() {
        let dir = tempfile::tempdir().unwrap();
        let jobs = SqliteJobs::open(&dir.path().join("jobs.sqlite"))
            .await
            .unwrap();
        let videos = LocalStore::open(dir.path().join("videos")).await.unwrap();
        let counted = Counter::default();
        let queued = upload("ann", false);
        let abandoned = upload("ann", true);
        let started = upload("ann", true);
        for job in [&queued, &abandoned, &started] {
            store_video(&videos, job).await;
            jobs.insert(job).await.unwrap();
        }
        // Listed: only the job that is not held, and a full page means nothing is hidden.
        let listed = jobs.list("ann", None, 1).await.unwrap();
        assert_eq!(listed.iter().map(|j| j.id).collect::<Vec<_>>(), [queued.id]);

        let mut go = started.clone();
        go.held = false;
        go.set_status(Status::Queued);
        assert!(jobs.start_held(&go).await.unwrap());
        assert!(!jobs.start_held(&go).await.unwrap(), "started twice");
        assert!(!jobs.start_held(&queued).await.unwrap(), "never held");
        assert_eq!(jobs.get(started.id).await.unwrap().unwrap(), go);
        assert_eq!(jobs.list("ann", None, 10).await.unwrap().len(), 2);

        // Nothing is abandoned before its time.
        let long_ago = OffsetDateTime::now_utc() - Duration::from_secs(60);
        assert_eq!(
            sweep_abandoned(&jobs, &videos, long_ago, &counted)
                .await
                .unwrap(),
            0
        );
        let later = OffsetDateTime::now_utc() + Duration::from_secs(1);
        assert_eq!(
            jobs.abandoned(later, 10)
                .await
                .unwrap()
                .iter()
                .map(|j| j.id)
                .collect::<Vec<_>>(),
            [abandoned.id]
        );
        assert_eq!(
            sweep_abandoned(&jobs, &videos, later, &counted)
                .await
                .unwrap(),
            1
        );
        assert!(jobs.get(abandoned.id).await.unwrap().is_none());
        assert_eq!(videos.size(&abandoned.video_id).await.unwrap(), None);
        for kept in [&queued, &started] {
            assert!(jobs.get(kept.id).await.unwrap().is_some());
            assert_eq!(videos.size(&kept.video_id).await.unwrap(), Some(5));
        }
        // A second sweeper (another replica) finds nothing left to do.
        assert!(!jobs.delete_abandoned(abandoned.id, later).await.unwrap());
        assert_eq!(
            sweep_abandoned(&jobs, &videos, later, &counted)
                .await
                .unwrap(),
            0
        );
        assert_eq!(counted.get(), 1);
    }

    #[tokio::test]
    async fn sweeps_go_in_batches_to_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let jobs = SqliteJobs::open(&dir.path().join("jobs.sqlite"))
            .await
            .unwrap();
        let videos = LocalStore::open(dir.path().join("videos")).await.unwrap();
        let counted = Counter::default();
        let count = HELD_BATCH as usize * 2 + 3;
        for _ in 0..count {
            jobs.insert(&upload("bo", true)).await.unwrap();
        }
        let later = OffsetDateTime::now_utc() + Duration::from_secs(1);
        assert_eq!(
            sweep_abandoned(&jobs, &videos, later, &counted)
                .await
                .unwrap(),
            count
        );
        assert!(jobs.abandoned(later, 10).await.unwrap().is_empty());
        assert_eq!(counted.get(), count as u64);
    }
}
