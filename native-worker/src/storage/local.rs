//! Blobs as files in a local directory (the embedded default).

use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};
use tokio::fs;
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

use super::{BlobStore, ByteStream, Settling, limited};
use crate::error::Error;

/// Most bytes read at a time. Each read is a trip to tokio's blocking pool (two thread
/// switches), and the first also opens the file: a short MP3 (200 KB) is one trip, each read
/// straight into the buffer that is sent. Larger reads gained nothing measurable and a slow
/// reader holds one buffer, so 128 slow downloads hold 32 MiB.
const READ_CHUNK: usize = 256 * 1024;

/// A directory of blobs: each blob is one file named by its id, written under a temporary name
/// and renamed into place, so a crash never leaves a half-written blob behind its real name.
#[derive(Debug, Clone)]
pub struct LocalStore {
    dir: PathBuf,
}

impl LocalStore {
    /// Opens (creating) the directory, and removes what puts that a crash cut short left in
    /// it (see [`PART_GRACE`]).
    pub async fn open(dir: impl Into<PathBuf>) -> Result<Self, Error> {
        let dir = dir.into();
        fs::create_dir_all(&dir)
            .await
            .map_err(|e| Error::unavailable("blob directory", e))?;
        let parts = dir.clone();
        match tokio::task::spawn_blocking(move || remove_stale_parts(&parts, PART_GRACE)).await {
            Ok(Ok(0)) => {}
            Ok(Ok(removed)) => tracing::info!(removed, "unfinished blobs removed"),
            Ok(Err(e)) => tracing::warn!(error = %e, "unfinished blobs not looked for"),
            Err(e) => tracing::warn!(error = %e, "unfinished blobs not looked for"),
        }
        Ok(Self { dir })
    }

    fn path(&self, id: &str) -> Result<PathBuf, Error> {
        // Ids are made by the worker; refuse anything that could leave the directory anyway.
        let safe = !id.is_empty()
            && !id.starts_with('.')
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !safe {
            return Err(Error::internal(format!("unsafe blob id {id:?}")));
        }
        Ok(self.dir.join(id))
    }
}

impl LocalStore {
    async fn put_file(
        &self,
        id: &str,
        _filename: &str,
        body: ByteStream,
        limit: u64,
        settling: Option<Settling>,
    ) -> Result<u64, Error> {
        let path = self.path(id)?;
        let mut part = Part {
            path: self
                .dir
                .join(format!(".{id}.{}.part", uuid::Uuid::new_v4())),
            kept: false,
        };
        let size = write_all(&part.path, body, limit, settling).await?;
        fs::rename(&part.path, &path).await.map_err(io_error)?;
        part.kept = true;
        Ok(size)
    }
}

/// How long a blob's temporary file (`.<id>.<uuid>.part`) may go unwritten before it counts as
/// a crashed put's: a put of an MP3 taken as ffmpeg writes it lasts the conversion, and may
/// wait while its tracks are encoded.
const PART_GRACE: std::time::Duration = std::time::Duration::from_secs(60 * 60);

/// Removes the temporary files in `dir` not written for `grace`; returns how many.
fn remove_stale_parts(dir: &Path, grace: std::time::Duration) -> io::Result<usize> {
    let mut removed = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !(name.starts_with('.') && name.ends_with(".part")) {
            continue;
        }
        let meta = entry.metadata()?;
        let idle = meta.modified()?.elapsed().unwrap_or_default();
        if meta.is_file() && idle >= grace && std::fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    Ok(removed)
}

/// A blob being written under its temporary name: removed unless it was renamed into place, by
/// a put that failed or whose future was dropped (one that takes an MP3 as it is written lasts
/// as long as the conversion, which a shutdown or a lost lease may end).
struct Part {
    path: PathBuf,
    kept: bool,
}

