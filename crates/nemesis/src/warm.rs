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
use coldswap_db::status::{self, Task};
use coldswap_db::{Cluster, Flavor};
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

/// One of the buffer pool's two tasks, read through its status variable.
#[derive(Clone, Copy)]
enum PoolTask {
    Load,
    Dump,
}

impl PoolTask {
    fn var(self) -> &'static str {
        match self {
            PoolTask::Load => "Innodb_buffer_pool_load_status",
            PoolTask::Dump => "Innodb_buffer_pool_dump_status",
        }
    }
    fn now_var(self) -> &'static str {
        match self {
            PoolTask::Load => "innodb_buffer_pool_load_now",
            PoolTask::Dump => "innodb_buffer_pool_dump_now",
        }
    }
    fn word(self) -> &'static str {
        match self {
            PoolTask::Load => "load",
            PoolTask::Dump => "dump",
        }
    }
    async fn read(self, c: &mut sqlx::MySqlConnection, flavor: Flavor) -> Result<(Task, String)> {
        let text = status_var(c, self.var()).await?;
        let t = match self {
            PoolTask::Load => status::buffer_pool_load(flavor, &text),
            PoolTask::Dump => status::buffer_pool_dump(flavor, &text),
        };
        Ok((t, text))
    }
}

/// How long a task that was asked for may show no sign of having started.
const START_WITHIN: Duration = Duration::from_secs(60);
/// How long one may show no change of status while it runs (MariaDB
/// reports no page counts, so there the whole load must fit).
const STALL_WITHIN: Duration = Duration::from_secs(600);

/// Run one buffer-pool load or dump on `node` and wait for its completion.
///
/// Waits only for what runs: a task of the same kind already running is
/// let finish first (the server ignores a second request meanwhile); a
/// status that says not started, completed or failed is not waited on. Ours
/// is done when the status is a completion other than the last one seen:
/// a completion's timestamp has second precision, so a request comes a
/// second after the previous completion at least.
async fn run_pool_task(cluster: &Cluster, node: usize, task: PoolTask) -> Result<()> {
    let name = cluster.node(node).name.clone();
    let flavor = cluster.node(node).flavor();
    let mut c = cluster.admin(node).await?;
    let mut before = wait_while_running(&mut c, flavor, task, &name).await?;
    if matches!(before, Task::Completed { .. }) {
        tokio::time::sleep(Duration::from_millis(1100)).await;
        before = task.read(&mut c, flavor).await?.0;
    }
    sql::exec(&mut c, &format!("SET GLOBAL {} = ON", task.now_var())).await?;
    let asked = Instant::now();
    let mut seen_running = false;
    let mut last_change = Instant::now();
    let mut last = before.clone();
    loop {
        let (st, text) = task.read(&mut c, flavor).await?;
        if st != last {
            last_change = Instant::now();
            last = st.clone();
        }
        match &st {
            Task::Completed { .. } if st != before => break,
            Task::Failed(msg) if st != before || seen_running => {
                bail!("buffer pool {} on {name} failed: {msg}", task.word())
            }
            Task::Unrecognised(_) => {
                bail!("buffer pool {} on {name}: unrecognised status '{text}'", task.word())
            }
            Task::Running { .. } => seen_running = true,
            _ => {}
        }
        if !seen_running && asked.elapsed() > START_WITHIN {
            bail!(
                "buffer pool {} on {name} did not start within {} s: the status still says '{text}'",
                task.word(),
                START_WITHIN.as_secs()
            );
        }
        if seen_running && last_change.elapsed() > STALL_WITHIN {
            bail!(
                "buffer pool {} on {name}: the status did not change for {} s: '{text}'",
                task.word(),
                STALL_WITHIN.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sql::close(c).await;
    Ok(())
}

/// Wait while a task of this kind runs (one the server started itself, or
/// an earlier request); returns the state it ended in. Not running: at once.
async fn wait_while_running(c: &mut sqlx::MySqlConnection, flavor: Flavor, task: PoolTask, name: &str) -> Result<Task> {
    let (mut st, _) = task.read(c, flavor).await?;
    let mut last_change = Instant::now();
    while st.is_running() {
        if last_change.elapsed() > STALL_WITHIN {
            bail!(
                "a buffer pool {} already running on {name}: its status did not change for {} s",
                task.word(),
                STALL_WITHIN.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (next, _) = task.read(c, flavor).await?;
        if next != st {
            last_change = Instant::now();
        }
        st = next;
    }
    Ok(st)
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
    run_pool_task(cluster, src, PoolTask::Dump).await?;
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

/// Page reads a second InnoDB allows a buffer-pool load while the server
/// has other work: both flavors throttle a load to `innodb_io_capacity`
/// reads a second then (default 200). Raised to this for the load, and
/// restored after it, as a DBA warming a promoted replica would.
pub const LOAD_IO_CAPACITY: i64 = 20_000;

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
    // A load already running (the server's own at start) reads the file
    // when it starts: let it end before the list is replaced.
    wait_while_running(&mut d, cluster.node(dst).flavor(), PoolTask::Load, &cluster.node(dst).name).await?;
    cluster
        .files()?
        .write(cluster.node(dst), "ib_buffer_pool", out.as_bytes())
        .await
        .context("writing the buffer pool list")?;
    let cap = sql::query_i64(&mut d, "SELECT @@GLOBAL.innodb_io_capacity").await?;
    let cap_max = sql::query_i64(&mut d, "SELECT @@GLOBAL.innodb_io_capacity_max").await?;
    let raised = cap < LOAD_IO_CAPACITY;
    if raised {
        // The maximum first: io_capacity may not exceed it.
        if cap_max < LOAD_IO_CAPACITY {
            sql::exec(&mut d, &format!("SET GLOBAL innodb_io_capacity_max = {LOAD_IO_CAPACITY}")).await?;
        }
        sql::exec(&mut d, &format!("SET GLOBAL innodb_io_capacity = {LOAD_IO_CAPACITY}")).await?;
    }
    // Twice: a server that has just started may run its own load from
    // this file without its status saying so yet, ignore load_now
    // meanwhile, and its completion reads like ours (seen in CI: the
    // replica had restarted a second before); the second pass comes after
    // any such load and finds our pages mostly in already.
    let mut res = Ok(());
    for _pass in 0..2 {
        res = run_pool_task(cluster, dst, PoolTask::Load).await;
        if res.is_err() {
            break;
        }
    }
    if raised {
        // Back as it was, in the reverse order, whatever the load did.
        let _ = sql::exec(&mut d, &format!("SET GLOBAL innodb_io_capacity = {cap}")).await;
        if cap_max < LOAD_IO_CAPACITY {
            let _ = sql::exec(&mut d, &format!("SET GLOBAL innodb_io_capacity_max = {cap_max}")).await;
        }
    }
    sql::close(d).await;
    res.map(|_| pages)
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
}
