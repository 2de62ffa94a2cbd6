//! The cluster lifecycle: up, upgrade, promote, status, down.
//!
//! The SQL side (users, replication, fencing, GTID catch-up) is shared by all
//! backends; a backend only knows how to create, start, stop and kill one
//! server and how to run its upgrade tool (see [`Backend`]).

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::dialect::Source;
use crate::dist::{self, Dist};
use crate::node::{Extras, NodeState, Role};
use crate::registry;
use crate::sql::{self, ReplicaStatus};
use crate::util::{self, Steps};

/// Where the servers run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    Process,
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

/// Credentials of the users coldswap creates. Kept in the run dir with mode
/// 0600; never logged, never written to a report.
#[derive(Clone, Serialize, Deserialize)]
pub struct Secrets {
    pub admin_user: String,
    pub admin_password: String,
    pub repl_user: String,
    pub repl_password: String,
    pub app_user: String,
    pub app_password: String,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secrets {{ admin: {}, repl: {}, app: {}, passwords: <hidden> }}", self.admin_user, self.repl_user, self.app_user)
    }
}

impl Secrets {
    pub fn generate() -> Secrets {
        Secrets {
            admin_user: "coldswap_admin".into(),
            admin_password: util::random_secret(24),
            repl_user: "coldswap_repl".into(),
            repl_password: util::random_secret(24),
            app_user: "coldswap_app".into(),
            app_password: util::random_secret(24),
        }
    }
}

/// Everything `cluster up` needs to know.
#[derive(Debug, Clone)]
pub struct UpOptions {
    pub run_dir: PathBuf,
    pub from: String,
    /// The version an upgrade will go to (checked now, fetched now, so a
    /// later upgrade cannot fail on a typo or a download).
    pub to: Option<String>,
    pub backend: BackendKind,
    /// Fixed loopback ports for (primary, replica); free ones when None.
    pub ports: Option<(u16, u16)>,
    pub buffer_pool_mb: u32,
    /// Outlives this process (`coldswap cluster up`); otherwise it belongs to
    /// this process and is cleaned by a later run if this one dies.
    pub persistent: bool,
    pub extras: Extras,
    pub container: crate::container::ContainerOptions,
}

impl UpOptions {
    pub fn new(run_dir: impl Into<PathBuf>, from: &str) -> UpOptions {
        UpOptions {
            run_dir: run_dir.into(),
            from: from.to_string(),
            to: None,
            backend: BackendKind::Process,
            ports: None,
            buffer_pool_mb: 128,
            persistent: false,
            extras: Extras::default(),
            container: Default::default(),
        }
    }
}

/// The cluster record kept in `<run dir>/cluster.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterState {
    pub format: u32,
    pub backend: BackendKind,
    pub run_dir: PathBuf,
    pub nodes: Vec<NodeState>,
    pub owner_pid: u32,
    pub persistent: bool,
    pub to: Option<String>,
    #[serde(default)]
    pub container: Option<crate::container::ClusterContainers>,
}

/// A running (or stopped) cluster.
pub struct Cluster {
    pub state: ClusterState,
    secrets: Secrets,
    /// Set once torn down, so Drop does nothing more.
    done: bool,
}

/// Machine-readable result of a lifecycle command.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub command: String,
    pub run_dir: PathBuf,
    pub backend: BackendKind,
    pub nodes: Vec<NodeInfo>,
    pub steps: Vec<util::Step>,
    pub total_seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub promotion: Option<PromoteOutcome>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeInfo {
    pub name: String,
    pub role: Role,
    pub address: String,
    pub port: u16,
    pub version: String,
    pub flavor: dist::Flavor,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PromoteOptions {
    /// Refuse when the replica is further behind than this.
    pub max_lag_s: f64,
    /// How long to wait for GTID catch-up after fencing.
    pub catchup_timeout_s: f64,
    /// Make the old primary a replica of the new one.
    pub demote: bool,
}

impl Default for PromoteOptions {
    fn default() -> Self {
        PromoteOptions { max_lag_s: 5.0, catchup_timeout_s: 10.0, demote: false }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PromoteOutcome {
    pub old_primary: String,
    pub new_primary: String,
    /// From the fence to the new primary accepting writes.
    pub write_unavailable_seconds: f64,
    pub gtid_position: String,
    pub demoted: bool,
}

/// A switchover under way: the old primary is fenced and the replica has
/// caught up (see [`Cluster::promote_begin`]).
pub struct Fenced {
    pub p: usize,
    pub r: usize,
    pub pos: String,
    pub fence_at: Instant,
    pub steps: Steps,
}

/// Node status as `cluster status` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeStatus {
    pub name: String,
    pub role: Role,
    pub address: String,
    pub running: bool,
    pub version: Option<String>,
    pub read_only: Option<bool>,
    pub gtid_position: Option<String>,
    pub replication: Option<ReplicaStatus>,
    pub error: Option<String>,
}

pub const STATE_FILE: &str = "cluster.json";
const SECRETS_FILE: &str = "secrets.json";
const META_DB: &str = "coldswap_meta";

/// Absolute path without requiring it to exist.
pub fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().map(|c| c.join(p)).unwrap_or_else(|_| p.to_path_buf())
    }
}

