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
    // performance_schema, read through a servers file as for a staging
    // pair, over 25 s of the load; its history consumer is off here, and
    // --enable-history switches it on for the window only.
    let ps_out = dir.join("from-ps.toml");
    let ext = dir.join("external.toml");
    servers_file(&ext, &cluster.node(p).addr(), &cluster.node(1 - p).addr(), &s.admin_user);
    let pw = s.admin_password.clone();
    let (d2, e2, o2) = (dir.clone(), ext.clone(), ps_out.clone());
    let ps = tokio::task::spawn_blocking(move || {
        std::thread::sleep(Duration::from_secs(2));
        cli_env(
            &[
                "mix",
                "import",
                "--performance-schema",
                "--config",
                e2.to_str().unwrap(),
                "--window",
                "25s",
                "--enable-history",
                "--cover",
                "100%",
                "--api-nodes",
                "4",
                "--out",
                o2.to_str().unwrap(),
            ],
            &d2,
            &[("STAGING_PW", &pw)],
        )
    });
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
    let (imported, bg_name) = check_import(&out, &original, ph, &stderr);
    // The same from performance_schema, watched while the load ran.
    let (code, pstdout, pstderr) = ps.await.unwrap();
    assert_eq!(code, 0, "{pstdout}\n{pstderr}");
    let (_, _) = check_import(&ps_out, &original, ph, &pstderr);
    assert!(pstderr.contains("watching the primary's performance_schema"), "{pstderr}");
    // What --enable-history switched on is off again.
    let mut admin = admin_conn(&cluster, p).await;
    let on = coldswap_sql::query_text(
        &mut admin,
        "SELECT GROUP_CONCAT(NAME) FROM performance_schema.setup_consumers WHERE NAME LIKE 'events_statements%' AND ENABLED = 'YES'",
    )
    .await
    .unwrap();
    assert_eq!(on, None, "consumers left on");
    let notify = original.background.iter().find(|b| b.name == "notify_schedules").unwrap();
    let want = original.api_nodes as f64 / notify.period.as_secs_f64();
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

    // The dataset: its shape read from the server (through the same
    // servers file), seeded again at half the size in a database of its own.
    let shape_dir = dir.join("shape");
    let (code, out_s, err_s) = cli_env(
        &[
            "schema",
            "import",
            "--config",
            ext.to_str().unwrap(),
            "--database",
            "api",
            "--out",
            shape_dir.to_str().unwrap(),
        ],
        &dir,
        &[("STAGING_PW", &s.admin_password)],
    );
    assert_eq!(code, 0, "{out_s}{err_s}");
    let desc = std::fs::read_to_string(shape_dir.join("dataset.toml")).unwrap();
    assert!(desc.contains("No row is stored"), "{desc}");
    std::fs::write(shape_dir.join("dataset.toml"), desc.replace("database = \"api\"", "database = \"shop\"")).unwrap();
    let run = dir.join("run");
    let (code, out_s, err_s) = cli(
        &["seed", "--run-dir", run.to_str().unwrap(), "--dataset", shape_dir.to_str().unwrap(), "--scale", "0.5"],
        &dir,
    );
    assert_eq!(code, 0, "{out_s}{err_s}");
    let mut admin = admin_conn(&cluster, p).await;
    let tables: Vec<String> = coldswap_sql::fetch_all(
        &mut admin,
        "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'api' AND TABLE_TYPE = 'BASE TABLE' ORDER BY 1",
    )
    .await
    .unwrap()
    .iter()
    .map(|r| coldswap_sql::col_text_at(r, 0).unwrap())
    .collect();
    assert!(tables.len() >= 8, "{tables:?}");
    for t in &tables {
        let orig = create_of(&mut admin, "api", t).await;
        let copy = create_of(&mut admin, "shop", t).await;
        assert_eq!(orig, copy, "{t}: tables and indexes differ");
        let n = |db: &str| format!("SELECT COUNT(*) FROM `{db}`.`{t}`");
        let a = coldswap_sql::query_i64(&mut admin, &n("api")).await.unwrap() as u64;
        let b = coldswap_sql::query_i64(&mut admin, &n("shop")).await.unwrap() as u64;
        assert_eq!(b, coldswap_dataset::shaped::scaled(a, 0.5), "{t}: {a} rows, seeded {b} at scale 0.5");
    }
    // The skew of a key column: the hottest account, and its share.
    let hot = |db: &str| {
        format!(
            "SELECT account_id, COUNT(*) / (SELECT COUNT(*) FROM `{db}`.jobs) FROM `{db}`.jobs GROUP BY account_id ORDER BY 2 DESC, 1 LIMIT 1"
        )
    };
    let h = |rows: Vec<sqlx::mysql::MySqlRow>| -> (String, f64) {
        (
            coldswap_sql::col_text_at(&rows[0], 0).unwrap(),
            coldswap_sql::col_text_at(&rows[0], 1).unwrap().parse().unwrap(),
        )
    };
    let (ha, sa) = h(coldswap_sql::fetch_all(&mut admin, &hot("api")).await.unwrap());
    let (hb, sb) = h(coldswap_sql::fetch_all(&mut admin, &hot("shop")).await.unwrap());
    eprintln!("hottest account: {ha} with {sa:.3} of jobs; seeded {hb} with {sb:.3}");
    assert_eq!(ha, hb);
    assert!(sb > sa / 1.5 && sb < sa * 1.5, "hottest account's share {sa:.3}, seeded {sb:.3}");
    // Status words come from the column's own domain.
    let words = |db: &str| format!("SELECT GROUP_CONCAT(DISTINCT status ORDER BY status) FROM `{db}`.jobs");
    let wa = coldswap_sql::query_text(&mut admin, &words("api")).await.unwrap().unwrap();
    let wb = coldswap_sql::query_text(&mut admin, &words("shop")).await.unwrap().unwrap();
    assert!(wb.split(',').all(|w| wa.split(',').any(|x| x == w)), "{wa} / {wb}");
    cluster.down(false).await.unwrap();

    // A drill of the imported mix on the imported dataset names the same
    // cold heaviest statement as the original's drills do: the
    // dispatcher's scan, now the imported background job.
    let mut c = coldswap_drill::DrillConfig { out: dir.join("out"), ..Default::default() };
    c.cluster.buffer_pool_mb = 128;
    c.data.scale = 0.02;
    // The imported dataset, as large as where it was read, and the mix on it.
    c.data.dataset = Some(shape_dir.clone());
    c.data.dataset_scale = 1.0;
    let shop_mix = dir.join("shop.toml");
    std::fs::write(
        &shop_mix,
        std::fs::read_to_string(&out).unwrap().replace("database = \"api\"", "database = \"shop\""),
    )
    .unwrap();
    c.load.mix = shop_mix;
    c.load.rate = 150.0;
    c.load.users = 16;
    c.phases.baseline = "6s".into();
    c.phases.cold = "15s".into();
    c.phases.warm = "4s".into();
    let o = coldswap_drill::run(c, None).await.expect("drill of the imported mix");
    assert!(o.report.complete, "{:?}", o.error);
    let h = o.report.heaviest_hitter.as_ref().expect("a heaviest hitter");
    assert_eq!((h.phase.as_str(), h.transaction.as_deref()), ("cold", Some(bg_name.as_str())), "{h:?}");
    assert_nothing_left(&dir);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The imported mix holds the original's reads at the shares the load
