//! Issue 9: `coldswap capacity` at the test scale finds a cold capacity
//! strictly below the warm one, with the knee in the JSON and both charts
//! in the HTML, and (issue 20) the cold capacity at a later time since the
//! switchover, and why the warm search stopped. Real servers, real
//! first-touch penalty.

mod common;
use common::*;

#[test]
fn cold_capacity_is_below_warm_and_the_knee_is_reported() {
    let dir = test_dir("capacity");
    let out = dir.join("out");
    let mix = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../loadtests/api.toml");
    let (code, stdout, stderr) = cli(
        &[
            "capacity",
            "--backend",
            "process",
            "--scale",
            "0.1",
            "--buffer-pool-mb",
            "64",
            "--mix",
            mix.to_str().unwrap(),
            "--users",
            "32",
            "--storage-concurrency",
            "2",
            "--start-rate",
            "25",
            "--step-factor",
            "2",
            "--max-steps",
            "6",
            "--warm-max-steps",
            "6",
            "--since-switchover",
            "20s",
            "--step",
            "6s",
            "--slo-p99-ms",
            "150",
            "--slo-error-pct",
            "1",
            "--out",
            out.to_str().unwrap(),
        ],
        &dir,
    );
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    let latest = out.join("latest");
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(latest.join("capacity.json")).unwrap()).unwrap();
    assert_eq!(j["complete"], true, "{j}");
    let warm = j["warm_capacity"].as_f64().unwrap();
    let cold = j["cold_capacity"].as_f64().unwrap();
    assert!(warm > 0.0, "the warm database met the SLO nowhere: {j}");
    assert!(cold < warm, "cold capacity {cold} is not below warm {warm}: {j}");
    // The knee: where the cold SLO broke, and why.
    let kc = &j["knee"]["cold"];
    assert!(kc["first_failed_rate"].as_f64().is_some(), "{kc}");
    assert!(!kc["broken_by"].as_array().unwrap().is_empty(), "{kc}");
    assert_eq!(kc["last_ok_rate"].as_f64().unwrap(), cold);
    let ratio = j["ratio"].as_f64().unwrap();
    assert!((ratio - cold / warm).abs() < 1e-9);
    assert!(j["headroom_pct"].as_f64().unwrap() > 0.0);
    // Steps of both states, in order, each with its measurements.
    let steps = j["steps"].as_array().unwrap();
    assert!(steps.iter().any(|s| s["state"] == "warm") && steps.iter().any(|s| s["state"] == "cold"));
    assert!(steps.iter().all(|s| s["requests"].as_u64().unwrap() > 0));
    // The warm search stopped for a stated reason; a knee it found has a rate.
    let kw = &j["knee"]["warm"];
    match kw["stopped_by"].as_str().unwrap() {
        "slo" => assert!(kw["first_failed_rate"].as_f64().is_some(), "{kw}"),
        "generator" => assert!(j["generator_limit"].as_str().unwrap().contains("behind schedule"), "{j}"),
        "step_limit" => assert_eq!(steps.iter().filter(|s| s["state"] == "warm").count(), 6),
        other => panic!("stopped_by {other}"),
    }
    assert!(steps.iter().all(|s| s["generator_cpu_pct"].as_f64().unwrap() > 0.0), "{j}");
    // Cold capacity over time: at the switchover (fresh restores), then on
    // one restore at least 20 s after it, each from its own steps.
    let ot = j["cold_over_time"].as_array().unwrap();
    assert_eq!(ot.len(), 2, "{j}");
    assert_eq!(ot[0]["since_switchover_s"].as_f64().unwrap(), 0.0);
    assert_eq!(ot[0]["capacity_per_s"].as_f64().unwrap(), cold);
    assert!(ot[1]["since_switchover_s"].as_f64().unwrap() >= 19.5, "{j}");
    let later: Vec<&serde_json::Value> = steps.iter().filter(|s| s["state"] == "cold-later").collect();
    assert!(!later.is_empty(), "{j}");
    let held = later
        .iter()
        .filter(|s| s["met_slo"] == true && s["generator_saturated"] == false)
        .map(|s| s["rate"].as_f64().unwrap())
        .fold(0.0, f64::max);
    assert_eq!(ot[1]["capacity_per_s"].as_f64().unwrap(), held, "{j}");
    let html = std::fs::read_to_string(latest.join("capacity.html")).unwrap();
    assert_eq!(html.matches("<svg").count(), 3, "capacity over time, then p99 and errors against load");
    assert!(stdout.contains("warm capacity"), "{stdout}");
    assert!(servers_under(&dir).is_empty(), "servers left");
    let _ = std::fs::remove_dir_all(&dir);
}
