//! The state machine of one service, pure: inputs and an explicit `now` in, actions out. No processes, no
//! clock of its own, so every transition (and the backoff arithmetic) is unit-tested with a fake clock.
//!
//! ```text
//! stopped ─start→ starting ─ready→ ready ⇄ unhealthy
//!                    │  ↑             │         │ (liveness failed N times)
//!        crash/timeout  └─ backoff ←──┴─ crash ─┘
//!                    ↓
//!                 failed (start failed max_start_failures times, or the port is held by another process)
//! any running state ─stop→ stopping → stopped
//! ```

use crate::config::RestartPolicy;
pub use mlxbox_api::service::State;
use std::time::{Duration, Instant};

/// Restart settings of one service.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub restart: RestartPolicy,
    /// Second and later restarts wait base × 2^(n-2), capped at `backoff_max`.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// ± fraction of random jitter on each delay (0 in tests).
    pub jitter: f64,
    pub max_start_failures: u32,
    /// Ready for this long → the next crash counts as a first crash again.
    pub stable_after: Duration,
    pub liveness_failures: u32,
    /// Consecutive crashes (each after becoming ready, none stable) that count as a crash loop.
    pub crash_loop_after: u32,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            restart: RestartPolicy::OnFailure,
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            jitter: 0.2,
            max_start_failures: 3,
            stable_after: Duration::from_secs(60),
            liveness_failures: 3,
            crash_loop_after: 3,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// Manual (or initial) start: clears `failed` and the failure counters.
    Start,
    Stop,
    Restart,
    /// Stop the server and leave the service idle (on demand: the next request starts it).
    Unload,
    /// A live process of a previous daemon was adopted: probe it as if it were starting.
    Adopted,
    Spawned,
    /// The spawn failed for a passing reason (out of descriptors, processes, memory): back off and
    /// retry, without counting towards `max_start_failures`.
    SpawnFailed(String),
    /// The port is held by a process that is not ours: retrying cannot help.
    Fatal(String),
    ProbeReady,
    ReadyTimeout(String),
    LivenessOk,
    LivenessFailed(String),
    /// The process exited on its own. `clean` = exit code 0. `detail` = reason + last log lines.
    Exited {
        clean: bool,
        detail: String,
    },
    /// A terminate we asked for has finished: the whole process group is gone.
    Terminated,
    /// The backoff timer fired.
    Wake,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Check the port, spawn the process in its own group; answer with Spawned / SpawnFailed / Fatal.
    Spawn,
    /// SIGTERM the group, wait for all of it, SIGKILL after the stop timeout; answer with Terminated.
    Terminate,
    /// The leader died on its own: SIGKILL what is left of its group (no grace: it is an orphan).
    KillLeftovers,
    StartReadinessProbe,
    StartLiveness,
    CancelProbes,
}

/// What to do once a terminate finishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AfterStop {
    Stay,
    /// Unloaded: idle, not stopped.
    Idle,
    StartFresh,
    /// The process failed (readiness timeout or liveness): count it like a crash.
    Failure {
        before_ready: bool,
    },
}

#[derive(Debug, Clone)]
pub struct Machine {
    pub policy: Policy,
    state: State,
    pub restarts: u32,
    /// Consecutive failures before ever getting ready: `max_start_failures` of them → `failed`.
    start_failures: u32,
    /// Consecutive failures of any kind since the last stable period (or manual start): drives backoff.
    failures: u32,
    liveness_fails: u32,
    ready_since: Option<Instant>,
    last_error: Option<String>,
    wake_at: Option<Instant>,
    after_stop: AfterStop,
    /// Set while a crash loop is in progress (for alerts).
    crash_loop: bool,
    /// The last stop or unload was asked for (`mlx-box stop`, the dashboard, idle unload), not a
    /// failure: the doctor skips such a service instead of failing it.
    by_request: bool,
    rng: u64,
}

