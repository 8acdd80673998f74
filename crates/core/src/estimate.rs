//! Pre-launch memory estimate: weights (bytes of `*.safetensors` on disk) + KV cache (from config.json)
//! per service, against a budget. A figure that cannot be known is `None`, with the reason.
//!
//! KV bytes per token = 2 (K and V) × layers × kv_heads × head_dim × bytes per element. Sliding-window layers
//! hold at most `sliding_window` tokens, so for a context of C tokens each such layer counts min(C, window).

use crate::config::{ServiceSpec, Settings};
use crate::models::read::MAX_CONFIG;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceEstimate {
    pub name: String,
    pub model_path: Option<PathBuf>,
    pub weights_bytes: Option<u64>,
    /// For a full-attention layer stack (sliding layers count fully here; `kv_bytes` caps them).
    pub kv_bytes_per_token: Option<u64>,
    /// Tokens per sequence (`context_length`, else `max_tokens`).
    pub context_tokens: Option<u64>,
    /// Sequences held at once (`max_concurrency`, default 1).
    pub concurrency: u64,
    /// KV cache for `concurrency` sequences of `context_tokens`.
    pub kv_bytes: Option<u64>,
    pub total_bytes: Option<u64>,
    /// Why a figure above is `null`.
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    pub services: Vec<ServiceEstimate>,
    /// Sum of the known totals.
    pub total_bytes: u64,
    pub budget_bytes: Option<u64>,
    /// Where the budget comes from ("iogpu.wired_limit_mb", "physical memory", …).
    pub budget_source: Option<String>,
}

/// The shape of the attention cache, from a model's config.json.
#[derive(Debug, Clone, PartialEq)]
pub struct KvShape {
    pub layers: u64,
    pub kv_heads: u64,
    pub head_dim: u64,
    pub bytes_per_element: u64,
    /// Number of layers that use a sliding window, and its size.
    pub sliding_layers: u64,
    pub sliding_window: Option<u64>,
}

impl KvShape {
    pub fn from_config(cfg: &serde_json::Value) -> Result<KvShape, String> {
        // Vision-language models keep the language model's shape under text_config.
        let c = cfg
            .get("text_config")
            .filter(|t| t.get("num_hidden_layers").is_some())
            .unwrap_or(cfg);
        let num = |k: &str| c.get(k).and_then(|v| v.as_u64());
        let layers = num("num_hidden_layers").ok_or("config.json has no num_hidden_layers")?;
        let heads = num("num_attention_heads").ok_or("config.json has no num_attention_heads")?;
        let kv_heads = num("num_key_value_heads").unwrap_or(heads);
        let head_dim = match num("head_dim") {
            Some(d) => d,
            None => {
                num("hidden_size").ok_or("config.json has no head_dim or hidden_size")?
                    / heads.max(1)
            }
        };
        let dtype = c
            .get("torch_dtype")
            .or_else(|| c.get("dtype"))
            .or_else(|| cfg.get("torch_dtype"))
            .and_then(|v| v.as_str())
            .unwrap_or("bfloat16");
        // MLX keeps the KV cache in the activation dtype (quantized weights still run in fp16/bf16).
        let bytes_per_element = if dtype.contains("32") { 4 } else { 2 };
        let sliding_window = num("sliding_window")
            .filter(|_| c.get("use_sliding_window").and_then(|v| v.as_bool()) != Some(false));
        let sliding_layers = match (
            sliding_window,
            c.get("layer_types").and_then(|v| v.as_array()),
        ) {
            (None, _) => 0,
            (Some(_), Some(types)) => types
                .iter()
                .filter(|t| t.as_str().is_some_and(|s| s.contains("sliding")))
                .count() as u64,
            // A window and no per-layer types: every layer slides (Mistral-style).
            (Some(_), None) => layers,
        };
        Ok(KvShape {
            layers,
            kv_heads,
            head_dim,
            bytes_per_element,
            sliding_layers,
            sliding_window,
        })
    }

    /// Bytes per token of one layer.
    fn per_layer_token(&self) -> u64 {
        2 * self.kv_heads * self.head_dim * self.bytes_per_element
    }

    pub fn bytes_per_token(&self) -> u64 {
        self.layers * self.per_layer_token()
    }

    /// KV bytes for one sequence of `tokens`.
    pub fn bytes_for(&self, tokens: u64) -> u64 {
        let full = self.layers - self.sliding_layers.min(self.layers);
        let sliding_tokens = self.sliding_window.map(|w| w.min(tokens)).unwrap_or(tokens);
        self.per_layer_token()
            * (full * tokens + self.sliding_layers.min(self.layers) * sliding_tokens)
    }
}

