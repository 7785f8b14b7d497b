//! `/v1/jobs` and `POST /upload`: listing, reading and deleting a caller's jobs, and creating
//! one from a JSON link or a multipart upload ([`crate::upload`]). Users see the contract's
//! [`PublicJob`], never the worker's full record.

use mp3conv_contract::job::{
    Bitrate, InvalidBitrate, JobId, LinkRequest, PublicJob, PublicJobPage,
};
use mp3conv_kit::reply::{Reply, declared_too_large};

use crate::body::{self, Body};
use crate::error::ApiError;
use crate::routes::{invalid_cursor, only_params, page_limit, param, query_params};
use crate::upload;
use crate::upstream::{JobsQuery, Worker};

/// Largest JSON body read (a link request).
pub const MAX_JSON_BYTES: usize = 64 * 1024;
/// Longest link accepted, in bytes.
pub const MAX_URL_BYTES: usize = 2048;

/// `GET /v1/jobs?limit=&cursor=`.
pub async fn list(worker: &impl Worker, owner: &str, query: &str) -> Result<Reply, ApiError> {
    let page = worker.jobs(owner, list_query(query)?).await?;
    Ok(Reply::json(200, &PublicJobPage::from(page)))
}

/// `GET /v1/jobs/{id}`.
pub async fn get(worker: &impl Worker, owner: &str, id: JobId) -> Result<Reply, ApiError> {
    let job = worker.job(owner, id).await?;
    Ok(Reply::json(200, &PublicJob::from(job)))
}

/// `DELETE /v1/jobs/{id}`.
pub async fn delete(worker: &impl Worker, owner: &str, id: JobId) -> Result<Reply, ApiError> {
    worker.delete_job(owner, id).await?;
    Ok(Reply::empty(204))
}

/// What a job-creating request is: its body, `Content-Type`, `Content-Length` and query.
pub struct Creation<'a, B> {
    pub body: B,
    pub content_type: Option<&'a str>,
    pub content_length: Option<&'a str>,
    pub query: &'a str,
    /// `POST /upload` (the original API) rather than `POST /v1/jobs`.
    pub original: bool,
    /// Largest file accepted, in bytes.
    pub max_upload_bytes: u64,
}

/// `POST /upload` (200 the job) and `POST /v1/jobs` (202 the job, with `Location`).
pub async fn create<B: Body>(
    worker: &impl Worker,
    owner: &str,
    request: Creation<'_, B>,
) -> Result<Reply, ApiError> {
    let original = request.original;
    let job = PublicJob::from(create_job(worker, owner, request).await?);
    if original {
        return Ok(Reply::json(200, &job));
    }
    let location = format!("/v1/jobs/{}", job.id);
    Ok(Reply::json(202, &job).with_header("location", location))
}

async fn create_job<B: Body>(
    worker: &impl Worker,
    owner: &str,
    request: Creation<'_, B>,
) -> Result<mp3conv_contract::job::Job, ApiError> {
    let kind = body_kind(request.content_type, !request.original)?;
    // `?bitrate=` is a v1 parameter, checked whatever the body (the original route has none).
    let bitrate = if request.original {
        None
    } else {
        bitrate_param(request.query)?
    };
    match kind {
        BodyKind::Json => {
            let limit = MAX_JSON_BYTES;
            let body = body::read(request.body, request.content_length, limit).await?;
            let link = link_request(&body, bitrate)?;
            worker.create_link_job(owner, &link).await
        }
        BodyKind::Multipart { boundary } => {
            // Multipart framing adds little; a body far past the limit is refused unread.
            let limit = request.max_upload_bytes;
            if declared_too_large(request.content_length, limit.saturating_add(64 * 1024)) {
                body::drain(request.body).await;
                return Err(ApiError::BodyTooLarge { limit });
            }
            let form = upload::Form {
                boundary,
                bitrate,
                original: request.original,
                limit,
            };
            upload::create(worker, owner, request.body, form).await
        }
    }
}

