// The Settings window's fields, made from the settings schema that the daemon's parser also uses
// (crates/api/src/settings.rs → settingsSchema.generated.ts). The daemon validates; these only choose the
// input, say in words what a key is, and show the defaults and ranges as help.
import type { KeySpec } from "../bindings/KeySpec";
import type { Kind } from "../bindings/Kind";
import type { Section } from "../bindings/Section";
import type { JsonValue } from "../bindings/serde_json/JsonValue";
import { SETTINGS_SCHEMA } from "./settingsSchema.generated";

export type FieldType = "string" | "int" | "float" | "bool" | "enum" | "argv" | "env" | "scalar";

export interface FieldSpec {
  key: string;
  type: FieldType;
  /** What a person calls it ("Request timeout (s)"); the TOML key is shown beside it. */
  label: string;
  options?: string[];
  /** Suggestions for a free string (a datalist). */
  suggest?: string[];
  default?: string | number | boolean;
  /** What an absent enum means when there is no fixed default. */
  absent?: string;
  /** The service kinds the key applies to; empty: every kind. */
  kinds: Kind[];
  /** A filesystem path: the field gets a Choose… button for a file or a folder. */
  path?: PathKind;
  help: string;
}

export interface Group {
  title: string;
  fields: FieldSpec[];
}

/** Units a key's name ends with, as a label writes them. */
const UNITS: [suffix: string, unit: string][] = [
  ["_ms", "ms"],
  ["_s", "s"],
  ["_mb", "MB"],
  ["_gb", "GB"],
  ["_pct", "%"],
  ["_percent", "%"],
  ["_bytes", "bytes"],
  ["_days", "days"],
];

/** Labels that the words of the key do not make well; `section.key` wins over `key`. */
const LABELS: Record<string, string> = {
  "server.host": "Bind address",
  "server.port": "One endpoint port",
  cors_origins: "CORS origins",
  letsencrypt_email: "Let's Encrypt email",
  responses_max_count: "Responses kept, at most",
  responses_max_mb: "Responses' size, at most (MB)",
  responses_keep_days: "Keep a response for (days)",
  python: "Python interpreter",
  log_max_bytes: "Rotate a log at (bytes)",
  log_files: "Log files kept",
  log_tail_lines: "Log lines in memory",
  stable_after_s: "Stable after ready (s)",
  refuse_over_budget: "Refuse to start over budget",
  notify_min_severity: "Notify from severity",
  "alerts.enabled": "Raise alerts",
  swap_warn_mb: "Warn at swap (MB)",
  headroom_warn_percent: "Warn below free memory (%)",
  link_rtt_warn_ms: "Warn at link round trip (ms)",
  listen: "Listen address",
  "metrics.requests": "Time each request",
  "pools.members": "Members",
  "pools.port": "Pool port",
  member_timeout_s: "Member answer timeout (s)",
  "services.hosts": "Ranks (hosts)",
  top_p: "Top-p",
  disable_thinking_tags: "Thinking off",
  max_seq_length: "Max sequence length",
  env: "Environment",
  cwd: "Working directory",
  expect_gen_tok_s: "Min generation (tok/s)",
  expect_ttft_ms: "Max time to first token (ms)",
  expect_output_tok_s: "Min output at top concurrency (tok/s)",
  expect_parallel_efficiency: "Min parallel efficiency",
  expect_inputs_s: "Min inputs per second",
  expect_rtf: "Max real-time factor",
  idle_stop_s: "Unload when idle for (s)",
  max_footprint_gb: "Restart above footprint (GB)",
  memory_gb: "Memory taken (GB)",
  probe: "Readiness probe",
  restart: "Restart policy",
  backoff_max_s: "Restart backoff, at most (s)",
  max_start_failures: "Start failures before failed",
  liveness_interval_s: "Liveness check every (s)",
  liveness_failures: "Liveness failures before restart",
};

/** A key's words, capitalized, with its unit suffix as "(s)", "(MB)"…: `request_timeout_s` → "Request timeout (s)". */
export function labelOf(key: string, section?: string): string {
  const fixed = (section && LABELS[`${section}.${key}`]) ?? LABELS[key];
  if (fixed) return fixed;
  const unit = UNITS.find(([suffix]) => key.endsWith(suffix) && key.length > suffix.length);
  const words = (unit ? key.slice(0, -unit[0].length) : key).split("_").join(" ");
  const text = words.charAt(0).toUpperCase() + words.slice(1);
  return unit ? `${text} (${unit[1]})` : text;
}

