//! Production's own workload as a coldswap mix.
//!
//! [`slowlog`] reads a MySQL or MariaDB slow query log into statements;
//! [`fingerprint`] gives each its shape (literals out, as pt-query-digest
//! does) and its literal values; [`period`] tells a job on a timer from
//! request traffic by its arrival times; [`import`] puts it together into a
//! commented mix file a person can edit; [`pfs`] reads the same from a live
//! server's performance_schema.

pub mod fingerprint;
pub mod import;
pub mod period;
pub mod pfs;
pub mod schema;
pub mod slowlog;

pub use import::{import, Capture, ImportOptions, Imported};
