//! Routes of the control API.
//!
//! | method | path | answer |
//! |---|---|---|
//! | GET | /v1/status | `StatusReport` |
//! | POST | /v1/services/{name or all}/{start,stop,restart} | `ActionReply` |
//! | GET | /v1/services/{name}/logs?lines=N | `{lines: [..]}` |
//! | GET | /v1/services/{name}/logs/follow | SSE, one log line per event |
//! | GET | /v1/config | `ConfigDocument` |
//! | PUT | /v1/config | body = new text; 422 + diagnostics when invalid |
//! | POST | /v1/config/validate | body = text; `{diagnostics}` |
//! | POST | /v1/config/preview | `ConfigEditRequest` → `ConfigPreview` (nothing written) |
//! | POST | /v1/config/edit | `ConfigEditRequest` → `ConfigPreview`; 409 if the file changed, 422 if invalid |
//! | GET | /v1/events | SSE of `Event` (JSON) |
//! | GET | /v1/proxy/stats | per service `ProxyStats`: requests, errors, 401s, 429s, 503s, 504s, in flight, tokens, tok/s |
//! | GET | /v1/keys | `KeyList` (never a secret) |
//! | POST | /v1/keys | `NewKeyRequest` → `NewKey`: the only answer that holds the secret |
//! | DELETE | /v1/keys/{id} | `KeyInfo` of the removed key |
//! | POST | /v1/keys/reload | re-reads the keyring (after `mlx-box keys …`): `{keys: N}` |
//! | GET | /v1/monitor/history | `{samples: [Sample]}`: the last 10 minutes at 1 Hz |
//! | POST | /v1/bench | `BenchOptions` → 202 `BenchStarted`; progress as `bench_progress` events, then `bench_done`; 409 while one runs |
//! | GET | /v1/bench/current | `BenchStarted` of the run in progress; 404 when none runs |
//! | POST | /v1/bench/cancel | `BenchStarted` (the run being cancelled); 404 when none runs |
//! | GET | /v1/bench/history | `BenchHistory` (oldest first) |
//! | GET | /v1/bench/compare?a=ID&b=ID | `Comparison` (ids, unique prefixes, `last`, `last-1`…) |
//! | GET | /v1/bench/{id} | `BenchResult` (`last` = the newest) |
//! | POST | /v1/doctor | `DoctorOptions` → `DoctorReport` (takes as long as its checks) |
//! | POST | /v1/shutdown | stops every service, then the daemon |

use crate::api::{ActionReply, BenchHistory, ConfigEditRequest, ErrorReply, Event, MonitorHistory};
use crate::bench::doctor::DoctorOptions;
use crate::bench::{history, BenchOptions, BenchStarted};
use crate::daemon::BenchRefused;
use crate::daemon::Daemon;
use crate::daemon::EditRefused;
use crate::keys::{KeyList, NewKey, NewKeyRequest};
use crate::supervisor::Verb;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use futures_util::stream::Stream;
use serde::Deserialize;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::StreamExt;

type D = State<Arc<Daemon>>;

pub fn router(d: Arc<Daemon>) -> Router {
    Router::new()
        .route("/v1/status", get(status))
        .route("/v1/services/{target}/{verb}", post(action))
        .route("/v1/services/{name}/logs", get(logs))
        .route("/v1/services/{name}/logs/follow", get(follow))
        .route("/v1/config", get(get_config).put(put_config))
        .route("/v1/config/validate", post(validate))
        .route("/v1/config/preview", post(preview_config))
        .route("/v1/config/edit", post(edit_config))
        .route("/v1/events", get(events))
        .route("/v1/monitor/history", get(history))
        .route("/v1/proxy/stats", get(proxy_stats))
        .route("/v1/keys", get(list_keys).post(add_key))
        .route("/v1/keys/reload", post(reload_keys))
        .route("/v1/keys/{id}", delete(remove_key))
        .route("/v1/bench", post(bench_start))
        .route("/v1/bench/cancel", post(bench_cancel))
        .route("/v1/bench/current", get(bench_current))
        .route("/v1/bench/history", get(bench_history))
        .route("/v1/bench/compare", get(bench_compare))
        .route("/v1/bench/{id}", get(bench_result))
        .route("/v1/doctor", post(doctor))
        .route("/v1/shutdown", post(shutdown))
        .with_state(d)
}

