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
    bits: *mut AtomicU64,
    words: usize,
    hash: u64,
}

// The bitmap is a MAP_SHARED mapping that lives as long as the process.
unsafe impl Send for FileMap {}
unsafe impl Sync for FileMap {}

impl FileMap {
    fn word(&self, block: u64) -> Option<(&AtomicU64, u64)> {
        let w = (block / 64) as usize;
        if w >= self.words {
            return None;
        }
        // SAFETY: w < words, inside the mapping.
        Some((unsafe { &*self.bits.add(w) }, 1u64 << (block % 64)))
    }

    /// Claim a block: true if it was cold (the caller pays the fetch).
    fn claim(&self, block: u64, shared: &Shared) -> bool {
        match self.word(block) {
            Some((w, bit)) => w.fetch_or(bit, AcqRel) & bit == 0,
            None => {
                shared.overflow_blocks.fetch_add(1, Relaxed);
                false
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
    fn file_for_path(&self, path: &str) -> Option<Arc<FileMap>> {
        let rel = path.strip_prefix(&self.root)?;
        if !rel.starts_with('/') {
            return None;
        }
        let bm = format!("{}/{BITMAP_DIR}/{}", self.state_dir, bitmap_name(rel));
        // SAFETY: mapping our own bitmap file.
        let p = unsafe { map_file(&bm, BITMAP_BYTES)? };
        Some(Arc::new(FileMap { bits: p as *mut AtomicU64, words: BITMAP_BYTES / 8, hash: fnv1a(rel.as_bytes()) }))
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
        let v = self.file_for_path(&path.to_string_lossy());
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
        let enabled = sh.enabled.load(Relaxed) != 0;
        let first = off as u64 / self.block;
        let last = (off as u64 + count as u64 - 1) / self.block;
        let mut cold = 0;
        for b in first..=last {
            if fm.claim(b, sh) {
                cold += 1;
                if enabled {
                    self.acquire();
                    let (mn, mx) = (sh.latency_min_us.load(Relaxed), sh.latency_max_us.load(Relaxed));
                    self.delay(latency_us(mn, mx, fm.hash, b));
                    self.release();
                }
            }
        }
        if cold == 0 {
            sh.warm_reads.fetch_add(1, Relaxed);
        } else {
            sh.cold_reads.fetch_add(1, Relaxed);
            sh.cold_blocks.fetch_add(cold, Relaxed);
        }
    }

    fn on_write(&self, fd: c_int, count: size_t, off: off_t) {
        if count == 0 || off < 0 {
            return;
        }
        let Some(fm) = self.lookup(fd) else { return };
        let first = off as u64 / self.block;
        let last = (off as u64 + count as u64 - 1) / self.block;
        let mut n = 0;
        for b in first..=last {
            if fm.claim(b, self.shared) {
                n += 1;
            }
        }
        if n > 0 {
            self.shared.written_blocks.fetch_add(n, Relaxed);
        }
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
            let Some(fm) = st.file_for_path(&path) else { continue };
            let blocks = size.div_ceil(st.block);
            for b in 0..blocks {
                let rate = st.shared.hydrate_bytes_per_s.load(Relaxed);
                if rate == 0 {
                    break;
                }
                if fm.claim(b, st.shared) {
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
    let r = real_pwrite(sixty_four)(fd, buf, count, off);
    if r > 0 {
        if let Some(st) = state() {
            st.on_write(fd, r as size_t, off);
        }
    }
    r
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

/// `pwrite(2)`: written blocks count as warm.
#[no_mangle]
pub unsafe extern "C" fn pwrite(fd: c_int, buf: *const c_void, count: size_t, off: off_t) -> ssize_t {
    do_pwrite(false, fd, buf, count, off)
}

/// `pwrite64(2)`: written blocks count as warm.
#[no_mangle]
pub unsafe extern "C" fn pwrite64(fd: c_int, buf: *const c_void, count: size_t, off: off_t) -> ssize_t {
    do_pwrite(true, fd, buf, count, off)
}
