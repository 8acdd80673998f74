//! What a benchmark run produces (saved as JSON, served by the control API, printed by `--json`) and the
//! thresholds (PASS / FAIL). The menu-bar app's TypeScript types are generated from these.

use super::Stats;
use crate::config::{Expectations, Kind};
use crate::monitor::{Pressure, Sample, Thermal};
use serde::{Deserialize, Serialize};
use ts_rs::TS;

/// What to run (`POST /v1/bench`; the CLI's flags). Every field has a default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
#[serde(default)]
pub struct BenchOptions {
    /// Services to measure; empty = every enabled chat / ocr / embedding / tts / stt service.
    pub services: Vec<String>,
    /// Closed-loop levels: this many requests in flight at once.
    pub concurrency: Vec<u32>,
    /// Requests per level (warm-up not counted).
    pub requests: u32,
    /// `max_tokens` of each chat request.
    pub max_tokens: u32,
    /// Also an open-loop level: Poisson arrivals at this many requests/s.
    pub rate: Option<f64>,
    /// Also a long-context request.
    pub long_context: bool,
    /// Prompt tokens of the long-context request.
    pub long_context_tokens: u32,
    /// Uncounted requests before the first level of each service (loads the model, warms caches).
    pub warmup: u32,
    /// Check the thinking toggle of chat services.
    pub thinking_check: bool,
    /// Inputs per embeddings request (default: the service's `batch_size`, else 16).
    pub embed_batch: Option<u32>,
    /// Give up on a request after this many seconds.
    pub request_timeout_s: f64,
    /// Synthetic prompts of exactly this many tokens, as the served model's tokenizer counts them (the
    /// chat template included); `null`: the built-in prompts.
    #[serde(default)]
    pub prompt_tokens: Option<u32>,
    /// Prompt lengths spread uniformly over `prompt_tokens ± this`.
    #[serde(default)]
    pub prompt_tokens_spread: u32,
    /// Ask for exactly this many output tokens (`max_tokens`, and the end-of-sequence tokens suppressed:
    /// `ignore_eos`, `logit_bias`); `null`: up to `max_tokens`, ending where the model ends.
    #[serde(default)]
    pub output_tokens: Option<u32>,
    /// Replay this JSONL file (OpenAI `messages`, or ShareGPT `conversations`), sampled with `seed`.
    #[serde(default)]
    pub dataset: Option<String>,
    /// Seed of the dataset sampling and of the synthetic prompts' lengths.
    #[serde(default)]
    #[ts(type = "number")]
    pub seed: u64,
    /// Goodput: a request is good when its TTFT is at most this (ms) …
    #[serde(default)]
    pub slo_ttft_ms: Option<f64>,
    /// … and its TPOT at most this (ms).
    #[serde(default)]
    pub slo_tpot_ms: Option<f64>,
    /// A WAV to transcribe (stt services); `null`: five seconds of a generated tone.
    #[serde(default)]
    pub audio_file: Option<String>,
}

impl BenchOptions {
    /// The load in words, for headers and for telling two runs apart ("built-in prompts, up to 128
    /// output tokens"; "prompts of 512±64 tokens, 128 output tokens"; "dataset chats.jsonl (…)").
    pub fn load_description(&self) -> String {
        let prompts = match (&self.dataset, self.prompt_tokens) {
            (Some(d), _) => format!("dataset {d} (seed {})", self.seed),
            (None, Some(n)) if self.prompt_tokens_spread > 0 => {
                format!("prompts of {n}±{} tokens", self.prompt_tokens_spread)
            }
            (None, Some(n)) => format!("prompts of {n} tokens"),
            (None, None) => "built-in prompts".to_string(),
        };
        let output = match self.output_tokens {
            Some(n) => format!("{n} output tokens"),
            None => format!("up to {} output tokens", self.max_tokens),
        };
        format!("{prompts}, {output}")
    }
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            services: vec![],
            concurrency: vec![1, 2, 4, 8],
            requests: 16,
            max_tokens: 128,
            rate: None,
            long_context: false,
            long_context_tokens: 20_000,
            warmup: 1,
            thinking_check: true,
            embed_batch: None,
            request_timeout_s: 600.0,
            prompt_tokens: None,
            prompt_tokens_spread: 0,
            output_tokens: None,
            dataset: None,
            seed: 0,
            slo_ttft_ms: None,
            slo_tpot_ms: None,
            audio_file: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[ts(export)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    Pass,
    Fail,
    /// Not run (not applicable, or nothing to check), with the reason next to it.
    Skip,
}

impl CheckStatus {
    pub fn mark(self) -> &'static str {
        match self {
            CheckStatus::Pass => "✓",
            CheckStatus::Fail => "✗",
            CheckStatus::Skip => "–",
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            CheckStatus::Pass => "PASS",
            CheckStatus::Fail => "FAIL",
            CheckStatus::Skip => "SKIP",
        }
    }
    /// Fail wins over pass, pass over skip.
    pub fn worst(items: impl IntoIterator<Item = CheckStatus>) -> CheckStatus {
        items
            .into_iter()
            .fold(CheckStatus::Skip, |acc, s| match (acc, s) {
                (CheckStatus::Fail, _) | (_, CheckStatus::Fail) => CheckStatus::Fail,
                (CheckStatus::Pass, _) | (_, CheckStatus::Pass) => CheckStatus::Pass,
                _ => CheckStatus::Skip,
            })
    }
}

