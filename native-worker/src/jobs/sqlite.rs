//! Jobs in a SQLite file (the embedded default).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::OptionalExtension;
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
use time::OffsetDateTime;

use super::{Claim, EXISTING_BATCH, JobStore, Saved, StoredUsage};
use crate::error::Error;
use crate::job::{Job, JobId};
use crate::jobs::{from_unix_ms, rfc3339_seconds, unix_ms};

/// A `jobs` table: id and owner as columns for lookups, the job itself as JSON, the
/// converter's lease (`lease_holder`, `lease_until` in Unix milliseconds) and, for a held
/// upload, when its hold began (`held_since`, Unix milliseconds; NULL once started) beside it;
/// what a quota sums (`active`, `stored_bytes`) too. Jobs made are noted in `jobs_made`.
#[derive(Debug, Clone)]
pub struct SqliteJobs {
    pool: SqlitePool,
    /// Lookups (a download's job, a page of the list) are tried on the caller's thread first.
    readers: Arc<Readers>,
}

/// Read-only connections to the same file, for reads tried on the caller's thread (see
/// [`mp3conv_sqlite_quick`]): a download's lookup of its job no longer makes two trips to
/// sqlx's connection thread. In WAL mode a read sees every write committed before it began.
#[derive(Debug)]
struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<rusqlite::Connection>>,
}

/// Idle read connections kept; more, opened under a burst, are closed when done.
const IDLE_READERS: usize = 8;
/// How long a read handed to the blocking pool waits for a lock (sqlx's default).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

