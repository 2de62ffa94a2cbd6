//! Mix files: API-shaped transactions and background jobs, declared in TOML.
//!
//! ```toml
//! name = "api"
//! database = "api"
//! [api]
//! nodes = 4                       # API servers; background jobs run on each
//!
//! [[generator]]
//! name = "account"
//! kind = "zipf"                   # see gen.rs for the kinds
//! table = "accounts"
//!
//! [[transaction]]
//! name = "show_job"
//! weight = 20
//! sql = "SELECT * FROM jobs WHERE id = :job AND account_id = :account"
//!
//! [[transaction]]
//! name = "issue_job"
//! weight = 5
//! atomic = true                   # one database transaction
//! ledger = "write_id"             # acknowledged writes, checked after the drill
//! steps = ["INSERT ...", "INSERT INTO write_ledger ..."]
//!
//! [[background]]
//! name = "notify_schedules"
//! period_ms = 5000
//! sql = "SELECT ... FROM schedules WHERE last_run_status <> last_notified_status"
//! ```
//!
//! Everything is checked before any load starts; an error names the file and
//! line: `loadtests/api.toml:42: transaction 'x': ...`.

use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

use crate::gen::{GenKind, GenSpec, Value};

/// A mix problem at a place in a file.
#[derive(Debug, Clone, PartialEq)]
pub struct MixError {
    /// The mix file.
    pub file: String,
    /// Its line (1-based; 0 when not tied to a line).
    pub line: usize,
    /// What is wrong, and what was expected.
    pub message: String,
}

impl std::fmt::Display for MixError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.message)
    }
}

