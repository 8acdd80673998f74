// Every key of settings.toml the Settings window edits, with its type and range (from
// crates/core/src/config/parse.rs and config/settings.toml.example). The daemon validates; these
// only choose the input and show the defaults and ranges as help.

export type FieldType = "string" | "int" | "float" | "bool" | "enum" | "argv" | "env" | "scalar";

export interface FieldSpec {
  key: string;
  type: FieldType;
  label?: string;
  options?: string[];
  /** Suggestions for a free string (a datalist). */
  suggest?: string[];
  default?: string | number | boolean;
  /** What an absent enum means when there is no fixed default. */
  absent?: string;
  help: string;
}

export interface Group {
  title: string;
  fields: FieldSpec[];
}

export const SERVER_FIELDS: FieldSpec[] = [
  { key: "host", type: "string", default: "127.0.0.1", suggest: ["127.0.0.1", "0.0.0.0"], help: "Address services without a backend_port bind to: 127.0.0.1 = this Mac only, 0.0.0.0 = every interface." },
  { key: "request_timeout_s", type: "float", default: 600, help: "The proxy waits this long for a backend to start answering (and between two chunks of a stream), then 504 (0.1–86400 s). Per service too." },
  { key: "cors_origins", type: "argv", help: "Web pages (origins, e.g. http://localhost:3000) that may call the frontend ports from a browser, one per line. Empty: none." },
  { key: "domain_name", type: "string", help: "This Mac's name besides localhost: an open loopback frontend serves requests whose Host is a loopback name or this." },
  { key: "letsencrypt_email", type: "string", help: "Kept for the original mlx-box; not used by mlx-box." },
];
/** [server] keys shown as a note only (the keyring holds API keys). */
export const SERVER_SECRET_KEYS = ["api_key", "api_keys"];

export const APP_FIELDS: FieldSpec[] = [
  { key: "python", type: "string", help: "Interpreter for services that name none (a venv with mlx-lm). Default: python3 on PATH." },
  { key: "log_max_bytes", type: "int", default: 5242880, help: "Rotate a service's log at this size (bytes, ≥ 4096)." },
  { key: "log_files", type: "int", default: 3, help: "Log files kept per service in all (1–100)." },
  { key: "log_tail_lines", type: "int", default: 1000, help: "Lines of each log kept in memory (10–100000)." },
  { key: "stable_after_s", type: "float", default: 60, help: "Ready this long → the restart backoff resets (1–86400 s)." },
  { key: "stop_servers_on_quit", type: "bool", default: false, help: "Stop every server when you quit the menu-bar app." },
  { key: "refuse_over_budget", type: "bool", default: false, help: "Refuse to start services whose estimated memory exceeds the budget." },
  { key: "notify_min_severity", type: "enum", options: ["info", "warning", "critical", "off"], default: "warning", help: "Desktop notifications for alerts this severe or worse." },
];

export const ALERT_FIELDS: FieldSpec[] = [
  { key: "enabled", type: "bool", default: true, help: "Raise memory, swap and thermal alerts." },
  { key: "swap_warn_mb", type: "float", default: 100, help: "Warn when swap use passes this (MB) and is still growing." },
  { key: "headroom_warn_percent", type: "float", default: 10, help: "Warn when free memory falls below this share of RAM (0–100 %)." },
  { key: "cooldown_s", type: "float", default: 300, help: "A cleared alert does not notify again within this time (s)." },
  { key: "clear_after_s", type: "float", default: 10, help: "An alert clears once its condition has been gone this long (s)." },
];

export const KINDS = ["chat", "embedding", "ocr", "tts", "stt", "command"];

