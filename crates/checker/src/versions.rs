//! What the new version changes apart from being cold, on two servers that
//! hold the same data (a primary on the from-version and its caught-up
//! replica on the to-version), as pt-upgrade compares them:
//! * the plan of every mix statement (EXPLAIN on both: select type, table,
//!   access type, key, Extra; the rows estimate when it moves 10x);
//! * the results of every read statement for a sample of parameter draws
//!   (row count and a checksum of the rows, order ignored; errors);
//! * the server settings whose values differ (defaults a version changed,
//!   variables it added or removed), instance-specific ones left out.

use anyhow::Result;
use coldswap_client::gen::{Generators, Rng, Value};
use coldswap_client::Mix;
use coldswap_sql as sql;
use serde::{Deserialize, Serialize};
use sqlx::mysql::MySqlConnectOptions;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::lint::{self, ColdModel};

/// One statement compared on both versions.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StatementDiff {
    /// The transaction or background job.
    pub transaction: String,
    /// The statement, as the mix declares it.
    pub statement: String,
    /// How its plan changed (empty: the same plan).
    pub plan_changes: Vec<String>,
    /// Parameter draws whose results were compared (read statements only).
    pub samples: usize,
    /// Draws whose results differ, described (rows, checksum, error).
    pub result_differences: Vec<String>,
}

/// A server setting whose value differs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SettingDiff {
    /// The variable.
    pub name: String,
    /// On the from-version (None: it does not exist there).
    pub from: Option<String>,
    /// On the to-version (None: removed).
    pub to: Option<String>,
}

impl SettingDiff {
    /// `a -> b`, `(new) b`, `a (removed)`, or a switch list's changed items.
    pub fn change(&self) -> String {
        match (self.from.as_deref(), self.to.as_deref()) {
            (Some(a), Some(b)) => list_change(a, b).unwrap_or_else(|| format!("{a} -> {b}")),
            (None, Some(b)) => format!("(new) {b}"),
            (Some(a), None) => format!("{a} (removed)"),
            (None, None) => String::new(),
        }
    }
}

/// Everything compared.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VersionDiff {
    /// `SELECT VERSION()` of the from-side.
    pub from_version: String,
    /// ... and of the to-side.
    pub to_version: String,
    /// Every statement of the mix.
    pub statements: Vec<StatementDiff>,
    /// Settings that differ.
    pub settings: Vec<SettingDiff>,
    /// Statements whose plan changed.
    pub plan_changes: usize,
    /// Statements with a result difference.
    pub result_differences: usize,
    /// How the results were compared, or why they were not (in a drill:
    /// after the load, the old primary caught up with the new one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub results: Option<String>,
}

impl VersionDiff {
    /// Take the result comparison of `other` (the same mix on the same
    /// servers' versions), keeping this one's plans and settings.
    pub fn merge_results(&mut self, other: &VersionDiff, how: &str) {
        for (a, b) in self.statements.iter_mut().zip(&other.statements) {
            if a.statement == b.statement {
                a.samples = b.samples;
                a.result_differences = b.result_differences.clone();
            }
        }
        self.result_differences = self.statements.iter().filter(|s| !s.result_differences.is_empty()).count();
        let n: usize = self.statements.iter().map(|s| s.samples).sum();
        self.results = Some(format!("{n} parameter draws compared {how}"));
    }
}

/// Variables that differ per instance, not per version.
const INSTANCE: &[&str] = &[
    "server_id",
    "server_uuid",
    "server_uid",
    "wsrep_node_name",
    "wsrep_node_address",
    "wsrep_node_incoming_address",
    "wsrep_sst_receive_address",
    "port",
    "hostname",
    "report_host",
    "report_port",
    "gtid_executed",
    "gtid_purged",
    "gtid_binlog_pos",
    "gtid_binlog_state",
    "gtid_current_pos",
    "gtid_slave_pos",
    "gtid_domain_id",
    "read_only",
    "super_read_only",
    "timestamp",
    "pseudo_thread_id",
    "rand_seed1",
    "rand_seed2",
    "warning_count",
    "error_count",
    "last_insert_id",
    "identity",
    "insert_id",
    "server_id_bits",
    "innodb_buffer_pool_load_now",
    "innodb_buffer_pool_dump_now",
];

