//! What the benchmarks share: one request shape, a keep-alive load generator with latency
//! percentiles, and the processes they start.

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

pub mod system;
pub mod worker;

/// A reqwest client. Built together with the rest of the workspace, reqwest has TLS but no
/// crypto provider of its own (the build links only ring), so one is installed first.
pub fn http_client() -> reqwest::Client {
    // An error means a provider is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// One request; its status and body.
pub async fn send(addr: SocketAddr, spec: Spec) -> anyhow::Result<(u16, Bytes)> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let response = sender.send_request(spec.build(addr)?).await?;
    let status = response.status().as_u16();
    Ok((status, response.into_body().collect().await?.to_bytes()))
}

pub struct Load {
    pub p50: Duration,
    pub p99: Duration,
    pub rps: f64,
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub fn median(values: &mut [Duration]) -> Duration {
    values.sort();
    values[values.len() / 2]
}

/// One request to repeat.
#[derive(Clone)]
pub struct Spec {
    pub method: http::Method,
    pub path: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Bytes,
}

impl Spec {
    pub fn get(path: &str) -> Spec {
        Spec {
            method: http::Method::GET,
            path: path.to_owned(),
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    pub fn build(&self, addr: SocketAddr) -> anyhow::Result<http::Request<Full<Bytes>>> {
        let mut request = http::Request::builder()
            .method(self.method.clone())
            .uri(&self.path)
            .header("host", addr.to_string());
        for (name, value) in &self.headers {
            request = request.header(*name, value);
        }
        Ok(request.body(Full::new(self.body.clone()))?)
    }
}

/// `requests` copies of `spec` spread over `connections` keep-alive connections; every
/// answer must be a 2xx.
pub async fn load_spec(
    addr: SocketAddr,
    spec: Spec,
    connections: usize,
    requests: usize,
) -> anyhow::Result<Load> {
    let per_connection = requests / connections;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let spec = spec.clone();
        tasks.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(connection);
            let mut latencies = Vec::with_capacity(per_connection);
            for _ in 0..per_connection {
                let request = spec.build(addr)?;
                let sent = Instant::now();
                let response = sender.send_request(request).await?;
                let status = response.status();
                response.into_body().collect().await?;
                latencies.push(sent.elapsed());
                anyhow::ensure!(status.is_success(), "status {status}");
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut all = Vec::with_capacity(requests);
    for task in tasks {
        all.extend(task.await??);
    }
    let elapsed = started.elapsed();
    all.sort();
    Ok(Load {
        p50: all[all.len() / 2],
        p99: all[all.len() * 99 / 100],
        rps: all.len() as f64 / elapsed.as_secs_f64(),
    })
}

/// Writes the repository's `spin.toml` to `to` with the component sources pointed at the
/// repository's build (the manifest names them relative to itself).
pub fn write_repo_manifest(root: &std::path::Path, to: &std::path::Path) -> anyhow::Result<()> {
    let components = root.join("target").join("wasm32-wasip2").join("release");
    std::fs::write(
        to,
        std::fs::read_to_string(root.join("spin.toml"))?.replace(
            "\"target/wasm32-wasip2/release/",
            &format!("\"{}/", components.display()),
        ),
    )?;
    Ok(())
}

pub fn path(path: &Path) -> anyhow::Result<&str> {
    path.to_str().context("a UTF-8 path")
}

pub fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

pub fn run(binary: &Path, args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new(binary)
        .args(args)
        .stdout(Stdio::null())
        .status()?;
    anyhow::ensure!(status.success(), "{} {args:?} failed", binary.display());
    Ok(())
}

/// A child process that announced its address on its first stdout line.
pub struct Process {
    child: Child,
    pub addr: SocketAddr,
}

impl Process {
    pub fn start(command: &mut Command, prefix: &str) -> anyhow::Result<Process> {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            // The systems' logs, when asked for (`MP3CONV_BENCH_LOGS=1`), to see where a
            // figure's time went.
            .stderr(if std::env::var_os("MP3CONV_BENCH_LOGS").is_some() {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .spawn()
            .context("spawning")?;
        let stdout = child.stdout.take().context("stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let line = lines.next().context("exited before serving")??;
        std::thread::spawn(move || for _ in lines {});
        let addr = line
            .strip_prefix(prefix)
            .with_context(|| format!("unexpected first line: {line}"))?
            .parse()?;
        Ok(Process { child, addr })
    }
}

impl Process {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Registers `email` (password "benchmark password") and logs in: the access token.
pub async fn register_and_login(
    client: &reqwest::Client,
    base: &str,
    email: &str,
) -> anyhow::Result<String> {
    let credentials = serde_json::json!({"email": email, "password": "benchmark password"});
    let status = client
        .post(format!("{base}/auth/register"))
        .json(&credentials)
        .send()
        .await?
        .status();
    anyhow::ensure!(status == 201, "register {email}: {status}");
    let login: serde_json::Value = client
        .post(format!("{base}/auth/login"))
        .json(&credentials)
        .send()
        .await?
        .json()
        .await?;
    Ok(login["access_token"]
        .as_str()
        .context("a token")?
        .to_owned())
}

/// The CPU time a process has used so far (user and system, all threads) from
/// `/proc/<pid>/stat`: what a load cost the system under test, whatever else ran beside it.
pub fn cpu_time(pid: u32) -> anyhow::Result<std::time::Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat
        .rsplit_once(')')
        .with_context(|| format!("no command name in /proc/{pid}/stat"))?
        .1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    let ticks = |index: usize| -> anyhow::Result<u64> {
        Ok(fields
            .get(index)
            .with_context(|| format!("/proc/{pid}/stat is short"))?
            .parse()?)
    };
    let total = ticks(11)? + ticks(12)?;
    // The kernel reports them in USER_HZ, 100 on Linux for every architecture it runs on.
    Ok(std::time::Duration::from_millis(total * 10))
}

/// A memory figure of a process from `/proc/<pid>/status` (`VmRSS` now, `VmHWM` peak), in bytes.
pub fn memory(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .with_context(|| format!("no {field} in /proc/{pid}/status"))?
        .trim()
        .trim_end_matches(" kB")
        .trim()
        .parse()?;
    Ok(kb * 1024)
}

/// `mp3conv serve` on port 0 for `manifest`, with the signing keys of `keys` and the worker at
/// `worker_url` (token `worker_token`); more settings can be added to the returned command.
pub fn serve_command(
    mp3conv: &Path,
    manifest: &Path,
    data: &Path,
    keys: &Path,
    worker_url: &str,
    worker_token: &str,
) -> anyhow::Result<Command> {
    let mut command = Command::new(mp3conv);
    command
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--manifest",
            path(manifest)?,
        ])
        .args(["--data-dir", path(data)?])
        .env(
            "SPIN_VARIABLE_JWT_SIGNING_KEY",
            read(&keys.join("jwt-signing.pem"))?,
        )
        .env(
            "SPIN_VARIABLE_JWT_PUBLIC_KEYS",
            read(&keys.join("jwks.json"))?,
        )
        .env("SPIN_VARIABLE_WORKER_URL", worker_url)
        .env("SPIN_VARIABLE_WORKER_TOKEN", worker_token);
    Ok(command)
}

/// What a conversion costs without mp3conv: `ffmpeg -i in -vn -c:a libmp3lame -b:a 192k`,
/// writing `bare.mp3` into `dir`.
pub fn bare_ffmpeg(clip: &Path, dir: &Path) -> anyhow::Result<Duration> {
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
