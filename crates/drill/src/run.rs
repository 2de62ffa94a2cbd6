//! The rehearsal, from nothing to a verdict:
//! up + seed, baseline, upgrade under load, the replica's volume becomes a
//! fresh restore, switchover under load, cold, warm-up, warm, report,
//! teardown. An interruption or a failure still writes a report, marked
//! incomplete, and tears everything down.

use anyhow::{anyhow, Result};
use coldswap_checker::report::{ClusterSection, KillSwitch, Phase, Report, Step, Switchover};
use coldswap_checker::warmth::{self, ProjectSize};
use coldswap_checker::{digests, render, thresholds};
use coldswap_client::run::Load;
use coldswap_client::{Endpoint, Mix, Recorder};
use coldswap_db::{BackendChoice, BackendKind, Cluster, PromoteOptions, ReplicationError, SwitchoverError, UpOptions};
use coldswap_nemesis::cold;
use coldswap_nemesis::warm::{self, Technique, WarmInputs};
use coldswap_signals as signals;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::DrillConfig;
use crate::external::Target;
pub use crate::state::Stopped;
use crate::state::{
    cold_phase_wait, lint_and_learn, load_config, phase_log, sleep_or_signal, step, DigestSampler, State,
};

/// What a finished (or interrupted) drill leaves.
pub struct Outcome {
    /// The report, as written.
    pub report: Report,
    /// Where it was written.
    pub dir: PathBuf,
    /// 0 pass, 3 thresholds failed, 1 failed, 130/143 interrupted.
    pub exit_code: i32,
    /// Why the drill stopped, when it failed.
    pub error: Option<String>,
}

/// The backend a config asks for (auto: containers when an engine and the
/// images are here, and one line says why).
pub async fn backend_for(cfg: &DrillConfig) -> Result<BackendKind> {
    let choice: BackendChoice = cfg.cluster.backend.parse().map_err(|e: String| anyhow!("cluster.backend: {e}"))?;
    Ok(choice.resolve((&cfg.cluster.from_image, &cfg.cluster.to_image)).await)
}

/// Run a whole drill.
pub async fn run(cfg: DrillConfig, source: Option<(&Path, &str)>) -> Result<Outcome> {
    let dur = cfg.validate(source)?;
    let mix = cfg.mix()?;
    if let Some(k) = &cfg.kill_switch {
        if !mix.has(&k.target) {
            anyhow::bail!(
                "kill_switch.target '{}' is not a transaction or background job of {}",
                k.target,
                cfg.load.mix.display()
            );
        }
    }
    if let Some(bg) = &cfg.load.background {
        for b in bg {
            if !mix.background.iter().any(|x| &x.name == b) {
                anyhow::bail!("load.background: '{b}' is not a background job of {}", cfg.load.mix.display());
            }
        }
    }
    let mut external = match (&cfg.cluster.external, cfg.cluster.backend.as_str()) {
        (Some(path), "external") => Some(crate::external::Target::load(path, cfg.cluster.allow_remote)?),
        _ => None,
    };
    coldswap_db::cluster::sweep_stale();
    let mode = crate::status::Mode::from_setting(&cfg.status, cfg.status_every_s)?;
    let (dir, started_at) = crate::out::make_out_dir(&cfg.out)?;
    let recorder = Arc::new(Recorder::new());
    let warm_share: crate::status::WarmShare = Default::default();
    let plan = vec![
        ("baseline".to_string(), dur.baseline.as_secs_f64()),
        ("cold".to_string(), dur.cold.as_secs_f64()),
        ("warm".to_string(), dur.warm.as_secs_f64()),
    ];
    let status = crate::status::Status::start(mode, recorder.clone(), plan, Some(warm_share.clone()));
    let metrics = match &cfg.metrics_listen {
        Some(a) => {
            let src = coldswap_client::metrics::Source::default();
            src.set(recorder.clone());
            let m = coldswap_client::metrics::serve(a, src).await?;
            tracing::info!("metrics: http://{}/metrics", m.addr);
            Some(m)
        }
        None => None,
    };
    let mut st = State {
        dur,
        mix,
        dir: dir.clone(),
        started: Instant::now(),
        started_at,
        cluster: None,
        endpoint: None,
        load: None,
        load_task: None,
        queue: None,
        queue_task: None,
        checksum: None,
        recorder,
        status,
        _metrics: metrics,
        steps: Vec::new(),
        switchover: Switchover::default(),
        digests: Vec::new(),
        names: digests::Namer::default(),
        warm_share,
        dataset_bytes: None,
        sampler: None,
        lint: Vec::new(),
        storage: serde_json::Value::Null,
        warmup: serde_json::Value::Null,
        prewarm: serde_json::Value::Null,
        gate: None,
        kill: None,
        from_version: cfg.cluster.from.clone(),
        flavor: String::new(),
        to_version: cfg.cluster.to.clone(),
        backend: cfg.cluster.backend.clone(),
        nodes: Vec::new(),
        invariants: serde_json::Value::Null,
        from_cold: serde_json::Value::Null,
        versions: None,
        statements: Default::default(),
        digest_sampler: None,
        cfg,
    };
    let body = match external.as_mut() {
        Some(t) => crate::external::drive(&mut st, t).await,
        None => drive(&mut st).await,
    };
    finish(st, body, external.as_mut()).await
}

