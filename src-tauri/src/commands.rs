//! The commands the windows call: `call` carries any request of the control API to the daemon (see
//! `mlxbox_client::app`'s module doc); the rest are the app's own (its connection, log following, which
//! emits events, and the first-frame timing).

use crate::AppState;
use mlxbox_api::control::Request;
use mlxbox_client::app::{daemon_binary, CommandError, Connection, LogLine};
use std::time::Duration;
use tauri::{AppHandle, Emitter, Runtime, State};

type R<T> = Result<T, CommandError>;

/// Any `Request` (for another Mac, a `Request::Host` around it), its reply as the daemon sent it.
#[tauri::command]
pub async fn call(s: State<'_, AppState>, request: Request) -> R<serde_json::Value> {
    s.core.call_json(request).await
}

#[tauri::command]
pub async fn get_connection(s: State<'_, AppState>) -> R<Connection> {
    Ok(s.core.connection().await)
}

#[tauri::command]
pub async fn start_daemon(s: State<'_, AppState>) -> R<Connection> {
    s.core
        .start_daemon(&daemon_binary(), Duration::from_secs(10))
        .await
}

/// Emits `log-line` events for `name` until `unfollow_logs` (or the daemon goes away).
#[tauri::command]
pub async fn follow_logs<Rt: Runtime>(
    app: AppHandle<Rt>,
    s: State<'_, AppState>,
    name: String,
) -> R<()> {
    let core = s.core.clone();
    let n = name.clone();
    let task = tauri::async_runtime::spawn(async move {
        let _ = core
            .client
            .follow_logs(&n, |line| {
                let _ = app.emit(
                    "log-line",
                    LogLine {
                        name: n.clone(),
                        line: line.to_string(),
                    },
                );
            })
            .await;
    });
    if let Some(old) = s.follows.lock().unwrap().insert(name, task) {
        old.abort();
    }
    Ok(())
}

#[tauri::command]
pub async fn unfollow_logs(s: State<'_, AppState>, name: String) -> R<()> {
    if let Some(t) = s.follows.lock().unwrap().remove(&name) {
        t.abort();
    }
    Ok(())
}

/// The window has drawn its first frame with data (see `windows::drawn`).
#[tauri::command]
pub fn window_ready<Rt: Runtime>(window: tauri::WebviewWindow<Rt>) {
    crate::windows::drawn(window.label());
}
