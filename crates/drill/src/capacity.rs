//! `coldswap capacity`: how much load the database carries within the SLO
//! warm, and how much on a freshly restored (cold) volume.
//!
//! The load (open model: an arrival rate) is stepped up until the SLO breaks
//! (p99 of the API's requests, or their error rate), once warm and once cold.
//! Before each cold step the primary restarts on a fresh restore (every
//! block cold) with an empty buffer pool, so each cold step starts where a
//! promotion would. The highest rate that met the SLO in each state is its
//! capacity; cold/warm is the fraction of the warm capacity a cold switchover
//! leaves, and the headroom the warm database needs to survive one.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use coldswap_client::run::{Load, LoadConfig, Model};
use coldswap_client::stats::{decode_hist, PhaseResult, Recorder};
use coldswap_db::{BackendKind, Cluster, UpOptions};
use coldswap_nemesis::cold;
use coldswap_signals as signals;

use crate::config::DrillConfig;

/// One step of the search: a state at one arrival rate.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StepResult {
    /// `warm` or `cold`.
    pub state: String,
    /// Target arrival rate (requests/s).
    pub rate: f64,
    /// Requests completed per second (ok or not).
    pub achieved_per_s: f64,
    /// API requests of the step.
    pub requests: u64,
    /// Of them, failed.
    pub errors: u64,
    /// Failed, percent.
    pub error_pct: f64,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Whether both p99 and errors were within the SLO.
    pub met_slo: bool,
    /// Seconds from the restore (the switchover) to the step's start, for
    /// cold steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since_switchover_s: Option<f64>,
    /// The checkpoint (time since the switchover, s) a "cold-later" step
    /// searched for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_s: Option<u64>,
    /// 99th percentile of how late the generator's sends left their
    /// schedule, ms (a generator short of CPU sends late).
    #[serde(default)]
    pub send_late_p99_ms: f64,
    /// The load process's CPU, percent of one core.
    #[serde(default)]
    pub generator_cpu_pct: f64,
    /// The host's CPU busy, percent of all its cores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_busy_pct: Option<f64>,
    /// The generator could not deliver the rate: its sends left late, or
    /// it sent too few while the database met the SLO. Such a step says
    /// nothing about the database.
    #[serde(default)]
    pub generator_saturated: bool,
}

/// Where the SLO broke in one state.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Knee {
    /// Highest rate that met the SLO (0 when the first step already broke it).
    pub last_ok_rate: f64,
    /// First rate that broke it (None: never broke within max_steps).
    pub first_failed_rate: Option<f64>,
    /// What broke: "p99" or "errors" (or both).
    pub broken_by: Vec<String>,
    /// Why the search stopped: "slo" (the knee was found), "generator"
    /// (the load generator saturated before the SLO broke: the capacity is
    /// a lower bound) or "step_limit" (neither within the steps allowed).
    #[serde(default)]
    pub stopped_by: String,
}

/// What `coldswap capacity` writes (capacity.json).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CapacityReport {
    /// False when interrupted or failed part-way.
    pub complete: bool,
    /// When the search started (UTC).
    pub started_at: String,
    /// `process` or `container`.
    pub backend: String,
    /// The server version searched.
    pub version: String,
    /// The SLO the steps were held to.
    pub slo: Slo,
    /// Every step, in order.
    pub steps: Vec<StepResult>,
    /// Highest warm rate that met the SLO, requests/s.
    pub warm_capacity: f64,
    /// Highest cold rate that met the SLO, requests/s.
    pub cold_capacity: f64,
    /// cold_capacity / warm_capacity.
    pub ratio: Option<f64>,
    /// Share of the warm capacity that must stay unused to survive a cold
    /// switchover at peak: 1 - ratio, in percent.
    pub headroom_pct: Option<f64>,
    /// Where the SLO broke, each state.
    pub knee: KneeBoth,
    /// Cold capacity against time since the switchover: at 0 (each step on
    /// a fresh restore), then at each checkpoint of one restore.
    #[serde(default)]
    pub cold_over_time: Vec<CapacityAt>,
    /// When the load generator saturated before the warm SLO broke: its
    /// own figures at that step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator_limit: Option<String>,
    /// One line a planner can quote.
    pub summary: String,
}

/// The cold capacity at one time since the switchover.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CapacityAt {
    /// Seconds from the restore to the first step of this checkpoint.
    pub since_switchover_s: f64,
    /// Highest rate that met the SLO, requests/s (0: none did).
    pub capacity_per_s: f64,
    /// True when every step tried met the SLO: the capacity is at least this.
    pub at_least: bool,
    /// Share of the warm capacity, percent.
    pub of_warm_pct: Option<f64>,
    /// How the figure was found.
    pub method: String,
}

/// The service-level objective of a capacity search.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Slo {
    /// p99 of all API requests at most, ms.
    pub p99_ms: f64,
    /// Errors at most, percent.
    pub error_pct: f64,
}

/// The knee of each state.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct KneeBoth {
    /// Warm.
    pub warm: Knee,
    /// Cold (each step on a fresh restore).
    pub cold: Knee,
}

/// p50/p99 over all API transactions of a phase (merged HDR histograms) and
/// its request and error counts.
pub fn phase_totals(p: &PhaseResult) -> (u64, u64, f64, f64) {
    let (n, e) = p.total_requests();
    let mut merged: Option<hdrhistogram::Histogram<u64>> = None;
    for t in &p.transactions {
        if let Some(h) = decode_hist(&t.histogram) {
            match merged.as_mut() {
                Some(m) => {
                    let _ = m.add(&h);
                }
                None => merged = Some(h),
            }
        }
    }
    let (p50, p99) = match merged {
        Some(h) if !h.is_empty() => {
            (h.value_at_quantile(0.50) as f64 / 1000.0, h.value_at_quantile(0.99) as f64 / 1000.0)
        }
        _ => (0.0, 0.0),
    };
    (n, e, p50, p99)
}

