//! Driving the system over HTTP as clients do, with every response checked against
//! `openapi.yaml` (see [`super::openapi`]): a status the document does not list for that
//! route, a content type it does not name or a JSON body its schema refuses fails the test.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use reqwest::{Method, RequestBuilder, Response};
use serde_json::{Value, json};

use super::openapi::{Exchange, document};
use super::{HostOptions, HostProcess, WorkerProcess, client, media, mp3conv, repo_manifest};

pub const INTERNAL_TOKEN: &str = "gateway-tests-internal-token";
/// How long a job may take to settle before the test fails.
pub const JOB_DEADLINE: Duration = Duration::from_secs(180);

/// The documented operations: (METHOD, path template) -> the status keys it documents.
pub fn documented() -> &'static BTreeMap<(String, String), Vec<String>> {
    static DOC: OnceLock<BTreeMap<(String, String), Vec<String>>> = OnceLock::new();
    DOC.get_or_init(|| document().operations())
}

/// The documented path template a concrete path falls under.
pub fn template(path: &str) -> Option<String> {
    document().template(path).map(str::to_owned)
}

/// Fails the test unless the answer is what `openapi.yaml` documents for the request.
pub fn conforms(method: &str, path: &str, status: u16, content_type: Option<&str>, body: &[u8]) {
    let exchange = Exchange {
        method,
        path,
        status,
        content_type,
        body,
    };
    if let Err(drift) = document().check(&exchange) {
        panic!(
            "{method} {path} -> {status}: {drift}\nbody: {}",
            String::from_utf8_lossy(&body[..body.len().min(2000)])
        );
    }
}

/// Fails the test unless an answer the host gives on its own (a raw-socket test's 408, say) is
/// the response `name` in `components/responses` of `openapi.yaml`.
pub fn conforms_to_response(name: &str, content_type: Option<&str>, body: &[u8]) {
    let exchange = Exchange {
        method: "",
        path: "",
        status: 0,
        content_type,
        body,
    };
    if let Err(drift) = document().check_component_response(name, &exchange) {
        panic!(
            "{name}: {drift}\nbody: {}",
            String::from_utf8_lossy(&body[..body.len().min(2000)])
        );
    }
}

/// Sends a request and checks the answer against the OpenAPI document ([`conforms`]) and the
/// error rules: JSON errors, a request id, never a 5xx other than 503. The body is read here
/// to be checked; the returned response carries it unchanged.
pub async fn send(request: RequestBuilder) -> Response {
    let (client, request) = request.build_split();
    let request = request.expect("a valid request");
    let method = request.method().to_string();
    let path = request.url().path().to_owned();
    let response = client.execute(request).await.expect("the system answers");
    let status = response.status();
    let version = response.version();
    let headers = response.headers().clone();
    let body = response.bytes().await.expect("the whole body");
    assert!(
        headers.contains_key("x-request-id"),
        "{method} {path}: no x-request-id"
    );
    let content_type = headers
        .get("content-type")
        .map(|value| value.to_str().expect("an ASCII content type"));
    conforms(&method, &path, status.as_u16(), content_type, &body);
    assert!(
        status.as_u16() < 500 || status.as_u16() == 503,
        "{method} {path}: {status}"
    );
    if status.as_u16() >= 400 {
        assert_eq!(
            content_type,
            Some("application/json"),
            "{method} {path}: errors are JSON"
        );
    }
    let mut rebuilt = http::Response::new(body);
    *rebuilt.status_mut() = status;
    *rebuilt.version_mut() = version;
    *rebuilt.headers_mut() = headers;
    Response::from(rebuilt)
}

/// A proxy in front of the system for clients the tests do not drive request by request (the
/// `mp3conv` client): it passes every request on and every answer back unchanged, and checks
/// each answer as [`send`] does. A task cannot fail the test, so what it finds is kept for
/// [`CheckingProxy::assert_conforming`].
pub struct CheckingProxy {
    pub url: String,
    checked: Arc<Mutex<Vec<String>>>,
    /// How many of `checked` [`CheckingProxy::take_seen`] returned already.
    seen: Mutex<usize>,
    drifts: Arc<Mutex<Vec<String>>>,
}

