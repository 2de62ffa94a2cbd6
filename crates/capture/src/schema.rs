//! A live database's shape, read for `coldswap schema import`: table
//! definitions, exact row counts, indexes, and per column a summary of a
//! bounded sample (at most `sample_rows` rows per table, read as index
//! range probes spread over the primary key). The summary keeps the type,
//! the share of NULLs, the range, the mean length, and for key and status
//! columns their most frequent values with their shares; no row is kept.

use anyhow::{anyhow, bail, Result};
use coldswap_dataset::shaped::{lit, ColumnShape, Shape, TableShape, TopValue};
use coldswap_sql as sql;
use sqlx::mysql::MySqlConnection;
use std::collections::{BTreeMap, HashMap};

/// What to read.
#[derive(Debug, Clone)]
pub struct SchemaOptions {
    /// The database.
    pub database: String,
    /// Only these tables (default: every base table of the database).
    pub tables: Option<Vec<String>>,
    /// Rows sampled per table, at most.
    pub sample_rows: usize,
    /// Frequent values kept per column, at most.
    pub max_top: usize,
}

fn ident(s: &str) -> String {
    format!("`{}`", s.replace('`', "``"))
}

fn class_of(data_type: &str) -> &'static str {
    match data_type.to_ascii_lowercase().as_str() {
        "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint" => "int",
        "decimal" | "numeric" | "float" | "double" | "real" => "decimal",
        "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" | "enum" | "set" => "string",
        "datetime" | "timestamp" => "datetime",
        "date" => "date",
        _ => "other",
    }
}

/// Remove `AUTO_INCREMENT=n` from a table's options (the seed numbers its rows).
pub fn strip_auto_increment(ddl: &str) -> String {
    let mut out = String::with_capacity(ddl.len());
    let mut rest = ddl;
    while let Some(i) = rest.find(" AUTO_INCREMENT=") {
        out.push_str(&rest[..i]);
        let tail = &rest[i + " AUTO_INCREMENT=".len()..];
        let digits = tail.find(|c: char| !c.is_ascii_digit()).unwrap_or(tail.len());
        rest = &tail[digits..];
    }
    out.push_str(rest);
    out
}

