//! What every part of mp3conv must agree on, in one place: the functions build it for
//! `wasm32-wasip2`, the worker, the host and the client natively. The worker serializes these
//! types; the gateway, the notifier and the client read them.
//!
//! - [`job`]: the job, its id, status, quality and source; the worker's record and the public
//!   view of it; a link request.
//! - [`message`]: the `video` and `mp3` queue messages (the announcement the notifier reads).
//! - [`options`]: conversion options (clip, loudness, tags, cover, chapters, presets), read
//!   and checked by one rule.
//! - [`notification`]: notifications as users read them.
//! - [`event`]: live job events, their envelope between the worker's processes, and the
//!   Server-Sent Events framing.
//! - [`quota`]: per-user limits and usage, and the header that carries a user's limits.
//! - [`error`]: the JSON error body.
//! - [`address`]: which IP addresses and host names are public, for anything the system fetches
//!   or calls on a user's behalf (links, webhooks).
//!
//! Timestamps are [`time::OffsetDateTime`], written as RFC 3339.

pub mod address;
pub mod error;
pub mod event;
pub mod http;
pub mod job;
pub mod message;
pub mod notification;
pub mod options;
pub mod quota;
pub mod trace;

pub use time;
