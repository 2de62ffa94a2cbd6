//! Thresholds that fail a drill (and a nightly CI job), and the verdict.

use serde::{Deserialize, Serialize};

use crate::report::{InvariantResult, Report, Threshold, Verdict};
use coldswap_client::stats::Kind;

/// Limits; a missing one is not checked.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Thresholds {
    /// Any API transaction's cold p99 over its warm p99.
    pub cold_p99_over_warm: Option<f64>,
    /// Failed API requests in the cold phase, percent.
    pub cold_error_rate_pct: Option<f64>,
    /// Write unavailability of the switchover, seconds.
    pub unavailable_s: Option<f64>,
    /// Share of the cold phase's rows examined by one statement, percent.
    pub heaviest_hitter_share_pct: Option<f64>,
    /// Statements that lint flags as full scans.
    pub full_scans: Option<u64>,
    /// Acknowledged writes missing after the switchover.
    pub lost_writes: Option<u64>,
    /// Tasks whose final state contradicts what their worker was told.
    pub status_anomalies: Option<u64>,
    /// Seconds from the switchover until the API is warm again ([warmth]);
    /// "not warm" within the cold phase fails it.
    pub time_to_warm_s: Option<f64>,
    /// With the matrix: a transaction's to-warm p99 over its from-warm p99
    /// (the version effect), called when its whole interval lies above this.
    pub version_p99_ratio: Option<f64>,
    /// Transactions with fewer requests than this in a phase are not compared.
    pub min_samples: u64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            cold_p99_over_warm: Some(10.0),
            cold_error_rate_pct: Some(1.0),
            unavailable_s: Some(5.0),
            heaviest_hitter_share_pct: Some(50.0),
            full_scans: None,
            lost_writes: Some(0),
            status_anomalies: None,
            time_to_warm_s: None,
            version_p99_ratio: Some(1.3),
            min_samples: 20,
        }
    }
}

impl Thresholds {
    /// Fail on limits that cannot be checked.
    pub fn validate(&self) -> anyhow::Result<()> {
        for (n, v) in [
            ("cold_p99_over_warm", self.cold_p99_over_warm),
            ("cold_error_rate_pct", self.cold_error_rate_pct),
            ("unavailable_s", self.unavailable_s),
            ("heaviest_hitter_share_pct", self.heaviest_hitter_share_pct),
            ("time_to_warm_s", self.time_to_warm_s),
            ("version_p99_ratio", self.version_p99_ratio),
        ] {
            if let Some(v) = v {
                if !v.is_finite() || v < 0.0 {
                    anyhow::bail!("threshold {n} must be a non-negative number, not {v}");
                }
            }
        }
        Ok(())
    }
}

fn rule(rule: &str, value: f64, limit: f64, passed: bool, detail: String) -> Threshold {
    Threshold { rule: rule.into(), value, limit, passed, checked: true, detail }
}

/// A rule whose value could not be measured: failed, and says why.
fn unchecked(rule: &str, limit: f64, why: &str) -> Threshold {
    Threshold {
        rule: rule.into(),
        value: 0.0,
        limit,
        passed: false,
        checked: false,
        detail: format!("not checked: {why}"),
    }
}

/// An invariant's JSON in the report: None when it was not part of the
/// run; Err(why) when it could not be checked.
fn invariant<'a>(r: &'a Report, key: &str) -> Option<Result<&'a serde_json::Value, String>> {
    let v = r.invariants.get(key)?;
    if v.get("checked").and_then(|c| c.as_bool()) == Some(false) {
        return Some(Err(v.get("error").and_then(|e| e.as_str()).unwrap_or("no reason recorded").to_string()));
    }
    Some(Ok(v))
}

