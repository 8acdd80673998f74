//! The API-key proxy against nginx, in the same run (needs `wrk` and `nginx`: apt-get install wrk nginx-light):
//!
//!   cargo bench -p mlx-box --bench proxy            (MLXBOX_BENCH_SECS=10 by default per measurement)
//!
//! 1. A fast upstream: nginx returning a fixed chat-completion JSON (1 worker), supervised by a release
//!    `mlx-box up` as the service's backend.
//! 2. wrk (1 thread, 32 connections, keep-alive, GET /v1/models with a Bearer key) against: the upstream
//!    directly, nginx `proxy_pass` to it (keep-alive pool), and the mlx-box frontend port. Rounds
//!    alternate between the three; the best round of each is reported (the machine is shared).
//! 3. The reasoning filter alone (`SseFilter`) over an mlx_lm-like SSE stream with think spans: MB/s.
//!
//! Figures go to docs/PERFORMANCE.md.

use mlxbox_core::proxy::SseFilter;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_mlx-box");
const BODY: &str = r#"{"id":"chatcmpl-1","object":"chat.completion","model":"m","choices":[{"index":0,"finish_reason":"stop","message":{"role":"assistant","content":"Hello from a fast upstream."}}],"usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12}}"#;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Kills the process group on drop: nothing outlives the bench.
struct Group(Child);
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

