//! The daemon (`mlx-box up`): owns the supervisor, watches settings.toml, serves the control API, and on
//! SIGINT/SIGTERM stops every service before it exits.

use crate::alerts::AlertStore;
use crate::api::{
    AlertSeverity, ConfigDocument, ConfigEditRequest, ConfigPreview, ConfigStatus, Event,
    MemoryStatus, StatusReport, ThermalStatus,
};
use crate::bench::doctor::{DoctorInput, DoctorOptions, DoctorReport};
use crate::bench::{self, BenchDone, BenchOptions, ProgressFn, Target};
use crate::config::{self, ConfigEdit, Diagnostic, Severity};
use crate::estimate;
use crate::keys::{KeyError, KeyInfo, Keyring};
use crate::launch::Runtime;
use crate::monitor::{History, Sampler};
use crate::paths;
use crate::proxy::{KeySet, Proxies, SharedKeys};
use crate::rules::{Decision, Engine};
use crate::supervisor::{process, statefile::StateFile, Shared, Supervisor};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, Notify};

/// The embedding server mlx-box ships (the original mlx-box had `models/embed-server.py`).
pub const EMBED_SERVER_PY: &str = include_str!("../../../python/embed_server.py");

#[derive(Debug, Clone)]
pub struct DaemonOptions {
    pub state_dir: PathBuf,
    pub config_path: PathBuf,
    /// Interpreter for services that name none (the demo passes its venv's python).
    pub default_python: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("another mlx-box daemon (pid {pid}) is running on state dir {dir}; use it (`mlx-box status`), or stop it (`kill {pid}`)")]
    AlreadyRunning { pid: String, dir: PathBuf },
    #[error("cannot use state dir {dir}: {source}")]
    StateDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("refusing state dir {dir}: {reason}")]
    UnsafeStateDir { dir: PathBuf, reason: String },
    #[error("cannot listen on {path}: {source}")]
    Socket {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot watch {path}: {source}")]
    Watch {
        path: PathBuf,
        source: notify::Error,
    },
}

/// The live config as the daemon knows it.
pub struct ConfigState {
    pub status: ConfigStatus,
}

/// What the frontend listeners are built from: whether any key exists, and each listener's settings.
type ProxyKey = (bool, Vec<crate::proxy::ListenerConfig>);

/// Everything the control API needs.
pub struct Daemon {
    pub supervisor: Supervisor,
    pub shared: Arc<Shared>,
    pub config_path: PathBuf,
    pub config: Mutex<ConfigState>,
    pub shutdown: Notify,
    sampler: Mutex<Sampler>,
    /// The last 10 minutes of samples (for sparklines).
    pub monitor: Mutex<History>,
    rules: Mutex<Engine>,
    /// The frontend listeners, and the settings they were built from (rebuilt only when those change).
    proxies: tokio::sync::Mutex<(Proxies, Option<ProxyKey>)>,
    /// The keys every listener checks (keyring + plaintext of the file), replaced on change.
    keys: SharedKeys,
    /// The keyring error logged last (so a reload does not log it again).
    keyring_warned: Mutex<Option<String>>,
    /// Held while keys load (see `load_keys`).
    keys_loading: tokio::sync::Mutex<()>,
    /// The plaintext keys of the settings applied last, and whether they have any frontend port.
    plaintext_keys: Mutex<(Vec<String>, bool)>,
    reload_tx: mpsc::Sender<()>,
    pub state_dir: PathBuf,
    /// The benchmark that runs now (one at a time: two would measure each other).
    bench: Mutex<Option<RunningBench>>,
}

struct RunningBench {
    id: String,
    cancel: Arc<std::sync::atomic::AtomicBool>,
}

/// Why a benchmark or doctor run was not started.
#[derive(Debug, thiserror::Error)]
pub enum BenchRefused {
    #[error(
        "a benchmark is already running ({0}); wait for it, or cancel it (`POST /v1/bench/cancel`)"
    )]
    Busy(String),
    #[error("no service named `{0}` in settings.toml (see `mlx-box status`)")]
    Unknown(String),
    #[error("no valid settings are loaded; fix settings.toml first (`mlx-box validate`)")]
    NoSettings,
    #[error("nothing to measure: no enabled chat, ocr or embedding service (name one explicitly)")]
    Nothing,
    #[error("invalid options: {0}")]
    Invalid(String),
}

/// Reads the OS keyring (blocking: D-Bus / Security framework) off the async threads.
async fn keyring<T: Send + 'static>(
    f: impl FnOnce(&Keyring) -> Result<T, KeyError> + Send + 'static,
) -> Result<T, KeyError> {
    tokio::task::spawn_blocking(move || f(&Keyring::open()?))
        .await
        .unwrap_or_else(|e| Err(KeyError::Unavailable(e.to_string())))
}

