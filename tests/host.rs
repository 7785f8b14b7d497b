//! The function host, tested like `wasmtime serve` is: spawn `mp3conv serve` with a manifest
//! that routes to the `probe` test component, talk HTTP to it, check what comes back.

mod common;

use common::{HostOptions, HostProcess, client, component};
use futures::StreamExt;
use serde_json::{Value, json};

/// A manifest with the probe at `/probe/...`, and `extra` appended to its component table.
fn probe_manifest(extra: &str) -> String {
    format!(
        r#"
spin_manifest_version = 2

[application]
name = "probe-app"
version = "9.9.9"

[variables]
greeting = {{ default = "hello" }}
api_token = {{ required = true, secret = true }}

[[trigger.http]]
route = "/probe/..."
component = "probe"

[[trigger.http]]
route = "/users/:id/..."
component = "probe"

[component.probe]
source = "{source}"
sqlite_databases = ["default"]
{extra}

[component.probe.variables]
greeting = "{{{{ greeting }}}}, world"
token = "{{{{ api_token }}}}"
"#,
        source = component("probe").display(),
    )
}

fn start_probe(extra: &str) -> HostProcess {
    HostProcess::start(
        HostOptions::new(probe_manifest(extra)).env("SPIN_VARIABLE_API_TOKEN", "t0ken"),
    )
}

async fn get_json(url: &str) -> (u16, Value) {
    let response = client().get(url).send().await.expect("request");
    let status = response.status().as_u16();
    let body = response.json().await.expect("a JSON body");
    (status, body)
}

