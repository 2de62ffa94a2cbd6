//! Cold storage: put a node's datadir behind the first-touch emulator
//! (crates/firsttouch), reset it to "a fresh snapshot restore", read its
//! counters.

use anyhow::{anyhow, bail, Context, Result};
use coldswap_db::{Cluster, Extras};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::*;

#[path = "../../firsttouch/src/layout.rs"]
mod layout;
use layout::*;

pub use layout::parse_latency;

/// How the restored volume behaves.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ColdConfig {
    /// Block size of the volume, KiB (first touch is per block).
    pub block_kib: u64,
    /// Latency of a first touch, microseconds: fixed (min == max) or a range.
    pub latency_min_us: u64,
    /// Upper end of the first-touch latency range, microseconds.
    pub latency_max_us: u64,
    /// First-touch fetches in flight at once, volume-wide.
    pub concurrency: u32,
    /// Background hydration, MiB/s (0: off).
    pub hydrate_mib_s: f64,
}

impl Default for ColdConfig {
    fn default() -> Self {
        // The postmortem's numbers: 3 to 30 ms per first read.
        ColdConfig { block_kib: 64, latency_min_us: 3000, latency_max_us: 30000, concurrency: 8, hydrate_mib_s: 0.0 }
    }
}

impl ColdConfig {
    /// A fixed latency and a concurrency, other settings default.
    pub fn fixed(latency_us: u64, concurrency: u32) -> ColdConfig {
        ColdConfig { latency_min_us: latency_us, latency_max_us: latency_us, concurrency, ..Default::default() }
    }

    /// Mean first-touch latency, microseconds.
    pub fn mean_latency_us(&self) -> f64 {
        (self.latency_min_us + self.latency_max_us) as f64 / 2.0
    }

    /// Block size, bytes.
    pub fn block_bytes(&self) -> u64 {
        self.block_kib * 1024
    }

    /// Fail on settings the emulator cannot honour.
    pub fn validate(&self) -> Result<()> {
        if self.block_kib == 0 || !self.block_kib.is_power_of_two() || self.block_kib > 4096 {
            bail!("cold storage block size must be a power of two between 1 and 4096 KiB, not {}", self.block_kib);
        }
        if self.latency_max_us < self.latency_min_us {
            bail!("cold storage latency range is reversed ({}..{} us)", self.latency_min_us, self.latency_max_us);
        }
        if self.concurrency == 0 {
            bail!("cold storage concurrency must be at least 1");
        }
        if self.hydrate_mib_s.is_nan() || self.hydrate_mib_s < 0.0 {
            bail!("cold storage hydration rate must be >= 0 MiB/s");
        }
        Ok(())
    }

    /// The predicted extra time to read `blocks` cold blocks, one reader.
    pub fn predicted_penalty_s(&self, blocks: u64) -> f64 {
        blocks as f64 * self.mean_latency_us() / 1e6 / self.concurrency as f64
    }
}

/// The preload library: beside the coldswap binary (target/release), or
/// `$COLDSWAP_FIRSTTOUCH_LIB`.
pub fn preload_lib() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("COLDSWAP_FIRSTTOUCH_LIB") {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
        bail!("COLDSWAP_FIRSTTOUCH_LIB={} does not exist", p.display());
    }
    const NAME: &str = "libcoldswap_firsttouch.so";
    let exe = std::env::current_exe().context("cannot find the running executable")?;
    let mut cands = Vec::new();
    if let Some(d) = exe.parent() {
        // Test binaries live in target/release/deps; the library and
        // coldswap-volread are built into target/release.
        if d.file_name().map(|n| n == "deps").unwrap_or(false) {
            if let Some(dd) = d.parent() {
                cands.push(dd.join(NAME));
            }
        }
        cands.push(d.join(NAME));
    }
    cands.into_iter().find(|p| p.is_file()).ok_or_else(|| {
        anyhow!(
            "the first-touch library {NAME} is missing next to {} (build the workspace: cargo build --release)",
            exe.display()
        )
    })
}

/// The emulator state of a node (process backend: `<node dir>/coldstate`).
pub fn state_dir_of(cluster: &Cluster, i: usize) -> PathBuf {
    cluster.node(i).dir.join("coldstate")
}