/// The knee of one state's steps: the highest rate that met the SLO and
/// the lowest rate above it that broke it (steps may go up or down). Steps
/// the generator could not deliver count for neither.
pub fn knee(steps: &[&StepResult], slo: &Slo) -> Knee {
    let valid = || steps.iter().filter(|s| !s.generator_saturated);
    let last_ok = valid().filter(|s| s.met_slo).map(|s| s.rate).fold(0.0, f64::max);
    let failed = valid().filter(|s| !s.met_slo && s.rate > last_ok).min_by(|a, b| a.rate.total_cmp(&b.rate));
    let saturated = steps.iter().filter(|s| s.generator_saturated && s.rate > last_ok).map(|s| s.rate).reduce(f64::min);
    let stopped_by = match (failed, saturated) {
        (_, Some(g)) if failed.is_none_or(|f| g <= f.rate) => "generator",
        (Some(_), _) => "slo",
        _ => "step_limit",
    };
    let mut why = Vec::new();
    if let (Some(s), "slo") = (failed, stopped_by) {
        if s.p99_ms > slo.p99_ms {
            why.push("p99".to_string());
        }
        if s.error_pct > slo.error_pct || s.requests == 0 {
            why.push("errors".to_string());
        }
    }
    Knee {
        last_ok_rate: last_ok,
        first_failed_rate: if stopped_by == "slo" { failed.map(|s| s.rate) } else { None },
        broken_by: why,
        stopped_by: stopped_by.to_string(),
    }
}

/// Whether a step's load was the generator's limit rather than the
/// database's: sends late by more than a tenth of the SLO's p99 (at least
/// 10 ms; tokio's timer alone is 1-2 ms late), or fewer than 85 % of the
/// requests sent while the database met the SLO.
pub fn generator_saturated(rate: f64, achieved: f64, send_late_p99_ms: f64, met_slo: bool, slo: &Slo) -> bool {
    send_late_p99_ms > (slo.p99_ms * 0.1).max(10.0) || (met_slo && achieved < 0.85 * rate)
}

/// Capacities, ratio and headroom from the steps.
pub fn conclude(steps: &[StepResult], slo: &Slo) -> (f64, f64, Option<f64>, Option<f64>, KneeBoth) {
    let of = |state: &str| steps.iter().filter(|s| s.state == state).collect::<Vec<_>>();
    let kw = knee(&of("warm"), slo);
    let kc = knee(&of("cold"), slo);
    let (w, c) = (kw.last_ok_rate, kc.last_ok_rate);
    let ratio = if w > 0.0 { Some(c / w) } else { None };
    let headroom = ratio.map(|r| ((1.0 - r) * 100.0).max(0.0));
    (w, c, ratio, headroom, KneeBoth { warm: kw, cold: kc })
}

/// A finished (or interrupted) capacity search.
pub struct CapacityOutcome {
    /// The report.
    pub report: CapacityReport,
    /// Where it was written.
    pub dir: PathBuf,
    /// 0 done, 1 failed, 130/143 interrupted.
    pub exit_code: i32,
    /// Why it stopped, when it failed.
    pub error: Option<String>,
}

/// Run the capacity search with a drill config's cluster, data, storage,
/// mix and API tier, and its `[capacity]` section.
pub async fn capacity(cfg: DrillConfig) -> Result<CapacityOutcome> {
    cfg.validate(None)?;
    let step_d = cfg.capacity.validate()?;
    let mix = cfg.mix()?;
    coldswap_db::cluster::sweep_stale();
    let (dir, started_at) = crate::out::make_out_dir(&cfg.out)?;
    let backend = crate::run::backend_for(&cfg).await?;
    let slo = Slo { p99_ms: cfg.capacity.slo_p99_ms, error_pct: cfg.capacity.slo_error_pct };
    let mut steps: Vec<StepResult> = Vec::new();
    let mut cluster: Option<Cluster> = None;
    let mut version = String::new();
    let body = search(&cfg, step_d, &mix, backend, &dir, &slo, &mut steps, &mut cluster, &mut version).await;
    if let Some(c) = cluster.take() {
        if let Err(e) = c.down(false).await {
            tracing::warn!("teardown: {e:#}");
        }
    }
    let interrupted = signals::received();
    let (w, c, ratio, headroom, knee) = conclude(&steps, &slo);
    let complete = body.is_ok() && interrupted.is_none();
    let step_s = step_d.as_secs_f64();
    let cold_over_time = over_time(&steps, &slo, w, step_s);
    let generator_limit = generator_limit(&steps);
    let at_least = |k: &Knee| if k.stopped_by != "slo" { "at least " } else { "" };
    let summary = match ratio {
        Some(r) => {
            let mut s = format!(
                "warm capacity {}{w:.0} req/s, cold {}{c:.0} req/s ({:.0}% of warm): keep {:.0}% headroom at peak to survive a cold switchover (SLO p99 <= {:.0} ms, errors <= {:.1}%, steps of {})",
                at_least(&knee.warm),
                at_least(&knee.cold),
                r * 100.0,
                headroom.unwrap_or(0.0),
                slo.p99_ms,
                slo.error_pct,
                cfg.capacity.step
            );
            if cold_over_time.len() > 1 {
                let later: Vec<String> = cold_over_time[1..]
                    .iter()
                    .map(|a| {
                        format!(
                            "{}{:.0} req/s at {}",
                            if a.at_least { ">=" } else { "" },
                            a.capacity_per_s,
                            age(a.since_switchover_s)
                        )
                    })
                    .collect();
                let _ = write!(s, "; cold capacity later: {}", later.join(", "));
            }
            if knee.warm.stopped_by == "generator" {
                s.push_str(
                    "; the load generator saturated before the warm SLO broke, so the warm figure is a lower bound",
                );
            }
            s
        }
        None => format!("the warm database did not meet the SLO even at {:.0} req/s", cfg.capacity.start_rate),
    };
    let report = CapacityReport {
        complete,
        started_at,
        backend: backend.to_string(),
        version,
        slo,
        steps,
        warm_capacity: w,
        cold_capacity: c,
        ratio,
        headroom_pct: headroom,
        knee,
        cold_over_time,
        generator_limit,
        summary,
    };
    write_reports(&report, &dir)?;
    let exit_code = match (interrupted, &body) {
        (Some(sig), _) => signals::exit_code(sig),
        (None, Err(_)) => 1,
        (None, Ok(())) => 0,
    };
    Ok(CapacityOutcome { report, dir, exit_code, error: body.err().map(|e| format!("{e:#}").replace('\n', " ")) })
}

