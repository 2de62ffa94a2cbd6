//! Statements seen in production, as a mix file: one transaction per
//! fingerprint, weighted by how often it ran; a generator at every literal
//! position, drawing from the values seen; statements on a timer as
//! background jobs; everything left out listed with its count.

use anyhow::{bail, Result};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;

use crate::fingerprint::{self, Kind, Lit, Shape};
use crate::period::{self, Periodic};
use crate::slowlog::SlowLog;

/// One statement seen.
#[derive(Debug, Clone)]
pub struct Obs {
    /// Where it was seen: a log line, or a performance_schema event number.
    pub at: u64,
    /// When it arrived, seconds on any fixed clock.
    pub time: Option<f64>,
    /// How long it ran, seconds.
    pub query_time: f64,
    /// Its default database.
    pub schema: Option<String>,
    /// The statement.
    pub sql: String,
    /// The server's digest of it, where the source has one.
    pub digest: Option<String>,
}

/// A server's count of one digest over the capture (performance_schema).
#[derive(Debug, Clone)]
pub struct DigestTotal {
    /// Executions.
    pub count: u64,
    /// Seconds spent in them.
    pub seconds: f64,
    /// The server's normalised text.
    pub text: String,
}

/// Statements observed: every one (a slow log), or examples of each with
/// the server's own counts (performance_schema).
#[derive(Debug, Clone)]
pub struct Capture {
    /// What was read, for messages and the file's comments.
    pub source: String,
    /// What `Obs::at` counts ("line", "event").
    pub at_word: &'static str,
    /// The statements seen.
    pub obs: Vec<Obs>,
    /// Resolution of their times, seconds.
    pub resolution: f64,
    /// Executions and time per digest: when present the weights come from
    /// here and `obs` are examples (values and arrival times).
    pub totals: Option<HashMap<String, DigestTotal>>,
}

impl Capture {
    /// Every statement of a slow log.
    pub fn from_slow_log(log: &SlowLog, source: &str) -> Capture {
        let (times, resolution) = log.times();
        let obs = log
            .entries
            .iter()
            .zip(times)
            .map(|(e, t)| Obs {
                at: e.line as u64,
                time: t,
                query_time: e.query_time,
                schema: e.schema.clone(),
                sql: e.sql.clone(),
                digest: None,
            })
            .collect();
        Capture { source: source.to_string(), at_word: "line", obs, resolution, totals: None }
    }
}

/// What to keep, and how to write it.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// Keep the most frequent fingerprints until they cover this share
    /// (0-1] of the replayable executions (or of their time).
    pub cover: f64,
    /// Rank and cover by time spent rather than by executions.
    pub by_time: bool,
    /// Keep at most this many transactions.
    pub top: Option<usize>,
    /// Keep INSERT, UPDATE, DELETE and REPLACE too.
    pub include_writes: bool,
    /// The mix's database (default: the one most statements ran in).
    pub database: Option<String>,
    /// The mix's name.
    pub name: String,
    /// Most values listed per generator.
    pub max_values: usize,
    /// API nodes that each run the timer jobs (default: the fewest sources
    /// that fit the log; a log shows a job's rate, not how many servers
    /// share it).
    pub api_nodes: Option<usize>,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            cover: 0.95,
            by_time: false,
            top: None,
            include_writes: false,
            database: None,
            name: "imported".into(),
            max_values: 256,
            api_nodes: None,
        }
    }
}

/// The mix written, and what went where.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The mix file's text.
    pub toml: String,
    /// Transactions written: (name, fingerprint, executions).
    pub transactions: Vec<(String, String, u64)>,
    /// Background jobs written: (name, fingerprint, period per source, sources).
    pub background: Vec<(String, String, f64, usize)>,
    /// What was not turned into a transaction: (why, executions, an example fingerprint).
    pub left_out: Vec<(String, u64, String)>,
    /// Statements read.
    pub statements: u64,
}

/// A literal position's values.
#[derive(Debug, Default, Clone)]
struct Values {
    seen: HashMap<Lit, u64>,
    /// Values not counted once `seen` was full.
    overflow: u64,
    other: bool,
    all_int: bool,
    min: i64,
    max: i64,
}

