//! Jobs in a MongoDB `jobs` collection.

use std::collections::HashSet;

use async_trait::async_trait;
use futures::TryStreamExt;
use mongodb::bson::{Bson, Document, doc};
use mongodb::options::IndexOptions;
use mongodb::{Collection, Database, IndexModel};
use time::OffsetDateTime;

use super::{Claim, EXISTING_BATCH, JobStore, Saved, StoredUsage};
use crate::error::Error;
use crate::job::{Job, JobId};
use crate::jobs::{from_unix_ms, rfc3339_seconds, unix_ms};

/// The `jobs` collection: `_id` is the job id, `owner` is indexed with `_id` for listing. A
/// converter's lease lives in the same document (`lease_holder`, `lease_until` in Unix
/// milliseconds), outside the job's own fields, and so does a held upload's `held_since` (Unix
/// milliseconds; absent once started), in a sparse index of its own.
#[derive(Debug, Clone)]
pub struct MongoJobs {
    db: Database,
    jobs: Collection<Document>,
    /// Idempotency keys, `_id: {owner, key}` (unique by being the id), `job_id`,
    /// `fingerprint` and `claimed_at` (Unix milliseconds, indexed for pruning).
    keys: Collection<Document>,
    /// Jobs made, `_id: {owner, job}`, `owner` and `made_at` (Unix milliseconds), for the
    /// jobs-per-hour quota.
    made: Collection<Document>,
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
        jobs.create_index(
            IndexModel::builder()
                .keys(doc! {"held_since": 1})
                .options(
                    IndexOptions::builder()
                        .name("held".to_owned())
                        .sparse(true)
                        .build(),
                )
                .build(),
        )
        .await
        .map_err(db_error)?;
        jobs.create_index(
            IndexModel::builder()
                .keys(doc! {"expires_ms": 1})
                .options(IndexOptions::builder().name("expiry".to_owned()).build())
                .build(),
        )
        .await
        .map_err(db_error)?;
        let keys = db.collection::<Document>("job_keys");
        keys.create_index(
            IndexModel::builder()
                .keys(doc! {"claimed_at": 1})
                .options(IndexOptions::builder().name("claimed".to_owned()).build())
                .build(),
        )
        .await
        .map_err(db_error)?;
        // Jobs written before quotas: what their owners' quotas sum, once.
        let mut old = jobs
            .find(doc! {"stored_bytes": {"$exists": false}})
            .await
            .map_err(db_error)?;
        while let Some(document) = old.try_next().await.map_err(db_error)? {
            let Some(id) = document.get_str("_id").ok().map(str::to_owned) else {
                continue;
            };
            let Ok(job) = decode(document) else {
                tracing::warn!(job_id = %id, "a stored job cannot be read; its quota counts 0");
                continue;
            };
            jobs.update_one(
                doc! {"_id": &id},
                doc! {"$set": {
                    "stored_bytes": i64::try_from(job.stored_bytes()).unwrap_or(i64::MAX),
                    "active": job.is_active(),
                }},
            )
            .await
            .map_err(db_error)?;
        }
        let made = db.collection::<Document>("jobs_made");
        for (keys, name) in [
            (doc! {"owner": 1, "made_at": 1}, "owner_made"),
            (doc! {"made_at": 1}, "made"),
        ] {
            made.create_index(
                IndexModel::builder()
                    .keys(keys)
                    .options(IndexOptions::builder().name(name.to_owned()).build())
                    .build(),
            )
            .await
            .map_err(db_error)?;
        }
        Ok(Self {
            db,
            jobs,
            keys,
            made,
        })
    }

    /// Up to `limit` jobs whose time `field` (Unix milliseconds, indexed) is before `before`,
    /// the earliest first: the sweepers' one query.
    async fn earliest(
        &self,
        field: &str,
        before: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<Job>, Error> {
        self.found(
            doc! {field: {"$lt": unix_ms(before)}},
            doc! {field: 1},
            limit,
        )
        .await
    }

    /// Up to `limit` jobs matching `filter`, in `sort`'s order.
    async fn found(&self, filter: Document, sort: Document, limit: u32) -> Result<Vec<Job>, Error> {
        let docs: Vec<Document> = self
            .jobs
            .find(filter)
            .sort(sort)
            .limit(i64::from(limit))
            .await
            .map_err(db_error)?
            .try_collect()
            .await
            .map_err(db_error)?;
        docs.into_iter().map(decode).collect()
    }

    async fn job_exists(&self, id: &str) -> Result<bool, Error> {
        Ok(self
            .jobs
            .find_one(doc! {"_id": id})
            .projection(doc! {"_id": 1})
            .await
            .map_err(db_error)?
            .is_some())
    }
}

