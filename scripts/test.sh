#!/usr/bin/env bash
# Sets up this machine and runs every test: formatting, clippy, unit + integration tests (real processes,
# the real mlx_lm.server on tiny models), and a type-check of the macOS build.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh
ensure_system_packages
ensure_rust
rustup component add rustfmt clippy >/dev/null 2>&1 || true
# The demo's Python environment and tiny models are cached here (built once, ~1-2 min).
export MLXBOX_CACHE_DIR="${MLXBOX_CACHE_DIR:-$PWD/target/mlxbox-cache}"

say "cargo fmt --check"
cargo fmt --all -- --check
say "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
say "cargo test"
cargo test --workspace -- --test-threads 2
if [ "$(uname -s)" = Linux ]; then
  say "type-checking the macOS build (aarch64-apple-darwin)"
  rustup target add aarch64-apple-darwin >/dev/null
  cargo check --target aarch64-apple-darwin -p mlxbox-core -p mlx-box
fi
say "all tests passed"
