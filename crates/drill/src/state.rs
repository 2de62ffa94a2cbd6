//! What a drill carries from step to step, on any servers (coldswap's
//! cluster or the user's), and the steps both kinds of drill share: the
//! load's settings, lint and digest learning before the load.

use anyhow::Result;
use coldswap_checker::report::{Digest, Step, Switchover};
use coldswap_checker::{digests, lint};
use coldswap_client::run::{Load, LoadConfig, Model};
use coldswap_client::{Endpoint, Mix, Recorder};
use coldswap_db::Cluster;
use coldswap_signals as signals;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{DrillConfig, Durations};

/// The drill stopped itself on a finding (a replica that differs from its
/// primary is not promoted): a failed verdict, not a failure of the tool.
#[derive(Debug)]
pub struct Stopped(pub String);

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Stopped {}

pub(crate) struct State {
    pub(crate) cfg: DrillConfig,
    pub(crate) dur: Durations,
    pub(crate) mix: Mix,
    pub(crate) dir: PathBuf,
    pub(crate) started: Instant,
    pub(crate) started_at: String,
    pub(crate) cluster: Option<Cluster>,
    pub(crate) endpoint: Option<Arc<Endpoint>>,
    pub(crate) load: Option<Arc<Load>>,
    pub(crate) load_task: Option<tokio::task::JoinHandle<Result<()>>>,
    pub(crate) queue: Option<Arc<coldswap_client::queue::Queue>>,
    pub(crate) queue_task: Option<tokio::task::JoinHandle<()>>,
    pub(crate) checksum: Option<serde_json::Value>,
    pub(crate) recorder: Arc<Recorder>,
    /// The live status line (or lines).
    pub(crate) status: crate::status::Status,
    /// The Prometheus endpoint, when one was asked for.
    pub(crate) _metrics: Option<coldswap_client::metrics::Server>,
    pub(crate) steps: Vec<Step>,
    pub(crate) switchover: Switchover,
    pub(crate) digests: Vec<(String, Vec<Digest>)>,
    pub(crate) names: digests::Namer,
    /// (timeline t, share of the volume's blocks warm), each second from the cold restore.
    pub(crate) warm_share: Arc<std::sync::Mutex<Vec<(f64, f64)>>>,
    pub(crate) sampler: Option<tokio::task::JoinHandle<()>>,
    /// Bytes of the tables the mix touches, read before the load.
    pub(crate) dataset_bytes: Option<u64>,
    pub(crate) lint: Vec<coldswap_checker::report::Lint>,
    pub(crate) storage: serde_json::Value,
    pub(crate) warmup: serde_json::Value,
    /// The warm-up before the switchover (`warmup.before_switchover`).
    pub(crate) prewarm: serde_json::Value,
    /// What `coldswap gate` would have said before the switchover.
    pub(crate) gate: Option<coldswap_checker::gate::Gate>,
    pub(crate) kill: Option<(String, f64)>,
    pub(crate) from_version: String,
    pub(crate) flavor: String,
    pub(crate) to_version: String,
    pub(crate) backend: String,
    pub(crate) nodes: Vec<serde_json::Value>,
    pub(crate) invariants: serde_json::Value,
    /// The matrix's from-version cold cell: its volume's counters and warm-up.
    pub(crate) from_cold: serde_json::Value,
    /// The matrix's plans and settings of both versions.
    pub(crate) versions: Option<coldswap_checker::versions::VersionDiff>,
    /// The matrix's statement digests per cell (phase name).
    pub(crate) statements: std::collections::BTreeMap<String, Vec<digests::StatementSeries>>,
    /// Reading the digest table through the current matrix cell.
    pub(crate) digest_sampler: Option<DigestSampler>,
}

/// Readings of a server's digest table about once a second, from
/// [`DigestSampler::start`] to [`DigestSampler::finish`]: the samples of
/// the matrix's statement cells. A reading that fails (the server
/// restarting) is skipped and the connection made again; dropped, it stops.
pub(crate) struct DigestSampler {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Vec<digests::Totals>>,
}

impl DigestSampler {
    pub(crate) fn start(opts: sqlx::mysql::MySqlConnectOptions, schema: String) -> DigestSampler {
        let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let mut out = Vec::new();
            let mut conn: Option<sqlx::MySqlConnection> = None;
            let mut stopping = false;
            loop {
                if conn.is_none() {
                    conn = coldswap_sql::connect(&opts, Duration::from_secs(5)).await.ok();
                }
                if let Some(c) = conn.as_mut() {
                    match digests::totals(c, &[schema.as_str()]).await {
                        Ok(t) => out.push(t),
                        Err(_) => conn = None,
                    }
                }
                if stopping {
                    break;
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    // One last reading at the end of the cell.
                    _ = &mut rx => stopping = true,
                }
            }
            if let Some(c) = conn {
                coldswap_sql::close(c).await;
            }
            out
        });
        DigestSampler { stop: Some(tx), task }
    }

    /// The readings, the last one taken now.
    pub(crate) async fn finish(mut self) -> Vec<digests::Totals> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        (&mut self.task).await.unwrap_or_default()
    }
}

impl Drop for DigestSampler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub(crate) async fn sleep_or_signal(d: Duration) -> Result<()> {
    signals::interruptible(async {
        tokio::time::sleep(d).await;
        anyhow::Ok(())
    })
    .await
}

