//! ffmpeg and ffprobe as supervised child processes.

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

/// Why a conversion failed.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// ffprobe cannot read the file as media.
    #[error("not a media file ffmpeg can read: {0}")]
    NotMedia(String),
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
            Self::NotMedia(_) | Self::NoAudio | Self::DurationMismatch { .. } => true,
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
    let program = config.ffprobe.display().to_string();
    let child = Command::new(&config.ffprobe)
        .args([
            "-v",
            "error",
            "-print_format",
            "json",
            "-show_format",
            "-show_streams",
        ])
        .arg(path)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(PROBE_TIMEOUT, child)
        .await
        .map_err(|_| ConvertError::Timeout(PROBE_TIMEOUT))?
        .map_err(|source| ConvertError::Spawn {
            program: program.clone(),
            source,
        })?;
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    if !output.status.success() {
        return Err(ConvertError::NotMedia(stderr));
    }
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
    command
        .arg("-i")
        .arg(job.input)
        .args(["-map", "0:a:0", "-vn", "-c:a", "libmp3lame"])
        .args(job.bitrate.ffmpeg_args())
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
    let program = config.ffmpeg.display().to_string();
    let mut child = command.spawn().map_err(|source| ConvertError::Spawn {
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
        return Err(ConvertError::Failed {
            status: status.to_string(),
            signalled: status.code().is_none(),
            stderr,
        });
    }
    let mp3 = probe(config, job.output).await?;
    let got = mp3.audio_seconds().unwrap_or(0.0);
    if !durations_match(expected, got) {
        return Err(ConvertError::DurationMismatch { expected, got });
    }
    Ok(Converted { duration: got })
}

/// Whether `got` is within 1% of `expected`, or within 100 ms for clips under 10 s: an MP3
/// carries up to about four frames (~100 ms) of encoder delay and padding whatever its length,
/// which is more than 1% of a short clip (measured: 3.056 s of MP3 from a 3.000 s AAC track).
pub fn durations_match(expected: f64, got: f64) -> bool {
    (got - expected).abs() <= (expected * 0.01).max(0.1)
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
    fn durations_must_agree_within_one_percent() {
        assert!(durations_match(600.0, 605.9));
        assert!(!durations_match(600.0, 606.1));
        assert!(!durations_match(600.0, 0.026));
        assert!(durations_match(3.0, 3.056));
        assert!(!durations_match(3.0, 3.2));
        assert!(!durations_match(3.0, 2.5));
    }
}
