//! The server's own account of the heaviest statements:
//! performance_schema.events_statements_summary_by_digest, reset per phase,
//! tied back to the mix's transactions by the server's own digest.
//!
//! Before the load, [`learn`] runs each statement once, as the load will
//! send it (text or prepared), inside a transaction it rolls back, and reads
//! which digest row counted it: the digest the server computes, whatever
//! the statement's shape (INTERVAL units, IN lists, functions, comments,
//! aliases). Statements it could not learn (DDL is never run; MariaDB does
//! not digest prepared statements) fall back to normalised text.

use anyhow::{Context, Result};
use coldswap_client::gen::Value;
use coldswap_client::mix::Stmt;
use coldswap_client::{Mix, Protocol};
use coldswap_sql as sql;
use sqlx::mysql::MySqlConnectOptions;
use sqlx::MySqlConnection;
use std::collections::HashMap;
use std::time::Duration;

use crate::report::Digest;

/// A statement to learn the digest of: who issues it, and the values it is
/// sent with (indexed as the statement's `params` say).
#[derive(Debug, Clone)]
pub struct Probe {
    /// The transaction, background job or workload request it belongs to.
    pub name: String,
    /// The statement.
    pub stmt: Stmt,
    /// Values, indexed by the statement's `params`.
    pub vals: Vec<Option<Value>>,
}

/// The name of coldswap's own statements in digest tables.
pub const HARNESS: &str = "coldswap (harness)";

/// Who issues each digest: learned from the server, else by normalised text.
#[derive(Debug, Clone, Default)]
pub struct Namer {
    learned: HashMap<String, String>,
    mix: Option<Mix>,
}

impl Namer {
    /// Names from learned digests, with the mix for the text fallback.
    pub fn new(learned: HashMap<String, String>, mix: Option<Mix>) -> Namer {
        Namer { learned, mix }
    }

    /// The name behind a digest (its hash, and its text for the fallback).
    /// coldswap's own statements (on its `coldswap_meta` tables) are named
    /// as the harness's.
    pub fn name(&self, digest: &str, text: &str) -> Option<String> {
        if let Some(n) = self.learned.get(digest) {
            return Some(n.clone());
        }
        if text.contains("coldswap_meta") {
            return Some(HARNESS.to_string());
        }
        self.mix.as_ref().and_then(|m| match_digest(m, text))
    }

    /// How many digests were learned from the server.
    pub fn learned(&self) -> usize {
        self.learned.len()
    }
}

/// Statements that change data or read it (what [`learn`] may run, inside
/// a transaction it rolls back); DDL and anything else is never run.
fn dml(sql: &str) -> bool {
    let head = coldswap_client::mix::first_keyword(sql);
    matches!(head.as_str(), "SELECT" | "WITH" | "INSERT" | "UPDATE" | "DELETE" | "REPLACE")
}

async fn snapshot(conn: &mut MySqlConnection, schema: &str) -> Result<HashMap<String, (u64, String)>> {
    let rows = sql::fetch_all(
        conn,
        &format!(
            "SELECT DIGEST, CAST(COUNT_STAR AS CHAR), DIGEST_TEXT FROM performance_schema.events_statements_summary_by_digest \
             WHERE SCHEMA_NAME = '{}' AND DIGEST IS NOT NULL",
            schema.replace('\'', "''")
        ),
    )
    .await?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            let d = sql::col_text_at(r, 0)?;
            let n = sql::col_text_at(r, 1).and_then(|x| x.parse().ok()).unwrap_or(0);
            Some((d, (n, sql::col_text_at(r, 2).unwrap_or_default())))
        })
        .collect())
}

