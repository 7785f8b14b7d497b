//! The wasmtime side: one engine with the pooling allocator, components compiled once (and
//! cached on disk), pre-instantiated once, and a fresh instance for every request.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, UpdateDeadline,
};
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use crate::config::HostConfig;
use crate::error::StartupError;
use crate::manifest::App;
use crate::routes::Router;
use crate::state::{ComponentContext, HostState, Services};

/// How often the epoch advances: the granularity of time limits and of yielding.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// A component ready to serve.
pub struct LoadedComponent {
    pub context: Arc<ComponentContext>,
    pub pre: ProxyPre<HostState>,
}

/// The running application: engine, components, routes and shared services.
pub struct Runtime {
    pub engine: Engine,
    pub app_name: String,
    pub app_version: Option<String>,
    pub router: Router,
    pub components: HashMap<String, LoadedComponent>,
    pub services: Arc<Services>,
    epoch_stop: Arc<AtomicBool>,
}

impl Runtime {
    /// Compiles (or loads from the cache) and pre-instantiates every component of `app`.
    pub fn build(app: App, config: &HostConfig) -> Result<Runtime, StartupError> {
        let max_memory = app
            .components
            .keys()
            .map(|name| config.limits_for(name).memory)
            .max()
            .unwrap_or(config.limits.memory);
        let engine = engine(config.max_instances(), max_memory)?;

        let mut linker = Linker::<HostState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(anyhow::Error::from)
            .context("adding WASI to the linker")?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(anyhow::Error::from)
            .context("adding WASI HTTP to the linker")?;
        crate::spin::add_to_linker(&mut linker)
            .map_err(anyhow::Error::from)
            .context("adding Spin interfaces to the linker")?;

        let cache_dir = config.cache_dir();
        let mut components = HashMap::new();
        for (name, spec) in &app.components {
            let fail = |message: String| StartupError::Component {
                component: name.clone(),
                message,
            };
            let started = Instant::now();
            let (component, cached) = load_component(&engine, &spec.source, &cache_dir)
                .map_err(|err| fail(format!("{err:#}")))?;
            let pre = linker
                .instantiate_pre(&component)
                .map_err(|err| fail(format!("cannot link: {err:#}")))?;
            let pre = ProxyPre::new(pre)
                .map_err(|err| fail(format!("is not a WASI HTTP component: {err:#}")))?;
            tracing::info!(
                component = %name,
                cached,
                elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
                "component ready"
            );

            let mut variables = BTreeMap::new();
            for (var, template) in &spec.variables {
                let value = template
                    .render(&app.variables)
                    .map_err(|message| fail(format!("variable `{var}` {message}")))?;
                variables.insert(var.clone(), value);
            }
            let sqlite = crate::spin::sqlite::open_pools(&config.data_dir, &spec.sqlite_databases)
                .map_err(|err| fail(format!("cannot open SQLite: {err:#}")))?;
            let limits = config.limits_for(name);
            let context = ComponentContext {
                name: name.clone(),
                variables,
                environment: spec.environment.clone().into_iter().collect(),
                allowed_outbound_hosts: spec.allowed_outbound_hosts.clone(),
                sqlite,
                memory_limit: limits.memory,
                timeout: limits.timeout,
            };
            components.insert(
                name.clone(),
                LoadedComponent {
                    context: Arc::new(context),
                    pre,
                },
            );
        }

        let tls = crate::tls::client_config(config.extra_root_certificates.as_deref())
            .context("SSL_CERT_FILE")?;
        let connector = crate::connector::Connector::new(tls, &config.in_process);

        let epoch_stop = Arc::new(AtomicBool::new(false));
        start_epoch_ticker(engine.clone(), epoch_stop.clone());
        Ok(Runtime {
            engine,
            app_name: app.name,
            app_version: app.version,
            router: Router::new(app.routes),
            components,
            services: Arc::new(Services::new(connector)),
            epoch_stop,
        })
    }

    /// A store for one request to `component`, with its limits armed.
    pub fn new_store(&self, component: &LoadedComponent) -> Store<HostState> {
        let state = HostState::new(component.context.clone(), self.services.clone());
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limits);
        store.set_epoch_deadline(1);
        // On every tick: past its CPU time the guest traps; otherwise it yields so one busy
        // guest cannot hold an executor thread.
        store.epoch_deadline_callback(|store| {
            if store.data().activity.over_cpu_limit() {
                Ok(UpdateDeadline::Interrupt)
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        store
    }

    /// Closes shared connections.
    pub async fn close(&self) {
        self.epoch_stop.store(true, Ordering::Relaxed);
        self.services.mysql.close().await;
        for component in self.components.values() {
            for db in component.context.sqlite.values() {
                db.close();
            }
        }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.epoch_stop.store(true, Ordering::Relaxed);
    }
}

fn engine(max_instances: usize, max_memory: usize) -> anyhow::Result<Engine> {
    let instances = u32::try_from(max_instances).unwrap_or(u32::MAX).max(1);
    let mut pooling = PoolingAllocationConfig::new();
    pooling
        .total_component_instances(instances)
        .total_core_instances(instances.saturating_mul(8))
        .total_memories(instances.saturating_mul(2))
        .total_tables(instances.saturating_mul(4))
        .total_stacks(instances)
        .max_memory_size(max_memory);
    let mut config = Config::new();
    config
        .epoch_interruption(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pooling));
    Ok(Engine::new(&config)?)
}

/// A thread, not a task: a guest spinning on every executor thread must still see time pass.
fn start_epoch_ticker(engine: Engine, stop: Arc<AtomicBool>) {
    std::thread::Builder::new()
        .name("epoch-ticker".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(EPOCH_TICK);
                engine.increment_epoch();
            }
        })
        .expect("spawning the epoch ticker thread");
}

/// Loads a component, compiling it only when the cache has no build of these exact bytes for
/// this exact engine.
/// Returns the component and whether it came from the cache.
fn load_component(
    engine: &Engine,
    source: &Path,
    cache_dir: &Path,
) -> anyhow::Result<(Component, bool)> {
    let bytes =
        std::fs::read(source).with_context(|| format!("cannot read {}", source.display()))?;
    let mut engine_hash = std::collections::hash_map::DefaultHasher::new();
    engine
        .precompile_compatibility_hash()
        .hash(&mut engine_hash);
    let key = format!(
        "{:x}-{:016x}.cwasm",
        Sha256::digest(&bytes),
        engine_hash.finish()
    );
    let cached = cache_dir.join(key);
    if cached.exists() {
        // SAFETY: the file is one this host wrote into its own cache directory (atomically, by
        // rename) from `Engine::precompile_component`; wasmtime checks the engine
        // compatibility header before using it.
        #[allow(unsafe_code)]
        match unsafe { Component::deserialize_file(engine, &cached) } {
            Ok(component) => return Ok((component, true)),
            Err(err) => {
                tracing::warn!(path = %cached.display(), "ignoring unusable cached component: {err:#}")
            }
        }
    }
    let compiled = engine
        .precompile_component(&bytes)
        .map_err(anyhow::Error::from)
        .with_context(|| format!("cannot compile {}", source.display()))?;
    if let Err(err) = write_atomically(&cached, &compiled) {
        tracing::warn!(path = %cached.display(), "cannot cache compiled component: {err:#}");
    }
    // SAFETY: `compiled` was produced just above by this engine.
    #[allow(unsafe_code)]
    let component = unsafe { Component::deserialize(engine, &compiled)? };
    Ok((component, false))
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}
