//! The planned switchover: guardrails, fence the old primary, wait for GTID
//! catch-up, detach the replica and open it for writes, optionally demote
//! the old primary. Every failure after the fence rolls back, and says so in
//! its type ([`SwitchoverError::rolled_back`]), so callers decide on the
//! type, never on the text.

use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

use crate::cluster::Cluster;
use crate::node::{NodeState, Role};
use crate::replication::{check_promotable, Refusal};
use crate::steps::Steps;
use coldswap_sql as sql;

/// How a switchover is allowed to go.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PromoteOptions {
    /// Refuse when the replica is further behind than this.
    pub max_lag_s: f64,
    /// How long to wait for GTID catch-up after fencing.
    pub catchup_timeout_s: f64,
    /// Make the old primary a replica of the new one.
    pub demote: bool,
}

/// How long the guardrail reads the lag again before refusing a lagging replica, s.
const LAG_SETTLE_S: f64 = 10.0;

impl Default for PromoteOptions {
    fn default() -> Self {
        PromoteOptions { max_lag_s: 5.0, catchup_timeout_s: 10.0, demote: false }
    }
}

/// What a switchover did.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PromoteOutcome {
    /// The node that was primary.
    pub old_primary: String,
    /// The node that is primary now.
    pub new_primary: String,
    /// From the fence to the new primary accepting writes.
    pub write_unavailable_seconds: f64,
    /// The GTID position the new primary caught up to.
    pub gtid_position: String,
    /// Whether the old primary now replicates from the new one.
    pub demoted: bool,
}

/// Why a switchover did not happen; [`SwitchoverError::rolled_back`] says
/// whether anything had to be undone.
#[derive(Debug, thiserror::Error)]
pub enum SwitchoverError {
    /// The guardrail refused the replica; nothing was fenced.
    #[error("refusing to promote: {0}")]
    Refused(#[from] Refusal),
    /// Fencing the old primary failed; it was unfenced.
    #[error("promotion failed while fencing {primary}: {cause}; rolled back: {primary} is still the primary")]
    Fence {
        /// The old primary.
        primary: String,
        /// What failed.
        cause: String,
    },
    /// The replica did not apply everything in time; rolled back.
    #[error(
        "promotion failed: {replica} did not catch up to {position} within {timeout_s} s; rolled back: {primary} is the primary again"
    )]
    CatchupTimeout {
        /// The replica.
        replica: String,
        /// The old primary.
        primary: String,
        /// The position it had to reach.
        position: String,
        /// The time allowed.
        timeout_s: f64,
    },
    /// Waiting for catch-up failed; rolled back.
    #[error("promotion failed while waiting for catch-up: {cause}; rolled back: {primary} is the primary again")]
    Catchup {
        /// The old primary.
        primary: String,
        /// What failed.
        cause: String,
    },
    /// Opening the replica for writes failed; rolled back.
    #[error(
        "promotion failed while opening {replica} for writes: {cause}; rolled back: {primary} is the primary again"
    )]
    Open {
        /// The replica.
        replica: String,
        /// The old primary.
        primary: String,
        /// What failed.
        cause: String,
    },
    /// Anything before the fence (no replica, no connection).
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl SwitchoverError {
    /// Whether the old primary was fenced and had to be put back.
    pub fn rolled_back(&self) -> bool {
        matches!(
            self,
            SwitchoverError::Fence { .. }
                | SwitchoverError::CatchupTimeout { .. }
                | SwitchoverError::Catchup { .. }
                | SwitchoverError::Open { .. }
        )
    }
}

/// A switchover under way: the old primary is fenced and the replica has
/// caught up (see [`Cluster::promote_begin`]).
pub struct Fenced {
    /// Index of the old primary.
    pub p: usize,
    /// Index of the replica being promoted.
    pub r: usize,
    /// The GTID position the replica reached.
    pub pos: String,
    /// When the fence went up (write unavailability starts).
    pub fence_at: Instant,
    /// Steps so far.
    pub steps: Steps,
}

impl Cluster {
    /// Planned switchover. `on_writable` is called as soon as the new primary
    /// accepts writes (the endpoint swap); the unavailability window ends there.
    pub async fn promote<F>(
        &mut self,
        opts: &PromoteOptions,
        on_writable: F,
    ) -> std::result::Result<(PromoteOutcome, Steps), SwitchoverError>
    where
        F: FnOnce(&NodeState),
    {
        let fenced = self.promote_begin(opts).await?;
        self.promote_finish(fenced, opts, on_writable).await
    }

