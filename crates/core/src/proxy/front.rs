//! The request path of one service's frontend: its own port's handler, and `serve`, the request policy
//! that is the one way to its backend (a service's port, the one endpoint and a pool's local member all
//! end there).
//!
//! A request passes these gates, in order (each refusal is an OpenAI-style JSON error; on `/v1/messages`
//! and `/v1/responses`, in that API's shape, `in_shape`):
//! - The gate's door (`crate::gate::door`, before any of this): `Host` on an open loopback listener (DNS
//!   rebinding), `Origin` against `cors_origins` (preflights answered there, never forwarded),
//!   `Sec-Fetch-Site` of another site → 403.
//! - Auth: `Authorization: Bearer <key>` or `x-api-key: <key>` against the configured keys, compared in
//!   constant time, never logged, never forwarded; 401 + `WWW-Authenticate: Bearer` otherwise. No key
//!   configured = open, but only on loopback.
//! - 503 + Retry-After while the service is not ready (starting, restarting): never a hang.
//! - The body: read within 60 s and 64 MiB (408/413); a JSON object's `model` must be one the service
//!   serves (its model id, its name, an alias; name and aliases become the model id), and `adapters` /
//!   `draft_model` are refused, unless `allow_any_model` (`body.rs`).
//! - `max_concurrency`: that many requests in flight to the backend, a bounded queue, 429 beyond it. The
//!   slot is taken once the body is in hand, so a slow upload holds none.
//! - `filter_reasoning`: think spans and reasoning fields removed, in JSON replies and in SSE streams,
//!   event by event (`sse.rs`, `reasoning.rs`).
//!
//! Connections are capped, timed out and drained by the gate (`crate::gate`, which `endpoint.rs`'s
//! `Target` serves through); the request policy (`serve`: management routes, methods, the body's shape,
//! the model) is the one way to a backend for a service's port, the endpoint and a pool's local member;
//! requests go to the backend over a
//! per-thread connection pool in `backend.rs`; the reply is relayed and metered in `relay.rs`; counters
//! live in `stats.rs`.

use super::agents::{self, Api, Route};
use super::auth::{self, Auth, KeySet, SharedKeys};
use super::backend;
use super::body;
use super::form;
use super::headers::{downstream_head, X_API_KEY};
use super::listener::ListenerConfig;
use super::relay::{AgentStream, FilteredRelay, InFlight, Meter, Relay};
use super::sse::{self, SseFilter};
use super::stats::Counters;
use super::store;
use crate::api::ServiceStatus;
use crate::config::alias;
use crate::reasoning::filter_completion;
use crate::supervisor::State;
use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body::Body as HttpBody;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;
use tokio::sync::Semaphore;

/// Request bodies above this are refused (413): a chat request with a long context is a few MB.
pub(super) const MAX_BODY: usize = 64 * 1024 * 1024;
/// A request body must arrive within this (nginx's `client_body_timeout` is 60 s between two reads).
pub(super) const BODY_READ_TIMEOUT: Duration = Duration::from_secs(60);
/// A body without a Content-Length (chunked) may be at most this: clients of an OpenAI API send one.
pub(super) const MAX_CHUNKED_BODY: usize = 16 * 1024 * 1024;
/// Request bodies held in memory at once, all listeners together (in KiB): parallel uploads wait for
/// their turn with a 503 rather than grow the daemon.
pub(super) const BODY_BUDGET_KIB: usize = 256 * 1024;

pub(super) fn body_budget() -> &'static Arc<Semaphore> {
    static B: OnceLock<Arc<Semaphore>> = OnceLock::new();
    B.get_or_init(|| Arc::new(Semaphore::new(BODY_BUDGET_KIB)))
}

/// Reads a request body, up to `limit` bytes: a body that arrives in one piece is kept as it came (no
/// copy); one in several pieces goes into one buffer of the size it declared (no regrowth).
pub(super) async fn read_body(
    mut body: Body,
    declared: Option<usize>,
    limit: usize,
) -> Result<Bytes, ()> {
    use http_body_util::BodyExt;
    let mut first: Option<Bytes> = None;
    let mut buf: Option<bytes::BytesMut> = None;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(|_| ())?.into_data() else {
            continue; // trailers
        };
        let have = first.as_ref().map_or(0, Bytes::len) + buf.as_ref().map_or(0, |b| b.len());
        if have + data.len() > limit {
            return Err(());
        }
        match (&mut first, &mut buf) {
            (None, None) => first = Some(data),
            (Some(f), None) => {
                let mut b =
                    bytes::BytesMut::with_capacity(declared.unwrap_or(0).clamp(have, limit));
                b.extend_from_slice(f);
                b.extend_from_slice(&data);
                first = None;
                buf = Some(b);
            }
            (_, Some(b)) => b.extend_from_slice(&data),
        }
    }
    Ok(match (first, buf) {
        (_, Some(b)) => b.freeze(),
        (Some(f), None) => f,
        (None, None) => Bytes::new(),
    })
}

