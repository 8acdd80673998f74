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
use crate::keys::ApiKey;
use crate::reasoning::{filter_completion, StreamFilter};
use crate::supervisor::State;
use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{header, uri, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use http_body::{Body as HttpBody, Frame, SizeHint};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use ts_rs::TS;

/// Request bodies above this are refused (413): a chat request with a long context is a few MB.
const MAX_BODY: usize = 64 * 1024 * 1024;
/// Live tok/s is the output tokens of the last few monitor ticks over their span.
const RATE_WINDOW: usize = 5;
/// Per-request decode speeds kept for the throttling rule.
const DECODE_SERIES: usize = 60;

/// Per service, on `GET /v1/proxy/stats`.
#[derive(Debug, Default, Serialize, Deserialize, Clone, PartialEq, TS)]
#[ts(export)]
pub struct ProxyStats {
    #[ts(type = "number")]
    pub requests: u64,
    /// Answers that were not 2xx (backend errors, 502, 504; not 401/429/503, counted on their own).
    #[ts(type = "number")]
    pub errors: u64,
    #[ts(type = "number")]
    pub unauthorized: u64,
    #[ts(type = "number")]
    pub rejected_busy: u64,
    #[ts(type = "number")]
    pub unavailable: u64,
    #[ts(type = "number")]
    pub timeouts: u64,
    /// Requests admitted and not finished (a stream counts until its last byte).
    #[ts(type = "number")]
    pub in_flight: u64,
    /// Output tokens so far (from `usage`; on streams, one per content chunk until `usage` arrives).
    #[ts(type = "number")]
    pub output_tokens: u64,
    /// Output tokens per second over the last few seconds, all requests together.
    pub output_tok_s: f64,
    /// Decode speed of the last finished stream (tokens / time from first to last token).
    pub last_decode_tok_s: Option<f64>,
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    errors: AtomicU64,
    unauthorized: AtomicU64,
    rejected_busy: AtomicU64,
    unavailable: AtomicU64,
    timeouts: AtomicU64,
    in_flight: AtomicU64,
    output_tokens: AtomicU64,
    /// (time, output_tokens) at the last monitor ticks.
    ticks: Mutex<VecDeque<(Instant, u64)>>,
    /// (unix ms, tok/s) of finished streams.
    decode: Mutex<VecDeque<(u64, f64)>>,
}

impl Counters {
    fn snapshot(&self) -> ProxyStats {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let output_tok_s = {
            let t = self.ticks.lock().unwrap();
            match (t.front(), t.back()) {
                (Some((t0, n0)), Some((t1, n1))) if t1 > t0 => {
                    n1.saturating_sub(*n0) as f64 / (*t1 - *t0).as_secs_f64()
                }
                _ => 0.0,
            }
        };
        ProxyStats {
            requests: g(&self.requests),
            errors: g(&self.errors),
            unauthorized: g(&self.unauthorized),
            rejected_busy: g(&self.rejected_busy),
            unavailable: g(&self.unavailable),
            timeouts: g(&self.timeouts),
            in_flight: g(&self.in_flight),
            output_tokens: g(&self.output_tokens),
            output_tok_s,
            last_decode_tok_s: self.decode.lock().unwrap().back().map(|x| x.1),
        }
    }

    fn tick(&self, now: Instant) {
        let mut t = self.ticks.lock().unwrap();
        t.push_back((now, self.output_tokens.load(Ordering::Relaxed)));
        while t.len() > RATE_WINDOW + 1 {
            t.pop_front();
        }
    }
}

/// The keys the proxy accepts. Swapped as a whole when they change (`mlx-box keys add/remove`, an edit of
/// settings.toml), without restarting the listeners.
#[derive(Debug, Default, Clone)]
pub struct KeySet {
    keys: Vec<ApiKey>,
    /// Why the OS keyring could not be read, if it could not: keys may exist that we cannot see, so a
    /// service with no other key is refused (503) rather than served open.
    pub keyring_error: Option<String>,
}

impl KeySet {
    /// Keys from the keyring plus the plaintext ones of settings.toml (which open every service).
    pub fn new(keyring: Result<Vec<ApiKey>, String>, plaintext: &[String]) -> KeySet {
        let (mut keys, keyring_error) = match keyring {
            Ok(k) => (k, None),
            Err(e) => (vec![], Some(e)),
        };
        keys.extend(plaintext.iter().map(|k| ApiKey {
            info: crate::keys::KeyInfo {
                id: "settings.toml".into(),
                name: None,
                created: 0,
                last4: String::new(),
                services: vec![],
            },
            secret: k.clone(),
        }));
        KeySet {
            keys,
            keyring_error,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }
}

/// Shared between the daemon (which replaces the set) and every listener (which reads it per request).
pub type SharedKeys = Arc<RwLock<Arc<KeySet>>>;

/// The HTTP/1.1 client to the backends, with a keep-alive pool.
type Backend =
    hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, Body>;

fn new_backend() -> Backend {
    let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
    connector.set_nodelay(true);
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_timer(hyper_util::rt::TokioTimer::new())
        .build(connector)
}

thread_local! {
    /// One pooled client per proxy thread: a backend connection's task then runs on the thread that
    /// uses it, so a request never wakes another thread (measured: the daemon's 2-worker work-stealing
    /// runtime cost ~45 µs of CPU per proxied request, one single-threaded runtime per thread ~30 µs).
    static BACKEND: Backend = new_backend();
}

/// The threads the frontend listeners run on: each a single-threaded tokio runtime (like nginx's worker
/// processes), all accepting on the same sockets. `MLXBOX_PROXY_THREADS` overrides the count (default:
/// the number of CPUs, at most 4: a proxy in front of local LLMs is never the bottleneck beyond that).
fn proxy_runtimes() -> &'static [tokio::runtime::Handle] {
    static RT: OnceLock<Vec<tokio::runtime::Handle>> = OnceLock::new();
    RT.get_or_init(|| {
        let n = std::env::var("MLXBOX_PROXY_THREADS")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or_else(|| {
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(1)
                    .min(4)
            })
            .max(1);
        (0..n)
            .map(|i| {
                let (tx, rx) = std::sync::mpsc::channel();
                std::thread::Builder::new()
                    .name(format!("mlx-box-proxy-{i}"))
                    .spawn(move || {
                        let rt = tokio::runtime::Builder::new_current_thread()
                            .enable_all()
                            .build()
                            .expect("proxy runtime");
                        let _ = tx.send(rt.handle().clone());
                        rt.block_on(std::future::pending::<()>());
                    })
                    .expect("proxy thread");
                rx.recv().expect("proxy runtime handle")
            })
            .collect()
    })
}

/// One frontend listener's view of its service.
struct Front {
    spec: ServiceSpec,
    keys: SharedKeys,
    /// The listener is on a loopback address: with no key at all, it may serve open.
    loopback: bool,
    /// `127.0.0.1:backend_port`.
    backend: uri::Authority,
    statuses: Arc<RwLock<BTreeMap<String, ServiceStatus>>>,
    /// In flight to the backend (max_concurrency) and, separately, admitted (in flight + queued).
    slots: Option<Arc<Semaphore>>,
    admitted: Option<Arc<Semaphore>>,
    timeout: Duration,
    counters: Arc<Counters>,
}

fn openai_error(status: StatusCode, kind: &str, msg: &str) -> Response {
    let body =
        serde_json::json!({"error": {"message": msg, "type": kind, "code": status.as_u16()}});
    (status, axum::Json(body)).into_response()
}

/// An OpenAI-style error with one extra header (`WWW-Authenticate`, `Retry-After`).
fn openai_error_with(
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

/// Constant-time comparison: the time taken does not tell how much of a key was right.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() ^ b.len()) as u8 | ((a.len() ^ b.len()) >> 8) as u8;
    for i in 0..a.len().max(b.len()) {
        diff |= a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0);
    }
    diff == 0
}

