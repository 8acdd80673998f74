//! The daemon as a set of owned services. Each owns its state and is reached through its handle; none
//! reaches into another's fields:
//!
//! | service | owns | alerts it writes |
//! |---|---|---|
//! | `config` ([`ConfigService`]) | settings.toml: status, reads, validation, edits, writes | `config-invalid` |
//! | `keys` ([`KeyService`]) | the served key set and tokens; the key store while a daemon runs | `key-store`, `token-store`, `keys-migrated`, `plaintext-keys` |
//! | `proxy` ([`ProxyHost`]) | the frontend listeners and their counters | `proxy` |
//! | `budget` ([`Budget`]) | the memory-budget check | `over-budget` |
//! | `demand` ([`demand::Demand`]) | on-demand loads, making room (group, LRU), idle unloads | `cannot-load:*` |
//! | `monitor` ([`MonitorService`]) | sampler, 10 min of samples, the alert rules | the rules' ids |
//! | `bench` ([`BenchService`]) | the running benchmark, the doctor | `bench-throttling` |
//! | `supervisor` ([`Supervisor`]) | the services' processes and states | `service-failed:*`, `crash-loop:*` |
//! | `fleet` ([`fleet::Fleet`]) | the `[hosts]` Macs as last polled: link, status | `host-unreachable:*`, `host-link-slow:*` |
//! | `served` ([`served::ServedCheck`]) | what each server really runs against the settings | `served-model:*` |
//! | `awake` ([`crate::power::Awake`]) | the lock against idle sleep (`[app] prevent_sleep`) | — |
//!
//! [`Services`] composes them and holds the flows that cross services: a settings change (config → keys →
//! budget → proxy → supervisor), a key change, a manual start, the monitor tick, the status report.
//! `daemon.rs` builds it; `control::server` dispatches requests to it.

pub mod bench;
pub mod budget;
pub mod config;
pub mod demand;
pub mod fleet;
pub mod keys;
pub mod monitor;
pub mod proxy_host;
pub mod served;

pub use bench::{BenchRefused, BenchService};
pub use budget::Budget;
pub use config::{ConfigService, EditRefused, Loaded};
pub use keys::KeyService;
pub use monitor::MonitorService;
pub use proxy_host::ProxyHost;

use crate::alerts::AlertStore;
use crate::api::{Event, MemoryStatus, MonitorTick, ServiceStatus, StatusReport, ThermalStatus};
use crate::launch::Runtime;
use crate::supervisor::{process, statefile::StateFile, Shared, State, Supervisor};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::{broadcast, mpsc, Notify};

/// The monitor ticks (seconds) between two process scans for the services' memory.
const SERVICE_MEMORY_EVERY: u64 = 5;

pub struct Services {
    pub config: ConfigService,
    pub keys: KeyService,
    pub proxy: Arc<ProxyHost>,
    pub budget: Arc<Budget>,
    pub demand: Arc<demand::Demand>,
    pub monitor: Arc<MonitorService>,
    pub bench: Arc<BenchService>,
    pub fleet: Arc<fleet::Fleet>,
    pub served: served::ServedCheck,
    /// The lock against idle sleep, taken and released by the monitor tick.
    pub awake: Arc<crate::power::Awake>,
    pub supervisor: Arc<Supervisor>,
    pub alerts: Arc<AlertStore>,
    pub events: broadcast::Sender<Event>,
    /// Notified by a shutdown request.
    pub shutdown: Notify,
    pub state_dir: PathBuf,
    /// The last minute of the request histograms, for the monitor tick's live figures.
    live: std::sync::Mutex<crate::metrics::LiveWindow>,
    /// Keeps the proxy's loader alive (the proxy holds it weakly: the loader holds the proxy).
    _loader: Arc<dyn crate::proxy::Loader>,
    /// Memory per process group from the last process scan (see `services_with_memory`).
    group_memory: tokio::sync::Mutex<Option<(u64, BTreeMap<u32, u64>)>>,
    /// The daemon's TCP faces (`[metrics] listen`, `[control] listen`), applied with the rest.
    faces: tokio::sync::Mutex<Vec<Box<dyn Face>>>,
}

/// Why a manual start was refused.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StartRefused {
    #[error("not started: the services would not fit in memory and refuse_over_budget = true (see the over-budget alert in `mlx-box status`)")]
    OverBudget,
}

/// A listener of the daemon's own (not a service's) that follows the applied settings: bound, rebound or
/// closed by [`Services::reload`], the one place that applies settings.
pub trait Face: Send {
    fn apply<'a>(
        &'a mut self,
        settings: &'a crate::config::Settings,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>>;
}