/// One level of a chat service (definitions of every figure: `bench::metrics`, docs/BENCHMARK.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct LevelResult {
    /// Requests in flight: the closed-loop level, or for an open-loop level the most seen at once.
    pub concurrency: u32,
    /// Open-loop level: the Poisson arrival rate (requests/s). `null` for closed-loop levels.
    pub rate: Option<f64>,
    /// Successful requests measured.
    pub requests: u32,
    pub errors: u32,
    pub first_error: Option<String>,
    /// Wall time of the level: first request sent → last response ended.
    pub duration_s: f64,
    pub ttft_ms: Option<Stats>,
    pub tpot_ms: Option<Stats>,
    pub itl_ms: Option<Stats>,
    pub e2e_ms: Option<Stats>,
    /// Generation (decode) tok/s of each request.
    pub gen_tok_s: Option<Stats>,
    /// All completion tokens / wall time.
    pub output_tok_s: f64,
    /// Successful requests / wall time.
    pub request_s: f64,
    /// Mean of prompt tokens / TTFT.
    pub prompt_tok_s: Option<f64>,
    /// output tok/s here / (concurrency × output tok/s at concurrency 1); `null` without a level 1.
    pub parallel_efficiency: Option<f64>,
    #[ts(type = "number")]
    pub prompt_tokens: u64,
    #[ts(type = "number")]
    pub completion_tokens: u64,
    /// Prompt tokens the server served from its cache (when it reports `cached_tokens`).
    #[ts(type = "number | null")]
    pub cached_tokens: Option<u64>,
    /// The prompt lengths the server reported (`usage.prompt_tokens`).
    #[serde(default)]
    pub prompt_len: Option<Stats>,
    /// The output lengths the server reported (`usage.completion_tokens`).
    #[serde(default)]
    pub output_len: Option<Stats>,
    /// Requests whose prompt the server counted differently from the length asked (`--prompt-tokens`).
    #[serde(default)]
    pub prompt_len_mismatches: u32,
    /// Requests that ended before the output length asked (`--output-tokens`): tok/s then comes from
    /// shorter outputs than asked, and the level says so.
    #[serde(default)]
    pub ended_early: u32,
    /// Requests that met the SLO (`slo_ttft_ms`, `slo_tpot_ms`): their share of all requests sent, and
    /// their rate (vLLM's `request_goodput`). `null` without an SLO.
    #[serde(default)]
    pub goodput: Option<Goodput>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct Goodput {
    /// Good requests / requests sent (errors count as not good).
    pub share: f64,
    /// Good requests / the level's wall time.
    pub request_s: f64,
}

/// What a run replayed: the dataset's identity, so two runs can be told apart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct DatasetInfo {
    /// The file's name.
    pub name: String,
    /// Conversations read from it.
    pub entries: u32,
    #[ts(type = "number")]
    pub bytes: u64,
    /// SHA-256 of the file.
    pub sha256: String,
}