/// What every step of a search shares.
struct Stepper<'a> {
    cfg: &'a DrillConfig,
    mix: &'a coldswap_client::Mix,
    host: String,
    port: u16,
    secrets: coldswap_db::Secrets,
    slo: Slo,
    /// The Prometheus endpoint's recorder, swapped at each step.
    metrics: Option<coldswap_client::metrics::Source>,
}

impl Stepper<'_> {
    /// Run the load at `rate` for `d` and measure it; `since`: the restore
    /// the step's age counts from.
    async fn step(&self, rate: f64, state: &str, d: Duration, since: Option<std::time::Instant>) -> Result<StepResult> {
        let app = coldswap_sql::tcp_options(&self.host, self.port, &self.secrets.app_user, &self.secrets.app_password);
        let rec = Arc::new(Recorder::new());
        rec.phase(state);
        if let Some(m) = &self.metrics {
            m.set(rec.clone());
        }
        let lcfg = LoadConfig {
            users: self.cfg.load.users,
            model: Model::Open { rate_per_s: rate },
            hatch_rate: 0.0,
            duration: Some(d),
            tier: self.cfg.api.clone(),
            background: self.cfg.load.background.clone(),
            shard: (0, 1),
            seed: self.cfg.load.seed,
        };
        let age = since.map(|t| t.elapsed().as_secs_f64());
        let load = Load::prepare(self.mix.clone(), app, lcfg, rec.clone()).await?;
        let mode = crate::status::Mode::from_setting(&self.cfg.status, self.cfg.status_every_s)?;
        let _status = crate::status::Status::start(mode, rec.clone(), vec![(state.to_string(), d.as_secs_f64())], None);
        let meter = coldswap_client::cpu::Meter::start();
        signals::interruptible(load.run()).await?;
        let usage = meter.read();
        let (_, late) = rec.take_send_lateness();
        let snap = rec.snapshot();
        let ph = snap.phase(state).cloned().context("no results for the step")?;
        let (n, e, p50, p99) = phase_totals(&ph);
        let error_pct = if n == 0 { 100.0 } else { e as f64 * 100.0 / n as f64 };
        let achieved = n as f64 / ph.duration_s().max(1e-9);
        let met_slo = n > 0 && p99 <= self.slo.p99_ms && error_pct <= self.slo.error_pct;
        Ok(StepResult {
            state: state.to_string(),
            rate,
            achieved_per_s: achieved,
            requests: n,
            errors: e,
            error_pct,
            p50_ms: p50,
            p99_ms: p99,
            met_slo,
            since_switchover_s: age,
            checkpoint_s: None,
            send_late_p99_ms: late,
            generator_cpu_pct: usage.process_pct,
            host_busy_pct: usage.host_busy_pct,
            generator_saturated: generator_saturated(rate, achieved, late, met_slo, &self.slo),
        })
    }
}

/// The rates a search tries after a first step at `rate`: up by the
/// factor while the SLO holds; when the first step already breaks it,
/// down (divided by the factor) until it holds.
fn next_rate(first: &StepResult, last: &StepResult, factor: f64) -> Option<f64> {
    let down = !first.met_slo;
    match (down, last.met_slo) {
        (false, true) => Some((last.rate * factor).round()),
        (true, false) if last.rate / factor >= 1.0 => Some((last.rate / factor).round()),
        _ => None,
    }
}

