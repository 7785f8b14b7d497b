//! The job: one video on its way to becoming an MP3.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A job id: a UUID v7, so ids sort by creation time (newest first = descending id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(Uuid);

impl JobId {
    /// A fresh id, later than every id made before it in this process.
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
}

impl Default for JobId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl FromStr for JobId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self)
    }
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Waiting for a converter.
    Queued,
    /// Its link is being downloaded.
    Downloading,
    /// ffmpeg is running.
    Converting,
    /// The MP3 is stored.
    Done,
    /// It will not produce an MP3; see `error`.
    Failed,
}

impl Status {
    /// The lower-case name used in JSON and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Downloading => "downloading",
            Self::Converting => "converting",
            Self::Done => "done",
            Self::Failed => "failed",
        }
    }

    /// Done or failed: nothing more will happen.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Done | Self::Failed)
    }
}

/// Where the video came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Source {
    /// Uploaded in the request body.
    Upload {
        /// Original file name, used for the ID3 title.
        filename: String,
        /// Content type the client declared.
        content_type: Option<String>,
    },
    /// Downloaded from a link.
    Link {
        /// The link as submitted.
        url: String,
    },
}

impl Source {
    /// Title for the MP3's ID3 tag: the file name without its extension.
    pub fn title(&self) -> String {
        let name = match self {
            Self::Upload { filename, .. } => filename.as_str(),
            Self::Link { url } => url
                .rsplit('/')
                .find(|segment| !segment.is_empty())
                .unwrap_or(url),
        };
        let stem = match name.rsplit_once('.') {
            Some((stem, _)) if !stem.is_empty() => stem,
            _ => name,
        };
        stem.chars().filter(|c| !c.is_control()).take(200).collect()
    }
}

/// Requested MP3 quality: `128`, `192`, `256` or `320` (kbit/s, constant) or `v0`..`v9`
/// (LAME variable-bitrate quality, 0 best).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bitrate {
    /// Constant bitrate in kbit/s.
    Constant(u16),
    /// LAME VBR quality 0..=9.
    Variable(u8),
}

impl Default for Bitrate {
    fn default() -> Self {
        Self::Constant(192)
    }
}

impl Bitrate {
    /// ffmpeg arguments selecting this quality.
    pub fn ffmpeg_args(self) -> [String; 2] {
        match self {
            Self::Constant(kbps) => ["-b:a".into(), format!("{kbps}k")],
            Self::Variable(q) => ["-q:a".into(), q.to_string()],
        }
    }
}

impl fmt::Display for Bitrate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Constant(kbps) => write!(f, "{kbps}"),
            Self::Variable(q) => write!(f, "v{q}"),
        }
    }
}

/// A bitrate string that is not one of the accepted values.
#[derive(Debug, thiserror::Error)]
#[error("bitrate must be 128, 192, 256, 320 or v0..v9")]
pub struct InvalidBitrate;

impl FromStr for Bitrate {
    type Err = InvalidBitrate;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "128" => Ok(Self::Constant(128)),
            "192" => Ok(Self::Constant(192)),
            "256" => Ok(Self::Constant(256)),
            "320" => Ok(Self::Constant(320)),
            _ => match s.strip_prefix(['v', 'V']).map(str::parse::<u8>) {
                Some(Ok(q)) if q <= 9 && s.len() == 2 => Ok(Self::Variable(q)),
                _ => Err(InvalidBitrate),
            },
        }
    }
}

impl Serialize for Bitrate {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Bitrate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The finished MP3.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Audio {
    /// Blob id in the MP3 store.
    pub id: String,
    /// Size in bytes.
    pub size: u64,
    /// Duration in seconds, as ffprobe measured it.
    pub duration: f64,
    /// Quality it was encoded at.
    pub bitrate: Bitrate,
}

/// Why a job failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobError {
    /// Stable machine-readable code, e.g. `no_audio`, `not_media`, `link_not_found`.
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
}

/// One video on its way to becoming an MP3.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// Its id.
    pub id: JobId,
    /// User id of the owner (from the gateway's verified token).
    pub owner: String,
    /// Where it is.
    pub status: Status,
    /// Conversion progress, 0-100.
    pub progress: u8,
    /// Where the video came from.
    pub source: Source,
    /// Requested quality.
    pub bitrate: Bitrate,
    /// Blob id of the video in the video store (assigned up front; a link's video lands there
    /// once downloaded).
    pub video_id: String,
    /// The MP3, once done.
    pub audio: Option<Audio>,
    /// The reason, once failed.
    pub error: Option<JobError>,
    /// Conversion attempts started so far.
    pub attempts: u32,
    /// Whether the final state was announced on the `mp3` queue.
    pub announced: bool,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

impl Job {
    /// A new queued job. The video and MP3 blobs are named after the job, which keeps every
    /// step idempotent: a redelivered job overwrites, never duplicates.
    pub fn new(owner: String, source: Source, bitrate: Bitrate) -> Self {
        let id = JobId::new();
        let now = Utc::now();
        Self {
            id,
            owner,
            status: Status::Queued,
            progress: 0,
            source,
            bitrate,
            video_id: id.to_string(),
            audio: None,
            error: None,
            attempts: 0,
            announced: false,
            created_at: now,
            updated_at: now,
        }
    }

    /// Marks the job failed with a reason.
    pub fn fail(&mut self, code: &str, message: impl Into<String>) {
        self.status = Status::Failed;
        self.error = Some(JobError {
            code: code.to_owned(),
            message: message.into(),
        });
        self.touch();
    }

    /// Moves the job to `status`.
    pub fn set_status(&mut self, status: Status) {
        self.status = status;
        self.touch();
    }

    fn touch(&mut self) {
        self.updated_at = Utc::now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitrates_parse_and_print_back() {
        for ok in ["128", "192", "256", "320", "v0", "v9"] {
            assert_eq!(ok.parse::<Bitrate>().unwrap().to_string(), ok);
        }
        assert_eq!("V2".parse::<Bitrate>().unwrap(), Bitrate::Variable(2));
        for bad in ["", "64", "v", "v10", "v-1", "192k", "vv", "1e3"] {
            assert!(bad.parse::<Bitrate>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn ids_sort_by_creation() {
        let ids: Vec<JobId> = (0..100).map(|_| JobId::new()).collect();
        let mut as_strings: Vec<String> = ids.iter().map(JobId::to_string).collect();
        as_strings.sort();
        assert_eq!(
            as_strings,
            ids.iter().map(JobId::to_string).collect::<Vec<_>>()
        );
    }

    #[test]
    fn titles_drop_the_extension() {
        let upload = Source::Upload {
            filename: "My holiday.final.mp4".into(),
            content_type: None,
        };
        assert_eq!(upload.title(), "My holiday.final");
        let link = Source::Link {
            url: "http://example.com/media/clip.webm".into(),
        };
        assert_eq!(link.title(), "clip");
    }
}
