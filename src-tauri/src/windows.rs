//! The app's windows: one per view, created on demand and focused when already open. Each loads the same
//! front end, which picks its view from the URL hash.

use tauri::{AppHandle, Manager, Runtime, WebviewUrl, WebviewWindowBuilder};

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

/// Shows the window of `view`, creating it when needed. Safe to call from any thread.
pub fn open<R: Runtime>(app: &AppHandle<R>, view: View) {
    let handle = app.clone();
    let _ = app.run_on_main_thread(move || {
        if let Some(w) = handle.get_webview_window(view.label()) {
            let _ = w.unminimize();
            let _ = w.show();
            let _ = w.set_focus();
            return;
        }
        let (w, h) = view.size();
        let url = WebviewUrl::App(format!("index.html#{}", view.label()).into());
        if let Err(e) = WebviewWindowBuilder::new(&handle, view.label(), url)
            .title(view.title())
            .inner_size(w, h)
            .min_inner_size(640.0, 420.0)
            .focused(true)
            .build()
        {
            tracing::warn!("cannot open the {} window: {e}", view.label());
        }
    });
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
