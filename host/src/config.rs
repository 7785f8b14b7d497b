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
    /// The work limit of a request: the CPU time its guest may use, and the time it may go
    /// without progress (no body chunk in or out, the guest not running). A transfer that
    /// keeps moving is not cut, however long it takes (see [`crate::activity`]).
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
/// The host's settings. `Debug` shows variable names only: their values include secrets
/// (signing keys, the worker and events tokens).
#[derive(Clone)]
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
    /// Requests in flight at once from one client IP address; more are answered 429, so one
    /// client cannot take every slot.
    pub max_requests_per_client: usize,
    /// Event streams (`GET` requests of a path ending in `/events` that accept
    /// `text/event-stream`, see [`crate::capacity::is_event_stream`]) open at once; more
    /// are answered 503. A stream holds an instance for minutes, so streams have slots of their
    /// own and never take the ordinary requests' ones.
    pub max_streams: usize,
    /// Event streams open at once from one client IP address; more are answered 429.
    pub max_streams_per_client: usize,
    /// How long a client's request body may stall (the guest waiting for it) before the
    /// request is answered 408: much shorter than the work limit, so slow senders do not
    /// hold slots.
    pub body_idle_timeout: Duration,
    /// How long a client may take to send a request's headers.
    pub header_read_timeout: Duration,
    /// Limits for components without an override.
    pub limits: Limits,
    /// Per-component overrides, by component name.
    pub component_limits: BTreeMap<String, Limits>,
    /// How long a shutdown waits for requests in flight.
    pub shutdown_grace: Duration,
    /// PEM root certificates trusted for outbound https besides the Mozilla roots (the
    /// binary reads `SSL_CERT_FILE`).
    pub extra_root_certificates: Option<PathBuf>,
    /// Variable values supplied by the program (e.g. generated development keys), by variable
    /// name. `SPIN_VARIABLE_*` in the environment still wins over these.
    pub variables: BTreeMap<String, String>,
    /// Destinations served in this process (the worker `up` embeds): their requests skip the
    /// network.
    pub in_process: Vec<crate::connector::InProcess>,
}

impl std::fmt::Debug for HostConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostConfig")
            .field("manifest", &self.manifest)
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field("cache_dir", &self.cache_dir)
            .field("max_concurrent_requests", &self.max_concurrent_requests)
            .field("max_requests_per_client", &self.max_requests_per_client)
            .field("max_streams", &self.max_streams)
            .field("max_streams_per_client", &self.max_streams_per_client)
            .field("body_idle_timeout", &self.body_idle_timeout)
            .field("header_read_timeout", &self.header_read_timeout)
            .field("limits", &self.limits)
            .field("component_limits", &self.component_limits)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("extra_root_certificates", &self.extra_root_certificates)
            .field("variables", &self.variables.keys().collect::<Vec<_>>())
            .field("in_process", &self.in_process)
            .finish()
    }
}

impl HostConfig {
    /// The defaults, serving `manifest`.
    pub fn new(manifest: PathBuf) -> HostConfig {
        HostConfig {
            manifest,
            listen: SocketAddr::from(([127, 0, 0, 1], 3000)),
            data_dir: PathBuf::from(".mp3conv"),
            cache_dir: None,
            max_concurrent_requests: 128,
            max_requests_per_client: 64,
            max_streams: 1024,
            max_streams_per_client: 16,
            body_idle_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            limits: Limits::default(),
            component_limits: BTreeMap::new(),
            shutdown_grace: Duration::from_secs(30),
            extra_root_certificates: None,
            variables: BTreeMap::new(),
            in_process: Vec::new(),
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

    /// Instances that may be alive at once: one per ordinary request slot and one per stream
    /// slot (the pooling allocator reserves address space for each).
    pub fn max_instances(&self) -> usize {
        self.max_concurrent_requests
            .saturating_add(self.max_streams)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_variable_values() {
        let mut config = HostConfig::new("spin.toml".into());
        config
            .variables
            .insert("worker_token".into(), "s3cret-token-value".into());
        let shown = format!("{config:?}");
        assert!(shown.contains("worker_token"), "{shown}");
        assert!(!shown.contains("s3cret-token-value"), "{shown}");
    }
}
