//! Watches settings.toml for changes. It watches the parent directory, not the file: editors save by
//! writing a temp file and renaming it over the original, and a watch on the old inode would go silent.

use notify::RecursiveMode;
use notify_debouncer_full::{new_debouncer, DebounceEventResult};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Keeps the watch alive; dropping it stops watching.
pub struct FileWatcher {
    _debouncer: Box<dyn std::any::Any + Send>,
}

/// Calls `on_change` (from the watcher's thread) after any create/modify/remove/rename of `file`,
/// debounced by `debounce` so one editor save gives one call. The callback should re-read the file and
/// compare content hashes: a call does not promise the content changed.
pub fn watch_file(
    file: &Path,
    debounce: Duration,
    mut on_change: impl FnMut() + Send + 'static,
) -> notify::Result<FileWatcher> {
    let file: PathBuf = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
    let dir = file.parent().unwrap_or(Path::new("/")).to_path_buf();
    let name = file.file_name().map(|n| n.to_os_string());
    let mut debouncer = new_debouncer(
        debounce,
        Some(debounce / 4),
        move |res: DebounceEventResult| {
            let Ok(events) = res else { return };
            let touches = events.iter().any(|e| {
                e.paths
                    .iter()
                    .any(|p| p.file_name().map(|n| n.to_os_string()) == name)
            });
            if touches {
                on_change();
            }
        },
    )?;
    debouncer.watch(&dir, RecursiveMode::NonRecursive)?;
    Ok(FileWatcher {
        _debouncer: Box::new(debouncer),
    })
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
}
