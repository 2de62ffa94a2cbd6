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
//! (coldswap/mariadb:10.11 on bookworm, coldswap/mariadb:11.8 on trixie,
//! coldswap/mysql:9.7 on sid), or the official mysql / mariadb images where
//! a registry is reachable. The root password reaches the image's entrypoint
//! as a file mounted read-only (its `*_FILE` variable), never in the
//! container's environment, where `docker inspect` would show it.

use anyhow::{anyhow, bail, Context, Result};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sqlx::mysql::MySqlConnection;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use testcontainers::core::{IntoContainerPort, Mount, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{GenericImage, ImageExt};

use super::{wrong_backend, Backend, BackendKind, NodeFiles};
use crate::dialect::Dialect;
use crate::node::{Handle, Image, NodeState, Software};
use crate::secrets::Secrets;
use coldswap_sql as sql;
use coldswap_sql::{Flavor, Version};

/// Label every resource carries, valued with the run's id.
pub const LABEL_RUN: &str = "org.coldswap.run";
const LABEL_RUN_DIR: &str = "org.coldswap.run_dir";
const LABEL_OWNER: &str = "org.coldswap.owner_pid";
/// Where the server keeps its data inside every supported image.
pub const DATADIR: &str = "/var/lib/mysql";
/// The one line every supported image prints when the final server (not an
/// entrypoint's temporary init server, which listens on port 0) is ready.
pub const READY_LINE: &str = "port: 3306  ";
/// Where the root password file is mounted inside a container.
const SECRET_MOUNT: &str = "/run/coldswap-secret";
const SECRET_FILE: &str = "root-password";

/// Backend settings from the config (`[container]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
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

/// The container backend, and what it records of a cluster.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerBackend {
    /// Settings.
    pub options: ContainerOptions,
    /// `cs-<hex>`: prefix of every container, volume and network name (set by `create`).
    #[serde(default)]
    pub run_id: String,
    /// The cluster's private network (set by `create`).
    #[serde(default)]
    pub network: String,
}

impl ContainerBackend {
    /// A backend for a cluster not created yet.
    pub fn new(options: ContainerOptions) -> ContainerBackend {
        ContainerBackend { options, run_id: String::new(), network: String::new() }
    }

    /// A backend for a cluster already created.
    pub(crate) fn recorded(options: ContainerOptions, run_id: String, network: String) -> ContainerBackend {
        ContainerBackend { options, run_id, network }
    }
}

impl Image {
    /// An image named in an older record.
    pub(crate) fn recorded(reference: &str, flavor: Flavor, version: Version) -> Image {
        Image { reference: reference.to_string(), flavor, version, ours: reference.starts_with("coldswap/") }
    }

    /// How to run it.
    pub fn profile(&self) -> ImageProfile {
        profile(self.flavor, self.version, self.ours)
    }
}

fn image_of(node: &NodeState) -> Result<&Image> {
    match &node.software {
        Software::Image(i) => Ok(i),
        Software::Dist(_) => Err(wrong_backend(node, BackendKind::Container)),
    }
}

fn names_of(node: &NodeState) -> Result<(&str, &str)> {
    match &node.handle {
        Handle::Container { container, volume } if !container.is_empty() => Ok((container, volume)),
        _ => Err(anyhow!("{} has no container (the cluster was not created on containers)", node.name)),
    }
}

// ---------------------------------------------------------------------------
// Image settings (pure, unit-tested: the official images cannot be pulled here).

/// How to run one kind of image.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageProfile {
    /// Variable naming the root password file for the image's entrypoint.
    pub password_file_var: &'static str,
    /// Other environment the entrypoint needs.
    pub env: Vec<(String, String)>,
    /// The line on stderr that says the final server is ready.
    pub ready_line: &'static str,
    /// The upgrade tool inside the image, when this version needs one.
    pub upgrade_tool: Option<&'static str>,
}

