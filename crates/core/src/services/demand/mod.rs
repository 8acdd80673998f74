//! On demand: loads an idle service for the requests that name it (one load however many ask at once),
//! makes room first, and unloads what has been idle for `idle_stop_s`. Owns the `cannot-load:*` alerts.
//!
//! Making room, before anything is spawned:
//! 1. the other running members of its `exclusive_group` are unloaded, once their requests have
//!    finished (bounded by the loading service's `load_timeout_s`);
//! 2. if what would then run (the estimates, or the live footprint where it is larger) plus the reserve
//!    (`[alerts] headroom_warn_percent`) passes the budget, least-recently-used idle on-demand services
//!    are unloaded — never one with a request in flight or waiting, never a pinned one — and each is
//!    waited for until its process group is gone, so the memory is back before the new server starts;
//! 3. if even that cannot make it fit, nothing is unloaded or started: the requests get a 503 naming what
//!    holds the memory, and the `cannot-load:NAME` alert says the same.
//!
//! Loads and unloads take turns (one admission at a time), so two loads never both count the same
//! free memory.
//!
//! The footprint cap (`max_footprint_gb`, any service): when the process scan finds a ready server past
//! it, its new requests are held at the door (they wait as for a load), the requests in flight finish
//! (bounded by `load_timeout_s`), the server is restarted, the held requests go to the new one, and an
//! info alert (`footprint:NAME`) gives the footprint before and after.

mod coalesce;
mod room;

use super::budget::Budget;
use super::proxy_host::ProxyHost;
use crate::alerts::AlertSource;
use crate::api::{AlertSeverity, ServiceStatus};
use crate::config::{ServiceSpec, Settings};
use crate::proxy::ProxyStats;
use crate::supervisor::{State, Supervisor, Verb};
use coalesce::Coalesce;
use room::{Holder, Room};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// Why a service was not loaded; the message says what to do. Shared by every request that waited.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LoadError {
    #[error("the daemon has no settings yet; retry")]
    NoSettings,
    #[error("`{0}` is no longer in settings.toml")]
    NotInSettings(String),
    #[error("`{name}` failed to load {since_s} s ago ({why}); requests load it again in {wait_s} s, or start it now with `mlx-box start {name}`")]
    FailedRecently {
        name: String,
        since_s: u64,
        why: String,
        wait_s: u64,
    },
    #[error("`{name}` could not be loaded within load_timeout_s = {timeout_s} s: other loads and unloads took the time")]
    NoTurn { name: String, timeout_s: f64 },
    #[error("`{0}` is stopped; start it with `mlx-box start {0}`")]
    Stopped(String),
    #[error("`{0}` is not supervised")]
    NotSupervised(String),
    #[error("`{name}` failed to load: {why}")]
    Failed { name: String, why: String },
    #[error("`{0}` was stopped while it loaded")]
    StoppedWhileLoading(String),
    #[error("`{name}` did not get ready within load_timeout_s = {timeout_s} s")]
    NotReady { name: String, timeout_s: f64 },
    #[error("the daemon is shutting down")]
    ShuttingDown,
    #[error("`{other}` (exclusive_group \"{group}\" with `{name}`) still had requests in flight after load_timeout_s = {timeout_s} s")]
    GroupBusy {
        name: String,
        other: String,
        group: String,
        timeout_s: f64,
    },
    /// Even unloading every idle on-demand service would not make room (the message names what holds).
    #[error("{0}")]
    NoRoom(String),
    #[error("not enough memory to load `{name}` ({need}): a service it would have unloaded got a request meanwhile; retry")]
    Raced { name: String, need: String },
    #[error("the load of `{0}` was abandoned; retry")]
    Abandoned(String),
    #[error("{0}")]
    Supervisor(String),
}

impl From<crate::supervisor::SupervisorError> for LoadError {
    fn from(e: crate::supervisor::SupervisorError) -> Self {
        LoadError::Supervisor(e.to_string())
    }
}

