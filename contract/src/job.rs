//! The job: one video on its way to becoming an MP3, as the worker stores and serves it
//! ([`Job`]) and as users see it ([`PublicJob`]).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::http::{file_name, track_stem};
use crate::options::{BadJson, Options, json_object};

/// Default page size of job listings.
pub const DEFAULT_PAGE: u32 = 20;
/// Largest page size of job listings.
pub const MAX_PAGE: u32 = 100;

/// A job id: a UUID v7, so ids sort by creation time (newest first = descending id). Written
/// hyphenated and lower-case; read in any case.
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

/// Text that is not a job id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidJobId;

impl fmt::Display for InvalidJobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a job id is a hyphenated UUID")
    }
}

impl std::error::Error for InvalidJobId {}

impl FromStr for JobId {
    type Err = InvalidJobId;

    /// Only the hyphenated form the worker writes: braces, `urn:uuid:` and the simple form
    /// name no job.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 36 {
            return Err(InvalidJobId);
        }
        Uuid::try_parse(s).map(Self).map_err(|_| InvalidJobId)
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
    /// Its MP3 was done and has expired: the files are gone, the record stays listed until
    /// `expires_at`.
    Expired,
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
            Self::Expired => "expired",
        }
    }

    /// Done, failed or expired: no conversion will happen.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Done | Self::Failed | Self::Expired)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the video came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
        /// What the link's web page was resolved to, when it was a page rather than media
        /// (recorded before its media is downloaded).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        page: Option<VideoPage>,
    },
}

/// A video page as its resolver (yt-dlp) read it. Every field is as the site gave it, within
/// [`VideoPage::MAX_TEXT_CHARS`] and without control characters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VideoPage {
    /// The video's title on the page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Who published it (uploader, channel or artist), where the site says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uploader: Option<String>,
    /// Its length in seconds, where the site says (a plain `<video>` tag does not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<f64>,
    /// Its image on the page (an http(s) URL), the MP3's cover unless the media has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbnail: Option<String>,
}

impl VideoPage {
    /// Longest title or uploader kept.
    pub const MAX_TEXT_CHARS: usize = 200;

    /// `text` without control characters or surrounding space, cut to
    /// [`VideoPage::MAX_TEXT_CHARS`], without invisible characters ([`crate::http::is_hidden`]);
    /// nothing when that leaves nothing.
    pub fn text(text: &str) -> Option<String> {
        // Neither controls nor the invisible characters that reorder or hide text.
        let kept: String = text
            .chars()
            .filter(|c| !c.is_control() && !crate::http::is_hidden(*c))
            .take(Self::MAX_TEXT_CHARS)
            .collect();
        let kept = kept.trim();
        (!kept.is_empty()).then(|| kept.to_owned())
    }
}

impl Source {
    /// A link not resolved yet.
    pub fn link(url: impl Into<String>) -> Self {
        Self::Link {
            url: url.into(),
            page: None,
        }
    }

    /// What its page said, for a link that was a video page.
    pub fn page(&self) -> Option<&VideoPage> {
        match self {
            Self::Link { page, .. } => page.as_ref(),
            Self::Upload { .. } => None,
        }
    }

    /// The title its page gave, for a link that was a video page.
    pub fn page_title(&self) -> Option<&str> {
        self.page().and_then(|p| p.title.as_deref())
    }

    /// The name the source goes by: the file's name, the page's title, or the link's last
    /// path segment.
    pub fn name(&self) -> &str {
        if let Some(title) = self.page_title() {
            return title;
        }
        match self {
            Self::Upload { filename, .. } => filename,
            Self::Link { url, .. } => {
                let path = url.split(['?', '#']).next().unwrap_or(url);
                path.rsplit('/').find(|s| !s.is_empty()).unwrap_or(path)
            }
        }
    }

    /// Title for the MP3's ID3 tag and its download name: the page's title, else
    /// [`Source::name`] without its extension; without control characters, at most 200
    /// characters.
    pub fn title(&self) -> String {
        let name = self.name();
        let stem = match name.rsplit_once('.') {
            Some((stem, _)) if !stem.is_empty() && self.page_title().is_none() => stem,
            _ => name,
        };
        stem.chars().filter(|c| !c.is_control()).take(200).collect()
    }
}

