//! The upload's rules, run natively against the in-memory worker through `jobs::create`.

use futures::executor::block_on;
use mp3conv_contract::job::Bitrate;
use mp3conv_contract::options::{MAX_FIELD_BYTES, Normalize, Position};
use mp3conv_kit::reply::Reply;
use mp3conv_sql::testing::Sqlite;
use serde_json::Value;
use time::OffsetDateTime;

use super::*;
use crate::jobs::{Creation, create};
use crate::testing::{self, BOUNDARY, FakeWorker, Part, broken, chunks, multipart};

const OWNER: &str = "owner-1";
const VIDEO: &str = "0123456789abcdefghij";

fn content_type() -> String {
    format!("multipart/form-data; boundary={BOUNDARY}")
}

/// The gateway's database with the owner's preset `talks` (bitrate 128, normalized, from 5 s).
fn database() -> Sqlite {
    let db = testing::database();
    testing::add_user(&db, OWNER, "owner@example.com");
    let preset = br#"{"name":"talks","options":{"bitrate":128,"normalize":true,"start":5}}"#;
    crate::presets::create(&db, OWNER, preset, OffsetDateTime::now_utc()).unwrap();
    db
}

fn send_with(
    worker: &FakeWorker,
    body: impl Body,
    v1: bool,
    limit: u64,
    query: &str,
) -> Result<Reply, ApiError> {
    let content_type = content_type();
    block_on(create(
        worker,
        &database(),
        OWNER,
        Creation {
            body,
            content_type: Some(&content_type),
            content_length: None,
            query,
            original: !v1,
            max_upload_bytes: limit,
        },
    ))
}

fn send(worker: &FakeWorker, body: impl Body, v1: bool, limit: u64) -> Result<Reply, ApiError> {
    send_with(worker, body, v1, limit, "")
}