#[allow(clippy::too_many_arguments)]
async fn search(
    cfg: &DrillConfig,
    step_d: Duration,
    mix: &coldswap_client::Mix,
    backend: BackendKind,
    dir: &Path,
    slo: &Slo,
    steps: &mut Vec<StepResult>,
    cluster_slot: &mut Option<Cluster>,
    version: &mut String,
) -> Result<()> {
    let (from_v, _) = cfg.cluster.versions_for(backend);
    let mut up = UpOptions::new(dir.join("cluster"), &from_v);
    up.backend = backend;
    up.buffer_pool_mb = cfg.cluster.buffer_pool_mb;
    tracing::info!("capacity: starting {from_v} on the {backend} backend, scale {}", cfg.data.scale);
    let (c, _) = signals::interruptible(Cluster::up(up)).await?;
    *cluster_slot = Some(c);
    let cluster = cluster_slot.as_mut().unwrap();
    signals::interruptible(cluster.seed(cfg.data.scale, false, &|_| {})).await?;
    if let Some((shape, ddl)) = cfg.data.shaped()? {
        signals::interruptible(cluster.seed_shaped(&shape, &ddl, cfg.data.dataset_scale, false, &|_| {})).await?;
    }
    let p = cluster.primary_index()?;
    *version = cluster.node(p).version_string.clone();
    let ccfg = cfg.cold_config()?;
    let caps = &cfg.capacity;
    let source = coldswap_client::metrics::Source::default();
    let _server = match &cfg.metrics_listen {
        Some(a) => {
            let m = coldswap_client::metrics::serve(a, source.clone()).await?;
            tracing::info!("metrics: http://{}/metrics", m.addr);
            Some(m)
        }
        None => None,
    };
    let st = Stepper {
        metrics: cfg.metrics_listen.as_ref().map(|_| source.clone()),
        cfg,
        mix,
        host: cluster.node(p).host.clone(),
        port: cluster.node(p).port,
        secrets: cluster.secrets().clone(),
        slo: slo.clone(),
    };
    // Warm: one unrecorded step at the first rate brings the buffer pool to
    // its steady state, then up by the factor until the SLO breaks or the
    // generator cannot deliver the rate (then the capacity is a lower bound).
    tracing::info!("capacity: warming up at {:.0} req/s for {} s", caps.start_rate, step_d.as_secs());
    st.step(caps.start_rate, "warmup", step_d, None).await?;
    let mut rate = caps.start_rate;
    for _ in 0..caps.warm_max_steps {
        let r = st.step(rate, "warm", step_d, None).await?;
        log_step(&r, slo);
        let go_on = r.met_slo && !r.generator_saturated;
        steps.push(r);
        if !go_on {
            break;
        }
        rate = (rate * caps.step_factor).round();
    }
    // Cold at the switchover: every step on a fresh restore with an empty
    // buffer pool, so each measures the first step after a promotion.
    let mut first: Option<StepResult> = None;
    let mut rate = Some(caps.start_rate);
    let mut n = 0;
    while let Some(r0) = rate {
        if n >= caps.max_steps {
            break;
        }
        n += 1;
        {
            let cluster = cluster_slot.as_mut().unwrap();
            cold::make_cold(cluster, p, &ccfg, true).await.context("restarting the primary on a fresh restore")?;
        }
        let t0 = std::time::Instant::now();
        let r = st.step(r0, "cold", step_d, Some(t0)).await?;
        log_step(&r, slo);
        let f = first.get_or_insert_with(|| r.clone());
        rate = if r.generator_saturated { None } else { next_rate(f, &r, caps.step_factor) };
        steps.push(r);
    }
    // Cold over time: one more restore; between checkpoints the load runs
    // at the highest rate that last met the SLO (what a team shedding load
    // to the cold capacity would serve); at each checkpoint the search
    // starts from that rate.
    let checkpoints = caps.checkpoints()?;
    if checkpoints.is_empty() {
        return Ok(());
    }
    let cold0 = knee(&steps.iter().filter(|s| s.state == "cold").collect::<Vec<_>>(), slo).last_ok_rate;
    let lowest = steps.iter().filter(|s| s.state == "cold").map(|s| s.rate).fold(caps.start_rate, f64::min);
    let mut held = if cold0 > 0.0 { cold0 } else { lowest };
    {
        let cluster = cluster_slot.as_mut().unwrap();
        cold::make_cold(cluster, p, &ccfg, true).await.context("restarting the primary on a fresh restore")?;
    }
    let t0 = std::time::Instant::now();
    for at in checkpoints {
        let age = t0.elapsed();
        if age + Duration::from_millis(500) < at {
            tracing::info!("capacity: cold, serving {held:.0} req/s until {} s after the restore", at.as_secs());
            st.step(held, "cold-fill", at - age, Some(t0)).await?;
        }
        let mut first: Option<StepResult> = None;
        let mut rate = Some(held);
        let mut n = 0;
        while let Some(r0) = rate {
            if n >= caps.max_steps {
                break;
            }
            n += 1;
            let mut r = st.step(r0, "cold-later", step_d, Some(t0)).await?;
            r.checkpoint_s = Some(at.as_secs());
            log_step(&r, slo);
            let f = first.get_or_insert_with(|| r.clone());
            rate = if r.generator_saturated { None } else { next_rate(f, &r, caps.step_factor) };
            if r.met_slo && !r.generator_saturated {
                held = r.rate;
            }
            steps.push(r);
        }
    }
    Ok(())
}

/// "45 s", "5 min".
fn age(s: f64) -> String {
    if s >= 120.0 {
        format!("{:.0} min", s / 60.0)
    } else {
        format!("{s:.0} s")
    }
}

/// The generator's own figures at the first step it could not deliver.
pub fn generator_limit(steps: &[StepResult]) -> Option<String> {
    let s = steps.iter().find(|s| s.generator_saturated)?;
    Some(format!(
        "{} at {:.0} req/s: {:.0} req/s sent, sends p99 {:.1} ms behind schedule, the generator at {:.0}% of a core, the host {} busy; a load generator on another host would go further",
        s.state,
        s.rate,
        s.achieved_per_s,
        s.send_late_p99_ms,
        s.generator_cpu_pct,
        s.host_busy_pct.map(|b| format!("{b:.0}%")).unwrap_or_else(|| "?".into())
    ))
}

