//! The gateway's decisions, in plain Rust: which route a request is, who the caller is, what
//! the inputs mean, what the worker's answers become, and every error as HTTP (in
//! [`ApiError::reply`] and nowhere else). The component does the I/O around them.
//!
//! Routes (documented in full in `openapi.yaml`, served at `GET /openapi.yaml`):
//!
//! | route | success |
//! |---|---|
//! | `POST /login` (HTTP Basic) | 200, the token as `text/plain` |
//! | `POST /upload` (multipart, exactly one file) | 200 the job |
//! | `GET /download?fid=<id>` | 200/206 the MP3 |
//! | `POST /v1/jobs` (multipart `file` [+ `bitrate` before it], or JSON `{"url","bitrate"}`) | 202 the job, `Location` |
//! | `GET /v1/jobs?limit=&cursor=` | 200 `{"jobs","next_cursor"}` |
//! | `GET /v1/jobs/{id}`, `DELETE /v1/jobs/{id}` | 200 the job, 204 |
//! | `GET /v1/jobs/{id}/audio` | 200/206 the MP3 |
//! | `GET /v1/me`, `DELETE /v1/me` | 200 the caller, 204 (account and jobs gone) |
//! | `GET /v1/notifications?unread=&limit=&cursor=` | 200 `{"notifications","next_cursor"}` |
//! | `POST /v1/notifications/{id}/read` | 204 |
//! | `PUT /v1/me/webhook {"url"}`, `GET`, `DELETE` | 200 with the secret (once), 200, 204 |

use mp3conv_tokens::{Claims, Verifier};
use serde::Deserialize;
use serde_json::{Value, json};

/// Largest JSON body read (a link request).
pub const MAX_JSON_BYTES: usize = 64 * 1024;
/// A refused body up to this size is read to its end before the error is sent, so the
/// client sees the error; a larger one is cut off.
pub const MAX_DRAIN_BYTES: usize = 64 << 20;
/// Longest link or webhook URL accepted, in bytes.
pub const MAX_URL_BYTES: usize = 2048;
/// Largest non-file multipart field read (`bitrate`).
pub const MAX_TEXT_FIELD_BYTES: usize = 64;
/// Default and largest page sizes of `GET /v1/jobs`.
pub const DEFAULT_PAGE: u32 = 20;
pub const MAX_PAGE: u32 = 100;
/// Seconds a client should wait before retrying when the worker is unreachable.
pub const RETRY_AFTER_SECS: u32 = 5;

/// A route, with what its path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Root,
    OpenApi,
    Login,
    Upload,
    Download,
    CreateJob,
    ListJobs,
    GetJob(String),
    DeleteJob(String),
    Audio(String),
    Me,
    DeleteMe,
    ListNotifications,
    ReadNotification(String),
    GetWebhook,
    PutWebhook,
    DeleteWebhook,
}

impl Route {
    /// Whether the route needs a verified bearer token.
    pub fn needs_caller(&self) -> bool {
        !matches!(self, Route::Root | Route::OpenApi | Route::Login)
    }
}

/// Matches a request to its route: 404 for unknown paths, 405 (with `Allow`) for known paths
/// and other methods.
pub fn route(method: &str, path: &str) -> Result<Route, ApiError> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let method = if method == "HEAD" { "GET" } else { method };
    let allow = |allowed: &'static str| ApiError::MethodNotAllowed(allowed);
    match (segments.as_slice(), method) {
        ([""], "GET") => Ok(Route::Root),
        ([""], _) => Err(allow("GET")),
        (["openapi.yaml"], "GET") => Ok(Route::OpenApi),
        (["openapi.yaml"], _) => Err(allow("GET")),
        (["login"], "POST") => Ok(Route::Login),
        (["login"], _) => Err(allow("POST")),
        (["upload"], "POST") => Ok(Route::Upload),
        (["upload"], _) => Err(allow("POST")),
        (["download"], "GET") => Ok(Route::Download),
        (["download"], _) => Err(allow("GET")),
        (["v1", "jobs"], "POST") => Ok(Route::CreateJob),
        (["v1", "jobs"], "GET") => Ok(Route::ListJobs),
        (["v1", "jobs"], _) => Err(allow("GET, POST")),
        (["v1", "jobs", id], "GET") => Ok(Route::GetJob(job_id(id)?)),
        (["v1", "jobs", id], "DELETE") => Ok(Route::DeleteJob(job_id(id)?)),
        (["v1", "jobs", _], _) => Err(allow("GET, DELETE")),
        (["v1", "jobs", id, "audio"], "GET") => Ok(Route::Audio(job_id(id)?)),
        (["v1", "jobs", _, "audio"], _) => Err(allow("GET")),
        (["v1", "me"], "GET") => Ok(Route::Me),
        (["v1", "me"], "DELETE") => Ok(Route::DeleteMe),
        (["v1", "me"], _) => Err(allow("GET, DELETE")),
        (["v1", "me", "webhook"], "GET") => Ok(Route::GetWebhook),
        (["v1", "me", "webhook"], "PUT") => Ok(Route::PutWebhook),
        (["v1", "me", "webhook"], "DELETE") => Ok(Route::DeleteWebhook),
        (["v1", "me", "webhook"], _) => Err(allow("GET, PUT, DELETE")),
        (["v1", "notifications"], "GET") => Ok(Route::ListNotifications),
        (["v1", "notifications"], _) => Err(allow("GET")),
        (["v1", "notifications", id, "read"], "POST") => Ok(Route::ReadNotification(
            job_id(id).map_err(|_| ApiError::NotificationNotFound)?,
        )),
        (["v1", "notifications", _, "read"], _) => Err(allow("POST")),
        _ => Err(ApiError::NotFound),
    }
}

