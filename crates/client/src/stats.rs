//! Results: per phase, per transaction and per background job, counts,
//! errors by class and latency percentiles from HDR histograms (every
//! request, no sampling), plus a per-second timeline of throughput, p99 and
//! errors. Memory stays flat as a run gets longer: histograms have a fixed
//! size, and a finished second keeps only its summary.

use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::tier::FailClass;

/// Microseconds, 1 us .. 1 h, 3 significant digits.
fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("histogram bounds")
}

/// Coarser histogram for one second of the timeline.
fn new_sec_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 2).expect("histogram bounds")
}

/// What a row counts: API requests or background jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// An API request (a mix transaction).
    Transaction,
    /// A background job run (the notification dispatcher, a reaper).
    Background,
}

struct Acc {
    kind: Kind,
    hist: Histogram<u64>,
    count: u64,
    ok: u64,
    attempts: u64,
    errors: BTreeMap<FailClass, u64>,
    samples: Vec<String>,
    /// Rows returned by successful requests.
    rows: u64,
    /// The earliest arrival recorded and its latency (us): the phase's first request.
    first: Option<(f64, u64)>,
}

impl Acc {
    fn new(kind: Kind) -> Acc {
        Acc {
            kind,
            hist: new_hist(),
            count: 0,
            ok: 0,
            attempts: 0,
            errors: BTreeMap::new(),
            samples: Vec::new(),
            rows: 0,
            first: None,
        }
    }
}

struct Phase {
    name: String,
    start: f64,
    end: Option<f64>,
    acc: BTreeMap<String, Acc>,
}

struct Second {
    t: u64,
    hist: Histogram<u64>,
    count: u64,
    errors: u64,
    by_class: BTreeMap<FailClass, u64>,
    /// Per transaction: latencies (us) and failures of the second.
    by_txn: BTreeMap<String, (Vec<u64>, u64)>,
}

impl Second {
    fn new(t: u64, hist: Histogram<u64>) -> Second {
        Second { t, hist, count: 0, errors: 0, by_class: BTreeMap::new(), by_txn: BTreeMap::new() }
    }
}

struct Inner {
    phases: Vec<Phase>,
    /// Closed seconds, compact: a run keeps one per second for hours.
    seconds: Vec<Closed>,
    /// Transaction and phase names the closed seconds refer to.
    names: Names,
    current: Option<Second>,
    ledger: Ledger,
    events: Vec<Event>,
}

/// Interned names (transactions, jobs, phases), by index.
#[derive(Default)]
struct Names {
    list: Vec<String>,
    index: HashMap<String, u32>,
}

impl Names {
    fn id(&mut self, name: &str) -> u32 {
        if let Some(i) = self.index.get(name) {
            return *i;
        }
        let i = self.list.len() as u32;
        self.list.push(name.to_string());
        self.index.insert(name.to_string(), i);
        i
    }
}

/// A closed second as kept in memory (`SecondSummary` without its strings
/// and maps: ~30 bytes a transaction instead of ~150).
struct Closed {
    t: u64,
    phase: u32,
    count: u64,
    errors: u64,
    by_class: Box<[(FailClass, u64)]>,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    /// (name, count, errors, p99 ms).
    by_txn: Box<[(u32, u32, u32, f64)]>,
}

impl Closed {
    fn expand(&self, names: &Names) -> SecondSummary {
        let name = |i: u32| names.list[i as usize].clone();
        SecondSummary {
            t: self.t,
            phase: name(self.phase),
            count: self.count,
            errors: self.errors,
            errors_by_class: self.by_class.iter().map(|(k, v)| (k.as_str().to_string(), *v)).collect(),
            p50_ms: self.p50_ms,
            p99_ms: self.p99_ms,
            max_ms: self.max_ms,
            by_txn: self
                .by_txn
                .iter()
                .map(|(n, c, e, p)| (name(*n), TxnSecond { count: *c as u64, errors: *e as u64, p99_ms: *p }))
                .collect(),
        }
    }
}

