//! The drill on servers the user runs (`--backend external`): their
//! primary and replica, named in an external config, upgraded and promoted
//! by their own hooks while the load runs.
//!
//! What differs from a drill on coldswap's own cluster, and why:
//! * nothing is started, seeded or stopped: the mix runs on the data they
//!   hold, and both servers are left running whatever happens;
//! * their storage is what it is: no cold volume is emulated and no
//!   warm-up technique is applied (a replica restored from a snapshot there
//!   is really cold);
//! * statement digests are read as differences of their
//!   performance_schema totals (nothing is reset);
//! * coldswap writes only to a schema of its own (`schema`, default
//!   `coldswap_drill`: the write ledger and the checksums), created before
//!   the load and dropped after it; the mix may write elsewhere only with
//!   `allow_writes = true`.

use anyhow::{bail, Context, Result};
use coldswap_checker::report::Step;
use coldswap_checker::{checksum, digests, gate};
use coldswap_client::{Endpoint, Mix};
use coldswap_db::external::External;
use coldswap_signals as signals;
use coldswap_sql as sql;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::invariants::missing;
use crate::state::{cold_phase_wait, lint_and_learn, load_config, phase_log, sleep_or_signal, step, State, Stopped};

/// The user's servers during a drill, and what coldswap put on them.
pub(crate) struct Target {
    pub(crate) ext: External,
    /// coldswap's schema exists on the servers (it must be dropped).
    pub(crate) schema_created: bool,
    /// The promote hook succeeded: the replica is the primary now.
    promoted: bool,
    ledger: Option<LedgerWriter>,
    /// The ledger writer's acknowledged writes, once it stopped.
    acked: Vec<(u64, f64)>,
    /// Digest totals at the start of the current phase (and on which server).
    totals: Option<(bool, digests::Totals)>,
    /// The promote hook's run, seconds since the load started.
    pub(crate) window: Option<(f64, f64)>,
}

impl Target {
    /// Read and check the external config (no server is contacted).
    pub(crate) fn load(path: &std::path::Path, allow_remote: bool) -> Result<Target> {
        Ok(Target {
            ext: External::load(path, allow_remote)?,
            schema_created: false,
            promoted: false,
            ledger: None,
            acked: Vec::new(),
            totals: None,
            window: None,
        })
    }
}

/// Statements of the mix that may change data (anything but SELECT, WITH,
/// SHOW, EXPLAIN, DESCRIBE), as `name: first keyword`, for the jobs that run.
pub(crate) fn writes(mix: &Mix, background: Option<&[String]>) -> Vec<String> {
    let reads = ["SELECT", "WITH", "SHOW", "EXPLAIN", "DESCRIBE", "DESC"];
    let runs = |name: &str, enabled: bool| match background {
        Some(list) => list.iter().any(|b| b == name),
        None => enabled,
    };
    let txns = mix.transactions.iter().map(|t| (&t.name, &t.steps));
    let bg = mix.background.iter().filter(|b| runs(&b.name, b.enabled)).map(|b| (&b.name, &b.steps));
    let mut out = Vec::new();
    for (name, steps) in txns.chain(bg) {
        for s in steps {
            let k = coldswap_client::mix::first_keyword(&s.sql);
            if !reads.contains(&k.as_str()) {
                out.push(format!("{name}: {}", if k.is_empty() { "?".to_string() } else { k }));
                break;
            }
        }
    }
    out
}

/// Writes into coldswap's own ledger table through the clients' path, 20
/// a second, refused by a read-only server as an application's writes are
/// (coldswap's user may have the privilege to write through read_only); each acknowledged id is looked up on the new primary after
/// the switchover, and the longest gap between acknowledgements is the
/// write unavailability clients saw.
struct LedgerWriter {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
    /// (id, seconds since the load started) of every acknowledged write.
    acked: Arc<Mutex<Vec<(u64, f64)>>>,
}

