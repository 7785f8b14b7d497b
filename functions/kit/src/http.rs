//! One HTTP client for every outbound call of the functions (the worker's internal API, the
//! auth function, webhooks, the email API).
//!
//! A [`Request`] is plain data, built and checked natively; the WASI half (wasm only) sends it:
//! - [`send`]: a request with a small body held in memory (or none), sent with a
//!   `Content-Length` (never chunked, so any receiver reads it whole); the [`Response`] arrives
//!   as soon as its headers do, and its body is read with [`Response::read`] (bounded) or
//!   streamed back to the client with [`crate::reply::stream_back`].
//! - [`start`]: a request whose body is streamed ([`Upload::write`] chunk by chunk), then
//!   [`Upload::finish`] for the response, [`Upload::stop`] when the receiver stopped reading, or
//!   [`Upload::abort`] so the receiver sees an unfinished body.
//!
//! The calls block the component until the host answers (each with its own
//! [`Request::timeout`] when set); errors say which [`ErrorKind`] they are: refused by
//! `allowed_outbound_hosts`, a timeout, an unreachable peer, a body too large, or anything
//! else.

use std::fmt;
use std::time::Duration;

use crate::config::{BaseUrl, ServiceToken};
use crate::trace::Trace;

#[cfg(target_arch = "wasm32")]
mod wasi;
#[cfg(target_arch = "wasm32")]
pub use wasi::{Response, Upload, send, start};

/// The methods the functions use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
}

/// `http` or `https`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

/// An outbound request: where, which headers, the body if it is held in memory, and the
/// timeout (connect, first byte and between bytes) if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    method: Method,
    scheme: Scheme,
    authority: String,
    path_and_query: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
    timeout: Option<Duration>,
}

/// Headers the client sets itself (from the body) or the host refuses.
const MANAGED_HEADERS: [&str; 4] = ["content-length", "transfer-encoding", "host", "connection"];

impl Request {
    /// A request to an absolute `http(s)://` URL (a webhook, the email API).
    pub fn new(method: Method, url: &str) -> Result<Request, HttpError> {
        let invalid =
            || HttpError::new(ErrorKind::Invalid, redact_query(url), "not an http(s) URL");
        let (scheme, rest) = match url.split_once("://") {
            Some(("https", rest)) => (Scheme::Https, rest),
            Some(("http", rest)) => (Scheme::Http, rest),
            _ => return Err(invalid()),
        };
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(split);
        if authority.is_empty() || authority.contains(['@', ' ', '#']) || path.contains('#') {
            return Err(invalid());
        }
        let path_and_query = match path {
            "" => "/".to_owned(),
            p if p.starts_with('?') => format!("/{p}"),
            p => p.to_owned(),
        };
        Ok(Request {
            method,
            scheme,
            authority: authority.to_owned(),
            path_and_query,
            headers: Vec::new(),
            body: None,
            timeout: None,
        })
    }

    /// A request to a configured service: `base` followed by `path_and_query` (which starts
    /// with `/`).
    pub fn to(method: Method, base: &BaseUrl, path_and_query: &str) -> Request {
        let url = base.as_str();
        let (scheme, authority) = match url.split_once("://") {
            Some(("https", authority)) => (Scheme::Https, authority),
            Some((_, authority)) => (Scheme::Http, authority),
            None => (Scheme::Http, url),
        };
        let path_and_query = if path_and_query.starts_with('/') {
            path_and_query.to_owned()
        } else {
            format!("/{path_and_query}")
        };
        Request {
            method,
            scheme,
            authority: authority.to_owned(),
            path_and_query,
            headers: Vec::new(),
            body: None,
            timeout: None,
        }
    }

    /// Adds a header (`content-length` and `transfer-encoding` are the client's own and
    /// ignored).
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Request {
        let name = name.to_ascii_lowercase();
        if !MANAGED_HEADERS.contains(&name.as_str()) {
            self.headers.push((name, value.into()));
        }
        self
    }

