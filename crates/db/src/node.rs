//! One database server of a cluster, as recorded in the run dir.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

use crate::dialect::Dialect;
use crate::dist::Dist;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Primary,
    Replica,
    /// A former primary that refuses writes and replicates from nobody.
    Fenced,
    Stopped,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Primary => "primary",
            Role::Replica => "replica",
            Role::Fenced => "fenced",
            Role::Stopped => "stopped",
        })
    }
}

/// Environment and flags added to a server at start, by the nemesis
/// (cold storage) or the user. The db crate passes them through untouched.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Extras {
    #[serde(default)]
    pub env: Vec<(String, String)>,
    #[serde(default)]
    pub args: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeState {
    pub name: String,
    pub role: Role,
    /// Address clients and replicas use.
    pub host: String,
    pub port: u16,
    pub server_id: u32,
    pub dist: Dist,
    /// Process backend: the node's own directory (data, socket, logs).
    pub dir: PathBuf,
    pub pid: Option<u32>,
    /// Container backend: container name and named volume.
    #[serde(default)]
    pub container: Option<String>,
    #[serde(default)]
    pub volume: Option<String>,
    /// Address of the node as other nodes see it (container name on a network).
    #[serde(default)]
    pub peer_host: Option<String>,
    #[serde(default)]
    pub peer_port: Option<u16>,
    pub buffer_pool_mb: u32,
    #[serde(default)]
    pub extras: Extras,
    /// Server version string as last seen by SELECT VERSION().
    #[serde(default)]
    pub version_string: String,
}

impl NodeState {
    pub fn dialect(&self) -> Dialect {
        Dialect::new(self.dist.flavor, self.dist.version)
    }

    pub fn datadir(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub fn tmpdir(&self) -> PathBuf {
        self.dir.join("tmp")
    }

    pub fn pidfile(&self) -> PathBuf {
        self.dir.join("mysqld.pid")
    }

    pub fn error_log(&self) -> PathBuf {
        self.dir.join("error.log")
    }

    /// The unix socket: in the node dir when the path is short enough,
    /// otherwise under /tmp with a name derived from the node dir.
    pub fn socket(&self) -> PathBuf {
        let p = self.dir.join("mysqld.sock");
        if p.as_os_str().len() < 100 {
            return p;
        }
        PathBuf::from(format!("/tmp/coldswap-{:016x}.sock", fnv1a(self.dir.to_string_lossy().as_bytes())))
    }

    /// host:port as other cluster members reach this node.
    pub fn peer_addr(&self) -> (String, u16) {
        (
            self.peer_host.clone().unwrap_or_else(|| self.host.clone()),
            self.peer_port.unwrap_or(self.port),
        )
    }

    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// Server flags every backend passes after its own: replication, cold
    /// storage, replication kept stopped at start, read-only when asked,
    /// and the extras last (so they override).
    pub fn role_flags(&self, read_only: bool) -> Vec<String> {
        let d = self.dialect();
        let mut a = d.replication_flags(self.server_id);
        a.extend(d.cold_storage_flags());
        a.push(d.skip_replica_start_flag().to_string());
        if read_only {
            a.extend(d.read_only_flags());
        }
        a.extend(self.extras.args.iter().cloned());
        a
    }
}

/// FNV-1a, for short stable names.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}
