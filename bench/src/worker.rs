//! The worker run on its own for benchmarks (embedded storage, a port of its choosing), and the
//! inputs it converts, generated with ffmpeg once and kept in `~/.cache/mp3conv/bench`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// The internal token benchmark workers are started with.
pub const TOKEN: &str = "bench-internal-token-0123456789";

/// Where generated inputs are kept between runs.
pub fn cache_dir() -> anyhow::Result<PathBuf> {
    let cache = PathBuf::from(std::env::var("HOME")?).join(".cache/mp3conv/bench");
    std::fs::create_dir_all(&cache)?;
    Ok(cache)
}

/// Generates a test video (lavfi test pattern + sine tone, H.264/AAC, faststart) once.
pub fn generate(
    cache: &Path,
    name: &str,
    seconds: u32,
    size: &str,
    bitrate: &str,
) -> anyhow::Result<PathBuf> {
    let path = cache.join(name);
    if path.exists() {
        return Ok(path);
    }
    let partial = cache.join(format!("{name}.partial.mp4"));
    let status = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("testsrc2=size={size}:rate=30:duration={seconds}"))
        .args(["-f", "lavfi", "-i"])
        .arg(format!(
            "sine=frequency=440:sample_rate=48000:duration={seconds}"
        ))
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-b:v",
            bitrate,
            "-minrate",
            bitrate,
            "-maxrate",
            bitrate,
            "-bufsize",
            "2M",
            // Constant bitrate with filler: the test pattern compresses far below its target
            // otherwise, and the large input must really be 1 GiB.
            "-x264-params",
            "nal-hrd=cbr:force-cfr=1",
        ])
        .args([
            "-c:a",
            "aac",
            "-b:a",
            "128k",
            "-movflags",
            "+faststart",
            "-shortest",
        ])
        .arg(&partial)
        .status()
        .context("running ffmpeg")?;
    if !status.success() {
        bail!("generating {name} failed");
    }
    std::fs::rename(&partial, &path)?;
    Ok(path)
}

/// A running `mp3conv-worker`.
pub struct Worker {
    child: Child,
    base: String,
    client: reqwest::Client,
}

impl Worker {
    /// Starts `binary` with its files in `dir` and `concurrency` conversion slots.
    pub fn start(binary: &Path, dir: &Path, concurrency: usize) -> anyhow::Result<Worker> {
        Self::start_with(binary, dir, concurrency, &[])
    }

    /// [`Worker::start`], with more `MP3CONV_WORKER__...` settings in `settings`.
    pub fn start_with(
        binary: &Path,
        dir: &Path,
        concurrency: usize,
        settings: &[(&str, String)],
    ) -> anyhow::Result<Worker> {
        std::fs::create_dir_all(dir)?;
        let mut command = Command::new(binary);
        for (key, value) in settings {
            command.env(format!("MP3CONV_WORKER__{key}"), value);
        }
        let mut child = command
            .env("MP3CONV_WORKER__LISTEN", "127.0.0.1:0")
            .env("MP3CONV_WORKER__INTERNAL_TOKEN", TOKEN)
            .env("MP3CONV_WORKER__CONCURRENCY", concurrency.to_string())
            .env("MP3CONV_WORKER__STORAGE__KIND", "local")
            .env("MP3CONV_WORKER__STORAGE__DIR", dir.join("blobs"))
            .env("MP3CONV_WORKER__JOBS__KIND", "sqlite")
            .env("MP3CONV_WORKER__JOBS__PATH", dir.join("jobs.sqlite"))
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("spawning mp3conv-worker")?;
        let stdout = child.stdout.take().context("stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let line = lines.next().context("the worker exited")??;
        std::thread::spawn(move || for _ in lines {});
        let base = line
            .strip_prefix("mp3conv-worker listening on ")
            .with_context(|| format!("unexpected first line: {line}"))?
            .to_owned();
        Ok(Worker {
            child,
            base,
            client: crate::http_client(),
        })
    }

    /// Uploads `file` at 128 kbit/s: the job's id.
    pub async fn upload(&self, file: &Path) -> anyhow::Result<String> {
        self.upload_with(file, "bitrate=128").await
    }

    /// Uploads `file` with `query` (options as query parameters): the job's id.
    pub async fn upload_with(&self, file: &Path, query: &str) -> anyhow::Result<String> {
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(
            tokio::fs::File::open(file).await?,
            256 * 1024,
        ));
        let response = self
            .client
            .post(format!(
                "{}/internal/jobs?filename=bench.mp4&{query}",
                self.base
            ))
            .bearer_auth(TOKEN)
            .header("x-mp3conv-owner", "bench")
            .header("content-type", "video/mp4")
            .header("content-length", std::fs::metadata(file)?.len())
            .body(body)
            .send()
            .await?;
        anyhow::ensure!(response.status() == 202, "upload: {}", response.status());
        let job: serde_json::Value = response.json().await?;
        Ok(job["id"].as_str().context("a job id")?.to_owned())
    }

    /// Submits `url` as a link at 128 kbit/s: the job's id.
    pub async fn link(&self, url: &str) -> anyhow::Result<String> {
        let response = self
            .client
            .post(format!("{}/internal/jobs?bitrate=128", self.base))
            .bearer_auth(TOKEN)
            .header("x-mp3conv-owner", "bench")
            .json(&serde_json::json!({ "url": url }))
            .send()
            .await?;
        anyhow::ensure!(response.status() == 202, "link: {}", response.status());
        let job: serde_json::Value = response.json().await?;
        Ok(job["id"].as_str().context("a job id")?.to_owned())
    }

    /// Waits until the job is done (an error if it failed).
    pub async fn wait_done(&self, id: &str) -> anyhow::Result<()> {
        loop {
            let job: serde_json::Value = self
                .client
                .get(format!("{}/internal/jobs/{id}", self.base))
                .bearer_auth(TOKEN)
                .header("x-mp3conv-owner", "bench")
                .send()
                .await?
                .json()
                .await?;
            match job["status"].as_str() {
                Some("done") => return Ok(()),
                Some("failed") => bail!("job failed: {job}"),
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    /// Uploads `file`, then times upload-complete -> done, sampling peak RSS throughout.
    pub async fn convert(&self, file: &Path) -> anyhow::Result<(Duration, u64)> {
        let (elapsed, _) = self.convert_with(file, "bitrate=128").await?;
        Ok((elapsed, crate::memory(self.child.id(), "VmHWM")?))
    }

    /// Uploads `file` with `query`, then times upload-complete -> done: that time and the
    /// job's id.
    pub async fn convert_with(
        &self,
        file: &Path,
        query: &str,
    ) -> anyhow::Result<(Duration, String)> {
        let id = self.upload_with(file, query).await?;
        let uploaded = Instant::now();
        self.wait_done(&id).await?;
        Ok((uploaded.elapsed(), id))
    }

    /// Jobs per minute for `count` uploads of `file`, from the first upload to the last done.
    pub async fn throughput(&self, file: &Path, count: usize) -> anyhow::Result<f64> {
        let started = Instant::now();
        let mut ids = Vec::new();
        for _ in 0..count {
            ids.push(self.upload(file).await?);
        }
        for id in &ids {
            self.wait_done(id).await?;
        }
        Ok(count as f64 / started.elapsed().as_secs_f64() * 60.0)
    }

    /// Kills it.
    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
