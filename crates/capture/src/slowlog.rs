//! A slow query log (MySQL 5.7 to 9.x, MariaDB, Percona Server) as a list
//! of statements: the format pt-query-digest reads, usually captured with
//! `long_query_time = 0` so that every statement is in it.
//!
//! An entry is a run of `# Key: value` header lines (`# Time:`,
//! `# User@Host:`, `# Thread_id:`, `# Query_time:`, ...), optional
//! `use db;` and `SET timestamp=N;` lines, then the statement, which may
//! span lines. The banner a server writes when it opens the log is skipped.

use anyhow::{Context, Result};
use std::io::BufRead;
use std::path::Path;

/// One logged statement.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Line of the log its statement starts on (1-based).
    pub line: usize,
    /// `# Time:` when it has sub-second digits (MySQL 5.7+ writes
    /// microseconds), seconds since the epoch.
    pub logged: Option<f64>,
    /// `SET timestamp=N;`: seconds since the epoch, whole on MariaDB.
    pub stamp: Option<f64>,
    /// `# Query_time:`, seconds.
    pub query_time: f64,
    /// The default database (`Schema:` or the last `use db;`).
    pub schema: Option<String>,
    /// The connection (`Id:` or `Thread_id:`).
    pub thread: Option<u64>,
    /// The statement, without its final `;`.
    pub sql: String,
}

/// A parsed log.
#[derive(Debug, Clone, Default)]
pub struct SlowLog {
    /// Its statements, in log order.
    pub entries: Vec<Entry>,
    /// Lines that were neither a header, nor a statement, nor the banner.
    pub stray_lines: usize,
}

impl SlowLog {
    /// Read a log file.
    pub fn read(path: &Path) -> Result<SlowLog> {
        let f = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let mut lines = Vec::new();
        for (i, l) in std::io::BufReader::new(f).split(b'\n').enumerate() {
            let l = l.with_context(|| format!("cannot read {} at line {}", path.display(), i + 1))?;
            // Statements may hold bytes that are not UTF-8 (binary literals).
            lines.push(String::from_utf8_lossy(&l).trim_end_matches('\r').to_string());
        }
        Ok(parse_lines(lines.iter().map(|s| s.as_str())))
    }

    /// Parse a log held in memory.
    pub fn parse(text: &str) -> SlowLog {
        parse_lines(text.lines())
    }

    /// Arrival times for period detection, and their resolution in seconds:
    /// `# Time:` where every entry has it with sub-second digits, else
    /// `SET timestamp` (whole seconds).
    pub fn times(&self) -> (Vec<Option<f64>>, f64) {
        if !self.entries.is_empty() && self.entries.iter().all(|e| e.logged.is_some()) {
            (self.entries.iter().map(|e| e.logged).collect(), 1e-6)
        } else {
            (self.entries.iter().map(|e| e.stamp).collect(), 1.0)
        }
    }
}

#[derive(Default)]
struct Pending {
    line: usize,
    logged: Option<f64>,
    stamp: Option<f64>,
    query_time: f64,
    schema: Option<String>,
    thread: Option<u64>,
    sql: Vec<String>,
    has_header: bool,
}

const HEADERS: &[&str] = &["# Time:", "# User@Host:", "# Thread_id:", "# Query_time:", "# Schema:"];

