//! Event-stream tickets: `POST /v1/events/ticket` gives a caller with a bearer token a
//! single-use ticket, valid for `event_ticket_seconds`, for `GET /v1/events?ticket=` (a
//! browser's `EventSource` cannot send an `Authorization` header).
//!
//! A ticket is 32 random bytes (43 characters of unpadded base64url). The database keeps only
//! its SHA-256, its user, its expiry and when the token that minted it expires (a stream
//! opened with it ends by then too). Redeeming is single use without transactions or affected
//! row counts (neither crosses Spin's database interfaces): one `UPDATE` claims the unclaimed,
//! unexpired row with a fresh value, which only one redeemer can do on SQLite and InnoDB
//! alike; whoever then reads its own claim back owns the ticket, and the row is deleted.
//! Expired rows are swept, a bounded batch at a time, whenever a ticket is minted.

use std::time::Duration;

use base64::Engine as _;
use mp3conv_kit::reply::Reply;
use mp3conv_sql::{Db, DbError, Param, Value};
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;

use crate::caller::Caller;
use crate::error::ApiError;
use crate::notifications::unix_ms;

/// The length of a ticket: 32 bytes in unpadded base64url.
pub const TICKET_CHARS: usize = 43;
/// Expired tickets deleted at most per mint.
const SWEEP_BATCH: usize = 100;

/// `POST /v1/events/ticket`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Minted {
    pub ticket: String,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

/// Whose a redeemed ticket was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redeemed {
    pub user_id: String,
    /// When the token that minted it expires, in unix seconds.
    pub token_expires_at: u64,
}

/// `POST /v1/events/ticket`: sweeps expired tickets, then mints one for `caller`, valid for
/// `lifetime` from `now`. 201, never cached.
pub fn mint(
    db: &dyn Db,
    caller: &Caller,
    now: OffsetDateTime,
    lifetime: Duration,
) -> Result<Reply, ApiError> {
    sweep(db, unix_ms(now))?;
    let ticket = new_ticket()?;
    let expires_at = now + lifetime;
    let token_expires_at = i64::try_from(caller.token_expires_at).unwrap_or(i64::MAX);
    db.execute(
        "INSERT INTO event_tickets (hash, user_id, token_expires_at, expires_at) \
         VALUES (?, ?, ?, ?)",
        &[
            Param::Text(hash(&ticket)),
            Param::Text(caller.id.clone()),
            Param::Int(token_expires_at),
            Param::Int(unix_ms(expires_at)),
        ],
    )
    .map_err(database)?;
    let minted = Minted { ticket, expires_at };
    Ok(Reply::json(201, &minted).with_header("cache-control", "no-store"))
}

/// Redeems `ticket` at `now`, once: 401 `invalid_ticket` for one that is malformed, unknown,
/// used or expired. `claim` is a fresh unique value (a new UUID).
pub fn redeem(
    db: &dyn Db,
    ticket: &str,
    now: OffsetDateTime,
    claim: &str,
) -> Result<Redeemed, ApiError> {
    let invalid = ApiError::Unauthorized("invalid_ticket");
    if !well_formed(ticket) {
        return Err(invalid);
    }
    let hash = Param::Text(hash(ticket));
    db.execute(
        "UPDATE event_tickets SET claim = ? WHERE hash = ? AND claim IS NULL AND expires_at > ?",
        &[
            Param::Text(claim.to_owned()),
            hash.clone(),
            Param::Int(unix_ms(now)),
        ],
    )
    .map_err(database)?;
    let rows = db
        .query(
            "SELECT user_id, token_expires_at FROM event_tickets WHERE hash = ? AND claim = ?",
            &[hash.clone(), Param::Text(claim.to_owned())],
        )
        .map_err(database)?;
    let Some(row) = rows.first() else {
        return Err(invalid);
    };
    let redeemed = match row.as_slice() {
        [Value::Text(user_id), expires] => Redeemed {
            user_id: user_id.clone(),
            token_expires_at: expires
                .as_int()
                .and_then(|at| u64::try_from(at).ok())
                .ok_or_else(|| ApiError::Internal("event_tickets: bad token_expires_at".into()))?,
        },
        _ => return Err(ApiError::Internal("event_tickets: unexpected row".into())),
    };
    // Already ours alone; a row left behind by a failure here is swept once expired.
    db.execute("DELETE FROM event_tickets WHERE hash = ?", &[hash])
        .map_err(database)?;
    Ok(redeemed)
}

