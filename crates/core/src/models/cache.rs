//! The Hugging Face hub cache, read exactly as `huggingface_hub` writes it (and as its `scan_cache_dir`
//! reads it): `models--ORG--NAME/{blobs/SHA, snapshots/REV/FILE → ../../blobs/SHA, refs/main = REV}`.
//! A blob is the first hop of a snapshot's link (an absolute, normalized path); its size is counted once
//! per repository however many revisions link to it. Every walk is bounded; whatever is wrong with an
//! entry is a problem of that entry, never a failure of the scan.

use super::error::ModelError;
use super::read::{read_capped, MAX_REF};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};
use std::time::SystemTime;

/// Entries of a cache directory read at most (a larger cache is listed up to here, and says so).
pub const MAX_REPOS: usize = 20_000;
/// Snapshots of one repository read at most.
pub const MAX_REVISIONS: usize = 1_000;
/// Files of one snapshot (or one local model directory) read at most, and how deep.
pub const MAX_FILES: usize = 20_000;
pub const MAX_DEPTH: usize = 16;
/// Files of `refs/` read at most.
pub const MAX_REFS: usize = 1_000;

/// Names of a hub cache that are not repositories (`huggingface_hub`'s own files).
const NOT_REPOS: &[&str] = &[".locks", "version.txt", "CACHEDIR.TAG", ".DS_Store"];

/// The Hugging Face hub cache: `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`.
/// `env` (a service's own) stands over the process environment.
pub fn hf_hub_cache(env: &[(String, PathBuf)]) -> PathBuf {
    let get = |k: &str| {
        env.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .or_else(|| std::env::var_os(k).map(PathBuf::from))
    };
    if let Some(p) = get("HF_HUB_CACHE") {
        return p;
    }
    if let Some(p) = get("HF_HOME") {
        return p.join("hub");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    home.join(".cache/huggingface/hub")
}

/// The hub cache a server with this `env` (a service's own, over the process's) reads.
pub fn hub_for_env(env: &BTreeMap<String, String>) -> PathBuf {
    let env: Vec<(String, PathBuf)> = env
        .iter()
        .map(|(k, v)| (k.clone(), PathBuf::from(v)))
        .collect();
    hf_hub_cache(&env)
}

/// `ORG/NAME` → `models--ORG--NAME`.
pub fn repo_dir_name(id: &str) -> String {
    format!("models--{}", id.replace('/', "--"))
}

/// `models--ORG--NAME` → `ORG/NAME` (`None` for a name that is not a model repository's).
pub fn repo_id(dir_name: &str) -> Option<String> {
    let rest = dir_name.strip_prefix("models--")?;
    let id = rest.replace("--", "/");
    let ok = !rest.is_empty()
        && id
            .split('/')
            .all(|p| !p.is_empty() && p != "." && p != "..");
    ok.then_some(id)
}

/// Where a model's files are: a local directory, or the newest snapshot of `ORG/NAME` in the hub cache.
pub fn locate_model(model: &str, hub: &Path) -> Option<PathBuf> {
    let p = Path::new(model);
    if p.is_dir() {
        return Some(p.to_path_buf());
    }
    let snapshots = hub.join(repo_dir_name(model)).join("snapshots");
    std::fs::read_dir(snapshots)
        .ok()?
        .flatten()
        .filter(|e| e.path().join("config.json").exists())
        .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok())
        .map(|e| e.path())
}

/// Whether `model` is on this Mac: an existing path, or a repository of `hub` with a snapshot. A few
/// stats, no walk (what `validate` affords per service).
pub fn is_present(model: &str, hub: &Path) -> bool {
    if Path::new(model).exists() {
        return true;
    }
    std::fs::read_dir(hub.join(repo_dir_name(model)).join("snapshots"))
        .map(|mut d| d.next().is_some())
        .unwrap_or(false)
}

/// One snapshot of a repository.
#[derive(Debug, Clone, Default)]
pub struct RevScan {
    pub hash: String,
    pub dir: PathBuf,
    pub refs: Vec<String>,
    /// The blobs its files link to (absolute, normalized).
    pub blobs: BTreeSet<PathBuf>,
    /// Each present file (relative to the snapshot) and its blob.
    pub names: BTreeMap<String, PathBuf>,
    pub files: u32,
    /// Files whose link leads nowhere (relative to the snapshot).
    pub broken: Vec<String>,
    pub modified: Option<SystemTime>,
}

