//! ffmpeg and ffprobe as supervised child processes.
//!
//! An upload is read as one self-contained media file and nothing else: ffmpeg and ffprobe
//! open it as `file:<path>` with only the `file` protocol and the container formats in
//! [`FORMATS`] allowed. Playlists (HLS), manifests (DASH), file lists (ffconcat) and image
//! sequences would otherwise make ffmpeg read whatever files or URLs they name, such as another
//! user's video or a file on the worker's disk, into the caller's MP3.

use std::ffi::OsString;
use std::io;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Command;
use tokio::sync::watch;

use crate::config::ConvertConfig;
use crate::job::Bitrate;

/// Bytes of ffmpeg's stderr kept for the error message.
const STDERR_LIMIT: u64 = 16 * 1024;
/// How long ffprobe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(60);

/// The demuxers an input may be read with (ffmpeg's `-format_whitelist`): containers that hold
/// their media themselves. ffmpeg matches any of a demuxer's names, so `mov` covers
/// mp4/m4a/3gp/3g2/mj2 and `matroska` covers webm. Deliberately absent: `hls`, `dash`,
/// `concat`, `image2` and the other demuxers that open further files or URLs.
pub const FORMATS: &str = "mov,matroska,avi,flv,mpegts,mpeg,ogg,asf,wav,w64,aiff,caf,mp3,aac,\
                           ac3,eac3,flac,wv,amr,rm,nut,au,dts";

/// What ffmpeg prints when a demuxer or protocol outside the allow-lists is asked for.
const REFUSED_MARK: &str = "not on whitelist";

/// Input options that confine ffmpeg or ffprobe to the file at `path`: the `file` protocol
/// only (no `http:`, `data:`, `subfile:`... for anything the input names), the demuxers in
/// [`FORMATS`], and the path spelled `file:<path>` so no other protocol is guessed from it.
fn confined_input(path: &Path) -> [OsString; 5] {
    let mut input = OsString::from("file:");
    input.push(path);
    [
        "-protocol_whitelist".into(),
        "file".into(),
        "-format_whitelist".into(),
        FORMATS.into(),
        input,
    ]
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
}

impl ConvertError {
    /// Stable code for the job's `error.code`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotMedia(_) => "not_media",
            Self::UnsupportedFormat => "unsupported_format",
            Self::NoAudio => "no_audio",
            Self::Failed { .. } => "conversion_failed",
            Self::Timeout(_) => "conversion_timeout",
            Self::DurationMismatch { .. } => "duration_mismatch",
            Self::Spawn { .. } => "converter_unavailable",
        }
    }

    /// Whether retrying cannot help: the same input gives the same result.
    pub fn is_permanent(&self) -> bool {
        match self {
            Self::NotMedia(_)
            | Self::UnsupportedFormat
            | Self::NoAudio
            | Self::DurationMismatch { .. } => true,
            Self::Failed { signalled, .. } => !signalled,
            Self::Timeout(_) | Self::Spawn { .. } => false,
        }
    }
}

/// What ffprobe says about a file.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaInfo {
    /// Container duration in seconds.
    pub duration: Option<f64>,
    /// Duration of the first audio stream, if it has one and it is known.
    pub audio_duration: Option<f64>,
    /// Whether there is an audio stream.
    pub has_audio: bool,
    /// Sample rate of the first audio stream in Hz, if known.
    pub sample_rate: Option<u32>,
}

impl MediaInfo {
    /// Best known length of the audio, in seconds.
    pub fn audio_seconds(&self) -> Option<f64> {
        self.audio_duration.or(self.duration)
    }
}

#[derive(Deserialize)]
struct ProbeOutput {
    #[serde(default)]
    streams: Vec<ProbeStream>,
    format: Option<ProbeFormat>,
}

#[derive(Deserialize)]
struct ProbeStream {
    codec_type: Option<String>,
    duration: Option<String>,
    sample_rate: Option<String>,
}

#[derive(Deserialize)]
struct ProbeFormat {
    duration: Option<String>,
}

fn seconds(s: Option<&String>) -> Option<f64> {
    s.and_then(|s| s.parse::<f64>().ok())
        .filter(|d| d.is_finite() && *d > 0.0)
}