/// A job id as the worker makes them (a hyphenated UUID). Anything else names no job: 404,
/// exactly like a job that does not exist or is someone else's.
pub fn job_id(text: &str) -> Result<String, ApiError> {
    let bytes = text.as_bytes();
    let well_formed = bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        });
    if well_formed {
        Ok(text.to_ascii_lowercase())
    } else {
        Err(ApiError::JobNotFound)
    }
}

/// The verified caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub id: String,
    pub email: String,
    pub token_expires_at: u64,
}

/// Verifies the bearer token of `authorization`. Whether its user still exists is the
/// component's second check.
pub fn authenticate(authorization: Option<&str>, verifier: &Verifier) -> Result<Caller, ApiError> {
    let value = authorization.ok_or(ApiError::Unauthorized("missing_token"))?;
    let token = value
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|token| !token.is_empty())
        .ok_or(ApiError::Unauthorized("missing_token"))?;
    let Claims {
        sub, email, exp, ..
    } = verifier
        .verify(token)
        .map_err(|_| ApiError::Unauthorized("invalid_token"))?;
    Ok(Caller {
        id: sub,
        email,
        token_expires_at: exp,
    })
}

/// `email:password` of an HTTP Basic header, checked only for shape (auth checks the rest).
pub fn basic_credentials(authorization: Option<&str>) -> Result<String, ApiError> {
    use base64::Engine as _;
    authorization
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
        .and_then(|(_, encoded)| {
            base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .ok()
        })
        .and_then(|decoded| String::from_utf8(decoded).ok())
        .filter(|pair| pair.contains(':'))
        .map(|_| authorization.unwrap_or_default().trim().to_owned())
        .ok_or(ApiError::BasicRequired)
}

/// The query string's parameters, percent-decoded.
pub fn query_params(query: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// `?limit=` of a listing: 1 to [`MAX_PAGE`], [`DEFAULT_PAGE`] when absent.
fn page_limit(params: &[(String, String)]) -> Result<u32, ApiError> {
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

/// `?limit=&cursor=` of `GET /v1/jobs`, checked, as the worker's query string.
pub fn list_query(query: &str) -> Result<String, ApiError> {
    let params = query_params(query);
    if let Some((name, _)) = params.iter().find(|(k, _)| k != "limit" && k != "cursor") {
        return Err(ApiError::bad_request(
            "unknown_parameter",
            format!("`{name}` is not a parameter of this route; use limit and cursor"),
        ));
    }
    let limit = page_limit(&params)?;
    let mut worker = form_urlencoded::Serializer::new(String::new());
    worker.append_pair("limit", &limit.to_string());
    if let Some(cursor) = param(&params, "cursor") {
        let cursor = job_id(cursor).map_err(|_| {
            ApiError::bad_request("invalid_cursor", "the cursor is not one we gave out")
        })?;
        worker.append_pair("cursor", &cursor);
    }
    Ok(worker.finish())
}

/// `fid` of `GET /download` (the original system's name): the audio id or the job id, which
/// are the same.
pub fn download_id(query: &str) -> Result<String, ApiError> {
    let params = query_params(query);
    let fid = param(&params, "fid")
        .ok_or_else(|| ApiError::bad_request("missing_fid", "give the file id as ?fid="))?;
    job_id(fid.trim())
}

/// `?bitrate=` of an upload, if given.
pub fn bitrate_param(query: &str) -> Result<Option<String>, ApiError> {
    param(&query_params(query), "bitrate")
        .map(checked_bitrate)
        .transpose()
}

/// A bitrate the worker accepts: 128, 192, 256, 320 (kbit/s) or v0..v9 (VBR quality).
pub fn checked_bitrate(text: &str) -> Result<String, ApiError> {
    let text = text.trim().to_ascii_lowercase();
    let ok = matches!(text.as_str(), "128" | "192" | "256" | "320")
        || (text.len() == 2 && text.starts_with('v') && text.as_bytes()[1].is_ascii_digit());
    if ok {
        Ok(text)
    } else {
        Err(ApiError::bad_request(
            "invalid_bitrate",
            "bitrate must be 128, 192, 256, 320 or v0..v9",
        ))
    }
}

/// What a request body is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyKind {
    Multipart { boundary: String },
    Json,
}

/// The kind of a job-creating body from its `Content-Type`: multipart (both routes) or JSON
/// (`POST /v1/jobs` only); anything else is 415.
pub fn body_kind(content_type: Option<&str>, json_allowed: bool) -> Result<BodyKind, ApiError> {
    let expected = if json_allowed {
        "multipart/form-data or application/json"
    } else {
        "multipart/form-data"
    };
    let content_type = content_type.ok_or(ApiError::UnsupportedMediaType(expected))?;
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "multipart/form-data" => multer::parse_boundary(content_type)
            .map(|boundary| BodyKind::Multipart { boundary })
            .map_err(|_| {
                ApiError::bad_request(
                    "invalid_multipart",
                    "multipart/form-data needs a boundary parameter",
                )
            }),
        "application/json" if json_allowed => Ok(BodyKind::Json),
        _ => Err(ApiError::UnsupportedMediaType(expected)),
    }
}

