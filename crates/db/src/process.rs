//! The local-process backend: each server is a plain process started from a
//! distribution directory, with its own datadir under the run dir.

use anyhow::{anyhow, bail, Context, Result};
use sqlx::mysql::MySqlConnection;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::dist::{Dist, Flavor, InstallMethod};
use crate::node::NodeState;
use crate::sql;
use crate::util::{self, pid_alive, send_signal};

/// Create the node's directories and initialise its datadir.
pub fn init(node: &NodeState) -> Result<()> {
    std::fs::create_dir_all(node.datadir().parent().unwrap())
        .with_context(|| format!("cannot create {}", node.dir.display()))?;
    std::fs::create_dir_all(node.tmpdir())?;
    let log = node.dir.join("install.log");
    let out = std::fs::File::create(&log)?;
    let mut cmd = match &node.dist.install {
        InstallMethod::InstallDb(bin) => {
            let mut c = Command::new(bin);
            c.arg("--no-defaults")
                .arg(format!("--basedir={}", node.dist.basedir.display()))
                .arg(format!("--datadir={}", node.datadir().display()))
                .arg("--auth-root-authentication-method=normal")
                .arg("--skip-test-db")
                .arg("--skip-name-resolve")
                // Concurrent bootstraps sharing /tmp collide on temp table names.
                .arg(format!("--tmpdir={}", node.tmpdir().display()));
            if crate::dist::is_root() {
                c.arg("--user=root");
            }
            c
        }
        InstallMethod::Initialize => {
            let mut c = Command::new(&node.dist.server_bin);
            c.arg("--no-defaults")
                .arg("--initialize-insecure")
                .arg(format!("--tmpdir={}", node.tmpdir().display()))
                .arg(format!("--basedir={}", node.dist.basedir.display()))
                .arg(format!("--datadir={}", node.datadir().display()));
            if crate::dist::is_root() {
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

/// The full server command line for a node.
pub fn server_args(node: &NodeState, read_only: bool) -> Vec<String> {
    let dist: &Dist = &node.dist;
    let mut a = vec![
        "--no-defaults".to_string(),
        format!("--basedir={}", dist.basedir.display()),
        format!("--datadir={}", node.datadir().display()),
        format!("--tmpdir={}", node.tmpdir().display()),
        format!("--socket={}", node.socket().display()),
        format!("--pid-file={}", node.pidfile().display()),
        format!("--log-error={}", node.error_log().display()),
        "--bind-address=127.0.0.1".to_string(),
        format!("--port={}", node.port),
        "--skip-name-resolve".to_string(),
        format!("--innodb-buffer-pool-size={}M", node.buffer_pool_mb),
        "--performance-schema=ON".to_string(),
        "--max-connections=1000".to_string(),
        "--innodb-log-file-size=256M".to_string(),
    ];
    if crate::dist::is_root() {
        a.insert(1, "--user=root".into());
    }
    if let Some(p) = &dist.lc_messages_dir {
        a.push(format!("--lc-messages-dir={}", p.display()));
    }
    if let Some(p) = &dist.plugin_dir {
        a.push(format!("--plugin-dir={}", p.display()));
    }
    a.extend(node.role_flags(read_only));
    a
}

/// Start the server and wait until it answers on its socket.
pub async fn start(node: &mut NodeState, read_only: bool) -> Result<()> {
    if let Some(pid) = node.pid {
        if pid_alive(pid) && owns_pid(node, pid) {
            bail!("{} is already running (pid {pid})", node.name);
        }
    }
    util::ensure_port_free(node.port)?;
    let _ = std::fs::remove_file(node.socket());
    let _ = std::fs::remove_file(node.pidfile());
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(node.dir.join("server.out"))?;
    // Remember where this start's log begins, to report only its errors.
    let log_offset = std::fs::metadata(node.error_log()).map(|m| m.len()).unwrap_or(0);
    let mut cmd = Command::new(&node.dist.server_bin);
    cmd.args(server_args(node, read_only))
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        // Own process group: a terminal's Ctrl-C reaches coldswap, which
        // stops the servers in order, and not the servers directly.
        .process_group(0);
    for (k, v) in &node.extras.env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {}", node.dist.server_bin.display()))?;
    let pid = child.id();
    node.pid = Some(pid);
    std::fs::write(node.dir.join("coldswap.pid"), pid.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            node.pid = None;
            let why = error_log_since(&node.error_log(), log_offset)
                .unwrap_or_else(|| format!("exit status {status}"));
            bail!("{} exited during startup: {why}", node.name);
        }
        if node.socket().exists() {
            let opts = sql::socket_options(&node.socket(), "root");
            if let Ok(c) = sql::connect(&opts, Duration::from_secs(2)).await {
                sql::close(c).await;
                break;
            }
        }
        if Instant::now() > deadline {
            let _ = send_signal(pid, libc::SIGKILL);
            node.pid = None;
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

/// Root over the unix socket (bootstrap and tools).
pub async fn root_conn(node: &NodeState) -> Result<MySqlConnection> {
    sql::connect(&sql::socket_options(&node.socket(), "root"), Duration::from_secs(5))
        .await
        .with_context(|| format!("cannot connect to {} as root over its socket", node.name))
}

/// Whether a pid is this node's server (guards against pid reuse).
pub fn owns_pid(node: &NodeState, pid: u32) -> bool {
    match util::pid_cmdline(pid) {
        Some(c) => c.contains(&node.datadir().to_string_lossy().to_string()),
        None => false,
    }
}

/// The pid of the node's server if it runs, from state or pid files.
pub fn running_pid(node: &NodeState) -> Option<u32> {
    let mut cands = Vec::new();
    if let Some(p) = node.pid {
        cands.push(p);
    }
    for f in [node.pidfile(), node.dir.join("coldswap.pid")] {
        if let Ok(s) = std::fs::read_to_string(&f) {
            if let Ok(p) = s.trim().parse::<u32>() {
                cands.push(p);
            }
        }
    }
    cands.into_iter().find(|p| pid_alive(*p) && owns_pid(node, *p))
}

/// Clean shutdown (SIGTERM), escalating to SIGKILL after `grace`.
pub async fn stop(node: &mut NodeState, grace: Duration) -> Result<()> {
    if let Some(pid) = running_pid(node) {
        send_signal(pid, libc::SIGTERM);
        let deadline = Instant::now() + grace;
        while pid_alive(pid) {
            if Instant::now() > deadline {
                tracing::warn!("{} did not stop within {:?}; killing it", node.name, grace);
                send_signal(pid, libc::SIGKILL);
                wait_gone(pid, Duration::from_secs(10)).await?;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    node.pid = None;
    Ok(())
}

/// SIGKILL, as a crash.
pub async fn kill(node: &mut NodeState) -> Result<()> {
    if let Some(pid) = running_pid(node) {
        send_signal(pid, libc::SIGKILL);
        wait_gone(pid, Duration::from_secs(10)).await?;
    }
    node.pid = None;
    Ok(())
}

/// Synchronous SIGKILL for Drop guards and stale-run cleanup.
pub fn kill_now(node: &NodeState) {
    if let Some(pid) = running_pid(node) {
        send_signal(pid, libc::SIGKILL);
        let deadline = Instant::now() + Duration::from_secs(10);
        while pid_alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

async fn wait_gone(pid: u32, max: Duration) -> Result<()> {
    let deadline = Instant::now() + max;
    while pid_alive(pid) {
        if Instant::now() > deadline {
            bail!("process {pid} is still alive after SIGKILL");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// Run the distribution's upgrade tool against a running node.
pub async fn run_upgrade_tool(node: &NodeState) -> Result<bool> {
    let d = node.dialect();
    let Some(args) = d.upgrade_args(&node.socket().to_string_lossy(), "root") else {
        return Ok(false);
    };
    if !node.dist.upgrade_tool_needed() {
        return Ok(false);
    }
    let bin = node
        .dist
        .upgrade_bin
        .clone()
        .ok_or_else(|| anyhow!("{} has no upgrade tool (mariadb-upgrade / mysql_upgrade)", node.dist.label()))?;
    let log = node.dir.join("upgrade.log");
    let out = std::fs::File::create(&log)?;
    let mut cmd = tokio::process::Command::new(&bin);
    cmd.args(&args).stdout(out.try_clone()?).stderr(out).stdin(Stdio::null());
    if node.dist.flavor == Flavor::MariaDB {
        // mariadb-upgrade runs `mariadb` and `mariadb-check` from its own directory.
        if let Some(dir) = bin.parent() {
            let path = std::env::var("PATH").unwrap_or_default();
            cmd.env("PATH", format!("{}:{path}", dir.display()));
        }
    }
    let st = cmd.status().await.with_context(|| format!("cannot run {}", bin.display()))?;
    if !st.success() {
        bail!(
            "{} failed on {}: {}",
            bin.file_name().unwrap().to_string_lossy(),
            node.name,
            last_error_line(&log).unwrap_or_else(|| format!("see {}", log.display()))
        );
    }
    Ok(true)
}

fn last_error_line(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    if let Some(l) = text.lines().find(|l| util::says_disk_full(l)) {
        return Some(format!("no space left on device under {}: {}", log.parent().map(|p| p.display().to_string()).unwrap_or_default(), l.trim()));
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
    if let Some(l) = text.lines().find(|l| util::says_disk_full(l)) {
        return Some(format!("no space left on device: {}", l.split("[ERROR]").nth(1).unwrap_or(l).trim()));
    }
    let errors: Vec<&str> = text.lines().filter(|l| l.contains("[ERROR]")).collect();
    // Prefer the first error: later ones are usually consequences ("Aborting").
    errors
        .iter()
        .find(|l| !l.contains("Aborting") && !l.contains("Unknown/unsupported storage engine"))
        .or(errors.first())
        .map(|l| {
            l.split("[ERROR]").nth(1).unwrap_or(l).trim().to_string()
        })
}
