//! The worker's settings: one typed struct, loaded once at start-up.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use figment::Figment;
use figment::providers::Env;
use ipnet::IpNet;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// Prefix of the environment variables read by [`Config::from_env`]; `__` separates nesting
/// levels, e.g. `MP3CONV_WORKER__QUEUE__KIND=rabbitmq`, `MP3CONV_WORKER__QUEUE__URL=amqp://...`.
pub const ENV_PREFIX: &str = "MP3CONV_WORKER__";

/// All the worker's settings. Every field has a default suited to the embedded mode (local
/// directory, SQLite, in-process queue) except `internal_token`, which must be set.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// What this process does: everything (`all`), only the internal API (`api`), or only
    /// conversions (`converter`, which still serves health and metrics).
    pub role: Role,
    /// Address the internal HTTP API listens on when no listener is injected.
    pub listen: SocketAddr,
    /// Shared secret the gateway presents as `Authorization: Bearer <token>`.
    pub internal_token: Option<SecretString>,
    /// Largest accepted video, in bytes (uploads and links).
    pub max_video_bytes: u64,
    /// How many conversions run at once. The queue prefetch is this plus
    /// `fetch.concurrency`: links download in their own slots.
    pub concurrency: usize,
    /// How long in-flight conversions may run on after shutdown starts before they are abandoned
    /// (their messages are then redelivered).
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// How long a converter's claim on a job (its lease) lasts unless renewed; it is renewed
    /// every third of this while the job converts. Another delivery of a leased job waits;
    /// a converter that dies keeps its jobs this long before another takes them over. One
    /// that cannot renew stops a sixth of this before its lease runs out, which is also the
    /// clock skew between converters that leases tolerate.
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// GridFS files no job owns (and chunks of unfinished uploads) older than this are removed
    /// at start-up; younger ones may be uploads in flight in another replica.
    #[serde(with = "humantime_serde")]
    pub orphan_age: Duration,
    /// An upload held for its options (`POST /internal/jobs?hold=true`) that is not started
    /// within this many seconds is abandoned (the gateway died between its two calls, and the
    /// client never got an answer): an API-serving process removes it and its video.
    pub held_upload_seconds: u64,
    /// Where videos and MP3s are kept.
    pub storage: StorageConfig,
    /// Where jobs are kept.
    pub jobs: JobStoreConfig,
    /// How jobs travel to the converter and results are announced.
    pub queue: QueueConfig,
    /// ffmpeg settings.
    pub convert: ConvertConfig,
    /// Link download settings.
    pub fetch: FetchConfig,
    /// Live job events (`/internal/events`).
    pub events: EventsConfig,
    /// How long videos, MP3s and finished jobs are kept.
    pub retention: RetentionConfig,
    /// Every user's limits, unless an operator set theirs (`mp3conv users limit`).
    pub quota: QuotaConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            role: Role::All,
            listen: SocketAddr::from(([127, 0, 0, 1], 8090)),
            internal_token: None,
            max_video_bytes: 2 * 1024 * 1024 * 1024,
            concurrency: std::thread::available_parallelism().map_or(1, |n| n.get()),
            shutdown_grace: Duration::from_secs(30),
            lease_ttl: Duration::from_secs(30),
            orphan_age: Duration::from_secs(24 * 3600),
            held_upload_seconds: 600,
            storage: StorageConfig::default(),
            jobs: JobStoreConfig::default(),
            queue: QueueConfig::default(),
            convert: ConvertConfig::default(),
            fetch: FetchConfig::default(),
            events: EventsConfig::default(),
            retention: RetentionConfig::default(),
            quota: QuotaConfig::default(),
        }
    }
}

/// What a worker process does. In a cluster the intake API runs always-on while converters
/// scale with the queue, down to zero.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The internal API and the converter.
    #[default]
    All,
    /// The internal API only: intake, status, downloads.
    Api,
    /// The converter only, with health and metrics.
    Converter,
}

impl Role {
    /// Whether this process serves `/internal/...`.
    pub fn serves_api(self) -> bool {
        self != Role::Converter
    }