/// One `models--ORG--NAME` directory.
#[derive(Debug, Clone, Default)]
pub struct RepoScan {
    pub id: String,
    pub dir: PathBuf,
    /// Newest first (snapshot directory mtime, as `locate_model` picks).
    pub revisions: Vec<RevScan>,
    /// Each blob a snapshot links to, with its size.
    pub blob_sizes: BTreeMap<PathBuf, u64>,
    /// `blobs/*.incomplete`: partial downloads.
    pub incomplete_bytes: u64,
    pub problems: Vec<String>,
}

impl RepoScan {
    /// Bytes of the blobs linked from `revs`, each once.
    pub fn bytes_of<'a>(&self, revs: impl IntoIterator<Item = &'a RevScan>) -> u64 {
        let blobs: BTreeSet<&PathBuf> = revs.into_iter().flat_map(|r| &r.blobs).collect();
        blobs.iter().filter_map(|b| self.blob_sizes.get(*b)).sum()
    }

    pub fn size_bytes(&self) -> u64 {
        self.blob_sizes.values().sum()
    }
}

/// A whole cache directory.
#[derive(Debug, Clone, Default)]
pub struct CacheScan {
    pub hub: PathBuf,
    pub repos: Vec<RepoScan>,
    pub problems: Vec<String>,
}

/// Reads every model repository of `hub`. A cache that does not exist is an empty one.
pub fn scan(hub: &Path) -> CacheScan {
    let mut out = CacheScan {
        hub: hub.to_path_buf(),
        ..Default::default()
    };
    let entries = match std::fs::read_dir(hub) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return out,
        Err(e) => {
            out.problems
                .push(format!("cannot read the hub cache {}: {e}", hub.display()));
            return out;
        }
    };
    let mut names: Vec<String> = vec![];
    for e in entries {
        if names.len() >= MAX_REPOS {
            out.problems.push(format!(
                "{} has more than {MAX_REPOS} entries: only the first {MAX_REPOS} are listed",
                hub.display()
            ));
            break;
        }
        match e {
            Ok(e) => names.push(e.file_name().to_string_lossy().into_owned()),
            Err(e) => out.problems.push(format!("{}: {e}", hub.display())),
        }
    }
    names.sort();
    for name in names {
        if NOT_REPOS.contains(&name.as_str())
            || name.starts_with("datasets--")
            || name.starts_with("spaces--")
        {
            continue;
        }
        let dir = hub.join(&name);
        match repo_id(&name) {
            Some(id) => out.repos.push(scan_repo(&id, &dir)),
            None => out.problems.push(format!(
                "{}: not a `models--ORG--NAME` directory, not read",
                dir.display()
            )),
        }
    }
    out
}

/// Reads one repository directory.
pub fn scan_repo(id: &str, dir: &Path) -> RepoScan {
    let mut r = RepoScan {
        id: id.to_string(),
        dir: dir.to_path_buf(),
        ..Default::default()
    };
    if !dir.is_dir() {
        r.problems
            .push(format!("{} is not a directory", dir.display()));
        return r;
    }
    let refs = read_refs(&dir.join("refs"), &mut r.problems);
    let snapshots = dir.join("snapshots");
    let entries = match std::fs::read_dir(&snapshots) {
        Ok(d) => d,
        Err(e) => {
            r.problems.push(format!(
                "no snapshots ({}: {e}): an interrupted download? remove it and fetch it again",
                snapshots.display()
            ));
            return r;
        }
    };
    for (i, e) in entries.flatten().enumerate() {
        if i >= MAX_REVISIONS {
            r.problems.push(format!(
                "more than {MAX_REVISIONS} snapshots: only the first {MAX_REVISIONS} are counted"
            ));
            break;
        }
        let hash = e.file_name().to_string_lossy().into_owned();
        let path = e.path();
        if NOT_REPOS.contains(&hash.as_str()) {
            continue;
        }
        if !path.is_dir() {
            r.problems
                .push(format!("snapshots/{hash} is not a directory"));
            continue;
        }
        let mut rev = RevScan {
            refs: refs.get(&hash).cloned().unwrap_or_default(),
            hash,
            modified: std::fs::metadata(&path).and_then(|m| m.modified()).ok(),
            dir: path,
            ..Default::default()
        };
        let mut sizes = BTreeMap::new();
        let root = rev.dir.clone();
        walk(&root, &mut rev, &mut sizes, &mut r.problems);
        r.blob_sizes.extend(sizes);
        r.revisions.push(rev);
    }
    for (hash, names) in &refs {
        if !r.revisions.iter().any(|v| &v.hash == hash) {
            r.problems.push(format!(
                "refs {} point at {hash}, which has no snapshot",
                names.join(", ")
            ));
        }
    }
    r.revisions
        .sort_by(|a, b| b.modified.cmp(&a.modified).then(a.hash.cmp(&b.hash)));
    if let Ok(d) = std::fs::read_dir(dir.join("blobs")) {
        for e in d.flatten().take(MAX_FILES) {
            if e.file_name().to_string_lossy().ends_with(".incomplete") {
                let n = e.metadata().map(|m| m.len()).unwrap_or(0);
                r.incomplete_bytes += n;
                r.problems.push(format!(
                    "partial download: blobs/{} ({n} bytes)",
                    e.file_name().to_string_lossy()
                ));
            }
        }
    }
    r
}