/// One level of an embedding service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct EmbedLevelResult {
    pub concurrency: u32,
    /// Inputs per request.
    pub batch_size: u32,
    pub requests: u32,
    pub errors: u32,
    pub first_error: Option<String>,
    pub duration_s: f64,
    /// Inputs embedded per second (all requests / wall time).
    pub inputs_s: f64,
    pub request_s: f64,
    /// Request latency (send → whole answer).
    pub latency_ms: Option<Stats>,
    /// Tokens embedded per second, when the server reports usage.
    pub prompt_tok_s: Option<f64>,
}

/// One level of a speech (tts) or transcription (stt) service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct AudioLevelResult {
    pub concurrency: u32,
    pub requests: u32,
    pub errors: u32,
    pub first_error: Option<String>,
    pub duration_s: f64,
    pub request_s: f64,
    /// Request latency (send → whole answer).
    pub latency_ms: Option<Stats>,
    /// Seconds of audio per request: synthesised (tts: the WAV's length) or transcribed (stt: the input's).
    pub audio_s: Option<f64>,
    /// Real-time factor of each request: its latency / its audio's length (below 1: faster than real
    /// time).
    pub rtf: Option<Stats>,
    /// Seconds of audio processed per second of wall time, all requests together.
    pub audio_s_per_s: Option<f64>,
    /// The start of one answer: the transcript (stt), or the WAV's length and size (tts).
    pub sample: Option<String>,
}

/// The seed's test-thinking-toggle, with the evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct ThinkingCheck {
    /// False for a service with `disable_thinking_tags = true`.
    pub expect_thinking: bool,
    pub status: CheckStatus,
    pub reason: String,
    /// The start of the answer's `content` and of its reasoning field, as the server sent them.
    pub content_excerpt: String,
    pub reasoning_excerpt: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct LongContextResult {
    pub target_tokens: u32,
    pub status: CheckStatus,
    pub reason: String,
    #[ts(type = "number | null")]
    pub prompt_tokens: Option<u64>,
    #[ts(type = "number | null")]
    pub completion_tokens: Option<u64>,
    pub ttft_ms: Option<f64>,
    pub prompt_tok_s: Option<f64>,
    pub e2e_ms: Option<f64>,
}

/// One `expect_*` key of settings.toml against the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct ThresholdResult {
    pub key: String,
    pub expected: f64,
    pub measured: Option<f64>,
    pub status: CheckStatus,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct ServiceResult {
    pub name: String,
    pub kind: Kind,
    pub model: Option<String>,
    /// From the model's config.json (`quantization.bits` / `group_size`), else `torch_dtype`.
    pub quantization: Option<String>,
    /// What the server says it is (mlx_lm: `<mlx-lm>-<mlx>-<platform>`).
    pub fingerprint: Option<String>,
    /// The service's table of settings.toml, as it was at the run.
    #[ts(type = "Record<string, unknown>")]
    pub settings: serde_json::Value,
    /// Why the service was not measured (not ready, not a kind the benchmark knows, cancelled).
    pub skipped: Option<String>,
    pub levels: Vec<LevelResult>,
    pub embedding: Vec<EmbedLevelResult>,
    /// Speech and transcription services, per level.
    #[serde(default)]
    pub audio: Vec<AudioLevelResult>,
    pub long_context: Option<LongContextResult>,
    pub thinking: Option<ThinkingCheck>,
    pub thresholds: Vec<ThresholdResult>,
    /// Fail when a threshold or check failed; pass when some passed; skip when nothing was checked.
    pub verdict: CheckStatus,
    /// Generation speed fell across the run while the thermal state rose (see `rules::throttling_suspected`).
    pub throttling_suspected: bool,
    /// Synthetic prompts: the tokens the chat template adds around the content (measured on the warm-up).
    #[serde(default)]
    pub prompt_template_tokens: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct MachineInfo {
    /// CPU brand (Apple silicon: the chip, e.g. "Apple M2 Ultra").
    pub cpu: String,
    pub cores: u32,
    #[ts(type = "number")]
    pub memory_bytes: u64,
    pub os: String,
    pub arch: String,
    pub hostname: Option<String>,
}

/// The monitor during the run, in short (every sample is in `samples`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct MonitorSummary {
    pub samples: u32,
    #[ts(type = "number")]
    pub max_swap_used_bytes: u64,
    #[ts(type = "number")]
    pub min_available_bytes: u64,
    pub max_thermal: Thermal,
    pub max_pressure: Pressure,
}

