//! coldswap's first-touch emulator: an `LD_PRELOAD` library that makes a
//! datadir behave like a volume restored from a snapshot.
//!
//! It wraps `pread`/`pread64` (and `pwrite`/`pwrite64`). For a file under
//! `$COLDSWAP_FT_ROOT`, the first read of each block (64 KiB by default)
//! waits a configurable latency before the real read; later reads of the
//! block, and blocks written since the restore, are free. Which blocks are
//! warm lives in a shared state directory (`$COLDSWAP_FT_STATE`), so it
//! survives a restart ("the same volume") until reset ("a fresh restore"),
//! and the counters there can be read while the server runs.
//!
//! Servers must read through pread: InnoDB does with
//! `innodb_use_native_aio=0`; with native AIO (io_uring) it bypasses the
//! wrapper, which coldswap detects and refuses to call cold.
//!
//! How many first-touch fetches proceed at once is a volume-wide limit (a
//! futex in the shared block, across every process attached to the state).
//!
//! What a lazily loaded volume does, and so what this does:
//! * a block is fetched once: a reader that finds its fetch in flight waits
//!   for that fetch (it does not read the block for free);
//! * a write that covers a whole cold block needs nothing of the old block:
//!   it is warm without a fetch; a write to part of a cold block must merge
//!   with the old contents, so the block is fetched first, as for a read;
//! * space past a file's size at the restore (and files created after it)
//!   was never in the snapshot: warm from the start.

#![warn(missing_docs)]
#![allow(clippy::missing_safety_doc)]

mod layout;

use layout::*;
use libc::{c_int, c_void, off_t, size_t, ssize_t};
use std::collections::HashMap;
use std::ffi::CString;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::*};
use std::sync::{Arc, OnceLock, RwLock};

type PreadFn = unsafe extern "C" fn(c_int, *mut c_void, size_t, off_t) -> ssize_t;
type PwriteFn = unsafe extern "C" fn(c_int, *const c_void, size_t, off_t) -> ssize_t;

struct FileMap {
    /// Warm blocks.
    bits: *mut AtomicU64,
    /// Blocks whose fetch has started (by any process).
    claims: *mut AtomicU64,
    words: usize,
    hash: u64,
    /// Blocks of the file at the restore; later blocks are new space.
    restored_blocks: u64,
}

/// What touching a block came to.
enum Touch {
    Warm,
    Fetched,
    Waited,
}

// The bitmap is a MAP_SHARED mapping that lives as long as the process.
unsafe impl Send for FileMap {}
unsafe impl Sync for FileMap {}

impl FileMap {
    fn word(&self, map: *mut AtomicU64, block: u64) -> Option<(&AtomicU64, u64)> {
        let w = (block / 64) as usize;
        if w >= self.words {
            return None;
        }
        // SAFETY: w < words, inside the mapping.
        Some((unsafe { &*map.add(w) }, 1u64 << (block % 64)))
    }

    /// Whether a block is warm (blocks past the bitmap count as warm).
    fn is_warm(&self, block: u64) -> bool {
        self.word(self.bits, block).map(|(w, bit)| w.load(Acquire) & bit != 0).unwrap_or(true)
    }

    /// Mark a block warm; true if it was not.
    fn set_warm(&self, block: u64) -> bool {
        let Some((w, bit)) = self.word(self.bits, block) else { return false };
        let was = w.fetch_or(bit, AcqRel) & bit == 0;
        // Wake readers waiting on this block's fetch (futex on the 32-bit
        // half of the word holding the bit; the mapping is shared).
        let half = (w as *const AtomicU64 as *const u32).wrapping_add(((block % 64) / 32) as usize);
        // SAFETY: FUTEX_WAKE on an aligned word inside the shared mapping.
        unsafe {
            libc::syscall(libc::SYS_futex, half, libc::FUTEX_WAKE, i32::MAX);
        }
        was
    }

    /// Claim a block's fetch: true if nobody had (the caller fetches).
    fn claim(&self, block: u64, shared: &Shared) -> bool {
        match self.word(self.claims, block) {
            Some((w, bit)) => w.fetch_or(bit, AcqRel) & bit == 0,
            None => {
                shared.overflow_blocks.fetch_add(1, Relaxed);
                false
            }
        }
    }

