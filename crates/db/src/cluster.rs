//! The cluster lifecycle: up, status, node start/stop, seed, down.
//!
//! Written against [`Backend`] only: the SQL side (users, replication,
//! fencing, GTID catch-up) is shared by every backend; the backend creates,
//! starts, stops and removes servers. The switchover is in
//! [`crate::switchover`], the in-place upgrade in [`crate::upgrade`],
//! replication checks in [`crate::replication`].
//!
//! The run dir: coldswap makes it (or takes an empty one), marks it as its
//! own, and removes only what it created there: a file of the user's in it
//! survives every teardown, and a non-empty directory that is not coldswap's
//! is refused.

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::backend::{BackendKind, ContainerOptions, NodeFiles};
use crate::dialect::Source;
use crate::node::{Extras, NodeState, Role};
use crate::registry;
use crate::replication::{self, ReplicaStatus, ReplicationError};
use crate::secrets::{Secrets, SECRETS_FILE};
use crate::state::{self, ClusterState, STATE_FILE};
use crate::steps::Steps;
use coldswap_sql as sql;

/// The database coldswap keeps its own tables in (heartbeat, checksums).
pub const META_DB: &str = "coldswap_meta";
/// The marker that says a run dir is coldswap's.
pub const MARKER_FILE: &str = ".coldswap-run";

/// Everything `cluster up` needs to know.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// Where the cluster's record, datadirs and logs go.
    pub run_dir: PathBuf,
    /// The version (process) or image (container) to start.
    pub from: String,
    /// The version an upgrade will go to (checked now, fetched now, so a
    /// later upgrade cannot fail on a typo or a download).
    pub to: Option<String>,
    /// Where servers run.
    pub backend: BackendKind,
    /// Fixed loopback ports for (primary, replica); free ones when None.
    pub ports: Option<(u16, u16)>,
    /// InnoDB buffer pool per server, MiB.
    pub buffer_pool_mb: u32,
    /// Outlives this process (`coldswap cluster up`); otherwise it belongs to
    /// this process and is cleaned by a later run if this one dies.
    pub persistent: bool,
    /// Extra environment and flags for every server.
    pub extras: Extras,
    /// Settings of the container backend.
    pub container: ContainerOptions,
}

impl UpOptions {
    /// Defaults: process backend, free ports, 128 MiB buffer pools.
    pub fn new(run_dir: impl Into<PathBuf>, from: &str) -> UpOptions {
        UpOptions {
            run_dir: run_dir.into(),
            from: from.to_string(),
            to: None,
            backend: BackendKind::default(),
            ports: None,
            buffer_pool_mb: 128,
            persistent: false,
            extras: Extras::default(),
            container: Default::default(),
        }
    }
}

/// A running (or stopped) cluster.
pub struct Cluster {
    /// The record, as saved in the run dir.
    pub state: ClusterState,
    pub(crate) secrets: Secrets,
    /// Set once torn down, so Drop does nothing more.
    done: bool,
}

/// Node status as `cluster status` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeStatus {
    /// `node1`.
    pub name: String,
    /// Its role in the record.
    pub role: Role,
    /// host:port.
    pub address: String,
    /// Whether its server runs.
    pub running: bool,
    /// `SELECT VERSION()`.
    pub version: Option<String>,
    /// `@@read_only`.
    pub read_only: Option<bool>,
    /// Executed GTIDs.
    pub gtid_position: Option<String>,
    /// Replica status, when it replicates.
    pub replication: Option<ReplicaStatus>,
    /// Why it could not be asked.
    pub error: Option<String>,
}

/// Absolute path without requiring it to exist.
pub fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().map(|c| c.join(p)).unwrap_or_else(|_| p.to_path_buf())
    }
}

/// Whether a run dir holds a cluster with a live server: the first live
/// node's description.
pub fn live_cluster_in(run_dir: &Path) -> Option<String> {
    let state = state::read(run_dir).ok()?;
    let b = state.backend.get();
    state.nodes.iter().find_map(|n| b.running(n).map(|what| format!("{} {what}", n.name)))
}

/// Whether a directory is coldswap's (it holds our marker).
pub fn is_ours(run_dir: &Path) -> bool {
    run_dir.join(MARKER_FILE).is_file()
}

