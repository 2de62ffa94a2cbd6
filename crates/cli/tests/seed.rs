//! Issue 3: the dataset seeds deterministically into a running cluster and
//! reaches the replica.

mod common;
use common::*;

use coldswap_dataset::{checksums, Counts};
use coldswap_db::{Cluster, UpOptions};
use coldswap_sql as sql;

const SCALE: f64 = 0.01;

async fn counts_on(c: &Cluster, i: usize) -> Vec<(String, u64)> {
    let mut conn = c.admin(i).await.unwrap();
    let mut v = Vec::new();
    for (db, t, _) in coldswap_dataset::BASE_ROWS {
        let n = sql::query_i64(&mut conn, &format!("SELECT COUNT(*) FROM `{db}`.`{t}`")).await.unwrap();
        v.push((format!("{db}.{t}"), n as u64));
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_is_deterministic_and_replicated() {
    let dir = test_dir("seed");
    let mut opts = UpOptions::new(dir.join("run"), FROM);
    opts.buffer_pool_mb = 64;
    let (cluster, _) = Cluster::up(opts).await.expect("cluster up");
    let p = cluster.primary_index().unwrap();
    let r = cluster.replica_index().unwrap();

    let s1 = cluster.seed(SCALE, false, &|_| {}).await.expect("seed");
    let expected = Counts::at(SCALE);
    assert_eq!(s1.rows, expected.total());
    assert!(s1.replica_catchup_seconds.is_some());
    assert!(s1.tables.iter().all(|t| t.bytes > 0), "sizes: {:?}", s1.tables);
    // Per-table row counts, on both nodes.
    let on_p = counts_on(&cluster, p).await;
    let on_r = counts_on(&cluster, r).await;
    for ((db, t, n), (name, got)) in expected.tables.iter().zip(on_p.iter()) {
        assert_eq!(&format!("{db}.{t}"), name);
        assert_eq!(got, n, "{name} on the primary");
    }
    assert_eq!(on_p, on_r, "replica differs from primary");
    let mut pc = cluster.admin(p).await.unwrap();
    let mut rc = cluster.admin(r).await.unwrap();
    let c1 = checksums(&mut pc).await.unwrap();
    assert_eq!(c1, checksums(&mut rc).await.unwrap(), "replica checksums differ");
    assert!(c1.iter().all(|(_, v)| !v.is_empty() && v != "0"));

    // Seeding again without --replace refuses and drops nothing.
    let e = cluster.seed(SCALE, false, &|_| {}).await.unwrap_err().to_string();
    assert!(e.contains("already holds data") && e.contains("--replace"), "{e}");
    assert_eq!(counts_on(&cluster, p).await, on_p);

    // Same scale again: identical tables.
    cluster.seed(SCALE, true, &|_| {}).await.expect("reseed");
    let c2 = checksums(&mut pc).await.unwrap();
    assert_eq!(c1, c2, "two seeds at the same scale differ");
    assert_eq!(c2, checksums(&mut rc).await.unwrap());
    // A different scale gives different data.
    cluster.seed(SCALE * 2.0, true, &|_| {}).await.expect("reseed x2");
    assert_ne!(checksums(&mut pc).await.unwrap(), c1);
    cluster.down(false).await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_scales_are_rejected_before_anything_runs() {
    let dir = test_dir("badscale");
    for bad in ["0", "-1", "abc", "-0.5"] {
        let (code, _, err) = cli(&["seed", "--scale", bad, "--run-dir", "nowhere"], &dir);
        assert_ne!(code, 0);
        assert!(err.contains("invalid scale"), "{bad}: {err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
