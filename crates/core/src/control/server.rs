//! The control API's server: every request is decoded into the typed [`Request`] (its HTTP form is defined
//! once, in `mlxbox_api::control`) and answered by [`dispatch`], one `match` that calls the owning service.
//! The two streams are routes of their own:
//!
//! | method | path | answer |
//! |---|---|---|
//! | GET | /v1/events | SSE of `Event` (JSON): first a `snapshot` (the whole status), then changes; a client that fell behind gets a fresh `snapshot` instead of the events it missed |
//! | GET | /v1/services/{name}/logs/follow | SSE, one log line per event |
//! | GET | /metrics | the Prometheus text exposition (`crate::metrics`): vLLM's request metrics, `mlxbox_*` gauges |
//!
//! The other endpoints, and the type each answers with, are listed on `mlxbox_api::control::Request`.

use crate::api::{ActionReply, BenchHistory, Event, MonitorHistory};
use crate::bench::{history, BenchStarted};
use crate::keys::{KeyError, NewKey, StoreError};
use crate::remote::Role;
use crate::services::{BenchRefused, EditRefused, Services};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures_util::stream::Stream;
use mlxbox_api::control::{
    ApiError, DecodeError, Diagnostics, Done, ErrorKind, KeyCount, ListenerList, LogLines, Method,
    Request,
};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::StreamExt;

type S = State<Arc<Services>>;

/// The largest request body the control API reads (settings.toml's text is the largest real one).
const MAX_BODY: usize = 16 << 20;

pub fn router(s: Arc<Services>) -> Router {
    Router::new()
        .route("/v1/events", get(events))
        .route("/v1/services/{name}/logs/follow", get(follow))
        .route("/metrics", get(metrics))
        .fallback(request)
        .with_state(s)
}

/// A refusal: its kind decides its status (`ErrorKind::status`, the one place statuses are defined).
fn err(kind: ErrorKind, msg: impl Into<String>) -> Response {
    fail(ApiError::new(kind, msg))
}

/// The answer of a refusal: `{"error", "kind", "hint"}` with its kind's status.
pub fn fail(e: ApiError) -> Response {
    let code = StatusCode::from_u16(e.kind.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (code, Json(e)).into_response()
}

fn ok<T: serde::Serialize>(v: T) -> Response {
    Json(v).into_response()
}

/// Forwards at once, all hosts together: each holds a connection and a stream, never the answer.
const MAX_FORWARDS: usize = 16;
/// The largest answer passed on from another host (a link test's 256 MiB, streamed).
const MAX_FORWARD_BYTES: u64 = 257 << 20;

/// `req` answered by host `host`'s daemon, streamed back as it comes (status, type and bytes), bounded in
/// size and in how many run at once. A `read` caller gets another host's settings redacted too.
async fn forward_to(s: &Arc<Services>, host: &str, req: &Request, role: Role) -> Response {
    static SLOTS: std::sync::OnceLock<Arc<tokio::sync::Semaphore>> = std::sync::OnceLock::new();
    let slots = SLOTS.get_or_init(|| Arc::new(tokio::sync::Semaphore::new(MAX_FORWARDS)));
    let Ok(slot) = slots.clone().try_acquire_owned() else {
        return err(
            ErrorKind::Unavailable,
            format!("{MAX_FORWARDS} requests to other hosts are in flight already; retry shortly"),
        );
    };
    let resp = match s.fleet.forward(host, req).await {
        Ok(r) => r,
        Err(e @ crate::services::fleet::ForwardError::Unknown(_)) => {
            return err(ErrorKind::NotFound, e.to_string())
        }
        Err(e) => return err(ErrorKind::BadGateway, e.to_string()),
    };
    let code = StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    if resp.content_length().is_some_and(|n| n > MAX_FORWARD_BYTES) {
        return err(
            ErrorKind::BadGateway,
            format!("host `{host}` answered with more than {MAX_FORWARD_BYTES} bytes"),
        );
    }
    let kind = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| axum::http::HeaderValue::from_bytes(v.as_bytes()).ok());
    if role == Role::Read && reads_settings(req) && code.is_success() {
        // Read whole (the settings are small: 16 MiB at most) to take the secrets out.
        let Ok(bytes) = resp.bytes().await else {
            return err(
                ErrorKind::BadGateway,
                format!("host `{host}`'s answer was cut off"),
            );
        };
        return match serde_json::from_slice::<crate::api::ConfigDocument>(&bytes) {
            Ok(doc) => ok(crate::config::redact_document(doc)),
            Err(_) => err(
                ErrorKind::BadGateway,
                format!("host `{host}` sent settings this daemon cannot read"),
            ),
        };
    }
    // Streamed, counted: an answer that runs past the bound is cut (the client sees a short body).
    let mut left = MAX_FORWARD_BYTES;
    let stream = resp.bytes_stream().map_while(move |chunk| {
        let _slot = &slot;
        let chunk = chunk.ok()?;
        left = left.checked_sub(chunk.len() as u64)?;
        Some(Ok::<_, Infallible>(chunk))
    });
    let mut out = axum::body::Body::from_stream(stream).into_response();
    *out.status_mut() = code;
    if let Some(k) = kind {
        out.headers_mut()
            .insert(axum::http::header::CONTENT_TYPE, k);
    }
    out
}

