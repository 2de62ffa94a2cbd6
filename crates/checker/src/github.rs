//! GitHub Actions: a drill's report in the job's step summary, and each
//! failed threshold or invariant as an error annotation, so a nightly
//! failure reads on the run's page without downloading the artifact.
//!
//! Both follow GitHub's workflow commands: the summary is Markdown
//! appended to the file `GITHUB_STEP_SUMMARY` names; an annotation is a
//! `::error title=...::message` line on standard output.

use std::io::Write as _;

use crate::render;
use crate::report::Report;

/// Escape a workflow command's message (%, CR, LF).
fn esc_message(s: &str) -> String {
    s.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A")
}

/// Escape a workflow command's property (also : and ,).
fn esc_property(s: &str) -> String {
    esc_message(s).replace(':', "%3A").replace(',', "%2C")
}

/// One `::error` line per failed threshold and per invariant that failed
/// or could not be checked; a `::warning` for an incomplete drill.
pub fn annotations(r: &Report) -> Vec<String> {
    let mut out = Vec::new();
    for t in r.thresholds.iter().filter(|t| !t.passed) {
        let what = if t.checked {
            format!("{} = {:.3} over its limit {}: {}", t.rule, t.value, t.limit, t.detail)
        } else {
            format!("{} could not be measured (limit {}): {}", t.rule, t.limit, t.detail)
        };
        out.push(format!(
            "::error title={}::{}",
            esc_property(&format!("coldswap threshold {}", t.rule)),
            esc_message(&what)
        ));
    }
    for i in r.invariant_results.iter().filter(|i| !i.passed) {
        let what = if i.checked {
            format!("{} broken: {}", i.name, i.detail)
        } else {
            format!("{} not checked: {}", i.name, i.detail)
        };
        out.push(format!(
            "::error title={}::{}",
            esc_property(&format!("coldswap invariant {}", i.name)),
            esc_message(&what)
        ));
    }
    if !r.complete {
        let why = r.incomplete_reason.as_deref().unwrap_or("stopped part-way");
        out.push(format!("::warning title=coldswap drill incomplete::{}", esc_message(why)));
    }
    out
}

/// When run inside GitHub Actions (`GITHUB_STEP_SUMMARY` set): append the
/// report's Markdown to the step summary and print the annotations.
/// Returns whether it did.
pub fn publish(r: &Report) -> anyhow::Result<bool> {
    let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY").filter(|p| !p.is_empty()) else {
        return Ok(false);
    };
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| anyhow::anyhow!("GITHUB_STEP_SUMMARY {}: {e}", std::path::Path::new(&path).display()))?;
    writeln!(f, "{}\n", render::markdown(r))?;
    let mut out = std::io::stdout().lock();
    for a in annotations(r) {
        writeln!(out, "{a}")?;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{InvariantResult, Threshold};

    #[test]
    fn failed_rules_become_escaped_annotations() {
        let mut r = Report { complete: true, ..Default::default() };
        r.thresholds.push(Threshold {
            rule: "cold_p99_over_warm".into(),
            value: 97.5,
            limit: 10.0,
            passed: false,
            checked: true,
            detail: "notify_schedules: 51,708 ms cold, 100% slower\nsee report".into(),
        });
        r.thresholds.push(Threshold {
            rule: "lost_writes".into(),
            value: 0.0,
            limit: 0.0,
            passed: true,
            checked: true,
            detail: String::new(),
        });
        r.invariant_results.push(InvariantResult {
            name: "task_states".into(),
            checked: false,
            passed: false,
            detail: "queue off".into(),
        });
        let a = annotations(&r);
        assert_eq!(a.len(), 2, "{a:?}");
        assert_eq!(
            a[0],
            "::error title=coldswap threshold cold_p99_over_warm::cold_p99_over_warm = 97.500 over its limit 10: notify_schedules: 51,708 ms cold, 100%25 slower%0Asee report"
        );
        assert_eq!(a[1], "::error title=coldswap invariant task_states::task_states not checked: queue off");
        assert_eq!(esc_property("a:b,c"), "a%3Ab%2Cc");
    }
}
