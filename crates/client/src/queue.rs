//! The import task queue of the postmortem, as a stateful workload: a
//! producer enqueues tasks, workers claim them, heartbeat while they work
//! and complete them, and a reaper kills tasks whose heartbeat is too old.
//!
//! The 2017 race: Bulk Import jobs that had succeeded were set to 'killed'.
//! A *naive* reaper reads the stale tasks and then kills each one with an
//! unconditional UPDATE; when the database is slow, the list is old by the
//! time the UPDATE lands, and a task its worker has just completed gets
//! killed. A *guarded* reaper kills with a compare-and-set on the state and
//! the heartbeat, and cannot. Both run side by side, each on its own tasks
//! (`kind` naive / guarded), so one drill shows both.
//!
//! What each worker was told is kept here (the client's view); the checker
//! compares it with the final state of every task.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::gen::{Rng, Value};
use crate::mix::{split_params, Stmt};
use crate::stats::{Kind, Record, Recorder};
use crate::tier::{Tier, TierConfig};

/// `[queue]`: the import queue's job lifecycle, naive and guarded reapers side by side.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// Run the queue workload.
    pub enabled: bool,
    /// Workers per reaper mode. Workers and reapers go through the API tier
    /// (its pool and deadline) in a drill.
    pub workers: usize,
    /// New tasks per second per mode.
    pub produce_per_s: f64,
    /// How long a task's work takes, ms.
    pub work_ms: u64,
    /// How often a working worker writes its heartbeat, ms.
    pub heartbeat_ms: u64,
    /// The reaper kills running tasks whose heartbeat is older than this, ms.
    pub stale_after_ms: u64,
    /// How often each reaper looks for stale tasks, ms.
    pub reaper_period_ms: u64,
    /// Pause between the naive reaper's read and each kill, ms (a real one
    /// sends a notification, writes a log line...).
    pub reaper_gap_ms: u64,
    /// Connections of the queue's own pool (when not through the drill's API tier).
    pub pool_size: u32,
    /// Deadline of one queue statement, ms.
    pub deadline_ms: u64,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            enabled: false,
            workers: 8,
            produce_per_s: 20.0,
            work_ms: 500,
            heartbeat_ms: 200,
            stale_after_ms: 600,
            reaper_period_ms: 500,
            reaper_gap_ms: 300,
            pool_size: 24,
            deadline_ms: 10_000,
        }
    }
}

/// How a reaper kills stale tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// An unconditional UPDATE: kills tasks whose worker finished meanwhile (the 2017 race).
    Naive,
    /// Compare-and-set on state and heartbeat: kills only tasks still stale.
    Guarded,
}

impl Mode {
    /// The mode's name in reports.
    pub fn as_str(&self) -> &'static str {
        match self {
            Mode::Naive => "naive",
            Mode::Guarded => "guarded",
        }
    }
}

/// What workers were told, per task.
#[derive(Default)]
pub struct Told {
    /// Task id -> the mode of the worker told its task completed.
    pub completed: Mutex<HashMap<u64, Mode>>,
}

fn stmt(sql: &str) -> Stmt {
    let (q, names, parts) = split_params(sql);
    let params = (0..names.len()).collect();
    Stmt { text: sql.to_string(), sql: q, params, parts, line: 0 }
}

/// The queue workload's statements, each with the request name it is
/// recorded under.
pub struct Statements {
    enqueue: Stmt,
    claim: Stmt,
    mine: Stmt,
    beat: Stmt,
    done: Stmt,
    stale: Stmt,
    kill_naive: Stmt,
    kill_guarded: Stmt,
}

impl Statements {
    /// The statements for these settings.
    pub fn new(cfg: &QueueConfig) -> Statements {
        let stale_us = cfg.stale_after_ms * 1000;
        Statements {
            enqueue: stmt(
                "INSERT INTO import_queue.tasks (owner, account_id, kind, state, heartbeat_at, attempts, payload, created_at, updated_at) \
                 VALUES (NULL, :a, :k, 'queued', NULL, 0, '{\"source\":\"s3://imports/new\"}', NOW(6), NOW(6))",
            ),
            claim: stmt(
                "UPDATE import_queue.tasks SET state = 'running', owner = :me, heartbeat_at = NOW(6), attempts = attempts + 1, updated_at = NOW(6) \
                 WHERE state = 'queued' AND kind = :k ORDER BY id LIMIT 1",
            ),
            mine: stmt(
                "SELECT id FROM import_queue.tasks WHERE owner = :me AND state = 'running' ORDER BY id DESC LIMIT 1",
            ),
            beat: stmt(
                "UPDATE import_queue.tasks SET heartbeat_at = NOW(6) WHERE id = :id AND owner = :me AND state = 'running'",
            ),
            done: stmt(
                "UPDATE import_queue.tasks SET state = 'completed', updated_at = NOW(6) WHERE id = :id AND owner = :me AND state = 'running'",
            ),
            stale: stmt(&format!(
                "SELECT id FROM import_queue.tasks WHERE kind = :k AND state = 'running' AND heartbeat_at < NOW(6) - INTERVAL {stale_us} MICROSECOND"
            )),
            kill_naive: stmt("UPDATE import_queue.tasks SET state = 'killed', updated_at = NOW(6) WHERE id = :id"),
            kill_guarded: stmt(&format!(
                "UPDATE import_queue.tasks SET state = 'killed', updated_at = NOW(6) WHERE id = :id AND state = 'running' \
                 AND heartbeat_at < NOW(6) - INTERVAL {stale_us} MICROSECOND"
            )),
        }
    }

