//! A forward proxy on 127.0.0.1 that holds another program's connections to the links' address
//! rules: the way a page resolver (yt-dlp, which makes its own connections) is kept from
//! reaching the worker's network (issue #17).
//!
//! It speaks just what such a client sends through an HTTP proxy: `CONNECT host:port` for
//! https (a tunnel, the TLS inside it the client's own), and `GET http://host/path` (any
//! method, an absolute `http:` URL) for plain http. Each host is resolved here and only a
//! permitted address is connected to ([`Guard::resolve`]), so the address checked is the
//! address reached; a redirect is a new request, checked anew. Anything else (another scheme,
//! a relative target, a head that does not end) is refused. One request per connection:
//! requests are forwarded with `Connection: close`. Every refusal is recorded
//! ([`GuardedProxy::refusals`]), so that the program's own error ("HTTP Error 403") can be told
//! in words.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ipnet::IpNet;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::fetch::Guard;

/// Most bytes of a request's head (its line and headers).
const MAX_HEAD_BYTES: usize = 16 * 1024;
/// How long a client may take to send its head, and a connection to the target to open.
const HEAD_TIMEOUT: Duration = Duration::from_secs(15);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Request headers meant for the proxy or for one connection, never passed on.
const HOP_HEADERS: [&str; 5] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "te",
];

/// A running proxy; it stops when dropped.
pub struct GuardedProxy {
    address: SocketAddr,
    refusals: Arc<Mutex<Vec<(u16, String)>>>,
    stop: CancellationToken,
}

impl GuardedProxy {
    /// Starts a proxy on 127.0.0.1 (a port of its own) applying the links' address rules,
    /// with `allow` admitting what they would refuse (the worker's `fetch.allow`).
    pub async fn start(allow: Vec<IpNet>) -> io::Result<Self> {
        Self::guarding(Guard::new(allow)).await
    }

    /// Starts a proxy on 127.0.0.1 applying `guard`'s rules.
    pub(crate) async fn guarding(guard: Guard) -> io::Result<Self> {
        let guard = Arc::new(guard);
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let refusals = Arc::new(Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        let (noted, stopping) = (Arc::clone(&refusals), stop.clone());
        tokio::spawn(async move {
            loop {
                let client = tokio::select! {
                    () = stopping.cancelled() => return,
                    accepted = listener.accept() => match accepted {
                        Ok((client, _)) => client,
                        Err(_) => continue,
                    },
                };
                let (guard, noted, stopping) =
                    (Arc::clone(&guard), Arc::clone(&noted), stopping.clone());
                tokio::spawn(async move {
                    tokio::select! {
                        () = stopping.cancelled() => {}
                        () = serve(client, &guard, &noted) => {}
                    }
                });
            }
        });
        Ok(Self {
            address,
            refusals,
            stop,
        })
    }

    /// The proxy's URL, as a client's `--proxy` takes it.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Why requests were refused, in order.
    pub fn refusals(&self) -> Vec<String> {
        let refusals = self.refusals.lock().expect("refusals lock");
        refusals.iter().map(|(_, why)| why.clone()).collect()
    }

    /// Why requests were refused by the address rules or for their scheme (403), in order:
    /// not those the target's failures or the client's mistakes caused.
    pub fn forbidden(&self) -> Vec<String> {
        let refusals = self.refusals.lock().expect("refusals lock");
        refusals
            .iter()
            .filter(|(status, _)| *status == 403)
            .map(|(_, why)| why.clone())
            .collect()
    }
}

impl Drop for GuardedProxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A request's head, read.
struct Head {
    method: String,
    target: String,
    /// Header lines as sent, without the line breaks.
    headers: Vec<String>,
    /// Bytes read past the head (the start of a body, or of a tunnel's traffic).
    rest: Vec<u8>,
}

/// Serves one client connection: one request, or one tunnel.
async fn serve(mut client: TcpStream, guard: &Guard, refusals: &Mutex<Vec<(u16, String)>>) {
    let head = match tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut client)).await {
        Ok(Ok(head)) => head,
        Ok(Err(why)) => return refuse(&mut client, 400, &why, refusals).await,
        Err(_) => {
            return refuse(&mut client, 408, "the request's head never ended", refusals).await;
        }
    };
    let (host, port, forwarded) = if head.method.eq_ignore_ascii_case("CONNECT") {
        match authority(&head.target) {
            Some((host, port)) => (host, port, None),
            None => {
                let why = format!("CONNECT needs host:port, not {:?}", head.target);
                return refuse(&mut client, 400, &why, refusals).await;
            }
        }
    } else {
        match Url::parse(&head.target) {
            Ok(url) if url.scheme() == "http" && url.host_str().is_some() => {
                let host = url.host_str().unwrap_or_default().to_owned();
                let port = url.port_or_known_default().unwrap_or(80);
                (host, port, Some(origin_request(&head, &url)))
            }
            Ok(url) => {
                let why = format!("{}: links are http or https", url.scheme());
                return refuse(&mut client, 403, &why, refusals).await;
            }
            Err(_) => {
                let why = format!("not an absolute http URL: {:?}", head.target);
                return refuse(&mut client, 400, &why, refusals).await;
            }
        }
    };
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let addresses = match guard.resolve(&host, port).await {
        Ok(addresses) => addresses,
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            return refuse(&mut client, 403, &e.to_string(), refusals).await;
        }
        Err(e) => {
            let why = format!("{host} did not resolve: {e}");
            return refuse(&mut client, 502, &why, refusals).await;
        }
    };
    let Some(mut upstream) = connect(&addresses).await else {
        let why = format!("{host}:{port} did not answer");
        return refuse(&mut client, 502, &why, refusals).await;
    };
    let opened = match forwarded {
        None => {
            client
                .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
                .await
        }
        Some(request) => upstream.write_all(&request).await,
    };
    if opened.is_err() || upstream.write_all(&head.rest).await.is_err() {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
}