/// Loads an on-demand service for the requests that name it, and holds the requests of a service that
/// is drained for a restart (the daemon's `services::demand`).
pub trait Loader: Send + Sync {
    /// Resolves once `service` is ready to take requests, or with why it cannot be (the 503's message).
    /// Concurrent calls for one service share one load.
    fn load(
        self: Arc<Self>,
        service: String,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>>;
    /// Is `service` drained for a restart (its new requests wait in `load`)?
    fn holds(&self, service: &str) -> bool;
}

/// How many services are held (see [`Loader::holds`]): while none is, a request pays one atomic load.
pub static HELD_SERVICES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Counts a request waiting for a `max_concurrency` slot while it lives (a client that goes away while
/// waiting drops it, and the count with it).
pub(super) struct Waiting<'a>(&'a std::sync::atomic::AtomicU64);

impl<'a> Waiting<'a> {
    pub(super) fn new(n: &'a std::sync::atomic::AtomicU64) -> Self {
        n.fetch_add(1, Ordering::Relaxed);
        Waiting(n)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One frontend listener's view of its service.
pub(super) struct Front {
    pub(super) cfg: ListenerConfig,
    pub(super) keys: SharedKeys,
    /// `Host: 127.0.0.1:backend_port`, sent to the backend.
    pub(super) backend_host: HeaderValue,
    pub(super) upstream: backend::Upstream,
    pub(super) statuses: Arc<RwLock<BTreeMap<String, ServiceStatus>>>,
    /// In flight to the backend (max_concurrency) and, separately, admitted (in flight + queued).
    pub(super) slots: Option<Arc<Semaphore>>,
    pub(super) admitted: Option<Arc<Semaphore>>,
    pub(super) counters: Arc<Counters>,
    /// Its request metrics (`/metrics`), resolved once; None under `[metrics] requests = false`.
    pub(super) metrics: Option<Arc<crate::metrics::ServiceMetrics>>,
    /// Loads the service when it is on demand and idle.
    pub(super) loader: Option<std::sync::Weak<dyn Loader>>,
}

/// A refusal mlx-box wrote, with its message: an agent route (`in_shape`) writes it again in its API's
/// shape.
#[derive(Clone)]
pub(super) struct Refusal(String);

/// An answer already in an agent API's shape.
#[derive(Clone)]
struct Shaped;

pub(super) fn openai_error(status: StatusCode, kind: &str, msg: &str) -> Response {
    let body =
        serde_json::json!({"error": {"message": msg, "type": kind, "code": status.as_u16()}});
    let mut r = (status, axum::Json(body)).into_response();
    r.extensions_mut().insert(Refusal(msg.to_string()));
    r
}

/// An error in an agent API's shape (Anthropic's or OpenAI's, `agents::error_body`).
pub(super) fn agent_error(
    api: Api,
    status: StatusCode,
    msg: &str,
    param: Option<&str>,
) -> Response {
    let body = agents::error_body(api, status.as_u16(), msg, param);
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.extensions_mut().insert(Shaped);
    r
}

/// An error answer on an agent route, in that API's shape, its status and headers kept (`Retry-After`,
/// `WWW-Authenticate`, CORS): mlx-box's own refusals keep their message, a backend's error is read
/// (64 KiB at most) for its message. Any other answer passes as it is.
/// A refusal made before a handler saw the request (the gate's door: a cross-site page, a bad Host), in
/// the shape of the API its path belongs to: Anthropic's or OpenAI's error.
pub(super) fn refusal_for(path: &str, status: StatusCode, msg: &str) -> Response {
    match Api::of(path) {
        Some((api, _)) => agent_error(api, status, msg, None),
        None => openai_error(status, "invalid_request_error", msg),
    }
}

pub(super) async fn in_shape(api: Api, resp: Response) -> Response {
    let status = resp.status();
    if status.is_success()
        || status.is_informational()
        || resp.extensions().get::<Shaped>().is_some()
    {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let msg = match parts.extensions.remove::<Refusal>() {
        Some(Refusal(m)) => m,
        None => {
            let read = axum::body::to_bytes(body, 64 << 10);
            let b = match tokio::time::timeout(Duration::from_secs(30), read).await {
                Ok(Ok(b)) => b,
                _ => Bytes::new(),
            };
            message_of(status, &b)
        }
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.remove(header::CONTENT_ENCODING);
    let mut r = agent_error(api, status, &msg, None);
    std::mem::swap(r.headers_mut(), &mut parts.headers);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// The message of a backend's error body: OpenAI's `error.message`, FastAPI's `detail`, or its text.
fn message_of(status: StatusCode, b: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(b) {
        let m = v
            .pointer("/error/message")
            .or_else(|| v.get("error"))
            .or_else(|| v.get("message"))
            .or_else(|| v.get("detail"));
        match m {
            Some(serde_json::Value::String(s)) => return s.clone(),
            Some(m) if !m.is_null() => return m.to_string(),
            _ => {}
        }
    }
    let text = String::from_utf8_lossy(b);
    match text.trim() {
        "" => format!("the backend answered {status}"),
        t => t.chars().take(1000).collect(),
    }
}

/// The refusal of an agent route before its body is read: a route under `/v1/messages` or
/// `/v1/responses` mlx-box does not serve (404), a method other than POST (405). A stored response's
/// route is answered by [`stored`].
pub(super) fn agent_refusal(api: Api, route: &Route, method: &Method) -> Option<Response> {
    if *route == Route::Other {
        let msg = match api {
            Api::Anthropic => {
                "not served here: mlx-box serves POST /v1/messages and POST /v1/messages/count_tokens"
            }
            Api::Responses => {
                "not served here: mlx-box serves POST /v1/responses, GET and DELETE /v1/responses/{id}, GET /v1/responses/{id}/input_items"
            }
        };
        return Some(agent_error(api, StatusCode::NOT_FOUND, msg, None));
    }
    if method != Method::POST {
        let mut r = agent_error(
            api,
            StatusCode::METHOD_NOT_ALLOWED,
            &format!("{method} is not served here: {} takes POST", api.path()),
            None,
        );
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return Some(r);
    }
    None
}

/// A 404 in OpenAI's shape for a response id this key has not stored.
fn not_stored(id: &str) -> Response {
    agent_error(
        Api::Responses,
        StatusCode::NOT_FOUND,
        &format!("no stored response `{id}` for this API key (not stored, deleted, expired, or made with another key)"),
        Some("response_id"),
    )
}

/// `GET` / `DELETE /v1/responses/{id}`: a response stored under the caller's key (another key's, a
/// deleted, an expired or a made-up id is a 404 in OpenAI's shape).
pub(super) fn stored(method: &Method, id: &str, headers: &HeaderMap) -> Response {
    let owner = store::owner_of(auth::bearer(headers));
    let s = store::shared();
    let missing = || not_stored(id);
    match *method {
        Method::GET | Method::HEAD => match s.get(&owner, id) {
            Some(r) => axum::Json(r.response.clone()).into_response(),
            None => missing(),
        },
        Method::DELETE => match s.delete(&owner, id) {
            true => axum::Json(
                serde_json::json!({"id": id, "object": "response.deleted", "deleted": true}),
            )
            .into_response(),
            false => missing(),
        },
        _ => {
            let mut r = agent_error(
                Api::Responses,
                StatusCode::METHOD_NOT_ALLOWED,
                &format!("{method} is not served here: /v1/responses/{{id}} takes GET and DELETE"),
                None,
            );
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, DELETE"));
            r
        }
    }
}

/// `GET /v1/responses/{id}/input_items`: the input items of a response stored under the caller's key,
/// a page at a time (`limit`, `order`, `after`).
fn input_items(method: &Method, id: &str, parts: &axum::http::request::Parts) -> Response {
    if !matches!(*method, Method::GET | Method::HEAD) {
        let mut r = agent_error(
            Api::Responses,
            StatusCode::METHOD_NOT_ALLOWED,
            &format!("{method} is not served here: /v1/responses/{{id}}/input_items takes GET"),
            None,
        );
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET"));
        return r;
    }
    let owner = store::owner_of(auth::bearer(&parts.headers));
    let Some(record) = store::shared().get(&owner, id) else {
        return not_stored(id);
    };
    let outputs = record.response["output"].as_array().map_or(0, Vec::len);
    let inputs = &record.items[..record.items.len().saturating_sub(outputs)];
    let listed = agents::items::Page::parse(parts.uri.query())
        .and_then(|page| agents::items::list(id, inputs, &page));
    match listed {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => agent_error(
            Api::Responses,
            StatusCode::BAD_REQUEST,
            &e.to_string(),
            e.param(),
        ),
    }
}

/// The answer on an agent route before its body is read, if any: a stored response's route, a route
/// not served, a wrong method.
pub(super) fn agent_early(
    api: Api,
    route: &Route,
    parts: &axum::http::request::Parts,
) -> Option<Response> {
    match route {
        Route::Stored(id) => Some(stored(&parts.method, id, &parts.headers)),
        Route::InputItems(id) => Some(input_items(&parts.method, id, parts)),
        _ => agent_refusal(api, route, &parts.method),
    }
}

/// How an agent request is translated for the service (or pool) it goes to.
pub(super) struct AgentCall<'a> {
    pub(super) api: Api,
    /// The operator has not turned the service's thinking off (`disable_thinking_tags`).
    pub(super) thinking_allowed: bool,
    /// The model the reply names when the request named none.
    pub(super) default_model: &'a str,
    pub(super) counters: &'a Counters,
}

/// Random ids for one reply (`msg_…`, `resp_…`): 96 bits, hex.
fn reply_ids() -> String {
    let mut b = [0u8; 12];
    if getrandom::fill(&mut b).is_err() {
        b[..8].copy_from_slice(&crate::api::now_ms().to_le_bytes());
    }
    hex::encode(b)
}

/// An agent request (`POST /v1/messages`, `POST /v1/responses`): its body translated to a chat
/// completion for the backend's `/v1/chat/completions`, passed to `inner` — the request policy, the
/// same as any chat request's (model policy, on-demand load, queue, reasoning filter, metrics) — and
/// the reply translated back, streamed or whole. Every error comes back in the API's shape.
///
/// `POST /v1/messages/count_tokens` (`route`) goes the same way, asking the server for one token: the
/// count is the server's own `usage.prompt_tokens`, its tokenizer over what its chat template made of
/// the request (mlx-box cannot render a model's Jinja template faithfully itself). A Responses request
/// with `store` (default true) is kept in the store ([`store::shared`]) under the caller's key,
/// streamed or whole; `previous_response_id` continues a conversation kept there.
pub(super) async fn translated<F, Fut>(
    call: AgentCall<'_>,
    route: &Route,
    mut parts: axum::http::request::Parts,
    incoming: Incoming,
    inner: F,
) -> Response
where
    F: FnOnce(axum::http::request::Parts, Incoming) -> Fut,
    Fut: std::future::Future<Output = Response>,
{
    let api = call.api;
    let Incoming { bytes, _permit } = incoming;
    let owner = store::owner_of(auth::bearer(&parts.headers));
    let shared = store::shared();
    let history = |id: &str| shared.get(&owner, id).map(|r| r.items.clone());
    let t = agents::translate(api, bytes.as_deref().unwrap_or_default(), &history);
    drop(bytes);
    let mut t = match t {
        Ok(t) => t,
        Err(e) => {
            call.counters.bad_requests.fetch_add(1, Ordering::Relaxed);
            let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
            return agent_error(api, status, &e.to_string(), e.param());
        }
    };
    let count = *route == Route::CountTokens;
    if count {
        t.count_only();
    }
    let keep = t.keep();
    let created = crate::api::now_ms() / 1000;
    let ids = reply_ids();
    let (chat, reply) = t.into_chat(&ids, created, call.default_model, call.thinking_allowed);
    // The response's id is `resp_` + `ids` (agents::Translated::into_chat).
    let keeper = keep.map(|items| {
        let id = format!("resp_{ids}");
        move |response: serde_json::Value| keep_response(owner, id, items, response)
    });
    parts.uri = axum::http::Uri::from_static("/v1/chat/completions");
    // The translator reads the reply: it must come as it is (no compression), and as JSON.
    for h in [
        header::ACCEPT_ENCODING,
        header::CONTENT_LENGTH,
        header::HeaderName::from_static("anthropic-version"),
        header::HeaderName::from_static("anthropic-beta"),
    ] {
        parts.headers.remove(h);
    }
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let incoming = Incoming {
        bytes: Some(Bytes::from(chat)),
        _permit,
    };
    let resp = inner(parts, incoming).await;
    if !resp.status().is_success() {
        return in_shape(api, resp).await;
    }
    let (mut rparts, body) = resp.into_parts();
    if count {
        rparts.headers.remove(header::CONTENT_LENGTH);
        let b = axum::body::to_bytes(body, MAX_BODY)
            .await
            .unwrap_or_default();
        return match agents::count_reply(&b) {
            Ok(json) => {
                rparts.headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                Response::from_parts(rparts, Body::from(json))
            }
            Err(e) => agent_error(api, StatusCode::BAD_GATEWAY, &e, None),
        };
    }
    let sse = rparts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    rparts.headers.remove(header::CONTENT_LENGTH);
    if reply.stream() {
        let (tr, first) = reply.translator();
        rparts.headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        rparts
            .headers
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        let keeper = keeper.map(|k| Box::new(k) as super::relay::OnFinal);
        let body = Body::new(AgentStream::new(body, tr, first, sse, MAX_BODY).on_final(keeper));
        return Response::from_parts(rparts, body);
    }
    // The relay ends a backend silent past the request timeout: the read is bounded in time.
    let b = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return agent_error(
                api,
                StatusCode::BAD_GATEWAY,
                "backend reply cut off, too large or too slow",
                None,
            )
        }
    };
    match reply.whole_value(&b, sse) {
        Ok(v) => {
            rparts.headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            let json = serde_json::to_vec(&v).unwrap_or_default();
            if let Some(k) = keeper {
                k(v);
            }
            Response::from_parts(rparts, Body::from(json))
        }
        Err(e) => agent_error(api, StatusCode::BAD_GATEWAY, &e, None),
    }
}

/// Keeps a Response that ended (completed or incomplete) with its conversation: in memory at once, its
/// file written off the request path.
fn keep_response(
    owner: String,
    id: String,
    input: Vec<serde_json::Value>,
    response: serde_json::Value,
) {
    if !matches!(
        response["status"].as_str(),
        Some("completed" | "incomplete")
    ) {
        return;
    }
    let items = agents::conversation(input, &response);
    let s = store::shared();
    if let Some(w) = s.put_at(
        &owner,
        &id,
        store::Record { response, items },
        crate::api::now_ms() / 1000,
    ) {
        tokio::task::spawn_blocking(move || s.write(w));
    }
}

/// An OpenAI-style error with one extra header (`WWW-Authenticate`, `Retry-After`).
pub(super) fn openai_error_with(
    status: StatusCode,
    kind: &str,
    msg: &str,
    name: header::HeaderName,
    value: &'static str,
) -> Response {
    let mut r = openai_error(status, kind, msg);
    r.headers_mut()
        .insert(name, HeaderValue::from_static(value));
    r
}

impl ListenerConfig {
    /// What the gate's door checks for this listener (`open`: no key is needed now).
    pub(super) fn door(&self, open: bool) -> crate::gate::Door<'_> {
        crate::gate::Door {
            loopback: self.loopback,
            open,
            cors: &self.cors,
            domain_name: self.domain_name.as_deref(),
        }
    }
}

impl Front {
    /// Refuses an agent route on a service that has no chat model (embeddings, speech).
    pub(super) fn refuses_agent(&self, api: Api) -> Option<Response> {
        use crate::config::Kind;
        let spec = &self.cfg.spec;
        if matches!(
            spec.kind,
            Kind::Chat | Kind::Distributed | Kind::Ocr | Kind::Command
        ) {
            return None;
        }
        self.counters.bad_requests.fetch_add(1, Ordering::Relaxed);
        let msg = format!(
            "[services.{}] (kind = \"{}\") serves no chat model: {} is served by chat and OCR services",
            spec.name,
            spec.kind.as_str(),
            api.path()
        );
        Some(agent_error(api, StatusCode::NOT_FOUND, &msg, None))
    }

