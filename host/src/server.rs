//! The HTTP side: accepts connections, answers Spin's well-known routes, routes everything
//! else to a fresh component instance, and drains in-flight requests on shutdown.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tracing::Instrument;
use wasmtime_wasi_http::WasiHttpView as _;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::activity::{Metered, StopWhenLeft, Watched};
use crate::capacity::{Capacity, Slot, is_event_stream};
use crate::config::HostConfig;
use crate::error::RequestError;
use crate::runtime::Runtime;
use crate::trace::RequestContext;

const REQUEST_ID: HeaderName = HeaderName::from_static(mp3conv_contract::trace::REQUEST_ID);
const WELL_KNOWN: &str = "/.well-known/spin/";

/// Serves `runtime` on `listener` until `shutdown` resolves, then drains for up to
/// `config.shutdown_grace`.
pub async fn serve(
    runtime: Arc<Runtime>,
    listener: TcpListener,
    config: &HostConfig,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let local_addr = listener.local_addr()?;
    let grace = config.shutdown_grace;
    let handler = Arc::new(Handler {
        runtime: runtime.clone(),
        capacity: Capacity::new(config),
        body_idle_timeout: config.body_idle_timeout,
        local_addr,
    });
    let header_read_timeout = config.header_read_timeout;
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, client) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors and the like: keep serving the connections we have.
                    tracing::warn!("accept failed: {err}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Without it small responses wait on Nagle's algorithm (43 ms p50 instead of 0.2 ms).
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!("cannot set TCP_NODELAY: {err}");
        }
        let handler = handler.clone();
        let service = hyper::service::service_fn(move |request| {
            let handler = handler.clone();
            async move { Ok::<_, Infallible>(handler.handle(request, client).await) }
        });
        let connection = http1::Builder::new()
            .keep_alive(true)
            // A client that never finishes its headers must not hold a connection forever.
            .timer(TokioTimer::new())
            .header_read_timeout(header_read_timeout)
            .serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(%client, "connection ended: {err}");
            }
        });
    }
    drop(listener);
    tracing::info!(
        grace_secs = grace.as_secs_f64(),
        "shutting down: draining requests in flight"
    );
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(grace) => tracing::warn!("grace period over: dropping the connections left"),
    }
    runtime.close().await;
    Ok(())
}

struct Handler {
    runtime: Arc<Runtime>,
    capacity: Capacity,
    body_idle_timeout: Duration,
    local_addr: SocketAddr,
}

/// What one request did, for its log line.
#[derive(Default)]
struct Outcome {
    route: Option<String>,
    component: Option<String>,
    instantiate_us: Option<u64>,
    /// Whether the request took an event stream's slot.
    stream: bool,
}

impl Handler {
    async fn handle(
        &self,
        request: Request<Incoming>,
        client: SocketAddr,
    ) -> Response<HyperOutgoingBody> {
        let started = Instant::now();
        let context = RequestContext::from_headers(request.headers());
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let span = tracing::info_span!(
            "request",
            request_id = %context.request_id,
            trace_id = %context.trace_id(),
        );
        async {
            let mut outcome = Outcome::default();
            let mut response = match self.dispatch(request, client, &context, &mut outcome).await {
                Ok(response) => response,
                Err(err) => {
                    if let RequestError::Component { cause, .. } = &err {
                        tracing::error!("{cause:?}");
                    }
                    error_response(&err, &context.request_id)
                }
            };
            if let Ok(value) = HeaderValue::from_str(&context.request_id) {
                response.headers_mut().insert(REQUEST_ID, value);
            }
            tracing::info!(
                %method,
                %path,
                route = %outcome.route.as_deref().unwrap_or("-"),
                component = %outcome.component.as_deref().unwrap_or("-"),
                status = response.status().as_u16(),
                duration_ms = started.elapsed().as_secs_f64() * 1000.0,
                instantiate_us = outcome.instantiate_us,
                stream = outcome.stream,
                "request"
            );
            response
        }
        .instrument(span)
        .await
    }

