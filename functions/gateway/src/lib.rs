//! The gateway: mp3conv's one public entry point (a Spin HTTP component).
//!
//! It verifies tokens itself (no call to auth per request), forwards work to the native
//! worker's internal API with the internal token and the caller's id, and streams uploads and
//! MP3s through without holding them. The decisions live in [`api`] and [`config`], plain
//! Rust tested natively; the component entry point (`component`, wasm only) does the I/O.

pub mod api;
pub mod config;

#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)] // the export glue `#[http_component]` generates
mod component;
