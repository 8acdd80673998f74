//! The typed settings: what settings.toml says once parsed and validated (`parse/`).

use mlxbox_api::config::{Expectations, Kind};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// What to do when a server exits on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Restart after any exit, even a clean one.
    Always,
    /// Restart after a crash (non-zero exit or signal) or a failed liveness probe.
    #[default]
    OnFailure,
    /// Never restart; the service goes to `failed` (crash) or `stopped` (clean exit).
    Never,
}

impl RestartPolicy {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "always" => Self::Always,
            "on-failure" | "on_failure" => Self::OnFailure,
            "never" | "no" => Self::Never,
            _ => return None,
        })
    }
}

/// How readiness and liveness are checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "type", content = "path")]
pub enum Probe {
    /// A real 1-token `/v1/chat/completions` request (mlx_lm answers /health before the model loads).
    Chat,
    /// A real one-input `/v1/embeddings` request.
    Embedding,
    /// A real short `/v1/audio/speech` synthesis with the service's model, voice and language
    /// (mlx_audio.server loads the model on its first request).
    Speech,
    /// A real `/v1/audio/transcriptions` of a second of generated audio with the service's model.
    Transcription,
    /// HTTP GET on this path answers 2xx.
    Http(String),
    /// The port accepts a TCP connection.
    Tcp,
}

impl Probe {
    pub fn for_kind(kind: Kind) -> Probe {
        match kind {
            Kind::Chat | Kind::Ocr | Kind::Distributed => Probe::Chat,
            Kind::Embedding => Probe::Embedding,
            Kind::Tts => Probe::Speech,
            Kind::Stt => Probe::Transcription,
            Kind::Command => Probe::Tcp,
        }
    }

    pub fn parse(s: &str) -> Option<Probe> {
        Some(match s {
            "chat" => Probe::Chat,
            "embedding" => Probe::Embedding,
            "speech" => Probe::Speech,
            "transcription" => Probe::Transcription,
            "tcp" => Probe::Tcp,
            p if p.starts_with('/') => Probe::Http(p.to_string()),
            p if p.starts_with("http:") => Probe::Http(p["http:".len()..].to_string()),
            _ => return None,
        })
    }
}

/// A position in settings.toml (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

/// Where each key of a service sits in the file. Never part of equality: editing one service moves the
/// lines of the others, which must not count as a change to them.
#[derive(Debug, Clone, Default)]
pub struct Positions(pub BTreeMap<String, Pos>);

impl PartialEq for Positions {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// One `[services.<name>]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceSpec {
    pub name: String,
    pub kind: Kind,
    /// `enabled = false`, or not launchable (see `disabled_reason`).
    pub enabled: bool,
    /// Why the service cannot be launched (e.g. a tts table with no `command`).
    pub disabled_reason: Option<String>,
    /// Frontend port (the proxy's, when `backend_port` is set).
    pub port: Option<u16>,
    pub backend_port: Option<u16>,
    pub model: Option<String>,
    /// Other names a request may give as `model` on this service's port (its name always works too);
    /// `*` in one is a pattern (`config::alias`).
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Pass any `model` (and `adapters`, `draft_model`) to the server: it may then load whatever a
    /// request names, outside the memory budget. Off by default.
    #[serde(default)]
    pub allow_any_model: bool,
    pub max_tokens: Option<u32>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub frequency_penalty: Option<f64>,
    pub presence_penalty: Option<f64>,
    pub filter_reasoning: bool,
    pub thinking_budget: Option<u32>,
    pub disable_thinking_tags: bool,
    pub batch_size: Option<u32>,
    pub max_seq_length: Option<u32>,
    pub quantization: Option<String>,
    pub context_length: Option<u32>,
    /// tts: the voice of a request that names none (`voice`, or the original mlx-box's `default_voice`).
    #[serde(default)]
    pub default_voice: Option<String>,
    /// tts: the language of a request that names none (`lang_code`); stt: the spoken language
    /// (`language`).
    #[serde(default)]
    pub language: Option<String>,
    pub max_concurrency: Option<u32>,
    /// The proxy's request timeout for this service (else `[server] request_timeout_s`).
    pub request_timeout_s: Option<f64>,
    /// What `mlx-box bench` / `doctor` must measure for this service (`expect_*` keys).
    pub expect: Expectations,
    /// argv template; placeholders `{python} {model} {host} {port} {max_tokens}`.
    pub command: Option<Vec<String>>,
    pub python: Option<String>,
    pub env: BTreeMap<String, String>,
    pub cwd: Option<PathBuf>,
    pub probe: Probe,
    pub ready_timeout_s: f64,
    pub stop_timeout_s: f64,
    pub restart: RestartPolicy,
    pub backoff_max_s: f64,
    pub max_start_failures: u32,
    pub liveness_interval_s: f64,
    pub liveness_failures: u32,
    /// Idle until a request names it; loaded then, unloaded after `idle_stop_s` or to make room.
    #[serde(default)]
    pub on_demand: bool,
    /// Unload an on-demand service after this long with no request in flight; `None`: only to make room.
    #[serde(default)]
    pub idle_stop_s: Option<f64>,
    /// How long a request that loads the service waits for it.
    #[serde(default = "default_load_timeout_s")]
    pub load_timeout_s: f64,
    /// At most one on-demand service of a group runs.
    #[serde(default)]
    pub exclusive_group: Option<String>,
    /// The operator's figure for the service's memory (bytes), over the estimate.
    #[serde(default)]
    pub memory_bytes: Option<u64>,
    /// Past this footprint (bytes) the server is drained and restarted.
    #[serde(default)]
    pub max_footprint_bytes: Option<u64>,
    /// `kind = "distributed"`: its ranks and how `mlx.launch` joins them.
    #[serde(default)]
    pub distributed: Option<DistributedSpec>,
    /// Where keys of this service sit in the file, for messages that point at them.
    #[serde(skip)]
    pub positions: Positions,
}

