//! Service logs: the server writes (O_APPEND) straight into two files, its stderr (where servers log, and
//! where mlx-box's own lines about it go) into `logs/<name>.log` and its stdout into
//! `logs/<name>.stdout.log`, as launchd's `StandardErrorPath` / `StandardOutPath` kept them apart. The
//! daemon follows both into one in-memory tail and live broadcast, stdout's lines marked `[stdout] `, and
//! rotates each when it passes the size cap.
//!
//! Bounds: a line is cut at `MAX_LINE` bytes (progress bars written with `\r` and no `\n` end a line at
//! each `\r`, so they never pile up into one huge "line"); one poll reads at most `MAX_POLL` bytes and skips
//! the older part of a bigger backlog; the file is polled every 500 ms by a task of its own (also while its
//! service is stopping) and after each line the daemon writes, and rotated as soon as it passes the cap.
//!
//! Rotation is copy-then-truncate (as logrotate's `copytruncate`) rather than rename: the server holds the
//! file open and, adopted after a daemon restart, cannot be told to reopen it. A line written between the
//! copy and the truncate can be lost; that is the price of never breaking the server's stdout.

use std::collections::VecDeque;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;

/// Longest line kept (the rest of it is dropped, marked).
pub const MAX_LINE: usize = 16 * 1024;
/// Most bytes one poll reads; an older backlog is skipped.
const MAX_POLL: u64 = 4 << 20;

/// What marks a line the server wrote to its stdout, in the tail and the live lines.
pub const STDOUT_MARK: &str = "[stdout] ";

pub struct LogTail {
    /// The stderr log (the service's main log).
    pub path: PathBuf,
    max_bytes: u64,
    files: u32,
    cap: usize,
    inner: Mutex<Inner>,
    pub live: broadcast::Sender<String>,
}

struct Inner {
    lines: VecDeque<String>,
    /// stderr, then stdout.
    streams: [Stream; 2],
}

/// One file being followed.
struct Stream {
    path: PathBuf,
    mark: &'static str,
    offset: u64,
    partial: Vec<u8>,
    /// The current line passed MAX_LINE: drop the rest of it.
    cutting: bool,
}

impl Stream {
    fn new(path: PathBuf, mark: &'static str) -> Stream {
        let offset = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        Stream {
            path,
            mark,
            offset,
            partial: Vec::new(),
            cutting: false,
        }
    }

    fn push_line(
        &mut self,
        line: String,
        lines: &mut VecDeque<String>,
        cap: usize,
        live: &broadcast::Sender<String>,
    ) {
        let line = if self.mark.is_empty() {
            line
        } else {
            format!("{}{line}", self.mark)
        };
        let _ = live.send(line.clone());
        lines.push_back(line);
        if lines.len() > cap {
            lines.pop_front();
        }
    }

    /// Splits new bytes into lines at `\n`, `\r\n` or a lone `\r`, each at most MAX_LINE bytes.
    fn feed(
        &mut self,
        bytes: &[u8],
        lines: &mut VecDeque<String>,
        cap: usize,
        live: &broadcast::Sender<String>,
    ) {
        let mut rest = bytes;
        while let Some(i) = memchr::memchr2(b'\n', b'\r', rest) {
            self.add_partial(&rest[..i], lines, cap, live);
            let line = std::mem::take(&mut self.partial);
            if !std::mem::replace(&mut self.cutting, false) || !line.is_empty() {
                self.push_line(
                    String::from_utf8_lossy(&line).into_owned(),
                    lines,
                    cap,
                    live,
                );
            }
            // `\r\n` is one line end.
            let skip = if rest[i] == b'\r' && rest.get(i + 1) == Some(&b'\n') {
                2
            } else {
                1
            };
            rest = &rest[i + skip..];
        }
        self.add_partial(rest, lines, cap, live);
    }

    fn add_partial(
        &mut self,
        bytes: &[u8],
        lines: &mut VecDeque<String>,
        cap: usize,
        live: &broadcast::Sender<String>,
    ) {
        if self.cutting {
            return;
        }
        let room = MAX_LINE.saturating_sub(self.partial.len());
        if bytes.len() <= room {
            self.partial.extend_from_slice(bytes);
            return;
        }
        self.partial.extend_from_slice(&bytes[..room]);
        let mut line = String::from_utf8_lossy(&std::mem::take(&mut self.partial)).into_owned();
        line.push_str(" [… line cut by mlx-box]");
        self.push_line(line, lines, cap, live);
        self.cutting = true;
    }