/// Counters of a volume, as read from its state.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Counters {
    /// Whether the penalty is on.
    pub enabled: bool,
    /// Block size, bytes.
    pub block_size: u64,
    /// Lowest first-touch latency, microseconds.
    pub latency_min_us: u64,
    /// Highest first-touch latency, microseconds.
    pub latency_max_us: u64,
    /// Fetches in flight at once, volume-wide.
    pub concurrency: u32,
    /// Reads of files under the datadir.
    pub matched_reads: u64,
    /// Of them, of blocks already warm.
    pub warm_reads: u64,
    /// Of them, that paid a first touch (or waited for one in flight).
    pub cold_reads: u64,
    /// Blocks fetched from the "remote" volume.
    pub cold_blocks: u64,
    /// Time readers spent waiting for fetches, seconds.
    pub wait_seconds: f64,
    /// Fetches that waited for a free slot (the volume's throughput limit).
    pub slot_waits: u64,
    /// Most fetches in flight at once.
    pub max_inflight: u32,
    /// Blocks warmed by writes.
    pub written_blocks: u64,
    /// Blocks warmed by background hydration.
    pub hydrated_blocks: u64,
    /// Reads of files outside the datadir (not emulated).
    pub unmatched_reads: u64,
    /// Bytes read under the datadir.
    pub bytes_read: u64,
    /// Processes that attached to this state.
    pub attaches: u64,
    /// Readers that found a block's fetch in flight and waited for it.
    #[serde(default)]
    pub inflight_waits: u64,
    /// Time they waited, seconds.
    #[serde(default)]
    pub inflight_wait_seconds: f64,
    /// Fetches made by partial writes to cold blocks.
    #[serde(default)]
    pub write_fetches: u64,
    /// Blocks past a file's size at the restore (new space, warm from the start).
    #[serde(default)]
    pub new_blocks: u64,
}

impl Counters {
    /// Blocks warm since the reset: fetched, written whole, hydrated, or new space.
    pub fn warm_blocks(&self) -> u64 {
        self.cold_blocks + self.written_blocks + self.hydrated_blocks + self.new_blocks
    }

    /// What happened between two readings.
    pub fn since(&self, before: &Counters) -> Counters {
        let mut d = *self;
        d.matched_reads -= before.matched_reads.min(d.matched_reads);
        d.warm_reads -= before.warm_reads.min(d.warm_reads);
        d.cold_reads -= before.cold_reads.min(d.cold_reads);
        d.cold_blocks -= before.cold_blocks.min(d.cold_blocks);
        d.wait_seconds = (d.wait_seconds - before.wait_seconds).max(0.0);
        d.slot_waits -= before.slot_waits.min(d.slot_waits);
        d.written_blocks -= before.written_blocks.min(d.written_blocks);
        d.hydrated_blocks -= before.hydrated_blocks.min(d.hydrated_blocks);
        d.unmatched_reads -= before.unmatched_reads.min(d.unmatched_reads);
        d.bytes_read -= before.bytes_read.min(d.bytes_read);
        d.inflight_waits -= before.inflight_waits.min(d.inflight_waits);
        d.inflight_wait_seconds = (d.inflight_wait_seconds - before.inflight_wait_seconds).max(0.0);
        d.write_fetches -= before.write_fetches.min(d.write_fetches);
        d.new_blocks -= before.new_blocks.min(d.new_blocks);
        d
    }
}

/// A volume's state directory, mapped into this process.
pub struct Volume {
    dir: PathBuf,
    shared: *mut Shared,
}

unsafe impl Send for Volume {}
unsafe impl Sync for Volume {}

impl Drop for Volume {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mapping.
        unsafe { libc::munmap(self.shared as *mut libc::c_void, COUNTERS_BYTES) };
    }
}

fn map(path: &Path, len: usize) -> Result<*mut u8> {
    use std::os::unix::io::AsRawFd;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    if f.metadata()?.len() < len as u64 {
        f.set_len(len as u64)?;
    }
    // SAFETY: shared mapping of a file we opened, of its full length.
    let p = unsafe {
        libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, f.as_raw_fd(), 0)
    };
    if p == libc::MAP_FAILED {
        bail!("cannot map {}: {}", path.display(), std::io::Error::last_os_error());
    }
    Ok(p as *mut u8)
}

