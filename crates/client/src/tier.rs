//! A model of the API tier between the users and MySQL: a bounded
//! connection pool shared by every request, a per-request deadline, a
//! pool-acquire timeout, and optional client retries with backoff. Every
//! failure is classified, as an SRE would read it on a dashboard.

use serde::{Deserialize, Serialize};
use sqlx::mysql::MySqlConnectOptions;
use sqlx::{ConnectOptions, Connection};
use std::time::Duration;

use crate::gen::Value;
use crate::mix::Stmt;

/// `[api]`: the API tier between users and the database.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TierConfig {
    /// Connections the API tier holds to the database, shared by all users.
    pub pool_size: u32,
    /// How long a request waits for a free connection, ms.
    pub acquire_timeout_ms: u64,
    /// The request deadline (the API's own timeout), ms.
    pub deadline_ms: u64,
    /// Client retries of a failed request (0: none).
    pub retries: u32,
    /// First retry backoff, ms (doubles each retry).
    pub backoff_ms: u64,
    /// How statements go to the server: `text` (values inline, as most ORMs
    /// send them; the server keeps statement digests for these) or `binary`
    /// (server-side prepared statements).
    pub protocol: Protocol,
}

/// How statements go to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// Values inline (COM_QUERY), as most ORMs send them.
    #[default]
    Text,
    /// Server-side prepared statements (the binary protocol).
    Binary,
}

impl std::str::FromStr for Protocol {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Protocol> {
        match s {
            "text" => Ok(Protocol::Text),
            "binary" | "prepared" => Ok(Protocol::Binary),
            o => anyhow::bail!("unknown protocol '{o}' (text or binary)"),
        }
    }
}

/// A value as an SQL literal (the text protocol). Strings are quoted with
/// quotes and backslashes doubled.
pub fn literal(v: &Option<Value>, out: &mut String) {
    match v {
        Some(Value::Int(i)) => {
            use std::fmt::Write;
            let _ = write!(out, "{i}");
        }
        Some(Value::Str(s)) => {
            out.push('\'');
            for c in s.chars() {
                match c {
                    '\'' => out.push_str("''"),
                    '\\' => out.push_str("\\\\"),
                    '\0' => out.push_str("\\0"),
                    c => out.push(c),
                }
            }
            out.push('\'');
        }
        None => out.push_str("NULL"),
    }
}

/// A statement with its values inline.
pub fn inline(s: &Stmt, vals: &[Option<Value>]) -> String {
    let mut out = String::with_capacity(s.sql.len() + 16 * s.params.len());
    for (i, part) in s.parts.iter().enumerate() {
        out.push_str(part);
        if let Some(&p) = s.params.get(i) {
            literal(&vals[p], &mut out);
        }
    }
    out
}

impl Default for TierConfig {
    fn default() -> Self {
        TierConfig {
            pool_size: 32,
            acquire_timeout_ms: 1000,
            deadline_ms: 2000,
            retries: 0,
            backoff_ms: 100,
            protocol: Protocol::Text,
        }
    }
}

impl TierConfig {
    /// Fail on settings that cannot run.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.pool_size == 0 {
            anyhow::bail!("pool_size must be at least 1");
        }
        if self.deadline_ms == 0 || self.acquire_timeout_ms == 0 {
            anyhow::bail!("deadline_ms and acquire_timeout_ms must be positive");
        }
        if self.retries > 10 {
            anyhow::bail!("retries must be at most 10");
        }
        Ok(())
    }
}

/// Why a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailClass {
    /// The request deadline passed (API timeout).
    DeadlineExceeded,
    /// No pool connection within the acquire timeout.
    PoolExhausted,
    /// The database (or endpoint) refused the connection.
    ConnectionRefused,
    /// The connection broke: reset, closed, EOF, "server has gone away".
    ConnectionReset,
    /// The server is read-only (fenced primary, or a replica).
    ReadOnly,
    /// Any other error the server answered with.
    SqlError,
    /// Anything else (a client-side failure).
    Other,
}

