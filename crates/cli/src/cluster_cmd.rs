//! `coldswap cluster ...`

use super::*;
use coldswap_db::Record;

fn print_record(rec: &Record, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(rec)?);
        return Ok(());
    }
    println!("{} ({} backend, run dir {})", rec.command, rec.backend, rec.run_dir.display());
    for n in &rec.nodes {
        println!("  {:<6} {:<8} {}:{:<5} {}", n.name, n.role.to_string(), n.address, n.port, n.version);
    }
    for s in &rec.steps {
        println!("  step {:<24} {:>8.3} s", s.name, s.seconds);
    }
    if let Some(p) = &rec.promotion {
        println!(
            "  promoted {} (was replica); {} fenced; writes unavailable for {:.3} s",
            p.new_primary, p.old_primary, p.write_unavailable_seconds
        );
    }
    Ok(())
}

pub async fn run(cmd: ClusterCmd) -> Result<u8> {
    match cmd {
        ClusterCmd::Up { run, from, to, backend, ports, buffer_pool_mb, foreground, json } => {
            let mut opts = UpOptions::new(&run.run_dir, &from);
            opts.to = Some(to);
            opts.backend = backend;
            opts.ports = ports;
            opts.buffer_pool_mb = buffer_pool_mb;
            opts.persistent = !foreground;
            let (cluster, steps) = signals::interruptible(Cluster::up(opts)).await?;
            print_record(&cluster.record("up", &steps, None), json)?;
            if foreground {
                use std::io::Write;
                let _ = std::io::stdout().flush();
                let sig = signals::wait().await;
                cluster.down(false).await?;
                return Ok(signals::exit_code(sig) as u8);
            }
            cluster.detach();
            Ok(0)
        }
        ClusterCmd::Upgrade { run, to, json } => {
            let mut cluster = Cluster::open(&run.run_dir)?;
            let steps = signals::interruptible(cluster.upgrade(to.as_deref())).await?;
            print_record(&cluster.record("upgrade", &steps, None), json)?;
            cluster.detach();
            Ok(0)
        }
        ClusterCmd::Promote { run, max_lag, catchup_timeout, demote, json } => {
            let mut cluster = Cluster::open(&run.run_dir)?;
            let opts = PromoteOptions { max_lag_s: max_lag, catchup_timeout_s: catchup_timeout, demote };
            let (outcome, steps) = signals::interruptible(cluster.promote(&opts, |_| {})).await?;
            print_record(&cluster.record("promote", &steps, Some(outcome)), json)?;
            cluster.detach();
            Ok(0)
        }
        ClusterCmd::Status { run, json } => {
            let cluster = Cluster::open(&run.run_dir)?;
            let st = cluster.status().await;
            if json {
                println!("{}", serde_json::to_string_pretty(&st)?);
            } else {
                for s in &st {
                    let repl = match &s.replication {
                        Some(r) => format!(
                            "replicating (IO {}, SQL {}, {} s behind)",
                            r.io_running,
                            r.sql_running,
                            r.seconds_behind.map(|x| x.to_string()).unwrap_or_else(|| "?".into())
                        ),
                        None => "not replicating".into(),
                    };
                    println!(
                        "{:<6} {:<8} {:<16} {:<8} {} read_only={} {}",
                        s.name,
                        s.role.to_string(),
                        s.address,
                        if s.running { "running" } else { "stopped" },
                        s.version.clone().unwrap_or_default(),
                        s.read_only.map(|b| b.to_string()).unwrap_or_else(|| "?".into()),
                        repl
                    );
                }
            }
            cluster.detach();
            let all_up = st.iter().all(|s| s.running && s.error.is_none());
            Ok(if all_up { 0 } else { 1 })
        }
        ClusterCmd::Down { run, keep, json } => {
            let cleaned = coldswap_db::cluster::sweep_stale();
            let dir = coldswap_db::cluster::absolute(&run.run_dir);
            if !dir.join("cluster.json").exists() {
                if cleaned.is_empty() {
                    eprintln!("coldswap: no cluster in {}", dir.display());
                }
                return Ok(0);
            }
            let cluster = Cluster::open(&dir)?;
            let rec_nodes = cluster.record("down", &Default::default(), None);
            let steps = cluster.down(keep).await?;
            let mut rec = rec_nodes;
            rec.steps = steps.0.clone();
            rec.total_seconds = steps.0.iter().map(|s| s.seconds).sum();
            for n in rec.nodes.iter_mut() {
                n.role = coldswap_db::Role::Stopped;
            }
            print_record(&rec, json)?;
            Ok(0)
        }
    }
}
