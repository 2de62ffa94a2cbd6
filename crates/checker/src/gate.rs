//! `coldswap gate`: is this replica ready to take the primary's traffic
//! now? GO or NO-GO, with the reasons, from three checks:
//!
//! * replication runs and the replica's lag is within the limit;
//! * no statement the load will send scans a table fully (lint's EXPLAIN of
//!   a mix, or the primary's own digest table: statements that used no
//!   index and examined many rows per execution, frequently);
//! * hot-set coverage: of the pages the primary's buffer pool holds for the
//!   tables concerned, the share the replica's holds too.
//!
//! Coverage is counted per index (the pages of each index cached on each
//! node; the smaller count is what the replica covers), not page by page:
//! a replica built by replication lays its pages out on its own, so page
//! numbers do not match between the nodes. It reads InnoDB's buffer page
//! table, which walks the whole buffer pool; it runs only on pools up to a
//! bound (`max_pool_mib`), and a larger one is "not checked", never a GO.
//!
//! A check that could not run fails the gate as "not checked".

use anyhow::Result;
use coldswap_sql as sql;
use serde::{Deserialize, Serialize};
use sqlx::MySqlConnection;
use std::collections::BTreeMap;

use crate::report::Lint;

/// The gate's limits.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GateCfg {
    /// Replication lag allowed, seconds.
    pub max_lag_s: f64,
    /// Hot-set coverage needed, percent.
    pub min_hot_coverage_pct: f64,
    /// Largest buffer pool whose pages are read for coverage, MiB.
    pub max_pool_mib: u64,
    /// A digest-table statement counts as a full scan from this many rows
    /// examined per execution (with no index used).
    pub scan_min_rows: u64,
    /// ... and ran at least this many times (a frequent statement, not a
    /// one-off load or report).
    pub scan_min_runs: u64,
}

impl Default for GateCfg {
    fn default() -> Self {
        GateCfg {
            max_lag_s: 5.0,
            min_hot_coverage_pct: 80.0,
            max_pool_mib: 16384,
            scan_min_rows: 1000,
            scan_min_runs: 10,
        }
    }
}

/// One check.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Check {
    /// `replication`, `full_scans`, `hot_set_coverage`.
    pub name: String,
    /// Whether it could run.
    pub checked: bool,
    /// Whether it passed (false when not checked).
    pub passed: bool,
    /// Its figure (lag s, statements, coverage %), when it has one.
    pub value: Option<f64>,
    /// What it found, in words.
    pub detail: String,
}

impl Check {
    fn new(name: &str, checked: bool, passed: bool, value: Option<f64>, detail: String) -> Check {
        Check { name: name.into(), checked, passed: checked && passed, value, detail }
    }

    /// A check that could not run: a failure of its own.
    pub fn not_checked(name: &str, why: impl std::fmt::Display) -> Check {
        Check::new(name, false, false, None, format!("not checked: {why}"))
    }
}

/// One index's cached pages on each node.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct IndexCoverage {
    /// `` `db`.`table` ``.
    pub table: String,
    /// The index.
    pub index: String,
    /// Pages the primary holds.
    pub primary_pages: u64,
    /// Pages the replica holds.
    pub replica_pages: u64,
}

/// The gate's answer (`gate.json`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Gate {
    /// GO: every check ran and passed.
    pub go: bool,
    /// `GO: ...` or `NO-GO: reason; reason`.
    pub verdict: String,
    /// The limits used.
    pub cfg: Option<GateCfg>,
    /// Every check.
    pub checks: Vec<Check>,
    /// When it was taken, in a drill (empty for `coldswap gate`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub when: String,
    /// Per index, the pages behind the coverage figure.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub coverage: Vec<IndexCoverage>,
}

/// Exit code of a NO-GO (0 is GO; 1 an error).
pub const NO_GO_EXIT: u8 = 5;

/// The replication check from a replica's status (None: not a replica).
pub fn replication_check(status: Option<&coldswap_db::replication::ReplicaStatus>, cfg: &GateCfg) -> Check {
    match status {
        None => {
            Check::new("replication", true, false, None, "the replica is not replicating (no replica status)".into())
        }
        Some(s) if !s.healthy() => {
            Check::new("replication", true, false, None, format!("replication stopped: {}", s.problem()))
        }
        Some(s) => match s.seconds_behind {
            None => Check::not_checked("replication", "the replica reports no lag"),
            Some(l) => Check::new(
                "replication",
                true,
                l as f64 <= cfg.max_lag_s,
                Some(l as f64),
                format!("replicating, {l} s behind (limit {} s)", cfg.max_lag_s),
            ),
        },
    }
}

