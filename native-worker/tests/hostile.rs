//! Hostile and awkward inputs, each test run against both backend sets: uploads that try to make
//! ffmpeg read other files, and ordinary media that must still convert.

#[macro_use]
mod common;

use std::path::Path;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::header;
use axum::routing::get;
use bytes::Bytes;
use common::{Backend, Names, TestApp, media, spawn, spawn_with};
use futures::StreamExt;
use mongodb::bson::{Document, doc};
use native_worker::Config;
use native_worker::storage::BlobStore;
use native_worker::storage::gridfs::{CHUNK_BYTES, GridFsStore};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

on_both_backends!(
    playlists_manifests_and_file_lists_are_refused,
    ordinary_formats_still_convert,
    slow_links_leave_the_conversion_slots_free,
    slow_links_fail_as_too_slow,
);

/// Serves `files` (path, content type, body) on 127.0.0.1 port 0; returns the base URL.
async fn serve(files: Vec<(&'static str, &'static str, Vec<u8>)>) -> String {
    let mut app = Router::new();
    for (path, content_type, bytes) in files {
        app = app.route(
            path,
            get(move || {
                let bytes = bytes.clone();
                async move { ([(header::CONTENT_TYPE, content_type)], bytes) }
            }),
        );
    }
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}

/// Fails if `message` shows a path on the worker's machine.
fn assert_no_server_path(message: &str, app: &TestApp) {
    let dir = app.dir.path().to_str().unwrap();
    let temp = std::env::temp_dir();
    let temp = temp.to_str().unwrap().trim_end_matches('/');
    for shown in [dir, temp, "file:", "blobs"] {
        assert!(!message.contains(shown), "{shown:?} in {message:?}");
    }
    let path_like = message
        .split(|c: char| c.is_whitespace() || matches!(c, '\'' | '"' | ','))
        .find(|word| word.starts_with('/') && word[1..].contains('/'));
    assert_eq!(path_like, None, "a path in {message:?}");
}

/// The attacker's job failed with `code`, without audio, and says so without server paths.
async fn assert_refused(app: &TestApp, owner: &str, id: &str, what: &str, code: &str) {
    let job = app.settled(owner, id).await;
    assert_eq!(job["status"], "failed", "{what}: {job}");
    assert_eq!(job["error"]["code"], code, "{what}: {job}");
    assert!(job["audio"].is_null(), "{what}: {job}");
    assert_no_server_path(job["error"]["message"].as_str().unwrap(), app);
    let audio = app.audio(owner, id).await.send().await.unwrap();
    assert_eq!(audio.status(), 409, "{what}: an MP3 was made");
}

fn hls_playlist(target: &Path) -> Vec<u8> {
    format!(
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:10\n#EXT-X-MEDIA-SEQUENCE:0\n\
         #EXTINF:3.0,\nfile://{}\n#EXT-X-ENDLIST\n",
        target.display()
    )
    .into_bytes()
}

fn dash_manifest(target: &Path) -> Vec<u8> {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" profiles="urn:mpeg:dash:profile:isoff-on-demand:2011" type="static" mediaPresentationDuration="PT3S" minBufferTime="PT1S">
  <Period>
    <AdaptationSet mimeType="audio/mp4">
      <Representation id="a" bandwidth="64000" codecs="mp4a.40.2">
        <BaseURL>file://{}</BaseURL>
      </Representation>
    </AdaptationSet>
  </Period>
</MPD>
"#,
        target.display()
    )
    .into_bytes()
}

