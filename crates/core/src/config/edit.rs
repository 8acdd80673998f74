//! Writing settings.toml safely: a `.bak` of the previous content, then temp file + fsync + rename, so a
//! crash mid-write never leaves a half-written file and editors watching it see one atomic replace.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` atomically (temp file in the same directory, fsync, rename).
pub fn atomic_write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
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

/// Copies the current file to `<path>.bak` (when it exists), then writes atomically.
pub fn write_with_backup(path: &Path, bytes: &[u8]) -> std::io::Result<PathBuf> {
    let mut bak = path.as_os_str().to_owned();
    bak.push(".bak");
    let bak = PathBuf::from(bak);
    if path.exists() {
        std::fs::copy(path, &bak)?;
    }
    atomic_write(path, bytes)?;
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
}