fn parse_lines<'a>(lines: impl Iterator<Item = &'a str>) -> SlowLog {
    let mut out = SlowLog::default();
    let mut p = Pending::default();
    // The database a connection last chose: `use db;` is written only when
    // it changes (MySQL), so it carries over to later entries.
    let mut schema: Option<String> = None;
    let mut skip_banner = 0;
    for (n, line) in lines.enumerate() {
        let n = n + 1;
        if skip_banner > 0 && (line.starts_with("Tcp port:") || line.starts_with("Time ")) {
            skip_banner -= 1;
            continue;
        }
        skip_banner = 0;
        if line.contains(", Version: ") && line.trim_end().ends_with("started with:") {
            flush(&mut p, &mut out);
            skip_banner = 2;
            continue;
        }
        let header = HEADERS.iter().any(|h| line.starts_with(h))
            || (p.has_header
                && p.sql.is_empty()
                && line.starts_with("# ")
                && line.contains(": ")
                && !line.starts_with("# administrator command"));
        if header {
            if !p.sql.is_empty() {
                flush(&mut p, &mut out);
            }
            p.has_header = true;
            read_header(line, &mut p);
            continue;
        }
        if p.sql.is_empty() {
            let t = line.trim();
            if t.is_empty() {
                continue;
            }
            let lower = t.to_ascii_lowercase();
            if lower.starts_with("use ") && t.ends_with(';') {
                let db = t[4..t.len() - 1].trim().trim_matches('`').to_string();
                schema = Some(db.clone());
                p.schema = Some(db);
                continue;
            }
            if let Some(v) = lower.strip_prefix("set timestamp=") {
                p.stamp = v.trim_end_matches(';').trim().parse().ok();
                continue;
            }
            if !p.has_header {
                out.stray_lines += 1;
                continue;
            }
            p.line = n;
            if p.schema.is_none() {
                p.schema = schema.clone();
            }
        }
        p.sql.push(line.to_string());
    }
    flush(&mut p, &mut out);
    out
}

fn flush(p: &mut Pending, out: &mut SlowLog) {
    let sql = p.sql.join("\n");
    let sql = sql.trim().trim_end_matches(';').trim_end().to_string();
    if !sql.is_empty() {
        out.entries.push(Entry {
            line: p.line,
            logged: p.logged,
            stamp: p.stamp,
            query_time: p.query_time,
            schema: p.schema.clone(),
            thread: p.thread,
            sql,
        });
    }
    *p = Pending::default();
}

fn read_header(line: &str, p: &mut Pending) {
    if let Some(t) = line.strip_prefix("# Time:") {
        p.logged = parse_time(t.trim()).filter(|_| t.contains('.'));
        return;
    }
    let words: Vec<&str> = line[1..].split_whitespace().collect();
    for (i, w) in words.iter().enumerate() {
        let v = words.get(i + 1).copied().unwrap_or("");
        match *w {
            "Query_time:" => p.query_time = v.parse().unwrap_or(0.0),
            "Id:" | "Thread_id:" => p.thread = v.parse().ok(),
            "Schema:" if !v.is_empty() && !v.ends_with(':') => p.schema = Some(v.to_string()),
            _ => {}
        }
    }
}

