//! The SQL database the functions share (users, notifications, webhooks), as two calls:
//! [`Db::execute`] and [`Db::query`] with positional `?` parameters, in the SQL SQLite and
//! MySQL both speak. The stores built on it are plain Rust, tested natively against
//! in-memory stand-ins; [`open`] gives Spin's SQLite or MySQL in the component.

/// A statement parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    Int(i64),
    Text(String),
    Null,
}

/// A column value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Text(String),
}

impl Value {
    /// The text of a text column.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Value::Text(text) => Some(text),
            _ => None,
        }
    }

    /// The number of an integer column (MySQL sends DECIMAL aggregates as text).
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(int) => Some(*int),
            Value::Text(text) => text.parse().ok(),
            Value::Null => None,
        }
    }
}

/// The two calls a SQL database offers.
pub trait Db {
    fn execute(&self, sql: &str, params: &[Param]) -> Result<(), DbError>;
    fn query(&self, sql: &str, params: &[Param]) -> Result<Vec<Vec<Value>>, DbError>;
}

impl<T: Db + ?Sized> Db for Box<T> {
    fn execute(&self, sql: &str, params: &[Param]) -> Result<(), DbError> {
        (**self).execute(sql, params)
    }
    fn query(&self, sql: &str, params: &[Param]) -> Result<Vec<Vec<Value>>, DbError> {
        (**self).query(sql, params)
    }
}

/// A database error: whether it was a unique-key violation, and the driver's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbError {
    pub unique_violation: bool,
    pub message: String,
}

impl DbError {
    /// Whether the statement lost a race with another transaction: MySQL chose it as a
    /// deadlock's victim (1213, SQLSTATE 40001) or SQLite found the database locked. Running
    /// it again may succeed.
    pub fn is_lost_race(&self) -> bool {
        ["Deadlock found", "40001", "database is locked"]
            .iter()
            .any(|sign| self.message.contains(sign))
    }
}

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Which database: Spin's SQLite (`default`, the embedded default) or MySQL at an address.
#[derive(Clone, PartialEq, Eq)]
pub enum Database {
    Sqlite,
    Mysql(String),
}

/// The MySQL URL holds a password: it never prints.
impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Database::Sqlite => f.write_str("Sqlite"),
            Database::Mysql(_) => f.write_str("Mysql([redacted])"),
        }
    }
}

impl Database {
    /// From the `database` ("sqlite" or "mysql") and `mysql_url` variables.
    pub fn from_variables(get: impl Fn(&str) -> Option<String>) -> Result<Database, String> {
        let kind = get("database").unwrap_or_default();
        match kind.trim() {
            "sqlite" => Ok(Database::Sqlite),
            "mysql" => get("mysql_url")
                .map(|url| url.trim().to_owned())
                .filter(|url| !url.is_empty())
                .map(Database::Mysql)
                .ok_or_else(|| "variable `mysql_url` is not set".to_owned()),
            other => Err(format!(
                "variable `database`: `{other}` is neither sqlite nor mysql"
            )),
        }
    }
}

pub mod notifications;
#[cfg(target_arch = "wasm32")]
mod spin;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
#[cfg(target_arch = "wasm32")]
pub use spin::open;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_races_are_told_from_other_errors() {
        let error = |message: &str| DbError {
            unique_violation: false,
            message: message.into(),
        };
        for lost in [
            "QueryFailed(\"Deadlock found when trying to get lock; try restarting transaction\")",
            "ERROR 1213 (40001): Deadlock found",
            "Io(\"database is locked\")",
        ] {
            assert!(error(lost).is_lost_race(), "{lost}");
        }
        assert!(!error("Duplicate entry 'a' for key 'PRIMARY'").is_lost_race());
    }

    #[test]
    fn a_mysql_url_never_prints() {
        let db = Database::Mysql("mysql://app:hunter2@db:3306/mp3conv".into());
        assert_eq!(format!("{db:?}"), "Mysql([redacted])");
    }

    #[test]
    fn databases_from_variables() {
        let vars = |db: &'static str, url: &'static str| {
            move |name: &str| match name {
                "database" => Some(db.to_owned()),
                "mysql_url" => Some(url.to_owned()),
                _ => None,
            }
        };
        assert_eq!(
            Database::from_variables(vars("sqlite", "")),
            Ok(Database::Sqlite)
        );
        assert_eq!(
            Database::from_variables(vars("mysql", "mysql://db/x")),
            Ok(Database::Mysql("mysql://db/x".into()))
        );
        assert!(Database::from_variables(vars("mysql", " ")).is_err());
        assert!(Database::from_variables(vars("postgres", "")).is_err());
    }

    #[test]
    fn values() {
        assert_eq!(Value::Text("12".into()).as_int(), Some(12));
        assert_eq!(Value::Null.as_text(), None);
    }
}
