//! Every server status that coldswap waits on, read as text and parsed
//! here into a typed state: the buffer pool's load and dump
//! (`Innodb_buffer_pool_load_status`, `Innodb_buffer_pool_dump_status`) and
//! the replication threads (`Slave_IO_Running` / `Replica_IO_Running`, and
//! the SQL thread's).
//!
//! A wait asks what the state is, never what the text starts with: MySQL's
//! idle load status is `Loading of buffer pool not started`, which begins
//! with the same word as a load that runs (issue 33: a drill waited ten
//! minutes for a load that had never started).
//!
//! The strings are InnoDB's own (storage/innobase/buf/buf0dump.cc), the same
//! in MySQL 5.7, 8.0, 9.x and MariaDB 10.11, 11.8 but for these:
//! * MySQL's dump thread sets `Dumping of buffer pool not started` and
//!   `Loading of buffer pool not started` when it starts; MariaDB's status is
//!   empty until its first dump or load.
//! * MySQL reports a load's progress (`Loaded N/M pages`, every 32 MiB) and a
//!   dump's (`Dumping buffer pool I/N, page J/M`); MariaDB 10.5+ reports
//!   neither (one pool; `Restricted to N pages due to
//!   innodb_buf_pool_dump_pct=P` while a partial dump runs).
//! * MariaDB ends an interrupted load with `Buffer pool(s) load aborted due
//!   to user instigated abort at T` or `... due to shutdown at T`; MySQL with
//!   `Buffer pool(s) load aborted on request` (MariaDB too, for an abort).
//! * MariaDB appends ` (F was empty or had errors)` to a completion where
//!   MySQL appends ` (F was empty)`.
//!
//! Text none of these matches is [`Task::Unrecognised`]: a wait treats it as
//! a failure with the text in its message, never as progress.

use coldswap_sql::Flavor;

/// A buffer-pool load or dump, as its status variable tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Task {
    /// Nothing has run since the server started (MySQL's `... not started`,
    /// MariaDB's empty status).
    NotStarted,
    /// Under way; pages done and in all where the server says.
    Running {
        /// Pages loaded or dumped so far.
        done: Option<u64>,
        /// Pages in all.
        total: Option<u64>,
    },
    /// Finished; `at` is the server's timestamp (second precision, `261130
    /// 15:40:00`), which tells one completion from the next.
    Completed {
        /// The completion's timestamp as the server wrote it.
        at: String,
        /// The list was empty (nothing loaded).
        empty: bool,
    },
    /// Ended without doing its work: an error, or aborted.
    Failed(String),
    /// Text this parser does not know.
    Unrecognised(String),
}

impl Task {
    /// No longer running: completed, failed, or never started.
    pub fn is_running(&self) -> bool {
        matches!(self, Task::Running { .. })
    }
}

/// Parse `Innodb_buffer_pool_load_status`.
pub fn buffer_pool_load(flavor: Flavor, text: &str) -> Task {
    let t = text.trim();
    if t.is_empty() {
        return empty(flavor);
    }
    if t.starts_with("Loading of buffer pool not started") {
        return Task::NotStarted;
    }
    if t.starts_with("Loading buffer pool(s) from ") {
        return Task::Running { done: None, total: None };
    }
    if let Some(rest) = t.strip_prefix("Loaded ") {
        if let Some((done, total)) = fraction(rest.trim_end_matches(" pages")) {
            return Task::Running { done: Some(done), total: Some(total) };
        }
    }
    if let Some(rest) = t.strip_prefix("Buffer pool(s) load completed at ") {
        return completed(rest);
    }
    if t.starts_with("Buffer pool(s) load aborted") || failure(t) {
        return Task::Failed(t.to_string());
    }
    Task::Unrecognised(t.to_string())
}

