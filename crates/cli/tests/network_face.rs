//! The network face under hostile clients, hostile backends and bad control input. Each test
//! reproduces a defect found on commit 585d672 against a real daemon and the fault server.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const S: Duration = Duration::from_secs(1);
const JSON: (&str, &str) = ("Content-Type", "application/json");

/// One proxied fault-server service `chat` (model `org/real-model`, alias `fast`) behind `front`.
fn proxied(front: u16, back: u16, server: &str, extra: &str) -> String {
    format!(
        "[server]\nhost = \"127.0.0.1\"\n{server}\n[services.chat]\nkind = \"command\"\nport = {front}\nbackend_port = {back}\nmodel = \"org/real-model\"\naliases = [\"fast\"]\nprobe = \"chat\"\ncommand = [\"python3\", \"{}\", \"--mode\", \"ok\", \"--host\", \"{{host}}\", \"--port\", \"{{port}}\"]\n{extra}\n",
        fault_server()
    )
}

fn key(k: &str) -> (&'static str, String) {
    ("Authorization", format!("Bearer {k}"))
}

fn post(front: u16, headers: &[(&str, &str)], body: &str) -> (u16, String, String) {
    let mut h = vec![JSON];
    h.extend_from_slice(headers);
    http(front, "POST", "/v1/chat/completions", &h, body)
}

/// A keep-alive connection that sends raw requests and reads one answer each.
struct KeepAlive(TcpStream);

impl KeepAlive {
    fn open(port: u16) -> KeepAlive {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(5 * S)).unwrap();
        KeepAlive(s)
    }

    /// The status of one GET /v1/models, or None when the connection was closed.
    fn get(&mut self, headers: &str) -> Option<u16> {
        let req = format!("GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}\r\n");
        self.0.write_all(req.as_bytes()).ok()?;
        let mut buf = vec![0u8; 65536];
        let mut got = Vec::new();
        loop {
            let n = self.0.read(&mut buf).ok()?;
            if n == 0 {
                return None;
            }
            got.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&got);
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length: ")
                            .map(|v| v.trim().parse().unwrap_or(0))
                    })
                    .unwrap_or(0);
                if body.len() >= len {
                    return head.split_whitespace().nth(1)?.parse().ok();
                }
            }
        }
    }
}

/// Item 1: a flood of idle connections under `ulimit -n 64` no longer starves the daemon: the control
/// socket answers, a crashed server restarts (its spawn is not fatal), a request gets a clean answer,
/// and once the idle connections time out the service serves again.
#[test]
fn idle_connection_flood_under_a_low_fd_limit() {
    let (front, back) = (free_port(), free_port());
    let d = Daemon::start_with_fd_limit(&proxied(front, back, "api_key = \"k\"", ""), 64);
    d.wait_state("chat", "ready", 20 * S);
    let k = key("k");
    assert_eq!(post(front, &[(k.0, &k.1)], "{}").0, 200);

    let flood: Vec<TcpStream> = (0..100)
        .filter_map(|_| TcpStream::connect(("127.0.0.1", front)).ok())
        .collect();
    assert!(flood.len() >= 90, "the kernel queues them all");
    std::thread::sleep(S);
    // The control socket and supervision are unaffected.
    let t0 = Instant::now();
    assert!(d.cli(&["status", "--json"]).status.success());
    assert!(t0.elapsed() < 5 * S);
    // A request gets an answer at once: served, or refused cleanly at the connection cap.
    let t0 = Instant::now();
    let (code, _, body) = post(front, &[(k.0, &k.1)], "{}");
    assert!(code == 200 || code == 503, "{code} {body}");
    assert!(t0.elapsed() < 5 * S, "no hang: {:?}", t0.elapsed());
    // A crash during the flood: the restart needs descriptors (log file, pipes) and gets them.
    let pid = d.service("chat")["pid"].as_u64().unwrap() as i32;
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
    d.wait_service("chat", 30 * S, |s| {
        s["state"] == "ready" && s["pid"].as_u64() != Some(pid as u64)
    });
    // The idle connections are closed by the header-read timeout (10 s) or refused at the cap.
    let mut flood = flood;
    for s in &mut flood {
        s.set_read_timeout(Some(15 * S)).unwrap();
        let mut b = [0u8; 512];
        let closed = matches!(s.read(&mut b), Ok(_) | Err(_));
        assert!(closed);
    }
    drop(flood);
    assert!(
        wait_until(10 * S, || post(front, &[(k.0, &k.1)], "{}").0 == 200),
        "{}",
        d.daemon_log()
    );
    assert_ne!(d.service("chat")["state"], "failed");
}

