//! The daemon started by the OS, as the original mlx-box had it with launchd: at login (and so after a
//! reboot) and again after a crash. macOS: a LaunchAgent (`~/Library/LaunchAgents/com.mlx-box.daemon.plist`,
//! `launchctl bootstrap gui/$UID`); Linux: a systemd user unit (`~/.config/systemd/user/mlx-box.service`,
//! `systemctl --user enable --now`). `mlx-box service install|uninstall|status`.
//!
//! A clean exit (`mlx-box down`) is not restarted — launchd's `KeepAlive.SuccessfulExit = false`, systemd's
//! `Restart=on-failure` — so stopping the daemon on purpose stays stopped until the next login.

use std::path::{Path, PathBuf};
use std::process::Command;

pub const LABEL: &str = "com.mlx-box.daemon";
pub const UNIT: &str = "mlx-box.service";

/// What the agent runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Agent {
    /// The `mlx-box` binary.
    pub bin: PathBuf,
    pub config: PathBuf,
    pub state_dir: PathBuf,
    /// The user's PATH when installed (launchd starts agents with a bare one, where no python is found).
    pub path_env: String,
    /// Where the daemon's stdout and stderr go (two files, as the seed's launchd logs were).
    pub logs_dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum AutostartError {
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("`{cmd}` failed: {why}. The file is written ({path}); enable it by hand with that command once a user session is there")]
    Manager {
        cmd: String,
        why: String,
        path: PathBuf,
    },
    #[error("no home directory (HOME is not set)")]
    NoHome,
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

impl Agent {
    /// The agent for the running `mlx-box` binary on `config` and `state_dir` (made absolute: the OS
    /// starts it from elsewhere), with this shell's PATH.
    pub fn for_this_binary(config: &Path, state_dir: &Path) -> std::io::Result<Agent> {
        Ok(Agent {
            bin: std::env::current_exe()?,
            config: std::path::absolute(config)?,
            state_dir: std::path::absolute(state_dir)?,
            path_env: std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()),
            logs_dir: agent_logs_dir(state_dir),
        })
    }

    /// The LaunchAgent property list.
    pub fn plist(&self) -> String {
        let args = [
            self.bin.display().to_string(),
            "up".into(),
            "--config".into(),
            self.config.display().to_string(),
            "--state-dir".into(),
            self.state_dir.display().to_string(),
        ];
        let args: String = args
            .iter()
            .map(|a| format!("        <string>{}</string>\n", xml(a)))
            .collect();
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
    <key>Label</key>
    <string>{LABEL}</string>
    <key>ProgramArguments</key>
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
        <key>PATH</key>
        <string>{path}</string>
    </dict>
    <key>StandardOutPath</key>
    <string>{out}</string>
    <key>StandardErrorPath</key>
    <string>{err}</string>
</dict>
</plist>
"#,
            path = xml(&self.path_env),
            out = xml(&self.logs_dir.join("stdout.log").display().to_string()),
            err = xml(&self.logs_dir.join("stderr.log").display().to_string()),
        )
    }

    /// The systemd user unit.
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
        format!(
            "[Unit]\nDescription=mlx-box: supervises the local model servers of settings.toml\nAfter=network-online.target\n\n[Service]\nType=simple\nExecStart={} up --config {} --state-dir {}\nRestart=on-failure\nRestartSec=2\nEnvironment=\"PATH={}\"\nStandardOutput=append:{}\nStandardError=append:{}\n\n[Install]\nWantedBy=default.target\n",
            q(&self.bin),
            q(&self.config),
            q(&self.state_dir),
            self.path_env.replace('"', "").replace('%', "%%"),
            self.logs_dir.join("stdout.log").display(),
            self.logs_dir.join("stderr.log").display(),
        )
    }
}

/// Where this OS keeps the agent's file (`mlxbox_api::paths::autostart_agent`: the app reads it too).
pub fn agent_path() -> Result<PathBuf, AutostartError> {
    if std::env::var_os("HOME").is_none() {
        return Err(AutostartError::NoHome);
    }
    Ok(mlxbox_api::paths::autostart_agent())
}

/// Where the agent's stdout/stderr logs go: `~/Library/Logs/mlx-box` on macOS (as the seed's
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

