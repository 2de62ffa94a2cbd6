//! The external backend: servers the user already runs (a staging primary
//! and replica), named in a file. coldswap never starts, stops or deletes
//! them. It reads their state, and upgrades and promotes through the user's
//! own hook commands (their orchestrator, cloud API or runbook script), with
//! the same guardrails and checks as its own clusters: refuse a broken or
//! lagging replica, time every step, verify the outcome.
//!
//! Safety: addresses off loopback are refused unless the file or the command
//! line opts in (`allow_remote`). The password comes from an environment
//! variable named in the file, never from the file, and is never logged.
//! Connections are not encrypted (coldswap is built without TLS): reach
//! remote servers through a trusted network or an SSH tunnel.

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use sqlx::mysql::MySqlConnection;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::dialect::Dialect;
use crate::replication::{self, check_promotable, ReplicaStatus};
use crate::status::Thread;
use crate::steps::{Step, Steps};
use coldswap_sql as sql;
use coldswap_sql::parse_server_version;

/// external.toml: the servers a user runs, how to reach them, their hooks.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalConfig {
    /// Servers off loopback are refused unless this is true (or --allow-remote).
    #[serde(default)]
    pub allow_remote: bool,
    /// The primary.
    pub primary: Endpoint,
    /// The replica to upgrade and promote.
    pub replica: Endpoint,
    /// Who coldswap logs in as.
    pub credentials: Credentials,
    /// The user's upgrade and promotion commands.
    #[serde(default)]
    pub hooks: Hooks,
    /// Limits a promotion must respect.
    #[serde(default)]
    pub guardrails: Guardrails,
    /// `coldswap drill --backend external`: the mix may write to the
    /// servers (outside coldswap's own schema). Off: a mix with writes is refused.
    #[serde(default)]
    pub allow_writes: bool,
    /// The drill's schema, created before the load and dropped after it
    /// (the write ledger, the checksums). Never one of the user's.
    #[serde(default = "default_schema")]
    pub schema: String,
    /// The address the load connects to when clients should follow the
    /// user's own DNS name or VIP (the promote hook moves it). Without it,
    /// the load goes through coldswap's endpoint, swapped after the hook.
    #[serde(default)]
    pub client_address: Option<String>,
    /// Who the load logs in as (the credentials above when absent).
    #[serde(default)]
    pub app_credentials: Option<Credentials>,
}

fn default_schema() -> String {
    "coldswap_drill".into()
}

/// One server's address.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    /// host:port
    pub address: String,
}

/// The credentials coldswap uses (the password from the environment, never from the file).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    /// A user with replication-admin rights on both servers.
    pub user: String,
    /// The environment variable holding its password.
    pub password_env: String,
}

/// The user's hook commands, run with `sh -c` in their own process group.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hooks {
    /// Upgrades the replica in place (run with `sh -c`).
    pub upgrade: Option<String>,
    /// Promotes the replica and moves clients to it.
    pub promote: Option<String>,
    /// Seconds a hook may run before it is killed with everything it started.
    #[serde(default = "default_hook_timeout")]
    pub timeout_s: f64,
}

fn default_hook_timeout() -> f64 {
    900.0
}

/// Limits the external promotion respects.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Guardrails {
    /// Refuse to promote a replica further behind than this.
    pub max_lag_s: f64,
    /// How long a replica may take to come back and catch up after the upgrade hook.
    pub catchup_timeout_s: f64,
}

impl Default for Guardrails {
    fn default() -> Self {
        Guardrails { max_lag_s: 5.0, catchup_timeout_s: 300.0 }
    }
}

/// One server as coldswap sees it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerStatus {
    /// `primary` or `replica`.
    pub name: String,
    /// host:port.
    pub address: String,
    /// Whether coldswap could log in.
    pub reachable: bool,
    /// `SELECT VERSION()`.
    pub version: Option<String>,
    /// `@@read_only`.
    pub read_only: Option<bool>,
    /// The executed GTID set or position.
    pub gtid_position: Option<String>,
    /// Its replica status, when it replicates.
    pub replication: Option<ReplicaStatus>,
    /// Why it could not be asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What a hook did, checked.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HookOutcome {
    /// The command run.
    pub command: String,
    /// How long it ran.
    pub seconds: f64,
    /// Whether coldswap verified the outcome (a new version, a writable new primary).
    pub verified: bool,
    /// The replica's version before the hook.
    pub version_before: Option<String>,
    /// The replica's version after it.
    pub version_after: Option<String>,
    /// Timed steps: the hook, then each check.
    pub steps: Vec<Step>,
}

/// Sends SIGTERM to a hook's process group when dropped while it runs.
struct StopGroup(Option<u32>);

