//! The menu-bar app's side of the daemon, written against the control client and free of Tauri, so all of it
//! runs (and is tested) without a desktop. `src-tauri` wraps it in a handful of `#[tauri::command]`s; the
//! web front end calls them by these names (its TypeScript types are generated from the types here).
//!
//! The windows reach the daemon one way: the `call` command carries any `Request` of the control API (for
//! another Mac, a `Request::Host` wrapping it) and answers with the type that request names (the generated
//! `Replies` map types it on the TypeScript side). The other commands are the app's own:
//!
//! | command | arguments | returns |
//! |---|---|---|
//! | `call` | `request` (any `Request`) | its reply |
//! | `follow_logs` / `unfollow_logs` | `name` | emits `log-line` events (`LogLine`) |
//! | `get_connection` | | `Connection` |
//! | `start_daemon` | | `Connection` |
//! | `window_ready` | | (the app times open → drawn) |
//! | `open_view` | `view`, `query` | opens or focuses that view's own window (`query`: `target=NAME`, `doctor`, `confirm=…`) |
//! | `chat_send` / `chat_cancel` | `request` (`ChatSend`) / `id` | emits `chat-event` (`ChatEvent`) to the window (`chat.rs`) |
//! | `chat_speech` / `chat_transcribe` | `target`, `text` / `audio`, `file_name` | a `data:` URL / the text |
//!
//! Every error is a `CommandError`. Events to the windows: `daemon-event` (`Event`), `connection`
//! (`Connection`), `daemon-status` (`StatusReport`, the fold of the events: windows render it and fold
//! nothing), `log-line` (`LogLine`), `focus-alert` (`FocusAlert`).

use crate::control::{Client, ClientError};
use crate::menubar::{self, NotificationGate, Snapshot, TrayLevel};
use mlxbox_api::call::{self, Call};
use mlxbox_api::control::{ErrorKind, Request};
use mlxbox_api::paths;
use mlxbox_api::{Alert, AlertSeverity, ConfigPreview, Event, StatusReport};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use ts_rs::TS;

/// Why a command failed, in a form the front end can act on: the daemon's own `ApiError` (its kind folded
/// into the few a window acts on, its message and hint as the daemon said them), or what this side found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS, thiserror::Error)]
#[ts(export)]
#[error("{message}")]
pub struct CommandError {
    pub kind: CommandErrorKind,
    /// One sentence that says what happened.
    pub message: String,
    /// What to do about it, when the daemon said.
    pub hint: Option<String>,
    /// For `invalid`: the edited file and its diagnostics (the same as `mlx-box validate`).
    pub preview: Option<Box<ConfigPreview>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[ts(export)]
#[serde(rename_all = "snake_case")]
pub enum CommandErrorKind {
    /// No daemon answers on the state dir (or the other Mac does not).
    Unreachable,
    /// settings.toml changed since the window read it (or another state forbids it now: a run going).
    Conflict,
    /// The edit does not validate; nothing was written.
    Invalid,
    /// No such service, key or run (`bench_current` when none runs).
    NotFound,
    /// The daemon refused (bad request, not allowed, over budget…).
    Refused,
    /// Anything else (I/O, a daemon that would not start).
    Failed,
}

impl CommandError {
    fn new(kind: CommandErrorKind, message: impl Into<String>) -> Self {
        CommandError {
            kind,
            message: message.into(),
            hint: None,
            preview: None,
        }
    }
}

impl From<ClientError> for CommandError {
    fn from(e: ClientError) -> Self {
        use CommandErrorKind::*;
        let message = e.to_string();
        match e {
            ClientError::NotRunning { .. }
            | ClientError::Unreachable { .. }
            | ClientError::Http(_) => CommandError::new(Unreachable, message),
            ClientError::FingerprintMismatch { .. } | ClientError::Api(_) => {
                CommandError::new(Refused, message)
            }
            ClientError::Refused(e) => CommandError {
                kind: match e.kind {
                    ErrorKind::Conflict => Conflict,
                    ErrorKind::NotFound => NotFound,
                    ErrorKind::Invalid => Invalid,
                    ErrorKind::BadGateway => Unreachable,
                    _ => Refused,
                },
                message: e.message,
                hint: e.hint,
                preview: None,
            },
            ClientError::Invalid(d) => CommandError::new(
                Invalid,
                d.first()
                    .map(|d| d.to_string())
                    .unwrap_or_else(|| "settings are invalid".into()),
            ),
            ClientError::InvalidEdit(preview) => CommandError {
                preview: Some(preview),
                ..CommandError::new(Invalid, message)
            },
        }
    }
}

/// Whether the app reaches a daemon, and where it looks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct Connection {
    pub connected: bool,
    pub state_dir: String,
    /// Why not connected (the client's error, which says what to do).
    pub error: Option<String>,
}

