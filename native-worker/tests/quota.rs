//! Per-user quotas (issue #19): each limit refuses at its edge with its status and
//! `quota_exceeded`, and admits again once the user is under it (a job deleted or finished, the
//! window passed); the usage the worker reports; racing requests never pass a limit together.
//! Both backends; the gateway's part (the operator's command, `GET /v1/me`) is in
//! `tests/gateway.rs`.

#[macro_use]
mod common;

use std::time::Duration;

use common::{Answer, Backend, TestApp, media, spawn_with};
use reqwest::{Method, RequestBuilder};
use serde_json::Value;

const LIMITS: &str = "x-mp3conv-limits";

/// Asserts a quota refusal of `limit` with `status`.
fn refused(answer: &Answer, status: u16, limit: &str) {
    assert_eq!(answer.status, status, "{}", answer.body);
    assert_eq!(answer.code(), "quota_exceeded", "{}", answer.body);
    assert_eq!(answer.body["error"]["limit"], limit, "{}", answer.body);
}

async fn send(request: RequestBuilder) -> Answer {
    Answer::of(request).await
}

/// An upload of `bytes` for `owner` with the limits `limits` (the gateway's header).
fn upload(app: &TestApp, owner: &str, limits: &str, bytes: Vec<u8>, hold: bool) -> RequestBuilder {
    app.request(Method::POST, "/internal/jobs", owner)
        .header(LIMITS, limits)
        .query(&[
            ("filename", "clip.mp4"),
            ("hold", if hold { "true" } else { "false" }),
        ])
        .header("content-type", "application/octet-stream")
        .body(bytes)
}

