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
//!
//! Each event goes on in the trace its message carries (the AMQP `traceparent` header) as the
//! HTTP `traceparent` header, as the CloudEvents distributed-tracing extension says for HTTP;
//! a message without one starts a trace. Log lines about an event carry its `trace_id`.
//!
//! Kept crates do the standard parts: `cloudevents-sdk` the event and its binary-mode headers
//! (its own reqwest binding is built on reqwest 0.12, so the headers it writes into an
//! `http::Request` are handed to this build's reqwest), `iso8601` the durations, `backon` the
//! retry loop.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use backon::Retryable as _;
use cloudevents::EventBuilder as _;
use cloudevents::message::BinaryDeserializer as _;
use futures::StreamExt as _;
use mp3conv_contract::trace::TraceParent;
use serde::Deserialize;
use tracing::Instrument as _;

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

    /// The waits before each of the `delivery.retry` retries, as the source computes them:
    /// before retry `n` (1-based), `delay × 2^n` (exponential) or `delay × n` (linear).
    pub fn schedule(&self) -> impl Iterator<Item = Duration> + Send + Sync + Unpin + use<> {
        let delay = parse_iso8601(&self.delivery.backoff_delay).unwrap_or_default();
        let policy = self.delivery.backoff_policy;
        (1..=self.delivery.retry).map(move |n| policy.wait(delay, n))
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

impl BackoffPolicy {
    /// The wait before retry `n` (1-based) for a `backoffDelay` of `delay`: `delay × 2^n`
    /// (exponential) or `delay × n` (linear).
    fn wait(self, delay: Duration, n: u32) -> Duration {
        match self {
            BackoffPolicy::Exponential => delay.saturating_mul(1 << n.min(20)),
            BackoffPolicy::Linear => delay.saturating_mul(n),
        }
    }
}

/// An ISO 8601 duration of weeks, days, hours, minutes and seconds (to the millisecond):
/// `PT0.2S`, `PT1M30S`, `P1DT2H`, `P1W`. Years and months are refused: their length varies.
pub fn parse_iso8601(text: &str) -> Option<Duration> {
    // The crate's own `duration()` ignores what follows a valid start (`PT1S1M`), and takes a
    // `T` with no time after it (`PT`, `P1DT`): both are refused here.
    let (rest, duration) = iso8601::parsers::parse_duration(text.as_bytes()).ok()?;
    if !rest.is_empty() || text.ends_with('T') {
        return None;
    }
    match duration {
        iso8601::Duration::YMDHMS {
            year: 0, month: 0, ..
        }
        | iso8601::Duration::Weeks(_) => Some(duration.into()),
        iso8601::Duration::YMDHMS { .. } => None,
    }
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

/// Delivers one message to `sink` as a binary-mode CloudEvent, retrying as the spec says,
/// and logs the outcome with the event's id and trace id.
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
    let trace = TraceParent::continue_or_start(message.traceparent.as_deref(), random());
    let span = tracing::info_span!("event", event_id = %id, trace_id = %trace.trace_id());
    async {
        let verdict = match event_request(spec, message, &id) {
            Ok(event) => send_with_retries(client, spec, sink, &event, &trace).await,
            // Nothing the sink could accept: a message that cannot be an event.
            Err(reason) => Verdict::DeadLetter {
                attempts: 0,
                reason,
            },
        };
        match &verdict {
            Verdict::Delivered { attempts } => tracing::info!(attempts, "event delivered"),
            Verdict::DeadLetter { attempts, reason } => {
                tracing::warn!(attempts, %reason, "event dead-lettered")
            }
        }
        verdict
    }
    .instrument(span)
    .await
}

/// The CloudEvent the source makes of a message, as binary-mode HTTP headers and body.
fn event_request(
    spec: &SourceSpec,
    message: &Message,
    id: &str,
) -> Result<http::Request<Option<Vec<u8>>>, String> {
    let mut builder = cloudevents::EventBuilderV10::new()
        .id(id)
        .source(spec.event_source())
        .ty(EVENT_TYPE)
        .subject(id);
    if let Some(time) = message.timestamp.and_then(rfc3339) {
        builder = builder.time(time);
    }
    let mut event = builder
        .build()
        .map_err(|err| format!("not a CloudEvent: {err}"))?;
    match message.content_type.as_deref().map(str::trim) {
        Some(content_type) => {
            event.set_data(content_type, message.body.clone());
        }
        None => {
            event.set_data_unchecked(message.body.clone());
        }
    }
    event
        .deserialize_binary(http::Request::builder())
        .map_err(|err| format!("not a CloudEvent: {err}"))
}

/// Why one attempt did not deliver.
enum Failure {
    /// The sink may take it later (5xx, 404, 408, 413, 425, 429, unreachable).
    Retry(String),
    /// The sink refused it for good.
    Refused(String),
}

async fn send_with_retries(
    client: &reqwest::Client,
    spec: &SourceSpec,
    sink: &Target,
    event: &http::Request<Option<Vec<u8>>>,
    trace: &TraceParent,
) -> Verdict {
    let attempts = AtomicU32::new(0);
    let attempt = || {
        attempts.fetch_add(1, Ordering::Relaxed);
        send(client, spec, sink, event, trace)
    };
    let sent = attempt
        .retry(spec.schedule())
        .sleep(tokio::time::sleep)
        .when(|failure| matches!(failure, Failure::Retry(_)))
        .notify(|failure, wait| {
            if let Failure::Retry(reason) = failure {
                tracing::debug!(%reason, wait_ms = wait.as_millis() as u64, "event not delivered; retrying");
            }
        })
        .await;
    let attempts = attempts.load(Ordering::Relaxed);
    match sent {
        Ok(()) => Verdict::Delivered { attempts },
        Err(Failure::Retry(reason) | Failure::Refused(reason)) => {
            Verdict::DeadLetter { attempts, reason }
        }
    }
}

/// One POST of the event to the sink.
async fn send(
    client: &reqwest::Client,
    spec: &SourceSpec,
    sink: &Target,
    event: &http::Request<Option<Vec<u8>>>,
    trace: &TraceParent,
) -> Result<(), Failure> {
    let request = client
        .post(&sink.url)
        .timeout(SINK_TIMEOUT)
        .headers(event.headers().clone())
        .bearer_auth(&sink.token)
        .header("kn-namespace", &spec.namespace)
        .header(mp3conv_contract::trace::TRACEPARENT, trace.to_string())
        .body(event.body().clone().unwrap_or_default());
    match request.send().await {
        Ok(response) if response.status().is_success() => Ok(()),
        Ok(response) if retryable(response.status().as_u16()) => Err(Failure::Retry(format!(
            "the sink answered {}",
            response.status()
        ))),
        Ok(response) => Err(Failure::Refused(format!(
            "the sink refused it: {}",
            response.status()
        ))),
        Err(err) => Err(Failure::Retry(format!("the sink is unreachable: {err}"))),
    }
}

fn rfc3339(unix_seconds: u64) -> Option<String> {
    let time = time::OffsetDateTime::from_unix_timestamp(i64::try_from(unix_seconds).ok()?).ok()?;
    time.format(&time::format_description::well_known::Rfc3339)
        .ok()
}

/// Random bytes for the span ids of the bridge (and for a trace it has to start). The OS
/// source does not fail on a running system; if it did, ids would repeat rather than events
/// stop.
fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0; N];
    if let Err(err) = getrandom::fill(&mut bytes) {
        tracing::warn!("no random bytes for a trace id: {err}");
    }
    bytes
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
            deliver(client, spec, sink, &message).await;
        })
        .await;
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

    #[test]
    fn iso8601_weeks_are_fixed_but_years_and_months_are_not() {
        assert_eq!(parse_iso8601("P1W"), Some(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_iso8601("PT90S"), Some(Duration::from_secs(90)));
        assert_eq!(
            parse_iso8601("PT1H2M3.004S"),
            Some(Duration::from_millis(3_723_004))
        );
        for calendar in ["P1Y", "P1M", "P1Y2DT3H", "P1DT", "PT1H "] {
            assert_eq!(parse_iso8601(calendar), None, "{calendar}");
        }
    }

    #[test]
    fn a_message_becomes_a_binary_mode_cloudevent() {
        let spec = spec("exponential");
        let message = Message {
            message_id: Some("job-1.done".into()),
            timestamp: Some(1_700_000_000),
            content_type: Some(" application/json ".into()),
            traceparent: None,
            body: b"{\"job_id\":\"job-1\"}".to_vec(),
        };
        let request = event_request(&spec, &message, "job-1.done").unwrap();
        let header = |name: &str| request.headers()[name].to_str().unwrap().to_owned();
        assert_eq!(header("ce-specversion"), "1.0");
        assert_eq!(header("ce-id"), "job-1.done");
        assert_eq!(header("ce-subject"), "job-1.done");
        assert_eq!(header("ce-type"), EVENT_TYPE);
        assert_eq!(
            header("ce-source"),
            "/apis/v1/namespaces/mp3conv/rabbitmqsources/mp3-notifier#mp3"
        );
        let time = time::OffsetDateTime::parse(
            &header("ce-time"),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        assert_eq!(time.unix_timestamp(), 1_700_000_000);
        assert_eq!(header("content-type"), "application/json");
        assert_eq!(
            request.body().as_deref(),
            Some(&b"{\"job_id\":\"job-1\"}"[..])
        );
        // No timestamp, no content type: neither header.
        let bare = Message {
            timestamp: None,
            content_type: None,
            ..message
        };
        let request = event_request(&spec, &bare, "x").unwrap();
        assert!(request.headers().get("ce-time").is_none());
        assert!(request.headers().get("content-type").is_none());
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
        let ms = |waits: Vec<Duration>| waits.iter().map(Duration::as_millis).collect::<Vec<_>>();
        let exponential = spec("exponential");
        assert_eq!(ms(exponential.schedule().collect()), [200, 400, 800]);
        let linear = spec("linear");
        assert_eq!(ms(linear.schedule().collect()), [100, 200, 300]);
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
