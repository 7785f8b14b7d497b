//! Who is calling: the bearer token verified here (no call to auth per request), its user
//! checked to still exist, and the HTTP Basic credentials `POST /login` passes on.

use mp3conv_kit::reply::Reply;
use mp3conv_sql::{Db, Param};
use mp3conv_tokens::{Claims, Verifier};
use serde::Serialize;

use crate::error::ApiError;

/// The verified caller (`GET /v1/me`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Caller {
    pub id: String,
    pub email: String,
    /// Unix seconds.
    pub token_expires_at: u64,
}

impl Caller {
    /// `GET /v1/me`.
    pub fn reply(&self) -> Reply {
        Reply::json(200, self)
    }
}

/// The verified caller, if their account still exists (a deleted account's tokens stop working
/// at once).
pub fn known(caller: Caller, db: &dyn Db) -> Result<Caller, ApiError> {
    exists(db, &caller.id)?;
    Ok(caller)
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
        sub, email, exp, ..
    } = verifier
        .verify(token)
        .map_err(|_| ApiError::Unauthorized("invalid_token"))?;
    Ok(Caller {
        id: sub,
        email,
        token_expires_at: exp,
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
}