impl CheckingProxy {
    /// Starts a proxy on 127.0.0.1 in front of `target` (`http://host:port`).
    pub async fn start(target: &str) -> CheckingProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = CheckingProxy {
            url: format!("http://{}", listener.local_addr().unwrap()),
            checked: Arc::default(),
            seen: Mutex::default(),
            drifts: Arc::default(),
        };
        let (checked, drifts, target) = (
            proxy.checked.clone(),
            proxy.drifts.clone(),
            target.to_owned(),
        );
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (checked, drifts, target) = (checked.clone(), drifts.clone(), target.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let (checked, drifts, target) =
                            (checked.clone(), drifts.clone(), target.clone());
                        async move {
                            let (response, finding) = pass_on(&target, request).await;
                            checked.lock().unwrap().push(finding.0);
                            drifts.lock().unwrap().extend(finding.1);
                            Ok::<_, std::convert::Infallible>(response)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        proxy
    }

    /// The exchanges passed on since the last call, as `METHOD path -> status`.
    pub fn take_seen(&self) -> Vec<String> {
        let checked = self.checked.lock().unwrap();
        let mut seen = self.seen.lock().unwrap();
        let new = checked[*seen..].to_vec();
        *seen = checked.len();
        new
    }

    /// Fails the test if any answer differed from the document, or if none passed at all.
    pub fn assert_conforming(&self) {
        let checked = self.checked.lock().unwrap();
        assert!(!checked.is_empty(), "no request went through the proxy");
        let drifts = self.drifts.lock().unwrap();
        assert!(
            drifts.is_empty(),
            "answers that differ from openapi.yaml:\n{}",
            drifts.join("\n")
        );
    }
}

/// Forwards one request, checks the answer: (the answer, ("METHOD path -> status", drifts)).
async fn pass_on(
    target: &str,
    request: http::Request<hyper::body::Incoming>,
) -> (
    http::Response<http_body_util::Full<bytes::Bytes>>,
    (String, Option<String>),
) {
    use http_body_util::BodyExt as _;
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let path = parts.uri.path().to_owned();
    let path_and_query = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let mut forwarded = client()
        .request(parts.method.clone(), format!("{target}{path_and_query}"))
        .body(body);
    for (name, value) in &parts.headers {
        if !matches!(
            name.as_str(),
            "host" | "content-length" | "transfer-encoding" | "connection"
        ) {
            forwarded = forwarded.header(name, value);
        }
    }
    let method = parts.method.as_str();
    let seen = |status: u16| format!("{method} {path} -> {status}");
    let response = match forwarded.send().await {
        Ok(response) => response,
        Err(err) => {
            let mut answer = http::Response::new(http_body_util::Full::default());
            *answer.status_mut() = http::StatusCode::BAD_GATEWAY;
            return (answer, (seen(502), Some(format!("{method} {path}: {err}"))));
        }
    };
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.bytes().await.unwrap_or_default();
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok());
    let exchange = Exchange {
        method,
        path: &path,
        status: status.as_u16(),
        content_type,
        body: &body,
    };
    let drift = match document().check(&exchange) {
        Err(drift) => Some(format!("{}: {drift}", seen(status.as_u16()))),
        Ok(()) if !headers.contains_key("x-request-id") => {
            Some(format!("{}: no x-request-id", seen(status.as_u16())))
        }
        Ok(()) if status.as_u16() >= 500 && status.as_u16() != 503 => Some(seen(status.as_u16())),
        Ok(()) => None,
    };
    let mut answer = http::Response::new(http_body_util::Full::new(body));
    *answer.status_mut() = status;
    for (name, value) in &headers {
        if !matches!(
            name.as_str(),
            "content-length" | "transfer-encoding" | "connection"
        ) {
            answer.headers_mut().append(name, value.clone());
        }
    }
    (answer, (seen(status.as_u16()), drift))
}

/// Sends, checks the status, and returns the JSON error code (or the body for 2xx).
pub async fn expect(request: RequestBuilder, status: u16) -> Value {
    let response = send(request).await;
    let actual = response.status().as_u16();
    let text = response.text().await.unwrap();
    assert_eq!(actual, status, "{text}");
    serde_json::from_str(&text).unwrap_or(Value::String(text))
}

