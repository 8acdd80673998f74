//! The proxy in front of the REAL `mlx_lm.server` on the tiny thinking model (the demo's environment,
//! cached in MLXBOX_CACHE_DIR), driven by the official `openai` Python client and by curl, streaming and
//! not: through a `filter_reasoning = true` port no `<think>` and no reasoning field arrive; through a
//! plain port the answer is the backend's own. The key comes from `mlx-box keys add`.

mod common;
use common::*;
use serde_json::Value;
use std::process::Command;
use std::time::Duration;

const S: Duration = Duration::from_secs(1);
const PROMPT: &str = "What is 2+2?";

/// The official client against one base URL: a completion and a stream, as plain JSON.
const CLIENT_PY: &str = r#"
import json, sys, openai
port, key, model, prompt = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
c = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0, timeout=120)
args = dict(model=model, messages=[{"role": "user", "content": prompt}], max_tokens=48, temperature=0.0)
r = c.chat.completions.create(**args)
chunks = [ch.model_dump() for ch in c.chat.completions.create(stream=True, **args)]
try:
    c.with_options(api_key="sk-wrong").chat.completions.create(**args)
    denied = None
except openai.AuthenticationError as e:
    denied = e.status_code
print(json.dumps({"message": r.choices[0].message.model_dump(), "chunks": chunks, "denied": denied}))
"#;

/// The OpenAI Python client's answer through `port` (the script's JSON).
fn py_client(python: &str, port: u16, key: &str, model: &str) -> Value {
    python_json(
        std::path::Path::new(python),
        CLIENT_PY,
        &[&port.to_string(), key, model, PROMPT],
    )
}

