//! The local-process backend (the embedded default): each server is a plain
//! process started from an unpacked distribution ([`crate::dist`]), with its
//! datadir, socket and logs in its node directory under the run dir, in its
//! own process group.

use anyhow::{bail, Context, Result};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sqlx::mysql::MySqlConnection;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use super::{wrong_backend, Backend, BackendKind, NodeFiles};
use crate::dist::{self, Dist, InstallMethod};
use crate::node::{Handle, NodeState, Software};
use crate::pid;
use crate::secrets::Secrets;
use coldswap_sql as sql;

/// Two datadirs with their redo logs, system tables and binlogs, before any
/// data: refused before anything is created when the disk has less.
const NEED_BYTES: u64 = 640 << 20;

/// The process backend. It records nothing beyond each node's pid.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProcessBackend {}

fn dist_of(node: &NodeState) -> Result<&Dist> {
    match &node.software {
        Software::Dist(d) => Ok(d),
        Software::Image(_) => Err(wrong_backend(node, BackendKind::Process)),
    }
}

fn recorded_pid(node: &NodeState) -> Option<u32> {
    node.handle.pid()
}

fn set_pid(node: &mut NodeState, pid: Option<u32>) {
    node.handle = Handle::Process { pid };
}

/// The node's datadir on this host.
pub fn datadir(node: &NodeState) -> PathBuf {
    node.dir.join("data")
}

fn tmpdir(node: &NodeState) -> PathBuf {
    node.dir.join("tmp")
}

fn pidfile(node: &NodeState) -> PathBuf {
    node.dir.join("mysqld.pid")
}

/// The unix socket: in the node dir when the path is short enough,
/// otherwise in [`private_tmp`] with a name derived from the node dir.
/// Either way its directory is the invoking user's alone (0700), so no
/// other local user reaches the socket.
pub fn socket(node: &NodeState) -> PathBuf {
    let p = node.dir.join("mysqld.sock");
    if p.as_os_str().len() < 100 {
        return p;
    }
    private_tmp().join(format!("{:016x}.sock", crate::registry::name_hash(&node.dir.to_string_lossy())))
}

/// `/tmp/coldswap-<uid>`: where sockets go whose node dir is too deep.
fn private_tmp() -> PathBuf {
    // SAFETY: geteuid cannot fail.
    let uid = unsafe { libc::geteuid() };
    PathBuf::from(format!("/tmp/coldswap-{uid}"))
}

/// Make `dir` (and its parents) exist, and make `dir` the invoking user's
/// alone: refused when it is a link or another user's.
pub fn private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let m = std::fs::symlink_metadata(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    // SAFETY: geteuid cannot fail.
    let uid = unsafe { libc::geteuid() };
    if !m.is_dir() || m.uid() != uid {
        bail!(
            "{} is not a directory of this user's (uid {uid}); refusing to put a server's socket or data there",
            dir.display()
        );
    }
    if m.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot make {} private", dir.display()))?;
    }
    Ok(())
}

/// The socket's directory, made private before a server creates it.
fn socket_dir_ready(node: &NodeState) -> Result<()> {
    let s = socket(node);
    private_dir(s.parent().unwrap_or(&node.dir))
}

/// Connection options for root, with the password set when its datadir
/// was initialised: over the node's socket on MariaDB, over loopback TCP on
/// MySQL (see [`crate::dialect::Dialect::root_password_init`]).
fn root_options(node: &NodeState, secrets: &Secrets) -> sqlx::mysql::MySqlConnectOptions {
    match node.flavor() {
        coldswap_sql::Flavor::MariaDB => sql::socket_options(&socket(node), "root").password(&secrets.admin_password),
        coldswap_sql::Flavor::MySQL => sql::tcp_options("127.0.0.1", node.port, "root", &secrets.admin_password),
    }
}

/// Create the node's directories and initialise its datadir.
///
/// root@localhost gets its password (the admin password in the run dir's
/// 0600 secrets) during the initialisation, before the server ever
/// listens; the SQL that sets it sits in a 0600 file in the private node
/// dir for the length of the initialisation only.
fn init_blocking(node: &NodeState, secrets: &Secrets) -> Result<()> {
    let d = dist_of(node)?;
    private_dir(&node.dir)?;
    std::fs::create_dir_all(tmpdir(node))?;
    let init_sql = node.dir.join("init-root.sql");
    let mut text = node.dialect().root_password_init(&secrets.admin_password).join(";\n");
    text.push_str(";\n");
    crate::files::write_private(&init_sql, text.as_bytes())?;
    let res = run_init(node, d, &init_sql);
    let _ = std::fs::remove_file(&init_sql);
    res
}

