//! The app's "Launch at login" also installs the daemon's OS agent (`AppCore::set_daemon_agent`, which
//! runs `mlx-box service install|uninstall`), on the settings file the running daemon supervises. A test
//! binary of its own: it points HOME at a temp dir for the whole process.

mod common;
use common::*;
use mlxbox_client::app::AppCore;

#[test]
fn launch_at_login_installs_and_removes_the_daemons_agent() {
    let home = tempfile::tempdir().unwrap();
    std::env::set_var("HOME", home.path());
    std::env::set_var("XDG_CONFIG_HOME", home.path().join(".config"));
    std::env::remove_var("XDG_RUNTIME_DIR");
    let d = Daemon::start(&fault_service("a", free_port(), "ok", ""));
    d.wait_state("a", "ready", std::time::Duration::from_secs(20));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let core = AppCore::new(d.state.clone());
    let unit = home.path().join(".config/systemd/user/mlx-box.service");
    let on = rt.block_on(core.set_daemon_agent(std::path::Path::new(BIN), true));
    let text = std::fs::read_to_string(&unit).expect("the agent is written");
    assert!(
        text.contains(&format!("up --config \"{}\"", d.config.display())),
        "the daemon's own settings file: {text}"
    );
    if let Err(e) = on {
        // No user session on this machine: the message says how to enable it.
        assert!(e.message.contains("enable it by hand"), "{}", e.message);
    }
    rt.block_on(core.set_daemon_agent(std::path::Path::new(BIN), false))
        .unwrap();
    assert!(!unit.exists());
}
