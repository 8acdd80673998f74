//! What each benchmark request asks, so a run can be compared with vLLM `bench serve` and
//! guidellm by its lengths:
//! - the built-in prompts (short questions), up to `max_tokens` out;
//! - synthetic prompts of exactly N tokens (± a spread), counted with the served model's own tokenizer
//!   (`tokenizer.json`), the chat template included (its overhead is measured on the warm-up), each
//!   behind a random prefix so no prompt cache helps;
//! - a dataset replayed: JSONL of OpenAI `messages` or ShareGPT `conversations`, sampled with a seed;
//! - an exact output length: `max_tokens` with the end-of-sequence tokens suppressed (`ignore_eos`, which
//!   vLLM and llama.cpp take, and `logit_bias` on the model's EOS ids, which mlx_lm.server takes).

use super::load::{prompt, random_prefix};
use crate::config::ServiceSpec;
use mlxbox_api::bench::report::{BenchOptions, DatasetInfo};
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use sha2::Digest;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokenizers::Tokenizer;

/// A dataset file is read whole: at most this.
const MAX_DATASET_BYTES: u64 = 1 << 30;
/// Conversations kept from a dataset.
const MAX_DATASET_ENTRIES: usize = 1_000_000;
/// Longest synthetic prompt (tokens).
pub const MAX_PROMPT_TOKENS: u32 = 1_000_000;

#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    #[error("--prompt-tokens needs the model's tokenizer, but [services.{service}] has {why}; use the built-in prompts or a --dataset")]
    NoTokenizer { service: String, why: String },
    #[error("cannot read the tokenizer {path}: {why}")]
    Tokenizer { path: PathBuf, why: String },
    #[error("{path}: {why}")]
    Dataset { path: String, why: String },
    #[error("{path}:{line}: {why}")]
    DatasetLine {
        path: String,
        line: usize,
        why: String,
    },
}

/// A dataset, read and checked once per run.
#[derive(Debug)]
pub struct Dataset {
    pub info: DatasetInfo,
    /// Each entry's `messages` (an array of {role, content}), without trailing assistant turns.
    conversations: Vec<serde_json::Value>,
}

/// Reads a JSONL dataset: each line `{"messages": [{role, content}…]}` or ShareGPT's `{"conversations":
/// [{from, value}…]}`; blank lines are skipped; an answer at the end of a conversation is dropped (the
/// server writes its own). Errors name the line.
pub fn load_dataset(path: &str) -> Result<Dataset, WorkloadError> {
    let err = |why: String| WorkloadError::Dataset {
        path: path.to_string(),
        why,
    };
    let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
    if meta.len() > MAX_DATASET_BYTES {
        return Err(err(format!(
            "{} bytes: a dataset is read whole, 1 GiB at most; sample it first",
            meta.len()
        )));
    }
    let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let sha256 = hex(&sha2::Sha256::digest(&bytes));
    let text = String::from_utf8(bytes).map_err(|e| err(format!("not UTF-8: {e}")))?;
    let mut conversations = vec![];
    for (i, line) in text.lines().enumerate() {
        let line_err = |why: String| WorkloadError::DatasetLine {
            path: path.to_string(),
            line: i + 1,
            why,
        };
        if line.trim().is_empty() {
            continue;
        }
        if conversations.len() >= MAX_DATASET_ENTRIES {
            return Err(line_err(format!(
                "more than {MAX_DATASET_ENTRIES} conversations; sample it first"
            )));
        }
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| line_err(format!("not JSON: {e}")))?;
        conversations.push(messages_of(&v).map_err(line_err)?);
    }
    if conversations.is_empty() {
        return Err(err("no conversation in it".into()));
    }
    let name = Path::new(path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.to_string());
    Ok(Dataset {
        info: DatasetInfo {
            name,
            entries: conversations.len() as u32,
            bytes: text.len() as u64,
            sha256,
        },
        conversations,
    })
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// One dataset line as chat `messages`, trailing assistant turns removed.
fn messages_of(v: &serde_json::Value) -> Result<serde_json::Value, String> {
    let mut out: Vec<serde_json::Value> = if let Some(ms) = v.get("messages") {
        let ms = ms.as_array().ok_or("`messages` is not an array")?;
        ms.iter()
            .map(|m| {
                let role = m
                    .get("role")
                    .and_then(|r| r.as_str())
                    .ok_or("a message has no `role`")?;
                let content = m.get("content").ok_or("a message has no `content`")?;
                Ok(serde_json::json!({"role": role, "content": content}))
            })
            .collect::<Result<_, &str>>()?
    } else if let Some(cs) = v.get("conversations") {
        let cs = cs.as_array().ok_or("`conversations` is not an array")?;
        cs.iter()
            .map(|c| {
                let from = c
                    .get("from")
                    .and_then(|r| r.as_str())
                    .ok_or("a turn has no `from`")?;
                let value = c
                    .get("value")
                    .and_then(|r| r.as_str())
                    .ok_or("a turn has no `value`")?;
                let role = match from {
                    "human" | "user" => "user",
                    "gpt" | "assistant" | "chatgpt" | "bard" | "bing" => "assistant",
                    "system" => "system",
                    _ => return Err("a turn's `from` is not human, gpt or system"),
                };
                Ok(serde_json::json!({"role": role, "content": value}))
            })
            .collect::<Result<_, &str>>()?
    } else {
        return Err("neither `messages` nor `conversations` (ShareGPT)".into());
    };
    while out.last().is_some_and(|m| m["role"] == "assistant") {
        out.pop();
    }
    if out.is_empty() {
        return Err("no user turn".into());
    }
    Ok(serde_json::Value::Array(out))
}

