//! CPU use of this process and of the host, read from the kernel: what a
//! load generator needs to tell its own saturation from the database's.

/// CPU time this process has used (all threads, user and system), seconds.
pub fn process_s() -> f64 {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into a local it is given.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(ru.ru_utime) + t(ru.ru_stime)
}

/// The host's CPU counters (busy, total) in clock ticks, from /proc/stat;
/// None where it cannot be read.
pub fn host_ticks() -> Option<(u64, u64)> {
    parse_proc_stat(&std::fs::read_to_string("/proc/stat").ok()?)
}

/// (busy, total) of the aggregate `cpu` line: idle and iowait are not busy.
pub fn parse_proc_stat(text: &str) -> Option<(u64, u64)> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    if v.len() < 4 {
        return None;
    }
    // user nice system idle iowait irq softirq steal (guest is inside user).
    let total: u64 = v.iter().take(8).sum();
    let idle = v[3] + v.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// CPUs this process may run on.
pub fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// CPU use over an interval: start one, read it at the end.
#[derive(Debug, Clone, Copy)]
pub struct Meter {
    at: std::time::Instant,
    process: f64,
    host: Option<(u64, u64)>,
}

/// What a [`Meter`] saw.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    /// This process's CPU, percent of one core.
    pub process_pct: f64,
    /// The host's busy share, percent of all its cores (None: unreadable).
    pub host_busy_pct: Option<f64>,
}

impl Meter {
    /// Start measuring.
    pub fn start() -> Meter {
        Meter { at: std::time::Instant::now(), process: process_s(), host: host_ticks() }
    }

    /// Use since [`Meter::start`].
    pub fn read(&self) -> Usage {
        let wall = self.at.elapsed().as_secs_f64().max(1e-6);
        let host = match (self.host, host_ticks()) {
            (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => Some((b1 - b0) as f64 * 100.0 / (t1 - t0) as f64),
            _ => None,
        };
        Usage { process_pct: (process_s() - self.process) * 100.0 / wall, host_busy_pct: host }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_busy_excludes_idle_and_iowait() {
        let t = "cpu  100 5 50 800 40 1 4 0 0 0\ncpu0 50 2 25 400 20 0 2 0 0 0\n";
        assert_eq!(parse_proc_stat(t), Some((160, 1000)));
        assert_eq!(parse_proc_stat("intr 1 2 3"), None);
    }

    #[test]
    fn cpu_burnt_shows_in_the_process_share() {
        let m = Meter::start();
        let c0 = process_s();
        let mut x = 0u64;
        while process_s() - c0 < 0.05 {
            for _ in 0..10_000 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            }
        }
        std::hint::black_box(x);
        let u = m.read();
        assert!(u.process_pct > 0.0, "{u:?}");
        assert!(u.host_busy_pct.is_some_and(|b| b > 0.0), "{u:?}");
    }
}