/// Cold capacity at each time since the switchover, from the steps.
pub fn over_time(steps: &[StepResult], slo: &Slo, warm: f64, step_s: f64) -> Vec<CapacityAt> {
    let of_warm = |c: f64| if warm > 0.0 { Some(c * 100.0 / warm) } else { None };
    let mut out = Vec::new();
    let cold: Vec<&StepResult> = steps.iter().filter(|s| s.state == "cold").collect();
    if !cold.is_empty() {
        let k = knee(&cold, slo);
        out.push(CapacityAt {
            since_switchover_s: 0.0,
            capacity_per_s: k.last_ok_rate,
            at_least: k.stopped_by != "slo",
            of_warm_pct: of_warm(k.last_ok_rate),
            method: format!("each step of {step_s:.0} s on a fresh restore"),
        });
    }
    // The later checkpoints, in order.
    let mut groups: Vec<Vec<&StepResult>> = Vec::new();
    for s in steps.iter().filter(|s| s.state == "cold-later") {
        match groups.last_mut() {
            Some(g) if g[0].checkpoint_s == s.checkpoint_s => g.push(s),
            _ => groups.push(vec![s]),
        }
    }
    for g in groups {
        let k = knee(&g, slo);
        out.push(CapacityAt {
            since_switchover_s: g[0].since_switchover_s.unwrap_or(0.0),
            capacity_per_s: k.last_ok_rate,
            at_least: k.stopped_by != "slo",
            of_warm_pct: of_warm(k.last_ok_rate),
            method: format!(
                "one restore; the load served the last rate that held until this checkpoint, then steps of {step_s:.0} s"
            ),
        });
    }
    out
}

fn log_step(r: &StepResult, slo: &Slo) {
    tracing::info!(
        "capacity: {} at {:.0} req/s: p99 {:.1} ms (SLO {:.0}), errors {:.2}% (SLO {:.1}%): {}",
        r.state,
        r.rate,
        r.p99_ms,
        slo.p99_ms,
        r.error_pct,
        slo.error_pct,
        if r.met_slo { "met" } else { "BROKEN" }
    );
}

fn write_reports(r: &CapacityReport, dir: &Path) -> Result<()> {
    std::fs::write(dir.join("capacity.json"), serde_json::to_string_pretty(r)?)?;
    std::fs::write(dir.join("capacity.md"), markdown(r))?;
    std::fs::write(dir.join("capacity.html"), html(r))?;
    Ok(())
}

/// capacity.md.
pub fn markdown(r: &CapacityReport) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# coldswap capacity\n\n{}\n", r.summary);
    if !r.complete {
        let _ = writeln!(s, "**Incomplete run**: the search stopped early.\n");
    }
    if let Some(g) = &r.generator_limit {
        let _ = writeln!(s, "**Load generator saturated**: {g}.\n");
    }
    if !r.cold_over_time.is_empty() {
        let _ = writeln!(
            s,
            "## Cold capacity since the switchover\n\n| since switchover | capacity req/s | of warm | how |\n|---|---|---|---|"
        );
        for a in &r.cold_over_time {
            let _ = writeln!(s, "| {} |", at_cells(a).join(" | "));
        }
        s.push('\n');
    }
    let _ = writeln!(s, "## Steps\n\n| {} |\n|{}", COLUMNS.join(" | "), "---|".repeat(COLUMNS.len()));
    for x in &r.steps {
        let _ = writeln!(s, "| {} |", cells(x).join(" | "));
    }
    s
}

fn at_cells(a: &CapacityAt) -> [String; 4] {
    [
        age(a.since_switchover_s),
        format!("{}{:.0}", if a.at_least { ">= " } else { "" }, a.capacity_per_s),
        a.of_warm_pct.map(|p| format!("{p:.0}%")).unwrap_or_else(|| "-".into()),
        a.method.clone(),
    ]
}

/// The steps table's columns, and one step's cells (markdown and HTML alike).
const COLUMNS: [&str; 11] = [
    "state",
    "since switchover s",
    "rate/s",
    "achieved/s",
    "requests",
    "errors %",
    "p50 ms",
    "p99 ms",
    "SLO",
    "sends late p99 ms",
    "generator CPU %",
];

fn cells(x: &StepResult) -> [String; 11] {
    [
        x.state.clone(),
        x.since_switchover_s.map(|a| format!("{a:.0}")).unwrap_or_else(|| "-".into()),
        format!("{:.0}", x.rate),
        format!("{:.0}", x.achieved_per_s),
        x.requests.to_string(),
        format!("{:.2}", x.error_pct),
        format!("{:.1}", x.p50_ms),
        format!("{:.1}", x.p99_ms),
        (if x.generator_saturated {
            "generator saturated"
        } else if x.met_slo {
            "met"
        } else {
            "broken"
        })
        .to_string(),
        format!("{:.1}", x.send_late_p99_ms),
        format!("{:.0}", x.generator_cpu_pct),
    ]
}

/// A horizontal grid line at `y` across the plot, labelled on the left.
fn grid_line(s: &mut String, ml: f64, pw: f64, y: f64, label: &str) {
    let _ = write!(
        s,
        r#"<line x1="{ml}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" class="grid"/><text x="{:.1}" y="{:.1}" class="tick" text-anchor="end">{label}</text>"#,
        ml + pw,
        ml - 4.0,
        y + 3.0
    );
}