/// One chat model across ranks (`kind = "distributed"`), launched by `mlx.launch`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DistributedSpec {
    /// Per rank, in order (rank 0 serves the API): where it runs.
    pub ranks: Vec<RankHost>,
    /// `ring` or `jaccl`.
    pub backend: String,
    pub pipeline: bool,
}

/// Where one rank runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RankHost {
    /// This Mac.
    Local,
    /// A Mac of `[hosts]`, reached by ssh at its address (the host part of its `address`).
    Host { name: String, address: String },
}

impl RankHost {
    /// The name `mlx.launch` ssh's into, and the IP its ring connects to (127.0.0.1 here).
    pub fn address(&self) -> &str {
        match self {
            RankHost::Local => "127.0.0.1",
            RankHost::Host { address, .. } => address,
        }
    }
}

fn default_load_timeout_s() -> f64 {
    300.0
}

impl ServiceSpec {
    /// The port the server process itself binds: `backend_port` when there is a proxy in front, else `port`.
    pub fn bind_port(&self) -> Option<u16> {
        self.backend_port.or(self.port)
    }

    /// The key that holds [`bind_port`](Self::bind_port), for messages.
    pub fn bind_port_key(&self) -> &'static str {
        if self.backend_port.is_some() {
            "backend_port"
        } else {
            "port"
        }
    }

    pub fn line_of(&self, key: &str) -> Option<usize> {
        self.positions.0.get(key).map(|p| p.line)
    }
}

/// `[server]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerSettings {
    pub host: String,
    /// Plaintext keys from the file (`mlx-box keys import` moves them into the key store).
    #[serde(skip_serializing)]
    pub api_keys: Vec<String>,
    /// Seconds the proxy waits for a backend to start answering (and, on a stream, between two chunks)
    /// before it gives up with 504. Overridden per service.
    pub request_timeout_s: f64,
    /// The name clients use for this Mac besides localhost (DNS, a reverse proxy): an open loopback
    /// frontend serves requests whose `Host` is a loopback name or this.
    #[serde(default)]
    pub domain_name: Option<String>,
    /// Origins a browser page may call the frontends from (CORS, answered by the proxy). Empty = none.
    #[serde(default)]
    pub cors_origins: Vec<String>,
    /// One endpoint for every service, routed by the request's `model`.
    #[serde(default)]
    pub port: Option<u16>,
    /// The bounds of the OpenAI Responses store (`previous_response_id`).
    #[serde(default = "default_responses")]
    pub responses: ResponsesKept,
}

/// `responses_max_count`, `responses_max_mb`, `responses_keep_days` of `[server]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponsesKept {
    pub max_count: usize,
    pub max_bytes: usize,
    pub keep_s: u64,
}

/// 10,000 responses, 256 MiB, 30 days.
pub const DEFAULT_RESPONSES: ResponsesKept = ResponsesKept {
    max_count: 10_000,
    max_bytes: 256 << 20,
    keep_s: 30 * 24 * 3600,
};

fn default_responses() -> ResponsesKept {
    DEFAULT_RESPONSES
}

impl ServerSettings {
    /// Is `host` a loopback address (or `localhost`)? Then a listener on it is reached from this machine
    /// only.
    pub fn is_loopback(&self) -> bool {
        let host = self.host.trim_matches(['[', ']']);
        host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }

    pub fn new(host: &str) -> Self {
        ServerSettings {
            host: host.into(),
            api_keys: vec![],
            request_timeout_s: DEFAULT_REQUEST_TIMEOUT_S,
            domain_name: None,
            cors_origins: vec![],
            port: None,
            responses: DEFAULT_RESPONSES,
        }
    }
}

/// Default of `request_timeout_s`: a long generation on a big model takes minutes.
pub const DEFAULT_REQUEST_TIMEOUT_S: f64 = 600.0;

