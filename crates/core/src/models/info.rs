//! What a model directory says of itself: config.json (architecture, quantization as mlx-community writes
//! it, context length) and its safetensors (parameters; the shards the index lists, all present or not).
//! Every read is capped (`read.rs`); what cannot be read is a problem, the rest is still told.

use super::error::ModelError;
use super::read::{open_nonblocking, read_json, MAX_CONFIG, MAX_HEADER, MAX_INDEX};
use crate::config::precision::Precision;
use std::collections::BTreeSet;
use std::io::Read;
use std::path::Path;

pub const INDEX: &str = "model.safetensors.index.json";

/// What config.json and the weights say.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Facts {
    pub architecture: Option<String>,
    pub model_type: Option<String>,
    pub quant_bits: Option<u32>,
    pub quant_group_size: Option<u32>,
    pub dtype: Option<String>,
    pub parameters: Option<u64>,
    pub context_length: Option<u64>,
    pub problems: Vec<String>,
}

/// Reads the facts of the model in `dir`.
pub fn read(dir: &Path) -> Facts {
    let mut f = Facts::default();
    let config = match read_json(&dir.join("config.json"), MAX_CONFIG, "config.json") {
        Ok(v) => v,
        Err(e) => {
            f.problems.push(e.to_string());
            serde_json::Value::Null
        }
    };
    let text = |v: &serde_json::Value, k: &str| v.get(k).and_then(|x| x.as_str()).map(String::from);
    f.architecture = config
        .get("architectures")
        .and_then(|a| a.get(0))
        .and_then(|a| a.as_str())
        .map(String::from);
    f.model_type = text(&config, "model_type");
    match crate::served::precision_of(&config) {
        Some(Precision::Bits(b, g)) => {
            f.quant_bits = u32::try_from(b).ok();
            f.quant_group_size = g.and_then(|g| u32::try_from(g).ok());
        }
        Some(Precision::Float(d)) => f.dtype = Some(d),
        None => {}
    }
    // Vision-language models keep the language model's under text_config.
    let ctx = |v: &serde_json::Value| v.get("max_position_embeddings").and_then(|x| x.as_u64());
    f.context_length = ctx(&config).or_else(|| config.get("text_config").and_then(ctx));
    let index = dir.join(INDEX);
    let (shards, total_size) = if index.exists() {
        match read_index(&index) {
            Ok(x) => x,
            Err(e) => {
                f.problems.push(e.to_string());
                (None, None)
            }
        }
    } else {
        (None, None)
    };
    let shards: Vec<String> = shards.map(|s| s.into_iter().collect()).unwrap_or_else(|| {
        let mut all: Vec<String> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".safetensors"))
            .collect();
        all.sort();
        all
    });
    let counted: Result<u64, ModelError> = shards.iter().try_fold(0u64, |sum, s| {
        Ok(sum.saturating_add(count_parameters(&dir.join(s), f.quant_bits)?))
    });
    f.parameters = match counted {
        Ok(n) if !shards.is_empty() => Some(n),
        Ok(_) => None,
        Err(e) => {
            f.problems.push(e.to_string());
            total_size.and_then(|t| estimate_parameters(t, &f))
        }
    };
    f
}

/// The shards an index lists and its `metadata.total_size`.
fn read_index(path: &Path) -> Result<(Option<BTreeSet<String>>, Option<u64>), ModelError> {
    let v = read_json(path, MAX_INDEX, "safetensors index")?;
    let total = v
        .get("metadata")
        .and_then(|m| m.get("total_size"))
        .and_then(|t| t.as_u64());
    let shards = v.get("weight_map").and_then(|m| m.as_object()).map(|m| {
        m.values()
            .filter_map(|s| s.as_str())
            // A shard is a file of the same directory: nothing that climbs out of it.
            .filter(|s| !s.contains("..") && !s.starts_with('/'))
            .map(String::from)
            .collect()
    });
    Ok((shards, total))
}

/// The shards a safetensors index lists.
pub fn index_shards(index: &Path) -> Result<BTreeSet<String>, ModelError> {
    Ok(read_index(index)?.0.unwrap_or_default())
}

/// Parameters of one safetensors file, from its header: each tensor's element count; a quantized
/// model's packed `U32` weights hold 32 / bits parameters per element, its `scales` and `biases` none.
pub fn count_parameters(path: &Path, bits: Option<u32>) -> Result<u64, ModelError> {
    let io = |source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    };
    let bad = |detail: String| ModelError::Malformed {
        path: path.to_path_buf(),
        detail,
    };
    let mut f = open_nonblocking(path).map_err(io)?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len).map_err(io)?;
    let len = u64::from_le_bytes(len);
    if len > MAX_HEADER {
        return Err(ModelError::TooLarge {
            path: path.to_path_buf(),
            what: "safetensors header",
            size: len,
            max: MAX_HEADER,
        });
    }
    let mut header = Vec::with_capacity(len as usize);
    f.take(len).read_to_end(&mut header).map_err(io)?;
    if header.len() as u64 != len {
        return Err(bad("the safetensors header is cut short".into()));
    }
    let v: serde_json::Value = serde_json::from_slice(&header)
        .map_err(|e| bad(format!("the safetensors header is not JSON: {e}")))?;
    let tensors = v
        .as_object()
        .ok_or_else(|| bad("the safetensors header is not an object".into()))?;
    let mut total = 0u64;
    for (name, t) in tensors.iter().filter(|(n, _)| *n != "__metadata__") {
        let elems = t
            .get("shape")
            .and_then(|s| s.as_array())
            .ok_or_else(|| bad(format!("tensor {name} has no shape")))?
            .iter()
            .try_fold(1u64, |n, d| d.as_u64().and_then(|d| n.checked_mul(d)))
            .ok_or_else(|| bad(format!("tensor {name} has a bad shape")))?;
        let dtype = t.get("dtype").and_then(|d| d.as_str()).unwrap_or("");
        let n = match bits.filter(|b| (1..=32).contains(b)) {
            Some(_) if name.ends_with(".scales") || name.ends_with(".biases") => 0,
            Some(b) if dtype == "U32" => elems.saturating_mul(u64::from(32 / b)),
            _ => elems,
        };
        total = total.saturating_add(n);
    }
    Ok(total)
}

/// Parameters from the index's `total_size` when a header cannot be read: bytes × 8 / bits per
/// parameter (a quantized one also carries a bf16 scale and bias per group).
fn estimate_parameters(total_size: u64, f: &Facts) -> Option<u64> {
    let bits = match (f.quant_bits, f.quant_group_size) {
        (Some(b), g) => f64::from(b) + 32.0 / f64::from(g.unwrap_or(64).max(1)),
        (None, _) if f.dtype.as_deref() == Some("float32") => 32.0,
        (None, _) => 16.0,
    };
    Some((total_size as f64 * 8.0 / bits) as u64)
}