/// `POST /v1/jobs` with a JSON body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LinkBody {
    url: String,
    #[serde(default)]
    bitrate: Option<Value>,
}

/// A JSON body of a known shape: 400 `unknown_field` for a field the route does not take,
/// 400 `invalid_json` for anything else wrong.
fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|err| {
        let message = err.to_string();
        if message.starts_with("unknown field") {
            ApiError::bad_request("unknown_field", message)
        } else {
            ApiError::bad_request("invalid_json", message)
        }
    })
}

/// A checked link request, as the worker's JSON body; `query_bitrate` (`?bitrate=`, checked)
/// applies when the body names none.
pub fn link_request(body: &[u8], query_bitrate: Option<&str>) -> Result<Value, ApiError> {
    let link: LinkBody = json_body(body)?;
    let url = link.url.trim();
    // Read as HTTP clients read URLs (WHATWG), as the worker does: an absolute http(s) URL
    // with a host. Whether that host may be reached is the worker's decision.
    let parsed = (url.len() <= MAX_URL_BYTES && !url.chars().any(char::is_whitespace))
        .then(|| url::Url::parse(url).ok())
        .flatten()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
    if parsed.is_none() {
        return Err(ApiError::bad_request(
            "invalid_url",
            "url must be an http:// or https:// link (at most 2048 bytes)",
        ));
    }
    let bitrate = match link.bitrate {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(checked_bitrate(&s)?),
        Some(Value::Number(n)) => Some(checked_bitrate(&n.to_string())?),
        Some(_) => return Err(checked_bitrate("").unwrap_err()),
    }
    .or(query_bitrate.map(str::to_owned));
    let mut request = json!({ "url": url });
    if let Some(bitrate) = bitrate {
        request["bitrate"] = Value::String(bitrate);
    }
    Ok(request)
}

/// An uploaded file's name made safe to keep: no path, no control characters, bounded.
pub fn clean_filename(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = base.chars().filter(|c| !c.is_control()).take(200).collect();
    let cleaned = cleaned.trim();
    if cleaned.is_empty() || cleaned == "." || cleaned == ".." {
        "video".to_owned()
    } else {
        cleaned.to_owned()
    }
}

