//! `coldswap gate`: GO or NO-GO for promoting a cluster's replica now.

use super::*;
use coldswap_checker::gate::{self, Check, GateCfg};
use coldswap_sql::MySqlConnectOptions;
use std::time::Duration;

#[derive(Args)]
pub struct GateArgs {
    #[command(flatten)]
    run: RunDirArg,
    /// Gate the primary and replica an external config names (external.toml)
    /// instead of a cluster coldswap started.
    #[arg(long)]
    external: Option<PathBuf>,
    /// With --external: allow servers off loopback.
    #[arg(long)]
    allow_remote: bool,
    /// The mix the promoted node will serve: lint (EXPLAIN) its statements
    /// for full scans. Without it, the primary's own digest table is read.
    #[arg(long)]
    mix: Option<PathBuf>,
    /// Background jobs of the mix that run ("none" for none; default: the mix's own).
    #[arg(long, value_delimiter = ',')]
    background: Option<Vec<String>>,
    /// Replication lag allowed, seconds.
    #[arg(long, default_value_t = 5.0)]
    max_lag_s: f64,
    /// Share of the primary's hot set the replica's buffer pool must hold, percent.
    #[arg(long, default_value_t = 80.0)]
    min_hot_coverage_pct: f64,
    /// Largest buffer pool whose pages the coverage check reads, MiB
    /// (reading InnoDB's buffer page table walks the whole pool).
    #[arg(long, default_value_t = 16384)]
    max_pool_mib: u64,
    /// Digest-table statements count as full scans from this many rows examined per run.
    #[arg(long, default_value_t = 1000)]
    scan_min_rows: u64,
    /// ... among statements run at least this many times.
    #[arg(long, default_value_t = 10)]
    scan_min_runs: u64,
    #[arg(long)]
    json: bool,
}

pub async fn run(a: GateArgs) -> Result<u8> {
    if !(a.max_lag_s >= 0.0 && a.max_lag_s.is_finite()) {
        anyhow::bail!("--max-lag-s: a number of seconds, not {}", a.max_lag_s);
    }
    if !(0.0..=100.0).contains(&a.min_hot_coverage_pct) {
        anyhow::bail!("--min-hot-coverage-pct: from 0 to 100, not {}", a.min_hot_coverage_pct);
    }
    let cfg = GateCfg {
        max_lag_s: a.max_lag_s,
        min_hot_coverage_pct: a.min_hot_coverage_pct,
        max_pool_mib: a.max_pool_mib,
        scan_min_rows: a.scan_min_rows,
        scan_min_runs: a.scan_min_runs,
    };
    let mix = match &a.mix {
        Some(m) => Some(coldswap_client::run::load_mix(m)?),
        None => None,
    };
    let background: Option<Vec<String>> = a.background.map(|v| if v.iter().any(|x| x == "none") { vec![] } else { v });
    if let (Some(m), Some(bg)) = (&mix, &background) {
        for b in bg {
            if !m.background.iter().any(|x| &x.name == b) {
                anyhow::bail!("--background: '{b}' is not a background job of the mix");
            }
        }
    }
    let result = match &a.external {
        Some(path) => {
            let ext = coldswap_db::external::External::load(path, a.allow_remote)?;
            let (p, r) = (ext.options(false), ext.options(true));
            signals::interruptible(checks(&p, &p, &r, mix.as_ref(), background.as_deref(), &cfg)).await
        }
        None => {
            let cluster = Cluster::open(&a.run.run_dir)?;
            let (pi, ri) = (cluster.primary_index()?, cluster.replica_index()?);
            let (app, p, r) = (cluster.app_options(pi), cluster.admin_options(pi), cluster.admin_options(ri));
            let result = signals::interruptible(checks(&app, &p, &r, mix.as_ref(), background.as_deref(), &cfg)).await;
            cluster.detach();
            result
        }
    };
    let g = result?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&g)?);
    } else {
        println!("{}", g.verdict);
        for c in &g.checks {
            let mark = match (c.checked, c.passed) {
                (true, true) => "pass",
                (true, false) => "FAIL",
                (false, _) => "NOT CHECKED",
            };
            println!("  {:<18} {:<11} {}", c.name, mark, c.detail);
        }
    }
    Ok(if g.go { 0 } else { gate::NO_GO_EXIT })
}

async fn checks(
    app: &MySqlConnectOptions,
    primary: &MySqlConnectOptions,
    replica: &MySqlConnectOptions,
    mix: Option<&coldswap_client::Mix>,
    background: Option<&[String]>,
    cfg: &GateCfg,
) -> Result<gate::Gate> {
    // Full scans: lint of the mix, or the primary's digest table.
    let scans = match mix {
        Some(m) => match lint(app, primary, m, background).await {
            Ok(l) => gate::scans_from_lint(&l),
            Err(e) => Check::not_checked("full_scans", format!("{e:#}")),
        },
        None => match coldswap_sql::connect(primary, Duration::from_secs(10)).await {
            Ok(mut c) => {
                let ch = gate::scans_from_digests(&mut c, cfg).await;
                coldswap_sql::close(c).await;
                ch
            }
            Err(e) => Check::not_checked("full_scans", format!("cannot reach the primary: {e:#}")),
        },
    };
    // Hot-set coverage over the mix's tables (or every user table).
    let tables = mix.map(|m| m.tables());
    Ok(gate::on_servers(primary, replica, scans, tables.as_deref(), cfg).await)
}

/// lint of the mix on the primary, as the drill runs it before its load.
async fn lint(
    app: &MySqlConnectOptions,
    primary: &MySqlConnectOptions,
    mix: &coldswap_client::Mix,
    background: Option<&[String]>,
) -> Result<Vec<coldswap_checker::report::Lint>> {
    let counts = coldswap_client::run::check_against(mix, app).await?;
    let gens = coldswap_client::gen::Generators::new(mix.generators.clone(), counts, 0);
    let mut c = coldswap_sql::connect(primary, Duration::from_secs(10)).await?;
    coldswap_sql::exec(&mut c, &format!("USE `{}`", mix.database)).await?;
    let cold = coldswap_nemesis::ColdConfig::default();
    let l = coldswap_checker::lint::lint(
        &mut c,
        mix,
        &gens,
        coldswap_checker::lint::ColdModel {
            mean_latency_ms: cold.mean_latency_us() / 1000.0,
            block_bytes: cold.block_bytes(),
            concurrency: cold.concurrency,
        },
        background,
    )
    .await;
    coldswap_sql::close(c).await;
    l
}
