//! Issue 5: the first-touch emulator on a real server, and the warming
//! techniques against it.
//!
//! "Warm" here is the same volume once its blocks have been fetched, with
//! the buffer pool empty as in the cold run (every measured scan follows a
//! restart), so the difference between the two is the storage alone.

mod common;
use common::*;

use coldswap_db::{Cluster, UpOptions};
use coldswap_nemesis::cold::{self, ColdConfig};
use coldswap_nemesis::warm::{self, Technique, WarmInputs};
use coldswap_sql as sql;
use std::time::Instant;

const SCAN: &str = "SELECT SUM(CRC32(query)) FROM api.jobs";

async fn scan(c: &Cluster, i: usize) -> f64 {
    let mut conn = c.admin(i).await.unwrap();
    let t = Instant::now();
    sql::query_text(&mut conn, SCAN).await.unwrap();
    let s = t.elapsed().as_secs_f64();
    sql::close(conn).await;
    s
}

/// Blocks of the table's clustered index (what a full scan reads), from
/// InnoDB's own page count.
async fn table_blocks(c: &Cluster, i: usize, block: u64) -> u64 {
    let mut conn = c.admin(i).await.unwrap();
    sql::exec(&mut conn, "ANALYZE TABLE api.jobs").await.unwrap();
    let bytes = sql::query_i64(
        &mut conn,
        "SELECT CAST(DATA_LENGTH AS SIGNED) FROM information_schema.TABLES WHERE TABLE_SCHEMA='api' AND TABLE_NAME='jobs'",
    )
    .await
    .unwrap() as u64;
    sql::close(conn).await;
    bytes.div_ceil(block)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_touch_penalty_and_warming() {
    let dir = test_dir("cold");
    let mut opts = UpOptions::new(dir.join("run"), FROM);
    opts.buffer_pool_mb = 128;
    let (mut cluster, _) = Cluster::up(opts).await.expect("cluster up");
    cluster.seed(0.05, false, &|_| {}).await.expect("seed");
    let p = cluster.primary_index().unwrap();
    let r = cluster.replica_index().unwrap();
    // The primary's buffer pool holds the table (for the buffer-pool technique).
    scan(&cluster, p).await;

    // Plain storage, empty buffer pool.
    cluster.restart_node(r).await.unwrap();
    let plain = scan(&cluster, r).await;

    // A fresh restore: every block cold, 1 ms per first touch, one at a time.
    let cfg = ColdConfig::fixed(1000, 1);
    let vol = cold::make_cold(&mut cluster, r, &cfg, true).await.expect("make cold");
    let blocks = table_blocks(&cluster, p, cfg.block_bytes()).await;
    assert!(blocks > 100, "table too small: {blocks} blocks");
    assert!(vol.warm_blocks("api/jobs.ibd") < blocks / 20, "jobs.ibd should start cold");
    let c0 = vol.counters();
    let cold_s = scan(&cluster, r).await;
    let d = vol.counters().since(&c0);
    cold::require_matched(&d, "cold scan").unwrap();
    let warmed = vol.warm_blocks("api/jobs.ibd");
    // The scan fetched the table's blocks, each once: at least the blocks
    // InnoDB's page count needs, at most the file (read-ahead reads whole
    // extents); the counters agree with the bitmap (plus a few blocks of
    // other files the server read on the way).
    let file = std::fs::metadata(cluster.files().unwrap().datadir(cluster.node(r)).join("api/jobs.ibd"))
        .unwrap()
        .len()
        .div_ceil(cfg.block_bytes());
    eprintln!(
        "table: {blocks} blocks of pages, {file} blocks of file; warmed by the scan {warmed}, counted {}",
        d.cold_blocks
    );
    assert!(warmed * 10 >= blocks * 9 && warmed <= file, "warmed {warmed}: pages need {blocks}, file has {file}");
    assert!(
        d.cold_blocks >= warmed && d.cold_blocks <= warmed + warmed / 10 + 16,
        "counters {} vs bitmap {warmed}",
        d.cold_blocks
    );

    // Warm: same volume, empty buffer pool again (best of two runs).
    cluster.restart_node(r).await.unwrap();
    let c1 = vol.counters();
    let mut warm_s = scan(&cluster, r).await;
    cluster.restart_node(r).await.unwrap();
    warm_s = warm_s.min(scan(&cluster, r).await);
    let dw = vol.counters().since(&c1);
    assert!(dw.matched_reads > 0, "warm scan went around the emulator");
    assert_eq!(dw.cold_blocks, 0, "warm scan paid first touches");
    assert_eq!(dw.wait_seconds, 0.0);
    let predicted = cfg.predicted_penalty_s(d.cold_blocks);
    eprintln!(
        "jobs.ibd {blocks} blocks; plain {plain:.3} s, cold {cold_s:.3} s, warm {warm_s:.3} s; \
         cold - warm {:.3} s, predicted {predicted:.3} s",
        cold_s - warm_s
    );
    eprintln!("time spent in first-touch waits: {:.3} s", d.wait_seconds);
    // The emulator waited B x 1 ms / concurrency in all (timer within 5%) ...
    assert!(
        (d.wait_seconds - predicted).abs() <= predicted * 0.05,
        "waited {:.3} s, predicted {predicted:.3} s",
        d.wait_seconds
    );
    // ... and the scan cannot finish before the waits do. (It is not always
    // warm + penalty: InnoDB's read-ahead threads pay the fetches while the
    // scanning thread works, so up to the warm scan's own time overlaps.)
    assert!(cold_s >= predicted, "cold scan {cold_s:.3} s shorter than the penalty {predicted:.3} s");
    assert!(
        cold_s > warm_s + predicted / 2.0,
        "cold {cold_s:.3} s vs warm {warm_s:.3} s, predicted penalty {predicted:.3} s"
    );

    // Each warming technique, from a fresh restore.
    let inputs = WarmInputs { dump_from: Some(p), tables: vec![("api".into(), "jobs".into())], parallel: 4 };
    for t in [Technique::BufferPool, Technique::VolumeRead, Technique::Prefetch] {
        let vol = cold::make_cold(&mut cluster, r, &cfg, true).await.unwrap();
        assert!(vol.warm_blocks("api/jobs.ibd") < blocks / 20);
        let rep = warm::warm(&cluster, r, t, &inputs).await.expect("warm-up");
        assert!(rep.seconds > 0.0);
        assert!(rep.blocks_fetched > 0, "{t}: warm-up fetched nothing ({})", rep.detail);
        let c2 = vol.counters();
        let after = scan(&cluster, r).await;
        let da = vol.counters().since(&c2);
        eprintln!(
            "{t}: warm-up {:.3} s ({}); scan after {after:.3} s (warm {warm_s:.3} s), {} cold blocks",
            rep.seconds, rep.detail, da.cold_blocks
        );
        assert!(da.cold_blocks * 20 <= blocks, "{t}: {} blocks still cold after warm-up", da.cold_blocks);
        assert!(after <= 1.5 * warm_s + 0.05, "{t}: scan after warm-up {after:.3} s vs warm {warm_s:.3} s");
    }

    cluster.down(false).await.unwrap();
    assert!(servers_under(&dir).is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}
