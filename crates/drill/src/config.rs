//! drill.toml: everything a drill needs, with defaults that reproduce the
//! 2017 incident on a 2-core machine in under 10 minutes. Flags override it.

use anyhow::{anyhow, bail, Result};
use coldswap_checker::Thresholds;
use coldswap_client::TierConfig;
use coldswap_db::{BackendChoice, BackendKind};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `[cluster]`: where the drill's servers run and which versions.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterCfg {
    /// process, container, auto, or external (servers the user runs, named
    /// in the file `external` points at).
    pub backend: String,
    /// With backend = "external": the external config (external.toml).
    pub external: Option<PathBuf>,
    /// With backend = "external": allow servers off loopback.
    pub allow_remote: bool,
    /// The version the cluster starts on (process backend): `mariadb-10.11.18`, `mysql-9.7.4`, a tarball directory.
    pub from: String,
    /// The version the replica is upgraded to (process backend).
    pub to: String,
    /// The container backend's images (a real major upgrade by default:
    /// built by `make images`; mysql:5.7.19 -> mysql:8.0 where a registry is reachable).
    pub from_image: String,
    /// The image the replica is upgraded to (container backend).
    pub to_image: String,
    /// InnoDB buffer pool per server, MiB.
    pub buffer_pool_mb: u32,
}

impl Default for ClusterCfg {
    fn default() -> Self {
        ClusterCfg {
            backend: "process".into(),
            external: None,
            allow_remote: false,
            from: "mariadb-10.11.18".into(),
            to: "mariadb-10.11.19".into(),
            from_image: "coldswap/mariadb:10.11".into(),
            to_image: "coldswap/mariadb:11.8".into(),
            buffer_pool_mb: 256,
        }
    }
}

impl ClusterCfg {
    /// (from, to) as the chosen backend names them.
    pub fn versions_for(&self, backend: BackendKind) -> (String, String) {
        backend.pick((self.from.clone(), self.to.clone()), (self.from_image.clone(), self.to_image.clone()))
    }
}

/// `[data]`: the seeded dataset.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DataCfg {
    /// Dataset scale: 1 is about 1 GiB on disk.
    pub scale: f64,
    /// A dataset shaped like yours (the directory `coldswap schema import`
    /// wrote), seeded beside the built-in one, in its own database.
    pub dataset: Option<std::path::PathBuf>,
    /// Its scale: 1 is the size it had where it was read.
    pub dataset_scale: f64,
}

impl Default for DataCfg {
    fn default() -> Self {
        DataCfg { scale: 1.0, dataset: None, dataset_scale: 1.0 }
    }
}

impl DataCfg {
    /// The shaped dataset to seed, read and checked (before anything starts).
    pub fn shaped(&self) -> Result<Option<(coldswap_dataset::shaped::Shape, String)>> {
        let Some(d) = &self.dataset else { return Ok(None) };
        coldswap_dataset::check_scale(self.dataset_scale)?;
        let (shape, ddl) = coldswap_dataset::shaped::Shape::load(d)?;
        if ["api", "import_queue", "coldswap_meta"].contains(&shape.database.as_str()) {
            bail!(
                "{}: database {} is the built-in dataset's: name another in its dataset.toml (and the mix's database)",
                d.join(coldswap_dataset::shaped::DATASET_FILE).display(),
                shape.database
            );
        }
        Ok(Some((shape, ddl)))
    }
}

/// `[storage]`: the emulated snapshot-restored volume of the promoted node.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StorageCfg {
    /// A named volume (see [`PROFILES`]) that sets latency, concurrency and
    /// hydration; leave those out when naming one.
    pub profile: Option<String>,
    /// First-touch latency: fixed ("1ms") or a range ("3ms..30ms").
    pub latency: String,
    /// Volume block, KiB: the first read of each pays the latency.
    pub block_kib: u64,
    /// First-touch fetches in flight at once, volume-wide.
    pub concurrency: u32,
    /// Background hydration, MiB/s (0: off).
    pub hydrate_mib_s: f64,
}

