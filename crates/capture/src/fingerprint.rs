//! A statement's shape and its literals.
//!
//! The SQL is tokenized with sqlparser's MySQL tokenizer (so quotes,
//! escapes, comments and backticks are read as the server reads them, not by
//! a pile of regexes), then:
//! - the **fingerprint** is the statement with every literal as `?`,
//!   comments and spacing normalised, words lower case, `IN (...)` lists
//!   folded to `in(?+)` and multi-row `VALUES` to their first row, as
//!   pt-query-digest fingerprints a slow log;
//! - the **template** is the statement as written, its literals cut out, so
//!   that a mix can put a generator at each literal position;
//! - the **kind** comes from sqlparser's parse of the statement (read, write,
//!   or something a load cannot replay), and from its first keyword where
//!   sqlparser cannot parse it (MySQL syntax it does not know): such
//!   statements are still fingerprinted, from their tokens.

use sqlparser::dialect::MySqlDialect;
use sqlparser::tokenizer::{Token, Tokenizer, Whitespace};

/// A literal as written in the statement.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Lit {
    /// An integer (sent unquoted).
    Int(i64),
    /// A quoted string, unescaped.
    Str(String),
    /// Anything else (decimals, hex, too-large numbers), as written: kept
    /// in the statement rather than generated.
    Other(String),
}

/// A piece of a statement's template.
#[derive(Debug, Clone, PartialEq)]
pub enum Piece {
    /// Text as written.
    Text(String),
    /// The literal at this position (index into [`Shape::literals`]).
    Lit(usize),
}

/// What replaying a statement does.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Kind {
    /// SELECT or WITH ... SELECT.
    Read,
    /// INSERT, UPDATE, DELETE, REPLACE.
    Write,
    /// Not a query a load replays (BEGIN, COMMIT, SET, SHOW, CALL, DDL...):
    /// its first keyword.
    Other(String),
}

/// A statement, taken apart.
#[derive(Debug, Clone)]
pub struct Shape {
    /// Literals as `?`, normalised (the grouping key).
    pub fingerprint: String,
    /// The statement as written, literal positions cut out.
    pub template: Vec<Piece>,
    /// Its literals, in order.
    pub literals: Vec<Lit>,
    /// What it does.
    pub kind: Kind,
    /// Whether sqlparser parsed it as one statement (else the kind is from
    /// its first keyword, or it is several statements).
    pub parsed: bool,
    /// More than one statement in one entry (a procedure body, a batch).
    pub multi: bool,
    /// The first table it names (after FROM, INTO, UPDATE, JOIN), lower case.
    pub table: Option<String>,
}

impl Shape {
    /// The statement with every literal position written by `f`.
    pub fn render(&self, mut f: impl FnMut(usize, &Lit) -> String) -> String {
        let mut out = String::new();
        for p in &self.template {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Lit(i) => out.push_str(&f(*i, &self.literals[*i])),
            }
        }
        out
    }
}

