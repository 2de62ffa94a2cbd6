//! `coldswap compare OLD... NEW`: per-transaction deltas between drill
//! reports (one or more earlier good runs against a new one), and the
//! regressions that should fail a nightly job.
//!
//! A p99 that moved is called a regression only beyond the noise between
//! runs, with a minimum effect: two drills of one build differ by more than
//! the seconds within either run do (in one CI run a rare job's p99 moved
//! x1.42 between two drills of one build, and the per-second test alone,
//! whose interval was [x1.22, x1.57], called it). The interval of new/old
//! for a transaction in a phase has two terms, added in quadrature on a log
//! scale:
//! - between runs: the spread of the phase p99 (log) across runs of one
//!   build, pooled from a measured prior (`Limits::run_noise`, with
//!   `run_noise_df` degrees of freedom) and the spread among the baselines
//!   given (k of them, k-1 degrees of freedom): a prediction interval for
//!   one more run, Student t quantile, sd * sqrt(1 + 1/k);
//! - within the run: the Hodges-Lehmann shift of the transaction's
//!   per-second p99s (Mann-Whitney U interval), or order statistics of the
//!   HDR histograms where it has too few seconds.
//!
//! Both the whole interval and the within-run one alone must lie above 1:
//! a phase p99 that rests on one or two slow requests (a rare job in a
//! short phase) moves without the run's seconds moving, and is not called.
//!
//! Every delta is one more chance of a false alarm: the quantile is the
//! one-sided `confidence_pct` divided over all the deltas compared
//! (Bonferroni), so a 95 % comparison of 24 transaction-phases cries wolf
//! on at most 5 % of same-build pairs, not on 70 %.

use serde::{Deserialize, Serialize};

use crate::report::Report;
use coldswap_client::stats::decode_hist;

/// What counts as a regression between reports.
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
    /// Confidence that no delta is called by chance, percent (family-wise).
    pub confidence_pct: f64,
    /// Standard deviation of ln(phase p99) between drills of one build,
    /// the prior for the between-run term (see `RUN_NOISE`).
    pub run_noise: f64,
    /// Degrees of freedom the prior counts for (runs it came from - 1).
    pub run_noise_df: f64,
}

/// Measured between-run noise: the pooled standard deviation of ln(phase
/// p99) over every transaction and phase of same-build drills (README,
/// "Comparing runs"), and the degrees of freedom it is worth.
pub const RUN_NOISE: (f64, f64) = (0.36, 5.0);

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_p99_increase_pct: 25.0,
            min_p99_increase_ms: 5.0,
            max_error_rate_increase_pts: 1.0,
            min_samples: 20,
            phases: vec!["baseline".into(), "cold".into(), "warm".into()],
            confidence_pct: 95.0,
            run_noise: RUN_NOISE.0,
            run_noise_df: RUN_NOISE.1,
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
    /// p99 of the earlier runs, ms (their geometric mean where several).
    pub old_p99_ms: f64,
    /// p99 in the new report, ms.
    pub new_p99_ms: f64,
    /// Change of p99, percent.
    pub p99_change_pct: f64,
    /// Earlier runs that had this transaction in this phase.
    #[serde(default)]
    pub baselines: usize,
    /// new/old beyond the noise: its estimate and interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shift: Option<Shift>,
    /// The within-run part alone (per-second p99s or order statistics),
    /// which must lie above 1 too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub within: Option<Shift>,
    /// Error rate in the old report (the newest earlier run).
    pub old_error_rate: f64,
    /// Error rate in the new report.
    pub new_error_rate: f64,
    /// Why it is a regression, when it is one.
    pub regression: Option<String>,
}

/// Reports compared.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Comparison {
    /// Every transaction of every phase both have.
    pub deltas: Vec<Delta>,
    /// One line per regression.
    pub regressions: Vec<String>,
    /// Thresholds that passed before and fail now.
    pub newly_failing: Vec<String>,
    /// How the intervals were made (one line).
    #[serde(default)]
    pub method: String,
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
    fn log_half_width(&self) -> f64 {
        (self.hi.max(1e-12).ln() - self.lo.max(1e-12).ln()) / 2.0
    }
}