impl StorageCfg {
    /// The volume in words: the profile's name, or its latency.
    pub fn describe(&self) -> String {
        match &self.profile {
            Some(p) => format!("profile {p}"),
            None => self.latency.clone(),
        }
    }

    /// Copy a named profile's knobs into the settings and drop the name, so
    /// that a flag can change one knob of it.
    pub fn expand_profile(&mut self) -> Result<()> {
        if let Some(name) = self.profile.take() {
            let p = PROFILES
                .iter()
                .find(|p| p.name == name)
                .ok_or_else(|| anyhow!("storage.profile: unknown profile '{name}'"))?;
            self.latency = p.latency.into();
            self.concurrency = p.concurrency;
            self.hydrate_mib_s = p.hydrate_mib_s;
        }
        Ok(())
    }
}

impl Default for StorageCfg {
    fn default() -> Self {
        StorageCfg { profile: None, latency: "3ms..30ms".into(), block_kib: 64, concurrency: 4, hydrate_mib_s: 0.0 }
    }
}

/// A storage profile: the cloud case a user has, as the emulator's knobs.
#[derive(Debug, Clone, Copy)]
pub struct Profile {
    /// Its name in `[storage] profile`.
    pub name: &'static str,
    /// What it stands for.
    pub what: &'static str,
    /// First-touch latency.
    pub latency: &'static str,
    /// Fetches in flight.
    pub concurrency: u32,
    /// Background hydration, MiB/s.
    pub hydrate_mib_s: f64,
}

/// The named storage profiles.
pub const PROFILES: &[Profile] = &[
    Profile {
        name: "lazy-restore",
        what: "a volume restored from a snapshot and loaded lazily (EBS without initialization; the 2017 case): 3-30 ms per first read",
        latency: "3ms..30ms",
        concurrency: 4,
        hydrate_mib_s: 0.0,
    },
    Profile {
        name: "lazy-restore-hydrating",
        what: "the same with its initialization running in the background at 300 MiB/s (the top of EBS's 100-300 MiB/s)",
        latency: "3ms..30ms",
        concurrency: 4,
        hydrate_mib_s: 300.0,
    },
    Profile {
        name: "initialized",
        what: "a restored volume read once end to end before use (fio or dd): no first-touch penalty left",
        latency: "0",
        concurrency: 4,
        hydrate_mib_s: 0.0,
    },
    Profile {
        name: "fast-restore",
        what: "a fast-snapshot-restore volume (EBS FSR): fully performant when created",
        latency: "0",
        concurrency: 4,
        hydrate_mib_s: 0.0,
    },
];

/// `[load]`: the API-shaped load.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LoadCfg {
    /// The mix file.
    pub mix: PathBuf,
    /// Concurrent users (goose users; the API tier's requests in flight).
    pub users: usize,
    /// Open model: requests per second (0: closed model).
    pub rate: f64,
    /// Closed model: pause between a user's requests, ms.
    pub think_ms: u64,
    /// Users started per second (0: all at once).
    pub hatch_rate: f64,
    /// Background jobs to run (absent: those the mix enables).
    pub background: Option<Vec<String>>,
    /// API servers, each running the background jobs on its own timer
    /// (absent: the mix's `[api] nodes`).
    pub api_nodes: Option<u32>,
    /// Seed of the parameter draws.
    pub seed: u64,
}

impl Default for LoadCfg {
    fn default() -> Self {
        LoadCfg {
            mix: PathBuf::from("loadtests/api.toml"),
            users: 64,
            rate: 1000.0,
            think_ms: 0,
            hatch_rate: 0.0,
            background: None,
            api_nodes: None,
            seed: 1,
        }
    }
}

/// `[phases]`: how long each measured phase runs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PhasesCfg {
    /// Against the warm primary, before the upgrade.
    pub baseline: String,
    /// Against the cold new primary, right after the switchover.
    pub cold: String,
    /// After the warm-up.
    pub warm: String,
}

impl Default for PhasesCfg {
    fn default() -> Self {
        PhasesCfg { baseline: "60s".into(), cold: "120s".into(), warm: "60s".into() }
    }
}

