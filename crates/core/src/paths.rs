//! Where things live: the state dir (socket, state file, logs, demo), the default config, the cache.

pub use mlxbox_api::paths::{cache_dir, default_config, socket_path, state_dir, SOCKET};
use std::path::Path;

/// Opens `path` for appending (created 0600 if missing), refusing a symlink in its place: a log file is
/// never a way to write somewhere else.
pub fn append_no_follow(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// Writes `path` whole (created 0600), refusing a symlink in its place.
pub fn write_no_follow(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    f.write_all(bytes)
}

/// Reads `path` (at most `max` bytes), refusing a symlink in its place.
pub fn read_no_follow(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    let mut out = Vec::new();
    f.take(max).read_to_end(&mut out)?;
    Ok(out)
}

/// Why a state dir is not safe to use, if it is not: it must be the user's own and writable by no one
/// else, since its state file names the process groups the daemon signals and its logs are appended to.
pub fn state_dir_problem(dir: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let meta = match std::fs::metadata(dir) {
        Ok(m) => m,
        Err(e) => return Some(e.to_string()),
    };
    if !meta.is_dir() {
        return Some("it is not a directory".into());
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        return Some(format!(
            "it belongs to uid {}, not to you (uid {me}): another user could have prepared it; choose another --state-dir",
            meta.uid()
        ));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Some(format!(
            "it is writable by others (mode {mode:04o}): run `chmod 700 {}`, or choose another --state-dir",
            dir.display()
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn state_dirs_writable_by_others_are_refused() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(state_dir_problem(d.path()), None);
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let p = state_dir_problem(d.path()).unwrap();
        assert!(p.contains("writable by others (mode 0777)"), "{p}");
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(state_dir_problem(d.path()), None, "readable is fine");
    }

    #[test]
    fn no_follow_opens_refuse_symlinks() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("target");
        std::fs::write(&target, b"keep").unwrap();
        let link = d.path().join("svc.log");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(append_no_follow(&link).is_err());
        assert!(write_no_follow(&link, b"x").is_err());
        assert!(read_no_follow(&link, 10).is_err());
        assert_eq!(std::fs::read(&target).unwrap(), b"keep");
        let f = d.path().join("f");
        write_no_follow(&f, b"abc").unwrap();
        assert_eq!(read_no_follow(&f, 2).unwrap(), b"ab", "bounded");
    }
}
