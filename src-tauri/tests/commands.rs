//! The app's commands through Tauri's real IPC layer on its mock runtime (no display, no webview engine):
//! what a window's `invoke` gets, against no daemon and against a real one.

use mlx_box_app::{with_commands, AppState};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tauri::ipc::{CallbackFn, InvokeBody};
use tauri::test::{
    get_ipc_response, mock_builder, mock_context, noop_assets, MockRuntime, INVOKE_KEY,
};
use tauri::webview::InvokeRequest;
use tauri::WebviewWindow;

#[path = "../../crates/cli/tests/common/ports.rs"]
#[allow(dead_code)]
mod ports;

fn app(state_dir: &Path) -> (tauri::App<MockRuntime>, WebviewWindow<MockRuntime>) {
    let app = with_commands(mock_builder(), AppState::new(state_dir.to_path_buf()))
        .build(mock_context(noop_assets()))
        .expect("mock app");
    let w = tauri::WebviewWindowBuilder::new(&app, "dashboard", Default::default())
        .build()
        .expect("mock window");
    (app, w)
}

/// `invoke(cmd, args)` as the front end does it: Ok(value) or Err(the CommandError as JSON).
fn invoke(w: &WebviewWindow<MockRuntime>, cmd: &str, args: Value) -> Result<Value, Value> {
    get_ipc_response(
        w,
        InvokeRequest {
            cmd: cmd.into(),
            callback: CallbackFn(0),
            error: CallbackFn(1),
            url: "tauri://localhost".parse().unwrap(),
            body: InvokeBody::Json(args),
            headers: Default::default(),
            invoke_key: INVOKE_KEY.to_string(),
        },
    )
    .map(|b| b.deserialize::<Value>().unwrap())
}

/// The windows' one way to the daemon: `invoke("call", {request})`.
fn call(w: &WebviewWindow<MockRuntime>, request: Value) -> Result<Value, Value> {
    invoke(w, "call", json!({ "request": request }))
}

#[test]
fn without_a_daemon_every_command_says_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    let (_app, w) = app(dir.path());
    let e = call(&w, json!({"request": "status"})).unwrap_err();
    assert_eq!(e["kind"], "unreachable", "{e}");
    assert!(e["message"].as_str().unwrap().contains("mlx-box up"), "{e}");
    let c = invoke(&w, "get_connection", json!({})).unwrap();
    assert_eq!(c["connected"], false);
    assert_eq!(c["state_dir"], dir.path().display().to_string());
    let e = call(
        &w,
        json!({"request": "action", "target": "x", "verb": "explode"}),
    )
    .unwrap_err();
    // A typed `Request`: an unknown verb (or request) is refused where the window's JSON is read, naming it.
    assert!(e.to_string().contains("explode"), "{e}");
    let e = call(&w, json!({"request": "explode"})).unwrap_err();
    assert!(e.to_string().contains("explode"), "{e}");
}