/// Remove what coldswap made in a run dir (node dirs, record, secrets,
/// marker) and the dir itself once empty; anything else stays.
fn remove_our_files(run_dir: &Path, nodes: &[NodeState]) -> Result<()> {
    if !is_ours(run_dir) {
        return Ok(());
    }
    for n in nodes {
        if n.dir.starts_with(run_dir) && n.dir.exists() {
            std::fs::remove_dir_all(&n.dir).with_context(|| format!("cannot remove {}", n.dir.display()))?;
        }
    }
    for f in [STATE_FILE, SECRETS_FILE, MARKER_FILE] {
        let _ = std::fs::remove_file(run_dir.join(f));
    }
    if std::fs::read_dir(run_dir).map(|mut d| d.next().is_none()).unwrap_or(false) {
        std::fs::remove_dir(run_dir).with_context(|| format!("cannot remove run dir {}", run_dir.display()))?;
    } else if run_dir.exists() {
        tracing::info!("run dir {} holds files coldswap did not make; they stay", run_dir.display());
    }
    Ok(())
}

/// Stop and remove what a record names, without needing its servers to
/// answer or a runtime (Drop, signals, a later run's sweep).
fn destroy_sync(state: &ClusterState, remove_files: bool) {
    state.backend.get().destroy_sync(&state.nodes);
    if remove_files {
        let _ = remove_our_files(&state.run_dir, &state.nodes);
    }
    registry::unregister(&state.run_dir);
}

/// Whether `run_dir` holds a live record of the backend run `run_id` (so
/// its labelled resources are not orphans).
fn live_record(run_dir: &Path, run_id: &str) -> bool {
    match state::read(run_dir) {
        Ok(s) => s.backend.get().owns_run(run_id) && (s.persistent || crate::pid::alive(s.owner_pid)),
        Err(_) => false,
    }
}

/// Clean what killed runs left: their servers, containers and files.
/// Returns one line per run cleaned.
pub fn sweep_stale() -> Vec<String> {
    let mut cleaned = Vec::new();
    for e in registry::stale() {
        match state::read(&e.run_dir) {
            Ok(state) => {
                destroy_sync(&state, e.remove_dir);
                cleaned.push(format!(
                    "cleaned up a cluster left by a killed run (pid {}) in {}",
                    e.owner_pid,
                    e.run_dir.display()
                ));
            }
            Err(_) => {
                if e.remove_dir {
                    let _ = remove_our_files(&e.run_dir, &[]);
                }
                registry::unregister(&e.run_dir);
            }
        }
    }
    cleaned.extend(crate::backend::sweep_orphans(&live_record));
    for c in &cleaned {
        tracing::warn!("{c}");
    }
    cleaned
}

/// Take a run dir for a new cluster: a new or empty directory, or one of
/// ours whose cluster is gone. Returns it canonical, with our marker.
fn claim_run_dir(run_dir: &Path) -> Result<PathBuf> {
    if let Some(live) = live_cluster_in(run_dir) {
        bail!(
            "run dir {} already holds a live cluster ({live}); run `coldswap cluster down --run-dir {}` first",
            run_dir.display(),
            run_dir.display()
        );
    }
    if run_dir.exists() {
        if !run_dir.is_dir() {
            bail!("run dir {} is not a directory", run_dir.display());
        }
        let empty = std::fs::read_dir(run_dir).map(|mut d| d.next().is_none()).unwrap_or(false);
        if !empty && !is_ours(run_dir) {
            bail!(
                "run dir {} is not empty and was not made by coldswap; name a new or empty directory (coldswap deletes what it creates there)",
                run_dir.display()
            );
        }
        if let Ok(old) = state::read(run_dir) {
            tracing::warn!("run dir {} holds a stopped cluster from an earlier run; removing it", run_dir.display());
            destroy_sync(&old, true);
        }
    }
    std::fs::create_dir_all(run_dir).with_context(|| format!("cannot create run dir {}", run_dir.display()))?;
    let run_dir = run_dir.canonicalize()?;
    std::fs::write(run_dir.join(MARKER_FILE), "made by coldswap: it removes what it made here\n")
        .with_context(|| format!("cannot write in run dir {}", run_dir.display()))?;
    Ok(run_dir)
}