impl std::error::Error for MixError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMix {
    name: Spanned<String>,
    database: Spanned<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    api: Option<RawApi>,
    #[serde(default, rename = "generator")]
    generators: Vec<Spanned<RawGen>>,
    #[serde(default, rename = "transaction")]
    transactions: Vec<Spanned<RawTxn>>,
    #[serde(default, rename = "background")]
    background: Vec<Spanned<RawBg>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApi {
    nodes: Spanned<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGen {
    name: Spanned<String>,
    kind: Spanned<String>,
    table: Option<Spanned<String>>,
    account: Option<Spanned<String>>,
    min: Option<i64>,
    max: Option<i64>,
    window: Option<i64>,
    values: Option<Vec<RawValue>>,
    weights: Option<Vec<i64>>,
    len: Option<i64>,
    /// Free text for readers of the mix.
    #[serde(default, rename = "description")]
    _description: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTxn {
    name: Spanned<String>,
    weight: Spanned<i64>,
    sql: Option<Spanned<String>>,
    steps: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    atomic: bool,
    ledger: Option<Spanned<String>>,
    #[serde(default)]
    description: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBg {
    name: Spanned<String>,
    period_ms: Spanned<i64>,
    sql: Option<Spanned<String>>,
    steps: Option<Spanned<Vec<String>>>,
    #[serde(default = "yes")]
    enabled: bool,
    timeout_ms: Option<Spanned<i64>>,
    /// Start every period even if the last run has not finished (cron, a
    /// scheduler's periodic job); false: wait for it.
    #[serde(default = "yes")]
    overlap: bool,
    #[serde(default)]
    description: Option<String>,
}

fn yes() -> bool {
    true
}

/// A generator's listed value: a string, or an integer (sent unquoted).
#[derive(Deserialize, Clone)]
#[serde(untagged)]
enum RawValue {
    Int(i64),
    Str(String),
}

/// One SQL statement, with `:name` parameters turned into `?`.
#[derive(Debug, Clone, PartialEq)]
pub struct Stmt {
    /// As written in the mix.
    pub text: String,
    /// As sent to the server.
    pub sql: String,
    /// Generator index of each `?`, in order.
    pub params: Vec<usize>,
    /// `sql` split at its placeholders (params.len() + 1 pieces), for the
    /// text protocol, which sends values inline.
    pub parts: Vec<String>,
    /// The mix file line the statement is on.
    pub line: usize,
}

impl Stmt {
    /// Whether it reads only (SELECT or WITH).
    pub fn is_select(&self) -> bool {
        matches!(first_keyword(&self.sql).as_str(), "SELECT" | "WITH")
    }
}

/// A statement's first keyword, upper case, past leading whitespace and
/// comments (`/* ... */`, `-- ...`, `# ...`).
pub fn first_keyword(sql: &str) -> String {
    let mut s = sql.trim_start();
    loop {
        if let Some(rest) = s.strip_prefix("/*") {
            s = rest.split_once("*/").map(|(_, r)| r).unwrap_or("").trim_start();
        } else if s.starts_with("--") || s.starts_with('#') {
            s = s.split_once('\n').map(|(_, r)| r).unwrap_or("").trim_start();
        } else {
            break;
        }
    }
    s.split(|c: char| !c.is_ascii_alphabetic()).next().unwrap_or("").to_ascii_uppercase()
}

/// A transaction: one API request's statements, picked with its weight.
#[derive(Debug, Clone)]
pub struct TxnSpec {
    /// Its name (a label in goose and the report).
    pub name: String,
    /// Its share of requests, relative to the others'.
    pub weight: u32,
    /// Its statements, in order.
    pub steps: Vec<Stmt>,
    /// Run them in one database transaction.
    pub atomic: bool,
    /// Generator whose value identifies an acknowledged write.
    pub ledger: Option<usize>,
    /// What the endpoint does, for the report.
    pub description: String,
    /// The mix file line it was declared on.
    pub line: usize,
}

/// A background job: statements every API node runs on a timer.
#[derive(Debug, Clone)]
pub struct BgSpec {
    /// Its name.
    pub name: String,
    /// Period per API node.
    pub period: Duration,
    /// Its statements, in order.
    pub steps: Vec<Stmt>,
    /// Whether it runs unless the drill names the background jobs.
    pub enabled: bool,
    /// The API tier's deadline for one run.
    pub timeout: Duration,
    /// Runs may overlap (a new one starts every period regardless).
    pub overlap: bool,
    /// What the job does, for the report.
    pub description: String,
    /// The mix file line it was declared on.
    pub line: usize,
}

/// A checked mix.
#[derive(Debug, Clone)]
pub struct Mix {
    /// The file it came from.
    pub file: PathBuf,
    /// The mix's name.
    pub name: String,
    /// The database its statements run in.
    pub database: String,
    /// What the workload is.
    pub description: String,
    /// API servers, each running the background jobs on its own timer.
    pub api_nodes: u32,
    /// Parameter generators.
    pub generators: Vec<GenSpec>,
    /// Transactions (API requests).
    pub transactions: Vec<TxnSpec>,
    /// Background jobs.
    pub background: Vec<BgSpec>,
}

/// Line (1-based) of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].bytes().filter(|b| *b == b'\n').count() + 1
}

/// Turn `:name` into `?`, outside quotes and comments. Returns the SQL and
/// the parameter names in order.
pub fn extract_params(sql: &str) -> (String, Vec<String>) {
    let (q, names, _) = split_params(sql);
    (q, names)
}

/// As [`extract_params`], also returning the SQL split at the placeholders.
pub fn split_params(sql: &str) -> (String, Vec<String>, Vec<String>) {
    let b = sql.as_bytes();
    let mut out = String::with_capacity(sql.len());
    let mut names = Vec::new();
    let mut parts = Vec::new();
    let mut part_start = 0usize;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b'\'' | b'"' | b'`' => {
                // copy a quoted run, honouring doubled quotes and backslashes
                let q = c;
                let start = i;
                i += 1;
                while i < b.len() {
                    if b[i] == b'\\' && q != b'`' {
                        i += 2;
                        continue;
                    }
                    if b[i] == q {
                        if i + 1 < b.len() && b[i + 1] == q {
                            i += 2;
                            continue;
                        }
                        i += 1;
                        break;
                    }
                    i += 1;
                }
                out.push_str(&sql[start..i.min(b.len())]);
            }
            b'-' if i + 1 < b.len() && b[i + 1] == b'-' => {
                let start = i;
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                out.push_str(&sql[start..i]);
            }
            b'#' => {
                let start = i;
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                out.push_str(&sql[start..i]);
            }
            b'/' if i + 1 < b.len() && b[i + 1] == b'*' => {
                let start = i;
                i += 2;
                while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                    i += 1;
                }
                i = (i + 2).min(b.len());
                out.push_str(&sql[start..i]);
            }
            b':' if i + 1 < b.len()
                && (b[i + 1].is_ascii_alphabetic() || b[i + 1] == b'_')
                && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_' || b[i - 1] == b':')) =>
            {
                let start = i + 1;
                i += 1;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                names.push(sql[start..i].to_string());
                parts.push(out[part_start..].to_string());
                out.push('?');
                part_start = out.len();
            }
            _ => {
                // copy one UTF-8 character
                let ch = sql[i..].chars().next().unwrap();
                out.push(ch);
                i += ch.len_utf8();
            }
        }
    }
    parts.push(out[part_start..].to_string());
    (out, names, parts)
}

