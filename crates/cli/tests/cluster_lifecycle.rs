//! Issue 2: a real 10.11.18 cluster is brought up, replicates, its replica is
//! upgraded to 10.11.19 in place, promoted, and torn down.

mod common;
use common::*;

use coldswap_db::cluster::{Cluster, PromoteOptions, UpOptions};
use coldswap_db::Role;
use sqlx::{Connection, Executor, Row};
use std::time::{Duration, Instant};

async fn app_conn(c: &Cluster, i: usize) -> sqlx::MySqlConnection {
    sqlx::MySqlConnection::connect_with(&c.app_options(i)).await.expect("app connection")
}

async fn count_on(c: &Cluster, i: usize) -> i64 {
    let mut conn = app_conn(c, i).await;
    let row = conn.fetch_one("SELECT COUNT(*) AS n FROM drilltest.t").await.unwrap();
    row.get::<i64, _>("n")
}

async fn wait_count(c: &Cluster, i: usize, want: i64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let n = count_on(c, i).await;
        if n == want {
            return;
        }
        assert!(Instant::now() < deadline, "{} has {n} rows, expected {want}", c.node(i).name);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn version_of(c: &Cluster, i: usize) -> String {
    let mut conn = app_conn(c, i).await;
    conn.fetch_one("SELECT VERSION() AS v").await.unwrap().get::<String, _>("v")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_replicate_upgrade_promote_down() {
    let dir = test_dir("lifecycle");
    let run_dir = dir.join("run");
    let mut opts = UpOptions::new(&run_dir, FROM);
    opts.to = Some(TO.into());
    opts.buffer_pool_mb = 64;
    let (mut cluster, steps) = Cluster::up(opts).await.expect("cluster up");
    assert!(steps.0.iter().any(|s| s.name == "verify_replication"));
    let p = cluster.primary_index().unwrap();
    let r = cluster.replica_index().unwrap();
    assert!(version_of(&cluster, p).await.starts_with("10.11.18"));
    assert!(version_of(&cluster, r).await.starts_with("10.11.18"));

    // Writes on the primary reach the replica.
    {
        let mut conn = app_conn(&cluster, p).await;
        conn.execute("CREATE DATABASE drilltest").await.unwrap();
        conn.execute("CREATE TABLE drilltest.t (id INT PRIMARY KEY, v VARCHAR(20))").await.unwrap();
        for i in 0..10 {
            sqlx::query("INSERT INTO drilltest.t VALUES (?, 'before')").bind(i).execute(&mut conn).await.unwrap();
        }
    }
    wait_count(&cluster, r, 10).await;
    // The replica refuses the application's writes.
    {
        let mut conn = app_conn(&cluster, r).await;
        let e = conn.execute("INSERT INTO drilltest.t VALUES (100, 'x')").await.unwrap_err();
        assert!(e.to_string().contains("read-only") || e.to_string().contains("1290"), "{e}");
    }

    // Upgrade the replica in place: the version changes and replication still flows.
    let up = cluster.upgrade(None).await.expect("upgrade");
    for name in ["stop_replication", "stop_replica_server", "start_on_new_binaries", "upgrade_tool", "verify_replication"] {
        assert!(up.0.iter().any(|s| s.name == name), "missing step {name}");
    }
    assert!(version_of(&cluster, r).await.starts_with("10.11.19"));
    assert!(version_of(&cluster, p).await.starts_with("10.11.18"));
    {
        let mut conn = app_conn(&cluster, p).await;
        for i in 10..20 {
            sqlx::query("INSERT INTO drilltest.t VALUES (?, 'after-upgrade')").bind(i).execute(&mut conn).await.unwrap();
        }
    }
    wait_count(&cluster, r, 20).await;

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
        assert!(e.to_string().contains("read-only") || e.to_string().contains("1290"), "{e}");
    }
    assert_eq!(count_on(&cluster, r).await, 21);
    // A second promotion is refused: the old primary is not replicating.
    let e = cluster.promote(&PromoteOptions::default(), |_| {}).await.unwrap_err().to_string();
    assert!(e.contains("no replica") || e.contains("refusing"), "{e}");

    // Tear down: nothing left running, run dir gone.
    let pids: Vec<u32> = cluster.state.nodes.iter().filter_map(|n| n.pid).collect();
    assert_eq!(pids.len(), 2);
    cluster.down(false).await.expect("down");
    assert!(servers_under(&run_dir).is_empty(), "servers left: {:?}", servers_under(&run_dir));
    assert!(!run_dir.exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promote_with_demote_keeps_old_primary_as_replica() {
    let dir = test_dir("demote");
    let mut opts = UpOptions::new(dir.join("run"), FROM);
    opts.buffer_pool_mb = 32;
    let (mut cluster, _) = Cluster::up(opts).await.expect("cluster up");
    let p = cluster.primary_index().unwrap();
    let opts = PromoteOptions { demote: true, ..Default::default() };
    let (outcome, _) = cluster.promote(&opts, |_| {}).await.expect("promote");
    assert!(outcome.demoted);
    assert_eq!(cluster.node(p).role, Role::Replica);
    // Replication now flows from the new primary to the old one.
    cluster.verify_replication(Duration::from_secs(20)).await.expect("reverse replication");
    cluster.down(false).await.unwrap();
    assert!(servers_under(&dir).is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promote_refuses_a_broken_replica_and_leaves_the_primary_writable() {
    let dir = test_dir("broken");
    let mut opts = UpOptions::new(dir.join("run"), FROM);
    opts.buffer_pool_mb = 32;
    let (mut cluster, _) = Cluster::up(opts).await.expect("cluster up");
    let p = cluster.primary_index().unwrap();
    let r = cluster.replica_index().unwrap();
    // Break replication: stop the replica's SQL thread.
    {
        let mut c = cluster.admin(r).await.unwrap();
        c.execute("STOP SLAVE SQL_THREAD").await.unwrap();
    }
    let e = cluster.promote(&PromoteOptions::default(), |_| {}).await.unwrap_err().to_string();
    assert!(e.starts_with("refusing to promote: replication on node2 is broken"), "{e}");
    // The primary was never fenced.
    let mut conn = sqlx::MySqlConnection::connect_with(&cluster.app_options(p)).await.unwrap();
    conn.execute("CREATE DATABASE still_writable").await.expect("primary still writable");
    cluster.down(false).await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_cluster_handle_leaves_nothing_running() {
    // A panic or error path drops the handle: its servers die with it.
    let dir = test_dir("drop");
    let run_dir = dir.join("run");
    let mut opts = UpOptions::new(&run_dir, FROM);
    opts.buffer_pool_mb = 32;
    let (cluster, _) = Cluster::up(opts).await.expect("cluster up");
    assert_eq!(servers_under(&run_dir).len(), 2);
    let r = std::panic::AssertUnwindSafe(async move {
        let _c = cluster;
        panic!("boom");
    });
    let joined = tokio::spawn(futures_like(r)).await;
    assert!(joined.is_err());
    assert!(servers_under(&run_dir).is_empty(), "servers left after panic");
    assert!(!run_dir.exists());
    let _ = std::fs::remove_dir_all(&dir);
}

async fn futures_like<F: std::future::Future<Output = ()>>(f: std::panic::AssertUnwindSafe<F>) {
    f.0.await
}
