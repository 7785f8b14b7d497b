//! Host benchmark: latency and throughput of a hello component at 1 and 16 connections,
//! per-request instantiation time, and cold start (process start to first response).
//!
//! A bare hyper server answering the same bytes natively, measured in the same run with the
//! same client, is the baseline each figure is compared against.
//!
//! Usage: `mp3conv-bench <mp3conv binary> <probe.wasm>` (`make bench` passes both).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use mp3conv_bench::{Load, Spec, load_spec, median, ms, send};

const REQUESTS_ONE: usize = 5_000;
const REQUESTS_MANY: usize = 20_000;
const COLD_STARTS: usize = 10;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(binary), Some(probe), Some(root)) = (args.next(), args.next(), args.next()) else {
        bail!("usage: mp3conv-bench <mp3conv binary> <probe.wasm> <repository root>");
    };
    let binary = PathBuf::from(binary);
    let probe = std::fs::canonicalize(probe).context("probe.wasm")?;
    let work = tempfile::tempdir()?;
    let manifest = work.path().join("spin.toml");
    std::fs::write(
        &manifest,
        format!(
            "spin_manifest_version = 2\n[application]\nname = \"bench\"\n\
             [[trigger.http]]\nroute = \"/probe/...\"\ncomponent = \"probe\"\n\
             [component.probe]\nsource = \"{}\"\n",
            probe.display()
        ),
    )?;
    let cache = work.path().join("cache");

    let baseline = spawn_baseline().await?;
    let host = Host::start(&binary, &manifest, &cache, work.path())?;
    let hello = "/probe/hello";

    let mut hello_rps = Vec::new();
    println!("| figure | mp3conv host | baseline (same run) | ratio | target |");
    println!("|---|---|---|---|---|");
    for connections in [1usize, 16] {
        let requests = if connections == 1 {
            REQUESTS_ONE
        } else {
            REQUESTS_MANY
        };
        // Warm both sides first (connection setup, pool slots, caches).
        load(host.addr, hello, connections, 500).await?;
        load(baseline, hello, connections, 500).await?;
        let wasm = load(host.addr, hello, connections, requests).await?;
        hello_rps.push(wasm.rps);
        let native = load(baseline, hello, connections, requests).await?;
        println!(
            "| p50 latency, {connections} conn | {:.3} ms | {:.3} ms (native hyper) | {:.2} | {} |",
            ms(wasm.p50),
            ms(native.p50),
            ms(wasm.p50) / ms(native.p50),
            if connections == 1 { "< 0.3 ms" } else { "" }
        );
        println!(
            "| p99 latency, {connections} conn | {:.3} ms | {:.3} ms (native hyper) | {:.2} | |",
            ms(wasm.p99),
            ms(native.p99),
            ms(wasm.p99) / ms(native.p99)
        );
        println!(
            "| req/s, {connections} conn | {:.0} | {:.0} (native hyper) | {:.2} | |",
            wasm.rps,
            native.rps,
            wasm.rps / native.rps
        );
    }
    let instantiate = host.instantiation_median_us()?;
    println!("| instantiation (median over all requests) | {instantiate:.1} us | | | < 50 us |");
    host.stop();

    // Cold start: spawn, wait for the address, first response. The first run fills the cache.
    let mut warm = Vec::new();
    let mut cold = Vec::new();
    for i in 0..COLD_STARTS {
        let fresh_cache = work.path().join(format!("fresh-cache-{i}"));
        cold.push(cold_start(&binary, &manifest, &fresh_cache, work.path(), hello).await?);
        warm.push(cold_start(&binary, &manifest, &cache, work.path(), hello).await?);
    }
    println!(
        "| process start to first response, cache warm (median of {COLD_STARTS}) | {:.1} ms | {:.1} ms (no cache) | {:.2} | < 20 ms |",
        ms(median(&mut warm.clone())),
        ms(median(&mut cold.clone())),
        ms(median(&mut warm)) / ms(median(&mut cold))
    );

    auth(
        &binary,
        &std::fs::canonicalize(root)?,
        work.path(),
        &cache,
        &hello_rps,
    )
    .await
}

