//! `make bench`: coldswap's speed figures, each beside a peer where one
//! exists, measured in one run on the same servers, written to
//! target/bench/results.json (figures from earlier runs of other groups are
//! kept; a group measured now replaces its own).

use anyhow::{bail, Context, Result};
use clap::Parser;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

mod cold;
pub mod load;
mod seed;
mod soak;

#[derive(Parser)]
struct Args {
    /// Figure groups to measure (seed, load, cold; soak only when named);
    /// all but soak by default.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Where results.json goes.
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
    /// Scale for the seeding figures.
    #[arg(long, default_value_t = 1.0)]
    seed_scale: f64,
    /// Scale for the first-touch figures.
    #[arg(long, default_value_t = 0.5)]
    cold_scale: f64,
    /// Length of the soak (`--only soak`, `make soak`), minutes.
    #[arg(long, default_value_t = 30.0)]
    soak_minutes: f64,
}

/// A directory of the owner's only (mode 0700), removed on drop: where
/// credentials for peers (sysbench) are written.
pub struct PrivateDir(PathBuf);

impl PrivateDir {
    /// A fresh one under the system's temp dir.
    pub fn new(what: &str) -> Result<PrivateDir> {
        use std::os::unix::fs::DirBuilderExt;
        // Its own name: the benches' clusters live in coldswap-bench-<what>-<pid>.
        let p = std::env::temp_dir().join(format!("coldswap-bench-secrets-{what}-{}", std::process::id()));
        std::fs::DirBuilder::new().mode(0o700).create(&p).with_context(|| format!("cannot create {}", p.display()))?;
        Ok(PrivateDir(p))
    }

    /// Its path.
    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One figure, as the issues define it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Figure {
    /// The figure's name (a contract: target/bench/results.json).
    pub name: String,
    /// Its unit.
    pub unit: String,
    /// Our value.
    pub ours: f64,
    /// The peer measured beside us ("" when there is none).
    pub peer: String,
    /// The peer's value.
    pub peer_value: Option<f64>,
    /// ours / peer.
    pub ratio: Option<f64>,
    /// The goal, in words ("none" for an informational figure).
    pub goal: String,
    /// Whether the goal was met; None for a figure without a goal (it
    /// claims nothing).
    pub goal_met: Option<bool>,
    /// How it was measured (fixed before the result is seen).
    pub method: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Results {
    generated_at: String,
    machine: String,
    figures: Vec<Figure>,
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().next().map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_string()))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| kb / 1024 / 1024)
        .unwrap_or(0);
    format!("{cpus} cores, {mem} GiB")
}

fn now() -> String {
    let out = std::process::Command::new("date").arg("-u").arg("+%Y-%m-%dT%H:%M:%SZ").output();
    out.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()).unwrap_or_default()
}

fn write(out: &std::path::Path, new: Vec<Figure>) -> Result<()> {
    std::fs::create_dir_all(out)?;
    let path = out.join("results.json");
    let mut res: Results =
        std::fs::read_to_string(&path).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default();
    for f in new {
        res.figures.retain(|x| x.name != f.name);
        res.figures.push(f);
    }
    res.generated_at = now();
    res.machine = machine();
    std::fs::write(&path, serde_json::to_string_pretty(&res)?)?;
    println!("\n{:<32} {:>12} {:>12} {:>8}  goal", "figure", "ours", "peer", "ratio");
    for f in &res.figures {
        println!(
            "{:<32} {:>12.3} {:>12} {:>8}  {} [{}]",
            f.name,
            f.ours,
            f.peer_value.map(|v| format!("{v:.3}")).unwrap_or_else(|| "-".into()),
            f.ratio.map(|v| format!("{v:.3}")).unwrap_or_else(|| "-".into()),
            f.goal,
            match f.goal_met {
                Some(true) => "met",
                Some(false) => "NOT MET",
                None => "no goal",
            }
        );
    }
    println!("written to {}", path.display());
    Ok(())
}

pub fn which(cmd: &str) -> Result<()> {
    let ok = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {cmd}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        bail!("{cmd} is not installed (make bench installs it)");
    }
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("COLDSWAP_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let want = |g: &str| args.only.is_empty() || args.only.iter().any(|x| x == g);
    let mut figures = Vec::new();
    rt.block_on(async {
        coldswap_signals::install();
        if want("seed") {
            figures.extend(seed::run(args.seed_scale).await.context("seed figures")?);
        }
        if want("load") {
            let repo = std::env::current_dir()?;
            figures.extend(load::run(&repo).await.context("load figures")?);
        }
        if want("cold") {
            figures.extend(cold::run(args.cold_scale).await.context("first-touch figures")?);
        }
        // Half an hour: only when asked for (make soak).
        if args.only.iter().any(|x| x == "soak") {
            let repo = std::env::current_dir()?;
            figures.extend(soak::run(args.soak_minutes, &repo).await.context("soak figure")?);
        }
        anyhow::Ok(())
    })?;
    write(&args.out, figures)
}
