//! `coldswap external`: servers the user runs, named in a file.

use anyhow::Result;
use clap::{Args, Subcommand};
use coldswap_db::external::External;
use std::path::PathBuf;

#[derive(Args)]
pub struct ExternalArgs {
    /// The file naming the servers, credentials (by env variable) and hooks;
    /// see docs/external.example.toml.
    #[arg(long, default_value = "external.toml", global = true)]
    config: PathBuf,
    /// Allow servers that are not on loopback.
    #[arg(long, global = true)]
    allow_remote: bool,
    /// Machine-readable output.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: ExternalCmd,
}

#[derive(Subcommand)]
enum ExternalCmd {
    /// Both servers: version, read-only, GTID position, replication.
    Status,
    /// Upgrade the replica through hooks.upgrade, then check it answers,
    /// runs a new version and has caught up.
    Upgrade,
    /// Promote the replica through hooks.promote after the guardrails, then
    /// check it takes writes and the old primary does not.
    Promote,
}

pub async fn run(a: ExternalArgs) -> Result<u8> {
    let ext = External::load(&a.config, a.allow_remote)?;
    match a.cmd {
        ExternalCmd::Status => {
            let st = ext.status().await;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&st)?);
            } else {
                for s in &st {
                    let repl = match &s.replication {
                        Some(r) if r.healthy() => format!(
                            "replicating, {} s behind",
                            r.seconds_behind.map(|x| x.to_string()).unwrap_or("?".into())
                        ),
                        Some(r) => format!("replication BROKEN: {}", r.problem()),
                        None => "not replicating".into(),
                    };
                    match &s.error {
                        Some(e) => println!("{:<8} {:<22} unreachable: {e}", s.name, s.address),
                        None => println!(
                            "{:<8} {:<22} {} read_only={} {}",
                            s.name,
                            s.address,
                            s.version.clone().unwrap_or_default(),
                            s.read_only.map(|x| x.to_string()).unwrap_or("?".into()),
                            repl
                        ),
                    }
                }
            }
            Ok(if st.iter().all(|s| s.reachable) { 0 } else { 1 })
        }
        ExternalCmd::Upgrade | ExternalCmd::Promote => {
            let upgrade = matches!(a.cmd, ExternalCmd::Upgrade);
            let o = if upgrade { ext.upgrade().await? } else { ext.promote().await? };
            if a.json {
                println!("{}", serde_json::to_string_pretty(&o)?);
            } else {
                for s in &o.steps {
                    println!("  {:<20} {:>8.2} s", s.name, s.seconds);
                }
                if upgrade {
                    println!(
                        "replica upgraded: {} -> {}",
                        o.version_before.clone().unwrap_or_default(),
                        o.version_after.clone().unwrap_or_default()
                    );
                } else {
                    println!("promoted and verified: the replica takes writes, the old primary does not; swap primary and replica in {}", a.config.display());
                }
            }
            Ok(0)
        }
    }
}
