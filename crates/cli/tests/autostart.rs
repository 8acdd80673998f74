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

/// `service install --system` under `--root`: the systemd system unit (`User=`, the operator's paths)
/// passes `systemd-analyze verify`; the LaunchDaemon (`--manager launchd`) parses with plistlib and has
/// `UserName`, `RunAtLoad`, `KeepAlive.SuccessfulExit = false`; `service status` says which is installed.
#[cfg(target_os = "linux")]
#[test]
fn service_install_system_writes_a_unit_and_a_launch_daemon_that_check() {
    let home = tempfile::tempdir().unwrap();
    let root = home.path().join("root");
    let (r, st) = (root.to_str().unwrap(), home.path().join("state"));
    let cfg = home.path().join("settings.toml");
    let me = nix::unistd::User::from_uid(nix::unistd::Uid::effective())
        .unwrap()
        .unwrap();
    let install = |extra: &[&str]| {
        let mut args = vec![
            "service",
            "install",
            "--system",
            "--run-as",
            &me.name,
            "--root",
            r,
            "--config",
            cfg.to_str().unwrap(),
            "--state-dir",
            st.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let out = mlxbox(home.path(), &args);
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let said = install(&[]);
    let unit = root.join("etc/systemd/system/mlx-box.service");
    assert!(said.contains("nothing loaded"), "{said}");
    let text = std::fs::read_to_string(&unit).unwrap();
    assert!(text.contains(&format!("User={}\n", me.name)), "{text}");
    assert!(
        text.contains(&format!(
            "ExecStart=\"{BIN}\" up --config \"{}\" --state-dir \"{}\"",
            cfg.display(),
            st.display()
        )),
        "{text}"
    );
    assert!(text.contains("RestartPreventExitStatus=3\n"), "{text}");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .expect("systemd-analyze (scripts/setup.sh installs systemd)");
    let err = String::from_utf8_lossy(&out.stderr);
    let ours: Vec<&str> = err.lines().filter(|l| l.contains("mlx-box")).collect();
    assert!(out.status.success() && ours.is_empty(), "{err}");

    install(&["--manager", "launchd"]);
    let plist = root.join("Library/LaunchDaemons/com.mlx-box.daemon.plist");
    let out = Command::new("python3")
        .args([
            "-c",
            "import plistlib, sys, json; print(json.dumps(plistlib.load(open(sys.argv[1], 'rb'))))",
        ])
        .arg(&plist)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let d: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(d["Label"], "com.mlx-box.daemon");
    assert_eq!(d["UserName"], me.name.as_str());
    assert_eq!(d["RunAtLoad"], true);
    assert_eq!(d["KeepAlive"]["SuccessfulExit"], false);
    let args: Vec<&str> = d["ProgramArguments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(
        args,
        [
            BIN,
            "up",
            "--config",
            cfg.to_str().unwrap(),
            "--state-dir",
            st.to_str().unwrap(),
            "--already-running-exit",
            "0"
        ]
    );

    let status = |extra: &[&str]| {
        let mut args = vec!["service", "status", "--root", r];
        args.extend_from_slice(extra);
        let out = mlxbox(home.path(), &args);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, text) = status(&[]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("installed: system"), "{text}");
    assert!(text.contains("user:   not installed"), "{text}");
    // A user unit under the same root too: both.
    let out = mlxbox(
        home.path(),
        &[
            "service",
            "install",
            "--root",
            r,
            "--config",
            cfg.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let (_, text) = status(&[]);
    assert!(text.contains("installed: both"), "{text}");
    let out = mlxbox(
        home.path(),
        &["service", "uninstall", "--system", "--root", r],
    );
    assert!(out.status.success(), "{out:?}");
    assert!(!unit.exists());
    let (_, text) = status(&[]);
    assert!(text.contains("installed: user"), "{text}");
    // Another OS's manager without --root is refused: it could not be loaded here.
    let out = mlxbox(home.path(), &["service", "status", "--manager", "launchd"]);
    assert!(!out.status.success());
}