fn err(code: StatusCode, msg: impl Into<String>) -> Response {
    (code, Json(ErrorReply { error: msg.into() })).into_response()
}

async fn status(State(d): D) -> Response {
    Json(d.status().await).into_response()
}

async fn action(State(d): D, Path((target, verb)): Path<(String, String)>) -> Response {
    let verb = match verb.as_str() {
        "start" => Verb::Start,
        "stop" => Verb::Stop,
        "restart" => Verb::Restart,
        v => {
            return err(
                StatusCode::NOT_FOUND,
                format!("unknown action `{v}`: use start, stop or restart"),
            )
        }
    };
    if verb != Verb::Stop {
        if let Err(e) = d.admit_start(&target).await {
            return err(StatusCode::CONFLICT, e);
        }
    }
    match d.supervisor.command(&target, verb).await {
        Ok(services) => Json(ActionReply { services }).into_response(),
        Err(e) => err(StatusCode::NOT_FOUND, e.to_string()),
    }
}

#[derive(Deserialize)]
struct LogQuery {
    lines: Option<usize>,
}

async fn logs(State(d): D, Path(name): Path<String>, Query(q): Query<LogQuery>) -> Response {
    match d.supervisor.log_tail(&name) {
        Some(t) => {
            Json(serde_json::json!({ "lines": t.tail(q.lines.unwrap_or(100)) })).into_response()
        }
        None => err(
            StatusCode::NOT_FOUND,
            format!("no service named `{name}` (and no log file for it)"),
        ),
    }
}

