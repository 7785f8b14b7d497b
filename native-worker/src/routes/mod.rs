//! The internal HTTP API (called by the gateway, never exposed publicly).
//!
//! Every `/internal/...` request carries:
//! - `Authorization: Bearer <internal token>`: the shared service secret (compared in constant
//!   time; 401 `unauthorized` without it);
//! - `X-Mp3conv-Owner: <user id>`: the user the gateway verified (400 `missing_owner` without
//!   it). A job belonging to another owner answers 404, exactly like a missing one.
//!
//! Errors have the body `{"error": {"code": "...", "message": "..."}}`.

mod health;
mod jobs;

use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRequestParts, Request, State as AxumState};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use secrecy::ExposeSecret;
use subtle::ConstantTimeEq;

use crate::State;
use crate::error::Error;

/// Header naming the user a request acts for.
pub const OWNER_HEADER: &str = "x-mp3conv-owner";

/// All routes.
pub(crate) fn router(state: Arc<State>) -> Router {
    let internal = Router::new()
        .route("/internal/jobs", get(jobs::list).post(jobs::create))
        .route("/internal/jobs/{id}", get(jobs::get).delete(jobs::delete))
        .route("/internal/jobs/{id}/audio", get(jobs::audio))
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
                tracing::info_span!(
                    "request",
                    method = %request.method(),
                    path = %request.uri().path(),
                    request_id = %uuid::Uuid::new_v4(),
                )
            }),
        )
        .with_state(state)
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
