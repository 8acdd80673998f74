//! The task that owns one service: runs its state machine against real processes, probes and timers.

use super::logs::LogTail;
use super::machine::{Action, Input, Machine, Policy, State};
use super::process::{self, Proc};
use super::statefile::{Record, StateFile};
use crate::alerts::AlertSource;
use crate::api::{now_ms, AlertSeverity, Event, ServiceStatus};
use crate::config::ServiceSpec;
use crate::launch::{LaunchError, LaunchPlan};
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;

/// What every service task shares with the supervisor and the control API.
pub struct Shared {
    pub events: broadcast::Sender<Event>,
    /// Shared with the proxy, which answers 503 unless its service is ready.
    pub statuses: Arc<RwLock<BTreeMap<String, ServiceStatus>>>,
    /// The supervisor's alerts (`service-failed:*`, `crash-loop:*`).
    pub alerts: AlertSource,
    pub state_file: StateFile,
    pub client: reqwest::Client,
    pub logs_dir: PathBuf,
    pub config_path: PathBuf,
}

pub enum Cmd {
    /// start / stop / restart; `done` fires once the machine has taken the command (for stop: once the
    /// process group is gone), so a client never reads the state from before its own command.
    Verb(mlxbox_api::service::Verb, oneshot::Sender<()>),
    /// New settings for this service; `restart` when the process itself must change.
    Replace {
        spec: Box<ServiceSpec>,
        plan: Result<LaunchPlan, LaunchError>,
        restart: bool,
    },
    /// Stop the process group and end the task.
    Shutdown(oneshot::Sender<()>),
}

/// How long a port held by another process is waited for before the service fails.
const PORT_WAIT: Duration = Duration::from_secs(2);

enum ProbeKind {
    Readiness,
    Liveness,
}

pub struct Runner {
    pub spec: ServiceSpec,
    pub plan: Result<LaunchPlan, LaunchError>,
    machine: Machine,
    proc: Option<Proc>,
    adopted: bool,
    probe: Option<(ProbeKind, JoinHandle<Result<(), String>>)>,
    next_liveness: Option<Instant>,
    pub log: Arc<LogTail>,
    shared: Arc<Shared>,
    since_ms: u64,
    /// Wall-clock time the service became ready (fixed at the transition, so statuses compare equal).
    ready_since_ms: Option<u64>,
    last_state: Option<State>,
}

pub fn policy_of(spec: &ServiceSpec, stable_after_s: f64) -> Policy {
    Policy {
        restart: spec.restart,
        backoff_max: Duration::from_secs_f64(spec.backoff_max_s),
        max_start_failures: spec.max_start_failures,
        stable_after: Duration::from_secs_f64(stable_after_s),
        liveness_failures: spec.liveness_failures,
        ..Policy::default()
    }
}

impl Runner {
    pub fn new(
        spec: ServiceSpec,
        plan: Result<LaunchPlan, LaunchError>,
        policy: Policy,
        log: Arc<LogTail>,
        shared: Arc<Shared>,
    ) -> Self {
        Runner {
            spec,
            plan,
            machine: Machine::new(policy),
            proc: None,
            adopted: false,
            probe: None,
            next_liveness: None,
            log,
            shared,
            since_ms: now_ms(),
            ready_since_ms: None,
            last_state: None,
        }
    }

