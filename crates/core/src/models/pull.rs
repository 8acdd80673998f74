//! A repository's files into the hub cache, in `huggingface_hub`'s own layout and partial files, so
//! it, mlx_lm and `models::cache` read what was pulled and each can continue what the other began:
//!
//! - each file downloads to `blobs/<etag>.incomplete` (a plain prefix, continued with
//!   `Range: bytes=N-`), under `huggingface_hub`'s lock `.locks/models--ORG--NAME/<etag>.lock`;
//! - its size and (LFS files) sha256 are checked against the Hub's info, then it is renamed to
//!   `blobs/<etag>`: a corrupt file is removed, never placed;
//! - only when every blob is in place are `snapshots/<commit>/<path>` linked (relative symlinks) and
//!   `refs/<branch>` written: a snapshot never names a partial or missing file.
//!
//! The plan (what is there, what is missing) is apart from the download so a caller can check it
//! first (`fit.rs`) and report progress its own way (`Progress`: the CLI's bars, later the daemon's
//! events).

use super::cache::repo_dir_name;
use super::error::PullError;
use super::hub::{Hub, RemoteFile};
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// What to pull: `ORG/NAME`, a revision (branch, tag or commit), globs as `huggingface_hub`'s
/// `allow_patterns` / `ignore_patterns` (fnmatch: `*` crosses `/`).
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub id: String,
    pub revision: String,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
}

impl Request {
    /// `ORG/NAME[@REV]` (`main` when no revision is given).
    pub fn parse(spec: &str) -> Request {
        let (id, rev) = match spec.split_once('@') {
            Some((id, rev)) if !rev.is_empty() => (id, rev),
            Some((id, _)) => (id, "main"),
            None => (spec, "main"),
        };
        Request {
            id: id.to_string(),
            revision: rev.to_string(),
            ..Request::default()
        }
    }
}

/// One file to have, and how much of it is here.
#[derive(Debug, Clone)]
pub struct PlanFile {
    pub remote: RemoteFile,
    /// Bytes on disk: the whole size when its blob is in place, else the partial blob's length.
    pub have: u64,
    pub done: bool,
}

/// A pull, decided: the commit, the files (after the globs), what of them is here.
#[derive(Debug, Clone)]
pub struct Plan {
    pub id: String,
    pub revision: String,
    pub commit: String,
    /// `<cache>/models--ORG--NAME`.
    pub repo_dir: PathBuf,
    pub files: Vec<PlanFile>,
}

impl Plan {
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.remote.size).sum()
    }
    /// Bytes still to download.
    pub fn missing_bytes(&self) -> u64 {
        self.files
            .iter()
            .map(|f| f.remote.size.saturating_sub(f.have))
            .sum()
    }
    pub fn file(&self, path: &str) -> Option<&RemoteFile> {
        self.files
            .iter()
            .map(|f| &f.remote)
            .find(|f| f.path == path)
    }
    pub fn snapshot_dir(&self) -> PathBuf {
        self.repo_dir.join("snapshots").join(&self.commit)
    }
    fn blob(&self, etag: &str) -> PathBuf {
        self.repo_dir.join("blobs").join(etag)
    }
    fn partial(&self, etag: &str) -> PathBuf {
        self.repo_dir
            .join("blobs")
            .join(format!("{etag}.incomplete"))
    }
}

/// What a pull says as it goes; every method has a default (ignore).
pub trait Progress: Send + Sync {
    /// A file begins: its size and the bytes already here (a partial blob continued).
    fn file(&self, _path: &str, _size: u64, _have: u64) {}
    /// `n` more bytes of `path` arrived.
    fn bytes(&self, _path: &str, _n: u64) {}
    /// `path` is verified and in place.
    fn done(&self, _path: &str) {}
}

impl Progress for () {}

/// Asks the Hub what `req` names and looks at what the cache at `hub_cache` already has.
pub async fn plan(hub: &Hub, hub_cache: &Path, req: &Request) -> Result<Plan, PullError> {
    let info = hub.info(&req.id, &req.revision).await?;
    let keep = filter(&req.include, &req.exclude)?;
    let repo_dir = hub_cache.join(repo_dir_name(&req.id));
    let mut plan = Plan {
        id: req.id.clone(),
        revision: req.revision.clone(),
        commit: info.commit,
        repo_dir,
        files: vec![],
    };
    for remote in info.files.into_iter().filter(|f| keep(&f.path)) {
        let blob_len = std::fs::metadata(plan.blob(&remote.etag)).map(|m| m.len());
        let (have, done) = match blob_len {
            Ok(n) if n == remote.size => (n, true),
            _ => {
                let partial = std::fs::metadata(plan.partial(&remote.etag))
                    .map(|m| m.len())
                    .unwrap_or(0);
                (partial.min(remote.size), false)
            }
        };
        plan.files.push(PlanFile { remote, have, done });
    }
    if plan.files.is_empty() {
        return Err(PullError::NothingMatches { id: req.id.clone() });
    }
    Ok(plan)
}

