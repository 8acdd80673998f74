//! The API-key proxy: for each service with both `port` and `backend_port`, the daemon listens on
//! `[server] host:port` and forwards to `127.0.0.1:backend_port` while the service is ready.
//!
//! - Auth: `Authorization: Bearer <key>` against the configured keys, compared in constant time, never
//!   logged; 401 + `WWW-Authenticate: Bearer` otherwise. No key configured = open, but only on loopback.
//! - 503 + Retry-After while the service is not ready (starting, restarting): never a hang.
//! - `max_concurrency`: that many requests in flight to the backend, a bounded queue, 429 beyond it.
//! - Model alias: an empty `model`, or the service's name, becomes the configured model id.
//! - `filter_reasoning`: think spans and reasoning fields removed, in JSON replies and in SSE streams,
//!   chunk by chunk (see `reasoning.rs`).

use crate::api::ServiceStatus;
use crate::config::{ServiceSpec, Settings};
use crate::reasoning::{filter_completion, StreamFilter};
use crate::supervisor::State;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State as AxState};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use tokio::sync::Semaphore;
use ts_rs::TS;

/// Request bodies above this are refused (413): a chat request with a long context is a few MB.
const MAX_BODY: usize = 64 * 1024 * 1024;

#[derive(Debug, Default, Serialize, Deserialize, Clone, PartialEq, TS)]
#[ts(export)]
pub struct ProxyStats {
    #[ts(type = "number")]
    pub requests: u64,
    #[ts(type = "number")]
    pub errors: u64,
    #[ts(type = "number")]
    pub unauthorized: u64,
    #[ts(type = "number")]
    pub rejected_busy: u64,
    #[ts(type = "number")]
    pub unavailable: u64,
    #[ts(type = "number")]
    pub in_flight: u64,
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    errors: AtomicU64,
    unauthorized: AtomicU64,
    rejected_busy: AtomicU64,
    unavailable: AtomicU64,
    in_flight: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> ProxyStats {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ProxyStats {
            requests: g(&self.requests),
            errors: g(&self.errors),
            unauthorized: g(&self.unauthorized),
            rejected_busy: g(&self.rejected_busy),
            unavailable: g(&self.unavailable),
            in_flight: g(&self.in_flight),
        }
    }
}

/// One frontend listener's view of its service.
struct Front {
    spec: ServiceSpec,
    keys: Vec<String>,
    backend: String,
    client: reqwest::Client,
    statuses: Arc<RwLock<BTreeMap<String, ServiceStatus>>>,
    /// In flight to the backend (max_concurrency) and, separately, admitted (in flight + queued).
    slots: Option<Arc<Semaphore>>,
    admitted: Option<Arc<Semaphore>>,
    counters: Arc<Counters>,
}

fn openai_error(status: StatusCode, kind: &str, msg: &str) -> Response {
    let body =
        serde_json::json!({"error": {"message": msg, "type": kind, "code": status.as_u16()}});
    (status, axum::Json(body)).into_response()
}

/// Constant-time comparison: the time taken does not tell how much of a key was right.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() ^ b.len()) as u8;
    for i in 0..a.len().max(b.len()) {
        diff |= a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0);
    }
    diff == 0
}

fn authorized(keys: &[String], headers: &HeaderMap) -> bool {
    if keys.is_empty() {
        return true;
    }
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .unwrap_or("");
    // Check every key (no early exit) so timing does not reveal which one matched.
    keys.iter()
        .fold(false, |ok, k| ok | ct_eq(k.as_bytes(), given.as_bytes()))
}

const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
];

async fn handle(AxState(f): AxState<Arc<Front>>, req: Request) -> Response {
    f.counters.requests.fetch_add(1, Ordering::Relaxed);
    if !authorized(&f.keys, req.headers()) {
        f.counters.unauthorized.fetch_add(1, Ordering::Relaxed);
        let mut r = openai_error(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "missing or invalid API key: send Authorization: Bearer <key>",
        );
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return r;
    }
    let state = f
        .statuses
        .read()
        .unwrap()
        .get(&f.spec.name)
        .map(|s| s.state);
    if state != Some(State::Ready) && state != Some(State::Unhealthy) {
        f.counters.unavailable.fetch_add(1, Ordering::Relaxed);
        let what = state.map(|s| s.as_str()).unwrap_or("unknown");
        let mut r = openai_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            &format!("service `{}` is {what}; retry shortly", f.spec.name),
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        return r;
    }
    // Admission: a bounded queue in front of max_concurrency slots.
    let _admitted = match &f.admitted {
        Some(sem) => match sem.clone().try_acquire_owned() {
            Ok(p) => Some(p),
            Err(_) => {
                f.counters.rejected_busy.fetch_add(1, Ordering::Relaxed);
                let mut r = openai_error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limit_exceeded",
                    &format!(
                        "service `{}` is at max_concurrency and its queue is full",
                        f.spec.name
                    ),
                );
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                return r;
            }
        },
        None => None,
    };
    let _slot = match &f.slots {
        Some(sem) => sem.clone().acquire_owned().await.ok(),
        None => None,
    };
    f.counters.in_flight.fetch_add(1, Ordering::Relaxed);
    let out = forward(&f, req).await;
    f.counters.in_flight.fetch_sub(1, Ordering::Relaxed);
    if !out.status().is_success() {
        f.counters.errors.fetch_add(1, Ordering::Relaxed);
    }
    out
}

