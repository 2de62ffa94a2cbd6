//! Helpers shared by the integration tests. Every test starts real servers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub const FROM: &str = "mariadb-10.11.18";
pub const TO: &str = "mariadb-10.11.19";

/// A fresh, short directory for one test (server sockets need short paths).
pub fn test_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("cst-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_coldswap")
}

/// Run the CLI; returns (exit code, stdout, stderr).
pub fn cli(args: &[&str], cwd: &Path) -> (i32, String, String) {
    let out = Command::new(bin())
        .args(args)
        .current_dir(cwd)
        .env("COLDSWAP_LOG", "warn")
        .output()
        .expect("run coldswap");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Server processes whose command line mentions this directory.
pub fn servers_under(dir: &Path) -> Vec<u32> {
    let needle = dir.to_string_lossy().to_string();
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else { continue };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if (cmd.contains("mariadbd") || cmd.contains("mysqld")) && cmd.contains(&needle) {
            // zombies are already dead
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            if let Some(i) = stat.rfind(')') {
                if stat[i + 1..].trim_start().starts_with('Z') {
                    continue;
                }
            }
            v.push(pid);
        }
    }
    v
}

/// The last non-empty stderr line (the CLI's one-line error).
pub fn last_line(s: &str) -> String {
    s.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").to_string()
}
