//! The menu-bar app's behaviour without a desktop: `mlxbox_client::app` (its commands and the daemon
//! follower that drives the tray and the notifications) against a real daemon with real servers. The Tauri
//! crate only renders what this produces.

mod common;

use common::*;
use mlxbox_api::call;
use mlxbox_api::service::Verb;
use mlxbox_client::app::{watch_daemon, AppCore, AppPrefs, AppSink, CommandErrorKind, Connection};
use mlxbox_client::menubar::{Snapshot, TrayLevel};
use mlxbox_core::api::Event;
use mlxbox_core::config::ConfigEdit;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
struct Recorder {
    connections: Mutex<Vec<bool>>,
    levels: Mutex<Vec<TrayLevel>>,
    notified: Mutex<Vec<String>>,
    events: Mutex<usize>,
    /// What the windows would render: the status with every event folded in.
    status: Mutex<Option<mlxbox_core::api::StatusReport>>,
}

impl AppSink for Recorder {
    fn connection(&self, c: &Connection) {
        self.connections.lock().unwrap().push(c.connected);
    }
    fn event(&self, _: &Event) {
        *self.events.lock().unwrap() += 1;
    }
    fn status(&self, s: &mlxbox_core::api::StatusReport) {
        *self.status.lock().unwrap() = Some(s.clone());
    }
    fn redraw(&self, _: &Snapshot, level: TrayLevel) {
        self.levels.lock().unwrap().push(level);
    }
    fn notify(&self, a: &mlxbox_core::api::Alert) {
        self.notified.lock().unwrap().push(a.id.clone());
    }
}

impl Recorder {
    fn level(&self) -> Option<TrayLevel> {
        self.levels.lock().unwrap().last().copied()
    }
}

fn action(target: &str, verb: Verb) -> call::Action {
    let target = target.to_string();
    call::Action { target, verb }
}

/// The Settings window's save: its edits against the hash it read.
fn save(edits: Vec<ConfigEdit>, base_hash: Option<String>) -> call::EditConfig {
    let edit = mlxbox_api::ConfigEditRequest { edits, base_hash };
    call::EditConfig { edit }
}

fn edit(path: &[&str], value: serde_json::Value) -> ConfigEdit {
    ConfigEdit {
        path: path.iter().map(|s| s.to_string()).collect(),
        value: Some(value),
    }
}

#[test]
fn app_follows_the_daemon_draws_the_tray_and_notifies_once() {
    let (pa, pb) = (free_port(), free_port());
    let text = format!(
        "# my settings: this comment must survive the Settings window\n[alerts]\nclear_after_s = 0\ncooldown_s = 0\n\n{}{}",
        fault_service("a", pa, "ok", ""),
        fault_service("b", pb, "ok", "# b's own comment\nready_timeout_s = 30")
    );
    let mut d = Daemon::start(&text);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let core = Arc::new(AppCore::new(d.state.clone()));
    let rec = Arc::new(Recorder::default());
    let shared = Arc::new(Mutex::new((Snapshot::default(), AppPrefs::default())));
    let follower = rt.spawn(watch_daemon(
        core.clone(),
        rec.clone(),
        shared.clone(),
        Duration::from_millis(100),
        None,
    ));
    let wait = |what: &str, f: &dyn Fn() -> bool| {
        assert!(
            wait_until(Duration::from_secs(20), f),
            "{what}: levels {:?}, notified {:?}",
            rec.levels.lock().unwrap(),
            rec.notified.lock().unwrap()
        )
    };

    wait("connected and all ready", &|| {
        rec.level() == Some(TrayLevel::Ready)
    });
    assert_eq!(rec.connections.lock().unwrap().first(), Some(&true));
    assert!(
        *rec.events.lock().unwrap() > 0,
        "monitor ticks and states flow"
    );

    // The generic command reaches any endpoint.
    let st = rt
        .block_on(core.call_json(mlxbox_api::control::Request::Status))
        .unwrap();
    assert_eq!(st["services"].as_array().map(Vec::len), Some(2), "{st}");

    // Stopping from the app stops the server; the tray follows the events.
    rt.block_on(core.call(action("b", Verb::Stop))).unwrap();
    d.wait_state("b", "stopped", Duration::from_secs(10));
    assert!(wait_until(Duration::from_secs(5), || port_free(pb)));
    rt.block_on(core.call(action("a", Verb::Stop))).unwrap();
    wait("everything stopped", &|| {
        rec.level() == Some(TrayLevel::Stopped)
    });
    // The windows get the same fold: every service stopped, without a status request of their own.
    wait("the folded status says stopped", &|| {
        rec.status.lock().unwrap().as_ref().is_some_and(|s| {
            s.services
                .iter()
                .all(|x| x.state == mlxbox_core::supervisor::State::Stopped)
        })
    });
    rt.block_on(core.call(action("all", Verb::Start))).unwrap();
    wait("ready again", &|| rec.level() == Some(TrayLevel::Ready));

    // The Settings window's save: toml_edit keeps comments; a stale base hash is a conflict; an invalid
    // value is refused with the validator's diagnostics and writes nothing.
    let doc = rt.block_on(core.call(call::GetConfig {})).unwrap();
    assert_eq!(
        doc.document.as_ref().unwrap()["services"]["b"]["ready_timeout_s"],
        30
    );
    let stale = rt
        .block_on(core.call(save(
            vec![edit(&["services", "b", "ready_timeout_s"], 31.into())],
            Some("0".repeat(64)),
        )))
        .unwrap_err();
    assert_eq!(stale.kind, CommandErrorKind::Conflict, "{stale:?}");
    let bad = rt
        .block_on(core.call(save(
            vec![edit(&["services", "b", "port"], "eighty".into())],
            Some(doc.content_hash.clone()),
        )))
        .unwrap_err();
    assert_eq!(bad.kind, CommandErrorKind::Invalid, "{bad:?}");
    let diag = &bad.preview.as_ref().unwrap().diagnostics[0];
    assert!(diag.line > 1 && diag.message.contains("port"), "{diag:?}");
    assert_eq!(std::fs::read_to_string(&d.config).unwrap(), text);

    // A threshold above current usage raises an alert: one notification, the tray says so.
    let saved = rt
        .block_on(core.call(save(
            vec![edit(&["alerts", "headroom_warn_percent"], 99.9.into())],
            Some(doc.content_hash.clone()),
        )))
        .unwrap();
    assert!(saved.valid);
    let on_disk = std::fs::read_to_string(&d.config).unwrap();
    assert!(on_disk.starts_with("# my settings: this comment must survive"));
    assert!(on_disk.contains("# b's own comment"));
    assert!(on_disk.contains("headroom_warn_percent = 99.9"));
    wait("alert notified", &|| {
        rec.notified
            .lock()
            .unwrap()
            .contains(&"low-headroom".to_string())
    });
    wait("alert on the tray", &|| {
        rec.level() == Some(TrayLevel::Alert)
    });
    std::thread::sleep(Duration::from_secs(2));
    let n = rec
        .notified
        .lock()
        .unwrap()
        .iter()
        .filter(|i| *i == "low-headroom")
        .count();
    assert_eq!(n, 1, "an active alert notifies once, not every tick");
    // Neither service restarted for an [alerts] edit.
    assert_eq!(d.service("a")["restarts"], 0);

    // The daemon goes away: the app says so, then reconnects to a new one.
    d.terminate();
    wait("disconnected", &|| {
        rec.level() == Some(TrayLevel::Disconnected)
    });
    assert_eq!(rec.connections.lock().unwrap().last(), Some(&false));
    d.spawn();
    wait("reconnected", &|| {
        rec.connections.lock().unwrap().last() == Some(&true)
    });
    follower.abort();
}