async fn forward(f: &Front, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let Ok(mut bytes) = axum::body::to_bytes(body, MAX_BODY).await else {
        return openai_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            "request body too large",
        );
    };
    let mut streaming = false;
    let is_json = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if parts.method == Method::POST && is_json {
        if let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(&bytes) {
            streaming = v.get("stream").and_then(|s| s.as_bool()) == Some(true);
            let alias = match v.get("model").and_then(|m| m.as_str()) {
                None | Some("") => true,
                Some(m) => m == f.spec.name,
            };
            if alias {
                if let Some(model) = &f.spec.model {
                    v["model"] = serde_json::Value::String(model.clone());
                    bytes = Bytes::from(serde_json::to_vec(&v).unwrap_or_default());
                }
            }
        }
    }
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let mut rb = f
        .client
        .request(parts.method.clone(), format!("{}{path}", f.backend))
        .body(bytes);
    for (k, v) in parts.headers.iter() {
        if !HOP_BY_HOP.contains(&k.as_str()) && k != header::AUTHORIZATION {
            rb = rb.header(k, v);
        }
    }
    let resp = match rb.send().await {
        Ok(r) => r,
        Err(e) => {
            return openai_error(
                StatusCode::BAD_GATEWAY,
                "upstream_error",
                &format!("backend did not answer: {e}"),
            );
        }
    };
    let status = resp.status();
    let mut headers = HeaderMap::new();
    for (k, v) in resp.headers() {
        if !HOP_BY_HOP.contains(&k.as_str()) {
            headers.insert(k.clone(), v.clone());
        }
    }
    let sse = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let body = if f.spec.filter_reasoning && (sse || streaming) {
        Body::from_stream(filter_sse(resp.bytes_stream()))
    } else if f.spec.filter_reasoning && status.is_success() {
        let b = resp.bytes().await.unwrap_or_default();
        match serde_json::from_slice::<serde_json::Value>(&b) {
            Ok(mut v) => {
                filter_completion(&mut v);
                Body::from(serde_json::to_vec(&v).unwrap_or_default())
            }
            Err(_) => Body::from(b),
        }
    } else {
        // Pass-through, chunk by chunk: no buffering.
        Body::from_stream(resp.bytes_stream())
    };
    let mut out = Response::new(body);
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    out
}

/// Filters an SSE byte stream event by event: each `data:` JSON goes through the reasoning filter as soon
/// as its event is complete; events left empty are dropped; comments and `[DONE]` pass.
fn filter_sse(
    upstream: impl futures_util::Stream<Item = reqwest::Result<Bytes>> + Send + 'static,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    let mut filter = StreamFilter::default();
    let mut buf: Vec<u8> = Vec::new();
    upstream.map(move |chunk| {
        let chunk = chunk.map_err(std::io::Error::other)?;
        buf.extend_from_slice(&chunk);
        let mut out = Vec::new();
        // Events end with a blank line.
        while let Some(end) = find_event_end(&buf) {
            let event: Vec<u8> = buf.drain(..end).collect();
            out.extend(filter_event(&event, &mut filter));
        }
        Ok(Bytes::from(out))
    })
}

fn find_event_end(buf: &[u8]) -> Option<usize> {
    let a = buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    let b = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    }
}

fn filter_event(event: &[u8], filter: &mut StreamFilter) -> Vec<u8> {
    let text = String::from_utf8_lossy(event);
    let mut out = String::new();
    for line in text.split_inclusive('\n') {
        let bare = line.trim_end_matches(['\r', '\n']);
        if let Some(data) = bare.strip_prefix("data:") {
            let data = data.trim_start();
            if data == "[DONE]" {
                out.push_str(line);
                continue;
            }
            match serde_json::from_str::<serde_json::Value>(data) {
                Ok(mut v) => {
                    if !filter.filter_chunk(&mut v) {
                        return Vec::new(); // nothing left in this event
                    }
                    out.push_str("data: ");
                    out.push_str(&v.to_string());
                    out.push('\n');
                }
                Err(_) => out.push_str(line),
            }
        } else {
            out.push_str(line);
        }
    }
    out.into_bytes()
}

