//! Outbound https from the functions, end to end in `mp3conv up`: a finished job's webhook and
//! email reach receivers that speak https with a certificate from a CA made for the test
//! (trusted through `SSL_CERT_FILE`), and a wildcard `webhook_hosts` entry never reaches a
//! loopback address, whatever the webhook's host name resolves to. Links are fetched over https
//! with the same trust.

mod common;

use std::time::{Duration, Instant};

use common::api::{System, expect, video_site_https};
use common::tls::TestCa;
use common::{Recorded, Recorder};
use reqwest::Method;
use serde_json::{Value, json};

fn port_of(url: &str) -> u16 {
    url.rsplit(':').next().unwrap().parse().unwrap()
}

/// `mp3conv up` trusting `ca`, webhooks to `webhook_hosts`, email to `mail`.
fn system(ca: &TestCa, webhook_hosts: &str, mail: &Recorder) -> System {
    let email_url = format!("{}/send", mail.url);
    System::embedded_with(
        &[],
        &[
            ("SSL_CERT_FILE", ca.pem_file.to_str().unwrap()),
            // Registering a localhost URL needs local development mode; what the host then
            // lets the notifier reach is what is under test.
            ("SPIN_VARIABLE_WEBHOOK_ALLOW_LOCAL", "true"),
            ("SPIN_VARIABLE_WEBHOOK_HOSTS", webhook_hosts),
            ("SPIN_VARIABLE_WEBHOOK_BACKOFF_MS", "50"),
            ("SPIN_VARIABLE_EMAIL_API_URL", &email_url),
            ("SPIN_VARIABLE_EMAIL_API_ORIGIN", &mail.url),
            ("SPIN_VARIABLE_EMAIL_API_KEY", "test-mail-key"),
        ],
    )
}

/// A user with a webhook at `url`; returns (token, email, secret).
async fn user_with_webhook(system: &System, name: &str, url: &str) -> (String, String, String) {
    let token = system.user(name).await;
    let me = expect(system.authed(&token, Method::GET, "/v1/me"), 200).await;
    let hook = expect(
        system
            .authed(&token, Method::PUT, "/v1/me/webhook")
            .json(&json!({ "url": url })),
        200,
    )
    .await;
    (
        token,
        me["email"].as_str().unwrap().to_owned(),
        hook["secret"].as_str().unwrap().to_owned(),
    )
}

fn job_of(delivery: &Recorded) -> String {
    let body: Value = serde_json::from_slice(&delivery.body).unwrap_or(Value::Null);
    body["data"]["job_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn webhooks_and_email_are_delivered_over_https() {
    let ca = TestCa::new();
    let receiver = Recorder::start_https(&ca).await;
    // An explicit entry for the receiver: the operator named this host.
    let system = system(&ca, &receiver.url, &receiver);
    let hook = format!("{}/hook", receiver.url);
    let (token, email, secret) = user_with_webhook(&system, "tls", &hook).await;

    let job = system.upload_clip(&token, None).await;
    let id = job["id"].as_str().unwrap();
    assert_eq!(system.settled(&token, id).await["status"], "done");

    let hooks = receiver.wait_for("/hook", 1, |r| job_of(r) == id).await;
    standardwebhooks::Webhook::new(&secret)
        .unwrap()
        .verify(&hooks[0].body, &hooks[0].headers)
        .expect("the delivery's signature verifies with the secret");
    let payload: Value = serde_json::from_slice(&hooks[0].body).unwrap();
    assert_eq!(payload["type"], "job.done");
    let mails = receiver.wait_for("/send", 1, |_| true).await;
    let mail: Value = serde_json::from_slice(&mails[0].body).unwrap();
    assert_eq!(mail["to"], email.as_str());
    assert_eq!(mails[0].headers["authorization"], "Bearer test-mail-key");
    assert!(
        !system.host.log().contains("panicked"),
        "{}",
        system.host.log()
    );
}

/// A link to an https site whose certificate only `SSL_CERT_FILE` vouches for: the worker's
/// fetcher (rustls on the process's one crypto provider) downloads and converts it.
#[tokio::test]
async fn links_are_fetched_over_https() {
    let ca = TestCa::new();
    let mail = Recorder::start_https(&ca).await;
    let site = video_site_https(&ca).await;
    let system = system(&ca, &mail.url, &mail);
    let token = system.user("tls-link").await;
    let job = expect(
        system
            .authed(&token, Method::POST, "/v1/jobs")
            .json(&json!({ "url": format!("{site}/talk.mp4") })),
        202,
    )
    .await;
    let id = job["id"].as_str().unwrap();
    let settled = system.settled(&token, id).await;
    assert_eq!(settled["status"], "done", "{settled}");
    assert!(
        !system.host.log().contains("panicked"),
        "{}",
        system.host.log()
    );
}

/// The shape of the default `webhook_hosts` (`https://*:443`), on the receiver's port: a host
/// name admitted only by the wildcard may not reach loopback, however it resolves.
#[tokio::test]
async fn a_wildcard_webhook_host_never_reaches_loopback() {
    let ca = TestCa::new();
    let receiver = Recorder::start_https(&ca).await;
    // Mail elsewhere: its explicit entry must not name the webhook's host and port.
    let mail = Recorder::start_https(&ca).await;
    let port = port_of(&receiver.url);
    let system = system(&ca, &format!("https://*:{port}"), &mail);
    let hook = format!("https://localhost:{port}/hook");
    let (token, _, _) = user_with_webhook(&system, "probing", &hook).await;

    let job = system.upload_clip(&token, None).await;
    let id = job["id"].as_str().unwrap();
    assert_eq!(system.settled(&token, id).await["status"], "done");
    // The webhook delivery is recorded as given up once its attempts are spent.
    let users_db = system.host.data_dir().join("sqlite_db.db");
    let deadline = Instant::now() + Duration::from_secs(60);
    let state = loop {
        let state = delivery_state(&users_db, "webhook").await;
        if let Some(state) = state {
            break state;
        }
        assert!(
            Instant::now() < deadline,
            "no webhook delivery recorded; log:\n{}",
            system.host.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(state, "failed");
    assert!(
        receiver.requests("/hook").is_empty(),
        "the webhook reached loopback"
    );
    assert!(
        system.host.log().contains("reaches only public addresses"),
        "{}",
        system.host.log()
    );
}

/// The state of the only delivery on `channel`, if recorded yet.
async fn delivery_state(db: &std::path::Path, channel: &str) -> Option<String> {
    if !db.exists() {
        return None;
    }
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(db)
        .read_only(true);
    let mut connection = sqlx::ConnectOptions::connect(&options).await.ok()?;
    sqlx::query_scalar::<_, String>("SELECT state FROM deliveries WHERE channel = ?")
        .bind(channel)
        .fetch_optional(&mut connection)
        .await
        .ok()
        .flatten()
}
