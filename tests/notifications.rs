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
                    .json(&json!({
                        "job_id": job_id, "owner": owner, "status": status, "username": owner,
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
            .env("SPIN_VARIABLE_WORKER_TOKEN", INTERNAL_TOKEN)
            .env("SPIN_VARIABLE_JWT_SIGNING_KEY", "unused")
            .env("SPIN_VARIABLE_JWT_PUBLIC_KEYS", "unused");
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
    let system = System {
        host: HostProcess::start(options),
        worker: Some(worker),
    };
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
