//! Prometheus metrics, served at `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Label of a job state.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    /// `queued`, `done`, `failed`...
    pub status: String,
}

/// Label of what the retention removed.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// `video`, `mp3` or `job`.
    pub kind: &'static str,
}

/// Label of a quota.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabel {
    /// `storage_bytes`, `concurrent_jobs`, `jobs_per_hour`, `max_upload_bytes` or
    /// `max_duration_secs`.
    pub limit: &'static str,
}

/// Label of a stage of a conversion.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabel {
    /// `read_video` (copying it out of a store that keeps no files), `convert` (ffprobe and
    /// ffmpeg, from the start of the copy: a conversion that starts early overlaps it) or
    /// `store_audio` (the MP3 and its tracks).
    pub stage: &'static str,
}

/// Label of what became of a conversion that started before its video was all copied.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    /// `kept`, or `redone` on the whole file.
    pub outcome: &'static str,
}

/// Label of how a whole MP3 went into storage.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WayLabel {
    /// `while_written` (as ffmpeg wrote it), or `after` (once finished).
    pub way: &'static str,
}

/// Where a conversion's time goes, by stage (one family, `mp3conv_worker_stage_seconds`).
#[derive(Debug, Clone)]
pub struct Stages {
    pub read_video: Histogram,
    pub convert: Histogram,
    pub store_audio: Histogram,
}

type StageFamily = Family<StageLabel, Histogram, fn() -> Histogram>;

impl Stages {
    fn registered(family: &StageFamily) -> Self {
        let stage = |stage| family.get_or_create(&StageLabel { stage }).clone();
        Self {
            read_video: stage("read_video"),
            convert: stage("convert"),
            store_audio: stage("store_audio"),
        }
    }
}

/// What retention removed, by kind (one family, `mp3conv_worker_retention_removed_total`).
#[derive(Debug, Clone, Default)]
pub struct Removed {
    /// Videos removed once their conversion finished, or with their MP3 when kept.
    pub videos: Counter,
    /// Expired MP3s: whole files and tracks.
    pub mp3s: Counter,
    /// Finished jobs' records removed when due.
    pub jobs: Counter,
}

impl Removed {
    fn registered(family: &Family<KindLabel, Counter>) -> Self {
        let kind = |kind| family.get_or_create(&KindLabel { kind }).clone();
        Self {
            videos: kind("video"),
            mp3s: kind("mp3"),
            jobs: kind("job"),
        }
    }
}

