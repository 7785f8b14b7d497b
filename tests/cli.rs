//! The `mp3conv` client against the running system, in both shapes (`mp3conv up`, and the host
//! plus the worker on MariaDB, RabbitMQ and SecantusDB): register, log in, convert an upload and
//! a link, wait, download, list, status, delete; and the exit codes scripts rely on (0 ok,
//! 1 job failed, 2 usage, 3 auth, 4 server unreachable). The client talks to the system
//! through a proxy that checks every answer against `openapi.yaml`.

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Stdio;

use common::api::{CheckingProxy, System, video_site};
use common::{media, probe_audio};
use serde_json::Value;
use tokio::io::AsyncWriteExt as _;

/// One run of the client: (exit code, stdout, stderr).
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|_| panic!("not JSON: {}\n{}", self.stdout, self.stderr))
    }
}

/// The client with its own config directory and working directory.
struct Cli {
    server: String,
    config: tempfile::TempDir,
    cwd: tempfile::TempDir,
}

impl Cli {
    fn new(server: &str) -> Cli {
        Cli {
            server: server.to_owned(),
            config: tempfile::tempdir().unwrap(),
            cwd: tempfile::tempdir().unwrap(),
        }
    }

    async fn run(&self, args: &[&str], stdin: &str) -> Run {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_mp3conv"))
            .args(args)
            .env("MP3CONV_SERVER", &self.server)
            .env("MP3CONV_CONFIG_DIR", self.config.path())
            .current_dir(self.cwd.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin.as_bytes()).await.unwrap();
        drop(input);
        let output = child.wait_with_output().await.unwrap();
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    async fn ok(&self, args: &[&str]) -> Run {
        let run = self.run(args, "").await;
        assert_eq!(run.code, 0, "{args:?}: {}{}", run.stdout, run.stderr);
        run
    }
}

/// An MP3 of `seconds`, checked by ffprobe: codec mp3, duration within 1%.
fn assert_mp3(path: &Path, seconds: f64) {
    let (codec, duration) = probe_audio(&std::fs::read(path).unwrap());
    assert_eq!(codec, "mp3", "{}", path.display());
    assert!(
        (duration - seconds).abs() <= seconds * 0.01,
        "{}: {duration} s, expected {seconds} s within 1%",
        path.display()
    );
}

async fn scenario(system: &System) {
    let proxy = CheckingProxy::start(&system.url("")).await;
    let cli = Cli::new(&proxy.url);
    let email = format!("cli-{}@example.com", common::api::uuid_like());

    // Not logged in yet.
    let run = cli.run(&["jobs"], "").await;
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(
        run.stderr.contains("not logged in: run `mp3conv login`"),
        "{}",
        run.stderr
    );

    let run = cli
        .run(
            &["register", &email, "--password-stdin", "--json"],
            "correct horse battery\n",
        )
        .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.json()["email"], email.as_str());
    let run = cli
        .run(&["login", &email, "--password-stdin"], "not the password\n")
        .await;
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(
        run.stderr.contains("wrong email or password"),
        "{}",
        run.stderr
    );
    let run = cli
        .run(
            &["login", &email, "--password-stdin"],
            "correct horse battery\n",
        )
        .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let credentials = cli.config.path().join("credentials.json");
    let mode = std::fs::metadata(&credentials)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the token file is private");

    // An upload, waited for and saved; progress as plain lines (no terminal here). The client
    // follows the job's event stream rather than polling it.
    let clip = media("clip-10");
    proxy.take_seen();
    let out = cli.cwd.path().join("out.mp3");
    let run = cli
        .ok(&[
            "convert",
            clip.to_str().unwrap(),
            "--bitrate",
            "128",
            "-o",
            out.to_str().unwrap(),
        ])
        .await;
    assert!(run.stderr.contains("upload: 100%"), "{}", run.stderr);
    assert!(run.stderr.contains("convert: 100%"), "{}", run.stderr);
    assert_mp3(&out, 10.0);
    let seen = proxy.take_seen();
    let followed =
        |line: &String| line.starts_with("GET /v1/jobs/") && line.ends_with("/events -> 200");
    assert_eq!(seen.iter().filter(|l| followed(l)).count(), 1, "{seen:#?}");
    let polled = |line: &String| {
        line.strip_prefix("GET /v1/jobs/")
            .is_some_and(|rest| !rest.contains('/'))
    };
    assert!(!seen.iter().any(polled), "polled instead: {seen:#?}");

    // A link, with JSON output; saved under the link's name.
    let site = video_site().await;
    let run = cli
        .ok(&["convert", &format!("{site}/talk.mp4"), "--wait", "--json"])
        .await;
    let saved = run.json();
    assert_eq!(saved["saved"], "talk.mp3");
    assert_mp3(&cli.cwd.path().join("talk.mp3"), 10.0);

    // List, status, download again, delete.
    let jobs = cli.ok(&["jobs", "--json"]).await.json();
    let jobs = jobs["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 2);
    let upload = jobs[1]["id"].as_str().unwrap().to_owned();
    let status = cli.ok(&["status", &upload, "--json"]).await.json();
    assert_eq!(status["status"], "done");
    assert_eq!(status["bitrate"], "128");
    let text = cli.ok(&["status", &upload]).await;
    assert!(
        text.stdout.contains("done") && text.stdout.contains("100%"),
        "{}",
        text.stdout
    );
    let again = cli.cwd.path().join("again.mp3");
    cli.ok(&["download", &upload, "-o", again.to_str().unwrap()])
        .await;
    assert_eq!(std::fs::read(&again).unwrap(), std::fs::read(&out).unwrap());
    cli.ok(&["rm", &upload]).await;
    let run = cli.run(&["status", &upload], "").await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("not found"), "{}", run.stderr);

    // A video that cannot be converted: exit 1 with the reason.
    let notes = cli.cwd.path().join("notes.mp4");
    std::fs::write(&notes, b"this is not a video").unwrap();
    let run = cli
        .run(&["convert", notes.to_str().unwrap(), "--wait"], "")
        .await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("the conversion failed"),
        "{}",
        run.stderr
    );

    // Usage the server refuses: exit 2.
    let run = cli
        .run(&["convert", clip.to_str().unwrap(), "--bitrate", "999"], "")
        .await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("bitrate"), "{}", run.stderr);
    let run = cli.run(&["convert", "/nonexistent/video.mp4"], "").await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    proxy.assert_conforming();
}

#[tokio::test]
async fn the_client_against_mp3conv_up() {
    scenario(&System::embedded(&[])).await;
}

#[tokio::test]
async fn the_client_against_the_services() {
    scenario(&System::services()).await;
}

#[tokio::test]
async fn an_unreachable_server_is_exit_4_and_bad_usage_exit_2() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let cli = Cli::new(&format!("http://{closed}"));
    let run = cli
        .run(&["login", "a@example.com", "--password-stdin"], "pw\n")
        .await;
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert!(
        run.stderr
            .contains(&format!("server at http://{closed} is not reachable")),
        "{}",
        run.stderr
    );
    let run = cli.run(&["convert"], "").await;
    assert_eq!(run.code, 2, "clap's usage error: {}", run.stderr);
    let run = Cli::new("ftp://example.com").run(&["jobs"], "").await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    // A job id is a job id: `rm ../me` once resolved to `DELETE /v1/me` (the account).
    for args in [
        &["rm", "../me"][..],
        &["rm", "../me/webhook"],
        &["status", "x/../../v1/me"],
        &["download", "../me"],
    ] {
        let run = cli.run(args, "").await;
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains("job id"), "{args:?}: {}", run.stderr);
    }
}
