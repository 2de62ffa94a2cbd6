//! `coldswap compare OLD NEW`: per-transaction deltas between two drill
//! reports, and the regressions that should fail a nightly job.
//!
//! A p99 that moved is called a regression only beyond the run-to-run
//! noise: the shift of the transaction's per-second p99s between the two
//! runs (Hodges-Lehmann, with its 95 % interval from the Mann-Whitney U
//! distribution) must be above 1 with 95 % confidence, as well as the
//! phase p99 growing by the minimum effect. Two default drills of one
//! build differed by +104 % on a rare job's p99; its per-second p99s did
//! not move. Where a transaction has too few seconds, order statistics of
//! its HDR histogram give the interval.

use serde::{Deserialize, Serialize};

use crate::report::Report;
use coldswap_client::stats::decode_hist;

/// What counts as a regression between two reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Limits {
    /// A transaction's p99 may grow by this much, percent...
    pub max_p99_increase_pct: f64,
    /// ...and by at least this many ms before it counts (noise floor).
    pub min_p99_increase_ms: f64,
    /// Error rate may grow by this many percentage points.
    pub max_error_rate_increase_pts: f64,
    /// Transactions with fewer requests than this in either run are skipped.
    pub min_samples: u64,
    /// Phases compared.
    pub phases: Vec<String>,
    /// Confidence of the intervals, percent (95 or 99).
    pub confidence_pct: f64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_p99_increase_pct: 25.0,
            min_p99_increase_ms: 5.0,
            max_error_rate_increase_pts: 1.0,
            min_samples: 20,
            phases: vec!["baseline".into(), "cold".into(), "warm".into()],
            confidence_pct: 95.0,
        }
    }
}

/// One transaction in one phase, old against new.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Delta {
    /// The phase.
    pub phase: String,
    /// The transaction.
    pub transaction: String,
    /// p99 in the old report, ms.
    pub old_p99_ms: f64,
    /// p99 in the new report, ms.
    pub new_p99_ms: f64,
    /// Change of p99, percent.
    pub p99_change_pct: f64,
    /// new/old beyond the noise: its estimate and interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shift: Option<Shift>,
    /// Error rate in the old report.
    pub old_error_rate: f64,
    /// Error rate in the new report.
    pub new_error_rate: f64,
    /// Why it is a regression, when it is one.
    pub regression: Option<String>,
}

/// Two reports compared.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Comparison {
    /// Every transaction of every phase both have.
    pub deltas: Vec<Delta>,
    /// One line per regression.
    pub regressions: Vec<String>,
    /// Thresholds that passed before and fail now.
    pub newly_failing: Vec<String>,
}

/// How much slower (or faster) the new run is than the old, as a ratio
/// with an interval.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Shift {
    /// new / old.
    pub ratio: f64,
    /// Lower end of the interval.
    pub lo: f64,
    /// Upper end.
    pub hi: f64,
    /// Samples each side (seconds, or requests for order statistics).
    pub samples: (u64, u64),
    /// How the interval was found.
    pub method: String,
}

impl Shift {
    /// "x1.92 [x1.41, x2.60]".
    pub fn describe(&self) -> String {
        format!("x{:.2} [x{:.2}, x{:.2}]", self.ratio, self.lo, self.hi)
    }
}

/// Two-sided normal quantile for a confidence in percent (95 -> 1.96).
fn z_of(confidence_pct: f64) -> f64 {
    if confidence_pct >= 99.0 {
        2.576
    } else if confidence_pct >= 95.0 {
        1.96
    } else {
        1.645
    }
}

