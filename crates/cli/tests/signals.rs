//! Issue 8: a signal in the middle of a drill stops the load, tears every
//! server down, writes a partial report marked incomplete, and exits 130/143.

mod common;
use common::*;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

fn drill_until(dir: &std::path::Path, phase: &str, sig: i32) -> (i32, serde_json::Value) {
    let cfg = dir.join("drill.toml");
    let mix = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../loadtests/api.toml");
    std::fs::write(
        &cfg,
        format!(
            "out = \"{}\"\n[cluster]\nbuffer_pool_mb = 32\n[data]\nscale = 0.02\n[load]\nmix = \"{}\"\nrate = 200.0\nusers = 16\n\
             [phases]\nbaseline = \"3s\"\ncold = \"120s\"\nwarm = \"3s\"\n[queue]\nenabled = true\nworkers = 2\n",
            dir.join("out").display(),
            mix.display()
        ),
    )
    .unwrap();
    let mut child = Command::new(bin())
        .args(["drill", "--config"])
        .arg(&cfg)
        .current_dir(dir)
        .env("COLDSWAP_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let marker = format!("phase {phase}:");
    let (tx, rx) = std::sync::mpsc::channel();
    // Read stderr on a thread (so the child never blocks on a full pipe).
    std::thread::spawn(move || {
        for l in lines.map_while(Result::ok) {
            if l.contains(&marker) {
                let _ = tx.send(());
            }
        }
    });
    if rx.recv_timeout(std::time::Duration::from_secs(300)).is_err() {
        let _ = child.kill();
        panic!("the drill never reached phase {phase}");
    }
    std::thread::sleep(std::time::Duration::from_secs(2));
    unsafe { libc::kill(child.id() as i32, sig) };
    let st = child.wait().unwrap();
    let report = std::fs::read_to_string(dir.join("out/latest/report.json")).expect("a partial report");
    (st.code().unwrap_or(-1), serde_json::from_str(&report).unwrap())
}

#[test]
fn sigint_during_the_cold_phase_leaves_nothing_and_marks_the_report() {
    let dir = test_dir("sigint");
    let (code, r) = drill_until(&dir, "cold", libc::SIGINT);
    assert_eq!(code, 130);
    assert!(servers_under(&dir).is_empty(), "servers left: {:?}", servers_under(&dir));
    assert_eq!(r["complete"], false);
    assert!(r["incomplete_reason"].as_str().unwrap().contains("interrupted by SIGINT"), "{}", r["incomplete_reason"]);
    assert!(r["verdict"]["headline"].as_str().unwrap().starts_with("INCOMPLETE"));
    // What ran is in it: the baseline and the start of the cold phase.
    let names: Vec<&str> = r["phases"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"baseline") && names.contains(&"cold"), "{names:?}");
    assert!(!dir.join("out/latest/cluster").exists(), "the run dir was left behind");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sigterm_during_the_baseline_exits_143() {
    let dir = test_dir("sigterm-drill");
    let (code, r) = drill_until(&dir, "baseline", libc::SIGTERM);
    assert_eq!(code, 143);
    assert!(servers_under(&dir).is_empty());
    assert_eq!(r["complete"], false);
    let _ = std::fs::remove_dir_all(&dir);
}