async fn usage(app: &TestApp, owner: &str, limits: &str) -> Value {
    let answer = send(
        app.request(Method::GET, "/internal/usage", owner)
            .header(LIMITS, limits),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.body
}

async fn delete(app: &TestApp, owner: &str, id: &str) {
    let response = app
        .request(Method::DELETE, &format!("/internal/jobs/{id}"), owner)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
}

/// The refusals counted for `limit`.
async fn refusals(app: &TestApp, limit: &str) -> u64 {
    let metrics = app.metrics().await;
    let line = format!("mp3conv_worker_quota_refusals_total{{limit=\"{limit}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&line))
        .unwrap_or_else(|| panic!("no {line} in:\n{metrics}"))
        .parse()
        .unwrap()
}

/// Concurrent jobs: held uploads count (they are stored and will convert); the next is 429
/// with `Retry-After`, and deleting one lets the next in.
async fn concurrent_jobs_refuse_at_the_limit_until_one_goes(backend: Backend) {
    let app = spawn_with(backend, |_| {}).await;
    let limits = "concurrent_jobs=2";
    let first = send(upload(&app, "ann", limits, media("mp4"), true)).await;
    let second = send(upload(&app, "ann", limits, media("mp4"), true)).await;
    assert_eq!((first.status, second.status), (202, 202), "{}", second.body);
    let third = send(upload(&app, "ann", limits, media("mp4"), true)).await;
    refused(&third, 429, "concurrent_jobs");
    assert_eq!(third.retry_after, Some(30));
    let message = third.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("2 of your 2 jobs"), "{message}");
    assert_eq!(app.videos().await, 2, "the refused upload is not kept");
    // Another user is not held back by ann's jobs.
    let other = send(upload(&app, "bob", limits, media("mp4"), true)).await;
    assert_eq!(other.status, 202, "{}", other.body);

    delete(&app, "ann", first.id()).await;
    let again = send(upload(&app, "ann", limits, media("mp4"), false)).await;
    assert_eq!(again.status, 202, "{}", again.body);
    // Once converted, it no longer counts.
    let done = app.settled("ann", again.id()).await;
    assert_eq!(done["status"], "done", "{done}");
    let now = usage(&app, "ann", limits).await;
    assert_eq!(now["usage"]["concurrent_jobs"], 1, "{now}");
    assert_eq!(now["limits"]["concurrent_jobs"], 2, "{now}");
    assert_eq!(refusals(&app, "concurrent_jobs").await, 1);
    app.stop().await;
}

/// Jobs per hour (a short window here): the next is 429 with a `Retry-After` that is right;
/// deleting jobs does not give them back; after the wait, one more is admitted. (A held
/// upload counts when it is started: see the racing test.)
async fn jobs_per_hour_refuse_until_the_window_moves_on(backend: Backend) {
    let window = Duration::from_secs(4);
    let app = spawn_with(backend, |config| config.quota.rate_window = window).await;
    let limits = "jobs_per_hour=3, concurrent_jobs=unlimited";
    let mut ids = Vec::new();
    for _ in 0..3 {
        let made = send(upload(&app, "cy", limits, media("mp4"), false)).await;
        assert_eq!(made.status, 202, "{}", made.body);
        ids.push(made.id().to_owned());
    }
    let over = send(upload(&app, "cy", limits, media("mp4"), false)).await;
    refused(&over, 429, "jobs_per_hour");
    let wait = over.retry_after.expect("Retry-After");
    assert!((1..=window.as_secs() + 1).contains(&wait), "{wait}");
    for id in &ids {
        delete(&app, "cy", id).await;
    }
    let still = send(upload(&app, "cy", limits, media("mp4"), false)).await;
    refused(&still, 429, "jobs_per_hour");
    assert_eq!(usage(&app, "cy", limits).await["usage"]["jobs_per_hour"], 3);

    // The server said when: it holds.
    tokio::time::sleep(Duration::from_secs(still.retry_after.unwrap())).await;
    let admitted = send(upload(&app, "cy", limits, media("mp4"), false)).await;
    assert_eq!(admitted.status, 202, "{}", admitted.body);
    assert_eq!(refusals(&app, "jobs_per_hour").await, 2);
    app.stop().await;
}

/// Storage: an upload that would not fit in what is left is 413 and leaves nothing; a full
/// store refuses before reading; a finished job counts its MP3, not its video.
async fn storage_refuses_what_does_not_fit(backend: Backend) {
    let app = spawn_with(backend, |_| {}).await;
    let video = media("mp4");
    let size = video.len() as u64;
    let limits = format!("storage_bytes={}", size + size / 2);
    let held = send(upload(&app, "dee", &limits, video.clone(), true)).await;
    assert_eq!(held.status, 202, "{}", held.body);
    assert_eq!(
        usage(&app, "dee", &limits).await["usage"]["storage_bytes"],
        size
    );
    let second = send(upload(&app, "dee", &limits, video.clone(), true)).await;
    refused(&second, 413, "storage_bytes");
    assert_eq!(app.videos().await, 1, "the refused upload is not kept");

    // At the limit, nothing more is taken, not even a link.
    let full = format!("storage_bytes={size}");
    let full_store = send(upload(&app, "dee", &full, video.clone(), true)).await;
    refused(&full_store, 413, "storage_bytes");
    let link = send(
        app.request(Method::POST, "/internal/jobs", "dee")
            .header(LIMITS, &full)
            .json(&serde_json::json!({"url": "http://127.0.0.1:9/clip.mp4"})),
    )
    .await;
    refused(&link, 413, "storage_bytes");

    // Converted, the job keeps its MP3 only: room again.
    delete(&app, "dee", held.id()).await;
    let converted = send(upload(&app, "dee", &limits, video.clone(), false)).await;
    assert_eq!(converted.status, 202, "{}", converted.body);
    let done = app.settled("dee", converted.id()).await;
    assert_eq!(done["status"], "done", "{done}");
    let mp3 = done["audio"]["size"].as_u64().unwrap();
    assert_eq!(
        usage(&app, "dee", &limits).await["usage"]["storage_bytes"],
        mp3
    );
    // Exactly room for one more video beside the MP3 (the test's tiny video is smaller than
    // its MP3).
    let room = format!("storage_bytes={}", mp3 + size);
    let next = send(upload(&app, "dee", &room, video, true)).await;
    assert_eq!(next.status, 202, "{}", next.body);
    assert_eq!(refusals(&app, "storage_bytes").await, 3);
    app.stop().await;
}

/// A link's video is measured against the storage when its download starts and once it is
/// stored: one that does not fit fails its job, and leaves nothing counted.
async fn a_link_that_does_not_fit_fails(backend: Backend) {
    let host = common::link_host().await;
    let app = spawn_with(backend, |_| {}).await;
    let size = media("mp4-faststart").len();
    let link = |limits: String| {
        app.request(Method::POST, "/internal/jobs", "ivy")
            .header(LIMITS, limits)
            .json(&serde_json::json!({ "url": format!("{host}/clip.mp4") }))
    };
    let made = send(link(format!("storage_bytes={}", size - 1))).await;
    assert_eq!(made.status, 202, "{}", made.body);
    let failed = app.settled("ivy", made.id()).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["error"]["code"], "quota_exceeded", "{failed}");
    let message = failed["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("does not fit in your storage"),
        "{message}"
    );
    assert_eq!(app.videos().await, 0);
    let limits = format!("storage_bytes={}", size - 1);
    assert_eq!(
        usage(&app, "ivy", &limits).await["usage"]["storage_bytes"],
        0
    );
    assert_eq!(refusals(&app, "storage_bytes").await, 1);
    // With room for it, the same link converts.
    let fits = send(link(format!("storage_bytes={}", size * 10))).await;
    let done = app.settled("ivy", fits.id()).await;
    assert_eq!(done["status"], "done", "{done}");
    app.stop().await;
}

