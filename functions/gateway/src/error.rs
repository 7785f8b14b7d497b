//! Every way a request can fail, and the one place each becomes HTTP ([`ApiError::reply`]):
//! 4xx with the contract's [`ErrorBody`] (naming the request field at fault when one is), 5xx
//! opaque to the client and logged with the request's trace id ([`ApiError::logged_reply`]).

use mp3conv_contract::error::ErrorBody;
use mp3conv_contract::options::{BadJson, OptionError};
use mp3conv_kit::Trace;
use mp3conv_kit::http::{ErrorKind, HttpError, keep_headers};
use mp3conv_kit::reply::{BodyError, Reply};

/// Seconds a client should wait before retrying when the worker is unreachable.
pub const RETRY_AFTER_SECS: u32 = 5;

/// Every way a request can fail, mapped to HTTP in [`ApiError::reply`] and nowhere else.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiError {
    NotFound,
    /// A job that does not exist, is malformed, or belongs to someone else.
    JobNotFound,
    NotificationNotFound,
    WebhookNotFound,
    /// A preset the caller has not saved (or a name no preset can have).
    PresetNotFound,
    /// A track a job does not have (a number that names none).
    TrackNotFound,
    MethodNotAllowed(&'static str),
    /// No usable bearer token or ticket; the code says which (`missing_token`,
    /// `invalid_token`, `unknown_user`, `invalid_ticket`).
    Unauthorized(&'static str),
    /// `POST /login` without HTTP Basic credentials.
    BasicRequired,
    BadRequest {
        code: &'static str,
        message: String,
    },
    /// A conversion option refused (400, naming the field): its value, a field that is no
    /// option, one given twice, too long, or an unknown preset.
    Option(OptionError),
    /// The request conflicts with what is stored (409): `preset_exists`, `too_many_presets`.
    Conflict {
        code: &'static str,
        message: String,
    },
    BodyTooLarge {
        limit: u64,
    },
    UnsupportedMediaType(&'static str),
    /// An event stream asked for without `Accept: text/event-stream`.
    NotAcceptable,
    /// The worker (or auth) could not be reached or is overloaded.
    WorkerUnavailable,
    /// An error the worker or auth answered, passed on as it is (4xx, and the worker's 503
    /// `too_many_streams`).
    Upstream {
        status: u16,
        body: Vec<u8>,
        headers: Vec<(String, String)>,
    },
    /// A configuration or upstream failure: logged, opaque to the client.
    Internal(String),
}

impl ApiError {
    /// A 400 with a stable `code`.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::BadRequest {
            code,
            message: message.into(),
        }
    }

    /// The answer, logging an internal error's cause under the request's trace id first.
    pub fn logged_reply(&self, trace: &Trace) -> Reply {
        if let ApiError::Internal(cause) = self {
            eprintln!("gateway: trace {}: internal error: {cause}", trace.log_id());
        }
        self.reply()
    }

    /// The HTTP answer: status, JSON error body and the headers the status calls for.
    pub fn reply(&self) -> Reply {
        let (status, code, message) = match self {
            ApiError::NotFound => (404, "not_found", "no such route".to_owned()),
            ApiError::JobNotFound => (404, "not_found", "no such job".to_owned()),
            ApiError::NotificationNotFound => (404, "not_found", "no such notification".to_owned()),
            ApiError::WebhookNotFound => (404, "not_found", "no webhook is set".to_owned()),
            ApiError::PresetNotFound => (404, "not_found", "no such preset".to_owned()),
            ApiError::TrackNotFound => (404, "not_found", "no such track".to_owned()),
            ApiError::MethodNotAllowed(allow) => {
                (405, "method_not_allowed", format!("use {allow}"))
            }
            ApiError::Unauthorized(code) => (401, *code, unauthorized_message(code).to_owned()),
            ApiError::BasicRequired => (
                401,
                "missing_credentials",
                "send HTTP Basic credentials (email:password)".to_owned(),
            ),
            ApiError::BadRequest { code, message } => (400, *code, message.clone()),
            ApiError::Option(err) => {
                let body = ErrorBody::new(err.code, err.message.clone()).with_field(&err.field);
                return Reply::json(400, &body);
            }
            ApiError::Conflict { code, message } => (409, *code, message.clone()),
            ApiError::BodyTooLarge { limit } => (
                413,
                "body_too_large",
                format!("this route accepts at most {limit} bytes"),
            ),
            ApiError::UnsupportedMediaType(expected) => {
                (415, "unsupported_media_type", format!("send {expected}"))
            }
            ApiError::NotAcceptable => (
                406,
                "not_acceptable",
                "this route is an event stream: send Accept: text/event-stream".to_owned(),
            ),
            ApiError::WorkerUnavailable => (
                503,
                "unavailable",
                "the conversion service is unavailable; try again shortly".to_owned(),
            ),
            ApiError::Upstream {
                status,
                body,
                headers,
            } => {
                let mut reply = Reply::bytes(*status, "application/json", body.clone());
                reply.headers.extend(headers.iter().cloned());
                return reply;
            }
            ApiError::Internal(_) => (
                500,
                "internal",
                "something went wrong on our side".to_owned(),
            ),
        };
        let reply = Reply::json(status, &ErrorBody::new(code, message));
        match self {
            ApiError::MethodNotAllowed(allow) => reply.with_header("allow", *allow),
            ApiError::Unauthorized(code) => reply.with_header(
                "www-authenticate",
                if *code == "missing_token" {
                    r#"Bearer realm="mp3conv""#
                } else {
                    r#"Bearer realm="mp3conv", error="invalid_token""#
                },
            ),
            ApiError::BasicRequired => {
                reply.with_header("www-authenticate", r#"Basic realm="mp3conv""#)
            }
            ApiError::WorkerUnavailable => {
                reply.with_header("retry-after", RETRY_AFTER_SECS.to_string())
            }
            _ => reply,
        }
    }
}

fn unauthorized_message(code: &str) -> &'static str {
    match code {
        "missing_token" => "send Authorization: Bearer <token> (from POST /login)",
        "unknown_user" => "the account of this token no longer exists",
        "invalid_ticket" => "the ticket is unknown, used or expired; get a new one",
        _ => "the token is malformed, expired or not ours",
    }
}

