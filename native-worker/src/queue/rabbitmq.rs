//! RabbitMQ via lapin: durable queues declared by the worker itself, persistent messages,
//! publisher confirms, delayed retries through TTL queues and a dead-letter queue.
//!
//! Topology, for a prefix `p`:
//! - `p` + `video`: jobs to convert; rejected messages dead-letter to `p` + `video.dead`.
//! - `p` + `video.retry.N` (N = 2..=max attempts): holds a message for attempt N for the
//!   attempt's backoff (`x-message-ttl`), then dead-letters it back to `p` + `video`. One queue
//!   per attempt, so a long delay never holds up a shorter one.
//! - `p` + `video.dead`: messages that could not be processed.
//! - `p` + `mp3`: announcements; what their consumer rejects dead-letters to `p` + `mp3.dead`.
//! - `p` + `mp3`: announcements of done and failed jobs.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    BasicRejectOptions, ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};
use secrecy::ExposeSecret;
use tokio::sync::Mutex;

use super::{Deliveries, Delivery, JobQueue, Outcome, Outgoing, Route, Settle, retry_delay};
use crate::config::QueueConfig;
use crate::error::Error;

/// The worker's queue names for one prefix.
#[derive(Debug, Clone)]
pub struct QueueNames {
    prefix: String,
}

impl QueueNames {
    /// Names under `prefix`.
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }
    /// Jobs to convert.
    pub fn video(&self) -> String {
        format!("{}video", self.prefix)
    }
    /// Announcements.
    pub fn mp3(&self) -> String {
        format!("{}mp3", self.prefix)
    }
    /// Dead letters.
    pub fn dead(&self) -> String {
        format!("{}video.dead", self.prefix)
    }
    /// Announcements the notifier's event source gave up on (it nacks them without requeue;
    /// the `mp3` queue dead-letters them here).
    pub fn mp3_dead(&self) -> String {
        format!("{}mp3.dead", self.prefix)
    }
    /// Waiting room before attempt `attempt`.
    pub fn retry(&self, attempt: u32) -> String {
        format!("{}video.retry.{attempt}", self.prefix)
    }
}

fn amqp_error(e: lapin::Error) -> Error {
    Error::unavailable("rabbitmq", e)
}

/// A RabbitMQ connection, re-established (and the topology re-declared) whenever it is lost.
pub struct RabbitQueue {
    config: QueueConfig,
    names: QueueNames,
    link: Mutex<Option<Link>>,
}

struct Link {
    connection: Arc<Connection>,
    publisher: Channel,
}

impl RabbitQueue {
    /// Connects and declares the topology.
    pub async fn connect(config: QueueConfig) -> Result<Self, Error> {
        let queue = Self {
            names: QueueNames::new(&config.prefix),
            config,
            link: Mutex::new(None),
        };
        queue.publisher().await?;
        Ok(queue)
    }

    /// The queue names in use.
    pub fn names(&self) -> &QueueNames {
        &self.names
    }

    /// The publishing channel (confirm mode), connecting first if needed, and the connection.
    async fn publisher(&self) -> Result<(Arc<Connection>, Channel), Error> {
        let mut link = self.link.lock().await;
        if let Some(l) = link.as_ref()
            && l.connection.status().connected()
            && l.publisher.status().connected()
        {
            return Ok((Arc::clone(&l.connection), l.publisher.clone()));
        }
        if let Some(old) = link.take() {
            let _ = old.connection.close(200, "reconnecting".into()).await;
        }
        let connection = Connection::connect(
            self.config.url.expose_secret(),
            ConnectionProperties::default().with_connection_name("mp3conv-worker".into()),
        )
        .await
        .map(Arc::new)
        .map_err(amqp_error)?;
        let publisher = connection.create_channel().await.map_err(amqp_error)?;
        self.declare(&publisher).await.map_err(amqp_error)?;
        publisher
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(amqp_error)?;
        tracing::info!(prefix = %self.config.prefix, "connected to RabbitMQ");
        *link = Some(Link {
            connection: Arc::clone(&connection),
            publisher: publisher.clone(),
        });
        Ok((connection, publisher))
    }

    async fn forget(&self) {
        if let Some(old) = self.link.lock().await.take() {
            let _ = old.connection.close(200, "reconnecting".into()).await;
        }
    }

    fn arguments(&self, extra: &[(&str, AMQPValue)]) -> FieldTable {
        let mut table = FieldTable::default();
        for (key, value) in extra {
            table.insert((*key).into(), value.clone());
        }
        if let Some(expires) = self.config.expires {
            table.insert("x-expires".into(), millis(expires));
        }
        table
    }