/// The full-scan check from lint's findings on a mix.
pub fn scans_from_lint(lint: &[Lint]) -> Check {
    let scans: Vec<String> = lint
        .iter()
        .filter(|l| l.full_scan && l.runs && l.error.is_none())
        .map(|l| format!("{} (scans {})", l.transaction, l.scanned_tables.join(", ")))
        .collect();
    let broken: Vec<&Lint> = lint.iter().filter(|l| l.error.is_some() && l.runs).collect();
    if !broken.is_empty() && scans.is_empty() {
        return Check::not_checked(
            "full_scans",
            format!(
                "EXPLAIN failed for {}",
                broken.iter().map(|l| l.transaction.as_str()).collect::<Vec<_>>().join(", ")
            ),
        );
    }
    let n = lint.iter().filter(|l| l.runs).count();
    let detail = if scans.is_empty() {
        format!("none of the mix's {n} statements that run scans a table fully")
    } else {
        format!("full scans in the mix: {}", scans.join("; "))
    };
    Check::new("full_scans", true, scans.is_empty(), Some(scans.len() as f64), detail)
}

/// The full-scan check from the primary's digest table: statements that
/// ran with no index and examined at least `scan_min_rows` rows each time.
pub async fn scans_from_digests(conn: &mut MySqlConnection, cfg: &GateCfg) -> Check {
    let q = format!(
        "SELECT DIGEST_TEXT, COUNT_STAR, SUM_ROWS_EXAMINED FROM performance_schema.events_statements_summary_by_digest \
         WHERE SUM_NO_INDEX_USED > 0 AND DIGEST_TEXT IS NOT NULL AND SUM_ROWS_EXAMINED >= {} * COUNT_STAR \
         AND COUNT_STAR >= {} \
         AND SCHEMA_NAME NOT IN ('mysql', 'sys', 'performance_schema', 'information_schema') \
         ORDER BY SUM_ROWS_EXAMINED DESC LIMIT 10",
        cfg.scan_min_rows, cfg.scan_min_runs
    );
    let rows = match sql::fetch_all(conn, &q).await {
        Ok(r) => r,
        Err(e) => return Check::not_checked("full_scans", format!("cannot read the primary's digest table: {e:#}")),
    };
    let found: Vec<String> = rows
        .iter()
        .map(|r| {
            let text: String = sql::col_text_at(r, 0).unwrap_or_default().chars().take(100).collect();
            format!(
                "{text} ({} runs, {} rows examined)",
                sql::col_text_at(r, 1).unwrap_or_default(),
                sql::col_text_at(r, 2).unwrap_or_default()
            )
        })
        .collect();
    let detail = if found.is_empty() {
        format!(
            "no statement the primary ran {} times or more used no index over {} rows or more per run",
            cfg.scan_min_runs, cfg.scan_min_rows
        )
    } else {
        format!("full scans the primary ran: {}", found.join("; "))
    };
    Check::new("full_scans", true, found.is_empty(), Some(found.len() as f64), detail)
}

const SYSTEM: &[&str] = &["`mysql`", "`sys`", "`performance_schema`", "`information_schema`"];

/// Pages cached per (table, index) on a server, for user tables (or only
/// `tables`, as `db.table`, when given). Refuses pools above the bound.
pub async fn cached_pages(
    conn: &mut MySqlConnection,
    tables: Option<&[(String, String)]>,
    max_pool_mib: u64,
) -> Result<BTreeMap<(String, String), u64>> {
    let pool: u64 = sql::query_text(conn, "SELECT @@innodb_buffer_pool_size")
        .await?
        .and_then(|v| v.parse().ok())
        .unwrap_or(u64::MAX);
    if pool / 1048576 > max_pool_mib {
        anyhow::bail!(
            "its buffer pool is {} MiB, above the {max_pool_mib} MiB this check reads (--max-pool-mib)",
            pool / 1048576
        );
    }
    let wanted: Option<Vec<String>> = tables.map(|t| t.iter().map(|(d, n)| format!("`{d}`.`{n}`")).collect());
    let keep = |t: &str| match &wanted {
        Some(w) => w.iter().any(|x| x == t),
        None => t.contains("`.`") && !SYSTEM.iter().any(|s| t.starts_with(s)),
    };
    let (out, unnamed) = walk_pool(conn, &keep).await?;
    // One walk of the pool when every page has its name; a second only
    // after opening the tables of pages that had none.
    if !unnamed.is_empty() && open_spaces(conn, &unnamed).await? > 0 {
        return Ok(walk_pool(conn, &keep).await?.0);
    }
    Ok(out)
}

