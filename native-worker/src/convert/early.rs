//! Starting a conversion before its source is all there.
//!
//! A store that keeps no files (GridFS) has each video copied into the job's directory before
//! ffmpeg reads it, and the copy of a 200 MB video takes about a second. The conversion need
//! not wait for all of it when the container can be read front to back: an MP4 or MOV whose
//! index (`moov`) comes before its media (`mdat`, "faststart", as web and phone exports and
//! video sites make them). Then each pass that starts while the copy is still going reads the
//! file through its stdin as the copy brings it ([`feed`]), and ffmpeg works on the first
//! megabytes while the rest arrive.
//!
//! Read through a pipe, a file may look different from the whole file on disk: ffmpeg cannot
//! seek back in a pipe, so it skips what lies behind (QuickTime chapter tracks are read by
//! seeking), and a sample stored behind what it has read ends the input early, with an error
//! but exit status 0. So an early start is a guess that is checked:
//! - once the copy is over, the whole file is probed again, beside the encoding, and unless
//!   both probes agree the conversion is done again on the whole file;
//! - the passes fed early stop at their first error (`-xerror`), and a pass fed early that
//!   fails, or an MP3 of theirs whose length is off, or a refusal from what the early probe
//!   showed, is also redone on the whole file ([`super::ConvertError::Stale`]).
//!
//! Failures of passes that read the whole file, the copy's failure (storage trouble, retried)
//! and a timeout stand. A redo costs at most one more conversion.

use std::io;
use std::path::Path;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

/// How far the copy of a source has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Copied {
    /// This many bytes are in the file, and more are coming.
    Partly(u64),
    /// The whole file is there, this many bytes.
    Whole(u64),
    /// The copy failed: the file will never be whole.
    Failed,
}

/// The copy's side: says how far it has written, once the bytes are in the file. Dropped
/// before [`CopyProgress::finished`], it says the copy failed.
#[derive(Debug)]
pub struct CopyProgress(watch::Sender<Copied>);

impl CopyProgress {
    /// The first `bytes` of the file are written.
    pub fn wrote(&self, bytes: u64) {
        self.0.send_replace(Copied::Partly(bytes));
    }

    /// The file is whole: `bytes` long.
    pub fn finished(self, bytes: u64) {
        self.0.send_replace(Copied::Whole(bytes));
    }
}

impl Drop for CopyProgress {
    fn drop(&mut self) {
        self.0.send_if_modified(|copied| {
            let unfinished = matches!(copied, Copied::Partly(_));
            if unfinished {
                *copied = Copied::Failed;
            }
            unfinished
        });
    }
}

/// The conversion's side of a copy.
#[derive(Debug, Clone)]
pub struct Copying(watch::Receiver<Copied>);

/// A copy about to begin, and what the conversion watches of it.
pub fn copying() -> (CopyProgress, Copying) {
    let (sender, receiver) = watch::channel(Copied::Partly(0));
    (CopyProgress(sender), Copying(receiver))
}

/// The copy failed, so the source cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the video could not be read out of storage")]
pub struct CopyFailed;

/// Bytes of the head that decide whether a source starts early: more than the few boxes
/// before the index.
const HEAD: u64 = 64 * 1024;
/// Bytes moved into a pass's stdin at a time.
const FEED_CHUNK: usize = 1024 * 1024;

impl Copying {
    /// How far the copy has come now.
    pub fn now(&self) -> Copied {
        *self.0.borrow()
    }

    /// Waits until at least `bytes` are in the file or the copy is over.
    pub async fn reached(&self, bytes: u64) -> Copied {
        let mut receiver = self.0.clone();
        let reached = receiver
            .wait_for(|copied| !matches!(copied, Copied::Partly(n) if *n < bytes))
            .await
            .map(|copied| *copied);
        // The sender says `Failed` before it goes, so a closed channel is a failed copy too.
        reached.unwrap_or(Copied::Failed)
    }

    /// Waits for the whole file; returns its length.
    pub async fn whole(&self) -> Result<u64, CopyFailed> {
        match self.reached(u64::MAX).await {
            Copied::Whole(bytes) => Ok(bytes),
            _ => Err(CopyFailed),
        }
    }

    /// Whether the conversion of the file at `path` may start before its copy is over: the
    /// copy is still going and the file's head shows an MP4 or MOV with its index first.
    pub async fn may_start_early(&self, path: &Path) -> Result<bool, CopyFailed> {
        match self.reached(HEAD).await {
            Copied::Failed => Err(CopyFailed),
            Copied::Whole(_) => Ok(false),
            Copied::Partly(_) => {
                let mut head = Vec::with_capacity(HEAD as usize);
                let read = match tokio::fs::File::open(path).await {
                    Ok(file) => file.take(HEAD).read_to_end(&mut head).await,
                    Err(e) => Err(e),
                };
                Ok(read.is_ok() && index_first(&head))
            }
        }
    }
}