    /// Wait until another reader's fetch of `block` makes it warm, at most
    /// `limit_ns` (a fetcher killed mid-fetch never finishes it).
    fn wait_warm(&self, block: u64, limit_ns: i64) {
        let Some((w, bit)) = self.word(self.bits, block) else { return };
        let half = (w as *const AtomicU64 as *const u32).wrapping_add(((block % 64) / 32) as usize);
        let deadline = now_ns() + limit_ns;
        while w.load(Acquire) & bit == 0 {
            let left = deadline - now_ns();
            if left <= 0 {
                self.set_warm(block);
                return;
            }
            // SAFETY: reading the aligned half-word we wait on.
            let seen = unsafe { (*(half as *const std::sync::atomic::AtomicU32)).load(Acquire) };
            if w.load(Acquire) & bit != 0 {
                return;
            }
            let ts = libc::timespec { tv_sec: 0, tv_nsec: left.min(5_000_000) as _ };
            // SAFETY: futex wait on the shared word, woken by set_warm.
            unsafe {
                libc::syscall(libc::SYS_futex, half, libc::FUTEX_WAIT, seen, &ts);
            }
        }
    }
}

/// Open files by (dev, ino): their bitmap, or None for files outside the root.
type FileTable = RwLock<HashMap<(u64, u64), Option<Arc<FileMap>>>>;

struct State {
    root: String,
    state_dir: String,
    shared: &'static Shared,
    block: u64,
    /// (dev, ino) -> bitmap, or None for files outside the root.
    files: FileTable,
    /// Average oversleep of the timer, subtracted from later sleeps.
    slack_ns: AtomicI64,
}

static STATE: OnceLock<Option<State>> = OnceLock::new();
static REAL_PREAD: OnceLock<PreadFn> = OnceLock::new();
static REAL_PREAD64: OnceLock<PreadFn> = OnceLock::new();
static REAL_PWRITE: OnceLock<PwriteFn> = OnceLock::new();
static REAL_PWRITE64: OnceLock<PwriteFn> = OnceLock::new();

unsafe fn next_sym(name: &str) -> *mut c_void {
    let c = CString::new(name).unwrap();
    libc::dlsym(libc::RTLD_NEXT, c.as_ptr())
}

fn real_pread(sixty_four: bool) -> PreadFn {
    let cell = if sixty_four { &REAL_PREAD64 } else { &REAL_PREAD };
    *cell.get_or_init(|| unsafe {
        let p = next_sym(if sixty_four { "pread64" } else { "pread" });
        assert!(!p.is_null(), "coldswap-firsttouch: no real pread");
        std::mem::transmute::<*mut c_void, PreadFn>(p)
    })
}

fn real_pwrite(sixty_four: bool) -> PwriteFn {
    let cell = if sixty_four { &REAL_PWRITE64 } else { &REAL_PWRITE };
    *cell.get_or_init(|| unsafe {
        let p = next_sym(if sixty_four { "pwrite64" } else { "pwrite" });
        assert!(!p.is_null(), "coldswap-firsttouch: no real pwrite");
        std::mem::transmute::<*mut c_void, PwriteFn>(p)
    })
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|s| !s.is_empty())
}

unsafe fn map_file(path: &str, len: usize) -> Option<*mut u8> {
    let c = CString::new(path).ok()?;
    let fd = libc::open(c.as_ptr(), libc::O_RDWR | libc::O_CREAT | libc::O_CLOEXEC, 0o600);
    if fd < 0 {
        return None;
    }
    let mut st: libc::stat = std::mem::zeroed();
    if libc::fstat(fd, &mut st) != 0 {
        libc::close(fd);
        return None;
    }
    if (st.st_size as usize) < len && libc::ftruncate(fd, len as off_t) != 0 {
        libc::close(fd);
        return None;
    }
    let p = libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd, 0);
    libc::close(fd);
    if p == libc::MAP_FAILED {
        return None;
    }
    Some(p as *mut u8)
}

