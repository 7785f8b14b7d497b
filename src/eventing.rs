//! The eventing bridge: the local stand-in for Knative Eventing's RabbitmqSource. It consumes
//! the worker's `mp3` queue (RabbitMQ, or the in-process queue of `mp3conv up`), turns each
//! message into a CloudEvent the way the source does, and POSTs it to the sink (the notifier's
//! route): 2xx acks; 5xx, 404, 408, 413, 425, 429 and network failures are retried with the
//! configured backoff; other answers, and retries run out, reject the message (RabbitMQ then
//! dead-letters it to `mp3.dead`).
//!
//! Configured by `eventing.toml`, whose fields mirror the RabbitmqSource spec
//! (`sources.knative.dev/v1alpha1`): `rabbitmqResourcesConfig.queueName` and `parallelism`,
//! `delivery.retry`, `backoffPolicy`, `backoffDelay` (ISO 8601), and `sink.uri`.
//!
//! Every event carries `Authorization: Bearer <events_token>`: the notifier refuses events
//! without it, so `/events` on the public listener tells an outsider nothing.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use futures::StreamExt as _;
use serde::Deserialize;

/// `type` the source gives every event.
pub const EVENT_TYPE: &str = "dev.knative.rabbitmq.event";
/// How long one POST to the sink may take.
const SINK_TIMEOUT: Duration = Duration::from_secs(30);

/// `eventing.toml`: the sources to run.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventingFile {
    #[serde(rename = "source")]
    pub sources: Vec<SourceSpec>,
}

/// One RabbitmqSource.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SourceSpec {
    pub name: String,
    /// Only used in the events' `source` attribute, as the cluster's namespace would be.
    #[serde(default = "default_namespace")]
    pub namespace: String,
    pub rabbitmq_resources_config: ResourcesConfig,
    #[serde(default)]
    pub delivery: DeliverySpec,
    pub sink: Sink,
}

