//! The matrix (issue 21): the version effect apart from the cold effect.
//! One drill measures four cells at one rate on one dataset: the
//! from-version cold (`from_cold`: the primary restarted on a fresh
//! restore after the baseline) and warm (`from_warm`: after a warm-up),
//! the to-version cold (`cold`: right after the switchover) and warm
//! (`warm`: after the same warm-up). Both warm cells have the same storage
//! history, a restore then a warm-up. Per transaction:
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
//!
//! Per statement digest, from the server's digest table read about once a
//! second in each cell: executions and mean latency per cell (the digest
//! table keeps no percentiles on MariaDB), the version effect as the
//! Hodges-Lehmann shift of the per-interval means, the transient cold
//! effect as the ratio of the cells' means, the cold cell's as paid, the
//! interval from a bootstrap of the warm cell's; in the same Bonferroni
//! family as the transactions'.

use serde::{Deserialize, Serialize};

use std::collections::BTreeMap;

use crate::compare::{normal_quantile, order_stat_shift, per_second_shift, seconds_of, transient_mean_ratio, Shift};
use crate::digests::StatementSeries;
use crate::report::Report;
use coldswap_client::stats::Kind;

/// The phases that are the cells: the from-version warm (after the same
/// restore and warm-up as the to-version's).
pub const FROM_WARM: &str = "from_warm";
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

/// One row's four cells, its two effects and its verdict (a transaction's
/// or a statement's: `C` is what a cell holds).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Cells<C> {
    /// From-version, warm.
    pub from_warm: Option<C>,
    /// From-version, cold.
    pub from_cold: Option<C>,
    /// To-version, cold.
    pub to_cold: Option<C>,
    /// To-version, warm.
    pub to_warm: Option<C>,
    /// to_warm / from_warm, with its interval.
    pub version_effect: Option<Shift>,
    /// to_cold / to_warm, with its interval.
    pub cold_effect: Option<Shift>,
    /// `version regression`, `cold penalty`, `both`, `neither`, or `not enough data`.
    pub verdict: String,
}

impl<C> Cells<C> {
    /// The cells of one row (`cell(phase)`), both effects, and the verdict
    /// they give at `bound`.
    fn new(
        cell: impl Fn(&str) -> Option<C>,
        version_effect: Option<Shift>,
        cold_effect: Option<Shift>,
        bound: f64,
    ) -> Self {
        let called = |s: &Option<Shift>| s.as_ref().map(|s| s.lo > bound);
        let verdict = match (called(&version_effect), called(&cold_effect)) {
            (Some(true), Some(true)) => "both",
            (Some(true), _) => "version regression",
            (_, Some(true)) => "cold penalty",
            (Some(false), Some(false)) => "neither",
            _ => "not enough data",
        };
        Cells {
            from_warm: cell(FROM_WARM),
            from_cold: cell(FROM_COLD),
            to_cold: cell(TO_COLD),
            to_warm: cell(TO_WARM),
            version_effect,
            cold_effect,
            verdict: verdict.into(),
        }
    }
}

/// One transaction (or background job) across the cells: p99 effects.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Row {
    /// The transaction.
    pub transaction: String,
    /// Its cells, effects and verdict.
    #[serde(flatten)]
    pub cells: Cells<Cell>,
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
    /// Every statement digest with enough executions in the warm cells.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub statements: Vec<StatementRow>,
    /// Plans and settings of the two versions, compared on the primary and
    /// the upgraded replica before the switchover; results after the load,
    /// the old primary demoted and caught up with the new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub versions: Option<crate::versions::VersionDiff>,
}

/// One statement in one cell, from the digest table.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StatementCell {
    /// Executions.
    pub executions: u64,
    /// Mean latency, ms.
    pub mean_ms: f64,
}

