//! ffmpeg and ffprobe as supervised child processes, and what a conversion asks of them.
//!
//! An upload is read as one self-contained media file and nothing else: ffmpeg and ffprobe
//! open it as `file:<path>` with only the `file` protocol and the container formats in
//! [`FORMATS`] allowed. Playlists (HLS), manifests (DASH), file lists (ffconcat) and image
//! sequences would otherwise make ffmpeg read whatever files or URLs they name, such as another
//! user's video or a file on the worker's disk, into the caller's MP3. The converter's own
//! files that ffmpeg reads beside it (the chapters as `ffmetadata`) are confined the same way,
//! each to its one demuxer (see [`Input`]). A source still being copied out of storage may be
//! read through stdin instead, `pipe:0` with only the `pipe` protocol ([`early`]).
//!
//! A conversion ([`convert`]) probes the source once, works out a [`plan::Plan`] from the
//! probe and the job's options (a clip checked against the source, tags, chapters, tracks,
//! cover, channels, sample rate, loudness), then runs ffmpeg: the cover once ([`cover`]) beside
//! the loudness measure when normalizing ([`loudness`]) and the MP3, and one MP3 per track when
//! split by chapters; the cover and the comment are then added to each MP3's tag ([`id3`]).
//! Every run is supervised alike: it dies with the worker ([`crate::child`]), reports
//! progress, and shares one time limit scaled to all the passes.

mod chapters;
mod cover;
mod early;
mod id3;
pub mod info;
mod loudness;
pub mod plan;
pub mod probe;
mod text;
mod written;

pub use written::{Attempt, Growing, Written};

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mp3conv_contract::options::Options;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Command;
use tokio::sync::{oneshot, watch};

use crate::config::ConvertConfig;
use crate::job::{Bitrate, MAX_TRACKS};
use plan::{Encode, Plan};

pub use early::{Copied, CopyFailed, CopyProgress, Copying, copying, index_first};
pub use probe::{MediaInfo, probe};

/// Bytes of ffmpeg's stderr kept for the error message.
const STDERR_LIMIT: u64 = 16 * 1024;
/// Bytes of the end of an info-level log kept (the loudness figures come last).
const INFO_LIMIT: usize = 64 * 1024;

/// The demuxers an input may be read with (ffmpeg's `-format_whitelist`): containers that hold
/// their media themselves. ffmpeg matches any of a demuxer's names, so `mov` covers
/// mp4/m4a/3gp/3g2/mj2 and `matroska` covers webm. Deliberately absent: `hls`, `dash`,
/// `concat`, `image2` and the other demuxers that open further files or URLs.
pub const FORMATS: &str = "mov,matroska,avi,flv,mpegts,mpeg,ogg,asf,wav,w64,aiff,caf,mp3,aac,\
                           ac3,eac3,flac,wv,amr,rm,nut,au,dts";

/// What ffmpeg prints when a demuxer or protocol outside the allow-lists is asked for.
const REFUSED_MARK: &str = "not on whitelist";

/// The largest frame or picture a source's decoders may make, in pixels: 8K (8192 x 4320),
/// passed to every run on the source as `-max_pixels`. Even a run that converts only the audio
/// decodes a frame of each stream while it opens the file, and a frame's memory grows with its
/// pixels: an 895 KB upload of 16000 x 16000 frames took 1.8 GB in each run.
pub const MAX_SOURCE_PIXELS: u64 = 8192 * 4320;
/// What a decoder prints when a frame passes `-max_pixels`.
const TOO_MANY_PIXELS_MARK: &str = "exceeds specified max pixel count";

/// An input ffmpeg opens, and the one way it may read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Input {
    /// The uploaded or downloaded media: any of [`FORMATS`], probed by ffmpeg.
    Source,
    /// The converter's chapter list: `ffmetadata` only.
    Chapters,
    /// A video page's image: one JPEG, PNG or WebP picture, probed among those three.
    Image,
}

/// The demuxers a video page's image may be read with.
const IMAGE_FORMATS: &str = "jpeg_pipe,png_pipe,webp_pipe";

/// Where a run reads an input from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Read<'a> {
    /// The file.
    File(&'a Path),
    /// Its stdin, fed the source while it is being copied (see [`early`]).
    Stdin,
}

impl<'a> From<&'a Path> for Read<'a> {
    fn from(path: &'a Path) -> Self {
        Self::File(path)
    }
}

impl<'a> Read<'a> {
    /// The file, if it is read as one.
    fn path(self) -> Option<&'a Path> {
        match self {
            Self::File(path) => Some(path),
            Self::Stdin => None,
        }
    }
}

/// `-i` and the options before it that confine ffmpeg or ffprobe to the file at `path` (or
/// its stdin): the `file` protocol only (`pipe` for stdin; no `http:`, `data:`, `subfile:`...
/// for anything the input names), the demuxers `kind` allows (forced, for the converter's own
/// files), and the path spelled `file:<path>` so no other protocol is guessed from it.
pub(crate) fn confined_input<'a>(read: impl Into<Read<'a>>, kind: Input) -> Vec<OsString> {
    let (protocol, input) = match read.into() {
        Read::File(path) => {
            let mut input = OsString::from("file:");
            input.push(path);
            ("file", input)
        }
        Read::Stdin => ("pipe", OsString::from("pipe:0")),
    };
    let mut args: Vec<OsString> = Vec::with_capacity(9);
    let forced = match kind {
        Input::Source | Input::Image => None,
        Input::Chapters => Some("ffmetadata"),
    };
    if let Some(format) = forced {
        args.extend(["-f".into(), format.into()]);
    }
    if matches!(kind, Input::Source | Input::Image) {
        args.extend(["-max_pixels".into(), MAX_SOURCE_PIXELS.to_string().into()]);
    }
    let allowed = match kind {
        Input::Image => IMAGE_FORMATS,
        _ => forced.unwrap_or(FORMATS),
    };
    args.extend([
        "-protocol_whitelist".into(),
        protocol.into(),
        "-format_whitelist".into(),
        allowed.into(),
        "-i".into(),
        input,
    ]);
    args
}

