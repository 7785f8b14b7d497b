//! Video pages: links that answer with a web page rather than media, resolved with yt-dlp
//! (issue #17).
//!
//! yt-dlp makes its own connections, which the worker's guarded resolver does not see. So it
//! runs with `--proxy` pointed at a [`GuardedProxy`] of its own, started for the one run: every
//! host it asks for (the page, each redirect, the site's API) is resolved there and reached
//! only at an address the links' rules permit; its plain-http requests and https tunnels are
//! all it can send. It runs with an empty environment (`NO_PROXY` or `HTTPS_PROXY` would
//! bypass or replace the proxy; nothing else of the worker's is its business), its own
//! temporary directory for working directory and home, no configuration files, plugins,
//! cache or cookies, and limits on CPU time, memory and file size; it is killed at the
//! resolution's time limit. It only reads the page (`-J`): the media it names is downloaded by
//! the worker, through the same guard as any link, and is never resolved as a page again.
//!
//! The format asked for is the best audio-only one the site offers over plain http(s) (no
//! video bytes fetched for nothing), else the best single file with audio; media offered only
//! as segments (HLS, DASH) is refused as unsupported.

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use mp3conv_contract::job::VideoPage;
use serde::Deserialize;
use tokio::io::AsyncReadExt;
use tokio::process::Command;
use tokio::sync::Semaphore;
use url::Url;

use crate::config::PagesConfig;
use crate::fetch::{FetchError, Guard, on_site, site};
use crate::proxy::GuardedProxy;

/// The formats asked of yt-dlp: audio only, else a whole file, over plain http(s) only.
const FORMAT: &str = "ba[protocol~='^https?$']/b[protocol~='^https?$']";
/// Most bytes of yt-dlp's answer read (a video site's JSON, with all its formats, is a few
/// hundred KiB) and of its diagnostics kept.
const MAX_JSON_BYTES: usize = 16 * 1024 * 1024;
const MAX_STDERR_BYTES: usize = 64 * 1024;
/// Longest yt-dlp waits on one socket.
const SOCKET_TIMEOUT_SECONDS: u64 = 15;
/// The address space one yt-dlp run (a Python interpreter) may use: a page read takes about
/// 70 MB and runs in 256 MiB; a page built to blow up (a 600 KB gzip bomb took 1.25 GB) dies
/// of it instead of the worker's container. `fetch.pages.concurrency` runs at once, so the
/// worker's memory limit must leave room for that many of these beside its conversions.
pub const MAX_ADDRESS_SPACE: u64 = 512 * 1024 * 1024;
/// The most it may write to a file (it has no business writing at all with `-J` and no cache).
const MAX_FILE_BYTES: u64 = 1024 * 1024;
/// The longest thumbnail URL kept.
const MAX_THUMBNAIL_URL_BYTES: usize = 2048;
/// The request headers of yt-dlp's answer passed on to the media's download: those a media
/// server may check (some want the page as `Referer`, or the browser's `User-Agent` the page
/// was read with). Never cookies or credentials.
pub(crate) const MEDIA_HEADERS: [&str; 5] = [
    "user-agent",
    "referer",
    "origin",
    "accept",
    "accept-language",
];

/// A page resolved to the media to download.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    /// What the job records of the page.
    pub page: VideoPage,
    /// The media's URL (http or https).
    pub media: Url,
    /// Headers the media's server expects ([`MEDIA_HEADERS`] only).
    pub headers: Vec<(String, String)>,
    /// The media's size, where the site says.
    pub size: Option<u64>,
    /// The page yt-dlp ended up reading (after redirects and refreshes), where it says.
    pub webpage: Option<Url>,
}

/// Runs yt-dlp for pages.
#[derive(Debug, Clone)]
pub struct Resolver {
    program: Option<PathBuf>,
    config: PagesConfig,
    allow: Vec<IpNet>,
    /// yt-dlp runs at once (`fetch.pages.concurrency`): each may take [`MAX_ADDRESS_SPACE`].
    runs: Arc<Semaphore>,
}