    async fn declare(&self, channel: &Channel) -> lapin::Result<()> {
        let durable = QueueDeclareOptions::durable();
        let names = &self.names;
        let dead_letter_to = |queue: String| {
            [
                ("x-dead-letter-exchange", string("")),
                ("x-dead-letter-routing-key", string(&queue)),
            ]
        };
        channel
            .queue_declare(names.dead().into(), durable, self.arguments(&[]))
            .await?;
        channel
            .queue_declare(
                names.video().into(),
                durable,
                self.arguments(&dead_letter_to(names.dead())),
            )
            .await?;
        channel
            .queue_declare(names.mp3_dead().into(), durable, self.arguments(&[]))
            .await?;
        channel
            .queue_declare(
                names.mp3().into(),
                durable,
                self.arguments(&dead_letter_to(names.mp3_dead())),
            )
            .await?;
        for attempt in 2..=self.config.max_attempts {
            let [exchange, key] = dead_letter_to(names.video());
            let ttl = (
                "x-message-ttl",
                millis(retry_delay(self.config.retry_delay, attempt)),
            );
            channel
                .queue_declare(
                    names.retry(attempt).into(),
                    durable,
                    self.arguments(&[exchange, key, ttl]),
                )
                .await?;
        }
        Ok(())
    }

    fn route(&self, route: Route) -> String {
        match route {
            Route::Video => self.names.video(),
            Route::Mp3 => self.names.mp3(),
            Route::Retry { attempt } => self.names.retry(attempt),
        }
    }
}

/// The W3C `traceparent` a message carries in its AMQP headers, if any.
pub fn traceparent(properties: &BasicProperties) -> Option<String> {
    properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get("traceparent"))
        .and_then(|v| match v {
            AMQPValue::LongString(s) => Some(s.to_string()),
            _ => None,
        })
}

fn string(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s))
}

fn millis(d: Duration) -> AMQPValue {
    AMQPValue::LongLongInt(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[async_trait]
impl JobQueue for RabbitQueue {
    async fn publish(&self, route: Route, message: Outgoing) -> Result<(), Error> {
        let (_, channel) = self.publisher().await?;
        let mut headers = FieldTable::default();
        if let Some(traceparent) = &message.traceparent {
            headers.insert("traceparent".into(), string(traceparent));
        }
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let properties = BasicProperties::default()
            .with_message_id(message.message_id.as_str().into())
            .with_content_type("application/json".into())
            .with_type(message.kind.into())
            .with_timestamp(timestamp)
            .with_delivery_mode(2)
            .with_headers(headers);
        let sent = async {
            channel
                .basic_publish(
                    "".into(),
                    self.route(route).as_str().into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..Default::default()
                    },
                    &message.body,
                    properties,
                )
                .await?
                .await
        }
        .await;
        match sent {
            Ok(Confirmation::Ack(None)) => Ok(()),
            Ok(Confirmation::Ack(Some(_))) => {
                Err(Error::internal(format!("{route:?} queue is missing")))
            }
            Ok(other) => Err(Error::unavailable(
                "rabbitmq",
                format!("publish not confirmed: {other:?}"),
            )),
            Err(e) => {
                self.forget().await;
                Err(amqp_error(e))
            }
        }
    }

    async fn consume(&self, prefetch: u16) -> Result<Deliveries, Error> {
        let (connection, _) = self.publisher().await?;
        let opened = async {
            let channel = connection.create_channel().await?;
            channel
                .basic_qos(prefetch, BasicQosOptions::default())
                .await?;
            let consumer = channel
                .basic_consume(
                    self.names.video().as_str().into(),
                    "".into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            Ok((channel, consumer))
        }
        .await;
        let (channel, consumer) = match opened {
            Ok(opened) => opened,
            Err(e) => {
                self.forget().await;
                return Err(amqp_error(e));
            }
        };
        // Each delivery holds the channel it came on: lapin closes a channel when its last
        // handle goes, and a closed channel hands its unsettled deliveries back to the queue.
        // So a consumer dropped at shutdown only cancels the consuming (no new deliveries),
        // while the jobs in hand finish and are settled on their channel, which closes after
        // the last of them.
        Ok(Box::pin(consumer.map(move |delivery| {
            let delivery = delivery.map_err(amqp_error)?;
            let traceparent = traceparent(&delivery.properties);
            Ok(Delivery::new(
                Bytes::from(delivery.data),
                traceparent,
                delivery.redelivered,
                Box::new(RabbitSettle {
                    acker: delivery.acker,
                    _channel: channel.clone(),
                }),
            ))
        })))
    }

    async fn check(&self) -> Result<(), Error> {
        self.publisher().await.map(drop)
    }

    async fn close(&self) {
        self.forget().await;
    }
}

struct RabbitSettle {
    acker: lapin::Acker,
    /// Keeps the channel open until the delivery is settled.
    _channel: Channel,
}

#[async_trait]
impl Settle for RabbitSettle {
    async fn settle(self: Box<Self>, outcome: Outcome) -> Result<(), Error> {
        let settled = match outcome {
            Outcome::Ack => self.acker.ack(BasicAckOptions::default()).await,
            Outcome::Requeue => {
                self.acker
                    .nack(BasicNackOptions {
                        requeue: true,
                        ..Default::default()
                    })
                    .await
            }
            Outcome::DeadLetter => {
                self.acker
                    .reject(BasicRejectOptions { requeue: false })
                    .await
            }
        };
        // `false`: the channel had closed, so the broker has the delivery back already.
        match settled.map_err(amqp_error)? {
            true => Ok(()),
            false => Err(Error::unavailable(
                "rabbitmq",
                "the delivery's channel closed before it was settled",
            )),
        }
    }
}
