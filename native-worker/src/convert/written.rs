//! The whole MP3 as ffmpeg writes it, told to whoever stores it, so that it is stored while the
//! conversion goes on rather than after it (0.2-0.3 s of a 10-minute video's conversion).
//!
//! ffmpeg writes the MP3 front to back, and goes back once, at the end, to write the length
//! into its first audio frame (the LAME/Info header). The converter then adds frames to the
//! tag at the front (the comment and the cover, see `id3`): the MP3 is that tag's header and
//! frames, then ffmpeg's file from past its tag header. So once ffmpeg has written its tag and
//! the frames to add are known (the cover is taken in a fraction of the encoding), every byte
//! of the MP3 has its place, and all but the first ones are final as they are written.

use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{oneshot, watch};

use super::id3::Layout;

/// Most bytes of an MP3's first frame, where ffmpeg writes the Info header: MPEG-1 layer III
/// at 320 kbit/s and 32 kHz with padding takes 1441 bytes. What the store takes is checked
/// against the finished file anyway.
const FIRST_FRAME_BYTES: u64 = 4096;

/// Most bytes that may settle last (a store holds them until the MP3 is finished): past this
/// (a tag grown by a very large cover), the MP3 is stored once finished.
const MAX_SETTLES: u64 = 4 << 20;

/// How often the MP3's first bytes are looked for, while ffmpeg has not written them.
const HEAD_POLL: Duration = Duration::from_millis(20);

/// Where the MP3 of a conversion stands.
#[derive(Debug, Clone, Default)]
pub enum Written {
    /// Nothing to take yet; or any more: an attempt that begins anew voids what was taken of
    /// the one before.
    #[default]
    Nothing,
    /// ffmpeg is writing the MP3, or has written it.
    Growing(Growing),
}

/// An MP3 ffmpeg is writing into `file`, or has written (`done`). The MP3 is `head`, then the
/// file's bytes from `from` on; its first `settles` bytes are final only once it is done.
#[derive(Debug, Clone)]
pub struct Growing {
    /// Which attempt writes it.
    pub attempt: Attempt,
    /// ffmpeg's file, opened once it was there: whatever later takes its path (the tagged MP3),
    /// this is what ffmpeg writes.
    pub file: Arc<std::fs::File>,
    /// Where it is, and where the finished MP3 will be.
    pub path: PathBuf,
    pub head: Bytes,
    pub from: u64,
    pub settles: u64,
    /// Its title tag, if it has one.
    pub title: Option<String>,
    /// Whether the attempt is over, and its MP3 finished and checked: ffmpeg's file has all
    /// its bytes, and the MP3 is at `path` (a new file when frames were added). Told by the
    /// same value, so that a store that comes late still finds what it needs.
    pub done: bool,
}

impl Written {
    /// How the MP3 that ffmpeg is writing into `file` (at `path`) is laid out once `frames`
    /// are added to its tag; `Ok(None)` while ffmpeg has not written its tag and the start of
    /// its first frame, an error for a tag the converter cannot add to, or that would hold
    /// more than [`MAX_SETTLES`] bytes back.
    pub fn growing(
        attempt: Attempt,
        file: Arc<std::fs::File>,
        path: &Path,
        frames: &[u8],
        title: Option<String>,
    ) -> io::Result<Option<Self>> {
        let mut head = [0u8; 10];
        let read = file.read_at(&mut head, 0)?;
        if read < head.len() {
            return Ok(None);
        }
        let layout = Layout::new(&head, frames)?;
        // ffmpeg writes a tag's size last: until then it reads 0, and no frame sync follows.
        let mut sync = [0u8; 2];
        if file.read_at(&mut sync, layout.audio)? < 2 || !frame_sync(sync) {
            return Ok(None);
        }
        let settles = layout.tagged(layout.audio) + FIRST_FRAME_BYTES;
        if settles > MAX_SETTLES {
            return Err(io::Error::other(format!(
                "{settles} bytes would settle last"
            )));
        }
        Ok(Some(Self::Growing(Growing {
            attempt,
            file,
            path: path.to_owned(),
            settles,
            head: Bytes::from(layout.head),
            from: layout.from,
            title,
            done: false,
        })))
    }

    /// Marks the MP3 of `attempt` done; whether it was growing.
    pub fn finish(&mut self, attempt: Attempt) -> bool {
        match self {
            Self::Growing(growing) if growing.attempt == attempt => {
                growing.done = true;
                true
            }
            _ => false,
        }
    }
}

/// Whether two bytes start an MPEG audio frame (eleven bits set).
fn frame_sync([first, second]: [u8; 2]) -> bool {
    first == 0xFF && second & 0xE0 == 0xE0
}

/// One attempt at a conversion, told apart from any other of the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt(u64);

impl Attempt {
    /// A new one.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        static LAST: AtomicU64 = AtomicU64::new(0);
        Self(LAST.fetch_add(1, Ordering::Relaxed) + 1)
    }
}

