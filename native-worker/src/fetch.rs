//! Downloading videos from links, guarded against server-side request forgery.
//!
//! Every address a link's host resolves to, on the first request and on each redirect (at most
//! [`MAX_REDIRECTS`]), must be a public unicast address unless `fetch.allow` lists it:
//! loopback, private, shared (CGNAT), link-local (which holds the cloud metadata service
//! 169.254.169.254), unique-local, multicast and unspecified addresses are refused. The guard
//! sits in the DNS resolver, so the address checked is the address connected to.
//!
//! A link that answers with a web page is a video page: [`crate::page`] resolves it with
//! yt-dlp (behind the same address rules) to the media it shows, which is then downloaded as a
//! direct link is (and is never taken for a page in turn).
//!
//! A slow link must not hold the worker: downloads run in their own slots (`fetch.concurrency`,
//! apart from the conversion slots), end at `fetch.deadline`, and fail as `link_too_slow` when
//! a `fetch.rate_window` passes with less than `fetch.min_rate` bytes per second (a server
//! sending a byte now and then never trips the read timeout).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use ipnet::IpNet;
use mp3conv_contract::job::VideoPage;
use prometheus_client::metrics::counter::Counter;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE};
use reqwest::redirect;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use url::Url;

use crate::config::FetchConfig;
use crate::error::Error;
use crate::page::Resolver;
use crate::storage::BlobStore;

/// Most redirects followed for one link.
pub const MAX_REDIRECTS: usize = 5;
/// Largest video page image (thumbnail) fetched for a cover, and the time it may take.
pub const MAX_IMAGE_BYTES: u64 = 8 * 1024 * 1024;
const IMAGE_TIME: Duration = Duration::from_secs(10);

/// Why a link could not be downloaded.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Not an absolute http(s) URL with a host.
    #[error("{0}")]
    InvalidUrl(String),
    /// The link or a redirect points at an address links may not reach.
    #[error("{0}")]
    Forbidden(String),
    /// Too many redirects, or a redirect to something other than http(s).
    #[error("{0}")]
    Redirect(String),
    /// The server answered 404 or 410.
    #[error("the link answered {0}: there is no video there")]
    NotFound(u16),
    /// The server answered another error status.
    #[error("the link answered {0}")]
    Status(u16),
    /// The server sent a web page or other non-media content.
    #[error("the link serves {0}, not a video")]
    NotMedia(String),
    /// The video is larger than the limit.
    #[error("the video exceeds the limit of {0} bytes")]
    TooLarge(u64),
    /// Connecting or reading failed (timeouts included).
    #[error("the link could not be downloaded: {0}")]
    Network(String),
    /// The download passed its deadline or fell below the minimum rate.
    #[error("{0}")]
    TooSlow(String),
    /// Storing the download failed.
    #[error(transparent)]
    Store(Error),
    /// The operator's site lists refuse the link's host.
    #[error("links to {0} are not accepted here")]
    SiteNotAllowed(String),
    /// A video page, and no yt-dlp on this server to read it.
    #[error(
        "the link is a web page, and this server has no page resolver (yt-dlp) to find its video"
    )]
    NoResolver,
    /// yt-dlp could not be run, or gave an answer that cannot be read.
    #[error("the page resolver failed: {0}")]
    Resolver(String),
    /// A page with no media that can be found.
    #[error("the page holds no video or audio that mp3conv can find")]
    NoMedia,
    /// A page listing several videos.
    #[error("the link is a playlist of {0} videos; a job converts one video: link to one of them")]
    Playlist(u64),
    /// A live stream.
    #[error("the link is a live stream, which has no end to convert; try again once it is over")]
    Live,
    /// The site wants a signed-in user, or proof of a human, before it shows the video.
    #[error(
        "the site shows this video only to a signed-in user or after a check that you are not \
         a robot; mp3conv cannot sign in for you"
    )]
    SignIn,
    /// The media is offered only in segments (HLS, DASH) or with copy protection.
    #[error(
        "the site offers this video only as a stream of segments or with copy protection, \
         which mp3conv does not download"
    )]
    Unsupported,
    /// The media is longer than the operator allows.
    #[error("the video lasts {seconds:.0}s, longer than the limit of {max}s")]
    TooLong {
        /// Its length.
        seconds: f64,
        /// The limit (`fetch.pages.max_duration`).
        max: u64,
    },
    /// The page could not be read, for a reason yt-dlp gave.
    #[error("the page could not be read: {0}")]
    PageFailed(String),
}

