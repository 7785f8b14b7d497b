//! Which route a request is, and the query-string helpers the routes share.
//!
//! Routes (documented in full in `openapi.yaml`, served at `GET /openapi.yaml`):
//!
//! | route | success |
//! |---|---|
//! | `POST /login` (HTTP Basic) | 200, the token as `text/plain` |
//! | `POST /upload` (multipart, exactly one file) | 200 the job |
//! | `GET /download?fid=<id>` | 200/206 the MP3 |
//! | `POST /v1/jobs` (multipart `file` + options, or JSON `{"url", ...options}`; options in the query too) | 202 the job, `Location` |
//! | `GET /v1/jobs?limit=&cursor=` | 200 `{"jobs","next_cursor"}` |
//! | `GET /v1/jobs/{id}`, `DELETE /v1/jobs/{id}` | 200 the job, 204 |
//! | `GET /v1/jobs/{id}/audio`, `GET /v1/jobs/{id}/tracks/{n}` | 200/206 the MP3 |
//! | `GET /v1/jobs/{id}/tracks.zip` | 200 every track's MP3 in one ZIP |
//! | `GET /v1/presets`, `POST /v1/presets {"name","options"}` | 200 `{"presets"}`, 201 the preset |
//! | `GET`, `PUT {"options"}`, `DELETE /v1/presets/{name}` | 200, 201/200, 204 |
//! | `GET /v1/me`, `DELETE /v1/me` | 200 the caller and their quota, 204 (account and jobs gone) |
//! | `POST /v1/logout` | 204 (this token is refused from now on) |
//! | `GET /v1/notifications?unread=&limit=&cursor=` | 200 `{"notifications","next_cursor"}` |
//! | `POST /v1/notifications/{id}/read` | 204 |
//! | `PUT /v1/me/webhook {"url"}`, `GET`, `DELETE` | 200 with the secret (once), 200, 204 |
//! | `GET /v1/events`, `GET /v1/jobs/{id}/events` (Bearer or `?ticket=`) | 200 `text/event-stream` |
//! | `POST /v1/events/ticket` | 201 `{"ticket","expires_at"}` |

use mp3conv_contract::job::{DEFAULT_PAGE, JobId, MAX_PAGE};

use crate::audio::track_number;
use crate::error::ApiError;
use crate::upstream::Download;

/// A route, with what its path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    OpenApi,
    Login,
    /// A route that needs a verified caller.
    Caller(CallerRoute),
    /// An event stream: a caller verified by bearer token or by ticket.
    Events(EventsRoute),
}

/// Which event stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventsRoute {
    /// `GET /v1/events`: every event of the caller's.
    All,
    /// `GET /v1/jobs/{id}/events`: one job's, until it ends.
    Job(JobId),
}

/// A route that needs a verified caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallerRoute {
    Upload,
    Download,
    CreateJob,
    ListJobs,
    GetJob(JobId),
    DeleteJob(JobId),
    /// The MP3 (`/audio`), a track (`/tracks/{n}`) or the tracks' ZIP (`/tracks.zip`).
    JobFile(JobId, Download),
    Me,
    DeleteMe,
    /// `POST /v1/logout`: signs the caller's token out.
    Logout,
    ListNotifications,
    /// A notification id (a UUID, lower-case).
    ReadNotification(String),
    GetWebhook,
    PutWebhook,
    DeleteWebhook,
    /// `POST /v1/events/ticket`.
    EventTicket,
    ListPresets,
    CreatePreset,
    /// A preset's name, percent-decoded from the path (checked by [`crate::presets`]).
    GetPreset(String),
    PutPreset(String),
    DeletePreset(String),
}