impl Cluster {
    /// Bring a primary and a replica up, replicating with GTIDs.
    pub async fn up(opts: UpOptions) -> Result<(Cluster, Steps)> {
        let mut steps = Steps::default();
        let t0 = Instant::now();
        let backend_state = opts.backend.new_state(&opts.container);
        // Bad input first, before anything is created.
        match &opts.to {
            Some(to) => opts.backend.check_pair(&opts.from, to)?,
            None => backend_state.get().check_spec(&opts.from)?,
        }
        if opts.buffer_pool_mb < 8 {
            bail!("buffer pool of {} MiB is too small (at least 8)", opts.buffer_pool_mb);
        }
        let run_dir = absolute(&opts.run_dir);
        sweep_stale();
        let ports = match opts.ports {
            Some((a, b)) => {
                if a == b {
                    bail!("the primary and the replica need different ports (both {a})");
                }
                crate::ports::ensure_free(a)?;
                crate::ports::ensure_free(b)?;
                (a, b)
            }
            None => crate::ports::free_pair()?,
        };
        backend_state.get().preflight(&run_dir, &opts.from, opts.to.as_deref()).await?;
        let t = Instant::now();
        let from = backend_state.get().provision(&opts.from).await?;
        if let Some(to) = &opts.to {
            let to = backend_state.get().provision(to).await?;
            crate::backend::check_flavors(&from.label(), Some(from.flavor()), &to.label(), Some(to.flavor()))?;
        }
        steps.push("provision", t);

        let run_dir = claim_run_dir(&run_dir)?;
        let secrets = Secrets::generate()?;
        secrets.write(&run_dir)?;
        let handle = backend_state.get().new_handle();
        let mk = |name: &str, role: Role, port: u16, id: u32| NodeState {
            name: name.to_string(),
            role,
            host: "127.0.0.1".into(),
            port,
            server_id: id,
            dir: run_dir.join(name),
            buffer_pool_mb: opts.buffer_pool_mb,
            extras: opts.extras.clone(),
            version_string: from.version_string(),
            software: from.clone(),
            handle: handle.clone(),
        };
        let nodes = vec![mk("node1", Role::Primary, ports.0, 1), mk("node2", Role::Replica, ports.1, 2)];
        let state = ClusterState {
            format: state::FORMAT,
            backend: backend_state,
            run_dir: run_dir.clone(),
            nodes,
            owner_pid: std::process::id(),
            // Owned by this process until it is fully up, so an error, a
            // panic or a signal half-way removes it.
            persistent: false,
            to: opts.to.clone(),
        };
        registry::register(&registry::Entry {
            run_dir: run_dir.clone(),
            owner_pid: std::process::id(),
            persistent: false,
            remove_dir: true,
        })?;
        let mut cluster = Cluster { state, secrets, done: false };
        cluster.save()?;
        // From here on, a failure tears down what was started.
        match cluster.bring_up(&mut steps).await {
            Ok(()) => {
                if opts.persistent {
                    cluster.set_persistent(true)?;
                }
                steps.push("up_total", t0);
                Ok((cluster, steps))
            }
            Err(e) => {
                let _ = cluster.teardown(true, false).await;
                Err(e)
            }
        }
    }

