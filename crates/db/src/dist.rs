//! Server distributions: where the binaries of a given server version live.
//!
//! A distribution is either provisioned by coldswap into a per-user cache from
//! pinned Debian packages (`mariadb-10.11.18`), or a directory the user names
//! (an unpacked MySQL 5.7/8.0 or MariaDB generic tarball, as dbdeployer uses).
//! In both cases the flavor and version are read off the server binary itself.

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;

pub use coldswap_sql::{Flavor, Version};

/// How a datadir is initialised for a distribution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "path")]
pub enum InstallMethod {
    /// `mariadb-install-db` (or `mysql_install_db` of MariaDB).
    InstallDb(PathBuf),
    /// `mysqld --initialize-insecure` (MySQL 5.7+).
    Initialize,
}

/// A server distribution on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dist {
    /// What the user asked for (`mariadb-10.11.18`, or a directory).
    pub spec: String,
    /// The server flavor, read off the binary.
    pub flavor: Flavor,
    /// The server version, read off the binary.
    pub version: Version,
    /// The server's own version string (`10.11.18-MariaDB-0+deb12u1`).
    pub version_string: String,
    /// Passed to the server as --basedir.
    pub basedir: PathBuf,
    /// mariadbd or mysqld.
    pub server_bin: PathBuf,
    /// How a datadir is initialised.
    pub install: InstallMethod,
    /// mariadb-upgrade / mysql_upgrade, if the distribution has one.
    pub upgrade_bin: Option<PathBuf>,
    /// `--lc-messages-dir`, when the layout has one.
    pub lc_messages_dir: Option<PathBuf>,
    /// `--plugin-dir`, when the layout has one.
    pub plugin_dir: Option<PathBuf>,
    /// Binaries built for another C library run through their own loader.
    #[serde(default)]
    pub loader: Option<Loader>,
}

/// A dynamic loader and the library directories a distribution's binaries
/// need (binaries from a newer Debian than the host's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Loader {
    /// `ld-linux-x86-64.so.2` of the distribution.
    pub ld_so: PathBuf,
    /// Directories searched first for shared libraries.
    pub library_path: Vec<PathBuf>,
}

impl Dist {
    /// Short human name, `mariadb 10.11.18`.
    pub fn label(&self) -> String {
        format!("{} {}", self.flavor, self.version)
    }

    /// A command running one of this distribution's programs (through its
    /// loader when it has one).
    pub fn command(&self, program: &Path) -> Command {
        match &self.loader {
            None => Command::new(program),
            Some(l) => {
                let mut c = Command::new(&l.ld_so);
                let libs: Vec<String> = l.library_path.iter().map(|p| p.display().to_string()).collect();
                c.arg("--library-path").arg(libs.join(":")).arg(program);
                c
            }
        }
    }

    /// Where the server finds its messages and plugins.
    pub fn path_flags(&self) -> Vec<String> {
        let mut a = Vec::new();
        if let Some(p) = &self.lc_messages_dir {
            a.push(format!("--lc-messages-dir={}", p.display()));
        }
        if let Some(p) = &self.plugin_dir {
            a.push(format!("--plugin-dir={}", p.display()));
        }
        a
    }
}

/// An exclusive advisory lock on a file, released on drop: one process
/// provisions a distribution at a time.
pub struct FileLock {
    _file: File,
}

impl FileLock {
    /// Wait for the lock.
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
}

/// One pinned Debian-packaged server version we know how to fetch.
#[derive(Debug, Clone, Copy)]
pub struct DebianPin {
    /// The version name users give (`mariadb-10.11.18`).
    pub name: &'static str,
    /// (package, version) pairs, downloaded and unpacked together.
    pub packages: &'static [(&'static str, &'static str)],
    /// None: the machine's own Debian release (its apt sources). Some: another
    /// suite, read through a private apt state in the cache (the system's
    /// sources untouched, no root), with the packages' whole dependency
    /// closure unpacked beside them, C library and loader included: the
    /// binaries then run on this machine through their own loader.
    pub suite: Option<&'static str>,
}

