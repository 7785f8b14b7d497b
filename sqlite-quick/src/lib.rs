//! A point lookup in SQLite takes tens of microseconds; handing it to another thread and back
//! (a blocking pool, or sqlx's thread per connection) costs more than the query. So a read is
//! first tried on the caller's thread, under two rules that keep an async executor's thread
//! from waiting: it gives up at once on a locked database (busy timeout 0), and after
//! [`STEPS`] steps of SQLite's virtual machine (about a millisecond). A read that gave up
//! changed nothing, so the caller runs it again where it may wait.
//!
//! Only reads. SQLite can report a write interrupted after it committed (the progress handler
//! runs once more after the commit), so running a write again could apply it twice.

use std::time::Duration;

use rusqlite::{Connection, ErrorCode};

/// Virtual-machine steps a statement may take here, checked every [`STEP_CHECK`].
pub const STEPS: u32 = 100_000;
const STEP_CHECK: i32 = 1_000;

/// Runs `read` on this thread if it finishes without waiting for a lock and within
/// [`STEPS`]; `None` when it gave up, and the connection is left with a busy timeout of 0
/// (set the one the retry may wait for).
pub fn without_waiting<T>(
    connection: &Connection,
    read: impl FnOnce(&Connection) -> rusqlite::Result<T>,
) -> Option<rusqlite::Result<T>> {
    if let Err(err) = connection.busy_timeout(Duration::ZERO) {
        return Some(Err(err));
    }
    let mut steps = 0;
    connection.progress_handler(
        STEP_CHECK,
        Some(move || {
            steps += STEP_CHECK as u32;
            steps > STEPS
        }),
    );
    let result = read(connection);
    connection.progress_handler(STEP_CHECK, None::<fn() -> bool>);
    match result {
        Err(err) if gave_up(&err) => None,
        result => Some(result),
    }
}

/// Whether a first attempt stopped short: locked, or too long for the caller's thread.
pub fn gave_up(err: &rusqlite::Error) -> bool {
    matches!(
        err.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked | ErrorCode::OperationInterrupted)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn database() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let connection = Connection::open(dir.path().join("db")).unwrap();
        connection
            .execute_batch(
                "PRAGMA journal_mode = wal;
                 CREATE TABLE t (n INTEGER);
                 INSERT INTO t VALUES (1), (2), (3);",
            )
            .unwrap();
        (dir, connection)
    }

    #[test]
    fn a_short_read_answers_here() {
        let (_dir, connection) = database();
        let sum = without_waiting(&connection, |c| {
            c.query_row("SELECT sum(n) FROM t", [], |row| row.get::<_, i64>(0))
        });
        assert_eq!(sum.unwrap().unwrap(), 6);
    }

    #[test]
    fn a_long_read_gives_up_and_the_connection_still_works() {
        let (_dir, connection) = database();
        let long =
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000)
                    SELECT count(*) FROM c";
        assert!(
            without_waiting(&connection, |c| c
                .query_row(long, [], |row| row.get::<_, i64>(0)))
            .is_none()
        );
        // Without the step limit it runs to the end.
        let count: i64 = connection.query_row(long, [], |row| row.get(0)).unwrap();
        assert_eq!(count, 1_000_000);
    }

    #[test]
    fn a_locked_database_gives_up_at_once() {
        let (dir, connection) = database();
        // A rollback journal: a writer's exclusive lock keeps readers out.
        connection
            .execute_batch("PRAGMA journal_mode = delete;")
            .unwrap();
        let writer = Connection::open(dir.path().join("db")).unwrap();
        writer.execute_batch("BEGIN EXCLUSIVE;").unwrap();
        let started = std::time::Instant::now();
        let read = without_waiting(&connection, |c| {
            c.query_row("SELECT count(*) FROM t", [], |row| row.get::<_, i64>(0))
        });
        assert!(read.is_none());
        assert!(started.elapsed() < Duration::from_secs(1));
        writer.execute_batch("COMMIT;").unwrap();
        let read = without_waiting(&connection, |c| {
            c.query_row("SELECT count(*) FROM t", [], |row| row.get::<_, i64>(0))
        });
        assert_eq!(read.unwrap().unwrap(), 3);
    }

    #[test]
    fn other_errors_are_answers() {
        let (_dir, connection) = database();
        let read = without_waiting(&connection, |c| c.execute("SELECT * FROM missing", []));
        assert!(matches!(read, Some(Err(_))));
    }
}
