//! Where servers run: the [`Backend`] seam.
//!
//! A backend knows how to create, start, stop and kill one server, how to
//! reach it as root before coldswap's users exist, how to put new binaries
//! under an existing datadir and run their upgrade tool, and how to remove
//! everything it made. Everything else (users, replication, fencing,
//! promotion, checks) is SQL, shared by every backend in [`crate::cluster`].
//!
//! As in Jepsen's `DB` protocol, a capability not every backend has is a
//! second, optional trait: [`NodeFiles`] (read and write a node's files, run
//! a program beside its server, read its log), asked for with
//! [`Backend::files`] where it is needed (cold storage, warm-ups).
//!
//! Each backend is one type in its own module ([`process`], [`container`]);
//! what it records per cluster is its own struct, serialized inside
//! [`BackendState`], and per node its own [`Handle`] variant and
//! [`Software`] variant. This module is the only place that picks one by
//! kind; nothing outside `backend/` branches on the kind.

use anyhow::Result;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sqlx::mysql::MySqlConnection;
use std::path::{Path, PathBuf};

use crate::node::{Handle, NodeState, Software};
use crate::secrets::Secrets;
use coldswap_sql::{Flavor, Version};

pub mod container;
pub(crate) mod legacy;
pub mod process;

pub use container::{ContainerBackend, ContainerOptions};
pub use process::ProcessBackend;

/// The backends a user can name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// Local server processes from unpacked distributions (the default).
    #[default]
    Process,
    /// Containers through testcontainers, on a private network.
    Container,
}

impl std::fmt::Display for BackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BackendKind::Process => "process",
            BackendKind::Container => "container",
        })
    }
}

impl std::str::FromStr for BackendKind {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<BackendKind, String> {
        match s {
            "process" => Ok(BackendKind::Process),
            "container" => Ok(BackendKind::Container),
            other => Err(format!("unknown backend '{other}' (process or container)")),
        }
    }
}

impl BackendKind {
    /// Every backend coldswap starts servers on.
    pub const ALL: [BackendKind; 2] = [BackendKind::Process, BackendKind::Container];

    /// The settings a new cluster on this backend starts from.
    pub fn new_state(self, container: &ContainerOptions) -> BackendState {
        match self {
            BackendKind::Process => BackendState::Process(ProcessBackend::default()),
            BackendKind::Container => BackendState::Container(ContainerBackend::new(container.clone())),
        }
    }

    /// Pick the value that belongs to this backend (a config names versions
    /// for processes and images for containers).
    pub fn pick<T>(self, process: T, container: T) -> T {
        match self {
            BackendKind::Process => process,
            BackendKind::Container => container,
        }
    }

    /// Check a version spec for this backend without side effects.
    pub fn check_spec(self, spec: &str) -> Result<()> {
        self.new_state(&ContainerOptions::default()).get().check_spec(spec)
    }

    /// Check an upgrade pair without side effects: both specs valid, and
    /// not from one flavor to the other (a datadir of one cannot run on the
    /// other). A pair whose flavors need fetching to know is checked again
    /// once they are known.
    pub fn check_pair(self, from: &str, to: &str) -> Result<()> {
        let state = self.new_state(&ContainerOptions::default());
        let b = state.get();
        b.check_spec(from)?;
        b.check_spec(to)?;
        check_flavors(from, b.spec_flavor(from), to, b.spec_flavor(to))
    }
}

/// What a user asks for: one backend, or `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendChoice {
    /// This backend.
    Kind(BackendKind),
    /// Containers when an engine answers and the images are here, else processes.
    Auto,
}

impl std::str::FromStr for BackendChoice {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<BackendChoice, String> {
        match s {
            "auto" => Ok(BackendChoice::Auto),
            other => other
                .parse::<BackendKind>()
                .map(BackendChoice::Kind)
                .map_err(|_| format!("unknown backend '{other}' (process, container or auto)")),
        }
    }
}

impl BackendChoice {
    /// Whether this choice may end up on `kind` (`auto` may end up on any).
    pub fn may_be(self, kind: BackendKind) -> bool {
        self == BackendChoice::Auto || self == BackendChoice::Kind(kind)
    }

