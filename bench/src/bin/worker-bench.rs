//! Worker benchmarks, each against a baseline measured in the same run:
//! 1. a 10-minute 720p H.264/AAC video: upload complete -> MP3 ready, divided by a bare
//!    `ffmpeg -i in.mp4 -vn -c:a libmp3lame -b:a 128k out.mp3` on the same file (target <= 1.10);
//! 2. the worker's peak RSS while that ~1 GiB upload is stored and converted (target < 100 MB);
//! 3. jobs per minute with 1, 2 and 4 concurrent conversions (30-second clips).
//!
//! Usage: `worker-bench <mp3conv-worker binary>`; the inputs are generated with ffmpeg once and
//! kept in ~/.cache/mp3conv/bench.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use mp3conv_bench::median;

const TOKEN: &str = "bench-internal-token-0123456789";
const RUNS: usize = 3;
const CLIPS: usize = 8;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let binary = PathBuf::from(
        std::env::args()
            .nth(1)
            .context("usage: worker-bench <mp3conv-worker>")?,
    );
    let cache = PathBuf::from(std::env::var("HOME")?).join(".cache/mp3conv/bench");
    std::fs::create_dir_all(&cache)?;
    // ~14 Mbit/s for 10 minutes: a 1 GiB file that is also the 10-minute 720p benchmark input.
    let long = generate(
        &cache,
        "ten-minutes-720p-cbr.mp4",
        600,
        "1280x720",
        "14400k",
    )?;
    let clip = generate(&cache, "thirty-seconds.mp4", 30, "640x360", "1000k")?;
    let size = std::fs::metadata(&long)?.len();
    println!(
        "inputs: {} ({:.2} GiB, 600 s 720p), {} (30 s)",
        long.display(),
        size as f64 / f64::from(1 << 30),
        clip.display()
    );
    println!();

    let work = tempfile::tempdir()?;
    let mut bare = Vec::new();
    let mut worker = Vec::new();
    let mut peaks = Vec::new();
    for run in 0..RUNS {
        let started = Instant::now();
        let out = work.path().join(format!("bare-{run}.mp3"));
        let status = Command::new("ffmpeg")
            .args(["-loglevel", "error", "-y", "-i"])
            .arg(&long)
            .args(["-vn", "-c:a", "libmp3lame", "-b:a", "128k"])
            .arg(&out)
            .status()?;
        anyhow::ensure!(status.success(), "bare ffmpeg failed");
        bare.push(started.elapsed());

        let process = Worker::start(&binary, &work.path().join(format!("worker-{run}")), 1)?;
        let (converted, peak) = process.convert(&long).await?;
        worker.push(converted);
        peaks.push(peak);
        process.stop();
    }
    let bare = median(&mut bare);
    let converted = median(&mut worker);
    println!("| figure | worker | baseline (same run) | ratio | target |");
    println!("|---|---|---|---|---|");
    println!(
        "| 10-min 720p: upload complete -> MP3 ready (median of {RUNS}) | {:.2} s | {:.2} s (bare ffmpeg) | {:.3} | <= 1.10 |",
        converted.as_secs_f64(),
        bare.as_secs_f64(),
        converted.as_secs_f64() / bare.as_secs_f64()
    );
    let peak = peaks.iter().copied().max().unwrap_or_default();
    println!(
        "| peak worker RSS, {:.2} GiB upload stored and converted (worst of {RUNS}) | {:.1} MB | {:.2} GiB file | {:.3} | < 100 MB |",
        size as f64 / f64::from(1 << 30),
        peak as f64 / 1e6,
        size as f64 / f64::from(1 << 30),
        peak as f64 / size as f64
    );

    let mut single = None;
    for concurrency in [1usize, 2, 4] {
        let process = Worker::start(
            &binary,
            &work.path().join(format!("clips-{concurrency}")),
            concurrency,
        )?;
        let per_minute = process.throughput(&clip, CLIPS).await?;
        process.stop();
        let base = *single.get_or_insert(per_minute);
        println!(
            "| jobs/min, 30 s clips, {concurrency} concurrent ({CLIPS} jobs) | {per_minute:.1} | {base:.1} (1 concurrent) | {:.2} | |",
            per_minute / base
        );
    }
    Ok(())
}

/// Generates a test video (lavfi test pattern + sine tone, H.264/AAC, faststart) once.
fn generate(
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

struct Worker {
    child: Child,
    base: String,
    client: reqwest::Client,
}

impl Worker {
    fn start(binary: &Path, dir: &Path, concurrency: usize) -> anyhow::Result<Worker> {
        std::fs::create_dir_all(dir)?;
        let mut child = Command::new(binary)
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
            client: mp3conv_bench::http_client(),
        })
    }

    async fn upload(&self, file: &Path) -> anyhow::Result<String> {
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(
            tokio::fs::File::open(file).await?,
            256 * 1024,
        ));
        let response = self
            .client
            .post(format!(
                "{}/internal/jobs?filename=bench.mp4&bitrate=128",
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

    async fn wait_done(&self, id: &str) -> anyhow::Result<()> {
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
    async fn convert(&self, file: &Path) -> anyhow::Result<(Duration, u64)> {
        let id = self.upload(file).await?;
        let uploaded = Instant::now();
        self.wait_done(&id).await?;
        let elapsed = uploaded.elapsed();
        Ok((elapsed, mp3conv_bench::memory(self.child.id(), "VmHWM")?))
    }

    /// Jobs per minute for `count` uploads of `file`, from the first upload to the last done.
    async fn throughput(&self, file: &Path, count: usize) -> anyhow::Result<f64> {
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

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