/// Item 4: a keep-alive connection opened before a listener was replaced is drained and closed, not
/// served by the old settings.
#[test]
fn replaced_listeners_drain_their_connections() {
    let (front, back) = (free_port(), free_port());
    let d = Daemon::start(&proxied(front, back, "api_key = \"k\"", ""));
    d.wait_state("chat", "ready", 20 * S);
    let auth = "Authorization: Bearer k\r\n";
    let mut old = KeepAlive::open(front);
    assert_eq!(old.get(auth), Some(200));
    let preflight = || {
        http(
            front,
            "OPTIONS",
            "/v1/models",
            &[
                ("Origin", "http://app.test"),
                ("Access-Control-Request-Method", "GET"),
            ],
            "",
        )
        .0
    };
    assert_eq!(preflight(), 403);
    // A settings edit that changes the listener (its CORS origins): new connections get the new one.
    d.write_config(&proxied(
        front,
        back,
        "api_key = \"k\"\ncors_origins = [\"http://app.test\"]",
        "",
    ));
    assert!(wait_until(10 * S, || preflight() == 204));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        old.get(auth),
        None,
        "the old connection was drained and closed, not kept on the old settings"
    );
}

/// Items 2 and 13: a backend that sends a huge choice index, an endless event, plain JSON for a stream
/// or a last event without its blank line neither aborts the daemon nor loses the answer.
#[test]
fn hostile_backend_replies() {
    let (front, back) = (free_port(), free_port());
    let d = Daemon::start(&proxied(
        front,
        back,
        "api_key = \"k\"",
        "filter_reasoning = true",
    ));
    d.wait_state("chat", "ready", 20 * S);
    let k = key("k");
    let post = |_: u16, _: &[(&str, &str)], body: &str| post(front, &[(k.0, &k.1)], body);
    let content = |sse: &str| -> String {
        sse.lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok())
            .filter_map(|v| {
                v["choices"][0]["delta"]["content"]
                    .as_str()
                    .map(str::to_string)
            })
            .collect()
    };
    let (code, _, sse) = post(front, &[], r#"{"stream":true,"fault":"huge-index"}"#);
    assert_eq!(code, 200);
    assert_eq!(content(&sse), "Answer!", "{sse}");
    let (code, _, sse) = post(front, &[], r#"{"stream":true,"fault":"no-final-blank"}"#);
    assert_eq!(code, 200);
    assert_eq!(content(&sse), "Answer!", "the last event is flushed: {sse}");
    let (code, _, json) = post(front, &[], r#"{"stream":true,"fault":"json-for-stream"}"#);
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap_or_default();
    assert_eq!(v["choices"][0]["message"]["content"], "Answer", "{json}");
    let (_, _, cut) = post(front, &[], r#"{"stream":true,"fault":"endless-event"}"#);
    assert!(cut.len() < 1 << 20, "the endless event is not relayed");
    // Still alive, still serving.
    assert!(d.cli(&["status"]).status.success(), "{}", d.daemon_log());
    assert_eq!(post(front, &[], "{}").0, 200);
    assert!(!d.daemon_log().contains("memory allocation"));
}

/// Items 8, 9 and 12: Host, Origin and model gates, CORS answered by the proxy, hop-by-hop headers, on
/// an open (keyless) loopback frontend.
#[test]
fn browser_rebinding_and_model_gates() {
    let (front, back) = (free_port(), free_port());
    let d = Daemon::start(&proxied(
        front,
        back,
        "cors_origins = [\"http://app.test:3000\"]",
        "",
    ));
    d.wait_state("chat", "ready", 20 * S);
    let echo = r#"{"fault":"echo-headers","model":"fast"}"#;

    // DNS rebinding: an open loopback frontend serves only local names.
    let (code, _, body) = post(front, &[("Host", "evil.example:80")], echo);
    assert_eq!(code, 403, "{body}");
    let (code, head, body) = post(front, &[], echo);
    assert_eq!(code, 200, "{body}");
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("access-control-allow-origin"),
        "the backend's `*` is not passed on: {head}"
    );
    // The alias became the model id; Connection-named headers did not reach the backend.
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["model"], "org/real-model");
    let (_, _, body) = post(
        front,
        &[("Connection", "close, X-Hop"), ("X-Hop", "secret")],
        echo,
    );
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(v["headers"].get("x-hop").is_none(), "{body}");

    // CORS: preflights answered here; unknown origins refused; the listed one granted by name.
    let pre = |origin: &str| {
        http(
            front,
            "OPTIONS",
            "/v1/chat/completions",
            &[
                ("Origin", origin),
                ("Access-Control-Request-Method", "POST"),
            ],
            "",
        )
    };
    assert_eq!(pre("https://evil.example").0, 403);
    let (code, head, _) = pre("http://app.test:3000");
    assert_eq!(code, 204);
    assert!(head
        .to_ascii_lowercase()
        .contains("access-control-allow-origin: http://app.test:3000"));
    let (code, _, _) = post(
        front,
        &[
            ("Origin", "https://evil.example"),
            ("Content-Type", "text/plain"),
        ],
        r#"{"model":"org/real-model"}"#,
    );
    assert_eq!(code, 403, "a simple cross-site POST is refused");
    let (code, head, _) = post(front, &[("Origin", "http://app.test:3000")], "{}");
    assert_eq!(code, 200);
    assert!(head
        .to_ascii_lowercase()
        .contains("access-control-allow-origin: http://app.test:3000"));

    // Only the configured model (and its names) passes.
    let (code, _, body) = post(front, &[], r#"{"model":"mlx-community/other"}"#);
    assert_eq!(code, 400, "{body}");
    assert!(
        body.contains("org/real-model") && body.contains("`fast`"),
        "{body}"
    );
    let (code, _, _) = post(front, &[], r#"{"model":"org/real-model","adapters":"x"}"#);
    assert_eq!(code, 400);
    // The proxy's stats count the refusals.
    let stats = d.cli(&["status", "--json"]);
    assert!(stats.status.success());
}

/// Item 3: a slow authenticated upload holds no `max_concurrency` slot.
#[test]
fn a_slow_upload_holds_no_slot() {
    let (front, back) = (free_port(), free_port());
    let d = Daemon::start(&proxied(
        front,
        back,
        "api_key = \"k\"",
        "max_concurrency = 1",
    ));
    d.wait_state("chat", "ready", 20 * S);
    // Headers and half a body, then nothing.
    let mut slow = TcpStream::connect(("127.0.0.1", front)).unwrap();
    slow.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer k\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"messages\":")
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let k = key("k");
    let t0 = Instant::now();
    for _ in 0..3 {
        assert_eq!(post(front, &[(k.0, &k.1)], "{}").0, 200);
    }
    assert!(
        t0.elapsed() < 5 * S,
        "served while the upload stalls: {:?}",
        t0.elapsed()
    );
    drop(slow);
    // A declared length over 64 MiB is refused before a byte of it is read (the soak saw the whole
    // body read first, and the daemon's memory grow with it).
    let t0 = Instant::now();
    let mut big = TcpStream::connect(("127.0.0.1", front)).unwrap();
    big.set_read_timeout(Some(5 * S)).unwrap();
    big.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer k\r\nContent-Length: 100000000\r\n\r\n{")
        .unwrap();
    let mut head = [0u8; 64];
    let n = big.read(&mut head).unwrap();
    assert!(
        String::from_utf8_lossy(&head[..n]).starts_with("HTTP/1.1 413"),
        "{}",
        String::from_utf8_lossy(&head[..n])
    );
    assert!(t0.elapsed() < 3 * S);
}

/// Item 7: an empty key is an error at its position, not a key that requests without one match.
#[test]
fn empty_keys_are_a_positioned_error() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("settings.toml");
    std::fs::write(&p, "[server]\nhost = \"0.0.0.0\"\napi_keys = [\"ok-key\", \" \"]\napi_key = \"\"\n[services.chat]\nport = 8080\nmodel = \"m\"\n").unwrap();
    let out = std::process::Command::new(BIN)
        .args(["validate"])
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!(
            "{}:3:23: error: `api_keys` in [server] is empty",
            p.display()
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "{}:4:11: error: `api_key` in [server] is empty",
            p.display()
        )),
        "{text}"
    );
}

