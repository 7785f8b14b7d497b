//! Worker benchmarks, each against a baseline measured in the same run:
//! 1. a 10-minute 720p H.264/AAC video: upload complete -> MP3 ready, divided by a bare
//!    `ffmpeg -i in.mp4 -vn -c:a libmp3lame -b:a 128k out.mp3` on the same file (target <= 1.10);
//! 2. the worker's peak RSS while that ~1 GiB upload is stored and converted (target < 100 MB);
//! 3. jobs per minute with 1, 2 and 4 concurrent conversions (30-second clips).
//!
//! Usage: `worker-bench <mp3conv-worker binary>`; the inputs are generated with ffmpeg once and
//! kept in ~/.cache/mp3conv/bench.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::Context;
use mp3conv_bench::median;
use mp3conv_bench::worker::{Worker, cache_dir, generate};

const RUNS: usize = 3;
const CLIPS: usize = 8;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let binary = PathBuf::from(
        std::env::args()
            .nth(1)
            .context("usage: worker-bench <mp3conv-worker>")?,
    );
    let cache = cache_dir()?;
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
