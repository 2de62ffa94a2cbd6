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

/// The matrix on the container backend's real major upgrade (MariaDB 10.11
/// -> 11.8), with a version regression planted: the to-version's side
/// loses list_schedules' index (dropped on the upgraded replica behind
/// replication's back, before the switchover). The report names it a
/// version regression and the threshold fails the drill; the notification
/// scan is a cold penalty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_matrix_tells_a_planted_version_regression_from_the_cold_penalty() {
    if skip_or_fail("the_matrix_tells_a_planted_version_regression", case_ready(&CONTAINER_MARIADB)) {
        return;
    }
    let dir = test_dir("matrix");
    let _reap = Reap(dir.clone());
    let mut cfg = coldswap_drill::DrillConfig { out: dir.join("out"), ..Default::default() };
    cfg.cluster.backend = "container".into();
    cfg.cluster.buffer_pool_mb = 64;
    cfg.data.scale = 0.05;
    cfg.load.mix = repo().join("loadtests/api.toml");
    cfg.load.rate = 200.0;
    cfg.load.users = 16;
    cfg.phases.baseline = "15s".into();
    cfg.phases.cold = "15s".into();
    cfg.phases.warm = "15s".into();
    cfg.checks.checksum = false;
    cfg.queue.enabled = false;
    cfg.matrix.enabled = true;
    let drill = tokio::spawn(coldswap_drill::run(cfg, None));
    // Once the replica runs 11.8, and before the switchover: drop the index there.
    let run = dir.join("out/latest/cluster");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(400);
    loop {
        assert!(std::time::Instant::now() < deadline, "the replica never ran 11.8");
        if drill.is_finished() {
            let o = drill.await.unwrap();
            panic!("the drill ended before the switchover: {:?}", o.map(|o| o.error));
        }
        if let Ok(c) = coldswap_db::Cluster::open(&run) {
            let r = c.replica_index().ok();
            let mut planted = false;
            if let Some(r) = r {
                if let Ok(mut conn) = c.admin(r).await {
                    let v = coldswap_sql::query_text(&mut conn, "SELECT VERSION()").await.ok().flatten();
                    if v.is_some_and(|v| v.starts_with("11.8")) {
                        coldswap_sql::exec(&mut conn, "SET SESSION sql_log_bin = 0").await.unwrap();
                        coldswap_sql::exec(&mut conn, "ALTER TABLE api.schedules DROP INDEX idx_schedules_account")
                            .await
                            .unwrap();
                        planted = true;
                    }
                    coldswap_sql::close(conn).await;
                }
            }
            c.detach();
            if planted {
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let o = drill.await.unwrap().expect("the drill returns a report");
    let r = &o.report;
    assert!(r.complete, "{:?}", o.error);
    assert!(r.events.iter().any(|e| e.name == "switchover"));
    let m = r.matrix.as_ref().expect("a matrix");
    eprintln!("{}", coldswap_checker::matrix::markdown(m));
    let row = |n: &str| m.rows.iter().find(|x| x.transaction == n).unwrap_or_else(|| panic!("no {n}"));
    let ls = row("list_schedules");
    assert!(ls.cells.verdict == "version regression" || ls.cells.verdict == "both", "{ls:?}");
    let scan = row("notify_schedules");
    assert!(scan.cells.verdict == "cold penalty" || scan.cells.verdict == "both", "{scan:?}");
    // The same per statement digest, from the digest table's readings.
    let stmt = |n: &str| {
        m.statements
            .iter()
            .find(|x| x.transaction.as_deref() == Some(n))
            .unwrap_or_else(|| panic!("no statement of {n}"))
    };
    let ls = stmt("list_schedules");
    assert!(ls.cells.verdict == "version regression" || ls.cells.verdict == "both", "{ls:?}");
    let scan = stmt("notify_schedules");
    assert!(scan.cells.verdict == "cold penalty" || scan.cells.verdict == "both", "{scan:?}");
    // Beside the effects: the plan that changed, and the defaults the major version changed.
    let v = m.versions.as_ref().expect("plans and settings compared");
    let plan = v.statements.iter().find(|s| s.transaction == "list_schedules").unwrap();
    assert!(plan.plan_changes.iter().any(|c| c.contains("key idx_schedules_account -> ")), "{plan:?}");
    eprintln!(
        "plans changed: {:?}",
        v.statements.iter().filter(|s| !s.plan_changes.is_empty()).map(|s| &s.plan_changes).collect::<Vec<_>>()
    );
    // Results, on the same data once the old primary caught up after the load.
    let how = v.results.as_deref().unwrap_or("");
    assert!(how.contains("compared on the same data"), "{how}");
    assert!(plan.samples > 0, "{plan:?}");
    eprintln!(
        "results: {how}; differences: {:?}",
        v.statements.iter().filter(|s| !s.result_differences.is_empty()).collect::<Vec<_>>()
    );
    for n in ["character_set_server", "innodb_snapshot_isolation", "optimizer_switch"] {
        assert!(v.settings.iter().any(|s| s.name == n), "{n} not listed");
    }
    let t = r.thresholds.iter().find(|t| t.rule == "version_p99_ratio").expect("the version threshold");
    assert!(t.checked && !t.passed && t.detail.starts_with("list_schedules"), "{t:?}");
    assert_eq!(o.exit_code, 3);
    assert!(
        r.verdict.findings.iter().any(|f| f.contains("version regression in list_schedules")),
        "{:?}",
        r.verdict.findings
    );
    let md = std::fs::read_to_string(o.dir.join("report.md")).unwrap();
    assert!(
        md.contains("## Version effect apart from the cold effect") && md.contains("statement(s) changed plan:"),
        "{md}"
    );
    assert_nothing_left(&dir);
    let _ = std::fs::remove_dir_all(&dir);
}