    /// Adds several headers.
    pub fn headers<N: AsRef<str>, V: Into<String>>(
        self,
        headers: impl IntoIterator<Item = (N, V)>,
    ) -> Request {
        headers.into_iter().fold(self, |request, (name, value)| {
            request.header(name.as_ref(), value)
        })
    }

    /// `Authorization: Bearer <token>`.
    pub fn bearer(self, token: &ServiceToken) -> Request {
        self.header("authorization", token.bearer())
    }

    /// Forwards `traceparent` and `x-request-id`: for calls to another part of mp3conv.
    pub fn trace(self, trace: &Trace) -> Request {
        self.headers(trace.internal_headers())
    }

    /// Forwards only `traceparent`: for calls outside mp3conv.
    pub fn trace_outside(self, trace: &Trace) -> Request {
        self.headers(trace.external_headers())
    }

    /// A JSON body (and its content type).
    pub fn json(self, value: &impl serde::Serialize) -> Request {
        let body = serde_json::to_vec(value).unwrap_or_default();
        self.header("content-type", "application/json").body(body)
    }

    /// A body held in memory, sent with its `Content-Length`. An empty one is sent as
    /// `Content-Length: 0`; a request without `body` has no body at all.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Request {
        self.body = Some(body.into());
        self
    }

    /// The connect, first-byte and between-bytes timeout of this call.
    pub fn timeout(mut self, timeout: Duration) -> Request {
        self.timeout = Some(timeout);
        self
    }

    /// The method.
    pub fn method(&self) -> Method {
        self.method
    }

    /// The scheme.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// `host[:port]`.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// The path and query, starting with `/`.
    pub fn path_and_query(&self) -> &str {
        &self.path_and_query
    }

    /// The body held in memory, if any.
    pub fn body_bytes(&self) -> Option<&[u8]> {
        self.body.as_deref()
    }

    /// The timeout, if any.
    pub fn timeout_value(&self) -> Option<Duration> {
        self.timeout
    }

    /// The URL without its query (queries may carry names or tokens), for errors and logs.
    pub fn url(&self) -> String {
        let scheme = match self.scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
        };
        let path = self.path_and_query.split('?').next().unwrap_or_default();
        format!("{scheme}://{}{path}", self.authority)
    }

    /// The headers to send: the request's own, plus `Content-Length` for a body held in
    /// memory.
    pub fn wire_headers(&self) -> Vec<(String, Vec<u8>)> {
        let mut headers: Vec<(String, Vec<u8>)> = self
            .headers
            .iter()
            .map(|(name, value)| (name.clone(), value.clone().into_bytes()))
            .collect();
        if let Some(body) = &self.body {
            headers.push(("content-length".into(), body.len().to_string().into_bytes()));
        }
        headers
    }
}

fn redact_query(url: &str) -> String {
    url.split(['?', '#']).next().unwrap_or_default().to_owned()
}

/// What kind of failure an outbound call met.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The host refused it: the destination is not in the component's
    /// `allowed_outbound_hosts` (a configuration error, not an outage).
    Denied,
    /// No answer in time (DNS, connect, first byte or between bytes).
    Timeout,
    /// The peer could not be reached (DNS, refused, reset, TLS).
    Unreachable,
    /// The response body passed the caller's limit.
    TooLarge,
    /// The request could not be formed (a bad URL or header).
    Invalid,
    /// The exchange broke in another way (a protocol error, a broken body).
    Failed,
}