/// Writes the agent and asks the OS to run it now and at every login.
pub fn install(agent: &Agent) -> Result<PathBuf, AutostartError> {
    let path = agent_path()?;
    let write = |text: String| -> Result<(), AutostartError> {
        let w = |e| AutostartError::Write {
            path: path.clone(),
            source: e,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(w)?;
        }
        std::fs::create_dir_all(&agent.logs_dir).map_err(w)?;
        std::fs::write(&path, text).map_err(w)
    };
    let manager = |cmd: String, why: String| AutostartError::Manager {
        cmd,
        why,
        path: path.clone(),
    };
    if cfg!(target_os = "macos") {
        write(agent.plist())?;
        let domain = format!("gui/{}", uid());
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
    } else {
        write(agent.unit())?;
        run(Command::new("systemctl").args(["--user", "daemon-reload"]))
            .map_err(|e| manager("systemctl --user daemon-reload".into(), e))?;
        run(Command::new("systemctl").args(["--user", "enable", "--now", UNIT]))
            .map_err(|e| manager(format!("systemctl --user enable --now {UNIT}"), e))?;
    }
    Ok(path)
}

/// Stops the agent and removes its file. Not installed: nothing to do.
pub fn uninstall() -> Result<Option<PathBuf>, AutostartError> {
    let path = agent_path()?;
    if !path.exists() {
        return Ok(None);
    }
    if cfg!(target_os = "macos") {
        let _ = run(Command::new("launchctl").args(["bootout", &format!("gui/{}/{LABEL}", uid())]));
    } else {
        let _ = run(Command::new("systemctl").args(["--user", "disable", "--now", UNIT]));
    }
    std::fs::remove_file(&path).map_err(|e| AutostartError::Write {
        path: path.clone(),
        source: e,
    })?;
    if !cfg!(target_os = "macos") {
        let _ = run(Command::new("systemctl").args(["--user", "daemon-reload"]));
    }
    Ok(Some(path))
}

/// Is the agent installed, and does the OS say it is loaded / active?
pub fn status() -> Result<(PathBuf, bool, Option<bool>), AutostartError> {
    let path = agent_path()?;
    let installed = path.exists();
    let loaded = installed.then(|| {
        if cfg!(target_os = "macos") {
            run(Command::new("launchctl").args(["print", &format!("gui/{}/{LABEL}", uid())]))
                .is_ok()
        } else {
            run(Command::new("systemctl").args(["--user", "is-active", "--quiet", UNIT])).is_ok()
        }
    });
    Ok((path, installed, loaded))
}

/// Is an agent installed? (The app then leaves restarting a dead daemon to the OS.)
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
            logs_dir: "/Users/me/Library/Logs/mlx-box".into(),
        }
    }

    /// The plist is one Python's plistlib reads, with every key launchd needs.
    #[test]
    fn the_launch_agent_parses_and_has_what_launchd_needs() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.plist");
        let mut a = agent();
        a.path_env.push_str(":/odd & <dir>");
        std::fs::write(&p, a.plist()).unwrap();
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
        let d: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(d["Label"], LABEL);
        assert_eq!(d["ProgramArguments"][0], a.bin.display().to_string());
        assert_eq!(d["ProgramArguments"][1], "up");
        assert_eq!(d["ProgramArguments"][3], a.config.display().to_string());
        assert_eq!(d["RunAtLoad"], true);
        assert_eq!(d["KeepAlive"]["SuccessfulExit"], false);
        assert_eq!(d["EnvironmentVariables"]["PATH"], a.path_env);
        assert!(d["StandardErrorPath"]
            .as_str()
            .unwrap()
            .ends_with("stderr.log"));
        assert!(d["StandardOutPath"]
            .as_str()
            .unwrap()
            .ends_with("stdout.log"));
    }

    /// The unit passes `systemd-analyze verify` (where systemd is installed; system mode, which reads the
    /// file offline: user mode needs a user session). Unknown keys are warnings on stderr: none allowed.
    #[test]
    fn the_systemd_unit_verifies() {
        let dir = tempfile::tempdir().unwrap();
        // verify checks that ExecStart's binary exists: point it at a real one.
        let bin = dir.path().join("mlx box");
        std::fs::copy("/bin/true", &bin).unwrap();
        let a = Agent {
            bin,
            config: dir.path().join("settings.toml"),
            state_dir: dir.path().join("state"),
            path_env: "/usr/bin:/bin".into(),
            logs_dir: dir.path().join("logs"),
        };
        let unit = dir.path().join(UNIT);
        std::fs::write(&unit, a.unit()).unwrap();
        let Ok(out) = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&unit)
            .output()
        else {
            eprintln!("no systemd-analyze: skipped");
            return;
        };
        let err = String::from_utf8_lossy(&out.stderr);
        // Lines about the host's own units are not ours.
        let ours: Vec<&str> = err.lines().filter(|l| l.contains(UNIT)).collect();
        assert!(out.status.success() && ours.is_empty(), "{err}");
        assert!(a.unit().contains("Restart=on-failure"));
    }
}
