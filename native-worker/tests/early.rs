//! Conversions that start while their video is still being copied out of storage
//! (`convert::early`), with the real ffmpeg on videos made for the purpose. The test is the
//! copy: it writes the first half, waits until the encoding has written MP3 from it (so the
//! early start is certain, not a matter of timing), then writes the rest. (ffmpeg's progress
//! reports cannot tell: blocked on a read of its only input, it reports nothing.)

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mp3conv_contract::job::Bitrate;
use mp3conv_contract::options::Options;
use native_worker::config::ConvertConfig;
use native_worker::convert::{self, ConvertError, Converted, Early, Request};
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;

/// Longer than any of these conversions takes: a conversion that waits for bytes that never
/// come fails the test instead of hanging it.
const HANG: Duration = Duration::from_secs(120);

/// An H.264/AAC MP4 at `path`: `seconds` of a test picture of `size` and a tone, with
/// `extra` arguments (inputs, maps, tags, muxer flags) before the output.
fn ffmpeg_mp4(path: &Path, size: &str, seconds: u32, extra: &[&std::ffi::OsStr]) {
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("testsrc2=size={size}:rate=25:duration={seconds}"))
        .args(["-f", "lavfi", "-i"])
        .arg(format!("sine=frequency=300:duration={seconds}"))
        .args(extra)
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
        ])
        .args(["-c:a", "aac"])
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success(), "ffmpeg could not make {}", path.display());
}

/// A 30-second MP4 with two chapters and tags, muxed with `movflags` (the index last without
/// any).
fn video(dir: &Path, name: &str, movflags: Option<&str>) -> PathBuf {
    let chapters = dir.join("chapters.txt");
    std::fs::write(
        &chapters,
        ";FFMETADATA1\n[CHAPTER]\nTIMEBASE=1/1000\nSTART=0\nEND=12000\ntitle=Opening\n\
         [CHAPTER]\nTIMEBASE=1/1000\nSTART=12000\nEND=30000\ntitle=The rest\n",
    )
    .unwrap();
    let path = dir.join(name);
    let mut extra: Vec<&std::ffi::OsStr> = vec!["-i".as_ref(), chapters.as_os_str()];
    extra.extend(
        [
            "-map",
            "0",
            "-map",
            "1",
            "-map_chapters",
            "2",
            "-metadata",
            "title=Early",
            "-metadata",
            "artist=The Copy",
        ]
        .map(std::ffi::OsStr::new),
    );
    if let Some(flags) = movflags {
        extra.extend(["-movflags", flags].map(std::ffi::OsStr::new));
    }
    ffmpeg_mp4(&path, "320x240", 30, &extra);
    path
}

/// What the test's copy does once it has written the first half of the source.
#[derive(Debug, Clone, Copy, PartialEq)]
enum AfterHalf {
    /// Writes the rest once the encoding has written MP3 from the first half.
    WaitThenRest,
    /// Writes the rest straight away.
    Rest,
    /// Fails once the encoding has written MP3 from the first half.
    WaitThenFail,
    /// Writes the rest only after the conversion's time limit is over, once the encoding has
    /// written MP3 from the first half: storage slower than the limit allows.
    WaitPastTheLimitThenRest(Duration),
}

/// MP3 bytes that show the encoding under way: four seconds at 192 kbit/s, from a first half
/// of fifteen.
const UNDER_WAY: u64 = 4 * 24_000;

struct Outcome {
    converted: Result<Converted, ConvertError>,
    /// MP3 bytes written before the second half came.
    mp3_on_half: u64,
}

/// Size of the file at `path` (0 while there is none).
fn size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// Converts `source` into `dir` while the test copies it there, as `after_half` says.
async fn convert_while_copied(source: &Path, dir: &Path, after_half: AfterHalf) -> Outcome {
    convert_while_copied_with(&ConvertConfig::default(), source, dir, after_half).await
}