impl Volume {
    /// Open (creating if needed) a volume state directory and apply `cfg`.
    pub fn open(dir: &Path, cfg: &ColdConfig) -> Result<Volume> {
        std::fs::create_dir_all(dir.join(BITMAP_DIR)).with_context(|| format!("cannot create {}", dir.display()))?;
        let p = map(&dir.join(COUNTERS_FILE), COUNTERS_BYTES)?;
        let v = Volume { dir: dir.to_path_buf(), shared: p as *mut Shared };
        let s = v.shared();
        let fresh = s.magic.load(Acquire) != MAGIC || s.version.load(Acquire) != VERSION;
        if fresh {
            s.version.store(VERSION, Relaxed);
            s.enabled.store(1, Relaxed);
            s.magic.store(MAGIC, Release);
        }
        let old_block = s.block_size.load(Relaxed);
        s.block_size.store(cfg.block_bytes(), Relaxed);
        s.latency_min_us.store(cfg.latency_min_us, Relaxed);
        s.latency_max_us.store(cfg.latency_max_us, Relaxed);
        s.concurrency.store(cfg.concurrency, Relaxed);
        s.hydrate_bytes_per_s.store((cfg.hydrate_mib_s * 1048576.0) as u64, Relaxed);
        if fresh || (old_block != 0 && old_block != cfg.block_bytes()) {
            // Bitmaps of another layout or block size: start from a fresh restore.
            v.reset()?;
        }
        Ok(v)
    }

    /// Open an existing state directory without changing its settings.
    pub fn attach(dir: &Path) -> Result<Volume> {
        if !dir.join(COUNTERS_FILE).exists() {
            bail!("no cold storage state in {} (the node was never made cold)", dir.display());
        }
        let p = map(&dir.join(COUNTERS_FILE), COUNTERS_BYTES)?;
        Ok(Volume { dir: dir.to_path_buf(), shared: p as *mut Shared })
    }

