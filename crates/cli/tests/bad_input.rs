//! Issue 8: a corpus of broken configs and mixes, each with its expected
//! one-line error, a non-zero exit, and nothing started.

mod common;
use common::*;
use std::path::PathBuf;

fn corpus(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/bad_input").join(name).display().to_string()
}

fn mix(name: &str) -> String {
    corpus(name)
}

/// (args, expected piece of the last stderr line)
fn cases() -> Vec<(Vec<String>, String)> {
    let drill = |f: &str| vec!["drill".to_string(), "--config".into(), corpus(f)];
    vec![
        (drill("malformed.toml"), format!("{}:1: ", corpus("malformed.toml"))),
        (drill("unknown_key.toml"), format!("{}:3: unknown field `frobnicate`", corpus("unknown_key.toml"))),
        (
            drill("negative_duration.toml"),
            format!(
                "{}:3: phases.cold: invalid duration '-30s': must not be negative",
                corpus("negative_duration.toml")
            ),
        ),
        (
            drill("unknown_version.toml"),
            format!("{}:3: cluster.to: unknown server version 'mariadb-12.0.99'", corpus("unknown_version.toml")),
        ),
        (drill("bad_scale.toml"), format!("{}:2: data.scale: invalid scale", corpus("bad_scale.toml"))),
        (
            drill("mysql_unknown_version.toml"),
            format!("{}:3: cluster.to: unknown server version 'mysql-8.0.36'", corpus("mysql_unknown_version.toml")),
        ),
        (
            drill("flavor_mismatch.toml"),
            format!(
                "{}:3: cluster.to: cannot upgrade mariadb-10.11.18 to mysql-9.7.4: a different server flavor",
                corpus("flavor_mismatch.toml")
            ),
        ),
        (
            drill("unknown_technique.toml"),
            format!("{}:2: warmup.technique: unknown warm-up technique 'magic'", corpus("unknown_technique.toml")),
        ),
        (
            drill("kill_switch_outside.toml"),
            format!("{}:6: kill_switch.at: 45s is not inside the cold phase (30s)", corpus("kill_switch_outside.toml")),
        ),
        (
            drill("kill_switch_unknown.toml"),
            "kill_switch.target 'no_such_job' is not a transaction or background job".into(),
        ),
        (
            vec!["load".into(), "--mix".into(), mix("mix_bad_weight.toml"), "--target".into(), "127.0.0.1:1".into()],
            format!(
                "{}:6: transaction 't': weight must be a whole number from 1 to 10000, not 0",
                mix("mix_bad_weight.toml")
            ),
        ),
        (
            vec!["load".into(), "--mix".into(), mix("mix_duplicate.toml"), "--target".into(), "127.0.0.1:1".into()],
            format!("{}:10: duplicate transaction or background job name 't'", mix("mix_duplicate.toml")),
        ),
        (
            vec![
                "load".into(),
                "--mix".into(),
                mix("mix_unknown_generator.toml"),
                "--target".into(),
                "127.0.0.1:1".into(),
            ],
            format!("{}:6: generator 'g': unknown kind 'gaussian'", mix("mix_unknown_generator.toml")),
        ),
        (
            vec![
                "load".into(),
                "--mix".into(),
                mix("mix_bad_weight.toml").replace("mix_bad_weight", "no_such_file"),
                "--target".into(),
                "127.0.0.1:1".into(),
            ],
            "no_such_file.toml:0: cannot read".into(),
        ),
        (
            vec![
                "load".into(),
                "--mix".into(),
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../loadtests/api.toml").display().to_string(),
                "--target".into(),
                "10.1.2.3:3306".into(),
                "--user".into(),
                "app".into(),
            ],
            "target 10.1.2.3:3306 (10.1.2.3) is not on loopback; pass --allow-remote to send load to it".into(),
        ),
        (
            vec!["cluster".into(), "up".into(), "--from".into(), "mariadb-9.9.9".into()],
            "unknown server version 'mariadb-9.9.9'".into(),
        ),
        (vec!["seed".into(), "--scale".into(), "zero".into()], "invalid scale 'zero'".into()),
        (
            vec!["cluster".into(), "status".into(), "--run-dir".into(), "/nonexistent/run".into()],
            "no cluster in /nonexistent/run".into(),
        ),
        (
            vec!["compare".into(), "/nonexistent/a.json".into(), "/nonexistent/b.json".into()],
            "cannot read /nonexistent/a.json".into(),
        ),
    ]
}

#[test]
fn every_bad_input_gets_its_one_line_error() {
    let dir = test_dir("corpus");
    for (args, want) in cases() {
        let a: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        let t = std::time::Instant::now();
        let (code, _, err) = cli(&a, &dir);
        // The one line that says what is wrong (clap adds usage lines after its own).
        let line =
            err.lines().find(|l| l.starts_with("coldswap: error") || l.starts_with("error:")).unwrap_or("").to_string();
        assert_ne!(code, 0, "{a:?} succeeded");
        assert!(line.contains(&want), "{a:?}\n  want: {want}\n  got:  {line}\n  stderr: {err}");
        assert!(t.elapsed().as_secs() < 30, "{a:?} took {:?} to fail", t.elapsed());
    }
    // Nothing was started and nothing was written.
    assert!(servers_under(&dir).is_empty());
    assert!(!dir.join("target/drill").exists(), "a report dir was created for bad input");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_that_does_not_parse_fails_before_any_load() {
    use coldswap_db::{Cluster, UpOptions};
    let dir = test_dir("badsql");
    let mut opts = UpOptions::new(dir.join("run"), FROM);
    opts.buffer_pool_mb = 32;
    let (cluster, _) = Cluster::up(opts).await.unwrap();
    cluster.seed(0.01, false, &|_| {}).await.unwrap();
    let run = cluster.run_dir().display().to_string();
    let (code, out, err) =
        cli(&["load", "--mix", &mix("mix_bad_sql.toml"), "--target", &run, "--duration", "5s"], &dir);
    assert_eq!(code, 1, "{out}");
    let line = last_line(&err);
    assert!(line.contains(&format!("{}:13: transaction 'typo': server error 1064", mix("mix_bad_sql.toml"))), "{line}");
    cluster.down(false).await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