impl FailClass {
    /// The class's name in reports (`deadline_exceeded`, ...).
    pub fn as_str(&self) -> &'static str {
        match self {
            FailClass::DeadlineExceeded => "deadline_exceeded",
            FailClass::PoolExhausted => "pool_exhausted",
            FailClass::ConnectionRefused => "connection_refused",
            FailClass::ConnectionReset => "connection_reset",
            FailClass::ReadOnly => "read_only",
            FailClass::SqlError => "sql_error",
            FailClass::Other => "other",
        }
    }

    /// A client retries what a healthy system would have served.
    pub fn retryable(&self) -> bool {
        !matches!(self, FailClass::SqlError | FailClass::Other)
    }
}

/// Classify a sqlx error. `pool_short` says whether the pool had room for
/// another connection when the acquire timed out (then the time went into
/// failed connection attempts, not into waiting for a busy pool).
pub fn classify(e: &sqlx::Error, pool_short: bool) -> FailClass {
    use std::io::ErrorKind::*;
    match e {
        sqlx::Error::PoolTimedOut => {
            if pool_short {
                FailClass::ConnectionRefused
            } else {
                FailClass::PoolExhausted
            }
        }
        sqlx::Error::Io(io) => match io.kind() {
            ConnectionRefused => FailClass::ConnectionRefused,
            _ => FailClass::ConnectionReset,
        },
        sqlx::Error::Database(d) => match coldswap_sql::error_number(e) {
            // ER_OPTION_PREVENTS_STATEMENT, ER_READ_ONLY_MODE, ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION
            Some(1290) | Some(1836) | Some(1792) => FailClass::ReadOnly,
            // server shutdown in progress / connection killed / lost connection
            Some(1053) | Some(1927) | Some(2006) | Some(2013) => FailClass::ConnectionReset,
            _ => {
                let m = d.message();
                if m.contains("read-only") || m.contains("read only") {
                    FailClass::ReadOnly
                } else {
                    FailClass::SqlError
                }
            }
        },
        sqlx::Error::Protocol(_) | sqlx::Error::WorkerCrashed => FailClass::ConnectionReset,
        _ => FailClass::Other,
    }
}

/// A short error text without secrets.
pub fn error_text(e: &sqlx::Error) -> String {
    coldswap_sql::describe(e)
}

/// What one request came to.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Whether the request succeeded.
    pub ok: bool,
    /// Its failure class, when it failed.
    pub class: Option<FailClass>,
    /// The error message, when it failed.
    pub error: Option<String>,
    /// Attempts, retries included.
    pub attempts: u32,
    /// Rows returned by the last statement.
    pub rows: u64,
}

/// The API tier's connection pool: at most `pool_size` connections, idle
/// ones reused, a bounded wait for a free one. (sqlx's own pool pings every
/// connection as it is released, one extra round trip per request, which
/// halved the throughput of a point-select mix; this one trusts a connection
/// that just answered and drops one that failed or was cancelled.)
struct Pool {
    opts: MySqlConnectOptions,
    idle: std::sync::Mutex<Vec<sqlx::MySqlConnection>>,
    permits: tokio::sync::Semaphore,
    open: std::sync::atomic::AtomicU32,
    acquire_timeout: Duration,
}

struct Pooled<'a> {
    pool: &'a Pool,
    conn: Option<sqlx::MySqlConnection>,
    healthy: bool,
    _permit: tokio::sync::SemaphorePermit<'a>,
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.conn.take() {
            if self.healthy {
                self.pool.idle.lock().unwrap().push(c);
            } else {
                // Broken, or left mid-statement by a deadline: never reuse.
                self.pool.open.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                drop(c);
            }
        }
    }
}

