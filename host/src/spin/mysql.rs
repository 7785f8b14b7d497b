//! `fermyon:spin/mysql`: outbound MySQL/MariaDB, one `sqlx` pool per address shared by every
//! instance, reachable only at addresses the component's `allowed_outbound_hosts` permits.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use sqlx::mysql::{MySqlPool, MySqlPoolOptions, MySqlRow};
// Statements are the guest's own, parameterised by the guest: the Spin interface passes them
// through as written, the way Spin's own host does.
use sqlx::{AssertSqlSafe, Column, Row, TypeInfo, ValueRef};
use wasmtime::component::Resource;

use super::mysql_wit::{Host, HostConnection};
use super::rdbms_types::{
    self, Column as WitColumn, DbDataType, DbValue, Error, ParameterValue, RowSet,
};
use crate::state::HostState;

/// An open connection, as the guest holds it.
pub struct MysqlConnection {
    pool: MySqlPool,
}

/// Pools by address, shared across requests (an instance lives for one request).
#[derive(Default)]
pub struct MysqlPools {
    pools: Mutex<HashMap<String, MySqlPool>>,
}

impl MysqlPools {
    async fn get(&self, address: &str) -> Result<MySqlPool, sqlx::Error> {
        if let Some(pool) = self.pools.lock().expect("mysql pools lock").get(address) {
            return Ok(pool.clone());
        }
        // Connect once eagerly so a bad address fails `open`, as in Spin.
        let pool = MySqlPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .idle_timeout(Duration::from_secs(300))
            .connect(address)
            .await?;
        let mut pools = self.pools.lock().expect("mysql pools lock");
        Ok(pools.entry(address.to_owned()).or_insert(pool).clone())
    }

    /// Closes every pool (on shutdown).
    pub async fn close(&self) {
        let pools: Vec<_> = self
            .pools
            .lock()
            .expect("mysql pools lock")
            .drain()
            .map(|(_, p)| p)
            .collect();
        for pool in pools {
            pool.close().await;
        }
    }
}

impl Host for HostState {}

impl rdbms_types::Host for HostState {}

impl HostConnection for HostState {
    async fn open(
        &mut self,
        address: String,
    ) -> wasmtime::Result<Result<Resource<MysqlConnection>, Error>> {
        let url = match url::Url::parse(&address) {
            Ok(url) if url.scheme() == "mysql" => url,
            _ => {
                return Ok(Err(Error::ConnectionFailed(
                    "the address must be a mysql:// URL".into(),
                )));
            }
        };
        if !self.component.allowed_outbound_hosts.allows_url(&url) {
            return Ok(Err(Error::ConnectionFailed(format!(
                "component `{}` may not connect to {}:{}: add it to allowed_outbound_hosts",
                self.component.name,
                url.host_str().unwrap_or_default(),
                url.port().unwrap_or(3306)
            ))));
        }
        match self.services.mysql.get(&address).await {
            Ok(pool) => Ok(Ok(self.table.push(MysqlConnection { pool })?)),
            Err(err) => Ok(Err(Error::ConnectionFailed(err.to_string()))),
        }
    }

    async fn query(
        &mut self,
        connection: Resource<MysqlConnection>,
        statement: String,
        params: Vec<ParameterValue>,
    ) -> wasmtime::Result<Result<RowSet, Error>> {
        let pool = self.table.get(&connection)?.pool.clone();
        let rows = match bind(sqlx::query(AssertSqlSafe(statement)), params)
            .fetch_all(&pool)
            .await
        {
            Ok(rows) => rows,
            Err(err) => return Ok(Err(Error::QueryFailed(err.to_string()))),
        };
        Ok(row_set(&rows))
    }

    async fn execute(
        &mut self,
        connection: Resource<MysqlConnection>,
        statement: String,
        params: Vec<ParameterValue>,
    ) -> wasmtime::Result<Result<(), Error>> {
        let pool = self.table.get(&connection)?.pool.clone();
        let result = if params.is_empty() {
            // The text protocol also runs statements MySQL cannot prepare (some DDL).
            sqlx::raw_sql(AssertSqlSafe(statement)).execute(&pool).await
        } else {
            bind(sqlx::query(AssertSqlSafe(statement)), params)
                .execute(&pool)
                .await
        };
        Ok(result
            .map(|_| ())
            .map_err(|err| Error::QueryFailed(err.to_string())))
    }

    async fn drop(&mut self, connection: Resource<MysqlConnection>) -> wasmtime::Result<()> {
        self.table.delete(connection)?;
        Ok(())
    }
}

