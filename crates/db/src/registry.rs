//! Live runs, so a later run can clean what a killed one left behind.
//!
//! Every cluster coldswap starts is recorded under `<cache>/live/` with the
//! pid of the process that owns it. A cluster started by `coldswap cluster up`
//! is persistent (it outlives the command by design and is removed by
//! `cluster down`); any other (a drill, a test) belongs to its process, and
//! once that process is gone the next run stops its servers, removes its
//! containers and deletes its run dir.

use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

use crate::dist::cache_root;
use crate::pid;

/// One live run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    /// The cluster's run dir.
    pub run_dir: PathBuf,
    /// The process that owns it.
    pub owner_pid: u32,
    /// Outlives its owner (removed by `cluster down` only).
    pub persistent: bool,
    /// Remove the run dir when cleaning up after a dead owner.
    #[serde(default = "yes")]
    pub remove_dir: bool,
}

fn yes() -> bool {
    true
}

fn live_dir() -> PathBuf {
    cache_root().join("live")
}

fn entry_path(run_dir: &Path) -> PathBuf {
    live_dir().join(format!("{:016x}.json", name_hash(&run_dir.to_string_lossy())))
}

/// Record a run (replacing an earlier record of the same run dir).
pub fn register(e: &Entry) -> Result<()> {
    std::fs::create_dir_all(live_dir())?;
    crate::files::write_atomic(&entry_path(&e.run_dir), serde_json::to_string_pretty(e)?.as_bytes())
}

/// Forget a run.
pub fn unregister(run_dir: &Path) {
    let _ = std::fs::remove_file(entry_path(run_dir));
}

/// Every recorded run.
pub fn entries() -> Vec<Entry> {
    let mut v = Vec::new();
    if let Ok(rd) = std::fs::read_dir(live_dir()) {
        for f in rd.flatten() {
            if let Ok(text) = std::fs::read_to_string(f.path()) {
                if let Ok(e) = serde_json::from_str::<Entry>(&text) {
                    v.push(e);
                } else {
                    let _ = std::fs::remove_file(f.path());
                }
            }
        }
    }
    v
}

/// Entries whose owner died without cleaning up.
pub fn stale() -> Vec<Entry> {
    entries().into_iter().filter(|e| !e.persistent && !pid::alive(e.owner_pid)).collect()
}

/// FNV-1a of a string: short, stable names (registry entries, sockets, run ids).
pub fn name_hash(s: &str) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in s.as_bytes() {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}
