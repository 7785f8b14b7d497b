//! Per-user quotas: what a user may keep and make (see [`mp3conv_contract::quota`]).
//!
//! A request's limits are the worker's defaults ([`QuotaConfig`]) with the user's overrides
//! from [`LIMITS_HEADER`] applied. A new job is checked twice:
//! - [`admit`], before anything is read or stored: a user at a limit is refused at once, and
//!   an upload is capped at what their limits leave;
//! - [`confirm`], once the job is stored and noted as made: requests racing past `admit`
//!   together are counted with each other here, and those over a limit are refused (the
//!   caller removes their jobs). Within a process, one user's second checks take turns
//!   ([`Gate`]): of requests racing past `admit`, exactly as many as the limit allows get in.
//!   Between replicas, each job is stored before it counts the others, so a race never admits
//!   too many; at worst it refuses one that would have fit.
//!
//! Refusals: 429 with `Retry-After` for the rates (concurrent jobs, jobs per hour), 413 for
//! the sizes (storage, one upload), each `quota_exceeded` with the numbers in its message.
//! The duration limit travels with the job ([`Job::limits`]): the converter checks it with
//! ffprobe, or against what a video page says before downloading, and fails the job.

use axum::http::HeaderMap;
use mp3conv_contract::quota::{LIMITS_HEADER, Limit, Limits, Quota, Usage, bytes, seconds};
use time::OffsetDateTime;

use crate::config::QuotaConfig;
use crate::error::Error;
use crate::job::{Job, MediaLimits};
use crate::jobs::{JobStore, StoredUsage};

/// `Retry-After` for a user at their concurrent jobs: about how long a short conversion takes.
pub const CONCURRENT_RETRY_SECS: u64 = 30;

/// The caller's limits: the defaults with the overrides the gateway sent (400
/// `invalid_limits` if that header is malformed).
pub fn limits(config: &QuotaConfig, headers: &HeaderMap) -> Result<Limits, Error> {
    let overrides = match headers.get(LIMITS_HEADER) {
        None => Limits::default(),
        Some(value) => value
            .to_str()
            .map_err(|_| "not ASCII".to_owned())
            .and_then(|value| Limits::from_header(value).map_err(|e| e.to_string()))
            .map_err(|message| Error::bad_request("invalid_limits", message))?,
    };
    Ok(config.limits().over(&overrides))
}

/// What [`admit`] lets a new job have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    /// Largest video it may bring, bytes.
    pub max_bytes: u64,
    /// The user's limit that set `max_bytes`, if one is tighter than the service's.
    pub capped_by: Option<Limit>,
    /// Its limits, to be kept on the job.
    pub media: MediaLimits,
    /// What the user kept when it was admitted, bytes.
    pub stored_bytes: u64,
}

impl Admission {
    /// What a repeated request gets: no check of what the user has or made (it is answered
    /// with its first job), only the size any one video may have.
    pub fn repeat(limits: &Limits, service_max_bytes: u64) -> Self {
        let mut admission = Self {
            max_bytes: service_max_bytes,
            capped_by: None,
            media: MediaLimits {
                max_bytes: None,
                max_duration_secs: limits.max_duration_secs,
                storage_bytes: limits.storage_bytes,
            },
            stored_bytes: 0,
        };
        if let Some(max) = limits.max_upload_bytes
            && max < admission.max_bytes
        {
            admission.max_bytes = max;
            admission.capped_by = Some(Limit::MaxUploadBytes);
            admission.media.max_bytes = Some(max);
        }
        admission
    }

    /// The refusal of a video over `max_bytes`: the user's limit, or the service's.
    pub fn too_large(&self, limits: &Limits) -> Error {
        let usage_bytes = self.stored_bytes;
        match self.capped_by {
            Some(Limit::StorageBytes) => Error::Quota {
                limit: Limit::StorageBytes,
                message: storage_full(usage_bytes, limits.storage_bytes.unwrap_or(u64::MAX)),
                retry_after: None,
            },
            Some(limit) => Error::Quota {
                limit,
                message: format!(
                    "the video is larger than your limit of {} per video",
                    bytes(self.max_bytes)
                ),
                retry_after: None,
            },
            None => Error::TooLarge {
                limit: self.max_bytes,
            },
        }
    }
}

