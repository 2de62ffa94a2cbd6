//! Issue 20: `coldswap warmups` runs every technique, each a whole drill on
//! real servers, and orders them sensibly on the time to warm it measured.

mod common;
use common::*;

/// Seconds to warm, never-warm as infinity.
fn ttw(row: &serde_json::Value) -> f64 {
    row["time_to_warm_s"].as_f64().unwrap_or(f64::INFINITY)
}

#[test]
fn every_technique_runs_and_no_penalty_beats_none() {
    let dir = test_dir("warmups");
    let mix = repo().join("loadtests/api.toml");
    // A small dataset on the drill's volume, the 2017 dispatcher on 8 API
    // nodes, so that a node nobody warmed is slow for a while; a shorter
    // hold so that warmth can show inside a 30 s cold phase.
    std::fs::write(
        dir.join("drill.toml"),
        format!(
            "out = \"{}\"\n[cluster]\nbuffer_pool_mb = 64\n[data]\nscale = 0.1\n[load]\nmix = \"{}\"\nrate = 200.0\n\
             users = 32\nbackground = [\"notify_schedules\"]\napi_nodes = 8\n[phases]\nbaseline = \"6s\"\ncold = \"30s\"\n\
             warm = \"2s\"\n[warmth]\nhold_s = 5\n[checks]\nchecksum = false\n[queue]\nenabled = false\n",
            dir.join("out").display(),
            mix.display()
        ),
    )
    .unwrap();
    let (code, stdout, stderr) = cli(&["warmups", "--config", "drill.toml"], &dir);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("Warm-up techniques compared"), "{stdout}");
    let latest = dir.join("out/latest");
    let t = json(&std::fs::read_to_string(latest.join("warmups.json")).unwrap());
    assert_eq!(t["complete"], true);
    let rows = t["rows"].as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["technique"].as_str().unwrap()).collect();
    eprintln!("{}", std::fs::read_to_string(latest.join("warmups.md")).unwrap());
    for n in ["none", "buffer-pool-25", "buffer-pool", "volume-read", "prefetch", "hydration", "no-penalty"] {
        assert!(names.contains(&n), "{n} missing from {names:?}");
    }
    let row = |n: &str| rows.iter().find(|r| r["technique"] == n).unwrap();
    for r in rows {
        assert_eq!(r["complete"], true, "{r}");
        assert!(!r["series"].as_array().unwrap().is_empty(), "{r}");
        assert!(latest.join(r["report"].as_str().unwrap()).join("report.json").is_file(), "{r}");
    }
    // The table is ordered by what it measured.
    let times: Vec<f64> = rows.iter().map(ttw).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{names:?} {times:?}");
    // A volume without the first-touch penalty is warm within the phase,
    // and not later than the same cold buffer pool on the penalised volume
    // (`none`). It is not asserted to beat the techniques that also warm the
    // buffer pool: at this scale the pool holds the mix's pages, so those
    // can warm sooner than a cold pool on a fast volume, and `hydration`
    // finishes before the switchover here and equals it up to noise (one
    // CI run had 0 s against 3 s).
    let floor = ttw(row("no-penalty"));
    assert!(floor.is_finite(), "no-penalty never warm: {}", row("no-penalty"));
    assert!(floor <= ttw(row("none")) + 1.0, "no-penalty ({floor}) slower than {}", row("none"));
    // Nobody warming it is not faster than the whole buffer pool loaded.
    assert!(
        ttw(row("none")) + 1.0 >= ttw(row("buffer-pool")),
        "none {} buffer-pool {}",
        row("none"),
        row("buffer-pool")
    );
    // Each warm-up did what it says: the default dump share loads fewer
    // pages than the whole pool; the volume read fetched from the volume.
    let pages = |n: &str| -> u64 {
        row(n)["warmup_detail"].as_str().unwrap().split_whitespace().next().unwrap().parse().unwrap()
    };
    assert!(pages("buffer-pool-25") < pages("buffer-pool"), "{} / {}", row("buffer-pool-25"), row("buffer-pool"));
    assert!(row("volume-read")["warmup_mib"].as_f64().unwrap() > 1.0, "{}", row("volume-read"));
    assert_eq!(row("none")["warmup_mib"].as_f64().unwrap(), 0.0);
    assert!(std::fs::read_to_string(latest.join("warmups.html")).unwrap().contains("<svg"));
    assert_nothing_left(&dir);
    let _ = std::fs::remove_dir_all(&dir);
}
