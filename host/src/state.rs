//! What one request's store holds: WASI and WASI-HTTP contexts, the resource table, memory
//! limits, and the component's share of the host's services.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt as _;
use wasmtime::StoreLimits;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use crate::connector::Connector;
use crate::outbound::AllowedHosts;
use crate::spin::mysql::MysqlPools;

/// Services shared by every component and request.
pub struct Services {
    pub mysql: MysqlPools,
    /// Outbound HTTP (and https, with the TLS configuration built once at start-up).
    pub connector: Connector,
    /// The runtime itself, for service chaining; set once it is built.
    pub runtime: std::sync::OnceLock<std::sync::Weak<crate::runtime::Runtime>>,
}

impl Services {
    pub fn new(connector: Connector) -> Services {
        Services {
            mysql: MysqlPools::default(),
            connector,
            runtime: std::sync::OnceLock::new(),
        }
    }
}

/// A component's fixed facts, computed once at start-up.
pub struct ComponentContext {
    pub name: String,
    /// Component variables with their templates already rendered.
    pub variables: BTreeMap<String, String>,
    pub environment: Vec<(String, String)>,
    pub allowed_outbound_hosts: AllowedHosts,
    pub sqlite: BTreeMap<String, Arc<crate::spin::sqlite::SqliteDb>>,
    pub memory_limit: usize,
    pub timeout: Duration,
}

/// The data of one request's `Store`.
pub struct HostState {
    pub component: Arc<ComponentContext>,
    pub services: Arc<Services>,
    pub table: ResourceTable,
    pub limits: StoreLimits,
    /// The request's CPU time and progress, which its time limit bounds.
    pub activity: Arc<crate::activity::Activity>,
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
        let activity = Arc::new(crate::activity::Activity::new(component.timeout));
        HostState {
            hooks: OutboundHttp {
                component: component.clone(),
                services: services.clone(),
                activity: activity.clone(),
            },
            activity,
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
    /// The sending request's: a body its guest was stopped in the middle of ends in an error.
    activity: Arc<crate::activity::Activity>,
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
        // wasmtime ends the body of a guest stopped mid-way (time limit, trap, stalled client)
        // as if it were complete: without this the receiver would take part of an upload for
        // all of it, now that pooled connections outlive the request that sent them.
        let activity = self.activity.clone();
        let request =
            request.map(|body| crate::activity::Watched::new(body, activity, None).boxed_unsync());
        let uri = request.uri();
        let scheme = uri.scheme_str().unwrap_or("http").to_owned();
        let host = uri.host().unwrap_or_default().to_owned();
        let port = uri
            .port_u16()
            .or_else(|| crate::outbound::default_port(&scheme));
        let admission = port.and_then(|port| {
            self.component
                .allowed_outbound_hosts
                .admission(&scheme, &host, port)
        });
        let Some(admission) = admission else {
            tracing::warn!(
                component = %self.component.name,
                destination = %format!("{scheme}://{host}:{}", port.unwrap_or_default()),
                "outbound request denied: not in allowed_outbound_hosts"
            );
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        };
        if let Some(target) = crate::outbound::chained_component(&host) {
            // Chaining runs a component in-process, past every address check: only an entry
            // naming `<component>.spin.internal` opens it, never a wildcard a user's URL matched.
            if admission != crate::outbound::Admission::Named {
                tracing::warn!(
                    component = %self.component.name,
                    target = %target,
                    "service chaining denied: only an exact allowed_outbound_hosts entry opens it"
                );
                return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
            }
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
        let services = self.services.clone();
        Box::new(async move { services.connector.send(request, options, admission).await })
    }
}
