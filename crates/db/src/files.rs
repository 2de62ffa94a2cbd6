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

/// Write a file readable by its owner only: created new with mode 0600
/// (`O_EXCL | O_NOFOLLOW`, so neither a file nor a link planted at the
/// temporary name is written through) and renamed over `path` (which
/// replaces whatever stood there, a link included, without following it).
pub fn write_private(path: &Path, contents: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(contents).with_context(|| format!("cannot write {}", tmp.display()))?;
    drop(f);
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn private_files_replace_planted_ones_and_links() {
        let d = std::env::temp_dir().join(format!("coldswap-files-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        // A world-readable file planted where the secret goes keeps neither its mode nor its inode.
        let p = d.join("secrets.json");
        std::fs::write(&p, "old").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&p, b"new").unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        // A link planted there is replaced, its target left alone.
        let target = d.join("target");
        std::fs::write(&target, "untouched").unwrap();
        let l = d.join("link.json");
        std::os::unix::fs::symlink(&target, &l).unwrap();
        write_private(&l, b"secret").unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "untouched");
        assert!(!std::fs::symlink_metadata(&l).unwrap().file_type().is_symlink());
        assert_eq!(std::fs::read_to_string(&l).unwrap(), "secret");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
