//! Conversion options end to end, as a client uses them: `POST /v1/jobs` with the options as
//! multipart fields before the file, through the host from the repository's `spin.toml`, the
//! gateway and the native worker, in `mp3conv up` and in the cluster's shape (host + worker on
//! MariaDB, RabbitMQ and the MongoDB-compatible server). Every MP3 that comes back is checked
//! with ffmpeg's own tools: its decoded length, its loudness (the `ebur128` filter), and
//! ffprobe's view of its tags, picture and chapters. The sources are made at test time from
//! ffmpeg's lavfi sources (`common::media`).

mod common;

use std::path::Path;

use common::api::{System, expect, send};
use common::media;
use reqwest::Method;
use serde_json::Value;

/// `POST /v1/jobs`: the option `fields` first, then the file at `path` named `filename`.
/// Returns the accepted job's id.
async fn upload(
    system: &System,
    token: &str,
    path: &Path,
    filename: &str,
    fields: &[(&str, &str)],
) -> String {
    let mut form = reqwest::multipart::Form::new();
    for (name, value) in fields {
        form = form.text(name.to_string(), value.to_string());
    }
    form = form.part(
        "file",
        reqwest::multipart::Part::bytes(std::fs::read(path).unwrap())
            .file_name(filename.to_owned())
            .mime_str("video/mp4")
            .unwrap(),
    );
    let job = expect(
        system
            .authed(token, Method::POST, "/v1/jobs")
            .multipart(form),
        202,
    )
    .await;
    job["id"].as_str().expect("a job id").to_owned()
}

/// The job once settled, which must be `done`.
async fn done(system: &System, token: &str, id: &str) -> Value {
    let job = system.settled(token, id).await;
    assert_eq!(job["status"], "done", "{job}");
    job
}

/// An MP3 the gateway serves at `path`.
async fn download(system: &System, token: &str, path: &str) -> Vec<u8> {
    let response = send(system.authed(token, Method::GET, path)).await;
    assert_eq!(response.status(), 200, "{path}");
    assert_eq!(response.headers()["content-type"], "audio/mpeg", "{path}");
    response.bytes().await.unwrap().to_vec()
}

/// A job's whole MP3.
async fn audio(system: &System, token: &str, id: &str) -> Vec<u8> {
    download(system, token, &format!("/v1/jobs/{id}/audio")).await
}

/// The MP3's tag `key`, as ffprobe reads it.
fn tag<'a>(info: &'a Value, key: &str) -> Option<&'a str> {
    info["format"]["tags"][key].as_str()
}

