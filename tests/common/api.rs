//! Driving the system over HTTP as clients do, with every response checked against
//! `openapi.yaml`: a status the document does not list for that route fails the test.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use reqwest::{Method, RequestBuilder, Response};
use serde_json::{Value, json};

use super::{HostOptions, HostProcess, WorkerProcess, client, media, mp3conv, repo_manifest};

pub const INTERNAL_TOKEN: &str = "gateway-tests-internal-token";
/// How long a job may take to settle before the test fails.
pub const JOB_DEADLINE: Duration = Duration::from_secs(180);

/// The documented statuses of every operation: (method, path template) -> statuses.
pub fn documented() -> &'static BTreeMap<(String, String), Vec<u16>> {
    static DOC: OnceLock<BTreeMap<(String, String), Vec<u16>>> = OnceLock::new();
    DOC.get_or_init(|| {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml"))
            .expect("reading openapi.yaml");
        let doc: Value = serde_yaml::from_str(&text).expect("openapi.yaml is YAML");
        assert_eq!(doc["openapi"], "3.1.0");
        let mut operations = BTreeMap::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, operation) in item.as_object().expect("a path item") {
                if method == "parameters" {
                    continue;
                }
                let statuses = operation["responses"]
                    .as_object()
                    .unwrap_or_else(|| panic!("{method} {path} documents no responses"))
                    .keys()
                    .map(|status| status.parse().expect("a numeric status"))
                    .collect();
                operations.insert((method.to_uppercase(), path.clone()), statuses);
            }
        }
        operations
    })
}

/// The documented path template a concrete path falls under.
pub fn template(path: &str) -> Option<String> {
    let segments: Vec<&str> = path.split('/').collect();
    documented()
        .keys()
        .map(|(_, template)| template)
        .find(|template| {
            let parts: Vec<&str> = template.split('/').collect();
            parts.len() == segments.len()
                && parts
                    .iter()
                    .zip(&segments)
                    .all(|(t, s)| t == s || (t.starts_with('{') && !s.is_empty()))
        })
        .cloned()
}

/// Sends a request and checks the answer against the OpenAPI document and the error rules:
/// a documented status, JSON errors, a request id, never a 5xx other than a documented 503.
pub async fn send(request: RequestBuilder) -> Response {
    let (client, request) = request.build_split();
    let request = request.expect("a valid request");
    let method = request.method().to_string();
    let path = request.url().path().to_owned();
    let response = client.execute(request).await.expect("the system answers");
    let status = response.status().as_u16();
    assert!(
        response.headers().contains_key("x-request-id"),
        "{method} {path}: no x-request-id"
    );
    if let Some(template) = template(&path) {
        let method = if method == "HEAD" {
            "GET".to_owned()
        } else {
            method.clone()
        };
        match documented().get(&(method.clone(), template.clone())) {
            Some(statuses) => assert!(
                statuses.contains(&status),
                "{method} {path}: {status} is not documented for {template} ({statuses:?})"
            ),
            None => assert_eq!(
                status, 405,
                "{method} {template} is not documented, so it must be 405"
            ),
        }
    }
    if status >= 400 {
        assert_eq!(
            response.headers()["content-type"],
            "application/json",
            "{method} {path}: errors are JSON"
        );
    }
    response
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
    ]
    .into_iter()
    .map(|(k, v)| (format!("MP3CONV_WORKER__{k}"), v.to_owned()))
    .collect()
}

/// The system under test.
pub struct System {
    pub host: HostProcess,
    pub worker: Option<WorkerProcess>,
}

impl System {
    /// `mp3conv up`: everything in one process, embedded defaults.
    pub fn embedded(args: &[&str]) -> System {
        System::embedded_with(args, &[])
    }

    /// `mp3conv up` with extra environment (e.g. `SPIN_VARIABLE_*`).
    pub fn embedded_with(args: &[&str], env: &[(&str, &str)]) -> System {
        let mut options = HostOptions::new(repo_manifest())
            // The link tests serve their videos from 127.0.0.1.
            .env("MP3CONV_WORKER__FETCH__ALLOW", r#"["127.0.0.1/32"]"#);
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
        System {
            host: HostProcess::start(options),
            worker: None,
        }
    }

    /// The cluster's shape: the host (`serve`) and the worker as separate processes on
    /// MariaDB, RabbitMQ and the MongoDB-compatible server.
    pub fn services() -> System {
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
        let env = services_worker_env(&run, &format!("{run}."));
        let worker = WorkerProcess::start(&env);
        let mysql_host = mysql_server.rsplit('@').next().unwrap().to_owned();
        let options = HostOptions::new(repo_manifest())
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
        }
    }

    pub fn url(&self, path: &str) -> String {
        self.host.url(path)
    }

    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        client().request(method, self.url(path))
    }

    /// Registers a fresh user and logs in through the original `POST /login`.
    pub async fn user(&self, name: &str) -> String {
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
        response.text().await.unwrap()
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
            if job["status"] == "done" || job["status"] == "failed" {
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

/// A stand-in for a site hosting a video (`/talk.mp4`, 10 s), on 127.0.0.1 (HTTP/1.1, one response per
/// connection).
pub async fn video_site() -> String {
    video_site_on(None).await
}

/// The same site over https, with a certificate from `ca` naming `localhost`.
pub async fn video_site_https(ca: &super::tls::TestCa) -> String {
    video_site_on(Some(ca.acceptor("localhost"))).await
}

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
                let found = String::from_utf8_lossy(&head).starts_with("GET /talk.mp4 ");
                let (status, body) = if found {
                    ("200 OK", clip)
                } else {
                    ("404 Not Found", Vec::new())
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: video/mp4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
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