impl MonitorSummary {
    pub fn of(samples: &[Sample]) -> MonitorSummary {
        MonitorSummary {
            samples: samples.len() as u32,
            max_swap_used_bytes: samples.iter().map(|s| s.swap_used_bytes).max().unwrap_or(0),
            min_available_bytes: samples.iter().map(|s| s.available_bytes).min().unwrap_or(0),
            max_thermal: samples
                .iter()
                .map(|s| s.thermal)
                .max()
                .unwrap_or(Thermal::Unknown),
            max_pressure: samples
                .iter()
                .map(|s| s.pressure)
                .max()
                .unwrap_or(Pressure::Unknown),
        }
    }
}

/// A whole run, as saved in `<state>/bench/<id>.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct BenchResult {
    /// `YYYYmmdd-HHMMSS-xxxx` (UTC): sorts by time.
    pub id: String,
    #[ts(type = "number")]
    pub started_ms: u64,
    #[ts(type = "number")]
    pub finished_ms: u64,
    pub app_version: String,
    pub machine: MachineInfo,
    pub options: BenchOptions,
    /// What the run sent, in words (`BenchOptions::load_description`, with the dataset's identity).
    #[serde(default)]
    pub load: String,
    /// The dataset replayed (`options.dataset`), as it was read.
    #[serde(default)]
    pub dataset: Option<DatasetInfo>,
    pub services: Vec<ServiceResult>,
    pub monitor: MonitorSummary,
    /// Memory, swap and thermal once a second during the run.
    pub samples: Vec<Sample>,
    pub verdict: CheckStatus,
    pub cancelled: bool,
    /// `mlx-box bench POOL`: how the load spread over the pool's members, and how close the pool came to
    /// its members' sum.
    #[serde(default)]
    pub pool: Option<PoolBench>,
}

/// A pool measured through its frontend, beside one of its members measured alone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct PoolBench {
    pub name: String,
    /// Output tok/s through the pool at the highest concurrency.
    pub combined_output_tok_s: f64,
    /// The member measured alone (its own server, the same load), and its output tok/s.
    pub solo_member: Option<String>,
    pub solo_output_tok_s: Option<f64>,
    /// combined / (members × solo): 1.0 = every member added a whole member's throughput.
    pub parallel_efficiency: Option<f64>,
    pub members: Vec<PoolMemberShare>,
}

/// One member's part of a pool run (the pool's counters over the run).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct PoolMemberShare {
    pub member: String,
    #[ts(type = "number")]
    pub requests: u64,
    /// requests / all the pool's requests in the run.
    pub share: f64,
    #[ts(type = "number")]
    pub errors: u64,
    #[ts(type = "number")]
    pub affinity_hits: u64,
}

/// A line of the history (`GET /v1/bench/history`): enough for a chart over time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct BenchSummary {
    pub id: String,
    #[ts(type = "number")]
    pub started_ms: u64,
    pub verdict: CheckStatus,
    /// What the run sent, in words (runs with different loads are not comparable).
    #[serde(default)]
    pub load: String,
    pub services: Vec<ServiceHeadline>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct ServiceHeadline {
    pub name: String,
    pub model: Option<String>,
    /// Median generation tok/s at concurrency 1 (the table's, the threshold's and the history's figure).
    pub gen_tok_s: Option<f64>,
    /// p50 TTFT at concurrency 1.
    pub ttft_ms: Option<f64>,
    /// Best output tok/s over the levels.
    pub output_tok_s: Option<f64>,
    /// Best inputs/s (embedding services).
    pub inputs_s: Option<f64>,
    pub verdict: CheckStatus,
}

impl ServiceResult {
    pub fn level(&self, concurrency: u32) -> Option<&LevelResult> {
        self.levels
            .iter()
            .find(|l| l.concurrency == concurrency && l.rate.is_none())
    }
    /// The closed-loop level with the highest concurrency.
    pub fn top_level(&self) -> Option<&LevelResult> {
        self.levels
            .iter()
            .filter(|l| l.rate.is_none())
            .max_by_key(|l| l.concurrency)
    }

