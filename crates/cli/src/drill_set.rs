//! `coldswap drill --config A --config B`: several clusters drilled in
//! parallel (the incident's two databases, api and import_queue, each on its
//! own cluster with its own mix), one child process per drill so each has
//! its own load generator, then one index over their reports.

use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::Stdio;

#[derive(Serialize)]
struct Entry {
    name: String,
    config: String,
    exit_code: i32,
    /// Report dir relative to the index.
    report: String,
    complete: bool,
    passed: bool,
    headline: String,
}

#[derive(Serialize)]
struct Index {
    complete: bool,
    passed: bool,
    drills: Vec<Entry>,
}

/// Names of the drills: the configs' file stems, made unique.
fn names(configs: &[PathBuf]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in configs {
        let base = c.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_else(|| "drill".into());
        let mut n = base.clone();
        let mut k = 2;
        while out.contains(&n) {
            n = format!("{base}-{k}");
            k += 1;
        }
        out.push(n);
    }
    out
}

/// The command line of this process without --config/--out (they are set per child).
fn passthrough_args() -> Vec<String> {
    let mut out = Vec::new();
    let mut it = std::env::args().skip(1).peekable();
    while let Some(a) = it.next() {
        if a == "--config" || a == "--out" {
            it.next();
            continue;
        }
        if a.starts_with("--config=") || a.starts_with("--out=") {
            continue;
        }
        out.push(a);
    }
    out
}

/// Exit code of the set: a signal's, else 1 if any drill failed to run,
/// else 3 if any threshold failed, else 0.
pub fn combined_exit(codes: &[i32], signal: Option<i32>) -> i32 {
    if let Some(s) = signal {
        return 128 + s;
    }
    if codes.iter().any(|c| *c == 130 || *c == 143) {
        return *codes.iter().find(|c| **c == 130 || **c == 143).unwrap();
    }
    if codes.iter().any(|c| *c != 0 && *c != 3) {
        return 1;
    }
    if codes.contains(&3) {
        return 3;
    }
    0
}

pub async fn run(configs: &[PathBuf], out: Option<PathBuf>) -> Result<u8> {
    for c in configs {
        if !c.is_file() {
            bail!("config {} does not exist", c.display());
        }
        // Bad settings fail here, before any cluster starts.
        coldswap_drill::DrillConfig::load(c)?;
    }
    let out = out.unwrap_or_else(|| PathBuf::from("target/drill"));
    let (dir, _) = coldswap_drill::out::make_out_dir(&out)?;
    let names = names(configs);
    let exe = std::env::current_exe().context("cannot find the coldswap executable")?;
    let pass = passthrough_args();
    let mut children = Vec::new();
    for (c, n) in configs.iter().zip(&names) {
        let log = std::fs::File::create(dir.join(format!("{n}.log")))?;
        let child = tokio::process::Command::new(&exe)
            .args(&pass)
            .arg("--config")
            .arg(c)
            .arg("--out")
            .arg(dir.join(n))
            .stdin(Stdio::null())
            // Own process group: a terminal's Ctrl-C reaches this process,
            // which forwards it once (a second signal makes a drill leave at once).
            .process_group(0)
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start the drill of {}", c.display()))?;
        tracing::info!("drill {n}: started ({}), log in {}/{n}.log", c.display(), dir.display());
        children.push(child);
    }
    // Forward a signal to every drill (a terminal's Ctrl-C reaches them
    // anyway; a SIGTERM to this process alone would not).
    let pids: Vec<u32> = children.iter().filter_map(|c| c.id()).collect();
    coldswap_signals::on_signal(move |sig| {
        for p in &pids {
            unsafe {
                libc::kill(*p as i32, sig);
            }
        }
    });
    let mut codes = Vec::new();
    for (mut ch, n) in children.into_iter().zip(&names) {
        let st = ch.wait().await?;
        let code = st.code().unwrap_or(1);
        tracing::info!("drill {n}: exit {code}");
        codes.push(code);
    }
    let signal = coldswap_signals::received();
    let mut drills = Vec::new();
    for ((c, n), code) in configs.iter().zip(&names).zip(&codes) {
        let rdir = dir.join(n).join("latest");
        let report: Option<coldswap_checker::Report> =
            std::fs::read_to_string(rdir.join("report.json")).ok().and_then(|t| serde_json::from_str(&t).ok());
        drills.push(Entry {
            name: n.clone(),
            config: c.display().to_string(),
            exit_code: *code,
            report: format!("{n}/latest"),
            complete: report.as_ref().map(|r| r.complete).unwrap_or(false),
            passed: report.as_ref().map(|r| r.verdict.passed).unwrap_or(false),
            headline: report
                .as_ref()
                .map(|r| r.verdict.headline.clone())
                .unwrap_or_else(|| format!("no report; see {n}.log")),
        });
    }
    let index = Index { complete: drills.iter().all(|d| d.complete), passed: drills.iter().all(|d| d.passed), drills };
    write_index(&index, &dir)?;
    println!();
    for d in &index.drills {
        println!("{:<16} {}", d.name, d.headline);
        println!("{:<16} report: {}/{}/report.html", "", dir.display(), d.report);
    }
    println!("index: {}/index.html (and index.json, index.md)", dir.display());
    Ok(combined_exit(&codes, signal) as u8)
}

fn write_index(i: &Index, dir: &Path) -> Result<()> {
    let esc = coldswap_checker::render::esc;
    std::fs::write(dir.join("index.json"), serde_json::to_string_pretty(i)?)?;
    let mut md = String::from(
        "# coldswap drills in parallel\n\n| drill | verdict | complete | exit | report |\n|---|---|---|---|---|\n",
    );
    let mut html = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>coldswap drills</title><style>body{font:14px system-ui,sans-serif;margin:24px}\
         td,th{padding:4px 10px;border-bottom:1px solid #eee;text-align:left}</style></head><body><h1>coldswap drills in parallel</h1>\
         <table><tr><th>drill</th><th>verdict</th><th>complete</th><th>exit</th></tr>",
    );
    for d in &i.drills {
        md.push_str(&format!(
            "| {} | {} | {} | {} | [{}/report.md]({}/report.md) |\n",
            d.name, d.headline, d.complete, d.exit_code, d.report, d.report
        ));
        html.push_str(&format!(
            "<tr><td><a href=\"{}/report.html\">{}</a></td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&d.report),
            esc(&d.name),
            esc(&d.headline),
            d.complete,
            d.exit_code
        ));
    }
    html.push_str("</table></body></html>\n");
    std::fs::write(dir.join("index.md"), md)?;
    std::fs::write(dir.join("index.html"), html)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_stems() {
        let n = names(&[
            PathBuf::from("drill.toml"),
            PathBuf::from("drills/import_queue.toml"),
            PathBuf::from("x/drill.toml"),
        ]);
        assert_eq!(n, vec!["drill", "import_queue", "drill-2"]);
    }

    #[test]
    fn the_worst_exit_wins() {
        assert_eq!(combined_exit(&[0, 0], None), 0);
        assert_eq!(combined_exit(&[0, 3], None), 3);
        assert_eq!(combined_exit(&[1, 3], None), 1);
        assert_eq!(combined_exit(&[130, 0], None), 130);
        assert_eq!(combined_exit(&[0, 0], Some(15)), 143);
    }
}