impl Resolver {
    /// A resolver with `config`; its proxy admits `allow` as the links' guard does. yt-dlp is
    /// looked up once, here: without it every page fails with a clear message.
    pub fn new(config: &PagesConfig, allow: Vec<IpNet>) -> Self {
        let program = locate(&config.ytdlp, std::env::var_os("PATH").as_deref());
        if program.is_none() {
            tracing::warn!(
                ytdlp = %config.ytdlp.display(),
                "yt-dlp not found: links to video pages will fail"
            );
        }
        Self {
            program,
            config: config.clone(),
            allow,
            runs: Arc::new(Semaphore::new(config.concurrency.max(1))),
        }
    }

    /// Whether the operator's site lists let `url`'s host be submitted.
    pub fn site_permitted(&self, url: &Url) -> Result<(), FetchError> {
        let host = url.host_str().unwrap_or_default();
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let listed = |sites: &[String]| {
            sites
                .iter()
                .filter_map(|s| site(s))
                .any(|site| on_site(&host, &site))
        };
        if listed(&self.config.deny_sites)
            || (!self.config.allow_sites.is_empty() && !listed(&self.config.allow_sites))
        {
            return Err(FetchError::SiteNotAllowed(host));
        }
        Ok(())
    }

    /// Resolves the page at `url` within `limit` (the resolution's own time limit applies
    /// too), refusing media longer than the operator's maximum.
    pub async fn resolve(&self, url: &Url, limit: Duration) -> Result<Resolved, FetchError> {
        let program = self.program.as_deref().ok_or(FetchError::NoResolver)?;
        let waited = Instant::now();
        let _run = tokio::time::timeout(limit, self.runs.acquire())
            .await
            .map_err(|_| FetchError::TooSlow("no page resolver was free in time".into()))?
            .expect("never closed");
        let limit = limit.saturating_sub(waited.elapsed());
        let guard = Guard::new(self.allow.clone()).denying(&self.config.deny_sites);
        let proxy = GuardedProxy::guarding(guard)
            .await
            .map_err(|e| FetchError::Resolver(format!("cannot start its proxy: {e}")))?;
        let home = tempfile::tempdir()
            .map_err(|e| FetchError::Resolver(format!("no temporary directory: {e}")))?;
        let limit = limit.min(self.config.timeout);
        let mut command = Command::new(program);
        // No program to run either: its `PATH` is an empty directory (yt-dlp runs a JavaScript
        // runtime or PhantomJS for some sites when it finds one, and PhantomJS would not use
        // the proxy).
        let programs = home.path().join("no-programs");
        std::fs::create_dir(&programs)
            .map_err(|e| FetchError::Resolver(format!("no temporary directory: {e}")))?;
        command
            .env_clear()
            .env("PATH", &programs)
            .env("HOME", home.path())
            .env("LANG", "C.UTF-8")
            .current_dir(home.path())
            .args(arguments(&proxy.url(), url))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        limit_resources(&mut command, limit);
        let mut child = crate::child::spawn(command)
            .await
            .map_err(|e| FetchError::Resolver(format!("cannot run yt-dlp: {e}")))?;
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        let run = async {
            // Both read to their ends (a pipe left full would stop yt-dlp where it is), the
            // answer's start and the diagnostics' end kept.
            let (out, err) = tokio::join!(
                drain(stdout, MAX_JSON_BYTES, Keep::Head),
                drain(stderr, MAX_STDERR_BYTES, Keep::Tail)
            );
            Ok::<_, io::Error>((child.wait().await?, out?, err?.0))
        };
        let (status, (out, overflowed), err) = tokio::time::timeout(limit, run)
            .await
            .map_err(|_| {
                FetchError::TooSlow(format!(
                    "the page could not be resolved within {}s",
                    limit.as_secs()
                ))
            })?
            .map_err(|e| FetchError::Resolver(format!("yt-dlp: {e}")))?;
        let refusals = proxy.forbidden();
        let err = String::from_utf8_lossy(&err);
        if !status.success() {
            return Err(failure(&err, &refusals, status.code()));
        }
        if overflowed {
            return Err(FetchError::PageFailed(format!(
                "its description is larger than {} MiB",
                MAX_JSON_BYTES >> 20
            )));
        }
        let resolved = answer(&out)?;
        // A link that led elsewhere (a short link, a refresh) is held to the site lists where
        // it arrived too.
        if let Some(webpage) = &resolved.webpage {
            self.site_permitted(webpage)?;
        }
        if let Some(duration) = resolved.page.duration
            && duration > self.config.max_duration.as_secs_f64()
        {
            return Err(FetchError::TooLong {
                seconds: duration,
                max: self.config.max_duration.as_secs(),
            });
        }
        Ok(resolved)
    }
}

