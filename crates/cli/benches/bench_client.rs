//! The benchmark client's own cost, against a fast scripted SSE server (the one of the metric tests):
//!
//!   cargo bench -p mlx-box --bench bench_client
//!
//! A. overhead per request, one at a time (200 requests of 16 tokens): client-measured E2E − the server's own E2E (in-process server,
//!    which records when it wrote each chunk); TTFT likewise.
//! B. 256 concurrent streams through the real engine (`bench::run`), the server in a child process
//!    (32 tokens per answer, first after 20 ms, then one every 20 ms: 640 ms per request by script):
//!    achieved vs scripted throughput and latency, and the CPU the client process used.
//! C. the same server and load through `wrk` (an established HTTP load tool, Debian package `wrk`) when
//!    it is installed, for comparison of E2E latency and requests/s.
//!
//! Figures go to docs/PERFORMANCE.md.

#[path = "../../core/tests/support/sse_server.rs"]
mod sse_server;

use mlxbox_core::bench::{self, client, BenchOptions, Target};
use std::io::{BufRead, Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TOKENS: u64 = 32;
const TTFT: Duration = Duration::from_millis(20);
const GAP: Duration = Duration::from_millis(20);
const STREAMS: u32 = 256;
const REQUESTS: u32 = 1024;

// Quick mode (common::quick): a few requests per part, 1 s of wrk.
mod common;
use common::quick;

fn script() -> sse_server::Script {
    sse_server::steady(TOKENS, TTFT, GAP)
}

fn pct(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    bench::metrics::percentile(v, q)
}

/// utime + stime of a process, in seconds.
fn cpu_s(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = &s[s.rfind(')').map(|i| i + 2).unwrap_or(0)..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let t = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    // /proc counts in USER_HZ, which Linux fixes at 100 for user space.
    (t(11) + t(12)) / 100.0
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if std::env::var_os("MLXBOX_SSE_SERVE").is_some() {
        return serve();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(overhead_one_at_a_time());
    let (mut child, base) = spawn_server();
    rt.block_on(concurrent(&base, child.id()));
    wrk(&base);
    drop(child.stdin.take()); // the server exits when its stdin closes
    let _ = child.kill();
    let _ = child.wait();
}

/// Child mode: serve the script on 127.0.0.1, print the base URL, exit when stdin closes.
fn serve() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let srv = sse_server::start(script()).await;
        println!("{}", srv.base);
        std::io::stdout().flush().unwrap();
        tokio::task::spawn_blocking(|| {
            let mut buf = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut buf);
        })
        .await
        .unwrap();
    });
}

fn spawn_server() -> (std::process::Child, String) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env("MLXBOX_SSE_SERVE", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (child, line.trim().to_string())
}

async fn overhead_one_at_a_time() {
    // A quick script (16 tokens, 5 ms then every 2 ms): the overhead, not the waiting, is measured.
    let srv = sse_server::start(sse_server::steady(
        16,
        Duration::from_millis(5),
        Duration::from_millis(2),
    ))
    .await;
    let http = client::http_client(Duration::from_secs(30));
    client::stream_chat(&http, &srv.base, &client::chat_body("warm", 8)).await;
    let n = if quick() { 20 } else { 200 };
    let (mut e2e, mut ttft) = (vec![], vec![]);
    for _ in 0..n {
        let o = client::stream_chat(&http, &srv.base, &client::chat_body("hi", 16)).await;
        let s = srv.sent.lock().unwrap().last().cloned().unwrap();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let m = o.record.metrics().expect("measured");
        e2e.push(m.e2e_ms - ms(s.end - s.arrived));
        ttft.push(m.ttft_ms - ms(s.steps[1] - s.arrived));
    }
    println!("A. one request at a time, {n} requests, client − server (ms):");
    for (name, v) in [("E2E", &mut e2e), ("TTFT", &mut ttft)] {
        let met = if pct(v, 90.0) <= 1.0 {
            "met"
        } else {
            "not met"
        };
        println!(
            "   {name:<5} p50 {:.3}  p90 {:.3}  p99 {:.3}  max {:.3}   (target p90 ≤ 1 ms: {met})",
            pct(v, 50.0),
            pct(v, 90.0),
            pct(v, 99.0),
            pct(v, 100.0)
        );
    }
}