/// Standard normal quantile (Acklam's rational approximation, relative
/// error under 1.2e-9).
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969683028665376e+01,
        2.209460984245205e+02,
        -2.759285104469687e+02,
        1.38357751867269e+02,
        -3.066479806614716e+01,
        2.506628277459239e+00,
    ];
    const B: [f64; 5] = [
        -5.447609879822406e+01,
        1.615858368580409e+02,
        -1.556989798598866e+02,
        6.680131188771972e+01,
        -1.328068155288572e+01,
    ];
    const C: [f64; 6] = [
        -7.784894002430293e-03,
        -3.223964580411365e-01,
        -2.400758277161838e+00,
        -2.549732539343734e+00,
        4.374664141464968e+00,
        2.938163982698783e+00,
    ];
    const D: [f64; 4] = [7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00, 3.754408661907416e+00];
    let p = p.clamp(1e-15, 1.0 - 1e-15);
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < 0.02425 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.02425 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

/// Student t quantile with `df` degrees of freedom: the Cornish-Fisher
/// expansion in the normal quantile (Abramowitz and Stegun 26.7.5),
/// within 1 % of the table for df >= 4 up to p = 0.999.
pub fn t_quantile(p: f64, df: f64) -> f64 {
    let z = normal_quantile(p);
    if !df.is_finite() || df > 1e6 {
        return z;
    }
    let (z3, z5, z7, z9) = (z.powi(3), z.powi(5), z.powi(7), z.powi(9));
    let g1 = (z3 + z) / 4.0;
    let g2 = (5.0 * z5 + 16.0 * z3 + 3.0 * z) / 96.0;
    let g3 = (3.0 * z7 + 19.0 * z5 + 17.0 * z3 - 15.0 * z) / 384.0;
    let g4 = (79.0 * z9 + 776.0 * z7 + 1482.0 * z5 - 1920.0 * z3 - 945.0 * z) / 92160.0;
    z + g1 / df + g2 / df.powi(2) + g3 / df.powi(3) + g4 / df.powi(4)
}

/// Hodges-Lehmann shift of `new` over `old` (per-second p99s) on a log
/// scale, as a ratio, its interval from the Mann-Whitney U distribution
/// (normal approximation) at the normal quantile `z` each side. None under
/// 8 seconds a side.
pub fn per_second_shift(old: &[f64], new: &[f64], z: f64) -> Option<Shift> {
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
    let c = (mn / 2.0 - z * sd).floor().max(0.0) as usize;
    let lo = d[c.min(d.len() - 1)];
    let hi = d[(d.len() - 1).saturating_sub(c)];
    Some(Shift {
        ratio: med.exp(),
        lo: lo.exp(),
        hi: hi.exp(),
        samples: (m as u64, n as u64),
        method: "per-second p99s, Hodges-Lehmann shift".into(),
    })
}

/// The p99 of each run from its HDR histogram, with the interval order
/// statistics give it at the normal quantile `z`; the ratio's interval
/// pairs the ends.
pub fn order_stat_shift(old: &str, new: &str, z: f64) -> Option<Shift> {
    let (ho, hn) = (decode_hist(old)?, decode_hist(new)?);
    if ho.is_empty() || hn.is_empty() {
        return None;
    }
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
        method: "p99 order statistics of the HDR histograms".into(),
    })
}

/// The ratio of two mean latencies, each from intervals of (executions,
/// mean ms), for a transient effect (the cold volume's, paid mostly in a
/// cell's first seconds): `new`'s mean is taken as paid, since its slow
/// intervals are not a sample of seconds that a redraw could miss, and
/// the interval is that of `old`'s steady mean, a percentile bootstrap
/// over its intervals at the normal quantile `z` each side (a fixed seed:
/// the same data gives the same interval). None under 8 intervals a side.
pub fn transient_mean_ratio(old: &[(u64, f64)], new: &[(u64, f64)], z: f64) -> Option<Shift> {
    if old.len() < 8 || new.len() < 8 {
        return None;
    }
    let mean = |v: &[(u64, f64)]| {
        let n: f64 = v.iter().map(|x| x.0 as f64).sum();
        (n > 0.0).then(|| v.iter().map(|x| x.0 as f64 * x.1).sum::<f64>() / n)
    };
    let (mo, mn) = (mean(old)?.max(1e-9), mean(new)?);
    // splitmix64
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut x = state;
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^ (x >> 31)
    };
    const B: usize = 20_000;
    let mut means: Vec<f64> = (0..B)
        .map(|_| {
            let (mut n, mut w) = (0.0, 0.0);
            for _ in 0..old.len() {
                let x = old[(next() % old.len() as u64) as usize];
                n += x.0 as f64;
                w += x.0 as f64 * x.1;
            }
            (w / n.max(1.0)).max(1e-9)
        })
        .collect();
    means.sort_by(|a, b| a.total_cmp(b));
    let tail = (1.0 - normal_cdf(z)).clamp(0.0, 0.5);
    let k = ((tail * B as f64).floor() as usize).min(B - 1);
    Some(Shift {
        ratio: mn / mo,
        lo: mn / means[B - 1 - k],
        hi: mn / means[k],
        samples: (old.len() as u64, new.len() as u64),
        method: "mean latency as paid over the cell, against a bootstrap of the steady cell's mean".into(),
    })
}