/// Evaluate the thresholds against a report (phases, comparison, heaviest
/// hitter, lint and invariants must be filled).
pub fn evaluate(r: &Report, t: &Thresholds) -> Vec<Threshold> {
    let mut out = Vec::new();
    if let (Some(limit), Some(m)) = (t.version_p99_ratio, &r.matrix) {
        let measured: Vec<&crate::matrix::Row> = m.rows.iter().filter(|x| x.cells.version_effect.is_some()).collect();
        if measured.is_empty() {
            out.push(unchecked("version_p99_ratio", limit, "no transaction had enough requests in both warm cells"));
        } else {
            let lo = |x: &crate::matrix::Row| x.cells.version_effect.as_ref().map(|s| s.lo).unwrap_or(0.0);
            let worst = measured.iter().max_by(|a, b| lo(a).total_cmp(&lo(b))).unwrap();
            let s = worst.cells.version_effect.as_ref().unwrap();
            out.push(rule(
                "version_p99_ratio",
                s.lo,
                limit,
                s.lo <= limit,
                format!(
                    "{}: to-version warm p99 {} of the from-version's (lower end of the interval against the limit)",
                    worst.transaction,
                    s.describe()
                ),
            ));
        }
    }
    if let Some(limit) = t.cold_p99_over_warm {
        let cold = r.phase("cold");
        let warm = r.phase("warm");
        let mut worst: Option<(f64, String)> = None;
        if let (Some(c), Some(w)) = (cold, warm) {
            for ct in c.transactions.iter().filter(|x| x.kind == Kind::Transaction) {
                if let Some(wt) = w.txn(&ct.name) {
                    if ct.count >= t.min_samples && wt.count >= t.min_samples && wt.p99_ms > 0.0 {
                        let ratio = ct.p99_ms / wt.p99_ms;
                        if worst.as_ref().map(|x| ratio > x.0).unwrap_or(true) {
                            worst = Some((ratio, ct.name.clone()));
                        }
                    }
                }
            }
        }
        if let Some((v, name)) = worst {
            out.push(rule(
                "cold_p99_over_warm",
                v,
                limit,
                v <= limit,
                format!("{name}: cold p99 is {v:.1}x its warm p99"),
            ));
        }
    }
    if let Some(limit) = t.cold_error_rate_pct {
        if let Some(c) = r.phase("cold") {
            let v = c.error_rate * 100.0;
            out.push(rule(
                "cold_error_rate_pct",
                v,
                limit,
                v <= limit,
                format!("{} of {} requests failed on the cold primary", c.errors, c.requests),
            ));
        }
    }
    if let Some(limit) = t.unavailable_s {
        let sw = &r.switchover;
        let v = sw.procedure_unavailable_seconds.max(sw.client_unavailable_seconds - sw.cold_restore_seconds).max(0.0);
        out.push(rule(
            "unavailable_s",
            v,
            limit,
            v <= limit,
            format!(
                "writes unavailable {v:.2} s in the switchover itself ({:.2} s with the drill's cold restart); {} requests failed in the window",
                sw.write_unavailable_seconds, sw.failed_requests
            ),
        ));
    }
    if let Some(limit) = t.heaviest_hitter_share_pct {
        if let Some(h) = &r.heaviest_hitter {
            let v = h.share * 100.0;
            out.push(rule(
                "heaviest_hitter_share_pct",
                v,
                limit,
                v <= limit,
                format!(
                    "{} examines {v:.0}% of all rows read in the {} phase",
                    h.transaction.clone().unwrap_or_else(|| "an unknown statement".into()),
                    h.phase
                ),
            ));
        }
    }
    if let Some(limit) = t.full_scans {
        // Statements the drill sends; a background job switched off does not count.
        let names: Vec<&str> =
            r.lint.iter().filter(|l| l.full_scan && l.runs).map(|l| l.transaction.as_str()).collect();
        let n = names.len() as u64;
        let detail = if names.is_empty() {
            "no statement the drill sends scans a table fully".to_string()
        } else {
            format!("full scans: {}", names.join(", "))
        };
        out.push(rule("full_scans", n as f64, limit as f64, n <= limit, detail));
    }
    if let Some(limit) = t.lost_writes {
        match invariant(r, "ledger") {
            Some(Ok(l)) => {
                let lost = l.get("lost").and_then(|v| v.as_u64()).unwrap_or(0);
                out.push(rule(
                    "lost_writes",
                    lost as f64,
                    limit as f64,
                    lost <= limit,
                    format!("{lost} acknowledged writes missing on the new primary"),
                ));
            }
            Some(Err(why)) => out.push(unchecked("lost_writes", limit as f64, &format!("the write ledger: {why}"))),
            None => {}
        }
    }
    if let Some(limit) = t.time_to_warm_s {
        match r.time_to_warm.as_ref() {
            Some(w) => {
                let o = &w.overall;
                let (v, ok) = match o.seconds {
                    Some(s) => (s, s <= limit),
                    None => (o.observed_s, false),
                };
                out.push(rule("time_to_warm_s", v, limit, ok, o.summary.clone()));
            }
            None => out.push(unchecked("time_to_warm_s", limit, "the drill did not reach the cold phase")),
        }
    }
    if let Some(limit) = t.status_anomalies {
        match invariant(r, "status") {
            Some(Ok(st)) => {
                let n = st.get("anomalies").and_then(|v| v.as_u64()).unwrap_or(0);
                out.push(rule(
                    "status_anomalies",
                    n as f64,
                    limit as f64,
                    n <= limit,
                    format!("{n} tasks ended in a state their worker was not told"),
                ));
            }
            Some(Err(why)) => out.push(unchecked("status_anomalies", limit as f64, &format!("task states: {why}"))),
            None => {}
        }
    }
    out
}

