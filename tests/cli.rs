//! The `mp3conv` client against the running system, in both shapes (`mp3conv up`, and the host
//! plus the worker on MariaDB, RabbitMQ and SecantusDB): register, log in, convert an upload and
//! a link, wait, download, list, status, delete; and the exit codes scripts rely on (0 ok,
//! 1 job failed, 2 usage, 3 auth, 4 server unreachable). The client talks to the system
//! through a proxy that checks every answer against `openapi.yaml`. Conversion options as
//! flags reach the job (and the MP3, checked by ffprobe), bad ones are refused before any
//! request, presets make a round trip, and a job split by chapters saves its tracks.

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

    // The account and its quota: two jobs made this hour (a deletion does not give one back);
    // what is kept is the link's MP3 alone.
    let link_mp3 = jobs[0]["audio"]["size"].as_u64().unwrap();
    let me = cli.ok(&["me", "--json"]).await.json();
    assert_eq!(me["email"], email.as_str());
    assert_eq!(me["quota"]["usage"]["storage_bytes"], link_mp3, "{me}");
    assert_eq!(me["quota"]["usage"]["jobs_per_hour"], 2, "{me}");
    let text = cli.ok(&["me"]).await.stdout;
    assert!(text.starts_with(&email), "{text}");
    assert!(text.contains("jobs in the last hour: 2 of 100"), "{text}");
    assert!(
        text.contains(&format!("({link_mp3} bytes) of 10.0 GiB")),
        "{text}"
    );

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

    // A bad option: exit 2, refused before anything is sent.
    proxy.take_seen();
    let run = cli
        .run(&["convert", clip.to_str().unwrap(), "--bitrate", "999"], "")
        .await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("--bitrate: "), "{}", run.stderr);
    assert_eq!(proxy.take_seen(), Vec::<String>::new());
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

/// Registers and logs in a fresh account through the client.
async fn logged_in(cli: &Cli, name: &str) {
    let email = format!("{name}-{}@example.com", common::api::uuid_like());
    let password = "correct horse battery\n";
    cli.run(&["register", &email, "--password-stdin"], password)
        .await;
    let run = cli
        .run(&["login", &email, "--password-stdin"], password)
        .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
}

