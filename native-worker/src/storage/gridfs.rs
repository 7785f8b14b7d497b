//! Blobs in a MongoDB GridFS bucket.

use std::io;
use std::ops::{Range, RangeInclusive};

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use mongodb::bson::{Bson, Document, doc};
use mongodb::error::{ErrorKind, GridFsErrorKind};
use mongodb::gridfs::GridFsBucket;
use mongodb::options::{GridFsBucketOptions, IndexOptions};
use mongodb::{Collection, Database, IndexModel};

use super::{BlobStore, ByteStream, Settling, limited};
use crate::error::Error;

/// Bytes of each chunk this store writes. The GridFS spec lets each file have its own chunk
/// size, and every reader takes it from the files document; 1 MiB rather than the drivers'
/// 255 KiB default makes a quarter of the documents, which halves the time a video takes to
/// read and write on the test server (200 MiB: 0.45 s against 0.95 s to read, 2.2 s against
/// 2.8 s to write in batches).
pub const CHUNK_BYTES: usize = 1 << 20;
/// Bytes of chunks sent in one `insert`. An upload holds about three times this (the batch
/// filling, the one in flight and its message).
const BATCH_BYTES: usize = 4 << 20;
/// Chunks read ahead of the reader, beside the window being read.
const PREFETCH_CHUNKS: usize = 4;
/// Bytes of chunks asked for by one query when a file is read (one round trip each). A file
/// is read a window at a time rather than by one cursor over all its chunks: the test server
/// gathers a query's every chunk before it sends the first, which for a 200 MB video took
/// 0.1-0.15 s, and 0.5-1.2 s right after the video was written, against 15-25 ms for a
/// window of 8 MiB (the whole read taking about as long either way).
const WINDOW_BYTES: u64 = 8 << 20;

/// One GridFS bucket (`<name>.files` + `<name>.chunks`).
#[derive(Debug, Clone)]
pub struct GridFsStore {
    db: Database,
    bucket: GridFsBucket,
    /// The bucket's files documents, written directly once a file's chunks are all in.
    files: Collection<Document>,
    /// The bucket's chunks, written in batches and read directly for ranges (the driver's
    /// streams write one chunk per round trip and cannot seek).
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
        Ok(Self {
            db,
            bucket,
            files,
            chunks,
        })
    }

    /// Stores `body` as the chunks of `id`, [`CHUNK_BYTES`] each, in batches of
    /// [`BATCH_BYTES`] with one batch in flight (held by `upload`) while the next fills;
    /// returns the length. The chunks that hold any of `settling`'s first bytes are written as
    /// they come (the start-up sweep finds an unfinished upload by its chunk 0), and again
    /// with those bytes once the body is over. When it succeeds, no insert is running; when it
    /// fails, `upload` holds the one that may be.
    async fn write_chunks(
        &self,
        id: &str,
        mut body: impl futures::Stream<Item = Result<Bytes, Error>> + Unpin,
        settling: Option<Settling>,
        upload: &mut Upload,
    ) -> Result<u64, Error> {
        let per_batch = BATCH_BYTES / CHUNK_BYTES;
        let settles = settling.as_ref().map_or(0, |s| s.bytes);
        let mut pending = bytes::BytesMut::with_capacity(CHUNK_BYTES);
        let mut settling_chunks = Vec::new();
        let mut batch: Vec<Document> = Vec::with_capacity(per_batch);
        let (mut n, mut length) = (0i32, 0u64);
        let mut ended = false;
        while !ended {
            match body.try_next().await? {
                Some(bytes) => {
                    length += bytes.len() as u64;
                    pending.extend_from_slice(&bytes);
                }
                None => ended = true,
            }
            while pending.len() >= CHUNK_BYTES || (ended && !pending.is_empty()) {
                let data = pending.split_to(pending.len().min(CHUNK_BYTES));
                let (chunk, document) = upload.chunk(id, n, data.to_vec());
                if chunk_offset(n) < settles {
                    settling_chunks.push((chunk, n, data));
                }
                batch.push(document);
                n += 1;
            }
            if batch.len() >= per_batch || (ended && !batch.is_empty()) {
                upload.settle().await?;
                let chunks = self.chunks.clone();
                let docs = std::mem::replace(&mut batch, Vec::with_capacity(per_batch));
                upload.in_flight = Some(tokio::spawn(async move {
                    chunks.insert_many(docs).await.map(drop).map_err(db_error)
                }));
            }
        }
        upload.settle().await?;
        if let Some(settling) = settling {
            let settled = settling.settle(length).await?;
            for (chunk, n, mut data) in settling_chunks {
                let at = usize::try_from(chunk_offset(n)).map_err(Error::internal)?;
                let upto = settled.len().min(at + data.len());
                data[..upto - at].copy_from_slice(&settled[at..upto]);
                self.chunks
                    .update_one(
                        doc! {"_id": chunk},
                        doc! {"$set": {"data": binary(data.to_vec())}},
                    )
                    .await
                    .map_err(db_error)?;
            }
        }
        Ok(length)
    }

    async fn put_chunks(
        &self,
        id: &str,
        filename: &str,
        body: ByteStream,
        limit: u64,
        settling: Option<Settling>,
    ) -> Result<u64, Error> {
        self.delete(id).await?;
        let mut upload = Upload::new(self.chunks.clone());
        let body = std::pin::pin!(limited(body, limit));
        let length = match self.write_chunks(id, body, settling, &mut upload).await {
            Ok(length) => length,
            Err(e) => {
                upload.abandon().await;
                return Err(e);
            }
        };
        // The chunks are whole: from here they stay, whatever happens to the files document
        // (a failed insert may still have been applied, and a document without its chunks
        // would be a broken file). Chunks that no document ever names are an unfinished
        // upload, which the start-up sweep removes.
        upload.finished = true;
        self.files
            .insert_one(file_document(id, filename, length))
            .await
            .map_err(db_error)?;
        Ok(length)
    }

    fn is_missing(e: &mongodb::error::Error) -> bool {
        matches!(
            &*e.kind,
            ErrorKind::GridFs(GridFsErrorKind::FileNotFound { .. })
        )
    }

    /// The cursor over the window of `plan`'s chunks that starts at chunk `from` (one batch),
    /// and which chunks it holds.
    async fn window(
        &self,
        id: &str,
        plan: ChunkPlan,
        from: i32,
    ) -> Result<(mongodb::Cursor<Document>, RangeInclusive<i32>), Error> {
        let chunks = plan.window(from);
        let cursor = self
            .chunks
            .find(doc! {"files_id": id, "n": {"$gte": chunks.start(), "$lte": chunks.end()}})
            .sort(doc! {"n": 1})
            .projection(doc! {"_id": 0, "n": 1, "data": 1})
            .batch_size(u32::try_from(plan.window_chunks()).unwrap_or(u32::MAX))
            .await
            .map_err(db_error)?;
        Ok((cursor, chunks))
    }
}

