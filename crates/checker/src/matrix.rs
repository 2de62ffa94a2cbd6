//! The matrix (issue 21): the version effect apart from the cold effect.
//! One drill measures four cells at one rate on one dataset: the
//! from-version cold (`from_cold`: the primary restarted on a fresh
//! restore) and warm (`baseline`), the to-version cold (`cold`: right after
//! the switchover) and warm (`warm`: after the warm-up). Per transaction:
//! * the version effect, to-warm p99 over from-warm p99;
//! * the cold effect, to-cold p99 over to-warm p99;
//!
//! each with an interval, Bonferroni-corrected over every effect in the
//! table, and a verdict: version regression, cold penalty, both, or
//! neither. An effect is called only when its whole interval lies above the
//! bound. The version effect is steady: the Hodges-Lehmann shift of the
//! per-second p99s (a stalled second does not move it). The cold effect is
//! transient, paid mostly in the first seconds after the switchover: the
//! phase p99s compared through their HDR histograms' order statistics.
//! Each falls back on the other method where its own lacks data (under 8
//! seconds a side; no histogram).

use serde::{Deserialize, Serialize};

use crate::compare::{normal_quantile, order_stat_shift, per_second_shift, seconds_of, Shift};
use crate::report::Report;
use coldswap_client::stats::Kind;

/// The phases that are the cells.
pub const FROM_WARM: &str = "baseline";
/// The from-version on a fresh restore.
pub const FROM_COLD: &str = "from_cold";
/// The to-version right after the switchover.
pub const TO_COLD: &str = "cold";
/// The to-version after the warm-up.
pub const TO_WARM: &str = "warm";

/// One transaction in one cell.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Cell {
    /// Requests.
    pub requests: u64,
    /// p50, ms.
    pub p50_ms: f64,
    /// p99, ms.
    pub p99_ms: f64,
}

/// One transaction (or background job) across the cells.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Row {
    /// The transaction.
    pub transaction: String,
    /// From-version, warm.
    pub from_warm: Option<Cell>,
    /// From-version, cold.
    pub from_cold: Option<Cell>,
    /// To-version, cold.
    pub to_cold: Option<Cell>,
    /// To-version, warm.
    pub to_warm: Option<Cell>,
    /// to_warm / from_warm p99, with its interval.
    pub version_effect: Option<Shift>,
    /// to_cold / to_warm p99, with its interval.
    pub cold_effect: Option<Shift>,
    /// `version regression`, `cold penalty`, `both`, `neither`, or `not enough data`.
    pub verdict: String,
}

/// The table.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Matrix {
    /// An effect is called when its interval's lower end exceeds this ratio.
    pub bound: f64,
    /// One-sided confidence of each interval before the correction, percent.
    pub confidence_pct: f64,
    /// Every transaction with enough requests in the cells.
    pub rows: Vec<Row>,
    /// Plans and settings of the two versions, compared on the primary and
    /// the upgraded replica before the switchover (results are compared by
    /// `coldswap version-diff`, on servers nothing writes to).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub versions: Option<crate::versions::VersionDiff>,
}

fn cell(r: &Report, phase: &str, txn: &str, min: u64) -> Option<Cell> {
    let t = r.phase(phase)?.txn(txn)?;
    (t.count >= min).then_some(Cell { requests: t.count, p50_ms: t.p50_ms, p99_ms: t.p99_ms })
}

/// How `new`'s p99 compares with `old`'s. A steady effect (the version's)
/// is the shift of the typical second, which one stalled second does not
/// move; a transient one (the cold volume's, paid mostly in the first
/// seconds) is the phase's own p99, from the histograms' order statistics.
fn effect(r: &Report, old: &str, new: &str, txn: &str, z: f64, min: u64, transient: bool) -> Option<Shift> {
    let (a, b) = (r.phase(old)?.txn(txn)?, r.phase(new)?.txn(txn)?);
    if a.count < min || b.count < min {
        return None;
    }
    let seconds = || per_second_shift(&seconds_of(r, old, txn), &seconds_of(r, new, txn), z);
    let tails = || order_stat_shift(&a.histogram, &b.histogram, z);
    if transient {
        tails().or_else(seconds)
    } else {
        seconds().or_else(tails)
    }
}