/// Cold capacity against time since the switchover, with the warm capacity.
fn over_time_chart(r: &CapacityReport) -> String {
    let pts = &r.cold_over_time;
    let (w, h, ml, mr, mt, mb) = (760.0, 240.0, 64.0, 90.0, 24.0, 34.0);
    let (pw, ph) = (w - ml - mr, h - mt - mb);
    let tmax = pts.iter().map(|a| a.since_switchover_s).fold(1.0, f64::max) * 1.05;
    let vmax = pts.iter().map(|a| a.capacity_per_s).fold(r.warm_capacity, f64::max).max(1.0) * 1.1;
    let x = |t: f64| ml + t / tmax * pw;
    let y = |v: f64| mt + ph - v / vmax * ph;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg viewBox="0 0 {w} {h}" xmlns="http://www.w3.org/2000/svg" role="img" aria-label="cold capacity since the switchover"><text x="{ml}" y="15" class="title">cold capacity (req/s within the SLO) against time since the switchover (s)</text>"#
    );
    for i in 0..=4 {
        let v = vmax * i as f64 / 4.0;
        grid_line(&mut s, ml, pw, y(v), &format!("{v:.0}"));
    }
    for a in pts {
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{:.1}" class="tick" text-anchor="middle">{:.0}</text>"#,
            x(a.since_switchover_s),
            mt + ph + 14.0,
            a.since_switchover_s
        );
    }
    let _ = write!(
        s,
        r##"<line x1="{ml}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="#2b6cb0" stroke-dasharray="5,4"/><text x="{:.1}" y="{:.1}" class="tick" fill="#2b6cb0">warm {}{:.0}</text>"##,
        ml + pw,
        y(r.warm_capacity),
        y(r.warm_capacity),
        ml + pw + 4.0,
        y(r.warm_capacity) + 3.0,
        if r.knee.warm.stopped_by != "slo" { ">=" } else { "" },
        r.warm_capacity
    );
    let mut d = String::new();
    for (i, a) in pts.iter().enumerate() {
        let _ =
            write!(d, "{}{:.1},{:.1}", if i == 0 { "M" } else { " L" }, x(a.since_switchover_s), y(a.capacity_per_s));
    }
    let _ = write!(s, r##"<path d="{d}" fill="none" stroke="#c05621" stroke-width="2"/>"##);
    for a in pts {
        let _ = write!(
            s,
            r##"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="{}" stroke="#c05621"/>"##,
            x(a.since_switchover_s),
            y(a.capacity_per_s),
            if a.at_least { "white" } else { "#c05621" }
        );
    }
    s.push_str("</svg>");
    s
}

/// p99 and error rate against load, warm and cold, with the SLO line.
fn chart(r: &CapacityReport, title: &str, unit: &str, value: fn(&StepResult) -> f64, slo: f64, log: bool) -> String {
    let (w, h, ml, mr, mt, mb) = (760.0, 260.0, 64.0, 90.0, 24.0, 34.0);
    let (pw, ph) = (w - ml - mr, h - mt - mb);
    let rmin = r.steps.iter().map(|s| s.rate).fold(f64::INFINITY, f64::min).max(1.0);
    let rmax = r.steps.iter().map(|s| s.rate).fold(1.0, f64::max).max(rmin * 1.01);
    let vmax_raw = r.steps.iter().map(value).fold(slo, f64::max);
    let (vmin, vmax) =
        if log { (0.1_f64, 10f64.powf(vmax_raw.max(1.0).log10().ceil())) } else { (0.0, (vmax_raw * 1.1).max(1.0)) };
    let x = |rate: f64| ml + (rate.ln() - rmin.ln()) / (rmax.ln() - rmin.ln()) * pw;
    let y = |v: f64| {
        if log {
            mt + ph - (v.max(vmin).log10() - vmin.log10()) / (vmax.log10() - vmin.log10()) * ph
        } else {
            mt + ph - (v - vmin) / (vmax - vmin) * ph
        }
    };
    let mut s = String::new();
    let _ =
        write!(s, r#"<svg viewBox="0 0 {w} {h}" xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{title}">"#);
    let _ = write!(
        s,
        r#"<text x="{ml}" y="15" class="title">{title} ({unit}) against arrival rate (req/s, log scale)</text>"#
    );
    let ticks: Vec<f64> = if log {
        let mut v = vec![];
        let mut t = vmin;
        while t <= vmax * 1.0001 {
            v.push(t);
            t *= 10.0;
        }
        v
    } else {
        (0..=4).map(|i| vmax * i as f64 / 4.0).collect()
    };
    for t in ticks {
        let label = if t >= 10.0 || t == 0.0 {
            format!("{t:.0}")
        } else {
            format!("{t:.2}").trim_end_matches('0').trim_end_matches('.').to_string()
        };
        grid_line(&mut s, ml, pw, y(t), &label);
    }
    let mut rates: Vec<f64> = r.steps.iter().map(|s| s.rate).collect();
    rates.sort_by(|a, b| a.total_cmp(b));
    rates.dedup();
    for rt in rates {
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{:.1}" class="tick" text-anchor="middle">{rt:.0}</text>"#,
            x(rt),
            mt + ph + 14.0
        );
    }
    let _ = write!(
        s,
        r##"<line x1="{ml}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="#b00" stroke-dasharray="5,4"/><text x="{:.1}" y="{:.1}" class="tick">SLO {slo}</text>"##,
        ml + pw,
        y(slo),
        y(slo),
        ml + pw + 4.0,
        y(slo) + 3.0
    );
    for (state, color) in [("warm", "#2b6cb0"), ("cold", "#c05621")] {
        let mut pts: Vec<&StepResult> = r.steps.iter().filter(|s| s.state == state).collect();
        pts.sort_by(|a, b| a.rate.total_cmp(&b.rate));
        if pts.is_empty() {
            continue;
        }
        let mut d = String::new();
        for (i, p) in pts.iter().enumerate() {
            let _ = write!(d, "{}{:.1},{:.1}", if i == 0 { "M" } else { " L" }, x(p.rate), y(value(p)));
        }
        let _ = write!(s, r#"<path d="{d}" fill="none" stroke="{color}" stroke-width="2"/>"#);
        for p in &pts {
            let _ = write!(
                s,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="{}" stroke="{color}"/>"#,
                x(p.rate),
                y(value(p)),
                if p.met_slo { color } else { "white" }
            );
        }
        let last = pts.last().unwrap();
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{:.1}" class="tick" fill="{color}">{state}</text>"#,
            x(last.rate) + 6.0,
            y(value(last)) - 4.0
        );
    }
    s.push_str("</svg>");
    s
}

