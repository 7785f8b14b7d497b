//! Blob storage for videos and MP3s: GridFS in production, a local directory in embedded mode.

pub mod gridfs;
pub mod local;

use std::io;
use std::ops::Range;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};

use crate::error::Error;

/// A stream of bytes in or out of a store.
pub type ByteStream = BoxStream<'static, io::Result<Bytes>>;

/// A place to keep large immutable files, addressed by an id the caller chooses.
#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Streams `body` into the blob `id`, replacing any earlier blob with that id, and returns
    /// its size. Fails with [`Error::TooLarge`] past `limit` bytes, leaving nothing behind.
    async fn put(
        &self,
        id: &str,
        filename: &str,
        body: ByteStream,
        limit: u64,
    ) -> Result<u64, Error>;

    /// As [`BlobStore::put`] does, for a body whose first `settling.bytes` may still change
    /// until it has ended (an MP3 whose first frame ffmpeg rewrites last): the store keeps
    /// them back, and writes what `settling.settled` gives once the body is over.
    async fn put_settling(
        &self,
        id: &str,
        filename: &str,
        body: ByteStream,
        limit: u64,
        settling: Settling,
    ) -> Result<u64, Error>;

    /// A file holding the blob that a reader may open in place (seekable, complete), when the
    /// store keeps blobs as files; `None` means: copy it out with [`BlobStore::get`].
    async fn local_file(&self, id: &str) -> Result<Option<std::path::PathBuf>, Error> {
        let _ = id;
        Ok(None)
    }

    /// Size of the blob, or `None` if there is none.
    async fn size(&self, id: &str) -> Result<Option<u64>, Error>;

    /// Streams the bytes `range` of the blob; the caller keeps `range` within its size.
    async fn get(&self, id: &str, range: Range<u64>) -> Result<ByteStream, Error>;

    /// Removes the blob; removing a missing blob is not an error.
    async fn delete(&self, id: &str) -> Result<(), Error>;

    /// Whether the store answers (for `/health/ready`).
    async fn check(&self) -> Result<(), Error>;
}

/// The first bytes of a body that are final only once it has ended, and where they come from
/// then ([`BlobStore::put_settling`]).
pub struct Settling {
    /// How many bytes, from the start.
    pub bytes: u64,
    /// Their final value, asked for once the body has ended: `bytes` bytes, or the whole body
    /// when it is shorter. Any other length fails the put.
    pub settled: futures::future::BoxFuture<'static, Result<Bytes, Error>>,
}

impl Settling {
    /// The settled bytes of a body of `length` bytes.
    pub(crate) async fn settle(self, length: u64) -> Result<Bytes, Error> {
        let settled = self.settled.await?;
        if settled.len() as u64 != self.bytes.min(length) {
            return Err(Error::internal(format!(
                "{} settled bytes for the first {} of {length}",
                settled.len(),
                self.bytes
            )));
        }
        Ok(settled)
    }
}

/// How much of an oversized upload is read and thrown away before answering 413, and for how
/// long: a client still sending when the server closes gets a reset instead of the answer.
const DRAIN_BYTES: u64 = 8 << 20;
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(5);

/// Reads and drops what is left of `body`, within [`DRAIN_BYTES`] and [`DRAIN_TIME`].
pub(crate) async fn drain<S>(body: &mut S)
where
    S: futures::Stream<Item = io::Result<Bytes>> + Unpin,
{
    let drain = async {
        let mut drained = 0u64;
        while drained < DRAIN_BYTES {
            match body.next().await {
                Some(Ok(chunk)) => drained += chunk.len() as u64,
                _ => break,
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME, drain).await;
}

/// Counts bytes flowing through `body` and fails with [`Error::TooLarge`] once more than `limit`
/// have passed (after draining the rest, see [`drain`]); stream errors (a client that went
/// away) become a 400 `body_read`.
pub(crate) fn limited(
    body: ByteStream,
    limit: u64,
) -> impl futures::Stream<Item = Result<Bytes, Error>> + Send {
    futures::stream::unfold(Some((body, 0u64)), move |state| async move {
        let (mut body, seen) = state?;
        match body.next().await? {
            Err(e) => Some((Err(Error::bad_request("body_read", e.to_string())), None)),
            Ok(chunk) if seen + chunk.len() as u64 > limit => {
                drain(&mut body).await;
                Some((Err(Error::TooLarge { limit }), None))
            }
            Ok(chunk) => {
                let seen = seen + chunk.len() as u64;
                Some((Ok(chunk), Some((body, seen))))
            }
        }
    })
}
