//! Issue 19: a slow query log captured under the built-in API mix, on real
//! servers, imported back into a mix: the same statements, their weights,
//! the 2017 dispatcher as a background job with its period; the imported
//! mix runs.

mod common;
use common::*;

use coldswap_capture::fingerprint::shape;
use coldswap_client::run::{Load, LoadConfig, Model};
use coldswap_client::{Endpoint, Recorder};
use coldswap_db::{Cluster, UpOptions};
use sqlx::Executor;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

fn fp(sql: &str) -> String {
    shape(sql).unwrap_or_else(|| panic!("cannot fingerprint {sql}")).fingerprint
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_log_of_the_api_mix_imports_back_into_it() {
    let dir = test_dir("mix-import");
    let mut opts = UpOptions::new(dir.join("run"), FROM);
    opts.buffer_pool_mb = 128;
    let (cluster, _) = Cluster::up(opts).await.expect("cluster up");
    cluster.seed(0.02, false, &|_| {}).await.expect("seed");
    let p = cluster.primary_index().unwrap();
    let log = dir.join("slow.log");
    {
        // Every statement, as a production capture takes it. The session
        // value is copied at connect: set before the load connects.
        let mut admin = admin_conn(&cluster, p).await;
        admin.execute(format!("SET GLOBAL slow_query_log_file = '{}'", log.display()).as_str()).await.unwrap();
        admin.execute("SET GLOBAL long_query_time = 0").await.unwrap();
        admin.execute("SET GLOBAL slow_query_log = 1").await.unwrap();
    }
    let ep = Endpoint::start(cluster.node(p).addr().parse().unwrap()).await.unwrap();
    let s = cluster.secrets();
    let app = coldswap_sql::tcp_options("127.0.0.1", ep.addr().port(), &s.app_user, &s.app_password);
    let mix = coldswap_client::run::load_mix(&repo().join("loadtests/api.toml")).unwrap();
    let original = mix.clone();
    let rec = Arc::new(Recorder::new());
    // The mix's own background jobs (the 2017 dispatcher, every 4 s on each
    // of 4 API nodes): 30 s holds seven periods.
    let cfg = LoadConfig {
        users: 16,
        model: Model::Open { rate_per_s: 150.0 },
        duration: Some(Duration::from_secs(30)),
        ..Default::default()
    };
    let load = Load::prepare(mix, app.clone(), cfg, rec.clone()).await.expect("prepare");
    rec.phase("run");
    load.run().await.expect("run");
    {
        let mut admin = admin_conn(&cluster, p).await;
        admin.execute("SET GLOBAL slow_query_log = 0").await.unwrap();
        admin.execute("SET GLOBAL long_query_time = 10").await.unwrap();
    }
    let res = rec.snapshot();
    let ph = res.phase("run").unwrap();

    let out = dir.join("imported.toml");
    let (code, stdout, stderr) = cli(
        &[
            "mix",
            "import",
            "--slow-log",
            log.to_str().unwrap(),
            "--cover",
            "100%",
            "--api-nodes",
            "4",
            "--out",
            out.to_str().unwrap(),
        ],
        &dir,
    );
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let text = std::fs::read_to_string(&out).unwrap();
    eprintln!("{stderr}\n{}", text.lines().filter(|l| l.starts_with('#')).take(40).collect::<Vec<_>>().join("\n"));
    let imported = coldswap_client::mix::Mix::load(&out).expect("the imported mix is a mix");

    // Every read transaction of the original is one imported transaction,
    // with its share of the reads.
    let by_fp: HashMap<String, &coldswap_client::mix::TxnSpec> =
        imported.transactions.iter().map(|t| (fp(&t.steps[0].sql), t)).collect();
    let reads: Vec<_> = original.transactions.iter().filter(|t| t.steps.len() == 1 && t.steps[0].is_select()).collect();
    assert!(reads.len() >= 5);
    let wsum: f64 = reads.iter().map(|t| t.weight as f64).sum();
    let ran: f64 = reads.iter().map(|t| ph.txn(&t.name).map(|r| r.count).unwrap_or(0) as f64).sum();
    let isum: f64 = imported.transactions.iter().map(|t| t.weight as f64).sum();
    assert_eq!(imported.transactions.len(), reads.len(), "{text}");
    for t in &reads {
        let f = fp(&t.steps[0].sql);
        let it = by_fp.get(&f).unwrap_or_else(|| panic!("{} ({f}) not imported", t.name));
        let share = it.weight as f64 / isum;
        let counted = ph.txn(&t.name).unwrap().count as f64 / ran;
        let declared = t.weight as f64 / wsum;
        // The log counts what the load sent (give or take the requests in
        // flight at either end and the digest probe before the load)...
        assert!((share - counted).abs() < 0.01, "{}: imported share {share:.4}, the load sent {counted:.4}", t.name);
        // ...and what it sent is the mix's weight, within sampling noise.
        let sd = (declared * (1.0 - declared) / ran).sqrt();
        assert!(
            (share - declared).abs() < 4.0 * sd + 0.01,
            "{}: imported share {share:.4}, weight says {declared:.4}",
            t.name
        );
    }
    // The dispatcher is a background job again: every 4 s on each of the 4
    // API nodes --api-nodes names (a log shows the job's rate, not how many
    // servers share it).
    let notify = original.background.iter().find(|b| b.name == "notify_schedules").unwrap();
    let bg = imported
        .background
        .iter()
        .find(|b| fp(&b.steps[0].sql) == fp(&notify.steps[0].sql))
        .unwrap_or_else(|| panic!("the dispatcher is not a background job:\n{text}"));
    assert_eq!(imported.background.len(), 1, "{text}");
    let rate = imported.api_nodes as f64 / bg.period.as_secs_f64();
    let want = original.api_nodes as f64 / notify.period.as_secs_f64();
    assert!((rate - want).abs() < 0.1 * want, "dispatcher: {} nodes every {:?}", imported.api_nodes, bg.period);
    assert_eq!(imported.api_nodes, original.api_nodes, "{text}");
    assert!((bg.period.as_secs_f64() - notify.period.as_secs_f64()).abs() < 0.1 * notify.period.as_secs_f64());
    // Writes are left out unless asked for, and said so.
    assert!(stderr.contains("writes (add --include-writes)"), "{stderr}");
    assert!(stderr.contains("COMMIT") || stderr.contains("BEGIN"), "{stderr}");
    // An existing file is kept.
    let (code, _, stderr2) =
        cli(&["mix", "import", "--slow-log", log.to_str().unwrap(), "--out", out.to_str().unwrap()], &dir);
    assert_eq!(code, 1);
    assert!(stderr2.contains("--force"), "{stderr2}");
    let (code, stdout, stderr) =
        cli(&["mix", "import", "--slow-log", log.to_str().unwrap(), "--cover", "100%", "--include-writes"], &dir);
    assert_eq!(code, 0, "{stderr}");
    let with_writes = coldswap_client::mix::Mix::parse(&stdout, std::path::Path::new("w.toml")).unwrap();
    // Without --api-nodes: the same rate, on the fewest nodes that fit.
    let b = &with_writes.background[0];
    let r = with_writes.api_nodes as f64 / b.period.as_secs_f64();
    assert!((r - want).abs() < 0.1 * want, "{} nodes every {:?}", with_writes.api_nodes, b.period);
    let write_fps: Vec<String> = with_writes.transactions.iter().map(|t| fp(&t.steps[0].sql)).collect();
    for t in original.transactions.iter().filter(|t| !t.steps[0].is_select()) {
        for st in &t.steps {
            assert!(write_fps.contains(&fp(&st.sql)), "{}: {} not imported with --include-writes", t.name, st.sql);
        }
    }

    // The imported mix runs: every transaction, without an error.
    let rec = Arc::new(Recorder::new());
    let cfg = LoadConfig { users: 8, duration: Some(Duration::from_secs(5)), ..Default::default() };
    let load = Load::prepare(imported.clone(), app, cfg, rec.clone()).await.expect("prepare the imported mix");
    rec.phase("run");
    load.run().await.expect("run the imported mix");
    let res = rec.snapshot();
    let ph = res.phase("run").unwrap();
    for t in &imported.transactions {
        let r = ph.txn(&t.name).unwrap_or_else(|| panic!("{} never ran", t.name));
        assert!(r.count > 0 && r.count == r.ok, "{}: {:?}", t.name, r.error_samples);
    }
    cluster.down(false).await.unwrap();

    // A drill of the imported mix (on the dataset it was captured from)
    // names the same cold heaviest statement as the original's drills do:
    // the dispatcher's scan, now the imported background job.
    let mut c = coldswap_drill::DrillConfig { out: dir.join("out"), ..Default::default() };
    c.cluster.buffer_pool_mb = 128;
    c.data.scale = 0.02;
    c.load.mix = out.clone();
    c.load.rate = 150.0;
    c.load.users = 16;
    c.phases.baseline = "6s".into();
    c.phases.cold = "15s".into();
    c.phases.warm = "4s".into();
    let o = coldswap_drill::run(c, None).await.expect("drill of the imported mix");
    assert!(o.report.complete, "{:?}", o.error);
    let h = o.report.heaviest_hitter.as_ref().expect("a heaviest hitter");
    assert_eq!((h.phase.as_str(), h.transaction.as_deref()), ("cold", Some(bg.name.as_str())), "{h:?}");
    assert_nothing_left(&dir);
    let _ = std::fs::remove_dir_all(&dir);
}
