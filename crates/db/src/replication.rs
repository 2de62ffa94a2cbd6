//! Replication as SQL sees it, for every backend and for the servers a user
//! names: replica status, the guardrail a replica must pass before it is
//! promoted, a server's facts (version, read-only, GTID position), and why
//! replication does not carry the primary's writes.

use anyhow::Result;
use serde::{Deserialize, Serialize};
use sqlx::mysql::MySqlConnection;

use crate::dialect::Dialect;
use crate::status::{self, Thread};
use coldswap_sql as sql;

/// What SHOW SLAVE/REPLICA STATUS says.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ReplicaStatus {
    /// `Yes`, `No` or `Connecting`.
    pub io_running: String,
    /// `Yes` or `No`.
    pub sql_running: String,
    /// Seconds_Behind_Master / Seconds_Behind_Source (None: not running).
    pub seconds_behind: Option<u64>,
    /// The IO thread's last error.
    pub last_io_error: String,
    /// The SQL thread's last error.
    pub last_sql_error: String,
}

impl ReplicaStatus {
    /// Both threads run.
    pub fn healthy(&self) -> bool {
        self.io() == Thread::Running && self.sql() == Thread::Running
    }

    /// The IO thread's state, parsed.
    pub fn io(&self) -> Thread {
        status::replica_thread(&self.io_running)
    }

    /// The SQL thread's state, parsed.
    pub fn sql(&self) -> Thread {
        status::replica_thread(&self.sql_running)
    }

    /// A thread has stopped (not merely reconnecting).
    pub fn stopped(&self) -> bool {
        self.io() == Thread::Stopped || self.sql() == Thread::Stopped
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

/// SHOW SLAVE/REPLICA STATUS, or None when the server is not a replica.
pub async fn replica_status(conn: &mut MySqlConnection, d: &Dialect) -> Result<Option<ReplicaStatus>> {
    let rows = sql::fetch_all(conn, d.show_replica_status()).await?;
    let Some(row) = rows.first() else { return Ok(None) };
    let [io, sqlc, behind, ioerr, sqlerr] = d.status_columns();
    Ok(Some(ReplicaStatus {
        io_running: sql::col_text(row, io).unwrap_or_default(),
        sql_running: sql::col_text(row, sqlc).unwrap_or_default(),
        seconds_behind: sql::col_text(row, behind).and_then(|s| s.parse().ok()),
        last_io_error: sql::col_text(row, ioerr).unwrap_or_default(),
        last_sql_error: sql::col_text(row, sqlerr).unwrap_or_default(),
    }))
}

/// Why a replica may not be promoted. Displayed with the replica's name
/// and its source's (`"node2"`, `"the replica at 10.0.0.5:3306"`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refusal {
    /// SHOW REPLICA STATUS is empty.
    #[error("{replica} is not replicating")]
    NotReplicating {
        /// The replica's name.
        replica: String,
    },
    /// A thread stopped.
    #[error("replication on {replica} is broken ({problem})")]
    Broken {
        /// The replica's name.
        replica: String,
        /// [`ReplicaStatus::problem`].
        problem: String,
    },
    /// Further behind than the limit.
    #[error("{replica} lags {lag} s behind {primary} (limit {limit} s)")]
    Lagging {
        /// The replica's name.
        replica: String,
        /// The name of the server it replicates from.
        primary: String,
        /// Seconds behind.
        lag: u64,
        /// The limit.
        limit: f64,
    },
    /// Threads run but no lag is reported.
    #[error("{replica} reports no lag (replication not running)")]
    NoLag {
        /// The replica's name.
        replica: String,
    },
}

/// The guardrail every promotion passes first: replicating, healthy, and
/// within `max_lag_s` of its source.
pub fn check_promotable(
    status: Option<&ReplicaStatus>,
    max_lag_s: f64,
    replica: &str,
    primary: &str,
) -> std::result::Result<(), Refusal> {
    let replica = replica.to_string();
    let st = status.ok_or_else(|| Refusal::NotReplicating { replica: replica.clone() })?;
    if !st.healthy() {
        return Err(Refusal::Broken { replica, problem: st.problem() });
    }
    match st.seconds_behind {
        Some(lag) if (lag as f64) > max_lag_s => {
            Err(Refusal::Lagging { replica, primary: primary.to_string(), lag, limit: max_lag_s })
        }
        None => Err(Refusal::NoLag { replica }),
        _ => Ok(()),
    }
}

/// What one server says of itself.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ServerFacts {
    /// `SELECT VERSION()`.
    pub version: Option<String>,
    /// `@@GLOBAL.read_only`.
    pub read_only: Option<bool>,
    /// The executed GTID set or position.
    pub gtid_position: Option<String>,
    /// Its replica status, when it replicates.
    pub replication: Option<ReplicaStatus>,
}

/// Version, read-only, GTID position and replication of a server, each left
/// out when it cannot be read.
pub async fn server_facts(conn: &mut MySqlConnection, d: &Dialect) -> ServerFacts {
    ServerFacts {
        version: sql::query_text(conn, "SELECT VERSION()").await.ok().flatten(),
        read_only: sql::query_i64(conn, "SELECT @@GLOBAL.read_only").await.ok().map(|v| v != 0),
        gtid_position: sql::query_text(conn, d.gtid_executed_query()).await.ok().flatten(),
        replication: replica_status(conn, d).await.ok().flatten(),
    }
}

/// Why replication does not (yet) carry the primary's writes.
#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    /// The replica's threads stopped.
    #[error("replication from {primary} to {replica} is broken: {problem}")]
    Broken {
        /// The name of the server it replicates from.
        primary: String,
        /// The replica's name.
        replica: String,
        /// [`ReplicaStatus::problem`].
        problem: String,
    },
    /// The replica does not replicate at all.
    #[error("{replica} is not replicating")]
    NotReplicating {
        /// The replica's name.
        replica: String,
    },
    /// Healthy, but a heartbeat did not arrive in time (lag or a stuck applier).
    #[error("replica {replica} did not apply a heartbeat within {seconds:.0} s")]
    HeartbeatTimeout {
        /// The replica's name.
        replica: String,
        /// The time allowed.
        seconds: f64,
    },
    /// Anything else (a connection, the cluster has no replica...).
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(io: &str, sqlr: &str, lag: Option<u64>) -> ReplicaStatus {
        ReplicaStatus { io_running: io.into(), sql_running: sqlr.into(), seconds_behind: lag, ..Default::default() }
    }

    #[test]
    fn the_guardrail_names_each_refusal() {
        assert!(check_promotable(Some(&st("Yes", "Yes", Some(0))), 5.0, "node2", "node1").is_ok());
        assert_eq!(check_promotable(None, 5.0, "node2", "node1").unwrap_err().to_string(), "node2 is not replicating");
        let e = check_promotable(Some(&st("Yes", "No", None)), 5.0, "node2", "node1").unwrap_err();
        assert!(matches!(e, Refusal::Broken { .. }));
        assert!(e.to_string().starts_with("replication on node2 is broken (IO thread Yes, SQL thread No"), "{e}");
        let e = check_promotable(Some(&st("Yes", "Yes", Some(9))), 1.0, "node2", "node1").unwrap_err();
        assert_eq!(e.to_string(), "node2 lags 9 s behind node1 (limit 1 s)");
        let e = check_promotable(Some(&st("Yes", "Yes", None)), 1.0, "the replica at x", "the primary").unwrap_err();
        assert_eq!(e.to_string(), "the replica at x reports no lag (replication not running)");
    }
}
