//! Lint before load: EXPLAIN every statement of the mix (with parameters
//! drawn as the load would) and flag full scans, with what one execution
//! would cost on a fully cold volume.

use anyhow::Result;
use coldswap_client::gen::{Generators, Rng, Value};
use coldswap_client::Mix;
use coldswap_sql as sql;
use sqlparser::ast::{TableFactor, Visit, Visitor};
use sqlx::{Column, MySqlConnection, Row};
use std::collections::{BTreeMap, HashMap};
use std::ops::ControlFlow;

use crate::report::Lint;

/// What a cold volume costs, for the estimate.
#[derive(Debug, Clone, Copy)]
pub struct ColdModel {
    /// Mean first-touch latency, ms.
    pub mean_latency_ms: f64,
    /// Volume block, bytes.
    pub block_bytes: u64,
    /// First-touch fetches in flight at once.
    pub concurrency: u32,
}

/// InnoDB reads ahead for a scan with a few I/O threads at most.
const SCAN_PARALLELISM: u32 = 4;

/// Bytes (data + indexes) of every table of a schema.
pub async fn table_sizes(conn: &mut MySqlConnection, schema: &str) -> Result<HashMap<String, (u64, u64)>> {
    let rows = sql::fetch_all(
        conn,
        &format!(
            "SELECT TABLE_NAME, CAST(DATA_LENGTH AS CHAR), CAST(INDEX_LENGTH AS CHAR) FROM information_schema.TABLES \
             WHERE TABLE_SCHEMA = '{}'",
            schema.replace('\'', "''")
        ),
    )
    .await?;
    let mut m = HashMap::new();
    for r in rows {
        let n = |i| sql::col_text_at(&r, i).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
        if let Some(t) = sql::col_text_at(&r, 0) {
            m.insert(t, (n(1), n(2)));
        }
    }
    Ok(m)
}

/// Bytes (data and indexes) of `tables` ((schema, table) pairs, as
/// `Mix::tables` gives them), and how many of them were found.
pub async fn tables_bytes(conn: &mut MySqlConnection, tables: &[(String, String)]) -> Result<(u64, usize)> {
    let mut schemas: Vec<&str> = tables.iter().map(|(d, _)| d.as_str()).collect();
    schemas.sort_unstable();
    schemas.dedup();
    let (mut total, mut found) = (0, 0);
    for db in schemas {
        let sizes = table_sizes(conn, db).await?;
        for (_, t) in tables.iter().filter(|(d, _)| d == db) {
            if let Some((data, index)) = sizes.get(t) {
                total += data + index;
                found += 1;
            }
        }
    }
    Ok((total, found))
}

fn row_map(r: &sqlx::mysql::MySqlRow) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for (i, c) in r.columns().iter().enumerate() {
        m.insert(c.name().to_string(), sql::col_text_at(r, i).unwrap_or_default());
    }
    m
}

/// The tables a statement reads, by the names EXPLAIN gives them: each
/// alias (and each table's own name) to the table's name. EXPLAIN's `table`
/// column names the alias (`b` for `FROM bulk_imports b`); sizes are the
/// table's. Parsed with sqlparser (MySQL dialect); a statement it cannot
/// parse resolves nothing (EXPLAIN's names are then taken as they are).
pub fn aliases(statement: &str) -> HashMap<String, String> {
    struct Tables(HashMap<String, String>);
    impl Visitor for Tables {
        type Break = ();
        fn pre_visit_table_factor(&mut self, t: &TableFactor) -> ControlFlow<()> {
            if let TableFactor::Table { name, alias, .. } = t {
                let base = name.to_string();
                let base = base.rsplit('.').next().unwrap_or(&base).trim_matches('`').to_string();
                self.0.insert(base.clone(), base.clone());
                if let Some(a) = alias {
                    self.0.insert(a.name.value.clone(), base);
                }
            }
            ControlFlow::Continue(())
        }
    }
    let mut v = Tables(HashMap::new());
    if let Ok(stmts) = sqlparser::parser::Parser::parse_sql(&sqlparser::dialect::MySqlDialect {}, statement) {
        let _ = stmts.visit(&mut v);
    }
    v.0
}

/// A derived table, subquery or union result EXPLAIN lists (`<derived2>`):
/// no table of the schema, its reads are in the rows of the tables it reads.
fn derived(table: &str) -> bool {
    table.starts_with('<') && table.ends_with('>')
}

