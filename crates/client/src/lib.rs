//! coldswap's **client**: API-shaped load.
//!
//! * [`mix`]: transactions and background jobs declared in loadtests/*.toml,
//!   checked with `file:line` errors before any load starts.
//! * [`gen`]: parameter generators drawing from the seeded data with its skew.
//! * [`tier`]: the API tier model (bounded pool, deadline, acquire timeout,
//!   retries) and the failure classes.
//! * [`proxy`]: the swappable endpoint.
//! * [`run`]: goose drives the users; closed and open models; background jobs.
//! * [`metrics`]: the run's counters and latency histograms for Prometheus.
//! * [`cpu`]: the process's and the host's CPU use over an interval.
//! * [`stats`]: HDR histograms per phase and transaction, per-second timeline.
//!
//! Used alone, against any server holding the mix's tables:
//!
//! ```no_run
//! # async fn f() -> anyhow::Result<()> {
//! use coldswap_client::{Load, LoadConfig, Model, Recorder};
//! use std::sync::Arc;
//! let mix = coldswap_client::run::load_mix(std::path::Path::new("loadtests/point_select.toml"))?;
//! let target = coldswap_sql::tcp_options("127.0.0.1", 3306, "app", "secret");
//! let cfg = LoadConfig {
//!     users: 8,
//!     model: Model::Open { rate_per_s: 500.0 },
//!     duration: Some(std::time::Duration::from_secs(10)),
//!     ..Default::default()
//! };
//! let rec = Arc::new(Recorder::new());
//! let load = Load::prepare(mix, target, cfg, rec.clone()).await?;
//! rec.phase("run");
//! load.run().await?;
//! println!("{:?}", rec.snapshot().phase("run").map(|p| p.total_requests()));
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

pub mod cpu;
pub mod gen;
pub mod metrics;
pub mod mix;
pub mod proxy;
pub mod queue;
pub mod run;
pub mod stats;
pub mod tier;

pub use mix::Mix;
pub use proxy::Endpoint;
pub use run::{Controls, Load, LoadConfig, Model};
pub use stats::{Recorder, RunResult};
pub use tier::{FailClass, Protocol, TierConfig};

/// Parse a duration as users write it: `30s`, `2m`, `1h`, `500ms`, or seconds.
pub fn parse_duration(s: &str) -> anyhow::Result<std::time::Duration> {
    let t = s.trim();
    let bad = || anyhow::anyhow!("invalid duration '{s}': expected e.g. 30s, 2m, 500ms");
    let (num, mul) = if let Some(v) = t.strip_suffix("ms") {
        (v, 0.001)
    } else if let Some(v) = t.strip_suffix('s') {
        (v, 1.0)
    } else if let Some(v) = t.strip_suffix('m') {
        (v, 60.0)
    } else if let Some(v) = t.strip_suffix('h') {
        (v, 3600.0)
    } else {
        (t, 1.0)
    };
    let v: f64 = num.trim().parse().map_err(|_| bad())?;
    if !v.is_finite() || v < 0.0 {
        return Err(anyhow::anyhow!("invalid duration '{s}': must not be negative"));
    }
    Ok(std::time::Duration::from_secs_f64(v * mul))
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations() {
        use super::parse_duration as p;
        assert_eq!(p("30s").unwrap().as_secs(), 30);
        assert_eq!(p("2m").unwrap().as_secs(), 120);
        assert_eq!(p("500ms").unwrap().as_millis(), 500);
        assert_eq!(p("7").unwrap().as_secs(), 7);
        assert!(p("-5s").unwrap_err().to_string().contains("must not be negative"));
        assert!(p("soon").is_err());
    }
}