impl Drop for Part {
    fn drop(&mut self) {
        if !self.kept {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn io_error(e: io::Error) -> Error {
    Error::unavailable("blob directory", e)
}

#[async_trait]
impl BlobStore for LocalStore {
    async fn local_file(&self, id: &str) -> Result<Option<PathBuf>, Error> {
        let path = self.path(id)?;
        Ok(tokio::fs::try_exists(&path)
            .await
            .unwrap_or(false)
            .then_some(path))
    }

    async fn put(
        &self,
        id: &str,
        filename: &str,
        body: ByteStream,
        limit: u64,
    ) -> Result<u64, Error> {
        self.put_file(id, filename, body, limit, None).await
    }

    /// Writes the body, then its settled first bytes over it.
    async fn put_settling(
        &self,
        id: &str,
        filename: &str,
        body: ByteStream,
        limit: u64,
        settling: Settling,
    ) -> Result<u64, Error> {
        self.put_file(id, filename, body, limit, Some(settling))
            .await
    }

    async fn size(&self, id: &str) -> Result<Option<u64>, Error> {
        match fs::metadata(self.path(id)?).await {
            Ok(meta) => Ok(Some(meta.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error(e)),
        }
    }

    async fn get(&self, id: &str, range: Range<u64>) -> Result<ByteStream, Error> {
        let path = self.path(id)?;
        let left = range.end.saturating_sub(range.start);
        // Opened, positioned and its first chunk read in one trip to the blocking pool.
        let opened = tokio::task::spawn_blocking(move || {
            let mut file = std::fs::File::open(path)?;
            io::Seek::seek(&mut file, io::SeekFrom::Start(range.start))?;
            let first = read_chunk(&mut file, left)?;
            Ok::<_, io::Error>((file, first))
        })
        .await
        .map_err(Error::internal)?;
        let (file, first) = match opened {
            Ok(opened) => opened,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(Error::NotFound),
            Err(e) => return Err(io_error(e)),
        };
        let left = left - first.len() as u64;
        let rest = futures::stream::try_unfold((file, left), |(mut file, left)| async move {
            if left == 0 {
                return Ok(None);
            }
            let (file, chunk) = tokio::task::spawn_blocking(move || {
                read_chunk(&mut file, left).map(|chunk| (file, chunk))
            })
            .await
            .map_err(io::Error::other)??;
            // A file shorter than the range ends the stream, as a read at its end would.
            let left = if chunk.is_empty() {
                0
            } else {
                left - chunk.len() as u64
            };
            Ok(Some((chunk, (file, left))))
        })
        .try_filter(|chunk| std::future::ready(!chunk.is_empty()));
        let first = (!first.is_empty()).then_some(Ok(first));
        Ok(Box::pin(futures::stream::iter(first).chain(rest)))
    }

    async fn delete(&self, id: &str) -> Result<(), Error> {
        match fs::remove_file(self.path(id)?).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error(e)),
        }
    }

    async fn check(&self) -> Result<(), Error> {
        fs::metadata(&self.dir).await.map(drop).map_err(io_error)
    }
}

/// Up to [`READ_CHUNK`] of the `left` bytes still wanted, fewer only at the end of the file.
fn read_chunk(file: &mut std::fs::File, left: u64) -> io::Result<Bytes> {
    let want = usize::try_from(left).unwrap_or(READ_CHUNK).min(READ_CHUNK);
    let mut buffer = BytesMut::zeroed(want);
    let mut filled = 0;
    while filled < want {
        match io::Read::read(file, &mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buffer.truncate(filled);
    Ok(buffer.freeze())
}

async fn write_all(
    path: &Path,
    body: ByteStream,
    limit: u64,
    settling: Option<Settling>,
) -> Result<u64, Error> {
    let mut file = fs::File::create(path).await.map_err(io_error)?;
    let mut body = std::pin::pin!(limited(body, limit));
    let mut size = 0u64;
    while let Some(chunk) = body.try_next().await? {
        size += chunk.len() as u64;
        file.write_all(&chunk).await.map_err(io_error)?;
    }
    if let Some(settling) = settling {
        let settled = settling.settle(size).await?;
        file.seek(io::SeekFrom::Start(0)).await.map_err(io_error)?;
        file.write_all(&settled).await.map_err(io_error)?;
    }
    file.sync_all().await.map_err(io_error)?;
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_parts_left_unwritten_past_the_grace_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        for name in [".a.1.part", ".b.2.part", "c", ".d.part.kept"] {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        for old in [".a.1.part", "c", ".d.part.kept"] {
            let file = std::fs::File::options()
                .write(true)
                .open(dir.path().join(old))
                .unwrap();
            file.set_modified(hour_ago).unwrap();
        }
        let grace = std::time::Duration::from_secs(600);
        assert_eq!(remove_stale_parts(dir.path(), grace).unwrap(), 1);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, [".b.2.part", ".d.part.kept", "c"]);
    }

    #[tokio::test]
    async fn ranges_read_across_chunks_and_stop_at_the_end_of_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).await.unwrap();
        let size = 2 * READ_CHUNK + 12_345;
        let blob: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(dir.path().join("b"), &blob).unwrap();
        let read = |range: Range<u64>| {
            let store = store.clone();
            async move {
                let chunks: Vec<Bytes> = store
                    .get("b", range)
                    .await?
                    .try_collect()
                    .await
                    .map_err(io_error)?;
                assert!(
                    chunks
                        .iter()
                        .all(|c| !c.is_empty() && c.len() <= READ_CHUNK)
                );
                Ok::<_, Error>(chunks.concat())
            }
        };
        let size = size as u64;
        let chunk = READ_CHUNK as u64;
        for range in [
            0..size,
            0..1,
            5..chunk + 5,
            chunk - 1..chunk + 1,
            chunk..2 * chunk,
            size - 1..size,
            10..10,
        ] {
            let want = &blob[range.start as usize..range.end as usize];
            assert_eq!(read(range.clone()).await.unwrap(), want, "{range:?}");
        }
        // A range past the end of a file ends with the file.
        let tail = read(size - 3..size + 50).await.unwrap();
        assert_eq!(tail, &blob[blob.len() - 3..]);
        assert!(read(size + 1..size + 9).await.unwrap().is_empty());
        assert!(matches!(
            store.get("absent", 0..10).await.map(drop),
            Err(Error::NotFound)
        ));
    }
}