/// What of a done job is downloaded: its MP3, one chapter's, or all chapters' in a ZIP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Download {
    /// The job's MP3.
    Audio,
    /// Chapter `n`'s MP3 (1-based) of a job split by chapters.
    Track(u32),
    /// Every chapter's MP3 in one ZIP.
    Tracks,
}

impl Download {
    /// The worker's path of this download of job `id`.
    pub fn worker_path(self, id: JobId) -> String {
        match self {
            Download::Audio => format!("/internal/jobs/{id}/audio"),
            Download::Track(n) => format!("/internal/jobs/{id}/tracks/{n}"),
            Download::Tracks => format!("/internal/jobs/{id}/tracks.zip"),
        }
    }
}

/// Requested MP3 quality: `128`, `192`, `256` or `320` (kbit/s, constant) or `v0`..`v9`
/// (LAME variable-bitrate quality, 0 best). Written as those strings.
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

impl fmt::Display for Bitrate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Constant(kbps) => write!(f, "{kbps}"),
            Self::Variable(q) => write!(f, "v{q}"),
        }
    }
}

/// A bitrate that is not one of the accepted values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidBitrate;

impl InvalidBitrate {
    /// The error code clients get.
    pub const CODE: &'static str = "invalid_bitrate";
}

impl fmt::Display for InvalidBitrate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("bitrate must be 128, 192, 256, 320 or v0..v9")
    }
}

impl std::error::Error for InvalidBitrate {}

impl FromStr for Bitrate {
    type Err = InvalidBitrate;

    /// The accepted values, in any case, with surrounding whitespace ignored.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
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
    /// A string, or a number for the constant rates (`{"bitrate": 320}`).
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Text {
            Text(String),
            Number(u64),
        }
        let text =
            match Text::deserialize(d).map_err(|_| serde::de::Error::custom(InvalidBitrate))? {
                Text::Text(text) => text,
                Text::Number(n) => n.to_string(),
            };
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The finished MP3.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Audio {
    /// Blob id in the MP3 store.
    pub id: String,
    /// Size in bytes.
    pub size: u64,
    /// Duration in seconds: the frames ffmpeg encoded, as its MP3 header counts them (what
    /// ffprobe reports).
    pub duration: f64,
    /// Quality it was encoded at.
    pub bitrate: Bitrate,
}

/// One chapter's MP3 of a job split by chapters (`split=chapters`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Track {
    /// 1-based, in the order of the chapters.
    pub number: u32,
    /// The chapter's title (its ID3 title), or `Chapter N`.
    pub title: String,
    /// Where the chapter begins in the MP3 made from the whole (clip), in seconds.
    pub start: f64,
    /// Where it ends, in seconds.
    pub end: f64,
    /// Its MP3.
    pub audio: Audio,
    /// CRC-32 (IEEE) of its MP3's bytes, for the ZIP of all tracks.
    pub crc32: u32,
}