/// Distinct values kept per position while reading.
const DISTINCT_CAP: usize = 100_000;

impl Values {
    fn new() -> Values {
        Values { all_int: true, min: i64::MAX, max: i64::MIN, ..Default::default() }
    }
    fn add(&mut self, l: &Lit) {
        match l {
            Lit::Int(v) => {
                self.min = self.min.min(*v);
                self.max = self.max.max(*v);
            }
            Lit::Str(_) => self.all_int = false,
            Lit::Other(_) => {
                self.all_int = false;
                self.other = true;
            }
        }
        if let Some(c) = self.seen.get_mut(l) {
            *c += 1;
        } else if self.seen.len() < DISTINCT_CAP {
            self.seen.insert(l.clone(), 1);
        } else {
            self.overflow += 1;
        }
    }
}

struct Group {
    shape: Shape,
    first_at: u64,
    digests: std::collections::HashSet<String>,
    count: u64,
    time: f64,
    times: Vec<f64>,
    values: Vec<Values>,
    /// Executions whose literal count differs from the example's (an IN
    /// list of another length): counted, their values not sampled.
    unsampled: u64,
    schemas: HashMap<String, u64>,
}

fn reason_of(kind: &Kind) -> String {
    match kind {
        Kind::Other(k) => format!("{k}: not a statement a load replays"),
        Kind::Write => "writes (add --include-writes)".into(),
        Kind::Read => "reads".into(),
    }
}

