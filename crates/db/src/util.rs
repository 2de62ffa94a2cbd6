//! Small OS helpers: file locks, pids, ports, timing.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::time::Instant;

/// An exclusive advisory lock on a file, released on drop.
pub struct FileLock {
    _file: File,
}

impl FileLock {
    pub fn acquire(path: &Path) -> Result<FileLock> {
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .with_context(|| format!("cannot open lock file {}", path.display()))?;
        // SAFETY: flock on a valid fd.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        if rc != 0 {
            bail!("cannot lock {}: {}", path.display(), std::io::Error::last_os_error());
        }
        Ok(FileLock { _file: file })
    }

    /// Take the lock only if nobody holds it.
    pub fn try_acquire(path: &Path) -> Result<Option<FileLock>> {
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .with_context(|| format!("cannot open lock file {}", path.display()))?;
        // SAFETY: flock on a valid fd.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            return Ok(None);
        }
        Ok(Some(FileLock { _file: file }))
    }
}

/// Whether a process with this pid exists (and is not a zombie).
pub fn pid_alive(pid: u32) -> bool {
    if pid == 0 {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => {
            // state is the field after the parenthesised command name
            match s.rfind(')') {
                Some(i) => !s[i + 1..].trim_start().starts_with('Z'),
                None => true,
            }
        }
        Err(_) => false,
    }
}

/// The command line of a process, NUL separators replaced by spaces.
pub fn pid_cmdline(pid: u32) -> Option<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .ok()
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
}

pub fn send_signal(pid: u32, sig: i32) -> bool {
    // SAFETY: kill has no memory preconditions.
    unsafe { libc::kill(pid as i32, sig) == 0 }
}

/// A free TCP port on 127.0.0.1, as the kernel hands it out.
pub fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("cannot bind a loopback port")?;
    Ok(l.local_addr()?.port())
}

/// Fail with one clear line if a loopback port is taken.
pub fn ensure_port_free(port: u16) -> Result<()> {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    match TcpListener::bind(addr) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            bail!("port {port} on 127.0.0.1 is already in use")
        }
        Err(e) => bail!("cannot bind port {port} on 127.0.0.1: {e}"),
    }
}

/// One timed step of a lifecycle operation.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Step {
    pub name: String,
    pub seconds: f64,
}

/// Collects timed steps.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Steps(pub Vec<Step>);

impl Steps {
    pub fn push(&mut self, name: &str, started: Instant) {
        let seconds = started.elapsed().as_secs_f64();
        tracing::info!(step = name, seconds = format!("{seconds:.3}"), "step done");
        self.0.push(Step { name: name.to_string(), seconds });
    }

    /// Time an async step and record it.
    pub async fn time<T, F>(&mut self, name: &str, f: F) -> Result<T>
    where
        F: std::future::Future<Output = Result<T>>,
    {
        let t = Instant::now();
        let r = f.await;
        if r.is_ok() {
            self.push(name, t);
        }
        r.with_context(|| format!("step '{name}' failed"))
    }

    pub fn extend(&mut self, other: Steps) {
        self.0.extend(other.0);
    }
}

/// A random alphanumeric secret from the kernel's generator.
pub fn random_secret(len: usize) -> String {
    const ALPHA: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut buf = vec![0u8; len];
    if let Ok(mut f) = File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut buf);
    }
    buf.iter().map(|b| ALPHA[*b as usize % ALPHA.len()] as char).collect()
}

/// Write a file readable by its owner only.
pub fn write_private(path: &Path, contents: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(contents)?;
    Ok(())
}

/// Write a file atomically (temp + rename), so a reader or a crash never sees half of it.
pub fn write_atomic(path: &Path, contents: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, contents).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_in_use_is_reported() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let e = ensure_port_free(port).unwrap_err().to_string();
        assert_eq!(e, format!("port {port} on 127.0.0.1 is already in use"));
        drop(l);
        ensure_port_free(port).unwrap();
    }

    #[test]
    fn own_pid_is_alive() {
        assert!(pid_alive(std::process::id()));
        assert!(!pid_alive(0));
    }

    #[test]
    fn secrets_differ() {
        let a = random_secret(20);
        assert_eq!(a.len(), 20);
        assert_ne!(a, random_secret(20));
    }
}

/// Bytes available to us on the filesystem holding `path` (or its nearest
/// existing ancestor).
pub fn free_bytes(path: &Path) -> Option<u64> {
    let mut p = path.to_path_buf();
    while !p.exists() {
        p = p.parent()?.to_path_buf();
    }
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some(st.f_bavail as u64 * st.f_frsize as u64)
}

/// Whether a log line says the disk is full (errno 28, ENOSPC).
pub fn says_disk_full(line: &str) -> bool {
    let l = line.to_lowercase();
    l.contains("no space left") || l.contains("errno: 28") || l.contains("errcode: 28") || l.contains("error 28") || l.contains("os error 28") || l.contains("disk full")
}

#[cfg(test)]
mod disk_tests {
    use super::*;

    #[test]
    fn disk_full_lines_are_recognised() {
        assert!(says_disk_full("2026-11-26 9:45:56 0 [ERROR] InnoDB: Write to file ./ibdata1 failed at offset 0, 1048576 bytes should have been written, only 0 were written. Operating system error number 28."
            .replace("error number 28", "errno: 28").as_str()));
        assert!(says_disk_full("mariadb-install-db: Error writing file '/x' (Errcode: 28 \"No space left on device\")"));
        assert!(!says_disk_full("[ERROR] Aborting"));
        assert!(free_bytes(Path::new("/tmp/definitely/not/there")).is_some());
    }
}