/// Learn the server's digest of each probe: run it once on a connection
/// whose default schema is `schema` (as the load's), the way `protocol`
/// sends it, inside a transaction rolled back, and read which digest row
/// of that schema counted it. Returns digest -> name, and a line for each
/// probe it could not learn. Nothing else may run in `schema` meanwhile.
pub async fn learn(
    opts: &MySqlConnectOptions,
    schema: &str,
    probes: &[Probe],
    protocol: Protocol,
) -> Result<(HashMap<String, String>, Vec<String>)> {
    let mut runner = sql::connect(&opts.clone().database(schema), Duration::from_secs(10))
        .await
        .context("connecting to learn statement digests")?;
    let mut reader =
        sql::connect(opts, Duration::from_secs(10)).await.context("connecting to read statement digests")?;
    let mut learned = HashMap::new();
    let mut missed = Vec::new();
    for p in probes {
        if !dml(&p.stmt.sql) {
            missed.push(format!("{}: not run to learn its digest (not a data statement)", p.name));
            continue;
        }
        let before = snapshot(&mut reader, schema).await?;
        sql::exec(&mut runner, "START TRANSACTION").await?;
        let ran = match protocol {
            Protocol::Text => {
                let text = coldswap_client::tier::inline(&p.stmt, &p.vals);
                sqlx::Executor::execute(&mut runner, text.as_str()).await.map(|_| ())
            }
            Protocol::Binary => {
                let mut q = sqlx::query(&p.stmt.sql);
                for &i in &p.stmt.params {
                    q = match p.vals.get(i).cloned().flatten() {
                        Some(Value::Int(v)) => q.bind(v),
                        Some(Value::Str(v)) => q.bind(v),
                        None => q.bind(None::<i64>),
                    };
                }
                q.execute(&mut runner).await.map(|_| ())
            }
        };
        let _ = sql::exec(&mut runner, "ROLLBACK").await;
        if let Err(e) = ran {
            missed.push(format!("{}: {}", p.name, sql::describe(&e)));
            continue;
        }
        let after = snapshot(&mut reader, schema).await?;
        let counted: Vec<&String> = after
            .iter()
            .filter(|(d, (n, text))| {
                *n > before.get(*d).map(|b| b.0).unwrap_or(0) && dml(text.trim_start_matches("EXECUTE "))
            })
            .map(|(d, _)| d)
            .collect();
        match counted.as_slice() {
            [d] => {
                learned.insert((*d).clone(), p.name.clone());
            }
            [] => missed.push(format!("{}: the server kept no digest for it", p.name)),
            _ => missed.push(format!("{}: {} digests moved at once", p.name, counted.len())),
        }
    }
    sql::close(runner).await;
    sql::close(reader).await;
    Ok((learned, missed))
}

/// Empty the digest table (at the start of a phase).
pub async fn reset(conn: &mut MySqlConnection) -> Result<()> {
    sql::exec(conn, "TRUNCATE TABLE performance_schema.events_statements_summary_by_digest").await
}

/// Normalise SQL for matching a mix statement with a digest (the fallback
/// for statements whose digest was not learned): lower case,
/// no quotes or whitespace, literals and placeholders as '?', lists folded.
pub fn normalize(sql: &str) -> String {
    let b = sql.as_bytes();
    let mut out = String::with_capacity(sql.len());
    let mut i = 0;
    // whether the previous source character continues an identifier
    let mut in_ident = false;
    while i < b.len() {
        let c = b[i];
        if c == b'\'' || c == b'"' {
            in_ident = false;
            // a string literal
            i += 1;
            while i < b.len() {
                if b[i] == b'\\' {
                    i += 2;
                    continue;
                }
                if b[i] == c {
                    if i + 1 < b.len() && b[i + 1] == c {
                        i += 2;
                        continue;
                    }
                    break;
                }
                i += 1;
            }
            i += 1;
            out.push('?');
            continue;
        }
        if c == b'`' || c.is_ascii_whitespace() {
            in_ident = false;
            i += 1;
            continue;
        }
        if c.is_ascii_digit() && !in_ident {
            while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'.') {
                i += 1;
            }
            out.push('?');
            continue;
        }
        in_ident = c.is_ascii_alphanumeric() || c == b'_';
        out.push(c.to_ascii_lowercase() as char);
        i += 1;
    }
    // MariaDB writes <> as !=
    let out = out.replace("<>", "!=");
    // "?,?,?" lists and MariaDB's "..." folding
    // unary minus on literals, MariaDB's "..." list folding, then lists
    let mut s = out.replace("-?", "?").replace("...", "?");
    while s.contains("?,?") {
        s = s.replace("?,?", "?");
    }
    s
}