/// Take a statement apart. `None` when the tokenizer cannot read it (an
/// unterminated quote: a truncated log line).
pub fn shape(sql: &str) -> Option<Shape> {
    let dialect = MySqlDialect {};
    let tokens = Tokenizer::new(&dialect, sql).with_unescape(false).tokenize().ok()?;
    let mut template = Vec::new();
    let mut literals = Vec::new();
    let mut text = String::new();
    // Fingerprint tokens: None for a space.
    let mut fp: Vec<Option<String>> = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let t = &tokens[i];
        let lit = match t {
            Token::Number(n, _) => Some(match n.parse::<i64>() {
                Ok(v) => Lit::Int(v),
                Err(_) => Lit::Other(n.clone()),
            }),
            Token::SingleQuotedString(s) => Some(Lit::Str(unescape(s, '\''))),
            Token::DoubleQuotedString(s) => Some(Lit::Str(unescape(s, '"'))),
            Token::NationalStringLiteral(_)
            | Token::HexStringLiteral(_)
            | Token::SingleQuotedByteStringLiteral(_)
            | Token::DoubleQuotedByteStringLiteral(_) => Some(Lit::Other(t.to_string())),
            _ => None,
        };
        if let Some(l) = lit {
            template.push(Piece::Text(std::mem::take(&mut text)));
            template.push(Piece::Lit(literals.len()));
            literals.push(l);
            fp.push(Some("?".into()));
            i += 1;
            continue;
        }
        match t {
            Token::Whitespace(w) => {
                match w {
                    // Comments go (they often carry request ids); the space
                    // they took stays.
                    Whitespace::SingleLineComment { .. } => text.push('\n'),
                    Whitespace::MultiLineComment(_) => text.push(' '),
                    _ => text.push_str(&t.to_string()),
                }
                if fp.last().map(|x| x.is_some()).unwrap_or(false) {
                    fp.push(None);
                }
            }
            // `:name`, a mix's placeholder: a literal position too.
            Token::Colon if matches!(tokens.get(i + 1), Some(Token::Word(_))) => {
                text.push_str(&t.to_string());
                text.push_str(&tokens[i + 1].to_string());
                fp.push(Some("?".into()));
                i += 2;
                continue;
            }
            Token::Placeholder(_) => {
                text.push_str(&t.to_string());
                fp.push(Some("?".into()));
            }
            Token::Word(w) => {
                text.push_str(&t.to_string());
                fp.push(Some(w.value.to_lowercase()));
            }
            Token::EOF => {}
            other => {
                let s = other.to_string();
                text.push_str(&s);
                fp.push(Some(s.to_lowercase()));
            }
        }
        i += 1;
    }
    if !text.is_empty() {
        template.push(Piece::Text(text));
    }
    // Trailing semicolons and spaces are not part of the statement.
    trim_end(&mut template);
    while matches!(fp.last(), Some(None)) || matches!(fp.last(), Some(Some(s)) if s == ";") {
        fp.pop();
    }
    let words: Vec<&str> = fp.iter().flatten().map(|s| s.as_str()).collect();
    let first = words.first().map(|w| w.to_ascii_uppercase()).unwrap_or_default();
    let table = first_table(&words);
    let fingerprint = join(&fold(&fp));
    let (parsed, multi, kind) = classify(sql, &first);
    Some(Shape { fingerprint, template, literals, kind, parsed, multi, table })
}

fn trim_end(template: &mut Vec<Piece>) {
    while let Some(Piece::Text(t)) = template.last_mut() {
        let trimmed = t.trim_end().trim_end_matches(';').trim_end().len();
        if trimmed == 0 {
            template.pop();
            continue;
        }
        t.truncate(trimmed);
        break;
    }
    if let Some(Piece::Text(t)) = template.first_mut() {
        *t = t.trim_start().to_string();
    }
}

/// sqlparser's reading of the statement: whether it parsed as one
/// statement, whether it holds several, and what it does.
fn classify(sql: &str, first: &str) -> (bool, bool, Kind) {
    let by_keyword = || match first {
        "SELECT" | "WITH" => Kind::Read,
        "INSERT" | "UPDATE" | "DELETE" | "REPLACE" => Kind::Write,
        "" => Kind::Other("(empty)".into()),
        o => Kind::Other(o.to_string()),
    };
    match sqlparser::parser::Parser::parse_sql(&MySqlDialect {}, sql) {
        Ok(stmts) if stmts.len() == 1 => {
            use sqlparser::ast::Statement;
            let kind = match &stmts[0] {
                Statement::Query(_) => Kind::Read,
                Statement::Insert(_) | Statement::Update { .. } | Statement::Delete(_) => Kind::Write,
                _ => match by_keyword() {
                    // A statement that parses as neither query nor DML but
                    // starts like one (SELECT ... INTO @var) is not replayed.
                    Kind::Read | Kind::Write => Kind::Other(first.to_string()),
                    k => k,
                },
            };
            (true, false, kind)
        }
        Ok(stmts) if stmts.len() > 1 => (true, true, Kind::Other(format!("{} statements in one", stmts.len()))),
        _ => (false, false, by_keyword()),
    }
}

