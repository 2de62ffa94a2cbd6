//! coldswap's **drill**: the whole rehearsal, composed from the db, client,
//! nemesis and checker crates.
//!
//! * [`config`]: drill.toml, checked with `file:line` errors.
//! * [`run`]: the rehearsal as a sequence of named steps, and its report.
//! * [`invariants`]: the write ledger after the switchover.
//! * [`capacity`]: the arrival rate each state sustains within an SLO.
//! * [`out`]: where a run writes.
//! * [`warmups`]: one drill per warm-up technique, compared.
//!
//! ```no_run
//! # async fn f() -> anyhow::Result<()> {
//! let (cfg, text) = coldswap_drill::DrillConfig::load(std::path::Path::new("drill.toml"))?;
//! let path = std::path::Path::new("drill.toml");
//! let outcome = coldswap_drill::run(cfg, Some((path, text.as_str()))).await?;
//! println!("{}", coldswap_drill::summary(&outcome));
//! std::process::exit(outcome.exit_code);
//! # }
//! ```

#![warn(missing_docs)]

pub mod capacity;
pub mod config;
mod external;
pub mod invariants;
pub mod out;
pub mod run;
mod state;
pub mod status;
pub mod warmups;

pub use config::DrillConfig;
pub use run::{run, summary, Outcome};