/// Why a conversion failed.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// ffprobe cannot read the file as media.
    #[error("not a media file ffmpeg can read: {0}")]
    NotMedia(String),
    /// The file is a playlist, manifest, file list or another format outside [`FORMATS`].
    #[error(
        "not a format the converter reads: upload the media file itself (MP4, MOV, MKV, WebM, \
         AVI, FLV, MPEG-TS, Ogg, WMV, WAV, MP3, AAC, FLAC...), not a playlist, manifest or \
         list of other files"
    )]
    UnsupportedFormat,
    /// The media has no audio stream.
    #[error("the video has no audio track")]
    NoAudio,
    /// The source's frames pass [`MAX_SOURCE_PIXELS`].
    #[error(
        "the video's frames are larger than 8K (8192x4320 pixels): decoding them would take \
         gigabytes, so such a video is not converted"
    )]
    FramesTooLarge,
    /// An option does not fit the source (a clip past its end).
    #[error("{message}")]
    Option {
        /// The option at fault.
        field: &'static str,
        /// What is wrong, with the source's length.
        message: String,
    },
    /// Split by chapters, the source has more than [`MAX_TRACKS`].
    #[error(
        "the source has {count} chapters within the clip; split=chapters makes at most {MAX_TRACKS} tracks"
    )]
    TooManyChapters {
        /// How many.
        count: usize,
    },
    /// The source is longer than its owner's limit.
    #[error("{}", crate::quota::too_long(*seconds, *max))]
    OverQuota {
        /// Its length.
        seconds: f64,
        /// The limit.
        max: u64,
    },
    /// ffmpeg exited with an error.
    #[error("ffmpeg failed ({status}): {stderr}")]
    Failed {
        /// Exit status.
        status: String,
        /// What ffmpeg printed.
        stderr: String,
        /// Whether a signal ended it (maybe the machine, not the input).
        signalled: bool,
    },
    /// ffmpeg ran past its timeout and was killed.
    #[error("ffmpeg ran longer than {0:?} and was stopped")]
    Timeout(Duration),
    /// The MP3 is not as long as the source.
    #[error("the MP3 lasts {got:.3} s but the source's audio {expected:.3} s")]
    DurationMismatch {
        /// Source duration in seconds.
        expected: f64,
        /// MP3 duration in seconds.
        got: f64,
    },
    /// ffmpeg or ffprobe could not be run.
    #[error("could not run {program}: {source}")]
    Spawn {
        /// Which program.
        program: String,
        /// Why.
        source: io::Error,
    },
    /// The conversion's own files (chapters, the comment's rewrite) could not be written.
    #[error("could not write the conversion's files: {0}")]
    Workspace(#[source] io::Error),
    /// The source's copy out of storage failed.
    #[error(transparent)]
    Unread(#[from] CopyFailed),
    /// An early start saw the source otherwise than the whole file does: it is redone on the
    /// whole file ([`convert`] never returns this).
    #[error("the source read early differs from the whole file")]
    Stale,
}

impl ConvertError {
    /// Stable code for the job's `error.code`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotMedia(_) => "not_media",
            Self::UnsupportedFormat => "unsupported_format",
            Self::NoAudio => "no_audio",
            Self::FramesTooLarge => "frames_too_large",
            Self::Option { .. } => "invalid_option",
            Self::TooManyChapters { .. } => "too_many_chapters",
            Self::OverQuota { .. } => "quota_exceeded",
            Self::Failed { .. } => "conversion_failed",
            Self::Timeout(_) => "conversion_timeout",
            Self::DurationMismatch { .. } => "duration_mismatch",
            Self::Spawn { .. } => "converter_unavailable",
            Self::Workspace(_) => "temp_unavailable",
            Self::Unread(_) => "storage_unavailable",
            Self::Stale => "conversion_failed",
        }
    }

    /// The option at fault, for the job's `error.field`.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            Self::Option { field, .. } => Some(field),
            Self::TooManyChapters { .. } => Some("split"),
            _ => None,
        }
    }

    /// Whether retrying cannot help: the same input gives the same result.
    pub fn is_permanent(&self) -> bool {
        match self {
            Self::NotMedia(_)
            | Self::UnsupportedFormat
            | Self::NoAudio
            | Self::FramesTooLarge
            | Self::Option { .. }
            | Self::TooManyChapters { .. }
            | Self::OverQuota { .. }
            | Self::DurationMismatch { .. } => true,
            Self::Failed { signalled, .. } => !signalled,
            Self::Timeout(_)
            | Self::Spawn { .. }
            | Self::Workspace(_)
            | Self::Unread(_)
            | Self::Stale => false,
        }
    }
}

/// A conversion request.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// The source's file.
    pub input: &'a Path,
    /// Its copy out of storage when it is still being made, for the conversion to start
    /// early or wait for it.
    pub copying: Option<&'a Copying>,
    /// A directory of the conversion's own, where the MP3s (and the cover and chapters) go.
    pub dir: &'a Path,
    /// Quality.
    pub bitrate: Bitrate,
    /// What else the job asks for (its `bitrate` is not read: see [`Request::bitrate`]).
    pub options: &'a Options,
    /// The owner's limit on the source's length, seconds: a longer one is not converted.
    pub max_duration_secs: Option<u64>,
    /// The tags' defaults: the file's or link's name, what its page said.
    pub naming: plan::Naming<'a>,
    /// Told how the whole MP3 is written, for it to be stored meanwhile (see [`Written`]).
    pub written: Option<&'a watch::Sender<Written>>,
}

/// One track's MP3, split by chapters.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackFile {
    /// 1-based.
    pub number: u32,
    /// Its title (the chapter's).
    pub title: String,
    /// Where it begins in the whole MP3, seconds.
    pub start: f64,
    /// Where it ends in the whole MP3, seconds.
    pub end: f64,
    /// The file.
    pub path: PathBuf,
    /// Its duration in seconds, from its MP3 header (ffprobe's where it has none).
    pub duration: f64,
}

/// The finished MP3 (and tracks), their durations from their MP3 headers.
#[derive(Debug, Clone, PartialEq)]
pub struct Converted {
    /// The whole MP3.
    pub audio: PathBuf,
    /// Its duration in seconds.
    pub duration: f64,
    /// Its title tag, if it has one.
    pub title: Option<String>,
    /// One MP3 per chapter, when split.
    pub tracks: Vec<TrackFile>,
    /// Whether it started before the source's copy was over.
    pub early: Early,
}