/// The worker's metrics.
pub struct Metrics {
    registry: Registry,
    /// Jobs that entered each state.
    pub jobs: Family<StatusLabel, Counter>,
    /// Seconds a conversion took: ffprobe and ffmpeg, from the start of the video's copy out of
    /// storage (which an early start overlaps).
    pub conversion_seconds: Histogram,
    /// Seconds from a job's creation to its first attempt's start.
    pub queue_wait_seconds: Histogram,
    /// Seconds of each stage of a conversion.
    pub stages: Stages,
    /// Video bytes received (uploads and links).
    pub bytes_in: Counter,
    /// MP3 bytes written.
    pub bytes_out: Counter,
    /// Attempts scheduled for a retry.
    pub retries: Counter,
    /// Messages sent to the dead-letter queue.
    pub dead_lettered: Counter,
    /// Conversions started: one each, however many ffmpeg processes it runs (the name is
    /// kept for the dashboards that chart it).
    pub ffmpeg_runs: Counter,
    /// Conversions started before their video was all copied out of storage, by outcome.
    pub early_starts: Family<OutcomeLabel, Counter>,
    /// Whole MP3s stored, by way (see `stored`).
    pub mp3_stores: Family<WayLabel, Counter>,
    /// Deliveries put off because another converter holds the job's lease.
    pub deferred: Counter,
    /// Deliveries of a job already finished and announced (acknowledged, nothing else).
    pub duplicates: Counter,
    /// GridFS start-up sweeps that ran to the end (they run in the background).
    pub gridfs_sweeps: Counter,
    /// GridFS files (and unfinished uploads) the start-up sweeps removed.
    pub gridfs_orphans_removed: Counter,
    /// Held uploads never started, removed as abandoned (with their videos).
    pub held_uploads_removed: Counter,
    /// Links that were video pages, each resolved by one yt-dlp run.
    pub page_resolutions: Counter,
    /// What retention removed.
    pub removed: Removed,
    /// Requests and jobs refused by a user's quota, by limit.
    pub quota_refusals: Family<LimitLabel, Counter>,
    /// Bytes kept for all jobs, by kind (`video`, `mp3`), as of the last retention sweep.
    pub stored_bytes: Family<KindLabel, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("mp3conv_worker");
        let jobs = Family::<StatusLabel, Counter>::default();
        let conversion_seconds = Histogram::new(exponential_buckets(0.25, 2.0, 14));
        // 50 ms to about 3.6 hours.
        let queue_wait_seconds = Histogram::new(exponential_buckets(0.05, 2.0, 19));
        let bytes_in = Counter::default();
        let bytes_out = Counter::default();
        let retries = Counter::default();
        let dead_lettered = Counter::default();
        let ffmpeg_runs = Counter::default();
        let deferred = Counter::default();
        let duplicates = Counter::default();
        let gridfs_sweeps = Counter::default();
        let gridfs_orphans_removed = Counter::default();
        let held_uploads_removed = Counter::default();
        let page_resolutions = Counter::default();
        // 10 ms to about 45 minutes.
        let stage_family: StageFamily =
            Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.01, 2.0, 19)));
        let stages = Stages::registered(&stage_family);
        registry.register(
            "stage_seconds",
            "Seconds of each stage of a conversion (read_video, convert, store_audio)",
            stage_family,
        );
        let early_starts = Family::<OutcomeLabel, Counter>::default();
        // Both from the start, so that a rate is 0 rather than absent.
        for outcome in ["kept", "redone"] {
            let _ = early_starts.get_or_create(&OutcomeLabel { outcome });
        }
        registry.register(
            "early_starts",
            "Conversions started while their video was still being copied out of storage, by \
             outcome (kept, or redone on the whole file)",
            early_starts.clone(),
        );
        let mp3_stores = Family::<WayLabel, Counter>::default();
        for way in ["while_written", "after"] {
            let _ = mp3_stores.get_or_create(&WayLabel { way });
        }
        registry.register(
            "mp3_stores",
            "Whole MP3s stored, by way: while ffmpeg wrote them, or after (when they could not \
             be laid out in time, or what was stored meanwhile was not the finished file)",
            mp3_stores.clone(),
        );
        let removed_family = Family::<KindLabel, Counter>::default();
        let removed = Removed::registered(&removed_family);
        registry.register(
            "retention_removed",
            "Files and job records removed by retention, by kind (video, mp3, job)",
            removed_family,
        );
        let quota_refusals = Family::<LimitLabel, Counter>::default();
        // Each limit from the start, so that a rate of refusals is 0 rather than absent.
        for limit in mp3conv_contract::quota::Limit::ALL {
            let _ = quota_refusals.get_or_create(&LimitLabel {
                limit: limit.as_str(),
            });
        }
        registry.register(
            "quota_refusals",
            "Requests and jobs refused by a user's quota, by limit",
            quota_refusals.clone(),
        );
        let stored_bytes = Family::<KindLabel, Gauge>::default();
        registry.register(
            "stored_bytes",
            "Bytes kept for all jobs by kind (video, mp3: MP3s and tracks), as of the last retention sweep",
            stored_bytes.clone(),
        );
        registry.register("jobs", "Jobs that entered each state", jobs.clone());
        registry.register(
            "conversion_seconds",
            "Seconds a conversion took: ffprobe and ffmpeg, from the start of the video's copy out of storage (which an early start overlaps)",
            conversion_seconds.clone(),
        );
        registry.register(
            "queue_wait_seconds",
            "Seconds from a job's creation to a converter taking it up",
            queue_wait_seconds.clone(),
        );
        registry.register("video_bytes", "Video bytes received", bytes_in.clone());
        registry.register("mp3_bytes", "MP3 bytes written", bytes_out.clone());
        registry.register(
            "retries",
            "Conversion attempts scheduled for retry",
            retries.clone(),
        );
        registry.register(
            "dead_lettered",
            "Messages sent to the dead-letter queue",
            dead_lettered.clone(),
        );
        registry.register(
            "ffmpeg_runs",
            "Conversions started (one each, however many ffmpeg processes it runs)",
            ffmpeg_runs.clone(),
        );
        registry.register(
            "deferred_deliveries",
            "Deliveries put off because another converter holds the job",
            deferred.clone(),
        );
        registry.register(
            "duplicate_deliveries",
            "Deliveries of a job already finished and announced",
            duplicates.clone(),
        );
        registry.register(
            "gridfs_sweeps",
            "GridFS start-up sweeps that ran to the end",
            gridfs_sweeps.clone(),
        );
        registry.register(
            "gridfs_orphans_removed",
            "GridFS files and unfinished uploads removed by start-up sweeps",
            gridfs_orphans_removed.clone(),
        );
        registry.register(
            "held_uploads_removed",
            "Held uploads never started, removed as abandoned with their videos",
            held_uploads_removed.clone(),
        );
        registry.register(
            "page_resolutions",
            "Links that were video pages, each resolved by one yt-dlp run",
            page_resolutions.clone(),
        );
        Self {
            registry,
            jobs,
            conversion_seconds,
            queue_wait_seconds,
            stages,
            bytes_in,
            bytes_out,
            retries,
            dead_lettered,
            ffmpeg_runs,
            early_starts,
            mp3_stores,
            deferred,
            duplicates,
            gridfs_sweeps,
            gridfs_orphans_removed,
            held_uploads_removed,
            page_resolutions,
            removed,
            quota_refusals,
            stored_bytes,
        }
    }
}

impl Metrics {
    /// Counts a job entering `status`.
    pub fn job(&self, status: crate::job::Status) {
        self.jobs
            .get_or_create(&StatusLabel {
                status: status.as_str().to_owned(),
            })
            .inc();
    }

    /// Sets the bytes kept: of videos, and in all.
    pub fn stored(&self, videos: u64, all: u64) {
        let set = |kind, bytes: u64| {
            self.stored_bytes
                .get_or_create(&KindLabel { kind })
                .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        };
        set("video", videos);
        set("mp3", all.saturating_sub(videos));
    }

    /// Counts a refusal by `limit`.
    pub fn refused(&self, limit: mp3conv_contract::quota::Limit) {
        self.quota_refusals
            .get_or_create(&LimitLabel {
                limit: limit.as_str(),
            })
            .inc();
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}
