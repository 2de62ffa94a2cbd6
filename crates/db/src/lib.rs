//! coldswap's **db**: servers and clusters.
//!
//! * [`backend`]: the seam. One [`Backend`] trait (create, start, stop,
//!   kill, root connection, swap binaries, upgrade tool, destroy), one type
//!   per backend ([`backend::process`], [`backend::container`]), and the
//!   optional [`NodeFiles`] capability.
//! * [`cluster`]: up, status, node start/stop, seed, down, over any backend.
//! * [`upgrade`], [`switchover`], [`replication`]: the rehearsed procedure,
//!   in SQL every backend shares; switchover and replication failures are
//!   typed ([`SwitchoverError`], [`ReplicationError`]).
//! * [`dialect`]: every difference between flavors and versions.
//! * [`dist`]: server distributions for the process backend (pinned Debian
//!   packages in a per-user cache, or a user's unpacked tarball).
//! * [`external`]: servers the user runs, driven through their hooks.
//! * [`node`], [`state`], [`record`]: a node's record, the run dir's
//!   record, and what lifecycle commands print.
//! * [`secrets`], [`files`], [`registry`]: credentials, how coldswap writes
//!   its files, and live runs so a later run cleans what a killed one left.
//!
//! ```no_run
//! # async fn f() -> anyhow::Result<()> {
//! use coldswap_db::{Cluster, PromoteOptions, UpOptions};
//! let mut opts = UpOptions::new("/tmp/run", "mariadb-10.11.18");
//! opts.to = Some("mariadb-10.11.19".into());
//! let (mut cluster, _steps) = Cluster::up(opts).await?;
//! cluster.upgrade(None).await?;
//! cluster.promote(&PromoteOptions::default(), |_| {}).await?;
//! cluster.down(false).await?;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

pub mod backend;
pub mod cluster;
pub mod dialect;
pub mod dist;
pub mod external;
pub mod files;
pub mod node;
pub mod pid;
pub mod ports;
pub mod record;
pub mod registry;
pub mod replication;
pub mod secrets;
pub mod state;
pub mod status;
pub mod steps;
pub mod switchover;
pub mod upgrade;

pub use backend::{Backend, BackendChoice, BackendKind, ContainerOptions, NodeFiles};
pub use cluster::{Cluster, NodeStatus, UpOptions};
pub use coldswap_sql::{Flavor, Version};
pub use dist::Dist;
pub use node::{Extras, Handle, NodeState, Role, Software};
pub use record::{NodeInfo, Record};
pub use replication::{ReplicaStatus, ReplicationError};
pub use secrets::Secrets;
pub use steps::{Step, Steps};
pub use switchover::{PromoteOptions, PromoteOutcome, SwitchoverError};