    /// Reads what was appended since the last call (at most MAX_POLL bytes: an older backlog is
    /// skipped); rotates when over the cap. Cheap when nothing changed (one `stat`).
    fn poll(
        &mut self,
        lines: &mut VecDeque<String>,
        t: (u64, u32, usize),
        live: &broadcast::Sender<String>,
    ) {
        let (max_bytes, files, cap) = t;
        let Ok(meta) = std::fs::symlink_metadata(&self.path) else {
            return;
        };
        let len = meta.len();
        if len < self.offset {
            self.offset = 0; // truncated behind our back
        }
        if len > self.offset {
            let mut from = self.offset;
            if len - from > MAX_POLL {
                from = len - MAX_POLL;
                let skipped = from - self.offset;
                self.partial.clear();
                self.cutting = true; // we are mid-line
                self.push_line(
                    format!(
                        "[mlx-box] … {skipped} bytes of log skipped (written faster than read)"
                    ),
                    lines,
                    cap,
                    live,
                );
            }
            if let Ok(mut f) = std::fs::File::open(&self.path) {
                if f.seek(SeekFrom::Start(from)).is_ok() {
                    let mut buf = vec![0u8; 64 * 1024];
                    let mut left = len - from;
                    while left > 0 {
                        let want = left.min(buf.len() as u64) as usize;
                        let n = match f.read(&mut buf[..want]) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        left -= n as u64;
                        self.feed(&buf[..n], lines, cap, live);
                    }
                    self.offset = len - left;
                }
            }
        }
        if self.offset >= max_bytes {
            // Rotated even when the copy fails (a full disk): losing old lines beats filling the disk.
            if let Err(e) = rotate(&self.path, files) {
                tracing::warn!(path = %self.path.display(), "log rotation: {e}");
            }
            self.offset = std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0);
        }
    }
}

impl LogTail {
    /// Follows the stderr log at `path` and the stdout log beside it ([`stdout_path`]).
    pub fn new(path: PathBuf, max_bytes: u64, files: u32, cap: usize) -> Arc<Self> {
        // Start at the end of an existing file, but keep its last lines in the tail.
        let lines = last_lines(&path, cap);
        let out = stdout_path(&path);
        Arc::new(LogTail {
            inner: Mutex::new(Inner {
                lines: lines.into(),
                streams: [Stream::new(path.clone(), ""), Stream::new(out, STDOUT_MARK)],
            }),
            path,
            max_bytes,
            files,
            cap,
            live: broadcast::channel(1024).0,
        })
    }

