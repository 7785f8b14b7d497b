//! Helpers shared by the integration tests: spawn `mp3conv serve` as a real process on port 0,
//! read the bound address from its output, and talk to it over HTTP like any client.

#![allow(dead_code)] // each test binary uses a different part

pub mod api;
pub mod browser;
pub mod media;
pub mod openapi;
pub mod tls;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The directory cargo builds into (works with CARGO_TARGET_DIR too).
pub fn target_dir() -> PathBuf {
    let exe = Path::new(env!("CARGO_BIN_EXE_mp3conv"));
    // .../target/<profile>/mp3conv
    exe.parent()
        .and_then(Path::parent)
        .expect("binary lives in target/<profile>/")
        .to_path_buf()
}

/// The components the tests run. They are built in one cargo command, the same one
/// `scripts/test.sh` runs up front: building a subset could resolve their shared dependencies'
/// features differently and rebuild them back and forth.
pub const COMPONENTS: [&str; 5] = ["auth", "gateway", "notifier", "web", "probe"];

/// Where cargo puts the components.
pub fn components_dir() -> PathBuf {
    target_dir().join("wasm32-wasip2").join("release")
}

/// A component as its sources are now: the first call in a test process runs
/// [`build_components`], so a test never runs a component older than the code it tests.
pub fn component(name: &str) -> PathBuf {
    static BUILT: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    assert!(COMPONENTS.contains(&name), "`{name}` is not in COMPONENTS");
    if let Err(failure) = BUILT.get_or_init(|| build_components().map(drop)) {
        panic!("{failure}");
    }
    components_dir().join(format!("{name}.wasm"))
}

/// Runs `cargo build --release --target wasm32-wasip2 -p auth -p gateway -p notifier -p web -p probe`
/// into this build's target directory and returns cargo's report (stderr). Cargo rebuilds a
/// component when any file it was built from changed (it lists them in the `.d` file beside the
/// `.wasm`, path dependencies included) or the manifests or lock file did, and only checks
/// otherwise. `cargo test` does not hold cargo's build lock while tests run; another cargo
/// building in the same directory makes this wait for it.
pub fn build_components() -> Result<String, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let mut command = Command::new(cargo);
    command
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--manifest-path",
        ])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(target_dir());
    for name in COMPONENTS {
        command.args(["-p", name]);
    }
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|err| format!("cannot run cargo to build the components: {err}"))?;
    let report = String::from_utf8_lossy(&output.stderr).into_owned();
    if !output.status.success() {
        return Err(format!(
            "building the components failed ({command:?}): {}\n{report}",
            output.status
        ));
    }
    for line in report.lines().filter(|line| line.contains("Compiling")) {
        eprintln!("components: {}", line.trim());
    }
    Ok(report)
}

/// The repository's own `spin.toml`, with component sources pointed at this build's target
/// directory (the manifest names them relative to the repository).
pub fn repo_manifest() -> String {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("spin.toml"))
        .expect("reading spin.toml");
    // Built (or found fresh) before any test reads the manifest's component paths.
    component("gateway");
    text.replace(
        "\"target/wasm32-wasip2/release/",
        &format!("\"{}/", components_dir().display()),
    )
}

