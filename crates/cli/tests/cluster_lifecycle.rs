//! The cluster lifecycle on local processes: the shared lifecycle (up,
//! replicate, upgrade 10.11.18 -> 10.11.19 in place, promote, down), demotion,
//! a broken replica refused, and a dropped handle leaving nothing.

mod common;
use common::*;

use coldswap_db::{Cluster, PromoteOptions, Role, UpOptions};
use sqlx::{Connection, Executor};
use std::time::Duration;

/// The shared lifecycle (tests/common) on local processes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_replicate_upgrade_promote_down() {
    lifecycle(&PROCESS_MARIADB).await;
}

/// The same lifecycle on Oracle MySQL 9.7.4 processes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_up_replicate_upgrade_promote_down() {
    lifecycle(&PROCESS_MYSQL).await;
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
