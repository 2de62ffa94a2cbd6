//! The container backend: each server is a container started through
//! testcontainers, with its datadir on a named volume, both nodes on a
//! private network and replication by container name.
//!
//! Containers are created (and waited for) with testcontainers; once a
//! server is up, its handle is released and the cluster record owns the
//! container by name, like the process backend owns a pid: later commands
//! (`cluster upgrade`, `cluster down`, a later run's sweep) act on it by name
//! and label through the docker CLI, which also works from a signal handler
//! or a Drop guard without a runtime.
//!
//! Images: our own, built from Debian packages by `make images`
//! (coldswap/mariadb:10.11 on bookworm, coldswap/mariadb:11.8 on trixie), or
//! the official mysql:5.7 / mysql:8.0 images where a registry is reachable.

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use testcontainers::core::{IntoContainerPort, Mount, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{GenericImage, ImageExt};

use crate::cluster::{ClusterState, Secrets};
use crate::dist::{Dist, Flavor, InstallMethod, Version};
use crate::node::NodeState;
use crate::sql;

/// Label every resource carries, valued with the run's id.
pub const LABEL_RUN: &str = "org.coldswap.run";
const LABEL_RUN_DIR: &str = "org.coldswap.run_dir";
const LABEL_OWNER: &str = "org.coldswap.owner_pid";
/// Where the server keeps its data inside every supported image.
pub const DATADIR: &str = "/var/lib/mysql";
/// The one line every supported image prints when the final server (not an
/// entrypoint's temporary init server, which listens on port 0) is ready.
pub const READY_LINE: &str = "port: 3306  ";

/// Backend settings from the config (`[container]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContainerOptions {
    /// Seconds a server may take from container start to ready.
    pub startup_timeout_s: u64,
}

impl Default for ContainerOptions {
    fn default() -> Self {
        ContainerOptions { startup_timeout_s: 180 }
    }
}

/// What a cluster on containers records beside its nodes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterContainers {
    pub options: ContainerOptions,
    /// `cs-<hex>`: prefix of every container, volume and network name.
    pub run_id: String,
    pub network: String,
}

// ---------------------------------------------------------------------------
// Image settings (pure, unit-tested: the MySQL images cannot be pulled here).

/// How to run one kind of image.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageProfile {
    pub flavor: Flavor,
    pub version: Version,
    /// Environment the image's entrypoint needs (root password included).
    pub env: Vec<(String, String)>,
    /// Arguments before the server flags (the official MySQL entrypoint
    /// prepends mysqld itself when the first argument starts with '-').
    pub cmd_prefix: Vec<String>,
    /// The line on stderr that says the final server is ready.
    pub ready_line: &'static str,
    /// The upgrade tool inside the image, when this version needs one.
    pub upgrade_tool: Option<&'static str>,
}

/// The image a version spec or image reference stands for:
/// `mariadb-10.11.18` → `coldswap/mariadb:10.11`, `mysql-5.7.19` →
/// `mysql:5.7.19`; anything with a ':' or '/' is an image already.
pub fn image_ref(spec: &str) -> Result<String> {
    if spec.contains(':') || spec.contains('/') {
        return Ok(spec.to_string());
    }
    if let Some(v) = spec.strip_prefix("mariadb-") {
        let parsed = Version::parse(v).ok_or_else(|| anyhow!("'{spec}' is not a version (expected e.g. mariadb-10.11)"))?;
        return Ok(format!("coldswap/mariadb:{}.{}", parsed.0, parsed.1));
    }
    if let Some(v) = spec.strip_prefix("mysql-") {
        Version::parse(v).ok_or_else(|| anyhow!("'{spec}' is not a version (expected e.g. mysql-5.7.19)"))?;
        return Ok(format!("mysql:{v}"));
    }
    bail!("'{spec}' is neither an image (name:tag) nor a version such as mariadb-10.11 or mysql-5.7.19")
}