async fn follow(State(d): D, Path(name): Path<String>) -> Response {
    let Some(t) = d.supervisor.log_tail(&name) else {
        return err(StatusCode::NOT_FOUND, format!("no service named `{name}`"));
    };
    let rx = t.live.subscribe();
    // The service task polls the file; a follower of an adopted/unknown tail polls it itself.
    let poller = {
        let t = t.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                t.poll();
            }
        })
    };
    let guard = crate::task::AbortOnDrop(poller);
    let stream = BroadcastStream::new(rx).filter_map(move |r| {
        let _keep = &guard;
        match r {
            Ok(line) => Some(Ok::<_, Infallible>(SseEvent::default().data(line))),
            Err(BroadcastStreamRecvError::Lagged(n)) => Some(Ok(SseEvent::default()
                .data(format!("[mlx-box] … {n} lines skipped (reader too slow)")))),
        }
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

async fn get_config(State(d): D) -> Response {
    Json(d.config_document()).into_response()
}

async fn preview_config(State(d): D, Json(req): Json<ConfigEditRequest>) -> Response {
    match d.preview_edits(&req.edits) {
        Ok(p) => Json(p).into_response(),
        Err(e) => refused(e),
    }
}

async fn edit_config(State(d): D, Json(req): Json<ConfigEditRequest>) -> Response {
    match d.edit_config(&req).await {
        Ok(p) => Json(p).into_response(),
        Err(e) => refused(e),
    }
}

fn refused(e: EditRefused) -> Response {
    match e {
        EditRefused::Conflict => err(StatusCode::CONFLICT, e.to_string()),
        EditRefused::Edit(_) => err(StatusCode::BAD_REQUEST, e.to_string()),
        EditRefused::Invalid(p) => (StatusCode::UNPROCESSABLE_ENTITY, Json(p)).into_response(),
    }
}

async fn put_config(State(d): D, body: String) -> Response {
    match d.write_config(&body).await {
        Ok(()) => Json(serde_json::json!({ "ok": true })).into_response(),
        Err(diags) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(serde_json::json!({ "diagnostics": diags })),
        )
            .into_response(),
    }
}

async fn validate(State(d): D, body: String) -> Response {
    let (_, diags) = crate::config::parse_settings(&d.config_path, &body);
    Json(serde_json::json!({ "diagnostics": diags })).into_response()
}

async fn events(State(d): D) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let rx = d.events();
    let stream = BroadcastStream::new(rx).filter_map(|r| match r {
        Ok(ev) => Some(Ok(
            SseEvent::default().data(serde_json::to_string(&ev).unwrap_or_default())
        )),
        // A slow client missed events: tell it to re-read /v1/status rather than drift.
        Err(BroadcastStreamRecvError::Lagged(_)) => {
            Some(Ok(SseEvent::default().event("lagged").data("{}")))
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

async fn proxy_stats(State(d): D) -> Response {
    Json(d.proxy_stats().await).into_response()
}

fn key_error(e: crate::keys::KeyError) -> Response {
    let code = match e {
        crate::keys::KeyError::NotFound(_) => StatusCode::NOT_FOUND,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    err(code, e.to_string())
}

async fn list_keys(State(d): D) -> Response {
    let list = match d.list_keys().await {
        Ok(keys) => KeyList {
            keys,
            keyring_error: None,
        },
        Err(e) => KeyList {
            keys: vec![],
            keyring_error: Some(e.to_string()),
        },
    };
    Json(list).into_response()
}

async fn add_key(State(d): D, Json(req): Json<NewKeyRequest>) -> Response {
    match d.add_key(req.name, req.services).await {
        Ok((key, secret)) => Json(NewKey { key, secret }).into_response(),
        Err(e) => key_error(e),
    }
}

async fn remove_key(State(d): D, Path(id): Path<String>) -> Response {
    match d.remove_key(id).await {
        Ok(k) => Json(k).into_response(),
        Err(e) => key_error(e),
    }
}

async fn reload_keys(State(d): D) -> Response {
    let n = d.keys_changed().await;
    Json(serde_json::json!({ "keys": n })).into_response()
}

async fn history(State(d): D) -> Response {
    let samples = d.monitor.lock().unwrap().all();
    Json(MonitorHistory { samples }).into_response()
}

async fn shutdown(State(d): D) -> Response {
    d.shutdown.notify_one();
    let _ = d.shared.events.send(Event::Shutdown);
    Json(serde_json::json!({ "ok": true })).into_response()
}

fn bench_refused(e: BenchRefused) -> Response {
    let code = match e {
        BenchRefused::Busy(_) => StatusCode::CONFLICT,
        BenchRefused::Unknown(_) => StatusCode::NOT_FOUND,
        BenchRefused::NoSettings | BenchRefused::Nothing => StatusCode::CONFLICT,
        BenchRefused::Invalid(_) => StatusCode::BAD_REQUEST,
    };
    err(code, e.to_string())
}

fn history_err(e: history::HistoryError) -> Response {
    let code = match e {
        history::HistoryError::NotFound { .. }
        | history::HistoryError::Empty(_)
        | history::HistoryError::Ambiguous { .. } => StatusCode::NOT_FOUND,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    err(code, e.to_string())
}

async fn bench_start(State(d): D, Json(opts): Json<BenchOptions>) -> Response {
    match d.start_bench(opts).await {
        Ok(id) => (StatusCode::ACCEPTED, Json(BenchStarted { id })).into_response(),
        Err(e) => bench_refused(e),
    }
}

async fn bench_cancel(State(d): D) -> Response {
    match d.cancel_bench() {
        Some(id) => Json(BenchStarted { id }).into_response(),
        None => err(StatusCode::NOT_FOUND, "no benchmark is running"),
    }
}

async fn bench_current(State(d): D) -> Response {
    match d.current_bench() {
        Some(id) => Json(BenchStarted { id }).into_response(),
        None => err(StatusCode::NOT_FOUND, "no benchmark is running"),
    }
}

async fn bench_history(State(d): D) -> Response {
    let dir = d.state_dir.clone();
    let runs = tokio::task::spawn_blocking(move || history::list(&dir))
        .await
        .unwrap_or_default();
    Json(BenchHistory { runs }).into_response()
}

async fn bench_result(State(d): D, Path(id): Path<String>) -> Response {
    match history::load(&d.state_dir, &id) {
        Ok(r) => Json(r).into_response(),
        Err(e) => history_err(e),
    }
}

#[derive(Deserialize)]
struct CompareQuery {
    a: String,
    b: String,
}

async fn bench_compare(State(d): D, Query(q): Query<CompareQuery>) -> Response {
    let load = |id: &str| history::load(&d.state_dir, id);
    match (load(&q.a), load(&q.b)) {
        (Ok(a), Ok(b)) => Json(crate::bench::compare(&a, &b)).into_response(),
        (Err(e), _) | (_, Err(e)) => history_err(e),
    }
}

async fn doctor(State(d): D, Json(opts): Json<DoctorOptions>) -> Response {
    match d.doctor(opts).await {
        Ok(r) => Json(r).into_response(),
        Err(e) => bench_refused(e),
    }
}
