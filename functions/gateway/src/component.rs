//! The Spin entry point: reads the request, asks [`crate::api`] what it means, and does the
//! I/O: forwarding to the worker's internal API (streaming uploads and downloads through
//! without holding them), chaining to the auth function, and the users database check.

use bytes::Bytes;
use futures::{SinkExt as _, StreamExt as _};
use mp3conv_sql::notifications;
use serde_json::Value;
use spin_sdk::http::{
    Fields, IncomingRequest, IncomingResponse, Method, OutgoingBody, OutgoingRequest,
    OutgoingResponse, ResponseOutparam, Scheme,
};
use spin_sdk::http_component;

use crate::api::{self, ApiError, Caller, Reply, Route};
use crate::config::Config;

/// The OpenAPI document, served as it is kept in the repository.
const OPENAPI: &str = include_str!("../../../openapi.yaml");

#[http_component]
async fn handle(request: IncomingRequest, out: ResponseOutparam) {
    let request_id = header(&request, "x-request-id").unwrap_or_default();
    match serve(request, &request_id).await {
        Ok(Answer::Reply(reply)) => send(out, reply).await,
        Ok(Answer::Stream(response, headers)) => stream_back(out, response, headers).await,
        Err(err) => {
            if let ApiError::Internal(cause) = &err {
                eprintln!("gateway: request {request_id}: internal error: {cause}");
            }
            send(out, err.reply()).await;
        }
    }
}

/// What a request is answered with.
enum Answer {
    Reply(Reply),
    /// A worker response streamed back as it arrives, with the headers to send.
    Stream(IncomingResponse, Vec<(String, String)>),
}

impl From<Reply> for Answer {
    fn from(reply: Reply) -> Answer {
        Answer::Reply(reply)
    }
}