/// Acknowledged write ids, a bit each in 64-bit words keyed by id / 64:
/// `unique` ids (a run's base and a sequence, see `gen`) come dense, so a
/// long run keeps well under a byte per write instead of 8; ids of any other
/// generator, however spread, cost a word entry at worst.
#[derive(Default)]
struct Ledger {
    words: BTreeMap<u64, u64>,
    len: usize,
}

impl Ledger {
    fn insert(&mut self, id: u64) {
        let w = self.words.entry(id / 64).or_insert(0);
        let bit = 1u64 << (id % 64);
        if *w & bit == 0 {
            *w |= bit;
            self.len += 1;
        }
    }

    fn ids(&self) -> Vec<u64> {
        let mut v = Vec::with_capacity(self.len);
        for (w, bits) in &self.words {
            let mut b = *bits;
            while b != 0 {
                v.push(w * 64 + b.trailing_zeros() as u64);
                b &= b - 1;
            }
        }
        v
    }
}

/// Records outcomes from every user concurrently.
pub struct Recorder {
    start: Instant,
    inner: Mutex<Inner>,
    /// How late the open model's sends left against their schedule (us),
    /// for requests whose user was idle and waiting for their arrival: a
    /// load generator starved of CPU sends late, a slow database does not
    /// make this late (its delay is the request's latency).
    late: Mutex<Histogram<u64>>,
}

/// One request's outcome, as recorded.
pub struct Record<'a> {
    /// Transaction or background job name.
    pub name: &'a str,
    /// Request or background job.
    pub kind: Kind,
    /// From its intended start (open model) or its send (closed model) to its end.
    pub latency: Duration,
    /// Whether it succeeded.
    pub ok: bool,
    /// Its failure class, when it failed.
    pub class: Option<FailClass>,
    /// The error message, when it failed.
    pub error: Option<&'a str>,
    /// Attempts, retries included.
    pub attempts: u32,
    /// Rows returned or changed.
    pub rows: u64,
}

/// A marked moment of a run (phase start, switchover, kill-switch).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Event {
    /// Seconds since the run started.
    pub t: f64,
    /// `upgraded`, `fenced`, `switchover`, `kill-switch`, a phase name.
    pub name: String,
    /// What it concerns (a node, a transaction).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// One second of the run (`timeline[]`): requests that ended in it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SecondSummary {
    /// Seconds since the run started (the second that ended requests).
    pub t: u64,
    /// The phase running at that second.
    pub phase: String,
    /// API requests that ended in the second.
    pub count: u64,
    /// Of them, those that failed.
    pub errors: u64,
    /// Failures of the second by class.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub errors_by_class: BTreeMap<String, u64>,
    /// Median latency of the second, ms.
    pub p50_ms: f64,
    /// 99th percentile of the second, ms.
    pub p99_ms: f64,
    /// Slowest request of the second, ms.
    pub max_ms: f64,
    /// Each transaction's and background job's requests that ended in the second.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub by_txn: BTreeMap<String, TxnSecond>,
}

/// One transaction in one second of the timeline.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TxnSecond {
    /// Its requests that ended in the second.
    pub count: u64,
    /// Of them, failed.
    pub errors: u64,
    /// Their 99th percentile, ms.
    pub p99_ms: f64,
}

/// One transaction's (or background job's) results in a phase.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TxnResult {
    /// Its name in the mix.
    pub name: String,
    /// Request or background job.
    pub kind: Kind,
    /// Requests that arrived in the phase.
    pub count: u64,
    /// Of them, those that succeeded.
    pub ok: u64,
    /// Requests that failed, by class.
    pub errors: BTreeMap<String, u64>,
    /// Failed / all.
    pub error_rate: f64,
    /// Attempts including client retries.
    pub attempts: u64,
    /// Successful requests per second.
    pub throughput_per_s: f64,
    /// Mean latency, ms.
    pub mean_ms: f64,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 90th percentile, ms.
    pub p90_ms: f64,
    /// 95th percentile, ms.
    pub p95_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// 99.9th percentile, ms.
    pub p999_ms: f64,
    /// Slowest request, ms.
    pub max_ms: f64,
    /// Rows returned or changed.
    pub rows: u64,
    /// Latency of the phase's first request (the earliest to arrive), ms:
    /// on a cold volume, what one run costs before anything is warm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_ms: Option<f64>,
    /// First distinct error messages.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub error_samples: Vec<String>,
    /// The whole latency histogram (HDR V2 + deflate, base64), for exact merges.
    pub histogram: String,
}

