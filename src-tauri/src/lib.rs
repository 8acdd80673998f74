//! The mlx-box menu-bar app: a thin client of the daemon (`mlx-box up`). It starts the daemon when none runs
//! on its state dir, follows its event stream, and draws the tray, the windows and the notifications. It never
//! owns a model server. Behaviour lives in `mlxbox_client::{app, menubar}`; this crate only renders it.
//!
//! - `app_menu.rs`: the macOS menu bar's menus while a window is in front (and their shortcuts).
//! - `commands.rs`: what the windows call.
//! - `tray.rs`: the menu-bar icon and menu.
//! - `notify.rs`: desktop notifications, and their click → the dashboard on that alert.
//! - `windows.rs`: the dashboard / settings / bench / chat windows and `--open`.

pub mod app_menu;
pub mod commands;
pub mod notify;
pub mod tray;
pub mod windows;

use mlxbox_api::call;
use mlxbox_api::{Alert, Event, StatusReport};
use mlxbox_client::app::{self, AppCore, AppPrefs, AppSink, Connection, FocusAlert};
use mlxbox_client::menubar::{Snapshot, TrayLevel};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tauri::{AppHandle, Emitter, Manager, RunEvent, Runtime};
use windows::View;

/// What every command and the tray share.
pub struct AppState {
    pub core: Arc<AppCore>,
    /// The latest snapshot of the daemon and the user's `[app]` prefs (menu clicks read them).
    pub shared: Arc<Mutex<(Snapshot, AppPrefs)>>,
    /// Log follows in progress, by service.
    pub follows: Mutex<HashMap<String, tauri::async_runtime::JoinHandle<()>>>,
    /// Chat replies being streamed, by the window's id for each.
    pub chats: Arc<Mutex<HashMap<String, tauri::async_runtime::JoinHandle<()>>>>,
    /// The alert of the last notification, shown when the user comes back to the app.
    pub last_notified: Mutex<Option<String>>,
}

impl AppState {
    pub fn new(state_dir: std::path::PathBuf) -> Self {
        AppState {
            core: Arc::new(AppCore::new(state_dir)),
            shared: Arc::new(Mutex::new((Snapshot::default(), AppPrefs::default()))),
            follows: Mutex::new(HashMap::new()),
            chats: Arc::default(),
            last_notified: Mutex::new(None),
        }
    }
}

/// Tells the tray, the windows and the notification centre what the daemon said.
struct TauriSink<R: Runtime> {
    app: AppHandle<R>,
}

impl<R: Runtime> AppSink for TauriSink<R> {
    fn connection(&self, c: &Connection) {
        let _ = self.app.emit("connection", c);
    }

    fn event(&self, ev: &Event) {
        // With no window in sight nobody looks: skip the serialisation (the idle app stays near 0 % CPU);
        // a window that is shown again re-fetches.
        if windows::any_visible() {
            let _ = self.app.emit("daemon-event", ev);
        }
    }

    fn status(&self, status: &StatusReport) {
        if windows::any_visible() {
            let _ = self.app.emit("daemon-status", status);
        }
    }

    fn redraw(&self, snap: &Snapshot, level: TrayLevel) {
        tray::redraw(&self.app, snap.clone(), level);
    }

    fn notify(&self, alert: &Alert) {
        *self.app.state::<AppState>().last_notified.lock().unwrap() = Some(alert.id.clone());
        notify::show(&self.app, alert);
    }
}

/// Opens the dashboard on alert `id` (or on the last notified one): the window scrolls to and highlights it.
pub fn open_on_alert<R: Runtime>(app: &AppHandle<R>, id: Option<String>) {
    windows::open(app, View::Dashboard);
    let id = id.or_else(|| {
        app.state::<AppState>()
            .last_notified
            .lock()
            .unwrap()
            .clone()
    });
    if let Some(id) = id {
        let app = app.clone();
        tauri::async_runtime::spawn(async move {
            // The window may just be loading: say it twice, the second time after it has listeners.
            for delay in [0u64, 800] {
                tokio::time::sleep(Duration::from_millis(delay)).await;
                let _ = app.emit_to("dashboard", "focus-alert", FocusAlert { id: id.clone() });
            }
        });
    }
}

/// `b` with the app's state and every command registered; `run` adds the desktop parts (tray, plugins,
/// daemon follower). Tests pass `tauri::test::mock_builder()`.
pub fn with_commands<R: Runtime>(b: tauri::Builder<R>, state: AppState) -> tauri::Builder<R> {
    b.manage(state).invoke_handler(tauri::generate_handler![
        commands::call,
        commands::follow_logs,
        commands::unfollow_logs,
        commands::get_connection,
        commands::start_daemon,
        commands::window_ready,
        commands::open_view,
        commands::chat_send,
        commands::chat_cancel,
        commands::chat_speech,
        commands::chat_transcribe,
        commands::set_unsaved,
        commands::close_window,
        commands::hide_window,
    ])
}

