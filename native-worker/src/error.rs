//! The worker's one error type, and the one place it becomes an HTTP response.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mp3conv_contract::error::ErrorBody;
use mp3conv_contract::options::{BadJson, OptionError};

/// `Retry-After` (seconds) of a `too_many_streams` answer.
const STREAM_RETRY_AFTER: &str = "5";

/// A boxed cause, kept for the logs.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong in the worker.
///
/// Client mistakes map to documented 4xx codes with the body
/// `{"error": {"code": "...", "message": "..."}}` (plus `"field"` naming a refused option);
/// backend trouble maps to an opaque 503 or 500
/// whose cause chain is logged, never sent.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// 401 `unauthorized`: the internal service token is missing or wrong.
    #[error("missing or invalid internal service token")]
    Unauthorized,
    /// 400 with a stable `code`: the request is malformed.
    #[error("{message}")]
    BadRequest {
        /// Stable machine-readable code.
        code: &'static str,
        /// Human-readable explanation.
        message: String,
    },
    /// 400 with the option's code (`invalid_option`, `invalid_bitrate`, `unknown_field`, ...)
    /// and `field` naming it.
    #[error("{0}")]
    Option(#[from] OptionError),
    /// 404 `not_found`: no such job, or it belongs to another owner.
    #[error("job not found")]
    NotFound,
    /// 404 `no_such_track`: the job has no track with that number (the gateway tells it
    /// from a missing job by this code).
    #[error("the job has no track {0}")]
    NoSuchTrack(String),
    /// 404 `no_tracks`: the job was not split by chapters.
    #[error("the job was not split into tracks (split=chapters)")]
    NoTracks,
    /// 409 `not_ready`: the job has no audio (yet).
    #[error("the job has no audio: it is {0}")]
    NotReady(&'static str),
    /// 410 `audio_expired`: the job's MP3 expired and was removed.
    #[error("the MP3 expired and was removed; convert the video again")]
    Expired,
    /// 422 `idempotency_key_reused`: the key was used within a day for another request.
    #[error(
        "this Idempotency-Key was used in the last 24 hours for another request (job {job}); send a new key with a new request"
    )]
    KeyReused {
        /// The job the key names.
        job: crate::job::JobId,
    },
    /// 409 `idempotency_key_in_use`: the key's job changed while this request was made.
    #[error("another request with this Idempotency-Key is being made; try again")]
    KeyInUse,
    /// 409 `not_held`: the job was not uploaded with `hold=true`, or was started already.
    #[error("the job is not waiting to be started")]
    NotHeld,
    /// 409 `too_large_for_zip`: the tracks together pass what a ZIP without ZIP64 holds.
    #[error(
        "the tracks together ({size} bytes with the archive's framing) are too large for one ZIP; download them one by one"
    )]
    TooLargeForZip {
        /// Size the archive would have.
        size: u64,
    },
    /// 413 `too_large`: the upload or download passed the size limit.
    #[error("the video exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The configured limit in bytes.
        limit: u64,
    },
    /// 429 (a rate: concurrent jobs, jobs per hour; with `Retry-After`) or 413 (a size:
    /// storage, one upload) `quota_exceeded`, naming the `limit`.
    #[error("{message}")]
    Quota {
        /// Which.
        limit: mp3conv_contract::quota::Limit,
        /// What was asked, what is allowed.
        message: String,
        /// Seconds until a retry can succeed, for a rate.
        retry_after: Option<u64>,
    },
    /// 416 `range_not_satisfiable`.
    #[error("the requested range is outside the {size}-byte file")]
    RangeNotSatisfiable {
        /// Size of the whole file.
        size: u64,
    },
    /// 429 (`per_user`) or 503 `too_many_streams`, with `Retry-After`: this process holds as
    /// many event streams as it may, for the user or in all.
    #[error("too many open event streams {}; try again later", if *per_user { "for this user" } else { "on this server" })]
    TooManyStreams {
        /// Whether the user's own limit was reached (else the process's).
        per_user: bool,
    },
    /// 503: a backend (database, blob store, broker) is unreachable or failing.
    #[error("{what} unavailable")]
    Unavailable {
        /// Which backend.
        what: &'static str,
        /// Why.
        #[source]
        source: BoxError,
    },
    /// 500: a bug or an unexpected state.
    #[error("internal error: {0}")]
    Internal(#[source] BoxError),
}

