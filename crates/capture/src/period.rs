//! Is a statement a job on a timer? Its arrival times say.
//!
//! A job that `k` servers each run every `P` seconds (a scheduler on every
//! API node, each with its own phase) arrives `k` times per period, and the
//! `k`-th next arrival after any arrival is `P` later, however the phases
//! fall. Request traffic has no such lag: for arrivals at random, the gap
//! to the `k`-th next arrival has a coefficient of variation of `1/sqrt(k)`
//! (0.25 at k = 16), and for merely regular arrivals (every tenth request
//! of a round robin) `cv(1)/sqrt(k)`. So, for `k` = 1, 2, ... 16, the gaps
//! `t[i+k] - t[i]` are measured, the timestamps' resolution taken out of
//! their variance (two roundings add `r^2/6`), and the first `k` whose gaps
//! vary by less than 10 % of their mean, every gap within a quarter of a
//! period of it, and by less than half what smoothing alone would leave of
//! the variation at the first `k0` the clock resolves (`cv(k0) *
//! sqrt(k0/k)`), names the period and the number of sources. Gaps already
//! steady at `k0` (one source, or sources evenly out of phase, which to a
//! log are one faster timer) are a timer when `cv(k0) * sqrt(k0)` is under
//! 0.15. The log tells the rate of a job, not how many servers share it:
//! `sources` is the fewest that fit. It needs at least three
//! periods of the log and two arrivals per source.

/// A job on a timer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Periodic {
    /// Seconds between two runs of one source.
    pub period_s: f64,
    /// How many sources run it, each on its own timer.
    pub sources: usize,
    /// Coefficient of variation of the `sources`-th next gap.
    pub cv: f64,
}

/// Most sources looked for.
pub const MAX_SOURCES: usize = 16;

/// The timer behind arrival times (seconds, any order), measured with the
/// given resolution (seconds), if there is one.
pub fn detect(times: &[f64], resolution: f64) -> Option<Periodic> {
    let mut t: Vec<f64> = times.iter().copied().filter(|x| x.is_finite()).collect();
    t.sort_by(f64::total_cmp);
    let n = t.len();
    if n < 6 {
        return None;
    }
    let span = t[n - 1] - t[0];
    let cv_of = |k: usize| -> (f64, f64, bool) {
        if k >= n {
            return (f64::INFINITY, f64::INFINITY, false);
        }
        let gaps: Vec<f64> = (0..n - k).map(|i| t[i + k] - t[i]).collect();
        let m = gaps.iter().sum::<f64>() / gaps.len() as f64;
        let var = gaps.iter().map(|g| (g - m) * (g - m)).sum::<f64>() / (gaps.len() - 1).max(1) as f64;
        let var = (var - resolution * resolution / 6.0).max(0.0);
        let within = gaps.iter().all(|g| (g - m).abs() <= 0.25 * m + resolution);
        (m, if m > 0.0 { var.sqrt() / m } else { f64::INFINITY }, within)
    };
    // The reference: the first k whose gaps the clock resolves.
    let mut reference: Option<(usize, f64)> = None;
    for k in 1..=MAX_SOURCES.min(n / 3) {
        let (m, cv, within) = cv_of(k);
        // A period must stand clear of the clock's resolution, and the log
        // must hold at least three of it.
        if m < 2.0 * resolution {
            continue;
        }
        let Some((k0, cv0)) = reference else {
            reference = Some((k, cv));
            // Already steady at the first gap the clock resolves (sources
            // evenly out of phase look like one faster timer): a timer if
            // it is steadier than smoothing could make a renewal process
            // whose single gaps vary by 15 % or more.
            if cv < 0.10 && cv * (k as f64).sqrt() < 0.15 && within && span >= 3.0 * m {
                return Some(Periodic { period_s: m, sources: k, cv });
            }
            continue;
        };
        if span < 3.0 * m {
            break;
        }
        // Arrivals that are merely regular (every tenth request of a round
        // robin) smooth out as 1/sqrt(k); a timer's k-th gap is constant
        // however its sources' phases fall.
        let sharp = cv * (k as f64).sqrt() < 0.5 * cv0 * (k0 as f64).sqrt();
        if cv < 0.10 && within && sharp {
            return Some(Periodic { period_s: m, sources: k, cv });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Lcg(u64);
    impl Lcg {
        fn unit(&mut self) -> f64 {
            self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    fn timer(sources: usize, period: f64, runs: usize, jitter: f64, rng: &mut Lcg) -> Vec<f64> {
        let mut t = Vec::new();
        for _ in 0..sources {
            let phase = rng.unit() * period;
            for r in 0..runs {
                t.push(1000.0 + phase + r as f64 * period + jitter * rng.unit());
            }
        }
        t
    }

    #[test]
    fn timers_are_found_with_their_sources() {
        let mut rng = Lcg(9);
        for (k, p) in [(1, 60.0), (4, 4.0), (8, 10.0), (3, 0.5)] {
            let t = timer(k, p, 8, 0.01 * p, &mut rng);
            let d = detect(&t, 1e-6).unwrap_or_else(|| panic!("{k} x {p}s not found"));
            assert_eq!(d.sources, k, "{d:?}");
            assert!((d.period_s - p).abs() < 0.05 * p, "{d:?}");
        }
        // whole-second timestamps (MariaDB's slow log)
        let t: Vec<f64> = timer(4, 4.0, 8, 0.005, &mut rng).iter().map(|x| x.floor()).collect();
        let d = detect(&t, 1.0).expect("found at 1 s resolution");
        assert_eq!(d.sources, 4);
        assert!((d.period_s - 4.0).abs() < 0.3, "{d:?}");
        // four sources a second apart, whole seconds: one run a second,
        // found as the fewest sources that fit
        let t: Vec<f64> = (0..32).map(|i| 1000.0 + i as f64).collect();
        let d = detect(&t, 1.0).expect("found");
        assert!((d.sources as f64 / d.period_s - 1.0).abs() < 0.01, "{d:?}");
    }

    #[test]
    fn random_arrivals_are_not_a_timer() {
        let mut rng = Lcg(5);
        for rate in [0.25, 1.0, 20.0, 300.0] {
            for res in [1e-6, 1.0] {
                let mut t = Vec::new();
                let mut now = 0.0;
                while now < 60.0 {
                    now += -(1.0 - rng.unit()).ln() / rate;
                    t.push(if res == 1.0 { now.floor() } else { now });
                }
                assert_eq!(detect(&t, res), None, "rate {rate}/s, resolution {res}");
            }
        }
        // every tenth of random arrivals (a round robin's share) is regular,
        // not a timer
        let mut t = Vec::new();
        let mut now = 0.0;
        for i in 0..4000 {
            now += -(1.0 - rng.unit()).ln() / 40.0;
            if i % 10 == 9 {
                t.push(now);
            }
        }
        assert_eq!(detect(&t, 1e-6), None);
        let t: Vec<f64> = t.iter().map(|x| x.floor()).collect();
        assert_eq!(detect(&t, 1.0), None, "whole seconds");
        // too few arrivals say nothing
        assert_eq!(detect(&[1.0, 5.0, 9.0], 1e-6), None);
    }
}
