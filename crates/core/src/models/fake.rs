//! A hub cache made on disk the way `huggingface_hub` lays it out (blobs named by their sha256,
//! snapshots of relative links into them, refs), for the tests and the benchmark: no network.

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

pub struct FakeHub {
    pub root: PathBuf,
}

impl FakeHub {
    pub fn new(root: &Path) -> FakeHub {
        std::fs::create_dir_all(root).expect("fake hub dir");
        FakeHub {
            root: root.to_path_buf(),
        }
    }

    pub fn repo_dir(&self, id: &str) -> PathBuf {
        self.root.join(super::cache::repo_dir_name(id))
    }

    /// Writes `content` as a blob of `id`; returns its name.
    pub fn blob(&self, id: &str, content: &[u8]) -> String {
        let name = hex::encode(Sha256::digest(content));
        let dir = self.repo_dir(id).join("blobs");
        std::fs::create_dir_all(&dir).expect("blobs dir");
        std::fs::write(dir.join(&name), content).expect("blob");
        name
    }

    /// `snapshots/REV/FILE → ../../blobs/BLOB` for each (file, blob); a file may sit in a subdirectory.
    pub fn snapshot(&self, id: &str, rev: &str, files: &[(&str, &str)]) -> PathBuf {
        let snap = self.repo_dir(id).join("snapshots").join(rev);
        for (file, blob) in files {
            let link = snap.join(file);
            let parent = link.parent().expect("parent");
            std::fs::create_dir_all(parent).expect("snapshot dir");
            let up = "../".repeat(file.matches('/').count() + 2);
            std::os::unix::fs::symlink(format!("{up}blobs/{blob}"), &link).expect("link");
        }
        std::fs::create_dir_all(&snap).expect("snapshot dir");
        snap
    }

    pub fn set_ref(&self, id: &str, name: &str, rev: &str) {
        let p = self.repo_dir(id).join("refs").join(name);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("refs dir");
        std::fs::write(p, rev).expect("ref");
    }

    /// A quantized model's revision: config.json, a safetensors index and two shards. The config,
    /// the index and the first shard are the same bytes in every revision (one blob); the second shard
    /// holds `rev`'s own bytes. Returns the blob names (config, index, shard 1, shard 2).
    pub fn model(&self, id: &str, rev: &str) -> [String; 4] {
        let config = self.blob(id, config_json(4, 64).as_bytes());
        let index = self.blob(id, index_json(&[SHARD1, SHARD2]).as_bytes());
        let s1 = self.blob(id, &shard(&[("a.weight", "U32", &[64, 8])], b""));
        let s2 = self.blob(id, &shard(&[("b.weight", "U32", &[64, 8])], rev.as_bytes()));
        self.snapshot(
            id,
            rev,
            &[
                ("config.json", &config),
                ("model.safetensors.index.json", &index),
                (SHARD1, &s1),
                (SHARD2, &s2),
            ],
        );
        [config, index, s1, s2]
    }
}

pub const SHARD1: &str = "model-00001-of-00002.safetensors";
pub const SHARD2: &str = "model-00002-of-00002.safetensors";

/// A config.json as mlx-community writes one for a quantized Qwen3-style model.
pub fn config_json(bits: u32, group: u32) -> String {
    serde_json::json!({
        "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3",
        "num_hidden_layers": 4, "num_attention_heads": 8, "num_key_value_heads": 2, "head_dim": 64,
        "hidden_size": 512, "max_position_embeddings": 40960, "torch_dtype": "bfloat16",
        "quantization": {"bits": bits, "group_size": group}
    })
    .to_string()
}

pub fn index_json(shards: &[&str]) -> String {
    let map: serde_json::Map<String, serde_json::Value> = shards
        .iter()
        .enumerate()
        .map(|(i, s)| (format!("t{i}.weight"), serde_json::Value::from(*s)))
        .collect();
    serde_json::json!({"metadata": {"total_size": 1000}, "weight_map": map}).to_string()
}

/// A safetensors file: (name, dtype, shape) tensors of zeros, then `tail` (to make files differ).
pub fn shard(tensors: &[(&str, &str, &[u64])], tail: &[u8]) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    let mut offset = 0u64;
    for (name, dtype, shape) in tensors {
        let size = match *dtype {
            "U32" | "F32" => 4,
            "U8" => 1,
            _ => 2,
        };
        let n = shape.iter().product::<u64>() * size;
        header.insert(
            name.to_string(),
            serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + n]}),
        );
        offset += n;
    }
    let h = serde_json::Value::Object(header).to_string();
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend(h.as_bytes());
    out.resize(out.len() + offset as usize, 0);
    out.extend(tail);
    out
}

/// `models` repositories × `revisions` snapshots each (the benchmark's cache); `refs/main` at the
/// last revision.
pub fn generate(root: &Path, models: usize, revisions: usize) -> FakeHub {
    let hub = FakeHub::new(root);
    for m in 0..models {
        let id = format!("org{}/model-{m:04}", m % 7);
        let mut last = String::new();
        for r in 0..revisions {
            last = format!("{:040x}", m * 1000 + r);
            hub.model(&id, &last);
        }
        hub.set_ref(&id, "main", &last);
    }
    hub
}