/// The `Content-Type` an upload is sent to the worker with. The gateway decides it, not the
/// client: the worker reads `application/json` as a link request, so a file part declared as
/// JSON must still arrive as a file. A declared `video/*` or `audio/*` type is kept (its
/// essence, for the job's record); anything else is `application/octet-stream`.
pub fn upload_content_type(declared: Option<&str>) -> String {
    let essence = declared
        .and_then(|t| t.split(';').next())
        .map(|t| t.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let token = |part: &str| {
        !part.is_empty()
            && part.len() <= 100
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    match essence.split_once('/') {
        Some((kind @ ("video" | "audio"), subtype)) if token(subtype) => {
            format!("{kind}/{subtype}")
        }
        _ => "application/octet-stream".to_owned(),
    }
}

/// The worker's query for an upload.
pub fn upload_query(filename: &str, bitrate: Option<&str>) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    query.append_pair("filename", filename);
    if let Some(bitrate) = bitrate {
        query.append_pair("bitrate", bitrate);
    }
    query.finish()
}

/// A job as users see it: the worker's record without its internal fields.
pub fn public_job(job: &Value) -> Value {
    let mut public = serde_json::Map::new();
    for field in [
        "id",
        "status",
        "progress",
        "source",
        "bitrate",
        "audio",
        "error",
        "created_at",
        "updated_at",
    ] {
        if let Some(value) = job.get(field) {
            public.insert(field.to_owned(), value.clone());
        }
    }
    Value::Object(public)
}

/// A page of the worker's jobs as users see it.
pub fn public_page(page: &Value) -> Value {
    let jobs: Vec<Value> = page
        .get("jobs")
        .and_then(Value::as_array)
        .map(|jobs| jobs.iter().map(public_job).collect())
        .unwrap_or_default();
    json!({ "jobs": jobs, "next_cursor": page.get("next_cursor").cloned().unwrap_or(Value::Null) })
}

/// `Content-Disposition` for a job's MP3: the original name with `.mp3`, as a plain ASCII
/// fallback and as RFC 8187 UTF-8.
pub fn content_disposition(job: &Value) -> String {
    let source = job.get("source");
    let name = source
        .and_then(|s| s.get("filename"))
        .and_then(Value::as_str)
        .or_else(|| {
            source
                .and_then(|s| s.get("url"))
                .and_then(Value::as_str)
                .and_then(|url| url.split(['?', '#']).next())
                .and_then(|url| url.rsplit('/').find(|s| !s.is_empty()))
        })
        .unwrap_or("audio");
    let stem = match name.rsplit_once('.') {
        Some((stem, _)) if !stem.is_empty() => stem,
        _ => name,
    };
    let file = format!("{}.mp3", clean_filename(stem));
    let ascii: String = file
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded = percent_encoding::utf8_percent_encode(&file, percent_encoding::NON_ALPHANUMERIC);
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

/// `?unread=&limit=&cursor=` of `GET /v1/notifications`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationsQuery {
    pub unread: bool,
    pub limit: u32,
    /// `(created_at, id)` of the previous page's last notification.
    pub cursor: Option<(i64, String)>,
}

/// Parses and checks `GET /v1/notifications`'s query.
pub fn notifications_query(query: &str) -> Result<NotificationsQuery, ApiError> {
    let params = query_params(query);
    if let Some((name, _)) = params
        .iter()
        .find(|(k, _)| !["unread", "limit", "cursor"].contains(&k.as_str()))
    {
        return Err(ApiError::bad_request(
            "unknown_parameter",
            format!("`{name}` is not a parameter of this route; use unread, limit and cursor"),
        ));
    }
    let unread = match param(&params, "unread") {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_unread",
                "unread must be true or false",
            ));
        }
    };
    let limit = page_limit(&params)?;
    let cursor = param(&params, "cursor")
        .map(|text| {
            text.split_once('.')
                .and_then(|(at, id)| Some((at.parse::<i64>().ok()?, job_id(id).ok()?)))
                .ok_or_else(|| {
                    ApiError::bad_request("invalid_cursor", "the cursor is not one we gave out")
                })
        })
        .transpose()?;
    Ok(NotificationsQuery {
        unread,
        limit,
        cursor,
    })
}

/// A notification as users see it.
pub fn public_notification(n: &mp3conv_sql::notifications::Notification) -> Value {
    json!({
        "id": n.id,
        "job_id": n.job_id,
        "status": n.status,
        "title": n.title,
        "message": n.message,
        "audio_url": n.audio_url,
        "error_code": n.error_code,
        "created_at": rfc3339(n.created_at),
        "read": n.read_at.is_some(),
    })
}

/// A page of notifications, with the cursor of the next one when the page is full.
pub fn notification_page(page: &[mp3conv_sql::notifications::Notification], limit: u32) -> Value {
    let next = (page.len() == limit as usize)
        .then(|| page.last().map(|n| format!("{}.{}", n.created_at, n.id)))
        .flatten();
    json!({
        "notifications": page.iter().map(public_notification).collect::<Vec<_>>(),
        "next_cursor": next,
    })
}

/// Unix milliseconds as RFC 3339 (UTC, milliseconds).
pub fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        ms.rem_euclid(1000)
    )
}

/// `PUT /v1/me/webhook`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookBody {
    url: String,
}