/// Whether a conversion started before its source's copy was over ([`early`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Early {
    /// It waited for the whole file (or had it from the start).
    #[default]
    No,
    /// It started early, and the whole file looked the same.
    Kept,
    /// It started early but was done again on the whole file.
    Redone,
}

impl Early {
    /// The outcome of an early start, as the metrics name it; `None` when it did not start
    /// early.
    pub fn outcome(self) -> Option<&'static str> {
        match self {
            Self::No => None,
            Self::Kept => Some("kept"),
            Self::Redone => Some("redone"),
        }
    }
}

/// When the whole conversion must be over, and how long that was.
#[derive(Debug, Clone, Copy)]
struct Deadline {
    at: tokio::time::Instant,
    limit: Duration,
}

/// Progress over all of a conversion's passes: `done` seconds of `total` passed, reported as a
/// percentage that never goes back.
struct Progress<'a> {
    sender: &'a watch::Sender<u8>,
    total: f64,
    done: f64,
}

impl Progress<'_> {
    /// A `-progress` line of a pass of `pass` seconds.
    fn line(&self, line: &str, pass: f64) {
        if pass <= 0.0 {
            return;
        }
        match progress_line(line) {
            Some(Position::At(seconds)) => self.report(self.done + seconds.min(pass)),
            Some(Position::End) => self.report(self.done + pass),
            None => {}
        }
    }

    /// A pass of `pass` seconds is over.
    fn passed(&mut self, pass: f64) {
        self.done += pass;
        self.report(self.done);
    }

    fn report(&self, seconds: f64) {
        let percent = if self.total <= 0.0 {
            0
        } else {
            (seconds / self.total * 100.0).floor().clamp(0.0, 99.0) as u8
        };
        self.raise(percent);
    }

    /// Only ever up.
    fn raise(&self, percent: u8) {
        self.sender.send_if_modified(|p| {
            let higher = percent > *p;
            if higher {
                *p = percent;
            }
            higher
        });
    }
}

/// Global options of every ffmpeg run: filters on one thread. ffmpeg starts a thread per core
/// it sees (in a container with a CPU quota, the host's), each mapping a whole stack: on a
/// 128-core host a cover pass needed more than `convert.max_memory`. Audio filters and a
/// single frame gain nothing from more.
const ONE_FILTER_THREAD: [&str; 4] = ["-filter_threads", "1", "-filter_complex_threads", "1"];

/// Bounds the memory of an ffmpeg or ffprobe run to `convert.max_memory`. glibc reserves
/// 64 MiB of address space per malloc arena, up to eight per core: two arenas keep that
/// reservation from counting against the limit on a machine with many cores.
pub(crate) fn confine(config: &ConvertConfig, command: &mut Command) {
    command.env("MALLOC_ARENA_MAX", "2");
    crate::child::limit(
        command,
        crate::child::Limits {
            address_space: config.max_memory,
            ..crate::child::Limits::default()
        },
    );
}

/// How a run's stderr is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Log {
    /// `-loglevel error`: all it prints is trouble; its first [`STDERR_LIMIT`] bytes are kept.
    Errors,
    /// `-loglevel level+info`: the last [`INFO_LIMIT`] bytes are kept, for what it prints at the
    /// end; on failure only the lines marked `[error]` or `[fatal]` are the complaint (the
    /// rest describes the input, tags included, and is nobody's business).
    Info,
}

/// One run of ffmpeg.
struct Run<'a> {
    args: Vec<OsString>,
    log: Log,
    /// Seconds of media it goes through: its share of the progress (0 for none).
    seconds: f64,
    /// Files it names, kept out of messages.
    paths: &'a [&'a Path],
    /// The source, into its stdin, when it reads it early.
    feed: Option<Feed<'a>>,
}

/// The source written into a run's stdin as it is copied (see [`early`]).
#[derive(Debug, Clone, Copy)]
struct Feed<'a> {
    path: &'a Path,
    copying: &'a Copying,
}

/// Stdin for a run that is fed, nothing for the others.
fn stdin_for(feed: Option<Feed<'_>>) -> Stdio {
    if feed.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    }
}

