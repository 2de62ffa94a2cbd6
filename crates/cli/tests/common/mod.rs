//! Helpers shared by the integration tests. Every test starts real servers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub const FROM: &str = "mariadb-10.11.18";
pub const TO: &str = "mariadb-10.11.19";

/// A fresh, short directory for one test (server sockets need short paths).
pub fn test_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("cst-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_coldswap")
}

/// Run the CLI; returns (exit code, stdout, stderr).
pub fn cli(args: &[&str], cwd: &Path) -> (i32, String, String) {
    cli_env(args, cwd, &[])
}

/// Run the CLI with extra environment variables. A GitHub step summary the
/// tests themselves run under is not passed on (a test sets its own).
pub fn cli_env(args: &[&str], cwd: &Path, env: &[(&str, &str)]) -> (i32, String, String) {
    let mut c = Command::new(bin());
    c.args(args).current_dir(cwd).env("COLDSWAP_LOG", "warn").env_remove("GITHUB_STEP_SUMMARY");
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().expect("run coldswap");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Server processes whose command line mentions this directory.
pub fn servers_under(dir: &Path) -> Vec<u32> {
    let needle = dir.to_string_lossy().to_string();
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else { continue };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if (cmd.contains("mariadbd") || cmd.contains("mysqld")) && cmd.contains(&needle) {
            // zombies are already dead
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            if let Some(i) = stat.rfind(')') {
                if stat[i + 1..].trim_start().starts_with('Z') {
                    continue;
                }
            }
            v.push(pid);
        }
    }
    v
}

/// Kills the servers a test started under `dir` when the test ends, a
/// failing assertion included. A test that passed stopped them itself
/// (and asserts so); one that panicked between `cluster up` and `cluster
/// down` would otherwise leave them running, since a cluster started by
/// `cluster up` is meant to outlive the command.
pub struct Reap(pub PathBuf);