/// `[warmup]`: how the promoted node is warmed between the cold and warm phases.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WarmupCfg {
    /// none, buffer-pool, volume-read or prefetch.
    pub technique: String,
    /// Parallel readers (volume-read, prefetch).
    pub parallel: usize,
    /// Share of the old primary's buffer pool that `buffer-pool` dumps, percent
    /// (InnoDB's own default is 25).
    pub dump_pct: u8,
    /// Warm the replica before the switchover, as a team would before its
    /// maintenance window: the replica restarts on the fresh restore while
    /// still replicating (before the fence, not inside it), this technique
    /// runs on it ("none": nothing), it catches up, and only then is it
    /// fenced and promoted. Unset: the restore happens inside the fenced
    /// window and nothing warms the node before it takes the traffic (the
    /// 2017 case). `coldswap warmups` sets it once per technique.
    pub before_switchover: Option<String>,
}

impl Default for WarmupCfg {
    fn default() -> Self {
        WarmupCfg { technique: "buffer-pool".into(), parallel: 8, dump_pct: 100, before_switchover: None }
    }
}

/// `[kill_switch]`: turn a transaction or background job off part-way through the cold phase (the incident's workaround).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KillSwitchCfg {
    /// A transaction or background job of the mix.
    pub target: String,
    /// When, into the cold phase.
    pub at: String,
}

/// `[switchover]`: the guardrails of the promotion.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SwitchoverCfg {
    /// Refuse to promote a replica further behind than this.
    pub max_lag_s: f64,
    /// GTID catch-up after fencing, before rolling back.
    pub catchup_timeout_s: f64,
    /// How long the drill waits for the cold replica to come within
    /// max_lag_s before it gives up (a cold replica applies slowly).
    pub wait_for_replica: String,
}

impl Default for SwitchoverCfg {
    fn default() -> Self {
        SwitchoverCfg { max_lag_s: 5.0, catchup_timeout_s: 30.0, wait_for_replica: "300s".into() }
    }
}

/// `[checks]`: consistency checks before the switchover.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ChecksCfg {
    /// Checksum every table on primary and replica before the switchover.
    pub checksum: bool,
    /// Checksum chunks (10k rows) per second at most.
    pub checksum_chunks_per_s: f64,
    /// Promote a replica that differs from its primary anyway (a what-if);
    /// by default the drill stops before the switchover, failed.
    pub promote_anyway: bool,
}

impl Default for ChecksCfg {
    fn default() -> Self {
        ChecksCfg { checksum: true, checksum_chunks_per_s: 50.0, promote_anyway: false }
    }
}

/// `[matrix]`: the version effect apart from the cold effect.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MatrixCfg {
    /// Run the fourth cell, the from-version cold (the primary restarted on
    /// a fresh restore, measured for `phases.cold`, then warmed as the new
    /// primary is), and add the matrix to the report.
    pub enabled: bool,
    /// One-sided confidence of the effects' intervals, percent (Bonferroni
    /// over the table).
    pub confidence_pct: f64,
    /// Parameter draws per read statement whose results are compared
    /// between the versions after the load (the old primary demoted and
    /// caught up with the new one); 0: results not compared.
    pub result_samples: usize,
}

impl Default for MatrixCfg {
    fn default() -> Self {
        MatrixCfg { enabled: false, confidence_pct: 95.0, result_samples: 10 }
    }
}

