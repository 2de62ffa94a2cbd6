//! One server of a cluster, as recorded in the run dir: what every backend
//! shares (name, role, ports, flags) and the tagged parts only one backend
//! reads ([`Software`], [`Handle`]; their behaviour lives in
//! [`crate::backend`]).

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

use crate::dialect::Dialect;
use crate::dist::Dist;
use coldswap_sql::{Flavor, Version};

/// The server software on a node, as its backend finds it (tagged by kind).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Software {
    /// An unpacked distribution on this host (process backend).
    Dist(Box<Dist>),
    /// A container image (container backend).
    Image(Image),
}

/// A server image, as a node runs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    /// `coldswap/mariadb:11.8`, `mysql:8.0.36`.
    pub reference: String,
    /// The server flavor inside.
    pub flavor: Flavor,
    /// The server version inside.
    pub version: Version,
    /// Built by docker/build-image.sh (coldswap's entrypoint), not an official image.
    pub ours: bool,
}

/// How a backend finds a node's running server (tagged by kind).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Handle {
    /// A server process; its pid while it runs.
    Process {
        /// The server's pid, when started by this record.
        pid: Option<u32>,
    },
    /// A container on a named volume.
    Container {
        /// Container name (also its host name on the cluster's network).
        container: String,
        /// Named volume holding the datadir.
        volume: String,
    },
}

/// What a node does in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Takes writes.
    Primary,
    /// Replicates from the primary, read-only.
    Replica,
    /// A former primary that refuses writes and replicates from nobody.
    Fenced,
    /// Not running.
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
    /// Environment variables.
    #[serde(default)]
    pub env: Vec<(String, String)>,
    /// Server flags, after the others (so they override).
    #[serde(default)]
    pub args: Vec<String>,
}

/// One database server of a cluster.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeState {
    /// `node1`, `node2`.
    pub name: String,
    /// What it does now.
    pub role: Role,
    /// Address clients use (loopback).
    pub host: String,
    /// Port clients use.
    pub port: u16,
    /// The server's `server_id`.
    pub server_id: u32,
    /// The node's directory on this host: logs, cold-storage state, and (on
    /// the process backend) the datadir and socket.
    pub dir: PathBuf,
    /// InnoDB buffer pool, MiB.
    pub buffer_pool_mb: u32,
    /// Extra environment and flags for the next start.
    #[serde(default)]
    pub extras: Extras,
    /// Server version string as last seen by `SELECT VERSION()`.
    #[serde(default)]
    pub version_string: String,
    /// What runs (a distribution or an image).
    pub software: Software,
    /// How the backend finds it (a pid or a container).
    pub handle: Handle,
}

impl NodeState {
    /// The statements and flags this node's server speaks.
    pub fn dialect(&self) -> Dialect {
        Dialect::new(self.software.flavor(), self.software.version())
    }

    /// The server flavor.
    pub fn flavor(&self) -> Flavor {
        self.software.flavor()
    }

    /// The server version.
    pub fn version(&self) -> Version {
        self.software.version()
    }

    /// host:port as clients reach it.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// Where the server writes its log on this host.
    pub fn error_log(&self) -> PathBuf {
        self.dir.join("error.log")
    }

    /// Server flags every backend passes after its own paths: sizes and
    /// settings, replication, cold storage, replication kept stopped at
    /// start, read-only when asked, and the extras last (so they override).
    pub fn server_flags(&self, read_only: bool) -> Vec<String> {
        let d = self.dialect();
        let mut a = d.base_flags(self.buffer_pool_mb);
        a.extend(d.replication_flags(self.server_id));
        a.extend(d.cold_storage_flags());
        a.push(d.skip_replica_start_flag().to_string());
        if read_only {
            a.extend(d.read_only_flags());
        }
        a.extend(self.extras.args.iter().cloned());
        a
    }
}
