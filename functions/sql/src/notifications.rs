//! Notifications, webhooks and deliveries (`migrations/*/..._notifications.sql`): the notifier
//! writes them, the gateway reads them and manages webhooks. Statements only, in the SQL both
//! SQLite and MySQL speak.

use crate::{Db, DbError, Param, Value};

/// One notification: a job finished or failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub id: String,
    pub user_id: String,
    pub event_id: String,
    pub job_id: String,
    /// `done` or `failed`.
    pub status: String,
    /// The file's name.
    pub title: String,
    pub message: String,
    /// Where the MP3 is (`/v1/jobs/{id}/audio`), when done.
    pub audio_url: Option<String>,
    /// Why it failed, when failed.
    pub error_code: Option<String>,
    /// Unix milliseconds.
    pub created_at: i64,
    pub read_at: Option<i64>,
}

impl Notification {
    /// The notification as users see it (`GET /v1/notifications`, the `notification.created`
    /// event); `Err` names what in the row is not as written.
    pub fn to_public(&self) -> Result<mp3conv_contract::notification::Notification, String> {
        use mp3conv_contract::job::Status;
        use serde::Deserialize as _;
        use serde::de::IntoDeserializer as _;
        let corrupt = |what: &str| format!("notification {}: bad {what}", self.id);
        let status = Status::deserialize(self.status.as_str().into_deserializer())
            .map_err(|_: serde::de::value::Error| corrupt("status"))?;
        let created_at = time::OffsetDateTime::from_unix_timestamp_nanos(
            i128::from(self.created_at) * 1_000_000,
        )
        .map_err(|_| corrupt("time"))?;
        Ok(mp3conv_contract::notification::Notification {
            id: self.id.clone(),
            job_id: self.job_id.parse().map_err(|_| corrupt("job id"))?,
            status,
            title: self.title.clone(),
            message: self.message.clone(),
            audio_url: self.audio_url.clone(),
            error_code: self.error_code.clone(),
            created_at,
            read: self.read_at.is_some(),
        })
    }
}

/// A user's webhook endpoint and its signing secret (`whsec_...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    pub user_id: String,
    pub url: String,
    pub secret: String,
    pub created_at: i64,
}

/// How a channel's delivery of a notification ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// `delivered` or `failed` (given up after its attempts).
    pub state: String,
    pub attempts: i64,
    pub last_error: Option<String>,
}

const COLUMNS: &str = "id, user_id, event_id, job_id, status, title, message, audio_url, \
                       error_code, created_at, read_at";

fn text(v: &str) -> Param {
    Param::Text(v.to_owned())
}

fn optional(v: &Option<String>) -> Param {
    v.as_deref().map_or(Param::Null, text)
}

fn corrupt(what: &str) -> DbError {
    DbError {
        unique_violation: false,
        message: format!("unexpected row shape: {what}"),
    }
}

fn notification(row: &[Value]) -> Result<Notification, DbError> {
    let text_at = |i: usize| {
        row.get(i)
            .and_then(Value::as_text)
            .map(str::to_owned)
            .ok_or_else(|| corrupt("notification text column"))
    };
    let optional_at = |i: usize| row.get(i).and_then(Value::as_text).map(str::to_owned);
    Ok(Notification {
        id: text_at(0)?,
        user_id: text_at(1)?,
        event_id: text_at(2)?,
        job_id: text_at(3)?,
        status: text_at(4)?,
        title: text_at(5)?,
        message: text_at(6)?,
        audio_url: optional_at(7),
        error_code: optional_at(8),
        created_at: row
            .get(9)
            .and_then(Value::as_int)
            .ok_or_else(|| corrupt("created_at"))?,
        read_at: row.get(10).and_then(Value::as_int),
    })
}

/// Records a notification. `Ok(false)` when one for the same event, or for the same job and
/// outcome, is already there.
pub fn insert(db: &dyn Db, n: &Notification) -> Result<bool, DbError> {
    let result = db.execute(
        &format!("INSERT INTO notifications ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"),
        &[
            text(&n.id),
            text(&n.user_id),
            text(&n.event_id),
            text(&n.job_id),
            text(&n.status),
            text(&n.title),
            text(&n.message),
            optional(&n.audio_url),
            optional(&n.error_code),
            Param::Int(n.created_at),
            n.read_at.map_or(Param::Null, Param::Int),
        ],
    );
    match result {
        Ok(()) => Ok(true),
        Err(err) if err.unique_violation => Ok(false),
        Err(err) => Err(err),
    }
}

/// The notification recorded for an event, or for the job and outcome it is about.
pub fn find_existing(
    db: &dyn Db,
    event_id: &str,
    job_id: &str,
    status: &str,
) -> Result<Option<Notification>, DbError> {
    let rows = db.query(
        &format!(
            "SELECT {COLUMNS} FROM notifications WHERE event_id = ? OR (job_id = ? AND status = ?)"
        ),
        &[text(event_id), text(job_id), text(status)],
    )?;
    rows.first().map(|row| notification(row)).transpose()
}