/// [`convert_while_copied`] with `config`.
async fn convert_while_copied_with(
    config: &ConvertConfig,
    source: &Path,
    dir: &Path,
    after_half: AfterHalf,
) -> Outcome {
    let data = std::fs::read(source).unwrap();
    let input = dir.join("video");
    let (made, copying) = convert::copying();
    let (progress, _) = watch::channel(0u8);
    let mp3 = dir.join("audio.mp3");
    // A conversion over before it wrote anything from the first half ends the wait.
    let over = AtomicBool::new(false);
    let copied = async {
        let mut file = tokio::fs::File::create(&input).await.unwrap();
        let half = data.len() / 2;
        file.write_all(&data[..half]).await.unwrap();
        file.flush().await.unwrap();
        made.wrote(half as u64);
        if after_half != AfterHalf::Rest {
            // A condition on the file ffmpeg writes, looked at every 20 ms; HANG bounds it.
            let mut look = tokio::time::interval(Duration::from_millis(20));
            while size(&mp3) < UNDER_WAY && !over.load(Ordering::SeqCst) {
                look.tick().await;
            }
        }
        let mp3_on_half = size(&mp3);
        match after_half {
            AfterHalf::WaitThenFail => {
                drop(made);
                return mp3_on_half;
            }
            // The limit counts from the early start, before the MP3 began: it is over once
            // this much more time has passed.
            AfterHalf::WaitPastTheLimitThenRest(limit) => tokio::time::sleep(limit).await,
            AfterHalf::WaitThenRest | AfterHalf::Rest => {}
        }
        file.write_all(&data[half..]).await.unwrap();
        file.flush().await.unwrap();
        made.finished(data.len() as u64);
        mp3_on_half
    };
    let options = Options::default();
    let request = Request {
        input: &input,
        copying: Some(&copying),
        dir,
        bitrate: Bitrate::Constant(192),
        options: &options,
        max_duration_secs: None,
        naming: "clip".into(),
        written: None,
    };
    let converting = async {
        let converted = convert::convert(config, request, &progress).await;
        over.store(true, Ordering::SeqCst);
        converted
    };
    let (mp3_on_half, converted) =
        tokio::time::timeout(HANG, async { tokio::join!(copied, converting) })
            .await
            .expect("the conversion or the copy hung");
    Outcome {
        converted,
        mp3_on_half,
    }
}

/// Asserts that `converted` is the very MP3 the whole file at `source` gives, converted the
/// ordinary way (the encoder is bit-exact).
async fn assert_same_as_whole(converted: &Converted, source: &Path) {
    let whole = tempfile::tempdir().unwrap();
    let expected = converted_whole(source, whole.path()).await;
    assert!(
        std::fs::read(&converted.audio).unwrap() == expected,
        "not the MP3 of the whole file"
    );
}

/// The MP3 of the whole file at `source`, converted the ordinary way.
async fn converted_whole(source: &Path, dir: &Path) -> Vec<u8> {
    let options = Options::default();
    let request = Request {
        input: source,
        copying: None,
        dir,
        bitrate: Bitrate::Constant(192),
        options: &options,
        max_duration_secs: None,
        naming: "clip".into(),
        written: None,
    };
    let (progress, _) = watch::channel(0u8);
    let converted = convert::convert(&ConvertConfig::default(), request, &progress)
        .await
        .unwrap();
    assert_eq!(converted.early, Early::No);
    std::fs::read(converted.audio).unwrap()
}