async fn concurrent(base: &str, server_pid: u32) {
    let port: u16 = base.rsplit(':').next().unwrap().parse().unwrap();
    let (s, _) = mlxbox_core::config::parse_settings(
        std::path::Path::new("b.toml"),
        &format!("[services.fast]\nport = {port}\nmodel = \"m\"\n"),
    );
    let t = Target::new(&s.unwrap().services[0]);
    let opts = BenchOptions {
        concurrency: vec![STREAMS],
        requests: if quick() { STREAMS } else { REQUESTS },
        max_tokens: TOKENS as u32,
        thinking_check: false,
        ..BenchOptions::default()
    };
    let me = std::process::id();
    let (c0, s0, t0) = (cpu_s(me), cpu_s(server_pid), Instant::now());
    let r = bench::run("perf".into(), opts, vec![t], bench::Hooks::default()).await;
    let wall = t0.elapsed().as_secs_f64();
    let (client_cpu, server_cpu) = (
        (cpu_s(me) - c0) / wall * 100.0,
        (cpu_s(server_pid) - s0) / wall * 100.0,
    );
    let l = &r.services[0].levels[0];
    assert_eq!(l.errors, 0, "requests failed: {:?}", l.first_error);
    let scripted_e2e = (TTFT + GAP * (TOKENS as u32 - 1)).as_secs_f64();
    let ideal_req_s = f64::from(STREAMS) / scripted_e2e;
    println!(
        "B. {STREAMS} concurrent streams, {} requests ({} errors), {} tokens each, scripted E2E {:.0} ms:",
        l.requests,
        l.errors,
        TOKENS,
        scripted_e2e * 1000.0
    );
    let s = |x: Option<bench::Stats>| x.unwrap();
    println!(
        "   TTFT p50 {:.1} p99 {:.1} ms (script 20) · ITL p50 {:.1} p99 {:.1} ms (script 20) · E2E p50 {:.1} p99 {:.1} ms",
        s(l.ttft_ms).p50,
        s(l.ttft_ms).p99,
        s(l.itl_ms).p50,
        s(l.itl_ms).p99,
        s(l.e2e_ms).p50,
        s(l.e2e_ms).p99
    );
    println!(
        "   {:.1} req/s of {:.1} possible ({:.1} %) · {:.0} output tok/s · client CPU {:.0} % of a core, server {:.0} %",
        l.request_s,
        ideal_req_s,
        l.request_s / ideal_req_s * 100.0,
        l.output_tok_s,
        client_cpu,
        server_cpu
    );
}

fn wrk(base: &str) {
    if Command::new("wrk").arg("--version").output().is_err() {
        println!("C. wrk is not installed (Debian: apt-get install wrk): comparison skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let lua = dir.path().join("post.lua");
    std::fs::write(
        &lua,
        format!(
            "wrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\nwrk.body = '{}'\n",
            client::chat_body("hi", TOKENS as u32)
        ),
    )
    .unwrap();
    let out = Command::new("wrk")
        .args([
            "-t2",
            &format!("-c{STREAMS}"),
            if quick() { "-d1s" } else { "-d10s" },
            "--latency",
            "-s",
        ])
        .arg(&lua)
        .arg(format!("{base}/v1/chat/completions"))
        .output()
        .unwrap();
    println!(
        "C. wrk -t2 -c{STREAMS} -d10s --latency (same server, same request; E2E only, no token timing):"
    );
    for l in String::from_utf8_lossy(&out.stdout).lines() {
        let t = l.trim();
        if t.starts_with("50%")
            || t.starts_with("90%")
            || t.starts_with("99%")
            || t.starts_with("Requests/sec")
            || t.contains("requests in")
            || t.starts_with("Latency")
        {
            println!("   {t}");
        }
    }
}
