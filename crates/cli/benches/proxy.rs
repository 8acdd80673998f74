//! The API-key proxy against nginx, in the same run (needs `wrk` and `nginx`: apt-get install wrk nginx-light):
//!
//!   cargo bench -p mlx-box --bench proxy            (MLXBOX_BENCH_SECS=10 by default per measurement)
//!
//! 1. Fast upstreams: nginx returning a fixed chat completion, or for `?stream=1` a fixed SSE stream with a
//!    think span (1 worker each), supervised by a release `mlx-box up` as the backends of two services:
//!    `fast` (forwards as is) and `think` (`filter_reasoning = true`).
//! 2. wrk (1 thread, 32 connections, keep-alive, a Bearer key) for each request shape users send — GET
//!    /v1/models; POST /v1/chat/completions with a ~600-byte body whose `model` is the model id (plain), the
//!    service name (alias: spliced), through the filter, both, and streamed — against nginx (Bearer check +
//!    `proxy_pass` with a keep-alive pool) and the mlx-box frontend port, alternating rounds; the best
//!    round of each is reported (the machine is shared).
//! 3. The added latency unloaded (one connection) for GET and POST, over the upstream direct.
//! 4. Request metrics on against `[metrics] requests = false` (a second daemon, an upstream alike), POST
//!    and stream at 32 connections, alternating rounds.
//! 5. A pool (`[pools.pool] members = ["fast"]`) against the member's own port at 32 connections: what
//!    the pool's routing costs (POST with the pool's name as `model`, against the service's alias).
//! 6. The reasoning filter alone (`SseFilter`) over an mlx_lm-like SSE stream with think spans: MB/s.
//!
//! `MLXBOX_BENCH_SECS` (default 10) per measurement, `MLXBOX_BENCH_ROUNDS` (default 3).
//!
//! Figures go to docs/PERFORMANCE.md.

use mlxbox_core::proxy::SseFilter;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_mlx-box");

mod common;
use common::{
    chat_body, daemon, free_port, nginx_conf, quick, secs_and_rounds, upstream_conf,
    wait_port_or_show, wrk, Case, Group, Wrk,
};

