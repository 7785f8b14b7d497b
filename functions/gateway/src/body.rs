//! A request body as the gateway reads it: a stream of chunks (the component's WASI stream,
//! or chunks in memory in the tests). The kit reads it whole up to a limit
//! ([`mp3conv_kit::reply::read_stream`]) or drains a refused one
//! ([`mp3conv_kit::reply::drain_stream`]).

use bytes::Bytes;
use futures::Stream;
use mp3conv_kit::reply::{self, BodyError};

/// A refused body up to this size is read to its end before the error is sent, so the client
/// sees the error; a larger one is cut off.
pub const MAX_DRAIN_BYTES: usize = 64 << 20;

/// A request body: chunks as they arrive; an `Err` means it broke.
pub trait Body: Stream<Item = std::io::Result<Bytes>> + Send + Unpin + 'static {}

impl<T: Stream<Item = std::io::Result<Bytes>> + Send + Unpin + 'static> Body for T {}

/// Reads the whole body, at most `limit` bytes: one declared (`content_length`) or found
/// larger is 413, after draining it so the client reads the answer.
pub async fn read(
    body: impl Body,
    content_length: Option<&str>,
    limit: usize,
) -> Result<Vec<u8>, BodyError> {
    reply::read_stream(body, content_length, limit, MAX_DRAIN_BYTES).await
}

/// Reads and drops a refused body, up to [`MAX_DRAIN_BYTES`].
pub async fn drain(body: impl Body) {
    reply::drain_stream(body, MAX_DRAIN_BYTES).await;
}
