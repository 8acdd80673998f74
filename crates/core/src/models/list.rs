//! The models on this Mac with the services that use them: every repository of the hub caches the
//! settings reach, every local model directory a service names, each with its users' memory estimate
//! (the budget's own estimator, `estimate::estimate_service`) and, from a daemon, their state and last
//! request.

use super::cache::{self, CacheScan, RepoScan, RevScan};
use super::info;
use crate::config::{ServiceSpec, Settings};
use crate::estimate::{estimate_service, service_hub};
use mlxbox_api::models::{LocalModel, ModelList, ModelRevision, ModelSource, ModelUser};
use mlxbox_api::service::State;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// What only a running daemon knows: each service's state and its proxy's last request (unix ms).
#[derive(Debug, Clone, Default)]
pub struct Live {
    pub states: BTreeMap<String, State>,
    pub last_request_ms: BTreeMap<String, u64>,
}

/// The hub caches to read: this process's, then each one a service's `env` names, once each (two
/// spellings of one directory are one cache: its models are listed once).
pub fn hubs(settings: Option<&Settings>) -> Vec<PathBuf> {
    let services = settings.map(|s| s.services.as_slice()).unwrap_or_default();
    let all = std::iter::once(cache::hf_hub_cache(&[])).chain(services.iter().map(service_hub));
    let mut out: Vec<PathBuf> = vec![];
    let mut seen = BTreeSet::new();
    for h in all {
        if seen.insert(std::fs::canonicalize(&h).unwrap_or_else(|_| h.clone())) {
            out.push(h);
        }
    }
    out
}

/// Whether `spec` runs the repository `repo` of `hub`: its `model` is the id (in the hub its server
/// reads), or a path into the repository's directory.
pub fn uses(spec: &ServiceSpec, hub: &Path, repo: &RepoScan) -> bool {
    let Some(m) = spec.model.as_deref() else {
        return false;
    };
    if m == repo.id && same_dir(&service_hub(spec), hub) {
        return true;
    }
    is_within(m, &repo.dir)
}

fn same_dir(a: &Path, b: &Path) -> bool {
    a == b || std::fs::canonicalize(a).is_ok_and(|a| std::fs::canonicalize(b).is_ok_and(|b| a == b))
}

/// `model` is an existing path inside (or equal to) `dir`, once both are resolved.
fn is_within(model: &str, dir: &Path) -> bool {
    let p = Path::new(model);
    if !p.is_absolute() && !model.starts_with('.') && !model.starts_with('~') {
        return false; // a repository id, not a path: no stat
    }
    match (std::fs::canonicalize(p), std::fs::canonicalize(dir)) {
        (Ok(a), Ok(b)) => a.starts_with(b),
        _ => false,
    }
}

/// Everything `mlx-box models` lists, from the caches `hubs` (see [`hubs`]).
pub fn list(hubs: &[PathBuf], settings: Option<&Settings>, live: &Live) -> ModelList {
    let scans: Vec<CacheScan> = hubs.iter().map(|h| cache::scan(h)).collect();
    let services: &[ServiceSpec] = settings.map(|s| s.services.as_slice()).unwrap_or_default();
    let mut models = vec![];
    let mut problems = vec![];
    for scan in &scans {
        problems.extend(scan.problems.iter().cloned());
        for repo in &scan.repos {
            let users: Vec<&ServiceSpec> = services
                .iter()
                .filter(|s| uses(s, &scan.hub, repo))
                .collect();
            models.push(hub_model(&scan.hub, repo, &users, live));
        }
    }
    // Local directories named by path, not inside a cache repository listed above.
    let mut by_path: BTreeMap<PathBuf, Vec<&ServiceSpec>> = BTreeMap::new();
    for s in services {
        let Some(m) = s.model.as_deref() else {
            continue;
        };
        let in_cache = scans
            .iter()
            .any(|c| c.repos.iter().any(|r| uses(s, &c.hub, r)));
        if in_cache || !Path::new(m).is_dir() {
            continue;
        }
        let key = std::fs::canonicalize(m).unwrap_or_else(|_| PathBuf::from(m));
        by_path.entry(key).or_default().push(s);
    }
    for (dir, users) in by_path {
        models.push(path_model(&dir, &users, live));
    }
    models.sort_by(|a, b| b.size_bytes.cmp(&a.size_bytes).then(a.id.cmp(&b.id)));
    ModelList {
        hubs: hubs.iter().map(|h| h.display().to_string()).collect(),
        total_bytes: models.iter().map(|m| m.size_bytes).sum(),
        unused_bytes: models
            .iter()
            .filter(|m| m.users.is_empty())
            .map(|m| m.size_bytes)
            .sum(),
        models,
        problems,
    }
}

fn user(spec: &ServiceSpec, live: &Live) -> ModelUser {
    let e = estimate_service(spec, &service_hub(spec));
    ModelUser {
        service: spec.name.clone(),
        state: live.states.get(&spec.name).copied(),
        enabled: spec.enabled,
        context_tokens: e.context_tokens,
        estimate_bytes: e.total_bytes,
    }
}