impl Pool {
    async fn acquire(&self) -> Result<Pooled<'_>, (FailClass, String)> {
        let permit = match tokio::time::timeout(self.acquire_timeout, self.permits.acquire()).await {
            Ok(Ok(p)) => p,
            Ok(Err(_)) => return Err((FailClass::Other, "pool closed".into())),
            Err(_) => {
                return Err((
                    FailClass::PoolExhausted,
                    format!("no free connection within {} ms", self.acquire_timeout.as_millis()),
                ))
            }
        };
        let idle = self.idle.lock().unwrap().pop();
        let conn = match idle {
            Some(c) => c,
            None => {
                let c = tokio::time::timeout(self.acquire_timeout, sqlx::MySqlConnection::connect_with(&self.opts))
                    .await
                    .map_err(|_| {
                        (
                            FailClass::ConnectionRefused,
                            format!("connect timed out after {} ms", self.acquire_timeout.as_millis()),
                        )
                    })?
                    .map_err(|e| (classify(&e, false), error_text(&e)))?;
                self.open.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                c
            }
        };
        Ok(Pooled { pool: self, conn: Some(conn), healthy: false, _permit: permit })
    }
}

/// The API tier: requests share its pool.
#[derive(Clone)]
pub struct Tier {
    pool: std::sync::Arc<Pool>,
    cfg: TierConfig,
}

impl Tier {
    /// A lazily connecting pool to `opts` (errors show up per request, as
    /// they would in the API).
    pub fn new(opts: MySqlConnectOptions, cfg: TierConfig) -> Tier {
        let opts = opts.disable_statement_logging();
        let pool = Pool {
            opts,
            idle: std::sync::Mutex::new(Vec::new()),
            permits: tokio::sync::Semaphore::new(cfg.pool_size as usize),
            open: std::sync::atomic::AtomicU32::new(0),
            acquire_timeout: Duration::from_millis(cfg.acquire_timeout_ms),
        };
        Tier { pool: std::sync::Arc::new(pool), cfg }
    }

    /// Its settings.
    pub fn config(&self) -> &TierConfig {
        &self.cfg
    }