    async fn bring_up(&mut self, steps: &mut Steps) -> Result<()> {
        let t = Instant::now();
        {
            let owner = self.state.owner_pid;
            let run_dir = self.state.run_dir.clone();
            let ClusterState { backend, nodes, .. } = &mut self.state;
            backend.get_mut().create(&run_dir, owner, nodes).await?;
        }
        self.save()?;
        steps.push("create_resources", t);
        let t = Instant::now();
        for i in 0..self.state.nodes.len() {
            let b = self.state.backend.get();
            b.init(&self.state.nodes[i], &self.secrets).await?;
        }
        steps.push("init_datadirs", t);
        // Both start writable: users are created on each node outside the
        // binlog; the replica is fenced when it is pointed at the primary.
        let t = Instant::now();
        for i in 0..self.state.nodes.len() {
            self.start_node(i, false).await?;
        }
        steps.push("start_servers", t);
        let t = Instant::now();
        for i in 0..self.state.nodes.len() {
            self.bootstrap_users(i).await?;
        }
        steps.push("create_users", t);
        let t = Instant::now();
        {
            let mut c = self.admin(0).await?;
            sql::exec(&mut c, &format!("CREATE DATABASE IF NOT EXISTS {META_DB}")).await?;
            sql::exec(
                &mut c,
                &format!(
                    "CREATE TABLE IF NOT EXISTS {META_DB}.heartbeat (id INT PRIMARY KEY, seq BIGINT NOT NULL, \
                     ts TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)) ENGINE=InnoDB"
                ),
            )
            .await?;
            sql::close(c).await;
        }
        self.point_replica_at(1, 0, false).await?;
        steps.push("configure_replication", t);
        let t = Instant::now();
        self.verify_replication(Duration::from_secs(30)).await?;
        steps.push("verify_replication", t);
        self.save()
    }

    /// Load a cluster recorded in a run dir.
    pub fn open(run_dir: &Path) -> Result<Cluster> {
        let run_dir = absolute(run_dir);
        let state = state::read(&run_dir)?;
        let secrets = Secrets::read(&run_dir)?;
        Ok(Cluster { state, secrets, done: false })
    }

    /// Write the record.
    pub fn save(&self) -> Result<()> {
        state::write(&self.state)
    }

    /// The run dir.
    pub fn run_dir(&self) -> &Path {
        &self.state.run_dir
    }

    /// The cluster's credentials (never log them).
    pub fn secrets(&self) -> &Secrets {
        &self.secrets
    }

    /// Where the servers run.
    pub fn backend_kind(&self) -> BackendKind {
        self.state.backend.kind()
    }

    /// Node files, programs and logs, where the backend can reach them.
    pub fn files(&self) -> Result<&dyn NodeFiles> {
        self.state
            .backend
            .get()
            .files()
            .ok_or_else(|| anyhow!("the {} backend cannot reach its nodes' files", self.backend_kind()))
    }

    /// Hand ownership to the current process (a test or drill reopening a cluster).
    pub fn set_persistent(&mut self, persistent: bool) -> Result<()> {
        self.state.persistent = persistent;
        self.state.owner_pid = std::process::id();
        registry::register(&registry::Entry {
            run_dir: self.state.run_dir.clone(),
            owner_pid: std::process::id(),
            persistent,
            remove_dir: true,
        })?;
        self.save()
    }

    /// Index of the primary.
    pub fn primary_index(&self) -> Result<usize> {
        self.state
            .nodes
            .iter()
            .position(|n| n.role == Role::Primary)
            .ok_or_else(|| anyhow!("the cluster has no primary"))
    }

    /// Index of the replica.
    pub fn replica_index(&self) -> Result<usize> {
        self.state
            .nodes
            .iter()
            .position(|n| n.role == Role::Replica)
            .ok_or_else(|| anyhow!("the cluster has no replica"))
    }

    /// The primary's record.
    pub fn primary(&self) -> Result<&NodeState> {
        Ok(&self.state.nodes[self.primary_index()?])
    }

    /// The replica's record.
    pub fn replica(&self) -> Result<&NodeState> {
        Ok(&self.state.nodes[self.replica_index()?])
    }

    /// Node `i`'s record.
    pub fn node(&self, i: usize) -> &NodeState {
        &self.state.nodes[i]
    }

    /// Node `i`'s record, to change.
    pub fn node_mut(&mut self, i: usize) -> &mut NodeState {
        &mut self.state.nodes[i]
    }

    /// How the other nodes reach node `i` (its container name on a network).
    pub fn peer_addr(&self, i: usize) -> (String, u16) {
        self.state.backend.get().peer_addr(&self.state.nodes[i])
    }

    /// Admin connection options for a node (TCP, statement logging off).
    pub fn admin_options(&self, i: usize) -> MySqlConnectOptions {
        let n = &self.state.nodes[i];
        sql::tcp_options(&n.host, n.port, &self.secrets.admin_user, &self.secrets.admin_password)
    }