/// Which transaction or background job of the mix issues a digest.
pub fn match_digest(mix: &Mix, digest_text: &str) -> Option<String> {
    let d = normalize(digest_text);
    if d.is_empty() {
        return None;
    }
    let all =
        mix.transactions.iter().map(|t| (&t.name, &t.steps)).chain(mix.background.iter().map(|b| (&b.name, &b.steps)));
    let mut best: Option<(usize, String)> = None;
    for (name, steps) in all {
        for s in steps {
            let n = normalize(&s.sql);
            // Digest texts may be truncated: compare the common prefix.
            let len = n.len().min(d.len());
            if len >= 16 && n[..len] == d[..len] && best.as_ref().map(|b| len > b.0).unwrap_or(true) {
                best = Some((len, name.clone()));
            }
        }
    }
    best.map(|b| b.1)
}

/// Statements that read or write data (not BEGIN, COMMIT, SET, SHOW...),
/// sent as text or, on MySQL, prepared (`EXECUTE SELECT ...`): shares are
/// of their time, the time queries took.
const DATA_STATEMENTS: &str =
    "(DIGEST_TEXT LIKE 'SELECT%' OR DIGEST_TEXT LIKE 'INSERT%' OR DIGEST_TEXT LIKE 'UPDATE%' \
     OR DIGEST_TEXT LIKE 'DELETE%' OR DIGEST_TEXT LIKE 'REPLACE%' OR DIGEST_TEXT LIKE 'WITH%' \
     OR DIGEST_TEXT LIKE 'EXECUTE SELECT%' OR DIGEST_TEXT LIKE 'EXECUTE INSERT%' OR DIGEST_TEXT LIKE 'EXECUTE UPDATE%' \
     OR DIGEST_TEXT LIKE 'EXECUTE DELETE%' OR DIGEST_TEXT LIKE 'EXECUTE REPLACE%' OR DIGEST_TEXT LIKE 'EXECUTE WITH%')";