/// Everything recorded in one phase.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PhaseResult {
    /// The phase's name.
    pub name: String,
    /// Start, seconds since the run started.
    pub start_s: f64,
    /// End, seconds since the run started.
    pub end_s: f64,
    /// API transactions.
    pub transactions: Vec<TxnResult>,
    /// Background jobs.
    pub background: Vec<TxnResult>,
}

impl PhaseResult {
    /// How long the phase ran, s.
    pub fn duration_s(&self) -> f64 {
        (self.end_s - self.start_s).max(0.0)
    }

    /// A transaction's or background job's results, by name.
    pub fn txn(&self, name: &str) -> Option<&TxnResult> {
        self.transactions.iter().chain(self.background.iter()).find(|t| t.name == name)
    }

    /// All transactions together (not background jobs).
    pub fn total_requests(&self) -> (u64, u64) {
        self.transactions.iter().fold((0, 0), |(c, e), t| (c + t.count, e + (t.count - t.ok)))
    }
}

/// A whole run: phases, the per-second timeline, events.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunResult {
    /// Every phase, in order.
    pub phases: Vec<PhaseResult>,
    /// One row per second.
    pub timeline: Vec<SecondSummary>,
    /// Marked moments.
    pub events: Vec<Event>,
    /// Ids of writes acknowledged to clients (the write ledger).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub acked_writes: Vec<u64>,
}

impl RunResult {
    /// A phase's results, by name.
    pub fn phase(&self, name: &str) -> Option<&PhaseResult> {
        self.phases.iter().find(|p| p.name == name)
    }
}

/// Microseconds to milliseconds.
pub fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// A histogram as base64 of its V2 serialization (report.json keeps them, for exact merges).
pub fn encode_hist(h: &Histogram<u64>) -> String {
    let mut buf = Vec::new();
    let _ = V2DeflateSerializer::new().serialize(h, &mut buf);
    base64_encode(&buf)
}

/// The inverse of [`encode_hist`].
pub fn decode_hist(s: &str) -> Option<Histogram<u64>> {
    let bytes = base64_decode(s)?;
    Deserializer::new().deserialize(&mut std::io::Cursor::new(bytes)).ok()
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64_encode(b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len().div_ceil(3) * 4);
    for c in b.chunks(3) {
        let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
        out.push(B64[(n >> 18) as usize & 63] as char);
        out.push(B64[(n >> 12) as usize & 63] as char);
        out.push(if c.len() > 1 { B64[(n >> 6) as usize & 63] as char } else { '=' });
        out.push(if c.len() > 2 { B64[n as usize & 63] as char } else { '=' });
    }
    out
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let val = |c: u8| -> Option<u32> { B64.iter().position(|x| *x == c).map(|p| p as u32) };
    let bytes: Vec<u8> = s.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
    for c in bytes.chunks(4) {
        if c.len() < 4 {
            return None;
        }
        let pad = c.iter().filter(|x| **x == b'=').count();
        let mut n = 0u32;
        for (i, x) in c.iter().enumerate() {
            let v = if *x == b'=' { 0 } else { val(*x)? };
            n |= v << (18 - 6 * i);
        }
        out.push((n >> 16) as u8);
        if pad < 2 {
            out.push((n >> 8) as u8);
        }
        if pad < 1 {
            out.push(n as u8);
        }
    }
    Some(out)
}

/// What a transaction's requests came to, beside its latency histogram.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    /// Requests (ok or not).
    pub count: u64,
    /// Requests that succeeded.
    pub ok: u64,
    /// Attempts, retries included.
    pub attempts: u64,
    /// Failures by class.
    pub errors: BTreeMap<String, u64>,
    /// Rows returned or changed.
    pub rows: u64,
    /// A few error messages, for the report.
    pub samples: Vec<String>,
}