/// A `$sum` of an aggregation: an integer of either width, or a double past them.
fn summed_u64(doc: &Document, field: &str) -> u64 {
    match doc.get(field) {
        Some(Bson::Int64(n)) => u64::try_from(*n).unwrap_or(0),
        Some(Bson::Int32(n)) => u64::try_from(*n).unwrap_or(0),
        Some(Bson::Double(n)) if *n > 0.0 => *n as u64,
        _ => 0,
    }
}

fn key_id(owner: &str, key: &str) -> Document {
    doc! {"owner": owner, "key": key}
}

/// A write refused for a duplicate `_id` (another request's claim got there first).
fn is_duplicate(e: &mongodb::error::Error) -> bool {
    use mongodb::error::{ErrorKind, WriteFailure};
    matches!(&*e.kind, ErrorKind::Write(WriteFailure::WriteError(w)) if w.code == 11000)
}

fn encode(job: &Job) -> Result<Document, Error> {
    let mut doc = mongodb::bson::to_document(job).map_err(Error::internal)?;
    doc.insert("_id", job.id.to_string());
    doc.remove("id");
    // The expiry as a number the sweeper's index orders; null (never matched by `$lt`) until
    // the job finishes, written with every write of the job.
    doc.insert(
        "expires_ms",
        job.expires_at
            .map_or(Bson::Null, |at| Bson::Int64(unix_ms(at))),
    );
    // Always written (the job leaves out a 0): a `$set` must clear a removed video's bytes.
    doc.insert(
        "video_bytes",
        i64::try_from(job.video_bytes).unwrap_or(i64::MAX),
    );
    // What the owner's quota sums.
    doc.insert(
        "stored_bytes",
        i64::try_from(job.stored_bytes()).unwrap_or(i64::MAX),
    );
    doc.insert("active", job.is_active());
    Ok(doc)
}

fn decode(mut doc: Document) -> Result<Job, Error> {
    doc.remove("expires_ms");
    doc.remove("stored_bytes");
    doc.remove("active");
    if let Some(id) = doc.remove("_id") {
        doc.insert("id", id);
    }
    mongodb::bson::from_document(doc).map_err(Error::internal)
}

#[async_trait]
impl JobStore for MongoJobs {
    async fn insert(&self, job: &Job) -> Result<(), Error> {
        let mut doc = encode(job)?;
        if job.held {
            doc.insert("held_since", unix_ms(OffsetDateTime::now_utc()));
        }
        self.jobs.insert_one(doc).await.map(drop).map_err(db_error)
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
        let mut filter = doc! {"owner": owner, "held_since": null};
        if let Some(before) = before {
            filter.insert("_id", doc! {"$lt": before.to_string()});
        }
        self.found(filter, doc! {"_id": -1}, limit).await
    }

    async fn start_held(&self, job: &Job) -> Result<bool, Error> {
        // A replacement, not a `$set`: fields the started job leaves out (its hold, options
        // now empty) must go. A held job has no lease beside it to keep.
        let result = self
            .jobs
            .replace_one(
                doc! {"_id": job.id.to_string(), "held_since": {"$exists": true}},
                encode(job)?,
            )
            .await
            .map_err(db_error)?;
        Ok(result.matched_count == 1)
    }

