//! The API-key proxy in front of a backend (the fault server): keys, 503 while not ready, 429 past the
//! queue, model alias, and the reasoning filter on JSON and on SSE streams with tags split across chunks.

mod common;
use common::*;
use std::time::Duration;

const S: Duration = Duration::from_secs(1);
const JSON: (&str, &str) = ("Content-Type", "application/json");

fn config(front: u16, back: u16, mode: &str, extra: &str) -> String {
    format!(
        "[server]\nhost = \"127.0.0.1\"\napi_keys = [\"k-one\", \"k-two\"]\n[services.chat]\nkind = \"command\"\nport = {front}\nbackend_port = {back}\nmodel = \"org/real-model\"\nprobe = \"chat\"\ncommand = [\"python3\", \"{}\", \"--mode\", \"{mode}\", \"--delay\", \"1\", \"--think\", \"--host\", \"{{host}}\", \"--port\", \"{{port}}\"]\n{extra}\n",
        fault_server()
    )
}

#[test]
fn keys_alias_filter_and_unavailable() {
    let (front, back) = (free_port(), free_port());
    let d = Daemon::start(&config(front, back, "ok", "filter_reasoning = true"));
    d.wait_state("chat", "ready", 20 * S);
    let body = r#"{"messages":[{"role":"user","content":"hi"}],"model":"chat"}"#;

    let (code, head, err) = http(front, "POST", "/v1/chat/completions", &[JSON], body);
    assert_eq!(code, 401, "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("www-authenticate: bearer"),
        "{head}"
    );
    assert!(err.contains("invalid_request_error"), "{err}");
    let (code, ..) = http(
        front,
        "POST",
        "/v1/chat/completions",
        &[JSON, ("Authorization", "Bearer k-wrong")],
        body,
    );
    assert_eq!(code, 401);

    let (code, _, out) = http(
        front,
        "POST",
        "/v1/chat/completions",
        &[JSON, ("Authorization", "Bearer k-two")],
        body,
    );
    assert_eq!(code, 200, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v["model"], "org/real-model",
        "service-name alias rewritten to the model id"
    );
    assert_eq!(v["choices"][0]["message"]["content"], "Answer");
    assert!(v["choices"][0]["message"].get("reasoning").is_none());

    // Streaming: tags split across chunks, a reasoning-only chunk: none of it reaches the client.
    let stream = r#"{"messages":[{"role":"user","content":"hi"}],"stream":true}"#;
    let (code, _, sse) = http(
        front,
        "POST",
        "/v1/chat/completions",
        &[JSON, ("Authorization", "Bearer k-one")],
        stream,
    );
    assert_eq!(code, 200);
    let text: String = sse
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert_eq!(text, "Answer", "{sse}");
    assert!(
        !sse.contains("reasoning") && !sse.contains("think"),
        "{sse}"
    );
    assert!(sse.contains("data: [DONE]"));

    // Not ready → 503 with Retry-After, at once.
    assert!(d.cli(&["stop", "chat"]).status.success());
    let (code, head, _) = http(
        front,
        "POST",
        "/v1/chat/completions",
        &[JSON, ("Authorization", "Bearer k-one")],
        body,
    );
    assert_eq!(code, 503);
    assert!(
        head.to_ascii_lowercase().contains("retry-after: 5"),
        "{head}"
    );
}

#[test]
fn past_the_queue_is_429() {
    let (front, back) = (free_port(), free_port());
    let d = Daemon::start(&config(
        front,
        back,
        "slow",
        "max_concurrency = 1\nready_timeout_s = 30",
    ));
    d.wait_state("chat", "ready", 30 * S);
    let body = r#"{"messages":[{"role":"user","content":"hi"}]}"#;
    // 1 in flight + 4 queued are admitted; the rest are refused at once.
    let handles: Vec<_> = (0..8)
        .map(|_| {
            std::thread::spawn(move || {
                http(
                    front,
                    "POST",
                    "/v1/chat/completions",
                    &[JSON, ("Authorization", "Bearer k-one")],
                    body,
                )
                .0
            })
        })
        .collect();
    let mut codes: Vec<u16> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    codes.sort();
    assert_eq!(codes.iter().filter(|&&c| c == 429).count(), 3, "{codes:?}");
    assert_eq!(codes.iter().filter(|&&c| c == 200).count(), 5, "{codes:?}");
}

#[test]
fn request_timeout_is_504_and_restart_is_503() {
    let (front, back) = (free_port(), free_port());
    // Each completion takes 3 s; the proxy waits 1 s (the readiness probe is the supervisor's, not bound
    // by it).
    let d = Daemon::start(
        &config(
            front,
            back,
            "slow",
            "ready_timeout_s = 30\nrequest_timeout_s = 1",
        )
        .replace("\"--delay\", \"1\"", "\"--delay\", \"3\""),
    );
    d.wait_state("chat", "ready", 40 * S);
    let body = r#"{"messages":[{"role":"user","content":"hi"}]}"#;
    let t0 = std::time::Instant::now();
    let (code, _, err) = http(
        front,
        "POST",
        "/v1/chat/completions",
        &[JSON, ("Authorization", "Bearer k-one")],
        body,
    );
    let took = t0.elapsed();
    assert_eq!(code, 504, "{err}");
    assert!(err.contains("request_timeout_s"), "{err}");
    assert!(took < std::time::Duration::from_millis(2500), "{took:?}");

    // A restart: while the new process starts, the port answers 503 at once (never a hang).
    assert!(d.cli(&["restart", "chat", "--no-wait"]).status.success());
    let t0 = std::time::Instant::now();
    let (code, head, _) = http(
        front,
        "POST",
        "/v1/chat/completions",
        &[JSON, ("Authorization", "Bearer k-one")],
        body,
    );
    assert_eq!(code, 503, "{head}");
    assert!(head.to_ascii_lowercase().contains("retry-after"), "{head}");
    assert!(
        t0.elapsed() < 5 * S,
        "answered at once, not held: {:?}",
        t0.elapsed()
    );
    d.wait_state("chat", "ready", 40 * S);
}

