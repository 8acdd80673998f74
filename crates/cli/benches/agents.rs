//! The agent routes against chat completions, in the same run (needs `wrk` and `nginx`: apt-get install
//! wrk nginx-light):
//!
//!   cargo bench -p mlx-box --bench agents      (MLXBOX_BENCH_SECS=10, MLXBOX_BENCH_ROUNDS=3 by default)
//!
//! 1. One upstream: nginx answering every `/v1/chat/completions` with a fixed SSE stream (a think span,
//!    24 content chunks, usage), run by a release `mlx-box up` as the backend of one service.
//! 2. wrk (1 thread, 32 connections, keep-alive, a Bearer key), streamed: `POST /v1/chat/completions`
//!    (the reference: relayed as it is), `POST /v1/messages`, `POST /v1/responses` with `store: false`
//!    and with the default `store: true` (kept in the responses store), alternating rounds; the best
//!    round of each. Target: each agent route ≥ 0.90× the chat route's req/s.
//! 3. One connection (unloaded): the p50 an agent route adds over the chat route. Target ≤ 0.1 ms.
//! 4. The translation alone (`StreamTranslator`) over a 64 MB chat stream, 4 KB chunks: MB/s of the
//!    backend's stream read. Target ≥ 200 MB/s.
//!
//! Figures go to docs/PERFORMANCE.md. Quick mode (`cargo test --benches`) runs 1 s per case and fails
//! only on errors.

use mlxbox_core::proxy::agent_api::{translate, Api};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_mlx-box");

mod common;
#[path = "../../core/examples/common/agents_workload.rs"]
mod workload;
use common::{
    chat_body, daemon, free_port, nginx_conf, quick, secs_and_rounds, wait_port_or_show, wrk, Case,
    Group, Wrk,
};
use workload::{request, upstream_sse, FINISH};

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

fn cases() -> [Case; 4] {
    let post = |name, path, body| Case {
        name,
        filtered: false,
        method: "POST",
        path,
        body: Some(body),
    };
    [
        post(
            "chat/completions",
            "/v1/chat/completions",
            chat_body("bench/model", true),
        ),
        post(
            "messages",
            "/v1/messages",
            leak(request(Api::Anthropic, false)),
        ),
        post(
            "responses store:false",
            "/v1/responses",
            leak(request(Api::Responses, false)),
        ),
        post(
            "responses (stored)",
            "/v1/responses",
            leak(request(Api::Responses, true)),
        ),
    ]
}

