//! Where things live: the state dir (socket, state file, logs, demo), the default config, the cache. The
//! daemon and its clients must agree on these, so they are part of the contract.

use std::path::{Path, PathBuf};

pub const SOCKET: &str = "mlx-box.sock";

fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp"))
}

fn xdg(var: &str, fallback: &str) -> PathBuf {
    std::env::var_os(var)
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .unwrap_or_else(|| home().join(fallback))
}

/// `--state-dir`, else `MLXBOX_STATE_DIR`, else the platform default.
pub fn state_dir(explicit: Option<&Path>) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    if let Some(p) = std::env::var_os("MLXBOX_STATE_DIR").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    if cfg!(target_os = "macos") {
        home().join("Library/Application Support/mlx-box")
    } else {
        xdg("XDG_STATE_HOME", ".local/state").join("mlx-box")
    }
}

/// The user's settings.toml when none is given: `MLXBOX_CONFIG`, else the platform default.
pub fn default_config() -> PathBuf {
    if let Some(p) = std::env::var_os("MLXBOX_CONFIG").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    if cfg!(target_os = "macos") {
        home().join("Library/Application Support/mlx-box/settings.toml")
    } else {
        xdg("XDG_CONFIG_HOME", ".config").join("mlx-box/settings.toml")
    }
}

/// The OS's agent that starts the daemon at login and after a crash (`mlx-box service install`): a
/// LaunchAgent on macOS, a systemd user unit elsewhere. Clients read whether it exists: with one, the OS
/// restarts a dead daemon; without, the menu-bar app does.
pub fn autostart_agent() -> PathBuf {
    if cfg!(target_os = "macos") {
        home().join("Library/LaunchAgents/com.mlx-box.daemon.plist")
    } else {
        xdg("XDG_CONFIG_HOME", ".config").join("systemd/user/mlx-box.service")
    }
}

/// The system-wide daemon that starts at boot, before anyone logs in (`mlx-box service install
/// --system`): a LaunchDaemon on macOS, a systemd system unit elsewhere. With one, the OS restarts a dead
/// daemon too.
pub fn autostart_system() -> PathBuf {
    if cfg!(target_os = "macos") {
        PathBuf::from("/Library/LaunchDaemons/com.mlx-box.daemon.plist")
    } else {
        PathBuf::from("/etc/systemd/system/mlx-box.service")
    }
}

/// Cache for the demo's Python environment and tiny models (big, rebuildable, shared by state dirs).
pub fn cache_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("MLXBOX_CACHE_DIR").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    if cfg!(target_os = "macos") {
        home().join("Library/Caches/mlx-box")
    } else {
        xdg("XDG_CACHE_HOME", ".cache").join("mlx-box")
    }
}

pub fn socket_path(state_dir: &Path) -> PathBuf {
    state_dir.join(SOCKET)
}