/// The matrix of a drill that ran the four cells (None when it did not:
/// no `from_cold` phase). `min` requests per cell, as the thresholds'.
pub fn compute(r: &Report, bound: f64, confidence_pct: f64, min: u64) -> Option<Matrix> {
    r.phase(FROM_COLD)?;
    let base = r.phase(FROM_WARM)?;
    // Background jobs run about once a second: fewer runs make a cell.
    let names: Vec<(String, u64)> = base
        .transactions
        .iter()
        .map(|t| (t.name.clone(), if t.kind == Kind::Transaction { min } else { min.min(5) }))
        .collect();
    let deltas = (2 * names.len()).max(1) as f64;
    let z = normal_quantile(1.0 - (1.0 - confidence_pct / 100.0) / deltas);
    let mut rows = Vec::new();
    for (n, min) in names {
        let version_effect = effect(r, FROM_WARM, TO_WARM, &n, z, min, false);
        let cold_effect = effect(r, TO_WARM, TO_COLD, &n, z, min, true);
        let called = |s: &Option<Shift>| s.as_ref().map(|s| s.lo > bound);
        let verdict = match (called(&version_effect), called(&cold_effect)) {
            (Some(true), Some(true)) => "both",
            (Some(true), _) => "version regression",
            (_, Some(true)) => "cold penalty",
            (Some(false), Some(false)) => "neither",
            _ => "not enough data",
        };
        rows.push(Row {
            from_warm: cell(r, FROM_WARM, &n, min),
            from_cold: cell(r, FROM_COLD, &n, min),
            to_cold: cell(r, TO_COLD, &n, min),
            to_warm: cell(r, TO_WARM, &n, min),
            transaction: n,
            version_effect,
            cold_effect,
            verdict: verdict.into(),
        });
    }
    Some(Matrix { bound, confidence_pct, rows, versions: None })
}

fn cell_text(x: &Option<Cell>) -> String {
    x.as_ref().map(|c| format!("{:.1} / {:.1}", c.p50_ms, c.p99_ms)).unwrap_or("-".into())
}

fn effect_text(x: &Option<Shift>) -> String {
    x.as_ref().map(|s| s.describe()).unwrap_or("-".into())
}

/// The table as Markdown.
pub fn markdown(m: &Matrix) -> String {
    let (c, e) = (cell_text, effect_text);
    let mut o = format!(
        "## Version effect apart from the cold effect\n\np50 / p99 ms per cell; effects are p99 ratios with their {}% intervals (Bonferroni over the table); an effect is called when its interval lies above x{:.2}.\n\n\
         | transaction | from warm | from cold | to cold | to warm | version (to/from warm) | cold (to cold/warm) | verdict |\n|---|---|---|---|---|---|---|---|\n",
        m.confidence_pct, m.bound
    );
    for r in &m.rows {
        o.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.transaction,
            c(&r.from_warm),
            c(&r.from_cold),
            c(&r.to_cold),
            c(&r.to_warm),
            e(&r.version_effect),
            e(&r.cold_effect),
            r.verdict
        ));
    }
    if let Some(v) = &m.versions {
        o.push_str(&format!("\n{}\n", changes_text(m, v)));
    }
    o
}

/// Plan changes beside their transaction's version effect, then the
/// settings that differ.
fn changes_text(m: &Matrix, v: &crate::versions::VersionDiff) -> String {
    let mut o = format!("Plans on {} and {}: ", v.from_version, v.to_version);
    let changed: Vec<&crate::versions::StatementDiff> =
        v.statements.iter().filter(|s| !s.plan_changes.is_empty()).collect();
    if changed.is_empty() {
        o.push_str("no statement's plan changed.\n");
    } else {
        o.push_str(&format!("{} statement(s) changed plan:\n", changed.len()));
    }
    for s in changed {
        let eff = m
            .rows
            .iter()
            .find(|r| r.transaction == s.transaction)
            .and_then(|r| r.version_effect.as_ref())
            .map(|e| format!(" (version effect {})", e.describe()))
            .unwrap_or_default();
        o.push_str(&format!("- {}{eff}: {}: {}\n", s.transaction, s.statement, s.plan_changes.join("; ")));
    }
    o.push_str(&format!("\n{} setting(s) differ (from -> to):\n", v.settings.len()));
    for s in &v.settings {
        o.push_str(&format!("- {}: {}\n", s.name, s.change()));
    }
    o
}