impl Drop for StopGroup {
    fn drop(&mut self) {
        if let Some(g) = self.0 {
            crate::pid::signal_group(g, libc::SIGTERM);
        }
    }
}

/// Loopback, or an explicit opt-in.
pub fn check_address(addr: &str, allow_remote: bool) -> Result<SocketAddr> {
    let a = addr
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve '{addr}' (expected host:port)"))?
        .next()
        .ok_or_else(|| anyhow!("'{addr}' resolves to no address"))?;
    if !a.ip().is_loopback() && !allow_remote {
        bail!("refusing to touch {addr} ({}): it is not on loopback; set allow_remote = true in the file or pass --allow-remote", a.ip());
    }
    Ok(a)
}

/// Servers the user runs, as named in an external config.
pub struct External {
    /// The checked config.
    pub cfg: ExternalConfig,
    primary: SocketAddr,
    replica: SocketAddr,
    client: Option<SocketAddr>,
    password: String,
    app_password: std::result::Result<String, String>,
}

impl External {
    /// Read and check the file; nothing is contacted before the addresses pass.
    pub fn load(path: &Path, allow_remote_flag: bool) -> Result<External> {
        let text = std::fs::read_to_string(path).map_err(|e| anyhow!("{}: cannot read: {e}", path.display()))?;
        let cfg: ExternalConfig = toml::from_str(&text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].bytes().filter(|b| *b == b'\n').count() + 1)
                .unwrap_or(0);
            anyhow!("{}:{line}: {}", path.display(), e.message().trim())
        })?;
        let allow = cfg.allow_remote || allow_remote_flag;
        let primary = check_address(&cfg.primary.address, allow)?;
        let replica = check_address(&cfg.replica.address, allow)?;
        if primary == replica {
            bail!("{}: primary and replica are the same server ({primary})", path.display());
        }
        let client = cfg.client_address.as_deref().map(|a| check_address(a, allow)).transpose()?;
        if !cfg.schema.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') || cfg.schema.is_empty() {
            bail!("{}: schema '{}': letters, digits and _ only", path.display(), cfg.schema);
        }
        let var = |name: &str| {
            std::env::var(name)
                .map_err(|_| anyhow!("the password variable {name} named in {} is not set", path.display()))
        };
        let password = var(&cfg.credentials.password_env)?;
        // Read now, needed only by the load (`status` and the hooks run without it).
        let app_password = match &cfg.app_credentials {
            Some(c) => var(&c.password_env),
            None => Ok(password.clone()),
        }
        .map_err(|e| e.to_string());
        Ok(External { cfg, primary, replica, client, password, app_password })
    }

    /// The primary's (or the replica's) address.
    pub fn addr(&self, replica: bool) -> SocketAddr {
        if replica {
            self.replica
        } else {
            self.primary
        }
    }

    /// How coldswap logs in to the primary (or the replica): the config's
    /// user, the password from its environment variable.
    pub fn options(&self, replica: bool) -> sqlx::mysql::MySqlConnectOptions {
        let a = self.addr(replica);
        sql::tcp_options(&a.ip().to_string(), a.port(), &self.cfg.credentials.user, &self.password)
    }

    /// The user's own client address (DNS name or VIP), when the file names one.
    pub fn client_addr(&self) -> Option<SocketAddr> {
        self.client
    }

    /// How the load logs in at `addr`: the app credentials, or the admin ones.
    pub fn app_options(&self, addr: SocketAddr) -> Result<sqlx::mysql::MySqlConnectOptions> {
        let user = self.cfg.app_credentials.as_ref().unwrap_or(&self.cfg.credentials).user.clone();
        let pw = self.app_password.as_ref().map_err(|e| anyhow!("{e}"))?;
        Ok(sql::tcp_options(&addr.ip().to_string(), addr.port(), &user, pw))
    }

    /// coldswap's own login (the config's credentials) at another address:
    /// the endpoint clients use.
    pub fn admin_options_at(&self, addr: SocketAddr) -> sqlx::mysql::MySqlConnectOptions {
        sql::tcp_options(&addr.ip().to_string(), addr.port(), &self.cfg.credentials.user, &self.password)
    }

    /// A connection to the primary (or the replica), naming which on failure.
    pub async fn conn(&self, replica: bool) -> Result<MySqlConnection> {
        let a = self.addr(replica);
        let o = self.options(replica);
        sql::connect(&o, Duration::from_secs(10))
            .await
            .with_context(|| format!("cannot connect to the {} at {a}", if replica { "replica" } else { "primary" }))
    }

    /// The server's dialect and `SELECT VERSION()`.
    pub async fn dialect(c: &mut MySqlConnection) -> Result<(Dialect, String)> {
        let v = sql::query_text(c, "SELECT VERSION()").await?.unwrap_or_default();
        let (f, ver) = parse_server_version(&v).ok_or_else(|| anyhow!("cannot read the server version '{v}'"))?;
        Ok((Dialect::new(f, ver), v))
    }

    /// Both servers: version, read-only, GTID position, replication.
    pub async fn status(&self) -> Vec<ServerStatus> {
        let mut out = Vec::new();
        for (name, replica) in [("primary", false), ("replica", true)] {
            let mut s = ServerStatus {
                name: name.into(),
                address: self.addr(replica).to_string(),
                reachable: false,
                version: None,
                read_only: None,
                gtid_position: None,
                replication: None,
                error: None,
            };
            match self.conn(replica).await {
                Ok(mut c) => {
                    s.reachable = true;
                    match Self::dialect(&mut c).await {
                        Ok((d, _)) => {
                            let f = replication::server_facts(&mut c, &d).await;
                            s.version = f.version;
                            s.read_only = f.read_only;
                            s.gtid_position = f.gtid_position;
                            s.replication = f.replication;
                        }
                        Err(e) => s.error = Some(format!("{e:#}")),
                    }
                    sql::close(c).await;
                }
                Err(e) => s.error = Some(format!("{e:#}")),
            }
            out.push(s);
        }
        out
    }

    /// The replica is replicating, healthy and within the lag limit (the
    /// same guardrail as coldswap's own clusters).
    pub async fn guard(&self) -> Result<()> {
        let mut c = self.conn(true).await?;
        let (d, _) = Self::dialect(&mut c).await?;
        let st = replication::replica_status(&mut c, &d).await?;
        sql::close(c).await;
        check_promotable(
            st.as_ref(),
            self.cfg.guardrails.max_lag_s,
            &format!("the replica at {}", self.replica),
            &format!("the primary at {}", self.primary),
        )
        .map_err(|r| anyhow!("refusing: {r}"))
    }

    /// Run a hook in its own process group; one that overruns its timeout
    /// is killed with everything it started, not only its shell.
    async fn run_hook(&self, what: &str, cmd: &str) -> Result<f64> {
        let t = Instant::now();
        let mut c = tokio::process::Command::new("sh");
        c.arg("-c")
            .arg(cmd)
            .env("COLDSWAP_PRIMARY", self.primary.to_string())
            .env("COLDSWAP_REPLICA", self.replica.to_string())
            .env("COLDSWAP_HOOK", what)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let child = c.spawn().with_context(|| format!("cannot run the {what} hook"))?;
        let group = child.id();
        // Dropped before the hook ends (Ctrl-C, SIGTERM): stop everything it started.
        let mut guard = StopGroup(group);
        let out =
            match tokio::time::timeout(Duration::from_secs_f64(self.cfg.hooks.timeout_s), child.wait_with_output())
                .await
            {
                Ok(out) => out.with_context(|| format!("cannot run the {what} hook"))?,
                Err(_) => {
                    if let Some(g) = group {
                        crate::pid::signal_group(g, libc::SIGKILL);
                    }
                    bail!(
                        "the {what} hook did not finish within {} s; it was killed with everything it started",
                        self.cfg.hooks.timeout_s
                    );
                }
            };
        guard.0 = None;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            let line = err.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string();
            bail!("the {what} hook failed ({}): {line}", out.status);
        }
        Ok(t.elapsed().as_secs_f64())
    }

    /// `SELECT VERSION()` of the primary (or the replica), None when it does not answer.
    pub async fn version(&self, replica: bool) -> Option<String> {
        let mut c = self.conn(replica).await.ok()?;
        let v = sql::query_text(&mut c, "SELECT VERSION()").await.ok().flatten();
        sql::close(c).await;
        v
    }

    /// Upgrade the replica through the hook, then check it answers, runs a
    /// different version, replicates and has caught up with the primary.
    pub async fn upgrade(&self) -> Result<HookOutcome> {
        let cmd = self.cfg.hooks.upgrade.clone().ok_or_else(|| anyhow!("no upgrade hook: set hooks.upgrade"))?;
        let mut steps = Steps::default();
        let before = self.version(true).await;
        let t = Instant::now();
        let secs = self.run_hook("upgrade", &cmd).await?;
        steps.push("upgrade_hook", t);
        let t = Instant::now();
        let deadline = Instant::now() + Duration::from_secs_f64(self.cfg.guardrails.catchup_timeout_s);
        let after = loop {
            if let Some(v) = self.version(true).await {
                break v;
            }
            if Instant::now() > deadline {
                bail!("the replica at {} does not answer after the upgrade hook", self.replica);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        steps.push("replica_answers", t);
        if Some(&after) == before.as_ref() {
            bail!("the upgrade hook succeeded but the replica still runs {after}");
        }
        let t = Instant::now();
        self.wait_caught_up(deadline).await?;
        steps.push("replica_caught_up", t);
        Ok(HookOutcome {
            command: cmd,
            seconds: secs,
            verified: true,
            version_before: before,
            version_after: Some(after),
            steps: steps.0,
        })
    }

    /// The replica has applied everything the primary had executed when we asked.
    pub async fn wait_caught_up(&self, deadline: Instant) -> Result<()> {
        let mut p = self.conn(false).await?;
        let (dp, _) = Self::dialect(&mut p).await?;
        let pos = sql::query_text(&mut p, dp.gtid_executed_query()).await?.unwrap_or_default();
        sql::close(p).await;
        let mut r = self.conn(true).await?;
        let (dr, _) = Self::dialect(&mut r).await?;
        let left = deadline.saturating_duration_since(Instant::now()).as_secs_f64().max(1.0);
        let v = sql::query_i64(&mut r, &dr.wait_gtid_query(&pos, left)).await?;
        let st = replication::replica_status(&mut r, &dr).await?;
        sql::close(r).await;
        if v != 0 {
            bail!("the replica did not reach the primary's position {pos} within {left:.0} s");
        }
        match st {
            Some(s) if s.healthy() => Ok(()),
            Some(s) => bail!("the replica caught up but its replication is broken: {}", s.problem()),
            None => bail!("the replica is not replicating after the upgrade"),
        }
    }

    /// Promote through the hook after the guardrails; then verify that the
    /// replica takes writes and the old primary refuses them (or is gone).
    pub async fn promote(&self) -> Result<HookOutcome> {
        let cmd = self.cfg.hooks.promote.clone().ok_or_else(|| anyhow!("no promote hook: set hooks.promote"))?;
        let mut steps = Steps::default();
        let t = Instant::now();
        self.guard().await?;
        steps.push("check_replica", t);
        let t = Instant::now();
        let secs = self.run_hook("promote", &cmd).await?;
        steps.push("promote_hook", t);
        let t = Instant::now();
        let mut r = self.conn(true).await?;
        let ro = sql::query_i64(&mut r, "SELECT @@GLOBAL.read_only").await?;
        let (d, _) = Self::dialect(&mut r).await?;
        let still = replication::replica_status(&mut r, &d).await?;
        sql::close(r).await;
        if ro != 0 {
            bail!("the promote hook succeeded but the replica at {} is still read-only", self.replica);
        }
        if let Some(s) = still {
            if matches!(s.io(), Thread::Running | Thread::Connecting) || s.sql() == Thread::Running {
                bail!("the promote hook succeeded but the replica at {} still replicates", self.replica);
            }
        }
        let old_ro = match self.conn(false).await {
            Ok(mut p) => {
                let v = sql::query_i64(&mut p, "SELECT @@GLOBAL.read_only").await.ok();
                sql::close(p).await;
                v
            }
            Err(_) => None,
        };
        if old_ro == Some(0) {
            bail!("split brain: after the promote hook both {} and {} take writes", self.primary, self.replica);
        }
        steps.push("verify", t);
        Ok(HookOutcome {
            command: cmd,
            seconds: secs,
            verified: true,
            version_before: None,
            version_after: self.version(true).await,
            steps: steps.0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_example_parses_with_its_commented_keys() {
        let text = include_str!("../../../docs/external.example.toml");
        let c: ExternalConfig = toml::from_str(text).unwrap();
        assert!(!c.allow_writes && c.schema == "coldswap_drill" && c.client_address.is_none());
        // Uncomment `# key = value` and `# [table]` lines.
        let setting = |r: &&str| {
            r.starts_with('[')
                || r.split_once(" = ").is_some_and(|(k, _)| k.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        };
        let on: Vec<&str> = text.lines().map(|l| l.strip_prefix("# ").filter(setting).unwrap_or(l)).collect();
        let on = on.join("\n");
        let c: ExternalConfig = toml::from_str(&on).unwrap();
        assert_eq!(c.client_address.as_deref(), Some("db-staging.internal:3306"));
        assert_eq!(c.app_credentials.unwrap().user, "api");
    }

    #[test]
    fn remote_addresses_need_an_opt_in() {
        assert!(check_address("127.0.0.1:3306", false).is_ok());
        let e = check_address("10.1.2.3:3306", false).unwrap_err().to_string();
        assert!(e.contains("not on loopback") && e.contains("allow_remote"), "{e}");
        assert!(check_address("10.1.2.3:3306", true).is_ok());
    }
}
