//! `mlx-box models rm`: refused while a service of the settings uses the model; else its snapshots go,
//! with the blobs no remaining revision links to and the refs that pointed at them, and the whole
//! `models--…` directory when no revision is left. Only files inside the repository's own directory are
//! ever removed (a link that leads elsewhere is removed, never what it leads to).

use super::cache::{self, RepoScan, RevScan};
use super::error::ModelError;
use super::list::uses;
use crate::config::Settings;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// What a removal will do.
#[derive(Debug, Clone)]
pub struct Plan {
    pub id: String,
    pub dir: PathBuf,
    /// The revisions removed (their hashes).
    pub revisions: Vec<String>,
    snapshots: Vec<PathBuf>,
    /// The blobs only removed revisions link to, with their sizes.
    pub blobs: Vec<(PathBuf, u64)>,
    refs: Vec<PathBuf>,
    /// No revision is left: the whole directory goes (partial downloads and unlinked blobs with it).
    pub whole: bool,
}

impl Plan {
    /// Bytes of the blobs it removes (a whole removal frees what else `blobs/` holds too).
    pub fn blob_bytes(&self) -> u64 {
        self.blobs.iter().map(|b| b.1).sum()
    }
}

/// Plans the removal of `id` from the first of `hubs` that has it (all its revisions, or `revision`: a
/// hash, a unique prefix of one, or a ref such as `main`), refused while a service of `settings` uses it.
pub fn plan(
    hubs: &[PathBuf],
    settings: Option<&Settings>,
    id: &str,
    revision: Option<&str>,
) -> Result<Plan, ModelError> {
    let repo = match cache::find_repo(id, hubs) {
        Ok(r) => r,
        Err(e) => {
            let named =
                settings.is_some_and(|s| s.services.iter().any(|x| x.model.as_deref() == Some(id)));
            return Err(if named && Path::new(id).is_dir() {
                ModelError::NotInCache { id: id.into() }
            } else {
                e
            });
        }
    };
    let users: Vec<&str> = settings
        .map(|s| s.services.as_slice())
        .unwrap_or_default()
        .iter()
        .filter(|s| uses(s, repo.dir.parent().unwrap_or(Path::new("")), &repo))
        .map(|s| s.name.as_str())
        .collect();
    if !users.is_empty() {
        return Err(ModelError::InUse {
            id: repo.id.clone(),
            services: users
                .iter()
                .map(|u| format!("[services.{u}]"))
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    let removed: Vec<&RevScan> = match revision {
        None => repo.revisions.iter().collect(),
        Some(r) => vec![pick(&repo, r)?],
    };
    let kept: Vec<&RevScan> = repo
        .revisions
        .iter()
        .filter(|v| !removed.iter().any(|r| r.hash == v.hash))
        .collect();
    let still_linked: BTreeSet<&PathBuf> = kept.iter().flat_map(|r| &r.blobs).collect();
    let own_blobs = repo.dir.join("blobs");
    let blobs: BTreeSet<&PathBuf> = removed
        .iter()
        .flat_map(|r| &r.blobs)
        .filter(|b| !still_linked.contains(b))
        // Never a file outside this repository's blobs/ (a hostile or hand-made link).
        .filter(|b| b.parent() == Some(own_blobs.as_path()))
        .collect();
    Ok(Plan {
        id: repo.id.clone(),
        dir: repo.dir.clone(),
        revisions: removed.iter().map(|r| r.hash.clone()).collect(),
        snapshots: removed.iter().map(|r| r.dir.clone()).collect(),
        blobs: blobs
            .into_iter()
            .map(|b| (b.clone(), repo.blob_sizes.get(b).copied().unwrap_or(0)))
            .collect(),
        refs: removed
            .iter()
            .flat_map(|r| r.refs.iter().map(|n| repo.dir.join("refs").join(n)))
            .collect(),
        whole: kept.is_empty(),
    })
}

/// A revision by hash, unique hash prefix (7 characters at least) or ref name.
fn pick<'a>(repo: &'a RepoScan, rev: &str) -> Result<&'a RevScan, ModelError> {
    let by_ref = repo
        .revisions
        .iter()
        .find(|r| r.refs.iter().any(|n| n == rev));
    let exact = repo.revisions.iter().find(|r| r.hash == rev);
    let prefixed: Vec<&RevScan> = repo
        .revisions
        .iter()
        .filter(|r| rev.len() >= 7 && r.hash.starts_with(rev))
        .collect();
    exact
        .or(by_ref)
        .or(match prefixed.as_slice() {
            [one] => Some(*one),
            _ => None,
        })
        .ok_or_else(|| ModelError::NoSuchRevision {
            id: repo.id.clone(),
            rev: rev.into(),
            have: if repo.revisions.is_empty() {
                "none".into()
            } else {
                repo.revisions
                    .iter()
                    .map(|r| {
                        let refs = if r.refs.is_empty() {
                            String::new()
                        } else {
                            format!(" ({})", r.refs.join(", "))
                        };
                        format!("{}{refs}", r.hash)
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        })
}

/// Carries out `plan`; returns the bytes freed: the blobs removed and the plain files of the snapshots
/// (and, for a whole removal, every file left in `blobs/`). Links and refs are not counted.
pub fn execute(plan: &Plan) -> Result<u64, ModelError> {
    let mut freed = 0u64;
    let fail = |path: &Path, source, freed| ModelError::Remove {
        path: path.to_path_buf(),
        source,
        freed,
    };
    for s in &plan.snapshots {
        let bytes = plain_bytes(s);
        std::fs::remove_dir_all(s).map_err(|e| fail(s, e, freed))?;
        freed += bytes;
    }
    for (b, _) in &plan.blobs {
        // Measured now, not when planned: the bytes freed are the bytes that were there.
        let Ok(m) = std::fs::symlink_metadata(b) else {
            continue;
        };
        std::fs::remove_file(b).map_err(|e| fail(b, e, freed))?;
        if m.is_file() {
            freed += m.len();
        }
    }
    for r in &plan.refs {
        match std::fs::remove_file(r) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(fail(r, e, freed)),
        }
    }
    if plan.whole {
        let rest = plain_bytes(&plan.dir.join("blobs"));
        std::fs::remove_dir_all(&plan.dir).map_err(|e| fail(&plan.dir, e, freed))?;
        freed += rest;
    }
    Ok(freed)
}

/// Bytes of the plain files under `dir` (links not followed), bounded like every walk of the cache.
fn plain_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![(dir.to_path_buf(), 0usize)];
    let mut seen = 0usize;
    while let Some((d, depth)) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            seen += 1;
            if seen > cache::MAX_FILES * 4 {
                return total;
            }
            let Ok(m) = std::fs::symlink_metadata(e.path()) else {
                continue;
            };
            if m.is_dir() && depth < cache::MAX_DEPTH {
                stack.push((e.path(), depth + 1));
            } else if m.is_file() {
                total += m.len();
            }
        }
    }
    total
}
