//! `POST /v1/messages` and `POST /v1/responses` through real listeners (a service's
//! port and the one endpoint) in front of a stand-in OpenAI backend on 127.0.0.1: the same key check and
//! model policy as a chat request, the backend asked for `/v1/chat/completions`, the reply translated
//! back, streamed and whole, and every refusal in the API's own shape. Nothing here waits on a clock:
//! each request is answered as soon as the backend has answered.

use mlxbox_core::api::ServiceStatus;
use mlxbox_core::proxy::{KeySet, Proxies, SharedKeys};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

const KEY: &str = "sk-agents-test";

/// What the stand-in backend received: (path, body).
type Seen = Arc<Mutex<Vec<(String, Value)>>>;

fn chunk(d: Value, finish: Option<&str>) -> String {
    format!(
        "data: {}\n\n",
        json!({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": d, "finish_reason": finish}]})
    )
}

/// What the stand-in backend answers: a chat completion, streamed when asked; a tool call when the
/// request has tools; a stream cut mid tool call when the last message says "cut" (its head and first
/// chunks sent, then the connection closed without the chunked body's end).
fn answer(body: &Value) -> (&'static str, Vec<u8>, bool) {
    let tools = body.get("tools").is_some();
    let last = body["messages"]
        .as_array()
        .and_then(|m| m.last())
        .and_then(|m| m["content"].as_str())
        .unwrap_or("");
    if body["stream"] != json!(true) {
        let mut message = json!({"role": "assistant", "content": "<think>Plan.</think>\n\nHello"});
        let mut finish = "stop";
        if tools {
            message["tool_calls"] = json!([{"id": "call_7", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}}]);
            finish = "tool_calls";
        }
        let v = json!({
            "id": "chatcmpl-1", "object": "chat.completion", "model": body["model"],
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12},
        });
        return ("application/json", v.to_string().into_bytes(), false);
    }
    let mut events = vec![
        chunk(json!({"role": "assistant", "content": ""}), None),
        chunk(json!({"content": "<think>Plan"}), None),
        chunk(json!({"content": ".</think>\n\nHel"}), None),
        chunk(json!({"content": "lo"}), None),
    ];
    if tools {
        events.push(chunk(json!({"tool_calls": [{"index": 0, "id": "call_7", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":"}}]}), None));
        if last == "cut" {
            return ("text/event-stream", events.concat().into_bytes(), true);
        }
        events.push(chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"Paris\"}"}}]}),
            None,
        ));
        events.push(chunk(json!({}), Some("tool_calls")));
    } else {
        events.push(chunk(json!({}), Some("stop")));
    }
    events.push(format!(
        "data: {}\n\n",
        json!({"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}})
    ));
    events.push("data: [DONE]\n\n".into());
    ("text/event-stream", events.concat().into_bytes(), false)
}

/// The stand-in backend on 127.0.0.1 (HTTP/1.1, keep-alive), recording what it is asked; its threads
/// end with their connections, the listener's when `stop` is set and one more connection comes.
fn backend(seen: Seen, stop: Arc<std::sync::atomic::AtomicBool>) -> u16 {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for c in l.incoming() {
            if stop.load(std::sync::atomic::Ordering::SeqCst) {
                return;
            }
            let Ok(mut c) = c else { return };
            let seen = seen.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 65536];
                let mut got = Vec::new();
                loop {
                    match c.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                    let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    let head = String::from_utf8_lossy(&got[..end]).to_string();
                    let len: usize = head
                        .to_ascii_lowercase()
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length: ").map(str::to_string))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    if got.len() < end + 4 + len {
                        continue;
                    }
                    let path = head.split(' ').nth(1).unwrap_or("").to_string();
                    let body: Value =
                        serde_json::from_slice(&got[end + 4..end + 4 + len]).unwrap_or(Value::Null);
                    got.drain(..end + 4 + len);
                    let (ct, out, cut) = answer(&body);
                    seen.lock().unwrap().push((path, body));
                    if cut {
                        let _ = write!(c, "HTTP/1.1 200 OK\r\ncontent-type: {ct}\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n", out.len());
                        let _ = c.write_all(&out);
                        let _ = c.write_all(b"\r\n");
                        return; // closed without the last chunk
                    }
                    let _ = write!(
                        c,
                        "HTTP/1.1 200 OK\r\ncontent-type: {ct}\r\ncontent-length: {}\r\n\r\n",
                        out.len()
                    );
                    let _ = c.write_all(&out);
                }
            });
        }
    });
    port
}