/// Item 12: validate warns when a file holding keys is readable by others.
#[test]
fn validate_warns_on_a_readable_file_with_keys() {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("settings.toml");
    std::fs::write(
        &p,
        "[server]\napi_key = \"secret-key\"\n[services.chat]\nport = 8080\nmodel = \"m\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    let run = || {
        let out = std::process::Command::new(BIN)
            .arg("validate")
            .arg(&p)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(
        run().contains(
            "2:1: warning: settings.toml holds API keys and other users can read it (mode 0644)"
        ),
        "{}",
        run()
    );
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(!run().contains("other users can read it"));
}

/// Control-API input that could panic or abort a daemon (deep, huge, hostile) gets a 4xx; the daemon stays up.
#[test]
fn control_api_refuses_bad_input_and_stays_up() {
    let d = Daemon::start(&fault_service("chat", free_port(), "ok", ""));
    let long: Vec<String> = (0..100_000).map(|i| format!("\"k{i}\"")).collect();
    let edit = format!(
        "{{\"edits\":[{{\"path\":[{}],\"value\":1}}]}}",
        long.join(",")
    );
    let deep = format!("{}1{}", "[".repeat(5000), "]".repeat(5000));
    for (method, path, body) in [
        ("GET", "/v1/bench/lastxyz", String::new()),
        (
            "GET",
            "/v1/bench/last-99999999999999999999999",
            String::new(),
        ),
        ("POST", "/v1/config/preview", edit.clone()),
        ("POST", "/v1/config/edit", edit),
        (
            "POST",
            "/v1/config/preview",
            format!("{{\"edits\":[{{\"path\":[\"server\",\"host\"],\"value\":{deep}}}]}}"),
        ),
        ("POST", "/v1/config/preview", "{\"edits\":".into()),
        ("POST", "/v1/bench", "{\"concurrency\":[-1]}".into()),
        (
            "GET",
            "/v1/services/chat/logs?lines=99999999999999999999999",
            String::new(),
        ),
        ("POST", "/v1/services/%00/start", String::new()),
        ("GET", "/v1/bench/compare?a=last-1&b=", String::new()),
    ] {
        let (code, text) = d.control(method, path, &body);
        assert!(
            (400..500).contains(&code),
            "{method} {path}: {code}\n{}",
            &text[..text.len().min(400)]
        );
        assert!(
            d.cli(&["status", "--json"]).status.success(),
            "daemon gone after {method} {path}: {}",
            d.daemon_log()
        );
    }
    assert!(!d.daemon_log().contains("panicked"), "{}", d.daemon_log());
}

/// Item 10: a symlinked settings.toml stays a link when edited, and edits of its target are applied.
#[test]
fn a_symlinked_settings_file_is_edited_and_watched_through_the_link() {
    let (a, b) = (free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("dotfiles")).unwrap();
    let real = dir.path().join("dotfiles/mlx-box.toml");
    std::fs::write(&real, fault_service("one", a, "ok", "")).unwrap();
    let mut d = Daemon::start("");
    let _ = std::fs::remove_file(&d.config);
    std::os::unix::fs::symlink(&real, &d.config).unwrap();
    d.terminate();
    d.spawn();
    d.wait_state("one", "ready", 20 * S);
    // An edit of the target (as a dotfiles manager makes it) is seen.
    std::fs::write(
        &real,
        format!(
            "{}{}",
            fault_service("one", a, "ok", ""),
            fault_service("two", b, "ok", "")
        ),
    )
    .unwrap();
    d.wait_state("two", "ready", 20 * S);
    // An edit through the daemon writes the target and keeps the link.
    let (code, text) = d.control(
        "POST",
        "/v1/config/edit",
        r#"{"edits":[{"path":["services","two","enabled"],"value":false}]}"#,
    );
    assert_eq!(code, 200, "{text}");
    assert!(std::fs::symlink_metadata(&d.config)
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(std::fs::read_to_string(&real)
        .unwrap()
        .contains("enabled = false"));
    d.wait_state("two", "stopped", 20 * S);
}

/// Item 11: a state dir that others can write to is refused with a clear message.
#[test]
fn an_unsafe_state_dir_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("shared");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o777)).unwrap();
    let cfg = dir.path().join("settings.toml");
    std::fs::write(&cfg, "").unwrap();
    let out = std::process::Command::new(BIN)
        .args(["up", "--config"])
        .arg(&cfg)
        .arg("--state-dir")
        .arg(&state)
        .envs(keyring_env())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("writable by others (mode 0777)") && err.contains("chmod 700"),
        "{err}"
    );
    assert_eq!(
        std::fs::metadata(&state).unwrap().permissions().mode() & 0o777,
        0o777,
        "not silently chmod'ed"
    );
    assert!(!state.join("daemon.lock").exists());
}
