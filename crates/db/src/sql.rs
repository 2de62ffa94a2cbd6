//! Admin connections and the few queries the lifecycle needs.
//!
//! Statement logging is off on every connection made here: CHANGE MASTER
//! carries a password and must never reach a log.

use anyhow::{anyhow, Context, Result};
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlRow};
use sqlx::{ConnectOptions, Connection, Row};
use std::path::Path;
use std::time::Duration;

use crate::dialect::Dialect;

/// Connection options for a user over TCP, with statement logging off.
pub fn tcp_options(host: &str, port: u16, user: &str, password: &str) -> MySqlConnectOptions {
    MySqlConnectOptions::new()
        .host(host)
        .port(port)
        .username(user)
        .password(password)
        .ssl_mode(sqlx::mysql::MySqlSslMode::Disabled)
        .disable_statement_logging()
}

/// Connection options for root over the server's unix socket.
pub fn socket_options(socket: &Path, user: &str) -> MySqlConnectOptions {
    MySqlConnectOptions::new()
        .socket(socket)
        .username(user)
        .ssl_mode(sqlx::mysql::MySqlSslMode::Disabled)
        .disable_statement_logging()
}

pub async fn connect(opts: &MySqlConnectOptions, timeout: Duration) -> Result<MySqlConnection> {
    match tokio::time::timeout(timeout, opts.connect()).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(anyhow!(describe(&e))),
        Err(_) => Err(anyhow!("connection timed out after {:.1}s", timeout.as_secs_f64())),
    }
}

/// A short, password-free description of a sqlx error.
pub fn describe(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(d) => match error_number(e) {
            Some(n) => format!("server error {n}: {}", d.message()),
            None => format!("server error {}: {}", d.code().map(|c| c.to_string()).unwrap_or_default(), d.message()),
        },
        sqlx::Error::Io(io) => format!("{io}"),
        other => other.to_string(),
    }
}

/// The server's error number (1062, 1290, ...) of a database error.
pub fn error_number(e: &sqlx::Error) -> Option<u16> {
    match e {
        sqlx::Error::Database(d) => d.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>().map(|m| m.number()),
        _ => None,
    }
}

/// Run statements one after another through the text protocol.
pub async fn exec(conn: &mut MySqlConnection, sql: &str) -> Result<()> {
    // A plain &str runs as COM_QUERY (text protocol, no prepare).
    sqlx::Executor::execute(&mut *conn, sql).await.map_err(|e| anyhow!(describe(&e)))?;
    Ok(())
}

pub async fn exec_all(conn: &mut MySqlConnection, stmts: &[String]) -> Result<()> {
    for s in stmts {
        exec(conn, s).await?;
    }
    Ok(())
}

/// Read any column of a row as text, whatever its SQL type.
pub fn col_text(row: &MySqlRow, name: &str) -> Option<String> {
    if let Ok(v) = row.try_get::<Option<String>, _>(name) {
        return v;
    }
    if let Ok(v) = row.try_get::<Option<i64>, _>(name) {
        return v.map(|x| x.to_string());
    }
    if let Ok(v) = row.try_get::<Option<u64>, _>(name) {
        return v.map(|x| x.to_string());
    }
    if let Ok(v) = row.try_get::<Option<f64>, _>(name) {
        return v.map(|x| x.to_string());
    }
    if let Ok(v) = row.try_get::<Option<Vec<u8>>, _>(name) {
        return v.map(|x| String::from_utf8_lossy(&x).into_owned());
    }
    // DECIMAL and other types sent as text.
    row.try_get_unchecked::<Option<String>, _>(name).ok().flatten()
}

pub fn col_text_at(row: &MySqlRow, idx: usize) -> Option<String> {
    if let Ok(v) = row.try_get::<Option<String>, _>(idx) {
        return v;
    }
    if let Ok(v) = row.try_get::<Option<i64>, _>(idx) {
        return v.map(|x| x.to_string());
    }
    if let Ok(v) = row.try_get::<Option<u64>, _>(idx) {
        return v.map(|x| x.to_string());
    }
    if let Ok(v) = row.try_get::<Option<f64>, _>(idx) {
        return v.map(|x| x.to_string());
    }
    if let Ok(v) = row.try_get::<Option<Vec<u8>>, _>(idx) {
        return v.map(|x| String::from_utf8_lossy(&x).into_owned());
    }
    // DECIMAL and other types sent as text.
    row.try_get_unchecked::<Option<String>, _>(idx).ok().flatten()
}

/// First column of the first row, as text.
pub async fn query_text(conn: &mut MySqlConnection, sql: &str) -> Result<Option<String>> {
    let rows = fetch_all(conn, sql).await?;
    Ok(rows.first().and_then(|r| col_text_at(r, 0)))
}

pub async fn query_i64(conn: &mut MySqlConnection, sql: &str) -> Result<i64> {
    let t = query_text(conn, sql).await?.ok_or_else(|| anyhow!("no value from `{sql}`"))?;
    t.trim().parse::<i64>().with_context(|| format!("not a number from `{sql}`: {t}"))
}

pub async fn fetch_all(conn: &mut MySqlConnection, sql: &str) -> Result<Vec<MySqlRow>> {
    sqlx::Executor::fetch_all(&mut *conn, sql).await.map_err(|e| anyhow!(describe(&e)))
}

/// What SHOW SLAVE/REPLICA STATUS says.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct ReplicaStatus {
    pub io_running: String,
    pub sql_running: String,
    pub seconds_behind: Option<u64>,
    pub last_io_error: String,
    pub last_sql_error: String,
}

impl ReplicaStatus {
    pub fn healthy(&self) -> bool {
        self.io_running == "Yes" && self.sql_running == "Yes"
    }

    /// One line about what is wrong, for error messages.
    pub fn problem(&self) -> String {
        let mut parts = vec![format!("IO thread {}, SQL thread {}", self.io_running, self.sql_running)];
        if !self.last_io_error.is_empty() {
            parts.push(format!("IO error: {}", self.last_io_error));
        }
        if !self.last_sql_error.is_empty() {
            parts.push(format!("SQL error: {}", self.last_sql_error));
        }
        parts.join("; ")
    }
}

/// SHOW SLAVE STATUS, or None when the node is not a replica.
pub async fn replica_status(conn: &mut MySqlConnection, d: &Dialect) -> Result<Option<ReplicaStatus>> {
    let rows = fetch_all(conn, d.show_replica_status()).await?;
    let Some(row) = rows.first() else { return Ok(None) };
    let [io, sqlc, behind, ioerr, sqlerr] = d.status_columns();
    Ok(Some(ReplicaStatus {
        io_running: col_text(row, io).unwrap_or_default(),
        sql_running: col_text(row, sqlc).unwrap_or_default(),
        seconds_behind: col_text(row, behind).and_then(|s| s.parse().ok()),
        last_io_error: col_text(row, ioerr).unwrap_or_default(),
        last_sql_error: col_text(row, sqlerr).unwrap_or_default(),
    }))
}

pub async fn close(conn: MySqlConnection) {
    let _ = conn.close().await;
}