    async fn abandoned(&self, before: OffsetDateTime, limit: u32) -> Result<Vec<Job>, Error> {
        self.earliest("held_since", before, limit).await
    }

    async fn delete_abandoned(&self, id: JobId, before: OffsetDateTime) -> Result<bool, Error> {
        let result = self
            .jobs
            .delete_one(doc! {"_id": id.to_string(), "held_since": {"$lt": unix_ms(before)}})
            .await
            .map_err(db_error)?;
        Ok(result.deleted_count == 1)
    }

    async fn save(&self, job: &Job) -> Result<bool, Error> {
        // `$set` of every field of the job, not a replacement: the lease beside it stays.
        let mut fields = encode(job)?;
        fields.remove("_id");
        let result = self
            .jobs
            .update_one(doc! {"_id": job.id.to_string()}, doc! {"$set": fields})
            .await
            .map_err(db_error)?;
        Ok(result.matched_count == 1)
    }

    async fn save_held(&self, job: &Job, holder: &str) -> Result<Saved, Error> {
        let mut fields = encode(job)?;
        fields.remove("_id");
        let id = job.id.to_string();
        let result = self
            .jobs
            .update_one(
                doc! {"_id": &id, "lease_holder": holder},
                doc! {"$set": fields},
            )
            .await
            .map_err(db_error)?;
        if result.matched_count == 1 {
            return Ok(Saved::Saved);
        }
        let exists = self
            .jobs
            .find_one(doc! {"_id": &id})
            .projection(doc! {"_id": 1})
            .await
            .map_err(db_error)?
            .is_some();
        Ok(if exists { Saved::NotHeld } else { Saved::Gone })
    }

    async fn due(&self, now: OffsetDateTime, limit: u32) -> Result<Vec<Job>, Error> {
        self.earliest("expires_ms", now, limit).await
    }

    async fn replace_due(&self, job: &Job, was: OffsetDateTime) -> Result<bool, Error> {
        // A replacement, not a `$set`: fields the changed job leaves out (its tracks, gone)
        // must go. A finished job has no lease or hold beside it worth keeping.
        let result = self
            .jobs
            .replace_one(
                doc! {"_id": job.id.to_string(), "expires_ms": unix_ms(was)},
                encode(job)?,
            )
            .await
            .map_err(db_error)?;
        Ok(result.matched_count == 1)
    }

    async fn delete_due(&self, id: JobId, was: OffsetDateTime) -> Result<bool, Error> {
        let result = self
            .jobs
            .delete_one(doc! {"_id": id.to_string(), "expires_ms": unix_ms(was)})
            .await
            .map_err(db_error)?;
        Ok(result.deleted_count == 1)
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
        let id = key_id(owner, key);
        let job = job.to_string();
        let claim = doc! {
            "_id": id.clone(),
            "job_id": &job,
            "fingerprint": fingerprint,
            "claimed_at": unix_ms(now),
        };
        // The insert is the compare-and-set for a new key; a stale claim is replaced only as
        // it was read. Each lost race means someone else's claim was written: read it again.
        for _ in 0..3 {
            match self.keys.insert_one(claim.clone()).await {
                Ok(_) => return Ok(Claim::Claimed),
                Err(e) if is_duplicate(&e) => {}
                Err(e) => return Err(db_error(e)),
            }
            let Some(held) = self
                .keys
                .find_one(doc! {"_id": id.clone()})
                .await
                .map_err(db_error)?
            else {
                continue;
            };
            let holder = held.get_str("job_id").map_err(Error::internal)?.to_owned();
            let claimed_at = held.get_i64("claimed_at").map_err(Error::internal)?;
            if holder == job {
                return Ok(Claim::Claimed);
            }
            let stale = claimed_at < unix_ms(fresh_since) || !self.job_exists(&holder).await?;
            if !stale {
                return Ok(Claim::Taken {
                    job: holder.parse().map_err(Error::internal)?,
                    fingerprint: held
                        .get_str("fingerprint")
                        .map_err(Error::internal)?
                        .to_owned(),
                });
            }
            let replaced = self
                .keys
                .replace_one(
                    doc! {"_id": id.clone(), "job_id": &holder, "claimed_at": claimed_at},
                    claim.clone(),
                )
                .await
                .map_err(db_error)?;
            if replaced.matched_count == 1 {
                return Ok(Claim::Claimed);
            }
        }
        Err(Error::unavailable(
            "mongodb",
            "an idempotency key kept changing hands",
        ))
    }