/// `path` kept: matched by an include (or no include given) and by no exclude.
fn filter(include: &[String], exclude: &[String]) -> Result<impl Fn(&str) -> bool, PullError> {
    let set = |globs: &[String]| {
        let mut b = globset::GlobSetBuilder::new();
        for g in globs {
            // A pattern ending in `/` means a directory's contents, as huggingface_hub reads it.
            let p = if g.ends_with('/') {
                format!("{g}*")
            } else {
                g.clone()
            };
            let glob = globset::GlobBuilder::new(&p)
                .literal_separator(false)
                .build()
                .map_err(|e| PullError::BadGlob {
                    glob: g.clone(),
                    detail: e.to_string(),
                })?;
            b.add(glob);
        }
        b.build().map_err(|e| PullError::BadGlob {
            glob: globs.join(" "),
            detail: e.to_string(),
        })
    };
    let inc = set(include)?;
    let exc = set(exclude)?;
    let any_include = !include.is_empty();
    Ok(move |p: &str| (!any_include || inc.is_match(p)) && !exc.is_match(p))
}

/// Downloads what `plan` lacks, verifies it, places it, then links the snapshot and writes the ref.
/// Returns the snapshot directory. Blocking file I/O is small per call (a chunk at a time).
pub async fn execute(
    hub: &Hub,
    plan: &Plan,
    progress: &dyn Progress,
) -> Result<PathBuf, PullError> {
    for f in &plan.files {
        if f.done {
            progress.file(&f.remote.path, f.remote.size, f.remote.size);
            progress.done(&f.remote.path);
            continue;
        }
        fetch_blob(hub, plan, &f.remote, progress).await?;
        progress.done(&f.remote.path);
    }
    let snap = plan.snapshot_dir();
    for f in &plan.files {
        link(&snap, &f.remote.path, &f.remote.etag)?;
    }
    if plan.revision != plan.commit {
        let r = plan.repo_dir.join("refs").join(&plan.revision);
        if let Some(parent) = r.parent() {
            std::fs::create_dir_all(parent).map_err(|e| PullError::io(parent, e))?;
        }
        write_atomic(&r, plan.commit.as_bytes())?;
    }
    Ok(snap)
}

async fn fetch_blob(
    hub: &Hub,
    plan: &Plan,
    f: &RemoteFile,
    progress: &dyn Progress,
) -> Result<(), PullError> {
    let blob = plan.blob(&f.etag);
    let partial = plan.partial(&f.etag);
    let blobs = plan.repo_dir.join("blobs");
    std::fs::create_dir_all(&blobs).map_err(|e| PullError::io(&blobs, e))?;
    let _lock = lock(plan, &f.etag)?;
    // Another process may have finished it while this one waited to plan.
    if std::fs::metadata(&blob).is_ok_and(|m| m.len() == f.size) {
        progress.file(&f.path, f.size, f.size);
        return Ok(());
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .open(&partial)
        .map_err(|e| PullError::io(&partial, e))?;
    let mut have = file
        .metadata()
        .map_err(|e| PullError::io(&partial, e))?
        .len();
    if have > f.size {
        truncate(&file, &partial)?;
        have = 0;
    }
    // The sha256 covers the whole file: what is already here is hashed first.
    let mut hash = Sha256::new();
    if f.sha256.is_some() && have > 0 {
        hash_prefix(&partial, have, &mut hash)?;
    }
    progress.file(&f.path, f.size, have);
    if have < f.size {
        let (resp, offset) = hub.open(&plan.id, &plan.commit, &f.path, have).await?;
        if offset != have {
            // The server sent the whole file: start over.
            truncate(&file, &partial)?;
            have = 0;
            hash = Sha256::new();
        }
        let mut stream = resp.bytes_stream();
        let what = || format!("{}/{}", plan.id, f.path);
        loop {
            // Per chunk: a server that stops sending is named, not waited on for ever.
            let next = tokio::time::timeout(hub.read_timeout(), stream.next())
                .await
                .map_err(|_| PullError::Stalled {
                    what: what(),
                    secs: hub.read_timeout().as_secs_f64(),
                })?;
            let chunk = match next {
                None => break,
                Some(Ok(c)) => c,
                Some(Err(e)) if e.is_timeout() => {
                    return Err(PullError::Stalled {
                        what: what(),
                        secs: hub.read_timeout().as_secs_f64(),
                    })
                }
                Some(Err(e)) => {
                    return Err(PullError::Network {
                        what: what(),
                        detail: format!("cut off at {have} of {} bytes: {e}", f.size),
                    })
                }
            };
            if have + chunk.len() as u64 > f.size {
                drop(file);
                let _ = std::fs::remove_file(&partial);
                return Err(PullError::Size {
                    file: what(),
                    expected: f.size,
                    got: have + chunk.len() as u64,
                });
            }
            file.write_all(&chunk)
                .map_err(|e| PullError::io(&partial, e))?;
            if f.sha256.is_some() {
                hash.update(&chunk);
            }
            have += chunk.len() as u64;
            progress.bytes(&f.path, chunk.len() as u64);
        }
        if have < f.size {
            return Err(PullError::Network {
                what: what(),
                detail: format!("the connection closed at {have} of {} bytes", f.size),
            });
        }
    }
    file.sync_all().map_err(|e| PullError::io(&partial, e))?;
    drop(file);
    if let Some(expected) = &f.sha256 {
        let got = hex::encode(hash.finalize());
        if &got != expected {
            let _ = std::fs::remove_file(&partial);
            return Err(PullError::Corrupt {
                file: format!("{}/{}", plan.id, f.path),
                expected: expected.clone(),
                got,
            });
        }
    }
    std::fs::rename(&partial, &blob).map_err(|e| PullError::io(&blob, e))?;
    Ok(())
}

fn truncate(file: &std::fs::File, path: &Path) -> Result<(), PullError> {
    file.set_len(0).map_err(|e| PullError::io(path, e))
}

fn hash_prefix(path: &Path, len: u64, hash: &mut Sha256) -> Result<(), PullError> {
    let mut f = std::fs::File::open(path)
        .map_err(|e| PullError::io(path, e))?
        .take(len);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| PullError::io(path, e))?;
        if n == 0 {
            return Ok(());
        }
        hash.update(&buf[..n]);
    }
}