    /// Application user options for a node: the user the load runs as.
    pub fn app_options(&self, i: usize) -> MySqlConnectOptions {
        let n = &self.state.nodes[i];
        sql::tcp_options(&n.host, n.port, &self.secrets.app_user, &self.secrets.app_password)
    }

    /// An admin connection to node `i`.
    pub async fn admin(&self, i: usize) -> Result<MySqlConnection> {
        sql::connect(&self.admin_options(i), Duration::from_secs(10))
            .await
            .with_context(|| format!("cannot connect to {} ({})", self.state.nodes[i].name, self.state.nodes[i].addr()))
    }

    /// Start a node's server (it must be stopped).
    pub async fn start_node(&mut self, i: usize, read_only: bool) -> Result<()> {
        let r = {
            let b = self.state.backend.get();
            b.start(&mut self.state.nodes[i], read_only, &self.secrets).await
        };
        self.save()?;
        r
    }

    /// Clean shutdown of a node.
    pub async fn stop_node(&mut self, i: usize) -> Result<()> {
        let r = {
            let b = self.state.backend.get();
            b.stop(&mut self.state.nodes[i]).await
        };
        self.save()?;
        r
    }

    /// SIGKILL a node, as a crash.
    pub async fn kill_node(&mut self, i: usize) -> Result<()> {
        let r = {
            let b = self.state.backend.get();
            b.kill(&mut self.state.nodes[i]).await
        };
        self.save()?;
        r
    }

    /// Whether node `i`'s server runs.
    pub fn node_running(&self, i: usize) -> bool {
        self.state.backend.get().running(&self.state.nodes[i]).is_some()
    }

    /// Create our three users on one node without binlogging them (each
    /// node gets its own; replication starts from an empty history).
    async fn bootstrap_users(&mut self, i: usize) -> Result<()> {
        let d = self.state.nodes[i].dialect();
        let s = &self.secrets;
        let b = self.state.backend.get();
        let host = b.user_host().await?;
        let mut c = b.root_conn(&self.state.nodes[i], s).await?;
        let mut stmts = vec!["SET SESSION sql_log_bin=0".to_string()];
        stmts.extend(b.bootstrap_sql());
        for (user, pw, grants) in [
            (&s.admin_user, &s.admin_password, d.admin_grants(&s.admin_user, &host)),
            (&s.repl_user, &s.repl_password, d.repl_grants(&s.repl_user, &host)),
            (&s.app_user, &s.app_password, d.app_grants(&s.app_user, &host)),
        ] {
            stmts.push(d.create_user(user, &host, pw));
            stmts.extend(grants);
        }
        stmts.push("SET SESSION sql_log_bin=1".into());
        sql::exec_all(&mut c, &stmts)
            .await
            .with_context(|| format!("creating users on {}", self.state.nodes[i].name))?;
        let v = sql::query_text(&mut c, "SELECT VERSION()").await?.unwrap_or_default();
        self.state.nodes[i].version_string = v;
        sql::close(c).await;
        Ok(())
    }

    /// Live status of every node.
    pub async fn status(&self) -> Vec<NodeStatus> {
        let mut out = Vec::new();
        for (i, n) in self.state.nodes.iter().enumerate() {
            let running = self.node_running(i);
            let mut s = NodeStatus {
                name: n.name.clone(),
                role: n.role,
                address: n.addr(),
                running,
                version: None,
                read_only: None,
                gtid_position: None,
                replication: None,
                error: None,
            };
            if running {
                match self.admin(i).await {
                    Ok(mut c) => {
                        let f = replication::server_facts(&mut c, &n.dialect()).await;
                        s.version = f.version;
                        s.read_only = f.read_only;
                        s.gtid_position = f.gtid_position;
                        s.replication = f.replication;
                        sql::close(c).await;
                    }
                    Err(e) => s.error = Some(format!("{e:#}")),
                }
            }
            out.push(s);
        }
        out
    }

    /// Stop every server; remove what coldswap made in the run dir unless `keep`.
    pub async fn down(mut self, keep: bool) -> Result<Steps> {
        let mut steps = Steps::default();
        let t = Instant::now();
        let r = self.teardown(false, keep).await;
        steps.push("stop_servers", t);
        r.map(|()| steps)
    }

