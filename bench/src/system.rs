//! The system the end-to-end benchmarks drive: `mp3conv up`, or the cluster's shape
//! (`mp3conv serve` + `mp3conv-worker` on MariaDB, RabbitMQ and SecantusDB), and a client.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::Value;

use crate::{Process, path, register_and_login, run};

/// What the end-to-end benchmarks are given: `<mp3conv> <mp3conv-worker> <repository root>`.
pub struct Binaries {
    pub mp3conv: PathBuf,
    pub worker: PathBuf,
    pub root: PathBuf,
}

impl Binaries {
    /// From the command line of the benchmark `name`.
    pub fn from_args(name: &str) -> anyhow::Result<Binaries> {
        let mut args = std::env::args().skip(1);
        let (Some(mp3conv), Some(worker), Some(root)) = (args.next(), args.next(), args.next())
        else {
            anyhow::bail!("usage: {name} <mp3conv> <mp3conv-worker> <repository root>");
        };
        Ok(Binaries {
            mp3conv: PathBuf::from(mp3conv),
            worker: PathBuf::from(worker),
            root: std::fs::canonicalize(root)?,
        })
    }
}

/// A clip of `seconds` (320x240 test pattern, H.264/AAC), made once.
pub fn clip(dir: &Path, seconds: u32) -> anyhow::Result<PathBuf> {
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

/// The internal token of the worker [`System::services`] starts.
pub const SERVICES_TOKEN: &str = "e2e-benchmark-internal-token";

/// A running system and a client for it.
pub struct System {
    pub process: Process,
    /// The worker, as its own process (cluster shape).
    pub worker: Option<Process>,
    pub base: String,
    pub client: reqwest::Client,
}

/// What the concurrent users share.
#[derive(Clone)]
pub struct Handle {
    pub base: String,
    pub client: reqwest::Client,
}

impl System {
    pub fn up(mp3conv: &Path, root: &Path, data: &Path) -> anyhow::Result<System> {
        let process = Process::start(
            Command::new(mp3conv)
                .args(["up", "--listen", "127.0.0.1:0"])
                .args(["--manifest", path(&root.join("spin.toml"))?])
                .args(["--data-dir", path(data)?]),
            "Serving http://",
        )?;
        Ok(System::around(process, None))
    }

    pub fn services(
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
        let token = SERVICES_TOKEN;
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
        crate::write_repo_manifest(root, &manifest)?;
        let process = Process::start(
            crate::serve_command(
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

    pub fn around(process: Process, worker: Option<Process>) -> System {
        System {
            base: format!("http://{}", process.addr),
            process,
            worker,
            client: crate::http_client(),
        }
    }

    pub fn clone_handle(&self) -> Handle {
        Handle {
            base: self.base.clone(),
            client: self.client.clone(),
        }
    }

    pub async fn user(&self, name: &str) -> anyhow::Result<String> {
        self.clone_handle().user(name).await
    }
}

impl Handle {
    pub async fn user(&self, name: &str) -> anyhow::Result<String> {
        let email = format!("{name}-{}@example.com", std::process::id());
        register_and_login(&self.client, &self.base, &email).await
    }

    pub async fn upload(&self, token: &str, clip: &Path) -> anyhow::Result<String> {
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

    pub async fn wait_done(&self, token: &str, id: &str) -> anyhow::Result<Value> {
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