async fn drive(st: &mut State) -> Result<()> {
    let cfg = st.cfg.clone();
    let shaped = cfg.data.shaped()?;
    // 1. Cluster up on the from-version, seeded.
    let backend = backend_for(&cfg).await?;
    st.backend = backend.to_string();
    let (from_v, to_v) = cfg.cluster.versions_for(backend);
    let mut up = UpOptions::new(st.dir.join("cluster"), &from_v);
    up.to = Some(to_v.clone());
    up.backend = backend;
    up.buffer_pool_mb = cfg.cluster.buffer_pool_mb;
    up.container = coldswap_db::ContainerOptions::default();
    phase_log("setup", &format!("starting {from_v} -> {to_v} on the {backend} backend"));
    let t = Instant::now();
    let (cluster, steps) = signals::interruptible(Cluster::up(up)).await?;
    st.cluster = Some(cluster);
    st.steps.extend(steps.0.iter().map(|s| Step { name: format!("up.{}", s.name), seconds: s.seconds }));
    step(&mut st.steps, "cluster_up", t);
    let cluster = st.cluster.as_mut().unwrap();
    st.from_version = cluster.primary()?.version_string.clone();
    st.flavor = cluster.primary()?.flavor().to_string();
    let t = Instant::now();
    phase_log("setup", &format!("seeding scale {}", cfg.data.scale));
    let seeded = signals::interruptible(cluster.seed(cfg.data.scale, false, &|_| {})).await?;
    step(&mut st.steps, "seed", t);
    tracing::info!(
        "seeded {} rows, {:.0} MiB in {:.1} s",
        seeded.rows,
        seeded.bytes as f64 / 1048576.0,
        seeded.seconds
    );
    if let Some((shape, ddl)) = &shaped {
        let t = Instant::now();
        phase_log(
            "setup",
            &format!("seeding {} (shaped like {}) at scale {}", shape.database, shape.source, cfg.data.dataset_scale),
        );
        signals::interruptible(cluster.seed_shaped(shape, ddl, cfg.data.dataset_scale, false, &|_| {})).await?;
        step(&mut st.steps, "seed_shaped", t);
    }

    // 2. The load, through the endpoint, against the warm primary.
    let p = cluster.primary_index()?;
    let ep = Arc::new(Endpoint::start(cluster.node(p).addr().parse()?).await?);
    st.endpoint = Some(ep.clone());
    let s = cluster.secrets();
    let app = coldswap_sql::tcp_options("127.0.0.1", ep.addr().port(), &s.app_user, &s.app_password);
    let load = Arc::new(Load::prepare(st.mix.clone(), app.clone(), load_config(&cfg), st.recorder.clone()).await?);
    st.load = Some(load.clone());
    let admin = cluster.admin_options(p);
    lint_and_learn(st, &admin, &app).await?;
    let cluster = st.cluster.as_mut().unwrap();
    let mut c = cluster.admin(p).await?;
    digests::reset(&mut c).await?;
    coldswap_sql::close(c).await;
    st.recorder.phase("baseline");
    let l2 = load.clone();
    st.load_task = Some(tokio::spawn(async move { l2.run().await }));
    if cfg.queue.enabled {
        let q = Arc::new(coldswap_client::queue::Queue::through(load.tier(), cfg.queue.clone(), st.recorder.clone()));
        st.queue = Some(q.clone());
        st.queue_task = Some(tokio::spawn(async move { q.run().await }));
    }
    let cluster = st.cluster.as_mut().unwrap();
    phase_log(
        "baseline",
        &format!("{} s against the warm primary {}", st.dur.baseline.as_secs(), cluster.node(p).name),
    );
    sleep_or_signal(st.dur.baseline).await?;
    collect_digests(st, "baseline", p).await;

    // The matrix's from-version cells, after the baseline: the primary
    // restarted on a fresh restore under the same load (the restart's own
    // errors fall in "from_restore", outside every cell), measured cold,
    // warmed by the technique the new primary gets (a buffer pool from its
    // own, dumped before the restore, as the new primary gets the old
    // one's), then measured warm: the from-warm cell has the storage
    // history the to-warm cell will have, so the version effect compares
    // like with like (writes to still-cold blocks included).
    if cfg.matrix.enabled {
        let ccfg = cfg.cold_config()?;
        let technique: Technique = cfg.warmup.technique.parse()?;
        let cluster = st.cluster.as_mut().unwrap();
        let own = if technique == Technique::BufferPool {
            let pct = if cfg.warmup.dump_pct == 0 { 100 } else { cfg.warmup.dump_pct };
            Some(Arc::new(signals::interruptible(warm::buffer_pool_dump(cluster, p, pct)).await?))
        } else {
            None
        };
        st.recorder.phase("from_restore");
        phase_log(
            "from_cold",
            &format!("restarting {} on a fresh restore ({})", cluster.node(p).name, cfg.storage.describe()),
        );
        let t = Instant::now();
        let vol = signals::interruptible(cold::make_cold(cluster, p, &ccfg, true)).await?;
        step(&mut st.steps, "from_cold_restore", t);
        let c0 = vol.counters();
        st.recorder.phase("from_cold");
        phase_log("from_cold", &format!("{} s against the cold primary (from-version)", st.dur.cold.as_secs()));
        cell_start(st, p);
        sleep_or_signal(st.dur.cold).await?;
        cell_end(st, "from_cold").await;
        collect_digests(st, "from_cold", p).await;
        let counters = vol.counters().since(&c0);
        st.recorder.phase("from_warmup");
        let r = st.cluster.as_ref().unwrap().replica_index()?;
        phase_log("from_warmup", &format!("{technique} on the primary"));
        let t = Instant::now();
        let inputs = WarmInputs { dump: own, ..warm_inputs(&cfg, &st.mix, r) };
        let rep = signals::interruptible(warm::warm(st.cluster.as_ref().unwrap(), p, technique, &inputs)).await?;
        step(&mut st.steps, "from_warmup", t);
        st.from_cold = serde_json::json!({"counters": counters, "warmup": rep});
        if let Ok(mut c) = st.cluster.as_ref().unwrap().admin(p).await {
            let _ = digests::reset(&mut c).await;
            coldswap_sql::close(c).await;
        }
        st.recorder.phase("from_warm");
        phase_log("from_warm", &format!("{} s after the warm-up (from-version)", st.dur.warm.as_secs()));
        cell_start(st, p);
        sleep_or_signal(st.dur.warm).await?;
        cell_end(st, "from_warm").await;
        collect_digests(st, "from_warm", p).await;
    }

    // 3. Upgrade the replica while the load runs on the primary.
    st.recorder.phase("upgrade");
    let cluster = st.cluster.as_mut().unwrap();
    let r = cluster.replica_index()?;
    phase_log("upgrade", &format!("upgrading {} to {to_v}", cluster.node(r).name));
    let t = Instant::now();
    let up_steps = signals::interruptible(cluster.upgrade(Some(&to_v))).await?;
    st.steps.extend(up_steps.0.iter().map(|s| Step { name: format!("upgrade.{}", s.name), seconds: s.seconds }));
    step(&mut st.steps, "upgrade", t);
    st.to_version = cluster.node(r).version_string.clone();
    st.recorder.event("upgraded", &st.to_version.clone());

    // The replica was consistent before the switchover (chunked checksums,
    // replicated statement-based, at a bounded rate, under load).
    if cfg.checks.checksum {
        phase_log("upgrade", "checksumming every table on primary and replica");
        let t = Instant::now();
        let c = signals::interruptible(coldswap_checker::checksum::run(
            cluster,
            &["api", "import_queue"],
            cfg.checks.checksum_chunks_per_s,
        ))
        .await;
        step(&mut st.steps, "checksum", t);
        match c {
            Ok(c) => {
                st.checksum = Some(serde_json::to_value(&c)?);
                if !c.consistent {
                    let what = format!(
                        "the replica differs from its primary in {} of {} checksum chunks ({})",
                        c.mismatched.len(),
                        c.chunks,
                        c.mismatched.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
                    );
                    if !cfg.checks.promote_anyway {
                        return Err(Stopped(format!(
                            "{what}: not promoting it (checks.promote_anyway = true or --promote-anyway rehearses the switchover anyway)"
                        ))
                        .into());
                    }
                    tracing::warn!("{what}; promoting anyway, as configured");
                }
            }
            Err(e) if e.downcast_ref::<signals::Interrupted>().is_some() => return Err(e),
            Err(e) => {
                tracing::warn!("the checksum could not run: {e:#}");
                st.checksum = Some(serde_json::json!({"checked": false, "error": format!("{e:#}")}));
            }
        }
    }
    let cluster = st.cluster.as_mut().unwrap();
    // Wait for the replica (on its own, warm volume) before the switchover.
    let t = Instant::now();
    let lag =
        signals::interruptible(wait_for_lag(cluster, r, cfg.switchover.max_lag_s, st.dur.wait_for_replica)).await?;
    step(&mut st.steps, "replica_catchup", t);
    tracing::info!("{} applies within {lag:.2} s", cluster.node(r).name);

    // 4a. With a warm-up before the switchover: the replica restarts on the
    // fresh restore now, still replicating, is warmed, and catches up; the
    // fence then holds only the procedure.
    let ccfg = cfg.cold_config()?;
    let prewarm: Option<Technique> = cfg.warmup.before_switchover.as_deref().map(str::parse).transpose()?;
    let mut restored: Option<(cold::Volume, cold::Counters)> = None;
    if let Some(technique) = prewarm {
        phase_log(
            "upgrade",
            &format!(
                "restarting {} on a fresh restore ({}) before the switchover, then {technique}",
                cluster.node(r).name,
                cfg.storage.describe()
            ),
        );
        let tc = Instant::now();
        let vol = signals::interruptible(cold::make_cold(cluster, r, &ccfg, true)).await?;
        step(&mut st.steps, "cold_restore", tc);
        let c0 = vol.counters();
        st.sampler = Some(sample_warm_share(cluster, r, &ccfg, st.recorder.clone(), st.warm_share.clone()).await);
        st.recorder.event("cold restore", &cluster.node(r).name.clone());
        let t = Instant::now();
        let inputs = warm_inputs(&cfg, &st.mix, p);
        let rep = signals::interruptible(warm::warm(cluster, r, technique, &inputs)).await?;
        step(&mut st.steps, "prewarm", t);
        st.recorder.event("pre-warmed", &format!("{technique} in {:.1} s", rep.seconds));
        st.prewarm = serde_json::to_value(&rep)?;
        let t = Instant::now();
        let lag =
            signals::interruptible(wait_for_lag(cluster, r, cfg.switchover.max_lag_s, st.dur.wait_for_replica)).await?;
        step(&mut st.steps, "replica_catchup_after_restore", t);
        tracing::info!("{} applies within {lag:.2} s on the restored volume", cluster.node(r).name);
        restored = Some((vol, c0));
    }
    if cfg.matrix.enabled {
        // Both versions' plans and settings, the replica caught up.
        let c = st.cluster.as_ref().unwrap();
        let (app, from, to) = (c.app_options(p), c.admin_options(p), c.admin_options(r));
        let t = Instant::now();
        let diff = async {
            let counts = coldswap_client::run::check_against(&st.mix, &app).await?;
            let gens = coldswap_client::gen::Generators::new(st.mix.generators.clone(), counts, 0);
            coldswap_checker::versions::compare(&from, &to, &st.mix, &gens, 0).await
        };
        match signals::interruptible(diff).await {
            Ok(d) => {
                tracing::info!(
                    "{} statement(s) changed plan between the versions; {} setting(s) differ",
                    d.plan_changes,
                    d.settings.len()
                );
                st.versions = Some(d);
            }
            Err(e) if e.downcast_ref::<signals::Interrupted>().is_some() => return Err(e),
            Err(e) => tracing::warn!("plans and settings of the two versions could not be compared: {e:#}"),
        }
        step(&mut st.steps, "compare_versions", t);
    }
    let cluster = st.cluster.as_mut().unwrap();
    // What the readiness gate would say now, just before the fence.
    let when = if restored.is_some() {
        "just before the fence, after the restore and the warm-up"
    } else {
        "before the drill's cold restore: the replica as replication left it; the restore then empties its buffer pool"
    };
    st.gate = Some(readiness(cluster, p, r, &st.lint, &st.mix.tables(), when).await);

    // 5. Switchover under load: fence and catch up; 4. the replica restarts
    // on a fresh snapshot restore (every block cold, empty buffer pool), as
    // a promoted replica on restored storage does; promote; swap the endpoint.
    st.recorder.phase("switchover");
    let what = if restored.is_some() {
        "fence, catch up, promote, swap the endpoint".to_string()
    } else {
        format!(
            "fence, catch up, restart {} on a fresh restore ({}), promote, swap the endpoint",
            cluster.node(r).name,
            cfg.storage.describe()
        )
    };
    phase_log("switchover", &what);
    let t = Instant::now();
    let popts = PromoteOptions {
        max_lag_s: cfg.switchover.max_lag_s,
        catchup_timeout_s: cfg.switchover.catchup_timeout_s,
        demote: false,
    };
    let fenced = signals::interruptible(cluster.promote_begin(&popts)).await.map_err(|e| {
        st.switchover.rolled_back = rolled_back(&e);
        e.context("switchover")
    })?;
    st.recorder.event("fenced", &cluster.node(p).name.clone());
    let tc = Instant::now();
    let (vol, since_restore) = match restored {
        Some(v) => v,
        None => {
            let vol = match cold::make_cold(cluster, r, &ccfg, true).await {
                Ok(v) => v,
                Err(e) => {
                    cluster.promote_abort(fenced).await;
                    st.switchover.rolled_back = true;
                    return Err(e.context(
                        "restarting the replica on a fresh restore (rolled back: the old primary takes writes again)",
                    ));
                }
            };
            step(&mut st.steps, "cold_restore", tc);
            st.sampler = Some(sample_warm_share(cluster, r, &ccfg, st.recorder.clone(), st.warm_share.clone()).await);
            st.recorder.event("cold restore", &cluster.node(r).name.clone());
            let c0 = vol.counters();
            (vol, c0)
        }
    };
    let cold_restore_s = if prewarm.is_some() { 0.0 } else { tc.elapsed().as_secs_f64() };
    let ep2 = ep.clone();
    let rec2 = st.recorder.clone();
    let (outcome, psteps) = cluster
        .promote_finish(fenced, &popts, move |n| {
            if let Ok(a) = n.addr().parse() {
                ep2.swap(a, true);
            }
            rec2.event("switchover", &n.name);
        })
        .await
        .map_err(|e| {
            st.switchover.rolled_back = e.rolled_back();
            anyhow::Error::from(e).context("switchover")
        })?;
    st.steps.extend(psteps.0.iter().map(|s| Step { name: format!("promote.{}", s.name), seconds: s.seconds }));
    step(&mut st.steps, "switchover", t);
    st.switchover.write_unavailable_seconds = outcome.write_unavailable_seconds;
    st.switchover.cold_restore_seconds = cold_restore_s;
    st.switchover.procedure_unavailable_seconds = (outcome.write_unavailable_seconds - cold_restore_s).max(0.0);
    st.switchover.old_primary = outcome.old_primary.clone();
    st.switchover.new_primary = outcome.new_primary.clone();
    st.switchover.gtid_position = outcome.gtid_position.clone();
    let old = p;
    let newp = r;
    // Requests in flight on connections the swap cut fail right away; the
    // cold phase starts as the new primary takes the traffic.
    sleep_or_signal(Duration::from_millis(250)).await?;

    // 6. Cold.
    {
        let cluster = st.cluster.as_ref().unwrap();
        if let Ok(mut c) = cluster.admin(newp).await {
            let _ = digests::reset(&mut c).await;
            coldswap_sql::close(c).await;
        }
    }
    st.recorder.phase("cold");
    let c0 = vol.counters();
    let cold_start = st.recorder.elapsed();
    phase_log(
        "cold",
        &format!("{} s against the cold new primary {}", st.dur.cold.as_secs(), st.switchover.new_primary),
    );
    cell_start(st, newp);
    cold_phase_wait(st, &load, cold_start).await?;
    cell_end(st, "cold").await;
    let now = vol.counters();
    let dc = now.since(&c0);
    let dr = now.since(&since_restore);
    // A node warmed before the switchover may read nothing in the cold
    // phase; the emulator must have seen its reads since the restore.
    let verified = dr.matched_reads > 0;
    st.storage = serde_json::json!({
        "node": st.switchover.new_primary,
        "profile": cfg.storage.profile,
        "config": ccfg,
        "restored": if prewarm.is_some() { "before the switchover" } else { "inside the fenced window" },
        "cold_phase_counters": dc,
        "since_restore_counters": dr,
        "cold_verified": verified,
    });
    if !verified {
        return Err(anyhow!(
            "the first-touch emulator saw no reads on {} since its restore: this run cannot be called cold",
            st.switchover.new_primary
        ));
    }
    collect_digests(st, "cold", newp).await;

    // 7. Warm-up.
    st.recorder.phase("warmup");
    let technique: Technique = cfg.warmup.technique.parse()?;
    phase_log("warmup", &format!("{technique} on {}", st.switchover.new_primary));
    let t = Instant::now();
    let inputs = warm_inputs(&cfg, &st.mix, old);
    let rep = signals::interruptible(warm::warm(st.cluster.as_ref().unwrap(), newp, technique, &inputs)).await?;
    step(&mut st.steps, "warmup", t);
    st.warmup = serde_json::to_value(&rep)?;
    if let Some(k) = &cfg.kill_switch {
        // The warm phase runs the same mix: the switch goes back on.
        load.controls().enable(&k.target);
    }

    // 8. Warm.
    {
        let cluster = st.cluster.as_ref().unwrap();
        if let Ok(mut c) = cluster.admin(newp).await {
            let _ = digests::reset(&mut c).await;
            coldswap_sql::close(c).await;
        }
    }
    st.recorder.phase("warm");
    phase_log("warm", &format!("{} s after the warm-up", st.dur.warm.as_secs()));
    cell_start(st, newp);
    sleep_or_signal(st.dur.warm).await?;
    cell_end(st, "warm").await;
    collect_digests(st, "warm", newp).await;
    st.recorder.phase("end");
    Ok(())
}

