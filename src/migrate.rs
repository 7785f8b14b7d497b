//! The users database schema, as versioned migrations embedded in the binary
//! (`migrations/mysql`, `migrations/sqlite`): `mp3conv migrate`, and `mp3conv up` on start.

use std::path::Path;
use std::str::FromStr as _;

use anyhow::Context as _;
use sqlx::migrate::{MigrateDatabase as _, Migrator};

static MYSQL: Migrator = sqlx::migrate!("migrations/mysql");
static SQLITE: Migrator = sqlx::migrate!("migrations/sqlite");

/// Creates the database if needed and applies the MySQL migrations it lacks.
pub async fn mysql(url: &str) -> anyhow::Result<()> {
    if !sqlx::MySql::database_exists(url)
        .await
        .context("connecting to MySQL")?
    {
        sqlx::MySql::create_database(url)
            .await
            .context("creating the database")?;
    }
    let pool = sqlx::mysql::MySqlPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .context("connecting to MySQL")?;
    MYSQL
        .run(&pool)
        .await
        .context("applying MySQL migrations")?;
    pool.close().await;
    Ok(())
}

/// Applies the SQLite migrations to the database file at `path`, creating it if needed.
pub async fn sqlite(path: &Path) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let options = sqlx::sqlite::SqliteConnectOptions::from_str("sqlite:")?
        .filename(path)
        .create_if_missing(true)
        .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal);
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .with_context(|| format!("opening {}", path.display()))?;
    SQLITE
        .run(&pool)
        .await
        .context("applying SQLite migrations")?;
    pool.close().await;
    Ok(())
}
