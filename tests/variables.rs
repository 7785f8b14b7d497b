//! `mp3conv up` supplies some variables itself: the in-process worker's address and the token
//! made for it, and with `--mysql` the users database. A `SPIN_VARIABLE_*` for one of them, left
//! in a shell, would silently win and point the gateway elsewhere, so `up` refuses to start and
//! names it. The values it only defaults stay open to the environment, as documented:
//! `SPIN_VARIABLE_JWT_*` replace its development keys, `SPIN_VARIABLE_EVENTS_TOKEN` its events
//! token.

mod common;

use common::{HostOptions, HostProcess, client, mp3conv, repo_manifest};

fn up() -> HostOptions {
    let mut options = HostOptions::new(repo_manifest());
    options.subcommand = "up";
    options
}

#[test]
fn up_refuses_a_worker_url_from_the_environment_and_names_it() {
    let failed =
        HostProcess::start_failing(up().env("SPIN_VARIABLE_WORKER_URL", "http://127.0.0.1:9"));
    assert_eq!(failed.code, Some(1), "{}", failed.stderr);
    assert!(
        failed.stderr.contains(
            "SPIN_VARIABLE_WORKER_URL would replace `worker_url` (the worker in this process); \
             unset it"
        ),
        "{}",
        failed.stderr
    );
    assert!(failed.stderr.contains("mp3conv serve"), "{}", failed.stderr);
}

/// Every conflict at once, before any service is reached (nothing listens on port 1), and no
/// value printed: these may hold passwords and tokens.
#[test]
fn up_with_mysql_refuses_database_and_token_variables_naming_each() {
    let failed = HostProcess::start_failing(
        up().arg("--mysql")
            .arg("mysql://root@127.0.0.1:1/never")
            .env("SPIN_VARIABLE_MYSQL_URL", "mysql://u:hunter2@db:3306/x")
            .env("SPIN_VARIABLE_WORKER_TOKEN", "a-stray-worker-token-value"),
    );
    assert_eq!(failed.code, Some(1), "{}", failed.stderr);
    for name in ["SPIN_VARIABLE_MYSQL_URL", "SPIN_VARIABLE_WORKER_TOKEN"] {
        assert!(failed.stderr.contains(name), "{name}: {}", failed.stderr);
    }
    assert!(failed.stderr.contains("unset them"), "{}", failed.stderr);
    for value in ["hunter2", "a-stray-worker-token-value", "127.0.0.1:1"] {
        assert!(!failed.stderr.contains(value), "{value}: {}", failed.stderr);
    }
}

/// The documented overrides still work in `up`: the keys auth publishes are the environment's,
/// and `/events` takes the environment's token and no other.
#[tokio::test]
async fn up_still_takes_keys_and_the_events_token_from_the_environment() {
    const EVENTS_TOKEN: &str = "variables-test-events-token";
    let keys = tempfile::tempdir().unwrap();
    mp3conv(&["keys", "generate", "--dir", keys.path().to_str().unwrap()]);
    let read = |name: &str| std::fs::read_to_string(keys.path().join(name)).unwrap();
    let host = HostProcess::start(
        up().env("SPIN_VARIABLE_JWT_SIGNING_KEY", &read("jwt-signing.pem"))
            .env("SPIN_VARIABLE_JWT_PUBLIC_KEYS", &read("jwks.json"))
            .env("SPIN_VARIABLE_EVENTS_TOKEN", EVENTS_TOKEN),
    );

    let kids = |jwks: &serde_json::Value| -> Vec<String> {
        jwks["keys"]
            .as_array()
            .expect("a key set")
            .iter()
            .map(|key| key["kid"].as_str().expect("a key id").to_owned())
            .collect()
    };
    let published: serde_json::Value = client()
        .get(host.url("/auth/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let given: serde_json::Value = serde_json::from_str(&read("jwks.json")).unwrap();
    assert_eq!(kids(&published), kids(&given));

    let events = |token: &'static str| {
        client()
            .post(host.url("/events"))
            .bearer_auth(token)
            .header("ce-specversion", "1.0")
            .header("ce-id", "variables-test")
            .header("ce-source", "/test")
            .header("ce-type", "dev.knative.rabbitmq.event")
            .body("not an event")
            .send()
    };
    assert_eq!(
        events("another-token-of-enough-length")
            .await
            .unwrap()
            .status(),
        401
    );
    let status = events(EVENTS_TOKEN).await.unwrap().status();
    assert!(
        status != 401 && !status.is_server_error(),
        "the environment's events token: {status}"
    );
}
