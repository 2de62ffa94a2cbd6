//! coldswap's **sql**: talking to a MySQL or MariaDB server, for every
//! other crate.
//!
//! * connection options with statement logging off (CHANGE MASTER carries a
//!   password and must never reach a log), and connecting with a timeout;
//! * error descriptions without passwords, and the server's error numbers;
//! * text-protocol statements and one-value queries;
//! * [`server`]: which server answers (flavor and version, from `VERSION()`);
//! * InnoDB's tablespace ids and the tables they hold, from the dictionary.
//!
//! ```no_run
//! # async fn f() -> anyhow::Result<()> {
//! let opts = coldswap_sql::tcp_options("127.0.0.1", 3306, "app", "secret");
//! let mut c = coldswap_sql::connect(&opts, std::time::Duration::from_secs(5)).await?;
//! let v = coldswap_sql::query_text(&mut c, "SELECT VERSION()").await?;
//! coldswap_sql::close(c).await;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

pub mod server;

pub use server::{parse_server_version, Flavor, Version};
pub use sqlx::mysql::MySqlConnectOptions;

use anyhow::{anyhow, Context, Result};
use sqlx::mysql::{MySqlConnection, MySqlRow};
use sqlx::{ConnectOptions, Connection, Row};
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

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

/// Connect, giving up after `timeout`; the error is one password-free line.
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

/// Run one statement through the text protocol.
pub async fn exec(conn: &mut MySqlConnection, sql: &str) -> Result<()> {
    // A plain &str runs as COM_QUERY (text protocol, no prepare).
    sqlx::Executor::execute(&mut *conn, sql).await.map_err(|e| anyhow!(describe(&e)))?;
    Ok(())
}

/// Run statements in order, stopping at the first error.
pub async fn exec_all(conn: &mut MySqlConnection, stmts: &[String]) -> Result<()> {
    for s in stmts {
        exec(conn, s).await?;
    }
    Ok(())
}

/// Read any column of a row as text, whatever its SQL type.
pub fn col_text(row: &MySqlRow, name: &str) -> Option<String> {
    text_of(row, name)
}

/// Read the column at `idx` of a row as text, whatever its SQL type.
pub fn col_text_at(row: &MySqlRow, idx: usize) -> Option<String> {
    text_of(row, idx)
}

fn text_of<I: sqlx::ColumnIndex<MySqlRow> + Copy>(row: &MySqlRow, i: I) -> Option<String> {
    if let Ok(v) = row.try_get::<Option<String>, _>(i) {
        return v;
    }
    if let Ok(v) = row.try_get::<Option<i64>, _>(i) {
        return v.map(|x| x.to_string());
    }
    if let Ok(v) = row.try_get::<Option<u64>, _>(i) {
        return v.map(|x| x.to_string());
    }
    if let Ok(v) = row.try_get::<Option<f64>, _>(i) {
        return v.map(|x| x.to_string());
    }
    if let Ok(v) = row.try_get::<Option<Vec<u8>>, _>(i) {
        return v.map(|x| String::from_utf8_lossy(&x).into_owned());
    }
    // DECIMAL and other types sent as text.
    row.try_get_unchecked::<Option<String>, _>(i).ok().flatten()
}

/// First column of the first row, as text.
pub async fn query_text(conn: &mut MySqlConnection, sql: &str) -> Result<Option<String>> {
    let rows = fetch_all(conn, sql).await?;
    Ok(rows.first().and_then(|r| col_text_at(r, 0)))
}

/// First column of the first row, as an integer.
pub async fn query_i64(conn: &mut MySqlConnection, sql: &str) -> Result<i64> {
    let t = query_text(conn, sql).await?.ok_or_else(|| anyhow!("no value from `{sql}`"))?;
    t.trim().parse::<i64>().with_context(|| format!("not a number from `{sql}`: {t}"))
}

/// Every row of a text-protocol query.
pub async fn fetch_all(conn: &mut MySqlConnection, sql: &str) -> Result<Vec<MySqlRow>> {
    sqlx::Executor::fetch_all(&mut *conn, sql).await.map_err(|e| anyhow!(describe(&e)))
}

/// Close a connection politely (COM_QUIT), ignoring errors.
pub async fn close(conn: MySqlConnection) {
    let _ = conn.close().await;
}

/// InnoDB's tablespace id -> table name (`db/table`, as the dictionary
/// spells it) for every file-per-table tablespace, read from the dictionary
/// on disk, not from the open-table cache: a freshly restarted server has
/// opened none of its tables. `INNODB_TABLES` on MySQL 8.0 and later,
/// `INNODB_SYS_TABLES` on MariaDB and MySQL 5.7.
pub async fn innodb_tablespaces(conn: &mut MySqlConnection) -> Result<HashMap<u64, String>> {
    let rows = match fetch_all(conn, "SELECT SPACE, NAME FROM information_schema.INNODB_TABLES WHERE SPACE <> 0").await
    {
        Ok(r) => r,
        Err(_) => fetch_all(conn, "SELECT SPACE, NAME FROM information_schema.INNODB_SYS_TABLES WHERE SPACE <> 0")
            .await
            .context("reading InnoDB's table dictionary")?,
    };
    let mut m = HashMap::new();
    for r in rows {
        if let (Some(id), Some(name)) = (col_text_at(&r, 0), col_text_at(&r, 1)) {
            if let Ok(id) = id.parse() {
                m.insert(id, name);
            }
        }
    }
    Ok(m)
}
