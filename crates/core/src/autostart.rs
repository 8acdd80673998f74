//! The daemon started by the OS, as the original mlx-box had it with launchd, in one of two scopes:
//! - `user` (the default): at login (and so after a reboot once someone logs in) and again after a crash.
//!   macOS: a LaunchAgent (`~/Library/LaunchAgents/com.mlx-box.daemon.plist`, `launchctl bootstrap
//!   gui/$UID`); Linux: a systemd user unit (`~/.config/systemd/user/mlx-box.service`, `systemctl --user
//!   enable --now`).
//! - `system`: at boot, before anyone logs in (a Mac Studio that must serve after a power cut), as the
//!   operator, on their settings and state dir. macOS: a LaunchDaemon
//!   (`/Library/LaunchDaemons/com.mlx-box.daemon.plist` with `UserName`, `launchctl bootstrap system`);
//!   Linux: a systemd system unit (`/etc/systemd/system/mlx-box.service` with `User=`). Installed with sudo.
//!
//! `mlx-box service install|uninstall|status`. `--root DIR` writes (and reads) the files under DIR instead
//! of `/` and asks no service manager: for packaging, for preparing another machine, for tests.
//!
//! **Down stays down.** A clean exit (`mlx-box down`, a SIGTERM) is not restarted — launchd's
//! `KeepAlive.SuccessfulExit = false`, systemd's `Restart=on-failure` — so stopping the daemon on purpose
//! stays stopped until the next login or boot. A crash (a signal, an error exit) is restarted. A second
//! `up` while a daemon runs on the same state dir (the agent at login while the app started one) exits at
//! once without being restarted: with `daemon::EXIT_ALREADY_RUNNING`, which the unit lists in
//! `RestartPreventExitStatus=`; with 0 under launchd, which restarts any other status
//! (`up --already-running-exit 0` in the plist). Otherwise it would be retried every few seconds, and the
//! first retry after a `down` would start the daemon the operator stopped.
//!
//! Under systemd, `KillMode=process`: when the daemon dies, its model servers (their own process groups,
//! in the unit's cgroup) are left running for the restarted daemon to adopt, as everywhere else; a stop
//! (SIGTERM) makes the daemon stop every server itself.

use crate::daemon::EXIT_ALREADY_RUNNING;
use std::path::{Path, PathBuf};
use std::process::Command;

pub const LABEL: &str = "com.mlx-box.daemon";
pub const UNIT: &str = "mlx-box.service";

/// When the OS starts the daemon: at the user's login, or at boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    User,
    System,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::User => "user",
            Scope::System => "system",
        }
    }
}

/// Which service manager's file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Manager {
    Launchd,
    Systemd,
}

impl Manager {
    pub fn this_os() -> Manager {
        if cfg!(target_os = "macos") {
            Manager::Launchd
        } else {
            Manager::Systemd
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Manager::Launchd => "launchd",
            Manager::Systemd => "systemd",
        }
    }
}

/// Where the files go: this system's service manager, or a directory standing for `/` (`--root`), where
/// nothing is loaded.
#[derive(Debug, Clone, PartialEq)]
pub struct Place {
    pub manager: Manager,
    pub root: Option<PathBuf>,
}

impl Place {
    pub fn this_system() -> Place {
        Place {
            manager: Manager::this_os(),
            root: None,
        }
    }

    /// The files are this system's own: the service manager is asked to load them.
    fn live(&self) -> bool {
        self.root.is_none() && self.manager == Manager::this_os()
    }

    /// Where `path` (as the OS reads it) is written.
    fn under(&self, path: &Path) -> PathBuf {
        match &self.root {
            Some(r) => r.join(path.strip_prefix("/").unwrap_or(path)),
            None => path.to_path_buf(),
        }
    }
}

/// The account a system daemon runs as.
#[derive(Debug, Clone, PartialEq)]
pub struct RunAs {
    pub name: String,
    pub uid: u32,
    pub home: PathBuf,
}

