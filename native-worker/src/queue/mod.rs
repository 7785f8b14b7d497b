//! How jobs reach the converter and how results are announced: RabbitMQ in production, an
//! in-process queue in embedded mode.

pub mod memory;
pub mod rabbitmq;

use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::job::{Audio, Job, JobError, JobId, Status};

/// AMQP `type` of a job waiting for conversion.
pub const VIDEO_TYPE: &str = "mp3conv.video.queued";
/// AMQP `type` of an announcement: the job is done or failed.
pub const MP3_TYPE: &str = "mp3conv.mp3.ready";

/// The body of a message on the `video` and `mp3` queues.
///
/// It keeps the original system's fields (`video_fid`, `mp3_fid`, `username`) so existing
/// consumers keep working, and adds the job's identity and state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobMessage {
    /// Blob id of the video.
    pub video_fid: String,
    /// Blob id of the MP3, once there is one.
    pub mp3_fid: Option<String>,
    /// The owner (the original system's name for it).
    pub username: String,
    /// The job.
    pub job_id: JobId,
    /// The owner's user id.
    pub owner: String,
    /// 1 for the first attempt, then 2, 3...
    pub attempt: u32,
    /// Job state when the message was sent.
    pub status: Status,
    /// The MP3, in announcements of done jobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio: Option<Audio>,
    /// The reason, in announcements of failed jobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<JobError>,
}

impl JobMessage {
    /// The message describing `job` at `attempt`.
    pub fn for_job(job: &Job, attempt: u32) -> Self {
        Self {
            video_fid: job.video_id.clone(),
            mp3_fid: job.audio.as_ref().map(|a| a.id.clone()),
            username: job.owner.clone(),
            job_id: job.id,
            owner: job.owner.clone(),
            attempt,
            status: job.status,
            audio: job.audio.clone(),
            error: job.error.clone(),
        }
    }

    /// The outgoing message: `message_id` depends only on the job (and, for announcements, its
    /// final state), so it stays the same across redeliveries and retries.
    pub fn outgoing(&self, route: Route, traceparent: Option<String>) -> Outgoing {
        let (message_id, kind) = match route {
            Route::Mp3 => (
                format!("{}.{}", self.job_id, self.status.as_str()),
                MP3_TYPE,
            ),
            Route::Video | Route::Retry { .. } => (self.job_id.to_string(), VIDEO_TYPE),
        };
        Outgoing {
            message_id,
            kind,
            body: serde_json::to_vec(self).expect("a JobMessage always serializes"),
            traceparent,
        }
    }
}

/// Where a message goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// The `video` queue: jobs to convert.
    Video,
    /// Back to the `video` queue after a delay, for attempt number `attempt` (2 or more).
    Retry {
        /// The attempt the message will start.
        attempt: u32,
    },
    /// The `mp3` queue: announcements.
    Mp3,
}

/// Delay before attempt `attempt` (2, 3, ...): `base`, then doubling.
pub fn retry_delay(base: Duration, attempt: u32) -> Duration {
    base.saturating_mul(1 << attempt.saturating_sub(2).min(16))
}

/// A message to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// AMQP `message_id`.
    pub message_id: String,
    /// AMQP `type`.
    pub kind: &'static str,
    /// JSON body.
    pub body: Vec<u8>,
    /// W3C trace context, carried in the `traceparent` header.
    pub traceparent: Option<String>,
}

/// What to do with a delivery once handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Done with it.
    Ack,
    /// Give it back for another consumer (shutdown, lost dependency).
    Requeue,
    /// Move it to the dead-letter queue.
    DeadLetter,
}

/// Settles one delivery with the broker.
#[async_trait]
pub trait Settle: Send + Sync {
    /// Acks, requeues or dead-letters the delivery.
    async fn settle(self: Box<Self>, outcome: Outcome) -> Result<(), Error>;
}

/// A message taken from the `video` queue.
pub struct Delivery {
    /// JSON body.
    pub body: Bytes,
    /// W3C trace context from the `traceparent` header.
    pub traceparent: Option<String>,
    /// Whether the broker delivered it before.
    pub redelivered: bool,
    /// When the worker took it; the broker's consumer timeout counts from about then.
    pub received_at: Instant,
    settle: Box<dyn Settle>,
}

impl Delivery {
    /// A delivery settled through `settle`.
    pub fn new(
        body: Bytes,
        traceparent: Option<String>,
        redelivered: bool,
        settle: Box<dyn Settle>,
    ) -> Self {
        Self {
            body,
            traceparent,
            redelivered,
            received_at: Instant::now(),
            settle,
        }
    }

    /// Settles the delivery.
    pub async fn settle(self, outcome: Outcome) -> Result<(), Error> {
        self.settle.settle(outcome).await
    }
}

/// Deliveries from the `video` queue; ends (or yields an error) when the broker goes away.
pub type Deliveries = BoxStream<'static, Result<Delivery, Error>>;

/// The queue between intake, converter and notifier.
#[async_trait]
pub trait JobQueue: Send + Sync + 'static {
    /// Publishes persistently and returns once the broker confirmed it.
    async fn publish(&self, route: Route, message: Outgoing) -> Result<(), Error>;

    /// Starts consuming the `video` queue with at most `prefetch` unsettled deliveries.
    async fn consume(&self, prefetch: u16) -> Result<Deliveries, Error>;

    /// Whether the broker answers (for `/health/ready`).
    async fn check(&self) -> Result<(), Error>;

    /// Closes the connection at shutdown; unsettled deliveries return to the queue.
    async fn close(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_exponentially() {
        let base = Duration::from_secs(5);
        assert_eq!(retry_delay(base, 2), Duration::from_secs(5));
        assert_eq!(retry_delay(base, 3), Duration::from_secs(10));
        assert_eq!(retry_delay(base, 4), Duration::from_secs(20));
    }

    #[test]
    fn message_ids_are_stable_per_job_and_state() {
        let job = Job::new(
            "alice".into(),
            crate::job::Source::Link {
                url: "http://example.com/a.mp4".into(),
            },
            Default::default(),
        );
        let first = JobMessage::for_job(&job, 1).outgoing(Route::Video, None);
        let retry = JobMessage::for_job(&job, 2).outgoing(Route::Retry { attempt: 2 }, None);
        assert_eq!(first.message_id, retry.message_id);
        let body: serde_json::Value = serde_json::from_slice(&first.body).unwrap();
        for field in [
            "video_fid",
            "mp3_fid",
            "username",
            "job_id",
            "owner",
            "attempt",
            "status",
        ] {
            assert!(body.get(field).is_some(), "{field} missing from {body}");
        }
    }
}