/// Does `req` (or the request it forwards) read a settings file?
fn reads_settings(req: &Request) -> bool {
    match req {
        Request::GetConfig => true,
        Request::Host { forward, .. } => reads_settings(forward),
        _ => false,
    }
}

/// Any request but the streams: decode, then dispatch. A caller with the `read` role (a token of the TLS
/// face; the Unix socket's owner is admin) reads the settings with their secrets redacted.
async fn request(State(s): S, req: axum::extract::Request) -> Response {
    let role = req
        .extensions()
        .get::<Role>()
        .copied()
        .unwrap_or(Role::Admin);
    let (parts, body) = req.into_parts();
    let Some(method) = Method::parse(parts.method.as_str()) else {
        return err(ErrorKind::MethodNotAllowed, "use GET, POST, PUT or DELETE");
    };
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY).await else {
        return err(
            ErrorKind::TooLarge,
            "request body too large (16 MiB at most) or cut off",
        );
    };
    match Request::decode(method, parts.uri.path(), parts.uri.query(), &body) {
        Ok(Request::GetConfig) if role == Role::Read => {
            ok(crate::config::redact_document(s.config.document()))
        }
        Ok(Request::Host { host, forward }) => forward_to(&s, &host, &forward, role).await,
        Ok(r) => dispatch(&s, r).await,
        Err(e) => decode_error(e),
    }
}

fn decode_error(e: DecodeError) -> Response {
    fail(e.into())
}

