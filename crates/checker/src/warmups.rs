//! `coldswap warmups`: one drill per warm-up technique on the same
//! dataset, compared on what a team cares about after the switchover: how
//! long the API stays cold, what fails meanwhile, and what the warm-up
//! itself costs. Built from the drills' reports alone.

use crate::render::esc;
use crate::Report;
use serde::{Deserialize, Serialize};
use std::fmt::Write;

/// One technique's drill, summarized.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Row {
    /// The technique's name in the table (`none`, `buffer-pool-25`, ...).
    pub technique: String,
    /// What it does, in words.
    pub what: String,
    /// Whether its drill ran to the end.
    pub complete: bool,
    /// Why it did not, when it did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Seconds from the switchover until the API was warm; None: not warm
    /// within `observed_s`, or not measured.
    pub time_to_warm_s: Option<f64>,
    /// The window watched after the switchover, s.
    pub observed_s: f64,
    /// "warm 12 s after the switchover" or "not warm within 30 s".
    pub time_to_warm: String,
    /// API requests that failed before the API was warm (in the whole
    /// window when it never was).
    pub failed_before_warm: u64,
    /// API requests of the cold phase (after the switchover), and failed.
    pub cold_requests: u64,
    /// Failed API requests of the cold phase.
    pub cold_failed: u64,
    /// p99 of all API requests in the cold phase, ms (merged histograms).
    pub cold_p99_ms: f64,
    /// The worst second's p99 in the first minute after the switchover, ms.
    pub first_minute_worst_p99_ms: f64,
    /// The baseline's p99 (the warm primary before the upgrade), ms.
    pub baseline_p99_ms: f64,
    /// How long the warm-up before the switchover took, s.
    pub warmup_s: f64,
    /// What it read from the cold volume, MiB (blocks it fetched x block size).
    pub warmup_mib: f64,
    /// What the warm-up reported (pages loaded, files read ...).
    #[serde(default)]
    pub warmup_detail: String,
    /// Per-second p99 since the switchover: (seconds, ms).
    #[serde(default)]
    pub series: Vec<(f64, f64)>,
    /// The drill's report directory, relative to the comparison's.
    pub report: String,
}

/// The comparison (`warmups.json`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Table {
    /// Whether every technique's drill ran to the end.
    pub complete: bool,
    /// How the runs were made (same dataset, rate, durations ...).
    pub method: String,
    /// The time-to-warm rule used.
    pub rule: String,
    /// Fastest to warm first.
    pub rows: Vec<Row>,
}

/// A technique's row from its drill's report.
pub fn row(technique: &str, what: &str, r: &Report, report_dir: &str) -> Row {
    let sw = r.events.iter().find(|e| e.name == "switchover").map(|e| e.t);
    let cold = r.phase("cold");
    let base = r.phase("baseline");
    let ttw = r.time_to_warm.as_ref();
    let series: Vec<(f64, f64)> = match (sw, cold) {
        (Some(sw), Some(c)) => r
            .timeline
            .iter()
            .filter(|s| s.t as f64 + 1.0 > sw && (s.t as f64) < c.end_s && s.count > 0)
            .map(|s| ((s.t as f64 - sw).max(0.0), s.p99_ms))
            .collect(),
        _ => vec![],
    };
    let first_minute_worst_p99_ms = series.iter().filter(|(t, _)| *t < 60.0).map(|x| x.1).fold(0.0, f64::max);
    let pre = &r.prewarm;
    let block_kib = r.storage["config"]["block_kib"].as_f64().unwrap_or(64.0);
    Row {
        technique: technique.into(),
        what: what.into(),
        complete: r.complete,
        error: r.incomplete_reason.clone(),
        time_to_warm_s: ttw.and_then(|t| t.overall.seconds),
        observed_s: ttw.map(|t| t.overall.observed_s).unwrap_or(0.0),
        time_to_warm: ttw.map(|t| t.overall.summary.clone()).unwrap_or_else(|| "not measured".into()),
        failed_before_warm: ttw.map(|t| t.overall.failed_before).unwrap_or(0),
        cold_requests: cold.map(|c| c.requests).unwrap_or(0),
        cold_failed: cold.map(|c| c.errors).unwrap_or(0),
        cold_p99_ms: cold.map(|c| c.p99_ms).unwrap_or(0.0),
        first_minute_worst_p99_ms,
        baseline_p99_ms: base.map(|b| b.p99_ms).unwrap_or(0.0),
        warmup_s: pre["seconds"].as_f64().unwrap_or(0.0),
        warmup_mib: pre["blocks_fetched"].as_f64().unwrap_or(0.0) * block_kib / 1024.0,
        warmup_detail: pre["detail"].as_str().unwrap_or("").to_string(),
        series,
        report: report_dir.into(),
    }
}

