//! Several Macs from one CLI: a daemon serves its control API over TLS (`[control] listen`), another
//! machine's CLI pins its certificate and sends a token (`mlx-box hosts add`, `--host`, `status --all`).
//! Real daemons, a real keyring (tokens live there), real TLS.

mod common;
use common::*;
use serde_json::Value;
use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const S: Duration = Duration::from_secs(1);

/// `mlx-box ARGS` against `d`'s state dir with `input` on stdin.
fn cli_stdin(d: &Daemon, args: &[&str], input: &str) -> Output {
    let mut c = Command::new(BIN)
        .args(args)
        .arg("--state-dir")
        .arg(&d.state)
        .envs(keyring_env())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    c.wait_with_output().unwrap()
}

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

/// The HTTP status of a GET over TLS (no verification: only for what the server answers).
fn https_code(url: &str, token: &str) -> String {
    let o = Command::new("curl")
        .args(["-sk", "-o", "/dev/null", "-w", "%{http_code}", "-H"])
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
        "[control]\nlisten = \"{addr}\"\n{}",
        fault_service("chat", free_port(), "ok", "")
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

    // A wrong token: 401, then after 5 failures 429 for this peer, even with a good token.
    let url = format!("https://{addr}/v1/status");
    let codes: Vec<String> = (0..6).map(|_| https_code(&url, "wrong")).collect();
    assert_eq!(codes, ["401", "401", "401", "401", "401", "429"]);
    assert_eq!(https_code(&url, admin), "429");
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
    assert!(e.contains("401") || e.contains("token"), "{e}");
}

/// B's settings.toml with `[hosts.NAME] fingerprint` replaced.
fn settings_with_fingerprint(b: &Daemon, name: &str, fp: &str) -> String {
    let text = std::fs::read_to_string(&b.config).unwrap();
    let mut doc: toml_edit::DocumentMut = text.parse().unwrap();
    doc["hosts"][name]["fingerprint"] = toml_edit::value(fp);
    doc.to_string()
}