#[tokio::test]
async fn routes_requests_with_spin_headers() {
    let host = start_probe("");
    let response = client()
        .get(host.url("/probe/headers?x=1"))
        .header("spin-client-addr", "6.6.6.6:6")
        .header("x-request-id", "test-req-1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-request-id"], "test-req-1");
    let body: Value = response.json().await.unwrap();
    let headers = &body["headers"];
    assert_eq!(
        headers["spin-full-url"],
        format!("http://{}/probe/headers?x=1", host.addr)
    );
    assert_eq!(headers["spin-path-info"], "/headers");
    assert_eq!(headers["spin-matched-route"], "/probe/...");
    assert_eq!(headers["spin-raw-component-route"], "/probe/...");
    assert_eq!(headers["spin-component-route"], "/probe");
    assert_eq!(headers["spin-base-path"], "/");
    assert_eq!(headers["x-request-id"], "test-req-1");
    let client_addr = headers["spin-client-addr"].as_str().unwrap();
    assert!(
        client_addr.starts_with("127.0.0.1:"),
        "forged header must be replaced: {client_addr}"
    );
    assert_eq!(body["method"], "GET");

    let (status, body) = get_json(&host.url("/users/42/headers")).await;
    assert_eq!(status, 200);
    assert_eq!(body["headers"]["spin-path-match-id"], "42");
    assert_eq!(body["headers"]["spin-path-info"], "/headers");

    // No route: a JSON 404 from the host, with a request id.
    let response = client().get(host.url("/nowhere")).send().await.unwrap();
    assert_eq!(response.status(), 404);
    assert!(response.headers().contains_key("x-request-id"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");

    // One log line per request, naming route, component and status.
    let log = host.log();
    assert!(
        log.lines().any(|l| l.contains("route=/probe/...")
            && l.contains("component=probe")
            && l.contains("status=200")),
        "{log}"
    );
}

#[tokio::test]
async fn answers_spin_well_known_routes() {
    let host = start_probe("");
    let response = client()
        .get(host.url("/.well-known/spin/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (status, info) = get_json(&host.url("/.well-known/spin/info")).await;
    assert_eq!(status, 200);
    assert_eq!(info["name"], "probe-app");
    assert_eq!(info["version"], "9.9.9");
    let response = client()
        .get(host.url("/.well-known/spin/other"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
}

#[tokio::test]
async fn variables_come_from_the_manifest_and_the_environment() {
    let host = start_probe("");
    let text = client()
        .get(host.url("/probe/var/greeting"))
        .send()
        .await
        .unwrap();
    assert_eq!(text.status(), 200);
    assert_eq!(text.text().await.unwrap(), "hello, world");
    let token = client()
        .get(host.url("/probe/var/token"))
        .send()
        .await
        .unwrap();
    assert_eq!(token.text().await.unwrap(), "t0ken");
    let undefined = client()
        .get(host.url("/probe/var/nothere"))
        .send()
        .await
        .unwrap();
    assert_eq!(undefined.status(), 500);
    assert!(undefined.text().await.unwrap().contains("Undefined"));
    // The secret's value never reaches the log.
    assert!(!host.log().contains("t0ken"));
}

#[test]
fn refuses_to_start_without_a_required_variable() {
    let failed = HostProcess::start_failing(HostOptions::new(probe_manifest("")));
    assert_ne!(failed.code, Some(0));
    assert!(
        failed.stderr.contains("variables.api_token"),
        "{}",
        failed.stderr
    );
    assert!(
        failed.stderr.contains("SPIN_VARIABLE_API_TOKEN"),
        "{}",
        failed.stderr
    );
}

#[test]
fn refuses_to_start_with_a_bad_manifest_naming_the_field() {
    let cases = [
        (
            probe_manifest("").replace("sqlite_databases", "sqlite_database"),
            "sqlite_database",
        ),
        (
            probe_manifest("").replace("route = \"/probe/...\"", "route = \"probe\""),
            "trigger.http[0].route",
        ),
        (
            probe_manifest("").replace("/probe.wasm", "/missing.wasm"),
            "missing.wasm",
        ),
        (
            probe_manifest("allowed_outbound_hosts = [\"localhost\"]"),
            "allowed_outbound_hosts",
        ),
    ];
    for (manifest, field) in cases {
        let failed = HostProcess::start_failing(
            HostOptions::new(manifest).env("SPIN_VARIABLE_API_TOKEN", "x"),
        );
        assert_ne!(failed.code, Some(0));
        assert!(
            failed.stderr.contains(field),
            "expected `{field}` in: {}",
            failed.stderr
        );
    }
}

async fn sqlite(host: &HostProcess, db: &str, sql: &str, params: Value) -> (u16, Value) {
    let response = client()
        .post(host.url(&format!("/probe/sqlite?db={db}")))
        .json(&json!({ "sql": sql, "params": params }))
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test]
async fn sqlite_persists_in_the_data_directory() {
    let host = start_probe("");
    let (status, body) = sqlite(
        &host,
        "default",
        "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, score REAL, raw BLOB)",
        json!([]),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = sqlite(
        &host,
        "default",
        "INSERT INTO t (name, score) VALUES (?, ?), (?, NULL)",
        json!(["ünïcode", 1.5, "'; DROP TABLE t; --"]),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = sqlite(
        &host,
        "default",
        "SELECT id, name, score FROM t ORDER BY id",
        json!([]),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["columns"], json!(["id", "name", "score"]));
    assert_eq!(
        body["rows"],
        json!([[1, "ünïcode", 1.5], [2, "'; DROP TABLE t; --", null]])
    );
    // Column names come back even when no row does.
    let (_, body) = sqlite(
        &host,
        "default",
        "SELECT name FROM t WHERE id = ?",
        json!([99]),
    )
    .await;
    assert_eq!(body, json!({ "columns": ["name"], "rows": [] }));
    // A label the component did not declare is refused.
    let (status, body) = sqlite(&host, "other", "SELECT 1", json!([])).await;
    assert_eq!(status, 500);
    assert!(
        body["error"].as_str().unwrap().contains("AccessDenied"),
        "{body}"
    );
    // Bad SQL is an error for the guest, not for the host.
    let (status, body) = sqlite(&host, "default", "SELEC nonsense", json!([])).await;
    assert_eq!(status, 500);
    assert!(body["error"].as_str().unwrap().contains("Io"), "{body}");

    assert!(host.data_dir().join("sqlite_db.db").exists());
    let dir = host.stop_keeping_dir();
    let mut options = HostOptions::new(probe_manifest("")).env("SPIN_VARIABLE_API_TOKEN", "x");
    options.dir = Some(dir);
    let host = HostProcess::start(options);
    let (_, body) = sqlite(&host, "default", "SELECT count(*) AS n FROM t", json!([])).await;
    assert_eq!(body["rows"], json!([[2]]));
}

fn mysql_url() -> String {
    std::env::var("MP3CONV_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".to_owned())
}

#[tokio::test]
async fn mysql_through_the_spin_interface() {
    use sqlx::Connection as _;
    let server = mysql_url();
    let database = format!("mp3conv_host_{}", std::process::id());
    let mut admin = sqlx::MySqlConnection::connect(&server)
        .await
        .expect("MariaDB at MP3CONV_TEST_MYSQL_URL");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {database}; CREATE DATABASE {database}"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    let address = format!("{server}/{database}");
    let url = url_host_port(&server);
    let host = start_probe(&format!("allowed_outbound_hosts = [\"mysql://{url}\"]"));

    let call = |mode: &'static str, sql: &'static str, params: Value| {
        let address = address.clone();
        let url = host.url("/probe/mysql");
        async move {
            let response = client()
                .post(url)
                .json(&json!({ "address": address, "mode": mode, "sql": sql, "params": params }))
                .send()
                .await
                .unwrap();
            (
                response.status().as_u16(),
                response.json::<Value>().await.unwrap(),
            )
        }
    };
    let (status, body) = call("execute", "CREATE TABLE users (id BIGINT PRIMARY KEY AUTO_INCREMENT, email VARCHAR(255) NOT NULL, age INT NULL, ok BOOLEAN)", json!([])).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = call(
        "execute",
        "INSERT INTO users (email, age, ok) VALUES (?, ?, ?), (?, NULL, ?)",
        json!(["a@example.com", 41, true, "x' OR '1'='1", false]),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = call(
        "query",
        "SELECT id, email, age FROM users ORDER BY id",
        json!([]),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["columns"], json!(["id", "email", "age"]));
    assert_eq!(
        body["rows"],
        json!([[1, "a@example.com", 41], [2, "x' OR '1'='1", null]])
    );
    let (status, body) = call(
        "query",
        "SELECT email FROM users WHERE email = ?",
        json!(["x' OR '1'='1"]),
    )
    .await;
    assert_eq!(
        (status, body["rows"].clone()),
        (200, json!([["x' OR '1'='1"]]))
    );
    let (status, body) = call("query", "SELECT nope FROM users", json!([])).await;
    assert_eq!(status, 500);
    assert!(
        body["error"].as_str().unwrap().contains("QueryFailed"),
        "{body}"
    );

    // The rows are really in MariaDB.
    let count: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM {database}.users"
    )))
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert_eq!(count, 2);

    // A component without the address in allowed_outbound_hosts cannot connect.
    let denied = start_probe("");
    let response = client()
        .post(denied.url("/probe/mysql"))
        .json(&json!({ "address": address, "mode": "query", "sql": "SELECT 1", "params": [] }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 500);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("allowed_outbound_hosts"),
        "{body}"
    );

    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE {database}")))
        .execute(&mut admin)
        .await
        .unwrap();
}

/// `mysql://user@host:port` -> `host:port`.
fn url_host_port(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let rest = rest.split_once('@').map_or(rest, |(_, rest)| rest);
    rest.split('/').next().unwrap().to_owned()
}

/// A plain HTTP server on loopback that counts requests and answers `body`.
async fn counting_server(
    body: &'static str,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    let upstream = Upstream::start(body, Closing::Never).await;
    (upstream.addr, upstream.requests)
}

/// When an [`Upstream`] closes its connections.
#[derive(Clone, Copy)]
enum Closing {
    /// Kept alive for as long as the client likes.
    Never,
    /// After each response, saying so (`connection: close`).
    AfterEachResponse,
    /// Silently, once a connection has waited this long for its next request.
    WhenIdleFor(std::time::Duration),
}

/// A plain HTTP server on loopback that answers `body` and counts requests and connections.
struct Upstream {
    addr: std::net::SocketAddr,
    requests: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    connections: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Upstream {
    async fn start(body: &'static str, closing: Closing) -> Upstream {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = std::sync::Arc::new(AtomicUsize::new(0));
        let connections = std::sync::Arc::new(AtomicUsize::new(0));
        let (counter, accepted) = (requests.clone(), connections.clone());
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                accepted.fetch_add(1, Ordering::SeqCst);
                let counter = counter.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |_request| {
                        counter.fetch_add(1, Ordering::SeqCst);
                        async move {
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(
                                http_body_util::Full::new(bytes::Bytes::from_static(
                                    body.as_bytes(),
                                )),
                            ))
                        }
                    });
                    let mut builder = hyper::server::conn::http1::Builder::new();
                    match closing {
                        Closing::Never => {}
                        Closing::AfterEachResponse => {
                            builder.keep_alive(false);
                        }
                        Closing::WhenIdleFor(idle) => {
                            builder
                                .timer(hyper_util::rt::TokioTimer::new())
                                .header_read_timeout(idle);
                        }
                    }
                    let _ = builder
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Upstream {
            addr,
            requests,
            connections,
        }
    }

    fn requests(&self) -> usize {
        self.requests.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn connections(&self) -> usize {
        self.connections.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// `GET /probe/outbound?url=<target>` on `host`: the probe's status and what it reports.
async fn outbound(host: &HostProcess, target: &str) -> (u16, Value) {
    let response = client()
        .get(host.url("/probe/outbound"))
        .query(&[("url", target)])
        .send()
        .await
        .unwrap();
    (
        response.status().as_u16(),
        response.json::<Value>().await.unwrap(),
    )
}

/// `rounds` outbound requests through `host` to `addr`, one after another, each answered with
/// `expected` by the upstream.
async fn outbound_rounds(
    host: &HostProcess,
    addr: std::net::SocketAddr,
    rounds: usize,
    expected: &str,
) {
    for round in 0..rounds {
        let (status, body) = outbound(host, &format!("http://{addr}/r{round}")).await;
        assert_eq!(
            (status, body["body"].as_str()),
            (200, Some(expected)),
            "{body}"
        );
    }
}

/// A host the manifest names (the worker, in mp3conv) is called over the connections of
/// earlier requests, as Spin does, instead of a new connection each time.
#[tokio::test]
async fn outbound_connections_to_a_named_host_are_reused() {
    let upstream = Upstream::start("pooled", Closing::Never).await;
    let addr = upstream.addr;
    let host = start_probe(&format!("allowed_outbound_hosts = [\"http://{addr}\"]"));
    outbound_rounds(&host, addr, 10, "pooled").await;
    assert_eq!(upstream.requests(), 10);
    // One connection carries them all; a second is allowed for a request that came before
    // the first connection was back in the pool. Without reuse it would be 10.
    assert!(
        upstream.connections() <= 2,
        "{} connections for 10 requests",
        upstream.connections()
    );
}

/// A connection its server closes, saying so or silently while it waits in the pool, is
/// never used again: every request still gets its answer.
#[tokio::test]
async fn outbound_connections_closed_by_the_server_are_not_reused() {
    let closing = Upstream::start("closing", Closing::AfterEachResponse).await;
    let addr = closing.addr;
    let host = start_probe(&format!("allowed_outbound_hosts = [\"http://{addr}\"]"));
    outbound_rounds(&host, addr, 5, "closing").await;
    assert_eq!((closing.requests(), closing.connections()), (5, 5));

    let idle = std::time::Duration::from_millis(100);
    let impatient = Upstream::start("impatient", Closing::WhenIdleFor(idle)).await;
    let addr = impatient.addr;
    let host = start_probe(&format!("allowed_outbound_hosts = [\"http://{addr}\"]"));
    for _ in 0..3 {
        outbound_rounds(&host, addr, 1, "impatient").await;
        // Past the server's patience: the pooled connection is closed by the time the next
        // request comes.
        tokio::time::sleep(idle * 4).await;
    }
    assert_eq!((impatient.requests(), impatient.connections()), (3, 3));
}

/// A server on loopback that reads each request's whole body and records, by path, how many
/// bytes came or why the body broke off; it answers once the body is over.
async fn body_recorder() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::Mutex<Vec<(String, Result<usize, String>)>>>,
) {
    use http_body_util::BodyExt as _;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let recorded = bodies.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let recorded = recorded.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |request: hyper::Request<hyper::body::Incoming>| {
                        let recorded = recorded.clone();
                        async move {
                            let path = request.uri().path().to_owned();
                            let outcome = match request.into_body().collect().await {
                                Ok(body) => Ok(body.to_bytes().len()),
                                Err(err) => Err(err.to_string()),
                            };
                            recorded.lock().unwrap().push((path, outcome));
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(
                                http_body_util::Full::new(bytes::Bytes::from_static(b"recorded")),
                            ))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, bodies)
}

/// A component stopped in the middle of a streamed request body: the server it was sending
/// to sees the body break off, never a complete request holding part of it (an upload to the
/// worker that became a job of half a file). The stopped request goes out on a connection
/// pooled by an earlier one, which outlives the component.
async fn assert_a_cut_body_breaks_off(host: &HostProcess, then: &str, status: u16) {
    let (addr, bodies) = body_recorder().await;
    let (first, body) = outbound(host, &format!("http://{addr}/first")).await;
    assert_eq!(
        (first, body["body"].as_str()),
        (200, Some("recorded")),
        "{body}"
    );

    let response = client()
        .post(host.url("/probe/upstream"))
        .query(&[
            ("url", format!("http://{addr}/upload")),
            ("kb", "256".into()),
            ("then", then.into()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), status);

    // The server records the upload once its body is over, one way or the other.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let upload = loop {
        let recorded = bodies.lock().unwrap().clone();
        if let Some((_, outcome)) = recorded.iter().find(|(path, _)| path == "/upload") {
            break outcome.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the upload's body never ended: {recorded:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert!(
        upload.is_err(),
        "a cut body arrived as complete: {upload:?}"
    );
    assert_eq!(bodies.lock().unwrap()[0], ("/first".to_owned(), Ok(0)));
}

/// Stopped by its time limit (short here: reaching it is what is tested).
#[tokio::test]
async fn an_outbound_body_cut_short_by_the_time_limit_never_looks_complete() {
    let host = HostProcess::start(
        HostOptions::new(probe_manifest(
            "allowed_outbound_hosts = [\"http://127.0.0.1:*\"]",
        ))
        .env("SPIN_VARIABLE_API_TOKEN", "x")
        .arg("--component-limit")
        .arg("probe:timeout=1s"),
    );
    assert_a_cut_body_breaks_off(&host, "spin", 504).await;
}

/// Stopped by a trap, on the host's default limits.
#[tokio::test]
async fn an_outbound_body_cut_short_by_a_trap_never_looks_complete() {
    let host = start_probe("allowed_outbound_hosts = [\"http://127.0.0.1:*\"]");
    assert_a_cut_body_breaks_off(&host, "trap", 500).await;
}

#[tokio::test]
async fn outbound_http_is_limited_to_allowed_hosts() {
    use std::sync::atomic::Ordering;
    let (allowed, allowed_hits) = counting_server("from allowed").await;
    let (denied, denied_hits) = counting_server("from denied").await;
    let host = start_probe(&format!("allowed_outbound_hosts = [\"http://{allowed}\"]"));

    let (status, body) = outbound(&host, &format!("http://{allowed}/x")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], 200);
    assert_eq!(body["body"], "from allowed");
    assert_eq!(allowed_hits.load(Ordering::SeqCst), 1);

    let (status, body) = outbound(&host, &format!("http://{denied}/x")).await;
    assert_eq!(status, 502, "{body}");
    assert!(
        body["error"].to_string().contains("HttpRequestDenied"),
        "{body}"
    );
    assert_eq!(
        denied_hits.load(Ordering::SeqCst),
        0,
        "a denied request must never connect"
    );
}

/// A destination admitted only by a wildcard host reaches public addresses only, checked on
/// the address connected to (any spelling of loopback, or a name resolving to it, is
/// refused); a host the manifest names is trusted.
#[tokio::test]
async fn a_wildcard_outbound_entry_never_reaches_loopback() {
    use std::sync::atomic::Ordering;
    let (addr, hits) = counting_server("reached").await;
    let port = addr.port();
    let wildcard = start_probe(&format!("allowed_outbound_hosts = [\"http://*:{port}\"]"));
    for host in [
        "localhost",
        "127.0.0.1",
        "2130706433",
        "0x7f000001",
        "127.1",
    ] {
        let url = wildcard.url(&format!("/probe/outbound?url=http://{host}:{port}/"));
        let (status, body) = get_json(&url).await;
        assert_eq!(status, 502, "{host}: {body}");
        assert!(
            body["error"]
                .to_string()
                .contains("DestinationIpProhibited"),
            "{host}: {body}"
        );
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "a refused request must never connect"
    );

    let named = start_probe(&format!(
        "allowed_outbound_hosts = [\"http://localhost:{port}\"]"
    ));
    let url = named.url(&format!("/probe/outbound?url=http://localhost:{port}/"));
    let (status, body) = get_json(&url).await;
    assert_eq!(
        (status, body["body"].as_str()),
        (200, Some("reached")),
        "{body}"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_request_past_its_time_limit_gets_an_error_and_the_host_lives_on() {
    let host = HostProcess::start(
        HostOptions::new(probe_manifest(""))
            .env("SPIN_VARIABLE_API_TOKEN", "x")
            .arg("--component-limit")
            .arg("probe:timeout=1s"),
    );
    // Burning CPU: stopped by epoch interruption.
    let (status, body) = get_json(&host.url("/probe/spin?ms=20000")).await;
    assert_eq!(status, 504);
    assert_eq!(body["error"]["code"], "timeout");
    // Idle in a host call: stopped by the host's timer.
    let (status, body) = get_json(&host.url("/probe/wait?ms=20000")).await;
    assert_eq!(status, 504);
    assert_eq!(body["error"]["code"], "timeout");
    let response = client().get(host.url("/probe/hello")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "hello");
}

#[tokio::test]
async fn a_component_over_its_memory_cap_fails_alone() {
    let host = HostProcess::start(
        HostOptions::new(probe_manifest(""))
            .env("SPIN_VARIABLE_API_TOKEN", "x")
            .arg("--component-limit")
            .arg("probe:memory=16MiB"),
    );
    let (status, body) = get_json(&host.url("/probe/alloc?mb=64")).await;
    assert_eq!(status, 500);
    assert_eq!(body["error"]["code"], "component_failed");
    let response = client()
        .get(host.url("/probe/alloc?mb=4"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_trap_is_a_500_for_that_request_only() {
    let host = start_probe("");
    let (status, body) = get_json(&host.url("/probe/trap")).await;
    assert_eq!(status, 500);
    assert_eq!(body["error"]["code"], "component_failed");
    // The cause is logged, not sent.
    assert!(!body.to_string().contains("probe trap"));
    assert!(host.log().contains("probe trap"), "{}", host.log());
    let response = client().get(host.url("/probe/hello")).send().await.unwrap();
    assert_eq!(response.status(), 200);
}

/// A streaming POST to `/probe/echo` whose body the test feeds chunk by chunk.
struct Echo {
    sender: tokio::sync::mpsc::Sender<Result<bytes::Bytes, std::io::Error>>,
    response: reqwest::Response,
}

impl Echo {
    /// Starts the request and waits until the component has echoed the first chunk: from then
    /// on the request is certainly in flight inside an instance.
    async fn start(host: &HostProcess) -> Echo {
        let (sender, receiver) = tokio::sync::mpsc::channel(4);
        let body =
            reqwest::Body::wrap_stream(tokio_stream::wrappers::ReceiverStream::new(receiver));
        sender
            .send(Ok(bytes::Bytes::from_static(b"first;")))
            .await
            .unwrap();
        let mut response = client()
            .post(host.url("/probe/echo"))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let chunk = response
            .chunk()
            .await
            .unwrap()
            .expect("the first echoed chunk");
        assert_eq!(&chunk[..], b"first;");
        Echo { sender, response }
    }

    /// Sends the rest and returns everything echoed after the first chunk.
    async fn finish(self, rest: &'static [u8]) -> Vec<u8> {
        self.sender
            .send(Ok(bytes::Bytes::from_static(rest)))
            .await
            .unwrap();
        drop(self.sender);
        self.response.bytes().await.unwrap().to_vec()
    }
}

#[tokio::test]
async fn requests_beyond_the_concurrency_cap_get_503() {
    let host = HostProcess::start(
        HostOptions::new(probe_manifest(""))
            .env("SPIN_VARIABLE_API_TOKEN", "x")
            .arg("--max-concurrent-requests")
            .arg("2"),
    );
    let first = Echo::start(&host).await;
    let second = Echo::start(&host).await;
    let response = client().get(host.url("/probe/hello")).send().await.unwrap();
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "overloaded");

    assert_eq!(first.finish(b"rest").await, b"rest");
    assert_eq!(second.finish(b"rest").await, b"rest");
    let response = client().get(host.url("/probe/hello")).send().await.unwrap();
    assert_eq!(
        response.status(),
        200,
        "permits come back when requests finish"
    );
}

const FNV_OFFSET: u64 = 0xcbf29ce484222325;
const FNV_PRIME: u64 = 0x100000001b3;

fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    hash
}

#[tokio::test]
async fn streams_200_mb_each_way_with_flat_memory() {
    const MB: usize = 200;
    let host = start_probe("");
    // Warm up: one instance, so the baseline includes the pool's first slot.
    let response = client().get(host.url("/probe/hello")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let (baseline, _) = common::rss(host.pid());

    // Request body: 200 MiB generated on the fly, counted and hashed by the component.
    let chunk: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
    let expected_hash = (0..MB).fold(FNV_OFFSET, |hash, _| fnv1a(hash, &chunk));
    let chunk = bytes::Bytes::from(chunk);
    let stream =
        futures::stream::iter((0..MB).map(move |_| Ok::<_, std::io::Error>(chunk.clone())));
    let response = client()
        .post(host.url("/probe/count"))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["bytes"], (MB * 1024 * 1024) as u64);
    assert_eq!(body["fnv1a64"], format!("{expected_hash:016x}"));

    // Response body: 200 MiB generated by the component, checked byte by byte.
    let response = client()
        .get(host.url(&format!("/probe/stream?mb={MB}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut stream = response.bytes_stream();
    let mut offset = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        for (i, byte) in chunk.iter().enumerate() {
            assert_eq!(*byte, ((offset + i) % 251) as u8, "byte {}", offset + i);
        }
        offset += chunk.len();
    }
    assert_eq!(offset, MB * 1024 * 1024);

    let (_, peak) = common::rss(host.pid());
    let growth = peak.saturating_sub(baseline);
    assert!(
        growth < 64 << 20,
        "host memory grew by {} MiB while streaming {MB} MiB each way",
        growth >> 20
    );
}

#[tokio::test]
async fn sigterm_drains_a_request_in_flight_then_exits_cleanly() {
    let host = start_probe("");
    let echo = Echo::start(&host).await;
    host.terminate();
    // The request in flight still completes, in full.
    assert_eq!(echo.finish(b"after-sigterm").await, b"after-sigterm");
    let addr = host.addr;
    assert_eq!(host.wait(), Some(0));
    // And nothing listens any more.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[test]
fn compiled_components_are_cached_by_content() {
    let cache = tempfile::tempdir().unwrap();
    let start = || {
        let mut options = HostOptions::new(probe_manifest("")).env("SPIN_VARIABLE_API_TOKEN", "x");
        options.cache_dir = Some(cache.path().to_owned());
        HostProcess::start(options)
    };
    let first = start();
    assert!(first.log().contains("cached=false"), "{}", first.log());
    drop(first);
    let cached = std::fs::read_dir(cache.path())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|entry| entry.path().extension().is_some_and(|ext| ext == "cwasm"))
        .count();
    assert_eq!(cached, 1, "one compiled component in the cache");
    let second = start();
    assert!(second.log().contains("cached=true"), "{}", second.log());
}

/// Asks the probe for an event stream (`GET .../events`, `Accept: text/event-stream`) sending
/// `beats` heartbeat comments `ms` apart; the response as it comes, admitted or not.
async fn ask_for_stream(host: &HostProcess, beats: u32, ms: u32) -> reqwest::Response {
    ask_for_stream_on(&client(), host, beats, ms).await
}

async fn ask_for_stream_on(
    client: &reqwest::Client,
    host: &HostProcess,
    beats: u32,
    ms: u32,
) -> reqwest::Response {
    client
        .get(host.url(&format!("/probe/sse/events?beats={beats}&ms={ms}")))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap()
}

/// An event stream that is certainly open: its head and its first frame came. It stays open
/// (a heartbeat every 100 ms, for a minute at most) until dropped.
async fn open_stream(host: &HostProcess) -> reqwest::Response {
    open_stream_beating(host, 600, 100).await
}

async fn open_stream_beating(host: &HostProcess, beats: u32, ms: u32) -> reqwest::Response {
    let mut response = ask_for_stream(host, beats, ms).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let chunk = response.chunk().await.unwrap().expect("the first frame");
    assert_eq!(&chunk[..], b"retry: 3000\n\n");
    response
}

/// A refusal by a cap: the given status, `Retry-After`, and the host's JSON error.
async fn assert_refused(response: reqwest::Response, status: u16, code: &str) {
    assert_eq!(response.status(), status);
    let retry_after = response.headers()["retry-after"].to_str().unwrap();
    assert!(retry_after.parse::<u64>().unwrap() >= 1, "{retry_after}");
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
}

/// Streams hold an instance for minutes: they have slots of their own, so ordinary requests
/// filling theirs do not keep a stream out.
#[tokio::test]
async fn a_stream_is_served_while_ordinary_slots_are_full() {
    let host = HostProcess::start(
        HostOptions::new(probe_manifest(""))
            .env("SPIN_VARIABLE_API_TOKEN", "x")
            .arg("--max-concurrent-requests")
            .arg("2"),
    );
    let first = Echo::start(&host).await;
    let second = Echo::start(&host).await;
    let response = client().get(host.url("/probe/hello")).send().await.unwrap();
    assert_refused(response, 503, "overloaded").await;
    // Only a GET (or HEAD) of a path ending in `/events` is a stream: the header alone is not, so it
    // cannot move other work out of the ordinary cap.
    let not_streams = [
        client().get(host.url("/probe/sse?beats=0&ms=0")),
        client().post(host.url("/probe/sse/events?beats=0&ms=0")),
        client().get(host.url("/probe/hello")),
    ];
    for request in not_streams {
        let response = request
            .header("accept", "text/event-stream")
            .send()
            .await
            .unwrap();
        assert_refused(response, 503, "overloaded").await;
    }
    // Nor is a stream refused by `q=0`.
    let response = client()
        .get(host.url("/probe/sse/events?beats=0&ms=0"))
        .header("accept", "text/event-stream;q=0")
        .send()
        .await
        .unwrap();
    assert_refused(response, 503, "overloaded").await;

    // A HEAD opens a stream as a GET does, so it is one: served from the streams' lane.
    let response = client()
        .head(host.url("/probe/sse/events?beats=0&ms=0"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let mut stream = open_stream(&host).await;
    let chunk = stream.chunk().await.unwrap().expect("a heartbeat");
    assert_eq!(&chunk[..], b": keepalive\n\n");
    assert_eq!(first.finish(b"rest").await, b"rest");
    assert_eq!(second.finish(b"rest").await, b"rest");
    let log = host.log();
    assert!(
        log.lines()
            .any(|l| l.contains("path=/probe/sse/events") && l.contains("stream=true")),
        "{log}"
    );
}

/// One client's open streams are capped (429), and that cap leaves its ordinary requests
/// alone; a stream that ends gives its slot back.
#[tokio::test]
async fn streams_beyond_the_per_client_cap_get_429() {
    let host = HostProcess::start(
        HostOptions::new(probe_manifest(""))
            .env("SPIN_VARIABLE_API_TOKEN", "x")
            .arg("--max-streams-per-client")
            .arg("2"),
    );
    let first = open_stream(&host).await;
    let _second = open_stream(&host).await;
    assert_refused(ask_for_stream(&host, 1, 0).await, 429, "too_many_streams").await;
    let response = client().get(host.url("/probe/hello")).send().await.unwrap();
    assert_eq!(
        response.status(),
        200,
        "ordinary requests have their own slots"
    );
    assert_eq!(response.text().await.unwrap(), "hello");

    // The client goes away; the host stops its guest and its slot comes back.
    drop(first);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let response = ask_for_stream(&host, 0, 0).await;
        if response.status() == 200 {
            assert_eq!(response.text().await.unwrap(), "retry: 3000\n\n");
            break;
        }
        assert_refused(response, 429, "too_many_streams").await;
        assert!(
            std::time::Instant::now() < deadline,
            "a closed stream's slot never came back"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The host's open streams are capped (503); ordinary requests still get through.
#[tokio::test]
async fn streams_beyond_the_host_cap_get_503() {
    let host = HostProcess::start(
        HostOptions::new(probe_manifest(""))
            .env("SPIN_VARIABLE_API_TOKEN", "x")
            .arg("--max-streams")
            .arg("2"),
    );
    let _first = open_stream(&host).await;
    let _second = open_stream(&host).await;
    assert_refused(ask_for_stream(&host, 1, 0).await, 503, "too_many_streams").await;
    let response = client().get(host.url("/probe/hello")).send().await.unwrap();
    assert_eq!(response.status(), 200);
}

/// The request timeout bounds work and time without progress, not a stream's life: a stream
/// idle but for a heartbeat (1 s apart here, 15 s in production) outlives a 3 s timeout, while
/// one silent for longer than the timeout is cut.
#[tokio::test]
async fn a_stream_with_heartbeats_outlives_the_request_timeout() {
    let host = HostProcess::start(
        HostOptions::new(probe_manifest(""))
            .env("SPIN_VARIABLE_API_TOKEN", "x")
            .arg("--request-timeout")
            .arg("3s"),
    );
    let beating = async {
        let started = std::time::Instant::now();
        let response = ask_for_stream(&host, 6, 1000).await;
        assert_eq!(response.status(), 200);
        let body = response
            .text()
            .await
            .expect("the whole stream, ended cleanly");
        (started.elapsed(), body)
    };
    let silent = async {
        let mut response = ask_for_stream(&host, 2, 5000).await;
        assert_eq!(response.status(), 200);
        let mut body = Vec::new();
        let ended = loop {
            match response.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                Ok(None) => break "cleanly",
                Err(_) => break "with an error",
            }
        };
        (String::from_utf8(body).unwrap(), ended)
    };
    let ((lived, body), (silent_body, silent_end)) = tokio::join!(beating, silent);
    assert!(
        lived >= std::time::Duration::from_secs(6),
        "the stream lived {lived:?}"
    );
    assert_eq!(
        body,
        format!("retry: 3000\n\n{}", ": keepalive\n\n".repeat(6))
    );
    assert_eq!(
        (silent_body.as_str(), silent_end),
        ("retry: 3000\n\n", "with an error"),
        "a stream silent past the timeout is cut"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !host
        .log()
        .contains("time limit reached while streaming the response")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no time-limit log line: {}",
            host.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// A client that disconnects from its streams gets their slots back at once: the host stops
/// their guests when it drops their response bodies, instead of the guests learning it at
/// their next write (a heartbeat, 30 s away here).
#[tokio::test]
async fn a_stream_left_by_its_client_frees_its_slots_at_once() {
    const PER_CLIENT: usize = 16;
    let host = HostProcess::start(
        HostOptions::new(probe_manifest(""))
            .env("SPIN_VARIABLE_API_TOKEN", "x")
            .arg("--max-streams-per-client")
            .arg(PER_CLIENT.to_string()),
    );
    let mut streams = Vec::new();
    for _ in 0..PER_CLIENT {
        streams.push(open_stream_beating(&host, 2, 30_000).await);
    }
    assert_refused(ask_for_stream(&host, 0, 0).await, 429, "too_many_streams").await;

    // The client goes away: every connection closes.
    drop(streams);
    let left = std::time::Instant::now();
    let deadline = left + std::time::Duration::from_secs(5);
    // Their slots come back at once: the client may open as many streams again. (A new
    // `Client`: no connection of the old streams is reused.)
    let again = client();
    let mut reopened = Vec::new();
    while reopened.len() < PER_CLIENT {
        let mut response = ask_for_stream_on(&again, &host, 2, 30_000).await;
        if response.status() == 429 {
            assert!(
                std::time::Instant::now() < deadline,
                "the closed streams' slots are still held: {} of {PER_CLIENT} came back",
                reopened.len()
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            continue;
        }
        assert_eq!(response.status(), 200);
        let chunk = response.chunk().await.unwrap().expect("the first frame");
        assert_eq!(&chunk[..], b"retry: 3000\n\n");
        reopened.push(response);
    }
    // Because their guests were stopped, each saying so.
    let stopped = |log: &str| {
        log.matches("the client left the stream: component stopped")
            .count()
    };
    while stopped(&host.log()) < PER_CLIENT {
        assert!(
            std::time::Instant::now() < deadline,
            "not every guest of the closed streams was stopped: {}",
            host.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_refused(
        ask_for_stream_on(&again, &host, 0, 0).await,
        429,
        "too_many_streams",
    )
    .await;
}