    /// Reads what both files got since the last call; rotates each that passed the cap.
    pub fn poll(&self) {
        let mut inner = self.inner.lock().unwrap();
        let Inner { lines, streams } = &mut *inner;
        for s in streams.iter_mut() {
            s.poll(lines, (self.max_bytes, self.files, self.cap), &self.live);
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

/// The log file of service `name` in `logs_dir`: its stderr, and mlx-box's lines about it (the supervisor
/// writes it, `logs --path` names it).
/// `name` when it can name a log file in the logs dir and nothing else: letters, digits, `-`, `_`, `.`,
/// not starting with a dot, 128 bytes at most.
pub fn file_name(name: &str) -> Option<&str> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    ok.then_some(name)
}

pub fn log_path(logs_dir: &Path, name: &str) -> PathBuf {
    logs_dir.join(format!("{name}.log"))
}

/// Where the server's stdout goes, beside its stderr log `x.log`: `x.stdout.log`.
pub fn stdout_path(log: &Path) -> PathBuf {
    log.with_extension("stdout.log")
}

/// Rotated file `i` of a log (`x.log.1`, `x.log.2`, …).
fn rotated(path: &Path, i: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{i}"));
    PathBuf::from(s)
}

/// The files of service `name`'s logs that exist: stderr's current one and its rotated ones (newest
/// first), then stdout's.
pub fn log_files(logs_dir: &Path, name: &str) -> Vec<PathBuf> {
    let stderr = log_path(logs_dir, name);
    let stdout = stdout_path(&stderr);
    let mut out = vec![];
    for current in [stderr, stdout] {
        if current.exists() {
            out.push(current.clone());
        }
        out.extend(
            (1..=100)
                .map(|i| rotated(&current, i))
                .take_while(|p| p.exists()),
        );
    }
    out
}

/// `x.log` → `x.log.1` → … → `x.log.(files-1)`; then truncates `x.log` in place.
fn rotate(path: &Path, files: u32) -> std::io::Result<()> {
    let name = |i: u32| rotated(path, i);
    let mut copied = Ok(0);
    if files > 1 {
        for i in (1..files - 1).rev() {
            let _ = std::fs::rename(name(i), name(i + 1));
        }
        copied = std::fs::copy(path, name(1));
    }
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)?
        .set_len(0)?;
    copied.map(|_| ())
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
    /// A name from a URL never names a file outside the logs dir.
    #[test]
    fn only_plain_names_name_a_log_file() {
        for ok in ["chat", "fast-chat", "embed_2", "qwen3.5"] {
            assert_eq!(super::file_name(ok), Some(ok));
        }
        for bad in [
            "",
            "../x",
            "..",
            ".hidden",
            "a/b",
            "/etc/x",
            "a\\b",
            "a%2Fb",
            "a\0b",
            &"x".repeat(129),
        ] {
            assert_eq!(super::file_name(bad), None, "{bad:?}");
        }
    }

    use super::*;
    use std::io::Write;

    #[test]
    fn stdout_and_stderr_are_two_files_and_one_marked_tail() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("svc.log");
        let t = LogTail::new(p.clone(), 1 << 20, 2, 100);
        std::fs::write(&p, "INFO starting\n").unwrap();
        std::fs::write(stdout_path(&p), "listening on 8080\n").unwrap();
        assert_eq!(stdout_path(&p), d.path().join("svc.stdout.log"));
        assert_eq!(t.tail(10), ["INFO starting", "[stdout] listening on 8080"]);
        let files = log_files(d.path(), "svc");
        assert_eq!(files, [p.clone(), stdout_path(&p)]);
    }

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
        // What `logs --path` lists: the current file first, then the rotated ones.
        assert_eq!(
            log_files(d.path(), "svc"),
            ["svc.log", "svc.log.1", "svc.log.2"].map(|f| d.path().join(f))
        );
        assert!(log_files(d.path(), "other").is_empty());
        assert_eq!(tail.tail(1), ["line 099 padding padding"]);
        assert_eq!(
            tail.excerpt(2),
            "line 098 padding padding\nline 099 padding padding"
        );
    }

    /// `\r` progress output with no `\n` never grows one line without bound.
    #[test]
    fn carriage_returns_end_lines_and_long_lines_are_cut() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("svc.log");
        let mut w = std::fs::File::create(&p).unwrap();
        let tail = LogTail::new(p.clone(), u64::MAX, 1, 100);
        for i in 0..5 {
            write!(w, "\r{i}0%|####").unwrap();
        }
        write!(w, "\r\nERROR boom\r\n").unwrap();
        tail.poll();
        assert_eq!(tail.excerpt(2), "40%|####\nERROR boom");
        // 1 MB with no line end: one cut line, then the next line is whole.
        w.write_all(&vec![b'x'; 1 << 20]).unwrap();
        writeln!(w, "\nafter").unwrap();
        tail.poll();
        let lines = tail.tail(3);
        assert!(lines[0].starts_with("ERROR") || lines[0].starts_with("xxx"));
        assert!(
            lines[1].len() < MAX_LINE + 64 && lines[1].ends_with("line cut by mlx-box]"),
            "{}",
            lines[1].len()
        );
        assert_eq!(lines[2], "after");
    }

    #[test]
    fn a_huge_backlog_is_skipped_not_read_whole() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("svc.log");
        let mut w = std::fs::File::create(&p).unwrap();
        let tail = LogTail::new(p.clone(), u64::MAX, 1, 10);
        for i in 0..200_000 {
            writeln!(w, "line {i:07} of a chatty server").unwrap();
        }
        tail.poll();
        let lines = tail.tail(10);
        assert_eq!(lines.last().unwrap(), "line 0199999 of a chatty server");
        assert!(tail.tail(10_000).len() <= 10);
    }
}