/// A page of a user's notifications, newest first, optionally only the unread ones, before
/// the cursor `(created_at, id)` of the previous page's last item.
pub fn list(
    db: &dyn Db,
    user_id: &str,
    unread_only: bool,
    limit: u32,
    before: Option<(i64, &str)>,
) -> Result<Vec<Notification>, DbError> {
    let mut sql = format!("SELECT {COLUMNS} FROM notifications WHERE user_id = ?");
    let mut params = vec![text(user_id)];
    if unread_only {
        sql.push_str(" AND read_at IS NULL");
    }
    if let Some((created_at, id)) = before {
        sql.push_str(" AND (created_at < ? OR (created_at = ? AND id < ?))");
        params.extend([Param::Int(created_at), Param::Int(created_at), text(id)]);
    }
    sql.push_str(" ORDER BY created_at DESC, id DESC LIMIT ?");
    params.push(Param::Int(i64::from(limit)));
    db.query(&sql, &params)?
        .iter()
        .map(|row| notification(row))
        .collect()
}

/// Marks a user's notification read (keeping the first time). `false` when the user has no
/// such notification.
pub fn mark_read(db: &dyn Db, user_id: &str, id: &str, now_ms: i64) -> Result<bool, DbError> {
    let owned = db.query(
        "SELECT 1 FROM notifications WHERE id = ? AND user_id = ?",
        &[text(id), text(user_id)],
    )?;
    if owned.is_empty() {
        return Ok(false);
    }
    db.execute(
        "UPDATE notifications SET read_at = ? WHERE id = ? AND user_id = ? AND read_at IS NULL",
        &[Param::Int(now_ms), text(id), text(user_id)],
    )?;
    Ok(true)
}

pub fn webhook(db: &dyn Db, user_id: &str) -> Result<Option<Webhook>, DbError> {
    let rows = db.query(
        "SELECT user_id, url, secret, created_at FROM webhooks WHERE user_id = ?",
        &[text(user_id)],
    )?;
    let Some(row) = rows.first() else {
        return Ok(None);
    };
    let at = |i: usize| {
        row.get(i)
            .and_then(Value::as_text)
            .map(str::to_owned)
            .ok_or_else(|| corrupt("webhook"))
    };
    Ok(Some(Webhook {
        user_id: at(0)?,
        url: at(1)?,
        secret: at(2)?,
        created_at: row
            .get(3)
            .and_then(Value::as_int)
            .ok_or_else(|| corrupt("webhook created_at"))?,
    }))
}

/// Sets (or replaces) a user's webhook.
pub fn put_webhook(db: &dyn Db, hook: &Webhook) -> Result<(), DbError> {
    db.execute(
        "DELETE FROM webhooks WHERE user_id = ?",
        &[text(&hook.user_id)],
    )?;
    db.execute(
        "INSERT INTO webhooks (user_id, url, secret, created_at) VALUES (?, ?, ?, ?)",
        &[
            text(&hook.user_id),
            text(&hook.url),
            text(&hook.secret),
            Param::Int(hook.created_at),
        ],
    )
}

/// Removes a user's webhook; `false` when there was none.
pub fn delete_webhook(db: &dyn Db, user_id: &str) -> Result<bool, DbError> {
    let existed = webhook(db, user_id)?.is_some();
    if existed {
        db.execute("DELETE FROM webhooks WHERE user_id = ?", &[text(user_id)])?;
    }
    Ok(existed)
}

/// How a channel's delivery of a notification ended, if it has.
pub fn delivery(
    db: &dyn Db,
    notification_id: &str,
    channel: &str,
) -> Result<Option<Delivery>, DbError> {
    let rows = db.query(
        "SELECT state, attempts, last_error FROM deliveries WHERE notification_id = ? AND channel = ?",
        &[text(notification_id), text(channel)],
    )?;
    Ok(rows.first().map(|row| Delivery {
        state: row
            .first()
            .and_then(Value::as_text)
            .unwrap_or_default()
            .to_owned(),
        attempts: row.get(1).and_then(Value::as_int).unwrap_or_default(),
        last_error: row.get(2).and_then(Value::as_text).map(str::to_owned),
    }))
}

/// Records how a channel's delivery ended.
pub fn record_delivery(
    db: &dyn Db,
    notification_id: &str,
    channel: &str,
    delivery: &Delivery,
    now_ms: i64,
) -> Result<(), DbError> {
    db.execute(
        "DELETE FROM deliveries WHERE notification_id = ? AND channel = ?",
        &[text(notification_id), text(channel)],
    )?;
    db.execute(
        "INSERT INTO deliveries (notification_id, channel, state, attempts, last_error, updated_at) \
         VALUES (?, ?, ?, ?, ?, ?)",
        &[
            text(notification_id),
            text(channel),
            text(&delivery.state),
            Param::Int(delivery.attempts),
            optional(&delivery.last_error),
            Param::Int(now_ms),
        ],
    )
}

/// A user's email address, if the account still exists.
pub fn user_email(db: &dyn Db, user_id: &str) -> Result<Option<String>, DbError> {
    let rows = db.query("SELECT email FROM users WHERE id = ?", &[text(user_id)])?;
    Ok(rows
        .first()
        .and_then(|row| row.first())
        .and_then(Value::as_text)
        .map(str::to_owned))
}