fn instance_specific(name: &str, a: &str, b: &str) -> bool {
    let n = name.to_ascii_lowercase();
    INSTANCE.contains(&n.as_str())
        || n.starts_with("version")
        || n.contains("ssl")
        // paths: data, sockets, logs, the install dir
        || a.starts_with('/')
        || b.starts_with('/')
        || n.ends_with("_file")
        || n.ends_with("_dir")
        || n.ends_with("_basename")
        || n.ends_with("_index")
        || n.ends_with("_path")
}

/// Compare two variable maps.
pub fn setting_diffs(from: &BTreeMap<String, String>, to: &BTreeMap<String, String>) -> Vec<SettingDiff> {
    let names: BTreeSet<&String> = from.keys().chain(to.keys()).collect();
    let mut out = Vec::new();
    for n in names {
        let (a, b) = (from.get(n), to.get(n));
        if a == b || instance_specific(n, a.map(String::as_str).unwrap_or(""), b.map(String::as_str).unwrap_or("")) {
            continue;
        }
        out.push(SettingDiff { name: n.clone(), from: a.cloned(), to: b.cloned() });
    }
    out
}

/// The plan columns that make a plan different (rows only on a 10x move).
pub fn plan_changes(from: &[BTreeMap<String, String>], to: &[BTreeMap<String, String>]) -> Vec<String> {
    let get = |r: &BTreeMap<String, String>, k: &str| -> String {
        r.iter().find(|(x, _)| x.eq_ignore_ascii_case(k)).map(|(_, v)| v.clone()).unwrap_or_default()
    };
    let mut out = Vec::new();
    if from.len() != to.len() {
        out.push(format!("{} plan rows on the from-version, {} on the to-version", from.len(), to.len()));
    }
    for (i, (a, b)) in from.iter().zip(to).enumerate() {
        let table = get(a, "table");
        for k in ["select_type", "table", "type", "key", "Extra"] {
            let (x, y) = (get(a, k), get(b, k));
            if x != y {
                out.push(format!(
                    "row {} ({table}): {k} {} -> {}",
                    i + 1,
                    if x.is_empty() { "NULL" } else { &x },
                    if y.is_empty() { "NULL" } else { &y }
                ));
            }
        }
        let (x, y) = (get(a, "rows").parse::<f64>().unwrap_or(0.0), get(b, "rows").parse::<f64>().unwrap_or(0.0));
        if x.max(y) >= 10.0 && x.max(y) >= 10.0 * x.min(y).max(1.0) {
            out.push(format!("row {} ({table}): rows estimate {x} -> {y}", i + 1));
        }
    }
    out
}

async fn variables(opts: &MySqlConnectOptions) -> Result<BTreeMap<String, String>> {
    let mut c = sql::connect(opts, Duration::from_secs(10)).await?;
    let rows = sql::fetch_all(&mut c, "SHOW GLOBAL VARIABLES").await?;
    sql::close(c).await;
    Ok(rows
        .iter()
        .filter_map(|r| Some((sql::col_text_at(r, 0)?, sql::col_text_at(r, 1).unwrap_or_default())))
        .collect())
}

