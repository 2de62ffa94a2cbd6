//! Cluster records of format 1 (before the backend seam), read and
//! converted: backend details were optional fields of every node then.

use anyhow::{anyhow, Result};
use serde::Deserialize;
use std::path::PathBuf;

use super::{BackendState, ContainerBackend, ContainerOptions, ProcessBackend};
use crate::dist::Dist;
use crate::node::{Extras, Handle, Image, NodeState, Role, Software};

/// A format-1 record's contents, converted.
pub(crate) struct Converted {
    pub backend: BackendState,
    pub run_dir: PathBuf,
    pub nodes: Vec<NodeState>,
    pub owner_pid: u32,
    pub persistent: bool,
    pub to: Option<String>,
}

/// Parse a format-1 record.
pub(crate) fn read_format_1(text: &str) -> Result<Converted> {
    Ok(serde_json::from_str::<ClusterState>(text).map_err(|e| anyhow!("{e}"))?.upgrade())
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum Kind {
    Process,
    Container,
}

#[derive(Deserialize)]
struct Containers {
    options: ContainerOptions,
    run_id: String,
    network: String,
}

#[derive(Deserialize)]
struct Node {
    name: String,
    role: Role,
    host: String,
    port: u16,
    server_id: u32,
    dist: Dist,
    dir: PathBuf,
    pid: Option<u32>,
    #[serde(default)]
    container: Option<String>,
    #[serde(default)]
    volume: Option<String>,
    buffer_pool_mb: u32,
    #[serde(default)]
    extras: Extras,
    #[serde(default)]
    version_string: String,
}

#[derive(Deserialize)]
struct ClusterState {
    backend: Kind,
    run_dir: PathBuf,
    nodes: Vec<Node>,
    owner_pid: u32,
    persistent: bool,
    to: Option<String>,
    #[serde(default)]
    container: Option<Containers>,
}

impl ClusterState {
    fn upgrade(self) -> Converted {
        let container = matches!(self.backend, Kind::Container);
        let backend = match (self.backend, self.container) {
            (Kind::Container, Some(c)) => {
                BackendState::Container(ContainerBackend::recorded(c.options, c.run_id, c.network))
            }
            (Kind::Container, None) => BackendState::Container(ContainerBackend::new(ContainerOptions::default())),
            (Kind::Process, _) => BackendState::Process(ProcessBackend::default()),
        };
        let nodes = self
            .nodes
            .into_iter()
            .map(|n| {
                let (software, handle) = if container {
                    (
                        Software::Image(Image::recorded(&n.dist.spec, n.dist.flavor, n.dist.version)),
                        Handle::Container {
                            container: n.container.unwrap_or_default(),
                            volume: n.volume.unwrap_or_default(),
                        },
                    )
                } else {
                    (Software::Dist(Box::new(n.dist)), Handle::Process { pid: n.pid })
                };
                NodeState {
                    name: n.name,
                    role: n.role,
                    host: n.host,
                    port: n.port,
                    server_id: n.server_id,
                    dir: n.dir,
                    buffer_pool_mb: n.buffer_pool_mb,
                    extras: n.extras,
                    version_string: n.version_string,
                    software,
                    handle,
                }
            })
            .collect();
        Converted {
            backend,
            run_dir: self.run_dir,
            nodes,
            owner_pid: self.owner_pid,
            persistent: self.persistent,
            to: self.to,
        }
    }
}