/// With no OS agent (`mlx-box service install`), the app starts again a daemon that died — SIGKILL, no
/// shutdown said — and the new one adopts the servers; a daemon that shut down on purpose stays down.
#[test]
fn app_restarts_a_daemon_that_died_but_not_one_that_shut_down() {
    let port = free_port();
    let mut d = Daemon::start(&fault_service("a", port, "ok", ""));
    d.wait_state("a", "ready", Duration::from_secs(20));
    let server = d.service("a")["pid"].as_u64().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let core = Arc::new(AppCore::new(d.state.clone()));
    let rec = Arc::new(Recorder::default());
    let shared = Arc::new(Mutex::new((Snapshot::default(), AppPrefs::default())));
    let follower = rt.spawn(watch_daemon(
        core.clone(),
        rec.clone(),
        shared,
        Duration::from_millis(100),
        Some(BIN.into()),
    ));
    assert!(wait_until(Duration::from_secs(20), || rec.level()
        == Some(TrayLevel::Ready)));
    let first = d.daemon_pid();
    // The daemon the app starts is not the harness's child: whatever happens, `down` stops it.
    struct Down(std::path::PathBuf);
    impl Drop for Down {
        fn drop(&mut self) {
            let _ = std::process::Command::new(BIN)
                .args(["down", "--state-dir"])
                .arg(&self.0)
                .output();
        }
    }
    let _down = Down(d.state.clone());
    d.kill_daemon();
    // A new daemon answers on the same state dir, and it adopted the running server.
    let restarted = wait_until(Duration::from_secs(30), || {
        let out = d.cli(&["status", "--json"]);
        serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .ok()
            .and_then(|s| s["daemon_pid"].as_u64())
            .is_some_and(|p| p as u32 != first)
    });
    assert!(
        restarted,
        "the app did not start the daemon again; its daemon.log:\n{}",
        std::fs::read_to_string(d.state.join("daemon.log")).unwrap_or_default()
    );
    let s = d.service("a");
    assert_eq!(
        s["pid"].as_u64(),
        Some(server),
        "the server was adopted: {s}"
    );
    // `down` says it shuts down: the app leaves it down.
    let new_pid = d.status()["daemon_pid"].as_u64().unwrap() as i32;
    assert!(d.cli(&["down"]).status.success());
    assert!(wait_until(Duration::from_secs(20), || !pid_alive(
        new_pid as u32
    )));
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        d.cli(&["status"]).status.code() != Some(0),
        "it stayed down"
    );
    follower.abort();
}
