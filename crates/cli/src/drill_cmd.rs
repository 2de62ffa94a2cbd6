//! `coldswap drill`

use anyhow::{bail, Result};
use clap::Args;
use coldswap_drill::DrillConfig;
use std::path::PathBuf;

#[derive(Args)]
pub struct DrillArgs {
    /// The drill's settings (flags below override them). Give it more than
    /// once to drill several clusters in parallel (each config its own
    /// cluster and mix; the flags apply to all), with one index over their reports.
    #[arg(long = "config", default_value = "drill.toml")]
    configs: Vec<PathBuf>,
    #[arg(skip)]
    config: PathBuf,
    /// Reports go to OUT/<timestamp>/ (OUT/latest points at the newest).
    #[arg(long)]
    out: Option<PathBuf>,
    /// process, container, auto or external (servers you run, named by --external).
    #[arg(long)]
    backend: Option<String>,
    /// The servers you run (external.toml: primary, replica, credentials,
    /// hooks); implies --backend external.
    #[arg(long)]
    external: Option<PathBuf>,
    /// From-version (mariadb-10.11.18, a tarball dir) or, for containers, an image (name:tag).
    #[arg(long)]
    from: Option<String>,
    /// To-version or image.
    #[arg(long)]
    to: Option<String>,
    /// Dataset scale (1 = about 1 GiB).
    #[arg(long, allow_negative_numbers = true)]
    scale: Option<f64>,
    #[arg(long)]
    users: Option<usize>,
    /// Open model: requests per second.
    #[arg(long)]
    rate: Option<f64>,
    /// Mix file.
    #[arg(long)]
    mix: Option<PathBuf>,
    /// Background jobs to run ("none" for none).
    #[arg(long, value_delimiter = ',')]
    background: Option<Vec<String>>,
    /// API servers, each running the background jobs (overrides the mix's [api] nodes).
    #[arg(long)]
    api_nodes: Option<u32>,
    #[arg(long)]
    baseline: Option<String>,
    #[arg(long)]
    cold: Option<String>,
    #[arg(long)]
    warm: Option<String>,
    /// Progress while it runs: auto (a live line on a terminal, plain lines
    /// elsewhere), terminal, lines or off.
    #[arg(long)]
    status: Option<String>,
    /// Seconds between plain status lines (10).
    #[arg(long)]
    status_every_s: Option<u64>,
    /// Serve live counters and latency histograms for Prometheus on this
    /// address (127.0.0.1:9464): GET /metrics.
    #[arg(long)]
    metrics_listen: Option<String>,
    /// Project the time to warm to this size of the tables the mix touches
    /// (500GiB), or a multiple of the drill's (4x).
    #[arg(long)]
    project_size: Option<String>,
    /// The restored volume as a named case: lazy-restore, lazy-restore-hydrating,
    /// initialized or fast-restore (--latency and --storage-concurrency change one of its knobs).
    #[arg(long)]
    storage_profile: Option<String>,
    /// First-touch latency of the restored volume (1ms, 3ms..30ms).
    #[arg(long)]
    latency: Option<String>,
    /// First-touch fetches in flight at once on the restored volume.
    #[arg(long)]
    storage_concurrency: Option<u32>,
    /// none, buffer-pool, volume-read or prefetch.
    #[arg(long)]
    warmup: Option<String>,
    /// Turn a transaction or background job off during the cold phase: NAME@DURATION.
    #[arg(long)]
    kill_switch: Option<String>,
    #[arg(long)]
    buffer_pool_mb: Option<u32>,
    #[arg(long)]
    pool: Option<u32>,
    #[arg(long)]
    deadline_ms: Option<u64>,
    /// Project the time to warm to the size the mix's tables have on the
    /// primary an external config names (read from information_schema).
    #[arg(long, conflicts_with = "project_size")]
    project_size_from: Option<PathBuf>,
    /// With --project-size-from or --external: allow servers off loopback.
    #[arg(long)]
    allow_remote: bool,
    /// Leave the cluster running afterwards.
    #[arg(long)]
    keep: bool,
    /// Add the from-version cold cell and the matrix that tells the version
    /// effect from the cold effect ([matrix] enabled = true).
    #[arg(long)]
    matrix: bool,
    /// Promote the replica even when its checksums differ from the primary's
    /// (a what-if; by default the drill stops before the switchover, failed).
    #[arg(long)]
    promote_anyway: bool,
}