/// `GET /metrics` on the control socket.
/// What the proxy served, as Prometheus reads it: vLLM's histograms count every request, the token
/// counters equal the usage the client was sent, the refusals and the service state are there.
#[test]
fn metrics_count_what_the_proxy_served() {
    let (front, back, scrape_port) = (free_port(), free_port(), free_port());
    let text = format!(
        "{}\n[metrics]\nlisten = \"127.0.0.1:{scrape_port}\"\n",
        config(front, back, "ok", "")
    );
    let d = Daemon::start(&text);
    d.wait_state("chat", "ready", 20 * S);
    let auth = ("Authorization", "Bearer k-one");
    let me = [("model_name", "org/real-model"), ("service", "chat")];
    let (mut completion, mut prompt) = (0.0, 0.0);
    for _ in 0..3 {
        let body = r#"{"messages":[{"role":"user","content":"hi"}]}"#;
        let (code, _, out) = http(front, "POST", "/v1/chat/completions", &[JSON, auth], body);
        assert_eq!(code, 200, "{out}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        completion += v["usage"]["completion_tokens"].as_f64().unwrap();
        prompt += v["usage"]["prompt_tokens"].as_f64().unwrap();
    }
    let m = scrape(&d);
    assert_eq!(
        sample(&m, "vllm:generation_tokens_total", &me),
        Some(completion),
        "{m}"
    );
    assert_eq!(sample(&m, "vllm:prompt_tokens_total", &me), Some(prompt));
    assert_eq!(
        sample(&m, "vllm:e2e_request_latency_seconds_count", &me),
        Some(3.0)
    );
    assert_eq!(
        sample(&m, "vllm:time_to_first_token_seconds_count", &me),
        Some(3.0)
    );
    assert_eq!(
        sample(&m, "vllm:request_queue_time_seconds_count", &me),
        Some(3.0)
    );

    // Two streams: counted when their last byte has gone; their finish reason is read from the stream.
    for _ in 0..2 {
        let body = r#"{"messages":[{"role":"user","content":"hi"}],"stream":true}"#;
        let (code, _, sse) = http(front, "POST", "/v1/chat/completions", &[JSON, auth], body);
        assert_eq!(code, 200);
        assert!(sse.contains("[DONE]"));
    }
    // A refused request is a refusal, not a request the model answered.
    let (code, ..) = http(front, "POST", "/v1/chat/completions", &[JSON], "{}");
    assert_eq!(code, 401);
    let m = scrape(&d);
    // The same exposition on the [metrics] listen port, for Prometheus (which cannot read a Unix socket).
    let (code, _, tcp) = http(scrape_port, "GET", "/metrics", &[], "");
    assert_eq!(code, 200);
    assert_eq!(
        sample(&tcp, "vllm:e2e_request_latency_seconds_count", &me),
        Some(5.0),
        "{tcp}"
    );
    assert_eq!(
        sample(&m, "vllm:e2e_request_latency_seconds_count", &me),
        Some(5.0),
        "{m}"
    );
    assert_eq!(
        sample(&m, "vllm:time_to_first_token_seconds_count", &me),
        Some(5.0)
    );
    let stop = [me[0], me[1], ("finished_reason", "stop")];
    assert_eq!(sample(&m, "vllm:request_success_total", &stop), Some(5.0));
    // One gap per pair of text chunks as they arrived (the fault server may write a stream in one go).
    assert!(sample(&m, "vllm:inter_token_latency_seconds_count", &me).is_some());
    assert_eq!(sample(&m, "vllm:num_requests_running", &me), Some(0.0));
    let refused = [("service", "chat"), ("code", "401")];
    assert_eq!(
        sample(&m, "mlxbox_proxy_refused_requests_total", &refused),
        Some(1.0)
    );
    let ready = [("service", "chat"), ("state", "ready")];
    assert_eq!(sample(&m, "mlxbox_service_state", &ready), Some(1.0));
    assert!(sample(&m, "mlxbox_memory_bytes", &[("kind", "total")]).unwrap_or(0.0) > 0.0);

    promtool_check(&m);

    // `[metrics] requests = false`: the proxy serves on, the histograms no longer move.
    let hash = |d: &Daemon| d.status()["config"]["content_hash"].clone();
    let before = hash(&d);
    d.write_config(&format!("{text}requests = false\n"));
    assert!(
        wait_until(10 * S, || hash(&d) != before),
        "the edit was not applied"
    );
    std::thread::sleep(Duration::from_millis(300));
    let body = r#"{"messages":[{"role":"user","content":"hi"}]}"#;
    let (code, _, out) = http(front, "POST", "/v1/chat/completions", &[JSON, auth], body);
    assert_eq!(code, 200, "{out}");
    let m = scrape(&d);
    assert_eq!(
        sample(&m, "vllm:e2e_request_latency_seconds_count", &me),
        Some(5.0),
        "not timed: {m}"
    );
    assert_eq!(d.control_json("/v1/proxy/stats")["chat"]["requests"], 7);
}
