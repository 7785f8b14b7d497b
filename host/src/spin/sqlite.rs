//! `fermyon:spin/sqlite`: the embedded default database, one file per label in the data
//! directory, shared by every instance through a small pool of connections.
//!
//! A statement runs on the thread that asked for it, the guest's own: the queries the
//! functions make are point lookups of tens of microseconds, and handing each to another
//! thread and back cost more than the query (two thread switches per statement, several
//! statements per request). That first attempt may not wait: it gives up at once on a locked
//! database and after [`INLINE_STEPS`] steps of SQLite's virtual machine, and the statement
//! (rolled back whole by SQLite when it gave up) then runs again on the blocking pool, where
//! it may wait up to [`BUSY_TIMEOUT`] for the lock.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::{Connection, ErrorCode, OpenFlags};
use tokio::sync::Semaphore;
use wasmtime::component::Resource;

use super::sqlite_wit::{Error, Host, HostConnection, QueryResult, RowResult, Value};
use crate::state::HostState;

/// Connections per database file.
const MAX_CONNECTIONS: usize = 8;
/// How long a statement on the blocking pool waits for another writer's lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// SQLite virtual-machine steps (checked every [`STEP_CHECK`]) a statement may take on the
/// guest's thread before it is handed to the blocking pool: about a millisecond.
const INLINE_STEPS: u32 = 100_000;
const STEP_CHECK: i32 = 1_000;

/// A database file and its idle connections.
pub struct SqliteDb {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    permits: Semaphore,
}

/// An open database, as the guest holds it.
pub struct SqliteConnection {
    db: Arc<SqliteDb>,
}

/// The file that backs a database label, as Spin lays them out.
pub fn database_file(data_dir: &Path, label: &str) -> PathBuf {
    if label == "default" {
        data_dir.join("sqlite_db.db")
    } else {
        data_dir.join(format!("sqlite_{label}.db"))
    }
}

/// The databases in `labels`; files are created and opened on first use.
pub fn open_pools<'a>(
    data_dir: &Path,
    labels: impl IntoIterator<Item = &'a String>,
) -> anyhow::Result<BTreeMap<String, Arc<SqliteDb>>> {
    let mut pools = BTreeMap::new();
    for label in labels {
        pools.entry(label.clone()).or_insert_with(|| {
            Arc::new(SqliteDb {
                path: database_file(data_dir, label),
                idle: Mutex::new(Vec::new()),
                permits: Semaphore::new(MAX_CONNECTIONS),
            })
        });
    }
    Ok(pools)
}

impl SqliteDb {
    /// Closes the idle connections (at shutdown).
    pub fn close(&self) {
        self.idle.lock().expect("sqlite pool lock").clear();
    }

    fn connection(&self) -> rusqlite::Result<Connection> {
        if let Some(connection) = self.idle.lock().expect("sqlite pool lock").pop() {
            return Ok(connection);
        }
        let connection = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        connection.pragma_update(None, "journal_mode", "wal")?;
        connection.pragma_update(None, "foreign_keys", true)?;
        Ok(connection)
    }

    fn give_back(&self, connection: Connection) {
        self.idle.lock().expect("sqlite pool lock").push(connection);
    }

    /// Runs one statement: on this thread if it can finish without waiting, else on the
    /// blocking pool.
    pub async fn execute(
        self: &Arc<Self>,
        statement: String,
        parameters: Vec<Value>,
    ) -> Result<QueryResult, String> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| "the database is closed".to_owned())?;
        let connection = self.connection().map_err(|err| err.to_string())?;
        let parameters: Vec<SqlValue> = parameters.into_iter().map(sql_value).collect();

        connection
            .busy_timeout(Duration::ZERO)
            .map_err(|err| err.to_string())?;
        let mut steps = 0;
        connection.progress_handler(
            STEP_CHECK,
            Some(move || {
                steps += STEP_CHECK as u32;
                steps > INLINE_STEPS
            }),
        );
        let inline = run(&connection, &statement, &parameters);
        connection.progress_handler(STEP_CHECK, None::<fn() -> bool>);
        match inline {
            Err(err) if gave_up(&err) => {}
            result => {
                self.give_back(connection);
                return result.map_err(|err| err.to_string());
            }
        }

        let db = self.clone();
        tokio::task::spawn_blocking(move || {
            let result = connection
                .busy_timeout(BUSY_TIMEOUT)
                .and_then(|()| run(&connection, &statement, &parameters));
            db.give_back(connection);
            result.map_err(|err| err.to_string())
        })
        .await
        .map_err(|err| format!("the statement's thread failed: {err}"))?
    }
}

/// Whether the first attempt stopped short: locked, or too long for the guest's thread.
fn gave_up(err: &rusqlite::Error) -> bool {
    matches!(
        err.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked | ErrorCode::OperationInterrupted)
    )
}

fn sql_value(value: Value) -> SqlValue {
    match value {
        Value::Integer(v) => SqlValue::Integer(v),
        Value::Real(v) => SqlValue::Real(v),
        Value::Text(v) => SqlValue::Text(v),
        Value::Blob(v) => SqlValue::Blob(v),
        Value::Null => SqlValue::Null,
    }
}