impl RunAs {
    /// `name`; else the account that ran `sudo`; else this process's.
    pub fn resolve(name: Option<&str>) -> Result<RunAs, AutostartError> {
        use nix::unistd::{Uid, User};
        let sudo_user = std::env::var("SUDO_USER")
            .ok()
            .filter(|u| !u.is_empty() && u != "root");
        let user = match name.map(str::to_string).or(sudo_user) {
            Some(n) => User::from_name(&n).ok().flatten(),
            None => User::from_uid(Uid::effective()).ok().flatten(),
        };
        let user = user.ok_or_else(|| {
            AutostartError::NoUser(name.map(str::to_string).unwrap_or_else(|| "?".into()))
        })?;
        Ok(RunAs {
            name: user.name,
            uid: user.uid.as_raw(),
            home: user.dir,
        })
    }

    /// Someone else than the process that installs (root installing for the operator).
    pub fn is_someone_else(&self) -> bool {
        self.uid != nix::unistd::Uid::effective().as_raw()
    }
}

/// The default settings.toml and state dir of the user whose home is `home` (the layout of
/// `mlxbox_api::paths` without environment overrides): where a system daemon run as the operator finds
/// their files when root installs it.
pub fn default_paths(home: &Path, manager: Manager) -> (PathBuf, PathBuf) {
    match manager {
        Manager::Launchd => {
            let dir = home.join("Library/Application Support/mlx-box");
            (dir.join("settings.toml"), dir)
        }
        Manager::Systemd => (
            home.join(".config/mlx-box/settings.toml"),
            home.join(".local/state/mlx-box"),
        ),
    }
}

/// What the OS runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Agent {
    /// The `mlx-box` binary.
    pub bin: PathBuf,
    pub config: PathBuf,
    pub state_dir: PathBuf,
    /// The user's PATH when installed (launchd starts agents with a bare one, where no python is found).
    pub path_env: String,
    /// Where the daemon's stdout and stderr go (two files, as the seed's launchd logs were); `None`: the
    /// manager's own log (a systemd system unit's journal).
    pub logs_dir: Option<PathBuf>,
    pub scope: Scope,
    /// A system daemon's account (`UserName`, `User=`).
    pub run_as: Option<RunAs>,
}

#[derive(Debug, thiserror::Error)]
pub enum AutostartError {
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: permission denied. A system daemon is installed as root: `sudo mlx-box service install --system` (it runs as you)")]
    NeedsRoot { path: PathBuf },
    #[error("`{cmd}` failed: {why}. The file is written ({path}); enable it by hand with that command once a user session is there")]
    Manager {
        cmd: String,
        why: String,
        path: PathBuf,
    },
    #[error("no home directory (HOME is not set)")]
    NoHome,
    #[error("no account named `{0}`")]
    NoUser(String),
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Where a system daemon's output goes on macOS (as launchd daemons' logs usually are).
pub const SYSTEM_LOGS_DIR: &str = "/Library/Logs/mlx-box";

