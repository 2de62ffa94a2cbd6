//! `coldswap load`

use anyhow::{bail, Context, Result};
use clap::Args;
use coldswap_client::run::{Load, LoadConfig, Model};
use coldswap_client::{Endpoint, Recorder, RunResult, TierConfig};
use coldswap_db::Cluster;
use coldswap_signals as signals;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Args)]
pub struct LoadArgs {
    /// Mix file (loadtests/*.toml).
    #[arg(long)]
    mix: PathBuf,
    /// A cluster run dir (load goes through coldswap's endpoint to its
    /// primary, following promotions) or a host:port.
    #[arg(long, default_value = ".coldswap/cluster")]
    target: String,
    /// Concurrent users.
    #[arg(long, default_value_t = 16)]
    users: usize,
    /// How long to run (30s, 2m).
    #[arg(long, default_value = "30s")]
    duration: String,
    /// Open model: target arrival rate, requests/s (latency counted from each
    /// request's intended start). Closed model when absent.
    #[arg(long)]
    rate: Option<f64>,
    /// Closed model: think time between a user's requests, ms.
    #[arg(long, default_value_t = 0)]
    think_ms: u64,
    /// Users started per second (0: all at once).
    #[arg(long, default_value_t = 0.0)]
    hatch_rate: f64,
    /// API tier: pool connections shared by all users.
    #[arg(long, default_value_t = 32)]
    pool: u32,
    /// API tier: request deadline, ms.
    #[arg(long, default_value_t = 2000)]
    deadline_ms: u64,
    /// API tier: pool acquire timeout, ms.
    #[arg(long, default_value_t = 1000)]
    acquire_timeout_ms: u64,
    /// Client retries of failed requests.
    #[arg(long, default_value_t = 0)]
    retries: u32,
    /// text (values inline, as ORMs send them) or binary (prepared statements).
    #[arg(long, default_value = "text")]
    protocol: String,
    /// Background jobs to run (default: those enabled in the mix); "none" for none.
    #[arg(long, value_delimiter = ',')]
    background: Option<Vec<String>>,
    /// Progress while it runs: auto (a live line on a terminal, plain
    /// lines elsewhere), terminal, lines or off.
    #[arg(long, default_value = "auto")]
    status: String,
    /// Seconds between plain status lines.
    #[arg(long, default_value_t = 10)]
    status_every_s: u64,
    /// Serve live counters and latency histograms for Prometheus on this
    /// address (127.0.0.1:9464): GET /metrics.
    #[arg(long)]
    metrics_listen: Option<String>,
    /// host:port targets: the user to log in as.
    #[arg(long)]
    user: Option<String>,
    /// host:port targets: environment variable holding the password.
    #[arg(long, default_value = "COLDSWAP_PASSWORD")]
    password_env: String,
    /// Allow a target that is not on loopback.
    #[arg(long)]
    allow_remote: bool,
    /// This load machine's shard, i/n.
    #[arg(long, default_value = "0/1")]
    shard: String,
    /// Seed of the parameter generators.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    /// Also write the JSON result to this file.
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn parse_shard(s: &str) -> Result<(u32, u32)> {
    let (a, b) = s.split_once('/').ok_or_else(|| anyhow::anyhow!("invalid shard '{s}': expected i/n such as 0/4"))?;
    let a: u32 = a.trim().parse().map_err(|_| anyhow::anyhow!("invalid shard '{s}': expected i/n such as 0/4"))?;
    let b: u32 = b.trim().parse().map_err(|_| anyhow::anyhow!("invalid shard '{s}': expected i/n such as 0/4"))?;
    if b == 0 || a >= b {
        bail!("invalid shard '{s}': need 0 <= i < n");
    }
    Ok((a, b))
}

/// Resolve host:port and refuse non-loopback addresses without an opt-in.
pub fn check_remote(target: &str, allow_remote: bool) -> Result<SocketAddr> {
    let addr = target
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve target '{target}' (expected a cluster run dir or host:port)"))?
        .next()
        .ok_or_else(|| anyhow::anyhow!("target '{target}' resolves to no address"))?;
    if !addr.ip().is_loopback() && !allow_remote {
        bail!("target {target} ({}) is not on loopback; pass --allow-remote to send load to it", addr.ip());
    }
    Ok(addr)
}

/// Keep an endpoint pointed at a cluster's primary as promotions happen
/// (cluster.json is rewritten by `coldswap cluster promote`).
pub fn follow_cluster(endpoint: Arc<Endpoint>, run_dir: PathBuf) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if let Ok(c) = Cluster::open(&run_dir) {
                if let Ok(p) = c.primary() {
                    if let Ok(a) = format!("{}:{}", p.host, p.port).parse::<SocketAddr>() {
                        if a != endpoint.target() {
                            endpoint.swap(a, true);
                        }
                    }
                }
                c.detach();
            }
        }
    })
}