    /// The one teardown path: kill (after an error) or stop every server,
    /// let the backend remove what it made, then our files unless `keep`.
    async fn teardown(&mut self, kill_first: bool, keep: bool) -> Result<()> {
        let mut first_err = None;
        if kill_first {
            for i in 0..self.state.nodes.len() {
                let b = self.state.backend.get();
                if let Err(e) = b.kill(&mut self.state.nodes[i]).await {
                    first_err.get_or_insert(e);
                }
            }
        }
        {
            let b = self.state.backend.get();
            if let Err(e) = b.destroy(&mut self.state.nodes, keep).await {
                first_err.get_or_insert(e);
            }
        }
        for n in self.state.nodes.iter_mut() {
            n.role = Role::Stopped;
        }
        if keep {
            let _ = self.save();
        } else if let Err(e) = remove_our_files(&self.state.run_dir, &self.state.nodes) {
            first_err.get_or_insert(e);
        }
        registry::unregister(&self.state.run_dir);
        self.done = true;
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Forget this handle without stopping anything (the cluster outlives it).
    pub fn detach(mut self) {
        self.done = true;
    }

    /// Leave the cluster running after this process: it becomes persistent
    /// (cleaned only by `coldswap cluster down`).
    pub fn keep(mut self) -> Result<()> {
        self.set_persistent(true)?;
        self.detach();
        Ok(())
    }

    /// Seed the dataset into the primary, then wait for the replica.
    pub async fn seed(
        &self,
        scale: f64,
        replace: bool,
        progress: coldswap_dataset::Progress<'_>,
    ) -> Result<coldswap_dataset::SeedSummary> {
        let p = self.primary_index()?;
        let mut c = self.admin(p).await?;
        let flavor = self.state.nodes[p].flavor();
        let mut summary = coldswap_dataset::seed(&mut c, flavor, scale, replace, progress).await?;
        sql::close(c).await;
        self.replica_after_seed(&mut summary).await?;
        Ok(summary)
    }

    /// Wait for the replica to apply a seed; its catch-up time goes in the summary.
    async fn replica_after_seed(&self, summary: &mut coldswap_dataset::SeedSummary) -> Result<()> {
        if self.replica_index().is_ok() {
            let t = Instant::now();
            self.verify_replication(Duration::from_secs(1800))
                .await
                .context("waiting for the replica after seeding")?;
            summary.replica_catchup_seconds = Some(t.elapsed().as_secs_f64());
        }
        Ok(())
    }

    /// Generate a dataset shaped like another's (`coldswap schema import`)
    /// on the primary, at `scale`; waits for the replica as [`Cluster::seed`].
    pub async fn seed_shaped(
        &self,
        shape: &coldswap_dataset::shaped::Shape,
        ddl: &str,
        scale: f64,
        replace: bool,
        progress: coldswap_dataset::Progress<'_>,
    ) -> Result<coldswap_dataset::SeedSummary> {
        let p = self.primary_index()?;
        let mut c = self.admin(p).await?;
        let flavor = self.state.nodes[p].flavor();
        let mut summary = coldswap_dataset::shaped::seed(&mut c, flavor, shape, ddl, scale, replace, progress).await?;
        sql::close(c).await;
        self.replica_after_seed(&mut summary).await?;
        Ok(summary)
    }

    /// Restart a node's server (its buffer pool starts empty). A replica
    /// resumes replication; a primary stays writable; anything else stays
    /// read-only.
    pub async fn restart_node(&mut self, i: usize) -> Result<()> {
        self.stop_node(i).await?;
        self.start_in_role(i).await
    }

    /// Start a stopped node as its role wants it (replicas resume replication).
    pub async fn start_in_role(&mut self, i: usize) -> Result<()> {
        let role = self.state.nodes[i].role;
        self.start_node(i, role != Role::Primary).await?;
        if role == Role::Replica {
            let d = self.state.nodes[i].dialect();
            let mut c = self.admin(i).await?;
            sql::exec(&mut c, d.start_replica()).await?;
            sql::close(c).await;
        }
        Ok(())
    }

    /// Set the extra environment and flags a node gets at its next start.
    pub fn set_extras(&mut self, i: usize, extras: Extras) -> Result<()> {
        self.state.nodes[i].extras = extras;
        self.save()
    }
}

impl Drop for Cluster {
    /// A cluster owned by this process never outlives it: on an error path or
    /// a panic, its servers are killed and what coldswap made is removed.
    fn drop(&mut self) {
        if self.done || self.state.persistent || self.state.owner_pid != std::process::id() {
            return;
        }
        destroy_sync(&self.state, true);
    }
}

/// Replication on a cluster: pointing a replica at a source, heartbeats,
/// checking it applies.
impl Cluster {
    /// Make node `r` replicate from node `p` (and fence it: read-only).
    /// `demoted`: `r` was a primary whose history the new source already has.
    pub(crate) async fn point_replica_at(&mut self, r: usize, p: usize, demoted: bool) -> Result<()> {
        use anyhow::Context;
        let d = self.state.nodes[r].dialect();
        let (host, port) = self.peer_addr(p);
        let s = self.secrets.clone();
        let mut c = self.admin(r).await?;
        let _ = sql::exec(&mut c, d.stop_replica()).await;
        let mut stmts = if demoted { d.prepare_demoted() } else { d.prepare_replica() };
        stmts.push(d.change_source(&Source { host: &host, port, user: &s.repl_user, password: &s.repl_password }));
        stmts.push(d.start_replica().to_string());
        stmts.extend(d.fence());
        sql::exec_all(&mut c, &stmts).await.with_context(|| {
            format!("configuring {} as a replica of {}", self.state.nodes[r].name, self.state.nodes[p].name)
        })?;
        sql::close(c).await;
        self.state.nodes[r].role = Role::Replica;
        Ok(())
    }