/// A free port below the ephemeral range (so no outgoing connection takes it before the proxy binds).
fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = std::process::id().wrapping_mul(7919) % 9_000;
    for _ in 0..9_000 {
        let port = (21_000 + (base + NEXT.fetch_add(1, Ordering::SeqCst)) % 9_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port")
}

struct Setup {
    proxies: Proxies,
    stop: Arc<std::sync::atomic::AtomicBool>,
    back: u16,
    seen: Seen,
    service: u16,
    endpoint: u16,
}

async fn setup() -> Setup {
    mlxbox_core::tls::install_crypto_provider();
    let seen: Seen = Default::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let back = backend(seen.clone(), stop.clone());
    let (service, endpoint) = (free_port(), free_port());
    let toml = format!(
        "[server]\nhost = \"127.0.0.1\"\nport = {endpoint}\n[services.chat]\nkind = \"chat\"\nport = {service}\nbackend_port = {back}\nmodel = \"org/tiny\"\naliases = [\"claude-test\", \"gpt-test\"]\n"
    );
    let (settings, diags) =
        mlxbox_core::config::parse_settings(std::path::Path::new("s.toml"), &toml);
    let settings = settings.unwrap_or_else(|| panic!("{diags:?}"));
    let status: ServiceStatus = serde_json::from_value(json!({
        "name": "chat", "kind": "chat", "state": "ready", "restarts": 0, "enabled": true,
        "since_ms": 0, "crash_loop": false, "adopted": false,
    }))
    .unwrap();
    let statuses = Arc::new(RwLock::new(BTreeMap::from([("chat".to_string(), status)])));
    let keys: SharedKeys = Arc::new(RwLock::new(Arc::new(KeySet::new(
        Ok(vec![]),
        &[KEY.to_string()],
    ))));
    let (proxies, errors) =
        Proxies::start(&settings, statuses, keys, &Proxies::empty(), None, None).await;
    assert!(errors.is_empty(), "{errors:?}");
    Setup {
        proxies,
        stop,
        back,
        seen,
        service,
        endpoint,
    }
}

impl Setup {
    async fn stop(self) {
        self.proxies.stop().await;
        // The backend's listener ends at its next connection.
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = std::net::TcpStream::connect(("127.0.0.1", self.back));
    }

    fn last_seen(&self) -> (String, Value) {
        self.seen.lock().unwrap().last().cloned().unwrap()
    }
}

async fn post(port: u16, path: &str, key: &str, body: &str) -> (u16, String, String) {
    let r = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}{path}"))
        .header("x-api-key", key)
        .header("anthropic-version", "2023-06-01")
        .header("anthropic-beta", "interleaved-thinking-2025-05-14")
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    (status, ct, r.text().await.unwrap())
}

