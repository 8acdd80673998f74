//! The bench service: one benchmark at a time (two would measure each other), its progress on the event
//! stream, its result saved under `<state>/bench/`, and the doctor's checklist. Owns the `bench-throttling`
//! alert (speed fell while the machine heated up during a run); the live throttling rule's alert is the
//! monitor's, so a run never clears what the rule still sees.

use super::monitor::MonitorService;
use crate::alerts::AlertSource;
use crate::api::{AlertSeverity, Event};
use crate::bench::doctor::{DoctorInput, DoctorOptions, DoctorReport};
use crate::bench::{self, BenchDone, BenchOptions, ProgressFn, Target};
use crate::config::{self, Kind};
use crate::supervisor::{State, Supervisor};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use tokio::sync::broadcast;

/// What a pool run says beside its two service results: each member's share of the requests (the
/// pool's counters over the run) and the pool's throughput against `members ×` one member's alone.
fn pool_result(
    r: &bench::BenchResult,
    pool: &config::PoolSpec,
    before: &[(String, u64, u64, u64)],
    after: &[(String, u64, u64, u64)],
) -> mlxbox_api::bench::PoolBench {
    let top = |name: &str| {
        r.services
            .iter()
            .find(|s| s.name == name)
            .and_then(|s| s.levels.iter().max_by_key(|l| l.concurrency))
            .map(|l| l.output_tok_s)
    };
    let combined = top(&pool.name).unwrap_or(0.0);
    let solo_member = r
        .services
        .iter()
        .find(|s| s.name != pool.name)
        .map(|s| s.name.clone());
    let solo = solo_member.as_deref().and_then(top);
    let delta: Vec<(String, u64, u64, u64)> = after
        .iter()
        .map(|(m, q, e, a)| {
            let b = before.iter().find(|x| &x.0 == m);
            let d = |now: u64, f: fn(&(String, u64, u64, u64)) -> u64| {
                now.saturating_sub(b.map(f).unwrap_or(0))
            };
            (m.clone(), d(*q, |x| x.1), d(*e, |x| x.2), d(*a, |x| x.3))
        })
        .collect();
    let total: u64 = delta.iter().map(|d| d.1).sum();
    mlxbox_api::bench::PoolBench {
        name: pool.name.clone(),
        combined_output_tok_s: combined,
        parallel_efficiency: solo
            .filter(|s| *s > 0.0)
            .map(|s| combined / (pool.members.len() as f64 * s)),
        solo_member,
        solo_output_tok_s: solo,
        members: delta
            .into_iter()
            .map(
                |(member, requests, errors, affinity_hits)| mlxbox_api::bench::PoolMemberShare {
                    member,
                    share: if total > 0 {
                        requests as f64 / total as f64
                    } else {
                        0.0
                    },
                    requests,
                    errors,
                    affinity_hits,
                },
            )
            .collect(),
    }
}

/// Why a benchmark or doctor run was not started.
#[derive(Debug, thiserror::Error)]
pub enum BenchRefused {
    #[error(
        "a benchmark is already running ({0}); wait for it, or cancel it (`POST /v1/bench/cancel`)"
    )]
    Busy(String),
    #[error("no service or pool named `{0}` in settings.toml (see `mlx-box status`)")]
    Unknown(String),
    #[error("pool `{0}` cannot be measured: {1}")]
    Pool(String, String),
    #[error("no valid settings are loaded; fix settings.toml first (`mlx-box validate`)")]
    NoSettings,
    #[error("nothing to measure: no enabled chat, ocr or embedding service (name one explicitly)")]
    Nothing,
    #[error("invalid options: {0}")]
    Invalid(String),
}

struct Running {
    id: String,
    cancel: Arc<AtomicBool>,
}

pub struct BenchService {
    supervisor: Arc<Supervisor>,
    monitor: Arc<MonitorService>,
    events: broadcast::Sender<Event>,
    alerts: AlertSource,
    state_dir: PathBuf,
    running: Mutex<Option<Running>>,
    /// The last saved run (read from the history at start), for `/metrics`.
    last: Mutex<Option<Arc<bench::BenchResult>>>,
    /// A pool is measured through its frontend: its members' counters and a key it takes.
    pools: OnceLock<(Arc<super::proxy_host::ProxyHost>, crate::proxy::SharedKeys)>,
}

