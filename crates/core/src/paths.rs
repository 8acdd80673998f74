//! Where things live: the state dir (socket, state file, logs, demo), the default config, the cache.

use std::path::{Path, PathBuf};

pub const SOCKET: &str = "mlx-box.sock";

fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp"))
}

fn xdg(var: &str, fallback: &str) -> PathBuf {
    std::env::var_os(var)
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .unwrap_or_else(|| home().join(fallback))
}

/// `--state-dir`, else `MLXBOX_STATE_DIR`, else the platform default.
pub fn state_dir(explicit: Option<&Path>) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    if let Some(p) = std::env::var_os("MLXBOX_STATE_DIR").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    if cfg!(target_os = "macos") {
        home().join("Library/Application Support/mlx-box")
    } else {
        xdg("XDG_STATE_HOME", ".local/state").join("mlx-box")
    }
}

/// The user's settings.toml when none is given: `MLXBOX_CONFIG`, else the platform default.
pub fn default_config() -> PathBuf {
    if let Some(p) = std::env::var_os("MLXBOX_CONFIG").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    if cfg!(target_os = "macos") {
        home().join("Library/Application Support/mlx-box/settings.toml")
    } else {
        xdg("XDG_CONFIG_HOME", ".config").join("mlx-box/settings.toml")
    }
}

/// Cache for the demo's Python environment and tiny models (big, rebuildable, shared by state dirs).
pub fn cache_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("MLXBOX_CACHE_DIR").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    if cfg!(target_os = "macos") {
        home().join("Library/Caches/mlx-box")
    } else {
        xdg("XDG_CACHE_HOME", ".cache").join("mlx-box")
    }
}

pub fn socket_path(state_dir: &Path) -> PathBuf {
    state_dir.join(SOCKET)
}

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
