//! The whole MP3 stored while ffmpeg writes it (`native_worker::stored`), on both stores: a
//! writer does to the file what ffmpeg and the converter do (the tag first, the audio front to
//! back, the first frame rewritten at the end, the tag grown into a new file), and the store
//! must end up with the finished file.

#[macro_use]
mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::Backend;
use futures::TryStreamExt;
use native_worker::convert::{Attempt, Written};
use native_worker::storage::BlobStore;
use native_worker::storage::gridfs::GridFsStore;
use native_worker::storage::local::LocalStore;
use native_worker::stored::store_while_written;
use tokio::io::{AsyncSeekExt, AsyncWriteExt};
use tokio::sync::watch;

on_both_backends!(
    an_mp3_stored_while_written_is_the_finished_one,
    an_mp3_voided_by_a_new_attempt_leaves_only_the_new_one,
    an_mp3_changed_where_it_was_final_is_stored_again_by_the_caller,
    a_conversion_that_ends_before_its_mp3_is_finished_stores_nothing,
);

/// ffmpeg's tag: ID3v2.3, 90 bytes of frames and padding.
const TAG: usize = 100;
/// How long the writer waits for the store to take what it wrote, before failing.
const STORED_DEADLINE: Duration = Duration::from_secs(20);

struct Store {
    store: Box<dyn BlobStore>,
    /// Counts the bucket's chunks (GridFS) or blob files (a local directory's, any part).
    database: Option<String>,
    dir: tempfile::TempDir,
}

impl Store {
    async fn new(backend: Backend) -> Self {
        let dir = tempfile::tempdir().unwrap();
        match backend {
            Backend::Embedded => Self {
                store: Box::new(LocalStore::open(dir.path().join("mp3s")).await.unwrap()),
                database: None,
                dir,
            },
            Backend::Services => {
                let names = common::Names::new();
                let client = mongodb::Client::with_uri_str(common::mongo_url())
                    .await
                    .unwrap();
                let db = client.database(&names.database);
                Self {
                    store: Box::new(GridFsStore::open(db, "mp3s").await.unwrap()),
                    database: Some(names.database),
                    dir,
                }
            }
        }
    }

    /// Bytes (local) or chunks (GridFS) the store holds so far, finished or not.
    async fn held(&self) -> u64 {
        match &self.database {
            Some(database) => common::count(database, "mp3s.chunks").await,
            None => std::fs::read_dir(self.dir.path().join("mp3s"))
                .unwrap()
                .map(|entry| entry.unwrap().metadata().unwrap().len())
                .sum(),
        }
    }