pub struct Demand {
    supervisor: Arc<Supervisor>,
    proxy: Arc<ProxyHost>,
    budget: Arc<Budget>,
    alerts: AlertSource,
    /// The daemon's runtime: loads run there, whichever proxy thread asked.
    rt: tokio::runtime::Handle,
    /// One load (or footprint restart) per service at a time; requests wait on it.
    loads: Coalesce<LoadError>,
    /// One admission (make room + start) or idle unload at a time.
    turn: tokio::sync::Mutex<()>,
    /// Each service's footprint from the last process scan (bytes), and how many scans there were.
    live: Mutex<(u64, BTreeMap<String, u64>)>,
    /// Services drained for a footprint restart now.
    held: Mutex<std::collections::HashSet<String>>,
    /// The services with an idle timeout or a footprint cap, from the settings applied (`watch`).
    watched: Mutex<Vec<ServiceSpec>>,
    /// When each service was last restarted for its footprint (one restart a minute at most).
    capped_at: Mutex<HashMap<String, Instant>>,
    /// When a request's load of each service last ended `failed`: requests do not load it again before
    /// [`FAILED_LOAD_RETRY`] (each load may evict others); a manual start does.
    failed_at: Mutex<HashMap<String, Instant>>,
}

/// How long after a failed load requests wait before they load the service again.
const FAILED_LOAD_RETRY: Duration = Duration::from_secs(30);

/// A service in this state holds (or is about to give back) its memory.
fn holds_memory(state: State) -> bool {
    state.is_running() || matches!(state, State::Stopping | State::Backoff)
}

fn gb(b: u64) -> String {
    format!("{:.1} GB", b as f64 / (1u64 << 30) as f64)
}

impl Demand {
    pub fn new(
        supervisor: Arc<Supervisor>,
        proxy: Arc<ProxyHost>,
        budget: Arc<Budget>,
        alerts: AlertSource,
    ) -> Arc<Demand> {
        Arc::new(Demand {
            supervisor,
            proxy,
            budget,
            alerts,
            rt: tokio::runtime::Handle::current(),
            loads: Coalesce::default(),
            turn: tokio::sync::Mutex::new(()),
            live: Mutex::new((0, BTreeMap::new())),
            held: Mutex::new(Default::default()),
            capped_at: Mutex::new(HashMap::new()),
            failed_at: Mutex::new(HashMap::new()),
            watched: Mutex::new(vec![]),
        })
    }

    /// The settings being applied: which services the tick watches (idle unloads, the footprint cap).
    pub fn watch(&self, settings: &Settings) {
        *self.watched.lock().unwrap() = settings
            .services
            .iter()
            .filter(|s| s.enabled)
            .filter(|s| s.on_demand && s.idle_stop_s.is_some() || s.max_footprint_bytes.is_some())
            .cloned()
            .collect();
    }

    /// The services' footprints from the monitor's process scan.
    pub fn set_live(&self, memory: BTreeMap<String, u64>) {
        let mut live = self.live.lock().unwrap();
        *live = (live.0 + 1, memory);
    }

    /// Is `name` drained for a footprint restart?
    pub fn holds(&self, name: &str) -> bool {
        self.held.lock().unwrap().contains(name)
    }

    fn status(&self, name: &str) -> Option<ServiceStatus> {
        self.supervisor.status_of(name)
    }

    /// Loads `name` for a request: one load per service however many wait; resolves when it is ready.
    pub async fn load(self: &Arc<Self>, name: &str) -> Result<(), LoadError> {
        let waiter = self.loads.join_or_start(name, |finish| {
            let (me, n) = (self.clone(), name.to_string());
            // On the daemon's runtime, and not tied to the request: a client that goes away does not
            // cancel the load the others wait for.
            self.rt
                .spawn(async move { finish.send(me.load_now(&n).await) });
        });
        waiter
            .outcome()
            .await
            .unwrap_or_else(|| Err(LoadError::Abandoned(name.to_string())))
    }