fn default_namespace() -> String {
    "default".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ResourcesConfig {
    /// The queue to consume (without the worker's prefix).
    pub queue_name: String,
    /// Messages handled at once (1-1000).
    #[serde(default = "one")]
    pub parallelism: u16,
    /// The queue exists already (the worker declares it): only `true` is supported.
    #[serde(default = "yes")]
    pub predeclared: bool,
}

fn one() -> u16 {
    1
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DeliverySpec {
    /// Retries after the first attempt.
    #[serde(default)]
    pub retry: u32,
    #[serde(default)]
    pub backoff_policy: BackoffPolicy,
    /// ISO 8601, e.g. `PT0.2S`.
    #[serde(default = "default_delay")]
    pub backoff_delay: String,
}

fn default_delay() -> String {
    "PT0.2S".into()
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackoffPolicy {
    #[default]
    Exponential,
    Linear,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sink {
    /// A route of the host (`/events`) or an absolute URL.
    pub uri: String,
}

impl EventingFile {
    pub fn load(path: &Path) -> anyhow::Result<EventingFile> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let file: EventingFile =
            toml::from_str(&text).with_context(|| format!("{} is not valid", path.display()))?;
        for source in &file.sources {
            source
                .check()
                .with_context(|| format!("{}: source `{}`", path.display(), source.name))?;
        }
        Ok(file)
    }
}

impl SourceSpec {
    fn check(&self) -> anyhow::Result<()> {
        let resources = &self.rabbitmq_resources_config;
        anyhow::ensure!(
            (1..=1000).contains(&resources.parallelism),
            "rabbitmqResourcesConfig.parallelism must be 1 to 1000"
        );
        anyhow::ensure!(
            resources.predeclared,
            "rabbitmqResourcesConfig.predeclared must be true: the worker declares its queues"
        );
        anyhow::ensure!(
            !resources.queue_name.is_empty(),
            "rabbitmqResourcesConfig.queueName is empty"
        );
        parse_iso8601(&self.delivery.backoff_delay).with_context(|| {
            format!(
                "delivery.backoffDelay `{}` is not an ISO 8601 duration",
                self.delivery.backoff_delay
            )
        })?;
        anyhow::ensure!(
            self.sink.uri.starts_with('/')
                || self.sink.uri.starts_with("http://")
                || self.sink.uri.starts_with("https://"),
            "sink.uri must be a route (/...) or an http(s) URL"
        );
        Ok(())
    }

    /// The wait before retry `n` (1-based): `delay × 2^n` (exponential) or `delay × n`
    /// (linear), as the source computes it.
    pub fn backoff(&self, n: u32) -> Duration {
        let delay = parse_iso8601(&self.delivery.backoff_delay).unwrap_or_default();
        match self.delivery.backoff_policy {
            BackoffPolicy::Exponential => delay.saturating_mul(1 << n.min(20)),
            BackoffPolicy::Linear => delay.saturating_mul(n),
        }
    }

    /// The sink's URL, relative routes resolved against the host.
    pub fn sink_url(&self, host: std::net::SocketAddr) -> String {
        if self.sink.uri.starts_with('/') {
            format!("http://{host}{}", self.sink.uri)
        } else {
            self.sink.uri.clone()
        }
    }

    /// The `source` attribute of this source's events.
    pub fn event_source(&self) -> String {
        format!(
            "/apis/v1/namespaces/{}/rabbitmqsources/{}#{}",
            self.namespace, self.name, self.rabbitmq_resources_config.queue_name
        )
    }
}

/// An ISO 8601 duration of days, hours, minutes and (fractional) seconds: `PT0.2S`,
/// `PT1M30S`, `P1DT2H`.
pub fn parse_iso8601(text: &str) -> Option<Duration> {
    let rest = text.strip_prefix('P')?;
    let (date, time) = match rest.split_once('T') {
        Some((date, time)) => (date, Some(time)),
        None => (rest, None),
    };
    let mut seconds = 0f64;
    let mut any = false;
    let mut take = |part: &str, units: &[(char, f64)]| -> Option<()> {
        let mut number = String::new();
        let mut order = 0;
        for c in part.chars() {
            if c.is_ascii_digit() || c == '.' {
                number.push(c);
                continue;
            }
            let position = units.iter().position(|(u, _)| *u == c)?;
            if position < order || number.is_empty() {
                return None;
            }
            order = position + 1;
            seconds += number.parse::<f64>().ok()? * units[position].1;
            number.clear();
            any = true;
        }
        number.is_empty().then_some(())
    };
    take(date, &[('D', 86_400.0)])?;
    if let Some(time) = time {
        if time.is_empty() {
            return None;
        }
        take(time, &[('H', 3600.0), ('M', 60.0), ('S', 1.0)])?;
    }
    (any && seconds.is_finite()).then(|| Duration::from_secs_f64(seconds))
}

/// A message taken from the queue.
#[derive(Debug, Clone, Default)]
pub struct Message {
    pub message_id: Option<String>,
    /// AMQP `timestamp`, Unix seconds.
    pub timestamp: Option<u64>,
    pub content_type: Option<String>,
    pub traceparent: Option<String>,
    pub body: Vec<u8>,
}

/// How a message's delivery ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The sink answered 2xx: ack.
    Delivered { attempts: u32 },
    /// The sink refused it for good, or retries ran out: reject (dead-letter).
    DeadLetter { attempts: u32, reason: String },
}

/// Statuses the source retries; anything else that is not 2xx is final.
fn retryable(status: u16) -> bool {
    matches!(status, 404 | 408 | 413 | 425 | 429 | 500..=599)
}

/// Where events go: the sink's URL and the token the notifier expects (`events_token`).
#[derive(Clone)]
pub struct Target {
    pub url: String,
    pub token: String,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// Delivers one message to `sink` as a binary-mode CloudEvent, retrying as the spec says.
pub async fn deliver(
    client: &reqwest::Client,
    spec: &SourceSpec,
    sink: &Target,
    message: &Message,
) -> Verdict {
    let id = message
        .message_id
        .clone()
        .filter(|id| !id.is_empty())
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let mut reason = String::new();
    for attempt in 0..=spec.delivery.retry {
        if attempt > 0 {
            tokio::time::sleep(spec.backoff(attempt)).await;
        }
        let mut request = client
            .post(&sink.url)
            .timeout(SINK_TIMEOUT)
            .bearer_auth(&sink.token)
            .header("ce-specversion", "1.0")
            .header("ce-id", &id)
            .header("ce-source", spec.event_source())
            .header("ce-type", EVENT_TYPE)
            .header("ce-subject", &id)
            .header("kn-namespace", &spec.namespace)
            .body(message.body.clone());
        if let Some(time) = message.timestamp.and_then(rfc3339) {
            request = request.header("ce-time", time);
        }
        if let Some(content_type) = message.content_type.as_deref().map(str::trim) {
            request = request.header("content-type", content_type);
        }
        if let Some(traceparent) = &message.traceparent {
            request = request.header("traceparent", traceparent);
        }
        match request.send().await {
            Ok(response) if response.status().is_success() => {
                return Verdict::Delivered {
                    attempts: attempt + 1,
                };
            }
            Ok(response) if retryable(response.status().as_u16()) => {
                reason = format!("the sink answered {}", response.status());
            }
            Ok(response) => {
                return Verdict::DeadLetter {
                    attempts: attempt + 1,
                    reason: format!("the sink refused it: {}", response.status()),
                };
            }
            Err(err) => reason = format!("the sink is unreachable: {err}"),
        }
        tracing::debug!(event_id = %id, attempt = attempt + 1, %reason, "event not delivered");
    }
    Verdict::DeadLetter {
        attempts: spec.delivery.retry + 1,
        reason,
    }
}

fn rfc3339(unix_seconds: u64) -> Option<String> {
    let time = time::OffsetDateTime::from_unix_timestamp(i64::try_from(unix_seconds).ok()?).ok()?;
    time.format(&time::format_description::well_known::Rfc3339)
        .ok()
}

/// Where the bridge reads messages from.
pub enum Queue {
    /// RabbitMQ at `url`; queue names carry the worker's `prefix`.
    Rabbitmq { url: String, prefix: String },
    /// The in-process `mp3` queue of `mp3conv up`.
    Memory(tokio::sync::mpsc::UnboundedReceiver<native_worker::queue::Outgoing>),
}

/// Runs one source until `shutdown` resolves.
pub async fn run(
    spec: SourceSpec,
    queue: Queue,
    sink: Target,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .build()
        .context("building the HTTP client")?;
    let spec = Arc::new(spec);
    tracing::info!(source = %spec.name, sink = %sink.url, "eventing bridge started");
    let work = async {
        match queue {
            Queue::Memory(receiver) => memory(&spec, &client, &sink, receiver).await,
            Queue::Rabbitmq { url, prefix } => rabbitmq(&spec, &client, &sink, &url, &prefix).await,
        }
    };
    tokio::select! {
        () = work => {}
        () = shutdown => tracing::info!(source = %spec.name, "eventing bridge stopped"),
    }
    Ok(())
}

async fn memory(
    spec: &SourceSpec,
    client: &reqwest::Client,
    sink: &Target,
    receiver: tokio::sync::mpsc::UnboundedReceiver<native_worker::queue::Outgoing>,
) {
    let messages = futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|message| (message, receiver))
    });
    let parallelism = usize::from(spec.rabbitmq_resources_config.parallelism);
    messages
        .for_each_concurrent(parallelism, |outgoing| async move {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let message = Message {
                message_id: Some(outgoing.message_id),
                timestamp: Some(now),
                content_type: Some("application/json".into()),
                traceparent: outgoing.traceparent,
                body: outgoing.body,
            };
            report(&message, deliver(client, spec, sink, &message).await);
        })
        .await;
}

