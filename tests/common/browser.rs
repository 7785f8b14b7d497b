//! A headless Chromium driven over WebDriver, for tests of the web app: [`Browser::start`] runs
//! chromedriver (`/usr/bin/chromedriver`, Debian's `chromium-driver`; `scripts/services.sh`
//! installs it) on a port of its own choosing and opens a session with a throwaway profile and
//! download directory, and the methods wait for conditions (never for a fixed time) and panic
//! with what they waited for and where the page was.
//!
//! Downloads: Chromium in `--headless=new` saves them without asking into the profile's
//! `download.default_directory` pref; no CDP `Browser.setDownloadBehavior` is needed.
//! Console: `goog:loggingPrefs` `{browser: ALL}` plus chromedriver's `/se/log` endpoint
//! ([`Browser::console`]).
//!
//! Overrides: `MP3CONV_CHROMEDRIVER` and `MP3CONV_CHROMIUM` name other binaries.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::wd::{Capabilities, WebDriverCompatibleCommand};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use url::Url;

use super::{client, target_dir};

/// How long a wait lasts before the test fails, unless [`Browser::set_deadline`] says otherwise.
pub const DEADLINE: Duration = Duration::from_secs(30);
/// How often a wait checks its condition.
const POLL: Duration = Duration::from_millis(100);

/// A headless Chromium session and the chromedriver serving it. Dropping it (a failing test)
/// kills both and removes the profile and download directories; [`Browser::close`] ends the
/// session cleanly instead.
pub struct Browser {
    client: Option<Client>,
    deadline: Duration,
    driver: Driver,
    downloads: PathBuf,
    /// The profile (`profile/`), the downloads (`downloads/`) and chromedriver's log; declared
    /// after `driver` so it is removed once the browser is dead.
    work: tempfile::TempDir,
}