/// `refs/**` → commit hash → the refs' names (`main`, `refs/pr/1`).
fn read_refs(dir: &Path, problems: &mut Vec<String>) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut stack = vec![(dir.to_path_buf(), 0usize)];
    let mut seen = 0;
    while let Some((d, depth)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            seen += 1;
            if seen > MAX_REFS {
                problems.push(format!("more than {MAX_REFS} refs: the rest not read"));
                return out;
            }
            let p = e.path();
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                if depth < 4 {
                    stack.push((p, depth + 1));
                }
                continue;
            }
            let name = p
                .strip_prefix(dir)
                .unwrap_or(&p)
                .to_string_lossy()
                .into_owned();
            match read_capped(&p, MAX_REF, "ref") {
                Ok(b) => {
                    let hash = String::from_utf8_lossy(&b).trim().to_string();
                    out.entry(hash).or_default().push(name);
                }
                Err(e) => problems.push(format!("refs/{name}: {e}")),
            }
        }
    }
    for v in out.values_mut() {
        v.sort();
    }
    out
}

/// Walks a snapshot (or a local model directory): every file's blob (a link's first hop, a plain
/// file itself) and its size; links that lead nowhere. Bounded in depth and count.
pub fn walk(
    root: &Path,
    rev: &mut RevScan,
    sizes: &mut BTreeMap<PathBuf, u64>,
    problems: &mut Vec<String>,
) {
    let mut stack = vec![(root.to_path_buf(), 0usize)];
    while let Some((d, depth)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            problems.push(format!("cannot read {}", d.display()));
            continue;
        };
        for e in entries.flatten() {
            if rev.files as usize >= MAX_FILES {
                problems.push(format!(
                    "{}: more than {MAX_FILES} files, the rest not counted",
                    root.display()
                ));
                return;
            }
            let p = e.path();
            let rel = p
                .strip_prefix(root)
                .unwrap_or(&p)
                .to_string_lossy()
                .into_owned();
            let Ok(lm) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            let blob = if lm.file_type().is_symlink() {
                let Ok(target) = std::fs::read_link(&p) else {
                    continue;
                };
                normalize(&d.join(target))
            } else if lm.is_dir() {
                if depth < MAX_DEPTH {
                    stack.push((p, depth + 1));
                }
                continue;
            } else {
                p.clone()
            };
            match std::fs::metadata(&blob) {
                // A link to a directory is not a file (huggingface_hub skips it too).
                Ok(m) if m.is_dir() => continue,
                Ok(m) => {
                    rev.files += 1;
                    sizes.insert(blob.clone(), m.len());
                    rev.names.insert(rel, blob.clone());
                    rev.blobs.insert(blob);
                }
                Err(_) => {
                    rev.files += 1;
                    rev.broken.push(rel);
                }
            }
        }
    }
    rev.broken.sort();
}

/// `a/b/../c` → `a/c`, lexically (`os.path.abspath`, which `huggingface_hub` uses for a link's target).
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

/// A repository of one of `hubs` by its id (or its `models--…` directory name).
pub fn find_repo(id: &str, hubs: &[PathBuf]) -> Result<RepoScan, ModelError> {
    let id = repo_id(id).unwrap_or_else(|| id.to_string());
    for hub in hubs {
        let dir = hub.join(repo_dir_name(&id));
        if dir.is_dir() {
            return Ok(scan_repo(&id, &dir));
        }
    }
    Err(ModelError::NotFound {
        id,
        hubs: hubs
            .iter()
            .map(|h| h.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_names() {
        assert_eq!(
            repo_id("models--mlx-community--Qwen3-8B-4bit").as_deref(),
            Some("mlx-community/Qwen3-8B-4bit")
        );
        assert_eq!(repo_id("models--gpt2").as_deref(), Some("gpt2"));
        for bad in [
            "models--",
            "models----x",
            "models--a----b",
            "models--..",
            "foo",
            "datasets--a--b",
        ] {
            assert_eq!(repo_id(bad), None, "{bad}");
        }
        assert_eq!(repo_dir_name("a/b"), "models--a--b");
        assert_eq!(
            normalize(Path::new("/h/m/snapshots/r/../../blobs/x")),
            Path::new("/h/m/blobs/x")
        );
    }
}