/// An upload is one self-contained media file: a playlist, manifest or file list that points
/// at another user's stored video or at media on the worker's disk is refused, not followed.
async fn playlists_manifests_and_file_lists_are_refused(backend: Backend) {
    let app = spawn(backend).await;
    // Media on the worker's disk, with the extensions ffmpeg's HLS and DASH readers accept.
    let on_disk_mp3 = app.dir.path().join("secret.mp3");
    std::fs::write(&on_disk_mp3, media("mp3")).unwrap();
    let on_disk_m4a = app.dir.path().join("secret.m4a");
    std::fs::write(&on_disk_m4a, media("m4a")).unwrap();
    // Another user's video, stored (in the embedded store as `blobs/videos/<video_id>`, beside
    // the attacker's upload, where a relative ffconcat entry finds it).
    let theirs = app.upload_ok("victim", "private.mp4", media("mp4")).await;
    let theirs = app.settled("victim", &theirs).await;
    assert_eq!(theirs["status"], "done", "{theirs}");
    let their_video = theirs["video_id"].as_str().unwrap();

    let cases = [
        ("playlist.m3u8", hls_playlist(&on_disk_mp3)),
        ("manifest.mpd", dash_manifest(&on_disk_m4a)),
        (
            "list.ffconcat",
            format!("ffconcat version 1.0\nfile {their_video}\n").into_bytes(),
        ),
        (
            "absolute.ffconcat",
            format!("ffconcat version 1.0\nfile {}\n", on_disk_mp3.display()).into_bytes(),
        ),
    ];
    let mut ids = Vec::new();
    for (name, bytes) in &cases {
        ids.push(app.upload_ok("mallory", name, bytes.clone()).await);
    }
    for ((name, _), id) in cases.iter().zip(&ids) {
        assert_refused(&app, "mallory", id, name, "unsupported_format").await;
    }

    // A file that is no media at all keeps its code, and its message shows no path either.
    let notes = app
        .upload_ok("mallory", "notes.mp4", b"just my notes\n".repeat(20))
        .await;
    assert_refused(&app, "mallory", &notes, "notes", "not_media").await;

    // Links go through the same code path.
    let host = serve(vec![(
        "/live.m3u8",
        "application/vnd.apple.mpegurl",
        hls_playlist(&on_disk_mp3),
    )])
    .await;
    let response = app.link("mallory", &format!("{host}/live.m3u8")).await;
    assert_eq!(response.status(), 202);
    let link: Value = response.json().await.unwrap();
    let link = link["id"].as_str().unwrap();
    assert_refused(&app, "mallory", link, "link", "unsupported_format").await;
    app.stop().await;
}

/// The allow-list of container formats keeps the usual video and audio files working.
async fn ordinary_formats_still_convert(backend: Backend) {
    let app = spawn(backend).await;
    let mut uploads: Vec<(String, Vec<u8>)> = ["mp4", "mkv", "webm"]
        .into_iter()
        .map(|kind| (kind.to_owned(), media(kind)))
        .collect();
    for kind in [
        "m4a", "mp3", "ogg", "wav", "flac", "aac", "flv", "ts", "wmv", "3gp", "8k.3gp", "rm",
        "nut", "au", "dts",
    ] {
        uploads.push((kind.to_owned(), media(kind)));
    }
    let mut ids = Vec::new();
    for (kind, bytes) in &uploads {
        ids.push(
            app.upload_ok("olivia", &format!("clip.{kind}"), bytes.clone())
                .await,
        );
    }
    for ((kind, _), id) in uploads.iter().zip(&ids) {
        let job = app.settled("olivia", id).await;
        assert_eq!(job["status"], "done", "{kind}: {job}");
        let mp3 = common::body(app.audio("olivia", id).await.send().await.unwrap()).await;
        let (format, duration, _) = common::probe(&mp3);
        assert_eq!(format, "mp3", "{kind}");
        // Encoder delay and padding: a few frames, 72 ms each at 8 kHz.
        let slack = if kind.starts_with("8k") { 0.3 } else { 0.15 };
        assert!((duration - 3.0).abs() < slack, "{kind}: {duration}");
    }
    app.stop().await;
}

