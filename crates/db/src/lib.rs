//! coldswap's **db**: the cluster lifecycle.
//!
//! * [`dist`]: server distributions (pinned Debian packages in a per-user
//!   cache, or a user's unpacked tarball), flavor and version detection.
//! * [`dialect`]: the SQL and flags that differ between MariaDB, MySQL 5.7 and 8.0.
//! * [`cluster`]: up, upgrade, promote, status, down, over a backend
//!   ([`process`] today; containers behind the same calls).
//! * [`registry`]: live runs, so a later run cleans what a killed one left.

pub mod cluster;
pub mod container;
pub mod dialect;
pub mod dist;
pub mod external;
pub mod node;
pub mod process;
pub mod registry;
pub mod seed;
pub mod signals;
pub mod sql;
pub mod util;

pub use cluster::{BackendKind, Cluster, PromoteOptions, PromoteOutcome, Record, UpOptions};
pub use dist::{Dist, Flavor, Version};
pub use node::{Extras, NodeState, Role};
pub use util::{Step, Steps};