/// `?limit=&cursor=` of `GET /v1/jobs`, checked.
pub fn list_query(query: &str) -> Result<JobsQuery, ApiError> {
    let params = query_params(query);
    only_params(&params, &["limit", "cursor"])?;
    let cursor = param(&params, "cursor")
        .map(|cursor| cursor.parse::<JobId>().map_err(|_| invalid_cursor()))
        .transpose()?;
    Ok(JobsQuery {
        limit: page_limit(&params)?,
        cursor,
    })
}

/// `?bitrate=` of an upload, if given.
pub fn bitrate_param(query: &str) -> Result<Option<Bitrate>, ApiError> {
    param(&query_params(query), "bitrate")
        .map(checked_bitrate)
        .transpose()
}

/// A bitrate the worker accepts, or 400 `invalid_bitrate`.
pub fn checked_bitrate(text: &str) -> Result<Bitrate, ApiError> {
    text.parse().map_err(invalid_bitrate)
}

fn invalid_bitrate(err: InvalidBitrate) -> ApiError {
    ApiError::bad_request(InvalidBitrate::CODE, err.to_string())
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
    match essence(content_type).as_str() {
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

/// A media type without its parameters, lower-cased.
pub fn essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// A checked link request; `query_bitrate` (`?bitrate=`, checked) applies when the body names
/// none.
pub fn link_request(body: &[u8], query_bitrate: Option<Bitrate>) -> Result<LinkRequest, ApiError> {
    let link = LinkRequest::parse(body)
        .map_err(|err| ApiError::bad_request(err.code(), err.to_string()))?;
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
    Ok(LinkRequest {
        url: url.to_owned(),
        bitrate: link.bitrate.or(query_bitrate),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_queries_are_checked() {
        let id: JobId = "0192f1a4-7c2b-7d3e-8f00-123456789abc".parse().unwrap();
        assert_eq!(
            list_query("").unwrap(),
            JobsQuery {
                limit: 20,
                cursor: None
            }
        );
        assert_eq!(
            list_query("limit=5&cursor=0192F1A4-7C2B-7D3E-8F00-123456789ABC").unwrap(),
            JobsQuery {
                limit: 5,
                cursor: Some(id)
            }
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
    fn bitrates_are_the_contracts() {
        assert_eq!(
            bitrate_param("bitrate=V2").unwrap(),
            Some(Bitrate::Variable(2))
        );
        assert_eq!(bitrate_param("").unwrap(), None);
        for bad in ["bitrate=999", "bitrate=", "bitrate=v10"] {
            assert!(matches!(
                bitrate_param(bad),
                Err(ApiError::BadRequest {
                    code: "invalid_bitrate",
                    ..
                })
            ));
        }
    }

    #[test]
    fn link_requests_are_checked() {
        let ok = link_request(
            br#"{"url":" https://example.com/v.mp4 ","bitrate":320}"#,
            Some(Bitrate::Variable(2)),
        )
        .unwrap();
        assert_eq!(
            serde_json::to_value(&ok).unwrap(),
            serde_json::json!({"url":"https://example.com/v.mp4","bitrate":"320"})
        );
        assert_eq!(
            link_request(
                br#"{"url":"https://example.com/v.mp4","bitrate":null}"#,
                Some(Bitrate::Variable(2))
            )
            .unwrap()
            .bitrate,
            Some(Bitrate::Variable(2))
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
            (br#"{"url":"https://x","bitrate":true}"#, "invalid_bitrate"),
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
        for (content_type, json_allowed) in [
            (Some("application/json"), false),
            (Some("text/plain"), true),
            (None, true),
        ] {
            assert!(matches!(
                body_kind(content_type, json_allowed),
                Err(ApiError::UnsupportedMediaType(_))
            ));
        }
        assert!(matches!(
            body_kind(Some("multipart/form-data"), true),
            Err(ApiError::BadRequest {
                code: "invalid_multipart",
                ..
            })
        ));
    }
}
