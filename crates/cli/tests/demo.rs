//! The demo profile end to end: `mlx-box up --demo` makes (once, cached in MLXBOX_CACHE_DIR) the Python
//! environment and the tiny models, then supervises the real `mlx_lm.server` (twice: thinking on and off)
//! and the embedding server. Real completions, a real crash, a real shutdown.

mod common;
use common::*;
use serde_json::{json, Value};

use std::time::Duration;

const S: Duration = Duration::from_secs(1);

/// POST JSON to 127.0.0.1:port; asserts 200 and returns the JSON body.
fn post(port: u16, path: &str, body: &Value) -> Value {
    let (code, head, body) = http(
        port,
        "POST",
        path,
        &[("Content-Type", "application/json")],
        &body.to_string(),
    );
    assert_eq!(code, 200, "{head}\n{body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

fn chat(port: u16, prompt: &str) -> (String, String) {
    let v = post(
        port,
        "/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content": prompt}], "max_tokens": 48, "temperature": 0.0}),
    );
    let m = &v["choices"][0]["message"];
    let content = m["content"].as_str().unwrap_or_default().to_string();
    let reasoning = m["reasoning"]
        .as_str()
        .or(m["reasoning_content"].as_str())
        .unwrap_or_default()
        .to_string();
    (content, reasoning)
}

#[test]
fn demo_profile_serves_real_models_and_survives_a_crash() {
    let mut d = Daemon::start_demo();

    for n in ["chat", "chat-nothink", "embedding"] {
        let s = d.wait_state(n, "ready", 180 * S);
        assert!(
            s["memory_bytes"].as_u64().unwrap() > 10 << 20,
            "a real model server's group memory: {s}"
        );
    }
    let port_of = |d: &Daemon, n: &str| d.service(n)["port"].as_u64().unwrap() as u16;
    let ports: std::collections::HashMap<&str, u16> = ["chat", "chat-nothink", "embedding"]
        .iter()
        .map(|n| (*n, port_of(&d, n)))
        .collect();
    let port = |n: &str| ports[n];

    // Thinking on: the tiny model reasons first (in content as <think>…</think>, or split out by mlx_lm).
    let (content, reasoning) = chat(port("chat"), "What is 2+2?");
    let thought = !reasoning.is_empty() || content.contains("</think>");
    assert!(
        thought,
        "thinking model did not think: content={content:?} reasoning={reasoning:?}"
    );
    // Thinking off (chat-template-args enable_thinking=false): only the answer.
    let (content, reasoning) = chat(port("chat-nothink"), "What is 2+2?");
    assert!(!content.is_empty(), "an answer");
    assert!(
        !content.contains("<think>") && !content.contains("</think>") && reasoning.is_empty(),
        "{content:?} {reasoning:?}"
    );

    let e = post(
        port("embedding"),
        "/v1/embeddings",
        &json!({"input": ["hello world", "bonjour"]}),
    );
    let data = e["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    let v: Vec<f64> = data[0]["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    let norm: f64 = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    assert!(
        v.len() >= 16 && (norm - 1.0).abs() < 1e-3,
        "unit vector: len {} norm {norm}",
        v.len()
    );

    // A real crash of the real server: back to ready, restarts = 1, answering again.
    let pid = d.service("chat")["pid"].as_u64().unwrap() as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let s = d.wait_service("chat", 120 * S, |s| {
        s["state"] == "ready" && s["pid"] != pid
    });
    assert_eq!(s["restarts"], 1);
    let (content, reasoning) = chat(port("chat"), "hi");
    assert!(!content.is_empty() || !reasoning.is_empty());

    // The daemon dies (SIGKILL); a new one adopts the three live servers: same pids, no duplicates.
    let pids: Vec<Value> = ["chat", "chat-nothink", "embedding"]
        .iter()
        .map(|n| d.service(n)["pid"].clone())
        .collect();
    d.kill_daemon();
    d.spawn();
    for (n, pid) in ["chat", "chat-nothink", "embedding"].iter().zip(&pids) {
        let s = d.wait_state(n, "ready", 60 * S);
        assert_eq!(
            (&s["pid"], &s["adopted"]),
            (pid, &json!(true)),
            "{n} adopted"
        );
    }
    assert!(!chat(port("chat-nothink"), "hello").0.is_empty());

    // Edit one service in the file: only it restarts.
    let text = std::fs::read_to_string(&d.config).unwrap();
    let i = text.find("[services.chat-nothink]").unwrap();
    let edited = format!(
        "{}{}",
        &text[..i],
        text[i..].replacen("max_tokens = 64", "max_tokens = 65", 1)
    );
    d.write_config(&edited);
    d.wait_service("chat-nothink", 120 * S, |s| {
        s["state"] == "ready" && s["pid"] != pids[1]
    });
    assert_eq!(d.service("chat")["pid"], pids[0]);
    assert_eq!(d.service("embedding")["pid"], pids[2]);

    let pgids = d.recorded_pgids();
    assert_eq!(pgids.len(), 3);
    assert!(d.terminate().success());
    for g in pgids {
        assert!(
            matches!(
                nix::sys::signal::killpg(nix::unistd::Pid::from_raw(g as i32), None),
                Err(nix::errno::Errno::ESRCH)
            ) || !pid_alive(g),
            "group {g} gone"
        );
    }
}
