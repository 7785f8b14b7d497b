//! Notifications as users read them (`GET /v1/notifications`).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::job::{JobId, Status};

/// One notification: a job of the user's finished.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    pub id: String,
    pub job_id: JobId,
    /// `done` or `failed`.
    pub status: Status,
    /// The file's name.
    pub title: String,
    pub message: String,
    /// Where the MP3 is (`/v1/jobs/{id}/audio`), when done.
    pub audio_url: Option<String>,
    /// Why it failed, when failed.
    pub error_code: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    pub read: bool,
}

/// A page of notifications, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationPage {
    pub notifications: Vec<Notification>,
    /// Pass as `?cursor=` for the next page; `None` on the last.
    pub next_cursor: Option<String>,
}

/// A user's webhook registration (`GET`/`PUT /v1/me/webhook`): the signing secret only in the
/// answer that made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Webhook {
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}
