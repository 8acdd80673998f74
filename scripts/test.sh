#!/usr/bin/env bash
# Sets up this machine and runs every test: formatting, clippy, the front end's type-check and unit tests,
# the TypeScript types' drift check, unit + integration tests (real processes, the real mlx_lm.server on tiny
# models), the app's tests on tauri's mock runtime, end-to-end tests of the real app under Xvfb, and a
# type-check of the macOS build.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh
ensure_system_packages
ensure_rust
ensure_app_packages
rustup component add rustfmt clippy >/dev/null 2>&1 || true
# The demo's Python environment and tiny models are cached here (built once, ~1-2 min).
export MLXBOX_CACHE_DIR="${MLXBOX_CACHE_DIR:-$PWD/target/mlxbox-cache}"
if [ "$(uname -s)" = Darwin ]; then
  # Linux-only parts, skipped on a Mac and said so: the two-host tests' network namespaces (ip netns, as
  # root), the tests' private Secret Service sessions (D-Bus + gnome-keyring; a Mac has the login Keychain,
  # which tests must not write into); below, the app's end-to-end tests under Xvfb and the .deb.
  say "macOS: skipping the Linux-only parts (network namespaces, Secret Service sessions, Xvfb end-to-end, .deb)"
  export MLXBOX_SKIP_NETNS=1 MLXBOX_SKIP_KEYRING_SESSION=1
fi

passed=0
failed=0
# Adds the "N passed" / "N failed" figures of a runner's output (cargo test, vitest, e2e) to the totals.
count() {
  local p f
  # (vitest also prints a "Test Files N passed" line: not tests, so not counted)
  # (a runner that prints no "failed" at all makes grep exit 1: not an error here)
  p=$({ grep -v 'Test Files' "$1" || true; } | { grep -Eo '[0-9]+ passed' || true; } | awk '{s+=$1} END {print s+0}')
  f=$({ grep -v 'Test Files' "$1" || true; } | { grep -Eo '[0-9]+ failed' || true; } | awk '{s+=$1} END {print s+0}')
  passed=$((passed + p))
  failed=$((failed + f))
}
# Runs a test command, teeing its output; on failure prints the totals so far and exits with its status.
run_counted() {
  local log status
  log=$(mktemp)
  set +e
  "$@" 2>&1 | tee "$log"
  status=${PIPESTATUS[0]}
  set -e
  count "$log"
  rm -f "$log"
  if [ "$status" -ne 0 ]; then
    echo "tests: $passed passed, $failed failed"
    exit "$status"
  fi
}

build_ui
say "front end: svelte-check + unit tests (vitest)"
npm run check --silent
run_counted npm test --silent

say "TypeScript types generated from the Rust ones: no drift"
cargo test -q -p mlxbox-api -p mlxbox-client --lib export_ >/dev/null
if [ -n "$(git status --porcelain -- ui/src/bindings ui/src/lib/settingsSchema.generated.ts)" ]; then
  git status --porcelain -- ui/src/bindings ui/src/lib/settingsSchema.generated.ts
  say "generated UI types are out of date: run 'cargo test -p mlxbox-api -p mlxbox-client --lib export_' and commit them"
  exit 1
fi

say "crate boundaries: the wire crate has no runtime; the app links no server and not the daemon"
if cargo tree -p mlxbox-api -e normal | grep -E 'tokio|hyper|axum|notify'; then
  say "mlxbox-api must stay a leaf (serde, ts-rs): see the lines above"; exit 1
fi
if cargo tree -p mlx-box-app -e features | grep -E 'axum|hyper feature "server"|mlxbox-core'; then
  say "src-tauri must not link a server or the daemon: see the lines above"; exit 1
fi

say "cargo fmt --check"
cargo fmt --all -- --check
say "cargo clippy (core, CLI, app)"
cargo clippy --workspace --all-targets -- -D warnings

say "cargo test: core and CLI (real daemons, real servers)"
# Unit + integration tests (no doc tests: there are none).
run_counted cargo test --workspace --exclude mlx-box-app --lib --bins --tests -- --test-threads 2
say "benchmarks in quick mode: a few rounds each; they fail on errors and panics, never on a speed target"
cargo test -q -p mlx-box --benches
say "cargo test: the app's commands on tauri's mock runtime"
run_counted cargo test -p mlx-box-app --lib --tests

if [ "$(uname -s)" = Linux ]; then
  say "end-to-end: the real app under Xvfb, driven by tauri-driver, on the demo profile"
  ensure_e2e_packages
  cargo build -q -p mlx-box -p mlx-box-app
  bin="${CARGO_TARGET_DIR:-target}/debug"
  run_counted python3 tests/e2e/app_e2e.py \
    --app "$bin/mlx-box-app" --cli "$bin/mlx-box" --screenshots target/e2e
  say "the app's performance bench in quick mode (errors only, no speed target)"
  python3 tests/e2e/app_perf.py --app "$bin/mlx-box-app" --cli "$bin/mlx-box" --quick

  say "the .deb: scripts/release.sh --debug bundles this debug build; the app from it, with PATH=/nonexistent, starts the daemon it carries"
  deb_t0=$SECONDS
  dist="${CARGO_TARGET_DIR:-target}/e2e-dist"
  scripts/release.sh --debug --out "$dist"
  run_counted python3 tests/e2e/deb_e2e.py --deb "$(ls "$dist"/mlx-box_*.deb)" --screenshots target/e2e
  say "the .deb test took $((SECONDS - deb_t0)) s"

  say "type-checking and linting the macOS build (aarch64-apple-darwin): core, CLI and the app"
  rustup target add aarch64-apple-darwin >/dev/null
  # Build scripts compile C/C++ for the target (ring, objc2's exception helper): stand-ins write empty
  # outputs (a check links nothing). The Rust code, the app's macOS-only code included, is checked for real.
  CC_aarch64_apple_darwin="$PWD/scripts/macos-check/cc" CXX_aarch64_apple_darwin="$PWD/scripts/macos-check/cc" \
    AR_aarch64_apple_darwin="$PWD/scripts/macos-check/ar" \
    cargo clippy --target aarch64-apple-darwin -p mlxbox-core -p mlx-box -p mlx-box-app -- -D warnings
  # The core's macOS-only tests (sysctl memory and swap, the thermal state) compile nowhere else.
  CC_aarch64_apple_darwin="$PWD/scripts/macos-check/cc" CXX_aarch64_apple_darwin="$PWD/scripts/macos-check/cc" \
    AR_aarch64_apple_darwin="$PWD/scripts/macos-check/ar" \
    cargo clippy --target aarch64-apple-darwin -p mlxbox-core --lib --tests -- -D warnings
fi
say "all checks passed"
echo "tests: $passed passed, $failed failed"
