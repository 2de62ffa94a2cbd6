//! The cluster record kept in `<run dir>/cluster.json`.
//!
//! The record has a format number. Format 1 (before the backend seam) kept
//! backend details as optional fields of every node; it is read and
//! converted, so a cluster started by an older coldswap can still be
//! inspected and taken down.

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

use crate::backend::BackendState;
use crate::node::NodeState;

/// File name of the record inside a run dir.
pub const STATE_FILE: &str = "cluster.json";
/// The format this coldswap writes.
pub const FORMAT: u32 = 2;

/// The whole record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterState {
    /// [`FORMAT`].
    pub format: u32,
    /// The backend and what it recorded of the cluster.
    pub backend: BackendState,
    /// The run dir (absolute).
    pub run_dir: PathBuf,
    /// The nodes, primary first at creation.
    pub nodes: Vec<NodeState>,
    /// The process that owns a non-persistent cluster.
    pub owner_pid: u32,
    /// Outlives its process (`coldswap cluster up`).
    pub persistent: bool,
    /// The version a later upgrade goes to.
    pub to: Option<String>,
}

/// Read a run dir's record, converting an older format.
pub fn read(run_dir: &Path) -> Result<ClusterState> {
    let p = run_dir.join(STATE_FILE);
    let text = std::fs::read_to_string(&p)
        .with_context(|| format!("no cluster in {} (no {STATE_FILE})", run_dir.display()))?;
    parse(&text).with_context(|| format!("{} is not a cluster record", p.display()))
}

/// Parse a record of any known format.
pub fn parse(text: &str) -> Result<ClusterState> {
    #[derive(Deserialize)]
    struct Head {
        #[serde(default)]
        format: u32,
    }
    let head: Head = serde_json::from_str(text).map_err(|e| anyhow!("{e}"))?;
    match head.format {
        FORMAT => serde_json::from_str(text).map_err(|e| anyhow!("{e}")),
        1 => {
            let old = crate::backend::legacy::read_format_1(text)?;
            Ok(ClusterState {
                format: FORMAT,
                backend: old.backend,
                run_dir: old.run_dir,
                nodes: old.nodes,
                owner_pid: old.owner_pid,
                persistent: old.persistent,
                to: old.to,
            })
        }
        n => bail!("written by a newer coldswap (format {n}; this one reads 1 and {FORMAT}): use that coldswap to take it down"),
    }
}

/// Write the record atomically: a reader or a crash never sees half of it.
pub fn write(state: &ClusterState) -> Result<()> {
    crate::files::write_atomic(&state.run_dir.join(STATE_FILE), serde_json::to_string_pretty(state)?.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use coldswap_sql::Version;

    const V1_PROCESS: &str = r#"{
      "format": 1, "backend": "process", "run_dir": "/tmp/r", "owner_pid": 7, "persistent": true, "to": "mariadb-10.11.19",
      "nodes": [{"name": "node1", "role": "primary", "host": "127.0.0.1", "port": 4000, "server_id": 1,
        "dist": {"spec": "mariadb-10.11.18", "flavor": "mariadb", "version": [10, 11, 18], "version_string": "10.11.18-MariaDB",
                 "basedir": "/c/usr", "server_bin": "/c/usr/sbin/mariadbd", "install": {"kind": "install_db", "path": "/c/usr/bin/mariadb-install-db"},
                 "upgrade_bin": null, "lc_messages_dir": null, "plugin_dir": null},
        "dir": "/tmp/r/node1", "pid": 1234, "buffer_pool_mb": 64}]
    }"#;

    const V1_CONTAINER: &str = r#"{
      "format": 1, "backend": "container", "run_dir": "/tmp/r", "owner_pid": 7, "persistent": false, "to": null,
      "container": {"options": {"startup_timeout_s": 180}, "run_id": "cs-00aa", "network": "cs-00aa-net"},
      "nodes": [{"name": "node1", "role": "replica", "host": "127.0.0.1", "port": 4001, "server_id": 2,
        "dist": {"spec": "coldswap/mariadb:11.8", "flavor": "mariadb", "version": [11, 8, 3], "version_string": "11.8.3",
                 "basedir": "/usr", "server_bin": "/usr/sbin/mariadbd", "install": {"kind": "initialize"},
                 "upgrade_bin": "/usr/bin/mariadb-upgrade", "lc_messages_dir": null, "plugin_dir": null},
        "dir": "/tmp/r/node1", "pid": null, "container": "cs-00aa-node1", "volume": "cs-00aa-node1-data",
        "peer_host": "cs-00aa-node1", "peer_port": 3306, "buffer_pool_mb": 64}]
    }"#;

    #[test]
    fn format_1_records_are_converted() {
        let s = parse(V1_PROCESS).unwrap();
        assert_eq!(s.format, FORMAT);
        assert_eq!(s.backend.kind(), crate::BackendKind::Process);
        assert_eq!(s.nodes[0].handle.pid(), Some(1234));
        assert_eq!(s.nodes[0].version(), Version(10, 11, 18));
        let c = parse(V1_CONTAINER).unwrap();
        assert_eq!(c.backend.kind(), crate::BackendKind::Container);
        assert_eq!(c.nodes[0].handle.container(), Some("cs-00aa-node1"));
        assert_eq!(c.nodes[0].software.spec(), "coldswap/mariadb:11.8");
        // A converted record writes back in the current format and reads again.
        let again = parse(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(again.nodes[0].handle, c.nodes[0].handle);
    }

    #[test]
    fn unknown_formats_are_one_line() {
        let e = parse(r#"{"format": 9}"#).unwrap_err().to_string();
        assert!(e.contains("newer coldswap (format 9"), "{e}");
        assert!(parse("not json").is_err());
    }
}