impl Daemon {
    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.shared.events.subscribe()
    }

    pub fn alerts(&self) -> &AlertStore {
        &self.shared.alerts
    }

    /// Every service's status with the memory of its process group (a process scan: not on every tick).
    async fn services_with_memory(&self) -> Vec<crate::api::ServiceStatus> {
        let mut services = self.supervisor.statuses().await;
        let pgids: Vec<Option<u32>> = services.iter().map(|s| s.pid).collect();
        let per_group = tokio::task::spawn_blocking(move || group_memory(&pgids))
            .await
            .unwrap_or_default();
        for (s, m) in services.iter_mut().zip(per_group) {
            s.memory_bytes = m;
        }
        services
    }

    pub async fn status(&self) -> StatusReport {
        let services = self.services_with_memory().await;
        let latest = self.monitor.lock().unwrap().latest().cloned();
        let sample = latest.unwrap_or_else(|| self.sampler.lock().unwrap().sample());
        StatusReport {
            version: env!("CARGO_PKG_VERSION").to_string(),
            daemon_pid: std::process::id(),
            config_path: self.config_path.display().to_string(),
            config: self.config.lock().unwrap().status.clone(),
            services,
            memory: MemoryStatus::from_sample(&sample),
            thermal: ThermalStatus {
                state: sample.thermal,
            },
            alerts: self.shared.alerts.active(),
        }
    }

    /// One monitor tick: sample, keep it, run the alert rules, tell the clients.
    pub fn monitor_tick(&self) -> crate::monitor::Sample {
        let sample = self.sampler.lock().unwrap().sample();
        let decisions = self.rules.lock().unwrap().evaluate(&sample);
        self.monitor.lock().unwrap().push(sample.clone());
        self.apply_decisions(decisions);
        sample
    }

    /// The proxy's share of the monitor tick: the live tok/s window, and the decode speeds of recent
    /// streams against the thermal state (the throttling rule).
    pub async fn proxy_tick(&self) {
        let since = crate::api::now_ms().saturating_sub(10 * 60 * 1000);
        let series: Vec<f64> = {
            let g = self.proxies.lock().await;
            g.0.tick();
            g.0.decode_series(since).into_iter().map(|x| x.1).collect()
        };
        let (now, thermal) = {
            let m = self.monitor.lock().unwrap();
            let all = m.all();
            let now = all
                .last()
                .map(|s| s.t_ms)
                .unwrap_or_else(crate::api::now_ms);
            let t: Vec<_> = all
                .iter()
                .filter(|s| s.t_ms >= since)
                .map(|s| s.thermal)
                .collect();
            (now, t)
        };
        let decisions = self
            .rules
            .lock()
            .unwrap()
            .evaluate_throughput(now, &series, &thermal);
        self.apply_decisions(decisions);
    }

    fn apply_decisions(&self, decisions: Vec<Decision>) {
        for d in decisions {
            match d {
                Decision::Raise {
                    id,
                    severity,
                    title,
                    body,
                } => self.shared.alerts.raise(id, severity, title, body),
                Decision::Clear { id } => self.shared.alerts.clear(id),
            }
        }
    }

    /// Sends a monitor tick to the event stream when someone listens; every `SERVICE_MEMORY_EVERY` ticks it
    /// also carries each service's memory (a process scan, so not every second).
    async fn publish_tick(&self, sample: crate::monitor::Sample, n: u64) {
        const SERVICE_MEMORY_EVERY: u64 = 5;
        if self.shared.events.receiver_count() == 0 {
            return;
        }
        let service_memory = if n.is_multiple_of(SERVICE_MEMORY_EVERY) {
            Some(
                self.services_with_memory()
                    .await
                    .into_iter()
                    .filter_map(|s| s.memory_bytes.map(|m| (s.name, m)))
                    .collect(),
            )
        } else {
            None
        };
        let _ = self
            .shared
            .events
            .send(Event::Monitor(crate::api::MonitorTick {
                sample,
                service_memory,
            }));
    }

    /// Re-reads settings.toml (after a watcher event or on request) and applies it when it is valid and
    /// differs from what runs. An invalid file changes nothing that runs and raises an alert.
    pub async fn reload(&self) {
        let text = match std::fs::read(&self.config_path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // Deleted (or mid-replace): keep running what runs; a re-create is seen by the watcher.
                self.set_config_problem(vec![Diagnostic {
                    path: self.config_path.clone(),
                    line: 1,
                    col: 1,
                    severity: Severity::Error,
                    message: "settings file is missing; services keep running as they were".into(),
                    hint: Some(
                        "restore it (a copy is in settings.toml.bak if mlx-box saved it)".into(),
                    ),
                }]);
                return;
            }
            Err(e) => {
                self.set_config_problem(vec![Diagnostic {
                    path: self.config_path.clone(),
                    line: 1,
                    col: 1,
                    severity: Severity::Error,
                    message: format!(
                        "cannot read the settings file ({e}); services keep running as they were"
                    ),
                    hint: Some("check its permissions: the daemon runs as you".into()),
                }]);
                return;
            }
        };
        let hash = config::content_hash(&text);
        if self.config.lock().unwrap().status.content_hash.as_deref() == Some(hash.as_str()) {
            return; // our own write, or a touch without change
        }
        let text = String::from_utf8_lossy(&text);
        let (settings, diags) = config::parse_settings(&self.config_path, &text);
        match settings {
            None => {
                for d in &diags {
                    tracing::warn!("{d}");
                }
                self.set_config_problem(diags);
                self.config.lock().unwrap().status.content_hash = Some(hash);
            }
            Some(s) => {
                self.shared.alerts.clear("config-invalid");
                let status = ConfigStatus {
                    valid: true,
                    diagnostics: diags,
                    content_hash: Some(hash),
                };
                self.config.lock().unwrap().status = status.clone();
                let _ = self.shared.events.send(Event::Config(status));
                self.rules.lock().unwrap().cfg = s.alerts.clone();
                self.load_keys(Some(&s)).await;
                if self.check_budget(&s).await {
                    self.apply_proxies(&s).await;
                    self.supervisor.apply(s).await;
                }
            }
        }
    }

    /// Reads the keys again (the keyring, and `plaintext` when the settings changed) and hands them to
    /// the listeners at once. Alerts say when the keyring cannot be read or keys sit in the file.
    /// The keyring is read only when some service has a frontend port: a daemon without a proxy never
    /// asks for it (no unlock prompt, no alert).
    pub async fn load_keys(&self, settings: Option<&config::Settings>) -> usize {
        // One load at a time: a `keys reload` that read the plaintext keys before a settings reload
        // changed them must not finish after it and put back a stale key set and alert.
        let _one = self.keys_loading.lock().await;
        let (plaintext, proxied) = {
            let mut g = self.plaintext_keys.lock().unwrap();
            if let Some(s) = settings {
                let proxied = s
                    .services
                    .iter()
                    .any(|x| x.enabled && x.port.is_some() && x.backend_port.is_some());
                *g = (s.server.api_keys.clone(), proxied);
            }
            g.clone()
        };
        let from_ring = if proxied {
            keyring(|k| k.load()).await.map_err(|e| e.to_string())
        } else {
            Ok(vec![])
        };
        match &from_ring {
            Ok(_) => {
                *self.keyring_warned.lock().unwrap() = None;
                self.shared.alerts.clear("keyring")
            }
            Err(e) => {
                // Logged when it changes, not at every reload (the alert carries it meanwhile).
                let mut last = self.keyring_warned.lock().unwrap();
                if last.as_deref() != Some(e.as_str()) {
                    tracing::warn!("API keys: {e}");
                    *last = Some(e.clone());
                }
                drop(last);
                self.shared.alerts.raise(
                    "keyring",
                    AlertSeverity::Warning,
                    "The OS keyring cannot be read",
                    format!("{e}. Frontend ports accept only the keys in settings.toml meanwhile (none: they answer 503). Then: `mlx-box keys reload`."),
                );
            }
        }
        if plaintext.is_empty() {
            self.shared.alerts.clear("plaintext-keys");
        } else {
            self.shared.alerts.raise(
                "plaintext-keys",
                AlertSeverity::Warning,
                "API keys are stored in plaintext",
                format!(
                    "settings.toml holds {} API key(s) in [server] api_key/api_keys. Run `mlx-box keys import` to move them into the OS keyring (the file keeps its comments).{}",
                    plaintext.len(),
                    config::readable_by_others(&self.config_path)
                        .map(|mode| format!(" Other users can read the file (mode {mode:04o}): `chmod 600 {}`.", self.config_path.display()))
                        .unwrap_or_default()
                ),
            );
        }
        let set = KeySet::new(from_ring, &plaintext);
        let n = set.len();
        *self.keys.write().unwrap() = Arc::new(set);
        n
    }

    /// Keys in the keyring (no secrets), and whether it could be read.
    pub async fn list_keys(&self) -> Result<Vec<KeyInfo>, KeyError> {
        keyring(|k| k.list()).await
    }

    /// Makes a key (shown once, in the reply) and serves it at once.
    pub async fn add_key(
        &self,
        name: Option<String>,
        services: Vec<String>,
    ) -> Result<(KeyInfo, String), KeyError> {
        let r = keyring(move |k| k.add(name.as_deref(), &services)).await?;
        self.keys_changed().await;
        Ok(r)
    }

    pub async fn remove_key(&self, id: String) -> Result<KeyInfo, KeyError> {
        let r = keyring(move |k| k.remove(&id)).await?;
        self.keys_changed().await;
        Ok(r)
    }

    /// After a change of the keys: reload them, and restart the listeners when the first key came or
    /// the last went (a non-loopback listener needs one).
    pub async fn keys_changed(&self) -> usize {
        let n = self.load_keys(None).await;
        if let Some(s) = self.supervisor.settings().await {
            self.apply_proxies(&s).await;
        }
        n
    }

    /// (Re)starts the frontend listeners when what they depend on changed.
    async fn apply_proxies(&self, s: &config::Settings) {
        let has_keys = !self.keys.read().unwrap().is_empty();
        let key = (has_keys, crate::proxy::ListenerConfig::all(s));
        let mut guard = self.proxies.lock().await;
        if guard.1.as_ref() == Some(&key) {
            return;
        }
        let old = std::mem::replace(&mut guard.0, Proxies::empty());
        let counters = old.carry_over();
        old.stop().await;
        let (p, errors) = Proxies::start(
            s,
            self.shared.statuses.clone(),
            self.keys.clone(),
            &counters,
        )
        .await;
        self.shared.alerts.clear("proxy");
        if !errors.is_empty() {
            let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
            self.shared.alerts.raise(
                "proxy",
                AlertSeverity::Warning,
                "A frontend port is not served",
                text.join(" "),
            );
        }
        *guard = (p, Some(key));
    }

    pub async fn proxy_stats(
        &self,
    ) -> std::collections::BTreeMap<String, crate::proxy::ProxyStats> {
        self.proxies.lock().await.0.stats()
    }

    /// Before a manual start: would what then runs (what runs now + `target`) fit? Raises the over-budget
    /// alert when not; refuses (Err) under `[app] refuse_over_budget`.
    pub async fn admit_start(&self, target: &str) -> Result<(), String> {
        let Some(mut plan) = self.supervisor.settings().await else {
            return Ok(());
        };
        let running: Vec<String> = self
            .supervisor
            .statuses()
            .await
            .into_iter()
            .filter(|s| s.state.is_running() || s.state == crate::supervisor::State::Backoff)
            .map(|s| s.name)
            .collect();
        plan.services
            .retain(|s| target == "all" || s.name == target || running.contains(&s.name));
        if self.check_budget(&plan).await {
            Ok(())
        } else {
            Err(
                "not started: the services would not fit in memory and refuse_over_budget = true \
                 (see the over-budget alert in `mlx-box status`)"
                    .to_string(),
            )
        }
    }

    /// Raises (or clears) the over-budget alert for a plan. Returns false when `[app] refuse_over_budget`
    /// forbids applying it.
    async fn check_budget(&self, s: &config::Settings) -> bool {
        let plan = s.clone();
        let Ok(e) = tokio::task::spawn_blocking(move || {
            estimate::estimate(&plan, estimate::memory_budget())
        })
        .await
        else {
            return true;
        };
        let Some(short) = estimate::over_budget(&e, s.alerts.headroom_warn_percent) else {
            self.shared.alerts.clear("over-budget");
            return true;
        };
        let gb = |b: u64| format!("{:.1} GB", b as f64 / (1u64 << 30) as f64);
        let who: Vec<String> = short
            .services
            .iter()
            .map(|(n, b)| format!("{n} {}", gb(*b)))
            .collect();
        let refuse = s.app.refuse_over_budget;
        self.shared.alerts.raise(
            "over-budget",
            if refuse { AlertSeverity::Critical } else { AlertSeverity::Warning },
            "The services do not fit in memory",
            format!(
                "They need {} ({}) + {} reserve, but the budget is {} ({}): {} short. {}Lower context_length / max_concurrency or disable a service.",
                gb(short.need_bytes),
                who.join(", "),
                gb(short.reserve_bytes),
                gb(short.budget_bytes),
                e.budget_source.as_deref().unwrap_or("memory"),
                gb(short.short_bytes),
                if refuse { "Not applied (refuse_over_budget = true). " } else { "" },
            ),
        );
        !refuse
    }

    fn set_config_problem(&self, diags: Vec<Diagnostic>) {
        let errors: Vec<&Diagnostic> = diags
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .collect();
        let first = errors.first().map(|d| d.to_string()).unwrap_or_default();
        self.shared.alerts.raise(
            "config-invalid",
            AlertSeverity::Warning,
            "settings.toml is invalid",
            format!(
                "{} problem(s), first: {first}. Nothing was changed; fix the file and it applies on save.",
                errors.len()
            ),
        );
        let status = ConfigStatus {
            valid: false,
            diagnostics: diags,
            content_hash: None,
        };
        self.config.lock().unwrap().status = status.clone();
        let _ = self.shared.events.send(Event::Config(status));
    }

    /// The file as the Settings window sees it.
    pub fn config_document(&self) -> ConfigDocument {
        let text = std::fs::read_to_string(&self.config_path).unwrap_or_default();
        ConfigDocument {
            path: self.config_path.display().to_string(),
            document: config::to_json(&text).ok(),
            content_hash: config::content_hash(text.as_bytes()),
            status: self.config.lock().unwrap().status.clone(),
            text,
        }
    }

    /// What `edits` would make of the file now, validated; nothing is written.
    pub fn preview_edits(&self, edits: &[ConfigEdit]) -> Result<ConfigPreview, EditRefused> {
        let text = std::fs::read_to_string(&self.config_path).unwrap_or_default();
        preview(&self.config_path, &text, edits)
    }

    /// Applies `edits` with toml_edit (comments survive) and writes the file when it validates; the watcher
    /// then applies it like any other save, so only the changed services restart.
    pub async fn edit_config(&self, req: &ConfigEditRequest) -> Result<ConfigPreview, EditRefused> {
        let text = std::fs::read_to_string(&self.config_path).unwrap_or_default();
        if let Some(base) = &req.base_hash {
            if *base != config::content_hash(text.as_bytes()) {
                return Err(EditRefused::Conflict);
            }
        }
        let p = preview(&self.config_path, &text, &req.edits)?;
        if !p.valid {
            return Err(EditRefused::Invalid(p));
        }
        self.write_config(&p.text).await.map_err(|diags| {
            EditRefused::Invalid(ConfigPreview {
                valid: false,
                diagnostics: diags,
                ..p.clone()
            })
        })?;
        Ok(p)
    }

    /// Validates `text` and writes it (with a `.bak`, atomically); the watcher then applies it.
    pub async fn write_config(&self, text: &str) -> Result<(), Vec<Diagnostic>> {
        let (settings, diags) = config::parse_settings(&self.config_path, text);
        if settings.is_none() {
            return Err(diags);
        }
        config::write_with_backup(&self.config_path, text.as_bytes()).map_err(|e| {
            vec![Diagnostic {
                path: self.config_path.clone(),
                line: 1,
                col: 1,
                severity: Severity::Error,
                message: format!("cannot write: {e}"),
                hint: None,
            }]
        })?;
        let _ = self.reload_tx.send(()).await;
        Ok(())
    }
}