/// One line of a followed log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct LogLine {
    pub name: String,
    pub line: String,
}

/// Sent to the dashboard when the user clicks an alert's notification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct FocusAlert {
    pub id: String,
}

/// The app's side of the daemon: one per app, shared by the tray and every window.
pub struct AppCore {
    pub state_dir: PathBuf,
    pub client: Client,
}

impl AppCore {
    pub fn new(state_dir: PathBuf) -> Self {
        AppCore {
            client: Client::new(&state_dir),
            state_dir,
        }
    }

    /// A request of the control API, answered with the type it names (the tray's and the tests' way in).
    pub async fn call<C: Call>(&self, c: C) -> Result<C::Reply, CommandError> {
        Ok(self.client.call(c).await?)
    }

    /// Any request as the windows send it, its answer as JSON: the app's one command to the daemon.
    pub async fn call_json(&self, req: Request) -> Result<serde_json::Value, CommandError> {
        Ok(self.client.call_json(&req).await?)
    }

    pub async fn connection(&self) -> Connection {
        match self.client.call(call::Status {}).await {
            Ok(_) => self.connection_ok(),
            Err(e) => self.connection_err(e.to_string()),
        }
    }

    pub fn connection_ok(&self) -> Connection {
        Connection {
            connected: true,
            state_dir: self.state_dir.display().to_string(),
            error: None,
        }
    }

    pub fn connection_err(&self, error: String) -> Connection {
        Connection {
            connected: false,
            state_dir: self.state_dir.display().to_string(),
            error: Some(error),
        }
    }

    /// Launch at login, for the daemon too: installs (or removes) the OS agent that starts the daemon at
    /// login and after a crash, with `mlx-box service install|uninstall` on this state dir and the
    /// settings file the daemon runs. Returns what the CLI said.
    pub async fn set_daemon_agent(&self, bin: &Path, on: bool) -> Result<String, CommandError> {
        let mut cmd = tokio::process::Command::new(bin);
        cmd.arg("service");
        if on {
            cmd.arg("install");
            if let Ok(st) = self.client.call(call::Status {}).await {
                cmd.arg("--config").arg(&st.config_path);
            }
        } else {
            cmd.arg("uninstall");
        }
        let out = cmd
            .arg("--state-dir")
            .arg(&self.state_dir)
            .output()
            .await
            .map_err(|e| {
                CommandError::new(
                    CommandErrorKind::Failed,
                    format!("cannot run {}: {e}", bin.display()),
                )
            })?;
        let text = |b: &[u8]| String::from_utf8_lossy(b).trim().to_string();
        if out.status.success() {
            Ok(text(&out.stdout))
        } else {
            Err(CommandError::new(
                CommandErrorKind::Failed,
                text(&out.stderr),
            ))
        }
    }