/// The top data statements since the last reset, in the given schemas,
/// ranked by the work they made the server do (rows examined), with their
/// share of all data statements' rows examined and of their latency. Under
/// an I/O stall every query waits, so latency blames the many victims;
/// rows examined names the cause. (Statements sent as server-side prepared
/// statements are not digested by MariaDB; MySQL digests them as
/// `EXECUTE <statement>`; the load sends text by default.)
pub async fn top(conn: &mut MySqlConnection, schemas: &[&str], names: &Namer, limit: usize) -> Result<Vec<Digest>> {
    let list: Vec<String> = schemas.iter().map(|s| format!("'{}'", s.replace('\'', "''"))).collect();
    let filter = format!("SCHEMA_NAME IN ({}) AND {DATA_STATEMENTS}", list.join(","));
    let totals = sql::fetch_all(
        conn,
        &format!(
            "SELECT CAST(COALESCE(SUM(SUM_ROWS_EXAMINED), 0) AS CHAR), CAST(COALESCE(SUM(SUM_TIMER_WAIT), 0) AS CHAR) \
             FROM performance_schema.events_statements_summary_by_digest WHERE {filter}"
        ),
    )
    .await?;
    let tot =
        |i| totals.first().and_then(|r| sql::col_text_at(r, i)).and_then(|t| t.parse::<f64>().ok()).unwrap_or(0.0);
    let (total_rows, total_wait) = (tot(0), tot(1));
    let rows = sql::fetch_all(
        conn,
        &format!(
            "SELECT DIGEST_TEXT, CAST(COUNT_STAR AS CHAR), CAST(SUM_ROWS_EXAMINED AS CHAR), CAST(SUM_TIMER_WAIT AS CHAR), DIGEST \
             FROM performance_schema.events_statements_summary_by_digest WHERE {filter} AND DIGEST_TEXT IS NOT NULL \
             ORDER BY SUM_ROWS_EXAMINED DESC, SUM_TIMER_WAIT DESC LIMIT {limit}"
        ),
    )
    .await?;
    let mut out = Vec::new();
    for r in rows {
        let text = sql::col_text_at(&r, 0).unwrap_or_default();
        let digest = sql::col_text_at(&r, 4).unwrap_or_default();
        let n = |i| sql::col_text_at(&r, i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
        let (examined, wait_ps) = (n(2), n(3));
        out.push(Digest {
            transaction: names.name(&digest, &text),
            digest_text: text,
            exec_count: n(1) as u64,
            rows_examined: examined as u64,
            total_latency_ms: wait_ps / 1e9,
            share: if total_rows > 0.0 { examined / total_rows } else { 0.0 },
            latency_share: if total_wait > 0.0 { wait_ps / total_wait } else { 0.0 },
        });
    }
    Ok(out)
}

/// Every data statement's running totals at one moment, per schema and
/// digest: text, executions, rows examined, wait (ps). Servers coldswap
/// does not own are never reset: a phase is the difference of two of these.
#[derive(Debug, Clone, Default)]
pub struct Totals(HashMap<(String, String), (String, f64, f64, f64)>);

/// Read [`Totals`] for `schemas`.
pub async fn totals(conn: &mut MySqlConnection, schemas: &[&str]) -> Result<Totals> {
    let list: Vec<String> = schemas.iter().map(|s| format!("'{}'", s.replace('\'', "''"))).collect();
    let rows = sql::fetch_all(
        conn,
        &format!(
            "SELECT SCHEMA_NAME, DIGEST, DIGEST_TEXT, CAST(COUNT_STAR AS CHAR), CAST(SUM_ROWS_EXAMINED AS CHAR), \
             CAST(SUM_TIMER_WAIT AS CHAR) FROM performance_schema.events_statements_summary_by_digest \
             WHERE SCHEMA_NAME IN ({}) AND DIGEST_TEXT IS NOT NULL AND {DATA_STATEMENTS}",
            list.join(",")
        ),
    )
    .await?;
    let mut out = HashMap::new();
    for r in rows {
        let t = |i| sql::col_text_at(&r, i).unwrap_or_default();
        let n = |i| sql::col_text_at(&r, i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
        out.insert((t(0), t(1)), (t(2), n(3), n(4), n(5)));
    }
    Ok(Totals(out))
}

/// The top data statements between two readings, as [`top`] ranks them.
/// A digest whose count fell (the table was reset or evicted it) counts
/// from zero.
pub fn top_between(before: &Totals, after: &Totals, names: &Namer, limit: usize) -> Vec<Digest> {
    let mut d: Vec<(String, String, f64, f64, f64)> = Vec::new();
    for (k, (text, n, rows, wait)) in &after.0 {
        let (bn, br, bw) = match before.0.get(k) {
            Some((_, bn, br, bw)) if bn <= n => (*bn, *br, *bw),
            _ => (0.0, 0.0, 0.0),
        };
        if n - bn > 0.0 {
            d.push((k.1.clone(), text.clone(), n - bn, rows - br, wait - bw));
        }
    }
    let total_rows: f64 = d.iter().map(|x| x.3).sum();
    let total_wait: f64 = d.iter().map(|x| x.4).sum();
    d.sort_by(|a, b| b.3.total_cmp(&a.3).then(b.4.total_cmp(&a.4)));
    d.into_iter()
        .take(limit)
        .map(|(digest, text, n, rows, wait)| Digest {
            transaction: names.name(&digest, &text),
            digest_text: text,
            exec_count: n as u64,
            rows_examined: rows as u64,
            total_latency_ms: wait / 1e9,
            share: if total_rows > 0.0 { rows / total_rows } else { 0.0 },
            latency_share: if total_wait > 0.0 { wait / total_wait } else { 0.0 },
        })
        .collect()
}

/// One statement over a phase, from readings of the digest table taken
/// about a second apart: its executions, its mean latency, and the mean
/// latency of each interval it ran in (the samples a version effect is
/// estimated from, as the per-second p99s are for a transaction).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StatementSeries {
    /// The statement's text, normalised ([`normalize`]): the key that
    /// matches it between two versions, whose digests may differ.
    pub key: String,
    /// The server's digest text.
    pub digest_text: String,
    /// The mix transaction or background job that issues it, if known.
    pub transaction: Option<String>,
    /// Executions over the phase.
    pub executions: u64,
    /// Mean latency over the phase, ms.
    pub mean_ms: f64,
    /// Each interval between readings it ran in: (executions, mean
    /// latency ms).
    pub intervals: Vec<(u64, f64)>,
}

/// The statements of a phase from its readings, in order (see
/// [`StatementSeries`]). Digests whose text normalises alike (a statement
/// sent as text and prepared) are one statement. A count that fell (a
/// reset, an eviction, a restart) counts from zero.
pub fn series(readings: &[Totals], names: &Namer) -> Vec<StatementSeries> {
    let mut by_key: HashMap<String, StatementSeries> = HashMap::new();
    let mut interval: HashMap<String, (f64, f64)> = HashMap::new();
    for w in readings.windows(2) {
        interval.clear();
        for (k, (text, n, _, wait)) in &w[1].0 {
            let (bn, bw) = match w[0].0.get(k) {
                Some((_, bn, _, bw)) if bn <= n => (*bn, *bw),
                _ => (0.0, 0.0),
            };
            if n - bn <= 0.0 {
                continue;
            }
            let key = normalize(text);
            let e = by_key.entry(key.clone()).or_insert_with(|| StatementSeries {
                key: key.clone(),
                digest_text: text.clone(),
                transaction: names.name(&k.1, text),
                executions: 0,
                mean_ms: 0.0,
                intervals: vec![],
            });
            e.executions += (n - bn) as u64;
            // mean_ms holds the total wait (ms) until the end.
            e.mean_ms += (wait - bw) / 1e9;
            let x = interval.entry(key).or_insert((0.0, 0.0));
            x.0 += n - bn;
            x.1 += (wait - bw) / 1e9;
        }
        for (key, (n, ms)) in &interval {
            if let Some(e) = by_key.get_mut(key) {
                e.intervals.push((*n as u64, ms / n));
            }
        }
    }
    let mut out: Vec<StatementSeries> = by_key
        .into_values()
        .map(|mut e| {
            e.mean_ms /= e.executions.max(1) as f64;
            e
        })
        .collect();
    out.sort_by(|a, b| a.key.cmp(&b.key));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_phase_s_statements_are_their_intervals() {
        // (digest, text, count, wait ms) per reading.
        let t = |v: &[(&str, &str, f64, f64)]| {
            Totals(
                v.iter()
                    .map(|(d, x, n, ms)| (("api".into(), d.to_string()), (x.to_string(), *n, 0.0, ms * 1e9)))
                    .collect(),
            )
        };
        let readings = vec![
            t(&[("a", "SELECT `x` FROM `t` WHERE `id` = ?", 10.0, 10.0)]),
            // a: 10 more at 2 ms; b (the same statement, prepared) 10 at 4 ms.
            t(&[
                ("a", "SELECT `x` FROM `t` WHERE `id` = ?", 20.0, 30.0),
                ("b", "select x from t where id = ?", 10.0, 40.0),
            ]),
            // A restart: a counts from zero, 5 at 1 ms; b did not run.
            t(&[("a", "SELECT `x` FROM `t` WHERE `id` = ?", 5.0, 5.0)]),
            // Nothing ran.
            t(&[("a", "SELECT `x` FROM `t` WHERE `id` = ?", 5.0, 5.0)]),
        ];
        let s = series(&readings, &Namer::default());
        assert_eq!(s.len(), 1, "{s:?}");
        assert_eq!(s[0].executions, 25);
        assert!((s[0].mean_ms - 65.0 / 25.0).abs() < 1e-9);
        assert_eq!(s[0].intervals.len(), 2);
        assert!((s[0].intervals[0].1 - 3.0).abs() < 1e-9 && (s[0].intervals[1].1 - 1.0).abs() < 1e-9);
        assert_eq!((s[0].intervals[0].0, s[0].intervals[1].0), (20, 5));
        assert!(series(&readings[..1], &Namer::default()).is_empty());
    }

    #[test]
    fn phases_are_differences_of_totals() {
        let t = |v: &[(&str, f64, f64)]| {
            Totals(
                v.iter()
                    .map(|(d, n, r)| (("api".into(), d.to_string()), (format!("SELECT {d}"), *n, *r, *r)))
                    .collect(),
            )
        };
        let before = t(&[("a", 10.0, 100.0), ("b", 5.0, 5.0), ("c", 50.0, 1e6)]);
        // a ran 2 more times, b was evicted and came back with 3, c did not run, d is new.
        let after = t(&[("a", 12.0, 120.0), ("b", 3.0, 30.0), ("c", 50.0, 1e6), ("d", 1.0, 50.0)]);
        let top = top_between(&before, &after, &Namer::default(), 10);
        let got: Vec<(&str, u64, u64)> =
            top.iter().map(|d| (d.digest_text.as_str(), d.exec_count, d.rows_examined)).collect();
        assert_eq!(got, vec![("SELECT d", 1, 50), ("SELECT b", 3, 30), ("SELECT a", 2, 20)]);
        assert!((top[0].share - 0.5).abs() < 1e-9);
        assert_eq!(top_between(&before, &after, &Namer::default(), 1).len(), 1);
    }

    #[test]
    fn mix_sql_and_digest_text_normalise_alike() {
        let mix_sql = "SELECT id, account_id FROM schedules\n WHERE last_run_status <> last_notified_status";
        let digest = "SELECT `id` , `account_id` FROM `schedules` WHERE `last_run_status` <> `last_notified_status`";
        assert_eq!(normalize(mix_sql), normalize(digest));
        let a = "UPDATE jobs SET status = ?, finished_at = NOW(3) WHERE id = ?";
        let b = "UPDATE `jobs` SET `status` = ? , `finished_at` = NOW ( ? ) WHERE `id` = ?";
        assert_eq!(normalize(a), normalize(b));
        let a = "INSERT INTO t (a, b) VALUES (?, 'presto', -1)";
        let b = "INSERT INTO `t` ( `a` , `b` ) VALUES (...)";
        assert_eq!(normalize(a), normalize(b));
        assert_ne!(normalize("SELECT a FROM t1"), normalize("SELECT a FROM t2"));
    }

    #[test]
    fn digests_map_to_transactions() {
        let text = r#"
name = "m"
database = "api"
[[transaction]]
name = "show"
weight = 1
sql = "SELECT id, status FROM jobs WHERE id = 5"
[[background]]
name = "notify"
period_ms = 1000
sql = "SELECT id FROM schedules WHERE last_run_status <> last_notified_status"
"#;
        let mix = Mix::parse(text, std::path::Path::new("m.toml")).unwrap();
        assert_eq!(match_digest(&mix, "SELECT `id` , `status` FROM `jobs` WHERE `id` = ?").as_deref(), Some("show"));
        assert_eq!(
            match_digest(&mix, "SELECT `id` FROM `schedules` WHERE `last_run_status` <> `last_notified_status`")
                .as_deref(),
            Some("notify")
        );
        assert_eq!(match_digest(&mix, "SELECT `x` FROM `y`"), None);
    }
}
#[cfg(test)]
mod more_tests {
    use super::*;

    #[test]
    fn real_digests() {
        let mix =
            Mix::load(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../loadtests/api.toml"))).unwrap();
        // As MariaDB 10.11 writes them for the api mix.
        let d =
            "SELECT ID , STATUS , `created_at` FROM `jobs` WHERE `account_id` = ? ORDER BY `created_at` DESC LIMIT ? ";
        assert_eq!(match_digest(&mix, d).as_deref(), Some("list_jobs"));
        let d = "SELECT ID , `account_id` , `notify_email` , `last_run_status` , `last_notified_status` FROM `schedules` WHERE `last_run_status` != `last_notified_status` ";
        assert_eq!(match_digest(&mix, d).as_deref(), Some("notify_schedules"));
    }
}
