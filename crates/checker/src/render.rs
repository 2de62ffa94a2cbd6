//! report.md and report.html. The HTML is one self-contained page: inline
//! CSS and inline SVG charts, no script, nothing fetched, so it renders the
//! same offline, in CI artifacts and in a headless browser.

use std::fmt::Write;

use crate::report::{Phase, Report};
use coldswap_client::stats::Kind;

/// Escape text for HTML and XML.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn f1(v: f64) -> String {
    format!("{v:.1}")
}

fn opt(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.1}")).unwrap_or_else(|| "-".into())
}

// ------------------------------------------------------------------ Markdown

/// report.md.
pub fn markdown(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# coldswap drill report\n");
    let _ = writeln!(s, "**{}**\n", r.verdict.headline);
    for f in &r.verdict.findings {
        let _ = writeln!(s, "- {f}");
    }
    let _ = writeln!(
        s,
        "\n{} on the {} backend; started {}; {:.0} s.\n",
        r.cluster.versions(),
        r.cluster.backend,
        r.started_at,
        r.duration_s
    );
    let _ = writeln!(s, "## Thresholds\n\n| rule | value | limit | result | detail |\n|---|---:|---:|---|---|");
    for t in &r.thresholds {
        let _ = writeln!(
            s,
            "| {} | {:.2} | {:.2} | {} | {} |",
            t.rule,
            t.value,
            t.limit,
            if t.passed { "pass" } else { "FAIL" },
            t.detail
        );
    }
    let _ = writeln!(s, "\n## Cold against warm (p99, ms)\n\n| transaction | baseline | cold | warm | cold/warm | cold errors |\n|---|---:|---:|---:|---:|---:|");
    for c in &r.comparison {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {:.1}% |",
            c.transaction,
            opt(c.baseline_p99_ms),
            opt(c.cold_p99_ms),
            opt(c.warm_p99_ms),
            c.cold_over_warm.map(|x| format!("{x:.1}x")).unwrap_or_else(|| "-".into()),
            c.cold_error_rate * 100.0
        );
    }
    let _ = writeln!(s, "\n## Switchover\n");
    let _ = writeln!(
        s,
        "{} -> {}: writes unavailable {:.3} s (server side; {:.3} s of it the drill's cold restart of the replica, {:.3} s the switchover itself), {:.3} s as clients saw it; {} requests failed ({}).",
        r.switchover.old_primary,
        r.switchover.new_primary,
        r.switchover.write_unavailable_seconds,
        r.switchover.cold_restore_seconds,
        r.switchover.procedure_unavailable_seconds,
        r.switchover.client_unavailable_seconds,
        r.switchover.failed_requests,
        r.switchover.errors.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
    );
    if let Some(k) = &r.kill_switch {
        let _ = writeln!(
            s,
            "\n## Kill-switch\n\n{} turned off {:.0} s into the cold phase: error rate {:.1}% -> {:.1}%, p99 {:.1} -> {:.1} ms ({}).",
            k.target,
            k.at_s,
            k.error_rate_before * 100.0,
            k.error_rate_after * 100.0,
            k.p99_before_ms,
            k.p99_after_ms,
            if k.recovered { "recovered" } else { "did not recover" }
        );
    }
    let _ = writeln!(s, "\n## Heaviest statements\n");
    for p in &r.phases {
        if p.top_digests.is_empty() {
            continue;
        }
        let _ = writeln!(s, "### {}\n\n| share of rows examined | share of latency | total ms | calls | rows examined | transaction | statement |\n|---:|---:|---:|---:|---:|---|---|", p.name);
        for d in p.top_digests.iter().take(5) {
            let _ = writeln!(
                s,
                "| {:.1}% | {:.1}% | {:.0} | {} | {} | {} | `{}` |",
                d.share * 100.0,
                d.latency_share * 100.0,
                d.total_latency_ms,
                d.exec_count,
                d.rows_examined,
                d.transaction.clone().unwrap_or_else(|| "-".into()),
                d.digest_text.replace('|', "\\|").chars().take(160).collect::<String>()
            );
        }
        let _ = writeln!(s);
    }
    let _ = writeln!(s, "## Lint (EXPLAIN before the load)\n\n| transaction | full scan | rows est. | est. cold cost ms | tables scanned |\n|---|---|---:|---:|---|");
    for l in &r.lint {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:.0} | {} |",
            l.transaction,
            if l.full_scan { "**yes**" } else { "no" },
            l.rows_estimate,
            l.est_cold_cost_ms,
            l.scanned_tables.join(", ")
        );
    }
    if let Some(m) = &r.matrix {
        let _ = write!(s, "\n{}", crate::matrix::markdown(m));
    }
    if let Some(w) = &r.time_to_warm {
        let _ = writeln!(
            s,
            "\n## Time to warm\n\n{}; {} of {} requests failed before ({:.2}% of a 30-day {}% error budget).\n\n| transaction | warm after | target p99 | failed before |\n|---|---:|---:|---:|",
            w.overall.summary,
            w.overall.failed_before,
            w.overall.requests_before,
            w.overall.error_budget_burned_pct,
            w.cfg.slo_availability_pct
        );
        if let Some(p) = &w.projection {
            let _ = writeln!(s, "Projected: {}. Model: {}.\n", p.summary, p.model);
        }
        for (name, t) in &w.transactions {
            let _ = writeln!(
                s,
                "| {name} | {} | {:.1} ms | {} |",
                t.seconds.map(|x| format!("{x:.0} s")).unwrap_or_else(|| format!("not within {:.0} s", t.observed_s)),
                t.target_p99_ms,
                t.failed_before
            );
        }
    }
    let _ = writeln!(s, "\n## Phases\n");
    for p in &r.phases {
        phase_md(&mut s, p);
    }
    if !r.invariants.is_null() {
        let _ = writeln!(
            s,
            "## What the invariants found\n\n```json\n{}\n```\n",
            serde_json::to_string_pretty(&r.invariants).unwrap_or_default()
        );
    }
    let _ = writeln!(s, "## Cluster steps\n\n| step | seconds |\n|---|---:|");
    for st in &r.cluster.steps {
        let _ = writeln!(s, "| {} | {:.3} |", st.name, st.seconds);
    }
    s
}