impl Agent {
    /// The daemon for the running `mlx-box` binary on `config` and `state_dir` (made absolute: the OS
    /// starts it from elsewhere), with this shell's PATH, in `scope` for `manager`.
    pub fn for_this_binary(
        config: &Path,
        state_dir: &Path,
        scope: Scope,
        run_as: Option<RunAs>,
        manager: Manager,
    ) -> std::io::Result<Agent> {
        let state_dir = std::path::absolute(state_dir)?;
        let logs_dir = match (scope, manager) {
            (Scope::User, Manager::Launchd) => Some(match std::env::var_os("HOME") {
                Some(h) => PathBuf::from(h).join("Library/Logs/mlx-box"),
                None => state_dir.join("logs"),
            }),
            (Scope::User, Manager::Systemd) => Some(state_dir.join("logs")),
            (Scope::System, Manager::Launchd) => Some(SYSTEM_LOGS_DIR.into()),
            (Scope::System, Manager::Systemd) => None,
        };
        Ok(Agent {
            bin: std::env::current_exe()?,
            config: std::path::absolute(config)?,
            state_dir,
            path_env: std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()),
            logs_dir,
            scope,
            run_as,
        })
    }

    /// The file for `manager`.
    pub fn text(&self, manager: Manager) -> String {
        match manager {
            Manager::Launchd => self.plist(),
            Manager::Systemd => self.unit(),
        }
    }

    /// The LaunchAgent (or, in the system scope, LaunchDaemon) property list.
    pub fn plist(&self) -> String {
        let args = [
            self.bin.display().to_string(),
            "up".into(),
            "--config".into(),
            self.config.display().to_string(),
            "--state-dir".into(),
            self.state_dir.display().to_string(),
            // launchd restarts any exit but 0: a daemon that already runs is not a failure to retry.
            "--already-running-exit".into(),
            "0".into(),
        ];
        let args: String = args
            .iter()
            .map(|a| format!("        <string>{}</string>\n", xml(a)))
            .collect();
        let mut env = format!(
            "        <key>PATH</key>\n        <string>{}</string>\n",
            xml(&self.path_env)
        );
        let mut user = String::new();
        if let Some(r) = &self.run_as {
            user = format!(
                "    <key>UserName</key>\n    <string>{}</string>\n",
                xml(&r.name)
            );
            env.push_str(&format!(
                "        <key>HOME</key>\n        <string>{}</string>\n",
                xml(&r.home.display().to_string())
            ));
        }
        let logs = self
            .logs_dir
            .as_ref()
            .map(|d| {
                format!(
                    "    <key>StandardOutPath</key>\n    <string>{}</string>\n    <key>StandardErrorPath</key>\n    <string>{}</string>\n",
                    xml(&d.join("stdout.log").display().to_string()),
                    xml(&d.join("stderr.log").display().to_string()),
                )
            })
            .unwrap_or_default();
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
    <key>Label</key>
    <string>{LABEL}</string>
{user}    <key>ProgramArguments</key>
    <array>
{args}    </array>
    <key>RunAtLoad</key>
    <true/>
    <key>KeepAlive</key>
    <dict>
        <key>SuccessfulExit</key>
        <false/>
    </dict>
    <key>ThrottleInterval</key>
    <integer>5</integer>
    <key>ProcessType</key>
    <string>Interactive</string>
    <key>EnvironmentVariables</key>
    <dict>
{env}    </dict>
{logs}</dict>
</plist>
"#
        )
    }

    /// The systemd unit: a user unit, or in the system scope a system unit with `User=`.
    pub fn unit(&self) -> String {
        // systemd splits ExecStart on spaces: quote each argument, escaping quotes and backslashes.
        let q = |p: &Path| {
            format!(
                "\"{}\"",
                p.display()
                    .to_string()
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('%', "%%")
            )
        };
        let system = self.scope == Scope::System;
        let mut u = String::from(
            "[Unit]\nDescription=mlx-box: supervises the local model servers of settings.toml\n",
        );
        u.push_str("After=network-online.target\n");
        if system {
            u.push_str("Wants=network-online.target\n");
        }
        u.push_str("\n[Service]\nType=simple\n");
        if let Some(r) = &self.run_as {
            u.push_str(&format!("User={}\n", r.name));
        }
        u.push_str(&format!(
            "ExecStart={} up --config {} --state-dir {}\n",
            q(&self.bin),
            q(&self.config),
            q(&self.state_dir)
        ));
        u.push_str("Restart=on-failure\nRestartSec=2\n");
        u.push_str(&format!(
            "# `up` exits {EXIT_ALREADY_RUNNING} when a daemon already runs on the state dir: not restarted\nRestartPreventExitStatus={EXIT_ALREADY_RUNNING}\n"
        ));
        u.push_str("# The model servers outlive a daemon that dies; the restarted one adopts them\nKillMode=process\n");
        u.push_str(&format!(
            "Environment=\"PATH={}\"\n",
            self.path_env.replace('"', "").replace('%', "%%")
        ));
        if let Some(d) = &self.logs_dir {
            u.push_str(&format!(
                "StandardOutput=append:{}\nStandardError=append:{}\n",
                d.join("stdout.log").display(),
                d.join("stderr.log").display()
            ));
        }
        u.push_str(&format!(
            "\n[Install]\nWantedBy={}\n",
            if system {
                "multi-user.target"
            } else {
                "default.target"
            }
        ));
        u
    }
}

/// Where the user agent's file is for this OS (`mlxbox_api::paths::autostart_agent`: the app reads it
/// too).
pub fn agent_path() -> Result<PathBuf, AutostartError> {
    if std::env::var_os("HOME").is_none() {
        return Err(AutostartError::NoHome);
    }
    Ok(mlxbox_api::paths::autostart_agent())
}