#[async_trait]
impl BlobStore for GridFsStore {
    /// Writes the chunks in batches of [`BATCH_BYTES`], one batch in flight while the next
    /// fills, then the files document: a reader sees the file only once it is whole. A put
    /// that fails, or whose future is dropped, removes the chunks it wrote (see [`Upload`]).
    async fn put(
        &self,
        id: &str,
        filename: &str,
        body: ByteStream,
        limit: u64,
    ) -> Result<u64, Error> {
        self.put_chunks(id, filename, body, limit, None).await
    }

    /// As [`GridFsStore::put`] does, holding back the chunks of the settling bytes.
    async fn put_settling(
        &self,
        id: &str,
        filename: &str,
        body: ByteStream,
        limit: u64,
        settling: Settling,
    ) -> Result<u64, Error> {
        self.put_chunks(id, filename, body, limit, Some(settling))
            .await
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
        let first = self.window(id, plan, plan.first).await?;
        // The windows are read by a task of their own, up to PREFETCH_CHUNKS ahead of the
        // reader: the next is asked for while the reader is still writing the last out (to
        // ffmpeg's file, or a client), instead of after.
        let (sender, receiver) = tokio::sync::mpsc::channel(PREFETCH_CHUNKS);
        let store = self.clone();
        let id = id.to_owned();
        tokio::spawn(async move {
            let (mut cursor, mut window) = first;
            loop {
                let last = *window.end();
                let mut chunks = std::pin::pin!(checked_chunks(cursor, plan, window));
                while let Some(chunk) = chunks.next().await {
                    let failed = chunk.is_err();
                    if sender.send(chunk).await.is_err() || failed {
                        return;
                    }
                }
                if last >= plan.last {
                    return;
                }
                (cursor, window) = match store.window(&id, plan, last + 1).await {
                    Ok(next) => next,
                    Err(e) => {
                        let _ = sender.send(Err(io::Error::other(e))).await;
                        return;
                    }
                };
            }
        });
        Ok(tokio_stream_from(receiver))
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

/// The chunks `window` (of those `plan` names) from `cursor`, in order, each checked for its
/// place and size and cut to the range.
fn checked_chunks(
    cursor: mongodb::Cursor<Document>,
    plan: ChunkPlan,
    window: RangeInclusive<i32>,
) -> impl futures::Stream<Item = io::Result<Bytes>> + Send {
    let last = *window.end();
    futures::stream::try_unfold(
        (cursor, *window.start()),
        move |(mut cursor, expected)| async move {
            if expected > last {
                return Ok(None);
            }
            let Some(mut chunk) = cursor.try_next().await.map_err(io::Error::other)? else {
                return Err(missing(expected));
            };
            let n = chunk.get_i32("n").map_err(|_| missing(expected))?;
            if n != expected {
                return Err(missing(expected));
            }
            // The chunk's bytes are handed on as they came, not copied.
            let data = match chunk.remove("data") {
                Some(Bson::Binary(binary))
                    if binary.subtype == mongodb::bson::spec::BinarySubtype::Generic =>
                {
                    Bytes::from(binary.bytes)
                }
                _ => return Err(missing(expected)),
            };
            let part = plan
                .slice(n, data)
                .ok_or_else(|| io::Error::other(format!("GridFS chunk {n} has the wrong size")))?;
            Ok(Some((part, (cursor, expected + 1))))
        },
    )
}

/// A batch's insert, running on its own.
type Insert = tokio::task::JoinHandle<Result<(), Error>>;

/// The chunks one [`GridFsStore::put`] has written or is writing. Unless it is `finished`,
/// they are removed when it is dropped (a put that failed, or whose future was dropped: a
/// lost lease, a deadline, a shutdown), once the batch in flight has landed, and only they:
/// another put of the same id keeps its own.
struct Upload {
    chunks: Collection<Document>,
    /// Every chunk's `_id`, given before its insert.
    ids: Vec<mongodb::bson::oid::ObjectId>,
    /// The insert of the last batch sent.
    in_flight: Option<Insert>,
    finished: bool,
}

impl Upload {
    fn new(chunks: Collection<Document>) -> Self {
        Self {
            chunks,
            ids: Vec::new(),
            in_flight: None,
            finished: false,
        }
    }

    /// Chunk `n` of `id`: its `_id`, given now (and kept for removal), and its document.
    fn chunk(
        &mut self,
        id: &str,
        n: i32,
        data: Vec<u8>,
    ) -> (mongodb::bson::oid::ObjectId, Document) {
        let chunk = mongodb::bson::oid::ObjectId::new();
        self.ids.push(chunk);
        (chunk, chunk_document(chunk, id, n, data))
    }

    /// Waits for the batch in flight to land.
    async fn settle(&mut self) -> Result<(), Error> {
        match self.in_flight.take() {
            Some(task) => task.await.map_err(Error::internal)?,
            None => Ok(()),
        }
    }

    /// Removes this upload's chunks now (after its batch in flight).
    async fn abandon(mut self) {
        self.removal().await;
    }

    /// The removal of this upload's chunks, to run now or in the background; it leaves
    /// nothing for the drop to remove.
    fn removal(&mut self) -> impl Future<Output = ()> + Send + 'static {
        self.finished = true;
        remove_chunks(
            self.chunks.clone(),
            std::mem::take(&mut self.ids),
            self.in_flight.take(),
        )
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let removal = self.removal();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(removal);
        }
    }
}

