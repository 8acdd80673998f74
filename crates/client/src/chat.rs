//! The Chat window's side, free of Tauri: a conversation with a service or a pool through the daemon's own
//! frontends (the one endpoint, `[server] port`, when there is one; else the target's own port), with an
//! API key the app holds for itself, so the window is held to the same gate as any client: key, model
//! policy, on-demand load, queue, reasoning filter, counters. A service with no frontend at all (no
//! `backend_port`: its server listens on `port` itself) is reached as every client reaches it, on its
//! server's port.
//!
//! The key is made on first use: a request goes without one while the frontends are open (no keys at
//! all: making one would close them to every other local client), and on a 401 the app asks the daemon
//! for a key of its own (`mlx-box app`), keeps it in `<state>/app-key.json` (0600) and sends again.

use crate::app::{AppCore, CommandError, CommandErrorKind};
use base64::Engine;
use futures_util::StreamExt;
use mlxbox_api::call;
use mlxbox_api::keys::NewKeyRequest;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use ts_rs::TS;

/// One turn of a conversation, as the window keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct ChatMessage {
    /// `user`, `assistant` or `system`.
    pub role: String,
    pub content: String,
    /// An image attached to a user turn, as a `data:` URL (for an OCR or vision service).
    #[serde(default)]
    pub image: Option<String>,
}

/// `chat_send`: stream the reply to `messages` from `target` (a service's or a pool's name).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct ChatSend {
    /// The window's id for this reply: every event of it carries it.
    pub id: String,
    pub target: String,
    pub messages: Vec<ChatMessage>,
    /// At most this many tokens in the reply (else the service's default).
    #[serde(default)]
    pub max_tokens: Option<u32>,
}

/// What a streamed reply sends the window (`chat-event`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ChatEvent {
    /// More of the answer, and of its reasoning (a `reasoning` field, or a `<think>` span of the content).
    Delta {
        id: String,
        content: String,
        reasoning: String,
    },
    /// The reply ended: time to its first token, generation speed, tokens (from the server's `usage`).
    Done {
        id: String,
        ttft_ms: Option<f64>,
        tok_s: Option<f64>,
        completion_tokens: Option<u64>,
        finish_reason: Option<String>,
    },
    /// The reply failed: what the frontend answered, or why it could not be reached.
    Failed { id: String, message: String },
}

/// Where the window's requests go, and the `model` they name.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The target's name for a frontend (it routes by it); for a server reached directly, the model it
    /// was started with (a server takes any other name as a model to load).
    pub model: Option<String>,
}

/// The frontend that serves `target`: the one endpoint when it listens, else the target's own frontend,
/// else (`direct`: a service without a frontend, its server's port and model) its server on this Mac.
pub fn route_of(
    listeners: &[mlxbox_api::Listening],
    target: &str,
    direct: Option<(u16, Option<String>)>,
) -> Option<Route> {
    let by = |name: &str| listeners.iter().find(|l| l.name == name && !l.tls);
    let frontend = by("[server] port")
        .or_else(|| by(&format!("[services.{target}] port")))
        .or_else(|| by(&format!("[pools.{target}] port")));
    let (address, model) = match (frontend, direct) {
        (Some(l), _) => (connect_address(&l.address)?, Some(target.to_string())),
        (None, Some((port, model))) => (format!("127.0.0.1:{port}"), model),
        (None, None) => return None,
    };
    Some(Route {
        base: format!("http://{address}"),
        model,
    })
}

/// A listening address as a client reaches it: a wildcard bind (`0.0.0.0`, `[::]`) through loopback.
fn connect_address(bind: &str) -> Option<String> {
    let addr: std::net::SocketAddr = bind.parse().ok()?;
    let ip = match addr.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    Some(std::net::SocketAddr::new(ip, addr.port()).to_string())
}

/// The app's own key, as kept on disk.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct AppKey {
    id: String,
    secret: String,
}

fn key_path(state_dir: &Path) -> PathBuf {
    state_dir.join("app-key.json")
}

fn read_key(state_dir: &Path) -> Option<String> {
    let b = std::fs::read(key_path(state_dir)).ok()?;
    (b.len() < 4096)
        .then(|| serde_json::from_slice::<AppKey>(&b).ok())
        .flatten()
        .map(|k| k.secret)
}

fn write_key(state_dir: &Path, k: &AppKey) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let path = key_path(state_dir);
    let tmp = path.with_extension("tmp");
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    o.mode(0o600);
    let mut f = o.open(&tmp)?;
    f.write_all(&serde_json::to_vec(k).unwrap_or_default())?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path)
}

