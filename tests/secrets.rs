//! Service URLs carry passwords, and every user of the machine can read any process's command
//! line (`ps`, `/proc/<pid>/cmdline`): they reach `mp3conv` through the environment or a file.

mod common;

use std::time::{Duration, Instant};

use common::api::System;
use common::{HostOptions, HostProcess, mp3conv, repo_manifest};
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};

fn amqp_url() -> String {
    std::env::var("MP3CONV_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

fn mongo_url() -> String {
    std::env::var("MP3CONV_TEST_MONGO_URL")
        .unwrap_or_else(|_| "mongodb://127.0.0.1:27217/?directConnection=true".to_owned())
}

/// The password in a URL's user information.
fn password(url: &str) -> String {
    let authority = url.split("://").nth(1).unwrap().split('/').next().unwrap();
    let (userinfo, _) = authority.rsplit_once('@').expect("the URL names a user");
    let (_, password) = userinfo
        .split_once(':')
        .expect("the URL carries a password");
    assert!(!password.is_empty());
    password.to_owned()
}

/// A process's command line, arguments separated by spaces.
fn cmdline(pid: u32) -> String {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    String::from_utf8_lossy(&raw).replace('\0', " ")
}

/// Consumers on `queue`, once it exists and has at least one (fails after 30 s).
async fn consumers(queue: &str) -> u32 {
    let connection = Connection::connect(&amqp_url(), ConnectionProperties::default())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // A failed passive declare closes the channel: a fresh one per try.
        let channel = connection.create_channel().await.unwrap();
        let declared = channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await;
        if let Ok(declared) = declared
            && declared.consumer_count() > 0
        {
            let _ = connection.close(200, "done".into()).await;
            return declared.consumer_count();
        }
        assert!(Instant::now() < deadline, "nobody consumes {queue}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A private file holding `text`.
fn secret_file(dir: &std::path::Path, name: &str, text: &str) -> String {
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(name);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .unwrap();
    std::io::Write::write_all(&mut file, format!("{text}\n").as_bytes()).unwrap();
    path.to_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_reads_service_urls_from_files_and_keeps_them_off_its_command_line() {
    let amqp = amqp_url();
    let secret = password(&amqp);
    let secrets = tempfile::tempdir().unwrap();
    let amqp_file = secret_file(secrets.path(), "amqp", &amqp);
    let mongo_file = secret_file(secrets.path(), "mongo", &mongo_url());
    let run = format!("mp3conv_sec_{}", std::process::id());
    let prefix = format!("{run}.");
    let system = System::embedded_with(
        &[
            "--rabbitmq-file",
            &amqp_file,
            "--mongodb-file",
            &mongo_file,
            "--mongodb-database",
            &run,
        ],
        &[
            ("MP3CONV_WORKER__QUEUE__PREFIX", &prefix),
            ("MP3CONV_WORKER__QUEUE__EXPIRES", "10m"),
        ],
    );
    let command_line = cmdline(system.host.pid());
    assert!(command_line.contains("--rabbitmq-file"), "{command_line}");
    assert!(!command_line.contains(&secret), "{command_line}");
    assert!(!command_line.contains(&amqp), "{command_line}");
    // The URLs were used: the worker declared its queues on that broker, the eventing bridge
    // consumes the announcements, and no blob went to the local directory.
    assert!(consumers(&format!("{prefix}mp3")).await >= 1);
    assert!(
        !system.host.data_dir().join("blobs").exists(),
        "--mongodb-file was ignored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_reads_the_rabbitmq_url_from_a_file_named_in_the_environment() {
    let amqp = amqp_url();
    let secret = password(&amqp);
    let secrets = tempfile::tempdir().unwrap();
    let amqp_file = secret_file(secrets.path(), "amqp", &amqp);
    let prefix = format!("mp3conv_sec_serve_{}.", std::process::id());
    // The worker would declare the queue; here it stands alone, so declare it as the worker
    // does (same arguments), expiring when unused.
    let connection = Connection::connect(&amqp, ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let mut arguments = FieldTable::default();
    arguments.insert(
        "x-expires".into(),
        lapin::types::AMQPValue::LongLongInt(600_000),
    );
    arguments.insert(
        "x-dead-letter-exchange".into(),
        lapin::types::AMQPValue::LongString("".into()),
    );
    arguments.insert(
        "x-dead-letter-routing-key".into(),
        lapin::types::AMQPValue::LongString(format!("{prefix}mp3.dead").into()),
    );
    channel
        .queue_declare(
            format!("{prefix}mp3").as_str().into(),
            QueueDeclareOptions::durable(),
            arguments,
        )
        .await
        .unwrap();
    let _ = connection.close(200, "done".into()).await;

    let keys = tempfile::tempdir().unwrap();
    mp3conv(&["keys", "generate", "--dir", keys.path().to_str().unwrap()]);
    let read = |name: &str| std::fs::read_to_string(keys.path().join(name)).unwrap();
    let host = HostProcess::start(
        HostOptions::new(repo_manifest())
            .env("SPIN_VARIABLE_JWT_SIGNING_KEY", &read("jwt-signing.pem"))
            .env("SPIN_VARIABLE_JWT_PUBLIC_KEYS", &read("jwks.json"))
            .env(
                "SPIN_VARIABLE_WORKER_TOKEN",
                "unused-worker-token-0123456789",
            )
            .arg("--eventing")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/eventing.toml"))
            .arg("--queue-prefix")
            .arg(&prefix)
            .env("MP3CONV_RABBITMQ_URL_FILE", &amqp_file),
    );
    let command_line = cmdline(host.pid());
    assert!(!command_line.contains(&secret), "{command_line}");
    assert!(consumers(&format!("{prefix}mp3")).await >= 1);
}
