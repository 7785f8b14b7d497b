//! For the trace tests: reading the processes' JSON log lines, choosing a client's
//! `traceparent`, waiting until log lines show up, and the cluster's shape with JSON logs.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::api::{INTERNAL_TOKEN, System, services_worker_env};
use crate::common::{HostOptions, HostProcess, WorkerProcess, mp3conv, repo_manifest};

/// The JSON objects among a log's lines (components print plain lines in between).
pub fn json_lines(log: &str) -> Vec<Value> {
    log.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(Value::is_object)
        .collect()
}

/// A line's message: `message` in flattened lines (the host), `fields.message` otherwise (the
/// worker).
pub fn message(line: &Value) -> &str {
    line.get("message")
        .or_else(|| line.pointer("/fields/message"))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// The distinct values of field `name` in a line: the event's own fields and those of the
/// spans it was logged in (the current span is also the last of `spans`).
pub fn field<'a>(line: &'a Value, name: &str) -> Vec<&'a str> {
    let mut places = vec![line];
    places.extend(line.get("fields"));
    places.extend(line.get("span"));
    places.extend(
        line.get("spans")
            .and_then(Value::as_array)
            .into_iter()
            .flatten(),
    );
    let mut values: Vec<&str> = places
        .into_iter()
        .filter_map(|place| place.get(name).and_then(Value::as_str))
        .collect();
    values.sort_unstable();
    values.dedup();
    values
}

/// Whether a line belongs to trace `trace_id`: a `trace_id` field that is it, or a
/// `traceparent` field that names it.
pub fn in_trace(line: &Value, trace_id: &str) -> bool {
    field(line, "trace_id").contains(&trace_id)
        || field(line, "traceparent")
            .iter()
            .any(|traceparent| trace_of(traceparent).as_deref() == Some(trace_id))
}

/// The trace id of a well-formed version-00 `traceparent`.
pub fn trace_of(traceparent: &str) -> Option<String> {
    let parts: Vec<&str> = traceparent.split('-').collect();
    let hex = |s: &str, len: usize| {
        s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    match parts[..] {
        [version, trace, parent, flags]
            if version == "00"
                && hex(trace, 32)
                && hex(parent, 16)
                && hex(flags, 2)
                && trace.bytes().any(|b| b != b'0')
                && parent.bytes().any(|b| b != b'0') =>
        {
            Some(trace.to_owned())
        }
        _ => None,
    }
}

/// A 32-hex-digit trace id that is not all zeros.
pub fn is_trace_id(id: &str) -> bool {
    trace_of(&format!("00-{id}-00f067aa0ba902b7-01")).is_some()
}

/// A `traceparent` a client starts a trace with, and its trace id.
pub fn client_traceparent() -> (String, String) {
    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let span = &uuid::Uuid::new_v4().simple().to_string()[..16];
    (format!("00-{trace_id}-{span}-01"), trace_id)
}

/// What a test expects to find (in a log, at a receiver), checked again until it holds.
pub struct Expectation<'a> {
    pub what: String,
    holds: Box<dyn Fn() -> bool + 'a>,
}

