//! One gate for every listener. Each test reproduces a defect found on 905ed5f against a real
//! daemon and the fault server. `every_listener_faces_every_attack` runs the attack matrix against every
//! TCP listener the daemon reports (`GET /v1/listeners`, `mlx-box listeners`: the gate's own registry),
//! so a listener added later faces it without anyone writing its cells (docs/RELIABILITY.md lists the
//! matrix).

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

const S: Duration = Duration::from_secs(1);
const KEY: (&str, &str) = ("Authorization", "Bearer k");
const JSON: (&str, &str) = ("Content-Type", "application/json");

fn fault_command(mode: &str) -> String {
    format!(
        "command = [\"python3\", \"{}\", \"--mode\", \"{mode}\", \"--host\", \"{{host}}\", \"--port\", \"{{port}}\"]",
        fault_server()
    )
}

/// Sends `raw` on a new connection to `port`; the status of the answer (0 when the connection was
/// closed without one) within 10 s.
fn raw_status(port: u16, raw: &[u8]) -> u16 {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(10 * S)).unwrap();
    let _ = s.write_all(raw);
    let mut got = vec![0u8; 4096];
    let n = s.read(&mut got).unwrap_or(0);
    String::from_utf8_lossy(&got[..n])
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// An HTTPS request with curl (`-k`: the daemon's certificate is self-signed and pinned by clients);
/// the status, or 0 when no answer came.
fn https_status(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> u16 {
    https(addr, method, path, headers, body).0
}

/// An HTTPS request with curl: the status (0 when no answer came) and the body.
fn https(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut c = Command::new("curl");
    c.args([
        "-sk",
        "--max-time",
        "15",
        "-w",
        "\n%{http_code}",
        "-X",
        method,
    ]);
    for (k, v) in headers {
        c.arg("-H").arg(format!("{k}: {v}"));
    }
    if !body.is_empty() {
        c.arg("--data-binary").arg(body);
    }
    let o = c.arg(format!("https://{addr}{path}")).output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let (answer, code) = out.rsplit_once('\n').unwrap_or(("", out.as_str()));
    (code.trim().parse().unwrap_or(0), answer.to_string())
}

/// Is the connection closed by the other side within `within` (read returns 0 or an error)?
fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let t0 = Instant::now();
    let mut b = [0u8; 1024];
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => continue, // an answer (a 408, a TLS alert): read on to the close
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false
            }
            Err(_) => return t0.elapsed() < within,
        }
    }
}

/// What a listener is, from its name in the status (the setting that opened it).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Face {
    /// A proxy frontend: a service's port, a pool's or the one endpoint (keyed here).
    Proxy,
    /// `[metrics] listen` on loopback: open, no key.
    Metrics,
    /// `[control] listen`: TLS, tokens.
    Control,
}

fn face(name: &str) -> Face {
    match name {
        "[metrics] listen" => Face::Metrics,
        "[control] listen" => Face::Control,
        _ => Face::Proxy,
    }
}

/// The request a cell sends, and where it sends it (the path a proxy listener routes by its `model`).
struct Probe<'a> {
    method: &'a str,
    path: &'a str,
    headers: Vec<(&'a str, &'a str)>,
    body: &'a str,
}