/// Flavor and version from an image's labels (our images) or its reference
/// (official `mysql:` / `mariadb:` images, whose tags are versions).
pub fn image_identity(reference: &str, labels: &[(String, String)]) -> Result<(Flavor, Version)> {
    let label = |k: &str| labels.iter().find(|(a, _)| a == k).map(|(_, v)| v.as_str());
    if let (Some(f), Some(v)) = (label("org.coldswap.flavor"), label("org.coldswap.version")) {
        let flavor = match f {
            "mariadb" => Flavor::MariaDB,
            "mysql" => Flavor::MySQL,
            other => bail!("image {reference} has an unknown flavor label '{other}'"),
        };
        let version = Version::parse(v).ok_or_else(|| anyhow!("image {reference} has a bad version label '{v}'"))?;
        return Ok((flavor, version));
    }
    let (name, tag) = split_ref(reference);
    let base = name.rsplit('/').next().unwrap_or(&name);
    let flavor = match base {
        "mysql" | "mysql-server" => Flavor::MySQL,
        "mariadb" => Flavor::MariaDB,
        _ => bail!("cannot tell which server image {reference} holds (no org.coldswap.flavor label, not a mysql or mariadb image)"),
    };
    let version = Version::parse(&tag).ok_or_else(|| {
        anyhow!("image {reference}: the tag '{tag}' is not a version; use a versioned tag such as {base}:5.7.19")
    })?;
    Ok((flavor, version))
}

/// `name:tag` → (name, tag); no tag means `latest`. A registry port
/// (`host:5000/name`) is not taken for a tag.
pub fn split_ref(reference: &str) -> (String, String) {
    match reference.rfind(':') {
        Some(i) if !reference[i + 1..].contains('/') => (reference[..i].to_string(), reference[i + 1..].to_string()),
        _ => (reference.to_string(), "latest".to_string()),
    }
}

/// Settings for an image holding `flavor` `version`; `ours` for images
/// built by docker/build-image.sh.
pub fn profile(flavor: Flavor, version: Version, ours: bool, root_password: &str) -> ImageProfile {
    let upgrade_tool = match flavor {
        Flavor::MariaDB => Some("mariadb-upgrade"),
        Flavor::MySQL if version < Version(8, 0, 16) => Some("mysql_upgrade"),
        Flavor::MySQL => None,
    };
    let (env, cmd_prefix) = if ours {
        (vec![("COLDSWAP_ROOT_PASSWORD".to_string(), root_password.to_string())], vec![])
    } else {
        match flavor {
            Flavor::MySQL => (
                vec![
                    ("MYSQL_ROOT_PASSWORD".to_string(), root_password.to_string()),
                    ("MYSQL_ROOT_HOST".to_string(), "%".to_string()),
                ],
                // The entrypoint prepends mysqld to arguments starting with '-'.
                vec![],
            ),
            Flavor::MariaDB => (
                vec![
                    ("MARIADB_ROOT_PASSWORD".to_string(), root_password.to_string()),
                    ("MARIADB_ROOT_HOST".to_string(), "%".to_string()),
                ],
                vec![],
            ),
        }
    };
    ImageProfile { flavor, version, env, cmd_prefix, ready_line: READY_LINE, upgrade_tool }
}

/// Server flags for a node in a container (the datadir, socket and port are
/// the image's; logs go to stderr, where the readiness line is read).
pub fn server_flags(node: &NodeState, read_only: bool) -> Vec<String> {
    let mut a = vec![
        "--skip-name-resolve".to_string(),
        format!("--innodb-buffer-pool-size={}M", node.buffer_pool_mb),
        "--performance-schema=ON".to_string(),
        "--max-connections=1000".to_string(),
    ];
    if node.dist.flavor == Flavor::MariaDB || node.dist.version >= Version(8, 0, 0) {
        a.push("--innodb-log-file-size=256M".to_string());
    }
    a.extend(node.role_flags(read_only));
    a
}

/// Container, volume and network names of a run.
pub fn names(run_id: &str, node: &str) -> (String, String) {
    (format!("{run_id}-{node}"), format!("{run_id}-{node}-data"))
}

