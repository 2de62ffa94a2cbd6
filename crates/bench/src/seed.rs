//! seed_mib_per_s and seed_scale1_seconds: our seeding against
//! `sysbench oltp_common prepare`, each on a fresh cluster (replica
//! attached) under the same server settings, in alternating order.

use anyhow::{bail, Context, Result};
use coldswap_db::{Cluster, UpOptions};
use coldswap_sql as sql;
use std::time::Instant;

use crate::Figure;

/// The session settings coldswap's seeder uses, made the server's for
/// sysbench's sessions too: the ratio then measures the loaders, not the
/// settings.
const SETTINGS: &[&str] =
    &["SET GLOBAL binlog_format = 'STATEMENT'", "SET GLOBAL unique_checks = 0", "SET GLOBAL foreign_key_checks = 0"];

async fn fresh(tag: &str) -> Result<Cluster> {
    let dir = std::env::temp_dir().join(format!("coldswap-bench-seed-{tag}-{}", std::process::id()));
    let mut opts = UpOptions::new(&dir, "mariadb-10.11.18");
    opts.buffer_pool_mb = 512;
    Ok(Cluster::up(opts).await?.0)
}

/// Ours on a fresh cluster: (MiB/s on the primary, seconds until the
/// replica caught up, rows, MiB).
async fn ours(scale: f64) -> Result<(f64, f64, u64, f64)> {
    let cluster = fresh("ours").await?;
    let r = async {
        let t = Instant::now();
        let s = cluster.seed(scale, false, &|_| {}).await?;
        let total = t.elapsed().as_secs_f64();
        let mib = s.bytes as f64 / 1048576.0;
        eprintln!(
            "bench: coldswap seeded {} rows, {mib:.0} MiB in {:.1} s on the primary ({:.1} MiB/s); {total:.1} s until the replica caught up",
            s.rows,
            s.seconds,
            mib / s.seconds
        );
        anyhow::Ok((mib / s.seconds, total, s.rows, mib))
    }
    .await;
    cluster.down(false).await?;
    r
}

/// sysbench on a fresh cluster with the same settings: MiB/s on the primary.
async fn sysbench(rows: u64) -> Result<f64> {
    let cluster = fresh("sysbench").await?;
    let r = async {
        let p = cluster.primary_index()?;
        let node = cluster.node(p);
        let sec = cluster.secrets();
        {
            let mut c = cluster.admin(p).await?;
            sql::exec(&mut c, "CREATE DATABASE sbtest").await?;
            sql::exec_all(&mut c, &SETTINGS.iter().map(|s| s.to_string()).collect::<Vec<_>>()).await?;
            sql::close(c).await;
        }
        let secrets = crate::PrivateDir::new("seed")?;
        let cred = crate::load::sysbench_credentials(secrets.path(), &sec.admin_user, &sec.admin_password)?;
        eprintln!("bench: sysbench oltp_common prepare, {rows} rows ...");
        let t = Instant::now();
        let out = tokio::process::Command::new("sysbench")
            .arg("oltp_common")
            .arg(format!("--mysql-host={}", node.host))
            .arg(format!("--mysql-port={}", node.port))
            .arg(cred)
            .arg("--mysql-db=sbtest")
            .arg("--tables=1")
            .arg(format!("--table-size={rows}"))
            .arg("--db-driver=mysql")
            .arg("prepare")
            .output()
            .await
            .context("cannot run sysbench")?;
        let secs = t.elapsed().as_secs_f64();
        if !out.status.success() {
            bail!("sysbench prepare failed: {}", String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or(""));
        }
        let mut c = cluster.admin(p).await?;
        let _ = sql::exec(&mut c, "ANALYZE TABLE sbtest.sbtest1").await;
        let bytes = sql::query_i64(
            &mut c,
            "SELECT CAST(DATA_LENGTH + INDEX_LENGTH AS SIGNED) FROM information_schema.TABLES WHERE TABLE_SCHEMA='sbtest' AND TABLE_NAME='sbtest1'",
        )
        .await? as f64;
        sql::close(c).await;
        let rate = bytes / 1048576.0 / secs;
        eprintln!("bench: sysbench prepared {:.0} MiB in {secs:.1} s ({rate:.1} MiB/s)", bytes / 1048576.0);
        anyhow::Ok(rate)
    }
    .await;
    cluster.down(false).await?;
    r
}

/// Two rounds, the order alternating; the better of each side.
pub async fn run(scale: f64) -> Result<Vec<Figure>> {
    crate::which("sysbench")?;
    let rows = coldswap_dataset::Counts::at(scale).total();
    let (mut mine, mut peer) = (Vec::new(), Vec::new());
    for round in 0..2 {
        if round % 2 == 0 {
            mine.push(ours(scale).await?);
            peer.push(sysbench(rows).await?);
        } else {
            peer.push(sysbench(rows).await?);
            mine.push(ours(scale).await?);
        }
    }
    let ours_rate = mine.iter().map(|m| m.0).fold(f64::MIN, f64::max);
    let total = mine.iter().map(|m| m.1).fold(f64::MAX, f64::min);
    let mib = mine[0].3;
    let peer_rate = peer.iter().cloned().fold(f64::MIN, f64::max);
    let ratio = ours_rate / peer_rate;
    let mut figs = vec![Figure {
        name: "seed_mib_per_s".into(),
        unit: "MiB/s".into(),
        ours: ours_rate,
        peer: format!("sysbench 1.0.20 oltp_common prepare, 1 table of {rows} rows"),
        peer_value: Some(peer_rate),
        ratio: Some(ratio),
        goal: "ratio >= 1.0".into(),
        goal_met: Some(ratio >= 1.0),
        method: format!(
            "coldswap seed --scale {scale} ({rows} rows, {mib:.0} MiB data+index) and sysbench prepare of the same row count, \
             each into a fresh MariaDB 10.11.18 cluster (512 MiB buffer pool, replica attached), under the same settings \
             (binlog_format=STATEMENT, unique_checks=0, foreign_key_checks=0: the seeder's session settings, made global for \
             sysbench's sessions); 2 rounds, coldswap first in the first and sysbench first in the second, better of each; MiB \
             from information_schema after ANALYZE over seconds until the primary returned"
        ),
    }];
    if (scale - 1.0).abs() < 1e-9 {
        figs.push(Figure {
            name: "seed_scale1_seconds".into(),
            unit: "s".into(),
            ours: total,
            peer: String::new(),
            peer_value: None,
            ratio: None,
            goal: "< 60 s on a 2-core machine".into(),
            goal_met: Some(total < 60.0),
            method: "coldswap seed --scale 1 into a fresh cluster, until the replica has caught up; better of 2".into(),
        });
    }
    Ok(figs)
}