pub fn run() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MLXBOX_LOG")
                // The app's own notes (which daemon it started, and from where) at info; the rest at warn.
                .unwrap_or_else(|_| "warn,mlx_box_app=info,mlxbox_client=info".into()),
        )
        .init();
    let args: Vec<String> = std::env::args().collect();
    let open_at_start = match windows::requested_view(&args) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("mlx-box-app: {e}");
            std::process::exit(2);
        }
    };
    let state = AppState::new(app::state_dir());
    let app = with_commands(tauri::Builder::<tauri::Wry>::new(), state)
        // One instance: a second launch opens the window it asks for in the first (the dashboard, on the
        // last notified alert, when it asks for none).
        .plugin(tauri_plugin_single_instance::init(
            |app, argv, _cwd| match windows::requested_view(&argv).ok().flatten() {
                Some(view) => windows::open(app, view),
                None => open_on_alert(app, None),
            },
        ))
        .plugin(tauri_plugin_notification::init())
        // Choose… buttons of the Settings window (a python, a model directory).
        .plugin(tauri_plugin_dialog::init())
        .plugin(tauri_plugin_autostart::init(
            tauri_plugin_autostart::MacosLauncher::LaunchAgent,
            None,
        ))
        .setup(move |app| {
            // A menu-bar app: no Dock icon. Its menus (app, Edit, View, Window) show while one of its
            // windows is in front; without the Edit menu ⌘C / ⌘V would not reach the text fields.
            #[cfg(target_os = "macos")]
            {
                app.set_activation_policy(tauri::ActivationPolicy::Accessory);
                app.set_menu(app_menu::build(app.handle())?)?;
            }
            app.on_menu_event(|app, ev| app_menu::on_menu(app, ev.id().as_ref()));
            let handle = app.handle().clone();
            if let Err(e) = tray::create(&handle) {
                tracing::warn!("no tray icon on this desktop ({e}); use the windows");
            }
            let state = app.state::<AppState>();
            let (core, shared) = (state.core.clone(), state.shared.clone());
            tauri::async_runtime::spawn(async move {
                // Start the daemon when none runs on our state dir, then follow it for as long as we run.
                if core.client.call(call::Status {}).await.is_err() {
                    let _ = core
                        .start_daemon(&app::daemon_binary(), Duration::from_secs(5))
                        .await;
                }
                let sink = Arc::new(TauriSink { app: handle });
                // A daemon that dies is started again (unless an OS agent does it: `mlx-box service`).
                app::watch_daemon(
                    core,
                    sink,
                    shared,
                    Duration::from_secs(1),
                    Some(app::daemon_binary()),
                )
                .await;
            });
            // No window made ahead at start: on WebKitGTK a hidden page is only laid out when first shown
            // (measured: 493 ms vs 440-720 ms cold) and costs ~0.5 % of a core while it waits.
            if let Some(view) = open_at_start {
                windows::open(app.handle(), view);
            }
            Ok(())
        })
        .build(tauri::generate_context!())
        .expect("mlx-box-app: cannot start the app");
    app.run(|app, ev| match ev {
        // Closing the last window leaves the app in the menu bar; only Quit (app.exit) ends it.
        RunEvent::ExitRequested { api, code, .. } if code.is_none() => api.prevent_exit(),
        #[cfg(target_os = "macos")]
        RunEvent::Reopen { .. } => open_on_alert(app, None),
        _ => {
            let _ = app;
        }
    });
}

#[cfg(test)]
mod tests {
    use mlxbox_client::app::{find_daemon, DaemonFrom};
    use std::path::Path;

    /// The `.app` tauri makes from tauri.conf.json (checked without a Mac): `externalBin` names the daemon,
    /// which the bundler takes as `binaries/mlx-box-<triple>` and puts beside the app's executable with its
    /// triple taken off — `Contents/MacOS/mlx-box` — where the app looks for it first.
    #[test]
    fn the_bundle_carries_the_daemon_where_the_app_finds_it() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        let conf: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("tauri.conf.json")).unwrap())
                .unwrap();
        let bins = conf["bundle"]["externalBin"]
            .as_array()
            .expect("bundle.externalBin");
        assert_eq!(bins.len(), 1, "{bins:?}");
        let sidecar = bins[0].as_str().unwrap();
        let targets = conf["bundle"]["targets"].as_array().unwrap();
        for t in ["app", "dmg", "deb"] {
            assert!(targets.iter().any(|x| x == t), "bundle.targets lacks {t}");
        }
        let product = conf["productName"].as_str().unwrap();
        let tmp = tempfile::tempdir().unwrap();
        for triple in ["aarch64-apple-darwin", "universal-apple-darwin"] {
            // What the bundler reads (scripts/release.sh writes it) and what it writes into the bundle.
            let source = dir.join(format!("{sidecar}-{triple}"));
            let name = source
                .file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .replace(&format!("-{triple}"), "");
            let macos = tmp
                .path()
                .join(triple)
                .join(format!("{product}.app/Contents/MacOS"));
            std::fs::create_dir_all(&macos).unwrap();
            for f in [env!("CARGO_PKG_NAME"), &name] {
                std::fs::write(macos.join(f), "#!/bin/sh\n").unwrap();
                let exec = std::os::unix::fs::PermissionsExt::from_mode(0o755);
                std::fs::set_permissions(macos.join(f), exec).unwrap();
            }
            let found = find_daemon(None, Some(&macos.join(env!("CARGO_PKG_NAME"))), None);
            assert_eq!(found.from, DaemonFrom::BesideApp, "{triple}: {found}");
            assert!(
                found
                    .path
                    .ends_with(format!("{product}.app/Contents/MacOS/mlx-box")),
                "{triple}: {found}"
            );
        }
    }
}
