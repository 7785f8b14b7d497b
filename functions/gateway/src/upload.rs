//! A multipart upload, streamed to the worker without being held: exactly one file part, whose
//! bytes go on to the worker as they arrive; on `POST /v1/jobs` only `file` and a `bitrate`
//! before it (`POST /upload`, the original API, ignores text fields and the part's name).
//!
//! The request is refused as a whole: if anything after the file is wrong, the job already
//! made from it is deleted; if the file itself breaks or passes the limit, the worker's request
//! is abandoned unfinished, so it makes no job of a partial file. A refused body is drained
//! (bounded) so the client, still sending, reads the answer.

use std::cell::RefCell;

use bytes::Bytes;
use futures::{Stream, StreamExt as _};
use mp3conv_contract::job::{Bitrate, Job};

use crate::body::{Body, MAX_DRAIN_BYTES};
use crate::error::ApiError;
use crate::framing::Framing;
use crate::jobs::{checked_bitrate, essence};
use crate::upstream::{Chunk, Upload, Worker};

/// Largest non-file multipart field read (`bitrate`).
pub const MAX_TEXT_FIELD_BYTES: usize = 64;

/// What the route and the headers say about a multipart body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Form {
    pub boundary: String,
    /// `?bitrate=` (a `bitrate` field before the file overrides it).
    pub bitrate: Option<Bitrate>,
    /// `POST /upload`: any part name, text fields ignored.
    pub original: bool,
    /// Largest file accepted, in bytes.
    pub limit: u64,
}

/// Reads the form and streams its file to the worker: the worker's job.
pub async fn create(
    worker: &impl Worker,
    owner: &str,
    body: impl Body,
    mut form: Form,
) -> Result<Job, ApiError> {
    // The parser holds what it reads until the next delimiter: bound what is not file data.
    let mut framing = Framing::new(&form.boundary);
    let body = body.map(move |chunk| {
        let bytes = chunk?;
        framing.check(&bytes).map_err(std::io::Error::other)?;
        Ok::<Bytes, std::io::Error>(bytes)
    });
    let mut multipart = multer::Multipart::new(body, form.boundary.clone());
    let mut job: Option<Job> = None;
    let outcome = read_form(worker, owner, &mut multipart, &mut form, &mut job).await;
    match (outcome, job) {
        (Ok(()), Some(job)) => Ok(job),
        (Ok(()), None) => Err(ApiError::bad_request(
            "missing_file",
            "send exactly one file (multipart/form-data)",
        )),
        (Err(err), job) => {
            drain(&mut multipart).await;
            if let Some(job) = job {
                // Gone already or not: the answer is the refusal either way.
                let _ = worker.delete_job(owner, job.id).await;
            }
            Err(err)
        }
    }
}

async fn read_form(
    worker: &impl Worker,
    owner: &str,
    multipart: &mut multer::Multipart<'_>,
    form: &mut Form,
    job: &mut Option<Job>,
) -> Result<(), ApiError> {
    while let Some(mut field) = multipart.next_field().await.map_err(multipart_error)? {
        let name = field.name().unwrap_or_default().to_owned();
        if let Some(filename) = field.file_name().map(clean_filename) {
            if job.is_some() {
                return Err(ApiError::bad_request(
                    "too_many_files",
                    "send exactly one file per request",
                ));
            }
            if !form.original && name != "file" {
                return Err(unknown_field(&name));
            }
            let upload = Upload {
                filename,
                content_type: upload_content_type(field.content_type().map(|m| m.as_ref())),
                bitrate: form.bitrate,
            };
            let (made, failure) = send_file(worker, owner, &upload, &mut field, form.limit).await;
            *job = made;
            if let Some(err) = failure {
                return Err(err);
            }
            continue;
        }
        // A text field. The original API ignores them: read through, nothing kept.
        if form.original {
            while field.chunk().await.map_err(multipart_error)?.is_some() {}
            continue;
        }
        let text = read_text(&mut field, &name).await?;
        match name.as_str() {
            "bitrate" if job.is_none() => form.bitrate = Some(checked_bitrate(&text)?),
            // Kept as it is for now: the field order may be relaxed later.
            "bitrate" => {
                return Err(ApiError::bad_request(
                    "field_order",
                    "send the bitrate field before the file",
                ));
            }
            "file" => {
                return Err(ApiError::bad_request(
                    "missing_file",
                    "the `file` field must be a file (with a filename)",
                ));
            }
            other => return Err(unknown_field(other)),
        }
    }
    Ok(())
}

