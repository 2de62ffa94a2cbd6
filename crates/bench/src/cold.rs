//! first_touch_fidelity: how exactly the emulator adds the configured
//! penalty to a full scan.

use anyhow::Result;
use coldswap_db::{Cluster, UpOptions};
use coldswap_nemesis::cold::{self, ColdConfig};
use coldswap_nemesis::warm;
use coldswap_sql as sql;
use std::time::Instant;

use crate::Figure;

const SCAN: &str = "SELECT SUM(CRC32(query)) FROM api.jobs";

async fn scan(c: &Cluster, i: usize) -> Result<f64> {
    let mut conn = c.admin(i).await?;
    let t = Instant::now();
    sql::query_text(&mut conn, SCAN).await?;
    let s = t.elapsed().as_secs_f64();
    sql::close(conn).await;
    Ok(s)
}

pub async fn run(scale: f64) -> Result<Vec<Figure>> {
    let dir = std::env::temp_dir().join(format!("coldswap-bench-cold-{}", std::process::id()));
    let mut opts = UpOptions::new(&dir, "mariadb-10.11.18");
    opts.buffer_pool_mb = 128;
    let (mut cluster, _) = Cluster::up(opts).await?;
    let r = measure(&mut cluster, scale).await;
    cluster.down(false).await?;
    r
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Bytes InnoDB has read from its data files (its own counter, not the emulator's).
async fn innodb_read_bytes(c: &Cluster, i: usize) -> Result<f64> {
    let mut conn = c.admin(i).await?;
    let rows = sql::fetch_all(&mut conn, "SHOW GLOBAL STATUS LIKE 'Innodb_data_read'").await?;
    sql::close(conn).await;
    Ok(rows.first().and_then(|r| sql::col_text_at(r, 1)).and_then(|v| v.parse().ok()).unwrap_or(0.0))
}

/// The api.jobs scan split into `n` primary-key ranges, run at once.
async fn parallel_scan(c: &Cluster, i: usize, n: usize) -> Result<f64> {
    let mut conn = c.admin(i).await?;
    let lo = sql::query_i64(&mut conn, "SELECT MIN(id) FROM api.jobs").await?;
    let hi = sql::query_i64(&mut conn, "SELECT MAX(id) FROM api.jobs").await?;
    sql::close(conn).await;
    let step = (hi - lo + 1) / n as i64 + 1;
    let t = Instant::now();
    let mut tasks = Vec::new();
    for k in 0..n as i64 {
        let opts = c.admin_options(i);
        let (a, b) = (lo + k * step, lo + (k + 1) * step - 1);
        tasks.push(tokio::spawn(async move {
            let mut conn = sql::connect(&opts, std::time::Duration::from_secs(10)).await?;
            sql::query_text(&mut conn, &format!("{SCAN} WHERE id BETWEEN {a} AND {b}")).await?;
            sql::close(conn).await;
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(t.elapsed().as_secs_f64())
}

/// One fidelity figure: `readers` scanning api.jobs at once on a fresh
/// restore with `cfg`, against the same on the warmed volume; the penalty
/// predicted from InnoDB's own count of bytes read (blocks) and the
/// configured latency and fetches in flight, not from the emulator's counters.
async fn fidelity(
    cluster: &mut Cluster,
    r: usize,
    cfg: &ColdConfig,
    readers: usize,
    runs: usize,
) -> Result<(f64, String)> {
    let mut ratios = Vec::new();
    let mut detail = String::new();
    for _ in 0..runs {
        // A fresh restore, then the same volume once warm; the buffer pool
        // is empty for both.
        let vol = cold::make_cold(cluster, r, cfg, true).await?;
        let (c0, b0) = (vol.counters(), innodb_read_bytes(cluster, r).await?);
        let cold_s = parallel_scan(cluster, r, readers).await?;
        let read = innodb_read_bytes(cluster, r).await? - b0;
        cold::require_matched(&vol.counters().since(&c0), "fidelity scan")?;
        cluster.restart_node(r).await?;
        let warm_s = parallel_scan(cluster, r, readers).await?;
        let blocks = (read / cfg.block_bytes() as f64).ceil();
        let in_flight = (readers as u32).min(cfg.concurrency).max(1) as f64;
        let predicted = blocks * cfg.mean_latency_us() / 1e6 / in_flight;
        ratios.push((cold_s - warm_s) / predicted);
        detail = format!(
            "cold {cold_s:.2} s, warm {warm_s:.2} s, InnoDB read {:.0} MiB = {blocks} blocks x {:.1} ms / {in_flight} = {predicted:.2} s predicted",
            read / 1048576.0,
            cfg.mean_latency_us() / 1000.0
        );
        eprintln!(
            "bench: fidelity with {readers} readers, {}..{} us, {} in flight: {detail}",
            cfg.latency_min_us, cfg.latency_max_us, cfg.concurrency
        );
    }
    Ok((median(ratios), detail))
}

/// Blocks of every file under a directory, from their sizes.
fn file_blocks(dir: &std::path::Path, block: u64) -> u64 {
    let mut n = 0;
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let Ok(md) = e.metadata() else { continue };
            if md.is_dir() {
                n += file_blocks(&e.path(), block);
            } else if md.is_file() {
                n += md.len().div_ceil(block);
            }
        }
    }
    n
}

/// The emulator alone at the drill's settings: the whole datadir read by
/// `readers` threads (coldswap-volread, block by block) on a fresh restore
/// with the server stopped, then again warm; predicted from the files' sizes.
async fn volume_fidelity(cluster: &mut Cluster, r: usize, cfg: &ColdConfig, readers: usize) -> Result<(f64, String)> {
    let vol = cold::make_cold(cluster, r, cfg, true).await?;
    cluster.stop_node(r).await?;
    vol.reset()?;
    vol.clear_inflight();
    let datadir = cluster.files()?.datadir(cluster.node(r));
    let blocks = file_blocks(&datadir, cfg.block_bytes());
    let t = Instant::now();
    warm::volume_read(cluster, r, readers).await?;
    let cold_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    warm::volume_read(cluster, r, readers).await?;
    let warm_s = t.elapsed().as_secs_f64();
    let fetched = vol.counters().cold_blocks;
    cluster.start_in_role(r).await?;
    let in_flight = (readers as u32).min(cfg.concurrency).max(1) as f64;
    let predicted = blocks as f64 * cfg.mean_latency_us() / 1e6 / in_flight;
    let detail = format!(
        "cold {cold_s:.2} s, warm {warm_s:.2} s; the files hold {blocks} blocks x {:.1} ms / {in_flight} = {predicted:.2} s predicted (the emulator counted {fetched} fetches)",
        cfg.mean_latency_us() / 1000.0
    );
    eprintln!("bench: volume read with {readers} readers: {detail}");
    Ok(((cold_s - warm_s) / predicted, detail))
}

async fn measure(cluster: &mut Cluster, scale: f64) -> Result<Vec<Figure>> {
    eprintln!("bench: seeding scale {scale} for the first-touch figures ...");
    cluster.seed(scale, false, &|_| {}).await?;
    let r = cluster.replica_index()?;
    let runs = 3;
    // Plain storage, empty buffer pool.
    let mut plain = Vec::new();
    for _ in 0..runs {
        cluster.restart_node(r).await?;
        plain.push(scan(cluster, r).await?);
    }
    // 3 ms, one fetch at a time, one reader: the low end of the postmortem's
    // 3-30 ms. (At 1 ms the scan's own work, which InnoDB's read-ahead
    // overlaps with the fetches, is a tenth of the penalty.)
    let serial = ColdConfig::fixed(3000, 1);
    let (fid, fid_detail) = fidelity(cluster, r, &serial, 1, runs).await?;
    // The drill's volume: 3-30 ms, 4 fetches in flight, four readers of
    // distinct blocks (the emulator alone), ...
    let drill = ColdConfig { latency_min_us: 3000, latency_max_us: 30000, concurrency: 4, ..ColdConfig::default() };
    let mut v = Vec::new();
    let mut fid4_detail = String::new();
    for _ in 0..runs {
        let (f, d) = volume_fidelity(cluster, r, &drill, 4).await?;
        v.push(f);
        fid4_detail = d;
    }
    let fid4 = median(v);
    // ... and what InnoDB makes of it: four readers scanning, once.
    let (scan4, scan4_detail) = fidelity(cluster, r, &drill, 4, 1).await?;
    // The emulator's cost once warm, against plain storage.
    let mut warm_s = Vec::new();
    cold::make_cold(cluster, r, &serial, true).await?;
    scan(cluster, r).await?;
    for _ in 0..runs {
        cluster.restart_node(r).await?;
        warm_s.push(scan(cluster, r).await?);
    }
    let (pl, wa) = (median(plain), median(warm_s));
    cold::make_normal(cluster, r).await?;
    let overhead = wa / pl;
    let how = |readers: usize| {
        format!(
            "api.jobs (scale {scale}) scanned by {readers} reader(s) on primary-key ranges, MariaDB 10.11.18, innodb_use_native_aio=0, \
             O_DIRECT: (cold - warm) / predicted, where cold = a fresh restore and warm = the same volume once fetched, buffer \
             pool empty for both, and predicted = (InnoDB's own Innodb_data_read during the cold scan / block) x mean latency \
             / min(readers, fetches in flight): from outside the emulator; median of {runs}"
        )
    };
    Ok(vec![
        Figure {
            name: "first_touch_fidelity".into(),
            unit: "ratio".into(),
            ours: fid,
            peer: String::new(),
            peer_value: None,
            ratio: None,
            goal: "between 0.9 and 1.1".into(),
            goal_met: Some((0.9..=1.1).contains(&fid)),
            method: format!("3 ms per first touch, 1 in flight; {}; last run: {fid_detail}", how(1)),
        },
        Figure {
            name: "first_touch_fidelity_concurrent".into(),
            unit: "ratio".into(),
            ours: fid4,
            peer: String::new(),
            peer_value: None,
            ratio: None,
            goal: "between 0.9 and 1.1".into(),
            goal_met: Some((0.9..=1.1).contains(&fid4)),
            method: format!(
                "the drill's volume, 3-30 ms per first touch (spread by a hash of file and block), 4 in flight: the whole \
                 datadir of a replica read block by block by 4 threads (coldswap-volread) on a fresh restore with the server \
                 stopped, then again warm; (cold - warm) / (blocks from the files' sizes x mean latency / 4): from outside the \
                 emulator; median of {runs}; last run: {fid4_detail}"
            ),
        },
        Figure {
            name: "first_touch_scan_concurrency".into(),
            unit: "fetches in flight".into(),
            ours: 4.0 / scan4,
            peer: String::new(),
            peer_value: None,
            ratio: None,
            goal: "none (informational: how many of the volume's 4 fetches a server's scans keep busy)".into(),
            goal_met: None,
            method: format!(
                "{}; 4 / the fidelity ratio ({scan4:.2}): InnoDB's read-ahead threads read the pages of a block in order, so \
                 the readers of its other pages wait on one fetch (as on a lazily loaded volume); once: {scan4_detail}",
                how(4)
            ),
        },
        Figure {
            name: "first_touch_warm_overhead".into(),
            unit: "ratio".into(),
            ours: overhead,
            peer: "the same scan on plain storage (no emulator)".into(),
            peer_value: Some(pl),
            ratio: Some(overhead),
            goal: "<= 1.10 (the emulator costs nothing once warm)".into(),
            goal_met: Some(overhead <= 1.10),
            method: format!("median warm scan {wa:.3} s with the emulator over median plain scan {pl:.3} s, {runs} runs each"),
        },
    ])
}
