//! The control API's requests as one typed enum, and their HTTP form in one place: [`Request::route`] is what
//! a client sends, [`Request::decode`] is how the daemon reads it back (a test holds them to each other).
//! A new endpoint is a variant here, its arm in the daemon's dispatcher (`control::server::dispatch`), and
//! its use in a client. The two streams (`GET /v1/events`, `GET /v1/services/{name}/logs/follow`) are not
//! requests of this kind: they answer with server-sent events, not one JSON value.

use crate::bench::{BenchOptions, DoctorOptions};
use crate::keys::NewKeyRequest;
use crate::service::Verb;
use crate::ConfigEditRequest;
use serde::{Deserialize, Serialize};
use ts_rs::TS;

/// Log lines one request may ask for.
pub const MAX_LOG_LINES: usize = 10_000;

/// The most a link test may ask for (256 MiB).
pub const MAX_LINK_TEST_BYTES: u64 = 256 << 20;

/// Every request of the control API, with the type of its answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
#[serde(tag = "request", rename_all = "snake_case")]
pub enum Request {
    /// → `StatusReport`.
    Status,
    /// → `Done` at once: what a client times for the link's round trip.
    Ping,
    /// → `bytes` zero bytes (`application/octet-stream`, at most `MAX_LINK_TEST_BYTES`): what a client
    /// times for the link's throughput.
    LinkTest { bytes: u64 },
    /// start / stop / restart a service or "all" → `ActionReply`.
    Action { target: String, verb: Verb },
    /// The last `lines` log lines → `LogLines`.
    Logs { name: String, lines: usize },
    /// → `ConfigDocument`.
    GetConfig,
    /// Replace settings.toml with `text` (validated first) → `Done`; 422 + `{diagnostics}` when invalid.
    PutConfig { text: String },
    /// What `mlx-box validate` says of `text` → `Diagnostics`.
    ValidateConfig { text: String },
    /// → `ConfigPreview`; nothing is written.
    PreviewConfig { edit: ConfigEditRequest },
    /// → `ConfigPreview`; 409 when the file changed meanwhile, 422 (with the preview) when invalid.
    EditConfig { edit: ConfigEditRequest },
    /// → `MonitorHistory`.
    MonitorHistory,
    /// → `{[service]: ProxyStats}`.
    ProxyStats,
    /// → `KeyList` (never a secret).
    ListKeys,
    /// → `NewKey`: the only answer that holds the secret.
    AddKey { key: NewKeyRequest },
    /// → `KeyInfo` of the removed key.
    RemoveKey { id: String },
    /// Re-read the keys → `KeyCount`.
    ReloadKeys,
    /// Hash the plaintext keys of the daemon's settings.toml into the key store → `ImportReport`.
    ImportKeys,
    /// → 202 `BenchStarted`; 409 while one runs.
    BenchStart { options: BenchOptions },
    /// → `BenchStarted` of the run being cancelled; 404 when none runs.
    BenchCancel,
    /// → `BenchStarted`; 404 when none runs.
    BenchCurrent,
    /// → `BenchHistory`.
    BenchHistory,
    /// A saved run (an id, a unique prefix, `last`, `last-N`) → `BenchResult`.
    BenchResult { id: String },
    /// → `Comparison` of b against a.
    BenchCompare { a: String, b: String },
    /// → `DoctorReport`.
    Doctor { options: DoctorOptions },
    /// Stop every service, then the daemon → `Done`.
    Shutdown,
    /// Every TCP port the daemon listens on → `ListenerList`.
    Listeners,
    /// The models on this Mac (the hub cache, the settings' local paths), with their users → `ModelList`.
    ListModels,
    /// Acknowledge, snooze or unmute the active alert `id` → the `Alert` as it is now; 404 when not active.
    AlertAction {
        id: String,
        action: crate::AlertAction,
    },
    /// Any other request, answered by the daemon of `[hosts.NAME]` `host` (this daemon forwards it over
    /// its pinned TLS connection with the host's token) → what that request answers, with its status.
    Host { host: String, forward: Box<Request> },
}

