//! The account: `POST /login` (HTTP Basic passed to auth, the token back as plain text) and
//! `DELETE /v1/me` (every job of the caller, then the account at auth, then their
//! notifications, webhook and presets).

use std::collections::HashSet;

use mp3conv_contract::job::{JobId, MAX_PAGE};
use mp3conv_kit::http::keep_headers;
use mp3conv_kit::reply::Reply;
use mp3conv_sql::{Db, notifications};
use serde::Deserialize;

use crate::caller::basic_credentials;
use crate::error::ApiError;
use crate::presets;
use crate::upstream::{Auth, JobsQuery, Worker};

/// `POST /login`.
pub async fn login(auth: &impl Auth, authorization: Option<&str>) -> Result<Reply, ApiError> {
    let credentials = basic_credentials(authorization)?;
    let answer = auth.login(&credentials).await?;
    match answer.status {
        200 => {
            #[derive(Deserialize)]
            struct Token {
                access_token: String,
            }
            let token = serde_json::from_slice::<Token>(&answer.body)
                .map_err(|_| ApiError::Internal("auth answered 200 without a token".into()))?;
            Ok(Reply::bytes(
                200,
                "text/plain; charset=utf-8",
                token.access_token,
            ))
        }
        status @ 400..=499 => Err(ApiError::Upstream {
            status,
            body: answer.body,
            headers: keep_headers(&answer.headers, &["www-authenticate", "retry-after"]),
        }),
        _ => Err(ApiError::WorkerUnavailable),
    }
}

/// `DELETE /v1/me`: the caller's jobs page by page (one already gone is fine), then the
/// account at auth (with the caller's own token), then what the gateway keeps about them.
/// Stops at the first failure, so a retry finishes the work.
pub async fn delete(
    worker: &impl Worker,
    auth: &impl Auth,
    db: &dyn Db,
    owner: &str,
    authorization: &str,
) -> Result<Reply, ApiError> {
    delete_jobs(worker, owner).await?;
    let answer = auth.delete_account(authorization).await?;
    match answer.status {
        204 => {}
        401 => return Err(ApiError::Unauthorized("unknown_user")),
        status => {
            return Err(ApiError::Internal(format!(
                "auth answered {status} to the account deletion: {}",
                String::from_utf8_lossy(&answer.body)
            )));
        }
    }
    notifications::forget_user(db, owner)
        .and_then(|()| presets::forget_user(db, owner))
        .and_then(|()| crate::caller::forget_limits(db, owner))
        .map_err(|err| ApiError::Internal(format!("database: {err}")))?;
    Ok(Reply::empty(204))
}

