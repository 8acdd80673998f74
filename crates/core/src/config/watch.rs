//! Watches settings.toml for changes. It watches the parent directory, not the file: editors save by
//! writing a temp file and renaming it over the original, and a watch on the old inode would go silent.

use notify::{RecursiveMode, Watcher};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

/// Keeps the watch alive; dropping it stops watching (and ends the debounce thread).
pub struct FileWatcher {
    _watcher: notify::RecommendedWatcher,
}

/// Calls `on_change` (from a watcher thread) after any create/modify/remove/rename of `file`, once the
/// file has been quiet for `debounce`, so one editor save gives one call. The callback should re-read the
/// file and compare content hashes: a call does not promise the content changed.
///
/// The debounce is a blocking thread on a channel rather than a ticking debouncer, so an idle daemon
/// does not wake up at all.
pub fn watch_file(
    file: &Path,
    debounce: Duration,
    mut on_change: impl FnMut() + Send + 'static,
) -> notify::Result<FileWatcher> {
    let file: PathBuf = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
    let dir = file.parent().unwrap_or(Path::new("/")).to_path_buf();
    // A symlinked settings.toml: edits land on its target, so the target's directory is watched too
    // (and the link's, for the link itself being replaced).
    let target = super::edit::edit_target(&file);
    let target_dir = target.parent().map(Path::to_path_buf).filter(|d| *d != dir);
    let names: Vec<std::ffi::OsString> = [file.file_name(), target.file_name()]
        .into_iter()
        .flatten()
        .map(|n| n.to_os_string())
        .collect();
    let (tx, rx) = mpsc::channel::<()>();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let Ok(ev) = res else { return };
        if ev.kind.is_access() {
            return; // reads (ours included) are not changes
        }
        if ev
            .paths
            .iter()
            .any(|p| p.file_name().is_some_and(|n| names.iter().any(|x| x == n)))
        {
            let _ = tx.send(());
        }
    })?;
    watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    if let Some(d) = &target_dir {
        watcher.watch(d, RecursiveMode::NonRecursive)?;
    }
    std::thread::Builder::new()
        .name("settings-watch".into())
        .spawn(move || {
            // Ends when the watcher (and with it the sender) is dropped.
            while rx.recv().is_ok() {
                loop {
                    match rx.recv_timeout(debounce) {
                        Ok(()) => continue,
                        Err(mpsc::RecvTimeoutError::Timeout) => break,
                        Err(mpsc::RecvTimeoutError::Disconnected) => return,
                    }
                }
                on_change();
            }
        })
        .map_err(notify::Error::io)?;
    Ok(FileWatcher { _watcher: watcher })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn sees_write_atomic_replace_and_recreate() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("settings.toml");
        std::fs::write(&p, "a = 1").unwrap();
        let (tx, rx) = mpsc::channel();
        let _w = watch_file(&p, Duration::from_millis(50), move || {
            let _ = tx.send(());
        })
        .unwrap();
        let wait = || rx.recv_timeout(Duration::from_secs(5)).is_ok();
        let drain = || while rx.recv_timeout(Duration::from_millis(200)).is_ok() {};

        std::fs::write(&p, "a = 2").unwrap();
        assert!(wait(), "plain write");
        drain();
        crate::config::atomic_write(&p, b"a = 3").unwrap();
        assert!(wait(), "atomic replace");
        drain();
        std::fs::remove_file(&p).unwrap();
        assert!(wait(), "delete");
        drain();
        std::fs::write(&p, "a = 4").unwrap();
        assert!(wait(), "re-create");
        drain();
        std::fs::write(d.path().join("other.txt"), "x").unwrap();
        assert!(
            rx.recv_timeout(Duration::from_millis(400)).is_err(),
            "other files are ignored"
        );
    }

    /// Edits to a symlinked settings.toml's target are seen.
    #[test]
    fn sees_edits_of_a_symlinks_target() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("dotfiles")).unwrap();
        let real = d.path().join("dotfiles/mlx.toml");
        std::fs::write(&real, "a = 1").unwrap();
        let link = d.path().join("settings.toml");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let (tx, rx) = mpsc::channel();
        let _w = watch_file(&link, Duration::from_millis(50), move || {
            let _ = tx.send(());
        })
        .unwrap();
        std::fs::write(&real, "a = 2").unwrap();
        assert!(
            rx.recv_timeout(Duration::from_secs(5)).is_ok(),
            "edit of the target"
        );
        while rx.recv_timeout(Duration::from_millis(200)).is_ok() {}
        crate::config::atomic_write(&link, b"a = 3").unwrap();
        assert!(
            rx.recv_timeout(Duration::from_secs(5)).is_ok(),
            "atomic replace through the link"
        );
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
    }
}
