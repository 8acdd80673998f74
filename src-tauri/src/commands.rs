//! The commands the windows call: `call` carries any request of the control API to the daemon (see
//! `mlxbox_client::app`'s module doc); the rest are the app's own (its connection, log following, which
//! emits events, opening a window, the Chat window's requests to the frontends, and the first-frame
//! timing).

use crate::AppState;
use mlxbox_api::control::Request;
use mlxbox_client::app::{daemon_binary, CommandError, CommandErrorKind, Connection, LogLine};
use mlxbox_client::chat::ChatSend;
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

/// Opens (or focuses) a view's own window: `view` is `dashboard`, `settings`, `bench` or `chat`; `query`
/// tells it what to show (`target=NAME` for the Chat window, `doctor` for the Benchmark window).
#[tauri::command]
pub fn open_view<Rt: Runtime>(app: AppHandle<Rt>, view: String, query: Option<String>) -> R<()> {
    let v = crate::windows::View::parse(&view).ok_or_else(|| CommandError {
        kind: CommandErrorKind::NotFound,
        message: format!("no view `{view}`: dashboard, settings, bench or chat"),
        hint: None,
        preview: None,
    })?;
    crate::windows::open_with(&app, v, query.filter(|q| q.len() <= 512));
    Ok(())
}

/// Streams a Chat window's reply as `chat-event` events to that window (until `chat_cancel`).
#[tauri::command]
pub async fn chat_send<Rt: Runtime>(
    app: AppHandle<Rt>,
    window: tauri::WebviewWindow<Rt>,
    s: State<'_, AppState>,
    request: ChatSend,
) -> R<()> {
    let core = s.core.clone();
    let id = request.id.clone();
    let label = window.label().to_string();
    let chats = s.chats.clone();
    let done_id = id.clone();
    let task = tauri::async_runtime::spawn(async move {
        core.chat_stream(request, |ev| {
            let _ = app.emit_to(&label, "chat-event", ev);
        })
        .await;
        chats.lock().unwrap().remove(&done_id);
    });
    if let Some(old) = s.chats.lock().unwrap().insert(id, task) {
        old.abort();
    }
    Ok(())
}

/// Stops a reply being streamed (the frontend sees the client go and stops generating).
#[tauri::command]
pub async fn chat_cancel(s: State<'_, AppState>, id: String) -> R<()> {
    if let Some(t) = s.chats.lock().unwrap().remove(&id) {
        t.abort();
    }
    Ok(())
}

/// A speech service reads `text` aloud: a `data:` URL of the audio.
#[tauri::command]
pub async fn chat_speech(s: State<'_, AppState>, target: String, text: String) -> R<String> {
    s.core.chat_speech(&target, &text).await
}

/// A speech-to-text service transcribes `audio` (a `data:` URL).
#[tauri::command]
pub async fn chat_transcribe(
    s: State<'_, AppState>,
    target: String,
    audio: String,
    file_name: String,
) -> R<String> {
    s.core.chat_transcribe(&target, &audio, &file_name).await
}

/// The calling window holds edits not saved (the Settings window): closing it asks first.
#[tauri::command]
pub fn set_unsaved<Rt: Runtime>(window: tauri::WebviewWindow<Rt>, unsaved: bool) {
    crate::windows::set_unsaved(window.label(), unsaved);
}

/// Closes the calling window as its close button does (⌘W): asks first when it holds unsaved edits.
#[tauri::command]
pub fn close_window<Rt: Runtime>(window: tauri::WebviewWindow<Rt>) {
    crate::windows::close(&window);
}

/// Hides the calling window without asking (after Save or Don't Save).
#[tauri::command]
pub fn hide_window<Rt: Runtime>(window: tauri::WebviewWindow<Rt>) {
    crate::windows::hide(&window);
}