/// Where the file of `scope` for `manager` is, as the OS reads it.
pub fn file_path(scope: Scope, manager: Manager) -> Result<PathBuf, AutostartError> {
    Ok(match (scope, manager) {
        (Scope::User, m) if m == Manager::this_os() => agent_path()?,
        (Scope::User, Manager::Launchd) => {
            let home = std::env::var_os("HOME").ok_or(AutostartError::NoHome)?;
            PathBuf::from(home).join(format!("Library/LaunchAgents/{LABEL}.plist"))
        }
        (Scope::User, Manager::Systemd) => {
            let home = std::env::var_os("HOME").ok_or(AutostartError::NoHome)?;
            let config = std::env::var_os("XDG_CONFIG_HOME")
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
                .unwrap_or_else(|| PathBuf::from(home).join(".config"));
            config.join("systemd/user").join(UNIT)
        }
        (Scope::System, Manager::Launchd) => format!("/Library/LaunchDaemons/{LABEL}.plist").into(),
        (Scope::System, Manager::Systemd) => format!("/etc/systemd/system/{UNIT}").into(),
    })
}

/// Where the user agent's stdout/stderr logs go: `~/Library/Logs/mlx-box` on macOS (as the seed's
/// `~/Library/Logs/com.mlx-box.*`), the state dir's `logs/` elsewhere.
pub fn agent_logs_dir(state_dir: &Path) -> PathBuf {
    match std::env::var_os("HOME") {
        Some(h) if cfg!(target_os = "macos") => PathBuf::from(h).join("Library/Logs/mlx-box"),
        _ => state_dir.join("logs"),
    }
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

fn uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

/// launchd's domain and service target for `scope`.
fn launchd_domain(scope: Scope) -> String {
    match scope {
        Scope::User => format!("gui/{}", uid()),
        Scope::System => "system".into(),
    }
}

/// `systemctl`, with `--user` for the user scope.
fn systemctl(scope: Scope) -> Command {
    let mut c = Command::new("systemctl");
    if scope == Scope::User {
        c.arg("--user");
    }
    c
}

fn scope_flag(scope: Scope) -> &'static str {
    match scope {
        Scope::User => "--user ",
        Scope::System => "",
    }
}

/// Writes the agent's file (mode 0644: launchd refuses a daemon's plist others can write) and, on this
/// system, asks the OS to run it now and at every login or boot. Returns where it was written.
pub fn install(agent: &Agent, place: &Place) -> Result<PathBuf, AutostartError> {
    let real = file_path(agent.scope, place.manager)?;
    let path = place.under(&real);
    let w = |p: &Path, e: std::io::Error| {
        if e.kind() == std::io::ErrorKind::PermissionDenied && agent.scope == Scope::System {
            AutostartError::NeedsRoot {
                path: p.to_path_buf(),
            }
        } else {
            AutostartError::Write {
                path: p.to_path_buf(),
                source: e,
            }
        }
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| w(&path, e))?;
    }
    std::fs::write(&path, agent.text(place.manager)).map_err(|e| w(&path, e))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
            .map_err(|e| w(&path, e))?;
    }
    // The user agent's log dir is the user's; a system daemon's (macOS) is the system's. Never the
    // state dir made here as root: the daemon makes that itself, as its user, mode 0700.
    if let Some(logs) = &agent.logs_dir {
        if agent.scope == Scope::User || !logs.starts_with(&agent.state_dir) {
            let logs = place.under(logs);
            std::fs::create_dir_all(&logs).map_err(|e| w(&logs, e))?;
        }
    }
    if !place.live() {
        return Ok(path);
    }
    let manager = |cmd: String, why: String| AutostartError::Manager {
        cmd,
        why,
        path: path.clone(),
    };
    match place.manager {
        Manager::Launchd => {
            let domain = launchd_domain(agent.scope);
            // A previous one is replaced.
            let _ = run(Command::new("launchctl").args(["bootout", &format!("{domain}/{LABEL}")]));
            run(Command::new("launchctl")
                .args(["bootstrap", &domain])
                .arg(&path))
            .map_err(|e| {
                manager(
                    format!("launchctl bootstrap {domain} {}", path.display()),
                    e,
                )
            })?;
        }
        Manager::Systemd => {
            let f = scope_flag(agent.scope);
            run(systemctl(agent.scope).arg("daemon-reload"))
                .map_err(|e| manager(format!("systemctl {f}daemon-reload"), e))?;
            run(systemctl(agent.scope).args(["enable", "--now", UNIT]))
                .map_err(|e| manager(format!("systemctl {f}enable --now {UNIT}"), e))?;
        }
    }
    Ok(path)
}

