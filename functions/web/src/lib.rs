//! The web app's component: serves the app's pages and static files (a Spin HTTP component).
//!
//! The files under `functions/web/assets/` are embedded at build time with their gzip and
//! brotli variants and ETags ([`assets`], written by `build.rs`). [`serve`] answers a request
//! from its method, path and headers, with [`negotiate`] reading what the headers ask for;
//! all plain Rust, tested natively. The component entry point (`component`, wasm only) only
//! hands Spin's request to [`serve::respond`] and sends the answer.

pub mod assets;
pub mod negotiate;
pub mod serve;

#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)] // the export glue `#[http_component]` generates
mod component;