// One reading of the hub cache's layout (`models::cache`), shared with `mlx-box models` and `validate`.
pub use crate::models::cache::{hf_hub_cache, locate_model};

/// The hub cache a service's server reads: its own `env` (`HF_HUB_CACHE`, `HF_HOME`) over the daemon's.
pub fn service_hub(spec: &ServiceSpec) -> PathBuf {
    crate::models::cache::hub_for_env(&spec.env)
}

/// Bytes of every `*.safetensors` in `dir` (following the hub cache's symlinks into blobs).
pub fn weights_bytes(dir: &Path) -> Option<u64> {
    let mut total = 0;
    let mut any = false;
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        if e.file_name().to_string_lossy().ends_with(".safetensors") {
            total += std::fs::metadata(e.path()).ok()?.len();
            any = true;
        }
    }
    any.then_some(total)
}

pub fn estimate_service(spec: &ServiceSpec, hub: &Path) -> ServiceEstimate {
    let mut reasons = vec![];
    let model_path = match &spec.model {
        Some(m) => {
            let found = locate_model(m, hub);
            if found.is_none() {
                reasons.push(format!(
                    "model `{m}` is not on disk (not a directory, not in {})",
                    hub.display()
                ));
            }
            found
        }
        None => {
            reasons.push("no model".to_string());
            None
        }
    };
    let weights = model_path.as_deref().and_then(|d| {
        let w = weights_bytes(d);
        if w.is_none() {
            reasons.push(format!("weights: no *.safetensors in {}", d.display()));
        }
        w
    });
    let config = model_path.as_deref().and_then(|d| {
        // Bounded: a config.json of 50 MB is a damaged download, not a config.
        crate::models::read::read_json(&d.join("config.json"), MAX_CONFIG, "config.json")
            .map_err(|e| reasons.push(format!("kv: {e}")))
            .ok()
    });
    let mut e = estimate_model(spec, weights, config.as_ref(), reasons);
    e.model_path = model_path;
    e
}

/// The estimate of `spec` running a model whose weights are `weights` bytes and whose config.json is
/// `config`, wherever they come from: the disk (`estimate_service`), or the Hub before a download
/// (`models::fit`). `reasons` says already why a figure is missing.
pub fn estimate_model(
    spec: &ServiceSpec,
    weights: Option<u64>,
    config: Option<&serde_json::Value>,
    mut reasons: Vec<String>,
) -> ServiceEstimate {
    let concurrency = u64::from(spec.max_concurrency.unwrap_or(1));
    let context = spec
        .context_length
        .or(spec.max_tokens)
        .or(spec.max_seq_length)
        .map(u64::from);
    if context.is_none() {
        reasons.insert(
            0,
            "context_tokens: neither context_length nor max_tokens is set".to_string(),
        );
    }
    let shape = config.and_then(|v| {
        KvShape::from_config(v)
            .map_err(|e| reasons.push(format!("kv: {e}")))
            .ok()
    });
    // Embedding servers hold no KV cache beyond one batch: count weights only.
    let kv_needed = matches!(
        spec.kind,
        crate::config::Kind::Chat
            | crate::config::Kind::Distributed
            | crate::config::Kind::Ocr
            | crate::config::Kind::Command
    );
    let kv_bytes = match (&shape, context) {
        (Some(s), Some(c)) if kv_needed => Some(s.bytes_for(c) * concurrency),
        (_, _) if !kv_needed => Some(0),
        _ => None,
    };
    // The operator's `memory_gb` stands over the estimate (a command's model is not ours to read).
    let total = match (spec.memory_bytes, weights, kv_bytes) {
        (Some(m), _, _) => Some(m),
        (None, Some(w), Some(k)) => Some(w + k),
        _ => None,
    };
    ServiceEstimate {
        name: spec.name.clone(),
        model_path: None,
        weights_bytes: weights,
        kv_bytes_per_token: shape.as_ref().map(KvShape::bytes_per_token),
        context_tokens: context,
        concurrency,
        kv_bytes,
        total_bytes: total,
        reasons,
    }
}

