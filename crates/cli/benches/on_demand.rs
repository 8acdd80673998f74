//! On demand, each figure beside its reference measured in the same run:
//!
//!   cargo bench -p mlx-box --bench on_demand        (needs nginx and wrk, as the proxy bench)
//!
//! The services' servers are nginx answering a fixed chat completion: up in milliseconds, so what is
//! measured is mlx-box's part of a load, not a model's.
//! 1. The cold request: an idle on-demand service, one POST /v1/chat/completions through its port.
//!    Reference: the same nginx started by hand and polled every millisecond until it answers (the
//!    server's own start), and a warm request. Added by the on-demand path = cold − start − warm
//!    (target ≤ 50 ms p50).
//! 2. The swap: two on-demand services under a budget that fits one; requests alternate A, B, A, …, so
//!    each one unloads the other first (its process group gone) and then loads its own.
//! 3. The one endpoint (`[server] port`) against the service's own port: wrk, 32 connections, the chat
//!    POST clients send, alternating rounds, best of each (target: ≥ 0.95 of the own port's req/s).
//!
//! `MLXBOX_BENCH_SECS` (default 10) per wrk measurement, `MLXBOX_BENCH_ROUNDS` (default 3); cold and swap
//! requests: 30 each (quick mode: 3, 1 s, 1 round).

use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_mlx-box");

mod common;
use common::{
    chat_body, daemon, free_ports, quick, secs_and_rounds, upstream_conf, wait_port, wrk, Case,
    Group,
};

/// One POST on a fresh connection: its latency, or the answer when it is not a 200.
fn try_post(port: u16, model: &str) -> Result<Duration, String> {
    let body = chat_body(model, false);
    let t0 = Instant::now();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer bench-key\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let took = t0.elapsed();
    let text = String::from_utf8_lossy(&out);
    if text.starts_with("HTTP/1.1 200") {
        Ok(took)
    } else {
        Err(text.into_owned())
    }
}

/// One POST that must succeed.
fn post(port: u16, model: &str) -> Duration {
    try_post(port, model).unwrap_or_else(|e| panic!("port {port}: {e}"))
}