fn sse_events(text: &str) -> Vec<(String, Value)> {
    text.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let mut name = String::new();
            let mut data = Value::Null;
            for line in e.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    name = n.to_string();
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data = serde_json::from_str(d).unwrap();
                }
            }
            (name, data)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_apis_through_the_proxy() {
    let s = setup().await;

    // Messages, whole, on the service's port: the alias becomes the model id (the model policy), the
    // backend is asked for a chat completion, the reply is a message.
    let (code, ct, body) = post(
        s.service,
        "/v1/messages?beta=true",
        KEY,
        r#"{"model":"claude-test","max_tokens":64,"system":"Be brief.","messages":[{"role":"user","content":"hi"}],"metadata":{"user_id":"u"},"cache_control":{"type":"ephemeral"}}"#,
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert!(ct.starts_with("application/json"), "{ct}");
    let m: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(m["type"], "message");
    assert_eq!(m["model"], "claude-test");
    assert_eq!(
        m["content"],
        json!([{"type": "thinking", "thinking": "Plan.", "signature": ""}, {"type": "text", "text": "Hello"}])
    );
    assert_eq!(m["stop_reason"], "end_turn");
    assert_eq!(m["usage"]["input_tokens"], 9);
    let (path, sent) = s.last_seen();
    assert_eq!(path, "/v1/chat/completions");
    assert_eq!(sent["model"], "org/tiny");
    assert_eq!(
        sent["messages"],
        json!([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}])
    );
    assert_eq!(sent["max_tokens"], 64);

    // Messages, streamed with a tool, on the one endpoint.
    let (code, ct, body) = post(
        s.endpoint,
        "/v1/messages",
        KEY,
        r#"{"model":"claude-test","max_tokens":64,"stream":true,"thinking":{"type":"disabled"},"messages":[{"role":"user","content":"weather?"}],"tools":[{"name":"weather","input_schema":{"type":"object"}}]}"#,
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert!(ct.starts_with("text/event-stream"), "{ct}");
    let ev = sse_events(&body);
    let names: Vec<&str> = ev.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ],
        "{body}"
    );
    assert_eq!(
        ev[1].1["content_block"]["type"], "text",
        "thinking off: no thinking block"
    );
    assert_eq!(ev[5].1["content_block"]["name"], "weather");
    let args: String = ev[6..8]
        .iter()
        .map(|e| e.1["delta"]["partial_json"].as_str().unwrap())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&args).unwrap(),
        json!({"city": "Paris"})
    );
    assert_eq!(ev[9].1["delta"]["stop_reason"], "tool_use");
    let (_, sent) = s.last_seen();
    assert_eq!(sent["stream_options"], json!({"include_usage": true}));
    assert_eq!(
        sent["chat_template_kwargs"],
        json!({"enable_thinking": false})
    );
    assert_eq!(sent["tools"][0]["function"]["name"], "weather");

    // Responses, whole and streamed, on the endpoint and the service's port.
    let (code, _, body) = post(
        s.endpoint,
        "/v1/responses",
        KEY,
        r#"{"model":"gpt-test","input":"hi","store":false,"include":["reasoning.encrypted_content"]}"#,
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let r: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(r["object"], "response");
    assert_eq!(r["status"], "completed");
    assert_eq!(r["output"][1]["content"][0]["text"], "Hello");
    assert!(r["id"].as_str().unwrap().starts_with("resp_"));
    let (code, _, body) = post(
        s.service,
        "/v1/responses",
        KEY,
        r#"{"model":"gpt-test","input":"hi","stream":true}"#,
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let ev = sse_events(&body);
    assert_eq!(ev.first().unwrap().0, "response.created");
    assert_eq!(ev.last().unwrap().0, "response.completed");
    for (i, e) in ev.iter().enumerate() {
        assert_eq!(e.1["sequence_number"], i as u64);
    }
    let text: String = ev
        .iter()
        .filter(|e| e.0 == "response.output_text.delta")
        .map(|e| e.1["delta"].as_str().unwrap())
        .collect();
    assert_eq!(text, "Hello");

    // A backend that dies mid tool call: the open block is stopped, then Anthropic's error event.
    let (code, _, body) = post(
        s.endpoint,
        "/v1/messages",
        KEY,
        r#"{"model":"claude-test","stream":true,"messages":[{"role":"user","content":"cut"}],"tools":[{"name":"weather","input_schema":{"type":"object"}}]}"#,
    )
    .await;
    assert_eq!(code, 200);
    let ev = sse_events(&body);
    assert_eq!(ev.last().unwrap().0, "error", "{body}");
    assert_eq!(ev[ev.len() - 2].0, "content_block_stop", "{body}");
    let starts = ev.iter().filter(|e| e.0 == "content_block_start").count();
    let stops = ev.iter().filter(|e| e.0 == "content_block_stop").count();
    assert_eq!(starts, stops);

    // Refusals in each API's shape: a wrong key, another model, malformed JSON, routes not served.
    let msg = r#"{"model":"claude-test","messages":[{"role":"user","content":"hi"}]}"#;
    for port in [s.service, s.endpoint] {
        let (code, _, body) = post(port, "/v1/messages", "wrong", msg).await;
        assert_eq!(code, 401);
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["type"], "error", "{body}");
        assert_eq!(v["error"]["type"], "authentication_error");
        // Refused at the gate's door (a page of another site), before any handler: still this API's
        // shape.
        for (path, body) in [("/v1/messages", msg), ("/v1/responses", r#"{"input":"x"}"#)] {
            let r = reqwest::Client::new()
                .post(format!("http://127.0.0.1:{port}{path}"))
                .header("x-api-key", KEY)
                .header("sec-fetch-site", "cross-site")
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 403);
            let v: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
            if path == "/v1/messages" {
                assert_eq!(v["type"], "error", "{v}");
                assert_eq!(v["error"]["type"], "permission_error", "{v}");
            } else {
                assert!(
                    v["error"]["message"].is_string() && v.get("type").is_none(),
                    "{v}"
                );
            }
        }
        let (code, _, body) = post(port, "/v1/responses", "wrong", r#"{"input":"x"}"#).await;
        assert_eq!(code, 401);
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"]["code"], "invalid_api_key", "{body}");
        assert!(v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("x-api-key"));

        let (code, _, body) = post(
            port,
            "/v1/messages",
            KEY,
            r#"{"model":"claude-test","messages":"#,
        )
        .await;
        assert_eq!(code, 400);
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"]["type"], "invalid_request_error", "{body}");

        // count_tokens: the server's own prompt_tokens for the same request, asked for one token.
        let (code, _, body) = post(port, "/v1/messages/count_tokens", KEY, msg).await;
        assert_eq!(code, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v, json!({"input_tokens": 9}), "{body}");
        let (code, _, body) = post(port, "/v1/messages/batches", KEY, msg).await;
        assert_eq!(code, 404);
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"]["type"], "not_found_error", "{body}");
    }
    let other = r#"{"model":"claude-opus","messages":[{"role":"user","content":"hi"}]}"#;
    let (code, _, body) = post(s.service, "/v1/messages", KEY, other).await;
    assert_eq!(code, 400, "the service's model policy");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not served here"),
        "{body}"
    );
    let (code, _, body) = post(s.endpoint, "/v1/messages", KEY, other).await;
    assert_eq!(code, 404, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["type"], "not_found_error");
    let (code, _, body) = post(
        s.endpoint,
        "/v1/responses",
        KEY,
        r#"{"model":"gpt-x","input":"hi"}"#,
    )
    .await;
    assert_eq!(code, 404);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error", "{body}");
    assert!(v["error"].get("param").is_some());
    let r = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}/v1/messages", s.service))
        .header("x-api-key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 405);
    assert_eq!(r.headers()["allow"], "POST");

    // Chat completions are as they were.
    let r = reqwest::Client::new()
        .post(format!(
            "http://127.0.0.1:{}/v1/chat/completions",
            s.service
        ))
        .bearer_auth(KEY)
        .json(&json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let v: Value = r.json().await.unwrap();
    assert!(v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .contains("Hello"));

    s.stop().await;
}

/// Issue 29, phase 2: glob aliases. A pattern routes a model family to a service, on the one endpoint
/// and on the service's own port (spliced to its model id); the most specific pattern wins; `GET
/// /v1/models` shows the patterns in the order they are tried, in Anthropic's shape when asked; a bad
/// pattern is an error at its position in settings.toml.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn glob_aliases_route_a_family() {
    mlxbox_core::tls::install_crypto_provider();
    let seen: Seen = Default::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (ba, bb) = (
        backend(seen.clone(), stop.clone()),
        backend(seen.clone(), stop.clone()),
    );
    let (pa, pb, endpoint) = (free_port(), free_port(), free_port());
    let toml = format!(
        "[server]\nhost = \"127.0.0.1\"\nport = {endpoint}\n\
         [services.a]\nkind = \"chat\"\nport = {pa}\nbackend_port = {ba}\nmodel = \"org/a\"\naliases = [\"claude-*\"]\n\
         [services.b]\nkind = \"chat\"\nport = {pb}\nbackend_port = {bb}\nmodel = \"org/b\"\naliases = [\"gpt-*\", \"claude-*-haiku-*\", \"claude-exact\"]\n"
    );
    let (settings, diags) =
        mlxbox_core::config::parse_settings(std::path::Path::new("s.toml"), &toml);
    let settings = settings.unwrap_or_else(|| panic!("{diags:?}"));
    let ready = |name: &str| -> ServiceStatus {
        serde_json::from_value(json!({
            "name": name, "kind": "chat", "state": "ready", "restarts": 0, "enabled": true,
            "since_ms": 0, "crash_loop": false, "adopted": false,
        }))
        .unwrap()
    };
    let statuses = Arc::new(RwLock::new(BTreeMap::from([
        ("a".to_string(), ready("a")),
        ("b".to_string(), ready("b")),
    ])));
    let keys: SharedKeys = Arc::new(RwLock::new(Arc::new(KeySet::new(
        Ok(vec![]),
        &[KEY.to_string()],
    ))));
    let (proxies, errors) =
        Proxies::start(&settings, statuses, keys, &Proxies::empty(), None, None).await;
    assert!(errors.is_empty(), "{errors:?}");
    let msg = |model: &str| {
        json!({"model": model, "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]})
            .to_string()
    };
    let last_model = || seen.lock().unwrap().last().unwrap().1["model"].clone();
    for (port, model, want) in [
        (endpoint, "claude-sonnet-4-5", "org/a"),
        (endpoint, "claude-3-5-haiku-20241022", "org/b"),
        (endpoint, "claude-exact", "org/b"),
        (endpoint, "gpt-5-codex", "org/b"),
        (endpoint, "a", "org/a"),
        (pa, "claude-opus-4", "org/a"),
        (pb, "gpt-5", "org/b"),
    ] {
        let (code, _, body) = post(port, "/v1/messages", KEY, &msg(model)).await;
        assert_eq!(code, 200, "{model} on {port}: {body}");
        assert_eq!(last_model(), want, "{model} on {port}");
    }
    let (code, _, body) = post(endpoint, "/v1/messages", KEY, &msg("llama-3")).await;
    assert_eq!(code, 404, "{body}");
    let (code, _, body) = post(pa, "/v1/messages", KEY, &msg("gpt-5")).await;
    assert_eq!(code, 400, "a's port does not serve b's family: {body}");

    let get = |anthropic: bool| async move {
        let mut r = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{endpoint}/v1/models"))
            .bearer_auth(KEY);
        if anthropic {
            r = r.header("anthropic-version", "2023-06-01");
        }
        let r = r.send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.json::<Value>().await.unwrap()
    };
    let v = get(false).await;
    assert_eq!(v["object"], "list");
    assert_eq!(
        v["routes"],
        json!([
            {"pattern": "claude-*-haiku-*", "service": "b"},
            {"pattern": "claude-*", "service": "a"},
            {"pattern": "gpt-*", "service": "b"},
        ]),
        "{v}"
    );
    let v = get(true).await;
    assert_eq!(v["has_more"], false, "{v}");
    assert_eq!(v["data"][0]["type"], "model", "{v}");
    assert_eq!(v["data"][0]["id"], "a");
    assert!(v["data"][0]["display_name"].is_string());
    assert!(v["data"][0]["created_at"].is_string());
    assert_eq!(v["first_id"], "a");
    assert_eq!(v["last_id"], "b");
    assert_eq!(v["routes"][0]["pattern"], "claude-*-haiku-*");

    proxies.stop().await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = std::net::TcpStream::connect(("127.0.0.1", ba));
    let _ = std::net::TcpStream::connect(("127.0.0.1", bb));

    // A bad pattern: an error at its own line and column, with what to write instead.
    let bad = "[services.a]\nkind = \"chat\"\nport = 9100\nbackend_port = 9101\nmodel = \"m\"\naliases = [\"fast\", \"claude-?\"]\n";
    let (settings, diags) =
        mlxbox_core::config::parse_settings(std::path::Path::new("s.toml"), bad);
    assert!(settings.is_none(), "{diags:?}");
    let d = diags
        .iter()
        .find(|d| d.message.contains("claude-?"))
        .unwrap_or_else(|| panic!("{diags:?}"));
    assert_eq!((d.line, d.col), (6, 20), "{d}");
    assert!(d.message.contains("only `*`"), "{d}");
    assert!(d.hint.as_deref().unwrap_or("").contains("claude-*"), "{d}");
}