/// Runs an `mp3conv` subcommand to completion, panicking with its output when it fails.
pub fn mp3conv(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_mp3conv"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("running mp3conv");
    assert!(
        output.status.success(),
        "mp3conv {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Compiled components are shared by every test so each is compiled once per run.
pub fn shared_cache_dir() -> PathBuf {
    target_dir().join("test-component-cache")
}

/// A running `mp3conv` process.
pub struct HostProcess {
    child: Child,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    log: Arc<Mutex<String>>,
}

/// How to start a host.
pub struct HostOptions {
    /// `serve` (the host alone) or `up` (the whole system in one process).
    pub subcommand: &'static str,
    pub manifest: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Reuse this data directory (to check what survives a restart).
    pub dir: Option<tempfile::TempDir>,
    /// A compiled-component cache other than the shared one.
    pub cache_dir: Option<PathBuf>,
}

impl HostOptions {
    pub fn new(manifest: impl Into<String>) -> HostOptions {
        HostOptions {
            subcommand: "serve",
            manifest: manifest.into(),
            args: Vec::new(),
            env: Vec::new(),
            dir: None,
            cache_dir: None,
        }
    }

    pub fn arg(mut self, arg: impl Into<String>) -> HostOptions {
        self.args.push(arg.into());
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> HostOptions {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }
}

/// The outcome of a host that was expected not to start.
pub struct FailedStart {
    pub code: Option<i32>,
    pub stderr: String,
}

fn command(options: &HostOptions, dir: &Path) -> Command {
    let manifest = dir.join("spin.toml");
    std::fs::write(&manifest, &options.manifest).expect("writing the manifest");
    let mut command = Command::new(env!("CARGO_BIN_EXE_mp3conv"));
    command
        .arg(options.subcommand)
        .arg("--manifest")
        .arg(&manifest)
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--cache-dir")
        .arg(options.cache_dir.clone().unwrap_or_else(shared_cache_dir))
        .args(&options.args)
        .env_remove("RUST_LOG")
        .envs(options.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

impl HostProcess {
    /// Starts a host and waits until it prints the address it serves on.
    pub fn start(mut options: HostOptions) -> HostProcess {
        let dir = match options.dir.take() {
            Some(dir) => dir,
            None => tempfile::tempdir().expect("temp dir"),
        };
        let mut child = command(&options, dir.path())
            .spawn()
            .expect("spawning mp3conv");

        // The first stdout line is the readiness signal; it comes after components are compiled.
        let (line, log) = first_line(&mut child, "mp3conv");
        let addr = line
            .strip_prefix("Serving http://")
            .unwrap_or_else(|| panic!("unexpected first line: {line}"))
            .parse()
            .expect("a socket address");
        HostProcess {
            child,
            addr,
            dir,
            log,
        }
    }

    /// Runs a host that must refuse to start, returning its exit code and stderr.
    pub fn start_failing(options: HostOptions) -> FailedStart {
        let dir = tempfile::tempdir().expect("temp dir");
        let output = command(&options, dir.path())
            .output()
            .expect("running mp3conv");
        assert!(
            output.stdout.is_empty(),
            "a host that fails to start must not print an address: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        FailedStart {
            code: output.status.code(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the host logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits");
        // SAFETY: sending a signal to a child process we own.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(rc, 0, "kill(SIGTERM) failed");
    }

    /// Waits for the process to exit (bounded) and returns its exit code.
    pub fn wait(mut self) -> Option<i32> {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.code();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "mp3conv did not exit; its log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The data directory the host used.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Stops the host and hands back its directory, for a restart on the same data.
    pub fn stop_keeping_dir(mut self) -> tempfile::TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let dir = tempfile::tempdir().expect("temp dir");
        std::mem::replace(&mut self.dir, dir)
    }
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Resident and peak resident memory of a process, in bytes (Linux).
pub fn rss(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches(" kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .map(|kb| kb * 1024)
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
    };
    (field("VmRSS:"), field("VmHWM:"))
}

pub fn client() -> reqwest::Client {
    install_crypto_provider();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("http client")
}

/// The one crypto provider the build links (ring), for the tests' own TLS clients: reqwest is
/// built without one of its own. Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Reads the first stdout line of `child` (its readiness signal) within two minutes, then
/// keeps draining stdout; stderr goes into the returned log.
fn first_line(child: &mut Child, what: &str) -> (String, Arc<Mutex<String>>) {
    let log = Arc::new(Mutex::new(String::new()));
    let stderr = child.stderr.take().expect("piped stderr");
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let mut log = sink.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
        }
    });
    let stdout = child.stdout.take().expect("piped stdout");
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let _ = sender.send(lines.next().and_then(Result::ok));
        for _ in lines {}
    });
    match receiver.recv_timeout(Duration::from_secs(120)) {
        Ok(Some(line)) => (line, log),
        other => {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{what} did not start ({other:?}); its log:\n{}",
                log.lock().unwrap()
            );
        }
    }
}

/// The native worker as its own process (`mp3conv-worker`), as it runs in a cluster.
pub struct WorkerProcess {
    child: Child,
    pub url: String,
    log: Arc<Mutex<String>>,
    _dir: tempfile::TempDir,
}

impl WorkerProcess {
    /// Starts the worker with `MP3CONV_WORKER__*` settings `env` (listen and temp dir are
    /// set here).
    pub fn start(env: &[(String, String)]) -> WorkerProcess {
        let dir = tempfile::tempdir().expect("temp dir");
        let binary = Path::new(env!("CARGO_BIN_EXE_mp3conv")).with_file_name("mp3conv-worker");
        assert!(
            binary.exists(),
            "{} is missing: run the workspace tests",
            binary.display()
        );
        let mut child = Command::new(binary)
            .env("MP3CONV_WORKER__LISTEN", "127.0.0.1:0")
            .env("MP3CONV_WORKER__CONVERT__TEMP_DIR", dir.path())
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning mp3conv-worker");
        let (line, log) = first_line(&mut child, "mp3conv-worker");
        let url = line
            .strip_prefix("mp3conv-worker listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line}"))
            .to_owned();
        WorkerProcess {
            child,
            url,
            log,
            _dir: dir,
        }
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A test video made by ffmpeg from its lavfi sources, cached per test process:
/// `clip` (3 s MP4 H.264/AAC, index at the end), `clip-<seconds>` (the same, that long),
/// `mute` (3 s MP4 H.264 with no sound track),
/// `raw-<seconds>` (uncompressed 720p video
/// with AAC audio in Matroska: about 41 MB per second, for large uploads).
pub fn media(kind: &str) -> PathBuf {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    static LOCK: Mutex<()> = Mutex::new(());
    let _made_one_at_a_time = LOCK.lock().unwrap();
    let dir = DIR.get_or_init(|| tempfile::tempdir().expect("temp dir"));
    let (file, args): (String, Vec<String>) = if kind == "clip" {
        (
            "clip.mp4".into(),
            "-f lavfi -i testsrc=size=160x120:rate=10:duration=3 -f lavfi -i sine=frequency=440:duration=3 -c:v libx264 -preset ultrafast -pix_fmt yuv420p -c:a aac"
                .split(' ')
                .map(str::to_owned)
                .collect(),
        )
    } else if let Some(seconds) = kind.strip_prefix("clip-") {
        (
            format!("clip-{seconds}.mp4"),
            format!("-f lavfi -i testsrc=size=160x120:rate=10:duration={seconds} -f lavfi -i sine=frequency=440:duration={seconds} -c:v libx264 -preset ultrafast -pix_fmt yuv420p -c:a aac")
                .split(' ')
                .map(str::to_owned)
                .collect(),
        )
    } else if kind == "mute" {
        (
            "mute.mp4".into(),
            "-f lavfi -i testsrc=size=160x120:rate=10:duration=3 -c:v libx264 -preset ultrafast -pix_fmt yuv420p"
                .split(' ')
                .map(str::to_owned)
                .collect(),
        )
    } else if let Some(seconds) = kind.strip_prefix("raw-") {
        (
            format!("raw-{seconds}.mkv"),
            format!("-f lavfi -i testsrc2=size=1280x720:rate=30:duration={seconds} -f lavfi -i sine=frequency=330:duration={seconds} -c:v rawvideo -pix_fmt yuv420p -c:a aac")
                .split(' ')
                .map(str::to_owned)
                .collect(),
        )
    } else {
        panic!("no media kind {kind}")
    };
    let path = dir.path().join(file);
    if !path.exists() {
        let status = Command::new("ffmpeg")
            .args(["-v", "error", "-y"])
            .args(&args)
            .arg(&path)
            .status()
            .expect("running ffmpeg");
        assert!(status.success(), "ffmpeg could not make {kind}");
    }
    path
}

/// ffprobe's view of an audio file: (codec of the first stream, duration in seconds).
pub fn probe_audio(bytes: &[u8]) -> (String, f64) {
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), bytes).expect("writing the audio");
    let output = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-print_format",
            "json",
            "-show_format",
            "-show_streams",
        ])
        .arg(file.path())
        .output()
        .expect("running ffprobe");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let info: serde_json::Value = serde_json::from_slice(&output.stdout).expect("ffprobe JSON");
    (
        info["streams"][0]["codec_name"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        info["format"]["duration"]
            .as_str()
            .and_then(|d| d.parse().ok())
            .expect("a duration"),
    )
}

