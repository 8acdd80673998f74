//! The cost of a Prometheus scrape of a daemon with many services:
//!
//!   cargo bench -p mlx-box --bench metrics
//!
//! A release `mlx-box up` runs 50 proxied services, each an nginx (one worker) that answers a chat
//! completion, so every service is ready and its proxy measures real replies. Two requests go through
//! each frontend, so every service has its histograms. Then `GET /metrics` on the `[metrics] listen`
//! port over one keep-alive connection, as Prometheus scrapes: p50, p90 and the largest of 200 scrapes
//! back to back, and of 20 one second apart (the daemon idle in between, its caches cold, as under a
//! real scrape interval), against nginx serving a file of the same size on the same kind of connection
//! (the transport's share), in the same run.
//!
//! Quick mode (`common::quick`): 10 services, 20 scrapes, 3 spaced.
//!
//! Figures go to docs/PERFORMANCE.md.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_mlx-box");

mod common;
use common::{daemon, free_ports, nginx_conf, quick, upstream_conf, wait_port, Group};

/// A keep-alive HTTP/1.1 client for GETs whose answers have a Content-Length.
struct Conn(BufReader<std::net::TcpStream>);

impl Conn {
    fn open(port: u16) -> Conn {
        let s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_nodelay(true).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Conn(BufReader::new(s))
    }

    /// The body of `GET path` (asserting a 200).
    fn get(&mut self, path: &str, headers: &str) -> Vec<u8> {
        let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}\r\n");
        self.0.get_mut().write_all(req.as_bytes()).unwrap();
        let mut status = String::new();
        self.0.read_line(&mut status).unwrap();
        assert!(status.contains(" 200 "), "GET {path}: {status}");
        let mut len = None;
        loop {
            let mut line = String::new();
            self.0.read_line(&mut line).unwrap();
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse::<usize>().ok();
                }
            }
        }
        let mut body = vec![0; len.expect("a Content-Length")];
        self.0.read_exact(&mut body).unwrap();
        body
    }
}

fn post(port: u16) {
    let body = r#"{"messages":[{"role":"user","content":"hi"}],"max_tokens":8}"#;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer bench-key\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    assert!(out.starts_with("HTTP/1.1 200"), "port {port}: {out}");
}

/// (p50, p90, max) in ms of `n` timed GETs on one connection, `gap` apart, and the body's size.
fn time_gets(port: u16, path: &str, n: usize, gap: Duration) -> (f64, f64, f64, usize) {
    let mut c = Conn::open(port);
    let size = c.get(path, "").len(); // warm-up
    let mut v: Vec<f64> = (0..n)
        .map(|_| {
            std::thread::sleep(gap);
            let t = Instant::now();
            c.get(path, "");
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    v.sort_by(f64::total_cmp);
    let p = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (p(0.5), p(0.9), v[v.len() - 1], size)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let quick = quick();
    let (services, scrapes) = if quick { (10, 20) } else { (50, 200) };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut all = free_ports(2 * services + 2);
    let (scrape_port, ref_port) = (all[0], all[1]);
    let ports: Vec<(u16, u16)> = all.split_off(2).chunks(2).map(|p| (p[0], p[1])).collect();

    let mut settings = format!(
        "[server]\nhost = \"127.0.0.1\"\napi_keys = [\"bench-key\"]\n[metrics]\nlisten = \"127.0.0.1:{scrape_port}\"\n"
    );
    for (i, (front, back)) in ports.iter().enumerate() {
        let conf = upstream_conf(d, &format!("upstream{i:02}"), *back);
        settings.push_str(&format!(
            "[services.s{i:02}]\nkind = \"command\"\nport = {front}\nbackend_port = {back}\nmodel = \"bench/model-{i:02}\"\nprobe = \"/v1/models\"\ncommand = [\"nginx\", \"-c\", \"{}\", \"-g\", \"daemon off;\"]\n",
            conf.display()
        ));
    }
    let path = d.join("settings.toml");
    std::fs::write(&path, settings).unwrap();
    let daemon = daemon(BIN, &path, &d.join("state"), &d.join("daemon.log"));
    let t0 = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", scrape_port)).is_err() {
        let log = std::fs::read_to_string(d.join("daemon.log")).unwrap_or_default();
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "no /metrics port: {log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Every service ready (its frontend answers, not 503) and with two measured requests.
    let t0 = Instant::now();
    let ready = |m: &str| m.matches("state=\"ready\"} 1").count();
    loop {
        let m = String::from_utf8(Conn::open(scrape_port).get("/metrics", "")).unwrap();
        if ready(&m) == services {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "{} of {services} ready:\n{m}",
            ready(&m)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    for (front, _) in &ports {
        post(*front);
        post(*front);
    }

    // The reference: nginx serving a file of the exposition's size on the same kind of connection.
    let exposition = Conn::open(scrape_port).get("/metrics", "");
    let text = String::from_utf8_lossy(&exposition);
    assert_eq!(
        text.matches("vllm:e2e_request_latency_seconds_count{")
            .count(),
        services,
        "every service has its histograms"
    );
    std::fs::write(d.join("metrics.txt"), &exposition).unwrap();
    let ref_conf = nginx_conf(
        d,
        "reference",
        "1",
        &format!(
            "  server {{ listen 127.0.0.1:{ref_port}; location = /metrics {{ alias {}/metrics.txt; }} }}",
            d.display()
        ),
    );
    let reference = Group(
        Command::new("nginx")
            .arg("-c")
            .arg(&ref_conf)
            .args(["-g", "daemon off;"])
            .process_group(0)
            .spawn()
            .unwrap(),
    );
    wait_port(ref_port);

    let mine = time_gets(scrape_port, "/metrics", scrapes, Duration::ZERO);
    let file = time_gets(ref_port, "/metrics", scrapes, Duration::ZERO);
    // As Prometheus scrapes: one at a time with the daemon idle in between (its caches gone cold).
    let spaced = if quick { 3 } else { 20 };
    let mine_spaced = time_gets(scrape_port, "/metrics", spaced, Duration::from_secs(1));
    let file_spaced = time_gets(ref_port, "/metrics", spaced, Duration::from_secs(1));
    drop(reference);
    drop(daemon);

    let series = text.lines().filter(|l| !l.starts_with('#')).count();
    println!("\n`GET /metrics` of {services} proxied services with their histograms ({} KB, {series} series), on one keep-alive connection:\n", mine.3 / 1024);
    println!(
        "| server | scrapes | p50 | p90 | max | target | met |\n|---|---|---|---|---|---|---|"
    );
    for (what, n, m, f) in [
        ("back to back", scrapes, mine, file),
        ("one a second", spaced, mine_spaced, file_spaced),
    ] {
        println!(
            "| mlx-box `/metrics` | {n} {what} | {:.2} ms | {:.2} ms | {:.2} ms | ≤ 5 ms (p90) | {} |",
            m.0,
            m.1,
            m.2,
            if m.1 <= 5.0 { "yes" } else { "no" }
        );
        println!(
            "| nginx, a file of the same size | {n} {what} | {:.2} ms | {:.2} ms | {:.2} ms | (reference) | |",
            f.0, f.1, f.2
        );
    }
}