fn nginx_conf(dir: &Path, name: &str, workers: &str, server: &str) -> std::path::PathBuf {
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

fn wait_port(port: u16) {
    let t0 = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "port {port} never opened"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Wrk {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
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

fn wrk(port: u16, secs: u64, connections: u32) -> Wrk {
    let out = Command::new("wrk")
        .args([
            "-t1",
            &format!("-c{connections}"),
            &format!("-d{secs}s"),
            "--latency",
        ])
        .args(["-H", "Authorization: Bearer bench-key"])
        .arg(format!("http://127.0.0.1:{port}/v1/models"))
        .output()
        .expect("wrk (apt-get install wrk)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.contains("Non-2xx"),
        "port {port} answered errors:\n{text}"
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

/// An mlx_lm-like stream: a reasoning span in content, then the answer, one token per event.
fn sse_stream(bytes: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes + 256);
    let mut i = 0u64;
    while out.len() < bytes {
        let tok = match i % 40 {
            0 => "<think>".to_string(),
            20 => "</think>".to_string(),
            n => format!(" tok{n}"),
        };
        out.extend_from_slice(
            format!(
                "data: {{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"m\",\"choices\":[{{\"index\":0,\"finish_reason\":null,\"delta\":{{\"role\":\"assistant\",\"content\":{}}}}}]}}\n\n",
                serde_json::to_string(&tok).unwrap()
            )
            .as_bytes(),
        );
        i += 1;
    }
    out.extend_from_slice(b"data: [DONE]\n\n");
    out
}

fn filter_throughput() -> (f64, usize) {
    let data = sse_stream(64 << 20);
    let mut best = 0.0f64;
    let mut kept = 0;
    for _ in 0..3 {
        let mut f = SseFilter::default();
        let t0 = Instant::now();
        let mut n = 0;
        for chunk in data.chunks(4096) {
            n += f.push(chunk).expect("events are short").len();
        }
        let secs = t0.elapsed().as_secs_f64();
        best = best.max(data.len() as f64 / secs / 1e6);
        kept = n;
    }
    (best, kept)
}

fn main() {
    let secs: u64 = std::env::var("MLXBOX_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (up, ngx, front) = (free_port(), free_port(), free_port());

    // The upstream: nginx with a fixed body, run by mlx-box as the service (so the proxy sees it ready).
    let body = BODY.replace('\'', "\\'");
    let up_conf = nginx_conf(
        d,
        "upstream",
        "1",
        &format!("  server {{ listen 127.0.0.1:{up}; default_type application/json; location / {{ return 200 '{body}'; }} }}"),
    );
    let settings = d.join("settings.toml");
    std::fs::write(
        &settings,
        format!(
            "[server]\nhost = \"127.0.0.1\"\napi_keys = [\"bench-key\"]\n[services.fast]\nkind = \"command\"\nport = {front}\nbackend_port = {up}\nprobe = \"/v1/models\"\ncommand = [\"nginx\", \"-c\", \"{}\", \"-g\", \"daemon off;\"]\n",
            up_conf.display()
        ),
    )
    .unwrap();
    let daemon = Group(
        Command::new(BIN)
            .args(["up", "--config"])
            .arg(&settings)
            .arg("--state-dir")
            .arg(d.join("state"))
            .env("MLXBOX_LOG", "warn")
            .env("DBUS_SESSION_BUS_ADDRESS", "disabled:")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("daemon.log")).unwrap())
            .process_group(0)
            .spawn()
            .unwrap(),
    );
    // nginx as the reference proxy: proxy_pass with a keep-alive pool, as one would configure it.
    let ngx_conf = nginx_conf(
        d,
        "proxy",
        "auto",
        &format!("  upstream up {{ server 127.0.0.1:{up}; keepalive 64; }}\n  server {{ listen 127.0.0.1:{ngx}; location / {{ proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection \"\"; proxy_buffering off; }} }}"),
    );
    let nginx = Group(
        Command::new("nginx")
            .arg("-c")
            .arg(&ngx_conf)
            .args(["-g", "daemon off;"])
            .process_group(0)
            .spawn()
            .expect("nginx (apt-get install nginx-light)"),
    );
    wait_port(up);
    wait_port(ngx);
    wait_port(front);
    // The frontend answers 503 until the supervisor has seen the backend ready.
    let t0 = Instant::now();
    loop {
        let out = Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-H",
                "Authorization: Bearer bench-key",
            ])
            .arg(format!("http://127.0.0.1:{front}/v1/models"))
            .output()
            .unwrap();
        if out.stdout == b"200" {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "mlx-box proxy never ready"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // Warm-up, then alternating rounds; the best of each (a shared machine only ever slows a round).
    for p in [up, ngx, front] {
        wrk(p, 2, 32);
    }
    let names = ["upstream direct", "nginx proxy_pass", "mlx-box proxy"];
    let mut best = [Wrk::default(); 3];
    for round in 0..3 {
        for (i, p) in [up, ngx, front].into_iter().enumerate() {
            let w = wrk(p, secs, 32);
            eprintln!("round {round} {:<18} {w:?}", names[i]);
            if w.rps > best[i].rps {
                best[i].rps = w.rps;
            }
            if best[i].p50_ms == 0.0 || w.p50_ms < best[i].p50_ms {
                best[i].p50_ms = w.p50_ms;
                best[i].p99_ms = w.p99_ms;
            }
        }
    }
    // The latency a proxy adds, measured unloaded (one connection, one request at a time): at 32
    // connections on 2 cores the p50 is mostly queueing for a core, for nginx as much as for us.
    let mut single = [Wrk::default(); 3];
    for _ in 0..3 {
        for (i, p) in [up, ngx, front].into_iter().enumerate() {
            let w = wrk(p, secs, 1);
            if single[i].p50_ms == 0.0 || w.p50_ms < single[i].p50_ms {
                single[i] = w;
            }
        }
    }
    drop(nginx);
    drop(daemon);

    println!("\n| path | requests/s | p50 | p99 |\n|---|---|---|---|");
    for (n, w) in names.iter().zip(best) {
        println!(
            "| {n} | {:.0} | {:.3} ms | {:.3} ms |",
            w.rps, w.p50_ms, w.p99_ms
        );
    }
    let ratio = best[2].rps / best[1].rps;
    let added = best[2].p50_ms - best[0].p50_ms;
    let added_ngx = best[1].p50_ms - best[0].p50_ms;
    println!(
        "\nmlx-box / nginx requests/s: {ratio:.2} (target ≥ 0.80)\nadded p50 over direct at 32 connections: mlx-box {added:.3} ms, nginx {added_ngx:.3} ms"
    );
    println!("\none connection (unloaded): | path | p50 | p99 |");
    for (n, w) in names.iter().zip(single) {
        println!("| {n} | {:.3} ms | {:.3} ms |", w.p50_ms, w.p99_ms);
    }
    println!(
        "added p50 over direct, unloaded: mlx-box {:.3} ms (target ≤ 0.2 ms), nginx {:.3} ms",
        single[2].p50_ms - single[0].p50_ms,
        single[1].p50_ms - single[0].p50_ms
    );
    let (mbs, kept) = filter_throughput();
    println!("reasoning filter (SseFilter, 64 MB mlx_lm-like stream, 4 KB chunks): {mbs:.0} MB/s (target ≥ 50), {kept} bytes kept");
}