/// Whether `head`, the start of a file, is an ISO base media (MP4) or QuickTime file whose
/// index (`moov`) comes before its media (`mdat`): boxes are walked from the start, each
/// `size` (32 bits, or 64 after a size of 1) then `type`, until one of the two.
pub fn index_first(head: &[u8]) -> bool {
    let mut at: u64 = 0;
    // A few boxes come before the index (ftyp, free, wide, uuid...); a file with more is
    // read whole.
    for _ in 0..16 {
        let Some(header) = usize::try_from(at)
            .ok()
            .and_then(|at| head.get(at..))
            .filter(|rest| rest.len() >= 8)
        else {
            return false;
        };
        let kind = &header[4..8];
        match kind {
            b"moov" => return true,
            b"mdat" => return false,
            _ if !kind.iter().all(|b| b.is_ascii_alphanumeric() || *b == b' ') => return false,
            _ => {}
        }
        let size = u64::from(u32::from_be_bytes(
            header[..4].try_into().expect("four bytes"),
        ));
        let size = match size {
            // A last box that runs to the end of the file: no index after it.
            0 => return false,
            1 => match header.get(8..16) {
                Some(large) => u64::from_be_bytes(large.try_into().expect("eight bytes")),
                None => return false,
            },
            size => size,
        };
        if size < 8 {
            return false;
        }
        let Some(next) = at.checked_add(size) else {
            return false;
        };
        at = next;
    }
    false
}