export const SERVICE_GROUPS: Group[] = [
  {
    title: "Server",
    fields: [
      { key: "kind", type: "enum", options: KINDS, absent: "(inferred from the name)", help: "What it serves; inferred from the name or `command` when absent." },
      { key: "enabled", type: "bool", default: true, help: "false: listed, never started." },
      { key: "model", type: "string", help: "Hugging Face id or local path (required for chat, embedding, ocr)." },
      { key: "port", type: "int", help: "Frontend port (the proxy's when backend_port is set)." },
      { key: "backend_port", type: "int", help: "The model server's own port (127.0.0.1 only)." },
      { key: "max_concurrency", type: "int", help: "Requests the proxy lets through at once (1–100000)." },
      { key: "filter_reasoning", type: "bool", default: false, help: "The proxy strips <think>…</think> and reasoning fields." },
      { key: "aliases", type: "argv", help: "Other names a request may give as `model`, one per line (the service name always works)." },
      { key: "request_timeout_s", type: "float", help: "This service's proxy timeout (s); default: [server] request_timeout_s." },
      { key: "allow_any_model", type: "bool", default: false, help: "Pass any model (and adapters, draft_model) to the server: it may then load it, outside the memory budget." },
    ],
  },
  {
    title: "Generation",
    fields: [
      { key: "max_tokens", type: "int", help: "→ --max-tokens (1–10000000)." },
      { key: "temperature", type: "float", help: "→ --temp (0–5)." },
      { key: "top_p", type: "float", help: "→ --top-p (0–1)." },
      { key: "context_length", type: "int", help: "Used by `mlx-box estimate` for the KV-cache size." },
      { key: "disable_thinking_tags", type: "bool", default: false, help: "true → --chat-template-args '{\"enable_thinking\":false}'." },
      { key: "thinking_budget", type: "int", help: "Kept for the proxy / future use." },
      { key: "frequency_penalty", type: "float", help: "Accepted, not supported by mlx_lm.server (−2–2)." },
      { key: "presence_penalty", type: "float", help: "Accepted, not supported by mlx_lm.server (−2–2)." },
      { key: "batch_size", type: "int", help: "Embedding server: → --batch-size." },
      { key: "max_seq_length", type: "int", help: "Embedding server: → --max-seq-length." },
      { key: "quantization", type: "scalar", help: "Accepted (the original mlx-box's int8 switch): true/false, a number or a string." },
      { key: "default_voice", type: "string", help: "tts (original mlx-box)." },
      { key: "voice", type: "string", help: "tts (original mlx-box)." },
      { key: "language", type: "string", help: "stt (original mlx-box)." },
    ],
  },
  {
    title: "Process",
    fields: [
      { key: "command", type: "argv", help: "argv, one argument per line. Placeholders: {python} {model} {host} {port} {max_tokens}." },
      { key: "python", type: "string", help: "Interpreter for this service only." },
      { key: "env", type: "env", help: "Environment, one NAME=value per line." },
      { key: "cwd", type: "string", help: "Working directory." },
    ],
  },
  {
    title: "Benchmark thresholds (mlx-box doctor)",
    fields: [
      { key: "expect_gen_tok_s", type: "float", help: "chat/ocr: minimum generation tok/s of one request." },
      { key: "expect_ttft_ms", type: "float", help: "chat/ocr: maximum time to first token (ms)." },
      { key: "expect_output_tok_s", type: "float", help: "chat/ocr: minimum output tok/s at the highest concurrency measured." },
      { key: "expect_parallel_efficiency", type: "float", help: "chat/ocr: minimum share of linear scaling across concurrency (0–1)." },
      { key: "expect_inputs_s", type: "float", help: "embedding: minimum inputs/s at the highest concurrency measured." },
    ],
  },
  {
    title: "Supervision",
    fields: [
      { key: "probe", type: "string", suggest: ["chat", "embedding", "tcp", "/health"], help: "Readiness: chat | embedding | tcp | an HTTP path; default by kind." },
      { key: "ready_timeout_s", type: "float", default: 600, help: "Time allowed to get ready (s)." },
      { key: "stop_timeout_s", type: "float", default: 10, help: "SIGTERM, then SIGKILL after this long (s)." },
      { key: "restart", type: "enum", options: ["on-failure", "always", "never"], default: "on-failure", help: "Restart policy." },
      { key: "backoff_max_s", type: "float", default: 60, help: "Restart backoff cap (1–86400 s)." },
      { key: "max_start_failures", type: "int", default: 3, help: "Failures before ever getting ready → failed." },
      { key: "liveness_interval_s", type: "float", default: 10, help: "A cheap GET every this many seconds while ready." },
      { key: "liveness_failures", type: "int", default: 3, help: "This many failures in a row → unhealthy → restart." },
    ],
  },
];

export const SERVICE_FIELDS: FieldSpec[] = SERVICE_GROUPS.flatMap((g) => g.fields);

export const SECTION_FIELDS: Record<string, FieldSpec[]> = {
  server: SERVER_FIELDS,
  app: APP_FIELDS,
  alerts: ALERT_FIELDS,
};

/** The spec of a key path (["app","log_files"], ["services","chat","port"]), if the form has a field for it. */
export function fieldFor(path: string[]): FieldSpec | undefined {
  if (path[0] === "services" && path.length === 3) return SERVICE_FIELDS.find((f) => f.key === path[2]);
  if (path.length === 2) return SECTION_FIELDS[path[0]]?.find((f) => f.key === path[1]);
  return undefined;
}
