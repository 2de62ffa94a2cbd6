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
    /// One line a planner can quote.
    pub summary: String,
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
/// the lowest rate above it that broke it (steps may go up or down).
pub fn knee(steps: &[&StepResult], slo: &Slo) -> Knee {
    let last_ok = steps.iter().filter(|s| s.met_slo).map(|s| s.rate).fold(0.0, f64::max);
    let failed = steps.iter().filter(|s| !s.met_slo && s.rate > last_ok).min_by(|a, b| a.rate.total_cmp(&b.rate));
    match failed {
        Some(s) => {
            let mut why = Vec::new();
            if s.p99_ms > slo.p99_ms {
                why.push("p99".to_string());
            }
            if s.error_pct > slo.error_pct || s.requests == 0 {
                why.push("errors".to_string());
            }
            Knee { last_ok_rate: last_ok, first_failed_rate: Some(s.rate), broken_by: why }
        }
        None => Knee { last_ok_rate: last_ok, first_failed_rate: None, broken_by: vec![] },
    }
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
    let at_least = |k: &Knee| if k.first_failed_rate.is_none() { "at least " } else { "" };
    let summary = match ratio {
        Some(r) => format!(
            "warm capacity {}{w:.0} req/s, cold {}{c:.0} req/s ({:.0}% of warm): keep {:.0}% headroom at peak to survive a cold switchover (SLO p99 <= {:.0} ms, errors <= {:.1}%, over {} steps)",
            at_least(&knee.warm),
            at_least(&knee.cold),
            r * 100.0,
            headroom.unwrap_or(0.0),
            slo.p99_ms,
            slo.error_pct,
            cfg.capacity.step
        ),
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
    let p = cluster.primary_index()?;
    *version = cluster.node(p).version_string.clone();
    let s = cluster.secrets().clone();
    let ccfg = cfg.cold_config()?;
    let rates = cfg.capacity.rates();
    let (host, port) = (cluster.node(p).host.clone(), cluster.node(p).port);
    let run_step = |rate: f64, state: &'static str| {
        let mix = mix.clone();
        let host = host.clone();
        let s = s.clone();
        let cfg = cfg.clone();
        async move {
            let app = coldswap_sql::tcp_options(&host, port, &s.app_user, &s.app_password);
            let rec = Arc::new(Recorder::new());
            rec.phase(state);
            let lcfg = LoadConfig {
                users: cfg.load.users,
                model: Model::Open { rate_per_s: rate },
                hatch_rate: 0.0,
                duration: Some(step_d),
                tier: cfg.api.clone(),
                background: cfg.load.background.clone(),
                shard: (0, 1),
                seed: cfg.load.seed,
            };
            let load = Load::prepare(mix, app, lcfg, rec.clone()).await?;
            signals::interruptible(load.run()).await?;
            let snap = rec.snapshot();
            let ph = snap.phase(state).cloned().context("no results for the step")?;
            let (n, e, p50, p99) = phase_totals(&ph);
            let error_pct = if n == 0 { 100.0 } else { e as f64 * 100.0 / n as f64 };
            Ok::<StepResult, anyhow::Error>(StepResult {
                state: state.to_string(),
                rate,
                achieved_per_s: n as f64 / ph.duration_s().max(1e-9),
                requests: n,
                errors: e,
                error_pct,
                p50_ms: p50,
                p99_ms: p99,
                met_slo: n > 0 && p99 <= cfg.capacity.slo_p99_ms && error_pct <= cfg.capacity.slo_error_pct,
            })
        }
    };
    // Warm: one unrecorded step at the first rate brings the buffer pool to
    // its steady state, then the steps.
    tracing::info!("capacity: warming up at {:.0} req/s for {} s", rates[0], step_d.as_secs());
    run_step(rates[0], "warmup").await?;
    for &rate in &rates {
        let r = run_step(rate, "warm").await?;
        log_step(&r, slo);
        let ok = r.met_slo;
        steps.push(r);
        if !ok {
            break;
        }
    }
    // Cold: every step on a fresh restore with an empty buffer pool. Up
    // from the first rate while the SLO holds; when the first rate already
    // breaks it, down (divided by the factor) until it holds, to find the knee.
    let mut cold_rates: Vec<f64> = rates.clone();
    let mut down = false;
    let mut i = 0;
    while i < cold_rates.len() && i < 2 * cfg.capacity.max_steps {
        let rate = cold_rates[i];
        i += 1;
        {
            let cluster = cluster_slot.as_mut().unwrap();
            cold::make_cold(cluster, p, &ccfg, true).await.context("restarting the primary on a fresh restore")?;
        }
        let r = run_step(rate, "cold").await?;
        log_step(&r, slo);
        let ok = r.met_slo;
        steps.push(r);
        if i == 1 && !ok {
            down = true;
            let mut lower = Vec::new();
            let mut x = rate / cfg.capacity.step_factor;
            while x >= 1.0 && lower.len() < cfg.capacity.max_steps {
                lower.push(x.round());
                x /= cfg.capacity.step_factor;
            }
            cold_rates = std::iter::once(rate).chain(lower).collect();
            continue;
        }
        if down == ok {
            break;
        }
    }
    Ok(())
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
    let _ = writeln!(s, "| {} |\n|{}", COLUMNS.join(" | "), "---|".repeat(COLUMNS.len()));
    for x in &r.steps {
        let _ = writeln!(s, "| {} |", cells(x).join(" | "));
    }
    s
}

/// The steps table's columns, and one step's cells (markdown and HTML alike).
const COLUMNS: [&str; 8] = ["state", "rate/s", "achieved/s", "requests", "errors %", "p50 ms", "p99 ms", "SLO"];

fn cells(x: &StepResult) -> [String; 8] {
    [
        x.state.clone(),
        format!("{:.0}", x.rate),
        format!("{:.0}", x.achieved_per_s),
        x.requests.to_string(),
        format!("{:.2}", x.error_pct),
        format!("{:.1}", x.p50_ms),
        format!("{:.1}", x.p99_ms),
        (if x.met_slo { "met" } else { "broken" }).to_string(),
    ]
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
        let _ = write!(
            s,
            r#"<line x1="{ml}" x2="{:.1}" y1="{:.1}" y2="{:.1}" class="grid"/><text x="{:.1}" y="{:.1}" class="tick" text-anchor="end">{}</text>"#,
            ml + pw,
            y(t),
            y(t),
            ml - 4.0,
            y(t) + 3.0,
            if t >= 10.0 || t == 0.0 {
                format!("{t:.0}")
            } else {
                format!("{t:.2}").trim_end_matches('0').trim_end_matches('.').to_string()
            }
        );
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
}
