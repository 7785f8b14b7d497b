//! What ffprobe says about a file: asked once per source, and once per MP3 made to check it.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::AsyncReadExt;
use tokio::process::Command;

use super::{
    ConvertError, Feed, Input, REFUSED_MARK, Read, STDERR_LIMIT, TOO_MANY_PIXELS_MARK,
    confined_input, judged, program_name, stdin_for, tidy, while_fed,
};
use crate::config::ConvertConfig;

/// How long ffprobe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(60);
/// Most bytes of ffprobe's JSON read: a file with a hundred thousand chapters or megabytes of
/// tags is not worth holding in memory to convert.
const OUTPUT_LIMIT: u64 = 16 * 1024 * 1024;

/// A file's tags, keys lowercased (Matroska writes `ARTIST`, MP4 `artist`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SourceTags(BTreeMap<String, String>);

impl SourceTags {
    /// The tag `key` (lowercase), if the file has it.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// Tags as a file lists them, keys lowercased (the first of two spellings wins).
    pub(crate) fn from_raw(raw: BTreeMap<String, String>) -> Self {
        let mut tags = BTreeMap::new();
        for (key, value) in raw {
            tags.entry(key.to_lowercase()).or_insert(value);
        }
        Self(tags)
    }

    fn or(mut self, other: Self) -> Self {
        for (key, value) in other.0 {
            self.0.entry(key).or_insert(value);
        }
        self
    }
}

/// A chapter of the source, in seconds of the source.
#[derive(Debug, Clone, PartialEq)]
pub struct Chapter {
    /// Where it begins.
    pub start: f64,
    /// Where it ends.
    pub end: f64,
    /// Its `title` tag.
    pub title: Option<String>,
}

/// The first audio stream.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AudioStream {
    /// Its duration in seconds, if known.
    pub duration: Option<f64>,
    /// Its sample rate in Hz, if known.
    pub sample_rate: Option<u32>,
    /// How many channels it has, if known.
    pub channels: Option<u32>,
}

/// A video stream or picture: its index and, if known, its size in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Visual {
    pub index: u32,
    /// Width and height.
    pub size: Option<(u32, u32)>,
}

impl Visual {
    /// Pixels in one frame, if known.
    pub fn pixels(&self) -> Option<u64> {
        self.size.map(|(w, h)| u64::from(w) * u64::from(h))
    }
}

/// What ffprobe says about a file.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MediaInfo {
    /// The demuxer's names (`mov,mp4,m4a,3gp,3g2,mj2`).
    pub format: String,
    /// Container duration in seconds.
    pub duration: Option<f64>,
    /// The first audio stream, if there is one.
    pub audio: Option<AudioStream>,
    /// The file's own tags (title, artist, ... and container internals, which are not used).
    pub tags: SourceTags,
    /// Its chapters, as the file lists them.
    pub chapters: Vec<Chapter>,
    /// The first video stream that moves (not a cover picture).
    pub video: Option<Visual>,
    /// The first attached picture (cover art of an audio file or a video).
    pub picture: Option<Visual>,
}

impl MediaInfo {
    /// Best known length of the audio, in seconds.
    pub fn audio_seconds(&self) -> Option<f64> {
        self.audio
            .as_ref()
            .and_then(|a| a.duration)
            .or(self.duration)
    }

    /// Best known length of the video (or the whole file), in seconds.
    pub fn seconds(&self) -> Option<f64> {
        self.duration.or_else(|| self.audio_seconds())
    }

    /// Sample rate of the audio, if known.
    pub fn sample_rate(&self) -> Option<u32> {
        self.audio.as_ref().and_then(|a| a.sample_rate)
    }
}

#[derive(Deserialize)]
struct ProbeOutput {
    #[serde(default)]
    streams: Vec<ProbeStream>,
    format: Option<ProbeFormat>,
    #[serde(default)]
    chapters: Vec<ProbeChapter>,
}