/// One walk of the buffer pool: pages per (table, index) for the tables
/// `keep` accepts, and the tablespaces of index pages InnoDB could not name.
async fn walk_pool(
    conn: &mut MySqlConnection,
    keep: &(dyn Fn(&str) -> bool + Sync),
) -> Result<(BTreeMap<(String, String), u64>, Vec<u64>)> {
    let rows = sql::fetch_all(
        conn,
        "SELECT TABLE_NAME, INDEX_NAME, SPACE, PAGE_TYPE = 'INDEX', COUNT(*) FROM information_schema.INNODB_BUFFER_PAGE \
         GROUP BY TABLE_NAME, INDEX_NAME, SPACE, PAGE_TYPE = 'INDEX'",
    )
    .await?;
    let mut out = BTreeMap::new();
    let mut unnamed = Vec::new();
    for r in rows {
        let n: u64 = sql::col_text_at(&r, 4).and_then(|n| n.parse().ok()).unwrap_or(0);
        match (sql::col_text_at(&r, 0), sql::col_text_at(&r, 1)) {
            (Some(t), Some(i)) if keep(&t) => *out.entry((t, i)).or_insert(0) += n,
            (None, _) => {
                let space: u64 = sql::col_text_at(&r, 2).and_then(|x| x.parse().ok()).unwrap_or(0);
                if space != 0 && sql::col_text_at(&r, 3).as_deref() == Some("1") {
                    unnamed.push(space);
                }
            }
            _ => {}
        }
    }
    Ok((out, unnamed))
}

/// InnoDB names a cached page's table and index only while its dictionary
/// cache holds the table: on a server just restarted, pages loaded into
/// the pool (by a buffer-pool load, say) for a table nothing has opened
/// yet read as unnamed, and would count as not cached (seen in CI: a
/// replica loaded from the primary's dump covered "0 %" until its purge
/// thread happened to open the tables). Open the tables of `spaces`, found by
/// tablespace in the dictionary on disk; an open reads the table's
/// definition, no row. Returns how many were opened.
async fn open_spaces(conn: &mut MySqlConnection, spaces: &[u64]) -> Result<usize> {
    let dict = sql::innodb_tablespaces(conn).await?;
    let mut tables: Vec<(String, String)> =
        spaces.iter().filter_map(|id| dict.get(id).and_then(|n| dictionary_table(n))).collect();
    tables.sort();
    tables.dedup();
    for (db, t) in &tables {
        // A table dropped meanwhile, or one this account cannot read,
        // stays unnamed: its pages are not counted, as before.
        let _ =
            sql::exec(conn, &format!("SELECT 1 FROM `{}`.`{}` LIMIT 0", db.replace('`', "``"), t.replace('`', "``")))
                .await;
    }
    Ok(tables.len())
}

/// `db/table` as InnoDB's dictionary spells a table (partitions as
/// `table#P#p0`, other characters as `@XXXX` code points) -> (db, table);
/// None for internal and temporary tables.
fn dictionary_table(name: &str) -> Option<(String, String)> {
    let (db, t) = name.split_once('/')?;
    let t = match t.find("#P#").or_else(|| t.find("#p#")) {
        Some(i) => &t[..i],
        None => t,
    };
    if t.starts_with("#sql") || t.is_empty() || db.is_empty() {
        return None;
    }
    Some((decode_filename(db)?, decode_filename(t)?))
}

/// The server's file-name encoding: `@XXXX` is the code point XXXX (hex).
fn decode_filename(s: &str) -> Option<String> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('@') {
        out.push_str(&rest[..i]);
        let hex = rest.get(i + 1..i + 5)?;
        out.push(char::from_u32(u32::from_str_radix(hex, 16).ok()?)?);
        rest = &rest[i + 5..];
    }
    out.push_str(rest);
    Some(out)
}

