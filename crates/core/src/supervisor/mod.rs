//! The supervisor: one task per service (see `service.rs`), config changes applied as diffs, adoption of
//! the servers a previous daemon left running.

pub mod diff;
pub mod logs;
pub mod machine;
pub mod probe;
pub mod process;
mod service;
pub mod statefile;

pub use machine::State;
pub use service::Shared;

use crate::api::ServiceStatus;
use crate::config::Settings;
use crate::launch::{plan, Runtime};
use diff::{diff_settings, ServiceChange};
use logs::LogTail;
use process::Proc;
use service::{policy_of, Cmd, Runner};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, Mutex};

struct Handle {
    tx: mpsc::Sender<Cmd>,
    log: Arc<LogTail>,
    task: tokio::task::JoinHandle<()>,
}

pub use mlxbox_api::service::Verb;

#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error("no service named `{name}`; known services: {known}")]
    UnknownService { name: String, known: String },
}

pub struct Supervisor {
    pub shared: Arc<Shared>,
    rt: Runtime,
    inner: Mutex<Inner>,
    /// Service names in file order; outside `inner` so listings never wait for a config apply.
    order: std::sync::RwLock<Vec<String>>,
    /// The settings applied last: the one owner of them. Swapped whole when an apply has handed every
    /// runner its spec; readers take the `Arc` (no copy, no wait behind an apply in progress).
    applied: std::sync::RwLock<Option<Arc<Settings>>>,
}

struct Inner {
    handles: BTreeMap<String, Handle>,
    /// The order of the config file, for listings.
    order: Vec<String>,
}

impl Supervisor {
    pub fn new(shared: Arc<Shared>, rt: Runtime) -> Self {
        Supervisor {
            shared,
            rt,
            inner: Mutex::new(Inner {
                handles: BTreeMap::new(),
                order: vec![],
            }),
            order: Default::default(),
            applied: Default::default(),
        }
    }

    pub fn runtime(&self) -> &Runtime {
        &self.rt
    }

    /// Applies settings: the first time, adopts what a previous daemon left and starts every enabled
    /// service; later, only what the diff names is touched.
    pub async fn apply(&self, new: Settings) {
        let mut inner = self.inner.lock().await;
        let old = self.settings();
        inner.order = new.services.iter().map(|s| s.name.clone()).collect();
        *self.order.write().unwrap() = inner.order.clone();
        let mut removed = vec![];
        match &old {
            None => {
                let mut adoptable = self.adopt_or_reap(&new).await;
                for spec in &new.services {
                    let adopt = adoptable.remove(&spec.name);
                    self.spawn_runner(&mut inner, &new, &spec.name, adopt, true);
                }
            }
            Some(old) => {
                let diff = diff_settings(old, &new, &self.rt);
                for change in diff.changes {
                    tracing::info!(?change, "config change");
                    let restart = matches!(change, ServiceChange::Restart(_));
                    match change {
                        ServiceChange::Added(n) => {
                            self.spawn_runner(&mut inner, &new, &n, None, true)
                        }
                        ServiceChange::Removed(n) => {
                            if let Some(h) = inner.handles.remove(&n) {
                                removed.push((n, h));
                            }
                        }
                        ServiceChange::Restart(n) | ServiceChange::Update(n) => {
                            let spec = new
                                .service(&n)
                                .expect("changed service is in new settings")
                                .clone();
                            let p = plan(&spec, &new, &self.rt);
                            if let Some(h) = inner.handles.get(&n) {
                                let _ =
                                    h.tx.send(Cmd::Replace {
                                        spec: Box::new(spec),
                                        plan: p,
                                        restart,
                                    })
                                    .await;
                            }
                        }
                    }
                }
            }
        }
        *self.applied.write().unwrap() = Some(Arc::new(new));
        drop(inner);
        // Removed services are stopped outside the lock (a stubborn one may take its stop timeout), in
        // parallel; status and commands keep answering meanwhile.
        futures_util::future::join_all(removed.into_iter().map(|(n, h)| async move {
            stop_handle(h).await;
            n
        }))
        .await
        .into_iter()
        .for_each(|n| {
            self.shared.statuses.write().unwrap().remove(&n);
            self.shared.alerts.clear(&format!("service-failed:{n}"));
            self.shared.alerts.clear(&format!("crash-loop:{n}"));
            let _ = self
                .shared
                .events
                .send(crate::api::Event::ServiceRemoved { name: n });
        });
    }