/// sent, and the dispatcher as a background job at its period on
/// --api-nodes 4; writes and transaction control are listed as left out.
fn check_import(
    out: &std::path::Path,
    original: &coldswap_client::Mix,
    ph: &coldswap_client::stats::PhaseResult,
    stderr: &str,
) -> (coldswap_client::Mix, String) {
    let text = std::fs::read_to_string(out).unwrap();
    eprintln!("{stderr}\n{}", text.lines().filter(|l| l.starts_with('#')).take(40).collect::<Vec<_>>().join("\n"));
    let imported = coldswap_client::mix::Mix::load(out).expect("the imported mix is a mix");
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
        // The capture counts what the load sent (give or take the requests
        // at either end of the window)...
        let sd_window = (counted * (1.0 - counted) / (0.5 * ran)).sqrt();
        assert!(
            (share - counted).abs() < 0.01 + 3.0 * sd_window,
            "{}: imported share {share:.4}, the load sent {counted:.4}",
            t.name
        );
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
    assert_eq!(imported.api_nodes, original.api_nodes, "{text}");
    assert!(
        (bg.period.as_secs_f64() - notify.period.as_secs_f64()).abs() < 0.1 * notify.period.as_secs_f64(),
        "dispatcher every {:?}",
        bg.period
    );
    // Writes are left out unless asked for, and said so.
    assert!(stderr.contains("writes (add --include-writes)"), "{stderr}");
    assert!(stderr.contains("COMMIT") || stderr.contains("BEGIN"), "{stderr}");
    let name = bg.name.clone();
    (imported, name)
}