    async fn dispatch(
        &self,
        request: Request<Incoming>,
        client: SocketAddr,
        context: &RequestContext,
        outcome: &mut Outcome,
    ) -> Result<Response<HyperOutgoingBody>, RequestError> {
        let path = request.uri().path().to_owned();
        if let Some(name) = path.strip_prefix(WELL_KNOWN) {
            return Ok(self.well_known(name));
        }
        let runtime = &self.runtime;
        let (matched, component_name) = runtime.router.route(&path).ok_or(RequestError::NoRoute)?;
        outcome.route = Some(matched.route.pattern().to_owned());
        outcome.component = Some(component_name.to_owned());
        // A stream holds its instance for minutes: it takes a stream's slot, not a request's.
        outcome.stream = is_event_stream(&request);
        let slot = self.capacity.admit(client.ip(), outcome.stream)?;

        let (mut parts, body) = request.into_parts();
        let host = match parts
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
        {
            Some(host) => host.to_owned(),
            None => {
                let host = self.local_addr.to_string();
                parts.headers.insert(
                    http::header::HOST,
                    HeaderValue::from_str(&host)
                        .map_err(|e| RequestError::BadRequest(e.to_string()))?,
                );
                host
            }
        };
        let path_and_query = parts
            .uri
            .path_and_query()
            .map_or("/", |pq| pq.as_str())
            .to_owned();
        set_spin_headers(
            &mut parts.headers,
            SpinHeaders {
                full_url: &format!("http://{host}{path_and_query}"),
                path_info: &matched.path_info,
                route: matched.route.pattern(),
                component_route: matched.route.without_wildcard(),
                client,
                params: &matched.params,
                context,
            },
        )?;

        let invoked = invoke(
            runtime,
            component_name,
            Request::from_parts(parts, body),
            Some(slot),
            Some(self.body_idle_timeout),
            outcome.stream,
        )
        .await;
        outcome.instantiate_us = Some(invoked.instantiate_us.load(Ordering::Relaxed));
        let (response, task) = invoked.result?;
        let component = component_name.to_owned();
        tokio::spawn(
            async move {
                match task.await {
                    Ok(Ok(())) => {}
                    Ok(Err(Failure::Timeout)) => {
                        tracing::warn!(%component, "time limit reached while streaming the response")
                    }
                    Ok(Err(Failure::BodyStalled)) => {
                        tracing::warn!(%component, "the request body stalled while streaming the response")
                    }
                    Ok(Err(Failure::Trap(err))) => {
                        tracing::warn!(%component, "component failed after sending the response head: {err:?}")
                    }
                    Ok(Err(Failure::ClientLeft)) => {
                        tracing::info!(%component, "the client left the stream: component stopped")
                    }
                    Err(err) => tracing::error!(%component, "component task panicked: {err}"),
                }
            }
            .in_current_span(),
        );
        Ok(response)
    }

    fn well_known(&self, name: &str) -> Response<HyperOutgoingBody> {
        match name {
            "health" => text_response(StatusCode::OK, "text/plain", Bytes::from_static(b"OK")),
            "info" => {
                let info = serde_json::json!({
                    "name": self.runtime.app_name,
                    "version": self.runtime.app_version,
                });
                text_response(
                    StatusCode::OK,
                    "application/json",
                    Bytes::from(serde_json::to_vec_pretty(&info).unwrap_or_default()),
                )
            }
            _ => error_response(&RequestError::NoRoute, ""),
        }
    }
}

/// Spin service chaining: a request a component sent to `http://<name>.spin.internal/...`,
/// run in-process by component `name` without touching the network.
pub(crate) async fn chain(
    runtime: &Runtime,
    component_name: &str,
    request: Request<wasmtime_wasi_http::WasiBody>,
) -> Result<
    (
        Response<HyperOutgoingBody>,
        impl Future<Output = wasmtime_wasi_http::Result<()>> + Send + 'static,
    ),
    wasmtime_wasi_http::Error,
