//! `coldswap compare OLD NEW`: per-transaction deltas between two drill
//! reports, and the regressions that should fail a nightly job.

use serde::{Deserialize, Serialize};

use crate::report::Report;

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
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_p99_increase_pct: 25.0,
            min_p99_increase_ms: 5.0,
            max_error_rate_increase_pts: 1.0,
            min_samples: 20,
            phases: vec!["baseline".into(), "cold".into(), "warm".into()],
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
            let mut why = Vec::new();
            if change > l.max_p99_increase_pct && tn.p99_ms - to.p99_ms > l.min_p99_increase_ms {
                why.push(format!("p99 {:.1} -> {:.1} ms (+{change:.0}%)", to.p99_ms, tn.p99_ms));
            }
            let pts = (tn.error_rate - to.error_rate) * 100.0;
            if pts > l.max_error_rate_increase_pts {
                why.push(format!("error rate {:.2}% -> {:.2}%", to.error_rate * 100.0, tn.error_rate * 100.0));
            }
            deltas.push(Delta {
                phase: ph.clone(),
                transaction: tn.name.clone(),
                old_p99_ms: to.p99_ms,
                new_p99_ms: tn.p99_ms,
                p99_change_pct: change,
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

/// The comparison as a table for the terminal.
pub fn table(c: &Comparison) -> String {
    let mut s = format!(
        "{:<10} {:<24} {:>10} {:>10} {:>8} {:>9} {:>9}\n",
        "phase", "transaction", "old p99", "new p99", "change", "old err", "new err"
    );
    for d in &c.deltas {
        s.push_str(&format!(
            "{:<10} {:<24} {:>10.1} {:>10.1} {:>7.0}% {:>8.2}% {:>8.2}%{}\n",
            d.phase,
            d.transaction,
            d.old_p99_ms,
            d.new_p99_ms,
            d.p99_change_pct,
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

    #[test]
    fn an_injected_regression_is_named() {
        let old = report(vec![row("show_job", 10.0, 0.0), row("list_jobs", 20.0, 0.0)]);
        let new = report(vec![row("show_job", 10.5, 0.0), row("list_jobs", 80.0, 0.05)]);
        let c = compare(&old, &new, &Limits::default());
        assert_eq!(c.regressions.len(), 1, "{c:?}");
        assert!(
            c.regressions[0].starts_with("cold/list_jobs: p99 20.0 -> 80.0 ms (+300%), error rate 0.00% -> 5.00%"),
            "{:?}",
            c.regressions
        );
        let same = compare(&old, &old, &Limits::default());
        assert!(same.regressions.is_empty());
    }
}