impl Drop for Reap {
    fn drop(&mut self) {
        for pid in servers_under(&self.0) {
            // SAFETY: a signal to a process id we just read.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
        // And the containers, volumes and networks of a run under it
        // (containers first: the others are in use until they go).
        for r in resources_under(&self.0) {
            let (kind, name) = (r.split(' ').next().unwrap_or(""), r.rsplit('\t').next().unwrap_or(""));
            let args: &[&str] = match kind {
                "container" => &["rm", "-f"],
                "volume" => &["volume", "rm", "-f"],
                _ => &["network", "rm"],
            };
            let _ = Command::new("docker").args(args).arg(name).output();
        }
    }
}

/// `coldswap cluster up --foreground` in `run_dir`, returned once it says
/// the cluster is up; its stdout is drained in the background (a closed
/// pipe would make its later prints fail).
pub fn foreground(run_dir: &Path, cwd: &Path) -> std::process::Child {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(bin())
        .args(["cluster", "up", "--foreground", "--buffer-pool-mb", "32", "--run-dir"])
        .arg(run_dir)
        .current_dir(cwd)
        .env("COLDSWAP_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.starts_with("up"), "{first}");
    std::thread::spawn(move || for _ in lines {});
    child
}

/// The last non-empty stderr line (the CLI's one-line error).
pub fn last_line(s: &str) -> String {
    s.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").to_string()
}

/// The repository's root (mixes, configs, schemas).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Parse JSON a command printed, or fail showing it.
pub fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

// ---------------------------------------------------------------------------
// Clusters, on any backend.

use coldswap_db::{BackendKind, Cluster, PromoteOptions, Role, UpOptions};
use sqlx::{Connection, Executor, Row};
use std::time::{Duration, Instant};

/// A connection as the application user.
pub async fn app_conn(c: &Cluster, i: usize) -> sqlx::MySqlConnection {
    sqlx::MySqlConnection::connect_with(&c.app_options(i)).await.expect("app connection")
}

/// A connection as coldswap's admin user.
pub async fn admin_conn(c: &Cluster, i: usize) -> sqlx::MySqlConnection {
    c.admin(i).await.expect("admin connection")
}

/// Rows of `table` on node `i` (-1 when it cannot be read).
pub async fn count_on(c: &Cluster, i: usize, table: &str) -> i64 {
    let mut conn = app_conn(c, i).await;
    conn.fetch_one(format!("SELECT COUNT(*) AS n FROM {table}").as_str())
        .await
        .map(|r| r.get::<i64, _>("n"))
        .unwrap_or(-1)
}

/// Wait until `table` on node `i` holds `want` rows.
pub async fn wait_count(c: &Cluster, i: usize, table: &str, want: i64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n = count_on(c, i, table).await;
        if n == want {
            return;
        }
        assert!(Instant::now() < deadline, "{} has {n} rows in {table}, expected {want}", c.node(i).name);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `SELECT VERSION()` on node `i`.
pub async fn version_of(c: &Cluster, i: usize) -> String {
    let mut conn = app_conn(c, i).await;
    conn.fetch_one("SELECT VERSION() AS v").await.unwrap().get::<String, _>("v")
}

/// Whether a write error is the server refusing it as read-only.
pub fn is_read_only_error(e: &str) -> bool {
    e.contains("read-only") || e.contains("read_only") || e.contains("1290") || e.contains("1836")
}

/// One combination the lifecycle runs on: a backend and a version pair.
pub struct Case {
    /// Test name, for skips and messages.
    pub name: &'static str,
    /// Where servers run.
    pub backend: BackendKind,
    /// Version or image to start on.
    pub from: &'static str,
    /// Version or image the replica is upgraded to.
    pub to: &'static str,
    /// What `SELECT VERSION()` starts with, before and after the upgrade.
    pub from_prefix: &'static str,
    /// Likewise after.
    pub to_prefix: &'static str,
    /// Whether the upgrade runs a separate tool (MariaDB, MySQL < 8.0.16)
    /// or the server upgrades itself at start.
    pub upgrade_tool: bool,
}

/// MariaDB 10.11.18 -> 10.11.19 as local processes.
pub const PROCESS_MARIADB: Case = Case {
    name: "process_mariadb",
    backend: BackendKind::Process,
    from: FROM,
    to: TO,
    from_prefix: "10.11.18",
    to_prefix: "10.11.19",
    upgrade_tool: true,
};

/// MariaDB 10.11 -> 11.8 in containers (a real major upgrade).
pub const CONTAINER_MARIADB: Case = Case {
    name: "container_mariadb",
    backend: BackendKind::Container,
    from: "coldswap/mariadb:10.11",
    to: "coldswap/mariadb:11.8",
    from_prefix: "10.11.",
    to_prefix: "11.8.",
    upgrade_tool: true,
};

/// Oracle MySQL 9.7.4 (Debian sid) as local processes, through its own
/// loader. The only MySQL reachable here, so the upgrade is to the same
/// version: the server's own upgrade forced at start, no separate tool.
pub const PROCESS_MYSQL: Case = Case {
    name: "process_mysql",
    backend: BackendKind::Process,
    from: "mysql-9.7.4",
    to: "mysql-9.7.4",
    from_prefix: "9.7.4",
    to_prefix: "9.7.4",
    upgrade_tool: false,
};

/// Oracle MySQL 9.7 in containers (coldswap/mysql:9.7, built from sid).
pub const CONTAINER_MYSQL: Case = Case {
    name: "container_mysql",
    backend: BackendKind::Container,
    from: "coldswap/mysql:9.7",
    to: "coldswap/mysql:9.7",
    from_prefix: "9.7.",
    to_prefix: "9.7.",
    upgrade_tool: false,
};

/// Whether a case can run here: Ok, or the reason it cannot (a container
/// case without an engine or its images).
pub fn case_ready(case: &Case) -> Result<(), String> {
    if case.backend == BackendKind::Process {
        return Ok(());
    }
    docker_engine()?;
    for img in [case.from, case.to] {
        let ok = Command::new("docker")
            .args(["image", "inspect", img])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !ok {
            return Err(format!("image {img} is missing (make images builds it)"));
        }
    }
    Ok(())
}

/// Ok when a Docker engine answers.
pub fn docker_engine() -> Result<(), String> {
    let o = Command::new("docker").args(["version", "--format", "{{.Server.Version}}"]).output();
    match o {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(format!("no Docker engine answers: {}", String::from_utf8_lossy(&o.stderr).trim())),
        Err(e) => Err(format!("no docker CLI: {e}")),
    }
}

/// True when the test must be skipped (it says so on stderr); under
/// COLDSWAP_REQUIRE_DOCKER=1 (CI) a missing engine or image fails instead.
pub fn skip_or_fail(test: &str, ready: Result<(), String>) -> bool {
    match ready {
        Ok(()) => false,
        Err(why) => {
            if std::env::var("COLDSWAP_REQUIRE_DOCKER").as_deref() == Ok("1") {
                panic!("{test}: {why}, and COLDSWAP_REQUIRE_DOCKER=1");
            }
            eprintln!("SKIPPED {test}: {why}");
            true
        }
    }
}

/// Every coldswap-labelled container, volume or network whose run dir is under `dir`.
pub fn resources_under(dir: &Path) -> Vec<String> {
    if docker_engine().is_err() {
        return Vec::new();
    }
    let prefix = dir.display().to_string();
    let mut out = Vec::new();
    for (kind, args, name) in [
        ("container", vec!["ps", "-a"], "{{.Names}}"),
        ("volume", vec!["volume", "ls"], "{{.Name}}"),
        ("network", vec!["network", "ls"], "{{.Name}}"),
    ] {
        let f = format!("{{{{.Label \"org.coldswap.run_dir\"}}}}\t{name}");
        let mut a = args.clone();
        a.extend(["--filter", "label=org.coldswap.run", "--format", &f]);
        let o = Command::new("docker").args(&a).output().unwrap();
        for l in String::from_utf8_lossy(&o.stdout).lines() {
            if l.starts_with(&prefix) {
                out.push(format!("{kind} {l}"));
            }
        }
    }
    out
}

/// Nothing of a test's left: no server process, container, volume or network.
pub fn assert_nothing_left(dir: &Path) {
    assert!(servers_under(dir).is_empty(), "servers left: {:?}", servers_under(dir));
    let r = resources_under(dir);
    assert!(r.is_empty(), "left behind: {r:?}");
}

/// The lifecycle every backend and flavor must pass: up, replicate, the
/// replica refuses writes, upgrade in place (data survives, replication
/// flows), promote (the new primary writes, the old refuses), a second
/// promotion refused, down with nothing left.
pub async fn lifecycle(case: &Case) {
    let dir = test_dir(case.name);
    let run_dir = dir.join("run");
    let mut opts = UpOptions::new(&run_dir, case.from);
    opts.to = Some(case.to.into());
    opts.backend = case.backend;
    opts.buffer_pool_mb = 64;
    let (mut cluster, steps) = Cluster::up(opts).await.expect("cluster up");
    assert!(steps.0.iter().any(|s| s.name == "verify_replication"));
    assert_eq!(cluster.backend_kind(), case.backend);
    let p = cluster.primary_index().unwrap();
    let r = cluster.replica_index().unwrap();
    assert!(version_of(&cluster, p).await.starts_with(case.from_prefix), "{}", version_of(&cluster, p).await);
    assert!(version_of(&cluster, r).await.starts_with(case.from_prefix));

    // Writes on the primary reach the replica; the replica refuses the application's.
    let t = "drilltest.t";
    {
        let mut conn = app_conn(&cluster, p).await;
        conn.execute("CREATE DATABASE drilltest").await.unwrap();
        conn.execute("CREATE TABLE drilltest.t (id INT PRIMARY KEY, v VARCHAR(20))").await.unwrap();
        for i in 0..10 {
            sqlx::query("INSERT INTO drilltest.t VALUES (?, 'before')").bind(i).execute(&mut conn).await.unwrap();
        }
    }
    wait_count(&cluster, r, t, 10).await;
    {
        let mut conn = app_conn(&cluster, r).await;
        let e = conn.execute("INSERT INTO drilltest.t VALUES (100, 'x')").await.unwrap_err();
        assert!(is_read_only_error(&e.to_string()), "{e}");
    }

    // Upgrade the replica in place: the version changes, data survives, replication flows.
    let up = cluster.upgrade(None).await.expect("upgrade");
    let mut want = vec!["stop_replication", "stop_replica_server", "start_on_new_binaries", "verify_replication"];
    if case.upgrade_tool {
        want.push("upgrade_tool");
    }
    for name in want {
        assert!(up.0.iter().any(|s| s.name == name), "missing step {name}: {:?}", up.0);
    }
    assert_eq!(up.0.iter().any(|s| s.name == "upgrade_tool"), case.upgrade_tool, "{:?}", up.0);
    assert!(
        version_of(&cluster, r).await.starts_with(case.to_prefix),
        "replica runs {}",
        version_of(&cluster, r).await
    );
    assert!(version_of(&cluster, p).await.starts_with(case.from_prefix));
    assert_eq!(count_on(&cluster, r, t).await, 10);
    {
        let mut conn = app_conn(&cluster, p).await;
        for i in 10..20 {
            sqlx::query("INSERT INTO drilltest.t VALUES (?, 'after-upgrade')")
                .bind(i)
                .execute(&mut conn)
                .await
                .unwrap();
        }
    }
    wait_count(&cluster, r, t, 20).await;

    // Promote: the new primary takes writes, the old one refuses them.
    let (outcome, psteps) = cluster.promote(&PromoteOptions::default(), |_| {}).await.expect("promote");
    assert_eq!(outcome.new_primary, cluster.node(r).name);
    assert!(outcome.write_unavailable_seconds > 0.0);
    assert!(psteps.0.iter().any(|s| s.name == "fence_old_primary"));
    assert_eq!(cluster.node(r).role, Role::Primary);
    {
        let mut conn = app_conn(&cluster, r).await;
        conn.execute("INSERT INTO drilltest.t VALUES (1000, 'on-new-primary')").await.expect("write on new primary");
        let mut old = app_conn(&cluster, p).await;
        let e = old.execute("INSERT INTO drilltest.t VALUES (1001, 'on-old')").await.unwrap_err();
        assert!(is_read_only_error(&e.to_string()), "{e}");
    }
    assert_eq!(count_on(&cluster, r, t).await, 21);
    // A second promotion is refused: the old primary is not replicating.
    let e = cluster.promote(&PromoteOptions::default(), |_| {}).await.unwrap_err();
    assert!(!e.rolled_back(), "{e}");
    assert!(e.to_string().contains("no replica") || e.to_string().contains("refusing"), "{e}");

    cluster.down(false).await.expect("down");
    assert_nothing_left(&dir);
    assert!(!run_dir.exists());
    let _ = std::fs::remove_dir_all(&dir);
}
