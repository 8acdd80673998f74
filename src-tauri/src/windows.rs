//! The app's windows: one per view, created on demand and focused when already open. Each loads the same
//! front end, which picks its view from the URL hash.

use std::sync::Mutex;
use std::time::Instant;
use tauri::{
    AppHandle, Emitter, Manager, Runtime, WebviewUrl, WebviewWindow, WebviewWindowBuilder,
    WindowEvent,
};

/// When each window was asked for, to time "open → drawn" (`MLXBOX_APP_TIMINGS=1` prints it).
static ASKED: Mutex<[Option<Instant>; VIEWS]> = Mutex::new([None; VIEWS]);

/// How many views there are (windows of their own).
const VIEWS: usize = 4;

pub fn timings_enabled() -> bool {
    std::env::var_os("MLXBOX_APP_TIMINGS").is_some_and(|v| v == "1")
}

/// Called by a window once it has drawn its first frame with data: prints how long it took since it was
/// asked for (menu click, `--open`, second launch).
pub fn drawn(label: &str) {
    tracing::debug!("window {label} drawn");
    let asked = View::parse(label).and_then(|v| ASKED.lock().unwrap()[v as usize].take());
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
    Chat,
}

impl View {
    pub fn parse(s: &str) -> Option<View> {
        Some(match s {
            "dashboard" => View::Dashboard,
            "settings" => View::Settings,
            "bench" | "benchmark" => View::Bench,
            "chat" => View::Chat,
            _ => return None,
        })
    }

    pub fn label(self) -> &'static str {
        match self {
            View::Dashboard => "dashboard",
            View::Settings => "settings",
            View::Bench => "bench",
            View::Chat => "chat",
        }
    }

    fn title(self) -> &'static str {
        match self {
            View::Dashboard => "mlx-box — Dashboard",
            View::Settings => "mlx-box — Settings",
            View::Bench => "mlx-box — Benchmark",
            View::Chat => "mlx-box — Chat",
        }
    }

    fn size(self) -> (f64, f64) {
        match self {
            View::Dashboard => (1100.0, 760.0),
            View::Settings => (820.0, 760.0),
            View::Bench => (1000.0, 720.0),
            View::Chat => (820.0, 720.0),
        }
    }
}

/// Per view (indexed by `View as usize`): whether the user can see its window, and a generation bumped at
/// every show and hide, so that a release scheduled at a hide only happens when nothing happened since.
static SEEN: Mutex<[(bool, u64); VIEWS]> = Mutex::new([(false, 0); VIEWS]);

/// Per view: whether its page holds edits not saved (`set_unsaved`): closing it then asks the page
/// (`close-asked`: Save / Don't Save / Cancel) instead of hiding it.
static UNSAVED: Mutex<[bool; VIEWS]> = Mutex::new([false; VIEWS]);

pub fn set_unsaved(label: &str, unsaved: bool) {
    if let Some(v) = View::parse(label) {
        UNSAVED.lock().unwrap()[v as usize] = unsaved;
    }
}

/// What the close button, ⌘W and File ▸ Close do: ask the page when it holds unsaved edits, else hide.
pub fn close<R: Runtime>(window: &WebviewWindow<R>) {
    let Some(view) = View::parse(window.label()) else {
        return;
    };
    if UNSAVED.lock().unwrap()[view as usize] {
        let _ = window.set_focus();
        let _ = window.emit_to(window.label(), "close-asked", ());
    } else {
        hide(window);
    }
}

/// Hides the window (closing is a hide: opening again soon is a show); destroyed after
/// `hidden_release()` unused.
pub fn hide<R: Runtime>(window: &WebviewWindow<R>) {
    let Some(view) = View::parse(window.label()) else {
        return;
    };
    UNSAVED.lock().unwrap()[view as usize] = false;
    let _ = window.hide();
    let gen = set_visible(view, false);
    release_later(window.app_handle(), view, gen);
}

/// Events are only serialised for the web views while a window is visible.
pub fn any_visible() -> bool {
    SEEN.lock().unwrap().iter().any(|(visible, _)| *visible)
}

