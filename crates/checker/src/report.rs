//! The drill report: what report.json holds. Key names are a contract
//! (issue 6); fields are added beside them, never renamed.

use coldswap_client::stats::{Event, Kind, PhaseResult, SecondSummary, TxnResult};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A timed step of the drill (`cluster.steps`).
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct Step {
    /// `cluster_up`, `upgrade.upgrade_tool`, `promote.fence_old_primary`, ...
    pub name: String,
    /// How long it took.
    pub seconds: f64,
}

/// The cluster the drill ran on (`cluster`).
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct ClusterSection {
    /// `process` or `container`.
    pub backend: String,
    /// `SELECT VERSION()` of the primary before the upgrade.
    pub from_version: String,
    /// `mariadb` or `mysql`.
    #[serde(default)]
    pub flavor: String,
    /// `SELECT VERSION()` of the replica after it.
    pub to_version: String,
    /// Every timed step, in order.
    pub steps: Vec<Step>,
    /// Each node as the lifecycle recorded it (name, role, address, version).
    #[serde(default)]
    pub nodes: Vec<serde_json::Value>,
}

/// The switchover window (`switchover`).
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct Switchover {
    /// From fencing the old primary to the endpoint pointing at a writable new one.
    pub write_unavailable_seconds: f64,
    /// Requests that failed during the switchover window.
    pub failed_requests: u64,
    /// Failures in the window, by class.
    #[serde(default)]
    pub errors: BTreeMap<String, u64>,
    /// As clients saw it: first to last failed request of the window.
    #[serde(default)]
    pub client_unavailable_seconds: f64,
    /// Of the window, the drill's restart of the replica on a fresh restore
    /// (inside the fence, so replication cannot warm the volume first). An
    /// artefact of the emulation: in production the promoted replica's
    /// volume was restored long before the switchover.
    #[serde(default)]
    pub cold_restore_seconds: f64,
    /// The window without that restart: what the procedure itself costs
    /// (fence, catch-up, promote, endpoint swap). Thresholds use this.
    #[serde(default)]
    pub procedure_unavailable_seconds: f64,
    /// The node that was primary.
    #[serde(default)]
    pub old_primary: String,
    /// The node promoted.
    #[serde(default)]
    pub new_primary: String,
    /// The GTID position the new primary caught up to.
    #[serde(default)]
    pub gtid_position: String,
    /// Whether the switchover failed after the fence and the old primary was put back.
    #[serde(default)]
    pub rolled_back: bool,
}

/// One row of a phase's transaction table.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TxnRow {
    /// Transaction or background job name, as in the mix.
    pub name: String,
    /// A transaction (an API request) or a background job.
    pub kind: Kind,
    /// Requests that arrived in the phase.
    pub count: u64,
    /// Of them, those that succeeded.
    pub ok: u64,
    /// Failures by class (`deadline_exceeded`, `pool_exhausted`, ...).
    pub errors: BTreeMap<String, u64>,
    /// Failed / all.
    pub error_rate: f64,
    /// Successful requests per second of the phase.
    pub throughput_per_s: f64,
    /// Latency percentiles, ms (from the HDR histogram).
    pub p50_ms: f64,
    /// 90th percentile, ms.
    pub p90_ms: f64,
    /// 95th percentile, ms.
    pub p95_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// 99.9th percentile, ms.
    pub p999_ms: f64,
    /// Slowest request, ms.
    pub max_ms: f64,
    /// Latency of the phase's first request, ms (cold: before anything is warm).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_ms: Option<f64>,
    /// A few error messages, as the server sent them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub error_samples: Vec<String>,
    /// HDR histogram (V2 deflate, base64): exact merges and re-analysis.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub histogram: String,
}

impl From<&TxnResult> for TxnRow {
    fn from(t: &TxnResult) -> TxnRow {
        TxnRow {
            name: t.name.clone(),
            kind: t.kind,
            count: t.count,
            ok: t.ok,
            errors: t.errors.clone(),
            error_rate: t.error_rate,
            throughput_per_s: t.throughput_per_s,
            p50_ms: t.p50_ms,
            p90_ms: t.p90_ms,
            p95_ms: t.p95_ms,
            p99_ms: t.p99_ms,
            p999_ms: t.p999_ms,
            max_ms: t.max_ms,
            first_ms: t.first_ms,
            error_samples: t.error_samples.clone(),
            histogram: t.histogram.clone(),
        }
    }
}

