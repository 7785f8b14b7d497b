//! The worker's behaviour over HTTP, each test run against both backend sets: embedded
//! (directory + SQLite + in-process queue) and services (GridFS + MongoDB + RabbitMQ).

#[macro_use]
mod common;

use common::{Backend, TestApp, body, link_host, media, probe, spawn, spawn_named, spawn_with};
use reqwest::Method;
use serde_json::Value;

on_both_backends!(
    every_input_format_becomes_an_announced_mp3,
    unusable_videos_fail_with_a_clear_code,
    bad_requests_get_documented_4xx,
    jobs_are_private_to_their_owner,
    listing_is_newest_first_and_paginated,
    audio_supports_range_and_etag,
    delete_removes_the_job_and_its_files,
    links_are_downloaded_safely,
    health_and_metrics_answer,
);

async fn every_input_format_becomes_an_announced_mp3(backend: Backend) {
    let app = spawn(backend).await;
    let kinds = ["mp4", "mp4-faststart", "webm", "mkv", "mov", "avi"];
    let mut ids = Vec::new();
    for kind in kinds {
        let filename = format!("My clip {kind}.video");
        ids.push(app.upload_ok("alice", &filename, media(kind)).await);
    }
    for (kind, id) in kinds.iter().zip(&ids) {
        let job = app.settled("alice", id).await;
        assert_eq!(job["status"], "done", "{kind}: {job}");
        assert_eq!(job["progress"], 100, "{kind}");
        let size = job["audio"]["size"].as_u64().unwrap();
        let audio = app.audio("alice", id).await.send().await.unwrap();
        assert_eq!(audio.status(), 200);
        assert_eq!(audio.headers()["content-type"], "audio/mpeg");
        let bytes = body(audio).await;
        assert_eq!(bytes.len() as u64, size, "{kind}");
        let (format, duration, title) = probe(&bytes);
        assert_eq!(format, "mp3", "{kind}");
        assert!((duration - 3.0).abs() < 0.15, "{kind}: {duration}");
        assert_eq!(title, format!("My clip {kind}"));

        let announced = app.announcements(id).await;
        assert_eq!(announced.len(), 1, "{kind}: {announced:?}");
        let message = &announced[0];
        assert_eq!(message["status"], "done");
        assert_eq!(message["username"], "alice");
        assert_eq!(message["owner"], "alice");
        assert_eq!(message["mp3_fid"], job["audio"]["id"]);
        assert_eq!(message["video_fid"], job["video_id"]);
        assert_eq!(message["attempt"], 1);
    }
    // Each MP3 was stored as ffmpeg wrote it (its cover added), and checked against the
    // finished file: none had to be stored again.
    let metrics = app.metrics().await;
    let stored = format!(
        "mp3conv_worker_mp3_stores_total{{way=\"while_written\"}} {}",
        kinds.len()
    );
    assert!(metrics.contains(&stored), "{metrics}");
    assert!(
        metrics.contains("mp3conv_worker_mp3_stores_total{way=\"after\"} 0"),
        "{metrics}"
    );
    app.stop().await;
}

async fn unusable_videos_fail_with_a_clear_code(backend: Backend) {
    let app = spawn(backend).await;
    let cases = [
        ("no-audio.mp4", media("no-audio"), "no_audio"),
        ("truncated.mp4", media("truncated"), "not_media"),
        (
            "notes.mp4",
            b"these are my notes, not a video\n".repeat(10),
            "not_media",
        ),
    ];
    let mut ids = Vec::new();
    for (name, bytes, _) in &cases {
        ids.push(app.upload_ok("bob", name, bytes.clone()).await);
    }
    for ((name, _, code), id) in cases.iter().zip(&ids) {
        let job = app.settled("bob", id).await;
        assert_eq!(job["status"], "failed", "{name}: {job}");
        assert_eq!(job["error"]["code"], *code, "{name}: {job}");
        assert_eq!(
            job["attempts"], 1,
            "{name}: permanent failures are not retried"
        );
        let announced = app.announcements(id).await;
        assert_eq!(announced.len(), 1, "{name}");
        assert_eq!(announced[0]["status"], "failed");
        assert_eq!(announced[0]["error"]["code"], *code);
        let audio = app.audio("bob", id).await.send().await.unwrap();
        assert_eq!(audio.status(), 409);
    }
    app.stop().await;
}