    fn spawn_runner(
        &self,
        inner: &mut Inner,
        settings: &Settings,
        name: &str,
        adopt: Option<Proc>,
        autostart: bool,
    ) {
        let spec = settings.service(name).expect("service in settings").clone();
        let p = plan(&spec, settings, &self.rt);
        let log = LogTail::new(
            logs::log_path(&self.shared.logs_dir, name),
            settings.app.log_max_bytes,
            settings.app.log_files,
            settings.app.log_tail_lines,
        );
        let policy = policy_of(&spec, settings.app.stable_after_s);
        let runner = Runner::new(spec, p, policy, log.clone(), self.shared.clone());
        // Publish a first status now, so a status call right after `apply` lists every service.
        self.shared
            .statuses
            .write()
            .unwrap()
            .insert(name.to_string(), runner.status());
        let (tx, rx) = mpsc::channel(16);
        let task = tokio::spawn(runner.run(rx, adopt, autostart));
        inner
            .handles
            .insert(name.to_string(), Handle { tx, log, task });
    }

    /// Reads the state file of a previous daemon: returns the live processes that run exactly what the
    /// new settings ask for; stops every other process it lists.
    async fn adopt_or_reap(&self, settings: &Settings) -> BTreeMap<String, Proc> {
        let mut adopt = BTreeMap::new();
        for (name, rec) in self.shared.state_file.records() {
            let pid_live = process::pid_alive(rec.pid);
            let alive = pid_live
                && process::process_start_time(rec.pid)
                    .is_some_and(|t| t.abs_diff(rec.start_time) <= 1);
            let wanted = settings
                .service(&name)
                .filter(|s| s.enabled)
                .and_then(|s| plan(s, settings, &self.rt).ok())
                .is_some_and(|p| p.hash() == rec.argv_hash && p.port == rec.port);
            if alive && wanted {
                adopt.insert(
                    name,
                    Proc {
                        pid: rec.pid,
                        pgid: rec.pgid,
                        start_time: rec.start_time,
                        child: None,
                    },
                );
                continue;
            }
            if alive {
                tracing::info!(service = %name, pid = rec.pid, "reaping a server the previous daemon left (no longer wanted)");
                let mut p = Proc {
                    pid: rec.pid,
                    pgid: rec.pgid,
                    start_time: rec.start_time,
                    child: None,
                };
                let grace = settings
                    .service(&name)
                    .map(|s| s.stop_timeout_s)
                    .unwrap_or(10.0);
                process::terminate_group(&mut p, Duration::from_secs_f64(grace)).await;
            } else if !pid_live && process::group_alive(rec.pgid) {
                // The leader is dead (so its pid, which is the pgid, is not reused by a live process):
                // what is left in the group are orphans of our server.
                tracing::info!(service = %name, pgid = rec.pgid, "reaping leftovers of a dead server");
                process::kill_leftovers(rec.pgid).await;
            }
            self.shared.state_file.set(&name, None);
        }
        adopt
    }

    /// start / stop / restart one service, or `all`.
    pub async fn command(&self, target: &str, verb: Verb) -> Result<Vec<String>, SupervisorError> {
        let inner = self.inner.lock().await;
        let settings = self.settings();
        let names: Vec<String> = if target == "all" {
            inner
                .order
                .iter()
                .filter(|n| {
                    // `start all` leaves alone what cannot be launched, and what loads on demand.
                    let spec = settings.as_ref().and_then(|s| s.service(n));
                    match verb {
                        Verb::Stop | Verb::Unload => true,
                        Verb::Start | Verb::Restart => {
                            spec.is_some_and(|s| s.enabled && !s.on_demand)
                        }
                    }
                })
                .cloned()
                .collect()
        } else if inner.handles.contains_key(target) {
            vec![target.to_string()]
        } else {
            return Err(SupervisorError::UnknownService {
                name: target.to_string(),
                known: if inner.order.is_empty() {
                    "(none)".into()
                } else {
                    inner.order.join(", ")
                },
            });
        };
        let mut acks = vec![];
        for n in &names {
            if let Some(h) = inner.handles.get(n) {
                let (tx, rx) = oneshot::channel();
                if h.tx.send(Cmd::Verb(verb, tx)).await.is_ok() {
                    acks.push(rx);
                }
            }
        }
        drop(inner);
        // Every command is sent before any is awaited, so `stop all` stops services in parallel.
        for rx in acks {
            let _ = rx.await;
        }
        Ok(names)
    }

    pub fn log_tail(&self, name: &str) -> Option<Arc<LogTail>> {
        self.inner
            .try_lock()
            .ok()
            .and_then(|i| i.handles.get(name).map(|h| h.log.clone()))
            .or_else(|| {
                // Busy applying a config, or a service removed: its log file, if the name is one a
                // service may have (a name from a URL is never a path: no `/`, no `..`, no `%2F`).
                let path = logs::log_path(&self.shared.logs_dir, logs::file_name(name)?);
                path.is_file()
                    .then(|| LogTail::new(path, u64::MAX, 1, 10_000))
            })
    }

