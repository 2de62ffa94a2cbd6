//! Running a mix: goose drives the users (each runs the mix's transactions
//! in weighted round-robin), every request goes through the API tier model
//! to the endpoint, background jobs run on a timer per API node, and the
//! outcome of each request lands in a [`Recorder`].
//!
//! Two load models:
//! * closed: `users` users, each sends its next request when the last ended
//!   (plus an optional think time);
//! * open: a target arrival rate spread over the users; each request has an
//!   intended start on a fixed schedule. A request whose user was still busy
//!   at that time is measured from there, so a stalled database shows up in
//!   the numbers (as wrk2 does); one whose user was idle is measured from
//!   when the user woke for it (the timer's lateness is not the database's).

use anyhow::{anyhow, bail, Result};
use goose::prelude::*;
use serde::{Deserialize, Serialize};
use sqlx::mysql::MySqlConnectOptions;
use sqlx::{ConnectOptions, Connection, Executor};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::gen::{Generators, Rng};
use crate::mix::{Mix, Stmt};
use crate::stats::{Kind, Record, Recorder};
use crate::tier::{Outcome, Tier, TierConfig};

/// How requests arrive.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "model")]
pub enum Model {
    /// Each user sends its next request when the last ends, after `think_ms`.
    Closed {
        /// Pause between a user's requests, ms.
        think_ms: u64,
    },
    /// Requests arrive on a fixed schedule, `rate_per_s` in all, spread over the users.
    Open {
        /// Arrivals per second, all users together.
        rate_per_s: f64,
    },
}

impl Default for Model {
    fn default() -> Self {
        Model::Closed { think_ms: 0 }
    }
}

/// One load run's settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoadConfig {
    /// Concurrent users (goose users).
    pub users: usize,
    /// Closed or open model.
    pub model: Model,
    /// Users started per second (ramp-up); all at once when 0.
    pub hatch_rate: f64,
    /// Stop after this long (None: until stopped).
    pub duration: Option<Duration>,
    /// The API tier model.
    pub tier: TierConfig,
    /// Background jobs to run, overriding the mix's `enabled` (None: the mix's choice).
    pub background: Option<Vec<String>>,
    /// This load machine's shard (index, count): keeps unique ids apart and
    /// splits an open-model rate.
    pub shard: (u32, u32),
    /// Seed of the parameter draws.
    pub seed: u64,
}

impl Default for LoadConfig {
    fn default() -> Self {
        LoadConfig {
            users: 16,
            model: Model::default(),
            hatch_rate: 0.0,
            duration: Some(Duration::from_secs(30)),
            tier: TierConfig::default(),
            background: None,
            shard: (0, 1),
            seed: 1,
        }
    }
}

impl LoadConfig {
    /// Fail on settings that cannot run.
    pub fn validate(&self) -> Result<()> {
        if self.users == 0 {
            bail!("users must be at least 1");
        }
        if let Model::Open { rate_per_s } = self.model {
            if rate_per_s.is_nan() || rate_per_s <= 0.0 {
                bail!("the open model needs a positive arrival rate");
            }
        }
        if self.shard.1 == 0 || self.shard.0 >= self.shard.1 {
            bail!("shard must be i/n with 0 <= i < n, not {}/{}", self.shard.0, self.shard.1);
        }
        self.tier.validate()
    }
}

/// Switches the run reads while it goes: transactions and jobs turned off
/// (the incident's kill-switch).
#[derive(Default)]
pub struct Controls {
    disabled: RwLock<HashSet<String>>,
    stop: AtomicBool,
}

impl Controls {
    /// Turn a transaction or background job off (the kill-switch).
    pub fn disable(&self, name: &str) {
        self.disabled.write().unwrap().insert(name.to_string());
    }
    /// Turn it back on.
    pub fn enable(&self, name: &str) {
        self.disabled.write().unwrap().remove(name);
    }
    /// Whether it is off.
    pub fn is_disabled(&self, name: &str) -> bool {
        self.disabled.read().unwrap().contains(name)
    }
    /// Whether the run is stopping.
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

struct Ctx {
    mix: Mix,
    gens: Generators,
    tier: Tier,
    recorder: Arc<Recorder>,
    controls: Arc<Controls>,
    cfg: LoadConfig,
    /// Generators each transaction needs (steps' params plus the ledger).
    needs: Vec<Vec<usize>>,
    /// Background runs in flight (aborted when the load stops).
    bg_runs: std::sync::Mutex<Vec<tokio::task::AbortHandle>>,
}

#[derive(Clone)]
struct UserState {
    rng: Rng,
    next: Option<Instant>,
    interval: Duration,
    deck: Deck,
}

/// A user's order of transactions: each cycle holds every transaction as
/// many times as its weight, drawn in a random order from the user's own
/// generator. Weights hold exactly per cycle, and no two users walk the
/// same order (goose's weighted round robin sent every user through the
/// same sequence in lockstep: a rare transaction arrived from all users at
/// once, once a cycle).
#[derive(Debug, Clone)]
pub struct Deck {
    weights: Vec<u32>,
    left: Vec<u32>,
    total_left: u64,
}

impl Deck {
    /// A full deck for these weights (at least one must be positive).
    pub fn new(weights: Vec<u32>) -> Deck {
        let total_left = weights.iter().map(|w| *w as u64).sum();
        Deck { left: weights.clone(), weights, total_left }
    }

