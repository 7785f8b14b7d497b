//! What a function answers and how it reads what it is sent: a [`Reply`] (status, headers,
//! body) built in plain Rust, and (wasm only) the thin calls that send it, stream a peer's
//! response back, read a request body up to a limit, drain a refused one and read headers.

use futures::{Stream, StreamExt as _};
use serde::Serialize;

use crate::http::Limited;

#[cfg(target_arch = "wasm32")]
mod wasi;
#[cfg(target_arch = "wasm32")]
pub use wasi::{drain, header, headers, read_body, send, stream_back, trace};

/// An answer held in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    /// `value` as JSON.
    pub fn json(status: u16, value: &impl Serialize) -> Reply {
        Reply {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: serde_json::to_vec(value).unwrap_or_default(),
        }
    }

    /// The stable error body, `{"error": {"code": ..., "message": ...}}`.
    pub fn error(status: u16, code: &str, message: &str) -> Reply {
        Reply::json(
            status,
            &serde_json::json!({ "error": { "code": code, "message": message } }),
        )
    }

    /// No body.
    pub fn empty(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// A body of `content_type`.
    pub fn bytes(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status,
            headers: vec![("content-type".into(), content_type.into())],
            body: body.into(),
        }
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Reply {
        self.headers.push((name.to_owned(), value.into()));
        self
    }
}

/// What every answer of every function carries unless it says otherwise (the web app sets its
/// own policy): the API shares its origin with the web app, whose token is in that origin's
/// storage, so no answer may be sniffed into a document, framed, or leak the page's address.
pub const SAFE_DEFAULTS: [(&str, &str); 3] = [
    ("x-content-type-options", "nosniff"),
    (
        "content-security-policy",
        "default-src 'none'; frame-ancestors 'none'; base-uri 'none'",
    ),
    ("referrer-policy", "no-referrer"),
];

/// `headers` with each of [`SAFE_DEFAULTS`] the answer does not set itself.
pub fn with_safe_defaults(mut headers: Vec<(String, String)>) -> Vec<(String, String)> {
    for (name, value) in SAFE_DEFAULTS {
        if !headers
            .iter()
            .any(|(have, _)| have.eq_ignore_ascii_case(name))
        {
            headers.push((name.to_owned(), value.to_owned()));
        }
    }
    headers
}

/// Why a request body was not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    /// Past the limit, declared or while arriving.
    TooLarge { limit: u64 },
    /// The body broke while arriving.
    Unreadable,
}

impl BodyError {
    /// The usual answer: 413 `body_too_large` or 400 `body_read`.
    pub fn reply(&self) -> Reply {
        match self {
            BodyError::TooLarge { limit } => Reply::error(
                413,
                "body_too_large",
                &format!("the body is limited to {limit} bytes"),
            ),
            BodyError::Unreadable => {
                Reply::error(400, "body_read", "the request body could not be read")
            }
        }
    }
}

/// Reads a body arriving as `stream`, at most `limit` bytes. A body declared
/// (`content_length`) or found larger is refused ([`BodyError::TooLarge`]) after reading and
/// dropping up to `drain_up_to` more bytes, so a client still sending gets to read the answer
/// instead of a reset connection.
pub async fn read_stream<S, C, E>(
    stream: S,
    content_length: Option<&str>,
    limit: usize,
    drain_up_to: usize,
) -> Result<Vec<u8>, BodyError>
where
    S: Stream<Item = Result<C, E>>,
    C: AsRef<[u8]>,
{
    let too_large = BodyError::TooLarge {
        limit: limit as u64,
    };
    futures::pin_mut!(stream);
    if declared_too_large(content_length, limit as u64) {
        drain_stream(stream, drain_up_to).await;
        return Err(too_large);
    }
    let mut body = Limited::new(limit);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| BodyError::Unreadable)?;
        if body.push(chunk.as_ref()).is_err() {
            drain_stream(stream, drain_up_to).await;
            return Err(too_large);
        }
    }
    Ok(body.into_bytes())
}