fn init() -> Option<State> {
    let root = env(ENV_ROOT)?.trim_end_matches('/').to_string();
    let state_dir = env(ENV_STATE)?.trim_end_matches('/').to_string();
    let _ = std::fs::create_dir_all(format!("{state_dir}/{BITMAP_DIR}"));
    // SAFETY: mapping our own state file.
    let p = unsafe { map_file(&format!("{state_dir}/{COUNTERS_FILE}"), COUNTERS_BYTES)? };
    let shared: &'static Shared = unsafe { &*(p as *const Shared) };
    if shared.magic.load(Acquire) != MAGIC {
        shared.version.store(VERSION, Relaxed);
        shared.enabled.store(1, Relaxed);
        shared.concurrency.store(1, Relaxed);
        shared.latency_min_us.store(1000, Relaxed);
        shared.latency_max_us.store(1000, Relaxed);
        shared.block_size.store(65536, Relaxed);
        shared.magic.store(MAGIC, Release);
    }
    if let Some(b) = env(ENV_BLOCK).and_then(|s| s.parse::<u64>().ok()).filter(|b| *b >= 512) {
        shared.block_size.store(b, Relaxed);
    }
    if let Some((a, b)) = env(ENV_LATENCY_US).and_then(|s| parse_latency(&s)) {
        shared.latency_min_us.store(a, Relaxed);
        shared.latency_max_us.store(b, Relaxed);
    }
    if let Some(c) = env(ENV_CONCURRENCY).and_then(|s| s.parse::<u32>().ok()).filter(|c| *c >= 1) {
        shared.concurrency.store(c, Relaxed);
    }
    if let Some(r) = env(ENV_HYDRATE_MIBS).and_then(|s| s.parse::<f64>().ok()).filter(|r| *r >= 0.0) {
        shared.hydrate_bytes_per_s.store((r * 1048576.0) as u64, Relaxed);
    }
    shared.attaches.fetch_add(1, Relaxed);
    shared.last_pid.store(std::process::id() as u64, Relaxed);
    let block = shared.block_size.load(Relaxed);
    Some(State { root, state_dir, shared, block, files: RwLock::new(HashMap::new()), slack_ns: AtomicI64::new(0) })
}

fn state() -> Option<&'static State> {
    static HYDRATOR: std::sync::Once = std::sync::Once::new();
    let s = STATE.get_or_init(init).as_ref();
    if s.is_some() {
        HYDRATOR.call_once(|| {
            std::thread::spawn(hydrator);
        });
    }
    s
}

impl State {
    /// The bitmaps of a file under the root; `size` is its size now, taken
    /// as its size at the restore when this is the first look at it since.
    fn file_for_path(&self, path: &str, size: u64) -> Option<Arc<FileMap>> {
        let rel = path.strip_prefix(&self.root)?;
        if !rel.starts_with('/') {
            return None;
        }
        let dir = format!("{}/{BITMAP_DIR}", self.state_dir);
        // SAFETY: mapping our own bitmap files.
        let bits = unsafe { map_file(&format!("{dir}/{}", bitmap_name(rel)), BITMAP_BYTES)? };
        let claims = unsafe { map_file(&format!("{dir}/{}", companion_name(rel, "claim")), BITMAP_BYTES)? };
        let restored = restored_size(&format!("{dir}/{}", companion_name(rel, "size")), size);
        Some(Arc::new(FileMap {
            bits: bits as *mut AtomicU64,
            claims: claims as *mut AtomicU64,
            words: BITMAP_BYTES / 8,
            hash: fnv1a(rel.as_bytes()),
            restored_blocks: restored.div_ceil(self.block.max(1)),
        }))
    }

    fn lookup(&self, fd: c_int) -> Option<Arc<FileMap>> {
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: fstat into a local.
        if unsafe { libc::fstat(fd, &mut st) } != 0 || (st.st_mode & libc::S_IFMT) != libc::S_IFREG {
            return None;
        }
        let key = (st.st_dev, st.st_ino);
        if let Some(v) = self.files.read().ok()?.get(&key) {
            return v.clone();
        }
        let path = std::fs::read_link(format!("/proc/self/fd/{fd}")).ok()?;
        let v = self.file_for_path(&path.to_string_lossy(), st.st_size as u64);
        self.files.write().ok()?.insert(key, v.clone());
        v
    }

    fn acquire(&self) {
        let sh = self.shared;
        let mut waited = false;
        loop {
            let v = sh.inflight.load(Acquire);
            let lim = sh.concurrency.load(Relaxed).max(1);
            if v < lim {
                if sh.inflight.compare_exchange(v, v + 1, AcqRel, Acquire).is_ok() {
                    sh.max_inflight.fetch_max(v + 1, Relaxed);
                    return;
                }
                continue;
            }
            if !waited {
                sh.slot_waits.fetch_add(1, Relaxed);
                waited = true;
            }
            let ts = libc::timespec { tv_sec: 0, tv_nsec: 5_000_000 };
            // SAFETY: futex wait on a word of the shared mapping (not private: other processes wake it).
            unsafe {
                libc::syscall(libc::SYS_futex, &sh.inflight as *const _ as *const u32, libc::FUTEX_WAIT, v, &ts);
            }
        }
    }

