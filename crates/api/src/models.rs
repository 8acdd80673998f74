//! The models on this Mac (`GET /v1/models/local`, `mlx-box models`): what the Hugging Face hub cache
//! holds and what settings.toml names by path, with the services that use each.

use crate::service::State;
use serde::{Deserialize, Serialize};
use ts_rs::TS;

/// `GET /v1/models/local`: every model of the hub cache(s) and every local model path of the settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct ModelList {
    /// The hub caches read (the default one, and any a service's `env` names), in order.
    pub hubs: Vec<String>,
    /// Largest first.
    pub models: Vec<LocalModel>,
    /// Sum of the models' sizes (a blob is counted once).
    #[ts(type = "number")]
    pub total_bytes: u64,
    /// Sum of the sizes of the models no service uses.
    #[ts(type = "number")]
    pub unused_bytes: u64,
    /// What could not be read of a cache as a whole (its directory, entries past the cap).
    pub problems: Vec<String>,
}

/// Where a model is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[ts(export)]
#[serde(rename_all = "snake_case")]
pub enum ModelSource {
    /// A `models--ORG--NAME` directory of a hub cache.
    Hub,
    /// A directory named by path in settings.toml.
    Path,
}

/// One model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct LocalModel {
    /// The repository id (`mlx-community/Qwen3-8B-4bit`), or the path as the settings write it.
    pub id: String,
    pub source: ModelSource,
    /// Its directory: `models--ORG--NAME` in the cache, or the local path.
    pub path: String,
    /// Each snapshot of a hub model, newest first (none for a path).
    pub revisions: Vec<ModelRevision>,
    /// Bytes on disk, each blob once however many revisions share it (`.incomplete` ones apart).
    #[ts(type = "number")]
    pub size_bytes: u64,
    /// Bytes of partial downloads (`blobs/*.incomplete`).
    #[ts(type = "number")]
    pub incomplete_bytes: u64,
    /// Every revision complete: each file present, each shard of the safetensors index there, no
    /// partial download.
    pub complete: bool,
    /// `architectures[0]` of config.json (`Qwen3ForCausalLM`).
    pub architecture: Option<String>,
    /// `model_type` of config.json (`qwen3`).
    pub model_type: Option<String>,
    /// Quantization bits and group size (config.json's `quantization`, as mlx-community writes it).
    pub quant_bits: Option<u32>,
    pub quant_group_size: Option<u32>,
    /// The weights' dtype when not quantized (`bfloat16`).
    pub dtype: Option<String>,
    /// Parameters, counted from the safetensors headers (packed quantized weights unpacked), else
    /// estimated from the index's `total_size` and the quantization.
    #[ts(type = "number | null")]
    pub parameters: Option<u64>,
    /// The model's context length (`max_position_embeddings`, or its text model's).
    #[ts(type = "number | null")]
    pub context_length: Option<u64>,
    /// The services of the settings whose `model` is this one.
    pub users: Vec<ModelUser>,
    /// The latest request to any of its services (unix ms), when the daemon knows it.
    #[ts(type = "number | null")]
    pub last_used_ms: Option<u64>,
    /// What is wrong with it (a broken link, a config.json that is not JSON…), one sentence each.
    pub problems: Vec<String>,
}

/// One snapshot of a hub model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct ModelRevision {
    /// The commit hash (the snapshot directory's name).
    pub hash: String,
    /// The refs that point at it (`main`, `refs/pr/1`).
    pub refs: Vec<String>,
    /// Bytes of the blobs it links to.
    #[ts(type = "number")]
    pub size_bytes: u64,
    pub files: u32,
    pub complete: bool,
}

/// A service whose `model` is this one, and what it would hold in memory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct ModelUser {
    pub service: String,
    /// Its state, when a daemon answers.
    pub state: Option<State>,
    pub enabled: bool,
    /// Tokens per sequence at the service's settings (`context_length`, else `max_tokens`).
    #[ts(type = "number | null")]
    pub context_tokens: Option<u64>,
    /// Weights + KV cache at that context (the estimate the memory budget uses).
    #[ts(type = "number | null")]
    pub estimate_bytes: Option<u64>,
}

impl LocalModel {
    /// `4-bit/64`, `bfloat16`, or `-`.
    pub fn quant_label(&self) -> String {
        match (self.quant_bits, self.quant_group_size, &self.dtype) {
            (Some(b), Some(g), _) => format!("{b}-bit/{g}"),
            (Some(b), None, _) => format!("{b}-bit"),
            (None, _, Some(d)) => d.clone(),
            _ => "-".into(),
        }
    }
}