/// Hodges-Lehmann shift of `new` over `old` (per-second p99s) on a log
/// scale, as a ratio, with its interval from the Mann-Whitney U
/// distribution (normal approximation). None under 8 seconds a side.
pub fn per_second_shift(old: &[f64], new: &[f64], confidence_pct: f64) -> Option<Shift> {
    let (m, n) = (old.len(), new.len());
    if m < 8 || n < 8 {
        return None;
    }
    let lg = |x: f64| x.max(1e-3).ln();
    let mut d: Vec<f64> = Vec::with_capacity(m * n);
    for y in new {
        for x in old {
            d.push(lg(*y) - lg(*x));
        }
    }
    d.sort_by(|a, b| a.total_cmp(b));
    let mn = (m * n) as f64;
    let med = if d.len() % 2 == 1 { d[d.len() / 2] } else { (d[d.len() / 2 - 1] + d[d.len() / 2]) / 2.0 };
    let sd = (mn * (m + n + 1) as f64 / 12.0).sqrt();
    let c = (mn / 2.0 - z_of(confidence_pct) * sd).floor().max(0.0) as usize;
    let lo = d[c.min(d.len() - 1)];
    let hi = d[(d.len() - 1).saturating_sub(c)];
    Some(Shift {
        ratio: med.exp(),
        lo: lo.exp(),
        hi: hi.exp(),
        samples: (m as u64, n as u64),
        method: format!("per-second p99s, Hodges-Lehmann shift, {confidence_pct:.0}% interval"),
    })
}

/// The p99 of each run from its HDR histogram, with the interval order
/// statistics give it; the ratio's interval pairs the ends.
pub fn order_stat_shift(old: &str, new: &str, confidence_pct: f64) -> Option<Shift> {
    let (ho, hn) = (decode_hist(old)?, decode_hist(new)?);
    if ho.is_empty() || hn.is_empty() {
        return None;
    }
    let z = z_of(confidence_pct);
    let bounds = |h: &hdrhistogram::Histogram<u64>| {
        let n = h.len() as f64;
        let half = z * (n * 0.99 * 0.01).sqrt();
        let q = |r: f64| (r / n).clamp(0.0, 1.0);
        let v = |q: f64| h.value_at_quantile(q).max(1) as f64;
        (v(q(n * 0.99 - half)), v(0.99), v(q(n * 0.99 + half + 1.0)))
    };
    let (olo, o, ohi) = bounds(&ho);
    let (nlo, nv, nhi) = bounds(&hn);
    Some(Shift {
        ratio: nv / o,
        lo: nlo / ohi,
        hi: nhi / olo,
        samples: (ho.len(), hn.len()),
        method: format!("p99 order statistics of the HDR histograms, {confidence_pct:.0}% interval"),
    })
}

/// A transaction's per-second p99s in a phase (seconds it ran in).
fn seconds_of(r: &Report, phase: &str, txn: &str) -> Vec<f64> {
    r.timeline
        .iter()
        .filter(|s| s.phase == phase)
        .filter_map(|s| s.by_txn.get(txn))
        .filter(|t| t.count > 0)
        .map(|t| t.p99_ms)
        .collect()
}

/// Compare two drill reports transaction by transaction.
pub fn compare(old: &Report, new: &Report, l: &Limits) -> Comparison {
    let mut deltas = Vec::new();
    for ph in &l.phases {
        let (Some(po), Some(pn)) = (old.phase(ph), new.phase(ph)) else { continue };
        for tn in &pn.transactions {
            let Some(to) = po.txn(&tn.name) else { continue };
            if to.count < l.min_samples || tn.count < l.min_samples {
                continue;
            }
            let change = if to.p99_ms > 0.0 { (tn.p99_ms - to.p99_ms) / to.p99_ms * 100.0 } else { 0.0 };
            let shift =
                per_second_shift(&seconds_of(old, ph, &tn.name), &seconds_of(new, ph, &tn.name), l.confidence_pct)
                    .or_else(|| order_stat_shift(&to.histogram, &tn.histogram, l.confidence_pct));
            let mut why = Vec::new();
            let beyond_noise = shift.as_ref().is_some_and(|s| s.lo > 1.0);
            if change > l.max_p99_increase_pct && tn.p99_ms - to.p99_ms > l.min_p99_increase_ms && beyond_noise {
                why.push(format!(
                    "p99 {:.1} -> {:.1} ms (+{change:.0}%), {}",
                    to.p99_ms,
                    tn.p99_ms,
                    shift.as_ref().map(|s| s.describe()).unwrap_or_default()
                ));
            }
            if let Some(e) = error_regression(to, tn, l) {
                why.push(e);
            }
            deltas.push(Delta {
                phase: ph.clone(),
                transaction: tn.name.clone(),
                old_p99_ms: to.p99_ms,
                new_p99_ms: tn.p99_ms,
                p99_change_pct: change,
                shift,
                old_error_rate: to.error_rate,
                new_error_rate: tn.error_rate,
                regression: (!why.is_empty()).then(|| format!("{ph}/{}: {}", tn.name, why.join(", "))),
            });
        }
    }
    let regressions = deltas.iter().filter_map(|d| d.regression.clone()).collect();
    let newly_failing = new
        .thresholds
        .iter()
        .filter(|t| !t.passed && old.thresholds.iter().any(|o| o.rule == t.rule && o.passed))
        .map(|t| format!("threshold {}: {}", t.rule, t.detail))
        .collect();
    Comparison { deltas, regressions, newly_failing }
}

