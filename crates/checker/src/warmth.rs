//! Time to warm: how long after the switchover the API's per-second p99
//! (and each transaction's) comes back within a bound of the warm baseline
//! and stays there for a hold period, and what failed before it did.
//!
//! Computed from the report's own per-second timeline; a window too short
//! for warmth to return says "not warm within N s", never a number it did
//! not see.

use coldswap_client::stats::SecondSummary;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `[warmth]` in drill.toml: what "warm again" means.
///
/// A second is warm when its p99 is within `bound` times the baseline's p99
/// or `floor_ms` above it, whichever is more (a 0.6 ms query at 1.3 ms is
/// not an outage). The API is warm from the first second of a `hold_s`
/// window in which nothing failed and at least `within_pct` of the seconds
/// were warm, that second among them: one noisy second in ten does not
/// keep a warm database "cold" (a warm baseline's own per-second p99
/// crosses 2x its overall p99 now and then).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WarmthCfg {
    /// A second is warm when its p99 is at most this many times the
    /// baseline phase's p99 ...
    pub bound: f64,
    /// ... or at most this many ms above it.
    pub floor_ms: f64,
    /// The window warm seconds must fill, s.
    pub hold_s: u64,
    /// The share of the window's seconds that must be warm, percent.
    pub within_pct: f64,
    /// The availability SLO whose 30-day error budget the failures before
    /// warmth are counted against, percent.
    pub slo_availability_pct: f64,
    /// Project the time to warm to a dataset of this size: bytes ("500GiB",
    /// "80 GB") of the tables the mix touches, or a multiple of the drill's
    /// ("4x").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_size: Option<String>,
}

impl Default for WarmthCfg {
    fn default() -> Self {
        WarmthCfg {
            bound: 2.0,
            floor_ms: 5.0,
            hold_s: 10,
            within_pct: 90.0,
            slo_availability_pct: 99.9,
            project_size: None,
        }
    }
}

impl WarmthCfg {
    /// Fail on settings that cannot be checked.
    pub fn validate(&self) -> anyhow::Result<()> {
        if !(self.bound.is_finite() && self.bound >= 1.0) {
            anyhow::bail!("warmth.bound must be a number >= 1, not {}", self.bound);
        }
        if !(self.floor_ms.is_finite() && self.floor_ms >= 0.0) {
            anyhow::bail!("warmth.floor_ms must be a number >= 0, not {}", self.floor_ms);
        }
        if self.hold_s == 0 {
            anyhow::bail!("warmth.hold_s must be at least 1");
        }
        if !(self.within_pct > 0.0 && self.within_pct <= 100.0) {
            anyhow::bail!("warmth.within_pct must be above 0 and at most 100, not {}", self.within_pct);
        }
        if !(self.slo_availability_pct > 0.0 && self.slo_availability_pct < 100.0) {
            anyhow::bail!("warmth.slo_availability_pct must be between 0 and 100, not {}", self.slo_availability_pct);
        }
        if let Some(p) = &self.project_size {
            ProjectSize::parse(p).map_err(|e| anyhow::anyhow!("warmth.project_size: {e}"))?;
        }
        Ok(())
    }

    /// The p99 a second must come back under, ms.
    pub fn target(&self, baseline_p99_ms: f64) -> f64 {
        (baseline_p99_ms * self.bound).max(baseline_p99_ms + self.floor_ms)
    }

    /// Warm seconds a window needs.
    pub fn needed(&self) -> u64 {
        ((self.hold_s as f64 * self.within_pct / 100.0).ceil() as u64).clamp(1, self.hold_s)
    }

    /// The rule in words.
    pub fn describe(&self) -> String {
        format!(
            "a second is warm when its p99 is within {}x the baseline's or {} ms above it and it failed nothing; warm from the first of {} s with no failure and at least {} warm seconds",
            self.bound,
            self.floor_ms,
            self.hold_s,
            self.needed()
        )
    }
}

/// One series' time to warm.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Warmth {
    /// Seconds from the switchover until warm; None: not warm within `observed_s`.
    pub seconds: Option<f64>,
    /// The window watched: the switchover to the end of the cold phase, s.
    pub observed_s: f64,
    /// The p99 a second had to come back under, ms (bound x the baseline's p99).
    pub target_p99_ms: f64,
    /// Requests that ended before warmth (in the whole window when never warm).
    pub requests_before: u64,
    /// Of them, failed.
    pub failed_before: u64,
    /// Those failures as a share of a 30-day error budget at the baseline's
    /// request rate, percent.
    pub error_budget_burned_pct: f64,
    /// "warm 38 s after the switchover" or "not warm within 120 s".
    pub summary: String,
}