/// The MP3's picture stream, if it has one.
fn picture(info: &Value) -> Option<&Value> {
    info["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["codec_type"] == "video")
}

/// The first audio stream.
fn sound(info: &Value) -> &Value {
    info["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["codec_type"] == "audio")
        .expect("an audio stream")
}

/// An ID3v2.3 tag leads the file.
fn assert_id3v23(mp3: &[u8]) {
    assert_eq!(&mp3[..4], b"ID3\x03", "not an ID3v2.3 tag");
}

/// The picture is an embedded JPEG front cover of `width` x `height`.
fn assert_cover(info: &Value, width: u64, heights: std::ops::RangeInclusive<u64>) {
    let picture = picture(info).unwrap_or_else(|| panic!("no picture: {info}"));
    assert_eq!(picture["codec_name"], "mjpeg", "{picture}");
    assert_eq!(picture["disposition"]["attached_pic"], 1, "{picture}");
    assert_eq!(picture["tags"]["comment"], "Cover (front)", "{picture}");
    assert_eq!(picture["width"], width, "{picture}");
    let height = picture["height"].as_u64().unwrap();
    assert!(heights.contains(&height), "{picture}");
}

/// The container's internals an MP4 carries: none may reach the MP3.
const INTERNALS: [&str; 4] = [
    "major_brand",
    "minor_version",
    "compatible_brands",
    "encoder",
];

/// A clip, tags (the source's by default, the options' when given, none for `""`), the cover
/// (a frame of the video, scaled to fit 600x600 but never up; none when asked), channels and
/// sample rate.
async fn clips_tags_covers_and_channels(system: &System) {
    let token = system.user("options").await;
    let (tagged, wide) = (media::tagged(), media::wide());
    let source = media::probe_path(&tagged);
    assert_eq!(source["format"]["tags"]["major_brand"], "isom", "{source}");

    let trimmed = upload(
        system,
        &token,
        &tagged,
        "Talk.mp4",
        &[("start", "1.5"), ("end", "00:00:04.250")],
    )
    .await;
    let defaults = upload(system, &token, &tagged, "Talk.mp4", &[]).await;
    let explicit = upload(
        system,
        &token,
        &tagged,
        "Talk.mp4",
        &[
            ("title", "My title"),
            ("artist", ""),
            ("album", "My album"),
            ("year", "2024"),
            ("comment", ""),
            ("cover", "5"),
        ],
    )
    .await;
    let wide_cover = upload(system, &token, &wide, "Wide.mp4", &[("channels", "stereo")]).await;
    let no_cover = upload(system, &token, &wide, "Wide.mp4", &[("cover", "none")]).await;
    let mono = upload(
        system,
        &token,
        &tagged,
        "Talk.mp4",
        &[("channels", "mono"), ("sample_rate", "48000")],
    )
    .await;

    // The clip: 2.75 s, to 50 ms.
    let job = done(system, &token, &trimmed).await;
    assert_eq!(job["options"]["start"], 1.5, "{job}");
    assert_eq!(job["options"]["end"], 4.25, "{job}");
    let seconds = media::decoded_seconds(&audio(system, &token, &trimmed).await);
    assert!((seconds - 2.75).abs() <= 0.05, "the clip lasts {seconds} s");

    // The source's own tags, and nothing of its container's.
    done(system, &token, &defaults).await;
    let mp3 = audio(system, &token, &defaults).await;
    assert_id3v23(&mp3);
    let info = media::probe(&mp3);
    assert_eq!(tag(&info, "title"), Some("Source Title"), "{info}");
    assert_eq!(tag(&info, "artist"), Some("Source Artist"), "{info}");
    assert_eq!(tag(&info, "album"), Some("Source Album"), "{info}");
    assert_eq!(tag(&info, "date"), Some("2019"), "{info}");
    assert_eq!(tag(&info, "comment"), Some("Source comment"), "{info}");
    for internal in INTERNALS {
        assert_eq!(tag(&info, internal), None, "{internal}: {info}");
    }
    // A representative frame of the 320x240 video, not scaled up.
    assert_cover(&info, 320, 240..=240);
    assert_eq!(sound(&info)["sample_rate"], "44100");
    assert_eq!(sound(&info)["channels"], 2);
    let seconds = media::decoded_seconds(&mp3);
    assert!((seconds - 6.0).abs() <= 0.05, "the MP3 lasts {seconds} s");

    // The options' tags win; "" leaves a tag out; the cover is the frame at 5 s.
    let job = done(system, &token, &explicit).await;
    assert_eq!(job["options"]["artist"], "", "{job}");
    let info = media::probe(&audio(system, &token, &explicit).await);
    assert_eq!(tag(&info, "title"), Some("My title"), "{info}");
    assert_eq!(tag(&info, "artist"), None, "{info}");
    assert_eq!(tag(&info, "album"), Some("My album"), "{info}");
    assert_eq!(tag(&info, "date"), Some("2024"), "{info}");
    assert_eq!(tag(&info, "comment"), None, "{info}");
    for internal in INTERNALS {
        assert_eq!(tag(&info, internal), None, "{internal}: {info}");
    }
    assert_cover(&info, 320, 240..=240);

    // A 1280x720 video's cover fits in 600x600; a mono source made stereo; 48 kHz made 44.1.
    done(system, &token, &wide_cover).await;
    let info = media::probe(&audio(system, &token, &wide_cover).await);
    assert_cover(&info, 600, 337..=338);
    assert_eq!(sound(&info)["channels"], 2, "{info}");
    assert_eq!(sound(&info)["sample_rate"], "44100", "{info}");
    // Without tags in the source, the title is the file's name.
    assert_eq!(tag(&info, "title"), Some("Wide"), "{info}");

    done(system, &token, &no_cover).await;
    let info = media::probe(&audio(system, &token, &no_cover).await);
    assert!(picture(&info).is_none(), "a cover after cover=none: {info}");
    assert_eq!(sound(&info)["channels"], 1, "{info}");

    done(system, &token, &mono).await;
    let mp3 = audio(system, &token, &mono).await;
    let info = media::probe(&mp3);
    assert_eq!(sound(&info)["channels"], 1, "{info}");
    assert_eq!(sound(&info)["sample_rate"], "48000", "{info}");
    let seconds = media::decoded_seconds(&mp3);
    assert!((seconds - 6.0).abs() <= 0.05, "the MP3 lasts {seconds} s");
}

#[tokio::test]
async fn clips_tags_covers_and_channels_embedded() {
    clips_tags_covers_and_channels(&System::embedded(&[])).await;
}

#[tokio::test]
async fn clips_tags_covers_and_channels_on_services() {
    clips_tags_covers_and_channels(&System::services()).await;
}

/// Two-pass loudness normalization: a quiet and a loud source both end within 1 LU of the
/// target, as ffmpeg's `ebur128` filter measures the MP3s; without `normalize` the loudness
/// stays the source's.
async fn loudness_is_normalized(system: &System) {
    let token = system.user("loudness").await;
    let (quiet, loud) = (media::quiet(), media::loud());
    let quiet_before = media::loudness_path(&quiet);
    let loud_before = media::loudness_path(&loud);
    // Far from every target, so only normalization brings them there.
    assert!(
        quiet_before < -40.0,
        "the quiet source is at {quiet_before} LUFS"
    );
    assert!(
        loud_before > -8.0,
        "the loud source is at {loud_before} LUFS"
    );

    let jobs = [
        (
            upload(system, &token, &quiet, "quiet.m4a", &[("normalize", "-16")]).await,
            Some(-16.0),
        ),
        (
            upload(system, &token, &loud, "loud.m4a", &[("normalize", "true")]).await,
            Some(-16.0),
        ),
        (
            upload(system, &token, &loud, "loud.m4a", &[("normalize", "-23")]).await,
            Some(-23.0),
        ),
        (
            upload(system, &token, &quiet, "quiet.m4a", &[("normalize", "-14")]).await,
            Some(-14.0),
        ),
        (upload(system, &token, &loud, "loud.m4a", &[]).await, None),
    ];
    for (id, target) in jobs {
        let job = done(system, &token, &id).await;
        let mp3 = audio(system, &token, &id).await;
        let lufs = media::loudness(&mp3);
        match target {
            Some(target) => {
                assert_eq!(job["options"]["normalize"], target as i64, "{job}");
                assert!(
                    (lufs - target).abs() <= 1.0,
                    "{id}: {lufs} LUFS, asked for {target}"
                );
            }
            None => assert!(
                (lufs - loud_before).abs() <= 1.0,
                "{id}: {lufs} LUFS without normalize, the source has {loud_before}"
            ),
        }
        // Audio without a picture: no cover, and no error for it.
        assert!(picture(&media::probe(&mp3)).is_none());
        let seconds = media::decoded_seconds(&mp3);
        assert!((seconds - 6.0).abs() <= 0.05, "{id} lasts {seconds} s");
    }
}

#[tokio::test]
async fn loudness_is_normalized_embedded() {
    loudness_is_normalized(&System::embedded(&[])).await;
}

#[tokio::test]
async fn loudness_is_normalized_on_services() {
    loudness_is_normalized(&System::services()).await;
}

/// CRC-32 (IEEE), as a ZIP and the job's tracks carry it.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for byte in bytes {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// The MP3's chapters as ffprobe reads its CHAP frames: (title, start, end).
fn chapters(info: &Value) -> Vec<(String, f64, f64)> {
    info["chapters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["tags"]["title"].as_str().unwrap_or_default().to_owned(),
                c["start_time"].as_str().unwrap().parse().unwrap(),
                c["end_time"].as_str().unwrap().parse().unwrap(),
            )
        })
        .collect()
}