/// The image a version spec or image reference stands for:
/// `mariadb-10.11.18` → `coldswap/mariadb:10.11`, `mysql-9.7.4` →
/// `coldswap/mysql:9.7`, `mysql-5.7.19` → `mysql:5.7.19`; anything with a
/// ':' or '/' is an image already.
pub fn image_ref(spec: &str) -> Result<String> {
    if spec.contains(':') || spec.contains('/') {
        return Ok(spec.to_string());
    }
    if let Some(v) = spec.strip_prefix("mariadb-") {
        let parsed =
            Version::parse(v).ok_or_else(|| anyhow!("'{spec}' is not a version (expected e.g. mariadb-10.11)"))?;
        return Ok(format!("coldswap/mariadb:{}.{}", parsed.0, parsed.1));
    }
    if let Some(v) = spec.strip_prefix("mysql-") {
        let parsed =
            Version::parse(v).ok_or_else(|| anyhow!("'{spec}' is not a version (expected e.g. mysql-9.7.4)"))?;
        if parsed >= Version(9, 0, 0) {
            // Oracle's 9.x comes from Debian sid here: our image.
            return Ok(format!("coldswap/mysql:{}.{}", parsed.0, parsed.1));
        }
        return Ok(format!("mysql:{v}"));
    }
    bail!("'{spec}' is neither an image (name:tag) nor a version such as mariadb-10.11, mysql-9.7.4 or mysql-5.7.19")
}

