//! Job storage: MongoDB in production, SQLite in embedded mode.

pub mod mongo;
pub mod sqlite;

use async_trait::async_trait;

use crate::error::Error;
use crate::job::{Job, JobId};

/// Where jobs are kept.
///
/// Only the converter changes a job after it is created (the API creates and deletes), so a
/// whole-document [`save`](JobStore::save) cannot lose a concurrent change.
#[async_trait]
pub trait JobStore: Send + Sync + 'static {
    /// Stores a new job.
    async fn insert(&self, job: &Job) -> Result<(), Error>;

    /// The job with this id, whoever owns it.
    async fn get(&self, id: JobId) -> Result<Option<Job>, Error>;

    /// Up to `limit` of `owner`'s jobs older than `before`, newest first.
    async fn list(&self, owner: &str, before: Option<JobId>, limit: u32)
    -> Result<Vec<Job>, Error>;

    /// Replaces a stored job; `false` if it no longer exists (deleted meanwhile).
    async fn save(&self, job: &Job) -> Result<bool, Error>;

    /// Sets only the progress of a job (cheap, frequent).
    async fn set_progress(&self, id: JobId, progress: u8) -> Result<(), Error>;

    /// Removes a job; `false` if there was none.
    async fn delete(&self, id: JobId) -> Result<bool, Error>;

    /// Whether the store answers (for `/health/ready`).
    async fn check(&self) -> Result<(), Error>;
}