/// A key whose job was deleted is no repeat: the user's size limit holds.
async fn a_stale_key_keeps_the_size_limit(backend: Backend) {
    let host = common::link_host().await;
    let app = spawn_with(backend, |_| {}).await;
    let video = media("mp4");
    let limits = format!("max_upload_bytes={}", video.len() - 1);
    let first = send(
        app.request(Method::POST, "/internal/jobs", "jon")
            .header(LIMITS, &limits)
            .header("idempotency-key", "k")
            .json(&serde_json::json!({ "url": format!("{host}/clip.mp4") })),
    )
    .await;
    assert_eq!(first.status, 202, "{}", first.body);
    app.settled("jon", first.id()).await;
    delete(&app, "jon", first.id()).await;
    let again =
        send(upload(&app, "jon", &limits, video, false).header("idempotency-key", "k")).await;
    refused(&again, 413, "max_upload_bytes");
    app.stop().await;
}

/// One upload over the user's own size limit: 413 naming it, declared or streamed, and
/// nothing kept.
async fn an_upload_over_the_users_size_is_refused(backend: Backend) {
    let app = spawn_with(backend, |_| {}).await;
    let video = media("mp4");
    let limits = format!("max_upload_bytes={}", video.len() - 1);
    let declared = send(upload(&app, "eve", &limits, video.clone(), false)).await;
    refused(&declared, 413, "max_upload_bytes");
    let message = declared.body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("{} bytes", video.len() - 1)),
        "{message}"
    );
    // Without a length, it is found as it streams.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        video.chunks(1000).map(|c| Ok(c.to_vec())).collect();
    let streamed = send(
        app.request(Method::POST, "/internal/jobs", "eve")
            .header(LIMITS, &limits)
            .query(&[("filename", "clip.mp4")])
            .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks))),
    )
    .await;
    refused(&streamed, 413, "max_upload_bytes");
    assert_eq!(app.videos().await, 0);
    // Exactly at it is fine.
    let fits = format!("max_upload_bytes={}", video.len());
    let admitted = send(upload(&app, "eve", &fits, video, false)).await;
    assert_eq!(admitted.status, 202, "{}", admitted.body);
    assert_eq!(refusals(&app, "max_upload_bytes").await, 2);
    app.stop().await;
}

/// A video longer than the user's limit fails its job, found by ffprobe before converting.
async fn a_video_longer_than_the_users_limit_fails(backend: Backend) {
    let app = spawn_with(backend, |_| {}).await;
    // The clip lasts 3 s.
    let short = send(upload(
        &app,
        "fay",
        "max_duration_secs=2",
        media("mp4"),
        false,
    ))
    .await;
    assert_eq!(short.status, 202, "{}", short.body);
    let failed = app.settled("fay", short.id()).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["error"]["code"], "quota_exceeded", "{failed}");
    let message = failed["error"]["message"].as_str().unwrap();
    assert!(message.contains("your limit of 2s"), "{message}");
    assert_eq!(failed["attempts"], 1, "not retried: {failed}");
    assert_eq!(refusals(&app, "max_duration_secs").await, 1);

    let long_enough = send(upload(
        &app,
        "fay",
        "max_duration_secs=4",
        media("mp4"),
        false,
    ))
    .await;
    let done = app.settled("fay", long_enough.id()).await;
    assert_eq!(done["status"], "done", "{done}");
    app.stop().await;
}