/// Runs `work`, a child's supervision to its exit, while `feed` writes the source into the
/// child's stdin; the feeding stops when the child is gone. A failed copy, or a copy that
/// cannot be read, is the run's error whatever the child made of the truncated input.
async fn while_fed<T>(
    work: impl Future<Output = T>,
    feed: Option<(Feed<'_>, tokio::process::ChildStdin)>,
) -> Result<T, ConvertError> {
    let Some((feed, stdin)) = feed else {
        return Ok(work.await);
    };
    let feeding = early::feed(feed.path, feed.copying, stdin);
    tokio::pin!(work, feeding);
    let mut fed = None;
    let out = loop {
        tokio::select! {
            out = &mut work => break out,
            result = &mut feeding, if fed.is_none() => fed = Some(result),
        }
    };
    match fed {
        Some(Err(early::FeedError::Copy(failed))) => Err(failed.into()),
        Some(Err(early::FeedError::Source(e))) => Err(ConvertError::Workspace(e)),
        // Done, still going when the child left, or the child stopped reading: its exit says.
        _ => Ok(out),
    }
}

/// A failure of a pass that read the source early says nothing sure of the whole file: the
/// attempt is redone on it ([`ConvertError::Stale`]). The copy's failure, a timeout, a missing
/// program and the conversion's own files stand.
fn doubtful(e: ConvertError) -> ConvertError {
    match e {
        ConvertError::Unread(_)
        | ConvertError::Timeout(_)
        | ConvertError::Spawn { .. }
        | ConvertError::Workspace(_) => e,
        _ => ConvertError::Stale,
    }
}

/// `result` of a pass, which read the source early if `fed`.
fn judged<T>(result: Result<T, ConvertError>, fed: bool) -> Result<T, ConvertError> {
    if fed {
        result.map_err(doubtful)
    } else {
        result
    }
}

/// Runs ffmpeg under supervision: it dies with the worker (and when dropped), its `-progress`
/// output feeds `progress`, and it is stopped at `deadline`. Returns the log kept. A run fed
/// the source early stops at the first error (`-xerror`): on a pipe, ffmpeg ends an input it
/// cannot seek back in with an error but still exits 0, short of the file's end.
async fn run(
    config: &ConvertConfig,
    run: Run<'_>,
    progress: &mut Progress<'_>,
    deadline: Deadline,
) -> Result<String, ConvertError> {
    let fed = run.feed.is_some();
    judged(run_supervised(config, run, progress, deadline).await, fed)
}

async fn run_supervised(
    config: &ConvertConfig,
    run: Run<'_>,
    progress: &mut Progress<'_>,
    deadline: Deadline,
) -> Result<String, ConvertError> {
    let mut command = Command::new(&config.ffmpeg);
    command
        .args(ONE_FILTER_THREAD)
        .args(run.feed.map(|_| "-xerror"))
        .args(&run.args)
        .stdin(stdin_for(run.feed))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    confine(config, &mut command);
    let program = program_name(&config.ffmpeg);
    // Started so that it dies with the worker, even a SIGKILLed one.
    let mut child = crate::child::spawn(command)
        .await
        .map_err(|source| ConvertError::Spawn {
            program: program.clone(),
            source,
        })?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let stdin = run
        .feed
        .map(|feed| (feed, child.stdin.take().expect("stdin is piped")));
    let log_task = tokio::spawn(read_log(stderr, run.log));
    let seconds = run.seconds;
    let supervised = async {
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            progress.line(&line, seconds);
        }
        child.wait().await
    };
    let started = std::time::Instant::now();
    let status = match tokio::time::timeout_at(deadline.at, while_fed(supervised, stdin)).await {
        Ok(status) => status?.map_err(|source| ConvertError::Spawn { program, source })?,
        // Dropping the run drops the child, which kills it.
        Err(_) => return Err(ConvertError::Timeout(deadline.limit)),
    };
    tracing::debug!(
        ms = started.elapsed().as_millis() as u64,
        early = run.feed.is_some(),
        seconds,
        "ffmpeg pass"
    );
    let log = log_task.await.unwrap_or_default();
    if !status.success() {
        let complaint = match run.log {
            Log::Errors => log,
            Log::Info => error_lines(&log),
        };
        if complaint.contains(REFUSED_MARK) {
            return Err(ConvertError::UnsupportedFormat);
        }
        return Err(ConvertError::Failed {
            status: status.to_string(),
            signalled: status.code().is_none(),
            stderr: tidy(&complaint, run.paths),
        });
    }
    progress.passed(seconds);
    Ok(log)
}

/// Reads a child's stderr to its end, keeping what `log` says.
async fn read_log(mut stderr: tokio::process::ChildStderr, log: Log) -> String {
    match log {
        Log::Errors => {
            let mut kept = Vec::new();
            let _ = (&mut stderr)
                .take(STDERR_LIMIT)
                .read_to_end(&mut kept)
                .await;
            // Keep draining so ffmpeg never blocks on a full pipe.
            let _ = tokio::io::copy(&mut stderr, &mut tokio::io::sink()).await;
            String::from_utf8_lossy(&kept).trim().to_owned()
        }
        Log::Info => {
            let mut kept = Vec::new();
            let mut chunk = vec![0u8; 8192];
            while let Ok(read) = stderr.read(&mut chunk).await {
                if read == 0 {
                    break;
                }
                kept.extend_from_slice(&chunk[..read]);
                if kept.len() > 2 * INFO_LIMIT {
                    kept.drain(..kept.len() - INFO_LIMIT);
                }
            }
            if kept.len() > INFO_LIMIT {
                kept.drain(..kept.len() - INFO_LIMIT);
            }
            String::from_utf8_lossy(&kept).into_owned()
        }
    }
}