/// The drill's `time_to_warm`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct TimeToWarm {
    /// The settings used.
    pub cfg: WarmthCfg,
    /// What the bound is relative to.
    pub reference: String,
    /// All API requests together.
    pub overall: Warmth,
    /// Each transaction with a baseline.
    pub transactions: BTreeMap<String, Warmth>,
    /// Timeline second at which the API was warm again (for the marker).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warm_at_t: Option<f64>,
    /// Bytes (data and indexes) of the tables the mix touches, as the drill
    /// ran them: what a projection scales from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset_bytes: Option<u64>,
    /// The time to warm projected to another size (`project_size`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub projection: Option<Projection>,
}

/// A dataset size to project to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ProjectSize {
    /// Bytes.
    Bytes(u64),
    /// A multiple of the drill's own dataset.
    Times(f64),
}

impl ProjectSize {
    /// "500GiB", "80 GB", "1.5TiB", "123456" (bytes), "4x".
    pub fn parse(s: &str) -> Result<ProjectSize, String> {
        let t = s.trim();
        let bad = || format!("'{s}': expected a size such as 500GiB, 80GB or 4x (a multiple of the drill's dataset)");
        if let Some(x) = t.strip_suffix(['x', 'X']) {
            let f: f64 = x.trim().parse().map_err(|_| bad())?;
            return if f.is_finite() && f > 0.0 { Ok(ProjectSize::Times(f)) } else { Err(bad()) };
        }
        let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let v: f64 = num.parse().map_err(|_| bad())?;
        let mul: f64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1.0,
            "k" | "kb" => 1e3,
            "kib" => 1024.0,
            "m" | "mb" => 1e6,
            "mib" => 1024f64.powi(2),
            "g" | "gb" => 1e9,
            "gib" => 1024f64.powi(3),
            "t" | "tb" => 1e12,
            "tib" => 1024f64.powi(4),
            _ => return Err(bad()),
        };
        let b = v * mul;
        if !(b.is_finite() && b >= 1.0) {
            return Err(bad());
        }
        Ok(ProjectSize::Bytes(b as u64))
    }

    /// In bytes, for a drill whose dataset was `measured` bytes.
    pub fn bytes(&self, measured: u64) -> u64 {
        match *self {
            ProjectSize::Bytes(b) => b,
            ProjectSize::Times(f) => (measured as f64 * f).round() as u64,
        }
    }
}

/// The time to warm, projected to another dataset size.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Projection {
    /// The model, in words.
    pub model: String,
    /// The drill's dataset (tables the mix touches), bytes.
    pub measured_dataset_bytes: u64,
    /// The drill's time to warm, s (None: not warm within `measured_observed_s`).
    pub measured_time_to_warm_s: Option<f64>,
    /// The window the drill watched, s.
    pub measured_observed_s: f64,
    /// The size projected to, bytes.
    pub target_dataset_bytes: u64,
    /// target / measured.
    pub factor: f64,
    /// Projected time to warm, s; a lower bound when `at_least`.
    pub time_to_warm_s: f64,
    /// The drill was not warm within its window: the projection is a lower bound.
    pub at_least: bool,
    /// One line.
    pub summary: String,
}

/// The projection's model, stated in the report.
pub const PROJECTION_MODEL: &str = "time to warm grows in proportion to the data the mix's requests spread over: the same load on the same storage (first-touch latency, fetches in flight, hydration rate) must fetch a hot set that grows with the dataset, at the same pace, so T(target) = T(drill) x target bytes / drill bytes. Not modelled: a hot set that does not grow with the data (recent rows only), a buffer pool too small for the hot set, fixed delays after the switchover";

/// "2 h 05 min", "9 min 10 s", "40 s".
pub fn human_duration(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    match s {
        0..=119 => format!("{s} s"),
        120..=7199 => format!("{} min {:02} s", s / 60, s % 60),
        _ => format!("{} h {:02} min", s / 3600, (s % 3600) / 60),
    }
}

/// "1.2 GiB", "512 MiB".
pub fn human_bytes(b: u64) -> String {
    let g = b as f64 / 1024f64.powi(3);
    if g >= 1.0 {
        format!("{g:.1} GiB")
    } else {
        format!("{:.0} MiB", b as f64 / 1024f64.powi(2))
    }
}