/// Fastest to warm first; never-warm (and unmeasured) last, by fewer
/// failures, then by the cold phase's p99.
pub fn order(rows: &mut [Row]) {
    rows.sort_by(|a, b| {
        let key = |r: &Row| (!r.complete, r.time_to_warm_s.is_none(), r.time_to_warm_s.unwrap_or(f64::INFINITY));
        let (ka, kb) = (key(a), key(b));
        ka.0.cmp(&kb.0)
            .then(ka.1.cmp(&kb.1))
            .then(ka.2.total_cmp(&kb.2))
            .then(a.cold_failed.cmp(&b.cold_failed))
            .then(a.cold_p99_ms.total_cmp(&b.cold_p99_ms))
    });
}

/// The warm-up's own cost, when one ran: (seconds, MiB from the volume).
fn warmed(r: &Row) -> Option<(f64, f64)> {
    (!r.warmup_detail.is_empty() && r.warmup_detail != "no warm-up").then_some((r.warmup_s, r.warmup_mib))
}

fn secs(r: &Row) -> String {
    match (r.complete, r.time_to_warm_s) {
        (false, _) => "did not run to the end".into(),
        (true, Some(s)) => format!("{s:.0} s"),
        (true, None) => format!("not warm within {:.0} s", r.observed_s),
    }
}

/// warmups.md
pub fn markdown(t: &Table) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Warm-up techniques compared\n");
    let _ = writeln!(s, "{}\n", t.method);
    let _ = writeln!(s, "Time to warm: {}\n", t.rule);
    let _ = writeln!(
        s,
        "| technique | time to warm | failed before warm | cold phase: failed / requests | cold p99 | worst 1 s p99, first minute | warm-up before the switchover |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|");
    for r in &t.rows {
        let warmup = warmed(r).map(|(s, mib)| format!("{s:.1} s, {mib:.0} MiB from the volume")).unwrap_or("-".into());
        let _ = writeln!(
            s,
            "| `{}` | {} | {} | {} / {} | {:.0} ms | {:.0} ms | {} |",
            r.technique,
            secs(r),
            r.failed_before_warm,
            r.cold_failed,
            r.cold_requests,
            r.cold_p99_ms,
            r.first_minute_worst_p99_ms,
            warmup
        );
    }
    let _ = writeln!(s);
    for r in &t.rows {
        let _ = writeln!(
            s,
            "* `{}`: {}{}",
            r.technique,
            r.what,
            r.error.as_ref().map(|e| format!(" ({e})")).unwrap_or_default()
        );
    }
    s
}

const COLORS: [&str; 8] = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#17becf", "#7f7f7f"];

/// p99 per second since the switchover, one line per technique (log scale).
fn chart(t: &Table) -> String {
    let (w, h, ml, mr, mt, mb) = (960.0, 320.0, 64.0, 180.0, 24.0, 30.0);
    let (pw, ph) = (w - ml - mr, h - mt - mb);
    let tmax = t.rows.iter().flat_map(|r| r.series.iter().map(|x| x.0 + 1.0)).fold(1.0, f64::max);
    let vmax_raw = t.rows.iter().flat_map(|r| r.series.iter().map(|x| x.1)).fold(1.0, f64::max);
    let vmin: f64 = 0.1;
    let vmax = 10f64.powf(vmax_raw.log10().ceil()).max(1.0);
    let x = |v: f64| ml + v / tmax * pw;
    let y = |v: f64| mt + ph - (v.max(vmin).log10() - vmin.log10()) / (vmax.log10() - vmin.log10()) * ph;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="chart" viewBox="0 0 {w} {h}" xmlns="http://www.w3.org/2000/svg" role="img" aria-label="p99 per second since the switchover">"#
    );
    let mut tick = vmin;
    while tick <= vmax * 1.0001 {
        let yy = y(tick);
        let _ = write!(
            s,
            r##"<line x1="{ml}" x2="{:.1}" y1="{yy:.1}" y2="{yy:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" font-size="10" text-anchor="end">{}</text>"##,
            ml + pw,
            ml - 4.0,
            yy + 3.0,
            if tick >= 1.0 { format!("{tick:.0}") } else { format!("{tick}") }
        );
        tick *= 10.0;
    }
    let step = [1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0]
        .into_iter()
        .find(|s| tmax / s <= 10.0)
        .unwrap_or(1200.0);
    let mut tt = 0.0;
    while tt <= tmax {
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{:.1}" font-size="10" text-anchor="middle">{tt:.0}s</text>"#,
            x(tt),
            mt + ph + 14.0
        );
        tt += step;
    }
    for (i, r) in t.rows.iter().enumerate() {
        let c = COLORS[i % COLORS.len()];
        if !r.series.is_empty() {
            let mut d = String::new();
            for (k, (tx, v)) in r.series.iter().enumerate() {
                let _ = write!(d, "{}{:.1},{:.1}", if k == 0 { "M" } else { " L" }, x(*tx + 0.5), y(*v));
            }
            let _ = write!(s, r#"<path d="{d}" fill="none" stroke="{c}" stroke-width="1.5"/>"#);
        }
        let ly = mt + 14.0 * i as f64 + 8.0;
        let _ = write!(
            s,
            r#"<line x1="{:.1}" x2="{:.1}" y1="{ly:.1}" y2="{ly:.1}" stroke="{c}" stroke-width="3"/><text x="{:.1}" y="{:.1}" font-size="11">{}</text>"#,
            ml + pw + 10.0,
            ml + pw + 28.0,
            ml + pw + 32.0,
            ly + 4.0,
            esc(&r.technique)
        );
    }
    let _ = write!(
        s,
        r#"<text x="{ml}" y="14" font-size="12" font-weight="bold">p99 of each second since the switchover (ms, log scale)</text></svg>"#
    );
    s
}