/// drill.toml: a whole drill.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DrillConfig {
    /// Reports go to <out>/<timestamp>/, with <out>/latest pointing at the last.
    pub out: PathBuf,
    /// Leave the cluster running (and its run dir) after the drill.
    pub keep: bool,
    /// Progress while it runs: "auto" (a live line on a terminal, plain
    /// lines elsewhere), "terminal", "lines" or "off".
    pub status: String,
    /// Seconds between plain status lines.
    pub status_every_s: u64,
    /// Serve the run's counters and latency histograms for Prometheus on
    /// this address (127.0.0.1:9464), `GET /metrics`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<String>,
    /// Where servers run and which versions.
    pub cluster: ClusterCfg,
    /// The dataset.
    pub data: DataCfg,
    /// The emulated cold storage.
    pub storage: StorageCfg,
    /// The load.
    pub load: LoadCfg,
    /// The API tier model (pool, deadline, retries).
    pub api: TierConfig,
    /// Phase durations.
    pub phases: PhasesCfg,
    /// Promotion guardrails.
    pub switchover: SwitchoverCfg,
    /// The warm-up.
    pub warmup: WarmupCfg,
    /// An optional kill-switch in the cold phase.
    pub kill_switch: Option<KillSwitchCfg>,
    /// Consistency checks.
    pub checks: ChecksCfg,
    /// The import queue's job lifecycle, naive and guarded reapers side by side.
    pub queue: coldswap_client::queue::QueueConfig,
    /// The rules that fail the drill.
    pub thresholds: Thresholds,
    /// What "warm again" means for the time to warm.
    pub warmth: coldswap_checker::warmth::WarmthCfg,
    /// `coldswap capacity`: the load steps and the SLO.
    pub capacity: CapacityCfg,
    /// The four-cell matrix: version effect apart from the cold effect.
    pub matrix: MatrixCfg,
}

impl Default for DrillConfig {
    fn default() -> Self {
        DrillConfig {
            out: PathBuf::from("target/drill"),
            keep: false,
            status: "auto".into(),
            status_every_s: 10,
            metrics_listen: None,
            cluster: ClusterCfg::default(),
            data: DataCfg::default(),
            storage: StorageCfg::default(),
            load: LoadCfg::default(),
            api: TierConfig::default(),
            phases: PhasesCfg::default(),
            switchover: SwitchoverCfg::default(),
            warmup: WarmupCfg::default(),
            kill_switch: None,
            checks: ChecksCfg::default(),
            queue: coldswap_client::queue::QueueConfig { enabled: true, ..Default::default() },
            thresholds: Thresholds::default(),
            warmth: Default::default(),
            capacity: CapacityCfg::default(),
            matrix: MatrixCfg::default(),
        }
    }
}

/// `[capacity]` in drill.toml.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CapacityCfg {
    /// First arrival rate (requests/s).
    pub start_rate: f64,
    /// Each step multiplies the rate by this (> 1).
    pub step_factor: f64,
    /// Steps of each cold search at most.
    pub max_steps: usize,
    /// Warm steps at most: the warm search goes on until the SLO breaks or
    /// the load generator saturates, within this many steps.
    pub warm_max_steps: usize,
    /// Times since the switchover at which the cold capacity is searched
    /// again, on one restore ("1m", "5m", ...; empty: the first step only).
    pub since_switchover: Vec<String>,
    /// How long each step runs.
    pub step: String,
    /// The SLO: p99 of the API's requests (ms) and their error rate (%).
    pub slo_p99_ms: f64,
    /// The SLO's error rate, percent of requests.
    pub slo_error_pct: f64,
}

impl Default for CapacityCfg {
    fn default() -> Self {
        CapacityCfg {
            start_rate: 50.0,
            step_factor: 1.6,
            max_steps: 10,
            warm_max_steps: 24,
            since_switchover: vec!["1m".into(), "5m".into(), "15m".into()],
            step: "20s".into(),
            slo_p99_ms: 250.0,
            slo_error_pct: 1.0,
        }
    }
}

impl CapacityCfg {
    /// The step duration, after checking every setting.
    pub fn validate(&self) -> Result<Duration> {
        if self.start_rate.is_nan() || self.start_rate <= 0.0 {
            bail!("capacity.start_rate: must be positive");
        }
        if self.step_factor.is_nan() || self.step_factor <= 1.0 {
            bail!("capacity.step_factor: must be greater than 1");
        }
        if self.max_steps == 0 || self.warm_max_steps == 0 {
            bail!("capacity.max_steps and capacity.warm_max_steps: at least 1");
        }
        self.checkpoints()?;
        if self.slo_p99_ms.is_nan() || self.slo_p99_ms <= 0.0 || self.slo_error_pct.is_nan() || self.slo_error_pct < 0.0
        {
            bail!("capacity: slo_p99_ms must be positive and slo_error_pct >= 0");
        }
        let d = coldswap_client::parse_duration(&self.step).map_err(|e| anyhow::anyhow!("capacity.step: {e}"))?;
        if d.as_secs_f64() < 2.0 {
            bail!("capacity.step: a step must last at least 2 s");
        }
        Ok(d)
    }

