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

use std::path::Path;
use std::time::{Duration, Instant};

use mp3conv_bench::system::{Binaries, System, clip};
use mp3conv_bench::{bare_ffmpeg, median};

const RUNS: usize = 3;
const USERS: usize = 50;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Binaries {
        mp3conv,
        worker,
        root,
    } = Binaries::from_args("e2e-bench")?;
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

/// The whole trip a user waits for, and a stream of cheap requests.
trait Trips {
    async fn round_trip(&self, token: &str, clip: &Path, dir: &Path) -> anyhow::Result<Duration>;
    async fn requests(&self, token: &str, count: usize) -> anyhow::Result<()>;
}

impl Trips for System {
    /// Upload, wait, download.
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