    /// Starts `mlx-box up` on this state dir, detached (its own session, so it outlives the app), and
    /// waits until it answers. The daemon runs the user's settings.toml, or the demo profile when there is
    /// none. Its output goes to `daemon.log` in the state dir.
    pub async fn start_daemon(
        &self,
        bin: &DaemonBinary,
        wait: Duration,
    ) -> Result<Connection, CommandError> {
        if self.client.call(call::Status {}).await.is_ok() {
            return Ok(self.connection_ok());
        }
        spawn_daemon(bin, &self.state_dir, None)?;
        let t0 = Instant::now();
        loop {
            if self.client.call(call::Status {}).await.is_ok() {
                return Ok(self.connection_ok());
            }
            if t0.elapsed() > wait {
                // Still preparing (the demo's first run makes a Python environment): not an error.
                return Ok(self.connection_err(format!(
                    "the daemon is starting (see {}); this window connects when it answers",
                    self.state_dir.join("daemon.log").display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// What the app does with what it hears from the daemon. The Tauri app implements it (tray, windows,
/// notifications); tests implement it with a recorder.
pub trait AppSink: Send + Sync + 'static {
    /// Connected or lost the daemon.
    fn connection(&self, c: &Connection);
    /// Every event of the stream, as is (the windows append monitor samples and follow benchmarks).
    fn event(&self, ev: &Event);
    /// The daemon's status with the event folded in (`menubar::Snapshot::apply`): the windows render this
    /// and fold nothing themselves. Called after every event that can change it.
    fn status(&self, status: &StatusReport);
    /// The snapshot changed in a way the tray shows; `level`, `menu` are what to draw.
    fn redraw(&self, snap: &Snapshot, level: TrayLevel);
    /// An alert that should become a desktop notification now.
    fn notify(&self, alert: &Alert);
}

/// The user's app preferences that live in settings.toml's `[app]`.
#[derive(Debug, Clone, PartialEq)]
pub struct AppPrefs {
    pub notify_floor: Option<AlertSeverity>,
    pub stop_servers_on_quit: bool,
}

impl Default for AppPrefs {
    fn default() -> Self {
        AppPrefs {
            notify_floor: Some(AlertSeverity::Warning),
            stop_servers_on_quit: false,
        }
    }
}

impl AppPrefs {
    fn from_document(doc: Option<&serde_json::Value>) -> Self {
        let app = doc.and_then(|d| d.get("app"));
        let get = |k: &str| app.and_then(|a| a.get(k));
        AppPrefs {
            notify_floor: menubar::min_severity(
                get("notify_min_severity")
                    .and_then(|v| v.as_str())
                    .unwrap_or("warning"),
            ),
            stop_servers_on_quit: get("stop_servers_on_quit")
                .and_then(|v| v.as_bool())
                .unwrap_or(false),
        }
    }
}

/// Follows the daemon for as long as the app runs: connects (retrying every `retry` while none answers),
/// takes a status snapshot, then folds the event stream into it, telling `sink` what to redraw and notify.
/// `shared` always holds the latest snapshot and prefs (menu clicks read it).
pub async fn watch_daemon(
    core: Arc<AppCore>,
    sink: Arc<dyn AppSink>,
    shared: Arc<Mutex<(Snapshot, AppPrefs)>>,
    retry: Duration,
    restart: Option<DaemonBinary>,
) {
    let mut gate = NotificationGate::default();
    let mut was_connected: Option<bool> = None;
    // Restarts of a daemon that died (not one that shut down), when no OS agent does it: at most 3 a
    // minute, so a daemon that cannot start is not started in a loop.
    let mut restarts: std::collections::VecDeque<Instant> = Default::default();
    // Set when the daemon died: the settings file it ran, until a daemon answers again.
    let mut died: Option<Option<PathBuf>> = None;
    loop {
        match core.client.call(call::Status {}).await {
            Ok(status) => {
                died = None;
                let prefs = core
                    .client
                    .call(call::GetConfig {})
                    .await
                    .map(|d| AppPrefs::from_document(d.document.as_ref()))
                    .unwrap_or_default();
                // Alerts active at connect time were notified by an earlier run (or are not news).
                gate.seed(&status.alerts);
                let snap = Snapshot {
                    status: Some(status),
                };
                let level = menubar::tray_level(&snap);
                *shared.lock().unwrap() = (snap.clone(), prefs);
                was_connected = Some(true);
                sink.connection(&core.connection_ok());
                sink.redraw(&snap, level);
                let config = shared
                    .lock()
                    .unwrap()
                    .0
                    .status
                    .as_ref()
                    .map(|s| PathBuf::from(&s.config_path));
                let shut_down = follow_events(&core, &*sink, &shared, &mut gate).await;
                if !shut_down {
                    died = Some(config);
                }
            }
            Err(e) => {
                if was_connected != Some(false) {
                    shared.lock().unwrap().0 = Snapshot::default();
                    was_connected = Some(false);
                    sink.connection(&core.connection_err(e.to_string()));
                    sink.redraw(&Snapshot::default(), TrayLevel::Disconnected);
                }
                // A daemon that died is started again while none answers (a dying process may still
                // hold the state dir's lock for a moment: the next try comes a little later).
                restarts.retain(|t| t.elapsed() < Duration::from_secs(60));
                let agent = mlxbox_api::paths::autostart_agent().exists()
                    || mlxbox_api::paths::autostart_system().exists();
                let spaced = restarts
                    .back()
                    .is_none_or(|t| t.elapsed() >= Duration::from_secs(2));
                if let (Some(config), false, Some(bin)) = (&died, agent, &restart) {
                    if restarts.len() < 3 && spaced {
                        tracing::warn!("the daemon died (no shutdown); starting it again");
                        restarts.push_back(Instant::now());
                        if let Err(e) = spawn_daemon(bin, &core.state_dir, config.as_deref()) {
                            tracing::warn!("cannot restart the daemon: {}", e.message);
                        }
                    }
                }
                tokio::time::sleep(retry).await;
            }
        }
    }
}

/// Reads the event stream until it ends (daemon gone); returns whether the daemon said it was shutting
/// down (a `down`, a SIGTERM) rather than dying.
async fn follow_events(
    core: &AppCore,
    sink: &dyn AppSink,
    shared: &Mutex<(Snapshot, AppPrefs)>,
    gate: &mut NotificationGate,
) -> bool {
    let mut shut_down = false;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Event>();
    // The SSE reader only queues; the handler below may await (re-reading prefs on a config change).
    let reader = core.client.events(move |ev| tx.send(ev).is_ok());
    let handler = async {
        let mut last_level = None;
        let mut last_menu = Vec::new();
        let mut fresh: Vec<Alert> = vec![];
        while let Some(ev) = rx.recv().await {
            sink.event(&ev);
            if let Event::Config(c) = &ev {
                if c.valid {
                    if let Ok(d) = core.client.call(call::GetConfig {}).await {
                        shared.lock().unwrap().1 = AppPrefs::from_document(d.document.as_ref());
                    }
                }
            }
            // Redraw only when something the tray shows changed (most monitor ticks change nothing); the
            // snapshot is copied out of the lock only then.
            let (floor, redraw) =
                {
                    let mut g = shared.lock().unwrap();
                    let before: Vec<String> = match &ev {
                        Event::Snapshot(_) => g.0.alert_ids(),
                        Event::Host(h) => {
                            g.0.status
                                .as_ref()
                                .and_then(|st| st.hosts.iter().find(|x| x.name == h.name))
                                .map(|x| x.alerts.iter().map(|a| a.id.clone()).collect())
                                .unwrap_or_default()
                        }
                        _ => vec![],
                    };
                    g.0.apply(&ev);
                    if !matches!(ev, Event::BenchProgress(_) | Event::BenchDone(_)) {
                        if let Some(st) = &g.0.status {
                            sink.status(st);
                        }
                    }
                    // A snapshot after a lag may carry alerts whose events were dropped: they are news too.
                    if let Event::Snapshot(r) = &ev {
                        fresh = r
                            .alerts
                            .iter()
                            .filter(|a| !before.contains(&a.id))
                            .cloned()
                            .collect();
                    }
                    // Another host's new alerts, named after it (its id too, so the gate tells hosts apart).
                    if let Event::Host(h) = &ev {
                        fresh.extend(h.alerts.iter().filter(|a| !before.contains(&a.id)).map(
                            |a| Alert {
                                id: format!("{}:{}", h.name, a.id),
                                title: format!("{}: {}", h.name, a.title),
                                ..a.clone()
                            },
                        ));
                    }
                    let level = menubar::tray_level(&g.0);
                    let menu = menubar::menu(&g.0, false);
                    let changed = Some(level) != last_level || menu != last_menu;
                    last_level = Some(level);
                    last_menu = menu;
                    (g.1.notify_floor, changed.then(|| (g.0.clone(), level)))
                };
            if let Event::Alert(a) = &ev {
                fresh.push(a.clone());
            }

            for a in fresh.drain(..) {
                if gate.admit(&a, floor) {
                    sink.notify(&a);
                }
            }
            if let Some((snap, level)) = redraw {
                sink.redraw(&snap, level);
            }
            if matches!(ev, Event::Shutdown) {
                shut_down = true;
                break;
            }
        }
    };
    let _ = tokio::join!(reader, handler);
    shut_down
}

/// `req` as it is, or forwarded to `host` by this Mac's daemon.
/// `mlx-box up` on `state_dir`, detached; `config` when the daemon must supervise that file (a restart
/// after a crash: the one the dead daemon ran), else the default (the user's, or the demo). Which binary
/// it ran and where it was found goes to the app's log and to `daemon.log` (where the daemon writes).
fn spawn_daemon(
    bin: &DaemonBinary,
    state_dir: &Path,
    config: Option<&Path>,
) -> Result<(), CommandError> {
    use std::io::Write;
    use std::os::unix::process::CommandExt;
    std::fs::create_dir_all(state_dir).map_err(|e| {
        CommandError::new(
            CommandErrorKind::Failed,
            format!("cannot create the state dir {}: {e}", state_dir.display()),
        )
    })?;
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(state_dir.join("daemon.log"))
        .map_err(|e| CommandError::new(CommandErrorKind::Failed, e.to_string()))?;
    tracing::info!("starting the daemon: {bin}");
    let _ = writeln!(log, "mlx-box-app: starting the daemon: {bin}");
    let mut cmd = std::process::Command::new(&bin.path);
    cmd.arg("up").arg("--state-dir").arg(state_dir);
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    cmd.stdin(std::process::Stdio::null())
        .stdout(
            log.try_clone()
                .map_err(|e| CommandError::new(CommandErrorKind::Failed, e.to_string()))?,
        )
        .stderr(log);
    // A session of its own: closing the app (or its terminal) does not signal the daemon.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| {
        tracing::warn!("cannot start the daemon {bin}: {e}");
        CommandError::new(
            CommandErrorKind::Failed,
            format!("cannot start the daemon {bin}: {e}; set MLXBOX_BIN to the mlx-box binary"),
        )
    })?;
    // Reap it when it exits, so it never lingers as a zombie of the app.
    std::thread::spawn(move || {
        let _ = child.wait();
    });
    Ok(())
}

/// The `mlx-box` daemon binary the app starts, and where it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonBinary {
    pub path: PathBuf,
    pub from: DaemonFrom,
}

/// Where the daemon binary was found (`daemon_binary`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DaemonFrom {
    /// `MLXBOX_BIN`.
    Env,
    /// Beside the app's own executable: the bundle's sidecar (`Contents/MacOS/mlx-box` in the `.app`,
    /// `/usr/bin/mlx-box` from the `.deb`), or the workspace's `target/<profile>/mlx-box`.
    BesideApp,
    /// A directory of `PATH`.
    Path,
    /// Nowhere: the bare name, which fails to start with a message saying so.
    NotFound,
    /// Handed over by the caller (tests, tools).
    Given,
}

impl std::fmt::Display for DaemonBinary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let from = match self.from {
            DaemonFrom::Env => "from MLXBOX_BIN",
            DaemonFrom::BesideApp => "beside the app",
            DaemonFrom::Path => "found on PATH",
            DaemonFrom::NotFound => "not found beside the app nor on PATH",
            DaemonFrom::Given => "given",
        };
        write!(f, "{} ({from})", self.path.display())
    }
}