/// One statement digest as the server aggregated it (`phases[].top_digests[]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Digest {
    /// The server's normalized statement text.
    pub digest_text: String,
    /// Executions in the phase.
    pub exec_count: u64,
    /// Rows the server examined for it.
    pub rows_examined: u64,
    /// Time the server spent on it, ms.
    pub total_latency_ms: f64,
    /// Share of the rows examined by all data statements of the phase: the
    /// work this statement made the server do.
    pub share: f64,
    /// Share of the phase's data-statement latency (waits included).
    #[serde(default)]
    pub latency_share: f64,
    /// The mix transaction or background job that issues it, if known.
    #[serde(default)]
    pub transaction: Option<String>,
}

/// One phase of the drill (`phases[]`): baseline, upgrade, switchover, cold, warmup, warm.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Phase {
    /// `baseline`, `cold`, `warm`, ...
    pub name: String,
    /// Start, seconds since the drill's load started.
    pub start_s: f64,
    /// End, seconds since the drill's load started.
    pub end_s: f64,
    /// Transactions and background jobs (see `kind`).
    pub transactions: Vec<TxnRow>,
    /// The heaviest statements of the phase by rows examined.
    #[serde(default)]
    pub top_digests: Vec<Digest>,
    /// All requests of the phase (not background jobs).
    #[serde(default)]
    pub requests: u64,
    /// Failed API requests of the phase.
    #[serde(default)]
    pub errors: u64,
    /// Failed / all API requests of the phase.
    #[serde(default)]
    pub error_rate: f64,
    /// Percentiles of all API requests of the phase together (merged histograms).
    #[serde(default)]
    pub p50_ms: f64,
    /// 99th percentile of all API requests of the phase, ms.
    #[serde(default)]
    pub p99_ms: f64,
}

impl Phase {
    /// A phase row from the load's results.
    pub fn from_result(p: &PhaseResult) -> Phase {
        let (n, e) = p.total_requests();
        let mut all: Option<hdrhistogram::Histogram<u64>> = None;
        for t in &p.transactions {
            if let Some(h) = coldswap_client::stats::decode_hist(&t.histogram) {
                match &mut all {
                    Some(a) => {
                        let _ = a.add(&h);
                    }
                    None => all = Some(h),
                }
            }
        }
        let q = |x: f64| {
            all.as_ref().filter(|h| !h.is_empty()).map(|h| h.value_at_quantile(x) as f64 / 1000.0).unwrap_or(0.0)
        };
        Phase {
            p50_ms: q(0.5),
            p99_ms: q(0.99),
            name: p.name.clone(),
            start_s: p.start_s,
            end_s: p.end_s,
            transactions: p.transactions.iter().chain(p.background.iter()).map(TxnRow::from).collect(),
            top_digests: Vec::new(),
            requests: n,
            errors: e,
            error_rate: if n == 0 { 0.0 } else { e as f64 / n as f64 },
        }
    }

    /// A transaction's row, by name.
    pub fn txn(&self, name: &str) -> Option<&TxnRow> {
        self.transactions.iter().find(|t| t.name == name)
    }
}

/// One transaction's p99 across phases (`comparison[]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Comparison {
    /// The transaction.
    pub transaction: String,
    /// p99 in the baseline (warm, old version), ms.
    pub baseline_p99_ms: Option<f64>,
    /// p99 in the cold phase, ms.
    pub cold_p99_ms: Option<f64>,
    /// p99 in the warm phase after the warm-up, ms.
    pub warm_p99_ms: Option<f64>,
    /// cold p99 / warm p99.
    pub cold_over_warm: Option<f64>,
    /// Error rate in the cold phase.
    #[serde(default)]
    pub cold_error_rate: f64,
    /// Error rate in the warm phase.
    #[serde(default)]
    pub warm_error_rate: f64,
}

/// The statement that made the server do the most work (`heaviest_hitter`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HeaviestHitter {
    /// The phase it was heaviest in (cold when there is one).
    pub phase: String,
    /// The server's normalized statement text.
    pub digest_text: String,
    /// The mix transaction or background job that issues it, when known.
    pub transaction: Option<String>,
    /// Its share of the rows examined in that phase.
    pub share: f64,
}

