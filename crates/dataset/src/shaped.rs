//! A dataset shaped like someone else's: their tables and indexes, their
//! row counts scaled, and per column what its values look like (type, nulls,
//! range, length, the most frequent values of key and status columns with
//! their shares), but none of their rows. `coldswap schema import` writes
//! it; [`seed`] generates it deterministically at any scale, on the server
//! itself (INSERT ... SELECT over a sequence, every value a hash of the
//! table, column and row number).

use anyhow::{anyhow, bail, Context, Result};
use coldswap_sql::{self as sql, Flavor};
use serde::{Deserialize, Serialize};
use sqlx::mysql::MySqlConnection;
use std::path::Path;
use std::time::Instant;

use crate::{check_scale, numbers_table_sql, seq_source, Progress, SeedSummary, TableSeed, CHUNK_ROWS};

/// A database's shape.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Shape {
    /// Where it was read from, and when.
    pub source: String,
    /// The database its tables are created in.
    pub database: String,
    /// Its tables, parents before the tables that refer to them.
    #[serde(rename = "table")]
    pub tables: Vec<TableShape>,
}

/// One table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TableShape {
    /// Its name.
    pub name: String,
    /// Rows at the source (scale 1).
    pub rows: u64,
    /// Its indexes (for reading; the DDL in schema.sql creates them).
    #[serde(default)]
    pub indexes: Vec<String>,
    /// Its columns, in order.
    #[serde(rename = "column")]
    pub columns: Vec<ColumnShape>,
}

/// How one column's values look.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ColumnShape {
    /// Its name.
    pub name: String,
    /// int, decimal, string, datetime, date, or other.
    pub class: String,
    /// Maximum length of a string column (its type's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_len: Option<u64>,
    /// The table's single-column integer primary key (or auto-increment): 1..rows.
    #[serde(default, skip_serializing_if = "is_false")]
    pub key: bool,
    /// Alone in a unique index: every row its own value.
    #[serde(default, skip_serializing_if = "is_false")]
    pub unique: bool,
    /// Not generated (generated columns, or a type without a generator
    /// whose column has a default or takes NULL).
    #[serde(default, skip_serializing_if = "is_false")]
    pub skip: bool,
    /// Share of NULLs in the sample.
    #[serde(default)]
    pub null_share: f64,
    /// Lowest value (numbers, dates as text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<String>,
    /// Highest value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<String>,
    /// Mean length of a string value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avg_len: Option<f64>,
    /// Ids of this table: values are drawn within its (scaled) row count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refers_to: Option<String>,
    /// The most frequent values (integers, or the words of a status-like
    /// column), with their shares of the sample's non-NULL values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub top: Vec<TopValue>,
}

/// A frequent value and its share.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TopValue {
    /// The value, as text.
    pub value: String,
    /// Its share of non-NULL values.
    pub share: f64,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// The files `schema import` writes.
pub const SCHEMA_FILE: &str = "schema.sql";
/// The dataset description beside it.
pub const DATASET_FILE: &str = "dataset.toml";

impl Shape {
    /// Read `schema.sql` and `dataset.toml` from a directory.
    pub fn load(dir: &Path) -> Result<(Shape, String)> {
        let p = dir.join(DATASET_FILE);
        let text = std::fs::read_to_string(&p).map_err(|e| anyhow!("{}: cannot read: {e}", p.display()))?;
        let shape: Shape = toml::from_str(&text).map_err(|e| {
            let line = e.span().map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1).unwrap_or(0);
            anyhow!("{}:{line}: {}", p.display(), e.message().trim())
        })?;
        let s = dir.join(SCHEMA_FILE);
        let ddl = std::fs::read_to_string(&s).map_err(|e| anyhow!("{}: cannot read: {e}", s.display()))?;
        if shape.tables.is_empty() {
            bail!("{}: no [[table]]", p.display());
        }
        Ok((shape, ddl))
    }

    /// Rows of a table at a scale (at least one).
    pub fn rows_at(&self, table: &str, scale: f64) -> u64 {
        self.tables.iter().find(|t| t.name == table).map(|t| scaled(t.rows, scale)).unwrap_or(0)
    }
}

/// Rows at a scale: rounded, at least one where the source had any.
pub fn scaled(rows: u64, scale: f64) -> u64 {
    if rows == 0 {
        0
    } else {
        ((rows as f64 * scale).round() as u64).max(1)
    }
}

/// A string as an SQL literal (quotes doubled, backslashes escaped).
pub fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

/// A uniform draw in [0, 1) for this column of row `seq`, salted.
fn unit(table: &str, col: &str, salt: &str) -> String {
    format!("(CRC32(CONCAT({}, seq)) / 4294967296.0)", lit(&format!("{table}.{col}.{salt}.")))
}