    /// First half of a switchover: guardrails, fence the old primary, wait
    /// until the replica has applied everything. Writes are unavailable from
    /// here until [`Cluster::promote_finish`] (or [`Cluster::promote_abort`]).
    pub async fn promote_begin(&mut self, opts: &PromoteOptions) -> std::result::Result<Fenced, SwitchoverError> {
        let mut steps = Steps::default();
        let p = self.primary_index()?;
        let r = self.replica_index()?;
        let (pname, rname) = (self.state.nodes[p].name.clone(), self.state.nodes[r].name.clone());
        let dp = self.state.nodes[p].dialect();
        let dr = self.state.nodes[r].dialect();

        // 1. Guardrails: a broken or lagging replica is not promoted. Lag is
        // read again for a few seconds before refusing: a replica that just
        // restarted reports the age of the events it is still applying
        // (10 s seen after an upgrade) and is within the limit moments
        // later; one truly behind stays behind.
        let t = Instant::now();
        let settle = Duration::from_secs_f64(LAG_SETTLE_S.min(opts.catchup_timeout_s.max(0.0)));
        loop {
            let st = self.replica_status(r).await?;
            match check_promotable(st.as_ref(), opts.max_lag_s, &rname, &pname) {
                Ok(()) => break,
                Err(crate::replication::Refusal::Lagging { .. }) if t.elapsed() < settle => {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        steps.push("check_replica", t);

        // 2. Fence the old primary. The write-unavailability window starts here.
        let fence_at = Instant::now();
        let mut pc = self.admin(p).await?;
        let fenced = async {
            sql::exec_all(&mut pc, &dp.fence()).await?;
            // Wait out writes already in flight, then release.
            sql::exec(&mut pc, "FLUSH TABLES WITH READ LOCK").await?;
            sql::exec(&mut pc, "UNLOCK TABLES").await?;
            sql::query_text(&mut pc, dp.gtid_executed_query()).await
        }
        .await;
        let pos = match fenced {
            Ok(pos) => pos.unwrap_or_default(),
            Err(e) => {
                let _ = sql::exec_all(&mut pc, &dp.unfence()).await;
                sql::close(pc).await;
                return Err(SwitchoverError::Fence { primary: pname, cause: format!("{e:#}") });
            }
        };
        sql::close(pc).await;
        steps.push("fence_old_primary", fence_at);

        // 3. Wait for the replica to apply everything the old primary executed.
        let t = Instant::now();
        let caught_up = async {
            let mut rc = self.admin(r).await?;
            let q = dr.wait_gtid_query(&pos, opts.catchup_timeout_s);
            let v = sql::query_i64(&mut rc, &q).await;
            sql::close(rc).await;
            v
        }
        .await;
        match caught_up {
            Ok(0) => {}
            Ok(_) => {
                self.rollback(p, r, false).await;
                return Err(SwitchoverError::CatchupTimeout {
                    replica: rname,
                    primary: pname,
                    position: pos,
                    timeout_s: opts.catchup_timeout_s,
                });
            }
            Err(e) => {
                self.rollback(p, r, false).await;
                return Err(SwitchoverError::Catchup { primary: pname, cause: format!("{e:#}") });
            }
        }
        steps.push("wait_catchup", t);
        Ok(Fenced { p, r, pos, fence_at, steps })
    }

    /// Give up a switchover begun with [`Cluster::promote_begin`]: the old
    /// primary takes writes again.
    pub async fn promote_abort(&mut self, f: Fenced) {
        self.rollback(f.p, f.r, false).await;
    }

    /// Second half of a switchover: detach the replica, open it for writes,
    /// call `on_writable`, optionally demote the old primary.
    pub async fn promote_finish<F>(
        &mut self,
        f: Fenced,
        opts: &PromoteOptions,
        on_writable: F,
    ) -> std::result::Result<(PromoteOutcome, Steps), SwitchoverError>
    where
        F: FnOnce(&NodeState),
    {
        let Fenced { p, r, pos, fence_at, mut steps } = f;
        let (pname, rname) = (self.state.nodes[p].name.clone(), self.state.nodes[r].name.clone());
        let dr = self.state.nodes[r].dialect();
        // 4. Detach the replica and open it for writes.
        let t = Instant::now();
        let detached = async {
            let mut rc = self.admin(r).await?;
            sql::exec(&mut rc, dr.stop_replica()).await?;
            sql::exec(&mut rc, dr.reset_replica_all()).await?;
            sql::exec_all(&mut rc, &dr.unfence()).await?;
            sql::close(rc).await;
            anyhow::Ok(())
        }
        .await;
        if let Err(e) = detached {
            self.rollback(p, r, true).await;
            return Err(SwitchoverError::Open { replica: rname, primary: pname, cause: format!("{e:#}") });
        }
        self.state.nodes[r].role = Role::Primary;
        self.state.nodes[p].role = Role::Fenced;
        self.save()?;
        on_writable(&self.state.nodes[r]);
        let unavailable = fence_at.elapsed().as_secs_f64();
        steps.push("promote_replica", t);

        // 5. Optionally keep the old primary as a replica of the new one.
        let mut demoted = false;
        if opts.demote {
            let t = Instant::now();
            self.demote(p, r).await?;
            demoted = true;
            steps.push("demote_old_primary", t);
        }
        let outcome = PromoteOutcome {
            old_primary: pname,
            new_primary: rname,
            write_unavailable_seconds: unavailable,
            gtid_position: pos,
            demoted,
        };
        Ok((outcome, steps))
    }

    /// Make a former primary `p` (fenced) replicate from the primary `r`
    /// that replaced it, and wait until it applies a fresh heartbeat.
    pub async fn demote(&mut self, p: usize, r: usize) -> Result<()> {
        use anyhow::Context;
        self.point_replica_at(p, r, true).await.context("demoting the old primary")?;
        self.save()?;
        self.verify_replication(Duration::from_secs(30)).await?;
        Ok(())
    }

    /// Put the old primary back in service after a failed promotion.
    async fn rollback(&mut self, p: usize, r: usize, replica_detached: bool) {
        tracing::warn!("rolling back: {} is made writable again", self.state.nodes[p].name);
        let dp = self.state.nodes[p].dialect();
        if let Ok(mut c) = self.admin(p).await {
            let _ = sql::exec_all(&mut c, &dp.unfence()).await;
            sql::close(c).await;
        }
        if replica_detached {
            let _ = self.point_replica_at(r, p, false).await;
        } else {
            // The replica may still be mid-catch-up; make sure it stays read-only.
            let dr = self.state.nodes[r].dialect();
            if let Ok(mut c) = self.admin(r).await {
                let _ = sql::exec_all(&mut c, &dr.fence()).await;
                sql::close(c).await;
            }
        }
        self.state.nodes[p].role = Role::Primary;
        self.state.nodes[r].role = Role::Replica;
        let _ = self.save();
    }
}