/// Reads a request's head: `METHOD TARGET VERSION`, headers, an empty line.
async fn read_head(client: &mut TcpStream) -> Result<Head, String> {
    let mut buffer = Vec::with_capacity(1024);
    let end = loop {
        let end = buffer.windows(4).position(|w| w == b"\r\n\r\n");
        if end.unwrap_or(buffer.len()) > MAX_HEAD_BYTES {
            return Err(format!("a request head over {MAX_HEAD_BYTES} bytes"));
        }
        if let Some(at) = end {
            break at;
        }
        let mut chunk = [0u8; 4096];
        match client.read(&mut chunk).await {
            Ok(0) | Err(_) => return Err("the connection ended before the head did".into()),
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
    };
    let text = std::str::from_utf8(&buffer[..end]).map_err(|_| "a head that is not text")?;
    let mut lines = text.split("\r\n");
    let line = lines.next().unwrap_or_default();
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(format!("a malformed request line: {line:?}"));
    };
    if !version.starts_with("HTTP/1.") || method.is_empty() {
        return Err(format!("a malformed request line: {line:?}"));
    }
    Ok(Head {
        method: method.to_owned(),
        target: target.to_owned(),
        headers: lines.map(str::to_owned).collect(),
        rest: buffer[end + 4..].to_vec(),
    })
}

/// `host:port` of a CONNECT (`[v6]:port` for IPv6).
fn authority(target: &str) -> Option<(String, u16)> {
    let (host, port) = target.rsplit_once(':')?;
    let port = port.parse().ok().filter(|p| *p > 0)?;
    (!host.is_empty() && !host.contains(['/', '@', ' '])).then(|| (host.to_owned(), port))
}