/// Summarise a histogram and its tally into a result row.
pub fn txn_result(name: &str, kind: Kind, hist: &Histogram<u64>, tally: Tally, duration_s: f64) -> TxnResult {
    let Tally { count, ok, attempts, errors, rows, samples } = tally;
    let q = |p: f64| if hist.is_empty() { 0.0 } else { ms(hist.value_at_quantile(p)) };
    TxnResult {
        name: name.to_string(),
        kind,
        count,
        ok,
        error_rate: if count == 0 { 0.0 } else { (count - ok) as f64 / count as f64 },
        errors,
        attempts,
        throughput_per_s: if duration_s > 0.0 { ok as f64 / duration_s } else { 0.0 },
        mean_ms: if hist.is_empty() { 0.0 } else { hist.mean() / 1000.0 },
        p50_ms: q(0.50),
        p90_ms: q(0.90),
        p95_ms: q(0.95),
        p99_ms: q(0.99),
        p999_ms: q(0.999),
        max_ms: if hist.is_empty() { 0.0 } else { ms(hist.max()) },
        rows,
        first_ms: None,
        error_samples: samples,
        histogram: encode_hist(hist),
    }
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Recorder")
    }
}

impl Recorder {
    /// A recorder whose clock starts now.
    pub fn new() -> Recorder {
        Recorder {
            start: Instant::now(),
            inner: Mutex::new(Inner {
                phases: vec![Phase { name: "run".into(), start: 0.0, end: None, acc: BTreeMap::new() }],
                seconds: Vec::new(),
                names: Names::default(),
                current: None,
                ledger: Ledger::default(),
                events: Vec::new(),
            }),
            late: Mutex::new(Histogram::new_with_bounds(1, 3_600_000_000, 2).expect("histogram bounds")),
        }
    }

    /// An open-model send left `late` after its scheduled arrival.
    pub fn sent_late(&self, late: Duration) {
        let us = (late.as_micros() as u64).clamp(1, 3_600_000_000);
        let _ = self.late.lock().unwrap().record(us);
    }

    /// Sends counted since the last call, and how late their 99th percentile
    /// left, ms; the count starts again.
    pub fn take_send_lateness(&self) -> (u64, f64) {
        let mut h = self.late.lock().unwrap();
        let out = (h.len(), if h.is_empty() { 0.0 } else { ms(h.value_at_quantile(0.99)) });
        h.reset();
        out
    }