    /// The next transaction's index.
    pub fn draw(&mut self, rng: &mut Rng) -> usize {
        if self.total_left == 0 {
            self.left = self.weights.clone();
            self.total_left = self.weights.iter().map(|w| *w as u64).sum();
        }
        let mut r = rng.below(self.total_left.max(1));
        for (i, n) in self.left.iter_mut().enumerate() {
            if r < *n as u64 {
                *n -= 1;
                self.total_left -= 1;
                return i;
            }
            r -= *n as u64;
        }
        0
    }
}

/// A mix checked against its target, ready to run.
pub struct Load {
    ctx: Arc<Ctx>,
    bg_needs: Vec<Vec<usize>>,
}

/// Check every statement of the mix against the server (so a typo or a
/// missing table fails before any load, with its place in the file) and
/// read the dataset's row counts.
pub async fn check_against(mix: &Mix, opts: &MySqlConnectOptions) -> Result<coldswap_dataset::Counts> {
    let mut conn = opts
        .clone()
        .database(&mix.database)
        .disable_statement_logging()
        .connect()
        .await
        .map_err(|e| anyhow!("cannot connect to the load target: {}", coldswap_sql::describe(&e)))?;
    let needs_dataset = mix.generators.iter().any(|g| g.kind.table().is_some());
    let counts = match coldswap_dataset::read_counts(&mut conn).await? {
        Some(c) => c,
        None if needs_dataset => bail!("the target holds no seeded dataset (run `coldswap seed` first)"),
        None => coldswap_dataset::Counts::at(1e-9),
    };
    let all = mix
        .transactions
        .iter()
        .map(|t| ("transaction", &t.name, &t.steps))
        .chain(mix.background.iter().map(|b| ("background job", &b.name, &b.steps)));
    for (what, name, steps) in all {
        for s in steps {
            if let Err(e) = (&mut conn).prepare(s.sql.as_str()).await {
                bail!("{}: {what} '{name}': {}", mix.at(s.line), coldswap_sql::describe(&e));
            }
        }
    }
    let _ = conn.close().await;
    Ok(counts)
}

fn needs_of(steps: &[Stmt], ledger: Option<usize>) -> Vec<usize> {
    let mut v: Vec<usize> = steps.iter().flat_map(|s| s.params.iter().copied()).collect();
    v.extend(ledger);
    v.sort();
    v.dedup();
    v
}

impl Load {
    /// Check the mix against the endpoint and build the API tier.
    /// `opts` are the application user's options for the endpoint.
    pub async fn prepare(
        mix: Mix,
        opts: MySqlConnectOptions,
        cfg: LoadConfig,
        recorder: Arc<Recorder>,
    ) -> Result<Load> {
        cfg.validate()?;
        if let Some(names) = &cfg.background {
            for n in names {
                if !mix.background.iter().any(|b| &b.name == n) {
                    bail!("background job '{n}' is not in {}", mix.file.display());
                }
            }
        }
        let counts = check_against(&mix, &opts).await?;
        let gens = Generators::new(mix.generators.clone(), counts, cfg.shard.0);
        let tier = Tier::new(opts.database(&mix.database), cfg.tier.clone());
        let needs = mix.transactions.iter().map(|t| needs_of(&t.steps, t.ledger)).collect();
        let bg_needs = mix.background.iter().map(|b| needs_of(&b.steps, None)).collect();
        Ok(Load {
            ctx: Arc::new(Ctx {
                mix,
                gens,
                tier,
                recorder,
                controls: Arc::new(Controls::default()),
                cfg,
                needs,
                bg_runs: std::sync::Mutex::new(Vec::new()),
            }),
            bg_needs,
        })
    }

    /// The API tier this load goes through (shared with other workloads).
    pub fn tier(&self) -> crate::tier::Tier {
        self.ctx.tier.clone()
    }