/// Answers one request by calling the service that owns what it asks about.
pub async fn dispatch(s: &Arc<Services>, req: Request) -> Response {
    match req {
        Request::Status => ok(s.status().await),
        Request::Ping => ok(Done { ok: true }),
        Request::LinkTest { bytes } => link_test(bytes),
        Request::Host { host, forward } => forward_to(s, &host, &forward, Role::Admin).await,
        Request::Action { target, verb } => {
            use crate::supervisor::Verb;
            let on_demand = s
                .supervisor
                .settings()
                .and_then(|st| st.service(&target).map(|x| x.on_demand))
                .unwrap_or(false);
            if verb == Verb::Start && on_demand {
                // Room is made as for a request (its group, least recently used), then it starts.
                return match s.demand.start(&target).await {
                    Ok(()) => ok(ActionReply {
                        services: vec![target],
                    }),
                    Err(e) => err(ErrorKind::Conflict, e.to_string()),
                };
            }
            if matches!(verb, Verb::Start | Verb::Restart) {
                if let Err(e) = s.admit_start(&target).await {
                    return err(ErrorKind::Conflict, e.to_string());
                }
            }
            match s.supervisor.command(&target, verb).await {
                Ok(services) => ok(ActionReply { services }),
                Err(e) => err(ErrorKind::NotFound, e.to_string()),
            }
        }
        Request::Logs { name, lines } => match s.supervisor.log_tail(&name) {
            Some(t) => ok(LogLines {
                lines: t.tail(lines),
            }),
            None => err(
                ErrorKind::NotFound,
                format!("no service named `{name}` (and no log file for it)"),
            ),
        },
        Request::GetConfig => ok(s.config.document()),
        Request::PutConfig { text } => match s.config.write(&text).await {
            Ok(()) => ok(Done { ok: true }),
            Err(diagnostics) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(Diagnostics { diagnostics }),
            )
                .into_response(),
        },
        Request::ValidateConfig { text } => ok(Diagnostics {
            diagnostics: s.config.validate(&text),
        }),
        Request::PreviewConfig { edit } => s.config.preview(&edit.edits).map_or_else(refused, ok),
        Request::EditConfig { edit } => s.config.edit(&edit).await.map_or_else(refused, ok),
        Request::MonitorHistory => ok(MonitorHistory {
            samples: s.monitor.history(),
        }),
        Request::ProxyStats => ok(s.proxy.stats().await),
        Request::ListKeys => ok(s.keys.list().await),
        Request::AddKey { key } => match s.keys.add(key.name, key.services).await {
            Ok((key, secret)) => {
                s.apply_proxies().await;
                ok(NewKey { key, secret })
            }
            Err(e) => key_error(e),
        },
        Request::RemoveKey { id } => match s.keys.remove(id).await {
            Ok(k) => {
                s.apply_proxies().await;
                ok(k)
            }
            Err(e) => key_error(e),
        },
        Request::ImportKeys => match s.keys.import().await {
            Ok(r) => {
                s.apply_proxies().await;
                ok(r)
            }
            Err(e) => key_error(e),
        },
        Request::ReloadKeys => ok(KeyCount {
            keys: u32::try_from(s.keys_changed().await).unwrap_or(u32::MAX),
        }),
        Request::BenchStart { options } => match s.bench.start(options).await {
            Ok(id) => (StatusCode::ACCEPTED, Json(BenchStarted { id })).into_response(),
            Err(e) => bench_refused(e),
        },
        Request::BenchCancel => match s.bench.cancel() {
            Some(id) => ok(BenchStarted { id }),
            None => err(ErrorKind::NotFound, "no benchmark is running"),
        },
        Request::BenchCurrent => match s.bench.current() {
            Some(id) => ok(BenchStarted { id }),
            None => err(ErrorKind::NotFound, "no benchmark is running"),
        },
        Request::BenchHistory => {
            let dir = s.state_dir.clone();
            let runs = tokio::task::spawn_blocking(move || history::list(&dir))
                .await
                .unwrap_or_default();
            ok(BenchHistory { runs })
        }
        Request::BenchResult { id } => {
            history::load(&s.state_dir, &id).map_or_else(history_err, ok)
        }
        Request::BenchCompare { a, b } => {
            let load = |id: &str| history::load(&s.state_dir, id);
            match (load(&a), load(&b)) {
                (Ok(a), Ok(b)) => ok(crate::bench::compare(&a, &b)),
                (Err(e), _) | (_, Err(e)) => history_err(e),
            }
        }
        Request::Doctor { options } => s
            .bench
            .doctor(options, s.served.last())
            .await
            .map_or_else(bench_refused, ok),
        Request::Shutdown => {
            s.request_shutdown();
            ok(Done { ok: true })
        }
        Request::Listeners => ok(ListenerList {
            listeners: crate::gate::listening(),
        }),
        Request::ListModels => {
            let live = crate::models::Live {
                states: s
                    .supervisor
                    .statuses()
                    .await
                    .into_iter()
                    .map(|x| (x.name, x.state))
                    .collect(),
                last_request_ms: s
                    .proxy
                    .stats()
                    .await
                    .into_iter()
                    .filter_map(|(name, st)| st.last_request_ms.map(|t| (name, t)))
                    .collect(),
            };
            let settings = s.supervisor.settings();
            // A walk of the cache: off the runtime's threads.
            let scan = move || {
                let s = settings.as_deref();
                crate::models::list(&crate::models::list::hubs(s), s, &live)
            };
            match tokio::task::spawn_blocking(scan).await {
                Ok(list) => ok(list),
                Err(e) => err(ErrorKind::Internal, format!("the model scan failed: {e}")),
            }
        }
        Request::AlertAction { id, action } => match s.alerts.act(&id, action) {
            Some(alert) => ok(alert),
            None => err(
                ErrorKind::NotFound,
                format!(
                    "no active alert `{id}` (it may have cleared): `mlx-box alerts` lists them"
                ),
            ),
        },
    }
}

fn refused(e: EditRefused) -> Response {
    match e {
        EditRefused::Conflict => err(ErrorKind::Conflict, e.to_string()),
        EditRefused::Edit(_) => err(ErrorKind::BadRequest, e.to_string()),
        EditRefused::Invalid(p) => (StatusCode::UNPROCESSABLE_ENTITY, Json(p)).into_response(),
    }
}

