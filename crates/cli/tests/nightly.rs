//! Issue 22: the nightly job. drills/nightly.toml passes on the current
//! code; two of its drills are compared (with intervals) and show no
//! regression; a planted regression (show_job loses its index) is
//! named by compare and fails the drill, whose report goes into a GitHub
//! step summary with an annotation per failed rule.
//!
//! One test, its drills one after the other: cargo runs test binaries in
//! turn, so nothing else shares the machine while the pair is compared.

mod common;
use common::*;

const TEST_SCALE: &[&str] = &[
    "--scale",
    "0.05",
    "--buffer-pool-mb",
    "64",
    "--rate",
    "200",
    "--users",
    "24",
    "--baseline",
    "20s",
    "--cold",
    "25s",
    "--warm",
    "10s",
];

fn drill(dir: &std::path::Path, name: &str, extra: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = dir.join(name);
    let mut args: Vec<&str> = vec!["drill", "--config", "drills/nightly.toml", "--out", out.to_str().unwrap()];
    args.extend_from_slice(TEST_SCALE);
    args.extend_from_slice(extra);
    cli_env(&args, &repo(), env)
}

#[test]
fn nightly_passes_and_a_planted_regression_is_named() {
    let dir = test_dir("nightly");
    let report = |name: &str| dir.join(name).join("latest/report.json");

    // Two drills of the same build: both pass.
    for name in ["a", "b"] {
        let (code, out, err) = drill(&dir, name, &[], &[]);
        assert_eq!(code, 0, "{name}: the nightly drill failed on a healthy build\n{out}\n{err}");
        let r = json(&std::fs::read_to_string(report(name)).unwrap());
        assert_eq!(r["verdict"]["passed"], true, "{}", r["verdict"]);
    }
    // Compared: each delta with its interval, and no regression between two
    // drills of one build (the between-run noise is in the interval).
    let (code, out, err) = cli(&["compare", report("a").to_str().unwrap(), report("b").to_str().unwrap()], &dir);
    assert!(out.contains("new/old [interval]") && out.contains(" [x"), "{out}");
    assert!(out.contains("family-wise"), "{out}");
    assert_eq!(code, 0, "two drills of one build compared as a regression:\n{out}\n{err}");

    // A planted regression: show_job's lookup no longer uses the primary
    // key, as a careless rewrite would do.
    let mix = std::fs::read_to_string(repo().join("loadtests/api.toml")).unwrap();
    let planted = mix.replace("FROM jobs WHERE id = :job\"\"\"", "FROM jobs WHERE id + 0 = :job\"\"\"");
    assert_ne!(planted, mix, "the planted change did not apply");
    let planted_path = dir.join("planted.toml");
    std::fs::write(&planted_path, planted).unwrap();
    let summary = dir.join("step-summary.md");
    let (code, out, err) = drill(
        &dir,
        "c",
        &["--mix", planted_path.to_str().unwrap()],
        &[("GITHUB_STEP_SUMMARY", summary.to_str().unwrap())],
    );
    assert_eq!(code, 3, "the planted full scan did not fail the drill\n{out}\n{err}");
    // In GitHub Actions: the report in the step summary, failures annotated.
    let s = std::fs::read_to_string(&summary).expect("the step summary was written");
    assert!(s.starts_with("# coldswap drill"), "{}", &s[..s.len().min(300)]);
    assert!(s.contains("full_scans"), "{s}");
    let notes: Vec<&str> = out.lines().filter(|l| l.starts_with("::error title=coldswap ")).collect();
    assert!(notes.iter().any(|l| l.starts_with("::error title=coldswap threshold full_scans::")), "{out}");
    assert!(!out.contains("::error title=coldswap invariant"), "no invariant broke: {out}");
    // compare names it, beyond the noise.
    let (code, out, _) = cli(&["compare", report("a").to_str().unwrap(), report("c").to_str().unwrap()], &dir);
    assert_eq!(code, 4, "{out}");
    let named: Vec<&str> = out.lines().filter(|l| l.starts_with("regression: ")).collect();
    assert!(named.iter().any(|l| l.contains("/show_job: p99 ")), "{out}");
    // Against a history of two good runs, as the nightly workflow keeps.
    let (code, out, _) = cli(
        &["compare", report("a").to_str().unwrap(), report("b").to_str().unwrap(), report("c").to_str().unwrap()],
        &dir,
    );
    assert_eq!(code, 4, "{out}");
    assert!(out.lines().any(|l| l.starts_with("regression: ") && l.contains("/show_job: p99 ")), "{out}");
    assert!(out.contains("with 2 earlier run(s)"), "{out}");
    assert!(servers_under(&dir).is_empty(), "servers left");
    let _ = std::fs::remove_dir_all(&dir);
}
