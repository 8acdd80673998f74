//! What the benches share: ports, process groups that die with the bench, nginx as upstream and as
//! reference, and quick mode.
#![allow(dead_code)] // each bench uses its share

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// Quick mode: `cargo test --benches` (cargo passes `--bench` only under `cargo bench`), or
/// `MLXBOX_BENCH_QUICK=1`. A few rounds; it fails on errors and panics, never on a speed target.
pub fn quick() -> bool {
    std::env::var_os("MLXBOX_BENCH_QUICK").is_some() || !std::env::args().any(|a| a == "--bench")
}

/// `MLXBOX_BENCH_SECS` per measurement and `MLXBOX_BENCH_ROUNDS` (quick mode: 1 s, 1 round; else 10 s, 3).
pub fn secs_and_rounds() -> (u64, usize) {
    let env = |k: &str| std::env::var(k).ok().and_then(|s| s.parse::<u64>().ok());
    let quick = quick();
    (
        env("MLXBOX_BENCH_SECS").unwrap_or(if quick { 1 } else { 10 }),
        env("MLXBOX_BENCH_ROUNDS").unwrap_or(if quick { 1 } else { 3 }) as usize,
    )
}

/// A fixed chat completion, as an upstream answers it.
pub const BODY: &str = r#"{"id":"chatcmpl-1","object":"chat.completion","model":"m","choices":[{"index":0,"finish_reason":"stop","message":{"role":"assistant","content":"Hello from a fast upstream."}}],"usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12}}"#;

#[path = "../../tests/common/ports.rs"]
mod ports;
#[allow(unused_imports)] // each bench uses its share
pub use ports::{free_port, free_ports};

/// A release `mlx-box up` on `config` and `state` (logging warnings to `log`, no keyring), in a group of its
/// own that dies with the bench.
pub fn daemon(bin: &str, config: &Path, state: &Path, log: &Path) -> Group {
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};
    Group(
        Command::new(bin)
            .args(["up", "--config"])
            .arg(config)
            .arg("--state-dir")
            .arg(state)
            .env("MLXBOX_LOG", "warn")
            .env("DBUS_SESSION_BUS_ADDRESS", "disabled:")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .process_group(0)
            .spawn()
            .unwrap(),
    )
}

/// Kills the process group on drop: nothing outlives the bench.
pub struct Group(pub Child);
impl Drop for Group {
    fn drop(&mut self) {
        use nix::sys::signal::{killpg, Signal};
        let pg = nix::unistd::Pid::from_raw(self.0.id() as i32);
        // SIGTERM first: the daemon stops its services (the upstream nginx) before it exits.
        let _ = killpg(pg, Signal::SIGTERM);
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.0.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = killpg(pg, Signal::SIGKILL);
        let _ = self.0.wait();
    }
}

pub fn nginx_conf(dir: &Path, name: &str, workers: &str, server: &str) -> std::path::PathBuf {
    let conf = dir.join(format!("{name}.conf"));
    std::fs::write(
        &conf,
        format!(
            "worker_processes {workers};\npid {d}/{name}.pid;\nerror_log {d}/{name}.err warn;\nevents {{ worker_connections 1024; }}\nhttp {{\n  access_log off;\n  client_body_temp_path {d}/tmp-{name};\n  proxy_temp_path {d}/ptmp-{name};\n  keepalive_requests 1000000;\n{server}\n}}\n",
            d = dir.display()
        ),
    )
    .unwrap();
    conf
}

pub fn wait_port(port: u16) {
    wait_port_or_show(port, &[]);
}

