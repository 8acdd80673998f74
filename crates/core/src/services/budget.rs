//! The memory budget: would the services fit? Checked before settings are applied and before a manual
//! start. Owns the `over-budget` alert.

use crate::alerts::AlertSource;
use crate::api::AlertSeverity;
use crate::config::Settings;
use crate::estimate::{self, Estimate};
use std::sync::{Arc, Mutex};

/// Where the budget comes from: the machine's (`estimate::memory_budget`), or a fixed one in tests.
pub type BudgetFn = fn() -> Option<(u64, String)>;

pub struct Budget {
    alerts: AlertSource,
    budget: BudgetFn,
    /// The estimate of the settings applied last (every enabled service), for `/metrics`.
    applied: Mutex<Option<Arc<Estimate>>>,
}

impl Budget {
    pub fn new(alerts: AlertSource) -> Self {
        Budget::with(alerts, estimate::memory_budget)
    }

    pub fn with(alerts: AlertSource, budget: BudgetFn) -> Self {
        Budget {
            alerts,
            budget,
            applied: Mutex::new(None),
        }
    }

    /// The estimate (weights, KV cache, budget) of the settings last checked for applying.
    pub fn applied(&self) -> Option<Arc<Estimate>> {
        self.applied.lock().unwrap().clone()
    }

    /// Before settings are applied: raises (or clears) the over-budget alert, and keeps the estimate.
    /// Returns false when `[app] refuse_over_budget` forbids applying them.
    pub async fn check(&self, s: &Settings) -> bool {
        self.check_plan(s, true).await
    }

    /// The same check for a plan that is not the whole settings (what runs + one more service).
    pub async fn check_start(&self, plan: &Settings) -> bool {
        self.check_plan(plan, false).await
    }

    async fn check_plan(&self, s: &Settings, keep: bool) -> bool {
        let plan = s.clone();
        let budget = self.budget;
        let Ok(e) = tokio::task::spawn_blocking(move || estimate::estimate(&plan, budget())).await
        else {
            return true;
        };
        if keep {
            *self.applied.lock().unwrap() = Some(Arc::new(e.clone()));
        }
        let e = at_most_loaded(s, e);
        let Some(short) = estimate::over_budget(&e, s.alerts.headroom_warn_percent) else {
            self.alerts.clear("over-budget");
            return true;
        };
        let gb = |b: u64| format!("{:.1} GB", b as f64 / (1u64 << 30) as f64);
        let who: Vec<String> = short
            .services
            .iter()
            .map(|(n, b)| format!("{n} {}", gb(*b)))
            .collect();
        let refuse = s.app.refuse_over_budget;
        self.alerts.raise(
            "over-budget",
            if refuse { AlertSeverity::Critical } else { AlertSeverity::Warning },
            "The services do not fit in memory",
            format!(
                "They need {} ({}) + {} reserve, but the budget is {} ({}): {} short. {}Lower context_length / max_concurrency or disable a service.",
                gb(short.need_bytes),
                who.join(", "),
                gb(short.reserve_bytes),
                gb(short.budget_bytes),
                e.budget_source.as_deref().unwrap_or("memory"),
                gb(short.short_bytes),
                if refuse { "Not applied (refuse_over_budget = true). " } else { "" },
            ),
        );
        !refuse
    }
}

/// What can be loaded at once: the pinned services and the largest on-demand one (the others are
/// unloaded to make room for it, `demand.rs`).
fn at_most_loaded(s: &Settings, mut e: Estimate) -> Estimate {
    let on_demand = |n: &str| s.service(n).is_some_and(|x| x.on_demand);
    let largest = e
        .services
        .iter()
        .filter(|x| on_demand(&x.name))
        .max_by_key(|x| x.total_bytes.unwrap_or(0))
        .map(|x| x.name.clone());
    e.services
        .retain(|x| !on_demand(&x.name) || Some(&x.name) == largest.as_ref());
    e.total_bytes = e.services.iter().filter_map(|x| x.total_bytes).sum();
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::AlertStore;

    /// An embedding service (weights only, no KV cache) whose model is a 1 MiB file on disk.
    fn settings(dir: &std::path::Path, refuse: bool) -> Settings {
        let model = dir.join("model");
        std::fs::create_dir_all(&model).unwrap();
        let w = std::fs::File::create(model.join("model.safetensors")).unwrap();
        w.set_len(1 << 20).unwrap();
        let text = format!(
            "[app]\nrefuse_over_budget = {refuse}\n\n[services.embed]\nkind = \"embedding\"\nport = 8080\nmodel = \"{}\"\n",
            model.display()
        );
        crate::config::parse_settings(std::path::Path::new("settings.toml"), &text)
            .0
            .expect("valid settings")
    }

    fn tiny() -> Option<(u64, String)> {
        Some((64 << 10, "test budget".into()))
    }

    fn huge() -> Option<(u64, String)> {
        Some((1 << 50, "test budget".into()))
    }

    #[tokio::test]
    async fn over_budget_warns_or_refuses_and_clears_when_it_fits() {
        let (tx, _) = tokio::sync::broadcast::channel(16);
        let store = AlertStore::new(tx);
        let dir = tempfile::tempdir().unwrap();
        let b = Budget::with(store.source("budget"), tiny);
        assert!(b.check(&settings(dir.path(), false)).await, "warn only");
        assert_eq!(store.active()[0].severity, AlertSeverity::Warning);
        assert!(!b.check(&settings(dir.path(), true)).await, "refused");
        assert_eq!(store.active()[0].severity, AlertSeverity::Critical);
        assert!(store.active()[0].body.contains("test budget"));
        let b = Budget::with(store.source("budget"), huge);
        assert!(b.check(&settings(dir.path(), true)).await);
        assert!(store.active().is_empty());
    }
}
