//! A multipart upload, streamed to the worker without being held: exactly one file part, whose
//! bytes go on to the worker as they arrive. On `POST /v1/jobs` the file is `file` and every
//! text field is a conversion option, before or after the file: the worker holds the job
//! until the form has ended, then it is started with the options (a preset resolved). `POST
//! /upload`, the original API, ignores text fields and the part's name, and its job is queued
//! at once.
//!
//! The request is refused as a whole: if anything after the file is wrong, the job already
//! made from it is deleted; if the file itself breaks or passes the limit, the worker's request
//! is abandoned unfinished, so it makes no job of a partial file. What can be refused before
//! the file is sent (a bad field before it, an unknown preset) is, so no upload is wasted on
//! it. A refused body is drained (bounded) so the client, still sending, reads the answer.

use std::cell::RefCell;

use bytes::Bytes;
use futures::{Stream, StreamExt as _};
use mp3conv_contract::job::Job;
use mp3conv_contract::options::{OptionError, Options};
use mp3conv_sql::Db;

use crate::body::{Body, MAX_DRAIN_BYTES};
use crate::error::ApiError;
use crate::framing::Framing;
use crate::jobs::essence;
use crate::options::{self, TextBudget};
use crate::upstream::{Chunk, Upload, Worker};

/// What the route and the headers say about a multipart body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Form {
    pub boundary: String,
    /// `POST /upload`: any part name, text fields ignored, no options.
    pub original: bool,
    /// Largest file accepted, in bytes.
    pub limit: u64,
}

/// What has been read of a form.
struct Reading {
    /// The query's options, then each text field's.
    options: Options,
    budget: TextBudget,
    /// The job made of the file, once it is sent.
    job: Option<Job>,
}

/// Reads the form and streams its file to the worker: the worker's job, started with its
/// options on `POST /v1/jobs` (those of the query, `options`, and of the text fields).
pub async fn create(
    worker: &impl Worker,
    db: &dyn Db,
    owner: &str,
    body: impl Body,
    form: Form,
    options: Options,
) -> Result<Job, ApiError> {
    // The parser holds what it reads until the next delimiter: bound what is not file data.
    let mut framing = Framing::new(&form.boundary);
    let body = body.map(move |chunk| {
        let bytes = chunk?;
        framing.check(&bytes).map_err(std::io::Error::other)?;
        Ok::<Bytes, std::io::Error>(bytes)
    });
    let mut multipart = multer::Multipart::new(body, form.boundary.clone());
    let mut reading = Reading {
        options,
        budget: TextBudget::default(),
        job: None,
    };
    let outcome = match read_form(worker, db, owner, &mut multipart, &form, &mut reading).await {
        Ok(()) => finish(worker, db, owner, &form, &mut reading).await,
        Err(err) => Err(err),
    };
    match outcome {
        Ok(job) => Ok(job),
        Err(err) => {
            drain(&mut multipart).await;
            if let Some(job) = reading.job {
                // Gone already or not: the answer is the refusal either way.
                let _ = worker.delete_job(owner, job.id).await;
            }
            Err(err)
        }
    }
}

/// The form has ended: the job as made (`POST /upload`), or started with its options.
async fn finish(
    worker: &impl Worker,
    db: &dyn Db,
    owner: &str,
    form: &Form,
    reading: &mut Reading,
) -> Result<Job, ApiError> {
    let Some(job) = &reading.job else {
        return Err(ApiError::bad_request(
            "missing_file",
            "send exactly one file (multipart/form-data)",
        ));
    };
    if form.original {
        return Ok(job.clone());
    }
    let options = options::resolve(db, owner, std::mem::take(&mut reading.options))?;
    worker.start_job(owner, job.id, &options).await
}

async fn read_form(
    worker: &impl Worker,
    db: &dyn Db,
    owner: &str,
    multipart: &mut multer::Multipart<'_>,
    form: &Form,
    reading: &mut Reading,
) -> Result<(), ApiError> {
    while let Some(mut field) = multipart.next_field().await.map_err(multipart_error)? {
        let name = field.name().unwrap_or_default().to_owned();
        if let Some(filename) = field.file_name().map(clean_filename) {
            if reading.job.is_some() {
                return Err(ApiError::bad_request(
                    "too_many_files",
                    "send exactly one file per request",
                ));
            }
            if !form.original {
                if name != "file" {
                    return Err(not_the_file_field(&name).into());
                }
                options::check_early(db, owner, &reading.options)?;
            }
            let upload = Upload {
                filename,
                content_type: upload_content_type(field.content_type().map(|m| m.as_ref())),
                hold: !form.original,
            };
            let (made, failure) = send_file(worker, owner, &upload, &mut field, form.limit).await;
            reading.job = made;
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
        if name == "file" {
            return Err(ApiError::bad_request(
                "missing_file",
                "the `file` field must be a file (with a filename)",
            ));
        }
        // Refused before its value is read: an unknown field may be of any length.
        if !Options::is_field(&name) {
            return Err(OptionError::unknown(&name).into());
        }
        let text = read_text(&mut field, &name, &mut reading.budget).await?;
        reading.options.set(&name, &text)?;
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

/// A text field's value, within its bounds (refused as soon as it passes one).
async fn read_text(
    field: &mut multer::Field<'_>,
    name: &str,
    budget: &mut TextBudget,
) -> Result<String, ApiError> {
    let mut text = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
        budget.take(name, text.len(), chunk.len())?;
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

/// A file part under another name than `file`.
fn not_the_file_field(name: &str) -> OptionError {
    let shown: String = name.chars().take(64).collect();
    OptionError {
        field: shown.clone(),
        code: "unknown_field",
        message: format!(
            "`{shown}` is not a field of this route: send the video as `file`, options as text fields"
        ),
    }
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
