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
log=$(mktemp)
# Unit + integration tests (no doc tests: there are none). The summed closing line is what CI reads.
set +e
cargo test --workspace --lib --bins --tests -- --test-threads 2 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
passed=$(grep -Eo '[0-9]+ passed' "$log" | awk '{s+=$1} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed' "$log" | awk '{s+=$1} END {print s+0}')
rm -f "$log"
[ "$status" -eq 0 ] || { echo "tests: $passed passed, $failed failed"; exit "$status"; }
if [ "$(uname -s)" = Linux ]; then
  say "type-checking the macOS build (aarch64-apple-darwin)"
  rustup target add aarch64-apple-darwin >/dev/null
  cargo check --target aarch64-apple-darwin -p mlxbox-core -p mlx-box
fi
say "all checks passed"
echo "tests: $passed passed, $failed failed"
