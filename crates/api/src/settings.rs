//! Every key of settings.toml, declared once: its section, type, default, range, help and the service kinds
//! it applies to. The daemon's parser takes its known keys, ranges and enum values from here; the Settings
//! form's schema is generated from it (`ui/src/lib/settingsSchema.generated.ts`, written by this crate's
//! `export_settings_schema` test, checked for drift in CI); a test in the parser holds
//! `config/settings.toml.example` to it key by key.

use crate::config::Kind;
use serde::{Deserialize, Serialize};
use ts_rs::TS;

/// Where a key lives: `[server]`, `[app]`, `[alerts]` or `[services.NAME]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, TS)]
#[ts(export)]
#[serde(rename_all = "lowercase")]
pub enum Section {
    Server,
    App,
    Alerts,
    Metrics,
    Control,
    Hosts,
    Pools,
    Services,
}

/// What a key holds (and which input the form shows for it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[ts(export)]
#[serde(rename_all = "lowercase")]
pub enum KeyType {
    String,
    Int,
    Float,
    Bool,
    /// One of `options`.
    Enum,
    /// A TCP port (1–65535).
    Port,
    /// An array of strings (one per line in the form).
    Argv,
    /// A table of strings (`NAME=value` lines in the form).
    Env,
    /// A boolean, a number or a string (`quantization` of the original mlx-box).
    Scalar,
    /// An API key in plaintext (`api_key`, `api_keys`): not in the form, which offers the key store.
    Secret,
}

/// A default as written in the file.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DefaultValue {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(&'static str),
}

/// One key of settings.toml.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    pub section: Section,
    pub name: &'static str,
    pub ty: KeyType,
    /// The Settings form's group of a service key ("" for the other sections).
    pub group: &'static str,
    pub default: DefaultValue,
    /// Inclusive range of a number.
    pub range: Option<(f64, f64)>,
    /// A value to show in an error's hint (`for example `key = …``).
    pub example: &'static str,
    /// The values of an enum.
    pub options: &'static [&'static str],
    /// Suggestions for a free string.
    pub suggest: &'static [&'static str],
    /// Service kinds it applies to; empty = every kind.
    pub kinds: &'static [Kind],
    /// What an absent key means when there is no fixed default.
    pub absent: Option<&'static str>,
    /// Accepted (the original mlx-box's files have it) but not used: why, for `validate`'s note.
    pub unused: Option<&'static str>,
    pub help: &'static str,
}

const fn key(section: Section, name: &'static str, ty: KeyType, help: &'static str) -> Key {
    Key {
        section,
        name,
        ty,
        group: "",
        default: DefaultValue::None,
        range: None,
        example: "",
        options: &[],
        suggest: &[],
        kinds: &[],
        absent: None,
        unused: None,
        help,
    }
}

impl Key {
    const fn default(mut self, d: DefaultValue) -> Key {
        self.default = d;
        self
    }
    const fn range(mut self, min: f64, max: f64, example: &'static str) -> Key {
        self.range = Some((min, max));
        self.example = example;
        self
    }
    const fn options(mut self, o: &'static [&'static str]) -> Key {
        self.options = o;
        self
    }
    const fn suggest(mut self, s: &'static [&'static str]) -> Key {
        self.suggest = s;
        self
    }
    const fn kinds(mut self, k: &'static [Kind]) -> Key {
        self.kinds = k;
        self
    }
    const fn group(mut self, g: &'static str) -> Key {
        self.group = g;
        self
    }
    const fn absent(mut self, a: &'static str) -> Key {
        self.absent = Some(a);
        self
    }
    const fn unused(mut self, why: &'static str) -> Key {
        self.unused = Some(why);
        self
    }

    /// Whether it applies to a service of `kind`.
    pub fn applies_to(&self, kind: Kind) -> bool {
        self.kinds.is_empty() || self.kinds.contains(&kind)
    }
}

use DefaultValue::{Bool as B, Float as F, Int as I, Str as S};
use KeyType::{Argv, Bool, Enum, Env, Float, Int, Port, Scalar, Secret, String as Str};
use Section::{Alerts, App, Control, Hosts, Metrics, Pools, Server, Services};