async fn delete_jobs(worker: &impl Worker, owner: &str) -> Result<(), ApiError> {
    let mut deleted: HashSet<JobId> = HashSet::new();
    let first_page = JobsQuery {
        limit: MAX_PAGE,
        cursor: None,
    };
    loop {
        let page = worker.jobs(owner, first_page).await?;
        if page.jobs.is_empty() {
            return Ok(());
        }
        for job in page.jobs {
            if !deleted.insert(job.id) {
                // Listed again after its deletion: looping on would never end.
                return Err(ApiError::Internal(format!(
                    "the worker still lists job {} after deleting it",
                    job.id
                )));
            }
            match worker.delete_job(owner, job.id).await {
                Ok(()) | Err(ApiError::JobNotFound) => {}
                Err(err) => return Err(err),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{self, FakeAuth, FakeWorker, answered};
    use futures::executor::block_on;
    use mp3conv_sql::notifications::Webhook;

    const ME: &str = "Bearer me";

    fn db_with_webhook(user: &str) -> mp3conv_sql::testing::Sqlite {
        let db = testing::database();
        testing::add_user(&db, user, "u@example.com");
        let now = time::OffsetDateTime::now_utc();
        presets::create(&db, user, br#"{"name":"p","options":{"bitrate":128}}"#, now).unwrap();
        let hook = Webhook {
            user_id: user.into(),
            url: "https://hooks.example.com/".into(),
            secret: "whsec_x".into(),
            created_at: 1,
        };
        notifications::put_webhook(&db, &hook).unwrap();
        db
    }

    #[test]
    fn login_passes_basic_credentials_and_answers_the_token() {
        let auth = FakeAuth::default();
        let reply = block_on(login(&auth, Some("Basic YTpi"))).unwrap();
        assert_eq!(reply.body, b"t0k");
        assert_eq!(auth.calls.borrow().as_slice(), ["login Basic YTpi"]);
        assert_eq!(
            block_on(login(&auth, Some("Bearer x"))),
            Err(ApiError::BasicRequired)
        );
        assert_eq!(
            auth.calls.borrow().len(),
            1,
            "auth asked without credentials"
        );
    }

    #[test]
    fn login_refusals_pass_through_and_outages_are_503() {
        let auth = FakeAuth::default();
        let mut refused = answered(
            401,
            r#"{"error":{"code":"invalid_credentials","message":"m"}}"#,
        );
        refused
            .headers
            .push(("WWW-Authenticate".into(), b"Basic".to_vec()));
        refused.headers.push(("set-cookie".into(), b"no".to_vec()));
        *auth.login.borrow_mut() = Ok(refused.clone());
        assert_eq!(
            block_on(login(&auth, Some("Basic YTpi"))),
            Err(ApiError::Upstream {
                status: 401,
                body: refused.body,
                headers: vec![("www-authenticate".into(), "Basic".into())],
            })
        );
        *auth.login.borrow_mut() = Ok(answered(502, ""));
        assert_eq!(
            block_on(login(&auth, Some("Basic YTpi"))),
            Err(ApiError::WorkerUnavailable)
        );
        *auth.login.borrow_mut() = Ok(answered(200, "{}"));
        assert!(matches!(
            block_on(login(&auth, Some("Basic YTpi"))),
            Err(ApiError::Internal(_))
        ));
    }

    #[test]
    fn deleting_an_account_deletes_every_job_page_by_page_then_the_account() {
        let worker = FakeWorker::default();
        let auth = FakeAuth::default();
        let db = db_with_webhook("u1");
        let mine: Vec<JobId> = (0..150)
            .map(|i| worker.add_job("u1", &format!("{i}")).id)
            .collect();
        let theirs = worker.add_job("u2", "theirs");
        // One is deleted meanwhile (404): fine.
        worker.vanishing.borrow_mut().push(mine[3]);
        let reply = block_on(delete(&worker, &auth, &db, "u1", ME)).unwrap();
        assert_eq!(reply.status, 204);
        assert_eq!(worker.jobs.borrow().as_slice(), [theirs]);
        let lists = worker
            .calls()
            .iter()
            .filter(|c| c.starts_with("jobs"))
            .count();
        assert_eq!(lists, 3, "two full pages and an empty one");
        assert_eq!(auth.calls.borrow().as_slice(), ["delete Bearer me"]);
        assert_eq!(notifications::webhook(&db, "u1").unwrap(), None);
        assert_eq!(presets::options(&db, "u1", "p").unwrap(), None);
    }

    #[test]
    fn a_worker_outage_mid_way_stops_before_the_account_goes() {
        let worker = FakeWorker::default();
        let auth = FakeAuth::default();
        let db = db_with_webhook("u1");
        for i in 0..5 {
            worker.add_job("u1", &format!("{i}"));
        }
        // The listing and two deletions, then the worker is gone.
        worker.calls_before_outage.set(Some(3));
        assert_eq!(
            block_on(delete(&worker, &auth, &db, "u1", ME)),
            Err(ApiError::WorkerUnavailable)
        );
        assert_eq!(worker.jobs.borrow().len(), 3);
        assert!(auth.calls.borrow().is_empty(), "the account went first");
        assert!(notifications::webhook(&db, "u1").unwrap().is_some());
        assert!(presets::options(&db, "u1", "p").unwrap().is_some());
        // Once the worker is back, a retry finishes.
        worker.calls_before_outage.set(None);
        assert!(block_on(delete(&worker, &auth, &db, "u1", ME)).is_ok());
        assert!(worker.jobs.borrow().is_empty());
    }

    #[test]
    fn auth_refusing_keeps_what_the_gateway_holds() {
        let worker = FakeWorker::default();
        let db = db_with_webhook("u1");
        for (answer, expected) in [
            (
                Ok(answered(401, "")),
                ApiError::Unauthorized("unknown_user"),
            ),
            (
                Err(ApiError::WorkerUnavailable),
                ApiError::WorkerUnavailable,
            ),
        ] {
            let auth = FakeAuth::default();
            *auth.delete.borrow_mut() = answer;
            assert_eq!(
                block_on(delete(&worker, &auth, &db, "u1", ME)),
                Err(expected)
            );
            assert!(notifications::webhook(&db, "u1").unwrap().is_some());
        }
        let auth = FakeAuth::default();
        *auth.delete.borrow_mut() = Ok(answered(500, "boom"));
        assert!(matches!(
            block_on(delete(&worker, &auth, &db, "u1", ME)),
            Err(ApiError::Internal(m)) if m.contains("500")
        ));
    }

    #[test]
    fn a_worker_that_keeps_listing_deleted_jobs_is_not_looped_on_forever() {
        let worker = FakeWorker::default();
        let job = worker.add_job("u1", "stuck");
        worker.undeletable.borrow_mut().push(job.id);
        let auth = FakeAuth::default();
        let db = testing::database();
        let result = block_on(delete(&worker, &auth, &db, "u1", ME));
        assert!(matches!(result, Err(ApiError::Internal(m)) if m.contains("still lists")));
        assert!(auth.calls.borrow().is_empty());
    }
}