/// `huggingface_hub`'s lock for this blob (`filelock` is `flock` on Unix), taken without waiting.
fn lock(plan: &Plan, etag: &str) -> Result<nix::fcntl::Flock<std::fs::File>, PullError> {
    let cache = plan.repo_dir.parent().unwrap_or(Path::new("."));
    let dir = cache.join(".locks").join(repo_dir_name(&plan.id));
    std::fs::create_dir_all(&dir).map_err(|e| PullError::io(&dir, e))?;
    let path = dir.join(format!("{etag}.lock"));
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| PullError::io(&path, e))?;
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .map_err(|_| PullError::Busy { path })
}

/// `snap/path → ../../blobs/etag` (one `../` more per directory of `path`), replaced atomically.
fn link(snap: &Path, path: &str, etag: &str) -> Result<(), PullError> {
    let at = snap.join(path);
    let parent = at.parent().unwrap_or(snap);
    std::fs::create_dir_all(parent).map_err(|e| PullError::io(parent, e))?;
    let target = format!(
        "{}blobs/{etag}",
        "../".repeat(path.matches('/').count() + 2)
    );
    if std::fs::read_link(&at).is_ok_and(|t| t == Path::new(&target)) {
        return Ok(());
    }
    let tmp = parent.join(format!(
        ".{}.mlxbox-link",
        at.file_name().unwrap_or_default().to_string_lossy()
    ));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&target, &tmp).map_err(|e| PullError::io(&tmp, e))?;
    std::fs::rename(&tmp, &at).map_err(|e| PullError::io(&at, e))
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), PullError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| PullError::io(dir, e))?;
    tmp.write_all(bytes).map_err(|e| PullError::io(path, e))?;
    tmp.persist(path)
        .map_err(|e| PullError::io(path, e.error))
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_revisions() {
        let r = Request::parse("org/name@v1.0");
        assert_eq!((r.id.as_str(), r.revision.as_str()), ("org/name", "v1.0"));
        assert_eq!(Request::parse("org/name").revision, "main");
        assert_eq!(Request::parse("org/name@").revision, "main");
    }

    #[test]
    fn globs_as_huggingface_hub_matches_them() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let keep = filter(&s(&["*.json", "sub/"]), &s(&["tokenizer*"])).unwrap();
        assert!(keep("config.json"));
        assert!(keep("a/b.json"), "`*` crosses `/` as fnmatch's does");
        assert!(keep("sub/x.bin"));
        assert!(!keep("tokenizer.json"));
        assert!(!keep("model.safetensors"));
        let all = filter(&[], &[]).unwrap();
        assert!(all("anything/at.all"));
        assert!(filter(&s(&["a[b"]), &[]).is_err());
    }
}