/// Standard normal CDF (Abramowitz-Stegun 26.2.17, error under 7.5e-8).
fn normal_cdf(x: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.231_641_9 * x.abs());
    let poly =
        t * (0.319_381_530 + t * (-0.356_563_782 + t * (1.781_477_937 + t * (-1.821_255_978 + t * 1.330_274_429))));
    let tail = (-x * x / 2.0).exp() / (2.0 * std::f64::consts::PI).sqrt() * poly;
    if x >= 0.0 {
        1.0 - tail
    } else {
        tail
    }
}

/// A transaction's per-second p99s in a phase (seconds it ran in).
pub(crate) fn seconds_of(r: &Report, phase: &str, txn: &str) -> Vec<f64> {
    r.timeline
        .iter()
        .filter(|s| s.phase == phase)
        .filter_map(|s| s.by_txn.get(txn))
        .filter(|t| t.count > 0)
        .map(|t| t.p99_ms)
        .collect()
}

/// The quantities one delta's interval is made of.
struct Candidate<'a> {
    phase: String,
    new: &'a crate::report::TxnRow,
    /// The newest earlier run's row (error rate, histogram).
    last: &'a crate::report::TxnRow,
    /// ln(p99) of each earlier run that has the transaction.
    logs: Vec<f64>,
    old_seconds: Vec<f64>,
    new_seconds: Vec<f64>,
}

/// Compare one report with one earlier one (see `compare_many`).
pub fn compare(old: &Report, new: &Report, l: &Limits) -> Comparison {
    compare_many(std::slice::from_ref(old), new, l)
}

/// Compare a new drill report with earlier good ones (oldest first),
/// transaction by transaction.
pub fn compare_many(olds: &[Report], new: &Report, l: &Limits) -> Comparison {
    let lg = |ms: f64| ms.max(1e-3).ln();
    let mut cands = Vec::new();
    for ph in &l.phases {
        let Some(pn) = new.phase(ph) else { continue };
        for tn in &pn.transactions {
            if tn.count < l.min_samples {
                continue;
            }
            let rows: Vec<(&Report, &crate::report::TxnRow)> = olds
                .iter()
                .filter_map(|r| Some((r, r.phase(ph)?.txn(&tn.name)?)))
                .filter(|(_, t)| t.count >= l.min_samples)
                .collect();
            let Some(&(_, last)) = rows.last() else { continue };
            cands.push(Candidate {
                phase: ph.clone(),
                new: tn,
                last,
                logs: rows.iter().map(|(_, t)| lg(t.p99_ms)).collect(),
                old_seconds: rows.iter().flat_map(|(r, _)| seconds_of(r, ph, &tn.name)).collect(),
                new_seconds: seconds_of(new, ph, &tn.name),
            });
        }
    }
    // One-sided, divided over every delta compared.
    let alpha = (1.0 - l.confidence_pct / 100.0) / cands.len().max(1) as f64;
    let z = normal_quantile(1.0 - alpha);
    let mut deltas = Vec::new();
    for c in &cands {
        let k = c.logs.len() as f64;
        let mean = c.logs.iter().sum::<f64>() / k;
        let own_var = if k > 1.0 { c.logs.iter().map(|y| (y - mean).powi(2)).sum::<f64>() / (k - 1.0) } else { 0.0 };
        let df = l.run_noise_df + (k - 1.0);
        let sd = ((l.run_noise_df * l.run_noise.powi(2) + (k - 1.0) * own_var) / df.max(1e-9)).sqrt();
        let between = t_quantile(1.0 - alpha, df.max(1.0)) * sd * (1.0 + 1.0 / k).sqrt();
        let within = per_second_shift(&c.old_seconds, &c.new_seconds, z)
            .or_else(|| order_stat_shift(&c.last.histogram, &c.new.histogram, z));
        let half = (between.powi(2) + within.as_ref().map_or(0.0, |w| w.log_half_width().powi(2))).sqrt();
        let centre = lg(c.new.p99_ms) - mean;
        let old_p99 = mean.exp();
        let shift = Shift {
            ratio: centre.exp(),
            lo: (centre - half).exp(),
            hi: (centre + half).exp(),
            samples: within.as_ref().map_or((0, 0), |w| w.samples),
            method: format!(
                "phase p99 over {} earlier run(s), between-run sd {sd:.2} (t, {df:.0} df){}",
                c.logs.len(),
                within.as_ref().map(|w| format!(" + within the run: {}", w.method)).unwrap_or_default()
            ),
        };
        let change = (c.new.p99_ms - old_p99) / old_p99 * 100.0;
        let mut why = Vec::new();
        // The phase p99 of a transaction with few requests is one or two
        // requests: it must have moved with the run's seconds, not alone.
        let within_too = within.as_ref().is_none_or(|w| w.lo > 1.0);
        if change > l.max_p99_increase_pct
            && c.new.p99_ms - old_p99 > l.min_p99_increase_ms
            && shift.lo > 1.0
            && within_too
        {
            why.push(format!("p99 {:.1} -> {:.1} ms (+{change:.0}%), {}", old_p99, c.new.p99_ms, shift.describe()));
        }
        if let Some(e) = error_regression(c.last, c.new, l, z) {
            why.push(e);
        }
        deltas.push(Delta {
            phase: c.phase.clone(),
            transaction: c.new.name.clone(),
            old_p99_ms: old_p99,
            new_p99_ms: c.new.p99_ms,
            p99_change_pct: change,
            baselines: c.logs.len(),
            shift: Some(shift),
            within,
            old_error_rate: c.last.error_rate,
            new_error_rate: c.new.error_rate,
            regression: (!why.is_empty()).then(|| format!("{}/{}: {}", c.phase, c.new.name, why.join(", "))),
        });
    }
    let regressions = deltas.iter().filter_map(|d| d.regression.clone()).collect();
    let newly_failing = match olds.last() {
        Some(old) => new
            .thresholds
            .iter()
            .filter(|t| !t.passed && old.thresholds.iter().any(|o| o.rule == t.rule && o.passed))
            .map(|t| format!("threshold {}: {}", t.rule, t.detail))
            .collect(),
        None => Vec::new(),
    };
    let method = format!(
        "intervals: {:.0}% one-sided, family-wise over {} deltas (Bonferroni, z {z:.2}); between runs: prior sd {:.2} \
         of ln p99 ({:.0} df) pooled with {} earlier run(s); within a run: per-second p99s or HDR order statistics",
        l.confidence_pct,
        cands.len(),
        l.run_noise,
        l.run_noise_df,
        olds.len()
    );
    Comparison { deltas, regressions, newly_failing, method }
}

