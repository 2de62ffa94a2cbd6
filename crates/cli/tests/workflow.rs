//! Issue 9: the nightly GitHub Actions workflow is valid (checked against
//! the GitHub workflow JSON schema with check-jsonschema, offline; `make
//! tools` installs it) and runs commands this repository has.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

fn validate(file: &Path) -> (bool, String) {
    let out = Command::new("check-jsonschema")
        .args(["--builtin-schema", "vendor.github-workflows"])
        .arg(file)
        .output()
        .expect("check-jsonschema is not installed (make tools installs it)");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr))
}

#[test]
fn nightly_workflow_is_valid_and_uses_real_commands() {
    let wf = repo().join(".github/workflows/nightly.yml");
    let (ok, out) = validate(&wf);
    assert!(ok, "{out}");
    let text = std::fs::read_to_string(&wf).unwrap();
    // What it runs exists: the make target and backend, and the CLI's compare.
    let makefile = std::fs::read_to_string(repo().join("Makefile")).unwrap();
    assert!(text.contains("make upgrade-drill BACKEND=container"));
    // It runs the nightly drill, which exists and parses (tests/nightly.rs runs it).
    assert!(text.contains("DRILL_CONFIG=drills/nightly.toml"));
    coldswap_drill::config::DrillConfig::load(&repo().join("drills/nightly.toml")).expect("drills/nightly.toml");
    assert!(makefile.contains("DRILL_CONFIG ?="), "make upgrade-drill DRILL_CONFIG=... must reach the drill");
    assert!(makefile.contains("upgrade-drill:"));
    assert!(text.contains("coldswap compare"));
    let help = Command::new(env!("CARGO_BIN_EXE_coldswap")).args(["compare", "--help"]).output().unwrap();
    assert!(help.status.success());
    assert!(text.contains("report.junit.xml"));
}

#[test]
fn a_broken_workflow_is_caught() {
    // The check can fail: a job without runs-on and a step with an unknown key.
    let dir = std::env::temp_dir().join(format!("cst-wf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.yml");
    std::fs::write(&bad, "name: x\non: push\njobs:\n  a:\n    steps:\n      - runn: echo hi\n").unwrap();
    let (ok, out) = validate(&bad);
    assert!(!ok, "a broken workflow passed: {out}");
    let _ = std::fs::remove_dir_all(&dir);
}
