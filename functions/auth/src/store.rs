//! Users and failed logins. [`UserStore`] is what the API needs; [`SqlStore`] implements it
//! over any [`Db`] (Spin's SQLite or MySQL in the component) with parameterised statements only,
//! written in the SQL both dialects share.

use std::sync::Mutex;

/// A user as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: String,
    /// As the user wrote it (trimmed).
    pub email: String,
    /// Lowercased: what uniqueness and lookups use.
    pub email_key: String,
    pub password_hash: String,
    /// Unix seconds.
    pub created_at: i64,
}

/// A storage failure; the message is for the log, never for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The email is taken (a unique-key violation).
    Duplicate,
    Other(String),
}

/// What the API needs from storage.
pub trait UserStore {
    fn find_by_email(&self, email_key: &str) -> Result<Option<User>, StoreError>;
    fn insert(&self, user: &User) -> Result<(), StoreError>;
    /// Failed logins for `email_key` later than `after_ms`: how many, and the oldest.
    fn failures_after(
        &self,
        email_key: &str,
        after_ms: i64,
    ) -> Result<(u32, Option<i64>), StoreError>;
    /// Records a failed login, forgetting those older than `forget_before_ms`.
    fn record_failure(
        &self,
        email_key: &str,
        at_ms: i64,
        forget_before_ms: i64,
    ) -> Result<(), StoreError>;
    fn clear_failures(&self, email_key: &str) -> Result<(), StoreError>;
    /// Deletes the user with this id; `false` when there was none.
    fn delete_user(&self, id: &str) -> Result<bool, StoreError>;
}

pub use mp3conv_sql::{Db, DbError, Param, Value};

impl From<DbError> for StoreError {
    fn from(err: DbError) -> StoreError {
        if err.unique_violation {
            StoreError::Duplicate
        } else {
            StoreError::Other(err.message)
        }
    }
}

/// [`UserStore`] over SQL.
pub struct SqlStore<D> {
    db: D,
}

impl<D: Db> SqlStore<D> {
    pub fn new(db: D) -> SqlStore<D> {
        SqlStore { db }
    }
}

fn text(value: &Value) -> Result<String, StoreError> {
    match value {
        Value::Text(text) => Ok(text.clone()),
        other => Err(StoreError::Other(format!("expected text, found {other:?}"))),
    }
}

fn int(value: &Value) -> Result<i64, StoreError> {
    match value {
        Value::Int(int) => Ok(*int),
        // MySQL sends DECIMAL (e.g. from aggregates) as text.
        Value::Text(text) => text
            .parse()
            .map_err(|_| StoreError::Other(format!("expected a number, found {text:?}"))),
        Value::Null => Err(StoreError::Other("expected a number, found NULL".into())),
    }
}

impl<D: Db> UserStore for SqlStore<D> {
    fn find_by_email(&self, email_key: &str) -> Result<Option<User>, StoreError> {
        let rows = self.db.query(
            "SELECT id, email, email_key, password_hash, created_at FROM users WHERE email_key = ?",
            &[Param::Text(email_key.to_owned())],
        )?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        if row.len() != 5 {
            return Err(StoreError::Other(format!(
                "expected 5 columns, found {}",
                row.len()
            )));
        }
        Ok(Some(User {
            id: text(&row[0])?,
            email: text(&row[1])?,
            email_key: text(&row[2])?,
            password_hash: text(&row[3])?,
            created_at: int(&row[4])?,
        }))
    }

    fn insert(&self, user: &User) -> Result<(), StoreError> {
        self.db.execute(
            "INSERT INTO users (id, email, email_key, password_hash, created_at) VALUES (?, ?, ?, ?, ?)",
            &[
                Param::Text(user.id.clone()),
                Param::Text(user.email.clone()),
                Param::Text(user.email_key.clone()),
                Param::Text(user.password_hash.clone()),
                Param::Int(user.created_at),
            ],
        )?;
        Ok(())
    }

