//! `GET /v1/notifications` and `POST /v1/notifications/{id}/read`: what the notifier recorded
//! for the caller, as the contract's [`Notification`] shapes.

use mp3conv_contract::notification::{Notification, NotificationPage};
use mp3conv_kit::reply::Reply;
use mp3conv_sql::{Db, DbError, notifications};
use time::OffsetDateTime;

use crate::error::ApiError;
use crate::routes::{invalid_cursor, only_params, page_limit, param, query_params, uuid_text};

/// `?unread=&limit=&cursor=` of `GET /v1/notifications`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationsQuery {
    pub unread: bool,
    pub limit: u32,
    /// `(created_at, id)` of the previous page's last notification.
    pub cursor: Option<(i64, String)>,
}

/// `GET /v1/notifications`.
pub fn list(db: &dyn Db, user: &str, query: &str) -> Result<Reply, ApiError> {
    let asked = notifications_query(query)?;
    let before = asked.cursor.as_ref().map(|(at, id)| (*at, id.as_str()));
    let rows =
        notifications::list(db, user, asked.unread, asked.limit, before).map_err(database)?;
    Ok(Reply::json(200, &page(&rows, asked.limit)?))
}

/// `POST /v1/notifications/{id}/read`.
pub fn mark_read(
    db: &dyn Db,
    user: &str,
    id: &str,
    now: OffsetDateTime,
) -> Result<Reply, ApiError> {
    if !notifications::mark_read(db, user, id, unix_ms(now)).map_err(database)? {
        return Err(ApiError::NotificationNotFound);
    }
    Ok(Reply::empty(204))
}

/// Parses and checks `GET /v1/notifications`'s query.
pub fn notifications_query(query: &str) -> Result<NotificationsQuery, ApiError> {
    let params = query_params(query);
    only_params(&params, &["unread", "limit", "cursor"])?;
    let unread = match param(&params, "unread") {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_unread",
                "unread must be true or false",
            ));
        }
    };
    let cursor = param(&params, "cursor")
        .map(|text| {
            text.split_once('.')
                .and_then(|(at, id)| Some((at.parse::<i64>().ok()?, uuid_text(id)?)))
                .ok_or_else(invalid_cursor)
        })
        .transpose()?;
    Ok(NotificationsQuery {
        unread,
        limit: page_limit(&params)?,
        cursor,
    })
}

/// A page of notifications, with the cursor of the next one when the page is full.
pub fn page(
    rows: &[notifications::Notification],
    limit: u32,
) -> Result<NotificationPage, ApiError> {
    let next_cursor = (rows.len() == limit as usize)
        .then(|| rows.last().map(|n| format!("{}.{}", n.created_at, n.id)))
        .flatten();
    Ok(NotificationPage {
        notifications: rows.iter().map(public).collect::<Result<_, _>>()?,
        next_cursor,
    })
}

/// A stored notification as users see it.
fn public(n: &notifications::Notification) -> Result<Notification, ApiError> {
    n.to_public().map_err(ApiError::Internal)
}

/// Unix milliseconds as a time.
pub fn from_unix_ms(ms: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
}

/// A time as Unix milliseconds.
pub fn unix_ms(at: OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

fn database(err: DbError) -> ApiError {
    ApiError::Internal(format!("database: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;
    use mp3conv_contract::job::Status;

    const JOB: &str = "0192f1a4-7c2b-7d3e-8f00-123456789abc";

    fn stored(id: &str, created_at: i64) -> notifications::Notification {
        notifications::Notification {
            id: id.into(),
            user_id: "u1".into(),
            event_id: format!("event-{id}"),
            // One notification per job and outcome: each its own job.
            job_id: id.into(),
            status: "done".into(),
            title: "talk".into(),
            message: "talk is ready".into(),
            audio_url: Some(format!("/v1/jobs/{id}/audio")),
            error_code: None,
            created_at,
            read_at: None,
        }
    }

    #[test]
    fn notification_queries() {
        assert_eq!(
            notifications_query("").unwrap(),
            NotificationsQuery {
                unread: false,
                limit: 20,
                cursor: None
            }
        );
        assert_eq!(
            notifications_query(&format!(
                "unread=true&limit=5&cursor=17.{}",
                JOB.to_uppercase()
            ))
            .unwrap(),
            NotificationsQuery {
                unread: true,
                limit: 5,
                cursor: Some((17, JOB.to_owned()))
            }
        );
        for bad in [
            "unread=yes",
            "limit=0",
            "cursor=17",
            "cursor=x.y",
            "sort=asc",
        ] {
            assert!(notifications_query(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn times_are_rfc3339_from_unix_milliseconds() {
        let at = from_unix_ms(1_795_852_800_123).unwrap();
        assert_eq!(
            at.format(&time::format_description::well_known::Rfc3339)
                .unwrap(),
            "2026-11-28T08:00:00.123Z"
        );
        assert_eq!(unix_ms(at), 1_795_852_800_123);
        assert_eq!(from_unix_ms(i64::MAX), None);
    }

    #[test]
    fn pages_are_the_contracts_with_a_cursor_when_full() {
        let db = testing::database();
        testing::add_user(&db, "u1", "u1@example.com");
        let ids = [
            "0192f1a4-0000-7d3e-8f00-000000000001",
            "0192f1a4-0000-7d3e-8f00-000000000002",
        ];
        for (i, id) in ids.iter().enumerate() {
            notifications::insert(&db, &stored(id, 1_000 + i as i64)).unwrap();
        }
        let reply = list(&db, "u1", "limit=1").unwrap();
        let page: NotificationPage = serde_json::from_slice(&reply.body).unwrap();
        assert_eq!(page.notifications.len(), 1);
        assert_eq!(page.notifications[0].id, ids[1]);
        assert_eq!(page.notifications[0].status, Status::Done);
        assert!(!page.notifications[0].read);
        let cursor = page.next_cursor.unwrap();
        assert_eq!(cursor, format!("1001.{}", ids[1]));

        let reply = list(&db, "u1", &format!("limit=1&cursor={cursor}")).unwrap();
        let page: NotificationPage = serde_json::from_slice(&reply.body).unwrap();
        assert_eq!(page.notifications[0].id, ids[0]);

        let now = OffsetDateTime::now_utc();
        assert_eq!(mark_read(&db, "u1", ids[0], now).unwrap().status, 204);
        assert_eq!(
            mark_read(&db, "u2", ids[1], now),
            Err(ApiError::NotificationNotFound)
        );
        let reply = list(&db, "u1", "unread=true").unwrap();
        let page: NotificationPage = serde_json::from_slice(&reply.body).unwrap();
        assert_eq!(page.notifications.len(), 1);
        assert_eq!(page.next_cursor, None);
    }

    #[test]
    fn a_corrupt_row_is_an_internal_error_not_a_guess() {
        let mut bad = stored("n", 0);
        bad.status = "exploded".into();
        assert!(matches!(page(&[bad], 20), Err(ApiError::Internal(_))));
    }
}