/// Removes the chunks `ids` once `in_flight` (the last insert that may add some) has ended.
async fn remove_chunks(
    chunks: Collection<Document>,
    ids: Vec<mongodb::bson::oid::ObjectId>,
    in_flight: Option<Insert>,
) {
    if let Some(task) = in_flight {
        let _ = task.await;
    }
    for some in ids.chunks(1000) {
        if let Err(e) = chunks.delete_many(doc! {"_id": {"$in": some}}).await {
            tracing::warn!(error = %e, "cannot remove the chunks of an unfinished upload; the start-up sweep will");
        }
    }
}

/// A stream of what `receiver` is sent, until its sender is gone.
fn tokio_stream_from<T: Send + 'static>(
    receiver: tokio::sync::mpsc::Receiver<T>,
) -> futures::stream::BoxStream<'static, T> {
    futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|item| (item, receiver))
    })
    .boxed()
}

/// A files document as the GridFS spec has it (the driver reads, lists and deletes it).
fn file_document(id: &str, filename: &str, length: u64) -> Document {
    doc! {
        "_id": id,
        "length": i64::try_from(length).unwrap_or(i64::MAX),
        "chunkSize": CHUNK_BYTES as i32,
        "uploadDate": mongodb::bson::DateTime::now(),
        "filename": filename,
    }
}

