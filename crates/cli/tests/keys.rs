//! API keys in a real OS keyring: a private D-Bus session with an unlocked gnome-keyring (a real Secret
//! Service) per test, see `common::in_keyring_session`. `mlx-box keys add/list/remove/import` against it,
//! and the running daemon's proxy following every change at once.

mod common;
use common::*;
use std::process::Command;
use std::time::Duration;

const S: Duration = Duration::from_secs(1);
const JSON: (&str, &str) = ("Content-Type", "application/json");
const BODY: &str = r#"{"messages":[{"role":"user","content":"hi"}]}"#;

fn fault_proxied(front: u16, back: u16, server: &str) -> String {
    format!(
        "{server}[services.chat]\nkind = \"command\"\nport = {front}\nbackend_port = {back}\nprobe = \"chat\"\ncommand = [\"python3\", \"{}\", \"--mode\", \"ok\", \"--host\", \"{{host}}\", \"--port\", \"{{port}}\"]\n",
        fault_server()
    )
}

fn chat(front: u16, key: Option<&str>) -> u16 {
    let auth = key.map(|k| format!("Bearer {k}"));
    let mut h = vec![JSON];
    if let Some(a) = &auth {
        h.push(("Authorization", a.as_str()));
    }
    http(front, "POST", "/v1/chat/completions", &h, BODY).0
}