#[derive(Debug, PartialEq)]
enum Auth {
    Ok,
    Denied,
    /// No key is known and the keyring could not be read.
    KeysUnknown,
}

fn authorize(set: &KeySet, service: &str, loopback: bool, headers: &HeaderMap) -> Auth {
    if set.keys.is_empty() {
        return match (&set.keyring_error, loopback) {
            (Some(_), _) => Auth::KeysUnknown,
            (None, true) => Auth::Ok,
            (None, false) => Auth::Denied,
        };
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
    let ok = set.keys.iter().fold(false, |ok, k| {
        ok | (ct_eq(k.secret.as_bytes(), given.as_bytes()) & k.info.allows(service))
    });
    if ok {
        Auth::Ok
    } else {
        Auth::Denied
    }
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

/// Held for a request's whole life, the streamed body included: its concurrency slot, its queue place
/// and its in-flight count are released when the last byte has gone (or the client went away).
struct InFlight {
    counters: Arc<Counters>,
    _slot: Option<OwnedSemaphorePermit>,
    _admitted: Option<OwnedSemaphorePermit>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.counters.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn handle(f: Arc<Front>, req: Request) -> Response {
    f.counters.requests.fetch_add(1, Ordering::Relaxed);
    let auth = authorize(
        &f.keys.read().unwrap(),
        &f.spec.name,
        f.loopback,
        req.headers(),
    );
    match auth {
        Auth::Ok => {}
        Auth::Denied => {
            f.counters.unauthorized.fetch_add(1, Ordering::Relaxed);
            return openai_error_with(
                StatusCode::UNAUTHORIZED,
                "invalid_request_error",
                "missing or invalid API key: send Authorization: Bearer <key>",
                header::WWW_AUTHENTICATE,
                "Bearer",
            );
        }
        Auth::KeysUnknown => {
            f.counters.unavailable.fetch_add(1, Ordering::Relaxed);
            return openai_error_with(
                StatusCode::SERVICE_UNAVAILABLE,
                "service_unavailable",
                "the API keys cannot be read from the OS keyring (see `mlx-box status`); unlock it, then `mlx-box keys reload`",
                header::RETRY_AFTER,
                "30",
            );
        }
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
        return openai_error_with(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            &format!("service `{}` is {what}; retry shortly", f.spec.name),
            header::RETRY_AFTER,
            "5",
        );
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
                        f.spec.name
                    ),
                    header::RETRY_AFTER,
                    "1",
                );
            }
        },
        None => None,
    };
    let slot = match &f.slots {
        Some(sem) => sem.clone().acquire_owned().await.ok(),
        None => None,
    };
    f.counters.in_flight.fetch_add(1, Ordering::Relaxed);
    let guard = InFlight {
        counters: f.counters.clone(),
        _slot: slot,
        _admitted: admitted,
    };
    let out = forward(&f, req, guard).await;
    let s = out.status();
    if !s.is_success() {
        f.counters.errors.fetch_add(1, Ordering::Relaxed);
    }
    out
}

