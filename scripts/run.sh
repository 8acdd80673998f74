#!/usr/bin/env bash
# Sets up this machine and runs mlx-box: your settings.toml if you have one, else the demo profile
# (tiny local models, real servers; the first run makes a Python environment and the models: ~2 min).
# Extra arguments go to `mlx-box up` (e.g. --config PATH, --demo, --state-dir DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh
ensure_system_packages
ensure_rust
say "building mlx-box (release)"
cargo build --release -p mlx-box
say "running: mlx-box up $*   (Ctrl-C stops every server; 'mlx-box status' in another terminal)"
exec ./target/release/mlx-box up "$@"
