//! Who is calling: the bearer token verified here (no call to auth per request), its user
//! checked to still exist and the token not signed out (one query), signing a token out, and
//! the HTTP Basic credentials `POST /login` passes on.

use mp3conv_contract::quota::{Limit, Limits, Quota};
use mp3conv_kit::reply::Reply;
use mp3conv_sql::Value;
use mp3conv_sql::{Db, Param};
use mp3conv_tokens::{Claims, Verifier};
use serde::Serialize;

use crate::error::ApiError;
use crate::upstream::Worker;

/// The verified caller (`GET /v1/me`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Caller {
    pub id: String,
    pub email: String,
    /// Unix seconds.
    pub token_expires_at: u64,
    /// The token's id (`jti`), which `POST /v1/logout` revokes.
    #[serde(skip)]
    pub token_id: String,
    /// Their own limits, where an operator set any (`user_limits`).
    #[serde(skip)]
    pub limits: Limits,
}

/// `GET /v1/me`: the caller and their quota.
#[derive(Serialize)]
struct Me<'a> {
    #[serde(flatten)]
    caller: &'a Caller,
    /// `null` when the worker cannot say.
    quota: Option<Quota>,
}

impl Caller {
    /// `GET /v1/me`: who is calling, and their quota as the worker counts it (`null`, with
    /// the rest, when the worker is unavailable: the account's page still shows).
    pub async fn reply(&self, worker: &impl Worker) -> Reply {
        let quota = match worker.quota(&self.id).await {
            Ok(quota) => Some(quota),
            Err(err) => {
                eprintln!("gateway: no quota for /v1/me: {err:?}");
                None
            }
        };
        Reply::json(
            200,
            &Me {
                caller: self,
                quota,
            },
        )
    }
}

/// The `user_limits` columns, in [`Limit::ALL`]'s order.
const LIMIT_COLUMNS: &str = "l.storage_bytes, l.concurrent_jobs, l.jobs_per_hour, \
                             l.max_upload_bytes, l.max_duration_secs";

/// The verified caller, if their account still exists (a deleted account's tokens stop working
/// at once) and the token was not signed out (401 `invalid_token`).
pub fn known(caller: Caller, db: &dyn Db) -> Result<Caller, ApiError> {
    let rows = db
        .query(
            &format!(
                "SELECT EXISTS (SELECT 1 FROM revoked_tokens WHERE jti = ?), {LIMIT_COLUMNS}
                 FROM users u LEFT JOIN user_limits l ON l.user_id = u.id WHERE u.id = ?"
            ),
            &[
                Param::Text(caller.token_id.clone()),
                Param::Text(caller.id.clone()),
            ],
        )
        .map_err(|err| ApiError::Internal(format!("checking the user: {err}")))?;
    let Some(row) = rows.first() else {
        return Err(ApiError::Unauthorized("unknown_user"));
    };
    match row.first() {
        Some(Value::Int(0)) => {}
        _ => return Err(ApiError::Unauthorized("invalid_token")),
    }
    let mut caller = caller;
    for (limit, value) in Limit::ALL.into_iter().zip(&row[1..]) {
        if let Value::Int(n) = value {
            caller.limits.set(limit, u64::try_from(*n).ok());
        }
    }
    Ok(caller)
}

/// Signs the caller's token out (`POST /v1/logout`): from now on it is refused, though it has
/// not expired. Other tokens of the same user (other devices) stay good. Revocations of tokens
/// that have expired anyway are swept here.
pub fn revoke(db: &dyn Db, caller: &Caller, now_secs: u64) -> Result<Reply, ApiError> {
    let failed = |err| ApiError::Internal(format!("signing out: {err}"));
    let now = i64::try_from(now_secs).unwrap_or(i64::MAX);
    db.execute(
        "DELETE FROM revoked_tokens WHERE expires_at < ?",
        &[Param::Int(now)],
    )
    .map_err(failed)?;
    db.execute(
        "INSERT INTO revoked_tokens (jti, user_id, expires_at) VALUES (?, ?, ?)",
        &[
            Param::Text(caller.token_id.clone()),
            Param::Text(caller.id.clone()),
            Param::Int(i64::try_from(caller.token_expires_at).unwrap_or(i64::MAX)),
        ],
    )
    .map_err(failed)?;
    Ok(Reply::empty(204))
}

/// Forgets the limits an operator set for a user whose account is gone.
pub fn forget_limits(db: &dyn Db, user: &str) -> Result<(), mp3conv_sql::DbError> {
    db.execute(
        "DELETE FROM user_limits WHERE user_id = ?",
        &[Param::Text(user.to_owned())],
    )
}