/// A source with three chapters: three CHAP frames (cut to a clip when one is asked), and with
/// `split=chapters` three tracks of the chapters' lengths, each downloadable, tagged with its
/// chapter's title and number, plus the whole MP3.
async fn chapters_become_chap_frames_and_tracks(system: &System) {
    let token = system.user("chapters").await;
    let tagged = media::tagged();
    let whole = upload(system, &token, &tagged, "Talk.mp4", &[]).await;
    let clipped = upload(
        system,
        &token,
        &tagged,
        "Talk.mp4",
        &[("start", "1"), ("end", "5")],
    )
    .await;
    let split = upload(
        system,
        &token,
        &tagged,
        "Talk.mp4",
        &[("split", "chapters")],
    )
    .await;

    done(system, &token, &whole).await;
    let info = media::probe(&audio(system, &token, &whole).await);
    let expected: Vec<(String, f64, f64)> = media::TAGGED_CHAPTERS
        .iter()
        .map(|(title, start, end)| (title.to_string(), *start, *end))
        .collect();
    assert_eq!(chapters(&info), expected, "{info}");

    // Shifted to the clip (1 s to 5 s) and cut at its end: ffmpeg alone keeps the third
    // chapter's end at 5 s.
    done(system, &token, &clipped).await;
    let info = media::probe(&audio(system, &token, &clipped).await);
    assert_eq!(
        chapters(&info),
        [
            ("One".to_owned(), 0.0, 1.0),
            ("Two".to_owned(), 1.0, 3.5),
            ("Three".to_owned(), 3.5, 4.0)
        ],
        "{info}"
    );

    let job = done(system, &token, &split).await;
    let tracks = job["tracks"].as_array().expect("tracks on the job");
    assert_eq!(tracks.len(), 3, "{job}");
    let seconds = media::decoded_seconds(&audio(system, &token, &split).await);
    assert!((seconds - 6.0).abs() <= 0.05, "the whole lasts {seconds} s");
    for (track, (n, (title, start, end))) in tracks.iter().zip((1u64..).zip(media::TAGGED_CHAPTERS))
    {
        assert_eq!(track["number"], n, "{track}");
        assert_eq!(track["title"], title, "{track}");
        assert_eq!(track["start"], start, "{track}");
        assert_eq!(track["end"], end, "{track}");
        let mp3 = download(system, &token, &format!("/v1/jobs/{split}/tracks/{n}")).await;
        assert_eq!(track["audio"]["size"], mp3.len() as u64, "{track}");
        assert_eq!(track["crc32"], crc32(&mp3), "{track}");
        let seconds = media::decoded_seconds(&mp3);
        assert!(
            (seconds - (end - start)).abs() <= 0.05,
            "track {n} lasts {seconds} s, its chapter {}",
            end - start
        );
        let info = media::probe(&mp3);
        assert_eq!(tag(&info, "title"), Some(title), "{info}");
        assert_eq!(
            tag(&info, "track"),
            Some(format!("{n}/3").as_str()),
            "{info}"
        );
        assert_eq!(tag(&info, "artist"), Some("Source Artist"), "{info}");
        assert_eq!(tag(&info, "album"), Some("Source Album"), "{info}");
        assert!(
            chapters(&info).is_empty(),
            "a track has no chapters: {info}"
        );
        assert_cover(&info, 320, 240..=240);
    }
}