> {
    let (mut parts, body) = request.into_parts();
    let path = parts.uri.path().to_owned();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .to_owned();
    // The calling component passes its request's id and trace on, or a new one starts here.
    let context = RequestContext::from_headers(&parts.headers);
    // The component's own route, when the path matches it, as Spin reports it.
    let matched = runtime
        .router
        .route(&path)
        .filter(|(_, name)| *name == component_name)
        .map(|(matched, _)| matched);
    let (route, component_route, path_info, params) = match &matched {
        Some(m) => (
            m.route.pattern(),
            m.route.without_wildcard(),
            m.path_info.as_str(),
            m.params.as_slice(),
        ),
        None => ("/...", "", path.as_str(), &[][..]),
    };
    let internal =
        |err: RequestError| wasmtime_wasi_http::Error::InternalError(Some(err.to_string()));
    set_spin_headers(
        &mut parts.headers,
        SpinHeaders {
            full_url: &format!("http://{component_name}.spin.internal{path_and_query}"),
            path_info,
            route,
            component_route,
            client: SocketAddr::from(([127, 0, 0, 1], 0)),
            params,
            context: &context,
        },
    )
    .map_err(internal)?;
    let invoked = invoke(
        runtime,
        component_name,
        Request::from_parts(parts, body),
        None,
        None,
        false,
    )
    .await;
    let (response, task) = invoked.result.map_err(|err| {
        tracing::warn!(component = %component_name, "chained request failed: {err}");
        internal(err)
    })?;
    let component = component_name.to_owned();
    let finished = async move {
        match task.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(Failure::Timeout)) => Err(wasmtime_wasi_http::Error::HttpResponseTimeout),
            Ok(Err(Failure::BodyStalled)) => Err(wasmtime_wasi_http::Error::ConnectionReadTimeout),
            // Not a stream: its guest is never stopped for the client leaving.
            Ok(Err(Failure::ClientLeft)) => Err(wasmtime_wasi_http::Error::InternalError(Some(
                "the client left".into(),
            ))),
            Ok(Err(Failure::Trap(err))) => {
                tracing::warn!(%component, "chained component failed: {err:?}");
                Err(wasmtime_wasi_http::Error::InternalError(Some(
                    err.to_string(),
                )))
            }
            Err(err) => Err(wasmtime_wasi_http::Error::InternalError(Some(
                err.to_string(),
            ))),
        }
    };
    Ok((response, finished))
}

/// What [`invoke`] produced: the response head (the body may still be streaming) and the
/// task running the guest, or why there is no response.
pub(crate) struct Invoked {
    pub instantiate_us: Arc<AtomicU64>,
    pub result: Result<(Response<HyperOutgoingBody>, GuestTask), RequestError>,
}

/// The task running a guest; it ends when the guest returns (after streaming its body).
pub(crate) type GuestTask = tokio::task::JoinHandle<Result<(), Failure>>;

/// Runs one request through a fresh instance of `component_name`. Used for requests from
/// clients (holding `slot`, their body stalling after `body_idle_timeout`; an event `stream`
/// stopping its guest as soon as the client leaves) and for Spin service chaining
/// (`http://<component>.spin.internal`).
pub(crate) async fn invoke<B>(
    runtime: &Runtime,
    component_name: &str,
    request: Request<B>,
    slot: Option<Slot>,
    body_idle_timeout: Option<Duration>,
    stream: bool,
) -> Invoked
where
    B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
    let instantiate_us = Arc::new(AtomicU64::new(0));
    let result = run_guest(
        runtime,
        component_name,
        request,
        slot,
        body_idle_timeout,
        stream,
        instantiate_us.clone(),
    )
    .await;
    Invoked {
        instantiate_us,
        result,
    }
}

