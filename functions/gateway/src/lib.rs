//! The gateway: mp3conv's one public entry point (a Spin HTTP component).
//!
//! It verifies tokens itself (no call to auth per request), forwards work to the native
//! worker's internal API with the internal token, the caller's id and the request's trace, and
//! streams uploads and MP3s through without holding them.
//!
//! Everything is plain Rust, tested natively: [`gateway`] serves a request given its parts and
//! the services behind small traits ([`upstream::Worker`], [`upstream::Auth`], the database);
//! the modules per resource ([`jobs`] with its [`options`], [`upload`], [`audio`], [`presets`],
//! [`account`], [`notifications`], [`webhook`], [`events`] and its [`tickets`]) decide;
//! [`error`] is the one mapping to HTTP.
//! The component entry point (`component`, wasm only) only adapts Spin to it, with the WASI
//! implementations in `spin`.

pub mod account;
pub mod audio;
pub mod body;
pub mod caller;
pub mod config;
pub mod error;
pub mod events;
pub mod framing;
pub mod gateway;
pub mod jobs;
pub mod notifications;
pub mod options;
pub mod presets;
pub mod routes;
pub mod tickets;
pub mod upload;
pub mod upstream;
pub mod webhook;

#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)] // the export glue `#[http_component]` generates
mod component;
#[cfg(target_arch = "wasm32")]
mod spin;
#[cfg(test)]
mod testing;
