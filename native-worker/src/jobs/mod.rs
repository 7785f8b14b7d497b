//! Job storage: MongoDB in production, SQLite in embedded mode.

pub mod mongo;
pub mod sqlite;

use std::collections::HashSet;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::error::Error;
use crate::job::{Job, JobId};

/// How many ids one [`JobStore::existing`] query asks about at most (SQLite binds each as a
/// parameter; MongoDB gets them in one `$in`).
pub const EXISTING_BATCH: usize = 500;

/// A time as Unix milliseconds, as leases are stored.
pub(crate) fn unix_ms(at: OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// `at` as a job's JSON writes it: RFC 3339, in whole seconds.
pub(crate) fn rfc3339_seconds(at: OffsetDateTime) -> Result<(OffsetDateTime, String), Error> {
    let at = at.replace_nanosecond(0).map_err(Error::internal)?;
    let text = at
        .format(&time::format_description::well_known::Rfc3339)
        .map_err(Error::internal)?;
    Ok((at, text))
}

/// Unix milliseconds as a time (`None` outside the representable range).
pub(crate) fn from_unix_ms(ms: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
}

/// What a [`JobStore::save_held`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Saved {
    /// The job was replaced.
    Saved,
    /// There is no such job (deleted meanwhile).
    Gone,
    /// Someone else holds the job's lease (or nobody does): nothing was written.
    NotHeld,
}

/// Held uploads ([`Job::held`]) one [`JobStore::abandoned`] query returns at most: what one
/// round of the sweeper removes.
pub const HELD_BATCH: u32 = 100;

/// Due jobs one [`JobStore::due`] query returns at most: one round of the retention sweeper.
pub const DUE_BATCH: u32 = 200;

/// What [`JobStore::claim_key`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The key now names the job asked for.
    Claimed,
    /// A live claim names another job, made for the request with this fingerprint.
    Taken {
        /// The job the key names.
        job: JobId,
        /// The fingerprint of the request that made it.
        fingerprint: String,
    },
}

/// What an owner's jobs use of their quota ([`JobStore::usage`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoredUsage {
    /// The sum of their jobs' [`Job::stored_bytes`].
    pub stored_bytes: u64,
    /// How many of their jobs are [`Job::is_active`].
    pub active_jobs: u64,
    /// How many jobs they made since the time asked about (deleted ones too).
    pub made_since: u64,
    /// When the earliest of those was made.
    pub earliest_made: Option<OffsetDateTime>,
}