/// The endpoint of a webhook registration, checked and normalised: https (http only when local
/// delivery is allowed by `webhook_allow_local`), no credentials, and a host that is public
/// unless local delivery is allowed.
///
/// The URL is read with the WHATWG rules HTTP clients use, so every spelling of an address
/// (`0x7f000001`, `2130706433`, `127.1`, `0177.0.0.1`, `%31%32%37.0.0.1`, full-width digits)
/// is judged as the address it is, and the normalised URL is what is kept: the notifier calls
/// exactly what was checked here. (A name can resolve anywhere later; delivery checks the
/// resolved address again.)
pub fn webhook_url(body: &[u8], allow_local: bool) -> Result<String, ApiError> {
    let request: WebhookBody = json_body(body)?;
    let invalid = |why: &str| ApiError::bad_request("invalid_webhook_url", why.to_owned());
    let text = request.url.trim();
    let too_long = || invalid("the URL is longer than 2048 bytes");
    if text.len() > MAX_URL_BYTES {
        return Err(too_long());
    }
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid("the URL has spaces or control characters"));
    }
    let url = url::Url::parse(text).map_err(|_| invalid("the URL is not a valid absolute URL"))?;
    if url.as_str().len() > MAX_URL_BYTES {
        return Err(too_long());
    }
    match url.scheme() {
        "https" => {}
        "http" if allow_local => {}
        _ => return Err(invalid("the URL must be https://")),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("the URL must not carry credentials"));
    }
    let local = match url.host() {
        None => return Err(invalid("the URL has no host")),
        Some(url::Host::Domain(name)) => mp3conv_contract::address::is_local_name(name),
        Some(url::Host::Ipv4(ip)) => !mp3conv_contract::address::is_public(ip.into()),
        Some(url::Host::Ipv6(ip)) => !mp3conv_contract::address::is_public(ip.into()),
    };
    if local && !allow_local {
        return Err(ApiError::bad_request(
            "webhook_forbidden",
            "webhooks must go to a public address: not loopback, private, link-local, \
             multicast, reserved or metadata addresses",
        ));
    }
    Ok(url.into())
}

/// `GET /v1/me`.
pub fn me(caller: &Caller) -> Reply {
    Reply::json(
        200,
        &json!({
            "id": caller.id,
            "email": caller.email,
            "token_expires_at": caller.token_expires_at,
        }),
    )
}

/// `GET /`.
pub fn root() -> Reply {
    Reply::json(
        200,
        &json!({
            "service": "mp3conv",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Turns videos into MP3 files.",
            "api": "/openapi.yaml",
        }),
    )
}

/// A complete response, independent of the HTTP library that carries it.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(status: u16, value: &Value) -> Reply {
        Reply {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: value.to_string().into_bytes(),
        }
    }

    pub fn empty(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Reply {
        self.headers.push((name.to_owned(), value.into()));
        self
    }
}