/// Judge one EXPLAIN plan, with `aliases` from [`aliases`]. Returns (full
/// scan, rows estimate, scanned tables, blocks a scan reads cold, blocks
/// lookups read cold).
pub fn judge(
    plan: &[BTreeMap<String, String>],
    aliases: &HashMap<String, String>,
    sizes: &HashMap<String, (u64, u64)>,
    block: u64,
) -> (bool, u64, Vec<String>, u64, u64) {
    let mut full = false;
    let mut rows_total = 0u64;
    let mut scanned = Vec::new();
    let mut scan_blocks = 0u64;
    let mut lookup_blocks = 0u64;
    for r in plan {
        let ty = r.get("type").map(|s| s.to_ascii_uppercase()).unwrap_or_default();
        let named = r.get("table").cloned().unwrap_or_default();
        let rows: u64 = r.get("rows").and_then(|x| x.trim().parse().ok()).unwrap_or(0);
        rows_total += rows;
        if derived(&named) {
            continue;
        }
        let table = aliases.get(&named).cloned().unwrap_or(named);
        let (data, index) = sizes.get(&table).copied().unwrap_or((0, 0));
        if ty == "ALL" || ty == "INDEX" {
            full = true;
            scanned.push(table.clone());
            let bytes = if ty == "ALL" { data } else { index.max(data / 4) };
            scan_blocks += bytes.div_ceil(block.max(1)).max(1);
        } else if !table.is_empty() && !matches!(ty.as_str(), "" | "SYSTEM" | "CONST_ROW_NOT_FOUND") {
            // Index lookups: a root-to-leaf path, then about a block per row.
            let table_blocks = (data + index).div_ceil(block.max(1)).max(1);
            lookup_blocks += (3 + rows).min(table_blocks);
        }
    }
    (full, rows_total, scanned, scan_blocks, lookup_blocks)
}

