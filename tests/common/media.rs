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

/// The chapters of [`book`]: (title, start, end) in seconds.
pub const BOOK_CHAPTERS: [(&str, f64, f64); 3] =
    [("One", 0.0, 2.0), ("Two", 2.0, 4.0), ("Three", 4.0, 6.0)];

/// H.264 and AAC, as most uploads are.
const H264_AAC: [&str; 8] = [
    "-c:v",
    "libx264",
    "-preset",
    "ultrafast",
    "-pix_fmt",
    "yuv420p",
    "-c:a",
    "aac",
];

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
            ][..],
            &H264_AAC,
        ]
        .concat(),
    )
}

/// A 4 s 1280x720 MP4 with mono AAC at 48 kHz.
pub fn wide() -> PathBuf {
    made(
        "wide.mp4",
        &[],
        &[
            &[
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=1280x720:rate=25:duration=4",
                "-f",
                "lavfi",
                "-i",
                "sine=frequency=330:duration=4:sample_rate=48000",
            ][..],
            &H264_AAC,
        ]
        .concat(),
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

/// A 6 s video (160x120 H.264, AAC) named `book.mp4`, with the three 2 s chapters of
/// [`BOOK_CHAPTERS`]: an audiobook's shape, for splitting.
pub fn book() -> PathBuf {
    let metadata: String = std::iter::once(";FFMETADATA1\n".to_owned())
        .chain(BOOK_CHAPTERS.iter().map(|(title, start, end)| {
            format!(
                "[CHAPTER]\nTIMEBASE=1/1000\nSTART={}\nEND={}\ntitle={title}\n",
                start * 1000.0,
                end * 1000.0
            )
        }))
        .collect();
    let book = made(
        "book.mp4",
        &[("book.txt", &metadata)],
        &[
            &[
                "-f",
                "lavfi",
                "-i",
                "testsrc=size=160x120:rate=10:duration=6",
                "-f",
                "lavfi",
                "-i",
                "sine=frequency=440:duration=6",
                "-i",
                "book.txt",
                "-map",
                "0",
                "-map",
                "1",
                "-map_chapters",
                "2",
            ][..],
            &H264_AAC,
        ]
        .concat(),
    );
    assert_eq!(
        probe_path(&book)["chapters"].as_array().map(Vec::len),
        Some(3)
    );
    book
}

/// The duration ffprobe gives a file (`format.duration`), in seconds.
pub fn duration(info: &Value) -> f64 {
    info["format"]["duration"]
        .as_str()
        .and_then(|d| d.parse().ok())
        .expect("a duration")
}

/// How long ffprobe finds bare ffmpeg's MP3 of `video` (from `start` to `end` seconds, as input
/// options, when given): the reference for an MP3's length, since ffprobe counts the encoder's
/// delay and padding in it (6.06 s for a 6 s source).
pub fn bare_mp3_seconds(video: &Path, clip: Option<(f64, f64)>) -> f64 {
    let dir = tempfile::tempdir().expect("temp dir");
    let bare = dir.path().join("bare.mp3");
    let mut ffmpeg = Command::new("ffmpeg");
    ffmpeg.args(["-v", "error", "-y"]);
    if let Some((start, end)) = clip {
        ffmpeg.args(["-ss", &start.to_string(), "-to", &end.to_string()]);
    }
    let status = ffmpeg
        .arg("-i")
        .arg(video)
        .args(["-vn", "-c:a", "libmp3lame"])
        .arg(&bare)
        .status()
        .expect("running ffmpeg");
    assert!(
        status.success(),
        "bare ffmpeg failed on {}",
        video.display()
    );
    duration(&probe_path(&bare))
}

/// The entries of a ZIP whose entries are stored (no compression) with their sizes in their
/// local headers, as the tracks' ZIP is: (name, bytes), in order.
pub fn stored_zip_entries(zip: &[u8]) -> Vec<(String, Vec<u8>)> {
    let u16_at = |at: usize| u16::from_le_bytes([zip[at], zip[at + 1]]) as usize;
    let u32_at = |at: usize| u32::from_le_bytes(zip[at..at + 4].try_into().unwrap()) as usize;
    let mut entries = Vec::new();
    let mut at = 0;
    while zip[at..].starts_with(b"PK\x03\x04") {
        assert_eq!(u16_at(at + 8), 0, "entry {} is compressed", entries.len());
        let size = u32_at(at + 18);
        assert_eq!(size, u32_at(at + 22), "stored: compressed size = size");
        let (name_len, extra_len) = (u16_at(at + 26), u16_at(at + 28));
        let name = String::from_utf8(zip[at + 30..at + 30 + name_len].to_vec()).unwrap();
        let data = at + 30 + name_len + extra_len;
        entries.push((name, zip[data..data + size].to_vec()));
        at = data + size;
    }
    assert!(
        zip[at..].starts_with(b"PK\x01\x02"),
        "the central directory follows the entries"
    );
    entries
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
