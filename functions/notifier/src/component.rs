//! The Spin entry point: `POST` a CloudEvent with the events token; 200 once handled (the
//! source acks), 400 for an event that can never be handled, 503 when it cannot be handled now
//! (the source retries); 401 without the token, 413 past the size limit (see [`crate::http`]).

use std::time::Duration;

use futures::StreamExt as _;
use serde_json::Value;
use spin_sdk::http::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingRequest, OutgoingResponse,
    ResponseOutparam, Scheme,
};
use spin_sdk::http_component;
use spin_sdk::wit::wasi::http0_2_0::outgoing_handler;
use spin_sdk::wit::wasi::http0_2_0::types::RequestOptions;

use crate::config::{Config, EventsAuth};
use crate::http::{Answer, BoundedBody, Refusal};
use crate::notify::{self, Failure, Outside};

#[http_component]
async fn handle(request: IncomingRequest, out: ResponseOutparam) {
    let answer = match serve(request).await {
        Ok(answer) => answer,
        Err(refusal) => refusal.answer(),
    };
    send(out, answer).await;
}

/// Checks the caller and the size before reading anything, then reads the event chunk by
/// chunk, at most [`crate::event::MAX_EVENT_BYTES`] of it.
async fn serve(request: IncomingRequest) -> Result<Answer, Refusal> {
    if !matches!(request.method(), Method::Post) {
        return Err(Refusal::MethodNotAllowed);
    }
    let headers: Vec<(String, String)> = request
        .headers()
        .entries()
        .into_iter()
        .map(|(name, value)| {
            (
                name.to_ascii_lowercase(),
                String::from_utf8_lossy(&value).into_owned(),
            )
        })
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let config = Config::load(|name| spin_sdk::variables::get(name).ok()).map_err(|err| {
        eprintln!("notifier: configuration: {err}");
        Refusal::Misconfigured
    })?;
    if !config.events.allows(header("authorization")) {
        if config.events == EventsAuth::Closed {
            eprintln!("notifier: events_token is not set: every event is refused");
        }
        return Err(Refusal::Unauthorized);
    }
    let mut body = BoundedBody::new(header("content-length"))?;
    let mut stream = request.into_body_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|err| {
            eprintln!("notifier: reading the event: {err:?}");
            Refusal::Unreadable
        })?;
        body.push(&chunk)?;
    }
    let body = body.into_bytes();

    let result = match mp3conv_sql::open(&config.database) {
        Ok(db) => notify::handle(
            &config,
            db.as_ref(),
            &Spin { config: &config },
            &headers,
            &body,
        ),
        Err(err) => Err(Failure::Transient(err.message)),
    };
    match &result {
        Ok(outcome) => eprintln!("notifier: {outcome:?}"),
        Err(Failure::Transient(message)) => eprintln!("notifier: transient failure: {message}"),
        Err(Failure::Malformed(message)) => eprintln!("notifier: malformed event: {message}"),
    }
    Ok(crate::http::answer(&result))
}

async fn send(out: ResponseOutparam, answer: Answer) {
    let mut headers: Vec<(String, Vec<u8>)> =
        vec![("content-type".into(), b"application/json".to_vec())];
    headers.extend(
        answer
            .headers
            .iter()
            .map(|(name, value)| ((*name).to_owned(), value.clone().into_bytes())),
    );
    let response = OutgoingResponse::new(Fields::from_list(&headers).expect("valid header names"));
    response
        .set_status_code(answer.status)
        .expect("a valid status code");
    out.set_with_body(response, answer.body.to_string().into_bytes())
        .await
        .ok();
}

struct Spin<'a> {
    config: &'a Config,
}