fn key_error(e: KeyError) -> Response {
    let kind = match e {
        KeyError::NotFound { .. } => ErrorKind::NotFound,
        KeyError::Store(StoreError::Full { .. }) => ErrorKind::Conflict,
        _ => ErrorKind::Unavailable,
    };
    err(kind, e.to_string())
}

fn bench_refused(e: BenchRefused) -> Response {
    let kind = match e {
        BenchRefused::Busy(_) => ErrorKind::Conflict,
        BenchRefused::Unknown(_) => ErrorKind::NotFound,
        BenchRefused::NoSettings | BenchRefused::Nothing => ErrorKind::Conflict,
        BenchRefused::Invalid(_) => ErrorKind::BadRequest,
        BenchRefused::Pool(..) => ErrorKind::Conflict,
    };
    err(kind, e.to_string())
}

fn history_err(e: history::HistoryError) -> Response {
    let kind = match e {
        history::HistoryError::NotFound { .. }
        | history::HistoryError::Empty(_)
        | history::HistoryError::Ambiguous { .. } => ErrorKind::NotFound,
        _ => ErrorKind::Internal,
    };
    err(kind, e.to_string())
}

async fn follow(State(s): S, Path(name): Path<String>) -> Response {
    let Some(t) = s.supervisor.log_tail(&name) else {
        return err(ErrorKind::NotFound, format!("no service named `{name}`"));
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

/// `[metrics] listen`: `GET /metrics` alone, served through the gate (`crate::gate`). On loopback it is
/// open (and the door checks `Host`); elsewhere every scrape needs an API key allowed the scope `metrics`
/// (a key for every service, or one made with `--service metrics`).
#[derive(Clone)]
pub struct MetricsFace {
    services: Arc<Services>,
    loopback: bool,
    cors: crate::gate::Cors,
}

impl MetricsFace {
    pub fn new(services: Arc<Services>, loopback: bool) -> Self {
        MetricsFace {
            services,
            loopback,
            cors: Default::default(),
        }
    }
}

impl crate::gate::Handler for MetricsFace {
    fn door(&self) -> crate::gate::Door<'_> {
        crate::gate::Door {
            loopback: self.loopback,
            open: self.loopback,
            cors: &self.cors,
            domain_name: None,
        }
    }

    fn refuse(&self, status: StatusCode, msg: &str, _path: &str) -> Response {
        err(ErrorKind::of_status(status.as_u16()), msg)
    }

    async fn handle(self, req: axum::extract::Request, _peer: std::net::SocketAddr) -> Response {
        if req.uri().path() != "/metrics" {
            return err(ErrorKind::NotFound, "this port serves GET /metrics only");
        }
        if req.method() != axum::http::Method::GET {
            return err(ErrorKind::MethodNotAllowed, "use GET /metrics");
        }
        if !self.loopback {
            if let Some(r) = scrape_auth(&self.services, req.headers()) {
                return r;
            }
        }
        metrics(State(self.services)).await
    }
}

/// The key check of a scrape off loopback; `Some` is the refusal.
fn scrape_auth(s: &Services, headers: &axum::http::HeaderMap) -> Option<Response> {
    use crate::proxy::{authorize, Auth};
    let keys = s.keys.shared().read().unwrap().clone();
    let (code, hint) = match authorize(&keys, "metrics", false, headers) {
        Auth::Ok => return None,
        Auth::Denied => (
            StatusCode::UNAUTHORIZED,
            "a key is needed off loopback: send Authorization: Bearer <key> (Prometheus: `authorization: {credentials: …}` in the scrape config); make one with `mlx-box keys add --service metrics`",
        ),
        Auth::KeysUnknown => (
            StatusCode::SERVICE_UNAVAILABLE,
            "the API keys cannot be read: the key store is damaged or unreadable (see `mlx-box status`); fix or remove it, then `mlx-box keys reload`",
        ),
    };
    let mut r = (code, hint).into_response();
    if code == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            axum::http::header::WWW_AUTHENTICATE,
            axum::http::HeaderValue::from_static("Bearer"),
        );
    }
    Some(r)
}