impl Mix {
    /// Read and check a mix file.
    pub fn load(path: &Path) -> Result<Mix, MixError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| MixError {
            file: file.clone(),
            line: 0,
            message: format!("cannot read: {e}"),
        })?;
        Mix::parse(&text, path)
    }

    /// Check a mix's text; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Mix, MixError> {
        let file = path.display().to_string();
        let err = |span: std::ops::Range<usize>, message: String| MixError {
            file: file.clone(),
            line: line_of(text, span.start),
            message,
        };
        let raw: RawMix = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start)).unwrap_or(0);
            MixError { file: file.clone(), line, message: e.message().trim().to_string() }
        })?;
        let mut names: HashMap<String, usize> = HashMap::new();
        let mut generators = Vec::new();
        let name_ok = |n: &str| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');

        // Generators first: transactions refer to them.
        for g in &raw.generators {
            let line = line_of(text, g.span().start);
            let g = g.get_ref();
            let name = g.name.get_ref().clone();
            if !name_ok(&name) {
                return Err(err(g.name.span(), format!("generator name '{name}' must be letters, digits, '_' or '-'")));
            }
            if names.contains_key(&name) {
                return Err(err(g.name.span(), format!("duplicate generator name '{name}'")));
            }
            let table = g.table.as_ref().map(|t| t.get_ref().clone());
            let need_table = |what: &str| -> Result<String, MixError> {
                let t = table.clone().ok_or_else(|| {
                    err(g.kind.span(), format!("generator '{name}': kind '{what}' needs table = \"...\""))
                })?;
                if !coldswap_dataset::BASE_ROWS.iter().any(|(_, n, _)| *n == t) {
                    return Err(err(
                        g.table.as_ref().unwrap().span(),
                        format!("generator '{name}': unknown table '{t}' (not in the seeded dataset)"),
                    ));
                }
                Ok(t)
            };
            let base = |key: &Option<Spanned<String>>| -> Result<usize, MixError> {
                let k = key.as_ref().ok_or_else(|| {
                    err(g.kind.span(), format!("generator '{name}': needs account = \"<zipf generator>\""))
                })?;
                names.get(k.get_ref()).copied().ok_or_else(|| {
                    err(k.span(), format!("generator '{name}': '{}' is not a generator declared above it", k.get_ref()))
                })
            };
            let kind = match g.kind.get_ref().as_str() {
                "zipf" => GenKind::Zipf { table: need_table("zipf")? },
                "uniform" => GenKind::Uniform { table: need_table("uniform")? },
                "recent" => {
                    let w = g.window.unwrap_or(1000);
                    if w <= 0 {
                        return Err(err(g.kind.span(), format!("generator '{name}': window must be positive")));
                    }
                    GenKind::Recent { table: need_table("recent")?, window: w as u64 }
                }
                "int" => {
                    let (a, b) = (g.min.unwrap_or(0), g.max.unwrap_or(i64::MAX));
                    if b < a {
                        return Err(err(g.kind.span(), format!("generator '{name}': max {b} is below min {a}")));
                    }
                    GenKind::Int { min: a, max: b }
                }
                "choice" => {
                    let v: Vec<String> = g
                        .values
                        .clone()
                        .unwrap_or_default()
                        .into_iter()
                        .map(|v| match v {
                            RawValue::Int(i) => i.to_string(),
                            RawValue::Str(s) => s,
                        })
                        .collect();
                    if v.is_empty() {
                        return Err(err(g.kind.span(), format!("generator '{name}': choice needs values = [...]")));
                    }
                    GenKind::Choice { values: v }
                }
                "sample" => {
                    let values: Vec<Value> = g
                        .values
                        .clone()
                        .unwrap_or_default()
                        .into_iter()
                        .map(|v| match v {
                            RawValue::Int(i) => Value::Int(i),
                            RawValue::Str(s) => Value::Str(s),
                        })
                        .collect();
                    if values.is_empty() {
                        return Err(err(g.kind.span(), format!("generator '{name}': sample needs values = [...]")));
                    }
                    let weights = g.weights.clone().unwrap_or_else(|| vec![1; values.len()]);
                    if weights.len() != values.len() || weights.iter().any(|w| *w <= 0) {
                        return Err(err(
                            g.kind.span(),
                            format!(
                                "generator '{name}': weights must be {} positive integers, one per value",
                                values.len()
                            ),
                        ));
                    }
                    let mut cumulative = Vec::with_capacity(weights.len());
                    let mut sum = 0u64;
                    for w in weights {
                        sum = sum.saturating_add(w as u64);
                        cumulative.push(sum);
                    }
                    GenKind::Sample { values, cumulative }
                }
                "text" => {
                    let len = g.len.unwrap_or(16);
                    if !(1..=65535).contains(&len) {
                        return Err(err(g.kind.span(), format!("generator '{name}': len must be 1..65535")));
                    }
                    GenKind::Text { len: len as usize }
                }
                "api_key" => GenKind::ApiKey { account: base(&g.account)? },
                "session_token" => GenKind::SessionToken { account: base(&g.account)? },
                "user_of" => GenKind::UserOf { account: base(&g.account)? },
                "database_of" => GenKind::DatabaseOf { account: base(&g.account)? },
                "unique" => GenKind::Unique,
                other => {
                    return Err(err(
                        g.kind.span(),
                        format!(
                            "generator '{name}': unknown kind '{other}' (zipf, uniform, recent, int, choice, sample, text, api_key, session_token, user_of, database_of, unique)"
                        ),
                    ))
                }
            };
            names.insert(name.clone(), generators.len());
            generators.push(GenSpec { name, kind, line });
        }

        let compile = |what: &str,
                       owner: &str,
                       sql: &Option<Spanned<String>>,
                       steps: &Option<Spanned<Vec<String>>>,
                       at: std::ops::Range<usize>|
         -> Result<Vec<Stmt>, MixError> {
            let mut list: Vec<(String, std::ops::Range<usize>)> = Vec::new();
            match (sql, steps) {
                (Some(s), None) => list.push((s.get_ref().clone(), s.span())),
                (None, Some(st)) => {
                    for s in st.get_ref() {
                        list.push((s.clone(), st.span()));
                    }
                }
                (Some(s), Some(_)) => {
                    return Err(err(s.span(), format!("{what} '{owner}': give either sql or steps, not both")))
                }
                (None, None) => return Err(err(at, format!("{what} '{owner}': missing sql (or steps)"))),
            }
            if list.is_empty() {
                return Err(err(at, format!("{what} '{owner}': steps is empty")));
            }
            let mut out = Vec::new();
            for (text_sql, span) in list {
                if text_sql.trim().is_empty() {
                    return Err(err(span, format!("{what} '{owner}': empty SQL statement")));
                }
                let (q, params, parts) = split_params(&text_sql);
                let mut idx = Vec::new();
                for p in params {
                    match names.get(&p) {
                        Some(i) => idx.push(*i),
                        None => {
                            let mut known: Vec<&String> = names.keys().collect();
                            known.sort();
                            let known: Vec<&str> = known.iter().map(|s| s.as_str()).collect();
                            return Err(err(
                                span,
                                format!(
                                    "{what} '{owner}': parameter ':{p}' is not a declared generator (declared: {})",
                                    if known.is_empty() { "none".to_string() } else { known.join(", ") }
                                ),
                            ));
                        }
                    }
                }
                out.push(Stmt { text: text_sql.clone(), sql: q, params: idx, parts, line: line_of(text, span.start) });
            }
            Ok(out)
        };

        let mut seen = HashSet::new();
        let mut transactions = Vec::new();
        for t in &raw.transactions {
            let span = t.span();
            let t = t.get_ref();
            let name = t.name.get_ref().clone();
            if !name_ok(&name) {
                return Err(err(
                    t.name.span(),
                    format!("transaction name '{name}' must be letters, digits, '_' or '-'"),
                ));
            }
            if !seen.insert(name.clone()) {
                return Err(err(t.name.span(), format!("duplicate transaction or background job name '{name}'")));
            }
            let w = *t.weight.get_ref();
            if !(1..=10_000).contains(&w) {
                return Err(err(
                    t.weight.span(),
                    format!("transaction '{name}': weight must be a whole number from 1 to 10000, not {w}"),
                ));
            }
            let steps = compile("transaction", &name, &t.sql, &t.steps, span.clone())?;
            let ledger = match &t.ledger {
                Some(l) => Some(*names.get(l.get_ref()).ok_or_else(|| {
                    err(l.span(), format!("transaction '{name}': ledger '{}' is not a declared generator", l.get_ref()))
                })?),
                None => None,
            };
            transactions.push(TxnSpec {
                name,
                weight: w as u32,
                steps,
                atomic: t.atomic,
                ledger,
                description: t.description.clone().unwrap_or_default(),
                line: line_of(text, span.start),
            });
        }
        let mut background = Vec::new();
        for b in &raw.background {
            let span = b.span();
            let b = b.get_ref();
            let name = b.name.get_ref().clone();
            if !name_ok(&name) {
                return Err(err(
                    b.name.span(),
                    format!("background job name '{name}' must be letters, digits, '_' or '-'"),
                ));
            }
            if !seen.insert(name.clone()) {
                return Err(err(b.name.span(), format!("duplicate transaction or background job name '{name}'")));
            }
            let p = *b.period_ms.get_ref();
            if p <= 0 {
                return Err(err(
                    b.period_ms.span(),
                    format!("background job '{name}': period_ms must be positive, not {p}"),
                ));
            }
            let timeout = match &b.timeout_ms {
                Some(t) if *t.get_ref() <= 0 => {
                    return Err(err(t.span(), format!("background job '{name}': timeout_ms must be positive")))
                }
                Some(t) => Duration::from_millis(*t.get_ref() as u64),
                None => Duration::from_secs(60),
            };
            let steps = compile("background job", &name, &b.sql, &b.steps, span.clone())?;
            background.push(BgSpec {
                name,
                period: Duration::from_millis(p as u64),
                steps,
                enabled: b.enabled,
                timeout,
                overlap: b.overlap,
                description: b.description.clone().unwrap_or_default(),
                line: line_of(text, span.start),
            });
        }
        if transactions.is_empty() {
            return Err(MixError {
                file: file.clone(),
                line: 1,
                message: "the mix declares no [[transaction]]".into(),
            });
        }
        let api_nodes = match &raw.api {
            Some(a) => {
                let n = *a.nodes.get_ref();
                if !(1..=1000).contains(&n) {
                    return Err(err(a.nodes.span(), format!("api.nodes must be from 1 to 1000, not {n}")));
                }
                n as u32
            }
            None => 1,
        };
        let db = raw.database.get_ref().clone();
        if db.is_empty() || !db.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(err(raw.database.span(), format!("database '{db}' is not a plain database name")));
        }
        Ok(Mix {
            file: path.to_path_buf(),
            name: raw.name.get_ref().clone(),
            database: db,
            description: raw.description.unwrap_or_default(),
            api_nodes,
            generators,
            transactions,
            background,
        })
    }

    /// file:line of a statement, for errors found later (at the server).
    pub fn at(&self, line: usize) -> String {
        format!("{}:{line}", self.file.display())
    }

    /// A transaction by name.
    pub fn txn(&self, name: &str) -> Option<&TxnSpec> {
        self.transactions.iter().find(|t| t.name == name)
    }

    /// Whether a name is a transaction or background job of this mix.
    pub fn has(&self, name: &str) -> bool {
        self.transactions.iter().any(|t| t.name == name) || self.background.iter().any(|b| b.name == name)
    }

    /// Tables named in the mix's SQL (`db.table` or bare names in FROM/JOIN/
    /// INTO/UPDATE), for targeted prefetch.
    pub fn tables(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        let all = self
            .transactions
            .iter()
            .flat_map(|t| t.steps.iter())
            .chain(self.background.iter().flat_map(|b| b.steps.iter()));
        for s in all {
            let words: Vec<String> = s
                .sql
                .split(|c: char| c.is_whitespace() || c == ',' || c == '(' || c == ')')
                .filter(|w| !w.is_empty())
                .map(|w| w.to_string())
                .collect();
            for (i, w) in words.iter().enumerate() {
                let u = w.to_ascii_uppercase();
                if matches!(u.as_str(), "FROM" | "JOIN" | "INTO" | "UPDATE") {
                    if let Some(t) = words.get(i + 1) {
                        let t = t.trim_matches('`');
                        if t.is_empty() || t.eq_ignore_ascii_case("SELECT") {
                            continue;
                        }
                        let (db, name) = match t.split_once('.') {
                            Some((d, n)) => (d.trim_matches('`').to_string(), n.trim_matches('`').to_string()),
                            None => (self.database.clone(), t.to_string()),
                        };
                        if !out.iter().any(|(d, n)| *d == db && *n == name) {
                            out.push((db, name));
                        }
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod keyword_tests {
    #[test]
    fn first_keywords_past_comments() {
        use super::first_keyword as k;
        assert_eq!(k("  select 1"), "SELECT");
        assert_eq!(k("/* dashboard */ SELECT id FROM t -- x"), "SELECT");
        assert_eq!(k("-- why\n# who\n  UPDATE t SET a = 1"), "UPDATE");
        assert_eq!(k("/* unterminated"), "");
        assert_eq!(k("WITH x AS (SELECT 1) SELECT * FROM x"), "WITH");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Mix, MixError> {
        Mix::parse(s, Path::new("t.toml"))
    }

    const OK: &str = r#"
name = "t"
database = "api"
[[generator]]
name = "account"
kind = "zipf"
table = "accounts"
[[generator]]
name = "key"
kind = "api_key"
account = "account"
[[transaction]]
name = "auth"
weight = 3
sql = "SELECT * FROM api_keys WHERE api_key = :key AND account_id = :account"
[[background]]
name = "scan"
period_ms = 1000
sql = "SELECT COUNT(*) FROM schedules"
"#;

    #[test]
    fn parses_a_good_mix() {
        let m = parse(OK).unwrap();
        assert_eq!(m.transactions[0].steps[0].sql, "SELECT * FROM api_keys WHERE api_key = ? AND account_id = ?");
        assert_eq!(m.transactions[0].steps[0].params, vec![1, 0]);
        assert_eq!(m.background[0].period, Duration::from_secs(1));
        assert_eq!(m.tables(), vec![("api".into(), "api_keys".into()), ("api".into(), "schedules".into())]);
    }

    #[test]
    fn split_at_placeholders() {
        let (_, _, parts) = split_params("SELECT '?', a FROM t WHERE a = :x AND b = :y");
        assert_eq!(parts, vec!["SELECT '?', a FROM t WHERE a = ", " AND b = ", ""]);
    }

    #[test]
    fn params_skip_quotes_and_comments() {
        let (q, p) = extract_params(
            "SELECT ':x', `a:b`, \"c:d\" FROM t WHERE a = :a -- :b\n AND b=:b_2 /* :c */ AND t > '10:00'",
        );
        assert_eq!(p, vec!["a", "b_2"]);
        assert_eq!(q, "SELECT ':x', `a:b`, \"c:d\" FROM t WHERE a = ? -- :b\n AND b=? /* :c */ AND t > '10:00'");
        let (_, p) = extract_params("SELECT @x:=1, a::int");
        assert!(p.is_empty(), "{p:?}");
    }

    fn err_of(s: &str) -> String {
        parse(s).unwrap_err().to_string()
    }

    #[test]
    fn errors_name_file_and_line() {
        let e = err_of(&OK.replace("kind = \"zipf\"", "kind = \"zipff\""));
        assert!(e.starts_with("t.toml:6: generator 'account': unknown kind 'zipff'"), "{e}");
        let e = err_of(&OK.replace(":key AND", ":kee AND"));
        assert!(
            e.starts_with(
                "t.toml:15: transaction 'auth': parameter ':kee' is not a declared generator (declared: account, key)"
            ),
            "{e}"
        );
        let e = err_of(&OK.replace("weight = 3", "weight = 0"));
        assert!(e.starts_with("t.toml:14: transaction 'auth': weight must be a whole number"), "{e}");
        let e = err_of(&OK.replace("weight = 3", "weight = -2"));
        assert!(e.starts_with("t.toml:14: "), "{e}");
        let e = err_of(&OK.replace("weight = 3", "weight = 1.5"));
        assert!(e.starts_with("t.toml:14: "), "{e}");
        let e = err_of(&OK.replace("name = \"scan\"", "name = \"auth\""));
        assert!(e.starts_with("t.toml:17: duplicate transaction or background job name 'auth'"), "{e}");
        let e = err_of(&OK.replace("table = \"accounts\"", "table = \"acounts\""));
        assert!(e.starts_with("t.toml:7: generator 'account': unknown table 'acounts'"), "{e}");
        let e = err_of(&OK.replace("period_ms = 1000", "period_ms = -5"));
        assert!(e.starts_with("t.toml:18: background job 'scan': period_ms must be positive"), "{e}");
        let e = err_of(&format!("{OK}\nbogus = 1\n"));
        assert!(e.starts_with("t.toml:21: unknown field `bogus`"), "{e}");
        let e = err_of(&OK.replace("[[transaction]]", "[[transaction]"));
        assert!(e.starts_with("t.toml:12: "), "{e}");
        let e = err_of(&OK.replace("account = \"account\"", "account = \"nobody\""));
        assert!(e.starts_with("t.toml:11: generator 'key': 'nobody' is not a generator declared above it"), "{e}");
    }
}