/// The video streams of an MP3 (its cover, if any): (codec, width, height).
fn pictures(mp3: &[u8]) -> Vec<(String, u64, u64)> {
    common::probe_json(mp3)["streams"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["codec_type"] == "video")
        .map(|s| {
            (
                s["codec_name"].as_str().unwrap().to_owned(),
                s["width"].as_u64().unwrap(),
                s["height"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Sources whose frames cost gigabytes to decode, and the shortest sounds: a video of 36
/// megapixel frames (an 895 KB one of 16000 x 16000 took ffmpeg 1.8 GB in every run, even
/// those converting only its audio) fails in words, decoding nothing; an MP3 whose cover is
/// such a picture converts without it (it would have taken 1.2 GB); a sound shorter than any
/// clip that can be asked for converts whole, also from `start=0`. What is shown does not
/// depend on the stores, so one backend serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_frames_huge_pictures_and_blips() {
    let app = spawn(Backend::Embedded).await;
    let huge = app
        .upload_ok("olivia", "huge.mp4", media("huge-frames"))
        .await;
    let picture = app
        .upload_ok("olivia", "huge.mp3", media("huge-picture"))
        .await;
    let blip = app.upload_ok("olivia", "blip.wav", media("blip")).await;
    let response = app
        .request(reqwest::Method::POST, "/internal/jobs", "olivia")
        .query(&[("filename", "blip.wav"), ("start", "0")])
        .header("content-type", "application/octet-stream")
        .body(media("blip"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let blip_from_zero: Value = response.json().await.unwrap();
    let blip_from_zero = blip_from_zero["id"].as_str().unwrap().to_owned();
    for id in [&picture, &blip, &blip_from_zero] {
        let job = app.settled("olivia", id).await;
        assert_eq!(job["status"], "done", "{job}");
        let mp3 = common::body(app.audio("olivia", id).await.send().await.unwrap()).await;
        assert_eq!(common::probe(&mp3).0, "mp3");
        assert_eq!(pictures(&mp3), [], "a cover from {}", job["source"]);
    }
    assert_refused(&app, "olivia", &huge, "36 MP frames", "frames_too_large").await;
    let job = app.settled("olivia", &huge).await;
    assert!(
        job["error"]["message"].as_str().unwrap().contains("8K"),
        "{job}"
    );
    app.stop().await;
}

/// Every ffmpeg and ffprobe a conversion runs has the default memory limit (2 GiB of address
/// space) and two malloc arenas: a source built to make them allocate without end fails its
/// job, not the worker. Seen through wrappers that note what they got and run the real thing
/// as if on a 128-core host (`-cpucount`), where a thread per core for each filter and encoder
/// took a cover pass past the limit: the MP3 still has its cover.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn converters_run_within_the_memory_limit() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("limits.log");
    let mut wrappers = Vec::new();
    for program in ["ffmpeg", "ffprobe"] {
        let wrapper = dir.path().join(program);
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\necho \"{program} $(ulimit -v) $MALLOC_ARENA_MAX\" >> '{}'\nexec {program} -cpucount 128 \"$@\"\n",
                log.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
        wrappers.push(wrapper);
    }
    let (ffmpeg, ffprobe) = (wrappers[0].clone(), wrappers[1].clone());
    let app = spawn_with(Backend::Embedded, move |config| {
        config.convert.ffmpeg = ffmpeg;
        config.convert.ffprobe = ffprobe;
    })
    .await;
    let id = app.upload_ok("olivia", "limited.mp4", media("mp4")).await;
    let job = app.settled("olivia", &id).await;
    assert_eq!(job["status"], "done", "{job}");
    let mp3 = common::body(app.audio("olivia", &id).await.send().await.unwrap()).await;
    assert_eq!(pictures(&mp3).len(), 1, "no cover");
    app.stop().await;
    let runs = std::fs::read_to_string(&log).unwrap();
    let runs: Vec<&str> = runs.lines().collect();
    assert!(runs.iter().any(|r| r.starts_with("ffmpeg ")), "{runs:?}");
    assert!(runs.iter().any(|r| r.starts_with("ffprobe ")), "{runs:?}");
    // `ulimit -v` counts KiB.
    for run in &runs {
        let limits: Vec<&str> = run.split(' ').skip(1).collect();
        assert_eq!(limits, ["2097152", "2"], "{run}");
    }
}

/// A link host whose videos never finish: `/trickle.mp4` sends a byte every 100 ms,
/// `/steady.mp4` 64 KiB every 100 ms. Each gives up by itself after 40 s; [`SlowHost::stop`]
/// ends them at once (the connections break) and stops accepting new ones.
struct SlowHost {
    base: String,
    stop: CancellationToken,
}

impl SlowHost {
    async fn start() -> Self {
        let stop = CancellationToken::new();
        let endless = |every: Duration, size: usize, stop: CancellationToken| {
            let chunks = futures::stream::unfold(Some(0u32), move |sent| {
                let stop = stop.clone();
                async move {
                    let sent = sent.filter(|sent| *sent < 400)?;
                    tokio::select! {
                        () = stop.cancelled() => {
                            Some((Err(std::io::Error::other("host stopped")), None))
                        }
                        () = tokio::time::sleep(every) => {
                            Some((Ok(Bytes::from(vec![0u8; size])), Some(sent + 1)))
                        }
                    }
                }
            });
            (
                [(header::CONTENT_TYPE, "video/mp4")],
                Body::from_stream(chunks),
            )
        };
        let (trickle, steady) = (stop.clone(), stop.clone());
        let app = Router::new()
            .route(
                "/trickle.mp4",
                get(move || {
                    let stop = trickle.clone();
                    async move { endless(Duration::from_millis(100), 1, stop) }
                }),
            )
            .route(
                "/steady.mp4",
                get(move || {
                    let stop = steady.clone();
                    async move { endless(Duration::from_millis(100), 64 * 1024, stop) }
                }),
            );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let serving = stop.clone();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(serving.cancelled_owned())
                .await
        });
        Self { base, stop }
    }

    fn stop(&self) {
        self.stop.cancel();
    }
}

async fn link_id(app: &TestApp, owner: &str, url: &str) -> String {
    let response = app.link(owner, url).await;
    assert_eq!(response.status(), 202);
    let job: Value = response.json().await.unwrap();
    job["id"].as_str().unwrap().to_owned()
}

/// Links that trickle bytes keep downloading, and with the default settings another user's
/// upload still converts meanwhile: downloads do not take the conversion slots.
async fn slow_links_leave_the_conversion_slots_free(backend: Backend) {
    let host = SlowHost::start().await;
    let defaults = Config::default();
    let app = spawn_with(backend, |c| {
        c.concurrency = defaults.concurrency;
        c.fetch.concurrency = defaults.fetch.concurrency;
    })
    .await;
    // As many slow links as there are conversion slots: enough to hold them all if downloads
    // took conversion slots.
    let mut links = Vec::new();
    for _ in 0..defaults.concurrency {
        links.push(link_id(&app, "slowpoke", &format!("{}/trickle.mp4", host.base)).await);
    }
    for id in &links {
        app.wait_for("slowpoke", id, |job| job["status"] == "downloading")
            .await;
    }
    let upload = app.upload_ok("olivia", "clip.mp4", media("mp4")).await;
    let done = app
        .wait_for("olivia", &upload, |job| {
            job["status"] == "done" || job["status"] == "failed"
        })
        .await;
    assert_eq!(done["status"], "done", "{done}");
    for id in &links {
        let link: Value = app.job("slowpoke", id).await.json().await.unwrap();
        assert_eq!(
            link["status"], "downloading",
            "the link stopped first: {link}"
        );
    }
    host.stop();
    for id in &links {
        let link = app.settled("slowpoke", id).await;
        assert_eq!(link["status"], "failed", "{link}");
    }
    app.stop().await;
}

/// A link below the minimum rate fails once a rate window passes, and one fast enough but
/// endless fails at the deadline; both as `link_too_slow`, without retries, and nothing of
/// them stays stored. (The window and deadline are shortened here; their defaults are checked
/// in `config::tests::link_download_defaults`.)
async fn slow_links_fail_as_too_slow(backend: Backend) {
    let host = SlowHost::start().await;
    let app = spawn_with(backend, |c| {
        c.fetch.rate_window = Duration::from_secs(1);
        c.fetch.deadline = Duration::from_secs(3);
    })
    .await;
    let trickle = link_id(&app, "slowpoke", &format!("{}/trickle.mp4", host.base)).await;
    let steady = link_id(&app, "slowpoke", &format!("{}/steady.mp4", host.base)).await;
    for (id, why) in [
        (&trickle, "slower than the minimum"),
        (&steady, "took longer than"),
    ] {
        let job = app.settled("slowpoke", id).await;
        assert_eq!(job["status"], "failed", "{job}");
        assert_eq!(job["error"]["code"], "link_too_slow", "{job}");
        assert_eq!(job["attempts"], 1, "{job}");
        let message = job["error"]["message"].as_str().unwrap();
        assert!(message.contains(why), "{message}");
    }
    host.stop();
    match backend {
        Backend::Embedded => {
            let dir = app.dir.path().join("blobs").join("videos");
            let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
            assert!(left.is_empty(), "{left:?}");
        }
        Backend::Services => {
            for collection in ["videos.files", "videos.chunks"] {
                let left = common::count(&app.names.database, collection).await;
                assert_eq!(left, 0, "{collection}");
            }
        }
    }
    app.stop().await;
}

/// A `videos` GridFS store in a database of its own (the caller drops it).
async fn video_store() -> (mongodb::Database, GridFsStore) {
    let client = mongodb::Client::with_uri_str(common::mongo_url())
        .await
        .unwrap();
    let db = client.database(&Names::new().database);
    let store = GridFsStore::open(db.clone(), "videos").await.unwrap();
    (db, store)
}

/// Range reads from GridFS start at the chunk that holds the first byte: correct across chunk
/// boundaries, and the last byte of a file reads without its earlier chunks (a read that
/// streamed from the start, as before, fails on the first missing chunk).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gridfs_ranges_start_at_their_chunk() {
    let (db, store) = video_store().await;
    // The store's chunk size; the file ends 1000 bytes into a fourth chunk.
    let chunk = CHUNK_BYTES as u64;
    let size = 3 * chunk + 1000;
    let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    let pieces: Vec<std::io::Result<Bytes>> = data
        .chunks(100_000)
        .map(|piece| Ok(Bytes::copy_from_slice(piece)))
        .collect();
    let stored = store
        .put(
            "blob",
            "blob.bin",
            futures::stream::iter(pieces).boxed(),
            u64::MAX,
        )
        .await
        .unwrap();
    assert_eq!(stored, size);
    let read = |range: std::ops::Range<u64>| {
        let store = store.clone();
        async move {
            let mut out = Vec::new();
            let mut stream = store.get("blob", range).await?;
            while let Some(part) = stream.next().await {
                out.extend_from_slice(&part.map_err(native_worker::Error::internal)?);
            }
            Ok::<_, native_worker::Error>(out)
        }
    };
    for range in [
        0..1,
        size - 1..size,
        0..size,
        chunk - 1..chunk + 1,
        chunk..2 * chunk,
        chunk + 5..3 * chunk + 5,
        2 * chunk - 10..size,
        100..200,
    ] {
        let got = read(range.clone()).await.unwrap();
        assert_eq!(
            got,
            data[range.start as usize..range.end as usize],
            "{range:?}"
        );
    }

    let removed = db
        .collection::<Document>("videos.chunks")
        .delete_many(doc! {"files_id": "blob", "n": {"$lt": 3}})
        .await
        .unwrap();
    assert_eq!(removed.deleted_count, 3);
    assert_eq!(
        read(size - 1..size).await.unwrap(),
        [data[size as usize - 1]]
    );
    assert_eq!(
        read(3 * chunk..size).await.unwrap(),
        data[3 * chunk as usize..]
    );
    // A range over a missing chunk is an error, never silently short.
    assert!(read(chunk..chunk + 1).await.is_err());
    db.drop().await.unwrap();
}

/// A file is read a window of chunks at a time (8 MiB, one query each): whole files and
/// ranges across windows read back the same, from the store's 1 MiB chunks and from another
/// writer's 255 KiB ones, and a chunk missing in a later window is an error after the earlier
/// windows' bytes, never a short read that looks whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gridfs_files_are_read_a_window_at_a_time() {
    let (db, store) = video_store().await;
    let all = |id: &'static str, range: std::ops::Range<u64>| {
        let store = store.clone();
        async move {
            let mut out = Vec::new();
            let mut stream = store.get(id, range).await.unwrap();
            while let Some(part) = stream.next().await {
                match part {
                    Ok(part) => out.extend_from_slice(&part),
                    Err(e) => return (out, Some(e.to_string())),
                }
            }
            (out, None)
        }
    };
    // Three windows, the last one part full.
    let chunk = CHUNK_BYTES as u64;
    let size = 20 * chunk + chunk / 2;
    let data: Vec<u8> = (0..size).map(|i| (i % 249) as u8).collect();
    store
        .put("windows", "w.mp4", body_of(&data, 300_000), u64::MAX)
        .await
        .unwrap();
    for range in [
        0..size,
        8 * chunk - 5..8 * chunk + 5,
        7 * chunk..17 * chunk,
        3..size - 3,
        16 * chunk..size,
    ] {
        let (got, error) = all("windows", range.clone()).await;
        assert_eq!(error, None, "{range:?}");
        assert!(
            got == data[range.start as usize..range.end as usize],
            "{range:?}: {} bytes, not the same",
            got.len()
        );
    }

    // Written by the driver, in its default chunks of 255 KiB: 36 of them, two windows.
    let bucket = db.gridfs_bucket(
        mongodb::options::GridFsBucketOptions::builder()
            .bucket_name("videos".to_owned())
            .build(),
    );
    let small: Vec<u8> = (0..9 * chunk).map(|i| (i % 241) as u8).collect();
    let mut upload = bucket
        .open_upload_stream("driver.mp4")
        .id(mongodb::bson::Bson::String("driver".into()))
        .await
        .unwrap();
    futures::AsyncWriteExt::write_all(&mut upload, &small)
        .await
        .unwrap();
    futures::AsyncWriteExt::close(&mut upload).await.unwrap();
    let (got, error) = all("driver", 0..small.len() as u64).await;
    assert_eq!(error, None);
    assert!(got == small, "{} bytes, not the same", got.len());

    // Chunk 17 is in the third window: the first two come, then the error.
    db.collection::<Document>("videos.chunks")
        .delete_one(doc! {"files_id": "windows", "n": 17})
        .await
        .unwrap();
    let (got, error) = all("windows", 0..size).await;
    assert_eq!(error.as_deref(), Some("GridFS chunk 17 is missing"));
    assert!(
        got == data[..17 * chunk as usize],
        "{} bytes before the error",
        got.len()
    );
    db.drop().await.unwrap();
}

