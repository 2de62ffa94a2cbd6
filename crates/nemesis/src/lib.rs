//! coldswap's **nemesis**: what goes wrong around the switchover.
//!
//! * [`cold`]: a node's datadir behind the first-touch emulator (a volume
//!   restored from a snapshot), its counters and resets.
//! * [`warm`]: the techniques that fight it (buffer-pool dump/load, full
//!   volume read, targeted prefetch), each timed.
//!
//! ```no_run
//! # async fn f(cluster: &mut coldswap_db::Cluster) -> anyhow::Result<()> {
//! use coldswap_nemesis::{cold, warm, ColdConfig, Technique};
//! let r = cluster.replica_index()?;
//! // A fresh snapshot restore: 3-30 ms per first read, 8 fetches in flight.
//! let vol = cold::make_cold(cluster, r, &ColdConfig::default(), true).await?;
//! // ... load ...
//! println!("{} blocks fetched", vol.counters().cold_blocks);
//! let inputs = warm::WarmInputs { dump_from: cluster.primary_index().ok(), ..Default::default() };
//! warm::warm(cluster, r, Technique::BufferPool, &inputs).await?;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

pub mod cold;
pub mod warm;

pub use cold::{ColdConfig, Counters, Volume};
pub use warm::{Technique, WarmReport};