const LEDGER_EVERY: Duration = Duration::from_millis(50);

impl LedgerWriter {
    fn start(opts: sqlx::mysql::MySqlConnectOptions, schema: String, recorder: Arc<coldswap_client::Recorder>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let acked: Arc<Mutex<Vec<(u64, f64)>>> = Default::default();
        let (s2, a2) = (stop.clone(), acked.clone());
        let task = tokio::spawn(async move {
            let mut conn: Option<sqlx::MySqlConnection> = None;
            let mut tick = tokio::time::interval(LEDGER_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut id = 0u64;
            while !s2.load(Ordering::SeqCst) {
                tick.tick().await;
                if conn.is_none() {
                    conn = sql::connect(&opts, Duration::from_secs(2)).await.ok();
                }
                let Some(c) = conn.as_mut() else { continue };
                id += 1;
                // As the application's user would: refused by a read-only
                // (fenced) server even when coldswap's user may write there.
                let q = format!(
                    "INSERT INTO `{schema}`.write_ledger (id) SELECT {id} FROM DUAL WHERE @@GLOBAL.read_only = 0"
                );
                match tokio::time::timeout(Duration::from_secs(2), sqlx::Executor::execute(&mut *c, q.as_str())).await {
                    Ok(Ok(r)) if r.rows_affected() == 1 => a2.lock().unwrap().push((id, recorder.elapsed())),
                    Ok(Ok(_)) => {}
                    _ => conn = None,
                }
            }
            if let Some(c) = conn {
                sql::close(c).await;
            }
        });
        LedgerWriter { stop, task, acked }
    }

    async fn stop(self) -> Vec<(u64, f64)> {
        self.stop.store(true, Ordering::SeqCst);
        let _ = tokio::time::timeout(Duration::from_secs(5), self.task).await;
        let v = self.acked.lock().unwrap().clone();
        v
    }
}

/// The longest time between two acknowledged ledger writes that spans
/// any of [from, to]: how long writes through the clients' path stalled.
pub(crate) fn longest_gap(acked: &[(u64, f64)], from: f64, to: f64) -> Option<f64> {
    acked.windows(2).filter(|w| w[1].1 >= from && w[0].1 <= to).map(|w| w[1].1 - w[0].1).max_by(|a, b| a.total_cmp(b))
}

async fn exists(ext: &External, replica: bool, schema: &str) -> Result<Option<Vec<String>>> {
    let mut c = ext.conn(replica).await?;
    let rows = sql::fetch_all(
        &mut c,
        &format!(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = '{schema}' ORDER BY TABLE_NAME"
        ),
    )
    .await?;
    let n = sql::query_i64(
        &mut c,
        &format!("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '{schema}'"),
    )
    .await?;
    sql::close(c).await;
    Ok((n > 0).then(|| rows.iter().filter_map(|r| sql::col_text_at(r, 0)).collect()))
}

const OWN_TABLES: [&str; 2] = ["checksums", "write_ledger"];

/// Create coldswap's schema on the primary (it replicates). One a killed
/// drill left (only coldswap's tables in it) is dropped first; a schema of
/// that name holding anything else is refused.
async fn create_schema(t: &mut Target) -> Result<()> {
    let schema = t.ext.cfg.schema.clone();
    if let Some(tables) = exists(&t.ext, false, &schema).await? {
        if let Some(x) = tables.iter().find(|x| !OWN_TABLES.contains(&x.as_str())) {
            bail!("the primary already has a schema `{schema}` holding `{x}`, which coldswap did not create: set `schema` in the external config to a name no one uses");
        }
        tracing::warn!("dropping `{schema}` on the primary: a drill that was killed left it");
    }
    let mut c = t.ext.conn(false).await?;
    t.schema_created = true;
    sql::exec(&mut c, &format!("DROP DATABASE IF EXISTS `{schema}`")).await?;
    sql::exec(&mut c, &format!("CREATE DATABASE `{schema}`")).await?;
    sql::exec(
        &mut c,
        &format!(
            "CREATE TABLE `{schema}`.write_ledger (id BIGINT UNSIGNED NOT NULL PRIMARY KEY, \
             at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)) ENGINE=InnoDB"
        ),
    )
    .await?;
    sql::close(c).await;
    Ok(())
}

/// Drop coldswap's schema on the server that is primary now; the drop
/// reaches the other server through replication, which is waited for. A
/// server that does not replicate from it keeps its copy, said in the
/// result: dropping it there behind replication's back would break a
/// replication that later resumes (the ledger's writes would find no table).
pub(crate) async fn drop_schema(t: &mut Target) -> String {
    if !t.schema_created {
        return String::new();
    }
    let schema = t.ext.cfg.schema.clone();
    let (now, other) = (t.promoted, !t.promoted);
    let promoted = t.promoted;
    let role = move |replica: bool| match (promoted, replica) {
        (true, true) => "new primary",
        (true, false) => "old primary",
        (false, true) => "replica",
        (false, false) => "primary",
    };
    let dropped: Result<()> = async {
        let mut c = t.ext.conn(now).await?;
        sql::exec(&mut c, &format!("DROP DATABASE IF EXISTS `{schema}`")).await?;
        sql::close(c).await;
        Ok(())
    }
    .await;
    if let Err(e) = dropped {
        return format!("could not drop `{schema}` on the {} ({e:#}): drop it by hand", role(now));
    }
    t.schema_created = false;
    let mut said = format!("dropped `{schema}` on the {}", role(now));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match exists(&t.ext, other, &schema).await {
            Ok(None) => return said,
            Ok(Some(_)) => {}
            Err(e) => {
                said.push_str(&format!("; cannot tell whether the {} still has it ({e:#})", role(other)));
                return said;
            }
        }
        let replicates = match t.ext.conn(other).await {
            Ok(mut c) => {
                let st = match External::dialect(&mut c).await {
                    Ok((d, _)) => coldswap_db::replication::replica_status(&mut c, &d).await.ok().flatten(),
                    Err(_) => None,
                };
                sql::close(c).await;
                st.is_some_and(|s| s.healthy())
            }
            Err(_) => false,
        };
        if !replicates || Instant::now() > deadline {
            said.push_str(&format!(
                "; the {} still has it ({}): replication drops it if it follows the {} again, or drop it there with SET sql_log_bin = 0; DROP DATABASE `{schema}`",
                role(other),
                if replicates { "its replication has not applied the drop within 30 s" } else { "it does not replicate" },
                role(now)
            ));
            return said;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The drill on the user's servers. Steps that fail say which step.
pub(crate) async fn drive(st: &mut State, t: &mut Target) -> Result<()> {
    // The task-queue workload needs its own tables: never run here.
    st.cfg.queue.enabled = false;
    let cfg = st.cfg.clone();
    drive_on(st, t, &cfg).await
}

async fn drive_on(st: &mut State, t: &mut Target, cfg: &crate::DrillConfig) -> Result<()> {
    st.backend = "external".into();
    if cfg.warmup.before_switchover.is_some() {
        bail!("warmup.before_switchover: coldswap applies no warm-up on external servers");
    }
    let w = writes(&st.mix, cfg.load.background.as_deref());
    if !w.is_empty() && !t.ext.cfg.allow_writes {
        bail!(
            "the mix writes ({}{}) and the external config does not say allow_writes = true: without it the drill writes only to its own schema `{}`",
            w.iter().take(3).cloned().collect::<Vec<_>>().join(", "),
            if w.len() > 3 { format!(" and {} more", w.len() - 3) } else { String::new() },
            t.ext.cfg.schema
        );
    }
    let (paddr, raddr) = (t.ext.addr(false), t.ext.addr(true));
    t.ext.app_options(paddr)?; // the load's password is set
                               // 1. Both servers answer, and the replica replicates within the guardrails.
    phase_log("setup", &format!("checking the primary {paddr} and the replica {raddr}"));
    let t0 = Instant::now();
    for s in t.ext.status().await {
        if !s.reachable {
            bail!(
                "checking the servers: cannot reach the {} at {}: {}",
                s.name,
                s.address,
                s.error.as_deref().unwrap_or("no answer")
            );
        }
    }
    t.ext.guard().await.context("checking the servers")?;
    step(&mut st.steps, "check_servers", t0);
    {
        let mut c = t.ext.conn(false).await?;
        let (d, v) = External::dialect(&mut c).await?;
        sql::close(c).await;
        st.from_version = v;
        st.flavor = d.flavor.to_string();
    }
    st.to_version = t.ext.version(true).await.unwrap_or_default();
    phase_log("setup", "no seeding: the mix runs on the data the servers hold");

    // 2. coldswap's own schema, then the load through the clients' path.
    let t0 = Instant::now();
    create_schema(t).await.context("creating coldswap's schema on the primary")?;
    step(&mut st.steps, "create_schema", t0);
    let client_at = match t.ext.client_addr() {
        Some(a) => a,
        None => {
            let ep = Arc::new(Endpoint::start(paddr).await?);
            st.endpoint = Some(ep.clone());
            ep.addr()
        }
    };
    let app = t.ext.app_options(client_at)?;
    let load = Arc::new(
        coldswap_client::run::Load::prepare(st.mix.clone(), app.clone(), load_config(cfg), st.recorder.clone()).await?,
    );
    st.load = Some(load.clone());
    lint_and_learn(st, &t.ext.options(false), &app).await?;
    snapshot(t, &st.mix.database, false).await;
    st.recorder.phase("baseline");
    let l2 = load.clone();
    st.load_task = Some(tokio::spawn(async move { l2.run().await }));
    let admin_at = t.ext.admin_options_at(client_at);
    t.ledger = Some(LedgerWriter::start(admin_at, t.ext.cfg.schema.clone(), st.recorder.clone()));
    phase_log("baseline", &format!("{} s against the primary {paddr}", st.dur.baseline.as_secs()));
    sleep_or_signal(st.dur.baseline).await?;
    phase_digests(st, t, "baseline", false).await;

    // 3. The user's upgrade hook, while the load runs on the primary.
    st.recorder.phase("upgrade");
    phase_log("upgrade", "running the upgrade hook");
    let t0 = Instant::now();
    let up = signals::interruptible(t.ext.upgrade()).await.context("upgrade")?;
    st.steps.extend(up.steps.iter().map(|s| Step { name: format!("upgrade.{}", s.name), seconds: s.seconds }));
    step(&mut st.steps, "upgrade", t0);
    st.to_version = up.version_after.clone().unwrap_or_default();
    st.recorder.event("upgraded", &st.to_version.clone());
    if cfg.checks.checksum {
        phase_log("upgrade", &format!("checksumming {} on primary and replica", st.mix.database));
        let t0 = Instant::now();
        let pair = checksum::Pair {
            primary: t.ext.options(false),
            replica: t.ext.options(true),
            names: (paddr.to_string(), raddr.to_string()),
            meta: t.ext.cfg.schema.clone(),
        };
        let deadline = Instant::now() + Duration::from_secs(600);
        let c = signals::interruptible(checksum::run_on(
            &pair,
            &[st.mix.database.as_str()],
            cfg.checks.checksum_chunks_per_s,
            t.ext.wait_caught_up(deadline),
        ))
        .await;
        step(&mut st.steps, "checksum", t0);
        match c {
            Ok(c) => {
                st.checksum = Some(serde_json::to_value(&c)?);
                if !c.consistent && !cfg.checks.promote_anyway {
                    return Err(Stopped(format!(
                        "the replica differs from its primary in {} of {} checksum chunks: not promoting it",
                        c.mismatched.len(),
                        c.chunks
                    ))
                    .into());
                }
            }
            Err(e) if e.downcast_ref::<signals::Interrupted>().is_some() => return Err(e),
            Err(e) => {
                tracing::warn!("the checksum could not run: {e:#}");
                st.checksum = Some(serde_json::json!({"checked": false, "error": format!("{e:#}")}));
            }
        }
    }
    let mut g = gate::on_servers(
        &t.ext.options(false),
        &t.ext.options(true),
        gate::scans_from_lint(&st.lint),
        Some(&st.mix.tables()),
        &gate::GateCfg::default(),
    )
    .await;
    g.when = "just before the promote hook".into();
    tracing::info!("readiness gate: {}", g.verdict);
    st.gate = Some(g);

    // 4. The user's promote hook under load; clients follow it.
    st.recorder.phase("switchover");
    phase_log("switchover", "running the promote hook");
    let t0 = Instant::now();
    let from = st.recorder.elapsed();
    let pr = signals::interruptible(t.ext.promote()).await.context("switchover")?;
    t.promoted = true;
    if let Some(ep) = &st.endpoint {
        ep.swap(raddr, true);
    }
    st.recorder.event("switchover", &raddr.to_string());
    st.steps.extend(pr.steps.iter().map(|s| Step { name: format!("promote.{}", s.name), seconds: s.seconds }));
    step(&mut st.steps, "switchover", t0);
    st.switchover.old_primary = paddr.to_string();
    st.switchover.new_primary = raddr.to_string();
    st.switchover.cold_restore_seconds = 0.0;
    // Until the ledger says otherwise: the hook's duration.
    st.switchover.write_unavailable_seconds = pr.seconds;
    st.switchover.procedure_unavailable_seconds = pr.seconds;
    t.window = Some((from, st.recorder.elapsed()));
    sleep_or_signal(Duration::from_millis(250)).await?;

    // 5. Cold: their new primary as it is after the promotion.
    snapshot(t, &st.mix.database, true).await;
    st.recorder.phase("cold");
    let cold_start = st.recorder.elapsed();
    phase_log("cold", &format!("{} s against the new primary {raddr}", st.dur.cold.as_secs()));
    cold_phase_wait(st, &load, cold_start).await?;
    if let Some(k) = &cfg.kill_switch {
        load.controls().enable(&k.target);
    }
    st.storage = serde_json::json!({
        "node": raddr.to_string(),
        "emulated": false,
        "note": "servers the user runs: their storage as it is; coldswap emulates no cold volume there",
    });
    phase_digests(st, t, "cold", true).await;
    st.warmup = serde_json::json!({
        "technique": "none",
        "note": "coldswap applies no warm-up on servers the user runs; the warm phase follows the cold one",
    });

    // 6. Warm: the same load, later.
    snapshot(t, &st.mix.database, true).await;
    st.recorder.phase("warm");
    phase_log("warm", &format!("{} s", st.dur.warm.as_secs()));
    sleep_or_signal(st.dur.warm).await?;
    phase_digests(st, t, "warm", true).await;
    st.recorder.phase("end");
    Ok(())
}

/// Digest totals on the primary (or the replica) at the start of a phase.
async fn snapshot(t: &mut Target, database: &str, replica: bool) {
    t.totals = None;
    match t.ext.conn(replica).await {
        Ok(mut c) => {
            match digests::totals(&mut c, &[database]).await {
                Ok(x) => t.totals = Some((replica, x)),
                Err(e) => tracing::warn!("cannot read statement digests: {e:#}"),
            }
            sql::close(c).await;
        }
        Err(e) => tracing::warn!("cannot read statement digests: {e:#}"),
    }
}

/// The phase's heaviest statements: the digest totals now minus at its start.
async fn phase_digests(st: &mut State, t: &mut Target, phase: &str, replica: bool) {
    let Some((on, before)) = t.totals.take() else { return };
    if on != replica {
        return;
    }
    let schemas = [st.mix.database.as_str()];
    let after = match t.ext.conn(replica).await {
        Ok(mut c) => {
            let a = digests::totals(&mut c, &schemas).await;
            sql::close(c).await;
            a
        }
        Err(e) => Err(e),
    };
    match after {
        Ok(a) => st.digests.push((phase.to_string(), digests::top_between(&before, &a, &st.names, 10))),
        Err(e) => tracing::warn!("cannot read statement digests for {phase}: {e:#}"),
    }
}

impl Target {
    /// Stop the ledger writer (before the endpoint goes).
    pub(crate) async fn stop_ledger(&mut self) {
        if let Some(l) = self.ledger.take() {
            self.acked = l.stop().await;
        }
    }

    /// The longest stall of acknowledged writes around the promote hook.
    pub(crate) fn write_gap(&self) -> Option<f64> {
        let (a, b) = self.window?;
        longest_gap(&self.acked, a, b)
    }
}

/// After the load: every acknowledged write looked up on the server that
/// is primary now (coldswap's ledger, and the mix's own if it keeps one).
pub(crate) async fn ledger(t: &Target, run: &coldswap_client::RunResult, database: &str) -> serde_json::Value {
    let acked = &t.acked;
    let on = t.promoted;
    let r: Result<serde_json::Value> = async {
        let mut c = t.ext.conn(on).await?;
        let own: Vec<u64> = acked.iter().map(|a| a.0).collect();
        let mut lost = missing(&mut c, &format!("`{}`.write_ledger", t.ext.cfg.schema), &own).await?;
        if !run.acked_writes.is_empty() {
            lost.extend(missing(&mut c, &format!("`{database}`.write_ledger"), &run.acked_writes).await?);
        }
        sql::close(c).await;
        let n = own.len() + run.acked_writes.len();
        Ok(serde_json::json!({
            "checked_on": t.ext.addr(on).to_string(),
            "acked": n,
            "found": n - lost.len(),
            "lost": lost.len(),
            "lost_ids": lost.iter().take(100).collect::<Vec<_>>(),
            "coldswap_ledger_acked": own.len(),
        }))
    }
    .await;
    r.unwrap_or_else(|e| serde_json::json!({"checked": false, "error": format!("{e:#}")}))
}

/// Both servers as the drill leaves them (for the report's nodes).
pub(crate) async fn nodes(t: &Target) -> Vec<serde_json::Value> {
    t.ext.status().await.iter().filter_map(|s| serde_json::to_value(s).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_gap_around_the_switchover() {
        let acked: Vec<(u64, f64)> = vec![(1, 0.0), (2, 0.05), (3, 0.1), (5, 2.6), (6, 2.65), (7, 9.0), (8, 9.05)];
        assert_eq!(longest_gap(&acked, 1.0, 2.0), Some(2.5));
        // A later stall outside the window is not the switchover's.
        assert_eq!(longest_gap(&acked, 0.0, 0.07), Some(0.05));
        assert_eq!(longest_gap(&acked[..1], 0.0, 5.0), None);
    }

    #[test]
    fn writes_are_named_and_reads_pass() {
        let text = r#"
name = "m"
database = "d"
[[transaction]]
name = "read"
weight = 1
sql = "SELECT 1"
[[transaction]]
name = "explain"
weight = 1
sql = "/* c */ explain SELECT 1"
[[transaction]]
name = "write"
weight = 1
steps = ["SELECT 1", "UPDATE t SET a = 1"]
[[background]]
name = "purge"
period_ms = 1000
sql = "DELETE FROM t WHERE a < 0"
"#;
        let mix = Mix::parse(text, std::path::Path::new("m.toml")).unwrap();
        assert_eq!(writes(&mix, None), vec!["write: UPDATE", "purge: DELETE"]);
        assert_eq!(writes(&mix, Some(&[])), vec!["write: UPDATE"]);
    }
}
