//! Time limits bound work, not transfers: a slow upload or download that keeps moving
//! outlasts the request timeout, while a stalled body or a busy guest is still stopped; and
//! clients sending bodies slowly cannot take every slot of the host. The host's own answers
//! (408, 429, 504) are checked against the responses `openapi.yaml` documents for them.

mod common;

use std::time::{Duration, Instant};

use common::api::conforms_to_response;
use common::{HostOptions, HostProcess, client, component};
use futures::StreamExt;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn probe_manifest() -> String {
    format!(
        r#"
spin_manifest_version = 2

[application]
name = "slow-clients"

[[trigger.http]]
route = "/probe/..."
component = "probe"

[component.probe]
source = "{}"
"#,
        component("probe").display()
    )
}

fn start(args: &[&str]) -> HostProcess {
    let mut options = HostOptions::new(probe_manifest());
    for arg in args {
        options = options.arg(*arg);
    }
    HostProcess::start(options)
}

/// The request timeout is the setting under test, so it is shortened to 3 s: an upload and a
/// download that take longer but keep moving succeed in full.
#[tokio::test]
async fn moving_transfers_outlast_the_request_timeout() {
    let host = start(&["--request-timeout", "3s"]);

    // Upload: 20 chunks of 64 KiB, one every 250 ms (5 s).
    let chunk = bytes::Bytes::from(vec![7u8; 64 * 1024]);
    let stream = futures::stream::iter(0..20).then(move |_| {
        let chunk = chunk.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(250)).await;
            Ok::<_, std::io::Error>(chunk)
        }
    });
    let started = Instant::now();
    let response = client()
        .post(host.url("/probe/count"))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["bytes"], 20 * 64 * 1024);
    assert!(started.elapsed() > Duration::from_secs(4));

    // Download: 32 MiB read at about 6 MiB/s (over 5 s), far more than socket buffers hold.
    const MB: usize = 32;
    let response = client()
        .get(host.url(&format!("/probe/stream?mb={MB}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let started = Instant::now();
    let mut stream = response.bytes_stream();
    let mut received = 0usize;
    while let Some(chunk) = stream.next().await {
        received += chunk.expect("the download is not cut").len();
        let due = Duration::from_secs_f64(received as f64 / (6.0 * 1024.0 * 1024.0));
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            tokio::time::sleep(wait).await;
        }
    }
    assert_eq!(received, MB * 1024 * 1024);
    assert!(started.elapsed() > Duration::from_secs(4));
}

/// Sends `head` and part of a body from `local` (a loopback address), then nothing more.
async fn stalled_upload(host: &HostProcess, local: &str) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{local}:0").parse().unwrap()).unwrap();
    let mut stream = socket.connect(host.addr).await.unwrap();
    let head = format!(
        "POST /probe/count HTTP/1.1\r\nhost: {}\r\ncontent-length: 100000\r\n\r\npartial",
        host.addr
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
}

/// Checks a raw answer (head and body) against the response `name` of `openapi.yaml`.
fn documented_as(name: &str, text: &str) {
    let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
    let content_type = head.lines().find_map(|line| {
        let (header, value) = line.split_once(':')?;
        header
            .eq_ignore_ascii_case("content-type")
            .then_some(value.trim())
    });
    conforms_to_response(name, content_type, body.as_bytes());
}

/// The status line and body of the response on `stream`, within `within`.
async fn response_of(mut stream: tokio::net::TcpStream, within: Duration) -> (u16, String) {
    let mut text = Vec::new();
    let read = tokio::time::timeout(within, async {
        let mut buffer = [0u8; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    text.extend_from_slice(&buffer[..n]);
                    if text.windows(4).any(|w| w == b"\r\n\r\n") && text.ends_with(b"}") {
                        break;
                    }
                }
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no response within {within:?}");
    let text = String::from_utf8_lossy(&text).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
    (status, text)
}

#[tokio::test]
async fn a_stalled_body_and_a_busy_guest_are_still_stopped() {
    let host = start(&["--request-timeout", "3s"]);
    let started = Instant::now();
    let stalled = stalled_upload(&host, "127.0.0.1").await;
    let (status, text) = response_of(stalled, Duration::from_secs(30)).await;
    assert_eq!(status, 408, "{text}");
    assert!(text.contains("\"body_timeout\""), "{text}");
    documented_as("Error408", &text);
    assert!(started.elapsed() < Duration::from_secs(10));

    let started = Instant::now();
    let response = client()
        .get(host.url("/probe/spin?ms=30000"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 504);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    let text = response.text().await.unwrap();
    conforms_to_response("Error504", Some(&content_type), text.as_bytes());
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["error"]["code"], "timeout");
    assert!(started.elapsed() < Duration::from_secs(15));
}

/// A body that trickles a byte every 300 ms is never idle for the body idle timeout (the
/// setting under test, 1 s), but brings far less than its minimum per window: 408, at once,
/// not after the 60 s the trickle would take.
#[tokio::test]
async fn a_trickling_body_is_answered_408() {
    let host = start(&["--body-idle-timeout", "1s"]);
    let started = Instant::now();
    let (mut reader, mut writer) = stalled_upload(&host, "127.0.0.1").await.into_split();
    let trickle = tokio::spawn(async move {
        for _ in 0..200 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if writer.write_all(b"x").await.is_err() {
                return;
            }
        }
    });
    let mut text = Vec::new();
    let answered = tokio::time::timeout(Duration::from_secs(20), async {
        let mut buffer = [0u8; 4096];
        while !(text.windows(4).any(|w| w == b"\r\n\r\n") && text.ends_with(b"}")) {
            match reader.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => text.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    trickle.abort();
    let text = String::from_utf8_lossy(&text);
    assert!(
        answered.is_ok(),
        "no answer while the body trickled: {text}"
    );
    assert!(text.starts_with("HTTP/1.1 408 "), "{text}");
    assert!(text.contains("\"body_timeout\""), "{text}");
    documented_as("Error408", &text);
    assert!(started.elapsed() < Duration::from_secs(15));
}

/// 130 connections from one client send bodies slowly: beyond its share (64 of 128 slots by
/// default) they are refused at once with 429, the rest are answered 408 once their bodies
/// stall for the body idle timeout, and another client is served all along. The host runs on
/// its defaults: the 10 s idle timeout outlasts opening the 130 connections however loaded
/// the machine is, so no slot is freed (and taken by a later connection) before all are open.
#[tokio::test]
async fn slow_bodies_from_one_client_leave_room_for_others() {
    let host = start(&[]);
    let opening = Instant::now();
    let mut slow = Vec::new();
    for _ in 0..130 {
        slow.push(stalled_upload(&host, "127.0.0.3").await);
    }
    // What the counts below assume: no stalled body has timed out yet.
    assert!(
        opening.elapsed() < Duration::from_secs(10),
        "opening 130 connections took {:?}",
        opening.elapsed()
    );
    let response = client().get(host.url("/probe/hello")).send().await.unwrap();
    assert_eq!(response.status(), 200, "another client is served");

    let answers = futures::future::join_all(
        slow.into_iter()
            .map(|stream| response_of(stream, Duration::from_secs(30))),
    )
    .await;
    let count = |status: u16| answers.iter().filter(|(s, _)| *s == status).count();
    assert_eq!(count(429), 66, "{answers:?}");
    assert_eq!(count(408), 64, "{answers:?}");
    assert!(
        answers
            .iter()
            .all(|(_, text)| text.contains("too_many_requests") || text.contains("body_timeout"))
    );
    for (status, text) in &answers {
        documented_as(
            if *status == 429 {
                "Error429"
            } else {
                "Error408"
            },
            text,
        );
    }
    // The slots are back.
    let response = client().get(host.url("/probe/hello")).send().await.unwrap();
    assert_eq!(response.status(), 200);
}
