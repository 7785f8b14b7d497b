//! Presets and conversion options at the gateway, end to end: through the host from the
//! repository's `spin.toml`, with the real auth function and the real native worker, in both
//! shapes (`mp3conv up`, and the cluster's on MariaDB, RabbitMQ and the MongoDB-compatible
//! server). Every answer is checked against `openapi.yaml` (`common::api::send`).
//!
//! What is shown: presets are made, read, replaced and deleted, and are their owner's only; a
//! job naming one records the merged options, the request's own fields winning; options sent
//! after the file in a multipart form (as curl users write `-F file=@v.mp4 -F bitrate=320`)
//! are taken; bad options are 400 naming the field, and a request refused after its file has
//! streamed leaves no job behind; a job split by chapters serves its tracks, one by one and as
//! one ZIP, through the gateway as it serves the MP3.

mod common;

use common::api::{System, conforms, expect, send};
use common::media;
use reqwest::Method;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

/// The clip (3 s) as the part `file`.
fn clip_part() -> Part {
    Part::bytes(std::fs::read(media("clip")).unwrap())
        .file_name("clip.mp4")
        .mime_str("video/mp4")
        .unwrap()
}

/// Sends and checks a 400 naming `field` with `code`.
async fn refused(request: reqwest::RequestBuilder, code: &str, field: &str) {
    let body = expect(request, 400).await;
    assert_eq!(
        (
            body["error"]["code"].as_str(),
            body["error"]["field"].as_str()
        ),
        (Some(code), Some(field)),
        "{body}"
    );
    assert!(body["error"]["message"].is_string(), "{body}");
}

