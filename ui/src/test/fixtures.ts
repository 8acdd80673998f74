// A fake app backend for the UI tests: Tauri's mockIPC with canned answers, every call recorded,
// and events delivered through the mocked event plugin (emit from @tauri-apps/api/event).
import { emit } from "@tauri-apps/api/event";
import { mockIPC, mockWindows } from "@tauri-apps/api/mocks";
import type { ConfigDocument } from "../bindings/ConfigDocument";
import type { KeyInfo } from "../bindings/KeyInfo";
import type { Sample } from "../bindings/Sample";
import type { ServiceStatus } from "../bindings/ServiceStatus";
import type { StatusReport } from "../bindings/StatusReport";

/** One recorded call: an app command by its name, or a daemon request (the `call` command) by its request
 *  tag, its fields as `args` (and `host` when it was forwarded to another Mac). */
export type Call = { cmd: string; args: Record<string, unknown> };
export type Handler = (args: Record<string, unknown>) => unknown;

export const T0 = 1_700_000_000_000;

export function service(name: string, over: Partial<ServiceStatus> = {}): ServiceStatus {
  return {
    name,
    kind: "chat",
    state: "ready",
    pid: 100,
    port: 8091,
    frontend_port: 8081,
    model: `mlx-community/${name}`,
    restarts: 0,
    memory_bytes: 512 * 1024 * 1024,
    last_error: null,
    enabled: true,
    since_ms: T0 - 60_000,
    ready_since_ms: T0 - 60_000,
    crash_loop: false,
    stopped_by_request: false,
    adopted: false,
    on_demand: false,
    ranks: [],
    hostfile: null,
    ...over,
  };
}

export function sample(i: number, over: Partial<Sample> = {}): Sample {
  return {
    t_ms: T0 + i * 1000,
    total_bytes: 64 * 2 ** 30,
    used_bytes: (20 + i) * 2 ** 30,
    available_bytes: (44 - i) * 2 ** 30,
    swap_used_bytes: 0,
    swap_total_bytes: 2 ** 30,
    swap_out_bytes_per_s: null,
    compressed_bytes: null,
    wired_bytes: null,
    pressure: "normal",
    thermal: "nominal",
    temperature_c: null,
    ...over,
  };
}

export function status(over: Partial<StatusReport> = {}): StatusReport {
  return {
    version: "0.1.0",
    daemon_pid: 42,
    config_path: "/cfg/settings.toml",
    config: { valid: true, diagnostics: [], content_hash: "h1" },
    services: [service("chat"), service("embed", { kind: "embedding", state: "stopped", pid: null, ready_since_ms: null })],
    memory: {
      total_bytes: 64 * 2 ** 30,
      used_bytes: 20 * 2 ** 30,
      available_bytes: 44 * 2 ** 30,
      swap_used_bytes: 0,
      swap_total_bytes: 2 ** 30,
      pressure: "normal",
      budget_bytes: 48 * 2 ** 30,
      budget_source: "iogpu.wired_limit_mb",
    },
    thermal: { state: "nominal" },
    alerts: [],
    hosts: [],
    pools: [],
    awake: null,
    ...over,
  };
}

export const SETTINGS_TEXT = `# my settings
[server]
host = "127.0.0.1"

[app]
log_tail_lines = 1000
notify_min_severity = "warning"

[alerts]
enabled = true
swap_warn_mb = 100

[services.chat]
port = 8081
model = "mlx-community/Qwen3-0.6B-4bit"
max_tokens = 2048  # keep me
temperature = 0.6
command = ["{python}", "-m", "x"]
env = { HF_HOME = "/models" }
mystery = "kept"

[services.embed]
port = 8084
model = "Qwen/Qwen3-Embedding-0.6B"
`;

export function configDoc(over: Partial<ConfigDocument> = {}): ConfigDocument {
  return {
    path: "/cfg/settings.toml",
    text: SETTINGS_TEXT,
    document: {
      server: { host: "127.0.0.1" },
      app: { log_tail_lines: 1000, notify_min_severity: "warning" },
      alerts: { enabled: true, swap_warn_mb: 100 },
      services: {
        chat: {
          port: 8081,
          model: "mlx-community/Qwen3-0.6B-4bit",
          max_tokens: 2048,
          temperature: 0.6,
          command: ["{python}", "-m", "x"],
          env: { HF_HOME: "/models" },
          mystery: "kept",
        },
        embed: { port: 8084, model: "Qwen/Qwen3-Embedding-0.6B" },
      },
    },
    content_hash: "h1",
    status: { valid: true, diagnostics: [], content_hash: "h1" },
    ...over,
  };
}