pub(crate) fn step(s: &mut Vec<Step>, name: &str, t: Instant) {
    s.push(Step { name: name.into(), seconds: t.elapsed().as_secs_f64() });
}

pub(crate) fn phase_log(name: &str, what: &str) {
    tracing::info!("phase {name}: {what}");
}

/// The load's settings from the drill's.
pub(crate) fn load_config(cfg: &DrillConfig) -> LoadConfig {
    LoadConfig {
        users: cfg.load.users,
        model: if cfg.load.rate > 0.0 {
            Model::Open { rate_per_s: cfg.load.rate }
        } else {
            Model::Closed { think_ms: cfg.load.think_ms }
        },
        hatch_rate: cfg.load.hatch_rate,
        duration: None,
        tier: cfg.api.clone(),
        background: cfg.load.background.clone(),
        shard: (0, 1),
        seed: cfg.load.seed,
    }
}

/// Before any load runs, on the primary: lint every statement (EXPLAIN),
/// size the mix's tables, and learn the server's own digest of every
/// statement the run sends, so its heaviest statements are tied to their
/// transactions whatever their shape.
pub(crate) async fn lint_and_learn(
    st: &mut State,
    admin: &sqlx::mysql::MySqlConnectOptions,
    app: &sqlx::mysql::MySqlConnectOptions,
) -> Result<()> {
    let cfg = &st.cfg;
    let ccfg = cfg.cold_config()?;
    let counts = coldswap_client::run::check_against(&st.mix, app).await?;
    let gens = coldswap_client::gen::Generators::new(st.mix.generators.clone(), counts, 0);
    let mut c = coldswap_sql::connect(admin, Duration::from_secs(10)).await?;
    coldswap_sql::exec(&mut c, &format!("USE `{}`", st.mix.database)).await?;
    st.lint = lint::lint(
        &mut c,
        &st.mix,
        &gens,
        lint::ColdModel {
            mean_latency_ms: ccfg.mean_latency_us() / 1000.0,
            block_bytes: ccfg.block_bytes(),
            concurrency: ccfg.concurrency,
        },
        cfg.load.background.as_deref(),
    )
    .await?;
    for l in st.lint.iter().filter(|l| l.full_scan && l.runs) {
        tracing::warn!(
            "lint: {} is a full scan of {} (est. {:.1} s on a cold volume)",
            l.transaction,
            l.scanned_tables.join(", "),
            l.est_cold_cost_ms / 1000.0
        );
    }
    st.dataset_bytes = dataset_bytes(&mut c, &st.mix).await;
    coldswap_sql::close(c).await;
    let probes = digest_probes(&st.mix, &gens, cfg.queue.enabled.then_some(&cfg.queue));
    let (learned, missed) = digests::learn(admin, &st.mix.database, &probes, cfg.api.protocol).await?;
    for m in &missed {
        tracing::info!("digest not learned, matched by text instead: {m}");
    }
    st.names = digests::Namer::new(learned, Some(st.mix.clone()));
    Ok(())
}

/// Every statement the run sends, with values drawn as the load draws
/// them: the mix's transactions and background jobs, and the queue
/// workload's statements when it runs.
pub(crate) fn digest_probes(
    mix: &coldswap_client::Mix,
    gens: &coldswap_client::gen::Generators,
    queue: Option<&coldswap_client::queue::QueueConfig>,
) -> Vec<digests::Probe> {
    let mut rng = coldswap_client::gen::Rng::new(7);
    let mut out = Vec::new();
    let all =
        mix.transactions.iter().map(|t| (&t.name, &t.steps)).chain(mix.background.iter().map(|b| (&b.name, &b.steps)));
    for (name, steps) in all {
        for s in steps {
            out.push(digests::Probe { name: name.clone(), stmt: s.clone(), vals: gens.draw(&mut rng, &s.params) });
        }
    }
    if let Some(q) = queue {
        let st = coldswap_client::queue::Statements::new(q);
        for (name, s, vals) in st.named() {
            out.push(digests::Probe { name: name.to_string(), stmt: s.clone(), vals });
        }
    }
    out
}

/// Bytes (data and indexes) of the tables the mix touches, as InnoDB
/// reports them; None where they cannot be read.
pub(crate) async fn dataset_bytes(c: &mut sqlx::MySqlConnection, mix: &Mix) -> Option<u64> {
    match lint::tables_bytes(c, &mix.tables()).await {
        Ok((total, _)) => (total > 0).then_some(total),
        Err(e) => {
            tracing::warn!("table sizes unreadable, no dataset size: {e:#}");
            None
        }
    }
}

/// The cold phase's wait: `dur.cold`, with the kill-switch (when one is
/// set) turning its target off `kill_at` into the phase. `cold_start` is
/// the phase's start on the recorder's clock.
pub(crate) async fn cold_phase_wait(st: &mut State, load: &Load, cold_start: f64) -> Result<()> {
    match (st.cfg.kill_switch.clone(), st.dur.kill_at) {
        (Some(k), Some(at)) => {
            sleep_or_signal(at).await?;
            load.controls().disable(&k.target);
            st.recorder.event("kill-switch", &k.target);
            st.kill = Some((k.target.clone(), cold_start + at.as_secs_f64()));
            tracing::warn!("kill-switch: {} turned off", k.target);
            sleep_or_signal(st.dur.cold - at).await
        }
        _ => sleep_or_signal(st.dur.cold).await,
    }
}