/// Every command the front end invokes (read from `ui/src/lib/api.ts`, its one door to the app) is
/// registered: a missing one answers "Command … not found" in the window, not at build time.
#[test]
fn every_command_the_front_end_calls_is_registered() {
    let api =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../ui/src/lib/api.ts"))
            .unwrap();
    let names: Vec<&str> = api
        .split("invoke")
        .skip(1)
        .filter_map(|rest| rest.split('"').nth(1))
        .filter(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        .collect();
    assert!(
        names.contains(&"call") && names.len() >= 5,
        "found {names:?}"
    );
    let dir = tempfile::tempdir().unwrap();
    let (_app, w) = app(dir.path());
    for name in names {
        if let Err(e) = invoke(&w, name, json!({})) {
            // Tauri's own answer for a command it does not know (a command's own errors may say "not
            // found" of other things: a daemon binary, a service).
            assert!(
                !e.to_string()
                    .to_lowercase()
                    .contains(&format!("command {name} not found")),
                "`{name}` is not registered in src-tauri/src/lib.rs: {e}"
            );
        }
    }
    // The check would see a command that is not registered.
    let e = invoke(&w, "no_such_command", json!({})).unwrap_err();
    assert!(
        e.to_string()
            .to_lowercase()
            .contains("command no_such_command not found"),
        "{e}"
    );
}

/// The workspace's `mlx-box` (scripts/test.sh builds it before the app's tests run).
fn mlx_box_bin() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let bin = target.join("debug/mlx-box");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p mlx-box` first",
        bin.display()
    );
    bin
}

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        // SIGTERM: the daemon stops its services (their process groups) and exits.
        let _ = kill(Pid::from_raw(self.0.id() as i32), Signal::SIGTERM);
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(15) {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < timeout {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn commands_drive_a_real_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let port = ports::free_port();
    let fault = Path::new(env!("CARGO_MANIFEST_DIR")).join("../python/fault_server.py");
    let text = format!(
        "# kept: the user's comment\n[services.svc]\nkind = \"command\"\nport = {port}\nprobe = \"chat\"\ncommand = [\"python3\", \"{}\", \"--host\", \"{{host}}\", \"--port\", \"{{port}}\"]\nready_timeout_s = 20 # kept too\n",
        fault.display()
    );
    let config = dir.path().join("settings.toml");
    std::fs::write(&config, &text).unwrap();
    let state = dir.path().join("state");
    let _daemon = Daemon(
        Command::new(mlx_box_bin())
            .arg("up")
            .arg("--config")
            .arg(&config)
            .arg("--state-dir")
            .arg(&state)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap(),
    );
    let (_app, w) = app(&state);
    let state_of = |w: &WebviewWindow<MockRuntime>| {
        call(w, json!({"request": "status"}))
            .ok()
            .and_then(|s| s["services"][0]["state"].as_str().map(str::to_string))
    };
    assert!(
        wait_until(Duration::from_secs(20), || state_of(&w).as_deref()
            == Some("ready")),
        "service ready through call(status)"
    );
    assert_eq!(
        invoke(&w, "get_connection", json!({})).unwrap()["connected"],
        true
    );

    let action = |target: &str, verb: &str| {
        call(
            &w,
            json!({"request": "action", "target": target, "verb": verb}),
        )
    };
    action("svc", "stop").unwrap();
    assert_eq!(
        state_of(&w).as_deref(),
        Some("stopped"),
        "acknowledged stop"
    );
    action("all", "start").unwrap();
    assert!(wait_until(Duration::from_secs(20), || state_of(&w)
        .as_deref()
        == Some("ready")));
    let logs = call(&w, json!({"request": "logs", "name": "svc", "lines": 50})).unwrap();
    assert!(logs["lines"]
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l.as_str().unwrap().contains("fault_server")));
    let hist = call(&w, json!({"request": "monitor_history"})).unwrap();
    assert!(hist["samples"].is_array());
    let e = call(&w, json!({"request": "bench_current"})).unwrap_err();
    assert_eq!(e["kind"], "not_found", "no run going: {e}");
    assert_eq!(
        call(&w, json!({"request": "bench_history"})).unwrap()["runs"],
        json!([])
    );
    let e = call(&w, json!({"request": "bench_result", "id": "last"})).unwrap_err();
    assert_eq!(e["kind"], "not_found", "no run yet: {e}");

    // Settings: the document, a preview with the validator's diagnostics, a save that keeps comments.
    let doc = call(&w, json!({"request": "get_config"})).unwrap();
    let edit = |request: &str, path: [&str; 3], value: Value, base: &Value| {
        let edit = json!({"edits": [{"path": path, "value": value}], "base_hash": base});
        call(&w, json!({"request": request, "edit": edit}))
    };
    assert_eq!(doc["document"]["services"]["svc"]["ready_timeout_s"], 20);
    let bad = edit(
        "preview_config",
        ["services", "svc", "port"],
        json!(0),
        &Value::Null,
    )
    .unwrap();
    assert_eq!(bad["valid"], false);
    assert_eq!(bad["diagnostics"][0]["line"], 4, "{bad}");
    let hash = &doc["content_hash"];
    let e = edit("edit_config", ["services", "svc", "port"], json!(0), hash).unwrap_err();
    assert_eq!(e["kind"], "invalid", "{e}");
    assert_eq!(e["preview"]["diagnostics"][0]["line"], 4, "{e}");
    assert_eq!(
        std::fs::read_to_string(&config).unwrap(),
        text,
        "nothing written"
    );
    let timeout = ["services", "svc", "ready_timeout_s"];
    let saved = edit("edit_config", timeout, json!(25), hash).unwrap();
    assert_eq!(saved["valid"], true);
    let on_disk = std::fs::read_to_string(&config).unwrap();
    assert_eq!(
        on_disk,
        text.replace(
            "ready_timeout_s = 20 # kept too",
            "ready_timeout_s = 25 # kept too"
        )
    );
    let e = edit("edit_config", timeout, json!(26), hash).unwrap_err();
    assert_eq!(
        e["kind"], "conflict",
        "the file changed since it was read: {e}"
    );
}
