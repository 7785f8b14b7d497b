//! Notifications end to end: a job's outcome travels from the worker's `mp3` queue through the
//! eventing bridge (the local RabbitmqSource) to the notifier, and reaches the user in the app,
//! by a signed webhook and by email (a local endpoint standing in for the email provider).
//! Once per outcome, whatever is redelivered.

mod common;

use std::time::{Duration, Instant};

use common::api::{
    INTERNAL_TOKEN, System, expect, expect_error, send, services_worker_env, uuid_like,
};
use common::{HostOptions, HostProcess, Recorded, Recorder, WorkerProcess, mp3conv, repo_manifest};
use reqwest::Method;
use serde_json::{Value, json};

/// Settings that point the notifier at the recorder: webhooks to 127.0.0.1 allowed, email on.
fn notifier_env(recorder: &Recorder) -> Vec<(String, String)> {
    [
        ("SPIN_VARIABLE_WEBHOOK_ALLOW_LOCAL", "true".to_owned()),
        (
            "SPIN_VARIABLE_WEBHOOK_HOSTS",
            "http://127.0.0.1:*".to_owned(),
        ),
        ("SPIN_VARIABLE_WEBHOOK_BACKOFF_MS", "50".to_owned()),
        (
            "SPIN_VARIABLE_EMAIL_API_URL",
            format!("{}/send", recorder.url),
        ),
        ("SPIN_VARIABLE_EMAIL_API_ORIGIN", recorder.url.clone()),
        ("SPIN_VARIABLE_EMAIL_API_KEY", "test-mail-key".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// Registers a user with a webhook at `recorder` + `hook_path`; returns (token, email, secret).
async fn user_with_webhook(
    system: &System,
    recorder: &Recorder,
    name: &str,
    hook_path: &str,
) -> (String, String, String) {
    let token = system.user(name).await;
    let me = expect(system.authed(&token, Method::GET, "/v1/me"), 200).await;
    let email = me["email"].as_str().unwrap().to_owned();
    expect_error(
        system.authed(&token, Method::GET, "/v1/me/webhook"),
        404,
        "not_found",
    )
    .await;
    let url = format!("{}{hook_path}", recorder.url);
    let hook = expect(
        system
            .authed(&token, Method::PUT, "/v1/me/webhook")
            .json(&json!({ "url": url })),
        200,
    )
    .await;
    let secret = hook["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{hook}");
    // Shown once: reading the webhook back does not show the secret.
    let shown = expect(system.authed(&token, Method::GET, "/v1/me/webhook"), 200).await;
    assert_eq!(shown["url"], url.as_str());
    assert!(shown.get("secret").is_none(), "{shown}");
    (token, email, secret)
}

/// Polls the caller's notifications until `count` are there.
async fn notifications(system: &System, token: &str, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let page = expect(system.authed(token, Method::GET, "/v1/notifications"), 200).await;
        let list = page["notifications"].as_array().unwrap().clone();
        if list.len() >= count {
            return list;
        }
        assert!(
            Instant::now() < deadline,
            "only {} notifications",
            list.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn verify_webhook(secret: &str, delivery: &Recorded) -> Value {
    standardwebhooks::Webhook::new(secret)
        .unwrap()
        .verify(&delivery.body, &delivery.headers)
        .expect("the delivery's signature verifies with the secret");
    serde_json::from_slice(&delivery.body).unwrap()
}

fn job_of(delivery: &Recorded) -> String {
    let body: Value = serde_json::from_slice(&delivery.body).unwrap_or(Value::Null);
    body["data"]["job_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// The whole path in `mp3conv up`: one in-app notification, one verified webhook, one email
/// per outcome; failures carry their reason; a webhook that is down is retried a bounded
/// number of times and does not hold up the rest.
#[tokio::test]
async fn a_finished_job_notifies_once_in_each_channel() {
    let recorder = Recorder::start().await;
    let env = notifier_env(&recorder);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let system = System::embedded_with(&[], &env);
    let (token, email, secret) = user_with_webhook(&system, &recorder, "notified", "/hook").await;

    let job = system.upload_clip(&token, None).await;
    let id = job["id"].as_str().unwrap();
    assert_eq!(system.settled(&token, id).await["status"], "done");
    let listed = notifications(&system, &token, 1).await;
    assert_eq!(listed.len(), 1);
    let n = &listed[0];
    assert_eq!(
        (n["job_id"].as_str(), n["status"].as_str()),
        (Some(id), Some("done"))
    );
    assert_eq!(n["title"], "Holiday clip.mp4");
    assert!(
        n["audio_url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/v1/jobs/{id}/audio"))
    );
    assert_eq!(n["read"], false);

    let hooks = recorder.wait_for("/hook", 1, |r| job_of(r) == id).await;
    let payload = verify_webhook(&secret, &hooks[0]);
    assert_eq!(payload["type"], "job.done");
    assert_eq!(payload["data"]["notification_id"], n["id"]);
    let mails = recorder.wait_for("/send", 1, |_| true).await;
    let mail: Value = serde_json::from_slice(&mails[0].body).unwrap();
    assert_eq!(mail["to"], email.as_str());
    assert!(
        mail["text"]
            .as_str()
            .unwrap()
            .contains(&format!("/v1/jobs/{id}/audio"))
    );
    assert_eq!(mails[0].headers["authorization"], "Bearer test-mail-key");

    // Read, and the unread filter; someone else cannot mark it.
    let other = system.user("nosy").await;
    let read = format!("/v1/notifications/{}/read", n["id"].as_str().unwrap());
    expect_error(system.authed(&other, Method::POST, &read), 404, "not_found").await;
    let response = send(system.authed(&token, Method::POST, &read)).await;
    assert_eq!(response.status(), 204);
    let unread = expect(
        system.authed(&token, Method::GET, "/v1/notifications?unread=true"),
        200,
    )
    .await;
    assert_eq!(unread["notifications"], json!([]));

    // A failed job notifies with its reason.
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(b"this is not a video".to_vec()).file_name("notes.mp4"),
    );
    let failed = expect(
        system
            .authed(&token, Method::POST, "/v1/jobs")
            .multipart(form),
        202,
    )
    .await;
    let failed_id = failed["id"].as_str().unwrap();
    assert_eq!(system.settled(&token, failed_id).await["status"], "failed");
    let listed = notifications(&system, &token, 2).await;
    assert_eq!(listed[0]["job_id"], failed_id);
    assert_eq!(listed[0]["status"], "failed");
    assert!(listed[0]["error_code"].is_string(), "{}", listed[0]);
    let hooks = recorder
        .wait_for("/hook", 1, |r| job_of(r) == failed_id)
        .await;
    assert_eq!(verify_webhook(&secret, &hooks[0])["type"], "job.failed");

    // A webhook that is down: the in-app notification is there anyway, and the webhook was
    // tried exactly webhook_attempts (3) times.
    recorder.always("/down", 500);
    let (down_token, _, _) = user_with_webhook(&system, &recorder, "down", "/down").await;
    let job = system.upload_clip(&down_token, None).await;
    let id = job["id"].as_str().unwrap();
    system.settled(&down_token, id).await;
    assert_eq!(notifications(&system, &down_token, 1).await.len(), 1);
    let attempts = recorder.wait_for("/down", 3, |r| job_of(r) == id).await;
    let ids: Vec<&str> = attempts
        .iter()
        .map(|r| r.headers["webhook-id"].to_str().unwrap())
        .collect();
    assert!(
        ids.windows(2).all(|w| w[0] == w[1]),
        "one message id: {ids:?}"
    );
    assert!(attempts[1].at - attempts[0].at >= Duration::from_millis(50));

    // Every delivery happened once: one per outcome and channel (the third email follows the
    // third webhook attempt in the same notifier request).
    recorder.wait_for("/send", 3, |_| true).await;
    assert_eq!(recorder.requests("/hook").len(), 2);
    assert_eq!(
        recorder.requests("/send").len(),
        3,
        "three outcomes, one email each"
    );
}

/// `/events` on the public listener: without the events token every request gets the same
/// 401, whatever job it names; with it (the event source), events about a job that exists,
/// one that does not, someone else's, or an outcome the job does not have are all answered
/// alike, and none records anything. The bridge, which sends the token, still delivers.
#[tokio::test]
async fn events_tell_nobody_whether_a_job_exists() {
    const EVENTS_TOKEN: &str = "notification-tests-events-token";
    let system = System::embedded_with(&[], &[("SPIN_VARIABLE_EVENTS_TOKEN", EVENTS_TOKEN)]);
    let token = system.user("owner").await;
    let me = expect(system.authed(&token, Method::GET, "/v1/me"), 200).await;
    let owner = me["id"].as_str().unwrap().to_owned();
    let job = system.upload_clip(&token, None).await;
    let id = job["id"].as_str().unwrap().to_owned();
    assert_eq!(system.settled(&token, &id).await["status"], "done");
    assert_eq!(
        notifications(&system, &token, 1).await.len(),
        1,
        "the bridge delivers"
    );

    let unknown = "0192f1a4-7c2b-7d3e-8f00-123456789abc";
    let cases = [
        (id.as_str(), owner.as_str(), "done"),
        (id.as_str(), owner.as_str(), "failed"),
        (id.as_str(), "someone-else", "done"),
        (unknown, owner.as_str(), "done"),
    ];
    let answers = |authorization: Option<String>| {
        let system = &system;
        async move {
            let mut answers = Vec::new();
            for (n, (job_id, owner, status)) in cases.iter().enumerate() {
                let mut request = system
                    .request(Method::POST, "/events")
                    .header("ce-specversion", "1.0")
                    .header("ce-id", format!("forged-{n}-{}", uuid_like()))
                    .header("ce-source", "/outside")
                    .header("ce-type", "dev.knative.rabbitmq.event")
                    // Shaped like the worker's announcements (mp3conv_contract's JobMessage).
                    .json(&json!({
                        "job_id": job_id, "owner": owner, "status": status, "username": owner,
                        "video_fid": job_id, "mp3_fid": null, "attempt": 1,
                    }));
                if let Some(value) = &authorization {
                    request = request.header("authorization", value);
                }
                let response = send(request).await;
                let status = response.status().as_u16();
                answers.push((status, response.text().await.unwrap()));
            }
            answers
        }
    };
    let near_miss = &EVENTS_TOKEN[..EVENTS_TOKEN.len() - 1];
    for authorization in [
        None,
        Some("Bearer not-the-events-token-at-all".to_owned()),
        Some(format!("Bearer {near_miss}")),
        Some(format!("Basic {EVENTS_TOKEN}")),
    ] {
        let got = answers(authorization.clone()).await;
        assert_eq!(got[0].0, 401, "{authorization:?}: {got:?}");
        let body: Value = serde_json::from_str(&got[0].1).unwrap();
        assert_eq!(body["error"]["code"], "unauthorized", "{body}");
        assert!(
            got.iter().all(|a| *a == got[0]),
            "{authorization:?}: {got:?}"
        );
    }
    let got = answers(Some(format!("Bearer {EVENTS_TOKEN}"))).await;
    assert_eq!(got[0].0, 200, "{got:?}");
    assert!(
        got.iter().all(|a| *a == got[0]),
        "the source learns nothing either: {got:?}"
    );
    assert_eq!(
        notifications(&system, &token, 1).await.len(),
        1,
        "forged events record nothing"
    );
}

/// A given events token the notifier would refuse stops `up` and `serve` at start-up, named.
#[test]
fn a_short_events_token_is_refused_at_start() {
    for subcommand in ["up", "serve"] {
        let mut options = HostOptions::new(repo_manifest())
            .env("SPIN_VARIABLE_EVENTS_TOKEN", "short")
            .env("SPIN_VARIABLE_JWT_SIGNING_KEY", "unused")
            .env("SPIN_VARIABLE_JWT_PUBLIC_KEYS", "unused");
        if subcommand == "serve" {
            // `up` supplies its own worker token (and refuses one from the environment).
            options = options.env("SPIN_VARIABLE_WORKER_TOKEN", INTERNAL_TOKEN);
        }
        options.subcommand = subcommand;
        let failed = HostProcess::start_failing(options);
        assert_ne!(failed.code, Some(0), "{subcommand}");
        assert!(
            failed.stderr.contains("SPIN_VARIABLE_EVENTS_TOKEN"),
            "{subcommand}: {}",
            failed.stderr
        );
    }
}

/// The cluster's shape on RabbitMQ: the bridge retries a notifier that fails, a redelivered
/// message notifies nobody twice, and a malformed event is dead-lettered without retries.
#[tokio::test]
async fn the_bridge_retries_deduplicates_and_dead_letters_on_rabbitmq() {
    let recorder = Recorder::start().await;
    // The bridge's sink is the recorder, which forwards to the notifier unless told to fail.
    let dir = tempfile::tempdir().unwrap();
    let eventing = dir.path().join("eventing.toml");
    std::fs::write(
        &eventing,
        format!(
            r#"[[source]]
name = "mp3-notifier"
namespace = "test"
rabbitmqResourcesConfig = {{ queueName = "mp3", parallelism = 2 }}
delivery = {{ retry = 3, backoffPolicy = "exponential", backoffDelay = "PT0.1S" }}
sink = {{ uri = "{}/events" }}
"#,
            recorder.url
        ),
    )
    .unwrap();
    let run = format!("mp3conv_nt_{}", std::process::id());
    let prefix = format!("{run}.");
    let amqp = std::env::var("MP3CONV_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned());
    let mysql_server = std::env::var("MP3CONV_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".to_owned());
    let mysql_url = format!("{mysql_server}/{run}");
    mp3conv(&["migrate", "--mysql", &mysql_url]);
    let worker_env = services_worker_env(&run, &prefix);
    let worker = WorkerProcess::start(&worker_env);
    let keys = tempfile::tempdir().unwrap();
    mp3conv(&["keys", "generate", "--dir", keys.path().to_str().unwrap()]);
    let read = |name: &str| std::fs::read_to_string(keys.path().join(name)).unwrap();
    let mut options = HostOptions::new(repo_manifest())
        .arg("--eventing")
        .arg(eventing.to_str().unwrap())
        .arg("--queue-prefix")
        .arg(&prefix)
        // The URL carries a password: the environment, never the command line.
        .env("MP3CONV_RABBITMQ_URL", &amqp)
        .env("SPIN_VARIABLE_JWT_SIGNING_KEY", &read("jwt-signing.pem"))
        .env("SPIN_VARIABLE_JWT_PUBLIC_KEYS", &read("jwks.json"))
        .env("SPIN_VARIABLE_AUTH_DATABASE", "mysql")
        .env("SPIN_VARIABLE_MYSQL_URL", &mysql_url)
        .env(
            "SPIN_VARIABLE_MYSQL_HOST",
            mysql_server.rsplit('@').next().unwrap(),
        )
        .env("SPIN_VARIABLE_WORKER_URL", &worker.url)
        .env("SPIN_VARIABLE_WORKER_TOKEN", INTERNAL_TOKEN);
    for (key, value) in notifier_env(&recorder) {
        options = options.env(&key, &value);
    }
    let system = System::from_parts(HostProcess::start(options), Some(worker));
    recorder.forward("/events", &system.url(""));

    // The notifier fails twice (500): the bridge retries with backoff, then it is delivered.
    recorder.fail_next("/events", &[500, 500]);
    let (token, _, secret) = user_with_webhook(&system, &recorder, "rabbit", "/hook").await;
    let job = system.upload_clip(&token, None).await;
    let id = job["id"].as_str().unwrap().to_owned();
    assert_eq!(system.settled(&token, &id).await["status"], "done");
    assert_eq!(notifications(&system, &token, 1).await.len(), 1);
    let event_id = format!("{id}.done");
    let of_job = |r: &Recorded| r.headers["ce-id"] == event_id.as_str();
    let attempts = recorder.wait_for("/events", 3, of_job).await;
    assert_eq!(
        attempts.iter().map(|a| a.status).collect::<Vec<_>>(),
        [500, 500, 200]
    );
    // Exponential from PT0.1S: 0.2 s before the first retry, 0.4 s before the second.
    assert!(attempts[1].at - attempts[0].at >= Duration::from_millis(200));
    assert!(attempts[2].at - attempts[1].at >= Duration::from_millis(400));
    let first = &attempts[0];
    assert_eq!(first.headers["ce-type"], "dev.knative.rabbitmq.event");
    assert_eq!(
        first.headers["ce-source"],
        "/apis/v1/namespaces/test/rabbitmqsources/mp3-notifier#mp3"
    );
    assert_eq!(first.headers["ce-subject"], event_id.as_str());
    assert!(first.headers.contains_key("ce-time"));
    let hooks = recorder.wait_for("/hook", 1, |r| job_of(r) == id).await;
    verify_webhook(&secret, &hooks[0]);

    // The same AMQP message again (as after a lost ack): acknowledged, and nobody hears twice.
    let channel = amqp_channel(&amqp).await;
    publish(&channel, &format!("{prefix}mp3"), &event_id, &first.body).await;
    recorder.wait_for("/events", 4, of_job).await;
    let answered = recorder.requests("/events");
    assert_eq!(
        answered.iter().filter(|r| of_job(r)).last().unwrap().status,
        200
    );
    assert_eq!(notifications(&system, &token, 1).await.len(), 1);
    assert_eq!(
        recorder
            .requests("/hook")
            .iter()
            .filter(|r| job_of(r) == id)
            .count(),
        1
    );
    assert_eq!(recorder.requests("/send").len(), 1);

    // A malformed event: 400 from the notifier, dead-lettered after that one attempt.
    publish(
        &channel,
        &format!("{prefix}mp3"),
        "not-an-announcement",
        b"{\"oops\":",
    )
    .await;
    let bad = |r: &Recorded| r.headers["ce-id"] == "not-an-announcement";
    let tried = recorder.wait_for("/events", 1, bad).await;
    assert_eq!(tried[0].status, 400);
    let dead = dead_letter(&channel, &format!("{prefix}mp3.dead")).await;
    assert_eq!(dead, b"{\"oops\":");
    assert_eq!(
        recorder
            .requests("/events")
            .iter()
            .filter(|r| bad(r))
            .count(),
        1
    );

    // Nothing was left undelivered.
    let answered = expect(system.authed(&token, Method::GET, "/v1/notifications"), 200).await;
    assert_eq!(answered["notifications"].as_array().unwrap().len(), 1);
}

async fn amqp_channel(url: &str) -> lapin::Channel {
    let connection = lapin::Connection::connect(url, lapin::ConnectionProperties::default())
        .await
        .unwrap();
    // Leak the connection for the test's life: dropping it closes the channel.
    let channel = connection.create_channel().await.unwrap();
    std::mem::forget(connection);
    channel
}

async fn publish(channel: &lapin::Channel, queue: &str, message_id: &str, body: &[u8]) {
    let properties = lapin::BasicProperties::default()
        .with_message_id(message_id.into())
        .with_content_type("application/json".into())
        .with_delivery_mode(2);
    channel
        .basic_publish(
            "".into(),
            queue.into(),
            lapin::options::BasicPublishOptions::default(),
            body,
            properties,
        )
        .await
        .unwrap();
}

/// The first message that reaches a dead-letter queue (waits up to a minute).
async fn dead_letter(channel: &lapin::Channel, queue: &str) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = channel
            .basic_get(
                queue.into(),
                lapin::options::BasicGetOptions { no_ack: true },
            )
            .await
            .unwrap();
        if let Some(message) = got {
            return message.delivery.data.clone();
        }
        assert!(Instant::now() < deadline, "nothing reached {queue}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A receiver as plain as Python's `http.server`: HTTP/1.1 read by hand, the body read as
/// exactly `Content-Length` bytes, `Transfer-Encoding: chunked` refused (411), one request per
/// connection. It reports every request it read on a channel, with its verdict: a `/hook`
/// delivery must verify with the webhook secret (Standard Webhooks), a `/send` email request
/// must be the JSON email. 204 when the verdict is good, 400 when not.
mod strict {
    use std::collections::HashMap;
    use std::io::{BufRead as _, BufReader, Read as _, Write as _};
    use std::net::{TcpListener, TcpStream};
    use std::sync::{Arc, Mutex, mpsc};
    use std::time::Duration;

    /// A request the receiver read (or refused).
    #[derive(Debug)]
    pub struct Received {
        pub path: String,
        /// Lower-case names.
        pub headers: HashMap<String, String>,
        pub body: Vec<u8>,
        /// `Ok` when the body is what the path expects, else why not.
        pub verdict: Result<(), String>,
    }

    pub struct Receiver {
        pub url: String,
        pub received: mpsc::Receiver<Received>,
        pub secret: Arc<Mutex<Option<String>>>,
    }

    pub fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (sender, received) = mpsc::channel();
        let secret = Arc::new(Mutex::new(None::<String>));
        let shared = secret.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (sender, secret) = (sender.clone(), shared.clone());
                std::thread::spawn(move || {
                    if let Some(received) = serve(stream, &secret) {
                        let _ = sender.send(received);
                    }
                });
            }
        });
        Receiver {
            url,
            received,
            secret,
        }
    }

    fn serve(stream: TcpStream, secret: &Mutex<Option<String>>) -> Option<Received> {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let path = line.split_whitespace().nth(1)?.to_owned();
        let mut headers = HashMap::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).ok()?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':')?;
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
        }
        let length = headers.get("content-length").and_then(|v| v.parse().ok());
        let (status, body, verdict) = match (headers.get("transfer-encoding"), length) {
            (Some(encoding), _) => (
                411,
                Vec::new(),
                Err(format!("transfer-encoding {encoding}, no content-length")),
            ),
            (None, length) => {
                // Like `http.server` handlers: no length, no body.
                let mut body = vec![0; length.unwrap_or(0)];
                reader.read_exact(&mut body).ok()?;
                let verdict = check(&path, &headers, &body, secret);
                (if verdict.is_ok() { 204 } else { 400 }, body, verdict)
            }
        };
        let mut stream = stream;
        let _ = write!(
            stream,
            "HTTP/1.1 {status} Answer\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        );
        Some(Received {
            path,
            headers,
            body,
            verdict,
        })
    }

    fn check(
        path: &str,
        headers: &HashMap<String, String>,
        body: &[u8],
        secret: &Mutex<Option<String>>,
    ) -> Result<(), String> {
        match path {
            "/hook" => {
                let secret = secret.lock().unwrap().clone().ok_or("no secret yet")?;
                let mut map = http::HeaderMap::new();
                for (name, value) in headers {
                    map.insert(
                        http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                        value.parse().unwrap(),
                    );
                }
                standardwebhooks::Webhook::new(&secret)
                    .unwrap()
                    .verify(body, &map)
                    .map_err(|err| format!("the signature does not verify: {err}"))
            }
            "/send" => serde_json::from_slice::<serde_json::Value>(body)
                .map_err(|err| format!("not JSON: {err}"))
                .and_then(|mail| {
                    mail["to"]
                        .is_string()
                        .then_some(())
                        .ok_or_else(|| format!("no recipient in {mail}"))
                }),
            other => Err(format!("unexpected path {other}")),
        }
    }
}

/// Webhooks and email-API requests carry a `Content-Length`, so a receiver that reads exactly
/// that (and refuses chunked bodies, as many plain servers do) gets the whole body: the
/// webhook's signature verifies and the email is whole. Internal request ids stay inside.
#[tokio::test]
async fn plain_receivers_read_whole_signed_deliveries() {
    let receiver = strict::start();
    let env = [
        ("SPIN_VARIABLE_WEBHOOK_ALLOW_LOCAL", "true".to_owned()),
        (
            "SPIN_VARIABLE_WEBHOOK_HOSTS",
            "http://127.0.0.1:*".to_owned(),
        ),
        ("SPIN_VARIABLE_WEBHOOK_BACKOFF_MS", "50".to_owned()),
        (
            "SPIN_VARIABLE_EMAIL_API_URL",
            format!("{}/send", receiver.url),
        ),
        ("SPIN_VARIABLE_EMAIL_API_ORIGIN", receiver.url.clone()),
        ("SPIN_VARIABLE_EMAIL_API_KEY", "test-mail-key".to_owned()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let system = System::embedded_with(&[], &env);
    let token = system.user("plain").await;
    let me = expect(system.authed(&token, Method::GET, "/v1/me"), 200).await;
    let hook = expect(
        system
            .authed(&token, Method::PUT, "/v1/me/webhook")
            .json(&json!({ "url": format!("{}/hook", receiver.url) })),
        200,
    )
    .await;
    *receiver.secret.lock().unwrap() = Some(hook["secret"].as_str().unwrap().to_owned());

    let job = system.upload_clip(&token, None).await;
    let id = job["id"].as_str().unwrap().to_owned();
    assert_eq!(system.settled(&token, &id).await["status"], "done");

    // The first delivery of each kind decides: a refused or unverifiable one fails the test
    // (today's retries would only repeat it).
    let mut first = std::collections::HashMap::new();
    while first.len() < 2 {
        let received = receiver
            .received
            .recv_timeout(Duration::from_secs(120))
            .expect("a webhook delivery and an email request");
        first.entry(received.path.clone()).or_insert(received);
    }
    for (path, received) in &first {
        assert_eq!(received.verdict, Ok(()), "{path}: {received:?}");
        assert_eq!(
            received.headers["content-length"],
            received.body.len().to_string(),
            "{path}"
        );
        assert!(
            !received.headers.contains_key("x-request-id"),
            "{path}: internal request ids stay inside: {:?}",
            received.headers
        );
    }
    let delivery: Value = serde_json::from_slice(&first["/hook"].body).unwrap();
    assert_eq!(
        (
            delivery["type"].as_str(),
            delivery["data"]["job_id"].as_str()
        ),
        (Some("job.done"), Some(id.as_str()))
    );
    let mail: Value = serde_json::from_slice(&first["/send"].body).unwrap();
    assert_eq!(mail["to"], me["email"]);
    assert_eq!(
        first["/send"].headers["authorization"],
        "Bearer test-mail-key"
    );

    // The notifier's lines about the event name it and the request's trace, the delivery
    // lines with their attempt and answer.
    let event = format!("event={id}.done: ");
    // The receivers have their requests; the notifier writes its lines once it has read the
    // answers, and its summary last: wait for that line (a deadline, not a guess).
    let deadline = Instant::now() + Duration::from_secs(30);
    let summary = "recorded; webhook delivered";
    while !system
        .host
        .log()
        .lines()
        .any(|line| line.contains(&event) && line.contains(summary))
    {
        assert!(
            Instant::now() < deadline,
            "the notifier never summed up {event}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = system.host.log();
    let traced = |line: &str| {
        line.split_once("notifier: trace=")
            .is_some_and(|(_, rest)| {
                rest.len() > 32 && rest[..32].bytes().all(|b| b.is_ascii_hexdigit())
            })
    };
    let lines: Vec<&str> = log
        .lines()
        .filter(|line| traced(line) && line.contains(&event))
        .collect();
    for expected in [
        "webhook attempt 1/3: delivered (answered 204)",
        "email attempt 1/3: delivered (answered 204)",
        "recorded; webhook delivered (attempts: 1); email delivered (attempts: 1)",
    ] {
        assert!(
            lines.iter().any(|line| line.contains(expected)),
            "no `{expected}` among {lines:#?}"
        );
    }
}