pub async fn run(mut a: DrillArgs) -> Result<u8> {
    if a.configs.len() > 1 {
        return crate::drill_set::run(&a.configs, a.out.clone()).await;
    }
    a.config = a.configs[0].clone();
    let config = a.config.clone();
    let from = a.project_size_from.clone();
    let allow_remote = a.allow_remote;
    let (mut cfg, text) = build_config(a)?;
    if let Some(path) = from {
        let bytes = external_table_bytes(&path, allow_remote, &cfg.mix()?).await?;
        eprintln!("projecting to {bytes} bytes: the mix's tables on the primary {} names", path.display());
        cfg.warmth.project_size = Some(bytes.to_string());
    }
    let source = text.as_deref().map(|t| (config.as_path(), t));
    let o = coldswap_drill::run(cfg, source).await?;
    print!("{}", coldswap_drill::summary(&o));
    if let Err(e) = coldswap_checker::github::publish(&o.report) {
        eprintln!("coldswap: {e:#}");
    }
    if let Some(e) = &o.error {
        eprintln!("coldswap: drill incomplete: {e}");
    }
    Ok(o.exit_code as u8)
}

/// Bytes (data and indexes) of the mix's tables on an external config's primary.
async fn external_table_bytes(path: &std::path::Path, allow_remote: bool, mix: &coldswap_client::Mix) -> Result<u64> {
    let ext = coldswap_db::external::External::load(path, allow_remote)?;
    let mut c = coldswap_sql::connect(&ext.options(false), std::time::Duration::from_secs(10))
        .await
        .map_err(|e| anyhow::anyhow!("--project-size-from: cannot reach the primary: {e:#}"))?;
    let tables = mix.tables();
    let (total, found) = coldswap_checker::lint::tables_bytes(&mut c, &tables).await?;
    coldswap_sql::close(c).await;
    if total == 0 {
        bail!(
            "--project-size-from: none of the mix's {} tables has a size on the primary {} names",
            tables.len(),
            path.display()
        );
    }
    tracing::info!("{found} of the mix's {} tables found on the external primary", tables.len());
    Ok(total)
}

