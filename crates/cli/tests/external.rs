//! Issue 9: the external backend. Servers "the user runs" (here a cluster
//! started on loopback by another coldswap, standing in for a staging pair),
//! named in a file; status read from them; upgrade and promotion through
//! hook commands, each verified; non-loopback servers refused without an opt-in.

mod common;
use common::*;

fn ext(args: &[&str], dir: &std::path::Path, pw: &str) -> (i32, String, String) {
    cli_env(args, dir, &[("STAGING_PW", pw)])
}

#[test]
fn existing_servers_upgraded_and_promoted_through_hooks() {
    let dir = test_dir("external");
    let _reap = Reap(dir.clone());
    let run = dir.join("staging");
    let (code, out, err) =
        cli(&["cluster", "up", "--run-dir", run.to_str().unwrap(), "--json", "--buffer-pool-mb", "32"], &dir);
    assert_eq!(code, 0, "{err}");
    let up = json(&out);
    let port = |i: usize| up["nodes"][i]["port"].as_u64().unwrap();
    let secrets = json(&std::fs::read_to_string(run.join("secrets.json")).unwrap());
    let (user, pw) = (secrets["admin_user"].as_str().unwrap(), secrets["admin_password"].as_str().unwrap());
    let me = bin();
    let hooks_log = dir.join("hooks.log");
    let cfg = format!(
        r#"
[primary]
address = "127.0.0.1:{}"
[replica]
address = "127.0.0.1:{}"
[credentials]
user = "{user}"
password_env = "STAGING_PW"
[hooks]
upgrade = "echo upgrade $COLDSWAP_REPLICA >> {log} && {me} -q cluster upgrade --run-dir {run} --to mariadb-10.11.19"
promote = "echo promote $COLDSWAP_PRIMARY $COLDSWAP_REPLICA >> {log} && {me} -q cluster promote --run-dir {run}"
timeout_s = 300
"#,
        port(0),
        port(1),
        log = hooks_log.display(),
        run = run.display(),
    );
    std::fs::write(dir.join("external.toml"), cfg).unwrap();

    let (code, out, err) = ext(&["external", "status", "--json"], &dir, pw);
    assert_eq!(code, 0, "{err}");
    let st = json(&out);
    assert_eq!(st[0]["read_only"], false);
    assert_eq!(st[1]["read_only"], true);
    assert_eq!(st[1]["replication"]["io_running"], "Yes", "{out}");
    assert!(!out.contains(pw) && !err.contains(pw), "the password leaked");

    let (code, out, err) = ext(&["external", "upgrade", "--json"], &dir, pw);
    assert_eq!(code, 0, "{err}");
    let u = json(&out);
    assert!(u["version_before"].as_str().unwrap().starts_with("10.11.18"), "{out}");
    assert!(u["version_after"].as_str().unwrap().starts_with("10.11.19"), "{out}");
    assert_eq!(u["verified"], true);

    let (code, out, err) = ext(&["external", "promote", "--json"], &dir, pw);
    assert_eq!(code, 0, "{err}");
    assert_eq!(json(&out)["verified"], true);
    let log = std::fs::read_to_string(&hooks_log).unwrap();
    assert!(log.contains(&format!("upgrade 127.0.0.1:{}", port(1))), "{log}");
    assert!(log.contains(&format!("promote 127.0.0.1:{} 127.0.0.1:{}", port(0), port(1))), "{log}");
    // A second promotion of the same "replica" is refused by the guardrails:
    // it no longer replicates. The hook does not run.
    let (code, _, err) = ext(&["external", "promote"], &dir, pw);
    assert_ne!(code, 0);
    assert!(last_line(&err).contains("refusing: the replica at") && err.contains("not replicating"), "{err}");
    assert_eq!(std::fs::read_to_string(&hooks_log).unwrap().matches("promote").count(), 1);

    let (code, _, err) = cli(&["cluster", "down", "--run-dir", run.to_str().unwrap()], &dir);
    assert_eq!(code, 0, "{err}");
    assert!(servers_under(&dir).is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn remote_servers_need_an_explicit_opt_in() {
    let dir = test_dir("external-remote");
    std::fs::write(
        dir.join("external.toml"),
        "[primary]\naddress = \"10.255.1.2:3306\"\n[replica]\naddress = \"10.255.1.3:3306\"\n[credentials]\nuser = \"u\"\npassword_env = \"STAGING_PW\"\n",
    )
    .unwrap();
    let (code, out, err) = ext(&["external", "status"], &dir, "pw");
    assert_ne!(code, 0, "{out}");
    let line = last_line(&err);
    assert!(
        line.contains("10.255.1.2:3306") && line.contains("not on loopback") && line.contains("--allow-remote"),
        "{err}"
    );
    // Refused by the address check, before any connection: no "cannot connect".
    assert!(!err.contains("cannot connect"), "{err}");
    // A malformed file names its line.
    std::fs::write(dir.join("bad.toml"), "[primary]\naddress = 3306\n").unwrap();
    let (code, _, err) = ext(&["external", "--config", "bad.toml", "status"], &dir, "pw");
    assert_ne!(code, 0);
    assert!(last_line(&err).contains("bad.toml:2"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A hook that outlives its timeout is killed with everything it started
/// (its process group), not only its shell.
#[test]
fn a_hook_that_times_out_is_killed_with_its_children() {
    let dir = test_dir("external-hook-timeout");
    let marker = format!("31{}", std::process::id() % 10000);
    std::fs::write(
        dir.join("external.toml"),
        format!(
            "[primary]\naddress = \"127.0.0.1:9\"\n[replica]\naddress = \"127.0.0.1:10\"\n[credentials]\nuser = \"u\"\npassword_env = \"STAGING_PW\"\n\
             [hooks]\nupgrade = \"sleep {marker} & sleep {marker}; echo never\"\ntimeout_s = 1\n"
        ),
    )
    .unwrap();
    let (code, _, err) = ext(&["external", "upgrade"], &dir, "pw");
    assert_ne!(code, 0);
    assert!(last_line(&err).contains("did not finish within 1 s") && err.contains("killed"), "{err}");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let left: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.starts_with("sleep ") && c.contains(&marker))
        .collect();
    assert!(left.is_empty(), "the hook's children outlived it: {left:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// What the drill must leave as it found it, per server: reachable,
/// version, read-only, replicating, and whether coldswap's schema is there.
fn servers_state(dir: &std::path::Path, pw: &str) -> Vec<(bool, String, bool, bool)> {
    let (code, out, err) = ext(&["external", "--config", "external.toml", "status", "--json"], dir, pw);
    assert_eq!(code, 0, "{err}");
    json(&out)
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["reachable"].as_bool().unwrap(),
                s["version"].as_str().unwrap_or("").to_string(),
                s["read_only"].as_bool().unwrap_or(false),
                s["replication"]["io_running"] == "Yes" && s["replication"]["sql_running"] == "Yes",
            )
        })
        .collect()
}

/// Whether schema `coldswap_drill` exists on each server of the cluster.
fn own_schema_on(run: &std::path::Path) -> Vec<bool> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = coldswap_db::Cluster::open(run).unwrap();
        let mut out = Vec::new();
        for i in 0..2 {
            let mut conn = c.admin(i).await.unwrap();
            let n = coldswap_sql::query_i64(
                &mut conn,
                "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = 'coldswap_drill'",
            )
            .await
            .unwrap();
            coldswap_sql::close(conn).await;
            out.push(n > 0);
        }
        c.detach();
        out
    })
}

