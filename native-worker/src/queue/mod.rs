//! How jobs reach the converter and how results are announced: RabbitMQ in production, an
//! in-process queue in embedded mode.

pub mod memory;
pub mod rabbitmq;

use std::time::{Duration, Instant};

use crate::error::Error;
use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

pub use mp3conv_contract::message::{JobMessage, MP3_TYPE, VIDEO_TYPE};

/// What the worker adds to the contract's message: the AMQP envelope.
pub trait MessageExt {
    /// The outgoing message for `route`.
    fn outgoing(&self, route: Route, traceparent: Option<String>) -> Outgoing;
}

impl MessageExt for JobMessage {
    /// The outgoing message: `message_id` depends only on the job (and, for announcements, its
    /// final state), so it stays the same across redeliveries and retries.
    fn outgoing(&self, route: Route, traceparent: Option<String>) -> Outgoing {
        let announcement = route == Route::Mp3;
        let kind = if announcement { MP3_TYPE } else { VIDEO_TYPE };
        Outgoing {
            message_id: self.message_id(announcement),
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
        let job = crate::job::Job::new(
            "alice".into(),
            crate::job::Source::link("http://example.com/a.mp4"),
            Default::default(),
        );
        let first = JobMessage::for_job(&job, 1).outgoing(Route::Video, None);
        let retry = JobMessage::for_job(&job, 2).outgoing(Route::Retry { attempt: 2 }, None);
        assert_eq!(first.message_id, retry.message_id);
        assert_eq!(first.kind, VIDEO_TYPE);
        // The body is the contract's message (its fields are tested there).
        let body: JobMessage = serde_json::from_slice(&first.body).unwrap();
        assert_eq!(body, JobMessage::for_job(&job, 1));
        let announced = JobMessage::for_job(&job, 1).outgoing(Route::Mp3, None);
        assert_eq!(announced.kind, MP3_TYPE);
        assert_eq!(announced.message_id, format!("{}.queued", job.id));
    }
}