impl From<OptionError> for ApiError {
    fn from(err: OptionError) -> ApiError {
        ApiError::Option(err)
    }
}

impl From<BadJson> for ApiError {
    fn from(err: BadJson) -> ApiError {
        match err {
            BadJson::Option(err) => ApiError::Option(err),
            BadJson::Json(message) => ApiError::bad_request("invalid_json", message),
        }
    }
}

impl From<BodyError> for ApiError {
    fn from(err: BodyError) -> ApiError {
        match err {
            BodyError::TooLarge { limit } => ApiError::BodyTooLarge { limit },
            BodyError::Unreadable => {
                ApiError::bad_request("body_read", "the request body could not be read")
            }
        }
    }
}

impl From<HttpError> for ApiError {
    /// A call that got no answer: the peer being down or slow is "unavailable, retry"; a call
    /// our own settings forbid or cannot express is our misconfiguration.
    fn from(err: HttpError) -> ApiError {
        match err.kind {
            ErrorKind::Timeout | ErrorKind::Unreachable | ErrorKind::Failed => {
                ApiError::WorkerUnavailable
            }
            ErrorKind::Denied => ApiError::Internal(format!(
                "outbound request denied (allowed_outbound_hosts): {err}"
            )),
            ErrorKind::TooLarge | ErrorKind::Invalid => ApiError::Internal(err.to_string()),
        }
    }
}