impl FetchError {
    /// Stable code for the job's `error.code`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidUrl(_) => "invalid_url",
            Self::Forbidden(_) => "link_forbidden",
            Self::Redirect(_) => "link_redirect",
            Self::NotFound(_) => "link_not_found",
            Self::Status(_) => "link_failed",
            Self::NotMedia(_) => "link_not_media",
            Self::TooLarge(_) => "too_large",
            Self::Network(_) => "link_unreachable",
            Self::TooSlow(_) => "link_too_slow",
            Self::Store(_) => "storage_unavailable",
            Self::SiteNotAllowed(_) => "link_site_not_allowed",
            Self::NoMedia => "link_not_media",
            Self::NoResolver | Self::Resolver(_) => "link_resolver_failed",
            Self::Playlist(_) => "link_playlist",
            Self::Live => "link_live",
            Self::SignIn => "link_sign_in",
            Self::Unsupported => "link_unsupported",
            Self::TooLong { .. } => "link_too_long",
            Self::PageFailed(_) => "link_page_failed",
        }
    }

    /// Whether retrying cannot help. A link too slow is not retried either: another attempt
    /// would hold a download slot as long again.
    pub fn is_permanent(&self) -> bool {
        match self {
            Self::Status(status) => *status < 500 && *status != 429 && *status != 408,
            // The resolver missing or failing to start is this server's fault (another
            // converter, or this one later, may do better).
            Self::Network(_) | Self::Store(_) | Self::Resolver(_) | Self::NoResolver => false,
            _ => true,
        }
    }
}

/// A site as the lists hold it and hosts are compared with it: lower-case ASCII (an
/// internationalised name in its IDNA form), without dots at its ends; `None` when it is no
/// host name.
pub fn site(site: &str) -> Option<String> {
    let trimmed = site.trim().trim_matches('.');
    if trimmed.is_empty() || trimmed.contains(['/', ':', '@', '?', '#']) {
        return None;
    }
    let url = Url::parse(&format!("http://{trimmed}/")).ok()?;
    match url.host()? {
        url::Host::Domain(domain) => Some(domain.to_ascii_lowercase()),
        _ => None,
    }
}

/// Whether `host` (lower-case) is `site` or under it (`www.example.com` is on `example.com`).
pub(crate) fn on_site(host: &str, site: &str) -> bool {
    host == site
        || host
            .strip_suffix(site)
            .is_some_and(|rest| rest.ends_with('.'))
}

/// The refusal carried through reqwest's error chain.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Refused(pub(crate) String);

/// The address rules links obey: public unicast addresses, and those `allow` lists.
#[derive(Debug)]
pub(crate) struct Guard {
    allow: Vec<IpNet>,
    /// Sites (in [`site`] form) no connection may go to: the operator's `deny_sites`.
    deny: Vec<String>,
}

impl Guard {
    pub(crate) fn new(allow: Vec<IpNet>) -> Self {
        Self {
            allow,
            deny: Vec::new(),
        }
    }

    /// This guard, refusing also every host on one of `sites` (however it is reached: a
    /// redirect, a page's refresh or embed, its media).
    pub(crate) fn denying(mut self, sites: &[String]) -> Self {
        self.deny = sites.iter().filter_map(|s| site(s)).collect();
        self
    }

    /// The addresses `host` resolves to that links may reach; refused when there are none.
    pub(crate) async fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        let name = host.trim_end_matches('.').to_ascii_lowercase();
        if self.deny.iter().any(|site| on_site(&name, site)) {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                Refused(format!("links to {name} are not accepted here")),
            ));
        }
        let found: Vec<SocketAddr> = tokio::net::lookup_host((host, port)).await?.collect();
        let permitted: Vec<SocketAddr> = found
            .iter()
            .copied()
            .filter(|addr| self.permits(addr.ip()))
            .collect();
        if permitted.is_empty() {
            // The address a name has inside the network is not for the user to learn: the
            // name alone is said (an address given as such is said as given).
            if let Some(found) = found.first() {
                tracing::info!(host, address = %found.ip(), "refused a name of a private address");
            }
            let said = if host.parse::<IpAddr>().is_ok() {
                format!("links may not reach {host}")
            } else {
                format!("{host} is not a public address: links may not reach it")
            };
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                Refused(said),
            ));
        }
        Ok(permitted)
    }

    pub(crate) fn permits(&self, ip: IpAddr) -> bool {
        self.allow.iter().any(|net| net.contains(&ip)) || mp3conv_contract::address::is_public(ip)
    }

    fn check_literal(&self, url: &Url) -> Result<(), Refused> {
        let ip = match url.host() {
            Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip),
            Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip),
            Some(url::Host::Domain(_)) => return Ok(()),
            None => return Err(Refused("the link has no host".into())),
        };
        if self.permits(ip) {
            Ok(())
        } else {
            Err(Refused(format!("links may not reach {ip}")))
        }
    }
}