/// The table as HTML.
pub fn html(m: &Matrix) -> String {
    use crate::render::esc;
    let (c, e) = (cell_text, effect_text);
    let mut o = format!(
        "<h2>Version effect apart from the cold effect</h2><p>p50 / p99 ms per cell; effects are p99 ratios with their {}% intervals (Bonferroni over the table); an effect is called when its interval lies above x{:.2}.</p>\
         <table><tr><th>transaction</th><th>from warm</th><th>from cold</th><th>to cold</th><th>to warm</th><th>version (to/from warm)</th><th>cold (to cold/warm)</th><th>verdict</th></tr>",
        m.confidence_pct, m.bound
    );
    for r in &m.rows {
        o.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&r.transaction),
            c(&r.from_warm),
            c(&r.from_cold),
            c(&r.to_cold),
            c(&r.to_warm),
            e(&r.version_effect),
            e(&r.cold_effect),
            esc(&r.verdict)
        ));
    }
    o.push_str("</table>");
    if let Some(v) = &m.versions {
        o.push_str(&format!("<pre>{}</pre>", esc(&changes_text(m, v))));
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Phase, TxnRow};
    use coldswap_client::stats::{SecondSummary, TxnSecond};

    fn phase(name: &str, p99: &[(&str, f64)]) -> Phase {
        Phase {
            name: name.into(),
            start_s: 0.0,
            end_s: 20.0,
            transactions: p99
                .iter()
                .map(|(n, p)| TxnRow {
                    name: n.to_string(),
                    kind: Kind::Transaction,
                    count: 200,
                    ok: 200,
                    errors: Default::default(),
                    error_rate: 0.0,
                    throughput_per_s: 10.0,
                    first_ms: None,
                    p50_ms: p / 2.0,
                    p90_ms: *p,
                    p95_ms: *p,
                    p99_ms: *p,
                    p999_ms: *p,
                    max_ms: *p,
                    error_samples: vec![],
                    histogram: String::new(),
                })
                .collect(),
            top_digests: vec![],
            requests: 0,
            errors: 0,
            error_rate: 0.0,
            p50_ms: 0.0,
            p99_ms: 0.0,
        }
    }

    /// 20 seconds per phase, each second's p99 near the level (a small deterministic wobble).
    fn seconds(r: &mut Report, name: &str, levels: &[(&str, f64)]) {
        for t in 0..20u64 {
            let wobble = 1.0 + 0.05 * (((t * 7919) % 11) as f64 / 10.0 - 0.5);
            let by_txn = levels
                .iter()
                .map(|(n, p)| (n.to_string(), TxnSecond { count: 10, errors: 0, p99_ms: p * wobble }))
                .collect();
            r.timeline.push(SecondSummary {
                t,
                phase: name.into(),
                count: 10,
                errors: 0,
                errors_by_class: Default::default(),
                p50_ms: 1.0,
                p99_ms: 1.0,
                max_ms: 1.0,
                by_txn,
            });
        }
    }

    #[test]
    fn the_two_effects_are_told_apart() {
        // plan: slower on the new version, warm or cold; scan: slow only cold; point: neither.
        let cells = [
            (FROM_WARM, [("plan", 2.0), ("scan", 5.0), ("point", 1.0)]),
            (FROM_COLD, [("plan", 8.0), ("scan", 60.0), ("point", 3.0)]),
            (TO_COLD, [("plan", 20.0), ("scan", 60.0), ("point", 1.05)]),
            (TO_WARM, [("plan", 10.0), ("scan", 5.2), ("point", 1.0)]),
        ];
        let mut r = Report::default();
        for (name, levels) in &cells {
            r.phases.push(phase(name, levels));
            seconds(&mut r, name, levels);
        }
        let m = compute(&r, 1.3, 95.0, 20).unwrap();
        let v = |n: &str| m.rows.iter().find(|x| x.transaction == n).unwrap().verdict.clone();
        assert_eq!(v("plan"), "both");
        assert_eq!(v("scan"), "cold penalty");
        assert_eq!(v("point"), "neither");
        let plan = m.rows.iter().find(|x| x.transaction == "plan").unwrap();
        assert!((plan.version_effect.as_ref().unwrap().ratio - 5.0).abs() < 0.3);
        assert!(markdown(&m).contains("| scan |"));
        // Without the from-cold cell there is no matrix.
        r.phases.retain(|p| p.name != FROM_COLD);
        assert!(compute(&r, 1.3, 95.0, 20).is_none());
    }
}