fn run_init(node: &NodeState, d: &dist::Dist, init_sql: &Path) -> Result<()> {
    let log = node.dir.join("install.log");
    let out = std::fs::File::create(&log)?;
    let mut cmd = match &d.install {
        InstallMethod::InstallDb(bin) => {
            let mut c = d.command(bin);
            c.arg("--no-defaults")
                .arg(format!("--basedir={}", d.basedir.display()))
                .arg(format!("--datadir={}", datadir(node).display()))
                .arg("--auth-root-authentication-method=normal")
                .arg("--skip-test-db")
                .arg("--skip-name-resolve")
                .arg(format!("--extra-file={}", init_sql.display()))
                // Concurrent bootstraps sharing /tmp collide on temp table names.
                .arg(format!("--tmpdir={}", tmpdir(node).display()));
            if dist::is_root() {
                c.arg("--user=root");
            }
            c
        }
        InstallMethod::Initialize => {
            let mut c = d.command(&d.server_bin);
            c.arg("--no-defaults")
                .arg("--initialize-insecure")
                .arg(format!("--init-file={}", init_sql.display()))
                .arg(format!("--tmpdir={}", tmpdir(node).display()))
                .arg(format!("--basedir={}", d.basedir.display()))
                .arg(format!("--datadir={}", datadir(node).display()))
                .args(d.path_flags())
                .args(node.dialect().file_priv_flag(&tmpdir(node)));
            if dist::is_root() {
                c.arg("--user=root");
            }
            c
        }
    };
    let st = cmd
        .stdout(out.try_clone()?)
        .stderr(out)
        .stdin(Stdio::null())
        .status()
        .context("cannot run the datadir initialisation")?;
    if !st.success() {
        bail!(
            "initialising the datadir of {} failed: {}",
            node.name,
            last_error_line(&log).unwrap_or_else(|| format!("see {}", log.display()))
        );
    }
    Ok(())
}

/// The full server command line for a node (after the binary).
pub fn server_args(node: &NodeState, read_only: bool) -> Result<Vec<String>> {
    let d = dist_of(node)?;
    let mut a = vec![
        "--no-defaults".to_string(),
        format!("--basedir={}", d.basedir.display()),
        format!("--datadir={}", datadir(node).display()),
        format!("--tmpdir={}", tmpdir(node).display()),
        format!("--socket={}", socket(node).display()),
        format!("--pid-file={}", pidfile(node).display()),
        format!("--log-error={}", node.error_log().display()),
        "--bind-address=127.0.0.1".to_string(),
        format!("--port={}", node.port),
    ];
    if dist::is_root() {
        a.insert(1, "--user=root".into());
    }
    a.extend(d.path_flags());
    a.extend(node.dialect().file_priv_flag(&tmpdir(node)));
    a.extend(node.server_flags(read_only));
    Ok(a)
}

/// Whether a pid is this node's server (guards against pid reuse).
fn owns_pid(node: &NodeState, p: u32) -> bool {
    match pid::cmdline(p) {
        Some(c) => c.contains(&datadir(node).to_string_lossy().to_string()),
        None => false,
    }
}

/// The pid of the node's server if it runs, from the record or pid files.
fn running_pid(node: &NodeState) -> Option<u32> {
    let mut cands = Vec::new();
    if let Some(p) = recorded_pid(node) {
        cands.push(p);
    }
    for f in [pidfile(node), node.dir.join("coldswap.pid")] {
        if let Ok(s) = std::fs::read_to_string(&f) {
            if let Ok(p) = s.trim().parse::<u32>() {
                cands.push(p);
            }
        }
    }
    cands.into_iter().find(|p| pid::alive(*p) && owns_pid(node, *p))
}