/// One request of a level.
#[derive(Debug, Clone)]
pub struct Request {
    pub body: serde_json::Value,
    /// The prompt length asked (tokens, template included), for synthetic prompts.
    pub prompt_tokens: Option<u64>,
    /// The output length asked, when exact.
    pub output_tokens: Option<u64>,
}

enum Prompts {
    Builtin,
    Synthetic {
        tok: Arc<Tokenizer>,
        target: u32,
        spread: u32,
        /// Tokens the chat template adds around the content (measured on the warm-up; 0 until then).
        template: u32,
    },
    /// The dataset, and its sampling order for the run's seed (shuffled once).
    Dataset(Arc<Dataset>, Vec<usize>),
}

/// What a service's requests ask, for one run.
pub struct Workload {
    prompts: Prompts,
    max_tokens: u32,
    output_tokens: Option<u32>,
    /// The model's end-of-sequence token ids, biased away for an exact output length.
    eos_ids: Vec<u32>,
    seed: u64,
    /// The `model` each request names ([`crate::launch::direct_model`]).
    model: Option<String>,
}

impl Workload {
    /// The workload of `spec` under `opts`; `dataset` is the run's (read once for every service).
    pub fn new(
        opts: &BenchOptions,
        spec: &ServiceSpec,
        dataset: Option<Arc<Dataset>>,
    ) -> Result<Workload, WorkloadError> {
        let synthetic = opts.prompt_tokens.is_some() && dataset.is_none();
        let dir = model_dir(spec);
        // Read once, for the synthetic prompts and for the EOS ids of an exact output length.
        let tok = match &dir {
            Some(dir) if synthetic => Some(Arc::new(load_tokenizer(dir)?)),
            Some(dir) if opts.output_tokens.is_some() => load_tokenizer(dir).ok().map(Arc::new),
            None if synthetic => {
                return Err(WorkloadError::NoTokenizer {
                    service: spec.name.clone(),
                    why: match &spec.model {
                        Some(m) => format!("model `{m}`, which is not on disk"),
                        None => "no model".into(),
                    },
                })
            }
            _ => None,
        };
        let eos_ids = match &dir {
            Some(dir) if opts.output_tokens.is_some() => eos_ids(dir, tok.as_deref()),
            _ => vec![],
        };
        let prompts = match (dataset, tok, opts.prompt_tokens) {
            (Some(d), _, _) => {
                let order = dataset_order(d.conversations.len(), opts.seed);
                Prompts::Dataset(d, order)
            }
            (None, Some(tok), Some(target)) => Prompts::Synthetic {
                tok,
                target: target.min(MAX_PROMPT_TOKENS),
                spread: opts.prompt_tokens_spread.min(target.saturating_sub(1)),
                template: 0,
            },
            _ => Prompts::Builtin,
        };
        Ok(Workload {
            prompts,
            max_tokens: opts.max_tokens,
            output_tokens: opts.output_tokens,
            eos_ids,
            seed: opts.seed,
            model: crate::launch::direct_model(spec).map(str::to_string),
        })
    }