// ---------------------------------------------------------------------------
// The docker CLI, for everything after a container is created.

fn docker(args: &[&str]) -> Result<String> {
    let out = Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("cannot run the docker CLI (is docker installed?)")?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let line = err.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string();
        bail!("docker {}: {line}", args.first().unwrap_or(&""));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

async fn docker_async(args: Vec<String>) -> Result<String> {
    tokio::task::spawn_blocking(move || {
        let a: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        docker(&a)
    })
    .await?
}

/// Whether a Docker engine answers; Err holds the reason it does not.
pub fn engine() -> std::result::Result<String, String> {
    let out = Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .stdin(Stdio::null())
        .output();
    match out {
        Err(_) => Err("the docker CLI is not installed".into()),
        Ok(o) if o.status.success() => Ok(String::from_utf8_lossy(&o.stdout).trim().to_string()),
        Ok(o) => {
            let e = String::from_utf8_lossy(&o.stderr);
            Err(e.lines().find(|l| !l.trim().is_empty()).unwrap_or("no answer").trim().to_string())
        }
    }
}

fn image_labels(reference: &str) -> Option<Vec<(String, String)>> {
    let out = docker(&["image", "inspect", "--format", "{{json .Config.Labels}}", reference]).ok()?;
    let map: Option<std::collections::BTreeMap<String, String>> = serde_json::from_str(&out).ok()?;
    Some(map.unwrap_or_default().into_iter().collect())
}

/// The image is here, or was pulled now; its labels.
fn ensure_image(reference: &str) -> Result<Vec<(String, String)>> {
    if let Some(l) = image_labels(reference) {
        return Ok(l);
    }
    match docker(&["pull", "--quiet", reference]) {
        Ok(_) => Ok(image_labels(reference).unwrap_or_default()),
        Err(e) => bail!(
            "image {reference} is not here and cannot be pulled ({}): run `make images`, name another image, or use --backend process",
            e.to_string().trim_start_matches("docker pull: ")
        ),
    }
}

pub fn container_exists(name: &str) -> bool {
    docker(&["container", "inspect", "--format", "{{.Id}}", name]).is_ok()
}

pub fn container_running(name: &str) -> bool {
    docker(&["container", "inspect", "--format", "{{.State.Running}}", name]).map(|s| s == "true").unwrap_or(false)
}

fn remove_now(name: &str) {
    let _ = docker(&["rm", "-f", "-v", name]);
}

/// Stop and remove a cluster's containers, volumes and network, without a
/// runtime (Drop guards, stale-run sweeps, signal paths).
pub fn destroy_sync(state: &ClusterState) {
    for n in &state.nodes {
        if let Some(c) = &n.container {
            remove_now(c);
        }
    }
    for n in &state.nodes {
        if let Some(v) = &n.volume {
            let _ = docker(&["volume", "rm", "-f", v]);
        }
    }
    if let Some(cc) = &state.container {
        let _ = docker(&["network", "rm", &cc.network]);
    }
}

/// Remove containers, volumes and networks a killed run left behind: those
/// labelled by coldswap whose owner process is gone and whose run dir no
/// longer records them. Returns one line per run cleaned.
pub fn sweep_orphans() -> Vec<String> {
    if engine().is_err() {
        return Vec::new();
    }
    let mut cleaned = Vec::new();
    let fmt = format!("{{{{.Name}}}}\t{{{{.Label \"{LABEL_RUN}\"}}}}\t{{{{.Label \"{LABEL_RUN_DIR}\"}}}}\t{{{{.Label \"{LABEL_OWNER}\"}}}}");
    let filter = format!("label={LABEL_RUN}");
    let mut orphan_runs = std::collections::BTreeSet::new();
    for kind in ["container", "volume", "network"] {
        let listing = match kind {
            "container" => docker(&["ps", "-a", "--filter", &filter, "--format", &fmt.replace("{{.Name}}", "{{.Names}}")]),
            other => docker(&[other, "ls", "--filter", &filter, "--format", &fmt]),
        };
        let Ok(listing) = listing else { continue };
        for line in listing.lines() {
            let f: Vec<&str> = line.split('\t').collect();
            if f.len() < 4 {
                continue;
            }
            let (name, run, run_dir, owner) = (f[0], f[1], f[2], f[3]);
            let owner_alive = owner.parse::<u32>().map(crate::util::pid_alive).unwrap_or(false);
            if owner_alive || recorded_in(run_dir, run) {
                continue;
            }
            match kind {
                "container" => remove_now(name),
                "volume" => {
                    let _ = docker(&["volume", "rm", "-f", name]);
                }
                _ => {
                    let _ = docker(&["network", "rm", name]);
                }
            }
            orphan_runs.insert(run.to_string());
        }
    }
    for r in orphan_runs {
        cleaned.push(format!("removed containers, volumes and networks of run {r}, left by a killed run"));
    }
    cleaned
}

/// Whether a live cluster record in `run_dir` still owns run `run_id`.
fn recorded_in(run_dir: &str, run_id: &str) -> bool {
    let p = PathBuf::from(run_dir).join(crate::cluster::STATE_FILE);
    match std::fs::read_to_string(&p) {
        Ok(text) => match serde_json::from_str::<ClusterState>(&text) {
            Ok(s) => {
                s.container.as_ref().map(|c| c.run_id == run_id).unwrap_or(false)
                    && (s.persistent || crate::util::pid_alive(s.owner_pid))
            }
            Err(_) => false,
        },
        Err(_) => false,
    }
}

// ---------------------------------------------------------------------------
// The lifecycle hooks the cluster calls.

/// Before anything is created: an engine answers and both images are here
/// (or can be pulled).
pub async fn preflight(_o: &ContainerOptions, from: &str, to: Option<&str>) -> Result<()> {
    tokio::task::spawn_blocking({
        let from = from.to_string();
        let to = to.map(|s| s.to_string());
        move || -> Result<()> {
            if let Err(why) = engine() {
                bail!("the container backend needs a Docker engine and none answers ({why}); start one, or use --backend process");
            }
            for spec in std::iter::once(from).chain(to) {
                let r = image_ref(&spec)?;
                let labels = ensure_image(&r)?;
                image_identity(&r, &labels)?;
            }
            Ok(())
        }
    })
    .await?
}

/// The distribution an image holds (paths are inside the image).
pub fn image_dist(_o: &ContainerOptions, spec: &str) -> Result<Dist> {
    let r = image_ref(spec)?;
    let labels = ensure_image(&r)?;
    let (flavor, version) = image_identity(&r, &labels)?;
    let (server, install) = match flavor {
        Flavor::MariaDB => ("/usr/sbin/mariadbd", InstallMethod::InstallDb("/usr/bin/mariadb-install-db".into())),
        Flavor::MySQL => ("/usr/sbin/mysqld", InstallMethod::Initialize),
    };
    let ours = labels.iter().any(|(k, _)| k == "org.coldswap.flavor");
    let tool = profile(flavor, version, ours, "").upgrade_tool;
    Ok(Dist {
        spec: r.clone(),
        flavor,
        version,
        version_string: format!("{version} ({r})"),
        basedir: "/usr".into(),
        server_bin: server.into(),
        install,
        upgrade_bin: tool.map(|t| PathBuf::from("/usr/bin").join(t)),
        lc_messages_dir: None,
        plugin_dir: None,
    })
}

/// The private network and one named volume per node.
pub async fn create_network(s: &mut ClusterState, o: &ContainerOptions) -> Result<()> {
    let seed = format!("{}:{}:{:?}", s.run_dir.display(), std::process::id(), std::time::SystemTime::now());
    let run_id = format!("cs-{:010x}", crate::node::fnv1a(seed.as_bytes()) & 0xff_ffff_ffff);
    let network = format!("{run_id}-net");
    let labels = labels(&run_id, s);
    s.container = Some(ClusterContainers { options: o.clone(), run_id: run_id.clone(), network: network.clone() });
    let mut args = vec!["network".to_string(), "create".into()];
    for l in &labels {
        args.push("--label".into());
        args.push(l.clone());
    }
    args.push(network.clone());
    docker_async(args).await.with_context(|| format!("cannot create network {network}"))?;
    for n in s.nodes.iter_mut() {
        let (c, v) = names(&run_id, &n.name);
        let mut args = vec!["volume".to_string(), "create".into()];
        for l in &labels {
            args.push("--label".into());
            args.push(l.clone());
        }
        args.push(v.clone());
        docker_async(args).await.with_context(|| format!("cannot create volume {v}"))?;
        std::fs::create_dir_all(&n.dir)?;
        n.peer_host = Some(c.clone());
        n.peer_port = Some(3306);
        n.container = Some(c);
        n.volume = Some(v);
    }
    Ok(())
}

fn labels(run_id: &str, s: &ClusterState) -> Vec<String> {
    vec![
        format!("{LABEL_RUN}={run_id}"),
        format!("{LABEL_RUN_DIR}={}", s.run_dir.display()),
        format!("{LABEL_OWNER}={}", s.owner_pid),
    ]
}

/// Start a node's server in a new container on its volume, and wait until
/// root can log in over the published loopback port.
pub async fn start(n: &mut NodeState, read_only: bool, s: &Secrets, c: Option<&ClusterContainers>) -> Result<()> {
    let cc = c.ok_or_else(|| anyhow!("container cluster without container settings"))?;
    let name = n.container.clone().ok_or_else(|| anyhow!("{} has no container name", n.name))?;
    let volume = n.volume.clone().ok_or_else(|| anyhow!("{} has no volume", n.name))?;
    crate::util::ensure_port_free(n.port)?;
    if container_exists(&name) {
        remove_now(&name);
    }
    let reference = n.dist.spec.clone();
    let labels_here = image_labels(&reference).unwrap_or_default();
    let ours = labels_here.iter().any(|(k, _)| k == "org.coldswap.flavor");
    let prof = profile(n.dist.flavor, n.dist.version, ours, &s.admin_password);
    let (img, tag) = split_ref(&reference);
    let mut cmd = prof.cmd_prefix.clone();
    cmd.extend(server_flags(n, read_only));
    let run_dir = n.dir.parent().map(|p| p.display().to_string()).unwrap_or_default();
    let mut req = GenericImage::new(img, tag)
        .with_wait_for(WaitFor::message_on_stderr(prof.ready_line))
        .with_container_name(&name)
        .with_network(&cc.network)
        .with_mount(Mount::volume_mount(&volume, DATADIR))
        .with_mapped_port(n.port, 3306.tcp())
        .with_label(LABEL_RUN, &cc.run_id)
        .with_label(LABEL_RUN_DIR, &run_dir)
        .with_label(LABEL_OWNER, std::process::id().to_string())
        .with_startup_timeout(Duration::from_secs(cc.options.startup_timeout_s))
        .with_cmd(cmd)
        // Published on loopback only: load and tools reach it there, nothing else.
        .with_host_config_modifier(|hc| {
            if let Some(b) = hc.port_bindings.as_mut() {
                for v in b.values_mut().flatten() {
                    for pb in v.iter_mut() {
                        pb.host_ip = Some("127.0.0.1".into());
                    }
                }
            }
        });
    for (k, v) in &prof.env {
        req = req.with_env_var(k, v);
    }
    for (k, v) in &n.extras.env {
        req = req.with_env_var(k, v);
    }
    for m in bind_mounts(&n.extras.env) {
        req = req.with_mount(Mount::bind_mount(m.clone(), m));
    }
    let started = match req.start().await {
        Ok(h) => h,
        Err(e) => {
            let tail = logs_tail(&name);
            remove_now(&name);
            bail!("{} ({reference}) did not start: {}{tail}", n.name, short(&e.to_string()));
        }
    };
    // The record owns the container from here, by name: the handle must not
    // remove it when dropped (teardown is explicit, or a later run's sweep).
    std::mem::forget(started);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let opts = sql::tcp_options(&n.host, n.port, "root", &s.admin_password);
        match sql::connect(&opts, Duration::from_secs(5)).await {
            Ok(c) => {
                sql::close(c).await;
                break;
            }
            Err(e) if Instant::now() > deadline => {
                let tail = logs_tail(&name);
                bail!("{} is up in container {name} but root cannot log in on {}: {e}{tail}", n.name, n.addr());
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    Ok(())
}

/// Host paths the server must see at the same path inside the container
/// (the first-touch library and its state dir, when cold storage is on).
fn bind_mounts(env: &[(String, String)]) -> Vec<String> {
    let mut out = Vec::new();
    for (k, v) in env {
        if k == "LD_PRELOAD" || k == "COLDSWAP_FT_STATE" {
            let p = PathBuf::from(v);
            let dir = if k == "LD_PRELOAD" { p.parent().map(|d| d.to_path_buf()) } else { Some(p) };
            if let Some(d) = dir {
                let s = d.display().to_string();
                if !out.contains(&s) {
                    out.push(s);
                }
            }
        }
    }
    out
}

fn short(s: &str) -> String {
    s.lines().next().unwrap_or("").chars().take(300).collect()
}

/// The last lines a container printed, for error messages (passwords never
/// appear in server logs).
fn logs_tail(name: &str) -> String {
    match logs(name).lines().filter(|l| l.contains("ERROR")).last() {
        Some(l) => format!(" (last error: {})", l.trim()),
        None => String::new(),
    }
}

/// Everything a container logged (stdout and stderr).
pub fn logs(name: &str) -> String {
    match Command::new("docker").args(["logs", name]).output() {
        Ok(o) => String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr),
        Err(_) => String::new(),
    }
}

/// Save the container's log beside the node (its error.log), then remove it.
fn save_log_and_remove(n: &NodeState, name: &str) {
    if let Ok(o) = Command::new("docker").args(["logs", name]).output() {
        let mut text = o.stdout;
        text.extend_from_slice(&o.stderr);
        let _ = std::fs::create_dir_all(&n.dir);
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(n.error_log()) {
            let _ = f.write_all(&text);
        }
    }
    remove_now(name);
}

/// Clean shutdown (docker stop: SIGTERM, SIGKILL after 120 s); the
/// container goes, its volume stays.
pub async fn stop(n: &mut NodeState) -> Result<()> {
    let Some(name) = n.container.clone() else { return Ok(()) };
    if container_exists(&name) {
        docker_async(vec!["stop".into(), "-t".into(), "120".into(), name.clone()]).await?;
        let node = n.clone();
        tokio::task::spawn_blocking(move || save_log_and_remove(&node, &name)).await?;
    }
    Ok(())
}

/// SIGKILL, as a crash.
pub async fn kill(n: &mut NodeState) -> Result<()> {
    let Some(name) = n.container.clone() else { return Ok(()) };
    if container_running(&name) {
        docker_async(vec!["kill".into(), name.clone()]).await?;
    }
    let node = n.clone();
    tokio::task::spawn_blocking(move || save_log_and_remove(&node, &name)).await?;
    Ok(())
}

/// Remove the node's container (its volume stays until the cluster goes).
pub async fn remove(n: &mut NodeState) -> Result<()> {
    let Some(name) = n.container.clone() else { return Ok(()) };
    if container_exists(&name) {
        let node = n.clone();
        tokio::task::spawn_blocking(move || save_log_and_remove(&node, &name)).await?;
    }
    Ok(())
}

/// In-place upgrade: the old container is gone (stop removes it); the new
/// image starts on the same named volume under the same name.
pub async fn prepare_upgrade(n: &mut NodeState) -> Result<()> {
    if let Some(name) = n.container.clone() {
        if container_exists(&name) {
            bail!("{}: container {name} still exists; stop it before upgrading", n.name);
        }
    }
    Ok(())
}

/// Run the image's upgrade tool inside the container, as root over the
/// container's socket. The password goes through stdin, never argv.
pub async fn run_upgrade_tool(n: &NodeState, s: &Secrets) -> Result<bool> {
    if !n.dist.upgrade_tool_needed() {
        return Ok(false);
    }
    let Some(tool) = n.dist.upgrade_bin.as_ref().and_then(|p| p.file_name()).map(|f| f.to_string_lossy().to_string()) else {
        return Ok(false);
    };
    let name = n.container.clone().ok_or_else(|| anyhow!("{} has no container", n.name))?;
    let script = format!("MYSQL_PWD=$(cat) exec {tool} --force --user=root --host=127.0.0.1 --port=3306 --protocol=tcp");
    let pw = s.admin_password.clone();
    let log = n.dir.join("upgrade.log");
    let out = tokio::task::spawn_blocking(move || -> Result<std::process::Output> {
        use std::io::Write;
        let mut child = Command::new("docker")
            .args(["exec", "-i", &name, "sh", "-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot run docker exec")?;
        child.stdin.take().unwrap().write_all(pw.as_bytes())?;
        Ok(child.wait_with_output()?)
    })
    .await??;
    let mut text = out.stdout.clone();
    text.extend_from_slice(&out.stderr);
    let _ = std::fs::write(&log, &text);
    if !out.status.success() {
        let t = String::from_utf8_lossy(&text);
        let line = t.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string();
        bail!("{tool} failed on {}: {line}", n.name);
    }
    Ok(true)
}

/// After the containers are gone: the volumes and the network, unless kept.
pub async fn remove_cluster_resources(s: &ClusterState, keep: bool) -> Result<()> {
    if keep {
        return Ok(());
    }
    let mut first = None;
    for n in &s.nodes {
        if let Some(v) = &n.volume {
            if let Err(e) = docker_async(vec!["volume".into(), "rm".into(), "-f".into(), v.clone()]).await {
                first.get_or_insert(e);
            }
        }
    }
    if let Some(cc) = &s.container {
        let exists = docker_async(vec!["network".into(), "inspect".into(), cc.network.clone()]).await.is_ok();
        if exists {
            if let Err(e) = docker_async(vec!["network".into(), "rm".into(), cc.network.clone()]).await {
                first.get_or_insert(e);
            }
        }
    }
    match first {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// backend = auto: containers when a Docker engine answers and both images
/// are here, processes otherwise; one line says which and why.
pub async fn choose_backend(from: &str, to: &str) -> crate::cluster::BackendKind {
    use crate::cluster::BackendKind;
    let (from, to) = (from.to_string(), to.to_string());
    let r = tokio::task::spawn_blocking(move || -> std::result::Result<String, String> {
        let v = engine().map_err(|w| format!("no Docker engine answers ({w})"))?;
        let mut imgs = Vec::new();
        for spec in [&from, &to] {
            let r = image_ref(spec).map_err(|e| e.to_string())?;
            if image_labels(&r).is_none() {
                return Err(format!("Docker engine {v} found, but image {r} is not here (run `make images`)"));
            }
            imgs.push(r);
        }
        Ok(format!("Docker engine {v} found with images {}", imgs.join(" and ")))
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()));
    match r {
        Ok(why) => {
            tracing::info!("backend auto: {why}; using containers");
            BackendKind::Container
        }
        Err(why) => {
            tracing::info!("backend auto: {why}; using local processes");
            BackendKind::Process
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialect::Dialect;

    #[test]
    fn version_specs_map_to_images() {
        assert_eq!(image_ref("mariadb-10.11.18").unwrap(), "coldswap/mariadb:10.11");
        assert_eq!(image_ref("mariadb-11.8").unwrap(), "coldswap/mariadb:11.8");
        assert_eq!(image_ref("mysql-5.7.19").unwrap(), "mysql:5.7.19");
        assert_eq!(image_ref("mysql:8.0").unwrap(), "mysql:8.0");
        assert!(image_ref("postgres-15").is_err());
    }

    #[test]
    fn references_split_into_name_and_tag() {
        assert_eq!(split_ref("mysql:5.7.19"), ("mysql".into(), "5.7.19".into()));
        assert_eq!(split_ref("mysql"), ("mysql".into(), "latest".into()));
        assert_eq!(split_ref("reg:5000/mysql"), ("reg:5000/mysql".into(), "latest".into()));
        assert_eq!(split_ref("reg:5000/mysql:8.0.36"), ("reg:5000/mysql".into(), "8.0.36".into()));
    }

    #[test]
    fn identity_from_labels_or_official_tags() {
        let ours = vec![
            ("org.coldswap.flavor".to_string(), "mariadb".to_string()),
            ("org.coldswap.version".to_string(), "11.8.3".to_string()),
        ];
        assert_eq!(image_identity("coldswap/mariadb:11.8", &ours).unwrap(), (Flavor::MariaDB, Version(11, 8, 3)));
        assert_eq!(image_identity("mysql:5.7.19", &[]).unwrap(), (Flavor::MySQL, Version(5, 7, 19)));
        assert_eq!(image_identity("mysql:8.0", &[]).unwrap().1, Version(8, 0, 0));
        let e = image_identity("mysql:latest", &[]).unwrap_err().to_string();
        assert!(e.contains("not a version"), "{e}");
        assert!(image_identity("redis:7", &[]).is_err());
    }

    #[test]
    fn mysql_57_image_settings() {
        let p = profile(Flavor::MySQL, Version(5, 7, 19), false, "pw");
        // The official entrypoint refuses to start without one of these.
        assert!(p.env.contains(&("MYSQL_ROOT_PASSWORD".into(), "pw".into())));
        assert!(p.env.contains(&("MYSQL_ROOT_HOST".into(), "%".into())));
        // Flags only: the entrypoint prepends mysqld to arguments starting with '-'.
        assert!(p.cmd_prefix.is_empty());
        assert_eq!(p.ready_line, "port: 3306  ");
        assert_eq!(p.upgrade_tool, Some("mysql_upgrade"));
        let d = Dialect::new(Flavor::MySQL, Version(5, 7, 19));
        let flags = d.replication_flags(2);
        assert!(flags.iter().any(|f| f.contains("gtid") && f.contains("ON")), "{flags:?}");
        assert!(flags.iter().any(|f| f.contains("enforce") && f.contains("gtid")), "{flags:?}");
        assert!(d.change_source(&crate::dialect::Source { host: "cs-1-node1", port: 3306, user: "r", password: "x" })
            .contains("MASTER_AUTO_POSITION=1"));
    }

    #[test]
    fn mysql_80_image_settings() {
        let p = profile(Flavor::MySQL, Version(8, 0, 36), false, "pw");
        assert!(p.env.contains(&("MYSQL_ROOT_PASSWORD".into(), "pw".into())));
        // 8.0.16+ upgrades its own data dictionary and system tables at start.
        assert_eq!(p.upgrade_tool, None);
        let d = Dialect::new(Flavor::MySQL, Version(8, 0, 36));
        assert!(d.has_super_read_only());
        let st = d.change_source(&crate::dialect::Source { host: "cs-1-node1", port: 3306, user: "r", password: "x" });
        assert!(st.contains("cs-1-node1") && st.contains("3306"), "{st}");
    }

    #[test]
    fn our_images_take_the_password_from_their_own_variable() {
        let p = profile(Flavor::MariaDB, Version(10, 11, 14), true, "pw");
        assert_eq!(p.env, vec![("COLDSWAP_ROOT_PASSWORD".to_string(), "pw".to_string())]);
        assert_eq!(p.upgrade_tool, Some("mariadb-upgrade"));
    }

    #[test]
    fn cold_storage_paths_are_mounted_at_the_same_place() {
        let env = vec![
            ("LD_PRELOAD".to_string(), "/c/lib/libfirsttouch.so".to_string()),
            ("COLDSWAP_FT_STATE".to_string(), "/run/x/state".to_string()),
            ("OTHER".to_string(), "/nope".to_string()),
        ];
        assert_eq!(bind_mounts(&env), vec!["/c/lib".to_string(), "/run/x/state".to_string()]);
    }
}
