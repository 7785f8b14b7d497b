//! End-to-end benchmark: what a user waits for, in both shapes of the system.
//!
//! - a 1-minute clip from upload start to MP3 downloaded, in `mp3conv up` (embedded) and in the
//!   cluster's shape (`mp3conv serve` + `mp3conv-worker` on MariaDB, RabbitMQ and SecantusDB),
//!   against a bare ffmpeg conversion of the same clip measured in the same run;
//! - 50 users at once, each converting a 30-second clip (`up`): all complete, none lost, the
//!   total time;
//! - the idle footprint of `up`: resident memory after start, after 1,000 requests and after
//!   1,000 more (it must not grow).
//!
//! Usage: `e2e-bench <mp3conv> <mp3conv-worker> <repository root>` (`make bench`, which also
//! starts the services and exports their `MP3CONV_TEST_*` addresses).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use mp3conv_bench::{Process, median, path, register_and_login, run};
use serde_json::Value;

const RUNS: usize = 3;
const USERS: usize = 50;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(mp3conv), Some(worker), Some(root)) = (args.next(), args.next(), args.next()) else {
        bail!("usage: e2e-bench <mp3conv> <mp3conv-worker> <repository root>");
    };
    let (mp3conv, worker, root) = (
        PathBuf::from(mp3conv),
        PathBuf::from(worker),
        std::fs::canonicalize(root)?,
    );
    let work = tempfile::tempdir()?;
    let dir = work.path();
    let minute = clip(dir, 60)?;
    let half_minute = clip(dir, 30)?;

    println!("| figure | measured | baseline (same run) | ratio | target |");
    println!("|---|---|---|---|---|");
    let mut bare = Vec::new();
    for _ in 0..RUNS {
        bare.push(bare_ffmpeg(&minute, dir)?);
    }
    let bare = median(&mut bare);

    // Embedded.
    let up = System::up(&mp3conv, &root, &dir.join("up"))?;
    let user = up.user("e2e").await?;
    let mut times = Vec::new();
    for _ in 0..RUNS {
        times.push(up.round_trip(&user, &minute, dir).await?);
    }
    let embedded = median(&mut times);
    println!(
        "| 1-minute clip, upload start to MP3 downloaded, `up` (median of {RUNS}) | {:.2} s | {:.2} s (bare ffmpeg) | {:.2} | |",
        embedded.as_secs_f64(),
        bare.as_secs_f64(),
        embedded.as_secs_f64() / bare.as_secs_f64()
    );

    // 50 users at once.
    let mut users = Vec::new();
    for i in 0..USERS {
        users.push(up.user(&format!("crowd{i}")).await?);
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for user in users {
        let system = up.clone_handle();
        let clip = half_minute.clone();
        tasks.push(tokio::spawn(async move {
            let id = system.upload(&user, &clip).await?;
            system.wait_done(&user, &id).await
        }));
    }
    let mut done = 0;
    for task in tasks {
        let job = task.await??;
        anyhow::ensure!(job["status"] == "done", "a job did not complete: {job}");
        done += 1;
    }
    let total = started.elapsed();
    println!(
        "| {USERS} users at once, a 30 s clip each (`up`): all complete, none lost | {done}/{USERS} in {:.1} s ({:.0} jobs/min) | | | all complete |",
        total.as_secs_f64(),
        done as f64 * 60.0 / total.as_secs_f64()
    );

    // Idle footprint.
    drop(up);
    let up = System::up(&mp3conv, &root, &dir.join("idle"))?;
    let user = up.user("idle").await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let start = mp3conv_bench::memory(up.process.pid(), "VmRSS")?;
    up.requests(&user, 1_000).await?;
    let after = mp3conv_bench::memory(up.process.pid(), "VmRSS")?;
    up.requests(&user, 1_000).await?;
    let again = mp3conv_bench::memory(up.process.pid(), "VmRSS")?;
    println!(
        "| `up` resident memory: after start / after 1,000 requests / after 2,000 | {:.1} / {:.1} / {:.1} MB | | {:.2} (2,000 vs 1,000) | no growth |",
        start as f64 / 1e6,
        after as f64 / 1e6,
        again as f64 / 1e6,
        again as f64 / after as f64
    );
    drop(up);

    // The cluster's shape.
    let services = System::services(&mp3conv, &worker, &root, &dir.join("services"))?;
    let user = services.user("e2e").await?;
    let mut times = Vec::new();
    for _ in 0..RUNS {
        times.push(services.round_trip(&user, &minute, dir).await?);
    }
    let shaped = median(&mut times);
    println!(
        "| 1-minute clip, upload start to MP3 downloaded, host + worker on the services (median of {RUNS}) | {:.2} s | {:.2} s (bare ffmpeg) | {:.2} | |",
        shaped.as_secs_f64(),
        bare.as_secs_f64(),
        shaped.as_secs_f64() / bare.as_secs_f64()
    );
    Ok(())
}