    /// The run's switches.
    pub fn controls(&self) -> Arc<Controls> {
        self.ctx.controls.clone()
    }

    /// Where outcomes go.
    pub fn recorder(&self) -> Arc<Recorder> {
        self.ctx.recorder.clone()
    }

    /// The mix being run.
    pub fn mix(&self) -> &Mix {
        &self.ctx.mix
    }

    /// Run until the duration passes or [`Controls`] says stop.
    pub async fn run(&self) -> Result<()> {
        let ctx = self.ctx.clone();
        // Background jobs: one timer per job per API node.
        let mut bg = Vec::new();
        for (j, b) in ctx.mix.background.iter().enumerate() {
            let on = match &ctx.cfg.background {
                Some(list) => list.contains(&b.name),
                None => b.enabled,
            };
            if !on {
                continue;
            }
            for node in 0..ctx.mix.api_nodes {
                let ctx = ctx.clone();
                let needs = self.bg_needs[j].clone();
                bg.push(tokio::spawn(async move { background_loop(ctx, j, node, needs).await }));
            }
        }
        // A ticker closes quiet seconds of the timeline.
        let tick = {
            let ctx = ctx.clone();
            tokio::spawn(async move {
                while !ctx.controls.stopping() {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    ctx.recorder.tick();
                }
            })
        };
        let r = self.run_goose().await;
        ctx.controls.stop.store(true, Ordering::SeqCst);
        for h in bg {
            h.abort();
        }
        for h in ctx.bg_runs.lock().unwrap().drain(..) {
            h.abort();
        }
        tick.abort();
        ctx.tier.close().await;
        r
    }

    /// Ask a running load to stop (it returns from [`Load::run`] soon after).
    pub fn stop(&self) {
        self.ctx.controls.stop.store(true, Ordering::SeqCst);
    }