/// Turn statements seen into a mix.
pub fn import(cap: &Capture, opts: &ImportOptions) -> Result<Imported> {
    if !(opts.cover > 0.0 && opts.cover <= 1.0) {
        bail!("--cover must be a share above 0 % and up to 100 %, not {}", opts.cover * 100.0);
    }
    if cap.obs.is_empty() {
        match &cap.totals {
            Some(_) => bail!("no example statement in {}: is events_statements_history_long on?", cap.source),
            None => bail!("no statements found in {}: is it a slow query log (long_query_time = 0)?", cap.source),
        }
    }
    let resolution = cap.resolution;
    let mut groups: Vec<Group> = Vec::new();
    let mut by_fp: HashMap<String, usize> = HashMap::new();
    let mut left: BTreeMap<String, (u64, String)> = BTreeMap::new();
    // With the server's counts, what is left out is counted from them.
    let counted = cap.totals.is_some();
    let mut leave = |why: &str, example: &str| {
        let e = left.entry(why.to_string()).or_insert((0, example.chars().take(160).collect()));
        if !counted {
            e.0 += 1;
        }
    };
    let mut unreplayed_digests: Vec<(String, String)> = Vec::new();
    for e in &cap.obs {
        let t = &e.time;
        let why = if e.sql.starts_with("# administrator command") {
            Some("administrator commands (Quit, Ping...)")
        } else if e.sql.contains("coldswap_meta") || e.sql.contains("/* coldswap */") {
            Some("coldswap's own statements (coldswap_meta, /* coldswap */)")
        } else {
            None
        };
        if let Some(w) = why {
            leave(w, &e.sql);
            if let Some(d) = &e.digest {
                unreplayed_digests.push((d.clone(), w.to_string()));
            }
            continue;
        }
        let Some(shape) = fingerprint::shape(&e.sql) else {
            let w = "could not be tokenized (a truncated statement?)";
            leave(w, &e.sql);
            if let Some(d) = &e.digest {
                unreplayed_digests.push((d.clone(), w.to_string()));
            }
            continue;
        };
        let system = ["information_schema", "performance_schema", "mysql", "sys"];
        if shape.table.as_deref().map(|t| system.contains(&t)).unwrap_or(false)
            || system.iter().any(|s| shape.fingerprint.contains(&format!("{s}.")))
        {
            let w = "statements on the server's own schemas";
            leave(w, &shape.fingerprint);
            if let Some(d) = &e.digest {
                unreplayed_digests.push((d.clone(), w.to_string()));
            }
            continue;
        }
        let gi = match by_fp.get(&shape.fingerprint) {
            Some(i) => *i,
            None => {
                by_fp.insert(shape.fingerprint.clone(), groups.len());
                let n = shape.literals.len();
                groups.push(Group {
                    shape: shape.clone(),
                    first_at: e.at,
                    digests: Default::default(),
                    count: 0,
                    time: 0.0,
                    times: Vec::new(),
                    values: vec![Values::new(); n],
                    unsampled: 0,
                    schemas: HashMap::new(),
                });
                groups.len() - 1
            }
        };
        let g = &mut groups[gi];
        g.count += 1;
        g.time += e.query_time;
        if let Some(d) = &e.digest {
            g.digests.insert(d.clone());
        }
        if let Some(t) = t {
            g.times.push(*t);
        }
        if let Some(s) = &e.schema {
            *g.schemas.entry(s.clone()).or_insert(0) += 1;
        }
        if shape.literals.len() == g.values.len() {
            for (v, l) in g.values.iter_mut().zip(&shape.literals) {
                v.add(l);
            }
        } else {
            g.unsampled += 1;
        }
    }
    let mut statements = cap.obs.len() as u64;
    if let Some(totals) = &cap.totals {
        // The server counted every execution; the examples only show what
        // each digest is. A digest whose examples fell into several
        // fingerprints (IN lists the server folds otherwise) counts in the
        // first.
        statements = totals.values().map(|t| t.count).sum();
        let mut claimed = std::collections::HashSet::new();
        for g in groups.iter_mut() {
            g.count = 0;
            g.time = 0.0;
            let mut ds: Vec<&String> = g.digests.iter().collect();
            ds.sort();
            for d in ds {
                if let Some(t) = totals.get(d) {
                    if claimed.insert(d.clone()) {
                        g.count += t.count;
                        g.time += t.seconds;
                    }
                }
            }
        }
        groups.retain(|g| g.count > 0);
        for (d, w) in &unreplayed_digests {
            if let Some(t) = totals.get(d) {
                if claimed.insert(d.clone()) {
                    left.entry(w.clone()).or_insert((0, t.text.clone())).0 += t.count;
                }
            }
        }
        let mut rest: Vec<(&String, &DigestTotal)> = totals.iter().filter(|(d, _)| !claimed.contains(*d)).collect();
        rest.sort_by(|a, b| a.0.cmp(b.0));
        for (_, t) in rest {
            // Classified by the server's own text where it can be.
            let why = match fingerprint::shape(&t.text).map(|s| s.kind) {
                Some(Kind::Read) | Some(Kind::Write) | None => {
                    "no example in events_statements_history_long (executed, but not while it was read)".to_string()
                }
                Some(k) => reason_of(&k),
            };
            let e = left.entry(why).or_insert((0, t.text.chars().take(160).collect()));
            e.0 += t.count;
        }
    }

    // Replayable groups; the rest is listed.
    let mut replay: Vec<usize> = Vec::new();
    for (i, g) in groups.iter().enumerate() {
        let why = if g.shape.multi {
            Some("several statements in one entry (a procedure or batch)".to_string())
        } else {
            match &g.shape.kind {
                Kind::Read => None,
                Kind::Write if opts.include_writes => None,
                k => Some(reason_of(k)),
            }
        };
        match why {
            Some(w) => {
                let e = left.entry(w).or_insert((0, g.shape.fingerprint.chars().take(160).collect()));
                e.0 += g.count;
            }
            None => replay.push(i),
        }
    }
    if replay.is_empty() {
        let what: Vec<String> = left.iter().map(|(w, (n, _))| format!("{n} {w}")).collect();
        bail!("no replayable statement in {}: {}", cap.source, what.join("; "));
    }

    // Jobs on a timer.
    let mut background: Vec<(usize, Periodic)> = Vec::new();
    let mut requests: Vec<usize> = Vec::new();
    for i in replay {
        match period::detect(&groups[i].times, resolution) {
            Some(p) => background.push((i, p)),
            None => requests.push(i),
        }
    }
    let weight_of = |g: &Group| if opts.by_time { g.time } else { g.count as f64 };
    requests.sort_by(|a, b| weight_of(&groups[*b]).total_cmp(&weight_of(&groups[*a])).then(a.cmp(b)));
    let total: f64 = requests.iter().map(|i| weight_of(&groups[*i])).sum();
    let total_count: u64 = requests.iter().map(|i| groups[*i].count).sum();
    let total_time: f64 = requests.iter().map(|i| groups[*i].time).sum();
    let mut kept: Vec<usize> = Vec::new();
    let mut covered = 0.0;
    let mut below = (0u64, 0usize);
    for &i in &requests {
        let full = total > 0.0 && covered >= opts.cover * total - 1e-9;
        if full || opts.top.map(|t| kept.len() >= t).unwrap_or(false) {
            below.0 += groups[i].count;
            below.1 += 1;
            continue;
        }
        covered += weight_of(&groups[i]);
        kept.push(i);
    }
    if below.1 > 0 {
        left.insert(format!("{} less frequent fingerprints (beyond --cover/--top)", below.1), (below.0, String::new()));
    }

    let database = match &opts.database {
        Some(d) => d.clone(),
        None => {
            let mut s: HashMap<&str, u64> = HashMap::new();
            for &i in kept.iter().chain(background.iter().map(|(i, _)| i)) {
                for (db, n) in &groups[i].schemas {
                    *s.entry(db.as_str()).or_insert(0) += n;
                }
            }
            match s.into_iter().max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(a.0))) {
                Some((db, _)) => db.to_string(),
                None => bail!("{} names no database (no `use db;` or Schema:): pass --database", cap.source),
            }
        }
    };
    let nodes = opts.api_nodes.unwrap_or_else(|| background.iter().map(|(_, p)| p.sources).max().unwrap_or(1)).max(1);

    // Names: verb_table, numbered when they repeat.
    let mut used: HashMap<String, usize> = HashMap::new();
    let mut name_of = |s: &Shape| {
        let verb = s.fingerprint.split_whitespace().next().unwrap_or("stmt").to_string();
        let base = match &s.table {
            Some(t) => format!("{verb}_{t}"),
            None => verb,
        };
        let base: String = base.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
        let n = used.entry(base.clone()).or_insert(0);
        *n += 1;
        if *n == 1 {
            base
        } else {
            format!("{base}_{n}")
        }
    };

    let span = {
        let all: Vec<f64> = cap.obs.iter().filter_map(|o| o.time).collect();
        let lo = all.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = all.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if hi > lo {
            Some(hi - lo)
        } else {
            None
        }
    };

    let mut out = String::new();
    let _ = writeln!(out, "# Imported by `coldswap mix import` from {}.", cap.source);
    let _ = writeln!(
        out,
        "# {statements} statements read, {} fingerprints; {} transactions cover {:.1} % of the replayable {}{}.",
        groups.len(),
        kept.len(),
        if total > 0.0 { 100.0 * covered / total } else { 100.0 },
        if opts.by_time { "statements' time" } else { "executions" },
        if background.is_empty() { String::new() } else { format!(", {} statements run on a timer", background.len()) }
    );
    if let Some(s) = span {
        let _ = writeln!(
            out,
            "# Over {:.0} s the requests kept here ran at {:.1}/s: a drill's `rate` of that size replays production's load.",
            s,
            kept.iter().map(|i| groups[*i].count).sum::<u64>() as f64 / s
        );
    }
    if !left.is_empty() {
        let _ = writeln!(out, "# Left out (executions):");
        for (why, (n, ex)) in &left {
            if ex.is_empty() {
                let _ = writeln!(out, "#   {n:>8}  {why}");
            } else {
                let _ = writeln!(out, "#   {n:>8}  {why}, e.g. {}", ex.replace('\n', " "));
            }
        }
    }
    let _ =
        writeln!(out, "# Generators draw from the values each literal position was seen with (most frequent first),");
    let _ = writeln!(out, "# or from their range where they are integers and too many to list. Edit freely.");
    let _ = writeln!(out);
    let _ = writeln!(out, "name = {}", quote(&opts.name));
    let _ = writeln!(out, "database = {}", quote(&database));
    let _ = writeln!(out, "description = {}", quote(&format!("imported from {}", cap.source)));
    if !background.is_empty() {
        let why = if opts.api_nodes.is_some() {
            "as --api-nodes says"
        } else {
            "the fewest sources that fit the log (it shows a job's rate, not how many servers share it: --api-nodes)"
        };
        let _ = writeln!(out, "\n[api]\n# each API node runs the background jobs; {why}\nnodes = {nodes}");
    }

    let mut gens = String::new();
    let mut body = String::new();
    let mut result_txns = Vec::new();
    let mut result_bg = Vec::new();
    for &i in &kept {
        let g = &groups[i];
        let name = name_of(&g.shape);
        let sql = render(g, &name, opts, &mut gens);
        let weight = ((g.count as f64 / total_count.max(1) as f64) * 10_000.0).round().max(1.0) as u64;
        let _ = writeln!(body, "\n# fingerprint: {}", g.shape.fingerprint);
        let _ = writeln!(
            body,
            "# seen {} times ({:.2} % of the replayable executions, {:.2} % of their time), first at {} {}{}",
            g.count,
            100.0 * g.count as f64 / total_count.max(1) as f64,
            if total_time > 0.0 { 100.0 * g.time / total_time } else { 0.0 },
            cap.at_word,
            g.first_at,
            notes(g)
        );
        let _ = writeln!(body, "[[transaction]]\nname = {}\nweight = {weight}", quote(&name));
        let _ = writeln!(body, "description = {}", quote(&format!("{} executions in the capture", g.count)));
        let _ = writeln!(body, "sql = {}", sql_string(&sql));
        result_txns.push((name, g.shape.fingerprint.clone(), g.count));
    }
    for (i, p) in &background {
        let g = &groups[*i];
        let name = name_of(&g.shape);
        let sql = render(g, &name, opts, &mut gens);
        // `nodes` API nodes each run it every period_ms: the same rate as
        // the `sources` seen.
        let period_ms = (p.period_s * nodes as f64 / p.sources as f64 * 1000.0).round().max(1.0) as u64;
        let _ = writeln!(body, "\n# fingerprint: {}", g.shape.fingerprint);
        let _ = writeln!(
            body,
            "# seen {} times, first at {} {}: every {:.2} s on each of {} sources (gap variation {:.1} %){}",
            g.count,
            cap.at_word,
            g.first_at,
            p.period_s,
            p.sources,
            100.0 * p.cv,
            notes(g)
        );
        let _ = writeln!(body, "[[background]]\nname = {}\nperiod_ms = {period_ms}", quote(&name));
        let _ = writeln!(
            body,
            "description = {}",
            quote(&format!("ran every {:.2} s on each of {} sources in the capture", p.period_s, p.sources))
        );
        let _ = writeln!(body, "sql = {}", sql_string(&sql));
        result_bg.push((name, g.shape.fingerprint.clone(), p.period_s, p.sources));
    }
    if !gens.is_empty() {
        let _ = writeln!(out, "\n# --- generators -------------------------------------------------------------");
        out.push_str(&gens);
    }
    let _ = writeln!(out, "\n# --- statements -------------------------------------------------------------");
    out.push_str(&body);

    // What we write must be a mix coldswap reads.
    if let Err(e) = coldswap_client::mix::Mix::parse(&out, std::path::Path::new("imported.toml")) {
        bail!("the mix written from {} does not parse (a bug in mix import): {e}", cap.source);
    }
    Ok(Imported {
        toml: out,
        transactions: result_txns,
        background: result_bg,
        left_out: left.into_iter().map(|(w, (n, e))| (w, n, e)).collect(),
        statements,
    })
}