/// Whether `ticket` has the shape of one (43 base64url characters).
pub fn well_formed(ticket: &str) -> bool {
    ticket.len() == TICKET_CHARS
        && ticket
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Deletes up to [`SWEEP_BATCH`] expired tickets (`DELETE ... LIMIT` is not in the SQL both
/// databases speak: their hashes are read first).
fn sweep(db: &dyn Db, now_ms: i64) -> Result<(), ApiError> {
    let rows = db
        .query(
            &format!("SELECT hash FROM event_tickets WHERE expires_at <= ? LIMIT {SWEEP_BATCH}"),
            &[Param::Int(now_ms)],
        )
        .map_err(database)?;
    let hashes: Vec<Param> = rows
        .iter()
        .filter_map(|row| row.first().and_then(Value::as_text))
        .map(|hash| Param::Text(hash.to_owned()))
        .collect();
    if hashes.is_empty() {
        return Ok(());
    }
    let marks = vec!["?"; hashes.len()].join(", ");
    let mut params = vec![Param::Int(now_ms)];
    params.extend(hashes);
    db.execute(
        &format!("DELETE FROM event_tickets WHERE expires_at <= ? AND hash IN ({marks})"),
        &params,
    )
    .map_err(database)
}

/// 32 random bytes as unpadded base64url.
fn new_ticket() -> Result<String, ApiError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|err| ApiError::Internal(format!("no randomness for a ticket: {err}")))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// The SHA-256 of a ticket, in lower-case hex: what the database keeps.
fn hash(ticket: &str) -> String {
    format!("{:x}", Sha256::digest(ticket.as_bytes()))
}

fn database(err: DbError) -> ApiError {
    ApiError::Internal(format!("event tickets: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;

    fn caller() -> Caller {
        Caller {
            id: "u1".into(),
            email: "u1@example.com".into(),
            token_expires_at: 1_800_003_600,
            token_id: "t1".into(),
            limits: Default::default(),
        }
    }

    fn at(seconds: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000 + seconds).unwrap()
    }

    fn minted(reply: &Reply) -> String {
        let body: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
        body["ticket"].as_str().unwrap().to_owned()
    }

    fn count(db: &dyn Db) -> usize {
        db.query("SELECT hash FROM event_tickets", &[])
            .unwrap()
            .len()
    }

    #[test]
    fn a_ticket_is_random_stored_hashed_and_redeemed_once() {
        let db = testing::database();
        let reply = mint(&db, &caller(), at(0), Duration::from_secs(60)).unwrap();
        assert_eq!(reply.status, 201);
        assert!(
            reply
                .headers
                .contains(&("cache-control".into(), "no-store".into()))
        );
        let body: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
        assert_eq!(body["expires_at"], "2027-01-15T08:01:00Z");
        let ticket = minted(&reply);
        assert_eq!(ticket.len(), TICKET_CHARS);
        let other = minted(&mint(&db, &caller(), at(0), Duration::from_secs(60)).unwrap());
        assert_ne!(ticket, other);
        let stored = db.query("SELECT hash FROM event_tickets", &[]).unwrap();
        assert!(
            stored
                .iter()
                .all(|row| row[0].as_text() != Some(ticket.as_str())),
            "only the hash is kept"
        );
        let redeemed = redeem(&db, &ticket, at(59), "c1").unwrap();
        assert_eq!(
            redeemed,
            Redeemed {
                user_id: "u1".into(),
                token_expires_at: 1_800_003_600,
            }
        );
        assert_eq!(count(&db), 1, "the redeemed row is gone");
        assert_eq!(
            redeem(&db, &ticket, at(1), "c2"),
            Err(ApiError::Unauthorized("invalid_ticket")),
            "single use"
        );
    }

    #[test]
    fn expired_malformed_and_unknown_tickets_are_refused() {
        let db = testing::database();
        let ticket = minted(&mint(&db, &caller(), at(0), Duration::from_secs(60)).unwrap());
        let unknown = "A".repeat(TICKET_CHARS);
        let bad_char = format!("{}+", &ticket[1..]);
        for (ticket, when) in [
            (ticket.as_str(), at(60)),
            (unknown.as_str(), at(1)),
            ("short", at(1)),
            (bad_char.as_str(), at(1)),
        ] {
            assert_eq!(
                redeem(&db, ticket, when, "c"),
                Err(ApiError::Unauthorized("invalid_ticket")),
                "{ticket}"
            );
        }
    }

    #[test]
    fn a_claim_taken_by_another_redeemer_is_not_ours() {
        let db = testing::database();
        let ticket = minted(&mint(&db, &caller(), at(0), Duration::from_secs(60)).unwrap());
        // Another redeemer's UPDATE won the row just before ours.
        db.execute(
            "UPDATE event_tickets SET claim = 'theirs' WHERE claim IS NULL",
            &[],
        )
        .unwrap();
        assert_eq!(
            redeem(&db, &ticket, at(1), "ours"),
            Err(ApiError::Unauthorized("invalid_ticket"))
        );
    }

    #[test]
    fn minting_sweeps_expired_tickets_in_bounded_batches() {
        let db = testing::database();
        for i in 0..(SWEEP_BATCH + 5) {
            db.execute(
                "INSERT INTO event_tickets (hash, user_id, token_expires_at, expires_at) \
                 VALUES (?, 'u1', 0, ?)",
                &[Param::Text(format!("old{i}")), Param::Int(unix_ms(at(-1)))],
            )
            .unwrap();
        }
        let live = minted(&mint(&db, &caller(), at(0), Duration::from_secs(60)).unwrap());
        assert_eq!(count(&db), 5 + 1, "one batch swept");
        mint(&db, &caller(), at(0), Duration::from_secs(60)).unwrap();
        assert_eq!(count(&db), 2, "the rest swept, live tickets kept");
        assert!(redeem(&db, &live, at(1), "c").is_ok());
    }
}