/// Where jobs are kept.
///
/// Only the converter changes a job after it is created (the API creates, starts held
/// uploads and deletes), and only the converter holding the job's lease (see [`acquire_lease`](JobStore::acquire_lease)), so
/// a whole-document [`save`](JobStore::save) cannot lose a concurrent change.
///
/// The lease is kept beside the job, not in it: `save` leaves it alone and the API never shows
/// it. Its times come from the converters' clocks, so they should agree to well within the
/// lease's length.
///
/// A held upload's hold is kept beside it the same way: when it began (stamped by
/// [`insert`](JobStore::insert) from the store's caller's clock, so the sweeper measures from
/// when the video was stored, not from when its job was made), cleared by
/// [`start_held`](JobStore::start_held), which is the one way out of holding.
///
/// A finished job's [`Job::expires_at`] is kept beside it too, in Unix milliseconds, indexed
/// for the retention sweeper; every write of the job writes it. So are its status and
/// [`Job::stored_bytes`], which an owner's quota sums ([`usage`](JobStore::usage)).
///
/// Every job made is also noted in a ledger of its own ([`note_made`](JobStore::note_made)),
/// which outlives the job: the jobs-per-hour quota counts in it, so deleting a job does not
/// give it back.
#[async_trait]
pub trait JobStore: Send + Sync + 'static {
    /// Stores a new job; a [`Job::held`] one is marked held since now.
    async fn insert(&self, job: &Job) -> Result<(), Error>;

    /// The job with this id, whoever owns it.
    async fn get(&self, id: JobId) -> Result<Option<Job>, Error>;

    /// Up to `limit` of `owner`'s jobs older than `before`, newest first; held uploads are
    /// left out (by the query, so that a page is full whenever more jobs follow).
    async fn list(&self, owner: &str, before: Option<JobId>, limit: u32)
    -> Result<Vec<Job>, Error>;

    /// Replaces a held job with `job` (no longer held) if it is still held: one atomic
    /// compare-and-set, so of two starts (or a start and the sweeper) only one wins. `false`
    /// if it is not held or not there.
    async fn start_held(&self, job: &Job) -> Result<bool, Error>;

    /// Up to `limit` jobs held since before `before`, the longest held first.
    async fn abandoned(&self, before: OffsetDateTime, limit: u32) -> Result<Vec<Job>, Error>;

    /// Removes the job if it is still held since before `before`; `false` if it was started
    /// or removed meanwhile (by another replica's sweeper, say).
    async fn delete_abandoned(&self, id: JobId, before: OffsetDateTime) -> Result<bool, Error>;

    /// Replaces a stored job; `false` if it no longer exists (deleted meanwhile).
    async fn save(&self, job: &Job) -> Result<bool, Error>;

    /// Replaces a stored job only while `holder` holds its lease (a compare-and-set on the
    /// holder): a converter that lost its lease cannot overwrite the new holder's result.
    async fn save_held(&self, job: &Job, holder: &str) -> Result<Saved, Error>;

    /// Up to `limit` finished jobs whose [`Job::expires_at`] is before `now`, the earliest
    /// due first.
    async fn due(&self, now: OffsetDateTime, limit: u32) -> Result<Vec<Job>, Error>;

    /// Replaces a due job with `job` (as the sweeper changed it) if its stored expiry is still
    /// `was`: one compare-and-set, so of two sweepers only one wins. `false` if it changed or
    /// is gone.
    async fn replace_due(&self, job: &Job, was: OffsetDateTime) -> Result<bool, Error>;

    /// Removes the job if its stored expiry is still `was`; `false` if another sweeper (or its
    /// owner) removed it first.
    async fn delete_due(&self, id: JobId, was: OffsetDateTime) -> Result<bool, Error>;

    /// Makes `owner`'s idempotency `key` name `job` (made for a request with `fingerprint`),
    /// unless a claim made at `fresh_since` or later names another job that still exists: one
    /// compare-and-set, so of two requests with one key only one claims it. A stale claim, or
    /// one whose job is gone, is replaced.
    async fn claim_key(
        &self,
        owner: &str,
        key: &str,
        job: JobId,
        fingerprint: &str,
        now: OffsetDateTime,
        fresh_since: OffsetDateTime,
    ) -> Result<Claim, Error>;

    /// The job and fingerprint `owner`'s `key` names, claimed at `fresh_since` or later.
    async fn key(
        &self,
        owner: &str,
        key: &str,
        fresh_since: OffsetDateTime,
    ) -> Result<Option<(JobId, String)>, Error>;

    /// Lets go of `owner`'s `key` if it names `job` (its creation failed).
    async fn release_key(&self, owner: &str, key: &str, job: JobId) -> Result<(), Error>;

    /// Gives the finished jobs stored before retention existed (no expiry) their expiry:
    /// `done_until` for done ones, `failed_until` for failed ones; how many.
    async fn backfill_expiry(
        &self,
        done_until: OffsetDateTime,
        failed_until: OffsetDateTime,
    ) -> Result<u64, Error>;

    /// Removes the claims made before `before`; how many.
    async fn prune_keys(&self, before: OffsetDateTime) -> Result<u64, Error>;

    /// What `owner`'s jobs use: bytes, active jobs, and jobs made since `since`.
    async fn usage(&self, owner: &str, since: OffsetDateTime) -> Result<StoredUsage, Error>;

    /// Bytes kept for every job: of videos, and in all (see [`Job::stored_bytes`]).
    async fn stored_totals(&self) -> Result<(u64, u64), Error>;

    /// Notes that `owner` made `job` at `at`.
    async fn note_made(&self, owner: &str, job: JobId, at: OffsetDateTime) -> Result<(), Error>;

    /// Forgets the note of `job` (its creation was refused after all).
    async fn forget_made(&self, owner: &str, job: JobId) -> Result<(), Error>;

    /// Removes the notes of jobs made before `before`; how many.
    async fn prune_made(&self, before: OffsetDateTime) -> Result<u64, Error>;

    /// Which of `ids` are stored jobs, asked [`EXISTING_BATCH`] at a time.
    async fn existing(&self, ids: &[JobId]) -> Result<HashSet<JobId>, Error>;

    /// Sets only the progress of a job (cheap, frequent).
    async fn set_progress(&self, id: JobId, progress: u8) -> Result<(), Error>;

    /// Makes `holder` the only converter of the job until `until`, if nobody else holds an
    /// unexpired lease on it (expired at `now`) or `holder` holds it already: one atomic
    /// compare-and-set. `false` if someone else holds it or there is no such job.
    async fn acquire_lease(
        &self,
        id: JobId,
        holder: &str,
        now: OffsetDateTime,
        until: OffsetDateTime,
    ) -> Result<bool, Error>;

    /// Extends `holder`'s lease to `until`; `false` if `holder` holds it no longer (another
    /// converter took it after it expired, or the job is gone).
    async fn renew_lease(
        &self,
        id: JobId,
        holder: &str,
        until: OffsetDateTime,
    ) -> Result<bool, Error>;

    /// Gives up `holder`'s lease; nothing happens if `holder` does not hold it.
    async fn release_lease(&self, id: JobId, holder: &str) -> Result<(), Error>;

    /// Removes a job; `false` if there was none.
    async fn delete(&self, id: JobId) -> Result<bool, Error>;

    /// Whether the store answers (for `/health/ready`).
    async fn check(&self) -> Result<(), Error>;
}