/// The readiness gate's checks on the cluster (lint's findings already known).
async fn readiness(
    cluster: &Cluster,
    p: usize,
    r: usize,
    lint: &[coldswap_checker::report::Lint],
    tables: &[(String, String)],
    when: &str,
) -> coldswap_checker::gate::Gate {
    use coldswap_checker::gate;
    let cfg = gate::GateCfg::default();
    let mut g = gate::on_cluster(cluster, p, r, gate::scans_from_lint(lint), Some(tables), &cfg).await;
    g.when = when.to_string();
    tracing::info!("readiness gate ({when}): {}", g.verdict);
    g
}

/// What a warm-up of the promoted node needs, the buffer pool dumped from `from`.
fn warm_inputs(cfg: &DrillConfig, mix: &Mix, from: usize) -> WarmInputs {
    WarmInputs {
        dump_from: Some(from),
        dump: None,
        tables: mix.tables(),
        parallel: cfg.warmup.parallel,
        dump_pct: cfg.warmup.dump_pct,
    }
}

/// Whether a switchover error says the old primary was put back.
fn rolled_back(e: &anyhow::Error) -> bool {
    e.downcast_ref::<SwitchoverError>().map(|s| s.rolled_back()).unwrap_or(false)
}

/// Every second, the share of node `i`'s volume that is warm (fetched,
/// written whole, hydrated or new since the restore), for the report.
async fn sample_warm_share(
    cluster: &Cluster,
    i: usize,
    ccfg: &coldswap_nemesis::ColdConfig,
    recorder: Arc<Recorder>,
    out: Arc<std::sync::Mutex<Vec<(f64, f64)>>>,
) -> tokio::task::JoinHandle<()> {
    let total = match cold::volume_blocks(cluster, i, ccfg.block_bytes()).await {
        Ok(n) => n.max(1),
        Err(e) => {
            tracing::warn!("the volume's size is unknown, its warm share is not sampled: {e:#}");
            return tokio::spawn(async {});
        }
    };
    let state = cold::state_dir_of(cluster, i);
    tokio::spawn(async move {
        let Ok(vol) = coldswap_nemesis::Volume::attach(&state) else { return };
        loop {
            let share = (vol.counters().warm_blocks() as f64 / total as f64).min(1.0);
            out.lock().unwrap().push((recorder.elapsed(), share));
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
}

/// Wait until replica `r` applies a fresh heartbeat within `max_lag`
/// seconds (the replication delay as pt-heartbeat measures it; Seconds_Behind_Master
/// reads 0 while a parallel applier still has a backlog). Returns the delay seen.
async fn wait_for_lag(cluster: &Cluster, r: usize, max_lag: f64, limit: Duration) -> Result<f64> {
    let deadline = Instant::now() + limit;
    let _ = r;
    loop {
        let t0 = Instant::now();
        match cluster.verify_replication(Duration::from_secs_f64(max_lag.max(0.5))).await {
            Ok(()) => return Ok(t0.elapsed().as_secs_f64()),
            Err(ReplicationError::HeartbeatTimeout { .. }) => {
                if Instant::now() > deadline {
                    return Err(anyhow!(
                        "the cold replica did not come within {max_lag} s of the primary in {} s: it cannot keep up with this load on a cold volume",
                        limit.as_secs()
                    ));
                }
            }
            Err(e) => return Err(anyhow::Error::from(e).context("while waiting for the cold replica")),
        }
    }
}

/// The matrix's results: with the load stopped, the old primary (the
/// from-version, fenced at the switchover) replicates from the new one
/// until it has every write, so both versions hold the same data; then
/// every read statement runs on both with the same parameter draws.
async fn results_on_the_same_data(st: &mut State) -> Result<coldswap_checker::versions::VersionDiff> {
    let samples = st.cfg.matrix.result_samples;
    if samples == 0 {
        anyhow::bail!("matrix.result_samples = 0");
    }
    let cluster = st.cluster.as_mut().ok_or_else(|| anyhow!("no cluster"))?;
    let newp = cluster.primary_index()?;
    let old = (0..cluster.node_infos().len())
        .find(|&i| i != newp && cluster.node(i).name == st.switchover.old_primary)
        .ok_or_else(|| anyhow!("the old primary is unknown"))?;
    signals::interruptible(async {
        cluster.demote(old, newp).await?;
        let app = cluster.app_options(newp);
        let counts = coldswap_client::run::check_against(&st.mix, &app).await?;
        let gens = coldswap_client::gen::Generators::new(st.mix.generators.clone(), counts, 0);
        coldswap_checker::versions::compare(
            &cluster.admin_options(old),
            &cluster.admin_options(newp),
            &st.mix,
            &gens,
            samples,
        )
        .await
    })
    .await
}

/// A matrix cell starts on `node`: read its digest table through it.
fn cell_start(st: &mut State, node: usize) {
    if let (true, Some(c)) = (st.cfg.matrix.enabled, st.cluster.as_ref()) {
        st.digest_sampler = Some(DigestSampler::start(c.admin_options(node), st.mix.database.clone()));
    }
}

/// The cell ends: its statements from the readings.
async fn cell_end(st: &mut State, phase: &str) {
    if let Some(s) = st.digest_sampler.take() {
        let readings = s.finish().await;
        st.statements.insert(phase.to_string(), digests::series(&readings, &st.names));
    }
}

async fn collect_digests(st: &mut State, phase: &str, node: usize) {
    let Some(cluster) = st.cluster.as_ref() else { return };
    match cluster.admin(node).await {
        Ok(mut c) => {
            match digests::top(&mut c, &[st.mix.database.as_str()], &st.names, 10).await {
                Ok(d) => st.digests.push((phase.to_string(), d)),
                Err(e) => tracing::warn!("cannot read statement digests for {phase}: {e:#}"),
            }
            coldswap_sql::close(c).await;
        }
        Err(e) => tracing::warn!("cannot read statement digests for {phase}: {e:#}"),
    }
}

/// Stop the load, build and write the report, tear down.
async fn finish(mut st: State, body: Result<()>, mut external: Option<&mut Target>) -> Result<Outcome> {
    let interrupted = body.as_ref().err().and_then(|e| e.downcast_ref::<signals::Interrupted>().map(|i| i.0));
    if let (Some(sig), Some(_)) = (interrupted, &external) {
        st.status.say(&format!(
            "signal {sig}: stopping the load, writing the partial report to {}, dropping coldswap's schema; your servers keep running",
            st.dir.display()
        ));
    } else if let Some(sig) = interrupted {
        let servers = st.cluster.as_ref().map(|c| c.node_infos().len()).unwrap_or(0);
        st.status.say(&format!(
            "signal {sig}: stopping the load, writing the partial report to {}, then stopping {servers} server(s) ({} backend){}",
            st.dir.display(),
            st.backend,
            if st.endpoint.is_some() { " and the endpoint" } else { "" }
        ));
    }
    if let Some(load) = &st.load {
        load.stop();
    }
    if let Some(q) = &st.queue {
        q.stop();
    }
    if let Some(t) = st.queue_task.take() {
        let _ = tokio::time::timeout(Duration::from_secs(15), t).await;
    }
    if let Some(t) = st.load_task.take() {
        match tokio::time::timeout(Duration::from_secs(30), t).await {
            Ok(Ok(Err(e))) if body.is_ok() => tracing::warn!("load ended with an error: {e:#}"),
            Err(_) => tracing::warn!("the load did not stop within 30 s"),
            _ => {}
        }
    }
    if let Some(x) = external.as_deref_mut() {
        x.stop_ledger().await;
        if let Some(gap) = x.write_gap() {
            st.switchover.write_unavailable_seconds = gap;
            st.switchover.procedure_unavailable_seconds = gap;
        }
    }
    st.endpoint = None;
    if let Some(t) = st.sampler.take() {
        t.abort();
    }
    if st.cfg.matrix.enabled && body.is_ok() && external.is_none() {
        let t = Instant::now();
        let how = results_on_the_same_data(&mut st).await;
        if let Some(v) = st.versions.as_mut() {
            match how {
                Ok(d) => v.merge_results(
                    &d,
                    "on the same data: after the load, the old primary demoted and caught up with the new one",
                ),
                Err(e) => {
                    tracing::warn!("results of the two versions could not be compared: {e:#}");
                    v.results = Some(format!("not compared: {e:#}"));
                }
            }
        }
        step(&mut st.steps, "compare_results", t);
    }
    let run = st.recorder.snapshot();
    if let Some(c) = &st.cluster {
        st.nodes = c.node_infos().iter().filter_map(|n| serde_json::to_value(n).ok()).collect();
    }
    // Invariants: every one the drill runs is recorded, checked or not.
    let mut inv = serde_json::Map::new();
    let not_checked = |why: String| serde_json::json!({"checked": false, "error": why});
    let mut cleanup = None;
    if let Some(x) = external {
        inv.insert(
            "ledger".into(),
            if body.is_ok() {
                crate::external::ledger(x, &run, &st.mix.database).await
            } else {
                not_checked("the drill stopped before it could check this".into())
            },
        );
        cleanup = Some(crate::external::drop_schema(x).await);
        st.nodes = crate::external::nodes(x).await;
    } else if body.is_ok() {
        if let Some(c) = &st.cluster {
            let view = crate::invariants::StateView { cluster: c, database: &st.mix.database };
            let v = match crate::invariants::ledger(&view, &run).await {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!("the write ledger could not be checked: {e:#}");
                    not_checked(format!("{e:#}"))
                }
            };
            inv.insert("ledger".into(), v);
            if let Some(q) = &st.queue {
                let v = match c.primary_index() {
                    Ok(p) => {
                        let s = c.secrets();
                        let n = c.node(p);
                        let opts = coldswap_sql::tcp_options(&n.host, n.port, &s.app_user, &s.app_password);
                        match coldswap_client::queue::anomalies(&opts, &q.told).await {
                            Ok(v) => v,
                            Err(e) => {
                                tracing::warn!("task states could not be checked: {e:#}");
                                not_checked(format!("{e:#}"))
                            }
                        }
                    }
                    Err(e) => not_checked(format!("{e:#}")),
                };
                inv.insert("status".into(), v);
            }
        }
    } else {
        // The drill stopped first: the checks it would have made are named, not passed.
        let why = "the drill stopped before it could check this".to_string();
        inv.insert("ledger".into(), not_checked(why.clone()));
        if st.cfg.queue.enabled {
            inv.insert("status".into(), not_checked(why.clone()));
        }
    }
    match &st.checksum {
        Some(c) => {
            inv.insert("checksum".into(), c.clone());
        }
        None if st.cfg.checks.checksum => {
            inv.insert("checksum".into(), not_checked("the drill stopped before the checksum ran".into()));
        }
        None => {}
    }
    st.invariants = serde_json::Value::Object(inv);
    let mut report = Report {
        coldswap_version: env!("CARGO_PKG_VERSION").to_string(),
        complete: body.is_ok(),
        incomplete_reason: body.as_ref().err().map(|e| format!("{e:#}").replace('\n', " ")),
        started_at: st.started_at.clone(),
        duration_s: st.started.elapsed().as_secs_f64(),
        verdict: Default::default(),
        config: serde_json::to_value(&st.cfg).unwrap_or_default(),
        cluster: ClusterSection {
            backend: st.backend.clone(),
            from_version: st.from_version.clone(),
            flavor: st.flavor.clone(),
            to_version: st.to_version.clone(),
            steps: st.steps.clone(),
            nodes: st.nodes.clone(),
        },
        switchover: st.switchover.clone(),
        storage: st.storage.clone(),
        warmup: st.warmup.clone(),
        prewarm: st.prewarm.clone(),
        gate: st.gate.clone(),
        phases: run.phases.iter().filter(|p| p.name != "end" && p.name != "run").map(Phase::from_result).collect(),
        comparison: vec![],
        heaviest_hitter: None,
        lint: st.lint.clone(),
        kill_switch: None,
        thresholds: vec![],
        invariant_results: vec![],
        time_to_warm: None,
        matrix: None,
        invariants: st.invariants.clone(),
        timeline: run.timeline.clone(),
        events: run.events.clone(),
    };
    for (phase, d) in &st.digests {
        if let Some(p) = report.phases.iter_mut().find(|p| &p.name == phase) {
            p.top_digests = d.clone();
        }
    }
    // Switchover window: what failed in it, and for how long clients saw it.
    if let Some(sw) = run.phase("switchover") {
        let mut errors = std::collections::BTreeMap::new();
        let mut failed = 0;
        for t in &sw.transactions {
            failed += t.count - t.ok;
            for (k, v) in &t.errors {
                *errors.entry(k.clone()).or_insert(0) += v;
            }
        }
        report.switchover.failed_requests = failed;
        report.switchover.errors = errors;
        report.switchover.client_unavailable_seconds = unavailable_span(&run.timeline, sw.start_s, sw.end_s);
    }
    if let Some((target, at)) = &st.kill {
        report.kill_switch = Some(kill_switch_effect(&run, target, *at));
    }
    report.compute_comparison();
    report.compute_heaviest();
    if st.cfg.matrix.enabled {
        let bound = st.cfg.thresholds.version_p99_ratio.unwrap_or(1.3);
        report.matrix = coldswap_checker::matrix::compute(
            &report,
            bound,
            st.cfg.matrix.confidence_pct,
            st.cfg.thresholds.min_samples,
            &st.statements,
        );
        if let Some(m) = report.matrix.as_mut() {
            m.versions = st.versions.clone();
        }
        if let (Some(_), serde_json::Value::Object(m)) = (&report.matrix, &mut report.storage) {
            m.insert("from_cold".into(), st.from_cold.clone());
        }
    }
    let shares: Vec<(f64, f64)> = st.warm_share.lock().unwrap().clone();
    if !shares.is_empty() {
        if let serde_json::Value::Object(m) = &mut report.storage {
            m.insert("warm_share".into(), serde_json::json!(shares));
        }
    }
    report.time_to_warm = time_to_warm(&report, &run, &st.cfg.warmth);
    if let Some(w) = report.time_to_warm.as_mut() {
        w.dataset_bytes = st.dataset_bytes;
        let size = st.cfg.warmth.project_size.as_deref().and_then(|p| ProjectSize::parse(p).ok());
        if let (Some(size), Some(b)) = (size, st.dataset_bytes) {
            w.projection = warmth::project(&w.overall, b, size.bytes(b));
        }
    }
    if let Some(c) = cleanup.filter(|c| !c.is_empty()) {
        tracing::info!("{c}");
        report.events.push(coldswap_client::stats::Event { t: run_end(&report), name: "cleanup".into(), detail: c });
    }
    if let Some(t) = report.time_to_warm.as_ref().and_then(|w| w.warm_at_t) {
        report.events.push(coldswap_client::stats::Event {
            t,
            name: "warm".into(),
            detail: "p99 back within bound".into(),
        });
    }
    check_predictions(&mut report, &st.cfg);
    report.thresholds = thresholds::evaluate(&report, &st.cfg.thresholds);
    report.invariant_results = thresholds::invariants(&report, &st.cfg.thresholds);
    report.verdict = thresholds::verdict(&report, &st.cfg.thresholds);
    let write = coldswap_checker::write_all(&report, &st.dir);
    // Teardown, whatever happened.
    let mut teardown_err = None;
    if let Some(c) = st.cluster.take() {
        if st.cfg.keep && body.is_ok() {
            let dir = c.run_dir().to_path_buf();
            if let Err(e) = c.keep() {
                teardown_err = Some(e);
            }
            tracing::info!("cluster kept running in {}", dir.display());
        } else if let Err(e) = c.down(false).await {
            teardown_err = Some(e);
        }
    }
    write?;
    if let Some(e) = teardown_err {
        tracing::warn!("teardown: {e:#}");
    }
    let stopped = body.as_ref().err().map(|e| e.downcast_ref::<Stopped>().is_some()).unwrap_or(false);
    let exit_code = match (interrupted, &body) {
        (Some(sig), _) => signals::exit_code(sig),
        (None, Err(_)) if stopped => 3,
        (None, Err(_)) => 1,
        (None, Ok(())) if report.verdict.passed => 0,
        _ => 3,
    };
    Ok(Outcome { error: body.err().map(|e| format!("{e:#}").replace('\n', " ")), report, dir: st.dir, exit_code })
}

/// The end of the last phase, seconds since the load started.
fn run_end(r: &Report) -> f64 {
    r.phases.iter().map(|p| p.end_s).fold(0.0, f64::max)
}

/// Time to warm from the switchover to the end of the cold phase, against
/// the baseline (None when the drill did not get that far).
fn time_to_warm(
    report: &Report,
    run: &coldswap_client::RunResult,
    cfg: &coldswap_checker::warmth::WarmthCfg,
) -> Option<coldswap_checker::warmth::TimeToWarm> {
    let sw = run.events.iter().find(|e| e.name == "switchover")?.t;
    let cold = run.phase("cold")?;
    let base = report.phase("baseline")?;
    let rate = base.requests as f64 / (base.end_s - base.start_s).max(1e-9);
    let per_txn = base
        .transactions
        .iter()
        .filter(|t| t.kind == coldswap_client::stats::Kind::Transaction && t.count >= 20)
        .map(|t| (t.name.clone(), t.p99_ms))
        .collect();
    Some(coldswap_checker::warmth::compute(&run.timeline, sw, cold.end_s, base.p99_ms, &per_txn, rate, cfg))
}

/// Lint's cold estimate of each full scan beside the first cold execution
/// measured for it, with their ratio and, where they disagree, why.
fn check_predictions(report: &mut Report, cfg: &DrillConfig) {
    let Some(cold) = report.phase("cold").cloned() else { return };
    let fetches = cfg.cold_config().map(|c| c.concurrency).unwrap_or(cfg.storage.concurrency);
    for l in report.lint.iter_mut().filter(|l| l.full_scan && l.runs) {
        let Some(first) = cold.txn(&l.transaction).and_then(|t| t.first_ms) else { continue };
        let ratio = first / l.est_cold_cost_ms.max(1e-9);
        l.measured_first_cold_ms = Some(first);
        l.measured_over_predicted = Some(ratio);
        l.prediction_note = if ratio > 2.0 {
            format!(
                "slower than predicted: the first run shared the volume's {fetches} fetches in flight with the rest of the load (and with its own runs piling up), so its reads queued behind other cold reads"
            )
        } else if ratio < 0.5 {
            "faster than predicted: part of what it reads was warm already (fetched by the restart or by requests before it)"
                .into()
        } else {
            "within 2x of the prediction".into()
        };
    }
}

/// Error rate and typical p99 before and after the kill-switch, within the cold phase.
fn kill_switch_effect(run: &coldswap_client::RunResult, target: &str, at: f64) -> KillSwitch {
    let settle = 5.0;
    let cold: Vec<&coldswap_client::stats::SecondSummary> = run.timeline.iter().filter(|s| s.phase == "cold").collect();
    let window = |f: &dyn Fn(f64) -> bool| {
        let secs: Vec<&&coldswap_client::stats::SecondSummary> = cold.iter().filter(|s| f(s.t as f64)).collect();
        let n: u64 = secs.iter().map(|s| s.count).sum();
        let e: u64 = secs.iter().map(|s| s.errors).sum();
        let mut p99: Vec<f64> = secs.iter().filter(|s| s.count > 0).map(|s| s.p99_ms).collect();
        p99.sort_by(|a, b| a.total_cmp(b));
        let med = if p99.is_empty() { 0.0 } else { p99[p99.len() / 2] };
        (if n == 0 { 0.0 } else { e as f64 / n as f64 }, med)
    };
    let (eb, pb) = window(&|t| t < at);
    let (ea, pa) = window(&|t| t >= at + settle);
    let start = cold.first().map(|s| s.t as f64).unwrap_or(at);
    KillSwitch {
        target: target.to_string(),
        at_s: (at - start).max(0.0),
        error_rate_before: eb,
        error_rate_after: ea,
        p99_before_ms: pb,
        p99_after_ms: pa,
        recovered: (ea < eb * 0.5 || (eb == 0.0 && ea == 0.0)) && pa <= pb,
    }
}

/// A short summary for the terminal.
pub fn summary(o: &Outcome) -> String {
    let r = &o.report;
    let mut s = String::new();
    s.push_str(&format!("\n{}\n", r.verdict.headline));
    for f in &r.verdict.findings {
        s.push_str(&format!("  - {f}\n"));
    }
    if !r.comparison.is_empty() {
        s.push_str(&format!(
            "\n  {:<24} {:>10} {:>10} {:>10} {:>9}\n",
            "p99 ms", "baseline", "cold", "warm", "cold/warm"
        ));
        for c in &r.comparison {
            let f = |v: Option<f64>| v.map(|x| format!("{x:.1}")).unwrap_or_else(|| "-".into());
            s.push_str(&format!(
                "  {:<24} {:>10} {:>10} {:>10} {:>9}\n",
                c.transaction,
                f(c.baseline_p99_ms),
                f(c.cold_p99_ms),
                f(c.warm_p99_ms),
                c.cold_over_warm.map(|x| format!("{x:.1}x")).unwrap_or_else(|| "-".into())
            ));
        }
    }
    for t in &r.thresholds {
        s.push_str(&format!(
            "  threshold {:<26} {:>9.2} (limit {:.2}) {}\n",
            t.rule,
            t.value,
            t.limit,
            if t.passed { "pass" } else { "FAIL" }
        ));
    }
    s.push_str(&format!("\nreport: {}/report.html (and report.json, report.md)\n", o.dir.display()));
    let _ = render::esc;
    s
}

/// Seconds clients saw failures in a window: from the first to the last
/// second of the timeline that overlaps [start, end] and ended failed
/// requests. By time, not by the seconds' phase labels: a second is
/// labelled with the phase running when it closes, so a switchover shorter
/// than a second has no second of its own.
fn unavailable_span(timeline: &[coldswap_client::stats::SecondSummary], start: f64, end: f64) -> f64 {
    let (a, b) = (start.max(0.0).floor() as u64, end.max(0.0).floor() as u64);
    let secs: Vec<u64> = timeline.iter().filter(|s| s.t >= a && s.t <= b && s.errors > 0).map(|s| s.t).collect();
    match (secs.first(), secs.last()) {
        (Some(x), Some(y)) => (y - x + 1) as f64,
        _ => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coldswap_client::stats::SecondSummary;

    fn second(t: u64, phase: &str, errors: u64) -> SecondSummary {
        SecondSummary {
            t,
            phase: phase.into(),
            count: 10,
            errors,
            errors_by_class: Default::default(),
            p50_ms: 1.0,
            p99_ms: 1.0,
            max_ms: 1.0,
            by_txn: Default::default(),
        }
    }

    #[test]
    fn a_switchover_shorter_than_a_second_still_counts() {
        // The switchover ran from 10.3 s to 10.8 s: its second closed under "cold".
        let tl = vec![second(9, "upgrade", 0), second(10, "cold", 6), second(11, "cold", 0), second(12, "cold", 40)];
        assert_eq!(unavailable_span(&tl, 10.3, 10.8), 1.0);
        // A longer one: from the first to the last failing second in it.
        let tl = vec![
            second(9, "switchover", 0),
            second(10, "switchover", 3),
            second(11, "switchover", 0),
            second(12, "switchover", 2),
        ];
        assert_eq!(unavailable_span(&tl, 9.5, 12.2), 3.0);
        // Failures outside the window are not the switchover's.
        assert_eq!(unavailable_span(&tl, 13.0, 14.0), 0.0);
    }
}
