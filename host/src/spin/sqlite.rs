//! `fermyon:spin/sqlite`: the embedded default database, one file per label in the data
//! directory, shared by every instance through a connection pool.

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::SqlSafeStr as _;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
};
// Statements are the guest's own, parameterised by the guest: the Spin interface passes them
// through as written, the way Spin's own host does.
use sqlx::{AssertSqlSafe, Column, Executor, Row, Statement, TypeInfo, ValueRef};
use wasmtime::component::Resource;

use super::sqlite_wit::{Error, Host, HostConnection, QueryResult, RowResult, Value};
use crate::state::HostState;

/// An open database, as the guest holds it.
pub struct SqliteConnection {
    pool: SqlitePool,
}

/// The file that backs a database label, as Spin lays them out.
pub fn database_file(data_dir: &Path, label: &str) -> std::path::PathBuf {
    if label == "default" {
        data_dir.join("sqlite_db.db")
    } else {
        data_dir.join(format!("sqlite_{label}.db"))
    }
}

/// Opens (lazily) a pool for every label in `labels`.
pub fn open_pools<'a>(
    data_dir: &Path,
    labels: impl IntoIterator<Item = &'a String>,
) -> anyhow::Result<BTreeMap<String, SqlitePool>> {
    let mut pools = BTreeMap::new();
    for label in labels {
        if pools.contains_key(label) {
            continue;
        }
        let path = database_file(data_dir, label);
        let options = SqliteConnectOptions::from_str("sqlite:")?
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_lazy_with(options);
        pools.insert(label.clone(), pool);
    }
    Ok(pools)
}

impl Host for HostState {}

impl HostConnection for HostState {
    async fn open(
        &mut self,
        database: String,
    ) -> wasmtime::Result<Result<Resource<SqliteConnection>, Error>> {
        let Some(pool) = self.component.sqlite.get(&database) else {
            // Spin does not tell a component whether a database it may not use exists.
            return Ok(Err(Error::AccessDenied));
        };
        let connection = SqliteConnection { pool: pool.clone() };
        Ok(Ok(self.table.push(connection)?))
    }

    async fn execute(
        &mut self,
        connection: Resource<SqliteConnection>,
        statement: String,
        parameters: Vec<Value>,
    ) -> wasmtime::Result<Result<QueryResult, Error>> {
        let pool = self.table.get(&connection)?.pool.clone();
        Ok(execute(&pool, &statement, parameters)
            .await
            .map_err(|err| Error::Io(err.to_string())))
    }

    async fn drop(&mut self, connection: Resource<SqliteConnection>) -> wasmtime::Result<()> {
        self.table.delete(connection)?;
        Ok(())
    }
}

async fn execute(
    pool: &SqlitePool,
    statement: &str,
    parameters: Vec<Value>,
) -> Result<QueryResult, sqlx::Error> {
    let mut connection = pool.acquire().await?;
    // Preparing first gives the column names even when no row comes back; the connection
    // caches the prepared statement, so the query below does not prepare it again.
    let prepared = connection
        .prepare(AssertSqlSafe(statement).into_sql_str())
        .await?;
    let columns = prepared
        .columns()
        .iter()
        .map(|c| c.name().to_owned())
        .collect();
    let mut query = prepared.query();
    for parameter in parameters {
        query = match parameter {
            Value::Integer(v) => query.bind(v),
            Value::Real(v) => query.bind(v),
            Value::Text(v) => query.bind(v),
            Value::Blob(v) => query.bind(v),
            Value::Null => query.bind(None::<i64>),
        };
    }
    let rows = query.fetch_all(&mut *connection).await?;
    let rows = rows.iter().map(row_result).collect::<Result<_, _>>()?;
    Ok(QueryResult { columns, rows })
}

fn row_result(row: &SqliteRow) -> Result<RowResult, sqlx::Error> {
    let mut values = Vec::with_capacity(row.len());
    for index in 0..row.len() {
        let raw = row.try_get_raw(index)?;
        // SQLite is dynamically typed: read each value by its own storage class.
        let value = if raw.is_null() {
            Value::Null
        } else {
            match raw.type_info().name() {
                "INTEGER" | "BOOLEAN" => Value::Integer(row.try_get_unchecked(index)?),
                "REAL" => Value::Real(row.try_get_unchecked(index)?),
                "BLOB" => Value::Blob(row.try_get_unchecked(index)?),
                _ => Value::Text(row.try_get_unchecked(index)?),
            }
        };
        values.push(value);
    }
    Ok(RowResult { values })
}
