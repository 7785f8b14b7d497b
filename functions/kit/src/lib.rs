//! What every mp3conv function needs around its logic, written once: typed settings, one
//! outbound HTTP client that forwards the trace, and replies and request bodies. It builds for
//! `wasm32-wasip2` and natively; everything except the thin WASI calls (marked *wasm only*) is
//! plain Rust, unit-tested natively.
//!
//! # [`config`]: settings from Spin variables
//! - `config::load::<T>(get)`: `T` is a `#[derive(Deserialize)]` struct whose field names are
//!   the variable names; values are trimmed, empty is missing; `Option` and `#[serde(default)]`
//!   work; every error names its variable (`variable `worker_token` must be at least 16
//!   characters`). [`config::ConfigError`] (`new(variable, problem)` for checks types cannot
//!   express, `variable()`); [`config::in_range`].
//! - Types: [`config::Secret`] (prints `[redacted]`; `expose()`, `matches()`),
//!   [`config::ServiceToken`] (a secret of at least 16 characters; `bearer()`, `allows(header)`
//!   in constant time), [`config::BaseUrl`] (`http(s)://host[:port]`, no path; `join(path)`),
//!   [`config::HttpUrl`] (an http(s) URL with a path), [`config::Millis`] and
//!   [`config::Seconds`] (durations), [`config::Json`] (a variable holding JSON, such as a JWKS),
//!   [`config::Database`] (reads `database` + `mysql_url`; prints without the URL; derefs to
//!   `mp3conv_sql::Database`).
//!
//! # [`http`]: the outbound client
//! - [`http::Request`]: `Request::to(Method, &BaseUrl, "/path?query")` (a configured service) or
//!   `Request::new(Method, "https://…")?` (a user's URL), then `.header()`, `.headers()`,
//!   `.bearer(&ServiceToken)`, `.trace(&Trace)` (both trace headers: calls inside mp3conv),
//!   `.trace_outside(&Trace)` (`traceparent` only: webhooks, email API), `.json(&value)`,
//!   `.body(bytes)` (held in memory: always sent with `Content-Length`, never chunked),
//!   `.timeout(d)`.
//! - *wasm only*: `http::send(request) -> Result<http::Response, HttpError>` (blocks until the
//!   headers arrive); `Response::{status, header, headers, keep_headers, read(limit),
//!   into_incoming}`; `http::start(request) -> Result<http::Upload, HttpError>` for a streamed
//!   body: `Upload::{write(chunk), finish() -> Response, stop() -> Response, abort()}`.
//! - [`http::HttpError`] `{ kind, url, detail }` with [`http::ErrorKind`] `Denied` (not in
//!   `allowed_outbound_hosts`), `Timeout`, `Unreachable`, `TooLarge`, `Invalid`, `Failed`;
//!   `is_transient()`. [`http::keep_headers`], [`http::Limited`].
//!
//! # [`trace`]: the request's trace
//! - [`trace::Trace::from_headers`] (`x-request-id`, `traceparent`; malformed values dropped),
//!   `trace_id()`, `request_id()`, `log_id()` (what log lines carry), `internal_headers()`,
//!   `external_headers()`; *wasm only*: `reply::trace(&IncomingRequest)`.
//!
//! # [`reply`]: answers and request bodies
//! - [`reply::Reply`] `{ status, headers, body }`: `json`, `error(status, code, message)`,
//!   `empty`, `bytes`, `with_header`. [`reply::BodyError`] (`TooLarge { limit }` -> 413,
//!   `Unreadable` -> 400, `reply()`), [`reply::declared_too_large`];
//!   [`reply::read_stream`]`(stream, content_length, limit, drain_up_to)` and
//!   [`reply::drain_stream`]`(stream, up_to)` over any stream of byte chunks (natively
//!   testable; the wasm calls below use them).
//! - *wasm only*: `reply::send(out, reply)`, `reply::stream_back(out, response, headers)`
//!   (a peer's body streamed on as it arrives), `reply::read_body(request, limit, drain_up_to)`,
//!   `reply::drain(request, up_to)`, `reply::header(&request, name)`,
//!   `reply::headers(&request)`.

pub mod config;
pub mod http;
pub mod reply;
pub mod trace;

pub use trace::Trace;