/// The first table named after FROM, INTO, UPDATE or JOIN.
fn first_table(words: &[&str]) -> Option<String> {
    for (i, w) in words.iter().enumerate() {
        if matches!(*w, "from" | "into" | "update" | "join") {
            let mut name = words.get(i + 1)?.to_string();
            if name == "(" {
                continue;
            }
            // db.table: the table
            if words.get(i + 2) == Some(&".") {
                if let Some(t) = words.get(i + 3) {
                    name = t.to_string();
                }
            }
            if name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$') {
                return Some(name);
            }
        }
    }
    None
}

/// Fold `IN (?, ?, ...)` to `in(?+)`, a multi-row VALUES to its first row,
/// and a unary minus on a literal into the literal.
fn fold(fp: &[Option<String>]) -> Vec<String> {
    let toks: Vec<&str> = fp.iter().flatten().map(|s| s.as_str()).collect();
    let mut out: Vec<String> = Vec::with_capacity(toks.len());
    let mut i = 0;
    while i < toks.len() {
        let t = toks[i];
        if t == "-" && toks.get(i + 1) == Some(&"?") {
            let prev = out.last().map(|s| s.as_str()).unwrap_or("(");
            let operand = prev == "?"
                || prev == ")"
                || (prev.chars().all(|c| c.is_alphanumeric() || c == '_') && !KEYWORDS_BEFORE_VALUE.contains(&prev));
            if !operand {
                i += 1;
                continue;
            }
        }
        if t == "in" && toks.get(i + 1) == Some(&"(") {
            // (?, ?, ...) only
            let mut j = i + 2;
            let mut ok = false;
            while j < toks.len() {
                if toks[j] != "?" {
                    break;
                }
                match toks.get(j + 1) {
                    Some(&",") => j += 2,
                    Some(&")") => {
                        ok = true;
                        j += 2;
                        break;
                    }
                    _ => break,
                }
            }
            if ok {
                out.push("in(?+)".into());
                i = j;
                continue;
            }
        }
        if (t == "values" || t == "value") && toks.get(i + 1) == Some(&"(") {
            // keep the first row; skip `, ( ... )` after it
            out.push(t.into());
            let mut j = i + 1;
            let mut depth = 0;
            let mut first_row = true;
            while j < toks.len() {
                let u = toks[j];
                if first_row {
                    out.push(u.into());
                }
                if u == "(" {
                    depth += 1;
                } else if u == ")" {
                    depth -= 1;
                    if depth == 0 {
                        first_row = false;
                        if toks.get(j + 1) != Some(&",") || toks.get(j + 2) != Some(&"(") {
                            j += 1;
                            break;
                        }
                    }
                }
                j += 1;
            }
            i = j;
            continue;
        }
        out.push(t.into());
        i += 1;
    }
    out
}

const KEYWORDS_BEFORE_VALUE: &[&str] = &[
    "and", "or", "not", "between", "in", "values", "value", "then", "else", "when", "limit", "offset", "by", "select",
    "where", "set", "like", "is", "interval", "on", "having", "return",
];

/// Tokens as one line: a space between words, none inside brackets, before
/// commas, around dots, or before a bracket that follows a word.
fn join(toks: &[String]) -> String {
    let mut out = String::new();
    let mut prev: Option<&str> = None;
    for t in toks {
        let t = t.as_str();
        let glue = match prev {
            None => true,
            Some(p) => {
                p == "("
                    || p == "."
                    || p == "@"
                    || t == ")"
                    || t == ","
                    || t == "."
                    || t == ";"
                    || (t == "(" && (p == ")" || p.chars().all(|c| c.is_alphanumeric() || c == '_')))
            }
        };
        if !glue {
            out.push(' ');
        }
        out.push_str(t);
        prev = Some(t);
    }
    out
}