/// Runs ffprobe on `path`.
pub async fn probe(config: &ConvertConfig, path: &Path) -> Result<MediaInfo, ConvertError> {
    let program = program_name(&config.ffprobe);
    let mut command = Command::new(&config.ffprobe);
    command
        .args([
            "-v",
            "error",
            "-print_format",
            "json",
            "-show_format",
            "-show_streams",
        ])
        .args(confined_input(path))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = async { crate::child::spawn(command).await?.wait_with_output().await };
    let output = tokio::time::timeout(PROBE_TIMEOUT, child)
        .await
        .map_err(|_| ConvertError::Timeout(PROBE_TIMEOUT))?
        .map_err(|source| ConvertError::Spawn {
            program: program.clone(),
            source,
        })?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        if stderr.contains(REFUSED_MARK) {
            return Err(ConvertError::UnsupportedFormat);
        }
        return Err(ConvertError::NotMedia(tidy(&stderr, &[path])));
    }
    let stderr = tidy(&stderr, &[path]);
    let parsed: ProbeOutput = serde_json::from_slice(&output.stdout)
        .map_err(|e| ConvertError::NotMedia(format!("unreadable ffprobe output: {e}")))?;
    let format = parsed.format.ok_or(ConvertError::NotMedia(stderr))?;
    let audio = parsed
        .streams
        .iter()
        .find(|s| s.codec_type.as_deref() == Some("audio"));
    Ok(MediaInfo {
        duration: seconds(format.duration.as_ref()),
        audio_duration: audio.and_then(|s| seconds(s.duration.as_ref())),
        has_audio: audio.is_some(),
        sample_rate: audio
            .and_then(|s| s.sample_rate.as_deref())
            .and_then(|rate| rate.parse().ok())
            .filter(|rate| *rate > 0),
    })
}

/// A conversion request.
#[derive(Debug, Clone)]
pub struct Conversion<'a> {
    /// Seekable input file.
    pub input: &'a Path,
    /// Where the MP3 goes.
    pub output: &'a Path,
    /// Quality.
    pub bitrate: Bitrate,
    /// ID3 title.
    pub title: &'a str,
}

/// The finished MP3 as ffprobe measured it.
#[derive(Debug, Clone, PartialEq)]
pub struct Converted {
    /// MP3 duration in seconds.
    pub duration: f64,
}

/// Converts the input's first audio stream to MP3 while probing it, reports progress (0-100)
/// into `progress`, then checks the MP3's duration against the source's.
///
/// The input must be a seekable file: MP4s with their index at the end cannot be read from a
/// pipe (ffmpeg then writes a near-empty MP3 and still exits 0).
pub async fn to_mp3(
    config: &ConvertConfig,
    job: Conversion<'_>,
    progress: &watch::Sender<u8>,
) -> Result<Converted, ConvertError> {
    let mut command = Command::new(&config.ffmpeg);
    command.args(["-hide_banner", "-nostdin", "-nostats", "-loglevel", "error"]);
    if let Some(rate) = config.read_rate {
        command.arg("-readrate").arg(rate.to_string());
    }
    let [protocols, allowed, formats, listed, input] = confined_input(job.input);
    command
        .args([protocols, allowed, formats, listed])
        .arg("-i")
        .arg(input)
        .args(["-map", "0:a:0", "-vn", "-c:a", "libmp3lame"])
        .args(crate::job::ffmpeg_args(job.bitrate))
        .arg("-metadata")
        .arg(format!("title={}", job.title))
        .args([
            "-id3v2_version",
            "3",
            "-progress",
            "pipe:1",
            "-f",
            "mp3",
            "-y",
        ])
        .arg(job.output)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
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
    // ffprobe runs while ffmpeg starts converting: its answer (the duration, whether there is
    // any audio) is needed only for progress, the time limit and the final check. A video it
    // refuses stops ffmpeg (dropping the child kills it).
    let stderr_task = tokio::spawn(async move {
        let mut kept = Vec::new();
        let mut stderr = stderr;
        let _ = (&mut stderr)
            .take(STDERR_LIMIT)
            .read_to_end(&mut kept)
            .await;
        // Keep draining so ffmpeg never blocks on a full pipe.
        let _ = tokio::io::copy(&mut stderr, &mut tokio::io::sink()).await;
        String::from_utf8_lossy(&kept).trim().to_owned()
    });
    let source = probe(config, job.input).await?;
    if !source.has_audio {
        return Err(ConvertError::NoAudio);
    }
    let expected = source
        .audio_seconds()
        .ok_or_else(|| ConvertError::NotMedia("the audio has no known duration".into()))?;
    let slowdown = config.read_rate.map_or(1.0, |rate| (1.0 / rate).max(1.0));
    let timeout = config.timeout_base
        + Duration::from_secs_f64(expected * config.timeout_per_media_second * slowdown);
    let run = async {
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(percent) = progress_line(&line, expected) {
                progress.send_if_modified(|p| {
                    let changed = *p != percent;
                    *p = percent;
                    changed
                });
            }
        }
        child.wait().await
    };
    let status = match tokio::time::timeout(timeout, run).await {
        Ok(status) => status.map_err(|source| ConvertError::Spawn { program, source })?,
        // Dropping `run` drops the child, which kills it.
        Err(_) => return Err(ConvertError::Timeout(timeout)),
    };
    let stderr = stderr_task.await.unwrap_or_default();
    if !status.success() {
        if stderr.contains(REFUSED_MARK) {
            return Err(ConvertError::UnsupportedFormat);
        }
        let stderr = tidy(&stderr, &[job.input, job.output]);
        return Err(ConvertError::Failed {
            status: status.to_string(),
            signalled: status.code().is_none(),
            stderr,
        });
    }
    let mp3 = probe(config, job.output).await?;
    let got = mp3.audio_seconds().unwrap_or(0.0);
    if !durations_match(expected, got, mp3.sample_rate) {
        return Err(ConvertError::DurationMismatch { expected, got });
    }
    Ok(Converted { duration: got })
}

