//! mp3conv's function host: runs the Spin WASI HTTP components described by a `spin.toml`
//! (manifest version 2) on wasmtime, as `spin up` would, with the Spin host interfaces the
//! project's functions use (variables, SQLite, MySQL, outbound HTTP).
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let config = mp3conv_host::HostConfig::new("spin.toml".into());
//! let host = mp3conv_host::Host::build(config).await?;
//! println!("Serving http://{}", host.local_addr());
//! host.run_until_stopped(mp3conv_host::shutdown_signal()).await
//! # }
//! ```

pub mod activity;
pub mod capacity;
pub mod config;
pub mod connector;
pub mod error;
pub mod manifest;
pub mod outbound;
pub mod routes;
pub mod runtime;
pub mod server;
pub mod spin;
pub mod state;
pub mod telemetry;
pub mod tls;
mod trace;
pub mod variables;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::TcpListener;

pub use config::{HostConfig, Limits};
pub use error::StartupError;

/// A host with its application loaded and its port bound, not yet serving.
pub struct Host {
    runtime: Arc<runtime::Runtime>,
    listener: TcpListener,
    config: HostConfig,
}

impl Host {
    /// Loads and validates the manifest, compiles its components and binds the listener.
    /// Variables come from `SPIN_VARIABLE_*` in the environment.
    pub async fn build(config: HostConfig) -> Result<Host, StartupError> {
        let app = load_app(&config)?;
        for (name, limits) in &config.component_limits {
            if !app.components.contains_key(name) {
                return Err(StartupError::Component {
                    component: name.clone(),
                    message: "has limits configured but is not in the manifest".into(),
                });
            }
            if limits.memory == 0 {
                return Err(StartupError::Component {
                    component: name.clone(),
                    message: "memory limit must be above zero".into(),
                });
            }
        }
        create_private_dir(&config.data_dir).with_context(|| {
            format!("cannot create data directory {}", config.data_dir.display())
        })?;
        let runtime = {
            let config = config.clone();
            tokio::task::spawn_blocking(move || runtime::Runtime::build(app, &config))
                .await
                .context("component loading panicked")??
        };
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let runtime = Arc::new(runtime);
        // Chained requests (`http://<component>.spin.internal`) run on this same runtime.
        let _ = runtime.services.runtime.set(Arc::downgrade(&runtime));
        Ok(Host {
            runtime,
            listener,
            config,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The routes served, as `(route, component)`, for the start-up banner.
    pub fn routes(&self) -> Vec<(String, String)> {
        self.runtime.router.describe()
    }

    /// Serves until `shutdown` resolves, then drains requests in flight.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        server::serve(self.runtime, self.listener, &self.config, shutdown).await
    }
}

/// Loads the manifest with variables from `SPIN_VARIABLE_*`, then those the program supplied.
fn load_app(config: &HostConfig) -> Result<manifest::App, StartupError> {
    let supplied: std::collections::BTreeMap<String, String> = config
        .variables
        .iter()
        .map(|(name, value)| (variables::env_name(name), value.clone()))
        .collect();
    let lookup = |env_name: &str| {
        std::env::var(env_name)
            .ok()
            .or_else(|| supplied.get(env_name).cloned())
    };
    manifest::App::load(&config.manifest, &lookup)
}

/// The application variables' resolved values, as components would see them through templates.
pub fn app_variables(
    config: &HostConfig,
) -> Result<std::collections::BTreeMap<String, String>, StartupError> {
    Ok(load_app(config)?
        .variables
        .into_iter()
        .map(|(name, variable)| (name, variable.value))
        .collect())
}

/// Creates `dir` (and its parents) if missing, private to this user (0700): the data directory
/// holds password hashes, webhook secrets, signing keys and users' files. An existing directory
/// is left as it is (it may be shared on purpose: `--data-dir .`, or a key directory whose
/// `jwks.json` a web server publishes), with a warning when others can enter it.
pub fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
    if let Ok(existing) = std::fs::metadata(dir) {
        let mode = existing.permissions().mode();
        if existing.is_dir() && mode & 0o077 != 0 {
            tracing::warn!(
                dir = %dir.display(),
                mode = %format!("{:o}", mode & 0o777),
                "this directory is open to other users; `chmod 700` it unless that is intended \
                 (files mp3conv creates in it are private either way)"
            );
        }
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Resolves on SIGTERM (what Kubernetes and Knative send) or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!("cannot listen for Ctrl-C: {err}");
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!("cannot listen for SIGTERM: {err}");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = ctrl_c => tracing::info!("received SIGINT"),
        () = terminate => tracing::info!("received SIGTERM"),
    }
}

#[cfg(test)]
mod private_dir_tests {
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn new_directories_are_private_and_existing_ones_are_left_alone() {
        let root = tempfile::tempdir().unwrap();
        let fresh = root.path().join("a/b");
        super::create_private_dir(&fresh).unwrap();
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&fresh), 0o700);
        let shared = root.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o755)).unwrap();
        super::create_private_dir(&shared).unwrap();
        assert_eq!(mode(&shared), 0o755);
    }
}