/// Matches a request to its route: 404 for unknown paths, 405 (with `Allow`) for known paths
/// and other methods.
pub fn route(method: &str, path: &str) -> Result<Route, ApiError> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let method = if method == "HEAD" { "GET" } else { method };
    let allow = |allowed: &'static str| ApiError::MethodNotAllowed(allowed);
    use CallerRoute as C;
    let caller = |route: CallerRoute| Ok(Route::Caller(route));
    match (segments.as_slice(), method) {
        (["openapi.yaml"], "GET") => Ok(Route::OpenApi),
        (["openapi.yaml"], _) => Err(allow("GET")),
        (["login"], "POST") => Ok(Route::Login),
        (["login"], _) => Err(allow("POST")),
        (["upload"], "POST") => caller(C::Upload),
        (["upload"], _) => Err(allow("POST")),
        (["download"], "GET") => caller(C::Download),
        (["download"], _) => Err(allow("GET")),
        (["v1", "jobs"], "POST") => caller(C::CreateJob),
        (["v1", "jobs"], "GET") => caller(C::ListJobs),
        (["v1", "jobs"], _) => Err(allow("GET, POST")),
        (["v1", "jobs", id], "GET") => caller(C::GetJob(job_id(id)?)),
        (["v1", "jobs", id], "DELETE") => caller(C::DeleteJob(job_id(id)?)),
        (["v1", "jobs", _], _) => Err(allow("GET, DELETE")),
        (["v1", "jobs", id, "audio"], "GET") => caller(C::JobFile(job_id(id)?, Download::Audio)),
        (["v1", "jobs", _, "audio"], _) => Err(allow("GET")),
        (["v1", "jobs", id, "tracks.zip"], "GET") => {
            caller(C::JobFile(job_id(id)?, Download::Tracks))
        }
        (["v1", "jobs", _, "tracks.zip"], _) => Err(allow("GET")),
        (["v1", "jobs", id, "tracks", n], "GET") => {
            caller(C::JobFile(job_id(id)?, Download::Track(track_number(n)?)))
        }
        (["v1", "jobs", _, "tracks", _], _) => Err(allow("GET")),
        (["v1", "presets"], "GET") => caller(C::ListPresets),
        (["v1", "presets"], "POST") => caller(C::CreatePreset),
        (["v1", "presets"], _) => Err(allow("GET, POST")),
        (["v1", "presets", name], "GET") => caller(C::GetPreset(preset_segment(name)?)),
        (["v1", "presets", name], "PUT") => caller(C::PutPreset(preset_segment(name)?)),
        (["v1", "presets", name], "DELETE") => caller(C::DeletePreset(preset_segment(name)?)),
        (["v1", "presets", _], _) => Err(allow("GET, PUT, DELETE")),
        (["v1", "jobs", id, "events"], "GET") => Ok(Route::Events(EventsRoute::Job(job_id(id)?))),
        (["v1", "jobs", _, "events"], _) => Err(allow("GET")),
        (["v1", "events"], "GET") => Ok(Route::Events(EventsRoute::All)),
        (["v1", "events"], _) => Err(allow("GET")),
        (["v1", "events", "ticket"], "POST") => caller(C::EventTicket),
        (["v1", "events", "ticket"], _) => Err(allow("POST")),
        (["v1", "me"], "GET") => caller(C::Me),
        (["v1", "me"], "DELETE") => caller(C::DeleteMe),
        (["v1", "me"], _) => Err(allow("GET, DELETE")),
        (["v1", "logout"], "POST") => caller(C::Logout),
        (["v1", "logout"], _) => Err(allow("POST")),
        (["v1", "me", "webhook"], "GET") => caller(C::GetWebhook),
        (["v1", "me", "webhook"], "PUT") => caller(C::PutWebhook),
        (["v1", "me", "webhook"], "DELETE") => caller(C::DeleteWebhook),
        (["v1", "me", "webhook"], _) => Err(allow("GET, PUT, DELETE")),
        (["v1", "notifications"], "GET") => caller(C::ListNotifications),
        (["v1", "notifications"], _) => Err(allow("GET")),
        (["v1", "notifications", id, "read"], "POST") => caller(C::ReadNotification(
            uuid_text(id).ok_or(ApiError::NotificationNotFound)?,
        )),
        (["v1", "notifications", _, "read"], _) => Err(allow("POST")),
        _ => Err(ApiError::NotFound),
    }
}