impl Readers {
    fn open(&self) -> rusqlite::Result<rusqlite::Connection> {
        let connection = rusqlite::Connection::open_with_flags(
            &self.path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        // Read-write opened, so that WAL's shared-memory file is made if it is missing; no
        // statement on it may write.
        connection.pragma_update(None, "query_only", true)?;
        Ok(connection)
    }

    fn take(&self) -> Option<rusqlite::Connection> {
        self.idle.lock().expect("sqlite readers lock").pop()
    }

    fn give_back(&self, connection: rusqlite::Connection) {
        let mut idle = self.idle.lock().expect("sqlite readers lock");
        if idle.len() < IDLE_READERS {
            idle.push(connection);
        }
    }
}

fn read_error(e: rusqlite::Error) -> Error {
    Error::unavailable("sqlite", e)
}

fn db_error(e: sqlx::Error) -> Error {
    Error::unavailable("sqlite", e)
}

impl SqliteJobs {
    /// Opens (creating) the database file and its table.
    pub async fn open(path: &Path) -> Result<Self, Error> {
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| Error::unavailable("sqlite", e))?;
        }
        let options = SqliteConnectOptions::from_str("sqlite://")
            .map_err(db_error)?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // With WAL, NORMAL syncs at checkpoints instead of on every commit: a crash of the
            // process loses nothing, and progress updates stop competing with ffmpeg for the
            // disk. (The embedded queue does not outlive the process anyway.)
            .synchronous(sqlx::sqlite::SqliteSynchronous::Normal);
        let pool = SqlitePool::connect_with(options).await.map_err(db_error)?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS jobs (
                id TEXT PRIMARY KEY NOT NULL,
                owner TEXT NOT NULL,
                body TEXT NOT NULL
            )",
        )
        .execute(&pool)
        .await
        .map_err(db_error)?;
        sqlx::query("CREATE INDEX IF NOT EXISTS jobs_owner_id ON jobs (owner, id DESC)")
            .execute(&pool)
            .await
            .map_err(db_error)?;
        // Files made before leases existed get the columns now.
        let leased: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pragma_table_info('jobs') WHERE name = 'lease_holder'",
        )
        .fetch_one(&pool)
        .await
        .map_err(db_error)?;
        if leased == 0 {
            for statement in [
                "ALTER TABLE jobs ADD COLUMN lease_holder TEXT",
                "ALTER TABLE jobs ADD COLUMN lease_until INTEGER",
            ] {
                sqlx::query(statement)
                    .execute(&pool)
                    .await
                    .map_err(db_error)?;
            }
        }
        // And before held uploads existed, the hold's column.
        let held: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pragma_table_info('jobs') WHERE name = 'held_since'",
        )
        .fetch_one(&pool)
        .await
        .map_err(db_error)?;
        if held == 0 {
            sqlx::query("ALTER TABLE jobs ADD COLUMN held_since INTEGER")
                .execute(&pool)
                .await
                .map_err(db_error)?;
        }
        // And before retention, the expiry's column.
        let expiring: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pragma_table_info('jobs') WHERE name = 'expires_at'",
        )
        .fetch_one(&pool)
        .await
        .map_err(db_error)?;
        if expiring == 0 {
            sqlx::query("ALTER TABLE jobs ADD COLUMN expires_at INTEGER")
                .execute(&pool)
                .await
                .map_err(db_error)?;
        }
        sqlx::query(
            "CREATE INDEX IF NOT EXISTS jobs_expiry ON jobs (expires_at)
             WHERE expires_at IS NOT NULL",
        )
        .execute(&pool)
        .await
        .map_err(db_error)?;
        // And before quotas, what an owner's quota sums, filled in from the jobs' bodies once.
        let counted: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pragma_table_info('jobs') WHERE name = 'stored_bytes'",
        )
        .fetch_one(&pool)
        .await
        .map_err(db_error)?;
        if counted == 0 {
            // One transaction: a crash half-way leaves the table as it was.
            let mut tx = pool.begin().await.map_err(db_error)?;
            for statement in [
                "ALTER TABLE jobs ADD COLUMN active INTEGER NOT NULL DEFAULT 0",
                "ALTER TABLE jobs ADD COLUMN stored_bytes INTEGER NOT NULL DEFAULT 0",
                "UPDATE jobs SET
                    active = json_extract(body, '$.status') IN ('queued', 'downloading', 'converting'),
                    stored_bytes = COALESCE(json_extract(body, '$.video_bytes'), 0)
                        + COALESCE(json_extract(body, '$.audio.size'), 0)
                        + (SELECT COALESCE(SUM(json_extract(value, '$.audio.size')), 0)
                           FROM json_each(body, '$.tracks'))",
            ] {
                sqlx::query(statement)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error)?;
            }
            tx.commit().await.map_err(db_error)?;
        }
        // An owner's usage is read from one index alone; the ledger of jobs made, which the
        // jobs-per-hour quota counts in.
        schema(
            &pool,
            &[
                "CREATE INDEX IF NOT EXISTS jobs_owner_usage ON jobs (owner, stored_bytes, active)",
                "CREATE TABLE IF NOT EXISTS jobs_made (
                    owner TEXT NOT NULL,
                    job_id TEXT NOT NULL,
                    made_at INTEGER NOT NULL,
                    PRIMARY KEY (owner, job_id)
                )",
                "CREATE INDEX IF NOT EXISTS jobs_made_owner ON jobs_made (owner, made_at)",
                "CREATE INDEX IF NOT EXISTS jobs_made_at ON jobs_made (made_at)",
            ],
        )
        .await?;
        // Idempotency keys: which job each of an owner's keys names, and for what request;
        // held uploads, in an index of their own so that the sweeper finds them without a
        // scan.
        schema(
            &pool,
            &[
                "CREATE TABLE IF NOT EXISTS job_keys (
                    owner TEXT NOT NULL,
                    key TEXT NOT NULL,
                    job_id TEXT NOT NULL,
                    fingerprint TEXT NOT NULL,
                    claimed_at INTEGER NOT NULL,
                    PRIMARY KEY (owner, key)
                )",
                "CREATE INDEX IF NOT EXISTS job_keys_claimed ON job_keys (claimed_at)",
                "CREATE INDEX IF NOT EXISTS jobs_held ON jobs (held_since)
                 WHERE held_since IS NOT NULL",
            ],
        )
        .await?;
        let readers = Arc::new(Readers {
            path: path.to_owned(),
            idle: Mutex::new(Vec::new()),
        });
        Ok(Self { pool, readers })
    }

    /// Runs `read` on this thread if it can finish without waiting, else on the blocking pool.
    async fn read<T: Send + 'static>(
        &self,
        read: impl Fn(&rusqlite::Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, Error> {
        let idle = self.readers.take();
        if let Some(connection) = idle.as_ref()
            && let Some(result) = mp3conv_sqlite_quick::without_waiting(connection, &read)
        {
            self.readers.give_back(idle.expect("checked above"));
            return result.map_err(read_error);
        }
        let readers = Arc::clone(&self.readers);
        tokio::task::spawn_blocking(move || {
            let connection = match idle {
                Some(connection) => connection,
                None => readers.open()?,
            };
            connection.busy_timeout(BUSY_TIMEOUT)?;
            let result = read(&connection);
            readers.give_back(connection);
            result
        })
        .await
        .map_err(Error::internal)?
        .map_err(read_error)
    }
}