    fn release(&self) {
        let sh = self.shared;
        sh.inflight.fetch_sub(1, AcqRel);
        // SAFETY: futex wake on the shared word.
        unsafe {
            libc::syscall(libc::SYS_futex, &sh.inflight as *const _ as *const u32, libc::FUTEX_WAKE, 1);
        }
    }

    /// Sleep `us` microseconds, correcting for the timer's average oversleep.
    fn delay(&self, us: u64) {
        let start = now_ns();
        let target = start + us as i64 * 1000;
        let slack = self.slack_ns.load(Relaxed);
        let wake = target - slack;
        if wake > start {
            let ts = libc::timespec { tv_sec: (wake / 1_000_000_000) as _, tv_nsec: (wake % 1_000_000_000) as _ };
            // SAFETY: absolute monotonic sleep.
            unsafe {
                while libc::clock_nanosleep(libc::CLOCK_MONOTONIC, libc::TIMER_ABSTIME, &ts, std::ptr::null_mut())
                    == libc::EINTR
                {}
            }
        }
        let end = now_ns();
        let over = end - target;
        // EWMA (1/8) of the oversleep, bounded to a sane range.
        let next = (slack + over / 8).clamp(0, 2_000_000);
        self.slack_ns.store(next, Relaxed);
        self.shared.wait_ns.fetch_add((end - start).max(0) as u64, Relaxed);
    }

    /// Touch one block for reading (or merging a partial write): warm,
    /// fetched by us, or waited for while another reader fetched it.
    fn touch(&self, fm: &FileMap, b: u64) -> Touch {
        let sh = self.shared;
        if fm.is_warm(b) {
            return Touch::Warm;
        }
        if b >= fm.restored_blocks {
            // New space: never in the snapshot.
            if fm.set_warm(b) {
                sh.new_blocks.fetch_add(1, Relaxed);
            }
            return Touch::Warm;
        }
        if fm.claim(b, sh) {
            if sh.enabled.load(Relaxed) != 0 {
                self.acquire();
                let (mn, mx) = (sh.latency_min_us.load(Relaxed), sh.latency_max_us.load(Relaxed));
                self.delay(latency_us(mn, mx, fm.hash, b));
                self.release();
            }
            fm.set_warm(b);
            return Touch::Fetched;
        }
        if fm.is_warm(b) {
            return Touch::Warm;
        }
        // Another reader's fetch is in flight: wait for it, as a reader of a
        // block being loaded does. Bounded, should that reader have died.
        let start = now_ns();
        let limit = (sh.latency_max_us.load(Relaxed) as i64 * 1000) * 4 + 2_000_000_000;
        fm.wait_warm(b, limit);
        sh.inflight_waits.fetch_add(1, Relaxed);
        sh.inflight_wait_ns.fetch_add((now_ns() - start).max(0) as u64, Relaxed);
        Touch::Waited
    }

    fn on_read(&self, fd: c_int, count: size_t, off: off_t) {
        let sh = self.shared;
        if count == 0 || off < 0 {
            return;
        }
        let Some(fm) = self.lookup(fd) else {
            sh.unmatched_reads.fetch_add(1, Relaxed);
            return;
        };
        sh.matched_reads.fetch_add(1, Relaxed);
        sh.bytes_read.fetch_add(count as u64, Relaxed);
        let first = off as u64 / self.block;
        let last = (off as u64 + count as u64 - 1) / self.block;
        let (mut fetched, mut waited) = (0, 0);
        for b in first..=last {
            match self.touch(&fm, b) {
                Touch::Warm => {}
                Touch::Fetched => fetched += 1,
                Touch::Waited => waited += 1,
            }
        }
        if fetched + waited == 0 {
            sh.warm_reads.fetch_add(1, Relaxed);
        } else {
            sh.cold_reads.fetch_add(1, Relaxed);
            sh.cold_blocks.fetch_add(fetched, Relaxed);
        }
    }

    /// Before a write: a whole cold block is overwritten with nothing to
    /// fetch; part of a cold block is fetched first (the volume merges it).
    fn on_write(&self, fd: c_int, count: size_t, off: off_t) {
        if count == 0 || off < 0 {
            return;
        }
        let Some(fm) = self.lookup(fd) else { return };
        let sh = self.shared;
        let (start, end) = (off as u64, off as u64 + count as u64);
        let first = start / self.block;
        let last = (end - 1) / self.block;
        for b in first..=last {
            let whole = start <= b * self.block && (b + 1) * self.block <= end;
            if whole {
                fm.claim(b, sh);
                if fm.set_warm(b) {
                    sh.written_blocks.fetch_add(1, Relaxed);
                }
            } else if let Touch::Fetched = self.touch(&fm, b) {
                sh.cold_blocks.fetch_add(1, Relaxed);
                sh.write_fetches.fetch_add(1, Relaxed);
            }
        }
    }
}