fn phase_md(s: &mut String, p: &Phase) {
    let _ = writeln!(
        s,
        "### {} ({:.0} s, {} requests, {:.2}% errors)\n\n| transaction | count | ok/s | p50 | p95 | p99 | max | errors |\n|---|---:|---:|---:|---:|---:|---:|---|",
        p.name,
        p.end_s - p.start_s,
        p.requests,
        p.error_rate * 100.0
    );
    for t in &p.transactions {
        let _ = writeln!(
            s,
            "| {}{} | {} | {:.1} | {:.2} | {:.2} | {:.2} | {:.1} | {} |",
            if t.kind == Kind::Background { "[bg] " } else { "" },
            t.name,
            t.count,
            t.throughput_per_s,
            t.p50_ms,
            t.p95_ms,
            t.p99_ms,
            t.max_ms,
            t.errors.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
        );
    }
    let _ = writeln!(s);
}

// ---------------------------------------------------------------------- SVG

const PHASE_COLORS: &[(&str, &str)] = &[
    ("baseline", "#e8f1fb"),
    ("upgrade", "#f3f3f3"),
    ("switchover", "#fde2e2"),
    ("cold", "#dbe9ff"),
    ("warmup", "#fff4d6"),
    ("warm", "#fdebd3"),
];

fn phase_color(name: &str) -> &'static str {
    PHASE_COLORS.iter().find(|(n, _)| *n == name).map(|x| x.1).unwrap_or("#f5f5f5")
}

fn nice_max(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let e = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if v <= m * e {
            return m * e;
        }
    }
    10.0 * e
}

