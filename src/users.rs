//! `mp3conv users limit EMAIL`: an operator's quotas for one user, kept in the users database
//! (`user_limits`), replacing the worker's defaults for them. The gateway reads them with
//! each request and hands them to the worker, so a change counts from the user's next request.

use std::path::Path;
use std::str::FromStr as _;
use std::time::Duration;

use anyhow::Context as _;
use mp3conv_contract::quota::{Limit, Limits, UNLIMITED};

/// What to set one limit to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setting {
    /// This value.
    To(u64),
    /// No limit.
    Unlimited,
    /// The worker's default again.
    Default,
}

impl Setting {
    fn word(text: &str) -> Option<Self> {
        match text.trim() {
            "unlimited" => Some(Self::Unlimited),
            "default" => Some(Self::Default),
            _ => None,
        }
    }

    /// A size: `5GiB`, `500MB`, `1048576`, `unlimited` or `default`.
    pub fn parse_bytes(text: &str) -> Result<Self, String> {
        if let Some(word) = Self::word(text) {
            return Ok(word);
        }
        let size: bytesize::ByteSize = text
            .trim()
            .parse()
            .map_err(|err| format!("`{text}` is not a size (such as 5GiB): {err}"))?;
        Self::checked(size.as_u64(), text)
    }

    /// A count: `30`, `unlimited` or `default`.
    pub fn parse_count(text: &str) -> Result<Self, String> {
        if let Some(word) = Self::word(text) {
            return Ok(word);
        }
        let count: u64 = text
            .trim()
            .parse()
            .map_err(|_| format!("`{text}` is not a number"))?;
        Self::checked(count, text)
    }

    /// A length of media: `2h`, `90m`, `45min 30s`, `unlimited` or `default`.
    pub fn parse_duration(text: &str) -> Result<Self, String> {
        if let Some(word) = Self::word(text) {
            return Ok(word);
        }
        let duration: Duration = humantime::parse_duration(text.trim())
            .map_err(|err| format!("`{text}` is not a length (such as 2h): {err}"))?;
        Self::checked(duration.as_secs(), text)
    }

    /// The override it stores: the value, [`UNLIMITED`], or none (the default).
    fn value(self) -> Option<u64> {
        match self {
            Self::To(n) => Some(n),
            Self::Unlimited => Some(UNLIMITED),
            Self::Default => None,
        }
    }

    fn checked(value: u64, text: &str) -> Result<Self, String> {
        if value >= UNLIMITED {
            return Err(format!("`{text}` is too large; say `unlimited`"));
        }
        Ok(Self::To(value))
    }
}

/// The users database, as `mp3conv migrate` names it.
pub enum Database<'a> {
    Mysql(&'a str),
    Sqlite(&'a Path),
}

/// Sets `settings` on the user with `email` and reads their limits back, on any pool: the
/// row is read, changed and written whole in one transaction.
macro_rules! apply {
    ($pool:expr, $email:expr, $settings:expr, $now_ms:expr, $upsert:expr) => {{
        let pool = $pool;
        let key = $email.trim().to_lowercase();
        let mut tx = pool.begin().await.context("starting a transaction")?;
        let id: Option<String> = sqlx::query_scalar("SELECT id FROM users WHERE email_key = ?")
            .bind(key.as_str())
            .fetch_optional(&mut *tx)
            .await
            .context("finding the user")?;
        let id = id.with_context(|| format!("no account has the email {}", $email.trim()))?;
        let row: Option<(
            Option<i64>,
            Option<i64>,
            Option<i64>,
            Option<i64>,
            Option<i64>,
        )> = sqlx::query_as(
            "SELECT storage_bytes, concurrent_jobs, jobs_per_hour, max_upload_bytes,
                        max_duration_secs FROM user_limits WHERE user_id = ?",
        )
        .bind(id.as_str())
        .fetch_optional(&mut *tx)
        .await
        .context("reading the limits")?;
        let mut limits = Limits::default();
        if let Some((a, b, c, d, e)) = row {
            for (limit, value) in Limit::ALL.into_iter().zip([a, b, c, d, e]) {
                limits.set(limit, value.and_then(|v| u64::try_from(v).ok()));
            }
        }
        if !$settings.is_empty() {
            for (limit, setting) in $settings {
                limits.set(*limit, setting.value());
            }
            let column = |limit| limits.get(limit).and_then(|v| i64::try_from(v).ok());
            sqlx::query($upsert)
                .bind(id.as_str())
                .bind(column(Limit::StorageBytes))
                .bind(column(Limit::ConcurrentJobs))
                .bind(column(Limit::JobsPerHour))
                .bind(column(Limit::MaxUploadBytes))
                .bind(column(Limit::MaxDurationSecs))
                .bind($now_ms)
                .execute(&mut *tx)
                .await
                .context("saving the limits")?;
        }
        tx.commit().await.context("saving the limits")?;
        Ok::<Limits, anyhow::Error>(limits)
    }};
}

/// Applies `settings` to the limits of the user with `email` (none: only reads them); the
/// user's limits as they are after.
pub async fn limit(
    database: Database<'_>,
    email: &str,
    settings: &[(Limit, Setting)],
    now_ms: i64,
) -> anyhow::Result<Limits> {
    match database {
        Database::Mysql(url) => {
            let pool = sqlx::mysql::MySqlPoolOptions::new()
                .max_connections(1)
                .connect(url)
                .await
                .context("connecting to MySQL")?;
            let result = async { apply!(&pool, email, settings, now_ms, UPSERT_MYSQL) }.await;
            pool.close().await;
            result
        }
        Database::Sqlite(path) => {
            let options = sqlx::sqlite::SqliteConnectOptions::from_str("sqlite:")?
                .filename(path)
                .create_if_missing(false);
            let pool = sqlx::sqlite::SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(options)
                .await
                .with_context(|| format!("opening {}", path.display()))?;
            let result = async { apply!(&pool, email, settings, now_ms, UPSERT_SQLITE) }.await;
            pool.close().await;
            result
        }
    }
}

/// The user's row, written whole.
const UPSERT_MYSQL: &str = "INSERT INTO user_limits (user_id, storage_bytes, concurrent_jobs,
        jobs_per_hour, max_upload_bytes, max_duration_secs, updated_at)
     VALUES (?, ?, ?, ?, ?, ?, ?)
     ON DUPLICATE KEY UPDATE storage_bytes = VALUES(storage_bytes),
        concurrent_jobs = VALUES(concurrent_jobs), jobs_per_hour = VALUES(jobs_per_hour),
        max_upload_bytes = VALUES(max_upload_bytes),
        max_duration_secs = VALUES(max_duration_secs), updated_at = VALUES(updated_at)";