/// Login latency (argon2id dominates) against the same verification done natively, and
/// token validation throughput against the hello component's.
async fn auth(
    binary: &Path,
    root: &Path,
    work: &Path,
    cache: &Path,
    hello_rps: &[f64],
) -> anyhow::Result<()> {
    const LOGINS: usize = 40;
    let keys = work.join("keys");
    run(
        binary,
        &["keys", "generate", "--dir", keys.to_str().context("path")?],
    )?;
    let data = work.join("auth-data");
    let db = data.join("sqlite_db.db");
    run(
        binary,
        &["migrate", "--sqlite", db.to_str().context("path")?],
    )?;
    let manifest = work.join("auth-spin.toml");
    mp3conv_bench::write_repo_manifest(root, &manifest)?;
    let pem = std::fs::read_to_string(keys.join("jwt-signing.pem"))?;
    let jwks = std::fs::read_to_string(keys.join("jwks.json"))?;
    let host = Host::start_with(
        binary,
        &manifest,
        cache,
        &data,
        &[
            ("SPIN_VARIABLE_JWT_SIGNING_KEY", &pem),
            ("SPIN_VARIABLE_JWT_PUBLIC_KEYS", &jwks),
            // Required by the manifest; the auth figures never reach the worker.
            (
                "SPIN_VARIABLE_WORKER_TOKEN",
                "benchmarks-have-no-worker-here",
            ),
        ],
    )?;

    let json = |path: &str, body: &str| Spec {
        method: http::Method::POST,
        path: path.to_owned(),
        headers: vec![("content-type", "application/json".to_owned())],
        body: Bytes::from(body.to_owned()),
    };
    let credentials = r#"{"email":"bench@example.com","password":"benchmark password"}"#;
    let response = send(host.addr, json("/auth/register", credentials)).await?;
    anyhow::ensure!(response.0 == 201, "register: {}", response.0);
    let login = load_spec(host.addr, json("/auth/login", credentials), 1, LOGINS).await?;
    let (_, body) = send(host.addr, json("/auth/login", credentials)).await?;
    let token = serde_json::from_slice::<serde_json::Value>(&body)?["access_token"]
        .as_str()
        .context("a token")?
        .to_owned();

    let hash = auth::password::hash("benchmark password").map_err(anyhow::Error::msg)?;
    let mut native = Vec::new();
    for _ in 0..LOGINS {
        let started = Instant::now();
        anyhow::ensure!(auth::password::verify("benchmark password", &hash));
        native.push(started.elapsed());
    }
    let native = median(&mut native);
    println!(
        "| login p50 (argon2id 19 MiB, t=2), {LOGINS} sequential | {:.1} ms | {:.1} ms (argon2id verify, native) | {:.2} | |",
        ms(login.p50),
        ms(native),
        ms(login.p50) / ms(native)
    );

    // A wrong password and an unknown email must cost the same, or timing tells which emails
    // have accounts. Each run stays under the throttle (5 failures per email).
    let mut wrong = Vec::new();
    let mut unknown = Vec::new();
    for round in 0..8 {
        let email = format!("timing{round}@example.com");
        let password = r#""timing password""#;
        let body = format!(r#"{{"email":"{email}","password":{password}}}"#);
        anyhow::ensure!(send(host.addr, json("/auth/register", &body)).await?.0 == 201);
        for _ in 0..4 {
            let started = Instant::now();
            let wrong_body = format!(r#"{{"email":"{email}","password":"not it at all"}}"#);
            anyhow::ensure!(send(host.addr, json("/auth/login", &wrong_body)).await?.0 == 401);
            wrong.push(started.elapsed());
            let started = Instant::now();
            let unknown_body =
                format!(r#"{{"email":"nobody{round}@example.com","password":"not it at all"}}"#);
            anyhow::ensure!(send(host.addr, json("/auth/login", &unknown_body)).await?.0 == 401);
            unknown.push(started.elapsed());
        }
    }
    let (wrong, unknown) = (median(&mut wrong), median(&mut unknown));
    println!(
        "| failed login p50, unknown email vs wrong password (32 each) | {:.1} ms | {:.1} ms (wrong password) | {:.2} | comparable |",
        ms(unknown),
        ms(wrong),
        ms(unknown) / ms(wrong)
    );

    let validate = Spec {
        method: http::Method::POST,
        path: "/auth/validate".into(),
        headers: vec![("authorization", format!("Bearer {token}"))],
        body: Bytes::new(),
    };
    for (index, connections) in [1usize, 16].into_iter().enumerate() {
        let requests = if connections == 1 { 2_000 } else { 8_000 };
        load_spec(host.addr, validate.clone(), connections, 200).await?;
        let result = load_spec(host.addr, validate.clone(), connections, requests).await?;
        let hello = hello_rps.get(index).copied().unwrap_or(f64::NAN);
        println!(
            "| validate req/s, {connections} conn (p50 {:.2} ms) | {:.0} | {:.0} (hello component) | {:.2} | |",
            ms(result.p50),
            result.rps,
            hello,
            result.rps / hello
        );
    }
    host.stop();
    Ok(())
}

fn run(binary: &Path, args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new(binary)
        .args(args)
        .stdout(Stdio::null())
        .status()?;
    anyhow::ensure!(status.success(), "mp3conv {args:?} failed");
    Ok(())
}

/// `requests` GETs of `path` spread over `connections` keep-alive connections.
async fn load(
    addr: SocketAddr,
    path: &'static str,
    connections: usize,
    requests: usize,
) -> anyhow::Result<Load> {
    load_spec(addr, Spec::get(path), connections, requests).await
}

/// A native hyper server answering `hello` on its own runtime thread.
async fn spawn_baseline() -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().expect("baseline runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("baseline listener");
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(|_request| async {
                        let mut response =
                            http::Response::new(Full::new(Bytes::from_static(b"hello")));
                        response
                            .headers_mut()
                            .insert("content-type", http::HeaderValue::from_static("text/plain"));
                        Ok::<_, std::convert::Infallible>(response)
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
    });
    Ok(addr)
}

struct Host {
    child: Child,
    addr: SocketAddr,
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Host {
    fn start(binary: &Path, manifest: &Path, cache: &Path, work: &Path) -> anyhow::Result<Host> {
        Host::start_with(binary, manifest, cache, &work.join("data"), &[])
    }

    fn start_with(
        binary: &Path,
        manifest: &Path,
        cache: &Path,
        data: &Path,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Host> {
        let mut child = Command::new(binary)
            .args(["--log-format", "json", "serve", "--listen", "127.0.0.1:0"])
            .arg("--manifest")
            .arg(manifest)
            .arg("--cache-dir")
            .arg(cache)
            .arg("--data-dir")
            .arg(data)
            .envs(env.iter().copied())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("spawning mp3conv")?;
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = log.clone();
        let stderr = child.stderr.take().context("stderr")?;
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = sink.lock().expect("log lock");
                log.push_str(&line);
                log.push('\n');
            }
        });
        let addr = read_address(&mut child)?;
        Ok(Host { child, addr, log })
    }

    /// The median of `instantiate_us` over every request line the host logged.
    fn instantiation_median_us(&self) -> anyhow::Result<f64> {
        let log = self.log.lock().expect("log lock");
        let mut values: Vec<f64> = log
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|line| line["message"] == "request")
            .filter_map(|line| line["instantiate_us"].as_f64())
            .collect();
        anyhow::ensure!(!values.is_empty(), "no request lines in the host's log");
        values.sort_by(f64::total_cmp);
        Ok(values[values.len() / 2])
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read_address(child: &mut Child) -> anyhow::Result<SocketAddr> {
    let stdout = child.stdout.take().context("stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let line = lines.next().context("mp3conv exited before serving")??;
    std::thread::spawn(move || for _ in lines {});
    line.strip_prefix("Serving http://")
        .with_context(|| format!("unexpected first line: {line}"))?
        .parse()
        .context("address")
}

async fn cold_start(
    binary: &Path,
    manifest: &Path,
    cache: &Path,
    work: &Path,
    path: &'static str,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let host = Host::start(binary, manifest, cache, work)?;
    load(host.addr, path, 1, 1).await?;
    let elapsed = started.elapsed();
    host.stop();
    Ok(elapsed)
}