    /// The checkpoints since the switchover, checked: whole seconds,
    /// increasing.
    pub fn checkpoints(&self) -> Result<Vec<Duration>> {
        let mut out: Vec<Duration> = Vec::new();
        for x in &self.since_switchover {
            let d =
                coldswap_client::parse_duration(x).map_err(|e| anyhow::anyhow!("capacity.since_switchover: {e}"))?;
            let d = Duration::from_secs(d.as_secs_f64().round() as u64);
            if d.is_zero() {
                bail!("capacity.since_switchover: '{x}': the first step after the switchover is always measured; list later times");
            }
            if out.last().is_some_and(|l| *l >= d) {
                bail!(
                    "capacity.since_switchover: times must increase ('{x}' after {} s)",
                    out.last().unwrap().as_secs()
                );
            }
            out.push(d);
        }
        Ok(out)
    }

    /// The rates tried, in order.
    pub fn rates(&self) -> Vec<f64> {
        (0..self.max_steps).map(|i| (self.start_rate * self.step_factor.powi(i as i32)).round()).collect()
    }
}

/// Durations of the phases, checked.
#[derive(Debug, Clone, Copy)]
pub struct Durations {
    /// How long to wait for the cold replica to catch up.
    pub wait_for_replica: Duration,
    /// The baseline phase.
    pub baseline: Duration,
    /// The cold phase.
    pub cold: Duration,
    /// The warm phase.
    pub warm: Duration,
    /// When the kill-switch fires, into the cold phase.
    pub kill_at: Option<Duration>,
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].bytes().filter(|b| *b == b'\n').count() + 1
}

/// Line of `key = ` inside `[table]` of a TOML text, for errors found after parsing.
pub fn key_line(text: &str, table: &str, key: &str) -> Option<usize> {
    let mut in_table = table.is_empty();
    for (i, l) in text.lines().enumerate() {
        let t = l.trim();
        if t.starts_with('[') {
            in_table = t.trim_matches(|c| c == '[' || c == ']').trim() == table;
            continue;
        }
        if in_table {
            if let Some((k, _)) = t.split_once('=') {
                if k.trim() == key {
                    return Some(i + 1);
                }
            }
        }
    }
    None
}

impl DrillConfig {
    /// The load's mix, with `load.api_nodes` applied.
    pub fn mix(&self) -> Result<coldswap_client::Mix> {
        let mut mix = coldswap_client::run::load_mix(&self.load.mix)?;
        if let Some(n) = self.load.api_nodes {
            mix.api_nodes = n;
        }
        Ok(mix)
    }

    /// Read a drill.toml; errors are `file:line: message`.
    pub fn load(path: &Path) -> Result<(DrillConfig, String)> {
        let text = std::fs::read_to_string(path).map_err(|e| anyhow!("{}: cannot read: {e}", path.display()))?;
        let cfg: DrillConfig = toml::from_str(&text).map_err(|e| {
            let line = e.span().map(|s| line_of(&text, s.start)).unwrap_or(0);
            anyhow!("{}:{line}: {}", path.display(), e.message().trim())
        })?;
        Ok((cfg, text))
    }