/// Until the drop of coldswap's schema has replicated (at most 20 s).
fn until_schema_gone(run: &std::path::Path) -> Vec<bool> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let s = own_schema_on(run);
        if s.iter().all(|x| !x) || std::time::Instant::now() > deadline {
            return s;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// Issue 19: `coldswap drill --backend external` on a pair coldswap
/// started but drives only through the external config, its upgrade and
/// switchover done by hooks. Refusals first (an unreachable replica, a
/// mix that writes without allow_writes, a failing hook): each one line,
/// both servers left running and unchanged; then the whole drill.
#[test]
fn the_drill_on_servers_the_user_runs() {
    let dir = test_dir("external-drill");
    let _reap = Reap(dir.clone());
    let run = dir.join("staging");
    let r = run.to_str().unwrap();
    let (code, out, err) = cli(&["cluster", "up", "--run-dir", r, "--json", "--buffer-pool-mb", "64"], &dir);
    assert_eq!(code, 0, "{err}");
    let up = json(&out);
    let port = |i: usize| up["nodes"][i]["port"].as_u64().unwrap();
    let (code, _, err) = cli(&["seed", "--run-dir", r, "--scale", "0.05"], &dir);
    assert_eq!(code, 0, "{err}");
    let secrets = json(&std::fs::read_to_string(run.join("secrets.json")).unwrap());
    let (user, pw) = (secrets["admin_user"].as_str().unwrap(), secrets["admin_password"].as_str().unwrap());
    // The load logs in as the application does (coldswap's admin user may write through read_only).
    let (app_user, app_pw) = (secrets["app_user"].as_str().unwrap(), secrets["app_password"].as_str().unwrap());
    let me = bin();
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let external = |replica_port: u64, allow_writes: bool, upgrade: &str| {
        format!(
            "allow_writes = {allow_writes}\n[primary]\naddress = \"127.0.0.1:{}\"\n[replica]\naddress = \"127.0.0.1:{replica_port}\"\n\
             [credentials]\nuser = \"{user}\"\npassword_env = \"STAGING_PW\"\n\
             [app_credentials]\nuser = \"{app_user}\"\npassword_env = \"APP_PW\"\n[hooks]\nupgrade = \"{upgrade}\"\n\
             promote = \"{me} -q cluster promote --demote --run-dir {r}\"\ntimeout_s = 300\n",
            port(0)
        )
    };
    let upgrade = format!("{me} -q cluster upgrade --run-dir {r} --to mariadb-10.11.19");
    std::fs::write(dir.join("external.toml"), external(port(1), true, &upgrade)).unwrap();
    std::fs::write(dir.join("unreachable.toml"), external(closed as u64, true, &upgrade)).unwrap();
    std::fs::write(dir.join("read-only.toml"), external(port(1), false, &upgrade)).unwrap();
    std::fs::write(
        dir.join("failing-hook.toml"),
        external(port(1), true, "echo starting >&2; echo no capacity in zone b >&2; exit 4"),
    )
    .unwrap();
    std::fs::write(
        dir.join("drill.toml"),
        format!(
            "out = \"out\"\nstatus = \"lines\"\n[load]\nmix = \"{}\"\nrate = 150\nusers = 16\n\
             [phases]\nbaseline = \"8s\"\ncold = \"10s\"\nwarm = \"8s\"\n[checks]\nchecksum_chunks_per_s = 200\n",
            repo().join("loadtests/api.toml").display()
        ),
    )
    .unwrap();
    let before = servers_state(&dir, pw);
    assert!(before[0].0 && before[1].0 && !before[0].2 && before[1].2 && before[1].3, "{before:?}");
    let drill = |file: &str| {
        cli_env(
            &["drill", "--external", file, "--config", "drill.toml"],
            &dir,
            &[("STAGING_PW", pw), ("APP_PW", app_pw)],
        )
    };

    // Refusals: one line each; the servers as they were, nothing of coldswap's left.
    let (code, _, err) = drill("unreachable.toml");
    assert_eq!(code, 1, "{err}");
    let line = last_line(&err);
    assert!(line.contains(&format!("cannot reach the replica at 127.0.0.1:{closed}")), "{err}");
    assert_eq!(servers_state(&dir, pw), before);
    assert_eq!(own_schema_on(&run), vec![false, false]);

    let (code, _, err) = drill("read-only.toml");
    assert_eq!(code, 1, "{err}");
    let line = last_line(&err);
    assert!(line.contains("the mix writes") && line.contains("allow_writes = true"), "{err}");
    assert_eq!(servers_state(&dir, pw), before);

    let (code, _, err) = drill("failing-hook.toml");
    assert_eq!(code, 1, "{err}");
    let line = last_line(&err);
    assert!(line.contains("upgrade: the upgrade hook failed") && line.contains("no capacity in zone b"), "{err}");
    let report = json(&std::fs::read_to_string(dir.join("out/latest/report.json")).unwrap());
    assert_eq!(report["complete"], false);
    assert_eq!(until_schema_gone(&run), vec![false, false]);
    assert_eq!(servers_state(&dir, pw), before);
    assert!(!err.contains(pw), "the password leaked");

    // The whole drill, through the hooks.
    let (code, out, err) = drill("external.toml");
    assert!(code == 0 || code == 3, "exit {code}: {err}");
    assert!(!out.contains(pw) && !err.contains(pw) && !err.contains(app_pw), "a password leaked");
    let text = std::fs::read_to_string(dir.join("out/latest/report.json")).unwrap();
    assert!(!text.contains(pw) && !text.contains(app_pw), "a password is in the report");
    let report = json(&text);
    eprintln!(
        "{out}\nswitchover {}\nledger {}\ngate {}\nevents {}",
        report["switchover"], report["invariants"]["ledger"], report["gate"]["verdict"], report["events"]
    );
    assert_eq!(report["complete"], true, "{}", report["incomplete_reason"]);
    assert_eq!(report["cluster"]["backend"], "external");
    assert!(report["cluster"]["from_version"].as_str().unwrap().starts_with("10.11.18"), "{}", report["cluster"]);
    assert!(report["cluster"]["to_version"].as_str().unwrap().starts_with("10.11.19"), "{}", report["cluster"]);
    assert_eq!(report["switchover"]["new_primary"], format!("127.0.0.1:{}", port(1)));
    assert!(report["switchover"]["write_unavailable_seconds"].as_f64().unwrap() > 0.0);
    assert_eq!(report["storage"]["emulated"], false);
    let phases = report["phases"].as_array().unwrap();
    for name in ["baseline", "cold", "warm"] {
        let p = phases.iter().find(|p| p["name"] == name).unwrap_or_else(|| panic!("no {name} phase"));
        assert!(p["requests"].as_u64().unwrap() > 100, "{name}: {p}");
        let d = p["top_digests"].as_array().unwrap();
        assert!(d.iter().any(|d| d["transaction"].is_string()), "{name}: no named digest: {d:?}");
    }
    // The dispatcher's full scan: flagged by lint, heaviest by rows examined.
    assert!(
        report["lint"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["transaction"] == "notify_schedules" && l["full_scan"] == true),
        "{}",
        report["lint"]
    );
    assert_eq!(report["heaviest_hitter"]["transaction"], "notify_schedules", "{}", report["heaviest_hitter"]);
    let inv = report["invariant_results"].as_array().unwrap();
    for name in ["write_ledger", "replica_consistent"] {
        let i = inv.iter().find(|i| i["name"] == name).unwrap_or_else(|| panic!("no {name}: {inv:?}"));
        assert!(i["checked"] == true && i["passed"] == true, "{i}");
    }
    assert!(
        report["invariants"]["ledger"]["coldswap_ledger_acked"].as_u64().unwrap() > 100,
        "{}",
        report["invariants"]
    );
    assert!(report["gate"]["verdict"].is_string());
    assert!(report["events"].as_array().unwrap().iter().any(|e| e["name"] == "cleanup"), "{}", report["events"]);
    assert!(dir.join("out/latest/report.html").is_file());
    // Both servers still run; the replica is the primary now, on the new version; nothing of coldswap's is left.
    let after = servers_state(&dir, pw);
    assert!(after[0].0 && after[1].0, "{after:?}");
    assert!(after[0].2 && !after[1].2, "{after:?}");
    assert!(after[1].1.starts_with("10.11.19"), "{after:?}");
    assert_eq!(own_schema_on(&run), vec![false, false]);

    let (code, _, err) = cli(&["cluster", "down", "--run-dir", r], &dir);
    assert_eq!(code, 0, "{err}");
    assert!(servers_under(&dir).is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}