/// Runs the frontend listeners for a set of settings; replaced as a whole when the settings change.
pub struct Proxies {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    counters: BTreeMap<String, Arc<Counters>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("refusing to serve [services.{service}] on {host} without an API key: add api_keys to [server] (or bind 127.0.0.1)")]
    OpenOnPublicHost { service: String, host: String },
    #[error("cannot listen on {addr} for [services.{service}]: {source}; is another program using port {port}? change `port`")]
    Bind {
        service: String,
        addr: String,
        port: u16,
        source: std::io::Error,
    },
}

impl Proxies {
    pub fn empty() -> Self {
        Proxies {
            tasks: vec![],
            counters: BTreeMap::new(),
        }
    }

    /// Stops every listener and waits until their sockets are closed (so the ports can be bound again).
    pub async fn stop(mut self) {
        for t in std::mem::take(&mut self.tasks) {
            t.abort();
            let _ = t.await;
        }
    }

    /// Starts a listener per service with both `port` and `backend_port`. Problems are returned per service;
    /// the others still start.
    pub async fn start(
        settings: &Settings,
        statuses: Arc<RwLock<BTreeMap<String, ServiceStatus>>>,
    ) -> (Proxies, Vec<ProxyError>) {
        let mut p = Proxies::empty();
        let mut errors = vec![];
        let host = settings.server.host.clone();
        let loopback = host
            .parse::<std::net::IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(host == "localhost");
        let client = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("http client");
        for spec in settings.services.iter().filter(|s| s.enabled) {
            let (Some(port), Some(backend_port)) = (spec.port, spec.backend_port) else {
                continue;
            };
            if settings.server.api_keys.is_empty() && !loopback {
                errors.push(ProxyError::OpenOnPublicHost {
                    service: spec.name.clone(),
                    host: host.clone(),
                });
                continue;
            }
            let addr = if host.contains(':') {
                format!("[{host}]:{port}")
            } else {
                format!("{host}:{port}")
            };
            let listener = match tokio::net::TcpListener::bind(&addr).await {
                Ok(l) => l,
                Err(e) => {
                    errors.push(ProxyError::Bind {
                        service: spec.name.clone(),
                        addr,
                        port,
                        source: e,
                    });
                    continue;
                }
            };
            let counters = Arc::new(Counters::default());
            let slots = spec
                .max_concurrency
                .map(|n| Arc::new(Semaphore::new(n as usize)));
            // Queue: up to 4× the slots wait; beyond that, 429.
            let admitted = spec
                .max_concurrency
                .map(|n| Arc::new(Semaphore::new(n as usize * 5)));
            let front = Arc::new(Front {
                spec: spec.clone(),
                keys: settings.server.api_keys.clone(),
                backend: format!("http://127.0.0.1:{backend_port}"),
                client: client.clone(),
                statuses: statuses.clone(),
                slots,
                admitted,
                counters: counters.clone(),
            });
            let app = axum::Router::new().fallback(handle).with_state(front);
            p.counters.insert(spec.name.clone(), counters);
            p.tasks.push(tokio::spawn(async move {
                let _ = axum::serve(listener, app).await;
            }));
        }
        (p, errors)
    }

    pub fn stats(&self) -> BTreeMap<String, ProxyStats> {
        self.counters
            .iter()
            .map(|(k, c)| (k.clone(), c.snapshot()))
            .collect()
    }
}

impl Drop for Proxies {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_key_check() {
        let keys = vec!["alpha-key".to_string(), "beta-key".to_string()];
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
            m
        };
        assert!(authorized(&keys, &h("Bearer beta-key")));
        assert!(!authorized(&keys, &h("Bearer beta-ke")));
        assert!(!authorized(&keys, &h("Bearer beta-keyy")));
        assert!(!authorized(&keys, &HeaderMap::new()));
        assert!(
            authorized(&[], &HeaderMap::new()),
            "no keys: open (loopback only, checked at start)"
        );
    }

    #[test]
    fn sse_events_are_filtered_as_they_complete() {
        let mut f = StreamFilter::default();
        let ev = |d: &str| format!("data: {d}\n\n");
        let r = filter_event(
            ev(r#"{"choices":[{"index":0,"finish_reason":null,"delta":{"reasoning":"hmm"}}]}"#)
                .as_bytes(),
            &mut f,
        );
        assert!(r.is_empty(), "a reasoning-only event is dropped");
        let r = filter_event(ev(r#"{"choices":[{"index":0,"finish_reason":null,"delta":{"content":"Hi <think>x</think>there"}}]}"#).as_bytes(), &mut f);
        assert_eq!(String::from_utf8(r).unwrap(), "data: {\"choices\":[{\"delta\":{\"content\":\"Hi there\"},\"finish_reason\":null,\"index\":0}]}\n\n");
        assert_eq!(
            filter_event(b"data: [DONE]\n\n", &mut f),
            b"data: [DONE]\n\n"
        );
        assert_eq!(
            filter_event(b": keepalive 1/1\n\n", &mut f),
            b": keepalive 1/1\n\n"
        );
        assert_eq!(find_event_end(b"data: x\n\ndata: y"), Some(9));
    }
}
