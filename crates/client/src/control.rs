//! Client of the control API: over this machine's Unix socket, or over TLS to another host's daemon (its
//! certificate pinned, an access token sent). Used by the CLI and the menu-bar app.

use futures_util::StreamExt;
use mlxbox_api::bench::{BenchOptions, BenchResult, BenchStarted, Comparison};
use mlxbox_api::bench::{DoctorOptions, DoctorReport};
use mlxbox_api::config::Diagnostic;
use mlxbox_api::control::{encode, Body, Diagnostics, Done, KeyCount, LogLines, Method, Request};
use mlxbox_api::service::Verb;
use mlxbox_api::{
    ActionReply, BenchHistory, ConfigDocument, ConfigEditRequest, ConfigPreview, ErrorReply, Event,
    MonitorHistory, StatusReport,
};
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no mlx-box daemon is running on {dir} (no socket at {socket}); start one with `mlx-box up` (or `mlx-box up --demo`)")]
    NotRunning { dir: PathBuf, socket: PathBuf },
    #[error("host {host} ({address}) does not answer: {detail}; is its daemon running with [control] listen = \"{address}\", and is the address reachable from here?")]
    Unreachable {
        host: String,
        address: String,
        detail: String,
    },
    #[error("host {host} ({address}) presented certificate {got}, but {pinned} is pinned for it: refused. If that host's certificate was remade on purpose, check it with `mlx-box control info` there, then `mlx-box hosts add {host} {address} --fingerprint NEW`")]
    FingerprintMismatch {
        host: String,
        address: String,
        pinned: String,
        got: String,
    },
    #[error("the daemon did not answer: {0}")]
    Http(#[from] reqwest::Error),
    #[error("{0}")]
    Api(String),
    #[error("settings are invalid")]
    Invalid(Vec<Diagnostic>),
    /// A config edit was refused: 409 (the file changed meanwhile) or 422 (the result does not validate).
    #[error("{message}")]
    EditRefused {
        conflict: bool,
        message: String,
        preview: Option<Box<ConfigPreview>>,
    },
}

pub struct Client {
    http: reqwest::Client,
    /// `http://mlx-box` on the socket, `https://ADDRESS` to another host.
    base: String,
    to: Target,
}

enum Target {
    Local {
        dir: PathBuf,
        socket: PathBuf,
    },
    Remote {
        host: String,
        address: String,
        pin: std::sync::Arc<crate::pin::Pinned>,
    },
}

impl Client {
    pub fn new(state_dir: &Path) -> Self {
        let socket = mlxbox_api::paths::socket_path(state_dir);
        crate::pin::install_crypto_provider();
        let http = reqwest::Client::builder()
            .unix_socket(socket.clone())
            .build()
            .expect("http client");
        Client {
            http,
            base: "http://mlx-box".into(),
            to: Target::Local {
                dir: state_dir.to_path_buf(),
                socket,
            },
        }
    }