    /// Whether this process converts.
    pub fn converts(self) -> bool {
        self != Role::Api
    }
}

const DEFAULT_BLOB_DIR: &str = "mp3conv-data/blobs";
const DEFAULT_JOBS_DB: &str = "mp3conv-data/jobs.sqlite";

/// Blob storage backend.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum StorageConfig {
    /// Files in a local directory (embedded mode).
    Local {
        /// Root directory; `videos/` and `mp3s/` are created below it.
        dir: PathBuf,
    },
    /// MongoDB GridFS buckets `videos` and `mp3s`.
    Gridfs {
        /// MongoDB connection string.
        url: SecretString,
        /// Database holding the buckets.
        database: String,
    },
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self::Local {
            dir: PathBuf::from(DEFAULT_BLOB_DIR),
        }
    }
}

/// Job store backend.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum JobStoreConfig {
    /// A SQLite file (embedded mode).
    Sqlite {
        /// Path of the database file; created when missing.
        path: PathBuf,
    },
    /// A `jobs` collection in MongoDB.
    Mongo {
        /// MongoDB connection string.
        url: SecretString,
        /// Database holding the collection.
        database: String,
    },
}

impl Default for JobStoreConfig {
    fn default() -> Self {
        Self::Sqlite {
            path: PathBuf::from(DEFAULT_JOBS_DB),
        }
    }
}

/// Queue backend and retry policy.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueConfig {
    /// Which broker.
    pub kind: QueueKind,
    /// AMQP URL for `rabbitmq`.
    pub url: SecretString,
    /// Prefix of every queue name (`<prefix>video`, `<prefix>mp3`, ...), to share a broker.
    pub prefix: String,
    /// Attempts per job before it is dead-lettered (transient failures only).
    pub max_attempts: u32,
    /// Delay before the second attempt; each later attempt waits twice as long as the last.
    #[serde(with = "humantime_serde")]
    pub retry_delay: Duration,
    /// When set, RabbitMQ deletes the worker's queues after this long without use (`x-expires`):
    /// meant for test brokers, never for production.
    #[serde(with = "humantime_serde")]
    pub expires: Option<Duration>,
    /// The broker's `consumer_timeout` (RabbitMQ's default: 30 min): a delivery unacknowledged
    /// for longer is taken back and the channel closed. Each attempt stops short of it (a
    /// tenth of it, at most a minute, before: [`QueueConfig::delivery_budget`]): a conversion
    /// still running fails as `too_long`, a job still waiting for a slot is requeued. Raise
    /// both together.
    #[serde(with = "humantime_serde")]
    pub broker_consumer_timeout: Duration,
}

impl QueueConfig {
    /// How long one delivery may be worked on: the broker's consumer timeout less a tenth of
    /// it, at most a minute (29 min by default), so that it is settled before the broker takes
    /// it back.
    pub fn delivery_budget(&self) -> Duration {
        let margin = (self.broker_consumer_timeout / 10).min(Duration::from_secs(60));
        self.broker_consumer_timeout.saturating_sub(margin)
    }
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            kind: QueueKind::Memory,
            url: SecretString::from("amqp://guest:guest@127.0.0.1:5672/%2f"),
            prefix: String::new(),
            max_attempts: 3,
            retry_delay: Duration::from_secs(5),
            expires: None,
            broker_consumer_timeout: Duration::from_secs(30 * 60),
        }
    }
}

/// Queue implementation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueKind {
    /// In-process queue (embedded mode): jobs do not survive a restart.
    #[default]
    Memory,
    /// RabbitMQ.
    Rabbitmq,
}