impl Outside for Spin<'_> {
    fn job(&self, job_id: &str, owner: &str) -> Result<Option<Value>, String> {
        let headers = [
            (
                "authorization".to_owned(),
                format!("Bearer {}", self.config.worker_token),
            ),
            ("x-mp3conv-owner".to_owned(), owner.to_owned()),
        ];
        let url = format!("{}/internal/jobs/{job_id}", self.config.worker_url);
        let (status, body) = call(
            Method::Get,
            &url,
            &headers,
            &[],
            self.config.outbound_timeout,
        )?;
        match status {
            200 => serde_json::from_slice(&body)
                .map(Some)
                .map_err(|err| format!("the worker's job is not JSON: {err}")),
            404 => Ok(None),
            other => Err(format!("the worker answered {other}")),
        }
    }

    fn post(&self, url: &str, headers: &[(String, String)], body: &[u8]) -> Result<u16, String> {
        call(
            Method::Post,
            url,
            headers,
            body,
            self.config.outbound_timeout,
        )
        .map(|(s, _)| s)
    }

    fn sleep(&self, duration: Duration) {
        std::thread::sleep(duration);
    }

    fn now_ms(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }

    fn new_id(&self) -> String {
        uuid::Uuid::new_v4().to_string()
    }
}

/// One blocking HTTP exchange with connect and first-byte timeouts; the status and up to
/// 1 MiB of the body.
fn call(
    method: Method,
    url: &str,
    headers: &[(String, String)],
    body: &[u8],
    timeout: Duration,
) -> Result<(u16, Vec<u8>), String> {
    let (scheme, rest) = match url.split_once("://") {
        Some(("https", rest)) => (Scheme::Https, rest),
        Some(("http", rest)) => (Scheme::Http, rest),
        _ => return Err(format!("`{url}` is not an http(s) URL")),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let fields: Vec<(String, Vec<u8>)> = headers
        .iter()
        .map(|(n, v)| (n.clone(), v.clone().into_bytes()))
        .collect();
    let fields = Fields::from_list(&fields).map_err(|err| format!("bad header: {err:?}"))?;
    let request = OutgoingRequest::new(fields);
    request
        .set_method(&method)
        .and_then(|()| request.set_scheme(Some(&scheme)))
        .and_then(|()| request.set_authority(Some(authority)))
        .and_then(|()| request.set_path_with_query(Some(path)))
        .map_err(|()| format!("cannot address `{url}`"))?;
    let outgoing = request
        .body()
        .map_err(|()| "the request body was taken".to_owned())?;
    let options = RequestOptions::new();
    let nanos = u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX);
    let _ = options.set_connect_timeout(Some(nanos));
    let _ = options.set_first_byte_timeout(Some(nanos));
    let _ = options.set_between_bytes_timeout(Some(nanos));
    let future = outgoing_handler::handle(request, Some(options))
        .map_err(|code| format!("{url}: {code:?}"))?;
    {
        let stream = outgoing
            .write()
            .map_err(|()| "the request body is not writable".to_owned())?;
        let mut rest = body;
        while !rest.is_empty() {
            let room = stream.check_write().map_err(|err| format!("{err:?}"))?;
            if room == 0 {
                stream.subscribe().block();
                continue;
            }
            let n = usize::try_from(room).unwrap_or(usize::MAX).min(rest.len());
            stream.write(&rest[..n]).map_err(|err| format!("{err:?}"))?;
            rest = &rest[n..];
        }
        stream.blocking_flush().map_err(|err| format!("{err:?}"))?;
    }
    OutgoingBody::finish(outgoing, None).map_err(|code| format!("{code:?}"))?;
    future.subscribe().block();
    let response = future
        .get()
        .ok_or_else(|| "no response".to_owned())?
        .map_err(|()| "the response was taken".to_owned())?
        .map_err(|code| format!("{url}: {code:?}"))?;
    let status = response.status();
    let incoming = response
        .consume()
        .map_err(|()| "the response body was taken".to_owned())?;
    let mut received = Vec::new();
    {
        let stream = incoming
            .stream()
            .map_err(|()| "the response body is not readable".to_owned())?;
        while received.len() < 1 << 20 {
            match stream.blocking_read(64 * 1024) {
                Ok(chunk) => received.extend_from_slice(&chunk),
                Err(_) => break, // closed (or failed): what we have is what there is
            }
        }
    }
    Ok((status, received))
}