type Query<'q> = sqlx::query::Query<'q, sqlx::MySql, sqlx::mysql::MySqlArguments>;

fn bind(mut query: Query<'_>, params: Vec<ParameterValue>) -> Query<'_> {
    for param in params {
        query = match param {
            ParameterValue::Boolean(v) => query.bind(v),
            ParameterValue::Int8(v) => query.bind(v),
            ParameterValue::Int16(v) => query.bind(v),
            ParameterValue::Int32(v) => query.bind(v),
            ParameterValue::Int64(v) => query.bind(v),
            ParameterValue::Uint8(v) => query.bind(v),
            ParameterValue::Uint16(v) => query.bind(v),
            ParameterValue::Uint32(v) => query.bind(v),
            ParameterValue::Uint64(v) => query.bind(v),
            ParameterValue::Floating32(v) => query.bind(v),
            ParameterValue::Floating64(v) => query.bind(v),
            ParameterValue::Str(v) => query.bind(v),
            ParameterValue::Binary(v) => query.bind(v),
            ParameterValue::DbNull => query.bind(None::<String>),
        };
    }
    query
}

fn data_type(type_name: &str) -> DbDataType {
    match type_name {
        "BOOLEAN" => DbDataType::Boolean,
        "TINYINT" => DbDataType::Int8,
        "SMALLINT" => DbDataType::Int16,
        "MEDIUMINT" | "INT" => DbDataType::Int32,
        "BIGINT" => DbDataType::Int64,
        "TINYINT UNSIGNED" => DbDataType::Uint8,
        "SMALLINT UNSIGNED" => DbDataType::Uint16,
        "MEDIUMINT UNSIGNED" | "INT UNSIGNED" => DbDataType::Uint32,
        "BIGINT UNSIGNED" => DbDataType::Uint64,
        "FLOAT" => DbDataType::Floating32,
        "DOUBLE" => DbDataType::Floating64,
        "VARCHAR" | "CHAR" | "TEXT" | "TINYTEXT" | "MEDIUMTEXT" | "LONGTEXT" | "ENUM" | "SET"
        | "DECIMAL" => DbDataType::Str,
        "VARBINARY" | "BINARY" | "BLOB" | "TINYBLOB" | "MEDIUMBLOB" | "LONGBLOB" => {
            DbDataType::Binary
        }
        _ => DbDataType::Other,
    }
}

fn row_set(rows: &[MySqlRow]) -> Result<RowSet, Error> {
    let columns = rows
        .first()
        .map(|row| {
            row.columns()
                .iter()
                .map(|c| WitColumn {
                    name: c.name().to_owned(),
                    data_type: data_type(c.type_info().name()),
                })
                .collect()
        })
        .unwrap_or_default();
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let mut values = Vec::with_capacity(row.len());
        for index in 0..row.len() {
            values.push(
                db_value(row, index)
                    .map_err(|err| Error::ValueConversionFailed(err.to_string()))?,
            );
        }
        out.push(values);
    }
    Ok(RowSet { columns, rows: out })
}

fn db_value(row: &MySqlRow, index: usize) -> Result<DbValue, sqlx::Error> {
    let raw = row.try_get_raw(index)?;
    if raw.is_null() {
        return Ok(DbValue::DbNull);
    }
    let type_name = row.column(index).type_info().name();
    Ok(match data_type(type_name) {
        DbDataType::Boolean => DbValue::Boolean(row.try_get(index)?),
        DbDataType::Int8 => DbValue::Int8(row.try_get(index)?),
        DbDataType::Int16 => DbValue::Int16(row.try_get(index)?),
        DbDataType::Int32 => DbValue::Int32(row.try_get(index)?),
        DbDataType::Int64 => DbValue::Int64(row.try_get(index)?),
        DbDataType::Uint8 => DbValue::Uint8(row.try_get(index)?),
        DbDataType::Uint16 => DbValue::Uint16(row.try_get(index)?),
        DbDataType::Uint32 => DbValue::Uint32(row.try_get(index)?),
        DbDataType::Uint64 => DbValue::Uint64(row.try_get(index)?),
        DbDataType::Floating32 => DbValue::Floating32(row.try_get(index)?),
        DbDataType::Floating64 => DbValue::Floating64(row.try_get(index)?),
        // DECIMAL travels as text in MySQL's binary protocol.
        DbDataType::Str => DbValue::Str(row.try_get_unchecked(index)?),
        DbDataType::Binary => DbValue::Binary(row.try_get(index)?),
        DbDataType::Other => DbValue::Unsupported,
    })
}
