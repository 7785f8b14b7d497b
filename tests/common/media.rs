//! Media with tags, chapters and set loudness for the conversion options' tests, made by ffmpeg
//! from its lavfi sources at test time, and ffmpeg's own measures of the MP3s that come back:
//! the decoded length, the integrated loudness (the `ebur128` filter), ffprobe's view.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use serde_json::Value;

/// The tags and chapters of [`tagged`], as an `ffmetadata` file: what an MP4 from an editor
/// carries (beside the container's own `major_brand`, `compatible_brands`, `encoder`).
pub const TAGGED_METADATA: &str = ";FFMETADATA1
title=Source Title
artist=Source Artist
album=Source Album
date=2019-05-04
comment=Source comment

[CHAPTER]
TIMEBASE=1/1000
START=0
END=2000
title=One

[CHAPTER]
TIMEBASE=1/1000
START=2000
END=4500
title=Two

[CHAPTER]
TIMEBASE=1/1000
START=4500
END=6000
title=Three
";

/// The chapters of [`tagged`]: (title, start, end) in seconds.
pub const TAGGED_CHAPTERS: [(&str, f64, f64); 3] =
    [("One", 0.0, 2.0), ("Two", 2.0, 4.5), ("Three", 4.5, 6.0)];

/// Makes `file` in this process's media directory with ffmpeg `args` (once), beside
/// `extra` files (name, content) the arguments may name.
fn made(file: &str, extra: &[(&str, &str)], args: &[&str]) -> PathBuf {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    static LOCK: Mutex<()> = Mutex::new(());
    let _one_at_a_time = LOCK.lock().unwrap();
    let dir = DIR.get_or_init(|| tempfile::tempdir().expect("temp dir"));
    let path = dir.path().join(file);
    if !path.exists() {
        for (name, content) in extra {
            std::fs::write(dir.path().join(name), content).unwrap();
        }
        let status = Command::new("ffmpeg")
            .current_dir(dir.path())
            .args(["-v", "error", "-y"])
            .args(args)
            .arg(&path)
            .status()
            .expect("running ffmpeg");
        assert!(status.success(), "ffmpeg could not make {file}");
    }
    path
}

/// A 6 s MP4 (320x240 H.264, stereo AAC at 44.1 kHz) with the tags and three chapters of
/// [`TAGGED_METADATA`].
pub fn tagged() -> PathBuf {
    made(
        "tagged.mp4",
        &[("tagged.ffmeta", TAGGED_METADATA)],
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x240:rate=10:duration=6",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:duration=6",
            "-i",
            "tagged.ffmeta",
            "-map",
            "0",
            "-map",
            "1",
            "-map_metadata",
            "2",
            "-map_chapters",
            "2",
            "-ac",
            "2",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
        ],
    )
}

/// A 4 s 1280x720 MP4 with mono AAC at 48 kHz.
pub fn wide() -> PathBuf {
    made(
        "wide.mp4",
        &[],
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=1280x720:rate=25:duration=4",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=330:duration=4:sample_rate=48000",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
        ],
    )
}

/// A 6 s audio file (M4A) far below any loudness target: a sine 30 dB down, about -52 LUFS.
pub fn quiet() -> PathBuf {
    made(
        "quiet.m4a",
        &[],
        &[
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:duration=6,volume=-30dB",
            "-c:a",
            "aac",
        ],
    )
}

/// A 6 s stereo audio file (M4A) far above any loudness target: full-scale white noise, about
/// -3 LUFS.
pub fn loud() -> PathBuf {
    made(
        "loud.m4a",
        &[],
        &[
            "-f",
            "lavfi",
            "-i",
            "anoisesrc=color=white:amplitude=1:duration=6",
            "-ac",
            "2",
            "-c:a",
            "aac",
        ],
    )
}

/// `bytes` in a temporary file, for ffmpeg and ffprobe.
fn file(bytes: &[u8]) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), bytes).expect("writing the media");
    file
}

/// ffprobe's JSON for a file: `format` (with its `tags`), `streams`, `chapters`.
pub fn probe_path(path: &Path) -> Value {
    let output = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-print_format",
            "json",
            "-show_format",
            "-show_streams",
            "-show_chapters",
        ])
        .arg(path)
        .output()
        .expect("running ffprobe");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("ffprobe JSON")
}

/// ffprobe's JSON for the media `bytes`.
pub fn probe(bytes: &[u8]) -> Value {
    let file = file(bytes);
    probe_path(file.path())
}

/// How long the audio of `bytes` plays, in seconds: the samples ffmpeg decodes (an MP3's
/// encoder delay and padding left out, as its LAME header says), not the container's figure.
pub fn decoded_seconds(bytes: &[u8]) -> f64 {
    let file = file(bytes);
    let output = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(file.path())
        .args([
            "-map", "0:a:0", "-ac", "1", "-ar", "48000", "-f", "s16le", "-",
        ])
        .output()
        .expect("running ffmpeg");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout.len() as f64 / 2.0 / 48_000.0
}

/// The integrated loudness of the audio of `path` in LUFS, as ffmpeg's `ebur128` filter
/// measures it (EBU R128 / ITU BS.1770).
pub fn loudness_path(path: &Path) -> f64 {
    let output = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostats", "-i"])
        .arg(path)
        .args([
            "-map",
            "0:a:0",
            "-af",
            "ebur128=framelog=verbose",
            "-f",
            "null",
            "-",
        ])
        .output()
        .expect("running ffmpeg");
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{log}");
    // The summary's "Integrated loudness:" is followed by "I: -16.2 LUFS".
    let summary = &log[log
        .rfind("Integrated loudness:")
        .expect("an ebur128 summary")..];
    summary
        .lines()
        .find_map(|line| line.trim().strip_prefix("I:"))
        .and_then(|rest| rest.trim().trim_end_matches("LUFS").trim().parse().ok())
        .unwrap_or_else(|| panic!("no integrated loudness in {summary}"))
}

/// The integrated loudness of the audio `bytes`, see [`loudness_path`].
pub fn loudness(bytes: &[u8]) -> f64 {
    let file = file(bytes);
    loudness_path(file.path())
}