/// A clip of `seconds` (320x240 test pattern, H.264/AAC), made once.
fn clip(dir: &Path, seconds: u32) -> anyhow::Result<PathBuf> {
    let file = dir.join(format!("clip-{seconds}.mp4"));
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("testsrc=size=320x240:rate=25:duration={seconds}"))
        .args(["-f", "lavfi", "-i"])
        .arg(format!("sine=frequency=440:duration={seconds}"))
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
        ])
        .args(["-c:a", "aac"])
        .arg(&file)
        .status()?;
    anyhow::ensure!(status.success(), "ffmpeg could not make the clip");
    Ok(file)
}

/// What the conversion costs without mp3conv: `ffmpeg -i in -vn -c:a libmp3lame -b:a 192k`.
fn bare_ffmpeg(clip: &Path, dir: &Path) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-i"])
        .arg(clip)
        .args(["-vn", "-c:a", "libmp3lame", "-b:a", "192k"])
        .arg(dir.join("bare.mp3"))
        .status()?;
    anyhow::ensure!(status.success(), "bare ffmpeg failed");
    Ok(started.elapsed())
}

/// A running system and a client for it.
struct System {
    process: Process,
    _worker: Option<Process>,
    base: String,
    client: reqwest::Client,
}

/// What the concurrent users share.
#[derive(Clone)]
struct Handle {
    base: String,
    client: reqwest::Client,
}

impl System {
    fn up(mp3conv: &Path, root: &Path, data: &Path) -> anyhow::Result<System> {
        let process = Process::start(
            Command::new(mp3conv)
                .args(["up", "--listen", "127.0.0.1:0"])
                .args(["--manifest", path(&root.join("spin.toml"))?])
                .args(["--data-dir", path(data)?]),
            "Serving http://",
        )?;
        Ok(System::around(process, None))
    }

    fn services(
        mp3conv: &Path,
        worker_binary: &Path,
        root: &Path,
        dir: &Path,
    ) -> anyhow::Result<System> {
        let var = |name: &str| std::env::var(name).with_context(|| format!("{name} is not set"));
        let (mysql, amqp, mongo) = (
            var("MP3CONV_TEST_MYSQL_URL")?,
            var("MP3CONV_TEST_AMQP_URL")?,
            var("MP3CONV_TEST_MONGO_URL")?,
        );
        let name = format!("mp3conv_e2e_bench_{}", std::process::id());
        let token = "e2e-benchmark-internal-token";
        let worker = Process::start(
            Command::new(worker_binary)
                .env("MP3CONV_WORKER__LISTEN", "127.0.0.1:0")
                .env("MP3CONV_WORKER__INTERNAL_TOKEN", token)
                .env("MP3CONV_WORKER__STORAGE__KIND", "gridfs")
                .env("MP3CONV_WORKER__STORAGE__URL", &mongo)
                .env("MP3CONV_WORKER__STORAGE__DATABASE", &name)
                .env("MP3CONV_WORKER__JOBS__KIND", "mongo")
                .env("MP3CONV_WORKER__JOBS__URL", &mongo)
                .env("MP3CONV_WORKER__JOBS__DATABASE", &name)
                .env("MP3CONV_WORKER__QUEUE__KIND", "rabbitmq")
                .env("MP3CONV_WORKER__QUEUE__URL", &amqp)
                .env("MP3CONV_WORKER__QUEUE__PREFIX", format!("{name}."))
                .env("MP3CONV_WORKER__QUEUE__EXPIRES", "10m"),
            "mp3conv-worker listening on http://",
        )?;
        let keys = dir.join("keys");
        run(mp3conv, &["keys", "generate", "--dir", path(&keys)?])?;
        let mysql_url = format!("{mysql}/{name}");
        run(mp3conv, &["migrate", "--mysql", &mysql_url])?;
        let manifest = dir.join("spin.toml");
        mp3conv_bench::write_repo_manifest(root, &manifest)?;
        let process = Process::start(
            mp3conv_bench::serve_command(
                mp3conv,
                &manifest,
                &dir.join("data"),
                &keys,
                &format!("http://{}", worker.addr),
                token,
            )?
            .env("SPIN_VARIABLE_AUTH_DATABASE", "mysql")
            .env("SPIN_VARIABLE_MYSQL_URL", &mysql_url)
            .env(
                "SPIN_VARIABLE_MYSQL_HOST",
                mysql.rsplit('@').next().unwrap_or("127.0.0.1:3306"),
            ),
            "Serving http://",
        )?;
        Ok(System::around(process, Some(worker)))
    }