/// drill.toml (or the defaults) with the flags applied.
fn build_config(a: DrillArgs) -> Result<(DrillConfig, Option<String>)> {
    let (mut cfg, text) = if a.config.exists() {
        let (c, t) = DrillConfig::load(&a.config)?;
        (c, Some(t))
    } else if a.config == std::path::Path::new("drill.toml") {
        (DrillConfig::default(), None)
    } else {
        bail!("config {} does not exist", a.config.display());
    };
    // A relative mix in a config file is relative to that file (then to here).
    if cfg.load.mix.is_relative() {
        if let Some(dir) = a.config.parent().filter(|_| text.is_some()) {
            let p = dir.join(&cfg.load.mix);
            if p.exists() {
                cfg.load.mix = p;
            }
        }
    }
    if let Some(p) = cfg.cluster.external.as_mut().filter(|p| p.is_relative()) {
        if let Some(dir) = a.config.parent().filter(|_| text.is_some()) {
            *p = dir.join(&p);
        }
    }
    if let Some(v) = a.out {
        cfg.out = v;
    }
    if let Some(v) = a.external {
        cfg.cluster.external = Some(v);
        cfg.cluster.backend = "external".into();
    }
    if let Some(v) = a.backend {
        cfg.cluster.backend = v;
    }
    if a.allow_remote {
        cfg.cluster.allow_remote = true;
    }
    // name:tag is an image (container backend); anything else a version or a tarball dir.
    if let Some(v) = a.from {
        if v.contains(':') {
            cfg.cluster.from_image = v
        } else {
            cfg.cluster.from = v
        }
    }
    if let Some(v) = a.to {
        if v.contains(':') {
            cfg.cluster.to_image = v
        } else {
            cfg.cluster.to = v
        }
    }
    if let Some(v) = a.scale {
        cfg.data.scale = v;
    }
    if let Some(v) = a.users {
        cfg.load.users = v;
    }
    if let Some(v) = a.rate {
        cfg.load.rate = v;
    }
    if let Some(v) = a.mix {
        cfg.load.mix = v;
    }
    if let Some(v) = a.background {
        cfg.load.background = Some(if v.iter().any(|x| x == "none") { vec![] } else { v });
    }
    if let Some(v) = a.api_nodes {
        cfg.load.api_nodes = Some(v);
    }
    if let Some(v) = a.baseline {
        cfg.phases.baseline = v;
    }
    if let Some(v) = a.cold {
        cfg.phases.cold = v;
    }
    if let Some(v) = a.warm {
        cfg.phases.warm = v;
    }
    if let Some(v) = a.status {
        cfg.status = v;
    }
    if let Some(v) = a.status_every_s {
        cfg.status_every_s = v;
    }
    if let Some(v) = a.metrics_listen {
        cfg.metrics_listen = Some(v);
    }
    if let Some(v) = a.project_size {
        cfg.warmth.project_size = Some(v);
    }
    if let Some(v) = a.storage_profile {
        cfg.storage.profile = Some(v);
    }
    if a.latency.is_some() || a.storage_concurrency.is_some() {
        cfg.storage.expand_profile()?;
    }
    if let Some(v) = a.latency {
        cfg.storage.latency = v;
    }
    if let Some(v) = a.storage_concurrency {
        cfg.storage.concurrency = v;
    }
    if let Some(v) = a.warmup {
        cfg.warmup.technique = v;
    }
    if let Some(v) = a.buffer_pool_mb {
        cfg.cluster.buffer_pool_mb = v;
    }
    if let Some(v) = a.pool {
        cfg.api.pool_size = v;
    }
    if let Some(v) = a.deadline_ms {
        cfg.api.deadline_ms = v;
    }
    if let Some(k) = a.kill_switch {
        let (t, at) = k.split_once('@').ok_or_else(|| {
            anyhow::anyhow!("invalid --kill-switch '{k}': expected NAME@DURATION, such as notify_schedules@60s")
        })?;
        cfg.kill_switch = Some(coldswap_drill::config::KillSwitchCfg { target: t.to_string(), at: at.to_string() });
    }
    if a.promote_anyway {
        cfg.checks.promote_anyway = true;
    }
    if a.keep {
        cfg.keep = true;
    }
    if a.matrix {
        cfg.matrix.enabled = true;
    }
    Ok((cfg, text))
}

#[derive(Args)]
pub struct CapacityArgs {
    #[command(flatten)]
    drill: DrillArgs,
    /// First arrival rate (requests/s).
    #[arg(long)]
    start_rate: Option<f64>,
    /// Each step multiplies the rate by this.
    #[arg(long)]
    step_factor: Option<f64>,
    #[arg(long)]
    max_steps: Option<usize>,
    /// Warm steps at most (up until the SLO breaks or the generator saturates).
    #[arg(long)]
    warm_max_steps: Option<usize>,
    /// Times since the switchover to search the cold capacity again, on
    /// one restore: 1m,5m,15m ("none" for the first step only).
    #[arg(long, value_delimiter = ',')]
    since_switchover: Option<Vec<String>>,
    /// How long each step runs (20s).
    #[arg(long)]
    step: Option<String>,
    /// SLO: p99 of API requests, in ms.
    #[arg(long)]
    slo_p99_ms: Option<f64>,
    /// SLO: error rate of API requests, in %.
    #[arg(long)]
    slo_error_pct: Option<f64>,
}

