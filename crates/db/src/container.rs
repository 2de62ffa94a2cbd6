//! The container backend (testcontainers). Not built yet: every entry point
//! says so plainly.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use crate::cluster::{ClusterState, Secrets};
use crate::dist::Dist;
use crate::node::NodeState;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ContainerOptions {}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterContainers {
    pub options: ContainerOptions,
}

const NOT_YET: &str = "the container backend is not implemented yet; use --backend process";

pub fn container_exists(_name: &str) -> bool {
    false
}
pub fn container_running(_name: &str) -> bool {
    false
}
pub fn destroy_sync(_state: &ClusterState) {}
pub fn sweep_orphans() -> Vec<String> {
    Vec::new()
}
pub async fn preflight(_o: &ContainerOptions, _from: &str, _to: Option<&str>) -> Result<()> {
    bail!(NOT_YET)
}
pub fn image_dist(_o: &ContainerOptions, _spec: &str) -> Result<Dist> {
    bail!(NOT_YET)
}
pub async fn create_network(_s: &mut ClusterState, _o: &ContainerOptions) -> Result<()> {
    bail!(NOT_YET)
}
pub async fn start(_n: &mut NodeState, _ro: bool, _s: &Secrets, _c: Option<&ClusterContainers>) -> Result<()> {
    bail!(NOT_YET)
}
pub async fn stop(_n: &mut NodeState) -> Result<()> {
    bail!(NOT_YET)
}
pub async fn kill(_n: &mut NodeState) -> Result<()> {
    bail!(NOT_YET)
}
pub async fn remove(_n: &mut NodeState) -> Result<()> {
    Ok(())
}
pub async fn prepare_upgrade(_n: &mut NodeState) -> Result<()> {
    bail!(NOT_YET)
}
pub async fn run_upgrade_tool(_n: &NodeState, _s: &Secrets) -> Result<bool> {
    bail!(NOT_YET)
}
pub async fn remove_cluster_resources(_s: &ClusterState, _keep: bool) -> Result<()> {
    Ok(())
}

/// backend = auto: containers when a Docker engine answers and the images
/// are there, processes otherwise (one line says which and why).
pub async fn choose_backend(_from: &str, _to: &str) -> crate::cluster::BackendKind {
    tracing::info!("backend auto: the container backend is not built yet, using local processes");
    crate::cluster::BackendKind::Process
}
