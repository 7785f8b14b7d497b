//! `Idempotency-Key` on job creation (issue #19): a client that retries `POST /v1/jobs` after
//! a timeout gets the job its first request made, not a second one.
//!
//! A key belongs to its owner and lasts [`KEY_LIFETIME`] from its first use. The request it
//! was first used for is remembered by a fingerprint: a SHA-256 of what the job was asked to
//! be (a link's URL, or an upload's name, type and the SHA-256 of its bytes, with the bitrate
//! and options). The same key with the same request answers the first job (202, with
//! `Idempotent-Replayed: true`); with another request, 422 `idempotency_key_reused`.
//!
//! An upload's bytes are hashed as they are stored. A held upload's hash is kept under a
//! pseudo-key until its start, where its options are known and the real key is claimed. Of two
//! requests with one key at once, both may store their video, but only one claims the key;
//! the other removes what it stored and answers the winner's job.

use std::time::Duration;

use axum::http::HeaderMap;
use serde::Serialize;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::error::Error;
use crate::job::{Bitrate, Job, JobId, Source};
use crate::jobs::{Claim, JobStore};
use mp3conv_contract::options::Options;

/// The request header.
pub const KEY_HEADER: &str = "idempotency-key";
/// The answer's header when it repeats an earlier request's job.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";
/// How long a key names its job.
pub const KEY_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// Longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 255;
/// Prefix of the pseudo-key holding a held upload's hash (a space: never in a client's key).
const HELD_PREFIX: &str = " held ";

/// The request's key: absent, or 1-255 visible ASCII characters (400
/// `invalid_idempotency_key` otherwise).
pub fn key(headers: &HeaderMap) -> Result<Option<String>, Error> {
    let mut values = headers.get_all(KEY_HEADER).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    let invalid = |why: &str| Error::bad_request("invalid_idempotency_key", why.to_owned());
    if values.next().is_some() {
        return Err(invalid("send one Idempotency-Key"));
    }
    let bytes = value.as_bytes();
    if bytes.is_empty() || bytes.len() > MAX_KEY_BYTES {
        return Err(invalid(
            "the Idempotency-Key must be 1 to 255 characters long",
        ));
    }
    if !bytes.iter().all(|b| (0x21..=0x7e).contains(b)) {
        return Err(invalid(
            "the Idempotency-Key must be visible ASCII characters (a UUID, say)",
        ));
    }
    Ok(Some(String::from_utf8_lossy(bytes).into_owned()))
}

/// What a fingerprint covers: what the job was asked to be, not when or by which id.
#[derive(Serialize)]
struct Asked<'a> {
    source: &'a Source,
    bitrate: Bitrate,
    options: &'a Options,
    /// An upload's bytes, as a SHA-256 in hex.
    video: Option<&'a str>,
}

