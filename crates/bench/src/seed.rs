//! seed_mib_per_s and seed_scale1_seconds: our seeding against
//! `sysbench oltp_common prepare` on the same primary, with replication on.

use anyhow::{bail, Context, Result};
use coldswap_db::{Cluster, UpOptions};
use coldswap_sql as sql;
use std::time::Instant;

use crate::Figure;

pub async fn run(scale: f64) -> Result<Vec<Figure>> {
    crate::which("sysbench")?;
    let dir = std::env::temp_dir().join(format!("coldswap-bench-seed-{}", std::process::id()));
    let mut opts = UpOptions::new(&dir, "mariadb-10.11.18");
    opts.buffer_pool_mb = 512;
    let (cluster, _) = Cluster::up(opts).await?;
    let r = measure(&cluster, scale).await;
    cluster.down(false).await?;
    r
}

async fn measure(cluster: &Cluster, scale: f64) -> Result<Vec<Figure>> {
    eprintln!("bench: seeding scale {scale} with coldswap ...");
    let t = Instant::now();
    let s = cluster.seed(scale, false, &|_| {}).await?;
    let total = t.elapsed().as_secs_f64();
    let ours_mib = s.bytes as f64 / 1048576.0;
    let ours_rate = ours_mib / s.seconds;
    eprintln!(
        "bench: coldswap seeded {} rows, {ours_mib:.0} MiB in {:.1} s on the primary ({ours_rate:.1} MiB/s); {total:.1} s until the replica caught up",
        s.rows, s.seconds
    );

    // sysbench, same row count, same server, same replication.
    let p = cluster.primary_index()?;
    let node = cluster.node(p);
    let sec = cluster.secrets();
    {
        let mut c = cluster.admin(p).await?;
        sql::exec(&mut c, "DROP DATABASE IF EXISTS sbtest").await?;
        sql::exec(&mut c, "CREATE DATABASE sbtest").await?;
        sql::close(c).await;
    }
    let rows = s.rows;
    eprintln!("bench: sysbench oltp_common prepare, {rows} rows ...");
    let t = Instant::now();
    let out = tokio::process::Command::new("sysbench")
        .arg("oltp_common")
        .arg(format!("--mysql-host={}", node.host))
        .arg(format!("--mysql-port={}", node.port))
        .arg(format!("--mysql-user={}", sec.admin_user))
        .arg(format!("--mysql-password={}", sec.admin_password))
        .arg("--mysql-db=sbtest")
        .arg("--tables=1")
        .arg(format!("--table-size={rows}"))
        .arg("--db-driver=mysql")
        .arg("prepare")
        .output()
        .await
        .context("cannot run sysbench")?;
    let peer_secs = t.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!("sysbench prepare failed: {}", String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or(""));
    }
    let mut c = cluster.admin(p).await?;
    let _ = sql::exec(&mut c, "ANALYZE TABLE sbtest.sbtest1").await;
    let peer_bytes = sql::query_i64(
        &mut c,
        "SELECT CAST(DATA_LENGTH + INDEX_LENGTH AS SIGNED) FROM information_schema.TABLES WHERE TABLE_SCHEMA='sbtest' AND TABLE_NAME='sbtest1'",
    )
    .await? as f64;
    sql::close(c).await;
    let peer_rate = peer_bytes / 1048576.0 / peer_secs;
    eprintln!("bench: sysbench prepared {:.0} MiB in {peer_secs:.1} s ({peer_rate:.1} MiB/s)", peer_bytes / 1048576.0);
    cluster.verify_replication(std::time::Duration::from_secs(1800)).await?;

    let ratio = ours_rate / peer_rate;
    let mut figs = vec![Figure {
        name: "seed_mib_per_s".into(),
        unit: "MiB/s".into(),
        ours: ours_rate,
        peer: format!("sysbench 1.0.20 oltp_common prepare, 1 table of {rows} rows"),
        peer_value: Some(peer_rate),
        ratio: Some(ratio),
        goal: "ratio >= 1.0".into(),
        goal_met: ratio >= 1.0,
        method: format!(
            "coldswap seed --scale {scale} ({rows} rows, {ours_mib:.0} MiB data+index) then sysbench prepare of the same row count, \
             one after the other on the same MariaDB 10.11.18 primary with its replica attached; MiB from information_schema \
             after ANALYZE, seconds until the primary returned"
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
            goal_met: total < 60.0,
            method: "coldswap seed --scale 1 into a fresh cluster, until the replica has caught up".into(),
        });
    }
    Ok(figs)
}
