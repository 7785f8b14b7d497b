//! `fermyon:spin/sqlite`: the embedded default database, one file per label in the data
//! directory, shared by every instance through a small pool of connections.
//!
//! A read runs on the thread that asked for it, the guest's own: the functions' reads are
//! point lookups of tens of microseconds, and handing each to another thread and back (as sqlx,
//! with a thread per connection, did) cost more than the query. That attempt may not wait: it
//! gives up at once on a locked database and after [`mp3conv_sqlite_quick::STEPS`] steps of SQLite's virtual
//! machine, and the read runs again on the blocking pool. Only reads: a write's commit fsyncs,
//! may checkpoint, and SQLite can report a write interrupted after it committed, so running it
//! again could apply it twice. Writes, and opening connections, go to the blocking pool, where a
//! statement may wait [`BUSY_TIMEOUT`] for another writer's lock.
//!
//! One statement per call, as in Spin's own host. A connection left inside a transaction (a
//! guest's `BEGIN`) is closed, which rolls it back, rather than handed to the next caller.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::{Connection, OpenFlags};
use tokio::sync::Semaphore;
use wasmtime::component::Resource;

use super::sqlite_wit::{Error, Host, HostConnection, QueryResult, RowResult, Value};
use crate::state::HostState;

/// Connections per database file.
const MAX_CONNECTIONS: usize = 8;
/// Prepared statements kept per connection.
const STATEMENT_CACHE: usize = 100;
/// How long a statement on the blocking pool waits for another writer's lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A database file and its idle connections.
pub struct SqliteDb {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
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
                permits: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
            })
        });
    }
    Ok(pools)
}

impl SqliteDb {
    /// Refuses new statements and closes the idle connections (at shutdown).
    pub fn close(&self) {
        self.permits.close();
        self.idle.lock().expect("sqlite pool lock").clear();
    }

    /// Opens a connection (blocking: it may wait for the file's lock to set WAL mode).
    fn open(&self) -> rusqlite::Result<Connection> {
        let connection = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        connection.busy_timeout(BUSY_TIMEOUT)?;
        // The functions send a few dozen distinct statements; keep them all prepared, as sqlx did
        // (100; rusqlite keeps 16 by default).
        connection.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        connection.pragma_update(None, "journal_mode", "wal")?;
        connection.pragma_update(None, "foreign_keys", true)?;
        Ok(connection)
    }

    /// Keeps a connection for the next statement, unless a transaction is still open on it.
    fn give_back(&self, connection: Connection) {
        if connection.is_autocommit() {
            self.idle.lock().expect("sqlite pool lock").push(connection);
        }
    }

    /// Runs one statement: a read on this thread if it can finish without waiting, anything
    /// else on the blocking pool.
    pub async fn execute(
        self: &Arc<Self>,
        statement: String,
        parameters: Vec<Value>,
    ) -> Result<QueryResult, String> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| "the database is closed".to_owned())?;
        let parameters: Vec<SqlValue> = parameters.into_iter().map(sql_value).collect();
        let idle = self.idle.lock().expect("sqlite pool lock").pop();
        if let Some(connection) = &idle
            && let Some(result) = read_inline(connection, &statement, &parameters)
        {
            self.give_back(idle.expect("checked above"));
            return result.map_err(|err| err.to_string());
        }

        let db = self.clone();
        tokio::task::spawn_blocking(move || {
            // Held until the connection is back, even when the caller has gone.
            let _permit = permit;
            let connection = match idle {
                Some(connection) => connection,
                None => db.open().map_err(|err| err.to_string())?,
            };
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

/// Runs `statement` here if it is a read that finishes without waiting; `None` hands it to the
/// blocking pool (a write, or a read that gave up, which changed nothing).
fn read_inline(
    connection: &Connection,
    statement: &str,
    parameters: &[SqlValue],
) -> Option<rusqlite::Result<QueryResult>> {
    let tried = mp3conv_sqlite_quick::without_waiting(connection, |connection| {
        let readonly = connection.prepare_cached(statement)?.readonly();
        if !readonly || !connection.is_autocommit() {
            return Ok(None);
        }
        run(connection, statement, parameters).map(Some)
    });
    match tried? {
        Ok(None) => None,
        Ok(Some(result)) => Some(Ok(result)),
        Err(err) => Some(Err(err)),
    }
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

    /// Writes of any length apply exactly once. SQLite can report a write interrupted after
    /// it committed (seen in review, on another SQLite build, with the first version's step
    /// limit on writes), so writes never run under the limit and are never run twice.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_of_any_length_apply_once() {
        let dir = tempfile::tempdir().unwrap();
        let db = db(dir.path());
        run_on(&db, "CREATE TABLE t (n INTEGER)").await;
        for rows in (2_000..=16_000).step_by(997) {
            run_on(&db, "DELETE FROM t").await;
            let insert = format!(
                "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < {rows}) \
                 INSERT INTO t SELECT n FROM c"
            );
            run_on(&db, &insert).await;
            assert_eq!(integer(&run_on(&db, "SELECT count(*) FROM t").await), rows);
        }
    }

    /// A read too long for the guest's thread is handed to the blocking pool and still
    /// answers in full.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_long_read_answers_in_full() {
        let dir = tempfile::tempdir().unwrap();
        let db = db(dir.path());
        let result = run_on(
            &db,
            "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 300000) \
             SELECT count(*), sum(n) FROM c",
        )
        .await;
        assert_eq!(integer(&result), 300_000);
        assert_eq!(
            format!("{:?}", result.rows[0].values[1]),
            format!("{:?}", Value::Integer(300_000 * 300_001 / 2))
        );
    }

    /// A guest's `BEGIN` does not leave the next caller inside its transaction: that
    /// connection is closed (rolled back), and the next statement commits on its own.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_open_transaction_is_not_handed_on() {
        let dir = tempfile::tempdir().unwrap();
        let db = db(dir.path());
        run_on(&db, "CREATE TABLE t (n INTEGER)").await;
        run_on(&db, "BEGIN").await;
        run_on(&db, "INSERT INTO t VALUES (1)").await;
        let other = Connection::open(database_file(dir.path(), "default")).unwrap();
        let seen: i64 = other
            .query_row("SELECT count(*) FROM t", [], |row| row.get(0))
            .unwrap();
        assert_eq!(seen, 1, "the insert committed on its own");
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