/// The invariants of the run, each checked, failed, or failed as "not
/// checked" (never passed for want of a check). `report.invariants` holds
/// what the drill found: `checksum`, `ledger`, `status`.
pub fn invariants(r: &Report, t: &Thresholds) -> Vec<InvariantResult> {
    let mut out = Vec::new();
    let mut push = |name: &str, checked: bool, passed: bool, detail: String| {
        out.push(InvariantResult { name: name.into(), checked, passed: checked && passed, detail })
    };
    match invariant(r, "checksum") {
        Some(Ok(c)) => {
            let mismatched: Vec<String> = c["mismatched"]
                .as_array()
                .map(|a| a.iter().filter_map(|x| x.as_str().map(|s| s.to_string())).collect())
                .unwrap_or_default();
            if mismatched.is_empty() && c["consistent"].as_bool() == Some(true) {
                push(
                    "replica_consistent",
                    true,
                    true,
                    format!("primary and replica matched in all {} checksum chunks ({} rows)", c["chunks"], c["rows"]),
                );
            } else {
                let shown: Vec<&str> = mismatched.iter().take(5).map(|s| s.as_str()).collect();
                push(
                    "replica_consistent",
                    true,
                    false,
                    format!(
                        "the replica differs from its primary in {} of {} checksum chunks ({}{})",
                        mismatched.len(),
                        c["chunks"],
                        shown.join(", "),
                        if mismatched.len() > shown.len() { ", ..." } else { "" }
                    ),
                );
            }
        }
        Some(Err(why)) => push("replica_consistent", false, false, format!("not checked: {why}")),
        None => {}
    }
    match invariant(r, "ledger") {
        Some(Ok(l)) => {
            let (acked, found, lost) =
                (l["acked"].as_u64().unwrap_or(0), l["found"].as_u64().unwrap_or(0), l["lost"].as_u64().unwrap_or(0));
            let limit = t.lost_writes.unwrap_or(0);
            let on = l["checked_on"].as_str().unwrap_or("the new primary");
            let detail = if acked == 0 {
                "no acknowledged write to look up (the mix writes no ledger ids)".to_string()
            } else {
                format!("{acked} acknowledged writes, {found} found on {on}, {lost} lost")
            };
            push("write_ledger", true, lost <= limit, detail);
        }
        Some(Err(why)) => push("write_ledger", false, false, format!("not checked: {why}")),
        None => {}
    }
    match invariant(r, "status") {
        Some(Ok(st)) => {
            let guarded = st["guarded"]["anomalies"].as_u64().unwrap_or(0);
            let naive = st["naive"]["anomalies"].as_u64().unwrap_or(0);
            push(
                "task_states",
                true,
                guarded <= t.status_anomalies.unwrap_or(0),
                format!(
                    "the guarded reaper left {guarded} tasks in a state their worker was not told; the naive one {naive} (the 2017 race, shown on purpose)"
                ),
            );
        }
        Some(Err(why)) => push("task_states", false, false, format!("not checked: {why}")),
        None => {}
    }
    out
}

