//! `/v1/jobs` and `POST /upload`: listing, reading and deleting a caller's jobs, and creating
//! one from a JSON link or a multipart upload ([`crate::upload`]), with its conversion options
//! ([`crate::options`]). Users see the contract's [`PublicJob`], never the worker's full record.

use mp3conv_contract::job::{JobId, LinkRequest, PublicJob, PublicJobPage};
use mp3conv_contract::options::Options;
use mp3conv_kit::reply::{Reply, declared_too_large};
use mp3conv_sql::Db;

use crate::body::{self, Body};
use crate::error::ApiError;
use crate::options;
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

/// `POST /upload` (200 the job) and `POST /v1/jobs` (202 the job, with `Location`). The
/// database holds the caller's presets.
pub async fn create<B: Body>(
    worker: &impl Worker,
    db: &dyn Db,
    owner: &str,
    request: Creation<'_, B>,
) -> Result<Reply, ApiError> {
    let original = request.original;
    let job = PublicJob::from(create_job(worker, db, owner, request).await?);
    let reply = if original {
        Reply::json(200, &job)
    } else {
        let location = format!("/v1/jobs/{}", job.id);
        Reply::json(202, &job).with_header("location", location)
    };
    // A repeated `Idempotency-Key` request says so, as the worker told.
    Ok(match worker.replayed() {
        true => reply.with_header(REPLAYED_HEADER, "true"),
        false => reply,
    })
}

/// The header telling a client its request repeated an earlier one (`Idempotency-Key`).
pub const REPLAYED_HEADER: &str = "idempotent-replayed";

async fn create_job<B: Body>(
    worker: &impl Worker,
    db: &dyn Db,
    owner: &str,
    request: Creation<'_, B>,
) -> Result<mp3conv_contract::job::Job, ApiError> {
    let kind = body_kind(request.content_type, !request.original)?;
    match kind {
        BodyKind::Json => {
            let limit = MAX_JSON_BYTES;
            let body = body::read(request.body, request.content_length, limit).await?;
            let mut link = link_request(&body, request.query)?;
            link.options = options::resolve(db, owner, link.options)?;
            worker.create_link_job(owner, &link).await
        }
        BodyKind::Multipart { boundary } => {
            // Multipart framing adds little; a body far past the limit is refused unread.
            let limit = request.max_upload_bytes;
            if declared_too_large(request.content_length, limit.saturating_add(64 * 1024)) {
                body::drain(request.body).await;
                return Err(ApiError::BodyTooLarge { limit });
            }
            // Every query parameter of `POST /v1/jobs` is an option, checked before the file is
            // sent; the original route reads none.
            let query_options = if request.original {
                Ok(Options::default())
            } else {
                options::from_query(request.query)
            };
            let query_options = match query_options {
                Ok(options) => options,
                Err(err) => {
                    body::drain(request.body).await;
                    return Err(err.into());
                }
            };
            let form = upload::Form {
                boundary,
                original: request.original,
                limit,
            };
            upload::create(worker, db, owner, request.body, form, query_options).await
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

/// A checked link request, with the options of its body and of `query` (`?bitrate=320`): a
/// field in both is refused (`duplicate_field`).
pub fn link_request(body: &[u8], query: &str) -> Result<LinkRequest, ApiError> {
    let mut link = LinkRequest::parse(body)?;
    options::set_query(&mut link.options, query)?;
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
        options: link.options,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mp3conv_contract::job::Bitrate;

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

    fn code(result: Result<LinkRequest, ApiError>) -> (&'static str, Option<String>) {
        match result {
            Err(ApiError::BadRequest { code, .. }) => (code, None),
            Err(ApiError::Option(err)) => (err.code, Some(err.field)),
            other => panic!("not a 400: {other:?}"),
        }
    }

    #[test]
    fn link_requests_are_checked() {
        let ok = link_request(
            br#"{"url":" https://example.com/v.mp4 ","bitrate":320,"start":"1:00"}"#,
            "title=Talk",
        )
        .unwrap();
        assert_eq!(
            serde_json::to_value(&ok).unwrap(),
            serde_json::json!({
                "url": "https://example.com/v.mp4", "bitrate": "320", "start": 60.0,
                "title": "Talk"
            })
        );
        assert_eq!(
            link_request(
                br#"{"url":"https://example.com/v.mp4","bitrate":null}"#,
                "bitrate=v2"
            )
            .unwrap()
            .options
            .bitrate,
            Some(Bitrate::Variable(2))
        );
        // A body, a query, and the code and field they are refused with.
        type Case = (
            &'static [u8],
            &'static str,
            (&'static str, Option<&'static str>),
        );
        let bad: [Case; 16] = [
            (
                br#"{"url":"file:///etc/passwd"}"#,
                "",
                ("invalid_url", None),
            ),
            (br#"{"url":"ftp://x/y"}"#, "", ("invalid_url", None)),
            (br#"{"url":"http://"}"#, "", ("invalid_url", None)),
            // Non-ASCII first (this once sliced a string inside a character and panicked).
            (
                "{\"url\":\"\u{a7}\u{a7}\u{a7}\u{a7}\"}".as_bytes(),
                "",
                ("invalid_url", None),
            ),
            (
                r#"{"url":"\u00a7https://x"}"#.as_bytes(),
                "",
                ("invalid_url", None),
            ),
            (br#"{"url":""}"#, "", ("invalid_url", None)),
            (
                br#"{"url":"https://exa mple.com/v.mp4"}"#,
                "",
                ("invalid_url", None),
            ),
            (
                br#"{"url":"https://x","extra":1}"#,
                "",
                ("unknown_field", Some("extra")),
            ),
            (
                br#"{"url":"https://x","bitrate":"999"}"#,
                "",
                ("invalid_bitrate", Some("bitrate")),
            ),
            (
                br#"{"url":"https://x","bitrate":[1]}"#,
                "",
                ("invalid_bitrate", Some("bitrate")),
            ),
            (
                br#"{"url":"https://x","bitrate":true}"#,
                "",
                ("invalid_bitrate", Some("bitrate")),
            ),
            (
                br#"{"url":"https://x","start":9,"end":3}"#,
                "",
                ("invalid_option", Some("end")),
            ),
            (
                br#"{"url":"https://x","bitrate":128}"#,
                "bitrate=128",
                ("duplicate_field", Some("bitrate")),
            ),
            (
                br#"{"url":"https://x"}"#,
                "colour=blue",
                ("unknown_field", Some("colour")),
            ),
            (br#"{"bitrate":"128"}"#, "", ("invalid_json", None)),
            (b"not json", "", ("invalid_json", None)),
        ];
        for (body, query, expected) in bad {
            let (code, field) = code(link_request(body, query));
            assert_eq!(
                (code, field.as_deref()),
                expected,
                "{} ?{query}",
                String::from_utf8_lossy(body)
            );
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
