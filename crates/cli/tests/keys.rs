//! API keys in the key store (`<state>/keys.json`, hashed): `mlx-box keys add/list/remove/import` with
//! and without a daemon, and the running daemon's proxy following every change at once — with no D-Bus
//! at all. The move of keys and tokens out of a real OS keyring (a private D-Bus session with an
//! unlocked gnome-keyring, see `common::in_keyring_session`) on a daemon's first start.

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

/// The whole life of a key on a daemon that has no D-Bus at all (no Secret Service could be reached):
/// made through the daemon, served at once, listed, removed; the file never holds one.
#[test]
fn keys_drive_the_running_proxy_without_dbus() {
    assert!(
        std::env::var_os("MLXBOX_TEST_KEYRING_SESSION").is_none(),
        "this test runs outside any keyring session"
    );
    let (front, back) = (free_port(), free_port());
    let d = Daemon::start_without_dbus(&fault_proxied(front, back, ""));
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

    // The key store: 0600, and no key in it (only what checks one).
    let store = d.state.join("keys.json");
    let text = std::fs::read_to_string(&store).unwrap();
    assert!(!text.contains(&key) && !text.contains(&key[10..]), "{text}");
    assert!(text.contains("sha256") && text.contains("laptop"), "{text}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&store).unwrap().permissions().mode() & 0o777,
        0o600
    );

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
    assert!(
        !alert_ids(&d).iter().any(|a| a.contains("key")),
        "no keyring, no store alert: {}",
        d.status()
    );

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
    assert_eq!(chat(front, None), 401, "the scoped key is left");
    let id = json.as_array().unwrap()[1]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(d.cli(&["keys", "remove", &id]).status.success());
    assert_eq!(chat(front, None), 200);
    let out = d.cli(&["keys", "remove", "nope"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("mlx-box keys list"));

    // No daemon on a state dir: the CLI writes the key store itself, and says so.
    let idle = tempfile::tempdir().unwrap();
    let offline = |args: &[&str]| {
        Command::new(BIN)
            .args(args)
            .arg("--state-dir")
            .arg(idle.path())
            .env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent")
            .env_remove("DBUS_SYSTEM_BUS_ADDRESS")
            .envs(
                keyring_env()
                    .into_iter()
                    .filter(|(k, _)| *k != "DBUS_SESSION_BUS_ADDRESS"),
            )
            .output()
            .unwrap()
    };
    let out = offline(&["keys", "add", "--name", "offline"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let offline_key = stdout(&out).trim().to_string();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no daemon runs"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(idle.path().join("keys.json")).unwrap();
    assert!(
        text.contains("offline") && !text.contains(&offline_key),
        "{text}"
    );
    assert!(stdout(&offline(&["keys", "list"])).contains("offline"));
    assert!(offline(&["keys", "remove", "offline"]).status.success());
}

#[test]
fn import_hashes_plaintext_keys_into_the_store_keeping_comments() {
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

    // The daemon sees the edit: the alert clears, the same keys work, now from the key store.
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
    let stored = std::fs::read_to_string(d.state.join("keys.json")).unwrap();
    assert!(!stored.contains("plain-"), "{stored}");
    // A second import finds nothing.
    let again = d.cli(&["keys", "import"]);
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("no plaintext"));
}

/// A damaged key store: keys may exist that cannot be read, so a frontend port with no other key refuses
/// (503) instead of serving open; an alert and `keys list` say what to do; the file is left as it was.
#[test]
fn a_damaged_key_store_fails_closed() {
    let (front, back) = (free_port(), free_port());
    let d = Daemon::start_seeded(&fault_proxied(front, back, ""), |state| {
        std::fs::write(state.join("keys.json"), "{\"version\": 1, \"keys\": [{").unwrap()
    });
    d.wait_state("chat", "ready", 20 * S);
    let (code, _, body) = http(front, "POST", "/v1/chat/completions", &[JSON], BODY);
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("key store"), "{body}");
    assert!(alert_ids(&d).contains(&"key-store".to_string()));
    let out = d.cli(&["keys", "list"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("keys.json") && err.contains("fix or remove it"),
        "the error says what to do: {err}"
    );
    assert!(!d.cli(&["keys", "add"]).status.success());
    // Removed, then reloaded: no key, so open on loopback again; the alert clears.
    std::fs::remove_file(d.state.join("keys.json")).unwrap();
    assert!(d.cli(&["keys", "reload"]).status.success());
    assert_eq!(chat(front, None), 200);
    assert!(!alert_ids(&d).contains(&"key-store".to_string()));
}

/// Keys and tokens an earlier version kept in the OS keyring move into the stores on the daemon's first
/// start: the same key still opens the port, the keyring no longer holds them (a host's token, which
/// mlx-box sends, stays there), and the move is noted.
#[test]
fn keyring_keys_move_into_the_key_store_on_first_start() {
    if !in_keyring_session("keyring_keys_move_into_the_key_store_on_first_start") {
        return;
    }
    use mlxbox_core::keys::Keyring;
    let (ring, control) = (Keyring::open().unwrap(), Keyring::open_control().unwrap());
    let old_key = "sk-mlxbox-0123456789abcdef0123456789abcdef0123456789abcdef0123456789ab";
    let old_token = "sk-mlxbox-fedcba9876543210fedcba9876543210fedcba9876543210fedcba98765";
    let index = |id: &str, secret: &str, services: &[&str]| {
        serde_json::json!([{"id": id, "name": "from before", "created": 1_700_000_000u64,
            "last4": &secret[secret.len() - 4..], "services": services}])
        .to_string()
    };
    ring.set_secret("index", &index("k1", old_key, &[]))
        .unwrap();
    ring.set_secret("key:k1", old_key).unwrap();
    control
        .set_secret("index", &index("t1", old_token, &["admin"]))
        .unwrap();
    control.set_secret("key:t1", old_token).unwrap();
    control.set_secret("host:studio", "their-token").unwrap();

    let (front, back, listen) = (free_port(), free_port(), free_port());
    let server = format!("[control]\nlisten = \"127.0.0.1:{listen}\"\n\n");
    let d = Daemon::start(&fault_proxied(front, back, &server));
    d.wait_state("chat", "ready", 20 * S);
    assert_eq!(chat(front, Some(old_key)), 200, "{}", d.daemon_log());
    assert_eq!(chat(front, None), 401);

    assert!(ring.list().unwrap().is_empty() && ring.secret("key:k1").unwrap().is_none());
    assert!(control.list().unwrap().is_empty() && control.secret("key:t1").unwrap().is_none());
    assert_eq!(
        control.secret("host:studio").unwrap().as_deref(),
        Some("their-token")
    );
    for (file, secret) in [("keys.json", old_key), ("tokens.json", old_token)] {
        let text = std::fs::read_to_string(d.state.join(file)).unwrap();
        assert!(
            text.contains("from before") && !text.contains(secret),
            "{file}: {text}"
        );
    }
    assert!(alert_ids(&d).contains(&"keys-migrated".to_string()));
    assert!(
        d.daemon_log().contains("moved from the OS keyring"),
        "{}",
        d.daemon_log()
    );
    let out = d.cli(&["keys", "list"]);
    assert!(stdout(&out).contains("k1"));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("moved from the OS keyring"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tokens = stdout(&d.cli(&["tokens", "list"]));
    assert!(
        tokens.contains("t1") && tokens.contains("admin"),
        "{tokens}"
    );
}