fn stdout(o: &std::process::Output) -> String {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn alert_ids(d: &Daemon) -> Vec<String> {
    d.status()["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn keyring_keys_drive_the_running_proxy() {
    if !in_keyring_session("keyring_keys_drive_the_running_proxy") {
        return;
    }
    let (front, back) = (free_port(), free_port());
    let d = Daemon::start(&fault_proxied(front, back, ""));
    d.wait_state("chat", "ready", 20 * S);
    assert_eq!(chat(front, None), 200, "no key at all: open on loopback");

    let out = d.cli(&["keys", "add", "--name", "laptop"]);
    let key = stdout(&out).trim().to_string();
    assert!(key.starts_with("sk-mlxbox-") && key.len() > 60, "{key}");
    // Written by the daemon (the only writer of keys while one runs), not behind its back.
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("running daemon made the change"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        chat(front, None),
        401,
        "the daemon picked the key up at once"
    );
    assert_eq!(chat(front, Some("sk-mlxbox-wrong")), 401);
    assert_eq!(chat(front, Some(&key)), 200);

    // A key scoped to another service does not open this one.
    let other = stdout(&d.cli(&["keys", "add", "--service", "embed"]))
        .trim()
        .to_string();
    assert_eq!(chat(front, Some(&other)), 401);

    // list: ids, labels, last 4 chars; never a key.
    let list = stdout(&d.cli(&["keys", "list"]));
    assert!(
        list.contains("laptop") && list.contains(&key[key.len() - 4..]),
        "{list}"
    );
    assert!(!list.contains(&key) && !list.contains(&other), "{list}");
    let json: serde_json::Value =
        serde_json::from_str(&stdout(&d.cli(&["keys", "list", "--json"]))).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 2);
    let api = d.control_json("/v1/keys");
    assert_eq!(api["keys"].as_array().unwrap().len(), 2, "{api}");
    assert!(api["keyring_error"].is_null());
    assert!(!api.to_string().contains(&key));

    // Counters: requests, 401s.
    let stats = d.control_json("/v1/proxy/stats");
    assert!(
        stats["chat"]["unauthorized"].as_u64().unwrap() >= 3,
        "{stats}"
    );
    assert!(stats["chat"]["requests"].as_u64().unwrap() >= 5, "{stats}");
    assert_eq!(stats["chat"]["in_flight"], 0);

    // Removed by label: refused at once; with no key left, open again (loopback).
    assert!(d.cli(&["keys", "remove", "laptop"]).status.success());
    assert_eq!(chat(front, Some(&key)), 401);
    let id = json.as_array().unwrap()[1]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(d.cli(&["keys", "remove", &id]).status.success());
    assert_eq!(chat(front, None), 200);
    let out = d.cli(&["keys", "remove", "nope"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("mlx-box keys list"));

    // No daemon on a state dir: the CLI writes the keyring itself, and says so.
    let idle = tempfile::tempdir().unwrap();
    let offline = |args: &[&str]| {
        Command::new(BIN)
            .args(args)
            .arg("--state-dir")
            .arg(idle.path())
            .envs(keyring_env())
            .output()
            .unwrap()
    };
    let out = offline(&["keys", "add", "--name", "offline"]);
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no daemon runs"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(offline(&["keys", "remove", "offline"]).status.success());
}

#[test]
fn import_moves_plaintext_keys_into_the_keyring_keeping_comments() {
    if !in_keyring_session("import_moves_plaintext_keys_into_the_keyring_keeping_comments") {
        return;
    }
    let (front, back) = (free_port(), free_port());
    let server = "# my server settings\n[server]\nhost = \"127.0.0.1\"   # this Mac only\n# keys for the team\napi_key = \"plain-one\"\napi_keys = [\"plain-two\"]\nrequest_timeout_s = 30\n\n";
    let d = Daemon::start(&fault_proxied(front, back, server));
    d.wait_state("chat", "ready", 20 * S);
    assert!(alert_ids(&d).contains(&"plaintext-keys".to_string()));
    assert_eq!(chat(front, Some("plain-two")), 200);
    assert_eq!(chat(front, None), 401);

    // An earlier save left a .bak with the keys in it (a backup must not keep them forever).
    let bak = d.config.with_extension("toml.bak");
    std::fs::write(&bak, std::fs::read(&d.config).unwrap()).unwrap();

    // No --config: the running daemon's file.
    let out = stdout(&d.cli(&["keys", "import"]));
    assert_eq!(out.lines().count(), 2, "{out}");
    let text = std::fs::read_to_string(&d.config).unwrap();
    assert!(!text.contains("plain-"), "{text}");
    assert!(
        text.starts_with(
            "# my server settings\n[server]\nhost = \"127.0.0.1\"   # this Mac only\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("request_timeout_s = 30\n\n[services.chat]"),
        "{text}"
    );
    let old = std::fs::read_to_string(&bak).unwrap();
    assert!(!old.contains("plain-"), "the backup keeps no key: {old}");
    assert!(old.contains("# this Mac only"), "the rest is kept: {old}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&bak).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // The daemon sees the edit: the alert clears, the same keys work, now from the keyring.
    assert!(
        wait_until(10 * S, || !alert_ids(&d).contains(&"plaintext-keys".into())),
        "{}",
        d.status()
    );
    assert_eq!(chat(front, Some("plain-one")), 200);
    assert_eq!(chat(front, Some("plain-two")), 200);
    assert_eq!(chat(front, None), 401);
    let list = stdout(&d.cli(&["keys", "list"]));
    assert!(list.contains("imported from"), "{list}");
    assert!(!list.contains("plain-one"), "{list}");
    // A second import finds nothing.
    let again = d.cli(&["keys", "import"]);
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("no plaintext"));
}

/// No Secret Service at all (outside a keyring session): keys may exist that cannot be read, so a
/// frontend port with no other key refuses (503) instead of serving open; an alert says why.
#[test]
fn unreadable_keyring_fails_closed() {
    let (front, back) = (free_port(), free_port());
    let d = Daemon::start(&fault_proxied(front, back, ""));
    d.wait_state("chat", "ready", 20 * S);
    let (code, _, body) = http(front, "POST", "/v1/chat/completions", &[JSON], BODY);
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("keyring"), "{body}");
    assert!(alert_ids(&d).contains(&"keyring".to_string()));
    let out = d.cli(&["keys", "list"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Secret Service"),
        "the error says what to do"
    );
}
