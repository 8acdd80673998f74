//! Client of the control API: over this machine's Unix socket, or over TLS to another host's daemon (its
//! certificate pinned, an access token sent). Used by the CLI and the menu-bar app.

use futures_util::StreamExt;
use mlxbox_api::bench::BenchStarted;
use mlxbox_api::call::{self, Call};
use mlxbox_api::config::Diagnostic;
use mlxbox_api::control::{encode, ApiError, Body, ErrorKind, Method, Request};
use mlxbox_api::{ConfigPreview, Event};
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
    /// Something on this side went wrong (TLS set-up, a short link test).
    #[error("{0}")]
    Api(String),
    /// The daemon refused the request, and said why.
    #[error("{0}")]
    Refused(ApiError),
    #[error("settings are invalid")]
    Invalid(Vec<Diagnostic>),
    /// A preview or an edit of settings.toml whose result does not validate (422): nothing was written;
    /// the preview shows the edited text and its diagnostics.
    #[error("the edited settings do not validate; nothing was written")]
    InvalidEdit(Box<ConfigPreview>),
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
        if status == reqwest::StatusCode::UNPROCESSABLE_ENTITY {
            if let Ok(p) = serde_json::from_str::<ConfigPreview>(&text) {
                return Err(ClientError::InvalidEdit(Box::new(p)));
            }
            if let Ok(d) = serde_json::from_str::<mlxbox_api::control::Diagnostics>(&text) {
                return Err(ClientError::Invalid(d.diagnostics));
            }
        }
        Err(ClientError::Refused(refusal(status.as_u16(), &text)))
    }

    /// Sends a request to the daemon and turns a non-2xx answer into a typed error.
    async fn send(&self, rb: reqwest::RequestBuilder) -> Result<reqwest::Response, ClientError> {
        let r = rb.send().await.map_err(|e| self.map_err(e))?;
        Self::check(r).await
    }

    /// Sends a request of the control API and reads its answer, of the type the request names: the one
    /// way to call a daemon, this Mac's or another's (`call::Host` forwards through this one).
    pub async fn call<C: Call>(&self, c: C) -> Result<C::Reply, ClientError> {
        let r = self.send(self.request(&c.into())).await?;
        Ok(r.json().await?)
    }

    /// Any request as JSON, its answer as JSON (the app's one Tauri command, which the windows type with
    /// the generated `Replies` map).
    pub async fn call_json(&self, req: &Request) -> Result<serde_json::Value, ClientError> {
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

    /// The run in progress, if any (a window opened mid-run follows it): `BenchCurrent`, whose 404 is
    /// "none".
    pub async fn bench_current(&self) -> Result<Option<BenchStarted>, ClientError> {
        match self.call(call::BenchCurrent {}).await {
            Ok(b) => Ok(Some(b)),
            Err(ClientError::Refused(e)) if e.kind == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// A daemon's refusal as it answered it (`ApiError`), or, from a daemon that does not send one, made from
/// the status and the text.
fn refusal(status: u16, text: &str) -> ApiError {
    serde_json::from_str::<ApiError>(text).unwrap_or_else(|_| {
        ApiError::new(
            ErrorKind::of_status(status),
            format!(
                "HTTP {status}: {}",
                text.chars().take(500).collect::<String>()
            ),
        )
    })
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