/// EXPLAIN every statement of the mix. `background` names the background
/// jobs this run starts (None: those the mix enables); the others are
/// linted but marked as not running.
pub async fn lint(
    conn: &mut MySqlConnection,
    mix: &Mix,
    gens: &Generators,
    cold: ColdModel,
    background: Option<&[String]>,
) -> Result<Vec<Lint>> {
    let sizes = table_sizes(conn, &mix.database).await?;
    let version = sql::query_text(conn, "SELECT VERSION()").await?.unwrap_or_default();
    let (flavor, v) = sql::parse_server_version(&version)
        .ok_or_else(|| anyhow::anyhow!("cannot tell which server answers (VERSION() = '{version}')"))?;
    let dialect = coldswap_db::dialect::Dialect::new(flavor, v);
    let mut rng = Rng::new(42);
    let mut out = Vec::new();
    let runs_bg = |b: &coldswap_client::mix::BgSpec| match background {
        Some(list) => list.contains(&b.name),
        None => b.enabled,
    };
    let all = mix
        .transactions
        .iter()
        .map(|t| (&t.name, &t.steps, true))
        .chain(mix.background.iter().map(|b| (&b.name, &b.steps, runs_bg(b))));
    for (name, steps, runs) in all {
        for s in steps {
            let needed: Vec<usize> = s.params.clone();
            let vals = gens.draw(&mut rng, &needed);
            let text = dialect.explain(&s.sql);
            let mut q = sqlx::query(&text);
            for &p in &s.params {
                q = match &vals[p] {
                    Some(Value::Int(i)) => q.bind(*i),
                    Some(Value::Str(st)) => q.bind(st.clone()),
                    None => q.bind(None::<i64>),
                };
            }
            let statement = s.text.split_whitespace().collect::<Vec<_>>().join(" ");
            match q.fetch_all(&mut *conn).await {
                Ok(rows) => {
                    // INSERT ... VALUES reads nothing, whatever EXPLAIN says of its target.
                    let head = coldswap_client::mix::first_keyword(&s.sql);
                    let reads =
                        !(head == "INSERT" || head == "REPLACE") || s.sql.to_ascii_uppercase().contains("SELECT");
                    let plan: Vec<BTreeMap<String, String>> =
                        if reads { rows.iter().map(row_map).collect() } else { vec![] };
                    let names = aliases(&s.sql);
                    let (full, rows_est, scanned, scan_blocks, lookup_blocks) =
                        judge(&plan, &names, &sizes, cold.block_bytes);
                    let scan_par = cold.concurrency.clamp(1, SCAN_PARALLELISM) as f64;
                    let est = scan_blocks as f64 * cold.mean_latency_ms / scan_par
                        + lookup_blocks as f64 * cold.mean_latency_ms;
                    out.push(Lint {
                        transaction: name.clone(),
                        statement,
                        full_scan: full,
                        rows_estimate: rows_est,
                        est_cold_cost_ms: est,
                        scanned_tables: scanned,
                        explain: plan,
                        error: None,
                        runs,
                        measured_first_cold_ms: None,
                        measured_over_predicted: None,
                        prediction_note: String::new(),
                    });
                }
                Err(e) => out.push(Lint {
                    transaction: name.clone(),
                    statement,
                    full_scan: false,
                    rows_estimate: 0,
                    est_cold_cost_ms: 0.0,
                    scanned_tables: vec![],
                    explain: vec![],
                    error: Some(sql::describe(&e)),
                    runs,
                    measured_first_cold_ms: None,
                    measured_over_predicted: None,
                    prediction_note: String::new(),
                }),
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(ty: &str, table: &str, rows: &str) -> BTreeMap<String, String> {
        [("type", ty), ("table", table), ("rows", rows)].iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn full_scans_and_lookups() {
        let sizes: HashMap<String, (u64, u64)> =
            [("schedules".to_string(), (64 * 1024 * 100, 64 * 1024 * 10)), ("jobs".to_string(), (64 * 1024 * 1000, 0))]
                .into();
        let none = HashMap::new();
        let (full, rows, scanned, sb, lb) = judge(&[plan("ALL", "schedules", "25000")], &none, &sizes, 65536);
        assert!(full);
        assert_eq!((rows, sb, lb), (25000, 100, 0));
        assert_eq!(scanned, vec!["schedules"]);
        let (full, _, _, sb, lb) = judge(&[plan("const", "jobs", "1")], &none, &sizes, 65536);
        assert!(!full);
        assert_eq!((sb, lb), (0, 4));
        let (full, _, _, _, lb) = judge(&[plan("range", "schedules", "1")], &none, &sizes, 65536);
        assert!(!full);
        assert_eq!(lb, 4);
    }

    #[test]
    fn aliases_resolve_to_their_tables() {
        let a = aliases("SELECT b.id FROM bulk_imports b WHERE b.account_id IN (?, ?) OR b.name LIKE ?");
        assert_eq!(a.get("b").map(|s| s.as_str()), Some("bulk_imports"));
        let a = aliases("SELECT k.user_id FROM api_keys AS k JOIN `accounts` a ON a.id = k.account_id WHERE k.key = ?");
        assert_eq!((a["k"].as_str(), a["a"].as_str(), a["accounts"].as_str()), ("api_keys", "accounts", "accounts"));
        let a = aliases("SELECT id FROM api.jobs x WHERE x.id IN (SELECT job_id FROM runs r WHERE r.ok = 1)");
        assert_eq!((a["x"].as_str(), a["r"].as_str()), ("jobs", "runs"));
        let a = aliases("SELECT * FROM (SELECT id FROM jobs j WHERE j.status = ?) d JOIN schedules s ON s.id = d.id");
        assert_eq!((a["j"].as_str(), a["s"].as_str()), ("jobs", "schedules"));
        assert!(aliases("this is not sql").is_empty());
    }

    #[test]
    fn a_scan_through_an_alias_costs_its_table() {
        // 198,637 rows in 3,000 blocks: the scan of `b` is the scan of bulk_imports.
        let sizes: HashMap<String, (u64, u64)> = [("bulk_imports".to_string(), (65536 * 3000, 65536 * 500))].into();
        let a = aliases("SELECT b.id FROM bulk_imports b WHERE b.account_id IN (?, ?) OR b.name LIKE ?");
        let (full, _, scanned, sb, _) = judge(&[plan("ALL", "b", "198637")], &a, &sizes, 65536);
        assert!(full);
        assert_eq!(scanned, vec!["bulk_imports"]);
        assert_eq!(sb, 3000);
        // A derived table's own row is not a table of the schema; the table under it is.
        let a = aliases("SELECT * FROM (SELECT id FROM bulk_imports j) d");
        let (_, _, scanned, sb, _) =
            judge(&[plan("ALL", "<derived2>", "10"), plan("ALL", "j", "198637")], &a, &sizes, 65536);
        assert_eq!((scanned, sb), (vec!["bulk_imports".to_string()], 3000));
    }
}