export type PathKind = "file" | "directory";
/** The keys that hold a filesystem path (by their help: an interpreter, a local model folder, a working
 *  directory). The schema has no log or state directory keys: those are the daemon's `--state-dir`. */
export const PATH_KEYS: Record<string, PathKind> = {
  "app.python": "file",
  "services.python": "file",
  "services.model": "directory",
  "services.cwd": "directory",
};

function field(k: KeySpec): FieldSpec {
  const f: FieldSpec = {
    key: k.key,
    type: k.type === "port" ? "int" : (k.type as FieldType),
    label: labelOf(k.key, k.section),
    kinds: k.kinds,
    help: k.help,
  };
  if (k.options.length) f.options = k.options;
  if (k.suggest.length) f.suggest = k.suggest;
  if (k.default != null) f.default = k.default;
  if (k.absent != null) f.absent = k.absent;
  const path = PATH_KEYS[`${k.section}.${k.key}`];
  if (path) f.path = path;
  return f;
}

const inSection = (section: Section) => SETTINGS_SCHEMA.filter((k) => k.section === section);
const fieldsOf = (section: Section) =>
  inSection(section)
    .filter((k) => k.type !== "secret")
    .map(field);

export const SERVER_FIELDS: FieldSpec[] = fieldsOf("server");
/** [server] keys shown as a note only (the keyring holds API keys). */
export const SERVER_SECRET_KEYS = inSection("server")
  .filter((k) => k.type === "secret")
  .map((k) => k.key);
export const APP_FIELDS: FieldSpec[] = fieldsOf("app");
export const ALERT_FIELDS: FieldSpec[] = fieldsOf("alerts");
export const METRICS_FIELDS: FieldSpec[] = fieldsOf("metrics");
export const CONTROL_FIELDS: FieldSpec[] = fieldsOf("control");
/** The keys of one [hosts.NAME] table. */
export const HOST_FIELDS: FieldSpec[] = fieldsOf("hosts");
export const POOL_FIELDS: FieldSpec[] = fieldsOf("pools");
export const KINDS = (SETTINGS_SCHEMA.find((k) => k.section === "services" && k.key === "kind")?.options ?? []) as Kind[];

/** The service keys by the schema's groups, in its order. */
export const SERVICE_GROUPS: Group[] = inSection("services").reduce<Group[]>((groups, k) => {
  const last = groups[groups.length - 1];
  if (last && last.title === k.group) last.fields.push(field(k));
  else groups.push({ title: k.group, fields: [field(k)] });
  return groups;
}, []);

export const SERVICE_FIELDS: FieldSpec[] = SERVICE_GROUPS.flatMap((g) => g.fields);

export const SECTION_FIELDS: Record<string, FieldSpec[]> = {
  server: SERVER_FIELDS,
  app: APP_FIELDS,
  alerts: ALERT_FIELDS,
  metrics: METRICS_FIELDS,
  control: CONTROL_FIELDS,
};

/** The spec of a key path (["app","log_files"], ["services","chat","port"]), if the form has a field for it. */
export function fieldFor(path: string[]): FieldSpec | undefined {
  if (path[0] === "services" && path.length === 3) return SERVICE_FIELDS.find((f) => f.key === path[2]);
  if (path[0] === "hosts" && path.length === 3) return HOST_FIELDS.find((f) => f.key === path[2]);
  if (path[0] === "pools" && path.length === 3) return POOL_FIELDS.find((f) => f.key === path[2]);
  if (path.length === 2) return SECTION_FIELDS[path[0]]?.find((f) => f.key === path[1]);
  return undefined;
}

/** Whether a service key means anything for a service of `kind`. */
export const appliesTo = (f: FieldSpec, kind: Kind): boolean => f.kinds.length === 0 || f.kinds.includes(kind);

/** The kind an absent `kind` stands for (the schema's "inferred from the name"): as Kind::infer in
 *  crates/api/src/config.rs decides it. */