/// Every way a request can fail, mapped to HTTP in [`ApiError::reply`] and nowhere else.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiError {
    NotFound,
    /// A job that does not exist, is malformed, or belongs to someone else.
    JobNotFound,
    NotificationNotFound,
    WebhookNotFound,
    MethodNotAllowed(&'static str),
    /// No usable bearer token; the code says which (`missing_token`, `invalid_token`,
    /// `unknown_user`).
    Unauthorized(&'static str),
    /// `POST /login` without HTTP Basic credentials.
    BasicRequired,
    BadRequest {
        code: &'static str,
        message: String,
    },
    BodyTooLarge {
        limit: u64,
    },
    UnsupportedMediaType(&'static str),
    /// The worker could not be reached or is overloaded.
    WorkerUnavailable,
    /// An error the worker or auth answered, passed on as it is (4xx only).
    Upstream {
        status: u16,
        body: Vec<u8>,
        headers: Vec<(String, String)>,
    },
    /// A configuration or upstream failure: logged, opaque to the client.
    Internal(String),
}

impl ApiError {
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::BadRequest {
            code,
            message: message.into(),
        }
    }

    pub fn reply(&self) -> Reply {
        let (status, code, message) = match self {
            ApiError::NotFound => (404, "not_found", "no such route".to_owned()),
            ApiError::JobNotFound => (404, "not_found", "no such job".to_owned()),
            ApiError::NotificationNotFound => (404, "not_found", "no such notification".to_owned()),
            ApiError::WebhookNotFound => (404, "not_found", "no webhook is set".to_owned()),
            ApiError::MethodNotAllowed(allow) => {
                (405, "method_not_allowed", format!("use {allow}"))
            }
            ApiError::Unauthorized(code) => (
                401,
                *code,
                match *code {
                    "missing_token" => "send Authorization: Bearer <token> (from POST /login)",
                    "unknown_user" => "the account of this token no longer exists",
                    _ => "the token is malformed, expired or not ours",
                }
                .to_owned(),
            ),
            ApiError::BasicRequired => (
                401,
                "missing_credentials",
                "send HTTP Basic credentials (email:password)".to_owned(),
            ),
            ApiError::BadRequest { code, message } => (400, *code, message.clone()),
            ApiError::BodyTooLarge { limit } => (
                413,
                "body_too_large",
                format!("this route accepts at most {limit} bytes"),
            ),
            ApiError::UnsupportedMediaType(expected) => {
                (415, "unsupported_media_type", format!("send {expected}"))
            }
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
                let mut reply = Reply::json(*status, &Value::Null);
                reply.body = body.clone();
                reply.headers.extend(headers.iter().cloned());
                return reply;
            }
            ApiError::Internal(_) => (
                500,
                "internal",
                "something went wrong on our side".to_owned(),
            ),
        };
        let reply = Reply::json(
            status,
            &json!({ "error": { "code": code, "message": message } }),
        );
        match self {
            ApiError::MethodNotAllowed(allow) => reply.with_header("allow", *allow),
            ApiError::Unauthorized(code) => reply.with_header(
                "www-authenticate",
                if *code == "missing_token" {
                    r#"Bearer realm="mp3conv""#.to_owned()
                } else {
                    r#"Bearer realm="mp3conv", error="invalid_token""#.to_owned()
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

/// What an error answer from the worker (or auth) becomes. Client errors keep their status
/// and JSON body; the worker refusing our service token is our misconfiguration; the rest
/// means the service is unavailable.
pub fn upstream_error(status: u16, body: Vec<u8>, headers: Vec<(String, String)>) -> ApiError {
    let is_json_error = serde_json::from_slice::<Value>(&body)
        .ok()
        .is_some_and(|v| v["error"]["code"].is_string());
    match status {
        401 | 403 => ApiError::Internal(format!(
            "the upstream refused our credentials ({status}): check worker_token"
        )),
        404 => ApiError::JobNotFound,
        400..=499 if is_json_error => ApiError::Upstream {
            status,
            body,
            headers,
        },
        400..=499 => ApiError::Internal(format!("upstream answered {status} without a JSON error")),
        _ => ApiError::WorkerUnavailable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(reply: &Reply) -> Value {
        serde_json::from_slice(&reply.body).unwrap()
    }

    #[test]
    fn routes() {
        let id = "0192f1a4-7c2b-7d3e-8f00-123456789abc";
        for (method, path, expected) in [
            ("GET", "/", Ok(Route::Root)),
            ("HEAD", "/", Ok(Route::Root)),
            ("POST", "/login", Ok(Route::Login)),
            ("POST", "/upload", Ok(Route::Upload)),
            ("GET", "/download", Ok(Route::Download)),
            ("POST", "/v1/jobs", Ok(Route::CreateJob)),
            ("GET", "/v1/jobs", Ok(Route::ListJobs)),
            (
                "GET",
                &format!("/v1/jobs/{}", id.to_uppercase()),
                Ok(Route::GetJob(id.into())),
            ),
            (
                "DELETE",
                &format!("/v1/jobs/{id}"),
                Ok(Route::DeleteJob(id.into())),
            ),
            (
                "GET",
                &format!("/v1/jobs/{id}/audio"),
                Ok(Route::Audio(id.into())),
            ),
            ("GET", "/v1/me", Ok(Route::Me)),
            ("GET", "/v1/jobs/nope", Err(ApiError::JobNotFound)),
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
    fn notification_queries() {
        assert_eq!(
            notifications_query("").unwrap(),
            NotificationsQuery {
                unread: false,
                limit: 20,
                cursor: None
            }
        );
        let id = "0192f1a4-7c2b-7d3e-8f00-123456789abc";
        assert_eq!(
            notifications_query(&format!("unread=true&limit=5&cursor=17.{id}")).unwrap(),
            NotificationsQuery {
                unread: true,
                limit: 5,
                cursor: Some((17, id.to_owned()))
            }
        );
        for bad in [
            "unread=yes",
            "limit=0",
            "cursor=17",
            "cursor=x.y",
            "sort=asc",
        ] {
            assert!(notifications_query(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_795_852_800_123), "2026-11-28T08:00:00.123Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn webhook_urls() {
        let url = |u: &str| format!(r#"{{"url":"{u}"}}"#).into_bytes();
        assert_eq!(
            webhook_url(&url("https://hooks.example.com/in?x=1"), false).unwrap(),
            "https://hooks.example.com/in?x=1"
        );
        for (bad, code) in [
            ("http://hooks.example.com/in", "invalid_webhook_url"),
            ("ftp://hooks.example.com", "invalid_webhook_url"),
            ("https://user:pw@hooks.example.com", "invalid_webhook_url"),
            ("https://127.0.0.1:8080/x", "webhook_forbidden"),
            ("https://10.0.0.8/x", "webhook_forbidden"),
            ("https://169.254.169.254/latest", "webhook_forbidden"),
            ("https://[::1]/x", "webhook_forbidden"),
            ("https://[::ffff:192.168.0.1]/x", "webhook_forbidden"),
            ("https://localhost/x", "webhook_forbidden"),
            ("https://metadata.google.internal/x", "webhook_forbidden"),
            // Every spelling of an address is the address (WHATWG host parsing).
            ("https://0x7f000001/", "webhook_forbidden"),
            ("https://2130706433/", "webhook_forbidden"),
            ("https://127.1/", "webhook_forbidden"),
            ("https://0177.0.0.1/", "webhook_forbidden"),
            ("https://0/", "webhook_forbidden"),
            ("https://%31%32%37.0.0.1/", "webhook_forbidden"),
            (
                "https://\u{ff11}\u{ff12}\u{ff17}.0.0.1/",
                "webhook_forbidden",
            ),
            ("https://127.0.0.1./", "webhook_forbidden"),
            ("https://LOCALHOST./x", "webhook_forbidden"),
            ("https://metadata/x", "webhook_forbidden"),
            ("https://[::ffff:7f00:1]/", "webhook_forbidden"),
            ("https://[64:ff9b::7f00:1]/", "webhook_forbidden"),
            ("https://224.0.0.1/", "webhook_forbidden"),
            ("https://240.0.0.1/", "webhook_forbidden"),
            ("https://example.com@127.0.0.1/", "invalid_webhook_url"),
            ("https://", "invalid_webhook_url"),
            ("https://exa mple.com/", "invalid_webhook_url"),
            ("/relative", "invalid_webhook_url"),
            ("", "invalid_webhook_url"),
        ] {
            match webhook_url(&url(bad), false) {
                Err(ApiError::BadRequest { code: c, .. }) => assert_eq!(c, code, "{bad}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
        assert!(webhook_url(&url("http://127.0.0.1:9000/hook"), true).is_ok());
        // What is kept is the address that was checked, not the spelling.
        assert_eq!(
            webhook_url(&url("https://0x5db8d822/in"), false).unwrap(),
            "https://93.184.216.34/in"
        );
        assert_eq!(
            webhook_url(&url("HTTPS://Hooks.Example.COM"), false).unwrap(),
            "https://hooks.example.com/"
        );
        assert!(matches!(
            webhook_url(br#"{"url":"https://a.example","secret":"x"}"#, false),
            Err(ApiError::BadRequest {
                code: "unknown_field",
                ..
            })
        ));
    }

    #[test]
    fn list_queries_are_checked() {
        assert_eq!(list_query("").unwrap(), "limit=20");
        assert_eq!(
            list_query("limit=5&cursor=0192F1A4-7C2B-7D3E-8F00-123456789ABC").unwrap(),
            "limit=5&cursor=0192f1a4-7c2b-7d3e-8f00-123456789abc"
        );
        for (query, code) in [
            ("limit=-1", "invalid_limit"),
            ("limit=0", "invalid_limit"),
            ("limit=101", "invalid_limit"),
            ("limit=ten", "invalid_limit"),
            ("cursor=bogus", "invalid_cursor"),
            ("owner=someone", "unknown_parameter"),
        ] {
            match list_query(query) {
                Err(ApiError::BadRequest { code: c, .. }) => assert_eq!(c, code, "{query}"),
                other => panic!("{query}: {other:?}"),
            }
        }
    }

    #[test]
    fn link_requests_are_checked() {
        let ok = link_request(
            br#"{"url":" https://example.com/v.mp4 ","bitrate":320}"#,
            Some("v2"),
        )
        .unwrap();
        assert_eq!(
            ok,
            json!({"url":"https://example.com/v.mp4","bitrate":"320"})
        );
        assert_eq!(
            link_request(br#"{"url":"https://example.com/v.mp4"}"#, Some("v2")).unwrap(),
            json!({"url":"https://example.com/v.mp4","bitrate":"v2"})
        );
        for (body, code) in [
            (&br#"{"url":"file:///etc/passwd"}"#[..], "invalid_url"),
            (br#"{"url":"ftp://x/y"}"#, "invalid_url"),
            (br#"{"url":"http://"}"#, "invalid_url"),
            // Non-ASCII first (this once sliced a string inside a character and panicked).
            (
                "{\"url\":\"\u{a7}\u{a7}\u{a7}\u{a7}\"}".as_bytes(),
                "invalid_url",
            ),
            (r#"{"url":"\u00a7https://x"}"#.as_bytes(), "invalid_url"),
            (br#"{"url":""}"#, "invalid_url"),
            (br#"{"url":"https://exa mple.com/v.mp4"}"#, "invalid_url"),
            (br#"{"url":"https://x","extra":1}"#, "unknown_field"),
            (br#"{"url":"https://x","bitrate":"999"}"#, "invalid_bitrate"),
            (br#"{"url":"https://x","bitrate":[1]}"#, "invalid_bitrate"),
            (br#"{"bitrate":"128"}"#, "invalid_json"),
            (b"not json", "invalid_json"),
        ] {
            match link_request(body, None) {
                Err(ApiError::BadRequest { code: c, .. }) => {
                    assert_eq!(c, code, "{}", String::from_utf8_lossy(body))
                }
                other => panic!("{}: {other:?}", String::from_utf8_lossy(body)),
            }
        }
    }

    #[test]
    fn body_kinds() {
        assert_eq!(
            body_kind(Some("multipart/form-data; boundary=abc"), false),
            Ok(BodyKind::Multipart {
                boundary: "abc".into()
            })
        );
        assert_eq!(
            body_kind(Some("Application/JSON; charset=utf-8"), true),
            Ok(BodyKind::Json)
        );
        assert!(matches!(
            body_kind(Some("application/json"), false),
            Err(ApiError::UnsupportedMediaType(_))
        ));
        assert!(matches!(
            body_kind(Some("text/plain"), true),
            Err(ApiError::UnsupportedMediaType(_))
        ));
        assert!(matches!(
            body_kind(None, true),
            Err(ApiError::UnsupportedMediaType(_))
        ));
        assert!(matches!(
            body_kind(Some("multipart/form-data"), true),
            Err(ApiError::BadRequest {
                code: "invalid_multipart",
                ..
            })
        ));
    }

    #[test]
    fn uploads_are_files_whatever_the_part_declares() {
        for (declared, sent) in [
            (Some("video/mp4"), "video/mp4"),
            (Some("Video/MP4; codecs=avc1"), "video/mp4"),
            (Some("audio/x-wav"), "audio/x-wav"),
            (Some("application/json"), "application/octet-stream"),
            (
                Some("application/json; charset=utf-8"),
                "application/octet-stream",
            ),
            (Some("video/"), "application/octet-stream"),
            (
                Some("video/mp4\r\nx-mp3conv-owner: someone"),
                "application/octet-stream",
            ),
            (Some("text/plain"), "application/octet-stream"),
            (None, "application/octet-stream"),
        ] {
            assert_eq!(upload_content_type(declared), sent, "{declared:?}");
        }
    }

    #[test]
    fn filenames_and_dispositions() {
        assert_eq!(clean_filename("../../etc/passwd"), "passwd");
        assert_eq!(clean_filename("C:\\videos\\a.mp4"), "a.mp4");
        assert_eq!(clean_filename("..\u{0}"), "video");
        let job = json!({"source": {"kind": "upload", "filename": "Café \"live\".mp4"}});
        assert_eq!(
            content_disposition(&job),
            "attachment; filename=\"Caf_ _live_.mp3\"; filename*=UTF-8''Caf%C3%A9%20%22live%22%2Emp3"
        );
        let link = json!({"source": {"kind": "link", "url": "https://x.test/a/talk.webm?x=1"}});
        assert!(content_disposition(&link).starts_with("attachment; filename=\"talk.mp3\""));
    }

    #[test]
    fn public_jobs_hide_internal_fields() {
        let job = json!({"id":"j","owner":"u","status":"done","video_id":"v","attempts":1,"announced":true,"progress":100});
        assert_eq!(
            public_job(&job),
            json!({"id":"j","status":"done","progress":100})
        );
    }

    #[test]
    fn basic_credentials_are_required_for_login() {
        assert!(basic_credentials(Some("Basic YTpi")).is_ok());
        for bad in [
            None,
            Some("Bearer x"),
            Some("Basic !!!"),
            Some("Basic YWI="),
        ] {
            assert_eq!(
                basic_credentials(bad),
                Err(ApiError::BasicRequired),
                "{bad:?}"
            );
        }
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
        assert!(reply.headers.iter().any(|(n, _)| n == "retry-after"));
        assert_eq!(
            upstream_error(
                409,
                br#"{"error":{"code":"not_ready","message":"m"}}"#.to_vec(),
                vec![]
            )
            .reply()
            .status,
            409
        );
        assert_eq!(upstream_error(404, vec![], vec![]), ApiError::JobNotFound);
        assert_eq!(
            upstream_error(500, vec![], vec![]),
            ApiError::WorkerUnavailable
        );
        assert!(matches!(
            upstream_error(401, vec![], vec![]),
            ApiError::Internal(_)
        ));
    }
}