// Each request's answer: `mlxbox_api::call::Status {}` is `Request::Status`, answered by a
// `StatusReport` (`Call::Reply`). `LinkTest` (bytes, not JSON) and `Host` (generic: `call::Host<C>`) are
// not in this table.
crate::call::calls! {
    /// → the whole status.
    Status {} => crate::StatusReport;
    /// → at once: what a client times for the link's round trip.
    Ping {} => crate::control::Done;
    /// start / stop / restart / unload a service, or "all".
    Action { target: String, verb: crate::service::Verb } => crate::ActionReply;
    /// The last `lines` log lines of a service.
    Logs { name: String, lines: usize } => crate::control::LogLines;
    GetConfig {} => crate::ConfigDocument;
    /// Replace settings.toml with `text` (validated first).
    PutConfig { text: String } => crate::control::Done;
    /// What `mlx-box validate` says of `text`.
    ValidateConfig { text: String } => crate::control::Diagnostics;
    PreviewConfig { edit: crate::ConfigEditRequest } => crate::ConfigPreview;
    EditConfig { edit: crate::ConfigEditRequest } => crate::ConfigPreview;
    MonitorHistory {} => crate::MonitorHistory;
    /// Each service's proxy counters, by name.
    ProxyStats {} => std::collections::BTreeMap<String, crate::proxy::ProxyStats>;
    ListKeys {} => crate::keys::KeyList;
    /// The only answer that holds a key's secret.
    AddKey { key: crate::keys::NewKeyRequest } => crate::keys::NewKey;
    RemoveKey { id: String } => crate::keys::KeyInfo;
    ReloadKeys {} => crate::control::KeyCount;
    ImportKeys {} => crate::keys::ImportReport;
    BenchStart { options: crate::bench::BenchOptions } => crate::bench::BenchStarted;
    BenchCancel {} => crate::bench::BenchStarted;
    BenchCurrent {} => crate::bench::BenchStarted;
    BenchHistory {} => crate::BenchHistory;
    BenchResult { id: String } => crate::bench::BenchResult;
    BenchCompare { a: String, b: String } => crate::bench::Comparison;
    Doctor { options: crate::bench::DoctorOptions } => crate::bench::DoctorReport;
    Shutdown {} => crate::control::Done;
    /// Every TCP port the daemon listens on, each through its one gate.
    Listeners {} => crate::control::ListenerList;
    /// The models on this Mac: sizes, revisions, completeness, the services that use each.
    ListModels {} => crate::models::ModelList;
    /// Acknowledge, snooze or unmute an active alert.
    AlertAction { id: String, action: crate::AlertAction } => crate::Alert;
}

/// HTTP methods the control API uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Put,
    Delete,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
        }
    }

    pub fn parse(s: &str) -> Option<Method> {
        [Method::Get, Method::Post, Method::Put, Method::Delete]
            .into_iter()
            .find(|m| m.as_str() == s)
    }
}

/// A request's body on the wire.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    None,
    /// Sent as is (settings.toml's text).
    Text(String),
    Json(serde_json::Value),
}

/// A request as HTTP: method, path with its query (percent-encoded), body.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub method: Method,
    pub path: String,
    pub body: Body,
}

/// Why a request could not be read; the daemon answers it with `status()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// No such endpoint (404).
    NotFound(String),
    /// The endpoint exists, not with this method (405).
    Method(String),
    /// A body or query that does not say what the endpoint needs (400).
    Bad(String),
}

impl DecodeError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            DecodeError::NotFound(_) => ErrorKind::NotFound,
            DecodeError::Method(_) => ErrorKind::MethodNotAllowed,
            DecodeError::Bad(_) => ErrorKind::BadRequest,
        }
    }

    pub fn status(&self) -> u16 {
        self.kind().status()
    }
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::NotFound(m) | DecodeError::Method(m) | DecodeError::Bad(m) => {
                f.write_str(m)
            }
        }
    }
}

fn json(v: &impl Serialize) -> Body {
    Body::Json(serde_json::to_value(v).unwrap_or(serde_json::Value::Null))
}