const CHATTY: &[Kind] = &[Kind::Chat, Kind::Ocr, Kind::Command, Kind::Distributed];
const SERVER: &str = "Server";
const GENERATION: &str = "Generation";
const PROCESS: &str = "Process";
const THRESHOLDS: &str = "Benchmark thresholds (mlx-box doctor)";
const SUPERVISION: &str = "Supervision";
const ON_DEMAND: &str = "On demand (memory budget)";
const DISTRIBUTED: &str = "One model across Macs (kind = distributed)";

/// Every key, in the order the form shows them.
pub const KEYS: &[Key] = &[
    // [server]
    key(Server, "host", Str, "Address services without a backend_port bind to: 127.0.0.1 = this Mac only, 0.0.0.0 = every interface.")
        .default(S("127.0.0.1"))
        .suggest(&["127.0.0.1", "0.0.0.0"]),
    key(Server, "request_timeout_s", Float, "The proxy waits this long for a backend to start answering (and between two chunks of a stream), then 504 (0.1–86400 s). Per service too.")
        .default(F(600.0))
        .range(0.1, 86_400.0, "600"),
    key(Server, "port", Port, "One endpoint: the OpenAI API of every service with a backend_port on this port, routed by the request's `model` (service name, model id or alias); GET /v1/models lists them. Off when absent."),
    key(Server, "cors_origins", Argv, "Web pages (origins, e.g. http://localhost:3000) that may call the frontend ports from a browser, one per line. Empty: none."),
    key(Server, "domain_name", Str, "This Mac's name besides localhost: an open loopback frontend serves requests whose Host is a loopback name or this."),
    key(Server, "letsencrypt_email", Str, "Kept for the original mlx-box; not used by mlx-box.")
        .unused("mlx-box gets no certificates; a TLS proxy in front of it (Caddy, nginx) does"),
    key(Server, "responses_max_count", Int, "OpenAI Responses kept for previous_response_id and GET /v1/responses/{id} (the oldest go first; 0: none kept, whatever `store` asks).")
        .default(I(10_000))
        .range(0.0, 1_000_000.0, "10000"),
    key(Server, "responses_max_mb", Float, "The kept Responses' size on disk and in memory at most (MB).")
        .default(F(256.0))
        .range(0.0, 1_000_000.0, "256"),
    key(Server, "responses_keep_days", Float, "A kept Response is removed after this many days.")
        .default(F(30.0))
        .range(0.001, 3650.0, "30"),
    key(Server, "api_key", Secret, "An API key in plaintext (the original mlx-box's); `mlx-box keys import` moves it into the hashed key store."),
    key(Server, "api_keys", Secret, "API keys in plaintext; `mlx-box keys import` moves them into the hashed key store."),
    // [app]
    key(App, "python", Str, "Interpreter for services that name none (a venv with mlx-lm). DefaultValue: python3 on PATH."),
    key(App, "log_max_bytes", Int, "Rotate a service's log at this size (bytes, ≥ 4096).")
        .default(I(5_242_880))
        .range(4096.0, i64::MAX as f64, "5242880"),
    key(App, "log_files", Int, "Log files kept per service in all (1–100).")
        .default(I(3))
        .range(1.0, 100.0, "3"),
    key(App, "log_tail_lines", Int, "Lines of each log kept in memory (10–100000).")
        .default(I(1000))
        .range(10.0, 100_000.0, "1000"),
    key(App, "stable_after_s", Float, "Ready this long → the restart backoff resets (1–86400 s).")
        .default(F(60.0))
        .range(1.0, 86_400.0, "60"),
    key(App, "stop_servers_on_quit", Bool, "Stop every server when you quit the menu-bar app.").default(B(false)),
    key(App, "refuse_over_budget", Bool, "Refuse to start services whose estimated memory exceeds the budget.").default(B(false)),
    key(App, "memory_budget_gb", Float, "The memory the models may use (GB). Default: the GPU wired limit (iogpu.wired_limit_mb) or Metal's working set; elsewhere physical memory.")
        .range(0.001, 1_000_000.0, "192"),
    key(App, "notify_min_severity", Enum, "Desktop notifications for alerts this severe or worse.")
        .default(S("warning"))
        .options(&["info", "warning", "critical", "off"]),
    key(App, "prevent_sleep", Enum, "Keep the machine from sleeping (the display may sleep): \"serving\" while a model server is loaded (starting or ready), \"always\" while the daemon runs, \"never\".")
        .default(S("serving"))
        .options(&["serving", "always", "never"]),
    // [alerts]
    key(Alerts, "enabled", Bool, "Raise memory, swap and thermal alerts.").default(B(true)),
    key(Alerts, "swap_warn_mb", Float, "Warn when swap use passes this (MB) and is still growing.")
        .default(F(100.0))
        .range(0.0, 1e9, "100"),
    key(Alerts, "headroom_warn_percent", Float, "Warn when free memory falls below this share of RAM (0–100 %).")
        .default(F(10.0))
        .range(0.0, 100.0, "10"),
    key(Alerts, "cooldown_s", Float, "A cleared alert does not notify again within this time (s).")
        .default(F(300.0))
        .range(0.0, 86_400.0, "300"),
    key(Alerts, "clear_after_s", Float, "An alert clears once its condition has been gone this long (s).")
        .default(F(10.0))
        .range(0.0, 86_400.0, "10"),
    key(Alerts, "link_rtt_warn_ms", Float, "Warn when the round trip to a [hosts] Mac stays above this (ms; a Thunderbolt bridge is well under 1).")
        .default(F(2.0))
        .range(0.05, 60_000.0, "2"),
    // [metrics]
    key(Metrics, "listen", Str, "Also serve GET /metrics (Prometheus, vLLM's names) on this address, e.g. 127.0.0.1:9464. It is always on the control socket. Off loopback every scrape needs an API key (mlx-box keys add --service metrics).")
        .suggest(&["127.0.0.1:9464"]),
    key(Metrics, "requests", Bool, "Time every proxied request for the vllm: metrics (TTFT, ITL, E2E, queue, tokens). false: not measured; the mlxbox_* gauges stay.")
        .default(B(true)),
    // [control]
    key(Control, "listen", Str, "Serve the control API to other Macs on this address (TLS, access tokens: mlx-box tokens add), e.g. 0.0.0.0:9443. Off when absent.")
        .suggest(&["0.0.0.0:9443", "127.0.0.1:9443"]),
    // [hosts.NAME]: other Macs this one shows and drives (mlx-box hosts add NAME ADDRESS)
    key(Hosts, "address", Str, "The host's [control] listen address, HOST:PORT.").suggest(&["studio-2.local:9443"]),
    key(Hosts, "fingerprint", Str, "SHA-256 fingerprint of its certificate, as its `mlx-box control info` shows: the connection is refused when it differs."),
    // [pools.NAME]: one endpoint over the same model served by several members
    key(Pools, "members", Argv, "The services it spreads requests over, one per line: SERVICE (this Mac) or HOST/SERVICE (a Mac of [hosts]).")
        .suggest(&["chat", "studio-2/chat"]),
    key(Pools, "port", Port, "The pool's frontend port (it is also reached through [server] port by its name)."),
    key(Pools, "weights", Argv, "A weight per member, in the order of members (default 1 each): a member with weight 2 takes twice the outstanding requests of one with 1."),
    key(Pools, "aliases", Argv, "Other names a request may give as `model` (the pool's name always works); `*` matches any run of characters (`claude-*`), the most specific pattern wins."),
    key(Pools, "affinity", Bool, "Send the next turn of a conversation (the same leading messages) to the member that served it, while it is healthy and not overloaded: its prompt cache is reused.")
        .default(B(true)),
    key(Pools, "member_timeout_s", Float, "How long a member may take to start answering before the request goes to another member (s); default: [server] request_timeout_s.")
        .range(0.1, 86_400.0, "120"),
    key(Pools, "max_failures", Int, "Consecutive failures (refused, 5xx, timeout) that take a member out of the pool (1–100).")
        .default(I(3))
        .range(1.0, 100.0, "3"),
    key(Pools, "probation_s", Float, "How long a failing member stays out before it is tried again, one request at a time (s; doubles while it keeps failing, up to 16×).")
        .default(F(10.0))
        .range(0.1, 3600.0, "10"),
    // [services.NAME]: server
    key(Services, "kind", Enum, "What it serves; inferred from the name or `command` when absent.")
        .group(SERVER)
        .options(Kind::NAMES)
        .absent("(inferred from the name)"),
    key(Services, "enabled", Bool, "false: listed, never started.").group(SERVER).default(B(true)),
    key(Services, "model", Str, "Hugging Face id or local path (required for chat, embedding, ocr).").group(SERVER),
    key(Services, "port", Port, "Frontend port (the proxy's when backend_port is set).").group(SERVER),
    key(Services, "backend_port", Port, "The model server's own port (127.0.0.1 only).").group(SERVER),
    key(Services, "max_concurrency", Int, "Requests the proxy lets through at once (1–100000).")
        .group(SERVER)
        .range(1.0, 100_000.0, "4"),
    key(Services, "filter_reasoning", Bool, "The proxy strips <think>…</think> and reasoning fields.")
        .group(SERVER)
        .default(B(false)),
    key(Services, "aliases", Argv, "Other names a request may give as `model`, one per line (the service name always works); `*` matches any run of characters (`claude-*`), the most specific pattern wins.").group(SERVER),
    key(Services, "request_timeout_s", Float, "This service's proxy timeout (s); default: [server] request_timeout_s.")
        .group(SERVER)
        .range(0.1, 86_400.0, "600"),
    key(Services, "allow_any_model", Bool, "Pass any model (and adapters, draft_model) to the server: it may then load it, outside the memory budget.")
        .group(SERVER)
        .default(B(false)),
    // kind = "distributed"
    key(Services, "hosts", Argv, "The ranks, one per line: `local` (this Mac) or a name from [hosts]; a name repeated runs that many ranks there. Rank 0 (the first) serves the API.")
        .group(DISTRIBUTED)
        .kinds(&[Kind::Distributed])
        .suggest(&["local", "studio-2"]),
    key(Services, "backend", Enum, "mlx.launch's backend: ring (Ethernet, Thunderbolt over TCP) or jaccl (Thunderbolt 5 RDMA).")
        .group(DISTRIBUTED)
        .kinds(&[Kind::Distributed])
        .options(&["ring", "jaccl"])
        .default(S("ring")),
    key(Services, "pipeline", Bool, "Split the model by layers (mlx_lm.server --pipeline) instead of tensor parallel.")
        .group(DISTRIBUTED)
        .kinds(&[Kind::Distributed])
        .default(B(false)),
    // generation
    key(Services, "max_tokens", Int, "→ --max-tokens (1–10000000).")
        .group(GENERATION)
        .range(1.0, 10_000_000.0, "4096"),
    key(Services, "temperature", Float, "→ --temp (0–5).")
        .group(GENERATION)
        .range(0.0, 5.0, "0.6"),
    key(Services, "top_p", Float, "→ --top-p (0–1).")
        .group(GENERATION)
        .range(0.0, 1.0, "0.95"),
    key(Services, "context_length", Int, "The context (tokens): ocr → --max-kv-size of mlx_vlm.server; used by `mlx-box estimate` for the KV-cache size (mlx_lm.server has no such option).")
        .group(GENERATION)
        .range(1.0, 100_000_000.0, "8192"),
    key(Services, "disable_thinking_tags", Bool, "true → --chat-template-args '{\"enable_thinking\":false}'.")
        .group(GENERATION)
        .default(B(false)),
    key(Services, "thinking_budget", Int, "Most tokens inside a thinking block: ocr → --thinking-budget of mlx_vlm.server, which closes the block there and lets the model answer. mlx_lm.server (chat) cannot enforce one: validate says so.")
        .group(GENERATION)
        .range(0.0, 10_000_000.0, "8192"),
    key(Services, "frequency_penalty", Float, "Accepted, not supported by mlx_lm.server (−2–2).")
        .group(GENERATION)
        .range(-2.0, 2.0, "0.0")
        .unused("mlx_lm.server has no such option, so it is not passed"),
    key(Services, "presence_penalty", Float, "Accepted, not supported by mlx_lm.server (−2–2).")
        .group(GENERATION)
        .range(-2.0, 2.0, "0.0")
        .unused("mlx_lm.server has no such option, so it is not passed"),
    key(Services, "batch_size", Int, "Embedding server: → --batch-size.")
        .group(GENERATION)
        .range(1.0, 1_000_000.0, "64"),
    key(Services, "max_seq_length", Int, "Embedding server: → --max-seq-length.")
        .group(GENERATION)
        .range(1.0, 10_000_000.0, "1024"),
    key(Services, "quantization", Scalar, "Accepted (the original mlx-box's int8 switch): true/false, a number or a string.").group(GENERATION),
    key(Services, "default_voice", Str, "tts: the voice of a request that names none (e.g. \"serena\").").group(GENERATION),
    key(Services, "voice", Str, "tts: the same as default_voice.").group(GENERATION),
    key(Services, "language", Str, "tts: the language of a request that names none (Qwen3-TTS: \"auto\", \"english\"…); stt: the spoken language (\"en\").").group(GENERATION),
    // process
    key(Services, "command", Argv, "argv, one argument per line. Placeholders: {python} {model} {host} {port} {max_tokens}.").group(PROCESS),
    key(Services, "python", Str, "Interpreter for this service only.").group(PROCESS),
    key(Services, "env", Env, "Environment, one NAME=value per line.").group(PROCESS),
    key(Services, "cwd", Str, "Working directory.").group(PROCESS),
    // benchmark thresholds
    key(Services, "expect_gen_tok_s", Float, "chat/ocr: minimum generation tok/s of one request.")
        .group(THRESHOLDS)
        .range(0.0, 1e6, "50")
        .kinds(CHATTY),
    key(Services, "expect_ttft_ms", Float, "chat/ocr: maximum time to first token (ms).")
        .group(THRESHOLDS)
        .range(0.0, 1e7, "500")
        .kinds(CHATTY),
    key(Services, "expect_output_tok_s", Float, "chat/ocr: minimum output tok/s at the highest concurrency measured.")
        .group(THRESHOLDS)
        .range(0.0, 1e7, "120")
        .kinds(CHATTY),
    key(Services, "expect_parallel_efficiency", Float, "chat/ocr: minimum share of linear scaling across concurrency (0–1).")
        .group(THRESHOLDS)
        .range(0.0, 1.0, "0.5")
        .kinds(CHATTY),
    key(Services, "expect_inputs_s", Float, "embedding: minimum inputs/s at the highest concurrency measured.")
        .group(THRESHOLDS)
        .range(0.0, 1e9, "200")
        .kinds(&[Kind::Embedding]),
    key(Services, "expect_rtf", Float, "tts/stt: maximum real-time factor (processing time / audio length, p50 of a request alone); below 1 is faster than real time.")
        .group(THRESHOLDS)
        .range(0.0, 1000.0, "0.5")
        .kinds(&[Kind::Tts, Kind::Stt]),
    // on demand
    key(Services, "on_demand", Bool, "Idle until a request names it, then loaded (the request waits); unloaded after idle_stop_s, or to make room for another model (least recently used first). Needs backend_port.")
        .group(ON_DEMAND)
        .default(B(false)),
    key(Services, "idle_stop_s", Float, "An on-demand service with no request in flight for this long is unloaded (s). Absent: only to make room.")
        .group(ON_DEMAND)
        .range(1.0, 31_536_000.0, "900"),
    key(Services, "load_timeout_s", Float, "A request that loads the service waits this long at most for it, then 503 (s).")
        .group(ON_DEMAND)
        .default(F(300.0))
        .range(1.0, 86_400.0, "300"),
    key(Services, "exclusive_group", Str, "At most one on-demand service of this group runs: loading one unloads the others (after their requests finish).")
        .group(ON_DEMAND),
    key(Services, "max_footprint_gb", Float, "When the server's memory passes this (GB; mlx_lm.server's buffer pool only grows), it is drained — new requests wait — and restarted, with an info alert.")
        .group(ON_DEMAND)
        .range(0.01, 1_000_000.0, "48"),
    key(Services, "memory_gb", Float, "What this service takes in memory (GB), for the budget, when the estimate cannot tell (a command) or is off.")
        .group(ON_DEMAND)
        .range(0.0, 1_000_000.0, "8"),
    // supervision
    key(Services, "probe", Str, "Readiness: chat | embedding | tcp | an HTTP path; default by kind.")
        .group(SUPERVISION)
        .suggest(&["chat", "embedding", "tcp", "/health"]),
    key(Services, "ready_timeout_s", Float, "Time allowed to get ready (s).")
        .group(SUPERVISION)
        .default(F(600.0))
        .range(0.1, 86_400.0, "600"),
    key(Services, "stop_timeout_s", Float, "SIGTERM, then SIGKILL after this long (s).")
        .group(SUPERVISION)
        .default(F(10.0))
        .range(0.0, 3_600.0, "10"),
    key(Services, "restart", Enum, "Restart policy.")
        .group(SUPERVISION)
        .default(S("on-failure"))
        .options(&["on-failure", "always", "never"]),
    key(Services, "backoff_max_s", Float, "Restart backoff cap (1–86400 s).")
        .group(SUPERVISION)
        .default(F(60.0))
        .range(1.0, 86_400.0, "60"),
    key(Services, "max_start_failures", Int, "Failures before ever getting ready → failed.")
        .group(SUPERVISION)
        .default(I(3))
        .range(1.0, 1000.0, "3"),
    key(Services, "liveness_interval_s", Float, "A cheap GET every this many seconds while ready.")
        .group(SUPERVISION)
        .default(F(10.0))
        .range(0.1, 86_400.0, "10"),
    key(Services, "liveness_failures", Int, "This many failures in a row → unhealthy → restart.")
        .group(SUPERVISION)
        .default(I(3))
        .range(1.0, 1000.0, "3"),
];

