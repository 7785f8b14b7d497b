//! `probe`: a Spin HTTP component used by mp3conv's host tests and benchmarks.
//!
//! It exercises every host feature the host provides (request headers and
//! routing, variables, SQLite, MySQL, outbound HTTP, streaming bodies) and
//! offers hooks for the host's limits (CPU time, memory, traps, in-flight
//! requests during shutdown). Dispatch uses the `spin-path-info` header (the
//! path after the route's base), falling back to the full request path.
//!
//! | Endpoint                  | Behaviour                                              |
//! |---------------------------|--------------------------------------------------------|
//! | `GET /hello`              | `hello` (cheap; for latency benchmarks)                |
//! | `GET /headers`            | method, path with query and all headers as JSON        |
//! | `GET /var/{name}`         | a Spin variable's value, or 500 with the error         |
//! | `POST /sqlite[?db=NAME]`  | runs `{"sql", "params"}`, returns columns and rows     |
//! | `POST /mysql`             | `{"address", "sql", "params", "mode"}` on MySQL        |
//! | `GET /outbound?url=URL`   | outbound GET; `{"status", "body"}` or 502              |
//! | `POST /upstream?url=URL&kb=N` | streams N KiB to `http://` URL in a chunked body, then |
//! |                           | burns CPU without finishing it (until the time limit), |
//! |                           | or traps there with `then=trap`                        |
//! | `GET /spin?ms=N`          | burns CPU for N ms                                     |
//! | `GET /wait?ms=N`          | sleeps N ms without burning CPU                        |
//! | `GET /alloc?mb=N`         | allocates and touches N MiB                            |
//! | `GET /trap`               | panics (a wasm trap)                                   |
//! | `POST /echo`              | streams the request body back                          |
//! | `POST /count`             | byte count and FNV-1a 64 of the streamed request body  |
//! | `GET /stream?mb=N`        | streams N MiB where byte i is `i % 251`                |
//! | `GET`/`HEAD /sse/events?beats=N&ms=M` | `text/event-stream`: `retry: 3000` at once, then N |
//! |                           | `: keepalive` comments M ms apart (idle between), ends |
//! | `GET /sse?beats=N&ms=M`   | the same, at a path the host never counts as a stream  |
//!
//! Query values are form-decoded (`%XX`, and `+` as a space).

use futures::{SinkExt, StreamExt};
use serde_json::{Value as Json, json};
use spin_sdk::http::{Fields, IncomingRequest, Method, OutgoingResponse, ResponseOutparam};
use spin_sdk::{http_component, mysql, sqlite};
use std::time::{Duration, Instant};

const JSON: &str = "application/json";
const TEXT: &str = "text/plain; charset=utf-8";
const OCTETS: &str = "application/octet-stream";
const EVENT_STREAM: &str = "text/event-stream";
const MIB: usize = 1024 * 1024;
const CHUNK: usize = 64 * 1024;