async fn error_code(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    assert!(body["error"]["message"].is_string(), "{body}");
    (status, body["error"]["code"].as_str().unwrap().to_owned())
}

async fn bad_requests_get_documented_4xx(backend: Backend) {
    let app = spawn_with(backend, |c| c.max_video_bytes = 64 * 1024).await;
    let post = || app.request(Method::POST, "/internal/jobs", "carol");

    let empty = post().body(Vec::new()).send().await.unwrap();
    assert_eq!(error_code(empty).await, (400, "empty_upload".into()));

    let too_big = post().body(vec![0u8; 100 * 1024]).send().await.unwrap();
    assert_eq!(error_code(too_big).await, (413, "too_large".into()));

    // Without a Content-Length the limit is enforced while streaming.
    let chunks = futures::stream::iter(
        (0..20).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![1u8; 8 * 1024]))),
    );
    let streamed = post()
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(streamed).await, (413, "too_large".into()));

    let bitrate = post()
        .query(&[("bitrate", "999")])
        .body(media("mp4"))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(bitrate).await, (400, "invalid_bitrate".into()));

    let table = [
        (
            serde_json::json!({"url": "ftp://example.com/a.mp4"}),
            "invalid_url",
        ),
        (serde_json::json!({"url": "not a link"}), "invalid_url"),
        (
            serde_json::json!({"url": "http://10.0.0.1/a.mp4"}),
            "link_forbidden",
        ),
        (
            serde_json::json!({"url": "http://169.254.169.254/"}),
            "link_forbidden",
        ),
        // One rule with the gateway (the contract's `LinkRequest::parse`): without a url the
        // body is not a link request at all; beside one, an unknown name is not an option.
        (
            serde_json::json!({"link": "http://example.com/"}),
            "invalid_json",
        ),
        (
            serde_json::json!({"url": "http://example.com/a.mp4", "link": "x"}),
            "unknown_field",
        ),
        (serde_json::json!({"bitrate": "128"}), "invalid_json"),
        (
            serde_json::json!({"url": "http://example.com/a.mp4", "bitrate": "v12"}),
            "invalid_bitrate",
        ),
    ];
    for (json, code) in table {
        let response = post().json(&json).send().await.unwrap();
        assert_eq!(error_code(response).await, (400, code.into()), "{json}");
    }
    for (query, code) in [
        ("limit=0", "invalid_limit"),
        ("cursor=xyz", "invalid_cursor"),
        ("owner=mallory", "owner_mismatch"),
    ] {
        let list = app
            .request(Method::GET, &format!("/internal/jobs?{query}"), "carol")
            .send()
            .await
            .unwrap();
        assert_eq!(error_code(list).await, (400, code.into()), "{query}");
    }

    // Nothing was left behind by the refused requests.
    let jobs: Value = app
        .request(Method::GET, "/internal/jobs", "carol")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jobs["jobs"].as_array().unwrap().len(), 0, "{jobs}");
    app.stop().await;
}

async fn jobs_are_private_to_their_owner(backend: Backend) {
    let app = spawn(backend).await;
    let id = app.upload_ok("dave", "a.mp4", media("mp4")).await;

    let no_token = app
        .client
        .get(app.url("/internal/jobs"))
        .header("x-mp3conv-owner", "dave")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(no_token).await, (401, "unauthorized".into()));
    let wrong_token = app
        .client
        .get(app.url(&format!("/internal/jobs/{id}")))
        .bearer_auth("test-internal-token-0123456788")
        .header("x-mp3conv-owner", "dave")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(wrong_token).await, (401, "unauthorized".into()));
    let no_owner = app
        .client
        .get(app.url("/internal/jobs"))
        .bearer_auth(common::TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(no_owner).await, (400, "missing_owner".into()));

    for (method, path) in [
        (Method::GET, format!("/internal/jobs/{id}")),
        (Method::GET, format!("/internal/jobs/{id}/audio")),
        (Method::GET, format!("/internal/jobs/{id}/tracks/1")),
        (Method::GET, format!("/internal/jobs/{id}/tracks.zip")),
        (Method::POST, format!("/internal/jobs/{id}/start")),
        (Method::DELETE, format!("/internal/jobs/{id}")),
        (Method::GET, "/internal/jobs/not-a-job-id".to_owned()),
    ] {
        let response = app
            .request(method.clone(), &path, "eve")
            .send()
            .await
            .unwrap();
        assert_eq!(
            error_code(response).await,
            (404, "not_found".into()),
            "{method} {path}"
        );
    }
    let theirs: Value = app
        .request(Method::GET, "/internal/jobs", "eve")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(theirs["jobs"].as_array().unwrap().is_empty());
    // Eve's delete did nothing: the job is still there and finishes.
    let job = app.settled("dave", &id).await;
    assert_eq!(job["status"], "done");
    app.stop().await;
}