/// What EXPLAIN said of one mix statement before the load (`lint[]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Lint {
    /// The transaction or background job it belongs to.
    pub transaction: String,
    /// The statement, as the mix declares it.
    pub statement: String,
    /// Whether it reads a whole table or index.
    pub full_scan: bool,
    /// Rows the optimizer expects to read.
    pub rows_estimate: u64,
    /// This statement once on a fully cold volume: blocks it reads x mean
    /// first-touch latency / fetches in flight.
    pub est_cold_cost_ms: f64,
    /// Tables read by a full (table or index) scan.
    #[serde(default)]
    pub scanned_tables: Vec<String>,
    /// EXPLAIN's rows, column by column.
    #[serde(default)]
    pub explain: Vec<BTreeMap<String, String>>,
    /// Why EXPLAIN could not run, when it could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Whether this drill runs the statement (a background job switched off
    /// is linted, but not counted against the run).
    #[serde(default = "yes")]
    pub runs: bool,
    /// The first cold execution measured for it, ms (a full scan's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measured_first_cold_ms: Option<f64>,
    /// measured_first_cold_ms / est_cold_cost_ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measured_over_predicted: Option<f64>,
    /// Why measured and predicted disagree, when they do.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prediction_note: String,
}

/// One rule of `[thresholds]` and its outcome (`thresholds[]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Threshold {
    /// The rule's name (`cold_p99_over_warm`, `unavailable_s`, ...).
    pub rule: String,
    /// What the drill measured.
    pub value: f64,
    /// The rule's limit.
    pub limit: f64,
    /// Whether the value is within the limit (false when it could not be measured).
    pub passed: bool,
    /// Whether the value could be measured at all; a rule that could not
    /// is failed, never passed.
    #[serde(default = "yes")]
    pub checked: bool,
    /// What was measured, in words.
    #[serde(default)]
    pub detail: String,
}

/// The kill-switch's effect within the cold phase (`kill_switch`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct KillSwitch {
    /// The transaction or background job switched off.
    pub target: String,
    /// When, seconds into the cold phase.
    pub at_s: f64,
    /// Cold error rate before the switch.
    pub error_rate_before: f64,
    /// Cold error rate after it (past a settling time).
    pub error_rate_after: f64,
    /// Typical per-second p99 before the switch, ms.
    pub p99_before_ms: f64,
    /// Typical per-second p99 after it, ms.
    pub p99_after_ms: f64,
    /// Whether errors fell by half (or stayed at 0) and p99 did not rise.
    pub recovered: bool,
}

fn yes() -> bool {
    true
}

/// One invariant of the data after (or before) the switchover and its
/// outcome (`invariant_results[]`): the replica matched its primary, no
/// acknowledged write was lost, no task state contradicts what its worker
/// was told. An invariant that could not be checked fails, named as such.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct InvariantResult {
    /// `replica_consistent`, `write_ledger`, `task_states`.
    pub name: String,
    /// Whether it could be checked.
    pub checked: bool,
    /// Checked and held.
    pub passed: bool,
    /// What was found, or why it could not be checked.
    pub detail: String,
}

/// The drill's conclusion (`verdict`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Verdict {
    /// Every threshold and invariant passed.
    pub passed: bool,
    /// One line: what happened and why.
    pub headline: String,
    /// What led to it, most important first.
    #[serde(default)]
    pub findings: Vec<String>,
}