    /// Runs until `Shutdown` (or the supervisor drops the channel). `adopt` is a live process of a previous
    /// daemon that runs exactly this plan.
    pub async fn run(mut self, mut rx: mpsc::Receiver<Cmd>, adopt: Option<Proc>, autostart: bool) {
        if let Some(p) = adopt {
            tracing::info!(service = %self.spec.name, pid = p.pid, "adopted running server");
            self.proc = Some(p);
            self.adopted = true;
            self.feed(Input::Adopted).await;
        } else if autostart && self.spec.enabled && self.spec.on_demand {
            self.feed(Input::Unload).await; // idle: the first request that names it loads it
        } else if autostart && self.spec.enabled {
            self.feed(Input::Start).await;
        }
        self.publish();
        // Rotation depends on this poller (readers poll the file themselves). It is a task of its own so
        // a stop in progress (up to stop_timeout_s) does not hold it up.
        let _log_poller = {
            let log = self.log.clone();
            crate::task::AbortOnDrop(tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(500));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let log = log.clone();
                    let _ = tokio::task::spawn_blocking(move || log.poll()).await;
                }
            }))
        };
        loop {
            let wake = self.machine.wake_at();
            let live_due = self.next_liveness.filter(|_| self.probe.is_none());
            let running = self.machine.state().is_running() && self.proc.is_some();
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    None => { self.feed(Input::Stop).await; return; }
                    Some(Cmd::Shutdown(done)) => {
                        self.feed(Input::Stop).await;
                        self.publish();
                        let _ = done.send(());
                        return;
                    }
                    Some(c) => self.command(c).await,
                },
                exit = wait_exit(&mut self.proc), if running => self.on_exit(exit).await,
                res = poll_probe(&mut self.probe), if self.probe.is_some() => self.on_probe(res).await,
                _ = sleep_until(wake), if wake.is_some() => self.feed(Input::Wake).await,
                _ = sleep_until(live_due), if live_due.is_some() => self.start_liveness(),
            }
            self.publish();
        }
    }

    async fn command(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Verb(verb, done) => {
                let input = match verb {
                    mlxbox_api::service::Verb::Start => Input::Start,
                    mlxbox_api::service::Verb::Stop => Input::Stop,
                    mlxbox_api::service::Verb::Restart => Input::Restart,
                    mlxbox_api::service::Verb::Unload => Input::Unload,
                };
                self.feed(input).await;
                self.publish();
                let _ = done.send(());
            }
            Cmd::Replace {
                spec,
                plan,
                restart,
            } => {
                let was_enabled = self.spec.enabled;
                let stable = self.machine.policy.stable_after;
                self.spec = *spec;
                self.plan = plan;
                self.machine.policy = Policy {
                    stable_after: stable,
                    ..policy_of(&self.spec, stable.as_secs_f64())
                };
                let state = self.machine.state();
                if !self.spec.enabled {
                    self.feed(Input::Stop).await;
                } else if restart
                    && (state.is_running()
                        || (!was_enabled && !self.spec.on_demand)
                        || matches!(state, State::Failed | State::Backoff))
                {
                    // A failed service whose settings changed (say, its port) gets a fresh try.
                    self.feed(Input::Restart).await;
                }
                // on_demand switched: an idle service that is now pinned runs; a stopped one that is now
                // on demand (or enabled again) waits idle for its first request.
                match self.machine.state() {
                    State::Idle if self.spec.enabled && !self.spec.on_demand => {
                        self.feed(Input::Start).await
                    }
                    State::Stopped if self.spec.enabled && self.spec.on_demand => {
                        self.feed(Input::Unload).await
                    }
                    _ => {}
                }
            }
            Cmd::Shutdown(_) => unreachable!("handled by run"),
        }
    }

    async fn on_exit(&mut self, status: Option<std::process::ExitStatus>) {
        let (clean, what) = match &status {
            Some(s) => process::describe_exit(s),
            None => (false, "adopted process exited".to_string()),
        };
        if let Some(p) = &mut self.proc {
            p.child = None; // reaped by wait()
        }
        let excerpt = self.log.excerpt(5);
        let mut detail = if excerpt.is_empty() {
            what.clone()
        } else {
            format!("{what}; last output:\n{excerpt}")
        };
        if let Some(hint) = missing_module_hint(&excerpt) {
            let python = self
                .plan
                .as_ref()
                .ok()
                .and_then(|p| p.argv.first().cloned())
                .unwrap_or_else(|| "python3".into());
            detail.push_str(&format!("\n{}", hint.replace("{python}", &python)));
        }
        tracing::warn!(service = %self.spec.name, "server {what}");
        self.feed(Input::Exited { clean, detail }).await;
    }

    async fn on_probe(&mut self, res: (ProbeKind, Result<(), String>)) {
        self.probe = None;
        let input = match res {
            (ProbeKind::Readiness, Ok(())) => Input::ProbeReady,
            (ProbeKind::Readiness, Err(e)) => {
                let excerpt = self.log.excerpt(5);
                let mut msg = if e.contains("the model failed to load") {
                    format!("not ready: {e}")
                } else {
                    format!(
                        "not ready after {} s (ready_timeout_s): {e}",
                        self.spec.ready_timeout_s
                    )
                };
                if !excerpt.is_empty() {
                    msg.push_str(&format!("; last output:\n{excerpt}"));
                }
                Input::ReadyTimeout(msg)
            }
            (ProbeKind::Liveness, r) => {
                self.next_liveness = Some(Instant::now() + self.liveness_interval());
                match r {
                    Ok(()) => Input::LivenessOk,
                    Err(e) => Input::LivenessFailed(e),
                }
            }
        };
        self.feed(input).await;
    }

    fn liveness_interval(&self) -> Duration {
        Duration::from_secs_f64(self.spec.liveness_interval_s)
    }

    /// Feeds an input to the machine and carries out the actions (which may feed more inputs).
    async fn feed(&mut self, input: Input) {
        let mut queue = VecDeque::from([input]);
        while let Some(input) = queue.pop_front() {
            let (was, now) = (self.machine.state(), Instant::now());
            let actions = self.machine.on(input, now);
            if self.machine.state() == State::Backoff && was != State::Backoff {
                // The delay the machine chose, in the log beside the exit that caused it.
                if let Some(at) = self.machine.wake_at() {
                    let s = at.saturating_duration_since(now).as_secs_f64();
                    self.log_note(&format!("backing off: restarting in {s:.2} s"));
                }
            }
            self.publish();
            for a in actions {
                if let Some(next) = self.exec(a).await {
                    queue.push_back(next);
                }
            }
        }
    }

    async fn exec(&mut self, action: Action) -> Option<Input> {
        match action {
            Action::Spawn => Some(self.spawn().await),
            Action::Terminate => {
                if let Some(mut p) = self.proc.take() {
                    let grace = Duration::from_secs_f64(self.spec.stop_timeout_s);
                    let out = process::terminate_group(&mut p, grace).await;
                    tracing::info!(service = %self.spec.name, pid = p.pid, killed = out.killed, took_ms = out.took.as_millis() as u64, "stopped");
                    if out.killed {
                        self.log_note(&format!(
                            "did not exit {} s after SIGTERM: killed (SIGKILL)",
                            self.spec.stop_timeout_s
                        ));
                    }
                }
                self.forget_proc();
                Some(Input::Terminated)
            }
            Action::KillLeftovers => {
                if let Some(p) = self.proc.take() {
                    process::kill_leftovers(p.pgid).await;
                }
                self.forget_proc();
                None
            }
            Action::StartReadinessProbe => {
                let (host, port) = self.endpoint()?;
                let deadline = Instant::now() + Duration::from_secs_f64(self.spec.ready_timeout_s);
                let h = tokio::spawn(super::probe::wait_ready(
                    self.shared.client.clone(),
                    self.spec.probe.clone(),
                    crate::audio::DirectArgs::of(&self.spec),
                    host,
                    port,
                    deadline,
                ));
                self.probe = Some((ProbeKind::Readiness, h));
                None
            }
            Action::StartLiveness => {
                self.next_liveness = Some(Instant::now() + self.liveness_interval());
                None
            }
            Action::CancelProbes => {
                if let Some((_, h)) = self.probe.take() {
                    h.abort();
                }
                self.next_liveness = None;
                None
            }
        }
    }

    fn start_liveness(&mut self) {
        let Some((host, port)) = self.endpoint() else {
            return;
        };
        let timeout = self
            .liveness_interval()
            .clamp(Duration::from_secs(1), Duration::from_secs(10));
        let h = tokio::spawn(super::probe::liveness(
            self.shared.client.clone(),
            self.spec.probe.clone(),
            host,
            port,
            timeout,
        ));
        self.probe = Some((ProbeKind::Liveness, h));
        self.next_liveness = None;
    }

    fn endpoint(&self) -> Option<(String, u16)> {
        self.plan.as_ref().ok().map(|p| (p.host.clone(), p.port))
    }

    async fn spawn(&mut self) -> Input {
        let plan = match &self.plan {
            Ok(p) => p.clone(),
            Err(e) => return Input::Fatal(e.to_string()),
        };
        // A port freed a moment ago (by a service of ours that is stopping for the same config edit) is
        // worth a short wait; a port that stays taken is another program's, and retrying cannot help.
        let mut holder = process::port_in_use(&plan.host, plan.port);
        let t0 = Instant::now();
        while holder.is_some() && t0.elapsed() < PORT_WAIT {
            tokio::time::sleep(Duration::from_millis(50)).await;
            holder = process::port_in_use(&plan.host, plan.port);
        }
        if let Some(holder) = holder {
            let key = self.spec.bind_port_key();
            let at = self
                .spec
                .line_of(key)
                .map(|l| format!("{} line {l}", self.shared.config_path.display()))
                .unwrap_or_else(|| self.shared.config_path.display().to_string());
            let msg = format!(
                "port {} is in use by {holder}; stop it or change {key} of [services.{}] in {at}",
                plan.port, self.spec.name
            );
            self.log_note(&msg);
            return Input::Fatal(msg);
        }
        self.log_note(&format!("starting: {}", shell_words(&plan.argv)));
        match process::spawn(&plan, &self.log.path) {
            Ok(p) => {
                self.shared.state_file.set(
                    &self.spec.name,
                    Some(Record {
                        pid: p.pid,
                        pgid: p.pgid,
                        start_time: p.start_time,
                        argv_hash: plan.hash(),
                        port: plan.port,
                    }),
                );
                tracing::info!(service = %self.spec.name, pid = p.pid, "spawned");
                self.proc = Some(p);
                self.adopted = false;
                Input::Spawned
            }
            // Out of descriptors, processes or memory: retried with backoff (the flood that caused it
            // passes). Not found / not executable: retrying cannot help.
            Err(e) if e.is_transient() => {
                self.log_note(&format!("{e} (will retry)"));
                Input::SpawnFailed(e.to_string())
            }
            Err(e) => {
                self.log_note(&e.to_string());
                Input::Fatal(e.to_string())
            }
        }
    }

    fn forget_proc(&mut self) {
        self.proc = None;
        self.adopted = false;
        self.shared.state_file.set(&self.spec.name, None);
    }

    /// A line of ours in the service's log, so the log tells the whole story.
    fn log_note(&self, msg: &str) {
        use std::io::Write;
        if let Ok(mut f) = crate::paths::append_no_follow(&self.log.path) {
            let _ = writeln!(f, "[mlx-box {}] {msg}", now_ms());
        }
        self.log.poll();
    }

    pub fn status(&self) -> ServiceStatus {
        let state = self.machine.state();
        ServiceStatus {
            name: self.spec.name.clone(),
            kind: self.spec.kind,
            state,
            pid: self.proc.as_ref().map(|p| p.pid),
            port: self.spec.bind_port(),
            frontend_port: self.spec.backend_port.and(self.spec.port),
            model: self.spec.model.clone(),
            restarts: self.machine.restarts,
            memory_bytes: None,
            last_error: match state {
                State::Stopped if !self.spec.enabled => self.spec.disabled_reason.clone(),
                _ => self.machine.last_error().map(str::to_string),
            },
            enabled: self.spec.enabled,
            since_ms: self.since_ms,
            ready_since_ms: self
                .ready_since_ms
                .filter(|_| self.machine.ready_since().is_some()),
            crash_loop: self.machine.crash_loop(),
            stopped_by_request: self.machine.stopped_by_request(),
            adopted: self.adopted,
            on_demand: self.spec.on_demand,
            ranks: self
                .spec
                .distributed
                .as_ref()
                .map(|d| {
                    d.ranks
                        .iter()
                        .enumerate()
                        .map(|(i, r)| match r {
                            crate::config::RankHost::Local => {
                                format!("rank {i}: local (127.0.0.1)")
                            }
                            crate::config::RankHost::Host { name, address } => {
                                format!("rank {i}: {name} ({address})")
                            }
                        })
                        .collect()
                })
                .unwrap_or_default(),
            hostfile: self
                .plan
                .as_ref()
                .ok()
                .and_then(|p| p.files.keys().next())
                .map(|p| p.display().to_string()),
        }
    }

    /// Publishes the status when it changed, and raises/clears this service's alerts.
    fn publish(&mut self) {
        let state = self.machine.state();
        if self.last_state != Some(state) {
            self.since_ms = now_ms();
            self.last_state = Some(state);
            if state == State::Ready
                && self.machine.ready_since().is_some()
                && self.ready_since_ms.is_none()
            {
                self.ready_since_ms = Some(self.since_ms);
            }
        }
        if self.machine.ready_since().is_none() {
            self.ready_since_ms = None;
        }
        let st = self.status();
        {
            let mut map = self.shared.statuses.write().unwrap();
            let prev = map.get(&st.name);
            if prev.map(|p| ServiceStatus {
                memory_bytes: None,
                ..p.clone()
            }) == Some(st.clone())
            {
                return;
            }
            map.insert(st.name.clone(), st.clone());
        }
        let name = &self.spec.name;
        let alerts = &self.shared.alerts;
        if state == State::Failed {
            let why = st.last_error.clone().unwrap_or_default();
            let first = why.lines().next().unwrap_or("").to_string();
            alerts.raise(
                &format!("service-failed:{name}"),
                AlertSeverity::Critical,
                format!("{name} failed"),
                format!("{first}. See `mlx-box logs {name}`, fix the cause, then start it again."),
            );
        } else {
            alerts.clear(&format!("service-failed:{name}"));
        }
        if st.crash_loop {
            alerts.raise(
                &format!("crash-loop:{name}"),
                AlertSeverity::Critical,
                format!("{name} keeps crashing"),
                format!(
                    "It crashed {} times since the daemon started; see `mlx-box logs {name}`.",
                    st.restarts
                ),
            );
        } else {
            alerts.clear(&format!("crash-loop:{name}"));
        }
        let _ = self.shared.events.send(Event::Service(st));
    }
}