/// Checks that `owner` may make a job now, and what it may bring: refuses a user at their
/// concurrent jobs, their jobs this hour or their storage.
pub async fn admit(
    jobs: &dyn JobStore,
    owner: &str,
    limits: &Limits,
    config: &QuotaConfig,
    service_max_bytes: u64,
    now: OffsetDateTime,
) -> Result<Admission, Error> {
    let usage = jobs.usage(owner, window_start(config, now)).await?;
    check(&usage, limits, config, now, 1)?;
    let mut admission = Admission {
        stored_bytes: usage.stored_bytes,
        ..Admission::repeat(limits, service_max_bytes)
    };
    // An upload brings its bytes now: it may bring what is left of the storage. (A link's
    // download is measured against the storage when it starts: `MediaLimits::storage_bytes`.)
    if let Some(storage) = limits.storage_bytes {
        let room = storage.saturating_sub(usage.stored_bytes);
        if room < admission.max_bytes {
            admission.max_bytes = room;
            admission.capped_by = Some(Limit::StorageBytes);
        }
    }
    Ok(admission)
}

/// Where one user's [`confirm`]s take turns in this process: striped by user, so that the
/// table stays small whoever calls.
pub struct Gate {
    stripes: Vec<tokio::sync::Mutex<()>>,
}

impl Default for Gate {
    fn default() -> Self {
        Self {
            stripes: (0..64).map(|_| tokio::sync::Mutex::new(())).collect(),
        }
    }
}

impl Gate {
    async fn enter(&self, owner: &str) -> tokio::sync::MutexGuard<'_, ()> {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        owner.hash(&mut hasher);
        let stripe = (hasher.finish() % self.stripes.len() as u64) as usize;
        self.stripes[stripe].lock().await
    }
}

/// Notes the stored `job` as made and checks its owner's limits again, counting it. Refused,
/// the job (record and note) is removed before the next check of its owner's begins; the
/// caller removes its video and key.
pub async fn confirm(
    jobs: &dyn JobStore,
    gate: &Gate,
    job: &Job,
    limits: &Limits,
    config: &QuotaConfig,
    now: OffsetDateTime,
) -> Result<(), Error> {
    let _turn = gate.enter(&job.owner).await;
    let checked = async {
        jobs.note_made(&job.owner, job.id, now).await?;
        let usage = jobs.usage(&job.owner, window_start(config, now)).await?;
        check(&usage, limits, config, now, 0)
    };
    if let Err(e) = checked.await {
        let _ = jobs.delete(job.id).await;
        let _ = jobs.forget_made(&job.owner, job.id).await;
        return Err(e);
    }
    Ok(())
}

/// What `GET /internal/usage` answers.
pub async fn quota(
    jobs: &dyn JobStore,
    owner: &str,
    limits: Limits,
    config: &QuotaConfig,
    now: OffsetDateTime,
) -> Result<Quota, Error> {
    let usage = jobs.usage(owner, window_start(config, now)).await?;
    Ok(Quota {
        limits,
        usage: Usage {
            storage_bytes: usage.stored_bytes,
            concurrent_jobs: usage.active_jobs,
            jobs_per_hour: usage.made_since,
        },
    })
}

fn window_start(config: &QuotaConfig, now: OffsetDateTime) -> OffsetDateTime {
    now - config.rate_window
}

/// Refuses `usage` plus `adding` jobs over a limit.
fn check(
    usage: &StoredUsage,
    limits: &Limits,
    config: &QuotaConfig,
    now: OffsetDateTime,
    adding: u64,
) -> Result<(), Error> {
    if let Some(max) = limits.concurrent_jobs
        && usage.active_jobs + adding > max
    {
        return Err(Error::Quota {
            limit: Limit::ConcurrentJobs,
            message: format!(
                "you have {} of your {max} jobs at once queued or converting; try again when one has finished",
                usage.active_jobs.min(max)
            ),
            retry_after: Some(CONCURRENT_RETRY_SECS),
        });
    }
    if limits.jobs_per_hour == Some(0) {
        // An operator's way to stop a user making jobs: no wait would help.
        return Err(Error::Quota {
            limit: Limit::JobsPerHour,
            message: "you may not make new jobs for now; ask the service's operator".to_owned(),
            retry_after: None,
        });
    }
    if let Some(max) = limits.jobs_per_hour
        && usage.made_since + adding > max
    {
        // A place comes free when the earliest job in the window leaves it.
        let frees = usage
            .earliest_made
            .map_or(now + config.rate_window, |at| at + config.rate_window);
        let wait = (frees - now).whole_seconds().max(0).unsigned_abs() + 1;
        return Err(Error::Quota {
            limit: Limit::JobsPerHour,
            message: format!(
                "you made {} of your {max} jobs per {}; try again in {}",
                usage.made_since.min(max),
                window_name(config),
                seconds(wait)
            ),
            retry_after: Some(wait),
        });
    }
    if let Some(max) = limits.storage_bytes
        && (usage.stored_bytes > max || (adding > 0 && usage.stored_bytes >= max))
    {
        return Err(Error::Quota {
            limit: Limit::StorageBytes,
            message: format!(
                "your files take {} of your {}; delete jobs to make room",
                bytes(usage.stored_bytes),
                bytes(max)
            ),
            retry_after: None,
        });
    }
    Ok(())
}