/// Read a database's shape. Returns it with its DDL (schema.sql's text).
pub async fn read(conn: &mut MySqlConnection, source: &str, opts: &SchemaOptions) -> Result<(Shape, String)> {
    let db = &opts.database;
    let rows = sql::fetch_all(
        conn,
        &format!(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = {} AND TABLE_TYPE = 'BASE TABLE' \
             ORDER BY TABLE_NAME",
            lit(db)
        ),
    )
    .await?;
    let all: Vec<String> = rows.iter().filter_map(|r| sql::col_text_at(r, 0)).collect();
    if all.is_empty() {
        bail!("{source} has no tables in database {db}");
    }
    let names: Vec<String> = match &opts.tables {
        Some(want) => {
            for w in want {
                if !all.contains(w) {
                    bail!("{source} has no table {db}.{w}");
                }
            }
            all.iter().filter(|t| want.contains(t)).cloned().collect()
        }
        None => all.clone(),
    };
    // Foreign keys, where declared.
    let fks = sql::fetch_all(
        conn,
        &format!(
            "SELECT TABLE_NAME, COLUMN_NAME, REFERENCED_TABLE_NAME FROM information_schema.KEY_COLUMN_USAGE \
             WHERE TABLE_SCHEMA = {0} AND REFERENCED_TABLE_SCHEMA = {0} AND REFERENCED_TABLE_NAME IS NOT NULL",
            lit(db)
        ),
    )
    .await?;
    let mut fk: HashMap<(String, String), String> = HashMap::new();
    for r in fks {
        if let (Some(t), Some(c), Some(p)) = (sql::col_text_at(&r, 0), sql::col_text_at(&r, 1), sql::col_text_at(&r, 2))
        {
            fk.insert((t, c), p);
        }
    }
    let mut ddl = String::new();
    let mut tables = Vec::new();
    for t in &names {
        let full = format!("{}.{}", ident(db), ident(t));
        let create = sql::fetch_all(conn, &format!("SHOW CREATE TABLE {full}")).await?;
        let text =
            create.first().and_then(|r| sql::col_text_at(r, 1)).ok_or_else(|| anyhow!("no definition of {db}.{t}"))?;
        ddl.push_str(&strip_auto_increment(&text));
        ddl.push_str(";\n\n");
        let count = sql::query_i64(conn, &format!("SELECT COUNT(*) FROM {full}")).await? as u64;
        let cols = sql::fetch_all(
            conn,
            &format!(
                "SELECT COLUMN_NAME, DATA_TYPE, CHARACTER_MAXIMUM_LENGTH, IS_NULLABLE, COLUMN_DEFAULT IS NOT NULL, EXTRA \
                 FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = {} AND TABLE_NAME = {} ORDER BY ORDINAL_POSITION",
                lit(db),
                lit(t)
            ),
        )
        .await?;
        let stats = sql::fetch_all(
            conn,
            &format!(
                "SELECT INDEX_NAME, NON_UNIQUE, COLUMN_NAME FROM information_schema.STATISTICS \
                 WHERE TABLE_SCHEMA = {} AND TABLE_NAME = {} ORDER BY INDEX_NAME, SEQ_IN_INDEX",
                lit(db),
                lit(t)
            ),
        )
        .await?;
        let mut idx: BTreeMap<String, (bool, Vec<String>)> = BTreeMap::new();
        for r in stats {
            let name = sql::col_text_at(&r, 0).unwrap_or_default();
            let unique = sql::col_text_at(&r, 1).as_deref() == Some("0");
            let col = sql::col_text_at(&r, 2).unwrap_or_default();
            idx.entry(name).or_insert((unique, Vec::new())).1.push(col);
        }
        let pk: Vec<String> = idx.get("PRIMARY").map(|x| x.1.clone()).unwrap_or_default();
        let mut columns: Vec<ColumnShape> = Vec::new();
        for r in &cols {
            let name = sql::col_text_at(r, 0).unwrap_or_default();
            let class = class_of(&sql::col_text_at(r, 1).unwrap_or_default()).to_string();
            let nullable = sql::col_text_at(r, 3).as_deref() == Some("YES");
            let has_default = sql::col_text_at(r, 4).as_deref() == Some("1");
            let extra = sql::col_text_at(r, 5).unwrap_or_default().to_ascii_uppercase();
            // Alone in a unique index, or last in one of several columns
            // (its values then carry the row number, so the rows stay unique).
            let unique_alone = idx.iter().any(|(n, (u, c))| *u && n != "PRIMARY" && c.last() == Some(&name));
            let key = class == "int" && pk.len() == 1 && pk[0] == name;
            let skip = extra.contains("GENERATED") || (class == "other" && (nullable || has_default));
            let refers_to = if class != "int" || key {
                None
            } else if let Some(p) = fk.get(&(t.clone(), name.clone())) {
                Some(p.clone())
            } else {
                name.strip_suffix("_id").and_then(|stem| {
                    [
                        stem.to_string(),
                        format!("{stem}s"),
                        format!("{stem}es"),
                        format!("{}ies", stem.trim_end_matches('y')),
                    ]
                    .into_iter()
                    .find(|c| all.contains(c))
                })
            };
            columns.push(ColumnShape {
                name,
                class,
                max_len: sql::col_text_at(r, 2).and_then(|v| v.parse().ok()),
                key,
                unique: unique_alone && !key,
                skip,
                refers_to,
                ..Default::default()
            });
        }
        summarize(conn, &full, &pk, count, &mut columns, opts).await?;
        let indexes =
            idx.iter().map(|(n, (u, c))| format!("{n}({}){}", c.join(", "), if *u { " unique" } else { "" })).collect();
        tables.push(TableShape { name: t.clone(), rows: count, indexes, columns });
    }
    Ok((Shape { source: source.to_string(), database: db.clone(), tables }, ddl))
}