fn failed(message: impl Into<String>) -> CommandError {
    CommandError {
        kind: CommandErrorKind::Failed,
        message: message.into(),
        hint: None,
        preview: None,
    }
}

/// A client for the frontends: no proxy from the environment (they are on this Mac), no overall timeout
/// (a long generation streams for minutes), a bounded connect.
fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(5))
        .build()
        .unwrap_or_default()
}

impl AppCore {
    /// Where `target`'s requests go (from the daemon's list of listeners).
    pub async fn chat_route(&self, target: &str) -> Result<Route, CommandError> {
        let list = self.call(call::Listeners {}).await?;
        let status = self.call(call::Status {}).await?;
        let direct = status
            .services
            .iter()
            .find(|s| s.name == target && s.frontend_port.is_none())
            .and_then(|s| Some((s.port?, s.model.clone())));
        route_of(&list.listeners, target, direct).ok_or_else(|| CommandError {
            kind: CommandErrorKind::NotFound,
            message: format!("`{target}` has no frontend port to chat through"),
            hint: Some(
                "give it a port in settings.toml, or set [server] port for the one endpoint".into(),
            ),
            preview: None,
        })
    }

    /// The app's key, made now (and kept) if it has none or the daemon no longer knows it.
    async fn new_app_key(&self) -> Result<String, CommandError> {
        let made = self
            .call(call::AddKey {
                key: NewKeyRequest {
                    name: Some("mlx-box app".into()),
                    services: vec![],
                },
            })
            .await?;
        let k = AppKey {
            id: made.key.id,
            secret: made.secret,
        };
        write_key(&self.state_dir, &k).map_err(|e| {
            failed(format!(
                "cannot keep the app's key in {}: {e}",
                key_path(&self.state_dir).display()
            ))
        })?;
        Ok(k.secret)
    }

    /// Sends the request `make` builds, with the app's key when it has one; on a 401 makes the app's key
    /// and sends once more. An answer that is not a success is an error saying what the frontend said.
    async fn send_keyed(
        &self,
        make: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, CommandError> {
        let client = http();
        let send = |key: Option<&str>| {
            let b = make(&client);
            match key {
                Some(k) => b.bearer_auth(k),
                None => b,
            }
            .send()
        };
        let unanswered = |e: reqwest::Error| failed(format!("the frontend did not answer: {e}"));
        let key = read_key(&self.state_dir);
        let mut r = send(key.as_deref()).await.map_err(unanswered)?;
        if r.status() == reqwest::StatusCode::UNAUTHORIZED {
            let key = self.new_app_key().await?;
            r = send(Some(&key)).await.map_err(unanswered)?;
        }
        if !r.status().is_success() {
            return Err(failed(refusal(r).await));
        }
        Ok(r)
    }

    /// Streams the reply to `send`, calling `emit` with each event; always ends with `Done` or `Failed`.
    pub async fn chat_stream(&self, send: ChatSend, mut emit: impl FnMut(ChatEvent)) {
        let id = send.id.clone();
        match self.chat_stream_inner(send, &mut emit).await {
            Ok(()) => {}
            Err(e) => emit(ChatEvent::Failed {
                id,
                message: e.message,
            }),
        }
    }

    async fn chat_stream_inner(
        &self,
        send: ChatSend,
        emit: &mut impl FnMut(ChatEvent),
    ) -> Result<(), CommandError> {
        let route = self.chat_route(&send.target).await?;
        let body = chat_body(&send, route.model.as_deref());
        let url = format!("{}/v1/chat/completions", route.base);
        let t0 = Instant::now();
        let r = self.send_keyed(|c| c.post(&url).json(&body)).await?;
        let mut reader = StreamReader::new(send.id.clone(), t0);
        let mut stream = r.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| failed(format!("the stream broke: {e}")))?;
            reader.feed(&chunk, emit)?;
        }
        emit(reader.done());
        Ok(())
    }

    /// A speech service reads `text` aloud: the audio as a `data:` URL the window plays.
    pub async fn chat_speech(&self, target: &str, text: &str) -> Result<String, CommandError> {
        let route = self.chat_route(target).await?;
        let url = format!("{}/v1/audio/speech", route.base);
        let mut body = serde_json::json!({"input": text, "response_format": "wav"});
        if let Some(m) = &route.model {
            body["model"] = m.as_str().into();
        }
        let r = self.send_keyed(|c| c.post(&url).json(&body)).await?;
        let kind = r
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .filter(|v| v.starts_with("audio/"))
            .unwrap_or("audio/wav")
            .to_string();
        let bytes = r
            .bytes()
            .await
            .map_err(|e| failed(format!("the audio did not arrive whole: {e}")))?;
        Ok(format!(
            "data:{kind};base64,{}",
            base64::engine::general_purpose::STANDARD.encode(&bytes)
        ))
    }

    /// A speech-to-text service transcribes `audio` (a `data:` URL of a recorded or chosen file).
    pub async fn chat_transcribe(
        &self,
        target: &str,
        audio: &str,
        file_name: &str,
    ) -> Result<String, CommandError> {
        let (kind, bytes) =
            decode_data_url(audio).ok_or_else(|| failed("the audio is not a base64 data: URL"))?;
        let route = self.chat_route(target).await?;
        let url = format!("{}/v1/audio/transcriptions", route.base);
        let r = self
            .send_keyed(|c| {
                let part = reqwest::multipart::Part::bytes(bytes.clone())
                    .file_name(file_name.to_string())
                    .mime_str(&kind)
                    .unwrap_or_else(|_| reqwest::multipart::Part::bytes(bytes.clone()));
                let mut form = reqwest::multipart::Form::new().part("file", part);
                if let Some(m) = &route.model {
                    form = form.text("model", m.clone());
                }
                c.post(&url).multipart(form)
            })
            .await?;
        let v: serde_json::Value = r
            .json()
            .await
            .map_err(|e| failed(format!("the transcription is not JSON: {e}")))?;
        Ok(v["text"].as_str().unwrap_or_default().trim().to_string())
    }
}