async fn run_guest<B>(
    runtime: &Runtime,
    component_name: &str,
    request: Request<B>,
    slot: Option<Slot>,
    body_idle_timeout: Option<Duration>,
    stream: bool,
    instantiate_record: Arc<AtomicU64>,
) -> Result<(Response<HyperOutgoingBody>, GuestTask), RequestError>
where
    B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
    let component = runtime
        .components
        .get(component_name)
        .ok_or(RequestError::NoRoute)?;
    let mut store = runtime.new_store(component);
    let activity = store.data().activity.clone();
    // A stalled body cannot outlast the work limit either.
    let body_idle_timeout = body_idle_timeout.map(|idle| idle.min(activity.limit));
    let request = request.map(|body| Watched::new(body, activity.clone(), body_idle_timeout));
    let incoming = store
        .data_mut()
        .http()
        .new_incoming_request(Scheme::Http, request)
        .map_err(|err| RequestError::BadRequest(format!("{err:#}")))?;
    let (sender, receiver) = oneshot::channel();
    let outparam = store
        .data_mut()
        .http()
        .new_response_outparam(sender)
        .map_err(|cause| component_error(component_name, cause.into()))?;

    let pre = component.pre.clone();
    let timeout = component.context.timeout;
    let watched = activity.clone();
    // The guest runs in its own task so it can keep streaming the body after the head.
    let task = tokio::spawn(
        async move {
            let _slot = slot;
            let run = async {
                let started = Instant::now();
                let proxy = pre.instantiate_async(&mut store).await?;
                instantiate_record.store(started.elapsed().as_micros() as u64, Ordering::Relaxed);
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, incoming, outparam)
                    .await
            };
            let outcome = tokio::select! {
                result = Metered::new(run, watched.clone()) => match result {
                    Ok(()) => Ok(()),
                    Err(err) if is_interrupt(&err) => Err(Failure::Timeout),
                    Err(err) => Err(Failure::Trap(err.into())),
                },
                () = watched.idle_too_long() => Err(Failure::Timeout),
                () = watched.body_stalled() => Err(Failure::BodyStalled),
                // Only a stream's body tells (see `StopWhenLeft`).
                () = watched.client_left() => Err(Failure::ClientLeft),
            };
            if outcome.is_err() {
                // Before the store drops: a response body cut short must not look complete.
                watched.abandon();
            }
            outcome
        }
        .in_current_span(),
    );

    match receiver.await {
        // The guest answered the failed body read itself; the client hears why instead.
        Ok(Ok(_)) if activity.is_stalled() => Err(RequestError::BodyStalled(
            body_idle_timeout.unwrap_or(timeout),
        )),
        Ok(Ok(response)) => Ok((
            response.map(|body| {
                let body = Watched::new(body, activity.clone(), None);
                if stream {
                    StopWhenLeft::new(body, activity).boxed_unsync()
                } else {
                    body.boxed_unsync()
                }
            }),
            task,
        )),
        Ok(Err(code)) => Err(component_error(
            component_name,
            anyhow::anyhow!("the component answered with error code {code:?}"),
        )),
        Err(_) => Err(match task.await {
            Ok(Ok(())) => component_error(
                component_name,
                anyhow::anyhow!("the component returned without setting a response"),
            ),
            Ok(Err(Failure::Timeout)) => RequestError::Timeout(component_name.to_owned(), timeout),
            Ok(Err(Failure::BodyStalled)) => {
                RequestError::BodyStalled(body_idle_timeout.unwrap_or(timeout))
            }
            Ok(Err(Failure::Trap(err))) => component_error(component_name, err),
            // Cannot happen: nobody held the body to leave.
            Ok(Err(Failure::ClientLeft)) => component_error(
                component_name,
                anyhow::anyhow!("the client left before the response head"),
            ),
            Err(err) => component_error(
                component_name,
                anyhow::anyhow!("component task panicked: {err}"),
            ),
        }),
    }
}