#[tokio::test]
async fn chapters_become_chap_frames_and_tracks_embedded() {
    chapters_become_chap_frames_and_tracks(&System::embedded(&[])).await;
}

#[tokio::test]
async fn chapters_become_chap_frames_and_tracks_on_services() {
    chapters_become_chap_frames_and_tracks(&System::services()).await;
}

/// Times past the source's end are only known once the worker has the file: the job fails,
/// naming the option and the source's length; an end within 50 ms of the end reads to it.
async fn times_past_the_source_fail_naming_the_option(system: &System) {
    let token = system.user("past").await;
    let tagged = media::tagged();
    let cases = [
        (
            "start",
            "300",
            "`start` (00:05:00.000) is past the end of the source (00:00:06.000)",
        ),
        (
            "end",
            "7",
            "`end` (00:00:07.000) is past the end of the source (00:00:06.000)",
        ),
        (
            "cover",
            "10",
            "`cover` (00:00:10.000) is past the end of the source (00:00:06.000)",
        ),
    ];
    let mut ids = Vec::new();
    for (field, value, _) in cases {
        ids.push(upload(system, &token, &tagged, "Talk.mp4", &[(field, value)]).await);
    }
    let nearly = upload(system, &token, &tagged, "Talk.mp4", &[("end", "6.04")]).await;
    for ((field, _, message), id) in cases.iter().zip(&ids) {
        let job = system.settled(&token, id).await;
        assert_eq!(job["status"], "failed", "{job}");
        assert_eq!(job["error"]["code"], "invalid_option", "{job}");
        assert_eq!(job["error"]["field"], *field, "{job}");
        assert_eq!(job["error"]["message"], *message, "{job}");
        assert!(job["audio"].is_null(), "{job}");
    }
    done(system, &token, &nearly).await;
    let seconds = media::decoded_seconds(&audio(system, &token, &nearly).await);
    assert!((seconds - 6.0).abs() <= 0.05, "the MP3 lasts {seconds} s");
}

#[tokio::test]
async fn times_past_the_source_fail_naming_the_option_embedded() {
    times_past_the_source_fail_naming_the_option(&System::embedded(&[])).await;
}

#[tokio::test]
async fn times_past_the_source_fail_naming_the_option_on_services() {
    times_past_the_source_fail_naming_the_option(&System::services()).await;
}