/// The expression generating a column's value for row `seq`.
pub fn column_expr(t: &TableShape, c: &ColumnShape, shape: &Shape, scale: f64) -> String {
    let rows = scaled(t.rows, scale);
    let u = unit(&t.name, &c.name, "v");
    let num = |s: &Option<String>| s.as_deref().and_then(|v| v.parse::<f64>().ok());
    let base = if c.key {
        "seq".to_string()
    } else if c.unique {
        match c.class.as_str() {
            "int" => format!("({} + seq - 1)", num(&c.min).unwrap_or(1.0).round() as i64),
            _ => {
                let w = c.max_len.unwrap_or(64).clamp(1, 64);
                format!("LEFT(CONCAT({}, seq), {w})", lit(&format!("{}_", c.name)))
            }
        }
    } else {
        // The frequent values, then the rest.
        let limit = c.refers_to.as_deref().map(|r| shape.rows_at(r, scale)).filter(|n| *n > 0);
        let tops: Vec<&TopValue> = c
            .top
            .iter()
            .filter(|v| match (limit, c.class.as_str()) {
                (Some(l), "int") => v.value.parse::<u64>().map(|x| x >= 1 && x <= l).unwrap_or(false),
                _ => true,
            })
            .collect();
        let rest = match c.class.as_str() {
            "int" => {
                let lo = num(&c.min).unwrap_or(1.0).round() as i64;
                let mut hi = num(&c.max).unwrap_or(lo as f64 + rows as f64).round() as i64;
                if let Some(l) = limit {
                    hi = hi.min(l as i64).max(1);
                }
                let lo = if limit.is_some() { lo.clamp(1, hi) } else { lo.min(hi) };
                format!("({lo} + FLOOR({u} * {}))", hi - lo + 1)
            }
            "decimal" => {
                let lo = num(&c.min).unwrap_or(0.0);
                let hi = num(&c.max).unwrap_or(lo + 1.0);
                format!("({lo} + {u} * {})", hi - lo)
            }
            "datetime" | "date" => {
                let lo = c.min.clone().unwrap_or_else(|| "2020-01-01 00:00:00".into());
                let hi = c.max.clone().unwrap_or_else(|| lo.clone());
                format!(
                    "TIMESTAMPADD(SECOND, FLOOR({u} * GREATEST(1, TIMESTAMPDIFF(SECOND, {}, {}))), {})",
                    lit(&lo),
                    lit(&hi),
                    lit(&lo)
                )
            }
            "string" => {
                let len = c.avg_len.unwrap_or(8.0).round().max(1.0) as u64;
                let len = len.min(c.max_len.unwrap_or(len)).max(1);
                // 64 hex digits per hash; longer values repeat it
                let reps = len.div_ceil(64);
                format!(
                    "LEFT(REPEAT(SHA2(CONCAT({}, seq), 256), {reps}), {len})",
                    lit(&format!("{}.{}.s.", t.name, c.name))
                )
            }
            _ => "NULL".to_string(),
        };
        if tops.is_empty() {
            rest
        } else {
            let mut case = String::from("(CASE");
            let mut acc = 0.0;
            let w = unit(&t.name, &c.name, "top");
            for v in &tops {
                acc += v.share;
                let val = if c.class == "int" { v.value.clone() } else { lit(&v.value) };
                case.push_str(&format!(" WHEN {w} < {acc:.6} THEN {val}"));
            }
            case.push_str(&format!(" ELSE {rest} END)"));
            case
        }
    };
    if c.null_share > 0.0 && !c.key && !c.unique {
        format!("IF({} < {:.6}, NULL, {base})", unit(&t.name, &c.name, "null"), c.null_share)
    } else {
        base
    }
}