/// capacity.html: a self-contained page (inline SVG).
pub fn html(r: &CapacityReport) -> String {
    let esc = coldswap_checker::render::esc;
    let mut s = String::new();
    let _ = write!(
        s,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>coldswap capacity</title><style>\
         body{{font:14px system-ui,sans-serif;margin:24px;max-width:980px;color:#222}}\
         .title{{font:bold 12px system-ui}} .tick{{font:11px system-ui;fill:#555}} .grid{{stroke:#e5e5e5}}\
         table{{border-collapse:collapse}} td,th{{padding:3px 10px;border-bottom:1px solid #eee;text-align:right}}\
         .verdict{{font-size:17px;padding:10px;background:#f6f6f6;border-left:4px solid #c05621}}</style></head><body>"
    );
    let _ = write!(s, "<h1>coldswap capacity</h1><p class=\"verdict\">{}</p>", esc(&r.summary));
    if !r.complete {
        s.push_str("<p><b>Incomplete run</b>: the search stopped early.</p>");
    }
    let _ = write!(
        s,
        "<p>{} on the {} backend. Filled points met the SLO, hollow ones broke it. Each cold step starts on a fresh restore with an empty buffer pool.</p>",
        esc(&r.version),
        esc(&r.backend)
    );
    if let Some(g) = &r.generator_limit {
        let _ = write!(s, "<p><b>Load generator saturated</b>: {}.</p>", esc(g));
    }
    if !r.cold_over_time.is_empty() {
        s.push_str("<h2>Cold capacity since the switchover</h2>");
        if r.cold_over_time.len() > 1 {
            s.push_str(&over_time_chart(r));
            s.push_str("<p>Hollow points: every step tried met the SLO, so the capacity is at least that.</p>");
        }
        s.push_str("<table><tr><th>since switchover</th><th>capacity req/s</th><th>of warm</th><th>how</th></tr>");
        for a in &r.cold_over_time {
            let _ = write!(s, "<tr><td>{}</td></tr>", at_cells(a).map(|c| esc(&c)).join("</td><td>"));
        }
        s.push_str("</table><h2>Against load</h2>");
    }
    s.push_str(&chart(r, "p99 of API requests", "ms", |x| x.p99_ms, r.slo.p99_ms, true));
    s.push_str(&chart(r, "errors", "% of requests", |x| x.error_pct, r.slo.error_pct, false));
    let _ = write!(s, "<h2>Steps</h2><table><tr><th>{}</th></tr>", COLUMNS.join("</th><th>"));
    for x in &r.steps {
        let _ = write!(s, "<tr><td>{}</td></tr>", cells(x).map(|c| esc(&c)).join("</td><td>"));
    }
    s.push_str("</table></body></html>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CapacityCfg;

    fn st(state: &str, rate: f64, p99: f64, err: f64, slo: &Slo) -> StepResult {
        StepResult {
            state: state.into(),
            rate,
            achieved_per_s: rate,
            requests: 100,
            errors: 0,
            error_pct: err,
            p50_ms: p99 / 3.0,
            p99_ms: p99,
            met_slo: p99 <= slo.p99_ms && err <= slo.error_pct,
            since_switchover_s: None,
            checkpoint_s: None,
            send_late_p99_ms: 1.0,
            generator_cpu_pct: 10.0,
            host_busy_pct: Some(50.0),
            generator_saturated: false,
        }
    }

    #[test]
    fn rates_grow_geometrically() {
        let c = CapacityCfg { start_rate: 50.0, step_factor: 2.0, max_steps: 4, ..Default::default() };
        assert_eq!(c.rates(), vec![50.0, 100.0, 200.0, 400.0]);
        assert!(CapacityCfg { step_factor: 1.0, ..Default::default() }.validate().is_err());
        assert!(CapacityCfg { step: "1s".into(), ..Default::default() }.validate().is_err());
    }

    #[test]
    fn knees_ratio_and_headroom() {
        let slo = Slo { p99_ms: 100.0, error_pct: 1.0 };
        let steps = vec![
            st("warm", 50.0, 10.0, 0.0, &slo),
            st("warm", 100.0, 20.0, 0.0, &slo),
            st("warm", 200.0, 150.0, 0.0, &slo),
            st("cold", 50.0, 60.0, 0.0, &slo),
            st("cold", 100.0, 90.0, 5.0, &slo),
        ];
        let (w, c, ratio, headroom, k) = conclude(&steps, &slo);
        assert_eq!((w, c), (100.0, 50.0));
        assert_eq!(ratio, Some(0.5));
        assert_eq!(headroom, Some(50.0));
        assert_eq!(k.warm.first_failed_rate, Some(200.0));
        assert_eq!(k.warm.broken_by, vec!["p99".to_string()]);
        assert_eq!(k.cold.broken_by, vec!["errors".to_string()]);
        let html = html(&CapacityReport {
            complete: true,
            started_at: String::new(),
            backend: "process".into(),
            version: "v".into(),
            slo,
            steps,
            warm_capacity: w,
            cold_capacity: c,
            ratio,
            headroom_pct: headroom,
            knee: k,
            cold_over_time: vec![],
            generator_limit: None,
            summary: "s".into(),
        });
        assert_eq!(html.matches("<svg").count(), 2);
    }

    #[test]
    fn a_downward_search_finds_the_cold_knee() {
        let slo = Slo { p99_ms: 100.0, error_pct: 1.0 };
        let steps = vec![
            st("warm", 50.0, 10.0, 0.0, &slo),
            st("cold", 50.0, 400.0, 0.0, &slo),
            st("cold", 25.0, 200.0, 0.0, &slo),
            st("cold", 13.0, 80.0, 0.0, &slo),
        ];
        let (_, c, _, _, k) = conclude(&steps, &slo);
        assert_eq!(c, 13.0);
        assert_eq!(k.cold.first_failed_rate, Some(25.0));
    }

    #[test]
    fn a_first_step_that_breaks_gives_zero_capacity() {
        let slo = Slo { p99_ms: 100.0, error_pct: 1.0 };
        let steps = vec![st("warm", 50.0, 10.0, 0.0, &slo), st("cold", 50.0, 500.0, 0.0, &slo)];
        let (w, c, ratio, _, k) = conclude(&steps, &slo);
        assert_eq!((w, c), (50.0, 0.0));
        assert_eq!(ratio, Some(0.0));
        assert_eq!(k.warm.first_failed_rate, None);
        assert_eq!(k.cold.last_ok_rate, 0.0);
    }

    #[test]
    fn a_saturated_generator_stops_the_warm_search_without_a_knee() {
        let slo = Slo { p99_ms: 100.0, error_pct: 1.0 };
        let mut sat = st("warm", 400.0, 300.0, 0.0, &slo);
        sat.generator_saturated = true;
        let steps = vec![st("warm", 100.0, 10.0, 0.0, &slo), st("warm", 200.0, 20.0, 0.0, &slo), sat];
        let (w, _, _, _, k) = conclude(&steps, &slo);
        assert_eq!(w, 200.0);
        assert_eq!(k.warm.stopped_by, "generator");
        assert_eq!(k.warm.first_failed_rate, None, "a rate not delivered is no knee");
        assert!(generator_limit(&steps).unwrap().contains("400 req/s"));
        // Without it, and every step met: the step limit.
        let (_, _, _, _, k) = conclude(&steps[..2], &slo);
        assert_eq!(k.warm.stopped_by, "step_limit");
        // A broken step below the saturated one is the knee.
        let steps = vec![st("warm", 100.0, 10.0, 0.0, &slo), st("warm", 200.0, 200.0, 0.0, &slo)];
        assert_eq!(conclude(&steps, &slo).4.warm.stopped_by, "slo");
    }

    #[test]
    fn saturation_is_late_sends_or_a_short_delivery_within_the_slo() {
        let slo = Slo { p99_ms: 250.0, error_pct: 1.0 };
        assert!(!generator_saturated(1000.0, 990.0, 2.0, true, &slo));
        assert!(generator_saturated(1000.0, 990.0, 40.0, true, &slo), "sends 40 ms late");
        assert!(generator_saturated(1000.0, 600.0, 2.0, true, &slo), "too few sent, database fine");
        assert!(!generator_saturated(1000.0, 600.0, 2.0, false, &slo), "a database past the SLO is the database's");
    }

    #[test]
    fn capacity_over_time_groups_checkpoints() {
        let slo = Slo { p99_ms: 100.0, error_pct: 1.0 };
        let at = |rate: f64, p99: f64, cp: u64, since: f64| {
            let mut x = st("cold-later", rate, p99, 0.0, &slo);
            x.checkpoint_s = Some(cp);
            x.since_switchover_s = Some(since);
            x
        };
        let steps = vec![
            st("warm", 100.0, 10.0, 0.0, &slo),
            st("warm", 200.0, 200.0, 0.0, &slo),
            st("cold", 100.0, 400.0, 0.0, &slo),
            st("cold", 50.0, 90.0, 0.0, &slo),
            at(50.0, 50.0, 60, 60.2),
            at(100.0, 150.0, 60, 66.3),
            at(50.0, 20.0, 300, 300.1),
            at(100.0, 60.0, 300, 306.0),
        ];
        let o = over_time(&steps, &slo, 100.0, 6.0);
        assert_eq!(o.len(), 3);
        assert_eq!((o[0].since_switchover_s, o[0].capacity_per_s, o[0].at_least), (0.0, 50.0, false));
        assert_eq!((o[1].capacity_per_s, o[1].at_least), (50.0, false));
        assert_eq!(o[1].since_switchover_s, 60.2);
        assert_eq!((o[2].capacity_per_s, o[2].at_least, o[2].of_warm_pct), (100.0, true, Some(100.0)));
        // The down-search of the first step, and the next rate up.
        assert_eq!(next_rate(&steps[2], &steps[2], 2.0), Some(50.0));
        assert_eq!(next_rate(&steps[2], &steps[3], 2.0), None);
        assert_eq!(next_rate(&steps[0], &steps[0], 2.0), Some(200.0));
    }

    #[test]
    fn checkpoints_are_checked() {
        let c = |v: &[&str]| CapacityCfg {
            since_switchover: v.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        assert_eq!(c(&["1m", "5m"]).checkpoints().unwrap(), vec![Duration::from_secs(60), Duration::from_secs(300)]);
        assert!(c(&["5m", "1m"]).validate().unwrap_err().to_string().contains("must increase"));
        assert!(c(&["0s"]).validate().is_err());
        assert!(c(&["soon"]).validate().unwrap_err().to_string().contains("since_switchover"));
    }
}
