//! What lifecycle commands print: a machine-readable record of the nodes
//! and the timed steps.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

use crate::backend::BackendKind;
use crate::cluster::Cluster;
use crate::node::Role;
use crate::steps::{Step, Steps};
use crate::switchover::PromoteOutcome;
use coldswap_sql::Flavor;

/// Machine-readable result of a lifecycle command.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// `up`, `upgrade`, `promote`, `down`.
    pub command: String,
    /// The run dir.
    pub run_dir: PathBuf,
    /// Where the servers run.
    pub backend: BackendKind,
    /// Each node.
    pub nodes: Vec<NodeInfo>,
    /// Timed steps.
    pub steps: Vec<Step>,
    /// The whole command.
    pub total_seconds: f64,
    /// What a promotion did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub promotion: Option<PromoteOutcome>,
}

/// One node in a [`Record`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeInfo {
    /// `node1`.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// Client address.
    pub address: String,
    /// Client port.
    pub port: u16,
    /// `SELECT VERSION()` as last seen.
    pub version: String,
    /// The server flavor.
    pub flavor: Flavor,
    /// The server's pid (process backend).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// The container's name (container backend).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
}

impl Cluster {
    /// Each node as a [`Record`] lists it.
    pub fn node_infos(&self) -> Vec<NodeInfo> {
        self.state
            .nodes
            .iter()
            .map(|n| NodeInfo {
                name: n.name.clone(),
                role: n.role,
                address: n.host.clone(),
                port: n.port,
                version: n.version_string.clone(),
                flavor: n.flavor(),
                pid: n.handle.pid(),
                container: n.handle.container().map(|c| c.to_string()),
            })
            .collect()
    }

    /// The record of a lifecycle command.
    pub fn record(&self, command: &str, steps: &Steps, promotion: Option<PromoteOutcome>) -> Record {
        Record {
            command: command.to_string(),
            run_dir: self.state.run_dir.clone(),
            backend: self.backend_kind(),
            nodes: self.node_infos(),
            steps: steps.0.clone(),
            total_seconds: steps.total_seconds(),
            promotion,
        }
    }
}
