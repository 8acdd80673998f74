//! Desktop notifications for the daemon's alerts (which alerts: `mlxbox_client::menubar::NotificationGate`).
//! Shown through notify-rust, the notification plugin's own backend, because the plugin's desktop side drops
//! the handle a click arrives on: here a thread keeps it, and a click on the notification opens the
//! dashboard on that alert (Linux: the "default" action; macOS: the banner's default action).

use mlxbox_api::Alert;
use tauri::{AppHandle, Runtime};

pub fn show<R: Runtime>(app: &AppHandle<R>, alert: &Alert) {
    let mut n = notify_rust::Notification::new();
    n.summary(&alert.title).body(&alert.body).appname("mlx-box");
    #[cfg(all(unix, not(target_os = "macos")))]
    {
        // "default" is what a click on the body reports; the label shows where servers offer buttons.
        n.action("default", "Open dashboard");
        if alert.severity == mlxbox_api::AlertSeverity::Critical {
            n.urgency(notify_rust::Urgency::Critical);
        }
    }
    let (app, id) = (app.clone(), alert.id.clone());
    // Waiting for the click blocks until the notification is acted on or closed: a thread of its own.
    std::thread::spawn(move || match n.show() {
        Ok(handle) => handle.wait_for_action(|action| {
            if opens_dashboard(action) {
                crate::open_on_alert(&app, Some(id));
            }
        }),
        Err(e) => tracing::warn!("cannot show a notification ({e}); the alert is in the dashboard"),
    });
}

/// Whether a notification's response opens the dashboard on its alert: a click on the body — reported as
/// "default" by every backend (Linux: the default action; macOS: a click on the banner, which notify-rust
/// maps to "default") — but not a dismissal (`__closed`) or another button.
fn opens_dashboard(action: &str) -> bool {
    action == "default"
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_click_opens_the_dashboard_a_dismissal_does_not() {
        assert!(super::opens_dashboard("default"));
        assert!(!super::opens_dashboard("__closed"));
        assert!(!super::opens_dashboard(""));
    }
}
