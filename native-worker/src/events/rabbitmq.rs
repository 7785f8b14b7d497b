//! Events between processes over RabbitMQ: a durable fanout exchange `<prefix>events` that
//! every process publishes to (non-persistent messages: an event is worth little once stale),
//! and one exclusive, auto-delete, server-named queue per API-serving process, bound to it and
//! consumed into that process's [`Hub`]. The publishing channel is in confirm mode so that an
//! announced event's caller (see [`super::Events::announce`]) can be told when it is routed;
//! the publisher collects the confirms as they come rather than waiting for each, so the events
//! behind one do not wait for it.
//!
//! The queue holds at most [`QUEUE_LENGTH`] events (the oldest dropped first), so a stuck
//! process cannot grow the broker. After the broker link is lost the consumer reconnects,
//! declares and binds a new queue, and marks a gap in the hub: events published meanwhile are
//! gone, and clients resuming from before it are told to resync.
//!
//! Every message carries its publisher's name ([`ORIGIN_HEADER`]) and its number in that
//! publisher's sequence ([`SEQ_HEADER`]), so losses the link does not see (the queue's length
//! limit, the publisher's dropped events) are noticed too: a number out of sequence marks a gap
//! as well (see [`super::origins`]). The body is the event's [`Envelope`], unchanged.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions,
    QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, Consumer,
    ExchangeKind, PublisherConfirm,
};
use mp3conv_contract::event::Envelope;
use secrecy::ExposeSecret;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::origins::{MAX_ORIGINS, ORIGIN_TTL, Order, Origins};
use super::{Hub, Numbered};
use crate::config::QueueConfig;
use crate::error::{Error, error_chain};

/// Events a process's queue holds at most before the oldest are dropped.
pub(crate) const QUEUE_LENGTH: i64 = 10_000;
/// Pause between reconnection attempts.
const RECONNECT_PAUSE: Duration = Duration::from_secs(1);
/// Longest a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the publisher keeps sending what is left once the worker stops.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(3);
/// Events sent and not yet confirmed at most; past it the publisher waits for confirms before
/// sending more (the outbox holds the rest meanwhile).
const MAX_UNCONFIRMED: usize = 1024;

/// AMQP header naming the process that published an event (unique per run).
pub const ORIGIN_HEADER: &str = "x-mp3conv-origin";
/// AMQP header with an event's number in its origin's sequence (1, 2, …; a long long int).
pub const SEQ_HEADER: &str = "x-mp3conv-seq";

/// The exchange's name for a queue prefix.
pub fn exchange(prefix: &str) -> String {
    format!("{prefix}events")
}

fn amqp_error(e: lapin::Error) -> Error {
    Error::unavailable("rabbitmq", e)
}

async fn connect(config: &QueueConfig, name: &str) -> Result<Connection, Error> {
    let connecting = Connection::connect(
        config.url.expose_secret(),
        ConnectionProperties::default().with_connection_name(name.into()),
    );
    tokio::time::timeout(CONNECT_TIMEOUT, connecting)
        .await
        .map_err(|_| Error::unavailable("rabbitmq", "connection timed out"))?
        .map_err(amqp_error)
}

/// Declares the exchange: durable, except on test brokers (`queue.expires` set), where it goes
/// with the last queue bound to it.
async fn declare_exchange(channel: &Channel, config: &QueueConfig) -> lapin::Result<()> {
    let options = ExchangeDeclareOptions {
        durable: true,
        auto_delete: config.expires.is_some(),
        ..Default::default()
    };
    channel
        .exchange_declare(
            exchange(&config.prefix).as_str().into(),
            ExchangeKind::Fanout,
            options,
            FieldTable::default(),
        )
        .await
}

/// A consumer of this process's events queue, with its connection.
pub(crate) struct Subscriber {
    connection: Connection,
    consumer: Consumer,
}

