// A fake backend for looking at the windows in a plain browser: `VITE_MOCK_IPC=1 npm run dev`
// (never part of a normal build: main.ts imports it only under that variable).
import type { KeyInfo } from "../bindings/KeyInfo";
import { benchResult, comparison, doctorReport, summary } from "../test/benchFixtures";
import { backend, configDoc, keyInfo, notFound, sample, send, service, status, T0 } from "../test/fixtures";

const history = Array.from({ length: 600 }, (_, i) =>
  sample(i, {
    used_bytes: (30 + 8 * Math.sin(i / 40) + (i > 400 ? 10 : 0)) * 2 ** 30,
    swap_used_bytes: i > 450 ? (i - 450) * 2 ** 21 : 0,
    pressure: i > 500 ? "warn" : "normal",
    thermal: i > 520 ? "fair" : "nominal",
    temperature_c: 48 + (i % 60) / 10,
  }),
);

export function installMock(): void {
  let keys: KeyInfo[] = [
    keyInfo("k1", { name: "laptop", created: T0 / 1000 - 86_400 * 30, last4: "9f2c" }),
    keyInfo("k2", { name: "ci", created: T0 / 1000 - 86_400 * 3, last4: "0b7e", services: ["chat"] }),
    keyInfo("k3", { created: T0 / 1000, last4: "71aa" }),
  ];
  let n = 4;
  let runs = Array.from({ length: 8 }, (_, i) => summary(`2025010${i}-100000-ab${i}`, i - 8, { verdict: i === 5 ? "fail" : "pass" }));
  let current: { id: string } | null = null;
  /** A fake run: 40 requests over 8 s, then the result. */
  const fakeRun = (id: string) => {
    current = { id };
    let done = 0;
    const phases = ["warmup", "level", "level", "level", "thinking"];
    const timer = setInterval(() => {
      if (current?.id !== id) return clearInterval(timer);
      done++;
      const phase = phases[Math.min(phases.length - 1, Math.floor(done / 8))];
      void send("daemon-event", { type: "bench_progress", id, service: done < 30 ? "fast" : "embedding", phase, done, total: 40, message: `${phase} ${done}` });
      if (done >= 40) {
        clearInterval(timer);
        current = null;
        runs = [...runs, summary(id, 0)];
        void send("daemon-event", { type: "bench_done", id, verdict: "pass", error: null });
      }
    }, 400);
  };
  // `#bench?running`: the window opens mid-run.
  if (window.location.hash.includes("running")) fakeRun("run-at-open");
  backend({
    bench_current: () => current ?? notFound(),
    bench_start: () => {
      if (current) throw { kind: "conflict", message: `a benchmark is already running (${current.id})`, hint: null, preview: null };
      const id = `run-${Date.now()}`;
      fakeRun(id);
      return { id };
    },
    bench_cancel: () => {
      const c = current;
      if (!c) return notFound();
      current = null;
      runs = [...runs, summary(c.id, 0)];
      setTimeout(() => void send("daemon-event", { type: "bench_done", id: c.id, verdict: "skip", error: null }), 300);
      return c;
    },
    bench_history: () => ({ runs }),
    bench_result: (a) => benchResult(a.id === "last" ? runs[runs.length - 1].id : (a.id as string)),
    bench_compare: (a) => comparison(a.a as string, a.b as string),
    doctor: () => new Promise((r) => setTimeout(() => r(doctorReport()), 800)),
    get_config: () => {
      const doc = configDoc();
      const d = doc.document as { server: Record<string, unknown> };
      d.server.api_keys = ["sk-plain-1"];
      return doc;
    },
    list_keys: () => ({ keys, keyring_error: null }),
    add_key: (a) => {
      const secret = `sk-mlxbox-${Math.random().toString(36).slice(2)}${Math.random().toString(36).slice(2)}`;
      const req = a.key as { name: string | null; services: string[] };
      const key = keyInfo(`k${n++}`, { name: req.name, created: Math.floor(Date.now() / 1000), last4: secret.slice(-4), services: req.services });
      keys = [...keys, key];
      return { key, secret };
    },
    remove_key: (a) => {
      const k = keys.find((x) => x.id === a.id);
      if (!k) return notFound(`no key ${String(a.id)}`);
      keys = keys.filter((x) => x !== k);
      return k;
    },
    status: () =>
      status({
        services: [
          service("fast", { model: "mlx-community/Qwen3-30B-A3B-4bit", memory_bytes: 17.2 * 2 ** 30, restarts: 1 }),
          service("embedding", { kind: "embedding", port: 8094, frontend_port: 8084, model: "Qwen/Qwen3-Embedding-0.6B" }),
          service("ocr", { kind: "ocr", state: "backoff", port: 8095, frontend_port: 8085, model: "mlx-community/olmOCR-2-7B-1025-mlx-8bit", last_error: "exited with status 1 after 3.2 s (see its log)", restarts: 3 }),
          service("coder", { state: "idle", on_demand: true, port: 8096, frontend_port: 8086, model: "mlx-community/Qwen3-Coder-30B-A3B-Instruct-4bit", pid: null, ready_since_ms: null, memory_bytes: null }),
          service("gpt_oss", { kind: "command", state: "stopped", enabled: false, port: 5001, frontend_port: null, pid: null, ready_since_ms: null, memory_bytes: null }),
        ],
        alerts: [
          { id: "swap", severity: "warning", title: "Swap in use: 310 MB and growing", body: "Stop a model or lower a context length.", since: T0 + 590_000, cleared: null, acknowledged: false, snoozed_until: null },
          { id: "service-failed:ocr", severity: "critical", title: "ocr keeps crashing", body: "Open its log: the server exits during load.", since: T0 + 560_000, cleared: null, acknowledged: false, snoozed_until: null },
        ],
      }),
    monitor_history: () => ({ samples: history }),
    logs: () => ({ lines: Array.from({ length: 40 }, (_, i) => `2025-01-01T10:00:${String(i).padStart(2, "0")} INFO request ${i} done in ${20 + i} ms`) }),
    proxy_stats: () => ({ fast: { requests: 1284, errors: 2, unauthorized: 5, rejected_busy: 0, unavailable: 1, in_flight: 2 } }),
  });
  let i = 600;
  setInterval(() => {
    void send("daemon-event", { type: "monitor", sample: sample(i++, { used_bytes: 40 * 2 ** 30, swap_used_bytes: 310 * 2 ** 20 }),
      service_memory: null,
      live: { fast: { requests: 57, ttft_p50_ms: 41 + (i % 7), ttft_p95_ms: 180 + (i % 13), output_tok_s: 96.5, window_s: 60 } },
    });
    void send("log-line", { name: "fast", line: `INFO tick ${i}` });
  }, 1000);
}
