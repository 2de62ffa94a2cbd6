//! Shared-memory layout of the first-touch emulator's state directory.
//!
//! This file is compiled into the preload library and, through `#[path]`,
//! into coldswap-nemesis (which reads counters and resets state); keep it
//! dependency-free.
//!
//! ```text
//! <state dir>/counters           4 KiB, mmap'ed MAP_SHARED: control + counters
//! <state dir>/bitmaps/<f>.bits   1 MiB sparse bitmap per datadir file; bit = block is warm
//! <state dir>/bitmaps/<f>.claim  likewise; bit = a fetch of the block has started
//! <state dir>/bitmaps/<f>.size   the file's size at the restore (decimal), written once
//! ```

#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, AtomicU64};

pub const MAGIC: u64 = 0x434f_4c44_5357_4150; // "COLDSWAP"
pub const VERSION: u64 = 2;
pub const COUNTERS_FILE: &str = "counters";
pub const BITMAP_DIR: &str = "bitmaps";
pub const COUNTERS_BYTES: usize = 4096;
/// One bitmap per file: 8 Mi blocks (512 GiB at 64 KiB blocks). Blocks past
/// it are treated as warm and counted in `overflow_blocks`.
pub const BITMAP_BYTES: usize = 1 << 20;

pub const ENV_ROOT: &str = "COLDSWAP_FT_ROOT";
pub const ENV_STATE: &str = "COLDSWAP_FT_STATE";
pub const ENV_BLOCK: &str = "COLDSWAP_FT_BLOCK";
pub const ENV_LATENCY_US: &str = "COLDSWAP_FT_LATENCY_US";
pub const ENV_CONCURRENCY: &str = "COLDSWAP_FT_CONCURRENCY";
pub const ENV_HYDRATE_MIBS: &str = "COLDSWAP_FT_HYDRATE_MIBS";

/// The 4 KiB shared block. Field order is the file format: append only.
#[repr(C)]
pub struct Shared {
    pub magic: AtomicU64,
    pub version: AtomicU64,
    // control, written by the tool (and from the environment at attach)
    /// 1: first touches pay the latency; 0: pass-through (still counted).
    pub enabled: AtomicU32,
    /// First-touch fetches allowed in flight at once, volume-wide.
    pub concurrency: AtomicU32,
    pub latency_min_us: AtomicU64,
    pub latency_max_us: AtomicU64,
    pub block_size: AtomicU64,
    /// Background hydration, bytes per second (0: off).
    pub hydrate_bytes_per_s: AtomicU64,
    // the volume-wide semaphore (futex word)
    pub inflight: AtomicU32,
    pub max_inflight: AtomicU32,
    // counters
    /// pread calls on files under the root.
    pub matched_reads: AtomicU64,
    /// ... of which touched only warm blocks.
    pub warm_reads: AtomicU64,
    /// ... of which touched at least one cold block.
    pub cold_reads: AtomicU64,
    /// Blocks fetched on first touch (each block counts once).
    pub cold_blocks: AtomicU64,
    /// Time spent in first-touch delays, ns (sum over threads).
    pub wait_ns: AtomicU64,
    /// Fetches that had to wait for a free slot.
    pub slot_waits: AtomicU64,
    /// Blocks made warm by writes.
    pub written_blocks: AtomicU64,
    /// Blocks made warm by background hydration.
    pub hydrated_blocks: AtomicU64,
    /// pread calls on other files.
    pub unmatched_reads: AtomicU64,
    pub bytes_read: AtomicU64,
    pub overflow_blocks: AtomicU64,
    /// Processes that attached to this state (servers, warmers).
    pub attaches: AtomicU64,
    pub last_pid: AtomicU64,
    // version 2
    /// Readers that found the block's fetch in flight and waited for it.
    pub inflight_waits: AtomicU64,
    /// Time those readers waited, ns.
    pub inflight_wait_ns: AtomicU64,
    /// Fetches made by writes (a partial write to a cold block).
    pub write_fetches: AtomicU64,
    /// Blocks past a file's size at the restore (new space): warm from the start.
    pub new_blocks: AtomicU64,
}

const _: () = assert!(std::mem::size_of::<Shared>() <= COUNTERS_BYTES);

/// Name of a file's bitmap: its path relative to the root, '/' -> '@'.
pub fn bitmap_name(rel: &str) -> String {
    let mut s = rel.trim_start_matches('/').replace('@', "@@").replace('/', "@");
    s.push_str(".bits");
    s
}

/// Name of a file's companion (`claim`, `size`) beside its bitmap.
pub fn companion_name(rel: &str, ext: &str) -> String {
    let b = bitmap_name(rel);
    format!("{}.{ext}", b.trim_end_matches(".bits"))
}

/// Latency of the first touch of block `block` of a file: fixed, or spread
/// over [min, max] by a hash, so a run is repeatable.
pub fn latency_us(min: u64, max: u64, file_hash: u64, block: u64) -> u64 {
    if max <= min {
        return min;
    }
    let mut x = file_hash ^ block.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    min + x % (max - min + 1)
}

/// Parse "1000" or "3000-30000" (microseconds).
pub fn parse_latency(s: &str) -> Option<(u64, u64)> {
    let s = s.trim();
    if let Some((a, b)) = s.split_once('-') {
        let a = a.trim().parse().ok()?;
        let b = b.trim().parse().ok()?;
        if b < a {
            return None;
        }
        Some((a, b))
    } else {
        let v = s.parse().ok()?;
        Some((v, v))
    }
}

pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}
