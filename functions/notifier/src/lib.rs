//! The notifier: turns the worker's announcements on the `mp3` queue, delivered as CloudEvents
//! by Knative Eventing's RabbitmqSource (or `mp3conv`'s local bridge), into one in-app
//! notification per job outcome, a signed webhook delivery and an email (a Spin HTTP
//! component).
//!
//! [`event`] reads CloudEvents, [`notify`] decides and records, [`webhook`] signs, [`http`]
//! answers (who may post, how large, one answer for every event); all plain
//! Rust tested natively. The component (`component`, wasm only) supplies Spin's database,
//! outbound HTTP and clock.

pub mod config;
pub mod event;
pub mod http;
pub mod notify;
pub mod webhook;

#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)] // the export glue `#[http_component]` generates
mod component;