    /// Every statement with the request name it counts under and sample
    /// values of the right types (for EXPLAIN or learning its digest).
    pub fn named(&self) -> Vec<(&'static str, &Stmt, Vec<Option<Value>>)> {
        let (int, txt) = (|v: i64| Some(Value::Int(v)), |v: &str| Some(Value::Str(v.to_string())));
        vec![
            ("queue_enqueue", &self.enqueue, vec![int(1), txt("naive")]),
            ("queue_claim", &self.claim, vec![txt("probe"), txt("naive")]),
            ("queue_claim", &self.mine, vec![txt("probe")]),
            ("queue_heartbeat", &self.beat, vec![int(0), txt("probe")]),
            ("queue_complete", &self.done, vec![int(0), txt("probe")]),
            ("queue_reap", &self.stale, vec![txt("naive")]),
            ("queue_reap", &self.kill_naive, vec![int(0)]),
            ("queue_reap", &self.kill_guarded, vec![int(0)]),
        ]
    }
}

/// The queue workload against one database (import_queue).
pub struct Queue {
    cfg: QueueConfig,
    tier: Tier,
    recorder: Arc<Recorder>,
    /// What workers were told, for the task-state check.
    pub told: Arc<Told>,
    stop: Arc<AtomicBool>,
}

impl Queue {
    /// A queue workload with its own pool.
    pub fn new(opts: sqlx::mysql::MySqlConnectOptions, cfg: QueueConfig, recorder: Arc<Recorder>) -> Queue {
        let tier = Tier::new(
            opts,
            TierConfig {
                pool_size: cfg.pool_size,
                deadline_ms: cfg.deadline_ms,
                acquire_timeout_ms: cfg.deadline_ms,
                ..Default::default()
            },
        );
        Queue::through(tier, cfg, recorder)
    }

    /// A queue workload whose workers and reapers go through an API tier
    /// (its pool, its deadline), as workers reporting through the API do.
    pub fn through(tier: Tier, cfg: QueueConfig, recorder: Arc<Recorder>) -> Queue {
        Queue { cfg, tier, recorder, told: Arc::new(Told::default()), stop: Arc::new(AtomicBool::new(false)) }
    }