/// The resolver reqwest uses: refuses names that resolve only to forbidden addresses and drops
/// forbidden addresses from mixed answers.
struct GuardedResolver(Arc<Guard>);

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let guard = Arc::clone(&self.0);
        Box::pin(async move {
            let permitted = guard.resolve(name.as_str(), 0).await.map_err(|e| {
                // A refusal as itself, so that the fetch error finds it in the chain; a lookup
                // that failed as the I/O error it is.
                if e.get_ref().is_some_and(|inner| inner.is::<Refused>()) {
                    let inner = e.into_inner().expect("checked above");
                    inner.downcast::<Refused>().expect("checked above")
                        as Box<dyn std::error::Error + Send + Sync>
                } else {
                    Box::new(e)
                }
            })?;
            Ok(Box::new(permitted.into_iter()) as Addrs)
        })
    }
}

/// How fast a download must go.
#[derive(Debug, Clone, Copy)]
struct Pace {
    /// Bytes per second, averaged over `window`; 0: no minimum.
    min_rate: u64,
    window: Duration,
    /// For the whole download.
    limit: Duration,
}

/// Downloads links into a blob store.
#[derive(Clone)]
pub struct Fetcher {
    client: reqwest::Client,
    guard: Arc<Guard>,
    pages: Resolver,
    /// yt-dlp runs, counted.
    page_runs: Counter,
    /// Download slots, apart from the conversion slots.
    slots: Arc<Semaphore>,
    pace: Pace,
}

/// A link opened: its media's answer, waiting to be stored ([`Fetcher::store`]).
pub struct Opened {
    response: reqwest::Response,
    /// What the link's page said of the media, when the link was a video page.
    pub page: Option<VideoPage>,
    /// The download slot, held until the media is stored.
    _slot: OwnedSemaphorePermit,
    deadline: Instant,
}

