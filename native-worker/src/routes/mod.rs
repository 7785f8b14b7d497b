//! The internal HTTP API (called by the gateway, never exposed publicly).
//!
//! Every `/internal/...` request carries:
//! - `Authorization: Bearer <internal token>`: the shared service secret (compared in constant
//!   time; 401 `unauthorized` without it);
//! - `X-Mp3conv-Owner: <user id>`: the user the gateway verified (400 `missing_owner` without
//!   it). A job belonging to another owner answers 404, exactly like a missing one.
//!
//! Errors have the body `{"error": {"code": "...", "message": "..."}}`, plus `"field"` when
//! a conversion option is refused.
//!
//! Jobs (see `jobs.rs`, `tracks.rs`): `POST /internal/jobs` (uploads, `?hold=true` to hold one
//! until `POST /internal/jobs/{id}/start`, links), `GET /internal/jobs`,
//! `GET`/`DELETE /internal/jobs/{id}`, `GET /internal/jobs/{id}/audio`,
//! `GET /internal/jobs/{id}/tracks/{n}`, `GET /internal/jobs/{id}/tracks.zip`.
//!
//! Quotas (see [`crate::quota`]): `X-Mp3conv-Limits` carries the owner's own limits, if an
//! operator set any, on `POST /internal/jobs` and `GET /internal/usage` (their quota and what
//! they use of it).
//!
//! Live events (see `events.rs`): `GET /internal/events`, `GET /internal/jobs/{id}/events`
//! (Server-Sent Events; `Last-Event-ID`, `X-Mp3conv-Stream-Until`) and `POST /internal/events`.
//!
//! Every request, `/internal/...` or not, gets an `x-request-id` (the caller's when it is a sane
//! token, else a fresh one; sent back on the response) and a place in a W3C trace (the child of
//! a valid `traceparent`, else a new trace). Its span carries both as `request_id` and
//! `trace_id`, and the handlers see the worker's own `traceparent`, which a job's messages carry
//! on to the converter and the notifier.

mod events;
mod health;
mod jobs;
mod tracks;

use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRequestParts, Request, State as AxumState};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use mp3conv_contract::trace::{self, TraceParent};
use secrecy::ExposeSecret;
use subtle::ConstantTimeEq;

use crate::State;
use crate::error::Error;

/// Header naming the user a request acts for.
pub const OWNER_HEADER: &str = "x-mp3conv-owner";

const REQUEST_ID: HeaderName = HeaderName::from_static(trace::REQUEST_ID);
const TRACEPARENT: HeaderName = HeaderName::from_static(trace::TRACEPARENT);
const TRACESTATE: HeaderName = HeaderName::from_static(trace::TRACESTATE);

/// All routes.
pub(crate) fn router(state: Arc<State>) -> Router {
    let internal = Router::new()
        .route("/internal/jobs", get(jobs::list).post(jobs::create))
        .route("/internal/jobs/{id}", get(jobs::get).delete(jobs::delete))
        .route("/internal/jobs/{id}/start", post(jobs::start))
        .route("/internal/usage", get(jobs::usage))
        .route("/internal/jobs/{id}/audio", get(jobs::audio))
        .route("/internal/jobs/{id}/tracks/{n}", get(tracks::track))
        .route("/internal/jobs/{id}/tracks.zip", get(tracks::zip))
        .route("/internal/jobs/{id}/events", get(events::job_stream))
        .route(
            "/internal/events",
            get(events::owner_stream).post(events::publish),
        )
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            require_token,
        ));
    let serves_api = state.config.role.serves_api();
    let router = Router::new()
        .route("/health/live", get(health::live))
        .route("/health/ready", get(health::ready))
        .route("/metrics", get(health::metrics));
    let router = if serves_api {
        router.merge(internal)
    } else {
        router
    };
    router
        .layer(
            tower_http::trace::TraceLayer::new_for_http().make_span_with(|request: &Request| {
                let context = request.extensions().get::<RequestContext>();
                tracing::info_span!(
                    "request",
                    method = %request.method(),
                    path = %request.uri().path(),
                    request_id = context.map_or("", |c| c.request_id.as_str()),
                    trace_id = %context.map(|c| c.trace.trace_id().to_string()).unwrap_or_default(),
                )
            }),
        )
        // Outermost, so the span above and every handler see the request's context.
        .layer(middleware::from_fn(request_context))
        .with_state(state)
}

/// A request's id and the worker's span in its trace.
#[derive(Debug, Clone)]
struct RequestContext {
    request_id: String,
    trace: TraceParent,
    /// Whether the caller's trace was kept (its `tracestate` belongs to it only then).
    continued: bool,
}