/// Serves one request.
async fn serve(request: IncomingRequest, request_id: &str) -> Result<Answer, ApiError> {
    let method = request.method().to_string();
    let path_with_query = request.path_with_query().unwrap_or_default();
    let (path, query) = path_with_query
        .split_once('?')
        .unwrap_or((path_with_query.as_str(), ""));
    let route = api::route(&method, path)?;
    match route {
        Route::Root => return Ok(api::root().into()),
        Route::OpenApi => {
            return Ok(Reply {
                status: 200,
                headers: vec![("content-type".into(), "application/yaml".into())],
                body: OPENAPI.as_bytes().to_vec(),
            }
            .into());
        }
        _ => {}
    }
    let config =
        Config::load(|name| spin_sdk::variables::get(name).ok()).map_err(ApiError::Internal)?;
    let authorization = header(&request, "authorization");
    if route == Route::Login {
        let credentials = api::basic_credentials(authorization.as_deref())?;
        return login(&config, &credentials, request_id)
            .await
            .map(Answer::Reply);
    }
    let verifier =
        mp3conv_tokens::Verifier::new(&config.public_keys, &config.issuer, &config.audience)
            .map_err(ApiError::Internal)?;
    let caller = api::authenticate(authorization.as_deref(), &verifier)?;
    let db = mp3conv_sql::open(&config.database).map_err(|err| ApiError::Internal(err.message))?;
    if !user_exists(db.as_ref(), &caller.id).map_err(ApiError::Internal)? {
        return Err(ApiError::Unauthorized("unknown_user"));
    }
    let worker = Worker {
        config: &config,
        caller: &caller,
        request_id,
    };
    match route {
        Route::Upload | Route::CreateJob => {
            let original = route == Route::Upload;
            let job = create_job(&worker, request, query, original).await?;
            let public = api::public_job(&job);
            if original {
                return Ok(Reply::json(200, &public).into());
            }
            let location = format!("/v1/jobs/{}", public["id"].as_str().unwrap_or_default());
            Ok(Reply::json(202, &public)
                .with_header("location", location)
                .into())
        }
        Route::ListJobs => {
            let page = worker
                .json(
                    Method::Get,
                    &format!("/internal/jobs?{}", api::list_query(query)?),
                )
                .await?;
            Ok(Reply::json(200, &api::public_page(&page)).into())
        }
        Route::GetJob(id) => {
            let job = worker
                .json(Method::Get, &format!("/internal/jobs/{id}"))
                .await?;
            Ok(Reply::json(200, &api::public_job(&job)).into())
        }
        Route::DeleteJob(id) => {
            worker
                .call(Method::Delete, &format!("/internal/jobs/{id}"), &[], None)
                .await?;
            Ok(Reply::empty(204).into())
        }
        Route::Audio(id) => audio(&worker, &request, &id).await,
        Route::Download => {
            let id = api::download_id(query)?;
            audio(&worker, &request, &id).await
        }
        Route::Me => Ok(api::me(&caller).into()),
        Route::DeleteMe => {
            delete_account(&worker, authorization.as_deref().unwrap_or_default()).await?;
            notifications::forget_user(db.as_ref(), &caller.id).map_err(internal)?;
            Ok(Reply::empty(204).into())
        }
        Route::ListNotifications => {
            let asked = api::notifications_query(query)?;
            let before = asked.cursor.as_ref().map(|(at, id)| (*at, id.as_str()));
            let page =
                notifications::list(db.as_ref(), &caller.id, asked.unread, asked.limit, before)
                    .map_err(internal)?;
            Ok(Reply::json(200, &api::notification_page(&page, asked.limit)).into())
        }
        Route::ReadNotification(id) => {
            if !notifications::mark_read(db.as_ref(), &caller.id, &id, now_ms())
                .map_err(internal)?
            {
                return Err(ApiError::NotificationNotFound);
            }
            Ok(Reply::empty(204).into())
        }
        Route::GetWebhook => {
            let hook = notifications::webhook(db.as_ref(), &caller.id)
                .map_err(internal)?
                .ok_or(ApiError::WebhookNotFound)?;
            Ok(Reply::json(
                200,
                &serde_json::json!({ "url": hook.url, "created_at": api::rfc3339(hook.created_at) }),
            )
            .into())
        }
        Route::PutWebhook => {
            let content_type = header(&request, "content-type").unwrap_or_default();
            if !content_type
                .to_ascii_lowercase()
                .starts_with("application/json")
            {
                return Err(ApiError::UnsupportedMediaType("application/json"));
            }
            let body = read_request(request, api::MAX_JSON_BYTES).await?;
            let url = api::webhook_url(&body, config.webhook_allow_local)?;
            let hook = notifications::Webhook {
                user_id: caller.id.clone(),
                url,
                secret: new_secret(),
                created_at: now_ms(),
            };
            notifications::put_webhook(db.as_ref(), &hook).map_err(internal)?;
            // The only time the secret is shown.
            Ok(Reply::json(
                200,
                &serde_json::json!({
                    "url": hook.url,
                    "secret": hook.secret,
                    "created_at": api::rfc3339(hook.created_at),
                }),
            )
            .into())
        }
        Route::DeleteWebhook => {
            if !notifications::delete_webhook(db.as_ref(), &caller.id).map_err(internal)? {
                return Err(ApiError::WebhookNotFound);
            }
            Ok(Reply::empty(204).into())
        }
        Route::Root | Route::OpenApi | Route::Login => unreachable!("answered above"),
    }
}

fn header(request: &IncomingRequest, name: &str) -> Option<String> {
    request
        .headers()
        .get(name)
        .first()
        .map(|value| String::from_utf8_lossy(value).into_owned())
}

/// Whether the token's user still exists (a deleted account's tokens stop working at once).
fn user_exists(db: &dyn mp3conv_sql::Db, id: &str) -> Result<bool, String> {
    let rows = db
        .query(
            "SELECT 1 FROM users WHERE id = ?",
            &[mp3conv_sql::Param::Text(id.to_owned())],
        )
        .map_err(|err| format!("checking the user: {err}"))?;
    Ok(!rows.is_empty())
}