impl Machine {
    pub fn new(policy: Policy) -> Self {
        let seed = std::process::id() as u64 ^ 0x9E37_79B9_7F4A_7C15;
        Machine {
            policy,
            state: State::Stopped,
            restarts: 0,
            start_failures: 0,
            failures: 0,
            liveness_fails: 0,
            ready_since: None,
            last_error: None,
            wake_at: None,
            after_stop: AfterStop::Stay,
            crash_loop: false,
            by_request: false,
            rng: seed,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }
    pub fn wake_at(&self) -> Option<Instant> {
        self.wake_at
    }
    pub fn ready_since(&self) -> Option<Instant> {
        self.ready_since
    }
    pub fn crash_loop(&self) -> bool {
        self.crash_loop
    }

    pub fn stopped_by_request(&self) -> bool {
        self.by_request && matches!(self.state, State::Stopped | State::Idle | State::Stopping)
    }

    /// Feeds one input; returns the actions to carry out, in order.
    pub fn on(&mut self, input: Input, now: Instant) -> Vec<Action> {
        use Action::*;
        use State::*;
        match input {
            Input::Stop | Input::Unload => self.by_request = true,
            Input::Start | Input::Restart | Input::Adopted => self.by_request = false,
            _ => {}
        }
        match (self.state, input) {
            (Stopped | Failed | Backoff | Idle, Input::Start | Input::Restart) => {
                self.reset_failures();
                self.spawn()
            }
            (Starting | Ready | Unhealthy, Input::Start) => vec![],
            (Stopping, Input::Start | Input::Restart) => {
                self.after_stop = AfterStop::StartFresh;
                vec![]
            }
            (Starting | Ready | Unhealthy, Input::Restart) => {
                self.reset_failures();
                self.terminate(AfterStop::StartFresh)
            }
            (Starting | Ready | Unhealthy, Input::Stop) => {
                self.reset_failures();
                self.terminate(AfterStop::Stay)
            }
            (Backoff | Failed, Input::Stop) => {
                self.reset_failures();
                self.state = Stopped;
                vec![]
            }
            (Stopping, Input::Stop) => {
                self.after_stop = AfterStop::Stay;
                vec![]
            }
            (Stopped, Input::Stop) => vec![],
            (Idle, Input::Stop) => {
                self.state = Stopped;
                vec![]
            }
            (Starting | Ready | Unhealthy, Input::Unload) => {
                self.reset_failures();
                self.terminate(AfterStop::Idle)
            }
            (Stopped | Backoff | Failed, Input::Unload) => {
                self.reset_failures();
                self.state = Idle;
                vec![]
            }
            (Stopping, Input::Unload) => {
                self.after_stop = AfterStop::Idle;
                vec![]
            }
            (Idle, Input::Unload) => vec![],

            (_, Input::Adopted) => {
                self.state = Starting;
                vec![StartReadinessProbe]
            }
            (Starting, Input::Spawned) => vec![StartReadinessProbe],
            (Starting, Input::SpawnFailed(e)) => {
                self.last_error = Some(e);
                self.failures += 1;
                let delay = self.delay(self.failures.max(2));
                self.state = State::Backoff;
                self.wake_at = Some(now + delay);
                vec![]
            }
            (Starting, Input::Fatal(e)) => {
                self.last_error = Some(e);
                self.state = Failed;
                vec![]
            }
            (Starting, Input::ProbeReady) => {
                self.state = Ready;
                self.ready_since = Some(now);
                self.start_failures = 0;
                self.liveness_fails = 0;
                vec![StartLiveness]
            }
            (Starting, Input::ReadyTimeout(e)) => {
                self.last_error = Some(e);
                self.terminate(AfterStop::Failure { before_ready: true })
            }
            (Unhealthy, Input::LivenessOk) => {
                self.state = Ready;
                self.liveness_fails = 0;
                vec![]
            }
            (Ready, Input::LivenessOk) => {
                self.liveness_fails = 0;
                if self.is_stable(now) {
                    // A stable period: the next failure counts as a first one again.
                    self.failures = 0;
                    self.crash_loop = false;
                }
                vec![]
            }
            (Ready | Unhealthy, Input::LivenessFailed(e)) => {
                self.liveness_fails += 1;
                self.state = Unhealthy;
                if self.liveness_fails >= self.policy.liveness_failures {
                    self.last_error = Some(format!(
                        "liveness probe failed {} times in a row: {e}",
                        self.liveness_fails
                    ));
                    self.terminate(AfterStop::Failure {
                        before_ready: false,
                    })
                } else {
                    vec![]
                }
            }
            (Starting | Ready | Unhealthy, Input::Exited { clean, detail }) => {
                let before_ready = self.state == Starting;
                let mut acts = vec![CancelProbes, KillLeftovers];
                if clean && !before_ready && self.policy.restart != RestartPolicy::Always {
                    self.state = Stopped;
                    self.ready_since = None;
                    self.last_error = Some(detail);
                    return acts;
                }
                self.last_error = Some(detail);
                acts.extend(self.failure(now, before_ready));
                acts
            }
            (Stopping, Input::Terminated) => {
                match std::mem::replace(&mut self.after_stop, AfterStop::Stay) {
                    AfterStop::Stay => {
                        self.ready_since = None;
                        self.state = Stopped;
                        vec![]
                    }
                    AfterStop::Idle => {
                        self.ready_since = None;
                        self.state = Idle;
                        vec![]
                    }
                    AfterStop::StartFresh => {
                        self.ready_since = None;
                        self.spawn()
                    }
                    // `failure` reads ready_since: was it up long enough to count as stable?
                    AfterStop::Failure { before_ready } => self.failure(now, before_ready),
                }
            }
            (Backoff, Input::Wake) => {
                self.wake_at = None;
                self.spawn()
            }
            // Anything else is stale (e.g. a probe result that raced with a stop): ignore it.
            _ => vec![],
        }
    }

    fn reset_failures(&mut self) {
        self.start_failures = 0;
        self.failures = 0;
        self.crash_loop = false;
        self.wake_at = None;
    }

    fn spawn(&mut self) -> Vec<Action> {
        self.state = State::Starting;
        self.wake_at = None;
        vec![Action::Spawn]
    }

    fn terminate(&mut self, after: AfterStop) -> Vec<Action> {
        self.state = State::Stopping;
        self.after_stop = after;
        vec![Action::CancelProbes, Action::Terminate]
    }

    fn is_stable(&self, now: Instant) -> bool {
        self.ready_since
            .is_some_and(|t| now.saturating_duration_since(t) >= self.policy.stable_after)
    }

    /// The process failed (crashed, or did not get ready, or stopped answering): restart or give up.
    fn failure(&mut self, now: Instant, before_ready: bool) -> Vec<Action> {
        let stable = self.is_stable(now);
        self.ready_since = None;
        if self.policy.restart == RestartPolicy::Never {
            self.state = State::Failed;
            return vec![];
        }
        if stable {
            self.failures = 0;
        }
        self.failures += 1;
        if before_ready {
            self.start_failures += 1;
            if self.start_failures >= self.policy.max_start_failures {
                self.state = State::Failed;
                return vec![];
            }
        } else if self.failures >= self.policy.crash_loop_after {
            self.crash_loop = true;
        }
        self.restarts += 1;
        let delay = self.delay(self.failures);
        if delay.is_zero() {
            return self.spawn();
        }
        self.state = State::Backoff;
        self.wake_at = Some(now + delay);
        vec![]
    }

    /// Attempt 1 restarts at once; attempt n ≥ 2 waits base × 2^(n-2) (capped), ± jitter.
    fn delay(&mut self, attempt: u32) -> Duration {
        if attempt <= 1 {
            return Duration::ZERO;
        }
        let exp = (attempt - 2).min(20);
        let raw = self.policy.backoff_base.as_secs_f64() * f64::from(1u32 << exp);
        let capped = raw.min(self.policy.backoff_max.as_secs_f64());
        let j = self.policy.jitter;
        let factor = if j > 0.0 {
            1.0 + j * (2.0 * self.next_unit() - 1.0)
        } else {
            1.0
        };
        Duration::from_secs_f64((capped * factor).max(0.0))
    }

    /// xorshift64*: jitter needs spread, not cryptographic quality.
    fn next_unit(&mut self) -> f64 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Action::*;

    fn m() -> Machine {
        Machine::new(Policy {
            jitter: 0.0,
            ..Policy::default()
        })
    }
    fn crash() -> Input {
        Input::Exited {
            clean: false,
            detail: "exit status 1: boom".into(),
        }
    }
    fn s(x: u64) -> Duration {
        Duration::from_secs(x)
    }

    /// A stop asked for is told apart from a failure (the doctor skips the one and fails the other).
    #[test]
    fn a_stop_by_request_is_not_a_failure() {
        let t = Instant::now();
        let mut m = m();
        m.on(Input::Start, t);
        m.on(Input::Spawned, t);
        m.on(Input::ProbeReady, t);
        assert!(!m.stopped_by_request());
        m.on(Input::Stop, t);
        m.on(Input::Terminated, t);
        assert_eq!(m.state(), State::Stopped);
        assert!(m.stopped_by_request());
        m.on(Input::Start, t);
        assert!(!m.stopped_by_request());
        m.on(Input::Spawned, t);
        m.on(
            Input::Exited {
                clean: true,
                detail: "exited 0".into(),
            },
            t,
        );
        assert!(!m.stopped_by_request(), "an exit nobody asked for");
    }

    /// On demand: unload ends idle (not stopped); idle starts again; stop from idle is stopped; an
    /// unload asked during a stop wins, and a crash while idle cannot happen (no process).
    #[test]
    fn unload_leaves_it_idle() {
        let t = Instant::now();
        let mut m = m();
        assert_eq!(m.on(Input::Unload, t), vec![]);
        assert_eq!(m.state(), State::Idle);
        assert_eq!(m.on(Input::Start, t), vec![Spawn]);
        m.on(Input::Spawned, t);
        m.on(Input::ProbeReady, t);
        assert_eq!(m.on(Input::Unload, t), vec![CancelProbes, Terminate]);
        assert_eq!(m.state(), State::Stopping);
        assert_eq!(m.on(Input::Terminated, t), vec![]);
        assert_eq!(m.state(), State::Idle);
        assert_eq!(m.on(Input::Stop, t), vec![]);
        assert_eq!(m.state(), State::Stopped);
        // A stop in progress turned into an unload.
        m.on(Input::Start, t);
        m.on(Input::Stop, t);
        m.on(Input::Unload, t);
        m.on(Input::Terminated, t);
        assert_eq!(m.state(), State::Idle);
        // Failed or backing off: idle at once, the failure counters reset.
        m.on(Input::Start, t);
        m.on(Input::Fatal("port taken".into()), t);
        assert_eq!(m.state(), State::Failed);
        m.on(Input::Unload, t);
        assert_eq!(m.state(), State::Idle);
    }

    #[test]
    fn start_ready_stop() {
        let t = Instant::now();
        let mut m = m();
        assert_eq!(m.on(Input::Start, t), vec![Spawn]);
        assert_eq!(m.state(), State::Starting);
        assert_eq!(m.on(Input::Spawned, t), vec![StartReadinessProbe]);
        assert_eq!(m.on(Input::ProbeReady, t), vec![StartLiveness]);
        assert_eq!(m.state(), State::Ready);
        assert_eq!(m.on(Input::Stop, t), vec![CancelProbes, Terminate]);
        assert_eq!(m.state(), State::Stopping);
        assert_eq!(m.on(Input::Terminated, t), vec![]);
        assert_eq!(m.state(), State::Stopped);
        assert_eq!(m.restarts, 0);
    }

    fn ready(m: &mut Machine, t: Instant) {
        m.on(Input::Start, t);
        m.on(Input::Spawned, t);
        m.on(Input::ProbeReady, t);
    }

    #[test]
    fn first_crash_restarts_at_once_then_backoff_grows_and_caps() {
        let mut t = Instant::now();
        let mut m = m();
        ready(&mut m, t);
        // crash 1: immediate respawn
        assert_eq!(m.on(crash(), t), vec![CancelProbes, KillLeftovers, Spawn]);
        assert_eq!((m.state(), m.restarts), (State::Starting, 1));
        let mut waits = vec![];
        for _ in 0..8 {
            m.on(Input::Spawned, t);
            m.on(Input::ProbeReady, t);
            t += s(5); // crashes again before it is stable
            m.on(crash(), t);
            assert_eq!(m.state(), State::Backoff);
            let w = m.wake_at().unwrap() - t;
            waits.push(w.as_secs());
            t += w;
            assert_eq!(m.on(Input::Wake, t), vec![Spawn]);
        }
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60]);
        assert!(m.crash_loop());
        assert_eq!(m.restarts, 9);
    }

    #[test]
    fn stable_period_resets_backoff() {
        let mut t = Instant::now();
        let mut m = m();
        ready(&mut m, t);
        m.on(crash(), t);
        m.on(Input::Spawned, t);
        m.on(Input::ProbeReady, t);
        t += s(61);
        assert_eq!(
            m.on(crash(), t),
            vec![CancelProbes, KillLeftovers, Spawn],
            "stable: at once again"
        );
    }

    #[test]
    fn repeated_start_failures_end_in_failed_and_manual_start_clears() {
        let t = Instant::now();
        let mut m = m();
        m.on(Input::Start, t);
        m.on(Input::Spawned, t);
        assert_eq!(
            m.on(crash(), t),
            vec![CancelProbes, KillLeftovers, Spawn],
            "1st retry at once"
        );
        m.on(Input::Spawned, t);
        m.on(crash(), t);
        assert_eq!(m.state(), State::Backoff);
        assert_eq!(m.wake_at(), Some(t + s(1)));
        m.on(Input::Wake, t + s(1));
        m.on(Input::Spawned, t + s(1));
        assert_eq!(m.on(crash(), t + s(1)), vec![CancelProbes, KillLeftovers]);
        assert_eq!(m.state(), State::Failed);
        assert_eq!(m.last_error(), Some("exit status 1: boom"));
        // stale inputs are ignored
        assert_eq!(m.on(Input::Wake, t + s(9)), vec![]);
        assert_eq!(m.on(Input::Start, t + s(9)), vec![Spawn]);
        assert_eq!(m.state(), State::Starting);
    }

    #[test]
    fn ready_timeout_terminates_then_counts_as_start_failure() {
        let t = Instant::now();
        let mut m = m();
        m.on(Input::Start, t);
        m.on(Input::Spawned, t);
        assert_eq!(
            m.on(Input::ReadyTimeout("not ready after 5 s".into()), t),
            vec![CancelProbes, Terminate]
        );
        assert_eq!(
            m.on(Input::Terminated, t),
            vec![Spawn],
            "first failure retries at once"
        );
        assert_eq!(m.restarts, 1);
    }

    #[test]
    fn liveness_failures_make_unhealthy_then_restart() {
        let t = Instant::now();
        let mut m = m();
        ready(&mut m, t);
        assert_eq!(m.on(Input::LivenessFailed("timeout".into()), t), vec![]);
        assert_eq!(m.state(), State::Unhealthy);
        assert_eq!(m.on(Input::LivenessOk, t), vec![]);
        assert_eq!(m.state(), State::Ready);
        m.on(Input::LivenessFailed("timeout".into()), t);
        m.on(Input::LivenessFailed("timeout".into()), t);
        assert_eq!(
            m.on(Input::LivenessFailed("timeout".into()), t),
            vec![CancelProbes, Terminate]
        );
        assert_eq!(m.on(Input::Terminated, t), vec![Spawn]);
        assert_eq!(m.restarts, 1);
    }

    /// Out of descriptors, a spawn is retried with backoff: the service is not left failed.
    #[test]
    fn transient_spawn_failures_back_off_and_never_give_up() {
        let mut t = Instant::now();
        let mut m = m();
        assert_eq!(m.on(Input::Start, t), vec![Spawn]);
        let mut last = Duration::ZERO;
        for _ in 0..20 {
            assert_eq!(
                m.on(Input::SpawnFailed("Too many open files".into()), t),
                vec![]
            );
            assert_eq!(m.state(), State::Backoff);
            let wait = m.wake_at().unwrap() - t;
            assert!(wait >= last && wait >= s(1) && wait <= s(60), "{wait:?}");
            last = wait;
            t += wait;
            assert_eq!(m.on(Input::Wake, t), vec![Spawn]);
        }
        assert_eq!(m.on(Input::Spawned, t), vec![StartReadinessProbe]);
        assert_eq!(m.on(Input::ProbeReady, t), vec![StartLiveness]);
        assert_eq!(m.state(), State::Ready);
    }

    #[test]
    fn port_busy_fails_without_retry() {
        let t = Instant::now();
        let mut m = m();
        m.on(Input::Start, t);
        assert_eq!(
            m.on(Input::Fatal("port 8091 is in use by pid 42".into()), t),
            vec![]
        );
        assert_eq!(m.state(), State::Failed);
        assert_eq!(m.wake_at(), None);
    }

    #[test]
    fn clean_exit_and_policies() {
        let t = Instant::now();
        let mut m = m();
        ready(&mut m, t);
        m.on(
            Input::Exited {
                clean: true,
                detail: "exit status 0".into(),
            },
            t,
        );
        assert_eq!(m.state(), State::Stopped);

        let mut m = Machine::new(Policy {
            restart: RestartPolicy::Always,
            jitter: 0.0,
            ..Policy::default()
        });
        ready(&mut m, t);
        assert_eq!(
            m.on(
                Input::Exited {
                    clean: true,
                    detail: String::new()
                },
                t
            )
            .last(),
            Some(&Spawn)
        );

        let mut m = Machine::new(Policy {
            restart: RestartPolicy::Never,
            jitter: 0.0,
            ..Policy::default()
        });
        ready(&mut m, t);
        m.on(crash(), t);
        assert_eq!(m.state(), State::Failed);
    }

    #[test]
    fn restart_while_running_and_stop_during_backoff() {
        let t = Instant::now();
        let mut m = m();
        ready(&mut m, t);
        assert_eq!(m.on(Input::Restart, t), vec![CancelProbes, Terminate]);
        assert_eq!(m.on(Input::Terminated, t), vec![Spawn]);
        assert_eq!(m.restarts, 0, "manual restarts are not counted");
        m.on(Input::Spawned, t);
        m.on(crash(), t);
        m.on(Input::Spawned, t);
        m.on(crash(), t);
        assert_eq!(m.state(), State::Backoff);
        assert_eq!(m.on(Input::Stop, t), vec![]);
        assert_eq!((m.state(), m.wake_at()), (State::Stopped, None));
    }

    #[test]
    fn alternating_failures_before_and_after_ready_still_back_off() {
        let mut t = Instant::now();
        let mut m = m();
        ready(&mut m, t);
        let mut waits = vec![];
        for i in 0..4 {
            if i % 2 == 1 {
                m.on(Input::Spawned, t);
                m.on(Input::ProbeReady, t);
            }
            m.on(crash(), t);
            let w = m.wake_at().map(|w| (w - t).as_secs()).unwrap_or(0);
            waits.push(w);
            t += s(w);
            m.on(Input::Wake, t);
        }
        assert_eq!(waits, [0, 1, 2, 4]);
    }

    #[test]
    fn liveness_restarts_days_apart_are_not_a_crash_loop() {
        let mut t = Instant::now();
        let mut m = m();
        ready(&mut m, t);
        for _ in 0..5 {
            t += s(86_400);
            m.on(Input::LivenessOk, t);
            for _ in 0..3 {
                m.on(Input::LivenessFailed("timeout".into()), t);
            }
            assert_eq!(m.on(Input::Terminated, t), vec![Spawn], "restart at once");
            m.on(Input::Spawned, t);
            m.on(Input::ProbeReady, t);
        }
        assert!(!m.crash_loop());
        assert_eq!(m.restarts, 5);
    }

    #[test]
    fn manual_stop_clears_the_crash_loop() {
        let t = Instant::now();
        let mut m = m();
        ready(&mut m, t);
        for _ in 0..3 {
            m.on(crash(), t);
            m.on(Input::Wake, t);
            m.on(Input::Spawned, t);
            m.on(Input::ProbeReady, t);
        }
        assert!(m.crash_loop());
        m.on(Input::Stop, t);
        assert!(!m.crash_loop());
    }

    #[test]
    fn jitter_stays_within_bounds() {
        let mut m = Machine::new(Policy::default());
        for attempt in 2..12 {
            let d = m.delay(attempt).as_secs_f64();
            let nominal = (f64::from(1u32 << (attempt - 2))).min(60.0);
            assert!(
                d >= nominal * 0.8 - 1e-9 && d <= nominal * 1.2 + 1e-9,
                "{attempt}: {d}"
            );
        }
    }
}
