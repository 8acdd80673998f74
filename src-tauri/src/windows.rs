//! The app's windows: one per view, created on demand and focused when already open. Each loads the same
//! front end, which picks its view from the URL hash.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;
use tauri::{AppHandle, Emitter, Manager, Runtime, WebviewUrl, WebviewWindowBuilder, WindowEvent};

/// When each window was asked for, to time "open → drawn" (`MLXBOX_APP_TIMINGS=1` prints it).
static ASKED: Mutex<Option<HashMap<String, Instant>>> = Mutex::new(None);

pub fn timings_enabled() -> bool {
    std::env::var_os("MLXBOX_APP_TIMINGS").is_some_and(|v| v == "1")
}

/// Called by a window once it has drawn its first frame with data: prints how long it took since it was
/// asked for (menu click, `--open`, second launch).
pub fn drawn(label: &str) {
    tracing::debug!("window {label} drawn");
    let asked = ASKED.lock().unwrap().as_mut().and_then(|m| m.remove(label));
    if let (true, Some(t0)) = (timings_enabled(), asked) {
        eprintln!(
            "timing: window {label} open→drawn {:.1} ms",
            t0.elapsed().as_secs_f64() * 1e3
        );
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Dashboard,
    Settings,
    Bench,
}

impl View {
    pub fn parse(s: &str) -> Option<View> {
        Some(match s {
            "dashboard" => View::Dashboard,
            "settings" => View::Settings,
            "bench" | "benchmark" => View::Bench,
            _ => return None,
        })
    }

    pub fn label(self) -> &'static str {
        match self {
            View::Dashboard => "dashboard",
            View::Settings => "settings",
            View::Bench => "bench",
        }
    }

    fn title(self) -> &'static str {
        match self {
            View::Dashboard => "mlx-box — Dashboard",
            View::Settings => "mlx-box — Settings",
            View::Bench => "mlx-box — Benchmark",
        }
    }

    fn size(self) -> (f64, f64) {
        match self {
            View::Dashboard => (1100.0, 760.0),
            View::Settings => (820.0, 760.0),
            View::Bench => (1000.0, 720.0),
        }
    }
}

/// Windows the user can see: events are only serialised for the webviews when one is visible.
static VISIBLE: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());

pub fn any_visible() -> bool {
    !VISIBLE.lock().unwrap().is_empty()
}

fn set_visible(view: View, visible: bool) {
    let mut v = VISIBLE.lock().unwrap();
    v.retain(|l| *l != view.label());
    if visible {
        v.push(view.label());
    }
}

/// Shows the window of `view`, creating it when needed. Safe to call from any thread. A window that was
/// opened before (or made ahead by `prewarm`) is only shown again: it re-fetches its data, which is all the
/// user waits for.
pub fn open<R: Runtime>(app: &AppHandle<R>, view: View) {
    ASKED
        .lock()
        .unwrap()
        .get_or_insert_with(HashMap::new)
        .insert(view.label().to_string(), Instant::now());
    tracing::debug!("opening the {} window", view.label());
    set_visible(view, true);
    let handle = app.clone();
    let _ = app.run_on_main_thread(move || {
        if let Some(w) = handle.get_webview_window(view.label()) {
            let _ = w.unminimize();
            let _ = w.show();
            let _ = w.set_focus();
            // The page was hidden and got no events meanwhile: it refreshes, then says it is drawn.
            let _ = handle.emit_to(view.label(), "window-shown", ());
            return;
        }
        create(&handle, view, true);
    });
}

/// Makes the window of `view` now, hidden, so that opening it later costs a show, not a web process start
/// (~0.75 s on a 2-core Linux box). Safe to call from any thread.
pub fn prewarm<R: Runtime>(app: &AppHandle<R>, view: View) {
    let handle = app.clone();
    let _ = app.run_on_main_thread(move || {
        if handle.get_webview_window(view.label()).is_none() {
            create(&handle, view, false);
        }
    });
}

fn create<R: Runtime>(app: &AppHandle<R>, view: View, visible: bool) {
    let (w, h) = view.size();
    let url = WebviewUrl::App(format!("index.html#{}", view.label()).into());
    match WebviewWindowBuilder::new(app, view.label(), url)
        .title(view.title())
        .inner_size(w, h)
        .min_inner_size(640.0, 420.0)
        .visible(visible)
        .focused(visible)
        .build()
    {
        Ok(window) => {
            // Closing hides: the next open is instant, and a hidden page costs no CPU (no events reach it).
            let w2 = window.clone();
            window.on_window_event(move |ev| {
                if let WindowEvent::CloseRequested { api, .. } = ev {
                    api.prevent_close();
                    let _ = w2.hide();
                    set_visible(view, false);
                }
            });
        }
        Err(e) => tracing::warn!("cannot open the {} window: {e}", view.label()),
    }
}

/// `--open dashboard|settings|bench` from a command line (the app's own or a second launch's).
pub fn requested_view(args: &[String]) -> Result<Option<View>, String> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let v = if a == "--open" {
            it.next().map(String::as_str)
        } else if let Some(v) = a.strip_prefix("--open=") {
            Some(v)
        } else {
            continue;
        };
        return match v.and_then(View::parse) {
            Some(view) => Ok(Some(view)),
            None => Err(format!(
                "--open takes dashboard, settings or bench (got {})",
                v.unwrap_or("nothing")
            )),
        };
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn open_flag() {
        assert_eq!(requested_view(&args(&["app"])), Ok(None));
        assert_eq!(
            requested_view(&args(&["app", "--open", "settings"])),
            Ok(Some(View::Settings))
        );
        assert_eq!(
            requested_view(&args(&["app", "--open=bench"])),
            Ok(Some(View::Bench))
        );
        assert!(requested_view(&args(&["app", "--open", "nope"])).is_err());
        assert!(requested_view(&args(&["app", "--open"])).is_err());
    }
}