impl ErrorKind {
    /// Classifies a `wasi:http` error code by its name (`HttpRequestDenied`,
    /// `ConnectionTimeout`, ...).
    pub fn of_error_code(name: &str) -> ErrorKind {
        let variant = name.split(['(', ' ', '{']).next().unwrap_or_default();
        match variant {
            "HttpRequestDenied" => ErrorKind::Denied,
            "DnsTimeout"
            | "ConnectionTimeout"
            | "ConnectionReadTimeout"
            | "ConnectionWriteTimeout"
            | "HttpResponseTimeout" => ErrorKind::Timeout,
            "DnsError"
            | "DestinationNotFound"
            | "DestinationUnavailable"
            | "DestinationIpProhibited"
            | "DestinationIpUnroutable"
            | "ConnectionRefused"
            | "ConnectionTerminated"
            | "ConnectionLimitReached"
            | "TlsProtocolError"
            | "TlsCertificateError"
            | "TlsAlertReceived" => ErrorKind::Unreachable,
            "HttpRequestUriInvalid" | "HttpRequestMethodInvalid" => ErrorKind::Invalid,
            _ => ErrorKind::Failed,
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::Denied => "denied by allowed_outbound_hosts",
            ErrorKind::Timeout => "timed out",
            ErrorKind::Unreachable => "unreachable",
            ErrorKind::TooLarge => "response too large",
            ErrorKind::Invalid => "invalid request",
            ErrorKind::Failed => "failed",
        })
    }
}

/// A failed outbound call: its kind, the URL (without query) and the host's detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError {
    pub kind: ErrorKind,
    pub url: String,
    pub detail: String,
}

impl HttpError {
    /// An error of `kind` for `url`.
    pub fn new(kind: ErrorKind, url: impl Into<String>, detail: impl Into<String>) -> HttpError {
        HttpError {
            kind,
            url: url.into(),
            detail: detail.into(),
        }
    }

    /// Whether trying again later may succeed (not a denial or a bad request).
    pub fn is_transient(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::Timeout | ErrorKind::Unreachable | ErrorKind::Failed
        )
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.url, self.kind)?;
        if !self.detail.is_empty() {
            write!(f, " ({})", self.detail)?;
        }
        Ok(())
    }
}

impl std::error::Error for HttpError {}

/// The headers of `entries` named in `names` (any case), lower-cased, as text: what a
/// response passes on (`content-type`, `etag`, `retry-after`, ...).
pub fn keep_headers(entries: &[(String, Vec<u8>)], names: &[&str]) -> Vec<(String, String)> {
    entries
        .iter()
        .filter(|(name, _)| names.iter().any(|n| n.eq_ignore_ascii_case(name)))
        .map(|(name, value)| {
            (
                name.to_ascii_lowercase(),
                String::from_utf8_lossy(value).into_owned(),
            )
        })
        .collect()
}

/// Collects a body up to `limit` bytes.
#[derive(Debug)]
pub struct Limited {
    limit: usize,
    bytes: Vec<u8>,
}

impl Limited {
    /// An empty body that may grow to `limit` bytes.
    pub fn new(limit: usize) -> Limited {
        Limited {
            limit,
            bytes: Vec::new(),
        }
    }