fn upload_with(
    worker: &FakeWorker,
    parts: &[Part<'_>],
    v1: bool,
    query: &str,
) -> Result<Reply, ApiError> {
    let pieces = multipart(parts, true);
    let pieces: Vec<&str> = pieces.iter().map(String::as_str).collect();
    send_with(worker, chunks(&pieces), v1, 1024, query)
}

fn upload(worker: &FakeWorker, parts: &[Part<'_>], v1: bool) -> Result<Reply, ApiError> {
    upload_with(worker, parts, v1, "")
}

fn code(result: Result<Reply, ApiError>) -> &'static str {
    match result {
        Err(ApiError::BadRequest { code, .. }) => code,
        Err(ApiError::Option(err)) => err.code,
        other => panic!("not a 400: {other:?}"),
    }
}

/// The field and code of an option's refusal.
fn refused(result: Result<Reply, ApiError>) -> (String, &'static str) {
    match result {
        Err(ApiError::Option(err)) => (err.field, err.code),
        other => panic!("not an option's 400: {other:?}"),
    }
}

fn job(reply: &Reply) -> Value {
    serde_json::from_slice(&reply.body).unwrap()
}

#[test]
fn one_file_streams_through_held_then_starts_with_its_options() {
    let worker = FakeWorker::default();
    let parts = [
        ("bitrate", None, "V2"),
        ("file", Some("../holiday.mp4"), VIDEO),
    ];
    let reply = upload(&worker, &parts, true).unwrap();
    assert_eq!(reply.status, 202);
    let job: Value = serde_json::from_slice(&reply.body).unwrap();
    let location = reply.headers.iter().find(|(n, _)| n == "location").unwrap();
    assert_eq!(
        location.1,
        format!("/v1/jobs/{}", job["id"].as_str().unwrap())
    );
    assert_eq!(job["bitrate"], "v2");
    assert!(
        job.get("owner").is_none(),
        "the worker's record leaked: {job}"
    );
    let uploads = worker.uploads.borrow();
    assert_eq!(uploads.len(), 1);
    assert_eq!(uploads[0].bytes, VIDEO.as_bytes());
    assert!(uploads[0].finished);
    assert_eq!(uploads[0].upload.filename, "holiday.mp4");
    assert_eq!(uploads[0].upload.content_type, "video/mp4");
    assert!(uploads[0].upload.hold, "a v1 upload waits for its options");
    let calls = worker.calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(
        calls[1],
        format!(
            "start {} {{\"bitrate\":\"v2\"}}",
            job["id"].as_str().unwrap()
        )
    );
    assert!(!worker.jobs.borrow()[0].held);
}

#[test]
fn options_after_the_file_are_taken() {
    let worker = FakeWorker::default();
    let parts = [
        ("file", Some("talk.mp4"), VIDEO),
        ("bitrate", None, "320"),
        ("title", None, " Keynote "),
        ("end", None, "00:01:00"),
    ];
    let reply = upload_with(&worker, &parts, true, "normalize=-14").unwrap();
    assert_eq!(reply.status, 202);
    let job = job(&reply);
    assert_eq!(job["bitrate"], "320");
    assert_eq!(
        job["options"],
        serde_json::json!({"end": 60.0, "normalize": -14, "title": "Keynote"})
    );
    let stored = &worker.jobs.borrow()[0];
    assert_eq!(stored.bitrate, Bitrate::Constant(320));
    assert_eq!(stored.options.end, Some(Position::from_millis(60_000)));
    assert_eq!(stored.options.normalize, Some(Normalize::Target(-14)));
}

#[test]
fn a_preset_lies_under_the_forms_options() {
    let worker = FakeWorker::default();
    let parts = [
        ("file", Some("talk.mp4"), VIDEO),
        ("preset", None, "talks"),
        ("normalize", None, "off"),
    ];
    let reply = upload(&worker, &parts, true).unwrap();
    let job = job(&reply);
    assert_eq!(job["bitrate"], "128", "the preset's");
    assert_eq!(
        job["options"],
        serde_json::json!({"start": 5.0, "normalize": false, "preset": "talks"})
    );
}

#[test]
fn a_refused_option_after_the_file_deletes_the_held_job() {
    let ten_megabytes = "t".repeat(10 << 20);
    for (parts, query, expected) in [
        (
            vec![("file", Some("a.mp4"), VIDEO), ("bitrate", None, "1000")],
            "",
            ("bitrate", "invalid_bitrate"),
        ),
        (
            vec![
                ("file", Some("a.mp4"), VIDEO),
                ("title", None, ten_megabytes.as_str()),
            ],
            "",
            ("title", "field_too_large"),
        ),
        (
            vec![("file", Some("a.mp4"), VIDEO), ("speed", None, "2")],
            "",
            ("speed", "unknown_field"),
        ),
        (
            vec![("file", Some("a.mp4"), VIDEO), ("end", None, "4")],
            "start=10",
            ("end", "invalid_option"),
        ),
        (
            // The preset starts at 5 s: an end at 3 s makes no clip.
            vec![
                ("file", Some("a.mp4"), VIDEO),
                ("preset", None, "talks"),
                ("end", None, "3"),
            ],
            "",
            ("end", "invalid_option"),
        ),
        (
            vec![("file", Some("a.mp4"), VIDEO), ("preset", None, "nope")],
            "",
            ("preset", "unknown_preset"),
        ),
        (
            vec![("file", Some("a.mp4"), VIDEO), ("bitrate", None, "128")],
            "bitrate=320",
            ("bitrate", "duplicate_field"),
        ),
    ] {
        let worker = FakeWorker::default();
        let (field, code) = refused(upload_with(&worker, &parts, true, query));
        assert_eq!((field.as_str(), code), expected, "{query}");
        assert!(
            worker.jobs.borrow().is_empty(),
            "{expected:?}: the job was kept"
        );
        let calls = worker.calls();
        assert_eq!(calls.len(), 2, "{calls:?}");
        assert!(calls[1].starts_with("delete "), "{calls:?}");
    }
}

#[test]
fn the_workers_refusal_to_start_deletes_the_held_job() {
    let worker = FakeWorker::default();
    let refusal = ApiError::Upstream {
        status: 400,
        body: br#"{"error":{"code":"invalid_option","message":"m","field":"cover"}}"#.to_vec(),
        headers: vec![],
    };
    *worker.start_refusal.borrow_mut() = Some(refusal.clone());
    let parts = [("file", Some("a.mp4"), VIDEO), ("cover", None, "1")];
    assert_eq!(upload(&worker, &parts, true), Err(refusal));
    assert!(worker.jobs.borrow().is_empty());
    assert!(worker.calls()[2].starts_with("delete "));
}

#[test]
fn the_original_route_takes_any_part_name_and_ignores_text() {
    let worker = FakeWorker::default();
    let parts = [
        ("note", None, "hi"),
        ("video", Some("a.mp4"), VIDEO),
        ("bitrate", None, "nonsense"),
    ];
    let reply = upload_with(&worker, &parts, false, "bitrate=1000&x=y").unwrap();
    assert_eq!(reply.status, 200);
    assert!(!worker.uploads.borrow()[0].upload.hold);
    assert_eq!(
        worker.calls().len(),
        1,
        "queued at once: {:?}",
        worker.calls()
    );
}

#[test]
fn a_second_file_refuses_the_request_and_deletes_the_first_job() {
    let worker = FakeWorker::default();
    for v1 in [true, false] {
        let parts = [
            ("file", Some("a.mp4"), VIDEO),
            (if v1 { "file" } else { "other" }, Some("b.mp4"), VIDEO),
        ];
        assert_eq!(code(upload(&worker, &parts, v1)), "too_many_files");
        assert!(worker.jobs.borrow().is_empty(), "the first job was kept");
    }
    let calls = worker.calls();
    assert!(calls[1].starts_with("delete "), "{calls:?}");
    assert_eq!(
        worker.uploads.borrow().len(),
        2,
        "only the first file of each request is sent"
    );
}

#[test]
fn bad_fields_are_refused_before_anything_is_sent() {
    let long = "1".repeat(MAX_FIELD_BYTES + 1);
    for (parts, query, expected) in [
        (
            vec![("colour", None, "blue"), ("file", Some("a.mp4"), VIDEO)],
            "",
            "unknown_field",
        ),
        (vec![("video", Some("a.mp4"), VIDEO)], "", "unknown_field"),
        (
            vec![("bitrate", None, "1000"), ("file", Some("a.mp4"), VIDEO)],
            "",
            "invalid_bitrate",
        ),
        (
            vec![
                ("title", None, long.as_str()),
                ("file", Some("a.mp4"), VIDEO),
            ],
            "",
            "field_too_large",
        ),
        (
            vec![("end", None, "10"), ("file", Some("a.mp4"), VIDEO)],
            "start=20",
            "invalid_option",
        ),
        (
            vec![("preset", None, "nope"), ("file", Some("a.mp4"), VIDEO)],
            "",
            "unknown_preset",
        ),
        (
            vec![("file", Some("a.mp4"), VIDEO)],
            "speed=2",
            "unknown_field",
        ),
        (vec![("bitrate", None, "128")], "", "missing_file"),
        (vec![("file", None, "not a file")], "", "missing_file"),
        (vec![], "", "missing_file"),
    ] {
        let worker = FakeWorker::default();
        assert_eq!(
            code(upload_with(&worker, &parts, true, query)),
            expected,
            "{parts:?} ?{query}"
        );
        assert!(worker.calls().is_empty(), "{parts:?}: {:?}", worker.calls());
    }
}

#[test]
fn a_file_past_the_limit_is_aborted_at_the_worker() {
    let worker = FakeWorker::default();
    let pieces = multipart(&[("file", Some("a.mp4"), VIDEO)], true);
    let pieces: Vec<&str> = pieces.iter().map(String::as_str).collect();
    let limit = VIDEO.len() as u64 - 1;
    assert_eq!(
        send(&worker, chunks(&pieces), true, limit),
        Err(ApiError::BodyTooLarge { limit })
    );
    let uploads = worker.uploads.borrow();
    assert!(!uploads[0].finished, "the worker saw a finished body");
    assert!(worker.jobs.borrow().is_empty());
}

#[test]
fn a_declared_length_far_past_the_limit_is_refused_unread() {
    let worker = FakeWorker::default();
    let content_type = content_type();
    let result = block_on(create(
        &worker,
        &database(),
        OWNER,
        Creation {
            body: chunks(&["never read"]),
            content_type: Some(&content_type),
            content_length: Some("99999999"),
            query: "",
            original: false,
            max_upload_bytes: 1024,
        },
    ));
    assert_eq!(result, Err(ApiError::BodyTooLarge { limit: 1024 }));
    assert!(worker.calls().is_empty());
}

#[test]
fn a_body_that_breaks_mid_file_aborts_the_upload() {
    let worker = FakeWorker::default();
    let video = "v".repeat(20_000);
    let pieces = multipart(&[("file", Some("a.mp4"), &video)], false);
    // The headers and the first half of the file in small pieces, then the connection breaks.
    let mut arriving = vec![pieces[0].as_str()];
    arriving.extend((0..10).map(|i| &pieces[1][i * 1000..(i + 1) * 1000]));
    let result = send(&worker, broken(&arriving), true, 1 << 20);
    assert_eq!(code(result), "invalid_multipart");
    let uploads = worker.uploads.borrow();
    assert_eq!(uploads.len(), 1);
    assert!(
        !uploads[0].bytes.is_empty(),
        "nothing was streamed before the break"
    );
    assert!(!uploads[0].finished, "a partial file was finished");
    assert!(worker.jobs.borrow().is_empty());
}

#[test]
fn the_workers_refusal_and_outage_are_the_answer() {
    let worker = FakeWorker::default();
    let refusal = ApiError::Upstream {
        status: 400,
        body: br#"{"error":{"code":"not_media","message":"m"}}"#.to_vec(),
        headers: vec![],
    };
    *worker.upload_refusal.borrow_mut() = Some(refusal.clone());
    let parts = [("file", Some("a.mp4"), VIDEO)];
    assert_eq!(upload(&worker, &parts, true), Err(refusal));

    let worker = FakeWorker::default();
    worker.calls_before_outage.set(Some(0));
    assert_eq!(
        upload(&worker, &parts, true),
        Err(ApiError::WorkerUnavailable)
    );
}

#[test]
fn a_refused_request_is_refused_even_if_its_job_cannot_be_deleted() {
    let worker = FakeWorker::default();
    // The upload succeeds; the worker is gone when the job is to be deleted.
    worker.calls_before_outage.set(Some(1));
    let parts = [
        ("file", Some("a.mp4"), VIDEO),
        ("file", Some("b.mp4"), VIDEO),
    ];
    assert_eq!(code(upload(&worker, &parts, true)), "too_many_files");
    // The second file was never sent: the refusal came first.
    assert_eq!(worker.calls().len(), 2, "{:?}", worker.calls());
}

#[test]
fn uploads_are_files_whatever_the_part_declares() {
    for (declared, sent) in [
        (Some("video/mp4"), "video/mp4"),
        (Some("Video/MP4; codecs=avc1"), "video/mp4"),
        (Some("audio/x-wav"), "audio/x-wav"),
        (Some("application/json"), "application/octet-stream"),
        (
            Some("application/json; charset=utf-8"),
            "application/octet-stream",
        ),
        (Some("video/"), "application/octet-stream"),
        (
            Some("video/mp4\r\nx-mp3conv-owner: someone"),
            "application/octet-stream",
        ),
        (Some("text/plain"), "application/octet-stream"),
        (None, "application/octet-stream"),
    ] {
        assert_eq!(upload_content_type(declared), sent, "{declared:?}");
    }
}

#[test]
fn filenames_are_made_safe() {
    assert_eq!(clean_filename("../../etc/passwd"), "passwd");
    assert_eq!(clean_filename("C:\\videos\\a.mp4"), "a.mp4");
    assert_eq!(clean_filename("..\u{0}"), "video");
}

/// A stream of `total` zero bytes in 1 KiB chunks that counts what was read of it.
fn zeros(total: usize, read: &std::sync::Arc<std::sync::atomic::AtomicUsize>) -> impl Body {
    let read = read.clone();
    futures::stream::iter((0..total / 1024).map(move |_| {
        read.fetch_add(1024, std::sync::atomic::Ordering::Relaxed);
        Ok(bytes::Bytes::from(vec![0u8; 1024]))
    }))
}

#[test]
fn a_body_without_a_delimiter_is_refused_after_a_bounded_read() {
    // Once a 150 MB body like this was held whole by the parser: the instance ran out of
    // memory and answered 500.
    let worker = FakeWorker::default();
    let read = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let result = send(&worker, zeros(8 << 20, &read), true, 1 << 30);
    match &result {
        Err(ApiError::BadRequest { message, .. }) => assert!(
            message.contains("no boundary delimiter in the first 64 KiB"),
            "{message}"
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(code(result), "invalid_multipart");
    let read = read.load(std::sync::atomic::Ordering::Relaxed);
    assert!(read < 128 * 1024, "read {read} bytes before refusing");
    assert!(worker.calls().is_empty());
}

#[test]
fn endless_part_headers_are_refused_after_a_bounded_read() {
    let worker = FakeWorker::default();
    let head = format!(
        "--{BOUNDARY}\r\ncontent-disposition: form-data; name=\"file\"; filename=\"a.mp4\"\r\nx-pad: "
    );
    let read = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let body = futures::stream::iter([Ok(bytes::Bytes::from(head))]).chain(
        zeros(8 << 20, &read).map(|chunk: std::io::Result<bytes::Bytes>| {
            chunk.map(|_| bytes::Bytes::from(vec![b'a'; 1024]))
        }),
    );
    assert_eq!(
        code(send(&worker, body, true, 1 << 30)),
        "invalid_multipart"
    );
    let read = read.load(std::sync::atomic::Ordering::Relaxed);
    assert!(read < 64 * 1024, "read {read} bytes before refusing");
    assert!(worker.calls().is_empty());
}