/// The declaration of `name` in `section`.
/// The benchmark thresholds (`expect_*`) a service of `kind` takes.
pub fn expect_keys(kind: Kind) -> Vec<&'static str> {
    KEYS.iter()
        .filter(|k| {
            k.section == Section::Services && k.name.starts_with("expect_") && k.applies_to(kind)
        })
        .map(|k| k.name)
        .collect()
}

pub fn find(section: Section, name: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.section == section && k.name == name)
}

/// Every key of a section, in order.
pub fn names(section: Section) -> Vec<&'static str> {
    KEYS.iter()
        .filter(|k| k.section == section)
        .map(|k| k.name)
        .collect()
}

/// A key as the Settings form receives it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct KeySpec {
    pub section: Section,
    pub key: String,
    #[serde(rename = "type")]
    #[ts(rename = "type")]
    pub ty: KeyType,
    pub group: String,
    #[ts(type = "string | number | boolean | null")]
    pub default: Option<serde_json::Value>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub options: Vec<String>,
    pub suggest: Vec<String>,
    pub kinds: Vec<Kind>,
    pub absent: Option<String>,
    pub help: String,
}

/// The whole schema for the form.
pub fn schema() -> Vec<KeySpec> {
    let strs = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
    KEYS.iter()
        .map(|k| KeySpec {
            section: k.section,
            key: k.name.into(),
            ty: k.ty,
            group: k.group.into(),
            default: match k.default {
                DefaultValue::None => None,
                DefaultValue::Bool(b) => Some(b.into()),
                DefaultValue::Int(i) => Some(i.into()),
                DefaultValue::Float(f) => Some(f.into()),
                DefaultValue::Str(s) => Some(s.into()),
            },
            // A bound beyond what a JavaScript number holds exactly means "no bound" to the form.
            min: k.range.map(|r| r.0).filter(|x| x.abs() < 9e15),
            max: k.range.map(|r| r.1).filter(|x| x.abs() < 9e15),
            options: strs(k.options),
            suggest: strs(k.suggest),
            kinds: k.kinds.to_vec(),
            absent: k.absent.map(str::to_string),
            help: k.help.into(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unique_and_well_formed() {
        for (i, k) in KEYS.iter().enumerate() {
            assert!(
                !KEYS[..i]
                    .iter()
                    .any(|o| o.section == k.section && o.name == k.name),
                "{} declared twice",
                k.name
            );
            assert_eq!(
                k.section == Section::Services,
                !k.group.is_empty(),
                "{}",
                k.name
            );
            assert_eq!(k.ty == KeyType::Enum, !k.options.is_empty(), "{}", k.name);
            if let Some((lo, hi)) = k.range {
                assert!(lo <= hi && !k.example.is_empty(), "{}", k.name);
                assert!(matches!(k.ty, KeyType::Int | KeyType::Float), "{}", k.name);
            }
            assert!(!k.help.is_empty(), "{}", k.name);
        }
    }

    /// Writes the Settings form's schema (`ui/src/lib/settingsSchema.generated.ts`); CI fails when the
    /// committed file differs (scripts/test.sh), as for the ts-rs bindings.
    #[test]
    fn export_settings_schema() {
        let json = serde_json::to_string_pretty(&schema()).expect("schema serialises");
        let text = format!(
            "// Generated from crates/api/src/settings.rs by `cargo test -p mlxbox-api export_settings_schema`.\n// Do not edit: change the Rust declaration.\nimport type {{ KeySpec }} from \"../bindings/KeySpec\";\n\nexport const SETTINGS_SCHEMA: KeySpec[] = {json};\n"
        );
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../ui/src/lib/settingsSchema.generated.ts");
        if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            std::fs::write(&path, text).expect("write the generated schema");
        }
    }
}
