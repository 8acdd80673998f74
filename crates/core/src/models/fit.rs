//! Will it fit, before a byte of the weights is fetched: the memory the model needs (weights + KV at
//! the context of each service that names it, by the budget's own estimator, `estimate::estimate_model`)
//! against the memory budget, and the bytes still to download against the free disk.
//!
//! Weights: the safetensors index's `metadata.total_size` (what the tensors take in memory), else the
//! `*.safetensors` sizes of the Hub's file list. KV: from the repository's config.json; a model no
//! service names yet is counted by its weights alone (there is no context to count KV at), and says so.

use super::error::PullError;
use super::hub::Hub;
use super::info::INDEX;
use super::pull::Plan;
use super::read::{MAX_CONFIG, MAX_INDEX};
use crate::config::Settings;
use crate::estimate::{self, Estimate, ServiceEstimate, Shortfall};
use mlxbox_api::units::bytes;
use std::path::Path;

/// What the check found.
#[derive(Debug, Clone)]
pub struct Fit {
    pub weights_bytes: u64,
    /// "the safetensors index" or "the file list".
    pub weights_from: &'static str,
    /// The services whose `model` is this repository, each estimated.
    pub users: Vec<ServiceEstimate>,
    /// The most any one of them needs (the weights alone when none does).
    pub need_bytes: u64,
    pub budget: Option<(u64, String)>,
    pub shortfall: Option<Shortfall>,
    /// Bytes still to download, and what the disk holding the cache has free.
    pub download_bytes: u64,
    pub disk_free: Option<u64>,
    pub notes: Vec<String>,
}

impl Fit {
    /// Why the pull should not go on, in numbers; `None` when it fits.
    pub fn refusal(&self, id: &str) -> Option<String> {
        let mut why = vec![];
        if let (Some(s), Some((_, source))) = (&self.shortfall, &self.budget) {
            let who = match self.users.iter().max_by_key(|u| u.total_bytes) {
                Some(u) => format!(
                    "at service `{}`'s context ({} tokens × {}: KV {})",
                    u.name,
                    u.context_tokens.unwrap_or(0),
                    u.concurrency,
                    bytes(u.kv_bytes.unwrap_or(0))
                ),
                None => "(weights alone: no service names it yet)".into(),
            };
            why.push(format!(
                "{id} needs {} of memory {who}: weights {} (from {}) + a {} reserve, but the budget is {} ({source}): {} short",
                bytes(s.need_bytes),
                bytes(self.weights_bytes),
                self.weights_from,
                bytes(s.reserve_bytes),
                bytes(s.budget_bytes),
                bytes(s.short_bytes)
            ));
        }
        if let Some(free) = self.disk_free.filter(|&f| f < self.download_bytes) {
            why.push(format!(
                "{id} needs {} more on disk, but the disk holding the hub cache has {} free",
                bytes(self.download_bytes),
                bytes(free)
            ));
        }
        (!why.is_empty()).then(|| why.join("; "))
    }
}

/// Reads config.json and the safetensors index of `plan` from the Hub (small, bounded reads: no
/// weight is requested) and checks memory and disk. `reserve_percent`: the budget's headroom.
pub async fn check(
    hub: &Hub,
    plan: &Plan,
    settings: Option<&Settings>,
    budget: Option<(u64, String)>,
    reserve_percent: f64,
) -> Result<Fit, PullError> {
    let mut notes = vec![];
    let json = |b: Vec<u8>, what: &str, notes: &mut Vec<String>| {
        serde_json::from_slice::<serde_json::Value>(&b)
            .map_err(|e| notes.push(format!("{what} is not JSON: {e}")))
            .ok()
    };
    // Fetched even when the globs leave them out: the estimate needs them either way.
    let config = match hub
        .small_file(&plan.id, &plan.commit, "config.json", MAX_CONFIG)
        .await
    {
        Ok(b) => json(b, "config.json", &mut notes),
        Err(PullError::NoFile { .. } | PullError::NotFound { .. }) => {
            notes.push("no config.json: KV not estimated".into());
            None
        }
        Err(e) => return Err(e),
    };
    let index_total = match plan.file(INDEX) {
        Some(_) => hub
            .small_file(&plan.id, &plan.commit, INDEX, MAX_INDEX)
            .await
            .ok()
            .and_then(|b| json(b, INDEX, &mut notes))
            .and_then(|v| v.pointer("/metadata/total_size").and_then(|t| t.as_u64())),
        None => None,
    };
    let listed: u64 = plan
        .files
        .iter()
        .filter(|f| f.remote.path.ends_with(".safetensors"))
        .map(|f| f.remote.size)
        .sum();
    let (weights, weights_from) = match index_total {
        Some(t) => (t, "the safetensors index"),
        None => (listed, "the file list"),
    };
    let budget = settings
        .and_then(|s| s.app.memory_budget_bytes)
        .map(|b| (b, "[app] memory_budget_gb".to_string()))
        .or(budget);
    let users: Vec<ServiceEstimate> = settings
        .map(|s| {
            s.services
                .iter()
                .filter(|sv| sv.enabled && sv.model.as_deref() == Some(plan.id.as_str()))
                .map(|sv| estimate::estimate_model(sv, Some(weights), config.as_ref(), vec![]))
                .collect()
        })
        .unwrap_or_default();
    if users.is_empty() {
        notes.push(format!(
            "no service names {}: memory counted for the weights alone",
            plan.id
        ));
    }
    let need = users
        .iter()
        .filter_map(|u| u.total_bytes)
        .max()
        .unwrap_or(weights)
        .max(weights);
    let e = Estimate {
        services: users.clone(),
        total_bytes: need,
        budget_bytes: budget.as_ref().map(|b| b.0),
        budget_source: budget.as_ref().map(|b| b.1.clone()),
    };
    let shortfall = estimate::over_budget(&e, reserve_percent);
    Ok(Fit {
        weights_bytes: weights,
        weights_from,
        users,
        need_bytes: need,
        budget,
        shortfall,
        download_bytes: plan.missing_bytes(),
        disk_free: free_bytes(&plan.repo_dir),
        notes,
    })
}

/// Free bytes (for an unprivileged user) on the filesystem that holds `path`, or its nearest
/// existing ancestor (the cache may not exist yet).
pub fn free_bytes(path: &Path) -> Option<u64> {
    let dir = path.ancestors().find(|p| p.exists())?;
    let s = nix::sys::statvfs::statvfs(dir).ok()?;
    #[allow(clippy::unnecessary_cast)] // u32 on macOS, u64 on Linux
    Some(s.blocks_available() as u64 * s.fragment_size() as u64)
}