    /// The built-in prompts, `max_tokens` out (the checks and tests).
    pub fn builtin(max_tokens: u32) -> Workload {
        Workload {
            prompts: Prompts::Builtin,
            max_tokens,
            output_tokens: None,
            eos_ids: vec![],
            seed: 0,
            model: None,
        }
    }

    /// Synthetic prompts: the warm-up's content length and the server's count of the whole prompt give
    /// the chat template's share, which later prompts leave room for.
    pub fn calibrate(&mut self, asked_content: u64, server_counted: u64) -> Option<u32> {
        if let Prompts::Synthetic { template, .. } = &mut self.prompts {
            *template = server_counted.saturating_sub(asked_content) as u32;
            return Some(*template);
        }
        None
    }

    /// The warm-up request: for synthetic prompts, content of a known length (returned) to calibrate on.
    pub fn warmup(&self) -> (serde_json::Value, Option<u64>) {
        match &self.prompts {
            Prompts::Synthetic { tok, target, .. } => {
                let (text, n) = exact_text(tok, (*target).clamp(8, 256));
                (self.body(user(&text), 16), Some(n as u64))
            }
            _ => (self.body(user(&prompt(0)), 16), None),
        }
    }

    /// Request `i` of a level.
    pub fn request(&self, i: usize) -> Request {
        let out = self.output_tokens.unwrap_or(self.max_tokens);
        let (messages, asked) = match &self.prompts {
            Prompts::Builtin => (user(&prompt(i)), None),
            Prompts::Synthetic {
                tok,
                target,
                spread,
                template,
            } => {
                let mut rng = rand::rngs::StdRng::seed_from_u64(
                    self.seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
                );
                let total = if *spread > 0 {
                    rng.random_range(target - spread..=target + spread)
                } else {
                    *target
                };
                let content = total.saturating_sub(*template).max(1);
                let (text, n) = exact_text(tok, content);
                (user(&text), Some(n as u64 + *template as u64))
            }
            Prompts::Dataset(d, order) => {
                // `order` is a permutation of the conversations' indexes, never empty (load_dataset).
                let k = order[i % order.len()];
                (d.conversations[k].clone(), None)
            }
        };
        Request {
            body: self.body(messages, out),
            prompt_tokens: asked,
            output_tokens: self.output_tokens.map(u64::from),
        }
    }

    fn body(&self, messages: serde_json::Value, max_tokens: u32) -> serde_json::Value {
        let mut b = serde_json::json!({
            "messages": messages,
            "max_tokens": max_tokens,
            "stream": true,
            "stream_options": {"include_usage": true},
        });
        if let Some(m) = &self.model {
            b["model"] = m.clone().into();
        }
        if self.output_tokens.is_some() && max_tokens > 16 {
            b["ignore_eos"] = true.into();
            if !self.eos_ids.is_empty() {
                let bias: serde_json::Map<String, serde_json::Value> = self
                    .eos_ids
                    .iter()
                    .map(|id| (id.to_string(), (-100).into()))
                    .collect();
                b["logit_bias"] = bias.into();
            }
        }
        b
    }
}

fn user(text: &str) -> serde_json::Value {
    serde_json::json!([{"role": "user", "content": text}])
}

/// The dataset's sampling order for `seed` (the same for every level of a run, as vLLM's).
fn dataset_order(len: usize, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..len).collect();
    order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
    order
}

/// The model's directory on disk (a local path or the Hugging Face cache).
fn model_dir(spec: &ServiceSpec) -> Option<PathBuf> {
    crate::estimate::locate_model(spec.model.as_deref()?, &crate::estimate::service_hub(spec))
}

