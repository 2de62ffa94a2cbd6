//! Credentials of the users coldswap creates, kept in the run dir with mode
//! 0600; never logged, never written to a report.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::path::Path;

/// File name inside a run dir.
pub const SECRETS_FILE: &str = "secrets.json";

/// The three users of a cluster and their passwords.
#[derive(Clone, Serialize, Deserialize)]
pub struct Secrets {
    /// Replication admin: fences, promotes, checks.
    pub admin_user: String,
    /// Its password.
    pub admin_password: String,
    /// The user replicas connect as.
    pub repl_user: String,
    /// Its password.
    pub repl_password: String,
    /// The application user the load runs as (cannot bypass read_only).
    pub app_user: String,
    /// Its password.
    pub app_password: String,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Secrets {{ admin: {}, repl: {}, app: {}, passwords: <hidden> }}",
            self.admin_user, self.repl_user, self.app_user
        )
    }
}

impl Secrets {
    /// Fresh random passwords from the kernel's generator.
    pub fn generate() -> Result<Secrets> {
        Ok(Secrets {
            admin_user: "coldswap_admin".into(),
            admin_password: random_secret(24)?,
            repl_user: "coldswap_repl".into(),
            repl_password: random_secret(24)?,
            app_user: "coldswap_app".into(),
            app_password: random_secret(24)?,
        })
    }

    /// Read a run dir's secrets.
    pub fn read(run_dir: &Path) -> Result<Secrets> {
        let text = std::fs::read_to_string(run_dir.join(SECRETS_FILE))
            .with_context(|| format!("no {SECRETS_FILE} in {}", run_dir.display()))?;
        serde_json::from_str(&text).with_context(|| format!("{SECRETS_FILE} in {} is damaged", run_dir.display()))
    }

    /// Write them into a run dir, readable by their owner only.
    pub fn write(&self, run_dir: &Path) -> Result<()> {
        crate::files::write_private(&run_dir.join(SECRETS_FILE), serde_json::to_string_pretty(self)?.as_bytes())
    }
}

/// A random alphanumeric secret from the kernel's generator; an error when
/// the generator cannot be read (never a predictable fallback).
pub fn random_secret(len: usize) -> Result<String> {
    use std::io::Read;
    const ALPHA: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut buf = vec![0u8; len];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .context("cannot read /dev/urandom to generate passwords")?;
    Ok(buf.iter().map(|b| ALPHA[*b as usize % ALPHA.len()] as char).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_differ_and_stay_private() {
        let a = random_secret(20).unwrap();
        assert_eq!(a.len(), 20);
        assert_ne!(a, random_secret(20).unwrap());
        let s = Secrets::generate().unwrap();
        let dbg = format!("{s:?}");
        assert!(!dbg.contains(&s.admin_password) && dbg.contains("<hidden>"));
        let d = std::env::temp_dir().join(format!("coldswap-secrets-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        s.write(&d).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(d.join(SECRETS_FILE)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(Secrets::read(&d).unwrap().app_password, s.app_password);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