/// Which part of a stream [`drain`] keeps.
#[derive(Clone, Copy)]
enum Keep {
    Head,
    Tail,
}

/// Reads `reader` to its end, keeping its first or last `max` bytes; says whether there was
/// more.
async fn drain(
    mut reader: impl tokio::io::AsyncRead + Unpin,
    max: usize,
    keep: Keep,
) -> io::Result<(Vec<u8>, bool)> {
    let (mut kept, mut more) = (Vec::new(), false);
    let mut buffer = vec![0; 64 * 1024];
    loop {
        let read = reader.read(&mut buffer).await?;
        if read == 0 {
            return Ok((kept, more));
        }
        kept.extend_from_slice(&buffer[..read]);
        if kept.len() > max {
            more = true;
            match keep {
                Keep::Head => kept.truncate(max),
                Keep::Tail => {
                    kept.drain(..kept.len() - max);
                }
            }
        }
    }
}

/// Where `program` is: itself when it names a path, else the first match on `path` (the
/// worker's `PATH`; yt-dlp's own is not the worker's).
fn locate(program: &Path, path: Option<&std::ffi::OsStr>) -> Option<PathBuf> {
    if program.components().count() > 1 {
        return is_executable(program).then(|| program.to_owned());
    }
    std::env::split_paths(path?)
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// yt-dlp's command line: read the page only, through `proxy`, nothing from the environment.
fn arguments(proxy: &str, url: &Url) -> Vec<OsString> {
    let socket_timeout = SOCKET_TIMEOUT_SECONDS.to_string();
    [
        "--ignore-config",
        "--no-plugin-dirs",
        "--no-cache-dir",
        "--no-playlist",
        "--flat-playlist",
        "--proxy",
        proxy,
        "--socket-timeout",
        &socket_timeout,
        "--format",
        FORMAT,
        "--dump-single-json",
        "--",
        url.as_str(),
    ]
    .into_iter()
    .map(OsString::from)
    .collect()
}

/// CPU seconds as the time limit (a loop in an extractor ends even if the clock is not
/// watched), bounded memory, no file larger than [`MAX_FILE_BYTES`] (and no core dump).
fn limit_resources(command: &mut Command, limit: Duration) {
    crate::child::limit(
        command,
        crate::child::Limits {
            cpu_seconds: Some(limit.as_secs().max(1)),
            address_space: Some(MAX_ADDRESS_SPACE),
            file_bytes: Some(MAX_FILE_BYTES),
        },
    );
}

/// The part of yt-dlp's JSON answer read.
#[derive(Debug, Deserialize)]
struct Answer {
    #[serde(rename = "_type")]
    kind: Option<String>,
    title: Option<String>,
    extractor_key: Option<String>,
    uploader: Option<String>,
    channel: Option<String>,
    artist: Option<String>,
    creator: Option<String>,
    duration: Option<f64>,
    thumbnail: Option<String>,
    webpage_url: Option<String>,
    url: Option<String>,
    #[serde(default)]
    http_headers: std::collections::BTreeMap<String, serde_json::Value>,
    filesize: Option<f64>,
    filesize_approx: Option<f64>,
    live_status: Option<String>,
    is_live: Option<bool>,
    playlist_count: Option<u64>,
    /// Only counted: each entry is skipped, not built.
    #[serde(default)]
    entries: Vec<serde::de::IgnoredAny>,
}

/// Reads yt-dlp's answer for a page.
fn answer(out: &[u8]) -> Result<Resolved, FetchError> {
    let answer: Answer = match serde_json::from_slice::<Option<Answer>>(out) {
        Ok(Some(answer)) => answer,
        Ok(None) => return Err(no_media()),
        // What yt-dlp made of the page: the page's doing, not a fault to retry.
        Err(e) => {
            return Err(FetchError::PageFailed(format!(
                "its description cannot be read ({e})"
            )));
        }
    };
    if matches!(answer.kind.as_deref(), Some("playlist" | "multi_video")) {
        let count = answer.playlist_count.unwrap_or(answer.entries.len() as u64);
        return Err(FetchError::Playlist(count));
    }
    if answer.is_live == Some(true)
        || matches!(
            answer.live_status.as_deref(),
            Some("is_live" | "is_upcoming" | "post_live")
        )
    {
        return Err(FetchError::Live);
    }
    let media = answer
        .url
        .as_deref()
        .and_then(|u| Url::parse(u).ok())
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
        .ok_or_else(no_media)?;
    let title = answer.title.as_deref().map(|title| {
        // The HTML5 embed extractor numbers each media of a page: "Talk (1)".
        if answer.extractor_key.as_deref() == Some("HTML5MediaEmbed") {
            strip_number(title)
        } else {
            title
        }
    });
    let uploader = [
        &answer.uploader,
        &answer.channel,
        &answer.artist,
        &answer.creator,
    ]
    .into_iter()
    .find_map(|v| v.as_deref().and_then(VideoPage::text));
    let headers = answer
        .http_headers
        .iter()
        .filter(|(name, _)| MEDIA_HEADERS.contains(&name.to_ascii_lowercase().as_str()))
        .filter_map(|(name, value)| Some((name.to_ascii_lowercase(), value.as_str()?.to_owned())))
        .filter(|(_, value)| http::HeaderValue::from_str(value).is_ok())
        .collect();
    let size = [answer.filesize, answer.filesize_approx]
        .into_iter()
        .flatten()
        .find(|s| s.is_finite() && *s >= 0.0)
        .map(|s| s as u64);
    Ok(Resolved {
        page: VideoPage {
            title: title.and_then(VideoPage::text),
            uploader,
            duration: answer.duration.filter(|d| d.is_finite() && *d >= 0.0),
            thumbnail: answer
                .thumbnail
                .as_deref()
                .filter(|t| t.len() <= MAX_THUMBNAIL_URL_BYTES)
                .and_then(|t| Url::parse(t).ok())
                .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
                .map(String::from),
        },
        media,
        headers,
        size,
        webpage: answer
            .webpage_url
            .as_deref()
            .and_then(|u| Url::parse(u).ok()),
    })
}

/// `title` without a trailing ` (N)`.
fn strip_number(title: &str) -> &str {
    title
        .strip_suffix(')')
        .and_then(|rest| rest.rsplit_once(" ("))
        .filter(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        .map_or(title, |(stem, _)| stem)
}

fn no_media() -> FetchError {
    FetchError::NoMedia
}

/// Why a yt-dlp run failed, from its diagnostics and the proxy's refusals. Only failures of
/// the network are retried: everything else is the page's doing and would fail again.
fn failure(stderr: &str, refusals: &[String], code: Option<i32>) -> FetchError {
    if let Some(refusal) = refusals.first() {
        return FetchError::Forbidden(refusal.clone());
    }
    let error = stderr
        .lines()
        .rev()
        .find_map(|line| line.strip_prefix("ERROR: "))
        .unwrap_or_default();
    let error = reason(error);
    let lower = error.to_ascii_lowercase();
    let said: String = error.chars().take(300).collect();
    if code.is_none() {
        // Killed by its CPU limit.
        return FetchError::TooSlow(
            "reading the page took more than its share of the server's time".into(),
        );
    }
    if said.is_empty() {
        // Out of memory (a page built to blow up), or a crash: nothing to retry.
        return FetchError::PageFailed("it is too large or too broken to read".into());
    }
    if lower.starts_with("unsupported url") {
        return FetchError::NoMedia;
    }
    if let Some(status) = http_status(&lower) {
        return match status {
            404 | 410 => FetchError::NotFound(status),
            // A redirect yt-dlp would not follow (to `file:`, say) is no network failure.
            300..=399 => FetchError::PageFailed(said),
            _ => FetchError::Status(status),
        };
    }
    if is_sign_in(&lower) {
        return FetchError::SignIn;
    }
    if lower.contains("requested format is not available")
        || lower.contains("drm protected")
        || lower.contains("drm-protected")
    {
        return FetchError::Unsupported;
    }
    let network = [
        "timed out",
        "connection refused",
        "connection reset",
        "temporary failure in name resolution",
        "name or service not known",
        "network is unreachable",
        "remote end closed connection",
        "tunnel connection failed",
    ];
    if network.iter().any(|n| lower.contains(n)) && !lower.contains("certificate") {
        return FetchError::Network(said);
    }
    FetchError::PageFailed(said)
}

/// yt-dlp's sentence without what precedes it: `[extractor] <id>: `. The id is the page's to
/// choose (the generic extractor takes the URL's last segment), so none of it may steer the
/// reading of the error.
fn reason(error: &str) -> &str {
    let Some(rest) = error.strip_prefix('[') else {
        return error.trim();
    };
    let Some((_, rest)) = rest.split_once("] ") else {
        return error.trim();
    };
    // "<id>: <sentence>": the id up to the first ": " (an id that holds one can only cut its
    // own text short).
    rest.split_once(": ")
        .map_or(rest, |(_, sentence)| sentence)
        .trim()
}

/// Words sites use when they want a signed-in user, or a human, before they show the video.
fn is_sign_in(error: &str) -> bool {
    [
        "sign in",
        "log in",
        "login",
        "registered users",
        "--cookies",
        "private video",
        "members-only",
        "members only",
        "age-restricted",
        "age restricted",
        "confirm your age",
        "captcha",
        "not a bot",
    ]
    .iter()
    .any(|words| error.contains(words))
}

/// The status of an "HTTP Error 403: Forbidden" in `error`.
fn http_status(error: &str) -> Option<u16> {
    let (_, rest) = error.split_once("http error ")?;
    rest.get(..3)?
        .parse()
        .ok()
        .filter(|s| (300..600).contains(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> PagesConfig {
        PagesConfig::default()
    }

    #[test]
    fn sites_are_matched_by_host_and_subdomain() {
        let mut config = config();
        config.deny_sites = vec!["Bad.example".into()];
        let resolver = Resolver::new(&config, Vec::new());
        let check = |u: &str| resolver.site_permitted(&Url::parse(u).unwrap()).is_ok();
        assert!(!check("https://bad.example/v"));
        assert!(!check("https://www.BAD.example./v"));
        assert!(check("https://notbad.example/v"));
        assert!(check("https://bad.example.org/v"));
        config.allow_sites = vec!["videos.test".into()];
        config.deny_sites = vec!["private.videos.test".into()];
        let resolver = Resolver::new(&config, Vec::new());
        let check = |u: &str| resolver.site_permitted(&Url::parse(u).unwrap()).is_ok();
        assert!(check("http://videos.test/a"));
        assert!(check("http://cdn.videos.test/a"));
        assert!(!check("http://private.videos.test/a"));
        assert!(!check("http://elsewhere.test/a"));
        let refused = resolver
            .site_permitted(&Url::parse("http://elsewhere.test/a").unwrap())
            .unwrap_err();
        assert_eq!(refused.code(), "link_site_not_allowed");
        assert!(refused.to_string().contains("elsewhere.test"), "{refused}");
    }

    #[test]
    fn programs_are_found_on_the_workers_path() {
        let dir = tempfile::tempdir().unwrap();
        let tool = dir.path().join("tool");
        std::fs::write(&tool, "#!/bin/sh\n").unwrap();
        let path = std::env::join_paths(["/nonexistent", dir.path().to_str().unwrap()]).unwrap();
        assert_eq!(
            locate(Path::new("tool"), Some(&path)),
            None,
            "not executable"
        );
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(locate(Path::new("tool"), Some(&path)), Some(tool.clone()));
        assert_eq!(locate(&tool, None), Some(tool.clone()));
        assert_eq!(locate(Path::new("missing"), Some(&path)), None);
        assert_eq!(locate(Path::new("tool"), None), None);
    }

    #[test]
    fn the_command_line_reads_only_through_the_proxy() {
        let url = Url::parse("https://videos.test/watch?v=-x").unwrap();
        let args: Vec<String> = arguments("http://127.0.0.1:9/", &url)
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        for flag in [
            "--ignore-config",
            "--no-plugin-dirs",
            "--no-cache-dir",
            "--dump-single-json",
        ] {
            assert!(args.iter().any(|a| a == flag), "{flag}");
        }
        let at = |flag: &str| &args[args.iter().position(|a| a == flag).unwrap() + 1];
        assert_eq!(at("--proxy"), "http://127.0.0.1:9/");
        assert_eq!(at("--format"), FORMAT);
        // The URL last, after `--`: a link cannot pass itself off as an option.
        assert_eq!(
            args[args.len() - 2..],
            ["--", "https://videos.test/watch?v=-x"]
        );
    }

    #[test]
    fn an_html5_page_gives_its_title_media_and_headers() {
        let json =
            br#"{"_type": "video", "title": "A Talk (1)", "extractor_key": "HTML5MediaEmbed",
            "uploader": null, "duration": null, "url": "http://videos.test/clip.mp4",
            "protocol": "http", "filesize": 1234,
            "http_headers": {"User-Agent": "UA", "Referer": "http://videos.test/",
                "Cookie": "session=1", "Authorization": "Bearer x", "Accept": "bad\nvalue"}}"#;
        let resolved = answer(json).unwrap();
        assert_eq!(resolved.page.title.as_deref(), Some("A Talk"));
        assert_eq!(resolved.page.uploader, None);
        assert_eq!(resolved.page.duration, None);
        assert_eq!(resolved.media.as_str(), "http://videos.test/clip.mp4");
        assert_eq!(resolved.size, Some(1234));
        assert_eq!(
            resolved.headers,
            [
                ("referer".to_owned(), "http://videos.test/".to_owned()),
                ("user-agent".to_owned(), "UA".to_owned()),
            ]
        );
    }

    #[test]
    fn a_site_page_gives_uploader_and_duration() {
        let json = br#"{"title": "Keynote (2024)", "extractor_key": "Youtube",
            "channel": "Conf \u0007TV", "duration": 3600.5,
            "thumbnail": "https://i.videos.test/k.jpg",
            "url": "https://cdn.videos.test/a.m4a", "filesize_approx": 5e7}"#;
        let resolved = answer(json).unwrap();
        // Only the HTML5 embed's numbering is taken off.
        assert_eq!(resolved.page.title.as_deref(), Some("Keynote (2024)"));
        assert_eq!(resolved.page.uploader.as_deref(), Some("Conf TV"));
        assert_eq!(resolved.page.duration, Some(3600.5));
        assert_eq!(
            resolved.page.thumbnail.as_deref(),
            Some("https://i.videos.test/k.jpg")
        );
        for thumbnail in ["file:///etc/passwd", "data:image/png;base64,AA", "/k.jpg"] {
            let json = format!(r#"{{"url": "http://v.test/a", "thumbnail": "{thumbnail}"}}"#);
            assert_eq!(
                answer(json.as_bytes()).unwrap().page.thumbnail,
                None,
                "{thumbnail}"
            );
        }
        assert_eq!(resolved.size, Some(50_000_000));
    }

    #[test]
    fn pages_that_are_not_one_video_are_refused() {
        assert_eq!(answer(b"null").unwrap_err().code(), "link_not_media");
        let playlist = answer(br#"{"_type": "playlist", "entries": [{}, {}]}"#).unwrap_err();
        assert_eq!(playlist.code(), "link_playlist");
        assert!(playlist.to_string().contains("2 videos"), "{playlist}");
        for live in [r#"{"is_live": true}"#, r#"{"live_status": "is_upcoming"}"#] {
            let json = format!(r#"{{"url": "http://v.test/a", {}"#, &live[1..]);
            assert_eq!(
                answer(json.as_bytes()).unwrap_err().code(),
                "link_live",
                "{json}"
            );
        }
        for url in [
            "file:///etc/passwd",
            "data:video/mp4;base64,AAAA",
            "/relative",
            "javascript:alert(1)",
        ] {
            let json = format!(r#"{{"url": "{url}"}}"#);
            assert_eq!(
                answer(json.as_bytes()).unwrap_err().code(),
                "link_not_media",
                "{url}"
            );
        }
        // What yt-dlp made of the page is the page's doing: not retried.
        let unreadable = answer(b"{not json").unwrap_err();
        assert_eq!(unreadable.code(), "link_page_failed");
        assert!(unreadable.is_permanent());
    }

    #[test]
    fn failures_are_told_apart() {
        let code = |stderr: &str| failure(stderr, &[], Some(1)).code();
        assert_eq!(
            code("WARNING: [generic] Falling back\nERROR: Unsupported URL: http://x.test/"),
            "link_not_media"
        );
        for sign_in in [
            "ERROR: [youtube] abc: Sign in to confirm you're not a bot. Use --cookies-from-browser",
            "ERROR: [vimeo] 1: This video is only available for registered users",
            "ERROR: [youtube] abc: Private video. Sign in if you've been granted access",
            "ERROR: [x] 1: This video is age-restricted",
        ] {
            assert_eq!(code(sign_in), "link_sign_in", "{sign_in}");
        }
        assert_eq!(
            code("ERROR: [generic] x: Requested format is not available. Use --list-formats"),
            "link_unsupported"
        );
        assert_eq!(
            code("ERROR: [generic] Unable to download webpage: HTTP Error 404: Not Found"),
            "link_not_found"
        );
        assert_eq!(
            code("ERROR: [generic] Unable to download webpage: HTTP Error 503: Unavailable"),
            "link_failed"
        );
        let timeout = failure(
            "ERROR: [generic] Unable to download webpage: The read operation timed out",
            &[],
            Some(1),
        );
        assert_eq!(timeout.code(), "link_unreachable");
        assert!(!timeout.is_permanent());
        let refused = failure(
            "ERROR: Unable to download webpage: HTTP Error 403: Forbidden",
            &["links may not reach 127.0.0.1".into()],
            Some(1),
        );
        assert_eq!(refused.code(), "link_forbidden");
        assert!(refused.to_string().contains("127.0.0.1"), "{refused}");
        assert_eq!(failure("", &[], None).code(), "link_too_slow");
        let odd = failure("ERROR: [site] 1: Something odd\n", &[], Some(1));
        assert_eq!(odd.code(), "link_page_failed");
        assert!(odd.to_string().contains("Something odd"), "{odd}");
        assert!(!odd.to_string().contains("[site]"), "{odd}");
    }

    #[test]
    fn the_page_cannot_steer_the_reading_of_its_failure() {
        let code = |stderr: &str| failure(stderr, &[], Some(1)).code();
        // The id (the URL's last segment, the page's to choose) is not read.
        assert_eq!(
            code(
                "ERROR: [generic] timed out: Unable to download webpage: HTTP Error 404: Not Found"
            ),
            "link_not_found"
        );
        assert_eq!(
            code("ERROR: [generic] login: Unable to download webpage: HTTP Error 404: Not Found"),
            "link_not_found"
        );
        assert_eq!(
            code("ERROR: [generic] drm: Something odd"),
            "link_page_failed"
        );
        // A redirect to `file:` that yt-dlp would not follow is no network failure.
        let redirect = failure(
            "ERROR: [generic] file: Unable to download webpage: HTTP Error 302: Found",
            &[],
            Some(1),
        );
        assert_eq!(redirect.code(), "link_page_failed");
        assert!(redirect.is_permanent());
        // Out of memory: an empty error, the page's doing.
        let blown = failure("ERROR: \n", &[], Some(1));
        assert_eq!(blown.code(), "link_page_failed");
        assert!(blown.is_permanent());
        let certificate = failure(
            "ERROR: [generic] x: Unable to download webpage: <urlopen error [SSL: \
             CERTIFICATE_VERIFY_FAILED] certificate verify failed (_ssl.c:1006)> timed out",
            &[],
            Some(1),
        );
        assert!(certificate.is_permanent(), "{certificate:?}");
    }

    #[tokio::test]
    async fn streams_are_read_to_their_end_keeping_a_bounded_part() {
        let text = b"0123456789".repeat(10_000);
        let (head, more) = drain(&text[..], 25, Keep::Head).await.unwrap();
        assert_eq!(
            (head.as_slice(), more),
            (&b"0123456789012345678901234"[..], true)
        );
        let (tail, more) = drain(&text[..], 5, Keep::Tail).await.unwrap();
        assert_eq!((tail.as_slice(), more), (&b"56789"[..], true));
        let (whole, more) = drain(&b"short"[..], 25, Keep::Tail).await.unwrap();
        assert_eq!((whole.as_slice(), more), (&b"short"[..], false));
    }

    #[test]
    fn sites_are_compared_in_their_ascii_form() {
        use crate::fetch::site;
        assert_eq!(
            site("Bücher.Example.").as_deref(),
            Some("xn--bcher-kva.example")
        );
        assert_eq!(site(" youtube.com ").as_deref(), Some("youtube.com"));
        for bad in [
            "",
            "..",
            "http://x.test/",
            "x.test/path",
            "user@x.test",
            "127.0.0.1",
            "[::1]",
        ] {
            assert_eq!(site(bad), None, "{bad}");
        }
        let mut config = config();
        config.deny_sites = vec!["bücher.example".into()];
        let resolver = Resolver::new(&config, Vec::new());
        let url = Url::parse("https://www.bücher.example/v").unwrap();
        assert_eq!(
            resolver.site_permitted(&url).unwrap_err().code(),
            "link_site_not_allowed"
        );
    }

    #[test]
    fn numbering_is_stripped_only_when_it_is_numbering() {
        assert_eq!(strip_number("Talk (1)"), "Talk");
        assert_eq!(strip_number("Talk (12)"), "Talk");
        assert_eq!(strip_number("Talk (live)"), "Talk (live)");
        assert_eq!(strip_number("(1)"), "(1)");
        assert_eq!(strip_number("Talk ()"), "Talk ()");
    }
}
