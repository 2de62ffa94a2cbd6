//! Issue 7: the same lifecycle on containers. A MariaDB 10.11 primary and
//! replica (images built by `make images` from Debian packages), replicating
//! by container name; the replica upgraded in place to the 11.8 image on the
//! same named volume; promoted; written to; torn down with no container,
//! network or volume left.
//!
//! Without a Docker engine these tests say they are skipped, on stderr; with
//! COLDSWAP_REQUIRE_DOCKER=1 (set by .ci/run) a missing engine or image fails them.

mod common;
use common::*;

use coldswap_db::{BackendKind, Cluster, UpOptions};

/// The shared lifecycle (tests/common) on containers: a real major upgrade
/// in place, on the same named volume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_up_replicate_upgrade_to_11_8_promote_down() {
    if skip_or_fail("container_up_replicate_upgrade_to_11_8_promote_down", case_ready(&CONTAINER_MARIADB)) {
        return;
    }
    lifecycle(&CONTAINER_MARIADB).await;
}

/// The same lifecycle on Oracle MySQL 9.7 containers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_mysql_up_replicate_upgrade_promote_down() {
    if skip_or_fail("container_mysql_up_replicate_upgrade_promote_down", case_ready(&CONTAINER_MYSQL)) {
        return;
    }
    lifecycle(&CONTAINER_MYSQL).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_container_cluster_leaves_nothing() {
    if skip_or_fail("dropped_container_cluster_leaves_nothing", case_ready(&CONTAINER_MARIADB)) {
        return;
    }
    let dir = test_dir("ctrdrop");
    let mut opts = UpOptions::new(dir.join("run"), CONTAINER_MARIADB.from);
    opts.backend = BackendKind::Container;
    opts.buffer_pool_mb = 32;
    let (cluster, _) = Cluster::up(opts).await.expect("cluster up on containers");
    let res = resources_under(&dir);
    assert_eq!(res.iter().filter(|r| r.starts_with("container ")).count(), 2, "{res:?}");
    assert_eq!(res.iter().filter(|r| r.starts_with("volume ")).count(), 2, "{res:?}");
    assert_eq!(res.iter().filter(|r| r.starts_with("network ")).count(), 1, "{res:?}");
    // Replication goes by container name on the private network.
    assert_eq!(Some(cluster.peer_addr(0).0.as_str()), cluster.node(0).handle.container());
    // An error path or a panic drops the handle: its containers go with it.
    drop(cluster);
    assert_nothing_left(&dir);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_image_is_one_clear_line() {
    if skip_or_fail("missing_image_is_one_clear_line", docker_engine()) {
        return;
    }
    let dir = test_dir("ctrmiss");
    let mut opts = UpOptions::new(dir.join("run"), "coldswap/mariadb:0.1");
    opts.backend = BackendKind::Container;
    let e = match Cluster::up(opts).await {
        Ok(_) => panic!("a cluster came up on an image that does not exist"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("coldswap/mariadb:0.1") && e.contains("make images") && e.contains("--backend process"), "{e}");
    assert!(!e.contains('\n'), "{e}");
    assert!(!dir.join("run").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

/// The whole drill on containers (what `make upgrade-drill BACKEND=container`
/// runs), at a small scale with short phases: a real 10.11 -> 11.8 upgrade,
/// a cold new primary behind the first-touch emulator mounted into its
/// container, and the same report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drill_runs_on_containers() {
    if skip_or_fail("the_drill_runs_on_containers", case_ready(&CONTAINER_MARIADB)) {
        return;
    }
    let dir = test_dir("ctrdrill");
    let mut c = coldswap_drill::DrillConfig::default();
    c.cluster.backend = "container".into();
    c.cluster.buffer_pool_mb = 64;
    c.out = dir.join("out");
    c.data.scale = 0.1;
    c.load.mix = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../loadtests/api.toml");
    c.load.rate = 300.0;
    c.load.users = 32;
    c.phases.baseline = "5s".into();
    c.phases.cold = "15s".into();
    c.phases.warm = "5s".into();
    let o = coldswap_drill::run(c, None).await.expect("drill on containers");
    assert!(o.report.complete, "{:?}", o.error);
    assert_eq!(o.report.cluster.backend, "container");
    assert!(o.report.cluster.from_version.starts_with("10.11."), "{}", o.report.cluster.from_version);
    assert!(o.report.cluster.to_version.starts_with("11.8."), "{}", o.report.cluster.to_version);
    for p in ["baseline", "cold", "warm"] {
        assert!(o.report.phase(p).is_some(), "no {p} phase");
    }
    // The cold phase really read through the emulator inside the container.
    assert_eq!(o.report.storage["cold_verified"], serde_json::json!(true), "{}", o.report.storage);
    assert!(o.report.storage["cold_phase_counters"]["cold_blocks"].as_u64().unwrap_or(0) > 0, "{}", o.report.storage);
    assert_eq!(o.report.invariants["ledger"]["lost"], serde_json::json!(0), "{}", o.report.invariants);
    assert_eq!(o.report.invariants["checksum"]["consistent"], serde_json::json!(true), "{}", o.report.invariants);
    for f in ["report.json", "report.md", "report.html", "report.junit.xml"] {
        assert!(o.dir.join(f).is_file(), "no {f}");
    }
    // Nothing left: no container, volume or network of coldswap's.
    assert_nothing_left(&dir);
    let _ = std::fs::remove_dir_all(&dir);
}
