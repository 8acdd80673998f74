//! A private OS keyring for a test or a bench: the process re-runs itself under `dbus-run-session` with an
//! unlocked `gnome-keyring-daemon` whose files live in a temp dir (XDG_DATA_HOME, HOME), so the keyring
//! of the person running it is never read or written, and nothing outlives the session. Shared by
//! `tests/common` and `benches/common`.

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Set inside the session.
pub const IN_SESSION: &str = "MLXBOX_TEST_KEYRING_SESSION";

/// Inside the session: None (go on). Outside: runs this executable again with `args` inside one, and
/// returns how it ended.
pub fn reexec(args: &[String]) -> Option<ExitStatus> {
    if std::env::var_os(IN_SESSION).is_some() {
        return None;
    }
    // A Secret Service session is Linux's (D-Bus, gnome-keyring); a Mac's keyring is the login Keychain,
    // which a test must not write into. Skipped there only when asked, and said (scripts/test.sh asks on
    // macOS), as the netns tests are.
    if !cfg!(target_os = "linux") {
        assert!(
            std::env::var_os("MLXBOX_SKIP_KEYRING_SESSION").is_some(),
            "this test needs a private Secret Service (D-Bus + gnome-keyring), which only Linux has: \
             set MLXBOX_SKIP_KEYRING_SESSION=1 to skip it"
        );
        eprintln!("skipped: {args:?} needs a Secret Service session (Linux only)");
        return Some(std::os::unix::process::ExitStatusExt::from_raw(0));
    }
    for tool in ["dbus-run-session", "gnome-keyring-daemon"] {
        assert!(
            Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .stdout(Stdio::null())
                .status()
                .unwrap()
                .success(),
            "`{tool}` is missing: install gnome-keyring and dbus (scripts/setup.sh does: apt-get install gnome-keyring dbus-x11)"
        );
    }
    let home = tempfile::tempdir().unwrap();
    // An empty password does not work (gnome-keyring would ask a GUI prompter).
    let script = r#"mkdir -p "$XDG_DATA_HOME/keyrings" && echo mlxbox-test-pass | gnome-keyring-daemon --unlock --components=secrets >/dev/null && exec "$@""#;
    // The bus on a socket file rather than Linux's default abstract socket: an abstract socket belongs
    // to one network namespace, a file is reachable from the ones the fleet tests make too.
    let mut session = Command::new("dbus-run-session");
    if let Ok(conf) = std::fs::read_to_string("/usr/share/dbus-1/session.conf") {
        let conf = conf.replace(
            "<listen>unix:tmpdir=/tmp</listen>",
            &format!("<listen>unix:dir={}</listen>", home.path().display()),
        );
        let path = home.path().join("session.conf");
        std::fs::write(&path, conf).unwrap();
        session.arg(format!("--config-file={}", path.display()));
    }
    let mut child = session
        .args(["--", "sh", "-c", script, "sh"])
        .arg(std::env::current_exe().unwrap())
        .args(args)
        .env(IN_SESSION, "1")
        .env("XDG_DATA_HOME", home.path().join("data"))
        .env("HOME", home.path())
        .env("XDG_RUNTIME_DIR", home.path())
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .env_remove("MLXBOX_KEYRING_SERVICE")
        .process_group(0)
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    let mut status = None;
    while t0.elapsed() < Duration::from_secs(600) {
        if let Ok(Some(s)) = child.try_wait() {
            status = Some(s);
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // A straggler of the session (or the whole of it, after the timeout) is killed; the child is then
    // reaped (std keeps the status try_wait saw).
    let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
    let _ = child.wait();
    Some(status.expect("the keyring session timed out (600 s)"))
}