/// What an error answer from the worker becomes. Client errors keep their status, JSON body
/// and `Content-Range`/`Retry-After`, and so does the worker's 503 `too_many_streams` (it is at
/// its limit of event streams: a client should wait, as `Retry-After` says); the worker
/// refusing our service token is our misconfiguration; the rest means the service is
/// unavailable. A 404 is "no such job" unless the worker names another reason: `no_such_track`
/// is the public "no such track", `no_tracks` (the job was not split) is passed on.
pub fn upstream_error(status: u16, headers: &[(String, Vec<u8>)], body: Vec<u8>) -> ApiError {
    let error = serde_json::from_slice::<ErrorBody>(&body).ok();
    let is_json_error = error.is_some();
    let code = error.map(|e| e.error.code).unwrap_or_default();
    let too_many_streams = code == "too_many_streams";
    let other_absence = is_json_error && code != "not_found";
    let no_such_track = code == "no_such_track";
    match status {
        503 if too_many_streams => ApiError::Upstream {
            status,
            body,
            headers: keep_headers(headers, &["retry-after"]),
        },
        401 | 403 => ApiError::Internal(format!(
            "the upstream refused our credentials ({status}): check worker_token"
        )),
        404 if !other_absence => ApiError::JobNotFound,
        404 if no_such_track => ApiError::TrackNotFound,
        400..=499 if is_json_error => ApiError::Upstream {
            status,
            body,
            headers: keep_headers(headers, &["content-range", "retry-after"]),
        },
        400..=499 => ApiError::Internal(format!("upstream answered {status} without a JSON error")),
        _ => ApiError::WorkerUnavailable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn body(reply: &Reply) -> Value {
        serde_json::from_slice(&reply.body).unwrap()
    }

    #[test]
    fn errors_are_json_with_their_headers() {
        let reply = ApiError::Unauthorized("invalid_token").reply();
        assert_eq!(reply.status, 401);
        assert_eq!(body(&reply)["error"]["code"], "invalid_token");
        assert!(
            reply
                .headers
                .iter()
                .any(|(n, v)| n == "www-authenticate" && v.starts_with("Bearer"))
        );
        let reply = ApiError::WorkerUnavailable.reply();
        assert_eq!(reply.status, 503);
        assert!(
            reply
                .headers
                .iter()
                .any(|(n, v)| n == "retry-after" && v == "5")
        );
        let reply = ApiError::MethodNotAllowed("GET, POST").reply();
        assert_eq!(reply.status, 405);
        assert!(
            reply
                .headers
                .contains(&("allow".into(), "GET, POST".into()))
        );
        let reply = ApiError::Internal("secret cause".into()).reply();
        assert_eq!(reply.status, 500);
        assert!(!String::from_utf8_lossy(&reply.body).contains("secret"));
    }

    #[test]
    fn upstream_errors_keep_client_errors_only() {
        let json = br#"{"error":{"code":"not_ready","message":"m"}}"#.to_vec();
        let headers = vec![
            ("Retry-After".to_owned(), b"3".to_vec()),
            ("x-internal".to_owned(), b"no".to_vec()),
        ];
        let passed = upstream_error(409, &headers, json.clone());
        assert_eq!(
            passed,
            ApiError::Upstream {
                status: 409,
                body: json.clone(),
                headers: vec![("retry-after".into(), "3".into())],
            }
        );
        assert_eq!(passed.reply().status, 409);
        assert_eq!(upstream_error(404, &[], vec![]), ApiError::JobNotFound);
        let missing = br#"{"error":{"code":"not_found","message":"no such job"}}"#.to_vec();
        assert_eq!(upstream_error(404, &[], missing), ApiError::JobNotFound);
        let track = br#"{"error":{"code":"no_such_track","message":"m"}}"#.to_vec();
        assert_eq!(upstream_error(404, &[], track), ApiError::TrackNotFound);
        let unsplit = br#"{"error":{"code":"no_tracks","message":"m"}}"#.to_vec();
        assert_eq!(
            upstream_error(404, &[], unsplit.clone()),
            ApiError::Upstream {
                status: 404,
                body: unsplit,
                headers: vec![],
            }
        );
        assert_eq!(
            upstream_error(500, &[], json.clone()),
            ApiError::WorkerUnavailable
        );
        assert_eq!(upstream_error(503, &[], json), ApiError::WorkerUnavailable);
        let streams = br#"{"error":{"code":"too_many_streams","message":"m"}}"#.to_vec();
        assert_eq!(
            upstream_error(503, &headers, streams.clone()),
            ApiError::Upstream {
                status: 503,
                body: streams,
                headers: vec![("retry-after".into(), "3".into())],
            }
        );
        assert!(matches!(
            upstream_error(401, &[], vec![]),
            ApiError::Internal(_)
        ));
        assert!(matches!(
            upstream_error(400, &[], b"not json".to_vec()),
            ApiError::Internal(_)
        ));
    }

    #[test]
    fn option_errors_name_their_field() {
        let err = ApiError::from(OptionError::unknown_preset("talks"));
        let reply = err.reply();
        assert_eq!(reply.status, 400);
        assert_eq!(
            body(&reply),
            serde_json::json!({"error": {
                "code": "unknown_preset",
                "message": "you have no preset named `talks`",
                "field": "preset"
            }})
        );
        let reply = ApiError::Conflict {
            code: "preset_exists",
            message: "m".into(),
        }
        .reply();
        assert_eq!(reply.status, 409);
        assert_eq!(body(&reply)["error"]["code"], "preset_exists");
        assert!(body(&reply)["error"].get("field").is_none());
    }

    #[test]
    fn failed_calls_are_unavailable_unless_ours_to_fix() {
        let err = |kind| ApiError::from(HttpError::new(kind, "http://w", "d"));
        assert_eq!(err(ErrorKind::Unreachable), ApiError::WorkerUnavailable);
        assert_eq!(err(ErrorKind::Timeout), ApiError::WorkerUnavailable);
        assert!(
            matches!(err(ErrorKind::Denied), ApiError::Internal(m) if m.contains("allowed_outbound_hosts"))
        );
        assert_eq!(
            ApiError::from(BodyError::TooLarge { limit: 3 }),
            ApiError::BodyTooLarge { limit: 3 }
        );
    }
}