/// Project the drill's overall time to warm to a dataset of `target` bytes.
pub fn project(overall: &Warmth, measured_bytes: u64, target: u64) -> Option<Projection> {
    if measured_bytes == 0 || target == 0 {
        return None;
    }
    let factor = target as f64 / measured_bytes as f64;
    let (base, at_least) = match overall.seconds {
        Some(s) => (s, false),
        None => (overall.observed_s, true),
    };
    let t = base * factor;
    let summary = format!(
        "{}{} to warm at {} of data (the drill: {} at {}{}; model: in proportion to the data)",
        if at_least { "more than " } else { "" },
        human_duration(t),
        human_bytes(target),
        match overall.seconds {
            Some(s) => human_duration(s),
            None => format!("not warm within {}", human_duration(overall.observed_s)),
        },
        human_bytes(measured_bytes),
        if at_least { ", so the projection is a lower bound" } else { "" }
    );
    Some(Projection {
        model: PROJECTION_MODEL.into(),
        measured_dataset_bytes: measured_bytes,
        measured_time_to_warm_s: overall.seconds,
        measured_observed_s: overall.observed_s,
        target_dataset_bytes: target,
        factor,
        time_to_warm_s: t,
        at_least,
        summary,
    })
}

/// One second of a series: (t, requests, failures, p99 ms).
type Sec = (u64, u64, u64, f64);

/// The first second `t0` (itself warm) from which the `hold` seconds up to
/// `end` failed nothing and held at least `needed` warm seconds. `series`
/// has one entry per second in order. `quiet_breaks`: a second without
/// requests is not warm (for the whole API); otherwise (one transaction,
/// maybe rare) quiet seconds count as warm.
fn warm_from(series: &[Sec], target: f64, hold: u64, needed: u64, end: u64, quiet_breaks: bool) -> Option<u64> {
    let quiet = |s: &Sec| s.1 == 0;
    let warm = |s: &Sec| if quiet(s) { !quiet_breaks } else { s.2 == 0 && s.3 <= target };
    for (i, s0) in series.iter().enumerate() {
        if s0.0 + hold > end {
            break;
        }
        if quiet(s0) || !warm(s0) {
            continue;
        }
        let window: Vec<&Sec> = series[i..].iter().take_while(|s| s.0 < s0.0 + hold).collect();
        let failed: u64 = window.iter().map(|s| s.2).sum();
        let good = window.iter().filter(|s| warm(s)).count() as u64;
        // Seconds missing from the series count as quiet.
        let missing = hold - window.len() as u64;
        let good = good + if quiet_breaks { 0 } else { missing };
        if failed == 0 && good >= needed {
            return Some(s0.0);
        }
    }
    None
}

fn one(
    series: &[Sec],
    switchover_t: f64,
    end_t: f64,
    baseline_p99: f64,
    rate_per_s: f64,
    cfg: &WarmthCfg,
    quiet_breaks: bool,
) -> Warmth {
    let target = cfg.target(baseline_p99);
    let observed = (end_t - switchover_t).max(0.0);
    let first = switchover_t.ceil() as u64;
    let end = end_t.floor() as u64;
    let window: Vec<Sec> = series.iter().filter(|s| s.0 >= first && s.0 < end).cloned().collect();
    let at = warm_from(&window, target, cfg.hold_s, cfg.needed(), end, quiet_breaks);
    let before: Vec<&Sec> = window.iter().filter(|s| at.map(|a| s.0 < a).unwrap_or(true)).collect();
    let requests_before = before.iter().map(|s| s.1).sum();
    let failed_before: u64 = before.iter().map(|s| s.2).sum();
    let budget = (1.0 - cfg.slo_availability_pct / 100.0) * rate_per_s * 30.0 * 86400.0;
    let seconds = at.map(|a| (a as f64 - switchover_t).max(0.0));
    let summary = match seconds {
        Some(s) => format!(
            "warm {s:.0} s after the switchover (p99 back under {target:.1} ms, the baseline's {baseline_p99:.1} ms x{} or +{} ms, for {} of {} s)",
            cfg.bound,
            cfg.floor_ms,
            cfg.needed(),
            cfg.hold_s
        ),
        None => format!(
            "not warm within {observed:.0} s (p99 never back under {target:.1} ms, the baseline's {baseline_p99:.1} ms x{} or +{} ms, for {} of {} s)",
            cfg.bound,
            cfg.floor_ms,
            cfg.needed(),
            cfg.hold_s
        ),
    };
    Warmth {
        seconds,
        observed_s: observed,
        target_p99_ms: target,
        requests_before,
        failed_before,
        error_budget_burned_pct: if budget > 0.0 { failed_before as f64 / budget * 100.0 } else { 0.0 },
        summary,
    }
}

