//! Several Macs from one CLI: a daemon serves its control API over TLS (`[control] listen`), another
//! machine's CLI pins its certificate and sends a token (`mlx-box hosts add`, `--host`, `status --all`).
//! Real daemons, a real keyring (the tokens this Mac presents to other hosts live there; the tokens it
//! checks are hashed in its state dir), real TLS.

mod common;
use common::netns::{Netns, Relay};
use common::*;
use serde_json::Value;
use std::process::{Command, Output};
use std::time::Duration;

const S: Duration = Duration::from_secs(1);

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn failed(o: &Output) -> String {
    assert!(
        !o.status.success(),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The HTTP status of a GET over TLS from source address `from` (no verification: only for what the
/// server answers).
fn https_code(from: &str, url: &str, token: &str) -> String {
    let o = Command::new("curl")
        .args([
            "-sk",
            "--interface",
            from,
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
        ])
        .arg(format!("Authorization: Bearer {token}"))
        .arg(url)
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Every file under `dir`, as bytes (logs, state, settings, certificates).
fn grep_dir(dir: &std::path::Path, needle: &str) -> Vec<String> {
    let mut hits = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(b) = std::fs::read(&p) {
                if b.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                    hits.push(p.display().to_string());
                }
            }
        }
    }
    hits
}

#[test]
fn hosts_over_tls_with_pins_tokens_and_roles() {
    if !in_keyring_session("hosts_over_tls_with_pins_tokens_and_roles") {
        return;
    }
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let a = Daemon::start(&format!(
        "[server]\napi_key = \"sk-a-secret\"\n[control]\nlisten = \"{addr}\"\n{}",
        fault_service(
            "chat",
            free_port(),
            "ok",
            "env = { HF_TOKEN = \"hf-a-secret\" }"
        )
    ));
    a.wait_state("chat", "ready", 20 * S);
    let info: Value = serde_json::from_str(&ok(&a.cli(&["control", "info", "--json"]))).unwrap();
    assert_eq!(info["listen"], addr.as_str());
    let fp = info["fingerprint"]
        .as_str()
        .expect("made at first listen")
        .to_string();
    let admin = ok(&a.cli(&["tokens", "add", "--role", "admin", "--name", "ops"]));
    let admin = admin.trim();
    let read = ok(&a.cli(&["tokens", "add", "--role", "read"]));
    let read = read.trim();
    let list = ok(&a.cli(&["tokens", "list"]));
    assert!(
        list.contains("admin") && list.contains("read") && !list.contains(admin),
        "{list}"
    );

    // The operator's machine: its own daemon and settings.toml.
    let b = Daemon::start(&fault_service("local", free_port(), "ok", ""));
    ok(&cli_stdin(
        &b,
        &[
            "hosts",
            "add",
            "a",
            &addr,
            "--fingerprint",
            &fp,
            "--token-stdin",
        ],
        &format!("{admin}\n"),
    ));
    ok(&cli_stdin(
        &b,
        &[
            "hosts",
            "add",
            "a-read",
            &addr,
            "--fingerprint",
            &fp.to_lowercase().replace(':', ""),
            "--token-stdin",
        ],
        &format!("{read}\n"),
    ));
    let settings = std::fs::read_to_string(&b.config).unwrap();
    assert!(
        settings.contains("[hosts.a]") && settings.contains(&fp),
        "{settings}"
    );
    let hosts = ok(&b.cli(&["hosts", "list"]));
    assert!(hosts.contains("a-read") && hosts.contains(&addr), "{hosts}");

    // Every verb takes --host: the remote daemon answers, with its own services.
    let s: Value = serde_json::from_str(&ok(&b.cli(&["--host", "a", "status", "--json"]))).unwrap();
    assert_eq!(s["services"][0]["name"], "chat", "{s}");
    let logs = ok(&b.cli(&["--host", "a", "logs", "chat", "-n", "5"]));
    assert!(!logs.is_empty());
    // read: sees everything, changes nothing.
    ok(&b.cli(&["--host", "a-read", "status"]));
    let e = failed(&b.cli(&["--host", "a-read", "stop", "chat"]));
    assert!(e.contains("read role"), "{e}");
    assert_eq!(a.service("chat")["state"], "ready");
    let e = failed(&b.cli(&["--host", "a-read", "keys", "add"]));
    assert!(e.contains("read role"), "{e}");
    // admin: as on the socket.
    ok(&b.cli(&["--host", "a", "stop", "chat"]));
    assert_eq!(a.service("chat")["state"], "stopped");
    ok(&b.cli(&["--host", "a", "start", "chat"]));
    assert_eq!(a.service("chat")["state"], "ready");

    // Forwarded by this Mac's daemon (what the app's host view and menu use): the answer and its
    // status come back as the host gave them; a read token's refusal too.
    let fwd = |host: &str, verb: &str| {
        let body = format!(r#"{{"request":"action","target":"chat","verb":"{verb}"}}"#);
        b.control("POST", &format!("/v1/hosts/{host}/forward"), &body)
    };
    let (code, text) = fwd("a-read", "stop");
    assert_eq!(code, 403, "{text}");
    assert!(text.contains("read role"), "{text}");
    let (code, text) = fwd("a", "stop");
    assert_eq!(code, 200, "{text}");
    assert!(wait_until(10 * S, || a.service("chat")["state"] == "stopped"));
    let (code, _) = fwd("a", "start");
    assert_eq!(code, 200);
    a.wait_state("chat", "ready", 20 * S);
    let (code, text) = fwd("nobody", "stop");
    assert_eq!(code, 404, "{text}");
    // The Settings window on another host: its file read, an edit written by that host's daemon, a
    // stale base refused with that daemon's 409.
    let body = |r: &str| {
        let (code, text) = b.control("POST", "/v1/hosts/a/forward", r);
        let json = text.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
        let json = if text
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            dechunk(json)
        } else {
            json.to_string()
        };
        (
            code,
            serde_json::from_str::<Value>(&json).unwrap_or(Value::Null),
        )
    };
    let (code, doc) = body(r#"{"request":"get_config"}"#);
    assert_eq!(code, 200, "{doc}");
    assert_eq!(doc["path"], a.config.display().to_string());
    let hash = doc["content_hash"].as_str().unwrap().to_string();
    let edit = |base: &str| {
        format!(
            r#"{{"request":"edit_config","edit":{{"edits":[{{"path":["services","chat","backoff_max_s"],"value":45}}],"base_hash":"{base}"}}}}"#
        )
    };
    let (code, v) = body(&edit("stale"));
    assert_eq!(code, 409, "{v}");
    let (code, v) = body(&edit(&hash));
    assert_eq!(code, 200, "{v}");
    assert!(std::fs::read_to_string(&a.config)
        .unwrap()
        .contains("backoff_max_s = 45"));

    // What a read token reads holds no secret (keys, `env` values), from the host
    // itself and forwarded through this Mac; an admin reads the file as it is.
    let https_body = |token: &str, path: &str| {
        let o = Command::new("curl")
            .args(["-sk", "--max-time", "20", "-H"])
            .arg(format!("Authorization: Bearer {token}"))
            .arg(format!("https://{addr}{path}"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let secrets = ["sk-a-secret", "hf-a-secret"];
    let doc = https_body(read, "/v1/config");
    assert!(
        doc.contains("<redacted>") && doc.contains("HF_TOKEN"),
        "{doc}"
    );
    assert!(secrets.iter().all(|x| !doc.contains(x)), "{doc}");
    let doc = https_body(admin, "/v1/config");
    assert!(secrets.iter().all(|x| doc.contains(x)), "{doc}");
    let (code, doc) = b.control(
        "POST",
        "/v1/hosts/a-read/forward",
        r#"{"request":"get_config"}"#,
    );
    assert_eq!(code, 200, "{doc}");
    assert!(secrets.iter().all(|x| !doc.contains(x)), "{doc}");
    // A forwarded answer is streamed, never held: a 128 MiB link test through a read
    // token leaves this daemon's peak memory where it was (it was 6× the answer).
    let peak = |d: &Daemon| -> u64 {
        let st = std::fs::read_to_string(format!("/proc/{}/status", d.daemon_pid())).unwrap();
        st.lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    };
    let before = peak(&b);
    let (code, text) = b.control(
        "POST",
        "/v1/hosts/a-read/forward",
        r#"{"request":"link_test","bytes":134217728}"#,
    );
    assert_eq!(code, 200);
    assert!(
        text.len() > 128 << 20,
        "the whole answer came: {}",
        text.len()
    );
    let grew_mb = (peak(&b).saturating_sub(before)) / 1024;
    assert!(
        grew_mb < 48,
        "the daemon's peak memory grew by {grew_mb} MB"
    );

    // status --all: one block per host.
    let all = ok(&b.cli(&["status", "--all"]));
    assert!(
        all.contains("== this machine") && all.contains("== a\n") && all.contains("== a-read"),
        "{all}"
    );
    assert!(all.contains("local") && all.contains("chat"), "{all}");

    // A pin that does not match is refused, naming both fingerprints.
    let other = "AB:".repeat(31) + "AB";
    let e = failed(&cli_stdin(
        &b,
        &[
            "hosts",
            "add",
            "x",
            &addr,
            "--fingerprint",
            &other,
            "--token-stdin",
        ],
        &format!("{admin}\n"),
    ));
    assert!(e.contains(&fp) && e.contains(&other), "{e}");
    let pinned_wrong = settings_with_fingerprint(&b, "a", &other);
    b.write_config(&pinned_wrong);
    let e = failed(&b.cli(&["--host", "a", "status"]));
    assert!(
        e.contains(&fp) && e.contains(&other) && e.contains("refused"),
        "{e}"
    );

    // No token anywhere on disk or in a log, on either machine.
    for t in [admin, read] {
        for d in [&a, &b] {
            let hits = grep_dir(d.dir.path(), t);
            assert!(hits.is_empty(), "a token is written in {hits:?}");
        }
    }
    // A removed token stops working at once.
    let id = list
        .lines()
        .find(|l| l.contains("ops"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_string();
    ok(&a.cli(&["tokens", "remove", &id]));
    b.write_config(&settings_with_fingerprint(&b, "a", &fp));
    std::thread::sleep(Duration::from_millis(300));
    let e = failed(&b.cli(&["--host", "a", "status"]));
    assert!(e.contains("missing or wrong access token"), "{e}");
    // (B's daemon would go on polling with it, each a failure from 127.0.0.1.)
    ok(&b.cli(&["hosts", "remove", "a"]));
    // A wrong token: 401, then after 5 failures 429 for that address, even with a good token; another
    // address is not affected (the limit is per peer).
    let url = format!("https://{addr}/v1/status");
    let codes: Vec<String> = (0..6)
        .map(|_| https_code("127.0.0.2", &url, "wrong"))
        .collect();
    assert_eq!(codes, ["401", "401", "401", "401", "401", "429"]);
    assert_eq!(https_code("127.0.0.2", &url, read), "429");
    assert_eq!(https_code("127.0.0.1", &url, read), "200");
    // Without TLS: nothing.
    let plain = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "5",
        ])
        .arg(format!("http://{addr}/v1/status"))
        .output()
        .unwrap();
    assert_ne!(String::from_utf8_lossy(&plain.stdout), "200");
}

/// B's settings.toml with `[hosts.NAME] fingerprint` replaced.
fn settings_with_fingerprint(b: &Daemon, name: &str, fp: &str) -> String {
    let text = std::fs::read_to_string(&b.config).unwrap();
    let mut doc: toml_edit::DocumentMut = text.parse().unwrap();
    doc["hosts"][name]["fingerprint"] = toml_edit::value(fp);
    doc.to_string()
}

fn host_of(d: &Daemon, name: &str) -> Value {
    d.status()["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["name"] == name)
        .cloned()
        .unwrap_or(Value::Null)
}

fn has_alert(d: &Daemon, id: &str) -> bool {
    d.status()["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["id"] == id)
}

/// Two hosts: one daemon in its own network namespace behind a veth pair, the operator's in this one,
/// talking through a delaying relay. The operator's daemon polls the other: its link slows (the relay
/// adds 5 ms each way) → the slow-link alert; it speeds up → cleared; the other daemon is SIGKILLed →
/// unreachable within seconds; it comes back → reachable, alert cleared.
#[test]
fn two_hosts_in_network_namespaces_link_and_reachability() {
    if !in_keyring_session("two_hosts_in_network_namespaces_link_and_reachability") {
        return;
    }
    if !nix::unistd::geteuid().is_root() {
        assert!(
            std::env::var_os("MLXBOX_SKIP_NETNS").is_some(),
            "this test makes network namespaces: run it as root (CI does), or set MLXBOX_SKIP_NETNS=1"
        );
        return;
    }
    let ns = Netns::new();
    let port = 9443;
    let remote_addr = format!("{}:{port}", ns.addrs.1);
    let config_a = format!(
        "[control]\nlisten = \"{remote_addr}\"\n{}",
        fault_service("chat", 18080, "ok", "")
    );
    let mut a = Daemon::start_in_netns(&config_a, &ns.name);
    a.wait_state("chat", "ready", 20 * S);
    let info: Value = serde_json::from_str(&ok(&a.cli(&["control", "info", "--json"]))).unwrap();
    let fp = info["fingerprint"].as_str().unwrap().to_string();
    let token = ok(&a.cli(&["tokens", "add", "--role", "read"]));

    let relay = Relay::start(remote_addr.clone());
    let via = format!("127.0.0.1:{}", relay.port);
    let b = Daemon::start(&format!(
        "[alerts]\nlink_rtt_warn_ms = 8\nclear_after_s = 0\n{}",
        fault_service("local", free_port(), "ok", "")
    ));
    ok(&cli_stdin(
        &b,
        &[
            "hosts",
            "add",
            "a",
            &via,
            "--fingerprint",
            &fp,
            "--token-stdin",
        ],
        &token,
    ));
    // Polled: reachable, with its services, a fast link.
    let up = wait_until(20 * S, || {
        let h = host_of(&b, "a");
        h["reachable"] == true && h["services"][0]["state"] == "ready"
    });
    assert!(up, "{}", host_of(&b, "a"));
    std::thread::sleep(6 * S);
    let h = host_of(&b, "a");
    let base = h["rtt_p50_ms"].as_f64().unwrap();
    eprintln!(
        "round trip through the veth pair and the relay: p50 {base:.2} ms, p99 {}",
        h["rtt_p99_ms"]
    );
    assert!(!has_alert(&b, "host-link-slow:a"), "{h}");
    let status = ok(&b.cli(&["status"]));
    assert!(status.contains("HOST") && status.contains("up"), "{status}");
    // On demand: the round trip and the throughput over the control connection.
    let check: Value = serde_json::from_str(&ok(&b.cli(&[
        "hosts",
        "check",
        "a",
        "--megabytes",
        "8",
        "--json",
    ])))
    .unwrap();
    eprintln!("link check: {check}");
    assert!(check["throughput_mb_s"].as_f64().unwrap() > 1.0, "{check}");
    assert!(check["rtt_p50_ms"].as_f64().unwrap() > 0.0, "{check}");

    // 5 ms more each way (a 10 ms longer round trip): the link's p50 goes past 8 ms (a debug build on a
    // loaded CI machine stays well under it), the alert comes; back to fast, it clears.
    relay.set_delay(5);
    assert!(
        wait_until(40 * S, || has_alert(&b, "host-link-slow:a")),
        "{}",
        host_of(&b, "a")
    );
    relay.set_delay(0);
    assert!(
        wait_until(60 * S, || !has_alert(&b, "host-link-slow:a")),
        "{}",
        host_of(&b, "a")
    );

    // The other daemon dies: unreachable within seconds, an alert; it returns: reachable, cleared.
    a.kill_daemon();
    assert!(
        wait_until(10 * S, || has_alert(&b, "host-unreachable:a")),
        "{}",
        host_of(&b, "a")
    );
    assert_eq!(host_of(&b, "a")["reachable"], false);
    a.spawn();
    assert!(
        wait_until(30 * S, || host_of(&b, "a")["reachable"] == true),
        "{}",
        host_of(&b, "a")
    );
    assert!(wait_until(10 * S, || !has_alert(&b, "host-unreachable:a")));
    // The read token polls fine, and is not written anywhere on this machine.
    assert!(grep_dir(b.dir.path(), token.trim()).is_empty());
    drop(b);
    drop(a);
}

/// `bench --hosts local,a`: the same load on both daemons at once, reported side by side with the
/// combined throughput and each host's drift; each run is saved on its own host.
#[test]
fn one_benchmark_across_two_hosts() {
    if !in_keyring_session("one_benchmark_across_two_hosts") {
        return;
    }
    let chat = |port: u16| {
        format!(
            "[services.chat]\nkind = \"chat\"\nport = {port}\nmodel = \"m\"\nprobe = \"chat\"\ncommand = [\"python3\", \"{}\", \"--host\", \"{{host}}\", \"--port\", \"{{port}}\", \"--think\", \"--usage\"]\n",
            fault_server()
        )
    };
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let a = Daemon::start(&format!(
        "[control]\nlisten = \"{addr}\"\n{}",
        chat(free_port())
    ));
    let b = Daemon::start(&chat(free_port()));
    a.wait_state("chat", "ready", 20 * S);
    b.wait_state("chat", "ready", 20 * S);
    let info: Value = serde_json::from_str(&ok(&a.cli(&["control", "info", "--json"]))).unwrap();
    let token = ok(&a.cli(&["tokens", "add", "--role", "admin"]));
    ok(&cli_stdin(
        &b,
        &[
            "hosts",
            "add",
            "a",
            &addr,
            "--fingerprint",
            info["fingerprint"].as_str().unwrap(),
            "--token-stdin",
        ],
        &token,
    ));
    let out = ok(&b.cli(&[
        "bench",
        "--hosts",
        "local,a",
        "chat",
        "--concurrency",
        "1,2",
        "--requests",
        "4",
        "--no-thinking-check",
    ]));
    eprintln!("{out}");
    assert!(out.contains("combined out tok/s"), "{out}");
    assert!(out.contains("  c=1") && out.contains("  c=2"), "{out}");
    for h in ["local", "a"] {
        assert!(
            out.contains(&format!("  {h}: generation tok/s p50 first → last level")),
            "{out}"
        );
    }
    // Each host keeps its own run.
    for d in [&a, &b] {
        let h: Value =
            serde_json::from_str(&ok(&d.cli(&["bench", "--history", "--json"]))).unwrap();
        assert_eq!(h["runs"].as_array().unwrap().len(), 1, "{h}");
    }
}
