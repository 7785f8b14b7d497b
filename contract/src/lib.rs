//! Rules every part of mp3conv must apply the same way, in one place: the functions build it
//! for `wasm32-wasip2`, the worker and the host natively. Plain `std`, no dependencies.
//!
//! - [`address`]: which IP addresses and host names are public, for anything the system fetches
//!   or calls on a user's behalf (links, webhooks).

pub mod address;