async fn listing_is_newest_first_and_paginated(backend: Backend) {
    let app = spawn(backend).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            app.upload_ok("frank", &format!("{i}.txt"), b"not media".to_vec())
                .await,
        );
    }
    app.upload_ok("grace", "other.txt", b"not media".to_vec())
        .await;
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut request = app
            .request(Method::GET, "/internal/jobs", "frank")
            .query(&[("limit", "2")]);
        if let Some(cursor) = &cursor {
            request = request.query(&[("cursor", cursor)]);
        }
        let page: Value = request.send().await.unwrap().json().await.unwrap();
        pages += 1;
        for job in page["jobs"].as_array().unwrap() {
            assert_eq!(job["owner"], "frank");
            seen.push(job["id"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
        assert!(pages < 10, "pagination does not end");
    }
    ids.reverse();
    assert_eq!(seen, ids);
    assert_eq!(pages, 3);
    app.stop().await;
}

async fn audio_supports_range_and_etag(backend: Backend) {
    let app = spawn(backend).await;
    let id = app
        .upload_ok("heidi", "song.mp4", media("mp4-faststart"))
        .await;
    let job = app.settled("heidi", &id).await;
    assert_eq!(job["status"], "done", "{job}");
    let size = job["audio"]["size"].as_u64().unwrap();
    let whole = app.audio("heidi", &id).await.send().await.unwrap();
    let etag = whole.headers()["etag"].to_str().unwrap().to_owned();
    assert_eq!(whole.headers()["accept-ranges"], "bytes");
    // Saved under the job's name: the gateway passes it on without asking for the job.
    let saved_as = "attachment; filename=\"song.mp3\"; filename*=UTF-8''song.mp3";
    assert_eq!(whole.headers()["content-disposition"], saved_as);
    let whole = body(whole).await;

    let cases = [
        ("bytes=0-99".to_owned(), 0..100u64),
        ("bytes=1000-".to_owned(), 1000..size),
        ("bytes=-500".to_owned(), size - 500..size),
        (format!("bytes=100-{}", size + 50), 100..size),
    ];
    for (range, expected) in cases {
        let response = app
            .audio("heidi", &id)
            .await
            .header("range", &range)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 206, "{range}");
        assert_eq!(response.headers()["content-disposition"], saved_as);
        assert_eq!(
            response.headers()["content-range"],
            format!("bytes {}-{}/{size}", expected.start, expected.end - 1).as_str()
        );
        let part = body(response).await;
        assert_eq!(
            part,
            whole[expected.start as usize..expected.end as usize],
            "{range}"
        );
    }
    let outside = app
        .audio("heidi", &id)
        .await
        .header("range", format!("bytes={size}-"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        outside.headers()["content-range"],
        format!("bytes */{size}").as_str()
    );
    assert_eq!(
        error_code(outside).await,
        (416, "range_not_satisfiable".into())
    );
    let cached = app
        .audio("heidi", &id)
        .await
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(cached.status(), 304);
    assert_eq!(cached.headers()["content-disposition"], saved_as);
    let stale = app
        .audio("heidi", &id)
        .await
        .header("if-none-match", "\"other\"")
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 200);
    app.stop().await;
}