    /// How an agent request is translated for this service.
    pub(super) fn agent_call(&self, api: Api) -> AgentCall<'_> {
        let spec = &self.cfg.spec;
        AgentCall {
            api,
            thinking_allowed: !spec.disable_thinking_tags,
            default_model: spec.model.as_deref().unwrap_or(&spec.name),
            counters: &self.counters,
        }
    }

    pub(super) fn bad_request(&self, status: StatusCode, msg: &str) -> Response {
        self.counters.bad_requests.fetch_add(1, Ordering::Relaxed);
        openai_error(status, "invalid_request_error", msg)
    }

    /// The model policy over a request body (a JSON object, or a multipart upload's fields): the body to
    /// forward (the model id spliced in for a name or an alias, the service's defaults added), whether it
    /// asks for a stream, or the refusal.
    pub(super) fn check_body(
        &self,
        content_type: Option<&str>,
        bytes: Bytes,
    ) -> Result<(Bytes, bool), (StatusCode, String)> {
        let bad = |e: &dyn std::fmt::Display| (StatusCode::BAD_REQUEST, e.to_string());
        if let Some(b) = content_type.and_then(form::boundary) {
            let b = b.map_err(|e| bad(&e))?;
            let f = form::parse(&bytes, &b).map_err(|e| bad(&e))?;
            let asked = f.text(&bytes, "model").map_err(|e| bad(&e))?;
            let set = self.model_to_set(asked, &[])?;
            let mut add = vec![];
            if self.cfg.spec.kind == crate::config::Kind::Stt {
                if let (Some(l), false) = (&self.cfg.spec.language, f.has("language")) {
                    add.push(("language", l.as_str()));
                }
                // OpenAI's default reply is JSON; mlx_audio's own is NDJSON.
                if !f.has("response_format") {
                    add.push(("response_format", "json"));
                }
            }
            if set.is_none() && add.is_empty() {
                return Ok((bytes, false));
            }
            let out = f.rewrite(&bytes, set.map(|m| ("model", m)), &add);
            return Ok((Bytes::from(out), false));
        }
        if !body::is_json_object(&bytes) {
            // A server's `json.loads` also reads a BOM, UTF-16 or UTF-32: a body the policy cannot read
            // must not reach a server it would steer.
            if self.holds_model() && bytes.iter().any(|b| !body::is_ws(*b)) {
                return Err((
                    StatusCode::BAD_REQUEST,
                    format!(
                        "the request body must be a UTF-8 JSON object (or a multipart form): [services.{}] checks the model it names",
                        self.cfg.spec.name
                    ),
                ));
            }
            return Ok((bytes, false));
        }
        let p = body::peek(&bytes).map_err(|e| bad(&e))?;
        let asked = match &p.model {
            None => None,
            Some((_, Some(text))) => Some(text.as_str()),
            Some((range, None)) if &bytes[range.clone()] == b"null" => None,
            // Not a string: the backend's business when any model may pass.
            Some(_) if self.cfg.spec.model.is_none() || self.cfg.spec.allow_any_model => None,
            Some(_) => return Err((StatusCode::BAD_REQUEST, "`model` must be a string".into())),
        };
        let set = self.model_to_set(asked, &p.loads_other)?;
        let spec = &self.cfg.spec;
        let mut add = vec![];
        if spec.kind == crate::config::Kind::Tts {
            if let (Some(v), false) = (&spec.default_voice, p.voice) {
                add.push(("voice", v.as_str()));
            }
            if let (Some(l), false) = (&spec.language, p.lang_code) {
                add.push(("lang_code", l.as_str()));
            }
        }
        if set.is_none() && add.is_empty() {
            return Ok((bytes, p.stream));
        }
        Ok((Bytes::from(body::rewrite(&bytes, &p, set, &add)), p.stream))
    }