/// 401 `unknown_user` unless the user `id` still exists.
pub fn exists(db: &dyn Db, id: &str) -> Result<(), ApiError> {
    if !user_exists(db, id)? {
        return Err(ApiError::Unauthorized("unknown_user"));
    }
    Ok(())
}

/// Verifies the bearer token of `authorization`.
pub fn verify(authorization: Option<&str>, verifier: &Verifier) -> Result<Caller, ApiError> {
    let token = authorization
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|token| !token.is_empty())
        .ok_or(ApiError::Unauthorized("missing_token"))?;
    let Claims {
        sub,
        email,
        exp,
        jti,
        ..
    } = verifier
        .verify(token)
        .map_err(|_| ApiError::Unauthorized("invalid_token"))?;
    Ok(Caller {
        id: sub,
        email,
        token_expires_at: exp,
        token_id: jti,
        limits: Limits::default(),
    })
}

fn user_exists(db: &dyn Db, id: &str) -> Result<bool, ApiError> {
    let rows = db
        .query(
            "SELECT 1 FROM users WHERE id = ?",
            &[Param::Text(id.to_owned())],
        )
        .map_err(|err| ApiError::Internal(format!("checking the user: {err}")))?;
    Ok(!rows.is_empty())
}

/// The `Authorization` value of an HTTP Basic header holding `email:password`, checked only
/// for shape (auth checks the rest).
pub fn basic_credentials(authorization: Option<&str>) -> Result<String, ApiError> {
    use base64::Engine as _;
    authorization
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
        .and_then(|(_, encoded)| {
            base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .ok()
        })
        .and_then(|decoded| String::from_utf8(decoded).ok())
        .filter(|pair| pair.contains(':'))
        .map(|_| authorization.unwrap_or_default().trim().to_owned())
        .ok_or(ApiError::BasicRequired)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;

    #[test]
    fn basic_credentials_are_required_for_login() {
        assert_eq!(
            basic_credentials(Some("Basic YTpi ")).as_deref(),
            Ok("Basic YTpi")
        );
        for bad in [
            None,
            Some("Bearer x"),
            Some("Basic !!!"),
            Some("Basic YWI="),
        ] {
            assert_eq!(
                basic_credentials(bad),
                Err(ApiError::BasicRequired),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn tokens_and_users() {
        let keys = testing::Keys::new();
        let verifier = keys.verifier();
        let db = testing::database();
        testing::add_user(&db, "u1", "u1@example.com");
        let bearer = format!("Bearer {}", keys.token("u1", "u1@example.com"));
        let authenticate = |authorization: Option<&str>| {
            verify(authorization, &verifier).and_then(|caller| known(caller, &db))
        };
        let caller = authenticate(Some(&bearer)).unwrap();
        assert_eq!(caller.id, "u1");
        assert_eq!(caller.email, "u1@example.com");
        let gone = format!("Bearer {}", keys.token("u2", "u2@example.com"));
        for (authorization, code) in [
            (None, "missing_token"),
            (Some("Basic YTpi".to_owned()), "missing_token"),
            (Some("Bearer ".to_owned()), "missing_token"),
            (Some("Bearer not.a.jwt".to_owned()), "invalid_token"),
            (Some(gone), "unknown_user"),
        ] {
            assert_eq!(
                authenticate(authorization.as_deref()),
                Err(ApiError::Unauthorized(code)),
                "{authorization:?}"
            );
        }
    }

    #[test]
    fn a_signed_out_token_is_refused_and_the_others_stay_good() {
        let keys = testing::Keys::new();
        let verifier = keys.verifier();
        let db = testing::database();
        testing::add_user(&db, "u1", "u1@example.com");
        let laptop = format!("Bearer {}", keys.token("u1", "u1@example.com"));
        let phone = format!("Bearer {}", keys.token("u1", "u1@example.com"));
        let authenticate = |authorization: &str| {
            verify(Some(authorization), &verifier).and_then(|caller| known(caller, &db))
        };
        let caller = authenticate(&laptop).unwrap();
        assert_eq!(revoke(&db, &caller, 1_800_000_000).unwrap().status, 204);
        assert_eq!(
            authenticate(&laptop),
            Err(ApiError::Unauthorized("invalid_token"))
        );
        assert_eq!(authenticate(&phone).unwrap().id, "u1");
        // Revocations of expired tokens are swept by the next sign-out.
        let phone = authenticate(&phone).unwrap();
        let rows = |db: &dyn Db| {
            db.query("SELECT jti FROM revoked_tokens", &[])
                .unwrap()
                .len()
        };
        assert_eq!(rows(&db), 1);
        revoke(&db, &phone, caller.token_expires_at + 1).unwrap();
        assert_eq!(rows(&db), 1, "the expired revocation stays");
    }
}
