//! `coldswap compare` and `coldswap report merge`.

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use coldswap_checker::compare::{self, Limits};
use coldswap_checker::Report;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct CompareArgs {
    /// The earlier (last good) report.json, or its directory.
    old: PathBuf,
    /// The new report.json, or its directory.
    new: PathBuf,
    /// Allowed p99 growth of a transaction, percent.
    #[arg(long, default_value_t = 25.0)]
    max_p99_increase_pct: f64,
    /// ...ignored below this many ms of growth.
    #[arg(long, default_value_t = 5.0)]
    min_p99_increase_ms: f64,
    /// Allowed error-rate growth, percentage points.
    #[arg(long, default_value_t = 1.0)]
    max_error_rate_increase_pts: f64,
    /// Phases to compare.
    #[arg(long, value_delimiter = ',', default_value = "baseline,cold,warm")]
    phases: Vec<String>,
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
pub enum ReportCmd {
    /// Merge load results of several shards (coldswap load --shard i/n --out FILE) exactly.
    Merge {
        /// Shard results (JSON from coldswap load --out).
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        /// Where the merged result goes.
        #[arg(long, short)]
        out: PathBuf,
    },
}

fn read_report(p: &Path) -> Result<Report> {
    let file = if p.is_dir() { p.join("report.json") } else { p.to_path_buf() };
    let text = std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not a coldswap report", file.display()))
}

pub fn compare(a: CompareArgs) -> Result<u8> {
    let old = read_report(&a.old)?;
    let new = read_report(&a.new)?;
    let limits = Limits {
        max_p99_increase_pct: a.max_p99_increase_pct,
        min_p99_increase_ms: a.min_p99_increase_ms,
        max_error_rate_increase_pts: a.max_error_rate_increase_pts,
        phases: a.phases,
        ..Default::default()
    };
    let c = compare::compare(&old, &new, &limits);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&c)?);
    } else {
        print!("{}", compare::table(&c));
    }
    let n = c.regressions.len() + c.newly_failing.len();
    if n > 0 {
        eprintln!(
            "coldswap: {n} regression(s): {}",
            c.regressions.iter().chain(c.newly_failing.iter()).cloned().collect::<Vec<_>>().join("; ")
        );
        return Ok(4);
    }
    Ok(0)
}

pub fn report(cmd: ReportCmd) -> Result<u8> {
    match cmd {
        ReportCmd::Merge { inputs, out } => {
            let mut results = Vec::new();
            for p in &inputs {
                let text = std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?;
                let r: coldswap_client::RunResult = serde_json::from_str(&text)
                    .with_context(|| format!("{} is not a coldswap load result", p.display()))?;
                results.push(r);
            }
            let m = coldswap_checker::merge::merge(&results)?;
            std::fs::write(&out, serde_json::to_string_pretty(&m)?)
                .with_context(|| format!("cannot write {}", out.display()))?;
            crate::load_cmd::print_result(&m);
            println!("merged {} shards into {}", inputs.len(), out.display());
            Ok(0)
        }
    }
}
