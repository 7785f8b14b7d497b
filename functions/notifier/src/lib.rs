//! The notifier: turns the worker's announcements on the `mp3` queue, delivered as CloudEvents
//! by Knative Eventing's RabbitmqSource (or `mp3conv`'s local bridge), into one in-app
//! notification per job outcome, a signed webhook delivery and an email (a Spin HTTP
//! component).
//!
//! [`event`] reads CloudEvents (the worker's `mp3conv_contract` announcement inside),
//! [`notify`] decides, records, delivers (with backon's retry schedule) and logs, [`webhook`]
//! signs (the `standardwebhooks` crate), [`http`] answers (who may post, how large, one answer
//! for every event); all plain Rust tested natively. The component (`component`, wasm only)
//! supplies Spin's database, the kit's outbound HTTP client (trace headers forwarded), the
//! clock and the log.

pub mod config;
pub mod event;
pub mod http;
pub mod notify;
pub mod webhook;

#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)] // the export glue `#[http_component]` generates
mod component;