/// Parse `Innodb_buffer_pool_dump_status`.
pub fn buffer_pool_dump(flavor: Flavor, text: &str) -> Task {
    let t = text.trim();
    if t.is_empty() {
        return empty(flavor);
    }
    if t == "Dumping of buffer pool not started" {
        return Task::NotStarted;
    }
    if t.starts_with("Dumping of buffer pool not started as load was incomplete") {
        // MariaDB at shutdown: the dump it would have made was skipped.
        return Task::Failed(t.to_string());
    }
    if t.starts_with("Dumping buffer pool(s) to ") || t.starts_with("Restricted to ") {
        return Task::Running { done: None, total: None };
    }
    if let Some(rest) = t.strip_prefix("Dumping buffer pool ") {
        // MySQL: "Dumping buffer pool 1/1, page 129/500".
        if let Some((_, page)) = rest.split_once(", page ") {
            if let Some((done, total)) = fraction(page) {
                return Task::Running { done: Some(done), total: Some(total) };
            }
        }
        return Task::Running { done: None, total: None };
    }
    if let Some(rest) = t.strip_prefix("Buffer pool(s) dump completed at ") {
        return completed(rest);
    }
    if failure(t) || t.contains("aborted") {
        return Task::Failed(t.to_string());
    }
    Task::Unrecognised(t.to_string())
}

/// An empty status: MariaDB's before its first load or dump; MySQL's dump
/// thread sets its "not started" texts at once and never leaves one empty.
fn empty(flavor: Flavor) -> Task {
    match flavor {
        Flavor::MariaDB => Task::NotStarted,
        Flavor::MySQL => Task::Unrecognised(String::new()),
    }
}

/// `N/M` as two numbers.
fn fraction(s: &str) -> Option<(u64, u64)> {
    let (a, b) = s.trim().split_once('/')?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
}

fn completed(rest: &str) -> Task {
    let (at, empty) = match rest.split_once(" (") {
        Some((at, note)) => (at, note.contains("was empty")),
        None => (rest, false),
    };
    Task::Completed { at: at.trim().to_string(), empty }
}

/// The error forms both flavors write (`Cannot open '...' for reading: ...`,
/// `Error parsing '...', unable to load buffer pool (stage 1)`, `Cannot
/// allocate ...`, `Cannot write to ...`, `Cannot rename ...`).
fn failure(t: &str) -> bool {
    t.starts_with("Cannot ") || t.starts_with("Error ")
}

/// A replication thread, as `Slave_IO_Running` / `Replica_IO_Running` (and
/// the SQL thread's column) tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Thread {
    /// `Yes`.
    Running,
    /// `Connecting` (the IO thread retries its source), or MariaDB's
    /// `Preparing` (registering with it).
    Connecting,
    /// `No`.
    Stopped,
    /// Text this parser does not know (empty: no such column).
    Unrecognised(String),
}