/// The request as the origin takes it: its path (origin form), the client's headers but the
/// hop-by-hop ones, and `Connection: close`.
fn origin_request(head: &Head, url: &Url) -> Vec<u8> {
    let mut path = url.path().to_owned();
    if let Some(query) = url.query() {
        path.push('?');
        path.push_str(query);
    }
    let mut request = format!("{} {path} HTTP/1.1\r\n", head.method);
    for line in &head.headers {
        let name = line.split(':').next().unwrap_or_default().trim();
        if !HOP_HEADERS.iter().any(|h| h.eq_ignore_ascii_case(name)) {
            request.push_str(line);
            request.push_str("\r\n");
        }
    }
    request.push_str("Connection: close\r\n\r\n");
    request.into_bytes()
}

/// Connects to the first of `addresses` that answers.
async fn connect(addresses: &[SocketAddr]) -> Option<TcpStream> {
    for address in addresses {
        if let Ok(Ok(stream)) =
            tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address)).await
        {
            return Some(stream);
        }
    }
    None
}

/// Answers `status` with `why`, and records it.
async fn refuse(
    client: &mut TcpStream,
    status: u16,
    why: &str,
    refusals: &Mutex<Vec<(u16, String)>>,
) {
    tracing::info!(status, why, "proxy refused a request");
    refusals
        .lock()
        .expect("refusals lock")
        .push((status, why.to_owned()));
    let reason = match status {
        400 => "Bad Request",
        403 => "Forbidden",
        408 => "Request Timeout",
        _ => "Bad Gateway",
    };
    let answer = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{why}",
        why.len()
    );
    let _ = client.write_all(answer.as_bytes()).await;
    let _ = client.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// An origin on 127.0.0.1 that answers `ok` and keeps each request's head; counts
    /// connections.
    async fn origin() -> (SocketAddr, Arc<AtomicUsize>, Arc<Mutex<Vec<String>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (count, heads) = (
            Arc::new(AtomicUsize::new(0)),
            Arc::new(Mutex::new(Vec::new())),
        );
        let (counted, kept) = (Arc::clone(&count), Arc::clone(&heads));
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                let kept = Arc::clone(&kept);
                tokio::spawn(async move {
                    let mut buffer = Vec::new();
                    let mut chunk = [0u8; 1024];
                    while !buffer.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                        }
                    }
                    kept.lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&buffer).into_owned());
                    let _ = stream
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                        .await;
                });
            }
        });
        (address, count, heads)
    }

    fn guard(allow: &[&str]) -> Vec<IpNet> {
        allow.iter().map(|a| a.parse().unwrap()).collect()
    }

    fn client(proxy: &GuardedProxy) -> reqwest::Client {
        let _ = rustls::crypto::ring::default_provider().install_default();
        reqwest::Client::builder()
            .proxy(reqwest::Proxy::all(proxy.url()).unwrap())
            .build()
            .unwrap()
    }

    /// Sends `request` to the proxy as raw bytes; returns the whole answer.
    async fn raw(proxy: &GuardedProxy, request: &[u8]) -> String {
        let mut stream = TcpStream::connect(proxy.address).await.unwrap();
        stream.write_all(request).await.unwrap();
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.unwrap();
        String::from_utf8_lossy(&answer).into_owned()
    }

    #[tokio::test]
    async fn permitted_hosts_are_reached_in_origin_form() {
        let (origin, count, heads) = origin().await;
        let proxy = GuardedProxy::start(guard(&["127.0.0.1/32"])).await.unwrap();
        let response = client(&proxy)
            .get(format!("http://{origin}/page?x=1"))
            .header("proxy-authorization", "Basic c2VjcmV0")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.text().await.unwrap(), "ok");
        assert_eq!(count.load(Ordering::SeqCst), 1);
        let head = heads.lock().unwrap()[0].clone();
        assert!(head.starts_with("GET /page?x=1 HTTP/1.1\r\n"), "{head}");
        assert!(head.contains("\r\nConnection: close\r\n"), "{head}");
        assert!(
            !head.to_lowercase().contains("proxy-authorization"),
            "{head}"
        );
        // A tunnel to a permitted address carries the bytes both ways.
        let answer = raw(
            &proxy,
            format!("CONNECT {origin} HTTP/1.1\r\n\r\nGET /t HTTP/1.1\r\n\r\n").as_bytes(),
        )
        .await;
        assert!(
            answer.starts_with("HTTP/1.1 200 Connection Established\r\n\r\nHTTP/1.1 200 OK"),
            "{answer}"
        );
        assert!(proxy.refusals().is_empty(), "{:?}", proxy.refusals());
    }

    #[tokio::test]
    async fn forbidden_addresses_are_never_connected_to() {
        let (origin, count, _) = origin().await;
        let proxy = GuardedProxy::start(guard(&[])).await.unwrap();
        let port = origin.port();
        for url in [
            format!("http://{origin}/"),
            format!("http://localhost:{port}/"),
            format!("http://[::1]:{port}/"),
            format!("http://0x7f000001:{port}/"),
        ] {
            let response = client(&proxy).get(&url).send().await.unwrap();
            assert_eq!(response.status(), 403, "{url}");
        }
        for target in [
            format!("{origin}"),
            format!("localhost:{port}"),
            "169.254.169.254:80".to_owned(),
        ] {
            let answer = raw(
                &proxy,
                format!("CONNECT {target} HTTP/1.1\r\n\r\n").as_bytes(),
            )
            .await;
            assert!(
                answer.starts_with("HTTP/1.1 403 Forbidden"),
                "{target}: {answer}"
            );
        }
        assert_eq!(
            count.load(Ordering::SeqCst),
            0,
            "the origin saw a connection"
        );
        let refusals = proxy.refusals();
        assert_eq!(refusals.len(), 7, "{refusals:?}");
        assert!(
            refusals.iter().all(|r| r.contains("may not reach")),
            "{refusals:?}"
        );
    }

    #[tokio::test]
    async fn other_schemes_and_malformed_requests_are_refused() {
        let (origin, count, _) = origin().await;
        let proxy = GuardedProxy::start(guard(&["127.0.0.1/32"])).await.unwrap();
        for (request, status) in [
            (format!("GET ftp://{origin}/x HTTP/1.1\r\n\r\n"), "403"),
            ("GET file:///etc/passwd HTTP/1.1\r\n\r\n".to_owned(), "403"),
            ("GET /relative HTTP/1.1\r\n\r\n".to_owned(), "400"),
            ("CONNECT nohost HTTP/1.1\r\n\r\n".to_owned(), "400"),
            ("CONNECT a@b:80 HTTP/1.1\r\n\r\n".to_owned(), "400"),
            ("GET  HTTP/1.1\r\n\r\n".to_owned(), "400"),
            (format!("GET http://{origin}/ SPDY/3\r\n\r\n"), "400"),
            (
                format!(
                    "GET http://{origin}/ HTTP/1.1\r\n{}\r\n\r\n",
                    "x".repeat(20_000)
                ),
                "400",
            ),
        ] {
            let answer = raw(&proxy, request.as_bytes()).await;
            assert!(
                answer.starts_with(&format!("HTTP/1.1 {status} ")),
                "{:?}: {answer}",
                &request[..request.len().min(60)]
            );
        }
        assert_eq!(
            count.load(Ordering::SeqCst),
            0,
            "the origin saw a connection"
        );
        assert_eq!(proxy.refusals().len(), 8);
        assert_eq!(proxy.forbidden().len(), 2, "{:?}", proxy.forbidden());
    }

    #[test]
    fn connect_targets() {
        assert_eq!(
            authority("example.com:443"),
            Some(("example.com".into(), 443))
        );
        assert_eq!(authority("[::1]:8443"), Some(("[::1]".into(), 8443)));
        for bad in ["example.com", "example.com:0", ":443", "a/b:80", "x:99999"] {
            assert_eq!(authority(bad), None, "{bad}");
        }
    }
}
