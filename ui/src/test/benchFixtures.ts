// Canned benchmark and doctor answers for the Benchmark window's tests (and the dev mock).
import type { BenchResult } from "../bindings/BenchResult";
import type { BenchSummary } from "../bindings/BenchSummary";
import type { Comparison } from "../bindings/Comparison";
import type { DoctorReport } from "../bindings/DoctorReport";
import type { LevelResult } from "../bindings/LevelResult";
import type { ServiceResult } from "../bindings/ServiceResult";
import type { Stats } from "../bindings/Stats";
import { T0 } from "./fixtures";

export const stats = (p50: number, n = 16): Stats => ({ mean: p50 * 1.05, p50, p90: p50 * 1.5, p99: p50 * 2, n });

/** A closed-loop level: output tok/s grows sub-linearly, TTFT with the concurrency. */
export function level(concurrency: number, over: Partial<LevelResult> = {}): LevelResult {
  const out = 40 * concurrency ** 0.8;
  return {
    concurrency,
    rate: null,
    requests: 16,
    errors: 0,
    first_error: null,
    duration_s: 10,
    ttft_ms: stats(100 * concurrency),
    tpot_ms: stats(25),
    itl_ms: stats(26),
    e2e_ms: stats(3300 + 100 * concurrency),
    gen_tok_s: stats(40),
    output_tok_s: out,
    request_s: out / 128,
    prompt_tok_s: 500,
    parallel_efficiency: out / (concurrency * 40),
    prompt_tokens: 1000,
    completion_tokens: 2048,
    cached_tokens: null,
    prompt_len: { mean: 62.5, p50: 62, p90: 64, p99: 64, n: 16 },
    output_len: { mean: 128, p50: 128, p90: 128, p99: 128, n: 16 },
    prompt_len_mismatches: 0,
    ended_early: 0,
    goodput: null,
    ...over,
  };
}

export function chatService(name: string, over: Partial<ServiceResult> = {}): ServiceResult {
  return {
    name,
    kind: "chat",
    model: `mlx-community/${name}-4bit`,
    quantization: "4-bit (group 64)",
    fingerprint: "0.28.0-0.29.1-macOS",
    settings: {},
    skipped: null,
    levels: [1, 2, 4, 8].map((c) => level(c)),
    embedding: [],
    audio: [],
    long_context: null,
    thinking: {
      expect_thinking: true,
      status: "pass",
      reason: "reasoning came back in the reasoning field",
      content_excerpt: "The answer is 42.",
      reasoning_excerpt: "Let me think step by step",
    },
    thresholds: [{ key: "expect_gen_tok_s", expected: 30, measured: 40, status: "pass", detail: "40 ≥ 30" }],
    verdict: "pass",
    throttling_suspected: false,
    prompt_template_tokens: null,
    ...over,
  };
}

export function embedService(name: string): ServiceResult {
  return {
    ...chatService(name),
    kind: "embedding",
    quantization: null,
    fingerprint: null,
    levels: [],
    thinking: null,
    thresholds: [],
    verdict: "skip",
    embedding: [1, 4].map((c) => ({
      concurrency: c,
      batch_size: 16,
      requests: 16,
      errors: 0,
      first_error: null,
      duration_s: 2,
      inputs_s: 300 * c ** 0.7,
      request_s: 19 * c ** 0.7,
      latency_ms: stats(50 * c),
      prompt_tok_s: null,
    })),
  };
}

export function speechService(name: string): ServiceResult {
  return {
    ...chatService(name),
    kind: "tts",
    quantization: null,
    fingerprint: null,
    levels: [],
    thinking: null,
    thresholds: [{ key: "expect_rtf", expected: 0.5, measured: 0.21, status: "pass", detail: "real-time factor (p50, concurrency 1) 0.21, expected at most 0.5" }],
    verdict: "pass",
    audio: [1, 2].map((c) => ({
      concurrency: c,
      requests: 8,
      errors: 0,
      first_error: null,
      duration_s: 4,
      request_s: 2 * c ** 0.8,
      latency_ms: stats(900 * c),
      audio_s: 4.2,
      rtf: stats(0.21 * c),
      audio_s_per_s: 8.4 * c ** 0.8,
      sample: "4.20 s of audio, 201644 bytes",
    })),
  };
}

export function benchResult(id: string, over: Partial<BenchResult> = {}): BenchResult {
  return {
    id,
    started_ms: T0,
    finished_ms: T0 + 95_000,
    app_version: "0.1.0",
    machine: { cpu: "Apple M2 Ultra", cores: 24, memory_bytes: 192 * 2 ** 30, os: "macOS 15.2", arch: "aarch64", hostname: "studio" },
    options: {
      services: [],
      concurrency: [1, 2, 4, 8],
      requests: 16,
      max_tokens: 128,
      rate: null,
      long_context: false,
      long_context_tokens: 20000,
      warmup: 1,
      thinking_check: true,
      embed_batch: null,
      request_timeout_s: 300,
      prompt_tokens: null,
      prompt_tokens_spread: 0,
      output_tokens: null,
      dataset: null,
      seed: 0,
      slo_ttft_ms: null,
      slo_tpot_ms: null,
      audio_file: null,
    },
    load: "built-in prompts, up to 128 output tokens",
    dataset: null,
    services: [chatService("chat"), chatService("fast", { levels: [1, 2, 4, 8].map((c) => level(c, { output_tok_s: 80 * c ** 0.6 })) }), embedService("embed")],
    monitor: { samples: 95, max_swap_used_bytes: 0, min_available_bytes: 30 * 2 ** 30, max_thermal: "nominal", max_pressure: "normal" },
    samples: [],
    verdict: "pass",
    cancelled: false,
    pool: null,
    ...over,
  };
}

export function summary(id: string, i: number, over: Partial<BenchSummary> = {}): BenchSummary {
  return {
    id,
    started_ms: T0 + i * 86_400_000,
    verdict: "pass",
    load: "built-in prompts, up to 128 output tokens",
    services: [
      { name: "chat", model: "mlx-community/chat-4bit", gen_tok_s: 40 + i, ttft_ms: 100 - i, output_tok_s: 210 + i, inputs_s: null, verdict: "pass" },
      { name: "embed", model: "Qwen/Qwen3-Embedding-0.6B", gen_tok_s: null, ttft_ms: null, output_tok_s: null, inputs_s: 800 + i, verdict: "skip" },
    ],
    ...over,
  };
}

export function comparison(a: string, b: string): Comparison {
  return {
    a,
    b,
    load_differs: null,
    rows: [
      { service: "chat", level: "c=1", metric: "gen tok/s", a: 40, b: 44, delta: 4, delta_percent: 10, better: true },
      { service: "chat", level: "c=1", metric: "ttft p50 ms", a: 100, b: 130, delta: 30, delta_percent: 30, better: false },
      { service: "chat", level: "c=4", metric: "output tok/s", a: 120, b: 120, delta: 0, delta_percent: 0, better: null },
    ],
  };
}

export function doctorReport(): DoctorReport {
  return {
    ok: false,
    finished_ms: T0,
    checks: [
      { check: "ready", service: "chat", status: "pass", reason: "ready for 12m" },
      { check: "swap", service: null, status: "fail", reason: "swap 310 MB ≥ 100 MB" },
      { check: "long_context", service: "chat", status: "skip", reason: "context 8192 < 20000 tokens" },
    ],
  };
}