/// Coverage from each node's cached pages: (check, per-index rows).
pub fn coverage_check(
    primary: &BTreeMap<(String, String), u64>,
    replica: &BTreeMap<(String, String), u64>,
    cfg: &GateCfg,
) -> (Check, Vec<IndexCoverage>) {
    let rows: Vec<IndexCoverage> = primary
        .iter()
        .map(|((t, i), p)| IndexCoverage {
            table: t.clone(),
            index: i.clone(),
            primary_pages: *p,
            replica_pages: replica.get(&(t.clone(), i.clone())).copied().unwrap_or(0),
        })
        .collect();
    let hot: u64 = rows.iter().map(|r| r.primary_pages).sum();
    if hot == 0 {
        return (
            Check::not_checked(
                "hot_set_coverage",
                "the primary's buffer pool holds no page of these tables (no hot set to compare)",
            ),
            rows,
        );
    }
    let covered: u64 = rows.iter().map(|r| r.primary_pages.min(r.replica_pages)).sum();
    let pct = covered as f64 / hot as f64 * 100.0;
    let check = Check::new(
        "hot_set_coverage",
        true,
        pct >= cfg.min_hot_coverage_pct,
        Some(pct),
        format!(
            "the replica's buffer pool covers {pct:.1}% of the primary's hot set ({covered} of {hot} pages over {} indexes; needed {}%)",
            rows.len(),
            cfg.min_hot_coverage_pct
        ),
    );
    (check, rows)
}

/// The gate on a cluster: replication of replica `r`, the full-scan check
/// the caller made (from lint or the digest table), and hot-set coverage
/// of `tables` (every user table when None) between primary `p` and `r`.
pub async fn on_cluster(
    cluster: &coldswap_db::Cluster,
    p: usize,
    r: usize,
    scans: Check,
    tables: Option<&[(String, String)]>,
    cfg: &GateCfg,
) -> Gate {
    on_servers(&cluster.admin_options(p), &cluster.admin_options(r), scans, tables, cfg).await
}

/// The gate on any primary and replica coldswap can log in to (a
/// cluster's nodes, or the servers an external config names).
pub async fn on_servers(
    primary: &sqlx::mysql::MySqlConnectOptions,
    replica: &sqlx::mysql::MySqlConnectOptions,
    scans: Check,
    tables: Option<&[(String, String)]>,
    cfg: &GateCfg,
) -> Gate {
    let connect = |o: &sqlx::mysql::MySqlConnectOptions| {
        let o = o.clone();
        async move { sql::connect(&o, std::time::Duration::from_secs(10)).await }
    };
    let replication = match connect(replica).await {
        Ok(mut c) => {
            let st = match sql::query_text(&mut c, "SELECT VERSION()").await {
                Ok(v) => match v.as_deref().and_then(sql::parse_server_version) {
                    Some((f, ver)) => {
                        coldswap_db::replication::replica_status(&mut c, &coldswap_db::dialect::Dialect::new(f, ver))
                            .await
                    }
                    None => Err(anyhow::anyhow!("cannot read the replica's server version {v:?}")),
                },
                Err(e) => Err(e),
            };
            sql::close(c).await;
            match st {
                Ok(s) => replication_check(s.as_ref(), cfg),
                Err(e) => Check::not_checked("replication", format!("{e:#}")),
            }
        }
        Err(e) => Check::not_checked("replication", format!("cannot reach the replica: {e:#}")),
    };
    let pages = |o: &sqlx::mysql::MySqlConnectOptions| {
        let c = connect(o);
        async move {
            let mut c = c.await?;
            let r = cached_pages(&mut c, tables, cfg.max_pool_mib).await;
            sql::close(c).await;
            r
        }
    };
    let (coverage, rows) = match (pages(primary).await, pages(replica).await) {
        (Ok(pp), Ok(rp)) => coverage_check(&pp, &rp, cfg),
        (Err(e), _) => (Check::not_checked("hot_set_coverage", format!("on the primary: {e:#}")), vec![]),
        (_, Err(e)) => (Check::not_checked("hot_set_coverage", format!("on the replica: {e:#}")), vec![]),
    };
    conclude(vec![replication, scans, coverage], rows, cfg)
}

