//! Spin's SQLite and MySQL as a [`Db`].

use spin_sdk::{mysql, sqlite};

use crate::{Database, Db, DbError, Param, Value};

/// Opens the database.
pub fn open(database: &Database) -> Result<Box<dyn Db>, DbError> {
    let failed = |what: &str, err: String| DbError {
        unique_violation: false,
        message: format!("opening {what}: {err}"),
    };
    match database {
        Database::Sqlite => sqlite::Connection::open_default()
            .map(|c| Box::new(SpinSqlite(c)) as Box<dyn Db>)
            .map_err(|err| failed("SQLite", format!("{err:?}"))),
        Database::Mysql(address) => mysql::Connection::open(address)
            .map(|c| Box::new(SpinMysql(c)) as Box<dyn Db>)
            .map_err(|err| failed("MySQL", format!("{err:?}"))),
    }
}

struct SpinSqlite(sqlite::Connection);

fn sqlite_params(params: &[Param]) -> Vec<sqlite::Value> {
    params
        .iter()
        .map(|param| match param {
            Param::Int(v) => sqlite::Value::Integer(*v),
            Param::Text(v) => sqlite::Value::Text(v.clone()),
            Param::Null => sqlite::Value::Null,
        })
        .collect()
}

fn sqlite_error(err: sqlite::Error) -> DbError {
    let message = format!("{err:?}");
    DbError {
        unique_violation: message.contains("UNIQUE constraint failed"),
        message,
    }
}

impl Db for SpinSqlite {
    fn execute(&self, sql: &str, params: &[Param]) -> Result<(), DbError> {
        self.0
            .execute(sql, &sqlite_params(params))
            .map(|_| ())
            .map_err(sqlite_error)
    }

    fn query(&self, sql: &str, params: &[Param]) -> Result<Vec<Vec<Value>>, DbError> {
        let result = self
            .0
            .execute(sql, &sqlite_params(params))
            .map_err(sqlite_error)?;
        Ok(result
            .rows
            .into_iter()
            .map(|row| {
                row.values
                    .into_iter()
                    .map(|value| match value {
                        sqlite::Value::Integer(v) => Value::Int(v),
                        sqlite::Value::Text(v) => Value::Text(v),
                        sqlite::Value::Null => Value::Null,
                        sqlite::Value::Real(v) => Value::Text(v.to_string()),
                        sqlite::Value::Blob(v) => {
                            Value::Text(String::from_utf8_lossy(&v).into_owned())
                        }
                    })
                    .collect()
            })
            .collect())
    }
}

struct SpinMysql(mysql::Connection);

fn mysql_params(params: &[Param]) -> Vec<mysql::ParameterValue> {
    params
        .iter()
        .map(|param| match param {
            Param::Int(v) => mysql::ParameterValue::Int64(*v),
            Param::Text(v) => mysql::ParameterValue::Str(v.clone()),
            Param::Null => mysql::ParameterValue::DbNull,
        })
        .collect()
}

fn mysql_error(err: mysql::MysqlError) -> DbError {
    let message = format!("{err:?}");
    DbError {
        unique_violation: message.contains("Duplicate entry"),
        message,
    }
}

impl Db for SpinMysql {
    fn execute(&self, sql: &str, params: &[Param]) -> Result<(), DbError> {
        self.0
            .execute(sql, &mysql_params(params))
            .map_err(mysql_error)
    }

    fn query(&self, sql: &str, params: &[Param]) -> Result<Vec<Vec<Value>>, DbError> {
        let rows = self
            .0
            .query(sql, &mysql_params(params))
            .map_err(mysql_error)?;
        Ok(rows
            .rows
            .into_iter()
            .map(|row| {
                row.into_iter()
                    .map(|value| match value {
                        mysql::DbValue::Int8(v) => Value::Int(v.into()),
                        mysql::DbValue::Int16(v) => Value::Int(v.into()),
                        mysql::DbValue::Int32(v) => Value::Int(v.into()),
                        mysql::DbValue::Int64(v) => Value::Int(v),
                        mysql::DbValue::Uint8(v) => Value::Int(v.into()),
                        mysql::DbValue::Uint16(v) => Value::Int(v.into()),
                        mysql::DbValue::Uint32(v) => Value::Int(v.into()),
                        mysql::DbValue::Uint64(v) => {
                            Value::Int(i64::try_from(v).unwrap_or(i64::MAX))
                        }
                        mysql::DbValue::Str(v) => Value::Text(v),
                        mysql::DbValue::Binary(v) => {
                            Value::Text(String::from_utf8_lossy(&v).into_owned())
                        }
                        mysql::DbValue::DbNull => Value::Null,
                        other => Value::Text(format!("{other:?}")),
                    })
                    .collect()
            })
            .collect())
    }
}