impl Request {
    /// Whether answering it changes anything (a service, a file, the key store, a running benchmark, the
    /// daemon): what a `read` token of the remote control API may not ask.
    pub fn changes(&self) -> bool {
        match self {
            Request::Status
            | Request::Ping
            | Request::LinkTest { .. }
            | Request::Logs { .. }
            | Request::GetConfig
            | Request::ValidateConfig { .. }
            | Request::PreviewConfig { .. }
            | Request::MonitorHistory
            | Request::ProxyStats
            | Request::ListKeys
            | Request::BenchCurrent
            | Request::BenchHistory
            | Request::BenchResult { .. }
            | Request::BenchCompare { .. }
            | Request::Listeners
            | Request::ListModels => false,
            Request::Action { .. }
            | Request::PutConfig { .. }
            | Request::EditConfig { .. }
            | Request::AddKey { .. }
            | Request::RemoveKey { .. }
            | Request::ReloadKeys
            | Request::ImportKeys
            | Request::BenchStart { .. }
            | Request::BenchCancel
            // The doctor sends requests to the servers and may start a benchmark.
            | Request::Doctor { .. }
            // An acknowledged alert is quiet for every client.
            | Request::AlertAction { .. }
            | Request::Shutdown => true,
            Request::Host { forward, .. } => forward.changes(),
        }
    }

    /// The HTTP form of this request.
    pub fn route(&self) -> Route {
        use Method::*;
        let (method, path, body) = match self {
            Request::Status => (Get, "/v1/status".into(), Body::None),
            Request::Ping => (Get, "/v1/ping".into(), Body::None),
            Request::LinkTest { bytes } => {
                (Get, format!("/v1/link-test?bytes={bytes}"), Body::None)
            }
            Request::Action { target, verb } => (
                Post,
                format!("/v1/services/{}/{verb}", encode(target)),
                Body::None,
            ),
            Request::Logs { name, lines } => (
                Get,
                format!("/v1/services/{}/logs?lines={lines}", encode(name)),
                Body::None,
            ),
            Request::GetConfig => (Get, "/v1/config".into(), Body::None),
            Request::PutConfig { text } => (Put, "/v1/config".into(), Body::Text(text.clone())),
            Request::ValidateConfig { text } => {
                (Post, "/v1/config/validate".into(), Body::Text(text.clone()))
            }
            Request::PreviewConfig { edit } => (Post, "/v1/config/preview".into(), json(edit)),
            Request::EditConfig { edit } => (Post, "/v1/config/edit".into(), json(edit)),
            Request::MonitorHistory => (Get, "/v1/monitor/history".into(), Body::None),
            Request::ProxyStats => (Get, "/v1/proxy/stats".into(), Body::None),
            Request::ListKeys => (Get, "/v1/keys".into(), Body::None),
            Request::AddKey { key } => (Post, "/v1/keys".into(), json(key)),
            Request::RemoveKey { id } => (Delete, format!("/v1/keys/{}", encode(id)), Body::None),
            Request::ReloadKeys => (Post, "/v1/keys/reload".into(), Body::None),
            Request::ImportKeys => (Post, "/v1/keys/import".into(), Body::None),
            Request::BenchStart { options } => (Post, "/v1/bench".into(), json(options)),
            Request::BenchCancel => (Post, "/v1/bench/cancel".into(), Body::None),
            Request::BenchCurrent => (Get, "/v1/bench/current".into(), Body::None),
            Request::BenchHistory => (Get, "/v1/bench/history".into(), Body::None),
            Request::BenchResult { id } => (Get, format!("/v1/bench/{}", encode(id)), Body::None),
            Request::BenchCompare { a, b } => (
                Get,
                format!("/v1/bench/compare?a={}&b={}", encode(a), encode(b)),
                Body::None,
            ),
            Request::Doctor { options } => (Post, "/v1/doctor".into(), json(options)),
            Request::Shutdown => (Post, "/v1/shutdown".into(), Body::None),
            Request::Listeners => (Get, "/v1/listeners".into(), Body::None),
            // Not `/v1/models`: that is the OpenAI route of the frontends.
            Request::ListModels => (Get, "/v1/models/local".into(), Body::None),
            Request::AlertAction { id, action } => {
                (Post, format!("/v1/alerts/{}", encode(id)), json(action))
            }
            Request::Host { host, forward } => (
                Post,
                format!("/v1/hosts/{}/forward", encode(host)),
                Body::Json(serde_json::to_value(&**forward).unwrap_or_default()),
            ),
        };
        Route { method, path, body }
    }

