//! The host's outbound HTTP client for components: resolves the destination, refuses
//! addresses a wildcard-admitted destination may not reach, connects (TLS from the one
//! [`rustls::ClientConfig`] built at start-up for `https`), and speaks HTTP/1.1.
//!
//! Connections to destinations an operator named in `allowed_outbound_hosts` (the worker, an
//! email API) are kept open for the next request, as Spin does; a destination only a wildcard
//! admitted (a user's webhook) gets a connection of its own each time.
//!
//! A destination served in this same process (`mp3conv up`'s worker, see [`InProcess`]) gets
//! its requests handed over as they are, with no socket and no HTTP encoding between.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Frame;
use http_body_util::BodyExt as _;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody};

use crate::outbound::Admission;

/// Used when the component sets no connect timeout of its own.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Used when the component sets no first-byte or between-bytes timeout; the request's own
/// limits stop a guest waiting longer than it may.
const READ_TIMEOUT: Duration = Duration::from_secs(600);

/// What a sent request gives back: the response (its body streaming) and the connection's
/// task, which ends when the exchange does.
pub type Sent = (
    Response<WasiBody>,
    Box<dyn Future<Output = Result<(), Error>> + Send>,
);

/// How long a connection may wait in the pool for its next request: below the idle limits
/// servers commonly set (Node's 5 s, hyper's 30 s where a server has a timer), so a request
/// rarely meets a connection its server is closing.
const IDLE_FOR: Duration = Duration::from_secs(4);
/// How long a connection is used at all: requests move to a new replica of the worker, or to
/// new addresses of a name, within a minute even under steady load.
const MAX_AGE: Duration = Duration::from_secs(60);
/// Idle connections kept per destination; more than this many at once are closed when done.
const IDLE_PER_DESTINATION: usize = 32;

/// Sends components' outbound requests; one per host, shared by every request.
pub struct Connector {
    tls: tokio_rustls::TlsConnector,
    pool: Arc<Pool>,
    in_process: HashMap<Destination, LocalService>,
}

/// A body handed to or from a destination served in this process.
pub type LocalBody = UnsyncBoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// A service in this process that answers requests as a server would, response head first.
pub type LocalService = Arc<
    dyn Fn(Request<LocalBody>) -> Pin<Box<dyn Future<Output = Response<LocalBody>> + Send>>
        + Send
        + Sync,
>;

/// `http://<host>:<port>` served by `service` in this process: requests to that exact
/// destination, when an `allowed_outbound_hosts` entry names it, go to `service` instead of
/// the network. `up` uses it for the worker it embeds; the worker still listens on the same
/// address for anything else.
#[derive(Clone)]
pub struct InProcess {
    pub host: String,
    pub port: u16,
    pub service: LocalService,
}

impl std::fmt::Debug for InProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "http://{}:{} (in process)", self.host, self.port)
    }
}

trait Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Stream for T {}

impl Connector {
    pub fn new(tls: Arc<rustls::ClientConfig>, in_process: &[InProcess]) -> Connector {
        let in_process = in_process
            .iter()
            .map(|local| {
                let destination = Destination {
                    https: false,
                    host: local.host.to_ascii_lowercase(),
                    port: local.port,
                };
                (destination, local.service.clone())
            })
            .collect();
        Connector {
            tls: tokio_rustls::TlsConnector::from(tls),
            pool: Arc::default(),
            in_process,
        }
    }

    /// Sends `request` (an absolute `http`/`https` URI), which `allowed_outbound_hosts`
    /// admitted as `admission`.
    pub async fn send(
        &self,
        mut request: Request<WasiBody>,
        options: Option<RequestOptions>,
        admission: Admission,
    ) -> Result<Sent, Error> {
        let uri = request.uri().clone();
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(Error::HttpRequestUriInvalid),
        };
        let host = uri
            .host()
            .ok_or(Error::HttpRequestUriInvalid)?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let connect_timeout = options
            .and_then(|o| o.connect_timeout)
            .unwrap_or(CONNECT_TIMEOUT);
        let first_byte_timeout = options
            .and_then(|o| o.first_byte_timeout)
            .unwrap_or(READ_TIMEOUT);
        let between_bytes_timeout = options
            .and_then(|o| o.between_bytes_timeout)
            .unwrap_or(READ_TIMEOUT)
            .max(Duration::from_millis(1));

        // On the wire the request line carries only the path (Host is already a header).
        *request.uri_mut() = uri.path_and_query().map_or_else(
            || http::Uri::from_static("/"),
            |pq| http::Uri::from(pq.clone()),
        );
        let key = (admission == Admission::Named).then(|| Destination {
            https,
            host: host.to_ascii_lowercase(),
            port,
        });
        if let Some(service) = key.as_ref().and_then(|key| self.in_process.get(key)) {
            let request = request.map(|body| body.map_err(Into::into).boxed_unsync());
            let response = tokio::time::timeout(first_byte_timeout, service(request))
                .await
                .map_err(|_| Error::ConnectionReadTimeout)?;
            let response = response.map(|body| {
                body.map_err(|err| Error::InternalError(Some(format!("{err:#}"))))
                    .boxed_unsync()
            });
            return Ok((
                idle_limited(response, between_bytes_timeout),
                Box::new(async { Ok(()) }),
            ));
        }