fn internal(err: mp3conv_sql::DbError) -> ApiError {
    ApiError::Internal(format!("database: {err}"))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A webhook signing secret as Standard Webhooks writes them: `whsec_` and 32 random bytes in
/// base64.
fn new_secret() -> String {
    use base64::Engine as _;
    let mut bytes = Vec::with_capacity(32);
    bytes.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    bytes.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// `POST /login`: HTTP Basic to auth's `/auth/login`, the token back as plain text.
async fn login(config: &Config, credentials: &str, request_id: &str) -> Result<Reply, ApiError> {
    let headers = [
        ("authorization", credentials.to_owned()),
        ("x-request-id", request_id.to_owned()),
    ];
    let (status, response_headers, body) = buffered(
        Method::Post,
        &config.auth_url,
        "/auth/login",
        &headers,
        Some(Vec::new()),
    )
    .await?;
    if status == 200 {
        let token = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v["access_token"].as_str().map(str::to_owned))
            .ok_or_else(|| ApiError::Internal("auth answered 200 without a token".into()))?;
        return Ok(Reply {
            status: 200,
            headers: vec![("content-type".into(), "text/plain; charset=utf-8".into())],
            body: token.into_bytes(),
        });
    }
    let kept = keep_headers(&response_headers, &["www-authenticate", "retry-after"]);
    match status {
        400..=499 => Err(ApiError::Upstream {
            status,
            body,
            headers: kept,
        }),
        _ => Err(ApiError::WorkerUnavailable),
    }
}

/// `DELETE /v1/me`: every job of the caller, then the account itself.
async fn delete_account(worker: &Worker<'_>, authorization: &str) -> Result<(), ApiError> {
    loop {
        let page = worker.json(Method::Get, "/internal/jobs?limit=100").await?;
        let ids: Vec<String> = page["jobs"]
            .as_array()
            .map(|jobs| {
                jobs.iter()
                    .filter_map(|j| j["id"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        if ids.is_empty() {
            break;
        }
        for id in ids {
            match worker
                .call(Method::Delete, &format!("/internal/jobs/{id}"), &[], None)
                .await
            {
                Ok(_) | Err(ApiError::JobNotFound) => {}
                Err(err) => return Err(err),
            }
        }
    }
    let headers = [
        ("authorization", authorization.to_owned()),
        ("x-request-id", worker.request_id.to_owned()),
    ];
    let (status, _, body) = buffered(
        Method::Delete,
        &worker.config.auth_url,
        "/auth/me",
        &headers,
        None,
    )
    .await?;
    match status {
        204 => Ok(()),
        401 => Err(ApiError::Unauthorized("unknown_user")),
        _ => Err(ApiError::Internal(format!(
            "auth answered {status} to the account deletion: {}",
            String::from_utf8_lossy(&body)
        ))),
    }
}

/// `GET /v1/jobs/{id}/audio` and `GET /download?fid=`: the MP3, streamed from the worker,
/// with `Range`, `If-None-Match` and a download name.
async fn audio(
    worker: &Worker<'_>,
    request: &IncomingRequest,
    id: &str,
) -> Result<Answer, ApiError> {
    let job = worker
        .json(Method::Get, &format!("/internal/jobs/{id}"))
        .await?;
    let forwarded: Vec<(&str, String)> = ["range", "if-none-match"]
        .into_iter()
        .filter_map(|name| header(request, name).map(|value| (name, value)))
        .collect();
    let response = worker
        .call(
            Method::Get,
            &format!("/internal/jobs/{id}/audio"),
            &forwarded,
            None,
        )
        .await?;
    let mut headers = keep_headers(
        &response.headers().entries(),
        &[
            "content-type",
            "content-length",
            "content-range",
            "accept-ranges",
            "etag",
        ],
    );
    headers.push(("content-disposition".into(), api::content_disposition(&job)));
    Ok(Answer::Stream(response, headers))
}

/// Sends a worker response's status and `headers`, then its body chunk by chunk.
async fn stream_back(
    out: ResponseOutparam,
    response: IncomingResponse,
    headers: Vec<(String, String)>,
) {
    let headers: Vec<(String, Vec<u8>)> = headers
        .into_iter()
        .map(|(name, value)| (name, value.into_bytes()))
        .collect();
    let outgoing = OutgoingResponse::new(Fields::from_list(&headers).expect("valid header names"));
    outgoing
        .set_status_code(response.status())
        .expect("a valid status code");
    let mut sink = outgoing.take_body();
    out.set(outgoing);
    let mut chunks = response.take_body_stream();
    while let Some(Ok(chunk)) = chunks.next().await {
        if sink.send(chunk).await.is_err() {
            break; // the client went away
        }
    }
}

/// Headers of `entries` named in `names`, as strings.
fn keep_headers(entries: &[(String, Vec<u8>)], names: &[&str]) -> Vec<(String, String)> {
    entries
        .iter()
        .filter(|(name, _)| names.contains(&name.to_ascii_lowercase().as_str()))
        .map(|(name, value)| {
            (
                name.to_ascii_lowercase(),
                String::from_utf8_lossy(value).into_owned(),
            )
        })
        .collect()
}

/// Calls to the worker's internal API on behalf of the verified caller.
struct Worker<'a> {
    config: &'a Config,
    caller: &'a Caller,
    request_id: &'a str,
}

impl Worker<'_> {
    fn headers(&self, extra: &[(&str, String)]) -> Vec<(String, Vec<u8>)> {
        let mut headers = vec![
            (
                "authorization".to_owned(),
                format!("Bearer {}", self.config.worker_token).into_bytes(),
            ),
            (
                "x-mp3conv-owner".to_owned(),
                self.caller.id.clone().into_bytes(),
            ),
            (
                "x-request-id".to_owned(),
                self.request_id.as_bytes().to_vec(),
            ),
        ];
        headers.extend(
            extra
                .iter()
                .map(|(name, value)| ((*name).to_owned(), value.clone().into_bytes())),
        );
        headers
    }

    /// A call whose success is any 2xx or 3xx; other answers become the matching error.
    async fn call(
        &self,
        method: Method,
        path_and_query: &str,
        extra: &[(&str, String)],
        body: Option<Vec<u8>>,
    ) -> Result<IncomingResponse, ApiError> {
        let request = outgoing(
            method,
            &self.config.worker_url,
            path_and_query,
            &self.headers(extra),
        )?;
        let response = send_with_body(request, body).await?;
        check(response).await
    }

    /// A call answered with JSON.
    async fn json(&self, method: Method, path_and_query: &str) -> Result<Value, ApiError> {
        let response = self.call(method, path_and_query, &[], None).await?;
        let body = read_limited(&response, api::MAX_JSON_BYTES * 64).await?;
        serde_json::from_slice(&body)
            .map_err(|err| ApiError::Internal(format!("the worker's answer is not JSON: {err}")))
    }
}

/// Turns a worker error answer into the matching [`ApiError`].
async fn check(response: IncomingResponse) -> Result<IncomingResponse, ApiError> {
    let status = response.status();
    if status < 400 {
        return Ok(response);
    }
    let headers = keep_headers(
        &response.headers().entries(),
        &["content-range", "retry-after"],
    );
    let body = read_limited(&response, api::MAX_JSON_BYTES)
        .await
        .unwrap_or_default();
    Err(api::upstream_error(status, body, headers))
}

async fn read_limited(response: &IncomingResponse, limit: usize) -> Result<Vec<u8>, ApiError> {
    let mut body = Vec::new();
    let mut stream = response.take_body_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| ApiError::WorkerUnavailable)?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::Internal(format!(
                "an upstream answer passed {limit} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A request to `base` (`scheme://authority`) + `path_and_query`.
fn outgoing(
    method: Method,
    base: &str,
    path_and_query: &str,
    headers: &[(String, Vec<u8>)],
) -> Result<OutgoingRequest, ApiError> {
    let (scheme, authority) = match base.split_once("://") {
        Some(("https", authority)) => (Scheme::Https, authority),
        Some((_, authority)) => (Scheme::Http, authority),
        None => (Scheme::Http, base),
    };
    let fields = Fields::from_list(headers)
        .map_err(|err| ApiError::Internal(format!("bad outgoing header: {err:?}")))?;
    let request = OutgoingRequest::new(fields);
    let set = request
        .set_method(&method)
        .and_then(|()| request.set_scheme(Some(&scheme)))
        .and_then(|()| request.set_authority(Some(authority)))
        .and_then(|()| request.set_path_with_query(Some(path_and_query)));
    set.map_err(|()| ApiError::Internal(format!("cannot address {base}{path_and_query}")))?;
    Ok(request)
}

/// Sends a request with a small, complete body (or none).
async fn send_with_body(
    request: OutgoingRequest,
    body: Option<Vec<u8>>,
) -> Result<IncomingResponse, ApiError> {
    let response = match body {
        Some(body) => {
            let mut sink = request.take_body();
            let response = spin_sdk::http::send::<_, IncomingResponse>(request);
            let write = async move {
                let written = sink.send(body).await;
                drop(sink);
                written
            };
            let (response, written) = futures::join!(response, write);
            if written.is_err() && response.is_err() {
                return Err(ApiError::WorkerUnavailable);
            }
            response
        }
        None => spin_sdk::http::send::<_, IncomingResponse>(request).await,
    };
    response.map_err(send_error)
}

fn send_error(err: spin_sdk::http::SendError) -> ApiError {
    let text = format!("{err:?}");
    if text.contains("HttpRequestDenied") {
        ApiError::Internal(format!(
            "outbound request denied (allowed_outbound_hosts): {text}"
        ))
    } else {
        eprintln!("gateway: upstream unreachable: {text}");
        ApiError::WorkerUnavailable
    }
}

/// A buffered call to another service (auth): status, headers and body.
async fn buffered(
    method: Method,
    base: &str,
    path: &str,
    headers: &[(&str, String)],
    body: Option<Vec<u8>>,
) -> Result<(u16, Vec<(String, Vec<u8>)>, Vec<u8>), ApiError> {
    let headers: Vec<(String, Vec<u8>)> = headers
        .iter()
        .map(|(name, value)| ((*name).to_owned(), value.clone().into_bytes()))
        .collect();
    let request = outgoing(method, base, path, &headers)?;
    let response = send_with_body(request, body).await?;
    let body = read_limited(&response, api::MAX_JSON_BYTES).await?;
    Ok((response.status(), response.headers().entries(), body))
}

/// `POST /upload` and `POST /v1/jobs`: a multipart upload streamed to the worker, or (v1) a
/// JSON link. Returns the worker's job.
async fn create_job(
    worker: &Worker<'_>,
    request: IncomingRequest,
    query: &str,
    original: bool,
) -> Result<Value, ApiError> {
    let content_type = header(&request, "content-type");
    let declared = header(&request, "content-length").and_then(|v| v.trim().parse::<u64>().ok());
    let kind = api::body_kind(content_type.as_deref(), !original)?;
    // `?bitrate=` is a v1 parameter, checked whatever the body (the original route has none).
    let bitrate = if original {
        None
    } else {
        api::bitrate_param(query)?
    };
    match kind {
        api::BodyKind::Json => {
            if declared.is_some_and(|n| n > api::MAX_JSON_BYTES as u64) {
                drain(request).await;
                return Err(ApiError::BodyTooLarge {
                    limit: api::MAX_JSON_BYTES as u64,
                });
            }
            let body = read_request(request, api::MAX_JSON_BYTES).await?;
            let link = api::link_request(&body, bitrate.as_deref())?;
            let response = worker
                .call(
                    Method::Post,
                    "/internal/jobs",
                    &[("content-type", "application/json".to_owned())],
                    Some(link.to_string().into_bytes()),
                )
                .await?;
            let body = read_limited(&response, api::MAX_JSON_BYTES * 16).await?;
            serde_json::from_slice(&body)
                .map_err(|err| ApiError::Internal(format!("the worker's job is not JSON: {err}")))
        }
        api::BodyKind::Multipart { boundary } => {
            // Multipart framing adds little; a body far past the limit is refused unread.
            let limit = worker.config.max_upload_bytes;
            if declared.is_some_and(|n| n > limit.saturating_add(64 * 1024)) {
                drain(request).await;
                return Err(ApiError::BodyTooLarge { limit });
            }
            multipart_upload(worker, request, boundary, bitrate, original).await
        }
    }
}

/// Reads and drops a refused body (up to [`api::MAX_DRAIN_BYTES`]), so the client, still
/// sending, gets to read the error instead of a reset connection.
async fn drain(request: IncomingRequest) {
    let mut seen = 0;
    let mut stream = request.into_body_stream();
    while let Some(Ok(chunk)) = stream.next().await {
        seen += chunk.len();
        if seen > api::MAX_DRAIN_BYTES {
            break;
        }
    }
}

async fn read_request(request: IncomingRequest, limit: usize) -> Result<Vec<u8>, ApiError> {
    let mut body = Vec::new();
    let mut stream = request.into_body_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| {
            ApiError::bad_request("body_read", "the request body could not be read")
        })?;
        if body.len() + chunk.len() > limit {
            drop(stream);
            return Err(ApiError::BodyTooLarge {
                limit: limit as u64,
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn multipart_error(err: multer::Error) -> ApiError {
    ApiError::bad_request(
        "invalid_multipart",
        format!("the multipart body is malformed: {err}"),
    )
}

async fn multipart_upload(
    worker: &Worker<'_>,
    request: IncomingRequest,
    boundary: String,
    mut bitrate: Option<String>,
    original: bool,
) -> Result<Value, ApiError> {
    let stream = request.into_body_stream().map(|chunk| {
        chunk
            .map(Bytes::from)
            .map_err(|err| std::io::Error::other(err.to_debug_string()))
    });
    let mut multipart = multer::Multipart::new(stream, boundary);
    let mut job: Option<Value> = None;
    let outcome: Result<(), ApiError> = async {
        while let Some(mut field) = multipart.next_field().await.map_err(multipart_error)? {
            let name = field.name().unwrap_or_default().to_owned();
            if let Some(filename) = field.file_name().map(api::clean_filename) {
                if job.is_some() {
                    return Err(ApiError::bad_request(
                        "too_many_files",
                        "send exactly one file per request",
                    ));
                }
                if !original && name != "file" {
                    return Err(unknown_field(&name));
                }
                let content_type = field.content_type().map(ToString::to_string);
                job = Some(
                    stream_file(
                        worker,
                        &mut field,
                        &filename,
                        content_type,
                        bitrate.as_deref(),
                    )
                    .await?,
                );
                continue;
            }
            // A text field. The original API ignores them: read through, nothing kept.
            if original {
                while field.chunk().await.map_err(multipart_error)?.is_some() {}
                continue;
            }
            let mut text = Vec::new();
            while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
                if text.len() + chunk.len() > api::MAX_TEXT_FIELD_BYTES {
                    return Err(ApiError::bad_request(
                        "field_too_large",
                        format!(
                            "the field `{name}` is longer than {} bytes",
                            api::MAX_TEXT_FIELD_BYTES
                        ),
                    ));
                }
                text.extend_from_slice(&chunk);
            }
            match name.as_str() {
                "bitrate" if job.is_none() => {
                    bitrate = Some(api::checked_bitrate(&String::from_utf8_lossy(&text))?);
                }
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
    .await;
    match (outcome, job) {
        (Ok(()), Some(job)) => Ok(job),
        (Ok(()), None) => Err(ApiError::bad_request(
            "missing_file",
            "send exactly one file (multipart/form-data)",
        )),
        (Err(err), job) => {
            // Read what the client is still sending (bounded), so it sees the error.
            let mut drained = 0;
            'drain: while let Ok(Some(mut field)) = multipart.next_field().await {
                while let Ok(Some(chunk)) = field.chunk().await {
                    drained += chunk.len();
                    if drained > api::MAX_DRAIN_BYTES {
                        break 'drain;
                    }
                }
            }
            // The request is refused as a whole: a job already made from it goes.
            if let Some(id) = job.as_ref().and_then(|j| j["id"].as_str()) {
                let _ = worker
                    .call(Method::Delete, &format!("/internal/jobs/{id}"), &[], None)
                    .await;
            }
            Err(err)
        }
    }
}

fn unknown_field(name: &str) -> ApiError {
    ApiError::bad_request(
        "unknown_field",
        format!(
            "`{name}` is not a field of this route; send `file` and optionally `bitrate` (before the file)"
        ),
    )
}

/// Streams one file part to the worker as the body of `POST /internal/jobs`. Nothing is
/// held: each chunk read from the client is written to the worker before the next is read.
/// If the client's body breaks or passes the limit, the worker's request is aborted (not
/// finished), so no job is made from a partial file.
async fn stream_file(
    worker: &Worker<'_>,
    field: &mut multer::Field<'_>,
    filename: &str,
    content_type: Option<String>,
    bitrate: Option<&str>,
) -> Result<Value, ApiError> {
    let extra = [(
        "content-type",
        api::upload_content_type(content_type.as_deref()),
    )];
    let path = format!("/internal/jobs?{}", api::upload_query(filename, bitrate));
    let request = outgoing(
        Method::Post,
        &worker.config.worker_url,
        &path,
        &worker.headers(&extra),
    )?;
    let body = request
        .body()
        .map_err(|()| ApiError::Internal("the request body was already taken".into()))?;
    let response = spin_sdk::http::send::<_, IncomingResponse>(request);
    let limit = worker.config.max_upload_bytes;
    let pump = async move {
        let stream = body
            .write()
            .map_err(|()| ApiError::Internal("the request body is not writable".into()))?;
        let mut written: u64 = 0;
        let result = loop {
            match field.chunk().await {
                Ok(Some(chunk)) => {
                    written += chunk.len() as u64;
                    if written > limit {
                        break Err(ApiError::BodyTooLarge { limit });
                    }
                    if write_all(&stream, &chunk).is_err() {
                        // The worker stopped reading: its answer says why.
                        break Ok(false);
                    }
                }
                Ok(None) => break Ok(true),
                Err(err) => break Err(multipart_error(err)),
            }
        };
        drop(stream);
        match result {
            Ok(true) => {
                OutgoingBody::finish(body, None)
                    .map_err(|err| ApiError::Internal(format!("finishing the upload: {err:?}")))?;
                Ok(())
            }
            Ok(false) => {
                drop(body);
                Ok(())
            }
            Err(err) => {
                drop(body); // dropped unfinished: the worker sees an aborted body
                Err(err)
            }
        }
    };
    let (response, pumped) = futures::join!(response, pump);
    pumped?;
    let response = check(response.map_err(send_error)?).await?;
    let body = read_limited(&response, api::MAX_JSON_BYTES * 16).await?;
    serde_json::from_slice(&body)
        .map_err(|err| ApiError::Internal(format!("the worker's job is not JSON: {err}")))
}

/// Writes all of `data`, waiting for room as the host drains the stream.
fn write_all(stream: &wasi::io::streams::OutputStream, mut data: &[u8]) -> Result<(), ()> {
    while !data.is_empty() {
        let room = stream.check_write().map_err(|_| ())?;
        if room == 0 {
            stream.subscribe().block();
            continue;
        }
        let n = usize::try_from(room).unwrap_or(usize::MAX).min(data.len());
        stream.write(&data[..n]).map_err(|_| ())?;
        data = &data[n..];
    }
    Ok(())
}

async fn send(out: ResponseOutparam, reply: Reply) {
    let headers: Vec<(String, Vec<u8>)> = reply
        .headers
        .into_iter()
        .map(|(name, value)| (name, value.into_bytes()))
        .collect();
    let response = OutgoingResponse::new(Fields::from_list(&headers).expect("valid header names"));
    response
        .set_status_code(reply.status)
        .expect("a valid status code");
    out.set_with_body(response, reply.body).await.ok();
}