    /// Replica status of a node (None when it is not replicating).
    pub async fn replica_status(&self, i: usize) -> Result<Option<ReplicaStatus>> {
        let d = self.state.nodes[i].dialect();
        let mut c = self.admin(i).await?;
        let r = replication::replica_status(&mut c, &d).await;
        sql::close(c).await;
        r
    }

    /// Write a heartbeat on the primary and wait until the replica applied
    /// it. Fails at once when the replica's threads stop.
    pub async fn verify_replication(&self, timeout: Duration) -> std::result::Result<(), ReplicationError> {
        let p = self.primary_index()?;
        let r = self.replica_index()?;
        let (pname, rname) = (self.state.nodes[p].name.clone(), self.state.nodes[r].name.clone());
        let seq = self.heartbeat(p).await?;
        let deadline = Instant::now() + timeout;
        let mut c = self.admin(r).await?;
        let d = self.state.nodes[r].dialect();
        loop {
            let seen =
                sql::query_i64(&mut c, &format!("SELECT COALESCE(MAX(seq),0) FROM {META_DB}.heartbeat WHERE id=1"))
                    .await
                    .unwrap_or(0);
            if seen >= seq {
                break;
            }
            match replication::replica_status(&mut c, &d).await? {
                Some(st) if st.stopped() => {
                    return Err(ReplicationError::Broken { primary: pname, replica: rname, problem: st.problem() });
                }
                Some(_) => {}
                None => return Err(ReplicationError::NotReplicating { replica: rname }),
            }
            if Instant::now() > deadline {
                return Err(ReplicationError::HeartbeatTimeout { replica: rname, seconds: timeout.as_secs_f64() });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        sql::close(c).await;
        Ok(())
    }

    /// Bump the heartbeat row on a node; returns the new sequence number.
    pub async fn heartbeat(&self, i: usize) -> Result<i64> {
        let mut c = self.admin(i).await?;
        sql::exec(
            &mut c,
            &format!(
                "INSERT INTO {META_DB}.heartbeat (id, seq, ts) VALUES (1, 1, NOW(6)) \
                 ON DUPLICATE KEY UPDATE seq=seq+1, ts=NOW(6)"
            ),
        )
        .await?;
        let seq = sql::query_i64(&mut c, &format!("SELECT seq FROM {META_DB}.heartbeat WHERE id=1")).await?;
        sql::close(c).await;
        Ok(seq)
    }
}