/// Flavor and version from an image's labels (our images) or its reference
/// (official `mysql:` / `mariadb:` images, whose tags are versions).
pub fn image_identity(reference: &str, labels: &[(String, String)]) -> Result<(Flavor, Version)> {
    let label = |k: &str| labels.iter().find(|(a, _)| a == k).map(|(_, v)| v.as_str());
    if let (Some(f), Some(v)) = (label("org.coldswap.flavor"), label("org.coldswap.version")) {
        let flavor: Flavor = f.parse().map_err(|_| anyhow!("image {reference} has an unknown flavor label '{f}'"))?;
        let version = Version::parse(v).ok_or_else(|| anyhow!("image {reference} has a bad version label '{v}'"))?;
        return Ok((flavor, version));
    }
    let (name, tag) = split_ref(reference);
    let base = name.rsplit('/').next().unwrap_or(&name);
    let flavor = match base {
        "mysql" | "mysql-server" => Flavor::MySQL,
        "mariadb" => Flavor::MariaDB,
        _ => bail!(
            "cannot tell which server image {reference} holds (no org.coldswap.flavor label, not a mysql or mariadb image)"
        ),
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
pub fn profile(flavor: Flavor, version: Version, ours: bool) -> ImageProfile {
    let upgrade_tool = Dialect::new(flavor, version).upgrade_tool();
    let (password_file_var, env) = if ours {
        ("COLDSWAP_ROOT_PASSWORD_FILE", vec![])
    } else {
        match flavor {
            Flavor::MySQL => ("MYSQL_ROOT_PASSWORD_FILE", vec![("MYSQL_ROOT_HOST".to_string(), "%".to_string())]),
            Flavor::MariaDB => ("MARIADB_ROOT_PASSWORD_FILE", vec![("MARIADB_ROOT_HOST".to_string(), "%".to_string())]),
        }
    };
    ImageProfile { password_file_var, env, ready_line: READY_LINE, upgrade_tool }
}

/// Server flags for a node in a container (the datadir, socket and port are
/// the image's; logs go to stderr, where the readiness line is read).
/// LOAD_FILE() and SELECT INTO OUTFILE are confined to the image's
/// /var/lib/mysql-files on every flavor (MariaDB has no default).
pub fn server_flags(node: &NodeState, read_only: bool) -> Vec<String> {
    let mut a = node.server_flags(read_only);
    a.extend(node.dialect().file_priv_flag(std::path::Path::new("/var/lib/mysql-files")));
    a
}

/// `172.19.0.0/16` as a user host both flavors read: `172.19.0.0/255.255.0.0`.
pub fn netmask_host(cidr: &str) -> Option<String> {
    let (ip, bits) = cidr.split_once('/')?;
    let ip: std::net::Ipv4Addr = ip.parse().ok()?;
    let bits: u32 = bits.parse().ok().filter(|b| *b <= 32)?;
    let mask = if bits == 0 { 0 } else { u32::MAX << (32 - bits) };
    let net = std::net::Ipv4Addr::from(u32::from(ip) & mask);
    Some(format!("{net}/{}", std::net::Ipv4Addr::from(mask)))
}

/// Container and volume names of a node of a run.
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
    let out = Command::new("docker").args(["version", "--format", "{{.Server.Version}}"]).stdin(Stdio::null()).output();
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

/// The image a spec names, with what runs inside (pulled when missing).
fn resolve_image(spec: &str) -> Result<Image> {
    let reference = image_ref(spec)?;
    let labels = ensure_image(&reference)?;
    let (flavor, version) = image_identity(&reference, &labels)?;
    let ours = labels.iter().any(|(k, _)| k == "org.coldswap.flavor");
    Ok(Image { reference, flavor, version, ours })
}

fn container_exists(name: &str) -> bool {
    docker(&["container", "inspect", "--format", "{{.Id}}", name]).is_ok()
}

fn container_running(name: &str) -> bool {
    docker(&["container", "inspect", "--format", "{{.State.Running}}", name]).map(|s| s == "true").unwrap_or(false)
}

fn remove_now(name: &str) {
    let _ = docker(&["rm", "-f", "-v", name]);
}

/// Remove containers, volumes and networks a killed run left behind: those
/// labelled by coldswap whose owner process is gone and whose run dir no
/// longer records them. Returns one line per run cleaned.
pub fn sweep_orphans(live_record: &dyn Fn(&Path, &str) -> bool) -> Vec<String> {
    if engine().is_err() {
        return Vec::new();
    }
    let mut cleaned = Vec::new();
    let fmt = format!(
        "{{{{.Name}}}}\t{{{{.Label \"{LABEL_RUN}\"}}}}\t{{{{.Label \"{LABEL_RUN_DIR}\"}}}}\t{{{{.Label \"{LABEL_OWNER}\"}}}}"
    );
    let filter = format!("label={LABEL_RUN}");
    let mut orphan_runs = std::collections::BTreeSet::new();
    for kind in ["container", "volume", "network"] {
        let listing = match kind {
            "container" => {
                docker(&["ps", "-a", "--filter", &filter, "--format", &fmt.replace("{{.Name}}", "{{.Names}}")])
            }
            other => docker(&[other, "ls", "--filter", &filter, "--format", &fmt]),
        };
        let Ok(listing) = listing else { continue };
        for line in listing.lines() {
            let f: Vec<&str> = line.split('\t').collect();
            if f.len() < 4 {
                continue;
            }
            let (name, run, run_dir, owner) = (f[0], f[1], f[2], f[3]);
            let owner_alive = owner.parse::<u32>().map(crate::pid::alive).unwrap_or(false);
            if owner_alive || live_record(Path::new(run_dir), run) {
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

/// For `backend = auto`: Ok (why) when an engine answers and both images are here.
pub(crate) async fn ready_for(from: &str, to: &str) -> std::result::Result<String, String> {
    let (from, to) = (from.to_string(), to.to_string());
    tokio::task::spawn_blocking(move || -> std::result::Result<String, String> {
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
    .unwrap_or_else(|e| Err(e.to_string()))
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

/// The last error a container printed, for error messages (passwords never
/// appear in server logs).
fn logs_tail(name: &str) -> String {
    match logs(name).lines().rfind(|l| l.contains("ERROR")) {
        Some(l) => format!(" (last error: {})", l.trim()),
        None => String::new(),
    }
}

/// Everything a container logged (stdout and stderr).
fn logs(name: &str) -> String {
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

fn labels(run_id: &str, run_dir: &Path, owner_pid: u32) -> Vec<String> {
    vec![
        format!("{LABEL_RUN}={run_id}"),
        format!("{LABEL_RUN_DIR}={}", run_dir.display()),
        format!("{LABEL_OWNER}={owner_pid}"),
    ]
}

#[async_trait]
impl Backend for ContainerBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Container
    }

    fn check_spec(&self, spec: &str) -> Result<()> {
        image_ref(spec).map(|_| ())
    }

    fn spec_flavor(&self, spec: &str) -> Option<Flavor> {
        let (name, _) = split_ref(&image_ref(spec).ok()?);
        match name.rsplit('/').next()? {
            "mysql" | "mysql-server" => Some(Flavor::MySQL),
            "mariadb" => Some(Flavor::MariaDB),
            _ => None,
        }
    }

    async fn preflight(&self, _run_dir: &Path, from: &str, to: Option<&str>) -> Result<()> {
        let (from, to) = (from.to_string(), to.map(|s| s.to_string()));
        tokio::task::spawn_blocking(move || -> Result<()> {
            if let Err(why) = engine() {
                bail!("the container backend needs a Docker engine and none answers ({why}); start one, or use --backend process");
            }
            for spec in std::iter::once(from).chain(to) {
                resolve_image(&spec)?;
            }
            Ok(())
        })
        .await?
    }

    async fn provision(&self, spec: &str) -> Result<Software> {
        let s = spec.to_string();
        Ok(Software::Image(tokio::task::spawn_blocking(move || resolve_image(&s)).await??))
    }

    fn new_handle(&self) -> Handle {
        Handle::Container { container: String::new(), volume: String::new() }
    }

    async fn create(&mut self, run_dir: &Path, owner_pid: u32, nodes: &mut [NodeState]) -> Result<()> {
        let seed = format!("{}:{}:{:?}", run_dir.display(), std::process::id(), std::time::SystemTime::now());
        let run_id = format!("cs-{:010x}", crate::registry::name_hash(&seed) & 0xff_ffff_ffff);
        let network = format!("{run_id}-net");
        let labels = labels(&run_id, run_dir, owner_pid);
        self.run_id = run_id.clone();
        self.network = network.clone();
        let mut args = vec!["network".to_string(), "create".into()];
        for l in &labels {
            args.push("--label".into());
            args.push(l.clone());
        }
        args.push(network.clone());
        docker_async(args).await.with_context(|| format!("cannot create network {network}"))?;
        for n in nodes.iter_mut() {
            let (c, v) = names(&run_id, &n.name);
            let mut args = vec!["volume".to_string(), "create".into()];
            for l in &labels {
                args.push("--label".into());
                args.push(l.clone());
            }
            args.push(v.clone());
            docker_async(args).await.with_context(|| format!("cannot create volume {v}"))?;
            std::fs::create_dir_all(&n.dir).with_context(|| format!("cannot create {}", n.dir.display()))?;
            n.handle = Handle::Container { container: c, volume: v };
        }
        Ok(())
    }

    async fn init(&self, _node: &NodeState, _secrets: &Secrets) -> Result<()> {
        // The image's entrypoint initialises an empty volume at first start.
        Ok(())
    }

    async fn start(&self, n: &mut NodeState, read_only: bool, s: &Secrets) -> Result<()> {
        let (name, volume) = names_of(n).map(|(a, b)| (a.to_string(), b.to_string()))?;
        let image = image_of(n)?.clone();
        crate::ports::ensure_free(n.port)?;
        if container_exists(&name) {
            remove_now(&name);
        }
        // The root password reaches the entrypoint as a file, never as an
        // environment variable (docker inspect shows those).
        let secret_dir = n.dir.join("secret");
        std::fs::create_dir_all(&secret_dir)?;
        crate::files::write_private(&secret_dir.join(SECRET_FILE), s.admin_password.as_bytes())?;
        let prof = image.profile();
        let (img, tag) = split_ref(&image.reference);
        let run_dir = n.dir.parent().map(|p| p.display().to_string()).unwrap_or_default();
        let mut req = GenericImage::new(img, tag)
            .with_wait_for(WaitFor::message_on_stderr(prof.ready_line))
            .with_container_name(&name)
            .with_network(&self.network)
            .with_mount(Mount::volume_mount(&volume, DATADIR))
            .with_mount(Mount::bind_mount(secret_dir.display().to_string(), SECRET_MOUNT))
            .with_mapped_port(n.port, 3306.tcp())
            .with_label(LABEL_RUN, &self.run_id)
            .with_label(LABEL_RUN_DIR, &run_dir)
            .with_label(LABEL_OWNER, std::process::id().to_string())
            .with_startup_timeout(Duration::from_secs(self.options.startup_timeout_s))
            .with_cmd(server_flags(n, read_only))
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
        req = req.with_env_var(prof.password_file_var, format!("{SECRET_MOUNT}/{SECRET_FILE}"));
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
                bail!("{} ({}) did not start: {}{tail}", n.name, image.reference, short(&e.to_string()));
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

    async fn stop(&self, n: &mut NodeState) -> Result<()> {
        let Ok((name, _)) = names_of(n) else { return Ok(()) };
        let name = name.to_string();
        if container_exists(&name) {
            docker_async(vec!["stop".into(), "-t".into(), "120".into(), name.clone()]).await?;
            let node = n.clone();
            tokio::task::spawn_blocking(move || save_log_and_remove(&node, &name)).await?;
        }
        Ok(())
    }

    async fn kill(&self, n: &mut NodeState) -> Result<()> {
        let Ok((name, _)) = names_of(n) else { return Ok(()) };
        let name = name.to_string();
        if container_running(&name) {
            docker_async(vec!["kill".into(), name.clone()]).await?;
        }
        if container_exists(&name) {
            let node = n.clone();
            tokio::task::spawn_blocking(move || save_log_and_remove(&node, &name)).await?;
        }
        Ok(())
    }

    fn running(&self, n: &NodeState) -> Option<String> {
        let (name, _) = names_of(n).ok()?;
        container_exists(name).then(|| format!("container {name}"))
    }

    fn peer_addr(&self, n: &NodeState) -> (String, u16) {
        match names_of(n) {
            Ok((name, _)) => (name.to_string(), 3306),
            Err(_) => (n.host.clone(), n.port),
        }
    }

    async fn root_conn(&self, n: &NodeState, s: &Secrets) -> Result<MySqlConnection> {
        sql::connect(&sql::tcp_options(&n.host, n.port, "root", &s.admin_password), Duration::from_secs(10))
            .await
            .with_context(|| format!("cannot connect to {} as root", n.name))
    }

    async fn user_host(&self) -> Result<String> {
        // Clients reach the servers through the network's gateway (the
        // published loopback ports), replicas from the other container:
        // both inside the cluster's private network.
        let cidr = docker_async(vec![
            "network".into(),
            "inspect".into(),
            "--format".into(),
            "{{range .IPAM.Config}}{{.Subnet}} {{end}}".into(),
            self.network.clone(),
        ])
        .await?;
        let v4 = cidr.split_whitespace().find(|c| c.contains('.')).unwrap_or("");
        netmask_host(v4).ok_or_else(|| anyhow!("network {} has no IPv4 subnet ('{cidr}')", self.network))
    }

    async fn swap_binaries(&self, n: &mut NodeState, software: Software) -> Result<()> {
        if !matches!(software, Software::Image(_)) {
            return Err(wrong_backend(n, BackendKind::Container));
        }
        // The old container is gone (stop removes it); the new image starts
        // on the same named volume under the same name.
        let (name, _) = names_of(n)?;
        if container_exists(name) {
            bail!("{}: container {name} still exists; stop it before upgrading", n.name);
        }
        n.software = software;
        Ok(())
    }

    async fn run_upgrade_tool(&self, n: &NodeState, s: &Secrets) -> Result<bool> {
        let Some(tool) = image_of(n)?.profile().upgrade_tool else { return Ok(false) };
        let name = names_of(n)?.0.to_string();
        // As root over the container's loopback; the password goes through stdin, never argv.
        let script =
            format!("MYSQL_PWD=$(cat) exec {tool} --force --user=root --host=127.0.0.1 --port=3306 --protocol=tcp");
        let mut cmd = tokio::process::Command::new("docker");
        cmd.args(["exec", "-i", &name, "sh", "-c", &script]);
        let out = super::process::run_output(cmd, "docker exec", Some(s.admin_password.as_bytes())).await?;
        let mut text = out.stdout.clone();
        text.extend_from_slice(&out.stderr);
        let _ = std::fs::write(n.dir.join("upgrade.log"), &text);
        if !out.status.success() {
            let t = String::from_utf8_lossy(&text);
            let line = t.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string();
            bail!("{tool} failed on {}: {line}", n.name);
        }
        Ok(true)
    }

    async fn destroy(&self, nodes: &mut [NodeState], keep_data: bool) -> Result<()> {
        let mut first = None;
        for n in nodes.iter() {
            if let Ok((name, _)) = names_of(n) {
                if container_exists(name) {
                    let (node, name) = (n.clone(), name.to_string());
                    if let Err(e) = tokio::task::spawn_blocking(move || save_log_and_remove(&node, &name)).await {
                        first.get_or_insert(anyhow!(e));
                    }
                }
            }
        }
        if keep_data {
            return first.map_or(Ok(()), Err);
        }
        for n in nodes.iter() {
            if let Handle::Container { volume, .. } = &n.handle {
                if !volume.is_empty() {
                    if let Err(e) = docker_async(vec!["volume".into(), "rm".into(), "-f".into(), volume.clone()]).await
                    {
                        first.get_or_insert(e);
                    }
                }
            }
        }
        if !self.network.is_empty() {
            let exists = docker_async(vec!["network".into(), "inspect".into(), self.network.clone()]).await.is_ok();
            if exists {
                if let Err(e) = docker_async(vec!["network".into(), "rm".into(), self.network.clone()]).await {
                    first.get_or_insert(e);
                }
            }
        }
        first.map_or(Ok(()), Err)
    }

    fn destroy_sync(&self, nodes: &[NodeState]) {
        for n in nodes {
            if let Ok((c, _)) = names_of(n) {
                remove_now(c);
            }
        }
        for n in nodes {
            if let Handle::Container { volume, .. } = &n.handle {
                if !volume.is_empty() {
                    let _ = docker(&["volume", "rm", "-f", volume]);
                }
            }
        }
        if !self.network.is_empty() {
            let _ = docker(&["network", "rm", &self.network]);
        }
    }

    fn owns_run(&self, run_id: &str) -> bool {
        !self.run_id.is_empty() && self.run_id == run_id
    }

    fn files(&self) -> Option<&dyn NodeFiles> {
        Some(self)
    }
}

#[async_trait]
impl NodeFiles for ContainerBackend {
    fn datadir(&self, _node: &NodeState) -> PathBuf {
        PathBuf::from(DATADIR)
    }

    async fn read(&self, node: &NodeState, rel: &str) -> Result<Vec<u8>> {
        let out = self.exec(node, "cat", &[&format!("{DATADIR}/{rel}")], &[], None).await?;
        if !out.status.success() {
            bail!("cannot read {rel} in {}'s container: {}", node.name, String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(out.stdout)
    }

    async fn write(&self, node: &NodeState, rel: &str, bytes: &[u8]) -> Result<()> {
        let target = format!("{DATADIR}/{rel}");
        let out = self.exec(node, "sh", &["-c", &format!("cat > '{target}'")], &[], Some(bytes)).await?;
        if !out.status.success() {
            bail!("cannot write {rel} in {}'s container: {}", node.name, String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(())
    }

    async fn exec(
        &self,
        node: &NodeState,
        program: &str,
        args: &[&str],
        env: &[(String, String)],
        stdin: Option<&[u8]>,
    ) -> Result<std::process::Output> {
        let (name, _) = names_of(node)?;
        let mut c = tokio::process::Command::new("docker");
        c.arg("exec");
        if stdin.is_some() {
            c.arg("-i");
        }
        for (k, v) in env {
            c.arg("-e").arg(format!("{k}={v}"));
        }
        c.arg(name).arg(program).args(args);
        super::process::run_output(c, program, stdin).await
    }

    fn log_mark(&self, _node: &NodeState) -> u64 {
        // Every start is a new container: its log starts empty.
        0
    }

    fn log_since(&self, node: &NodeState, _mark: u64) -> String {
        names_of(node).map(|(c, _)| logs(c)).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_specs_map_to_images() {
        assert_eq!(image_ref("mariadb-10.11.18").unwrap(), "coldswap/mariadb:10.11");
        assert_eq!(image_ref("mariadb-11.8").unwrap(), "coldswap/mariadb:11.8");
        assert_eq!(image_ref("mysql-9.7.4").unwrap(), "coldswap/mysql:9.7");
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
    fn official_mysql_images_get_the_password_as_a_file() {
        let p = profile(Flavor::MySQL, Version(5, 7, 19), false);
        // The official entrypoint refuses to start without a root password;
        // its _FILE variant reads it from the mounted file.
        assert_eq!(p.password_file_var, "MYSQL_ROOT_PASSWORD_FILE");
        assert!(p.env.contains(&("MYSQL_ROOT_HOST".into(), "%".into())));
        assert!(p.env.iter().all(|(k, _)| !k.contains("PASSWORD")), "{:?}", p.env);
        assert_eq!(p.ready_line, "port: 3306  ");
        assert_eq!(p.upgrade_tool, Some("mysql_upgrade"));
        // 8.0.16+ upgrades its own data dictionary and system tables at start.
        assert_eq!(profile(Flavor::MySQL, Version(8, 0, 36), false).upgrade_tool, None);
        assert_eq!(profile(Flavor::MariaDB, Version(11, 8, 3), false).password_file_var, "MARIADB_ROOT_PASSWORD_FILE");
    }

    #[test]
    fn our_images_take_the_password_file_from_their_own_variable() {
        let p = profile(Flavor::MariaDB, Version(10, 11, 14), true);
        assert_eq!(p.password_file_var, "COLDSWAP_ROOT_PASSWORD_FILE");
        assert!(p.env.is_empty());
        assert_eq!(p.upgrade_tool, Some("mariadb-upgrade"));
        assert_eq!(profile(Flavor::MySQL, Version(9, 7, 4), true).upgrade_tool, None);
    }

    #[test]
    fn subnets_become_netmask_hosts() {
        assert_eq!(netmask_host("172.19.0.0/16").as_deref(), Some("172.19.0.0/255.255.0.0"));
        assert_eq!(netmask_host("10.1.2.3/24").as_deref(), Some("10.1.2.0/255.255.255.0"));
        assert_eq!(netmask_host("fd00::/64"), None);
        assert_eq!(netmask_host("nonsense"), None);
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