/// Why feeding a pass stopped before the end of the source.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// The copy failed.
    #[error(transparent)]
    Copy(#[from] CopyFailed),
    /// The file could not be read.
    #[error("could not read the video's copy: {0}")]
    Source(#[source] io::Error),
    /// The pass stopped reading (it had what it needed, or it failed: its exit says which).
    #[error("the pass stopped reading: {0}")]
    Sink(#[source] io::Error),
}

/// Writes the file at `path` into `sink` (a pass's stdin) from its start to its end, as the
/// copy brings it, and then closes `sink`.
pub async fn feed(
    path: &Path,
    copying: &Copying,
    mut sink: impl AsyncWrite + Unpin,
) -> Result<(), FeedError> {
    let file = tokio::fs::File::open(path)
        .await
        .map_err(FeedError::Source)?;
    feed_from(file, copying, &mut sink).await?;
    sink.shutdown().await.map_err(FeedError::Sink)
}

async fn feed_from(
    mut file: impl AsyncRead + Unpin,
    copying: &Copying,
    sink: &mut (impl AsyncWrite + Unpin),
) -> Result<(), FeedError> {
    let mut buffer = vec![0u8; FEED_CHUNK];
    let mut sent: u64 = 0;
    loop {
        let there = match copying.reached(sent + 1).await {
            Copied::Partly(bytes) | Copied::Whole(bytes) => bytes,
            Copied::Failed => return Err(CopyFailed.into()),
        };
        if sent >= there {
            return Ok(());
        }
        let want = usize::try_from(there - sent).map_or(FEED_CHUNK, |left| left.min(FEED_CHUNK));
        let read = file
            .read(&mut buffer[..want])
            .await
            .map_err(FeedError::Source)?;
        if read == 0 {
            return Err(FeedError::Source(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the copy is shorter than it says",
            )));
        }
        sink.write_all(&buffer[..read])
            .await
            .map_err(FeedError::Sink)?;
        sent += read as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boxed(kind: &[u8; 4], body: usize) -> Vec<u8> {
        let mut b = u32::try_from(body + 8).unwrap().to_be_bytes().to_vec();
        b.extend_from_slice(kind);
        b.resize(body + 8, 0);
        b
    }

    #[test]
    fn the_index_must_come_before_the_media() {
        let ftyp = boxed(b"ftyp", 24);
        let first = [
            ftyp.clone(),
            boxed(b"free", 8),
            boxed(b"moov", 100),
            boxed(b"mdat", 10),
        ]
        .concat();
        assert!(index_first(&first));
        // Only the index's header need be in the head.
        assert!(index_first(&first[..ftyp.len() + 16 + 8]));
        let last = [
            ftyp.clone(),
            boxed(b"wide", 0),
            boxed(b"mdat", 100),
            boxed(b"moov", 10),
        ]
        .concat();
        assert!(!index_first(&last));
        // A 64-bit size.
        let mut large = vec![0, 0, 0, 1];
        large.extend_from_slice(b"free");
        large.extend_from_slice(&24u64.to_be_bytes());
        large.resize(24, 0);
        assert!(index_first(
            &[ftyp.clone(), large, boxed(b"moov", 0)].concat()
        ));
    }

    #[test]
    fn anything_else_is_read_whole() {
        let ftyp = boxed(b"ftyp", 24);
        // The index beyond the head.
        assert!(!index_first(
            &[ftyp.clone(), boxed(b"free", 1 << 20)].concat()
        ));
        // Cut inside a header, a size of 0 (to the end), a size smaller than a header.
        assert!(!index_first(&ftyp[..6]));
        let mut to_end = boxed(b"free", 0);
        to_end[..4].copy_from_slice(&[0, 0, 0, 0]);
        assert!(!index_first(
            &[ftyp.clone(), to_end, boxed(b"moov", 0)].concat()
        ));
        let mut tiny = boxed(b"free", 0);
        tiny[..4].copy_from_slice(&[0, 0, 0, 4]);
        assert!(!index_first(&[ftyp.clone(), tiny].concat()));
        // Not boxes at all: Matroska, text, nothing.
        assert!(!index_first(&[
            0x1a, 0x45, 0xdf, 0xa3, 0x9f, 0x42, 0x86, 0x81, 1, 0
        ]));
        assert!(!index_first(b"#EXTM3U\n#EXT-X-VERSION:3\n"));
        assert!(!index_first(b""));
        // More boxes before the index than are walked.
        let many: Vec<u8> = std::iter::once(ftyp)
            .chain(std::iter::repeat_n(boxed(b"free", 0), 20))
            .chain(std::iter::once(boxed(b"moov", 0)))
            .flatten()
            .collect();
        assert!(!index_first(&many));
    }

    /// A copy of `data` in steps of `step` bytes, each announced once it is in the file at
    /// `path`; with `fail_at`, the copy fails after that many bytes.
    async fn copy_in_steps(
        path: &Path,
        data: &[u8],
        step: usize,
        fail_at: Option<usize>,
        progress: CopyProgress,
    ) {
        let mut file = tokio::fs::File::create(path).await.unwrap();
        let mut written = 0;
        for chunk in data.chunks(step) {
            if fail_at.is_some_and(|at| written >= at) {
                return;
            }
            file.write_all(chunk).await.unwrap();
            file.flush().await.unwrap();
            written += chunk.len();
            progress.wrote(written as u64);
            tokio::task::yield_now().await;
        }
        progress.finished(written as u64);
    }

    /// Feeds a copy of `data` in 100 kB steps (failing after `fail_at` bytes) into memory:
    /// what the feed returned, what it fed, and the copy's side.
    async fn fed_while_copied(
        data: &[u8],
        fail_at: Option<usize>,
    ) -> (Result<(), FeedError>, Vec<u8>, Copying, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("video");
        let (progress, copying) = copying();
        tokio::fs::write(&path, b"").await.unwrap();
        let mut fed = Vec::new();
        let ((), result) = tokio::join!(
            copy_in_steps(&path, data, 100_000, fail_at, progress),
            feed(&path, &copying, &mut fed)
        );
        (result, fed, copying, dir)
    }

    #[tokio::test]
    async fn a_feed_follows_the_copy_to_its_end() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let (result, fed, copying, _dir) = fed_while_copied(&data, None).await;
        result.unwrap();
        assert_eq!(fed, data);
        assert_eq!(copying.now(), Copied::Whole(data.len() as u64));
        assert_eq!(copying.whole().await, Ok(data.len() as u64));
    }

    #[tokio::test]
    async fn a_failed_copy_stops_the_feed_and_the_waiters() {
        let data = vec![7u8; 1_000_000];
        let (result, fed, copying, dir) = fed_while_copied(&data, Some(500_000)).await;
        let path = dir.path().join("video");
        assert!(
            matches!(result, Err(FeedError::Copy(CopyFailed))),
            "{result:?}"
        );
        // What it fed before it learnt of the failure, and nothing past what was copied.
        assert!(
            fed.len() <= 500_000 && data.starts_with(&fed),
            "{}",
            fed.len()
        );
        assert_eq!(copying.now(), Copied::Failed);
        assert_eq!(copying.whole().await, Err(CopyFailed));
        assert_eq!(copying.may_start_early(&path).await, Err(CopyFailed));
    }

    #[tokio::test]
    async fn only_a_copy_under_way_of_an_index_first_file_starts_early() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("video");
        let head = [boxed(b"ftyp", 24), boxed(b"moov", 100_000)].concat();
        tokio::fs::write(&path, &head).await.unwrap();
        let (progress, copying) = copying();
        progress.wrote(head.len() as u64);
        assert_eq!(copying.may_start_early(&path).await, Ok(true));
        progress.finished(head.len() as u64);
        // Whole already: the file is read as it is.
        assert_eq!(copying.may_start_early(&path).await, Ok(false));

        let tail = [boxed(b"ftyp", 24), boxed(b"mdat", 100_000)].concat();
        tokio::fs::write(&path, &tail).await.unwrap();
        let (progress, tail_copying) = super::copying();
        progress.wrote(tail.len() as u64);
        assert_eq!(tail_copying.may_start_early(&path).await, Ok(false));
    }
}
