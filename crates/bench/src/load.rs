//! point_select_qps, point_select_cpu_us_per_query (against sysbench
//! oltp_point_select, same table, same connections; the server on its own
//! CPUs, the clients on the others), point_select_qps_shared_cores (the same
//! pair unpinned), harness_cpu_us_per_request (the drill's load path at its
//! default rate against sysbench --rate) and sleep10ms_p50_ms.

use anyhow::{bail, Context, Result};
use coldswap_client::run::{Load, LoadConfig, Model};
use coldswap_client::{Endpoint, Protocol, Recorder, TierConfig};
use coldswap_db::{Cluster, UpOptions};
use coldswap_sql as sql;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::Figure;

const ROWS: u64 = 10_000;
const THREADS: usize = 8;
const SECS: u64 = 20;

pub async fn run(repo: &Path) -> Result<Vec<Figure>> {
    crate::which("sysbench")?;
    let dir = std::env::temp_dir().join(format!("coldswap-bench-load-{}", std::process::id()));
    let mut opts = UpOptions::new(&dir, "mariadb-10.11.18");
    opts.buffer_pool_mb = 256;
    let (cluster, _) = Cluster::up(opts).await?;
    let r = measure(&cluster, repo).await;
    cluster.down(false).await?;
    r
}

/// sysbench's credentials in a file of the owner's only (`--config-file`):
/// a password on its command line would be readable by every local user.
pub fn sysbench_credentials(dir: &Path, user: &str, password: &str) -> Result<String> {
    std::fs::create_dir_all(dir)?;
    let p = dir.join(format!("sysbench-{user}.cfg"));
    coldswap_db::files::write_private(&p, format!("mysql-user={user}\nmysql-password={password}\n").as_bytes())?;
    Ok(format!("--config-file={}", p.display()))
}

/// Run sysbench with `args`, returning (stdout, child CPU seconds).
fn sysbench(args: &[String]) -> Result<(String, f64)> {
    use std::os::unix::process::ExitStatusExt;
    let child = std::process::Command::new("sysbench")
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("cannot run sysbench")?;
    let pid = child.id() as i32;
    let out = child.wait_with_output_rusage(pid)?;
    let st = std::process::ExitStatus::from_raw(out.2);
    if !st.success() {
        bail!("sysbench failed: {}", String::from_utf8_lossy(&out.1).lines().last().unwrap_or(""));
    }
    Ok((String::from_utf8_lossy(&out.0).to_string(), out.3))
}

trait WaitRusage {
    fn wait_with_output_rusage(self, pid: i32) -> Result<(Vec<u8>, Vec<u8>, i32, f64)>;
}

impl WaitRusage for std::process::Child {
    fn wait_with_output_rusage(mut self, pid: i32) -> Result<(Vec<u8>, Vec<u8>, i32, f64)> {
        use std::io::Read;
        let mut so = self.stdout.take().unwrap();
        let mut se = self.stderr.take().unwrap();
        let t = std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = se.read_to_end(&mut v);
            v
        });
        let mut out = Vec::new();
        so.read_to_end(&mut out)?;
        let err = t.join().unwrap_or_default();
        let mut status = 0;
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: waiting for our own child, rusage into a local.
        let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        if rc < 0 {
            bail!("wait4 failed");
        }
        let tv = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
        std::mem::forget(self);
        Ok((out, err, status, tv(ru.ru_utime) + tv(ru.ru_stime)))
    }
}

async fn ours(
    cluster: &Cluster,
    mix_path: &Path,
    users: usize,
    secs: u64,
    via_endpoint: bool,
    protocol: Protocol,
) -> Result<(f64, f64, f64, u64)> {
    let cfg = LoadConfig {
        users,
        duration: Some(Duration::from_secs(secs)),
        tier: TierConfig { pool_size: users as u32, protocol, ..Default::default() },
        ..Default::default()
    };
    ours_with(cluster, mix_path, cfg, via_endpoint).await
}

