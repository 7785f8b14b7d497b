//! The host's errors: start-up errors (the host does not start) and request errors (one
//! request fails, the host lives on), the latter mapped to HTTP in exactly one place.

use std::path::PathBuf;

use bytes::Bytes;
use http::{HeaderValue, StatusCode};

/// Why the host refused to start. Every variant names the file or field at fault.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot read manifest {}: {source}", path.display())]
    ReadManifest {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid manifest: {0}")]
    Manifest(String),
    #[error("invalid manifest: `{field}` {message}")]
    Invalid { field: String, message: String },
    #[error("required variable `{field}` has no value: set {env}")]
    MissingVariable { field: String, env: String },
    #[error("component `{component}`: {message}")]
    Component { component: String, message: String },
    #[error("{} {source}", path.display())]
    InFile {
        path: PathBuf,
        source: Box<StartupError>,
    },
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl StartupError {
    /// Prefixes the error with the manifest file it came from.
    pub fn in_file(self, path: &std::path::Path) -> StartupError {
        StartupError::InFile {
            path: path.to_owned(),
            source: Box::new(self),
        }
    }
}

/// Why one request failed inside the host.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("no route matches this path")]
    NoRoute,
    #[error("the host is at its limit of {0} concurrent requests")]
    Overloaded(usize),
    #[error("the component `{0}` went past its time limit: {1:?} without progress, or of CPU time")]
    Timeout(String, std::time::Duration),
    #[error("the request body stalled: no data for {0:?}")]
    BodyStalled(std::time::Duration),
    #[error("this client already has {0} requests in flight")]
    TooManyFromClient(usize),
    #[error("the host is at its limit of {0} open event streams")]
    TooManyStreams(usize),
    #[error("this client already has {0} event streams open")]
    TooManyStreamsFromClient(usize),
    #[error("the component `{component}` failed: {cause:#}")]
    Component {
        component: String,
        cause: anyhow::Error,
    },
    #[error("the request is malformed: {0}")]
    BadRequest(String),
    #[error("the host is shutting down")]
    ShuttingDown,
}

impl RequestError {
    pub fn status(&self) -> StatusCode {
        match self {
            RequestError::NoRoute => StatusCode::NOT_FOUND,
            RequestError::Overloaded(_)
            | RequestError::TooManyStreams(_)
            | RequestError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            RequestError::Timeout(..) => StatusCode::GATEWAY_TIMEOUT,
            RequestError::BodyStalled(_) => StatusCode::REQUEST_TIMEOUT,
            RequestError::TooManyFromClient(_) | RequestError::TooManyStreamsFromClient(_) => {
                StatusCode::TOO_MANY_REQUESTS
            }
            RequestError::Component { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            RequestError::BadRequest(_) => StatusCode::BAD_REQUEST,
        }
    }

    /// A stable machine-readable code for the JSON body.
    pub fn code(&self) -> &'static str {
        match self {
            RequestError::NoRoute => "not_found",
            RequestError::Overloaded(_) => "overloaded",
            RequestError::ShuttingDown => "shutting_down",
            RequestError::Timeout(..) => "timeout",
            RequestError::BodyStalled(_) => "body_timeout",
            RequestError::TooManyFromClient(_) => "too_many_requests",
            RequestError::TooManyStreams(_) | RequestError::TooManyStreamsFromClient(_) => {
                "too_many_streams"
            }
            RequestError::Component { .. } => "component_failed",
            RequestError::BadRequest(_) => "bad_request",
        }
    }

    /// The response the client sees: `{"error":{"code","message"}}`. Component failures stay
    /// opaque to the client; their cause is logged by the caller.
    pub fn to_response(&self, request_id: &str) -> http::Response<Bytes> {
        let message = match self {
            RequestError::Component { component, .. } => {
                format!("the component `{component}` failed while handling the request")
            }
            other => other.to_string(),
        };
        let body = serde_json::json!({
            "error": { "code": self.code(), "message": message, "request_id": request_id }
        });
        let mut response = http::Response::new(Bytes::from(body.to_string()));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        // As the functions' answers (mp3conv_kit::reply::SAFE_DEFAULTS): never sniffed.
        headers.insert(
            http::header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        if let Some(seconds) = self.retry_after() {
            headers.insert(http::header::RETRY_AFTER, HeaderValue::from_static(seconds));
        }
        response
    }

    /// Seconds a client should wait before trying again, for the answers worth a retry. A
    /// stream slot frees when a stream ends (minutes apart), an ordinary one in moments.
    fn retry_after(&self) -> Option<&'static str> {
        match self {
            RequestError::Overloaded(_)
            | RequestError::ShuttingDown
            | RequestError::TooManyFromClient(_) => Some("1"),
            RequestError::TooManyStreams(_) | RequestError::TooManyStreamsFromClient(_) => {
                Some("5")
            }
            _ => None,
        }
    }
}
