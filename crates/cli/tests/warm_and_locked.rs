//! Issues 33 and 29 (its first part), on real servers, one cluster per
//! flavor and backend: MariaDB 10.11 and MySQL 9.7.4, processes and
//! containers.
//!
//! * Nobody else gets in: another uid (`nobody`) cannot reach a process
//!   node's socket; root has a password from the first start on (no
//!   password-less login over the socket or TCP); LOAD_FILE() of a file
//!   outside coldswap's directory is NULL for the app user and the admin.
//! * Each warm-up technique, on a replica restarted on a fresh cold restore
//!   with its buffer pool empty (as the drill does), completes and did what
//!   it says; the buffer-pool load's seconds are printed. Before issue 33's
//!   fix a MySQL load waited ten minutes for "Loading of buffer pool not
//!   started"; the step's seconds are printed, not asserted (no timed
//!   tests: the bound lives in the waits themselves).
//!
//! Phases: a 0.02-scale seed (about 20k rows, 1-2 s) is all the warm-ups
//! need to have pages to load; no load runs.

mod common;
use common::*;

use coldswap_db::Cluster;
use sqlx::{Connection, Row};
use std::path::Path;
use std::time::Duration;

/// Connect to `path` as uid/gid 65534 (nobody) in a forked child; true when
/// the connect succeeded. Only a child that has switched uid tries.
fn nobody_can_connect(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: the child calls only async-signal-safe functions before _exit.
    unsafe {
        let pid = libc::fork();
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            if libc::setgid(65534) != 0 || libc::setuid(65534) != 0 {
                libc::_exit(3);
            }
            let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
            let mut addr: libc::sockaddr_un = std::mem::zeroed();
            addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
            for (i, b) in c.as_bytes().iter().enumerate() {
                addr.sun_path[i] = *b as libc::c_char;
            }
            let r = libc::connect(
                fd,
                &addr as *const libc::sockaddr_un as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t,
            );
            libc::_exit(if r == 0 { 0 } else { 1 });
        }
        let mut status = 0;
        libc::waitpid(pid, &mut status, 0);
        let code = libc::WEXITSTATUS(status);
        assert_ne!(code, 3, "the child could not become nobody");
        code == 0
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

async fn try_login(opts: sqlx::mysql::MySqlConnectOptions) -> Result<String, String> {
    match tokio::time::timeout(Duration::from_secs(10), sqlx::mysql::MySqlConnection::connect_with(&opts)).await {
        Ok(Ok(mut c)) => {
            let who: String = sqlx::query("SELECT CAST(CURRENT_USER() AS CHAR) AS u")
                .fetch_one(&mut c)
                .await
                .map(|r| r.get("u"))
                .unwrap_or_default();
            let _ = c.close().await;
            Ok(who)
        }
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".into()),
    }
}

async fn status(c: &Cluster, i: usize, var: &str) -> String {
    let mut conn = c.admin(i).await.unwrap();
    let rows = coldswap_sql::fetch_all(&mut conn, &format!("SHOW GLOBAL STATUS LIKE '{var}'")).await.unwrap();
    coldswap_sql::close(conn).await;
    rows.first().and_then(|r| coldswap_sql::col_text_at(r, 1)).unwrap_or_default()
}

fn run(case: &Case) {
    if skip_or_fail(case.name, case_ready(case)) {
        return;
    }
    let dir = test_dir(&format!("wl-{}", case.name));
    let _reap = Reap(dir.clone());
    let backend = if case.backend == coldswap_db::BackendKind::Process { "process" } else { "container" };
    let (code, _, err) = cli(
        &["cluster", "up", "--from", case.from, "--to", case.to, "--backend", backend, "--buffer-pool-mb", "64"],
        &dir,
    );
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = cli(&["seed", "--scale", "0.02"], &dir);
    assert_eq!(code, 0, "{err}");
    let run_dir = dir.join(".coldswap/cluster");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cluster = Cluster::open(&run_dir).unwrap();
    let s = cluster.secrets().clone();
    let flavor = cluster.node(0).flavor();

    // --- Nobody else gets in.
    rt.block_on(async {
        for i in 0..2 {
            let n = cluster.node(i);
            // No password-less root over TCP, from anyone on this host.
            for pw in ["", "root"] {
                let r = try_login(coldswap_sql::tcp_options(&n.host, n.port, "root", pw)).await;
                assert!(r.is_err(), "{}: root logged in over TCP with password '{pw}': {r:?}", n.name);
            }
            if case.backend == coldswap_db::BackendKind::Process {
                let sock = coldswap_db::backend::process::socket(n);
                // Not even the invoking user without the password.
                let r = try_login(coldswap_sql::socket_options(&sock, "root")).await;
                assert!(r.is_err(), "{}: password-less root over the socket: {r:?}", n.name);
                let dir_mode = {
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::metadata(sock.parent().unwrap()).unwrap().permissions().mode() & 0o777
                };
                assert_eq!(dir_mode, 0o700, "{}: socket directory {}", n.name, sock.display());
                if is_root() {
                    assert!(!nobody_can_connect(&sock), "{}: nobody reached {}", n.name, sock.display());
                } else if std::env::var("CI").is_ok() {
                    panic!("{}: the other-uid check needs root (CI runs as root)", case.name);
                } else {
                    eprintln!("NOT CHECKED {}: another uid's access needs root", case.name);
                }
            }
            // coldswap's users, with their passwords, are the way in.
            let who = try_login(coldswap_sql::tcp_options(&n.host, n.port, &s.app_user, &s.app_password)).await;
            assert!(who.as_deref().is_ok_and(|w| w.starts_with(&s.app_user)), "{who:?}");
            for (user, pw) in [(&s.app_user, &s.app_password), (&s.admin_user, &s.admin_password)] {
                let mut c =
                    sqlx::mysql::MySqlConnection::connect_with(&coldswap_sql::tcp_options(&n.host, n.port, user, pw))
                        .await
                        .unwrap();
                for f in ["/etc/shadow", "/etc/passwd"] {
                    let row = sqlx::query(&format!(
                        "SELECT LOAD_FILE('{f}') IS NULL AS n, CAST(@@secure_file_priv AS CHAR) AS p"
                    ))
                    .fetch_one(&mut c)
                    .await
                    .unwrap();
                    let (null, dir): (i64, Option<String>) = (row.get("n"), row.get("p"));
                    assert_eq!(null, 1, "{} as {user}: LOAD_FILE('{f}') read it (secure_file_priv {dir:?})", n.name);
                    assert!(dir.is_some_and(|d| !d.is_empty()), "{}: secure_file_priv unset", n.name);
                }
                let _ = c.close().await;
            }
        }
    });

    // --- Each warm-up technique on a fresh cold restore.
    for technique in ["buffer-pool", "volume-read", "prefetch"] {
        let (code, _, err) = cli(&["cold", "reset", "--latency", "500us"], &dir);
        assert_eq!(code, 0, "{technique}: cold reset: {err}");
        let cluster = Cluster::open(&run_dir).unwrap();
        let r = cluster.replica_index().unwrap();
        let pages_before: u64 =
            rt.block_on(status(&cluster, r, "Innodb_buffer_pool_pages_data")).parse().unwrap_or(u64::MAX);
        let (code, out, err) = cli(&["warm", "--technique", technique, "--json"], &dir);
        assert_eq!(code, 0, "{technique}: {out}\n{err}");
        let rep = json(&out);
        let secs = rep["seconds"].as_f64().unwrap();
        let detail = rep["detail"].as_str().unwrap().to_string();
        eprintln!("{}: warm-up {technique}: {secs:.2} s; {detail}", case.name);
        let first: u64 = detail.split_whitespace().next().unwrap().parse().unwrap();
        assert!(first > 0, "{technique} did nothing: {detail}");
        let pages_after: u64 = rt.block_on(status(&cluster, r, "Innodb_buffer_pool_pages_data")).parse().unwrap();
        match technique {
            "buffer-pool" => {
                // The load completed (typed, per flavor) and the pages it
                // says it loaded are in the pool.
                let st = rt.block_on(status(&cluster, r, "Innodb_buffer_pool_load_status"));
                assert!(
                    matches!(
                        coldswap_db::status::buffer_pool_load(flavor, &st),
                        coldswap_db::status::Task::Completed { .. }
                    ),
                    "{st}"
                );
                // (Pages already in after the restart, the system
                // tablespace's, overlap with the list.)
                assert!(
                    pages_after > pages_before && pages_after >= first * 9 / 10,
                    "{technique}: {first} pages said loaded, the pool went from {pages_before} to {pages_after}"
                );
            }
            "prefetch" => assert!(pages_after > pages_before, "{pages_before} -> {pages_after}"),
            _ => assert!(rep["blocks_fetched"].as_u64().unwrap() > 0, "{out}"),
        }
    }
    let (code, _, err) = cli(&["cluster", "down"], &dir);
    assert_eq!(code, 0, "{err}");
    assert_nothing_left(&dir);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn process_mariadb() {
    run(&PROCESS_MARIADB);
}

#[test]
fn process_mysql() {
    run(&PROCESS_MYSQL);
}

#[test]
fn container_mariadb() {
    run(&CONTAINER_MARIADB);
}

#[test]
fn container_mysql() {
    run(&CONTAINER_MYSQL);
}