/// The whole report.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Report {
    /// The coldswap that wrote the report.
    pub coldswap_version: String,
    /// False when the drill was interrupted or failed part-way.
    pub complete: bool,
    /// Why the drill stopped part-way, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incomplete_reason: Option<String>,
    /// When the drill started (UTC, ISO 8601).
    pub started_at: String,
    /// How long the drill ran.
    pub duration_s: f64,
    /// The conclusion.
    pub verdict: Verdict,
    /// The drill's settings (no credentials).
    pub config: serde_json::Value,
    /// The cluster and its lifecycle steps.
    pub cluster: ClusterSection,
    /// The switchover window.
    pub switchover: Switchover,
    /// The emulated cold storage: its settings and the cold phase's counters.
    #[serde(default)]
    pub storage: serde_json::Value,
    /// The warm-up technique and what it did.
    #[serde(default)]
    pub warmup: serde_json::Value,
    /// The warm-up run before the switchover (`warmup.before_switchover`),
    /// when one was: the technique, how long it took, blocks it fetched.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub prewarm: serde_json::Value,
    /// Every phase.
    pub phases: Vec<Phase>,
    /// p99 across phases, per transaction.
    pub comparison: Vec<Comparison>,
    /// The statement that made the server do the most work.
    pub heaviest_hitter: Option<HeaviestHitter>,
    /// EXPLAIN of every mix statement before the load.
    pub lint: Vec<Lint>,
    /// The kill-switch's effect, when one was set.
    #[serde(default)]
    pub kill_switch: Option<KillSwitch>,
    /// Every threshold rule.
    pub thresholds: Vec<Threshold>,
    /// Every invariant and its outcome.
    #[serde(default)]
    pub invariant_results: Vec<InvariantResult>,
    /// What `coldswap gate` would have said just before the switchover
    /// (`gate.when` says at which point of the drill it was taken).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<crate::gate::Gate>,
    /// How long after the switchover the API was warm again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_to_warm: Option<crate::warmth::TimeToWarm>,
    /// The version effect apart from the cold effect, per transaction
    /// (drills run with `[matrix]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matrix: Option<crate::matrix::Matrix>,
    /// Checks of the data after the drill: checksums, write ledger, task states.
    #[serde(default)]
    pub invariants: serde_json::Value,
    /// Requests per second of the whole run.
    #[serde(default)]
    pub timeline: Vec<SecondSummary>,
    /// What happened when (upgraded, fenced, switchover, kill-switch).
    #[serde(default)]
    pub events: Vec<Event>,
}

impl ClusterSection {
    /// `MySQL 9.7.4-2 -> 9.7.4-2` or `MariaDB 10.11.18-MariaDB... -> ...`.
    pub fn versions(&self) -> String {
        let name = match self.flavor.as_str() {
            "mysql" => "MySQL ",
            "mariadb" => "MariaDB ",
            _ => "",
        };
        format!("{name}{} -> {}", self.from_version, self.to_version)
    }
}

impl Report {
    /// A phase, by name.
    pub fn phase(&self, name: &str) -> Option<&Phase> {
        self.phases.iter().find(|p| p.name == name)
    }

    /// cold vs warm (and baseline) p99 of every transaction and job.
    pub fn compute_comparison(&mut self) {
        let names: Vec<String> = {
            let mut v: Vec<String> = Vec::new();
            for p in &self.phases {
                for t in &p.transactions {
                    if !v.contains(&t.name) {
                        v.push(t.name.clone());
                    }
                }
            }
            v
        };
        let get = |ph: &str, n: &str| self.phase(ph).and_then(|p| p.txn(n)).filter(|t| t.count > 0);
        self.comparison = names
            .iter()
            .map(|n| {
                let b = get("baseline", n).map(|t| t.p99_ms);
                let c = get("cold", n);
                let w = get("warm", n);
                let cold = c.map(|t| t.p99_ms);
                let warm = w.map(|t| t.p99_ms);
                Comparison {
                    transaction: n.clone(),
                    baseline_p99_ms: b,
                    cold_p99_ms: cold,
                    warm_p99_ms: warm,
                    cold_over_warm: match (cold, warm) {
                        (Some(c), Some(w)) if w > 0.0 => Some(c / w),
                        _ => None,
                    },
                    cold_error_rate: c.map(|t| t.error_rate).unwrap_or(0.0),
                    warm_error_rate: w.map(|t| t.error_rate).unwrap_or(0.0),
                }
            })
            .collect();
    }

    /// The digest with the largest share of the cold phase (else any phase).
    pub fn compute_heaviest(&mut self) {
        let pick = |p: &Phase| {
            p.top_digests.iter().max_by(|a, b| a.share.total_cmp(&b.share)).map(|d| HeaviestHitter {
                phase: p.name.clone(),
                digest_text: d.digest_text.clone(),
                transaction: d.transaction.clone(),
                share: d.share,
            })
        };
        self.heaviest_hitter = self.phase("cold").and_then(pick).or_else(|| self.phases.iter().rev().find_map(pick));
    }
}