/// Waits up to 60 s for `port` to accept; if it never does, the panic shows the tail of each of `logs`
/// (the daemon's, nginx's), so a CI failure says why.
pub fn wait_port_or_show(port: u16, logs: &[&Path]) {
    let t0 = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if t0.elapsed() > Duration::from_secs(60) {
            let tails: Vec<String> = logs
                .iter()
                .map(|p| {
                    let text = std::fs::read_to_string(p).unwrap_or_default();
                    let tail: Vec<&str> = text.lines().rev().take(20).collect();
                    let tail: Vec<&str> = tail.into_iter().rev().collect();
                    format!("--- {}\n{}", p.display(), tail.join("\n"))
                })
                .collect();
            panic!("port {port} never opened\n{}", tails.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An nginx serving a fixed chat completion (and, for `?stream=1`, a fixed SSE stream with think spans).
pub fn upstream_conf(d: &Path, name: &str, port: u16) -> std::path::PathBuf {
    let body = BODY.replace('\'', "\\'");
    let sse = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"<think>hmm</think>\"}}]}\n\ndata: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello from a fast upstream.\"}}]}\n\ndata: {\"choices\":[{\"index\":0,\"finish_reason\":\"stop\",\"delta\":{}}],\"usage\":{\"completion_tokens\":7}}\n\ndata: [DONE]\n\n";
    nginx_conf(
        d,
        name,
        "1",
        &format!(
            "  server {{ listen 127.0.0.1:{port}; default_type application/json;\n    location = /v1/chat/completions {{ if ($arg_stream) {{ rewrite ^ /sse last; }} return 200 '{body}'; }}\n    location = /sse {{ internal; default_type text/event-stream; return 200 '{sse}'; }}\n    location / {{ return 200 '{body}'; }} }}"
        ),
    )
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Wrk {
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

fn ms(s: &str) -> f64 {
    let s = s.trim();
    if let Some(v) = s.strip_suffix("us") {
        v.parse::<f64>().unwrap() / 1000.0
    } else if let Some(v) = s.strip_suffix("ms") {
        v.parse().unwrap()
    } else if let Some(v) = s.strip_suffix('s') {
        v.parse::<f64>().unwrap() * 1000.0
    } else {
        f64::NAN
    }
}

/// One request shape, as users send it.
#[derive(Clone, Copy)]
pub struct Case {
    pub name: &'static str,
    /// Which mlx-box service: the plain one or the one with `filter_reasoning`.
    pub filtered: bool,
    pub method: &'static str,
    pub path: &'static str,
    pub body: Option<&'static str>,
}

/// A chat request of the size clients send (a system prompt, a question), with the given `model` and
/// `stream` fields spliced in.
pub fn chat_body(model: &str, stream: bool) -> &'static str {
    let text = format!(
        r#"{{"model":"{model}","messages":[{{"role":"system","content":"You are a careful assistant. Answer in two short paragraphs, cite nothing you cannot check, and say so when you do not know. Prefer plain words; avoid lists unless asked."}},{{"role":"user","content":"Explain, for someone who runs a few local language models on one workstation, why the memory a model needs grows with the context length, and what the KV cache is. Then say how much memory an 8B model at 4-bit with a 32k context needs, roughly."}}],"max_tokens":256,"temperature":0.7,"top_p":0.95,"stream":{stream}}}"#
    );
    Box::leak(text.into_boxed_str())
}

/// wrk (1 thread, `connections`, keep-alive, the bench key) for `secs` on one request shape; panics
/// on any non-2xx answer or socket error.
pub fn wrk(port: u16, secs: u64, connections: u32, case: &Case, dir: &Path) -> Wrk {
    let script = dir.join(format!(
        "case-{}.lua",
        case.name.replace([' ', '/', '+'], "_")
    ));
    let mut lua = format!(
        "wrk.method = \"{}\"\nwrk.path = \"{}\"\nwrk.headers[\"Authorization\"] = \"Bearer bench-key\"\n",
        case.method, case.path
    );
    if let Some(b) = case.body {
        lua.push_str("wrk.headers[\"Content-Type\"] = \"application/json\"\n");
        lua.push_str(&format!("wrk.body = [==[{b}]==]\n"));
    }
    std::fs::write(&script, lua).unwrap();
    let out = Command::new("wrk")
        .args([
            "-t1",
            &format!("-c{connections}"),
            &format!("-d{secs}s"),
            "--latency",
            "-s",
        ])
        .arg(&script)
        .arg(format!("http://127.0.0.1:{port}"))
        .output()
        .expect("wrk (apt-get install wrk)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.contains("Non-2xx") && !text.contains("Socket errors"),
        "port {port} ({}) answered errors:\n{text}",
        case.name
    );
    let mut w = Wrk::default();
    for l in text.lines() {
        let l = l.trim();
        if let Some(v) = l.strip_prefix("Requests/sec:") {
            w.rps = v.trim().parse().unwrap();
        } else if let Some(v) = l.strip_prefix("50%") {
            w.p50_ms = ms(v);
        } else if let Some(v) = l.strip_prefix("99%") {
            w.p99_ms = ms(v);
        }
    }
    w
}