    /// Connections open now.
    pub fn open_connections(&self) -> u32 {
        self.pool.open.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Run statements once, within `deadline`.
    async fn attempt(
        &self,
        steps: &[Stmt],
        vals: &[Option<Value>],
        atomic: bool,
        deadline: Duration,
    ) -> Result<u64, (FailClass, String)> {
        let work = async {
            let mut pc = self.pool.acquire().await?;
            let conn = pc.conn.as_mut().unwrap();
            let r = async {
                let mut rows = 0u64;
                if atomic {
                    let mut tx = conn.begin().await.map_err(|e| (classify(&e, false), error_text(&e)))?;
                    for s in steps {
                        rows = run_stmt(&mut tx, s, vals, self.cfg.protocol).await?;
                    }
                    tx.commit().await.map_err(|e| (classify(&e, false), error_text(&e)))?;
                } else {
                    for s in steps {
                        rows = run_stmt(conn, s, vals, self.cfg.protocol).await?;
                    }
                }
                Ok(rows)
            }
            .await;
            // A connection that answered (even with an SQL error) is reusable.
            pc.healthy = matches!(&r, Ok(_) | Err((FailClass::SqlError, _)) | Err((FailClass::ReadOnly, _)));
            r
        };
        match tokio::time::timeout(deadline, work).await {
            Ok(r) => r,
            Err(_) => Err((FailClass::DeadlineExceeded, format!("deadline of {} ms exceeded", deadline.as_millis()))),
        }
    }

    /// Run a request: its statements, with client retries.
    pub async fn request(
        &self,
        steps: &[Stmt],
        vals: &[Option<Value>],
        atomic: bool,
        deadline: Option<Duration>,
    ) -> Outcome {
        let deadline = deadline.unwrap_or(Duration::from_millis(self.cfg.deadline_ms));
        let mut backoff = Duration::from_millis(self.cfg.backoff_ms);
        let mut attempts = 0;
        loop {
            attempts += 1;
            match self.attempt(steps, vals, atomic, deadline).await {
                Ok(rows) => return Outcome { ok: true, class: None, error: None, attempts, rows },
                Err((class, msg)) => {
                    if attempts > self.cfg.retries || !class.retryable() {
                        return Outcome { ok: false, class: Some(class), error: Some(msg), attempts, rows: 0 };
                    }
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                }
            }
        }
    }

    /// Run one SELECT and return its first column as integers.
    pub async fn query_all_u64(&self, s: &Stmt, vals: &[Option<Value>]) -> Result<Vec<u64>, (FailClass, String)> {
        let deadline = Duration::from_millis(self.cfg.deadline_ms);
        let work = async {
            let mut pc = self.pool.acquire().await?;
            let conn = pc.conn.as_mut().unwrap();
            let text = inline(s, vals);
            let r = sqlx::Executor::fetch_all(&mut *conn, text.as_str())
                .await
                .map_err(|e| (classify(&e, false), error_text(&e)));
            pc.healthy = r.is_ok();
            let rows = r?;
            use sqlx::Row;
            Ok(rows
                .iter()
                .filter_map(|r| r.try_get::<u64, _>(0).ok().or_else(|| r.try_get::<i64, _>(0).ok().map(|x| x as u64)))
                .collect())
        };
        match tokio::time::timeout(deadline, work).await {
            Ok(r) => r,
            Err(_) => Err((FailClass::DeadlineExceeded, "deadline exceeded".into())),
        }
    }

    /// The first value of [`Tier::query_all_u64`].
    pub async fn query_first_u64(&self, s: &Stmt, vals: &[Option<Value>]) -> Result<Option<u64>, (FailClass, String)> {
        Ok(self.query_all_u64(s, vals).await?.into_iter().next())
    }

    /// Close idle connections.
    pub async fn close(&self) {
        let conns: Vec<_> = self.pool.idle.lock().unwrap().drain(..).collect();
        for c in conns {
            let _ = c.close().await;
        }
    }
}

async fn run_stmt(
    conn: &mut sqlx::MySqlConnection,
    s: &Stmt,
    vals: &[Option<Value>],
    protocol: Protocol,
) -> Result<u64, (FailClass, String)> {
    if protocol == Protocol::Text {
        let text = inline(s, vals);
        return if s.is_select() {
            let rows = sqlx::Executor::fetch_all(&mut *conn, text.as_str())
                .await
                .map_err(|e| (classify(&e, false), error_text(&e)))?;
            Ok(rows.len() as u64)
        } else {
            let r = sqlx::Executor::execute(&mut *conn, text.as_str())
                .await
                .map_err(|e| (classify(&e, false), error_text(&e)))?;
            Ok(r.rows_affected())
        };
    }
    let mut q = sqlx::query(&s.sql);
    for &p in &s.params {
        q = match &vals[p] {
            Some(Value::Int(i)) => q.bind(*i),
            Some(Value::Str(st)) => q.bind(st.clone()),
            None => q.bind(None::<i64>),
        };
    }
    if s.is_select() {
        let rows = q.fetch_all(&mut *conn).await.map_err(|e| (classify(&e, false), error_text(&e)))?;
        Ok(rows.len() as u64)
    } else {
        let r = q.execute(&mut *conn).await.map_err(|e| (classify(&e, false), error_text(&e)))?;
        Ok(r.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_are_escaped() {
        let mut o = String::new();
        literal(&Some(Value::Str("a'b\\c".into())), &mut o);
        assert_eq!(o, "'a''b\\\\c'");
        let s = Stmt {
            text: String::new(),
            sql: "SELECT ? , ?".into(),
            params: vec![0, 1],
            parts: vec!["SELECT ".into(), " , ".into(), "".into()],
            line: 1,
        };
        assert_eq!(inline(&s, &[Some(Value::Int(-4)), None]), "SELECT -4 , NULL");
    }

    #[test]
    fn io_errors_classify() {
        let e = sqlx::Error::Io(std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "x"));
        assert_eq!(classify(&e, false), FailClass::ConnectionRefused);
        let e = sqlx::Error::Io(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "x"));
        assert_eq!(classify(&e, false), FailClass::ConnectionReset);
        assert_eq!(classify(&sqlx::Error::PoolTimedOut, false), FailClass::PoolExhausted);
        assert_eq!(classify(&sqlx::Error::PoolTimedOut, true), FailClass::ConnectionRefused);
        assert!(FailClass::ReadOnly.retryable());
        assert!(!FailClass::SqlError.retryable());
    }
}