        if let Some(key) = &key
            && let Some(mut pooled) = self.pool.take(key)
        {
            let sent =
                tokio::time::timeout(first_byte_timeout, pooled.sender.try_send_request(request))
                    .await
                    .map_err(|_| Error::ConnectionReadTimeout)?;
            match sent {
                Ok(response) => {
                    return Ok(self.reuse(key.clone(), pooled, response, between_bytes_timeout));
                }
                // The connection closed before the request went out on it: a new one takes it.
                Err(mut err) => match err.take_message() {
                    Some(unsent) => request = unsent,
                    None => return Err(err.into_error().into()),
                },
            }
        }

        let stream = tokio::time::timeout(connect_timeout, async {
            let tcp = connect(&host, port, admission).await?;
            let stream: Box<dyn Stream> = if https {
                let name = rustls::pki_types::ServerName::try_from(host.clone())
                    .map_err(|_| Error::HttpRequestUriInvalid)?;
                Box::new(self.tls.connect(name, tcp).await.map_err(tls_error)?)
            } else {
                Box::new(tcp)
            };
            Ok::<_, Error>(stream)
        })
        .await
        .map_err(|_| Error::ConnectionTimeout)??;

        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;

        if let Some(key) = key {
            // The connection outlives this exchange: its own task drives it until either
            // side closes it (or the pool gives up on it).
            let driving = tokio::spawn(async move {
                if let Err(err) = connection.await {
                    tracing::debug!("pooled outbound connection ended: {err}");
                }
            });
            let response = tokio::time::timeout(first_byte_timeout, sender.send_request(request))
                .await
                .map_err(|_| Error::ConnectionReadTimeout)??;
            let pooled = Pooled {
                sender,
                created: Instant::now(),
                driving: driving.abort_handle(),
            };
            return Ok(self.reuse(key, pooled, response, between_bytes_timeout));
        }

        let mut connection = Box::pin(connection);
        let mut connection_done = false;
        let response = {
            let send = tokio::time::timeout(first_byte_timeout, sender.send_request(request));
            let mut send = std::pin::pin!(send);
            loop {
                tokio::select! {
                    sent = &mut send => {
                        break sent.map_err(|_| Error::ConnectionReadTimeout)??;
                    }
                    // The connection must be driven for the request to go out.
                    ended = &mut connection, if !connection_done => {
                        connection_done = true;
                        ended?;
                    }
                }
            }
        };
        let io = async move {
            if !connection_done {
                connection.await?;
            }
            Ok(())
        };
        Ok((idle_limited(response, between_bytes_timeout), Box::new(io)))
    }

    /// The response of an exchange on a pooled connection; the connection goes back to the
    /// pool once the guest has read the whole body (hyper then has it ready again), and is
    /// closed instead if the body is dropped before its end. One still busy after
    /// [`READ_TIMEOUT`] (a peer that stopped reading the request body) is closed too.
    fn reuse(
        &self,
        key: Destination,
        mut pooled: Pooled,
        response: Response<hyper::body::Incoming>,
        between_bytes_timeout: Duration,
    ) -> Sent {
        let pool = self.pool.clone();
        tokio::spawn(async move {
            if let Ok(Ok(())) = tokio::time::timeout(READ_TIMEOUT, pooled.sender.ready()).await {
                pool.put(key, pooled);
            }
        });
        (
            idle_limited(response, between_bytes_timeout),
            Box::new(async { Ok(()) }),
        )
    }
}

fn idle_limited<B>(response: Response<B>, limit: Duration) -> Response<WasiBody>
where
    B: http_body::Body<Data = Bytes> + Unpin + Send + 'static,
    B::Error: Into<Error>,
{
    response.map(|incoming| {
        IdleLimited {
            incoming,
            limit,
            timer: Box::pin(tokio::time::sleep(limit)),
        }
        .boxed_unsync()
    })
}

/// Where a pooled connection goes: connections are shared only by requests to the same
/// scheme, host and port.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Destination {
    https: bool,
    host: String,
    port: u16,
}

/// Idle HTTP/1.1 connections by destination, most recently used last.
#[derive(Default)]
struct Pool {
    idle: Mutex<HashMap<Destination, Vec<Idle>>>,
}

/// A connection the pool owns: its sender, and the task driving it, stopped when the
/// connection is given up on (closed, stale, over the cap, or stuck).
struct Pooled {
    sender: SendRequest<WasiBody>,
    created: Instant,
    driving: tokio::task::AbortHandle,
}

impl Drop for Pooled {
    fn drop(&mut self) {
        self.driving.abort();
    }
}

struct Idle {
    connection: Pooled,
    since: Instant,
}

impl Idle {
    fn usable(&self, now: Instant) -> bool {
        now.duration_since(self.since) < IDLE_FOR
            && now.duration_since(self.connection.created) < MAX_AGE
            && self.connection.sender.is_ready()
    }
}