/// One statement digest across the cells: mean-latency effects.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StatementRow {
    /// The server's digest text (the from-version's).
    pub statement: String,
    /// The transaction or background job that issues it, if known.
    pub transaction: Option<String>,
    /// Its cells, effects and verdict.
    #[serde(flatten)]
    pub cells: Cells<StatementCell>,
}

/// Executions a statement needs in a cell: `min`, or at most 5 for a
/// background job's (it runs about once a second), as for transactions.
fn statement_min(s: &StatementSeries, background: &[String], min: u64) -> u64 {
    match &s.transaction {
        Some(t) if background.contains(t) => min.min(5),
        _ => min,
    }
}

/// The statement rows: every statement the from-version ran often enough
/// warm, matched across cells by normalised text, most time first.
fn statement_rows(
    cells: &BTreeMap<String, Vec<StatementSeries>>,
    background: &[String],
    bound: f64,
    z: f64,
    min: u64,
) -> Vec<StatementRow> {
    let find = |phase: &str, key: &str| cells.get(phase).and_then(|v| v.iter().find(|s| s.key == key));
    let enough = |s: &&StatementSeries| s.executions >= statement_min(s, background, min);
    let cell = |phase: &str, key: &str| {
        find(phase, key).filter(enough).map(|s| StatementCell { executions: s.executions, mean_ms: s.mean_ms })
    };
    let effect = |old: &str, new: &str, key: &str, transient: bool| {
        let (a, b) = (find(old, key).filter(enough)?, find(new, key).filter(enough)?);
        if transient {
            transient_mean_ratio(&a.intervals, &b.intervals, z)
        } else {
            let means = |s: &StatementSeries| s.intervals.iter().map(|x| x.1).collect::<Vec<f64>>();
            per_second_shift(&means(a), &means(b), z).map(|mut s| {
                s.method = "per-interval mean latencies (digest table), Hodges-Lehmann shift".into();
                s
            })
        }
    };
    let mut base: Vec<&StatementSeries> =
        cells.get(FROM_WARM).map(|v| v.iter().filter(enough).collect()).unwrap_or_default();
    base.sort_by(|a, b| (b.mean_ms * b.executions as f64).total_cmp(&(a.mean_ms * a.executions as f64)));
    base.into_iter()
        .map(|s| {
            let version_effect = effect(FROM_WARM, TO_WARM, &s.key, false);
            let cold_effect = effect(TO_WARM, TO_COLD, &s.key, true);
            StatementRow {
                statement: s.digest_text.clone(),
                transaction: s.transaction.clone(),
                cells: Cells::new(|ph| cell(ph, &s.key), version_effect, cold_effect, bound),
            }
        })
        .collect()
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
/// `statements`: each cell's statement digests, by phase name (empty:
/// transactions only).
pub fn compute(
    r: &Report,
    bound: f64,
    confidence_pct: f64,
    min: u64,
    statements: &BTreeMap<String, Vec<StatementSeries>>,
) -> Option<Matrix> {
    r.phase(FROM_COLD)?;
    let base = r.phase(FROM_WARM)?;
    // Background jobs run about once a second: fewer runs make a cell.
    let names: Vec<(String, u64)> = base
        .transactions
        .iter()
        .map(|t| (t.name.clone(), if t.kind == Kind::Transaction { min } else { min.min(5) }))
        .collect();
    let background: Vec<String> =
        base.transactions.iter().filter(|t| t.kind != Kind::Transaction).map(|t| t.name.clone()).collect();
    let measured = statements
        .get(FROM_WARM)
        .map(|v| v.iter().filter(|s| s.executions >= statement_min(s, &background, min)).count())
        .unwrap_or(0);
    let deltas = (2 * (names.len() + measured)).max(1) as f64;
    let z = normal_quantile(1.0 - (1.0 - confidence_pct / 100.0) / deltas);
    let mut rows = Vec::new();
    for (n, min) in names {
        let version_effect = effect(r, FROM_WARM, TO_WARM, &n, z, min, false);
        let cold_effect = effect(r, TO_WARM, TO_COLD, &n, z, min, true);
        let cells = Cells::new(|ph| cell(r, ph, &n, min), version_effect, cold_effect, bound);
        rows.push(Row { transaction: n, cells });
    }
    let statements = statement_rows(statements, &background, bound, z, min);
    Some(Matrix { bound, confidence_pct, rows, statements, versions: None })
}

/// What a cell shows.
trait CellText {
    fn text(&self) -> String;
}

impl CellText for Cell {
    fn text(&self) -> String {
        format!("{:.1} / {:.1}", self.p50_ms, self.p99_ms)
    }
}

impl CellText for StatementCell {
    fn text(&self) -> String {
        format!("{:.2} ({})", self.mean_ms, self.executions)
    }
}

/// A row's columns after its label: four cells, two effects, the verdict.
fn columns<C: CellText>(c: &Cells<C>) -> [String; 7] {
    let cell = |x: &Option<C>| x.as_ref().map(|c| c.text()).unwrap_or("-".into());
    let effect = |x: &Option<Shift>| x.as_ref().map(|s| s.describe()).unwrap_or("-".into());
    [
        cell(&c.from_warm),
        cell(&c.from_cold),
        cell(&c.to_cold),
        cell(&c.to_warm),
        effect(&c.version_effect),
        effect(&c.cold_effect),
        c.verdict.clone(),
    ]
}

fn md_row(label: &str, cols: [String; 7]) -> String {
    format!("| {} | {} |\n", label.replace('|', "\\|"), cols.join(" | "))
}

/// `label` is HTML already.
fn html_row(label: &str, cols: [String; 7]) -> String {
    use crate::render::esc;
    let cells: String = cols.iter().map(|c| format!("<td>{}</td>", esc(c))).collect();
    format!("<tr><td>{label}</td>{cells}</tr>")
}

/// A statement's text cut for a table cell, with who issues it.
fn stmt_text(r: &StatementRow) -> String {
    let mut t: String = r.statement.chars().take(90).collect();
    if t.len() < r.statement.len() {
        t.push_str("...");
    }
    match &r.transaction {
        Some(n) => format!("{n}: {t}"),
        None => t,
    }
}

const STATEMENTS_NOTE: &str = "Per statement digest: mean ms (executions) per cell, from the server's digest table read about once a second (it keeps no percentiles on MariaDB). Effects are ratios of mean latency: the version effect the shift of the typical interval, the cold effect the cold cell's mean as paid against the warm cell's, each with its interval.";

/// The table as Markdown.
pub fn markdown(m: &Matrix) -> String {
    let mut o = format!(
        "## Version effect apart from the cold effect\n\np50 / p99 ms per cell; effects are p99 ratios with their {}% intervals (Bonferroni over the table); an effect is called when its interval lies above x{:.2}.\n\n\
         | transaction | from warm | from cold | to cold | to warm | version (to/from warm) | cold (to cold/warm) | verdict |\n|---|---|---|---|---|---|---|---|\n",
        m.confidence_pct, m.bound
    );
    for r in &m.rows {
        o.push_str(&md_row(&r.transaction, columns(&r.cells)));
    }
    if !m.statements.is_empty() {
        o.push_str(&format!(
            "\n{STATEMENTS_NOTE}\n\n| statement | from warm | from cold | to cold | to warm | version (to/from warm) | cold (to cold/warm) | verdict |\n|---|---|---|---|---|---|---|---|\n"
        ));
        for r in &m.statements {
            o.push_str(&md_row(&stmt_text(r), columns(&r.cells)));
        }
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
            .and_then(|r| r.cells.version_effect.as_ref())
            .map(|e| format!(" (version effect {})", e.describe()))
            .unwrap_or_default();
        o.push_str(&format!("- {}{eff}: {}: {}\n", s.transaction, s.statement, s.plan_changes.join("; ")));
    }
    o.push_str(&format!(
        "\nResults: {}; {} statement(s) returned different results.\n",
        v.results.as_deref().unwrap_or("not compared"),
        v.result_differences
    ));
    for s in v.statements.iter().filter(|s| !s.result_differences.is_empty()) {
        o.push_str(&format!("- {}: {}: {}\n", s.transaction, s.statement, s.result_differences.join("; ")));
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
    let mut o = format!(
        "<h2>Version effect apart from the cold effect</h2><p>p50 / p99 ms per cell; effects are p99 ratios with their {}% intervals (Bonferroni over the table); an effect is called when its interval lies above x{:.2}.</p>\
         <table><tr><th>transaction</th><th>from warm</th><th>from cold</th><th>to cold</th><th>to warm</th><th>version (to/from warm)</th><th>cold (to cold/warm)</th><th>verdict</th></tr>",
        m.confidence_pct, m.bound
    );
    for r in &m.rows {
        o.push_str(&html_row(&esc(&r.transaction), columns(&r.cells)));
    }
    o.push_str("</table>");
    if !m.statements.is_empty() {
        o.push_str(&format!(
            "<p>{STATEMENTS_NOTE}</p><table><tr><th>statement</th><th>from warm</th><th>from cold</th><th>to cold</th><th>to warm</th><th>version (to/from warm)</th><th>cold (to cold/warm)</th><th>verdict</th></tr>"
        ));
        for r in &m.statements {
            o.push_str(&html_row(&format!("<code>{}</code>", esc(&stmt_text(r))), columns(&r.cells)));
        }
        o.push_str("</table>");
    }
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
        // The same shapes per statement, as the digest table's per-interval means.
        let stmts: BTreeMap<String, Vec<StatementSeries>> = cells
            .iter()
            .map(|(name, levels)| {
                let v = levels
                    .iter()
                    .map(|(n, ms)| StatementSeries {
                        key: format!("select{n}"),
                        digest_text: format!("SELECT {n}"),
                        transaction: Some(n.to_string()),
                        executions: 200,
                        mean_ms: *ms,
                        intervals: (0..20u64)
                            .map(|t| (10, ms * (1.0 + 0.05 * (((t * 7919) % 11) as f64 / 10.0 - 0.5))))
                            .collect(),
                    })
                    .collect();
                (name.to_string(), v)
            })
            .collect();
        let m = compute(&r, 1.3, 95.0, 20, &stmts).unwrap();
        let v = |n: &str| m.rows.iter().find(|x| x.transaction == n).unwrap().cells.verdict.clone();
        let sv =
            |n: &str| m.statements.iter().find(|x| x.statement == format!("SELECT {n}")).unwrap().cells.verdict.clone();
        assert_eq!(
            (sv("plan").as_str(), sv("scan").as_str(), sv("point").as_str()),
            ("both", "cold penalty", "neither")
        );
        // Most time first; a statement too rare in the warm cell has no row.
        assert_eq!(m.statements[0].statement, "SELECT scan");
        let mut few = stmts.clone();
        few.get_mut(FROM_WARM).unwrap()[2].executions = 5;
        assert_eq!(compute(&r, 1.3, 95.0, 20, &few).unwrap().statements.len(), 2);
        assert!(markdown(&m).contains("| point: SELECT point | 1.00 (200) |"), "{}", markdown(&m));
        assert_eq!(v("plan"), "both");
        assert_eq!(v("scan"), "cold penalty");
        assert_eq!(v("point"), "neither");
        let plan = m.rows.iter().find(|x| x.transaction == "plan").unwrap();
        assert!((plan.cells.version_effect.as_ref().unwrap().ratio - 5.0).abs() < 0.3);
        assert!(markdown(&m).contains("| scan |"));
        // Without the from-cold cell there is no matrix.
        r.phases.retain(|p| p.name != FROM_COLD);
        assert!(compute(&r, 1.3, 95.0, 20, &stmts).is_none());
    }
}