/// GO when every check ran and passed.
pub fn conclude(checks: Vec<Check>, coverage: Vec<IndexCoverage>, cfg: &GateCfg) -> Gate {
    let failed: Vec<String> =
        checks.iter().filter(|c| !c.passed).map(|c| format!("{}: {}", c.name, c.detail)).collect();
    let go = !checks.is_empty() && failed.is_empty();
    let verdict = if go {
        format!("GO: {}", checks.iter().map(|c| c.detail.clone()).collect::<Vec<_>>().join("; "))
    } else if checks.is_empty() {
        "NO-GO: no check ran".into()
    } else {
        format!("NO-GO: {}", failed.join("; "))
    };
    Gate { go, verdict, cfg: Some(cfg.clone()), checks, when: String::new(), coverage }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dictionary_names_become_tables() {
        assert_eq!(dictionary_table("api/jobs"), Some(("api".into(), "jobs".into())));
        assert_eq!(dictionary_table("api/events#P#p2024"), Some(("api".into(), "events".into())));
        assert_eq!(dictionary_table("my@002ddb/t@00e9"), Some(("my-db".into(), "t\u{e9}".into())));
        assert_eq!(dictionary_table("api/#sql-1a2b_3"), None);
        assert_eq!(dictionary_table("innodb_system"), None);
        assert_eq!(decode_filename("bad@00"), None);
    }
    use coldswap_db::replication::ReplicaStatus;

    fn pages(v: &[(&str, &str, u64)]) -> BTreeMap<(String, String), u64> {
        v.iter().map(|(t, i, n)| ((t.to_string(), i.to_string()), *n)).collect()
    }

    #[test]
    fn coverage_counts_the_smaller_side_per_index() {
        let p = pages(&[("`api`.`jobs`", "PRIMARY", 100), ("`api`.`jobs`", "k", 50), ("`api`.`keys`", "PRIMARY", 50)]);
        let r = pages(&[("`api`.`jobs`", "PRIMARY", 400), ("`api`.`keys`", "PRIMARY", 10)]);
        let cfg = GateCfg::default();
        let (c, rows) = coverage_check(&p, &r, &cfg);
        // jobs.PRIMARY: 100 (capped), jobs.k: 0, keys: 10 -> 110 of 200
        assert!((c.value.unwrap() - 55.0).abs() < 1e-9, "{c:?}");
        assert!(!c.passed && c.checked);
        assert_eq!(rows.len(), 3);
        let (c, _) = coverage_check(&p, &p, &cfg);
        assert!(c.passed && c.value == Some(100.0), "{c:?}");
        let (c, _) = coverage_check(&BTreeMap::new(), &p, &cfg);
        assert!(!c.checked && !c.passed && c.detail.starts_with("not checked"), "{c:?}");
    }

    #[test]
    fn a_check_that_could_not_run_is_a_no_go() {
        let cfg = GateCfg::default();
        let ok = ReplicaStatus {
            io_running: "Yes".into(),
            sql_running: "Yes".into(),
            seconds_behind: Some(0),
            ..Default::default()
        };
        let lagging = ReplicaStatus { seconds_behind: Some(60), ..ok.clone() };
        let stopped = ReplicaStatus { sql_running: "No".into(), last_sql_error: "dup key".into(), ..ok.clone() };
        assert!(replication_check(Some(&ok), &cfg).passed);
        assert!(!replication_check(Some(&lagging), &cfg).passed);
        assert!(replication_check(Some(&stopped), &cfg).detail.contains("dup key"));
        assert!(!replication_check(None, &cfg).passed);
        let go = conclude(vec![replication_check(Some(&ok), &cfg)], vec![], &cfg);
        assert!(go.go && go.verdict.starts_with("GO: replicating, 0 s behind"), "{}", go.verdict);
        let no = conclude(
            vec![replication_check(Some(&ok), &cfg), Check::not_checked("hot_set_coverage", "pool too big")],
            vec![],
            &cfg,
        );
        assert!(!no.go && no.verdict == "NO-GO: hot_set_coverage: not checked: pool too big", "{}", no.verdict);
        assert!(!conclude(vec![], vec![], &cfg).go);
    }
}