impl<'a> Expectation<'a> {
    pub fn new(what: impl Into<String>, holds: impl Fn() -> bool + 'a) -> Expectation<'a> {
        Expectation {
            what: what.into(),
            holds: Box::new(holds),
        }
    }
}

/// Waits until every expectation holds or `within` has passed, then fails the test naming
/// each that did not hold (and those that did), so one run shows the whole picture.
pub async fn expect_all(
    expectations: &[Expectation<'_>],
    within: Duration,
    context: impl Fn() -> String,
) {
    let deadline = Instant::now() + within;
    loop {
        let missing: Vec<&str> = expectations
            .iter()
            .filter(|e| !(e.holds)())
            .map(|e| e.what.as_str())
            .collect();
        if missing.is_empty() {
            return;
        }
        if Instant::now() >= deadline {
            let held: Vec<&str> = expectations
                .iter()
                .map(|e| e.what.as_str())
                .filter(|what| !missing.contains(what))
                .collect();
            panic!(
                "{} of {} expectations did not hold:\n  - {}\nthese held:\n  + {}\n{}",
                missing.len(),
                expectations.len(),
                missing.join("\n  - "),
                held.join("\n  + "),
                context()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The cluster's shape with JSON logs: `mp3conv serve` (functions and the eventing bridge on
/// RabbitMQ) and the worker as two processes, its API and its converter, on MariaDB,
/// RabbitMQ and the MongoDB-compatible server (GridFS). Webhooks may go to 127.0.0.1.
pub struct Cluster {
    pub system: System,
    pub converter: WorkerProcess,
    _eventing: tempfile::TempDir,
}

impl Cluster {
    pub fn start() -> Cluster {
        let run = format!("mp3conv_tr_{}", std::process::id());
        let prefix = format!("{run}.");
        let amqp = std::env::var("MP3CONV_TEST_AMQP_URL")
            .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned());
        let mysql_server = std::env::var("MP3CONV_TEST_MYSQL_URL")
            .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".to_owned());
        let mysql_url = format!("{mysql_server}/{run}");
        mp3conv(&["migrate", "--mysql", &mysql_url]);

        let worker = |role: &str| {
            let mut env = services_worker_env(&run, &prefix);
            env.extend(
                [
                    ("MP3CONV_WORKER__ROLE", role),
                    ("MP3CONV_LOG_FORMAT", "json"),
                    ("RUST_LOG", "info"),
                ]
                .map(|(k, v)| (k.to_owned(), v.to_owned())),
            );
            WorkerProcess::start(&env)
        };
        let api = worker("api");
        let converter = worker("converter");

        let eventing = tempfile::tempdir().unwrap();
        let eventing_file = eventing.path().join("eventing.toml");
        std::fs::write(
            &eventing_file,
            r#"[[source]]
name = "mp3-notifier"
namespace = "test"
rabbitmqResourcesConfig = { queueName = "mp3", parallelism = 2 }
delivery = { retry = 3, backoffPolicy = "exponential", backoffDelay = "PT0.1S" }
sink = { uri = "/events" }
"#,
        )
        .unwrap();
        let keys = tempfile::tempdir().unwrap();
        mp3conv(&["keys", "generate", "--dir", keys.path().to_str().unwrap()]);
        let read = |name: &str| std::fs::read_to_string(keys.path().join(name)).unwrap();
        let options = HostOptions::new(repo_manifest())
            .arg("--log-format")
            .arg("json")
            .arg("--eventing")
            .arg(eventing_file.to_str().unwrap())
            .arg("--queue-prefix")
            .arg(&prefix)
            .env("RUST_LOG", "info")
            .env("MP3CONV_RABBITMQ_URL", &amqp)
            .env("SPIN_VARIABLE_JWT_SIGNING_KEY", &read("jwt-signing.pem"))
            .env("SPIN_VARIABLE_JWT_PUBLIC_KEYS", &read("jwks.json"))
            .env("SPIN_VARIABLE_AUTH_DATABASE", "mysql")
            .env("SPIN_VARIABLE_MYSQL_URL", &mysql_url)
            .env(
                "SPIN_VARIABLE_MYSQL_HOST",
                mysql_server.rsplit('@').next().unwrap(),
            )
            .env("SPIN_VARIABLE_WORKER_URL", &api.url)
            .env("SPIN_VARIABLE_WORKER_TOKEN", INTERNAL_TOKEN)
            .env("SPIN_VARIABLE_WEBHOOK_ALLOW_LOCAL", "true")
            .env("SPIN_VARIABLE_WEBHOOK_HOSTS", "http://127.0.0.1:*")
            .env("SPIN_VARIABLE_WEBHOOK_BACKOFF_MS", "50");
        Cluster {
            system: System::from_parts(HostProcess::start(options), Some(api)),
            converter,
            _eventing: eventing,
        }
    }

    /// The worker API process.
    pub fn api(&self) -> &WorkerProcess {
        self.system
            .worker
            .as_ref()
            .expect("the cluster has a worker API")
    }

    /// Every process's log, for a failure message.
    pub fn logs(&self) -> String {
        format!(
            "--- host\n{}\n--- worker API\n{}\n--- converter\n{}",
            self.system.host.log(),
            self.api().log(),
            self.converter.log()
        )
    }
}
