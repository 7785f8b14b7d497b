//! The Spin entry point: `POST` a CloudEvent; 200 once recorded (the source acks), 400 for an
//! event that can never be handled, 503 when it cannot be handled now (the source retries).

use std::time::Duration;

use serde_json::{Value, json};
use spin_sdk::http::{Fields, Method, OutgoingBody, OutgoingRequest, Request, Response, Scheme};
use spin_sdk::http_component;
use spin_sdk::wit::wasi::http0_2_0::outgoing_handler;
use spin_sdk::wit::wasi::http0_2_0::types::RequestOptions;

use crate::config::Config;
use crate::notify::{self, Failure, Outcome, Outside};

#[http_component]
fn handle(request: Request) -> Response {
    if *request.method() != Method::Post {
        return reply(405, error("method_not_allowed", "POST a CloudEvent"))
            .into_builder()
            .header("allow", "POST")
            .build();
    }
    let headers: Vec<(String, String)> = request
        .headers()
        .map(|(name, value)| {
            (
                name.to_ascii_lowercase(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    let config = match Config::load(|name| spin_sdk::variables::get(name).ok()) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("notifier: configuration: {err}");
            return reply(500, error("internal", "the notifier is misconfigured"));
        }
    };
    let db = match mp3conv_sql::open(&config.database) {
        Ok(db) => db,
        Err(err) => return unavailable(&err.message),
    };
    let outside = Spin { config: &config };
    match notify::handle(&config, db.as_ref(), &outside, &headers, request.body()) {
        Ok(Outcome::Recorded {
            notification_id,
            duplicate,
            webhook,
            email,
        }) => reply(
            200,
            json!({
                "notification_id": notification_id,
                "duplicate": duplicate,
                "webhook": webhook.to_json(),
                "email": email.to_json(),
            }),
        ),
        Ok(Outcome::Ignored(reason)) => reply(200, json!({ "ignored": reason })),
        Err(Failure::Malformed(message)) => reply(400, error("malformed_event", &message)),
        Err(Failure::Transient(message)) => unavailable(&message),
    }
}

fn error(code: &str, message: &str) -> Value {
    json!({ "error": { "code": code, "message": message } })
}

fn reply(status: u16, body: Value) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(body.to_string())
        .build()
}

fn unavailable(message: &str) -> Response {
    eprintln!("notifier: transient failure: {message}");
    reply(503, error("unavailable", "try again later"))
        .into_builder()
        .header("retry-after", "1")
        .build()
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
