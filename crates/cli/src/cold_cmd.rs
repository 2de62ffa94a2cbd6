//! `coldswap cold ...` and `coldswap warm`.

use super::*;
use coldswap_nemesis::cold::{self, ColdConfig};
use coldswap_nemesis::warm::{self, Technique, WarmInputs};

/// Resolve --node to an index.
pub fn pick_node(cluster: &Cluster, node: Option<&str>) -> Result<usize> {
    match node {
        None => cluster.replica_index().or_else(|_| cluster.primary_index()),
        Some("primary") => cluster.primary_index(),
        Some("replica") => cluster.replica_index(),
        Some(name) => cluster
            .state
            .nodes
            .iter()
            .position(|n| n.name == name)
            .ok_or_else(|| anyhow::anyhow!("no node '{name}' (primary, replica, node1, node2)")),
    }
}

fn cold_config(a: &ColdArgs) -> Result<ColdConfig> {
    let (lo, hi) = cold::parse_latency_spec(&a.latency)?;
    let c = ColdConfig {
        block_kib: a.block_kib,
        latency_min_us: lo,
        latency_max_us: hi,
        concurrency: a.concurrency,
        hydrate_mib_s: a.hydrate_mib_s,
    };
    c.validate()?;
    Ok(c)
}

pub async fn cold(cmd: ColdCmd) -> Result<u8> {
    match cmd {
        ColdCmd::Reset { target, cfg, json } => {
            let cfg = cold_config(&cfg)?;
            let mut cluster = Cluster::open(&target.run.run_dir)?;
            let i = pick_node(&cluster, target.node.as_deref())?;
            let t = std::time::Instant::now();
            let vol = signals::interruptible(cold::make_cold(&mut cluster, i, &cfg, true)).await?;
            let c = vol.counters();
            if json {
                println!(
                    "{}",
                    serde_json::json!({"node": cluster.node(i).name, "seconds": t.elapsed().as_secs_f64(), "config": cfg, "counters": c})
                );
            } else {
                println!(
                    "{} restarted on a fresh restore: every block cold, {}..{} us per first touch, {} in flight, {} KiB blocks ({:.2} s)",
                    cluster.node(i).name,
                    cfg.latency_min_us,
                    cfg.latency_max_us,
                    cfg.concurrency,
                    cfg.block_kib,
                    t.elapsed().as_secs_f64()
                );
            }
            cluster.detach();
            Ok(0)
        }
        ColdCmd::Status { target, json } => {
            let cluster = Cluster::open(&target.run.run_dir)?;
            let i = pick_node(&cluster, target.node.as_deref())?;
            let on = cold::is_cold(&cluster, i);
            let vol = cold::Volume::attach(&cold::state_dir_of(&cluster, i))?;
            let c = vol.counters();
            if json {
                println!("{}", serde_json::json!({"node": cluster.node(i).name, "emulated": on, "counters": c}));
            } else {
                println!(
                    "{}: emulator {} ({}..{} us, {} in flight, {} KiB blocks)",
                    cluster.node(i).name,
                    if on && c.enabled { "on" } else { "off" },
                    c.latency_min_us,
                    c.latency_max_us,
                    c.concurrency,
                    c.block_size / 1024
                );
                println!(
                    "  reads: {} matched ({} warm, {} cold), {} elsewhere; {} blocks fetched, {:.2} s waited, {} slot waits (max {} in flight); {} blocks warmed by writes, {} by hydration",
                    c.matched_reads,
                    c.warm_reads,
                    c.cold_reads,
                    c.unmatched_reads,
                    c.cold_blocks,
                    c.wait_seconds,
                    c.slot_waits,
                    c.max_inflight,
                    c.written_blocks,
                    c.hydrated_blocks
                );
            }
            cluster.detach();
            Ok(0)
        }
        ColdCmd::Off { target } => {
            let mut cluster = Cluster::open(&target.run.run_dir)?;
            let i = pick_node(&cluster, target.node.as_deref())?;
            signals::interruptible(cold::make_normal(&mut cluster, i)).await?;
            println!("{} restarted on plain storage", cluster.node(i).name);
            cluster.detach();
            Ok(0)
        }
    }
}

pub async fn warm(
    target: NodeArg,
    technique: &str,
    from: Option<String>,
    tables: Vec<String>,
    parallel: usize,
    json: bool,
) -> Result<u8> {
    let technique: Technique = technique.parse()?;
    let cluster = Cluster::open(&target.run.run_dir)?;
    let i = pick_node(&cluster, target.node.as_deref())?;
    let dump_from = match from.as_deref() {
        Some(n) => Some(pick_node(&cluster, Some(n))?),
        None => (0..cluster.state.nodes.len()).find(|j| *j != i && cluster.node_running(*j)),
    };
    let tables = if tables.is_empty() {
        coldswap_dataset::BASE_ROWS.iter().map(|(d, t, _)| (d.to_string(), t.to_string())).collect()
    } else {
        tables
            .iter()
            .map(|t| {
                t.split_once('.')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| anyhow::anyhow!("table '{t}' must be written db.table"))
            })
            .collect::<Result<Vec<_>>>()?
    };
    let inputs = WarmInputs { dump_from, dump: None, tables, parallel, dump_pct: 100 };
    let rep = signals::interruptible(warm::warm(&cluster, i, technique, &inputs)).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&rep)?);
    } else {
        println!(
            "{}: warmed with {} in {:.2} s, {} blocks fetched; {}",
            rep.node, rep.technique, rep.seconds, rep.blocks_fetched, rep.detail
        );
    }
    cluster.detach();
    Ok(0)
}