fn window_name(config: &QuotaConfig) -> String {
    match config.rate_window.as_secs() {
        3600 => "hour".to_owned(),
        secs => seconds(secs),
    }
}

/// The refusal of a link's video that does not fit in its owner's storage.
pub fn storage_full(stored: u64, storage: u64) -> String {
    format!(
        "this video does not fit in your storage: you keep {} of your {}",
        bytes(stored),
        bytes(storage)
    )
}

/// The failure of a video longer than its job's limit.
pub fn too_long(seconds_long: f64, max: u64) -> String {
    format!(
        "the video lasts {}, longer than your limit of {} per video",
        seconds(seconds_long.max(0.0).ceil() as u64),
        seconds(max)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn some_limits() -> Limits {
        Limits {
            storage_bytes: Some(1000),
            concurrent_jobs: Some(2),
            jobs_per_hour: Some(3),
            max_upload_bytes: None,
            max_duration_secs: None,
        }
    }

    fn refused(result: Result<(), Error>) -> Option<(Limit, Option<u64>)> {
        match result {
            Ok(()) => None,
            Err(Error::Quota {
                limit, retry_after, ..
            }) => Some((limit, retry_after)),
            Err(e) => panic!("not a quota refusal: {e}"),
        }
    }

    #[test]
    fn each_limit_refuses_at_its_edge() {
        let config = QuotaConfig::default();
        let now = OffsetDateTime::now_utc();
        let under = StoredUsage {
            stored_bytes: 999,
            active_jobs: 1,
            made_since: 2,
            earliest_made: Some(now - time::Duration::minutes(50)),
        };
        // Before the job: one more fits.
        assert_eq!(
            refused(check(&under, &some_limits(), &config, now, 1)),
            None
        );
        let at = |change: fn(&mut StoredUsage)| {
            let mut usage = under;
            change(&mut usage);
            refused(check(&usage, &some_limits(), &config, now, 1))
        };
        assert_eq!(
            at(|u| u.active_jobs = 2),
            Some((Limit::ConcurrentJobs, Some(CONCURRENT_RETRY_SECS)))
        );
        // The earliest of the hour's jobs leaves the window in ten minutes.
        assert_eq!(
            at(|u| u.made_since = 3),
            Some((Limit::JobsPerHour, Some(601)))
        );
        assert_eq!(
            at(|u| u.stored_bytes = 1000),
            Some((Limit::StorageBytes, None))
        );
        // Once the job is counted, a usage at the limit is fine and one past it is not.
        let counted = StoredUsage {
            stored_bytes: 1000,
            active_jobs: 2,
            made_since: 3,
            ..under
        };
        assert_eq!(
            refused(check(&counted, &some_limits(), &config, now, 0)),
            None
        );
        let over = StoredUsage {
            made_since: 4,
            ..counted
        };
        assert_eq!(
            refused(check(&over, &some_limits(), &config, now, 0)).map(|r| r.0),
            Some(Limit::JobsPerHour)
        );
        // A limit of 0 stops the user, with no promise of when.
        let stopped = Limits {
            jobs_per_hour: Some(0),
            ..Limits::default()
        };
        assert_eq!(
            refused(check(&StoredUsage::default(), &stopped, &config, now, 0)),
            Some((Limit::JobsPerHour, None))
        );
        // No limits, no refusal.
        let huge = StoredUsage {
            stored_bytes: u64::MAX,
            active_jobs: u64::MAX / 2,
            made_since: u64::MAX / 2,
            earliest_made: None,
        };
        assert_eq!(
            refused(check(&huge, &Limits::default(), &config, now, 1)),
            None
        );
    }

    #[test]
    fn overrides_arrive_in_their_header() {
        let config = QuotaConfig::default();
        let mut headers = HeaderMap::new();
        assert_eq!(limits(&config, &headers).unwrap(), config.limits());
        headers.insert(
            LIMITS_HEADER,
            "jobs_per_hour=5, storage_bytes=unlimited".parse().unwrap(),
        );
        let got = limits(&config, &headers).unwrap();
        assert_eq!(got.jobs_per_hour, Some(5));
        assert_eq!(got.storage_bytes, None);
        assert_eq!(got.concurrent_jobs, config.concurrent_jobs);
        headers.insert(LIMITS_HEADER, "jobs=5".parse().unwrap());
        assert!(matches!(
            limits(&config, &headers),
            Err(Error::BadRequest {
                code: "invalid_limits",
                ..
            })
        ));
    }

    #[test]
    fn a_long_video_is_told_its_numbers() {
        assert_eq!(
            too_long(7200.4, 3600),
            "the video lasts 2h 0m, longer than your limit of 1h 0m per video"
        );
    }
}
