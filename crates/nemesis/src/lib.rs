//! coldswap's **nemesis**: what goes wrong around the switchover.
//!
//! * [`cold`]: a node's datadir behind the first-touch emulator (a volume
//!   restored from a snapshot), its counters and resets.
//! * [`warm`]: the techniques that fight it (buffer-pool dump/load, full
//!   volume read, targeted prefetch), each timed.

pub mod cold;
pub mod warm;

pub use cold::{ColdConfig, Counters, Volume};
pub use warm::{Technique, WarmReport};