    fn failures_after(
        &self,
        email_key: &str,
        after_ms: i64,
    ) -> Result<(u32, Option<i64>), StoreError> {
        let rows = self.db.query(
            "SELECT COUNT(*), MIN(failed_at) FROM login_failures WHERE email_key = ? AND failed_at > ?",
            &[Param::Text(email_key.to_owned()), Param::Int(after_ms)],
        )?;
        let row = rows
            .first()
            .ok_or_else(|| StoreError::Other("COUNT returned no row".into()))?;
        let count = u32::try_from(int(&row[0])?).unwrap_or(u32::MAX);
        let oldest = match &row[1] {
            Value::Null => None,
            value => Some(int(value)?),
        };
        Ok((count, oldest))
    }

    fn record_failure(
        &self,
        email_key: &str,
        at_ms: i64,
        forget_before_ms: i64,
    ) -> Result<(), StoreError> {
        self.db.execute(
            "DELETE FROM login_failures WHERE email_key = ? AND failed_at < ?",
            &[
                Param::Text(email_key.to_owned()),
                Param::Int(forget_before_ms),
            ],
        )?;
        self.db.execute(
            "INSERT INTO login_failures (email_key, failed_at) VALUES (?, ?)",
            &[Param::Text(email_key.to_owned()), Param::Int(at_ms)],
        )?;
        Ok(())
    }

    fn clear_failures(&self, email_key: &str) -> Result<(), StoreError> {
        self.db.execute(
            "DELETE FROM login_failures WHERE email_key = ?",
            &[Param::Text(email_key.to_owned())],
        )?;
        Ok(())
    }

    fn delete_user(&self, id: &str) -> Result<bool, StoreError> {
        let id = Param::Text(id.to_owned());
        let rows = self.db.query(
            "SELECT email_key FROM users WHERE id = ?",
            std::slice::from_ref(&id),
        )?;
        let Some(Value::Text(email_key)) = rows.first().and_then(|row| row.first()) else {
            return Ok(false);
        };
        self.clear_failures(email_key)?;
        self.db.execute("DELETE FROM users WHERE id = ?", &[id])?;
        Ok(true)
    }
}

/// An in-memory [`UserStore`] for the API's unit tests.
#[derive(Default)]
pub struct MemoryStore {
    users: Mutex<Vec<User>>,
    failures: Mutex<Vec<(String, i64)>>,
}

impl UserStore for MemoryStore {
    fn find_by_email(&self, email_key: &str) -> Result<Option<User>, StoreError> {
        Ok(self
            .users
            .lock()
            .unwrap()
            .iter()
            .find(|u| u.email_key == email_key)
            .cloned())
    }

    fn insert(&self, user: &User) -> Result<(), StoreError> {
        let mut users = self.users.lock().unwrap();
        if users.iter().any(|u| u.email_key == user.email_key) {
            return Err(StoreError::Duplicate);
        }
        users.push(user.clone());
        Ok(())
    }

    fn failures_after(
        &self,
        email_key: &str,
        after_ms: i64,
    ) -> Result<(u32, Option<i64>), StoreError> {
        let failures = self.failures.lock().unwrap();
        let matching: Vec<i64> = failures
            .iter()
            .filter(|(key, at)| key == email_key && *at > after_ms)
            .map(|(_, at)| *at)
            .collect();
        Ok((matching.len() as u32, matching.iter().min().copied()))
    }

    fn record_failure(
        &self,
        email_key: &str,
        at_ms: i64,
        forget_before_ms: i64,
    ) -> Result<(), StoreError> {
        let mut failures = self.failures.lock().unwrap();
        failures.retain(|(key, at)| !(key == email_key && *at < forget_before_ms));
        failures.push((email_key.to_owned(), at_ms));
        Ok(())
    }

    fn clear_failures(&self, email_key: &str) -> Result<(), StoreError> {
        self.failures
            .lock()
            .unwrap()
            .retain(|(key, _)| key != email_key);
        Ok(())
    }

    fn delete_user(&self, id: &str) -> Result<bool, StoreError> {
        let mut users = self.users.lock().unwrap();
        let before = users.len();
        users.retain(|u| u.id != id);
        Ok(users.len() < before)
    }
}