    /// Reads a request back from its HTTP form: `path` without its query, `query` without the `?`, the
    /// body's bytes. Every part is checked; nothing here panics on what a client sends.
    pub fn decode(
        method: Method,
        path: &str,
        query: Option<&str>,
        body: &[u8],
    ) -> Result<Request, DecodeError> {
        use Method::*;
        let segs: Vec<String> = match path.strip_prefix("/v1/") {
            Some(rest) => rest
                .split('/')
                .map(decode_component)
                .collect::<Result<_, _>>()?,
            None => return Err(not_found(path)),
        };
        let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
        let text = || {
            String::from_utf8(body.to_vec())
                .map_err(|_| DecodeError::Bad("the body is not UTF-8 text".into()))
        };
        let param = |name: &str| -> Result<Option<String>, DecodeError> {
            for pair in query.unwrap_or("").split('&') {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                if k == name {
                    return decode_component(v).map(Some);
                }
            }
            Ok(None)
        };
        let wrong = || DecodeError::Method(format!("{} is not served for {path}", method.as_str()));
        let r = match (segs.as_slice(), method) {
            (["status"], Get) => Request::Status,
            (["ping"], Get) => Request::Ping,
            (["link-test"], Get) => {
                let bytes = param("bytes")?
                    .and_then(|b| b.parse::<u64>().ok())
                    .ok_or_else(|| DecodeError::Bad("link-test needs ?bytes=N".into()))?;
                if bytes > MAX_LINK_TEST_BYTES {
                    return Err(DecodeError::Bad(format!(
                        "bytes={bytes} is more than a link test sends ({MAX_LINK_TEST_BYTES} at most)"
                    )));
                }
                Request::LinkTest { bytes }
            }
            (["services", target, verb], Post) => match Verb::parse(verb) {
                Some(verb) => Request::Action {
                    target: target.to_string(),
                    verb,
                },
                None => {
                    let verbs: Vec<&str> = Verb::ALL.iter().map(|v| v.as_str()).collect();
                    return Err(DecodeError::NotFound(format!(
                        "unknown action `{verb}`: use {}",
                        verbs.join(", ")
                    )));
                }
            },
            (["services", name, "logs"], Get) => Request::Logs {
                name: name.to_string(),
                lines: match param("lines")? {
                    None => 100,
                    Some(n) => n
                        .parse::<usize>()
                        .map_err(|_| DecodeError::Bad(format!("lines={n}: not a count")))?
                        .min(MAX_LOG_LINES),
                },
            },
            (["config"], Get) => Request::GetConfig,
            (["config"], Put) => Request::PutConfig { text: text()? },
            (["config", "validate"], Post) => Request::ValidateConfig { text: text()? },
            (["config", "preview"], Post) => Request::PreviewConfig {
                edit: from_json(body)?,
            },
            (["config", "edit"], Post) => Request::EditConfig {
                edit: from_json(body)?,
            },
            (["monitor", "history"], Get) => Request::MonitorHistory,
            (["proxy", "stats"], Get) => Request::ProxyStats,
            (["keys"], Get) => Request::ListKeys,
            (["keys"], Post) => Request::AddKey {
                key: from_json(body)?,
            },
            (["keys", "reload"], Post) => Request::ReloadKeys,
            (["keys", "import"], Post) => Request::ImportKeys,
            (["keys", id], Delete) => Request::RemoveKey { id: id.to_string() },
            (["bench"], Post) => Request::BenchStart {
                options: from_json(body)?,
            },
            (["bench", "cancel"], Post) => Request::BenchCancel,
            (["bench", "current"], Get) => Request::BenchCurrent,
            (["bench", "history"], Get) => Request::BenchHistory,
            (["bench", "compare"], Get) => match (param("a")?, param("b")?) {
                (Some(a), Some(b)) => Request::BenchCompare { a, b },
                _ => return Err(DecodeError::Bad("compare needs ?a=ID&b=ID".into())),
            },
            (["bench", id], Get) => Request::BenchResult { id: id.to_string() },
            (["doctor"], Post) => Request::Doctor {
                options: from_json(body)?,
            },
            (["shutdown"], Post) => Request::Shutdown,
            (["listeners"], Get) => Request::Listeners,
            (["models", "local"], Get) => Request::ListModels,
            (["alerts", id], Post) => {
                let action: crate::AlertAction = serde_json::from_slice(body).map_err(|e| {
                    DecodeError::Bad(format!(
                        "invalid alert action: {e}; send {{\"action\": \"ack\"}}, {{\"action\": \"snooze\", \"minutes\": 60}} or {{\"action\": \"unmute\"}}"
                    ))
                })?;
                action.check().map_err(DecodeError::Bad)?;
                Request::AlertAction {
                    id: id.to_string(),
                    action,
                }
            }
            (["hosts", host, "forward"], Post) => {
                let forward: Request = from_json(body)?;
                if matches!(forward, Request::Host { .. }) {
                    return Err(DecodeError::Bad(
                        "a forwarded request cannot be forwarded again".into(),
                    ));
                }
                Request::Host {
                    host: host.to_string(),
                    forward: Box::new(forward),
                }
            }
            (
                ["status"]
                | ["services", _, _]
                | ["config"]
                | ["config", "validate" | "preview" | "edit"]
                | ["monitor", "history"]
                | ["proxy", "stats"]
                | ["keys"]
                | ["keys", _]
                | ["bench"]
                | ["bench", _]
                | ["doctor"]
                | ["shutdown"]
                | ["listeners"]
                | ["models", "local"]
                | ["alerts", _]
                | ["hosts", _, "forward"],
                _,
            ) => return Err(wrong()),
            _ => return Err(not_found(path)),
        };
        Ok(r)
    }
}