impl Services {
    /// Builds every service for a daemon on `state_dir` reading `config_path` (absolute); `reload` pokes the
    /// task that calls [`Services::reload`].
    pub fn new(
        state_dir: PathBuf,
        config_path: PathBuf,
        rt: Runtime,
        reload: mpsc::Sender<()>,
    ) -> Arc<Services> {
        crate::tls::install_crypto_provider();
        let (events, _) = broadcast::channel(1024);
        let alerts = AlertStore::new(events.clone());
        let shared = Arc::new(Shared {
            alerts: alerts.source("supervisor"),
            events: events.clone(),
            statuses: Default::default(),
            state_file: StateFile::load(state_dir.join("state.json")),
            client: reqwest::Client::builder()
                .no_proxy()
                .pool_max_idle_per_host(0)
                .build()
                .expect("http client"),
            logs_dir: state_dir.join("logs"),
            config_path: config_path.clone(),
        });
        let supervisor = Arc::new(Supervisor::new(shared.clone(), rt));
        let monitor = Arc::new(MonitorService::new(alerts.source("monitor")));
        let keys = KeyService::new(&state_dir, config_path.clone(), alerts.source("keys"));
        // The Responses store (`<state>/responses/`), read back before any listener serves.
        crate::proxy::open_response_store(&state_dir, crate::proxy::RESPONSE_STORE_DEFAULTS);
        let proxy = Arc::new(ProxyHost::new(
            shared.statuses.clone(),
            keys.shared(),
            alerts.source("proxy"),
        ));
        let budget = Arc::new(Budget::new(alerts.source("budget")));
        let demand = demand::Demand::new(
            supervisor.clone(),
            proxy.clone(),
            budget.clone(),
            alerts.source("demand"),
        );
        let loader: Arc<dyn crate::proxy::Loader> = Arc::new(demand::DemandLoader(demand.clone()));
        proxy.set_loader(Arc::downgrade(&loader));
        let fleet = fleet::Fleet::new(alerts.source("fleet"), events.clone());
        let directory: Arc<dyn crate::proxy::Directory> = fleet.clone();
        proxy.set_directory(Arc::downgrade(&directory));
        let bench = Arc::new(BenchService::new(
            supervisor.clone(),
            monitor.clone(),
            events.clone(),
            alerts.source("bench"),
            state_dir.clone(),
        ));
        bench.set_pools(proxy.clone(), keys.shared());
        Arc::new(Services {
            config: ConfigService::new(
                config_path,
                events.clone(),
                alerts.source("config"),
                reload,
            ),
            keys,
            proxy,
            budget,
            demand,
            _loader: loader,
            bench,
            monitor,
            supervisor,
            fleet,
            served: served::ServedCheck::new(alerts.source("served")),
            awake: Arc::new(crate::power::Awake::new(crate::power::for_this_os())),
            alerts,
            events,
            shutdown: Notify::new(),
            state_dir,
            live: Default::default(),
            group_memory: Default::default(),
            faces: Default::default(),
        })
    }

    /// Re-reads settings.toml and applies it when it is valid and differs from what runs: the one place
    /// that applies settings (config → monitor rules → keys → hosts → budget → proxy → on-demand watch →
    /// supervisor → the daemon's TCP faces). The faces are applied every time, so one that could not bind
    /// tries again.
    pub async fn reload(&self) {
        if let Loaded::Changed(s) = self.config.load() {
            self.monitor.set_rules(s.alerts.clone());
            self.keys.load(Some(&s)).await;
            self.fleet.apply(&s.hosts, s.alerts.link_rtt_warn_ms);
            if self.budget.check(&s).await {
                self.proxy.apply(&s).await;
                self.demand.watch(&s);
                self.supervisor.apply(*s).await;
            }
        }
        if let Some(applied) = self.supervisor.settings() {
            for face in self.faces.lock().await.iter_mut() {
                face.apply(&applied).await;
            }
        }
    }

    /// Adds a TCP face; the next [`Services::reload`] binds it.
    pub async fn add_face(&self, face: Box<dyn Face>) {
        self.faces.lock().await.push(face);
    }

    /// Closes the TCP faces (at shutdown: their handlers hold the services).
    pub async fn close_faces(&self) {
        self.faces.lock().await.clear();
    }

    /// After a change of the keys: reload them, and restart the listeners when the first key came or the
    /// last went (a non-loopback listener needs one). Returns how many keys are served.
    pub async fn keys_changed(&self) -> usize {
        let n = self.keys.load(None).await;
        self.apply_proxies().await;
        n
    }

    /// The listeners for the settings that run (after a key was added or removed).
    pub async fn apply_proxies(&self) {
        if let Some(s) = self.supervisor.settings() {
            self.proxy.apply(&s).await;
        }
    }

