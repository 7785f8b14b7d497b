//! Oversized bodies are refused as they arrive, by every function that reads a body it limits:
//! the notifier's `/events` (64 KiB) and auth (16 KiB). A request declaring 120 MB, or sending
//! it chunked with no length, is answered 413 with a JSON error after the first megabyte, while
//! the client still holds the rest back, and two dozen of them in parallel leave the host's
//! memory flat. Every answer is checked against `openapi.yaml`.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::api::{System, conforms};
use common::rss;
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const EVENTS_TOKEN: &str = "body-limit-tests-events-token";
const HUGE: u64 = 120_000_000;
const CHUNK: usize = 64 * 1024;

/// How a test body is framed.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Framing {
    ContentLength,
    Chunked,
}

/// POSTs a body of `HUGE` bytes over a raw connection, sending at most `send_at_most` of it,
/// and reads the answer: status, JSON body, and how much was sent when it came. The client
/// keeps the connection open without sending more, so a server that waits for the whole body
/// never answers (and the test fails on its deadline).
async fn oversized(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    framing: Framing,
    send_at_most: u64,
) -> (u16, Value, u64) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let mut head =
        format!("POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&match framing {
        Framing::ContentLength => format!("content-length: {HUGE}\r\n\r\n"),
        Framing::Chunked => "transfer-encoding: chunked\r\n\r\n".to_owned(),
    });
    writer.write_all(head.as_bytes()).await.unwrap();
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = sent.clone();
    let sending = tokio::spawn(async move {
        let chunk = vec![b'x'; CHUNK];
        while counter.load(std::sync::atomic::Ordering::Relaxed) < send_at_most {
            let written = match framing {
                Framing::ContentLength => writer.write_all(&chunk).await,
                Framing::Chunked => {
                    let mut framed = format!("{:x}\r\n", chunk.len()).into_bytes();
                    framed.extend_from_slice(&chunk);
                    framed.extend_from_slice(b"\r\n");
                    writer.write_all(&framed).await
                }
            };
            if written.is_err() {
                break; // the server closed: it has answered
            }
            counter.fetch_add(CHUNK as u64, std::sync::atomic::Ordering::Relaxed);
        }
        // Hold the rest back with the connection open.
        std::future::pending::<()>().await;
        drop(writer);
    });
    let answer = tokio::time::timeout(Duration::from_secs(30), read_response(&mut reader)).await;
    let sent_when_answered = sent.load(std::sync::atomic::Ordering::Relaxed);
    sending.abort();
    let (status, body) = answer.unwrap_or_else(|_| {
        panic!("{path} ({framing:?}): no answer within 30 s after {sent_when_answered} bytes")
    });
    // `read_response` has checked the content type; the answer is the documented one.
    conforms(
        "POST",
        path,
        status,
        Some("application/json"),
        body.to_string().as_bytes(),
    );
    (status, body, sent_when_answered)
}

/// Reads one HTTP/1.1 response (content-length, chunked or close-delimited).
async fn read_response(reader: &mut tokio::net::tcp::OwnedReadHalf) -> (u16, Value) {
    let mut received = Vec::new();
    let mut buffer = vec![0u8; 16 * 1024];
    let head_end = loop {
        if let Some(i) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = reader.read(&mut buffer).await.unwrap();
        assert!(n > 0, "the connection closed without an answer");
        received.extend_from_slice(&buffer[..n]);
    };
    let head = String::from_utf8_lossy(&received[..head_end]).to_lowercase();
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    let header = |name: &str| {
        head.lines()
            .find_map(|line| line.strip_prefix(&format!("{name}:")))
            .map(|v| v.trim().to_owned())
    };
    assert_eq!(header("content-type").as_deref(), Some("application/json"));
    let mut body = received[head_end..].to_vec();
    let complete = |body: &[u8]| match (header("content-length"), header("transfer-encoding")) {
        (Some(length), _) => body.len() >= length.parse::<usize>().unwrap(),
        (None, Some(_)) => body.ends_with(b"0\r\n\r\n"),
        (None, None) => false,
    };
    while !complete(&body) {
        let n = reader.read(&mut buffer).await.unwrap_or(0);
        if n == 0 {
            break;
        }
        body.extend_from_slice(&buffer[..n]);
    }
    if header("transfer-encoding").is_some() {
        body = dechunk(&body);
    }
    let json = serde_json::from_slice(&body)
        .unwrap_or_else(|err| panic!("not JSON ({err}): {}", String::from_utf8_lossy(&body)));
    (status, json)
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&data[..line_end]).unwrap().trim(), 16)
                .unwrap();
        data = &data[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

fn assert_too_large(path: &str, framing: Framing, (status, body, sent): (u16, Value, u64)) {
    assert_eq!(status, 413, "{path} ({framing:?}): {body}");
    assert_eq!(body["error"]["code"], "body_too_large", "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
    assert!(sent < HUGE, "{path}: answered only after the whole body");
}

#[tokio::test]
async fn oversized_bodies_are_refused_as_they_arrive() {
    let system = System::embedded_with(&[], &[("SPIN_VARIABLE_EVENTS_TOKEN", EVENTS_TOKEN)]);
    let addr = system.host.addr;
    let bearer = format!("Bearer {EVENTS_TOKEN}");
    let event_headers = [
        ("authorization", bearer.as_str()),
        ("ce-specversion", "1.0"),
        ("ce-id", "big"),
        ("ce-source", "/test"),
        ("ce-type", "dev.knative.rabbitmq.event"),
    ];
    let targets: [(&str, &[(&str, &str)]); 3] = [
        ("/events", &event_headers),
        ("/auth/login", &[]),
        ("/auth/register", &[]),
    ];
    for (path, headers) in targets {
        for framing in [Framing::ContentLength, Framing::Chunked] {
            let started = Instant::now();
            assert_too_large(
                path,
                framing,
                oversized(addr, path, headers, framing, 1 << 20).await,
            );
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{path}: {:?}",
                started.elapsed()
            );
        }
    }
    // Without the token, /events refuses before reading anything.
    let (status, body, _) = oversized(
        addr,
        "/events",
        &event_headers[1..],
        Framing::Chunked,
        1 << 20,
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );

    // Two dozen 120 MB POSTs at once, each sent in full unless answered first.
    let (before, _) = rss(system.host.pid());
    let posts = (0..24).map(|i| {
        let (path, headers) = targets[i % 3];
        let framing = if i % 2 == 0 {
            Framing::ContentLength
        } else {
            Framing::Chunked
        };
        async move {
            (
                path,
                framing,
                oversized(addr, path, headers, framing, HUGE).await,
            )
        }
    });
    for (path, framing, answer) in futures::future::join_all(posts).await {
        assert_too_large(path, framing, answer);
    }
    let (after, peak) = rss(system.host.pid());
    eprintln!(
        "host RSS: {} MB before, peak {} MB, {} MB after",
        before >> 20,
        peak >> 20,
        after >> 20
    );
    assert!(
        peak.saturating_sub(before) < 150 << 20,
        "the host grew from {} MB to a peak of {} MB (now {} MB)",
        before >> 20,
        peak >> 20,
        after >> 20
    );
}
