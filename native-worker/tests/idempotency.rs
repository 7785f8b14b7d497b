//! `Idempotency-Key` on job creation (issue #19): a repeated request answers its first job, a
//! reused key with another request is refused, and a retried upload leaves one video. Both
//! backends.

#[macro_use]
mod common;

use common::{Answer, Backend, Stores, TestApp, media, spawn_with};
use reqwest::{Method, RequestBuilder};
use serde_json::{Value, json};

async fn send(request: RequestBuilder) -> Answer {
    Answer::of(request).await
}

fn link(app: &TestApp, owner: &str, key: &str, url: &str) -> RequestBuilder {
    app.request(Method::POST, "/internal/jobs", owner)
        .header("idempotency-key", key)
        .json(&json!({ "url": url }))
}

fn upload(app: &TestApp, owner: &str, key: &str, bytes: Vec<u8>, hold: bool) -> RequestBuilder {
    app.request(Method::POST, "/internal/jobs", owner)
        .header("idempotency-key", key)
        .query(&[
            ("filename", "clip.mp4"),
            ("hold", if hold { "true" } else { "false" }),
        ])
        .header("content-type", "application/octet-stream")
        .body(bytes)
}

fn start(app: &TestApp, owner: &str, key: &str, id: &str, options: Value) -> RequestBuilder {
    app.request(Method::POST, &format!("/internal/jobs/{id}/start"), owner)
        .header("idempotency-key", key)
        .json(&options)
}

/// A held upload of the clip for `cy` with `key`, then its start at `bitrate`: both answers.
async fn held_and_started(app: &TestApp, key: &str, bitrate: u32) -> (Answer, Answer) {
    let held = send(upload(app, "cy", key, media("mp4"), true)).await;
    let started = send(start(
        app,
        "cy",
        key,
        held.id(),
        json!({ "bitrate": bitrate }),
    ))
    .await;
    (held, started)
}

