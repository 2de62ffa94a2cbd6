//! Warming techniques against the first-touch penalty, each timed.
//!
//! * `buffer-pool`: dump the warm server's buffer pool (all of it by
//!   default, or the share `WarmInputs::dump_pct` says), hand the list to the cold server
//!   (space ids translated by table name) and load it. The load pays the
//!   first touches, up front and in InnoDB's read-ahead order.
//! * `volume-read`: read every datadir file in parallel through the same
//!   emulated volume, as `fio`/`dd` initialisation does.
//! * `prefetch`: scan the tables and indexes the mix touches.
//! * `none`.

use anyhow::{anyhow, bail, Context, Result};
use coldswap_db::Cluster;
use coldswap_sql as sql;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::cold::{self, Volume};

/// A way to warm a cold node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Technique {
    /// No warm-up: the load warms it.
    None,
    /// Dump the old primary's buffer pool and load it into the new one.
    BufferPool,
    /// Read every datadir file through the emulated volume.
    VolumeRead,
    /// Scan every index of the tables the mix touches.
    Prefetch,
}

impl std::str::FromStr for Technique {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Technique> {
        Ok(match s {
            "none" => Technique::None,
            "buffer-pool" | "bufferpool" | "buffer_pool" => Technique::BufferPool,
            "volume-read" | "full-volume-read" | "volume_read" => Technique::VolumeRead,
            "prefetch" | "targeted-prefetch" => Technique::Prefetch,
            other => bail!("unknown warm-up technique '{other}' (none, buffer-pool, volume-read, prefetch)"),
        })
    }
}

impl std::fmt::Display for Technique {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Technique::None => "none",
            Technique::BufferPool => "buffer-pool",
            Technique::VolumeRead => "volume-read",
            Technique::Prefetch => "prefetch",
        })
    }
}

/// What a warm-up did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WarmReport {
    /// The technique.
    pub technique: Technique,
    /// The node warmed.
    pub node: String,
    /// How long it took.
    pub seconds: f64,
    /// Blocks of the volume fetched while warming.
    pub blocks_fetched: u64,
    /// Pages loaded (buffer-pool), bytes read (volume-read), index scans (prefetch).
    pub detail: String,
}

/// What a warm-up needs beyond the node.
#[derive(Debug, Clone, Default)]
pub struct WarmInputs {
    /// Node whose buffer pool is dumped for `buffer-pool` (the old primary).
    pub dump_from: Option<usize>,
    /// A page list taken earlier, loaded instead of a dump of `dump_from`
    /// (a node warmed with its own pool from before its restore).
    pub dump: Option<std::sync::Arc<PoolDump>>,
    /// (database, table) pairs the mix touches, for `prefetch`.
    pub tables: Vec<(String, String)>,
    /// Parallel readers for `volume-read` and `prefetch`.
    pub parallel: usize,
    /// Share of the source's buffer pool dumped for `buffer-pool`, percent
    /// (InnoDB's `innodb_buffer_pool_dump_pct`: the server default is 25;
    /// 0 here means 100).
    pub dump_pct: u8,
}

/// Warm node `node` with a technique, timed; blocks it fetched from the emulated volume.
pub async fn warm(cluster: &Cluster, node: usize, technique: Technique, inputs: &WarmInputs) -> Result<WarmReport> {
    let vol = if cold::is_cold(cluster, node) { Volume::attach(&cold::state_dir_of(cluster, node)).ok() } else { None };
    let before = vol.as_ref().map(|v| v.counters()).unwrap_or_default();
    let t = Instant::now();
    let detail = match technique {
        Technique::None => "no warm-up".to_string(),
        Technique::BufferPool => {
            let pct = if inputs.dump_pct == 0 { 100 } else { inputs.dump_pct.min(100) };
            let dump = match &inputs.dump {
                Some(d) => d.clone(),
                None => {
                    let src =
                        inputs.dump_from.ok_or_else(|| anyhow!("buffer-pool warm-up needs a node to dump from"))?;
                    std::sync::Arc::new(buffer_pool_dump(cluster, src, pct).await?)
                }
            };
            let pages = buffer_pool_load(cluster, node, &dump).await?;
            format!("{pages} pages loaded from {}'s buffer pool dump ({pct} % of it)", dump.from)
        }
        Technique::VolumeRead => {
            let (files, bytes) = volume_read(cluster, node, inputs.parallel.max(1)).await?;
            format!("{files} files, {:.0} MiB read with {} readers", bytes as f64 / 1048576.0, inputs.parallel.max(1))
        }
        Technique::Prefetch => {
            let n = prefetch(cluster, node, &inputs.tables, inputs.parallel.max(1)).await?;
            format!("{n} index scans over {} tables", inputs.tables.len())
        }
    };
    let seconds = t.elapsed().as_secs_f64();
    let after = vol.as_ref().map(|v| v.counters()).unwrap_or_default();
    Ok(WarmReport {
        technique,
        node: cluster.node(node).name.clone(),
        seconds,
        blocks_fetched: after.since(&before).cold_blocks,
        detail,
    })
}