/// Reads and drops what `stream` still sends, up to about `up_to` bytes (it stops at the end,
/// at an error, or at the first chunk past `up_to`).
pub async fn drain_stream<S, C, E>(stream: S, up_to: usize)
where
    S: Stream<Item = Result<C, E>>,
    C: AsRef<[u8]>,
{
    futures::pin_mut!(stream);
    let mut seen = 0;
    while seen <= up_to {
        match stream.next().await {
            Some(Ok(chunk)) => seen += chunk.as_ref().len(),
            _ => break,
        }
    }
}

/// Whether a declared `Content-Length` already passes `limit` (a body is then refused unread).
pub fn declared_too_large(content_length: Option<&str>, limit: u64) -> bool {
    content_length
        .and_then(|value| value.trim().parse::<u64>().ok())
        .is_some_and(|length| length > limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_defaults_fill_in_what_an_answer_does_not_set() {
        let plain = with_safe_defaults(vec![("content-type".into(), "application/json".into())]);
        assert_eq!(plain.len(), 4);
        for (name, value) in SAFE_DEFAULTS {
            assert!(plain.iter().any(|(n, v)| n == name && v == value), "{name}");
        }
        // The web app's own policy stands, whatever the case of its name.
        let own = with_safe_defaults(vec![(
            "Content-Security-Policy".into(),
            "default-src 'self'".into(),
        )]);
        let policies: Vec<_> = own
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("content-security-policy"))
            .collect();
        assert_eq!(policies.len(), 1);
        assert_eq!(policies[0].1, "default-src 'self'");
    }

    #[test]
    fn replies() {
        let reply = Reply::error(404, "not_found", "no such job").with_header("x-a", "1");
        assert_eq!(reply.status, 404);
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&reply.body).unwrap(),
            serde_json::json!({"error": {"code": "not_found", "message": "no such job"}})
        );
        assert_eq!(
            reply.headers,
            vec![
                ("content-type".to_owned(), "application/json".to_owned()),
                ("x-a".to_owned(), "1".to_owned())
            ]
        );
        assert!(Reply::empty(204).body.is_empty());
        assert_eq!(Reply::bytes(200, "text/plain", "t").body, b"t");
    }

    fn chunks(parts: &[&'static [u8]]) -> impl Stream<Item = Result<&'static [u8], ()>> {
        futures::stream::iter(parts.iter().map(|p| Ok(*p)).collect::<Vec<_>>())
    }

    #[test]
    fn streams_are_read_up_to_the_limit() {
        let read = |parts: &[&'static [u8]], declared: Option<&str>, limit| {
            futures::executor::block_on(read_stream(chunks(parts), declared, limit, 8))
        };
        assert_eq!(read(&[b"ab", b"cd"], Some("4"), 4), Ok(b"abcd".to_vec()));
        assert_eq!(
            read(&[b"ab", b"cde"], None, 4),
            Err(BodyError::TooLarge { limit: 4 })
        );
        assert_eq!(
            read(&[b"ab"], Some("5"), 4),
            Err(BodyError::TooLarge { limit: 4 })
        );
        assert_eq!(read(&[], None, 4), Ok(Vec::new()));
        let broken = futures::stream::iter(vec![Ok(&b"ab"[..]), Err(())]);
        assert_eq!(
            futures::executor::block_on(read_stream(broken, None, 4, 0)),
            Err(BodyError::Unreadable)
        );
    }

    #[test]
    fn draining_is_bounded() {
        let pulled = std::cell::Cell::new(0);
        let stream = futures::stream::iter((0..100).map(|_| {
            pulled.set(pulled.get() + 1);
            Ok::<_, ()>(&b"0123456789"[..])
        }));
        futures::executor::block_on(drain_stream(stream, 25));
        assert_eq!(pulled.get(), 3, "stops at the first chunk past the bound");
    }

    #[test]
    fn body_errors_and_declared_lengths() {
        let too_large = BodyError::TooLarge { limit: 10 }.reply();
        assert_eq!(too_large.status, 413);
        assert_eq!(BodyError::Unreadable.reply().status, 400);
        assert!(declared_too_large(Some(" 11 "), 10));
        assert!(!declared_too_large(Some("10"), 10));
        assert!(
            !declared_too_large(Some("x"), 10),
            "a bad length is checked while reading"
        );
        assert!(!declared_too_large(None, 10));
    }
}