#[http_component]
async fn handle(req: IncomingRequest, out: ResponseOutparam) {
    let path_with_query = req.path_with_query().unwrap_or_default();
    let (full_path, query) = path_with_query
        .split_once('?')
        .unwrap_or((path_with_query.as_str(), ""));
    let path = header(&req, "spin-path-info").unwrap_or_else(|| full_path.to_owned());
    let method = req.method();

    match (&method, path.as_str()) {
        (Method::Get, "/hello") => respond(out, 200, TEXT, "hello").await,
        (Method::Get, "/headers") => {
            let mut headers = serde_json::Map::new();
            for (name, value) in req.headers().entries() {
                let value = String::from_utf8_lossy(&value).into_owned();
                match headers.entry(name.to_lowercase()) {
                    serde_json::map::Entry::Vacant(e) => {
                        e.insert(Json::String(value));
                    }
                    serde_json::map::Entry::Occupied(mut e) => {
                        if let Json::String(s) = e.get_mut() {
                            s.push_str(", ");
                            s.push_str(&value);
                        }
                    }
                }
            }
            let body = json!({
                "method": method.to_string(),
                "path_with_query": path_with_query,
                "headers": headers,
            });
            respond_json(out, 200, &body).await
        }
        (Method::Get, p) if p.starts_with("/var/") => match spin_sdk::variables::get(&p[5..]) {
            Ok(value) => respond(out, 200, TEXT, value).await,
            Err(e) => respond(out, 500, TEXT, format!("{e:?}")).await,
        },
        (Method::Post, "/sqlite") => {
            let db = query_param(query, "db").unwrap_or_else(|| "default".to_owned());
            let (status, body) = match read_json(req).await {
                Ok(body) => sqlite_query(&db, &body),
                Err(e) => (400, json!({ "error": e })),
            };
            respond_json(out, status, &body).await
        }
        (Method::Post, "/mysql") => {
            let (status, body) = match read_json(req).await {
                Ok(body) => mysql_query(&body),
                Err(e) => (400, json!({ "error": e })),
            };
            respond_json(out, status, &body).await
        }
        (Method::Get, "/outbound") => {
            let Some(url) = query_param(query, "url") else {
                return respond_json(out, 400, &json!({ "error": "missing url" })).await;
            };
            let request = spin_sdk::http::Request::get(url).build();
            match spin_sdk::http::send::<_, spin_sdk::http::Response>(request).await {
                Ok(resp) => {
                    let body = String::from_utf8_lossy(resp.body());
                    let body = json!({ "status": resp.status(), "body": body });
                    respond_json(out, 200, &body).await
                }
                Err(e) => respond_json(out, 502, &json!({ "error": format!("{e} ({e:?})") })).await,
            }
        }
        (Method::Post, "/upstream") => {
            let Some(url) = query_param(query, "url") else {
                return respond_json(out, 400, &json!({ "error": "missing url" })).await;
            };
            let rest = url.strip_prefix("http://").unwrap_or(&url);
            let (authority, path) = match rest.split_once('/') {
                Some((authority, path)) => (authority.to_owned(), format!("/{path}")),
                None => (rest.to_owned(), "/".to_owned()),
            };
            let request = spin_sdk::http::OutgoingRequest::new(Fields::new());
            let _ = request.set_method(&Method::Post);
            let _ = request.set_scheme(Some(&spin_sdk::http::Scheme::Http));
            let _ = request.set_authority(Some(&authority));
            let _ = request.set_path_with_query(Some(&path));
            let mut body = request.take_body();
            let response = spin_sdk::http::send::<_, spin_sdk::http::IncomingResponse>(request);
            let kb = number_param(query, "kb");
            let trap = query_param(query, "then").as_deref() == Some("trap");
            let writing = async move {
                for _ in 0..kb {
                    if body.send(vec![b'x'; 1024]).await.is_err() {
                        break;
                    }
                }
                // The body is never finished: a trap (`then=trap`) or the host's time limit
                // ends this.
                if trap {
                    panic!("stopping in the middle of the request body");
                }
                let mut x = 0u64;
                loop {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
            };
            let _ = futures::join!(response, writing);
        }
        (Method::Get, "/spin") => {
            let limit = Duration::from_millis(number_param(query, "ms"));
            let start = Instant::now();
            let mut x = 0u64;
            while start.elapsed() < limit {
                // Pure CPU work between clock reads.
                for i in 0..1000u64 {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
                }
            }
            std::hint::black_box(x);
            respond(out, 200, TEXT, "done").await
        }
        (Method::Get, "/wait") => {
            // Blocks in a wasi poll on a monotonic-clock pollable: idle, not spinning.
            std::thread::sleep(Duration::from_millis(number_param(query, "ms")));
            respond(out, 200, TEXT, "waited").await
        }
        (Method::Get, "/alloc") => {
            let mb = usize::try_from(number_param(query, "mb")).unwrap_or(usize::MAX);
            let len = mb.saturating_mul(MIB);
            // Aborts (traps) if the host's memory limit refuses to grow memory.
            let mut buf = vec![0u8; len];
            for (i, page) in buf.chunks_mut(4096).enumerate() {
                page[0] = (i % 251) as u8 + 1;
            }
            let buf = std::hint::black_box(buf);
            // Sum of the first byte of every 4 KiB page: sum over pages i of (i % 251) + 1.
            let sum: u64 = buf.iter().step_by(4096).map(|&b| u64::from(b)).sum();
            respond(out, 200, TEXT, sum.to_string()).await
        }
        (Method::Get, "/trap") => panic!("probe trap"),
        (Method::Post, "/echo") => {
            let mut input = req.into_body_stream();
            let response = new_response(200, OCTETS);
            let mut sink = response.take_body();
            out.set(response);
            while let Some(chunk) = input.next().await {
                // A read error after the headers went out can't become a status:
                // trap so the host sees a failed response, not a truncated success.
                let chunk = chunk.unwrap_or_else(|e| panic!("reading request body: {e:?}"));
                if let Err(e) = sink.send(chunk).await {
                    eprintln!("echo: writing response body: {e:?}");
                    return;
                }
            }
        }
        (Method::Post, "/count") => {
            let mut input = req.into_body_stream();
            let (mut bytes, mut hash) = (0u64, 0xcbf2_9ce4_8422_2325u64);
            while let Some(chunk) = input.next().await {
                let chunk = match chunk {
                    Ok(chunk) => chunk,
                    Err(e) => {
                        return respond_json(out, 500, &json!({ "error": format!("{e:?}") })).await;
                    }
                };
                bytes += chunk.len() as u64;
                for b in chunk {
                    hash = (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
                }
            }
            let body = json!({ "bytes": bytes, "fnv1a64": format!("{hash:016x}") });
            respond_json(out, 200, &body).await
        }
        (Method::Get, "/stream") => {
            let total = number_param(query, "mb").saturating_mul(MIB as u64);
            // pattern[k..k + CHUNK] is the chunk starting at any offset i with i % 251 == k.
            let pattern: Vec<u8> = (0..CHUNK + 251).map(|i| (i % 251) as u8).collect();
            let response = new_response(200, OCTETS);
            let mut sink = response.take_body();
            out.set(response);
            let mut sent = 0u64;
            while sent < total {
                let len = (total - sent).min(CHUNK as u64) as usize;
                let start = (sent % 251) as usize;
                if let Err(e) = sink.send(pattern[start..start + len].to_vec()).await {
                    eprintln!("stream: writing response body: {e:?}");
                    return;
                }
                sent += len as u64;
            }
        }
        (Method::Get | Method::Head, "/sse/events" | "/sse") => {
            // Like an event stream: the head and a first frame at once, then a heartbeat
            // comment now and then, idle in between (a wasi clock poll, not spinning).
            let beats = number_param(query, "beats");
            let every = Duration::from_millis(number_param(query, "ms"));
            let response = new_response(200, EVENT_STREAM);
            let mut sink = response.take_body();
            out.set(response);
            if let Err(e) = sink.send(b"retry: 3000\n\n".to_vec()).await {
                eprintln!("sse: writing response body: {e:?}");
                return;
            }
            for _ in 0..beats {
                std::thread::sleep(every);
                if let Err(e) = sink.send(b": keepalive\n\n".to_vec()).await {
                    // The client went away: end, giving the slot back.
                    eprintln!("sse: writing response body: {e:?}");
                    return;
                }
            }
        }
        _ => respond_json(out, 404, &json!({ "error": "not found" })).await,
    }
}

/// Runs `{"sql": ..., "params": [...]}` against the named SQLite database.
fn sqlite_query(db: &str, body: &Json) -> (u16, Json) {
    let params: Result<Vec<sqlite::Value>, String> = params(body)
        .iter()
        .map(|p| match p {
            Json::Null => Ok(sqlite::Value::Null),
            Json::Bool(b) => Ok(sqlite::Value::Integer(i64::from(*b))),
            Json::Number(n) => Ok(match n.as_i64() {
                Some(i) => sqlite::Value::Integer(i),
                None => sqlite::Value::Real(n.as_f64().unwrap_or(f64::NAN)),
            }),
            Json::String(s) => Ok(sqlite::Value::Text(s.clone())),
            other => Err(format!("unsupported parameter: {other}")),
        })
        .collect();
    let params = match params {
        Ok(params) => params,
        Err(e) => return (400, json!({ "error": e })),
    };
    let result = sqlite::Connection::open(db).and_then(|conn| conn.execute(sql(body), &params));
    match result {
        Ok(result) => {
            let rows: Vec<Json> = result
                .rows
                .iter()
                .map(|row| {
                    row.values
                        .iter()
                        .map(|v| match v {
                            sqlite::Value::Integer(i) => json!(i),
                            sqlite::Value::Real(f) => json!(f),
                            sqlite::Value::Text(s) => json!(s),
                            sqlite::Value::Blob(b) => json!(b),
                            sqlite::Value::Null => Json::Null,
                        })
                        .collect()
                })
                .collect();
            (200, json!({ "columns": result.columns, "rows": rows }))
        }
        Err(e) => (500, json!({ "error": format!("{e:?}") })),
    }
}

/// Runs `{"address", "sql", "params", "mode": "query"|"execute"}` against MySQL.
fn mysql_query(body: &Json) -> (u16, Json) {
    use mysql::{DbValue, ParameterValue as P};
    let params: Result<Vec<P>, String> = params(body)
        .iter()
        .map(|p| match p {
            Json::Null => Ok(P::DbNull),
            Json::Bool(b) => Ok(P::Boolean(*b)),
            Json::Number(n) => Ok(match (n.as_i64(), n.as_u64()) {
                (Some(i), _) => P::Int64(i),
                (None, Some(u)) => P::Uint64(u),
                _ => P::Floating64(n.as_f64().unwrap_or(f64::NAN)),
            }),
            Json::String(s) => Ok(P::Str(s.clone())),
            other => Err(format!("unsupported parameter: {other}")),
        })
        .collect();
    let params = match params {
        Ok(params) => params,
        Err(e) => return (400, json!({ "error": e })),
    };
    let address = body["address"].as_str().unwrap_or_default();
    let conn = match mysql::Connection::open(address) {
        Ok(conn) => conn,
        Err(e) => return (500, json!({ "error": format!("{e:?}") })),
    };
    if body["mode"].as_str() == Some("execute") {
        return match conn.execute(sql(body), &params) {
            Ok(()) => (200, json!({ "ok": true })),
            Err(e) => (500, json!({ "error": format!("{e:?}") })),
        };
    }
    match conn.query(sql(body), &params) {
        Ok(set) => {
            let columns: Vec<&str> = set.columns.iter().map(|c| c.name.as_str()).collect();
            let rows: Vec<Json> = set
                .rows
                .iter()
                .map(|row| {
                    row.iter()
                        .map(|v| match v {
                            DbValue::Boolean(b) => json!(b),
                            DbValue::Int8(i) => json!(i),
                            DbValue::Int16(i) => json!(i),
                            DbValue::Int32(i) => json!(i),
                            DbValue::Int64(i) => json!(i),
                            DbValue::Uint8(u) => json!(u),
                            DbValue::Uint16(u) => json!(u),
                            DbValue::Uint32(u) => json!(u),
                            DbValue::Uint64(u) => json!(u),
                            DbValue::Floating32(f) => json!(f),
                            DbValue::Floating64(f) => json!(f),
                            DbValue::Str(s) => json!(s),
                            DbValue::Binary(b) => json!(b),
                            DbValue::DbNull => Json::Null,
                            DbValue::Unsupported => json!("unsupported"),
                        })
                        .collect()
                })
                .collect();
            (200, json!({ "columns": columns, "rows": rows }))
        }
        Err(e) => (500, json!({ "error": format!("{e:?}") })),
    }
}

fn sql(body: &Json) -> &str {
    body["sql"].as_str().unwrap_or_default()
}

fn params(body: &Json) -> &[Json] {
    body["params"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// Reads the whole (small) request body as JSON.
async fn read_json(req: IncomingRequest) -> Result<Json, String> {
    let bytes = req.into_body().await.map_err(|e| format!("{e:?}"))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("invalid JSON body: {e}"))
}

/// The first value of a request header, if present and UTF-8.
fn header(req: &IncomingRequest, name: &str) -> Option<String> {
    let values = req.headers().get(name);
    values
        .into_iter()
        .next()
        .and_then(|v| String::from_utf8(v).ok())
}

/// A query parameter's form-decoded value.
fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (form_decode(k) == name).then(|| form_decode(v))
    })
}

/// A numeric query parameter; 0 if missing or invalid.
fn number_param(query: &str, name: &str) -> u64 {
    query_param(query, name)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn form_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
                continue;
            }
            (b'+', _) => out.push(b' '),
            (b, _) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn new_response(status: u16, content_type: &str) -> OutgoingResponse {
    let headers = Fields::from_list(&[("content-type".to_owned(), content_type.into())])
        .expect("valid content-type header");
    let response = OutgoingResponse::new(headers);
    response.set_status_code(status).expect("valid status code");
    response
}

async fn respond(out: ResponseOutparam, status: u16, content_type: &str, body: impl Into<Vec<u8>>) {
    let response = new_response(status, content_type);
    if let Err(e) = out.set_with_body(response, body.into()).await {
        eprintln!("writing response body: {e:?}");
    }
}

async fn respond_json(out: ResponseOutparam, status: u16, body: &Json) {
    let bytes = serde_json::to_vec(body).expect("JSON serialization");
    respond(out, status, JSON, bytes).await
}