    /// Adds a chunk; `Err(())` once the whole would pass the limit (nothing is added then).
    #[allow(clippy::result_unit_err)]
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), ()> {
        if self.bytes.len() + chunk.len() > self.limit {
            return Err(());
        }
        self.bytes.extend_from_slice(chunk);
        Ok(())
    }

    /// The bytes collected.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffered_bodies_carry_their_length() {
        let request = Request::new(Method::Post, "https://hooks.example:8443/in?x=1")
            .unwrap()
            .header("Content-Length", "999")
            .header("transfer-encoding", "chunked")
            .json(&serde_json::json!({"a": 1}));
        assert_eq!(request.authority(), "hooks.example:8443");
        assert_eq!(request.path_and_query(), "/in?x=1");
        assert_eq!(request.url(), "https://hooks.example:8443/in");
        assert_eq!(
            request.wire_headers(),
            vec![
                ("content-type".to_owned(), b"application/json".to_vec()),
                ("content-length".to_owned(), b"7".to_vec()),
            ]
        );
        let empty = Request::new(Method::Post, "http://a")
            .unwrap()
            .body(Vec::new());
        assert_eq!(empty.path_and_query(), "/");
        assert_eq!(
            empty.wire_headers(),
            vec![("content-length".to_owned(), b"0".to_vec())]
        );
        let none = Request::new(Method::Get, "http://a?q").unwrap();
        assert_eq!(none.path_and_query(), "/?q");
        assert!(none.wire_headers().is_empty(), "no body, no length");
    }

    #[test]
    fn bad_urls_are_invalid_requests() {
        for bad in [
            "ftp://a/b",
            "a/b",
            "http://",
            "http://u:p@a/",
            "http://a/#x",
        ] {
            let err = Request::new(Method::Get, bad).unwrap_err();
            assert_eq!(err.kind, ErrorKind::Invalid, "{bad}");
        }
        let err = Request::new(Method::Get, "mailto:x?token=secret").unwrap_err();
        assert!(!err.to_string().contains("secret"), "{err}");
    }

    #[test]
    fn service_requests_forward_the_trace_and_the_token() {
        let base = BaseUrl::new("http://127.0.0.1:8090/").unwrap();
        let token = ServiceToken::new("a-long-internal-token").unwrap();
        let trace = Trace::from_headers(|name| match name {
            "x-request-id" => Some("req-7"),
            "traceparent" => Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            _ => None,
        });
        let request = Request::to(Method::Get, &base, "/internal/jobs/1")
            .bearer(&token)
            .trace(&trace)
            .timeout(Duration::from_secs(2));
        assert_eq!(request.url(), "http://127.0.0.1:8090/internal/jobs/1");
        let names: Vec<String> = request.wire_headers().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["authorization", "traceparent", "x-request-id"]);
        let outside = Request::new(Method::Post, "https://hooks.example/")
            .unwrap()
            .trace_outside(&trace);
        let names: Vec<String> = outside.wire_headers().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["traceparent"], "no internal request id outside");
        assert_eq!(request.timeout_value(), Some(Duration::from_secs(2)));
    }

    #[test]
    fn errors_are_classified() {
        for (code, kind) in [
            ("HttpRequestDenied", ErrorKind::Denied),
            ("ConnectionTimeout", ErrorKind::Timeout),
            ("HttpResponseTimeout", ErrorKind::Timeout),
            (
                "DnsError(DnsErrorPayload { rcode: None })",
                ErrorKind::Unreachable,
            ),
            ("ConnectionRefused", ErrorKind::Unreachable),
            ("InternalError(Some(\"x\"))", ErrorKind::Failed),
        ] {
            assert_eq!(ErrorKind::of_error_code(code), kind, "{code}");
        }
        let denied = HttpError::new(ErrorKind::Denied, "http://x/", "HttpRequestDenied");
        assert!(!denied.is_transient());
        assert_eq!(
            denied.to_string(),
            "http://x/: denied by allowed_outbound_hosts (HttpRequestDenied)"
        );
        assert!(HttpError::new(ErrorKind::Timeout, "u", "").is_transient());
    }

    #[test]
    fn kept_headers_and_limits() {
        let entries = vec![
            ("Content-Type".to_owned(), b"audio/mpeg".to_vec()),
            ("x-internal".to_owned(), b"1".to_vec()),
            ("ETag".to_owned(), b"\"a\"".to_vec()),
        ];
        assert_eq!(
            keep_headers(&entries, &["content-type", "etag"]),
            vec![
                ("content-type".to_owned(), "audio/mpeg".to_owned()),
                ("etag".to_owned(), "\"a\"".to_owned())
            ]
        );
        let mut body = Limited::new(4);
        body.push(b"abc").unwrap();
        assert!(body.push(b"de").is_err());
        body.push(b"d").unwrap();
        assert_eq!(body.into_bytes(), b"abcd");
    }
}
