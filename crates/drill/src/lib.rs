//! coldswap's **drill**: the whole rehearsal, composed from the db, client,
//! nemesis and checker crates.

pub mod capacity;
pub mod config;
pub mod invariants;
pub mod out;
pub mod run;

pub use config::DrillConfig;
pub use run::{run, summary, Outcome};
