//! A real SQLite database in memory with the repository's migrations applied, for native
//! tests of the code built on [`Db`] (feature `testing`).

use std::sync::Mutex;

use crate::{Db, DbError, Param, Value};

/// An in-memory SQLite database behind [`Db`].
pub struct Sqlite(Mutex<rusqlite::Connection>);

impl Sqlite {
    /// A fresh database with every migration of `migrations/sqlite` applied in order.
    pub fn migrated() -> Sqlite {
        let connection = rusqlite::Connection::open_in_memory().expect("an in-memory database");
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../migrations/sqlite");
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .expect("the migrations directory")
            .map(|entry| entry.expect("a directory entry").path())
            .collect();
        files.sort();
        for file in files {
            let sql = std::fs::read_to_string(&file).expect("a migration");
            connection
                .execute_batch(&sql)
                .unwrap_or_else(|err| panic!("{}: {err}", file.display()));
        }
        Sqlite(Mutex::new(connection))
    }
}

fn error(err: rusqlite::Error) -> DbError {
    let message = err.to_string();
    DbError {
        unique_violation: message.contains("UNIQUE constraint failed"),
        message,
    }
}

fn params(params: &[Param]) -> Vec<rusqlite::types::Value> {
    params
        .iter()
        .map(|param| match param {
            Param::Int(v) => rusqlite::types::Value::Integer(*v),
            Param::Text(v) => rusqlite::types::Value::Text(v.clone()),
            Param::Null => rusqlite::types::Value::Null,
        })
        .collect()
}

impl Db for Sqlite {
    fn execute(&self, sql: &str, values: &[Param]) -> Result<(), DbError> {
        let connection = self.0.lock().expect("the test database lock");
        connection
            .execute(sql, rusqlite::params_from_iter(params(values)))
            .map(|_| ())
            .map_err(error)
    }

    fn query(&self, sql: &str, values: &[Param]) -> Result<Vec<Vec<Value>>, DbError> {
        let connection = self.0.lock().expect("the test database lock");
        let mut statement = connection.prepare(sql).map_err(error)?;
        let columns = statement.column_count();
        let rows = statement
            .query_map(rusqlite::params_from_iter(params(values)), |row| {
                (0..columns)
                    .map(|i| {
                        Ok(match row.get::<_, rusqlite::types::Value>(i)? {
                            rusqlite::types::Value::Integer(v) => Value::Int(v),
                            rusqlite::types::Value::Text(v) => Value::Text(v),
                            rusqlite::types::Value::Real(v) => Value::Text(v.to_string()),
                            rusqlite::types::Value::Blob(v) => {
                                Value::Text(String::from_utf8_lossy(&v).into_owned())
                            }
                            rusqlite::types::Value::Null => Value::Null,
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .map_err(error)?;
        rows.collect::<Result<_, _>>().map_err(error)
    }
}
