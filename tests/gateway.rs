//! The gateway end to end, as clients use it: through the host from the repository's
//! `spin.toml`, with the real auth function and the real native worker. Two ways to run the
//! system: `mp3conv up` (one process, embedded defaults) and the cluster's shape (`mp3conv
//! serve` plus `mp3conv-worker` as separate processes on MariaDB, RabbitMQ and the
//! MongoDB-compatible server).
//!
//! Every response any test here receives is checked against `openapi.yaml`: a status code the
//! document does not list for that route, another content type or a JSON body its schema
//! refuses fails the test (`common::openapi`).

mod common;

use common::api::{
    INTERNAL_TOKEN, System, conforms, documented, expect, expect_error, send, uuid_like, video_site,
};
use common::{HostOptions, HostProcess, media, mp3conv, probe_audio, repo_manifest};
use reqwest::{Method, RequestBuilder};
use serde_json::{Value, json};

/// The v1 API from registration to deletion: upload and link, status, list, download with
/// Range and ETag, delete.
async fn v1_flow(system: &System) {
    let token = system.user("v1").await;
    let me = expect(system.authed(&token, Method::GET, "/v1/me"), 200).await;
    assert!(me["email"].as_str().unwrap().starts_with("v1-"));

    let job = system.upload_clip(&token, Some("128")).await;
    let id = job["id"].as_str().unwrap().to_owned();
    let site = video_site().await;
    let link = expect(
        system
            .authed(&token, Method::POST, "/v1/jobs")
            .json(&json!({ "url": format!("{site}/talk.mp4"), "bitrate": "v2" })),
        202,
    )
    .await;
    let missing = expect(
        system
            .authed(&token, Method::POST, "/v1/jobs")
            .json(&json!({ "url": format!("{site}/gone.mp4") })),
        202,
    )
    .await;

    let done = system.settled(&token, &id).await;
    assert_eq!(done["status"], "done", "{done}");
    assert_eq!(done["progress"], 100);
    assert_eq!(done["bitrate"], "128");
    assert_eq!(done["source"]["filename"], "Holiday clip.mp4");
    let size = done["audio"]["size"].as_u64().unwrap();

    // The whole file: an MP3 of the clip's length, with a download name and an ETag.
    let response = send(system.authed(&token, Method::GET, &format!("/v1/jobs/{id}/audio"))).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "audio/mpeg");
    assert!(
        response.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment; filename=\"Holiday clip.mp3\"")
    );
    let etag = response.headers()["etag"].to_str().unwrap().to_owned();
    let mp3 = response.bytes().await.unwrap();
    assert_eq!(mp3.len() as u64, size);
    let (codec, duration) = probe_audio(&mp3);
    assert_eq!(codec, "mp3");
    assert!((duration - 3.0).abs() <= 0.1, "duration {duration}");

    // A range, the last bytes, and a conditional request.
    let response = send(
        system
            .authed(&token, Method::GET, &format!("/v1/jobs/{id}/audio"))
            .header("range", "bytes=100-199"),
    )
    .await;
    assert_eq!(response.status(), 206);
    assert_eq!(
        response.headers()["content-range"],
        format!("bytes 100-199/{size}").as_str()
    );
    assert_eq!(response.bytes().await.unwrap(), mp3[100..200]);
    let response = send(
        system
            .authed(&token, Method::GET, &format!("/v1/jobs/{id}/audio"))
            .header("if-none-match", &etag),
    )
    .await;
    assert_eq!(response.status(), 304);
    // A 304 may name the representation's length, never a 0 that a cache would take for it.
    if let Some(length) = response.headers().get("content-length") {
        assert_eq!(length.to_str().unwrap(), size.to_string());
    }
    expect_error(
        system
            .authed(&token, Method::GET, &format!("/v1/jobs/{id}/audio"))
            .header("range", format!("bytes={}-", size + 10)),
        416,
        "range_not_satisfiable",
    )
    .await;

    // The link converts too; a dead link fails with its reason.
    let link = system.settled(&token, link["id"].as_str().unwrap()).await;
    assert_eq!(link["status"], "done", "{link}");
    assert_eq!(link["bitrate"], "v2");
    let missing = system
        .settled(&token, missing["id"].as_str().unwrap())
        .await;
    assert_eq!(missing["status"], "failed");
    assert_eq!(missing["error"]["code"], "link_not_found", "{missing}");
    expect_error(
        system.authed(
            &token,
            Method::GET,
            &format!("/v1/jobs/{}/audio", missing["id"].as_str().unwrap()),
        ),
        409,
        "not_ready",
    )
    .await;

    // Newest first, paginated.
    let page = expect(system.authed(&token, Method::GET, "/v1/jobs?limit=2"), 200).await;
    let ids: Vec<&str> = page["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            missing["id"].as_str().unwrap(),
            link["id"].as_str().unwrap()
        ]
    );
    let cursor = page["next_cursor"].as_str().unwrap();
    let rest = expect(
        system.authed(
            &token,
            Method::GET,
            &format!("/v1/jobs?limit=2&cursor={cursor}"),
        ),
        200,
    )
    .await;
    assert_eq!(rest["jobs"][0]["id"], id.as_str());
    assert_eq!(rest["next_cursor"], Value::Null);

    // Delete: gone for good.
    let response = send(system.authed(&token, Method::DELETE, &format!("/v1/jobs/{id}"))).await;
    assert_eq!(response.status(), 204);
    expect_error(
        system.authed(&token, Method::GET, &format!("/v1/jobs/{id}")),
        404,
        "not_found",
    )
    .await;
    expect_error(
        system.authed(&token, Method::GET, &format!("/v1/jobs/{id}/audio")),
        404,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn v1_flow_embedded() {
    v1_flow(&System::embedded(&[])).await;
}

#[tokio::test]
async fn v1_flow_on_services() {
    v1_flow(&System::services()).await;
}

/// An MP3 whose stored file turns out shorter than its record (a disk fault, a file cut by
/// hand) reaches the client as a broken download, never as a short body that looks complete:
/// the worker's length travels with the answer the gateway streams on, and a body that falls
/// short of it is not finished. (A stream without a length that breaks: `tests/events.rs`.)
#[tokio::test]
async fn a_download_cut_short_fails_for_the_client_embedded() {
    let system = System::embedded(&[]);
    let token = system.user("cut").await;
    let job = system.upload_clip(&token, None).await;
    let id = job["id"].as_str().unwrap();
    let done = system.settled(&token, id).await;
    assert_eq!(done["status"], "done", "{done}");
    let size = done["audio"]["size"].as_u64().unwrap();

    let mp3s = system.host.data_dir().join("blobs").join("mp3s");
    let stored: Vec<_> = std::fs::read_dir(&mp3s)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| std::fs::metadata(path).unwrap().len() == size)
        .collect();
    assert_eq!(
        stored.len(),
        1,
        "one stored MP3 of {size} bytes in {mp3s:?}"
    );
    std::fs::OpenOptions::new()
        .write(true)
        .open(&stored[0])
        .unwrap()
        .set_len(size / 2)
        .unwrap();

    let sent = system
        .authed(&token, Method::GET, &format!("/v1/jobs/{id}/audio"))
        .send()
        .await;
    match sent {
        // Cut before the host flushed the head: the connection closes with no answer.
        Err(err) => assert!(!err.is_timeout() && !err.is_connect(), "{err:?}"),
        Ok(response) => {
            assert_eq!(response.status(), 200);
            let body = response.bytes().await;
            assert!(
                body.is_err(),
                "a body of {} bytes for {size} ended as if complete",
                body.map(|b| b.len()).unwrap_or_default()
            );
        }
    }
    // The system is still well: the job answers.
    expect(
        system.authed(&token, Method::GET, &format!("/v1/jobs/{id}")),
        200,
    )
    .await;
}