pub async fn expect_error(request: RequestBuilder, status: u16, code: &str) {
    let body = expect(request, status).await;
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
}

/// `MP3CONV_WORKER__*` settings for a worker on the test services (SecantusDB for storage and
/// jobs in database `database`, RabbitMQ queues under `prefix`), links to 127.0.0.1 allowed.
pub fn services_worker_env(database: &str, prefix: &str) -> Vec<(String, String)> {
    let mongo = std::env::var("MP3CONV_TEST_MONGO_URL")
        .unwrap_or_else(|_| "mongodb://127.0.0.1:27217/?directConnection=true".to_owned());
    let amqp = std::env::var("MP3CONV_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned());
    [
        ("INTERNAL_TOKEN", INTERNAL_TOKEN),
        ("STORAGE__KIND", "gridfs"),
        ("STORAGE__URL", &mongo),
        ("STORAGE__DATABASE", database),
        ("JOBS__KIND", "mongo"),
        ("JOBS__URL", &mongo),
        ("JOBS__DATABASE", database),
        ("QUEUE__KIND", "rabbitmq"),
        ("QUEUE__URL", &amqp),
        ("QUEUE__PREFIX", prefix),
        ("QUEUE__EXPIRES", "10m"),
        ("FETCH__ALLOW", r#"["127.0.0.1/32"]"#),
        ("FETCH__PAGES__YTDLP", &ytdlp()),
    ]
    .into_iter()
    .map(|(k, v)| (format!("MP3CONV_WORKER__{k}"), v.to_owned()))
    .collect()
}

/// The pinned yt-dlp `scripts/services.sh` installs, which the worker reads video pages with.
pub fn ytdlp() -> String {
    std::env::var("MP3CONV_TEST_YTDLP")
        .expect("MP3CONV_TEST_YTDLP names yt-dlp: eval \"$(scripts/services.sh env)\"")
}

/// The system under test.
pub struct System {
    pub host: HostProcess,
    pub worker: Option<WorkerProcess>,
    /// A converter-role worker, when the roles run apart ([`System::services_split`]).
    pub converter: Option<WorkerProcess>,
    /// The worker's settings (cluster shape).
    pub worker_env: Vec<(String, String)>,
    /// How `mp3conv users` names the users database (`--sqlite PATH`, `--mysql URL`).
    pub users_db: Vec<String>,
}

impl System {
    /// A system the test started itself.
    pub fn from_parts(host: HostProcess, worker: Option<WorkerProcess>) -> System {
        System {
            host,
            worker,
            converter: None,
            worker_env: Vec::new(),
            users_db: Vec::new(),
        }
    }

    /// `mp3conv up`: everything in one process, embedded defaults.
    pub fn embedded(args: &[&str]) -> System {
        System::embedded_with(args, &[])
    }

    /// `mp3conv up` with extra environment (e.g. `SPIN_VARIABLE_*`).
    pub fn embedded_with(args: &[&str], env: &[(&str, &str)]) -> System {
        let mut options = HostOptions::new(repo_manifest())
            // The link tests serve their videos from 127.0.0.1.
            .env("MP3CONV_WORKER__FETCH__ALLOW", r#"["127.0.0.1/32"]"#)
            .env("MP3CONV_WORKER__FETCH__PAGES__YTDLP", &ytdlp());
        options.subcommand = "up";
        // The manifest is copied elsewhere, so name the repository's eventing.toml.
        options = options
            .arg("--eventing")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/eventing.toml"));
        for arg in args {
            options = options.arg(*arg);
        }
        for (key, value) in env {
            options = options.env(key, value);
        }
        let host = HostProcess::start(options);
        let users = host.data_dir().join("sqlite_db.db");
        System {
            host,
            worker: None,
            converter: None,
            worker_env: Vec::new(),
            users_db: vec!["--sqlite".into(), users.display().to_string()],
        }
    }

    /// The cluster's shape: the host (`serve`) and the worker as separate processes on
    /// MariaDB, RabbitMQ and the MongoDB-compatible server.
    pub fn services() -> System {
        System::services_with(&[], false)
    }

    /// [`System::services`] with the eventing bridge from the `mp3` queue to the notifier,
    /// as the cluster's RabbitmqSource does it.
    pub fn services_with_eventing() -> System {
        System::services_with(&[], true)
    }

    /// [`System::services`] with extra `MP3CONV_WORKER__*` settings for the worker, and the
    /// eventing bridge if `eventing`.
    pub fn services_with(extra: &[(&str, &str)], eventing: bool) -> System {
        let keys = tempfile::tempdir().unwrap();
        mp3conv(&["keys", "generate", "--dir", keys.path().to_str().unwrap()]);
        let read = |name: &str| std::fs::read_to_string(keys.path().join(name)).unwrap();
        // Each system its own database, GridFS buckets and queues.
        static SYSTEMS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let run = format!(
            "mp3conv_gw_{}_{}",
            std::process::id(),
            SYSTEMS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let mysql_server = std::env::var("MP3CONV_TEST_MYSQL_URL")
            .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".to_owned());
        let mysql_url = format!("{mysql_server}/{run}");
        mp3conv(&["migrate", "--mysql", &mysql_url]);
        let mut env = services_worker_env(&run, &format!("{run}."));
        env.extend(
            extra
                .iter()
                .map(|(key, value)| (format!("MP3CONV_WORKER__{key}"), (*value).to_owned())),
        );
        let worker = WorkerProcess::start(&env);
        let mysql_host = mysql_server.rsplit('@').next().unwrap().to_owned();
        let mut options = HostOptions::new(repo_manifest());
        if eventing {
            let amqp = env
                .iter()
                .find(|(key, _)| key == "MP3CONV_WORKER__QUEUE__URL")
                .map(|(_, url)| url.clone())
                .unwrap();
            options = options
                .arg("--eventing")
                .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/eventing.toml"))
                .arg("--queue-prefix")
                .arg(format!("{run}."))
                // The URL may carry a password: the environment, never the command line.
                .env("MP3CONV_RABBITMQ_URL", &amqp);
        }
        let options = options
            .env("SPIN_VARIABLE_JWT_SIGNING_KEY", &read("jwt-signing.pem"))
            .env("SPIN_VARIABLE_JWT_PUBLIC_KEYS", &read("jwks.json"))
            .env("SPIN_VARIABLE_AUTH_DATABASE", "mysql")
            .env("SPIN_VARIABLE_MYSQL_URL", &mysql_url)
            .env("SPIN_VARIABLE_MYSQL_HOST", &mysql_host)
            .env("SPIN_VARIABLE_WORKER_URL", &worker.url)
            .env("SPIN_VARIABLE_WORKER_TOKEN", INTERNAL_TOKEN);
        System {
            host: HostProcess::start(options),
            worker: Some(worker),
            converter: None,
            worker_env: env,
            users_db: vec!["--mysql".into(), mysql_url],
        }
    }

    /// The cluster's shape with the worker's roles apart, as KEDA scales them: the host talks
    /// to an API-role worker; a converter-role worker on the same stores and queues converts.
    pub fn services_split() -> System {
        let mut system = System::services_with(&[("ROLE", "api")], true);
        let env = system.worker_env.clone();
        let mut converter_env: Vec<(String, String)> = env
            .into_iter()
            .filter(|(key, _)| key != "MP3CONV_WORKER__ROLE")
            .collect();
        converter_env.push(("MP3CONV_WORKER__ROLE".into(), "converter".into()));
        system.converter = Some(WorkerProcess::start(&converter_env));
        system
    }

    pub fn url(&self, path: &str) -> String {
        self.host.url(path)
    }

    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        client().request(method, self.url(path))
    }

    /// Registers a fresh user and logs in through the original `POST /login`.
    pub async fn user(&self, name: &str) -> String {
        self.user_and_email(name).await.0
    }

    /// `mp3conv users limit EMAIL ARGS...` on this system's users database: what it printed.
    pub fn limit_user(&self, email: &str, args: &[&str]) -> String {
        let mut command = vec!["users", "limit", email];
        command.extend_from_slice(args);
        command.extend(self.users_db.iter().map(String::as_str));
        mp3conv(&command)
    }

    /// [`System::user`], with the email it registered.
    pub async fn user_and_email(&self, name: &str) -> (String, String) {
        let email = format!("{name}-{}@example.com", uuid_like());
        let password = "correct horse battery";
        expect(
            self.request(Method::POST, "/auth/register")
                .json(&json!({ "email": email, "password": password })),
            201,
        )
        .await;
        let response = send(
            self.request(Method::POST, "/login")
                .basic_auth(&email, Some(password)),
        )
        .await;
        assert_eq!(response.status(), 200);
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/plain")
        );
        (response.text().await.unwrap(), email)
    }

    pub fn authed(&self, token: &str, method: Method, path: &str) -> RequestBuilder {
        self.request(method, path).bearer_auth(token)
    }

    /// `POST /v1/jobs` with the clip as `file`.
    pub async fn upload_clip(&self, token: &str, bitrate: Option<&str>) -> Value {
        let clip = std::fs::read(media("clip")).unwrap();
        let mut form = reqwest::multipart::Form::new();
        if let Some(bitrate) = bitrate {
            form = form.text("bitrate", bitrate.to_owned());
        }
        form = form.part(
            "file",
            reqwest::multipart::Part::bytes(clip)
                .file_name("Holiday clip.mp4")
                .mime_str("video/mp4")
                .unwrap(),
        );
        let response = send(self.authed(token, Method::POST, "/v1/jobs").multipart(form)).await;
        assert_eq!(response.status(), 202);
        let location = response.headers()["location"].to_str().unwrap().to_owned();
        let job: Value = response.json().await.unwrap();
        assert_eq!(
            location,
            format!("/v1/jobs/{}", job["id"].as_str().unwrap())
        );
        assert_eq!(job["status"], "queued");
        for internal in ["owner", "video_id", "attempts", "announced"] {
            assert!(job.get(internal).is_none(), "{internal} leaked: {job}");
        }
        job
    }

    /// Polls the job until it is done or failed.
    pub async fn settled(&self, token: &str, id: &str) -> Value {
        let deadline = Instant::now() + JOB_DEADLINE;
        loop {
            let job = expect(
                self.authed(token, Method::GET, &format!("/v1/jobs/{id}")),
                200,
            )
            .await;
            if ["done", "failed", "expired"].contains(&job["status"].as_str().unwrap_or_default()) {
                return job;
            }
            assert!(Instant::now() < deadline, "the job never settled: {job}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A name no other test run uses.
pub fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{}-{}-{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A stand-in for a site hosting a video (`/talk.mp4`, 10 s) and a page showing it
/// (`/talk.html`, titled [`PAGE_TITLE`]), on 127.0.0.1 (HTTP/1.1, one response per connection).
pub async fn video_site() -> String {
    video_site_on(None).await
}

/// The same site over https, with a certificate from `ca` naming `localhost`.
pub async fn video_site_https(ca: &super::tls::TestCa) -> String {
    video_site_on(Some(ca.acceptor("localhost"))).await
}

/// The title of the video site's page (`<` and `&` as HTML entities in the page).
pub const PAGE_TITLE: &str = "A talk <on> a page";

trait Connection: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Connection for T {}

async fn video_site_on(tls: Option<tokio_rustls::TlsAcceptor>) -> String {
    let clip = std::fs::read(media("clip-10")).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let base = match tls {
        Some(_) => format!("https://localhost:{port}"),
        None => format!("http://127.0.0.1:{port}"),
    };
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let clip = clip.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut stream: Box<dyn Connection> = match tls {
                    Some(acceptor) => match acceptor.accept(tcp).await {
                        Ok(stream) => Box::new(stream),
                        Err(_) => return,
                    },
                    None => Box::new(tcp),
                };
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head);
                let (status, kind, body) = if head.starts_with("GET /talk.mp4 ") {
                    ("200 OK", "video/mp4", clip)
                } else if head.starts_with("GET /talk.html ") {
                    let title = PAGE_TITLE.replace('<', "&lt;").replace('>', "&gt;");
                    let page = format!(
                        "<!doctype html><html><head><title>{title}</title></head>\
                         <body><video controls src=\"/talk.mp4\"></video></body></html>"
                    );
                    ("200 OK", "text/html; charset=utf-8", page.into_bytes())
                } else {
                    ("404 Not Found", "video/mp4", Vec::new())
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(&body).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    base
}