/// Fill in each column's summary from a bounded sample of the table.
async fn summarize(
    conn: &mut MySqlConnection,
    full: &str,
    pk: &[String],
    count: u64,
    columns: &mut [ColumnShape],
    opts: &SchemaOptions,
) -> Result<()> {
    if count == 0 || columns.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = columns.iter().map(|c| format!("CAST({} AS CHAR)", ident(&c.name))).collect();
    let select = list.join(", ");
    let mut sample: Vec<Vec<Option<String>>> = Vec::new();
    let probes = 20usize;
    let per = (opts.sample_rows / probes).max(1);
    let int_pk = pk.len() == 1 && columns.iter().any(|c| c.key);
    if int_pk && count as usize > opts.sample_rows {
        // Index range probes spread over the key: no full scan.
        let k = ident(&pk[0]);
        let lo = sql::query_i64(conn, &format!("SELECT MIN({k}) FROM {full}")).await?;
        let hi = sql::query_i64(conn, &format!("SELECT MAX({k}) FROM {full}")).await?;
        for i in 0..probes {
            let at = lo + ((hi - lo) as f64 * i as f64 / probes as f64) as i64;
            let rows = sql::fetch_all(
                conn,
                &format!("SELECT {select} FROM {full} WHERE {k} >= {at} ORDER BY {k} LIMIT {per}"),
            )
            .await?;
            sample.extend(rows.iter().map(|r| (0..columns.len()).map(|j| sql::col_text_at(r, j)).collect()));
        }
    } else {
        let rows = sql::fetch_all(conn, &format!("SELECT {select} FROM {full} LIMIT {}", opts.sample_rows)).await?;
        sample.extend(rows.iter().map(|r| (0..columns.len()).map(|j| sql::col_text_at(r, j)).collect()));
    }
    for (j, c) in columns.iter_mut().enumerate() {
        let vals: Vec<&str> = sample.iter().filter_map(|r| r[j].as_deref()).collect();
        c.null_share = if sample.is_empty() { 0.0 } else { 1.0 - vals.len() as f64 / sample.len() as f64 };
        if vals.is_empty() {
            continue;
        }
        match c.class.as_str() {
            "int" | "decimal" => {
                let nums: Vec<f64> = vals.iter().filter_map(|v| v.parse::<f64>().ok()).collect();
                let lo = nums.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = nums.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                if lo.is_finite() {
                    c.min = Some(trim_num(lo));
                    c.max = Some(trim_num(hi));
                }
            }
            "datetime" | "date" => {
                c.min = vals.iter().min().map(|s| s.to_string());
                c.max = vals.iter().max().map(|s| s.to_string());
            }
            _ => {}
        }
        if matches!(c.class.as_str(), "string" | "other") {
            c.avg_len = Some(vals.iter().map(|v| v.chars().count()).sum::<usize>() as f64 / vals.len() as f64);
        }
        if c.key || c.unique {
            continue;
        }
        let mut freq: HashMap<&str, u64> = HashMap::new();
        for v in &vals {
            *freq.entry(v).or_insert(0) += 1;
        }
        let repeated = (freq.len() as f64) <= 0.5 * vals.len() as f64;
        let keep = match c.class.as_str() {
            // key-like integers: their hot values
            "int" => repeated,
            // status-like words: their whole domain
            "string" => freq.len() <= opts.max_top,
            _ => false,
        };
        if keep {
            let mut f: Vec<(&str, u64)> = freq.into_iter().filter(|(_, n)| *n >= 2 || c.class == "string").collect();
            f.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
            c.top = f
                .into_iter()
                .take(opts.max_top)
                .map(|(v, n)| TopValue { value: v.to_string(), share: n as f64 / vals.len() as f64 })
                .collect();
        }
    }
    Ok(())
}

fn trim_num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 9e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn auto_increment_goes() {
        assert_eq!(
            super::strip_auto_increment(
                "CREATE TABLE t (id int) ENGINE=InnoDB AUTO_INCREMENT=2001 DEFAULT CHARSET=utf8mb4"
            ),
            "CREATE TABLE t (id int) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
        );
        assert_eq!(super::class_of("BIGINT"), "int");
        assert_eq!(super::class_of("varchar"), "string");
        assert_eq!(super::class_of("json"), "other");
    }
}