async fn delete_removes_the_job_and_its_files(backend: Backend) {
    let app = spawn(backend).await;
    let id = app.upload_ok("ivan", "a.mp4", media("mp4")).await;
    assert_eq!(app.settled("ivan", &id).await["status"], "done");
    let deleted = app
        .request(Method::DELETE, &format!("/internal/jobs/{id}"), "ivan")
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    assert_eq!(app.job("ivan", &id).await.status(), 404);
    assert_eq!(
        app.audio("ivan", &id).await.send().await.unwrap().status(),
        404
    );
    assert_blob_stores_empty(&app).await;
    app.stop().await;
}

async fn assert_blob_stores_empty(app: &TestApp) {
    match app.backend {
        Backend::Embedded => {
            for store in ["videos", "mp3s"] {
                let dir = app.dir.path().join("blobs").join(store);
                let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
                assert!(left.is_empty(), "{store}: {left:?}");
            }
        }
        Backend::Services => {
            for collection in [
                "videos.files",
                "videos.chunks",
                "mp3s.files",
                "mp3s.chunks",
                "jobs",
            ] {
                assert_eq!(
                    common::count(&app.names.database, collection).await,
                    0,
                    "{collection}"
                );
            }
        }
    }
}

async fn links_are_downloaded_safely(backend: Backend) {
    let host = link_host().await;
    let app = spawn(backend).await;
    let cases = [
        ("/clip.mp4", "done", None),
        ("/missing.mp4", "failed", Some("link_not_found")),
        ("/page.html", "failed", Some("link_not_media")),
        ("/to-metadata", "failed", Some("link_forbidden")),
        ("/to-private-name", "failed", Some("link_forbidden")),
    ];
    let mut ids = Vec::new();
    for (path, _, _) in &cases {
        let response = app.link("judy", &format!("{host}{path}")).await;
        assert_eq!(response.status(), 202, "{path}");
        let job: Value = response.json().await.unwrap();
        ids.push(job["id"].as_str().unwrap().to_owned());
    }
    for ((path, status, code), id) in cases.iter().zip(&ids) {
        let job = app.settled("judy", id).await;
        assert_eq!(job["status"], *status, "{path}: {job}");
        if let Some(code) = code {
            assert_eq!(job["error"]["code"], *code, "{path}: {job}");
        } else {
            let (_, _, title) =
                probe(&body(app.audio("judy", id).await.send().await.unwrap()).await);
            assert_eq!(title, "clip");
        }
    }
    app.stop().await;
}

async fn health_and_metrics_answer(backend: Backend) {
    let app = spawn(backend).await;
    let live = app
        .client
        .get(app.url("/health/live"))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
    let ready = app
        .client
        .get(app.url("/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200, "{}", ready.text().await.unwrap());
    let id = app.upload_ok("kim", "a.mp4", media("mp4")).await;
    app.settled("kim", &id).await;
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("mp3conv_worker_jobs_total{status=\"done\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("mp3conv_worker_conversion_seconds_count 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("mp3conv_worker_dead_lettered_total 0"),
        "{metrics}"
    );
    app.stop().await;
}

/// In a cluster the intake API (role `api`) runs always-on and the converters (role
/// `converter`) scale with the queue: the API takes jobs and never converts, the converter
/// converts and serves no internal API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_and_the_converter_run_as_separate_roles() {
    use native_worker::config::Role;
    let api = spawn_with(Backend::Services, |c| c.role = Role::Api).await;
    let converter = spawn_named(Backend::Services, api.names.clone(), |c| {
        c.role = Role::Converter
    })
    .await;
    let response = converter
        .request(Method::GET, "/internal/jobs", "u1")
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        404,
        "the converter serves no internal API"
    );
    let health = converter
        .client
        .get(converter.url("/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);

    let id = api.upload_ok("u1", "clip.mp4", media("mp4")).await;
    let job = api.settled("u1", &id).await;
    assert_eq!(job["status"], "done", "{job}");
    let converted = |metrics: &str| {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix("mp3conv_worker_conversion_seconds_count "))
            .map(|n| n.trim().parse::<u64>().unwrap())
            .unwrap_or(0)
    };
    assert_eq!(converted(&converter.metrics().await), 1);
    assert_eq!(converted(&api.metrics().await), 0, "the API converted");
}