fn report(message: &Message, verdict: Verdict) {
    let id = message.message_id.as_deref().unwrap_or("-");
    match verdict {
        Verdict::Delivered { attempts } => {
            tracing::debug!(event_id = %id, attempts, "event delivered")
        }
        Verdict::DeadLetter { attempts, reason } => {
            tracing::warn!(event_id = %id, attempts, %reason, "event dead-lettered")
        }
    }
}

/// Consumes the queue, reconnecting (with a growing pause, up to 10 s) whenever the broker
/// goes away; unacknowledged messages return to the queue and are delivered again.
async fn rabbitmq(
    spec: &SourceSpec,
    client: &reqwest::Client,
    sink: &Target,
    url: &str,
    prefix: &str,
) {
    let queue = format!("{prefix}{}", spec.rabbitmq_resources_config.queue_name);
    let mut pause = Duration::from_millis(200);
    loop {
        match consume(spec, client, sink, url, &queue).await {
            Ok(()) => tracing::warn!(%queue, "the broker closed the consumer; reconnecting"),
            Err(err) => tracing::warn!(%queue, "eventing bridge: {err:#}; reconnecting"),
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(10));
    }
}

async fn consume(
    spec: &SourceSpec,
    client: &reqwest::Client,
    sink: &Target,
    url: &str,
    queue: &str,
) -> anyhow::Result<()> {
    use lapin::options::{
        BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
        QueueDeclareOptions,
    };
    use lapin::types::FieldTable;
    let connection = lapin::Connection::connect(
        url,
        lapin::ConnectionProperties::default().with_connection_name("mp3conv-eventing".into()),
    )
    .await
    .context("connecting to RabbitMQ")?;
    let channel = connection.create_channel().await?;
    let parallelism = spec.rabbitmq_resources_config.parallelism;
    channel
        .basic_qos(parallelism, BasicQosOptions::default())
        .await?;
    // Predeclared by the worker: only check that it is there.
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .with_context(|| format!("queue `{queue}` is not declared yet (the worker declares it)"))?;
    let consumer = channel
        .basic_consume(
            queue.into(),
            format!("mp3conv-eventing-{}", spec.name).as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    tracing::info!(%queue, "eventing bridge consuming");
    consumer
        .for_each_concurrent(usize::from(parallelism), |delivery| async move {
            let delivery = match delivery {
                Ok(delivery) => delivery,
                Err(err) => {
                    tracing::warn!("eventing bridge: delivery failed: {err}");
                    return;
                }
            };
            let properties = &delivery.properties;
            let traceparent = native_worker::queue::rabbitmq::traceparent(properties);
            let message = Message {
                message_id: properties.message_id().as_ref().map(|s| s.to_string()),
                timestamp: *properties.timestamp(),
                content_type: properties.content_type().as_ref().map(|s| s.to_string()),
                traceparent,
                body: delivery.data.clone(),
            };
            let verdict = deliver(client, spec, sink, &message).await;
            let settled = match &verdict {
                Verdict::Delivered { .. } => delivery.acker.ack(BasicAckOptions::default()).await,
                // Not requeued: the queue's dead-letter exchange takes it (`mp3.dead`).
                Verdict::DeadLetter { .. } => {
                    delivery
                        .acker
                        .nack(BasicNackOptions {
                            requeue: false,
                            ..Default::default()
                        })
                        .await
                }
            };
            if let Err(err) = settled {
                tracing::warn!("eventing bridge: cannot settle a message: {err}");
            }
            report(&message, verdict);
        })
        .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso8601_durations() {
        for (text, ms) in [
            ("PT0.2S", 200),
            ("PT1M30S", 90_000),
            ("P1DT2H", 93_600_000),
            ("PT2H", 7_200_000),
            ("P1D", 86_400_000),
        ] {
            assert_eq!(
                parse_iso8601(text),
                Some(Duration::from_millis(ms)),
                "{text}"
            );
        }
        for bad in ["", "P", "PT", "0.2S", "PT0.2", "PTS", "PT1S1M", "P1H"] {
            assert_eq!(parse_iso8601(bad), None, "{bad}");
        }
    }

    fn spec(policy: &str) -> SourceSpec {
        toml::from_str::<EventingFile>(&format!(
            r#"
            [[source]]
            name = "mp3-notifier"
            namespace = "mp3conv"
            rabbitmqResourcesConfig = {{ queueName = "mp3", parallelism = 2 }}
            delivery = {{ retry = 3, backoffPolicy = "{policy}", backoffDelay = "PT0.1S" }}
            sink = {{ uri = "/events" }}
            "#
        ))
        .unwrap()
        .sources
        .remove(0)
    }

    #[test]
    fn backoff_as_the_source_computes_it() {
        let exponential = spec("exponential");
        assert_eq!(exponential.backoff(1), Duration::from_millis(200));
        assert_eq!(exponential.backoff(3), Duration::from_millis(800));
        let linear = spec("linear");
        assert_eq!(linear.backoff(3), Duration::from_millis(300));
        assert_eq!(
            exponential.event_source(),
            "/apis/v1/namespaces/mp3conv/rabbitmqsources/mp3-notifier#mp3"
        );
        assert_eq!(
            exponential.sink_url("127.0.0.1:3000".parse().unwrap()),
            "http://127.0.0.1:3000/events"
        );
    }

    #[test]
    fn the_repository_file_is_valid_and_bad_files_are_refused() {
        let repo = EventingFile::load(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/eventing.toml"
        )))
        .unwrap();
        assert_eq!(repo.sources[0].rabbitmq_resources_config.queue_name, "mp3");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("eventing.toml");
        for bad in [
            "[[source]]\nname = \"x\"\nrabbitmqResourcesConfig = { queueName = \"mp3\" }\nsink = { uri = \"/e\" }\ntypo = 1\n",
            "[[source]]\nname = \"x\"\nrabbitmqResourcesConfig = { queueName = \"mp3\", parallelism = 0 }\nsink = { uri = \"/e\" }\n",
            "[[source]]\nname = \"x\"\nrabbitmqResourcesConfig = { queueName = \"mp3\" }\ndelivery = { backoffDelay = \"200ms\" }\nsink = { uri = \"/e\" }\n",
            "[[source]]\nname = \"x\"\nrabbitmqResourcesConfig = { queueName = \"mp3\" }\nsink = { uri = \"events\" }\n",
        ] {
            std::fs::write(&path, bad).unwrap();
            assert!(EventingFile::load(&path).is_err(), "{bad}");
        }
    }
}