    /// Waits until the store holds some of an unfinished MP3: what is stored while written.
    async fn until_holding(&self, at_least: u64) {
        let waited = tokio::time::timeout(STORED_DEADLINE, async {
            while self.held().await < at_least {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        waited
            .await
            .expect("nothing was stored while the MP3 was written");
    }

    async fn blob(&self, id: &str) -> Option<Vec<u8>> {
        let size = self.store.size(id).await.unwrap()?;
        let stream = self.store.get(id, 0..size).await.unwrap();
        let parts: Vec<bytes::Bytes> = stream.try_collect().await.unwrap();
        Some(parts.concat())
    }
}

/// What stands for ffmpeg's MP3: `len` bytes, the tag then a pattern that differs by `seed`.
fn ffmpeg_output(len: usize, seed: u8) -> Vec<u8> {
    let mut bytes = b"ID3\x03\x00\x00\x00\x00\x00\x5a".to_vec();
    bytes.resize(TAG, 0);
    bytes.extend(
        (0..len - TAG).map(|i| (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[0] ^ seed),
    );
    // The first frame's header.
    bytes[TAG..TAG + 4].copy_from_slice(b"\xff\xfb\x90\x64");
    bytes
}

/// The converter's frames: a 300 KB cover, as big as a real one.
fn frames() -> Vec<u8> {
    let body = vec![7u8; 300_000];
    let mut frame = b"APIC".to_vec();
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&[0, 0]);
    frame.extend_from_slice(&body);
    frame
}

/// The tag's header grown by `frames`, then `frames`: the tagged MP3's first bytes (the
/// expected value, worked out here rather than by the converter's code).
fn grown_head(frames: &[u8]) -> Vec<u8> {
    let size = 90 + frames.len();
    let mut head = b"ID3\x03\x00\x00".to_vec();
    head.extend([21, 14, 7, 0].map(|shift| ((size >> shift) & 0x7F) as u8));
    head.extend_from_slice(frames);
    head
}

/// A writer of one MP3 as the converter's passes write it.
struct Writer {
    attempt: Attempt,
    path: PathBuf,
    file: tokio::fs::File,
    bytes: Vec<u8>,
    at: usize,
}

impl Writer {
    async fn create(dir: &Path, bytes: Vec<u8>) -> Self {
        let path = dir.join("audio.mp3");
        let file = tokio::fs::File::create(&path).await.unwrap();
        Self {
            attempt: Attempt::new(),
            path,
            file,
            bytes,
            at: 0,
        }
    }

    /// Writes up to `upto` bytes, 32 KB at a time as ffmpeg does.
    async fn write(&mut self, upto: usize) {
        while self.at < upto {
            let end = (self.at + (32 << 10)).min(upto);
            self.file
                .write_all(&self.bytes[self.at..end])
                .await
                .unwrap();
            self.file.flush().await.unwrap();
            self.at = end;
        }
    }

    /// What the converter tells once the tag and the first frame's start are written.
    fn growing(&self, frames: &[u8]) -> Written {
        let file = std::sync::Arc::new(std::fs::File::open(&self.path).unwrap());
        Written::growing(
            self.attempt,
            file,
            &self.path,
            frames,
            Some("A title".into()),
        )
        .unwrap()
        .expect("the tag and the first frame are written")
    }

    /// Ends as ffmpeg does (the first frame rewritten) and as the converter does (the tag grown
    /// by `frames` into a new file, when there are any); returns the finished MP3.
    async fn finish(mut self, frames: &[u8]) -> Vec<u8> {
        let end = self.bytes.len();
        self.write(end).await;
        let info = b"Info: 600 s";
        self.file
            .seek(std::io::SeekFrom::Start(TAG as u64 + 36))
            .await
            .unwrap();
        self.file.write_all(info).await.unwrap();
        self.file.flush().await.unwrap();
        self.bytes[TAG + 36..TAG + 36 + info.len()].copy_from_slice(info);
        if frames.is_empty() {
            return self.bytes;
        }
        let mut finished = grown_head(frames);
        finished.extend_from_slice(&self.bytes[10..]);
        let renamed = self.path.with_extension("id3.tmp");
        std::fs::write(&renamed, &finished).unwrap();
        std::fs::rename(&renamed, &self.path).unwrap();
        finished
    }
}

/// Chunks (GridFS: a batch of 4 MB) or bytes (local) that show the store took an MP3 while
/// it was written.
fn while_written(backend: Backend) -> u64 {
    if backend == Backend::Services {
        4
    } else {
        5 << 20
    }
}

const SIX_MB: usize = 6 << 20;

async fn an_mp3_stored_while_written_is_the_finished_one(backend: Backend) {
    for frames in [frames(), Vec::new()] {
        let store = Store::new(backend).await;
        let work = tempfile::tempdir().unwrap();
        let (written, told) = watch::channel(Written::Nothing);
        let storing = store_while_written(&*store.store, "job-1", "clip", told);
        let converting = async {
            let mut writer = Writer::create(work.path(), ffmpeg_output(SIX_MB + 12_345, 0)).await;
            writer.write(TAG + 500).await;
            written.send_replace(writer.growing(&frames));
            writer.write(SIX_MB).await;
            store.until_holding(while_written(backend)).await;
            let attempt = writer.attempt;
            let finished = writer.finish(&frames).await;
            assert!(written.send_if_modified(|written| written.finish(attempt)));
            drop(written);
            finished
        };
        let (stored, finished) = tokio::join!(storing, converting);
        assert_eq!(stored.unwrap(), Some(finished.len() as u64));
        assert!(
            store.blob("job-1").await.unwrap() == finished,
            "the stored MP3 is not the finished one ({} bytes of frames)",
            frames.len()
        );
    }
}

async fn an_mp3_voided_by_a_new_attempt_leaves_only_the_new_one(backend: Backend) {
    let store = Store::new(backend).await;
    let work = tempfile::tempdir().unwrap();
    let (written, told) = watch::channel(Written::Nothing);
    let storing = store_while_written(&*store.store, "job-2", "clip", told);
    let converting = async {
        let mut early = Writer::create(work.path(), ffmpeg_output(SIX_MB + 1, 1)).await;
        early.write(SIX_MB).await;
        written.send_replace(early.growing(&frames()));
        store.until_holding(while_written(backend)).await;
        // A new attempt: it says so, and what was stored of the early one goes first.
        written.send_replace(Written::Nothing);
        tokio::time::timeout(STORED_DEADLINE, async {
            while store.held().await > 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("what was stored of the void MP3 stays");
        drop(early);
        std::fs::remove_file(work.path().join("audio.mp3")).unwrap();
        let mut whole = Writer::create(work.path(), ffmpeg_output(SIX_MB + 7, 2)).await;
        whole.write(TAG + 4).await;
        written.send_replace(whole.growing(&frames()));
        whole.write(SIX_MB).await;
        store.until_holding(while_written(backend)).await;
        let attempt = whole.attempt;
        let finished = whole.finish(&frames()).await;
        assert!(written.send_if_modified(|written| written.finish(attempt)));
        drop(written);
        finished
    };
    let (stored, finished) = tokio::join!(storing, converting);
    assert_eq!(stored.unwrap(), Some(finished.len() as u64));
    assert!(
        store.blob("job-2").await.unwrap() == finished,
        "not the new attempt's MP3"
    );
    if let Some(database) = &store.database {
        let chunks = finished.len().div_ceil(1 << 20) as u64;
        assert_eq!(common::count(database, "mp3s.chunks").await, chunks);
    }
}

async fn an_mp3_changed_where_it_was_final_is_stored_again_by_the_caller(backend: Backend) {
    let store = Store::new(backend).await;
    let work = tempfile::tempdir().unwrap();
    let (written, told) = watch::channel(Written::Nothing);
    let storing = store_while_written(&*store.store, "job-3", "clip", told);
    let converting = async {
        let mut writer = Writer::create(work.path(), ffmpeg_output(SIX_MB, 3)).await;
        writer.write(SIX_MB - 100).await;
        written.send_replace(writer.growing(&[]));
        store.until_holding(while_written(backend)).await;
        // A byte that had been written goes back and changes, far past the first frame.
        writer.bytes[3 << 20] ^= 0xFF;
        writer
            .file
            .seek(std::io::SeekFrom::Start(3 << 20))
            .await
            .unwrap();
        writer
            .file
            .write_all(&writer.bytes[3 << 20..(3 << 20) + 1])
            .await
            .unwrap();
        writer
            .file
            .seek(std::io::SeekFrom::Start(writer.at as u64))
            .await
            .unwrap();
        let attempt = writer.attempt;
        writer.finish(&[]).await;
        assert!(written.send_if_modified(|written| written.finish(attempt)));
    };
    let (stored, ()) = tokio::join!(storing, converting);
    assert_eq!(
        stored.unwrap(),
        None,
        "what was stored is not the MP3: the caller stores it"
    );
}

async fn a_conversion_that_ends_before_its_mp3_is_finished_stores_nothing(backend: Backend) {
    let store = Store::new(backend).await;
    let work = tempfile::tempdir().unwrap();
    let (written, told) = watch::channel(Written::Nothing);
    let storing = store_while_written(&*store.store, "job-4", "clip", told);
    let converting = async {
        let mut writer = Writer::create(work.path(), ffmpeg_output(SIX_MB, 4)).await;
        writer.write(SIX_MB).await;
        written.send_replace(writer.growing(&frames()));
        store.until_holding(while_written(backend)).await;
        // A later pass failed: the conversion is over without being done.
        drop(written);
    };
    let (stored, ()) = tokio::join!(storing, converting);
    assert_eq!(stored.unwrap(), None);
    assert_eq!(store.blob("job-4").await, None);
    assert_eq!(
        store.held().await,
        0,
        "what was stored of it is left behind"
    );
}