/// Why a job failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobError {
    /// Stable machine-readable code, e.g. `no_audio`, `not_media`, `link_not_found`.
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
    /// The option at fault, when one is (a clip past the source's end names `start` or `end`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// One video on its way to becoming an MP3: the worker's record, as its internal API serves it.
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
    /// What else was asked for (the bitrate is [`Job::bitrate`]), a preset applied.
    #[serde(default, skip_serializing_if = "Options::is_empty")]
    pub options: Options,
    /// Blob id of the video in the video store (assigned up front; a link's video lands there
    /// once downloaded).
    pub video_id: String,
    /// The MP3, once done.
    pub audio: Option<Audio>,
    /// One MP3 per chapter, once done, when split by chapters.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tracks: Vec<Track>,
    /// The reason, once failed.
    pub error: Option<JobError>,
    /// An upload whose options are still being read (`POST /internal/jobs?hold=true`): not
    /// queued, not listed, until `POST /internal/jobs/{id}/start`; removed if that never
    /// comes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub held: bool,
    /// Conversion attempts started so far.
    pub attempts: u32,
    /// Whether the final state was announced on the `mp3` queue.
    pub announced: bool,
    /// Bytes of its video while the store keeps it for the job (0 before a link's download,
    /// and once the video is removed): counted in the owner's storage.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub video_bytes: u64,
    /// The owner's limits on its video, set when the job is made: bytes (for a link's
    /// download, with the owner's storage) and seconds (checked by ffprobe before converting,
    /// and against what a video page says before downloading).
    #[serde(default, skip_serializing_if = "MediaLimits::is_none")]
    pub limits: MediaLimits,
    /// When the next removal happens, once the job has finished: a done job's MP3 expires
    /// then (the job becomes [`Status::Expired`]); a failed or expired job's record is deleted
    /// then. Whole seconds.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub expires_at: Option<OffsetDateTime>,
    /// When it was created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When it last changed.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl Job {
    /// A new queued job. The video and MP3 blobs are named after the job, which keeps every
    /// step idempotent: a redelivered job overwrites, never duplicates.
    pub fn new(owner: String, source: Source, bitrate: Bitrate) -> Self {
        let id = JobId::new();
        let now = OffsetDateTime::now_utc();
        Self {
            id,
            owner,
            status: Status::Queued,
            progress: 0,
            source,
            bitrate,
            options: Options::default(),
            video_id: id.to_string(),
            audio: None,
            tracks: Vec::new(),
            error: None,
            held: false,
            attempts: 0,
            announced: false,
            video_bytes: 0,
            limits: MediaLimits::default(),
            expires_at: None,
            created_at: now,
            updated_at: now,
        }
    }

    /// A new queued job asked for `options` (their bitrate, or the default, becomes
    /// [`Job::bitrate`]).
    pub fn with_options(owner: String, source: Source, mut options: Options) -> Self {
        let bitrate = options.bitrate.take().unwrap_or_default();
        Self {
            options,
            ..Self::new(owner, source, bitrate)
        }
    }

    /// The MP3's title: the `title` option, else the source's name. Empty when the title
    /// tag is asked to be left out.
    pub fn title(&self) -> String {
        match &self.options.title {
            Some(title) => title.clone(),
            None => self.source.title(),
        }
    }

    /// The name `what` of this job is saved under (made safe, [`file_name`]): the MP3's title
    /// (the `title` option, else the source's name) with `.mp3` or `.zip`; a track like its ZIP
    /// entry, `NN - <chapter>.mp3` (the ZIP widens the number past 99 tracks and numbers
    /// repeated names).
    pub fn download_name(&self, what: Download) -> String {
        let title = match self.title() {
            title if title.trim().is_empty() => self.source.title(),
            title => title,
        };
        match what {
            Download::Audio => file_name(&title, "mp3", "download"),
            Download::Tracks => file_name(&title, "zip", "download"),
            Download::Track(n) => match self.tracks.iter().find(|t| t.number == n) {
                Some(track) => file_name(&track_stem(n, 2, &track.title), "mp3", "download"),
                None => file_name(&format!("{title} - {n:02}"), "mp3", "download"),
            },
        }
    }

    /// Marks the job failed with a reason.
    pub fn fail(&mut self, code: &str, message: impl Into<String>) {
        self.status = Status::Failed;
        self.error = Some(JobError {
            code: code.to_owned(),
            message: message.into(),
            field: None,
        });
        self.touch();
    }

    /// Marks the job failed because of the option `field` (a clip past the source's end).
    pub fn fail_option(&mut self, code: &str, message: impl Into<String>, field: &str) {
        self.fail(code, message);
        if let Some(error) = &mut self.error {
            error.field = Some(field.to_owned());
        }
    }

    /// Sets when the job's next removal happens (see [`Job::expires_at`]), `after` from now,
    /// in whole seconds (rounded up).
    pub fn expire_after(&mut self, after: std::time::Duration) {
        self.expires_at = Some(whole_seconds(OffsetDateTime::now_utc() + after));
    }

    /// Marks a done job's MP3 expired (its files are to be removed): no audio and no tracks,
    /// and the record itself removed at `record_until` (rounded up to a whole second).
    pub fn expire(&mut self, record_until: OffsetDateTime) {
        self.status = Status::Expired;
        self.audio = None;
        self.tracks.clear();
        self.video_bytes = 0;
        self.progress = 0;
        self.expires_at = Some(whole_seconds(record_until));
        self.touch();
    }

    /// Bytes stored for the job: its video while kept, its MP3 and its tracks.
    pub fn stored_bytes(&self) -> u64 {
        let audio = self.audio.as_ref().map_or(0, |audio| audio.size);
        let tracks: u64 = self.tracks.iter().map(|track| track.audio.size).sum();
        self.video_bytes
            .saturating_add(audio)
            .saturating_add(tracks)
    }

    /// Whether it takes one of its owner's concurrent jobs: queued, downloading or converting.
    pub fn is_active(&self) -> bool {
        !self.status.is_terminal()
    }

    /// Moves the job to `status`.
    pub fn set_status(&mut self, status: Status) {
        self.status = status;
        self.touch();
    }

    fn touch(&mut self) {
        self.updated_at = OffsetDateTime::now_utc();
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A job's owner's limits on its video (see [`Job::limits`]); `None`: none but the service's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaLimits {
    /// Largest video, bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u64>,
    /// Longest video, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_duration_secs: Option<u64>,
    /// The owner's storage, bytes: a link's download may bring what is left of it when it
    /// starts, and is refused if the owner's files pass it once it is stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_bytes: Option<u64>,
}