export function keyInfo(id: string, over: Partial<KeyInfo> = {}): KeyInfo {
  return { id, name: null, created: 1_700_000_000, last4: "abcd", services: [], ...over };
}

/** The rejection a daemon's 404 becomes (`bench_current` when no run is going). */
export const notFound = (message = "no benchmark is running") => {
  throw { kind: "not_found", message, hint: null, preview: null };
};

/** Installs the fake backend; `handlers` override the defaults. Handlers are keyed by the app command's
 *  name, or for a request to the daemon by its request tag (`status`, `action`, …: what `call` carries).
 *  Returns the recorded calls. */
export function backend(handlers: Record<string, Handler> = {}): Call[] {
  const calls: Call[] = [];
  const doc = { text: SETTINGS_TEXT, document: null, diagnostics: [], valid: true };
  const defaults: Record<string, Handler> = {
    // The app's own commands.
    get_connection: () => ({ connected: true, state_dir: "/state", error: null }),
    start_daemon: () => ({ connected: true, state_dir: "/state", error: null }),
    follow_logs: () => null,
    unfollow_logs: () => null,
    window_ready: () => null,
    open_view: () => null,
    close_window: () => null,
    chat_send: () => null,
    chat_cancel: () => null,
    chat_speech: () => "data:audio/wav;base64,UklGRg==",
    chat_transcribe: () => "hello from the file",
    set_unsaved: () => null,
    hide_window: () => null,
    // The dialog plugin's open panel: cancelled unless a test picks a path.
    "plugin:dialog|open": () => null,
    // Requests to the daemon, by tag.
    status: () => status(),
    monitor_history: () => ({ samples: [0, 1, 2].map((i) => sample(i)) }),
    proxy_stats: () => ({}),
    logs: () => ({ lines: ["line one", "error: two", "line three"] }),
    action: (a) => ({ services: [a.target as string] }),
    get_config: () => configDoc(),
    preview_config: () => doc,
    edit_config: () => doc,
    list_keys: () => ({ keys: [], keyring_error: null }),
    add_key: (a) => {
      const k = a.key as { name: string | null; services: string[] };
      return { key: keyInfo("k-new", { name: k.name, services: k.services, last4: "wxyz" }), secret: "sk-mlxbox-secretwxyz" };
    },
    remove_key: (a) => keyInfo(a.id as string),
    alert_action: (a) => ({ id: a.id, severity: "warning", title: "t", body: "b", since: 0, cleared: null, acknowledged: true, snoozed_until: null }),
    bench_current: () => notFound(),
    bench_history: () => ({ runs: [] }),
    listeners: () => ({ listeners: [] }),
  };
  const all = { ...defaults, ...handlers };
  mockIPC(
    (cmd, args) => {
      let a = (args ?? {}) as Record<string, unknown>;
      if (cmd === "call") {
        // The one command to the daemon: record and answer it as the request it carries.
        let req = a.request as { request: string; [k: string]: unknown };
        let host: string | undefined;
        if (req.request === "host") {
          host = req.host as string;
          req = req.forward as typeof req;
        }
        const { request: tag, ...fields } = req;
        cmd = tag;
        a = host === undefined ? fields : { ...fields, host };
      }
      calls.push({ cmd, args: a });
      const h = all[cmd];
      if (!h) throw new Error(`unmocked command or request ${cmd}`);
      return h(a);
    },
    { shouldMockEvents: true },
  );
  // A current window, for what listens on it alone (`close-asked`); the mocked events ignore the target.
  mockWindows("main");
  return calls;
}

export const send = (event: string, payload: unknown) => emit(event, payload);

export const unreachable = (message = "no daemon on /state (run `mlx-box up`)") => {
  // A rejected invoke: mockIPC turns a thrown value into the rejection.
  throw { kind: "unreachable", message, hint: null, preview: null };
};