    pub fn headline(&self) -> ServiceHeadline {
        let one = self.level(1);
        ServiceHeadline {
            name: self.name.clone(),
            model: self.model.clone(),
            gen_tok_s: one.and_then(|l| l.gen_tok_s).map(|s| s.p50),
            ttft_ms: one.and_then(|l| l.ttft_ms).map(|s| s.p50),
            output_tok_s: self.levels.iter().map(|l| l.output_tok_s).reduce(f64::max),
            inputs_s: self.embedding.iter().map(|l| l.inputs_s).reduce(f64::max),
            verdict: self.verdict,
        }
    }

    /// The `expect_*` keys against this result.
    pub fn check_thresholds(&self, e: &Expectations) -> Vec<ThresholdResult> {
        let mut out = vec![];
        let mut check =
            |key: &str, expected: Option<f64>, measured: Option<f64>, higher: bool, what: &str| {
                let Some(expected) = expected else { return };
                let (status, detail) = match measured {
                    None => (
                        CheckStatus::Fail,
                        format!("{what} was not measured (run the levels it needs)"),
                    ),
                    Some(m) => {
                        let ok = if higher { m >= expected } else { m <= expected };
                        let cmp = if higher { "at least" } else { "at most" };
                        (
                            if ok {
                                CheckStatus::Pass
                            } else {
                                CheckStatus::Fail
                            },
                            format!("{what} {m:.2}, expected {cmp} {expected}"),
                        )
                    }
                };
                out.push(ThresholdResult {
                    key: key.into(),
                    expected,
                    measured,
                    status,
                    detail,
                });
            };
        let one = self.level(1);
        let top = self.top_level();
        check(
            "expect_gen_tok_s",
            e.gen_tok_s,
            one.and_then(|l| l.gen_tok_s).map(|s| s.p50),
            true,
            "generation tok/s (median, concurrency 1)",
        );
        check(
            "expect_ttft_ms",
            e.ttft_ms,
            one.and_then(|l| l.ttft_ms).map(|s| s.p50),
            false,
            "TTFT ms (p50, concurrency 1)",
        );
        check(
            "expect_output_tok_s",
            e.output_tok_s,
            top.map(|l| l.output_tok_s),
            true,
            &format!(
                "output tok/s (concurrency {})",
                top.map(|l| l.concurrency).unwrap_or(0)
            ),
        );
        check(
            "expect_parallel_efficiency",
            e.parallel_efficiency,
            top.and_then(|l| l.parallel_efficiency),
            true,
            &format!(
                "parallel efficiency (concurrency {})",
                top.map(|l| l.concurrency).unwrap_or(0)
            ),
        );
        let top_embed = self.embedding.iter().max_by_key(|l| l.concurrency);
        check(
            "expect_inputs_s",
            e.inputs_s,
            top_embed.map(|l| l.inputs_s),
            true,
            "inputs/s",
        );
        check(
            "expect_rtf",
            e.rtf,
            self.audio
                .iter()
                .find(|l| l.concurrency == 1)
                .and_then(|l| l.rtf)
                .map(|s| s.p50),
            false,
            "real-time factor (p50, concurrency 1)",
        );
        out
    }
}

impl BenchResult {
    pub fn summary(&self) -> BenchSummary {
        BenchSummary {
            id: self.id.clone(),
            started_ms: self.started_ms,
            verdict: self.verdict,
            load: if self.load.is_empty() {
                self.options.load_description()
            } else {
                self.load.clone()
            },
            services: self.services.iter().map(ServiceResult::headline).collect(),
        }
    }
}

/// Event `bench_progress`: after every request of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct BenchProgress {
    pub id: String,
    pub service: String,
    /// "warmup" | "level" | "rate" | "embedding" | "thinking" | "long_context".
    pub phase: String,
    /// Requests done and planned in the whole run.
    pub done: u32,
    pub total: u32,
    /// What runs now, for a status line ("chat: concurrency 4").
    pub message: String,
}

/// Event `bench_done`: the run ended (`GET /v1/bench/{id}` has the result when `error` is null).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct BenchDone {
    pub id: String,
    pub verdict: Option<CheckStatus>,
    pub error: Option<String>,
}

