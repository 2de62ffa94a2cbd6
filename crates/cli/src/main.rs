//! `coldswap`: the command line. Parsing and printing only; the work is in
//! the crates (db, client, nemesis, checker, drill).

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use coldswap_db::{BackendKind, Cluster, PromoteOptions, UpOptions};
use coldswap_signals as signals;
use std::path::PathBuf;
use std::process::ExitCode;

mod cluster_cmd;
mod cold_cmd;
mod drill_cmd;
mod drill_set;
mod external_cmd;
mod gate_cmd;
mod load_cmd;
mod mix_cmd;
mod report_cmd;
mod schema_cmd;
mod seed_cmd;
mod version_cmd;

#[derive(Parser)]
#[command(
    name = "coldswap",
    version,
    about = "Rehearse a MySQL upgrade-by-replica-promotion under live load, on cold storage"
)]
struct Cli {
    /// More logging (-v debug, -vv trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Only warnings and errors on stderr.
    #[arg(short, long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start, upgrade, promote, inspect and stop a primary + replica cluster.
    #[command(subcommand)]
    Cluster(ClusterCmd),
    /// Server distributions in the per-user cache.
    #[command(subcommand)]
    Dist(DistCmd),
    /// The whole rehearsal: up, seed, baseline, upgrade, cold switchover, cold, warm-up, warm, report.
    Drill(drill_cmd::DrillArgs),
    /// Step the load up until the SLO breaks, warm and then cold: the
    /// capacity a cold switchover leaves, and the headroom it needs.
    Capacity(drill_cmd::CapacityArgs),
    /// One drill per warm-up technique (none, buffer-pool at 25 % and 100 %,
    /// volume read, prefetch, background hydration, no penalty), the replica
    /// warmed before the switchover, compared on time to warm: warmups.html/.json/.md.
    Warmups(drill_cmd::WarmupsArgs),
    /// GO or NO-GO for promoting the replica now: replication and lag, full
    /// scans the load would send, and how much of the primary's hot set the
    /// replica's buffer pool holds. Exits 0 (GO), 5 (NO-GO) or 1.
    Gate(gate_cmd::GateArgs),
    /// Servers you already run (a staging primary and replica): status, and
    /// upgrade and promotion through your own hook commands.
    External(external_cmd::ExternalArgs),
    /// What the new version changes apart from being cold, on a primary and
    /// its upgraded, caught-up replica: plans, results, settings. Exits 3 on
    /// a result difference.
    VersionDiff(version_cmd::VersionDiffArgs),
    /// Per-transaction deltas between earlier good drill reports and a new one;
    /// exits 4 on regressions beyond the run-to-run noise.
    Compare(report_cmd::CompareArgs),
    /// Work on results: merge shards.
    #[command(subcommand)]
    Report(report_cmd::ReportCmd),
    /// Run a load mix against a cluster (through a swappable endpoint) or an endpoint.
    Load(load_cmd::LoadArgs),
    /// Mix files: import one from a slow query log.
    #[command(subcommand)]
    Mix(mix_cmd::MixCmd),
    /// Emulated cold storage (first-touch penalty) of a node.
    #[command(subcommand)]
    Cold(ColdCmd),
    /// Warm a node's storage and buffer pool with a technique, timed.
    Warm {
        #[command(flatten)]
        target: NodeArg,
        /// none, buffer-pool, volume-read or prefetch.
        #[arg(long)]
        technique: String,
        /// buffer-pool: node whose buffer pool is dumped (default: the other node).
        #[arg(long)]
        from: Option<String>,
        /// prefetch: tables to scan, as db.table (default: every table of api and import_queue).
        #[arg(long, value_delimiter = ',')]
        tables: Vec<String>,
        /// Parallel readers (volume-read, prefetch).
        #[arg(long, default_value_t = 8)]
        parallel: usize,
        #[arg(long)]
        json: bool,
    },
    /// Load the deterministic API and import-queue dataset into the primary.
    Seed {
        #[command(flatten)]
        run: RunDirArg,
        /// Dataset scale: 1 is about 1 GiB on disk; tests use 0.01-0.05.
        #[arg(long, value_parser = parse_scale_arg, allow_negative_numbers = true)]
        scale: f64,
        /// Drop and reseed databases that already hold data.
        #[arg(long)]
        replace: bool,
        /// A dataset shaped like yours (the directory `coldswap schema
        /// import` wrote) instead of the built-in API dataset.
        #[arg(long, value_name = "DIR")]
        dataset: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Schemas: import one, shaped like yours, from a server you run.
    #[command(subcommand)]
    Schema(schema_cmd::SchemaCmd),
}

/// Cold storage on a running cluster.
#[derive(Subcommand)]
enum ColdCmd {
    /// A fresh snapshot restore: restart the node behind the first-touch
    /// emulator with every block cold and an empty buffer pool.
    Reset {
        #[command(flatten)]
        target: NodeArg,
        #[command(flatten)]
        cfg: ColdArgs,
        #[arg(long)]
        json: bool,
    },
    /// Counters of the node's emulated volume.
    Status {
        #[command(flatten)]
        target: NodeArg,
        #[arg(long)]
        json: bool,
    },
    /// Restart the node on plain storage (no emulator).
    Off {
        #[command(flatten)]
        target: NodeArg,
    },
}

#[derive(Args, Clone)]
pub struct NodeArg {
    #[command(flatten)]
    run: RunDirArg,
    /// primary, replica, or a node name (node1, node2). Default: the replica
    /// if there is one, else the primary.
    #[arg(long)]
    node: Option<String>,
}

#[derive(Args, Clone)]
pub struct ColdArgs {
    /// First-touch latency: fixed (1ms) or a range (3ms..30ms).
    #[arg(long, default_value = "3ms..30ms")]
    latency: String,
    /// Volume block size, KiB.
    #[arg(long, default_value_t = 64)]
    block_kib: u64,
    /// First-touch fetches in flight at once.
    #[arg(long, default_value_t = 8)]
    concurrency: u32,
    /// Background hydration rate, MiB/s (0: off).
    #[arg(long, default_value_t = 0.0)]
    hydrate_mib_s: f64,
}

fn parse_scale_arg(s: &str) -> std::result::Result<f64, String> {
    coldswap_dataset::parse_scale(s).map_err(|e| e.to_string())
}

#[derive(Args, Clone)]
pub struct RunDirArg {
    /// The cluster's run dir (state, datadirs, logs).
    #[arg(long, env = "COLDSWAP_RUN_DIR", default_value = ".coldswap/cluster")]
    run_dir: PathBuf,
}

#[derive(Subcommand)]
enum ClusterCmd {
    /// Start a primary and a GTID replica on the from-version.
    Up {
        #[command(flatten)]
        run: RunDirArg,
        /// Server version to start (mariadb-10.11.18, or a tarball directory).
        #[arg(long, default_value = "mariadb-10.11.18")]
        from: String,
        /// Version a later upgrade goes to (checked and fetched now).
        #[arg(long, default_value = "mariadb-10.11.19")]
        to: String,
        /// Where servers run.
        #[arg(long, default_value = "process", value_parser = parse_backend)]
        backend: BackendKind,
        /// Fixed loopback ports, primary then replica (free ports otherwise).
        #[arg(long, value_parser = parse_ports)]
        ports: Option<(u16, u16)>,
        /// InnoDB buffer pool per server, MiB.
        #[arg(long, default_value_t = 128)]
        buffer_pool_mb: u32,
        /// Stay in the foreground and tear the cluster down on Ctrl-C/SIGTERM
        /// (if this process is killed, the next coldswap run cleans up).
        #[arg(long)]
        foreground: bool,
        /// Print a machine-readable record on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Upgrade the replica in place to the to-version.
    Upgrade {
        #[command(flatten)]
        run: RunDirArg,
        /// Version to upgrade to (default: the one given to `up`).
        #[arg(long)]
        to: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Planned switchover: fence the primary, wait for catch-up, promote the replica.
    Promote {
        #[command(flatten)]
        run: RunDirArg,
        /// Refuse when the replica lags more than this many seconds.
        #[arg(long, default_value_t = 5.0)]
        max_lag: f64,
        /// How long to wait for GTID catch-up before rolling back, seconds.
        #[arg(long, default_value_t = 10.0)]
        catchup_timeout: f64,
        /// Make the old primary a replica of the new one.
        #[arg(long)]
        demote: bool,
        #[arg(long)]
        json: bool,
    },
    /// Roles, versions, read-only state and replication of each node.
    Status {
        #[command(flatten)]
        run: RunDirArg,
        #[arg(long)]
        json: bool,
    },
    /// Stop every server and remove the run dir.
    Down {
        #[command(flatten)]
        run: RunDirArg,
        /// Keep the run dir (datadirs, logs).
        #[arg(long)]
        keep: bool,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum DistCmd {
    /// Download and unpack server versions into the cache (idempotent).
    Fetch {
        #[arg(required = true)]
        versions: Vec<String>,
    },
    /// Versions coldswap can fetch, and what is cached.
    List,
}

fn parse_backend(s: &str) -> std::result::Result<BackendKind, String> {
    s.parse()
}

fn parse_ports(s: &str) -> std::result::Result<(u16, u16), String> {
    let v: Vec<&str> = s.split(',').collect();
    if v.len() != 2 {
        return Err(format!("expected two ports as PRIMARY,REPLICA, got '{s}'"));
    }
    let p = |x: &str| x.trim().parse::<u16>().map_err(|_| format!("'{x}' is not a port number"));
    Ok((p(v[0])?, p(v[1])?))
}

fn init_logging(verbose: u8, quiet: bool) {
    use tracing_subscriber::EnvFilter;
    let default = if quiet {
        "warn"
    } else {
        match verbose {
            0 => "info,sqlx=warn,sqlx::pool=error,goose=warn,testcontainers=warn,bollard=warn",
            1 => "debug,sqlx=info,hyper=info,reqwest=info,bollard=info",
            _ => "trace",
        }
    };
    let filter = EnvFilter::try_from_env("COLDSWAP_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose, cli.quiet);
    // Worker threads: on a small machine the load generator shares the cores
    // with the servers it drives, and fewer threads wake each other less.
    let threads = std::env::var("COLDSWAP_THREADS").ok().and_then(|v| v.parse::<usize>().ok()).unwrap_or(0);
    let built = if threads == 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        if threads > 1 {
            b.worker_threads(threads);
        }
        b.enable_all().build()
    };
    let rt = match built {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("coldswap: error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let r = rt.block_on(async {
        signals::install();
        run(cli.cmd).await
    });
    match r {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            if let Some(i) = e.downcast_ref::<signals::Interrupted>() {
                eprintln!("coldswap: {i}");
                return ExitCode::from(signals::exit_code(i.0) as u8);
            }
            eprintln!("coldswap: error: {}", one_line(&e));
            ExitCode::from(1)
        }
    }
}

/// An error chain on one line.
fn one_line(e: &anyhow::Error) -> String {
    format!("{e:#}").replace('\n', " ")
}

async fn run(cmd: Cmd) -> Result<u8> {
    match cmd {
        Cmd::Cluster(c) => cluster_cmd::run(c).await,
        Cmd::Cold(c) => cold_cmd::cold(c).await,
        Cmd::Load(a) => load_cmd::run(a).await,
        Cmd::Mix(c) => mix_cmd::run(c).await,
        Cmd::Drill(a) => drill_cmd::run(a).await,
        Cmd::Capacity(a) => drill_cmd::capacity(a).await,
        Cmd::Warmups(a) => drill_cmd::warmups(a).await,
        Cmd::Gate(a) => gate_cmd::run(a).await,
        Cmd::Compare(a) => report_cmd::compare(a),
        Cmd::External(a) => external_cmd::run(a).await,
        Cmd::VersionDiff(a) => version_cmd::run(a).await,
        Cmd::Report(c) => report_cmd::report(c),
        Cmd::Warm { target, technique, from, tables, parallel, json } => {
            cold_cmd::warm(target, &technique, from, tables, parallel, json).await
        }
        Cmd::Seed { run, scale, replace, dataset, json } => {
            seed_cmd::run(&run.run_dir, scale, replace, dataset.as_deref(), json).await
        }
        Cmd::Schema(c) => schema_cmd::run(c).await,
        Cmd::Dist(DistCmd::Fetch { versions }) => {
            for v in versions {
                let d = tokio::task::spawn_blocking(move || coldswap_db::dist::resolve(&v)).await??;
                println!("{}\t{}\t{}", d.spec, d.version_string, d.basedir.display());
            }
            Ok(0)
        }
        Cmd::Dist(DistCmd::List) => {
            for pin in coldswap_db::dist::DEBIAN_PINS {
                let dir = coldswap_db::dist::debian_dir(pin);
                let cached = dir.join(".complete").exists();
                println!("{}\t{}", pin.name, if cached { dir.display().to_string() } else { "not cached".into() });
            }
            Ok(0)
        }
    }
}