/// One load of `mix_path` with `cfg`: (requests/s, load-process CPU us per
/// request, p50 ms, requests).
async fn ours_with(
    cluster: &Cluster,
    mix_path: &Path,
    cfg: LoadConfig,
    via_endpoint: bool,
) -> Result<(f64, f64, f64, u64)> {
    let p = cluster.primary_index()?;
    let node = cluster.node(p);
    let s = cluster.secrets();
    let ep = Endpoint::start(node.addr().parse()?).await?;
    let port = if via_endpoint { ep.addr().port() } else { node.port };
    let opts = sql::tcp_options("127.0.0.1", port, &s.app_user, &s.app_password);
    let mix = coldswap_client::run::load_mix(mix_path)?;
    let rec = Arc::new(Recorder::new());
    let load = Load::prepare(mix, opts, cfg, rec.clone()).await?;
    rec.phase("run");
    let c0 = coldswap_client::cpu::process_s();
    load.run().await?;
    let cpu = coldswap_client::cpu::process_s() - c0;
    let res = rec.snapshot();
    let ph = res.phase("run").unwrap();
    let t = &ph.transactions[0];
    if t.ok != t.count {
        bail!("{} of {} requests failed: {:?}", t.count - t.ok, t.count, t.error_samples);
    }
    Ok((t.ok as f64 / ph.duration_s(), cpu * 1e6 / t.ok as f64, t.p50_ms, t.ok))
}

/// CPU seconds a server process has used.
fn cpu_of(pid: u32) -> f64 {
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let rest = &s[s.rfind(')')? + 2..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some((f[11].parse::<f64>().ok()? + f[12].parse::<f64>().ok()?) / ticks)
        })
        .unwrap_or(0.0)
}

