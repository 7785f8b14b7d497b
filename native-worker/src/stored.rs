//! The whole MP3 stored while ffmpeg writes it ([`Written`]): its bytes go to the store as they
//! are written, and only the first ones (the tag and the first frame), once it is finished.
//! What was stored is checked against the finished file; anything that differs is stored
//! again the ordinary way.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::watch;

use crate::convert::{Attempt, Growing, Written};
use crate::error::Error;
use crate::storage::{BlobStore, ByteStream, Settling};

/// Bytes read from ffmpeg's file at a time.
const READ_BYTES: usize = 256 << 10;

/// How often ffmpeg's file is looked at for more, when all it had is taken.
const TAIL_POLL: Duration = Duration::from_millis(25);

/// The MP3's name in the store: its title's, else the source's.
pub fn filename(title: Option<&str>, name: &str) -> String {
    format!("{}.mp3", title.unwrap_or(name))
}

/// Stores the MP3 as blob `id` while it is written, as `written` tells; returns its size, or
/// `None` when nothing was stored: the conversion ended before the MP3 could be laid out, or
/// without finishing it, or what was stored is not the finished MP3 (then the caller stores
/// it once finished, if it is). `name` names it when it has no title. Fails when the store
/// does.
pub async fn store_while_written(
    store: &dyn BlobStore,
    id: &str,
    name: &str,
    mut written: watch::Receiver<Written>,
) -> Result<Option<u64>, Error> {
    let mut tried = None;
    loop {
        let Some(growing) = next_growing(&mut written, tried).await else {
            return Ok(None);
        };
        tried = Some(growing.attempt);
        match store_growing(store, id, name, growing, written.clone()).await? {
            Outcome::Stored(size) => return Ok(Some(size)),
            Outcome::Differs => return Ok(None),
            // Its put failed, which removed what it stored before it returned.
            Outcome::Void => tracing::debug!("the MP3 being stored is void"),
        }
    }
}

/// What became of one MP3 stored while written.
enum Outcome {
    Stored(u64),
    /// Stored, but not the finished MP3.
    Differs,
    /// Another attempt began, or the conversion ended, before it was finished.
    Void,
}

/// The next MP3 being written, of another attempt than `tried`; `None` once the conversion is
/// over.
async fn next_growing(
    written: &mut watch::Receiver<Written>,
    tried: Option<Attempt>,
) -> Option<Growing> {
    loop {
        if let Written::Growing(growing) = &*written.borrow_and_update()
            && Some(growing.attempt) != tried
        {
            return Some(growing.clone());
        }
        written.changed().await.ok()?;
    }
}

async fn store_growing(
    store: &dyn BlobStore,
    id: &str,
    name: &str,
    growing: Growing,
    written: watch::Receiver<Written>,
) -> Result<Outcome, Error> {
    let mut file = tokio::fs::File::from_std(growing.file.try_clone().map_err(Error::internal)?);
    file.seek(std::io::SeekFrom::Start(growing.from))
        .await
        .map_err(Error::internal)?;
    let taken = Arc::new(Mutex::new(Taken::after(growing.settles)));
    let body = tail(
        growing.head.clone(),
        file,
        growing.attempt,
        written,
        Arc::clone(&taken),
    );
    let settles = growing.settles;
    let mp3 = growing.path.clone();
    let settling = Settling {
        bytes: settles,
        settled: Box::pin(async move {
            let mut head = Vec::new();
            open(&mp3, 0)
                .await?
                .take(settles)
                .read_to_end(&mut head)
                .await
                .map_err(Error::internal)?;
            Ok(Bytes::from(head))
        }),
    };
    let filename = filename(growing.title.as_deref(), name);
    let put = store
        .put_settling(id, &filename, body, u64::MAX, settling)
        .await;
    let stored = taken.lock().expect("never poisoned").clone();
    let size = match put {
        Err(_) if stored.void => return Ok(Outcome::Void),
        put => put?,
    };
    let finished = Taken::of(&growing.path, settles).await?;
    if stored != finished {
        tracing::warn!(
            ?stored,
            ?finished,
            "the MP3 stored while written is not the finished one; it is stored again"
        );
        return Ok(Outcome::Differs);
    }
    Ok(Outcome::Stored(size))
}

