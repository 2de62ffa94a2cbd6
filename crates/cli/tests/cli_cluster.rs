//! The cluster commands as a user runs them from a shell, and their errors.

mod common;
use common::*;
use std::time::{Duration, Instant};

#[test]
fn cluster_commands_from_a_shell() {
    let dir = test_dir("cli");
    let _reap = Reap(dir.clone());
    let (code, out, err) = cli(&["cluster", "up", "--json", "--buffer-pool-mb", "32"], &dir);
    assert_eq!(code, 0, "{err}");
    let up = json(&out);
    assert_eq!(up["command"], "up");
    let nodes = up["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 2);
    assert_eq!(nodes[0]["role"], "primary");
    assert_eq!(nodes[1]["role"], "replica");
    assert!(nodes[0]["version"].as_str().unwrap().starts_with("10.11.18"));
    assert!(nodes[0]["port"].as_u64().unwrap() > 0);
    assert!(up["steps"].as_array().unwrap().iter().all(|s| s["seconds"].as_f64().unwrap() >= 0.0));
    // Secrets stay out of records.
    let secrets = std::fs::read_to_string(dir.join(".coldswap/cluster/secrets.json")).unwrap();
    let pw = json(&secrets)["admin_password"].as_str().unwrap().to_string();
    assert!(!out.contains(&pw) && !err.contains(&pw));

    let (code, out, err) = cli(&["cluster", "upgrade", "--json"], &dir);
    assert_eq!(code, 0, "{err}");
    let upg = json(&out);
    assert!(upg["nodes"][1]["version"].as_str().unwrap().starts_with("10.11.19"), "{out}");
    assert!(!out.contains(&pw) && !err.contains(&pw));

    let (code, out, err) = cli(&["cluster", "promote", "--json"], &dir);
    assert_eq!(code, 0, "{err}");
    let pro = json(&out);
    assert_eq!(pro["nodes"][1]["role"], "primary");
    assert_eq!(pro["nodes"][0]["role"], "fenced");
    assert!(pro["promotion"]["write_unavailable_seconds"].as_f64().unwrap() > 0.0);
    assert!(!out.contains(&pw) && !err.contains(&pw));

    let (code, out, _) = cli(&["cluster", "status", "--json"], &dir);
    assert_eq!(code, 0);
    let st = json(&out);
    assert_eq!(st[1]["read_only"], false);
    assert_eq!(st[0]["read_only"], true);

    let (code, _, err) = cli(&["cluster", "down"], &dir);
    assert_eq!(code, 0, "{err}");
    assert!(servers_under(&dir).is_empty());
    assert!(!dir.join(".coldswap/cluster").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_input_gets_one_clear_line() {
    let dir = test_dir("badinput");
    let _reap = Reap(dir.clone());
    // Unknown version.
    let (code, _, err) = cli(&["cluster", "up", "--from", "mariadb-10.11.99"], &dir);
    assert_eq!(code, 1);
    assert!(last_line(&err).starts_with("coldswap: error: unknown server version 'mariadb-10.11.99'"), "{err}");
    let (code, _, err) = cli(&["cluster", "up", "--to", "mysql-9.9.9"], &dir);
    assert_eq!(code, 1);
    assert!(last_line(&err).contains("unknown server version 'mysql-9.9.9'"), "{err}");
    // A basedir without a server binary.
    let empty = dir.join("not-a-server");
    std::fs::create_dir_all(empty.join("bin")).unwrap();
    let (code, _, err) = cli(&["cluster", "up", "--from", empty.to_str().unwrap()], &dir);
    assert_eq!(code, 1);
    assert!(last_line(&err).contains("no server binary in"), "{err}");
    // A port in use.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let ports = format!("{port},{}", port.wrapping_add(1).max(1025));
    let (code, _, err) = cli(&["cluster", "up", "--ports", &ports], &dir);
    assert_eq!(code, 1);
    assert_eq!(last_line(&err), format!("coldswap: error: port {port} on 127.0.0.1 is already in use"));
    drop(l);
    // Nothing was created or left running by any of these.
    assert!(!dir.join(".coldswap/cluster/cluster.json").exists());
    assert!(servers_under(&dir).is_empty());
    // A run dir that already holds a live cluster.
    let (code, _, err) = cli(&["cluster", "up", "--buffer-pool-mb", "32"], &dir);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = cli(&["cluster", "up", "--buffer-pool-mb", "32"], &dir);
    assert_eq!(code, 1);
    assert!(last_line(&err).contains("already holds a live cluster"), "{err}");
    assert_eq!(servers_under(&dir).len(), 2, "the live cluster must be left alone");
    let (code, _, _) = cli(&["cluster", "down"], &dir);
    assert_eq!(code, 0);
    assert!(servers_under(&dir).is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_killed_run_is_cleaned_by_the_next_one() {
    let dir = test_dir("sigkill");
    let run_dir = dir.join("fg");
    let mut child = foreground(&run_dir, &dir);
    let deadline = Instant::now() + Duration::from_secs(30);
    while servers_under(&run_dir).len() < 2 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(50));
    }
    // SIGKILL: no handler runs, the servers stay behind.
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(servers_under(&run_dir).len(), 2);
    // The next run (here: `down` of an unrelated run dir) cleans them up.
    let (code, _, err) = cli(&["cluster", "down", "--run-dir", dir.join("other").to_str().unwrap()], &dir);
    assert_eq!(code, 0, "{err}");
    assert!(servers_under(&run_dir).is_empty(), "stale servers were not cleaned");
    assert!(!run_dir.exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn foreground_cluster_stops_on_sigterm() {
    let dir = test_dir("sigterm");
    let run_dir = dir.join("fg");
    let mut child = foreground(&run_dir, &dir);
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let st = child.wait().unwrap();
    assert_eq!(st.code(), Some(143));
    assert!(servers_under(&run_dir).is_empty());
    assert!(!run_dir.exists());
    let _ = std::fs::remove_dir_all(&dir);
}