async fn measure(cluster: &Cluster, repo: &Path) -> Result<Vec<Figure>> {
    let p = cluster.primary_index()?;
    let node = cluster.node(p);
    let sec = cluster.secrets();
    {
        let mut c = cluster.admin(p).await?;
        sql::exec(&mut c, "CREATE DATABASE IF NOT EXISTS sbtest").await?;
        sql::close(c).await;
    }
    let common = vec![
        format!("--mysql-host={}", node.host),
        format!("--mysql-port={}", node.port),
        "--mysql-db=sbtest".into(),
        "--db-driver=mysql".into(),
        "--tables=1".into(),
        format!("--table-size={ROWS}"),
    ];
    let mut prep = vec!["oltp_point_select".to_string()];
    prep.extend(common.clone());
    let secrets = crate::PrivateDir::new("load")?;
    let secret_dir = secrets.path().to_path_buf();
    prep.extend([sysbench_credentials(&secret_dir, &sec.admin_user, &sec.admin_password)?, "prepare".into()]);
    sysbench(&prep)?;
    // Warm the table into the buffer pool for both.
    {
        let mut c = cluster.admin(p).await?;
        sql::exec(&mut c, "SELECT COUNT(*), SUM(LENGTH(c)) FROM sbtest.sbtest1").await?;
        sql::close(c).await;
    }
    let mix = repo.join("loadtests/point_select.toml");
    let spid = node.handle.pid().context("no server pid")?;
    let sb_args = {
        let mut args = vec!["oltp_point_select".to_string()];
        args.extend(common.clone());
        // The run logs in as the application user, as ours does.
        args.push(sysbench_credentials(&secret_dir, &sec.app_user, &sec.app_password)?);
        args.extend([
            format!("--threads={THREADS}"),
            format!("--time={SECS}"),
            "--report-interval=0".into(),
            "run".into(),
        ]);
        args
    };
    // The load generator and the server on separate cores, as they are on
    // separate hosts in production: the client's own cost then cannot be
    // confused with how the kernel interleaves it with the server's threads.
    // (None on a machine with one core: only the shared rounds run.)
    let split = Split::new(spid);
    let mut pinned = Vec::new();
    if let Some(split) = &split {
        split.apply()?;
        let r: Result<()> = async {
            for round in 0..2 {
                eprintln!(
                    "bench: point selects, {THREADS} connections, {SECS} s each, server on CPU {:?}, clients on CPU {:?} (round {})",
                    split.server_cpus,
                    split.client_cpus,
                    round + 1
                );
                pinned.push(pair(cluster, &mix, spid, &sb_args, true, round % 2 == 1).await?);
            }
            Ok(())
        }
        .await;
        split.restore();
        r?;
    }
    // The same pair on shared cores (client and server threads interleaved
    // by the kernel, as on a laptop running a drill).
    let mut shared = Vec::new();
    for round in 0..2 {
        eprintln!(
            "bench: point selects, {THREADS} connections, {SECS} s each, all on shared cores (round {})",
            round + 1
        );
        // With one core the shared rounds are all there is: the endpoint
        // and text figures come from them.
        shared.push(pair(cluster, &mix, spid, &sb_args, split.is_none(), round % 2 == 0).await?);
    }
    // The harness's own cost at the drill's rate (shared cores, as in a drill).
    eprintln!("bench: harness CPU at the drill's rate, {HARNESS_SECS} s each ...");
    let app_creds = sysbench_credentials(&secret_dir, &sec.app_user, &sec.app_password)?;
    let harness = harness_cpu(cluster, &mix, &common, &app_creds).await?;
    let runs = if split.is_some() { &pinned } else { &shared };
    // The better round of each (the machine has other tenants).
    let best = |rs: &[Round], f: fn(&Round) -> f64| rs.iter().map(f).fold(f64::MIN, f64::max);
    let least = |rs: &[Round], f: fn(&Round) -> f64| rs.iter().map(f).fold(f64::MAX, f64::min);
    let (sb_qps, sb_cpu, sb_server) =
        (best(runs, |r| r.sb_qps), least(runs, |r| r.sb_cpu), least(runs, |r| r.sb_server));
    let (q, cpu, our_server) = (best(runs, |r| r.q), least(runs, |r| r.cpu), least(runs, |r| r.server));
    let (qe, cpue) = (best(runs, |r| r.endpoint_q), least(runs, |r| r.endpoint_cpu));
    let (qt, text_server) = (best(runs, |r| r.text_q), least(runs, |r| r.text_server));
    let ratio = q / sb_qps;
    let (sh_sb, sh_sb_cpu, sh_sb_server) =
        (best(&shared, |r| r.sb_qps), least(&shared, |r| r.sb_cpu), least(&shared, |r| r.sb_server));
    let (sh_q, sh_cpu, sh_server) = (best(&shared, |r| r.q), least(&shared, |r| r.cpu), least(&shared, |r| r.server));
    let placement = match &split {
        Some(s) => format!("the server pinned to CPU {:?} and both clients to CPU {:?}", s.server_cpus, s.client_cpus),
        None => "client and server sharing the machine's only core (no second core to separate them)".to_string(),
    };
    eprintln!("bench: point_select ratio {ratio:.2} ({placement}); on shared cores {:.2}", sh_q / sh_sb);

    eprintln!("bench: SELECT SLEEP(0.01), 8 users, 10 s ...");
    let sleep_mix = std::env::temp_dir().join(format!("coldswap-sleep-{}.toml", std::process::id()));
    std::fs::write(
        &sleep_mix,
        "name = \"sleep\"\ndatabase = \"sbtest\"\n[[transaction]]\nname = \"sleep10ms\"\nweight = 1\nsql = \"SELECT SLEEP(0.01)\"\n",
    )?;
    {
        let mut c = cluster.admin(p).await?;
        sql::exec(&mut c, "TRUNCATE performance_schema.events_statements_summary_global_by_event_name").await?;
        sql::close(c).await;
    }
    // Prepared, as the point selects: the figure is about what our client
    // adds to a known server time, not about the server parsing SQL text.
    let (_, _, p50, n) = ours(cluster, &sleep_mix, 8, 10, false, Protocol::Binary).await?;
    // The server's own time for the statement (picoseconds in
    // performance_schema; executions of prepared statements have no digest).
    let server_ms = {
        let mut c = cluster.admin(p).await?;
        let v = sql::query_text(
            &mut c,
            "SELECT CAST(AVG_TIMER_WAIT / 1e9 AS CHAR) FROM performance_schema.events_statements_summary_global_by_event_name \
             WHERE EVENT_NAME = 'statement/com/Execute'",
        )
        .await?;
        sql::close(c).await;
        v.and_then(|x| x.parse::<f64>().ok()).unwrap_or(f64::NAN)
    };
    // The text protocol beside it (the drill's default), for the record.
    let (_, _, p50_text, _) = ours(cluster, &sleep_mix, 8, 5, false, Protocol::Text).await?;
    let _ = std::fs::remove_file(&sleep_mix);
    eprintln!("bench: sleep10ms p50 {p50:.3} ms over {n} requests (text protocol: {p50_text:.3} ms)");

    Ok(vec![
        harness,
        Figure {
            name: "point_select_qps".into(),
            unit: "queries/s".into(),
            ours: q,
            peer: format!("sysbench 1.0.20 oltp_point_select, {THREADS} threads, {ROWS} rows"),
            peer_value: Some(sb_qps),
            ratio: Some(ratio),
            goal: "ratio >= 1.0".into(),
            goal_met: Some(ratio >= 1.0),
            method: format!(
                "loadtests/point_select.toml on the same sbtest1 table, {THREADS} users and {THREADS} pool connections, closed model, \
                 straight to the server as sysbench is; {SECS} s each, better of 2 rounds, which of the pair runs first alternating \
                 between rounds, {placement}. The server spent {our_server:.1} us CPU per query for our client against {sb_server:.1} us for sysbench's \
                 (same statement, prepared, both: the binary protocol)."
            ),
        },
        Figure {
            name: "point_select_qps_shared_cores".into(),
            unit: "queries/s".into(),
            ours: sh_q,
            peer: format!("sysbench 1.0.20 oltp_point_select, {THREADS} threads, {ROWS} rows"),
            peer_value: Some(sh_sb),
            ratio: Some(sh_q / sh_sb),
            goal: "ratio >= 1.0 (client and server threads interleaved on the same cores, as on a laptop)".into(),
            goal_met: Some(sh_q / sh_sb >= 1.0),
            method: format!(
                "as point_select_qps, without pinning: the kernel interleaves both clients with the server's threads on all cores, \
                 as on a laptop running a drill. Client CPU {sh_cpu:.1} us/query (sysbench {sh_sb_cpu:.1}); the server spent \
                 {sh_server:.1} us CPU per query for our client against {sh_sb_server:.1} us for sysbench's"
            ),
        },
        Figure {
            name: "point_select_text_qps".into(),
            unit: "queries/s".into(),
            ours: qt,
            peer: "the same load with prepared statements".into(),
            peer_value: Some(q),
            ratio: Some(qt / q),
            goal: "none (informational: the text protocol the drill sends by default, so MariaDB digests its statements)".into(),
            goal_met: None,
            method: format!("as point_select_qps with --protocol text; the server spent {text_server:.1} us CPU per query (parsing each one)"),
        },
        Figure {
            name: "point_select_cpu_us_per_query".into(),
            unit: "us CPU/query".into(),
            ours: cpu,
            peer: "sysbench 1.0.20 oltp_point_select (its process)".into(),
            peer_value: Some(sb_cpu),
            ratio: Some(cpu / sb_cpu),
            goal: "as low as the peer (ratio <= 1.0)".into(),
            goal_met: Some(cpu <= sb_cpu),
            method: "user+system CPU of the load process (goose, tokio, API tier, recorder) per successful query".into(),
        },
        Figure {
            name: "point_select_server_cpu_us_per_query".into(),
            unit: "us server CPU/query".into(),
            ours: our_server,
            peer: "the server's CPU per query under sysbench".into(),
            peer_value: Some(sb_server),
            ratio: Some(our_server / sb_server),
            goal: "none (informational: what the client library costs the server)".into(),
            goal_met: None,
            method: "mariadbd user+system CPU over the run divided by queries served".into(),
        },
        Figure {
            name: "endpoint_point_select_qps".into(),
            unit: "queries/s".into(),
            ours: qe,
            peer: "the same load straight to the server".into(),
            peer_value: Some(q),
            ratio: Some(qe / q),
            goal: "ratio >= 0.9 of the same load straight to the server (the swappable endpoint's cost)".into(),
            goal_met: Some(qe / q >= 0.9),
            method: format!("as point_select_qps, through coldswap's TCP endpoint (the drill's load path); load process CPU {cpue:.1} us/query"),
        },
        Figure {
            name: "sleep10ms_p50_ms".into(),
            unit: "ms".into(),
            ours: p50,
            peer: String::new(),
            peer_value: None,
            ratio: None,
            goal: "within 0.5 ms of 10 ms".into(),
            goal_met: Some((p50 - 10.0).abs() <= 0.5),
            method: format!(
                "SELECT SLEEP(0.01) as a transaction, prepared, 8 users, 10 s straight to the server, {n} requests; p50 of our HDR \
                 histogram; the server's own mean time for the statement (performance_schema) was {server_ms:.3} ms; the same with \
                 the text protocol: p50 {p50_text:.3} ms"
            ),
        },
    ])
}