/// Estimates every enabled service of `settings`. `[app] memory_budget_gb` stands over `budget`.
pub fn estimate(settings: &Settings, budget: Option<(u64, String)>) -> Estimate {
    let budget = settings
        .app
        .memory_budget_bytes
        .map(|b| (b, "[app] memory_budget_gb".to_string()))
        .or(budget);
    let services: Vec<ServiceEstimate> = settings
        .services
        .iter()
        .filter(|s| s.enabled)
        .map(|s| estimate_service(s, &service_hub(s)))
        .collect();
    Estimate {
        total_bytes: services.iter().filter_map(|s| s.total_bytes).sum(),
        services,
        budget_bytes: budget.as_ref().map(|b| b.0),
        budget_source: budget.map(|b| b.1),
    }
}

/// A plan that does not fit: what it needs (weights + KV + a reserve) against the budget.
#[derive(Debug, Clone, PartialEq)]
pub struct Shortfall {
    pub need_bytes: u64,
    pub reserve_bytes: u64,
    pub budget_bytes: u64,
    pub short_bytes: u64,
    /// (service, total bytes), largest first.
    pub services: Vec<(String, u64)>,
}

/// `Some` when the known totals plus a reserve (`reserve_percent` of the budget, for the OS and the
/// rest) exceed the budget.
pub fn over_budget(e: &Estimate, reserve_percent: f64) -> Option<Shortfall> {
    let budget = e.budget_bytes?;
    let reserve = (budget as f64 * reserve_percent / 100.0) as u64;
    let need = e.total_bytes;
    if need + reserve <= budget {
        return None;
    }
    let mut services: Vec<(String, u64)> = e
        .services
        .iter()
        .filter_map(|s| s.total_bytes.map(|t| (s.name.clone(), t)))
        .collect();
    services.sort_by_key(|s| std::cmp::Reverse(s.1));
    Some(Shortfall {
        need_bytes: need,
        reserve_bytes: reserve,
        budget_bytes: budget,
        short_bytes: need + reserve - budget,
        services,
    })
}