    /// Before a manual start: idle on-demand services make room for a pinned `target` (least recently
    /// used first); then, would what then runs (what runs now + `target`) fit? Raises the over-budget
    /// alert when not; refuses (Err) under `[app] refuse_over_budget`.
    pub async fn admit_start(&self, target: &str) -> Result<(), StartRefused> {
        if target != "all" {
            self.demand.make_room_for_pinned(target).await;
        }
        let Some(applied) = self.supervisor.settings() else {
            return Ok(());
        };
        // A copy, trimmed to what would run: the budget's input, never the applied settings.
        let mut plan = (*applied).clone();
        let running: Vec<String> = self
            .supervisor
            .statuses()
            .await
            .into_iter()
            .filter(|s| s.state.is_running() || s.state == State::Backoff)
            .map(|s| s.name)
            .collect();
        plan.services.retain(|s| {
            (target == "all" && !s.on_demand) || s.name == target || running.contains(&s.name)
        });
        if self.budget.check_start(&plan).await {
            Ok(())
        } else {
            Err(StartRefused::OverBudget)
        }
    }

    /// Every service's status with the memory of its process group, from the last process scan. The
    /// scan reads every process of the machine (milliseconds), so the monitor tick makes it every
    /// `SERVICE_MEMORY_EVERY` seconds and a status or a scrape reads its result; only a process group
    /// it has not seen yet (a service just started) makes one here.
    async fn services_with_memory(&self) -> Vec<ServiceStatus> {
        let mut services = self.supervisor.statuses().await;
        let pgids: Vec<u32> = services.iter().filter_map(|s| s.pid).collect();
        // A service whose state changed since the last scan (it just got ready, say) is scanned now:
        // its memory at spawn time says nothing of a loaded model.
        let changed_since = |scanned_ms: u64| {
            services
                .iter()
                .any(|s| s.pid.is_some() && s.since_ms >= scanned_ms)
        };
        let stale = self
            .group_memory
            .lock()
            .await
            .as_ref()
            .is_some_and(|(at, _)| changed_since(*at));
        let memory = self.group_memory(&pgids, stale).await;
        for s in services.iter_mut() {
            s.memory_bytes = s.pid.and_then(|p| memory.get(&p).copied());
        }
        services
    }

    /// The memory of these process groups: scanned again when `scan`, or when one of them is not in the
    /// last scan; else that scan's figures.
    async fn group_memory(&self, pgids: &[u32], scan: bool) -> BTreeMap<u32, u64> {
        let mut cache = self.group_memory.lock().await;
        let known = cache
            .as_ref()
            .is_some_and(|(_, m)| pgids.iter().all(|p| m.contains_key(p)));
        if scan || !known {
            let want = pgids.to_vec();
            let at = crate::api::now_ms();
            let per_group = tokio::task::spawn_blocking(move || group_memory(&want))
                .await
                .unwrap_or_default();
            *cache = Some((at, per_group));
        }
        cache.as_ref().map(|c| c.1.clone()).unwrap_or_default()
    }

    pub async fn status(&self) -> StatusReport {
        let services = self.services_with_memory().await;
        let sample = self.monitor.latest();
        StatusReport {
            version: env!("CARGO_PKG_VERSION").to_string(),
            daemon_pid: std::process::id(),
            config_path: self.config.path().display().to_string(),
            config: self.config.status(),
            services,
            memory: {
                let mut m = MemoryStatus::from_sample(&sample);
                if let Some(e) = self.budget.applied() {
                    m.budget_bytes = e.budget_bytes;
                    m.budget_source = e.budget_source.clone();
                }
                m
            },
            thermal: ThermalStatus {
                state: sample.thermal,
            },
            alerts: self.alerts.active(),
            hosts: self.fleet.statuses(),
            pools: self.proxy.pools().await,
            awake: self.awake.status(),
        }
    }

    /// The 1 Hz tick (tick `n`): sample and run the rules, the proxy's share (live tok/s, the throttling
    /// rule), then tell the clients.
    pub async fn tick(&self, n: u64) {
        let sample = self.monitor.tick();
        let since = crate::api::now_ms().saturating_sub(10 * 60 * 1000);
        let decode = self.proxy.tick(since).await;
        self.monitor.throughput(&decode, since);
        // Fed every tick, listened to or not, so the window is whole when a client comes.
        let live = self.live.lock().unwrap().tick(sample.t_ms);
        // What each server really runs against the settings, every 10 s.
        if n % 10 == 5 {
            let statuses = self.supervisor.statuses().await;
            self.served.run(self.supervisor.settings(), statuses).await;
        }
        // The process scan, every few ticks, off the path of statuses and scrapes.
        let service_memory: Option<BTreeMap<String, u64>> =
            if n.is_multiple_of(SERVICE_MEMORY_EVERY) {
                let services = self.supervisor.statuses().await;
                let pgids: Vec<u32> = services.iter().filter_map(|s| s.pid).collect();
                let memory = self.group_memory(&pgids, true).await;
                let m: BTreeMap<String, u64> = services
                    .into_iter()
                    .filter_map(|s| Some((s.name, *memory.get(&s.pid?)?)))
                    .collect();
                self.demand.set_live(m.clone());
                Some(m)
            } else {
                None
            };
        // Idle on-demand services are unloaded; servers past their footprint cap restarted.
        self.demand.tick().await;
        self.keep_awake().await;
        if self.events.receiver_count() > 0 {
            let _ = self.events.send(Event::Monitor(MonitorTick {
                sample,
                service_memory,
                live,
            }));
        }
    }