    async fn run_goose(&self) -> Result<()> {
        let ctx = self.ctx.clone();
        let mut scenario = Scenario::new(&ctx.mix.name.replace(|c: char| !c.is_ascii_alphanumeric(), "_"));
        let c0 = ctx.clone();
        let on_start: TransactionFunction = Arc::new(move |user| {
            let ctx = c0.clone();
            Box::pin(async move {
                let i = user.weighted_users_index as u64;
                let mut st = UserState {
                    rng: Rng::new(ctx.cfg.seed.wrapping_mul(1_000_003) ^ i),
                    next: None,
                    interval: Duration::ZERO,
                    deck: Deck::new(ctx.mix.transactions.iter().map(|t| t.weight).collect()),
                };
                if let Model::Open { rate_per_s } = ctx.cfg.model {
                    // This shard's share of the rate, spread evenly over its users.
                    let per_shard = rate_per_s / ctx.cfg.shard.1 as f64;
                    let interval = Duration::from_secs_f64(ctx.cfg.users as f64 / per_shard);
                    let offset = interval.mul_f64((i % ctx.cfg.users as u64) as f64 / ctx.cfg.users as f64);
                    st.interval = interval;
                    st.next = Some(Instant::now() + offset);
                }
                user.set_session_data(st);
                Ok(())
            })
        });
        scenario = scenario.register_transaction(Transaction::new(on_start).set_name("start").set_on_start());
        // One goose transaction: each request is the next card of the user's own deck.
        let c = ctx.clone();
        let f: TransactionFunction = Arc::new(move |user| {
            let ctx = c.clone();
            Box::pin(async move {
                let i = {
                    let st = user.get_session_data_mut::<UserState>().expect("user state set at start");
                    let UserState { rng, deck, .. } = st;
                    deck.draw(rng)
                };
                run_transaction(&ctx, i, user).await
            })
        });
        scenario = scenario.register_transaction(Transaction::new(f).set_name("request"));
        let mut config = goose::config::GooseConfiguration::default();
        // goose wants a host URL; it only parses it. No credentials in it:
        // goose prints it in its reports.
        config.host = Some("mysql://127.0.0.1:3306".into());
        config.users = Some(ctx.cfg.users);
        // "All at once": goose launches users `1/rate` s apart and holds its
        // ramp step for users/rate s, so a rate of `users` would idle away
        // the first second of every run; a millisecond's ramp starts them
        // together.
        let rate = if ctx.cfg.hatch_rate > 0.0 { ctx.cfg.hatch_rate } else { ctx.cfg.users as f64 * 1000.0 };
        config.increase_rate = Some(format!("{rate}"));
        if let Some(d) = ctx.cfg.duration {
            config.run_time = Some(format!("{}s", d.as_secs().max(1)));
        }
        config.quiet = 1;
        config.no_print_metrics = true;
        config.no_error_summary = true;
        config.no_telnet = true;
        config.no_transaction_metrics = true;
        config.no_scenario_metrics = true;
        config.no_status_codes = true;
        config.no_percentiles_over_time = true;
        // goose's killswitch is one per process and goose clears it when an
        // attack starts: wait for loads still stopping to end first, then
        // join the loads the killswitch would stop.
        let _attack = attacks::join(ctx.controls.clone()).await;
        if coldswap_signals::received().is_some() {
            bail!(coldswap_signals::Interrupted(coldswap_signals::received().unwrap()));
        }
        let attack = GooseAttack::initialize_with_config(config).map_err(|e| anyhow!("goose: {e:?}"))?;
        let watcher = tokio::spawn(async move {
            // Our stop flag and our signals reach goose through its killswitch,
            // pulled only once every load in the process is stopping (a
            // load that stops early idles until then; see `transaction`).
            loop {
                if attacks::all_stopping() || coldswap_signals::received().is_some() {
                    goose::trigger_killswitch("coldswap: stop");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        let r = attack.register_scenario(scenario).execute().await;
        watcher.abort();
        match r {
            Ok(_) => Ok(()),
            Err(e) => Err(anyhow!("goose: {e:?}")),
        }
    }
}

async fn run_transaction(ctx: &Ctx, i: usize, user: &mut GooseUser) -> TransactionResult {
    let t = &ctx.mix.transactions[i];
    if ctx.controls.stopping() {
        tokio::time::sleep(Duration::from_millis(50)).await;
        return Ok(());
    }
    if ctx.controls.is_disabled(&t.name) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        return Ok(());
    }
    let (vals, intended) = {
        let st = user.get_session_data_mut::<UserState>().expect("user state set at start");
        let vals = ctx.gens.draw(&mut st.rng, &ctx.needs[i]);
        let intended = match st.next {
            Some(n) => {
                st.next = Some(n + st.interval);
                Some(n)
            }
            None => None,
        };
        (vals, intended)
    };
    let full = Duration::from_millis(ctx.cfg.tier.deadline_ms);
    let (start, deadline) = match intended {
        Some(at) if at > Instant::now() => {
            // Ahead of schedule: wait for the request's arrival. tokio's
            // timer fires on a 1 ms tick, up to ~1-2 ms after `at`; that
            // lateness is ours, not the database's (it read as a 1.1 ms p50
            // for 0.11 ms point selects), so the clock starts on waking.
            tokio::time::sleep_until(at.into()).await;
            let now = Instant::now();
            ctx.recorder.sent_late(now - at);
            (now, Some(full))
        }
        Some(at) => {
            // Behind schedule (the user's last request ran past this one's
            // arrival): the request has waited since `at` and its deadline
            // runs from there, so one that waited too long for the API
            // fails as a timeout and a stalled database shows up in the
            // numbers (no coordinated omission).
            (at, full.checked_sub(at.elapsed()))
        }
        None => (Instant::now(), Some(full)),
    };
    let out: Outcome = match deadline {
        Some(d) if !d.is_zero() => ctx.tier.request(&t.steps, &vals, t.atomic, Some(d)).await,
        _ => Outcome {
            ok: false,
            class: Some(crate::tier::FailClass::DeadlineExceeded),
            error: Some(format!("deadline of {} ms passed before the API could start it", full.as_millis())),
            attempts: 0,
            rows: 0,
        },
    };
    let latency = start.elapsed();
    if out.ok {
        if let Some(l) = t.ledger {
            if let Some(id) = vals[l].as_ref().and_then(|v| v.as_i64()) {
                ctx.recorder.ack_write(id as u64);
            }
        }
    }
    ctx.recorder.record(&Record {
        name: &t.name,
        kind: Kind::Transaction,
        latency,
        ok: out.ok,
        class: out.class,
        error: out.error.as_deref(),
        attempts: out.attempts,
        rows: out.rows,
    });
    let _ =
        user.record_custom_request_duration("SQL", &t.name, latency, out.ok, None, out.class.map(|c| c.as_str())).await;
    if let Model::Closed { think_ms } = ctx.cfg.model {
        if think_ms > 0 {
            tokio::time::sleep(Duration::from_millis(think_ms)).await;
        }
    }
    Ok(())
}

async fn background_loop(ctx: Arc<Ctx>, j: usize, node: u32, needs: Vec<usize>) {
    let b = &ctx.mix.background[j];
    let mut rng = Rng::new(ctx.cfg.seed ^ (0xB6 << 32) ^ ((j as u64) << 16) ^ node as u64);
    // Nodes are spread over the period, as independent API servers are.
    let offset = b.period.mul_f64(node as f64 / ctx.mix.api_nodes as f64);
    let mut next = Instant::now() + offset;
    // Runs of this job on this node still going (overlap: a scheduler fires
    // every period whether the last run finished or not).
    let running = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    const MAX_RUNNING: usize = 256;
    loop {
        let now = Instant::now();
        if next > now {
            tokio::time::sleep(next - now).await;
        }
        if ctx.controls.stopping() {
            return;
        }
        next += b.period;
        if next < Instant::now() {
            next = Instant::now();
        }
        if ctx.controls.is_disabled(&b.name) {
            continue;
        }
        let vals = ctx.gens.draw(&mut rng, &needs);
        let run = {
            let ctx = ctx.clone();
            let running = running.clone();
            async move {
                let b = &ctx.mix.background[j];
                let t = Instant::now();
                let out = ctx.tier.request(&b.steps, &vals, false, Some(b.timeout)).await;
                running.fetch_sub(1, Ordering::SeqCst);
                if ctx.controls.stopping() {
                    return;
                }
                ctx.recorder.record(&Record {
                    name: &b.name,
                    kind: Kind::Background,
                    latency: t.elapsed(),
                    ok: out.ok,
                    class: out.class,
                    error: out.error.as_deref(),
                    attempts: out.attempts,
                    rows: out.rows,
                });
            }
        };
        if b.overlap {
            if running.load(Ordering::SeqCst) >= MAX_RUNNING {
                continue;
            }
            running.fetch_add(1, Ordering::SeqCst);
            let h = tokio::spawn(run).abort_handle();
            let mut runs = ctx.bg_runs.lock().unwrap();
            runs.retain(|h| !h.is_finished());
            runs.push(h);
        } else {
            running.fetch_add(1, Ordering::SeqCst);
            run.await;
        }
    }
}

/// Load a mix file with a one-line error.
pub fn load_mix(path: &std::path::Path) -> Result<Mix> {
    Mix::load(path).map_err(|e| anyhow!(e))
}

#[cfg(test)]
mod deck_tests {
    use super::*;

    #[test]
    fn a_deck_honours_weights_per_cycle_and_users_differ() {
        let weights = vec![900, 10, 1];
        let mut a = Deck::new(weights.clone());
        let mut rng = Rng::new(1);
        let mut counts = [0u32; 3];
        let mut order_a = Vec::new();
        for _ in 0..911 * 3 {
            let i = a.draw(&mut rng);
            counts[i] += 1;
            order_a.push(i);
        }
        assert_eq!(counts, [2700, 30, 3]);
        // Another user (another seed) draws another order, with the same counts.
        let mut b = Deck::new(weights);
        let mut rng = Rng::new(2);
        let order_b: Vec<usize> = (0..911).map(|_| b.draw(&mut rng)).collect();
        assert_ne!(order_a[..911], order_b[..]);
        assert_eq!(order_b.iter().filter(|i| **i == 2).count(), 1);
        // The rare card sits at different places in different users' cycles.
        let pos = |o: &[usize]| o.iter().position(|i| *i == 2).unwrap();
        assert_ne!(pos(&order_a[..911]), pos(&order_b));
    }
}

/// The goose attacks running in this process. goose's killswitch stops them
/// all, so it is pulled only when all of them are stopping, and an attack
/// starts (which clears the killswitch) only once none is stopping.
mod attacks {
    use super::Controls;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    static RUNNING: Mutex<Vec<Arc<Controls>>> = Mutex::new(Vec::new());

    /// Membership for the life of one attack.
    pub(super) struct Member(Arc<Controls>);

    impl Drop for Member {
        fn drop(&mut self) {
            RUNNING.lock().unwrap_or_else(|e| e.into_inner()).retain(|c| !Arc::ptr_eq(c, &self.0));
        }
    }

    /// Join once no running attack is stopping; clears the killswitch.
    pub(super) async fn join(controls: Arc<Controls>) -> Member {
        loop {
            {
                let mut running = RUNNING.lock().unwrap_or_else(|e| e.into_inner());
                if running.iter().all(|c| !c.stopping()) {
                    goose::reset_killswitch();
                    running.push(controls.clone());
                    return Member(controls);
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Every attack in the process is stopping.
    pub(super) fn all_stopping() -> bool {
        RUNNING.lock().unwrap_or_else(|e| e.into_inner()).iter().all(|c| c.stopping())
    }
}