/// Versions that can be provisioned from Debian packages on this kind of
/// machine: bookworm and bookworm-security carry a real MariaDB minor
/// upgrade pair; sid (unstable) carries Oracle MySQL 9.7, the only MySQL
/// reachable here.
pub const DEBIAN_PINS: &[DebianPin] = &[
    DebianPin {
        name: "mariadb-10.11.18",
        packages: &[("mariadb-server-core", "1:10.11.18-0+deb12u1"), ("mariadb-client-core", "1:10.11.18-0+deb12u1")],
        suite: None,
    },
    DebianPin {
        name: "mariadb-10.11.19",
        packages: &[("mariadb-server-core", "1:10.11.19-0+deb12u1"), ("mariadb-client-core", "1:10.11.19-0+deb12u1")],
        suite: None,
    },
    DebianPin {
        name: "mysql-9.7.4",
        packages: &[("mysql-server-core", "9.7.4-2"), ("mysql-client-core", "9.7.4-2")],
        suite: Some("sid"),
    },
];

/// The flavor of a pinned version, by its name.
pub fn pin_flavor(spec: &str) -> Option<Flavor> {
    DEBIAN_PINS.iter().find(|p| p.name == spec)?;
    if spec.starts_with("mariadb-") {
        Some(Flavor::MariaDB)
    } else if spec.starts_with("mysql-") {
        Some(Flavor::MySQL)
    } else {
        None
    }
}

/// The version names that can be fetched.
pub fn known_versions() -> Vec<&'static str> {
    DEBIAN_PINS.iter().map(|p| p.name).collect()
}

/// The per-user cache: `$COLDSWAP_CACHE`, else `$XDG_CACHE_HOME/coldswap`,
/// else `~/.cache/coldswap`.
pub fn cache_root() -> PathBuf {
    if let Some(p) = std::env::var_os("COLDSWAP_CACHE") {
        return PathBuf::from(p);
    }
    if let Some(p) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(p).join("coldswap");
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/tmp"));
    home.join(".cache").join("coldswap")
}

/// Whether a version spec names a directory rather than a known version.
pub fn spec_is_path(spec: &str) -> bool {
    spec.contains('/') || spec.starts_with('.') || spec.starts_with('~')
}

/// Check a spec without touching the network or the disk beyond a stat:
/// used to reject bad input before anything starts.
pub fn check_spec(spec: &str) -> Result<()> {
    if spec_is_path(spec) {
        let p = expand_home(spec);
        if !p.is_dir() {
            bail!("basedir {} does not exist or is not a directory", p.display());
        }
        find_server_bin(&p)?;
        return Ok(());
    }
    if DEBIAN_PINS.iter().any(|p| p.name == spec) {
        return Ok(());
    }
    Err(unknown_version(spec))
}

fn unknown_version(spec: &str) -> anyhow::Error {
    let hint = if spec.starts_with("mysql") {
        " (no other MySQL can be downloaded here: unpack a MySQL generic tarball and pass its directory instead)"
    } else {
        ""
    };
    anyhow!(
        "unknown server version '{spec}': known versions are {}, or give the path of an unpacked server tarball{hint}",
        known_versions().join(", ")
    )
}

fn expand_home(spec: &str) -> PathBuf {
    if let Some(rest) = spec.strip_prefix("~/") {
        if let Some(h) = std::env::var_os("HOME") {
            return PathBuf::from(h).join(rest);
        }
    }
    PathBuf::from(spec)
}

/// Resolve a spec to a distribution on disk, provisioning it into the cache
/// first if needed. Idempotent and safe to call from several processes at once.
pub fn resolve(spec: &str) -> Result<Dist> {
    if spec_is_path(spec) {
        let p = expand_home(spec);
        let p = p.canonicalize().with_context(|| format!("basedir {} does not exist", p.display()))?;
        return detect(&p, spec);
    }
    let pin = DEBIAN_PINS.iter().find(|p| p.name == spec).ok_or_else(|| unknown_version(spec))?;
    let dir = provision_debian(pin)?;
    detect(&dir, spec)
}