/// sysbench's queries per second and queries in all, from its summary.
fn sysbench_queries(out: &str, secs: u64) -> Result<(f64, f64)> {
    let line =
        out.lines().find(|l| l.trim_start().starts_with("queries:")).context("no queries line in sysbench output")?;
    let qps: f64 = line
        .split('(')
        .nth(1)
        .and_then(|x| x.split_whitespace().next())
        .and_then(|x| x.parse().ok())
        .context("cannot read sysbench's rate")?;
    let total: f64 = line.split_whitespace().nth(1).and_then(|x| x.parse().ok()).unwrap_or(qps * secs as f64);
    Ok((qps, total))
}

/// The drill's default rate (requests/s), users and API pool.
pub const DRILL_RATE: f64 = 1000.0;
pub const DRILL_USERS: usize = 64;
pub const DRILL_POOL: u32 = 32;
const HARNESS_SECS: u64 = 20;

/// A load as a drill sends it by default: open model at the drill's rate,
/// its users and API pool, for `secs`.
pub fn drill_load(secs: u64) -> LoadConfig {
    LoadConfig {
        users: DRILL_USERS,
        model: Model::Open { rate_per_s: DRILL_RATE },
        duration: Some(Duration::from_secs(secs)),
        tier: TierConfig { pool_size: DRILL_POOL, ..Default::default() },
        ..Default::default()
    }
}