    /// Takes or releases the lock against idle sleep for the applied `prevent_sleep` and the servers
    /// loaded now (a process of ours starting, ready or unhealthy), off the tick's path: a system bus
    /// that is slow to answer delays no sample (an update still waiting makes the next ones skip).
    async fn keep_awake(&self) {
        let mode = self
            .supervisor
            .settings()
            .map(|s| s.app.prevent_sleep)
            .unwrap_or_default();
        let loaded = self
            .supervisor
            .statuses()
            .await
            .iter()
            .filter(|s| s.state.is_running())
            .count();
        let (awake, events) = (self.awake.clone(), self.events.clone());
        tokio::spawn(async move {
            if let Some(a) = awake.update(mode, loaded).await {
                let _ = events.send(Event::Awake(a));
            }
        });
    }

    /// Asks the daemon to stop every service and exit.
    pub fn request_shutdown(&self) {
        self.shutdown.notify_one();
        let _ = self.events.send(Event::Shutdown);
    }
}

/// The memory of each process group (macOS: the physical footprint, which counts Metal buffers; else
/// RSS); 0 for a group with no process left.
fn group_memory(pgids: &[u32]) -> BTreeMap<u32, u64> {
    use sysinfo::{ProcessRefreshKind, ProcessesToUpdate, System};
    if pgids.is_empty() {
        return BTreeMap::new();
    }
    let Ok(mut sys) = System::new() else {
        return BTreeMap::new();
    };
    sys.refresh_processes_specifics(
        ProcessesToUpdate::All,
        true,
        // Threads are not listed as processes of their own (they share their process's memory).
        ProcessRefreshKind::nothing().with_memory().without_tasks(),
    );
    process::groups_memory(&sys, pgids)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::alerts::AlertSource;
    use std::path::Path;

    pub(crate) fn shared(
        dir: &Path,
        events: broadcast::Sender<Event>,
        alerts: AlertSource,
    ) -> Arc<Shared> {
        Arc::new(Shared {
            alerts,
            events,
            statuses: Default::default(),
            state_file: StateFile::load(dir.join("state.json")),
            client: {
                crate::tls::install_crypto_provider();
                reqwest::Client::new()
            },
            logs_dir: dir.join("logs"),
            config_path: dir.join("settings.toml"),
        })
    }

    pub(crate) fn runtime(dir: &Path) -> Runtime {
        Runtime {
            scripts_dir: dir.join("runtime"),
            default_python: "python3".into(),
        }
    }

    /// The cross-service flow of a settings change: a valid file reaches the supervisor and the
    /// listeners; an invalid edit of it changes nothing that runs.
    #[tokio::test]
    async fn a_settings_change_flows_from_the_file_to_the_supervisor_and_the_listeners() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("settings.toml");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let text = format!(
            "[services.chat]\nkind = \"command\"\ncommand = [\"sleep\", \"30\"]\nport = {port}\nbackend_port = 1\n"
        );
        std::fs::write(&path, &text).unwrap();
        let (tx, _rx) = mpsc::channel(4);
        let s = Services::new(
            dir.path().to_path_buf(),
            path.clone(),
            runtime(dir.path()),
            tx,
        );
        std::fs::create_dir_all(dir.path().join("logs")).unwrap();
        s.reload().await;
        let mut st = s.status().await;
        for _ in 0..100 {
            if st.services.first().is_some_and(|x| x.state.is_running()) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            st = s.status().await;
        }
        assert!(st.config.valid);
        assert_eq!(st.services.len(), 1);
        assert!(st.services[0].state.is_running(), "{:?}", st.services[0]);
        assert_eq!(st.services[0].frontend_port, Some(port));
        assert!(s.proxy.stats().await.contains_key("chat"), "listener up");
        // A broken file: reported, nothing that runs changes.
        std::fs::write(&path, "[services.chat]\nport = \"x\"\n").unwrap();
        s.reload().await;
        let st = s.status().await;
        assert!(!st.config.valid);
        assert_eq!(st.services.len(), 1);
        assert!(st.alerts.iter().any(|a| a.id == "config-invalid"));
        s.supervisor.shutdown().await;
    }
}