    async fn load_now(&self, name: &str) -> Result<(), LoadError> {
        let Some(settings) = self.supervisor.settings() else {
            return Err(LoadError::NoSettings);
        };
        let Some(spec) = settings.service(name).cloned() else {
            return Err(LoadError::NotInSettings(name.to_string()));
        };
        if let Some(why) = self.failed_recently(name) {
            return Err(why);
        }
        let deadline = Instant::now() + Duration::from_secs_f64(spec.load_timeout_s);
        let events = self.supervisor.subscribe();
        self.admit_and_start(&settings, &spec, deadline).await?;
        let r = self
            .wait_ready(name, events, deadline, spec.load_timeout_s)
            .await;
        if r.is_err() && self.status(name).is_some_and(|s| s.state == State::Failed) {
            self.failed_at
                .lock()
                .unwrap()
                .insert(name.to_string(), Instant::now());
        }
        r
    }

    /// Why a request must not load `name` now: it failed, and its last load by a request ended so less
    /// than [`FAILED_LOAD_RETRY`] ago.
    fn failed_recently(&self, name: &str) -> Option<LoadError> {
        let st = self.status(name).filter(|s| s.state == State::Failed)?;
        let since = self.failed_at.lock().unwrap().get(name)?.elapsed();
        let wait = FAILED_LOAD_RETRY.checked_sub(since)?;
        Some(LoadError::FailedRecently {
            name: name.to_string(),
            since_s: since.as_secs(),
            why: st.last_error.unwrap_or_else(|| "see `mlx-box logs`".into()),
            wait_s: wait.as_secs().max(1),
        })
    }

    /// A manual start of an on-demand service: room is made as for a request, then it starts (its
    /// readiness is not waited for).
    pub async fn start(&self, name: &str) -> Result<(), LoadError> {
        let Some(settings) = self.supervisor.settings() else {
            return Ok(());
        };
        let Some(spec) = settings.service(name).cloned() else {
            return Ok(()); // the supervisor names the unknown service
        };
        let deadline = Instant::now() + Duration::from_secs_f64(spec.load_timeout_s);
        self.failed_at.lock().unwrap().remove(name);
        self.admit_and_start(&settings, &spec, deadline).await
    }

    /// Before a manual start of a pinned service: idle on-demand services are unloaded, least recently
    /// used first and never a busy one, until it fits, as for an on-demand load. When even that cannot
    /// make room nothing is unloaded, and the caller's budget check decides (an over-budget alert, or a
    /// refusal under `refuse_over_budget`).
    pub async fn make_room_for_pinned(&self, name: &str) {
        let Some(settings) = self.supervisor.settings() else {
            return;
        };
        let Some(spec) = settings.service(name).filter(|s| !s.on_demand).cloned() else {
            return;
        };
        let deadline = Instant::now() + Duration::from_secs_f64(spec.load_timeout_s);
        let Ok(_turn) = tokio::time::timeout_at(deadline, self.turn.lock()).await else {
            return;
        };
        if let Err(why) = self.make_room(&settings, &spec, deadline).await {
            // Not this service's alert to keep: the budget check says it, for a pinned service.
            self.alerts.clear(&format!("cannot-load:{name}"));
            tracing::info!(service = %name, "no room made before a manual start: {why}");
        }
    }

