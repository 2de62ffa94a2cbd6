//! A live server's performance_schema as a [`Capture`]: the server's own
//! counts per digest (`events_statements_summary_by_digest`), differenced
//! over a window so that nothing is reset, and example statements with
//! their literals and start times (`events_statements_history_long`), read
//! every second during the window so that its ring (10,000 rows by
//! default) does not wrap unseen.
//!
//! What is read: those two tables, `setup_consumers`, and the reading
//! connection's own thread id (its statements are left out). What is
//! written: nothing, unless asked to switch `events_statements_history_long`
//! and `events_statements_current` (which feeds it) on for the window
//! (`enable_history`); what was switched on is switched off again after.

use anyhow::{anyhow, bail, Result};
use coldswap_sql as sql;
use sqlx::mysql::MySqlConnection;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::import::{Capture, DigestTotal, Obs};

/// A connection reading one server's performance_schema.
pub struct Reader {
    conn: MySqlConnection,
    /// Consumers switched on by us (and off again at close).
    switched_on: Vec<&'static str>,
    own_thread: Option<i64>,
    source: String,
    /// The latest TIMER_END read from the history: later reads start a
    /// little before it (statements end out of order across threads).
    read_up_to: f64,
}

const CONSUMER: &str = "events_statements_history_long";
/// The history is fed from the current events: both must be on.
const CONSUMERS: [&str; 2] = ["events_statements_current", CONSUMER];

async fn consumer_on(conn: &mut MySqlConnection, name: &str) -> Result<bool> {
    let v =
        sql::query_text(conn, &format!("SELECT ENABLED FROM performance_schema.setup_consumers WHERE NAME = '{name}'"))
            .await
            .map_err(|e| anyhow!("cannot read performance_schema.setup_consumers: {e}"))?;
    match v {
        Some(v) => Ok(v.eq_ignore_ascii_case("YES")),
        None => bail!("performance_schema has no consumer {name} (is performance_schema on?)"),
    }
}

impl Reader {
    /// Check the server can be read; switch the history consumer on if it
    /// is off and `enable_history` says so, else say how.
    pub async fn open(conn: MySqlConnection, source: &str, enable_history: bool) -> Result<Reader> {
        let mut conn = conn;
        let on = sql::query_text(&mut conn, "SELECT /* coldswap */ @@performance_schema").await?.unwrap_or_default();
        if on != "1" && !on.eq_ignore_ascii_case("ON") {
            bail!("performance_schema is off on {source} (it needs performance_schema = ON at server start)");
        }
        if !consumer_on(&mut conn, "statements_digest").await? {
            bail!("the statements_digest consumer is off on {source}: no digest counts to read");
        }
        let mut off = Vec::new();
        for c in CONSUMERS {
            if !consumer_on(&mut conn, c).await? {
                off.push(c);
            }
        }
        if !off.is_empty() && !enable_history {
            bail!(
                "{} off on {source}: pass --enable-history to switch {} on for the window (and off after), or \
                 UPDATE performance_schema.setup_consumers SET ENABLED = 'YES' WHERE NAME IN ('{}')",
                off.join(" and "),
                if off.len() > 1 { "them" } else { "it" },
                off.join("', '")
            );
        }
        let mut switched_on = Vec::new();
        for c in off {
            sql::exec(
                &mut conn,
                &format!("UPDATE performance_schema.setup_consumers SET ENABLED = 'YES' WHERE NAME = '{c}'"),
            )
            .await
            .map_err(|e| anyhow!("cannot switch {c} on: {e}"))?;
            switched_on.push(c);
        }
        let own_thread = sql::query_text(
            &mut conn,
            "SELECT /* coldswap */ THREAD_ID FROM performance_schema.threads WHERE PROCESSLIST_ID = CONNECTION_ID()",
        )
        .await?
        .and_then(|v| v.parse().ok());
        Ok(Reader { conn, switched_on, own_thread, source: source.to_string(), read_up_to: 0.0 })
    }