    /// Statuses in config order.
    pub async fn statuses(&self) -> Vec<ServiceStatus> {
        let order = self.order.read().unwrap().clone();
        let map = self.shared.statuses.read().unwrap();
        order.iter().filter_map(|n| map.get(n).cloned()).collect()
    }

    /// One service's status now (none: not supervised).
    pub fn status_of(&self, name: &str) -> Option<ServiceStatus> {
        self.shared.statuses.read().unwrap().get(name).cloned()
    }

    /// The supervisor's events from now on (state changes: what a waiter for readiness watches).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<crate::api::Event> {
        self.shared.events.subscribe()
    }

    /// The settings applied last (none before the first valid file).
    pub fn settings(&self) -> Option<Arc<Settings>> {
        self.applied.read().unwrap().clone()
    }

    /// Stops every service (in parallel) and waits until every process group is gone. When no valid
    /// settings were ever applied, the servers a previous daemon left are stopped too: nothing supervises
    /// them otherwise.
    pub async fn shutdown(&self) {
        let mut inner = self.inner.lock().await;
        if self.settings().is_none() {
            let none = Settings {
                path: Default::default(),
                server: crate::config::ServerSettings::new("127.0.0.1"),
                app: Default::default(),
                alerts: Default::default(),
                metrics: Default::default(),
                control: Default::default(),
                hosts: vec![],
                pools: vec![],
                services: vec![],
            };
            self.adopt_or_reap(&none).await;
        }
        let handles: Vec<Handle> = std::mem::take(&mut inner.handles).into_values().collect();
        futures_util::future::join_all(handles.into_iter().map(stop_handle)).await;
    }
}

async fn stop_handle(h: Handle) {
    let (tx, rx) = oneshot::channel();
    if h.tx.send(Cmd::Shutdown(tx)).await.is_ok() {
        let _ = rx.await;
    }
    let _ = h.task.await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::AlertStore;
    use crate::api::Event;

    fn settings(text: &str) -> Settings {
        crate::config::parse_settings(std::path::Path::new("s.toml"), text)
            .0
            .expect("valid settings")
    }

    async fn wait_for(s: &Supervisor, name: &str, want: State) -> ServiceStatus {
        for _ in 0..200 {
            if let Some(st) = s.statuses().await.into_iter().find(|x| x.name == name) {
                if st.state == want {
                    return st;
                }
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("{name} never reached {want}: {:?}", s.statuses().await);
    }

    /// The supervisor alone (no daemon, no proxy): settings in, processes started, stopped by a verb,
    /// restarted only when an edit changes the process, removed with the service, all gone at shutdown.
    #[tokio::test]
    async fn applies_settings_takes_verbs_and_shuts_down() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("logs")).unwrap();
        let (events, _) = tokio::sync::broadcast::channel::<Event>(256);
        let store = AlertStore::new(events.clone());
        let shared = crate::services::tests::shared(dir.path(), events, store.source("supervisor"));
        let s = Supervisor::new(shared, crate::services::tests::runtime(dir.path()));
        // `probe = "tcp"` on a port nothing listens on: the process runs, the service stays starting.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let one = |extra: &str| {
            format!(
                "[services.a]\nkind = \"command\"\ncommand = [\"sleep\", \"60\"]\nport = {port}\nprobe = \"tcp\"\n{extra}"
            )
        };
        s.apply(settings(&one(""))).await;
        let first = wait_for(&s, "a", State::Starting).await;
        let pid = first.pid.expect("a process");
        assert!(s.log_tail("a").is_some());

        // An edit that does not change the process keeps it.
        s.apply(settings(&one("stop_timeout_s = 5\n"))).await;
        let same = wait_for(&s, "a", State::Starting).await;
        assert_eq!(same.pid, Some(pid), "supervision-only change: no restart");

        assert_eq!(s.command("a", Verb::Stop).await.unwrap(), ["a"]);
        wait_for(&s, "a", State::Stopped).await;
        assert!(matches!(
            s.command("nope", Verb::Start).await,
            Err(SupervisorError::UnknownService { .. })
        ));
        s.command("all", Verb::Start).await.unwrap();
        let again = wait_for(&s, "a", State::Starting).await;
        assert_ne!(again.pid, Some(pid));

        // The service removed from the file: stopped and gone from the listing.
        s.apply(settings(&format!("[services.b]\nkind = \"command\"\ncommand = [\"sleep\", \"60\"]\nport = {port}\nenabled = false\n"))).await;
        assert!(s.statuses().await.iter().all(|x| x.name != "a"));
        s.shutdown().await;
        let alive =
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(again.pid.unwrap() as i32), None);
        assert!(alive.is_err(), "the process is gone after shutdown");
    }
}