/// Stops the daemon of `scope` and removes its file. Not installed: nothing to do.
pub fn uninstall(scope: Scope, place: &Place) -> Result<Option<PathBuf>, AutostartError> {
    let path = place.under(&file_path(scope, place.manager)?);
    if !path.exists() {
        return Ok(None);
    }
    let live = place.live();
    if live {
        match place.manager {
            Manager::Launchd => {
                let target = format!("{}/{LABEL}", launchd_domain(scope));
                let _ = run(Command::new("launchctl").args(["bootout", &target]));
            }
            Manager::Systemd => {
                let _ = run(systemctl(scope).args(["disable", "--now", UNIT]));
            }
        }
    }
    std::fs::remove_file(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::PermissionDenied if scope == Scope::System => {
            AutostartError::NeedsRoot { path: path.clone() }
        }
        _ => AutostartError::Write {
            path: path.clone(),
            source: e,
        },
    })?;
    if live && place.manager == Manager::Systemd {
        let _ = run(systemctl(scope).arg("daemon-reload"));
    }
    Ok(Some(path))
}

/// Whether the service manager has the daemon loaded (launchd) or active (systemd).
#[derive(Debug, Clone, PartialEq)]
pub enum Loaded {
    Yes,
    No,
    /// The manager could not be asked (not installed, not running, another root): why.
    Unknown(String),
}

/// One scope's file and what the manager says of it.
#[derive(Debug, Clone, PartialEq)]
pub struct ScopeStatus {
    pub scope: Scope,
    pub path: PathBuf,
    pub installed: bool,
    /// Asked only when installed.
    pub loaded: Option<Loaded>,
}

/// Asks the manager whether `scope`'s daemon is loaded.
fn loaded(scope: Scope, manager: Manager) -> Loaded {
    let out = match manager {
        Manager::Launchd => Command::new("launchctl")
            .args(["print", &format!("{}/{LABEL}", launchd_domain(scope))])
            .output(),
        Manager::Systemd => systemctl(scope).args(["is-active", UNIT]).output(),
    };
    let out = match out {
        Ok(o) => o,
        Err(e) => return Loaded::Unknown(format!("{}: {e}", manager.as_str())),
    };
    let first = |b: &[u8]| {
        String::from_utf8_lossy(b)
            .lines()
            .next()
            .unwrap_or("")
            .trim()
            .to_string()
    };
    match manager {
        // 113: "Could not find service … in domain".
        Manager::Launchd => match out.status.code() {
            Some(0) => Loaded::Yes,
            Some(113) => Loaded::No,
            _ => Loaded::Unknown(first(&out.stderr)),
        },
        // is-active prints the state (exit 0 only for active); no manager to ask prints nothing useful
        // ("offline", a bus error on stderr).
        Manager::Systemd => match first(&out.stdout).as_str() {
            "active" | "reloading" | "activating" | "refreshing" => Loaded::Yes,
            "inactive" | "failed" | "deactivating" => Loaded::No,
            other => Loaded::Unknown(
                Some(first(&out.stderr))
                    .filter(|e| !e.is_empty())
                    .unwrap_or_else(|| other.to_string()),
            ),
        },
    }
}

/// Both scopes: installed or not, and whether the manager has each installed one loaded.
pub fn status(place: &Place) -> Result<Vec<ScopeStatus>, AutostartError> {
    [Scope::User, Scope::System]
        .into_iter()
        .map(|scope| {
            let path = place.under(&file_path(scope, place.manager)?);
            let installed = path.exists();
            let loaded = installed.then(|| {
                if place.live() {
                    loaded(scope, place.manager)
                } else {
                    Loaded::Unknown("not this system's files (--root)".into())
                }
            });
            Ok(ScopeStatus {
                scope,
                path,
                installed,
                loaded,
            })
        })
        .collect()
}