/// Audio and images cross the IPC as `data:` URLs; 64 MiB at most.
fn decode_data_url(url: &str) -> Option<(String, Vec<u8>)> {
    let rest = url.strip_prefix("data:")?;
    let (head, data) = rest.split_once(',')?;
    let kind = head.strip_suffix(";base64")?;
    if data.len() > 64 << 20 {
        return None;
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data)
        .ok()?;
    let kind = if kind.is_empty() {
        "application/octet-stream"
    } else {
        kind
    };
    Some((kind.to_string(), bytes))
}

/// The frontend's refusal as one sentence (OpenAI's `error.message` when it sent one).
async fn refusal(r: reqwest::Response) -> String {
    let status = r.status();
    let text = r.text().await.unwrap_or_default();
    let msg = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| {
            v["error"]["message"]
                .as_str()
                .or_else(|| v["error"].as_str())
                .map(str::to_string)
        })
        .unwrap_or_else(|| text.chars().take(300).collect());
    format!("HTTP {status}: {msg}")
}

/// The chat-completions body of a window's send (naming `model` when given): an attached image as
/// OpenAI's `image_url` part.
pub fn chat_body(send: &ChatSend, model: Option<&str>) -> serde_json::Value {
    let messages: Vec<serde_json::Value> = send
        .messages
        .iter()
        .map(|m| match &m.image {
            Some(img) => serde_json::json!({
                "role": m.role,
                "content": [
                    {"type": "text", "text": m.content},
                    {"type": "image_url", "image_url": {"url": img}},
                ],
            }),
            None => serde_json::json!({"role": m.role, "content": m.content}),
        })
        .collect();
    let mut body = serde_json::json!({
        "messages": messages,
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    if let Some(n) = send.max_tokens {
        body["max_tokens"] = n.into();
    }
    if let Some(m) = model {
        body["model"] = m.into();
    }
    body
}

/// Reads a chat-completions event stream into the window's events: text and reasoning apart (a
/// `reasoning` / `reasoning_content` field, or a `<think>…</think>` span in the content, even split across
/// chunks), the time to the first token, and the speed from the server's `usage`.
pub struct StreamReader {
    id: String,
    t0: Instant,
    buf: Vec<u8>,
    think: ThinkSplit,
    first: Option<Instant>,
    last: Option<Instant>,
    completion_tokens: Option<u64>,
    finish_reason: Option<String>,
}

/// A line longer than this is not an event the window can use.
const MAX_LINE: usize = 4 << 20;

impl StreamReader {
    pub fn new(id: String, t0: Instant) -> StreamReader {
        StreamReader {
            id,
            t0,
            buf: vec![],
            think: ThinkSplit::default(),
            first: None,
            last: None,
            completion_tokens: None,
            finish_reason: None,
        }
    }

    pub fn feed(
        &mut self,
        bytes: &[u8],
        emit: &mut impl FnMut(ChatEvent),
    ) -> Result<(), CommandError> {
        self.buf.extend_from_slice(bytes);
        while let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=i).collect();
            self.line(&line, emit);
        }
        if self.buf.len() > MAX_LINE {
            return Err(failed("the stream sent a line of more than 4 MiB"));
        }
        Ok(())
    }

    fn line(&mut self, line: &[u8], emit: &mut impl FnMut(ChatEvent)) {
        let Some(data) = line.strip_prefix(b"data:") else {
            return;
        };
        let data = data.trim_ascii();
        if data.is_empty() || data == b"[DONE]" {
            return;
        }
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else {
            return;
        };
        if let Some(n) = v["usage"]["completion_tokens"].as_u64() {
            self.completion_tokens = Some(n);
        }
        let choice = &v["choices"][0];
        if let Some(f) = choice["finish_reason"].as_str() {
            self.finish_reason = Some(f.to_string());
        }
        let delta = &choice["delta"];
        let mut reasoning = String::new();
        for k in ["reasoning", "reasoning_content"] {
            if let Some(s) = delta[k].as_str() {
                reasoning.push_str(s);
            }
        }
        let mut content = String::new();
        if let Some(s) = delta["content"].as_str() {
            self.think.push(s, &mut content, &mut reasoning);
        }
        if content.is_empty() && reasoning.is_empty() {
            return;
        }
        let now = Instant::now();
        self.first.get_or_insert(now);
        self.last = Some(now);
        emit(ChatEvent::Delta {
            id: self.id.clone(),
            content,
            reasoning,
        });
    }

    pub fn done(self) -> ChatEvent {
        let ttft_ms = self.first.map(|f| (f - self.t0).as_secs_f64() * 1e3);
        let tok_s = match (self.first, self.last, self.completion_tokens) {
            (Some(f), Some(l), Some(n)) if n > 1 && l > f => {
                Some((n - 1) as f64 / (l - f).as_secs_f64())
            }
            _ => None,
        };
        ChatEvent::Done {
            id: self.id,
            ttft_ms,
            tok_s,
            completion_tokens: self.completion_tokens,
            finish_reason: self.finish_reason,
        }
    }
}