impl Daemon {
    /// Starts a benchmark in the background; progress and the end go to the event stream, the result to
    /// `<state>/bench/<id>.json`. Returns the run's id.
    pub async fn start_bench(self: &Arc<Self>, opts: BenchOptions) -> Result<String, BenchRefused> {
        if opts.concurrency.is_empty() || opts.concurrency.contains(&0) {
            return Err(BenchRefused::Invalid(
                "concurrency levels must be ≥ 1, e.g. [1, 4]".into(),
            ));
        }
        if opts.requests == 0 {
            return Err(BenchRefused::Invalid("requests must be ≥ 1".into()));
        }
        if opts.rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
            return Err(BenchRefused::Invalid("rate must be > 0 requests/s".into()));
        }
        let targets = self.bench_targets(&opts.services).await?;
        let id = bench::history::new_id(crate::api::now_ms());
        let cancel = Arc::new(std::sync::atomic::AtomicBool::new(false));
        {
            let mut slot = self.bench.lock().unwrap();
            if let Some(b) = slot.as_ref() {
                return Err(BenchRefused::Busy(b.id.clone()));
            }
            *slot = Some(RunningBench {
                id: id.clone(),
                cancel: cancel.clone(),
            });
        }
        let d = self.clone();
        let run_id = id.clone();
        tokio::spawn(async move {
            let events = d.shared.events.clone();
            let progress: ProgressFn = Arc::new(move |p| {
                let _ = events.send(Event::BenchProgress(p));
            });
            // Machine samples from the daemon's own 1 Hz monitor (no second sampler).
            let monitor = d.clone();
            let sample: bench::SampleFn = Arc::new(move || {
                let latest = monitor.monitor.lock().unwrap().latest().cloned();
                latest.unwrap_or_else(|| monitor.sampler.lock().unwrap().sample())
            });
            let hooks = bench::Hooks {
                progress,
                cancel,
                sample,
                ..bench::Hooks::default()
            };
            let r = bench::run(run_id.clone(), opts, targets, hooks).await;
            let saved = bench::history::save(&d.state_dir, &r);
            d.throttling_alert(&r);
            *d.bench.lock().unwrap() = None;
            let _ = d.shared.events.send(Event::BenchDone(BenchDone {
                id: run_id,
                verdict: saved.is_ok().then_some(r.verdict),
                error: saved.err().map(|e| e.to_string()),
            }));
        });
        Ok(id)
    }

    /// The id of the benchmark that runs now, if any (a window opened mid-run follows it).
    pub fn current_bench(&self) -> Option<String> {
        self.bench.lock().unwrap().as_ref().map(|b| b.id.clone())
    }

    /// Stops the running benchmark after the requests in flight; its partial result is saved.
    pub fn cancel_bench(&self) -> Option<String> {
        let slot = self.bench.lock().unwrap();
        let b = slot.as_ref()?;
        b.cancel.store(true, std::sync::atomic::Ordering::SeqCst);
        Some(b.id.clone())
    }

    /// The services a run measures: the named ones, or every enabled chat / ocr / embedding service.
    /// One that is not ready is listed as skipped, with its state.
    async fn bench_targets(&self, names: &[String]) -> Result<Vec<Target>, BenchRefused> {
        let settings = self
            .supervisor
            .settings()
            .await
            .ok_or(BenchRefused::NoSettings)?;
        for n in names {
            if settings.service(n).is_none() {
                return Err(BenchRefused::Unknown(n.clone()));
            }
        }
        let statuses = self.supervisor.statuses().await;
        let specs: Vec<&config::ServiceSpec> = if names.is_empty() {
            settings
                .services
                .iter()
                .filter(|s| {
                    s.enabled
                        && matches!(
                            s.kind,
                            config::Kind::Chat | config::Kind::Ocr | config::Kind::Embedding
                        )
                })
                .collect()
        } else {
            names.iter().filter_map(|n| settings.service(n)).collect()
        };
        if specs.is_empty() {
            return Err(BenchRefused::Nothing);
        }
        Ok(specs
            .into_iter()
            .map(|spec| {
                let mut t = Target::new(spec);
                let state = statuses
                    .iter()
                    .find(|s| s.name == spec.name)
                    .map(|s| s.state);
                if t.skipped.is_none() && state != Some(crate::supervisor::State::Ready) {
                    t.skipped = Some(format!(
                        "not ready (state {}); start it first (`mlx-box start {}`)",
                        state.map(|s| s.as_str()).unwrap_or("unknown"),
                        spec.name
                    ));
                }
                t
            })
            .collect())
    }

    /// Generation speed falling while the machine heats up, seen during a run: the "throttling
    /// suspected" alert (cleared by a later run that does not see it).
    fn throttling_alert(&self, r: &bench::BenchResult) {
        let hot: Vec<&str> = r
            .services
            .iter()
            .filter(|s| s.throttling_suspected)
            .map(|s| s.name.as_str())
            .collect();
        if hot.is_empty() {
            self.shared.alerts.clear("throttling-suspected");
        } else {
            self.shared.alerts.raise(
                "throttling-suspected",
                AlertSeverity::Warning,
                "Thermal throttling suspected",
                format!(
                    "During benchmark {}, generation speed of {} fell by 20 % or more while the thermal state rose to {}: check the fans and the room, or lower the load.",
                    r.id,
                    hot.join(", "),
                    r.monitor.max_thermal.as_str()
                ),
            );
        }
    }

    /// The seed's success checklist, now.
    pub async fn doctor(&self, opts: DoctorOptions) -> Result<DoctorReport, BenchRefused> {
        if let Some(b) = self.bench.lock().unwrap().as_ref() {
            return Err(BenchRefused::Busy(b.id.clone()));
        }
        let settings = self
            .supervisor
            .settings()
            .await
            .ok_or(BenchRefused::NoSettings)?;
        for n in &opts.services {
            if settings.service(n).is_none() {
                return Err(BenchRefused::Unknown(n.clone()));
            }
        }
        let statuses = self.supervisor.statuses().await;
        let latest = self.monitor.lock().unwrap().latest().cloned();
        let swap = latest
            .unwrap_or_else(|| self.sampler.lock().unwrap().sample())
            .swap_used_bytes;
        let logs = settings
            .services
            .iter()
            .filter_map(|s| {
                let t = self.supervisor.log_tail(&s.name)?;
                Some((s.name.clone(), t.tail(opts.log_lines as usize)))
            })
            .collect();
        let input = DoctorInput {
            settings,
            statuses,
            swap_used_bytes: swap,
            logs,
        };
        Ok(bench::doctor::doctor(input, &opts).await)
    }
}