async fn metrics(State(s): S) -> Response {
    let status = s.status().await;
    let proxy = s.proxy.stats().await;
    let sample = s.monitor.latest();
    let (plan, bench) = (s.budget.applied(), s.bench.last());
    let text = crate::metrics::render(&crate::metrics::Scrape {
        status: &status,
        proxy: &proxy,
        sample: &sample,
        plan: plan.as_deref(),
        bench: bench.as_deref(),
    });
    (
        [(
            axum::http::header::CONTENT_TYPE,
            crate::metrics::CONTENT_TYPE,
        )],
        text,
    )
        .into_response()
}

/// `bytes` zeros, streamed from one static buffer (nothing the size of the answer is allocated).
fn link_test(bytes: u64) -> Response {
    static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];
    let chunk = ZEROS.len() as u64;
    let chunks = bytes.div_ceil(chunk);
    let stream = futures_util::stream::iter((0..chunks).map(move |i| {
        let len = (bytes - i * chunk).min(chunk) as usize;
        Ok::<_, Infallible>(bytes::Bytes::from_static(&ZEROS[..len]))
    }));
    (
        [
            (
                axum::http::header::CONTENT_TYPE,
                "application/octet-stream".to_string(),
            ),
            (axum::http::header::CONTENT_LENGTH, bytes.to_string()),
        ],
        axum::body::Body::from_stream(stream),
    )
        .into_response()
}

fn sse(ev: &Event) -> Result<SseEvent, Infallible> {
    Ok(SseEvent::default().data(serde_json::to_string(ev).unwrap_or_default()))
}

/// The event stream: a snapshot first (taken after subscribing, so nothing falls between the two), then
/// every event; a client that fell behind gets a fresh snapshot in place of what it missed.
pub fn event_stream(s: Arc<Services>) -> impl Stream<Item = Event> {
    let rx = s.events.subscribe();
    futures_util::stream::unfold((rx, s, true), |(mut rx, s, first)| async move {
        if first {
            let snap = Event::Snapshot(Box::new(s.status().await));
            return Some((snap, (rx, s, false)));
        }
        let ev = match rx.recv().await {
            Ok(ev) => ev,
            Err(RecvError::Lagged(_)) => Event::Snapshot(Box::new(s.status().await)),
            Err(RecvError::Closed) => return None,
        };
        Some((ev, (rx, s, false)))
    })
}