/// Splits content at `<think>` / `</think>`, holding back a tag's partial start at a chunk's end.
#[derive(Default)]
struct ThinkSplit {
    inside: bool,
    held: String,
}

impl ThinkSplit {
    fn push(&mut self, s: &str, content: &mut String, reasoning: &mut String) {
        let mut text = std::mem::take(&mut self.held);
        text.push_str(s);
        let mut rest = text.as_str();
        loop {
            let tag = if self.inside { "</think>" } else { "<think>" };
            let out = if self.inside {
                &mut *reasoning
            } else {
                &mut *content
            };
            if let Some(i) = rest.find(tag) {
                out.push_str(&rest[..i]);
                rest = &rest[i + tag.len()..];
                self.inside = !self.inside;
                continue;
            }
            // A tag may begin at the end of this chunk: keep its start for the next.
            let keep = (1..tag.len())
                .rev()
                .find(|&n| {
                    rest.len() >= n
                        && rest.is_char_boundary(rest.len() - n)
                        && tag.starts_with(&rest[rest.len() - n..])
                })
                .unwrap_or(0);
            out.push_str(&rest[..rest.len() - keep]);
            self.held = rest[rest.len() - keep..].to_string();
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listening(name: &str, address: &str) -> mlxbox_api::Listening {
        mlxbox_api::Listening {
            name: name.into(),
            address: address.into(),
            tls: false,
        }
    }

    #[test]
    fn the_one_endpoint_first_then_the_targets_port_wildcards_through_loopback() {
        let ls = vec![
            listening("[services.chat] port", "0.0.0.0:8081"),
            listening("[pools.p] port", "[::]:8090"),
        ];
        assert_eq!(
            route_of(&ls, "chat", None).unwrap().base,
            "http://127.0.0.1:8081"
        );
        assert_eq!(route_of(&ls, "p", None).unwrap().base, "http://[::1]:8090");
        assert!(route_of(&ls, "other", None).is_none());
        assert_eq!(
            route_of(&ls, "chat", None).unwrap().model.as_deref(),
            Some("chat")
        );
        // A service without a frontend: its server's own port, naming the model it runs.
        let bare = route_of(&ls, "bare", Some((47311, Some("/models/chat".into())))).unwrap();
        assert_eq!(bare.model.as_deref(), Some("/models/chat"));
        assert_eq!(
            route_of(&ls, "bare", Some((47311, None))).unwrap().base,
            "http://127.0.0.1:47311"
        );
        let mut with = ls.clone();
        with.push(listening("[server] port", "127.0.0.1:8000"));
        assert_eq!(
            route_of(&with, "other", None).unwrap().base,
            "http://127.0.0.1:8000"
        );
    }

    fn read(chunks: &[&str]) -> (String, String, ChatEvent) {
        let mut r = StreamReader::new("r1".into(), Instant::now());
        let (mut content, mut reasoning) = (String::new(), String::new());
        for c in chunks {
            r.feed(c.as_bytes(), &mut |e| {
                if let ChatEvent::Delta {
                    content: c,
                    reasoning: t,
                    ..
                } = e
                {
                    content.push_str(&c);
                    reasoning.push_str(&t);
                }
            })
            .unwrap();
        }
        (content, reasoning, r.done())
    }

    fn ev(delta: serde_json::Value) -> String {
        format!(
            "data: {}\n\n",
            serde_json::json!({"choices": [{"delta": delta}]})
        )
    }

    #[test]
    fn reasoning_from_the_field_and_from_think_spans_cut_anywhere() {
        let whole = "<think>Let me see.</think>It is 391.";
        for cut in 0..whole.len() {
            let (a, b) = whole.split_at(cut);
            let stream =
                ev(serde_json::json!({"content": a})) + &ev(serde_json::json!({"content": b}));
            for split in [stream.len() / 3, stream.len() / 2] {
                let (x, y) = stream.split_at(split);
                let (content, reasoning, _) = read(&[x, y]);
                assert_eq!(
                    (content.as_str(), reasoning.as_str()),
                    ("It is 391.", "Let me see."),
                    "{cut}/{split}"
                );
            }
        }
        let (content, reasoning, _) = read(&[
            &ev(serde_json::json!({"reasoning": "hmm"})),
            &ev(serde_json::json!({"content": "ok"})),
        ]);
        assert_eq!((content.as_str(), reasoning.as_str()), ("ok", "hmm"));
    }

    #[test]
    fn done_carries_usage_finish_and_ttft() {
        let usage = "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"length\"}]}\n\ndata: {\"choices\":[],\"usage\":{\"completion_tokens\":7}}\n\ndata: [DONE]\n\n";
        let (_, _, done) = read(&[&ev(serde_json::json!({"content": "a"})), usage]);
        match done {
            ChatEvent::Done {
                ttft_ms,
                completion_tokens,
                finish_reason,
                ..
            } => {
                assert!(ttft_ms.unwrap() >= 0.0);
                assert_eq!(completion_tokens, Some(7));
                assert_eq!(finish_reason.as_deref(), Some("length"));
            }
            e => panic!("{e:?}"),
        }
        let (_, _, empty) = read(&[]);
        assert!(matches!(
            empty,
            ChatEvent::Done {
                ttft_ms: None,
                tok_s: None,
                ..
            }
        ));
    }

    #[test]
    fn hostile_streams_are_bounded() {
        let mut r = StreamReader::new("r".into(), Instant::now());
        let big = vec![b'x'; MAX_LINE + 1];
        assert!(r.feed(&big, &mut |_| {}).is_err());
        let (c, t, _) = read(&[
            "data: {not json\n",
            "data: []\n",
            "data: {\"choices\":7}\n",
            "\u{0}\n",
        ]);
        assert_eq!((c.as_str(), t.as_str()), ("", ""));
    }

    #[test]
    fn an_image_goes_as_openais_image_url_and_data_urls_are_checked() {
        let send = ChatSend {
            id: "1".into(),
            target: "ocr".into(),
            messages: vec![ChatMessage {
                role: "user".into(),
                content: "Read it".into(),
                image: Some("data:image/png;base64,iVBO".into()),
            }],
            max_tokens: Some(32),
        };
        let b = chat_body(&send, Some("ocr"));
        assert_eq!(b["model"], "ocr");
        assert!(chat_body(&send, None).get("model").is_none());
        assert_eq!(b["max_tokens"], 32);
        assert_eq!(
            b["messages"][0]["content"][1]["image_url"]["url"],
            "data:image/png;base64,iVBO"
        );
        assert_eq!(
            decode_data_url("data:audio/wav;base64,AAEC").unwrap(),
            ("audio/wav".into(), vec![0, 1, 2])
        );
        for bad in ["audio", "data:audio/wav,AAEC", "data:;base64,@@"] {
            assert!(decode_data_url(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn the_apps_key_is_kept_owner_only_and_a_bad_file_is_no_key() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_key(dir.path()), None);
        write_key(
            dir.path(),
            &AppKey {
                id: "k1".into(),
                secret: "sk-x".into(),
            },
        )
        .unwrap();
        assert_eq!(read_key(dir.path()).as_deref(), Some("sk-x"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(key_path(dir.path()))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(key_path(dir.path()), b"{oops").unwrap();
        assert_eq!(read_key(dir.path()), None);
    }
}
