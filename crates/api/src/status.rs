//! The types of the control API: what `status --json` prints and what the event stream carries.
//! The menu-bar app's TypeScript types are generated from these (`ui/src/bindings`).

use crate::bench::{BenchDone, BenchProgress, BenchSummary};
use crate::config::{ConfigEdit, Diagnostic, Kind};
use crate::monitor::{Pressure, Sample, Thermal};
use crate::service::State;
use serde::{Deserialize, Serialize};
use ts_rs::TS;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct ServiceStatus {
    pub name: String,
    pub kind: Kind,
    pub state: State,
    pub pid: Option<u32>,
    /// The port the server binds (`backend_port` when set, else `port`).
    pub port: Option<u16>,
    /// The frontend port (the proxy's), when it differs.
    pub frontend_port: Option<u16>,
    pub model: Option<String>,
    /// Automatic restarts since the daemon started (manual ones are not counted).
    pub restarts: u32,
    /// Resident memory of the whole process group.
    #[ts(type = "number | null")]
    pub memory_bytes: Option<u64>,
    pub last_error: Option<String>,
    pub enabled: bool,
    /// Unix time (ms) of the last state change.
    #[ts(type = "number")]
    pub since_ms: u64,
    /// Unix time (ms) the service became ready, while it is ready.
    #[ts(type = "number | null")]
    pub ready_since_ms: Option<u64>,
    pub crash_loop: bool,
    /// Stopped (or unloaded) because someone asked, not by a failure.
    #[serde(default)]
    pub stopped_by_request: bool,
    /// Set while the process was adopted from a previous daemon.
    pub adopted: bool,
    /// Loaded on request and unloaded when idle (`on_demand = true`): its toggle unloads.
    #[serde(default)]
    pub on_demand: bool,
    /// `kind = "distributed"`: the rank layout (`rank 0: local (127.0.0.1)`, …) and the hostfile
    /// `mlx.launch` was given.
    #[serde(default)]
    pub ranks: Vec<String>,
    #[serde(default)]
    pub hostfile: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct MemoryStatus {
    #[ts(type = "number")]
    pub total_bytes: u64,
    #[ts(type = "number")]
    pub used_bytes: u64,
    #[ts(type = "number")]
    pub available_bytes: u64,
    #[ts(type = "number")]
    pub swap_used_bytes: u64,
    #[ts(type = "number")]
    pub swap_total_bytes: u64,
    pub pressure: Pressure,
    /// The memory budget the services are planned against (what `mlx-box estimate` compares with), when
    /// known; the dashboard scales its memory chart to it.
    #[serde(default)]
    #[ts(type = "number | null")]
    pub budget_bytes: Option<u64>,
    /// Where the budget comes from ("iogpu.wired_limit_mb", "physical memory", …).
    #[serde(default)]
    pub budget_source: Option<String>,
}

impl MemoryStatus {
    pub fn from_sample(s: &Sample) -> Self {
        MemoryStatus {
            total_bytes: s.total_bytes,
            used_bytes: s.used_bytes,
            available_bytes: s.available_bytes,
            swap_used_bytes: s.swap_used_bytes,
            swap_total_bytes: s.swap_total_bytes,
            pressure: s.pressure,
            budget_bytes: None,
            budget_source: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct ThermalStatus {
    pub state: Thermal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord, TS)]
#[ts(export)]
#[serde(rename_all = "lowercase")]
pub enum AlertSeverity {
    Info,
    Warning,
    Critical,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct Alert {
    /// Stable per condition (e.g. `service-failed:fast`), so a client can de-duplicate.
    pub id: String,
    pub severity: AlertSeverity,
    pub title: String,
    /// One sentence that says what to do.
    pub body: String,
    /// Unix time (ms) it was raised.
    #[ts(type = "number")]
    pub since: u64,
    /// Unix time (ms) it cleared; `None` while active.
    #[ts(type = "number | null")]
    pub cleared: Option<u64>,
    /// Someone has seen it ([`AlertAction::Ack`]): still listed, no longer counted, until it clears or
    /// grows more severe. Kept by the daemon, so every client agrees.
    #[serde(default)]
    pub acknowledged: bool,
    /// Not counted until this Unix time (ms) ([`AlertAction::Snooze`]); a more severe raise ends it.
    #[serde(default)]
    #[ts(type = "number | null")]
    pub snoozed_until: Option<u64>,
}

impl Alert {
    /// Whether it asks for attention at `now_ms`: active, not acknowledged, not snoozed. What the "1 alert"
    /// counts and the menu-bar icon shows; a quiet alert is still listed.
    pub fn needs_attention(&self, now_ms: u64) -> bool {
        self.cleared.is_none()
            && !self.acknowledged
            && self.snoozed_until.is_none_or(|t| t <= now_ms)
    }
}

/// What a person does with an active alert (`POST /v1/alerts/{id}`, `mlx-box alerts ack|snooze|unmute`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[ts(export)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum AlertAction {
    /// Seen: quiet until it clears (or grows more severe).
    Ack,
    /// Quiet for `minutes` (1 to [`MAX_SNOOZE_MINUTES`]), then it counts again if still active.
    Snooze { minutes: u32 },
    /// Counts again now (undoes an ack or a snooze).
    Unmute,
}

/// The longest snooze: a week.
pub const MAX_SNOOZE_MINUTES: u32 = 7 * 24 * 60;

impl AlertAction {
    /// A snooze of 1 minute to a week: what the daemon accepts and the CLI checks before asking.
    pub fn check(&self) -> Result<(), String> {
        match *self {
            AlertAction::Snooze { minutes } if minutes == 0 || minutes > MAX_SNOOZE_MINUTES => Err(
                format!("snooze for 1 minute to 7 days ({MAX_SNOOZE_MINUTES} minutes), not {minutes} minutes"),
            ),
            _ => Ok(()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct ConfigStatus {
    pub valid: bool,
    pub diagnostics: Vec<Diagnostic>,
    pub content_hash: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct StatusReport {
    pub version: String,
    pub daemon_pid: u32,
    pub config_path: String,
    pub config: ConfigStatus,
    pub services: Vec<ServiceStatus>,
    pub memory: MemoryStatus,
    pub thermal: ThermalStatus,
    pub alerts: Vec<Alert>,
    /// The other Macs of `[hosts]`, as this daemon last reached them.
    #[serde(default)]
    pub hosts: Vec<HostStatus>,
    /// The `[pools]` this daemon serves, with their members' health and counters.
    #[serde(default)]
    pub pools: Vec<crate::proxy::PoolStatus>,
    /// Whether the daemon keeps the machine awake (`[app] prevent_sleep`); `None` until its first
    /// monitor tick (and from daemons that predate it).
    #[serde(default)]
    pub awake: Option<AwakeStatus>,
}

/// The daemon's lock against idle sleep (`[app] prevent_sleep`): a macOS power assertion
/// (PreventUserIdleSystemSleep), a logind `sleep:idle` inhibitor on Linux. The display may sleep.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct AwakeStatus {
    /// `[app] prevent_sleep`: "serving", "always" or "never".
    pub mode: String,
    /// The lock is held now.
    pub held: bool,
    /// Why it is wanted or not: "3 servers loaded", "no server loaded", `prevent_sleep = "always"`.
    pub reason: String,
    /// Why it is wanted but could not be taken (no system bus, no logind, the assertion refused).
    pub error: Option<String>,
}

impl AwakeStatus {
    /// The one line the CLI and the menu show: "keeping the machine awake: 3 servers loaded",
    /// "cannot keep the machine awake: <why>", "the machine may sleep: no server loaded".
    pub fn line(&self) -> String {
        match (&self.error, self.held) {
            (_, true) => format!("keeping the machine awake: {}", self.reason),
            (Some(e), false) => format!("cannot keep the machine awake: {e}"),
            (None, false) => format!("the machine may sleep: {}", self.reason),
        }
    }
}

/// One TCP listener of the daemon: what it serves and where.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct Listening {
    /// The setting that opened it: `[services.chat] port`, `[server] port`, `[pools.p] port`,
    /// `[metrics] listen`, `[control] listen`.
    pub name: String,
    pub address: String,
    pub tls: bool,
}

/// Another host's daemon as this one sees it over the remote control API (polled every second).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct HostStatus {
    pub name: String,
    pub address: String,
    /// It answered the last polls.
    pub reachable: bool,
    /// Since when it is reachable (or not), unix ms.
    #[ts(type = "number")]
    pub since_ms: u64,
    /// Round trip of a ping over the kept connection, over the last 30 s.
    pub rtt_p50_ms: Option<f64>,
    pub rtt_p99_ms: Option<f64>,
    /// Why it is not reachable (or why its status could not be read).
    pub error: Option<String>,
    /// Its own status, from the last poll that got one (kept while it is unreachable, marked so).
    pub services: Vec<ServiceStatus>,
    pub alerts: Vec<Alert>,
    pub memory: Option<MemoryStatus>,
    pub thermal: Option<ThermalStatus>,
    pub version: Option<String>,
}

/// One message of the event stream (`GET /v1/events`, server-sent events, JSON in `data:`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// The whole status: the first message of every stream, and again after the client fell behind and
    /// events were dropped for it. A client replaces what it knows with it.
    Snapshot(Box<StatusReport>),
    /// A host of `[hosts]` changed: reachable or not, its services' states, its alerts, a slow link.
    Host(HostStatus),
    Service(ServiceStatus),
    ServiceRemoved {
        name: String,
    },
    Alert(Alert),
    AlertCleared {
        id: String,
        #[ts(type = "number")]
        cleared: u64,
    },
    Config(ConfigStatus),
    /// The monitor's 1 Hz sample (memory, swap, pressure, thermal), so clients draw live figures without
    /// polling.
    Monitor(MonitorTick),
    /// A benchmark run made progress (after every request).
    BenchProgress(BenchProgress),
    /// A benchmark run ended; `GET /v1/bench/{id}` has its result.
    BenchDone(BenchDone),
    /// The lock against idle sleep was taken or released, or its reason or error changed.
    Awake(AwakeStatus),
    Shutdown,
}

/// One monitor tick as clients see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct MonitorTick {
    pub sample: Sample,
    /// Memory of each running service's process group; sent every few ticks (it costs a process scan),
    /// absent otherwise.
    #[ts(type = "Record<string, number> | null")]
    pub service_memory: Option<std::collections::BTreeMap<String, u64>>,
    /// Each proxied service's requests over the last minute, from the `/metrics` histograms.
    #[serde(default)]
    pub live: std::collections::BTreeMap<String, LiveRequests>,
}

/// A service's requests over the last minute, read from the same histograms `/metrics` serves (what a
/// dashboard's `histogram_quantile(0.95, rate(vllm:time_to_first_token_seconds_bucket[1m]))` shows).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct LiveRequests {
    /// Requests that got a first token in the window.
    #[ts(type = "number")]
    pub requests: u64,
    /// TTFT quantiles, interpolated within the histogram's buckets (None without requests).
    pub ttft_p50_ms: Option<f64>,
    pub ttft_p95_ms: Option<f64>,
    /// Generated tokens per second over the window.
    pub output_tok_s: f64,
    /// The window actually covered (shorter just after the daemon started), seconds.
    pub window_s: f64,
}

/// Body of a start/stop/restart answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct ActionReply {
    pub services: Vec<String>,
}

/// `GET /v1/config`: the file as text and as JSON (for the Settings window), and its validation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct ConfigDocument {
    pub path: String,
    pub text: String,
    /// The file as JSON; null when it does not parse.
    pub document: Option<serde_json::Value>,
    /// Hash of `text`: send it back with an edit so a change made meanwhile is not overwritten.
    pub content_hash: String,
    pub status: ConfigStatus,
}

/// `POST /v1/config/preview` and `POST /v1/config/edit`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct ConfigEditRequest {
    pub edits: Vec<ConfigEdit>,
    /// The `content_hash` the edits were made against; a mismatch is refused with 409.
    #[serde(default)]
    pub base_hash: Option<String>,
}

/// What the file would become, and what `mlx-box validate` would say of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct ConfigPreview {
    pub text: String,
    pub document: Option<serde_json::Value>,
    pub diagnostics: Vec<Diagnostic>,
    /// True when no diagnostic is an error (the daemon would accept it).
    pub valid: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct MonitorHistory {
    /// Oldest first, 1 Hz, at most 10 minutes.
    pub samples: Vec<Sample>,
}

/// `GET /v1/bench/history`: every saved run, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct BenchHistory {
    pub runs: Vec<BenchSummary>,
}