/// ffmpeg settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConvertConfig {
    /// ffmpeg executable.
    pub ffmpeg: PathBuf,
    /// ffprobe executable.
    pub ffprobe: PathBuf,
    /// Directory for the seekable copy of each video and the MP3 being written.
    pub temp_dir: Option<PathBuf>,
    /// Fixed part of the conversion timeout.
    #[serde(with = "humantime_serde")]
    pub timeout_base: Duration,
    /// Seconds of timeout allowed per second of media (at full read speed).
    pub timeout_per_media_second: f64,
    /// Read input at this multiple of real time (ffmpeg `-readrate`), to cap the CPU a
    /// conversion takes; unset means as fast as possible.
    pub read_rate: Option<f64>,
    /// Bytes of address space each ffmpeg and ffprobe run may use, or `unlimited`: a source
    /// built to make ffmpeg allocate without end fails its job instead of taking the
    /// worker's memory. ffmpeg's libraries alone map about 300 MB; an 8K cover pass takes
    /// about 420 MB of memory.
    #[serde(with = "limit")]
    pub max_memory: Option<u64>,
}

impl Default for ConvertConfig {
    fn default() -> Self {
        Self {
            ffmpeg: PathBuf::from("ffmpeg"),
            ffprobe: PathBuf::from("ffprobe"),
            temp_dir: None,
            timeout_base: Duration::from_secs(60),
            timeout_per_media_second: 1.0,
            read_rate: None,
            max_memory: Some(2 * 1024 * 1024 * 1024),
        }
    }
}

/// Link download settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FetchConfig {
    /// TCP connect timeout.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Longest pause between two reads of the response.
    #[serde(with = "humantime_serde")]
    pub read_timeout: Duration,
    /// Networks that links may reach even though they are loopback/private/link-local
    /// (tests allow `127.0.0.1/32`). Empty in production.
    pub allow: Vec<IpNet>,
    /// How many links download at once. Downloads have their own slots, apart from the
    /// `concurrency` conversion slots, so slow links cannot keep uploads from converting.
    pub concurrency: usize,
    /// Longest a whole download may take, from the request to the last byte. Must be below
    /// the delivery budget ([`QueueConfig::delivery_budget`]): a download runs on its
    /// delivery's time.
    #[serde(with = "humantime_serde")]
    pub deadline: Duration,
    /// Slowest acceptable download, in bytes per second, averaged over each `rate_window`; 0
    /// turns the check off (the deadline still applies).
    pub min_rate: u64,
    /// The span `min_rate` is averaged over; the response must also begin within one.
    #[serde(with = "humantime_serde")]
    pub rate_window: Duration,
    /// Links to video pages, resolved with yt-dlp.
    pub pages: PagesConfig,
}

/// Links that answer with a web page: resolved with yt-dlp to the media they show (see
/// [`crate::page`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PagesConfig {
    /// The yt-dlp program: a path, or a name looked up on the worker's `PATH` at start.
    pub ytdlp: PathBuf,
    /// Longest one page's resolution may take (killed then); it also counts against the
    /// download's `deadline`.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Longest media accepted from a page, checked before anything is downloaded when the
    /// site tells the length (`link_too_long`).
    #[serde(with = "humantime_serde")]
    pub max_duration: Duration,
    /// When not empty, links (pages and direct media alike) are accepted only on these sites
    /// (a site covers its subdomains): `["youtube.com", "youtu.be", "vimeo.com"]`.
    pub allow_sites: Vec<String>,
    /// Sites refused, even when `allow_sites` lists them or a parent: the submitted link,
    /// and every host a download or a page's resolution would connect to (redirects, a
    /// page's refreshes and embeds, its media).
    pub deny_sites: Vec<String>,
    /// yt-dlp runs at once, each in up to 512 MiB of address space
    /// ([`crate::page::MAX_ADDRESS_SPACE`]): the worker's memory limit must hold them beside
    /// its conversions. Links wait for one within their download's time.
    pub concurrency: usize,
}

impl Default for PagesConfig {
    fn default() -> Self {
        Self {
            ytdlp: PathBuf::from("yt-dlp"),
            timeout: Duration::from_secs(60),
            max_duration: Duration::from_secs(6 * 3600),
            allow_sites: Vec::new(),
            deny_sites: Vec::new(),
            concurrency: 2,
        }
    }
}