impl Fetcher {
    /// A fetcher with the configured timeouts and allow-list, counting its yt-dlp runs in
    /// `page_runs`.
    pub fn new(config: &FetchConfig, page_runs: Counter) -> Result<Self, Error> {
        let guard = Arc::new(Guard::new(config.allow.clone()).denying(&config.pages.deny_sites));
        let redirect_guard = Arc::clone(&guard);
        let policy = redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() > MAX_REDIRECTS {
                return attempt.error(Refused(format!("more than {MAX_REDIRECTS} redirects")));
            }
            if !matches!(attempt.url().scheme(), "http" | "https") {
                let scheme = attempt.url().scheme().to_owned();
                return attempt.error(Refused(format!("redirect to a {scheme}: link")));
            }
            match redirect_guard.check_literal(attempt.url()) {
                Ok(()) => attempt.follow(),
                Err(refused) => attempt.error(refused),
            }
        });
        // reqwest is built without a crypto provider of its own: ring is the process's one.
        // An error means one is installed already (the `mp3conv` binary installs it first).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .read_timeout(config.read_timeout)
            .redirect(policy)
            .no_proxy()
            .dns_resolver(Arc::new(GuardedResolver(Arc::clone(&guard))))
            .user_agent(concat!("mp3conv-worker/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(Error::internal)?;
        Ok(Self {
            client,
            pages: Resolver::new(&config.pages, config.allow.clone()),
            page_runs,
            guard,
            slots: Arc::new(Semaphore::new(config.concurrency.max(1))),
            pace: Pace {
                min_rate: config.min_rate,
                window: config.rate_window,
                limit: config.deadline,
            },
        })
    }

    /// Checks a submitted link before a job is made for it: an absolute http(s) URL on a site
    /// the operator accepts, whose host, if an IP address, is one links may reach. Host names
    /// are checked when resolved.
    pub fn check_url(&self, link: &str) -> Result<Url, FetchError> {
        let url = Url::parse(link).map_err(|e| FetchError::InvalidUrl(format!("{link:?}: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(FetchError::InvalidUrl("links must be http or https".into()));
        }
        if url.host().is_none() {
            return Err(FetchError::InvalidUrl("the link has no host".into()));
        }
        self.guard
            .check_literal(&url)
            .map_err(|r| FetchError::Forbidden(r.0))?;
        self.pages.site_permitted(&url)?;
        Ok(url)
    }

    /// Opens the media at `link`, resolving it first if it is a video page; waits for a
    /// download slot first, and the deadline and the minimum rate count from when it has one.
    /// Media larger than `limit`, by what the server or page says, is refused here.
    #[tracing::instrument(skip_all)]
    pub async fn open(&self, link: &str, limit: u64) -> Result<Opened, FetchError> {
        let url = self.check_url(link)?;
        let slot = Arc::clone(&self.slots)
            .acquire_owned()
            .await
            .expect("never closed");
        let deadline = Instant::now() + self.pace.limit;
        let response = self.get(url.clone(), &[], deadline).await?;
        let content_type = content_type(&response);
        if !is_page(&content_type) {
            return self.media(response, None, slot, deadline, limit);
        }
        drop(response);
        self.page_runs.inc();
        let left = deadline.saturating_duration_since(Instant::now());
        let resolved = self.pages.resolve(&url, left).await?;
        tracing::info!(media = %resolved.media.host_str().unwrap_or_default(), "page resolved");
        if resolved.size.is_some_and(|size| size > limit) {
            return Err(FetchError::TooLarge(limit));
        }
        // An address in the URL itself never reaches the resolver that guards names.
        self.guard
            .check_literal(&resolved.media)
            .map_err(|r| FetchError::Forbidden(r.0))?;
        let response = self
            .get(resolved.media, &resolved.headers, deadline)
            .await?;
        self.media(response, Some(resolved.page), slot, deadline, limit)
    }

    /// GETs `url` with `headers`, answered by the end of a rate window (and by `deadline`),
    /// with a success status.
    async fn get(
        &self,
        url: Url,
        headers: &[(String, String)],
        deadline: Instant,
    ) -> Result<reqwest::Response, FetchError> {
        let pace = self.pace;
        let answer_by = deadline.min(Instant::now() + pace.window);
        let mut request = self.client.get(url);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let response = tokio::time::timeout_at(answer_by, request.send())
            .await
            .map_err(|_| {
                FetchError::TooSlow(format!(
                    "the link sent no answer within {}s",
                    pace.window.min(pace.limit).as_secs_f64()
                ))
            })?
            .map_err(classify)?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND || status == reqwest::StatusCode::GONE {
            return Err(FetchError::NotFound(status.as_u16()));
        }
        if !status.is_success() {
            return Err(FetchError::Status(status.as_u16()));
        }
        Ok(response)
    }

    /// `response` as the media to store: not a page or other text, not declared larger than
    /// `limit`.
    fn media(
        &self,
        response: reqwest::Response,
        page: Option<VideoPage>,
        slot: OwnedSemaphorePermit,
        deadline: Instant,
        limit: u64,
    ) -> Result<Opened, FetchError> {
        let content_type = content_type(&response);
        if is_not_media(&content_type) {
            return Err(FetchError::NotMedia(content_type));
        }
        let declared = response
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > limit) {
            return Err(FetchError::TooLarge(limit));
        }
        Ok(Opened {
            response,
            page,
            _slot: slot,
            deadline,
        })
    }

    /// Fetches a video page's image (its thumbnail) at `link` into the file `path`, held to
    /// the same address rules as any link: a JPEG, PNG or WebP picture of at most
    /// [`MAX_IMAGE_BYTES`], within 10 seconds (it is waited for in a conversion slot).
    #[tracing::instrument(skip_all)]
    pub async fn image(&self, link: &str, path: &std::path::Path) -> Result<u64, FetchError> {
        let url = Url::parse(link).map_err(|e| FetchError::InvalidUrl(format!("{link:?}: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(FetchError::InvalidUrl(
                "images must be http or https".into(),
            ));
        }
        self.guard
            .check_literal(&url)
            .map_err(|r| FetchError::Forbidden(r.0))?;
        let deadline = Instant::now() + IMAGE_TIME.min(self.pace.limit);
        let response = self.get(url, &[], deadline).await?;
        let content_type = content_type(&response);
        let essence = content_type.split(';').next().unwrap_or("").trim();
        if !matches!(essence, "image/jpeg" | "image/png" | "image/webp") {
            return Err(FetchError::NotMedia(content_type));
        }
        let mut file = tokio::fs::File::create(path)
            .await
            .map_err(|e| FetchError::Store(Error::internal(e)))?;
        let mut body = response.bytes_stream();
        let mut size = 0u64;
        loop {
            let chunk = match tokio::time::timeout_at(deadline, body.next()).await {
                Err(_) => return Err(FetchError::TooSlow("the image took too long".into())),
                Ok(None) => break,
                Ok(Some(chunk)) => chunk.map_err(classify)?,
            };
            size += chunk.len() as u64;
            if size > MAX_IMAGE_BYTES {
                return Err(FetchError::TooLarge(MAX_IMAGE_BYTES));
            }
            tokio::io::AsyncWriteExt::write_all(&mut file, &chunk)
                .await
                .map_err(|e| FetchError::Store(Error::internal(e)))?;
        }
        Ok(size)
    }

    /// Streams opened media into `store` as blob `id`, at most `limit` bytes; returns its
    /// size.
    #[tracing::instrument(skip_all, fields(blob = %id))]
    pub async fn store(
        &self,
        opened: Opened,
        store: &dyn BlobStore,
        id: &str,
        limit: u64,
    ) -> Result<u64, FetchError> {
        let Opened {
            response,
            _slot,
            deadline,
            ..
        } = opened;
        let filename = response
            .url()
            .path_segments()
            .and_then(|mut s| s.next_back())
            .unwrap_or("video")
            .to_owned();
        let too_slow = Arc::new(Mutex::new(None));
        let body = paced(
            response.bytes_stream().map_err(io::Error::other),
            self.pace,
            deadline,
            Arc::clone(&too_slow),
        );
        let stored = store.put(id, &filename, Box::pin(body), limit).await;
        if let Some(reason) = too_slow.lock().expect("not poisoned").take() {
            return Err(FetchError::TooSlow(reason));
        }
        stored.map_err(|e| match e {
            Error::TooLarge { limit } => FetchError::TooLarge(limit),
            Error::BadRequest { message, .. } => FetchError::Network(message),
            other => FetchError::Store(other),
        })
    }
}

/// A response's content type, lower-cased; empty when it has none.
fn content_type(response: &reqwest::Response) -> String {
    response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase()
}

/// Whether a response is a web page: a video page to resolve.
fn is_page(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    matches!(essence, "text/html" | "application/xhtml+xml")
}

/// `body`, cut off with an error at `deadline` or at the end of a `pace.window` that brought
/// fewer than `pace.min_rate` bytes per second. The reason is also left in `too_slow`: the blob
/// store turns a failing body into its own error, and the caller wants to say why.
fn paced(
    body: impl Stream<Item = io::Result<Bytes>> + Send + Unpin + 'static,
    pace: Pace,
    deadline: Instant,
    too_slow: Arc<Mutex<Option<String>>>,
) -> impl Stream<Item = io::Result<Bytes>> + Send + 'static {
    let wanted = (pace.min_rate as f64 * pace.window.as_secs_f64()) as u64;
    let start = (body, Instant::now() + pace.window, 0u64);
    futures::stream::unfold(Some(start), move |state| {
        let too_slow = Arc::clone(&too_slow);
        async move {
            let (mut body, mut window_end, mut in_window) = state?;
            loop {
                tokio::select! {
                    next = body.next() => {
                        return match next? {
                            Ok(chunk) => {
                                in_window += chunk.len() as u64;
                                Some((Ok(chunk), Some((body, window_end, in_window))))
                            }
                            Err(e) => Some((Err(e), None)),
                        };
                    }
                    () = tokio::time::sleep_until(window_end.min(deadline)) => {
                        let reason = if Instant::now() >= deadline {
                            Some(format!(
                                "the download took longer than its limit of {}s",
                                pace.limit.as_secs_f64()
                            ))
                        } else if in_window < wanted {
                            Some(format!(
                                "the link sent {in_window} bytes in {}s, slower than the \
                                 minimum of {} bytes/s",
                                pace.window.as_secs_f64(),
                                pace.min_rate
                            ))
                        } else {
                            None
                        };
                        if let Some(reason) = reason {
                            *too_slow.lock().expect("not poisoned") = Some(reason.clone());
                            return Some((Err(io::Error::new(io::ErrorKind::TimedOut, reason)), None));
                        }
                        window_end += pace.window;
                        in_window = 0;
                    }
                }
            }
        }
    })
}

