//! The daemon process: start-up (the state dir, the control socket, the watcher, the reload task, the 1 Hz
//! monitor), the state-dir lock and the signals. Everything it does lives in the services
//! (`crate::services`), which the control API (`crate::control::server`) dispatches to.

use crate::launch::Runtime;
use crate::paths;
use crate::services::Services;
use crate::tcp_face::TcpFace;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Notify};

/// The embedding server mlx-box ships (the original mlx-box had `models/embed-server.py`).
pub const EMBED_SERVER_PY: &str = include_str!("../../../python/embed_server.py");
/// mlx_audio.server, with GPU streams made on the CPU where MLX has none (`kind = "tts" | "stt"`).
pub const AUDIO_SERVER_PY: &str = include_str!("../../../python/audio_server.py");
/// mlx_vlm.server with its hard-coded `*` CORS removed (`kind = "ocr"`).
pub const VLM_SERVER_PY: &str = include_str!("../../../python/vlm_server.py");

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

/// The exit status of `mlx-box up` when another daemon already holds its state dir. Not a failure to
/// retry: a systemd unit names it in `RestartPreventExitStatus=`; launchd restarts any status but 0 under
/// `KeepAlive.SuccessfulExit = false`, so its plist runs `up --already-running-exit 0` (`autostart.rs`).
/// Either way a second `up` started by the OS ends at once, and a later `mlx-box down` stays down.
pub const EXIT_ALREADY_RUNNING: u8 = 3;

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
    let scripts_dir = dir.join("runtime");
    std::fs::create_dir_all(dir.join("logs")).map_err(sd)?;
    std::fs::create_dir_all(&scripts_dir).map_err(sd)?;
    std::fs::write(scripts_dir.join("embed_server.py"), EMBED_SERVER_PY).map_err(sd)?;
    std::fs::write(scripts_dir.join("vlm_server.py"), VLM_SERVER_PY).map_err(sd)?;
    std::fs::write(scripts_dir.join("audio_server.py"), AUDIO_SERVER_PY).map_err(sd)?;
    let rt = Runtime {
        scripts_dir,
        default_python: opts
            .default_python
            .clone()
            .unwrap_or_else(crate::launch::default_python),
    };
    let config_path = std::path::absolute(&opts.config_path).unwrap_or(opts.config_path.clone());
    let (reload_tx, mut reload_rx) = mpsc::channel::<()>(4);
    let services = Services::new(dir.clone(), config_path.clone(), rt, reload_tx.clone());

    // Control socket first, so clients can watch the services come up.
    let sock = paths::socket_path(dir);
    let _ = std::fs::remove_file(&sock); // stale: the lock proves no daemon owns it
    let listener = crate::gate::bind_unix(&sock).map_err(|e| DaemonError::Socket {
        path: sock.clone(),
        source: e,
    })?;
    let _ = std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o600));
    let app = crate::control::server::router(services.clone());
    let server = tokio::spawn(crate::gate::serve_unix(listener, app));

    // The watcher only pokes; the reload task reads, validates and applies, one change at a time.
    let poke = reload_tx.clone();
    let _watcher = crate::config::watch_file(&config_path, Duration::from_millis(50), move || {
        let _ = poke.try_send(());
    })
    .map_err(|e| DaemonError::Watch {
        path: config_path.clone(),
        source: e,
    })?;
    services
        .add_face(Box::new(TcpFace::metrics(&services)))
        .await;
    services
        .add_face(Box::new(TcpFace::remote_control(&services)))
        .await;
    services.reload().await;
    let stop_reloading = Arc::new(Notify::new());
    let (s2, stop2) = (services.clone(), stop_reloading.clone());
    let reloader = tokio::spawn(async move {
        loop {
            tokio::select! {
                r = reload_rx.recv() => match r {
                    Some(()) => s2.reload().await,
                    None => break,
                },
                _ = stop2.notified() => break,
            }
        }
    });
    // The 1 Hz monitor: cheap (a few /proc reads), and what the swap / pressure / heat alerts stand on.
    let s3 = services.clone();
    let monitor = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        for n in 0u64.. {
            tick.tick().await;
            s3.tick(n).await;
        }
    });
    tracing::info!(state_dir = %dir.display(), config = %config_path.display(), socket = %sock.display(), "mlx-box daemon ready");

    loop {
        tokio::select! {
            _ = signals.term.recv() => break,
            _ = signals.int.recv() => break,
            _ = services.shutdown.notified() => break,
            // SIGHUP: re-read settings.toml now (as most daemons do).
            _ = signals.hup.recv() => { let _ = reload_tx.try_send(()); continue; }
        }
    }
    tracing::info!("stopping every service");
    // Let a config apply in progress finish (it may be stopping a removed service), then stop the rest.
    stop_reloading.notify_one();
    let _ = reloader.await;
    monitor.abort();
    services.close_faces().await;
    services.supervisor.shutdown().await;
    // Every server is stopped: the machine may sleep again.
    services.awake.release().await;
    let _ = services.events.send(crate::api::Event::Shutdown);
    server.abort();
    let _ = std::fs::remove_file(&sock);
    tracing::info!("all services stopped; bye");
    Ok(())
}