/// Parse a replication thread's state (both flavors write the same words).
pub fn replica_thread(text: &str) -> Thread {
    match text.trim() {
        "Yes" => Thread::Running,
        "Connecting" | "Preparing" => Thread::Connecting,
        "No" => Thread::Stopped,
        other => Thread::Unrecognised(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Flavor::{MariaDB, MySQL};

    fn running(done: u64, total: u64) -> Task {
        Task::Running { done: Some(done), total: Some(total) }
    }
    fn done_at(at: &str) -> Task {
        Task::Completed { at: at.into(), empty: false }
    }

    /// The strings MySQL 5.7, 8.0 and 9.7 print (buf0dump.cc; the idle one
    /// and a completion seen here on 9.7.4).
    #[test]
    fn mysql_load_status() {
        assert_eq!(buffer_pool_load(MySQL, "Loading of buffer pool not started"), Task::NotStarted);
        assert_eq!(
            buffer_pool_load(MySQL, "Loading buffer pool(s) from /d/node2/data/ib_buffer_pool"),
            Task::Running { done: None, total: None }
        );
        assert_eq!(buffer_pool_load(MySQL, "Loaded 1/15353 pages"), running(1, 15353));
        assert_eq!(buffer_pool_load(MySQL, "Loaded 14337/15353 pages"), running(14337, 15353));
        assert_eq!(
            buffer_pool_load(MySQL, "Buffer pool(s) load completed at 261204 21:05:07"),
            done_at("261204 21:05:07")
        );
        // ut_sprintf_timestamp pads the hour with a space.
        assert_eq!(
            buffer_pool_load(MySQL, "Buffer pool(s) load completed at 261204  9:05:07"),
            done_at("261204  9:05:07")
        );
        assert_eq!(
            buffer_pool_load(MySQL, "Buffer pool(s) load completed at 261204 21:05:07 (/d/ib_buffer_pool was empty)"),
            Task::Completed { at: "261204 21:05:07".into(), empty: true }
        );
        assert!(matches!(buffer_pool_load(MySQL, "Buffer pool(s) load aborted on request"), Task::Failed(_)));
        assert!(matches!(
            buffer_pool_load(MySQL, "Cannot open '/d/ib_buffer_pool' for reading: No such file or directory"),
            Task::Failed(_)
        ));
        assert!(matches!(
            buffer_pool_load(MySQL, "Error parsing '/d/ib_buffer_pool', unable to load buffer pool (stage 1)"),
            Task::Failed(_)
        ));
        assert!(matches!(
            buffer_pool_load(
                MySQL,
                "Error parsing '/d/ib_buffer_pool': bogus space,page 99999999999,1 at line 3, unable to load buffer pool"
            ),
            Task::Failed(_)
        ));
        // The bug of issue 33: the idle text is not a load that runs.
        assert!(!buffer_pool_load(MySQL, "Loading of buffer pool not started").is_running());
        assert!(matches!(buffer_pool_load(MySQL, ""), Task::Unrecognised(_)));
        assert!(matches!(buffer_pool_load(MySQL, "Something new"), Task::Unrecognised(_)));
    }

    /// The strings MariaDB 10.11 and 11.8 print (buf0dump.cc: no progress
    /// lines, an empty status before the first load).
    #[test]
    fn mariadb_load_status() {
        assert_eq!(buffer_pool_load(MariaDB, ""), Task::NotStarted);
        assert_eq!(
            buffer_pool_load(MariaDB, "Loading buffer pool(s) from /d/node2/data/ib_buffer_pool"),
            Task::Running { done: None, total: None }
        );
        assert_eq!(
            buffer_pool_load(MariaDB, "Buffer pool(s) load completed at 261130 15:40:00"),
            done_at("261130 15:40:00")
        );
        assert_eq!(
            buffer_pool_load(
                MariaDB,
                "Buffer pool(s) load completed at 261130 15:40:00 (/d/ib_buffer_pool was empty or had errors)"
            ),
            Task::Completed { at: "261130 15:40:00".into(), empty: true }
        );
        for t in [
            "Buffer pool(s) load aborted on request",
            "Buffer pool(s) load aborted due to user instigated abort at 261130 15:40:00",
            "Buffer pool(s) load aborted due to shutdown at 261130 15:40:00",
            "Cannot open '/d/ib_buffer_pool' for reading: No such file or directory",
            "Error reading '/d/ib_buffer_pool', unable to load buffer pool (stage 1)",
        ] {
            assert!(matches!(buffer_pool_load(MariaDB, t), Task::Failed(_)), "{t}");
        }
    }

    #[test]
    fn dump_status_both_flavors() {
        assert_eq!(buffer_pool_dump(MySQL, "Dumping of buffer pool not started"), Task::NotStarted);
        assert_eq!(buffer_pool_dump(MariaDB, ""), Task::NotStarted);
        for f in [MySQL, MariaDB] {
            assert_eq!(
                buffer_pool_dump(f, "Dumping buffer pool(s) to /d/node1/data/ib_buffer_pool"),
                Task::Running { done: None, total: None }
            );
            assert_eq!(
                buffer_pool_dump(f, "Buffer pool(s) dump completed at 261204 21:04:58"),
                done_at("261204 21:04:58")
            );
            for t in [
                "Cannot open '/d/ib_buffer_pool.incomplete' for writing: Permission denied",
                "Cannot write to '/d/ib_buffer_pool.incomplete': No space left on device",
                "Cannot rename '/d/ib_buffer_pool.incomplete' to '/d/ib_buffer_pool': Permission denied",
            ] {
                assert!(matches!(buffer_pool_dump(f, t), Task::Failed(_)), "{t}");
            }
        }
        assert_eq!(buffer_pool_dump(MySQL, "Dumping buffer pool 1/1, page 129/500"), running(129, 500));
        assert_eq!(
            buffer_pool_dump(MariaDB, "Restricted to 2047 pages due to innodb_buf_pool_dump_pct=25"),
            Task::Running { done: None, total: None }
        );
        assert!(matches!(
            buffer_pool_dump(MariaDB, "Dumping of buffer pool not started as load was incomplete"),
            Task::Failed(_)
        ));
    }

    #[test]
    fn replica_threads() {
        assert_eq!(replica_thread("Yes"), Thread::Running);
        assert_eq!(replica_thread("No"), Thread::Stopped);
        assert_eq!(replica_thread("Connecting"), Thread::Connecting);
        assert_eq!(replica_thread("Preparing"), Thread::Connecting);
        assert_eq!(replica_thread(""), Thread::Unrecognised(String::new()));
    }
}