    fn around(process: Process, worker: Option<Process>) -> System {
        System {
            base: format!("http://{}", process.addr),
            process,
            _worker: worker,
            client: mp3conv_bench::http_client(),
        }
    }

    fn clone_handle(&self) -> Handle {
        Handle {
            base: self.base.clone(),
            client: self.client.clone(),
        }
    }

    async fn user(&self, name: &str) -> anyhow::Result<String> {
        self.clone_handle().user(name).await
    }

    /// Upload, wait, download: the whole trip a user waits for.
    async fn round_trip(&self, token: &str, clip: &Path, dir: &Path) -> anyhow::Result<Duration> {
        let handle = self.clone_handle();
        let started = Instant::now();
        let id = handle.upload(token, clip).await?;
        let job = handle.wait_done(token, &id).await?;
        anyhow::ensure!(job["status"] == "done", "{job}");
        let mp3 = handle
            .client
            .get(format!("{}/v1/jobs/{id}/audio", self.base))
            .bearer_auth(token)
            .send()
            .await?
            .bytes()
            .await?;
        let took = started.elapsed();
        std::fs::write(dir.join("downloaded.mp3"), &mp3)?;
        anyhow::ensure!(
            mp3.len() > 100_000,
            "a 1-minute MP3 is larger than {}",
            mp3.len()
        );
        Ok(took)
    }

    /// `count` authenticated requests (`GET /v1/me`), one connection.
    async fn requests(&self, token: &str, count: usize) -> anyhow::Result<()> {
        for _ in 0..count {
            let status = self
                .client
                .get(format!("{}/v1/me", self.base))
                .bearer_auth(token)
                .send()
                .await?
                .status();
            anyhow::ensure!(status == 200, "GET /v1/me: {status}");
        }
        Ok(())
    }
}

impl Handle {
    async fn user(&self, name: &str) -> anyhow::Result<String> {
        let email = format!("{name}-{}@example.com", std::process::id());
        register_and_login(&self.client, &self.base, &email).await
    }

    async fn upload(&self, token: &str, clip: &Path) -> anyhow::Result<String> {
        let size = std::fs::metadata(clip)?.len();
        let body = reqwest::Body::from(tokio::fs::File::open(clip).await?);
        let part = reqwest::multipart::Part::stream_with_length(body, size).file_name("clip.mp4");
        let response = self
            .client
            .post(format!("{}/v1/jobs", self.base))
            .bearer_auth(token)
            .multipart(reqwest::multipart::Form::new().part("file", part))
            .send()
            .await?;
        let status = response.status();
        let job: Value = response.json().await?;
        anyhow::ensure!(status == 202, "upload: {status} {job}");
        Ok(job["id"].as_str().context("an id")?.to_owned())
    }

    async fn wait_done(&self, token: &str, id: &str) -> anyhow::Result<Value> {
        let deadline = Instant::now() + Duration::from_secs(900);
        loop {
            let job: Value = self
                .client
                .get(format!("{}/v1/jobs/{id}", self.base))
                .bearer_auth(token)
                .send()
                .await?
                .json()
                .await?;
            if job["status"] == "done" || job["status"] == "failed" {
                return Ok(job);
            }
            anyhow::ensure!(Instant::now() < deadline, "job {id} never settled: {job}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