const UPSERT_SQLITE: &str = "INSERT INTO user_limits (user_id, storage_bytes, concurrent_jobs,
        jobs_per_hour, max_upload_bytes, max_duration_secs, updated_at)
     VALUES (?, ?, ?, ?, ?, ?, ?)
     ON CONFLICT (user_id) DO UPDATE SET storage_bytes = excluded.storage_bytes,
        concurrent_jobs = excluded.concurrent_jobs, jobs_per_hour = excluded.jobs_per_hour,
        max_upload_bytes = excluded.max_upload_bytes,
        max_duration_secs = excluded.max_duration_secs, updated_at = excluded.updated_at";

/// The user's limits for people, one per line: their own, or "default".
pub fn describe(email: &str, limits: &Limits) -> String {
    let mut out = format!("Limits of {}:\n", email.trim());
    for limit in Limit::ALL {
        let value = match limits.get(limit) {
            None => "default".to_owned(),
            Some(UNLIMITED) => "unlimited".to_owned(),
            Some(n) => match limit {
                Limit::StorageBytes | Limit::MaxUploadBytes => {
                    format!("{} ({n} bytes)", bytesize::ByteSize(n).display().iec())
                }
                Limit::MaxDurationSecs => {
                    humantime::format_duration(Duration::from_secs(n)).to_string()
                }
                Limit::ConcurrentJobs | Limit::JobsPerHour => n.to_string(),
            },
        };
        out.push_str(&format!("  {:<18} {value}\n", limit.as_str()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_read_as_operators_write_them() {
        assert_eq!(Setting::parse_bytes("5GiB"), Ok(Setting::To(5 << 30)));
        assert_eq!(Setting::parse_bytes("500 MB"), Ok(Setting::To(500_000_000)));
        assert_eq!(Setting::parse_bytes("unlimited"), Ok(Setting::Unlimited));
        assert_eq!(Setting::parse_count("30"), Ok(Setting::To(30)));
        assert_eq!(Setting::parse_count("default"), Ok(Setting::Default));
        assert_eq!(Setting::parse_duration("2h"), Ok(Setting::To(7200)));
        assert_eq!(Setting::parse_duration("90m"), Ok(Setting::To(5400)));
        for bad in ["", "-1", "lots", "1.5"] {
            assert!(Setting::parse_count(bad).is_err(), "{bad}");
        }
        assert!(Setting::parse_bytes("5 parsecs").is_err());
        assert!(Setting::parse_count("9223372036854775807").is_err());
        assert!(Setting::parse_duration("soon").is_err());
    }

    #[test]
    fn limits_describe_themselves() {
        let limits = Limits {
            storage_bytes: Some(5 << 30),
            jobs_per_hour: Some(UNLIMITED),
            max_duration_secs: Some(5400),
            ..Limits::default()
        };
        let text = describe(" a@example.com ", &limits);
        assert!(text.starts_with("Limits of a@example.com:\n"), "{text}");
        assert!(
            text.contains("storage_bytes      5.0 GiB (5368709120 bytes)"),
            "{text}"
        );
        assert!(text.contains("concurrent_jobs    default"), "{text}");
        assert!(text.contains("jobs_per_hour      unlimited"), "{text}");
        assert!(text.contains("max_duration_secs  1h 30m"), "{text}");
    }
}