    /// Does the service hold requests to its model (a model set, `allow_any_model` off)?
    pub(super) fn holds_model(&self) -> bool {
        self.cfg.spec.model.is_some() && !self.cfg.spec.allow_any_model
    }

    /// The model policy: `Ok(Some(id))` when the body must name the service's model id (it named none,
    /// the service's name or an alias), `Ok(None)` when it may pass as it is, or the refusal.
    pub(super) fn model_to_set(
        &self,
        asked: Option<&str>,
        loads_other: &[&'static str],
    ) -> Result<Option<&str>, (StatusCode, String)> {
        let spec = &self.cfg.spec;
        let Some(model) = &spec.model else {
            return Ok(None);
        };
        if spec.allow_any_model {
            return Ok(None);
        }
        if let Some(field) = loads_other.first() {
            let msg = format!(
                "`{field}` asks the server to load another model, which [services.{}] does not allow \
                 (set allow_any_model = true to permit it)",
                spec.name
            );
            return Err((StatusCode::BAD_REQUEST, msg));
        }
        match asked.filter(|t| !t.is_empty()) {
            Some(m) if m == model => Ok(None),
            Some(m) if m != spec.name && !alias::any_matches(&spec.aliases, m) => {
                let mut names = vec![format!("`{model}`"), format!("`{}`", spec.name)];
                names.extend(spec.aliases.iter().map(|a| format!("`{a}`")));
                let msg = format!(
                    "model `{m}` is not served here: this port serves {} (set allow_any_model = true \
                     in [services.{}] to pass any model)",
                    names.join(", "),
                    spec.name
                );
                Err((StatusCode::BAD_REQUEST, msg))
            }
            // No model, the service's name or an alias: the configured model id, spliced in.
            _ => Ok(Some(model.as_str())),
        }
    }

    /// A service that holds requests to its model takes GET, HEAD and POST (what the OpenAI API uses);
    /// a PUT, PATCH or DELETE would carry a body past the model policy.
    pub(super) fn refuses_method(&self, method: &Method) -> Option<Response> {
        if !self.holds_model() || matches!(*method, Method::GET | Method::HEAD | Method::POST) {
            return None;
        }
        let mut r = self.bad_request(
            StatusCode::METHOD_NOT_ALLOWED,
            &format!(
                "{method} is not served here: [services.{}] takes GET and POST (set allow_any_model = true to pass any request)",
                self.cfg.spec.name
            ),
        );
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD, POST"));
        Some(r)
    }

    /// Routes of the servers that load or unload models, or change their settings, outside a request's
    /// `model`: mlx_audio's `POST|DELETE /v1/models?model_name=…`, mlx_vlm's `/unload`, `/v1/settings`,
    /// `/v1/cache/reset`. A key holder may use the service's model, not swap it.
    pub(super) fn refuses_management(&self, method: &Method, path: &str) -> Option<Response> {
        let spec = &self.cfg.spec;
        // Only the servers that load models by route; a chat request pays one comparison.
        let audio = matches!(
            spec.kind,
            crate::config::Kind::Tts | crate::config::Kind::Stt
        );
        if spec.allow_any_model
            || spec.model.is_none()
            || !(audio || spec.kind == crate::config::Kind::Ocr)
        {
            return None;
        }
        // The servers route on the decoded path (`/v1/model%73` is `/v1/models` to Starlette).
        let decoded = percent_encoding::percent_decode_str(path).decode_utf8_lossy();
        let path = decoded.trim_end_matches('/');
        let management = if audio {
            path == "/v1/models" && (method == Method::POST || method == Method::DELETE)
        } else {
            matches!(
                path,
                "/unload" | "/v1/settings" | "/v1/cache/reset" | "/settings"
            ) && method != Method::GET
        };
        management.then(|| {
            self.bad_request(
                StatusCode::FORBIDDEN,
                &format!(
                    "{method} {path} would change what [services.{}] serves: mlx-box manages its model \
                     (set allow_any_model = true to permit it)",
                    spec.name
                ),
            )
        })
    }
}

/// A service's own port: the gates, the key, then [`serve`] (an agent request through [`translated`],
/// every error of it in its API's shape).
pub(super) async fn handle(f: Arc<Front>, req: Request) -> Response {
    match Api::of(req.uri().path()) {
        None => handle_request(f, req, None).await,
        Some(agent) => in_shape(agent.0, handle_request(f, req, Some(agent)).await).await,
    }
}

async fn handle_request(f: Arc<Front>, req: Request, agent: Option<(Api, Route)>) -> Response {
    let started = std::time::Instant::now();
    f.counters.requests.fetch_add(1, Ordering::Relaxed);
    let keys = f.keys.read().unwrap().clone();
    let origin = req.headers().get(header::ORIGIN).cloned();
    if let Some(r) = f.authorize(&keys, req.headers()) {
        return r;
    }
    drop(keys);
    if let Some(r) = f.unavailable() {
        return r;
    }
    let (parts, body) = req.into_parts();
    if let Some((api, route)) = &agent {
        if let Some(r) = f.refuses_agent(*api) {
            return r;
        }
        if let Some(r) = agent_early(*api, route, &parts) {
            if !r.status().is_success() {
                f.counters.bad_requests.fetch_add(1, Ordering::Relaxed);
            }
            return r;
        }
    }
    let incoming = match read_incoming(&f.counters, &parts, body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    match agent {
        Some((api, route)) => {
            let fr: &Front = &f;
            translated(fr.agent_call(api), &route, parts, incoming, move |p, i| {
                serve(fr, p, i, origin, started)
            })
            .await
        }
        None => serve(&f, parts, incoming, origin, started).await,
    }
}

/// A request body in hand (bounded in size, time and memory), and its share of the body budget.
pub(super) struct Incoming {
    pub(super) bytes: Option<Bytes>,
    pub(super) _permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// Reads the body before the request takes a place in the queue. A declared length over the limit is
/// refused before a byte of it is read.
pub(super) async fn read_incoming(
    counters: &Counters,
    parts: &axum::http::request::Parts,
    body: Body,
) -> Result<Incoming, Response> {
    let bad_request = |status, msg: &str| {
        counters.bad_requests.fetch_add(1, Ordering::Relaxed);
        openai_error(status, "invalid_request_error", msg)
    };
    if body.is_end_stream() {
        return Ok(Incoming {
            bytes: None,
            _permit: None,
        });
    }
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return Err(bad_request(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body too large (64 MiB at most)",
        ));
    }
    let declared = declared.map(|n| n as usize);
    let limit = if declared.is_some() {
        MAX_BODY
    } else {
        MAX_CHUNKED_BODY
    };
    let kib = declared.unwrap_or(limit).div_ceil(1024).max(1) as u32;
    let Ok(permit) = body_budget().clone().try_acquire_many_owned(kib) else {
        counters.unavailable.fetch_add(1, Ordering::Relaxed);
        return Err(openai_error_with(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            "too many large request bodies in flight; retry shortly",
            header::RETRY_AFTER,
            "1",
        ));
    };
    let read = tokio::time::timeout(BODY_READ_TIMEOUT, read_body(body, declared, limit));
    match read.await {
        Ok(Ok(b)) => Ok(Incoming {
            bytes: Some(b),
            _permit: Some(permit),
        }),
        Ok(Err(())) => Err(bad_request(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body too large (64 MiB at most; 16 MiB without a Content-Length) or cut off",
        )),
        Err(_) => Err(bad_request(
            StatusCode::REQUEST_TIMEOUT,
            "request body not received within 60 s",
        )),
    }
}

/// The answer to a key check that did not pass (counted), or `None` when it passed.
pub(super) fn refusal(auth: Auth, counters: &Counters) -> Option<Response> {
    match auth {
        Auth::Ok => None,
        Auth::Denied => {
            counters.unauthorized.fetch_add(1, Ordering::Relaxed);
            Some(openai_error_with(
                StatusCode::UNAUTHORIZED,
                "invalid_request_error",
                "missing or invalid API key: send `Authorization: Bearer <key>` or `x-api-key: <key>`",
                header::WWW_AUTHENTICATE,
                "Bearer",
            ))
        }
        Auth::KeysUnknown => {
            counters.unavailable.fetch_add(1, Ordering::Relaxed);
            Some(openai_error_with(
                StatusCode::SERVICE_UNAVAILABLE,
                "service_unavailable",
                "the API keys cannot be read: the key store is damaged or unreadable (see `mlx-box status`); fix or remove it, then `mlx-box keys reload`",
                header::RETRY_AFTER,
                "30",
            ))
        }
    }
}

impl Front {
    /// The key check for this service; `Some` is the refusal.
    pub(super) fn authorize(&self, keys: &KeySet, headers: &HeaderMap) -> Option<Response> {
        let auth = auth::authorize(keys, &self.cfg.spec.name, self.cfg.loopback, headers);
        refusal(auth, &self.counters)
    }

    pub(super) fn state(&self) -> Option<State> {
        self.statuses
            .read()
            .unwrap()
            .get(&self.cfg.spec.name)
            .map(|s| s.state)
    }

    /// 503 + Retry-After when the service cannot take the request now and will not be loaded for it:
    /// starting or restarting, or stopped by hand (an on-demand service that is idle loads instead).
    pub(super) fn unavailable(&self) -> Option<Response> {
        if self.held() {
            return None; // it waits in `load` for the restarted server
        }
        let state = self.state();
        let loads = self.cfg.spec.on_demand
            && !matches!(state, Some(State::Stopped | State::Stopping) | None);
        if loads || matches!(state, Some(State::Ready | State::Unhealthy)) {
            return None;
        }
        self.counters.unavailable.fetch_add(1, Ordering::Relaxed);
        let what = state.map(|s| s.as_str()).unwrap_or("unknown");
        let hint = if state == Some(State::Stopped) {
            format!("; start it with `mlx-box start {}`", self.cfg.spec.name)
        } else {
            "; retry shortly".to_string()
        };
        Some(openai_error_with(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            &format!("service `{}` is {what}{hint}", self.cfg.spec.name),
            header::RETRY_AFTER,
            "5",
        ))
    }

    /// Drained for a restart (the footprint cap): new requests wait for the restarted server.
    pub(super) fn held(&self) -> bool {
        HELD_SERVICES.load(Ordering::Relaxed) > 0
            && self
                .loader
                .as_ref()
                .and_then(|l| l.upgrade())
                .is_some_and(|l| l.holds(&self.cfg.spec.name))
    }

    /// On demand, or held: waits (counted as loading) until the service is ready, loading it if it is
    /// idle.
    pub(super) async fn load(&self, parts: &axum::http::request::Parts) -> Option<Response> {
        let held = self.held();
        let ready = matches!(self.state(), Some(State::Ready | State::Unhealthy));
        if !held && (!self.cfg.spec.on_demand || ready) {
            return None;
        }
        if !held && parts.method != Method::POST {
            // Only an inference request (a POST) loads a model: a GET anyone can make (an `<img>`, a
            // health check) must not start a server and evict others.
            return Some(self.idle_answer(parts));
        }
        let Some(loader) = self.loader.as_ref().and_then(|l| l.upgrade()) else {
            return self.unavailable();
        };
        let _loading = Waiting::new(&self.counters.loading);
        match loader.load(self.cfg.spec.name.clone()).await {
            Ok(()) => None,
            Err(why) => {
                self.counters.unavailable.fetch_add(1, Ordering::Relaxed);
                Some(openai_error_with(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "service_unavailable",
                    &why,
                    header::RETRY_AFTER,
                    "10",
                ))
            }
        }
    }
}

impl Front {
    /// What an idle on-demand service answers to a request that does not load it: its model list (as
    /// its server would answer), or a 503 that says what loads it.
    pub(super) fn idle_answer(&self, parts: &axum::http::request::Parts) -> Response {
        let spec = &self.cfg.spec;
        let path = parts.uri.path().trim_end_matches('/');
        if parts.method == Method::GET && path == "/v1/models" {
            let id = spec.model.as_deref().unwrap_or(&spec.name);
            return axum::Json(serde_json::json!({
                "object": "list",
                "data": [{"id": id, "object": "model", "created": 0, "owned_by": "mlx-box"}],
            }))
            .into_response();
        }
        self.counters.unavailable.fetch_add(1, Ordering::Relaxed);
        openai_error_with(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            &format!(
                "service `{}` is idle (on demand): an inference request (a POST) loads it",
                spec.name
            ),
            header::RETRY_AFTER,
            "5",
        )
    }
}

/// An authorized request with its body in hand: the model policy, the on-demand load, the queue, the
/// backend. The service's port and the one endpoint both end here.
pub(super) async fn serve(
    f: &Front,
    parts: axum::http::request::Parts,
    incoming: Incoming,
    origin: Option<HeaderValue>,
    started: std::time::Instant,
) -> Response {
    if let Some(r) = f.refuses_management(&parts.method, parts.uri.path()) {
        return r;
    }
    if let Some(r) = f.refuses_method(&parts.method) {
        return r;
    }
    let Incoming { bytes, _permit } = incoming;
    let mut streaming = false;
    let body = match bytes {
        None => None,
        Some(bytes) if parts.method == Method::POST => match f.check_body(
            parts
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok()),
            bytes,
        ) {
            Ok((b, s)) => {
                streaming = s;
                Some(b)
            }
            Err((code, msg)) => return f.bad_request(code, &msg),
        },
        Some(bytes) => Some(bytes),
    };
    let incoming = Incoming {
        bytes: body,
        _permit,
    };
    admit(f, parts, incoming, streaming, origin, started).await
}

/// The on-demand load, the `max_concurrency` queue, then the backend, for a body whose model policy was
/// applied (by [`serve`], or by a pool, which spliced its member's model id).
pub(super) async fn admit(
    f: &Front,
    parts: axum::http::request::Parts,
    incoming: Incoming,
    streaming: bool,
    origin: Option<HeaderValue>,
    started: std::time::Instant,
) -> Response {
    f.counters.touch();
    let Incoming { bytes, _permit } = incoming;
    if let Some(r) = f.load(&parts).await {
        return r;
    }
    // Admission: a bounded queue in front of max_concurrency slots.
    let admitted = match &f.admitted {
        Some(sem) => match sem.clone().try_acquire_owned() {
            Ok(p) => Some(p),
            Err(_) => {
                f.counters.rejected_busy.fetch_add(1, Ordering::Relaxed);
                return openai_error_with(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limit_exceeded",
                    &format!(
                        "service `{}` is at max_concurrency and its queue is full",
                        f.cfg.spec.name
                    ),
                    header::RETRY_AFTER,
                    "1",
                );
            }
        },
        None => None,
    };
    // Without max_concurrency there is no queue: its time is 0, and the clock is not read for it.
    let (slot, queued_s) = match &f.slots {
        Some(sem) => {
            let queued = std::time::Instant::now();
            let _waiting = Waiting::new(&f.counters.waiting);
            let slot = sem.clone().acquire_owned().await.ok();
            (slot, queued.elapsed().as_secs_f64())
        }
        None => (None, 0.0),
    };
    if let Some(m) = &f.metrics {
        m.queue.observe(queued_s);
    }
    f.counters.in_flight.fetch_add(1, Ordering::Relaxed);
    let guard = InFlight {
        counters: f.counters.clone(),
        _slot: slot,
        _admitted: admitted,
    };
    let mut out = forward(f, parts, bytes, streaming, guard, started).await;
    if !out.status().is_success() {
        f.counters.errors.fetch_add(1, Ordering::Relaxed);
    }
    f.cfg
        .cors
        .answer_headers(origin.as_ref(), out.headers_mut());
    out
}

pub(super) async fn forward(
    f: &Front,
    mut parts: axum::http::request::Parts,
    body: Option<Bytes>,
    streaming: bool,
    guard: InFlight,
    started: std::time::Instant,
) -> Response {
    // The client's headers go on as they are, minus hop-by-hop ones (`backend::send`), its origin and
    // its key.
    parts.headers.remove(header::AUTHORIZATION);
    parts.headers.remove(X_API_KEY);
    let timeout = f.cfg.timeout;
    let sent = backend::send(&f.upstream, &f.backend_host, &parts, body);
    let resp = match tokio::time::timeout(timeout, sent).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            return openai_error(
                StatusCode::BAD_GATEWAY,
                "upstream_error",
                &format!("backend did not answer: {e}"),
            );
        }
        Err(_) => {
            f.counters.timeouts.fetch_add(1, Ordering::Relaxed);
            return openai_error(
                StatusCode::GATEWAY_TIMEOUT,
                "timeout",
                &format!(
                    "service `{}` did not answer within {} s (request_timeout_s)",
                    f.cfg.spec.name,
                    timeout.as_secs_f64()
                ),
            );
        }
    };
    let (rparts, incoming) = resp.into_parts();
    let status = rparts.status;
    let mut headers = rparts.headers;
    let filter = f.cfg.spec.filter_reasoning && status.is_success();
    // What the reply is decides how it is filtered (a "stream": true request may get plain JSON back).
    let sse = downstream_head(&mut headers, !filter);
    let mut meter = Meter::new(f.counters.clone(), sse || streaming, guard);
    if let Some(m) = f.metrics.as_ref().filter(|_| status.is_success()) {
        meter.measure(m.clone(), started);
    }
    let relay = Relay {
        inner: incoming,
        meter,
        timeout,
        stall: None,
    };
    let body = if filter && sse {
        Body::new(FilteredRelay {
            relay,
            filter: SseFilter::default(),
            done: false,
        })
    } else if filter {
        let b =
            match tokio::time::timeout(timeout, axum::body::to_bytes(Body::new(relay), MAX_BODY))
                .await
            {
                Ok(Ok(b)) => b,
                _ => {
                    return openai_error(
                        StatusCode::BAD_GATEWAY,
                        "upstream_error",
                        "backend reply cut off, too large or too slow",
                    )
                }
            };
        if !sse::might_change(&b) {
            Body::from(b) // no think span, no reasoning field: as it came
        } else {
            match serde_json::from_slice::<serde_json::Value>(&b) {
                Ok(mut v) => {
                    filter_completion(&mut v);
                    Body::from(serde_json::to_vec(&v).unwrap_or_default())
                }
                Err(_) => Body::from(b),
            }
        }
    } else {
        // Chunk by chunk, no buffering; the backend's length (if any) is kept.
        Body::new(relay)
    };
    let mut out = Response::new(body);
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn front(toml: &str) -> Front {
        let (settings, diags) = crate::config::parse_settings(std::path::Path::new("s.toml"), toml);
        let settings = settings.unwrap_or_else(|| panic!("{diags:?}"));
        let cfg = ListenerConfig::all(&settings).remove(0);
        Front {
            metrics: Some(crate::metrics::ServiceMetrics::new(
                &cfg.spec.name,
                cfg.spec.model.as_deref(),
            )),
            cfg,
            keys: Default::default(),
            backend_host: HeaderValue::from_static("127.0.0.1:1"),
            upstream: backend::Upstream::Local(1),
            statuses: Default::default(),
            slots: None,
            admitted: None,
            counters: Default::default(),
            loader: None,
        }
    }

