//! The app's menus in the macOS menu bar while one of its windows is in front: mlx-box (About, Settings…
//! ⌘,, Hide, Quit), Edit (the standard items: without them ⌘C / ⌘V / ⌘A do not reach a web view's text
//! fields on macOS), View (Dashboard ⌘1, Benchmark ⌘2, Chat ⌘3) and Window (Minimize, Close ⌘W).
//! Built on every platform (so the tests check it), set only on macOS: elsewhere the same shortcuts are
//! the pages' own (ui/src/lib/shortcuts.ts), and a window keeps no menu bar of its own.

use crate::windows::{self, View};
use tauri::menu::{Menu, MenuItem, PredefinedMenuItem, Submenu};
use tauri::{AppHandle, Manager, Runtime};

/// The menu items' ids and accelerators: `app:view:NAME` opens (or brings forward) that view's window.
pub const VIEW_ITEMS: [(View, &str, &str); 4] = [
    (View::Settings, "Settings…", "CmdOrCtrl+,"),
    (View::Dashboard, "Dashboard", "CmdOrCtrl+1"),
    (View::Bench, "Benchmark", "CmdOrCtrl+2"),
    (View::Chat, "Chat", "CmdOrCtrl+3"),
];

fn view_item<R: Runtime>(app: &AppHandle<R>, view: View) -> tauri::Result<MenuItem<R>> {
    let (_, text, accel) = VIEW_ITEMS
        .iter()
        .find(|(v, ..)| *v == view)
        .copied()
        .unwrap_or((view, view.label(), ""));
    MenuItem::with_id(
        app,
        format!("app:view:{}", view.label()),
        text,
        true,
        (!accel.is_empty()).then_some(accel),
    )
}

pub fn build<R: Runtime>(app: &AppHandle<R>) -> tauri::Result<Menu<R>> {
    let sep = || PredefinedMenuItem::separator(app);
    let main = Submenu::with_items(
        app,
        "mlx-box",
        true,
        &[
            &PredefinedMenuItem::about(app, Some("About mlx-box"), None)?,
            &sep()?,
            &view_item(app, View::Settings)?,
            &sep()?,
            &PredefinedMenuItem::hide(app, None)?,
            &PredefinedMenuItem::hide_others(app, None)?,
            &sep()?,
            &PredefinedMenuItem::quit(app, Some("Quit mlx-box"))?,
        ],
    )?;
    let edit = Submenu::with_items(
        app,
        "Edit",
        true,
        &[
            &PredefinedMenuItem::undo(app, None)?,
            &PredefinedMenuItem::redo(app, None)?,
            &sep()?,
            &PredefinedMenuItem::cut(app, None)?,
            &PredefinedMenuItem::copy(app, None)?,
            &PredefinedMenuItem::paste(app, None)?,
            &PredefinedMenuItem::select_all(app, None)?,
        ],
    )?;
    let view = Submenu::with_items(
        app,
        "View",
        true,
        &[
            &view_item(app, View::Dashboard)?,
            &view_item(app, View::Bench)?,
            &view_item(app, View::Chat)?,
        ],
    )?;
    let window = Submenu::with_items(
        app,
        "Window",
        true,
        &[
            &PredefinedMenuItem::minimize(app, None)?,
            // Not the predefined Close: ours asks first when the Settings window holds unsaved edits.
            &MenuItem::with_id(app, "app:close", "Close", true, Some("CmdOrCtrl+W"))?,
        ],
    )?;
    Menu::with_items(app, &[&main, &edit, &view, &window])
}

/// An app-menu click (ids `app:…`; the tray's items have their own handler).
pub fn on_menu<R: Runtime>(app: &AppHandle<R>, id: &str) {
    let Some(rest) = id.strip_prefix("app:") else {
        return;
    };
    if rest == "close" {
        if let Some(w) = app
            .webview_windows()
            .into_values()
            .find(|w| w.is_focused().unwrap_or(false))
        {
            windows::close(&w);
        }
    } else if let Some(view) = rest.strip_prefix("view:").and_then(View::parse) {
        windows::open(app, view);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The menus build (on the mock runtime: the same code macOS runs) with one item per view, each id
    /// one that `on_menu` opens.
    #[test]
    fn the_app_menu_has_the_views_and_their_shortcuts() {
        let app = tauri::test::mock_app();
        let menu = build(app.handle()).expect("menu");
        let subs = menu.items().unwrap();
        let titles: Vec<String> = subs
            .iter()
            .filter_map(|i| i.as_submenu().map(|s| s.text().unwrap()))
            .collect();
        assert_eq!(titles, ["mlx-box", "Edit", "View", "Window"]);
        for (view, _, accel) in VIEW_ITEMS {
            let id = format!("app:view:{}", view.label());
            assert!(
                menu.get(&id).is_some()
                    || subs
                        .iter()
                        .any(|s| s.as_submenu().is_some_and(|s| s.get(&id).is_some())),
                "{id} missing"
            );
            assert!(accel.starts_with("CmdOrCtrl+"));
            assert_eq!(View::parse(view.label()), Some(view));
        }
    }
}