fn is_not_media(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    essence.starts_with("text/")
        || matches!(
            essence,
            "application/json"
                | "application/xml"
                | "application/xhtml+xml"
                | "application/javascript"
        )
}

fn classify(e: reqwest::Error) -> FetchError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(cause) = source {
        if let Some(refused) = cause.downcast_ref::<Refused>() {
            return if e.is_redirect() && !refused.0.contains("may not reach") {
                FetchError::Redirect(refused.0.clone())
            } else {
                FetchError::Forbidden(refused.0.clone())
            };
        }
        source = cause.source();
    }
    FetchError::Network(crate::error::error_chain(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allow_list_opens_only_what_it_lists() {
        let guard = Guard {
            deny: Vec::new(),
            allow: vec!["127.0.0.1/32".parse().unwrap()],
        };
        assert!(guard.permits("127.0.0.1".parse().unwrap()));
        assert!(!guard.permits("127.0.0.2".parse().unwrap()));
        assert!(!guard.permits("169.254.169.254".parse().unwrap()));
    }

    #[test]
    fn submitted_links_are_checked() {
        let fetcher = Fetcher::new(&FetchConfig::default(), Counter::default()).unwrap();
        for (link, code) in [
            ("not a url", "invalid_url"),
            ("ftp://example.com/a.mp4", "invalid_url"),
            ("file:///etc/passwd", "invalid_url"),
            ("http://127.0.0.1/a.mp4", "link_forbidden"),
            ("http://169.254.169.254/latest/meta-data/", "link_forbidden"),
            ("http://[::1]/a.mp4", "link_forbidden"),
        ] {
            let got = fetcher.check_url(link).expect_err(link);
            assert_eq!(got.code(), code, "{link}");
        }
        assert!(fetcher.check_url("https://example.com/a.mp4").is_ok());
    }

    async fn drip(
        pace: Pace,
        deadline: Instant,
        every: Duration,
        size: usize,
    ) -> (usize, Option<String>) {
        let chunks = futures::stream::unfold((), move |()| async move {
            tokio::time::sleep(every).await;
            Some((Ok(Bytes::from(vec![0u8; size])), ()))
        })
        .take(50);
        let reason = Arc::new(Mutex::new(None));
        let got: Vec<io::Result<Bytes>> =
            paced(Box::pin(chunks), pace, deadline, Arc::clone(&reason))
                .collect()
                .await;
        let bytes = got
            .iter()
            .filter_map(|c| c.as_ref().ok())
            .map(Bytes::len)
            .sum();
        let failed = got.last().is_some_and(Result::is_err);
        let reason = reason.lock().unwrap().take();
        assert_eq!(failed, reason.is_some());
        (bytes, reason)
    }

    #[tokio::test]
    async fn slow_bodies_are_cut_off() {
        // At least 1000 bytes per 100 ms window.
        let pace = Pace {
            min_rate: 10_000,
            window: Duration::from_millis(100),
            limit: Duration::from_secs(60),
        };
        let later = Instant::now() + Duration::from_secs(60);
        let ms = Duration::from_millis;
        // Ten times the minimum: all 50 chunks arrive.
        assert_eq!(drip(pace, later, ms(10), 1000).await, (50_000, None));
        // A byte now and then: cut off after the first window.
        let (bytes, reason) = drip(pace, later, ms(20), 1).await;
        assert!(bytes < 10, "{bytes}");
        assert!(
            reason
                .unwrap()
                .contains("slower than the minimum of 10000 bytes/s")
        );
        // Fast enough, but past the deadline.
        let soon = Instant::now() + ms(150);
        let (bytes, reason) = drip(pace, soon, ms(10), 1000).await;
        assert!(bytes < 50_000, "{bytes}");
        assert!(reason.unwrap().contains("took longer than"));
        // No minimum rate: only the deadline.
        let unpaced = Pace {
            min_rate: 0,
            ..pace
        };
        assert_eq!(drip(unpaced, later, ms(5), 1).await, (50, None));
    }

    #[test]
    fn web_pages_are_not_media() {
        assert!(is_not_media("text/html; charset=utf-8"));
        assert!(is_not_media("application/json"));
        assert!(!is_not_media("video/mp4"));
        assert!(!is_not_media("application/octet-stream"));
        assert!(!is_not_media(""));
        // Pages are resolved; other text is not media either way.
        assert!(is_page("text/html; charset=utf-8"));
        assert!(is_page("application/xhtml+xml"));
        assert!(!is_page("text/plain"));
        assert!(!is_page("video/mp4"));
    }
}