    /// Stop workers and reapers.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    async fn req(&self, name: &str, s: &Stmt, vals: &[Option<Value>]) -> Option<u64> {
        let t = Instant::now();
        let out = self.tier.request(std::slice::from_ref(s), vals, false, None).await;
        if !self.stop.load(Ordering::SeqCst) {
            self.recorder.record(&Record {
                name,
                kind: Kind::Background,
                latency: t.elapsed(),
                ok: out.ok,
                class: out.class,
                error: out.error.as_deref(),
                attempts: out.attempts,
                rows: out.rows,
            });
        }
        out.ok.then_some(out.rows)
    }

    /// Run producers, workers and reapers for both modes until stopped.
    pub async fn run(self: Arc<Self>) {
        let mut tasks = Vec::new();
        for mode in [Mode::Naive, Mode::Guarded] {
            let q = self.clone();
            tasks.push(tokio::spawn(async move { q.producer(mode).await }));
            for w in 0..self.cfg.workers {
                let q = self.clone();
                tasks.push(tokio::spawn(async move { q.worker(mode, w).await }));
            }
            let q = self.clone();
            tasks.push(tokio::spawn(async move { q.reaper(mode).await }));
        }
        while !self.stop.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for t in tasks {
            t.abort();
        }
    }

    async fn producer(&self, mode: Mode) {
        let st = Statements::new(&self.cfg);
        let ins = &st.enqueue;
        let period = Duration::from_secs_f64(1.0 / self.cfg.produce_per_s.max(0.1));
        let mut rng = Rng::new(7 + mode as u64);
        let mut next = Instant::now();
        while !self.stop.load(Ordering::SeqCst) {
            next += period;
            let vals = vec![Some(Value::Int(1 + rng.below(100) as i64)), Some(Value::Str(mode.as_str().into()))];
            self.req("queue_enqueue", ins, &vals).await;
            let now = Instant::now();
            if next > now {
                tokio::time::sleep(next - now).await;
            } else {
                next = now;
            }
        }
    }

    async fn worker(&self, mode: Mode, w: usize) {
        let me = format!("{}-worker-{w}", mode.as_str());
        let st = Statements::new(&self.cfg);
        let (claim, mine, beat, done) = (&st.claim, &st.mine, &st.beat, &st.done);
        let mut rng = Rng::new(1000 + w as u64 + mode as u64 * 77);
        while !self.stop.load(Ordering::SeqCst) {
            let v = vec![Some(Value::Str(me.clone())), Some(Value::Str(mode.as_str().into()))];
            match self.req("queue_claim", claim, &v).await {
                Some(1) => {}
                _ => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            }
            // Which task did we get?
            let id = self.tier.query_first_u64(mine, &[Some(Value::Str(me.clone()))]).await.ok().flatten();
            let Some(id) = id else { continue };
            // Work, heartbeating.
            let work = Duration::from_millis(self.cfg.work_ms / 2 + rng.below(self.cfg.work_ms.max(1)));
            let started = Instant::now();
            while started.elapsed() < work && !self.stop.load(Ordering::SeqCst) {
                tokio::time::sleep(
                    Duration::from_millis(self.cfg.heartbeat_ms).min(work.saturating_sub(started.elapsed())),
                )
                .await;
                let v = vec![Some(Value::Int(id as i64)), Some(Value::Str(me.clone()))];
                self.req("queue_heartbeat", beat, &v).await;
            }
            // Report the result until the database answers: the work is done.
            let v = vec![Some(Value::Int(id as i64)), Some(Value::Str(me.clone()))];
            let mut backoff = Duration::from_millis(100);
            loop {
                match self.req("queue_complete", done, &v).await {
                    Some(1) => {
                        // The database said yes: this worker was told its task completed.
                        self.told.completed.lock().unwrap().insert(id, mode);
                        break;
                    }
                    // The task is no longer ours (killed or taken over): told so.
                    Some(_) => break,
                    None if self.stop.load(Ordering::SeqCst) => break,
                    None => {
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(2));
                    }
                }
            }
        }
    }

    async fn reaper(&self, mode: Mode) {
        let st = Statements::new(&self.cfg);
        let (list, kill_naive, kill_guarded) = (&st.stale, &st.kill_naive, &st.kill_guarded);
        while !self.stop.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(self.cfg.reaper_period_ms)).await;
            let ids =
                self.tier.query_all_u64(list, &[Some(Value::Str(mode.as_str().into()))]).await.unwrap_or_default();
            for id in ids {
                if self.cfg.reaper_gap_ms > 0 {
                    tokio::time::sleep(Duration::from_millis(self.cfg.reaper_gap_ms)).await;
                }
                let k = match mode {
                    Mode::Naive => kill_naive,
                    Mode::Guarded => kill_guarded,
                };
                self.req("queue_reap", k, &[Some(Value::Int(id as i64))]).await;
            }
        }
    }
}

/// Tasks whose final state contradicts what their worker was told, per mode.
pub async fn anomalies(opts: &sqlx::mysql::MySqlConnectOptions, told: &Told) -> anyhow::Result<serde_json::Value> {
    use sqlx::{ConnectOptions, Row};
    let completed: Vec<(u64, Mode)> = told.completed.lock().unwrap().iter().map(|(k, v)| (*k, *v)).collect();
    let mut conn = opts.clone().connect().await?;
    let mut result: HashMap<Mode, (u64, u64, Vec<u64>)> = HashMap::new();
    for chunk in completed.chunks(1000) {
        let list: Vec<String> = chunk.iter().map(|(id, _)| id.to_string()).collect();
        let rows = sqlx::Executor::fetch_all(
            &mut conn,
            format!("SELECT id, state FROM import_queue.tasks WHERE id IN ({})", list.join(",")).as_str(),
        )
        .await?;
        let states: HashMap<u64, String> = rows
            .iter()
            .map(|r| (r.try_get::<u64, _>(0).unwrap_or(0), r.try_get::<String, _>(1).unwrap_or_default()))
            .collect();
        for (id, mode) in chunk {
            let e = result.entry(*mode).or_default();
            e.0 += 1;
            if states.get(id).map(|s| s != "completed").unwrap_or(true) {
                e.1 += 1;
                if e.2.len() < 20 {
                    e.2.push(*id);
                }
            }
        }
    }
    let per = |m: Mode| {
        let (told, bad, ids) = result.get(&m).cloned().unwrap_or_default();
        serde_json::json!({"told_completed": told, "anomalies": bad, "examples": ids})
    };
    let total: u64 = result.values().map(|v| v.1).sum();
    Ok(serde_json::json!({
        "naive": per(Mode::Naive),
        "guarded": per(Mode::Guarded),
        "anomalies": total,
    }))
}
