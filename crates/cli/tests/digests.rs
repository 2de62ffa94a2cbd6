//! The server's statement digests tied to the transactions that send them,
//! for statements of many shapes (INTERVAL units, IN lists, functions,
//! comments, backquotes, joins, subqueries, writes), on every flavor; and
//! lint resolving aliases to their tables on the same statements.

mod common;
use common::*;

use coldswap_checker::{digests, lint};
use coldswap_client::gen::Generators;
use coldswap_client::run::{Load, LoadConfig};
use coldswap_client::{Protocol, Recorder};
use coldswap_db::{Cluster, UpOptions};
use sqlx::Executor;
use std::sync::Arc;
use std::time::Duration;

const SCHEMA: &[&str] = &[
    "CREATE DATABASE shapes",
    "CREATE TABLE shapes.customers (id INT PRIMARY KEY, name VARCHAR(40) NOT NULL, region VARCHAR(8))",
    "CREATE TABLE shapes.orders (id BIGINT PRIMARY KEY, account_id INT NOT NULL, status VARCHAR(8) NOT NULL, \
     created_at DATETIME(3) NOT NULL, amount DECIMAL(10,2) NOT NULL, note VARCHAR(40), KEY (account_id))",
    "INSERT INTO shapes.customers SELECT a.n * 10 + b.n + 1, CONCAT('c', a.n, b.n), ELT(1 + b.n % 3, 'eu', 'us', 'apac') \
     FROM (SELECT 0 n UNION SELECT 1 UNION SELECT 2 UNION SELECT 3 UNION SELECT 4) a \
     CROSS JOIN (SELECT 0 n UNION SELECT 1 UNION SELECT 2 UNION SELECT 3 UNION SELECT 4 UNION SELECT 5 UNION SELECT 6 \
     UNION SELECT 7 UNION SELECT 8 UNION SELECT 9) b",
    "INSERT INTO shapes.orders SELECT x.n * 100 + y.n * 10 + z.n + 1, 1 + (x.n * 7 + z.n) % 50, \
     ELT(1 + y.n % 3, 'new', 'paid', 'failed'), NOW(3) - INTERVAL (x.n * 100 + y.n) MINUTE, 10 + z.n * 90, \
     IF(z.n = 3, 'refund asked', 'ok') \
     FROM (SELECT 0 n UNION SELECT 1 UNION SELECT 2 UNION SELECT 3 UNION SELECT 4 UNION SELECT 5 UNION SELECT 6 \
     UNION SELECT 7 UNION SELECT 8 UNION SELECT 9) x \
     CROSS JOIN (SELECT 0 n UNION SELECT 1 UNION SELECT 2 UNION SELECT 3 UNION SELECT 4 UNION SELECT 5 UNION SELECT 6 \
     UNION SELECT 7 UNION SELECT 8 UNION SELECT 9) y \
     CROSS JOIN (SELECT 0 n UNION SELECT 1 UNION SELECT 2 UNION SELECT 3 UNION SELECT 4 UNION SELECT 5 UNION SELECT 6 \
     UNION SELECT 7 UNION SELECT 8 UNION SELECT 9) z",
    "ANALYZE TABLE shapes.orders, shapes.customers",
];