async fn status_var(c: &mut sqlx::MySqlConnection, name: &str) -> Result<String> {
    let rows = sql::fetch_all(c, &format!("SHOW GLOBAL STATUS LIKE '{name}'")).await?;
    Ok(rows.first().and_then(|r| sql::col_text_at(r, 1)).unwrap_or_default())
}

/// Dump `dump_pct` percent of `src`'s buffer pool (its most recently used
/// pages, as InnoDB dumps), translate it to `dst`'s tablespace ids, load it
/// into `dst`. Returns the number of pages in the list.
pub async fn buffer_pool_transfer(cluster: &Cluster, src: usize, dst: usize, dump_pct: u8) -> Result<usize> {
    let dump = buffer_pool_dump(cluster, src, dump_pct).await?;
    buffer_pool_load(cluster, dst, &dump).await
}

/// A buffer pool's page list, by table name (so it loads into any server
/// holding the same tables): (tablespace name, or None for the system
/// tablespace; page number).
#[derive(Debug, Clone, Default)]
pub struct PoolDump {
    /// The server it was taken from.
    pub from: String,
    /// The pages, most recently used first.
    pub pages: Vec<(Option<String>, u64)>,
}

/// Dump `dump_pct` percent of `src`'s buffer pool (as InnoDB does).
pub async fn buffer_pool_dump(cluster: &Cluster, src: usize, dump_pct: u8) -> Result<PoolDump> {
    let mut s = cluster.admin(src).await?;
    sql::exec(&mut s, &format!("SET GLOBAL innodb_buffer_pool_dump_pct = {}", dump_pct.clamp(1, 100))).await?;
    // As for the load below: a completion other than the last one seen.
    let before = status_var(&mut s, "Innodb_buffer_pool_dump_status").await?;
    if before.contains("completed") {
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    sql::exec(&mut s, "SET GLOBAL innodb_buffer_pool_dump_now = ON").await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let st = status_var(&mut s, "Innodb_buffer_pool_dump_status").await?;
        if st != before && st.contains("completed") {
            break;
        }
        if Instant::now() > deadline {
            bail!("buffer pool dump on {} did not complete: {st}", cluster.node(src).name);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let src_spaces = sql::innodb_tablespaces(&mut s).await?;
    sql::close(s).await;
    let dump = String::from_utf8_lossy(
        &cluster.files()?.read(cluster.node(src), "ib_buffer_pool").await.context("reading the buffer pool dump")?,
    )
    .to_string();
    let mut pages = Vec::new();
    for line in dump.lines() {
        let Some((sp, pg)) = line.split_once(',') else { continue };
        let (Ok(sp), Ok(pg)) = (sp.trim().parse::<u64>(), pg.trim().parse::<u64>()) else { continue };
        // System tablespace (0) keeps its id; others go by name.
        if sp == 0 {
            pages.push((None, pg));
        } else if let Some(n) = src_spaces.get(&sp) {
            pages.push((Some(n.clone()), pg));
        }
    }
    Ok(PoolDump { from: cluster.node(src).name.clone(), pages })
}

/// Load a page list into `dst`'s buffer pool (tables it lacks are
/// skipped). Returns the number of pages in the list it loaded.
pub async fn buffer_pool_load(cluster: &Cluster, dst: usize, dump: &PoolDump) -> Result<usize> {
    let mut d = cluster.admin(dst).await?;
    let dst_spaces = sql::innodb_tablespaces(&mut d).await?;
    let by_name: HashMap<&str, u64> = dst_spaces.iter().map(|(id, n)| (n.as_str(), *id)).collect();
    let mut out = String::new();
    let mut pages = 0;
    for (name, pg) in &dump.pages {
        let mapped = match name {
            None => Some(0),
            Some(n) => by_name.get(n.as_str()).copied(),
        };
        if let Some(id) = mapped {
            out.push_str(&format!("{id},{pg}\n"));
            pages += 1;
        }
    }
    cluster
        .files()?
        .write(cluster.node(dst), "ib_buffer_pool", out.as_bytes())
        .await
        .context("writing the buffer pool list")?;
    // The status still reports the last load: "Buffer pool(s) load
    // completed at 261130 15:40:00". Ours is done when the status is a
    // completion other than that one, so it starts a second later than the
    // last completion at least (the message has second precision). Twice:
    // a server that has just started runs its own load from this file,
    // ignores load_now meanwhile, and its completion reads like ours (seen
    // in CI: the replica had restarted a second before); the second pass
    // comes after any such load and finds our pages mostly in already.
    for _pass in 0..2 {
        // A load still running would ignore ours: wait for it to end first.
        let waited = Instant::now();
        let mut before = status_var(&mut d, "Innodb_buffer_pool_load_status").await?;
        while (before.starts_with("Loading") || before.starts_with("Loaded") && !is_full(&before))
            && waited.elapsed() < Duration::from_secs(600)
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
            before = status_var(&mut d, "Innodb_buffer_pool_load_status").await?;
        }
        if before.contains("completed") {
            tokio::time::sleep(Duration::from_millis(1100)).await;
        }
        sql::exec(&mut d, "SET GLOBAL innodb_buffer_pool_load_now = ON").await?;
        let started = Instant::now();
        let deadline = started + Duration::from_secs(3600);
        loop {
            let st = status_var(&mut d, "Innodb_buffer_pool_load_status").await?;
            if st != before && (st.contains("completed") || st.contains("Loaded") && st.contains('/') && is_full(&st)) {
                break;
            }
            if st == before && started.elapsed() > Duration::from_secs(60) {
                bail!(
                    "buffer pool load on {} did not start within 60 s: the status still says '{st}'",
                    cluster.node(dst).name
                );
            }
            if st.contains("rror") || st.contains("aborted") {
                bail!("buffer pool load on {} failed: {st}", cluster.node(dst).name);
            }
            if Instant::now() > deadline {
                bail!("buffer pool load on {} did not complete within an hour: {st}", cluster.node(dst).name);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    sql::close(d).await;
    Ok(pages)
}

/// "Loaded 5/5 pages" style status: done when both numbers agree.
fn is_full(st: &str) -> bool {
    st.split_whitespace()
        .find(|w| w.contains('/'))
        .and_then(|w| w.split_once('/'))
        .map(|(a, b)| a == b.trim_end_matches(|c: char| !c.is_ascii_digit()))
        .unwrap_or(false)
}

fn volread_bin() -> Result<PathBuf> {
    let lib = cold::preload_lib()?;
    let p = lib.with_file_name("coldswap-volread");
    if p.is_file() {
        Ok(p)
    } else {
        bail!("coldswap-volread is missing next to {} (build the workspace)", lib.display())
    }
}

/// Read the whole datadir through the node's emulated volume.
pub async fn volume_read(cluster: &Cluster, node: usize, parallel: usize) -> Result<(u64, u64)> {
    let bin = volread_bin()?;
    let n = cluster.node(node);
    let files = cluster.files()?;
    let dir = files.datadir(n).display().to_string();
    let par = parallel.to_string();
    // The same emulator environment as the server: same state, same volume
    // (run inside the node's container on the container backend).
    let out = files
        .exec(n, &bin.display().to_string(), &[&dir, &par], &n.extras.env, None)
        .await
        .context("cannot run coldswap-volread")?;
    if !out.status.success() {
        bail!("volume read failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut it = text.split_whitespace();
    let files = it.next().and_then(|x| x.parse().ok()).unwrap_or(0);
    let bytes = it.next().and_then(|x| x.parse().ok()).unwrap_or(0);
    Ok((files, bytes))
}

/// Scan every index of the given tables, `parallel` at a time.
pub async fn prefetch(cluster: &Cluster, node: usize, tables: &[(String, String)], parallel: usize) -> Result<usize> {
    let mut c = cluster.admin(node).await?;
    let mut scans = Vec::new();
    for (db, t) in tables {
        let rows = sql::fetch_all(
            &mut c,
            &format!(
                "SELECT DISTINCT INDEX_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = '{}' AND TABLE_NAME = '{}'",
                db.replace('\'', "''"),
                t.replace('\'', "''")
            ),
        )
        .await?;
        for r in rows {
            if let Some(idx) = sql::col_text_at(&r, 0) {
                scans.push(format!("SELECT COUNT(*) FROM `{db}`.`{t}` FORCE INDEX (`{idx}`)"));
            }
        }
    }
    sql::close(c).await;
    let n = scans.len();
    let queue = std::sync::Arc::new(tokio::sync::Mutex::new(scans));
    let mut tasks = Vec::new();
    for _ in 0..parallel.max(1) {
        let opts = cluster.admin_options(node);
        let q = queue.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = sql::connect(&opts, Duration::from_secs(10)).await?;
            loop {
                let next = q.lock().await.pop();
                let Some(s) = next else { break };
                sql::exec(&mut c, &s).await?;
            }
            sql::close(c).await;
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn techniques_parse() {
        assert_eq!("buffer-pool".parse::<Technique>().unwrap(), Technique::BufferPool);
        assert_eq!("volume-read".parse::<Technique>().unwrap(), Technique::VolumeRead);
        assert_eq!("prefetch".parse::<Technique>().unwrap(), Technique::Prefetch);
        assert!("magic".parse::<Technique>().unwrap_err().to_string().contains("unknown warm-up technique"));
    }

    #[test]
    fn load_status_parsing() {
        assert!(is_full("Loaded 5/5 pages"));
        assert!(!is_full("Loaded 3/5 pages"));
    }
}
