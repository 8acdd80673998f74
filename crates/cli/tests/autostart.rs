//! `mlx-box service install|uninstall|status` (the daemon started by the OS at login and after a crash)
//! and `mlx-box logs --path`, in a private HOME. On this Linux machine there is no user session, so
//! `systemctl --user` cannot enable the unit: install writes it and says how to enable it.

mod common;
use common::*;
use std::process::Command;

fn mlxbox(home: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("DBUS_SESSION_BUS_ADDRESS", "disabled:")
        .env_remove("XDG_RUNTIME_DIR")
        .output()
        .unwrap()
}

#[test]
fn service_install_writes_a_unit_and_uninstall_removes_it() {
    let home = tempfile::tempdir().unwrap();
    let state = home.path().join("state");
    let st = state.to_str().unwrap();
    let out = mlxbox(home.path(), &["service", "status", "--state-dir", st]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("not installed"));
    let cfg = home.path().join("settings.toml");
    let out = mlxbox(
        home.path(),
        &[
            "service",
            "install",
            "--config",
            cfg.to_str().unwrap(),
            "--state-dir",
            st,
        ],
    );
    let unit = home.path().join(".config/systemd/user/mlx-box.service");
    let text = std::fs::read_to_string(&unit).expect("the unit is written");
    assert!(
        text.contains(&format!("\"{BIN}\" up --config \"{}\"", cfg.display())),
        "{text}"
    );
    assert!(text.contains("Restart=on-failure"));
    if !out.status.success() {
        // No user session here: the message says what to run.
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("systemctl --user") && err.contains("enable it by hand"),
            "{err}"
        );
    }
    let out = mlxbox(home.path(), &["service", "uninstall", "--state-dir", st]);
    assert!(out.status.success(), "{out:?}");
    assert!(!unit.exists());
}

#[test]
fn logs_path_names_the_files() {
    let d = Daemon::start(&fault_service("svc", free_port(), "ok", ""));
    d.wait_state("svc", "ready", 20 * std::time::Duration::from_secs(1));
    let out = d.cli(&["logs", "svc", "--path"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let files: Vec<&str> = text.lines().collect();
    // stderr (with mlx-box's lines), then stdout: two files, as launchd kept them.
    assert!(files[0].ends_with("logs/svc.log"), "{text}");
    assert!(files[1].ends_with("logs/svc.stdout.log"), "{text}");
    assert!(std::fs::read_to_string(files[0])
        .unwrap()
        .contains("] starting: "));
    assert!(std::fs::read_to_string(files[1])
        .unwrap()
        .contains("fault_server mode=ok"));
    // The tail the daemon serves has both, stdout's marked.
    let tail = String::from_utf8_lossy(&d.cli(&["logs", "svc"]).stdout).into_owned();
    assert!(tail.contains("[stdout] fault_server mode=ok"), "{tail}");
    let out = d.cli(&["logs", "nope", "--path"]);
    assert_eq!(out.status.code(), Some(1));
}