/// Whether a run dir holds a cluster with a live server. Returns the first
/// live node's description.
pub fn live_cluster_in(run_dir: &Path) -> Option<String> {
    let state = read_state(run_dir).ok()?;
    for n in &state.nodes {
        match state.backend {
            BackendKind::Process => {
                if let Some(pid) = crate::process::running_pid(n) {
                    return Some(format!("{} pid {pid}", n.name));
                }
            }
            BackendKind::Container => {
                if let Some(c) = &n.container {
                    if crate::container::container_exists(c) {
                        return Some(format!("{} container {c}", n.name));
                    }
                }
            }
        }
    }
    None
}

fn read_state(run_dir: &Path) -> Result<ClusterState> {
    let p = run_dir.join(STATE_FILE);
    let text = std::fs::read_to_string(&p)
        .with_context(|| format!("no cluster in {} (no {STATE_FILE})", run_dir.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not a cluster record", p.display()))
}

/// Stop and remove what a run dir holds, without needing its servers to answer.
fn destroy_quietly(state: &ClusterState, remove_dir: bool) {
    match state.backend {
        BackendKind::Process => {
            for n in &state.nodes {
                crate::process::kill_now(n);
                let _ = std::fs::remove_file(n.socket());
            }
        }
        BackendKind::Container => crate::container::destroy_sync(state),
    }
    if remove_dir {
        let _ = std::fs::remove_dir_all(&state.run_dir);
    }
    registry::unregister(&state.run_dir);
}

/// Clean what killed runs left: their servers, containers and run dirs.
/// Returns one line per run cleaned.
pub fn sweep_stale() -> Vec<String> {
    let mut cleaned = Vec::new();
    for e in registry::stale() {
        match read_state(&e.run_dir) {
            Ok(state) => {
                destroy_quietly(&state, e.remove_dir);
                cleaned.push(format!(
                    "cleaned up a cluster left by a killed run (pid {}) in {}",
                    e.owner_pid,
                    e.run_dir.display()
                ));
            }
            Err(_) => {
                if e.remove_dir {
                    let _ = std::fs::remove_dir_all(&e.run_dir);
                }
                registry::unregister(&e.run_dir);
            }
        }
    }
    cleaned.extend(crate::container::sweep_orphans());
    for c in &cleaned {
        tracing::warn!("{c}");
    }
    cleaned
}

impl Cluster {
    /// Bring a primary and a replica up, replicating with GTIDs.
    pub async fn up(opts: UpOptions) -> Result<(Cluster, Steps)> {
        let mut steps = Steps::default();
        let t0 = Instant::now();
        // Bad input first, before anything is created.
        match opts.backend {
            BackendKind::Process => {
                dist::check_spec(&opts.from)?;
                if let Some(to) = &opts.to {
                    dist::check_spec(to)?;
                }
            }
            BackendKind::Container => {
                crate::container::image_ref(&opts.from)?;
                if let Some(to) = &opts.to {
                    crate::container::image_ref(to)?;
                }
            }
        }
        if opts.buffer_pool_mb < 8 {
            bail!("buffer pool of {} MiB is too small (at least 8)", opts.buffer_pool_mb);
        }
        let run_dir = absolute(&opts.run_dir);
        sweep_stale();
        if let Some(live) = live_cluster_in(&run_dir) {
            bail!(
                "run dir {} already holds a live cluster ({live}); run `coldswap cluster down --run-dir {}` first",
                run_dir.display(),
                run_dir.display()
            );
        }
        if run_dir.join(STATE_FILE).exists() {
            if let Ok(old) = read_state(&run_dir) {
                tracing::warn!("run dir {} holds a stopped cluster from an earlier run; removing it", run_dir.display());
                destroy_quietly(&old, true);
            }
        }
        let ports = match opts.ports {
            Some((a, b)) => {
                if a == b {
                    bail!("the primary and the replica need different ports (both {a})");
                }
                util::ensure_port_free(a)?;
                util::ensure_port_free(b)?;
                (a, b)
            }
            None => {
                let a = util::free_port()?;
                let mut b = util::free_port()?;
                while b == a {
                    b = util::free_port()?;
                }
                (a, b)
            }
        };
        if opts.backend == BackendKind::Container {
            crate::container::preflight(&opts.container, &opts.from, opts.to.as_deref()).await?;
        }
        let t = Instant::now();
        let (from, to_dist) = match opts.backend {
            BackendKind::Process => {
                let from_spec = opts.from.clone();
                let to_spec = opts.to.clone();
                tokio::task::spawn_blocking(move || -> Result<(Dist, Option<Dist>)> {
                    let f = dist::resolve(&from_spec)?;
                    let t = to_spec.as_deref().map(dist::resolve).transpose()?;
                    Ok((f, t))
                })
                .await??
            }
            BackendKind::Container => (crate::container::image_dist(&opts.container, &opts.from)?, None),
        };
        let _ = to_dist;
        steps.push("provision", t);

        if opts.backend == BackendKind::Process {
            // Two datadirs with 256 MiB redo logs, system tables and binlogs:
            // refuse before creating anything rather than die half-way.
            const NEED: u64 = 640 << 20;
            if let Some(free) = util::free_bytes(&run_dir) {
                if free < NEED {
                    bail!(
                        "no space for a cluster under {}: {} MiB free, at least {} MiB needed (two datadirs with 256 MiB redo logs, before any data); free some space or pick another --run-dir",
                        run_dir.display(),
                        free >> 20,
                        NEED >> 20
                    );
                }
            }
        }
        std::fs::create_dir_all(&run_dir)
            .with_context(|| format!("cannot create run dir {}", run_dir.display()))?;
        let run_dir = run_dir.canonicalize()?;
        let secrets = Secrets::generate();
        util::write_private(&run_dir.join(SECRETS_FILE), serde_json::to_string_pretty(&secrets)?.as_bytes())?;
        let mk = |name: &str, role: Role, port: u16, id: u32| NodeState {
            name: name.to_string(),
            role,
            host: "127.0.0.1".into(),
            port,
            server_id: id,
            dist: from.clone(),
            dir: run_dir.join(name),
            pid: None,
            container: None,
            volume: None,
            peer_host: None,
            peer_port: None,
            buffer_pool_mb: opts.buffer_pool_mb,
            extras: opts.extras.clone(),
            version_string: from.version_string.clone(),
        };
        let state = ClusterState {
            format: 1,
            backend: opts.backend,
            run_dir: run_dir.clone(),
            nodes: vec![mk("node1", Role::Primary, ports.0, 1), mk("node2", Role::Replica, ports.1, 2)],
            owner_pid: std::process::id(),
            // Owned by this process until it is fully up, so an error, a
            // panic or a signal half-way removes it.
            persistent: false,
            to: opts.to.clone(),
            container: None,
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
        match cluster.bring_up(&opts, &mut steps).await {
            Ok(()) => {
                if opts.persistent {
                    cluster.set_persistent(true)?;
                }
                steps.push("up_total", t0);
                Ok((cluster, steps))
            }
            Err(e) => {
                cluster.teardown_after_error().await;
                Err(e)
            }
        }
    }

    async fn bring_up(&mut self, opts: &UpOptions, steps: &mut Steps) -> Result<()> {
        if self.state.backend == BackendKind::Container {
            let t = Instant::now();
            crate::container::create_network(&mut self.state, &opts.container).await?;
            self.save()?;
            steps.push("create_network", t);
        }
        let t = Instant::now();
        for i in 0..2 {
            self.init_node(i).await?;
        }
        steps.push("init_datadirs", t);
        let t = Instant::now();
        for i in 0..2 {
            let ro = i == 1;
            self.start_node(i, ro).await?;
        }
        steps.push("start_servers", t);
        let t = Instant::now();
        for i in 0..2 {
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
        let state = read_state(&run_dir)?;
        let text = std::fs::read_to_string(run_dir.join(SECRETS_FILE))
            .with_context(|| format!("no {SECRETS_FILE} in {}", run_dir.display()))?;
        let secrets: Secrets = serde_json::from_str(&text)?;
        Ok(Cluster { state, secrets, done: false })
    }

    pub fn save(&self) -> Result<()> {
        util::write_atomic(&self.state.run_dir.join(STATE_FILE), serde_json::to_string_pretty(&self.state)?.as_bytes())
    }

    pub fn run_dir(&self) -> &Path {
        &self.state.run_dir
    }

    pub fn secrets(&self) -> &Secrets {
        &self.secrets
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

    pub fn primary_index(&self) -> Result<usize> {
        self.state
            .nodes
            .iter()
            .position(|n| n.role == Role::Primary)
            .ok_or_else(|| anyhow!("the cluster has no primary"))
    }

    pub fn replica_index(&self) -> Result<usize> {
        self.state
            .nodes
            .iter()
            .position(|n| n.role == Role::Replica)
            .ok_or_else(|| anyhow!("the cluster has no replica"))
    }

    pub fn primary(&self) -> Result<&NodeState> {
        Ok(&self.state.nodes[self.primary_index()?])
    }

    pub fn replica(&self) -> Result<&NodeState> {
        Ok(&self.state.nodes[self.replica_index()?])
    }

    pub fn node(&self, i: usize) -> &NodeState {
        &self.state.nodes[i]
    }

    pub fn node_mut(&mut self, i: usize) -> &mut NodeState {
        &mut self.state.nodes[i]
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

    pub async fn admin(&self, i: usize) -> Result<MySqlConnection> {
        sql::connect(&self.admin_options(i), Duration::from_secs(10))
            .await
            .with_context(|| format!("cannot connect to {} ({})", self.state.nodes[i].name, self.state.nodes[i].addr()))
    }

    async fn init_node(&mut self, i: usize) -> Result<()> {
        match self.state.backend {
            BackendKind::Process => {
                let n = self.state.nodes[i].clone();
                tokio::task::spawn_blocking(move || crate::process::init(&n)).await?
            }
            BackendKind::Container => Ok(()),
        }
    }

    /// Start a node's server (it must be stopped).
    pub async fn start_node(&mut self, i: usize, read_only: bool) -> Result<()> {
        let r = match self.state.backend {
            BackendKind::Process => crate::process::start(&mut self.state.nodes[i], read_only).await,
            BackendKind::Container => {
                let secrets = self.secrets.clone();
                let cc = self.state.container.clone();
                crate::container::start(&mut self.state.nodes[i], read_only, &secrets, cc.as_ref()).await
            }
        };
        self.save()?;
        r
    }

    /// Clean shutdown of a node.
    pub async fn stop_node(&mut self, i: usize) -> Result<()> {
        let r = match self.state.backend {
            BackendKind::Process => crate::process::stop(&mut self.state.nodes[i], Duration::from_secs(120)).await,
            BackendKind::Container => crate::container::stop(&mut self.state.nodes[i]).await,
        };
        self.save()?;
        r
    }

    /// SIGKILL a node, as a crash.
    pub async fn kill_node(&mut self, i: usize) -> Result<()> {
        let r = match self.state.backend {
            BackendKind::Process => crate::process::kill(&mut self.state.nodes[i]).await,
            BackendKind::Container => crate::container::kill(&mut self.state.nodes[i]).await,
        };
        self.save()?;
        r
    }

    pub fn node_running(&self, i: usize) -> bool {
        let n = &self.state.nodes[i];
        match self.state.backend {
            BackendKind::Process => crate::process::running_pid(n).is_some(),
            BackendKind::Container => n.container.as_deref().map(crate::container::container_running).unwrap_or(false),
        }
    }

    /// Root connection that works before our users exist.
    async fn bootstrap_conn(&self, i: usize) -> Result<MySqlConnection> {
        match self.state.backend {
            BackendKind::Process => crate::process::root_conn(&self.state.nodes[i]).await,
            BackendKind::Container => {
                let n = &self.state.nodes[i];
                sql::connect(&sql::tcp_options(&n.host, n.port, "root", &self.secrets.admin_password), Duration::from_secs(10))
                    .await
                    .with_context(|| format!("cannot connect to {} as root", n.name))
            }
        }
    }

    /// Create our three users on one node without binlogging them (each
    /// node gets its own; replication starts from an empty history).
    async fn bootstrap_users(&mut self, i: usize) -> Result<()> {
        let d = self.state.nodes[i].dialect();
        let s = &self.secrets;
        let mut c = self.bootstrap_conn(i).await?;
        let mut stmts = vec!["SET SESSION sql_log_bin=0".to_string()];
        if self.state.backend == BackendKind::Process {
            // Password-less root over TCP would let anything on this host in.
            for h in ["127.0.0.1", "::1"] {
                stmts.push(format!("DROP USER IF EXISTS 'root'@'{h}'"));
            }
        }
        stmts.push(d.create_user(&s.admin_user, "%", &s.admin_password));
        stmts.extend(d.admin_grants(&s.admin_user, "%"));
        stmts.push(d.create_user(&s.repl_user, "%", &s.repl_password));
        stmts.extend(d.repl_grants(&s.repl_user, "%"));
        stmts.push(d.create_user(&s.app_user, "%", &s.app_password));
        stmts.extend(d.app_grants(&s.app_user, "%"));
        stmts.push("SET SESSION sql_log_bin=1".into());
        sql::exec_all(&mut c, &stmts).await.with_context(|| format!("creating users on {}", self.state.nodes[i].name))?;
        let v = sql::query_text(&mut c, "SELECT VERSION()").await?.unwrap_or_default();
        self.state.nodes[i].version_string = v;
        sql::close(c).await;
        Ok(())
    }

    /// Make node `r` replicate from node `p`.
    async fn point_replica_at(&mut self, r: usize, p: usize, demoted: bool) -> Result<()> {
        let d = self.state.nodes[r].dialect();
        let (host, port) = self.state.nodes[p].peer_addr();
        let s = self.secrets.clone();
        let mut c = self.admin(r).await?;
        let _ = sql::exec(&mut c, d.stop_replica()).await;
        let mut stmts = if demoted { d.prepare_demoted() } else { d.prepare_replica() };
        stmts.push(d.change_source(&Source { host: &host, port, user: &s.repl_user, password: &s.repl_password }));
        stmts.push(d.start_replica().to_string());
        stmts.extend(d.fence());
        sql::exec_all(&mut c, &stmts)
            .await
            .with_context(|| format!("configuring {} as a replica of {}", self.state.nodes[r].name, self.state.nodes[p].name))?;
        sql::close(c).await;
        self.state.nodes[r].role = Role::Replica;
        Ok(())
    }

    /// Replica status of a node (None when it is not replicating).
    pub async fn replica_status(&self, i: usize) -> Result<Option<ReplicaStatus>> {
        let d = self.state.nodes[i].dialect();
        let mut c = self.admin(i).await?;
        let r = sql::replica_status(&mut c, &d).await;
        sql::close(c).await;
        r
    }

    /// Write a heartbeat on the primary and wait until the replica applied it.
    /// Also fails when the replica's threads stop.
    pub async fn verify_replication(&self, timeout: Duration) -> Result<()> {
        let p = self.primary_index()?;
        let r = self.replica_index()?;
        let seq = self.heartbeat(p).await?;
        let deadline = Instant::now() + timeout;
        let mut c = self.admin(r).await?;
        let d = self.state.nodes[r].dialect();
        loop {
            let seen = sql::query_i64(&mut c, &format!("SELECT COALESCE(MAX(seq),0) FROM {META_DB}.heartbeat WHERE id=1"))
                .await
                .unwrap_or(0);
            if seen >= seq {
                break;
            }
            if let Some(st) = sql::replica_status(&mut c, &d).await? {
                if !st.healthy() && (st.io_running == "No" || st.sql_running == "No") {
                    bail!("replication from {} to {} is broken: {}", self.state.nodes[p].name, self.state.nodes[r].name, st.problem());
                }
            } else {
                bail!("{} is not replicating", self.state.nodes[r].name);
            }
            if Instant::now() > deadline {
                bail!(
                    "replica {} did not apply a heartbeat within {:.0} s",
                    self.state.nodes[r].name,
                    timeout.as_secs_f64()
                );
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

    /// Upgrade the replica in place to `to`: stop replication, clean stop,
    /// restart the same datadir on the new binaries, run the upgrade tool,
    /// restart replication and check it flows.
    pub async fn upgrade(&mut self, to: Option<&str>) -> Result<Steps> {
        let spec = to
            .map(|s| s.to_string())
            .or_else(|| self.state.to.clone())
            .ok_or_else(|| anyhow!("no version to upgrade to: pass --to"))?;
        let mut steps = Steps::default();
        let t0 = Instant::now();
        let r = self.replica_index()?;
        let t = Instant::now();
        let new_dist = match self.state.backend {
            BackendKind::Process => {
                dist::check_spec(&spec)?;
                let s = spec.clone();
                tokio::task::spawn_blocking(move || dist::resolve(&s)).await??
            }
            BackendKind::Container => {
                let cc = self.state.container.clone().ok_or_else(|| anyhow!("container cluster without container settings"))?;
                crate::container::image_dist(&cc.options, &spec)?
            }
        };
        steps.push("provision", t);
        let old = self.state.nodes[r].dist.clone();
        if new_dist.version < old.version || (new_dist.flavor != old.flavor) {
            bail!("cannot upgrade {} from {} to {}: not an upgrade", self.state.nodes[r].name, old.label(), new_dist.label());
        }
        let d = self.state.nodes[r].dialect();
        let t = Instant::now();
        {
            let mut c = self.admin(r).await?;
            sql::exec(&mut c, d.stop_replica()).await?;
            let major = (new_dist.version.0, new_dist.version.1) != (old.version.0, old.version.1);
            if major {
                // A slow shutdown leaves nothing for the new version's redo/undo handling.
                sql::exec(&mut c, "SET GLOBAL innodb_fast_shutdown=0").await?;
            }
            sql::close(c).await;
        }
        steps.push("stop_replication", t);
        let t = Instant::now();
        self.stop_node(r).await?;
        steps.push("stop_replica_server", t);
        let t = Instant::now();
        self.state.nodes[r].dist = new_dist.clone();
        if self.state.backend == BackendKind::Container {
            crate::container::prepare_upgrade(&mut self.state.nodes[r]).await?;
        }
        self.save()?;
        self.start_node(r, true).await?;
        steps.push("start_on_new_binaries", t);
        let t = Instant::now();
        let ran = match self.state.backend {
            BackendKind::Process => crate::process::run_upgrade_tool(&self.state.nodes[r]).await?,
            BackendKind::Container => {
                let s = self.secrets.clone();
                crate::container::run_upgrade_tool(&self.state.nodes[r], &s).await?
            }
        };
        if ran {
            steps.push("upgrade_tool", t);
        }
        let t = Instant::now();
        {
            let d = self.state.nodes[r].dialect();
            let mut c = self.admin(r).await?;
            sql::exec(&mut c, d.start_replica()).await?;
            let v = sql::query_text(&mut c, "SELECT VERSION()").await?.unwrap_or_default();
            self.state.nodes[r].version_string = v;
            sql::close(c).await;
        }
        self.save()?;
        steps.push("start_replication", t);
        let t = Instant::now();
        self.verify_replication(Duration::from_secs(60)).await?;
        steps.push("verify_replication", t);
        steps.push("upgrade_total", t0);
        Ok(steps)
    }

    /// Planned switchover. `on_writable` is called as soon as the new primary
    /// accepts writes (the endpoint swap); the unavailability window ends there.
    pub async fn promote<F>(&mut self, opts: &PromoteOptions, on_writable: F) -> Result<(PromoteOutcome, Steps)>
    where
        F: FnOnce(&NodeState),
    {
        let fenced = self.promote_begin(opts).await?;
        self.promote_finish(fenced, opts, on_writable).await
    }

    /// First half of a switchover: guardrails, fence the old primary, wait
    /// until the replica has applied everything. Writes are unavailable from
    /// here until [`Cluster::promote_finish`] (or [`Cluster::promote_abort`]).
    pub async fn promote_begin(&mut self, opts: &PromoteOptions) -> Result<Fenced> {
        let mut steps = Steps::default();
        let p = self.primary_index()?;
        let r = self.replica_index()?;
        let (pname, rname) = (self.state.nodes[p].name.clone(), self.state.nodes[r].name.clone());
        let dp = self.state.nodes[p].dialect();
        let dr = self.state.nodes[r].dialect();

        // 1. Guardrails: a broken or lagging replica is not promoted.
        let t = Instant::now();
        let st = self
            .replica_status(r)
            .await?
            .ok_or_else(|| anyhow!("refusing to promote: {rname} is not replicating"))?;
        if !st.healthy() {
            bail!("refusing to promote: replication on {rname} is broken ({})", st.problem());
        }
        match st.seconds_behind {
            Some(lag) if (lag as f64) > opts.max_lag_s => {
                bail!("refusing to promote: {rname} lags {lag} s behind {pname} (limit {} s)", opts.max_lag_s)
            }
            None => bail!("refusing to promote: {rname} reports no lag (replication not running)"),
            _ => {}
        }
        steps.push("check_replica", t);

        // 2. Fence the old primary. The write-unavailability window starts here.
        let fence_at = Instant::now();
        let mut pc = self.admin(p).await?;
        let fenced = async {
            sql::exec_all(&mut pc, &dp.fence()).await?;
            // Wait out writes already in flight, then release.
            sql::exec(&mut pc, "FLUSH TABLES WITH READ LOCK").await?;
            sql::exec(&mut pc, "UNLOCK TABLES").await?;
            sql::query_text(&mut pc, dp.gtid_executed_query()).await
        }
        .await;
        let pos = match fenced {
            Ok(pos) => pos.unwrap_or_default(),
            Err(e) => {
                let _ = sql::exec_all(&mut pc, &dp.unfence()).await;
                sql::close(pc).await;
                bail!("promotion failed while fencing {pname}: {e:#}; rolled back: {pname} is still the primary");
            }
        };
        sql::close(pc).await;
        steps.push("fence_old_primary", fence_at);

        // 3. Wait for the replica to apply everything the old primary executed.
        let t = Instant::now();
        let caught_up = async {
            let mut rc = self.admin(r).await?;
            let q = dr.wait_gtid_query(&pos, opts.catchup_timeout_s);
            let v = sql::query_i64(&mut rc, &q).await;
            sql::close(rc).await;
            v
        }
        .await;
        match caught_up {
            Ok(0) => {}
            Ok(_) => {
                self.rollback(p, r, false).await;
                bail!(
                    "promotion failed: {rname} did not catch up to {pos} within {} s; rolled back: {pname} is the primary again",
                    opts.catchup_timeout_s
                );
            }
            Err(e) => {
                self.rollback(p, r, false).await;
                bail!("promotion failed while waiting for catch-up: {e:#}; rolled back: {pname} is the primary again");
            }
        }
        steps.push("wait_catchup", t);
        Ok(Fenced { p, r, pos, fence_at, steps })
    }

    /// Give up a switchover begun with [`Cluster::promote_begin`]: the old
    /// primary takes writes again.
    pub async fn promote_abort(&mut self, f: Fenced) {
        self.rollback(f.p, f.r, false).await;
    }

    /// Second half of a switchover: detach the replica, open it for writes,
    /// call `on_writable`, optionally demote the old primary.
    pub async fn promote_finish<F>(&mut self, f: Fenced, opts: &PromoteOptions, on_writable: F) -> Result<(PromoteOutcome, Steps)>
    where
        F: FnOnce(&NodeState),
    {
        let Fenced { p, r, pos, fence_at, mut steps } = f;
        let (pname, rname) = (self.state.nodes[p].name.clone(), self.state.nodes[r].name.clone());
        let dr = self.state.nodes[r].dialect();
        // 4. Detach the replica and open it for writes.
        let t = Instant::now();
        let detached = async {
            let mut rc = self.admin(r).await?;
            sql::exec(&mut rc, dr.stop_replica()).await?;
            sql::exec(&mut rc, dr.reset_replica_all()).await?;
            sql::exec_all(&mut rc, &dr.unfence()).await?;
            sql::close(rc).await;
            anyhow::Ok(())
        }
        .await;
        if let Err(e) = detached {
            self.rollback(p, r, true).await;
            bail!("promotion failed while opening {rname} for writes: {e:#}; rolled back: {pname} is the primary again");
        }
        self.state.nodes[r].role = Role::Primary;
        self.state.nodes[p].role = Role::Fenced;
        self.save()?;
        on_writable(&self.state.nodes[r]);
        let unavailable = fence_at.elapsed().as_secs_f64();
        steps.push("promote_replica", t);

        // 5. Optionally keep the old primary as a replica of the new one.
        let mut demoted = false;
        if opts.demote {
            let t = Instant::now();
            self.point_replica_at(p, r, true).await.context("demoting the old primary")?;
            self.save()?;
            self.verify_replication(Duration::from_secs(30)).await?;
            demoted = true;
            steps.push("demote_old_primary", t);
        }
        let outcome = PromoteOutcome {
            old_primary: pname,
            new_primary: rname,
            write_unavailable_seconds: unavailable,
            gtid_position: pos,
            demoted,
        };
        Ok((outcome, steps))
    }

    /// Put the old primary back in service after a failed promotion.
    async fn rollback(&mut self, p: usize, r: usize, replica_detached: bool) {
        tracing::warn!("rolling back: {} is made writable again", self.state.nodes[p].name);
        let dp = self.state.nodes[p].dialect();
        if let Ok(mut c) = self.admin(p).await {
            let _ = sql::exec_all(&mut c, &dp.unfence()).await;
            sql::close(c).await;
        }
        if replica_detached {
            let _ = self.point_replica_at(r, p, false).await;
        } else {
            // The replica may still be mid-catch-up; make sure it stays read-only.
            let dr = self.state.nodes[r].dialect();
            if let Ok(mut c) = self.admin(r).await {
                let _ = sql::exec_all(&mut c, &dr.fence()).await;
                sql::close(c).await;
            }
        }
        self.state.nodes[p].role = Role::Primary;
        self.state.nodes[r].role = Role::Replica;
        let _ = self.save();
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
                        s.version = sql::query_text(&mut c, "SELECT VERSION()").await.ok().flatten();
                        s.read_only = sql::query_i64(&mut c, "SELECT @@GLOBAL.read_only").await.ok().map(|v| v != 0);
                        s.gtid_position = sql::query_text(&mut c, n.dialect().gtid_executed_query()).await.ok().flatten();
                        s.replication = sql::replica_status(&mut c, &n.dialect()).await.ok().flatten();
                        sql::close(c).await;
                    }
                    Err(e) => s.error = Some(format!("{e:#}")),
                }
            }
            out.push(s);
        }
        out
    }

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
                flavor: n.dist.flavor,
                pid: n.pid,
                container: n.container.clone(),
            })
            .collect()
    }

    pub fn record(&self, command: &str, steps: &Steps, promotion: Option<PromoteOutcome>) -> Record {
        let total = steps.0.iter().filter(|s| s.name.ends_with("_total")).map(|s| s.seconds).next();
        Record {
            command: command.to_string(),
            run_dir: self.state.run_dir.clone(),
            backend: self.state.backend,
            nodes: self.node_infos(),
            steps: steps.0.clone(),
            total_seconds: total.unwrap_or_else(|| steps.0.iter().map(|s| s.seconds).sum()),
            promotion,
        }
    }

    /// Stop every server; remove the run dir unless `keep`.
    pub async fn down(mut self, keep: bool) -> Result<Steps> {
        let mut steps = Steps::default();
        let t = Instant::now();
        let mut first_err = None;
        for i in 0..self.state.nodes.len() {
            let r = match self.state.backend {
                BackendKind::Process => crate::process::stop(&mut self.state.nodes[i], Duration::from_secs(60)).await,
                BackendKind::Container => crate::container::remove(&mut self.state.nodes[i]).await,
            };
            if let Err(e) = r {
                first_err.get_or_insert(e);
            }
            self.state.nodes[i].role = Role::Stopped;
        }
        if self.state.backend == BackendKind::Container {
            if let Err(e) = crate::container::remove_cluster_resources(&self.state, keep).await {
                first_err.get_or_insert(e);
            }
        }
        for n in &self.state.nodes {
            let _ = std::fs::remove_file(n.socket());
        }
        steps.push("stop_servers", t);
        if keep {
            let _ = self.save();
        } else {
            let t = Instant::now();
            std::fs::remove_dir_all(&self.state.run_dir)
                .with_context(|| format!("cannot remove run dir {}", self.state.run_dir.display()))?;
            steps.push("remove_run_dir", t);
        }
        registry::unregister(&self.state.run_dir);
        self.done = true;
        match first_err {
            Some(e) => Err(e),
            None => Ok(steps),
        }
    }

    async fn teardown_after_error(&mut self) {
        for i in 0..self.state.nodes.len() {
            let _ = match self.state.backend {
                BackendKind::Process => crate::process::kill(&mut self.state.nodes[i]).await,
                BackendKind::Container => crate::container::remove(&mut self.state.nodes[i]).await,
            };
        }
        if self.state.backend == BackendKind::Container {
            let _ = crate::container::remove_cluster_resources(&self.state, false).await;
        }
        for n in &self.state.nodes {
            let _ = std::fs::remove_file(n.socket());
        }
        let _ = std::fs::remove_dir_all(&self.state.run_dir);
        registry::unregister(&self.state.run_dir);
        self.done = true;
    }

    /// Forget this handle without stopping anything (the cluster outlives it).
    pub fn detach(mut self) {
        self.done = true;
    }
}

impl Drop for Cluster {
    /// A cluster owned by this process never outlives it: on an error path or
    /// a panic, its servers are killed and its run dir removed.
    fn drop(&mut self) {
        if self.done || self.state.persistent {
            return;
        }
        if self.state.owner_pid != std::process::id() {
            return;
        }
        destroy_quietly(&self.state, true);
    }
}

impl Cluster {
    /// Seed the dataset into the primary, then wait for the replica.
    pub async fn seed(
        &self,
        scale: f64,
        replace: bool,
        progress: crate::seed::Progress<'_>,
    ) -> Result<crate::seed::SeedSummary> {
        let p = self.primary_index()?;
        let mut c = self.admin(p).await?;
        let flavor = self.state.nodes[p].dist.flavor;
        let mut summary = crate::seed::seed(&mut c, flavor, scale, replace, progress).await?;
        sql::close(c).await;
        if self.replica_index().is_ok() {
            let t = Instant::now();
            self.verify_replication(Duration::from_secs(1800)).await.context("waiting for the replica after seeding")?;
            summary.replica_catchup_seconds = Some(t.elapsed().as_secs_f64());
        }
        Ok(summary)
    }
}

impl Cluster {
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

impl Cluster {
    /// Leave the cluster running after this process: it becomes persistent
    /// (cleaned only by `coldswap cluster down`).
    pub fn keep(mut self) -> Result<()> {
        self.set_persistent(true)?;
        self.detach();
        Ok(())
    }
}

/// Files, programs and logs of a node, wherever it runs: on this host
/// (process backend) or inside its container (container backend).
impl Cluster {
    /// The datadir as the node's server sees it.
    pub fn server_datadir(&self, i: usize) -> PathBuf {
        match self.state.backend {
            BackendKind::Process => {
                let d = self.state.nodes[i].datadir();
                d.canonicalize().unwrap_or(d)
            }
            BackendKind::Container => PathBuf::from(crate::container::DATADIR),
        }
    }

    /// Read a file under the node's datadir.
    pub async fn read_data_file(&self, i: usize, rel: &str) -> Result<Vec<u8>> {
        match self.state.backend {
            BackendKind::Process => {
                let p = self.state.nodes[i].datadir().join(rel);
                std::fs::read(&p).with_context(|| format!("cannot read {}", p.display()))
            }
            BackendKind::Container => {
                let name = self.container_name(i)?;
                let out = self.run_on_node(i, "cat", &[&format!("{}/{rel}", crate::container::DATADIR)], &[], None).await?;
                if !out.status.success() {
                    bail!("cannot read {rel} in container {name}: {}", String::from_utf8_lossy(&out.stderr).trim());
                }
                Ok(out.stdout)
            }
        }
    }

    /// Write a file under the node's datadir.
    pub async fn write_data_file(&self, i: usize, rel: &str, bytes: &[u8]) -> Result<()> {
        match self.state.backend {
            BackendKind::Process => {
                let p = self.state.nodes[i].datadir().join(rel);
                std::fs::write(&p, bytes).with_context(|| format!("cannot write {}", p.display()))
            }
            BackendKind::Container => {
                let target = format!("{}/{rel}", crate::container::DATADIR);
                let out = self.run_on_node(i, "sh", &["-c", &format!("cat > '{target}'")], &[], Some(bytes)).await?;
                if !out.status.success() {
                    bail!("cannot write {rel} in container: {}", String::from_utf8_lossy(&out.stderr).trim());
                }
                Ok(())
            }
        }
    }

    fn container_name(&self, i: usize) -> Result<String> {
        self.state.nodes[i].container.clone().ok_or_else(|| anyhow!("{} has no container", self.state.nodes[i].name))
    }

    /// Run a program where the node's server runs (host paths of the
    /// first-touch library are mounted at the same place in containers).
    /// `env` must hold no secrets: with containers it is on docker's argv.
    pub async fn run_on_node(
        &self,
        i: usize,
        program: &str,
        args: &[&str],
        env: &[(String, String)],
        stdin: Option<&[u8]>,
    ) -> Result<std::process::Output> {
        use std::process::Stdio;
        use tokio::io::AsyncWriteExt;
        let mut cmd = match self.state.backend {
            BackendKind::Process => {
                let mut c = tokio::process::Command::new(program);
                c.args(args);
                for (k, v) in env {
                    c.env(k, v);
                }
                c
            }
            BackendKind::Container => {
                let mut c = tokio::process::Command::new("docker");
                c.arg("exec");
                if stdin.is_some() {
                    c.arg("-i");
                }
                for (k, v) in env {
                    c.arg("-e").arg(format!("{k}={v}"));
                }
                c.arg(self.container_name(i)?).arg(program).args(args);
                c
            }
        };
        cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().with_context(|| format!("cannot run {program}"))?;
        if let Some(data) = stdin {
            let mut si = child.stdin.take().unwrap();
            si.write_all(data).await?;
            drop(si);
        }
        Ok(child.wait_with_output().await?)
    }

    /// What the node's server logged since it last started (process: its
    /// error log after `offset`; containers: the container's log).
    pub fn server_log_since(&self, i: usize, offset: u64) -> String {
        match self.state.backend {
            BackendKind::Process => std::fs::read(self.state.nodes[i].error_log())
                .map(|b| String::from_utf8_lossy(&b[(offset as usize).min(b.len())..]).to_string())
                .unwrap_or_default(),
            BackendKind::Container => self
                .state
                .nodes[i]
                .container
                .as_deref()
                .map(crate::container::logs)
                .unwrap_or_default(),
        }
    }
}