fn encode(job: &Job) -> Result<String, Error> {
    serde_json::to_string(job).map_err(Error::internal)
}

/// The job's expiry as stored beside it.
fn expiry(job: &Job) -> Option<i64> {
    job.expires_at.map(unix_ms)
}

/// Runs schema statements, in order.
async fn schema(pool: &SqlitePool, statements: &[&'static str]) -> Result<(), Error> {
    for statement in statements {
        sqlx::query(*statement)
            .execute(pool)
            .await
            .map_err(db_error)?;
    }
    Ok(())
}

/// A statement writing a job, with what every such write binds first, in order: its body,
/// expiry, whether it is active and its stored bytes.
fn with_job<'q>(
    query: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>,
    job: &Job,
) -> Result<sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>, Error> {
    Ok(query
        .bind(encode(job)?)
        .bind(expiry(job))
        .bind(i64::from(job.is_active()))
        .bind(stored(job)))
}

/// [`Job::stored_bytes`] as its column holds it.
fn stored(job: &Job) -> i64 {
    i64::try_from(job.stored_bytes()).unwrap_or(i64::MAX)
}

fn decode(body: &str) -> Result<Job, Error> {
    serde_json::from_str(body).map_err(Error::internal)
}

#[async_trait]
impl JobStore for SqliteJobs {
    async fn insert(&self, job: &Job) -> Result<(), Error> {
        let held_since = job.held.then(|| unix_ms(OffsetDateTime::now_utc()));
        sqlx::query(
            "INSERT INTO jobs (id, owner, body, held_since, expires_at, active, stored_bytes)
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(job.id.to_string())
        .bind(&job.owner)
        .bind(encode(job)?)
        .bind(held_since)
        .bind(expiry(job))
        .bind(i64::from(job.is_active()))
        .bind(stored(job))
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn get(&self, id: JobId) -> Result<Option<Job>, Error> {
        let id = id.to_string();
        let body = self
            .read(move |connection| {
                connection
                    .prepare_cached("SELECT body FROM jobs WHERE id = ?")?
                    .query_row([&id], |row| row.get::<_, String>(0))
                    .optional()
            })
            .await?;
        body.as_deref().map(decode).transpose()
    }

    async fn list(
        &self,
        owner: &str,
        before: Option<JobId>,
        limit: u32,
    ) -> Result<Vec<Job>, Error> {
        let owner = owner.to_owned();
        let before = before.map(|id| id.to_string());
        let bodies: Vec<String> = self
            .read(move |connection| {
                connection
                    .prepare_cached(
                        "SELECT body FROM jobs
                         WHERE owner = ?1 AND (?2 IS NULL OR id < ?2) AND held_since IS NULL
                         ORDER BY id DESC LIMIT ?3",
                    )?
                    .query_map(rusqlite::params![owner, before, limit], |row| row.get(0))?
                    .collect()
            })
            .await?;
        bodies.iter().map(|b| decode(b)).collect()
    }

    async fn start_held(&self, job: &Job) -> Result<bool, Error> {
        let result = with_job(
            sqlx::query(
                "UPDATE jobs SET body = ?, expires_at = ?, active = ?, stored_bytes = ?,
                    held_since = NULL
                 WHERE id = ? AND held_since IS NOT NULL",
            ),
            job,
        )?
        .bind(job.id.to_string())
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(result.rows_affected() == 1)
    }

    async fn abandoned(&self, before: OffsetDateTime, limit: u32) -> Result<Vec<Job>, Error> {
        let bodies: Vec<String> = sqlx::query_scalar(
            "SELECT body FROM jobs WHERE held_since IS NOT NULL AND held_since < ?
             ORDER BY held_since LIMIT ?",
        )
        .bind(unix_ms(before))
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        bodies.iter().map(|b| decode(b)).collect()
    }

    async fn delete_abandoned(&self, id: JobId, before: OffsetDateTime) -> Result<bool, Error> {
        let result = sqlx::query(
            "DELETE FROM jobs WHERE id = ? AND held_since IS NOT NULL AND held_since < ?",
        )
        .bind(id.to_string())
        .bind(unix_ms(before))
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(result.rows_affected() == 1)
    }

    async fn save(&self, job: &Job) -> Result<bool, Error> {
        let result = with_job(
            sqlx::query(
                "UPDATE jobs SET body = ?, expires_at = ?, active = ?, stored_bytes = ?
                 WHERE id = ?",
            ),
            job,
        )?
        .bind(job.id.to_string())
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(result.rows_affected() == 1)
    }

    async fn save_held(&self, job: &Job, holder: &str) -> Result<Saved, Error> {
        let id = job.id.to_string();
        let result = with_job(
            sqlx::query(
                "UPDATE jobs SET body = ?, expires_at = ?, active = ?, stored_bytes = ?
                 WHERE id = ? AND lease_holder = ?",
            ),
            job,
        )?
        .bind(&id)
        .bind(holder)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        if result.rows_affected() == 1 {
            return Ok(Saved::Saved);
        }
        let exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM jobs WHERE id = ?")
            .bind(&id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(if exists.is_some() {
            Saved::NotHeld
        } else {
            Saved::Gone
        })
    }

    async fn due(&self, now: OffsetDateTime, limit: u32) -> Result<Vec<Job>, Error> {
        let bodies: Vec<String> = sqlx::query_scalar(
            "SELECT body FROM jobs WHERE expires_at IS NOT NULL AND expires_at < ?
             ORDER BY expires_at LIMIT ?",
        )
        .bind(unix_ms(now))
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        bodies.iter().map(|b| decode(b)).collect()
    }

    async fn replace_due(&self, job: &Job, was: OffsetDateTime) -> Result<bool, Error> {
        // The lease goes too (as with MongoDB's replacement): a converter still holding one
        // cannot write the job back as it was.
        let result = with_job(
            sqlx::query(
                "UPDATE jobs SET body = ?, expires_at = ?, active = ?, stored_bytes = ?,
                    lease_holder = NULL, lease_until = NULL
                 WHERE id = ? AND expires_at = ?",
            ),
            job,
        )?
        .bind(job.id.to_string())
        .bind(unix_ms(was))
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(result.rows_affected() == 1)
    }

    async fn delete_due(&self, id: JobId, was: OffsetDateTime) -> Result<bool, Error> {
        let result = sqlx::query("DELETE FROM jobs WHERE id = ? AND expires_at = ?")
            .bind(id.to_string())
            .bind(unix_ms(was))
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(result.rows_affected() == 1)
    }

    async fn usage(&self, owner: &str, since: OffsetDateTime) -> Result<StoredUsage, Error> {
        let ((stored_bytes, active_jobs), (made_since, earliest)): (
            (i64, i64),
            (i64, Option<i64>),
        ) = sqlx::query_as(
            "SELECT
                    (SELECT COALESCE(SUM(stored_bytes), 0) FROM jobs WHERE owner = ?1),
                    (SELECT COALESCE(SUM(active), 0) FROM jobs WHERE owner = ?1),
                    (SELECT COUNT(*) FROM jobs_made WHERE owner = ?1 AND made_at >= ?2),
                    (SELECT MIN(made_at) FROM jobs_made WHERE owner = ?1 AND made_at >= ?2)",
        )
        .bind(owner)
        .bind(unix_ms(since))
        .fetch_one(&self.pool)
        .await
        .map(|(a, b, c, d): (i64, i64, i64, Option<i64>)| ((a, b), (c, d)))
        .map_err(db_error)?;
        Ok(StoredUsage {
            stored_bytes: u64::try_from(stored_bytes).unwrap_or(0),
            active_jobs: u64::try_from(active_jobs).unwrap_or(0),
            made_since: u64::try_from(made_since).unwrap_or(0),
            earliest_made: earliest.and_then(from_unix_ms),
        })
    }

    async fn stored_totals(&self) -> Result<(u64, u64), Error> {
        let (videos, all): (i64, i64) = sqlx::query_as(
            "SELECT COALESCE(SUM(json_extract(body, '$.video_bytes')), 0),
                    COALESCE(SUM(stored_bytes), 0)
             FROM jobs",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(db_error)?;
        Ok((
            u64::try_from(videos).unwrap_or(0),
            u64::try_from(all).unwrap_or(0),
        ))
    }

    async fn note_made(&self, owner: &str, job: JobId, at: OffsetDateTime) -> Result<(), Error> {
        sqlx::query("INSERT OR REPLACE INTO jobs_made (owner, job_id, made_at) VALUES (?, ?, ?)")
            .bind(owner)
            .bind(job.to_string())
            .bind(unix_ms(at))
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn forget_made(&self, owner: &str, job: JobId) -> Result<(), Error> {
        sqlx::query("DELETE FROM jobs_made WHERE owner = ? AND job_id = ?")
            .bind(owner)
            .bind(job.to_string())
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn prune_made(&self, before: OffsetDateTime) -> Result<u64, Error> {
        let result = sqlx::query("DELETE FROM jobs_made WHERE made_at < ?")
            .bind(unix_ms(before))
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(result.rows_affected())
    }

    async fn claim_key(
        &self,
        owner: &str,
        key: &str,
        job: JobId,
        fingerprint: &str,
        now: OffsetDateTime,
        fresh_since: OffsetDateTime,
    ) -> Result<Claim, Error> {
        // One statement: SQLite runs it alone, so the check and the write cannot interleave
        // with another claim's.
        sqlx::query(
            "INSERT INTO job_keys (owner, key, job_id, fingerprint, claimed_at)
             VALUES (?, ?, ?, ?, ?)
             ON CONFLICT (owner, key) DO UPDATE SET
                 job_id = excluded.job_id,
                 fingerprint = excluded.fingerprint,
                 claimed_at = excluded.claimed_at
             WHERE job_keys.claimed_at < ?
                OR NOT EXISTS (SELECT 1 FROM jobs WHERE jobs.id = job_keys.job_id)",
        )
        .bind(owner)
        .bind(key)
        .bind(job.to_string())
        .bind(fingerprint)
        .bind(unix_ms(now))
        .bind(unix_ms(fresh_since))
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        let (holder, held_for): (String, String) =
            sqlx::query_as("SELECT job_id, fingerprint FROM job_keys WHERE owner = ? AND key = ?")
                .bind(owner)
                .bind(key)
                .fetch_one(&self.pool)
                .await
                .map_err(db_error)?;
        let holder: JobId = holder.parse().map_err(Error::internal)?;
        Ok(if holder == job {
            Claim::Claimed
        } else {
            Claim::Taken {
                job: holder,
                fingerprint: held_for,
            }
        })
    }

    async fn key(
        &self,
        owner: &str,
        key: &str,
        fresh_since: OffsetDateTime,
    ) -> Result<Option<(JobId, String)>, Error> {
        let found: Option<(String, String)> = sqlx::query_as(
            "SELECT job_id, fingerprint FROM job_keys
             WHERE owner = ? AND key = ? AND claimed_at >= ?",
        )
        .bind(owner)
        .bind(key)
        .bind(unix_ms(fresh_since))
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        found
            .map(|(job, fingerprint)| Ok((job.parse().map_err(Error::internal)?, fingerprint)))
            .transpose()
    }

    async fn release_key(&self, owner: &str, key: &str, job: JobId) -> Result<(), Error> {
        sqlx::query("DELETE FROM job_keys WHERE owner = ? AND key = ? AND job_id = ?")
            .bind(owner)
            .bind(key)
            .bind(job.to_string())
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn backfill_expiry(
        &self,
        done_until: OffsetDateTime,
        failed_until: OffsetDateTime,
    ) -> Result<u64, Error> {
        let mut given = 0;
        for (status, until) in [("done", done_until), ("failed", failed_until)] {
            let (until, text) = rfc3339_seconds(until)?;
            let result = sqlx::query(
                "UPDATE jobs SET expires_at = ?, body = json_set(body, '$.expires_at', ?)
                 WHERE expires_at IS NULL AND json_extract(body, '$.status') = ?",
            )
            .bind(unix_ms(until))
            .bind(text)
            .bind(status)
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
            given += result.rows_affected();
        }
        Ok(given)
    }

    async fn prune_keys(&self, before: OffsetDateTime) -> Result<u64, Error> {
        let result = sqlx::query("DELETE FROM job_keys WHERE claimed_at < ?")
            .bind(unix_ms(before))
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(result.rows_affected())
    }

    async fn existing(&self, ids: &[JobId]) -> Result<HashSet<JobId>, Error> {
        let mut found = HashSet::new();
        for batch in ids.chunks(EXISTING_BATCH) {
            let marks = vec!["?"; batch.len()].join(", ");
            // Only placeholders are spliced in: the ids are bound.
            let sql = format!("SELECT id FROM jobs WHERE id IN ({marks})");
            let mut query = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql));
            for id in batch {
                query = query.bind(id.to_string());
            }
            let stored = query.fetch_all(&self.pool).await.map_err(db_error)?;
            found.extend(stored.iter().filter_map(|id| id.parse::<JobId>().ok()));
        }
        Ok(found)
    }

    async fn set_progress(&self, id: JobId, progress: u8) -> Result<(), Error> {
        sqlx::query("UPDATE jobs SET body = json_set(body, '$.progress', ?) WHERE id = ?")
            .bind(progress)
            .bind(id.to_string())
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn acquire_lease(
        &self,
        id: JobId,
        holder: &str,
        now: OffsetDateTime,
        until: OffsetDateTime,
    ) -> Result<bool, Error> {
        let result = sqlx::query(
            "UPDATE jobs SET lease_holder = ?, lease_until = ?
             WHERE id = ? AND (lease_holder IS NULL OR lease_holder = ? OR lease_until < ?)",
        )
        .bind(holder)
        .bind(unix_ms(until))
        .bind(id.to_string())
        .bind(holder)
        .bind(unix_ms(now))
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(result.rows_affected() == 1)
    }

    async fn renew_lease(
        &self,
        id: JobId,
        holder: &str,
        until: OffsetDateTime,
    ) -> Result<bool, Error> {
        let result =
            sqlx::query("UPDATE jobs SET lease_until = ? WHERE id = ? AND lease_holder = ?")
                .bind(unix_ms(until))
                .bind(id.to_string())
                .bind(holder)
                .execute(&self.pool)
                .await
                .map_err(db_error)?;
        Ok(result.rows_affected() == 1)
    }

    async fn release_lease(&self, id: JobId, holder: &str) -> Result<(), Error> {
        sqlx::query(
            "UPDATE jobs SET lease_holder = NULL, lease_until = NULL
             WHERE id = ? AND lease_holder = ?",
        )
        .bind(id.to_string())
        .bind(holder)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn delete(&self, id: JobId) -> Result<bool, Error> {
        let result = sqlx::query("DELETE FROM jobs WHERE id = ?")
            .bind(id.to_string())
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(result.rows_affected() == 1)
    }

    async fn check(&self) -> Result<(), Error> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(drop)
            .map_err(db_error)
    }
}