/// Retention through the gateway, with a short expiry: a done job says when its MP3 goes;
/// after that its audio, its `/download?fid=` and its job stream answer as expired (410
/// `audio_expired`, the documented shapes), then the job is gone.
async fn an_expired_mp3_is_gone(system: &System) {
    let token = system.user("ursula").await;
    let job = system.upload_clip(&token, None).await;
    let id = job["id"].as_str().unwrap();
    let done = system.settled(&token, id).await;
    assert_eq!(done["status"], "done", "{done}");
    assert!(done["expires_at"].is_string(), "{done}");
    let audio = format!("/v1/jobs/{id}/audio");
    let response = send(system.authed(&token, Method::GET, &audio)).await;
    assert_eq!(response.status(), 200);

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let expired = loop {
        let job = expect(
            system.authed(&token, Method::GET, &format!("/v1/jobs/{id}")),
            200,
        )
        .await;
        if job["status"] == "expired" {
            break job;
        }
        assert!(std::time::Instant::now() < deadline, "never expired: {job}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert!(expired["audio"].is_null(), "{expired}");
    expect_error(
        system.authed(&token, Method::GET, &audio),
        410,
        "audio_expired",
    )
    .await;
    expect_error(
        system.authed(&token, Method::GET, &format!("/download?fid={id}")),
        410,
        "audio_expired",
    )
    .await;
    let listed = expect(system.authed(&token, Method::GET, "/v1/jobs"), 200).await;
    assert_eq!(listed["jobs"][0]["status"], "expired", "{listed}");
    // Someone else still sees nothing at all.
    let other = system.user("victor").await;
    expect_error(system.authed(&other, Method::GET, &audio), 404, "not_found").await;
}

/// `Idempotency-Key` through the gateway: a retried upload answers its first job, with the
/// status its route first answered; the key with another request is 422; a bad key 400.
async fn a_retried_upload_is_one_job(system: &System) {
    let token = system.user("yusuf").await;
    let clip = std::fs::read(media("clip")).unwrap();
    let upload = |path: &str, key: &str, bitrate: &str| {
        let form = reqwest::multipart::Form::new()
            .part(
                "file",
                reqwest::multipart::Part::bytes(clip.clone())
                    .file_name("Holiday clip.mp4")
                    .mime_str("video/mp4")
                    .unwrap(),
            )
            .text("bitrate", bitrate.to_owned());
        system
            .authed(&token, Method::POST, path)
            .header("Idempotency-Key", key)
            .multipart(form)
    };
    let replayed = |response: &reqwest::Response| {
        response
            .headers()
            .get("idempotent-replayed")
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let first = send(upload("/v1/jobs", "retry-1", "320")).await;
    assert_eq!((first.status().as_u16(), replayed(&first)), (202, None));
    let first: Value = first.json().await.unwrap();
    let again = send(upload("/v1/jobs", "retry-1", "320")).await;
    assert_eq!(
        (again.status().as_u16(), replayed(&again)),
        (202, Some("true".to_owned()))
    );
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["id"], first["id"], "{again}");
    expect_error(
        upload("/v1/jobs", "retry-1", "128"),
        422,
        "idempotency_key_reused",
    )
    .await;
    expect_error(
        upload("/v1/jobs", "two words", "320"),
        400,
        "invalid_idempotency_key",
    )
    .await;
    let original = expect(upload("/upload", "retry-2", "320"), 200).await;
    let original_again = expect(upload("/upload", "retry-2", "320"), 200).await;
    assert_eq!(original_again["id"], original["id"]);
    let listed = expect(system.authed(&token, Method::GET, "/v1/jobs"), 200).await;
    let mut ids: Vec<&str> = listed["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|job| job["id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    let mut expected = vec![
        first["id"].as_str().unwrap(),
        original["id"].as_str().unwrap(),
    ];
    expected.sort_unstable();
    assert_eq!(ids, expected);
    for id in expected {
        assert_eq!(system.settled(&token, id).await["status"], "done");
    }
}

#[tokio::test]
async fn a_retried_upload_is_one_job_embedded() {
    a_retried_upload_is_one_job(&System::embedded(&[])).await;
}

#[tokio::test]
async fn a_retried_upload_is_one_job_on_services() {
    a_retried_upload_is_one_job(&System::services()).await;
}

/// Quotas through the gateway, as an operator sets them and a user meets them: `GET /v1/me`
/// shows the defaults, then what `mp3conv users limit` set; an upload over the user's size is
/// 413, a job past their hourly jobs 429 with `Retry-After`; `default` brings a limit back;
/// another user keeps the defaults.
async fn an_operator_limits_a_user(system: &System) {
    let (token, email) = system.user_and_email("quinn").await;
    let me = expect(system.authed(&token, Method::GET, "/v1/me"), 200).await;
    assert_eq!(me["email"], email.as_str(), "{me}");
    let defaults = me["quota"]["limits"].clone();
    assert_eq!(defaults["jobs_per_hour"], 100, "{me}");
    assert_eq!(me["quota"]["usage"]["jobs_per_hour"], 0, "{me}");

    let clip = std::fs::read(media("clip")).unwrap();
    let told = system.limit_user(
        &email,
        &[
            "--jobs-per-hour",
            "1",
            "--max-upload",
            &format!("{}", clip.len() - 1),
        ],
    );
    assert!(told.contains("jobs_per_hour      1\n"), "{told}");
    let me = expect(system.authed(&token, Method::GET, "/v1/me"), 200).await;
    assert_eq!(me["quota"]["limits"]["jobs_per_hour"], 1, "{me}");
    assert_eq!(
        me["quota"]["limits"]["max_upload_bytes"],
        clip.len() - 1,
        "{me}"
    );
    assert_eq!(
        me["quota"]["limits"]["storage_bytes"], defaults["storage_bytes"],
        "{me}"
    );

    let form = |bytes: Vec<u8>| {
        reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(bytes)
                .file_name("clip.mp4")
                .mime_str("video/mp4")
                .unwrap(),
        )
    };
    let too_large = expect(
        system
            .authed(&token, Method::POST, "/v1/jobs")
            .multipart(form(clip.clone())),
        413,
    )
    .await;
    assert_eq!(too_large["error"]["code"], "quota_exceeded", "{too_large}");
    assert_eq!(
        too_large["error"]["limit"], "max_upload_bytes",
        "{too_large}"
    );

    system.limit_user(&email, &["--max-upload", "default"]);
    let job = expect(
        system
            .authed(&token, Method::POST, "/v1/jobs")
            .multipart(form(clip.clone())),
        202,
    )
    .await;
    let response = send(
        system
            .authed(&token, Method::POST, "/upload")
            .multipart(form(clip.clone())),
    )
    .await;
    assert_eq!(response.status(), 429);
    let wait: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((3000..=3601).contains(&wait), "Retry-After {wait}");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "quota_exceeded", "{body}");
    assert_eq!(body["error"]["limit"], "jobs_per_hour", "{body}");

    let done = system.settled(&token, job["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "done", "{done}");
    let me = expect(system.authed(&token, Method::GET, "/v1/me"), 200).await;
    let usage = &me["quota"]["usage"];
    assert_eq!(usage["jobs_per_hour"], 1, "{me}");
    assert_eq!(usage["concurrent_jobs"], 0, "{me}");
    assert_eq!(usage["storage_bytes"], done["audio"]["size"], "{me}");

    // Someone else has the defaults still.
    let other = system.user("rosa").await;
    let theirs = expect(system.authed(&other, Method::GET, "/v1/me"), 200).await;
    assert_eq!(theirs["quota"]["limits"], defaults, "{theirs}");
}

#[tokio::test]
async fn an_operator_limits_a_user_embedded() {
    an_operator_limits_a_user(&System::embedded(&[])).await;
}

#[tokio::test]
async fn an_operator_limits_a_user_on_services() {
    an_operator_limits_a_user(&System::services()).await;
}

/// Short periods, so that the test sees them pass.
const SHORT_RETENTION: [(&str, &str); 3] = [
    ("RETENTION__AUDIO", "5s"),
    ("RETENTION__EXPIRED", "1h"),
    ("RETENTION__SWEEP_INTERVAL", "200ms"),
];

#[tokio::test]
async fn an_expired_mp3_is_gone_embedded() {
    let env: Vec<(String, &str)> = SHORT_RETENTION
        .iter()
        .map(|(key, value)| (format!("MP3CONV_WORKER__{key}"), *value))
        .collect();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    an_expired_mp3_is_gone(&System::embedded_with(&[], &env)).await;
}

#[tokio::test]
async fn an_expired_mp3_is_gone_on_services() {
    an_expired_mp3_is_gone(&System::services_with(&SHORT_RETENTION, false)).await;
}

/// The original system's client, unchanged: curl with `-u` to log in, `-F file=@...` to
/// upload, `?fid=` to download.
#[tokio::test]
async fn original_curl_flow_embedded() {
    original_curl_flow(&System::embedded(&[])).await;
}

#[tokio::test]
async fn original_curl_flow_on_services() {
    original_curl_flow(&System::services()).await;
}

async fn original_curl_flow(system: &System) {
    let email = format!("curl-{}@example.com", uuid_like());
    expect(
        system
            .request(Method::POST, "/auth/register")
            .json(&json!({ "email": email, "password": "correct horse battery" })),
        201,
    )
    .await;
    let out = tempfile::tempdir().unwrap();
    // curl reports the status and content type after the body, so every answer it gets is
    // checked against openapi.yaml like the others (`conforms`); `method` is what the original
    // flags below make curl send.
    let curl =
        |method: &'static str, path: String, args: Vec<String>, saved: Option<&'static str>| {
            let saved = saved.map(|name| out.path().join(name));
            async move {
                let mut command = tokio::process::Command::new("curl");
                command.arg("--silent").arg("--show-error").args(&args);
                if let Some(file) = &saved {
                    command.arg("--output").arg(file);
                }
                let output = command
                    .args(["--write-out", "\n%{http_code} %{content_type}"])
                    .arg(system.url(&path))
                    .output()
                    .await
                    .expect("running curl");
                assert!(
                    output.status.success(),
                    "curl {args:?}: {}",
                    String::from_utf8_lossy(&output.stderr)
                );
                let stdout = String::from_utf8(output.stdout).unwrap();
                let (body, trailer) = stdout.rsplit_once('\n').unwrap();
                let (status, content_type) = trailer.split_once(' ').unwrap();
                let status: u16 = status.parse().unwrap();
                let received = match &saved {
                    Some(file) => std::fs::read(file).unwrap(),
                    None => body.as_bytes().to_vec(),
                };
                let route = path.split('?').next().unwrap();
                let content_type = Some(content_type).filter(|t| !t.is_empty());
                conforms(method, route, status, content_type, &received);
                (status, body.to_owned())
            }
        };
    let (status, token) = curl(
        "POST",
        "/login".into(),
        vec![
            "-u".into(),
            format!("{email}:correct horse battery"),
            "-X".into(),
            "POST".into(),
        ],
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");

    let clip = media("clip");
    let (status, job) = curl(
        "POST",
        "/upload".into(),
        vec![
            "-F".into(),
            format!("file=@{}", clip.display()),
            "-H".into(),
            format!("Authorization: Bearer {token}"),
        ],
        None,
    )
    .await;
    assert_eq!(status, 200);
    let job: Value = serde_json::from_str(&job).unwrap();
    let id = job["id"].as_str().expect("the job's id").to_owned();
    assert_eq!(job["status"], "queued");
    let done = system.settled(&token, &id).await;
    assert_eq!(done["status"], "done", "{done}");

    for fid in [id.clone(), done["audio"]["id"].as_str().unwrap().to_owned()] {
        let (status, _) = curl(
            "GET",
            format!("/download?fid={fid}"),
            vec![
                "-X".into(),
                "GET".into(),
                "-H".into(),
                format!("Authorization: Bearer {token}"),
            ],
            Some("mp3_download.mp3"),
        )
        .await;
        assert_eq!(status, 200);
        let file = out.path().join("mp3_download.mp3");
        let (codec, duration) = probe_audio(&std::fs::read(&file).unwrap());
        assert_eq!(codec, "mp3");
        assert!((duration - 3.0).abs() <= 0.1, "duration {duration}");
    }
}

/// Malformed, hostile and misdirected requests: each gets its documented 4xx and a JSON
/// error, never a 5xx, and leaves nothing behind.
#[tokio::test]
async fn bad_input_table() {
    let system = System::embedded(&[]);
    let token = system.user("bad").await;
    let other = system.user("other").await;
    let theirs = system.upload_clip(&other, None).await;
    let theirs = theirs["id"].as_str().unwrap();

    // A token exactly like a real one, signed with the real key, but expired.
    let keys = system.host.data_dir().join("keys");
    let pem = std::fs::read(keys.join("jwt-signing.pem")).unwrap();
    let jwks: Value =
        serde_json::from_str(&std::fs::read_to_string(keys.join("jwks.json")).unwrap()).unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.kid = Some(jwks["keys"][0]["kid"].as_str().unwrap().to_owned());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let expired = jsonwebtoken::encode(
        &header,
        &json!({"sub":"x","email":"x@example.com","iat":now - 7200,"exp":now - 3600,"iss":"mp3conv","aud":"mp3conv","jti":"j"}),
        &jsonwebtoken::EncodingKey::from_ed_pem(&pem).unwrap(),
    )
    .unwrap();

    // A deleted account's token stops working at once.
    let deleted = system.user("deleted").await;
    let response = send(system.authed(&deleted, Method::DELETE, "/v1/me")).await;
    assert_eq!(response.status(), 204);

    let clip = std::fs::read(media("clip")).unwrap();
    let file = |name: &str| {
        reqwest::multipart::Part::bytes(clip.clone())
            .file_name(name.to_owned())
            .mime_str("video/mp4")
            .unwrap()
    };
    let unknown = "0192f1a4-7c2b-7d3e-8f00-123456789abc";
    let jobs = "/v1/jobs";
    let cases: Vec<(&str, RequestBuilder, u16, &str)> = vec![
        ("no token", system.request(Method::GET, jobs), 401, "missing_token"),
        (
            "not a bearer token",
            system.request(Method::GET, jobs).basic_auth("a", Some("b")),
            401,
            "missing_token",
        ),
        ("malformed token", system.authed("not.a.jwt", Method::GET, jobs), 401, "invalid_token"),
        ("expired token", system.authed(&expired, Method::GET, jobs), 401, "invalid_token"),
        ("deleted user", system.authed(&deleted, Method::GET, jobs), 401, "unknown_user"),
        (
            "two files",
            system.authed(&token, Method::POST, jobs).multipart(
                reqwest::multipart::Form::new()
                    .part("file", file("a.mp4"))
                    .part("file", file("b.mp4")),
            ),
            400,
            "too_many_files",
        ),
        (
            "two files, original",
            system.authed(&token, Method::POST, "/upload").multipart(
                reqwest::multipart::Form::new()
                    .part("video", file("a.mp4"))
                    .part("other", file("b.mp4")),
            ),
            400,
            "too_many_files",
        ),
        (
            "no file",
            system
                .authed(&token, Method::POST, jobs)
                .multipart(reqwest::multipart::Form::new().text("bitrate", "128")),
            400,
            "missing_file",
        ),
        (
            "no file, original",
            system
                .authed(&token, Method::POST, "/upload")
                .multipart(reqwest::multipart::Form::new().text("note", "hi")),
            400,
            "missing_file",
        ),
        (
            "an unknown field",
            system.authed(&token, Method::POST, jobs).multipart(
                reqwest::multipart::Form::new()
                    .text("colour", "blue")
                    .part("file", file("a.mp4")),
            ),
            400,
            "unknown_field",
        ),
        (
            "an unknown JSON field",
            system
                .authed(&token, Method::POST, jobs)
                .json(&json!({"url": "https://example.com/a.mp4", "colour": "blue"})),
            400,
            "unknown_field",
        ),
        (
            "a bad bitrate",
            system.authed(&token, Method::POST, jobs).multipart(
                reqwest::multipart::Form::new()
                    .text("bitrate", "1000")
                    .part("file", file("a.mp4")),
            ),
            400,
            "invalid_bitrate",
        ),
        (
            "a file:// URL",
            system
                .authed(&token, Method::POST, jobs)
                .json(&json!({"url": "file:///etc/passwd"})),
            400,
            "invalid_url",
        ),
        (
            "a private-address URL",
            system
                .authed(&token, Method::POST, jobs)
                .json(&json!({"url": "http://10.1.2.3/video.mp4"})),
            400,
            "link_forbidden",
        ),
        (
            "a cloud-metadata URL",
            system
                .authed(&token, Method::POST, jobs)
                .json(&json!({"url": "http://169.254.169.254/latest/meta-data/"})),
            400,
            "link_forbidden",
        ),
        (
            // Once sliced inside a character: a panic, 500 `component_failed`.
            "a link starting with non-ASCII characters",
            system
                .authed(&token, Method::POST, jobs)
                .json(&json!({"url": "\u{a7}\u{a7}\u{a7}\u{a7}https://example.com/a.mp4"})),
            400,
            "invalid_url",
        ),
        (
            "a link that is not a URL",
            system
                .authed(&token, Method::POST, jobs)
                .json(&json!({"url": "https://exa mple.com/a.mp4"})),
            400,
            "invalid_url",
        ),
        (
            // Once ignored for links: a job made at the default bitrate.
            "a bad ?bitrate= with a link",
            system
                .authed(&token, Method::POST, &format!("{jobs}?bitrate=999"))
                .json(&json!({"url": "https://example.com/a.mp4"})),
            400,
            "invalid_bitrate",
        ),
        (
            "a 10 MB JSON body",
            system
                .authed(&token, Method::POST, jobs)
                .header("content-type", "application/json")
                .body(format!(r#"{{"url":"https://example.com/{}"}}"#, "a".repeat(10 << 20))),
            413,
            "body_too_large",
        ),
        (
            "malformed JSON",
            system
                .authed(&token, Method::POST, jobs)
                .header("content-type", "application/json")
                .body("{\"url\":"),
            400,
            "invalid_json",
        ),
        (
            "a wrong content type",
            system
                .authed(&token, Method::POST, jobs)
                .header("content-type", "text/plain")
                .body("hello"),
            415,
            "unsupported_media_type",
        ),
        (
            "multipart without a boundary",
            system
                .authed(&token, Method::POST, jobs)
                .header("content-type", "multipart/form-data")
                .body("hello"),
            400,
            "invalid_multipart",
        ),
        (
            "a broken multipart body",
            system
                .authed(&token, Method::POST, jobs)
                .header("content-type", "multipart/form-data; boundary=XYZ")
                .body("--XYZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.mp4\"\r\n\r\nno closing boundary"),
            400,
            "invalid_multipart",
        ),
        (
            "an unknown job id",
            system.authed(&token, Method::GET, &format!("{jobs}/{unknown}")),
            404,
            "not_found",
        ),
        (
            "a job id that is not an id",
            system.authed(&token, Method::GET, &format!("{jobs}/..%2F..%2Fetc")),
            404,
            "not_found",
        ),
        (
            "another user's job",
            system.authed(&token, Method::GET, &format!("{jobs}/{theirs}")),
            404,
            "not_found",
        ),
        (
            "another user's audio",
            system.authed(&token, Method::GET, &format!("/download?fid={theirs}")),
            404,
            "not_found",
        ),
        (
            "deleting another user's job",
            system.authed(&token, Method::DELETE, &format!("{jobs}/{theirs}")),
            404,
            "not_found",
        ),
        (
            "a download without fid",
            system.authed(&token, Method::GET, "/download"),
            400,
            "missing_fid",
        ),
        (
            "a negative limit",
            system.authed(&token, Method::GET, &format!("{jobs}?limit=-1")),
            400,
            "invalid_limit",
        ),
        (
            "a bogus cursor",
            system.authed(&token, Method::GET, &format!("{jobs}?cursor=bogus")),
            400,
            "invalid_cursor",
        ),
        (
            "an unknown query parameter",
            system.authed(&token, Method::GET, &format!("{jobs}?owner={theirs}")),
            400,
            "unknown_parameter",
        ),
        ("login without credentials", system.request(Method::POST, "/login"), 401, "missing_credentials"),
        (
            "login with a wrong password",
            system
                .request(Method::POST, "/login")
                .basic_auth("nobody@example.com", Some("wrong password")),
            401,
            "invalid_credentials",
        ),
        ("a wrong method", system.authed(&token, Method::PUT, jobs), 405, "method_not_allowed"),
        ("an unknown route", system.request(Method::GET, "/v2/jobs"), 404, "not_found"),
    ];
    for (name, request, status, code) in cases {
        let response = send(request).await;
        let actual = response.status().as_u16();
        let headers = response.headers().clone();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert_eq!(
            (actual, body["error"]["code"].as_str()),
            (status, Some(code)),
            "{name}: {body}"
        );
        if status == 401 && code != "invalid_credentials" && !name.starts_with("login") {
            assert!(
                headers["www-authenticate"]
                    .to_str()
                    .unwrap()
                    .starts_with("Bearer"),
                "{name}"
            );
        }
    }

    // Nothing was left behind by the refused uploads, and the other user's job is intact.
    let mine = expect(system.authed(&token, Method::GET, jobs), 200).await;
    assert_eq!(
        mine["jobs"],
        json!([]),
        "refused requests made jobs: {mine}"
    );
    expect(
        system.authed(&other, Method::GET, &format!("{jobs}/{theirs}")),
        200,
    )
    .await;
}

/// Webhook URLs are read as HTTP clients read them (WHATWG): every spelling of a loopback,
/// private, multicast, reserved or NAT64 address is refused with 400 and a JSON error, and
/// nothing is stored. Run with the defaults (`webhook_allow_local` false), which the accepted
/// and refused URLs at the end prove are in force.
#[tokio::test]
async fn webhook_urls_in_numeric_forms_are_refused() {
    let system = System::embedded(&[]);
    let token = system.user("hook").await;
    let put = |url: &str| {
        system
            .authed(&token, Method::PUT, "/v1/me/webhook")
            .json(&json!({ "url": url }))
    };
    for (url, code) in [
        ("https://0x7f000001/", "webhook_forbidden"),
        ("https://2130706433/", "webhook_forbidden"),
        ("https://127.1/", "webhook_forbidden"),
        ("https://0177.0.0.1/", "webhook_forbidden"),
        ("https://0/", "webhook_forbidden"),
        ("https://%31%32%37.0.0.1/", "webhook_forbidden"),
        ("https://127.0.0.1./", "webhook_forbidden"),
        ("https://[::ffff:7f00:1]/", "webhook_forbidden"),
        ("https://[::1]/", "webhook_forbidden"),
        ("https://169.254.169.254/", "webhook_forbidden"),
        ("https://224.0.0.1/", "webhook_forbidden"),
        ("https://240.0.0.1/", "webhook_forbidden"),
        ("https://[64:ff9b::7f00:1]/", "webhook_forbidden"),
        ("https://localhost./", "webhook_forbidden"),
        ("https://metadata/computeMetadata/v1/", "webhook_forbidden"),
        // Userinfo: the host is 127.0.0.1, not example.com.
        ("https://example.com@127.0.0.1/", "invalid_webhook_url"),
    ] {
        let body = expect(put(url), 400).await;
        assert_eq!(body["error"]["code"], code, "{url}: {body}");
        assert!(body["error"]["message"].is_string(), "{url}: {body}");
        expect_error(
            system.authed(&token, Method::GET, "/v1/me/webhook"),
            404,
            "not_found",
        )
        .await;
    }
    let hook = expect(put("https://Hooks.Example.com"), 200).await;
    assert_eq!(hook["url"], "https://hooks.example.com/", "kept normalised");
    expect_error(
        put("http://hooks.example.com/in"),
        400,
        "invalid_webhook_url",
    )
    .await;
}

/// A file part declared `application/json` (`curl -F 'file=@x.json;type=application/json'`)
/// is an upload like any other, on both routes: never a link job, even when the file is a
/// link request the worker would take.
#[tokio::test]
async fn file_parts_declared_as_json_are_uploads() {
    let system = System::embedded(&[]);
    let token = system.user("jsonpart").await;
    let site = video_site().await;
    let link = json!({ "url": format!("{site}/talk.mp4") }).to_string();
    for (path, status) in [("/upload", 200), ("/v1/jobs", 202)] {
        let part = reqwest::multipart::Part::bytes(link.clone().into_bytes())
            .file_name("x.json")
            .mime_str("application/json")
            .unwrap();
        let job = expect(
            system
                .authed(&token, Method::POST, path)
                .multipart(reqwest::multipart::Form::new().part("file", part)),
            status,
        )
        .await;
        assert_eq!(job["source"]["kind"], "upload", "{path}: {job}");
        assert_eq!(job["source"]["filename"], "x.json", "{path}: {job}");
        assert_eq!(
            job["source"]["content_type"], "application/octet-stream",
            "{path}: {job}"
        );
        // A JSON file is no video: the job fails as an upload, nothing is fetched.
        let settled = system.settled(&token, job["id"].as_str().unwrap()).await;
        assert_eq!(settled["status"], "failed", "{path}: {settled}");
        assert_eq!(settled["source"]["kind"], "upload", "{path}: {settled}");
    }
    // The original route takes the file under any name and ignores text fields, long or not.
    let part = reqwest::multipart::Part::bytes(std::fs::read(media("clip")).unwrap())
        .file_name("clip.mp4")
        .mime_str("video/mp4")
        .unwrap();
    let job = expect(
        system.authed(&token, Method::POST, "/upload").multipart(
            reqwest::multipart::Form::new()
                .text("note", "n".repeat(1000))
                .part("video", part),
        ),
        200,
    )
    .await;
    assert_eq!(job["source"]["content_type"], "video/mp4", "{job}");
}

/// A 300 MB upload through a gateway whose instances may use 64 MiB: the body streams
/// through, and the MP3 covers the whole video. The time limit is the default one users get:
/// it bounds work, not a transfer that keeps moving.
#[tokio::test]
async fn large_upload_streams_through_a_small_gateway() {
    let system = System::embedded(&["--component-limit", "gateway:memory=64MiB"]);
    let token = system.user("large").await;
    let video = media("raw-7.3");
    let size = std::fs::metadata(&video).unwrap().len();
    assert!(size > 300_000_000, "the test video is {size} bytes");
    let file = tokio::fs::File::open(&video).await.unwrap();
    let part = reqwest::multipart::Part::stream_with_length(reqwest::Body::from(file), size)
        .file_name("big.mkv")
        .mime_str("video/x-matroska")
        .unwrap();
    let response = send(
        system
            .authed(&token, Method::POST, "/v1/jobs")
            .multipart(reqwest::multipart::Form::new().part("file", part)),
    )
    .await;
    assert_eq!(response.status(), 202, "{}", system.host.log());
    let job: Value = response.json().await.unwrap();
    let done = system.settled(&token, job["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "done", "{done}");
    let duration = done["audio"]["duration"].as_f64().unwrap();
    assert!((duration - 7.3).abs() <= 0.1, "duration {duration}");
}

/// Uploads past `max_upload_bytes` are 413, whether the client declared the length or streamed
/// without one, and leave no job behind.
#[tokio::test]
async fn uploads_over_the_limit_are_413() {
    let system = System::embedded_with(&[], &[("SPIN_VARIABLE_MAX_UPLOAD_BYTES", "1000000")]);
    let token = system.user("limit").await;
    let big = vec![0u8; 3_000_000];
    let declared = reqwest::multipart::Part::bytes(big.clone()).file_name("big.mp4");
    expect_error(
        system
            .authed(&token, Method::POST, "/v1/jobs")
            .multipart(reqwest::multipart::Form::new().part("file", declared)),
        413,
        "body_too_large",
    )
    .await;
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        big.chunks(64 * 1024).map(|c| Ok(c.to_vec())).collect();
    let streamed =
        reqwest::multipart::Part::stream(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
            .file_name("big.mp4");
    let response = send(
        system
            .authed(&token, Method::POST, "/upload")
            .multipart(reqwest::multipart::Form::new().part("file", streamed)),
    )
    .await;
    assert_eq!(response.status(), 413);
    let jobs = expect(system.authed(&token, Method::GET, "/v1/jobs"), 200).await;
    assert_eq!(jobs["jobs"], json!([]), "{jobs}");
}

/// Every documented operation answers, with documented statuses (checked by [`send`]), and
/// the document served is the one in the repository.
#[tokio::test]
async fn openapi_document_matches_the_gateway() {
    let system = System::embedded(&[]);
    let served = expect(system.request(Method::GET, "/openapi.yaml"), 200).await;
    let kept =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml")).unwrap();
    assert_eq!(served, Value::String(kept));

    let token = system.user("doc").await;
    let job = system.upload_clip(&token, None).await;
    let id = job["id"].as_str().unwrap();
    system.settled(&token, id).await;
    let mut exercised = std::collections::BTreeSet::new();
    for (method, template) in documented().keys() {
        let path = template.replace("{id}", id).replace("{name}", "doc");
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let request = match (method.as_str(), template.as_str()) {
            ("POST", "/auth/register") => system
                .request(method.clone(), &path)
                .json(&json!({"email": format!("doc-{}@example.com", uuid_like()), "password": "long enough"})),
            ("POST", "/auth/login") => system
                .request(method.clone(), &path)
                .json(&json!({"email": "nobody@example.com", "password": "long enough"})),
            ("POST", "/v1/jobs") => system
                .authed(&token, method.clone(), &path)
                .json(&json!({"url": "https://example.com/a.mp4"})),
            ("GET", "/download") => system.authed(&token, method.clone(), &format!("{path}?fid={id}")),
            ("POST", "/v1/presets") => system
                .authed(&token, method.clone(), &path)
                .json(&json!({"name": "doc", "options": {"bitrate": 320}})),
            ("PUT", "/v1/presets/{name}") => system
                .authed(&token, method.clone(), &path)
                .json(&json!({"options": {"normalize": -16}})),
            ("DELETE", "/auth/me" | "/v1/me") => {
                let doomed = system.user("doomed").await;
                system.authed(&doomed, method.clone(), &path)
            }
            ("DELETE", "/v1/jobs/{id}") => {
                let doomed = system.upload_clip(&token, None).await;
                system.authed(&token, method.clone(), &format!("/v1/jobs/{}", doomed["id"].as_str().unwrap()))
            }
            ("POST", "/upload") => system.authed(&token, method.clone(), &path).multipart(
                reqwest::multipart::Form::new().part(
                    "video",
                    reqwest::multipart::Part::bytes(std::fs::read(media("clip")).unwrap()).file_name("c.mp4"),
                ),
            ),
            _ => system.authed(&token, method.clone(), &path),
        };
        let response = send(request).await;
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert!(
            status != 404 || body["error"]["message"] != "no such route",
            "{method} {template} is documented but not served"
        );
        exercised.insert((method.to_string(), template.clone()));
        // Methods the document does not list for this path answer 405 (checked by `send`).
        send(system.authed(&token, Method::PATCH, &path)).await;
    }
    assert_eq!(exercised.len(), documented().len());
}

/// The worker down: the gateway answers 503 with Retry-After, not a 500 or a hang.
#[tokio::test]
async fn worker_unreachable_is_503() {
    let keys = tempfile::tempdir().unwrap();
    mp3conv(&["keys", "generate", "--dir", keys.path().to_str().unwrap()]);
    let read = |name: &str| std::fs::read_to_string(keys.path().join(name)).unwrap();
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("data").join("sqlite_db.db");
    mp3conv(&["migrate", "--sqlite", db.to_str().unwrap()]);
    let mut options = HostOptions::new(repo_manifest())
        .env("SPIN_VARIABLE_JWT_SIGNING_KEY", &read("jwt-signing.pem"))
        .env("SPIN_VARIABLE_JWT_PUBLIC_KEYS", &read("jwks.json"))
        .env("SPIN_VARIABLE_WORKER_URL", &format!("http://{closed}"))
        .env("SPIN_VARIABLE_WORKER_TOKEN", INTERNAL_TOKEN);
    options.dir = Some(dir);
    let system = System::from_parts(HostProcess::start(options), None);
    let token = system.user("lonely").await;
    let response = send(system.authed(&token, Method::GET, "/v1/jobs")).await;
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "5");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unavailable");
}