/// The cause the report already knows: the statement that made the server
/// do most of the work, when it stands out (its share breaks the limit, or
/// lint flagged it as a full scan before the load).
fn cause(r: &Report, t: &Thresholds) -> Option<String> {
    let h = r.heaviest_hitter.as_ref()?;
    let flagged =
        h.transaction.as_ref().map(|tx| r.lint.iter().any(|l| &l.transaction == tx && l.full_scan)).unwrap_or(false);
    let stands_out = flagged || t.heaviest_hitter_share_pct.map(|lim| h.share * 100.0 > lim).unwrap_or(false);
    if !stands_out {
        return None;
    }
    let who = match &h.transaction {
        Some(tx) => tx.clone(),
        None => format!("an unknown statement ({})", h.digest_text.chars().take(80).collect::<String>()),
    };
    Some(format!(
        "{who} examined {:.0}% of the rows read in the {} phase{}",
        h.share * 100.0,
        h.phase,
        if flagged { ", a full scan lint flagged before the load" } else { "" }
    ))
}

/// The verdict: thresholds and invariants, plus what an SRE should read first.
pub fn verdict(r: &Report, t: &Thresholds) -> Verdict {
    let failed: Vec<&Threshold> = r.thresholds.iter().filter(|t| !t.passed).collect();
    let broken: Vec<&InvariantResult> = r.invariant_results.iter().filter(|i| !i.passed).collect();
    let mut findings = Vec::new();
    if let Some(h) = &r.heaviest_hitter {
        let flagged =
            h.transaction.as_ref().map(|t| r.lint.iter().any(|l| &l.transaction == t && l.full_scan)).unwrap_or(false);
        findings.push(format!(
            "Heaviest statement in the {} phase: {} ({:.0}% of rows examined){}.",
            h.phase,
            h.transaction.clone().unwrap_or_else(|| format!("not from the mix ({})", h.digest_text)),
            h.share * 100.0,
            if flagged { ", a full scan lint flagged before the load" } else { "" }
        ));
    }
    let scans = |runs: bool| -> Vec<String> {
        r.lint
            .iter()
            .filter(|l| l.full_scan && l.runs == runs)
            .map(|l| format!("{} (est. {:.1} s per run on a cold volume)", l.transaction, l.est_cold_cost_ms / 1000.0))
            .collect()
    };
    if let Some(g) = &r.gate {
        findings.push(format!("Readiness gate ({}): {}.", g.when, g.verdict));
    }
    if let Some(m) = &r.matrix {
        let with = |v: &[&str]| -> Vec<String> {
            m.rows
                .iter()
                .filter(|x| v.contains(&x.cells.verdict.as_str()))
                .map(|x| {
                    format!(
                        "{} {}",
                        x.transaction,
                        x.cells.version_effect.as_ref().map(|s| s.describe()).unwrap_or_default()
                    )
                })
                .collect()
        };
        let (ver, cold) = (
            with(&["version regression", "both"]),
            m.rows.iter().filter(|x| x.cells.verdict == "cold penalty" || x.cells.verdict == "both").count(),
        );
        findings.push(format!(
            "Version effect apart from cold: {}; {cold} transaction(s) with a cold penalty.",
            if ver.is_empty() {
                "no version regression".to_string()
            } else {
                format!("version regression in {}", ver.join("; "))
            }
        ));
    }
    let (running, idle) = (scans(true), scans(false));
    if !running.is_empty() {
        findings.push(format!("Full scans in the mix: {}.", running.join("; ")));
    }
    if !idle.is_empty() {
        findings.push(format!("Full scans in the mix this drill did not run: {}.", idle.join("; ")));
    }
    if let Some(worst) = r
        .comparison
        .iter()
        .filter(|c| c.cold_over_warm.is_some())
        .max_by(|a, b| a.cold_over_warm.unwrap_or(0.0).total_cmp(&b.cold_over_warm.unwrap_or(0.0)))
    {
        findings.push(format!(
            "Hardest hit: {} (p99 {:.1} ms cold vs {:.1} ms warm, {:.1}x).",
            worst.transaction,
            worst.cold_p99_ms.unwrap_or(0.0),
            worst.warm_p99_ms.unwrap_or(0.0),
            worst.cold_over_warm.unwrap_or(0.0)
        ));
    }
    if let Some(c) = r.phase("cold") {
        findings.push(format!("Cold primary: {:.1}% of {} requests failed.", c.error_rate * 100.0, c.requests));
    }
    if let Some(w) = &r.time_to_warm {
        let o = &w.overall;
        findings.push(format!(
            "Time to warm: {}; {} of {} requests failed before ({:.2}% of a 30-day {}% error budget at this rate).",
            o.summary, o.failed_before, o.requests_before, o.error_budget_burned_pct, w.cfg.slo_availability_pct
        ));
        if let Some(p) = &w.projection {
            findings.push(format!("Projected time to warm: {}.", p.summary));
        }
    }
    for l in r.lint.iter().filter(|l| l.measured_first_cold_ms.is_some()) {
        findings.push(format!(
            "Prediction: lint estimated {} at {:.1} s on a cold volume; its first cold run took {:.1} s ({:.1}x): {}.",
            l.transaction,
            l.est_cold_cost_ms / 1000.0,
            l.measured_first_cold_ms.unwrap_or(0.0) / 1000.0,
            l.measured_over_predicted.unwrap_or(0.0),
            l.prediction_note
        ));
    }
    let sw = &r.switchover;
    if sw.write_unavailable_seconds > 0.0 || sw.failed_requests > 0 {
        let restart = if sw.cold_restore_seconds > 0.0 {
            format!(
                " ({:.2} s of it the drill's restart of the replica on cold storage, which production does not have)",
                sw.cold_restore_seconds
            )
        } else {
            String::new()
        };
        findings.push(format!(
            "Switchover: writes unavailable {:.2} s{restart}, {} requests failed.",
            sw.write_unavailable_seconds, sw.failed_requests
        ));
    }
    if let Some(k) = &r.kill_switch {
        findings.push(format!(
            "Kill-switch on {} at {:.0} s: error rate {:.1}% -> {:.1}%, p99 {:.0} -> {:.0} ms{}.",
            k.target,
            k.at_s,
            k.error_rate_before * 100.0,
            k.error_rate_after * 100.0,
            k.p99_before_ms,
            k.p99_after_ms,
            if k.recovered { " (recovered)" } else { " (did not recover)" }
        ));
    }
    for i in &r.invariant_results {
        let what = match i.name.as_str() {
            "replica_consistent" => "Before the switchover",
            "write_ledger" => "Write ledger",
            "task_states" => "Task states",
            other => other,
        };
        findings.push(format!("{what}: {}{}.", i.detail, if i.passed { "" } else { " (FAILED)" }));
    }
    let passed = r.complete && failed.is_empty() && broken.is_empty();
    // What failed, the cause first: the statement behind it, then its victims.
    let cause = cause(r, t);
    let mut victims: Vec<String> = broken.iter().map(|i| i.detail.clone()).collect();
    victims.extend(
        failed.iter().filter(|t| !(cause.is_some() && t.rule == "heaviest_hitter_share_pct")).map(|t| t.detail.clone()),
    );
    let headline = if !r.complete {
        // A check the stopped drill never reached is part of "incomplete";
        // one it ran and saw fail is a failure all the same.
        let why = r.incomplete_reason.clone().unwrap_or_else(|| "the drill did not finish".into());
        let seen: Vec<String> = broken.iter().filter(|i| i.checked).map(|i| i.detail.clone()).collect();
        if seen.is_empty() {
            format!("INCOMPLETE: {why}")
        } else {
            format!("FAIL: {}; {why}", seen.join("; "))
        }
    } else if failed.is_empty() && broken.is_empty() {
        "PASS: the upgrade and switchover stayed within every threshold, and every invariant held".to_string()
    } else {
        match cause {
            Some(c) if victims.is_empty() => format!("FAIL: {c}"),
            Some(c) => format!("FAIL: {c}; then: {}", victims.join("; ")),
            None => format!("FAIL: {}", victims.join("; ")),
        }
    };
    Verdict { passed, headline, findings }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Switchover;

    use crate::report::{HeaviestHitter, Lint};

    fn lint(tx: &str, full: bool) -> Lint {
        Lint {
            transaction: tx.into(),
            statement: String::new(),
            full_scan: full,
            rows_estimate: 0,
            est_cold_cost_ms: 0.0,
            scanned_tables: vec![],
            explain: vec![],
            error: None,
            runs: true,
            measured_first_cold_ms: None,
            measured_over_predicted: None,
            prediction_note: String::new(),
        }
    }

    fn concluded(mut r: Report) -> Report {
        let t = Thresholds::default();
        r.complete = true;
        r.thresholds = evaluate(&r, &t);
        r.invariant_results = invariants(&r, &t);
        r.verdict = verdict(&r, &t);
        r
    }

    #[test]
    fn an_invariant_that_could_not_be_checked_fails_as_such() {
        let r = concluded(Report {
            invariants: serde_json::json!({"ledger": {"checked": false, "error": "table write_ledger is gone"}}),
            ..Default::default()
        });
        let l = r.thresholds.iter().find(|t| t.rule == "lost_writes").expect("lost_writes evaluated");
        assert!(!l.passed && !l.checked && l.detail.contains("not checked"), "{l:?}");
        let i = r.invariant_results.iter().find(|i| i.name == "write_ledger").unwrap();
        assert!(!i.passed && !i.checked && i.detail.contains("write_ledger is gone"), "{i:?}");
        assert!(!r.verdict.passed && r.verdict.headline.starts_with("FAIL: not checked"), "{}", r.verdict.headline);
    }

    #[test]
    fn a_stopped_drill_is_incomplete_unless_a_check_it_ran_failed() {
        let stopped = |recorded: serde_json::Value| {
            let t = Thresholds::default();
            let mut r = Report {
                invariants: recorded,
                complete: false,
                incomplete_reason: Some("interrupted by SIGINT".into()),
                ..Default::default()
            };
            r.thresholds = evaluate(&r, &t);
            r.invariant_results = invariants(&r, &t);
            r.verdict = verdict(&r, &t);
            r
        };
        let never_reached = stopped(serde_json::json!({"ledger": {"checked": false, "error": "the drill stopped"}}));
        assert!(!never_reached.verdict.passed);
        assert_eq!(never_reached.verdict.headline, "INCOMPLETE: interrupted by SIGINT");
        let differs = stopped(serde_json::json!({
            "ledger": {"checked": false, "error": "the drill stopped"},
            "checksum": {"consistent": false, "chunks": 4, "rows": 9, "mismatched": ["api.accounts:0"]}}));
        assert!(!differs.verdict.passed);
        assert!(
            differs.verdict.headline.starts_with("FAIL: the replica differs")
                && differs.verdict.headline.ends_with("interrupted by SIGINT")
                && !differs.verdict.headline.contains("not checked"),
            "{}",
            differs.verdict.headline
        );
    }

    #[test]
    fn a_replica_that_differs_fails_the_drill() {
        let r = concluded(Report {
            invariants: serde_json::json!({"checksum": {"consistent": false, "chunks": 40, "rows": 9,
                "mismatched": ["api.accounts:0"]}}),
            ..Default::default()
        });
        let i = &r.invariant_results[0];
        assert_eq!(i.name, "replica_consistent");
        assert!(!i.passed && i.checked && i.detail.contains("api.accounts:0"), "{i:?}");
        assert!(!r.verdict.passed);
        let ok = concluded(Report {
            invariants: serde_json::json!({"checksum": {"consistent": true, "chunks": 40, "rows": 9, "mismatched": []},
                "ledger": {"acked": 5, "found": 5, "lost": 0, "checked_on": "node2"},
                "status": {"naive": {"anomalies": 3}, "guarded": {"anomalies": 0}, "anomalies": 3}}),
            ..Default::default()
        });
        assert!(ok.invariant_results.iter().all(|i| i.passed), "{:?}", ok.invariant_results);
        assert!(ok.verdict.passed, "{}", ok.verdict.headline);
    }

    #[test]
    fn the_headline_leads_with_the_cause_then_the_victims() {
        let mut r = Report {
            heaviest_hitter: Some(HeaviestHitter {
                phase: "cold".into(),
                digest_text: "SELECT ...".into(),
                transaction: Some("notify_schedules".into()),
                share: 0.88,
            }),
            lint: vec![lint("notify_schedules", true), lint("list_jobs", false)],
            ..Default::default()
        };
        r.thresholds = vec![
            rule("cold_p99_over_warm", 1361.0, 10.0, false, "authenticate: cold p99 is 1361.0x its warm p99".into()),
            rule("heaviest_hitter_share_pct", 88.0, 50.0, false, "notify_schedules examines 88%".into()),
        ];
        r.complete = true;
        let v = verdict(&r, &Thresholds::default());
        assert!(
            v.headline.starts_with(
                "FAIL: notify_schedules examined 88% of the rows read in the cold phase, a full scan lint flagged before the load; then: authenticate"
            ),
            "{}",
            v.headline
        );
        assert!(v.findings.iter().any(|f| f.starts_with("Hardest hit:")) || r.comparison.is_empty());
        // A heaviest statement that does not stand out is not called the cause.
        r.heaviest_hitter.as_mut().unwrap().share = 0.2;
        r.lint[0].full_scan = false;
        r.thresholds.pop();
        let v = verdict(&r, &Thresholds::default());
        assert_eq!(v.headline, "FAIL: authenticate: cold p99 is 1361.0x its warm p99");
    }

    #[test]
    fn scans_the_drill_does_not_run_are_listed_apart() {
        let mut idle = lint("notify_schedules", true);
        idle.runs = false;
        let r = concluded(Report { lint: vec![idle, lint("fixed", false)], ..Default::default() });
        assert!(
            !r.verdict.findings.iter().any(|f| f.starts_with("Full scans in the mix:")),
            "{:?}",
            r.verdict.findings
        );
        assert!(r
            .verdict
            .findings
            .iter()
            .any(|f| f.starts_with("Full scans in the mix this drill did not run: notify_schedules")));
    }

    fn unavailable(sw: Switchover) -> Threshold {
        let r = Report { switchover: sw, ..Default::default() };
        evaluate(&r, &Thresholds::default()).into_iter().find(|t| t.rule == "unavailable_s").unwrap()
    }

    #[test]
    fn the_drills_cold_restart_is_not_the_switchovers_unavailability() {
        // 6.9 s fenced, 5.9 s of it the emulator's restart: the procedure took 1.0 s.
        let t = unavailable(Switchover {
            write_unavailable_seconds: 6.9,
            cold_restore_seconds: 5.9,
            procedure_unavailable_seconds: 1.0,
            client_unavailable_seconds: 7.0,
            ..Default::default()
        });
        assert!(t.passed && (t.value - 1.1).abs() < 1e-9, "{t:?}");
        // Without a restart in the window the whole window counts.
        let t = unavailable(Switchover {
            write_unavailable_seconds: 6.9,
            procedure_unavailable_seconds: 6.9,
            ..Default::default()
        });
        assert!(!t.passed && (t.value - 6.9).abs() < 1e-9, "{t:?}");
        // Clients seeing failures longer than the server's window count too.
        let t = unavailable(Switchover {
            procedure_unavailable_seconds: 1.0,
            client_unavailable_seconds: 6.0,
            ..Default::default()
        });
        assert!(!t.passed && (t.value - 6.0).abs() < 1e-9, "{t:?}");
    }

    #[test]
    fn full_scans_count_only_statements_the_drill_sends() {
        let mut r = Report::default();
        let mut off = lint("notify_schedules", true);
        off.runs = false;
        r.lint = vec![off, lint("show_job", false)];
        let t = Thresholds { full_scans: Some(0), ..Default::default() };
        let f = evaluate(&r, &t).into_iter().find(|x| x.rule == "full_scans").unwrap();
        assert!(f.passed && f.value == 0.0, "{f:?}");
        r.lint.push(lint("list_all", true));
        let f = evaluate(&r, &t).into_iter().find(|x| x.rule == "full_scans").unwrap();
        assert!(!f.passed && f.detail == "full scans: list_all", "{f:?}");
    }
}