    /// Check everything that can be checked without a server. `source` is
    /// (path, text) of the file the settings came from, to name lines.
    pub fn validate(&self, source: Option<(&Path, &str)>) -> Result<Durations> {
        let at = |table: &str, key: &str| -> String {
            match source {
                Some((p, text)) => match key_line(text, table, key) {
                    Some(l) => format!("{}:{l}: ", p.display()),
                    None => String::new(),
                },
                None => String::new(),
            }
        };
        let dur = |table: &str, key: &str, v: &str| -> Result<Duration> {
            coldswap_client::parse_duration(v).map_err(|e| anyhow!("{}{table}.{key}: {e}", at(table, key)))
        };
        let baseline = dur("phases", "baseline", &self.phases.baseline)?;
        let cold = dur("phases", "cold", &self.phases.cold)?;
        let warm = dur("phases", "warm", &self.phases.warm)?;
        for (k, d) in [("baseline", baseline), ("cold", cold), ("warm", warm)] {
            if d.as_secs_f64() < 1.0 {
                bail!("{}phases.{k}: a phase must last at least 1 s", at("phases", k));
            }
        }
        coldswap_dataset::check_scale(self.data.scale)
            .map_err(|e| anyhow!("{}data.scale: {e}", at("data", "scale")))?;
        let external = self.cluster.backend == "external";
        if external != self.cluster.external.is_some() {
            if external {
                bail!(
                    "{}cluster.backend: \"external\" needs the servers' file: --external FILE or cluster.external",
                    at("cluster", "backend")
                );
            }
            bail!(
                "{}cluster.external: only with backend = \"external\" (--backend external)",
                at("cluster", "external")
            );
        }
        if !external {
            let choice: BackendChoice = self
                .cluster
                .backend
                .parse()
                .map_err(|e| anyhow!("{}cluster.backend: {e}", at("cluster", "backend")))?;
            for kind in BackendKind::ALL {
                // `auto` may pick any: every pair it may use must be valid.
                if choice.may_be(kind) {
                    let (from, to) = self.cluster.versions_for(kind);
                    let (kf, kt) = kind.pick(("from", "to"), ("from_image", "to_image"));
                    kind.check_spec(&from).map_err(|e| anyhow!("{}cluster.{kf}: {e}", at("cluster", kf)))?;
                    kind.check_spec(&to).map_err(|e| anyhow!("{}cluster.{kt}: {e}", at("cluster", kt)))?;
                    kind.check_pair(&from, &to).map_err(|e| anyhow!("{}cluster.{kt}: {e}", at("cluster", kt)))?;
                }
            }
        }
        if self.cluster.buffer_pool_mb < 8 {
            bail!("{}cluster.buffer_pool_mb: at least 8", at("cluster", "buffer_pool_mb"));
        }
        if let Some(p) = &self.storage.profile {
            if !PROFILES.iter().any(|x| x.name == p) {
                let names: Vec<&str> = PROFILES.iter().map(|x| x.name).collect();
                bail!("{}storage.profile: unknown profile '{p}' ({})", at("storage", "profile"), names.join(", "));
            }
            for k in ["latency", "concurrency", "hydrate_mib_s"] {
                if let Some((path, text)) = source {
                    if let Some(l) = key_line(text, "storage", k) {
                        bail!(
                            "{}:{l}: storage.{k}: set by profile '{p}'; name the profile or the knobs, not both",
                            path.display()
                        );
                    }
                }
            }
        }
        coldswap_nemesis::cold::parse_latency_spec(&self.storage.latency)
            .map_err(|e| anyhow!("{}storage.latency: {e}", at("storage", "latency")))?;
        self.warmth.validate().map_err(|e| {
            let key = ["project_size", "floor_ms", "hold_s", "within_pct", "slo_availability_pct"]
                .into_iter()
                .find(|k| e.to_string().contains(k))
                .unwrap_or("bound");
            anyhow!("{}{e}", at("warmth", key))
        })?;
        self.cold_config()?.validate().map_err(|e| anyhow!("{}storage: {e}", at("storage", "block_kib")))?;
        if !(50.0..100.0).contains(&self.matrix.confidence_pct) {
            bail!("{}matrix.confidence_pct: from 50 to under 100", at("matrix", "confidence_pct"));
        }
        if self.matrix.enabled && external {
            bail!("{}matrix.enabled: the from-version cold cell restarts the primary on an emulated restore, which the external backend never does", at("matrix", "enabled"));
        }
        if self.load.users == 0 {
            bail!("{}load.users: at least 1", at("load", "users"));
        }
        if let Some(n) = self.load.api_nodes {
            if !(1..=1000).contains(&n) {
                bail!("{}load.api_nodes: from 1 to 1000, not {n}", at("load", "api_nodes"));
            }
        }
        if self.load.rate.is_nan() || self.load.rate < 0.0 {
            bail!("{}load.rate: must not be negative", at("load", "rate"));
        }
        self.api.validate().map_err(|e| anyhow!("{}api: {e}", at("api", "pool_size")))?;
        self.warmup
            .technique
            .parse::<coldswap_nemesis::Technique>()
            .map_err(|e| anyhow!("{}warmup.technique: {e}", at("warmup", "technique")))?;
        if let Some(t) = &self.warmup.before_switchover {
            t.parse::<coldswap_nemesis::Technique>()
                .map_err(|e| anyhow!("{}warmup.before_switchover: {e}", at("warmup", "before_switchover")))?;
        }
        if !(1..=100).contains(&self.warmup.dump_pct) {
            bail!("{}warmup.dump_pct: from 1 to 100, not {}", at("warmup", "dump_pct"), self.warmup.dump_pct);
        }
        self.thresholds.validate().map_err(|e| anyhow!("{}thresholds: {e}", at("thresholds", "cold_p99_over_warm")))?;
        let kill_at = match &self.kill_switch {
            Some(k) => {
                let d = dur("kill_switch", "at", &k.at)?;
                if d >= cold {
                    bail!(
                        "{}kill_switch.at: {} is not inside the cold phase ({})",
                        at("kill_switch", "at"),
                        k.at,
                        self.phases.cold
                    );
                }
                Some(d)
            }
            None => None,
        };
        dur("switchover", "wait_for_replica", &self.switchover.wait_for_replica)?;
        if self.switchover.max_lag_s < 0.0 || self.switchover.catchup_timeout_s <= 0.0 {
            bail!("{}switchover: max_lag_s must be >= 0 and catchup_timeout_s > 0", at("switchover", "max_lag_s"));
        }
        let wait_for_replica = dur("switchover", "wait_for_replica", &self.switchover.wait_for_replica)?;
        Ok(Durations { wait_for_replica, baseline, cold, warm, kill_at })
    }