    /// Settle `auto` (one line says which backend and why); `images` are the
    /// container images the run would need.
    pub async fn resolve(self, images: (&str, &str)) -> BackendKind {
        match self {
            BackendChoice::Kind(k) => k,
            BackendChoice::Auto => match container::ready_for(images.0, images.1).await {
                Ok(why) => {
                    tracing::info!("backend auto: {why}; using containers");
                    BackendKind::Container
                }
                Err(why) => {
                    tracing::info!("backend auto: {why}; using local processes");
                    BackendKind::Process
                }
            },
        }
    }
}

/// What a cluster records of its backend (`cluster.json`, tagged by kind).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum BackendState {
    /// See [`ProcessBackend`].
    Process(ProcessBackend),
    /// See [`ContainerBackend`].
    Container(ContainerBackend),
}

impl BackendState {
    /// The backend behind this record.
    pub fn get(&self) -> &dyn Backend {
        match self {
            BackendState::Process(b) => b,
            BackendState::Container(b) => b,
        }
    }

    /// The backend behind this record, to create resources it records.
    pub fn get_mut(&mut self) -> &mut dyn Backend {
        match self {
            BackendState::Process(b) => b,
            BackendState::Container(b) => b,
        }
    }

    /// Which backend this is.
    pub fn kind(&self) -> BackendKind {
        self.get().kind()
    }
}

impl Software {
    /// The server flavor.
    pub fn flavor(&self) -> Flavor {
        match self {
            Software::Dist(d) => d.flavor,
            Software::Image(i) => i.flavor,
        }
    }

    /// The server version.
    pub fn version(&self) -> Version {
        match self {
            Software::Dist(d) => d.version,
            Software::Image(i) => i.version,
        }
    }

    /// What the user named (`mariadb-10.11.18`, a directory, an image).
    pub fn spec(&self) -> &str {
        match self {
            Software::Dist(d) => &d.spec,
            Software::Image(i) => &i.reference,
        }
    }

    /// The server's own version string as its binary reports it.
    pub fn version_string(&self) -> String {
        match self {
            Software::Dist(d) => d.version_string.clone(),
            Software::Image(i) => format!("{} ({})", i.version, i.reference),
        }
    }

    /// The statements and flags it speaks.
    pub fn dialect(&self) -> crate::dialect::Dialect {
        crate::dialect::Dialect::new(self.flavor(), self.version())
    }

    /// `mariadb 10.11.18`.
    pub fn label(&self) -> String {
        format!("{} {}", self.flavor(), self.version())
    }
}

impl Handle {
    /// The pid, for a process.
    pub fn pid(&self) -> Option<u32> {
        match self {
            Handle::Process { pid } => *pid,
            Handle::Container { .. } => None,
        }
    }

    /// The container name, for a container.
    pub fn container(&self) -> Option<&str> {
        match self {
            Handle::Process { .. } => None,
            Handle::Container { container, .. } => Some(container),
        }
    }
}

/// Where a cluster's servers run. Implemented once per backend; the cluster
/// lifecycle is written against this and nothing else.
#[async_trait]
pub trait Backend: Send + Sync {
    /// Which backend this is.
    fn kind(&self) -> BackendKind;

    /// Reject a version spec this backend cannot run, touching nothing.
    fn check_spec(&self, spec: &str) -> Result<()>;

    /// The flavor a spec names, when that is known without fetching or
    /// running anything (a pinned version, an image name).
    fn spec_flavor(&self, spec: &str) -> Option<Flavor>;

    /// Everything that must hold before anything is created (an engine
    /// answers, the images are here, there is disk space under `run_dir`).
    async fn preflight(&self, run_dir: &Path, from: &str, to: Option<&str>) -> Result<()>;

    /// The software a spec names, fetched or pulled first if needed.
    async fn provision(&self, spec: &str) -> Result<Software>;

    /// A fresh handle for a node not created yet.
    fn new_handle(&self) -> Handle;

    /// Create what the nodes need (their directories, volumes, a network)
    /// and fill in their handles. `owner_pid` labels what outlives a crash.
    async fn create(&mut self, run_dir: &Path, owner_pid: u32, nodes: &mut [NodeState]) -> Result<()>;

    /// Initialise a node's datadir, where the server does not do it at its first start.
    async fn init(&self, node: &NodeState, secrets: &Secrets) -> Result<()>;