fn load_tokenizer(dir: &Path) -> Result<Tokenizer, WorkloadError> {
    let path = dir.join("tokenizer.json");
    let meta = std::fs::metadata(&path).map_err(|e| WorkloadError::Tokenizer {
        path: path.clone(),
        why: e.to_string(),
    })?;
    if meta.len() > 256 << 20 {
        return Err(WorkloadError::Tokenizer {
            path,
            why: "over 256 MiB: not a tokenizer".into(),
        });
    }
    Tokenizer::from_file(&path).map_err(|e| WorkloadError::Tokenizer {
        path,
        why: e.to_string(),
    })
}

/// The end-of-sequence token ids: `eos_token_id` of config.json and generation_config.json (a number or
/// a list), and `eos_token` of tokenizer_config.json looked up in the tokenizer.
fn eos_ids(dir: &Path, tok: Option<&Tokenizer>) -> Vec<u32> {
    let read = |name: &str| -> Option<serde_json::Value> {
        let text = std::fs::read_to_string(dir.join(name)).ok()?;
        (text.len() < 64 << 20)
            .then(|| serde_json::from_str(&text).ok())
            .flatten()
    };
    let mut ids = vec![];
    for name in ["config.json", "generation_config.json"] {
        match read(name).and_then(|v| v.get("eos_token_id").cloned()) {
            Some(serde_json::Value::Number(n)) => ids.extend(n.as_u64()),
            Some(serde_json::Value::Array(a)) => ids.extend(a.iter().filter_map(|x| x.as_u64())),
            _ => {}
        }
    }
    let token = read("tokenizer_config.json").and_then(|v| match v.get("eos_token")? {
        serde_json::Value::String(s) => Some(s.clone()),
        o => o.get("content")?.as_str().map(str::to_string),
    });
    if let (Some(t), Some(tok)) = (token, tok) {
        ids.extend(tok.token_to_id(&t).map(u64::from));
    }
    let mut ids: Vec<u32> = ids
        .into_iter()
        .filter_map(|x| u32::try_from(x).ok())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Ordinary words for synthetic prompts (most are one token in any English BPE vocabulary).
const WORDS: &[&str] = &[
    "the", "time", "people", "way", "water", "word", "number", "day", "part", "sound", "work",
    "place", "year", "house", "world", "line", "name", "city", "tree", "story", "river", "music",
    "light", "paper", "group", "field", "morning", "table", "letter", "mountain", "garden",
    "window", "question", "answer", "school", "family", "market", "road", "island", "winter",
    "summer", "idea", "system", "model", "memory", "power", "science", "history", "language",
    "machine", "computer", "reason", "simple", "small", "large", "early", "quiet", "bright",
    "green", "blue", "strong", "careful", "and", "with", "from", "over", "under", "after",
    "before", "near", "about", "because",
];

/// A text of exactly `n` tokens as `tok` counts it (no special tokens), beginning with a random prefix;
/// returns the text and its count (which differs from `n` only for a tokenizer whose merges defeat every
/// cut, and then by a token or two).
pub fn exact_text(tok: &Tokenizer, n: u32) -> (String, u32) {
    let n = n.max(1) as usize;
    let count = |t: &str| tok.encode(t, false).map(|e| e.len()).unwrap_or(0);
    let mut text = random_prefix();
    let mut rng = rand::rng();
    // Enough words for n tokens, then cut at the n-th token's end.
    loop {
        let have = count(&text);
        if have >= n {
            break;
        }
        for _ in 0..(n - have) {
            text.push(' ');
            text.push_str(WORDS[rng.random_range(0..WORDS.len())]);
        }
    }
    let Ok(enc) = tok.encode(text.as_str(), false) else {
        return (text.clone(), count(&text) as u32);
    };
    let offsets = enc.get_offsets();
    let mut best = (text.clone(), count(&text));
    // Cut after token n (or n−1, n−2: a cut mid-word may tokenize differently), then pad with words.
    for back in 0..4usize {
        let Some(&(_, end)) = offsets.get(n.saturating_sub(1 + back)) else {
            continue;
        };
        if !text.is_char_boundary(end) {
            continue;
        }
        let mut t = text[..end].to_string();
        let mut c = count(&t);
        let mut tries = 0;
        while c < n && tries < 8 {
            t.push_str(" a");
            c = count(&t);
            tries += 1;
        }
        if c == n {
            return (t, n as u32);
        }
        if c.abs_diff(n) < best.1.abs_diff(n) {
            best = (t, c);
        }
    }
    (best.0, best.1 as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demo_tokenizer() -> Option<Tokenizer> {
        // The tiny models the demo makes (scripts/test.sh makes them first); skipped when absent.
        let cache = std::env::var("MLXBOX_CACHE_DIR").ok()?;
        let dir = std::fs::read_dir(cache)
            .ok()?
            .filter_map(|e| e.ok())
            .map(|e| e.path().join("models/chat"))
            .find(|p| p.join("tokenizer.json").exists())?;
        load_tokenizer(&dir).ok()
    }

    #[test]
    fn synthetic_prompts_have_the_exact_length() {
        let Some(tok) = demo_tokenizer() else {
            eprintln!("no demo tokenizer (MLXBOX_CACHE_DIR): skipped");
            return;
        };
        for n in [1, 7, 64, 500, 2048] {
            let (text, got) = exact_text(&tok, n);
            assert_eq!(got, n, "{text}");
            assert_eq!(tok.encode(text.as_str(), false).unwrap().len(), n as usize);
        }
        // Two prompts of one length never share their beginning (no prompt cache).
        let (a, _) = exact_text(&tok, 64);
        let (b, _) = exact_text(&tok, 64);
        assert_ne!(a[..26], b[..26]);
    }

    #[test]
    fn datasets_in_both_shapes_and_their_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.jsonl");
        std::fs::write(
            &p,
            concat!(
                r#"{"messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"},{"role":"assistant","content":"hello"}]}"#,
                "\n\n",
                r#"{"conversations":[{"from":"human","value":"why?"},{"from":"gpt","value":"because"}]}"#,
                "\n"
            ),
        )
        .unwrap();
        let d = load_dataset(p.to_str().unwrap()).unwrap();
        assert_eq!(d.info.entries, 2);
        assert_eq!(d.info.name, "d.jsonl");
        assert_eq!(d.info.sha256.len(), 64);
        assert_eq!(
            d.conversations[0],
            serde_json::json!([{"role":"system","content":"be brief"},{"role":"user","content":"hi"}])
        );
        assert_eq!(
            d.conversations[1],
            serde_json::json!([{"role":"user","content":"why?"}])
        );
        // The sampling is the seed's: the same seed, the same order.
        assert_eq!(dataset_order(100, 7), dataset_order(100, 7));
        assert_ne!(dataset_order(100, 7), dataset_order(100, 8));
        for (text, want) in [
            ("{\"messages\":[]}\nnot json\n", "d.jsonl:1: no user turn"),
            ("{\"x\":1}\n", ":1: neither `messages` nor `conversations`"),
            (
                "\n\n{\"conversations\":[{\"from\":\"alien\",\"value\":\"x\"}]}\n",
                ":3: a turn's `from`",
            ),
            ("", "no conversation in it"),
        ] {
            std::fs::write(&p, text).unwrap();
            let e = load_dataset(p.to_str().unwrap()).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
        }
    }

    #[test]
    fn an_exact_output_length_suppresses_the_end() {
        let opts = BenchOptions {
            output_tokens: Some(64),
            ..Default::default()
        };
        let mut w = Workload::builtin(128);
        w.output_tokens = opts.output_tokens;
        w.eos_ids = vec![2, 151645];
        let r = w.request(3);
        assert_eq!(r.body["max_tokens"], 64);
        assert_eq!(r.body["ignore_eos"], true);
        assert_eq!(r.body["logit_bias"]["151645"], -100);
        assert_eq!(r.output_tokens, Some(64));
        // Without it: up to max_tokens, the model ends where it ends.
        let r = Workload::builtin(128).request(3);
        assert_eq!(r.body["max_tokens"], 128);
        assert!(r.body.get("ignore_eos").is_none());
    }
}