async fn wait_exit(proc: &mut Option<Proc>) -> Option<std::process::ExitStatus> {
    let p = proc.as_mut()?;
    match &mut p.child {
        Some(c) => c.wait().await.ok(),
        None => {
            // Adopted: not our child, so poll (cheap: one kill(pid, 0)).
            while process::pid_alive(p.pid) {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            None
        }
    }
}

async fn poll_probe(
    probe: &mut Option<(ProbeKind, JoinHandle<Result<(), String>>)>,
) -> (ProbeKind, Result<(), String>) {
    let Some((kind, h)) = probe.as_mut() else {
        return std::future::pending().await;
    };
    let r = match h.await {
        Ok(r) => r,
        Err(e) => Err(format!("probe task failed: {e}")),
    };
    let kind = match kind {
        ProbeKind::Readiness => ProbeKind::Readiness,
        ProbeKind::Liveness => ProbeKind::Liveness,
    };
    (kind, r)
}

async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}

fn shell_words(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if a.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./=:@,".contains(c))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// What to install when a server died of a missing Python package (the built-in kinds' servers are
/// not in every environment: mlx-audio for tts/stt, mlx-vlm for ocr).
fn missing_module_hint(output: &str) -> Option<String> {
    let at = output.find("No module named '")? + "No module named '".len();
    let module = output[at..].split(['\'', '.']).next()?;
    let package = match module {
        "mlx_audio" | "webrtcvad" => "\"mlx-audio[server]\"",
        "mlx_vlm" => "mlx-vlm",
        "mlx_lm" => "mlx-lm",
        "mlx" => "mlx",
        _ => return None,
    };
    Some(format!(
        "the server's Python has no `{module}`: install it with `{{python}} -m pip install {package}`, or set `python` for this service"
    ))
}

#[cfg(test)]
mod hint_tests {
    #[test]
    fn a_missing_server_package_says_what_to_install() {
        let h = super::missing_module_hint(
            "Traceback …\nModuleNotFoundError: No module named 'mlx_audio.server'",
        )
        .unwrap();
        assert!(h.contains("pip install \"mlx-audio[server]\""), "{h}");
        assert!(super::missing_module_hint("No module named 'webrtcvad'")
            .unwrap()
            .contains("mlx-audio[server]"));
        assert_eq!(super::missing_module_hint("No module named 'numpy'"), None);
        assert_eq!(super::missing_module_hint("all fine"), None);
    }
}
