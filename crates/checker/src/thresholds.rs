//! Thresholds that fail a drill (and a nightly CI job), and the verdict.

use serde::{Deserialize, Serialize};

use crate::report::{Report, Threshold, Verdict};
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
    Threshold { rule: rule.into(), value, limit, passed, detail }
}

/// Evaluate the thresholds against a report (phases, comparison, heaviest
/// hitter, lint and invariants must be filled).
pub fn evaluate(r: &Report, t: &Thresholds) -> Vec<Threshold> {
    let mut out = Vec::new();
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
        let n = r.lint.iter().filter(|l| l.full_scan).count() as u64;
        let names: Vec<&str> = r.lint.iter().filter(|l| l.full_scan).map(|l| l.transaction.as_str()).collect();
        out.push(rule("full_scans", n as f64, limit as f64, n <= limit, format!("full scans: {}", names.join(", "))));
    }
    if let Some(limit) = t.lost_writes {
        if let Some(lost) = r.invariants.get("ledger").and_then(|l| l.get("lost")).and_then(|v| v.as_u64()) {
            out.push(rule(
                "lost_writes",
                lost as f64,
                limit as f64,
                lost <= limit,
                format!("{lost} acknowledged writes missing on the new primary"),
            ));
        }
    }
    if let Some(limit) = t.status_anomalies {
        if let Some(n) = r.invariants.get("status").and_then(|l| l.get("anomalies")).and_then(|v| v.as_u64()) {
            out.push(rule(
                "status_anomalies",
                n as f64,
                limit as f64,
                n <= limit,
                format!("{n} tasks ended in a state their worker was not told"),
            ));
        }
    }
    out
}

/// The verdict: thresholds, plus what an SRE should read first.
pub fn verdict(r: &Report) -> Verdict {
    let failed: Vec<&Threshold> = r.thresholds.iter().filter(|t| !t.passed).collect();
    let mut findings = Vec::new();
    if let Some(h) = &r.heaviest_hitter {
        let flagged =
            h.transaction.as_ref().map(|t| r.lint.iter().any(|l| &l.transaction == t && l.full_scan)).unwrap_or(false);
        findings.push(format!(
            "Heaviest statement in the {} phase: {} ({:.0}% of rows examined){}.",
            h.phase,
            h.transaction.clone().unwrap_or_else(|| "not from the mix".into()),
            h.share * 100.0,
            if flagged { ", a full scan lint flagged before the load" } else { "" }
        ));
    }
    let scans: Vec<String> = r
        .lint
        .iter()
        .filter(|l| l.full_scan)
        .map(|l| format!("{} (est. {:.1} s per run on a cold volume)", l.transaction, l.est_cold_cost_ms / 1000.0))
        .collect();
    if !scans.is_empty() {
        findings.push(format!("Full scans in the mix: {}.", scans.join("; ")));
    }
    if let Some(worst) = r
        .comparison
        .iter()
        .filter(|c| c.cold_over_warm.is_some())
        .max_by(|a, b| a.cold_over_warm.unwrap_or(0.0).total_cmp(&b.cold_over_warm.unwrap_or(0.0)))
    {
        findings.push(format!(
            "Slowest to recover: {} (p99 {:.1} ms cold vs {:.1} ms warm, {:.1}x).",
            worst.transaction,
            worst.cold_p99_ms.unwrap_or(0.0),
            worst.warm_p99_ms.unwrap_or(0.0),
            worst.cold_over_warm.unwrap_or(0.0)
        ));
    }
    if let Some(c) = r.phase("cold") {
        findings.push(format!("Cold primary: {:.1}% of {} requests failed.", c.error_rate * 100.0, c.requests));
    }
    let sw = &r.switchover;
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
    if let Some(l) = r.invariants.get("ledger") {
        findings.push(format!(
            "Write ledger: {} acknowledged writes, {} found on {}, {} lost.",
            l["acked"],
            l["found"],
            l["checked_on"].as_str().unwrap_or("the new primary"),
            l["lost"]
        ));
    }
    if let Some(c) = r.invariants.get("checksum") {
        findings.push(if c["consistent"].as_bool().unwrap_or(false) {
            format!("Before the switchover, primary and replica matched in all {} checksum chunks.", c["chunks"])
        } else {
            format!(
                "Before the switchover, primary and replica DIFFERED in {} chunks.",
                c["mismatched"].as_array().map(|a| a.len()).unwrap_or(0)
            )
        });
    }
    if let Some(st) = r.invariants.get("status") {
        findings.push(format!(
            "Task states: the naive reaper left {} tasks killed after their worker was told they completed; the guarded reaper {}.",
            st["naive"]["anomalies"], st["guarded"]["anomalies"]
        ));
    }
    let passed = r.complete && failed.is_empty();
    let headline = if !r.complete {
        format!("INCOMPLETE: {}", r.incomplete_reason.clone().unwrap_or_else(|| "the drill did not finish".into()))
    } else if failed.is_empty() {
        "PASS: the upgrade and switchover stayed within every threshold".to_string()
    } else {
        format!("FAIL: {}", failed.iter().map(|t| t.detail.clone()).collect::<Vec<_>>().join("; "))
    };
    Verdict { passed, headline, findings }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Switchover;

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
}