fn notes(g: &Group) -> String {
    let mut s = String::new();
    if !g.shape.parsed {
        s.push_str("; not parsed by sqlparser (its kind is from its first keyword)");
    }
    if g.unsampled > 0 {
        let _ = write!(s, "; {} executions with another number of literals (an IN list) not sampled", g.unsampled);
    }
    s
}

/// The statement with a generator at each varying literal position (and
/// its generators appended to `gens`); a literal seen with one value only,
/// or not an integer or string, stays as written.
fn render(g: &Group, name: &str, opts: &ImportOptions, gens: &mut String) -> String {
    let mut decl = String::new();
    let sql = g.shape.render(|i, lit| {
        let v = &g.values[i];
        if v.other || v.seen.len() <= 1 {
            return literal(lit);
        }
        let gen = format!("{name}_{}", i + 1);
        let mut vals: Vec<(&Lit, u64)> = v.seen.iter().map(|(l, n)| (l, *n)).collect();
        vals.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let seen: u64 = vals.iter().map(|x| x.1).sum::<u64>() + v.overflow;
        let listed: u64 = vals.iter().take(opts.max_values).map(|x| x.1).sum();
        let distinct = if v.overflow > 0 { format!("over {}", v.seen.len()) } else { v.seen.len().to_string() };
        let _ = writeln!(decl, "\n[[generator]]\nname = {}", quote(&gen));
        if vals.len() > opts.max_values && v.all_int && (listed as f64) < 0.8 * seen as f64 {
            let _ = writeln!(
                decl,
                "# {distinct} distinct integers, the {} most frequent only {:.0} % of uses: their range",
                opts.max_values,
                100.0 * listed as f64 / seen as f64
            );
            let _ = writeln!(decl, "kind = \"int\"\nmin = {}\nmax = {}", v.min, v.max);
        } else {
            let n = vals.len().min(opts.max_values);
            let _ = writeln!(
                decl,
                "# {distinct} distinct values seen{}",
                if n < vals.len() {
                    format!("; the {n} most frequent, {:.0} % of uses", 100.0 * listed as f64 / seen as f64)
                } else {
                    String::new()
                }
            );
            let list: Vec<String> = vals.iter().take(n).map(|(l, _)| value(l)).collect();
            let weights: Vec<String> = vals.iter().take(n).map(|(_, c)| c.to_string()).collect();
            let _ =
                writeln!(decl, "kind = \"sample\"\nvalues = [{}]\nweights = [{}]", list.join(", "), weights.join(", "));
        }
        format!(":{gen}")
    });
    gens.push_str(&decl);
    sql
}