fn last_used(users: &[&ServiceSpec], live: &Live) -> Option<u64> {
    users
        .iter()
        .filter_map(|s| live.last_request_ms.get(&s.name).copied())
        .max()
}

/// The shards each safetensors index lists, read once per index blob (revisions mostly share one).
type Indexes = BTreeMap<PathBuf, Result<BTreeSet<String>, String>>;

/// The shards the index of a snapshot (or directory) lists that it does not hold, each a problem.
fn missing_shards(rev: &RevScan, indexes: &mut Indexes, problems: &mut Vec<String>) -> bool {
    let Some(blob) = rev.names.get(info::INDEX) else {
        return false;
    };
    let shards = indexes
        .entry(blob.clone())
        .or_insert_with(|| info::index_shards(blob).map_err(|e| e.to_string()));
    match shards {
        Ok(shards) => {
            let mut any = false;
            for s in shards.iter().filter(|s| !rev.names.contains_key(*s)) {
                problems.push(format!("the index lists {s}, which is not there"));
                any = true;
            }
            any
        }
        Err(e) => {
            problems.push(e.clone());
            false
        }
    }
}

/// A revision is complete when every link resolves and the index's shards are all there.
fn revision(
    repo: &RepoScan,
    rev: &RevScan,
    indexes: &mut Indexes,
    problems: &mut Vec<String>,
) -> ModelRevision {
    let short = &rev.hash[..rev.hash.len().min(12)];
    let mut own = vec![];
    for b in &rev.broken {
        own.push(format!("{b} links to a blob that is not there"));
    }
    let missing = missing_shards(rev, indexes, &mut own);
    problems.extend(own.into_iter().map(|p| format!("revision {short}: {p}")));
    ModelRevision {
        hash: rev.hash.clone(),
        refs: rev.refs.clone(),
        size_bytes: repo.bytes_of([rev]),
        files: rev.files,
        complete: rev.broken.is_empty() && !missing,
    }
}

fn hub_model(hub: &Path, repo: &RepoScan, users: &[&ServiceSpec], live: &Live) -> LocalModel {
    let mut problems = repo.problems.clone();
    let mut indexes = Indexes::new();
    let revisions: Vec<ModelRevision> = repo
        .revisions
        .iter()
        .map(|r| revision(repo, r, &mut indexes, &mut problems))
        .collect();
    // The snapshot the estimator reads (the newest with a config.json), else the newest.
    let dir = cache::locate_model(&repo.id, hub)
        .or_else(|| repo.revisions.first().map(|r| r.dir.clone()));
    let facts = dir.as_deref().map(info::read).unwrap_or_default();
    problems.extend(facts.problems.iter().cloned());
    let complete =
        !revisions.is_empty() && revisions.iter().all(|r| r.complete) && repo.incomplete_bytes == 0;
    LocalModel {
        revisions,
        size_bytes: repo.size_bytes(),
        incomplete_bytes: repo.incomplete_bytes,
        complete,
        problems,
        ..base(
            repo.id.clone(),
            ModelSource::Hub,
            &repo.dir,
            facts,
            users,
            live,
        )
    }
}

fn path_model(dir: &Path, users: &[&ServiceSpec], live: &Live) -> LocalModel {
    let mut problems = vec![];
    let mut rev = RevScan::default();
    let mut sizes = BTreeMap::new();
    cache::walk(dir, &mut rev, &mut sizes, &mut problems);
    for b in &rev.broken {
        problems.push(format!("{b} links to a file that is not there"));
    }
    let missing = missing_shards(&rev, &mut Indexes::new(), &mut problems);
    let facts = info::read(dir);
    problems.extend(facts.problems.iter().cloned());
    let id = users
        .first()
        .and_then(|s| s.model.clone())
        .unwrap_or_else(|| dir.display().to_string());
    LocalModel {
        size_bytes: sizes.values().sum(),
        complete: rev.broken.is_empty() && !missing,
        problems,
        ..base(id, ModelSource::Path, dir, facts, users, live)
    }
}

/// What every model has: its facts and users (sizes, revisions and problems are the caller's).
fn base(
    id: String,
    source: ModelSource,
    dir: &Path,
    facts: info::Facts,
    users: &[&ServiceSpec],
    live: &Live,
) -> LocalModel {
    LocalModel {
        id,
        source,
        path: dir.display().to_string(),
        revisions: vec![],
        size_bytes: 0,
        incomplete_bytes: 0,
        complete: false,
        architecture: facts.architecture,
        model_type: facts.model_type,
        quant_bits: facts.quant_bits,
        quant_group_size: facts.quant_group_size,
        dtype: facts.dtype,
        parameters: facts.parameters,
        context_length: facts.context_length,
        users: users.iter().map(|s| user(s, live)).collect(),
        last_used_ms: last_used(users, live),
        problems: vec![],
    }
}
