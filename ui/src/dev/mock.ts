// A fake backend for looking at the windows in a plain browser: `VITE_MOCK_IPC=1 npm run dev`
// (never part of a normal build: main.ts imports it only under that variable).
import { backend, sample, send, service, status, T0 } from "../test/fixtures";

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
  backend({
    get_status: () =>
      status({
        services: [
          service("fast", { model: "mlx-community/Qwen3-30B-A3B-4bit", memory_bytes: 17.2 * 2 ** 30, restarts: 1 }),
          service("embedding", { kind: "embedding", port: 8094, frontend_port: 8084, model: "Qwen/Qwen3-Embedding-0.6B" }),
          service("ocr", { kind: "ocr", state: "backoff", port: 8095, frontend_port: 8085, model: "mlx-community/olmOCR-2-7B-1025-mlx-8bit", last_error: "exited with status 1 after 3.2 s (see its log)", restarts: 3 }),
          service("gpt_oss", { kind: "command", state: "stopped", enabled: false, port: 5001, frontend_port: null, pid: null, ready_since_ms: null, memory_bytes: null }),
        ],
        alerts: [
          { id: "swap", severity: "warning", title: "Swap in use: 310 MB and growing", body: "Stop a model or lower a context length.", since: T0 + 590_000, cleared: null },
          { id: "service-failed:ocr", severity: "critical", title: "ocr keeps crashing", body: "Open its log: the server exits during load.", since: T0 + 560_000, cleared: null },
        ],
      }),
    get_history: () => ({ samples: history }),
    get_logs: () => Array.from({ length: 40 }, (_, i) => `2025-01-01T10:00:${String(i).padStart(2, "0")} INFO request ${i} done in ${20 + i} ms`),
    get_proxy_stats: () => ({ fast: { requests: 1284, errors: 2, unauthorized: 5, rejected_busy: 0, unavailable: 1, in_flight: 2 } }),
  });
  let i = 600;
  setInterval(() => {
    void send("daemon-event", { type: "monitor", sample: sample(i++, { used_bytes: 40 * 2 ** 30, swap_used_bytes: 310 * 2 ** 20 }), service_memory: null });
    void send("log-line", { name: "fast", line: `INFO tick ${i}` });
  }, 1000);
}