/// Chunk `n` of the file `id`. Its `_id` is a new ObjectId `chunk`, whose first bytes are its
/// creation time (the start-up sweep tells a stalled upload from one in flight by it).
fn chunk_document(
    chunk: mongodb::bson::oid::ObjectId,
    id: &str,
    n: i32,
    data: Vec<u8>,
) -> Document {
    doc! {
        "_id": chunk,
        "files_id": id,
        "n": n,
        "data": binary(data),
    }
}

fn binary(bytes: Vec<u8>) -> mongodb::bson::Binary {
    mongodb::bson::Binary {
        subtype: mongodb::bson::spec::BinarySubtype::Generic,
        bytes,
    }
}

/// Where chunk `n` begins in its file.
fn chunk_offset(n: i32) -> u64 {
    u64::try_from(n).unwrap_or(0) * CHUNK_BYTES as u64
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

    /// How many chunks one window holds: [`WINDOW_BYTES`] of them, at least one.
    fn window_chunks(self) -> i32 {
        i32::try_from((WINDOW_BYTES / self.chunk_size).max(1)).unwrap_or(i32::MAX)
    }

    /// The chunks of the window that starts at chunk `from`.
    fn window(self, from: i32) -> RangeInclusive<i32> {
        from..=self.last.min(from.saturating_add(self.window_chunks() - 1))
    }

    /// The part of chunk `n` (its whole `data`) inside the range; `None` if `data` is not
    /// the size chunk `n` of this file must have.
    fn slice(self, n: i32, data: Bytes) -> Option<Bytes> {
        let offset = u64::try_from(n).ok()? * self.chunk_size;
        let expected = self.chunk_size.min(self.length.checked_sub(offset)?);
        if data.len() as u64 != expected {
            return None;
        }
        let from = usize::try_from(self.start.saturating_sub(offset)).ok()?;
        let to = usize::try_from((self.end - offset).min(expected)).ok()?;
        (from <= to).then(|| data.slice(from..to))
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
        assert_eq!(
            plan.slice(2, Bytes::from_static(b"89")).as_deref(),
            Some(&b"9"[..])
        );
        let plan = ChunkPlan::new(10, 4, 3..9).unwrap();
        assert_eq!((plan.first, plan.last), (0, 2));
        assert_eq!(
            plan.slice(0, Bytes::from_static(b"0123")).as_deref(),
            Some(&b"3"[..])
        );
        assert_eq!(
            plan.slice(1, Bytes::from_static(b"4567")).as_deref(),
            Some(&b"4567"[..])
        );
        assert_eq!(
            plan.slice(2, Bytes::from_static(b"89")).as_deref(),
            Some(&b"8"[..])
        );
        // A chunk of the wrong size is refused, not trusted.
        assert_eq!(plan.slice(1, Bytes::from_static(b"456")).as_deref(), None);
        assert_eq!(plan.slice(2, Bytes::from_static(b"8")).as_deref(), None);
        // Ranges past the end are clamped; empty ones read nothing.
        let plan = ChunkPlan::new(10, 4, 8..50).unwrap();
        assert_eq!((plan.first, plan.last, plan.end), (2, 2, 10));
        assert_eq!(ChunkPlan::new(10, 4, 10..12), None);
        assert_eq!(ChunkPlan::new(10, 4, 5..5), None);
    }

    #[test]
    fn windows_hold_eight_mib_of_chunks_and_end_with_the_range() {
        let mib = 1 << 20;
        // 20.5 MiB in 1 MiB chunks, read from byte 3: windows 0-7, 8-15, 16-20.
        let plan = ChunkPlan::new(20 * mib + mib / 2, mib as u32, 3..20 * mib + mib / 2).unwrap();
        assert_eq!(plan.window(0), 0..=7);
        assert_eq!(plan.window(8), 8..=15);
        assert_eq!(plan.window(16), 16..=20);
        // Another writer's 255 KiB chunks: 32 to a window; chunks over 8 MiB: one.
        let plan = ChunkPlan::new(100 * mib, 255 * 1024, 0..100 * mib).unwrap();
        assert_eq!(plan.window(0), 0..=31);
        let plan = ChunkPlan::new(100 * mib, 16 << 20, 0..100 * mib).unwrap();
        assert_eq!(plan.window(2), 2..=2);
        // No window runs past the last chunk, even where `n` runs out of numbers.
        let length = i32::MAX as u64 + 1;
        let plan = ChunkPlan::new(length, 1, 0..length).unwrap();
        assert_eq!(plan.window(i32::MAX - 2), i32::MAX - 2..=i32::MAX);
    }
}