/// Options as flags: refused before any request when bad (the flag named), recorded on the
/// job and made into the MP3 when good; the server's own refusals name their flag too; a
/// preset saved, shown, listed, replaced, applied under the flags and deleted; a job split
/// by chapters saves its tracks next to the MP3.
#[tokio::test]
async fn options_as_flags_presets_and_tracks() {
    let system = System::embedded(&[]);
    let proxy = CheckingProxy::start(&system.url("")).await;
    let cli = Cli::new(&proxy.url);
    logged_in(&cli, "options").await;
    let clip = media("clip-10");
    let clip = clip.to_str().unwrap();

    // Bad values: exit 2 naming the flag, and not one request.
    proxy.take_seen();
    for (args, says) in [
        (&["--start", "soon"][..], "--start: `start` must be"),
        (
            &["--start", "20", "--end", "10"],
            "--end: `end` (00:00:10.000) must be",
        ),
        (&["--normalize", "-20"], "--normalize: `normalize` must be"),
        (
            &["--sample-rate", "22050"],
            "--sample-rate: `sample_rate` must be",
        ),
        (&["--channels", "5.1"], "--channels: "),
        (&["--year", "24"], "--year: "),
        (&["--preset", "../up"], "--preset: "),
    ] {
        let mut all = vec!["convert", clip];
        all.extend_from_slice(args);
        let run = cli.run(&all, "").await;
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains(says), "{args:?}: {}", run.stderr);
    }
    let run = cli
        .run(&["presets", "save", "a/b", "--channels", "mono"], "")
        .await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_eq!(
        proxy.take_seen(),
        Vec::<String>::new(),
        "a request was sent"
    );

    // Good ones reach the job and the MP3: a 5.5 s clip, tagged, mono, 48 kHz, normalized.
    let out = cli.cwd.path().join("talk.mp3");
    let saved = cli
        .ok(&[
            "convert",
            clip,
            "--start",
            "2",
            "--end",
            "0:07.5",
            "--title",
            "A talk",
            "--artist",
            "Ada",
            "--year",
            "2024",
            "--cover",
            "none",
            "--channels",
            "mono",
            "--sample-rate",
            "48000",
            "--normalize",
            "--bitrate",
            "128",
            "-o",
            out.to_str().unwrap(),
            "--json",
        ])
        .await
        .json();
    assert!(saved.get("tracks").is_none(), "{saved}");
    let id = saved["id"].as_str().unwrap().to_owned();
    let job = cli.ok(&["status", &id, "--json"]).await.json();
    assert_eq!(job["bitrate"], "128");
    assert_eq!(
        job["options"],
        serde_json::json!({
            "start": 2.0, "end": 7.5, "normalize": -16, "title": "A talk", "artist": "Ada",
            "year": 2024, "cover": "none", "channels": "mono", "sample_rate": 48000
        })
    );
    let text = cli.ok(&["status", &id]).await.stdout;
    assert!(
        text.contains(
            "options: start 00:00:02.000, end 00:00:07.500, normalize -16 LUFS, title \"A talk\""
        ),
        "{text}"
    );
    let info = media::probe_path(&out);
    assert!((media::duration(&info) - 5.5).abs() <= 0.05, "{info}");
    let audio = &info["streams"][0];
    assert_eq!(audio["codec_name"], "mp3");
    assert_eq!(audio["channels"], 1);
    assert_eq!(audio["sample_rate"], "48000");
    assert_eq!(info["format"]["tags"]["title"], "A talk", "{info}");
    assert_eq!(info["format"]["tags"]["artist"], "Ada", "{info}");
    assert_eq!(
        info["streams"].as_array().unwrap().len(),
        1,
        "a cover despite --cover none: {info}"
    );

    // The server's refusals name the flag: a preset that does not exist.
    let run = cli
        .run(&["convert", clip, "--preset", "nothing here"], "")
        .await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("--preset: you have no preset named `nothing here`"),
        "{}",
        run.stderr
    );

    // Presets: none, saved, listed, shown, replaced.
    let run = cli.ok(&["presets", "list"]).await;
    assert!(run.stdout.contains("no presets yet"), "{}", run.stdout);
    let run = cli
        .ok(&[
            "presets",
            "save",
            "my podcast",
            "--channels",
            "mono",
            "--bitrate",
            "v2",
            "--album",
            "The Show",
        ])
        .await;
    assert!(
        run.stdout
            .contains("saved preset my podcast: bitrate v2, album \"The Show\", channels mono"),
        "{}",
        run.stdout
    );
    let listed = cli.ok(&["presets", "list", "--json"]).await.json();
    assert_eq!(listed["presets"].as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed["presets"][0]["name"], "my podcast");
    assert_eq!(
        listed["presets"][0]["options"],
        serde_json::json!({ "bitrate": "v2", "album": "The Show", "channels": "mono" })
    );
    let run = cli
        .ok(&[
            "presets",
            "save",
            "my podcast",
            "--channels",
            "stereo",
            "--album",
            "The Show",
        ])
        .await;
    assert!(
        run.stdout.starts_with("replaced preset my podcast"),
        "{}",
        run.stdout
    );
    let shown = cli
        .ok(&["presets", "show", "my podcast", "--json"])
        .await
        .json();
    assert_eq!(
        shown["options"],
        serde_json::json!({ "album": "The Show", "channels": "stereo" })
    );

    // Applied under the flags: the preset's album, the flag's channels and title.
    let run = cli
        .ok(&[
            "convert",
            clip,
            "--preset",
            "my podcast",
            "--channels",
            "mono",
            "--title",
            "Episode 1",
            "--json",
        ])
        .await;
    let id = run.json()["id"].as_str().unwrap().to_owned();
    let job = system.settled(&kept_token(&cli), &id).await;
    assert_eq!(job["status"], "done", "{job}");
    assert_eq!(
        job["options"],
        serde_json::json!({
            "album": "The Show", "channels": "mono", "title": "Episode 1", "preset": "my podcast"
        })
    );

    // Deleted: gone.
    cli.ok(&["presets", "delete", "my podcast"]).await;
    let run = cli.run(&["presets", "show", "my podcast"], "").await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("not found"), "{}", run.stderr);

    // Split by chapters: the MP3 and its three tracks, saved side by side.
    let video = media::book();
    let saved = cli
        .ok(&[
            "convert",
            video.to_str().unwrap(),
            "--split",
            "chapters",
            "--wait",
            "--json",
        ])
        .await
        .json();
    assert_eq!(saved["saved"], "book.mp3");
    // The whole video, not one chapter.
    let whole = media::probe_path(&cli.cwd.path().join("book.mp3"));
    let expected = media::bare_mp3_seconds(&video, None);
    assert!(
        (media::duration(&whole) - expected).abs() <= 0.05,
        "{expected} s expected: {whole}"
    );
    let tracks = saved["tracks"].as_array().expect("the tracks saved");
    assert_eq!(tracks.len(), 3, "{saved}");
    for (n, title) in ["One", "Two", "Three"].iter().enumerate() {
        let name = format!("book - {:02} - {title}.mp3", n + 1);
        assert_eq!(tracks[n]["saved"], name.as_str(), "{saved}");
        let info = media::probe_path(&cli.cwd.path().join(&name));
        let chapter = (n as f64 * 2.0, (n + 1) as f64 * 2.0);
        let expected = media::bare_mp3_seconds(&video, Some(chapter));
        assert!(
            (media::duration(&info) - expected).abs() <= 0.05,
            "{name}: {expected} s expected: {info}"
        );
        assert_eq!(info["format"]["tags"]["title"], *title, "{name}: {info}");
    }
    proxy.assert_conforming();
}

/// The token the client keeps, for checking through the API what it did.
fn kept_token(cli: &Cli) -> String {
    let kept: Value = serde_json::from_str(
        &std::fs::read_to_string(cli.config.path().join("credentials.json")).unwrap(),
    )
    .unwrap();
    kept["token"].as_str().unwrap().to_owned()
}