/// One panel of the timeline: a series over seconds, phases shaded, events marked.
fn panel(r: &Report, title: &str, values: &[(f64, f64)], color: &str, log: bool, unit: &str) -> String {
    let (w, h, ml, mr, mt, mb) = (960.0, 170.0, 64.0, 16.0, 22.0, 26.0);
    let pw = w - ml - mr;
    let ph = h - mt - mb;
    let tmax = r.timeline.last().map(|s| s.t as f64 + 1.0).unwrap_or(1.0).max(r.duration_s.min(1e9)).max(1.0);
    let vmax_raw = values.iter().map(|v| v.1).fold(0.0, f64::max);
    let (vmin, vmax) = if log { (0.1f64, nice_max(vmax_raw.max(1.0))) } else { (0.0, nice_max(vmax_raw)) };
    let y = |v: f64| -> f64 {
        if log {
            let v = v.max(vmin);
            mt + ph - (v.log10() - vmin.log10()) / (vmax.log10() - vmin.log10()) * ph
        } else {
            mt + ph - (v - vmin) / (vmax - vmin) * ph
        }
    };
    let x = |t: f64| ml + t / tmax * pw;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="chart" viewBox="0 0 {w} {h}" xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{}">"#,
        esc(title)
    );
    // phase bands
    for p in &r.phases {
        let (x0, x1) = (x(p.start_s), x(p.end_s.max(p.start_s)));
        let _ = write!(
            s,
            r#"<rect x="{x0:.1}" y="{mt}" width="{:.1}" height="{ph}" fill="{}"/><text x="{:.1}" y="{:.1}" class="band">{}</text>"#,
            (x1 - x0).max(0.5),
            phase_color(&p.name),
            x0 + 3.0,
            mt + 11.0,
            esc(&p.name)
        );
    }
    // axes and grid
    let ticks: Vec<f64> = if log {
        let mut v = Vec::new();
        let mut t = vmin;
        while t <= vmax * 1.0001 {
            v.push(t);
            t *= 10.0;
        }
        v
    } else {
        (0..=4).map(|i| vmin + (vmax - vmin) * i as f64 / 4.0).collect()
    };
    for t in ticks {
        let yy = y(t);
        let label = if t >= 100.0 || t == 0.0 {
            format!("{t:.0}")
        } else if t >= 1.0 {
            format!("{t:.1}")
        } else {
            format!("{t}")
        };
        let _ = write!(
            s,
            r#"<line x1="{ml}" x2="{:.1}" y1="{yy:.1}" y2="{yy:.1}" class="grid"/><text x="{:.1}" y="{:.1}" class="tick" text-anchor="end">{label}</text>"#,
            ml + pw,
            ml - 4.0,
            yy + 3.0
        );
    }
    let step = nice_max(tmax / 8.0);
    let mut t = 0.0;
    while t <= tmax {
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{:.1}" class="tick" text-anchor="middle">{t:.0}s</text>"#,
            x(t),
            mt + ph + 14.0
        );
        t += step;
    }
    // series
    if !values.is_empty() {
        let mut d = String::new();
        for (i, (t, v)) in values.iter().enumerate() {
            let _ = write!(d, "{}{:.1},{:.1}", if i == 0 { "M" } else { " L" }, x(*t + 0.5), y(*v));
        }
        let _ = write!(s, r#"<path d="{d}" fill="none" stroke="{color}" stroke-width="1.6"/>"#);
    }
    // events
    for e in &r.events {
        if e.name.starts_with("phase:") {
            continue;
        }
        let xx = x(e.t);
        let _ = write!(
            s,
            r#"<line x1="{xx:.1}" x2="{xx:.1}" y1="{mt}" y2="{:.1}" class="event"/><text x="{:.1}" y="{:.1}" class="evt">{}</text>"#,
            mt + ph,
            xx + 3.0,
            mt + ph - 4.0,
            esc(&e.name)
        );
    }
    let _ = write!(s, r#"<text x="{ml}" y="14" class="title">{} ({})</text></svg>"#, esc(title), esc(unit));
    s
}

/// Cold vs warm p99 bars per transaction (log scale).
fn bars(r: &Report) -> String {
    let rows: Vec<_> = r.comparison.iter().filter(|c| c.cold_p99_ms.is_some() || c.warm_p99_ms.is_some()).collect();
    let (w, rowh, ml, mr, mt) = (960.0, 26.0, 190.0, 80.0, 24.0);
    let h = mt + rowh * rows.len() as f64 + 30.0;
    let vmax = nice_max(
        rows.iter().flat_map(|c| [c.baseline_p99_ms, c.cold_p99_ms, c.warm_p99_ms]).flatten().fold(1.0, f64::max),
    );
    let vmin: f64 = 0.1;
    let pw = w - ml - mr;
    let x = |v: f64| ml + (v.max(vmin).log10() - vmin.log10()) / (vmax.log10() - vmin.log10()) * pw;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="chart" viewBox="0 0 {w} {h}" xmlns="http://www.w3.org/2000/svg" role="img" aria-label="p99 by transaction">"#
    );
    let _ = write!(
        s,
        r#"<text x="{ml}" y="14" class="title">p99 latency by transaction, ms (log scale): baseline, cold, warm</text>"#
    );
    let mut t = vmin;
    while t <= vmax * 1.0001 {
        let xx = x(t);
        let _ = write!(
            s,
            r#"<line x1="{xx:.1}" x2="{xx:.1}" y1="{mt}" y2="{:.1}" class="grid"/><text x="{xx:.1}" y="{:.1}" class="tick" text-anchor="middle">{}</text>"#,
            h - 24.0,
            h - 10.0,
            if t >= 1.0 { format!("{t:.0}") } else { format!("{t}") }
        );
        t *= 10.0;
    }
    for (i, c) in rows.iter().enumerate() {
        let y0 = mt + i as f64 * rowh;
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{:.1}" class="lbl" text-anchor="end">{}</text>"#,
            ml - 6.0,
            y0 + 15.0,
            esc(&c.transaction)
        );
        for (j, (v, color)) in
            [(c.baseline_p99_ms, "#9db9d9"), (c.cold_p99_ms, "#2f6bd8"), (c.warm_p99_ms, "#f0a030")].iter().enumerate()
        {
            if let Some(v) = v {
                let _ = write!(
                    s,
                    r#"<rect x="{ml}" y="{:.1}" width="{:.1}" height="6" fill="{color}"><title>{:.2} ms</title></rect>"#,
                    y0 + 4.0 + j as f64 * 7.0,
                    (x(*v) - ml).max(1.0),
                    v
                );
            }
        }
        if let Some(ratio) = c.cold_over_warm {
            let _ = write!(s, r#"<text x="{:.1}" y="{:.1}" class="ratio">{ratio:.1}x</text>"#, w - mr + 6.0, y0 + 15.0);
        }
    }
    s.push_str("</svg>");
    s
}