impl Pool {
    /// The most recently used connection to `key` still open, if any. Stale ones are
    /// dropped, which closes them.
    fn take(&self, key: &Destination) -> Option<Pooled> {
        let now = Instant::now();
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let waiting = idle.get_mut(key)?;
        while let Some(entry) = waiting.pop() {
            if entry.usable(now) {
                return Some(entry.connection);
            }
        }
        None
    }

    fn put(&self, key: Destination, connection: Pooled) {
        let now = Instant::now();
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        // Every destination's stale connections go, not only this one's.
        idle.retain(|_, waiting| {
            waiting.retain(|entry| entry.usable(now));
            !waiting.is_empty()
        });
        let waiting = idle.entry(key).or_default();
        if waiting.len() >= IDLE_PER_DESTINATION {
            waiting.remove(0);
        }
        waiting.push(Idle {
            connection,
            since: now,
        });
    }
}

/// Connects to the first address of `host` that answers. A wildcard-admitted destination
/// connects only to public addresses; which ones is decided here, on the resolved addresses,
/// so a name that resolves to loopback or a private network is refused whatever it looked
/// like when it was registered.
async fn connect(host: &str, port: u16, admission: Admission) -> Result<TcpStream, Error> {
    let addresses: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((host, port))
            .await
            .map_err(|err| {
                tracing::debug!(%host, "cannot resolve: {err}");
                Error::DnsError {
                    rcode: Some("address not available".into()),
                    info_code: None,
                }
            })?
            .collect(),
    };
    let permitted: Vec<SocketAddr> = match admission {
        Admission::Named => addresses,
        Admission::Wildcard => addresses
            .into_iter()
            .filter(|address| mp3conv_contract::address::is_public(address.ip()))
            .collect(),
    };
    if permitted.is_empty() {
        tracing::warn!(
            %host,
            port,
            "outbound request refused: a wildcard allowed_outbound_hosts entry reaches only public addresses"
        );
        return Err(Error::DestinationIpProhibited);
    }
    let mut last = Error::DestinationUnavailable;
    for address in permitted {
        match TcpStream::connect(address).await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(err) if err.kind() == std::io::ErrorKind::ConnectionRefused => {
                last = Error::ConnectionRefused;
            }
            Err(err) => last = Error::Connect(err),
        }
    }
    Err(last)
}

/// Certificate problems are told apart from other TLS failures, as the guest sees them.
fn tls_error(err: std::io::Error) -> Error {
    let certificate = err
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|tls| matches!(tls, rustls::Error::InvalidCertificate(_)));
    if certificate {
        tracing::warn!("outbound https: {err}");
        Error::TlsCertificateError
    } else {
        Error::Tls(err)
    }
}

/// Empty pieces of a body passed over in one poll before it yields.
const EMPTY_PIECES_PER_POLL: usize = 64;

/// A response body that fails when no frame with data (or trailers) arrives for `limit`.
struct IdleLimited<B> {
    incoming: B,
    limit: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl<B> http_body::Body for IdleLimited<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<Error>,
{
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        // An empty piece is no progress; and a guest's blocking read handed several in a row
        // takes the stream for one that will never give anything (wasmtime traps). hyper never
        // makes them; an in-process peer might. A run of them yields to other tasks.
        let mut waiting = false;
        for _ in 0..EMPTY_PIECES_PER_POLL {
            match Pin::new(&mut self.incoming).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) if frame.data_ref().is_some_and(Bytes::is_empty) => {}
                Poll::Ready(Some(Ok(frame))) => {
                    let next = tokio::time::Instant::now() + self.limit;
                    self.timer.as_mut().reset(next);
                    return Poll::Ready(Some(Ok(frame)));
                }
                Poll::Ready(Some(Err(err))) => return Poll::Ready(Some(Err(err.into()))),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => {
                    waiting = true;
                    break;
                }
            }
        }
        match self.timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Error::ConnectionReadTimeout))),
            Poll::Pending => {
                if !waiting {
                    cx.waker().wake_by_ref();
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.incoming.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::StreamBody;

    #[tokio::test]
    async fn empty_pieces_are_passed_over_and_are_no_progress() {
        let pieces = ["", "ab", "", "", "", "c", ""]
            .map(|piece| Ok::<_, Error>(Frame::data(Bytes::from_static(piece.as_bytes()))));
        let response = Response::new(StreamBody::new(futures::stream::iter(pieces)));
        let mut body = idle_limited(response, Duration::from_secs(5)).into_body();
        let mut seen = Vec::new();
        while let Some(frame) = body.frame().await {
            seen.push(frame.unwrap().into_data().unwrap());
        }
        assert_eq!(seen, ["ab", "c"]);

        // A peer that sends only empty pieces is idle: the limit ends it.
        let empties = futures::stream::iter(std::iter::repeat_with(|| {
            Ok::<_, Error>(Frame::data(Bytes::new()))
        }));
        let response = Response::new(StreamBody::new(empties));
        let mut body = idle_limited(response, Duration::from_millis(50)).into_body();
        match body.frame().await {
            Some(Err(Error::ConnectionReadTimeout)) => {}
            other => panic!("expected the idle limit, got {other:?}"),
        }
    }
}