/// A job id as the worker makes them. Anything else names no job: 404, exactly like a job that
/// does not exist or is someone else's.
pub fn job_id(text: &str) -> Result<JobId, ApiError> {
    text.parse().map_err(|_| ApiError::JobNotFound)
}

/// A preset's name from its path segment, percent-decoded (`my%20talks`); a segment that is
/// no UTF-8 names no preset.
pub fn preset_segment(segment: &str) -> Result<String, ApiError> {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8()
        .map(|name| name.into_owned())
        .map_err(|_| ApiError::PresetNotFound)
}

/// A hyphenated UUID (a notification's id), lower-cased; `None` for anything else.
pub fn uuid_text(text: &str) -> Option<String> {
    // Job ids and notification ids have the same shape.
    text.parse::<JobId>().ok().map(|id| id.to_string())
}

/// The query string's parameters, percent-decoded.
pub fn query_params(query: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// The first value of the parameter `name`.
pub fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// 400 `unknown_parameter` for the first parameter not in `known`.
pub fn only_params(params: &[(String, String)], known: &[&str]) -> Result<(), ApiError> {
    match params.iter().find(|(k, _)| !known.contains(&k.as_str())) {
        Some((name, _)) => Err(ApiError::bad_request(
            "unknown_parameter",
            format!(
                "`{name}` is not a parameter of this route; use {}",
                known.join(", ")
            ),
        )),
        None => Ok(()),
    }
}

/// `?limit=` of a listing: 1 to [`MAX_PAGE`], [`DEFAULT_PAGE`] when absent.
pub fn page_limit(params: &[(String, String)]) -> Result<u32, ApiError> {
    let Some(text) = param(params, "limit") else {
        return Ok(DEFAULT_PAGE);
    };
    text.parse::<u32>()
        .ok()
        .filter(|n| (1..=MAX_PAGE).contains(n))
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_limit",
                format!("limit must be a whole number from 1 to {MAX_PAGE}"),
            )
        })
}