    /// Start a node's server and wait until root can log in.
    async fn start(&self, node: &mut NodeState, read_only: bool, secrets: &Secrets) -> Result<()>;

    /// Clean shutdown; the datadir stays.
    async fn stop(&self, node: &mut NodeState) -> Result<()>;

    /// SIGKILL, as a crash.
    async fn kill(&self, node: &mut NodeState) -> Result<()>;

    /// What runs for this node ("pid 123", "container cs-1-node1"), if anything.
    fn running(&self, node: &NodeState) -> Option<String>;

    /// How the other nodes reach this one.
    fn peer_addr(&self, node: &NodeState) -> (String, u16);

    /// Root, before coldswap's users exist.
    async fn root_conn(&self, node: &NodeState, secrets: &Secrets) -> Result<MySqlConnection>;

    /// Statements root runs before coldswap's users are created.
    fn bootstrap_sql(&self) -> Vec<String> {
        Vec::new()
    }

    /// The host part of coldswap's users: where clients and replicas
    /// connect from, as narrow as the backend allows (never `%`).
    async fn user_host(&self) -> Result<String>;

    /// Put `software` under a stopped node's datadir (an in-place upgrade).
    async fn swap_binaries(&self, node: &mut NodeState, software: Software) -> Result<()>;

    /// Run the software's upgrade tool on a running node; false when it needs none.
    async fn run_upgrade_tool(&self, node: &NodeState, secrets: &Secrets) -> Result<bool>;

    /// Stop every node and remove what [`Backend::create`] made; with
    /// `keep_data`, datadirs (volumes) stay.
    async fn destroy(&self, nodes: &mut [NodeState], keep_data: bool) -> Result<()>;

    /// The same without a runtime and without waiting for servers to answer
    /// (Drop guards, signal paths, a later run's sweep).
    fn destroy_sync(&self, nodes: &[NodeState]);

    /// Whether this record created the resources labelled with run id `run_id`.
    fn owns_run(&self, _run_id: &str) -> bool {
        false
    }

    /// Node files and programs, where this backend can reach them.
    fn files(&self) -> Option<&dyn NodeFiles> {
        None
    }
}

/// Optional capability: a node's files, programs and log, wherever its
/// server runs (on this host, or inside its container).
#[async_trait]
pub trait NodeFiles: Send + Sync {
    /// The datadir as the node's server names it.
    fn datadir(&self, node: &NodeState) -> PathBuf;

    /// Read a file under the datadir.
    async fn read(&self, node: &NodeState, rel: &str) -> Result<Vec<u8>>;

    /// Write a file under the datadir.
    async fn write(&self, node: &NodeState, rel: &str, bytes: &[u8]) -> Result<()>;

    /// Run a program where the server runs. `env` must hold no secret (with
    /// containers it is on docker's command line).
    async fn exec(
        &self,
        node: &NodeState,
        program: &str,
        args: &[&str],
        env: &[(String, String)],
        stdin: Option<&[u8]>,
    ) -> Result<std::process::Output>;

    /// A mark of where the server's log ends now, for [`NodeFiles::log_since`].
    fn log_mark(&self, node: &NodeState) -> u64;

    /// What the server logged since `mark`.
    fn log_since(&self, node: &NodeState, mark: u64) -> String;
}

/// Remove what killed runs left that no live record names any more
/// (labelled containers, volumes, networks). `live_record` says whether the
/// run dir a resource names still holds a live record of that run.
/// One line per run cleaned.
pub fn sweep_orphans(live_record: &dyn Fn(&Path, &str) -> bool) -> Vec<String> {
    container::sweep_orphans(live_record)
}

/// Refuse an upgrade from one flavor to the other.
pub(crate) fn check_flavors(from: &str, f: Option<Flavor>, to: &str, t: Option<Flavor>) -> Result<()> {
    match (f, t) {
        (Some(a), Some(b)) if a != b => anyhow::bail!(
            "cannot upgrade {from} to {to}: a different server flavor ({a} to {b}; the datadir of one cannot run on the other)"
        ),
        _ => Ok(()),
    }
}

/// Error for a node whose record belongs to another backend.
pub(crate) fn wrong_backend(node: &NodeState, want: BackendKind) -> anyhow::Error {
    anyhow::anyhow!("{} was not created by the {want} backend (its record says otherwise)", node.name)
}