/// The memory the models may use: on macOS the GPU wired limit (`iogpu.wired_limit_mb`) when set, else
/// Metal's recommended working set; elsewhere (or when neither answers) physical memory.
pub fn memory_budget() -> Option<(u64, String)> {
    #[cfg(target_os = "macos")]
    {
        if let Some(mb) = crate::monitor::os::sysctl_int("iogpu.wired_limit_mb").filter(|&m| m > 0)
        {
            return Some((mb * 1024 * 1024, "iogpu.wired_limit_mb".into()));
        }
        use objc2_metal::MTLDevice;
        if let Some(dev) = objc2_metal::MTLCreateSystemDefaultDevice() {
            let ws = dev.recommendedMaxWorkingSetSize();
            if ws > 0 {
                return Some((ws, "Metal recommendedMaxWorkingSetSize".into()));
            }
        }
    }
    let sys = sysinfo::System::new_with_specifics(
        sysinfo::RefreshKind::nothing()
            .with_memory(sysinfo::MemoryRefreshKind::nothing().with_ram()),
    )
    .ok()?;
    Some((sys.total_memory(), "physical memory".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn qwen3_30b_a3b() -> serde_json::Value {
        json!({"model_type": "qwen3_moe", "num_hidden_layers": 48, "num_attention_heads": 32,
               "num_key_value_heads": 4, "head_dim": 128, "hidden_size": 2048, "torch_dtype": "bfloat16"})
    }

    #[test]
    fn qwen3_30b_a3b_is_96_kib_per_token_and_3_gib_at_32k() {
        let s = KvShape::from_config(&qwen3_30b_a3b()).unwrap();
        assert_eq!(s.bytes_per_token(), 96 * 1024);
        assert_eq!(s.bytes_for(32_768), 3 * 1024 * 1024 * 1024);
    }

    #[test]
    fn over_budget_names_services_and_shortfall() {
        let svc = |name: &str, total| ServiceEstimate {
            name: name.into(),
            model_path: None,
            weights_bytes: Some(total),
            kv_bytes_per_token: None,
            context_tokens: None,
            concurrency: 1,
            kv_bytes: Some(0),
            total_bytes: Some(total),
            reasons: vec![],
        };
        let gib = 1u64 << 30;
        let e = Estimate {
            services: vec![svc("a", 60 * gib), svc("b", 80 * gib)],
            total_bytes: 140 * gib,
            budget_bytes: Some(128 * gib),
            budget_source: None,
        };
        let s = over_budget(&e, 10.0).unwrap();
        assert_eq!(s.services[0].0, "b");
        assert_eq!(s.reserve_bytes, (128.0 * 0.1 * gib as f64) as u64);
        assert_eq!(s.short_bytes, 140 * gib + s.reserve_bytes - 128 * gib);
        assert!(over_budget(
            &Estimate {
                total_bytes: 100 * gib,
                ..e
            },
            10.0
        )
        .is_none());
    }

    #[test]
    fn qwen3_0_6b() {
        // Qwen3-0.6B: 28 layers, 8 KV heads, head_dim 128, bf16 → 112 KiB per token.
        let s = KvShape::from_config(&json!({"num_hidden_layers": 28, "num_attention_heads": 16,
            "num_key_value_heads": 8, "head_dim": 128, "hidden_size": 1024, "torch_dtype": "bfloat16"}))
        .unwrap();
        assert_eq!(s.bytes_per_token(), 2 * 28 * 8 * 128 * 2);
        assert_eq!(s.bytes_per_token(), 112 * 1024);
    }

    #[test]
    fn sliding_window_layers_are_capped() {
        // gpt-oss-20b style: 24 layers alternating sliding (window 128) and full, 8 KV heads, head_dim 64.
        let types: Vec<&str> = (0..24)
            .map(|i| {
                if i % 2 == 0 {
                    "sliding_attention"
                } else {
                    "full_attention"
                }
            })
            .collect();
        let s = KvShape::from_config(&json!({"num_hidden_layers": 24, "num_attention_heads": 64,
            "num_key_value_heads": 8, "head_dim": 64, "sliding_window": 128, "layer_types": types,
            "torch_dtype": "bfloat16"}))
        .unwrap();
        let per_layer = 2 * 8 * 64 * 2;
        assert_eq!(s.sliding_layers, 12);
        assert_eq!(
            s.bytes_for(100),
            24 * per_layer * 100,
            "below the window every layer counts fully"
        );
        assert_eq!(s.bytes_for(10_000), per_layer * (12 * 10_000 + 12 * 128));
        // Mistral style: a window, no layer types → every layer slides.
        let m = KvShape::from_config(&json!({"num_hidden_layers": 4, "num_attention_heads": 8,
            "num_key_value_heads": 2, "hidden_size": 512, "sliding_window": 1000}))
        .unwrap();
        assert_eq!(m.head_dim, 64);
        assert_eq!(m.bytes_for(5000), m.bytes_for(1000));
    }

    #[test]
    fn hub_cache_snapshot_with_sparse_weights() {
        let d = tempfile::tempdir().unwrap();
        let snap = d
            .path()
            .join("models--mlx-community--Qwen3-30B-A3B-4bit/snapshots/abc123");
        std::fs::create_dir_all(&snap).unwrap();
        std::fs::write(snap.join("config.json"), qwen3_30b_a3b().to_string()).unwrap();
        // Sparse files of known size: no disk is used.
        for (i, size) in [(1, 5_000_000_000u64), (2, 3_000_000_000)] {
            let f = std::fs::File::create(snap.join(format!("model-0000{i}-of-00002.safetensors")))
                .unwrap();
            f.set_len(size).unwrap();
        }
        let text = "[services.fast]\nport = 8081\nmodel = \"mlx-community/Qwen3-30B-A3B-4bit\"\nmax_tokens = 8192\ncontext_length = 32768\nmax_concurrency = 2\n[services.missing]\nport = 8082\nmodel = \"nobody/none\"\nmax_tokens = 10\n";
        let (s, diags) = crate::config::parse_settings(Path::new("s.toml"), text);
        let mut s = s.unwrap_or_else(|| panic!("{diags:?}"));
        for svc in &mut s.services {
            svc.env
                .insert("HF_HUB_CACHE".into(), d.path().display().to_string());
        }
        let e = estimate(&s, Some((192 << 30, "test".into())));
        let fast = &e.services[0];
        assert_eq!(fast.weights_bytes, Some(8_000_000_000));
        assert_eq!(fast.kv_bytes_per_token, Some(98_304));
        assert_eq!(fast.context_tokens, Some(32_768));
        assert_eq!(fast.kv_bytes, Some(2 * 3 * (1 << 30)));
        assert_eq!(fast.total_bytes, Some(8_000_000_000 + 6 * (1 << 30)));
        let missing = &e.services[1];
        assert_eq!((missing.weights_bytes, missing.total_bytes), (None, None));
        assert!(
            missing.reasons[0].contains("not on disk"),
            "{:?}",
            missing.reasons
        );
        assert_eq!(e.total_bytes, 8_000_000_000 + 6 * (1 << 30));
        assert_eq!(e.budget_bytes, Some(192 << 30));
    }
}