/// The lines of a level-marked log that report errors, without their marks.
fn error_lines(log: &str) -> String {
    log.lines()
        .filter_map(|line| {
            ["[error] ", "[fatal] ", "[panic] "]
                .iter()
                .find_map(|mark| line.find(mark).map(|at| (at, mark.len())))
                .map(|(at, len)| format!("{}{}", &line[..at], &line[at + len..]))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Converts the request's source to MP3 (and its tracks) as its options say, reporting
/// progress (0-100, across all passes) into `progress`, and checks each MP3's duration against
/// what it was cut from.
///
/// The file must be whole or, while [`Request::copying`] says it is being copied, become
/// whole. A source that can be read front to back then starts early ([`early`]); any other
/// waits for its copy: MP4s with their index at the end cannot be read from a pipe (ffmpeg
/// then writes a near-empty MP3 and still exits 0). An early start that runs out of time
/// before the copy is over is redone on the whole file, in time of its own: the conversion's
/// time limit is for converting, not for waiting on storage.
pub async fn convert(
    config: &ConvertConfig,
    request: Request<'_>,
    progress: &watch::Sender<u8>,
) -> Result<Converted, ConvertError> {
    let mut early = Early::No;
    if let Some(copying) = request.copying {
        if copying.may_start_early(request.input).await? {
            let source = Source {
                path: request.input,
                copying: Some(copying),
            };
            match attempt(config, &request, source, progress).await {
                Ok(converted) => {
                    return Ok(Converted {
                        early: Early::Kept,
                        ..converted
                    });
                }
                Err(ConvertError::Stale) => {
                    tracing::info!("the early start is redone on the whole file");
                    early = Early::Redone;
                }
                // Out of time while the copy is still under way: the time went to waiting for
                // storage, which a conversion of the whole file does not count.
                Err(ConvertError::Timeout(limit)) if !matches!(copying.now(), Copied::Whole(_)) => {
                    tracing::info!(
                        ?limit,
                        "the early start ran out of time before the copy was over; it is redone \
                         on the whole file"
                    );
                    early = Early::Redone;
                }
                Err(e) => return Err(e),
            }
        }
        copying.whole().await?;
    }
    let source = Source {
        path: request.input,
        copying: None,
    };
    let converted = attempt(config, &request, source, progress).await?;
    Ok(Converted { early, ..converted })
}

/// The source as an attempt at the conversion reads it.
#[derive(Debug, Clone, Copy)]
struct Source<'a> {
    path: &'a Path,
    /// Its copy, for an early start.
    copying: Option<&'a Copying>,
}

impl<'a> Source<'a> {
    /// How a pass starting now reads the source: through its stdin while the copy goes on,
    /// then the file.
    fn read(self) -> Result<(Read<'a>, Option<Feed<'a>>), ConvertError> {
        let file = Ok((Read::File(self.path), None));
        let Some(copying) = self.copying else {
            return file;
        };
        match copying.now() {
            Copied::Partly(_) => Ok((
                Read::Stdin,
                Some(Feed {
                    path: self.path,
                    copying,
                }),
            )),
            Copied::Failed => Err(CopyFailed.into()),
            Copied::Whole(_) => file,
        }
    }
}

/// The most pixels of a frame a cover is taken from beside the other passes (Full HD); from
/// larger frames, or of unknown size, it is taken before them, so that a conversion holds one
/// decoder's frames at a time (an 8K cover pass takes 220-420 MB, beside the encoding's 140).
const COVER_BESIDE_PIXELS: u64 = 1920 * 1080;

/// Whether the cover `from` is taken beside the other passes.
fn cover_beside(media: &MediaInfo, from: Option<cover::CoverFrom>) -> bool {
    use cover::CoverFrom::{Frame, Picture, Thumbnail};
    let stream = match from {
        Some(Picture { stream } | Frame { stream, .. } | Thumbnail { stream, .. }) => stream,
        // A video page's image is a file of unknown size.
        Some(cover::CoverFrom::Image) | None => return false,
    };
    [media.video, media.picture]
        .into_iter()
        .flatten()
        .find(|visual| visual.index == stream)
        .and_then(|visual| visual.pixels())
        .is_some_and(|pixels| pixels <= COVER_BESIDE_PIXELS)
}

/// The plan for `media` as the request asks: it must have audio, and be no longer than the
/// owner's limit.
fn plan_for(request: &Request<'_>, media: &MediaInfo) -> Result<Plan, ConvertError> {
    if media.audio.is_none() {
        return Err(ConvertError::NoAudio);
    }
    // The longest length the file claims, the container's or its audio's (what is encoded):
    // one header alone may be edited to look short. (A file whose every header lies is
    // encoded only as long as the conversion's timeout, which its claimed length sets.)
    let claimed = [media.duration, media.audio_seconds()]
        .into_iter()
        .flatten()
        .fold(None, |longest: Option<f64>, s| {
            Some(longest.map_or(s, |l| l.max(s)))
        });
    if let (Some(seconds), Some(max)) = (claimed, request.max_duration_secs)
        && seconds > max as f64
    {
        return Err(ConvertError::OverQuota { seconds, max });
    }
    Plan::new(media, request.options, request.naming)
}

/// One attempt at the conversion, reading `source` as it says.
async fn attempt(
    config: &ConvertConfig,
    request: &Request<'_>,
    source: Source<'_>,
    progress: &watch::Sender<u8>,
) -> Result<Converted, ConvertError> {
    let audio = request.dir.join("audio.mp3");
    let attempt_id = Attempt::new();
    // What an earlier attempt wrote is void, and its file must not be taken for this one's.
    if let Some(written) = request.written {
        written.send_replace(Written::Nothing);
    }
    match tokio::fs::remove_file(&audio).await {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(ConvertError::Workspace(e)),
        _ => {}
    }
    let (read, feed) = source.read()?;
    let media = probe::probe_read(config, read, feed).await?;
    // What an early probe shows may not be the whole file's.
    let plan = judged(plan_for(request, &media), feed.is_some())?;
    let slowdown = config.read_rate.map_or(1.0, |rate| (1.0 / rate).max(1.0));
    let limit = config.timeout_base
        + Duration::from_secs_f64(plan.work_seconds() * config.timeout_per_media_second * slowdown);
    let deadline = Deadline {
        at: tokio::time::Instant::now() + limit,
        limit,
    };
    let mut progress = Progress {
        sender: progress,
        total: plan.work_seconds(),
        done: 0.0,
    };

    let chapters = if plan.chapters.is_empty() {
        None
    } else {
        let path = request.dir.join("chapters.ffmeta");
        tokio::fs::write(&path, chapters::ffmetadata(&plan.chapters))
            .await
            .map_err(ConvertError::Workspace)?;
        Some(path)
    };
    // Probed early, the source is probed again once whole, beside the passes: they are only
    // kept if it looks the same.
    let checked = async {
        if let Some(feed) = feed {
            feed.copying.whole().await?;
            let whole = probe(config, source.path).await?;
            if whole != media {
                tracing::info!(early = ?media, ?whole, "the source read early differs");
                return Err(ConvertError::Stale);
            }
        }
        Ok(())
    };
    // The cover is taken beside the other passes, and added to each MP3's tag afterwards.
    let mut no_progress = Progress {
        sender: progress.sender,
        total: 0.0,
        done: 0.0,
    };
    let cover = async {
        let Some(from) = plan.cover else {
            return Ok::<_, ConvertError>(None);
        };
        // The page's image is a file of its own; every other cover is in the source.
        let picture = match (from, request.naming.image) {
            (cover::CoverFrom::Image, Some(image)) => (Read::File(image), None),
            _ => source.read()?,
        };
        let Some(path) = extract_cover(
            config,
            picture,
            from,
            request.dir,
            &mut no_progress,
            deadline,
        )
        .await?
        else {
            return Ok(None);
        };
        let jpeg = tokio::fs::read(&path)
            .await
            .map_err(ConvertError::Workspace)?;
        Ok(Some(id3::picture_frame(&jpeg)))
    };
    // The comment and the cover, which ffmpeg does not write (see `id3`); told to `announce`
    // as soon as they are known.
    let (frames_known, frames_told) = oneshot::channel();
    let frames = async {
        let frames: Vec<u8> = plan
            .tags
            .comment
            .as_deref()
            .map(id3::comment_frame)
            .into_iter()
            .chain(cover.await?)
            .flatten()
            .collect();
        let _ = frames_known.send(frames.clone());
        Ok::<_, ConvertError>(frames)
    };
    let whole = async {
        let loudness = match plan.loudness {
            Some(target) => measure(config, source, &plan, target, &mut progress, deadline)
                .await?
                .and_then(|measured| loudness::apply_filter(target, &measured)),
            None => None,
        };
        let filters = plan::filters(plan.layout, loudness);
        let (input, feed) = source.read()?;
        let whole = Encode {
            input,
            read_rate: config.read_rate,
            from: plan.clip.start,
            to: plan.clip.to,
            chapters: chapters.as_deref(),
            filters: filters.clone(),
            sample_rate: plan.sample_rate,
            bitrate: request.bitrate,
            metadata: plan.tags.metadata(),
            output: &audio,
        };
        let encoding = encode_checked(
            config,
            &whole,
            feed,
            plan.clip.seconds(),
            &mut progress,
            deadline,
        );
        // Told while ffmpeg writes; or once it is done, when it was quicker.
        let encoded = AtomicBool::new(false);
        let announcing = async {
            if let Some(written) = request.written {
                let title = plan.tags.title.clone();
                written::announce(written, attempt_id, &audio, frames_told, title, &encoded).await;
            }
        };
        tokio::pin!(encoding, announcing);
        let duration = tokio::select! {
            biased;
            duration = &mut encoding => {
                let duration = duration?;
                encoded.store(true, Ordering::Release);
                (&mut announcing).await;
                duration
            }
            () = &mut announcing => encoding.await?,
        };
        Ok::<_, ConvertError>((duration, filters))
    };
    let passes = async {
        if cover_beside(&media, plan.cover) {
            tokio::try_join!(frames, whole)
        } else {
            let frames = frames.await?;
            Ok((frames, whole.await?))
        }
    };
    let ((), (frames, (duration, filters))) = tokio::try_join!(checked, passes)?;
    let tag = |path: PathBuf| {
        let frames = frames.clone();
        async move {
            if frames.is_empty() {
                return Ok(());
            }
            id3::add_frames(&path, frames)
                .await
                .map_err(ConvertError::Workspace)
        }
    };
    tag(audio.clone()).await?;

    let mut tracks = Vec::with_capacity(plan.tracks.len());
    let count = plan.tracks.len();
    for (number, span) in (1u32..).zip(&plan.tracks) {
        let path = request.dir.join(format!("track-{number:03}.mp3"));
        let end = plan.clip.start + span.end;
        // The last track reads as far as the whole clip does.
        let to = if end >= plan.clip.end {
            plan.clip.to
        } else {
            Some(end)
        };
        let tags = plan::Tags {
            title: Some(span.title.clone()),
            ..plan.tags.clone()
        };
        let mut metadata = tags.metadata();
        metadata.push(("track", format!("{number}/{count}")));
        let (input, feed) = source.read()?;
        let run = Encode {
            input,
            read_rate: config.read_rate,
            from: plan.clip.start + span.start,
            to,
            // A track has no chapters of its own.
            chapters: None,
            filters: filters.clone(),
            sample_rate: plan.sample_rate,
            bitrate: request.bitrate,
            metadata,
            output: &path,
        };
        let duration =
            encode_checked(config, &run, feed, span.seconds(), &mut progress, deadline).await?;
        tag(path.clone()).await?;
        tracks.push(TrackFile {
            number,
            title: span.title.clone(),
            start: span.start as f64 / 1000.0,
            end: span.end as f64 / 1000.0,
            path,
            duration,
        });
    }
    // Only now: a pass that fails after the whole MP3 is finished fails the conversion, and
    // what was stored of it must go with it.
    if let Some(written) = request.written {
        written.send_if_modified(|written| written.finish(attempt_id));
    }
    progress.raise(100);
    Ok(Converted {
        audio,
        duration,
        title: plan.tags.title.clone(),
        tracks,
        early: Early::No,
    })
}

/// Writes the cover from `from`; `None` when there is no frame to take (a video that ends
/// before its audio) or ffmpeg cannot make one: the MP3 is worth more than its picture.
async fn extract_cover(
    config: &ConvertConfig,
    (input, feed): (Read<'_>, Option<Feed<'_>>),
    from: cover::CoverFrom,
    dir: &Path,
    progress: &mut Progress<'_>,
    deadline: Deadline,
) -> Result<Option<PathBuf>, ConvertError> {
    let path = dir.join("cover.jpg");
    let extracted = run(
        config,
        Run {
            args: cover::args(input, from, &path),
            log: Log::Errors,
            seconds: 0.0,
            paths: &[input.path().unwrap_or(&path), &path],
            feed,
        },
        progress,
        deadline,
    )
    .await;
    match extracted {
        Ok(_) => {
            let size = tokio::fs::metadata(&path).await.map_or(0, |m| m.len());
            Ok((size > 0).then_some(path))
        }
        Err(e @ (ConvertError::Timeout(_) | ConvertError::Spawn { .. })) => Err(e),
        // Read early, the whole file may still give one: the attempt is redone.
        Err(e) if feed.is_some() => Err(doubtful(e)),
        Err(e) => {
            tracing::warn!(error = %e, ?from, "no cover: ffmpeg could not take the picture");
            Ok(None)
        }
    }
}

/// The loudness measuring pass; `None` when loudnorm printed no figures.
async fn measure(
    config: &ConvertConfig,
    source: Source<'_>,
    plan: &Plan,
    target: i8,
    progress: &mut Progress<'_>,
    deadline: Deadline,
) -> Result<Option<loudness::Measured>, ConvertError> {
    let filters = plan::filters(plan.layout, Some(loudness::measure_filter(target)))
        .expect("a loudnorm filter");
    let (input, feed) = source.read()?;
    let log = run(
        config,
        Run {
            args: plan::measure_args(input, config.read_rate, &plan.clip, &filters),
            log: Log::Info,
            seconds: plan.clip.seconds(),
            paths: &[source.path],
            feed,
        },
        progress,
        deadline,
    )
    .await?;
    let measured = loudness::parse(&log);
    if measured.is_none() {
        let failed = ConvertError::Failed {
            status: "exit status: 0".into(),
            stderr: "the loudness measurement printed no figures".into(),
            signalled: false,
        };
        return judged(Err(failed), feed.is_some());
    }
    Ok(measured)
}

/// One encoding run of `expected` seconds, its MP3 checked; returns the MP3's duration.
async fn encode_checked(
    config: &ConvertConfig,
    encode: &Encode<'_>,
    feed: Option<Feed<'_>>,
    expected: f64,
    progress: &mut Progress<'_>,
    deadline: Deadline,
) -> Result<f64, ConvertError> {
    let fed = feed.is_some();
    judged(
        encode_and_check(config, encode, feed, expected, progress, deadline).await,
        fed,
    )
}

async fn encode_and_check(
    config: &ConvertConfig,
    encode: &Encode<'_>,
    feed: Option<Feed<'_>>,
    expected: f64,
    progress: &mut Progress<'_>,
    deadline: Deadline,
) -> Result<f64, ConvertError> {
    let mut paths: Vec<&Path> = encode.input.path().into_iter().collect();
    paths.push(encode.output);
    paths.extend(encode.chapters);
    run(
        config,
        Run {
            args: plan::encode_args(encode),
            log: Log::Errors,
            seconds: expected,
            paths: &paths,
            feed,
        },
        progress,
        deadline,
    )
    .await?;
    // The MP3's own header tells its length; ffprobe is asked where it has none (or the file
    // cannot be opened, which ffprobe then reports as before). An MP3 cut short on disk is
    // the workspace's failure.
    let header = match info::read(encode.output).await {
        Ok(header) => header,
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            return Err(ConvertError::Workspace(e));
        }
        Err(e) => {
            tracing::debug!(error = %e, "the MP3's header could not be read");
            None
        }
    };
    let (got, sample_rate) = match header {
        Some(length) => (length.seconds(), Some(length.sample_rate)),
        None => {
            let mp3 = probe(config, encode.output).await?;
            (mp3.audio_seconds().unwrap_or(0.0), mp3.sample_rate())
        }
    };
    if !durations_match(expected, got, sample_rate) {
        return Err(ConvertError::DurationMismatch { expected, got });
    }
    Ok(got)
}

/// Whether `got` is within 1% of `expected`, or within five MP3 frames for short clips: an MP3
/// carries a few frames of encoder delay and padding whatever its length, which is more than 1%
/// of a short clip. A frame is 1152 samples at 32 kHz and above, 576 below (MPEG-2 and 2.5), so
/// the slack is 130 ms at 44.1 kHz but 360 ms at 8 kHz. Measured from 3.000 s AAC tracks: 3.056
/// s at 44.1 kHz, 3.096 s at 16 kHz, 3.187 s at 11.025 kHz, 3.240 s at 8 kHz (3.3 frames).
pub fn durations_match(expected: f64, got: f64, sample_rate: Option<u32>) -> bool {
    let rate = f64::from(sample_rate.unwrap_or(44_100));
    let frame = if rate >= 32_000.0 { 1152.0 } else { 576.0 } / rate;
    // An MP3 of no audio is never the clip, however short.
    got > 0.0 && (got - expected).abs() <= (expected * 0.01).max(5.0 * frame)
}

/// The program's file name only: where it is installed is the server's business.
fn program_name(path: &Path) -> String {
    path.file_name()
        .unwrap_or(path.as_os_str())
        .to_string_lossy()
        .into_owned()
}

/// ffmpeg's complaint without what is nobody else's business: the paths of the server's files
/// (a line's leading `<path>: ` is dropped, other mentions become "the input" or `<path>`) and
/// the `[demuxer @ 0x...]` pointer prefixes; repeated lines once, joined with "; ".
fn tidy(stderr: &str, paths: &[&Path]) -> String {
    let paths: Vec<String> = paths
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let mut kept: Vec<String> = Vec::new();
    for line in stderr.lines() {
        let mut line = line.trim();
        if line.starts_with('[')
            && let Some(end) = line.find("] ")
            && line[..end].contains(" @ ")
        {
            line = line[end + 2..].trim_start();
        }
        for path in &paths {
            for named in [format!("file:{path}: "), format!("{path}: ")] {
                if let Some(rest) = line.strip_prefix(named.as_str()) {
                    line = rest;
                }
            }
        }
        let mut line = line.to_owned();
        for path in &paths {
            line = line
                .replace(&format!("file:{path}"), "the input")
                .replace(path.as_str(), "the input");
        }
        let line = line
            .split(' ')
            .map(|word| {
                if looks_like_path(word) {
                    "<path>"
                } else {
                    word
                }
            })
            .collect::<Vec<_>>()
            .join(" ");
        if !line.is_empty() && !kept.contains(&line) {
            kept.push(line);
        }
    }
    kept.join("; ")
}

/// Whether a word of ffmpeg's output names a file: `/a/b`, `file:...`, `'/a/b':`...
fn looks_like_path(word: &str) -> bool {
    let word = word.trim_matches(|c: char| matches!(c, '\'' | '"' | ':' | ',' | '(' | ')'));
    word.starts_with("file:") || (word.starts_with('/') && word[1..].contains('/'))
}

/// Where a `-progress` line says ffmpeg is.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Position {
    /// This many seconds into its output.
    At(f64),
    /// Done.
    End,
}

