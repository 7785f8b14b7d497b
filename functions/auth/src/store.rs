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

/// The outcome of [`UserStore::reserve_attempt`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    Reserved,
    /// Every attempt of the window is used; `oldest` is when the oldest was made.
    Exhausted {
        oldest: Option<i64>,
    },
}

/// What the API needs from storage.
pub trait UserStore {
    fn find_by_email(&self, email_key: &str) -> Result<Option<User>, StoreError>;
    fn insert(&self, user: &User) -> Result<(), StoreError>;
    /// Reserves one of the `max` login attempts `email_key` has per window, before the
    /// password is checked: one atomic statement per slot, so parallel logins cannot overdraw.
    /// Attempts at or before `expired_at_or_before_ms` no longer count. A reservation stays as
    /// the record of a failed attempt; a successful login clears them all.
    fn reserve_attempt(
        &self,
        email_key: &str,
        now_ms: i64,
        expired_at_or_before_ms: i64,
        max: u32,
    ) -> Result<Reservation, StoreError>;
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

    fn reserve_attempt(
        &self,
        email_key: &str,
        now_ms: i64,
        expired_at_or_before_ms: i64,
        max: u32,
    ) -> Result<Reservation, StoreError> {
        // The primary key (email_key, slot) makes each INSERT claim its slot or fail alone:
        // atomic on SQLite and InnoDB alike, with no lock held between statements.
        let claim = |slot: u32| -> Result<bool, StoreError> {
            match self.db.execute(
                "INSERT INTO login_attempts (email_key, slot, attempted_at) VALUES (?, ?, ?)",
                &[
                    Param::Text(email_key.to_owned()),
                    Param::Int(i64::from(slot)),
                    Param::Int(now_ms),
                ],
            ) {
                Ok(()) => Ok(true),
                Err(err) if err.unique_violation => Ok(false),
                Err(err) => Err(err.into()),
            }
        };
        for round in 0..2 {
            for slot in 0..max {
                if claim(slot)? {
                    return Ok(Reservation::Reserved);
                }
            }
            if round == 0 {
                // Every slot is taken: free those whose attempt left the window, then again.
                self.db.execute(
                    "DELETE FROM login_attempts WHERE email_key = ? AND attempted_at <= ?",
                    &[
                        Param::Text(email_key.to_owned()),
                        Param::Int(expired_at_or_before_ms),
                    ],
                )?;
            }
        }
        let rows = self.db.query(
            "SELECT MIN(attempted_at) FROM login_attempts WHERE email_key = ?",
            &[Param::Text(email_key.to_owned())],
        )?;
        let oldest = match rows.first().and_then(|row| row.first()) {
            None | Some(Value::Null) => None,
            Some(value) => Some(int(value)?),
        };
        Ok(Reservation::Exhausted { oldest })
    }

    fn clear_failures(&self, email_key: &str) -> Result<(), StoreError> {
        self.db.execute(
            "DELETE FROM login_attempts WHERE email_key = ?",
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

    fn reserve_attempt(
        &self,
        email_key: &str,
        now_ms: i64,
        expired_at_or_before_ms: i64,
        max: u32,
    ) -> Result<Reservation, StoreError> {
        let mut failures = self.failures.lock().unwrap();
        failures.retain(|(key, at)| !(key == email_key && *at <= expired_at_or_before_ms));
        let mine: Vec<i64> = failures
            .iter()
            .filter(|(key, _)| key == email_key)
            .map(|(_, at)| *at)
            .collect();
        if mine.len() >= max as usize {
            return Ok(Reservation::Exhausted {
                oldest: mine.iter().min().copied(),
            });
        }
        failures.push((email_key.to_owned(), now_ms));
        Ok(Reservation::Reserved)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// On the real schema: five slots per email, each claimed once; a full window refuses
    /// with its oldest attempt; slots free up once their attempt has left the window.
    #[test]
    fn attempts_are_reserved_in_slots_on_sqlite() {
        let store = SqlStore::new(mp3conv_sql::testing::Sqlite::migrated());
        for at in 1..=5 {
            assert_eq!(
                store.reserve_attempt("a@x.io", at * 10, 0, 5),
                Ok(Reservation::Reserved)
            );
        }
        assert_eq!(
            store.reserve_attempt("a@x.io", 60, 0, 5),
            Ok(Reservation::Exhausted { oldest: Some(10) })
        );
        // Another email has its own slots.
        assert_eq!(
            store.reserve_attempt("b@x.io", 60, 0, 5),
            Ok(Reservation::Reserved)
        );
        // Attempts at or before 20 have left the window: two slots are free again.
        assert_eq!(
            store.reserve_attempt("a@x.io", 70, 20, 5),
            Ok(Reservation::Reserved)
        );
        assert_eq!(
            store.reserve_attempt("a@x.io", 71, 20, 5),
            Ok(Reservation::Reserved)
        );
        assert_eq!(
            store.reserve_attempt("a@x.io", 72, 20, 5),
            Ok(Reservation::Exhausted { oldest: Some(30) })
        );
        store.clear_failures("a@x.io").unwrap();
        assert_eq!(
            store.reserve_attempt("a@x.io", 80, 20, 5),
            Ok(Reservation::Reserved)
        );
    }
}