/// What the proxy needs from a JSON request body, read without building a `serde_json::Value`.
#[derive(Deserialize)]
struct Peek<'a> {
    #[serde(borrow)]
    model: Option<Cow<'a, str>>,
    stream: Option<bool>,
}

/// Whether the request asks for a stream, and its body with the model alias rewritten (None: unchanged).
fn inspect_json(body: &[u8], spec: &ServiceSpec) -> (bool, Option<Bytes>) {
    // Only an object has fields to read or rewrite.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return (false, None);
    }
    let (streaming, alias) = match serde_json::from_slice::<Peek>(body) {
        Ok(p) => (
            p.stream == Some(true),
            p.model.is_none_or(|m| m.is_empty() || m == spec.name),
        ),
        // Not JSON, or fields of other types: read it the general way.
        Err(_) => match serde_json::from_slice::<serde_json::Value>(body) {
            Ok(v) => (
                v.get("stream").and_then(|s| s.as_bool()) == Some(true),
                match v.get("model").and_then(|m| m.as_str()) {
                    None | Some("") => true,
                    Some(m) => m == spec.name,
                },
            ),
            Err(_) => return (false, None),
        },
    };
    // Only a request that needs the alias is parsed whole and written again.
    let rewritten = match (&spec.model, alias) {
        (Some(model), true) => serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|mut v| {
                v.as_object_mut()?
                    .insert("model".into(), serde_json::Value::String(model.clone()));
                serde_json::to_vec(&v).ok().map(Bytes::from)
            }),
        _ => None,
    };
    (streaming, rewritten)
}

