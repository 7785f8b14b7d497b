//! Blobs in a MongoDB GridFS bucket.

use std::ops::Range;

use async_trait::async_trait;
use futures::{AsyncWriteExt, TryStreamExt};
use mongodb::bson::{Bson, doc};
use mongodb::error::{ErrorKind, GridFsErrorKind};
use mongodb::gridfs::GridFsBucket;
use mongodb::options::{GridFsBucketOptions, IndexOptions};
use mongodb::{Database, IndexModel};
use tokio::io::AsyncReadExt;
use tokio_util::compat::FuturesAsyncReadCompatExt;
use tokio_util::io::ReaderStream;

use super::{BlobStore, ByteStream, limited};
use crate::error::Error;

/// One GridFS bucket (`<name>.files` + `<name>.chunks`).
#[derive(Debug, Clone)]
pub struct GridFsStore {
    db: Database,
    bucket: GridFsBucket,
}

fn db_error(e: mongodb::error::Error) -> Error {
    Error::unavailable("gridfs", e)
}

impl GridFsStore {
    /// Opens the bucket `name` and creates the unique `{files_id: 1, n: 1}` index on its chunks
    /// collection: the Rust driver only creates a non-unique one, which would let a retried
    /// upload store duplicate chunks.
    pub async fn open(db: Database, name: &str) -> Result<Self, Error> {
        let chunks = db.collection::<mongodb::bson::Document>(&format!("{name}.chunks"));
        chunks
            .create_index(
                IndexModel::builder()
                    .keys(doc! {"files_id": 1, "n": 1})
                    .options(IndexOptions::builder().unique(true).build())
                    .build(),
            )
            .await
            .map_err(db_error)?;
        let files = db.collection::<mongodb::bson::Document>(&format!("{name}.files"));
        files
            .create_index(
                IndexModel::builder()
                    .keys(doc! {"filename": 1, "uploadDate": 1})
                    .build(),
            )
            .await
            .map_err(db_error)?;
        let bucket = db.gridfs_bucket(
            GridFsBucketOptions::builder()
                .bucket_name(name.to_owned())
                .build(),
        );
        Ok(Self { db, bucket })
    }

    fn is_missing(e: &mongodb::error::Error) -> bool {
        matches!(
            &*e.kind,
            ErrorKind::GridFs(GridFsErrorKind::FileNotFound { .. })
        )
    }
}

#[async_trait]
impl BlobStore for GridFsStore {
    async fn put(
        &self,
        id: &str,
        filename: &str,
        body: ByteStream,
        limit: u64,
    ) -> Result<u64, Error> {
        self.delete(id).await?;
        let mut upload = self
            .bucket
            .open_upload_stream(filename)
            .id(Bson::String(id.to_owned()))
            .await
            .map_err(db_error)?;
        let mut body = std::pin::pin!(limited(body, limit));
        let mut size = 0u64;
        let copied: Result<(), Error> = async {
            while let Some(chunk) = body.try_next().await? {
                size += chunk.len() as u64;
                upload
                    .write_all(&chunk)
                    .await
                    .map_err(|e| Error::unavailable("gridfs", e))?;
            }
            upload
                .close()
                .await
                .map_err(|e| Error::unavailable("gridfs", e))
        }
        .await;
        if let Err(e) = copied {
            // Removes the chunks written so far.
            let _ = upload.abort().await;
            return Err(e);
        }
        Ok(size)
    }

    async fn size(&self, id: &str) -> Result<Option<u64>, Error> {
        let mut cursor = self.bucket.find(doc! {"_id": id}).await.map_err(db_error)?;
        Ok(cursor.try_next().await.map_err(db_error)?.map(|f| f.length))
    }

    async fn get(&self, id: &str, range: Range<u64>) -> Result<ByteStream, Error> {
        let download = match self
            .bucket
            .open_download_stream(Bson::String(id.to_owned()))
            .await
        {
            Ok(download) => download,
            Err(e) if Self::is_missing(&e) => return Err(Error::NotFound),
            Err(e) => return Err(db_error(e)),
        };
        let mut reader = download.compat();
        // GridFS streams cannot seek: skip to the start of the range.
        tokio::io::copy(&mut (&mut reader).take(range.start), &mut tokio::io::sink())
            .await
            .map_err(|e| Error::unavailable("gridfs", e))?;
        let len = range.end.saturating_sub(range.start);
        Ok(Box::pin(ReaderStream::new(reader.take(len))))
    }

    async fn delete(&self, id: &str) -> Result<(), Error> {
        match self.bucket.delete(Bson::String(id.to_owned())).await {
            Ok(()) => Ok(()),
            Err(e) if Self::is_missing(&e) => Ok(()),
            Err(e) => Err(db_error(e)),
        }
    }

    async fn check(&self) -> Result<(), Error> {
        self.db
            .run_command(doc! {"ping": 1})
            .await
            .map(drop)
            .map_err(db_error)
    }
}