    const CHAT: &str = "[services.chat]\nkind = \"command\"\ncommand = [\"x\"]\nport = 9100\nbackend_port = 9101\nmodel = \"org/real-model\"\naliases = [\"fast\"]\n";

    fn model(b: &Bytes) -> serde_json::Value {
        serde_json::from_slice::<serde_json::Value>(b).unwrap()["model"].clone()
    }

    /// Only the configured model and its aliases pass; the name and aliases become the
    /// model id, spliced into the bytes.
    #[test]
    fn the_model_policy() {
        let f = front(CHAT);
        let ok = |b: &[u8]| {
            f.check_body(None, Bytes::copy_from_slice(b))
                .map_err(|r| r.0)
        };
        let (b, st) = ok(br#"{"model":"org/real-model","stream":true}"#).unwrap();
        assert!(st);
        assert_eq!(
            &b[..],
            br#"{"model":"org/real-model","stream":true}"#,
            "untouched"
        );
        for alias in [
            r#"{"model":"chat"}"#,
            r#"{"model":"fast"}"#,
            r#"{"messages":[]}"#,
            r#"{"model":""}"#,
            r#"{"model":null}"#,
        ] {
            assert_eq!(
                model(&ok(alias.as_bytes()).unwrap().0),
                "org/real-model",
                "{alias}"
            );
        }
        for refused in [
            &br#"{"model":"other/model"}"#[..],
            br#"{"model":"org/real-model","adapters":"x"}"#,
            br#"{"model":"chat","draft_model":"y"}"#,
            br#"{"model":3}"#,
            br#"{"model":"chat","model":"evil"}"#,
            br#"{"model":"chat""#,
        ] {
            assert_eq!(
                ok(refused).unwrap_err(),
                StatusCode::BAD_REQUEST,
                "{}",
                String::from_utf8_lossy(refused)
            );
        }
        // A body the policy cannot read (not a UTF-8 JSON object: a BOM, UTF-16, a
        // multipart body without its content type) does not pass a service that holds its model.
        for unread in [
            &b"--boundary\r\n"[..],
            b"\xef\xbb\xbf{\"model\":\"other/model\"}",
            b"\xff\xfe{\x00\"\x00m\x00",
            b"[{\"model\":\"other/model\"}]",
        ] {
            assert_eq!(ok(unread).unwrap_err(), StatusCode::BAD_REQUEST);
        }
        assert!(ok(b" \n").is_ok(), "a blank body is no body");
        let any = front(&format!("{CHAT}allow_any_model = true\n"));
        assert!(any
            .check_body(None, Bytes::from_static(b"\xef\xbb\xbf{}"))
            .is_ok());
        assert!(f.refuses_method(&Method::PUT).is_some());
        assert!(f.refuses_method(&Method::DELETE).is_some());
        assert!(f.refuses_method(&Method::POST).is_none());
        assert!(any.refuses_method(&Method::PUT).is_none());
        assert!(any
            .check_body(
                None,
                Bytes::from_static(br#"{"model":"other","adapters":"a"}"#)
            )
            .is_ok());
    }

    /// A speech request gets the service's voice and language when it names none; an upload
    /// to a transcription service is held to its model like a JSON body, and gets its language and
    /// OpenAI's JSON reply.
    #[test]
    fn audio_requests_get_the_services_defaults_and_its_model() {
        let tts = front("[services.tts]\nkind = \"tts\"\nport = 9100\nbackend_port = 9101\nmodel = \"org/tts\"\ndefault_voice = \"serena\"\nlanguage = \"auto\"\n");
        let json = |f: &Front, b: &str| -> serde_json::Value {
            let (out, _) = f
                .check_body(
                    Some("application/json"),
                    Bytes::copy_from_slice(b.as_bytes()),
                )
                .unwrap();
            serde_json::from_slice(&out).unwrap()
        };
        let v = json(&tts, r#"{"input":"hi"}"#);
        assert_eq!(
            (
                v["model"].as_str(),
                v["voice"].as_str(),
                v["lang_code"].as_str()
            ),
            (Some("org/tts"), Some("serena"), Some("auto"))
        );
        let v = json(
            &tts,
            r#"{"model":"tts","input":"hi","voice":"ryan","lang_code":"english"}"#,
        );
        assert_eq!(
            (
                v["model"].as_str(),
                v["voice"].as_str(),
                v["lang_code"].as_str()
            ),
            (Some("org/tts"), Some("ryan"), Some("english"))
        );
        assert_eq!(json(&tts, "{}")["voice"], "serena");

        let stt = front("[services.stt]\nkind = \"stt\"\nport = 9100\nbackend_port = 9101\nmodel = \"org/whisper\"\nlanguage = \"en\"\n");
        let ct = "multipart/form-data; boundary=B0";
        let upload = |model: &str, extra: &str| {
            format!("--B0\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\nRIFF....\r\n--B0\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\n{model}\r\n{extra}--B0--\r\n")
        };
        let (out, _) = stt
            .check_body(Some(ct), Bytes::from(upload("stt", "")))
            .unwrap();
        let f = form::parse(&out, "B0").unwrap();
        assert_eq!(f.text(&out, "model").unwrap(), Some("org/whisper"));
        assert_eq!(f.text(&out, "language").unwrap(), Some("en"));
        assert_eq!(f.text(&out, "response_format").unwrap(), Some("json"));
        assert_eq!(f.text(&out, "file").unwrap(), Some("RIFF...."));
        let mine = upload("org/whisper", "--B0\r\nContent-Disposition: form-data; name=\"language\"\r\n\r\nde\r\n--B0\r\nContent-Disposition: form-data; name=\"response_format\"\r\n\r\ntext\r\n");
        let (out, _) = stt.check_body(Some(ct), Bytes::from(mine.clone())).unwrap();
        assert_eq!(
            &out[..],
            mine.as_bytes(),
            "nothing to change: the client's bytes"
        );
        let refused = stt
            .check_body(Some(ct), Bytes::from(upload("openai/whisper-large", "")))
            .unwrap_err();
        assert_eq!(refused.0, StatusCode::BAD_REQUEST);
        assert!(refused.1.contains("`org/whisper`"), "{}", refused.1);
        assert!(stt
            .check_body(Some(ct), Bytes::from_static(b"--B0\r\nbroken"))
            .is_err());
        assert!(stt
            .check_body(Some("multipart/form-data"), Bytes::from(upload("stt", "")))
            .is_err());

        // Loading another model by a route, not a body.
        assert!(stt
            .refuses_management(&Method::POST, "/v1/models")
            .is_some());
        assert!(stt
            .refuses_management(&Method::DELETE, "/v1/models/")
            .is_some());
        assert!(stt.refuses_management(&Method::GET, "/v1/models").is_none());
        assert!(stt
            .refuses_management(&Method::POST, "/v1/model%73")
            .is_some());
        assert!(stt
            .refuses_management(&Method::POST, "/v1/audio/transcriptions")
            .is_none());
        let ocr = front("[services.ocr]\nkind = \"ocr\"\nport = 9100\nbackend_port = 9101\nmodel = \"org/vlm\"\n");
        assert!(ocr.refuses_management(&Method::POST, "/unload").is_some());
        assert!(ocr
            .refuses_management(&Method::PATCH, "/v1/settings")
            .is_some());
        assert!(ocr
            .refuses_management(&Method::POST, "/v1/chat/completions")
            .is_none());
    }
}