    async fn key(
        &self,
        owner: &str,
        key: &str,
        fresh_since: OffsetDateTime,
    ) -> Result<Option<(JobId, String)>, Error> {
        let found = self
            .keys
            .find_one(doc! {
                "_id": key_id(owner, key),
                "claimed_at": {"$gte": unix_ms(fresh_since)},
            })
            .await
            .map_err(db_error)?;
        found
            .map(|held| {
                let job = held.get_str("job_id").map_err(Error::internal)?;
                let fingerprint = held.get_str("fingerprint").map_err(Error::internal)?;
                Ok((
                    job.parse().map_err(Error::internal)?,
                    fingerprint.to_owned(),
                ))
            })
            .transpose()
    }

    async fn release_key(&self, owner: &str, key: &str, job: JobId) -> Result<(), Error> {
        self.keys
            .delete_one(doc! {"_id": key_id(owner, key), "job_id": job.to_string()})
            .await
            .map(drop)
            .map_err(db_error)
    }

    async fn backfill_expiry(
        &self,
        done_until: OffsetDateTime,
        failed_until: OffsetDateTime,
    ) -> Result<u64, Error> {
        let mut given = 0;
        for (status, until) in [("done", done_until), ("failed", failed_until)] {
            let (until, text) = rfc3339_seconds(until)?;
            // `null` also matches a document without the field.
            let result = self
                .jobs
                .update_many(
                    doc! {"status": status, "expires_ms": Bson::Null},
                    doc! {"$set": {"expires_at": text, "expires_ms": unix_ms(until)}},
                )
                .await
                .map_err(db_error)?;
            given += result.modified_count;
        }
        Ok(given)
    }

    async fn prune_keys(&self, before: OffsetDateTime) -> Result<u64, Error> {
        let result = self
            .keys
            .delete_many(doc! {"claimed_at": {"$lt": unix_ms(before)}})
            .await
            .map_err(db_error)?;
        Ok(result.deleted_count)
    }

    async fn usage(&self, owner: &str, since: OffsetDateTime) -> Result<StoredUsage, Error> {
        // Two plain finds at once, summed here: the test server (and a small MongoDB) answers
        // them faster than an aggregation and counts one after another.
        let jobs = async {
            let mut found = self
                .jobs
                .find(doc! {"owner": owner})
                .projection(doc! {"_id": 0, "stored_bytes": 1, "active": 1})
                .await?;
            let (mut bytes, mut active) = (0u64, 0u64);
            while let Some(job) = found.try_next().await? {
                let stored = u64::try_from(job.get_i64("stored_bytes").unwrap_or(0)).unwrap_or(0);
                bytes = bytes.saturating_add(stored);
                active += u64::from(job.get_bool("active").unwrap_or(false));
            }
            Ok::<_, mongodb::error::Error>((bytes, active))
        };
        let made = async {
            let mut found = self
                .made
                .find(doc! {"owner": owner, "made_at": {"$gte": unix_ms(since)}})
                .projection(doc! {"_id": 0, "made_at": 1})
                .await?;
            let (mut count, mut earliest) = (0u64, None::<i64>);
            while let Some(note) = found.try_next().await? {
                count += 1;
                if let Ok(at) = note.get_i64("made_at") {
                    earliest = Some(earliest.map_or(at, |e| e.min(at)));
                }
            }
            Ok::<_, mongodb::error::Error>((count, earliest))
        };
        let ((stored_bytes, active_jobs), (made_since, earliest)) =
            futures::try_join!(jobs, made).map_err(db_error)?;
        Ok(StoredUsage {
            stored_bytes,
            active_jobs,
            made_since,
            earliest_made: earliest.and_then(from_unix_ms),
        })
    }

