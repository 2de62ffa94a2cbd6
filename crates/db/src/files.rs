//! How coldswap writes its own files: atomically (temp + rename, so a
//! reader or a crash never sees half of one) and privately (mode 0600).

use anyhow::{Context, Result};
use std::path::Path;

/// Write a file atomically (temp + rename).
pub fn write_atomic(path: &Path, contents: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, contents).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Write a file readable by its owner only (created with mode 0600, never wider).
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
    f.write_all(contents).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