#[derive(Deserialize)]
struct ProbeStream {
    index: Option<u32>,
    codec_type: Option<String>,
    duration: Option<String>,
    sample_rate: Option<String>,
    channels: Option<u32>,
    width: Option<u32>,
    height: Option<u32>,
    #[serde(default)]
    disposition: BTreeMap<String, i64>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct ProbeFormat {
    #[serde(default)]
    format_name: String,
    duration: Option<String>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct ProbeChapter {
    start_time: Option<String>,
    end_time: Option<String>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
}

fn seconds(s: Option<&String>) -> Option<f64> {
    s.and_then(|s| s.parse::<f64>().ok())
        .filter(|d| d.is_finite() && *d > 0.0)
}

fn position(s: Option<&String>) -> Option<f64> {
    s.and_then(|s| s.parse::<f64>().ok())
        .filter(|d| d.is_finite() && *d >= 0.0)
}

fn visual(stream: &ProbeStream) -> Option<Visual> {
    Some(Visual {
        index: stream.index?,
        size: stream
            .width
            .zip(stream.height)
            .filter(|(w, h)| *w > 0 && *h > 0),
    })
}

/// Reads ffprobe's JSON.
fn parse(json: &[u8]) -> Result<Option<MediaInfo>, serde_json::Error> {
    let parsed: ProbeOutput = serde_json::from_slice(json)?;
    let Some(format) = parsed.format else {
        return Ok(None);
    };
    let audio = parsed
        .streams
        .iter()
        .find(|s| s.codec_type.as_deref() == Some("audio"));
    let is_picture = |s: &ProbeStream| s.disposition.get("attached_pic").is_some_and(|d| *d != 0);
    let video_streams = || {
        parsed
            .streams
            .iter()
            .filter(|s| s.codec_type.as_deref() == Some("video"))
    };
    let mut tags = SourceTags::from_raw(format.tags);
    // Ogg keeps its comments (title, artist...) on the stream; other containers' stream tags
    // name the track ("English stereo"), not the work.
    if format.format_name == "ogg"
        && let Some(audio) = audio
    {
        tags = tags.or(SourceTags::from_raw(audio.tags.clone()));
    }
    let chapters = parsed
        .chapters
        .iter()
        .filter_map(|c| {
            Some(Chapter {
                start: position(c.start_time.as_ref())?,
                end: position(c.end_time.as_ref())?,
                title: c
                    .tags
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("title"))
                    .map(|(_, v)| v.clone()),
            })
        })
        .collect();
    Ok(Some(MediaInfo {
        duration: seconds(format.duration.as_ref()),
        format: format.format_name,
        audio: audio.map(|s| AudioStream {
            duration: seconds(s.duration.as_ref()),
            sample_rate: s
                .sample_rate
                .as_deref()
                .and_then(|rate| rate.parse().ok())
                .filter(|rate| *rate > 0),
            channels: s.channels.filter(|c| *c > 0),
        }),
        tags,
        chapters,
        video: video_streams().find(|s| !is_picture(s)).and_then(visual),
        picture: video_streams().find(|s| is_picture(s)).and_then(visual),
    }))
}

/// Runs ffprobe on `path`, confined to it like every input (see the module doc of
/// [`super`]).
pub async fn probe(config: &ConvertConfig, path: &Path) -> Result<MediaInfo, ConvertError> {
    probe_read(config, path.into(), None).await
}

/// Runs ffprobe on `read`, its stdin fed by `feed` when that is where it reads.
pub(super) async fn probe_read(
    config: &ConvertConfig,
    read: Read<'_>,
    feed: Option<Feed<'_>>,
) -> Result<MediaInfo, ConvertError> {
    judged(probe_run(config, read, feed).await, feed.is_some())
}

async fn probe_run(
    config: &ConvertConfig,
    read: Read<'_>,
    feed: Option<Feed<'_>>,
) -> Result<MediaInfo, ConvertError> {
    let program = program_name(&config.ffprobe);
    let spawn_error = |source| ConvertError::Spawn {
        program: program.clone(),
        source,
    };
    let mut command = Command::new(&config.ffprobe);
    command
        .args([
            "-v",
            "error",
            "-print_format",
            "json",
            "-show_format",
            "-show_streams",
            "-show_chapters",
        ])
        .args(confined_input(read, Input::Source))
        .stdin(stdin_for(feed))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    super::confine(config, &mut command);
    let run = async {
        let mut child = crate::child::spawn(command).await.map_err(spawn_error)?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let stdin = feed.map(|feed| (feed, child.stdin.take().expect("stdin is piped")));
        let read_stdout = async {
            let mut out = Vec::new();
            stdout.take(OUTPUT_LIMIT + 1).read_to_end(&mut out).await?;
            Ok::<_, std::io::Error>(out)
        };
        let read_stderr = async {
            let mut err = Vec::new();
            stderr.take(STDERR_LIMIT).read_to_end(&mut err).await?;
            Ok::<_, std::io::Error>(err)
        };
        let output = async {
            let (out, err) = tokio::try_join!(read_stdout, read_stderr)?;
            if out.len() as u64 > OUTPUT_LIMIT {
                // Dropping the child kills it.
                return Ok((None, out, err));
            }
            let status = child.wait().await?;
            Ok::<_, std::io::Error>((Some(status), out, err))
        };
        while_fed(output, stdin).await?.map_err(spawn_error)
    };
    let started = std::time::Instant::now();
    let (status, stdout, stderr) = tokio::time::timeout(PROBE_TIMEOUT, run)
        .await
        .map_err(|_| ConvertError::Timeout(PROBE_TIMEOUT))??;
    tracing::debug!(
        ms = started.elapsed().as_millis() as u64,
        early = feed.is_some(),
        "ffprobe pass"
    );
    let paths: Vec<&Path> = read.path().into_iter().collect();
    let Some(status) = status else {
        return Err(ConvertError::NotMedia(
            "the file describes itself at too great a length (chapters, tags or streams)".into(),
        ));
    };
    let stderr = String::from_utf8_lossy(&stderr);
    if !status.success() {
        if stderr.contains(REFUSED_MARK) {
            return Err(ConvertError::UnsupportedFormat);
        }
        if stderr.contains(TOO_MANY_PIXELS_MARK) {
            return Err(ConvertError::FramesTooLarge);
        }
        return Err(ConvertError::NotMedia(tidy(&stderr, &paths)));
    }
    parse(&stdout)
        .map_err(|e| ConvertError::NotMedia(format!("unreadable ffprobe output: {e}")))?
        .ok_or_else(|| ConvertError::NotMedia(tidy(&stderr, &paths)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_finds_audio_pictures_tags_and_chapters() {
        let json = br#"{
            "streams": [
                {"index": 0, "codec_type": "video", "width": 1280, "height": 720,
                 "disposition": {"attached_pic": 0}},
                {"index": 1, "codec_type": "audio", "duration": "6.000000", "sample_rate": "48000",
                 "channels": 6, "tags": {"title": "English 5.1"}},
                {"index": 2, "codec_type": "video", "disposition": {"attached_pic": 1}}
            ],
            "chapters": [
                {"start_time": "0.000000", "end_time": "2.000000", "tags": {"title": "One"}},
                {"start_time": "2.000000", "end_time": "6.000000"}
            ],
            "format": {"format_name": "matroska,webm", "duration": "6.010000",
                       "tags": {"ARTIST": "Band", "title": "Song", "ENCODER": "Lavf"}}
        }"#;
        let info = parse(json).unwrap().unwrap();
        assert_eq!(
            info.video,
            Some(Visual {
                index: 0,
                size: Some((1280, 720))
            })
        );
        assert_eq!(info.video.unwrap().pixels(), Some(921_600));
        assert_eq!(
            info.picture,
            Some(Visual {
                index: 2,
                size: None
            })
        );
        let audio = info.audio.clone().unwrap();
        assert_eq!(
            (audio.duration, audio.sample_rate, audio.channels),
            (Some(6.0), Some(48_000), Some(6))
        );
        assert_eq!(info.audio_seconds(), Some(6.0));
        assert_eq!(info.seconds(), Some(6.01));
        assert_eq!(info.tags.get("artist"), Some("Band"));
        // A Matroska track's name is not the work's title.
        assert_eq!(info.tags.get("title"), Some("Song"));
        assert_eq!(info.chapters.len(), 2);
        assert_eq!(info.chapters[0].title.as_deref(), Some("One"));
        assert_eq!(info.chapters[1].title, None);
        assert_eq!(info.chapters[1].end, 6.0);
    }

    #[test]
    fn ogg_comments_live_on_the_stream() {
        let json = br#"{
            "streams": [{"index": 0, "codec_type": "audio", "tags": {"TITLE": "Ogg song"}}],
            "format": {"format_name": "ogg", "duration": "1.0"}
        }"#;
        let info = parse(json).unwrap().unwrap();
        assert_eq!(info.tags.get("title"), Some("Ogg song"));
        assert_eq!(info.video, None);
        assert_eq!(info.picture, None);
    }

    #[test]
    fn no_format_is_no_media() {
        assert_eq!(parse(br#"{"streams": []}"#).unwrap(), None);
    }
}