    /// Makes room for `spec` and starts it, unless it is already up or on its way.
    async fn admit_and_start(
        &self,
        settings: &Settings,
        spec: &ServiceSpec,
        deadline: Instant,
    ) -> Result<(), LoadError> {
        let name = &spec.name;
        let timeout = || LoadError::NoTurn {
            name: name.clone(),
            timeout_s: spec.load_timeout_s,
        };
        let _turn = tokio::time::timeout_at(deadline, self.turn.lock())
            .await
            .map_err(|_| timeout())?;
        // An unload in progress finishes first (its memory is not back yet).
        while self
            .status(name)
            .is_some_and(|s| s.state == State::Stopping)
        {
            if Instant::now() >= deadline {
                return Err(timeout());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        match self.status(name).map(|s| s.state) {
            Some(State::Starting | State::Ready | State::Unhealthy) => return Ok(()),
            Some(State::Stopped) => return Err(LoadError::Stopped(name.clone())),
            None => return Err(LoadError::NotSupervised(name.clone())),
            _ => {}
        }
        self.unload_group(settings, spec, deadline).await?;
        self.make_room(settings, spec, deadline).await?;
        self.supervisor.command(name, Verb::Start).await?;
        Ok(())
    }

    /// Waits until `name` is ready (Ok), failed or stopped (Err), or the deadline.
    async fn wait_ready(
        &self,
        name: &str,
        mut events: tokio::sync::broadcast::Receiver<crate::api::Event>,
        deadline: Instant,
        timeout_s: f64,
    ) -> Result<(), LoadError> {
        let name_ = || name.to_string();
        loop {
            let st = self.status(name);
            match st.as_ref().map(|s| s.state) {
                Some(State::Ready | State::Unhealthy) => {
                    self.alerts.clear(&format!("cannot-load:{name}"));
                    return Ok(());
                }
                Some(State::Failed) => {
                    let why = st.and_then(|s| s.last_error).unwrap_or_default();
                    return Err(LoadError::Failed { name: name_(), why });
                }
                Some(State::Stopped | State::Idle) | None => {
                    return Err(LoadError::StoppedWhileLoading(name_()));
                }
                _ => {}
            }
            // Any event (or a lag) is a reason to look again; statuses are cheap to read.
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Err(_) => {
                    return Err(LoadError::NotReady {
                        name: name_(),
                        timeout_s,
                    })
                }
                Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) => {
                    return Err(LoadError::ShuttingDown)
                }
                Ok(_) => {}
            }
        }
    }

    fn busy(stats: &BTreeMap<String, ProxyStats>, name: &str) -> bool {
        stats
            .get(name)
            .is_some_and(|s| s.in_flight + s.waiting + s.loading > 0)
    }