/// A MySQL string literal's text as the server reads it.
fn unescape(raw: &str, quote: char) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut it = raw.chars().peekable();
    while let Some(c) = it.next() {
        if c == quote && it.peek() == Some(&quote) {
            it.next();
            out.push(quote);
        } else if c == '\\' {
            match it.next() {
                Some('0') => out.push('\0'),
                Some('b') => out.push('\u{8}'),
                Some('n') => out.push('\n'),
                Some('r') => out.push('\r'),
                Some('t') => out.push('\t'),
                Some('Z') => out.push('\u{1a}'),
                // kept by the server in LIKE patterns
                Some('%') => out.push_str("\\%"),
                Some('_') => out.push_str("\\_"),
                Some(o) => out.push(o),
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(s: &str) -> String {
        shape(s).unwrap().fingerprint
    }

    #[test]
    fn literals_and_spacing_fold_away() {
        assert_eq!(fp("SELECT id, name FROM `jobs` WHERE id = 42"), "select id, name from jobs where id = ?");
        assert_eq!(fp("select id ,name from jobs\n  where  id=7;"), "select id, name from jobs where id = ?");
        assert_eq!(
            fp("SELECT * FROM t WHERE a = 'x' AND b = \"y\" AND c = -3.5"),
            "select * from t where a = ? and b = ? and c = ?"
        );
        assert_eq!(fp("SELECT a - 1 FROM t"), "select a - ? from t");
        assert_eq!(fp("SELECT * FROM t WHERE id IN (1, 2, 3)"), fp("select * from t where id in (4)"));
        assert_eq!(fp("SELECT * FROM t WHERE id IN (1,2)"), "select * from t where id in(?+)");
        assert_eq!(fp("INSERT INTO t (a, b) VALUES (1, 'x'), (2, 'y')"), fp("insert into t (a, b) values (3, 'z')"));
        assert_eq!(fp("/* req 12 */ SELECT 1 -- trailing\n"), "select ?");
        assert_eq!(fp("SELECT * FROM t WHERE s = 'it''s' AND u = 'a\\'b'"), "select * from t where s = ? and u = ?");
        assert_eq!(fp("SELECT * FROM jobs WHERE id = :job"), "select * from jobs where id = ?");
        assert_eq!(
            fp("SELECT COUNT(*) FROM t WHERE created_at > NOW() - INTERVAL 10 SECOND"),
            "select count(*) from t where created_at > now() - interval ? second"
        );
    }

    #[test]
    fn templates_keep_the_text_and_cut_the_literals() {
        let s = shape("SELECT id FROM jobs WHERE account_id = 17 AND status = 'it''s' ORDER BY id LIMIT 20;").unwrap();
        assert_eq!(s.literals, vec![Lit::Int(17), Lit::Str("it's".into()), Lit::Int(20)]);
        let t = s.render(|i, _| format!(":p{i}"));
        assert_eq!(t, "SELECT id FROM jobs WHERE account_id = :p0 AND status = :p1 ORDER BY id LIMIT :p2");
        assert_eq!(s.kind, Kind::Read);
        assert!(s.parsed);
        assert_eq!(s.table.as_deref(), Some("jobs"));
        let s = shape("SELECT 1.5, 0x1F, 99999999999999999999").unwrap();
        assert!(matches!(&s.literals[0], Lit::Other(x) if x == "1.5"), "{:?}", s.literals);
    }

    #[test]
    fn kinds() {
        assert_eq!(shape("UPDATE jobs SET status = 'x' WHERE id = 1").unwrap().kind, Kind::Write);
        assert_eq!(shape("REPLACE INTO t VALUES (1)").unwrap().kind, Kind::Write);
        assert_eq!(shape("DELETE FROM t WHERE id = 1").unwrap().kind, Kind::Write);
        assert_eq!(shape("WITH x AS (SELECT 1) SELECT * FROM x").unwrap().kind, Kind::Read);
        assert_eq!(shape("COMMIT").unwrap().kind, Kind::Other("COMMIT".into()));
        assert_eq!(shape("SET autocommit=0").unwrap().kind, Kind::Other("SET".into()));
        let m = shape("SELECT 1; SELECT 2").unwrap();
        assert!(m.multi);
        // MySQL syntax sqlparser does not parse still gets a kind and a fingerprint
        let s =
            shape("SELECT SQL_NO_CACHE STRAIGHT_JOIN a FROM t FORCE INDEX (i) WHERE b = 3 LOCK IN SHARE MODE").unwrap();
        assert_eq!(s.kind, Kind::Read);
        assert_eq!(
            s.fingerprint,
            "select sql_no_cache straight_join a from t force index(i) where b = ? lock in share mode"
        );
        assert!(shape("SELECT 'unterminated").is_none());
    }
}