/// The caller's jobs, as listed.
async fn job_ids(system: &System, token: &str) -> Vec<String> {
    let page = expect(system.authed(token, Method::GET, "/v1/jobs?limit=100"), 200).await;
    page["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|job| job["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Presets from the API's side: made (201, `Location`), listed by name, read, replaced (200),
/// made by PUT (201), deleted; a name taken once; at most 50; another user sees none of them
/// and cannot use them.
async fn presets_are_their_owners(system: &System) {
    let token = system.user("presets").await;
    let other = system.user("presets-other").await;
    let response = send(
        system
            .authed(&token, Method::POST, "/v1/presets")
            .json(&json!({"name": "talks", "options": {"bitrate": 128, "normalize": true, "channels": "mono"}})),
    )
    .await;
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["location"], "/v1/presets/talks");
    let made: Value = response.json().await.unwrap();
    assert_eq!(
        made["options"],
        json!({"bitrate": "128", "normalize": -16, "channels": "mono"})
    );
    let again = expect(
        system
            .authed(&token, Method::POST, "/v1/presets")
            .json(&json!({"name": "talks", "options": {}})),
        409,
    )
    .await;
    assert_eq!(again["error"]["code"], "preset_exists");

    // PUT makes a preset under a name with a space, then replaces it.
    let response = send(
        system
            .authed(&token, Method::PUT, "/v1/presets/my%20clips")
            .json(&json!({"options": {"start": "0:01", "end": 2}})),
    )
    .await;
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["location"], "/v1/presets/my%20clips");
    let replaced = expect(
        system
            .authed(&token, Method::PUT, "/v1/presets/my%20clips")
            .json(&json!({"options": {"split": "chapters"}})),
        200,
    )
    .await;
    assert_eq!(replaced["options"], json!({"split": "chapters"}));
    let shown = expect(
        system.authed(&token, Method::GET, "/v1/presets/my%20clips"),
        200,
    )
    .await;
    assert_eq!(shown, replaced);
    let listed = expect(system.authed(&token, Method::GET, "/v1/presets"), 200).await;
    let names: Vec<&str> = listed["presets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["my clips", "talks"]);

    // Another user's presets are invisible to them, and unusable.
    let theirs = expect(system.authed(&other, Method::GET, "/v1/presets"), 200).await;
    assert_eq!(theirs, json!({"presets": []}));
    for method in [Method::GET, Method::DELETE] {
        let body = expect(system.authed(&other, method, "/v1/presets/talks"), 404).await;
        assert_eq!(body["error"]["code"], "not_found");
    }
    refused(
        system
            .authed(&other, Method::POST, "/v1/jobs")
            .json(&json!({"url": "https://example.com/talk.mp4", "preset": "talks"})),
        "unknown_preset",
        "preset",
    )
    .await;
    assert!(job_ids(system, &other).await.is_empty());
    // The same name is theirs to use, and leaves the first user's alone.
    expect(
        system
            .authed(&other, Method::PUT, "/v1/presets/talks")
            .json(&json!({"options": {"bitrate": 320}})),
        201,
    )
    .await;
    let mine = expect(system.authed(&token, Method::GET, "/v1/presets/talks"), 200).await;
    assert_eq!(mine["options"]["bitrate"], "128");

    // A preset's options are a job's, and name no preset.
    refused(
        system
            .authed(&token, Method::POST, "/v1/presets")
            .json(&json!({"name": "loop", "options": {"preset": "talks"}})),
        "invalid_option",
        "preset",
    )
    .await;
    refused(
        system
            .authed(&token, Method::POST, "/v1/presets")
            .json(&json!({"name": "../etc", "options": {}})),
        "invalid_option",
        "name",
    )
    .await;

    // At most 50: the bound holds on this database's insert.
    for i in 2..50 {
        expect(
            system
                .authed(&token, Method::POST, "/v1/presets")
                .json(&json!({"name": format!("p{i:02}"), "options": {"bitrate": "v2"}})),
            201,
        )
        .await;
    }
    let full = expect(
        system
            .authed(&token, Method::POST, "/v1/presets")
            .json(&json!({"name": "one more", "options": {}})),
        409,
    )
    .await;
    assert_eq!(full["error"]["code"], "too_many_presets");
    let listed = expect(system.authed(&token, Method::GET, "/v1/presets"), 200).await;
    assert_eq!(listed["presets"].as_array().unwrap().len(), 50);

    let response = send(system.authed(&token, Method::DELETE, "/v1/presets/my%20clips")).await;
    assert_eq!(response.status(), 204);
    expect(
        system.authed(&token, Method::GET, "/v1/presets/my%20clips"),
        404,
    )
    .await;
    expect(
        system
            .authed(&token, Method::POST, "/v1/presets")
            .json(&json!({"name": "one more", "options": {}})),
        201,
    )
    .await;
}

#[tokio::test]
async fn presets_are_their_owners_embedded() {
    presets_are_their_owners(&System::embedded(&[])).await;
}

#[tokio::test]
async fn presets_are_their_owners_on_services() {
    presets_are_their_owners(&System::services()).await;
}

/// Codes of a batch of concurrent `POST /v1/presets` (status, error code or the preset's
/// bitrate), each answer checked against the contract.
async fn create_at_once(system: &System, token: &str, bodies: Vec<Value>) -> Vec<(u16, String)> {
    let requests = bodies.into_iter().map(|body| async move {
        let response = send(
            system
                .authed(token, Method::POST, "/v1/presets")
                .json(&body),
        )
        .await;
        let status = response.status().as_u16();
        if status == 500 {
            eprintln!("HOSTLOG {}", system.host.log());
        }
        let body: Value = response.json().await.unwrap();
        let what = match status {
            201 => body["options"]["bitrate"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            _ => body["error"]["code"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        };
        (status, what)
    });
    futures::future::join_all(requests).await
}

/// Presets made at once: none is lost to a database deadlock (a 500), the bound of 50 holds,
/// and of two requests for one name the second is told it exists, never handed the first's.
async fn concurrent_creations_keep_their_rules(system: &System) {
    let token = system.user("presets-race").await;
    let distinct = (0..24)
        .map(|i| json!({"name": format!("p{i:02}"), "options": {"bitrate": 128}}))
        .collect();
    let answers = create_at_once(system, &token, distinct).await;
    assert!(
        answers.iter().all(|(status, _)| *status == 201),
        "{answers:?}"
    );
    for i in 24..49 {
        expect(
            system
                .authed(&token, Method::POST, "/v1/presets")
                .json(&json!({"name": format!("p{i:02}"), "options": {}})),
            201,
        )
        .await;
    }
    // One place left; six requests want it under one name, each with its own bitrate.
    let bitrates = ["128", "192", "256", "320", "v0", "v2"];
    let same = bitrates
        .iter()
        .map(|b| json!({"name": "last", "options": {"bitrate": b}}))
        .collect();
    let answers = create_at_once(system, &token, same).await;
    let made: Vec<&String> = answers
        .iter()
        .filter(|(status, _)| *status == 201)
        .map(|(_, bitrate)| bitrate)
        .collect();
    assert_eq!(made.len(), 1, "{answers:?}");
    assert!(
        answers
            .iter()
            .all(|(status, what)| *status == 201
                || (*status, what.as_str()) == (409, "preset_exists")),
        "{answers:?}"
    );
    let last = expect(system.authed(&token, Method::GET, "/v1/presets/last"), 200).await;
    assert_eq!(last["options"]["bitrate"].as_str(), Some(made[0].as_str()));
    // Full: six more names at once all meet the bound.
    let more = (0..6)
        .map(|i| json!({"name": format!("more{i}"), "options": {}}))
        .collect();
    let answers = create_at_once(system, &token, more).await;
    assert!(
        answers
            .iter()
            .all(|(status, what)| (*status, what.as_str()) == (409, "too_many_presets")),
        "{answers:?}"
    );
    let listed = expect(system.authed(&token, Method::GET, "/v1/presets"), 200).await;
    assert_eq!(listed["presets"].as_array().unwrap().len(), 50);
}

#[tokio::test]
async fn concurrent_creations_keep_their_rules_embedded() {
    concurrent_creations_keep_their_rules(&System::embedded(&[])).await;
}

#[tokio::test]
async fn concurrent_creations_keep_their_rules_on_services() {
    concurrent_creations_keep_their_rules(&System::services()).await;
}

/// A job naming a preset records the merged options, the request's own fields (given after the
/// file, and in the query) winning; the MP3 is made with them.
async fn a_job_runs_with_its_preset_under_its_own_options(system: &System) {
    let token = system.user("preset-job").await;
    expect(
        system.authed(&token, Method::POST, "/v1/presets").json(&json!({
            "name": "talks",
            "options": {"bitrate": 128, "channels": "mono", "title": "From the preset", "artist": "Ada"}
        })),
        201,
    )
    .await;
    let form = Form::new()
        .part("file", clip_part())
        .text("preset", "talks")
        .text("bitrate", "320");
    let response = send(
        system
            .authed(&token, Method::POST, "/v1/jobs?title=Mine")
            .multipart(form),
    )
    .await;
    assert_eq!(response.status(), 202);
    let job: Value = response.json().await.unwrap();
    let expected = json!({"channels": "mono", "title": "Mine", "artist": "Ada", "preset": "talks"});
    assert_eq!(job["bitrate"], "320", "{job}");
    assert_eq!(job["options"], expected, "{job}");
    let id = job["id"].as_str().unwrap();
    let shown = expect(
        system.authed(&token, Method::GET, &format!("/v1/jobs/{id}")),
        200,
    )
    .await;
    assert_eq!(
        (&shown["bitrate"], &shown["options"]),
        (&json!("320"), &expected)
    );
    let done = system.settled(&token, id).await;
    assert_eq!(done["status"], "done", "{done}");
    assert_eq!(done["options"], expected);
    assert_eq!(done["audio"]["bitrate"], "320");
    // Changing the preset later does not change what the job ran with.
    expect(
        system
            .authed(&token, Method::PUT, "/v1/presets/talks")
            .json(&json!({"options": {"bitrate": "v9"}})),
        200,
    )
    .await;
    let later = expect(
        system.authed(&token, Method::GET, &format!("/v1/jobs/{id}")),
        200,
    )
    .await;
    assert_eq!(later["options"], expected);
}

#[tokio::test]
async fn a_job_runs_with_its_preset_under_its_own_options_embedded() {
    a_job_runs_with_its_preset_under_its_own_options(&System::embedded(&[])).await;
}

#[tokio::test]
async fn a_job_runs_with_its_preset_under_its_own_options_on_services() {
    a_job_runs_with_its_preset_under_its_own_options(&System::services()).await;
}

/// `curl -F file=@clip.mp4 -F bitrate=320`: the order curl users write first (refused with
/// `field_order` before issue #18) makes a 320 kbit/s MP3.
async fn options_after_the_file_are_taken(system: &System) {
    let token = system.user("after").await;
    let clip = media("clip");
    let output = tokio::process::Command::new("curl")
        .args(["--silent", "--show-error"])
        .arg("-F")
        .arg(format!("file=@{}", clip.display()))
        .args(["-F", "bitrate=320", "-F", "title=After the file"])
        .arg("-H")
        .arg(format!("Authorization: Bearer {token}"))
        .args(["--write-out", "\n%{http_code} %{content_type}"])
        .arg(system.url("/v1/jobs"))
        .output()
        .await
        .expect("running curl");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    let (body, trailer) = stdout.rsplit_once('\n').unwrap();
    let (status, content_type) = trailer.split_once(' ').unwrap();
    let status: u16 = status.parse().unwrap();
    conforms(
        "POST",
        "/v1/jobs",
        status,
        Some(content_type),
        body.as_bytes(),
    );
    assert_eq!(status, 202, "{body}");
    let job: Value = serde_json::from_str(body).unwrap();
    assert_eq!(job["bitrate"], "320", "{job}");
    assert_eq!(job["options"], json!({"title": "After the file"}));
    let done = system.settled(&token, job["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "done", "{done}");
    assert_eq!(done["bitrate"], "320");
    assert_eq!(done["audio"]["bitrate"], "320");
}

#[tokio::test]
async fn options_after_the_file_are_taken_embedded() {
    options_after_the_file_are_taken(&System::embedded(&[])).await;
}

#[tokio::test]
async fn options_after_the_file_are_taken_on_services() {
    options_after_the_file_are_taken(&System::services()).await;
}

/// Bad options, in the form before or after the file, in the query, in JSON: each 400 names
/// its field, and none leaves a job behind (those after the file had already streamed to the
/// worker, held).
async fn bad_options_name_their_field(system: &System) {
    let token = system.user("bad-options").await;
    let jobs = "/v1/jobs";
    let link = "https://example.com/talk.mp4";
    let form = |fields: &[(&str, &str)], file_first: bool| {
        let mut form = Form::new();
        if file_first {
            form = form.part("file", clip_part());
        }
        for (name, value) in fields {
            form = form.text(name.to_string(), value.to_string());
        }
        if !file_first {
            form = form.part("file", clip_part());
        }
        form
    };
    let ten_megabytes = "t".repeat(10 << 20);
    let cases = [
        (
            "end before start, before the file",
            system
                .authed(&token, Method::POST, jobs)
                .multipart(form(&[("start", "20"), ("end", "10")], false)),
            "invalid_option",
            "end",
        ),
        (
            "end before start, after the file",
            system
                .authed(&token, Method::POST, jobs)
                .multipart(form(&[("start", "0:20"), ("end", "0:10")], true)),
            "invalid_option",
            "end",
        ),
        (
            "a 10 MB title after the file",
            system
                .authed(&token, Method::POST, jobs)
                .multipart(form(&[("title", ten_megabytes.as_str())], true)),
            "field_too_large",
            "title",
        ),
        (
            "an unknown field after the file",
            system
                .authed(&token, Method::POST, jobs)
                .multipart(form(&[("speed", "2")], true)),
            "unknown_field",
            "speed",
        ),
        (
            "an unknown preset after the file",
            system
                .authed(&token, Method::POST, jobs)
                .multipart(form(&[("preset", "nope")], true)),
            "unknown_preset",
            "preset",
        ),
        (
            "a bad bitrate after the file",
            system
                .authed(&token, Method::POST, jobs)
                .multipart(form(&[("bitrate", "1000")], true)),
            "invalid_bitrate",
            "bitrate",
        ),
        (
            "a field in the query and the form",
            system
                .authed(&token, Method::POST, &format!("{jobs}?bitrate=320"))
                .multipart(form(&[("bitrate", "128")], true)),
            "duplicate_field",
            "bitrate",
        ),
        (
            "a bad query parameter",
            system
                .authed(&token, Method::POST, &format!("{jobs}?normalize=-20"))
                .multipart(form(&[], true)),
            "invalid_option",
            "normalize",
        ),
        (
            "end before start in JSON",
            system
                .authed(&token, Method::POST, jobs)
                .json(&json!({"url": link, "start": 20, "end": "0:10"})),
            "invalid_option",
            "end",
        ),
        (
            "an unknown JSON field",
            system
                .authed(&token, Method::POST, jobs)
                .json(&json!({"url": link, "colour": "blue"})),
            "unknown_field",
            "colour",
        ),
        (
            "a JSON member given twice (the last would win)",
            system
                .authed(&token, Method::POST, jobs)
                .header("content-type", "application/json")
                .body(format!(r#"{{"url": "{link}", "end": 5, "end": 9}}"#)),
            "duplicate_field",
            "end",
        ),
        (
            "a preset's option given twice",
            system
                .authed(&token, Method::POST, "/v1/presets")
                .header("content-type", "application/json")
                .body(r#"{"name": "twice", "options": {"title": "a", "title": "b"}}"#),
            "duplicate_field",
            "title",
        ),
        (
            "a year that is none",
            system
                .authed(&token, Method::POST, &format!("{jobs}?year=24"))
                .json(&json!({"url": link})),
            "invalid_option",
            "year",
        ),
    ];
    for (name, request, code, field) in cases {
        let body = expect(request, 400).await;
        assert_eq!(
            (
                body["error"]["code"].as_str(),
                body["error"]["field"].as_str()
            ),
            (Some(code), Some(field)),
            "{name}: {body}"
        );
    }
    assert!(
        job_ids(system, &token).await.is_empty(),
        "a refused request left a job"
    );
    // Held jobs are never listed: in the one-process shape, the worker's own store shows that
    // those refused after their file were deleted, video and all.
    if let Some((jobs, videos)) = worker_store(system).await {
        assert_eq!(
            (jobs, videos),
            (0, 0),
            "held jobs or videos were left behind"
        );
    }
}

/// The jobs and stored videos of the in-process worker (`mp3conv up`: SQLite jobs and a blob
/// directory under the data directory); `None` in the cluster's shape.
async fn worker_store(system: &System) -> Option<(i64, usize)> {
    if system.worker.is_some() {
        return None;
    }
    let data = system.host.data_dir();
    let database = data.join("jobs.sqlite");
    assert!(database.exists(), "no {}", database.display());
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&database)
        .read_only(true);
    let mut connection = sqlx::ConnectOptions::connect(&options).await.unwrap();
    let jobs: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM jobs")
        .fetch_one(&mut connection)
        .await
        .unwrap();
    let videos = std::fs::read_dir(data.join("blobs").join("videos"))
        .map(|dir| dir.count())
        .unwrap_or(0);
    Some((jobs, videos))
}

#[tokio::test]
async fn bad_options_name_their_field_embedded() {
    bad_options_name_their_field(&System::embedded(&[])).await;
}

#[tokio::test]
async fn bad_options_name_their_field_on_services() {
    bad_options_name_their_field(&System::services()).await;
}

/// The clip (3 s) with two chapters, `One` (0-1.5 s) and `Two` (1.5-3 s).
fn chaptered_clip() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let metadata = dir.path().join("chapters.txt");
    std::fs::write(
        &metadata,
        ";FFMETADATA1\n[CHAPTER]\nTIMEBASE=1/1000\nSTART=0\nEND=1500\ntitle=One\n\
         [CHAPTER]\nTIMEBASE=1/1000\nSTART=1500\nEND=3000\ntitle=Two\n",
    )
    .unwrap();
    let out = dir.path().join("chapters.mp4");
    let status = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-i"])
        .arg(media("clip"))
        .arg("-i")
        .arg(&metadata)
        .args(["-map_metadata", "1", "-map", "0", "-codec", "copy"])
        .arg(&out)
        .status()
        .expect("running ffmpeg");
    assert!(status.success(), "ffmpeg could not add chapters");
    std::fs::read(out).unwrap()
}

/// A job split by chapters (`split=chapters` after the file): each track streams through the
/// gateway like the MP3 (Range, ETag, If-None-Match, a download name), and all of them as one
/// ZIP holding exactly those MP3s; a job not split has no ZIP, a track it lacks is 404.
async fn tracks_stream_through_like_the_mp3(system: &System) {
    let token = system.user("tracks").await;
    let form = Form::new()
        .part(
            "file",
            Part::bytes(chaptered_clip())
                .file_name("Lecture.mp4")
                .mime_str("video/mp4")
                .unwrap(),
        )
        .text("split", "chapters");
    let job = expect(
        system
            .authed(&token, Method::POST, "/v1/jobs")
            .multipart(form),
        202,
    )
    .await;
    let id = job["id"].as_str().unwrap();
    let done = system.settled(&token, id).await;
    assert_eq!(done["status"], "done", "{done}");
    let tracks = done["tracks"].as_array().expect("tracks").clone();
    assert_eq!(tracks.len(), 2, "{done}");

    let path = format!("/v1/jobs/{id}/tracks/2");
    let response = send(system.authed(&token, Method::GET, &path)).await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment; filename=\"02 - Two.mp3\""),
        "{:?}",
        response.headers()
    );
    let etag = response.headers()["etag"].to_str().unwrap().to_owned();
    let second = response.bytes().await.unwrap();
    assert_eq!(
        second.len() as u64,
        tracks[1]["audio"]["size"].as_u64().unwrap()
    );
    let response = send(
        system
            .authed(&token, Method::GET, &path)
            .header("range", "bytes=0-9"),
    )
    .await;
    assert_eq!(response.status(), 206);
    assert_eq!(
        response.headers()["content-range"],
        format!("bytes 0-9/{}", second.len()).as_str()
    );
    assert_eq!(response.bytes().await.unwrap(), second[..10]);
    let response = send(
        system
            .authed(&token, Method::GET, &path)
            .header("if-none-match", &etag),
    )
    .await;
    assert_eq!(response.status(), 304);
    let missing = expect(
        system.authed(&token, Method::GET, &format!("/v1/jobs/{id}/tracks/3")),
        404,
    )
    .await;
    assert_eq!(missing["error"]["code"], "not_found");

    let response =
        send(system.authed(&token, Method::GET, &format!("/v1/jobs/{id}/tracks.zip"))).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/zip");
    assert!(
        response.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment; filename=\"Lecture.zip\""),
        "{:?}",
        response.headers()
    );
    let zip = response.bytes().await.unwrap();
    let entries = media::stored_zip_entries(&zip);
    let names: Vec<&str> = entries.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["01 - One.mp3", "02 - Two.mp3"]);
    assert_eq!(entries[1].1, second, "the ZIP's second entry is track 2");
    let first = send(system.authed(&token, Method::GET, &format!("/v1/jobs/{id}/tracks/1")))
        .await
        .bytes()
        .await
        .unwrap();
    assert_eq!(entries[0].1, first, "the ZIP's first entry is track 1");

    // A job not split has no tracks; another user's job has none for this user.
    let whole = system.upload_clip(&token, None).await;
    let whole = whole["id"].as_str().unwrap();
    system.settled(&token, whole).await;
    let unsplit = expect(
        system.authed(&token, Method::GET, &format!("/v1/jobs/{whole}/tracks.zip")),
        404,
    )
    .await;
    assert_eq!(unsplit["error"]["code"], "no_tracks");
    let other = system.user("tracks-other").await;
    for path in [
        format!("/v1/jobs/{id}/tracks/1"),
        format!("/v1/jobs/{id}/tracks.zip"),
    ] {
        let body = expect(system.authed(&other, Method::GET, &path), 404).await;
        assert_eq!(body["error"]["code"], "not_found", "{path}");
    }
}

#[tokio::test]
async fn tracks_stream_through_like_the_mp3_embedded() {
    tracks_stream_through_like_the_mp3(&System::embedded(&[])).await;
}

#[tokio::test]
async fn tracks_stream_through_like_the_mp3_on_services() {
    tracks_stream_through_like_the_mp3(&System::services()).await;
}