impl Error {
    /// A 400 with the given code.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::BadRequest {
            code,
            message: message.into(),
        }
    }

    /// A backend failure.
    pub fn unavailable(what: &'static str, source: impl Into<BoxError>) -> Self {
        Self::Unavailable {
            what,
            source: source.into(),
        }
    }

    /// An unexpected failure.
    pub fn internal(source: impl Into<BoxError>) -> Self {
        Self::Internal(source.into())
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::BadRequest { code, .. } => (StatusCode::BAD_REQUEST, code),
            Self::Option(e) => (StatusCode::BAD_REQUEST, e.code),
            Self::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            Self::NoSuchTrack(_) => (StatusCode::NOT_FOUND, "no_such_track"),
            Self::NoTracks => (StatusCode::NOT_FOUND, "no_tracks"),
            Self::NotReady(_) => (StatusCode::CONFLICT, "not_ready"),
            Self::NotHeld => (StatusCode::CONFLICT, "not_held"),
            Self::Expired => (StatusCode::GONE, "audio_expired"),
            Self::KeyReused { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused"),
            Self::KeyInUse => (StatusCode::CONFLICT, "idempotency_key_in_use"),
            Self::TooLargeForZip { .. } => (StatusCode::CONFLICT, "too_large_for_zip"),
            Self::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            Self::Quota { limit, .. } => {
                use mp3conv_contract::quota::Limit;
                let status = match limit {
                    Limit::ConcurrentJobs | Limit::JobsPerHour => StatusCode::TOO_MANY_REQUESTS,
                    Limit::StorageBytes | Limit::MaxUploadBytes => StatusCode::PAYLOAD_TOO_LARGE,
                    Limit::MaxDurationSecs => StatusCode::UNPROCESSABLE_ENTITY,
                };
                (status, "quota_exceeded")
            }
            Self::RangeNotSatisfiable { .. } => {
                (StatusCode::RANGE_NOT_SATISFIABLE, "range_not_satisfiable")
            }
            Self::TooManyStreams { per_user: true } => {
                (StatusCode::TOO_MANY_REQUESTS, "too_many_streams")
            }
            Self::TooManyStreams { per_user: false } => {
                (StatusCode::SERVICE_UNAVAILABLE, "too_many_streams")
            }
            Self::Unavailable { .. } => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl From<BadJson> for Error {
    fn from(err: BadJson) -> Self {
        match err {
            BadJson::Option(err) => Self::Option(err),
            BadJson::Json(message) => Self::bad_request("invalid_json", message),
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let message = if status.is_server_error() && !matches!(self, Self::TooManyStreams { .. }) {
            tracing::error!(error = %error_chain(&self), "request failed");
            match status {
                StatusCode::SERVICE_UNAVAILABLE => "a backend is unavailable; try again later",
                _ => "internal error",
            }
            .to_owned()
        } else {
            self.to_string()
        };
        let mut body = ErrorBody::new(code, message);
        if let Self::Option(e) = &self {
            body = body.with_field(e.field.clone());
        }
        if let Self::Quota { limit, .. } = &self {
            body = body.with_limit(*limit);
        }
        let mut response = (status, Json(body)).into_response();
        if let Self::RangeNotSatisfiable { size } = self
            && let Ok(value) = HeaderValue::from_str(&format!("bytes */{size}"))
        {
            response.headers_mut().insert(header::CONTENT_RANGE, value);
        }
        if let Self::Quota {
            retry_after: Some(seconds),
            ..
        } = self
        {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if let Self::TooManyStreams { .. } = self {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_static(STREAM_RETRY_AFTER),
            );
        }
        response
    }
}

/// Formats an error with all its causes, for logs.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}