/// The fingerprint of the request that made `job` (an upload's bytes hashed to `video`).
pub fn fingerprint(job: &Job, video: Option<&str>) -> String {
    let asked = Asked {
        source: &job.source,
        bitrate: job.bitrate,
        options: &job.options,
        video,
    };
    let json = serde_json::to_vec(&asked).expect("a job's parts always serialize");
    hex(&Sha256::digest(json))
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A running SHA-256 of an upload's bytes.
#[derive(Default)]
pub struct Hasher(Sha256);

impl Hasher {
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    pub fn finish(self) -> String {
        hex(&self.0.finalize())
    }
}

/// Claims `key` for `job` (made for the request `print`): `None` when it is now `job`'s,
/// the first job when the key was used for the same request (a replay), 422
/// `idempotency_key_reused` when it was used for another.
pub async fn claim(
    jobs: &dyn JobStore,
    job: &Job,
    key: &str,
    print: &str,
) -> Result<Option<Job>, Error> {
    let now = OffsetDateTime::now_utc();
    match jobs
        .claim_key(&job.owner, key, job.id, print, now, now - KEY_LIFETIME)
        .await?
    {
        Claim::Claimed => Ok(None),
        Claim::Taken {
            job: first,
            fingerprint,
        } if fingerprint == print => {
            match jobs.get(first).await? {
                // A held upload is still being started by the first request.
                Some(first) if first.owner == job.owner && !first.held => Ok(Some(first)),
                // Deleted since its claim was read: the next attempt claims the key anew.
                _ => Err(Error::KeyInUse),
            }
        }
        Claim::Taken { job: first, .. } => Err(Error::KeyReused { job: first }),
    }
}

/// Whether `owner`'s `key` names a job already: a repeated request, answered with that job
/// whatever the owner's quota says now.
pub async fn is_claimed(jobs: &dyn JobStore, owner: &str, key: &str) -> Result<bool, Error> {
    let since = OffsetDateTime::now_utc() - KEY_LIFETIME;
    let Some((id, _)) = jobs.key(owner, key, since).await? else {
        return Ok(false);
    };
    // As for a claim: a key whose job is gone (or not started yet) is no repeat.
    Ok(jobs
        .get(id)
        .await?
        .is_some_and(|job| job.owner == owner && !job.held))
}

/// How long a repeated request's job may stay queued, never tried, before the repeat queues
/// it again: its first request may have died between storing it and queueing it.
pub const STALLED: Duration = Duration::from_secs(30);

/// Whether a repeated request's `job` looks never queued (see [`STALLED`]). Queueing it again
/// is safe: a converter takes a job once (its lease) and acknowledges a finished one.
pub fn stalled(job: &Job, now: OffsetDateTime) -> bool {
    job.status == crate::job::Status::Queued
        && job.attempts == 0
        && !job.held
        && now - job.updated_at > STALLED
}

/// Keeps a held upload's hash until its start.
pub async fn hold_hash(jobs: &dyn JobStore, job: &Job, hash: &str) -> Result<(), Error> {
    let now = OffsetDateTime::now_utc();
    let pseudo = format!("{HELD_PREFIX}{}", job.id);
    jobs.claim_key(&job.owner, &pseudo, job.id, hash, now, now)
        .await
        .map(drop)
}

/// The hash kept for held upload `id`, if its upload came with a key.
pub async fn held_hash(
    jobs: &dyn JobStore,
    owner: &str,
    id: JobId,
) -> Result<Option<String>, Error> {
    let pseudo = format!("{HELD_PREFIX}{id}");
    let since = OffsetDateTime::now_utc() - KEY_LIFETIME;
    Ok(jobs.key(owner, &pseudo, since).await?.map(|(_, hash)| hash))
}

/// Forgets held upload `id`'s hash (started, or removed).
pub async fn forget_held(jobs: &dyn JobStore, owner: &str, id: JobId) -> Result<(), Error> {
    jobs.release_key(owner, &format!("{HELD_PREFIX}{id}"), id)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn only_a_job_queued_long_ago_and_never_tried_is_stalled() {
        let mut job = Job::new(
            "ann".into(),
            Source::link("http://x.test/a.mp4"),
            Bitrate::default(),
        );
        let later = job.updated_at + Duration::from_secs(31);
        assert!(!stalled(&job, job.updated_at + Duration::from_secs(5)));
        assert!(stalled(&job, later));
        job.attempts = 1;
        assert!(!stalled(&job, later), "a converter took it");
        job.attempts = 0;
        job.held = true;
        assert!(!stalled(&job, later), "held: not meant to be queued yet");
        job.held = false;
        job.set_status(crate::job::Status::Done);
        assert!(!stalled(&job, job.updated_at + Duration::from_secs(31)));
    }

    fn headers(values: &[&[u8]]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(KEY_HEADER, HeaderValue::from_bytes(value).unwrap());
        }
        headers
    }

    #[test]
    fn keys_are_short_visible_ascii() {
        assert_eq!(key(&headers(&[])).unwrap(), None);
        assert_eq!(
            key(&headers(&[b"8e1f2c1e-3b7a-4c1e-9a55-0d1c2b3a4f5e"]))
                .unwrap()
                .as_deref(),
            Some("8e1f2c1e-3b7a-4c1e-9a55-0d1c2b3a4f5e")
        );
        assert!(key(&headers(&[&[b'k'; 255]])).unwrap().is_some());
        for bad in [
            &b""[..],
            &[b'k'; 256],
            b"two words",
            b"caf\xc3\xa9",
            b"tab\there",
        ] {
            let Err(Error::BadRequest { code, .. }) = key(&headers(&[bad])) else {
                panic!("{bad:?} was taken");
            };
            assert_eq!(code, "invalid_idempotency_key");
        }
        assert!(key(&headers(&[b"a", b"b"])).is_err(), "two keys");
    }

    #[test]
    fn fingerprints_cover_what_was_asked_not_who_or_when() {
        let link = |url: &str| Job::new("ann".into(), Source::link(url), Bitrate::default());
        let a = link("https://example.com/a.mp4");
        let again = link("https://example.com/a.mp4");
        assert_ne!(a.id, again.id);
        assert_eq!(fingerprint(&a, None), fingerprint(&again, None));
        assert_ne!(
            fingerprint(&a, None),
            fingerprint(&link("https://example.com/b.mp4"), None)
        );
        let mut louder = again.clone();
        louder.bitrate = Bitrate::Constant(320);
        assert_ne!(fingerprint(&a, None), fingerprint(&louder, None));
        assert_ne!(fingerprint(&a, Some("00")), fingerprint(&a, Some("01")));
        assert_eq!(fingerprint(&a, None).len(), 64);
    }
}