/// Requests racing past the first check together are counted with each other: as many
/// admitted as the limit allows, never more, and what is refused leaves nothing. Uploads
/// are counted as they are stored; held ones (the gateway's) when they are started.
async fn racing_requests_never_pass_a_limit_together(backend: Backend) {
    let app = spawn_with(backend, |_| {}).await;
    let limits = "concurrent_jobs=2";
    let racing = (0..6).map(|_| send(upload(&app, "gus", limits, media("mp4"), false)));
    let answers = futures::future::join_all(racing).await;
    let admitted = answers.iter().filter(|a| a.status == 202).count();
    for answer in answers.iter().filter(|a| a.status != 202) {
        refused(answer, 429, "concurrent_jobs");
    }
    assert_eq!(admitted, 2, "admitted");
    let listed = app.jobs("gus").await;
    assert_eq!(listed["jobs"].as_array().unwrap().len(), 2, "{listed}");
    assert!(app.videos().await <= 2);

    // Held uploads, then their starts, all at once.
    let racing = (0..6).map(|_| send(upload(&app, "hub", limits, media("mp4"), true)));
    let held: Vec<String> = futures::future::join_all(racing)
        .await
        .iter()
        .filter(|a| a.status == 202)
        .map(|a| a.id().to_owned())
        .collect();
    assert!(held.len() >= 2, "{} held", held.len());
    let starts = held.iter().map(|id| {
        send(
            app.request(Method::POST, &format!("/internal/jobs/{id}/start"), "hub")
                .header(LIMITS, limits)
                .json(&serde_json::json!({})),
        )
    });
    let started = futures::future::join_all(starts).await;
    for answer in started.iter().filter(|a| a.status != 202) {
        refused(answer, 429, "concurrent_jobs");
    }
    assert_eq!(started.iter().filter(|a| a.status == 202).count(), 2);
    let listed = app.jobs("hub").await;
    assert_eq!(listed["jobs"].as_array().unwrap().len(), 2, "{listed}");
    app.stop().await;
}

/// A repeated request is answered with its first job, whatever the quota says now; limits
/// from a malformed header are refused; the usage reports the defaults under the overrides.
async fn a_repeat_is_answered_and_bad_limits_refused(backend: Backend) {
    let host = common::link_host().await;
    let app = spawn_with(backend, |_| {}).await;
    let limits = "jobs_per_hour=1";
    let url = format!("{host}/clip.mp4");
    let keyed = |key: &str| {
        app.request(Method::POST, "/internal/jobs", "hal")
            .header(LIMITS, limits)
            .header("idempotency-key", key)
            .json(&serde_json::json!({ "url": url }))
    };
    let first = send(keyed("k1")).await;
    assert_eq!(first.status, 202, "{}", first.body);
    let repeat = send(keyed("k1")).await;
    assert_eq!(repeat.status, 202, "{}", repeat.body);
    assert_eq!(repeat.id(), first.id());
    refused(&send(keyed("k2")).await, 429, "jobs_per_hour");

    // Once its job is done, the link's video is gone: nothing is left to count but what the
    // refused requests would leave.
    let done = app.settled("hal", first.id()).await;
    assert_eq!(done["status"], "done", "{done}");
    let before = app.videos().await;
    for bad in [
        "jobs=1",
        "jobs_per_hour=-1",
        "jobs_per_hour=1, jobs_per_hour=2",
    ] {
        let answer = send(upload(&app, "hal", bad, media("mp4"), false)).await;
        assert_eq!(answer.status, 400, "{bad}: {}", answer.body);
        assert_eq!(answer.body["error"]["code"], "invalid_limits", "{bad}");
    }
    assert_eq!(app.videos().await, before, "nothing kept");

    let quota = usage(&app, "hal", "storage_bytes=unlimited").await;
    let defaults = native_worker::config::QuotaConfig::default();
    assert_eq!(quota["limits"]["storage_bytes"], Value::Null, "{quota}");
    assert_eq!(
        quota["limits"]["jobs_per_hour"],
        defaults.jobs_per_hour.unwrap(),
        "{quota}"
    );
    assert_eq!(quota["usage"]["jobs_per_hour"], 1, "{quota}");
    app.stop().await;
}

on_both_backends!(
    concurrent_jobs_refuse_at_the_limit_until_one_goes,
    jobs_per_hour_refuse_until_the_window_moves_on,
    storage_refuses_what_does_not_fit,
    an_upload_over_the_users_size_is_refused,
    a_video_longer_than_the_users_limit_fails,
    racing_requests_never_pass_a_limit_together,
    a_repeat_is_answered_and_bad_limits_refused,
    a_link_that_does_not_fit_fails,
    a_stale_key_keeps_the_size_limit,
);