fn preview(path: &Path, text: &str, edits: &[ConfigEdit]) -> Result<ConfigPreview, EditRefused> {
    let new = config::apply_edits(text, edits)?;
    let (settings, diagnostics) = config::parse_settings(path, &new);
    Ok(ConfigPreview {
        document: config::to_json(&new).ok(),
        valid: settings.is_some(),
        diagnostics,
        text: new,
    })
}

/// Why an edit from a client was not written.
#[derive(Debug, thiserror::Error)]
pub enum EditRefused {
    #[error("settings.toml changed since it was read; reload it and make the edit again")]
    Conflict,
    #[error(transparent)]
    Edit(#[from] config::EditError),
    #[error("the edited settings do not validate; nothing was written")]
    Invalid(ConfigPreview),
}

/// Resident memory of each service's process group (RSS; on macOS the physical footprint is a later step).
fn group_memory(pgids: &[Option<u32>]) -> Vec<Option<u64>> {
    use sysinfo::{ProcessRefreshKind, ProcessesToUpdate, System};
    if pgids.iter().all(Option::is_none) {
        return vec![None; pgids.len()];
    }
    let Ok(mut sys) = System::new() else {
        return vec![None; pgids.len()];
    };
    sys.refresh_processes_specifics(
        ProcessesToUpdate::All,
        true,
        ProcessRefreshKind::nothing().with_memory(),
    );
    pgids
        .iter()
        .map(|p| p.map(|pg| process::group_memory(&sys, pg)))
        .collect()
}

/// Exclusive lock on the state dir, held for the daemon's life.
pub struct StateLock {
    _file: std::fs::File,
}

/// Takes the state dir's lock, or says which daemon holds it. `up` takes it before anything else (the
/// demo setup included), so a second `up` refuses at once.
pub fn lock_state_dir(dir: &Path) -> Result<StateLock, DaemonError> {
    let sd = |e| DaemonError::StateDir {
        dir: dir.to_path_buf(),
        source: e,
    };
    // A dir we make is ours alone; one that exists must be the user's and writable by no one else.
    if !dir.exists() {
        std::fs::create_dir_all(dir).map_err(sd)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(sd)?;
    }
    if let Some(reason) = paths::state_dir_problem(dir) {
        return Err(DaemonError::UnsafeStateDir {
            dir: dir.to_path_buf(),
            reason,
        });
    }
    let path = dir.join("daemon.lock");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .read(true)
        .write(true)
        .truncate(false)
        .open(&path)
        .map_err(sd)?;
    // flock is released by the kernel when the process dies, even by SIGKILL: no stale locks.
    let rc = unsafe {
        libc::flock(
            std::os::fd::AsRawFd::as_raw_fd(&f),
            libc::LOCK_EX | libc::LOCK_NB,
        )
    };
    if rc != 0 {
        let pid = std::fs::read_to_string(&path)
            .unwrap_or_default()
            .trim()
            .to_string();
        return Err(DaemonError::AlreadyRunning {
            pid: if pid.is_empty() { "?".into() } else { pid },
            dir: dir.to_path_buf(),
        });
    }
    f.set_len(0).map_err(sd)?;
    write!(f, "{}", std::process::id()).map_err(sd)?;
    Ok(StateLock { _file: f })
}

/// SIGTERM / SIGINT / SIGHUP, registered before anything is spawned: a signal that arrives during start-up
/// is handled (services stopped) instead of killing the daemon and leaving its servers behind.
pub struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    pub fn new() -> std::io::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// Resolves at SIGTERM or SIGINT.
    pub async fn terminated(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

/// Runs the daemon until SIGINT/SIGTERM or a shutdown request; every service is stopped before it returns.
pub async fn run(
    opts: DaemonOptions,
    _lock: StateLock,
    mut signals: Signals,
) -> Result<(), DaemonError> {
    let dir = &opts.state_dir;
    let sd = |e| DaemonError::StateDir {
        dir: dir.clone(),
        source: e,
    };
    match crate::limits::raise_open_files_limit() {
        Ok((before, after)) if after > before => {
            tracing::info!(before, after, "raised the open-files limit")
        }
        Ok(_) => {}
        Err(e) => tracing::warn!("cannot raise the open-files limit: {e}"),
    }
    let logs_dir = dir.join("logs");
    let scripts_dir = dir.join("runtime");
    std::fs::create_dir_all(&logs_dir).map_err(sd)?;
    std::fs::create_dir_all(&scripts_dir).map_err(sd)?;
    std::fs::write(scripts_dir.join("embed_server.py"), EMBED_SERVER_PY).map_err(sd)?;

    let (events, _) = broadcast::channel(1024);
    let shared = Arc::new(Shared {
        alerts: AlertStore::new(events.clone()),
        events,
        statuses: Default::default(),
        state_file: StateFile::load(dir.join("state.json")),
        client: reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(0)
            .build()
            .expect("http client"),
        logs_dir,
        config_path: opts.config_path.clone(),
    });
    let rt = Runtime {
        scripts_dir,
        default_python: opts
            .default_python
            .clone()
            .unwrap_or_else(crate::launch::default_python),
    };
    let (reload_tx, mut reload_rx) = mpsc::channel::<()>(4);
    let daemon = Arc::new(Daemon {
        supervisor: Supervisor::new(shared.clone(), rt),
        shared: shared.clone(),
        config_path: std::path::absolute(&opts.config_path).unwrap_or(opts.config_path.clone()),
        config: Mutex::new(ConfigState {
            status: ConfigStatus {
                valid: false,
                diagnostics: vec![],
                content_hash: None,
            },
        }),
        shutdown: Notify::new(),
        sampler: Mutex::new(Sampler::default()),
        monitor: Mutex::new(History::default()),
        rules: Mutex::new(Engine::new(Default::default())),
        proxies: tokio::sync::Mutex::new((Proxies::empty(), None)),
        keys: Default::default(),
        keyring_warned: Mutex::new(None),
        keys_loading: tokio::sync::Mutex::new(()),
        plaintext_keys: Mutex::new((vec![], false)),
        reload_tx: reload_tx.clone(),
        state_dir: dir.clone(),
        bench: Mutex::new(None),
    });

    // Control socket first, so clients can watch the services come up.
    let sock = paths::socket_path(dir);
    let _ = std::fs::remove_file(&sock); // stale: the lock proves no daemon owns it
    let listener = tokio::net::UnixListener::bind(&sock).map_err(|e| DaemonError::Socket {
        path: sock.clone(),
        source: e,
    })?;
    let _ = std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o600));
    let app = crate::control::server::router(daemon.clone());
    let server = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("control API stopped: {e}");
        }
    });

    // The watcher only pokes; the reload task reads, validates and applies, one change at a time.
    let poke = reload_tx.clone();
    let _watcher = config::watch_file(&daemon.config_path, Duration::from_millis(50), move || {
        let _ = poke.try_send(());
    })
    .map_err(|e| DaemonError::Watch {
        path: daemon.config_path.clone(),
        source: e,
    })?;
    daemon.reload().await;
    let stop_reloading = Arc::new(Notify::new());
    let (d2, stop2) = (daemon.clone(), stop_reloading.clone());
    let reloader = tokio::spawn(async move {
        loop {
            tokio::select! {
                r = reload_rx.recv() => match r {
                    Some(()) => d2.reload().await,
                    None => break,
                },
                _ = stop2.notified() => break,
            }
        }
    });
    // The 1 Hz monitor: cheap (a few /proc reads), and what the swap / pressure / heat alerts stand on.
    let d3 = daemon.clone();
    let monitor = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        for n in 0u64.. {
            tick.tick().await;
            let sample = d3.monitor_tick();
            d3.proxy_tick().await;
            d3.publish_tick(sample, n).await;
        }
    });
    tracing::info!(state_dir = %dir.display(), config = %daemon.config_path.display(), socket = %sock.display(), "mlx-box daemon ready");

    loop {
        tokio::select! {
            _ = signals.term.recv() => break,
            _ = signals.int.recv() => break,
            _ = daemon.shutdown.notified() => break,
            // SIGHUP: re-read settings.toml now (as most daemons do).
            _ = signals.hup.recv() => { let _ = reload_tx.try_send(()); continue; }
        }
    }
    tracing::info!("stopping every service");
    // Let a config apply in progress finish (it may be stopping a removed service), then stop the rest.
    stop_reloading.notify_one();
    let _ = reloader.await;
    monitor.abort();
    daemon.supervisor.shutdown().await;
    let _ = shared.events.send(Event::Shutdown);
    server.abort();
    let _ = std::fs::remove_file(&sock);
    tracing::info!("all services stopped; bye");
    Ok(())
}
