//! `coldswap mix import`: production's statements as a mix file.

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use coldswap_capture::{slowlog::SlowLog, ImportOptions};
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum MixCmd {
    /// Write a mix from what production already records: one transaction
    /// per statement fingerprint, weighted by executions, generators drawn
    /// from the values seen, statements on a timer as background jobs.
    Import(ImportArgs),
}

#[derive(Args)]
pub struct ImportArgs {
    /// A MySQL or MariaDB slow query log (captured with long_query_time = 0).
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with = "performance_schema",
        required_unless_present = "performance_schema"
    )]
    slow_log: Option<PathBuf>,
    /// Read a live server's performance_schema instead (digest counts over
    /// --window, example statements from events_statements_history_long),
    /// through the servers file given with --config.
    #[arg(long, requires = "config")]
    performance_schema: bool,
    /// The servers file (as `coldswap external` reads it) naming the server
    /// to read and how to log in.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Which of its servers to read: primary or replica.
    #[arg(long, default_value = "primary", value_parser = ["primary", "replica"])]
    node: String,
    /// How long to watch the server.
    #[arg(long, default_value = "60s")]
    window: String,
    /// Switch events_statements_history_long on for the window if it is
    /// off (and off again after).
    #[arg(long)]
    enable_history: bool,
    /// Allow a server off loopback.
    #[arg(long)]
    allow_remote: bool,
    /// Write the mix here (default: stdout). An existing file is kept
    /// unless --force.
    #[arg(long, short)]
    out: Option<PathBuf>,
    /// Replace an existing --out file.
    #[arg(long)]
    force: bool,
    /// Keep the most frequent fingerprints until they cover this share of
    /// the replayable executions (or of their time, with --by time).
    #[arg(long, default_value = "95%", value_parser = parse_share)]
    cover: f64,
    /// Rank and cover by executions or by time.
    #[arg(long, default_value = "executions", value_parser = ["executions", "time"])]
    by: String,
    /// Keep at most this many transactions.
    #[arg(long)]
    top: Option<usize>,
    /// Keep INSERT, UPDATE, DELETE and REPLACE statements too (a drill then
    /// writes to the servers it runs on).
    #[arg(long)]
    include_writes: bool,
    /// The mix's database (default: the one most kept statements ran in).
    #[arg(long)]
    database: Option<String>,
    /// The mix's name (default: the output file's stem, else "imported").
    #[arg(long)]
    name: Option<String>,
    /// Most values listed per generator.
    #[arg(long, default_value_t = 256)]
    max_values: usize,
    /// API nodes that each run the jobs found on a timer (default: the
    /// fewest that fit the log, which shows a job's rate, not how many
    /// servers share it).
    #[arg(long)]
    api_nodes: Option<usize>,
}

/// `95%`, `95` or `0.95`.
fn parse_share(s: &str) -> std::result::Result<f64, String> {
    let t = s.trim();
    let (num, pct) = match t.strip_suffix('%') {
        Some(n) => (n.trim(), true),
        None => (t, false),
    };
    let v: f64 = num.parse().map_err(|_| format!("'{s}' is not a share (95% or 0.95)"))?;
    let v = if pct || v > 1.0 { v / 100.0 } else { v };
    if !(v > 0.0 && v <= 1.0) {
        return Err(format!("'{s}' is not a share above 0 % and up to 100 %"));
    }
    Ok(v)
}

pub async fn run(cmd: MixCmd) -> Result<u8> {
    let MixCmd::Import(a) = cmd;
    if let Some(o) = &a.out {
        if o.exists() && !a.force {
            bail!("{} exists: pass --force to replace it", o.display());
        }
    }
    if a.api_nodes == Some(0) {
        bail!("--api-nodes must be at least 1");
    }
    if a.max_values == 0 {
        bail!("--max-values must be at least 1");
    }
    let cap = match &a.slow_log {
        Some(path) => {
            let log = SlowLog::read(path)?;
            coldswap_capture::Capture::from_slow_log(&log, &path.display().to_string())
        }
        None => read_performance_schema(&a).await?,
    };
    let name = a
        .name
        .clone()
        .or_else(|| a.out.as_ref().and_then(|o| o.file_stem()).map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "imported".into());
    let opts = ImportOptions {
        cover: a.cover,
        by_time: a.by == "time",
        top: a.top,
        include_writes: a.include_writes,
        database: a.database.clone(),
        name,
        max_values: a.max_values,
        api_nodes: a.api_nodes,
    };
    let m = coldswap_capture::import(&cap, &opts)?;
    match &a.out {
        Some(o) => {
            if let Some(dir) = o.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
            }
            // Written whole, then moved into place: an interrupted import
            // leaves no half file.
            let tmp = o.with_extension("toml.tmp");
            std::fs::write(&tmp, &m.toml).with_context(|| format!("cannot write {}", tmp.display()))?;
            std::fs::rename(&tmp, o).with_context(|| format!("cannot write {}", o.display()))?;
        }
        None => print!("{}", m.toml),
    }
    eprintln!(
        "mix import: {} statements; {} transactions, {} background jobs{}",
        m.statements,
        m.transactions.len(),
        m.background.len(),
        a.out.as_ref().map(|o| format!(" -> {}", o.display())).unwrap_or_default()
    );
    for (name, _, p, k) in &m.background {
        eprintln!("  background {name}: every {p:.2} s on each of {k} sources");
    }
    for (why, n, _) in &m.left_out {
        eprintln!("  left out: {n} {why}");
    }
    Ok(0)
}

async fn read_performance_schema(a: &ImportArgs) -> Result<coldswap_capture::Capture> {
    let path = a.config.as_ref().expect("clap: --performance-schema requires --config");
    let window = coldswap_client::parse_duration(&a.window).with_context(|| format!("--window {}", a.window))?;
    if window.is_zero() {
        bail!("--window must be longer than 0 s");
    }
    let ext = coldswap_db::external::External::load(path, a.allow_remote)?;
    let replica = a.node == "replica";
    let o = ext.options(replica);
    let conn = coldswap_sql::connect(&o, std::time::Duration::from_secs(10))
        .await
        .with_context(|| format!("cannot connect to the {}", a.node))?;
    let mut reader = coldswap_capture::pfs::Reader::open(conn, &format!("the {}", a.node), a.enable_history).await?;
    eprintln!("mix import: watching the {}'s performance_schema for {:.0} s", a.node, window.as_secs_f64());
    let r = coldswap_signals::interruptible(reader.capture(window, &|_| {})).await;
    // Whatever happened, the consumer goes back as it was.
    let closed = reader.close().await;
    let cap = r?;
    closed?;
    Ok(cap)
}

#[cfg(test)]
mod tests {
    #[test]
    fn shares() {
        assert_eq!(super::parse_share("95%").unwrap(), 0.95);
        assert_eq!(super::parse_share("0.5").unwrap(), 0.5);
        assert_eq!(super::parse_share("100").unwrap(), 1.0);
        assert!(super::parse_share("0%").is_err());
        assert!(super::parse_share("150%").is_err());
        assert!(super::parse_share("x").is_err());
    }
}
