//! Primary and replica consistency, the way pt-table-checksum checks it:
//! each chunk's checksum is computed by a statement-based `REPLACE ...
//! SELECT` on the primary, which the replica re-executes at the same point
//! of the replication stream over its own rows; comparing the two
//! checksum tables afterwards works under live writes. Chunks go at a
//! bounded rate.

use anyhow::{anyhow, Result};
use coldswap_db::Cluster;
use coldswap_sql as sql;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// Primary and replica compared chunk by chunk.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChecksumResult {
    /// Tables checksummed.
    pub tables: usize,
    /// Chunks compared.
    pub chunks: usize,
    /// Rows covered.
    pub rows: u64,
    /// db.table:chunk where primary and replica differ.
    pub mismatched: Vec<String>,
    /// No chunk differs.
    pub consistent: bool,
    /// How long it took.
    pub seconds: f64,
    /// The primary's name.
    pub primary: String,
    /// The replica's name.
    pub replica: String,
}

/// Chunk size, rows (by primary key ranges).
pub const CHUNK: u64 = 10_000;

async fn columns(c: &mut sqlx::MySqlConnection, db: &str, t: &str) -> Result<Vec<String>> {
    let rows = sql::fetch_all(
        c,
        &format!(
            "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = '{db}' AND TABLE_NAME = '{t}' ORDER BY ORDINAL_POSITION"
        ),
    )
    .await?;
    Ok(rows.iter().filter_map(|r| sql::col_text_at(r, 0)).collect())
}

/// The chunk statement (also used by the unit test). `hi` None: the last,
/// open-ended chunk (rows inserted meanwhile are counted on both sides).
pub fn chunk_sql(meta: &str, db: &str, t: &str, cols: &[String], chunk: u64, lo: u64, hi: Option<u64>) -> String {
    // ISNULL() keeps NULL and '' apart, as pt-table-checksum does.
    let list: Vec<String> = cols.iter().map(|c| format!("`{c}`")).collect();
    let nulls: Vec<String> = cols.iter().map(|c| format!("ISNULL(`{c}`)")).collect();
    format!(
        "REPLACE INTO `{meta}`.checksums (db, tbl, chunk, cnt, crc) \
         SELECT '{db}', '{t}', {chunk}, COUNT(*), COALESCE(BIT_XOR(CRC32(CONCAT_WS('#', {}, CONCAT({})))), 0) \
         FROM `{db}`.`{t}` WHERE {}",
        list.join(", "),
        nulls.join(", "),
        match hi {
            Some(hi) => format!("`id` BETWEEN {lo} AND {hi}"),
            None => format!("`id` >= {lo}"),
        }
    )
}

/// Checksum every table of `schemas` on the primary and its replica.
/// `chunks_per_s` bounds the rate.
pub async fn run(cluster: &Cluster, schemas: &[&str], chunks_per_s: f64) -> Result<ChecksumResult> {
    let p = cluster.primary_index()?;
    let r = cluster.replica_index()?;
    let pair = Pair {
        primary: cluster.admin_options(p),
        replica: cluster.admin_options(r),
        names: (cluster.node(p).name.clone(), cluster.node(r).name.clone()),
        meta: "coldswap_meta".into(),
    };
    run_on(&pair, schemas, chunks_per_s, async {
        cluster.verify_replication(Duration::from_secs(600)).await.map_err(anyhow::Error::from)
    })
    .await
}

/// A primary and its replica as [`run_on`] sees them.
pub struct Pair {
    /// How to log in to the primary.
    pub primary: sqlx::mysql::MySqlConnectOptions,
    /// How to log in to the replica.
    pub replica: sqlx::mysql::MySqlConnectOptions,
    /// Their names in the result.
    pub names: (String, String),
    /// The schema (coldswap's own) that holds the `checksums` table.
    pub meta: String,
}