/// What cannot be imported says so in one line, and writes nothing.
#[test]
fn bad_captures_are_one_clear_line() {
    let dir = test_dir("mix-import-bad");
    let one_line = |args: &[&str], env: &[(&str, &str)], want: &str| {
        let (code, out, err) = cli_env(args, &dir, env);
        assert_eq!(code, 1, "{args:?}: {out}{err}");
        let last = last_line(&err);
        assert!(last.contains(want), "{args:?}: {err}");
        assert_eq!(err.trim().lines().filter(|l| l.starts_with("coldswap: error")).count(), 1, "{err}");
    };
    let out = dir.join("m.toml");
    let o = out.to_str().unwrap();
    one_line(&["mix", "import", "--slow-log", "no-such.log", "--out", o], &[], "cannot open no-such.log");
    std::fs::write(dir.join("notes.txt"), "hello\nworld\n").unwrap();
    one_line(&["mix", "import", "--slow-log", "notes.txt", "--out", o], &[], "no statements found in notes.txt");
    std::fs::write(dir.join("tx.log"), "# Query_time: 0.1\nSET timestamp=1;\nBEGIN;\n# Query_time: 0.1\nCOMMIT;\n")
        .unwrap();
    one_line(&["mix", "import", "--slow-log", "tx.log", "--out", o], &[], "no replayable statement");
    servers_file(&dir.join("ext.toml"), "127.0.0.1:9", "127.0.0.1:10", "u");
    one_line(
        &["mix", "import", "--performance-schema", "--config", "ext.toml", "--out", o],
        &[("STAGING_PW", "x")],
        "cannot connect to the primary",
    );
    servers_file(&dir.join("far.toml"), "10.255.1.2:3306", "10.255.1.3:3306", "u");
    one_line(
        &["mix", "import", "--performance-schema", "--config", "far.toml", "--out", o],
        &[("STAGING_PW", "x")],
        "loopback",
    );
    assert!(!out.exists(), "a failed import wrote {o}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A table's definition, its AUTO_INCREMENT counter left out.
async fn create_of(conn: &mut sqlx::MySqlConnection, db: &str, t: &str) -> String {
    let rows = coldswap_sql::fetch_all(conn, &format!("SHOW CREATE TABLE `{db}`.`{t}`")).await.unwrap();
    coldswap_capture::schema::strip_auto_increment(&coldswap_sql::col_text_at(&rows[0], 1).unwrap())
}

/// A servers file (as `coldswap external` reads it), its password in STAGING_PW.
fn servers_file(path: &std::path::Path, primary: &str, replica: &str, user: &str) {
    std::fs::write(
        path,
        format!(
            "[primary]\naddress = \"{primary}\"\n[replica]\naddress = \"{replica}\"\n[credentials]\nuser = \"{user}\"\npassword_env = \"STAGING_PW\"\n"
        ),
    )
    .unwrap();
}