pub(crate) enum Failure {
    Timeout,
    /// The client's request body stalled.
    BodyStalled,
    /// The client left an event stream before its end.
    ClientLeft,
    Trap(anyhow::Error),
}

fn is_interrupt(err: &wasmtime::Error) -> bool {
    matches!(
        err.downcast_ref::<wasmtime::Trap>(),
        Some(wasmtime::Trap::Interrupt)
    )
}

fn component_error(component: &str, cause: anyhow::Error) -> RequestError {
    RequestError::Component {
        component: component.to_owned(),
        cause,
    }
}

struct SpinHeaders<'a> {
    full_url: &'a str,
    path_info: &'a str,
    route: &'a str,
    component_route: &'a str,
    client: SocketAddr,
    params: &'a [(String, String)],
    context: &'a RequestContext,
}

/// Sets the headers Spin gives every request, after removing any a client sent itself, and
/// the request's id and trace context.
fn set_spin_headers(headers: &mut HeaderMap, spin: SpinHeaders<'_>) -> Result<(), RequestError> {
    let forged: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().starts_with("spin-"))
        .cloned()
        .collect();
    for name in forged {
        headers.remove(name);
    }
    let client = spin.client.to_string();
    let mut set = |name: String, value: &str| -> Result<(), RequestError> {
        let name =
            HeaderName::try_from(name).map_err(|e| RequestError::BadRequest(e.to_string()))?;
        let value =
            HeaderValue::from_str(value).map_err(|e| RequestError::BadRequest(e.to_string()))?;
        headers.insert(name, value);
        Ok(())
    };
    set("spin-full-url".into(), spin.full_url)?;
    set("spin-path-info".into(), spin.path_info)?;
    set("spin-matched-route".into(), spin.route)?;
    set("spin-base-path".into(), "/")?;
    set("spin-raw-component-route".into(), spin.route)?;
    set("spin-component-route".into(), spin.component_route)?;
    set("spin-client-addr".into(), &client)?;
    for (name, value) in spin.params {
        set(
            format!("spin-path-match-{}", name.to_ascii_lowercase()),
            value,
        )?;
    }
    spin.context.apply(headers);
    Ok(())
}

fn text_response(
    status: StatusCode,
    content_type: &'static str,
    body: Bytes,
) -> Response<HyperOutgoingBody> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    response
}

fn error_response(err: &RequestError, request_id: &str) -> Response<HyperOutgoingBody> {
    err.to_response(request_id).map(full)
}

fn full(bytes: Bytes) -> HyperOutgoingBody {
    Full::new(bytes)
        .map_err(|never: Infallible| match never {})
        .boxed_unsync()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forged_spin_headers_are_replaced() {
        let mut headers = HeaderMap::new();
        headers.insert("spin-client-addr", HeaderValue::from_static("10.0.0.1:1"));
        headers.insert("spin-made-up", HeaderValue::from_static("x"));
        headers.insert("x-request-id", HeaderValue::from_static("r1"));
        let context = RequestContext::from_headers(&headers);
        set_spin_headers(
            &mut headers,
            SpinHeaders {
                full_url: "http://h/a/b?c",
                path_info: "/b",
                route: "/a/...",
                component_route: "/a",
                client: "127.0.0.1:5".parse().unwrap(),
                params: &[("id".into(), "7".into())],
                context: &context,
            },
        )
        .unwrap();
        assert_eq!(headers["spin-client-addr"], "127.0.0.1:5");
        assert!(headers.get("spin-made-up").is_none());
        assert_eq!(headers["spin-path-info"], "/b");
        assert_eq!(headers["spin-component-route"], "/a");
        assert_eq!(headers["spin-path-match-id"], "7");
        assert_eq!(headers["x-request-id"], "r1");
        assert_eq!(headers["traceparent"], context.trace.to_string().as_str());
    }
}
