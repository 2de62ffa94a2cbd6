//! Each invariant can fail, on real servers, in a whole drill: a replica
//! row changed outside replication fails the drill before the switchover; a
//! deleted acknowledged write is reported lost; a ledger that cannot be read
//! fails as "not checked", never as a pass. The faults are made from
//! outside the drill, as an operator or a bug would, through the cluster's
//! own record in the drill's run dir.

mod common;
use common::*;

use coldswap_db::{Cluster, Role};
use coldswap_drill::DrillConfig;
use sqlx::Executor;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Drills run one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn small(dir: &Path) -> DrillConfig {
    let mut c = DrillConfig { out: dir.join("out"), ..Default::default() };
    c.cluster.buffer_pool_mb = 64;
    c.data.scale = 0.05;
    c.load.mix = repo().join("loadtests/api.toml");
    c.load.rate = 200.0;
    c.load.users = 16;
    c.phases.baseline = "10s".into();
    c.phases.cold = "8s".into();
    c.phases.warm = "8s".into();
    c
}

/// The drill's cluster, once its record exists, as a handle that never
/// tears it down (the drill owns it).
async fn drill_cluster(out: &Path) -> (Cluster, PathBuf) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let run = out.join("latest/cluster");
        if run.join("cluster.json").is_file() && run.join("secrets.json").is_file() {
            if let Ok(c) = Cluster::open(&run) {
                return (c, run);
            }
        }
        assert!(Instant::now() < deadline, "the drill's cluster never appeared under {}", out.display());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Wait until `sql` (one number) is positive on node `i`.