/// A console message of the page, as chromedriver reports it.
#[derive(Debug, Clone)]
pub struct ConsoleEntry {
    /// `SEVERE` (console.error, uncaught exceptions, failed loads), `WARNING`, `INFO`, `DEBUG`.
    pub level: String,
    /// `console-api`, `javascript`, `network`, ...
    pub source: String,
    pub message: String,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session (1280x900).
    pub async fn start() -> Browser {
        let chromedriver = binary("MP3CONV_CHROMEDRIVER", "/usr/bin/chromedriver");
        let chromium = binary("MP3CONV_CHROMIUM", "/usr/bin/chromium");
        let work = tempfile::Builder::new()
            .prefix("mp3conv-browser-")
            .tempdir()
            .expect("a temporary directory for the browser");
        let profile = work.path().join("profile");
        let downloads = work.path().join("downloads");
        for dir in [&profile, &downloads] {
            std::fs::create_dir(dir).expect("creating the browser's directories");
        }
        // chromedriver picks its port for IPv4, then binds the same one for IPv6; when another
        // process holds that one it exits without serving (seen once in a full run): a new
        // chromedriver picks a new port. Any other failure is reported at once.
        let mut attempt = 1;
        let mut driver = loop {
            let log = work.path().join(format!("chromedriver-{attempt}.log"));
            match Driver::start(&chromedriver, &log).await {
                Some(driver) => break driver,
                None if attempt < 3 => attempt += 1,
                None => panic!(
                    "{chromedriver} could not bind a port 3 times; see {}",
                    log.display()
                ),
            }
        };

        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    // Without these Chromium keeps calling home, which on an offline machine
                    // means a steady stream of failing connections.
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--disable-default-apps",
                    format!("--user-data-dir={}", profile.display()),
                    "--window-size=1280,900",
                ],
                "prefs": {
                    "download": {
                        "default_directory": downloads,
                        "prompt_for_download": false,
                        "directory_upgrade": true,
                    },
                },
            },
            "goog:loggingPrefs": { "browser": "ALL" },
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!("an object literal")
        };
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(Capabilities::from_iter(capabilities))
            .connect(&driver.url)
            .await
            .unwrap_or_else(|err| {
                panic!(
                    "chromedriver did not open a Chromium session ({chromium}): {err}\n{}",
                    driver.log()
                )
            });
        driver.browser = client
            .capabilities()
            .and_then(|capabilities| capabilities.get("goog:processID")?.as_i64())
            .and_then(|pid| i32::try_from(pid).ok())
            .and_then(rustix::process::Pid::from_raw);
        Browser {
            client: Some(client),
            deadline: DEADLINE,
            driver,
            downloads,
            work,
        }
    }

    /// The WebDriver client, for what the helpers here do not cover.
    pub fn client(&self) -> &Client {
        self.client.as_ref().expect("the session is open")
    }

    /// How long the waits below last from now on.
    pub fn set_deadline(&mut self, deadline: Duration) {
        self.deadline = deadline;
    }

    /// Opens `url` and returns once the page has loaded.
    pub async fn goto(&self, url: &str) {
        if let Err(err) = self.client().goto(url).await {
            panic!("opening {url}: {err}");
        }
    }

    /// The page's current URL.
    pub async fn url(&self) -> String {
        match self.client().current_url().await {
            Ok(url) => url.to_string(),
            Err(err) => format!("<no URL: {err}>"),
        }
    }

    /// The element `css` matches now (the first one); panics if there is none.
    pub async fn find(&self, css: &str) -> Element {
        match self.client().find(Locator::Css(css)).await {
            Ok(element) => element,
            Err(err) => panic!("no `{css}` on {}: {err}", self.url().await),
        }
    }

    /// Every element `css` matches now, in document order.
    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        match self.client().find_all(Locator::Css(css)).await {
            Ok(elements) => elements,
            Err(err) => panic!("finding `{css}` on {}: {err}", self.url().await),
        }
    }

    /// Waits until `css` matches an element (in the DOM; it may still be hidden) and returns it.
    pub async fn wait_for(&self, css: &str) -> Element {
        let started = Instant::now();
        loop {
            if let Ok(element) = self.client().find(Locator::Css(css)).await {
                return element;
            }
            self.tick(started, &format!("`{css}` to appear"), "").await;
        }
    }

    /// Waits until the element `css` matches shows `text` (a substring of its rendered text)
    /// and returns it.
    pub async fn wait_for_text(&self, css: &str, text: &str) -> Element {
        let started = Instant::now();
        let mut seen = None;
        loop {
            if let Ok(element) = self.client().find(Locator::Css(css)).await {
                match element.text().await {
                    Ok(now) if now.contains(text) => return element,
                    Ok(now) => seen = Some(now),
                    Err(_) => {} // replaced meanwhile: look it up again
                }
            }
            let last = match &seen {
                Some(seen) => format!("; it showed {seen:?}"),
                None => format!("; no `{css}` was there"),
            };
            self.tick(started, &format!("`{css}` to show {text:?}"), &last)
                .await;
        }
    }

    /// Waits until the JavaScript expression `condition` is truthy on the page; `what` says in
    /// words what that means, for the failure message.
    pub async fn wait_until(&self, condition: &str, what: &str) {
        let started = Instant::now();
        let script = format!("return Boolean({condition});");
        let mut failure = String::new();
        loop {
            // An error may be a navigation in between; a script that cannot run shows up in
            // the failure message.
            match self.client().execute(&script, Vec::new()).await {
                Ok(Value::Bool(true)) => return,
                Ok(_) => failure.clear(),
                Err(err) => failure = format!("; the last check failed: {err}"),
            }
            self.tick(started, &format!("{what} (`{condition}`)"), &failure)
                .await;
        }
    }

    /// Runs `body` as the body of a function on the page (so `return` what you want back) and
    /// returns its result as JSON.
    pub async fn eval(&self, body: &str) -> Value {
        match self.client().execute(body, Vec::new()).await {
            Ok(value) => value,
            Err(err) => panic!("running `{body}` on {}: {err}", self.url().await),
        }
    }

    /// Waits for `css` and clicks it.
    pub async fn click(&self, css: &str) {
        let element = self.wait_for(css).await;
        if let Err(err) = element.click().await {
            panic!("clicking `{css}` on {}: {err}", self.url().await);
        }
    }

    /// Waits for the field `css`, clears it and types `text` into it.
    pub async fn fill(&self, css: &str, text: &str) {
        let element = self.wait_for(css).await;
        if let Err(err) = element.clear().await {
            panic!("clearing `{css}` on {}: {err}", self.url().await);
        }
        if let Err(err) = element.send_keys(text).await {
            panic!("typing into `{css}` on {}: {err}", self.url().await);
        }
    }

    /// Picks `file` in the file input `css` (hidden inputs too), as a user choosing it would:
    /// the input's `change` event fires.
    pub async fn upload(&self, css: &str, file: &Path) {
        let file = std::path::absolute(file).expect("an absolute path");
        assert!(file.is_file(), "{} is not a file", file.display());
        let element = self.wait_for(css).await;
        let path = file.to_str().expect("a UTF-8 path");
        if let Err(err) = element.send_keys(path).await {
            panic!("choosing {path} in `{css}` on {}: {err}", self.url().await);
        }
    }

    /// Picks several files at once in the `multiple` file input `css`: `paths` are absolute
    /// paths, one per line, as chromedriver takes them.
    pub async fn upload_many(&self, css: &str, paths: &str) {
        let element = self.wait_for(css).await;
        if let Err(err) = element.send_keys(paths).await {
            panic!(
                "choosing {paths:?} in `{css}` on {}: {err}",
                self.url().await
            );
        }
    }

    /// Resizes the window (e.g. 390x844 for a phone).
    pub async fn set_window_size(&self, width: u32, height: u32) {
        if let Err(err) = self.client().set_window_size(width, height).await {
            panic!("resizing the window to {width}x{height}: {err}");
        }
    }

    /// Saves a PNG of the viewport as `<target>/web-artifacts/<name>.png` and returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = match self.client().screenshot().await {
            Ok(png) => png,
            Err(err) => panic!("screenshot {name} of {}: {err}", self.url().await),
        };
        let dir = target_dir().join("web-artifacts");
        std::fs::create_dir_all(&dir).expect("creating target/web-artifacts");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("writing the screenshot");
        path
    }

    /// Where the browser saves downloads (empty at the start).
    pub fn downloads_dir(&self) -> &Path {
        &self.downloads
    }

    /// Waits until a download named `name` (or, failing that, whose name ends with `name`) is
    /// complete in [`Browser::downloads_dir`] and returns its path. Chromium writes into
    /// `*.crdownload` and renames to the final name when done, so a match is a whole file.
    pub async fn wait_for_download(&self, name: &str) -> PathBuf {
        let started = Instant::now();
        loop {
            let mut present = Vec::new();
            for entry in std::fs::read_dir(&self.downloads).expect("reading the downloads") {
                let file = entry.expect("a directory entry").file_name();
                present.push(file.to_string_lossy().into_owned());
            }
            let done = |file: &&String| !file.ends_with(".crdownload");
            let found = present
                .iter()
                .filter(done)
                .find(|file| *file == name)
                .or_else(|| {
                    present
                        .iter()
                        .filter(done)
                        .find(|file| file.ends_with(name))
                });
            if let Some(file) = found {
                return self.downloads.join(file);
            }
            self.tick(
                started,
                &format!("the download {name:?}"),
                &format!("; the download directory held {present:?}"),
            )
            .await;
        }
    }

    /// The page's console messages since the last call (chromedriver hands each out once).
    pub async fn console(&self) -> Vec<ConsoleEntry> {
        let log = match self
            .client()
            .issue_cmd(SessionCommand::new("se/log", json!({ "type": "browser" })))
            .await
        {
            Ok(log) => log,
            Err(err) => panic!("reading the browser's console: {err}"),
        };
        let field = |entry: &Value, key: &str| entry[key].as_str().unwrap_or_default().to_owned();
        log.as_array()
            .expect("a list of log entries")
            .iter()
            .map(|entry| ConsoleEntry {
                level: field(entry, "level"),
                source: field(entry, "source"),
                message: field(entry, "message"),
            })
            .collect()
    }

    /// The messages of the `SEVERE` console entries since the last [`Browser::console`] call:
    /// `console.error`, uncaught exceptions, failed loads (including a missing favicon).
    pub async fn console_errors(&self) -> Vec<String> {
        self.console()
            .await
            .into_iter()
            .filter(|entry| entry.level == "SEVERE")
            .map(|entry| entry.message)
            .collect()
    }

    /// Runs a Chrome DevTools Protocol command (`Network.emulateNetworkConditions`, ...) through
    /// chromedriver and returns its result.
    pub async fn cdp(&self, command: &str, params: Value) -> Value {
        let body = json!({ "cmd": command, "params": params });
        match self
            .client()
            .issue_cmd(SessionCommand::new("goog/cdp/execute", body))
            .await
        {
            Ok(result) => result,
            Err(err) => panic!("CDP {command}: {err}"),
        }
    }

    /// The memory Chromium holds: the proportional set size (PSS, so shared pages count once)
    /// of its main process and every process under it (renderers, the network service, ...).
    pub fn memory(&self) -> u64 {
        let root = self
            .driver
            .browser
            .expect("Chromium's process id")
            .as_raw_nonzero()
            .get();
        let mut parents = std::collections::HashMap::<i32, Vec<i32>>::new();
        for entry in std::fs::read_dir("/proc").expect("reading /proc").flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<i32>().ok())
            else {
                continue;
            };
            // The parent is the second field after the command's closing parenthesis.
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
            if let Some(ppid) = after.split_whitespace().nth(1).and_then(|p| p.parse().ok()) {
                parents.entry(ppid).or_default().push(pid);
            }
        }
        let mut total = 0;
        let mut pending = vec![root];
        while let Some(pid) = pending.pop() {
            let rollup =
                std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
            total += rollup
                .lines()
                .find_map(|line| line.strip_prefix("Pss:"))
                .and_then(|kb| kb.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
                .map_or(0, |kb| kb * 1024);
            pending.extend(parents.remove(&pid).unwrap_or_default());
        }
        total
    }

    /// Ends the session (Chromium quits), then stops chromedriver.
    pub async fn close(mut self) {
        if let Some(client) = self.client.take()
            && let Err(err) = client.close().await
        {
            panic!("closing the browser session: {err}");
        }
        self.driver.browser = None;
        let _ = self.driver.child.kill().await;
    }

    /// One poll of a wait: sleeps, or fails the test once the deadline has passed.
    async fn tick(&self, started: Instant, waiting_for: &str, last: &str) {
        if started.elapsed() >= self.deadline {
            panic!(
                "waited {:?} for {waiting_for} on {}{last}",
                self.deadline,
                self.url().await
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// `binary` unless the environment variable `var` names another; panics if it is missing.
fn binary(var: &str, default: &str) -> String {
    let path = std::env::var(var).unwrap_or_else(|_| default.to_owned());
    assert!(
        Path::new(&path).is_file(),
        "{path} is missing: run scripts/services.sh (it installs chromium and chromium-driver) \
         or set {var}"
    );
    path
}

/// A chromedriver process, and the Chromium it started for the session. Both stay in the test's
/// process group, so a Ctrl-C in the terminal ends them too; dropping this kills Chromium (its
/// helper processes follow it) and chromedriver, which would not end its browser if killed
/// alone.
struct Driver {
    child: Child,
    url: String,
    log: PathBuf,
    /// The browser's main process while the session is open (`goog:processID`).
    browser: Option<rustix::process::Pid>,
}

impl Driver {
    /// Runs chromedriver on a free port (`--port=0`; it prints the one it took) and waits until
    /// its `/status` says it is ready for sessions.
    /// `None` if it exited before taking a port because the port was in use.
    async fn start(chromedriver: &str, log: &Path) -> Option<Driver> {
        let stderr = std::fs::File::create(log).expect("creating chromedriver's log");
        let mut child = Command::new(chromedriver)
            .arg("--port=0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|err| panic!("cannot run {chromedriver}: {err}"));
        let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let read_port = async {
            while let Some(line) = lines.next_line().await.ok().flatten() {
                if let Some(rest) = line.split("started successfully on port ").nth(1) {
                    return rest.trim_end_matches('.').parse::<u16>().ok();
                }
            }
            None
        };
        let port = tokio::time::timeout(DEADLINE, read_port).await;
        let mut driver = Driver {
            child,
            url: String::new(),
            log: log.to_owned(),
            browser: None,
        };
        if matches!(port, Ok(None)) && driver.log().contains("Address already in use") {
            return None;
        }
        let Ok(Some(port)) = port else {
            panic!(
                "{chromedriver} did not report its port within {DEADLINE:?}\n{}",
                driver.log()
            );
        };
        // The rest of its stdout, read so that it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        driver.url = format!("http://127.0.0.1:{port}/");

        let status = format!("{}status", driver.url);
        let http = client();
        let started = Instant::now();
        loop {
            let ready = match http.get(&status).send().await {
                Ok(answer) => answer.json::<Value>().await.ok(),
                Err(_) => None,
            };
            if ready.is_some_and(|ready| ready["value"]["ready"] == true) {
                return Some(driver);
            }
            if let Ok(Some(exit)) = driver.child.try_wait() {
                panic!(
                    "chromedriver exited ({exit}) before it was ready\n{}",
                    driver.log()
                );
            }
            if started.elapsed() >= DEADLINE {
                panic!(
                    "chromedriver was not ready within {DEADLINE:?}\n{}",
                    driver.log()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Chromedriver's log so far, for failure messages.
    fn log(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!(
            "chromedriver log ({}):\n{}",
            self.log.display(),
            tail.join("\n")
        )
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(browser) = self.browser.take() {
            // Gone already is fine; chromedriver itself goes by `kill_on_drop`.
            let _ = rustix::process::kill_process(browser, rustix::process::Signal::KILL);
        }
    }
}

/// A POST to `/session/{id}/<path>` that fantoccini has no method for.
#[derive(Debug)]
struct SessionCommand {
    path: &'static str,
    body: Value,
}

impl SessionCommand {
    fn new(path: &'static str, body: Value) -> SessionCommand {
        SessionCommand { path, body }
    }
}

impl WebDriverCompatibleCommand for SessionCommand {
    fn endpoint(&self, base: &Url, session: Option<&str>) -> Result<Url, url::ParseError> {
        base.join(&format!(
            "session/{}/{}",
            session.unwrap_or_default(),
            self.path
        ))
    }

    fn method_and_body(&self, _: &Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(self.body.to_string()))
    }
}