impl Subscriber {
    /// Connects, declares the exchange and a queue of this process's own, binds and consumes.
    pub(crate) async fn connect(config: &QueueConfig) -> Result<Subscriber, Error> {
        let connection = connect(config, "mp3conv-worker-events-in").await?;
        let opened = async {
            let channel = connection.create_channel().await?;
            declare_exchange(&channel, config).await?;
            let mut arguments = FieldTable::default();
            arguments.insert("x-max-length".into(), AMQPValue::LongLongInt(QUEUE_LENGTH));
            arguments.insert(
                "x-overflow".into(),
                AMQPValue::LongString(LongString::from("drop-head")),
            );
            let queue = channel
                .queue_declare(
                    "".into(),
                    QueueDeclareOptions {
                        exclusive: true,
                        auto_delete: true,
                        ..Default::default()
                    },
                    arguments,
                )
                .await?;
            channel
                .queue_bind(
                    queue.name().clone(),
                    exchange(&config.prefix).as_str().into(),
                    "".into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            channel
                .basic_consume(
                    queue.name().clone(),
                    "".into(),
                    BasicConsumeOptions {
                        no_ack: true,
                        exclusive: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await
        }
        .await;
        match opened {
            Ok(consumer) => Ok(Subscriber {
                connection,
                consumer,
            }),
            Err(e) => {
                let _ = connection.close(200, "giving up".into()).await;
                Err(amqp_error(e))
            }
        }
    }
}

/// An event's origin and number, when the message has both.
fn origin_and_seq(properties: &BasicProperties) -> Option<(&str, u64)> {
    let headers = properties.headers().as_ref()?.inner();
    let origin = match headers.get(ORIGIN_HEADER)? {
        AMQPValue::LongString(origin) => std::str::from_utf8(origin.as_bytes()).ok()?,
        AMQPValue::ShortString(origin) => origin.as_str(),
        _ => return None,
    };
    let seq = match headers.get(SEQ_HEADER)? {
        AMQPValue::LongLongInt(seq) => u64::try_from(*seq).ok()?,
        AMQPValue::LongInt(seq) => u64::try_from(*seq).ok()?,
        AMQPValue::LongUInt(seq) => u64::from(*seq),
        _ => return None,
    };
    Some((origin, seq))
}

/// Hands one delivered event to `hub`, after a gap when its number shows events were lost.
fn deliver(hub: &Hub, origins: &mut Origins, properties: &BasicProperties, body: &[u8]) {
    if let Some((origin, seq)) = origin_and_seq(properties)
        && let Order::Jump { expected, got } = origins.observe(origin, seq)
    {
        tracing::warn!(
            origin,
            expected,
            got,
            "events were lost on the way; marking a gap"
        );
        hub.gap();
    }
    match serde_json::from_slice::<Envelope>(body) {
        Ok(envelope) => hub.publish(envelope),
        Err(e) => tracing::warn!(error = %e, "unreadable event; skipped"),
    }
}

/// Feeds `hub` from the events queue until `stop`; reconnects after losing the broker and then
/// marks a gap. `first` is the link made at start-up.
///
/// The origins' numbers are kept across a reconnect: a jump seen afterwards may repeat the
/// reconnect's gap (one more resync), but an event lost after it is never missed.
pub(crate) async fn consume(
    config: QueueConfig,
    hub: Arc<Hub>,
    first: Subscriber,
    stop: CancellationToken,
) {
    let mut link = Some(first);
    let mut origins = Origins::new(ORIGIN_TTL, MAX_ORIGINS);
    loop {
        let Subscriber {
            connection,
            mut consumer,
        } = match link.take() {
            Some(link) => link,
            None => {
                let connected = tokio::select! {
                    () = stop.cancelled() => return,
                    connected = Subscriber::connect(&config) => connected,
                };
                match connected {
                    Ok(link) => {
                        tracing::info!("events queue bound again; marking a gap");
                        hub.gap();
                        link
                    }
                    Err(e) => {
                        tracing::warn!(error = %error_chain(&e), "cannot bind the events queue; retrying");
                        tokio::select! {
                            () = stop.cancelled() => return,
                            () = tokio::time::sleep(RECONNECT_PAUSE) => continue,
                        }
                    }
                }
            }
        };
        loop {
            let next = tokio::select! {
                () = stop.cancelled() => {
                    let _ = connection.close(200, "stopping".into()).await;
                    return;
                }
                next = consumer.next() => next,
            };
            match next {
                Some(Ok(delivery)) => {
                    deliver(&hub, &mut origins, &delivery.properties, &delivery.data);
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %error_chain(&e), "events queue lost; reconnecting");
                    break;
                }
                None => {
                    tracing::warn!("events queue consumer ended; reconnecting");
                    break;
                }
            }
        }
        let _ = connection.close(200, "reconnecting".into()).await;
    }
}

/// The publishing side: a connection and channel, made when first needed and again after a
/// failure.
struct Publisher {
    config: QueueConfig,
    /// This process's name on its events.
    origin: String,
    link: Option<(Connection, Channel)>,
    /// No new connection attempt before this, after one failed (events meanwhile are dropped).
    wait_until: Option<tokio::time::Instant>,
}

impl Publisher {
    async fn channel(&mut self) -> Result<Channel, Error> {
        if let Some((connection, channel)) = &self.link
            && connection.status().connected()
            && channel.status().connected()
        {
            return Ok(channel.clone());
        }
        self.close().await;
        if self
            .wait_until
            .is_some_and(|at| tokio::time::Instant::now() < at)
        {
            return Err(Error::unavailable("rabbitmq", "reconnecting"));
        }
        let connected = async {
            let connection = connect(&self.config, "mp3conv-worker-events-out").await?;
            let channel = connection.create_channel().await.map_err(amqp_error)?;
            declare_exchange(&channel, &self.config)
                .await
                .map_err(amqp_error)?;
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await
                .map_err(amqp_error)?;
            Ok::<_, Error>((connection, channel))
        }
        .await;
        match connected {
            Ok((connection, channel)) => {
                self.wait_until = None;
                self.link = Some((connection, channel.clone()));
                Ok(channel)
            }
            Err(e) => {
                self.wait_until = Some(tokio::time::Instant::now() + RECONNECT_PAUSE);
                Err(e)
            }
        }
    }

    /// Sends one event; what is left to do for it is to [`settle`] the broker's confirm.
    async fn publish(&mut self, numbered: Numbered) -> Option<Unconfirmed> {
        let envelope = &numbered.envelope;
        let mut headers = FieldTable::default();
        headers.insert(
            ORIGIN_HEADER.into(),
            AMQPValue::LongString(LongString::from(self.origin.as_str())),
        );
        headers.insert(
            SEQ_HEADER.into(),
            AMQPValue::LongLongInt(i64::try_from(numbered.seq).unwrap_or(i64::MAX)),
        );
        let body = match serde_json::to_vec(envelope) {
            Ok(body) => body,
            Err(e) => {
                tracing::warn!(error = %e, "event not serializable; dropped");
                return None;
            }
        };
        let sent = async {
            let channel = self.channel().await?;
            let properties = BasicProperties::default()
                .with_message_id(envelope.id.as_str().into())
                .with_content_type("application/json".into())
                .with_type(envelope.event.kind().into())
                .with_delivery_mode(1)
                .with_headers(headers);
            channel
                .basic_publish(
                    exchange(&self.config.prefix).as_str().into(),
                    "".into(),
                    BasicPublishOptions::default(),
                    &body,
                    properties,
                )
                .await
                .map_err(amqp_error)
        }
        .await;
        match sent {
            Ok(confirm) => Some(Unconfirmed {
                confirm,
                routed: numbered.routed,
            }),
            Err(e) => {
                tracing::warn!(error = %error_chain(&e), kind = envelope.event.kind(), "event dropped");
                if let Some((connection, _)) = self.link.take() {
                    let _ = connection.close(200, "reconnecting".into()).await;
                }
                None
            }
        }
    }

    async fn close(&mut self) {
        if let Some((connection, _)) = self.link.take() {
            let _ = connection.close(200, "closing".into()).await;
        }
    }
}

/// An event sent, its confirm still to come.
struct Unconfirmed {
    confirm: PublisherConfirm,
    /// Its announcer, if any, to tell once the broker acknowledged it.
    routed: Option<oneshot::Sender<()>>,
}

/// Waits for `sent`'s confirm and tells its announcer when the broker acknowledged it. A confirm
/// left unawaited would be kept by lapin until the channel closes.
async fn settle(sent: Unconfirmed) {
    let confirmed = sent.confirm.await;
    if let (Ok(Confirmation::Ack(_)), Some(routed)) = (confirmed, sent.routed) {
        let _ = routed.send(());
    }
}

/// Publishes what `outbox` receives to the exchange until `stop`, then sends what is left
/// (for a little while) and closes. `origin` names this process on its events (unique per run).
pub(crate) async fn publish(
    config: QueueConfig,
    origin: String,
    mut outbox: mpsc::Receiver<Numbered>,
    stop: CancellationToken,
) {
    let mut publisher = Publisher {
        config,
        origin,
        link: None,
        wait_until: None,
    };
    // Connected up front, so the first events go out without a wait.
    if let Err(e) = publisher.channel().await {
        tracing::warn!(error = %error_chain(&e), "cannot reach the events exchange yet");
    }
    let mut unconfirmed = FuturesUnordered::new();
    loop {
        let envelope = tokio::select! {
            envelope = outbox.recv(), if unconfirmed.len() < MAX_UNCONFIRMED => envelope,
            Some(()) = unconfirmed.next() => continue,
            () = stop.cancelled() => break,
        };
        match envelope {
            Some(envelope) => unconfirmed.extend(publisher.publish(envelope).await.map(settle)),
            None => break,
        }
    }
    let flush = async {
        while let Ok(envelope) = outbox.try_recv() {
            unconfirmed.extend(publisher.publish(envelope).await.map(settle));
        }
        while unconfirmed.next().await.is_some() {}
    };
    if tokio::time::timeout(FLUSH_TIMEOUT, flush).await.is_err() {
        tracing::warn!("events left unpublished at shutdown");
    }
    // A link gone half-open would hold the close up until TCP gives up.
    if tokio::time::timeout(FLUSH_TIMEOUT, publisher.close())
        .await
        .is_err()
    {
        tracing::warn!("the events link did not close in time; leaving it");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::hub::{Live, Replay};
    use mp3conv_contract::event::Event;
    use mp3conv_contract::job::JobId;

    fn message(origin: &str, seq: i64) -> (BasicProperties, Vec<u8>, String) {
        let envelope = Envelope::new(
            "ann",
            Event::JobDeleted {
                job_id: JobId::new(),
            },
        );
        let mut headers = FieldTable::default();
        headers.insert(
            ORIGIN_HEADER.into(),
            AMQPValue::LongString(LongString::from(origin)),
        );
        headers.insert(SEQ_HEADER.into(), AMQPValue::LongLongInt(seq));
        let properties = BasicProperties::default().with_headers(headers);
        let id = envelope.id.clone();
        (properties, serde_json::to_vec(&envelope).unwrap(), id)
    }

    fn deleted() -> Envelope {
        Envelope::new(
            "ann",
            Event::JobDeleted {
                job_id: JobId::new(),
            },
        )
    }

    /// Messages ready on `queue`.
    async fn depth(channel: &Channel, queue: &str) -> u32 {
        let passive = QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        channel
            .queue_declare(queue.into(), passive, FieldTable::default())
            .await
            .unwrap()
            .message_count()
    }

    fn broker(prefix: &str) -> QueueConfig {
        QueueConfig {
            kind: crate::config::QueueKind::Rabbitmq,
            url: std::env::var("MP3CONV_TEST_AMQP_URL")
                .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
                .into(),
            prefix: prefix.to_owned(),
            expires: Some(Duration::from_secs(60)),
            ..QueueConfig::default()
        }
    }

    /// What the intake relies on to order a job's events across processes: once `announce`
    /// returns, the event is in every bound queue, so whatever is published next (by a
    /// converter, on its own connection) lands behind it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_announced_event_is_in_the_streams_queue_when_announce_returns() {
        let prefix = format!("announce-{}-", JobId::new());
        let config = broker(&prefix);
        let connection = connect(&config, "announce-test").await.unwrap();
        let channel = connection.create_channel().await.unwrap();
        declare_exchange(&channel, &config).await.unwrap();
        let queue = channel
            .queue_declare(
                "".into(),
                QueueDeclareOptions {
                    exclusive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        channel
            .queue_bind(
                queue.name().clone(),
                exchange(&prefix).as_str().into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        let (events, outbox) = super::super::Events::through_exchange(&Default::default());
        let stop = CancellationToken::new();
        let publisher = tokio::spawn(publish(config, "announcer".into(), outbox, stop.clone()));

        for announced in 1..=20 {
            // Unannounced events ahead of it are routed first, in order.
            events.publish(deleted());
            let routed = events.announce(deleted()).await;
            assert!(routed, "the broker confirmed announcement {announced}");
            assert_eq!(depth(&channel, queue.name().as_str()).await, 2 * announced);
        }
        stop.cancel();
        publisher.await.unwrap();
        let _ = connection.close(200, "done".into()).await;
    }

    /// An event that cannot reach the broker holds its announcer up no longer than it takes
    /// to find that out.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn announcing_without_a_broker_goes_on_at_once() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let closed = listener.local_addr().unwrap();
        drop(listener);
        let config = QueueConfig {
            url: format!("amqp://guest:guest@{closed}/%2f").into(),
            ..broker("nowhere-")
        };
        let (events, outbox) = super::super::Events::through_exchange(&Default::default());
        let stop = CancellationToken::new();
        let publisher = tokio::spawn(publish(config, "announcer".into(), outbox, stop.clone()));
        let started = tokio::time::Instant::now();
        assert!(!events.announce(deleted()).await);
        assert!(
            started.elapsed() < super::super::ANNOUNCE_WAIT / 2,
            "waited {:?} for a broker that refuses connections",
            started.elapsed()
        );
        stop.cancel();
        publisher.await.unwrap();
    }

    /// A broker that takes the connection and never answers holds the first announcement up
    /// for the announcement wait, and the next ones not at all.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_silent_broker_holds_one_announcement_up_not_every_one() {
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let config = QueueConfig {
            url: format!("amqp://guest:guest@{}/%2f", silent.local_addr().unwrap()).into(),
            ..broker("silent-")
        };
        let accepting = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((connection, _)) = silent.accept().await {
                held.push(connection);
            }
        });
        let (events, outbox) = super::super::Events::through_exchange(&Default::default());
        let publisher = tokio::spawn(publish(
            config,
            "announcer".into(),
            outbox,
            CancellationToken::new(),
        ));
        let wait = super::super::ANNOUNCE_WAIT;

        let started = tokio::time::Instant::now();
        assert!(!events.announce(deleted()).await);
        assert!(
            started.elapsed() >= wait,
            "gave up after {:?}",
            started.elapsed()
        );
        let started = tokio::time::Instant::now();
        for _ in 0..5 {
            assert!(!events.announce(deleted()).await);
        }
        assert!(
            started.elapsed() < wait / 2,
            "later announcements waited {:?}",
            started.elapsed()
        );
        publisher.abort();
        accepting.abort();
    }

    #[tokio::test]
    async fn a_number_out_of_sequence_marks_a_gap_before_the_event() {
        let hub = Hub::new(16, Duration::from_secs(600), 16);
        let mut origins = Origins::new(ORIGIN_TTL, MAX_ORIGINS);
        let mut open = hub.subscribe("ann", None);
        let mut ids = Vec::new();
        for (origin, seq) in [("a", 7), ("a", 8), ("b", 1)] {
            let (properties, body, id) = message(origin, seq);
            deliver(&hub, &mut origins, &properties, &body);
            ids.push(id);
        }
        for id in &ids {
            assert!(matches!(open.recv().await, Live::Event(e) if e.id == *id));
        }
        let (properties, body, after) = message("a", 10);
        deliver(&hub, &mut origins, &properties, &body);
        assert!(matches!(open.recv().await, Live::Resync));
        assert!(matches!(open.recv().await, Live::Event(e) if e.id == after));
        assert_eq!(
            hub.subscribe("ann", Some(&ids[0])).replay,
            Replay::Resync,
            "no resume across the loss"
        );
        assert!(matches!(
            hub.subscribe("ann", Some(&after)).replay,
            Replay::Events(events) if events.is_empty()
        ));

        // Without the headers (an older publisher) the event just passes.
        let unnumbered = Envelope::new(
            "ann",
            Event::JobDeleted {
                job_id: JobId::new(),
            },
        );
        let body = serde_json::to_vec(&unnumbered).unwrap();
        deliver(&hub, &mut origins, &BasicProperties::default(), &body);
        assert!(matches!(open.recv().await, Live::Event(e) if e.id == unnumbered.id));
    }
}