async fn forward(f: &Front, req: Request, guard: InFlight) -> Response {
    let (mut parts, body) = req.into_parts();
    let mut streaming = false;
    // A request without a body (GET) is not collected at all.
    let body = if body.is_end_stream() {
        Body::empty()
    } else {
        let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY).await else {
            return openai_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request_error",
                "request body too large",
            );
        };
        let is_json = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        if parts.method == Method::POST && is_json {
            let (s, rewritten) = inspect_json(&bytes, &f.spec);
            streaming = s;
            Body::from(rewritten.unwrap_or(bytes))
        } else {
            Body::from(bytes)
        }
    };
    let mut target = uri::Parts::default();
    target.scheme = Some(uri::Scheme::HTTP);
    target.authority = Some(f.backend.clone());
    target.path_and_query = Some(
        parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| uri::PathAndQuery::from_static("/")),
    );
    parts.uri = match axum::http::Uri::from_parts(target) {
        Ok(u) => u,
        Err(_) => {
            return openai_error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "bad request path",
            )
        }
    };
    // The client's headers go on as they are, minus hop-by-hop ones and its key.
    for h in HOP_BY_HOP {
        parts.headers.remove(*h);
    }
    parts.headers.remove(header::AUTHORIZATION);
    parts.extensions = Default::default();
    parts.version = axum::http::Version::HTTP_11;
    let req = axum::http::Request::from_parts(parts, body);
    let resp = match tokio::time::timeout(f.timeout, BACKEND.with(|c| c.request(req))).await {
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
                    f.spec.name,
                    f.timeout.as_secs_f64()
                ),
            );
        }
    };
    let (rparts, incoming) = resp.into_parts();
    let status = rparts.status;
    let mut headers = rparts.headers;
    // An unchanged body keeps its Content-Length (hyper's length-delimited path, no chunking).
    let length = headers.get(header::CONTENT_LENGTH).cloned();
    for h in HOP_BY_HOP {
        headers.remove(*h);
    }
    if let Some(l) = length.filter(|_| !f.spec.filter_reasoning || !status.is_success()) {
        headers.insert(header::CONTENT_LENGTH, l);
    }
    let sse = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let mut meter = Meter::new(f.counters.clone(), sse || streaming, guard);
    let body = if f.spec.filter_reasoning && status.is_success() && !(sse || streaming) {
        let b = match tokio::time::timeout(
            f.timeout,
            axum::body::to_bytes(Body::new(incoming), MAX_BODY),
        )
        .await
        {
            Ok(Ok(b)) => b,
            _ => {
                return openai_error(
                    StatusCode::BAD_GATEWAY,
                    "upstream_error",
                    "backend reply cut off or too slow",
                )
            }
        };
        meter.observe(&b);
        drop(meter);
        match serde_json::from_slice::<serde_json::Value>(&b) {
            Ok(mut v) => {
                filter_completion(&mut v);
                Body::from(serde_json::to_vec(&v).unwrap_or_default())
            }
            Err(_) => Body::from(b),
        }
    } else {
        // Chunk by chunk, no buffering; metered; cut off when the backend stalls past the timeout.
        let relay = Relay {
            inner: incoming,
            meter,
            timeout: f.timeout,
            stall: None,
        };
        if f.spec.filter_reasoning && status.is_success() {
            let upstream = Body::new(relay)
                .into_data_stream()
                .map(|r| r.map_err(std::io::Error::other));
            Body::from_stream(filter_sse(upstream))
        } else {
            // The backend's length (if any) is kept: hyper writes the body as it was framed.
            Body::new(relay)
        }
    };
    let mut out = Response::new(body);
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    out
}

