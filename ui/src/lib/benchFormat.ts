// Names, units and one-line definitions of the benchmark's figures (the same as crates/core/src/bench/metrics.rs
// and docs/BENCHMARK.md: vLLM's `bench serve` conventions), and how to print them.
import type { BenchSummary } from "../bindings/BenchSummary";
import type { LevelResult } from "../bindings/LevelResult";
import type { ServiceHeadline } from "../bindings/ServiceHeadline";

export type Metric = { label: string; unit: string; def: string };

export const METRICS = {
  concurrency: {
    label: "Concurrency",
    unit: "",
    def: "Requests in flight at once (an open-loop Poisson level: its arrival rate and the most seen at once).",
  },
  requests: { label: "Requests", unit: "", def: "Successful requests measured at this level (warm-up not counted)." },
  ttft: {
    label: "TTFT",
    unit: "ms",
    def: "Time to first token: request sent → first chunk carrying content or reasoning (a role-only chunk does not count).",
  },
  tpot: {
    label: "TPOT",
    unit: "ms",
    def: "Time per output token: (E2E − TTFT) / (N − 1), N = the server's completion tokens.",
  },
  itl: {
    label: "ITL",
    unit: "ms",
    def: "Inter-token latency: gaps between consecutive chunks carrying text (a multi-token chunk is one gap).",
  },
  e2e: { label: "E2E", unit: "ms", def: "End-to-end latency: request sent → end of the stream." },
  gen: {
    label: "Gen tok/s p50",
    unit: "tok/s",
    def: "Generation (decode) speed of a request: (N − 1) / (E2E − TTFT) = 1000 / TPOT; the median request.",
  },
  output: {
    label: "Output tok/s",
    unit: "tok/s",
    def: "All completion tokens of the level / its wall time (first request sent → last stream ended).",
  },
  reqs: { label: "Req/s", unit: "req/s", def: "Successful requests of the level / the same wall time." },
  efficiency: {
    label: "Parallel eff.",
    unit: "",
    def: "Output tok/s at N / (N × output tok/s at concurrency 1): 1.0 = perfect scaling.",
  },
  inputs: { label: "Inputs/s", unit: "inputs/s", def: "Embedding inputs of all requests / wall time." },
  latency: { label: "Latency", unit: "ms", def: "Embeddings request latency: send → whole answer." },
  prompt: { label: "Prompt tok/s", unit: "tok/s", def: "Prompt tokens / TTFT (prefill speed, cache hits included)." },
} satisfies Record<string, Metric>;

/** A figure with sensible precision; "—" for a figure that could not be measured. */
export function num(v: number | null | undefined, unit = ""): string {
  if (v == null || !Number.isFinite(v)) return "—";
  const a = Math.abs(v);
  const s = a >= 100 ? v.toFixed(0) : a >= 10 ? v.toFixed(1) : v.toFixed(2);
  return unit ? `${s} ${unit}` : s;
}

/** ms as "850 ms" or "1.25 s". */
export function ms(v: number | null | undefined): string {
  if (v == null || !Number.isFinite(v)) return "—";
  return Math.abs(v) >= 1000 ? `${(v / 1000).toFixed(2)} s` : `${v.toFixed(v >= 100 ? 0 : 1)} ms`;
}

export function pct(v: number | null | undefined): string {
  if (v == null || !Number.isFinite(v)) return "—";
  return `${v > 0 ? "+" : ""}${v.toFixed(1)} %`;
}

export function signed(v: number | null | undefined): string {
  if (v == null || !Number.isFinite(v)) return "—";
  return `${v > 0 ? "+" : ""}${num(v)}`;
}

/** A run's time, e.g. "Jan 5, 10:42". */
export function when(msSinceEpoch: number): string {
  return new Date(msSinceEpoch).toLocaleString(undefined, {
    month: "short",
    day: "numeric",
    hour: "2-digit",
    minute: "2-digit",
  });
}

/** A level's name: "4", or "2/s (max 5)" for an open-loop level. */
export function levelName(l: LevelResult): string {
  return l.rate != null ? `${num(l.rate)}/s (max ${l.concurrency})` : String(l.concurrency);
}

export const STATUS_MARK = { pass: "✓", fail: "✗", skip: "–" } as const;

/** A service's headline of the history: generation tok/s at concurrency 1, else inputs/s. */
export function headline(s: ServiceHeadline): string {
  if (s.gen_tok_s != null) return `${num(s.gen_tok_s)} tok/s`;
  if (s.output_tok_s != null) return `${num(s.output_tok_s)} tok/s`;
  if (s.inputs_s != null) return `${num(s.inputs_s)} inputs/s`;
  return "—";
}

/** The history's figures to chart over time. */
export const HEADLINES = {
  gen_tok_s: { label: "Gen tok/s (median) at c=1", get: (s: ServiceHeadline) => s.gen_tok_s },
  output_tok_s: { label: "Best output tok/s", get: (s: ServiceHeadline) => s.output_tok_s ?? s.inputs_s },
  ttft_ms: { label: "TTFT p50 at c=1 (ms)", get: (s: ServiceHeadline) => s.ttft_ms },
} as const;
export type HeadlineKey = keyof typeof HEADLINES;

/** Every service name of the history, in order of first appearance. */
export function historyServices(runs: BenchSummary[]): string[] {
  const seen: string[] = [];
  for (const r of runs) for (const s of r.services) if (!seen.includes(s.name)) seen.push(s.name);
  return seen;
}