fn not_found(path: &str) -> DecodeError {
    let shown: String = path.chars().take(200).collect();
    DecodeError::NotFound(format!(
        "no endpoint {shown} (see the table in docs/ARCHITECTURE.md)"
    ))
}

fn from_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, DecodeError> {
    // An empty body means every default (as `curl -X POST` sends for `/v1/bench`).
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| DecodeError::Bad(format!("invalid JSON body: {e}")))
}

/// Percent-encodes everything but RFC 3986's unreserved characters (names and ids are typed by users).
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The inverse of [`encode`] (and of what browsers and curl send); `+` stays a `+`.
pub fn decode_component(s: &str) -> Result<String, DecodeError> {
    let bad = || {
        DecodeError::Bad(format!(
            "bad percent-encoding in `{}`",
            s.chars().take(100).collect::<String>()
        ))
    };
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3).ok_or_else(bad)?;
            let hex = std::str::from_utf8(hex).map_err(|_| bad())?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad())
}

/// `GET /v1/services/{name}/logs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct LogLines {
    pub lines: Vec<String>,
}

/// `POST /v1/config/validate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct Diagnostics {
    pub diagnostics: Vec<crate::config::Diagnostic>,
}

/// `POST /v1/keys/reload`: how many keys are served now.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct KeyCount {
    pub keys: u32,
}

/// `GET /v1/listeners`: every TCP port the daemon listens on now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct ListenerList {
    pub listeners: Vec<crate::Listening>,
}