/// Whether `got` is within 1% of `expected`, or within five MP3 frames for short clips: an MP3
/// carries a few frames of encoder delay and padding whatever its length, which is more than 1%
/// of a short clip. A frame is 1152 samples at 32 kHz and above, 576 below (MPEG-2 and 2.5), so
/// the slack is 130 ms at 44.1 kHz but 360 ms at 8 kHz. Measured from 3.000 s AAC tracks: 3.056
/// s at 44.1 kHz, 3.096 s at 16 kHz, 3.187 s at 11.025 kHz, 3.240 s at 8 kHz (3.3 frames).
pub fn durations_match(expected: f64, got: f64, sample_rate: Option<u32>) -> bool {
    let rate = f64::from(sample_rate.unwrap_or(44_100));
    let frame = if rate >= 32_000.0 { 1152.0 } else { 576.0 } / rate;
    (got - expected).abs() <= (expected * 0.01).max(5.0 * frame)
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

/// Percent done from one `-progress` line, if it carries the position.
fn progress_line(line: &str, total_seconds: f64) -> Option<u8> {
    if line == "progress=end" {
        return Some(100);
    }
    // `out_time_ms` is in microseconds too (an old ffmpeg misnomer); prefer `out_time_us`.
    let micros: f64 = line.strip_prefix("out_time_us=")?.trim().parse().ok()?;
    if total_seconds <= 0.0 || !micros.is_finite() || micros < 0.0 {
        return None;
    }
    let percent = (micros / 1e6 / total_seconds * 100.0).floor();
    Some(percent.clamp(0.0, 99.0) as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines_become_percentages() {
        assert_eq!(progress_line("out_time_us=1500000", 3.0), Some(50));
        assert_eq!(progress_line("out_time_us=9000000", 3.0), Some(99));
        assert_eq!(progress_line("progress=end", 3.0), Some(100));
        assert_eq!(progress_line("out_time_us=N/A", 3.0), None);
        assert_eq!(progress_line("out_time_us=-5", 3.0), None);
        assert_eq!(progress_line("frame=10", 3.0), None);
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
        let args = confined_input(Path::new("/w/http:x"));
        assert_eq!(args[0], "-protocol_whitelist");
        assert_eq!(args[1], "file");
        assert_eq!(args[2], "-format_whitelist");
        assert_eq!(args[4], "file:/w/http:x");
        let formats: Vec<&str> = FORMATS.split(',').collect();
        for refused in [
            "hls",
            "dash",
            "concat",
            "image2",
            "webm_dash_manifest",
            "lavfi",
        ] {
            assert!(!formats.contains(&refused), "{refused}");
        }
        assert!(formats.iter().all(|f| !f.is_empty() && !f.contains(' ')));
    }

    #[test]
    fn durations_must_agree_within_one_percent() {
        let cd = Some(44_100);
        assert!(durations_match(600.0, 605.9, cd));
        assert!(!durations_match(600.0, 606.1, cd));
        assert!(!durations_match(600.0, 0.026, cd));
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
