//! Issue 21 (plans, results and settings): `coldswap version-diff` on a
//! primary and its upgraded, caught-up replica. A clean upgrade shows no
//! result difference; a planted one (an index dropped on the to-version's
//! side only, rows changed there only) is named, statement by statement,
//! and fails the command (exit 3).

mod common;
use common::*;

fn on_replica(run: &std::path::Path, statements: &[&str]) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = coldswap_db::Cluster::open(run).unwrap();
        let mut conn = c.admin(c.replica_index().unwrap()).await.unwrap();
        // Behind replication's back, as drift or a version's own change would be.
        coldswap_sql::exec(&mut conn, "SET SESSION sql_log_bin = 0").await.unwrap();
        for s in statements {
            coldswap_sql::exec(&mut conn, s).await.unwrap_or_else(|e| panic!("{s}: {e:#}"));
        }
        coldswap_sql::close(conn).await;
        c.detach();
    })
}

#[test]
fn plans_results_and_settings_between_versions() {
    let dir = test_dir("versions");
    let _reap = Reap(dir.clone());
    let run = dir.join("cluster");
    let r = run.to_str().unwrap();
    let (code, _, err) = cli(&["cluster", "up", "--run-dir", r, "--buffer-pool-mb", "64"], &dir);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = cli(&["seed", "--run-dir", r, "--scale", "0.05"], &dir);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = cli(&["cluster", "upgrade", "--run-dir", r, "--to", "mariadb-10.11.19"], &dir);
    assert_eq!(code, 0, "{err}");
    let mix = repo().join("loadtests/api.toml");
    let diff = |extra: &[&str]| {
        let mut args = vec!["version-diff", "--run-dir", r, "--mix", mix.to_str().unwrap(), "--samples", "10"];
        args.extend_from_slice(extra);
        cli(&args, &dir)
    };

    // A clean upgrade: every read statement compared, the same results.
    let (code, out, err) = diff(&["--json"]);
    assert_eq!(code, 0, "{err}\n{out}");
    let d = json(&out);
    assert!(d["from_version"].as_str().unwrap().starts_with("10.11.18"), "{}", d["from_version"]);
    assert!(d["to_version"].as_str().unwrap().starts_with("10.11.19"), "{}", d["to_version"]);
    assert_eq!(d["result_differences"], 0, "{out}");
    let statements = d["statements"].as_array().unwrap();
    assert!(statements.len() >= 15, "{}", statements.len());
    let compared: Vec<&serde_json::Value> = statements.iter().filter(|s| s["samples"].as_u64() == Some(10)).collect();
    assert!(compared.len() >= 8, "read statements compared: {}", compared.len());
    let (_, text, _) = diff(&[]);
    eprintln!("{text}");

    // Planted: an index only the from-side has, and rows only the to-side changed.
    on_replica(
        &run,
        &[
            "ALTER TABLE api.schedules DROP INDEX idx_schedules_account",
            "UPDATE api.accounts SET status = CONCAT(status, '-x')",
        ],
    );
    let (code, out, err) = diff(&["--json"]);
    assert_eq!(code, 3, "a result difference must fail: {err}\n{out}");
    let d = json(&out);
    let st = |txn: &str| -> &serde_json::Value {
        d["statements"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["transaction"] == txn)
            .unwrap_or_else(|| panic!("no {txn}"))
    };
    let plan = st("list_schedules")["plan_changes"].as_array().unwrap();
    assert!(plan.iter().any(|c| c.as_str().unwrap().contains("key idx_schedules_account -> ")), "{plan:?}");
    let res = st("authenticate")["result_differences"].as_array().unwrap();
    assert!(!res.is_empty() && res[0].as_str().unwrap().contains("checksum"), "{res:?}");
    // Reads of other tables are unaffected.
    assert!(st("show_job")["result_differences"].as_array().unwrap().is_empty());
    let (code, text, _) = diff(&[]);
    assert_eq!(code, 3);
    assert!(text.contains("RESULT: with (") && text.contains("plan: row"), "{text}");

    let (code, _, err) = cli(&["cluster", "down", "--run-dir", r], &dir);
    assert_eq!(code, 0, "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The container backend's real major upgrade, MariaDB 10.11 -> 11.8: the
/// settings whose defaults changed (character set and collation,
/// innodb_snapshot_isolation, the optimizer's switches and costs) are
/// listed; the api mix's plans and results, as found, are printed.
#[test]
fn a_major_upgrade_lists_what_changed_by_default() {
    if skip_or_fail("a_major_upgrade_lists_what_changed_by_default", case_ready(&CONTAINER_MARIADB)) {
        return;
    }
    let dir = test_dir("versions-major");
    let _reap = Reap(dir.clone());
    let run = dir.join("cluster");
    let r = run.to_str().unwrap();
    let (code, _, err) = cli(
        &[
            "cluster",
            "up",
            "--run-dir",
            r,
            "--backend",
            "container",
            "--from",
            CONTAINER_MARIADB.from,
            "--buffer-pool-mb",
            "64",
        ],
        &dir,
    );
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = cli(&["seed", "--run-dir", r, "--scale", "0.05"], &dir);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = cli(&["cluster", "upgrade", "--run-dir", r, "--to", CONTAINER_MARIADB.to], &dir);
    assert_eq!(code, 0, "{err}");
    let mix = repo().join("loadtests/api.toml");
    let (code, out, err) =
        cli(&["version-diff", "--run-dir", r, "--mix", mix.to_str().unwrap(), "--samples", "10", "--json"], &dir);
    assert!(code == 0 || code == 3, "{err}");
    let d = json(&out);
    assert!(d["to_version"].as_str().unwrap().starts_with("11.8"), "{}", d["to_version"]);
    let names: Vec<&str> = d["settings"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    for n in ["character_set_server", "innodb_snapshot_isolation", "optimizer_switch"] {
        assert!(names.contains(&n), "{n} not among {names:?}");
    }
    // Nothing instance-specific is listed as a version change.
    for n in ["server_id", "server_uuid", "server_uid", "datadir", "port", "hostname", "version", "wsrep_node_name"] {
        assert!(!names.contains(&n), "{n} is per instance: {names:?}");
    }
    let (_, text, _) = cli(&["version-diff", "--run-dir", r, "--mix", mix.to_str().unwrap(), "--samples", "10"], &dir);
    eprintln!("{text}");
    let (code, _, err) = cli(&["cluster", "down", "--run-dir", r], &dir);
    assert_eq!(code, 0, "{err}");
    assert_nothing_left(&dir);
    let _ = std::fs::remove_dir_all(&dir);
}