/// Streams one file part to the worker. Returns the job made, if any, and why the request is
/// refused, if it is: a file that broke or passed `limit` (the worker saw an aborted body),
/// or the worker's own refusal.
async fn send_file(
    worker: &impl Worker,
    owner: &str,
    upload: &Upload,
    field: &mut multer::Field<'_>,
    limit: u64,
) -> (Option<Job>, Option<ApiError>) {
    let failed = RefCell::new(None);
    let chunks = file_chunks(field, limit, &failed);
    let answer = worker
        .create_upload_job(owner, upload, Box::pin(chunks))
        .await;
    // The body's own failure is the answer, whatever the worker made of the aborted request.
    match (answer, failed.into_inner()) {
        (Ok(job), failure) => (Some(job), failure),
        (Err(_), Some(failure)) => (None, Some(failure)),
        (Err(err), None) => (None, Some(err)),
    }
}

/// The file's bytes, ending with an `Err` (noted in `failed`) if it breaks or passes `limit`.
fn file_chunks<'a>(
    field: &'a mut multer::Field<'_>,
    limit: u64,
    failed: &'a RefCell<Option<ApiError>>,
) -> impl Stream<Item = Chunk> + 'a {
    futures::stream::unfold(Some((field, 0u64)), move |state| async move {
        let (field, seen) = state?;
        let fail = |err: ApiError| {
            *failed.borrow_mut() = Some(err.clone());
            Some((Err(err), None))
        };
        match field.chunk().await {
            Ok(Some(chunk)) => {
                let seen = seen + chunk.len() as u64;
                if seen > limit {
                    return fail(ApiError::BodyTooLarge { limit });
                }
                Some((Ok::<Bytes, ApiError>(chunk), Some((field, seen))))
            }
            Ok(None) => None,
            Err(err) => fail(multipart_error(err)),
        }
    })
}

async fn read_text(field: &mut multer::Field<'_>, name: &str) -> Result<String, ApiError> {
    let mut text = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
        if text.len() + chunk.len() > MAX_TEXT_FIELD_BYTES {
            return Err(ApiError::bad_request(
                "field_too_large",
                format!("the field `{name}` is longer than {MAX_TEXT_FIELD_BYTES} bytes"),
            ));
        }
        text.extend_from_slice(&chunk);
    }
    Ok(String::from_utf8_lossy(&text).into_owned())
}

/// Reads what the client is still sending, up to [`MAX_DRAIN_BYTES`].
async fn drain(multipart: &mut multer::Multipart<'_>) {
    let mut drained = 0;
    while let Ok(Some(mut field)) = multipart.next_field().await {
        while let Ok(Some(chunk)) = field.chunk().await {
            drained += chunk.len();
            if drained > MAX_DRAIN_BYTES {
                return;
            }
        }
    }
}

fn multipart_error(err: multer::Error) -> ApiError {
    // A read failure's own words (e.g. the framing bound) say more than "failed to read".
    let detail = match &err {
        multer::Error::StreamReadFailed(source) => source.to_string(),
        other => other.to_string(),
    };
    ApiError::bad_request(
        "invalid_multipart",
        format!("the multipart body is malformed: {detail}"),
    )
}

fn unknown_field(name: &str) -> ApiError {
    ApiError::bad_request(
        "unknown_field",
        format!(
            "`{name}` is not a field of this route; send `file` and optionally `bitrate` (before the file)"
        ),
    )
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
    let essence = declared.map(essence).unwrap_or_default();
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

#[cfg(test)]
#[path = "upload_tests.rs"]
mod tests;