impl From<PathBuf> for DaemonBinary {
    fn from(path: PathBuf) -> Self {
        DaemonBinary {
            path,
            from: DaemonFrom::Given,
        }
    }
}

impl From<&Path> for DaemonBinary {
    fn from(path: &Path) -> Self {
        path.to_path_buf().into()
    }
}

impl From<&str> for DaemonBinary {
    fn from(path: &str) -> Self {
        PathBuf::from(path).into()
    }
}

/// The name of the daemon's binary, in a bundle beside the app and on PATH.
const DAEMON_NAME: &str = "mlx-box";

/// Where the `mlx-box` daemon binary is, for this process: `MLXBOX_BIN`, else beside the app's own
/// executable (the bundled sidecar), else on PATH (`find_daemon`).
pub fn daemon_binary() -> DaemonBinary {
    find_daemon(
        std::env::var_os("MLXBOX_BIN"),
        std::env::current_exe().ok().as_deref(),
        std::env::var_os("PATH"),
    )
}

/// Where the daemon binary is, given `MLXBOX_BIN` (`env`, ignored when empty), the app's executable
/// (`exe`) and `PATH` (`path`): `env`; else an executable `mlx-box` beside `exe` — in the `.app`,
/// `Contents/MacOS/mlx-box` beside `Contents/MacOS/mlx-box-app` (Tauri puts a sidecar there, its
/// target-triple suffix taken off); from the `.deb`, `/usr/bin/mlx-box` beside `/usr/bin/mlx-box-app` —
/// also beside the file `exe` links to (an app started through a symlink); else the first on `path`; else
/// the bare name (`NotFound`).
pub fn find_daemon(
    env: Option<std::ffi::OsString>,
    exe: Option<&Path>,
    path: Option<std::ffi::OsString>,
) -> DaemonBinary {
    if let Some(p) = env.filter(|p| !p.is_empty()) {
        return DaemonBinary {
            path: PathBuf::from(p),
            from: DaemonFrom::Env,
        };
    }
    let mut dirs: Vec<PathBuf> = vec![];
    if let Some(exe) = exe {
        dirs.extend(exe.parent().map(Path::to_path_buf));
        if let Some(real) = exe.canonicalize().ok().as_deref().and_then(Path::parent) {
            if !dirs.iter().any(|d| d == real) {
                dirs.push(real.to_path_buf());
            }
        }
    }
    for dir in dirs {
        let p = dir.join(DAEMON_NAME);
        if is_executable(&p) {
            return DaemonBinary {
                path: p,
                from: DaemonFrom::BesideApp,
            };
        }
    }
    for dir in path.iter().flat_map(std::env::split_paths) {
        // An empty entry is the current directory, which a GUI app's is not meant to be.
        if dir.as_os_str().is_empty() {
            continue;
        }
        let p = dir.join(DAEMON_NAME);
        if is_executable(&p) {
            return DaemonBinary {
                path: p,
                from: DaemonFrom::Path,
            };
        }
    }
    DaemonBinary {
        path: PathBuf::from(DAEMON_NAME),
        from: DaemonFrom::NotFound,
    }
}

