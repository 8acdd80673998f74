#!/usr/bin/env bash
# The cargo-fuzz targets (fuzz/fuzz_targets), each for a bounded time: `scripts/fuzz.sh [SECONDS]` (default
# 60 per target). Needs a nightly toolchain (installed here with rustup when missing) and cargo-fuzz. Not
# part of CI: the same properties run as proptests in the normal test run. Crashes land in
# fuzz/artifacts/TARGET/; the corpus grows in fuzz/corpus/TARGET/ (both ignored by git).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
for t in request_body sse_filter settings config_edit backend_reply; do
  echo "== $t ($secs s)"
  cargo +nightly fuzz run "$t" -- -max_total_time="$secs" -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 2>&1 \
    | grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|#[0-9]+[[:space:]]+DONE|==[0-9]+==|SUMMARY|thread .* panicked)' || true
  if [ -n "$(ls -A "fuzz/artifacts/$t" 2>/dev/null)" ]; then
    echo "fuzz: $t found a crash: fuzz/artifacts/$t/" >&2
    exit 1
  fi
done
echo "fuzz: no crash"
