//! load_rss_growth_mib_per_hour (`make soak`): the load process's resident
//! memory over a long run of the drill's default mix at its default rate,
//! through the API tier and the swappable endpoint, as a drill sends it.
//!
//! Method (fixed before the first result): RSS of the whole process (the
//! load, the endpoint, the recorder with its per-second timeline) read from
//! /proc/self/statm every 10 s; the growth is the least-squares slope of
//! the samples after the first 5 minutes (allocator pools, connection
//! buffers and the API pool fill up first), in MiB per hour. A soak shorter
//! than 10 minutes fits its second half.

use anyhow::{bail, Result};
use coldswap_client::run::Load;
use coldswap_client::{Endpoint, Recorder};
use coldswap_db::{Cluster, UpOptions};
use coldswap_sql as sql;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::Figure;

use crate::load::{DRILL_POOL as POOL, DRILL_RATE as RATE, DRILL_USERS as USERS};
const SCALE: f64 = 0.1;
const EVERY: Duration = Duration::from_secs(10);

pub async fn run(minutes: f64, repo: &Path) -> Result<Vec<Figure>> {
    if minutes.is_nan() || minutes < 1.0 {
        bail!("--soak-minutes must be at least 1, not {minutes}");
    }
    let dir = std::env::temp_dir().join(format!("coldswap-bench-soak-{}", std::process::id()));
    let mut opts = UpOptions::new(&dir, "mariadb-10.11.18");
    opts.buffer_pool_mb = 256;
    let (mut cluster, _) = Cluster::up(opts).await?;
    let r = measure(&mut cluster, minutes, repo).await;
    cluster.down(false).await?;
    r
}

/// Resident memory of this process, MiB.
fn rss_mib() -> f64 {
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as f64;
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map(|p| p * page / (1024.0 * 1024.0))
        .unwrap_or(f64::NAN)
}

/// Least-squares slope of (t, y).
pub fn slope(pts: &[(f64, f64)]) -> Option<f64> {
    if pts.len() < 3 {
        return None;
    }
    let n = pts.len() as f64;
    let (mt, my) = (pts.iter().map(|p| p.0).sum::<f64>() / n, pts.iter().map(|p| p.1).sum::<f64>() / n);
    let sxx: f64 = pts.iter().map(|p| (p.0 - mt).powi(2)).sum();
    let sxy: f64 = pts.iter().map(|p| (p.0 - mt) * (p.1 - my)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

async fn measure(cluster: &mut Cluster, minutes: f64, repo: &Path) -> Result<Vec<Figure>> {
    eprintln!("bench: seeding scale {SCALE} for the soak ...");
    cluster.seed(SCALE, false, &|_| {}).await?;
    let p = cluster.primary_index()?;
    let node = cluster.node(p);
    let s = cluster.secrets();
    let ep = Endpoint::start(node.addr().parse()?).await?;
    let opts = sql::tcp_options("127.0.0.1", ep.addr().port(), &s.app_user, &s.app_password);
    let mix_path = repo.join("loadtests/api.toml");
    let mix = coldswap_client::run::load_mix(&mix_path)?;
    let rec = Arc::new(Recorder::new());
    let secs = (minutes * 60.0).round() as u64;
    let load = Load::prepare(mix, opts, crate::load::drill_load(secs), rec.clone()).await?;
    rec.phase("soak");
    eprintln!("bench: soak, {RATE} req/s of loadtests/api.toml for {minutes} min, RSS every {} s ...", EVERY.as_secs());
    let t0 = Instant::now();
    let samples = Arc::new(std::sync::Mutex::new(Vec::<(f64, f64)>::new()));
    let sampler = {
        let samples = samples.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(EVERY);
            loop {
                tick.tick().await;
                let (t, m) = (t0.elapsed().as_secs_f64(), rss_mib());
                let mut v = samples.lock().unwrap();
                if v.len().is_multiple_of(30) {
                    eprintln!("bench: soak {t:.0} s, RSS {m:.1} MiB");
                }
                v.push((t, m));
            }
        })
    };
    let res = load.run().await;
    sampler.abort();
    res?;
    let samples = samples.lock().unwrap().clone();
    let run = rec.snapshot();
    let ph = run.phase("soak");
    let (requests, failed) = ph.map(|p| p.total_requests()).unwrap_or((0, 0));
    if requests == 0 {
        bail!("the soak sent no requests");
    }
    let from = if secs >= 600 { 300.0 } else { secs as f64 / 2.0 };
    let fit: Vec<(f64, f64)> = samples.iter().filter(|p| p.0 >= from).map(|p| (p.0 / 3600.0, p.1)).collect();
    let Some(growth) = slope(&fit) else { bail!("too few RSS samples to fit ({})", fit.len()) };
    let (first, last) = (fit.first().map_or(f64::NAN, |p| p.1), fit.last().map_or(f64::NAN, |p| p.1));
    let peak = samples.iter().map(|p| p.1).fold(0.0, f64::max);
    eprintln!(
        "bench: soak RSS {first:.1} -> {last:.1} MiB after {from:.0} s, slope {growth:.2} MiB/h, {requests} requests"
    );
    Ok(vec![Figure {
        name: "load_rss_growth_mib_per_hour".into(),
        unit: "MiB/h".into(),
        ours: growth,
        peer: String::new(),
        peer_value: None,
        ratio: None,
        goal: "flat: under 5 MiB/h".into(),
        goal_met: Some(growth < 5.0),
        method: format!(
            "RSS of the load process every {} s over a {minutes} min soak: loadtests/api.toml (its default background jobs) \
             at {RATE} requests/s, open model, {USERS} users, {POOL} API connections, through the swappable endpoint, on a \
             MariaDB 10.11 primary seeded at scale {SCALE}; least-squares slope of the samples after {from:.0} s \
             ({first:.1} -> {last:.1} MiB, peak {peak:.1} MiB); {requests} requests, {failed} failed",
            EVERY.as_secs()
        ),
    }])
}

#[cfg(test)]
mod tests {
    #[test]
    fn slope_of_a_line() {
        let pts: Vec<(f64, f64)> = (0..10).map(|i| (i as f64, 3.0 + 2.0 * i as f64)).collect();
        assert!((super::slope(&pts).unwrap() - 2.0).abs() < 1e-9);
        assert!(super::slope(&pts[..2]).is_none());
    }
}