    /// The emulated volume's settings.
    pub fn cold_config(&self) -> Result<coldswap_nemesis::ColdConfig> {
        let (latency, concurrency, hydrate) = match self.storage.profile.as_deref() {
            Some(name) => {
                let p = PROFILES
                    .iter()
                    .find(|p| p.name == name)
                    .ok_or_else(|| anyhow!("storage.profile: unknown profile '{name}'"))?;
                (p.latency, p.concurrency, p.hydrate_mib_s)
            }
            None => (self.storage.latency.as_str(), self.storage.concurrency, self.storage.hydrate_mib_s),
        };
        let (lo, hi) = coldswap_nemesis::cold::parse_latency_spec(latency)?;
        Ok(coldswap_nemesis::ColdConfig {
            block_kib: self.storage.block_kib,
            latency_min_us: lo,
            latency_max_us: hi,
            concurrency,
            hydrate_mib_s: hydrate,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_set_the_knobs() {
        let c = DrillConfig {
            storage: StorageCfg { profile: Some("lazy-restore-hydrating".into()), ..Default::default() },
            ..Default::default()
        };
        let cc = c.cold_config().unwrap();
        assert_eq!((cc.latency_min_us, cc.latency_max_us, cc.concurrency, cc.hydrate_mib_s), (3000, 30000, 4, 300.0));
        let c = DrillConfig {
            storage: StorageCfg { profile: Some("fast-restore".into()), ..Default::default() },
            ..Default::default()
        };
        assert_eq!(c.cold_config().unwrap().latency_max_us, 0);
        // A flag's knob on top of a profile: the rest stays the profile's.
        let mut s = StorageCfg { profile: Some("lazy-restore-hydrating".into()), ..Default::default() };
        s.expand_profile().unwrap();
        s.latency = "1ms".into();
        assert_eq!((s.profile.as_deref(), s.concurrency, s.hydrate_mib_s), (None, 4, 300.0));
    }

    #[test]
    fn the_repo_default_parses_and_validates() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../drill.toml");
        let (cfg, text) = DrillConfig::load(&p).unwrap();
        cfg.validate(Some((&p, &text))).unwrap();
        assert_eq!(cfg.phases.cold, "120s");
    }

    fn check(text: &str) -> String {
        let p = Path::new("d.toml");
        match toml::from_str::<DrillConfig>(text) {
            Err(e) => format!(
                "{}:{}: {}",
                p.display(),
                e.span().map(|s| line_of(text, s.start)).unwrap_or(0),
                e.message().trim()
            ),
            Ok(c) => match c.validate(Some((p, text))) {
                Ok(_) => "ok".into(),
                Err(e) => e.to_string(),
            },
        }
    }

    #[test]
    fn bad_configs_name_file_and_line() {
        assert_eq!(check("[phases]\ncold = \"30s\"\n"), "ok");
        assert!(check("[phases]\ncold = \"-30s\"\n")
            .starts_with("d.toml:2: phases.cold: invalid duration '-30s': must not be negative"));
        assert!(check("[phases]\ncold = 30\n").starts_with("d.toml:2: "), "{}", check("[phases]\ncold = 30\n"));
        assert!(check("[cluster]\nfrom = \"mariadb-99\"\n")
            .starts_with("d.toml:2: cluster.from: unknown server version 'mariadb-99'"));
        assert!(check("[cluster]\nfrobnicate = 1\n").starts_with("d.toml:2: unknown field `frobnicate`"));
        assert!(check("[data]\nscale = 0\n").starts_with("d.toml:2: data.scale: invalid scale"));
        assert!(check("[warmup]\ntechnique = \"magic\"\n")
            .starts_with("d.toml:2: warmup.technique: unknown warm-up technique"));
        assert_eq!(check("[warmup]\nbefore_switchover = \"volume-read\"\ndump_pct = 25\n"), "ok");
        assert!(check("[warmup]\nbefore_switchover = \"hope\"\n")
            .starts_with("d.toml:2: warmup.before_switchover: unknown warm-up technique"));
        assert!(check("[warmup]\ndump_pct = 0\n").starts_with("d.toml:2: warmup.dump_pct: from 1 to 100"));
        assert!(check("[kill_switch]\ntarget = \"x\"\nat = \"500s\"\n")
            .starts_with("d.toml:3: kill_switch.at: 500s is not inside the cold phase"));
        assert!(check("[storage]\nlatency = \"fast\"\n").starts_with("d.toml:2: storage.latency: invalid latency"));
        assert!(check("[phases\ncold = \"1s\"\n").starts_with("d.toml:1: "));
        assert_eq!(check("[load]\napi_nodes = 12\n"), "ok");
        assert_eq!(check("[cluster]\nbackend = \"external\"\nexternal = \"ext.toml\"\n"), "ok");
        assert!(check("[cluster]\nbackend = \"external\"\n")
            .starts_with("d.toml:2: cluster.backend: \"external\" needs the servers' file"));
        assert!(check("[cluster]\nexternal = \"ext.toml\"\n").starts_with("d.toml:2: cluster.external: only with"));
        assert!(check("[cluster]\nbackend = \"external\"\nexternal = \"e.toml\"\n[matrix]\nenabled = true\n")
            .starts_with("d.toml:5: matrix.enabled: the from-version cold cell"));
        assert!(check("[matrix]\nconfidence_pct = 100\n").starts_with("d.toml:2: matrix.confidence_pct"));
        assert_eq!(check("[matrix]\nenabled = true\n"), "ok");
        assert_eq!(check("[storage]\nprofile = \"lazy-restore-hydrating\"\n"), "ok");
        assert!(check("[storage]\nprofile = \"ebs\"\n").starts_with("d.toml:2: storage.profile: unknown profile 'ebs'"));
        assert!(check("[storage]\nprofile = \"fast-restore\"\nlatency = \"1ms\"\n")
            .starts_with("d.toml:3: storage.latency: set by profile 'fast-restore'"));
        assert!(check("[warmth]\nbound = 0.5\n").starts_with("d.toml:2: warmth.bound must be a number >= 1"));
        assert!(check("[warmth]\nbound = 2.0\nproject_size = \"huge\"\n")
            .starts_with("d.toml:3: warmth.project_size: 'huge'"));
        assert!(
            check("[load]\napi_nodes = 0\n").starts_with("d.toml:2: load.api_nodes: from 1 to 1000, not 0"),
            "{}",
            check("[load]\napi_nodes = 0\n")
        );
    }
}
