//! coldswap's **checker**: what the drill concludes.
//!
//! * [`report`]: the report model (report.json's keys are a contract).
//! * [`digests`]: the server's heaviest statements per phase.
//! * [`lint`]: EXPLAIN of the mix before the load, full scans flagged.
//! * [`thresholds`]: the rules that fail a drill, and the verdict.
//! * [`render`]: report.md, a self-contained report.html, JUnit XML.
//! * [`compare`]: two reports, per-transaction deltas and regressions.
//! * [`merge`]: shard results merged exactly (HDR histograms added).
//! * [`warmth`]: time to warm after the switchover, from the timeline.
//! * [`warmups`]: one drill per warm-up technique, compared.
//! * [`gate`]: GO or NO-GO for promoting a replica now.
//! * [`github`]: the report in a GitHub Actions step summary, failures as annotations.
//!
//! Used alone, on reports written earlier:
//!
//! ```no_run
//! # fn f() -> anyhow::Result<()> {
//! use coldswap_checker::{compare, Report};
//! let read = |p: &str| -> anyhow::Result<Report> { Ok(serde_json::from_str(&std::fs::read_to_string(p)?)?) };
//! let (old, new) = (read("last-good/report.json")?, read("target/drill/latest/report.json")?);
//! let c = compare::compare(&old, &new, &compare::Limits::default());
//! for r in &c.regressions {
//!     println!("{r}");
//! }
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

pub mod checksum;
pub mod compare;
pub mod digests;
pub mod gate;
pub mod github;
pub mod lint;
pub mod matrix;
pub mod merge;
pub mod render;
pub mod report;
pub mod thresholds;
pub mod versions;
pub mod warmth;
pub mod warmups;

pub use report::Report;
pub use thresholds::Thresholds;

/// Write report.json, report.md and report.html into `dir`.
pub fn write_all(r: &Report, dir: &std::path::Path) -> anyhow::Result<()> {
    use anyhow::Context;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let w = |name: &str, body: &[u8]| -> anyhow::Result<()> {
        let p = dir.join(name);
        let tmp = dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, body).with_context(|| format!("cannot write {}", p.display()))?;
        std::fs::rename(&tmp, &p).with_context(|| format!("cannot write {}", p.display()))?;
        Ok(())
    };
    w("report.json", serde_json::to_string_pretty(r)?.as_bytes())?;
    w("report.md", render::markdown(r).as_bytes())?;
    w("report.html", render::html(r).as_bytes())?;
    w("report.junit.xml", render::junit(r).as_bytes())?;
    Ok(())
}
