//! Issue 20: `coldswap gate` on real servers: NO-GO on a replica just
//! restored cold, GO once its buffer pool is loaded, NO-GO on a mix with the
//! 2017 dispatcher's full scan; the same checks on servers named in an
//! external config.

mod common;
use common::*;

#[test]
fn a_cold_replica_is_no_go_until_warmed_and_a_full_scan_is_no_go() {
    let dir = test_dir("gate");
    let _reap = Reap(dir.clone());
    let mix = repo().join("loadtests/api.toml");
    let mix = mix.to_str().unwrap();
    let run = |args: &[&str]| {
        let (code, out, err) = cli(args, &dir);
        (code, out, err)
    };
    let (code, _, err) = run(&["cluster", "up", "--buffer-pool-mb", "64"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = run(&["seed", "--scale", "0.05"]);
    assert_eq!(code, 0, "{err}");
    let fixed = ["gate", "--json", "--mix", mix, "--background", "notify_schedules_fixed"];

    // A fresh restore: every block cold, the buffer pool empty.
    let (code, _, err) = run(&["cold", "reset", "--latency", "1ms"]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = run(&fixed);
    let g = json(&out);
    assert_eq!(code, 5, "{out}\n{err}");
    assert_eq!(g["go"], false);
    let check = |g: &serde_json::Value, name: &str| -> serde_json::Value {
        g["checks"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap().clone()
    };
    let cov = check(&g, "hot_set_coverage");
    assert_eq!(cov["checked"], true, "{cov}");
    assert!(cov["value"].as_f64().unwrap() < 10.0, "{cov}");
    assert!(g["verdict"].as_str().unwrap().starts_with("NO-GO: hot_set_coverage"), "{}", g["verdict"]);
    assert_eq!(check(&g, "replication")["passed"], true);
    assert_eq!(check(&g, "full_scans")["passed"], true, "{}", check(&g, "full_scans"));

    // Its buffer pool loaded from the primary's dump.
    let (code, _, err) = run(&["warm", "--technique", "buffer-pool"]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = run(&fixed);
    let g = json(&out);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(check(&g, "hot_set_coverage")["value"].as_f64().unwrap() >= 80.0, "{out}");

    // The same pair named in an external config, as a team names its
    // staging servers: the same checks, the same verdict.
    let (code, out, err) = run(&["cluster", "status", "--json"]);
    assert_eq!(code, 0, "{err}");
    let st = json(&out);
    let addr = |role: &str| {
        st.as_array().unwrap().iter().find(|n| n["role"] == role).unwrap()["address"].as_str().unwrap().to_string()
    };
    let secrets = json(&std::fs::read_to_string(dir.join(".coldswap/cluster/secrets.json")).unwrap());
    let (user, pw) = (secrets["admin_user"].as_str().unwrap(), secrets["admin_password"].as_str().unwrap());
    std::fs::write(
        dir.join("external.toml"),
        format!(
            "[primary]\naddress = \"{}\"\n[replica]\naddress = \"{}\"\n[credentials]\nuser = \"{user}\"\npassword_env = \"GATE_PW\"\n",
            addr("primary"),
            addr("replica")
        ),
    )
    .unwrap();
    let (code, eout, eerr) = cli_env(
        &["gate", "--external", "external.toml", "--json", "--mix", mix, "--background", "notify_schedules_fixed"],
        &dir,
        &[("GATE_PW", pw)],
    );
    assert_eq!(code, 0, "{eout}\n{eerr}");
    let ge = json(&eout);
    assert_eq!(ge["go"], true);
    for name in ["replication", "full_scans", "hot_set_coverage"] {
        assert_eq!(check(&ge, name)["checked"], true, "{eout}");
    }
    assert!(!eout.contains(pw) && !eerr.contains(pw), "the password leaked");
    // The same config sizes a projection: the mix's tables on that primary
    // (the drill itself then stops at its own bad --scale, before starting
    // anything).
    let (scode, _, serr) = cli_env(
        &["drill", "--project-size-from", "external.toml", "--mix", mix, "--scale", "-1"],
        &dir,
        &[("GATE_PW", pw)],
    );
    let bytes: u64 = serr
        .split("projecting to ")
        .nth(1)
        .and_then(|x| x.split(' ').next())
        .and_then(|x| x.parse().ok())
        .unwrap_or_else(|| panic!("no projection size read: {serr}"));
    assert!(bytes > 1_000_000, "the seeded tables are megabytes: {bytes}");
    assert_ne!(scode, 0);

    // The 2017 mix (the dispatcher's full scan runs by default): NO-GO, named.
    let (code, out, _) = run(&["gate", "--mix", mix]);
    assert_eq!(code, 5, "{out}");
    let first = out.lines().next().unwrap();
    assert!(first.starts_with("NO-GO: full_scans") && first.contains("notify_schedules"), "{out}");

    // Without a mix, the primary's digest table: the seed's one-off
    // INSERT ... SELECTs scan, but are not frequent statements.
    let (code, out, err) = run(&["gate", "--json"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(check(&json(&out), "full_scans")["passed"], true, "{out}");
    // Counted from a single run, they are.
    let (code, out, _) = run(&["gate", "--scan-min-runs", "1"]);
    assert_eq!(code, 5, "{out}");
    assert!(out.starts_with("NO-GO: full_scans: full scans the primary ran: INSERT INTO"), "{out}");

    let (code, _, err) = run(&["cluster", "down"]);
    assert_eq!(code, 0, "{err}");
    assert_nothing_left(&dir);
    let _ = std::fs::remove_dir_all(&dir);
}
