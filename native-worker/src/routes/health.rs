//! Liveness, readiness and metrics.

use std::sync::Arc;

use axum::Json;
use axum::extract::State as AxumState;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde_json::json;

use crate::State;
use crate::error::error_chain;

pub(super) async fn live() -> impl IntoResponse {
    Json(json!({"status": "live"}))
}

/// 200 when the job store, both blob stores and the queue answer; 503 naming the failing ones.
pub(super) async fn ready(AxumState(state): AxumState<Arc<State>>) -> impl IntoResponse {
    let (jobs, videos, mp3s, queue) = tokio::join!(
        state.jobs.check(),
        state.videos.check(),
        state.mp3s.check(),
        state.queue.check(),
    );
    let mut failing = Vec::new();
    for (name, result) in [
        ("jobs", jobs),
        ("videos", videos),
        ("mp3s", mp3s),
        ("queue", queue),
    ] {
        if let Err(e) = result {
            tracing::warn!(dependency = name, error = %error_chain(&e), "not ready");
            failing.push(name);
        }
    }
    if failing.is_empty() {
        (StatusCode::OK, Json(json!({"status": "ready"})))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not_ready", "failing": failing})),
        )
    }
}

pub(super) async fn metrics(AxumState(state): AxumState<Arc<State>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
}