/// The backend's reply body on its way to the client: each data frame goes through the meter as it
/// passes; a backend silent for longer than the request timeout ends the body with an error. The stall
/// timer is armed only while the backend has nothing to give (a reply already in hand costs no timer).
struct Relay {
    inner: hyper::body::Incoming,
    meter: Meter,
    timeout: Duration,
    stall: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl HttpBody for Relay {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.stall = None;
                if let Some(data) = frame.data_ref() {
                    this.meter.observe(data);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(std::io::Error::other(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let timeout = this.timeout;
                let stall = this
                    .stall
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                match stall.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        this.stall = None;
                        this.meter.counters.timeouts.fetch_add(1, Ordering::Relaxed);
                        Poll::Ready(Some(Err(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "backend stalled past request_timeout_s",
                        ))))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Counts the output tokens of one reply as its bytes pass: on a stream one per `data:` event with a
/// delta until `usage` says the exact number; on a JSON reply, `usage.completion_tokens`. Dropped with
/// the body, it books the decode speed and releases the request's slot.
struct Meter {
    counters: Arc<Counters>,
    stream: bool,
    counted: u64,
    usage: Option<u64>,
    first: Option<Instant>,
    last: Option<Instant>,
    /// The end of the previous chunk, so a pattern split across chunks is still seen.
    tail: Vec<u8>,
    _guard: InFlight,
}

const USAGE_KEY: &[u8] = b"\"completion_tokens\":";
const DELTA_KEY: &[u8] = b"\"delta\"";

fn count(hay: &[u8], needle: &[u8]) -> usize {
    let mut n = 0;
    let mut rest = hay;
    while let Some(i) = find(rest, needle) {
        n += 1;
        rest = &rest[i + needle.len()..];
    }
    n
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    // memchr on the first byte, then compare: fast enough for token-sized chunks.
    let mut from = 0;
    while from + needle.len() <= hay.len() {
        let i = hay[from..].iter().position(|&b| b == needle[0])? + from;
        if hay[i..].starts_with(needle) {
            return Some(i);
        }
        from = i + 1;
    }
    None
}

impl Meter {
    fn new(counters: Arc<Counters>, stream: bool, guard: InFlight) -> Meter {
        Meter {
            counters,
            stream,
            counted: 0,
            usage: None,
            first: None,
            last: None,
            tail: Vec::new(),
            _guard: guard,
        }
    }

    fn observe(&mut self, chunk: &[u8]) {
        let keep = USAGE_KEY.len() + 24;
        // The tail buffer is reused: one allocation per reply, not per chunk.
        let seen = self.tail.len();
        self.tail.extend_from_slice(chunk);
        let hay = &self.tail;
        if self.stream {
            // Events that start in this chunk (a key split across chunks is counted once, here).
            let n = count(hay, DELTA_KEY) - count(&hay[..seen], DELTA_KEY);
            if n > 0 && self.usage.is_none() {
                let now = Instant::now();
                self.first.get_or_insert(now);
                self.last = Some(now);
                self.counted += n as u64;
                self.counters
                    .output_tokens
                    .fetch_add(n as u64, Ordering::Relaxed);
            }
        }
        if let Some(i) = find(hay, USAGE_KEY) {
            let digits: String = hay[i + USAGE_KEY.len()..]
                .iter()
                .skip_while(|b| b.is_ascii_whitespace())
                .take_while(|b| b.is_ascii_digit())
                .map(|&b| b as char)
                .collect();
            if let Ok(n) = digits.parse::<u64>() {
                if self.usage.is_none() && i + USAGE_KEY.len() + digits.len() < hay.len() {
                    self.usage = Some(n);
                    // The exact number replaces the estimate.
                    let extra = n.saturating_sub(self.counted);
                    self.counters
                        .output_tokens
                        .fetch_add(extra, Ordering::Relaxed);
                    self.counted = self.counted.max(n);
                }
            }
        }
        let cut = hay.len().saturating_sub(keep);
        self.tail.drain(..cut);
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        if let (Some(a), Some(b)) = (self.first, self.last) {
            let secs = (b - a).as_secs_f64();
            let tokens = self.usage.unwrap_or(self.counted);
            // Too few tokens say nothing about speed; the time floor only keeps the division sane (a tiny
            // model streams 16 tokens in ~30 ms).
            if tokens >= 8 && secs > 0.005 {
                let mut d = self.counters.decode.lock().unwrap();
                d.push_back((crate::api::now_ms(), (tokens - 1) as f64 / secs));
                while d.len() > DECODE_SERIES {
                    d.pop_front();
                }
            }
        }
    }
}

/// Filters an SSE byte stream event by event: each `data:` JSON goes through the reasoning filter as soon
/// as its event is complete; events left empty are dropped; comments and `[DONE]` pass.
fn filter_sse(
    upstream: impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send + 'static,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    let mut f = SseFilter::default();
    upstream.map(move |chunk| Ok(Bytes::from(f.push(&chunk?))))
}

/// The reasoning filter over raw SSE bytes, chunked any way: whole events out as soon as they are
/// complete. Public for the benchmark.
#[derive(Default)]
pub struct SseFilter {
    filter: StreamFilter,
    buf: Vec<u8>,
    /// Where the search for the end of the event in `buf` resumes.
    scanned: usize,
}

impl SseFilter {
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        let mut start = 0;
        // Events end with a blank line.
        while let Some(end) = find_event_end(&self.buf[start..], self.scanned.saturating_sub(start))
        {
            out.extend(filter_event(
                &self.buf[start..start + end],
                &mut self.filter,
            ));
            start += end;
            self.scanned = start;
        }
        self.buf.drain(..start);
        // Resume a few bytes back: a terminator may straddle two chunks.
        self.scanned = self.buf.len().saturating_sub(3);
        out
    }
}

/// The end of the first event (after its blank line), looking from `from` on.
fn find_event_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i < buf.len() {
        let j = buf[i..].iter().position(|&b| b == b'\n')? + i;
        if buf.get(j + 1) == Some(&b'\n') {
            return Some(j + 2);
        }
        if buf.get(j + 1) == Some(&b'\r') && buf.get(j + 2) == Some(&b'\n') {
            return Some(j + 3);
        }
        i = j + 1;
    }
    None
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

/// Accepts connections and serves HTTP/1.1 on them (what `axum::serve` did, minus its router), with
/// Nagle off so a streamed token leaves at once.
async fn serve(listener: tokio::net::TcpListener, front: Arc<Front>) {
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            // Out of file descriptors and the like: wait instead of spinning.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let front = front.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(
                move |req: hyper::Request<hyper::body::Incoming>| {
                    let f = front.clone();
                    async move { Ok::<_, std::convert::Infallible>(handle(f, req.map(Body::new)).await) }
                },
            );
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// Runs the frontend listeners for a set of settings; replaced as a whole when the settings change.
pub struct Proxies {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    counters: BTreeMap<String, Arc<Counters>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("refusing to serve [services.{service}] on {host} without an API key: add one (`mlx-box keys add`), or bind 127.0.0.1")]
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
    /// the others still start. The counters of `previous` (the listeners this replaces) carry on.
    pub async fn start(
        settings: &Settings,
        statuses: Arc<RwLock<BTreeMap<String, ServiceStatus>>>,
        keys: SharedKeys,
        previous: &Proxies,
    ) -> (Proxies, Vec<ProxyError>) {
        let mut p = Proxies::empty();
        let mut errors = vec![];
        let host = settings.server.host.clone();
        let loopback = host
            .parse::<std::net::IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(host == "localhost");
        let no_keys = keys.read().unwrap().is_empty();
        for spec in settings.services.iter().filter(|s| s.enabled) {
            let (Some(port), Some(backend_port)) = (spec.port, spec.backend_port) else {
                continue;
            };
            if no_keys && !loopback {
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
            // Every proxy thread accepts on this socket (the kernel wakes them; one wins each
            // connection), and serves the connections it accepted: a std listener, non-blocking, that
            // each thread's runtime adopts.
            let listener = match std::net::TcpListener::bind(&addr)
                .and_then(|l| l.set_nonblocking(true).map(|()| l))
            {
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
            let counters = previous
                .counters
                .get(&spec.name)
                .cloned()
                .unwrap_or_default();
            let slots = spec
                .max_concurrency
                .map(|n| Arc::new(Semaphore::new(n as usize)));
            // Queue: up to 4× the slots wait; beyond that, 429.
            let admitted = spec
                .max_concurrency
                .map(|n| Arc::new(Semaphore::new(n as usize * 5)));
            let front = Arc::new(Front {
                spec: spec.clone(),
                keys: keys.clone(),
                loopback,
                backend: format!("127.0.0.1:{backend_port}")
                    .parse()
                    .expect("an IP and a port make an authority"),
                statuses: statuses.clone(),
                slots,
                admitted,
                timeout: Duration::from_secs_f64(
                    spec.request_timeout_s
                        .unwrap_or(settings.server.request_timeout_s),
                ),
                counters: counters.clone(),
            });
            p.counters.insert(spec.name.clone(), counters);
            for rt in proxy_runtimes() {
                let Ok(l) = listener.try_clone() else {
                    continue;
                };
                let front = front.clone();
                p.tasks.push(rt.spawn(async move {
                    if let Ok(l) = tokio::net::TcpListener::from_std(l) {
                        serve(l, front).await;
                    }
                }));
            }
        }
        (p, errors)
    }

    /// The counters alone (no listeners), to hand to the listeners that replace these.
    pub fn carry_over(&self) -> Proxies {
        Proxies {
            tasks: vec![],
            counters: self.counters.clone(),
        }
    }

    /// Called once a second (the monitor tick): the live tok/s is measured over these ticks.
    pub fn tick(&self) {
        let now = Instant::now();
        for c in self.counters.values() {
            c.tick(now);
        }
    }

    /// Decode speeds (tok/s) of the streams that finished since `since_ms` (unix ms), every service,
    /// oldest first: the series the throttling rule reads.
    pub fn decode_series(&self, since_ms: u64) -> Vec<(u64, f64)> {
        let mut out: Vec<(u64, f64)> = self
            .counters
            .values()
            .flat_map(|c| c.decode.lock().unwrap().clone())
            .filter(|(t, _)| *t >= since_ms)
            .collect();
        out.sort_by_key(|x| x.0);
        out
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

    fn scoped(secret: &str, services: &[&str]) -> ApiKey {
        ApiKey {
            info: crate::keys::KeyInfo {
                id: secret.into(),
                name: None,
                created: 0,
                last4: String::new(),
                services: services.iter().map(|s| s.to_string()).collect(),
            },
            secret: secret.into(),
        }
    }

    #[test]
    fn constant_time_key_check_with_scopes() {
        let mut set = KeySet::new(Ok(vec![scoped("embed-only", &["embed"])]), &[]);
        set.keys
            .extend(KeySet::new(Ok(vec![]), &["alpha-key".into(), "beta-key".into()]).keys);
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
            m
        };
        let auth = |v: &HeaderMap| authorize(&set, "chat", true, v);
        assert_eq!(auth(&h("Bearer beta-key")), Auth::Ok);
        assert_eq!(auth(&h("Bearer beta-ke")), Auth::Denied);
        assert_eq!(auth(&h("Bearer beta-keyy")), Auth::Denied);
        assert_eq!(auth(&HeaderMap::new()), Auth::Denied);
        assert_eq!(
            auth(&h("Bearer embed-only")),
            Auth::Denied,
            "scoped to embed"
        );
        assert_eq!(
            authorize(&set, "embed", false, &h("Bearer embed-only")),
            Auth::Ok
        );
        assert!(!ct_eq(&[0; 256], &[0; 512]), "lengths differing by 256");

        let none = KeySet::new(Ok(vec![]), &[]);
        assert_eq!(
            authorize(&none, "chat", true, &HeaderMap::new()),
            Auth::Ok,
            "open on loopback"
        );
        assert_eq!(
            authorize(&none, "chat", false, &HeaderMap::new()),
            Auth::Denied
        );
        let unknown = KeySet::new(Err("locked".into()), &[]);
        assert_eq!(
            authorize(&unknown, "chat", true, &HeaderMap::new()),
            Auth::KeysUnknown,
            "fail closed"
        );
        let file_only = KeySet::new(Err("locked".into()), &["k".into()]);
        assert_eq!(
            authorize(&file_only, "chat", true, &h("Bearer k")),
            Auth::Ok
        );
    }

    fn sse_through(chunks: &[&[u8]]) -> Vec<u8> {
        let mut f = SseFilter::default();
        let mut out: Vec<u8> = chunks.iter().flat_map(|c| f.push(c)).collect();
        out.extend(f.push(b""));
        out
    }

    proptest::proptest! {
        /// Fuzz: arbitrary bytes, cut anywhere, never panic the filter.
        #[test]
        fn sse_filter_never_panics(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048),
                                   cuts in proptest::collection::vec(0usize..2048, 0..16)) {
            let mut points: Vec<usize> = cuts.into_iter().map(|c| c.min(data.len())).collect();
            points.sort();
            let mut last = 0;
            let mut chunks: Vec<&[u8]> = vec![];
            for p in points {
                chunks.push(&data[last..p]);
                last = p;
            }
            chunks.push(&data[last..]);
            let _ = sse_through(&chunks);
        }

        /// Fuzz with SSE-shaped input (events of JSON with think tags, CRLF, comments, garbage): the
        /// output never depends on where the chunks were cut.
        #[test]
        fn sse_filter_chunking_does_not_matter(
            parts in proptest::collection::vec(proptest::prop_oneof![
                proptest::strategy::Just(r#"data: {"choices":[{"index":0,"delta":{"content":"a<think>b"}}]}"#.to_string()),
                proptest::strategy::Just(r#"data: {"choices":[{"index":0,"delta":{"content":"c</think>d"}}]}"#.to_string()),
                proptest::strategy::Just(r#"data: {"choices":[{"index":0,"delta":{"reasoning":"r"}}]}"#.to_string()),
                proptest::strategy::Just("data: [DONE]".to_string()),
                proptest::strategy::Just(": ping".to_string()),
                "[ -~]{0,12}",
            ], 0..12),
            crlf in proptest::prelude::any::<bool>(),
            cuts in proptest::collection::vec(0usize..1024, 0..12)) {
            let sep = if crlf { "\r\n\r\n" } else { "\n\n" };
            let text: String = parts.iter().map(|p| format!("{p}{sep}")).collect();
            let data = text.as_bytes();
            let whole = sse_through(&[data]);
            let mut points: Vec<usize> = cuts.into_iter().map(|c| c.min(data.len())).collect();
            points.sort();
            let mut last = 0;
            let mut chunks: Vec<&[u8]> = vec![];
            for p in points {
                chunks.push(&data[last..p]);
                last = p;
            }
            chunks.push(&data[last..]);
            proptest::prop_assert_eq!(sse_through(&chunks), whole);
        }
    }

    fn meter() -> (Meter, Arc<Counters>) {
        let c = Arc::new(Counters::default());
        c.in_flight.fetch_add(1, Ordering::Relaxed);
        let g = InFlight {
            counters: c.clone(),
            _slot: None,
            _admitted: None,
        };
        (Meter::new(c.clone(), true, g), c)
    }

    #[test]
    fn meter_counts_stream_tokens_and_takes_usage_when_it_comes() {
        let (mut m, c) = meter();
        let ev = "data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\n";
        // Split inside the key: counted once.
        m.observe(&ev.as_bytes()[..20]);
        m.observe(&ev.as_bytes()[20..]);
        m.observe(ev.repeat(3).as_bytes());
        assert_eq!(c.output_tokens.load(Ordering::Relaxed), 4);
        let usage =
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\": 10}}\n\n";
        m.observe(&usage.as_bytes()[..usage.len() - 6]);
        m.observe(&usage.as_bytes()[usage.len() - 6..]);
        assert_eq!(
            c.output_tokens.load(Ordering::Relaxed),
            10,
            "usage is exact"
        );
        assert_eq!(c.in_flight.load(Ordering::Relaxed), 1);
        drop(m);
        assert_eq!(
            c.in_flight.load(Ordering::Relaxed),
            0,
            "released with the body"
        );
    }

    #[test]
    fn json_requests_are_read_without_a_full_parse_and_rewritten_only_for_the_alias() {
        let toml = "[services.chat]\nkind = \"command\"\ncommand = [\"x\"]\nport = 9100\nbackend_port = 9101\nmodel = \"org/real-model\"\n";
        let (settings, diags) = crate::config::parse_settings(std::path::Path::new("s.toml"), toml);
        let settings = settings.unwrap_or_else(|| panic!("{diags:?}"));
        let spec = settings.services.iter().find(|s| s.name == "chat").unwrap();
        let model = |b: Option<Bytes>| {
            b.map(|b| serde_json::from_slice::<serde_json::Value>(&b).unwrap()["model"].clone())
        };
        let (st, out) = inspect_json(br#"{"model":"other","stream":true}"#, spec);
        assert!(st);
        assert_eq!(out, None, "another model: body untouched");
        let (st, out) = inspect_json(br#" {"model":"chat","messages":[]}"#, spec);
        assert!(!st);
        assert_eq!(model(out), Some("org/real-model".into()));
        assert_eq!(
            model(inspect_json(br#"{"messages":[],"stream":false}"#, spec).1),
            Some("org/real-model".into())
        );
        // Odd shapes go the general way, as before: a non-string model is an alias, "stream":"yes" is not
        // a stream; arrays and garbage pass untouched (an array used to panic the handler).
        let (st, out) = inspect_json(br#"{"model":3,"stream":"yes"}"#, spec);
        assert!(!st);
        assert_eq!(model(out), Some("org/real-model".into()));
        assert_eq!(inspect_json(br#"[{"model":""}]"#, spec), (false, None));
        assert_eq!(inspect_json(b"{not json", spec), (false, None));
    }

    #[test]
    fn live_rate_over_ticks() {
        let c = Counters::default();
        let t0 = Instant::now();
        c.tick(t0);
        c.output_tokens.store(50, Ordering::Relaxed);
        c.tick(t0 + Duration::from_secs(2));
        assert_eq!(c.snapshot().output_tok_s, 25.0);
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
        assert_eq!(find_event_end(b"data: x\n\ndata: y", 0), Some(9));
        assert_eq!(find_event_end(b"data: x\r\n\r\ndata: y", 0), Some(11));
        assert_eq!(find_event_end(b"data: x\ndata: y\n", 0), None);
    }
}
