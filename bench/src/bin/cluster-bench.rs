//! The cluster's shape (`mp3conv serve` + `mp3conv-worker` on MariaDB, RabbitMQ and the
//! MongoDB-compatible test server, GridFS storage) on a large video, each figure against a
//! baseline measured in the same run:
//!
//! - a 10-minute 720p H.264/AAC video (about 200 MB): upload complete -> MP3 ready, against
//!   bare ffmpeg converting the same file (target <= 1.25x), and where that time goes, from the
//!   worker's `mp3conv_worker_stage_seconds` histograms;
//! - the same upload through the gateway into GridFS, MB/s, against a plain sequential GridFS
//!   write of the same file to the same server with the driver's own upload stream
//!   (target >= 0.8x);
//! - authenticated downloads of a 200 KB MP3 (`GET /v1/jobs/{id}/audio`) in both shapes, on one
//!   connection (p50, p99: target p99 <= 3x p50) and 16 (req/s), against the worker's own
//!   route in the cluster's shape (target >= 0.5x).
//!
//! `CLUSTER_BENCH_PARTS` (`conversion,downloads`, the default) picks the parts;
//! `CLUSTER_BENCH_RUNS` (3 by default, odd) how many conversions are paired with bare ffmpeg.
//! On a noisy machine the median of each pair's own ratio is the steadier figure: bare ffmpeg
//! alone drifted from 3.0 to 4.5 s within twelve minutes on 2026-12-02.
//!
//! Usage: `cluster-bench <mp3conv> <mp3conv-worker> <repository root>` (`make bench`, which
//! also starts the services and exports their `MP3CONV_TEST_*` addresses).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::AsyncWriteExt as _;
use mp3conv_bench::system::{Binaries, Handle, System};
use mp3conv_bench::worker::{cache_dir, generate};
use mp3conv_bench::{Spec, bare_ffmpeg, load_spec, median, ms};
use mp3conv_contract::event::{Event, Parser};
use tokio::io::AsyncReadExt as _;

/// Conversions (each paired with bare ffmpeg) unless `CLUSTER_BENCH_RUNS` says otherwise.
const RUNS: usize = 3;
/// The stages the worker times, in the order they run.
const STAGES: [&str; 3] = ["read_video", "convert", "store_audio"];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Binaries {
        mp3conv,
        worker,
        root,
    } = Binaries::from_args("cluster-bench")?;
    let parts =
        std::env::var("CLUSTER_BENCH_PARTS").unwrap_or_else(|_| "conversion,downloads".into());
    let work = tempfile::tempdir()?;
    if parts.contains("conversion") {
        conversion(&mp3conv, &worker, &root, work.path()).await?;
    }
    if parts.contains("downloads") {
        downloads(&mp3conv, &worker, &root, work.path()).await?;
    }
    Ok(())
}

/// How many conversions to pair with bare ffmpeg: `CLUSTER_BENCH_RUNS`, odd so that each
/// median is a measured run.
fn runs() -> anyhow::Result<usize> {
    let Ok(runs) = std::env::var("CLUSTER_BENCH_RUNS") else {
        return Ok(RUNS);
    };
    let runs: usize = runs.parse().context("CLUSTER_BENCH_RUNS: a number")?;
    anyhow::ensure!(runs % 2 == 1, "CLUSTER_BENCH_RUNS must be odd, not {runs}");
    Ok(runs)
}