impl MediaLimits {
    /// Whether there are none.
    pub fn is_none(&self) -> bool {
        self.max_bytes.is_none() && self.max_duration_secs.is_none() && self.storage_bytes.is_none()
    }
}

/// `at` rounded up to a whole second.
fn whole_seconds(at: OffsetDateTime) -> OffsetDateTime {
    let floor = at.replace_nanosecond(0).unwrap_or(at);
    if floor == at {
        at
    } else {
        floor + time::Duration::SECOND
    }
}

/// A job as its owner sees it: no owner, blob ids or delivery bookkeeping. Readers accept
/// fields they do not know (a newer server may add some).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublicJob {
    pub id: JobId,
    pub status: Status,
    pub progress: u8,
    pub source: Source,
    pub bitrate: Bitrate,
    #[serde(default, skip_serializing_if = "Options::is_empty")]
    pub options: Options,
    pub audio: Option<Audio>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tracks: Vec<Track>,
    pub error: Option<JobError>,
    /// See [`Job::expires_at`].
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub expires_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl From<Job> for PublicJob {
    fn from(job: Job) -> Self {
        Self {
            id: job.id,
            status: job.status,
            progress: job.progress,
            source: job.source,
            bitrate: job.bitrate,
            options: job.options,
            audio: job.audio,
            tracks: job.tracks,
            error: job.error,
            expires_at: job.expires_at,
            created_at: job.created_at,
            updated_at: job.updated_at,
        }
    }
}

/// A page of a listing, newest first, with the cursor of the next page (`None` on the last).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page<T> {
    pub jobs: Vec<T>,
    /// Pass as `?cursor=` for the next page.
    pub next_cursor: Option<JobId>,
}

/// A page of the worker's records.
pub type JobPage = Page<Job>;
/// A page of jobs as users see them.
pub type PublicJobPage = Page<PublicJob>;

impl From<JobPage> for PublicJobPage {
    fn from(page: JobPage) -> Self {
        Self {
            jobs: page.jobs.into_iter().map(PublicJob::from).collect(),
            next_cursor: page.next_cursor,
        }
    }
}

/// The body of a link job's creation (`POST /v1/jobs` and the worker's `POST /internal/jobs`
/// with `Content-Type: application/json`): the link and, beside it, any [`Options`]
/// (`{"url": "...", "bitrate": 320, "start": 30}`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LinkRequest {
    /// An absolute http(s) link.
    pub url: String,
    /// The options, written beside the url.
    #[serde(flatten)]
    pub options: Options,
}

impl LinkRequest {
    /// Reads a link request's JSON body: one rule for the gateway and the worker.
    pub fn parse(body: &[u8]) -> Result<Self, BadJson> {
        let mut object = json_object(body)?;
        let url = match object.remove("url") {
            Some(serde_json::Value::String(url)) => url,
            Some(_) => return Err(BadJson::Json("`url` must be a string".into())),
            None => return Err(BadJson::Json("missing field `url`".into())),
        };
        let options = Options::from_json(&object).map_err(BadJson::Option)?;
        Ok(Self { url, options })
    }
}

