//! The commands the windows call. Each is one line over `mlxbox_client::app::AppCore` (see its module doc for
//! the table); only log following, which emits events, has a few lines of its own.

use crate::AppState;
use mlxbox_api::bench::{BenchOptions, BenchResult, BenchStarted, Comparison};
use mlxbox_api::bench::{DoctorOptions, DoctorReport};
use mlxbox_api::config::ConfigEdit;
use mlxbox_api::control::Request;
use mlxbox_api::keys::{KeyInfo, KeyList, NewKey};
use mlxbox_api::service::Verb;
use mlxbox_api::{
    ActionReply, BenchHistory, ConfigDocument, ConfigPreview, MonitorHistory, StatusReport,
};
use mlxbox_client::app::{daemon_binary, CommandError, Connection, LogLine};
use std::time::Duration;
use tauri::{AppHandle, Emitter, Runtime, State};

type R<T> = Result<T, CommandError>;

#[tauri::command]
pub async fn call(s: State<'_, AppState>, request: Request) -> R<serde_json::Value> {
    s.core.call(request).await
}

#[tauri::command]
pub async fn get_status(s: State<'_, AppState>) -> R<StatusReport> {
    s.core.status().await
}

#[tauri::command]
pub async fn service_action(s: State<'_, AppState>, name: String, verb: Verb) -> R<ActionReply> {
    s.core.service_action(&name, verb).await
}

#[tauri::command]
pub async fn get_logs(s: State<'_, AppState>, name: String, lines: usize) -> R<Vec<String>> {
    s.core.logs(&name, lines).await
}

#[tauri::command]
pub async fn get_history(s: State<'_, AppState>) -> R<MonitorHistory> {
    s.core.history().await
}

/// `host`: a `[hosts]` Mac's settings.toml, through this Mac's daemon; none: this Mac's.
#[tauri::command]
pub async fn get_config(s: State<'_, AppState>, host: Option<String>) -> R<ConfigDocument> {
    s.core.config(host).await
}

#[tauri::command]
pub async fn preview_config(
    s: State<'_, AppState>,
    edits: Vec<ConfigEdit>,
    host: Option<String>,
) -> R<ConfigPreview> {
    s.core.preview_config(edits, host).await
}

#[tauri::command]
pub async fn save_config(
    s: State<'_, AppState>,
    edits: Vec<ConfigEdit>,
    base_hash: Option<String>,
    host: Option<String>,
) -> R<ConfigPreview> {
    s.core.save_config(edits, base_hash, host).await
}

#[tauri::command]
pub async fn get_proxy_stats(
    s: State<'_, AppState>,
) -> R<std::collections::BTreeMap<String, mlxbox_api::proxy::ProxyStats>> {
    s.core.proxy_stats().await
}

#[tauri::command]
pub async fn list_keys(s: State<'_, AppState>) -> R<KeyList> {
    s.core.keys().await
}

#[tauri::command]
pub async fn add_key(
    s: State<'_, AppState>,
    name: Option<String>,
    services: Vec<String>,
) -> R<NewKey> {
    s.core.add_key(name, services).await
}

#[tauri::command]
pub async fn remove_key(s: State<'_, AppState>, id: String) -> R<KeyInfo> {
    s.core.remove_key(&id).await
}

#[tauri::command]
pub async fn bench_start(s: State<'_, AppState>, opts: BenchOptions) -> R<BenchStarted> {
    s.core.bench_start(opts).await
}

#[tauri::command]
pub async fn bench_current(s: State<'_, AppState>) -> R<Option<BenchStarted>> {
    s.core.bench_current().await
}

#[tauri::command]
pub async fn bench_cancel(s: State<'_, AppState>) -> R<BenchStarted> {
    s.core.bench_cancel().await
}

#[tauri::command]
pub async fn bench_result(s: State<'_, AppState>, id: String) -> R<BenchResult> {
    s.core.bench_result(&id).await
}

#[tauri::command]
pub async fn bench_history(s: State<'_, AppState>) -> R<BenchHistory> {
    s.core.bench_history().await
}

#[tauri::command]
pub async fn bench_compare(s: State<'_, AppState>, a: String, b: String) -> R<Comparison> {
    s.core.bench_compare(&a, &b).await
}

#[tauri::command]
pub async fn run_doctor(s: State<'_, AppState>, opts: DoctorOptions) -> R<DoctorReport> {
    s.core.doctor(opts).await
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