/// Upload complete -> MP3 ready, the upload's speed and the stages, on a 200 MB video.
async fn conversion(mp3conv: &Path, worker: &Path, root: &Path, dir: &Path) -> anyhow::Result<()> {
    let video = generate(
        &cache_dir()?,
        "ten-minutes-720p.mp4",
        600,
        "1280x720",
        "2600k",
    )?;
    let size = std::fs::metadata(&video)?.len();
    let runs = runs()?;
    let system = System::services(mp3conv, worker, root, &dir.join("services"))?;
    let worker_base = format!(
        "http://{}",
        system.worker.as_ref().context("a worker process")?.addr
    );
    let handle = system.clone_handle();
    let user = handle.user("cluster").await?;
    let mongo = std::env::var("MP3CONV_TEST_MONGO_URL").context("MP3CONV_TEST_MONGO_URL")?;
    let mongo = mongodb::Client::with_uri_str(&mongo).await?;
    let plain_db = mongo.database(&format!("mp3conv_cluster_bench_{}", std::process::id()));

    // A job's end is heard as its client would hear it, on its live event stream: polling
    // through the gateway often enough to time it would load the test server the conversion
    // reads from.
    let mut finals = final_events(&handle, &user).await?;
    let (mut bare, mut ready, mut uploads, mut plain) = (vec![], vec![], vec![], vec![]);
    let before = stage_sums(&handle, &worker_base).await?;
    for run in 0..runs {
        bare.push(bare_ffmpeg(&video, dir)?);
        plain.push(plain_gridfs_write(&plain_db, &video, run).await?);
        let started = Instant::now();
        let id = handle.upload(&user, &video).await?;
        uploads.push(started.elapsed());
        let uploaded = Instant::now();
        let (job, event) = tokio::time::timeout(Duration::from_secs(900), finals.recv())
            .await
            .context("no final event within 15 minutes")?
            .context("the event stream ended")?;
        ready.push(uploaded.elapsed());
        anyhow::ensure!(job == id, "an event of another job: {job}");
        anyhow::ensure!(matches!(event, Event::JobDone { .. }), "{event:?}");
        delete(&handle, &user, &id).await?;
    }
    let after = stage_sums(&handle, &worker_base).await?;
    plain_db.drop().await?;

    let mut ratios: Vec<f64> = ready
        .iter()
        .zip(&bare)
        .map(|(ready, bare)| ready.as_secs_f64() / bare.as_secs_f64())
        .collect();
    ratios.sort_by(f64::total_cmp);
    let pair_ratio = ratios[ratios.len() / 2];
    let (bare, ready) = (median(&mut bare), median(&mut ready));
    let (upload, plain) = (median(&mut uploads), median(&mut plain));
    let mbs = |d: Duration| size as f64 / 1e6 / d.as_secs_f64();
    println!(
        "input: {} ({:.0} MB, 600 s, 1280x720 H.264 + AAC); medians of {runs} interleaved runs",
        video.display(),
        size as f64 / 1e6
    );
    println!();
    println!("| figure | cluster shape | baseline (same run) | ratio | target |");
    println!("|---|---|---|---|---|");
    println!(
        "| upload complete -> MP3 ready | {:.2} s | {:.2} s (bare ffmpeg) | {:.2} | <= 1.25 |",
        ready.as_secs_f64(),
        bare.as_secs_f64(),
        ready.as_secs_f64() / bare.as_secs_f64()
    );
    println!(
        "| the same, median of each run's own ratio | | | {pair_ratio:.2} (runs, sorted: {}) | <= 1.25 |",
        ratios
            .iter()
            .map(|r| format!("{r:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "| upload through the gateway into GridFS, MB/s | {:.0} | {:.0} (plain GridFS write) | {:.2} | >= 0.8 |",
        mbs(upload),
        mbs(plain),
        mbs(upload) / mbs(plain)
    );
    println!();
    println!("Where the time goes (means per conversion, from the worker's stage histograms):");
    println!();
    println!("| stage | seconds |");
    println!("|---|---|");
    println!(
        "| upload (client's request, through the gateway) | {:.2} |",
        upload.as_secs_f64()
    );
    for stage in STAGES {
        let (sum, count) = after.get(stage).copied().unwrap_or_default();
        let (sum0, count0) = before.get(stage).copied().unwrap_or_default();
        let count = count - count0;
        let mean = if count > 0.0 {
            (sum - sum0) / count
        } else {
            0.0
        };
        println!("| {stage} | {mean:.2} |");
    }
    println!();
    Ok(())
}

/// Requests per round of the download figures.
const ONE_CONNECTION: usize = 400;
const SIXTEEN: usize = 16;
const SIXTEEN_REQUESTS: usize = 3200;

/// Authenticated MP3 downloads through the gateway in both shapes, and from the worker
/// directly in the cluster's shape.
async fn downloads(mp3conv: &Path, worker: &Path, root: &Path, dir: &Path) -> anyhow::Result<()> {
    // 8 s at 192 kbit/s: a 200 KB MP3.
    let clip = mp3conv_bench::system::clip(dir, 8)?;
    println!(
        "| figure | p50 / p99, 1 conn | p99 / p50 | req/s, 16 conn | host CPU per request, 16 conn | baseline req/s (same run) | ratio |"
    );
    println!("|---|---|---|---|---|---|---|");
    for shape in ["up", "cluster"] {
        let system = match shape {
            "up" => System::up(mp3conv, root, &dir.join("up-downloads"))?,
            _ => System::services(mp3conv, worker, root, &dir.join("cluster-downloads"))?,
        };
        let handle = system.clone_handle();
        let token = handle.user("downloads").await?;
        let id = handle.upload(&token, &clip).await?;
        let job = handle.wait_done(&token, &id).await?;
        anyhow::ensure!(job["status"] == "done", "{job}");
        let size = job["audio"]["size"].as_u64().unwrap_or_default();
        let mut gateway = Spec::get(&format!("/v1/jobs/{id}/audio"));
        gateway
            .headers
            .push(("authorization", format!("Bearer {token}")));
        let one = load_spec(system.process.addr, gateway.clone(), 1, ONE_CONNECTION).await?;
        let cpu_before = mp3conv_bench::cpu_time(system.process.pid())?;
        let many = load_spec(system.process.addr, gateway, SIXTEEN, SIXTEEN_REQUESTS).await?;
        // The host's (in `up` also the worker's) CPU per download: steadier than req/s on a
        // machine shared with other work.
        let cpu = mp3conv_bench::cpu_time(system.process.pid())? - cpu_before;
        let cpu_per_request = cpu.as_secs_f64() * 1e6 / SIXTEEN_REQUESTS as f64;
        let baseline = match &system.worker {
            Some(worker) => {
                let me: serde_json::Value = handle
                    .client
                    .get(format!("{}/v1/me", handle.base))
                    .bearer_auth(&token)
                    .send()
                    .await?
                    .json()
                    .await?;
                let owner = me["id"].as_str().context("the user's id")?.to_owned();
                let mut direct = Spec::get(&format!("/internal/jobs/{id}/audio"));
                direct.headers.push((
                    "authorization",
                    format!("Bearer {}", mp3conv_bench::system::SERVICES_TOKEN),
                ));
                direct.headers.push(("x-mp3conv-owner", owner));
                Some(load_spec(worker.addr, direct, SIXTEEN, SIXTEEN_REQUESTS).await?)
            }
            None => None,
        };
        println!(
            "| `{shape}`: {} KB MP3 through the gateway | {:.1} / {:.1} ms | {:.1} | {:.0} | {:.0} us | {} | {} |",
            size / 1000,
            ms(one.p50),
            ms(one.p99),
            one.p99.as_secs_f64() / one.p50.as_secs_f64(),
            many.rps,
            cpu_per_request,
            baseline
                .as_ref()
                .map_or("".into(), |b| format!("{:.0} (worker directly)", b.rps)),
            baseline
                .as_ref()
                .map_or("".into(), |b| format!("{:.2}", many.rps / b.rps)),
        );
    }
    println!();
    println!(
        "Targets: p99 <= 3x p50 on one connection; through the gateway >= 0.5x the worker directly."
    );
    Ok(())
}

/// The file written into a GridFS bucket of `db` with the driver's upload stream, read and
/// written 1 MiB at a time: what any program storing it sequentially would do.
async fn plain_gridfs_write(
    db: &mongodb::Database,
    file: &Path,
    run: usize,
) -> anyhow::Result<Duration> {
    let bucket = db.gridfs_bucket(None);
    let started = Instant::now();
    let mut upload = bucket
        .open_upload_stream(format!("plain-{run}.mp4"))
        .await?;
    let mut input = tokio::fs::File::open(file).await?;
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let read = input.read(&mut buffer).await?;
        if read == 0 {
            break;
        }
        upload.write_all(&buffer[..read]).await?;
    }
    upload.close().await?;
    Ok(started.elapsed())
}

/// The final events (done or failed) of `token`'s jobs, with their job's id, as its live
/// event stream delivers them.
async fn final_events(
    handle: &Handle,
    token: &str,
) -> anyhow::Result<tokio::sync::mpsc::UnboundedReceiver<(String, Event)>> {
    let mut stream = handle
        .client
        .get(format!("{}/v1/events", handle.base))
        .bearer_auth(token)
        .header("accept", "text/event-stream")
        .send()
        .await?;
    anyhow::ensure!(stream.status() == 200, "stream: {}", stream.status());
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut parser = Parser::new();
        while let Ok(Some(chunk)) = stream.chunk().await {
            for frame in parser.feed(&chunk) {
                let Some(event) = frame.event() else { continue };
                if event.ends_job() {
                    let job = match &event {
                        Event::JobDone { job, .. } | Event::JobFailed { job, .. } => {
                            job.id.to_string()
                        }
                        _ => continue,
                    };
                    if sender.send((job, event)).is_err() {
                        return;
                    }
                }
            }
        }
    });
    Ok(receiver)
}

async fn delete(handle: &Handle, token: &str, id: &str) -> anyhow::Result<()> {
    let status = handle
        .client
        .delete(format!("{}/v1/jobs/{id}", handle.base))
        .bearer_auth(token)
        .send()
        .await?
        .status();
    anyhow::ensure!(status == 204, "delete: {status}");
    Ok(())
}

/// `stage -> (sum of seconds, count)` from the worker's `/metrics`.
async fn stage_sums(
    handle: &Handle,
    worker: &str,
) -> anyhow::Result<BTreeMap<&'static str, (f64, f64)>> {
    let text = handle
        .client
        .get(format!("{worker}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    let mut sums = BTreeMap::new();
    for stage in STAGES {
        let value = |suffix: &str| -> f64 {
            let prefix = format!("mp3conv_worker_stage_seconds_{suffix}{{stage=\"{stage}\"}} ");
            text.lines()
                .find_map(|l| l.strip_prefix(&prefix))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0.0)
        };
        sums.insert(stage, (value("sum"), value("count")));
    }
    Ok(sums)
}