/// A result set as (rows, order-independent checksum, warnings), or the error.
async fn result_of(c: &mut sqlx::MySqlConnection, s: &coldswap_client::mix::Stmt, vals: &[Option<Value>]) -> String {
    let mut q = sqlx::query(&s.sql);
    for &p in &s.params {
        q = match vals.get(p).cloned().flatten() {
            Some(Value::Int(v)) => q.bind(v),
            Some(Value::Str(v)) => q.bind(v),
            None => q.bind(None::<i64>),
        };
    }
    match q.fetch_all(&mut *c).await {
        Ok(rows) => {
            let mut hashes: Vec<u64> = rows
                .iter()
                .map(|r| {
                    let n = sqlx::Row::len(r);
                    let cells: Vec<String> =
                        (0..n).map(|i| sql::col_text_at(r, i).unwrap_or_else(|| "\u{0}NULL".into())).collect();
                    fnv(cells.join("\u{1f}").as_bytes())
                })
                .collect();
            hashes.sort_unstable();
            let all: Vec<u8> = hashes.iter().flat_map(|h| h.to_le_bytes()).collect();
            // The statement's warnings (level and code), which a new
            // version may add for the same rows.
            let mut warnings: Vec<String> = sql::fetch_all(c, "SHOW WARNINGS")
                .await
                .map(|w| {
                    w.iter()
                        .map(|r| {
                            format!(
                                "{} {}",
                                sql::col_text_at(r, 0).unwrap_or_default(),
                                sql::col_text_at(r, 1).unwrap_or_default()
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            warnings.sort();
            warnings.dedup();
            let warned =
                if warnings.is_empty() { String::new() } else { format!(", warnings {}", warnings.join(", ")) };
            format!("{} rows, checksum {:016x}{warned}", rows.len(), fnv(&all))
        }
        Err(e) => format!("error: {}", sql::describe(&e)),
    }
}

fn fnv(b: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for x in b {
        h ^= *x as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// Compare the two servers. Both must hold the same data (the replica
/// caught up, nothing writing the mix's tables) for results to be comparable.
pub async fn compare(
    from: &MySqlConnectOptions,
    to: &MySqlConnectOptions,
    mix: &Mix,
    gens: &Generators,
    samples: usize,
) -> Result<VersionDiff> {
    let model = ColdModel { mean_latency_ms: 1.0, block_bytes: 16384, concurrency: 1 };
    let mut fc = sql::connect(from, Duration::from_secs(10)).await?;
    let mut tc = sql::connect(to, Duration::from_secs(10)).await?;
    let from_version = sql::query_text(&mut fc, "SELECT VERSION()").await?.unwrap_or_default();
    let to_version = sql::query_text(&mut tc, "SELECT VERSION()").await?.unwrap_or_default();
    for c in [&mut fc, &mut tc] {
        sql::exec(c, &format!("USE `{}`", mix.database)).await?;
    }
    // Same seed on both sides: the same parameters.
    let lf = lint::lint(&mut fc, mix, gens, model, None).await?;
    let lt = lint::lint(&mut tc, mix, gens, model, None).await?;
    let mut statements = Vec::new();
    let all =
        mix.transactions.iter().map(|t| (&t.name, &t.steps)).chain(mix.background.iter().map(|b| (&b.name, &b.steps)));
    let mut k = 0;
    let mut rng = Rng::new(11);
    for (name, steps) in all {
        for s in steps {
            let (a, b) = (&lf[k], &lt[k]);
            k += 1;
            let mut changes = plan_changes(&a.explain, &b.explain);
            match (&a.error, &b.error) {
                (None, Some(e)) => changes.push(format!("EXPLAIN fails on the to-version: {e}")),
                (Some(e), None) => changes.push(format!("EXPLAIN failed on the from-version only: {e}")),
                _ => {}
            }
            let mut diffs = Vec::new();
            let mut n = 0;
            if s.is_select() {
                for _ in 0..samples {
                    let vals = gens.draw(&mut rng, &s.params);
                    let (x, y) = (result_of(&mut fc, s, &vals).await, result_of(&mut tc, s, &vals).await);
                    n += 1;
                    if x != y {
                        let shown: Vec<String> = s
                            .params
                            .iter()
                            .map(|p| match vals.get(*p).cloned().flatten() {
                                Some(Value::Int(v)) => v.to_string(),
                                Some(Value::Str(v)) => format!("'{v}'"),
                                None => "NULL".into(),
                            })
                            .collect();
                        diffs.push(format!(
                            "with ({}): {x} on the from-version, {y} on the to-version",
                            shown.join(", ")
                        ));
                    }
                }
            }
            statements.push(StatementDiff {
                transaction: name.clone(),
                statement: a.statement.clone(),
                plan_changes: changes,
                samples: n,
                result_differences: diffs,
            });
        }
    }
    sql::close(fc).await;
    sql::close(tc).await;
    let settings = setting_diffs(&variables(from).await?, &variables(to).await?);
    Ok(VersionDiff {
        from_version,
        to_version,
        plan_changes: statements.iter().filter(|s| !s.plan_changes.is_empty()).count(),
        result_differences: statements.iter().filter(|s| !s.result_differences.is_empty()).count(),
        statements,
        settings,
        results: None,
    })
}

/// The comparison as text, for the terminal and the Markdown report.
pub fn render(d: &VersionDiff) -> String {
    let mut o = format!(
        "{} -> {}: {} statement(s) with a plan change, {} with a result difference, {} setting(s) differ\n",
        d.from_version,
        d.to_version,
        d.plan_changes,
        d.result_differences,
        d.settings.len()
    );
    for s in &d.statements {
        if s.plan_changes.is_empty() && s.result_differences.is_empty() {
            continue;
        }
        o.push_str(&format!("\n{}: {}\n", s.transaction, s.statement));
        for c in &s.plan_changes {
            o.push_str(&format!("  plan: {c}\n"));
        }
        for r in &s.result_differences {
            o.push_str(&format!("  RESULT: {r}\n"));
        }
    }
    if !d.settings.is_empty() {
        o.push_str("\nsettings that differ (from -> to):\n");
        for s in &d.settings {
            o.push_str(&format!("  {:<44} {}\n", s.name, s.change()));
        }
    }
    o
}

/// A change of a `k=v,k=v` list (optimizer_switch and its kind) as the
/// items that changed, came or went; None for other values.
pub fn list_change(a: &str, b: &str) -> Option<String> {
    let parse = |s: &str| -> Option<BTreeMap<String, String>> {
        if !s.contains('=') || !s.contains(',') {
            return None;
        }
        s.split(',').map(|kv| kv.split_once('=').map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))).collect()
    };
    let (x, y) = (parse(a)?, parse(b)?);
    let mut out = Vec::new();
    for (k, v) in &x {
        match y.get(k) {
            Some(w) if w != v => out.push(format!("{k}={v}->{w}")),
            None => out.push(format!("-{k}")),
            _ => {}
        }
    }
    for (k, w) in &y {
        if !x.contains_key(k) {
            out.push(format!("+{k}={w}"));
        }
    }
    Some(out.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(v: &[(&str, &str)]) -> BTreeMap<String, String> {
        v.iter().map(|(k, x)| (k.to_string(), x.to_string())).collect()
    }

    #[test]
    fn plans_differ_by_access_key_extra_and_large_row_moves() {
        let a = vec![row(&[("table", "jobs"), ("type", "ref"), ("key", "idx_account"), ("rows", "12"), ("Extra", "")])];
        let same_but_rows =
            vec![row(&[("table", "jobs"), ("type", "ref"), ("key", "idx_account"), ("rows", "30"), ("Extra", "")])];
        assert!(plan_changes(&a, &same_but_rows).is_empty());
        let scan =
            vec![row(&[("table", "jobs"), ("type", "ALL"), ("key", ""), ("rows", "50000"), ("Extra", "Using where")])];
        let c = plan_changes(&a, &scan);
        assert!(c.iter().any(|x| x.contains("type ref -> ALL")), "{c:?}");
        assert!(c.iter().any(|x| x.contains("key idx_account -> NULL")), "{c:?}");
        assert!(c.iter().any(|x| x.contains("rows estimate 12 -> 50000")), "{c:?}");
        assert!(plan_changes(&a, &[]).iter().any(|x| x.contains("1 plan rows on the from-version, 0")));
    }

    #[test]
    fn settings_differ_but_not_per_instance() {
        let m = |v: &[(&str, &str)]| -> BTreeMap<String, String> {
            v.iter().map(|(k, x)| (k.to_string(), x.to_string())).collect()
        };
        let a = m(&[
            ("server_id", "1"),
            ("datadir", "/a/"),
            ("version", "10.11.18"),
            ("optimizer_switch", "x=on"),
            ("old_var", "1"),
        ]);
        let b = m(&[
            ("server_id", "2"),
            ("datadir", "/b/"),
            ("version", "11.8.1"),
            ("optimizer_switch", "x=off"),
            ("new_var", "ON"),
        ]);
        let d = setting_diffs(&a, &b);
        let names: Vec<&str> = d.iter().map(|x| x.name.as_str()).collect();
        assert_eq!(names, vec!["new_var", "old_var", "optimizer_switch"]);
        assert_eq!(d[0].from, None);
        assert_eq!(d[1].to, None);
    }

    #[test]
    fn switch_lists_show_only_what_changed() {
        let c = list_change("a=on,b=off,c=on", "a=on,b=on,d=off").unwrap();
        assert_eq!(c, "b=off->on, -c, +d=off");
        assert_eq!(list_change("latin1", "utf8mb4"), None);
    }

    #[test]
    fn row_checksums_ignore_order() {
        let h = |rows: &[&str]| {
            let mut v: Vec<u64> = rows.iter().map(|r| fnv(r.as_bytes())).collect();
            v.sort_unstable();
            fnv(&v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>())
        };
        assert_eq!(h(&["a", "b"]), h(&["b", "a"]));
        assert_ne!(h(&["a", "b"]), h(&["a", "c"]));
    }
}