/// 400 `invalid_cursor`.
pub fn invalid_cursor() -> ApiError {
    ApiError::bad_request("invalid_cursor", "the cursor is not one we gave out")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let id = "0192f1a4-7c2b-7d3e-8f00-123456789abc";
        let job: JobId = id.parse().unwrap();
        use CallerRoute as C;
        for (method, path, expected) in [
            // `/` is the web app's (functions/web): the gateway never sees it.
            ("GET", "/", Err(ApiError::NotFound)),
            ("GET", "/openapi.yaml", Ok(Route::OpenApi)),
            ("HEAD", "/openapi.yaml", Ok(Route::OpenApi)),
            ("POST", "/login", Ok(Route::Login)),
            ("POST", "/v1/logout", Ok(Route::Caller(C::Logout))),
            ("GET", "/v1/logout", Err(ApiError::MethodNotAllowed("POST"))),
            ("POST", "/upload", Ok(Route::Caller(C::Upload))),
            ("GET", "/download", Ok(Route::Caller(C::Download))),
            ("POST", "/v1/jobs", Ok(Route::Caller(C::CreateJob))),
            ("GET", "/v1/jobs", Ok(Route::Caller(C::ListJobs))),
            (
                "GET",
                &format!("/v1/jobs/{}", id.to_uppercase()),
                Ok(Route::Caller(C::GetJob(job))),
            ),
            (
                "DELETE",
                &format!("/v1/jobs/{id}"),
                Ok(Route::Caller(C::DeleteJob(job))),
            ),
            (
                "GET",
                &format!("/v1/jobs/{id}/audio"),
                Ok(Route::Caller(C::JobFile(job, Download::Audio))),
            ),
            (
                "GET",
                &format!("/v1/jobs/{id}/tracks/12"),
                Ok(Route::Caller(C::JobFile(job, Download::Track(12)))),
            ),
            (
                "GET",
                &format!("/v1/jobs/{id}/tracks/012"),
                Err(ApiError::TrackNotFound),
            ),
            (
                "HEAD",
                &format!("/v1/jobs/{id}/tracks.zip"),
                Ok(Route::Caller(C::JobFile(job, Download::Tracks))),
            ),
            (
                "POST",
                &format!("/v1/jobs/{id}/tracks.zip"),
                Err(ApiError::MethodNotAllowed("GET")),
            ),
            (
                "DELETE",
                &format!("/v1/jobs/{id}/tracks/1"),
                Err(ApiError::MethodNotAllowed("GET")),
            ),
            ("GET", "/v1/presets", Ok(Route::Caller(C::ListPresets))),
            ("POST", "/v1/presets", Ok(Route::Caller(C::CreatePreset))),
            (
                "PUT",
                "/v1/presets",
                Err(ApiError::MethodNotAllowed("GET, POST")),
            ),
            (
                "GET",
                "/v1/presets/my%20talks",
                Ok(Route::Caller(C::GetPreset("my talks".into()))),
            ),
            (
                "PUT",
                "/v1/presets/caf%C3%A9+x",
                Ok(Route::Caller(C::PutPreset("café+x".into()))),
            ),
            (
                "DELETE",
                "/v1/presets/a%2Fb",
                Ok(Route::Caller(C::DeletePreset("a/b".into()))),
            ),
            ("GET", "/v1/presets/%FF", Err(ApiError::PresetNotFound)),
            (
                "POST",
                "/v1/presets/x",
                Err(ApiError::MethodNotAllowed("GET, PUT, DELETE")),
            ),
            ("GET", "/v1/me", Ok(Route::Caller(C::Me))),
            ("GET", "/v1/events", Ok(Route::Events(EventsRoute::All))),
            (
                "GET",
                &format!("/v1/jobs/{id}/events"),
                Ok(Route::Events(EventsRoute::Job(job))),
            ),
            ("GET", "/v1/jobs/nope/events", Err(ApiError::JobNotFound)),
            ("POST", "/v1/events", Err(ApiError::MethodNotAllowed("GET"))),
            (
                "POST",
                "/v1/events/ticket",
                Ok(Route::Caller(C::EventTicket)),
            ),
            (
                "GET",
                "/v1/events/ticket",
                Err(ApiError::MethodNotAllowed("POST")),
            ),
            (
                "POST",
                &format!("/v1/notifications/{}/read", id.to_uppercase()),
                Ok(Route::Caller(C::ReadNotification(id.into()))),
            ),
            (
                "POST",
                "/v1/notifications/nope/read",
                Err(ApiError::NotificationNotFound),
            ),
            ("GET", "/v1/jobs/nope", Err(ApiError::JobNotFound)),
            (
                "GET",
                "/v1/jobs/{0192f1a4-7c2b-7d3e-8f00-123456789abc}",
                Err(ApiError::JobNotFound),
            ),
            ("GET", "/v1/jobs/../../etc", Err(ApiError::NotFound)),
            (
                "PUT",
                "/v1/jobs",
                Err(ApiError::MethodNotAllowed("GET, POST")),
            ),
            ("GET", "/login", Err(ApiError::MethodNotAllowed("POST"))),
            ("GET", "/nope", Err(ApiError::NotFound)),
            ("GET", "/v1/jobs/", Err(ApiError::JobNotFound)),
        ] {
            assert_eq!(route(method, path), expected, "{method} {path}");
        }
    }

    #[test]
    fn page_limits() {
        let limit = |q: &str| page_limit(&query_params(q));
        assert_eq!(limit(""), Ok(DEFAULT_PAGE));
        assert_eq!(limit("limit=100"), Ok(100));
        for bad in ["limit=0", "limit=101", "limit=-1", "limit=ten"] {
            assert!(matches!(
                limit(bad),
                Err(ApiError::BadRequest {
                    code: "invalid_limit",
                    ..
                })
            ));
        }
    }
}