    fn shared(&self) -> &Shared {
        // SAFETY: the mapping lives as long as self.
        unsafe { &*self.shared }
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The counters now.
    pub fn counters(&self) -> Counters {
        let s = self.shared();
        Counters {
            enabled: s.enabled.load(Relaxed) != 0,
            block_size: s.block_size.load(Relaxed),
            latency_min_us: s.latency_min_us.load(Relaxed),
            latency_max_us: s.latency_max_us.load(Relaxed),
            concurrency: s.concurrency.load(Relaxed),
            matched_reads: s.matched_reads.load(Relaxed),
            warm_reads: s.warm_reads.load(Relaxed),
            cold_reads: s.cold_reads.load(Relaxed),
            cold_blocks: s.cold_blocks.load(Relaxed),
            wait_seconds: s.wait_ns.load(Relaxed) as f64 / 1e9,
            slot_waits: s.slot_waits.load(Relaxed),
            max_inflight: s.max_inflight.load(Relaxed),
            written_blocks: s.written_blocks.load(Relaxed),
            hydrated_blocks: s.hydrated_blocks.load(Relaxed),
            unmatched_reads: s.unmatched_reads.load(Relaxed),
            bytes_read: s.bytes_read.load(Relaxed),
            attaches: s.attaches.load(Relaxed),
            inflight_waits: s.inflight_waits.load(Relaxed),
            inflight_wait_seconds: s.inflight_wait_ns.load(Relaxed) as f64 / 1e9,
            write_fetches: s.write_fetches.load(Relaxed),
            new_blocks: s.new_blocks.load(Relaxed),
        }
    }

    /// Turn the penalty on or off without a restart (counting goes on).
    pub fn set_enabled(&self, on: bool) {
        self.shared().enabled.store(on as u32, Relaxed);
    }

    /// "A fresh restore": every block cold again, counters from zero. Safe
    /// while a server has the bitmaps mapped (holes are punched, sizes kept).
    pub fn reset(&self) -> Result<()> {
        let s = self.shared();
        for c in [
            &s.matched_reads,
            &s.warm_reads,
            &s.cold_reads,
            &s.cold_blocks,
            &s.wait_ns,
            &s.slot_waits,
            &s.written_blocks,
            &s.hydrated_blocks,
            &s.unmatched_reads,
            &s.bytes_read,
            &s.overflow_blocks,
            &s.inflight_waits,
            &s.inflight_wait_ns,
            &s.write_fetches,
            &s.new_blocks,
        ] {
            c.store(0, Relaxed);
        }
        s.max_inflight.store(0, Relaxed);
        // Every block cold and unclaimed; sizes at the restore are read
        // again when the server first looks at each file.
        let bm = self.dir.join(BITMAP_DIR);
        if let Ok(rd) = std::fs::read_dir(&bm) {
            for e in rd.flatten() {
                let p = e.path();
                if p.extension().map(|x| x == "size").unwrap_or(false) {
                    std::fs::remove_file(&p)?;
                } else {
                    punch(&p)?;
                }
            }
        }
        Ok(())
    }

    /// Warm blocks of one file (path relative to the datadir), from its bitmap.
    pub fn warm_blocks(&self, rel: &str) -> u64 {
        let p = self.dir.join(BITMAP_DIR).join(bitmap_name(&format!("/{}", rel.trim_start_matches('/'))));
        std::fs::read(p).map(|b| b.iter().map(|x| x.count_ones() as u64).sum()).unwrap_or(0)
    }

    /// Clear the in-flight count: only valid while no process is attached
    /// (a process killed mid-fetch leaves its slot taken).
    pub fn clear_inflight(&self) {
        self.shared().inflight.store(0, Relaxed);
    }

    /// Mark every block of every file under `root` warm ("fully hydrated").
    pub fn hydrate_all(&self, root: &Path) -> Result<u64> {
        let bs = self.shared().block_size.load(Relaxed).max(512);
        let mut n = 0;
        let mut files = Vec::new();
        walk(root, &mut files);
        for (path, size) in files {
            let rel = path.strip_prefix(root).unwrap_or(&path).to_string_lossy().to_string();
            let bmp = self.dir.join(BITMAP_DIR).join(bitmap_name(&format!("/{rel}")));
            let p = map(&bmp, BITMAP_BYTES)?;
            let blocks = size.div_ceil(bs).min((BITMAP_BYTES * 8) as u64);
            // SAFETY: inside a BITMAP_BYTES mapping; unmapped right after.
            unsafe {
                let words = p as *mut std::sync::atomic::AtomicU64;
                for b in 0..blocks {
                    (*words.add((b / 64) as usize)).fetch_or(1 << (b % 64), Relaxed);
                }
                libc::munmap(p as *mut libc::c_void, BITMAP_BYTES);
            }
            n += blocks;
        }
        Ok(n)
    }
}

fn punch(path: &Path) -> Result<()> {
    use std::os::unix::io::AsRawFd;
    let f = std::fs::OpenOptions::new().write(true).open(path)?;
    let len = f.metadata()?.len() as libc::off_t;
    // SAFETY: fallocate on an fd we own.
    let rc = unsafe { libc::fallocate(f.as_raw_fd(), libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE, 0, len) };
    if rc != 0 {
        // Filesystems without hole punching: write zeros.
        use std::os::unix::fs::FileExt;
        let zeros = vec![0u8; len as usize];
        f.write_all_at(&zeros, 0)?;
    }
    Ok(())
}

fn walk(dir: &Path, out: &mut Vec<(PathBuf, u64)>) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let Ok(md) = e.metadata() else { continue };
        if md.is_dir() {
            walk(&e.path(), out);
        } else if md.is_file() {
            out.push((e.path(), md.len()));
        }
    }
}

/// Environment that puts a server behind the emulator.
pub fn preload_env(lib: &Path, root: &Path, state: &Path, cfg: &ColdConfig) -> Vec<(String, String)> {
    let lat = if cfg.latency_min_us == cfg.latency_max_us {
        cfg.latency_min_us.to_string()
    } else {
        format!("{}-{}", cfg.latency_min_us, cfg.latency_max_us)
    };
    vec![
        ("LD_PRELOAD".into(), lib.display().to_string()),
        (ENV_ROOT.into(), root.display().to_string()),
        (ENV_STATE.into(), state.display().to_string()),
        (ENV_BLOCK.into(), cfg.block_bytes().to_string()),
        (ENV_LATENCY_US.into(), lat),
        (ENV_CONCURRENCY.into(), cfg.concurrency.to_string()),
        (ENV_HYDRATE_MIBS.into(), cfg.hydrate_mib_s.to_string()),
    ]
}

