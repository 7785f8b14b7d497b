//! Jobs in a MongoDB `jobs` collection.

use async_trait::async_trait;
use futures::TryStreamExt;
use mongodb::bson::{Document, doc};
use mongodb::options::IndexOptions;
use mongodb::{Collection, Database, IndexModel};

use super::JobStore;
use crate::error::Error;
use crate::job::{Job, JobId};

/// The `jobs` collection: `_id` is the job id, `owner` is indexed with `_id` for listing.
#[derive(Debug, Clone)]
pub struct MongoJobs {
    db: Database,
    jobs: Collection<Document>,
}

fn db_error(e: mongodb::error::Error) -> Error {
    Error::unavailable("mongodb", e)
}

impl MongoJobs {
    /// Opens the collection and creates its index.
    pub async fn open(db: Database) -> Result<Self, Error> {
        let jobs = db.collection::<Document>("jobs");
        jobs.create_index(
            IndexModel::builder()
                .keys(doc! {"owner": 1, "_id": -1})
                .options(
                    IndexOptions::builder()
                        .name("owner_newest".to_owned())
                        .build(),
                )
                .build(),
        )
        .await
        .map_err(db_error)?;
        Ok(Self { db, jobs })
    }
}

fn encode(job: &Job) -> Result<Document, Error> {
    let mut doc = mongodb::bson::to_document(job).map_err(Error::internal)?;
    doc.insert("_id", job.id.to_string());
    doc.remove("id");
    Ok(doc)
}

fn decode(mut doc: Document) -> Result<Job, Error> {
    if let Some(id) = doc.remove("_id") {
        doc.insert("id", id);
    }
    mongodb::bson::from_document(doc).map_err(Error::internal)
}

#[async_trait]
impl JobStore for MongoJobs {
    async fn insert(&self, job: &Job) -> Result<(), Error> {
        self.jobs
            .insert_one(encode(job)?)
            .await
            .map(drop)
            .map_err(db_error)
    }

    async fn get(&self, id: JobId) -> Result<Option<Job>, Error> {
        self.jobs
            .find_one(doc! {"_id": id.to_string()})
            .await
            .map_err(db_error)?
            .map(decode)
            .transpose()
    }

    async fn list(
        &self,
        owner: &str,
        before: Option<JobId>,
        limit: u32,
    ) -> Result<Vec<Job>, Error> {
        let mut filter = doc! {"owner": owner};
        if let Some(before) = before {
            filter.insert("_id", doc! {"$lt": before.to_string()});
        }
        let docs: Vec<Document> = self
            .jobs
            .find(filter)
            .sort(doc! {"_id": -1})
            .limit(i64::from(limit))
            .await
            .map_err(db_error)?
            .try_collect()
            .await
            .map_err(db_error)?;
        docs.into_iter().map(decode).collect()
    }

    async fn save(&self, job: &Job) -> Result<bool, Error> {
        let result = self
            .jobs
            .replace_one(doc! {"_id": job.id.to_string()}, encode(job)?)
            .await
            .map_err(db_error)?;
        Ok(result.matched_count == 1)
    }

    async fn set_progress(&self, id: JobId, progress: u8) -> Result<(), Error> {
        self.jobs
            .update_one(
                doc! {"_id": id.to_string()},
                doc! {"$set": {"progress": i32::from(progress)}},
            )
            .await
            .map(drop)
            .map_err(db_error)
    }

    async fn delete(&self, id: JobId) -> Result<bool, Error> {
        let result = self
            .jobs
            .delete_one(doc! {"_id": id.to_string()})
            .await
            .map_err(db_error)?;
        Ok(result.deleted_count == 1)
    }

    async fn check(&self) -> Result<(), Error> {
        self.db
            .run_command(doc! {"ping": 1})
            .await
            .map(drop)
            .map_err(db_error)
    }
}
