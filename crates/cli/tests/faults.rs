//! Issue 8: reliability under faults, on real servers. The primary killed
//! mid-load; replication broken by a real conflict; a lagging replica
//! refused; a switchover whose catch-up times out and rolls back; a full
//! disk under the run dir.

mod common;
use common::*;

use coldswap_client::run::{Load, LoadConfig};
use coldswap_client::{Endpoint, Recorder};
use coldswap_db::Role;
use coldswap_db::{Cluster, PromoteOptions, UpOptions};
use sqlx::Executor;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

async fn cluster_in(dir: &std::path::Path) -> Cluster {
    let mut opts = UpOptions::new(dir.join("run"), FROM);
    opts.buffer_pool_mb = 64;
    Cluster::up(opts).await.expect("cluster up").0
}

async fn make_table(c: &Cluster) {
    let p = c.primary_index().unwrap();
    let mut conn = app_conn(c, p).await;
    conn.execute("CREATE DATABASE faults").await.unwrap();
    conn.execute("CREATE TABLE faults.t (id INT PRIMARY KEY, v VARCHAR(20))").await.unwrap();
    c.verify_replication(Duration::from_secs(20)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_primary_killed_mid_load_is_survived_and_its_errors_classified() {
    let dir = test_dir("kill-primary");
    let mut cluster = cluster_in(&dir).await;
    cluster.seed(0.02, false, &|_| {}).await.expect("seed");
    let p = cluster.primary_index().unwrap();
    let ep = Endpoint::start(cluster.node(p).addr().parse().unwrap()).await.unwrap();
    let s = cluster.secrets().clone();
    let opts = coldswap_sql::tcp_options("127.0.0.1", ep.addr().port(), &s.app_user, &s.app_password);
    let mix = coldswap_client::run::load_mix(&repo().join("loadtests/api.toml")).unwrap();
    let rec = Arc::new(Recorder::new());
    let cfg = LoadConfig { users: 8, duration: Some(Duration::from_secs(8)), ..Default::default() };
    let load = Arc::new(Load::prepare(mix, opts, cfg, rec.clone()).await.expect("prepare"));
    rec.phase("run");
    let l2 = load.clone();
    let task = tokio::spawn(async move { l2.run().await });
    tokio::time::sleep(Duration::from_secs(3)).await;
    cluster.kill_node(p).await.expect("kill the primary");
    rec.event("primary_killed", "node1");
    // The load goes on to its end and returns normally.
    task.await.expect("load task").expect("load run survives a dead primary");
    let res = rec.snapshot();
    let ph = res.phase("run").unwrap();
    let (n, e) = ph.total_requests();
    assert!(n > 0 && e > 0, "{n} requests, {e} errors");
    let mut classes = std::collections::BTreeMap::new();
    for t in &ph.transactions {
        for (k, v) in &t.errors {
            *classes.entry(k.clone()).or_insert(0u64) += v;
        }
    }
    // Every failure is classified as the dead server's, not as "other".
    let dead: u64 = ["connection_refused", "connection_reset", "deadline_exceeded", "pool_exhausted"]
        .iter()
        .map(|k| classes.get(*k).copied().unwrap_or(0))
        .sum();
    assert!(
        classes.get("connection_refused").copied().unwrap_or(0) + classes.get("connection_reset").copied().unwrap_or(0)
            > 0,
        "{classes:?}"
    );
    assert_eq!(dead, e, "unclassified failures: {classes:?}");
    // The results serialize (a report can be written) and the timeline shows the fault.
    let json = serde_json::to_string(&res).unwrap();
    assert!(json.contains("primary_killed"));
    cluster.down(false).await.expect("down after a killed primary");
    assert!(servers_under(&dir).is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_replication_is_reported_and_promotion_refused() {
    let dir = test_dir("repl-break");
    let mut cluster = cluster_in(&dir).await;
    make_table(&cluster).await;
    let p = cluster.primary_index().unwrap();
    let r = cluster.replica_index().unwrap();
    // A row written on the replica outside replication, then the same key on
    // the primary: the replica's SQL thread stops on a duplicate key.
    {
        let mut c = admin_conn(&cluster, r).await;
        c.execute("SET SESSION sql_log_bin=0").await.unwrap();
        c.execute("INSERT INTO faults.t VALUES (5, 'replica-only')").await.unwrap();
    }
    app_conn(&cluster, p).await.execute("INSERT INTO faults.t VALUES (5, 'primary')").await.unwrap();
    let e = cluster.verify_replication(Duration::from_secs(20)).await.unwrap_err().to_string();
    assert!(e.contains("broken") && e.contains("Duplicate"), "{e}");
    let status = cluster.status().await;
    let rs = status[r].replication.as_ref().expect("replica status");
    assert!(!rs.healthy() && rs.problem().contains("Duplicate"), "{}", rs.problem());
    let e = cluster.promote(&PromoteOptions::default(), |_| {}).await.unwrap_err().to_string();
    assert!(e.starts_with("refusing to promote: replication on node2 is broken") && e.contains("Duplicate"), "{e}");
    // Nothing was fenced.
    app_conn(&cluster, p)
        .await
        .execute("INSERT INTO faults.t VALUES (6, 'still')")
        .await
        .expect("primary still writable");
    assert_eq!(cluster.node(p).role, Role::Primary);
    cluster.down(false).await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switchover_that_cannot_catch_up_rolls_back_to_the_old_primary() {
    let dir = test_dir("rollback");
    let mut cluster = cluster_in(&dir).await;
    make_table(&cluster).await;
    let p = cluster.primary_index().unwrap();
    let r = cluster.replica_index().unwrap();
    // The replica's applier waits on a table lock: replication is healthy
    // but cannot apply, so the catch-up after the fence times out.
    let mut locker = admin_conn(&cluster, r).await;
    locker.execute("LOCK TABLES faults.t WRITE").await.unwrap();
    app_conn(&cluster, p).await.execute("INSERT INTO faults.t VALUES (1, 'stuck')").await.unwrap();
    // Guardrail: once the replica reports lag beyond the limit, promotion is
    // refused before anything is fenced.
    let mut waited = 0;
    loop {
        let lag = cluster.replica_status(r).await.unwrap().and_then(|s| s.seconds_behind).unwrap_or(0);
        if lag >= 2 {
            break;
        }
        waited += 1;
        assert!(waited < 300, "the replica never reported lag");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let tight = PromoteOptions { max_lag_s: 1.0, catchup_timeout_s: 10.0, demote: false };
    let e = cluster.promote(&tight, |_| {}).await.unwrap_err().to_string();
    assert!(e.starts_with("refusing to promote: node2 lags") && e.contains("limit 1 s"), "{e}");
    app_conn(&cluster, p)
        .await
        .execute("INSERT INTO faults.t VALUES (7, 'not fenced')")
        .await
        .expect("primary writable after a refusal");
    let opts = PromoteOptions { max_lag_s: 60.0, catchup_timeout_s: 1.0, demote: false };
    let mut swapped = false;
    let e = cluster.promote(&opts, |_| swapped = true).await.unwrap_err().to_string();
    assert!(!swapped, "the endpoint was swapped to a replica that had not caught up");
    assert!(
        e.contains("did not catch up") && e.contains("rolled back") && e.contains("node1 is the primary again"),
        "{e}"
    );
    // The old primary takes writes again; the replica stays a read-only replica.
    app_conn(&cluster, p)
        .await
        .execute("INSERT INTO faults.t VALUES (2, 'after-rollback')")
        .await
        .expect("old primary writable again");
    assert_eq!(cluster.node(p).role, Role::Primary);
    assert_eq!(cluster.node(r).role, Role::Replica);
    let err =
        app_conn(&cluster, r).await.execute("INSERT INTO faults.t VALUES (3, 'x')").await.unwrap_err().to_string();
    assert!(err.contains("read-only") || err.contains("1290"), "{err}");
    // Once the lock goes, the replica catches up and a switchover succeeds.
    locker.execute("UNLOCK TABLES").await.unwrap();
    cluster.verify_replication(Duration::from_secs(30)).await.expect("replication resumes");
    let (o, _) = cluster.promote(&PromoteOptions::default(), |_| {}).await.expect("second switchover");
    assert_eq!(o.new_primary, "node2");
    cluster.down(false).await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A tmpfs of `size` mounted at `dir/small` for one test, unmounted on
/// drop; None (the test says it is skipped) where it cannot be mounted,
/// which fails instead under COLDSWAP_REQUIRE_FAULTS=1 (CI runs as root).
struct Small(PathBuf);

impl Small {
    fn mount(dir: &std::path::Path, size: &str, test: &str) -> Option<Small> {
        let small = dir.join("small");
        std::fs::create_dir_all(&small).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&small)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if ok {
            return Some(Small(small));
        }
        if std::env::var("COLDSWAP_REQUIRE_FAULTS").as_deref() == Ok("1") {
            panic!("{test}: cannot mount a small tmpfs (needs root), and COLDSWAP_REQUIRE_FAULTS=1");
        }
        eprintln!("SKIPPED {test}: cannot mount a small tmpfs (needs root)");
        None
    }
}

impl Drop for Small {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// A disk that fills while seeding: the run dir on a 700 MiB tmpfs, enough
/// for the cluster (the free-space check passes) but not for the data. The
/// server's own error reaches the user in one line, a non-zero exit; the
/// cluster still comes down and nothing is left running. Needs root to
/// mount the tmpfs: skipped otherwise, but required under CI
/// (COLDSWAP_REQUIRE_FAULTS=1, set by .ci/run).
#[test]
fn a_disk_that_fills_while_seeding_gives_the_servers_error() {
    let dir = test_dir("fulldisk");
    let Some(small) = Small::mount(&dir, "700m", "a_disk_that_fills_while_seeding_gives_the_servers_error") else {
        return;
    };
    let run = small.0.join("run");
    let r = run.to_str().unwrap();
    let (code, out, err) = cli(&["cluster", "up", "--run-dir", r, "--buffer-pool-mb", "32", "--from", FROM], &dir);
    assert_eq!(code, 0, "the cluster fits: {out}{err}");
    let (code, out, err) = cli(&["seed", "--run-dir", r, "--scale", "0.5"], &dir);
    assert_ne!(code, 0, "seeding 0.5 into a 700 MiB disk succeeded: {out}");
    let line = last_line(&err);
    // The server's words (MariaDB: error 1114, "The table ... is full"), not our pre-check.
    assert!(
        line.starts_with("coldswap: error: ") && (line.contains("is full") || line.contains("No space left")),
        "{err}"
    );
    assert!(!line.contains("no space for a cluster"), "{err}");
    assert_eq!(err.trim().lines().filter(|l| l.starts_with("coldswap:")).count(), 1, "{err}");
    // The cluster comes down on a full disk, and nothing is left.
    let (code, _, err) = cli(&["cluster", "down", "--run-dir", r], &dir);
    assert_eq!(code, 0, "{err}");
    assert!(servers_under(&dir).is_empty(), "servers left");
    assert!(!run.exists(), "run dir left behind");
    drop(small);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Too little space for the cluster at all: refused before anything is
/// created, in one line.
#[test]
fn no_room_for_a_cluster_is_refused_before_anything_starts() {
    let dir = test_dir("noroom");
    let Some(small) = Small::mount(&dir, "48m", "no_room_for_a_cluster_is_refused_before_anything_starts") else {
        return;
    };
    let run = small.0.join("run");
    let (code, out, err) = cli(&["cluster", "up", "--run-dir", run.to_str().unwrap(), "--from", FROM], &dir);
    drop(small);
    assert_ne!(code, 0, "cluster up on a full disk succeeded: {out}");
    assert!(last_line(&err).contains("no space for a cluster"), "{err}");
    assert!(servers_under(&dir).is_empty(), "servers left");
    let _ = std::fs::remove_dir_all(&dir);
}