impl Default for FetchConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
            allow: Vec::new(),
            concurrency: 4,
            deadline: Duration::from_secs(20 * 60),
            min_rate: 16 * 1024,
            rate_window: Duration::from_secs(30),
            pages: PagesConfig::default(),
        }
    }
}

/// Live job events: the streams of `/internal/events` and `/internal/jobs/{id}/events`, and
/// what each API process keeps to replay.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventsConfig {
    /// A stream silent this long gets a `: keepalive` comment.
    #[serde(with = "humantime_serde")]
    pub heartbeat: Duration,
    /// Longest a stream stays open; the gateway's `X-Mp3conv-Stream-Until` may end it sooner.
    #[serde(with = "humantime_serde")]
    pub max_stream: Duration,
    /// Events kept per user for `Last-Event-ID` resumes.
    pub replay_events: usize,
    /// How long an event stays resumable.
    #[serde(with = "humantime_serde")]
    pub replay_age: Duration,
    /// At most one conversion-percent event per job this often (status changes and final
    /// states are never held back).
    #[serde(with = "humantime_serde")]
    pub progress_interval: Duration,
    /// Open streams per process; past it a new one gets 503 `too_many_streams`.
    pub max_streams: usize,
    /// Open streams per user per process; past it a new one gets 429 `too_many_streams`.
    pub max_streams_per_user: usize,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_secs(15),
            max_stream: Duration::from_secs(300),
            replay_events: 256,
            replay_age: Duration::from_secs(600),
            progress_interval: Duration::from_millis(250),
            max_streams: 4096,
            max_streams_per_user: 16,
        }
    }
}

/// How long what a job leaves behind is kept. Every API-serving process sweeps what is due
/// every `sweep_interval`; replicas may sweep at once (see [`crate::retention`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// Keep a job's video after its conversion finished (until its MP3 expires, or its failed
    /// record goes). By default the video is deleted as soon as the job is done or failed
    /// for good.
    pub keep_sources: bool,
    /// How long a done job's MP3 (and its tracks) can be downloaded; then the job is
    /// `expired` and its audio answers 410 `audio_expired`.
    #[serde(with = "humantime_serde")]
    pub audio: Duration,
    /// How long a failed job stays listed.
    #[serde(with = "humantime_serde")]
    pub failed: Duration,
    /// How long an expired job stays listed after its MP3 went.
    #[serde(with = "humantime_serde")]
    pub expired: Duration,
    /// How often an API-serving process looks for what is due.
    #[serde(with = "humantime_serde")]
    pub sweep_interval: Duration,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        const DAY: u64 = 24 * 3600;
        Self {
            keep_sources: false,
            audio: Duration::from_secs(7 * DAY),
            failed: Duration::from_secs(7 * DAY),
            expired: Duration::from_secs(30 * DAY),
            sweep_interval: Duration::from_secs(60),
        }
    }
}

/// Every user's limits (see [`crate::quota`]), each a number or `unlimited`. A user's own,
/// set by an operator, come with each request from the gateway and replace these.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct QuotaConfig {
    /// Bytes kept for a user: videos not converted yet (or kept), MP3s and their tracks.
    #[serde(with = "limit")]
    pub storage_bytes: Option<u64>,
    /// Jobs queued, downloading or converting at once.
    #[serde(with = "limit")]
    pub concurrent_jobs: Option<u64>,
    /// Jobs made per `rate_window`.
    #[serde(with = "limit")]
    pub jobs_per_hour: Option<u64>,
    /// Bytes of one video (upload or link); never more than `max_video_bytes`.
    #[serde(with = "limit")]
    pub max_upload_bytes: Option<u64>,
    /// Seconds of one video.
    #[serde(with = "limit")]
    pub max_duration_secs: Option<u64>,
    /// The window `jobs_per_hour` counts in: an hour (tests shorten it).
    #[serde(with = "humantime_serde")]
    pub rate_window: Duration,
}