/// A window hidden this long is destroyed: a hidden web view still costs ~0.45 % of a core (WebKitGTK's own
/// timers), and the idle app must stay under 0.5 %. Reopening within this time is a show (~50 ms).
/// `MLXBOX_APP_HIDDEN_RELEASE_S` changes it (the performance script uses a short one).
fn hidden_release() -> std::time::Duration {
    let s = std::env::var("MLXBOX_APP_HIDDEN_RELEASE_S")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .unwrap_or(180.0);
    std::time::Duration::from_secs_f64(s)
}

fn set_visible(view: View, visible: bool) -> u64 {
    let mut seen = SEEN.lock().unwrap();
    let slot = &mut seen[view as usize];
    *slot = (visible, slot.1 + 1);
    slot.1
}

fn generation(view: View) -> u64 {
    SEEN.lock().unwrap()[view as usize].1
}

/// Destroys the (hidden) window of `view` after `hidden_release()` unless it was shown or hidden again since.
fn release_later<R: Runtime>(app: &AppHandle<R>, view: View, gen: u64) {
    let app = app.clone();
    // A plain thread: this runs on the main thread, inside the event loop, where a task would wait for it.
    std::thread::spawn(move || {
        std::thread::sleep(hidden_release());
        if generation(view) != gen {
            return;
        }
        let handle = app.clone();
        let _ = app.run_on_main_thread(move || {
            if generation(view) == gen {
                if let Some(w) = handle.get_webview_window(view.label()) {
                    tracing::debug!("releasing the hidden {} window", view.label());
                    let _ = w.destroy();
                }
            }
        });
    });
}

/// Shows the window of `view`, creating it when needed. Safe to call from any thread. A window that was
/// opened before (or made ahead by `prewarm`) is only shown again: it re-fetches its data, which is all the
/// user waits for.
pub fn open<R: Runtime>(app: &AppHandle<R>, view: View) {
    open_with(app, view, None);
}

/// Opens (or shows and focuses) the window of `view`, telling it `query` (what to show: `target=chat` for
/// the Chat window): in its URL when the window is made now, as a `window-query` event when it exists.
pub fn open_with<R: Runtime>(app: &AppHandle<R>, view: View, query: Option<String>) {
    ASKED.lock().unwrap()[view as usize] = Some(Instant::now());
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
            if let Some(q) = &query {
                let _ = handle.emit_to(view.label(), "window-query", q);
            }
            return;
        }
        create(&handle, view, true, query.as_deref());
    });
}

/// Makes the window of `view` now, hidden, when the tray icon is clicked (the menu is about to show), so that
/// "Open dashboard" finds the web view started. Released again after `hidden_release()` unused. Safe to call
/// from any thread.
pub fn prewarm<R: Runtime>(app: &AppHandle<R>, view: View) {
    let handle = app.clone();
    let _ = app.run_on_main_thread(move || {
        if handle.get_webview_window(view.label()).is_none() {
            create(&handle, view, false, None);
        }
    });
}

fn create<R: Runtime>(app: &AppHandle<R>, view: View, visible: bool, query: Option<&str>) {
    let (w, h) = view.size();
    let hash = match query {
        Some(q) => format!("{}?{q}", view.label()),
        None => view.label().to_string(),
    };
    let url = WebviewUrl::App(format!("index.html#{hash}").into());
    match WebviewWindowBuilder::new(app, view.label(), url)
        .title(view.title())
        .inner_size(w, h)
        .min_inner_size(640.0, 420.0)
        .visible(visible)
        .focused(visible)
        .build()
    {
        Ok(window) => {
            // Closing hides (no events reach a hidden page): opening again soon is a show, not a web process
            // start; after `hidden_release()` the window is destroyed.
            let w2 = window.clone();
            window.on_window_event(move |ev| {
                if let WindowEvent::CloseRequested { api, .. } = ev {
                    api.prevent_close();
                    close(&w2);
                }
            });
            if !visible {
                let gen = set_visible(view, false);
                release_later(app, view, gen);
            }
        }
        Err(e) => tracing::warn!("cannot open the {} window: {e}", view.label()),
    }
}

/// `--open dashboard|settings|bench|chat` from a command line (the app's own or a second launch's).
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
                "--open takes dashboard, settings, bench or chat (got {})",
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