/// MB/s of a chat stream through the translator, and the bytes it wrote.
fn translation_throughput(api: Api, bytes: usize) -> (f64, usize) {
    let body = upstream_sse();
    let mut data = Vec::with_capacity(bytes + body.len() + FINISH.len());
    while data.len() < bytes {
        data.extend_from_slice(body.as_bytes());
    }
    data.extend_from_slice(FINISH.as_bytes());
    let req = match api {
        Api::Anthropic => {
            serde_json::json!({"model": "m", "max_tokens": 8, "stream": true, "messages": [{"role": "user", "content": "hi"}]})
        }
        Api::Responses => {
            serde_json::json!({"model": "m", "stream": true, "input": "hi", "store": false})
        }
    };
    let mut best = 0.0f64;
    let mut out_len = 0;
    for _ in 0..3 {
        let t = translate(api, req.to_string().as_bytes(), &|_| None).unwrap();
        let (_, reply) = t.into_chat("bench", 0, "m", true);
        let (mut tr, first) = reply.translator();
        let t0 = Instant::now();
        let mut n = first.len();
        for chunk in data.chunks(4096) {
            n += tr.push(chunk).len();
        }
        n += tr.finish().len();
        let secs = t0.elapsed().as_secs_f64();
        best = best.max(data.len() as f64 / secs / 1e6);
        out_len = n;
    }
    (best, out_len)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let quick = quick();
    let (secs, rounds) = secs_and_rounds();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (up, front) = (free_port(), free_port());
    let sse = (upstream_sse() + FINISH).replace('\'', "\\'");
    let up_conf = nginx_conf(
        d,
        "upstream",
        "1",
        &format!("  server {{ listen 127.0.0.1:{up}; default_type application/json;\n    location = /v1/chat/completions {{ default_type text/event-stream; return 200 '{sse}'; }}\n    location / {{ return 200 '{{\"object\":\"list\",\"data\":[]}}'; }} }}"),
    );
    let settings = d.join("settings.toml");
    std::fs::write(
        &settings,
        format!(
            "[server]\nhost = \"127.0.0.1\"\napi_keys = [\"bench-key\"]\n[services.fast]\nkind = \"command\"\nport = {front}\nbackend_port = {up}\nmodel = \"bench/model\"\nprobe = \"/v1/models\"\ncommand = [\"nginx\", \"-c\", \"{}\", \"-g\", \"daemon off;\"]\n",
            up_conf.display()
        ),
    )
    .unwrap();
    let main_daemon: Group = daemon(BIN, &settings, &d.join("state"), &d.join("daemon.log"));
    let logs = [d.join("daemon.log"), d.join("upstream.err")];
    let logs: Vec<&Path> = logs.iter().map(|p| p.as_path()).collect();
    for p in [up, front] {
        wait_port_or_show(p, &logs);
    }
    let t0 = Instant::now();
    while !Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
        .args(["-H", "Authorization: Bearer bench-key"])
        .arg(format!("http://127.0.0.1:{front}/v1/models"))
        .output()
        .is_ok_and(|o| o.stdout == b"200")
    {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "mlx-box never ready"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Each route answers a well-formed stream (checked once, with curl).
    for c in cases() {
        let out = Command::new("curl")
            .args(["-sS", "-N", "-H", "Authorization: Bearer bench-key"])
            .args([
                "-H",
                "Content-Type: application/json",
                "-d",
                c.body.unwrap_or(""),
            ])
            .arg(format!("http://127.0.0.1:{front}{}", c.path))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let end = ["[DONE]", "message_stop", "response.completed"];
        assert!(end.iter().any(|e| text.contains(e)), "{}: {text}", c.name);
    }
    let mut best = [Wrk::default(); 4];
    for c in cases() {
        wrk(front, 1, 32, &c, d);
    }
    for round in 0..rounds {
        for (i, c) in cases().iter().enumerate() {
            let w = wrk(front, secs, 32, c, d);
            eprintln!("round {round} {:<22} {w:?}", c.name);
            if w.rps > best[i].rps {
                best[i] = w;
            }
        }
    }
    let mut single = [Wrk::default(); 4];
    for _ in 0..rounds {
        for (i, c) in cases().iter().enumerate() {
            let w = wrk(front, secs.min(5), 1, c, d);
            if single[i].p50_ms == 0.0 || w.p50_ms < single[i].p50_ms {
                single[i] = w;
            }
        }
    }
    drop(main_daemon);

    println!("\nstreamed, 32 connections, keep-alive, one upstream (nginx, a fixed 27-event SSE stream), best of {rounds} rounds of {secs} s; one connection for the added p50:\n");
    println!("| route | req/s | / chat | target | met | p50 (32 conn) | p99 (32 conn) | p50 (1 conn) | added p50 | target |\n|---|---|---|---|---|---|---|---|---|---|");
    let chat = best[0];
    for (i, c) in cases().iter().enumerate() {
        let ratio = best[i].rps / chat.rps;
        let added = single[i].p50_ms - single[0].p50_ms;
        let (t, met, t2) = if i == 0 {
            ("—".to_string(), "—", "—".to_string())
        } else {
            (
                "≥ 0.90".to_string(),
                if ratio >= 0.9 { "yes" } else { "no" },
                format!("≤ 0.1 ms ({})", if added <= 0.1 { "yes" } else { "no" }),
            )
        };
        println!(
            "| {} | {:.0} | {ratio:.2} | {t} | {met} | {:.3} ms | {:.3} ms | {:.3} ms | {added:+.3} ms | {t2} |",
            c.name, best[i].rps, best[i].p50_ms, best[i].p99_ms, single[i].p50_ms
        );
    }
    let mb = if quick { 4 << 20 } else { 64 << 20 };
    for api in [Api::Anthropic, Api::Responses] {
        let (mbs, out) = translation_throughput(api, mb);
        println!(
            "\ntranslation ({api:?}, StreamTranslator, a {} MB chat stream in 4 KB chunks): {mbs:.0} MB/s (target ≥ 200), {out} bytes written",
            mb >> 20
        );
    }
}