fn listed(page: &Value) -> Vec<&str> {
    page["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|job| job["id"].as_str().unwrap())
        .collect()
}

async fn a_repeated_link_request_answers_its_first_job(backend: Backend) {
    let host = common::link_host().await;
    let app = spawn_with(backend, |_| {}).await;
    let url = format!("{host}/clip.mp4");
    let first = send(link(&app, "ann", "order-1", &url)).await;
    assert_eq!(
        (first.status, first.replayed),
        (202, false),
        "{}",
        first.body
    );
    let again = send(link(&app, "ann", "order-1", &url)).await;
    assert_eq!(
        (again.status, again.replayed),
        (202, true),
        "{}",
        again.body
    );
    assert_eq!(again.id(), first.id());

    let other = send(link(&app, "ann", "order-1", &format!("{url}?v=2"))).await;
    assert_eq!(
        (other.status, other.code()),
        (422, "idempotency_key_reused")
    );
    let message = other.body["error"]["message"].as_str().unwrap();
    assert!(message.contains(first.id()), "{message}");

    // Keys are each owner's own.
    let theirs = send(link(&app, "bob", "order-1", &url)).await;
    assert_eq!((theirs.status, theirs.replayed), (202, false));
    assert_ne!(theirs.id(), first.id());
    assert_eq!(listed(&app.jobs("ann").await), [first.id()]);

    for bad in ["two words", &"k".repeat(256)] {
        let refused = send(link(&app, "ann", bad, &url)).await;
        assert_eq!(
            (refused.status, refused.code()),
            (400, "invalid_idempotency_key")
        );
    }

    // Once its job is deleted, the key makes a new one.
    app.settled("ann", first.id()).await;
    let deleted = app
        .request(
            Method::DELETE,
            &format!("/internal/jobs/{}", first.id()),
            "ann",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    let anew = send(link(&app, "ann", "order-1", &url)).await;
    assert_eq!((anew.status, anew.replayed), (202, false));
    assert_ne!(anew.id(), first.id());
    app.settled("ann", anew.id()).await;
    app.stop().await;
}

async fn a_retried_upload_stores_one_video(backend: Backend) {
    let app = spawn_with(backend, |c| c.retention.keep_sources = true).await;
    let first = send(upload(&app, "cy", "u-1", media("mp4"), false)).await;
    assert_eq!(
        (first.status, first.replayed),
        (202, false),
        "{}",
        first.body
    );
    let again = send(upload(&app, "cy", "u-1", media("mp4"), false)).await;
    assert_eq!(
        (again.status, again.replayed),
        (202, true),
        "{}",
        again.body
    );
    assert_eq!(again.id(), first.id());
    let other = send(upload(&app, "cy", "u-1", media("webm"), false)).await;
    assert_eq!(
        (other.status, other.code()),
        (422, "idempotency_key_reused")
    );
    assert_eq!(app.settled("cy", first.id()).await["status"], "done");
    assert_eq!(app.videos().await, 1, "one video for the three requests");

    // Held uploads claim their key when started, with their options.
    let held = send(upload(&app, "cy", "h-1", media("mp4"), true)).await;
    assert_eq!(held.body["held"], true, "{}", held.body);
    let started = send(start(&app, "cy", "h-1", held.id(), json!({"bitrate": 320}))).await;
    assert_eq!(
        (started.status, started.replayed),
        (202, false),
        "{}",
        started.body
    );
    assert_eq!(started.id(), held.id());

    let (retry, repeated) = held_and_started(&app, "h-1", 320).await;
    assert_eq!(
        (repeated.status, repeated.replayed),
        (202, true),
        "{}",
        repeated.body
    );
    assert_eq!(repeated.id(), held.id());
    assert_eq!(
        app.job("cy", retry.id()).await.status(),
        404,
        "the retry's held job went"
    );

    let (changed, refused) = held_and_started(&app, "h-1", 128).await;
    assert_eq!(
        (refused.status, refused.code()),
        (422, "idempotency_key_reused")
    );
    assert_eq!(app.job("cy", changed.id()).await.status(), 404);

    assert_eq!(app.settled("cy", held.id()).await["status"], "done");
    assert_eq!(
        app.videos().await,
        2,
        "the first upload's and the held one's"
    );
    let stores = Stores::of(&app).await;
    for retried in [
        retry.body["video_id"].as_str(),
        changed.body["video_id"].as_str(),
    ] {
        assert_eq!(stores.videos.size(retried.unwrap()).await.unwrap(), None);
    }
    let mut ids = listed(&app.jobs("cy").await)
        .into_iter()
        .map(str::to_owned)
        .collect::<Vec<_>>();
    ids.sort();
    let mut expected = vec![first.id().to_owned(), held.id().to_owned()];
    expected.sort();
    assert_eq!(ids, expected);
    app.stop().await;
}

/// Requests with one key at once (a client retrying before its first answer came): one job.
async fn racing_requests_with_one_key_make_one_job(backend: Backend) {
    let host = common::link_host().await;
    let app = spawn_with(backend, |_| {}).await;
    let url = format!("{host}/clip.mp4");
    let answers =
        futures::future::join_all((0..6).map(|_| send(link(&app, "dee", "burst", &url)))).await;
    let first = answers
        .iter()
        .find(|a| !a.replayed)
        .expect("one made the job");
    for answer in &answers {
        assert_eq!(answer.status, 202, "{}", answer.body);
        assert_eq!(answer.id(), first.id());
    }
    assert_eq!(answers.iter().filter(|a| !a.replayed).count(), 1);
    assert_eq!(listed(&app.jobs("dee").await), [first.id()]);
    app.settled("dee", first.id()).await;
    app.stop().await;
}

/// A first request that died between storing its job and queueing it (a crash, say): its
/// retry answers that job and queues it, and the job is converted.
async fn a_retry_queues_a_job_its_first_request_left_unqueued(backend: Backend) {
    let host = common::link_host().await;
    let app = spawn_with(backend, |_| {}).await;
    let url = format!("{host}/clip.mp4");
    let stores = Stores::of(&app).await;
    let mut stranded = native_worker::job::Job::new(
        "eve".into(),
        native_worker::job::Source::link(&url),
        Default::default(),
    );
    stranded.updated_at -= std::time::Duration::from_secs(60);
    stores.jobs.insert(&stranded).await.unwrap();
    let print = native_worker::idempotency::fingerprint(&stranded, None);
    let now = time::OffsetDateTime::now_utc();
    let claim = stores
        .jobs
        .claim_key("eve", "lost", stranded.id, &print, now, now)
        .await
        .unwrap();
    assert_eq!(claim, native_worker::jobs::Claim::Claimed);

    let retry = send(link(&app, "eve", "lost", &url)).await;
    assert_eq!(
        (retry.status, retry.replayed),
        (202, true),
        "{}",
        retry.body
    );
    assert_eq!(retry.id(), stranded.id.to_string());
    let done = app.settled("eve", retry.id()).await;
    assert_eq!(done["status"], "done", "{done}");
    app.stop().await;
}

on_both_backends!(
    a_retry_queues_a_job_its_first_request_left_unqueued,
    a_repeated_link_request_answers_its_first_job,
    a_retried_upload_stores_one_video,
    racing_requests_with_one_key_make_one_job,
);