/// `[app]`: daemon-wide settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppSettings {
    /// Default interpreter for services (overridden per service by `python`).
    pub python: Option<String>,
    pub log_max_bytes: u64,
    pub log_files: u32,
    pub log_tail_lines: usize,
    pub stop_servers_on_quit: bool,
    pub refuse_over_budget: bool,
    /// The memory the models may use (bytes), over the machine's own figure.
    pub memory_budget_bytes: Option<u64>,
    /// Seconds of uptime after which a crash counts as a fresh first crash (restart at once).
    pub stable_after_s: f64,
    /// Menu-bar app: the least severe alert that makes a desktop notification
    /// ("info" | "warning" | "critical" | "off").
    pub notify_min_severity: String,
    /// Whether the daemon keeps the machine awake (`crate::power`).
    pub prevent_sleep: PreventSleep,
}

/// `[app] prevent_sleep`: when the daemon holds a lock against idle sleep (the display may sleep).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PreventSleep {
    /// While a model server is loaded (a process of ours starting, ready or unhealthy). A request in
    /// flight implies a loaded server, and the idle unload (`idle_stop_s`) already bounds how long an
    /// unused on-demand server stays loaded, so this is also "while serving requests".
    #[default]
    Serving,
    /// While the daemon runs.
    Always,
    /// Never: the machine sleeps as its own settings say.
    Never,
}

impl PreventSleep {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "serving" => Self::Serving,
            "always" => Self::Always,
            "never" => Self::Never,
            _ => return None,
        })
    }
}

impl Default for AppSettings {
    fn default() -> Self {
        AppSettings {
            python: None,
            log_max_bytes: 5 * 1024 * 1024,
            log_files: 3,
            log_tail_lines: 1000,
            stop_servers_on_quit: false,
            refuse_over_budget: false,
            memory_budget_bytes: None,
            stable_after_s: 60.0,
            notify_min_severity: "warning".into(),
            prevent_sleep: PreventSleep::Serving,
        }
    }
}

/// `[metrics]`: where else `/metrics` is served, and whether the proxy times requests for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsSettings {
    /// A TCP address for Prometheus to scrape (keys off loopback); `None`: the control socket only.
    pub listen: Option<std::net::SocketAddr>,
    /// The proxy observes each request into the `vllm:` histograms and counters (false: it does not;
    /// the `mlxbox_*` gauges and the proxy's own counters stay).
    pub requests: bool,
}

impl Default for MetricsSettings {
    fn default() -> Self {
        MetricsSettings {
            listen: None,
            requests: true,
        }
    }
}

/// `[control]`: the remote control API.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ControlSettings {
    /// Where it listens (TLS, tokens); `None`: off.
    pub listen: Option<std::net::SocketAddr>,
}

/// `[hosts.NAME]`: another Mac's daemon, reached over its remote control API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostSpec {
    pub name: String,
    /// HOST:PORT.
    pub address: String,
    /// The pinned SHA-256 fingerprint (normalised: upper-case pairs joined by `:`).
    pub fingerprint: String,
}

/// One member of a pool, as written in `members`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MemberRef {
    /// `SERVICE`: a service of this Mac (through its own front: key scope aside, its model policy,
    /// on-demand load, queue and filter apply).
    Local(String),
    /// `HOST/SERVICE`: a service of a Mac of `[hosts]`, reached on its frontend port.
    Remote { host: String, service: String },
}

impl std::fmt::Display for MemberRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MemberRef::Local(s) => f.write_str(s),
            MemberRef::Remote { host, service } => write!(f, "{host}/{service}"),
        }
    }
}

/// `[pools.NAME]`: one frontend over the same model served by several members.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoolSpec {
    pub name: String,
    /// With their weights (> 0), in file order.
    pub members: Vec<(MemberRef, f64)>,
    pub port: Option<u16>,
    pub aliases: Vec<String>,
    pub affinity: bool,
    pub member_timeout_s: Option<f64>,
    pub max_failures: u32,
    pub probation_s: f64,
}

/// `[alerts]`: thresholds of the alert rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertSettings {
    pub enabled: bool,
    pub swap_warn_mb: f64,
    pub headroom_warn_percent: f64,
    pub cooldown_s: f64,
    /// An alert clears only after its condition has been gone this long (hysteresis in time).
    pub clear_after_s: f64,
    /// A host's link is slow when its round-trip p50 stays above this (ms).
    pub link_rtt_warn_ms: f64,
}

impl Default for AlertSettings {
    fn default() -> Self {
        AlertSettings {
            enabled: true,
            swap_warn_mb: 100.0,
            headroom_warn_percent: 10.0,
            cooldown_s: 300.0,
            clear_after_s: 10.0,
            link_rtt_warn_ms: 2.0,
        }
    }
}

/// A whole, validated settings.toml.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    pub path: PathBuf,
    pub server: ServerSettings,
    pub app: AppSettings,
    pub alerts: AlertSettings,
    pub metrics: MetricsSettings,
    pub control: ControlSettings,
    /// In file order.
    pub hosts: Vec<HostSpec>,
    /// In file order.
    pub services: Vec<ServiceSpec>,
    /// In file order.
    pub pools: Vec<PoolSpec>,
}

impl Settings {
    pub fn service(&self, name: &str) -> Option<&ServiceSpec> {
        self.services.iter().find(|s| s.name == name)
    }

    pub fn host(&self, name: &str) -> Option<&HostSpec> {
        self.hosts.iter().find(|h| h.name == name)
    }
}