async fn events(State(s): S) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    Sse::new(event_stream(s).map(|ev| sse(&ev))).keep_alive(KeepAlive::default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::to_bytes;

    async fn call(s: &Arc<Services>, r: Request) -> (StatusCode, serde_json::Value) {
        let resp = dispatch(s, r).await;
        let code = resp.status();
        let body = to_bytes(resp.into_body(), 1 << 20).await.unwrap();
        (code, serde_json::from_slice(&body).unwrap_or_default())
    }

    /// Services built without a daemon on `dir`, with `settings` applied.
    async fn services_with(dir: &std::path::Path, settings: &str) -> Arc<Services> {
        let path = dir.join("settings.toml");
        std::fs::write(&path, settings).unwrap();
        let (tx, _rx) = tokio::sync::mpsc::channel(4);
        let s = Services::new(
            dir.to_path_buf(),
            path,
            crate::services::tests::runtime(dir),
            tx,
        );
        s.reload().await;
        s
    }

    /// The dispatcher against services built without a daemon: each request reaches its owner and
    /// comes back with its documented status and shape.
    #[tokio::test]
    async fn requests_reach_their_service() {
        let dir = tempfile::tempdir().unwrap();
        let s = services_with(
            dir.path(),
            "[services.chat]\nport = 8080\nmodel = \"m\"\nenabled = false\n",
        )
        .await;
        let (code, st) = call(&s, Request::Status).await;
        assert_eq!(code, StatusCode::OK);
        assert_eq!(st["services"][0]["name"], "chat");
        let (code, v) = call(
            &s,
            Request::ValidateConfig {
                text: "[server]\nport = 1\n".into(),
            },
        )
        .await;
        assert_eq!(code, StatusCode::OK);
        assert!(
            v["diagnostics"].as_array().is_some_and(|d| !d.is_empty()),
            "{v}"
        );
        let (code, v) = call(
            &s,
            Request::PutConfig {
                text: "[services.x]\nport = \"no\"\n".into(),
            },
        )
        .await;
        assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(v["diagnostics"].is_array());
        let logs = Request::Logs {
            name: "nope".into(),
            lines: 5,
        };
        assert_eq!(call(&s, logs).await.0, StatusCode::NOT_FOUND);
        assert_eq!(
            call(&s, Request::BenchCurrent).await.0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            call(&s, Request::BenchCancel).await.0,
            StatusCode::NOT_FOUND
        );
        let (code, v) = call(&s, Request::BenchResult { id: "last".into() }).await;
        assert_eq!(code, StatusCode::NOT_FOUND, "{v}");
        let (code, v) = call(&s, Request::MonitorHistory).await;
        assert_eq!(code, StatusCode::OK);
        assert!(v["samples"].is_array());
        let action = Request::Action {
            target: "nope".into(),
            verb: crate::supervisor::Verb::Start,
        };
        assert_eq!(call(&s, action).await.0, StatusCode::NOT_FOUND);
        let mut ev = s.events.subscribe();
        assert_eq!(call(&s, Request::Shutdown).await.0, StatusCode::OK);
        assert!(matches!(ev.try_recv(), Ok(Event::Shutdown)));
        s.supervisor.shutdown().await;
    }

    /// The stream opens with the whole status, and a client that fell behind (more events than the
    /// channel holds went by unread) gets a fresh snapshot instead of a silent gap.
    #[tokio::test]
    async fn the_event_stream_starts_with_a_snapshot_and_resyncs_after_a_lag() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, _rx) = tokio::sync::mpsc::channel(4);
        let s = Services::new(
            dir.path().to_path_buf(),
            dir.path().join("settings.toml"),
            crate::services::tests::runtime(dir.path()),
            tx,
        );
        let mut stream = Box::pin(event_stream(s.clone()));
        assert!(matches!(stream.next().await, Some(Event::Snapshot(_))));
        // Subscribed: an event now arrives as is.
        let _ = s.events.send(Event::ServiceRemoved { name: "x".into() });
        assert!(matches!(
            stream.next().await,
            Some(Event::ServiceRemoved { .. })
        ));
        // More events than the channel keeps, unread: the next message is a snapshot, then the events
        // that are still held.
        for i in 0..3000 {
            let _ = s.events.send(Event::ServiceRemoved {
                name: format!("{i}"),
            });
        }
        assert!(matches!(stream.next().await, Some(Event::Snapshot(_))));
        assert!(matches!(
            stream.next().await,
            Some(Event::ServiceRemoved { .. })
        ));
    }

    /// `/metrics` off loopback asks for a key allowed the scope `metrics` (401 and `WWW-Authenticate`
    /// otherwise); on loopback it is open, like the control socket.
    #[tokio::test]
    async fn metrics_off_loopback_needs_a_key() {
        let dir = tempfile::tempdir().unwrap();
        let s = services_with(
            dir.path(),
            "[server]\napi_key = \"k-metrics\"\n[services.chat]\nport = 8080\nmodel = \"m\"\nenabled = false\n",
        )
        .await;
        let serve = |loopback: bool| {
            let face = MetricsFace::new(s.clone(), loopback);
            async move {
                let l = crate::gate::bind("127.0.0.1:0").unwrap();
                let url = format!("http://{}/metrics", l.local_addr().unwrap());
                let listener = crate::gate::Listener::start(l, crate::gate::Spec::metrics(), face);
                (url, listener)
            }
        };
        crate::tls::install_crypto_provider();
        let http = reqwest::Client::new();
        let (open, _a) = serve(true).await;
        let r = http.get(&open).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.text().await.unwrap().contains("mlxbox_up 1"));
        // A page whose name was rebound to 127.0.0.1 reads nothing on loopback.
        let r = http
            .get(&open)
            .header("Host", "rebound.example")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        let other = open.replace("/metrics", "/v1/status");
        assert_eq!(http.get(&other).send().await.unwrap().status(), 404);

        let (keyed, _b) = serve(false).await;
        for auth in [None, Some("Bearer nope"), Some("Basic k-metrics")] {
            let mut req = http.get(&keyed);
            if let Some(a) = auth {
                req = req.header("Authorization", a);
            }
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), 401, "{auth:?}");
            assert_eq!(r.headers()["www-authenticate"], "Bearer");
            assert!(r
                .text()
                .await
                .unwrap()
                .contains("keys add --service metrics"));
        }
        let r = http
            .get(&keyed)
            .header("Authorization", "Bearer k-metrics")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.text().await.unwrap().contains("mlxbox_up 1"));
    }
}
