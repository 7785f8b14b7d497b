//! Gateway benchmark: an authenticated `GET /v1/jobs/{id}` through the host (token
//! verification, account check, a call to the worker) at 1 and 16 connections, against the
//! same job read straight from the worker's internal API; and upload throughput through the
//! gateway (multipart, streamed) against the same bytes posted straight to the worker.
//!
//! Then, in `mp3conv up`, the time from a job's announcement to its notification being
//! recorded, over 100 jobs.
//!
//! The first part runs in the cluster's shape: `mp3conv serve` with the repository's `spin.toml`
//! and `mp3conv-worker` as its own process (embedded storage).
//!
//! Usage: `gateway-bench <mp3conv> <mp3conv-worker> <repository root>` (`make bench`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use mp3conv_bench::{
    Load, Process, Spec, load_spec, median, ms, path, register_and_login, run, send,
};
use serde_json::Value;

const TOKEN: &str = "gateway-benchmark-internal-token";
const UPLOAD_BYTES: u64 = 256 << 20;
const UPLOAD_RUNS: usize = 3;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(mp3conv), Some(worker_binary), Some(root)) = (args.next(), args.next(), args.next())
    else {
        bail!("usage: gateway-bench <mp3conv> <mp3conv-worker> <repository root>");
    };
    let (mp3conv, root) = (PathBuf::from(mp3conv), std::fs::canonicalize(root)?);
    let work = tempfile::tempdir()?;
    let dir = work.path();

    let worker = Process::start(
        Command::new(&worker_binary)
            .env("MP3CONV_WORKER__LISTEN", "127.0.0.1:0")
            .env("MP3CONV_WORKER__INTERNAL_TOKEN", TOKEN)
            .env("MP3CONV_WORKER__STORAGE__KIND", "local")
            .env("MP3CONV_WORKER__STORAGE__DIR", dir.join("blobs"))
            .env("MP3CONV_WORKER__JOBS__KIND", "sqlite")
            .env("MP3CONV_WORKER__JOBS__PATH", dir.join("jobs.sqlite")),
        "mp3conv-worker listening on http://",
    )?;

    let keys = dir.join("keys");
    run(&mp3conv, &["keys", "generate", "--dir", path(&keys)?])?;
    let data = dir.join("data");
    run(
        &mp3conv,
        &["migrate", "--sqlite", path(&data.join("sqlite_db.db"))?],
    )?;
    let manifest = dir.join("spin.toml");
    mp3conv_bench::write_repo_manifest(&root, &manifest)?;
    let host = Process::start(
        &mut mp3conv_bench::serve_command(
            &mp3conv,
            &manifest,
            &data,
            &keys,
            &format!("http://{}", worker.addr),
            TOKEN,
        )?,
        "Serving http://",
    )?;

    let client = mp3conv_bench::http_client();
    let base = format!("http://{}", host.addr);
    let token = register_and_login(&client, &base, "gateway-bench@example.com").await?;
    let me: Value = client
        .get(format!("{base}/v1/me"))
        .bearer_auth(&token)
        .send()
        .await?
        .json()
        .await?;
    let owner = me["id"].as_str().context("an id")?.to_owned();

    // One job to read: a small upload.
    let small = dir.join("small.bin");
    std::fs::write(&small, vec![7u8; 64 * 1024])?;
    let (job, _) = upload_via_gateway(&client, &base, &token, &small).await?;

    println!("| figure | through the gateway | straight to the worker | ratio | target |");
    println!("|---|---|---|---|---|");
    let via_gateway = Spec {
        method: http::Method::GET,
        path: format!("/v1/jobs/{job}"),
        headers: vec![("authorization", format!("Bearer {token}"))],
        body: Bytes::new(),
    };
    let direct = Spec {
        method: http::Method::GET,
        path: format!("/internal/jobs/{job}"),
        headers: vec![
            ("authorization", format!("Bearer {TOKEN}")),
            ("x-mp3conv-owner", owner.clone()),
        ],
        body: Bytes::new(),
    };
    for (connections, requests) in [(1usize, 2_000usize), (16, 8_000)] {
        load_spec(host.addr, via_gateway.clone(), connections, 200).await?;
        load_spec(worker.addr, direct.clone(), connections, 200).await?;
        let gateway = load_spec(host.addr, via_gateway.clone(), connections, requests).await?;
        let worker = load_spec(worker.addr, direct.clone(), connections, requests).await?;
        row(
            &format!("GET /v1/jobs/{{id}}, {connections} conn"),
            &gateway,
            &worker,
        );
    }

    // Upload throughput: the same file each way, alternating, median of the runs.
    let big = dir.join("big.bin");
    write_pseudo_random(&big, UPLOAD_BYTES)?;
    let mut gateway = Vec::new();
    let mut straight = Vec::new();
    for _ in 0..UPLOAD_RUNS {
        let (id, took) = upload_via_gateway(&client, &base, &token, &big).await?;
        gateway.push(took);
        delete(&client, &format!("{base}/v1/jobs/{id}"), &token, None).await?;
        let (id, took) = upload_direct(&client, worker.addr, &owner, &big).await?;
        straight.push(took);
        let url = format!("http://{}/internal/jobs/{id}", worker.addr);
        delete(&client, &url, TOKEN, Some(&owner)).await?;
    }
    let mb = UPLOAD_BYTES as f64 / 1e6;
    let (gateway, straight) = (median(&mut gateway), median(&mut straight));
    let (gateway_rate, straight_rate) = (mb / gateway.as_secs_f64(), mb / straight.as_secs_f64());
    println!(
        "| upload {} MiB, MB/s (median of {UPLOAD_RUNS}) | {gateway_rate:.0} | {straight_rate:.0} | {:.2} | >= 0.8 |",
        UPLOAD_BYTES >> 20,
        gateway_rate / straight_rate
    );
    // Keep the check honest: the second probe must still answer (nothing wedged).
    anyhow::ensure!(send(host.addr, via_gateway).await?.0 == 200);
    drop((host, worker));
    notification_latency(&mp3conv, &root, dir).await
}