/// Why the daemon refused a request, as every endpoint of the control API answers it: its kind (whose
/// HTTP status is defined once, [`ErrorKind::status`]), one sentence that says what happened, and what to
/// do when that is not in the sentence. On the wire: `{"error": "...", "kind": "not_found", "hint": ...}`
/// (`error` as before, so older clients read it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct ApiError {
    #[serde(default)]
    pub kind: ErrorKind,
    #[serde(rename = "error")]
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> ApiError {
        ApiError {
            kind,
            message: message.into(),
            hint: None,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> ApiError {
        self.hint = Some(hint.into());
        self
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.hint {
            Some(h) => write!(f, "{}; {h}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for ApiError {}

/// What kind of refusal an [`ApiError`] is; each has one HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, TS)]
#[ts(export)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The request does not say what the endpoint needs.
    #[default]
    BadRequest,
    /// A credential is missing or wrong.
    Unauthorized,
    /// The caller may not do this (a `read` token asking for a change).
    Forbidden,
    /// No such endpoint, service, key or run.
    NotFound,
    MethodNotAllowed,
    /// The state does not allow it now (a benchmark runs, the file changed meanwhile, over budget).
    Conflict,
    TooLarge,
    /// Settings that do not validate (the answer carries the diagnostics).
    Invalid,
    TooManyRequests,
    Internal,
    /// Another host did not answer, or answered nonsense.
    BadGateway,
    /// Not now (the key store cannot be read, too many forwards in flight).
    Unavailable,
}

impl ErrorKind {
    /// The HTTP status of this kind: the one place it is defined.
    pub fn status(self) -> u16 {
        match self {
            ErrorKind::BadRequest => 400,
            ErrorKind::Unauthorized => 401,
            ErrorKind::Forbidden => 403,
            ErrorKind::NotFound => 404,
            ErrorKind::MethodNotAllowed => 405,
            ErrorKind::Conflict => 409,
            ErrorKind::TooLarge => 413,
            ErrorKind::Invalid => 422,
            ErrorKind::TooManyRequests => 429,
            ErrorKind::Internal => 500,
            ErrorKind::BadGateway => 502,
            ErrorKind::Unavailable => 503,
        }
    }

    /// The kind of an HTTP status (what a client reads from an answer of an older daemon).
    pub fn of_status(status: u16) -> ErrorKind {
        const ALL: [ErrorKind; 12] = [
            ErrorKind::BadRequest,
            ErrorKind::Unauthorized,
            ErrorKind::Forbidden,
            ErrorKind::NotFound,
            ErrorKind::MethodNotAllowed,
            ErrorKind::Conflict,
            ErrorKind::TooLarge,
            ErrorKind::Invalid,
            ErrorKind::TooManyRequests,
            ErrorKind::Internal,
            ErrorKind::BadGateway,
            ErrorKind::Unavailable,
        ];
        ALL.into_iter()
            .find(|k| k.status() == status)
            .unwrap_or(if status >= 500 {
                ErrorKind::Internal
            } else {
                ErrorKind::BadRequest
            })
    }
}

impl From<DecodeError> for ApiError {
    fn from(e: DecodeError) -> ApiError {
        ApiError::new(e.kind(), e.to_string())
    }
}

/// The answer of a request that returns nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct Done {
    pub ok: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_request() -> Vec<Request> {
        let edit = ConfigEditRequest {
            edits: vec![crate::config::ConfigEdit {
                path: vec!["services".into(), "chat".into(), "port".into()],
                value: Some(8080.into()),
            }],
            base_hash: Some("abc".into()),
        };
        vec![
            Request::Status,
            Request::Ping,
            Request::LinkTest { bytes: 1 << 20 },
            Request::Host {
                host: "studio 2".into(),
                forward: Box::new(Request::Action {
                    target: "chat".into(),
                    verb: Verb::Stop,
                }),
            },
            Request::Action {
                target: "all".into(),
                verb: Verb::Restart,
            },
            Request::Action {
                target: "chat 2/é".into(),
                verb: Verb::Stop,
            },
            Request::Logs {
                name: "chat".into(),
                lines: 7,
            },
            Request::GetConfig,
            Request::PutConfig {
                text: "[server]\n".into(),
            },
            Request::ValidateConfig {
                text: "x = 1\n".into(),
            },
            Request::PreviewConfig { edit: edit.clone() },
            Request::EditConfig { edit },
            Request::MonitorHistory,
            Request::ProxyStats,
            Request::ListKeys,
            Request::AddKey {
                key: NewKeyRequest {
                    name: Some("laptop".into()),
                    services: vec!["chat".into()],
                },
            },
            Request::RemoveKey { id: "k1".into() },
            Request::ReloadKeys,
            Request::ImportKeys,
            Request::BenchStart {
                options: BenchOptions::default(),
            },
            Request::BenchCancel,
            Request::BenchCurrent,
            Request::BenchHistory,
            Request::BenchResult {
                id: "last-1".into(),
            },
            Request::BenchCompare {
                a: "last&x=1".into(),
                b: "20261126".into(),
            },
            Request::Doctor {
                options: DoctorOptions::default(),
            },
            Request::Shutdown,
            Request::Listeners,
            Request::ListModels,
            Request::AlertAction {
                id: "service-failed:chat/1".into(),
                action: crate::AlertAction::Ack,
            },
            Request::AlertAction {
                id: "swap".into(),
                action: crate::AlertAction::Snooze { minutes: 60 },
            },
            Request::AlertAction {
                id: "swap".into(),
                action: crate::AlertAction::Unmute,
            },
        ]
    }

    fn roundtrip(r: &Request) -> Result<Request, DecodeError> {
        let route = r.route();
        let (path, query) = match route.path.split_once('?') {
            Some((p, q)) => (p.to_string(), Some(q.to_string())),
            None => (route.path.clone(), None),
        };
        let body = match route.body {
            Body::None => vec![],
            Body::Text(t) => t.into_bytes(),
            Body::Json(v) => serde_json::to_vec(&v).unwrap(),
        };
        Request::decode(route.method, &path, query.as_deref(), &body)
    }

    #[test]
    fn every_request_decodes_to_itself() {
        for r in every_request() {
            assert_eq!(roundtrip(&r).as_ref(), Ok(&r), "{:?}", r.route());
        }
    }

    #[test]
    fn hostile_requests_are_errors_not_panics() {
        use Method::*;
        type Case<'a> = (Method, &'a str, Option<&'a str>, &'a [u8], u16);
        let cases: &[Case] = &[
            (Get, "/v2/status", None, b"", 404),
            (Get, "/v1/nothing", None, b"", 404),
            (Post, "/v1/status", None, b"", 405),
            (Post, "/v1/services/chat/explode", None, b"", 404),
            (Get, "/v1/services/chat/logs", Some("lines=-1"), b"", 400),
            (Get, "/v1/services/%ZZ/logs", None, b"", 400),
            (Get, "/v1/services/%FF/logs", None, b"", 400),
            (Get, "/v1/services/chat/logs", Some("lines=%"), b"", 400),
            (Post, "/v1/config/edit", None, b"{not json", 400),
            (Put, "/v1/config", None, &[0xff, 0xfe], 400),
            (Get, "/v1/bench/compare", Some("a=1"), b"", 400),
            (Delete, "/v1/keys", None, b"", 405),
            (Get, "/v1/hosts/a/forward", None, b"", 405),
            (Get, "/v1/link-test", Some("bytes=999999999999"), b"", 400),
            (Get, "/v1/link-test", None, b"", 400),
            (Get, "/v1/alerts/swap", None, b"", 405),
            (Delete, "/v1/models/local", None, b"", 405),
            (Get, "/v1/models", None, b"", 404),
            (Post, "/v1/alerts/swap", None, b"", 400),
            (
                Post,
                "/v1/alerts/swap",
                None,
                br#"{"action":"explode"}"#,
                400,
            ),
            (
                Post,
                "/v1/alerts/swap",
                None,
                br#"{"action":"snooze","minutes":0}"#,
                400,
            ),
            (
                Post,
                "/v1/alerts/swap",
                None,
                br#"{"action":"snooze","minutes":99999999}"#,
                400,
            ),
            (
                Post,
                "/v1/alerts/swap",
                None,
                br#"{"action":"snooze","minutes":-5}"#,
                400,
            ),
            (
                Post,
                "/v1/hosts/a/forward",
                None,
                b"{\"request\":\"explode\"}",
                400,
            ),
            (
                Post,
                "/v1/hosts/a/forward",
                None,
                br#"{"request":"host","host":"b","forward":{"request":"status"}}"#,
                400,
            ),
        ];
        for (m, p, q, b, status) in cases {
            let e = Request::decode(*m, p, *q, b).unwrap_err();
            assert_eq!(e.status(), *status, "{m:?} {p} {q:?}: {e}");
        }
        // Bounded: a huge line count is cut to the cap, not allocated.
        let r = Request::decode(Get, "/v1/services/a/logs", Some("lines=99999999999"), b"");
        assert_eq!(
            r,
            Ok(Request::Logs {
                name: "a".into(),
                lines: MAX_LOG_LINES
            })
        );
        // An empty body is every default.
        assert!(matches!(
            Request::decode(Post, "/v1/bench", None, b""),
            Ok(Request::BenchStart { .. })
        ));
    }
}