/// Every listener against every attack class: idle flood, slowloris, oversize head and body, a rebound
/// Host, a page of another site (with and without Origin), a BOM or UTF-16 body, a management route, a
/// method the policy does not take, traversal in a path parameter. No cell may get a 2xx, reach the
/// backend, or leave a socket open past the gate's timeouts.
#[test]
fn every_listener_faces_every_attack() {
    let (sp, bp, ep, pp, mp, cp) = (
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
    );
    let cfg = format!(
        "[server]\nhost = \"127.0.0.1\"\nport = {ep}\napi_key = \"k\"\n[metrics]\nlisten = \"127.0.0.1:{mp}\"\n[control]\nlisten = \"127.0.0.1:{cp}\"\n[services.vision]\nkind = \"ocr\"\nport = {sp}\nbackend_port = {bp}\nmodel = \"org/vlm\"\nprobe = \"chat\"\n{}\n[pools.p]\nmembers = [\"vision\"]\nport = {pp}\n",
        fault_command("ok")
    );
    let d = Daemon::start(&cfg);
    d.wait_state("vision", "ready", 30 * S);
    // The traversal target: a `.log` outside the logs dir that no answer may carry.
    std::fs::write(d.dir.path().join("secret.log"), "TOP-SECRET-LOG-LINE\n").unwrap();

    let listeners: Vec<(String, String)> = {
        let mut found = vec![];
        assert!(
            wait_until(20 * S, || {
                found = d.control_json("/v1/listeners")["listeners"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .map(|l| {
                        (
                            l["name"].as_str().unwrap_or("").to_string(),
                            l["address"].as_str().unwrap_or("").to_string(),
                        )
                    })
                    .collect();
                found.len() >= 5
            }),
            "{found:?}\n{}",
            d.daemon_log()
        );
        found
    };
    let names: Vec<&str> = listeners.iter().map(|l| l.0.as_str()).collect();
    for want in [
        "[services.vision] port",
        "[pools.p] port",
        "[server] port",
        "[metrics] listen",
        "[control] listen",
    ] {
        assert!(names.contains(&want), "{want} not in {names:?}");
    }
    let port_of = |addr: &str| addr.rsplit(':').next().unwrap().parse::<u16>().unwrap();

    // Idle and slowloris, every listener at once: each socket is closed by the gate (10 s for a request
    // head, 5 s for a TLS handshake), never held.
    let mut idle: Vec<(String, TcpStream)> = vec![];
    let mut trickling = vec![];
    for (name, addr) in &listeners {
        idle.push((name.clone(), TcpStream::connect(addr.as_str()).unwrap()));
        let mut s = TcpStream::connect(addr.as_str()).unwrap();
        let name = name.clone();
        trickling.push(std::thread::spawn(move || {
            let _ = s.write_all(b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n");
            let t0 = Instant::now();
            while t0.elapsed() < 20 * S {
                if s.write_all(b"X-Slow: 1\r\n").is_err() {
                    return (name, true);
                }
                std::thread::sleep(S);
            }
            (name, closed_within(&mut s, S))
        }));
    }
    for (name, s) in &mut idle {
        assert!(
            closed_within(s, 16 * S),
            "{name}: an idle connection was held open"
        );
    }
    for t in trickling {
        let (name, closed) = t.join().unwrap();
        assert!(closed, "{name}: a slowloris connection was held open");
    }

    let big = "x".repeat(80 * 1024);
    let bom_body = "\u{feff}{\"model\":\"evil/other-model\",\"messages\":[]}";
    let cells: Vec<(&str, Probe)> = vec![
        (
            "oversize head",
            Probe {
                method: "GET",
                path: "/v1/models",
                headers: vec![KEY, ("X-Big", &big)],
                body: "",
            },
        ),
        (
            "rebound Host",
            Probe {
                method: "GET",
                path: "/v1/models",
                headers: vec![("Host", "rebound.example")],
                body: "",
            },
        ),
        (
            "another site, no Origin",
            Probe {
                method: "GET",
                path: "/v1/models",
                headers: vec![KEY, ("Sec-Fetch-Site", "cross-site")],
                body: "",
            },
        ),
        (
            "another site's Origin",
            Probe {
                method: "GET",
                path: "/v1/models",
                headers: vec![KEY, ("Origin", "https://evil.example")],
                body: "",
            },
        ),
        (
            "BOM body",
            Probe {
                method: "POST",
                path: "/v1/chat/completions",
                headers: vec![KEY, JSON],
                body: bom_body,
            },
        ),
        (
            "management route",
            Probe {
                method: "POST",
                path: "/unload",
                headers: vec![KEY, JSON],
                body: "{\"model\":\"vision\"}",
            },
        ),
        (
            "pool's management route",
            Probe {
                method: "POST",
                path: "/unload",
                headers: vec![KEY, JSON],
                body: "{\"model\":\"p\"}",
            },
        ),
        (
            "encoded management route",
            Probe {
                method: "POST",
                path: "/v1/%73ettings",
                headers: vec![KEY, JSON],
                body: "{\"model\":\"vision\"}",
            },
        ),
        (
            "method",
            Probe {
                method: "PUT",
                path: "/v1/chat/completions",
                headers: vec![KEY, JSON],
                body: "{\"model\":\"vision\"}",
            },
        ),
        (
            "oversize body",
            Probe {
                method: "POST",
                path: "/v1/chat/completions",
                headers: vec![KEY, JSON, ("Content-Length", "104857600")],
                body: "",
            },
        ),
        (
            "traversal",
            Probe {
                method: "GET",
                path: "/v1/services/..%2F..%2Fsecret/logs?lines=5",
                headers: vec![KEY],
                body: "",
            },
        ),
    ];
    let mut matrix = vec![];
    for (name, addr) in &listeners {
        let f = face(name);
        for (cell, p) in &cells {
            let code = if f == Face::Control {
                https_status(addr, p.method, p.path, &p.headers, p.body)
            } else {
                let mut req = format!("{} {} HTTP/1.1\r\n", p.method, p.path);
                if !p.headers.iter().any(|h| h.0 == "Host") {
                    req.push_str("Host: 127.0.0.1\r\n");
                }
                for (k, v) in &p.headers {
                    req.push_str(&format!("{k}: {v}\r\n"));
                }
                if !p.headers.iter().any(|h| h.0 == "Content-Length") {
                    req.push_str(&format!("Content-Length: {}\r\n", p.body.len()));
                }
                req.push_str("Connection: close\r\n\r\n");
                req.push_str(p.body);
                raw_status(port_of(addr), req.as_bytes())
            };
            matrix.push(format!("{name} × {cell}: {code}"));
            assert!(!(200..300).contains(&code), "{name} × {cell}: {code}");
            // Where the request is understood (not refused before it is read), the refusal says why.
            let expected: &[u16] = match (f, *cell) {
                (_, "oversize head") => &[431, 0],
                (Face::Metrics, "rebound Host") => &[403],
                (_, "another site, no Origin" | "another site's Origin") => &[403],
                (Face::Proxy, "rebound Host") => &[401], // keyed: the key is the defence
                (Face::Proxy, "BOM body") => &[400],
                (
                    Face::Proxy,
                    "management route" | "pool's management route" | "encoded management route",
                ) => &[400, 403],
                // (a pool's port refuses the model the body names first: it serves `p`)
                (Face::Proxy, "method") => &[400, 405],
                (Face::Proxy, "oversize body") => &[413],
                // 429: the sixth wrong token from one address within a minute is refused unchecked.
                (Face::Control, _) => &[401, 429, 503],
                (Face::Metrics, _) => &[404, 405],
                (Face::Proxy, _) => &[400, 401, 403, 404],
            };
            assert!(
                expected.contains(&code),
                "{name} × {cell}: {code}, expected one of {expected:?}"
            );
        }
    }
    eprintln!("{}", matrix.join("\n"));
    // The backend saw none of it: no management route, no BOM body, no PUT.
    let log = d.service_log("vision");
    for never in ["/unload", "settings", "PUT "] {
        assert!(!log.contains(never), "the backend saw `{never}`:\n{log}");
    }
    // The control socket is held to the same names (its owner has every right, but a path is no file).
    let (code, body) = d.control_get("/v1/services/..%2F..%2Fsecret/logs?lines=5");
    assert_eq!(code, 404, "{body}");
    let (code, body) = d.control_get("/v1/services/%2Ftmp%2Fx/logs?lines=5");
    assert_eq!(code, 404, "{body}");
    assert!(!body.contains("TOP-SECRET"));
    // And the daemon still serves.
    let (code, _, body) = http(
        sp,
        "POST",
        "/v1/chat/completions",
        &[KEY, JSON],
        "{\"model\":\"vision\"}",
    );
    assert_eq!(code, 200, "{body}");
}

/// Item 1: an idle flood on `[metrics] listen` under a low fd limit takes neither the daemon's
/// descriptors nor its ability to restart a server, and the sockets are closed by the header timeout.
#[test]
fn the_metrics_port_under_an_idle_flood_and_a_low_fd_limit() {
    let (sp, bp, mp) = (free_port(), free_port(), free_port());
    let cfg = format!(
        "[server]\napi_key = \"k\"\n[metrics]\nlisten = \"127.0.0.1:{mp}\"\n[services.chat]\nkind = \"command\"\nport = {sp}\nbackend_port = {bp}\nprobe = \"chat\"\n{}\n",
        fault_command("ok")
    );
    let d = Daemon::start_with_fd_limit(&cfg, 64);
    d.wait_state("chat", "ready", 20 * S);
    assert!(wait_until(10 * S, || http(mp, "GET", "/metrics", &[], "")
        .0
        == 200));
    let mut flood: Vec<TcpStream> = (0..150)
        .filter_map(|_| TcpStream::connect(("127.0.0.1", mp)).ok())
        .collect();
    assert!(flood.len() >= 100);
    std::thread::sleep(S);
    assert!(d.cli(&["status", "--json"]).status.success());
    // Answered by the daemon (served, or refused cleanly at a cap), not cut off.
    let (code, _, body) = http(sp, "POST", "/v1/chat/completions", &[KEY, JSON], "{}");
    assert!(code == 200 || code == 503, "{code} {body}");
    assert!(
        serde_json::from_str::<serde_json::Value>(&body).is_ok(),
        "a whole JSON answer: {body}"
    );
    // A crash during the flood: its restart gets the descriptors it needs.
    let pid = d.service("chat")["pid"].as_u64().unwrap() as i32;
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
    d.wait_service("chat", 30 * S, |s| {
        s["state"] == "ready" && s["pid"].as_u64() != Some(pid as u64)
    });
    // Every idle socket is closed (refused at the cap at once, or at the 10 s header timeout).
    for s in &mut flood {
        assert!(
            closed_within(s, 15 * S),
            "an idle scrape connection was held open"
        );
    }
    drop(flood);
    assert!(wait_until(10 * S, || http(mp, "GET", "/metrics", &[], "")
        .0
        == 200));
    assert!(wait_until(10 * S, || http(
        sp,
        "POST",
        "/v1/chat/completions",
        &[KEY, JSON],
        "{}"
    )
    .0 == 200));
}

/// Item 10: one peer's silent sockets on the TLS control port take its share only: a client from
/// another address still completes its handshake and gets an answer.
#[test]
fn one_peer_cannot_take_every_place_on_the_control_port() {
    let cp = free_port();
    let addr = format!("127.0.0.1:{cp}");
    let d = Daemon::start(&format!("[control]\nlisten = \"{addr}\"\n"));
    assert!(
        wait_until(20 * S, || https_status(&addr, "GET", "/v1/ping", &[], "")
            != 0),
        "{}",
        d.daemon_log()
    );
    let from = |ip: &str| {
        let sock =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        sock.bind(
            &format!("{ip}:0")
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
        sock.connect(&addr.parse::<std::net::SocketAddr>().unwrap().into())
            .ok()?;
        Some(TcpStream::from(sock))
    };
    let silent: Vec<TcpStream> = (0..300).filter_map(|_| from("127.0.0.2")).collect();
    assert!(silent.len() >= 200, "connected: {}", silent.len());
    std::thread::sleep(S);
    let (code, body) = https(&addr, "GET", "/v1/status", &[], "");
    assert!(
        code == 401 || code == 503,
        "served despite the flood: {code}"
    );
    // The daemon's own refusal (no token), through a completed handshake.
    let refusal: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    assert!(
        refusal["error"].is_string() && refusal["kind"].is_string(),
        "{body}"
    );
    drop(silent);
}

/// Item 4: a GET anyone can make (an `<img>`, a no-cors fetch) does not load an on-demand model; a page of
/// another site is refused at the door; an inference request (POST) loads it.
#[test]
fn only_an_inference_request_loads_an_on_demand_model() {
    let (sp, bp, ep) = (free_port(), free_port(), free_port());
    let cfg = format!(
        "[server]\nport = {ep}\napi_key = \"k\"\n[services.lazy]\nkind = \"command\"\nport = {sp}\nbackend_port = {bp}\nmodel = \"org/lazy\"\nprobe = \"chat\"\non_demand = true\nstop_timeout_s = 2\n{}\n",
        fault_command("ok")
    );
    let d = Daemon::start(&cfg);
    d.wait_state("lazy", "idle", 20 * S);
    for port in [sp, ep] {
        let (code, _, body) = http(port, "GET", "/v1/models", &[KEY], "");
        assert_eq!(code, 200, "{body}");
        assert!(body.contains("org/lazy") || body.contains("lazy"), "{body}");
        let (code, _, _) = http(
            port,
            "GET",
            "/v1/models",
            &[KEY, ("Sec-Fetch-Site", "cross-site")],
            "",
        );
        assert_eq!(code, 403);
        let (code, _, body) = http(port, "GET", "/health", &[KEY], "");
        assert!([400, 404, 503].contains(&code), "{code} {body}");
    }
    std::thread::sleep(S);
    assert_eq!(d.service("lazy")["state"], "idle", "a GET loaded it");
    let (code, _, body) = http(
        sp,
        "POST",
        "/v1/chat/completions",
        &[KEY, JSON],
        "{\"messages\":[]}",
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(d.service("lazy")["state"], "ready");
}

/// Item 12: a failed on-demand service is loaded again by requests at most once per retry period (each
/// load may evict others), and a manual start still starts it.
#[test]
fn a_failed_on_demand_service_is_not_restarted_by_every_request() {
    let (sp, bp) = (free_port(), free_port());
    let cfg = format!(
        "[server]\napi_key = \"k\"\n[services.broken]\nkind = \"command\"\nport = {sp}\nbackend_port = {bp}\nprobe = \"chat\"\non_demand = true\nload_timeout_s = 60\nstop_timeout_s = 2\n{}\n",
        fault_command("crash-at-start")
    );
    let d = Daemon::start(&cfg);
    d.wait_state("broken", "idle", 20 * S);
    let spawns = || {
        d.service_log("broken")
            .matches("mode=crash-at-start")
            .count()
    };
    let (code, _, body) = http(sp, "POST", "/v1/chat/completions", &[KEY, JSON], "{}");
    assert_eq!(code, 503, "{body}");
    assert_eq!(d.service("broken")["state"], "failed");
    let after_one = spawns();
    assert!(after_one >= 1);
    for _ in 0..5 {
        let (code, _, body) = http(sp, "POST", "/v1/chat/completions", &[KEY, JSON], "{}");
        assert_eq!(code, 503);
        assert!(
            body.contains("failed to load") && body.contains("mlx-box start broken"),
            "{body}"
        );
    }
    std::thread::sleep(S);
    assert_eq!(spawns(), after_one, "requests restarted a failed service");
    // The operator's start is not held back.
    let _ = d.cli(&["start", "broken", "--no-wait"]);
    assert!(
        wait_until(20 * S, || spawns() > after_one),
        "{}",
        d.daemon_log()
    );
}

/// Item 7: a setup served only through `[server] port` or a pool reads the key store like one with a
/// service port: with the key store unreadable and no key in the file it fails closed (503), never open.
#[test]
fn the_endpoint_and_pools_alone_are_not_served_open() {
    let (bp, ep, pp) = (free_port(), free_port(), free_port());
    let cfg = format!(
        "[server]\nport = {ep}\n[services.chat]\nkind = \"command\"\nbackend_port = {bp}\nmodel = \"org/m\"\nprobe = \"chat\"\n{}\n[pools.p]\nmembers = [\"chat\"]\nport = {pp}\n",
        fault_command("ok")
    );
    let d = Daemon::start_seeded(&cfg, |state| {
        std::fs::write(state.join("keys.json"), "not json").unwrap()
    });
    d.wait_state("chat", "ready", 20 * S);
    for port in [ep, pp] {
        for auth in [None, Some(("Authorization", "Bearer wrong"))] {
            let mut h = vec![JSON];
            h.extend(auth);
            let (code, _, body) = http(
                port,
                "POST",
                "/v1/chat/completions",
                &h,
                "{\"model\":\"chat\"}",
            );
            assert_eq!(code, 503, "port {port}: {body}");
            assert!(body.contains("key store"), "{body}");
        }
    }
    let alerts = d.status()["alerts"].to_string();
    assert!(alerts.contains("key-store"), "{alerts}");
}

/// Item 8: `validate` refuses a model server that would listen on the LAN without its proxy.
#[test]
fn validate_refuses_a_model_server_on_the_lan_without_its_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("settings.toml");
    std::fs::write(
        &path,
        "[server]\nhost = \"0.0.0.0\"\napi_key = \"k\"\n[services.chat]\nport = 8080\nmodel = \"org/m\"\n",
    )
    .unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_mlx-box"))
        .args(["validate"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(":5:") && err.contains("backend_port"), "{err}");
}
