//! Blobs as files in a local directory (the embedded default).

use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use futures::TryStreamExt;
use tokio::fs;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio_util::io::ReaderStream;

use super::{BlobStore, ByteStream, limited};
use crate::error::Error;

/// A directory of blobs: each blob is one file named by its id, written under a temporary name
/// and renamed into place, so a crash never leaves a half-written blob behind its real name.
#[derive(Debug, Clone)]
pub struct LocalStore {
    dir: PathBuf,
}

impl LocalStore {
    /// Opens (creating) the directory.
    pub async fn open(dir: impl Into<PathBuf>) -> Result<Self, Error> {
        let dir = dir.into();
        fs::create_dir_all(&dir)
            .await
            .map_err(|e| Error::unavailable("blob directory", e))?;
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
        _filename: &str,
        body: ByteStream,
        limit: u64,
    ) -> Result<u64, Error> {
        let path = self.path(id)?;
        let temp = self
            .dir
            .join(format!(".{id}.{}.part", uuid::Uuid::new_v4()));
        let written = write_all(&temp, body, limit).await;
        match written {
            Ok(size) => {
                fs::rename(&temp, &path).await.map_err(io_error)?;
                Ok(size)
            }
            Err(e) => {
                let _ = fs::remove_file(&temp).await;
                Err(e)
            }
        }
    }

    async fn size(&self, id: &str) -> Result<Option<u64>, Error> {
        match fs::metadata(self.path(id)?).await {
            Ok(meta) => Ok(Some(meta.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error(e)),
        }
    }

    async fn get(&self, id: &str, range: Range<u64>) -> Result<ByteStream, Error> {
        let mut file = match fs::File::open(self.path(id)?).await {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(Error::NotFound),
            Err(e) => return Err(io_error(e)),
        };
        file.seek(io::SeekFrom::Start(range.start))
            .await
            .map_err(io_error)?;
        let len = range.end.saturating_sub(range.start);
        Ok(Box::pin(ReaderStream::new(file.take(len))))
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

async fn write_all(path: &Path, body: ByteStream, limit: u64) -> Result<u64, Error> {
    let mut file = fs::File::create(path).await.map_err(io_error)?;
    let mut body = std::pin::pin!(limited(body, limit));
    let mut size = 0u64;
    while let Some(chunk) = body.try_next().await? {
        size += chunk.len() as u64;
        file.write_all(&chunk).await.map_err(io_error)?;
    }
    file.sync_all().await.map_err(io_error)?;
    Ok(size)
}