/// `2026-11-30T23:10:00.123456Z` (or with an offset), or `261130 23:10:00`
/// / `261130  8:01:06.058915`, as seconds since the epoch (the second form
/// is local time; only differences between entries are used).
pub fn parse_time(s: &str) -> Option<f64> {
    let (date, time) = if let Some((d, t)) = s.split_once('T') {
        (d.to_string(), t.to_string())
    } else {
        let mut it = s.split_whitespace();
        let d = it.next()?;
        let t = it.next()?;
        if d.len() != 6 {
            return None;
        }
        (format!("20{}-{}-{}", &d[0..2], &d[2..4], &d[4..6]), t.to_string())
    };
    let dp: Vec<i64> = date.split('-').map(|x| x.parse().ok()).collect::<Option<_>>()?;
    if dp.len() != 3 {
        return None;
    }
    // zone: Z, +hh:mm, -hh:mm
    let (clock, offset) = if let Some(c) = time.strip_suffix('Z') {
        (c.to_string(), 0.0)
    } else if let Some(i) = time.rfind(['+', '-']) {
        let (c, z) = time.split_at(i);
        let sign = if z.starts_with('-') { -1.0 } else { 1.0 };
        let mut zp = z[1..].split(':');
        let h: f64 = zp.next()?.parse().ok()?;
        let m: f64 = zp.next().unwrap_or("0").parse().ok()?;
        (c.to_string(), sign * (h * 3600.0 + m * 60.0))
    } else {
        (time.clone(), 0.0)
    };
    let cp: Vec<&str> = clock.split(':').collect();
    if cp.len() != 3 {
        return None;
    }
    let h: f64 = cp[0].parse().ok()?;
    let m: f64 = cp[1].parse().ok()?;
    let sec: f64 = cp[2].parse().ok()?;
    let days = days_from_civil(dp[0], dp[1], dp[2]) as f64;
    Some(days * 86400.0 + h * 3600.0 + m * 60.0 + sec - offset)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

#[cfg(test)]
mod tests {
    use super::*;

    const MYSQL: &str = "/usr/sbin/mysqld, Version: 8.0.36 (MySQL Community Server - GPL). started with:
Tcp port: 3306  Unix socket: /var/run/mysqld/mysqld.sock
Time                 Id Command    Argument
# Time: 2026-11-30T23:10:00.250000Z
# User@Host: app[app] @ localhost [127.0.0.1]  Id:    12
# Query_time: 0.000321  Lock_time: 0.000002 Rows_sent: 1  Rows_examined: 1
use api;
SET timestamp=1796080200;
SELECT id FROM jobs WHERE id = 5;
# Time: 2026-11-30T23:10:01.750000Z
# User@Host: app[app] @ localhost [127.0.0.1]  Id:    13
# Query_time: 1.500000  Lock_time: 0.000002 Rows_sent: 0  Rows_examined: 100000
SET timestamp=1796080201;
SELECT id
  FROM schedules
 WHERE a <> b;
# Time: 2026-11-30T23:10:02.000001Z
# User@Host: app[app] @ localhost [127.0.0.1]  Id:    12
# Query_time: 0.000010  Lock_time: 0.000000 Rows_sent: 0  Rows_examined: 0
SET timestamp=1796080202;
# administrator command: Quit;
";

    const MARIADB: &str = "# Time: 261130 23:10:00
# User@Host: app[app] @ localhost [127.0.0.1]
# Thread_id: 8  Schema: api  QC_hit: No
# Query_time: 0.000120  Lock_time: 0.000030  Rows_sent: 1  Rows_examined: 1
# Rows_affected: 0  Bytes_sent: 91
SET timestamp=1796080200;
SELECT id FROM jobs WHERE id = 5;
# User@Host: app[app] @ localhost [127.0.0.1]
# Thread_id: 9  Schema: api  QC_hit: No
# Query_time: 0.000100  Lock_time: 0.000030  Rows_sent: 1  Rows_examined: 1
# Rows_affected: 0  Bytes_sent: 91
SET timestamp=1796080200;
SELECT 'a;b
# not a header' FROM dual;
";

    #[test]
    fn mysql_format() {
        let l = SlowLog::parse(MYSQL);
        assert_eq!(l.entries.len(), 3, "{:?}", l.entries);
        let e = &l.entries[1];
        assert_eq!(e.sql, "SELECT id\n  FROM schedules\n WHERE a <> b");
        assert_eq!(e.line, 14);
        assert_eq!(e.query_time, 1.5);
        assert_eq!(e.thread, Some(13));
        assert_eq!(e.schema.as_deref(), Some("api"), "use carries over");
        assert_eq!(l.entries[2].sql, "# administrator command: Quit");
        let (t, res) = l.times();
        assert_eq!(res, 1e-6);
        assert!((t[1].unwrap() - t[0].unwrap() - 1.5).abs() < 1e-6);
        assert_eq!(parse_time("2026-11-30T23:10:00.250000Z").unwrap(), 1796080200.25);
        assert_eq!(parse_time("2026-11-30T23:10:00+01:00").unwrap(), 1796080200.0 - 3600.0);
        assert_eq!(l.stray_lines, 0);
    }

    #[test]
    fn mariadb_format() {
        let l = SlowLog::parse(MARIADB);
        assert_eq!(l.entries.len(), 2, "{:?}", l.entries);
        assert_eq!(l.entries[0].schema.as_deref(), Some("api"));
        assert_eq!(l.entries[0].thread, Some(8));
        assert_eq!(l.entries[1].sql, "SELECT 'a;b\n# not a header' FROM dual");
        let (t, res) = l.times();
        assert_eq!(res, 1.0);
        assert_eq!(t[0], Some(1796080200.0));
        assert!((parse_time("261130  8:01:06.058915").unwrap() % 86400.0 - (8.0 * 3600.0 + 66.058915)).abs() < 1e-4);
    }
}