export function inferKind(name: string, hasCommand: boolean): Kind {
  const n = name.toLowerCase();
  if (n.includes("embed")) return "embedding";
  if (["ocr", "vision", "vlm"].some((w) => n.includes(w))) return "ocr";
  if (["tts", "speech"].some((w) => n.includes(w))) return "tts";
  if (["whisper", "stt", "transcri"].some((w) => n.includes(w))) return "stt";
  return hasCommand ? "command" : "chat";
}

/** A service's kind: its `kind` when it names one, else the inferred one (as the daemon reads it). */
export function kindOf(name: string, table: Record<string, JsonValue | undefined>): { kind: Kind; inferred: boolean } {
  const k = table.kind;
  if (typeof k === "string" && (KINDS as string[]).includes(k)) return { kind: k as Kind, inferred: false };
  return { kind: inferKind(name, table.command != null), inferred: true };
}

/** What the kind picker says of each kind. */
export const KIND_TITLES: Record<Kind, string> = {
  chat: "Chat (mlx_lm.server)",
  embedding: "Embeddings",
  ocr: "Vision / OCR (mlx_vlm.server)",
  tts: "Text to speech (mlx-audio)",
  stt: "Speech to text (mlx-audio)",
  command: "Your own command",
  distributed: "One model across Macs (mlx.launch)",
};

/** Example models, from the validator's hints (crates/core/src/config/parse/service.rs) and the original
 *  mlx-box's settings. */
const EXAMPLE_MODEL: Partial<Record<Kind, string>> = {
  chat: "mlx-community/Qwen3-0.6B-4bit",
  embedding: "Qwen/Qwen3-Embedding-0.6B",
  ocr: "mlx-community/olmOCR-2-7B-1025-mlx-8bit",
  tts: "mlx-community/Qwen3-TTS-12Hz-0.6B-CustomVoice-8bit",
  stt: "mlx-community/whisper-large-v3-turbo-asr-fp16",
  distributed: "mlx-community/Qwen3-0.6B-4bit",
};

/** A new service's table: what its kind needs to validate and start (a model, a port; a command for
 *  `command`, two ranks for `distributed`, a voice for `tts`), as examples to change. */
export function newService(kind: Kind, port: number, hosts: string[]): Record<string, JsonValue> {
  const t: Record<string, JsonValue> = { kind };
  const model = EXAMPLE_MODEL[kind];
  if (model) t.model = model;
  t.port = port;
  if (kind === "command") t.command = ["{python}", "your-server.py", "--port", "{port}"];
  // Two ranks: this Mac and the first [hosts] Mac, or this Mac twice (to try it on one Mac).
  if (kind === "distributed") t.hosts = ["local", hosts[0] ?? "local"];
  if (kind === "tts") t.default_voice = "serena";
  return t;
}

/** The lowest port from 8080 that nothing in the settings uses (a service's `port` or `backend_port`, a
 *  pool's `port`, the one endpoint's). */
export function freePort(doc: Record<string, JsonValue | undefined> | null): number {
  const used = new Set<number>();
  const tables = (name: string) => Object.values(isObj(doc?.[name]) ? (doc![name] as Record<string, JsonValue>) : {}).filter(isObj);
  for (const t of [...tables("services"), ...tables("pools")])
    for (const k of ["port", "backend_port"]) if (typeof t[k] === "number") used.add(t[k] as number);
  const server = doc?.server;
  if (isObj(server) && typeof server.port === "number") used.add(server.port);
  let p = 8080;
  while (used.has(p)) p++;
  return p;
}

/** Why `name` cannot name a new service (null: it can). The daemon's rule: letters, digits, `-`, `_`. */
export function serviceNameError(name: string, taken: string[]): string | null {
  if (name === "") return "Give it a name.";
  if (!/^[A-Za-z0-9_-]+$/.test(name)) return "Only letters, digits, - and _ (it names log files and CLI arguments).";
  if (taken.includes(name)) return `There is a service ${name} already.`;
  if (name === "ssh") return "[services.ssh] is the original mlx-box's SSH port, not a model server.";
  return null;
}

export const isObj = (v: unknown): v is Record<string, JsonValue> => v != null && typeof v === "object" && !Array.isArray(v);
