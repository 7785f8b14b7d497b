//! Blobs in a MongoDB GridFS bucket.

use std::io;
use std::ops::Range;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{AsyncWriteExt, StreamExt, TryStreamExt};
use mongodb::bson::{Bson, Document, doc};
use mongodb::error::{ErrorKind, GridFsErrorKind};
use mongodb::gridfs::GridFsBucket;
use mongodb::options::{GridFsBucketOptions, IndexOptions};
use mongodb::{Collection, Database, IndexModel};

use super::{BlobStore, ByteStream, limited};
use crate::error::Error;

/// One GridFS bucket (`<name>.files` + `<name>.chunks`).
#[derive(Debug, Clone)]
pub struct GridFsStore {
    db: Database,
    bucket: GridFsBucket,
    /// The bucket's chunks, read directly for ranges (the driver's download stream cannot seek).
    chunks: Collection<Document>,
}

fn db_error(e: mongodb::error::Error) -> Error {
    Error::unavailable("gridfs", e)
}

impl GridFsStore {
    /// Opens the bucket `name` and creates the unique `{files_id: 1, n: 1}` index on its chunks
    /// collection: the Rust driver only creates a non-unique one, which would let a retried
    /// upload store duplicate chunks.
    pub async fn open(db: Database, name: &str) -> Result<Self, Error> {
        let chunks = db.collection::<Document>(&format!("{name}.chunks"));
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
        Ok(Self { db, bucket, chunks })
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

    /// Reads only the chunks that hold `range`: the first is found from the offset and the
    /// file's chunk size (`n = start / chunkSize`), so the last byte of a large file costs one
    /// chunk, not the whole file. Every chunk is checked for its place and size.
    async fn get(&self, id: &str, range: Range<u64>) -> Result<ByteStream, Error> {
        let mut files = self.bucket.find(doc! {"_id": id}).await.map_err(db_error)?;
        let Some(file) = files.try_next().await.map_err(db_error)? else {
            return Err(Error::NotFound);
        };
        let Some(plan) = ChunkPlan::new(file.length, file.chunk_size_bytes, range) else {
            return Ok(Box::pin(futures::stream::empty()));
        };
        let cursor = self
            .chunks
            .find(doc! {
                "files_id": id,
                "n": {"$gte": plan.first, "$lte": plan.last},
            })
            .sort(doc! {"n": 1})
            .projection(doc! {"_id": 0, "n": 1, "data": 1})
            .await
            .map_err(db_error)?;
        let stream = futures::stream::try_unfold(
            (cursor, plan.first),
            move |(mut cursor, expected)| async move {
                let Some(chunk) = cursor.try_next().await.map_err(io::Error::other)? else {
                    if expected <= plan.last {
                        return Err(missing(expected));
                    }
                    return Ok(None);
                };
                let n = chunk.get_i32("n").map_err(|_| missing(expected))?;
                if n != expected {
                    return Err(missing(expected));
                }
                let data = chunk
                    .get_binary_generic("data")
                    .map_err(|_| missing(expected))?;
                let part = plan.slice(n, data).ok_or_else(|| {
                    io::Error::other(format!("GridFS chunk {n} has the wrong size"))
                })?;
                Ok(Some((Bytes::copy_from_slice(part), (cursor, expected + 1))))
            },
        );
        Ok(stream.boxed())
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

fn missing(n: i32) -> io::Error {
    io::Error::other(format!("GridFS chunk {n} is missing"))
}

/// Which chunks of a GridFS file hold a byte range, and which bytes of each to keep.
#[derive(Debug, Clone, Copy, PartialEq)]
struct ChunkPlan {
    /// First and last chunk numbers (`n`) to read.
    first: i32,
    last: i32,
    chunk_size: u64,
    length: u64,
    /// The range, clamped to the file.
    start: u64,
    end: u64,
}

impl ChunkPlan {
    /// `None` when the range holds no byte of the file.
    fn new(length: u64, chunk_size: u32, range: Range<u64>) -> Option<Self> {
        let chunk_size = u64::from(chunk_size.max(1));
        let end = range.end.min(length);
        if range.start >= end {
            return None;
        }
        Some(Self {
            first: i32::try_from(range.start / chunk_size).ok()?,
            last: i32::try_from((end - 1) / chunk_size).ok()?,
            chunk_size,
            length,
            start: range.start,
            end,
        })
    }

    /// The part of chunk `n` (its whole `data`) inside the range; `None` if `data` is not
    /// the size chunk `n` of this file must have.
    fn slice(self, n: i32, data: &[u8]) -> Option<&[u8]> {
        let offset = u64::try_from(n).ok()? * self.chunk_size;
        let expected = self.chunk_size.min(self.length.checked_sub(offset)?);
        if data.len() as u64 != expected {
            return None;
        }
        let from = self.start.saturating_sub(offset);
        let to = (self.end - offset).min(expected);
        data.get(usize::try_from(from).ok()?..usize::try_from(to).ok()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_map_to_the_chunks_that_hold_them() {
        // A 10-byte file in chunks of 4: [0..4) [4..8) [8..10).
        let plan = ChunkPlan::new(10, 4, 9..10).unwrap();
        assert_eq!((plan.first, plan.last), (2, 2));
        assert_eq!(plan.slice(2, b"89"), Some(&b"9"[..]));
        let plan = ChunkPlan::new(10, 4, 3..9).unwrap();
        assert_eq!((plan.first, plan.last), (0, 2));
        assert_eq!(plan.slice(0, b"0123"), Some(&b"3"[..]));
        assert_eq!(plan.slice(1, b"4567"), Some(&b"4567"[..]));
        assert_eq!(plan.slice(2, b"89"), Some(&b"8"[..]));
        // A chunk of the wrong size is refused, not trusted.
        assert_eq!(plan.slice(1, b"456"), None);
        assert_eq!(plan.slice(2, b"8"), None);
        // Ranges past the end are clamped; empty ones read nothing.
        let plan = ChunkPlan::new(10, 4, 8..50).unwrap();
        assert_eq!((plan.first, plan.last, plan.end), (2, 2, 10));
        assert_eq!(ChunkPlan::new(10, 4, 10..12), None);
        assert_eq!(ChunkPlan::new(10, 4, 5..5), None);
    }
}