impl BenchService {
    pub fn new(
        supervisor: Arc<Supervisor>,
        monitor: Arc<MonitorService>,
        events: broadcast::Sender<Event>,
        alerts: AlertSource,
        state_dir: PathBuf,
    ) -> Self {
        let last = bench::history::load(&state_dir, "last").ok().map(Arc::new);
        BenchService {
            supervisor,
            monitor,
            events,
            alerts,
            state_dir,
            running: Mutex::new(None),
            last: Mutex::new(last),
            pools: OnceLock::new(),
        }
    }

    /// What `bench POOL` needs: the pools' counters and the keys (set once the proxy host exists).
    pub fn set_pools(
        &self,
        proxy: Arc<super::proxy_host::ProxyHost>,
        keys: crate::proxy::SharedKeys,
    ) {
        let _ = self.pools.set((proxy, keys));
    }

    /// Each pool member's (requests, errors, affinity hits), to subtract a run's start from its end.
    async fn pool_counts(&self, pool: &str) -> Vec<(String, u64, u64, u64)> {
        let Some((proxy, _)) = self.pools.get() else {
            return vec![];
        };
        proxy
            .pools()
            .await
            .into_iter()
            .filter(|p| p.name == pool)
            .flat_map(|p| p.members)
            .map(|m| (m.member, m.requests, m.errors, m.affinity_hits))
            .collect()
    }

    pub fn state_dir(&self) -> &std::path::Path {
        &self.state_dir
    }

    /// Starts a run in the background; progress and the end go to the event stream, the result to
    /// `<state>/bench/<id>.json`. Returns the run's id.
    pub async fn start(self: &Arc<Self>, opts: BenchOptions) -> Result<String, BenchRefused> {
        check_options(&opts)?;
        check_dataset(&opts).await?;
        let (targets, pool) = match self.pool_targets(&opts.services).await? {
            Some((t, p)) => (t, Some(p)),
            None => (self.targets(&opts.services).await?, None),
        };
        let before = match &pool {
            Some(p) => self.pool_counts(&p.name).await,
            None => vec![],
        };
        let id = bench::history::new_id(crate::api::now_ms());
        let cancel = Arc::new(AtomicBool::new(false));
        {
            let mut slot = self.running.lock().unwrap();
            if let Some(b) = slot.as_ref() {
                return Err(BenchRefused::Busy(b.id.clone()));
            }
            *slot = Some(Running {
                id: id.clone(),
                cancel: cancel.clone(),
            });
        }
        let me = self.clone();
        let run_id = id.clone();
        tokio::spawn(async move {
            let events = me.events.clone();
            let progress: ProgressFn = Arc::new(move |p| {
                let _ = events.send(Event::BenchProgress(p));
            });
            // Machine samples from the daemon's own 1 Hz monitor (no second sampler).
            let monitor = me.monitor.clone();
            let sample: bench::SampleFn = Arc::new(move || monitor.latest());
            let hooks = bench::Hooks {
                progress,
                cancel,
                sample,
                ..bench::Hooks::default()
            };
            let mut r = bench::run(run_id.clone(), opts, targets, hooks).await;
            if let Some(p) = &pool {
                let after = me.pool_counts(&p.name).await;
                r.pool = Some(pool_result(&r, p, &before, &after));
            }
            let saved = bench::history::save(&me.state_dir, &r);
            me.throttling_alert(&r);
            let verdict = r.verdict;
            if saved.is_ok() {
                *me.last.lock().unwrap() = Some(Arc::new(r));
            }
            *me.running.lock().unwrap() = None;
            let _ = me.events.send(Event::BenchDone(BenchDone {
                id: run_id,
                verdict: saved.is_ok().then_some(verdict),
                error: saved.err().map(|e| e.to_string()),
            }));
        });
        Ok(id)
    }

    /// The last saved run.
    pub fn last(&self) -> Option<Arc<bench::BenchResult>> {
        self.last.lock().unwrap().clone()
    }

    /// The id of the run in progress, if any (a window opened mid-run follows it).
    pub fn current(&self) -> Option<String> {
        self.running.lock().unwrap().as_ref().map(|b| b.id.clone())
    }

    /// Stops the run after the requests in flight; its partial result is saved.
    pub fn cancel(&self) -> Option<String> {
        let slot = self.running.lock().unwrap();
        let b = slot.as_ref()?;
        b.cancel.store(true, Ordering::SeqCst);
        Some(b.id.clone())
    }