fn cli(state: &Path, args: &[&str]) {
    let out = Command::new(BIN)
        .args(args)
        .arg("--state-dir")
        .arg(state)
        .env("DBUS_SESSION_BUS_ADDRESS", "disabled:")
        .output()
        .unwrap();
    assert!(out.status.success(), "mlx-box {args:?}: {out:?}");
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The server's own start: nginx on `conf` spawned and polled every millisecond until it answers.
fn server_start(conf: &Path, port: u16) -> f64 {
    use std::os::unix::process::CommandExt;
    let t0 = Instant::now();
    let g = Group(
        Command::new("nginx")
            .arg("-c")
            .arg(conf)
            .args(["-g", "daemon off;"])
            .process_group(0)
            .spawn()
            .expect("nginx"),
    );
    loop {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.write_all(
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
            let mut out = Vec::new();
            let _ = s.read_to_end(&mut out);
            if out.starts_with(b"HTTP/1.1 200") {
                break;
            }
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "nginx never answered"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let took = ms(t0.elapsed());
    drop(g);
    // Its port must be free again before the next start.
    while std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
        std::thread::sleep(Duration::from_millis(1));
    }
    took
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let quick = quick();
    let (secs, rounds) = secs_and_rounds();
    let n = if quick { 3 } else { 30 };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let p = free_ports(8);
    let (fa, ba, fb, bb, ff, bf, ep, solo) = (p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7]);
    let service = |name: &str, front: u16, back: u16, extra: &str| {
        let conf = upstream_conf(d, name, back);
        format!(
            "[services.{name}]\nkind = \"command\"\nport = {front}\nbackend_port = {back}\nmodel = \"bench/{name}\"\nprobe = \"chat\"\nstop_timeout_s = 5\ncommand = [\"nginx\", \"-c\", \"{}\", \"-g\", \"daemon off;\"]\n{extra}\n",
            conf.display()
        )
    };
    let settings = d.join("settings.toml");
    std::fs::write(
        &settings,
        format!(
            "[server]\nhost = \"127.0.0.1\"\napi_keys = [\"bench-key\"]\nport = {ep}\n[app]\nmemory_budget_gb = 1.0\n[alerts]\nheadroom_warn_percent = 0\n{}{}{}",
            service("a", fa, ba, "on_demand = true\nmemory_gb = 0.6"),
            service("b", fb, bb, "on_demand = true\nmemory_gb = 0.6"),
            service("fast", ff, bf, ""),
        ),
    )
    .unwrap();
    let state = d.join("state");
    let _daemon = daemon(BIN, &settings, &state, &d.join("daemon.log"));
    for port in [fa, fb, ff, ep] {
        wait_port(port);
    }
    // The fast service is pinned: ready once its port answers through the proxy.
    let t0 = Instant::now();
    while try_post(ff, "fast").is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "fast never got ready"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // 1. Cold against the server's own start and a warm request.
    let solo_conf = upstream_conf(d, "solo", solo);
    let (mut cold, mut start, mut warm, mut added) = (vec![], vec![], vec![], vec![]);
    for _ in 0..n {
        cli(&state, &["unload", "a"]);
        let s = server_start(&solo_conf, solo);
        let c = ms(post(fa, "a"));
        let w = ms(post(fa, "a"));
        cold.push(c);
        start.push(s);
        warm.push(w);
        added.push(c - s - w);
    }
    // 2. Swaps: every request unloads the other service first.
    cli(&state, &["unload", "a"]);
    let mut swap = vec![];
    for i in 0..n {
        let (port, name) = if i % 2 == 0 { (fa, "a") } else { (fb, "b") };
        swap.push(ms(post(port, name)));
    }
    // 3. The one endpoint against the own port, on the pinned service.
    let case = Case {
        name: "POST chat",
        filtered: false,
        method: "POST",
        path: "/v1/chat/completions",
        body: Some(chat_body("fast", false)),
    };
    let warmup = |port| wrk(port, 1, 32, &case, d);
    warmup(ff);
    warmup(ep);
    let mut best = [common::Wrk::default(); 2];
    for round in 0..rounds {
        for (i, port) in [ff, ep].into_iter().enumerate() {
            let w = wrk(port, secs, 32, &case, d);
            eprintln!(
                " round {round} {}: {:.0} req/s",
                ["own port", "endpoint"][i],
                w.rps
            );
            if w.rps > best[i].rps {
                best[i] = w;
            }
        }
    }

    let yes = |ok: bool| if ok { "yes" } else { "no" };
    println!("On-demand load of an idle service whose server (nginx) is up in milliseconds, {n} requests each (ms):\n");
    println!("| | p50 | p90 | target | met |");
    println!("|---|---|---|---|---|");
    let row = |name: &str, v: &mut Vec<f64>, target: &str, met: &str| {
        let (a, b) = (pct(v, 0.5), pct(v, 0.9));
        println!("| {name} | {a:.1} | {b:.1} | {target} | {met} |");
    };
    let added50 = pct(&mut added.clone(), 0.5);
    row("cold request (idle → answer)", &mut cold, "", "");
    row("the server's own start (reference)", &mut start, "", "");
    row("warm request (reference)", &mut warm, "", "");
    row(
        "added by the on-demand path (cold − start − warm)",
        &mut added,
        "≤ 50 ms p50",
        yes(added50 <= 50.0),
    );
    row(
        "swap: a request that unloads the other service, then loads its own",
        &mut swap,
        "",
        "",
    );
    println!("\nThe one endpoint against the service's own port, POST chat, 32 connections, best of {rounds} rounds of {secs} s:\n");
    println!("| port | req/s | p50 | p99 | endpoint / own | target | met |");
    println!("|---|---|---|---|---|---|---|");
    let ratio = best[1].rps / best[0].rps;
    println!(
        "| own port | {:.0} | {:.3} ms | {:.3} ms | | | |",
        best[0].rps, best[0].p50_ms, best[0].p99_ms
    );
    println!(
        "| one endpoint | {:.0} | {:.3} ms | {:.3} ms | {ratio:.2} | ≥ 0.95 | {} |",
        best[1].rps,
        best[1].p50_ms,
        best[1].p99_ms,
        yes(ratio >= 0.95)
    );
}