/// Create the database and generate every table at `scale` through `conn`
/// (the primary, as the admin user). With `replace`, an existing database
/// of that name is dropped first; without it, one is refused.
pub async fn seed(
    conn: &mut MySqlConnection,
    flavor: Flavor,
    shape: &Shape,
    ddl: &str,
    scale: f64,
    replace: bool,
    progress: Progress<'_>,
) -> Result<SeedSummary> {
    check_scale(scale)?;
    let db = &shape.database;
    let exists = sql::query_i64(
        conn,
        &format!("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = {}", lit(db)),
    )
    .await?;
    if exists > 0 && !replace {
        bail!("database {db} exists; pass --replace to drop and reseed it");
    }
    let t0 = Instant::now();
    sql::exec(conn, "SET SESSION binlog_format = 'STATEMENT'").await?;
    sql::exec(conn, "SET SESSION unique_checks = 0, foreign_key_checks = 0").await?;
    sql::exec(conn, &format!("DROP DATABASE IF EXISTS `{db}`")).await?;
    sql::exec(conn, &format!("CREATE DATABASE `{db}`")).await?;
    sql::exec(conn, &format!("USE `{db}`")).await?;
    for stmt in crate::statements(ddl) {
        sql::exec(conn, &stmt).await.with_context(|| format!("schema.sql: {}", first_line(&stmt)))?;
    }
    sql::exec(conn, "CREATE DATABASE IF NOT EXISTS coldswap_meta").await?;
    if flavor == Flavor::MySQL {
        sql::exec_all(conn, &numbers_table_sql()).await?;
    }
    let mut done = 0;
    let mut tables = Vec::new();
    for t in &shape.tables {
        let ts = Instant::now();
        let rows = scaled(t.rows, scale);
        let cols: Vec<&ColumnShape> = t.columns.iter().filter(|c| !c.skip).collect();
        let names: Vec<String> = cols.iter().map(|c| format!("`{}`", c.name)).collect();
        let exprs: Vec<String> = cols.iter().map(|c| column_expr(t, c, shape, scale)).collect();
        let mut a = 1;
        while a <= rows {
            let b = (a + CHUNK_ROWS - 1).min(rows);
            let q = format!(
                "INSERT INTO `{db}`.`{}` ({}) SELECT {} FROM {}",
                t.name,
                names.join(", "),
                exprs.join(", "),
                seq_source(flavor, a, b)
            );
            sql::exec(conn, &q).await.with_context(|| format!("seeding {db}.{} rows {a}..{b}", t.name))?;
            // A server can take an INSERT and keep fewer rows (duplicates
            // under relaxed unique checks): count what it kept.
            let kept = sql::query_i64(conn, "SELECT ROW_COUNT()").await?;
            if kept != (b - a + 1) as i64 {
                bail!("seeding {db}.{} rows {a}..{b}: the server kept {kept} of {} rows", t.name, b - a + 1);
            }
            done += b - a + 1;
            progress(done);
            a = b + 1;
        }
        tables.push(TableSeed {
            database: db.clone(),
            table: t.name.clone(),
            rows,
            bytes: 0,
            seconds: ts.elapsed().as_secs_f64(),
        });
    }
    let seconds = t0.elapsed().as_secs_f64();
    crate::measure(conn, &mut tables).await;
    Ok(SeedSummary::of(scale, tables, seconds))
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expressions_follow_the_shape() {
        let col =
            |name: &str, class: &str| ColumnShape { name: name.into(), class: class.into(), ..Default::default() };
        let mut acc = TableShape { name: "accounts".into(), rows: 1000, indexes: vec![], columns: vec![] };
        let mut id = col("id", "int");
        id.key = true;
        acc.columns.push(id);
        let mut jobs = TableShape { name: "jobs".into(), rows: 50_000, indexes: vec![], columns: vec![] };
        let mut a = col("account_id", "int");
        a.refers_to = Some("accounts".into());
        a.min = Some("1".into());
        a.max = Some("1000".into());
        a.top = vec![TopValue { value: "1".into(), share: 0.2 }, TopValue { value: "900".into(), share: 0.1 }];
        jobs.columns.push(a);
        let mut st = col("status", "string");
        st.top = vec![TopValue { value: "it's".into(), share: 1.0 }];
        st.null_share = 0.1;
        jobs.columns.push(st);
        let shape = Shape { source: "t".into(), database: "d".into(), tables: vec![acc.clone(), jobs.clone()] };
        assert_eq!(column_expr(&acc, &acc.columns[0], &shape, 0.5), "seq");
        // at scale 0.5 accounts has 500 rows: account 900 is gone, the tail is 1..500
        let e = column_expr(&jobs, &jobs.columns[0], &shape, 0.5);
        assert!(e.contains("THEN 1 ") && !e.contains("THEN 900") && e.contains("FLOOR("), "{e}");
        assert!(e.contains("* 500))"), "{e}");
        let e = column_expr(&jobs, &jobs.columns[1], &shape, 1.0);
        assert!(e.starts_with("IF(") && e.contains("'it''s'"), "{e}");
        assert_eq!(scaled(3, 0.01), 1);
        assert_eq!(scaled(0, 1.0), 0);
        let text = toml::to_string_pretty(&shape).unwrap();
        let back: Shape = toml::from_str(&text).unwrap();
        assert_eq!(back.tables[1].columns[0].top.len(), 2, "{text}");
    }
}
