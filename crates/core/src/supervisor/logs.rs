//! Service logs: the server writes (O_APPEND) straight into `logs/<name>.log`; the daemon follows the file
//! into an in-memory tail and a live broadcast, and rotates it when it passes the size cap.
//!
//! Rotation is copy-then-truncate (as logrotate's `copytruncate`) rather than rename: the server holds the
//! file open and, adopted after a daemon restart, cannot be told to reopen it. A line written between the
//! copy and the truncate can be lost; that is the price of never breaking the server's stdout.

use std::collections::VecDeque;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;

pub struct LogTail {
    pub path: PathBuf,
    max_bytes: u64,
    files: u32,
    cap: usize,
    inner: Mutex<Inner>,
    pub live: broadcast::Sender<String>,
}

struct Inner {
    lines: VecDeque<String>,
    offset: u64,
    partial: String,
}

impl LogTail {
    pub fn new(path: PathBuf, max_bytes: u64, files: u32, cap: usize) -> Arc<Self> {
        // Start at the end of an existing file, but keep its last lines in the tail.
        let lines = last_lines(&path, cap);
        let offset = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        Arc::new(LogTail {
            path,
            max_bytes,
            files,
            cap,
            inner: Mutex::new(Inner {
                lines: lines.into(),
                offset,
                partial: String::new(),
            }),
            live: broadcast::channel(1024).0,
        })
    }

    /// Reads what was appended since the last call; rotates when over the cap. Cheap when nothing changed
    /// (one `stat`).
    pub fn poll(&self) {
        let mut inner = self.inner.lock().unwrap();
        let Ok(meta) = std::fs::metadata(&self.path) else {
            return;
        };
        let len = meta.len();
        if len < inner.offset {
            inner.offset = 0; // truncated behind our back
        }
        if len > inner.offset {
            if let Ok(mut f) = std::fs::File::open(&self.path) {
                if f.seek(SeekFrom::Start(inner.offset)).is_ok() {
                    let mut buf = Vec::with_capacity((len - inner.offset) as usize);
                    let n = f
                        .take(len - inner.offset)
                        .read_to_end(&mut buf)
                        .unwrap_or(0);
                    inner.offset += n as u64;
                    let text = String::from_utf8_lossy(&buf);
                    let mut chunk = std::mem::take(&mut inner.partial);
                    chunk.push_str(&text);
                    let mut parts: Vec<&str> = chunk.split('\n').collect();
                    let rest = parts.pop().unwrap_or("").to_string();
                    for line in parts {
                        let line = line.trim_end_matches('\r').to_string();
                        let _ = self.live.send(line.clone());
                        inner.lines.push_back(line);
                        if inner.lines.len() > self.cap {
                            inner.lines.pop_front();
                        }
                    }
                    inner.partial = rest;
                }
            }
        }
        if inner.offset >= self.max_bytes {
            if let Err(e) = rotate(&self.path, self.files) {
                tracing::warn!(path = %self.path.display(), "log rotation failed: {e}");
            } else {
                inner.offset = 0;
            }
        }
    }

    /// The last `n` lines (after a fresh poll).
    pub fn tail(&self, n: usize) -> Vec<String> {
        self.poll();
        let inner = self.inner.lock().unwrap();
        let skip = inner.lines.len().saturating_sub(n);
        inner.lines.iter().skip(skip).cloned().collect()
    }

    /// A short excerpt of the last non-empty lines, for `last_error`.
    pub fn excerpt(&self, n: usize) -> String {
        let lines: Vec<String> = self
            .tail(200)
            .into_iter()
            .filter(|l| !l.trim().is_empty())
            .collect();
        let skip = lines.len().saturating_sub(n);
        lines[skip..].join("\n")
    }
}

/// `x.log` → `x.log.1` → … → `x.log.(files-1)`; then truncates `x.log` in place.
fn rotate(path: &Path, files: u32) -> std::io::Result<()> {
    let name = |i: u32| {
        let mut s = path.as_os_str().to_owned();
        s.push(format!(".{i}"));
        PathBuf::from(s)
    };
    if files > 1 {
        for i in (1..files - 1).rev() {
            let _ = std::fs::rename(name(i), name(i + 1));
        }
        std::fs::copy(path, name(1))?;
    }
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)?
        .set_len(0)
}

fn last_lines(path: &Path, n: usize) -> Vec<String> {
    let Ok(mut f) = std::fs::File::open(path) else {
        return vec![];
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(256 * 1024);
    let _ = f.seek(SeekFrom::Start(start));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    if start > 0 && !lines.is_empty() {
        lines.remove(0); // probably cut in the middle
    }
    let skip = lines.len().saturating_sub(n);
    lines.split_off(skip)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn follows_appends_and_rotates_at_the_cap() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("svc.log");
        let mut w = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p)
            .unwrap();
        let tail = LogTail::new(p.clone(), 1000, 3, 5);
        let mut rx = tail.live.subscribe();
        write!(w, "one\ntwo\nthr").unwrap();
        tail.poll();
        assert_eq!(tail.tail(10), ["one", "two"]);
        assert_eq!(rx.try_recv().unwrap(), "one");
        writeln!(w, "ee").unwrap();
        assert_eq!(tail.tail(10), ["one", "two", "three"]);
        for i in 0..100 {
            writeln!(w, "line {i:03} padding padding").unwrap();
            tail.poll();
        }
        assert_eq!(tail.tail(10).len(), 5, "in-memory tail is capped");
        assert!(std::fs::metadata(&p).unwrap().len() < 1000);
        assert!(d.path().join("svc.log.1").exists());
        assert!(d.path().join("svc.log.2").exists());
        assert!(!d.path().join("svc.log.3").exists(), "3 files in all");
        assert_eq!(tail.tail(1), ["line 099 padding padding"]);
        assert_eq!(
            tail.excerpt(2),
            "line 098 padding padding\nline 099 padding padding"
        );
    }
}