/// A literal as SQL.
fn literal(l: &Lit) -> String {
    use coldswap_client::gen::Value;
    let mut out = String::new();
    match l {
        Lit::Other(s) => out.push_str(s),
        Lit::Int(i) => coldswap_client::tier::literal(&Some(Value::Int(*i)), &mut out),
        Lit::Str(s) => coldswap_client::tier::literal(&Some(Value::Str(s.clone())), &mut out),
    }
    out
}

/// A literal as a TOML value.
fn value(l: &Lit) -> String {
    match l {
        Lit::Int(i) => i.to_string(),
        Lit::Str(s) | Lit::Other(s) => quote(s),
    }
}

/// A TOML basic string.
fn quote(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\t' => o.push_str("\\t"),
            '\r' => o.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(o, "\\u{:04X}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// SQL as a TOML string: a literal multi-line string where it can be one
/// (as written, easy to edit), else a basic string.
fn sql_string(sql: &str) -> String {
    let plain = !sql.contains("'''")
        && !sql.ends_with('\'')
        && !sql.chars().any(|c| (c as u32) < 0x20 && c != '\n' && c != '\t');
    if plain {
        format!("'''\n{sql}'''")
    } else {
        quote(sql)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slowlog::SlowLog;

    /// A MariaDB-style log: whole-second stamps, a dispatcher on 3 nodes
    /// every 5 s, requests at random, a transaction's BEGIN/COMMIT, a write.
    fn log() -> String {
        let mut s = String::new();
        let mut x: u64 = 17;
        let mut rnd = || {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (x >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut ev: Vec<(f64, String)> = Vec::new();
        for node in 0..3 {
            let phase = [0.0, 0.4, 2.9][node];
            for r in 0..12 {
                ev.push((
                    phase + r as f64 * 5.0,
                    "SELECT id FROM schedules WHERE last_run_status <> last_notified_status".into(),
                ));
            }
        }
        let mut t = 0.0;
        let mut n = 0;
        while t < 60.0 {
            t += -(1.0 - rnd()).ln() / 40.0;
            n += 1;
            let q = match n % 10 {
                0..=5 => format!("SELECT * FROM jobs WHERE id = {}", 1 + (rnd() * 50.0) as u32),
                6 | 7 => format!(
                    "SELECT id FROM `tables` WHERE account_id = {} AND name = 'tbl_{}' LIMIT 20",
                    1 + n % 7,
                    n % 3
                ),
                8 => "BEGIN".into(),
                _ => format!("UPDATE jobs SET status = 'done' WHERE id = {}", n),
            };
            ev.push((t, q));
        }
        ev.sort_by(|a, b| a.0.total_cmp(&b.0));
        for (t, q) in ev {
            let _ = write!(
                s,
                "# User@Host: app[app] @ localhost [127.0.0.1]\n# Thread_id: 8  Schema: api  QC_hit: No\n# Query_time: 0.000100  Lock_time: 0.0  Rows_sent: 1  Rows_examined: 1\nSET timestamp={};\n{q};\n",
                1_796_080_200 + t.floor() as u64
            );
        }
        s
    }

    #[test]
    fn a_log_becomes_a_mix() {
        let l = Capture::from_slow_log(&SlowLog::parse(&log()), "test.log");
        let opts = ImportOptions { cover: 1.0, ..Default::default() };
        let m = import(&l, &opts).unwrap();
        let mix = coldswap_client::mix::Mix::parse(&m.toml, std::path::Path::new("x.toml")).unwrap();
        assert_eq!(mix.database, "api");
        let names: Vec<&str> = mix.transactions.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["select_jobs", "select_tables"], "{}", m.toml);
        // 6 in 10 against 2 in 10
        let w: Vec<u32> = mix.transactions.iter().map(|t| t.weight).collect();
        assert!((w[0] as f64 / (w[0] + w[1]) as f64 - 0.75).abs() < 0.03, "{w:?}");
        assert_eq!(mix.background.len(), 1, "{}", m.toml);
        assert_eq!(mix.api_nodes, 3);
        let bg = &mix.background[0];
        assert!((bg.period.as_secs_f64() - 5.0).abs() < 0.3, "{:?}", bg.period);

        // the LIMIT seen with one value stays as written; the rest are generated
        let t = &mix.transactions[1];
        assert!(t.steps[0].sql.contains("LIMIT 20"), "{}", t.steps[0].sql);
        assert_eq!(t.steps[0].params.len(), 2);
        assert!(m.left_out.iter().any(|(w, n, _)| w.starts_with("writes") && *n > 0), "{:?}", m.left_out);
        assert!(m.left_out.iter().any(|(w, n, _)| w.starts_with("BEGIN") && *n > 0), "{:?}", m.left_out);
        // with writes
        let m = import(&l, &ImportOptions { include_writes: true, cover: 1.0, ..Default::default() }).unwrap();
        assert!(m.transactions.iter().any(|t| t.0 == "update_jobs"), "{:?}", m.transactions);
        // cover and top
        let m = import(&l, &ImportOptions { cover: 0.5, ..Default::default() }).unwrap();
        assert_eq!(m.transactions.len(), 1);
        let m = import(&l, &ImportOptions { cover: 1.0, top: Some(1), ..Default::default() }).unwrap();
        assert_eq!(m.transactions.len(), 1);
        assert!(m.left_out.iter().any(|(w, _, _)| w.contains("beyond --cover")), "{:?}", m.left_out);
    }

    #[test]
    fn nothing_to_replay_is_an_error() {
        let l = Capture::from_slow_log(&SlowLog::parse("# Query_time: 0.1\nSET timestamp=1;\nCOMMIT;\n"), "t");
        let e = import(&l, &ImportOptions::default()).unwrap_err().to_string();
        assert!(e.contains("no replayable statement") && e.contains("COMMIT"), "{e}");
        let e = import(&Capture::from_slow_log(&SlowLog::default(), "t"), &ImportOptions::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("no statements found"), "{e}");
    }
}