/// The bytes of an MP3 from an offset on (past those that settle last), as their length and
/// CRC-32.
#[derive(Debug, Clone)]
struct Taken {
    from: u64,
    /// Bytes seen so far, from the MP3's start.
    seen: u64,
    crc: crc32fast::Hasher,
    /// Whether the MP3 turned out void before it was all taken.
    void: bool,
}

impl PartialEq for Taken {
    fn eq(&self, other: &Self) -> bool {
        (self.from, self.seen, self.crc.clone().finalize())
            == (other.from, other.seen, other.crc.clone().finalize())
    }
}

impl Taken {
    fn after(from: u64) -> Self {
        Self {
            from,
            seen: 0,
            crc: crc32fast::Hasher::new(),
            void: false,
        }
    }

    /// The next bytes of the MP3.
    fn take(&mut self, bytes: &[u8]) {
        let skip = self.from.saturating_sub(self.seen).min(bytes.len() as u64) as usize;
        self.crc.update(&bytes[skip..]);
        self.seen += bytes.len() as u64;
    }

    /// The finished MP3 at `path`, from `from` on.
    async fn of(path: &Path, from: u64) -> Result<Self, Error> {
        let mut file = open(path, 0).await?;
        let mut taken = Self::after(from);
        let mut buf = BytesMut::with_capacity(READ_BYTES);
        loop {
            buf.clear();
            if file.read_buf(&mut buf).await.map_err(Error::internal)? == 0 {
                return Ok(taken);
            }
            taken.take(&buf);
        }
    }
}

/// The file at `path`, at `offset`.
async fn open(path: &Path, offset: u64) -> Result<tokio::fs::File, Error> {
    let mut file = tokio::fs::File::open(path).await.map_err(Error::internal)?;
    file.seek(std::io::SeekFrom::Start(offset))
        .await
        .map_err(Error::internal)?;
    Ok(file)
}

/// `head`, then what ffmpeg writes into `file`, as it writes it, until `written` tells that
/// `attempt` is done; each byte also goes to `taken`. Fails once `written` tells anything else
/// (`taken` then says it is void).
fn tail(
    head: Bytes,
    file: tokio::fs::File,
    attempt: Attempt,
    written: watch::Receiver<Written>,
    taken: Arc<Mutex<Taken>>,
) -> ByteStream {
    let first = futures::stream::iter((!head.is_empty()).then_some(Ok(head)));
    let voiding = Arc::clone(&taken);
    let void = move || {
        voiding.lock().expect("never poisoned").void = true;
        std::io::Error::other("the MP3 being written is void")
    };
    let rest = futures::stream::try_unfold(
        (file, written, false),
        move |(mut file, mut written, mut done)| {
            let void = void.clone();
            async move {
                loop {
                    let mut buf = BytesMut::with_capacity(READ_BYTES);
                    if file.read_buf(&mut buf).await? > 0 {
                        return Ok(Some((buf.freeze(), (file, written, done))));
                    }
                    if done {
                        return Ok(None);
                    }
                    let over = match &*written.borrow_and_update() {
                        Written::Growing(growing) if growing.attempt == attempt => growing.done,
                        // Anything but this MP3 done voids it.
                        _ => return Err(void()),
                    };
                    if over {
                        // ffmpeg's file has all its bytes: one more read takes the last.
                        done = true;
                        continue;
                    }
                    tokio::select! {
                        // Over without a word more: it never got done.
                        changed = written.changed() => if changed.is_err() {
                            return Err(void());
                        },
                        () = tokio::time::sleep(TAIL_POLL) => {}
                    }
                }
            }
        },
    );
    first
        .chain(rest)
        .inspect(move |bytes| {
            if let Ok(bytes) = bytes {
                taken.lock().expect("never poisoned").take(bytes);
            }
        })
        .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_taken_counts_every_byte_and_hashes_those_past_its_offset() {
        let mut split = Taken::after(5);
        for part in [&b"abc"[..], b"defg", b"", b"hij"] {
            split.take(part);
        }
        let mut whole = Taken::after(5);
        whole.take(b"abcdefghij");
        assert_eq!(split, whole);
        let mut other = Taken::after(5);
        other.take(b"abcdeXghij");
        assert_ne!(split, other, "a byte past the offset differs");
        let mut before = Taken::after(5);
        before.take(b"Xbcdefghij");
        assert_eq!(split, before, "bytes before the offset settle later");
    }
}