/// What ffprobe says of an MP3: its chapters and tags.
fn probed(mp3: &Path) -> serde_json::Value {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_chapters",
            "-show_format",
            "-of",
            "json",
        ])
        .arg(mp3)
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The chapter titles of an MP3, as ffprobe reads them.
fn chapter_titles(mp3: &Path) -> Vec<String> {
    probed(mp3)["chapters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["tags"]["title"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_first_mp4_converts_while_it_is_copied() {
    let dir = tempfile::tempdir().unwrap();
    let source = video(dir.path(), "faststart.mp4", Some("+faststart"));
    let work = tempfile::tempdir().unwrap();
    let outcome = convert_while_copied(&source, work.path(), AfterHalf::WaitThenRest).await;
    let converted = outcome.converted.unwrap();
    assert_eq!(converted.early, Early::Kept);
    // Encoded from the first half only: a quarter of the whole MP3 at least, not all of it.
    let whole_size = size(&converted.audio);
    assert!(
        outcome.mp3_on_half >= UNDER_WAY && outcome.mp3_on_half < whole_size,
        "{} of {whole_size} bytes",
        outcome.mp3_on_half
    );
    assert_eq!(
        chapter_titles(&converted.audio),
        ["Opening", "The rest"],
        "the chapters came with the early probe"
    );
    let tags = &probed(&converted.audio)["format"]["tags"];
    assert_eq!(
        (&tags["title"], &tags["artist"]),
        (&"Early".into(), &"The Copy".into())
    );
    assert_same_as_whole(&converted, &source).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_pipe_cannot_show_is_converted_again_from_the_whole_file() {
    // QuickTime chapters only (no Nero `chpl` in the index): ffmpeg reads them by seeking
    // into the media, which a pipe cannot do, so the early probe sees none.
    let dir = tempfile::tempdir().unwrap();
    let source = video(
        dir.path(),
        "qt-chapters.mp4",
        Some("+faststart+disable_chpl"),
    );
    let work = tempfile::tempdir().unwrap();
    let outcome = convert_while_copied(&source, work.path(), AfterHalf::WaitThenRest).await;
    let converted = outcome.converted.unwrap();
    assert_eq!(converted.early, Early::Redone);
    assert_eq!(
        chapter_titles(&converted.audio),
        ["Opening", "The rest"],
        "the whole file's chapters"
    );
    assert_same_as_whole(&converted, &source).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_at_the_end_waits_for_the_whole_copy() {
    let dir = tempfile::tempdir().unwrap();
    let source = video(dir.path(), "index-last.mp4", None);
    let head = std::fs::read(&source).unwrap();
    assert!(!convert::index_first(&head), "ffmpeg put the index last");
    let work = tempfile::tempdir().unwrap();
    let outcome = convert_while_copied(&source, work.path(), AfterHalf::Rest).await;
    let converted = outcome.converted.unwrap();
    assert_eq!(converted.early, Early::No);
    assert_eq!(outcome.mp3_on_half, 0);
    assert_same_as_whole(&converted, &source).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_that_fails_half_way_fails_the_conversion_as_unread() {
    let dir = tempfile::tempdir().unwrap();
    let source = video(dir.path(), "faststart.mp4", Some("+faststart"));
    let work = tempfile::tempdir().unwrap();
    let outcome = convert_while_copied(&source, work.path(), AfterHalf::WaitThenFail).await;
    assert!(outcome.mp3_on_half >= UNDER_WAY, "it started early");
    let error = outcome.converted.unwrap_err();
    assert!(matches!(error, ConvertError::Unread(_)), "{error:?}");
    // Not the video's fault: retried, as storage trouble.
    assert_eq!(error.code(), "storage_unavailable");
    assert!(!error.is_permanent());
}

/// A two-minute faststart MP4 of small frames, without chapters.
fn long_video(dir: &Path) -> PathBuf {
    let path = dir.join("long.mp4");
    ffmpeg_mp4(
        &path,
        "160x120",
        120,
        &["-movflags", "+faststart"].map(std::ffi::OsStr::new),
    );
    path
}

/// Points an audio chunk near the end of a faststart MP4 without chapters back at its first
/// one (the last `stco` of the index is the audio track's): the file reads it by seeking
/// back, which a pipe cannot do.
fn point_a_chunk_back(data: &mut [u8]) {
    let word = |at: usize| u32::from_be_bytes(data[at..at + 4].try_into().unwrap()) as usize;
    let moov = word(0);
    let moov_end = moov + word(moov);
    let stco = data[..moov_end]
        .windows(4)
        .rposition(|w| w == b"stco")
        .unwrap()
        - 4;
    let count = word(stco + 12);
    let entry = |k: usize| stco + 16 + 4 * k;
    // Half a percent of the chunks: less of the audio than the duration check's 1% slack.
    let moved = entry(count - (count / 200).max(1));
    let first = data[entry(0)..entry(0) + 4].to_vec();
    data[moved..moved + 4].copy_from_slice(&first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipe_that_cannot_seek_back_fails_the_early_start_which_is_redone() {
    let dir = tempfile::tempdir().unwrap();
    let mut data = std::fs::read(long_video(dir.path())).unwrap();
    point_a_chunk_back(&mut data);
    let source = dir.path().join("back.mp4");
    std::fs::write(&source, &data).unwrap();
    let work = tempfile::tempdir().unwrap();
    let outcome = convert_while_copied(&source, work.path(), AfterHalf::WaitThenRest).await;
    let converted = outcome.converted.unwrap();
    // ffmpeg would end the pipe short and exit 0, an MP3 within the duration check's slack:
    // `-xerror` makes the early encoding fail, and the file gives the whole audio.
    assert_eq!(converted.early, Early::Redone);
    assert_same_as_whole(&converted, &source).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_slower_than_the_time_limit_redoes_the_early_start_on_the_whole_file() {
    let dir = tempfile::tempdir().unwrap();
    let source = video(dir.path(), "faststart.mp4", Some("+faststart"));
    let work = tempfile::tempdir().unwrap();
    // 3 s + 0.1 s per second of the 30-second clip: 6 s for the whole conversion, which
    // takes well under one here.
    let config = ConvertConfig {
        timeout_base: Duration::from_secs(3),
        timeout_per_media_second: 0.1,
        ..ConvertConfig::default()
    };
    let limit = Duration::from_secs(6);
    let outcome = convert_while_copied_with(
        &config,
        &source,
        work.path(),
        AfterHalf::WaitPastTheLimitThenRest(limit + Duration::from_secs(1)),
    )
    .await;
    assert!(outcome.mp3_on_half >= UNDER_WAY, "it started early");
    // Not a conversion_timeout: the time went to the copy, and the whole file converts
    // within its own limit.
    let converted = outcome.converted.unwrap();
    assert_eq!(converted.early, Early::Redone);
    assert_same_as_whole(&converted, &source).await;
}
