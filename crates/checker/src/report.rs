//! The drill report: what report.json holds. Key names are a contract
//! (issue 6); fields are added beside them, never renamed.

use coldswap_client::stats::{Event, Kind, PhaseResult, SecondSummary, TxnResult};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct Step {
    pub name: String,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct ClusterSection {
    pub backend: String,
    pub from_version: String,
    pub to_version: String,
    pub steps: Vec<Step>,
    #[serde(default)]
    pub nodes: Vec<serde_json::Value>,
}

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
    #[serde(default)]
    pub old_primary: String,
    #[serde(default)]
    pub new_primary: String,
    #[serde(default)]
    pub gtid_position: String,
    #[serde(default)]
    pub rolled_back: bool,
}

/// One row of a phase's transaction table.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TxnRow {
    pub name: String,
    pub kind: Kind,
    pub count: u64,
    pub ok: u64,
    pub errors: BTreeMap<String, u64>,
    pub error_rate: f64,
    pub throughput_per_s: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
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
            error_samples: t.error_samples.clone(),
            histogram: t.histogram.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Digest {
    pub digest_text: String,
    pub exec_count: u64,
    pub rows_examined: u64,
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

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Phase {
    pub name: String,
    pub start_s: f64,
    pub end_s: f64,
    /// Transactions and background jobs (see `kind`).
    pub transactions: Vec<TxnRow>,
    #[serde(default)]
    pub top_digests: Vec<Digest>,
    /// All requests of the phase (not background jobs).
    #[serde(default)]
    pub requests: u64,
    #[serde(default)]
    pub errors: u64,
    #[serde(default)]
    pub error_rate: f64,
    /// Percentiles of all API requests of the phase together (merged histograms).
    #[serde(default)]
    pub p50_ms: f64,
    #[serde(default)]
    pub p99_ms: f64,
}

impl Phase {
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

    pub fn txn(&self, name: &str) -> Option<&TxnRow> {
        self.transactions.iter().find(|t| t.name == name)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Comparison {
    pub transaction: String,
    pub baseline_p99_ms: Option<f64>,
    pub cold_p99_ms: Option<f64>,
    pub warm_p99_ms: Option<f64>,
    pub cold_over_warm: Option<f64>,
    #[serde(default)]
    pub cold_error_rate: f64,
    #[serde(default)]
    pub warm_error_rate: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HeaviestHitter {
    pub phase: String,
    pub digest_text: String,
    pub transaction: Option<String>,
    pub share: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Lint {
    pub transaction: String,
    pub statement: String,
    pub full_scan: bool,
    pub rows_estimate: u64,
    /// This statement once on a fully cold volume: blocks it reads x mean
    /// first-touch latency / fetches in flight.
    pub est_cold_cost_ms: f64,
    /// Tables read by a full (table or index) scan.
    #[serde(default)]
    pub scanned_tables: Vec<String>,
    #[serde(default)]
    pub explain: Vec<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Threshold {
    pub rule: String,
    pub value: f64,
    pub limit: f64,
    pub passed: bool,
    #[serde(default)]
    pub detail: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct KillSwitch {
    pub target: String,
    pub at_s: f64,
    pub error_rate_before: f64,
    pub error_rate_after: f64,
    pub p99_before_ms: f64,
    pub p99_after_ms: f64,
    pub recovered: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Verdict {
    pub passed: bool,
    pub headline: String,
    #[serde(default)]
    pub findings: Vec<String>,
}

/// The whole report.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Report {
    pub coldswap_version: String,
    /// False when the drill was interrupted or failed part-way.
    pub complete: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incomplete_reason: Option<String>,
    pub started_at: String,
    pub duration_s: f64,
    pub verdict: Verdict,
    /// The drill's settings (no credentials).
    pub config: serde_json::Value,
    pub cluster: ClusterSection,
    pub switchover: Switchover,
    #[serde(default)]
    pub storage: serde_json::Value,
    #[serde(default)]
    pub warmup: serde_json::Value,
    pub phases: Vec<Phase>,
    pub comparison: Vec<Comparison>,
    pub heaviest_hitter: Option<HeaviestHitter>,
    pub lint: Vec<Lint>,
    #[serde(default)]
    pub kill_switch: Option<KillSwitch>,
    pub thresholds: Vec<Threshold>,
    #[serde(default)]
    pub invariants: serde_json::Value,
    #[serde(default)]
    pub timeline: Vec<SecondSummary>,
    #[serde(default)]
    pub events: Vec<Event>,
}

impl Report {
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