/// Whether a server's error log says it reads with native AIO / io_uring,
/// which would bypass the emulator.
pub fn native_aio_in_log(text: &str) -> Option<String> {
    text.lines()
        .find(|l| {
            let l = l.to_ascii_lowercase();
            (l.contains("io_uring")
                || l.contains("liburing")
                || l.contains("native aio")
                || l.contains("linux native aio"))
                && !l.contains("disabled")
                && !l.contains("innodb_use_native_aio=0")
        })
        .map(|l| l.trim().to_string())
}

/// Restart node `i` behind the emulator. With `fresh`, every block is cold
/// (a fresh restore); otherwise the volume keeps what it had warmed. The
/// buffer pool starts empty either way.
pub async fn make_cold(cluster: &mut Cluster, i: usize, cfg: &ColdConfig, fresh: bool) -> Result<Volume> {
    cfg.validate()?;
    let lib = preload_lib()?;
    let state = state_dir_of(cluster, i);
    // The datadir as the server names it: inside a container, its volume's
    // mount point (the library and the state dir are mounted at their host paths).
    let root = cluster.files()?.datadir(cluster.node(i));
    let vol = Volume::open(&state, cfg)?;
    let mut extras = cluster.node(i).extras.clone();
    extras.env.retain(|(k, _)| k != "LD_PRELOAD" && !k.starts_with("COLDSWAP_FT_"));
    extras.env.extend(preload_env(&lib, &root, &state, cfg));
    cluster.set_extras(i, extras)?;
    cluster.stop_node(i).await?;
    if fresh {
        vol.reset()?;
    }
    vol.clear_inflight();
    vol.set_enabled(true);
    let mark = cluster.files()?.log_mark(cluster.node(i));
    cluster.start_in_role(i).await?;
    let text = cluster.files()?.log_since(cluster.node(i), mark);
    if let Some(line) = native_aio_in_log(&text) {
        bail!("{} reads with native AIO, which bypasses the first-touch emulator: {line}", cluster.node(i).name);
    }
    Ok(vol)
}

