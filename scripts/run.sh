#!/usr/bin/env bash
# Sets up this machine and runs mlx-box: the menu-bar app when there is a display (it starts the daemon,
# which runs your settings.toml or, when you have none, the demo profile), else the daemon alone in the
# foreground (`mlx-box up`, the demo profile when you have no settings.toml). The demo's first run makes a
# Python environment and tiny local models (~2 min). Extra arguments go to `mlx-box up` in headless mode
# (e.g. --config PATH, --demo, --state-dir DIR); MLXBOX_HEADLESS=1 forces headless mode.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh
ensure_system_packages
ensure_rust

has_display() {
  [ "${MLXBOX_HEADLESS:-0}" != 1 ] || return 1
  [ "$(uname -s)" = Darwin ] || [ -n "${DISPLAY:-}" ] || [ -n "${WAYLAND_DISPLAY:-}" ]
}

if has_display && [ $# -eq 0 ]; then
  ensure_app_packages
  build_ui
  say "building mlx-box and the menu-bar app (release; the first build takes ~10 min)"
  cargo build --release -p mlx-box -p mlx-box-app
  say "running the menu-bar app (it starts the daemon; quit from its menu — servers keep running: 'mlx-box down' stops them)"
  exec ./target/release/mlx-box-app --open dashboard
fi

say "building mlx-box (release)"
cargo build --release -p mlx-box
say "running: mlx-box up $*   (Ctrl-C stops every server; 'mlx-box status' in another terminal)"
exec ./target/release/mlx-box up "$@"
