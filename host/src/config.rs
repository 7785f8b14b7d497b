//! The host's settings, loaded once at start-up (the binary maps flags and `MP3CONV_*`
//! environment variables onto this struct).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Resource limits for one component's instances.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Largest linear memory an instance may grow to, in bytes.
    pub memory: usize,
    /// Longest a request may take, from instantiation to the end of the response body.
    pub timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            memory: 128 << 20,
            timeout: Duration::from_secs(60),
        }
    }
}

/// Everything the host needs to run an application.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// The `spin.toml` to run.
    pub manifest: PathBuf,
    /// Where to listen; port 0 picks a free one (the bound address is printed).
    pub listen: SocketAddr,
    /// SQLite files (and, by default, the compiled-component cache) live here.
    pub data_dir: PathBuf,
    /// Where compiled components are cached; `None` means `<data_dir>/cache/components`.
    pub cache_dir: Option<PathBuf>,
    /// Requests in flight at once; more are answered 503.
    pub max_concurrent_requests: usize,
    /// Limits for components without an override.
    pub limits: Limits,
    /// Per-component overrides, by component name.
    pub component_limits: BTreeMap<String, Limits>,
    /// How long a shutdown waits for requests in flight.
    pub shutdown_grace: Duration,
    /// Variable values supplied by the program (e.g. generated development keys), by variable
    /// name. `SPIN_VARIABLE_*` in the environment still wins over these.
    pub variables: BTreeMap<String, String>,
}

impl HostConfig {
    pub fn new(manifest: PathBuf) -> HostConfig {
        HostConfig {
            manifest,
            listen: SocketAddr::from(([127, 0, 0, 1], 3000)),
            data_dir: PathBuf::from(".mp3conv"),
            cache_dir: None,
            max_concurrent_requests: 128,
            limits: Limits::default(),
            component_limits: BTreeMap::new(),
            shutdown_grace: Duration::from_secs(30),
            variables: BTreeMap::new(),
        }
    }

    /// The limits that apply to `component`.
    pub fn limits_for(&self, component: &str) -> Limits {
        self.component_limits
            .get(component)
            .copied()
            .unwrap_or(self.limits)
    }

    /// Compiled components, keyed by content hash and engine compatibility.
    pub fn cache_dir(&self) -> PathBuf {
        self.cache_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("cache").join("components"))
    }
}
