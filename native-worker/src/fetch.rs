//! Downloading videos from links, guarded against server-side request forgery.
//!
//! Every address a link's host resolves to, on the first request and on each redirect (at most
//! [`MAX_REDIRECTS`]), must be a public unicast address unless `fetch.allow` lists it:
//! loopback, private, shared (CGNAT), link-local (which holds the cloud metadata service
//! 169.254.169.254), unique-local, multicast and unspecified addresses are refused. The guard
//! sits in the DNS resolver, so the address checked is the address connected to.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use futures::TryStreamExt;
use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE};
use reqwest::redirect;
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
            Self::Store(_) => "storage_unavailable",
        }
    }

    /// Whether retrying cannot help.
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
struct Refused(String);

#[derive(Debug)]
struct Guard {
    allow: Vec<IpNet>,
}

impl Guard {
    fn permits(&self, ip: IpAddr) -> bool {
        self.allow.iter().any(|net| net.contains(&ip)) || is_public(ip)
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

/// Whether `ip` is a public unicast address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        // Shared address space (CGNAT), which also holds 100.100.100.200 (a metadata service).
        || (a == 100 && (64..128).contains(&b))
        // IETF protocol assignments and reserved space.
        || (a == 192 && b == 0 && ip.octets()[2] == 0)
        || a >= 240
        // Benchmarking.
        || (a == 198 && (b == 18 || b == 19)))
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        // Unique local (fc00::/7, includes AWS's fd00:ec2::254) and link-local (fe80::/10).
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
        // Documentation.
        || (first == 0x2001 && ip.segments()[1] == 0x0db8)
        // NAT64 and IPv4-compatible forms could smuggle private IPv4 addresses.
        || first == 0x0064
        || ip.to_ipv4().is_some())
}

/// The resolver reqwest uses: refuses names that resolve only to forbidden addresses and drops
/// forbidden addresses from mixed answers.
struct GuardedResolver(Arc<Guard>);

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let guard = Arc::clone(&self.0);
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let permitted: Vec<SocketAddr> = found
                .iter()
                .copied()
                .filter(|addr| guard.permits(addr.ip()))
                .collect();
            if permitted.is_empty() {
                let shown = found
                    .first()
                    .map_or("nothing".to_owned(), |a| a.ip().to_string());
                return Err(Box::new(Refused(format!(
                    "{host} resolves to {shown}, which links may not reach"
                ))) as _);
            }
            Ok(Box::new(permitted.into_iter()) as Addrs)
        })
    }
}

/// Downloads links into a blob store.
#[derive(Clone)]
pub struct Fetcher {
    client: reqwest::Client,
    guard: Arc<Guard>,
}

impl Fetcher {
    /// A fetcher with the configured timeouts and allow-list.
    pub fn new(config: &FetchConfig) -> Result<Self, Error> {
        let guard = Arc::new(Guard {
            allow: config.allow.clone(),
        });
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
        let client = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .read_timeout(config.read_timeout)
            .redirect(policy)
            .no_proxy()
            .dns_resolver(Arc::new(GuardedResolver(Arc::clone(&guard))))
            .user_agent(concat!("mp3conv-worker/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(Error::internal)?;
        Ok(Self { client, guard })
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

    /// Streams the video at `link` into `store` as blob `id`; returns its size.
    #[tracing::instrument(skip_all, fields(blob = %id))]
    pub async fn download(
        &self,
        link: &str,
        store: &dyn BlobStore,
        id: &str,
        limit: u64,
    ) -> Result<u64, FetchError> {
        let url = self.check_url(link)?;
        let response = self.client.get(url).send().await.map_err(classify)?;
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
        let body = response.bytes_stream().map_err(std::io::Error::other);
        store
            .put(id, &filename, Box::pin(body), limit)
            .await
            .map_err(|e| match e {
                Error::TooLarge { limit } => FetchError::TooLarge(limit),
                Error::BadRequest { message, .. } => FetchError::Network(message),
                other => FetchError::Store(other),
            })
    }
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
    fn internal_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.100.100.200",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00:ec2::254",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip} counted as public");
        }
        for ip in [
            "93.184.216.34",
            "8.8.8.8",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(is_public(ip.parse().unwrap()), "{ip} counted as internal");
        }
    }

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

    #[test]
    fn web_pages_are_not_media() {
        assert!(is_not_media("text/html; charset=utf-8"));
        assert!(is_not_media("application/json"));
        assert!(!is_not_media("video/mp4"));
        assert!(!is_not_media("application/octet-stream"));
        assert!(!is_not_media(""));
    }
}
