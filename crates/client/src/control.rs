//! Client of the control API over the Unix socket (used by the CLI; the menu-bar app uses it too).

use futures_util::StreamExt;
use mlxbox_api::bench::{BenchOptions, BenchResult, BenchStarted, Comparison};
use mlxbox_api::bench::{DoctorOptions, DoctorReport};
use mlxbox_api::config::Diagnostic;
use mlxbox_api::{
    ActionReply, BenchHistory, ConfigDocument, ConfigEditRequest, ConfigPreview, ErrorReply, Event,
    MonitorHistory, StatusReport,
};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no mlx-box daemon is running on {dir} (no socket at {socket}); start one with `mlx-box up` (or `mlx-box up --demo`)")]
    NotRunning { dir: PathBuf, socket: PathBuf },
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
    dir: PathBuf,
    socket: PathBuf,
}

impl Client {
    pub fn new(state_dir: &Path) -> Self {
        let socket = mlxbox_api::paths::socket_path(state_dir);
        let http = reqwest::Client::builder()
            .unix_socket(socket.clone())
            .build()
            .expect("http client");
        Client {
            http,
            dir: state_dir.to_path_buf(),
            socket,
        }
    }

    fn url(path: &str) -> String {
        format!("http://mlx-box{path}")
    }

    fn map_err(&self, e: reqwest::Error) -> ClientError {
        if e.is_connect() || !self.socket.exists() {
            ClientError::NotRunning {
                dir: self.dir.clone(),
                socket: self.socket.clone(),
            }
        } else {
            ClientError::Http(e)
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

    pub async fn status(&self) -> Result<StatusReport, ClientError> {
        let r = self.send(self.http.get(Self::url("/v1/status"))).await?;
        Ok(r.json().await?)
    }

    pub async fn action(&self, target: &str, verb: &str) -> Result<ActionReply, ClientError> {
        let r = self
            .send(
                self.http
                    .post(Self::url(&format!("/v1/services/{target}/{verb}"))),
            )
            .await?;
        Ok(r.json().await?)
    }

    pub async fn logs(&self, name: &str, lines: usize) -> Result<Vec<String>, ClientError> {
        let r = self
            .send(self.http.get(Self::url(&format!(
                "/v1/services/{name}/logs?lines={lines}"
            ))))
            .await?;
        let v: serde_json::Value = r.json().await?;
        Ok(serde_json::from_value(v["lines"].clone()).unwrap_or_default())
    }

    /// Calls `on_line` for each new log line until the daemon goes away.
    pub async fn follow_logs(
        &self,
        name: &str,
        mut on_line: impl FnMut(&str),
    ) -> Result<(), ClientError> {
        let r = self
            .send(
                self.http
                    .get(Self::url(&format!("/v1/services/{name}/logs/follow"))),
            )
            .await?;
        sse_data(r, |d| {
            on_line(d);
            true
        })
        .await
    }

    /// Calls `on_event` for each event; returns when `on_event` returns false or the stream ends.
    pub async fn events(&self, mut on_event: impl FnMut(Event) -> bool) -> Result<(), ClientError> {
        let r = self.send(self.http.get(Self::url("/v1/events"))).await?;
        sse_data(r, |d| match serde_json::from_str::<Event>(d) {
            Ok(ev) => on_event(ev),
            Err(_) => true,
        })
        .await
    }

    pub async fn put_config(&self, text: &str) -> Result<(), ClientError> {
        self.send(
            self.http
                .put(Self::url("/v1/config"))
                .body(text.to_string()),
        )
        .await?;
        Ok(())
    }

    pub async fn history(&self) -> Result<MonitorHistory, ClientError> {
        let r = self
            .send(self.http.get(Self::url("/v1/monitor/history")))
            .await?;
        Ok(r.json().await?)
    }

    pub async fn config(&self) -> Result<ConfigDocument, ClientError> {
        let r = self.send(self.http.get(Self::url("/v1/config"))).await?;
        Ok(r.json().await?)
    }

    /// Asks the daemon to read the keys again (after `mlx-box keys add/remove/import`); returns how
    /// many it serves.
    pub async fn reload_keys(&self) -> Result<u64, ClientError> {
        let r = self
            .send(self.http.post(Self::url("/v1/keys/reload")))
            .await?;
        let v: serde_json::Value = r.json().await?;
        Ok(v["keys"].as_u64().unwrap_or(0))
    }

    pub async fn proxy_stats(
        &self,
    ) -> Result<std::collections::BTreeMap<String, mlxbox_api::proxy::ProxyStats>, ClientError>
    {
        let r = self
            .send(self.http.get(Self::url("/v1/proxy/stats")))
            .await?;
        Ok(r.json().await?)
    }

    /// What the edits would make of settings.toml; nothing is written.
    pub async fn preview_config(
        &self,
        req: &ConfigEditRequest,
    ) -> Result<ConfigPreview, ClientError> {
        self.config_edit("/v1/config/preview", req).await
    }

    /// Applies the edits (the daemon writes with toml_edit, keeps a .bak, and applies through its watcher).
    pub async fn edit_config(&self, req: &ConfigEditRequest) -> Result<ConfigPreview, ClientError> {
        self.config_edit("/v1/config/edit", req).await
    }

    async fn config_edit(
        &self,
        path: &str,
        req: &ConfigEditRequest,
    ) -> Result<ConfigPreview, ClientError> {
        let r = self
            .http
            .post(Self::url(path))
            .json(req)
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
        let r = self.send(self.http.get(Self::url("/v1/keys"))).await?;
        Ok(r.json().await?)
    }

    /// Makes a key in the keyring; the answer is the only time its secret is shown.
    pub async fn add_key(
        &self,
        req: &mlxbox_api::keys::NewKeyRequest,
    ) -> Result<mlxbox_api::keys::NewKey, ClientError> {
        let r = self
            .send(self.http.post(Self::url("/v1/keys")).json(req))
            .await?;
        Ok(r.json().await?)
    }

    pub async fn remove_key(&self, id: &str) -> Result<mlxbox_api::keys::KeyInfo, ClientError> {
        let r = self
            .send(self.http.delete(Self::url(&format!("/v1/keys/{id}"))))
            .await?;
        Ok(r.json().await?)
    }

    /// Starts a benchmark in the daemon; follow it with [`events`](Self::events).
    pub async fn bench_start(&self, opts: &BenchOptions) -> Result<BenchStarted, ClientError> {
        let r = self
            .send(self.http.post(Self::url("/v1/bench")).json(opts))
            .await?;
        Ok(r.json().await?)
    }

    /// The run in progress, if any (a window opened mid-run follows it).
    pub async fn bench_current(&self) -> Result<Option<BenchStarted>, ClientError> {
        let r = self
            .http
            .get(Self::url("/v1/bench/current"))
            .send()
            .await
            .map_err(|e| self.map_err(e))?;
        if r.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        Ok(Some(Self::check(r).await?.json().await?))
    }

    pub async fn bench_cancel(&self) -> Result<BenchStarted, ClientError> {
        let r = self
            .send(self.http.post(Self::url("/v1/bench/cancel")))
            .await?;
        Ok(r.json().await?)
    }

    /// A saved run: an id, a unique prefix, `last` or `last-N`.
    pub async fn bench_result(&self, id: &str) -> Result<BenchResult, ClientError> {
        let r = self
            .send(
                self.http
                    .get(Self::url(&format!("/v1/bench/{}", encode(id)))),
            )
            .await?;
        Ok(r.json().await?)
    }

    pub async fn bench_history(&self) -> Result<BenchHistory, ClientError> {
        let r = self
            .send(self.http.get(Self::url("/v1/bench/history")))
            .await?;
        Ok(r.json().await?)
    }

    pub async fn bench_compare(&self, a: &str, b: &str) -> Result<Comparison, ClientError> {
        let url = format!("/v1/bench/compare?a={}&b={}", encode(a), encode(b));
        let r = self.send(self.http.get(Self::url(&url))).await?;
        Ok(r.json().await?)
    }

    pub async fn doctor(&self, opts: &DoctorOptions) -> Result<DoctorReport, ClientError> {
        let r = self
            .send(self.http.post(Self::url("/v1/doctor")).json(opts))
            .await?;
        Ok(r.json().await?)
    }

    pub async fn shutdown(&self) -> Result<(), ClientError> {
        self.send(self.http.post(Self::url("/v1/shutdown"))).await?;
        Ok(())
    }
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

/// Percent-encodes everything but RFC 3986's unreserved characters (ids are typed by users).
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