async fn wait_gone(p: u32, max: Duration) -> Result<()> {
    let deadline = Instant::now() + max;
    while pid::alive(p) {
        if Instant::now() > deadline {
            bail!("process {p} is still alive after SIGKILL");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// Clean shutdown (SIGTERM), escalating to SIGKILL after `grace`.
async fn stop_within(node: &mut NodeState, grace: Duration) -> Result<()> {
    if let Some(p) = running_pid(node) {
        pid::signal(p, libc::SIGTERM);
        let deadline = Instant::now() + grace;
        while pid::alive(p) {
            if Instant::now() > deadline {
                tracing::warn!("{} did not stop within {:?}; killing it", node.name, grace);
                pid::signal(p, libc::SIGKILL);
                wait_gone(p, Duration::from_secs(10)).await?;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    set_pid(node, None);
    Ok(())
}

/// Synchronous SIGKILL for Drop guards and stale-run cleanup.
fn kill_now(node: &NodeState) {
    if let Some(p) = running_pid(node) {
        pid::signal(p, libc::SIGKILL);
        let deadline = Instant::now() + Duration::from_secs(10);
        while pid::alive(p) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

#[async_trait]
impl Backend for ProcessBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Process
    }

    fn check_spec(&self, spec: &str) -> Result<()> {
        dist::check_spec(spec)
    }

    fn spec_flavor(&self, spec: &str) -> Option<coldswap_sql::Flavor> {
        dist::pin_flavor(spec)
    }

    async fn preflight(&self, run_dir: &Path, _from: &str, _to: Option<&str>) -> Result<()> {
        if let Some(free) = free_bytes(run_dir) {
            if free < NEED_BYTES {
                bail!(
                    "no space for a cluster under {}: {} MiB free, at least {} MiB needed (two datadirs with their redo logs, before any data); free some space or pick another --run-dir",
                    run_dir.display(),
                    free >> 20,
                    NEED_BYTES >> 20
                );
            }
        }
        Ok(())
    }

    async fn provision(&self, spec: &str) -> Result<Software> {
        let s = spec.to_string();
        let d = tokio::task::spawn_blocking(move || dist::resolve(&s)).await??;
        Ok(Software::Dist(Box::new(d)))
    }

    fn new_handle(&self) -> Handle {
        Handle::Process { pid: None }
    }

    async fn create(&mut self, _run_dir: &Path, _owner_pid: u32, nodes: &mut [NodeState]) -> Result<()> {
        for n in nodes.iter_mut() {
            std::fs::create_dir_all(&n.dir).with_context(|| format!("cannot create {}", n.dir.display()))?;
            set_pid(n, None);
        }
        Ok(())
    }

    async fn init(&self, node: &NodeState, secrets: &Secrets) -> Result<()> {
        let (n, s) = (node.clone(), secrets.clone());
        tokio::task::spawn_blocking(move || init_blocking(&n, &s)).await?
    }

    async fn start(&self, node: &mut NodeState, read_only: bool, secrets: &Secrets) -> Result<()> {
        if let Some(p) = recorded_pid(node) {
            if pid::alive(p) && owns_pid(node, p) {
                bail!("{} is already running (pid {p})", node.name);
            }
        }
        crate::ports::ensure_free(node.port)?;
        private_dir(&node.dir)?;
        socket_dir_ready(node)?;
        let _ = std::fs::remove_file(socket(node));
        let _ = std::fs::remove_file(pidfile(node));
        let out = std::fs::OpenOptions::new().create(true).append(true).open(node.dir.join("server.out"))?;
        // Remember where this start's log begins, to report only its errors.
        let log_offset = std::fs::metadata(node.error_log()).map(|m| m.len()).unwrap_or(0);
        let d = dist_of(node)?.clone();
        let mut cmd = d.command(&d.server_bin);
        cmd.args(server_args(node, read_only)?)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            // Own process group: a terminal's Ctrl-C reaches coldswap, which
            // stops the servers in order, and not the servers directly.
            .process_group(0);
        for (k, v) in &node.extras.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().with_context(|| format!("cannot start {}", d.server_bin.display()))?;
        let p = child.id();
        set_pid(node, Some(p));
        std::fs::write(node.dir.join("coldswap.pid"), p.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                set_pid(node, None);
                let why =
                    error_log_since(&node.error_log(), log_offset).unwrap_or_else(|| format!("exit status {status}"));
                bail!("{} exited during startup: {why}", node.name);
            }
            if socket(node).exists() {
                let opts = root_options(node, secrets);
                if let Ok(c) = sql::connect(&opts, Duration::from_secs(2)).await {
                    sql::close(c).await;
                    break;
                }
            }
            if Instant::now() > deadline {
                let _ = pid::signal(p, libc::SIGKILL);
                set_pid(node, None);
                bail!("{} did not answer within 120 s of starting; see {}", node.name, node.error_log().display());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Reap the child in the background if this process outlives it; a
        // later process finds it by pid.
        std::thread::spawn(move || {
            let _ = child.wait();
        });
        Ok(())
    }

    async fn stop(&self, node: &mut NodeState) -> Result<()> {
        stop_within(node, Duration::from_secs(120)).await
    }

    async fn kill(&self, node: &mut NodeState) -> Result<()> {
        if let Some(p) = running_pid(node) {
            pid::signal(p, libc::SIGKILL);
            wait_gone(p, Duration::from_secs(10)).await?;
        }
        set_pid(node, None);
        Ok(())
    }

    fn running(&self, node: &NodeState) -> Option<String> {
        running_pid(node).map(|p| format!("pid {p}"))
    }

    fn peer_addr(&self, node: &NodeState) -> (String, u16) {
        (node.host.clone(), node.port)
    }

    async fn root_conn(&self, node: &NodeState, secrets: &Secrets) -> Result<MySqlConnection> {
        sql::connect(&root_options(node, secrets), Duration::from_secs(5))
            .await
            .with_context(|| format!("cannot connect to {} as root", node.name))
    }

    async fn user_host(&self) -> Result<String> {
        // Servers listen on 127.0.0.1 only, with --skip-name-resolve.
        Ok("127.0.0.1".into())
    }

    fn bootstrap_sql(&self) -> Vec<String> {
        // root has its password from the initialisation on, and no
        // password-less account is left (Dialect::root_password_init).
        Vec::new()
    }

    async fn swap_binaries(&self, node: &mut NodeState, software: Software) -> Result<()> {
        if !matches!(software, Software::Dist(_)) {
            return Err(wrong_backend(node, BackendKind::Process));
        }
        if running_pid(node).is_some() {
            bail!("{} still runs; stop it before swapping its binaries", node.name);
        }
        node.software = software;
        Ok(())
    }

    async fn run_upgrade_tool(&self, node: &NodeState, secrets: &Secrets) -> Result<bool> {
        let d = dist_of(node)?;
        let Some(args) = node.dialect().upgrade_args(&socket(node).to_string_lossy(), "root") else {
            return Ok(false);
        };
        let Some(bin) = d.upgrade_bin.clone() else {
            bail!("{} has no upgrade tool (mariadb-upgrade / mysql_upgrade)", d.label());
        };
        let log = node.dir.join("upgrade.log");
        let out = std::fs::File::create(&log)?;
        let mut cmd = tokio::process::Command::from(d.command(&bin));
        // The password through the environment, never argv (ps shows argv).
        cmd.args(&args)
            .env("MYSQL_PWD", &secrets.admin_password)
            .stdout(out.try_clone()?)
            .stderr(out)
            .stdin(Stdio::null());
        // mariadb-upgrade runs `mariadb` and `mariadb-check` from its own directory.
        if let Some(dir) = bin.parent() {
            let path = std::env::var("PATH").unwrap_or_default();
            cmd.env("PATH", format!("{}:{path}", dir.display()));
        }
        let st = cmd.status().await.with_context(|| format!("cannot run {}", bin.display()))?;
        if !st.success() {
            bail!(
                "{} failed on {}: {}",
                bin.file_name().map(|f| f.to_string_lossy().to_string()).unwrap_or_default(),
                node.name,
                last_error_line(&log).unwrap_or_else(|| format!("see {}", log.display()))
            );
        }
        Ok(true)
    }

    async fn destroy(&self, nodes: &mut [NodeState], _keep_data: bool) -> Result<()> {
        let mut first = None;
        for n in nodes.iter_mut() {
            if let Err(e) = stop_within(n, Duration::from_secs(60)).await {
                first.get_or_insert(e);
            }
            let _ = std::fs::remove_file(socket(n));
        }
        first.map_or(Ok(()), Err)
    }

    fn destroy_sync(&self, nodes: &[NodeState]) {
        for n in nodes {
            kill_now(n);
            let _ = std::fs::remove_file(socket(n));
        }
    }

    fn files(&self) -> Option<&dyn NodeFiles> {
        Some(self)
    }
}

#[async_trait]
impl NodeFiles for ProcessBackend {
    fn datadir(&self, node: &NodeState) -> PathBuf {
        let d = datadir(node);
        d.canonicalize().unwrap_or(d)
    }

    async fn read(&self, node: &NodeState, rel: &str) -> Result<Vec<u8>> {
        let p = datadir(node).join(rel);
        std::fs::read(&p).with_context(|| format!("cannot read {}", p.display()))
    }

    async fn write(&self, node: &NodeState, rel: &str, bytes: &[u8]) -> Result<()> {
        let p = datadir(node).join(rel);
        std::fs::write(&p, bytes).with_context(|| format!("cannot write {}", p.display()))
    }

    async fn exec(
        &self,
        _node: &NodeState,
        program: &str,
        args: &[&str],
        env: &[(String, String)],
        stdin: Option<&[u8]>,
    ) -> Result<std::process::Output> {
        let mut c = tokio::process::Command::new(program);
        c.args(args);
        for (k, v) in env {
            c.env(k, v);
        }
        run_output(c, program, stdin).await
    }

    fn log_mark(&self, node: &NodeState) -> u64 {
        std::fs::metadata(node.error_log()).map(|m| m.len()).unwrap_or(0)
    }

    fn log_since(&self, node: &NodeState, mark: u64) -> String {
        std::fs::read(node.error_log())
            .map(|b| String::from_utf8_lossy(&b[(mark as usize).min(b.len())..]).to_string())
            .unwrap_or_default()
    }
}

/// Run a command with optional stdin, capturing its output.
pub(crate) async fn run_output(
    mut cmd: tokio::process::Command,
    program: &str,
    stdin: Option<&[u8]>,
) -> Result<std::process::Output> {
    use tokio::io::AsyncWriteExt;
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().with_context(|| format!("cannot run {program}"))?;
    if let (Some(data), Some(mut si)) = (stdin, child.stdin.take()) {
        si.write_all(data).await?;
        drop(si);
    }
    Ok(child.wait_with_output().await?)
}

fn last_error_line(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    if let Some(l) = text.lines().find(|l| says_disk_full(l)) {
        return Some(format!(
            "no space left on device under {}: {}",
            log.parent().map(|p| p.display().to_string()).unwrap_or_default(),
            l.trim()
        ));
    }
    text.lines()
        .rev()
        .find(|l| l.contains("ERROR") || l.contains("error") || l.contains("FATAL"))
        .or_else(|| text.lines().rev().find(|l| !l.trim().is_empty()))
        .map(|l| l.trim().to_string())
}

/// The most telling [ERROR] line written to an error log after `offset`.
pub fn error_log_since(log: &Path, offset: u64) -> Option<String> {
    let bytes = std::fs::read(log).ok()?;
    let start = (offset as usize).min(bytes.len());
    let text = String::from_utf8_lossy(&bytes[start..]).to_string();
    if let Some(l) = text.lines().find(|l| says_disk_full(l)) {
        return Some(format!("no space left on device: {}", l.split("[ERROR]").nth(1).unwrap_or(l).trim()));
    }
    let errors: Vec<&str> = text.lines().filter(|l| l.contains("[ERROR]")).collect();
    // Prefer the first error: later ones are usually consequences ("Aborting").
    errors
        .iter()
        .find(|l| !l.contains("Aborting") && !l.contains("Unknown/unsupported storage engine"))
        .or(errors.first())
        .map(|l| l.split("[ERROR]").nth(1).unwrap_or(l).trim().to_string())
}

/// Whether a log line says the disk is full (errno 28, ENOSPC), in the
/// words MariaDB, MySQL and their tools use.
pub fn says_disk_full(line: &str) -> bool {
    let l = line.to_lowercase();
    l.contains("no space left")
        || l.contains("errno: 28")
        || l.contains("errcode: 28")
        || l.contains("error 28")
        || l.contains("error number 28")
        || l.contains("os error 28")
        || l.contains("disk full")
}

/// Bytes available to us on the filesystem holding `path` (or its nearest
/// existing ancestor).
pub fn free_bytes(path: &Path) -> Option<u64> {
    let mut p = path.to_path_buf();
    while !p.exists() {
        p = p.parent()?.to_path_buf();
    }
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).ok()?;
    // SAFETY: statvfs into a zeroed local with a valid C string.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some(st.f_bavail as u64 * st.f_frsize as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_full_lines_are_recognised_as_the_servers_write_them() {
        // InnoDB's own words (MariaDB 10.11), unchanged.
        assert!(says_disk_full(
            "2026-11-26 9:45:56 0 [ERROR] InnoDB: Write to file ./ibdata1 failed at offset 0, 1048576 bytes should have been written, only 0 were written. Operating system error number 28."
        ));
        assert!(says_disk_full(
            "mariadb-install-db: Error writing file '/x' (Errcode: 28 \"No space left on device\")"
        ));
        assert!(says_disk_full("[ERROR] [MY-012592] [InnoDB] Operating system error number 28 in a file operation."));
        assert!(!says_disk_full("[ERROR] Aborting"));
        assert!(!says_disk_full("[Note] InnoDB: Buffer pool(s) load completed, error number 2"));
        assert!(free_bytes(Path::new("/tmp/definitely/not/there")).is_some());
    }
}