async fn every_shape_is_tied_to_its_transaction(case: &Case) {
    let dir = test_dir(&format!("shapes-{}", case.name));
    let mut opts = UpOptions::new(dir.join("run"), case.from);
    opts.backend = case.backend;
    opts.buffer_pool_mb = 64;
    let (cluster, _) = Cluster::up(opts).await.expect("cluster up");
    let p = cluster.primary_index().unwrap();
    {
        let mut c = admin_conn(&cluster, p).await;
        for s in SCHEMA {
            c.execute(*s).await.unwrap_or_else(|e| panic!("{s}: {e}"));
        }
    }
    let mix = coldswap_client::run::load_mix(&repo().join("crates/cli/tests/mixes/shapes.toml")).unwrap();
    let gens = Generators::new(mix.generators.clone(), coldswap_dataset::Counts::at(1e-9), 0);

    // Lint: aliases are their tables, and a scan through one costs its table.
    {
        let mut c = admin_conn(&cluster, p).await;
        c.execute("USE shapes").await.unwrap();
        let model = lint::ColdModel { mean_latency_ms: 10.0, block_bytes: 16384, concurrency: 4 };
        let l = lint::lint(&mut c, &mix, &gens, model, None).await.expect("lint");
        for x in &l {
            assert!(x.error.is_none(), "{x:?}");
            for t in &x.scanned_tables {
                assert!(
                    t == "orders" || t == "customers",
                    "{}: scanned table {t} is not a table: {x:?}",
                    x.transaction
                );
            }
        }
        let search = l.iter().find(|x| x.transaction == "search").unwrap();
        assert!(search.full_scan && search.scanned_tables == vec!["orders".to_string()], "{search:?}");
        assert!(search.est_cold_cost_ms > 10.0, "a full scan of orders through alias o costs more: {search:?}");
        let quoted = l.iter().find(|x| x.transaction == "quoted").unwrap();
        assert!(!quoted.full_scan, "{quoted:?}");
    }

    // The server's digest of every statement, learned before the load.
    let probes: Vec<digests::Probe> = {
        let mut rng = coldswap_client::gen::Rng::new(3);
        mix.transactions
            .iter()
            .flat_map(|t| t.steps.iter().map(|s| (t.name.clone(), s.clone())).collect::<Vec<_>>())
            .map(|(name, stmt)| {
                let vals = gens.draw(&mut rng, &stmt.params);
                digests::Probe { name, stmt, vals }
            })
            .collect()
    };
    let (learned, missed) =
        digests::learn(&cluster.admin_options(p), "shapes", &probes, Protocol::Text).await.expect("learn");
    assert!(missed.is_empty(), "not learned: {missed:?}");
    assert_eq!(learned.len(), mix.transactions.len(), "{learned:?}");
    // Learning left no trace: the writes it ran were rolled back.
    assert_eq!(count_on(&cluster, p, "shapes.orders").await, 1000);

    // The load, then the server's digest table.
    {
        let mut c = admin_conn(&cluster, p).await;
        digests::reset(&mut c).await.unwrap();
    }
    let rec = Arc::new(Recorder::new());
    let cfg = LoadConfig { users: 4, duration: Some(Duration::from_secs(4)), seed: 5, ..Default::default() };
    let load = Load::prepare(mix.clone(), cluster.app_options(p), cfg, rec.clone()).await.expect("prepare");
    rec.phase("run");
    load.run().await.expect("load");
    let (n, e) = rec.snapshot().phase("run").unwrap().total_requests();
    assert!(n > 100 && e == 0, "{n} requests, {e} errors");
    let names = digests::Namer::new(learned, Some(mix.clone()));
    let mut c = admin_conn(&cluster, p).await;
    let top = digests::top(&mut c, &["shapes"], &names, 50).await.expect("digests");
    for t in &mix.transactions {
        assert!(
            top.iter().any(|d| d.transaction.as_deref() == Some(t.name.as_str())),
            "{} has no digest: {top:#?}",
            t.name
        );
    }
    for d in &top {
        assert!(d.transaction.is_some(), "a digest tied to nothing: {d:?}");
    }
    // What the old text matching alone would have named.
    let text_only = digests::Namer::new(Default::default(), Some(mix.clone()));
    let unnamed: Vec<&str> =
        top.iter().filter(|d| text_only.name("", &d.digest_text).is_none()).map(|d| d.digest_text.as_str()).collect();
    eprintln!(
        "{}: text matching alone leaves {} of {} digests unnamed: {unnamed:?}",
        case.name,
        unnamed.len(),
        top.len()
    );
    cluster.down(false).await.unwrap();
    assert_nothing_left(&dir);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_shape_is_tied_to_its_transaction_on_mariadb() {
    every_shape_is_tied_to_its_transaction(&PROCESS_MARIADB).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_shape_is_tied_to_its_transaction_on_mysql() {
    every_shape_is_tied_to_its_transaction(&PROCESS_MYSQL).await;
}
