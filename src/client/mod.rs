//! The `mp3conv` client: register, log in, convert files and links, follow jobs, download.
//!
//! Exit codes mean something: 0 ok, 1 the job failed (or an unexpected error), 2 usage (a
//! request the server refused as malformed), 3 authentication (not logged in, bad password,
//! expired token), 4 the server is unreachable or unavailable. Progress bars are drawn only on
//! a terminal; otherwise progress is plain lines on stderr. `--json` prints one JSON document
//! on stdout for scripts.
//!
//! Conversion options are flags (`--start`, `--normalize`, `--title`, ...; see
//! [`options::OptionArgs`]), checked here by the contract's rule before anything is sent; a
//! value the server still refuses is reported naming its flag.

pub mod credentials;
mod follow;
mod options;
mod presets;

use std::io::{IsTerminal as _, Read as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Subcommand;
use futures::StreamExt as _;
use mp3conv_contract::error::ErrorBody;
use mp3conv_contract::http::{cut, file_name, file_stem};
use mp3conv_contract::job::{JobId, LinkRequest, PublicJob, PublicJobPage, Source, Status};
use mp3conv_contract::options::Options;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use credentials::Credentials;
use options::OptionArgs;
use presets::PresetsCommand;

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Create an account.
    Register {
        /// Your email address.
        email: String,
        /// Read the password from stdin instead of prompting.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Log in and keep the token (in the config directory, mode 0600).
    Login {
        email: String,
        /// Read the password from stdin instead of prompting.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Convert a video file or an http(s) link to MP3.
    ///
    /// The options are checked before anything is sent. With --wait or --output the MP3 is
    /// saved once done; a job split by chapters (--split chapters) also saves each chapter's
    /// MP3 next to it, as `<name> - NN - <chapter title>.mp3`.
    Convert {
        /// A file to upload, or an http:// or https:// link.
        input: String,
        #[command(flatten)]
        options: OptionArgs,
        /// Apply a preset of yours (`mp3conv presets`); the flags given here win over it.
        #[arg(long, value_name = "NAME")]
        preset: Option<String>,
        /// Wait for the conversion (implied by --output).
        #[arg(long)]
        wait: bool,
        /// Where to save the MP3 once done [default: the video's name with .mp3].
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Your jobs, newest first.
    Jobs {
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// One job's status.
    Status { id: JobId },
    /// Download a job's MP3 (and, for a job split by chapters, each chapter's next to it).
    Download {
        id: JobId,
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Delete a job, its video and its MP3.
    Rm { id: JobId },
    /// Your account, and what you use of your limits.
    Me,
    /// Your saved sets of options: list, save, show, delete.
    #[command(subcommand)]
    Presets(PresetsCommand),
}

/// Why a command failed, and the exit code that says so.
#[derive(Debug)]
pub enum Failure {
    JobFailed(String),
    Usage(String),
    Auth(String),
    Unreachable(String),
    Other(String),
}

impl Failure {
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::JobFailed(_) | Failure::Other(_) => 1,
            Failure::Usage(_) => 2,
            Failure::Auth(_) => 3,
            Failure::Unreachable(_) => 4,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Failure::JobFailed(m)
            | Failure::Usage(m)
            | Failure::Auth(m)
            | Failure::Unreachable(m)
            | Failure::Other(m) => m,
        }
    }
}

impl From<std::io::Error> for Failure {
    fn from(err: std::io::Error) -> Failure {
        Failure::Other(err.to_string())
    }
}

/// How the client talks and prints.
pub struct Client {
    server: String,
    json: bool,
    http: reqwest::Client,
    /// Progress bars (on a terminal) or plain lines.
    terminal: bool,
}

type Outcome = Result<(), Failure>;

impl Client {
    pub fn new(server: &str, json: bool) -> Result<Client, Failure> {
        let server = server.trim_end_matches('/').to_owned();
        if !(server.starts_with("http://") || server.starts_with("https://")) {
            return Err(Failure::Usage(format!(
                "--server must be an http(s) URL, not `{server}`"
            )));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|err| Failure::Other(err.to_string()))?;
        Ok(Client {
            server,
            json,
            http,
            terminal: std::io::stderr().is_terminal(),
        })
    }

    pub async fn run(&self, command: ClientCommand) -> Outcome {
        match command {
            ClientCommand::Register {
                email,
                password_stdin,
            } => self.register(&email, password_stdin).await,
            ClientCommand::Login {
                email,
                password_stdin,
            } => self.login(&email, password_stdin).await,
            ClientCommand::Convert {
                input,
                options,
                preset,
                wait,
                output,
            } => {
                let options = options.options(preset.as_deref())?;
                self.convert(&input, options, wait, output).await
            }
            ClientCommand::Jobs { limit } => self.jobs(limit).await,
            ClientCommand::Status { id } => {
                let job = self.job(id).await?;
                self.print(&job, || {
                    let mut text = describe(&job);
                    if !job.options.is_empty() {
                        text.push_str(&format!("\n  options: {}", options::describe(&job.options)));
                    }
                    for track in &job.tracks {
                        text.push_str(&format!(
                            "\n  track {:>2}: {} ({:.1} s)",
                            track.number, track.title, track.audio.duration
                        ));
                    }
                    text
                });
                Ok(())
            }
            ClientCommand::Download { id, output } => {
                let job = self.job(id).await?;
                let path = output.unwrap_or_else(|| default_output(&job));
                self.download(&job, &path).await
            }
            ClientCommand::Rm { id } => {
                let token = self.token()?;
                let response = self
                    .send(
                        self.http
                            .delete(self.url(&format!("/v1/jobs/{id}")))
                            .bearer_auth(&token),
                    )
                    .await?;
                check(response).await?;
                self.print(&json!({ "deleted": id }), || format!("deleted {id}"));
                Ok(())
            }
            ClientCommand::Me => {
                let token = self.token()?;
                let response = self
                    .send(self.http.get(self.url("/v1/me")).bearer_auth(&token))
                    .await?;
                let me: serde_json::Value = check(response).await?.json().await.map_err(|err| {
                    Failure::Other(format!("the server's answer is not as agreed: {err}"))
                })?;
                self.print(&me, || describe_me(&me));
                Ok(())
            }
            ClientCommand::Presets(command) => self.presets(command).await,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server)
    }

    /// Prints `value` as JSON with --json, else `text()`.
    fn print(&self, value: &impl Serialize, text: impl FnOnce() -> String) {
        if self.json {
            println!("{}", json!(value));
        } else {
            println!("{}", text());
        }
    }

    /// A progress line on stderr, unless --json output is on a terminal-less pipe.
    fn note(&self, line: &str) {
        eprintln!("{line}");
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<reqwest::Response, Failure> {
        request.send().await.map_err(|err| {
            if err.is_connect() || err.is_timeout() {
                Failure::Unreachable(format!("server at {} is not reachable", self.server))
            } else {
                Failure::Unreachable(format!("server at {}: {err}", self.server))
            }
        })
    }

    fn token(&self) -> Result<String, Failure> {
        let not_logged_in = || Failure::Auth("not logged in: run `mp3conv login`".into());
        let stored = credentials::load().ok_or_else(not_logged_in)?;
        if stored.server != self.server {
            return Err(Failure::Auth(format!(
                "logged in to {}, not {}: run `mp3conv login`",
                stored.server, self.server
            )));
        }
        let now = now_secs();
        if stored.expires_at <= now {
            return Err(Failure::Auth(
                "your login has expired: run `mp3conv login`".into(),
            ));
        }
        Ok(stored.token)
    }

    async fn register(&self, email: &str, password_stdin: bool) -> Outcome {
        let password = password(password_stdin, true)?;
        let response = self
            .send(
                self.http
                    .post(self.url("/auth/register"))
                    .json(&json!({ "email": email, "password": password })),
            )
            .await?;
        let account = check(response)
            .await?
            .json::<Value>()
            .await
            .unwrap_or_default();
        self.print(&account, || {
            format!("registered {email}: now run `mp3conv login {email}`")
        });
        Ok(())
    }

    async fn login(&self, email: &str, password_stdin: bool) -> Outcome {
        let password = password(password_stdin, false)?;
        let response = self
            .send(
                self.http
                    .post(self.url("/auth/login"))
                    .json(&json!({ "email": email, "password": password })),
            )
            .await?;
        let login: Value = check(response).await?.json().await.unwrap_or_default();
        let token = login["access_token"]
            .as_str()
            .ok_or_else(|| Failure::Other("the server sent no token".into()))?;
        let stored = Credentials {
            server: self.server.clone(),
            email: email.to_owned(),
            token: token.to_owned(),
            expires_at: now_secs().saturating_add(login["expires_in"].as_u64().unwrap_or(0)),
        };
        let path = credentials::save(&stored)
            .map_err(|err| Failure::Other(format!("cannot keep the token: {err:#}")))?;
        self.print(
            &json!({ "email": email, "expires_at": stored.expires_at, "credentials": path }),
            || format!("logged in as {email} (token kept in {})", path.display()),
        );
        Ok(())
    }

    async fn job(&self, id: JobId) -> Result<PublicJob, Failure> {
        let token = self.token()?;
        let response = self
            .send(
                self.http
                    .get(self.url(&format!("/v1/jobs/{id}")))
                    .bearer_auth(&token),
            )
            .await?;
        read(check(response).await?).await
    }

    async fn jobs(&self, limit: u32) -> Outcome {
        let token = self.token()?;
        let response = self
            .send(
                self.http
                    .get(self.url(&format!("/v1/jobs?limit={limit}")))
                    .bearer_auth(&token),
            )
            .await?;
        let page: PublicJobPage = read(check(response).await?).await?;
        self.print(&page, || {
            if page.jobs.is_empty() {
                return "no jobs yet: `mp3conv convert <file-or-url>`".into();
            }
            page.jobs
                .iter()
                .map(describe)
                .collect::<Vec<_>>()
                .join("\n")
        });
        Ok(())
    }

    async fn convert(
        &self,
        input: &str,
        options: Options,
        wait: bool,
        output: Option<PathBuf>,
    ) -> Outcome {
        let token = self.token()?;
        let is_link = input.starts_with("http://") || input.starts_with("https://");
        let request = if is_link {
            let body = LinkRequest {
                url: input.to_owned(),
                options,
            };
            self.http.post(self.url("/v1/jobs")).json(&body)
        } else {
            let path = Path::new(input);
            let size = std::fs::metadata(path)
                .map_err(|err| Failure::Usage(format!("cannot read {input}: {err}")))?
                .len();
            let file = tokio::fs::File::open(path)
                .await
                .map_err(|err| Failure::Usage(format!("cannot read {input}: {err}")))?;
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "video".into());
            let progress = Progress::new(self.terminal, "upload", size);
            let stream =
                tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024).map(move |chunk| {
                    if let Ok(bytes) = &chunk {
                        progress.advance(bytes.len() as u64);
                    }
                    chunk
                });
            let part = reqwest::multipart::Part::stream_with_length(
                reqwest::Body::wrap_stream(stream),
                size,
            )
            .file_name(name);
            // Options first: a server of before options-in-any-order reads them there too.
            let mut form = reqwest::multipart::Form::new();
            for (field, text) in options::form_fields(&options) {
                form = form.text(field, text);
            }
            self.http
                .post(self.url("/v1/jobs"))
                .multipart(form.part("file", part))
        };
        let response = self.send(request.bearer_auth(&token)).await?;
        let job: PublicJob = read(check(response).await?).await?;
        let id = job.id;
        if !(wait || output.is_some()) {
            self.print(&job, || format!("{id} queued: `mp3conv status {id}`"));
            return Ok(());
        }
        if !self.json {
            self.note(&format!("{id} queued"));
        }
        let job = self.follow(id).await?;
        if job.status == Status::Failed {
            let reason = job.error.as_ref().map_or("unknown", |e| e.message.as_str());
            if self.json {
                println!("{}", json!(job));
            }
            return Err(Failure::JobFailed(format!(
                "the conversion failed: {reason}"
            )));
        }
        let path = output.unwrap_or_else(|| default_output(&job));
        self.download(&job, &path).await
    }

    /// Follows the job until it is done or failed, showing its progress: on the server's event
    /// stream, or by polling when the server has none or it keeps breaking.
    async fn follow(&self, id: JobId) -> Result<PublicJob, Failure> {
        let mut percent = follow::Percent::new(Progress::new(self.terminal, "convert", 100));
        let token = self.token()?;
        let job = match self.follow_events(id, &token, &mut percent).await? {
            Some(job) => {
                if job.status == Status::Done {
                    percent.show(100);
                }
                job
            }
            None => self.poll(id, &mut percent).await?,
        };
        percent.finish();
        Ok(job)
    }

    /// Polls the job until it is done or failed, showing its progress.
    async fn poll(&self, id: JobId, percent: &mut follow::Percent) -> Result<PublicJob, Failure> {
        loop {
            let job = self.job(id).await?;
            percent.show(job.progress);
            if job.status.is_terminal() {
                return Ok(job);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Saves a done job's MP3 at `path`, and each of its tracks (a job split by chapters)
    /// next to it.
    async fn download(&self, job: &PublicJob, path: &Path) -> Outcome {
        let token = self.token()?;
        let id = job.id;
        if job.status != Status::Done {
            let status = job.status;
            return Err(if status == Status::Failed {
                Failure::JobFailed(format!("{id} failed: nothing to download"))
            } else if status == Status::Expired {
                Failure::JobFailed(format!(
                    "{id} expired: its MP3 was removed; convert the video again"
                ))
            } else {
                Failure::Usage(format!("{id} is {status}: no MP3 yet"))
            });
        }
        let size = self
            .save(&token, &format!("/v1/jobs/{id}/audio"), path)
            .await?;
        let mut tracks = Vec::new();
        for track in &job.tracks {
            let track_path = track_path(path, track.number, &track.title);
            let bytes = self
                .save(
                    &token,
                    &format!("/v1/jobs/{id}/tracks/{}", track.number),
                    &track_path,
                )
                .await?;
            tracks.push(json!({ "number": track.number, "title": track.title,
                                "saved": track_path, "bytes": bytes }));
        }
        let mut saved = json!({ "id": id, "saved": path, "bytes": size });
        if !tracks.is_empty() {
            saved["tracks"] = Value::Array(tracks);
        }
        self.print(&saved, || {
            let mut text = format!("saved {}", path.display());
            for track in saved["tracks"].as_array().into_iter().flatten() {
                text.push_str(&format!(
                    "\nsaved {}",
                    track["saved"].as_str().unwrap_or_default()
                ));
            }
            text
        });
        Ok(())
    }

    /// Downloads `route` into `path` (through `<path>.part`, renamed once whole), showing the
    /// progress; answers the bytes saved.
    async fn save(&self, token: &str, route: &str, path: &Path) -> Result<u64, Failure> {
        let response = self
            .send(self.http.get(self.url(route)).bearer_auth(token))
            .await?;
        let response = check(response).await?;
        let size = response.content_length().unwrap_or(0);
        let progress = Progress::new(self.terminal, "download", size);
        let mut temporary = path.as_os_str().to_owned();
        temporary.push(".part");
        let temporary = PathBuf::from(temporary);
        let mut out = tokio::fs::File::create(&temporary).await?;
        let mut body = response.bytes_stream();
        let mut saved = 0;
        while let Some(chunk) = body.next().await {
            let chunk = chunk
                .map_err(|err| Failure::Unreachable(format!("the download broke off: {err}")))?;
            tokio::io::AsyncWriteExt::write_all(&mut out, &chunk).await?;
            saved += chunk.len() as u64;
            progress.advance(chunk.len() as u64);
        }
        tokio::io::AsyncWriteExt::flush(&mut out).await?;
        std::fs::rename(&temporary, path)?;
        progress.finish();
        Ok(saved)
    }
}

/// `GET /v1/me` for people: the email, then each limit with what is used of it.
fn describe_me(me: &serde_json::Value) -> String {
    use mp3conv_contract::quota::{Quota, bytes, seconds};
    let mut text = me["email"].as_str().unwrap_or_default().to_owned();
    let Ok(quota) = serde_json::from_value::<Quota>(me["quota"].clone()) else {
        text.push_str("\n  (usage unavailable just now)");
        return text;
    };
    let (limits, usage) = (quota.limits, quota.usage);
    let of = |used: String, limit: Option<String>| match limit {
        Some(limit) => format!("{used} of {limit}"),
        None => format!("{used} (no limit)"),
    };
    text.push_str(&format!(
        "\n  storage:               {}",
        of(bytes(usage.storage_bytes), limits.storage_bytes.map(bytes))
    ));
    text.push_str(&format!(
        "\n  jobs at once:          {}",
        of(
            usage.concurrent_jobs.to_string(),
            limits.concurrent_jobs.map(|n| n.to_string())
        )
    ));
    text.push_str(&format!(
        "\n  jobs in the last hour: {}",
        of(
            usage.jobs_per_hour.to_string(),
            limits.jobs_per_hour.map(|n| n.to_string())
        )
    ));
    text.push_str(&format!(
        "\n  largest video:         {}",
        limits
            .max_upload_bytes
            .map_or("the server's limit".to_owned(), bytes)
    ));
    text.push_str(&format!(
        "\n  longest video:         {}",
        limits
            .max_duration_secs
            .map_or("no limit".to_owned(), seconds)
    ));
    text
}

/// Turns an error answer into the matching failure.
async fn check(response: reqwest::Response) -> Result<reqwest::Response, Failure> {
    let status = response.status().as_u16();
    if status < 400 {
        return Ok(response);
    }
    let (code, message) = match response.json::<ErrorBody>().await {
        // An option the server refused (a preset's name, a clip it cannot make) names its flag.
        Ok(body) => match body.error.field {
            Some(field) if Options::is_field(&field) => (
                body.error.code,
                format!("{}: {}", options::flag(&field), body.error.message),
            ),
            _ => (body.error.code, body.error.message),
        },
        Err(_) => (String::new(), format!("the server answered {status}")),
    };
    Err(match status {
        401 => Failure::Auth(match code.as_str() {
            "invalid_credentials" => "wrong email or password".to_owned(),
            "missing_token" | "invalid_token" | "unknown_user" => {
                format!("{message}: run `mp3conv login`")
            }
            _ => message,
        }),
        404 => Failure::Usage(format!("not found: {message}")),
        400..=499 => Failure::Usage(message),
        _ => Failure::Unreachable(format!("the server is unavailable ({status}): {message}")),
    })
}

/// The body of a successful answer, as the contract's `T`.
async fn read<T: DeserializeOwned>(response: reqwest::Response) -> Result<T, Failure> {
    let body = response
        .bytes()
        .await
        .map_err(|err| Failure::Unreachable(format!("the answer broke off: {err}")))?;
    serde_json::from_slice(&body).map_err(|err| {
        Failure::Other(format!(
            "the server's answer is not what this client understands: {err}"
        ))
    })
}

fn describe(job: &PublicJob) -> String {
    let name = match &job.source {
        Source::Upload { filename, .. } => filename.as_str(),
        // A video page by its title, a link by itself.
        Source::Link { url, .. } => job.source.page_title().unwrap_or(url),
    };
    let mut line = format!(
        "{}  {:<11} {:>3}%  {name}",
        job.id,
        job.status.as_str(),
        job.progress
    );
    if let Some(error) = &job.error {
        line.push_str(&format!("  ({})", error.message));
    }
    if let (Status::Done, Some(at)) = (job.status, job.expires_at) {
        line.push_str(&format!("  (MP3 kept until {})", day_and_time(at)));
    }
    line
}

/// `at` as `2026-12-08 10:00 UTC`.
fn day_and_time(at: time::OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!(
        "{}-{:02}-{:02} {:02}:{:02} UTC",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute()
    )
}

/// Where track `number` of the MP3 at `mp3` is saved: beside it, as
/// `<mp3's stem> - NN - <title>.mp3`, made safe as a file name (the contract's rule). The stem
/// and the title are cut apart ([`STEM_BYTES`], [`TITLE_BYTES`]), so that the number always
/// stays: tracks never share a name, nor take the MP3's.
fn track_path(mp3: &Path, number: u32, title: &str) -> PathBuf {
    const STEM_BYTES: usize = 80;
    const TITLE_BYTES: usize = 100;
    let stem = mp3
        .file_stem()
        .map_or_else(|| "audio".into(), |s| s.to_string_lossy().into_owned());
    let stem = cut(&stem, STEM_BYTES);
    let title = file_stem(title);
    let title = cut(&title, TITLE_BYTES);
    let name = if title.is_empty() {
        format!("{stem} - {number:02}")
    } else {
        format!("{stem} - {number:02} - {title}")
    };
    mp3.with_file_name(file_name(&name, "mp3", "audio"))
}

/// `<original name>.mp3` in the current directory.
fn default_output(job: &PublicJob) -> PathBuf {
    // The file's name without its extension, or a video page's whole title (its dots and
    // slashes are text, which `file_name` makes safe).
    PathBuf::from(file_name(&job.source.title(), "mp3", "audio"))
}

/// The password: from stdin (one line), or prompted without echo (twice when `confirm`).
fn password(from_stdin: bool, confirm: bool) -> Result<String, Failure> {
    let password = if from_stdin {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        text.lines().next().unwrap_or_default().to_owned()
    } else {
        if !std::io::stdin().is_terminal() {
            return Err(Failure::Usage(
                "no terminal to ask for the password: use --password-stdin".into(),
            ));
        }
        let first = rpassword::prompt_password("password: ")?;
        if confirm && rpassword::prompt_password("again: ")? != first {
            return Err(Failure::Usage("the passwords differ".into()));
        }
        first
    };
    if password.is_empty() {
        return Err(Failure::Usage("the password is empty".into()));
    }
    Ok(password)
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A progress bar on a terminal; otherwise a plain line at every quarter.
#[derive(Clone)]
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    what: &'static str,
    total: u64,
    done: std::sync::Arc<std::sync::atomic::AtomicU64>,
    started: Instant,
}

impl Progress {
    fn new(terminal: bool, what: &'static str, total: u64) -> Progress {
        let bar = terminal.then(|| {
            let bar = indicatif::ProgressBar::new(total);
            let style = if what == "convert" {
                "{msg:>8} [{bar:30}] {pos}%"
            } else {
                "{msg:>8} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}"
            };
            if let Ok(style) = indicatif::ProgressStyle::with_template(style) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_message(what);
            bar
        });
        Progress {
            bar,
            what,
            total,
            done: Default::default(),
            started: Instant::now(),
        }
    }

    fn advance(&self, amount: u64) {
        use std::sync::atomic::Ordering;
        if let Some(bar) = &self.bar {
            bar.inc(amount);
            return;
        }
        let before = self.done.fetch_add(amount, Ordering::Relaxed);
        let after = before + amount;
        if self.total == 0 {
            return;
        }
        let quarter = |n: u64| n.saturating_mul(4) / self.total;
        if quarter(after) > quarter(before) {
            let percent = after.saturating_mul(100) / self.total;
            if self.what == "convert" {
                eprintln!("convert: {percent}%");
            } else {
                let rate = after as f64 / 1e6 / self.started.elapsed().as_secs_f64().max(1e-3);
                eprintln!(
                    "{}: {percent}% ({:.1} of {:.1} MB, {rate:.1} MB/s)",
                    self.what,
                    after as f64 / 1e6,
                    self.total as f64 / 1e6
                );
            }
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_done_job_says_until_when_its_mp3_is_kept() {
        let mut job: PublicJob = mp3conv_contract::job::Job::new(
            "u".into(),
            Source::link("https://example.com/a.mp4"),
            Default::default(),
        )
        .into();
        job.status = Status::Done;
        job.expires_at = Some(time::OffsetDateTime::from_unix_timestamp(1_796_720_707).unwrap());
        assert!(
            describe(&job).ends_with("(MP3 kept until 2026-12-08 09:05 UTC)"),
            "{}",
            describe(&job)
        );
        job.status = Status::Expired;
        assert!(describe(&job).contains(" expired "));
        assert!(!describe(&job).contains("kept until"));
    }

    #[test]
    fn tracks_are_saved_beside_the_mp3_under_safe_names() {
        for (mp3, number, title, expected) in [
            ("out.mp3", 1, "Intro", "out - 01 - Intro.mp3"),
            (
                "/tmp/a/talk.mp3",
                12,
                "Q/A: why?",
                "/tmp/a/talk - 12 - Q_A_ why_.mp3",
            ),
            ("talk.mp3", 3, "../../etc", "talk - 03 - _.._etc.mp3"),
            ("talk.mp3", 4, "  ", "talk - 04.mp3"),
            ("talk.mp3", 5, "a\nb", "talk - 05 - ab.mp3"),
        ] {
            assert_eq!(
                track_path(Path::new(mp3), number, title),
                PathBuf::from(expected),
                "{title:?}"
            );
        }
        let long = track_path(Path::new("talk.mp3"), 6, &"word ".repeat(100));
        let name = long.to_str().unwrap();
        assert!(name.ends_with(" word.mp3") && name.len() <= 204, "{name}");
        // However long the MP3's name, each track keeps its number: no track overwrites
        // another, or the MP3.
        let mp3 = format!("{}.mp3", "長".repeat(67));
        let paths: Vec<PathBuf> = (1..=3)
            .map(|n| track_path(Path::new(&mp3), n, &"題".repeat(80)))
            .collect();
        for (n, path) in paths.iter().enumerate() {
            let name = path.to_str().unwrap();
            assert!(name.contains(&format!(" - 0{} - ", n + 1)), "{name}");
            assert!(name.len() <= 204 && name != mp3, "{name}");
        }
    }
}