    /// Seconds since the recorder started.
    pub fn elapsed(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// When the recorder started.
    pub fn started(&self) -> Instant {
        self.start
    }

    /// Start a new phase: what is recorded from now on belongs to it. The
    /// first phase replaces the implicit "run" phase if nothing was recorded.
    pub fn phase(&self, name: &str) {
        let t = self.elapsed();
        let mut g = self.inner.lock().unwrap();
        if g.phases.len() == 1 && g.phases[0].name == "run" && g.phases[0].acc.is_empty() {
            g.phases[0].name = name.to_string();
            g.phases[0].start = t;
        } else {
            if let Some(p) = g.phases.last_mut() {
                p.end = Some(t);
            }
            g.phases.push(Phase { name: name.to_string(), start: t, end: None, acc: BTreeMap::new() });
        }
        g.events.push(Event { t, name: format!("phase:{name}"), detail: String::new() });
    }

    /// The phase being recorded.
    pub fn current_phase(&self) -> String {
        self.inner.lock().unwrap().phases.last().map(|p| p.name.clone()).unwrap_or_default()
    }

    /// Mark a moment (`upgraded`, `fenced`, ...).
    pub fn event(&self, name: &str, detail: &str) {
        let t = self.elapsed();
        self.inner.lock().unwrap().events.push(Event { t, name: name.to_string(), detail: detail.to_string() });
    }

    /// For a live view: the phase running, the last whole second, and the
    /// events from index `from` on.
    pub fn tail(&self, from: usize) -> (String, Option<SecondSummary>, Vec<Event>) {
        let now = self.start.elapsed().as_secs();
        let mut g = self.inner.lock().unwrap();
        // Only once requests flow: a view must not start the timeline
        // (the report's begins with the first request).
        if g.current.is_some() {
            roll(&mut g, now);
        }
        let phase = g.phases.last().map(|p| p.name.clone()).unwrap_or_default();
        let last = g.seconds.last().map(|c| c.expand(&g.names));
        let events = g.events.get(from..).map(|e| e.to_vec()).unwrap_or_default();
        (phase, last, events)
    }

    /// Note a write the server acknowledged (the write ledger's id).
    pub fn ack_write(&self, id: u64) {
        self.inner.lock().unwrap().ledger.insert(id);
    }

    /// Record one request's outcome in the current phase and second.
    pub fn record(&self, r: &Record<'_>) {
        let us = (r.latency.as_micros() as u64).clamp(1, 3_600_000_000);
        let elapsed = self.start.elapsed();
        let now = elapsed.as_secs();
        // A request belongs to the phase it arrived in (its latency runs
        // from its arrival, or its intended start in the open model): a
        // backlog that built up during a warm-up or a switchover and drains
        // after it is that phase's, not the next one's.
        let arrived = elapsed.saturating_sub(r.latency).as_secs_f64();
        let mut g = self.inner.lock().unwrap();
        let g = &mut *g;
        let at = g.phases.iter().rposition(|p| p.start <= arrived).unwrap_or(0);
        let phase = &mut g.phases[at];
        // Look up before inserting: no allocation on the hot path.
        if !phase.acc.contains_key(r.name) {
            phase.acc.insert(r.name.to_string(), Acc::new(r.kind));
        }
        let acc = phase.acc.get_mut(r.name).unwrap();
        acc.count += 1;
        acc.attempts += r.attempts as u64;
        let _ = acc.hist.record(us);
        if acc.first.map(|(a, _)| arrived < a).unwrap_or(true) {
            acc.first = Some((arrived, us));
        }
        if r.ok {
            acc.ok += 1;
            acc.rows += r.rows;
        } else {
            let c = r.class.unwrap_or(FailClass::Other);
            *acc.errors.entry(c).or_insert(0) += 1;
            if acc.samples.len() < 5 {
                if let Some(e) = r.error {
                    let e = format!("{}: {}", c.as_str(), e);
                    if !acc.samples.contains(&e) {
                        acc.samples.push(e);
                    }
                }
            }
        }
        // Timeline: the second's totals count API requests only; every
        // transaction and background job gets its own per-second row, so
        // compare can tell a stall of a few seconds from a slower run.
        roll(g, now);
        let cur = g.current.as_mut().unwrap();
        if r.kind == Kind::Transaction {
            // The timeline counts by completion, under the phase running now.
            cur.count += 1;
            let _ = cur.hist.record(us);
            if !r.ok {
                cur.errors += 1;
                *cur.by_class.entry(r.class.unwrap_or(FailClass::Other)).or_insert(0) += 1;
            }
        }
        if !cur.by_txn.contains_key(r.name) {
            cur.by_txn.insert(r.name.to_string(), (Vec::new(), 0));
        }
        let t = cur.by_txn.get_mut(r.name).unwrap();
        t.0.push(us);
        if !r.ok {
            t.1 += 1;
        }
    }

    /// Close the open second(s) up to now, so quiet seconds show as zeros.
    pub fn tick(&self) {
        let now = self.start.elapsed().as_secs();
        roll(&mut self.inner.lock().unwrap(), now);
    }

    /// Everything so far (phases still open end now).
    pub fn snapshot(&self) -> RunResult {
        let t = self.elapsed();
        let mut g = self.inner.lock().unwrap();
        let phase_now = g.phases.last().map(|p| p.name.clone()).unwrap_or_default();
        let now = self.start.elapsed().as_secs();
        roll(&mut g, now);
        let mut timeline: Vec<SecondSummary> = g.seconds.iter().map(|c| c.expand(&g.names)).collect();
        if let Some(c) = &g.current {
            timeline.push(summary(c, &phase_now));
        }
        let phases = g
            .phases
            .iter()
            .map(|p| {
                let end = p.end.unwrap_or(t);
                let dur = (end - p.start).max(1e-9);
                let mut transactions = Vec::new();
                let mut background = Vec::new();
                for (name, a) in &p.acc {
                    let errors = a.errors.iter().map(|(k, v)| (k.as_str().to_string(), *v)).collect();
                    let tally = Tally {
                        count: a.count,
                        ok: a.ok,
                        attempts: a.attempts,
                        errors,
                        rows: a.rows,
                        samples: a.samples.clone(),
                    };
                    let mut r = txn_result(name, a.kind, &a.hist, tally, dur);
                    r.first_ms = a.first.map(|(_, us)| ms(us));
                    match a.kind {
                        Kind::Transaction => transactions.push(r),
                        Kind::Background => background.push(r),
                    }
                }
                PhaseResult { name: p.name.clone(), start_s: p.start, end_s: end, transactions, background }
            })
            .collect();
        RunResult { phases, timeline, events: g.events.clone(), acked_writes: g.ledger.ids() }
    }
}

fn summary(s: &Second, phase: &str) -> SecondSummary {
    SecondSummary {
        t: s.t,
        phase: phase.to_string(),
        count: s.count,
        errors: s.errors,
        errors_by_class: s.by_class.iter().map(|(k, v)| (k.as_str().to_string(), *v)).collect(),
        p50_ms: if s.hist.is_empty() { 0.0 } else { ms(s.hist.value_at_quantile(0.5)) },
        p99_ms: if s.hist.is_empty() { 0.0 } else { ms(s.hist.value_at_quantile(0.99)) },
        max_ms: if s.hist.is_empty() { 0.0 } else { ms(s.hist.max()) },
        by_txn: s
            .by_txn
            .iter()
            .map(|(name, (lat, errors))| {
                let mut v = lat.clone();
                v.sort_unstable();
                let p99 = v.get(((v.len() as f64 * 0.99).ceil() as usize).saturating_sub(1)).copied().unwrap_or(0);
                (name.clone(), TxnSecond { count: v.len() as u64, errors: *errors, p99_ms: ms(p99) })
            })
            .collect(),
    }
}

/// A closed second, kept compact.
fn compact(sec: &Second, phase: &str, names: &mut Names) -> Closed {
    let s = summary(sec, phase);
    Closed {
        t: s.t,
        phase: names.id(&s.phase),
        count: s.count,
        errors: s.errors,
        by_class: sec.by_class.iter().map(|(k, v)| (*k, *v)).collect(),
        p50_ms: s.p50_ms,
        p99_ms: s.p99_ms,
        max_ms: s.max_ms,
        by_txn: s
            .by_txn
            .iter()
            .map(|(n, t)| {
                (names.id(n), t.count.min(u32::MAX as u64) as u32, t.errors.min(u32::MAX as u64) as u32, t.p99_ms)
            })
            .collect(),
    }
}

/// Advance the open second to `now`: close the ones before it, summarised
/// under the phase running now.
fn roll(g: &mut Inner, now: u64) {
    match &mut g.current {
        Some(c) if c.t == now => {}
        Some(c) if c.t > now => {}
        Some(_) => {
            let c = g.current.take().unwrap();
            let last = c.t;
            let phase = g.phases.last().map(|p| p.name.clone()).unwrap_or_default();
            let closed = compact(&c, &phase, &mut g.names);
            g.seconds.push(closed);
            let phase = g.names.id(&phase);
            for t in last + 1..now {
                g.seconds.push(Closed {
                    t,
                    phase,
                    count: 0,
                    errors: 0,
                    by_class: Box::new([]),
                    p50_ms: 0.0,
                    p99_ms: 0.0,
                    max_ms: 0.0,
                    by_txn: Box::new([]),
                });
            }
            let mut hist = c.hist;
            hist.reset();
            g.current = Some(Second::new(now, hist));
        }
        None => {
            g.current = Some(Second::new(now, new_sec_hist()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ledger_keeps_every_id_once_in_a_bit() {
        let mut l = Ledger::default();
        let (a, b) = ((7u64 << 32) | (1 << 28), (9u64 << 32) | (3 << 28));
        let ids = [a | 1, a | 2, a | 1000, b | 5, a | 63, a | 64, b | 0x0FFF_FFFF, u64::MAX, 0];
        for id in ids.iter().chain(ids.iter()) {
            l.insert(*id);
        }
        let mut want = ids.to_vec();
        want.sort_unstable();
        assert_eq!(l.ids(), want);
        assert_eq!(l.len, ids.len());
    }

    #[test]
    fn base64_roundtrip() {
        for n in 0..40 {
            let v: Vec<u8> = (0..n).map(|i| (i * 37 + 11) as u8).collect();
            assert_eq!(base64_decode(&base64_encode(&v)).unwrap(), v);
        }
    }

    #[test]
    fn phases_and_percentiles() {
        let r = Recorder::new();
        r.phase("baseline");
        for i in 1..=1000u64 {
            r.record(&Record {
                name: "t",
                kind: Kind::Transaction,
                latency: Duration::from_micros(i * 1000),
                ok: i % 10 != 0,
                class: if i % 10 == 0 { Some(FailClass::DeadlineExceeded) } else { None },
                error: Some("slow"),
                attempts: 1,
                rows: 1,
            });
        }
        r.phase("cold");
        std::thread::sleep(Duration::from_millis(20));
        r.record(&Record {
            name: "t",
            kind: Kind::Transaction,
            latency: Duration::from_millis(5),
            ok: true,
            class: None,
            error: None,
            attempts: 1,
            rows: 0,
        });
        let s = r.snapshot();
        assert_eq!(s.phases.len(), 2);
        let b = s.phase("baseline").unwrap().txn("t").unwrap();
        assert_eq!(b.count, 1000);
        assert_eq!(b.errors["deadline_exceeded"], 100);
        assert!((b.p50_ms - 500.0).abs() < 1.0, "{}", b.p50_ms);
        assert!((b.p99_ms - 990.0).abs() < 1.5, "{}", b.p99_ms);
        let h = decode_hist(&b.histogram).unwrap();
        assert_eq!(h.len(), 1000);
        assert_eq!(s.phase("cold").unwrap().txn("t").unwrap().count, 1);
        assert_eq!(s.timeline.iter().map(|x| x.count).sum::<u64>(), 1001);
    }

    #[test]
    fn a_request_belongs_to_the_phase_it_arrived_in() {
        let r = Recorder::new();
        r.phase("warmup");
        std::thread::sleep(Duration::from_millis(30));
        r.phase("warm");
        let rec = |latency| Record {
            name: "t",
            kind: Kind::Transaction,
            latency,
            ok: true,
            class: None,
            error: None,
            attempts: 1,
            rows: 0,
        };
        // Queued since before the warm phase began: the warm-up's backlog.
        r.record(&rec(r.started().elapsed()));
        // Arrived in the warm phase.
        std::thread::sleep(Duration::from_millis(5));
        r.record(&rec(Duration::from_micros(100)));
        let s = r.snapshot();
        assert_eq!(s.phase("warmup").unwrap().txn("t").unwrap().count, 1);
        assert_eq!(s.phase("warm").unwrap().txn("t").unwrap().count, 1);
        // The timeline counts both when they completed.
        assert_eq!(s.timeline.iter().map(|x| x.count).sum::<u64>(), 2);
    }

    #[test]
    fn a_live_view_does_not_start_the_timeline() {
        let r = Recorder::new();
        let (phase, last, events) = r.tail(0);
        assert_eq!((phase.as_str(), last.is_none(), events.len()), ("run", true, 0));
        // A second later the first request: the timeline begins with it.
        std::thread::sleep(Duration::from_millis(1100));
        let _ = r.tail(0);
        r.phase("baseline");
        r.record(&Record {
            name: "a",
            kind: Kind::Transaction,
            latency: Duration::from_millis(1),
            ok: true,
            class: None,
            error: None,
            attempts: 1,
            rows: 1,
        });
        let snap = r.snapshot();
        assert_eq!(snap.timeline.first().map(|s| s.count), Some(1), "{:?}", snap.timeline);
        let (_, _, events) = r.tail(0);
        assert_eq!(events[0].name, "phase:baseline");
    }
}