    /// The other running members of `spec`'s group are unloaded once their requests finish.
    async fn unload_group(
        &self,
        settings: &Settings,
        spec: &ServiceSpec,
        deadline: Instant,
    ) -> Result<(), LoadError> {
        let Some(group) = &spec.exclusive_group else {
            return Ok(());
        };
        let running = |n: &str| {
            self.status(n)
                .is_some_and(|s| s.state.is_running() || s.state == State::Backoff)
        };
        for other in room::rivals(settings, spec, running) {
            while Self::busy(&self.proxy.stats().await, &other.name) {
                if Instant::now() >= deadline {
                    return Err(LoadError::GroupBusy {
                        name: spec.name.clone(),
                        other: other.name.clone(),
                        group: group.clone(),
                        timeout_s: spec.load_timeout_s,
                    });
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            tracing::info!(service = %other.name, for_ = %spec.name, %group, "unloading (exclusive group)");
            self.supervisor.command(&other.name, Verb::Unload).await?;
        }
        Ok(())
    }

    /// Unloads least-recently-used idle on-demand services until `spec` fits the budget; refuses (and
    /// unloads nothing) when even all of them would not make room (the plan: [`room::plan`]).
    async fn make_room(
        &self,
        settings: &Settings,
        spec: &ServiceSpec,
        deadline: Instant,
    ) -> Result<(), LoadError> {
        let Some(estimate) = self.budget.applied() else {
            return Ok(());
        };
        let Some(budget) = estimate.budget_bytes else {
            return Ok(());
        };
        let reserve = (budget as f64 * settings.alerts.headroom_warn_percent / 100.0) as u64;
        let estimated = |n: &str| {
            estimate
                .services
                .iter()
                .find(|s| s.name == n)
                .and_then(|s| s.total_bytes)
        };
        let need = estimated(&spec.name).unwrap_or(0);
        let stats = self.proxy.stats().await;
        let live = self.live.lock().unwrap().1.clone();
        let holders: Vec<Holder> = settings
            .services
            .iter()
            .filter(|o| o.name != spec.name)
            .filter_map(|o| {
                let st = self.status(&o.name)?;
                if !holds_memory(st.state) {
                    return None;
                }
                let bytes = estimated(&o.name)
                    .unwrap_or(0)
                    .max(live.get(&o.name).copied().unwrap_or(0));
                Some(Holder {
                    name: o.name.clone(),
                    bytes,
                    evictable: o.on_demand
                        && st.state != State::Stopping
                        && !Self::busy(&stats, &o.name),
                    last_used_ms: stats
                        .get(&o.name)
                        .and_then(|s| s.last_request_ms)
                        .unwrap_or(0)
                        .max(st.ready_since_ms.unwrap_or(st.since_ms)),
                })
            })
            .collect();
        let victims = match room::plan(holders.clone(), need, reserve, budget) {
            Room::Fits { unload } => unload,
            Room::NoRoom { held, held_bytes } => {
                let others: Vec<String> = held
                    .iter()
                    .map(|h| {
                        let why = match settings.service(&h.name) {
                            Some(s) if !s.on_demand => "pinned",
                            _ => "busy",
                        };
                        format!("`{}` {} ({why})", h.name, gb(h.bytes))
                    })
                    .collect();
                let msg = format!(
                    "not enough memory to load `{}` ({}): the budget is {} ({}) with {} kept free, and {} held by {}; unload one (mlx-box unload NAME), make it on_demand, or lower a context_length",
                    spec.name,
                    gb(need),
                    gb(budget),
                    estimate.budget_source.as_deref().unwrap_or("memory"),
                    gb(reserve),
                    gb(held_bytes),
                    if others.is_empty() { "nothing".to_string() } else { others.join(", ") },
                );
                self.alerts.raise(
                    &format!("cannot-load:{}", spec.name),
                    AlertSeverity::Warning,
                    format!("Not enough memory to load {}", spec.name),
                    msg.clone(),
                );
                return Err(LoadError::NoRoom(msg));
            }
        };
        for v in victims {
            // It may have been asked for since the plan was made: then it stays, and the check below
            // decides.
            if Self::busy(&self.proxy.stats().await, &v.name) {
                continue;
            }
            if Instant::now() >= deadline {
                break;
            }
            tracing::info!(service = %v.name, for_ = %spec.name, bytes = v.bytes, "unloading (least recently used) to make room");
            self.supervisor.command(&v.name, Verb::Unload).await?;
        }
        // What was not unloaded (busy again, or the deadline) is still held.
        let still: u64 = holders
            .iter()
            .filter(|h| self.status(&h.name).is_some_and(|s| holds_memory(s.state)))
            .map(|h| h.bytes)
            .sum();
        if still.saturating_add(need).saturating_add(reserve) > budget {
            return Err(LoadError::Raced {
                name: spec.name.clone(),
                need: gb(need),
            });
        }
        Ok(())
    }

    /// The 1 Hz tick: unloads on-demand services with nothing in flight for their `idle_stop_s`, and
    /// restarts servers past their `max_footprint_gb` (each in a task of its own: a stubborn server's
    /// stop timeout must not hold up the tick).
    pub async fn tick(self: &Arc<Self>) {
        let watched = self.watched.lock().unwrap().clone();
        if watched.is_empty() {
            return;
        }
        let stats = self.proxy.stats().await;
        let now = crate::api::now_ms();
        for spec in &watched {
            self.footprint_check(spec);
            if !spec.on_demand {
                continue;
            }
            let Some(last) = self.idle_since(&stats, &spec.name) else {
                continue;
            };
            let idle_ms = (spec.idle_stop_s.unwrap_or(f64::MAX) * 1000.0) as u64;
            if now.saturating_sub(last) < idle_ms {
                continue;
            }
            let (me, name, idle_s) = (self.clone(), spec.name.clone(), spec.idle_stop_s);
            tokio::spawn(async move {
                // Take the turn, and look again: a request may have come in meanwhile.
                let _turn = me.turn.lock().await;
                let stats = me.proxy.stats().await;
                if me.idle_since(&stats, &name) != Some(last) {
                    return;
                }
                tracing::info!(service = %name, idle_s, "unloading (idle)");
                let _ = me.supervisor.command(&name, Verb::Unload).await;
            });
        }
    }

    /// Past its footprint cap (and not restarted for that within a minute): hold its requests, drain,
    /// restart.
    fn footprint_check(self: &Arc<Self>, spec: &ServiceSpec) {
        let Some(cap) = spec.max_footprint_bytes else {
            return;
        };
        let Some(before) = self.live.lock().unwrap().1.get(&spec.name).copied() else {
            return;
        };
        let ready = self
            .status(&spec.name)
            .is_some_and(|s| s.state == State::Ready);
        if before <= cap || !ready {
            return;
        }
        let name = spec.name.clone();
        let finish = {
            let mut capped = self.capped_at.lock().unwrap();
            if capped
                .get(&name)
                .is_some_and(|t| t.elapsed() < Duration::from_secs(60))
            {
                return;
            }
            // The job first: a held request waits on it as on a load.
            let Some(finish) = self.loads.start_if_idle(&name) else {
                return;
            };
            capped.insert(name.clone(), Instant::now());
            self.held.lock().unwrap().insert(name.clone());
            crate::proxy::HELD_SERVICES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            finish
        };
        let (me, spec) = (self.clone(), spec.clone());
        tokio::spawn(async move {
            let r = me.drain_and_restart(&spec, cap, before).await;
            me.held.lock().unwrap().remove(&name);
            crate::proxy::HELD_SERVICES.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            finish.send(r);
        });
    }

    async fn drain_and_restart(
        &self,
        spec: &ServiceSpec,
        cap: u64,
        before: u64,
    ) -> Result<(), LoadError> {
        let name = &spec.name;
        let budget = Duration::from_secs_f64(spec.load_timeout_s);
        tracing::info!(service = %name, before, cap, "past max_footprint_gb: draining, then restarting");
        // The requests in flight finish first (bounded: a stream that outlasts it is cut by the restart).
        let t0 = Instant::now();
        loop {
            let stats = self.proxy.stats().await;
            let busy = stats
                .get(name.as_str())
                .is_some_and(|s| s.in_flight + s.waiting > 0);
            if !busy || t0.elapsed() >= budget {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let events = self.supervisor.subscribe();
        self.supervisor.command(name, Verb::Restart).await?;
        let r = self
            .wait_ready(name, events, Instant::now() + budget, spec.load_timeout_s)
            .await;
        // The footprint after: from the first process scan once it is ready again (every 5 s).
        let scans = self.live.lock().unwrap().0;
        let t1 = Instant::now();
        let mut after = None;
        while t1.elapsed() < Duration::from_secs(12) && r.is_ok() {
            let scanned = {
                let live = self.live.lock().unwrap();
                (live.0 > scans).then(|| live.1.get(name.as_str()).copied())
            };
            if let Some(a) = scanned {
                after = a;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let after = after.map(gb).unwrap_or_else(|| "not measured yet".into());
        self.alerts.raise(
            &format!("footprint:{name}"),
            AlertSeverity::Info,
            format!("{name} restarted at its memory cap"),
            format!(
                "Its server had grown to {} (max_footprint_gb = {:.1}); its requests were held while it restarted. Now: {after}.{}",
                gb(before),
                cap as f64 / (1u64 << 30) as f64,
                match &r {
                    Ok(()) => String::new(),
                    Err(e) => format!(" The restart failed: {e}"),
                }
            ),
        );
        r
    }

    /// For a ready service with no request in flight or waiting: since when it has been unused (its
    /// last request, or its getting ready).
    fn idle_since(&self, stats: &BTreeMap<String, ProxyStats>, name: &str) -> Option<u64> {
        let st = self.status(name)?;
        if !matches!(st.state, State::Ready | State::Unhealthy) || Self::busy(stats, name) {
            return None;
        }
        Some(
            stats
                .get(name)
                .and_then(|s| s.last_request_ms)
                .unwrap_or(0)
                .max(st.ready_since_ms.unwrap_or(st.since_ms)),
        )
    }
}

/// The proxy's view: a request for an idle service waits on [`Demand::load`].
pub struct DemandLoader(pub Arc<Demand>);

impl crate::proxy::Loader for DemandLoader {
    fn load(
        self: Arc<Self>,
        service: String,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> {
        Box::pin(async move { self.0.load(&service).await.map_err(|e| e.to_string()) })
    }

    fn holds(&self, service: &str) -> bool {
        self.0.holds(service)
    }
}