/// A file's size at the restore, from its `.size` companion; the first
/// process to look at the file since the restore writes `now` there.
fn restored_size(path: &str, now: u64) -> u64 {
    if let Ok(t) = std::fs::read_to_string(path) {
        if let Ok(v) = t.trim().parse::<u64>() {
            return v;
        }
    }
    use std::io::Write;
    match std::fs::OpenOptions::new().write(true).create_new(true).open(path) {
        Ok(mut f) => {
            let _ = f.write_all(now.to_string().as_bytes());
            now
        }
        // Another process wrote it first: read theirs.
        Err(_) => std::fs::read_to_string(path).ok().and_then(|t| t.trim().parse().ok()).unwrap_or(now),
    }
}

fn now_ns() -> i64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime into a local.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

/// Background hydration: warms every block of every file under the root at
/// the configured rate, as a volume initialization does.
fn hydrator() {
    let Some(st) = STATE.get().and_then(|s| s.as_ref()) else { return };
    loop {
        let rate = st.shared.hydrate_bytes_per_s.load(Relaxed);
        if rate == 0 {
            std::thread::sleep(std::time::Duration::from_millis(500));
            continue;
        }
        let mut files = Vec::new();
        walk(std::path::Path::new(&st.root), &mut files);
        for (path, size) in files {
            let Some(fm) = st.file_for_path(&path, size) else { continue };
            let blocks = size.div_ceil(st.block);
            for b in 0..blocks {
                let rate = st.shared.hydrate_bytes_per_s.load(Relaxed);
                if rate == 0 {
                    break;
                }
                if fm.claim(b, st.shared) {
                    fm.set_warm(b);
                    st.shared.hydrated_blocks.fetch_add(1, Relaxed);
                    let ns = st.block.saturating_mul(1_000_000_000) / rate.max(1);
                    std::thread::sleep(std::time::Duration::from_nanos(ns));
                }
            }
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

fn walk(dir: &std::path::Path, out: &mut Vec<(String, u64)>) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let Ok(md) = e.metadata() else { continue };
        if md.is_dir() {
            walk(&e.path(), out);
        } else if md.is_file() {
            out.push((e.path().to_string_lossy().into_owned(), md.len()));
        }
    }
}

#[inline]
unsafe fn do_pread(sixty_four: bool, fd: c_int, buf: *mut c_void, count: size_t, off: off_t) -> ssize_t {
    if let Some(st) = state() {
        st.on_read(fd, count, off);
    }
    real_pread(sixty_four)(fd, buf, count, off)
}

#[inline]
unsafe fn do_pwrite(sixty_four: bool, fd: c_int, buf: *const c_void, count: size_t, off: off_t) -> ssize_t {
    if let Some(st) = state() {
        st.on_write(fd, count, off);
    }
    real_pwrite(sixty_four)(fd, buf, count, off)
}

/// `pread(2)`, with the first touch of a cold block delayed.
#[no_mangle]
pub unsafe extern "C" fn pread(fd: c_int, buf: *mut c_void, count: size_t, off: off_t) -> ssize_t {
    do_pread(false, fd, buf, count, off)
}

/// `pread64(2)`, with the first touch of a cold block delayed.
#[no_mangle]
pub unsafe extern "C" fn pread64(fd: c_int, buf: *mut c_void, count: size_t, off: off_t) -> ssize_t {
    do_pread(true, fd, buf, count, off)
}

/// `pwrite(2)`: a whole cold block is written without a fetch, part of one after its fetch.
#[no_mangle]
pub unsafe extern "C" fn pwrite(fd: c_int, buf: *const c_void, count: size_t, off: off_t) -> ssize_t {
    do_pwrite(false, fd, buf, count, off)
}

/// `pwrite64(2)`: a whole cold block is written without a fetch, part of one after its fetch.
#[no_mangle]
pub unsafe extern "C" fn pwrite64(fd: c_int, buf: *const c_void, count: size_t, off: off_t) -> ssize_t {
    do_pwrite(true, fd, buf, count, off)
}
