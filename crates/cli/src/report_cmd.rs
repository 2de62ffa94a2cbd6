//! `coldswap compare` and `coldswap report merge`.

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use coldswap_checker::compare::{self, Limits};
use coldswap_checker::Report;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct CompareArgs {
    /// Earlier good reports (report.json or their directories), oldest
    /// first, then the new one last. With several earlier runs, their own
    /// spread joins the measured between-run noise.
    #[arg(required = true, num_args = 2.., value_name = "REPORT")]
    reports: Vec<PathBuf>,
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
    /// Family-wise confidence that no delta is called by chance, percent.
    #[arg(long, default_value_t = 95.0)]
    confidence_pct: f64,
    /// Standard deviation of ln(p99) between drills of one build (the
    /// prior for the between-run noise; default measured, see the README).
    #[arg(long, default_value_t = compare::RUN_NOISE.0)]
    run_noise: f64,
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
    let mut reports = a.reports.iter().map(|p| read_report(p)).collect::<Result<Vec<_>>>()?;
    let new = reports.pop().expect("clap requires two reports");
    if !(50.0..100.0).contains(&a.confidence_pct) {
        anyhow::bail!("--confidence-pct must be at least 50 and under 100, not {}", a.confidence_pct);
    }
    if !(a.run_noise >= 0.0 && a.run_noise.is_finite()) {
        anyhow::bail!("--run-noise must be a standard deviation (0 or more), not {}", a.run_noise);
    }
    let limits = Limits {
        max_p99_increase_pct: a.max_p99_increase_pct,
        min_p99_increase_ms: a.min_p99_increase_ms,
        max_error_rate_increase_pts: a.max_error_rate_increase_pts,
        phases: a.phases,
        confidence_pct: a.confidence_pct,
        run_noise: a.run_noise,
        ..Default::default()
    };
    let c = compare::compare_many(&reports, &new, &limits);
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
