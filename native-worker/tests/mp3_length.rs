//! The MP3's length read from its own Info header (`convert::info`) against ffprobe's, on
//! MP3s the real ffmpeg writes at every MPEG version, in mono and stereo, at a constant and a
//! variable bitrate, with a tag before the audio.

use std::path::Path;
use std::process::{Command, Stdio};

use native_worker::config::ConvertConfig;
use native_worker::convert::{info, probe};

/// Encodes 7.3 s of a tone at `rate` Hz in `channels` into `path`, with `quality` arguments.
fn encode(path: &Path, rate: u32, channels: u32, quality: &[&str]) {
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg("sine=frequency=440:duration=7.3")
        .args(["-ar", &rate.to_string(), "-ac", &channels.to_string()])
        .args(["-c:a", "libmp3lame"])
        .args(quality)
        .args(["-id3v2_version", "3", "-metadata", "title=A tone"])
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success(), "ffmpeg could not make {}", path.display());
}

#[tokio::test]
async fn the_header_gives_the_length_ffprobe_reports() {
    let dir = tempfile::tempdir().unwrap();
    let config = ConvertConfig::default();
    for (rate, channels, quality) in [
        (44_100, 2, ["-b:a", "128k"]),
        (48_000, 1, ["-b:a", "64k"]),
        (32_000, 2, ["-q:a", "4"]),
        (22_050, 2, ["-b:a", "64k"]),
        (16_000, 1, ["-q:a", "6"]),
        (11_025, 1, ["-b:a", "32k"]),
        (8_000, 2, ["-b:a", "24k"]),
    ] {
        let path = dir.path().join(format!("{rate}-{channels}.mp3"));
        encode(&path, rate, channels, &quality);
        let length = info::read(&path)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("no header at {rate} Hz, {channels} channels"));
        let probed = probe(&config, &path).await.unwrap();
        assert_eq!(Some(length.sample_rate), probed.sample_rate());
        assert!(length.bytes.is_some(), "ffmpeg counts the bytes too");
        let reported = probed.audio_seconds().expect("ffprobe gives a length");
        // ffprobe prints microseconds.
        assert!(
            (length.seconds() - reported).abs() < 2e-6,
            "{rate} Hz, {channels} channels: {} from the header, {reported} from ffprobe",
            length.seconds()
        );
        assert!(
            (7.3..7.3 + 0.4).contains(&reported),
            "a 7.3 s tone lasts {reported} s"
        );
    }
}

#[tokio::test]
async fn an_mp3_written_to_a_pipe_has_no_header_and_a_cut_one_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    // ffmpeg cannot go back to a pipe to count the frames: it writes no header.
    let piped = dir.path().join("piped.mp3");
    let out = std::fs::File::create(&piped).unwrap();
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-f", "lavfi", "-i", "sine=duration=3"])
        .args(["-c:a", "libmp3lame", "-f", "mp3", "pipe:1"])
        .stdout(Stdio::from(out))
        .status()
        .unwrap();
    assert!(status.success());
    assert!(std::fs::metadata(&piped).unwrap().len() > 10_000);
    assert_eq!(info::read(&piped).await.unwrap(), None);

    // The header counts the frames and bytes encoded, not what the file still holds: cut in
    // half (a full disk, where ffmpeg still exits 0), ffprobe reports the whole length, and
    // the header's byte count tells the cut.
    let whole = dir.path().join("whole.mp3");
    encode(&whole, 44_100, 2, &["-b:a", "128k"]);
    let bytes = std::fs::read(&whole).unwrap();
    let cut = dir.path().join("cut.mp3");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let counted = info::read(&whole).await.unwrap().expect("a header");
    let probed = probe(&ConvertConfig::default(), &cut).await.unwrap();
    assert!((counted.seconds() - probed.audio_seconds().unwrap()).abs() < 2e-6);
    let error = info::read(&cut).await.unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::UnexpectedEof, "{error}");
    // A file of nothing but a tag has no header.
    let empty = dir.path().join("empty.mp3");
    std::fs::write(&empty, b"ID3\x03\0\0\0\0\0\x00").unwrap();
    assert_eq!(info::read(&empty).await.unwrap(), None);
}