/// Removes everything notification-related of a user (their account is being deleted).
pub fn forget_user(db: &dyn Db, user_id: &str) -> Result<(), DbError> {
    db.execute(
        "DELETE FROM deliveries WHERE notification_id IN (SELECT id FROM notifications WHERE user_id = ?)",
        &[text(user_id)],
    )?;
    db.execute(
        "DELETE FROM notifications WHERE user_id = ?",
        &[text(user_id)],
    )?;
    db.execute("DELETE FROM webhooks WHERE user_id = ?", &[text(user_id)])
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::testing::Sqlite;

    pub(crate) fn sample(id: &str, user: &str, event: &str, job: &str, at: i64) -> Notification {
        Notification {
            id: id.into(),
            user_id: user.into(),
            event_id: event.into(),
            job_id: job.into(),
            status: "done".into(),
            title: "clip.mp4".into(),
            message: "ready".into(),
            audio_url: Some(format!("/v1/jobs/{job}/audio")),
            error_code: None,
            created_at: at,
            read_at: None,
        }
    }

    #[test]
    fn one_notification_per_event_and_per_job_outcome() {
        let db = Sqlite::migrated();
        assert!(insert(&db, &sample("n1", "u1", "e1", "j1", 10)).unwrap());
        // The same event again, and another event about the same outcome: both refused.
        assert!(!insert(&db, &sample("n2", "u1", "e1", "j2", 11)).unwrap());
        assert!(!insert(&db, &sample("n3", "u1", "e9", "j1", 12)).unwrap());
        let found = find_existing(&db, "e9", "j1", "done").unwrap().unwrap();
        assert_eq!(found.id, "n1");
        assert!(find_existing(&db, "e7", "j7", "done").unwrap().is_none());
    }

    #[test]
    fn pages_newest_first_and_unread() {
        let db = Sqlite::migrated();
        for (i, at) in [(1, 100), (2, 200), (3, 300)] {
            insert(
                &db,
                &sample(
                    &format!("n{i}"),
                    "u1",
                    &format!("e{i}"),
                    &format!("j{i}"),
                    at,
                ),
            )
            .unwrap();
        }
        insert(&db, &sample("other", "u2", "e9", "j9", 400)).unwrap();
        let page = list(&db, "u1", false, 2, None).unwrap();
        assert_eq!(
            page.iter().map(|n| n.id.as_str()).collect::<Vec<_>>(),
            ["n3", "n2"]
        );
        let rest = list(&db, "u1", false, 2, Some((200, "n2"))).unwrap();
        assert_eq!(
            rest.iter().map(|n| n.id.as_str()).collect::<Vec<_>>(),
            ["n1"]
        );

        assert!(mark_read(&db, "u1", "n3", 999).unwrap());
        assert!(mark_read(&db, "u1", "n3", 1500).unwrap());
        assert!(!mark_read(&db, "u2", "n1", 999).unwrap(), "not theirs");
        let unread = list(&db, "u1", true, 10, None).unwrap();
        assert_eq!(
            unread.iter().map(|n| n.id.as_str()).collect::<Vec<_>>(),
            ["n2", "n1"]
        );
        let read = list(&db, "u1", false, 1, None).unwrap();
        assert_eq!(read[0].read_at, Some(999), "the first read time is kept");
    }

    #[test]
    fn webhooks_and_deliveries() {
        let db = Sqlite::migrated();
        assert_eq!(webhook(&db, "u1").unwrap(), None);
        let hook = Webhook {
            user_id: "u1".into(),
            url: "https://example.com/hook".into(),
            secret: "whsec_abc".into(),
            created_at: 5,
        };
        put_webhook(&db, &hook).unwrap();
        let replaced = Webhook {
            url: "https://example.com/other".into(),
            ..hook.clone()
        };
        put_webhook(&db, &replaced).unwrap();
        assert_eq!(webhook(&db, "u1").unwrap(), Some(replaced));
        assert!(delete_webhook(&db, "u1").unwrap());
        assert!(!delete_webhook(&db, "u1").unwrap());

        assert_eq!(delivery(&db, "n1", "webhook").unwrap(), None);
        let failed = Delivery {
            state: "failed".into(),
            attempts: 3,
            last_error: Some("status 500".into()),
        };
        record_delivery(&db, "n1", "webhook", &failed, 9).unwrap();
        assert_eq!(delivery(&db, "n1", "webhook").unwrap(), Some(failed));
    }

    #[test]
    fn forgetting_a_user() {
        let db = Sqlite::migrated();
        insert(&db, &sample("n1", "u1", "e1", "j1", 1)).unwrap();
        insert(&db, &sample("n2", "u2", "e2", "j2", 1)).unwrap();
        forget_user(&db, "u1").unwrap();
        assert!(list(&db, "u1", false, 10, None).unwrap().is_empty());
        assert_eq!(list(&db, "u2", false, 10, None).unwrap().len(), 1);
    }
}
