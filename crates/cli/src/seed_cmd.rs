//! `coldswap seed`

use anyhow::Result;
use coldswap_db::Cluster;
use coldswap_signals as signals;
use std::io::IsTerminal;
use std::path::Path;

pub async fn run(run_dir: &Path, scale: f64, replace: bool, dataset: Option<&Path>, json: bool) -> Result<u8> {
    let shaped = match dataset {
        Some(d) => Some(coldswap_dataset::shaped::Shape::load(d)?),
        None => None,
    };
    let cluster = Cluster::open(run_dir)?;
    let total = match &shaped {
        Some((s, _)) => s.tables.iter().map(|t| coldswap_dataset::shaped::scaled(t.rows, scale)).sum(),
        None => coldswap_dataset::Counts::at(scale).total(),
    };
    let bar = if std::io::stderr().is_terminal() {
        let b = indicatif::ProgressBar::new(total);
        b.set_style(
            indicatif::ProgressStyle::with_template("seeding {bar:40} {pos}/{len} rows ({per_sec}, eta {eta})")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Some(b)
    } else {
        None
    };
    let b2 = bar.clone();
    let progress = move |done: u64| {
        if let Some(b) = &b2 {
            b.set_position(done);
        }
    };
    let r = match &shaped {
        Some((s, ddl)) => signals::interruptible(cluster.seed_shaped(s, ddl, scale, replace, &progress)).await,
        None => signals::interruptible(cluster.seed(scale, replace, &progress)).await,
    };
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    cluster.detach();
    let s = r?;
    if json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(0);
    }
    println!("seeded scale {} in {:.1} s", s.scale, s.seconds);
    println!("  {:<30} {:>10} {:>10} {:>8}", "table", "rows", "MiB", "s");
    for t in &s.tables {
        println!(
            "  {:<30} {:>10} {:>10.1} {:>8.2}",
            format!("{}.{}", t.database, t.table),
            t.rows,
            t.bytes as f64 / 1048576.0,
            t.seconds
        );
    }
    println!(
        "  {:<30} {:>10} {:>10.1} {:>8.2}   {:.0} rows/s, {:.1} MiB/s",
        "total",
        s.rows,
        s.bytes as f64 / 1048576.0,
        s.seconds,
        s.rows_per_s,
        s.mib_per_s
    );
    if let Some(c) = s.replica_catchup_seconds {
        println!("  replica caught up {c:.1} s after the primary finished");
    }
    Ok(0)
}
