//! The auth function: mp3conv's users and tokens (a Spin HTTP component).
//!
//! Everything that decides anything is plain Rust, tested natively: [`api`] answers requests,
//! [`password`] hashes, [`tokens`] issues and verifies JWTs, [`store`] keeps users and failed
//! logins behind a small SQL interface. The component entry point (`component`, wasm only)
//! adapts Spin's request, variables and databases to them and nothing more.

pub mod api;
pub mod config;
pub mod password;
pub mod store;
pub mod tokens;

pub use mp3conv_tokens::keys;

#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)] // the export glue `#[http_component]` generates
mod component;