/// harness_cpu_us_per_request: CPU per request of the drill's load path
/// (open model at the drill's rate, API tier, the swappable endpoint, the
/// text protocol the drill sends) against sysbench --rate at the same rate
/// with as many connections as the drill's API pool; 2 rounds, which runs
/// first alternating, the lesser CPU of each.
async fn harness_cpu(cluster: &Cluster, mix: &Path, common: &[String], creds: &str) -> Result<Figure> {
    let mut sb_args = vec!["oltp_point_select".to_string()];
    sb_args.extend(common.iter().cloned());
    sb_args.extend([
        creds.to_string(),
        format!("--threads={DRILL_POOL}"),
        format!("--rate={DRILL_RATE}"),
        format!("--time={HARNESS_SECS}"),
        "--report-interval=0".into(),
        "run".into(),
    ]);
    let (mut ours_cpu, mut sb_cpu) = (Vec::new(), Vec::new());
    for round in 0..2 {
        for ours_turn in [round % 2 == 0, round % 2 == 1] {
            if ours_turn {
                let (q, cpu, _, _) = ours_with(cluster, mix, drill_load(HARNESS_SECS), true).await?;
                eprintln!("bench: harness at {DRILL_RATE} req/s: coldswap {q:.0} req/s, {cpu:.1} us CPU/request");
                ours_cpu.push((q, cpu));
            } else {
                let (out, cpu) = sysbench(&sb_args)?;
                let (q, total) = sysbench_queries(&out, HARNESS_SECS)?;
                let cpu = cpu * 1e6 / total;
                eprintln!("bench: harness at {DRILL_RATE} req/s: sysbench {q:.0} q/s, {cpu:.1} us CPU/query");
                sb_cpu.push((q, cpu));
            }
        }
    }
    let least = |v: &[(f64, f64)]| v.iter().cloned().fold((f64::NAN, f64::MAX), |a, b| if b.1 < a.1 { b } else { a });
    let ((oq, o), (sq, sb)) = (least(&ours_cpu), least(&sb_cpu));
    Ok(Figure {
        name: "harness_cpu_us_per_request".into(),
        unit: "us CPU/request".into(),
        ours: o,
        peer: format!("sysbench 1.0.20 oltp_point_select --rate={DRILL_RATE} --threads={DRILL_POOL}"),
        peer_value: Some(sb),
        ratio: Some(o / sb),
        goal: "no more per request than the peer (ratio <= 1.0)".into(),
        goal_met: Some(o <= sb),
        method: format!(
            "user+system CPU of the load process per request over {HARNESS_SECS} s at {DRILL_RATE} requests/s, open model: \
             loadtests/point_select.toml through the API tier ({DRILL_USERS} users, {DRILL_POOL} connections, text protocol) \
             and the swappable endpoint, as a drill sends them ({oq:.0} req/s served), against sysbench at the same rate \
             ({sq:.0} q/s, prepared statements); 2 rounds each, which runs first alternating, the lesser CPU of each, \
             on shared cores"
        ),
    })
}

/// One round of the point-select pair: queries/s, client CPU and server CPU
/// per query (us) of sysbench, then of ours; with `full`, also ours through
/// the endpoint and with the text protocol (else NaN there).
struct Round {
    sb_qps: f64,
    sb_cpu: f64,
    sb_server: f64,
    q: f64,
    cpu: f64,
    server: f64,
    endpoint_q: f64,
    endpoint_cpu: f64,
    text_q: f64,
    text_server: f64,
}