/// Answer of `POST /v1/bench`: the run started; follow it on the event stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct BenchStarted {
    pub id: String,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn level(c: u32, out: f64, ttft_p50: f64) -> LevelResult {
        let st = |x: f64| Stats {
            mean: x,
            p50: x,
            p90: x,
            p99: x,
            n: 4,
        };
        LevelResult {
            concurrency: c,
            rate: None,
            requests: 4,
            errors: 0,
            first_error: None,
            duration_s: 1.0,
            ttft_ms: Some(st(ttft_p50)),
            tpot_ms: Some(st(10.0)),
            itl_ms: Some(st(10.0)),
            e2e_ms: Some(st(500.0)),
            gen_tok_s: Some(st(100.0)),
            output_tok_s: out,
            request_s: 1.0,
            prompt_tok_s: Some(1000.0),
            parallel_efficiency: Some(out / (c as f64 * 100.0)),
            prompt_tokens: 100,
            completion_tokens: 400,
            cached_tokens: None,
            prompt_len: Some(st(25.0)),
            output_len: Some(st(100.0)),
            prompt_len_mismatches: 0,
            ended_early: 0,
            goodput: None,
        }
    }

    pub(crate) fn service(levels: Vec<LevelResult>) -> ServiceResult {
        ServiceResult {
            name: "fast".into(),
            kind: Kind::Chat,
            model: Some("m".into()),
            quantization: None,
            fingerprint: None,
            settings: serde_json::Value::Null,
            skipped: None,
            levels,
            embedding: vec![],
            audio: vec![],
            long_context: None,
            thinking: None,
            thresholds: vec![],
            verdict: CheckStatus::Skip,
            throttling_suspected: false,
            prompt_template_tokens: None,
        }
    }

    pub(crate) fn result(id: &str, s: ServiceResult) -> BenchResult {
        BenchResult {
            id: id.into(),
            started_ms: 0,
            finished_ms: 0,
            app_version: "0".into(),
            machine: MachineInfo {
                cpu: "x".into(),
                cores: 2,
                memory_bytes: 1,
                os: "linux".into(),
                arch: "x86_64".into(),
                hostname: None,
            },
            options: BenchOptions::default(),
            load: String::new(),
            dataset: None,
            services: vec![s],
            monitor: MonitorSummary::of(&[]),
            samples: vec![],
            verdict: CheckStatus::Skip,
            cancelled: false,
            pool: None,
        }
    }

    #[test]
    fn thresholds_pass_and_fail() {
        let s = service(vec![level(1, 100.0, 200.0), level(4, 200.0, 400.0)]);
        let e = Expectations {
            gen_tok_s: Some(90.0),
            ttft_ms: Some(150.0),
            output_tok_s: Some(150.0),
            parallel_efficiency: Some(0.6),
            inputs_s: None,
            rtf: None,
        };
        let t = s.check_thresholds(&e);
        let st: Vec<(&str, CheckStatus)> = t.iter().map(|t| (t.key.as_str(), t.status)).collect();
        assert_eq!(
            st,
            [
                ("expect_gen_tok_s", CheckStatus::Pass),
                ("expect_ttft_ms", CheckStatus::Fail),
                ("expect_output_tok_s", CheckStatus::Pass),
                ("expect_parallel_efficiency", CheckStatus::Fail),
            ]
        );
        assert_eq!(
            t[1].detail,
            "TTFT ms (p50, concurrency 1) 200.00, expected at most 150"
        );
        // A threshold whose level was not run fails, saying why.
        let only4 = service(vec![level(4, 200.0, 400.0)]);
        let t = only4.check_thresholds(&e);
        assert_eq!(t[0].status, CheckStatus::Fail);
        assert!(t[0].detail.contains("not measured"));
        assert_eq!(
            CheckStatus::worst([CheckStatus::Pass, CheckStatus::Skip]),
            CheckStatus::Pass
        );
        assert_eq!(
            CheckStatus::worst([CheckStatus::Pass, CheckStatus::Fail]),
            CheckStatus::Fail
        );
        assert_eq!(CheckStatus::worst([]), CheckStatus::Skip);
    }
}