/// Checksum every table of `schemas` on any primary and replica;
/// `caught_up` resolves once the replica has applied what the primary
/// wrote so far (run after the last chunk).
pub async fn run_on(
    pair: &Pair,
    schemas: &[&str],
    chunks_per_s: f64,
    caught_up: impl std::future::Future<Output = Result<()>>,
) -> Result<ChecksumResult> {
    let t0 = Instant::now();
    let meta = pair.meta.as_str();
    let ten = Duration::from_secs(10);
    let mut pc = sql::connect(&pair.primary, ten).await?;
    sql::exec(&mut pc, &format!("CREATE DATABASE IF NOT EXISTS `{meta}`")).await?;
    sql::exec(
        &mut pc,
        &format!("CREATE TABLE IF NOT EXISTS `{meta}`.checksums (db VARCHAR(64) NOT NULL, tbl VARCHAR(64) NOT NULL, \
         chunk INT NOT NULL, cnt BIGINT NOT NULL, crc BIGINT UNSIGNED NOT NULL, PRIMARY KEY (db, tbl, chunk)) ENGINE=InnoDB"),
    )
    .await?;
    sql::exec(&mut pc, &format!("TRUNCATE TABLE `{meta}`.checksums")).await?;
    // The replica must compute its own checksum: replicate the statement.
    sql::exec(&mut pc, "SET SESSION binlog_format = 'STATEMENT'").await?;
    sql::exec(&mut pc, "SET SESSION transaction_isolation = 'REPEATABLE-READ'").await.ok();
    let gap = Duration::from_secs_f64(1.0 / chunks_per_s.max(0.1));
    let mut tables = 0;
    let mut chunks = 0;
    let mut rows_total = 0u64;
    for db in schemas {
        let names = sql::fetch_all(
            &mut pc,
            &format!("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = '{db}' AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME"),
        )
        .await?;
        for n in names {
            let t = sql::col_text_at(&n, 0).unwrap_or_default();
            let cols = columns(&mut pc, db, &t).await?;
            if !cols.iter().any(|c| c == "id") {
                continue;
            }
            tables += 1;
            // Walk the primary key in chunks of CHUNK rows (ids may be sparse).
            let mut lo =
                match sql::query_text(&mut pc, &format!("SELECT CAST(MIN(id) AS CHAR) FROM `{db}`.`{t}`")).await? {
                    Some(v) => v.parse::<u64>().unwrap_or(0),
                    None => 0,
                };
            let mut chunk = 0u64;
            loop {
                let hi = sql::query_text(
                    &mut pc,
                    &format!(
                        "SELECT CAST(id AS CHAR) FROM `{db}`.`{t}` WHERE id >= {lo} ORDER BY id LIMIT 1 OFFSET {}",
                        CHUNK - 1
                    ),
                )
                .await?
                .and_then(|v| v.parse::<u64>().ok());
                let started = Instant::now();
                sql::exec(&mut pc, &chunk_sql(meta, db, &t, &cols, chunk, lo, hi)).await?;
                chunks += 1;
                chunk += 1;
                let spent = started.elapsed();
                if spent < gap {
                    tokio::time::sleep(gap - spent).await;
                }
                match hi {
                    Some(h) => lo = h + 1,
                    None => break,
                }
            }
            rows_total += sql::query_i64(
                &mut pc,
                &format!("SELECT COALESCE(SUM(cnt), 0) FROM `{meta}`.checksums WHERE db = '{db}' AND tbl = '{t}'"),
            )
            .await
            .unwrap_or(0) as u64;
        }
    }
    sql::close(pc).await;
    // Let the replica finish its own checksums.
    caught_up.await.map_err(|e| anyhow!("the replica did not apply the checksum statements: {e:#}"))?;
    let read = |rows: Vec<sqlx::mysql::MySqlRow>| -> std::collections::BTreeMap<String, (String, String)> {
        rows.iter()
            .map(|r| {
                let f = |i| sql::col_text_at(r, i).unwrap_or_default();
                (format!("{}.{}:{}", f(0), f(1), f(2)), (f(3), f(4)))
            })
            .collect()
    };
    let q = format!("SELECT db, tbl, chunk, cnt, crc FROM `{meta}`.checksums ORDER BY db, tbl, chunk");
    let q = q.as_str();
    let mut pc = sql::connect(&pair.primary, ten).await?;
    let on_p = read(sql::fetch_all(&mut pc, q).await?);
    sql::close(pc).await;
    let mut rc = sql::connect(&pair.replica, ten).await?;
    let on_r = read(sql::fetch_all(&mut rc, q).await?);
    sql::close(rc).await;
    let mut mismatched: Vec<String> =
        on_p.iter().filter(|(k, v)| on_r.get(*k) != Some(v)).map(|(k, _)| k.clone()).collect();
    mismatched.extend(on_r.keys().filter(|k| !on_p.contains_key(*k)).cloned());
    Ok(ChecksumResult {
        tables,
        chunks,
        rows: rows_total,
        consistent: mismatched.is_empty(),
        mismatched,
        seconds: t0.elapsed().as_secs_f64(),
        primary: pair.names.0.clone(),
        replica: pair.names.1.clone(),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn chunk_statement() {
        let s =
            super::chunk_sql("coldswap_meta", "api", "jobs", &["id".into(), "status".into()], 3, 30000, Some(39999));
        assert_eq!(
            s,
            "REPLACE INTO `coldswap_meta`.checksums (db, tbl, chunk, cnt, crc) SELECT 'api', 'jobs', 3, COUNT(*), \
             COALESCE(BIT_XOR(CRC32(CONCAT_WS('#', `id`, `status`, CONCAT(ISNULL(`id`), ISNULL(`status`))))), 0) \
             FROM `api`.`jobs` WHERE `id` BETWEEN 30000 AND 39999"
        );
        assert!(super::chunk_sql("m", "a", "t", &["id".into()], 0, 5, None).ends_with("WHERE `id` >= 5"));
    }
}
