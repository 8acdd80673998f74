//! Process limits the daemon sets for itself at start.

/// Raises the soft limit on open files to the hard limit (macOS starts a process at 256, which a few
/// hundred proxied connections exhaust). Returns (before, after) soft limits, or why it could not.
pub fn raise_open_files_limit() -> Result<(u64, u64), String> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(|e| e.to_string())?;
    // macOS refuses a soft limit above OPEN_MAX (10240) even when the hard one is "unlimited".
    let target = if cfg!(target_os = "macos") {
        hard.min(10_240)
    } else {
        hard.min(1 << 20)
    };
    if target <= soft {
        return Ok((soft, soft));
    }
    setrlimit(Resource::RLIMIT_NOFILE, target, hard).map_err(|e| e.to_string())?;
    Ok((soft, target))
}

/// The soft limit on open files now.
pub fn open_files_limit() -> Option<u64> {
    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .ok()
        .map(|(soft, _)| soft)
}

/// Errors that say "not now" rather than "never": out of descriptors, processes or memory. A spawn that
/// fails with one of them is retried with backoff.
pub fn is_transient(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::EAGAIN | libc::ENOMEM)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::resource::{getrlimit, setrlimit, Resource};

    /// The daemon starts with the soft limit raised to the hard one (launchd gives 256).
    #[test]
    fn the_soft_open_files_limit_is_raised_to_the_hard_one() {
        let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        let low = 256.min(hard);
        setrlimit(Resource::RLIMIT_NOFILE, low, hard).unwrap();
        let (before, after) = raise_open_files_limit().unwrap();
        assert_eq!(before, low);
        let cap = if cfg!(target_os = "macos") {
            10_240
        } else {
            1 << 20
        };
        assert_eq!(after, hard.min(cap));
        assert_eq!(open_files_limit(), Some(after));
        // Leave the test process as it was.
        setrlimit(Resource::RLIMIT_NOFILE, soft.max(after), hard).unwrap();
    }

    #[test]
    fn transient_errors() {
        assert!(is_transient(&std::io::Error::from_raw_os_error(
            libc::EMFILE
        )));
        assert!(is_transient(&std::io::Error::from_raw_os_error(
            libc::EAGAIN
        )));
        assert!(!is_transient(&std::io::Error::from_raw_os_error(
            libc::ENOENT
        )));
    }
}
