//! `coldswap version-diff`: what the new version changes apart from being
//! cold (plans, results, settings), on a primary and its upgraded replica.

use super::*;
use coldswap_checker::versions;
use std::time::{Duration, Instant};

#[derive(Args)]
pub struct VersionDiffArgs {
    #[command(flatten)]
    run: RunDirArg,
    /// Compare the primary and replica an external config names instead.
    #[arg(long)]
    external: Option<PathBuf>,
    /// With --external: allow servers off loopback.
    #[arg(long)]
    allow_remote: bool,
    /// The mix whose statements are compared.
    #[arg(long, default_value = "loadtests/api.toml")]
    mix: PathBuf,
    /// Parameter draws per read statement whose results are compared.
    #[arg(long, default_value_t = 20)]
    samples: usize,
    /// Exit 3 on a plan change too (by default only on a result difference).
    #[arg(long)]
    fail_on_plan_change: bool,
    #[arg(long)]
    json: bool,
}

/// Exits 0, or 3 when a statement's results differ (or, with
/// --fail-on-plan-change, its plan), or 1.
pub async fn run(a: VersionDiffArgs) -> Result<u8> {
    let mix = coldswap_client::run::load_mix(&a.mix)?;
    let d = match &a.external {
        Some(path) => {
            let ext = coldswap_db::external::External::load(path, a.allow_remote)?;
            ext.wait_caught_up(Instant::now() + Duration::from_secs(60))
                .await
                .map_err(|e| anyhow::anyhow!("the replica must hold the primary's data: {e:#}"))?;
            let (from, to) = (ext.options(false), ext.options(true));
            compare(&from, &from, &to, &mix, a.samples).await?
        }
        None => {
            let cluster = Cluster::open(&a.run.run_dir)?;
            let r = async {
                let (p, r) = (cluster.primary_index()?, cluster.replica_index()?);
                cluster
                    .verify_replication(Duration::from_secs(60))
                    .await
                    .map_err(|e| anyhow::anyhow!("the replica must hold the primary's data: {e}"))?;
                compare(&cluster.app_options(p), &cluster.admin_options(p), &cluster.admin_options(r), &mix, a.samples)
                    .await
            }
            .await;
            cluster.detach();
            r?
        }
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&d)?);
    } else {
        print!("{}", versions::render(&d));
    }
    let failed = d.result_differences > 0 || (a.fail_on_plan_change && d.plan_changes > 0);
    Ok(if failed { 3 } else { 0 })
}

async fn compare(
    app: &coldswap_sql::MySqlConnectOptions,
    from: &coldswap_sql::MySqlConnectOptions,
    to: &coldswap_sql::MySqlConnectOptions,
    mix: &coldswap_client::Mix,
    samples: usize,
) -> Result<versions::VersionDiff> {
    let counts = coldswap_client::run::check_against(mix, app).await?;
    let gens = coldswap_client::gen::Generators::new(mix.generators.clone(), counts, 0);
    signals::interruptible(versions::compare(from, to, mix, &gens, samples)).await
}
