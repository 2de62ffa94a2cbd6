//! Issue 8: both databases of the incident, each on its own cluster with its
//! own mix, upgraded in parallel, and both reported (one index over them).

mod common;
use common::*;

#[test]
fn api_and_import_queue_clusters_are_drilled_in_parallel() {
    let dir = test_dir("drillset");
    let out = dir.join("out");
    let repo = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap();
    let (code, stdout, stderr) = cli(
        &[
            "drill",
            "--config",
            "drill.toml",
            "--config",
            "drills/import_queue.toml",
            "--scale",
            "0.1",
            "--buffer-pool-mb",
            "64",
            "--users",
            "24",
            "--rate",
            "200",
            "--baseline",
            "5s",
            "--cold",
            "15s",
            "--warm",
            "5s",
            "--out",
            out.to_str().unwrap(),
        ],
        &repo,
    );
    // Thresholds may fail (exit 3: the cold phase is meant to hurt); nothing else may.
    assert!(code == 0 || code == 3, "exit {code}\nstdout: {stdout}\nstderr: {stderr}");
    let latest = out.join("latest");
    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(latest.join("index.json")).unwrap()).unwrap();
    let drills = index["drills"].as_array().unwrap();
    assert_eq!(drills.len(), 2, "{index}");
    let want = [("drill", "authenticate", "api"), ("import_queue", "task_status", "import_queue")];
    let mut clusters = Vec::new();
    let mut spans = Vec::new();
    for (d, (name, txn, _db)) in drills.iter().zip(want) {
        assert_eq!(d["name"], name);
        assert_eq!(d["complete"], true, "{d}");
        let rdir = latest.join(d["report"].as_str().unwrap());
        let r: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(rdir.join("report.json")).unwrap()).unwrap();
        // Each drill ran its own mix...
        let cold = r["phases"].as_array().unwrap().iter().find(|p| p["name"] == "cold").unwrap();
        assert!(cold["transactions"].as_array().unwrap().iter().any(|t| t["name"] == txn), "{name}: no {txn}");
        // ...lost no acknowledged write...
        assert_eq!(r["invariants"]["ledger"]["lost"], 0, "{name}: {}", r["invariants"]);
        assert!(r["invariants"]["ledger"]["acked"].as_u64().unwrap() > 0, "{name}: {}", r["invariants"]);
        // ...on its own cluster.
        let ports: Vec<u64> =
            r["cluster"]["nodes"].as_array().unwrap().iter().filter_map(|n| n["port"].as_u64()).collect();
        clusters.push(ports);
        let t = r["started_at"].as_str().unwrap();
        let secs = |x: &str| x.parse::<f64>().unwrap();
        let start = secs(&t[11..13]) * 3600.0 + secs(&t[14..16]) * 60.0 + secs(&t[17..19]);
        spans.push((start, start + r["duration_s"].as_f64().unwrap()));
    }
    assert!(spans[0].0 < spans[1].1 && spans[1].0 < spans[0].1, "the drills ran one after the other: {spans:?}");
    assert!(clusters[0].iter().all(|p| !clusters[1].contains(p)), "the drills shared a server: {clusters:?}");
    assert!(stdout.contains("index:"), "{stdout}");
    assert!(servers_under(&dir).is_empty(), "servers left");
    let _ = std::fs::remove_dir_all(&dir);
}
