//! `coldswap warmups`: the promoted-cold scenario once per warm-up
//! technique, each a whole drill from a fresh cluster on the same
//! (deterministically seeded) dataset, mix, rate and phases, with the
//! replica restored before the switchover and warmed there, as a team would
//! before its window. One table over their reports (`warmups.json`, `.md`,
//! `.html`), fastest to warm first.

use anyhow::{bail, Result};
use coldswap_checker::warmups::{self, Row, Table};
use std::path::{Path, PathBuf};

use crate::DrillConfig;

/// The techniques, in the order they run.
pub const TECHNIQUES: &[(&str, &str)] = &[
    ("none", "no warm-up: the load warms the restored node after the switchover (the 2017 case)"),
    (
        "buffer-pool-25",
        "the old primary's buffer pool dumped at InnoDB's default share (innodb_buffer_pool_dump_pct = 25, its most recently used pages) and loaded into the restored replica",
    ),
    ("buffer-pool", "the same with the whole buffer pool (innodb_buffer_pool_dump_pct = 100)"),
    ("volume-read", "every file of the datadir read once through the volume (fio or dd initialization), in parallel"),
    ("prefetch", "every index of the tables the mix touches scanned once"),
    (
        "hydration",
        "no warm-up, but the volume hydrates in the background at a fixed rate (EBS initialization runs at 100-300 MiB/s)",
    ),
    ("no-penalty", "a volume with no first-touch penalty (a fast-snapshot-restore volume): only the buffer pool is cold"),
];

/// A finished (or interrupted) comparison.
pub struct Outcome {
    /// The comparison, as written.
    pub table: Table,
    /// Where it was written (warmups.json and each technique's drill).
    pub dir: PathBuf,
    /// 0 every drill ran, 1 one did not, 130/143 interrupted.
    pub exit_code: i32,
}

/// The drill settings of one technique.
pub fn variant(base: &DrillConfig, technique: &str, hydrate_mib_s: f64) -> Result<DrillConfig> {
    let mut c = base.clone();
    // Nothing but the technique differs: no kill-switch, no warm-up after the cold phase.
    c.kill_switch = None;
    c.warmup.technique = "none".into();
    c.warmup.before_switchover = Some("none".into());
    match technique {
        "none" => {}
        "buffer-pool-25" => {
            c.warmup.before_switchover = Some("buffer-pool".into());
            c.warmup.dump_pct = 25;
        }
        "buffer-pool" => {
            c.warmup.before_switchover = Some("buffer-pool".into());
            c.warmup.dump_pct = 100;
        }
        "volume-read" | "prefetch" => c.warmup.before_switchover = Some(technique.into()),
        "hydration" => {
            c.storage.expand_profile()?;
            c.storage.hydrate_mib_s = hydrate_mib_s;
        }
        "no-penalty" => {
            c.storage.expand_profile()?;
            c.storage.latency = "0".into();
            c.storage.hydrate_mib_s = 0.0;
        }
        other => bail!(
            "unknown warm-up technique '{other}' ({})",
            TECHNIQUES.iter().map(|t| t.0).collect::<Vec<_>>().join(", ")
        ),
    }
    Ok(c)
}