impl Default for QuotaConfig {
    fn default() -> Self {
        Self {
            storage_bytes: Some(10 * 1024 * 1024 * 1024),
            // Room for a batch of uploads to wait in the queue; a script gone wild stops.
            concurrent_jobs: Some(50),
            jobs_per_hour: Some(100),
            max_upload_bytes: None,
            max_duration_secs: Some(6 * 3600),
            rate_window: Duration::from_secs(3600),
        }
    }
}

impl QuotaConfig {
    /// The defaults as limits.
    pub fn limits(&self) -> mp3conv_contract::quota::Limits {
        mp3conv_contract::quota::Limits {
            storage_bytes: self.storage_bytes,
            concurrent_jobs: self.concurrent_jobs,
            jobs_per_hour: self.jobs_per_hour,
            max_upload_bytes: self.max_upload_bytes,
            max_duration_secs: self.max_duration_secs,
        }
    }
}

/// The least `convert.max_memory` admitted: below it ffmpeg cannot even load.
pub const MIN_CONVERT_MEMORY: u64 = 512 * 1024 * 1024;

/// A limit in the config: a number, or `unlimited` (`None`).
mod limit {
    use serde::{Deserialize, Deserializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Number(u64),
        Text(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<u64>, D::Error> {
        match Raw::deserialize(deserializer)? {
            Raw::Number(n) => Ok(Some(n)),
            Raw::Text(text) if text.trim() == "unlimited" => Ok(None),
            Raw::Text(text) => text.trim().parse().map(Some).map_err(|_| {
                serde::de::Error::custom(format!("`{text}` is not a number or `unlimited`"))
            }),
        }
    }
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The environment could not be parsed into [`Config`].
    #[error("invalid configuration: {0}")]
    Parse(#[from] Box<figment::Error>),
    /// A value is out of range.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// How long an upload may stay held before it counts as abandoned
    /// ([`Config::held_upload_seconds`]).
    pub fn held_upload_age(&self) -> Duration {
        Duration::from_secs(self.held_upload_seconds)
    }

    /// How often abandoned held uploads are looked for: a quarter of their allowed age, at
    /// most a minute, so one is removed at most that much after it was abandoned.
    pub fn held_sweep_interval(&self) -> Duration {
        (self.held_upload_age() / 4).min(Duration::from_secs(60))
    }

    /// Defaults overridden by `MP3CONV_WORKER__...` environment variables, validated.
    pub fn from_env() -> Result<Self, ConfigError> {
        let config = Self::from_env_unchecked()?;
        config.validate()?;
        Ok(config)
    }

    /// Like [`Config::from_env`] but not yet validated, for a caller that fills in the rest
    /// (`mp3conv up` supplies the token and the data directory).
    pub fn from_env_unchecked() -> Result<Self, ConfigError> {
        Ok(Figment::from(Env::prefixed(ENV_PREFIX).split("__"))
            .extract()
            .map_err(Box::new)?)
    }

    /// Moves the embedded defaults' files (blob directory, SQLite jobs) under `data_dir`;
    /// paths that were configured explicitly stay where they are.
    pub fn place_defaults_under(&mut self, data_dir: &std::path::Path) {
        if let StorageConfig::Local { dir } = &mut self.storage
            && dir.as_path() == std::path::Path::new(DEFAULT_BLOB_DIR)
        {
            *dir = data_dir.join("blobs");
        }
        if let JobStoreConfig::Sqlite { path } = &mut self.jobs
            && path.as_path() == std::path::Path::new(DEFAULT_JOBS_DB)
        {
            *path = data_dir.join("jobs.sqlite");
        }
    }

    /// Checks values that types alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: &str| Err(ConfigError::Invalid(m.to_owned()));
        match &self.internal_token {
            Some(token) if token.expose_secret().len() >= 16 => {}
            _ => return invalid("internal_token must be set, at least 16 characters"),
        }
        if self.concurrency == 0 || self.concurrency > u16::MAX as usize {
            return invalid("concurrency must be between 1 and 65535");
        }
        if self.max_video_bytes == 0 {
            return invalid("max_video_bytes must be positive");
        }
        if self.queue.max_attempts == 0 || self.queue.max_attempts > 10 {
            return invalid("queue.max_attempts must be between 1 and 10");
        }
        if self.held_upload_seconds == 0 {
            return invalid("held_upload_seconds must be positive");
        }
        if self.lease_ttl < Duration::from_secs(1) {
            return invalid("lease_ttl must be at least 1s");
        }
        if self.queue.broker_consumer_timeout < Duration::from_secs(1) {
            return invalid("queue.broker_consumer_timeout must be at least 1s");
        }
        if self.fetch.concurrency == 0 || self.fetch.concurrency > 1024 {
            return invalid("fetch.concurrency must be between 1 and 1024");
        }
        if self.fetch.deadline.is_zero() || self.fetch.rate_window.is_zero() {
            return invalid("fetch.deadline and fetch.rate_window must be positive");
        }
        if self.fetch.deadline >= self.queue.delivery_budget() {
            return invalid(
                "fetch.deadline must be below queue.broker_consumer_timeout less its margin \
                 (a tenth, at most 1 min): a download runs on its delivery's time",
            );
        }
        let pages = &self.fetch.pages;
        // Past `fetch.deadline` it does not matter: a resolution runs on the download's time.
        if pages.timeout.is_zero() {
            return invalid("fetch.pages.timeout must be positive");
        }
        if pages.max_duration.is_zero() {
            return invalid("fetch.pages.max_duration must be positive");
        }
        if pages.concurrency == 0 || pages.concurrency > 64 {
            return invalid("fetch.pages.concurrency must be between 1 and 64");
        }
        if let Some(bad) = pages
            .allow_sites
            .iter()
            .chain(&pages.deny_sites)
            .find(|s| crate::fetch::site(s).is_none())
        {
            return Err(ConfigError::Invalid(format!(
                "fetch.pages site {bad:?} is not a host name"
            )));
        }
        let events = &self.events;
        if events.heartbeat.is_zero() || events.max_stream.is_zero() || events.replay_age.is_zero()
        {
            return invalid(
                "events.heartbeat, events.max_stream and events.replay_age must be positive",
            );
        }
        if !(1..=100_000).contains(&events.replay_events) {
            return invalid("events.replay_events must be between 1 and 100000");
        }
        if events.max_streams == 0 || events.max_streams_per_user == 0 {
            return invalid("events.max_streams and events.max_streams_per_user must be positive");
        }
        let retention = &self.retention;
        // A century at most: an expiry must stay a date.
        let century = Duration::from_secs(36_525 * 24 * 3600);
        if [retention.audio, retention.failed, retention.expired]
            .iter()
            .any(|period| period.is_zero() || *period > century)
        {
            return invalid(
                "retention.audio, retention.failed and retention.expired must be between 1s and 100 years",
            );
        }
        if retention.sweep_interval.is_zero() {
            return invalid("retention.sweep_interval must be positive");
        }
        let quota = &self.quota;
        if quota.rate_window.is_zero() || quota.rate_window > century {
            return invalid("quota.rate_window must be between 1s and 100 years");
        }
        let defaults = quota.limits();
        if mp3conv_contract::quota::Limit::ALL
            .into_iter()
            .any(|limit| {
                defaults
                    .get(limit)
                    .is_some_and(|value| value == 0 || value >= mp3conv_contract::quota::UNLIMITED)
            })
        {
            return invalid("each quota must be a positive number (below 2^63) or `unlimited`");
        }
        if self
            .convert
            .max_memory
            .is_some_and(|bytes| bytes < MIN_CONVERT_MEMORY)
        {
            return invalid(&format!(
                "convert.max_memory must be at least {MIN_CONVERT_MEMORY} bytes (ffmpeg's libraries alone map about 300 MB) or `unlimited`"
            ));
        }
        if let Some(rate) = self.convert.read_rate
            && !(rate.is_finite() && rate > 0.0)
        {
            return invalid("convert.read_rate must be a positive number");
        }
        if !(self.convert.timeout_per_media_second.is_finite()
            && self.convert.timeout_per_media_second > 0.0)
        {
            return invalid("convert.timeout_per_media_second must be positive");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_never_prints() {
        let config = Config {
            internal_token: Some(SecretString::from("a-very-secret-token-value")),
            ..Config::default()
        };
        let printed = format!("{config:?}");
        assert!(!printed.contains("a-very-secret"), "{printed}");
    }

    #[test]
    fn lifecycle_defaults() {
        let config = Config::default();
        assert_eq!(config.lease_ttl, Duration::from_secs(30));
        assert_eq!(config.orphan_age, Duration::from_secs(24 * 3600));
        assert_eq!(config.held_upload_seconds, 600);
        assert_eq!(config.held_sweep_interval(), Duration::from_secs(60));
        // RabbitMQ's own default consumer_timeout.
        assert_eq!(
            config.queue.broker_consumer_timeout,
            Duration::from_secs(30 * 60)
        );
    }

    #[test]
    fn link_download_defaults() {
        let fetch = Config::default().fetch;
        assert_eq!(fetch.concurrency, 4);
        assert_eq!(fetch.deadline, Duration::from_secs(20 * 60));
        assert_eq!(fetch.min_rate, 16 * 1024);
        assert_eq!(fetch.rate_window, Duration::from_secs(30));
    }

    #[test]
    fn a_fetch_deadline_past_the_delivery_budget_is_refused() {
        let mut config = Config {
            internal_token: Some(SecretString::from("0123456789abcdef0123")),
            ..Config::default()
        };
        assert_eq!(config.queue.delivery_budget(), Duration::from_secs(29 * 60));
        config.validate().expect("the defaults fit");
        config.fetch.deadline = Duration::from_secs(29 * 60);
        assert!(config.validate().is_err());
        config.fetch.deadline = Duration::from_secs(30 * 60);
        assert!(config.validate().is_err(), "the old default");
        // Raising the broker's timeout makes room for it again.
        config.queue.broker_consumer_timeout = Duration::from_secs(2 * 3600);
        config.validate().expect("fits a 2 h budget");
    }

    #[test]
    fn event_defaults() {
        let events = Config::default().events;
        assert_eq!(events.heartbeat, Duration::from_secs(15));
        assert_eq!(events.max_stream, Duration::from_secs(300));
        assert_eq!(events.replay_events, 256);
        assert_eq!(events.replay_age, Duration::from_secs(600));
        assert_eq!(events.progress_interval, Duration::from_millis(250));
        assert_eq!(events.max_streams, 4096);
        assert_eq!(events.max_streams_per_user, 16);
        let mut config = Config {
            internal_token: Some(SecretString::from("0123456789abcdef0123")),
            ..Config::default()
        };
        config.events.heartbeat = Duration::ZERO;
        assert!(config.validate().is_err());
        config.events.heartbeat = Duration::from_millis(200);
        config.events.max_streams_per_user = 0;
        assert!(config.validate().is_err());
    }

    #[test]
    fn retention_defaults_and_bounds() {
        let mut config = Config {
            internal_token: Some(SecretString::from("0123456789abcdef0123")),
            ..Config::default()
        };
        let retention = &config.retention;
        assert!(!retention.keep_sources);
        assert_eq!(retention.audio, Duration::from_secs(7 * 24 * 3600));
        assert_eq!(retention.failed, Duration::from_secs(7 * 24 * 3600));
        assert_eq!(retention.expired, Duration::from_secs(30 * 24 * 3600));
        assert_eq!(retention.sweep_interval, Duration::from_secs(60));
        config.validate().expect("the defaults fit");
        config.retention.audio = Duration::ZERO;
        assert!(config.validate().is_err());
        config.retention.audio = Duration::from_secs(200 * 365 * 24 * 3600);
        assert!(config.validate().is_err(), "past a century");
        config.retention.audio = Duration::from_secs(1);
        config.retention.sweep_interval = Duration::ZERO;
        assert!(config.validate().is_err());
    }

    #[test]
    fn converters_have_a_memory_limit_by_default() {
        let mut config = Config {
            internal_token: Some(SecretString::from("0123456789abcdef0123")),
            ..Config::default()
        };
        assert_eq!(config.convert.max_memory, Some(2 * 1024 * 1024 * 1024));
        config.validate().expect("the default fits");
        config.convert.max_memory = Some(MIN_CONVERT_MEMORY - 1);
        assert!(config.validate().is_err(), "ffmpeg could not load");
        config.convert.max_memory = None;
        config.validate().expect("unlimited is allowed");
    }

    #[test]
    fn held_uploads_need_a_positive_age() {
        let mut config = Config {
            internal_token: Some(SecretString::from("0123456789abcdef0123")),
            held_upload_seconds: 2,
            ..Config::default()
        };
        config.validate().expect("2 s is allowed");
        assert_eq!(config.held_sweep_interval(), Duration::from_millis(500));
        config.held_upload_seconds = 0;
        assert!(config.validate().is_err());
    }

    #[test]
    fn a_short_token_is_refused() {
        let config = Config {
            internal_token: Some(SecretString::from("short")),
            ..Config::default()
        };
        assert!(config.validate().is_err());
        assert!(Config::default().validate().is_err());
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API fixes the closure's error type
    fn nested_environment_variables_are_read() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("MP3CONV_WORKER__INTERNAL_TOKEN", "0123456789abcdef0123");
            jail.set_env("MP3CONV_WORKER__QUEUE__KIND", "rabbitmq");
            jail.set_env("MP3CONV_WORKER__QUEUE__RETRY_DELAY", "250ms");
            jail.set_env("MP3CONV_WORKER__STORAGE__KIND", "gridfs");
            jail.set_env("MP3CONV_WORKER__STORAGE__URL", "mongodb://127.0.0.1:27217");
            jail.set_env("MP3CONV_WORKER__STORAGE__DATABASE", "mp3conv");
            jail.set_env("MP3CONV_WORKER__FETCH__ALLOW", "[127.0.0.1/32]");
            jail.set_env("MP3CONV_WORKER__HELD_UPLOAD_SECONDS", "90");
            jail.set_env("MP3CONV_WORKER__FETCH__PAGES__MAX_DURATION", "2h");
            jail.set_env("MP3CONV_WORKER__FETCH__PAGES__DENY_SITES", "[bad.example]");
            jail.set_env("MP3CONV_WORKER__RETENTION__AUDIO", "24h");
            jail.set_env("MP3CONV_WORKER__RETENTION__KEEP_SOURCES", "true");
            jail.set_env("MP3CONV_WORKER__QUOTA__JOBS_PER_HOUR", "30");
            jail.set_env("MP3CONV_WORKER__QUOTA__STORAGE_BYTES", "unlimited");
            jail.set_env("MP3CONV_WORKER__CONVERT__MAX_MEMORY", "unlimited");
            let config = Config::from_env().expect("valid config");
            assert_eq!(config.convert.max_memory, None);
            assert_eq!(config.quota.jobs_per_hour, Some(30));
            assert_eq!(config.quota.storage_bytes, None);
            assert_eq!(config.quota.concurrent_jobs, Some(50));
            assert_eq!(config.retention.audio, Duration::from_secs(24 * 3600));
            assert!(config.retention.keep_sources);
            assert_eq!(config.fetch.pages.max_duration, Duration::from_secs(7200));
            assert_eq!(config.fetch.pages.deny_sites, ["bad.example"]);
            assert_eq!(config.held_upload_seconds, 90);
            assert_eq!(config.queue.kind, QueueKind::Rabbitmq);
            assert_eq!(config.queue.retry_delay, Duration::from_millis(250));
            assert!(
                matches!(config.storage, StorageConfig::Gridfs { ref database, .. } if database == "mp3conv")
            );
            assert_eq!(
                config.fetch.allow,
                vec!["127.0.0.1/32".parse::<IpNet>().unwrap()]
            );
            Ok(())
        });
    }
}