    /// `bench POOL`: the pool through its frontend (its own port, else the one endpoint), then its
    /// first member of this Mac alone (its own server, the same load) for the parallel efficiency.
    /// `None` when the run names no pool.
    async fn pool_targets(
        &self,
        names: &[String],
    ) -> Result<Option<(Vec<Target>, config::PoolSpec)>, BenchRefused> {
        let Some(settings) = self.supervisor.settings() else {
            return Ok(None);
        };
        let [name] = names else { return Ok(None) };
        let Some(pool) = settings.pools.iter().find(|p| &p.name == name).cloned() else {
            return Ok(None);
        };
        let refuse = |why: &str| BenchRefused::Pool(pool.name.clone(), why.to_string());
        let port = pool
            .port
            .or(settings.server.port)
            .ok_or_else(|| refuse("it has no port and [server] port is off"))?;
        let solo = pool.members.iter().find_map(|(m, _)| match m {
            config::MemberRef::Local(s) => settings.service(s),
            config::MemberRef::Remote { .. } => None,
        });
        // A chat target named after the pool: the requests carry no `model`, which the pool fills in
        // for each member.
        let mut spec = match solo {
            Some(s) => s.clone(),
            None => {
                let text = format!(
                    "[services.{}]\nkind = \"chat\"\nport = {port}\nmodel = \"pool\"\n",
                    pool.name
                );
                config::parse_settings(&settings.path, &text)
                    .0
                    .and_then(|s| s.services.into_iter().next())
                    .ok_or_else(|| refuse("no chat spec"))?
            }
        };
        spec.name = pool.name.clone();
        spec.model = Some(pool.name.clone());
        spec.expect = Default::default();
        let key = self
            .pools
            .get()
            .and_then(|(_, keys)| keys.read().unwrap().bench_secret());
        let mut targets = vec![Target {
            spec,
            base_url: format!("http://127.0.0.1:{port}"),
            skipped: None,
            key,
        }];
        if let Some(s) = solo {
            targets.extend(self.targets(std::slice::from_ref(&s.name)).await?);
        }
        Ok(Some((targets, pool)))
    }