/// warmups.html: the table and the chart, self-contained.
pub fn html(t: &Table) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>coldswap: warm-up techniques compared</title>\
         <style>body{{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}}table{{border-collapse:collapse}}\
         td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}td:first-child,th:first-child{{text-align:left}}\
         .chart{{width:100%;height:auto}}</style></head><body><h1>Warm-up techniques compared</h1><p>{}</p><p>Time to warm: {}</p>",
        esc(&t.method),
        esc(&t.rule)
    );
    s.push_str(
        "<table><tr><th>technique</th><th>time to warm</th><th>failed before warm</th><th>cold phase failed / requests</th>\
         <th>cold p99</th><th>worst 1 s p99, first minute</th><th>warm-up before the switchover</th><th>report</th></tr>",
    );
    for r in &t.rows {
        let _ = write!(
            s,
            "<tr><td title=\"{}\">{}</td><td>{}</td><td>{}</td><td>{} / {}</td><td>{:.0} ms</td><td>{:.0} ms</td><td>{}</td><td><a href=\"{}/report.html\">report</a></td></tr>",
            esc(&r.what),
            esc(&r.technique),
            esc(&secs(r)),
            r.failed_before_warm,
            r.cold_failed,
            r.cold_requests,
            r.cold_p99_ms,
            r.first_minute_worst_p99_ms,
            warmed(r).map(|(s, mib)| format!("{s:.1} s, {mib:.0} MiB")).unwrap_or("-".into()),
            esc(&r.report)
        );
    }
    s.push_str("</table>");
    s.push_str(&chart(t));
    s.push_str("<ul>");
    for r in &t.rows {
        let _ = write!(
            s,
            "<li><b>{}</b>: {}{}</li>",
            esc(&r.technique),
            esc(&r.what),
            r.error.as_ref().map(|e| format!(" ({})", esc(e))).unwrap_or_default()
        );
    }
    s.push_str("</ul></body></html>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(name: &str, ttw: Option<f64>, failed: u64) -> Row {
        Row {
            technique: name.into(),
            complete: true,
            time_to_warm_s: ttw,
            observed_s: 30.0,
            cold_failed: failed,
            ..Default::default()
        }
    }

    #[test]
    fn fastest_first_never_warm_last_then_fewer_failures() {
        let mut rows = vec![
            r("none", None, 50),
            r("prefetch", Some(12.0), 0),
            Row { complete: false, ..r("broken", None, 0) },
            r("no-penalty", Some(0.0), 0),
            r("volume-read", None, 3),
            r("buffer-pool", Some(12.0), 0),
        ];
        rows[5].cold_p99_ms = 5.0;
        rows[1].cold_p99_ms = 9.0;
        order(&mut rows);
        let names: Vec<&str> = rows.iter().map(|r| r.technique.as_str()).collect();
        assert_eq!(names, ["no-penalty", "buffer-pool", "prefetch", "volume-read", "none", "broken"]);
        let t = Table { complete: false, method: "m".into(), rule: "r".into(), rows };
        let md = markdown(&t);
        assert!(md.contains("| `none` | not warm within 30 s | 0 | 50 / 0 |"), "{md}");
        assert!(md.contains("| `broken` | did not run to the end |"), "{md}");
        assert!(html(&t).contains("<svg"));
    }
}
