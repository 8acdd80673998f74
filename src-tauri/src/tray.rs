//! Draws the tray from `mlxbox_client::menubar` (the model lives there) and routes menu clicks back to typed
//! actions. Menu and icon changes run on the main thread, as the platform requires.

use crate::windows::{self, View};
use crate::AppState;
use mlxbox_api::call;
use mlxbox_api::service::Verb;
use mlxbox_client::app::daemon_binary;
use mlxbox_client::menubar::{self, MenuAction, MenuEntry, Snapshot, TrayLevel};
use std::time::Duration;
use tauri::image::Image;
use tauri::menu::{CheckMenuItem, IsMenuItem, Menu, MenuItem, PredefinedMenuItem, Submenu};
use tauri::tray::{TrayIcon, TrayIconBuilder, TrayIconEvent};
use tauri::{AppHandle, Manager, Runtime};
use tauri_plugin_autostart::ManagerExt as _;

const TRAY_ID: &str = "mlx-box";

/// Monochrome template images (black + alpha): macOS tints them for the menu bar.
pub fn icon(level: TrayLevel) -> Image<'static> {
    let bytes: &'static [u8] = match level {
        TrayLevel::Ready => include_bytes!("../../icons/tray/ready.png"),
        TrayLevel::Starting => include_bytes!("../../icons/tray/starting.png"),
        TrayLevel::Degraded => include_bytes!("../../icons/tray/degraded.png"),
        TrayLevel::Stopped => include_bytes!("../../icons/tray/stopped.png"),
        TrayLevel::Alert => include_bytes!("../../icons/tray/alert.png"),
        TrayLevel::Disconnected => include_bytes!("../../icons/tray/disconnected.png"),
    };
    Image::from_bytes(bytes).expect("embedded tray icon is a valid PNG")
}

fn build_menu<R: Runtime>(app: &AppHandle<R>, entries: &[MenuEntry]) -> tauri::Result<Menu<R>> {
    let items = build_items(app, entries, "")?;
    let refs: Vec<&dyn IsMenuItem<R>> = items.iter().map(|b| b.as_ref()).collect();
    Menu::with_items(app, &refs)
}

/// The items of a menu level; `prefix` keeps the label ids of a submenu apart from the top level's.
fn build_items<R: Runtime>(
    app: &AppHandle<R>,
    entries: &[MenuEntry],
    prefix: &str,
) -> tauri::Result<Vec<Box<dyn IsMenuItem<R>>>> {
    let mut items: Vec<Box<dyn IsMenuItem<R>>> = Vec::with_capacity(entries.len());
    for (i, e) in entries.iter().enumerate() {
        items.push(match e {
            MenuEntry::Label(text) => Box::new(MenuItem::with_id(
                app,
                format!("label:{prefix}{i}"),
                text,
                false,
                None::<&str>,
            )?),
            MenuEntry::Item {
                action,
                text,
                enabled,
            } => Box::new(MenuItem::with_id(
                app,
                action.id(),
                text,
                *enabled,
                None::<&str>,
            )?),
            MenuEntry::Check {
                action,
                text,
                checked,
            } => Box::new(CheckMenuItem::with_id(
                app,
                action.id(),
                text,
                true,
                *checked,
                None::<&str>,
            )?),
            MenuEntry::Submenu {
                text,
                enabled,
                entries,
            } => {
                let sub = build_items(app, entries, &format!("{prefix}{i}/"))?;
                let refs: Vec<&dyn IsMenuItem<R>> = sub.iter().map(|b| b.as_ref()).collect();
                Box::new(Submenu::with_id_and_items(
                    app,
                    format!("submenu:{prefix}{i}"),
                    text,
                    *enabled,
                    &refs,
                )?)
            }
            MenuEntry::Separator => Box::new(PredefinedMenuItem::separator(app)?),
        });
    }
    Ok(items)
}

fn launch_at_login<R: Runtime>(app: &AppHandle<R>) -> bool {
    app.autolaunch().is_enabled().unwrap_or(false)
}

/// Creates the tray icon. On a desktop without a status-notifier host (some Linux sessions) this fails;
/// the app then keeps running with its windows only.
pub fn create<R: Runtime>(app: &AppHandle<R>) -> tauri::Result<TrayIcon<R>> {
    let snap = Snapshot::default();
    let menu = build_menu(app, &menubar::menu(&snap, launch_at_login(app)))?;
    TrayIconBuilder::with_id(TRAY_ID)
        .icon(icon(TrayLevel::Disconnected))
        .icon_as_template(true)
        .tooltip(TrayLevel::Disconnected.describe())
        .menu(&menu)
        .show_menu_on_left_click(true)
        .on_menu_event(|app, ev| on_menu(app, ev.id().as_ref()))
        // A click opens the menu (macOS, Windows; Linux indicators send none): get the dashboard ready
        // behind it, so "Open dashboard" is a show.
        .on_tray_icon_event(|icon, ev| {
            if let TrayIconEvent::Click { .. } = ev {
                windows::prewarm(icon.app_handle(), View::Dashboard);
            }
        })
        .build(app)
}