/// Blocks of `block` bytes the node's datadir holds now, from its files'
/// sizes (read where the server runs, so inside a container too).
pub async fn volume_blocks(cluster: &Cluster, i: usize, block: u64) -> Result<u64> {
    let files = cluster.files()?;
    let dir = files.datadir(cluster.node(i)).display().to_string();
    // The server deletes files (relay logs) while find walks the datadir.
    let out = files
        .exec(cluster.node(i), "find", &[&dir, "-ignore_readdir_race", "-type", "f", "-printf", "%s\\n"], &[], None)
        .await?;
    if !out.status.success() {
        bail!("cannot list {dir}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse::<u64>().ok())
        .map(|b| b.div_ceil(block.max(1)))
        .sum())
}

/// Restart node `i` without the emulator (plain storage).
pub async fn make_normal(cluster: &mut Cluster, i: usize) -> Result<()> {
    let mut extras: Extras = cluster.node(i).extras.clone();
    extras.env.retain(|(k, _)| k != "LD_PRELOAD" && !k.starts_with("COLDSWAP_FT_"));
    cluster.set_extras(i, extras)?;
    cluster.restart_node(i).await
}

/// Whether node `i` currently runs behind the emulator.
pub fn is_cold(cluster: &Cluster, i: usize) -> bool {
    cluster.node(i).extras.env.iter().any(|(k, _)| k == "LD_PRELOAD")
}

/// Fail unless the emulator saw reads: a run cannot be called cold otherwise.
pub fn require_matched(c: &Counters, what: &str) -> Result<()> {
    if c.matched_reads == 0 {
        bail!(
            "{what}: the first-touch emulator saw no reads of the datadir, so this run cannot be called cold \
             (is the server reading with native AIO, or from a different datadir?)"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_parsing_and_spread() {
        assert_eq!(parse_latency("1000"), Some((1000, 1000)));
        assert_eq!(parse_latency("3000-30000"), Some((3000, 30000)));
        assert_eq!(parse_latency("30-3"), None);
        let mut sum = 0;
        for b in 0..10_000 {
            let l = latency_us(3000, 30000, 42, b);
            assert!((3000..=30000).contains(&l));
            sum += l;
        }
        let mean = sum as f64 / 10_000.0;
        assert!((15_500.0..17_500.0).contains(&mean), "{mean}");
        assert_eq!(latency_us(1000, 1000, 1, 2), 1000);
    }

    #[test]
    fn bitmap_names_are_flat_and_unique() {
        assert_eq!(bitmap_name("/api/jobs.ibd"), "api@jobs.ibd.bits");
        assert_ne!(bitmap_name("/a@b/c"), bitmap_name("/a/b@c"));
    }

    #[test]
    fn config_validation() {
        assert!(ColdConfig::default().validate().is_ok());
        assert!(ColdConfig { block_kib: 48, ..Default::default() }.validate().is_err());
        assert!(ColdConfig { concurrency: 0, ..Default::default() }.validate().is_err());
        let c = ColdConfig::fixed(1000, 2);
        assert!((c.predicted_penalty_s(1000) - 0.5).abs() < 1e-9);
    }

    #[test]
    fn native_aio_detection() {
        assert!(native_aio_in_log("2026 [Note] InnoDB: Using liburing").is_some());
        assert!(native_aio_in_log("2026 [Note] InnoDB: Using Linux native AIO").is_some());
        assert!(native_aio_in_log("2026 [Note] InnoDB: Completed initialization of buffer pool").is_none());
    }

    #[test]
    fn volume_state_resets_and_counts() {
        let d = std::env::temp_dir().join(format!("coldswap-vol-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let root = d.join("root");
        std::fs::create_dir_all(root.join("db")).unwrap();
        std::fs::write(root.join("db/t.ibd"), vec![1u8; 300 * 1024]).unwrap();
        let v = Volume::open(&d.join("state"), &ColdConfig::fixed(10, 1)).unwrap();
        assert_eq!(v.counters().block_size, 65536);
        assert_eq!(v.hydrate_all(&root).unwrap(), 5);
        let bits = std::fs::read(d.join("state/bitmaps/db@t.ibd.bits")).unwrap();
        assert_eq!(bits[0], 0b11111);
        v.reset().unwrap();
        let bits = std::fs::read(d.join("state/bitmaps/db@t.ibd.bits")).unwrap();
        assert!(bits.iter().all(|b| *b == 0));
        assert_eq!(bits.len(), BITMAP_BYTES);
        std::fs::remove_dir_all(&d).unwrap();
    }
}

/// Parse a latency as users write it: `1ms`, `500us`, `3ms..30ms`, `0`.
pub fn parse_latency_spec(s: &str) -> Result<(u64, u64)> {
    fn one(x: &str) -> Option<u64> {
        let x = x.trim();
        let (num, mul) = if let Some(v) = x.strip_suffix("ms") {
            (v, 1000.0)
        } else if let Some(v) = x.strip_suffix("us") {
            (v, 1.0)
        } else if let Some(v) = x.strip_suffix('s') {
            (v, 1e6)
        } else {
            (x, 1.0)
        };
        let v: f64 = num.trim().parse().ok()?;
        (v >= 0.0 && v.is_finite()).then_some((v * mul).round() as u64)
    }
    let bad = || anyhow!("invalid latency '{s}': expected e.g. 1ms, 500us or 3ms..30ms");
    match s.split_once("..") {
        Some((a, b)) => {
            let (a, b) = (one(a).ok_or_else(bad)?, one(b).ok_or_else(bad)?);
            if b < a {
                return Err(bad());
            }
            Ok((a, b))
        }
        None => {
            let v = one(s).ok_or_else(bad)?;
            Ok((v, v))
        }
    }
}

#[cfg(test)]
mod spec_tests {
    #[test]
    fn latency_specs() {
        use super::parse_latency_spec as p;
        assert_eq!(p("1ms").unwrap(), (1000, 1000));
        assert_eq!(p("3ms..30ms").unwrap(), (3000, 30000));
        assert_eq!(p("500us").unwrap(), (500, 500));
        assert_eq!(p("0").unwrap(), (0, 0));
        assert!(p("30ms..3ms").is_err());
        assert!(p("fast").unwrap_err().to_string().contains("invalid latency"));
    }
}
