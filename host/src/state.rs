//! What one request's store holds: WASI and WASI-HTTP contexts, the resource table, memory
//! limits, and the component's share of the host's services.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::SqlitePool;
use wasmtime::StoreLimits;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use crate::outbound::AllowedHosts;
use crate::spin::mysql::MysqlPools;

/// Services shared by every component and request.
#[derive(Default)]
pub struct Services {
    pub mysql: MysqlPools,
    /// The runtime itself, for service chaining; set once it is built.
    pub runtime: std::sync::OnceLock<std::sync::Weak<crate::runtime::Runtime>>,
}

/// A component's fixed facts, computed once at start-up.
pub struct ComponentContext {
    pub name: String,
    /// Component variables with their templates already rendered.
    pub variables: BTreeMap<String, String>,
    pub environment: Vec<(String, String)>,
    pub allowed_outbound_hosts: AllowedHosts,
    pub sqlite: BTreeMap<String, SqlitePool>,
    pub memory_limit: usize,
    pub timeout: Duration,
}

/// The data of one request's `Store`.
pub struct HostState {
    pub component: Arc<ComponentContext>,
    pub services: Arc<Services>,
    pub table: ResourceTable,
    pub limits: StoreLimits,
    /// When the request must be finished; checked on every epoch tick.
    pub deadline: Instant,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    hooks: OutboundHttp,
}

impl HostState {
    pub fn new(component: Arc<ComponentContext>, services: Arc<Services>) -> HostState {
        let mut wasi = WasiCtx::builder();
        wasi.inherit_stdout()
            .inherit_stderr()
            .envs(&component.environment);
        let limits = wasmtime::StoreLimitsBuilder::new()
            .memory_size(component.memory_limit)
            .build();
        HostState {
            hooks: OutboundHttp {
                component: component.clone(),
                services: services.clone(),
            },
            deadline: Instant::now() + component.timeout,
            component,
            services,
            table: ResourceTable::new(),
            limits,
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// Outbound HTTP as Spin enforces it: only to `allowed_outbound_hosts`, anything else is
/// refused with `HttpRequestDenied` before a connection is made.
struct OutboundHttp {
    component: Arc<ComponentContext>,
    services: Arc<Services>,
}

type SendResult = wasmtime_wasi_http::Result<(
    http::Response<wasmtime_wasi_http::WasiBody>,
    Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
)>;

impl WasiHttpHooks for OutboundHttp {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        let uri = request.uri();
        let scheme = uri.scheme_str().unwrap_or("http").to_owned();
        let host = uri.host().unwrap_or_default().to_owned();
        let port = uri
            .port_u16()
            .or_else(|| crate::outbound::default_port(&scheme));
        let allowed = port.is_some_and(|port| {
            self.component
                .allowed_outbound_hosts
                .allows(&scheme, &host, port)
        });
        if !allowed {
            tracing::warn!(
                component = %self.component.name,
                destination = %format!("{scheme}://{host}:{}", port.unwrap_or_default()),
                "outbound request denied: not in allowed_outbound_hosts"
            );
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        if let Some(target) = crate::outbound::chained_component(&host) {
            let target = target.to_owned();
            let runtime = self
                .services
                .runtime
                .get()
                .and_then(std::sync::Weak::upgrade);
            return Box::new(async move {
                let runtime = runtime.ok_or(wasmtime_wasi_http::Error::DestinationUnavailable)?;
                if !runtime.components.contains_key(&target) {
                    return Err(wasmtime_wasi_http::Error::DestinationNotFound);
                }
                let (response, finished) = crate::server::chain(&runtime, &target, request).await?;
                Ok((
                    response,
                    Box::new(finished) as Box<dyn Future<Output = _> + Send>,
                ))
            });
        }
        Box::new(async move {
            use http_body_util::BodyExt;
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = _> + Send>,
            ))
        })
    }
}