/// Tells `written` how the MP3 ffmpeg is writing at `path` will be laid out, once `frames`
/// says what is added to its tag and ffmpeg has written the tag and its first frame's start.
/// Once `encoded` (ffmpeg is over), it looks once more and then gives up, as it does on a tag
/// the converter cannot add to or on `frames` never coming: nothing is told, and the MP3 is
/// stored once finished.
pub(super) async fn announce(
    written: &watch::Sender<Written>,
    attempt: Attempt,
    path: &Path,
    frames: oneshot::Receiver<Vec<u8>>,
    title: Option<String>,
    encoded: &AtomicBool,
) {
    let Ok(frames) = frames.await else {
        return;
    };
    let mut file = None;
    loop {
        let last_look = encoded.load(Ordering::Acquire);
        if file.is_none() {
            file = std::fs::File::open(path).ok().map(Arc::new);
        }
        if let Some(file) = &file {
            match Written::growing(attempt, Arc::clone(file), path, &frames, title.clone()) {
                Ok(Some(growing)) => {
                    written.send_replace(growing);
                    return;
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "the MP3 is stored once finished");
                    return;
                }
            }
        }
        if last_look {
            return;
        }
        tokio::time::sleep(HEAD_POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::super::id3;
    use super::*;

    fn written(dir: &Path, bytes: &[u8], frames: &[u8]) -> Option<Written> {
        let path = dir.join("audio.mp3");
        std::fs::write(&path, bytes).unwrap();
        let file = Arc::new(std::fs::File::open(&path).unwrap());
        Written::growing(Attempt::new(), file, &path, frames, None).unwrap()
    }

    #[test]
    fn what_settles_runs_to_the_end_of_the_first_frame_after_the_grown_tag() {
        let dir = tempfile::tempdir().unwrap();
        let frames = id3::comment_frame("hi");
        let mut mp3 = b"ID3\x03\x00\x00\x00\x00\x01\x00".to_vec();
        mp3.resize(10 + 128, 0);
        mp3.extend_from_slice(b"\xff\xfb\x90\x00");
        let Some(Written::Growing(Growing {
            head,
            from,
            settles,
            ..
        })) = written(dir.path(), &mp3, &frames)
        else {
            panic!("not laid out");
        };
        assert_eq!((head.len(), from), (10 + frames.len(), 10));
        assert_eq!(
            settles,
            (10 + frames.len() + 128) as u64 + FIRST_FRAME_BYTES
        );
    }

    #[test]
    fn a_tag_whose_size_is_not_written_yet_is_not_laid_out() {
        let dir = tempfile::tempdir().unwrap();
        // ffmpeg's placeholder: size 0, frames after it, the size written once they are.
        let mut mp3 = b"ID3\x03\x00\x00\x00\x00\x00\x00".to_vec();
        mp3.extend_from_slice(b"TIT2\x00\x00\x00\x02\x00\x00\x00T");
        assert!(written(dir.path(), &mp3, &[]).is_none());
        // Too short to tell.
        assert!(written(dir.path(), b"ID3\x03", &[]).is_none());
    }

    #[test]
    fn a_cover_too_large_to_hold_back_is_stored_once_finished() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audio.mp3");
        std::fs::write(&path, b"ID3\x03\x00\x00\x00\x00\x00\x00\xff\xfb").unwrap();
        let file = Arc::new(std::fs::File::open(&path).unwrap());
        let cover = id3::picture_frame(&vec![0u8; MAX_SETTLES as usize]);
        assert!(Written::growing(Attempt::new(), file, &path, &cover, None).is_err());
    }

    #[tokio::test]
    async fn the_layout_is_told_once_the_frames_and_the_tag_are_known() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audio.mp3");
        let (written, seen) = watch::channel(Written::Nothing);
        let (frames, frames_rx) = oneshot::channel();
        let encoded = AtomicBool::new(false);
        let attempt = Attempt::new();
        let announcing = announce(
            &written,
            attempt,
            &path,
            frames_rx,
            Some("T".into()),
            &encoded,
        );
        let writing = async {
            frames.send(id3::comment_frame("hi")).unwrap();
            tokio::time::sleep(HEAD_POLL * 2).await;
            assert!(
                matches!(*seen.borrow(), Written::Nothing),
                "no tag written yet"
            );
            std::fs::write(&path, b"ID3\x03\x00\x00\x00\x00\x00\x0c").unwrap();
            tokio::time::sleep(HEAD_POLL * 2).await;
            assert!(
                matches!(*seen.borrow(), Written::Nothing),
                "no frame written yet"
            );
            std::fs::write(&path, b"ID3\x03\x00\x00\x00\x00\x00\x02\x00\x00\xff\xfb").unwrap();
        };
        tokio::join!(announcing, writing);
        let Written::Growing(Growing {
            attempt: told,
            head,
            from,
            title,
            ..
        }) = seen.borrow().clone()
        else {
            panic!("not told: {:?}", *seen.borrow());
        };
        assert_eq!(told, attempt);
        assert_eq!(&head[..3], b"ID3");
        assert_eq!(head.len(), 10 + id3::comment_frame("hi").len());
        assert_eq!((from, title.as_deref()), (10, Some("T")));
    }

    #[tokio::test]
    async fn once_ffmpeg_is_over_nothing_laid_out_is_given_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audio.mp3");
        std::fs::write(&path, b"ID3\x03\x00\x00\x00\x00\x00\x00").unwrap();
        let (written, seen) = watch::channel(Written::Nothing);
        let (frames, frames_rx) = oneshot::channel();
        frames.send(Vec::new()).unwrap();
        let encoded = AtomicBool::new(true);
        announce(&written, Attempt::new(), &path, frames_rx, None, &encoded).await;
        assert!(matches!(*seen.borrow(), Written::Nothing));
    }
}