/// The position from one `-progress` line, if it carries one.
fn progress_line(line: &str) -> Option<Position> {
    if line == "progress=end" {
        return Some(Position::End);
    }
    // `out_time_ms` is in microseconds too (an old ffmpeg misnomer); prefer `out_time_us`.
    let micros: f64 = line.strip_prefix("out_time_us=")?.trim().parse().ok()?;
    if !micros.is_finite() || micros < 0.0 {
        return None;
    }
    Some(Position::At(micros / 1e6))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines_become_positions() {
        assert_eq!(
            progress_line("out_time_us=1500000"),
            Some(Position::At(1.5))
        );
        assert_eq!(progress_line("progress=end"), Some(Position::End));
        assert_eq!(progress_line("out_time_us=N/A"), None);
        assert_eq!(progress_line("out_time_us=-5"), None);
        assert_eq!(progress_line("frame=10"), None);
    }

    #[test]
    fn progress_spans_all_passes_and_never_goes_back() {
        let (sender, receiver) = watch::channel(0u8);
        // Measure 3 s, then encode 3 s.
        let mut progress = Progress {
            sender: &sender,
            total: 6.0,
            done: 0.0,
        };
        progress.line("out_time_us=1500000", 3.0);
        assert_eq!(*receiver.borrow(), 25);
        // Past the pass's end counts as its end, not further.
        progress.line("out_time_us=9000000", 3.0);
        assert_eq!(*receiver.borrow(), 50);
        progress.line("out_time_us=1000000", 3.0);
        assert_eq!(*receiver.borrow(), 50, "went back");
        progress.line("progress=end", 3.0);
        progress.passed(3.0);
        assert_eq!(*receiver.borrow(), 50);
        progress.line("out_time_us=0", 3.0);
        assert_eq!(*receiver.borrow(), 50, "the second pass started from 0");
        progress.line("out_time_us=2999999", 3.0);
        assert_eq!(*receiver.borrow(), 99);
        progress.passed(3.0);
        assert_eq!(*receiver.borrow(), 99, "100 is for the end of the whole");
        progress.raise(100);
        assert_eq!(*receiver.borrow(), 100);
        // A pass without progress (the cover) moves nothing.
        let (sender, receiver) = watch::channel(0u8);
        let mut progress = Progress {
            sender: &sender,
            total: 3.0,
            done: 0.0,
        };
        progress.line("out_time_us=1000000", 0.0);
        progress.passed(0.0);
        assert_eq!(*receiver.borrow(), 0);
    }

    #[test]
    fn an_info_log_fails_with_its_error_lines_only() {
        let log = "[info] Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'file:/w/video':\n\
                   [info]   Metadata:\n\
                   [info]     title           : my secret title\n\
                   [aac @ 0x55] [error] Error decoding frame\n\
                   [fatal] Conversion failed!\n";
        assert_eq!(
            error_lines(log),
            "[aac @ 0x55] Error decoding frame\nConversion failed!"
        );
        assert_eq!(
            tidy(&error_lines(log), &[Path::new("/w/video")]),
            "Error decoding frame; Conversion failed!"
        );
    }

    #[test]
    fn messages_show_no_server_paths() {
        let input = Path::new("/tmp/mp3conv-job-Ab12/video");
        let output = Path::new("/tmp/mp3conv-job-Ab12/audio.mp3");
        let stderr = "[mov,mp4,m4a,3gp,3g2,mj2 @ 0x55d1c0a0] moov atom not found\n\
                      file:/tmp/mp3conv-job-Ab12/video: Invalid data found when processing input\n\
                      [mp3 @ 0x1] could not write /tmp/mp3conv-job-Ab12/audio.mp3\n\
                      Error opening '/srv/data/other': No such file\n";
        assert_eq!(
            tidy(stderr, &[input, output]),
            "moov atom not found; Invalid data found when processing input; \
             could not write the input; Error opening <path> No such file"
        );
        assert_eq!(
            tidy(
                "/data/blobs/videos/x: Invalid data",
                &[Path::new("/data/blobs/videos/x")]
            ),
            "Invalid data"
        );
    }

    #[test]
    fn inputs_are_confined_to_their_file() {
        let strings = |kind| {
            confined_input(Path::new("/w/http:x"), kind)
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            strings(Input::Source),
            [
                "-max_pixels",
                "35389440",
                "-protocol_whitelist",
                "file",
                "-format_whitelist",
                FORMATS,
                "-i",
                "file:/w/http:x"
            ]
        );
        // The converter's own file: one demuxer, forced.
        assert_eq!(
            strings(Input::Chapters),
            [
                "-f",
                "ffmetadata",
                "-protocol_whitelist",
                "file",
                "-format_whitelist",
                "ffmetadata",
                "-i",
                "file:/w/http:x"
            ]
        );
        // A source read early: its stdin, the `pipe` protocol only.
        let piped: Vec<String> = confined_input(Read::Stdin, Input::Source)
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            piped,
            [
                "-max_pixels",
                "35389440",
                "-protocol_whitelist",
                "pipe",
                "-format_whitelist",
                FORMATS,
                "-i",
                "pipe:0"
            ]
        );
        let formats: Vec<&str> = FORMATS.split(',').collect();
        for refused in [
            "hls",
            "dash",
            "concat",
            "image2",
            "webm_dash_manifest",
            "lavfi",
            "ffmetadata",
            "jpeg_pipe",
        ] {
            assert!(!formats.contains(&refused), "{refused}");
        }
        assert!(formats.iter().all(|f| !f.is_empty() && !f.contains(' ')));
    }

    #[test]
    fn only_covers_from_small_frames_are_taken_beside_the_encoding() {
        use cover::CoverFrom::{Frame, Image, Picture, Thumbnail};
        let visual = |index, size| probe::Visual { index, size };
        let media = MediaInfo {
            video: Some(visual(0, Some((1920, 1080)))),
            picture: Some(visual(2, Some((3000, 3000)))),
            ..MediaInfo::default()
        };
        let around = Thumbnail {
            stream: 0,
            around: 1.0,
        };
        assert!(cover_beside(&media, Some(around)));
        assert!(cover_beside(&media, Some(Frame { stream: 0, at: 1.0 })));
        // Larger than Full HD, of unknown size, a page's image, no cover.
        assert!(!cover_beside(&media, Some(Picture { stream: 2 })));
        let unknown = MediaInfo {
            video: Some(visual(0, None)),
            ..MediaInfo::default()
        };
        assert!(!cover_beside(&unknown, Some(around)));
        assert!(!cover_beside(&media, Some(Image)));
        assert!(!cover_beside(&media, None));
    }

    #[test]
    fn durations_must_agree_within_one_percent() {
        let cd = Some(44_100);
        assert!(durations_match(600.0, 605.9, cd));
        assert!(!durations_match(600.0, 606.1, cd));
        assert!(!durations_match(600.0, 0.026, cd));
        // No audio is never a clip, not even one shorter than five frames.
        assert!(!durations_match(0.1, 0.0, cd));
        assert!(durations_match(3.0, 3.056, cd));
        assert!(!durations_match(3.0, 3.2, cd));
        assert!(durations_match(3.0, 3.056, None));
        // Low sample rates: longer frames, so more delay and padding (measured, see above).
        assert!(durations_match(3.0, 3.240, Some(8_000)));
        assert!(durations_match(3.0, 3.187, Some(11_025)));
        assert!(durations_match(3.0, 3.096, Some(16_000)));
        assert!(!durations_match(3.0, 2.5, Some(8_000)));
        assert!(!durations_match(3.0, 3.5, Some(8_000)));
        assert!(!durations_match(3.0, 2.5, cd));
    }
}