fn run(
    connection: &Connection,
    statement: &str,
    parameters: &[SqlValue],
) -> rusqlite::Result<QueryResult> {
    let mut prepared = connection.prepare_cached(statement)?;
    let columns: Vec<String> = prepared
        .column_names()
        .into_iter()
        .map(str::to_owned)
        .collect();
    let mut rows = prepared.query(rusqlite::params_from_iter(parameters))?;
    let mut results = Vec::new();
    while let Some(row) = rows.next()? {
        let mut values = Vec::with_capacity(columns.len());
        for index in 0..columns.len() {
            // SQLite is dynamically typed: each value is read by its own storage class.
            values.push(match row.get_ref(index)? {
                ValueRef::Null => Value::Null,
                ValueRef::Integer(v) => Value::Integer(v),
                ValueRef::Real(v) => Value::Real(v),
                ValueRef::Text(bytes) => Value::Text(
                    String::from_utf8(bytes.to_vec())
                        .map_err(|err| rusqlite::Error::Utf8Error(err.utf8_error()))?,
                ),
                ValueRef::Blob(bytes) => Value::Blob(bytes.to_vec()),
            });
        }
        results.push(RowResult { values });
    }
    Ok(QueryResult {
        columns,
        rows: results,
    })
}

impl Host for HostState {}

impl HostConnection for HostState {
    async fn open(
        &mut self,
        database: String,
    ) -> wasmtime::Result<Result<Resource<SqliteConnection>, Error>> {
        let Some(db) = self.component.sqlite.get(&database) else {
            // Spin does not tell a component whether a database it may not use exists.
            return Ok(Err(Error::AccessDenied));
        };
        let connection = SqliteConnection { db: db.clone() };
        Ok(Ok(self.table.push(connection)?))
    }

    async fn execute(
        &mut self,
        connection: Resource<SqliteConnection>,
        statement: String,
        parameters: Vec<Value>,
    ) -> wasmtime::Result<Result<QueryResult, Error>> {
        let db = self.table.get(&connection)?.db.clone();
        Ok(db.execute(statement, parameters).await.map_err(Error::Io))
    }

    async fn drop(&mut self, connection: Resource<SqliteConnection>) -> wasmtime::Result<()> {
        self.table.delete(connection)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db(dir: &Path) -> Arc<SqliteDb> {
        open_pools(dir, [&"default".to_owned()])
            .unwrap()
            .remove("default")
            .unwrap()
    }

    async fn run_on(db: &Arc<SqliteDb>, statement: &str) -> QueryResult {
        db.execute(statement.to_owned(), Vec::new()).await.unwrap()
    }

    fn integer(result: &QueryResult) -> i64 {
        match result.rows[0].values[0] {
            Value::Integer(value) => value,
            ref other => panic!("not an integer: {other:?}"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn values_keep_their_storage_class_and_parameters_bind() {
        let dir = tempfile::tempdir().unwrap();
        let db = db(dir.path());
        run_on(&db, "CREATE TABLE t (v)").await;
        for value in [
            Value::Integer(-7),
            Value::Real(1.5),
            Value::Text("ünï".into()),
            Value::Blob(vec![0, 255]),
            Value::Null,
        ] {
            db.execute("INSERT INTO t VALUES (?)".into(), vec![value])
                .await
                .unwrap();
        }
        let result = run_on(&db, "SELECT v AS value FROM t ORDER BY rowid").await;
        assert_eq!(result.columns, ["value"]);
        let values: Vec<Value> = result
            .rows
            .into_iter()
            .map(|r| r.values[0].clone())
            .collect();
        assert_eq!(
            format!("{values:?}"),
            format!(
                "{:?}",
                [
                    Value::Integer(-7),
                    Value::Real(1.5),
                    Value::Text("ünï".into()),
                    Value::Blob(vec![0, 255]),
                    Value::Null
                ]
            )
        );
        // Column names even when no row comes back; errors are the statement's own.
        let empty = run_on(&db, "SELECT v, rowid AS id FROM t WHERE 0").await;
        assert_eq!((empty.columns.len(), empty.rows.len()), (2, 0));
        let err = db.execute("SELECT nope FROM t".into(), Vec::new()).await;
        assert!(err.unwrap_err().contains("no such column"));
    }

    /// A statement too long for the guest's thread runs again on the blocking pool, once:
    /// SQLite rolled the interrupted one back whole.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_long_statement_finishes_once() {
        let dir = tempfile::tempdir().unwrap();
        let db = db(dir.path());
        run_on(&db, "CREATE TABLE t (n INTEGER)").await;
        let insert = "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 200000) \
                      INSERT INTO t SELECT n FROM c";
        run_on(&db, insert).await;
        let count = run_on(&db, "SELECT count(*), sum(n) FROM t").await;
        assert_eq!(integer(&count), 200_000);
        assert_eq!(
            format!("{:?}", count.rows[0].values[1]),
            format!("{:?}", Value::Integer(200_000 * 200_001 / 2))
        );
    }

    /// A statement that meets another connection's write lock waits for it (on the blocking
    /// pool) instead of failing or holding the guest's thread.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_locked_database_is_waited_for() {
        let dir = tempfile::tempdir().unwrap();
        let db = db(dir.path());
        run_on(&db, "CREATE TABLE t (n INTEGER)").await;
        let locker = Connection::open(database_file(dir.path(), "default")).unwrap();
        locker
            .execute_batch("BEGIN IMMEDIATE; INSERT INTO t VALUES (1);")
            .unwrap();
        let writer = {
            let db = db.clone();
            tokio::spawn(async move { run_on(&db, "INSERT INTO t VALUES (2)").await })
        };
        // The runtime's threads stay free while the writer waits: this task still runs.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!writer.is_finished(), "the writer waits for the lock");
        locker.execute_batch("COMMIT").unwrap();
        writer.await.unwrap();
        assert_eq!(integer(&run_on(&db, "SELECT count(*) FROM t").await), 2);
    }
}
