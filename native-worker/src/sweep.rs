//! What a crashed worker leaves behind, found and removed at start-up: its conversion
//! directories and GridFS files that no job owns.
//!
//! A conversion directory is in use exactly while its `.lock` file is locked (`flock`): the
//! kernel drops the lock when its holder dies, however it dies, so a lock that can be taken
//! marks a directory nobody uses, even with other workers sharing the temp directory.

use std::collections::HashSet;
use std::fs::File;
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use futures::TryStreamExt;
use mongodb::Database;
use mongodb::bson::{Bson, DateTime, Document, doc, oid::ObjectId};

use crate::error::Error;
use crate::job::JobId;
use crate::jobs::JobStore;

/// Name prefix of the worker's conversion directories.
pub const JOB_DIR_PREFIX: &str = "mp3conv-job-";
/// The lock file inside each conversion directory.
const LOCK_FILE: &str = ".lock";
/// A directory without a lock file (its worker died between creating and locking it, or an
/// older version made it) is left alone this long.
const UNLOCKED_GRACE: Duration = Duration::from_secs(10 * 60);

/// A conversion's private directory, removed when dropped; locked while it lives.
pub struct JobDir {
    dir: tempfile::TempDir,
    _lock: File,
}

impl JobDir {
    /// Creates and locks a fresh directory under `parent` (the system temp directory when
    /// `None`).
    pub fn create(parent: Option<&Path>) -> io::Result<Self> {
        let mut builder = tempfile::Builder::new();
        builder.prefix(JOB_DIR_PREFIX);
        let dir = match parent {
            Some(parent) => builder.tempdir_in(parent),
            None => builder.tempdir(),
        }?;
        let lock = File::create(dir.path().join(LOCK_FILE))?;
        lock.try_lock().map_err(io::Error::other)?;
        Ok(Self { dir, _lock: lock })
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Removes the conversion directories in `parent` (the system temp directory when `None`)
/// that no living process holds; returns how many.
pub async fn temp_dirs(parent: Option<PathBuf>) -> io::Result<usize> {
    let parent = parent.unwrap_or_else(std::env::temp_dir);
    tokio::task::spawn_blocking(move || stale_temp_dirs(&parent))
        .await
        .map_err(io::Error::other)?
}

fn stale_temp_dirs(parent: &Path) -> io::Result<usize> {
    let me = rustix::process::geteuid().as_raw();
    let mut removed = 0;
    for entry in std::fs::read_dir(parent)? {
        let entry = entry?;
        if !entry
            .file_name()
            .to_string_lossy()
            .starts_with(JOB_DIR_PREFIX)
        {
            continue;
        }
        let path = entry.path();
        // The temp directory may be the shared /tmp: only real directories (not links to
        // one) made by this user can be a conversion's, whatever their name.
        let ours = std::fs::symlink_metadata(&path)
            .is_ok_and(|meta| meta.file_type().is_dir() && meta.uid() == me);
        if !ours {
            continue;
        }
        let stale = match open_lock(&path.join(LOCK_FILE)) {
            // Held for as long as the removal takes, so nobody else decides differently.
            Ok(Some(lock)) => lock.try_lock().is_ok().then_some(Some(lock)),
            // Something else sits where the lock belongs: not a directory we made.
            Ok(None) => None,
            Err(e) if e.kind() == io::ErrorKind::NotFound => std::fs::symlink_metadata(&path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|at| SystemTime::now().duration_since(at).ok())
                .is_some_and(|age| age > UNLOCKED_GRACE)
                .then_some(None),
            Err(_) => None,
        };
        if let Some(_lock) = stale {
            // `remove_dir_all` never follows symbolic links: a link inside is removed, not
            // what it points to.
            match std::fs::remove_dir_all(&path) {
                Ok(()) => removed += 1,
                Err(e) => {
                    tracing::warn!(dir = %path.display(), error = %e, "cannot remove a stale conversion directory")
                }
            }
        }
    }
    Ok(removed)
}

/// Opens a conversion directory's lock file without following a symbolic link and without
/// blocking (opening a FIFO for reading would wait for a writer forever); `None` unless it is
/// a regular file.
fn open_lock(path: &Path) -> io::Result<Option<File>> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(path)?;
    Ok(file.metadata()?.is_file().then_some(file))
}

fn db_error(e: mongodb::error::Error) -> Error {
    Error::unavailable("gridfs", e)
}

/// How many file ids the GridFS sweep looks up at once.
const SWEEP_BATCH: usize = crate::jobs::EXISTING_BATCH;

/// Removes from the GridFS bucket `bucket` the files no job owns and the chunks of uploads
/// that never finished, when older than `min_age` (younger ones may be uploads in flight in
/// another replica); returns how many files it removed.
///
/// It reads ids, never file contents: the files older than `min_age` through a cursor, asking
/// the job store about [`SWEEP_BATCH`] of them at a time, and the first chunk of every upload
/// (`n: 0`) from the `{files_id, n}` index alone. Only blobs named after a job are the
/// worker's own (see [`owning_job`]); others are never touched.
pub async fn gridfs(
    db: &Database,
    bucket: &str,
    jobs: &dyn JobStore,
    min_age: Duration,
) -> Result<usize, Error> {
    let files = db.collection::<Document>(&format!("{bucket}.files"));
    let chunks = db.collection::<Document>(&format!("{bucket}.chunks"));
    let cutoff = SystemTime::now()
        .checked_sub(min_age)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let cutoff_date = DateTime::from_system_time(cutoff);
    // Chunk ids are ObjectIds, which start with their creation time in seconds.
    let cutoff_secs = cutoff
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut cutoff_oid = [0u8; 12];
    cutoff_oid[..4].copy_from_slice(&u32::try_from(cutoff_secs).unwrap_or(u32::MAX).to_be_bytes());
    let cutoff_oid = ObjectId::from_bytes(cutoff_oid);

    let mut removed = 0;
    let mut old_files = files
        .find(doc! {"uploadDate": {"$lt": cutoff_date}})
        .projection(doc! {"_id": 1})
        .batch_size(SWEEP_BATCH as u32)
        .await
        .map_err(db_error)?;
    let mut batch: Vec<(String, JobId)> = Vec::with_capacity(SWEEP_BATCH);
    loop {
        let next = old_files.try_next().await.map_err(db_error)?;
        let done = next.is_none();
        if let Some(id) = next.as_ref().and_then(|f| f.get_str("_id").ok())
            && let Some(job) = owning_job(id)
        {
            batch.push((id.to_owned(), job));
        }
        if batch.len() == SWEEP_BATCH || (done && !batch.is_empty()) {
            let asked: Vec<JobId> = batch.iter().map(|(_, job)| *job).collect();
            let owned = jobs.existing(&asked).await?;
            for (id, _) in batch.drain(..).filter(|(_, job)| !owned.contains(job)) {
                chunks
                    .delete_many(doc! {"files_id": &id})
                    .await
                    .map_err(db_error)?;
                files
                    .delete_one(doc! {"_id": &id})
                    .await
                    .map_err(db_error)?;
                tracing::info!(bucket, id, "removed a file no job owns");
                removed += 1;
            }
        }
        if done {
            break;
        }
    }

    // Uploads that never finished: a first chunk without a files document, and nothing
    // written lately. The filter on `files_id` (every string) and the projection let the
    // server answer from the `{files_id, n}` index without reading a chunk.
    let mut first_chunks = chunks
        .find(doc! {"files_id": {"$gte": ""}, "n": 0})
        .projection(doc! {"files_id": 1, "_id": 0})
        .batch_size(SWEEP_BATCH as u32)
        .await
        .map_err(db_error)?;
    let mut batch: Vec<String> = Vec::with_capacity(SWEEP_BATCH);
    loop {
        let next = first_chunks.try_next().await.map_err(db_error)?;
        let done = next.is_none();
        if let Some(Bson::String(id)) = next.as_ref().and_then(|c| c.get("files_id"))
            && owning_job(id).is_some()
        {
            batch.push(id.clone());
        }
        if batch.len() == SWEEP_BATCH || (done && !batch.is_empty()) {
            let finished: HashSet<String> = files
                .find(doc! {"_id": {"$in": batch.clone()}})
                .projection(doc! {"_id": 1})
                .await
                .map_err(db_error)?
                .try_collect::<Vec<Document>>()
                .await
                .map_err(db_error)?
                .iter()
                .filter_map(|f| f.get_str("_id").ok().map(str::to_owned))
                .collect();
            for id in batch.drain(..).filter(|id| !finished.contains(id)) {
                // The newest chunk tells when the upload last moved.
                let recent = chunks
                    .find_one(doc! {"files_id": &id, "_id": {"$gte": cutoff_oid}})
                    .projection(doc! {"_id": 1})
                    .await
                    .map_err(db_error)?
                    .is_some();
                if recent {
                    continue;
                }
                chunks
                    .delete_many(doc! {"files_id": &id})
                    .await
                    .map_err(db_error)?;
                tracing::info!(bucket, id, "removed the chunks of an unfinished upload");
                removed += 1;
            }
        }
        if done {
            break;
        }
    }
    Ok(removed)
}

/// The job a blob of the worker's belongs to: its video or MP3 (named by the job's id) or one
/// of its tracks' MP3s ([`track_blob_id`](crate::job::track_blob_id): `<id>.tNNN`).
pub fn owning_job(blob_id: &str) -> Option<JobId> {
    let (job, rest) = blob_id.split_at_checked(36)?;
    let track = rest.strip_prefix(".t");
    let ours = rest.is_empty()
        || track.is_some_and(|n| n.len() >= 3 && n.bytes().all(|b| b.is_ascii_digit()));
    ours.then(|| job.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_belong_to_their_job_tracks_included() {
        let id = JobId::new();
        assert_eq!(owning_job(&id.to_string()), Some(id));
        assert_eq!(owning_job(&crate::job::track_blob_id(id, 7)), Some(id));
        assert_eq!(owning_job(&crate::job::track_blob_id(id, 100)), Some(id));
        for other in [
            format!("{id}.t"),
            format!("{id}.t01"),
            format!("{id}.tx01"),
            format!("{id}.mp3"),
            format!("{id}x"),
            "not-a-job".to_owned(),
            "é".repeat(20),
            String::new(),
        ] {
            assert_eq!(owning_job(&other), None, "{other}");
        }
    }

    #[test]
    fn only_unlocked_conversion_directories_are_stale() {
        let parent = tempfile::tempdir().unwrap();
        let live = JobDir::create(Some(parent.path())).unwrap();
        let dead = JobDir::create(Some(parent.path())).unwrap();
        let dead_path = dead.path().to_owned();
        // A dead holder: its directory stays on disk but its lock is gone.
        let kept = dead.dir.keep();
        drop(dead._lock);
        assert_eq!(kept, dead_path);
        let unlocked_young = parent.path().join(format!("{JOB_DIR_PREFIX}young"));
        std::fs::create_dir(&unlocked_young).unwrap();
        let not_ours = parent.path().join("other-dir");
        std::fs::create_dir(&not_ours).unwrap();

        assert_eq!(stale_temp_dirs(parent.path()).unwrap(), 1);
        assert!(live.path().exists());
        assert!(!dead_path.exists());
        assert!(unlocked_young.exists(), "may be a directory being set up");
        assert!(not_ours.exists());
    }

    /// Runs the sweep on another thread; fails instead of hanging if it blocks.
    fn sweep_within_seconds(parent: &Path) -> usize {
        let parent = parent.to_owned();
        let (done, result) = std::sync::mpsc::channel();
        std::thread::spawn(move || done.send(stale_temp_dirs(&parent).unwrap()));
        result
            .recv_timeout(Duration::from_secs(10))
            .expect("the sweep blocked")
    }

    #[test]
    fn a_fifo_for_a_lock_neither_hangs_the_sweep_nor_gets_it_removed() {
        let parent = tempfile::tempdir().unwrap();
        let evil = parent.path().join(format!("{JOB_DIR_PREFIX}evil"));
        std::fs::create_dir(&evil).unwrap();
        let status = std::process::Command::new("mkfifo")
            .arg(evil.join(LOCK_FILE))
            .status()
            .unwrap();
        assert!(status.success());
        let dead = JobDir::create(Some(parent.path())).unwrap();
        let dead_path = dead.dir.keep();
        drop(dead._lock);

        assert_eq!(sweep_within_seconds(parent.path()), 1);
        assert!(evil.join(LOCK_FILE).exists(), "not a directory we made");
        assert!(!dead_path.exists());
    }

    #[test]
    fn symbolic_links_are_never_followed() {
        let parent = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("precious"), b"keep me").unwrap();
        // An unlocked lock file there, as a dead conversion's would be.
        std::fs::write(outside.path().join(LOCK_FILE), b"").unwrap();
        // A link named like a conversion directory, pointing outside.
        let linked = parent.path().join(format!("{JOB_DIR_PREFIX}link"));
        std::os::unix::fs::symlink(outside.path(), &linked).unwrap();
        // A stale conversion directory whose lock and contents are links to the outside.
        let dead = JobDir::create(Some(parent.path())).unwrap();
        let dead_path = dead.dir.keep();
        drop(dead._lock);
        std::os::unix::fs::symlink(outside.path(), dead_path.join("video")).unwrap();
        let lock_link = parent.path().join(format!("{JOB_DIR_PREFIX}lock-link"));
        std::fs::create_dir(&lock_link).unwrap();
        std::os::unix::fs::symlink(outside.path().join(LOCK_FILE), lock_link.join(LOCK_FILE))
            .unwrap();

        assert_eq!(sweep_within_seconds(parent.path()), 1);
        assert!(!dead_path.exists());
        assert!(linked.symlink_metadata().is_ok(), "the link itself stays");
        assert!(lock_link.exists(), "a linked lock is not ours");
        assert_eq!(
            std::fs::read(outside.path().join("precious")).unwrap(),
            b"keep me"
        );
        assert!(outside.path().join(LOCK_FILE).exists());
    }
}
