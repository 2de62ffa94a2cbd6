//! The in-place upgrade of the replica: stop replication, clean stop (slow
//! shutdown across major versions), the new binaries on the same datadir,
//! the upgrade tool (or the server's own upgrade at start), replication
//! restarted and checked.

use anyhow::{anyhow, bail, Result};
use std::time::{Duration, Instant};

use crate::cluster::Cluster;
use crate::steps::Steps;
use coldswap_sql as sql;

impl Cluster {
    /// Upgrade the replica in place to `to` (default: the version given to
    /// `up`). Steps: `provision`, `stop_replication`, `stop_replica_server`,
    /// `start_on_new_binaries`, `upgrade_tool` (when the software has one),
    /// `start_replication`, `verify_replication`, `upgrade_total`.
    pub async fn upgrade(&mut self, to: Option<&str>) -> Result<Steps> {
        let spec = to
            .map(|s| s.to_string())
            .or_else(|| self.state.to.clone())
            .ok_or_else(|| anyhow!("no version to upgrade to: pass --to"))?;
        let mut steps = Steps::default();
        let t0 = Instant::now();
        let r = self.replica_index()?;
        let t = Instant::now();
        self.state.backend.get().check_spec(&spec)?;
        let new = self.state.backend.get().provision(&spec).await?;
        steps.push("provision", t);
        let old = self.state.nodes[r].software.clone();
        if new.flavor() != old.flavor() {
            bail!(
                "cannot upgrade {} from {} to {}: a different server flavor (the datadir of one cannot run on the other)",
                self.state.nodes[r].name,
                old.label(),
                new.label()
            );
        }
        if new.version() < old.version() {
            bail!(
                "cannot upgrade {} from {} to {}: not an upgrade",
                self.state.nodes[r].name,
                old.label(),
                new.label()
            );
        }
        let d = self.state.nodes[r].dialect();
        let t = Instant::now();
        {
            let mut c = self.admin(r).await?;
            sql::exec(&mut c, d.stop_replica()).await?;
            if !new.version().same_series(&old.version()) {
                // A slow shutdown leaves nothing for the new version's redo/undo handling.
                sql::exec(&mut c, "SET GLOBAL innodb_fast_shutdown=0").await?;
            }
            sql::close(c).await;
        }
        steps.push("stop_replication", t);
        let t = Instant::now();
        self.stop_node(r).await?;
        steps.push("stop_replica_server", t);
        let t = Instant::now();
        let upgrade_flags = new.dialect().upgrade_start_flags(old.version());
        {
            let b = self.state.backend.get();
            b.swap_binaries(&mut self.state.nodes[r], new).await?;
        }
        // Flags for this start only (a server that upgrades itself at start).
        let saved = self.state.nodes[r].extras.clone();
        self.state.nodes[r].extras.args.extend(upgrade_flags);
        self.save()?;
        let started = self.start_node(r, true).await;
        self.state.nodes[r].extras = saved;
        self.save()?;
        started?;
        steps.push("start_on_new_binaries", t);
        let t = Instant::now();
        let ran = {
            let b = self.state.backend.get();
            b.run_upgrade_tool(&self.state.nodes[r], &self.secrets).await?
        };
        if ran {
            steps.push("upgrade_tool", t);
        }
        let t = Instant::now();
        {
            let d = self.state.nodes[r].dialect();
            let mut c = self.admin(r).await?;
            sql::exec(&mut c, d.start_replica()).await?;
            let v = sql::query_text(&mut c, "SELECT VERSION()").await?.unwrap_or_default();
            self.state.nodes[r].version_string = v;
            sql::close(c).await;
        }
        self.save()?;
        steps.push("start_replication", t);
        let t = Instant::now();
        self.verify_replication(Duration::from_secs(60)).await?;
        steps.push("verify_replication", t);
        steps.push("upgrade_total", t0);
        Ok(steps)
    }
}