/// Pieces of `data`, `size` bytes each, as an upload's body.
fn body_of(data: &[u8], size: usize) -> native_worker::storage::ByteStream {
    let pieces: Vec<std::io::Result<Bytes>> = data
        .chunks(size)
        .map(|piece| Ok(Bytes::copy_from_slice(piece)))
        .collect();
    futures::stream::iter(pieces).boxed()
}

/// The store writes its files in batches of large chunks, as the GridFS spec has them: any
/// GridFS reader (here the driver's own download stream) reads them back whole, and an upload
/// that fails half-way (a client gone, a body too large) leaves neither chunks nor a file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gridfs_files_are_batched_spec_files_and_failures_leave_nothing() {
    let (db, store) = video_store().await;
    let files = db.collection::<Document>("videos.files");
    let chunks = db.collection::<Document>("videos.chunks");
    // Three batches of 8 MiB and a half-full last chunk.
    let size = 20 * CHUNK_BYTES + CHUNK_BYTES / 2;
    let data: Vec<u8> = (0..size).map(|i| (i % 253) as u8).collect();
    let stored = store
        .put("big", "big.mp4", body_of(&data, 100_000), u64::MAX)
        .await
        .unwrap();
    assert_eq!(stored, size as u64);
    let file = files.find_one(doc! {"_id": "big"}).await.unwrap().unwrap();
    assert_eq!(file.get_i64("length").unwrap(), size as i64, "{file}");
    assert_eq!(file.get_i32("chunkSize").unwrap(), CHUNK_BYTES as i32);
    assert_eq!(file.get_str("filename").unwrap(), "big.mp4");
    assert!(file.get_datetime("uploadDate").is_ok(), "{file}");
    assert_eq!(
        chunks
            .count_documents(doc! {"files_id": "big"})
            .await
            .unwrap(),
        21
    );
    let mut read = Vec::new();
    let bucket = db.gridfs_bucket(
        mongodb::options::GridFsBucketOptions::builder()
            .bucket_name("videos".to_owned())
            .build(),
    );
    let mut download = bucket
        .open_download_stream(mongodb::bson::Bson::String("big".into()))
        .await
        .unwrap();
    futures::AsyncReadExt::read_to_end(&mut download, &mut read)
        .await
        .unwrap();
    assert!(
        read == data,
        "the driver read {} bytes back, not the same",
        read.len()
    );

    // An empty file is a file of no chunks.
    assert_eq!(
        store
            .put("empty", "e", body_of(&[], 1), u64::MAX)
            .await
            .unwrap(),
        0
    );
    assert_eq!(store.size("empty").await.unwrap(), Some(0));

    // A body that breaks after 12 MiB (a batch written, one in flight), and one too large.
    let broken: Vec<std::io::Result<Bytes>> = data[..12 * CHUNK_BYTES]
        .chunks(CHUNK_BYTES / 2)
        .map(|piece| Ok(Bytes::copy_from_slice(piece)))
        .chain([Err(std::io::Error::other("the client went away"))])
        .collect();
    let failed = store
        .put(
            "broken",
            "b",
            futures::stream::iter(broken).boxed(),
            u64::MAX,
        )
        .await;
    assert!(failed.is_err());
    let too_large = store
        .put(
            "large",
            "l",
            body_of(&data, 100_000),
            10 * CHUNK_BYTES as u64,
        )
        .await;
    assert!(
        matches!(too_large, Err(native_worker::Error::TooLarge { .. })),
        "{too_large:?}"
    );
    // A put whose future is dropped with a batch in flight (a lost lease, a deadline): its
    // chunks go once that batch has landed. The body gives 6 MiB, then nothing ever again.
    let head: Vec<std::io::Result<Bytes>> = data[..6 * CHUNK_BYTES]
        .chunks(CHUNK_BYTES)
        .map(|piece| Ok(Bytes::copy_from_slice(piece)))
        .collect();
    let stalled = futures::stream::iter(head).chain(futures::stream::pending());
    let dropped = tokio::time::timeout(
        Duration::from_secs(2),
        store.put("dropped", "d", stalled.boxed(), u64::MAX),
    )
    .await;
    assert!(dropped.is_err(), "the put ended: {dropped:?}");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let left = chunks
            .count_documents(doc! {"files_id": "dropped"})
            .await
            .unwrap();
        if left == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{left} chunks of a dropped put stayed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for id in ["broken", "large", "dropped"] {
        assert_eq!(store.size(id).await.unwrap(), None, "{id}");
        assert_eq!(
            chunks.count_documents(doc! {"files_id": id}).await.unwrap(),
            0,
            "chunks of {id} stayed"
        );
    }
    db.drop().await.unwrap();
}
