//! Downloading videos from links, guarded against server-side request forgery.
//!
//! Every address a link's host resolves to, on the first request and on each redirect (at most
//! [`MAX_REDIRECTS`]), must be a public unicast address unless `fetch.allow` lists it:
//! loopback, private, shared (CGNAT), link-local (which holds the cloud metadata service
//! 169.254.169.254), unique-local, multicast and unspecified addresses are refused. The guard
//! sits in the DNS resolver, so the address checked is the address connected to.
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
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE};
use reqwest::redirect;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use url::Url;

use crate::config::FetchConfig;
use crate::error::Error;
use crate::storage::BlobStore;

/// Most redirects followed for one link.
pub const MAX_REDIRECTS: usize = 5;

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
        }
    }

    /// Whether retrying cannot help. A link too slow is not retried either: another attempt
    /// would hold a download slot as long again.
    pub fn is_permanent(&self) -> bool {
        match self {
            Self::Status(status) => *status < 500 && *status != 429 && *status != 408,
            Self::Network(_) | Self::Store(_) => false,
            _ => true,
        }
    }
}

/// The refusal carried through reqwest's error chain.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Refused(pub(crate) String);

/// The address rules links obey: public unicast addresses, and those `allow` lists.
#[derive(Debug)]
pub(crate) struct Guard {
    allow: Vec<IpNet>,
}

impl Guard {
    pub(crate) fn new(allow: Vec<IpNet>) -> Self {
        Self { allow }
    }

    /// The addresses `host` resolves to that links may reach; refused when there are none.
    pub(crate) async fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        let found: Vec<SocketAddr> = tokio::net::lookup_host((host, port)).await?.collect();
        let permitted: Vec<SocketAddr> = found
            .iter()
            .copied()
            .filter(|addr| self.permits(addr.ip()))
            .collect();
        if permitted.is_empty() {
            let shown = found
                .first()
                .map_or("nothing".to_owned(), |a| a.ip().to_string());
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                Refused(format!(
                    "{host} resolves to {shown}, which links may not reach"
                )),
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
    /// Download slots, apart from the conversion slots.
    slots: Arc<Semaphore>,
    pace: Pace,
}

impl Fetcher {
    /// A fetcher with the configured timeouts and allow-list.
    pub fn new(config: &FetchConfig) -> Result<Self, Error> {
        let guard = Arc::new(Guard::new(config.allow.clone()));
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
            guard,
            slots: Arc::new(Semaphore::new(config.concurrency.max(1))),
            pace: Pace {
                min_rate: config.min_rate,
                window: config.rate_window,
                limit: config.deadline,
            },
        })
    }

    /// Checks a submitted link before a job is made for it: an absolute http(s) URL whose host,
    /// if an IP address, is one links may reach. Host names are checked when resolved.
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
        Ok(url)
    }

    /// Streams the video at `link` into `store` as blob `id`; returns its size. Waits for a
    /// download slot first; the deadline and the minimum rate count from when it has one.
    #[tracing::instrument(skip_all, fields(blob = %id))]
    pub async fn download(
        &self,
        link: &str,
        store: &dyn BlobStore,
        id: &str,
        limit: u64,
    ) -> Result<u64, FetchError> {
        let url = self.check_url(link)?;
        let _slot = self.slots.acquire().await.expect("never closed");
        let pace = self.pace;
        let deadline = Instant::now() + pace.limit;
        let answer_by = deadline.min(Instant::now() + pace.window);
        let response = tokio::time::timeout_at(answer_by, self.client.get(url).send())
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
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
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
        let filename = response
            .url()
            .path_segments()
            .and_then(|mut s| s.next_back())
            .unwrap_or("video")
            .to_owned();
        let too_slow = Arc::new(Mutex::new(None));
        let body = paced(
            response.bytes_stream().map_err(io::Error::other),
            pace,
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
            allow: vec!["127.0.0.1/32".parse().unwrap()],
        };
        assert!(guard.permits("127.0.0.1".parse().unwrap()));
        assert!(!guard.permits("127.0.0.2".parse().unwrap()));
        assert!(!guard.permits("169.254.169.254".parse().unwrap()));
    }

    #[test]
    fn submitted_links_are_checked() {
        let fetcher = Fetcher::new(&FetchConfig::default()).unwrap();
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
    }
}
