//! Live events benchmark (`GET /v1/events`, Server-Sent Events), in both shapes of the system:
//!
//! - latency from the moment an event is made (a progress value written by the converter, the
//!   final state) to the moment an SSE client through the gateway reads it: the event's id is a
//!   UUID v7, whose first 48 bits are the time it was made (1 ms resolution, same clock);
//! - what idle streams cost: 200 streams (20 users, 10 each, every user from its own loopback
//!   address as separate browsers would be) held open for 60 s, against the same 60 s with no
//!   stream: CPU of each process as a share of one core and resident memory per stream, while an
//!   ordinary request (`GET /v1/me`) every 200 ms must still succeed.
//!
//! Usage: `events-bench <mp3conv> <mp3conv-worker> <repository root>` (`make bench`).

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use mp3conv_bench::system::{Binaries, Handle, System, clip};
use mp3conv_bench::{memory, register_and_login};
use mp3conv_contract::event::{Event, Parser};

const JOBS: usize = 10;
const USERS: usize = 20;
const STREAMS_PER_USER: usize = 10;
const WINDOW: Duration = Duration::from_secs(60);
const PROBE_EVERY: Duration = Duration::from_millis(200);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Binaries {
        mp3conv,
        worker,
        root,
    } = Binaries::from_args("events-bench")?;
    let work = tempfile::tempdir()?;
    let dir = work.path();
    let minute = clip(dir, 60)?;

    println!("| figure | measured | baseline (same run) | ratio | target |");
    println!("|---|---|---|---|---|");
    let up = System::up(&mp3conv, &root, &dir.join("up"))?;
    report("`up`", &up, &minute, 100.0).await?;
    drop(up);
    let services = System::services(&mp3conv, &worker, &root, &dir.join("services"))?;
    report("cluster shape", &services, &minute, 500.0).await?;
    Ok(())
}

/// Measures one shape and prints its rows.
async fn report(shape: &str, system: &System, clip: &Path, target_ms: f64) -> anyhow::Result<()> {
    let mut latencies = latencies(system, clip).await?;
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    println!(
        "| event made to read by an SSE client, {shape}: p50 / p99 over {} events ({JOBS} 1-minute clips) | {:.1} / {:.1} ms | | | p50 < {target_ms:.0} ms |",
        latencies.len(),
        at(0.5),
        at(0.99),
    );
    let idle = idle_streams(system).await?;
    let streams = USERS * STREAMS_PER_USER;
    let mut processes = vec![("host", system.process.pid())];
    if let Some(worker) = &system.worker {
        processes.push(("worker", worker.pid()));
    }
    for (i, (name, _)) in processes.iter().enumerate() {
        let (without, with) = (&idle.without[i], &idle.with[i]);
        let name = if system.worker.is_none() {
            "host + worker"
        } else {
            name
        };
        println!(
            "| {shape} {name}: CPU over {}s, {streams} idle streams vs none | {:.2}% of a core | {:.2}% | +{:.2} points | < 5% of a core |",
            WINDOW.as_secs(),
            with.cpu_percent,
            without.cpu_percent,
            with.cpu_percent - without.cpu_percent,
        );
        println!(
            "| {shape} {name}: resident memory, {streams} idle streams vs none | {:.1} MB | {:.1} MB | {:.1} KB per stream | < 2 MB per stream |",
            with.rss as f64 / 1e6,
            without.rss as f64 / 1e6,
            (with.rss as f64 - without.rss as f64) / streams as f64 / 1e3,
        );
    }
    println!(
        "| {shape}: ordinary requests while the streams are open (`GET /v1/me` every {} ms) | {}/{} ok | {}/{} ok (no streams) | | all ok |",
        PROBE_EVERY.as_millis(),
        idle.probes_with.0,
        idle.probes_with.1,
        idle.probes_without.0,
        idle.probes_without.1,
    );
    println!(
        "| {shape}: heartbeats each idle stream received in {} s (every 15 s) | min {} | | | >= 3, none closed |",
        WINDOW.as_secs(),
        idle.min_heartbeats,
    );
    Ok(())
}

/// Milliseconds since the epoch now, with the clock's sub-millisecond part.
fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

/// When a UUID v7 was made, in milliseconds since the epoch.
fn v7_ms(id: &str) -> anyhow::Result<f64> {
    let hex: String = id.chars().filter(|c| *c != '-').take(12).collect();
    Ok(u64::from_str_radix(&hex, 16).context("a UUID v7")? as f64)
}

/// Opens `GET /v1/events` for `token` with `client`.
async fn open(
    client: &reqwest::Client,
    base: &str,
    token: &str,
) -> anyhow::Result<reqwest::Response> {
    let response = client
        .get(format!("{base}/v1/events"))
        .bearer_auth(token)
        .header("accept", "text/event-stream")
        .send()
        .await?;
    anyhow::ensure!(response.status() == 200, "stream: {}", response.status());
    Ok(response)
}

