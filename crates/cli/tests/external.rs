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