const CSS: &str = r#"
body{font:14px/1.45 -apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1000px;color:#1b1f24;padding:0 12px}
h1{font-size:22px;margin:0 0 8px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
.verdict{padding:14px 16px;border-radius:6px;margin:12px 0}.pass{background:#e3f6e8;border:1px solid #5cb77a}.fail{background:#fde7e7;border:1px solid #d9534f}
.incomplete{background:#fff6dd;border:1px solid #e0a800}.verdict b{font-size:16px}
table{border-collapse:collapse;width:100%;margin:6px 0 12px;font-size:13px}th,td{border-bottom:1px solid #e5e5e5;padding:4px 6px;text-align:right}
th:first-child,td:first-child{text-align:left}td.l,th.l{text-align:left}code{font-size:12px;word-break:break-all}
.bad{color:#c0392b;font-weight:600}.good{color:#2e7d32}.muted{color:#666}
svg.chart{width:100%;height:auto;display:block;margin:4px 0}.grid{stroke:#e3e3e3}.tick{font-size:10px;fill:#555}
.title{font-size:12px;font-weight:600;fill:#222}.band{font-size:10px;fill:#555}.event{stroke:#c0392b;stroke-dasharray:3 3}
.evt{font-size:10px;fill:#c0392b}.lbl{font-size:11px;fill:#222}.ratio{font-size:11px;fill:#2f6bd8;font-weight:600}
.legend span{display:inline-block;margin-right:14px}.sw{display:inline-block;width:10px;height:10px;margin-right:4px;vertical-align:middle}
"#;

/// report.html: one self-contained page (inline SVG, no scripts, nothing fetched).
pub fn html(r: &Report) -> String {
    let mut s = String::new();
    let _ = write!(s, "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>coldswap drill: {}</title><style>{CSS}</style></head><body>", esc(&r.verdict.headline));
    let _ = write!(s, "<h1>coldswap drill: {}</h1>", esc(&r.cluster.versions()).replace("-&gt;", "&rarr;"));
    let class = if !r.complete {
        "incomplete"
    } else if r.verdict.passed {
        "pass"
    } else {
        "fail"
    };
    let _ = write!(s, r#"<div class="verdict {class}"><b>{}</b><ul>"#, esc(&r.verdict.headline));
    for f in &r.verdict.findings {
        let _ = write!(s, "<li>{}</li>", esc(f));
    }
    let _ = write!(
        s,
        "</ul><div class=\"muted\">{} backend, started {}, {:.0} s. Warm-up: {}.</div></div>",
        esc(&r.cluster.backend),
        esc(&r.started_at),
        r.duration_s,
        esc(&r
            .warmup
            .get("technique")
            .and_then(|v| v.as_str())
            .map(|t| { format!("{t} in {:.1} s", r.warmup.get("seconds").and_then(|v| v.as_f64()).unwrap_or(0.0)) })
            .unwrap_or_else(|| "none".into()))
    );

    // Timeline
    let _ = write!(s, "<h2>Timeline</h2><div class=\"legend muted\">");
    for (n, c) in PHASE_COLORS {
        if r.phases.iter().any(|p| p.name == *n) {
            let _ = write!(s, r#"<span><i class="sw" style="background:{c}"></i>{n}</span>"#);
        }
    }
    s.push_str("<span><i class=\"sw\" style=\"background:#c0392b\"></i>events</span></div>");
    let thr: Vec<(f64, f64)> = r.timeline.iter().map(|x| (x.t as f64, (x.count - x.errors) as f64)).collect();
    let p99: Vec<(f64, f64)> = r.timeline.iter().map(|x| (x.t as f64, x.p99_ms)).collect();
    let err: Vec<(f64, f64)> = r.timeline.iter().map(|x| (x.t as f64, x.errors as f64)).collect();
    s.push_str(&panel(r, "Throughput: successful API requests per second", &thr, "#2f6bd8", false, "req/s"));
    s.push_str(&panel(r, "p99 latency of API requests, per second", &p99, "#7b3fb8", true, "ms, log"));
    s.push_str(&panel(r, "Failed API requests per second", &err, "#c0392b", false, "req/s"));
    let share: Vec<(f64, f64)> = r
        .storage
        .get("warm_share")
        .and_then(|v| v.as_array())
        .map(|a| a.iter().filter_map(|p| Some((p.get(0)?.as_f64()? - 0.5, p.get(1)?.as_f64()? * 100.0))).collect())
        .unwrap_or_default();
    if !share.is_empty() {
        s.push_str(&panel(
            r,
            "Share of the new primary's volume warm (fetched, written or new since the restore)",
            &share,
            "#2e8b57",
            false,
            "%",
        ));
    }
    if let Some(m) = &r.matrix {
        s.push_str(&crate::matrix::html(m));
    }
    if let Some(w) = &r.time_to_warm {
        let _ = write!(
            s,
            "<h2>Time to warm</h2><p><b>{}</b>; {} of {} requests failed before ({:.2}% of a 30-day {}% error budget at the baseline's rate). The baseline is {}; {}. Marked <i>warm</i> on the timeline.</p>",
            esc(&w.overall.summary),
            w.overall.failed_before,
            w.overall.requests_before,
            w.overall.error_budget_burned_pct,
            w.cfg.slo_availability_pct,
            esc(&w.reference),
            esc(&w.cfg.describe())
        );
        if let Some(p) = &w.projection {
            let _ = write!(s, "<p><b>Projected</b>: {}. <small>Model: {}.</small></p>", esc(&p.summary), esc(&p.model));
        }
        s.push_str("<table><tr><th class=\"l\">transaction</th><th>warm after</th><th>target p99</th><th>failed before</th><th class=\"l\"></th></tr>");
        for (name, t) in &w.transactions {
            let _ = write!(
                s,
                "<tr><td class=\"l\">{}</td><td class=\"{}\">{}</td><td>{:.1} ms</td><td>{}</td><td class=\"l muted\">{}</td></tr>",
                esc(name),
                if t.seconds.is_none() { "bad" } else { "" },
                t.seconds.map(|x| format!("{x:.0} s")).unwrap_or_else(|| format!("not within {:.0} s", t.observed_s)),
                t.target_p99_ms,
                t.failed_before,
                esc(&t.summary)
            );
        }
        s.push_str("</table>");
    }

    // Cold vs warm
    let _ = write!(s, "<h2>Cold against warm</h2><div class=\"legend muted\"><span><i class=\"sw\" style=\"background:#9db9d9\"></i>baseline (old primary, warm)</span><span><i class=\"sw\" style=\"background:#2f6bd8\"></i>cold (new primary)</span><span><i class=\"sw\" style=\"background:#f0a030\"></i>warm (after warm-up)</span></div>");
    s.push_str(&bars(r));
    s.push_str("<table><tr><th>transaction</th><th>baseline p99</th><th>cold p99</th><th>warm p99</th><th>cold/warm</th><th>cold errors</th><th>warm errors</th></tr>");
    for c in &r.comparison {
        let bad = c.cold_over_warm.map(|x| x > 3.0).unwrap_or(false);
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td><td>{:.1}%</td><td>{:.1}%</td></tr>",
            esc(&c.transaction),
            opt(c.baseline_p99_ms),
            opt(c.cold_p99_ms),
            opt(c.warm_p99_ms),
            if bad { "bad" } else { "" },
            c.cold_over_warm.map(|x| format!("{x:.1}x")).unwrap_or_else(|| "-".into()),
            c.cold_error_rate * 100.0,
            c.warm_error_rate * 100.0
        );
    }
    s.push_str("</table>");

    // Switchover
    let sw = &r.switchover;
    let _ = write!(
        s,
        "<h2>Switchover</h2><p>{} &rarr; {}: writes unavailable <b>{:.3} s</b> (fence to endpoint swap; {:.3} s of it the drill's restart of the replica on cold storage, <b>{:.3} s</b> the switchover itself), {:.3} s as clients saw it; <b>{}</b> requests failed ({}).</p>",
        esc(&sw.old_primary),
        esc(&sw.new_primary),
        sw.write_unavailable_seconds,
        sw.cold_restore_seconds,
        sw.procedure_unavailable_seconds,
        sw.client_unavailable_seconds,
        sw.failed_requests,
        esc(&sw.errors.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", "))
    );
    if let Some(k) = &r.kill_switch {
        let _ = write!(
            s,
            "<h2>Kill-switch</h2><p><b>{}</b> turned off {:.0} s into the cold phase: error rate {:.1}% &rarr; {:.1}%, p99 {:.1} &rarr; {:.1} ms: <span class=\"{}\">{}</span>.</p>",
            esc(&k.target),
            k.at_s,
            k.error_rate_before * 100.0,
            k.error_rate_after * 100.0,
            k.p99_before_ms,
            k.p99_after_ms,
            if k.recovered { "good" } else { "bad" },
            if k.recovered { "recovered" } else { "did not recover" }
        );
    }

    // Digests
    s.push_str("<h2>Heaviest statements (performance_schema digests)</h2><p class=\"muted\">Ranked by rows examined, the work a statement makes the server do; under an I/O stall every query waits, so latency also blames the victims.</p>");
    for p in &r.phases {
        if p.top_digests.is_empty() {
            continue;
        }
        let _ = write!(s, "<h3>{}</h3><table><tr><th>share of rows examined</th><th>share of latency</th><th>total ms</th><th>calls</th><th>rows examined</th><th class=\"l\">transaction</th><th class=\"l\">statement</th></tr>", esc(&p.name));
        for d in p.top_digests.iter().take(6) {
            let _ = write!(
                s,
                "<tr><td class=\"{}\">{:.1}%</td><td>{:.1}%</td><td>{:.0}</td><td>{}</td><td>{}</td><td class=\"l\">{}</td><td class=\"l\"><code>{}</code></td></tr>",
                if d.share > 0.5 { "bad" } else { "" },
                d.share * 100.0,
                d.latency_share * 100.0,
                d.total_latency_ms,
                d.exec_count,
                d.rows_examined,
                esc(&d.transaction.clone().unwrap_or_else(|| "-".into())),
                esc(&d.digest_text.chars().take(220).collect::<String>())
            );
        }
        s.push_str("</table>");
    }

    // Lint
    s.push_str("<h2>Lint: EXPLAIN of every statement, before the load</h2><table><tr><th class=\"l\">transaction</th><th class=\"l\">full scan</th><th>rows est.</th><th>est. cold cost</th><th class=\"l\">tables scanned</th></tr>");
    for l in &r.lint {
        let _ = write!(
            s,
            "<tr><td class=\"l\">{}</td><td class=\"l {}\">{}</td><td>{}</td><td>{:.0} ms</td><td class=\"l\">{}</td></tr>",
            esc(&l.transaction),
            if l.full_scan { "bad" } else { "good" },
            if l.full_scan { "yes" } else { "no" },
            l.rows_estimate,
            l.est_cold_cost_ms,
            esc(&l.scanned_tables.join(", "))
        );
    }
    s.push_str("</table>");

    // Thresholds
    s.push_str("<h2>Thresholds</h2><table><tr><th class=\"l\">rule</th><th>value</th><th>limit</th><th class=\"l\">result</th><th class=\"l\">detail</th></tr>");
    for t in &r.thresholds {
        let _ = write!(
            s,
            "<tr><td class=\"l\">{}</td><td>{:.2}</td><td>{:.2}</td><td class=\"l {}\">{}</td><td class=\"l\">{}</td></tr>",
            esc(&t.rule),
            t.value,
            t.limit,
            if t.passed { "good" } else { "bad" },
            if t.passed {
                "pass"
            } else if t.checked {
                "FAIL"
            } else {
                "FAIL (not checked)"
            },
            esc(&t.detail)
        );
    }
    s.push_str("</table>");
    if !r.invariant_results.is_empty() {
        s.push_str("<h2>Invariants</h2><table><tr><th class=\"l\">invariant</th><th class=\"l\">result</th><th class=\"l\">detail</th></tr>");
        for i in &r.invariant_results {
            let (class, res) = if i.passed {
                ("good", "holds")
            } else if i.checked {
                ("bad", "VIOLATED")
            } else {
                ("bad", "NOT CHECKED")
            };
            let _ = write!(
                s,
                "<tr><td class=\"l\">{}</td><td class=\"l {class}\">{res}</td><td class=\"l\">{}</td></tr>",
                esc(&i.name),
                esc(&i.detail)
            );
        }
        s.push_str("</table>");
    }

    if !r.invariants.is_null() {
        let _ = write!(
            s,
            "<h3>What the invariants found</h3><pre>{}</pre>",
            esc(&serde_json::to_string_pretty(&r.invariants).unwrap_or_default())
        );
    }

    // Phases
    s.push_str("<h2>Phases</h2>");
    for p in &r.phases {
        let _ = write!(
            s,
            "<h3>{} <span class=\"muted\">({:.0} s, {} requests, {:.2}% errors)</span></h3><table><tr><th>transaction</th><th>count</th><th>ok/s</th><th>p50</th><th>p95</th><th>p99</th><th>max</th><th class=\"l\">errors</th></tr>",
            esc(&p.name),
            p.end_s - p.start_s,
            p.requests,
            p.error_rate * 100.0
        );
        for t in &p.transactions {
            let _ = write!(
                s,
                "<tr><td>{}{}</td><td>{}</td><td>{}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.1}</td><td class=\"l\">{}</td></tr>",
                if t.kind == Kind::Background { "[bg] " } else { "" },
                esc(&t.name),
                t.count,
                f1(t.throughput_per_s),
                t.p50_ms,
                t.p95_ms,
                t.p99_ms,
                t.max_ms,
                esc(&t.errors.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" "))
            );
        }
        s.push_str("</table>");
    }
    s.push_str("<h2>Cluster steps</h2><table><tr><th>step</th><th>seconds</th></tr>");
    for st in &r.cluster.steps {
        let _ = write!(s, "<tr><td>{}</td><td>{:.3}</td></tr>", esc(&st.name), st.seconds);
    }
    s.push_str("</table><p class=\"muted\">Generated by coldswap. Self-contained: no scripts, no external resources.</p></body></html>");
    s
}

/// Thresholds and invariants as JUnit XML, one test case each, so CI systems show them.
pub fn junit(r: &Report) -> String {
    let failures = r.thresholds.iter().filter(|t| !t.passed).count()
        + r.invariant_results.iter().filter(|i| !i.passed).count()
        + usize::from(!r.complete);
    let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        s,
        "<testsuite name=\"coldswap drill\" tests=\"{}\" failures=\"{failures}\" time=\"{:.3}\" timestamp=\"{}\">",
        r.thresholds.len() + r.invariant_results.len() + 1,
        r.duration_s,
        esc(&r.started_at)
    );
    let _ = writeln!(s, "  <testcase classname=\"coldswap.drill\" name=\"complete\">");
    if !r.complete {
        let _ = writeln!(
            s,
            "    <failure message=\"{}\"/>",
            esc(r.incomplete_reason.as_deref().unwrap_or("the drill did not finish"))
        );
    }
    let _ = writeln!(s, "  </testcase>");
    for t in &r.thresholds {
        let _ = writeln!(s, "  <testcase classname=\"coldswap.thresholds\" name=\"{}\">", esc(&t.rule));
        if !t.passed {
            let msg = if t.checked { format!("{} > {}", t.value, t.limit) } else { "not checked".to_string() };
            let _ = writeln!(s, "    <failure message=\"{}\">{}</failure>", esc(&msg), esc(&t.detail));
        }
        let _ = writeln!(s, "    <system-out>{}</system-out>", esc(&t.detail));
        let _ = writeln!(s, "  </testcase>");
    }
    for i in &r.invariant_results {
        let _ = writeln!(s, "  <testcase classname=\"coldswap.invariants\" name=\"{}\">", esc(&i.name));
        if !i.passed {
            let msg = if i.checked { "violated" } else { "not checked" };
            let _ = writeln!(s, "    <failure message=\"{msg}\">{}</failure>", esc(&i.detail));
        }
        let _ = writeln!(s, "    <system-out>{}</system-out>", esc(&i.detail));
        let _ = writeln!(s, "  </testcase>");
    }
    s.push_str("</testsuite>\n");
    s
}