/// Query parameter names of an upload to the worker (`POST /internal/jobs?filename=&hold=`),
/// beside which every parameter is an option.
pub mod upload_query {
    /// The uploaded file's name.
    pub const FILENAME: &str = "filename";
    /// `true` holds the upload until `POST /internal/jobs/{id}/start`.
    pub const HOLD: &str = "hold";
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
        assert_eq!(" 320 ".parse::<Bitrate>().unwrap(), Bitrate::Constant(320));
        for bad in ["", "64", "v", "v10", "v-1", "192k", "vv", "1e3", "v+1"] {
            assert!(bad.parse::<Bitrate>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn download_names() {
        use crate::http::attachment;
        let job = |source| Job::new("u1".into(), source, Default::default());
        let upload = job(Source::Upload {
            filename: "Café \"live\".mp4".into(),
            content_type: None,
        });
        assert_eq!(
            attachment(&upload.download_name(Download::Audio)),
            "attachment; filename=\"Caf_ _live_.mp3\"; filename*=UTF-8''Caf%C3%A9%20_live_.mp3"
        );
        let mut link = job(Source::link("https://x.test/a/talk.webm?x=1"));
        assert!(
            attachment(&link.download_name(Download::Audio))
                .starts_with("attachment; filename=\"talk.mp3\"")
        );
        // The title option names the file; one asked to be left out does not.
        link.options.title = Some("Keynote/2026".into());
        assert_eq!(
            link.download_name(Download::Tracks),
            "Keynote_2026.zip",
            "no path in a file name"
        );
        // However long the title, the name keeps its extension.
        link.options.title = Some("long ".repeat(100));
        let long = link.download_name(Download::Audio);
        assert!(long.ends_with("long.mp3") && long.len() <= 204, "{long}");
        link.options.title = Some(" ..\u{0} ".into());
        assert_eq!(link.download_name(Download::Audio), "download.mp3");
        link.options.title = Some(String::new());
        assert_eq!(link.download_name(Download::Audio), "talk.mp3");
        link.tracks.push(Track {
            number: 2,
            title: "Questions".into(),
            start: 0.0,
            end: 1.0,
            audio: Audio {
                id: "a".into(),
                size: 1,
                duration: 1.0,
                bitrate: Default::default(),
            },
            crc32: 0,
        });
        assert_eq!(link.download_name(Download::Track(2)), "02 - Questions.mp3");
        // As the ZIP names its entry: the chapter's title made safe on its own.
        link.tracks[0].title = "..\\..\\secret".into();
        assert_eq!(
            link.download_name(Download::Track(2)),
            "02 - _.._secret.mp3"
        );
        link.tracks[0].title = " . ".into();
        assert_eq!(link.download_name(Download::Track(2)), "02.mp3");
        assert_eq!(link.download_name(Download::Track(7)), "talk - 07.mp3");
        let id = link.id;
        assert_eq!(
            Download::Track(3).worker_path(id),
            format!("/internal/jobs/{id}/tracks/3")
        );
    }

    #[test]
    fn bitrates_read_strings_and_numbers() {
        let read = |json: &str| serde_json::from_str::<Bitrate>(json);
        assert_eq!(read("320").unwrap(), Bitrate::Constant(320));
        assert_eq!(read(r#""v2""#).unwrap(), Bitrate::Variable(2));
        for bad in ["999", r#""999""#, "[1]", "true", "-1", "1.5", "null"] {
            let err = read(bad).unwrap_err().to_string();
            assert!(err.contains("bitrate must be"), "{bad}: {err}");
        }
    }

    #[test]
    fn ids_sort_by_creation_and_read_only_their_own_shape() {
        let ids: Vec<JobId> = (0..100).map(|_| JobId::new()).collect();
        let mut as_strings: Vec<String> = ids.iter().map(JobId::to_string).collect();
        as_strings.sort();
        assert_eq!(
            as_strings,
            ids.iter().map(JobId::to_string).collect::<Vec<_>>()
        );
        let id = "0192f1a4-7c2b-7d3e-8f00-123456789abc";
        assert_eq!(id.to_uppercase().parse::<JobId>().unwrap().to_string(), id);
        for bad in [
            "",
            "nope",
            "0192f1a47c2b7d3e8f00123456789abc",
            "{0192f1a4-7c2b-7d3e-8f00-123456789abc}",
            "urn:uuid:0192f1a4-7c2b-7d3e-8f00-123456789abc",
            "0192f1a4-7c2b-7d3e-8f00-123456789abg",
            "0192f1a4+7c2b-7d3e-8f00-123456789abc",
        ] {
            assert!(bad.parse::<JobId>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn titles_drop_the_extension() {
        let upload = Source::Upload {
            filename: "My holiday.final.mp4".into(),
            content_type: None,
        };
        assert_eq!(upload.title(), "My holiday.final");
        let link = Source::link("http://example.com/media/clip.webm?x=1.2#t");
        assert_eq!(link.title(), "clip");
        let bare = Source::link("http://example.com/");
        assert_eq!(bare.title(), "example");
        // A page's title is taken whole: its dots are not an extension.
        let page = Source::Link {
            url: "http://example.com/watch?v=1".into(),
            page: Some(VideoPage {
                title: VideoPage::text("  Release v1.2\u{7}  "),
                uploader: None,
                duration: Some(3.0),
                thumbnail: None,
            }),
        };
        assert_eq!(page.name(), "Release v1.2");
        assert_eq!(page.title(), "Release v1.2");
        let untitled = Source::Link {
            url: "http://example.com/talk.html".into(),
            page: Some(VideoPage::default()),
        };
        assert_eq!(untitled.title(), "talk");
        assert_eq!(VideoPage::text(" \u{0} "), None);
        assert_eq!(
            VideoPage::text("Talk\u{202E}3pm.exe").unwrap(),
            "Talk3pm.exe"
        );
        assert_eq!(
            VideoPage::text(&"é".repeat(300)).unwrap().chars().count(),
            200
        );
    }

    #[test]
    fn public_jobs_hide_internal_fields() {
        let job = Job::new(
            "owner-1".into(),
            Source::link("https://example.com/a.mp4"),
            Bitrate::Variable(0),
        );
        let internal = serde_json::to_value(&job).unwrap();
        for field in ["owner", "video_id", "attempts", "announced"] {
            assert!(internal.get(field).is_some(), "{field}");
        }
        let public = serde_json::to_value(PublicJob::from(job.clone())).unwrap();
        for field in ["owner", "video_id", "attempts", "announced", "held"] {
            assert!(public.get(field).is_none(), "{field} shown");
        }
        assert_eq!(public["bitrate"], "v0");
        assert_eq!(public["source"]["kind"], "link");
        // Round trip through the worker's JSON.
        let back: Job = serde_json::from_value(internal).unwrap();
        assert_eq!(back, job);
    }

    #[test]
    fn an_expired_job_keeps_its_record_without_its_files() {
        let mut job = Job::new(
            "owner-1".into(),
            Source::link("https://example.com/a.mp4"),
            Bitrate::default(),
        );
        assert!(
            serde_json::to_value(&job)
                .unwrap()
                .get("expires_at")
                .is_none()
        );
        job.set_status(Status::Done);
        job.audio = Some(Audio {
            id: job.id.to_string(),
            size: 10,
            duration: 1.0,
            bitrate: Bitrate::default(),
        });
        let before = OffsetDateTime::now_utc();
        job.expire_after(std::time::Duration::from_millis(1500));
        let at = job.expires_at.unwrap();
        assert_eq!(at.nanosecond(), 0, "whole seconds");
        assert!(at >= before + time::Duration::milliseconds(1500));
        assert!(at <= before + time::Duration::milliseconds(2500));
        let json = serde_json::to_value(PublicJob::from(job.clone())).unwrap();
        assert!(json["expires_at"].as_str().unwrap().ends_with('Z'));

        job.expire(OffsetDateTime::now_utc() + std::time::Duration::from_secs(3600));
        assert_eq!(job.status, Status::Expired);
        assert!(job.status.is_terminal());
        assert!(job.audio.is_none() && job.tracks.is_empty());
        assert!(job.expires_at.unwrap() > at + time::Duration::minutes(59));
        let back: Job = serde_json::from_value(serde_json::to_value(&job).unwrap()).unwrap();
        assert_eq!(back, job);
        assert_eq!(
            serde_json::to_value(Status::Expired).unwrap(),
            Status::Expired.as_str()
        );
    }

    #[test]
    fn link_requests_refuse_unknown_fields() {
        let ok = LinkRequest::parse(br#"{"url":"https://x.test/v.mp4","bitrate":320}"#).unwrap();
        assert_eq!(ok.options.bitrate, Some(Bitrate::Constant(320)));
        for (body, code) in [
            (r#"{"url":"u","x":1}"#, "unknown_field"),
            (r#"{"url":"u","bitrate":"999"}"#, "invalid_bitrate"),
            (r#"{"url":"u","bitrate":[1]}"#, "invalid_bitrate"),
            (r#"{"bitrate":"128"}"#, "invalid_json"),
            ("not json", "invalid_json"),
        ] {
            assert_eq!(
                LinkRequest::parse(body.as_bytes()).unwrap_err().code(),
                code,
                "{body}"
            );
        }
        assert_eq!(
            serde_json::to_string(&LinkRequest {
                url: "u".into(),
                options: Options::default()
            })
            .unwrap(),
            r#"{"url":"u"}"#
        );
    }
}