    async fn totals(&mut self) -> Result<HashMap<String, DigestTotal>> {
        let rows = sql::fetch_all(
            &mut self.conn,
            "SELECT DIGEST, DIGEST_TEXT, COUNT_STAR, SUM_TIMER_WAIT FROM performance_schema.events_statements_summary_by_digest \
             WHERE DIGEST IS NOT NULL",
        )
        .await?;
        let mut out = HashMap::new();
        for r in rows {
            let Some(d) = sql::col_text_at(&r, 0) else { continue };
            let count: u64 = sql::col_text_at(&r, 2).and_then(|v| v.parse().ok()).unwrap_or(0);
            let ps: f64 = sql::col_text_at(&r, 3).and_then(|v| v.parse().ok()).unwrap_or(0.0);
            out.insert(d, DigestTotal { count, seconds: ps / 1e12, text: sql::col_text_at(&r, 1).unwrap_or_default() });
        }
        Ok(out)
    }

    async fn history(&mut self, seen: &mut HashSet<(i64, i64)>, into: Option<&mut Vec<Obs>>) -> Result<()> {
        // Rows that ended up to 10 s before the last read's latest; the
        // `seen` set drops the ones already taken.
        let from = (self.read_up_to - 10e12).max(0.0);
        let rows = sql::fetch_all(
            &mut self.conn,
            &format!(
                "SELECT THREAD_ID, EVENT_ID, TIMER_START, TIMER_WAIT, CURRENT_SCHEMA, DIGEST, SQL_TEXT, TIMER_END \
                 FROM performance_schema.events_statements_history_long \
                 WHERE SQL_TEXT IS NOT NULL AND (TIMER_END IS NULL OR TIMER_END >= {from:.0})"
            ),
        )
        .await?;
        let mut into = into;
        for r in rows {
            let num = |i: usize| sql::col_text_at(&r, i).and_then(|v| v.parse::<f64>().ok());
            if let Some(end) = num(7) {
                self.read_up_to = self.read_up_to.max(end);
            }
            let (Some(th), Some(ev)) = (num(0), num(1)) else { continue };
            let key = (th as i64, ev as i64);
            if !seen.insert(key) || Some(key.0) == self.own_thread {
                continue;
            }
            if let Some(v) = into.as_deref_mut() {
                v.push(Obs {
                    at: ev as u64,
                    // picoseconds since the server started
                    time: num(2).map(|ps| ps / 1e12),
                    query_time: num(3).map(|ps| ps / 1e12).unwrap_or(0.0),
                    schema: sql::col_text_at(&r, 4),
                    sql: sql::col_text_at(&r, 6).unwrap_or_default(),
                    digest: sql::col_text_at(&r, 5),
                });
            }
        }
        Ok(())
    }

    /// Watch the server for `window`: the digests' counts over it, and
    /// every example statement that started in it. `progress` is told the
    /// seconds elapsed.
    pub async fn capture(&mut self, window: Duration, progress: &(dyn Fn(f64) + Sync)) -> Result<Capture> {
        let mut seen = HashSet::new();
        // What is in the ring already happened before the window.
        self.history(&mut seen, None).await?;
        let before = self.totals().await?;
        let start = Instant::now();
        let mut obs = Vec::new();
        loop {
            let left = window.saturating_sub(start.elapsed());
            tokio::time::sleep(left.min(Duration::from_secs(1))).await;
            self.history(&mut seen, Some(&mut obs)).await?;
            progress(start.elapsed().as_secs_f64());
            if start.elapsed() >= window {
                break;
            }
        }
        let after = self.totals().await?;
        let mut totals = HashMap::new();
        for (d, t) in after {
            let (c0, s0) = before.get(&d).map(|b| (b.count, b.seconds)).unwrap_or((0, 0.0));
            if t.count > c0 {
                totals.insert(d, DigestTotal { count: t.count - c0, seconds: (t.seconds - s0).max(0.0), text: t.text });
            }
        }
        Ok(Capture {
            source: format!("performance_schema of {} over {:.0} s", self.source, window.as_secs_f64()),
            at_word: "event",
            obs,
            resolution: 1e-6,
            totals: Some(totals),
        })
    }

    /// Switch the consumers we switched on off again; close.
    pub async fn close(mut self) -> Result<()> {
        let mut r = Ok(());
        for c in std::mem::take(&mut self.switched_on) {
            if let Err(e) = sql::exec(
                &mut self.conn,
                &format!("UPDATE performance_schema.setup_consumers SET ENABLED = 'NO' WHERE NAME = '{c}'"),
            )
            .await
            {
                r = Err(anyhow!("could not switch {c} off again on {}: {e}", self.source));
            }
        }
        sql::close(self.conn).await;
        r
    }
}