impl RequestContext {
    fn from_headers(headers: &HeaderMap) -> RequestContext {
        let header = |name: &HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
        let request_id = header(&REQUEST_ID)
            .filter(|id| trace::is_valid_request_id(id))
            .map_or_else(|| uuid::Uuid::new_v4().simple().to_string(), str::to_owned);
        let mut random = [0; 24];
        if let Err(e) = getrandom::fill(&mut random) {
            // Never seen on a running system; ids would repeat rather than requests fail.
            tracing::warn!(error = %e, "no random bytes for a trace id");
        }
        let (trace, continued) = match header(&TRACEPARENT).map(TraceParent::parse) {
            Some(Ok(parent)) => (parent.child(random[..8].try_into().expect("8 bytes")), true),
            _ => (TraceParent::start(random), false),
        };
        RequestContext {
            request_id,
            trace,
            continued,
        }
    }
}

/// Gives the request its [`RequestContext`]: in its extensions for the span, in its headers
/// for the handlers (what they pass on is the worker's span), and the id on the response.
async fn request_context(mut request: Request, next: Next) -> Response {
    let context = RequestContext::from_headers(request.headers());
    let request_id = HeaderValue::from_str(&context.request_id).ok();
    let headers = request.headers_mut();
    if !context.continued {
        headers.remove(&TRACESTATE);
    }
    if let Some(id) = &request_id {
        headers.insert(REQUEST_ID, id.clone());
    }
    if let Ok(value) = HeaderValue::from_str(&context.trace.to_string()) {
        headers.insert(TRACEPARENT, value);
    }
    request.extensions_mut().insert(context);
    let mut response = next.run(request).await;
    if let Some(id) = request_id {
        response.headers_mut().insert(REQUEST_ID, id);
    }
    response
}

async fn require_token(
    AxumState(state): AxumState<Arc<State>>,
    request: Request,
    next: Next,
) -> Result<Response, Error> {
    let presented = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
        .unwrap_or_default();
    let expected = state
        .config
        .internal_token
        .as_ref()
        .map(|t| t.expose_secret().as_bytes())
        .unwrap_or_default();
    if expected.is_empty() || !bool::from(presented.ct_eq(expected)) {
        return Err(Error::Unauthorized);
    }
    Ok(next.run(request).await)
}

/// The owner a request acts for, from [`OWNER_HEADER`].
pub(crate) struct Owner(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Owner {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Error> {
        let owner = parts
            .headers
            .get(OWNER_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .unwrap_or_default();
        if owner.is_empty() || owner.len() > 256 {
            return Err(Error::bad_request(
                "missing_owner",
                "the X-Mp3conv-Owner header must name the user (1-256 characters)",
            ));
        }
        Ok(Self(owner.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INCOMING: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    /// A router with only the context layer, answering with the headers its handler saw.
    async fn serve() -> String {
        let app = Router::new()
            .route(
                "/seen",
                get(|headers: HeaderMap| async move {
                    let header = |name: &str| {
                        headers
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("-")
                            .to_owned()
                    };
                    format!(
                        "{} {} {}",
                        header("x-request-id"),
                        header("traceparent"),
                        header("tracestate")
                    )
                }),
            )
            .layer(middleware::from_fn(request_context));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/seen", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }

    async fn call(url: &str, headers: &[(&str, &str)]) -> (String, Vec<String>) {
        // The one crypto provider of the build, as `fetch` installs it.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut request = reqwest::Client::new().get(url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.unwrap();
        let id = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        let seen = response.text().await.unwrap();
        (id, seen.split(' ').map(str::to_owned).collect())
    }

    #[tokio::test]
    async fn the_callers_id_and_trace_are_kept_and_the_worker_names_its_span() {
        let url = serve().await;
        let (id, seen) = call(
            &url,
            &[
                ("x-request-id", "req-7"),
                ("traceparent", INCOMING),
                ("tracestate", "vendor=1"),
            ],
        )
        .await;
        assert_eq!(id, "req-7");
        assert_eq!(seen[0], "req-7");
        let passed_on = TraceParent::parse(&seen[1]).unwrap();
        assert_eq!(
            passed_on.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_ne!(seen[1], INCOMING, "the worker's own span is the parent now");
        assert_eq!(seen[2], "vendor=1");
    }

    #[tokio::test]
    async fn bad_ids_and_traces_are_replaced() {
        let url = serve().await;
        let (id, seen) = call(
            &url,
            &[
                ("x-request-id", "no spaces allowed"),
                ("traceparent", &INCOMING.to_uppercase()),
                ("tracestate", "vendor=1"),
            ],
        )
        .await;
        assert!(
            trace::is_valid_request_id(&id) && id != "no spaces allowed",
            "{id}"
        );
        assert_eq!(seen[0], id);
        let started = TraceParent::parse(&seen[1]).unwrap();
        assert_ne!(
            started.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(seen[2], "-", "a new trace carries no old tracestate");
        let (other, again) = call(&url, &[]).await;
        assert_ne!(other, id);
        assert_ne!(
            TraceParent::parse(&again[1]).unwrap().trace_id(),
            started.trace_id()
        );
    }
}
