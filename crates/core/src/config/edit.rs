//! Writing settings.toml safely: a `.bak` of the previous content, then temp file + fsync + rename, so a
//! crash mid-write never leaves a half-written file and editors watching it see one atomic replace.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` atomically (temp file in the same directory, fsync, rename).
pub fn atomic_write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    // Through a symlink: replace the file it points to, not the link.
    let path = &edit_target(path);
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    // Keep the mode of the file we replace (settings may hold keys: often 0600).
    if let Ok(meta) = std::fs::metadata(path) {
        let _ = std::fs::set_permissions(tmp.path(), meta.permissions());
    }
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// The file an edit of `path` really writes: the target of a symlink (so the link stays a link and the
/// file it points to gets the edit), else `path` itself.
pub fn edit_target(path: &Path) -> PathBuf {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => {
            std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
        }
        _ => path.to_path_buf(),
    }
}

/// `<target>.bak`, next to the file an edit of `path` writes.
pub fn backup_path(path: &Path) -> PathBuf {
    let mut bak = edit_target(path).into_os_string();
    bak.push(".bak");
    PathBuf::from(bak)
}

/// Copies the current file to `<path>.bak` (when it exists, mode 0600: it may hold keys), then writes
/// atomically. Through a symlink, both land next to its target.
pub fn write_with_backup(path: &Path, bytes: &[u8]) -> std::io::Result<PathBuf> {
    let target = edit_target(path);
    let bak = backup_path(path);
    if target.exists() {
        std::fs::copy(&target, &bak)?;
        let _ = std::fs::set_permissions(&bak, std::os::unix::fs::PermissionsExt::from_mode(0o600));
    }
    atomic_write(&target, bytes)?;
    Ok(bak)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_then_atomic_replace() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("settings.toml");
        std::fs::write(&p, "old").unwrap();
        let bak = write_with_backup(&p, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "new");
        assert_eq!(std::fs::read_to_string(bak).unwrap(), "old");
        // no temp files left behind
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 2);
    }

    /// An edit writes through a symlinked settings.toml to its target: the link stays a link.
    #[test]
    fn a_symlinked_file_is_edited_through_its_link() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("dotfiles")).unwrap();
        let real = d.path().join("dotfiles/settings.toml");
        std::fs::write(&real, "old").unwrap();
        let link = d.path().join("settings.toml");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let bak = write_with_backup(&link, b"new").unwrap();
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read_to_string(&real).unwrap(), "new");
        assert_eq!(bak, d.path().join("dotfiles/settings.toml.bak"));
        assert_eq!(std::fs::read_to_string(&bak).unwrap(), "old");
    }
}