/// One round; `ours_first` alternates which of the pair runs first, so
/// neither always meets the server in the state the other left it in.
async fn pair(
    cluster: &Cluster,
    mix: &Path,
    spid: u32,
    sb_args: &[String],
    full: bool,
    ours_first: bool,
) -> Result<Round> {
    let run_ours = || async {
        let s0 = cpu_of(spid);
        // Prepared statements, as sysbench sends them.
        let (q, cpu, _, nq) = ours(cluster, mix, THREADS, SECS, false, Protocol::Binary).await?;
        anyhow::Ok((q, cpu, (cpu_of(spid) - s0) * 1e6 / nq as f64))
    };
    let mut mine = None;
    if ours_first {
        mine = Some(run_ours().await?);
    }
    let s0 = cpu_of(spid);
    let (out, sb_cpu) = sysbench(sb_args)?;
    let sb_server = cpu_of(spid) - s0;
    let (sb_qps, sb_total) = sysbench_queries(&out, SECS)?;
    let (sb_cpu, sb_server) = (sb_cpu * 1e6 / sb_total, sb_server * 1e6 / sb_total);
    let (q, cpu, our_server) = match mine {
        Some(m) => m,
        None => run_ours().await?,
    };
    eprintln!(
        "bench: {} first: sysbench {sb_qps:.0} q/s ({sb_cpu:.1} us client CPU/q, server {sb_server:.1} us/q); coldswap {q:.0} q/s ({cpu:.1} us client CPU/q, server {our_server:.1} us/q)",
        if ours_first { "coldswap" } else { "sysbench" }
    );
    let mut r = Round {
        sb_qps,
        sb_cpu,
        sb_server,
        q,
        cpu,
        server: our_server,
        endpoint_q: f64::NAN,
        endpoint_cpu: f64::NAN,
        text_q: f64::NAN,
        text_server: f64::NAN,
    };
    if full {
        (r.endpoint_q, r.endpoint_cpu, _, _) = ours(cluster, mix, THREADS, SECS, true, Protocol::Binary).await?;
        // The text protocol the drill sends by default (values inline).
        let s0 = cpu_of(spid);
        let (qt, _, _, nt) = ours(cluster, mix, THREADS, SECS, false, Protocol::Text).await?;
        r.text_q = qt;
        r.text_server = (cpu_of(spid) - s0) * 1e6 / nt as f64;
        eprintln!(
            "bench: through the endpoint {:.0} q/s ({:.1} us CPU/q); text protocol {:.0} q/s (server {:.1} us/q)",
            r.endpoint_q, r.endpoint_cpu, r.text_q, r.text_server
        );
    }
    Ok(r)
}

/// The bench process (and so sysbench, its child) on some CPUs, the server
/// on the others.
struct Split {
    server: u32,
    all: Vec<usize>,
    client_cpus: Vec<usize>,
    server_cpus: Vec<usize>,
}

fn tasks(pid: &str) -> Vec<i32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default()
}

fn set_affinity(tids: &[i32], cpus: &[usize]) -> Result<()> {
    // SAFETY: a zeroed cpu_set_t filled by the libc macros, passed by pointer
    // with its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in cpus {
            libc::CPU_SET(c, &mut set);
        }
        for &t in tids {
            if libc::sched_setaffinity(t, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                let e = std::io::Error::last_os_error();
                // A thread that exited meanwhile.
                if e.raw_os_error() != Some(libc::ESRCH) {
                    bail!("cannot pin thread {t} to CPUs {cpus:?}: {e}");
                }
            }
        }
    }
    Ok(())
}

impl Split {
    fn new(server: u32) -> Option<Split> {
        // SAFETY: sched_getaffinity into a zeroed local.
        let all: Vec<usize> = unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
                return None;
            }
            (0..libc::CPU_SETSIZE as usize).filter(|&c| libc::CPU_ISSET(c, &set)).collect()
        };
        if all.len() < 2 {
            return None;
        }
        let (c, s) = all.split_at(all.len() / 2);
        Some(Split { server, client_cpus: c.to_vec(), server_cpus: s.to_vec(), all })
    }

    fn apply(&self) -> Result<()> {
        set_affinity(&tasks(&self.server.to_string()), &self.server_cpus)?;
        set_affinity(&tasks("self"), &self.client_cpus)
    }

    fn restore(&self) {
        let _ = set_affinity(&tasks(&self.server.to_string()), &self.all);
        let _ = set_affinity(&tasks("self"), &self.all);
    }
}