    /// Another host's daemon at `address` (HOST:PORT, its `[control] listen`), trusted only when its
    /// certificate's fingerprint is `fingerprint`, sent `token`.
    pub fn remote(
        host: &str,
        address: &str,
        fingerprint: &str,
        token: &str,
    ) -> Result<Self, ClientError> {
        let pin = crate::pin::Pinned::new(Some(fingerprint.to_string()));
        let tls = pin
            .client_config()
            .map_err(|e| ClientError::Api(format!("TLS setup: {e}")))?;
        let mut auth =
            reqwest::header::HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                ClientError::Api(format!(
                    "the token for host {host} is not a valid header value"
                ))
            })?;
        auth.set_sensitive(true);
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(reqwest::header::AUTHORIZATION, auth);
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .default_headers(headers)
            .connect_timeout(std::time::Duration::from_secs(5))
            .build()
            .map_err(ClientError::Http)?;
        Ok(Client {
            http,
            base: format!("https://{address}"),
            to: Target::Remote {
                host: host.to_string(),
                address: address.to_string(),
                pin,
            },
        })
    }

    /// The fingerprint a host's daemon presents at `address`, read without trusting it (a first contact:
    /// shown to the operator to compare with that host's `mlx-box control info`).
    pub async fn fingerprint_of(address: &str) -> Result<String, ClientError> {
        let pin = crate::pin::Pinned::new(None);
        let tls = pin
            .client_config()
            .map_err(|e| ClientError::Api(format!("TLS setup: {e}")))?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .connect_timeout(std::time::Duration::from_secs(5))
            .build()
            .map_err(ClientError::Http)?;
        let r = http
            .get(format!("https://{address}/v1/status"))
            .send()
            .await;
        match (pin.seen(), r) {
            (Some(f), _) => Ok(f),
            (None, Err(e)) => Err(ClientError::Unreachable {
                host: address.to_string(),
                address: address.to_string(),
                detail: error_chain(&e),
            }),
            (None, Ok(_)) => Err(ClientError::Api(format!("{address} answered without TLS"))),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn map_err(&self, e: reqwest::Error) -> ClientError {
        match &self.to {
            Target::Local { dir, socket } if e.is_connect() || !socket.exists() => {
                ClientError::NotRunning {
                    dir: dir.clone(),
                    socket: socket.clone(),
                }
            }
            Target::Remote { host, address, pin } if e.is_connect() || e.is_timeout() => {
                match (pin.seen(), &pin_want(pin)) {
                    (Some(got), Some(pinned)) if got != *pinned => {
                        ClientError::FingerprintMismatch {
                            host: host.clone(),
                            address: address.clone(),
                            pinned: pinned.clone(),
                            got,
                        }
                    }
                    _ => ClientError::Unreachable {
                        host: host.clone(),
                        address: address.clone(),
                        detail: error_chain(&e),
                    },
                }
            }
            _ => ClientError::Http(e),
        }
    }

    async fn check(resp: reqwest::Response) -> Result<reqwest::Response, ClientError> {
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
            if let Some(d) = v.get("diagnostics") {
                if let Ok(d) = serde_json::from_value(d.clone()) {
                    return Err(ClientError::Invalid(d));
                }
            }
        }
        let msg = serde_json::from_str::<ErrorReply>(&text)
            .map(|e| e.error)
            .unwrap_or(format!("HTTP {status}: {text}"));
        Err(ClientError::Api(msg))
    }

    /// Sends a request to the daemon and turns a non-2xx answer into a typed error.
    async fn send(&self, rb: reqwest::RequestBuilder) -> Result<reqwest::Response, ClientError> {
        let r = rb.send().await.map_err(|e| self.map_err(e))?;
        Self::check(r).await
    }

    /// Sends any request of the control API and reads its answer as `T` (the type its variant names).
    pub async fn call<T: DeserializeOwned>(&self, req: &Request) -> Result<T, ClientError> {
        let r = self.send(self.request(req)).await?;
        Ok(r.json().await?)
    }

    /// Sends any request and returns the daemon's answer as it comes (an error answer too), its body not
    /// yet read: what a daemon forwarding a request to another host streams back.
    pub async fn call_raw(&self, req: &Request) -> Result<reqwest::Response, ClientError> {
        self.request(req).send().await.map_err(|e| self.map_err(e))
    }

    fn request(&self, req: &Request) -> reqwest::RequestBuilder {
        let route = req.route();
        let url = self.url(&route.path);
        let rb = match route.method {
            Method::Get => self.http.get(url),
            Method::Post => self.http.post(url),
            Method::Put => self.http.put(url),
            Method::Delete => self.http.delete(url),
        };
        match route.body {
            Body::None => rb,
            Body::Text(t) => rb.body(t),
            Body::Json(v) => rb.json(&v),
        }
    }

    pub async fn status(&self) -> Result<StatusReport, ClientError> {
        self.call(&Request::Status).await
    }

    /// Downloads `bytes` from the daemon and returns the link's throughput in MB/s (10^6 bytes), timed
    /// from the request to the last byte.
    pub async fn link_throughput(&self, bytes: u64) -> Result<f64, ClientError> {
        let t0 = std::time::Instant::now();
        let r = self
            .send(self.request(&Request::LinkTest { bytes }))
            .await?;
        let mut got = 0u64;
        let mut stream = r.bytes_stream();
        while let Some(chunk) = stream.next().await {
            got += chunk?.len() as u64;
        }
        if got != bytes {
            return Err(ClientError::Api(format!(
                "the link test sent {got} bytes of {bytes}"
            )));
        }
        Ok(bytes as f64 / 1e6 / t0.elapsed().as_secs_f64().max(1e-9))
    }

    /// A round trip and nothing else (the link check times it).
    pub async fn ping(&self) -> Result<(), ClientError> {
        self.call::<Done>(&Request::Ping).await.map(|_| ())
    }

    pub async fn action(&self, target: &str, verb: Verb) -> Result<ActionReply, ClientError> {
        let target = target.to_string();
        self.call(&Request::Action { target, verb }).await
    }

    pub async fn logs(&self, name: &str, lines: usize) -> Result<Vec<String>, ClientError> {
        let name = name.to_string();
        let r: LogLines = self.call(&Request::Logs { name, lines }).await?;
        Ok(r.lines)
    }

    /// Calls `on_line` for each new log line until the daemon goes away.
    pub async fn follow_logs(
        &self,
        name: &str,
        mut on_line: impl FnMut(&str),
    ) -> Result<(), ClientError> {
        let path = format!("/v1/services/{}/logs/follow", encode(name));
        let r = self.send(self.http.get(self.url(&path))).await?;
        sse_data(r, |d| {
            on_line(d);
            true
        })
        .await
    }

    /// Calls `on_event` for each event; returns when `on_event` returns false or the stream ends. The first
    /// event is a `Snapshot` of the whole status, and so is the one after the client fell behind.
    pub async fn events(&self, mut on_event: impl FnMut(Event) -> bool) -> Result<(), ClientError> {
        let r = self.send(self.http.get(self.url("/v1/events"))).await?;
        sse_data(r, |d| match serde_json::from_str::<Event>(d) {
            Ok(ev) => on_event(ev),
            Err(_) => true,
        })
        .await
    }

    pub async fn put_config(&self, text: &str) -> Result<(), ClientError> {
        let text = text.to_string();
        let _: Done = self.call(&Request::PutConfig { text }).await?;
        Ok(())
    }

    pub async fn validate_config(&self, text: &str) -> Result<Vec<Diagnostic>, ClientError> {
        let text = text.to_string();
        let r: Diagnostics = self.call(&Request::ValidateConfig { text }).await?;
        Ok(r.diagnostics)
    }

    pub async fn history(&self) -> Result<MonitorHistory, ClientError> {
        self.call(&Request::MonitorHistory).await
    }

    pub async fn config(&self) -> Result<ConfigDocument, ClientError> {
        self.call(&Request::GetConfig).await
    }

    /// Asks the daemon to read the keys again; returns how many it serves.
    pub async fn reload_keys(&self) -> Result<u64, ClientError> {
        let r: KeyCount = self.call(&Request::ReloadKeys).await?;
        Ok(u64::from(r.keys))
    }

    pub async fn proxy_stats(
        &self,
    ) -> Result<std::collections::BTreeMap<String, mlxbox_api::proxy::ProxyStats>, ClientError>
    {
        self.call(&Request::ProxyStats).await
    }

    /// What the edits would make of settings.toml; nothing is written.
    pub async fn preview_config(
        &self,
        req: &ConfigEditRequest,
    ) -> Result<ConfigPreview, ClientError> {
        self.config_edit(&Request::PreviewConfig { edit: req.clone() })
            .await
    }

    /// Applies the edits (the daemon writes with toml_edit, keeps a .bak, and applies through its watcher).
    pub async fn edit_config(&self, req: &ConfigEditRequest) -> Result<ConfigPreview, ClientError> {
        self.config_edit(&Request::EditConfig { edit: req.clone() })
            .await
    }

    /// A preview or an edit of settings.toml (or one forwarded to another host, `Request::Host`): 409
    /// and 422 come back as `EditRefused`, with the preview when there is one.
    pub async fn config_edit(&self, req: &Request) -> Result<ConfigPreview, ClientError> {
        let r = self
            .request(req)
            .send()
            .await
            .map_err(|e| self.map_err(e))?;
        let status = r.status();
        if status.is_success() {
            return Ok(r.json().await?);
        }
        let text = r.text().await.unwrap_or_default();
        let preview = serde_json::from_str::<ConfigPreview>(&text)
            .ok()
            .map(Box::new);
        let message = match (&preview, serde_json::from_str::<ErrorReply>(&text)) {
            (Some(_), _) => "the edited settings do not validate; nothing was written".to_string(),
            (None, Ok(e)) => e.error,
            (None, Err(_)) => format!("HTTP {status}: {text}"),
        };
        Err(ClientError::EditRefused {
            conflict: status == reqwest::StatusCode::CONFLICT,
            message,
            preview,
        })
    }

    /// The API keys the daemon knows (never their secrets).
    pub async fn keys(&self) -> Result<mlxbox_api::keys::KeyList, ClientError> {
        self.call(&Request::ListKeys).await
    }

    /// Makes a key in the keyring; the answer is the only time its secret is shown.
    pub async fn add_key(
        &self,
        req: &mlxbox_api::keys::NewKeyRequest,
    ) -> Result<mlxbox_api::keys::NewKey, ClientError> {
        self.call(&Request::AddKey { key: req.clone() }).await
    }

    /// Moves the plaintext keys of the daemon's settings.toml into the keyring.
    pub async fn import_keys(&self) -> Result<mlxbox_api::keys::ImportReport, ClientError> {
        self.call(&Request::ImportKeys).await
    }

    pub async fn remove_key(&self, id: &str) -> Result<mlxbox_api::keys::KeyInfo, ClientError> {
        self.call(&Request::RemoveKey { id: id.to_string() }).await
    }

    /// Starts a benchmark in the daemon; follow it with [`events`](Self::events).
    pub async fn bench_start(&self, opts: &BenchOptions) -> Result<BenchStarted, ClientError> {
        let options = opts.clone();
        self.call(&Request::BenchStart { options }).await
    }

    /// The run in progress, if any (a window opened mid-run follows it).
    pub async fn bench_current(&self) -> Result<Option<BenchStarted>, ClientError> {
        let r = self
            .request(&Request::BenchCurrent)
            .send()
            .await
            .map_err(|e| self.map_err(e))?;
        if r.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        Ok(Some(Self::check(r).await?.json().await?))
    }

    pub async fn bench_cancel(&self) -> Result<BenchStarted, ClientError> {
        self.call(&Request::BenchCancel).await
    }

    /// A saved run: an id, a unique prefix, `last` or `last-N`.
    pub async fn bench_result(&self, id: &str) -> Result<BenchResult, ClientError> {
        self.call(&Request::BenchResult { id: id.to_string() })
            .await
    }

    pub async fn bench_history(&self) -> Result<BenchHistory, ClientError> {
        self.call(&Request::BenchHistory).await
    }

    pub async fn bench_compare(&self, a: &str, b: &str) -> Result<Comparison, ClientError> {
        let (a, b) = (a.to_string(), b.to_string());
        self.call(&Request::BenchCompare { a, b }).await
    }

    pub async fn doctor(&self, opts: &DoctorOptions) -> Result<DoctorReport, ClientError> {
        let options = opts.clone();
        self.call(&Request::Doctor { options }).await
    }

    pub async fn shutdown(&self) -> Result<(), ClientError> {
        let _: Done = self.call(&Request::Shutdown).await?;
        Ok(())
    }
}

fn pin_want(pin: &crate::pin::Pinned) -> Option<String> {
    pin.want().map(str::to_string)
}

/// An error and its causes on one line (reqwest's own message stops at "error sending request").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cur = c.source();
    }
    out
}

/// Reads a server-sent-events body, calling `on_data` with each event's `data:` payload until it returns
/// false or the stream ends.
async fn sse_data(
    resp: reqwest::Response,
    mut on_data: impl FnMut(&str) -> bool,
) -> Result<(), ClientError> {
    let mut stream = resp.bytes_stream();
    let mut buf = String::new();
    let mut data: Vec<String> = Vec::new();
    while let Some(chunk) = stream.next().await {
        buf.push_str(&String::from_utf8_lossy(&chunk?));
        while let Some(i) = buf.find('\n') {
            let line = buf[..i].trim_end_matches('\r').to_string();
            buf.drain(..=i);
            if line.is_empty() {
                if !data.is_empty() {
                    if !on_data(&data.join("\n")) {
                        return Ok(());
                    }
                    data.clear();
                }
            } else if let Some(d) = line.strip_prefix("data:") {
                data.push(d.strip_prefix(' ').unwrap_or(d).to_string());
            }
        }
    }
    Ok(())
}