    async fn stored_totals(&self) -> Result<(u64, u64), Error> {
        let summed: Vec<Document> = self
            .jobs
            .aggregate([doc! {"$group": {
                "_id": Bson::Null,
                "videos": {"$sum": "$video_bytes"},
                "all": {"$sum": "$stored_bytes"},
            }}])
            .await
            .map_err(db_error)?
            .try_collect()
            .await
            .map_err(db_error)?;
        Ok(summed.first().map_or((0, 0), |doc| {
            (summed_u64(doc, "videos"), summed_u64(doc, "all"))
        }))
    }

    async fn note_made(&self, owner: &str, job: JobId, at: OffsetDateTime) -> Result<(), Error> {
        let id = doc! {"owner": owner, "job": job.to_string()};
        self.made
            .replace_one(
                doc! {"_id": id.clone()},
                doc! {"_id": id, "owner": owner, "made_at": unix_ms(at)},
            )
            .upsert(true)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn forget_made(&self, owner: &str, job: JobId) -> Result<(), Error> {
        self.made
            .delete_one(doc! {"_id": {"owner": owner, "job": job.to_string()}})
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn prune_made(&self, before: OffsetDateTime) -> Result<u64, Error> {
        let result = self
            .made
            .delete_many(doc! {"made_at": {"$lt": unix_ms(before)}})
            .await
            .map_err(db_error)?;
        Ok(result.deleted_count)
    }

    async fn existing(&self, ids: &[JobId]) -> Result<HashSet<JobId>, Error> {
        let mut found = HashSet::new();
        for batch in ids.chunks(EXISTING_BATCH) {
            let batch: Vec<String> = batch.iter().map(JobId::to_string).collect();
            let mut stored = self
                .jobs
                .find(doc! {"_id": {"$in": batch}})
                .projection(doc! {"_id": 1})
                .await
                .map_err(db_error)?;
            while let Some(doc) = stored.try_next().await.map_err(db_error)? {
                if let Some(id) = doc.get_str("_id").ok().and_then(|id| id.parse().ok()) {
                    found.insert(id);
                }
            }
        }
        Ok(found)
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

    async fn acquire_lease(
        &self,
        id: JobId,
        holder: &str,
        now: OffsetDateTime,
        until: OffsetDateTime,
    ) -> Result<bool, Error> {
        // One document update is atomic: the filter is the compare, `$set` the swap.
        let filter = doc! {
            "_id": id.to_string(),
            "$or": [
                {"lease_holder": null},
                {"lease_holder": holder},
                {"lease_until": {"$lt": unix_ms(now)}},
            ],
        };
        let result = self
            .jobs
            .update_one(
                filter,
                doc! {"$set": {"lease_holder": holder, "lease_until": unix_ms(until)}},
            )
            .await
            .map_err(db_error)?;
        Ok(result.matched_count == 1)
    }

    async fn renew_lease(
        &self,
        id: JobId,
        holder: &str,
        until: OffsetDateTime,
    ) -> Result<bool, Error> {
        let result = self
            .jobs
            .update_one(
                doc! {"_id": id.to_string(), "lease_holder": holder},
                doc! {"$set": {"lease_until": unix_ms(until)}},
            )
            .await
            .map_err(db_error)?;
        Ok(result.matched_count == 1)
    }

    async fn release_lease(&self, id: JobId, holder: &str) -> Result<(), Error> {
        self.jobs
            .update_one(
                doc! {"_id": id.to_string(), "lease_holder": holder},
                doc! {"$set": {"lease_holder": null, "lease_until": null}},
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