/// An error rate that grew by more than the limit, beyond a two-proportion
/// test at the limits' confidence.
fn error_regression(to: &crate::report::TxnRow, tn: &crate::report::TxnRow, l: &Limits) -> Option<String> {
    let pts = (tn.error_rate - to.error_rate) * 100.0;
    if pts <= l.max_error_rate_increase_pts {
        return None;
    }
    let (n1, n2) = (to.count as f64, tn.count as f64);
    let pooled = (to.error_rate * n1 + tn.error_rate * n2) / (n1 + n2);
    let se = (pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2)).sqrt();
    let z = if se > 0.0 { (tn.error_rate - to.error_rate) / se } else { f64::INFINITY };
    (z > z_of(l.confidence_pct)).then(|| {
        format!("error rate {:.2}% -> {:.2}% (z {:.1})", to.error_rate * 100.0, tn.error_rate * 100.0, z.min(99.0))
    })
}

/// The comparison as a table for the terminal.
pub fn table(c: &Comparison) -> String {
    let mut s = format!(
        "{:<10} {:<24} {:>10} {:>10} {:>8} {:>26} {:>9} {:>9}\n",
        "phase", "transaction", "old p99", "new p99", "change", "new/old [interval]", "old err", "new err"
    );
    for d in &c.deltas {
        s.push_str(&format!(
            "{:<10} {:<24} {:>10.1} {:>10.1} {:>7.0}% {:>26} {:>8.2}% {:>8.2}%{}\n",
            d.phase,
            d.transaction,
            d.old_p99_ms,
            d.new_p99_ms,
            d.p99_change_pct,
            d.shift.as_ref().map(|s| s.describe()).unwrap_or_else(|| "-".into()),
            d.old_error_rate * 100.0,
            d.new_error_rate * 100.0,
            if d.regression.is_some() { "  REGRESSION" } else { "" }
        ));
    }
    for r in c.regressions.iter().chain(c.newly_failing.iter()) {
        s.push_str(&format!("regression: {r}\n"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Phase, TxnRow};
    use coldswap_client::stats::Kind;

    fn row(name: &str, p99: f64, err: f64) -> TxnRow {
        TxnRow {
            name: name.into(),
            kind: Kind::Transaction,
            count: 1000,
            ok: (1000.0 * (1.0 - err)) as u64,
            errors: Default::default(),
            error_rate: err,
            throughput_per_s: 10.0,
            first_ms: None,
            p50_ms: p99 / 2.0,
            p90_ms: p99,
            p95_ms: p99,
            p99_ms: p99,
            p999_ms: p99,
            max_ms: p99,
            error_samples: vec![],
            histogram: String::new(),
        }
    }

    fn report(rows: Vec<TxnRow>) -> Report {
        let mut r = Report::default();
        r.phases.push(Phase {
            name: "cold".into(),
            start_s: 0.0,
            end_s: 10.0,
            transactions: rows,
            top_digests: vec![],
            requests: 0,
            errors: 0,
            error_rate: 0.0,
            p50_ms: 0.0,
            p99_ms: 0.0,
        });
        r
    }

    /// A report whose cold phase has one second per value of `per_sec`
    /// for each transaction (p99 of the second), at 10 requests a second.
    fn with_seconds(mut r: Report, series: &[(&str, Vec<f64>)]) -> Report {
        use coldswap_client::stats::{SecondSummary, TxnSecond};
        let len = series.iter().map(|s| s.1.len()).max().unwrap_or(0);
        for t in 0..len {
            let mut by_txn = std::collections::BTreeMap::new();
            for (name, v) in series {
                if let Some(p) = v.get(t) {
                    by_txn.insert(name.to_string(), TxnSecond { count: 10, errors: 0, p99_ms: *p });
                }
            }
            r.timeline.push(SecondSummary {
                t: t as u64,
                phase: "cold".into(),
                count: 10,
                errors: 0,
                errors_by_class: Default::default(),
                p50_ms: 1.0,
                p99_ms: 1.0,
                max_ms: 1.0,
                by_txn,
            });
        }
        r
    }

    /// A noisy series: a deterministic pseudo-random walk around `level`.
    fn noisy(level: f64, n: usize, seed: u64) -> Vec<f64> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let u = (x >> 33) as f64 / (1u64 << 31) as f64;
                level * (0.3 + 1.4 * u) * if (x >> 20).is_multiple_of(17) { 4.0 } else { 1.0 }
            })
            .collect()
    }

    #[test]
    fn an_injected_regression_is_named() {
        let old = with_seconds(
            report(vec![row("show_job", 10.0, 0.0), row("list_jobs", 20.0, 0.0)]),
            &[("show_job", noisy(10.0, 60, 1)), ("list_jobs", noisy(20.0, 60, 2))],
        );
        let new = with_seconds(
            report(vec![row("show_job", 10.5, 0.0), row("list_jobs", 80.0, 0.05)]),
            &[("show_job", noisy(10.0, 60, 3)), ("list_jobs", noisy(80.0, 60, 4))],
        );
        let c = compare(&old, &new, &Limits::default());
        assert_eq!(c.regressions.len(), 1, "{c:?}");
        assert!(c.regressions[0].starts_with("cold/list_jobs: p99 20.0 -> 80.0 ms (+300%), x"), "{:?}", c.regressions);
        assert!(c.regressions[0].contains("error rate 0.00% -> 5.00%"), "{:?}", c.regressions);
        let s = c.deltas.iter().find(|d| d.transaction == "list_jobs").unwrap().shift.clone().unwrap();
        assert!(s.lo > 2.0 && s.lo <= s.ratio && s.ratio <= s.hi, "{s:?}");
        let same = compare(&old, &old, &Limits::default());
        assert!(same.regressions.is_empty());
    }

    #[test]
    fn a_tail_that_moved_by_chance_is_noise() {
        // Same per-second behaviour, different draws: the phase p99s differ
        // by +104% (a rare slow second), the per-second p99s do not move.
        let old = with_seconds(report(vec![row("queue_reap", 434.9, 0.0)]), &[("queue_reap", noisy(100.0, 120, 7))]);
        let new = with_seconds(report(vec![row("queue_reap", 888.8, 0.0)]), &[("queue_reap", noisy(100.0, 120, 8))]);
        let c = compare(&old, &new, &Limits::default());
        assert!(c.regressions.is_empty(), "{c:?}");
        let s = c.deltas[0].shift.as_ref().unwrap();
        assert!(s.lo < 1.0 && s.hi > 1.0, "{s:?}");
        assert!(table(&c).contains(&s.describe()));
    }

    #[test]
    fn hodges_lehmann_finds_a_planted_factor() {
        let old = noisy(10.0, 60, 11);
        let new: Vec<f64> = noisy(10.0, 60, 12).iter().map(|x| x * 1.5).collect();
        let s = per_second_shift(&old, &new, 95.0).unwrap();
        assert!(s.lo > 1.0 && s.ratio > 1.2 && s.ratio < 1.9, "{s:?}");
        assert!(per_second_shift(&old[..5], &new, 95.0).is_none(), "too few seconds");
    }

    #[test]
    fn order_statistics_bound_a_histograms_p99() {
        let hist = |scale: u64, n: u64| {
            let mut h = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).unwrap();
            for i in 1..=n {
                h.record(i * scale).unwrap();
            }
            coldswap_client::stats::encode_hist(&h)
        };
        let s = order_stat_shift(&hist(10, 5000), &hist(20, 5000), 95.0).unwrap();
        assert!((s.ratio - 2.0).abs() < 0.05 && s.lo > 1.9 && s.hi < 2.1, "{s:?}");
        // 150 samples, 1% apart: the interval of a 1% shift takes in 1.
        let s = order_stat_shift(&hist(100, 150), &hist(101, 150), 95.0).unwrap();
        assert!(s.lo < 1.0 && s.hi > 1.0, "{s:?}");
    }
}