/// A file (or a link to one) that someone may execute.
fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The state dir the app uses: `MLXBOX_STATE_DIR`, else the platform default (as the CLI).
pub fn state_dir() -> PathBuf {
    paths::state_dir(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unreachable_daemon_is_a_typed_error() {
        let dir = tempfile::tempdir().unwrap();
        let core = AppCore::new(dir.path().to_path_buf());
        let e = core.call(call::Status {}).await.unwrap_err();
        assert_eq!(e.kind, CommandErrorKind::Unreachable);
        assert!(e.message.contains("mlx-box up"), "{}", e.message);
        let c = core.connection().await;
        assert!(!c.connected && c.error.is_some());
        // An unknown verb cannot reach a command: the window's JSON does not deserialize into a `Verb`.
        assert!(serde_json::from_str::<mlxbox_api::service::Verb>("\"explode\"").is_err());
    }

    #[tokio::test]
    async fn a_missing_daemon_binary_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let core = AppCore::new(dir.path().to_path_buf());
        let e = core
            .start_daemon(&"/nonexistent/mlx-box".into(), Duration::from_millis(10))
            .await
            .unwrap_err();
        assert_eq!(e.kind, CommandErrorKind::Failed);
        assert!(e.message.contains("MLXBOX_BIN"), "{}", e.message);
    }

    /// Makes an executable file at `p` (and its directories).
    fn exe_file(p: &Path) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn the_daemon_is_found_inside_the_app_bundle_first() {
        let dir = tempfile::tempdir().unwrap();
        // The .app tauri makes: the app and its sidecar side by side in Contents/MacOS.
        let macos = dir.path().join("Applications/mlx-box.app/Contents/MacOS");
        exe_file(&macos.join("mlx-box-app"));
        exe_file(&macos.join("mlx-box"));
        // Another mlx-box on PATH (a Homebrew one, say) loses to the bundle's.
        let brew = dir.path().join("opt/homebrew/bin");
        exe_file(&brew.join("mlx-box"));
        let path = Some(brew.clone().into_os_string());
        let exe = macos.join("mlx-box-app");
        let found = find_daemon(None, Some(&exe), path.clone());
        assert_eq!(found.path, macos.join("mlx-box"));
        assert_eq!(found.from, DaemonFrom::BesideApp);
        assert!(
            found
                .to_string()
                .ends_with("Contents/MacOS/mlx-box (beside the app)"),
            "{found}"
        );
        // An empty MLXBOX_BIN is no setting; a set one wins.
        assert_eq!(
            find_daemon(Some("".into()), Some(&exe), path.clone()),
            found
        );
        let env = find_daemon(Some("/x/mlx-box".into()), Some(&exe), path.clone());
        assert_eq!(
            (env.path, env.from),
            (PathBuf::from("/x/mlx-box"), DaemonFrom::Env)
        );
        // The app started through a symlink elsewhere (a `binary` stanza, a Dock alias): the bundle still.
        let link = dir.path().join("usr/local/bin/mlx-box-app");
        std::fs::create_dir_all(link.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(&exe, &link).unwrap();
        let via = find_daemon(None, Some(&link), path.clone());
        assert_eq!(via.from, DaemonFrom::BesideApp);
        assert_eq!(
            via.path.canonicalize().unwrap(),
            macos.join("mlx-box").canonicalize().unwrap()
        );
        // A bundle without its daemon falls back to PATH, and says so.
        std::fs::remove_file(macos.join("mlx-box")).unwrap();
        let fallback = find_daemon(None, Some(&exe), path);
        assert_eq!(
            (fallback.path, fallback.from),
            (brew.join("mlx-box"), DaemonFrom::Path)
        );
    }

    #[test]
    fn the_daemon_is_found_beside_the_app_installed_from_the_deb() {
        let dir = tempfile::tempdir().unwrap();
        // The .deb's layout: /usr/bin/mlx-box-app and the sidecar /usr/bin/mlx-box.
        let bin = dir.path().join("usr/bin");
        exe_file(&bin.join("mlx-box-app"));
        exe_file(&bin.join("mlx-box"));
        let found = find_daemon(
            None,
            Some(&bin.join("mlx-box-app")),
            Some("/nonexistent".into()),
        );
        assert_eq!(
            (found.path, found.from),
            (bin.join("mlx-box"), DaemonFrom::BesideApp)
        );
        // A file of that name that nobody may run is not a daemon; nothing on PATH either: the bare name,
        // which fails to start with a message naming MLXBOX_BIN.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(bin.join("mlx-box"), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        let none = find_daemon(
            None,
            Some(&bin.join("mlx-box-app")),
            Some(":/nonexistent".into()),
        );
        assert_eq!(
            (none.path.clone(), none.from),
            (PathBuf::from("mlx-box"), DaemonFrom::NotFound)
        );
        assert!(none.to_string().contains("not found"), "{none}");
    }
}