/// Run `techniques` (all of [`TECHNIQUES`] when empty) one after another.
pub async fn warmups(
    cfg: DrillConfig,
    source: Option<(&Path, &str)>,
    techniques: &[String],
    hydrate_mib_s: f64,
) -> Result<Outcome> {
    cfg.validate(source)?;
    if !(hydrate_mib_s > 0.0 && hydrate_mib_s.is_finite()) {
        bail!("--hydrate-mib-s: a positive rate, not {hydrate_mib_s}");
    }
    let names: Vec<String> =
        if techniques.is_empty() { TECHNIQUES.iter().map(|t| t.0.to_string()).collect() } else { techniques.to_vec() };
    // Every technique's settings are checked before the first drill starts.
    let mut plan = Vec::new();
    for n in &names {
        let c = variant(&cfg, n, hydrate_mib_s)?;
        c.validate(None)?;
        let what = TECHNIQUES.iter().find(|t| t.0 == n).map(|t| t.1).unwrap_or_default();
        let what = if n == "hydration" {
            what.replace("a fixed rate", &format!("{hydrate_mib_s} MiB/s"))
        } else {
            what.into()
        };
        plan.push((n.clone(), what, c));
    }
    let (dir, _) = crate::out::make_out_dir(&cfg.out)?;
    let ccfg = cfg.cold_config()?;
    let mut rows = Vec::new();
    let mut exit_code = 0;
    for (i, (name, what, mut c)) in plan.into_iter().enumerate() {
        if let Some(sig) = coldswap_signals::received() {
            exit_code = 128 + sig;
            break;
        }
        tracing::info!("warm-ups: {name} ({} of {})", i + 1, names.len());
        c.out = dir.join(&name);
        match crate::run(c, None).await {
            Ok(o) => {
                let rel = o.dir.strip_prefix(&dir).unwrap_or(&o.dir).display().to_string();
                rows.push(warmups::row(&name, &what, &o.report, &rel));
                if o.exit_code == 130 || o.exit_code == 143 {
                    exit_code = o.exit_code;
                    break;
                }
                if !o.report.complete {
                    exit_code = 1;
                }
            }
            Err(e) => {
                exit_code = 1;
                rows.push(Row {
                    technique: name.clone(),
                    what: what.clone(),
                    error: Some(format!("{e:#}")),
                    time_to_warm: "not measured".into(),
                    ..Default::default()
                });
            }
        }
    }
    warmups::order(&mut rows);
    let rule = cfg.warmth.describe();
    let table = Table {
        complete: exit_code == 0 && rows.len() == names.len(),
        method: format!(
            "One drill per technique, one after another on this machine, each from a fresh cluster: the same dataset \
             (seeded deterministically at scale {}), mix {}, {} users at {}, phases baseline {} / cold {}, \
             {} -> {}. The replica restarts on a fresh restore of its volume ({}first-touch latency {}, {} in flight) \
             before the switchover, still replicating; the technique runs on it, it catches up, and only then is it \
             fenced and promoted. Time to warm counts from the switchover.",
            cfg.data.scale,
            cfg.load.mix.display(),
            cfg.load.users,
            if cfg.load.rate > 0.0 { format!("{} req/s", cfg.load.rate) } else { "a closed loop".into() },
            cfg.phases.baseline,
            cfg.phases.cold,
            cfg.cluster.from,
            cfg.cluster.to,
            cfg.storage.profile.as_ref().map(|p| format!("profile {p}: ")).unwrap_or_default(),
            if ccfg.latency_min_us == ccfg.latency_max_us {
                format!("{} ms", ccfg.latency_min_us as f64 / 1000.0)
            } else {
                format!("{}-{} ms", ccfg.latency_min_us as f64 / 1000.0, ccfg.latency_max_us as f64 / 1000.0)
            },
            ccfg.concurrency,
        ),
        rule,
        rows,
    };
    std::fs::write(dir.join("warmups.json"), serde_json::to_string_pretty(&table)?)?;
    std::fs::write(dir.join("warmups.md"), warmups::markdown(&table))?;
    std::fs::write(dir.join("warmups.html"), warmups::html(&table))?;
    Ok(Outcome { table, dir, exit_code })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_technique_changes_only_its_own_settings() {
        let base = DrillConfig::default();
        for (t, _) in TECHNIQUES {
            let c = variant(&base, t, 300.0).unwrap();
            assert_eq!(c.load, base.load);
            assert_eq!(c.data, base.data);
            assert_eq!(c.phases, base.phases);
            assert!(c.kill_switch.is_none());
            assert_eq!(c.warmup.technique, "none");
            c.validate(None).unwrap();
        }
        assert_eq!(variant(&base, "buffer-pool-25", 300.0).unwrap().warmup.dump_pct, 25);
        assert_eq!(variant(&base, "no-penalty", 300.0).unwrap().cold_config().unwrap().latency_max_us, 0);
        assert_eq!(variant(&base, "hydration", 120.0).unwrap().cold_config().unwrap().hydrate_mib_s, 120.0);
        assert!(variant(&base, "magic", 300.0).unwrap_err().to_string().contains("unknown warm-up technique 'magic'"));
    }
}
