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
    // No read paid a first touch. (The restarts may write to blocks not
    // loaded yet, the redo log's next ones, and pay for those, as a lazily
    // loaded volume makes them.)
    assert_eq!(dw.cold_reads, 0, "warm scan paid first touches: {dw:?}");
    assert_eq!(dw.cold_blocks, dw.write_fetches, "{dw:?}");
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
    let inputs = WarmInputs {
        dump_from: Some(p),
        dump: None,
        tables: vec![("api".into(), "jobs".into())],
        parallel: 4,
        dump_pct: 100,
    };
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

/// Run python3 with the first-touch library preloaded on `root`; returns
/// its stdout (each thread prints its read's elapsed seconds).
fn preloaded_python(root: &std::path::Path, state: &std::path::Path, script: &str, latency_us: u64) -> String {
    let lib = cold::preload_lib().expect("the first-touch library (cargo build --release)");
    let cfg = ColdConfig::fixed(latency_us, 8);
    let mut cmd = std::process::Command::new("python3");
    cmd.arg("-c").arg(script);
    for (k, v) in cold::preload_env(&lib, root, state, &cfg) {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("python3");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// Several readers of one cold block at once: one fetches it, each of the
/// others waits for that fetch (none reads it for free), and it is fetched
/// once. A lazily loaded volume serves a block being loaded only when it is.
#[test]
fn readers_of_a_block_being_fetched_wait_for_it() {
    let dir = test_dir("ft-inflight");
    let (root, state) = (dir.join("data"), dir.join("state"));
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("t.ibd"), vec![7u8; 256 * 1024]).unwrap();
    let vol = cold::Volume::open(&state, &ColdConfig::fixed(300_000, 8)).unwrap();
    vol.reset().unwrap();
    let script = format!(
        r#"
import os, threading, time
fd = os.open("{f}", os.O_RDONLY)
barrier = threading.Barrier(4)
out = [0.0] * 4
def read(i):
    barrier.wait()
    t = time.monotonic()
    os.pread(fd, 16384, 16384 * i)   # four pages of the same first 64 KiB block
    out[i] = time.monotonic() - t
ts = [threading.Thread(target=read, args=(i,)) for i in range(4)]
[t.start() for t in ts]; [t.join() for t in ts]
print(" ".join("%.3f" % x for x in out))
t = time.monotonic(); os.pread(fd, 16384, 0); print("%.3f" % (time.monotonic() - t))
"#,
        f = root.join("t.ibd").display()
    );
    let out = preloaded_python(&root, &state, &script, 300_000);
    let mut lines = out.lines();
    let each: Vec<f64> = lines.next().unwrap().split_whitespace().map(|x| x.parse().unwrap()).collect();
    let again: f64 = lines.next().unwrap().parse().unwrap();
    eprintln!("four readers of one cold block: {each:?} s; a fifth read once warm: {again} s");
    for e in &each {
        assert!(*e >= 0.25, "a reader got the block before its fetch ended: {each:?}");
    }
    assert!(again < 0.05, "the block is warm once fetched: {again}");
    let c = vol.counters();
    assert_eq!(c.cold_blocks, 1, "{c:?}");
    assert_eq!(c.inflight_waits, 3, "{c:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Writes as a lazily loaded volume takes them: a whole cold block is
/// written without a fetch, part of one only after its fetch; space past
/// the file's size at the restore is new, hence warm.
#[test]
fn partial_writes_fetch_whole_ones_do_not() {
    let dir = test_dir("ft-writes");
    let (root, state) = (dir.join("data"), dir.join("state"));
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("t.ibd"), vec![7u8; 256 * 1024]).unwrap();
    let vol = cold::Volume::open(&state, &ColdConfig::fixed(200_000, 8)).unwrap();
    vol.reset().unwrap();
    let script = format!(
        r#"
import os, time
fd = os.open("{f}", os.O_RDWR)
def timed(f):
    t = time.monotonic(); f(); return time.monotonic() - t
whole = timed(lambda: os.pwrite(fd, b"x" * 65536, 65536))        # all of block 1
part = timed(lambda: os.pwrite(fd, b"y" * 16384, 2 * 65536))      # a page of block 2
grow = timed(lambda: os.pwrite(fd, b"z" * 16384, 5 * 65536))      # past the restored size
read1 = timed(lambda: os.pread(fd, 16384, 65536))                 # the block written whole
print("%.3f %.3f %.3f %.3f" % (whole, part, grow, read1))
"#,
        f = root.join("t.ibd").display()
    );
    let out = preloaded_python(&root, &state, &script, 200_000);
    let v: Vec<f64> = out.split_whitespace().map(|x| x.parse().unwrap()).collect();
    eprintln!(
        "whole-block write {} s, partial write {} s, write past the restored size {} s, read of the written block {} s",
        v[0], v[1], v[2], v[3]
    );
    assert!(v[0] < 0.05, "a whole-block write waited for a fetch: {v:?}");
    assert!(v[1] >= 0.15, "a partial write to a cold block did not fetch it: {v:?}");
    assert!(v[2] < 0.05, "new space waited for a fetch: {v:?}");
    assert!(v[3] < 0.05, "a block written whole is warm: {v:?}");
    let c = vol.counters();
    assert_eq!((c.written_blocks, c.write_fetches, c.new_blocks), (1, 1, 1), "{c:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