pub fn print_result(res: &RunResult) {
    for p in &res.phases {
        println!("phase {} ({:.1} s)", p.name, p.duration_s());
        println!(
            "  {:<22} {:>8} {:>8} {:>8} {:>9} {:>9} {:>9} {:>9}  errors",
            "transaction", "count", "ok/s", "err%", "p50 ms", "p95 ms", "p99 ms", "max ms"
        );
        for t in p.transactions.iter().chain(p.background.iter()) {
            let errs: Vec<String> = t.errors.iter().map(|(k, v)| format!("{k}={v}")).collect();
            println!(
                "  {:<22} {:>8} {:>8.1} {:>8.2} {:>9.2} {:>9.2} {:>9.2} {:>9.1}  {}",
                if t.kind == coldswap_client::stats::Kind::Background {
                    format!("[bg] {}", t.name)
                } else {
                    t.name.clone()
                },
                t.count,
                t.throughput_per_s,
                t.error_rate * 100.0,
                t.p50_ms,
                t.p95_ms,
                t.p99_ms,
                t.max_ms,
                errs.join(" ")
            );
        }
    }
}

pub async fn run(a: LoadArgs) -> Result<u8> {
    let mix = coldswap_client::run::load_mix(&a.mix)?;
    let duration = coldswap_client::parse_duration(&a.duration)?;
    if duration.is_zero() {
        bail!("duration must be positive");
    }
    let shard = parse_shard(&a.shard)?;
    let background = a.background.map(|v| if v.iter().any(|x| x == "none") { vec![] } else { v });
    let cfg = LoadConfig {
        users: a.users,
        model: match a.rate {
            Some(r) => Model::Open { rate_per_s: r },
            None => Model::Closed { think_ms: a.think_ms },
        },
        hatch_rate: a.hatch_rate,
        duration: Some(duration),
        tier: TierConfig {
            pool_size: a.pool,
            acquire_timeout_ms: a.acquire_timeout_ms,
            deadline_ms: a.deadline_ms,
            retries: a.retries,
            backoff_ms: 100,
            protocol: a.protocol.parse()?,
        },
        background,
        shard,
        seed: a.seed,
    };
    cfg.validate()?;
    let dir = PathBuf::from(&a.target);
    let (opts, endpoint, follower) = if dir.join("cluster.json").exists() {
        let cluster = Cluster::open(&dir)?;
        let p = cluster.primary()?;
        let target: SocketAddr = format!("{}:{}", p.host, p.port).parse()?;
        let ep = Arc::new(Endpoint::start(target).await.context("cannot start the endpoint")?);
        let s = cluster.secrets();
        let opts = coldswap_sql::tcp_options("127.0.0.1", ep.addr().port(), &s.app_user, &s.app_password);
        cluster.detach();
        let f = follow_cluster(ep.clone(), dir.clone());
        (opts, Some(ep), Some(f))
    } else {
        if a.target.contains('/') || !a.target.contains(':') {
            bail!("target '{}' is neither a cluster run dir (no cluster.json there) nor host:port", a.target);
        }
        let addr = check_remote(&a.target, a.allow_remote)?;
        let user = a.user.clone().ok_or_else(|| {
            anyhow::anyhow!("a host:port target needs --user (and the password in ${})", a.password_env)
        })?;
        let pw = std::env::var(&a.password_env).unwrap_or_default();
        (coldswap_sql::tcp_options(&addr.ip().to_string(), addr.port(), &user, &pw), None, None)
    };
    let recorder = Arc::new(Recorder::new());
    let load = Load::prepare(mix, opts, cfg, recorder.clone()).await?;
    recorder.phase("run");
    let mode = coldswap_drill::status::Mode::from_setting(&a.status, a.status_every_s)?;
    let planned = vec![("run".to_string(), duration.as_secs_f64())];
    let status = coldswap_drill::status::Status::start(mode, recorder.clone(), planned, None);
    let _metrics = match &a.metrics_listen {
        Some(addr) => {
            let src = coldswap_client::metrics::Source::default();
            src.set(recorder.clone());
            Some(coldswap_client::metrics::serve(addr, src).await?)
        }
        None => None,
    };
    let r = signals::interruptible(load.run()).await;
    drop(status);
    if let Some(f) = follower {
        f.abort();
    }
    drop(endpoint);
    let res = recorder.snapshot();
    if let Some(out) = &a.out {
        std::fs::write(out, serde_json::to_string_pretty(&res)?)
            .with_context(|| format!("cannot write {}", out.display()))?;
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&res)?);
    } else {
        print_result(&res);
    }
    r?;
    Ok(0)
}
