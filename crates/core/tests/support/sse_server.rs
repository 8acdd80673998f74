//! A purpose-built OpenAI-compatible server that streams scripted chunks at known times, for the
//! benchmark's metric tests and its client-overhead benchmark. It records when it sent each chunk (the
//! ground truth the client's figures are checked against). 127.0.0.1 only.
#![allow(dead_code)]

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One scripted chunk: sent `at` after the request arrived; `data` is the JSON of an SSE `data:` line.
#[derive(Clone, Debug)]
pub struct Step {
    pub at: Duration,
    pub data: String,
}

#[derive(Clone, Debug, Default)]
pub struct Script {
    pub steps: Vec<Step>,
    /// Answer HTTP 500 instead.
    pub fail: bool,
    /// Request k (from 0) runs the script stretched by 1 + k × this: a server that slows down, as a
    /// throttling Mac does.
    pub slowdown: f64,
}

/// What the server did for one request: when it arrived and when each step and the end were written.
#[derive(Clone, Debug)]
pub struct Sent {
    pub arrived: Instant,
    pub steps: Vec<Instant>,
    pub end: Instant,
}

#[derive(Clone)]
struct St {
    script: Arc<Script>,
    sent: Arc<Mutex<Vec<Sent>>>,
    embed_delay: Duration,
    served: Arc<std::sync::atomic::AtomicU64>,
}

pub struct TestServer {
    pub base: String,
    pub sent: Arc<Mutex<Vec<Sent>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn role_only() -> String {
    r#"{"object":"chat.completion.chunk","system_fingerprint":"test-0.1","choices":[{"index":0,"delta":{"role":"assistant"},"finish_reason":null}]}"#.into()
}
pub fn content(text: &str) -> String {
    serde_json::json!({"object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":text},"finish_reason":null}]}).to_string()
}
pub fn reasoning(text: &str) -> String {
    serde_json::json!({"object":"chat.completion.chunk","choices":[{"index":0,"delta":{"reasoning":text},"finish_reason":null}]}).to_string()
}
pub fn finish() -> String {
    r#"{"object":"chat.completion.chunk","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#.into()
}
pub fn usage(prompt: u64, completion: u64, cached: u64) -> String {
    serde_json::json!({"object":"chat.completion","choices":[],"usage":{"prompt_tokens":prompt,"completion_tokens":completion,"total_tokens":prompt+completion,"prompt_tokens_details":{"cached_tokens":cached}}}).to_string()
}

/// `n` one-token content chunks, the first at `ttft`, then every `gap`; usage right after the last.
pub fn steady(n: u64, ttft: Duration, gap: Duration) -> Script {
    let mut steps = vec![Step {
        at: Duration::ZERO,
        data: role_only(),
    }];
    for i in 0..n {
        steps.push(Step {
            at: ttft + gap * i as u32,
            data: content("tok "),
        });
    }
    let last = ttft + gap * (n.saturating_sub(1)) as u32;
    steps.push(Step {
        at: last,
        data: finish(),
    });
    steps.push(Step {
        at: last,
        data: usage(16, n, 0),
    });
    Script {
        steps,
        ..Script::default()
    }
}

pub async fn start(script: Script) -> TestServer {
    start_with(script, Duration::from_millis(10)).await
}

pub async fn start_with(script: Script, embed_delay: Duration) -> TestServer {
    let st = St {
        script: Arc::new(script),
        sent: Arc::default(),
        embed_delay,
        served: Arc::default(),
    };
    let sent = st.sent.clone();
    let app = Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/embeddings", post(embeddings))
        .with_state(st);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // No Nagle: a small chunk goes out when written, as a real token server's should.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    TestServer {
        base: format!("http://{addr}"),
        sent,
        task,
    }
}

async fn chat(State(st): State<St>, _body: Bytes) -> Response {
    let arrived = Instant::now();
    if st.script.fail {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "{\"error\":\"scripted failure\"}",
        )
            .into_response();
    }
    let k = st.served.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let stretch = 1.0 + k as f64 * st.script.slowdown;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(64);
    tokio::spawn(async move {
        let mut steps = vec![];
        for s in st.script.steps.iter() {
            tokio::time::sleep_until((arrived + s.at.mul_f64(stretch)).into()).await;
            steps.push(Instant::now());
            if tx
                .send(Ok(Bytes::from(format!("data: {}\n\n", s.data))))
                .await
                .is_err()
            {
                return;
            }
        }
        let _ = tx.send(Ok(Bytes::from_static(b"data: [DONE]\n\n"))).await;
        let end = Instant::now();
        drop(tx);
        st.sent.lock().unwrap().push(Sent {
            arrived,
            steps,
            end,
        });
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .body(Body::from_stream(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        ))
        .unwrap()
}

async fn embeddings(State(st): State<St>, Json(v): Json<serde_json::Value>) -> Response {
    tokio::time::sleep(st.embed_delay).await;
    let n = v["input"].as_array().map(|a| a.len()).unwrap_or(1);
    let data: Vec<_> = (0..n)
        .map(|i| serde_json::json!({"object":"embedding","index":i,"embedding":[0.6,0.8]}))
        .collect();
    Json(serde_json::json!({"object":"list","data":data,"usage":{"prompt_tokens":n*4,"total_tokens":n*4}}))
        .into_response()
}