/// `coldswap capacity`: step the load up until the SLO breaks, warm and cold.
pub async fn capacity(mut a: CapacityArgs) -> Result<u8> {
    if a.drill.configs.len() > 1 {
        bail!("capacity takes one --config");
    }
    a.drill.config = a.drill.configs[0].clone();
    let out_given = a.drill.out.is_some();
    let (mut cfg, _) = build_config(a.drill)?;
    if !out_given {
        cfg.out = PathBuf::from("target/capacity");
    }
    let c = &mut cfg.capacity;
    if let Some(v) = a.start_rate {
        c.start_rate = v;
    }
    if let Some(v) = a.step_factor {
        c.step_factor = v;
    }
    if let Some(v) = a.max_steps {
        c.max_steps = v;
    }
    if let Some(v) = a.warm_max_steps {
        c.warm_max_steps = v;
    }
    if let Some(v) = a.since_switchover {
        c.since_switchover = if v.iter().any(|x| x == "none") { vec![] } else { v };
    }
    if let Some(v) = a.step {
        c.step = v;
    }
    if let Some(v) = a.slo_p99_ms {
        c.slo_p99_ms = v;
    }
    if let Some(v) = a.slo_error_pct {
        c.slo_error_pct = v;
    }
    let o = coldswap_drill::capacity::capacity(cfg).await?;
    println!("\n{}", o.report.summary);
    for k in [("warm", &o.report.knee.warm), ("cold", &o.report.knee.cold)] {
        match (k.1.first_failed_rate, k.1.stopped_by.as_str()) {
            (Some(f), _) => println!(
                "  {}: SLO met up to {:.0} req/s, broken at {f:.0} ({})",
                k.0,
                k.1.last_ok_rate,
                k.1.broken_by.join(", ")
            ),
            (None, "generator") => {
                println!("  {}: SLO met up to {:.0} req/s, then the load generator saturated", k.0, k.1.last_ok_rate)
            }
            (None, _) => println!("  {}: SLO met at every step, up to {:.0} req/s", k.0, k.1.last_ok_rate),
        }
    }
    for a in &o.report.cold_over_time {
        println!(
            "  cold {:>5.0} s after the switchover: {}{:.0} req/s",
            a.since_switchover_s,
            if a.at_least { ">= " } else { "" },
            a.capacity_per_s
        );
    }
    if let Some(g) = &o.report.generator_limit {
        println!("  load generator saturated: {g}");
    }
    println!("report: {}/capacity.html (and capacity.json, capacity.md)", o.dir.display());
    if let Some(e) = &o.error {
        eprintln!("coldswap: capacity incomplete: {e}");
    }
    Ok(o.exit_code as u8)
}

#[derive(Args)]
pub struct WarmupsArgs {
    #[command(flatten)]
    drill: DrillArgs,
    /// Techniques to run, in this order (all by default): none, buffer-pool-25,
    /// buffer-pool, volume-read, prefetch, hydration, no-penalty.
    #[arg(long, value_delimiter = ',')]
    techniques: Vec<String>,
    /// The background hydration rate of the `hydration` technique, MiB/s.
    #[arg(long, default_value_t = 300.0)]
    hydrate_mib_s: f64,
}

/// `coldswap warmups`: the promoted-cold scenario once per warm-up technique.
pub async fn warmups(mut a: WarmupsArgs) -> Result<u8> {
    if a.drill.configs.len() > 1 {
        bail!("warmups takes one --config");
    }
    a.drill.config = a.drill.configs[0].clone();
    let config = a.drill.config.clone();
    let out_given = a.drill.out.is_some();
    let (mut cfg, text) = build_config(a.drill)?;
    // Its own default place, unless the flag or the config file names one.
    if !out_given && cfg.out == DrillConfig::default().out {
        cfg.out = PathBuf::from("target/warmups");
    }
    let source = text.as_deref().map(|t| (config.as_path(), t));
    let o = coldswap_drill::warmups::warmups(cfg, source, &a.techniques, a.hydrate_mib_s).await?;
    println!("\n{}", coldswap_checker::warmups::markdown(&o.table));
    println!("report: {}/warmups.html (and warmups.json, warmups.md)", o.dir.display());
    Ok(o.exit_code as u8)
}