/// `mp3conv up` (in-process queue and bridge): for each of [`NOTIFIED_JOBS`] jobs, the time
/// from the job turning done (its `updated_at`, set just before the `mp3` message is
/// published) to its notification being recorded (`created_at`).
async fn notification_latency(mp3conv: &Path, root: &Path, dir: &Path) -> anyhow::Result<()> {
    const NOTIFIED_JOBS: usize = 100;
    let clip = dir.join("clip.mp4");
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg("testsrc=size=160x120:rate=10:duration=1")
        .args(["-f", "lavfi", "-i", "sine=frequency=440:duration=1"])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac"])
        .arg(&clip)
        .status()?;
    anyhow::ensure!(status.success(), "ffmpeg could not make the clip");
    let up = Process::start(
        Command::new(mp3conv)
            .args(["up", "--listen", "127.0.0.1:0"])
            .args(["--manifest", path(&root.join("spin.toml"))?])
            .args(["--data-dir", path(&dir.join("up-data"))?]),
        "Serving http://",
    )?;
    let base = format!("http://{}", up.addr);
    let client = mp3conv_bench::http_client();
    let token = register_and_login(&client, &base, "notify-bench@example.com").await?;
    let mut jobs = Vec::new();
    for _ in 0..NOTIFIED_JOBS {
        jobs.push(upload_via_gateway(&client, &base, &token, &clip).await?.0);
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    let notifications = loop {
        let page: Value = client
            .get(format!("{base}/v1/notifications?limit=100"))
            .bearer_auth(&token)
            .send()
            .await?
            .json()
            .await?;
        let list = page["notifications"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if list.len() >= NOTIFIED_JOBS {
            break list;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {} notifications",
            list.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut latencies = Vec::new();
    for notification in &notifications {
        let id = notification["job_id"].as_str().context("a job id")?;
        let job: Value = client
            .get(format!("{base}/v1/jobs/{id}"))
            .bearer_auth(&token)
            .send()
            .await?
            .json()
            .await?;
        anyhow::ensure!(job["status"] == "done", "job {id}: {job}");
        let done = timestamp(&job["updated_at"])?;
        let recorded = timestamp(&notification["created_at"])?;
        latencies.push(Duration::try_from_secs_f64((recorded - done).max(0.0))?);
    }
    latencies.sort();
    println!(
        "| `mp3` publish to notification recorded, p50 / p90 over {NOTIFIED_JOBS} jobs (`up`) | {:.1} / {:.1} ms | | | |",
        ms(latencies[latencies.len() / 2]),
        ms(latencies[latencies.len() * 9 / 10])
    );
    Ok(())
}

/// An RFC 3339 timestamp as Unix seconds.
fn timestamp(value: &Value) -> anyhow::Result<f64> {
    let text = value.as_str().context("a timestamp")?;
    let time = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)?;
    Ok(time.unix_timestamp_nanos() as f64 / 1e9)
}

fn row(name: &str, gateway: &Load, worker: &Load) {
    println!(
        "| {name}: p50 / p99 | {:.2} / {:.2} ms | {:.2} / {:.2} ms | {:.1} (p50) | |",
        ms(gateway.p50),
        ms(gateway.p99),
        ms(worker.p50),
        ms(worker.p99),
        ms(gateway.p50) / ms(worker.p50)
    );
    println!(
        "| {name}: req/s | {:.0} | {:.0} | {:.2} | |",
        gateway.rps,
        worker.rps,
        gateway.rps / worker.rps
    );
}

async fn upload_via_gateway(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    file: &Path,
) -> anyhow::Result<(String, Duration)> {
    let size = std::fs::metadata(file)?.len();
    let body = reqwest::Body::from(tokio::fs::File::open(file).await?);
    let part = reqwest::multipart::Part::stream_with_length(body, size).file_name("upload.bin");
    let started = Instant::now();
    let response = client
        .post(format!("{base}/v1/jobs"))
        .bearer_auth(token)
        .multipart(reqwest::multipart::Form::new().part("file", part))
        .send()
        .await?;
    let took = started.elapsed();
    let status = response.status();
    let job: Value = response.json().await?;
    anyhow::ensure!(status == 202, "upload through the gateway: {status} {job}");
    Ok((job["id"].as_str().context("an id")?.to_owned(), took))
}

async fn upload_direct(
    client: &reqwest::Client,
    worker: SocketAddr,
    owner: &str,
    file: &Path,
) -> anyhow::Result<(String, Duration)> {
    let size = std::fs::metadata(file)?.len();
    let body = reqwest::Body::from(tokio::fs::File::open(file).await?);
    let started = Instant::now();
    let response = client
        .post(format!("http://{worker}/internal/jobs?filename=upload.bin"))
        .bearer_auth(TOKEN)
        .header("x-mp3conv-owner", owner)
        .header("content-length", size)
        .body(body)
        .send()
        .await?;
    let took = started.elapsed();
    let status = response.status();
    let job: Value = response.json().await?;
    anyhow::ensure!(status == 202, "upload to the worker: {status} {job}");
    Ok((job["id"].as_str().context("an id")?.to_owned(), took))
}

async fn delete(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    owner: Option<&str>,
) -> anyhow::Result<()> {
    let mut request = client.delete(url).bearer_auth(token);
    if let Some(owner) = owner {
        request = request.header("x-mp3conv-owner", owner);
    }
    let status = request.send().await?.status();
    anyhow::ensure!(status == 204, "delete {url}: {status}");
    Ok(())
}

/// Bytes that do not compress (a xorshift stream), so no layer can take a shortcut.
fn write_pseudo_random(path: &Path, size: u64) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut block = vec![0u8; 1 << 20];
    for _ in 0..size / block.len() as u64 {
        for chunk in block.chunks_exact_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            chunk.copy_from_slice(&state.to_le_bytes());
        }
        out.write_all(&block)?;
    }
    out.flush()?;
    Ok(())
}