    /// The services a run measures: the named ones, or every enabled chat / ocr / embedding service.
    /// One that is not ready is listed as skipped, with its state.
    async fn targets(&self, names: &[String]) -> Result<Vec<Target>, BenchRefused> {
        let settings = self.supervisor.settings().ok_or(BenchRefused::NoSettings)?;
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
                            Kind::Chat
                                | Kind::Distributed
                                | Kind::Ocr
                                | Kind::Embedding
                                | Kind::Tts
                                | Kind::Stt
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
                if t.skipped.is_none() && state != Some(State::Ready) {
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

    /// Generation speed falling while the machine heats up, seen during a run (cleared by a later run
    /// that does not see it).
    fn throttling_alert(&self, r: &bench::BenchResult) {
        let hot: Vec<&str> = r
            .services
            .iter()
            .filter(|s| s.throttling_suspected)
            .map(|s| s.name.as_str())
            .collect();
        if hot.is_empty() {
            self.alerts.clear("bench-throttling");
            return;
        }
        self.alerts.raise(
            "bench-throttling",
            AlertSeverity::Warning,
            "Thermal throttling suspected during a benchmark",
            format!(
                "During benchmark {}, generation speed of {} fell by 20 % or more while the thermal state rose to {}: check the fans and the room, or lower the load.",
                r.id,
                hot.join(", "),
                r.monitor.max_thermal.as_str()
            ),
        );
    }

    /// The seed's success checklist, now.
    pub async fn doctor(
        &self,
        opts: DoctorOptions,
        served: BTreeMap<String, Vec<String>>,
    ) -> Result<DoctorReport, BenchRefused> {
        if let Some(id) = self.current() {
            return Err(BenchRefused::Busy(id));
        }
        let settings = self.supervisor.settings().ok_or(BenchRefused::NoSettings)?;
        for n in &opts.services {
            if settings.service(n).is_none() {
                return Err(BenchRefused::Unknown(n.clone()));
            }
        }
        let statuses = self.supervisor.statuses().await;
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
            swap_used_bytes: self.monitor.latest().swap_used_bytes,
            logs,
            served,
        };
        Ok(bench::doctor::doctor(input, &opts).await)
    }
}

fn check_options(opts: &BenchOptions) -> Result<(), BenchRefused> {
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
    use crate::bench::workload::MAX_PROMPT_TOKENS;
    if let Some(n) = opts.prompt_tokens {
        if n == 0 || n > MAX_PROMPT_TOKENS || opts.prompt_tokens_spread >= n {
            return Err(BenchRefused::Invalid(format!(
                "prompt_tokens must be 1–{MAX_PROMPT_TOKENS}, and its spread smaller than it"
            )));
        }
    }
    if opts.output_tokens == Some(0) {
        return Err(BenchRefused::Invalid("output_tokens must be ≥ 1".into()));
    }
    let bad_slo = |x: Option<f64>| x.is_some_and(|v| !(v > 0.0 && v.is_finite()));
    if bad_slo(opts.slo_ttft_ms) || bad_slo(opts.slo_tpot_ms) {
        return Err(BenchRefused::Invalid(
            "an SLO must be a positive number of ms".into(),
        ));
    }
    Ok(())
}

/// A dataset that cannot be read is refused now, with its line, not after the run started.
async fn check_dataset(opts: &BenchOptions) -> Result<(), BenchRefused> {
    let Some(d) = opts.dataset.clone() else {
        return Ok(());
    };
    match tokio::task::spawn_blocking(move || crate::bench::workload::load_dataset(&d)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(BenchRefused::Invalid(e.to_string())),
        Err(e) => Err(BenchRefused::Invalid(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::AlertStore;

    fn service(dir: &std::path::Path) -> Arc<BenchService> {
        let (events, _) = broadcast::channel(64);
        let store = AlertStore::new(events.clone());
        let shared = super::super::tests::shared(dir, events.clone(), store.source("supervisor"));
        let supervisor = Arc::new(Supervisor::new(shared, super::super::tests::runtime(dir)));
        let monitor = Arc::new(MonitorService::new(store.source("monitor")));
        Arc::new(BenchService::new(
            supervisor,
            monitor,
            events,
            store.source("bench"),
            dir.to_path_buf(),
        ))
    }

    #[tokio::test]
    async fn bad_options_and_missing_settings_are_refused_before_anything_runs() {
        let dir = tempfile::tempdir().unwrap();
        let b = service(dir.path());
        let bad = BenchOptions {
            concurrency: vec![0],
            ..BenchOptions::default()
        };
        assert!(matches!(b.start(bad).await, Err(BenchRefused::Invalid(_))));
        let rate = BenchOptions {
            rate: Some(f64::NAN),
            ..BenchOptions::default()
        };
        assert!(matches!(b.start(rate).await, Err(BenchRefused::Invalid(_))));
        let none = b.start(BenchOptions::default()).await;
        assert!(matches!(none, Err(BenchRefused::NoSettings)), "{none:?}");
        assert!(matches!(
            b.doctor(DoctorOptions::default(), Default::default()).await,
            Err(BenchRefused::NoSettings)
        ));
        assert_eq!(b.current(), None);
        assert_eq!(b.cancel(), None);
    }

    #[tokio::test]
    async fn a_run_of_a_service_that_is_not_ready_ends_with_it_skipped_and_saved() {
        let dir = tempfile::tempdir().unwrap();
        let b = service(dir.path());
        let text = "[services.chat]\nport = 1\nmodel = \"m\"\nenabled = false\n";
        let s = config::parse_settings(std::path::Path::new("s.toml"), text)
            .0
            .unwrap();
        b.supervisor.apply(s).await;
        let mut rx = b.events.subscribe();
        let opts = BenchOptions {
            services: vec!["chat".into()],
            ..BenchOptions::default()
        };
        let id = b.start(opts).await.unwrap();
        assert_eq!(b.current().as_deref(), Some(id.as_str()));
        let done = tokio::time::timeout(std::time::Duration::from_secs(20), async {
            loop {
                if let Ok(Event::BenchDone(d)) = rx.recv().await {
                    return d;
                }
            }
        })
        .await
        .expect("the run ends");
        assert_eq!(done.id, id);
        assert_eq!(done.error, None);
        let r = bench::history::load(dir.path(), &id).unwrap();
        assert!(r.services[0]
            .skipped
            .as_deref()
            .unwrap_or("")
            .contains("not ready"));
        assert_eq!(b.current(), None);
        b.supervisor.shutdown().await;
    }
}