/// Redraws icon, tooltip and menu for `snap` (called only when something shown changed).
pub fn redraw<R: Runtime>(app: &AppHandle<R>, snap: Snapshot, level: TrayLevel) {
    let handle = app.clone();
    let _ = app.run_on_main_thread(move || {
        let Some(tray) = handle.tray_by_id(TRAY_ID) else {
            return;
        };
        if let Ok(menu) = build_menu(&handle, &menubar::menu(&snap, launch_at_login(&handle))) {
            let _ = tray.set_menu(Some(menu));
        }
        let _ = tray.set_icon(Some(icon(level)));
        // set_icon resets the template flag on macOS: re-apply it every time.
        let _ = tray.set_icon_as_template(true);
        let _ = tray.set_tooltip(Some(level.describe()));
        if windows::timings_enabled() {
            // Latency from the newest state change in the daemon to this redraw being done.
            let newest = snap
                .status
                .iter()
                .flat_map(|s| s.services.iter().map(|x| x.since_ms))
                .max();
            if let Some(t) = newest {
                let now = mlxbox_api::now_ms();
                eprintln!(
                    "timing: tray {} redrawn {} ms after the daemon's state change",
                    level.as_str(),
                    now.saturating_sub(t)
                );
            }
        }
    });
}

fn on_menu<R: Runtime>(app: &AppHandle<R>, id: &str) {
    let Ok(action) = MenuAction::try_from(id) else {
        return; // the summary label
    };
    let state = app.state::<AppState>();
    let core = state.core.clone();
    let snap = state.shared.lock().unwrap().0.clone();
    match action {
        MenuAction::ToggleService(name) => match menubar::toggle_verb(&snap, &name) {
            // Stopping cuts off whoever is using it: the dashboard says what and asks first.
            Some(Verb::Stop) => {
                windows::open_with(app, View::Dashboard, Some(format!("confirm=stop:{name}")))
            }
            Some(verb) => {
                tauri::async_runtime::spawn(async move {
                    let _ = core.call(call::Action { target: name, verb }).await;
                });
            }
            None => {}
        },
        MenuAction::ToggleHostService { host, service } => {
            if let Some(verb) = menubar::toggle_host_verb(&snap, &host, &service) {
                tauri::async_runtime::spawn(async move {
                    let forward = call::Action {
                        target: service,
                        verb,
                    };
                    let _ = core.call(call::Host { host, forward }).await;
                });
            }
        }
        MenuAction::StartAll => {
            tauri::async_runtime::spawn(async move {
                let target = "all".to_string();
                let verb = Verb::Start;
                let _ = core.call(call::Action { target, verb }).await;
            });
        }
        // What stops work asks first, in the window that shows what it would cut off.
        MenuAction::StopAll => {
            windows::open_with(app, View::Dashboard, Some("confirm=stop".into()))
        }
        MenuAction::RestartAll => {
            windows::open_with(app, View::Dashboard, Some("confirm=restart".into()))
        }
        MenuAction::RunBenchmark => {
            windows::open_with(app, View::Bench, Some("confirm=run".into()))
        }
        MenuAction::OpenDashboard => windows::open(app, View::Dashboard),
        MenuAction::OpenSettings => windows::open(app, View::Settings),
        MenuAction::OpenChat => windows::open(app, View::Chat),
        MenuAction::OpenAlert(id) => crate::open_on_alert(app, Some(id)),
        MenuAction::StartDaemon => {
            tauri::async_runtime::spawn(async move {
                let _ = core
                    .start_daemon(&daemon_binary(), Duration::from_secs(10))
                    .await;
            });
        }
        MenuAction::LaunchAtLogin => {
            let al = app.autolaunch();
            let on = !al.is_enabled().unwrap_or(false);
            let _ = if on { al.enable() } else { al.disable() };
            // The daemon too: the OS agent starts it at login and after a crash (`mlx-box service`).
            tauri::async_runtime::spawn(async move {
                match core.set_daemon_agent(&daemon_binary().path, on).await {
                    Ok(said) => tracing::info!("{said}"),
                    Err(e) => tracing::warn!("the daemon's login agent: {}", e.message),
                }
            });
            redraw(app, snap.clone(), menubar::tray_level(&snap));
        }
        MenuAction::Quit => {
            let stop = state.shared.lock().unwrap().1.stop_servers_on_quit;
            let app = app.clone();
            tauri::async_runtime::spawn(async move {
                if stop {
                    // The daemon stops every server (process groups emptied) before it exits.
                    let _ = core.client.call(call::Shutdown {}).await;
                }
                app.exit(0);
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The menu bar's icons are template images (`icon_as_template`): macOS draws only their alpha, tinted
    /// for a light or dark bar, so every pixel is black and the shape is in the alpha; 44 px = 22 pt at 2x.
    #[test]
    fn tray_icons_are_template_images() {
        use TrayLevel::*;
        let levels = [Disconnected, Alert, Degraded, Starting, Ready, Stopped];
        let mut shapes = vec![];
        for level in levels {
            let img = icon(level);
            assert_eq!((img.width(), img.height()), (44, 44), "{level:?}");
            let rgba = img.rgba();
            let alpha: Vec<u8> = rgba.chunks(4).map(|p| p[3]).collect();
            assert!(
                rgba.chunks(4).all(|p| p[3] == 0 || p[..3] == [0, 0, 0]),
                "{level:?}: a visible pixel that is not black"
            );
            assert!(alpha.contains(&255), "{level:?}: nothing opaque");
            assert!(alpha.contains(&0), "{level:?}: no transparent background");
            shapes.push(alpha);
        }
        // Each state has its own shape: the icon alone tells them apart.
        for (i, a) in shapes.iter().enumerate() {
            assert!(
                !shapes[i + 1..].contains(a),
                "{:?} looks like another state",
                levels[i]
            );
        }
    }
}