/// Is the user agent installed? (The app then leaves restarting a dead daemon to the OS.)
pub fn installed() -> bool {
    agent_path().is_ok_and(|p| p.exists())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent() -> Agent {
        Agent {
            bin: "/Applications/mlx box.app/Contents/MacOS/mlx-box".into(),
            config: "/Users/me/Library/Application Support/mlx-box/settings.toml".into(),
            state_dir: "/Users/me/Library/Application Support/mlx-box".into(),
            path_env: "/opt/homebrew/bin:/usr/bin:/bin".into(),
            logs_dir: Some("/Users/me/Library/Logs/mlx-box".into()),
            scope: Scope::User,
            run_as: None,
        }
    }

    fn system_agent() -> Agent {
        Agent {
            scope: Scope::System,
            run_as: Some(RunAs {
                name: "me".into(),
                uid: 501,
                home: "/Users/me".into(),
            }),
            logs_dir: Some(SYSTEM_LOGS_DIR.into()),
            ..agent()
        }
    }

    /// What Python's plistlib reads of `text`, as JSON.
    fn plistlib(text: &str) -> serde_json::Value {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.plist");
        std::fs::write(&p, text).unwrap();
        let script = r#"
import plistlib, sys, json
d = plistlib.load(open(sys.argv[1], "rb"))
print(json.dumps(d))
"#;
        let out = Command::new("python3")
            .args(["-c", script])
            .arg(&p)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// The plist is one Python's plistlib reads, with every key launchd needs.
    #[test]
    fn the_launch_agent_parses_and_has_what_launchd_needs() {
        let mut a = agent();
        a.path_env.push_str(":/odd & <dir>");
        let d = plistlib(&a.plist());
        assert_eq!(d["Label"], LABEL);
        assert_eq!(d["ProgramArguments"][0], a.bin.display().to_string());
        assert_eq!(d["ProgramArguments"][1], "up");
        assert_eq!(d["ProgramArguments"][3], a.config.display().to_string());
        assert_eq!(d["ProgramArguments"][5], a.state_dir.display().to_string());
        assert_eq!(d["ProgramArguments"][6], "--already-running-exit");
        assert_eq!(d["ProgramArguments"][7], "0");
        assert_eq!(d["RunAtLoad"], true);
        assert_eq!(d["KeepAlive"]["SuccessfulExit"], false);
        assert_eq!(d["EnvironmentVariables"]["PATH"], a.path_env);
        assert!(d.get("UserName").is_none());
        assert!(d["StandardErrorPath"]
            .as_str()
            .unwrap()
            .ends_with("stderr.log"));
        assert!(d["StandardOutPath"]
            .as_str()
            .unwrap()
            .ends_with("stdout.log"));
    }

    /// The LaunchDaemon runs as the operator (`UserName`, their HOME) on their settings and state dir,
    /// at load, and again after anything but a clean exit.
    #[test]
    fn the_launch_daemon_parses_and_runs_as_the_operator() {
        let a = system_agent();
        let d = plistlib(&a.plist());
        assert_eq!(d["Label"], LABEL);
        assert_eq!(d["UserName"], "me");
        assert_eq!(d["EnvironmentVariables"]["HOME"], "/Users/me");
        assert_eq!(d["ProgramArguments"][3], a.config.display().to_string());
        assert_eq!(d["ProgramArguments"][5], a.state_dir.display().to_string());
        assert_eq!(d["ProgramArguments"][7], "0");
        assert_eq!(d["RunAtLoad"], true);
        assert_eq!(d["KeepAlive"]["SuccessfulExit"], false);
        assert_eq!(d["StandardErrorPath"], "/Library/Logs/mlx-box/stderr.log");
    }

    /// `systemd-analyze verify` on `unit` (system mode, which reads the file offline: user mode needs a
    /// user session). Unknown keys are warnings on stderr: none allowed.
    fn verify(dir: &Path, unit: &str) {
        if !cfg!(target_os = "linux") {
            eprintln!("no systemd on this OS: not verified");
            return;
        }
        let path = dir.join(UNIT);
        std::fs::write(&path, unit).unwrap();
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&path)
            .output()
            .expect("systemd-analyze (scripts/setup.sh installs systemd)");
        let err = String::from_utf8_lossy(&out.stderr);
        // Lines about the host's own units are not ours.
        let ours: Vec<&str> = err.lines().filter(|l| l.contains(UNIT)).collect();
        assert!(out.status.success() && ours.is_empty(), "{err}\n{unit}");
    }

    fn verifiable(scope: Scope) -> (tempfile::TempDir, Agent) {
        let dir = tempfile::tempdir().unwrap();
        // verify checks that ExecStart's binary exists: point it at a real one.
        let bin = dir.path().join("mlx box");
        std::fs::copy("/bin/true", &bin).unwrap();
        let a = Agent {
            bin,
            config: dir.path().join("settings.toml"),
            state_dir: dir.path().join("state"),
            path_env: "/usr/bin:/bin".into(),
            logs_dir: (scope == Scope::User).then(|| dir.path().join("logs")),
            scope,
            run_as: (scope == Scope::System).then(|| RunAs {
                name: "operator".into(),
                uid: 1000,
                home: "/nonexistent".into(),
            }),
        };
        (dir, a)
    }

    #[test]
    fn the_systemd_user_unit_verifies() {
        let (dir, a) = verifiable(Scope::User);
        let unit = a.unit();
        verify(dir.path(), &unit);
        assert!(unit.contains("Restart=on-failure"));
        assert!(unit.contains(&format!(
            "RestartPreventExitStatus={EXIT_ALREADY_RUNNING}\n"
        )));
        assert!(unit.contains("WantedBy=default.target"));
        assert!(!unit.contains("User="));
    }

    /// The system unit: `User=` the operator, at boot (multi-user), the same restart rules; its output
    /// goes to the journal.
    #[test]
    fn the_systemd_system_unit_verifies_and_runs_as_the_operator() {
        let (dir, a) = verifiable(Scope::System);
        let unit = a.unit();
        verify(dir.path(), &unit);
        for line in [
            "User=operator\n",
            "Restart=on-failure\n",
            &format!("RestartPreventExitStatus={EXIT_ALREADY_RUNNING}\n"),
            "KillMode=process\n",
            "WantedBy=multi-user.target\n",
            &format!(
                "ExecStart=\"{}\" up --config \"{}\" --state-dir \"{}\"\n",
                a.bin.display(),
                a.config.display(),
                a.state_dir.display()
            ),
        ] {
            assert!(unit.contains(line), "{line} in\n{unit}");
        }
        assert!(!unit.contains("StandardOutput"));
    }

    /// `--root`: the files go under it, the OS's paths inside them stay the real ones, and no manager is
    /// asked.
    #[test]
    fn a_root_dir_takes_the_files_and_loads_nothing() {
        let root = tempfile::tempdir().unwrap();
        let place = Place {
            manager: Manager::Systemd,
            root: Some(root.path().to_path_buf()),
        };
        let (_d, a) = verifiable(Scope::System);
        let path = install(&a, &place).unwrap();
        assert_eq!(path, root.path().join("etc/systemd/system/mlx-box.service"));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), a.unit());
        let s = status(&place).unwrap();
        assert_eq!(s[1].scope, Scope::System);
        assert!(s[1].installed);
        assert!(matches!(s[1].loaded, Some(Loaded::Unknown(_))));
        let launchd = Place {
            manager: Manager::Launchd,
            ..place.clone()
        };
        let p = install(&system_agent(), &launchd).unwrap();
        assert_eq!(
            p,
            root.path()
                .join("Library/LaunchDaemons/com.mlx-box.daemon.plist")
        );
        assert!(root.path().join("Library/Logs/mlx-box").is_dir());
        assert_eq!(
            plistlib(&std::fs::read_to_string(&p).unwrap())["UserName"],
            "me"
        );
        assert_eq!(
            uninstall(Scope::System, &place).unwrap(),
            Some(path.clone())
        );
        assert!(!path.exists());
        assert_eq!(uninstall(Scope::System, &place).unwrap(), None);
    }

    #[test]
    fn the_operators_default_paths_follow_the_platform_layout() {
        let (c, s) = default_paths(Path::new("/Users/me"), Manager::Launchd);
        assert_eq!(
            c,
            Path::new("/Users/me/Library/Application Support/mlx-box/settings.toml")
        );
        assert_eq!(
            s,
            Path::new("/Users/me/Library/Application Support/mlx-box")
        );
        let (c, s) = default_paths(Path::new("/home/me"), Manager::Systemd);
        assert_eq!(c, Path::new("/home/me/.config/mlx-box/settings.toml"));
        assert_eq!(s, Path::new("/home/me/.local/state/mlx-box"));
    }
}
