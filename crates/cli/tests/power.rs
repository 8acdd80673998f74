//! `[app] prevent_sleep`: the daemon's lock against idle sleep, seen from logind's side. No logind runs
//! here (nor in CI): each test starts a private D-Bus daemon and python-dbusmock's `logind` template on it
//! (a real D-Bus service: `Inhibit` hands out a pipe's end and drops the inhibitor when it is closed,
//! `ListInhibitors` lists the held ones), points the mlx-box daemon's `DBUS_SYSTEM_BUS_ADDRESS` at it, and
//! reads the inhibitor list as `systemd-inhibit --list` would. The bus and the mock run in one process
//! group, killed when the test ends. Needs `dbus-daemon` and python3-dbusmock (scripts/setup.sh).
#![cfg(target_os = "linux")]

mod common;
use common::*;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const S: Duration = Duration::from_secs(1);

/// A private bus with logind's stand-in on it.
struct Bus {
    daemon: Child,
    mock: Option<Child>,
    address: String,
    python: PathBuf,
    _dir: tempfile::TempDir,
}

/// An interpreter that has python-dbusmock (Debian's python3-dbusmock is /usr/bin/python3's).
fn dbusmock_python() -> PathBuf {
    for p in ["/usr/bin/python3", "python3"] {
        let ok = Command::new(p)
            .args(["-c", "import dbus, dbusmock"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return p.into();
        }
    }
    panic!(
        "python-dbusmock is missing: run scripts/setup.sh (apt-get install python3-dbusmock dbus)"
    );
}

const LIST: &str = r#"
import dbus, json, sys
bus = dbus.bus.BusConnection(sys.argv[1])
m = bus.get_object("org.freedesktop.login1", "/org/freedesktop/login1")
held = m.ListInhibitors(dbus_interface="org.freedesktop.login1.Manager")
print(json.dumps([[str(x) for x in i] for i in held]))
"#;

impl Bus {
    fn start() -> Bus {
        let python = dbusmock_python();
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("system_bus_socket");
        let address = format!("unix:path={}", sock.display());
        let daemon = Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--nopidfile"])
            .arg(format!("--address={address}"))
            .stdout(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("dbus-daemon (apt-get install dbus)");
        let mut bus = Bus {
            daemon,
            mock: None,
            address,
            python,
            _dir: dir,
        };
        assert!(wait_until(10 * S, || sock.exists()), "the bus came up");
        // The mock joins the bus's process group: one killpg ends both.
        let log = std::fs::File::create(bus._dir.path().join("dbusmock.log")).unwrap();
        bus.mock = Some(
            Command::new(&bus.python)
                .args(["-m", "dbusmock", "--system", "--template", "logind"])
                .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)
                .stdout(Stdio::null())
                .stderr(log)
                .process_group(bus.daemon.id() as i32)
                .spawn()
                .unwrap(),
        );
        assert!(
            wait_until(20 * S, || bus.try_inhibitors().is_some()),
            "logind's stand-in answers: {}",
            std::fs::read_to_string(bus._dir.path().join("dbusmock.log")).unwrap_or_default()
        );
        bus
    }

    fn try_inhibitors(&self) -> Option<Vec<Vec<String>>> {
        let out = Command::new(&self.python)
            .args(["-c", LIST, &self.address])
            .output()
            .ok()?;
        out.status.success().then_some(())?;
        serde_json::from_slice(&out.stdout).ok()
    }

    /// mlx-box's inhibitors: (what, who, why, mode, uid, pid) each.
    fn ours(&self) -> Vec<Vec<String>> {
        self.try_inhibitors()
            .expect("ListInhibitors")
            .into_iter()
            .filter(|i| i[1] == "mlx-box")
            .collect()
    }

    /// Waits until mlx-box holds `n` inhibitors; returns how long it took.
    fn wait_ours(&self, n: usize, within: Duration) -> Duration {
        let t0 = Instant::now();
        assert!(
            wait_until(within, || self.ours().len() == n),
            "mlx-box's inhibitors: {:?}, expected {n}",
            self.ours()
        );
        t0.elapsed()
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        let _ = killpg(Pid::from_raw(self.daemon.id() as i32), Signal::SIGKILL);
        let _ = self.daemon.wait();
        if let Some(m) = self.mock.as_mut() {
            let _ = m.wait();
        }
    }
}

fn awake(d: &Daemon) -> serde_json::Value {
    d.status()["awake"].clone()
}

/// prevent_sleep = "serving" (the default): held while the server is loaded, released when it is
/// stopped, taken again when it starts, gone after `mlx-box down`.
#[test]
fn the_daemon_holds_a_logind_inhibitor_while_a_server_is_loaded() {
    let bus = Bus::start();
    let mut d = Daemon::start_env(
        &fault_service("svc", free_port(), "ok", ""),
        &[("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)],
    );
    d.wait_state("svc", "ready", 20 * S);
    let took = bus.wait_ours(1, 10 * S);
    let lock = &bus.ours()[0];
    assert_eq!(lock[0], "sleep:idle");
    assert_eq!(lock[2], "a local model server is loaded");
    assert_eq!(lock[3], "block");
    assert!(
        wait_until(5 * S, || awake(&d)["held"] == true),
        "{}",
        awake(&d)
    );
    assert_eq!(awake(&d)["reason"], "1 server loaded");
    let text = String::from_utf8_lossy(&d.cli(&["status"]).stdout).into_owned();
    assert!(
        text.contains("keeping the machine awake: 1 server loaded"),
        "{text}"
    );

    let out = d.cli(&["stop", "svc"]);
    assert!(out.status.success(), "{out:?}");
    let released = bus.wait_ours(0, 10 * S);
    assert!(wait_until(5 * S, || awake(&d)["held"] == false));
    assert_eq!(awake(&d)["reason"], "no server loaded");
    let text = String::from_utf8_lossy(&d.cli(&["status"]).stdout).into_owned();
    assert!(
        text.contains("the machine may sleep: no server loaded"),
        "{text}"
    );

    let out = d.cli(&["start", "svc"]);
    assert!(out.status.success(), "{out:?}");
    bus.wait_ours(1, 10 * S);

    let out = d.cli(&["down"]);
    assert!(out.status.success(), "{out:?}");
    let status = wait_timeout(d.child.as_mut().unwrap(), 30 * S).expect("the daemon exits");
    assert!(status.success(), "{status}");
    d.child = None;
    let after_down = bus.wait_ours(0, 10 * S);
    eprintln!(
        "lock taken {took:?} after ready; released {released:?} after stop; gone {after_down:?} after down"
    );
    assert!(
        !d.daemon_log().contains("cannot keep the machine awake"),
        "{}",
        d.daemon_log()
    );
}

/// "always" holds with nothing loaded; an edit to "never" releases it without a restart.
#[test]
fn always_holds_with_nothing_loaded_and_never_releases() {
    let bus = Bus::start();
    let d = Daemon::start_env(
        "[app]\nprevent_sleep = \"always\"\n",
        &[("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)],
    );
    bus.wait_ours(1, 10 * S);
    assert_eq!(
        bus.ours()[0][2],
        "mlx-box runs with prevent_sleep = \"always\""
    );
    let pid = d.daemon_pid();
    d.write_config("[app]\nprevent_sleep = \"never\"\n");
    bus.wait_ours(0, 10 * S);
    assert!(wait_until(5 * S, || awake(&d)["mode"] == "never"));
    assert_eq!(awake(&d)["held"], false);
    assert_eq!(d.status()["daemon_pid"], pid);
}

/// No system bus at all: the daemon serves as before and says why it cannot keep the machine awake.
#[test]
fn without_a_system_bus_the_status_says_why_and_nothing_breaks() {
    let d = Daemon::start(&fault_service("svc", free_port(), "ok", ""));
    d.wait_state("svc", "ready", 20 * S);
    assert!(
        wait_until(5 * S, || awake(&d)["error"].is_string()),
        "{}",
        awake(&d)
    );
    let a = awake(&d);
    assert_eq!(a["held"], false);
    assert!(
        a["error"].as_str().unwrap().starts_with("no system bus"),
        "{a}"
    );
    let text = String::from_utf8_lossy(&d.cli(&["status"]).stdout).into_owned();
    assert!(
        text.contains("cannot keep the machine awake: no system bus"),
        "{text}"
    );
    // Logged once, not at every tick.
    std::thread::sleep(3 * S);
    assert_eq!(
        d.daemon_log()
            .matches("cannot keep the machine awake")
            .count(),
        1,
        "{}",
        d.daemon_log()
    );
}
