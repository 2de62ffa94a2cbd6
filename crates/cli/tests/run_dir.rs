//! coldswap deletes only what it created. A run dir that is not empty and
//! not coldswap's is refused; a file of the user's own in a run dir survives
//! `cluster down`, an error path (the handle dropped, as on a panic), a
//! SIGTERM, and a later run's sweep of a killed one.

mod common;
use common::*;

use coldswap_db::{Cluster, UpOptions};
use std::path::Path;
use std::time::{Duration, Instant};

const MINE: &str = "notes-of-the-operator.txt";

fn leave_a_file(run_dir: &Path) {
    std::fs::write(run_dir.join(MINE), "mine, not coldswap's\n").unwrap();
}

fn assert_only_mine_left(run_dir: &Path) {
    assert_eq!(std::fs::read_to_string(run_dir.join(MINE)).unwrap(), "mine, not coldswap's\n");
    let left: Vec<String> =
        std::fs::read_dir(run_dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().to_string()).collect();
    assert_eq!(left, vec![MINE.to_string()], "coldswap left files of its own");
    assert!(servers_under(run_dir).is_empty());
}

#[test]
fn a_foreign_directory_is_refused_and_left_alone() {
    let dir = test_dir("rd-foreign");
    let home = dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    leave_a_file(&home);
    let (code, _, err) = cli(&["cluster", "up", "--run-dir", home.to_str().unwrap()], &dir);
    assert_ne!(code, 0);
    assert!(last_line(&err).contains("is not empty and was not made by coldswap"), "{err}");
    assert_only_mine_left(&home);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_users_file_survives_down_and_sigterm() {
    let dir = test_dir("rd-down");
    let run = dir.join("run");
    let (code, _, err) = cli(&["cluster", "up", "--buffer-pool-mb", "32", "--run-dir", run.to_str().unwrap()], &dir);
    assert_eq!(code, 0, "{err}");
    leave_a_file(&run);
    let (code, _, err) = cli(&["cluster", "down", "--run-dir", run.to_str().unwrap()], &dir);
    assert_eq!(code, 0, "{err}");
    assert_only_mine_left(&run);

    // The same dir again is not coldswap's any more: refused. A new one under
    // SIGTERM: coldswap's files go, the user's stays.
    let (code, _, _) = cli(&["cluster", "up", "--run-dir", run.to_str().unwrap()], &dir);
    assert_ne!(code, 0);
    let fg = dir.join("fg");
    let mut child = foreground(&fg, &dir);
    leave_a_file(&fg);
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert_eq!(child.wait().unwrap().code(), Some(143));
    assert_only_mine_left(&fg);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_users_file_survives_a_killed_run_and_its_sweep() {
    let dir = test_dir("rd-kill");
    let fg = dir.join("fg");
    let mut child = foreground(&fg, &dir);
    leave_a_file(&fg);
    let deadline = Instant::now() + Duration::from_secs(30);
    while servers_under(&fg).len() < 2 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // The next run's sweep removes what the killed one made, nothing else.
    let (code, _, err) = cli(&["cluster", "down", "--run-dir", dir.join("other").to_str().unwrap()], &dir);
    assert_eq!(code, 0, "{err}");
    assert_only_mine_left(&fg);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_file_survives_an_error_path() {
    let dir = test_dir("rd-drop");
    let run = dir.join("run");
    let mut opts = UpOptions::new(&run, FROM);
    opts.buffer_pool_mb = 32;
    let (cluster, _) = Cluster::up(opts).await.expect("cluster up");
    leave_a_file(&run);
    // An error or a panic drops the handle: the servers die, coldswap's files go.
    let r = tokio::spawn(async move {
        let _c = cluster;
        panic!("an error half-way through");
    })
    .await;
    assert!(r.is_err());
    assert_only_mine_left(&run);
    let _ = std::fs::remove_dir_all(&dir);
}