/// A request the [`Recorder`] received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub path: String,
    pub headers: http::HeaderMap,
    pub body: bytes::Bytes,
    pub at: std::time::Instant,
    /// The status it was answered with.
    pub status: u16,
}

/// A stand-in for the outside world (a user's webhook receiver, an email provider's API) and,
/// with a forward target, a proxy in front of a sink: it records every POST, answers planned
/// failures per path, then 200 (or whatever the forward target answers).
#[derive(Clone)]
pub struct Recorder {
    pub url: String,
    requests: Arc<Mutex<Vec<Recorded>>>,
    planned: Arc<Mutex<std::collections::HashMap<String, std::collections::VecDeque<u16>>>>,
    always: Arc<Mutex<std::collections::HashMap<String, u16>>>,
    forward: Arc<Mutex<Option<(String, String)>>>,
}

impl Recorder {
    pub async fn start() -> Recorder {
        Recorder::start_on(None).await
    }

    /// A recorder speaking https at `https://localhost:PORT`, with a certificate from `ca`.
    pub async fn start_https(ca: &tls::TestCa) -> Recorder {
        Recorder::start_on(Some(ca.acceptor("localhost"))).await
    }

    async fn start_on(tls: Option<tokio_rustls::TlsAcceptor>) -> Recorder {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let recorder = Recorder {
            url: match tls {
                Some(_) => format!("https://localhost:{port}"),
                None => format!("http://127.0.0.1:{port}"),
            },
            requests: Arc::default(),
            planned: Arc::default(),
            always: Arc::default(),
            forward: Arc::default(),
        };
        let shared = recorder.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let recorder = shared.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let recorder = recorder.clone();
                        async move { Ok::<_, std::convert::Infallible>(recorder.answer(request).await) }
                    });
                    let http = hyper::server::conn::http1::Builder::new();
                    let _ = match tls {
                        Some(acceptor) => match acceptor.accept(stream).await {
                            Ok(stream) => {
                                http.serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                                    .await
                            }
                            Err(_) => return,
                        },
                        None => {
                            http.serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                                .await
                        }
                    };
                });
            }
        });
        recorder
    }

    async fn answer(
        &self,
        request: http::Request<hyper::body::Incoming>,
    ) -> http::Response<http_body_util::Full<bytes::Bytes>> {
        use http_body_util::BodyExt as _;
        let at = std::time::Instant::now();
        let (parts, body) = request.into_parts();
        let body = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let path = parts.uri.path().to_owned();
        let planned = self
            .planned
            .lock()
            .unwrap()
            .get_mut(&path)
            .and_then(|plan| plan.pop_front())
            .or_else(|| self.always.lock().unwrap().get(&path).copied());
        let forward = self
            .forward
            .lock()
            .unwrap()
            .clone()
            .filter(|(forwarded, _)| *forwarded == path)
            .map(|(_, target)| target);
        let (status, reply) = match (planned, forward) {
            (Some(status), _) => (status, bytes::Bytes::from_static(b"{}")),
            (None, Some(target)) => {
                let mut forwarded = client()
                    .request(parts.method.clone(), format!("{target}{path}"))
                    .body(body.clone());
                for (name, value) in &parts.headers {
                    if name != http::header::HOST && name != http::header::CONTENT_LENGTH {
                        forwarded = forwarded.header(name, value);
                    }
                }
                match forwarded.send().await {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        (status, response.bytes().await.unwrap_or_default())
                    }
                    Err(_) => (502, bytes::Bytes::new()),
                }
            }
            (None, None) => (200, bytes::Bytes::from_static(b"{}")),
        };
        self.requests.lock().unwrap().push(Recorded {
            path,
            headers: parts.headers,
            body,
            at,
            status,
        });
        let mut response = http::Response::new(http_body_util::Full::new(reply));
        *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
        response
    }

    /// The next requests to `path` are answered with `statuses`, in order.
    pub fn fail_next(&self, path: &str, statuses: &[u16]) {
        self.planned
            .lock()
            .unwrap()
            .entry(path.to_owned())
            .or_default()
            .extend(statuses);
    }

    /// Every request to `path` is answered with `status`.
    pub fn always(&self, path: &str, status: u16) {
        self.always.lock().unwrap().insert(path.to_owned(), status);
    }

    /// Requests to `path` not planned otherwise go on to `target` + `path`.
    pub fn forward(&self, path: &str, target: &str) {
        *self.forward.lock().unwrap() = Some((path.to_owned(), target.to_owned()));
    }

    pub fn requests(&self, path: &str) -> Vec<Recorded> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    /// Waits (up to two minutes) until `path` has received `count` requests matching `filter`,
    /// and returns them.
    pub async fn wait_for(
        &self,
        path: &str,
        count: usize,
        filter: impl Fn(&Recorded) -> bool,
    ) -> Vec<Recorded> {
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        loop {
            let matching: Vec<Recorded> = self
                .requests(path)
                .into_iter()
                .filter(|r| filter(r))
                .collect();
            if matching.len() >= count {
                return matching;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{path} got {} of {count} requests",
                matching.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