fn cases() -> Vec<Case> {
    let get = |name, filtered| Case {
        name,
        filtered,
        method: "GET",
        path: "/v1/models",
        body: None,
    };
    let post = |name, filtered, model: &str, stream: bool| Case {
        name,
        filtered,
        method: "POST",
        path: if stream {
            "/v1/chat/completions?stream=1"
        } else {
            "/v1/chat/completions"
        },
        body: Some(chat_body(model, stream)),
    };
    vec![
        get("GET /v1/models", false),
        post("POST plain", false, "bench/model", false),
        post("POST alias", false, "fast", false),
        post("POST filter", true, "bench/model", false),
        post("POST alias + filter", true, "think", false),
        post("POST stream", false, "bench/model", true),
        post("POST stream + filter", true, "bench/model", true),
    ]
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

fn filter_throughput(bytes: usize) -> (f64, usize) {
    let data = sse_stream(bytes);
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
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    // Quick mode (`cargo test --benches`: cargo passes `--bench` only under `cargo bench`; or `MLXBOX_BENCH_QUICK=1`): 1 round of 1 s per
    // case. It fails on errors and panics, never on a speed target.
    let quick = quick();
    let (secs, rounds) = secs_and_rounds();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (up, up2, ngx, front, front2) = (
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
    );

    // Two upstreams (the same nginx config), one per mlx-box service: `fast` forwards as it is, `think`
    // with filter_reasoning. Both are run by mlx-box as its services (so the proxy sees them ready).
    let up_conf = upstream_conf(d, "upstream", up);
    let up2_conf = upstream_conf(d, "upstream2", up2);
    let poolp = free_port();
    let settings = d.join("settings.toml");
    std::fs::write(
        &settings,
        format!(
            "[server]\nhost = \"127.0.0.1\"\napi_keys = [\"bench-key\"]\n[pools.pool]\nmembers = [\"fast\"]\nport = {poolp}\n[services.fast]\nkind = \"command\"\nport = {front}\nbackend_port = {up}\nmodel = \"bench/model\"\nprobe = \"/v1/models\"\ncommand = [\"nginx\", \"-c\", \"{}\", \"-g\", \"daemon off;\"]\n[services.think]\nkind = \"command\"\nport = {front2}\nbackend_port = {up2}\nmodel = \"bench/model\"\nfilter_reasoning = true\nprobe = \"/v1/models\"\ncommand = [\"nginx\", \"-c\", \"{}\", \"-g\", \"daemon off;\"]\n",
            up_conf.display(),
            up2_conf.display()
        ),
    )
    .unwrap();
    let main_daemon = daemon(BIN, &settings, &d.join("state"), &d.join("daemon.log"));
    // The same `fast` service on a second daemon with `[metrics] requests = false`: what the request
    // metrics cost, measured beside it.
    let (up3, front3) = (free_port(), free_port());
    let up3_conf = upstream_conf(d, "upstream3", up3);
    let settings3 = d.join("settings-nometrics.toml");
    std::fs::write(
        &settings3,
        format!(
            "[server]\nhost = \"127.0.0.1\"\napi_keys = [\"bench-key\"]\n[metrics]\nrequests = false\n[services.fast]\nkind = \"command\"\nport = {front3}\nbackend_port = {up3}\nmodel = \"bench/model\"\nprobe = \"/v1/models\"\ncommand = [\"nginx\", \"-c\", \"{}\", \"-g\", \"daemon off;\"]\n",
            up3_conf.display()
        ),
    )
    .unwrap();
    let daemon3 = daemon(BIN, &settings3, &d.join("state3"), &d.join("daemon3.log"));
    // nginx as the reference proxy: proxy_pass with a keep-alive pool, as one would configure it.
    let ngx_conf = nginx_conf(
        d,
        "proxy",
        "auto",
        &format!("  upstream up {{ server 127.0.0.1:{up}; keepalive 64; }}\n  server {{ listen 127.0.0.1:{ngx}; location / {{ if ($http_authorization != \"Bearer bench-key\") {{ return 401; }} proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection \"\"; proxy_buffering off; }} }}"),
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
    let logs = [
        d.join("daemon.log"),
        d.join("daemon3.log"),
        d.join("proxy.err"),
        d.join("upstream.err"),
        d.join("state/logs/fast.log"),
    ];
    let logs: Vec<&Path> = logs.iter().map(|p| p.as_path()).collect();
    for p in [up, up2, up3, ngx, front, front2, front3, poolp] {
        wait_port_or_show(p, &logs);
    }
    // The frontend answers 503 until the supervisor has seen the backend ready.
    let t0 = Instant::now();
    let answers = |port: u16| {
        Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
            .args(["-H", "Authorization: Bearer bench-key"])
            .arg(format!("http://127.0.0.1:{port}/v1/models"))
            .output()
            .is_ok_and(|o| o.stdout == b"200")
    };
    loop {
        if answers(front) && answers(front2) && answers(front3) && answers(poolp) {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "mlx-box proxy never ready"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // Per case: warm-up, then alternating rounds (nginx, mlx-box, nginx, …); the best round of each (a
    // shared machine only ever slows a round). nginx forwards every case to the plain upstream: it has no
    // alias or filter to apply, so the POST cases say what mlx-box's reading of the body costs.
    let names = ["nginx proxy_pass", "mlx-box proxy"];
    let mut table = vec![];
    for case in cases() {
        let mine = if case.filtered { front2 } else { front };
        for p in [ngx, mine] {
            wrk(p, 1, 32, &case, d);
        }
        let mut best = [Wrk::default(); 2];
        for round in 0..rounds {
            for (i, p) in [ngx, mine].into_iter().enumerate() {
                let w = wrk(p, secs, 32, &case, d);
                eprintln!("{:<22} round {round} {:<18} {w:?}", case.name, names[i]);
                if w.rps > best[i].rps {
                    best[i] = w;
                }
            }
        }
        table.push((case.name, best));
    }
    // Metrics on (the first daemon) against off (the second), alternating rounds, best of each.
    let mut onoff = vec![];
    for case in [cases()[1], cases()[5]] {
        for p in [front, front3] {
            wrk(p, 1, 32, &case, d);
        }
        let mut best = [Wrk::default(); 2];
        for round in 0..rounds {
            for (i, p) in [front, front3].into_iter().enumerate() {
                let w = wrk(p, secs, 32, &case, d);
                eprintln!(
                    "{:<22} round {round} metrics {:<4} {w:?}",
                    case.name,
                    ["on", "off"][i]
                );
                if w.rps > best[i].rps {
                    best[i] = w;
                }
            }
        }
        onoff.push((case.name, best));
    }
    // The pool over its one member against that member's own port.
    let alias = cases()[2];
    let via_pool = Case {
        name: "POST through the pool",
        body: Some(chat_body("pool", false)),
        ..alias
    };
    let mut pooled = [Wrk::default(); 2];
    for (p, case) in [(front, &alias), (poolp, &via_pool)] {
        wrk(p, 1, 32, case, d);
    }
    for round in 0..rounds {
        for (i, (p, case)) in [(front, &alias), (poolp, &via_pool)]
            .into_iter()
            .enumerate()
        {
            let w = wrk(p, secs, 32, case, d);
            eprintln!("pool overhead round {round} {:<22} {w:?}", case.name);
            if w.rps > pooled[i].rps {
                pooled[i] = w;
            }
        }
    }
    // The latency a proxy adds, measured unloaded (one connection, one request at a time): at 32
    // connections on 2 cores the p50 is mostly queueing for a core, for nginx as much as for us.
    let get = cases()[0];
    let post = cases()[1];
    let mut single = [[Wrk::default(); 3]; 2];
    for _ in 0..rounds {
        for (c, case) in [get, post].iter().enumerate() {
            for (i, p) in [up, ngx, front].into_iter().enumerate() {
                let w = wrk(p, secs.min(5), 1, case, d);
                if single[c][i].p50_ms == 0.0 || w.p50_ms < single[c][i].p50_ms {
                    single[c][i] = w;
                }
            }
        }
    }
    drop(nginx);
    drop(main_daemon);
    drop(daemon3);

    println!("\n32 connections, keep-alive, best of {rounds} rounds of {secs} s (nginx: Bearer check + proxy_pass):\n");
    println!("| request | nginx req/s | mlx-box req/s | mlx-box / nginx | target | met | mlx-box p50 | mlx-box p99 |\n|---|---|---|---|---|---|---|---|");
    for (name, [n, m]) in &table {
        let ratio = m.rps / n.rps;
        let target = if name.starts_with("GET") { 0.9 } else { 0.8 };
        println!(
            "| {name} | {:.0} | {:.0} | {ratio:.2} | ≥ {target:.2} | {} | {:.3} ms | {:.3} ms |",
            n.rps,
            m.rps,
            if ratio >= target { "yes" } else { "no" },
            m.p50_ms,
            m.p99_ms
        );
    }
    println!("\nrequest metrics on (`vllm:` histograms observed per request) against `[metrics] requests = false`, same upstream, 32 connections, best of {rounds} rounds of {secs} s:\n");
    println!("| request | metrics on req/s | metrics off req/s | on / off | target | met |\n|---|---|---|---|---|---|");
    for (name, [on, off]) in &onoff {
        let ratio = on.rps / off.rps;
        println!(
            "| {name} | {:.0} | {:.0} | {ratio:.2} | ≥ 0.97 | {} |",
            on.rps,
            off.rps,
            if ratio >= 0.97 { "yes" } else { "no" }
        );
    }
    let ratio = pooled[1].rps / pooled[0].rps;
    println!("\na pool of one member (`[pools.pool] members = [\"fast\"]`, `model` = the pool) against the member's own port (`model` = its alias), POST, 32 connections, best of {rounds} rounds of {secs} s:\n");
    println!("| request | member's port req/s | pool req/s | pool / member | target | met | pool p50 | pool p99 |\n|---|---|---|---|---|---|---|---|");
    println!(
        "| POST | {:.0} | {:.0} | {ratio:.2} | ≥ 0.95 | {} | {:.3} ms | {:.3} ms |",
        pooled[0].rps,
        pooled[1].rps,
        if ratio >= 0.95 { "yes" } else { "no" },
        pooled[1].p50_ms,
        pooled[1].p99_ms
    );
    println!("\none connection (unloaded), p50 added over the upstream direct:\n\n| request | nginx | mlx-box | target |\n|---|---|---|---|");
    for (c, case) in [get, post].iter().enumerate() {
        let [direct, n, m] = single[c];
        println!(
            "| {} | {:.3} ms | {:.3} ms | ≤ 0.2 ms |",
            case.name,
            n.p50_ms - direct.p50_ms,
            m.p50_ms - direct.p50_ms
        );
    }
    let (mbs, kept) = filter_throughput(if quick { 4 << 20 } else { 64 << 20 });
    println!("\nreasoning filter (SseFilter, {} MB mlx_lm-like stream, 4 KB chunks): {mbs:.0} MB/s (target ≥ 50), {kept} bytes kept", if quick { 4 } else { 64 });
}