/// Where a pinned Debian distribution is unpacked.
pub fn debian_dir(pin: &DebianPin) -> PathBuf {
    cache_root().join("dist").join(pin.name)
}

fn provision_debian(pin: &DebianPin) -> Result<PathBuf> {
    let dir = debian_dir(pin);
    let done = dir.join(".complete");
    if done.exists() {
        return Ok(dir);
    }
    let parent = dir.parent().unwrap().to_path_buf();
    std::fs::create_dir_all(&parent).with_context(|| format!("cannot create cache directory {}", parent.display()))?;
    // One process provisions at a time; the others wait and then find it done.
    let _lock = FileLock::acquire(&parent.join(format!(".{}.lock", pin.name)))?;
    if done.exists() {
        return Ok(dir);
    }
    tracing::info!("provisioning {} from Debian packages into {}", pin.name, dir.display());
    let staging = parent.join(format!(".{}.staging-{}", pin.name, std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(staging.join("debs"))?;
    let wanted: Vec<String> = pin.packages.iter().map(|(n, v)| format!("{n}={v}")).collect();
    let fetched = match pin.suite {
        None => download_here(&staging.join("debs"), &wanted),
        Some(suite) => download_closure(suite, &staging.join("debs"), &wanted),
    };
    if let Err(e) = fetched {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(e.context(format!("cannot download the Debian packages of {}", pin.name)));
    }
    let root = staging.join("root");
    std::fs::create_dir_all(&root)?;
    for entry in std::fs::read_dir(staging.join("debs"))? {
        let deb = entry?.path();
        if deb.extension().map(|e| e == "deb").unwrap_or(false) {
            let st = Command::new("dpkg-deb")
                .arg("-x")
                .arg(&deb)
                .arg(&root)
                .status()
                .context("cannot run dpkg-deb (is dpkg installed?)")?;
            if !st.success() {
                let _ = std::fs::remove_dir_all(&staging);
                bail!("dpkg-deb -x {} failed", deb.display());
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&root, &dir)?;
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::write(&done, wanted.join("\n"))?;
    Ok(dir)
}

/// The packages alone, from the machine's own apt sources.
fn download_here(dir: &Path, wanted: &[String]) -> Result<()> {
    let mut ok = apt(&["download", "-qq"], wanted, dir);
    if ok.is_err() && is_root() {
        // A fresh machine may have no package lists yet.
        tracing::info!("apt-get download failed; running apt-get update once");
        let _ = Command::new("apt-get").args(["update", "-qq"]).status();
        ok = apt(&["download", "-qq"], wanted, dir);
    }
    ok
}

/// The packages and their whole dependency closure from another Debian
/// suite, through a private apt state in the cache (lists, archives and an
/// empty dpkg status of its own; no lock, no root, the system's sources
/// untouched), into `dir`.
fn download_closure(suite: &str, dir: &Path, wanted: &[String]) -> Result<()> {
    let state = cache_root().join(format!("apt-{suite}"));
    for d in ["lists/partial", "archives/partial", "etc"] {
        std::fs::create_dir_all(state.join(d)).with_context(|| format!("cannot create {}", state.display()))?;
    }
    let mirror = std::env::var("DEBIAN_MIRROR").unwrap_or_else(|_| "http://deb.debian.org/debian".into());
    std::fs::write(
        state.join("etc/sources.list"),
        format!("deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] {mirror} {suite} main\n"),
    )?;
    std::fs::write(state.join("etc/status"), "")?;
    let opt = |k: &str, v: &Path| format!("-o{k}={}", v.display());
    let opts = vec![
        opt("Dir::Etc::sourcelist", &state.join("etc/sources.list")),
        "-oDir::Etc::sourceparts=/dev/null".to_string(),
        opt("Dir::State::Lists", &state.join("lists")),
        opt("Dir::State::status", &state.join("etc/status")),
        opt("Dir::Cache::archives", &state.join("archives")),
        opt("Dir::Cache", &state),
        "-oDebug::NoLocking=1".to_string(),
        "-oAPT::Install-Recommends=false".to_string(),
        "-oAPT::Get::AllowUnauthenticated=false".to_string(),
    ];
    let o: Vec<&str> = opts.iter().map(|s| s.as_str()).collect();
    let mut update = o.clone();
    update.extend(["-qq", "update"]);
    apt(&update, &[], dir).with_context(|| format!("reading Debian {suite}'s package lists"))?;
    let mut install = o.clone();
    // An empty dpkg status: apt fetches every package the servers need,
    // the C library and its loader included.
    install.extend(["-qq", "-y", "--download-only", "install"]);
    apt(&install, wanted, dir)?;
    for entry in std::fs::read_dir(state.join("archives"))? {
        let p = entry?.path();
        if p.extension().map(|e| e == "deb").unwrap_or(false) {
            let to = dir.join(p.file_name().unwrap_or_default());
            std::fs::rename(&p, &to).or_else(|_| std::fs::copy(&p, &to).map(|_| ()))?;
        }
    }
    Ok(())
}

fn apt(args: &[&str], packages: &[String], dir: &Path) -> Result<()> {
    let out = Command::new("apt-get")
        .args(args)
        .args(packages)
        .current_dir(dir)
        .output()
        .context("cannot run apt-get (this needs a Debian-based machine)")?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let line =
            err.lines().find(|l| l.starts_with("E:")).unwrap_or_else(|| err.lines().next().unwrap_or("apt-get failed"));
        bail!("{}", line.trim());
    }
    Ok(())
}

pub(crate) fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

const SERVER_CANDIDATES: &[&str] = &[
    "usr/sbin/mariadbd",
    "usr/sbin/mysqld",
    "bin/mariadbd",
    "bin/mysqld",
    "sbin/mariadbd",
    "sbin/mysqld",
    "libexec/mysqld",
];

fn find_server_bin(root: &Path) -> Result<PathBuf> {
    for c in SERVER_CANDIDATES {
        let p = root.join(c);
        if p.is_file() {
            return Ok(p);
        }
    }
    bail!("no server binary in {} (looked for bin/mysqld, bin/mariadbd, usr/sbin/mariadbd)", root.display())
}

/// Parse the output of `mysqld --version` / `mariadbd --version`.
/// Returns (flavor, version, version string).
pub fn parse_version_output(out: &str) -> Option<(Flavor, Version, String)> {
    let idx = out.find("Ver ")?;
    let rest = &out[idx + 4..];
    let token = rest.split_whitespace().next()?.to_string();
    let version = Version::parse(&token)?;
    let flavor = if token.contains("MariaDB") || out.contains("MariaDB") { Flavor::MariaDB } else { Flavor::MySQL };
    Some((flavor, version, token))
}

/// The dynamic loader a distribution ships (its C library came with it):
/// `usr/lib/<multiarch>/ld-linux*.so*` under its root.
fn own_loader(root: &Path) -> Option<Loader> {
    let lib = root.join("usr/lib");
    for e in std::fs::read_dir(&lib).ok()?.flatten() {
        let dir = e.path();
        let Ok(rd) = std::fs::read_dir(&dir) else { continue };
        for f in rd.flatten() {
            let name = f.file_name().to_string_lossy().to_string();
            if name.starts_with("ld-linux") && name.contains(".so") {
                return Some(Loader { ld_so: f.path(), library_path: vec![dir.clone(), lib.clone()] });
            }
        }
    }
    None
}

/// Read flavor, version and tool locations off an unpacked distribution.
pub fn detect(root: &Path, spec: &str) -> Result<Dist> {
    let server_bin = find_server_bin(root)?;
    let loader = own_loader(root);
    let probe = Dist {
        spec: spec.to_string(),
        flavor: Flavor::MySQL,
        version: Version(0, 0, 0),
        version_string: String::new(),
        basedir: root.to_path_buf(),
        server_bin: server_bin.clone(),
        install: InstallMethod::Initialize,
        upgrade_bin: None,
        lc_messages_dir: None,
        plugin_dir: None,
        loader: loader.clone(),
    };
    let out = probe
        .command(&server_bin)
        .arg("--no-defaults")
        .arg("--version")
        .output()
        .with_context(|| format!("cannot run {}", server_bin.display()))?;
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let (flavor, version, version_string) = parse_version_output(&text).ok_or_else(|| {
        anyhow!("{} --version printed no version ({})", server_bin.display(), text.lines().next().unwrap_or("").trim())
    })?;
    // Debian layout keeps everything under usr/.
    let debian = server_bin.starts_with(root.join("usr"));
    let basedir = if debian { root.join("usr") } else { root.to_path_buf() };
    let pick = |cands: &[&str]| cands.iter().map(|c| basedir.join(c)).find(|p| p.exists());
    let install = match flavor {
        Flavor::MariaDB => {
            let p = pick(&[
                "bin/mariadb-install-db",
                "scripts/mariadb-install-db",
                "bin/mysql_install_db",
                "scripts/mysql_install_db",
            ])
            .ok_or_else(|| anyhow!("no mariadb-install-db in {}", basedir.display()))?;
            InstallMethod::InstallDb(p)
        }
        Flavor::MySQL => InstallMethod::Initialize,
    };
    let upgrade_bin = match flavor {
        Flavor::MariaDB => pick(&["bin/mariadb-upgrade", "bin/mysql_upgrade"]),
        Flavor::MySQL => pick(&["bin/mysql_upgrade"]),
    };
    // A directory holding english/errmsg.sys.
    let lc_messages_dir = ["share/mysql", "share/mariadb", "share"]
        .iter()
        .map(|c| basedir.join(c))
        .find(|p| p.join("english").is_dir())
        .or_else(|| pick(&["share/mysql", "share/mariadb", "share"]));
    let plugin_dir = pick(&["lib/mysql/plugin", "lib/plugin", "lib64/mysql/plugin"]);
    Ok(Dist {
        spec: spec.to_string(),
        flavor,
        version,
        version_string,
        basedir,
        server_bin,
        install,
        upgrade_bin,
        lc_messages_dir,
        plugin_dir,
        loader,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mariadb_debian() {
        let (f, v, s) = parse_version_output(
            "/x/usr/sbin/mariadbd  Ver 10.11.18-MariaDB-0+deb12u1 for debian-linux-gnu on x86_64 (Debian 12)",
        )
        .unwrap();
        assert_eq!(f, Flavor::MariaDB);
        assert_eq!(v, Version(10, 11, 18));
        assert_eq!(s, "10.11.18-MariaDB-0+deb12u1");
    }

    #[test]
    fn parses_mysql_57_and_80() {
        let (f, v, _) =
            parse_version_output("bin/mysqld  Ver 5.7.19 for linux-glibc2.12 on x86_64 (MySQL Community Server (GPL))")
                .unwrap();
        assert_eq!((f, v), (Flavor::MySQL, Version(5, 7, 19)));
        let (f, v, _) =
            parse_version_output("/usr/sbin/mysqld  Ver 8.0.35 for Linux on x86_64 (MySQL Community Server - GPL)")
                .unwrap();
        assert_eq!((f, v), (Flavor::MySQL, Version(8, 0, 35)));
        assert!(parse_version_output("garbage").is_none());
    }

    #[test]
    fn unknown_versions_are_rejected_with_the_known_list() {
        let e = check_spec("mariadb-10.11.99").unwrap_err().to_string();
        assert!(e.contains("unknown server version 'mariadb-10.11.99'"), "{e}");
        assert!(e.contains("mariadb-10.11.18"), "{e}");
        let e = check_spec("mysql-5.7.19").unwrap_err().to_string();
        assert!(e.contains("tarball") && e.contains("mysql-9.7.4"), "{e}");
        assert!(check_spec("mysql-9.7.4").is_ok());
    }

    #[test]
    fn basedir_without_server_is_rejected() {
        let d = std::env::temp_dir().join(format!("coldswap-empty-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let e = check_spec(d.to_str().unwrap()).unwrap_err().to_string();
        assert!(e.contains("no server binary"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
