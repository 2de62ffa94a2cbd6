//! The operator's seat: what a run shows while it runs.
//!
//! On a terminal, one live line (indicatif) redrawn every second: the phase
//! with its elapsed and planned time, requests per second, p99 of the last
//! second, failures by class, the share of the promoted volume still cold;
//! events (upgraded, fenced, switchover, kill-switch, warm) print above it
//! as they happen. Elsewhere (CI, a pipe) one plain line every few seconds
//! and one per event, no escape codes.

use std::io::IsTerminal as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coldswap_client::stats::{Event, SecondSummary};
use coldswap_client::Recorder;

/// How a run shows its progress.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// Nothing.
    Off,
    /// A live line on the terminal (stderr).
    Terminal,
    /// A plain line every `every` (and one per event) on stderr.
    Lines {
        /// Between lines.
        every: Duration,
    },
}

impl Mode {
    /// From the config: "auto" (a live line on a terminal, plain lines
    /// otherwise), "terminal", "lines" or "off".
    pub fn from_setting(setting: &str, every_s: u64) -> anyhow::Result<Mode> {
        let lines = Mode::Lines { every: Duration::from_secs(every_s.max(1)) };
        Ok(match setting {
            "off" => Mode::Off,
            "lines" => lines,
            "terminal" => Mode::Terminal,
            "auto" if std::io::stderr().is_terminal() => Mode::Terminal,
            "auto" => lines,
            other => anyhow::bail!("status: '{other}' is not one of auto, terminal, lines, off"),
        })
    }
}

/// (t, share of the promoted volume warm) samples, one a second.
pub type WarmShare = Arc<Mutex<Vec<(f64, f64)>>>;

/// The phases' planned lengths, seconds, by name.
pub type Plan = Vec<(String, f64)>;

/// One status line from the last second.
pub fn line(
    phase: &str,
    elapsed_s: f64,
    planned_s: Option<f64>,
    last: Option<&SecondSummary>,
    cold_pct: Option<f64>,
) -> String {
    let mut s = match planned_s {
        Some(p) => format!("[{phase} {elapsed_s:.0}/{p:.0} s]"),
        None => format!("[{phase} {elapsed_s:.0} s]"),
    };
    match last {
        Some(l) => {
            s.push_str(&format!(" {} req/s, p99 {:.1} ms", l.count, l.p99_ms));
            if l.errors > 0 {
                let by: Vec<String> = l.errors_by_class.iter().map(|(k, v)| format!("{k} {v}")).collect();
                s.push_str(&format!(", {} failed ({})", l.errors, by.join(", ")));
            } else {
                s.push_str(", 0 failed");
            }
        }
        None => s.push_str(" no requests yet"),
    }
    if let Some(c) = cold_pct {
        s.push_str(&format!(", volume {c:.0}% cold"));
    }
    s
}

/// An event as a line: "+95.2 s switchover: node2".
pub fn event_line(e: &Event) -> Option<String> {
    let name = e.name.strip_prefix("phase:").map(|p| format!("phase {p}")).unwrap_or_else(|| e.name.clone());
    if e.name == "phase:run" {
        return None;
    }
    Some(if e.detail.is_empty() {
        format!("+{:.1} s {name}", e.t)
    } else {
        format!("+{:.1} s {name}: {}", e.t, e.detail)
    })
}

/// A running status display; stops when dropped.
pub struct Status {
    task: Option<tokio::task::JoinHandle<()>>,
    bar: Option<indicatif::ProgressBar>,
}

impl Status {
    /// Start showing the run `rec` records. `warm_share`: (t, share of the
    /// promoted volume warm) samples, when the volume is emulated.
    pub fn start(mode: Mode, rec: Arc<Recorder>, plan: Plan, warm_share: Option<WarmShare>) -> Status {
        if mode == Mode::Off {
            return Status { task: None, bar: None };
        }
        let bar = (mode == Mode::Terminal).then(|| {
            let b = indicatif::ProgressBar::new_spinner();
            b.set_style(
                indicatif::ProgressStyle::with_template("{spinner} {msg}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
            );
            b
        });
        let b2 = bar.clone();
        let task = tokio::spawn(async move {
            let mut seen = 0;
            let mut phase_start = 0.0;
            // The first plain line after one interval: a short step says nothing.
            let mut last_line = std::time::Instant::now();
            loop {
                let (phase, last, events) = rec.tail(seen);
                seen += events.len();
                for e in &events {
                    if let Some(p) = e.name.strip_prefix("phase:") {
                        if p == phase {
                            phase_start = e.t;
                        }
                    }
                    if let Some(l) = event_line(e) {
                        say_on(b2.as_ref(), &l);
                    }
                }
                let planned = plan.iter().find(|(n, _)| *n == phase).map(|p| p.1);
                let cold = warm_share
                    .as_ref()
                    .and_then(|w| w.lock().unwrap().last().copied())
                    .map(|(_, share)| (1.0 - share) * 100.0);
                // Before the first phase: the cluster starting, seeding, lint.
                let shown = if phase == "run" && planned.is_none() { "setup" } else { phase.as_str() };
                let text = line(shown, rec.elapsed() - phase_start, planned, last.as_ref(), cold);
                match (&b2, mode) {
                    (Some(b), _) => {
                        b.set_message(text);
                        b.tick();
                    }
                    (None, Mode::Lines { every }) if last_line.elapsed() >= every => {
                        eprintln!("{text}");
                        last_line = std::time::Instant::now();
                    }
                    _ => {}
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        Status { task: Some(task), bar }
    }

    /// Print a line above the live line (or on its own).
    pub fn say(&self, text: &str) {
        if self.task.is_some() {
            say_on(self.bar.as_ref(), text);
        }
    }
}

fn say_on(bar: Option<&indicatif::ProgressBar>, text: &str) {
    match bar {
        Some(b) => b.println(text),
        None => eprintln!("{text}"),
    }
}

impl Drop for Status {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn a_line_says_phase_rate_tail_failures_and_coldness() {
        let mut by = BTreeMap::new();
        by.insert("deadline_exceeded".to_string(), 7);
        let s = SecondSummary {
            t: 99,
            phase: "cold".into(),
            count: 981,
            errors: 7,
            errors_by_class: by,
            p50_ms: 3.0,
            p99_ms: 2001.5,
            max_ms: 2100.0,
            by_txn: BTreeMap::new(),
        };
        assert_eq!(
            line("cold", 34.4, Some(120.0), Some(&s), Some(62.6)),
            "[cold 34/120 s] 981 req/s, p99 2001.5 ms, 7 failed (deadline_exceeded 7), volume 63% cold"
        );
        assert_eq!(line("seed", 3.0, None, None, None), "[seed 3 s] no requests yet");
        let e = Event { t: 95.23, name: "switchover".into(), detail: "node2".into() };
        assert_eq!(event_line(&e).unwrap(), "+95.2 s switchover: node2");
        let p = Event { t: 1.0, name: "phase:cold".into(), detail: String::new() };
        assert_eq!(event_line(&p).unwrap(), "+1.0 s phase cold");
        assert!(Mode::from_setting("sometimes", 5).is_err());
        assert_eq!(Mode::from_setting("lines", 0).unwrap(), Mode::Lines { every: Duration::from_secs(1) });
    }
}