async fn until_positive(c: &Cluster, i: usize, sql: &str, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Ok(mut conn) = c.admin(i).await {
            if let Ok(Some(v)) = coldswap_sql::query_text(&mut conn, sql).await {
                if v.parse::<f64>().map(|x| x > 0.0).unwrap_or(false) {
                    return;
                }
            }
        }
        assert!(Instant::now() < deadline, "never true on {}: {sql}", c.node(i).name);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Wait until the drill has promoted node2 (re-reading its record).
async fn until_promoted(run: &Path) -> Cluster {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if let Ok(c) = Cluster::open(run) {
            if c.node(1).role == Role::Primary {
                return c;
            }
            c.detach();
        }
        assert!(Instant::now() < deadline, "the drill never promoted node2");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn junit_case<'a>(junit: &'a str, name: &str) -> &'a str {
    let start = junit.find(&format!("name=\"{name}\"")).unwrap_or_else(|| panic!("no JUnit case {name}: {junit}"));
    let end = junit[start..].find("</testcase>").map(|e| start + e).unwrap_or(junit.len());
    &junit[start..end]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_differs_fails_the_drill_before_the_switchover() {
    let _serial = SERIAL.lock().await;
    let dir = test_dir("inv-checksum");
    let drill = tokio::spawn(coldswap_drill::run(small(&dir), None));
    let (c, _) = drill_cluster(&dir.join("out")).await;
    // Seeded, replicated; then a replica row changed with the binlog off.
    until_positive(&c, 1, "SELECT COUNT(*) FROM api.accounts WHERE id = 1", 120).await;
    {
        let mut r = c.admin(1).await.unwrap();
        r.execute("SET SESSION sql_log_bin = 0").await.unwrap();
        r.execute("UPDATE api.accounts SET name = CONCAT(name, '-drifted') WHERE id = 1").await.unwrap();
    }
    c.detach();
    let o = drill.await.unwrap().expect("the drill returns a report");
    let r = &o.report;
    assert_eq!(o.exit_code, 3, "{:?}", o.error);
    assert!(!r.complete && !r.verdict.passed);
    let i = r.invariant_results.iter().find(|i| i.name == "replica_consistent").expect("the checksum invariant");
    assert!(i.checked && !i.passed && i.detail.contains("api.accounts"), "{i:?}");
    assert!(r.verdict.headline.starts_with("FAIL: the replica differs from its primary"), "{}", r.verdict.headline);
    // Stopped before the switchover: nothing was fenced or promoted.
    assert!(!r.events.iter().any(|e| e.name == "fenced" || e.name == "switchover"), "{:?}", r.events);
    assert!(r.phase("cold").is_none());
    let junit = std::fs::read_to_string(o.dir.join("report.junit.xml")).unwrap();
    assert!(junit_case(&junit, "replica_consistent").contains("<failure message=\"violated\""), "{junit}");
    assert_nothing_left(&dir);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_acknowledged_write_is_reported_lost() {
    let _serial = SERIAL.lock().await;
    let dir = test_dir("inv-lost");
    let mut cfg = small(&dir);
    cfg.thresholds.time_to_warm_s = Some(60.0);
    let drill = tokio::spawn(coldswap_drill::run(cfg, None));
    let (c, run) = drill_cluster(&dir.join("out")).await;
    c.detach();
    // After the switchover, acknowledged writes vanish from the new primary.
    let c = until_promoted(&run).await;
    until_positive(&c, 1, "SELECT COUNT(*) FROM api.write_ledger", 60).await;
    {
        let mut p = c.admin(1).await.unwrap();
        p.execute("DELETE FROM api.write_ledger ORDER BY id LIMIT 20").await.unwrap();
    }
    c.detach();
    let o = drill.await.unwrap().expect("drill");
    let r = &o.report;
    assert!(r.complete, "{:?}", o.error);
    let lost = r.invariants["ledger"]["lost"].as_u64().unwrap();
    assert!(lost > 0, "{}", r.invariants["ledger"]);
    let i = r.invariant_results.iter().find(|i| i.name == "write_ledger").unwrap();
    assert!(i.checked && !i.passed && i.detail.contains(&format!("{lost} lost")), "{i:?}");
    let t = r.thresholds.iter().find(|t| t.rule == "lost_writes").unwrap();
    assert!(!t.passed && t.checked && t.value == lost as f64, "{t:?}");
    assert_eq!(o.exit_code, 3);
    let junit = std::fs::read_to_string(o.dir.join("report.junit.xml")).unwrap();
    assert!(junit_case(&junit, "write_ledger").contains("<failure"), "{junit}");
    // An 8 s cold phase cannot hold 10 s of warmth: "not warm", and the
    // time_to_warm_s threshold fails on it rather than passing unseen.
    let w = r.time_to_warm.as_ref().expect("time_to_warm");
    assert_eq!(w.overall.seconds, None, "{w:?}");
    assert!(w.overall.summary.starts_with("not warm within "), "{}", w.overall.summary);
    let t = r.thresholds.iter().find(|t| t.rule == "time_to_warm_s").expect("time_to_warm_s evaluated");
    assert!(t.checked && !t.passed, "{t:?}");
    assert!(r.events.iter().all(|e| e.name != "warm"));
    assert_nothing_left(&dir);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ledger_that_cannot_be_read_fails_as_not_checked() {
    let _serial = SERIAL.lock().await;
    let dir = test_dir("inv-unreadable");
    let drill = tokio::spawn(coldswap_drill::run(small(&dir), None));
    let (c, run) = drill_cluster(&dir.join("out")).await;
    c.detach();
    let c = until_promoted(&run).await;
    {
        let mut p = c.admin(1).await.unwrap();
        p.execute("RENAME TABLE api.write_ledger TO api.write_ledger_gone").await.unwrap();
    }
    c.detach();
    let o = drill.await.unwrap().expect("drill");
    let r = &o.report;
    let i = r.invariant_results.iter().find(|i| i.name == "write_ledger").unwrap();
    assert!(!i.checked && !i.passed && i.detail.starts_with("not checked"), "{i:?}");
    let t = r.thresholds.iter().find(|t| t.rule == "lost_writes").expect("lost_writes is still evaluated");
    assert!(!t.passed && !t.checked, "{t:?}");
    assert!(!r.verdict.passed);
    assert!(r.verdict.headline.contains("not checked"), "{}", r.verdict.headline);
    assert_eq!(o.exit_code, 3);
    let junit = std::fs::read_to_string(o.dir.join("report.junit.xml")).unwrap();
    assert!(junit_case(&junit, "write_ledger").contains("not checked"), "{junit}");
    assert_nothing_left(&dir);
    let _ = std::fs::remove_dir_all(&dir);
}