/// An error rate that grew by more than the limit, beyond a two-proportion
/// test at the normal quantile `z`.
fn error_regression(to: &crate::report::TxnRow, tn: &crate::report::TxnRow, l: &Limits, z_min: f64) -> Option<String> {
    let pts = (tn.error_rate - to.error_rate) * 100.0;
    if pts <= l.max_error_rate_increase_pts {
        return None;
    }
    let (n1, n2) = (to.count as f64, tn.count as f64);
    let pooled = (to.error_rate * n1 + tn.error_rate * n2) / (n1 + n2);
    let se = (pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2)).sqrt();
    let z = if se > 0.0 { (tn.error_rate - to.error_rate) / se } else { f64::INFINITY };
    (z > z_min).then(|| {
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
    if !c.method.is_empty() {
        s.push_str(&format!("{}\n", c.method));
    }
    for r in c.regressions.iter().chain(c.newly_failing.iter()) {
        s.push_str(&format!("regression: {r}\n"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transient_mean_effect_is_bounded_by_the_steady_side_s_bootstrap() {
        assert!((normal_cdf(1.96) - 0.975).abs() < 1e-4 && (normal_cdf(-1.0) - 0.158_655).abs() < 1e-4);
        let old: Vec<(u64, f64)> = (0..15).map(|i| (20, 1.0 + (i % 3) as f64 * 0.05)).collect();
        // Cold at first, warming over the phase.
        let new: Vec<(u64, f64)> = (0..15).map(|i| (20, 1.1 + 50.0 * (-(i as f64) / 3.0).exp())).collect();
        let s = transient_mean_ratio(&old, &new, 3.0).unwrap();
        assert!(s.ratio > 10.0 && s.ratio < 13.0, "{s:?}");
        assert!(s.lo > 1.3 && s.lo < s.ratio && s.hi > s.ratio, "{s:?}");
        // Three slow intervals of fifteen, as paid, are a penalty too.
        let spike: Vec<(u64, f64)> = (0..15).map(|i| (20, if i < 3 { 50.0 } else { 1.1 })).collect();
        assert!(transient_mean_ratio(&old, &spike, 3.0).unwrap().lo > 1.3);
        // The same data both sides: the interval holds 1; a noisy steady
        // side widens it.
        let same = transient_mean_ratio(&old, &old, 3.0).unwrap();
        assert!(same.lo < 1.0 && same.hi > 1.0 && (same.ratio - 1.0).abs() < 1e-9, "{same:?}");
        let noisy: Vec<(u64, f64)> = (0..15).map(|i| (20, if i % 5 == 0 { 4.0 } else { 1.0 })).collect();
        let n = transient_mean_ratio(&noisy, &old, 3.0).unwrap();
        assert!(n.hi / n.lo > same.hi / same.lo, "{n:?} {same:?}");
        assert!(transient_mean_ratio(&old[..7], &new, 3.0).is_none());
    }
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
        assert!(s.lo > 1.0 && s.lo <= s.ratio && s.ratio <= s.hi, "{s:?}");
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
        let s = per_second_shift(&old, &new, 1.96).unwrap();
        assert!(s.lo > 1.0 && s.ratio > 1.2 && s.ratio < 1.9, "{s:?}");
        assert!(per_second_shift(&old[..5], &new, 1.96).is_none(), "too few seconds");
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
        let s = order_stat_shift(&hist(10, 5000), &hist(20, 5000), 1.96).unwrap();
        assert!((s.ratio - 2.0).abs() < 0.05 && s.lo > 1.9 && s.hi < 2.1, "{s:?}");
        // 150 samples, 1% apart: the interval of a 1% shift takes in 1.
        let s = order_stat_shift(&hist(100, 150), &hist(101, 150), 1.96).unwrap();
        assert!(s.lo < 1.0 && s.hi > 1.0, "{s:?}");
    }

    #[test]
    fn quantiles_match_the_tables() {
        for (p, want) in [(0.975, 1.95996), (0.95, 1.64485), (0.999, 3.09023), (0.5, 0.0), (0.025, -1.95996)] {
            assert!((normal_quantile(p) - want).abs() < 1e-4, "z({p}) = {}", normal_quantile(p));
        }
        for (p, df, want) in [(0.975, 4.0, 2.776), (0.995, 10.0, 3.169), (0.999, 5.0, 5.893), (0.975, 30.0, 2.042)] {
            let t = t_quantile(p, df);
            assert!((t - want).abs() / want < 0.01, "t({p}, {df}) = {t}, table {want}");
        }
    }

    #[test]
    fn history_sharpens_or_widens_the_between_run_term() {
        let at = |p99: f64| report(vec![row("list_jobs", p99, 0.0)]);
        let l = Limits::default();
        // One earlier run: a doubling is within what two runs of one build
        // may differ by (the prior alone).
        let one = compare_many(&[at(10.0)], &at(20.0), &l);
        assert!(one.regressions.is_empty(), "{one:?}");
        // Eight steady earlier runs: the same doubling is beyond them.
        let steady: Vec<Report> = [10.0, 10.4, 9.7, 10.1, 9.9, 10.2, 9.8, 10.0].iter().map(|p| at(*p)).collect();
        let eight = compare_many(&steady, &at(20.0), &l);
        assert_eq!(eight.regressions.len(), 1, "{eight:?}");
        assert_eq!(eight.deltas[0].baselines, 8);
        assert!((eight.deltas[0].old_p99_ms - 10.0).abs() < 0.2, "geometric mean of the earlier runs");
        // Earlier runs that already spread from 5 to 40 ms: 40 is not news.
        let spread: Vec<Report> = [5.0, 10.0, 20.0, 40.0].iter().map(|p| at(*p)).collect();
        let wide = compare_many(&spread, &at(40.0), &l);
        assert!(wide.regressions.is_empty(), "{wide:?}");
        let (w, e) = (wide.deltas[0].shift.as_ref().unwrap(), eight.deltas[0].shift.as_ref().unwrap());
        assert!(w.hi / w.lo > e.hi / e.lo, "a spread history widens the interval: {w:?} vs {e:?}");
    }

    #[test]
    fn more_deltas_need_more_evidence_each() {
        // The same x1.9 on one transaction: called when it is the only one
        // compared, not when it is one of 40 (Bonferroni).
        let l = Limits { run_noise: 0.15, ..Default::default() };
        let alone = compare(&report(vec![row("t0", 10.0, 0.0)]), &report(vec![row("t0", 19.0, 0.0)]), &l);
        assert_eq!(alone.regressions.len(), 1, "{alone:?}");
        let many =
            |p: f64| report((0..40).map(|i| row(&format!("t{i}"), if i == 0 { p } else { 10.0 }, 0.0)).collect());
        let among = compare(&many(10.0), &many(19.0), &l);
        assert!(among.regressions.is_empty(), "{:?}", among.deltas[0]);
        assert!(among.method.contains("over 40 deltas"), "{}", among.method);
    }
}