/// Time to warm from a run's timeline: the switchover at `switchover_t`,
/// watched until `end_t` (the cold phase's end), against the baseline's
/// p99 overall and per transaction and its request rate.
pub fn compute(
    timeline: &[SecondSummary],
    switchover_t: f64,
    end_t: f64,
    baseline_p99: f64,
    baseline_txn_p99: &BTreeMap<String, f64>,
    rate_per_s: f64,
    cfg: &WarmthCfg,
) -> TimeToWarm {
    let overall: Vec<Sec> = timeline.iter().map(|s| (s.t, s.count, s.errors, s.p99_ms)).collect();
    let o = one(&overall, switchover_t, end_t, baseline_p99, rate_per_s, cfg, true);
    let mut transactions = BTreeMap::new();
    for (name, p99) in baseline_txn_p99 {
        if *p99 <= 0.0 {
            continue;
        }
        let series: Vec<Sec> = timeline
            .iter()
            .map(|s| match s.by_txn.get(name) {
                Some(t) => (s.t, t.count, t.errors, t.p99_ms),
                None => (s.t, 0, 0, 0.0),
            })
            .collect();
        transactions.insert(name.clone(), one(&series, switchover_t, end_t, *p99, rate_per_s, cfg, false));
    }
    TimeToWarm {
        cfg: cfg.clone(),
        reference: "the baseline phase's p99 (the warm primary before the upgrade)".into(),
        warm_at_t: o.seconds.map(|s| switchover_t + s),
        overall: o,
        transactions,
        dataset_bytes: None,
        projection: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coldswap_client::stats::TxnSecond;

    fn sec(t: u64, count: u64, errors: u64, p99: f64) -> SecondSummary {
        let mut by_txn = BTreeMap::new();
        by_txn.insert("a".to_string(), TxnSecond { count, errors, p99_ms: p99 });
        SecondSummary {
            t,
            phase: "cold".into(),
            count,
            errors,
            errors_by_class: BTreeMap::new(),
            p50_ms: p99 / 2.0,
            p99_ms: p99,
            max_ms: p99,
            by_txn,
        }
    }

    #[test]
    fn warm_once_p99_is_back_within_the_bound_for_the_window() {
        // Switchover at t=10.4; cold until t=60. Failing until 20, slow until
        // 30, then warm but for one slow second at 35 (and, in a second run,
        // another at 37).
        let timeline = |spikes: &[u64]| -> Vec<SecondSummary> {
            (0..60)
                .map(|t| {
                    let (e, p) = match t {
                        0..=9 => (0, 4.0),
                        10..=19 => (20, 2000.0),
                        20..=29 => (0, 300.0),
                        _ if spikes.contains(&t) => (0, 50.0),
                        _ => (0, 6.0),
                    };
                    sec(t, 100, e, p)
                })
                .collect()
        };
        let base: BTreeMap<String, f64> = [("a".to_string(), 5.0)].into();
        let cfg = WarmthCfg::default();
        assert_eq!((cfg.target(5.0), cfg.needed()), (10.0, 9));
        let w = compute(&timeline(&[35]), 10.4, 60.0, 5.0, &base, 100.0, &cfg);
        // One slow second in ten: warm from 30.
        assert_eq!(w.overall.seconds, Some(30.0 - 10.4));
        assert_eq!(w.warm_at_t, Some(30.0));
        // Whole seconds after the switchover: 11..19 (the second it happened
        // in belongs to the switchover's own unavailability).
        assert_eq!(w.overall.failed_before, 180);
        assert_eq!(w.overall.requests_before, (11..30).count() as u64 * 100);
        assert!(w.overall.summary.starts_with("warm 20 s after the switchover"), "{}", w.overall.summary);
        assert_eq!(w.transactions["a"].seconds, w.overall.seconds);
        // 180 failures of a 99.9% budget at 100 req/s over 30 days (259,200).
        assert!((w.overall.error_budget_burned_pct - 180.0 / 259_200.0 * 100.0).abs() < 1e-9);
        // Two in ten: warm from the second after the first spike.
        let w = compute(&timeline(&[35, 37]), 10.4, 60.0, 5.0, &base, 100.0, &cfg);
        assert_eq!(w.warm_at_t, Some(36.0));
        // A failure inside the window is never warm.
        let mut tl = timeline(&[]);
        tl[33].errors = 1;
        let w = compute(&tl, 10.4, 60.0, 5.0, &base, 100.0, &cfg);
        assert_eq!(w.warm_at_t, Some(34.0));
    }

    #[test]
    fn a_fast_query_gets_the_floor_not_the_ratio() {
        // 0.6 ms warm, 1.3 ms now: over 2x, yet well within 5 ms.
        let tl: Vec<SecondSummary> = (0..40).map(|t| sec(t, 50, 0, if t < 20 { 900.0 } else { 1.3 })).collect();
        let w = compute(&tl, 10.0, 40.0, 0.6, &BTreeMap::new(), 50.0, &WarmthCfg::default());
        assert_eq!(w.overall.target_p99_ms, 5.6);
        assert_eq!(w.warm_at_t, Some(20.0));
        let strict = WarmthCfg { floor_ms: 0.0, ..Default::default() };
        let w = compute(&tl, 10.0, 40.0, 0.6, &BTreeMap::new(), 50.0, &strict);
        assert_eq!(w.warm_at_t, None);
    }

    #[test]
    fn a_window_too_short_says_not_warm() {
        let tl: Vec<SecondSummary> = (0..40).map(|t| sec(t, 50, 0, if t < 30 { 900.0 } else { 5.0 })).collect();
        let w = compute(&tl, 10.0, 38.0, 5.0, &BTreeMap::new(), 50.0, &WarmthCfg::default());
        // Warm from 30, but only 8 s of it were watched: never a number it did not see.
        assert_eq!(w.overall.seconds, None);
        assert!(w.overall.summary.starts_with("not warm within 28 s"), "{}", w.overall.summary);
        assert_eq!(w.warm_at_t, None);
        assert_eq!(w.overall.requests_before, 28 * 50);
    }

    #[test]
    fn quiet_seconds_break_the_api_but_not_a_rare_transaction() {
        let mut tl: Vec<SecondSummary> = (0..40).map(|t| sec(t, 10, 0, 5.0)).collect();
        for t in [15, 16] {
            tl[t].count = 0;
            tl[t].by_txn.clear();
        }
        let base: BTreeMap<String, f64> = [("a".to_string(), 5.0)].into();
        let w = compute(&tl, 10.0, 40.0, 5.0, &base, 10.0, &WarmthCfg::default());
        assert_eq!(w.overall.seconds, Some(7.0), "two quiet seconds in ten are not warm for the API");
        assert_eq!(w.transactions["a"].seconds, Some(0.0), "quiet seconds are neutral for one transaction");
    }

    #[test]
    fn sizes_parse_and_projections_scale_with_the_data() {
        assert_eq!(ProjectSize::parse("500GiB"), Ok(ProjectSize::Bytes(500 * 1024 * 1024 * 1024)));
        assert_eq!(ProjectSize::parse("80 GB"), Ok(ProjectSize::Bytes(80_000_000_000)));
        assert_eq!(ProjectSize::parse("4x"), Ok(ProjectSize::Times(4.0)));
        assert_eq!(ProjectSize::parse("4x").unwrap().bytes(1000), 4000);
        for bad in ["", "big", "-3GiB", "0x", "5 parsecs"] {
            assert!(ProjectSize::parse(bad).is_err(), "{bad}");
        }
        assert!(WarmthCfg { project_size: Some("lots".into()), ..Default::default() }.validate().is_err());
        let warm = Warmth { seconds: Some(30.0), observed_s: 120.0, ..Default::default() };
        let p = project(&warm, 1 << 30, 4 << 30).unwrap();
        assert_eq!((p.factor, p.time_to_warm_s, p.at_least), (4.0, 120.0, false));
        assert!(p.summary.starts_with("2 min 00 s to warm at 4.0 GiB"), "{}", p.summary);
        // Not warm in the drill: a lower bound, said so.
        let cold = Warmth { seconds: None, observed_s: 120.0, ..Default::default() };
        let p = project(&cold, 1 << 30, 500 << 30).unwrap();
        assert!(p.at_least && p.time_to_warm_s == 60_000.0);
        assert!(p.summary.starts_with("more than 16 h 40 min"), "{}", p.summary);
        assert!(project(&warm, 0, 1).is_none());
    }
}