/// The latency of every progress and final event of `JOBS` uploads, in milliseconds.
async fn latencies(system: &System, clip: &Path) -> anyhow::Result<Vec<f64>> {
    let handle = system.clone_handle();
    let token = handle.user("latency").await?;
    let mut stream = open(&handle.client, &handle.base, &token).await?;
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    let reader = tokio::spawn(async move {
        let mut parser = Parser::new();
        let mut latencies = Vec::new();
        let mut finished = 0;
        while finished < JOBS {
            let Some(chunk) = stream.chunk().await? else {
                bail!("the stream ended early");
            };
            let read_at = now_ms();
            for frame in parser.feed(&chunk) {
                let (Some(id), Some(event)) = (frame.id.as_deref(), frame.event()) else {
                    continue;
                };
                if matches!(
                    event,
                    Event::JobProgress { .. } | Event::JobDone { .. } | Event::JobFailed { .. }
                ) {
                    latencies.push(read_at - v7_ms(id)?);
                }
                if event.ends_job() {
                    finished += 1;
                    let _ = done_tx.send(event);
                }
            }
        }
        anyhow::Ok(latencies)
    });
    for _ in 0..JOBS {
        handle.upload(&token, clip).await?;
        let event = tokio::time::timeout(Duration::from_secs(600), done_rx.recv())
            .await
            .context("no final event within 10 minutes")?
            .context("the reader stopped")?;
        anyhow::ensure!(matches!(event, Event::JobDone { .. }), "{event:?}");
    }
    reader.await?
}

/// One process's figures over a window.
struct Usage {
    cpu_percent: f64,
    rss: u64,
}

struct Idle {
    /// Per process (host, then worker when apart).
    without: Vec<Usage>,
    with: Vec<Usage>,
    probes_without: (usize, usize),
    probes_with: (usize, usize),
    min_heartbeats: usize,
}

/// User and system CPU time of `pid` so far, in clock ticks.
fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .context("a stat line")?
        .1
        .split_whitespace()
        .collect();
    // After the name: state is field 3, utime 14 and stime 15 (1-based over the whole line).
    Ok(fields[11].parse::<u64>()? + fields[12].parse::<u64>()?)
}

fn ticks_per_second() -> anyhow::Result<f64> {
    let output = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()?;
    Ok(String::from_utf8(output.stdout)?.trim().parse()?)
}

/// CPU and memory of `pids` over [`WINDOW`], probing with ordinary requests meanwhile.
async fn window(
    handle: &Handle,
    token: &str,
    pids: &[u32],
) -> anyhow::Result<(Vec<Usage>, (usize, usize))> {
    let tick = ticks_per_second()?;
    let before: Vec<u64> = pids
        .iter()
        .map(|&p| cpu_ticks(p))
        .collect::<Result<_, _>>()?;
    let started = tokio::time::Instant::now();
    let (mut ok, mut all) = (0, 0);
    while started.elapsed() < WINDOW {
        let status = handle
            .client
            .get(format!("{}/v1/me", handle.base))
            .bearer_auth(token)
            .send()
            .await
            .map(|r| r.status().as_u16());
        all += 1;
        ok += usize::from(matches!(status, Ok(200)));
        tokio::time::sleep(PROBE_EVERY).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let mut usage = Vec::new();
    for (pid, before) in pids.iter().zip(before) {
        let used = (cpu_ticks(*pid)? - before) as f64 / tick;
        usage.push(Usage {
            cpu_percent: used / seconds * 100.0,
            rss: memory(*pid, "VmRSS")?,
        });
    }
    Ok((usage, (ok, all)))
}

async fn idle_streams(system: &System) -> anyhow::Result<Idle> {
    let handle = system.clone_handle();
    let mut pids = vec![system.process.pid()];
    if let Some(worker) = &system.worker {
        pids.push(worker.pid());
    }
    let prober = handle.user("prober").await?;
    let mut tokens = Vec::new();
    for user in 0..USERS {
        let email = format!("streams{user}-{}@example.com", std::process::id());
        tokens.push(register_and_login(&handle.client, &handle.base, &email).await?);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (without, probes_without) = window(&handle, &prober, &pids).await?;

    let closed = Arc::new(AtomicBool::new(false));
    let mut heartbeats = Vec::new();
    let mut readers = Vec::new();
    for (user, token) in tokens.iter().enumerate() {
        // Every user from an address of their own, as separate browsers.
        let address = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 10 + user as u8));
        let client = reqwest::Client::builder().local_address(address).build()?;
        for _ in 0..STREAMS_PER_USER {
            let mut stream = open(&client, &handle.base, token).await?;
            let closed = Arc::clone(&closed);
            let beats = Arc::new(AtomicUsize::new(0));
            heartbeats.push(Arc::clone(&beats));
            readers.push(tokio::spawn(async move {
                while let Ok(Some(chunk)) = stream.chunk().await {
                    let text = String::from_utf8_lossy(&chunk);
                    beats.fetch_add(text.matches(": keepalive\n").count(), Ordering::Relaxed);
                }
                closed.store(true, Ordering::Relaxed);
            }));
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (with, probes_with) = window(&handle, &prober, &pids).await?;
    anyhow::ensure!(
        !closed.load(Ordering::Relaxed),
        "a stream closed within the window"
    );
    for reader in readers {
        reader.abort();
    }
    let min_heartbeats = heartbeats
        .iter()
        .map(|b| b.load(Ordering::Relaxed))
        .min()
        .unwrap_or(0);
    Ok(Idle {
        without,
        with,
        probes_without,
        probes_with,
        min_heartbeats,
    })
}