fn curl(port: u16, key: &str, body: &Value) -> String {
    let out = Command::new("curl")
        .args([
            "-sS",
            "-N",
            "--max-time",
            "120",
            "-H",
            "Content-Type: application/json",
        ])
        .args([
            "-H",
            &format!("Authorization: Bearer {key}"),
            "-d",
            &body.to_string(),
        ])
        .arg(format!("http://127.0.0.1:{port}/v1/chat/completions"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// (content, reasoning) of a message object.
fn message_text(m: &Value) -> (String, String) {
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    (
        s(&m["content"]),
        s(&m["reasoning"]) + &s(&m["reasoning_content"]),
    )
}

/// (content, reasoning) of a stream: the deltas joined.
fn stream_text(chunks: &[Value]) -> (String, String) {
    let mut c = String::new();
    let mut r = String::new();
    for ch in chunks {
        if let Some(choice) = ch["choices"].get(0) {
            let (a, b) = message_text(&choice["delta"]);
            c.push_str(&a);
            r.push_str(&b);
        }
    }
    (c, r)
}

fn sse_chunks(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap_or_else(|e| panic!("{e}: {d}")))
        .collect()
}

fn assert_filtered(what: &str, text: &str) {
    assert!(
        !text.contains("<think>") && !text.contains("</think>"),
        "{what}: {text}"
    );
    assert!(
        !text.contains("\"reasoning") && !text.contains("'reasoning"),
        "{what}: {text}"
    );
}

#[test]
fn openai_client_and_curl_through_the_proxy_to_real_mlx_lm() {
    if !in_keyring_session("openai_client_and_curl_through_the_proxy_to_real_mlx_lm") {
        return;
    }
    let env = demo_env();
    let python = env.python.display().to_string();
    let model = env.models.join("chat").display().to_string();
    let (f1, b1, f2, b2) = (free_port(), free_port(), free_port(), free_port());
    let svc = |name: &str, front: u16, back: u16, filter: bool| {
        format!(
            "[services.{name}]\nkind = \"chat\"\nport = {front}\nbackend_port = {back}\nmodel = \"{model}\"\nmax_tokens = 48\ntemperature = 0.0\nfilter_reasoning = {filter}\nready_timeout_s = 180\nenv = {{ HF_HUB_OFFLINE = \"1\" }}\n"
        )
    };
    let config = format!(
        "[server]\nhost = \"127.0.0.1\"\n[app]\npython = \"{python}\"\n{}{}",
        svc("chat", f1, b1, true),
        svc("raw", f2, b2, false)
    );
    let d = Daemon::start(&config);
    let out = d.cli(&["keys", "add", "--name", "ci"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = String::from_utf8(out.stdout).unwrap().trim().to_string();
    d.wait_state("chat", "ready", 240 * S);
    d.wait_state("raw", "ready", 240 * S);

    // The backend itself (no key: it is the model server), then both frontend ports.
    let backend = py_client(&python, b2, "unused", &model);
    let raw = py_client(&python, f2, &key, &model);
    let filtered = py_client(&python, f1, &key, "chat"); // the alias: service name → model
    assert_eq!(raw["denied"], 401, "a wrong key through the proxy");
    assert_eq!(filtered["denied"], 401);

    let (b_content, b_reasoning) = message_text(&backend["message"]);
    assert!(
        !b_reasoning.is_empty() || b_content.contains("</think>"),
        "the tiny model thinks: {backend}"
    );
    // Unfiltered: what the backend says, the same (temperature 0), streaming and not.
    assert_eq!(
        message_text(&raw["message"]),
        (b_content.clone(), b_reasoning.clone())
    );
    let b_stream = stream_text(backend["chunks"].as_array().unwrap());
    assert_eq!(stream_text(raw["chunks"].as_array().unwrap()), b_stream);

    // Filtered: no think span, no reasoning field; the answer is the backend's minus its thoughts.
    assert_filtered("json via openai", &filtered["message"].to_string());
    assert_filtered("stream via openai", &filtered["chunks"].to_string());
    // (A JSON reply also loses the blank lines a think block leaves; a stream sends them as they come.)
    let answer = mlxbox_core::reasoning::strip_think(&b_content)
        .trim_start()
        .to_string();
    let stream_answer = mlxbox_core::reasoning::strip_think(&b_stream.0);
    assert_eq!(message_text(&filtered["message"]).0, answer);
    assert_eq!(
        stream_text(filtered["chunks"].as_array().unwrap()).0,
        stream_answer
    );
    assert!(!answer.trim().is_empty(), "an answer is left: {backend}");

    // curl, streaming and not.
    let req = |stream: bool| {
        serde_json::json!({"model": model, "messages": [{"role": "user", "content": PROMPT}],
                           "max_tokens": 48, "temperature": 0.0, "stream": stream})
    };
    let c_json = curl(f1, &key, &req(false));
    assert_filtered("curl json", &c_json);
    let v: Value = serde_json::from_str(&c_json).unwrap();
    assert_eq!(message_text(&v["choices"][0]["message"]).0, answer);
    let c_sse = curl(f1, &key, &req(true));
    assert_filtered("curl stream", &c_sse);
    assert!(c_sse.trim_end().ends_with("data: [DONE]"), "{c_sse}");
    assert_eq!(stream_text(&sse_chunks(&c_sse)).0, stream_answer);
    let r_sse = curl(f2, &key, &req(true));
    assert_eq!(stream_text(&sse_chunks(&r_sse)), b_stream, "{r_sse}");

    // The counters saw the streamed tokens and a decode speed.
    let stats = d.control_json("/v1/proxy/stats");
    let raw_stats = &stats["raw"];
    assert!(
        raw_stats["output_tokens"].as_u64().unwrap() >= 16,
        "{stats}"
    );
    assert!(
        raw_stats["last_decode_tok_s"].as_f64().unwrap_or(0.0) > 0.0,
        "{stats}"
    );
    assert_eq!(raw_stats["in_flight"], 0, "{stats}");
    assert_eq!(stats["chat"]["unauthorized"], 1, "{stats}");
}
