#!/usr/bin/env bash
# Soak test of the daemon and its API-key proxy: `scripts/soak.sh [MINUTES]` (default 10, or SOAK_MINUTES).
# Not part of CI. Loopback only; everything it starts lives in a temp dir and is stopped on exit.
#
# A real `mlx-box up` supervises three fault servers (python/fault_server.py, mode ok: one plain, one with
# --think and filter_reasoning, one with --think and max_concurrency = 2), each behind the proxy. For
# MINUTES, scripts/soak_load.py sends mixed load through the frontends (chat, SSE streams, bad keys,
# slowloris, > 64 MiB bodies, idle keep-alive connections; and, through the one gate's other listeners, the
# one endpoint, /metrics on [metrics] listen and silent sockets to the TLS [control] port) while a chaos loop SIGKILLs a server's process
# group every 10-20 s and edits settings.toml every ~30 s. It fails (exit 1) on any request LOST (no
# status), a wrong answer, an fd climb (end > start + 16), an RSS climb (end > 1.5 x start + 20 MB), or
# "panicked" in the daemon's log. Exit 2: no binary (build it first: cargo build -p mlx-box).
#
# Environment: MLXBOX_BIN (default ${CARGO_TARGET_DIR:-target}/debug/mlx-box), SOAK_MINUTES,
# SOAK_WORKERS (4), SOAK_EDIT_EVERY_S (30), SOAK_OVERSIZE_EVERY_S (10; 0 = none), SOAK_PROGRESS_S (60),
# SOAK_PROXY_EDITS=1 (every third edit changes [server] request_timeout_s, which restarts the proxy's
# listeners), SOAK_VERBOSE=1 (log each kill and edit), SOAK_KEEP=1 (keep the temp dir on failure).
# A SIGKILL of this script skips its clean-up: then stop the daemon with
# `mlx-box down --state-dir /tmp/mlxbox-soak.*/state`.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

MINUTES=${1:-${SOAK_MINUTES:-10}}
if ! [[ $MINUTES =~ ^[0-9]+([.][0-9]+)?$ ]] || [[ $MINUTES =~ ^0+([.]0*)?$ ]]; then
  echo "usage: scripts/soak.sh [MINUTES]   (a positive number; default 10)" >&2
  exit 2
fi
BIN=${MLXBOX_BIN:-${CARGO_TARGET_DIR:-target}/debug/mlx-box}
case $BIN in /*) ;; *) BIN=$ROOT/$BIN ;; esac
if [ ! -x "$BIN" ]; then
  echo "soak: no mlx-box binary at $BIN: build it first (cargo build -p mlx-box), or set MLXBOX_BIN" >&2
  exit 2
fi
PY=$(command -v python3) || { echo "soak: python3 is needed" >&2; exit 2; }

# Keep the test away from the user's keyring and daemon: no session bus, a private keyring service name.
export DBUS_SESSION_BUS_ADDRESS=disabled: DISPLAY= MLXBOX_KEYRING_SERVICE=mlx-box-soak MLXBOX_LOG=info NO_COLOR=1
unset MLXBOX_STATE_DIR

TMP=$(mktemp -d "${TMPDIR:-/tmp}/mlxbox-soak.XXXXXX")
chmod 700 "$TMP"
STATE=$TMP/state
mkdir -m 700 "$STATE"
CONFIG=$TMP/settings.toml
LOG=$TMP/daemon.log
DAEMON_PID=
LOAD_PID=

# Process groups of this run's servers. With /proc: the group of every process whose command line names the
# temp dir (the servers run a copy of fault_server.py from it; a recycled pid never matches). Without /proc
# (macOS): the groups in the daemon's state file and in the load generator's report.
our_pgids() {
  "$PY" - "$TMP" <<'EOF'
import json, os, sys
tmp = sys.argv[1]
pg = set()
if os.path.isdir("/proc/self"):
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                if tmp.encode() in open(f"/proc/{p}/cmdline", "rb").read():
                    pg.add(os.getpgid(int(p)))
            except Exception:
                pass
else:
    for f in ("state/state.json", "report.json"):
        try:
            v = json.load(open(os.path.join(tmp, f)))
        except Exception:
            continue
        if f == "report.json":
            pg.update(v.get("pgids", []))
        elif isinstance(v, dict):
            pg.update(r.get("pgid") for r in v.values() if isinstance(r, dict) and r.get("pgid"))
mine = os.getpgid(0)
print(" ".join(str(g) for g in sorted(pg) if g and g != mine and g > 1))
EOF
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM HUP
  if [ -n "$LOAD_PID" ] && kill -0 "$LOAD_PID" 2>/dev/null; then
    kill "$LOAD_PID" 2>/dev/null || true
    wait "$LOAD_PID" 2>/dev/null || true
  fi
  if [ -n "$DAEMON_PID" ] && kill -0 "$DAEMON_PID" 2>/dev/null; then
    # `down` stops every service, then the daemon; bounded at 30 s.
    "$BIN" down --state-dir "$STATE" >/dev/null 2>&1 &
    local down=$! i
    for i in $(seq 300); do kill -0 "$down" 2>/dev/null || break; sleep 0.1; done
    kill "$down" 2>/dev/null || true
    wait "$down" 2>/dev/null || true
  fi
  local groups
  groups=$(our_pgids 2>/dev/null || true)
  [ -n "$DAEMON_PID" ] && groups="$DAEMON_PID $groups"
  for g in $groups; do kill -KILL -- "-$g" 2>/dev/null || true; done
  if [ -n "$DAEMON_PID" ]; then wait "$DAEMON_PID" 2>/dev/null || true; fi
  if [ "$rc" -ne 0 ] && [ "${SOAK_KEEP:-0}" = 1 ]; then
    echo "soak: kept $TMP"
  else
    rm -rf "$TMP"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

# Ports: nine free high loopback ports, held together while chosen so they differ.
read -r P1 B1 P2 B2 P3 B3 EP MP CP < <("$PY" -c '
import socket
ss = [socket.socket() for _ in range(9)]
for s in ss: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in ss])')
KEY=soak-$("$PY" -c 'import secrets; print(secrets.token_hex(16))')
cp python/fault_server.py "$TMP/fault_server.py"
FS=$TMP/fault_server.py

service() { # NAME PORT BACKEND EXTRA-ARGV EXTRA-KEYS
  cat <<EOF

[services.$1]
kind = "command"
port = $2
backend_port = $3
probe = "chat"
max_tokens = 100
command = ["{python}", "$FS", "--mode", "ok"$4, "--host", "{host}", "--port", "{port}"]
$5
EOF
}
{
  cat <<EOF
# Written by scripts/soak.sh; edited during the run.
[server]
host = "127.0.0.1"
api_key = "$KEY"
request_timeout_s = 10
port = $EP

[metrics]
listen = "127.0.0.1:$MP"

[control]
listen = "127.0.0.1:$CP"

[app]
python = "$PY"
stable_after_s = 5
EOF
  service plain "$P1" "$B1" "" ""
  service think "$P2" "$B2" ', "--think"' 'filter_reasoning = true'
  service limited "$P3" "$B3" ', "--think"' 'max_concurrency = 2'
} >"$CONFIG"
"$BIN" validate "$CONFIG" >/dev/null 2>&1 || { echo "soak: the generated settings.toml is invalid:" >&2; "$BIN" validate "$CONFIG" >&2 || true; exit 1; }

# The daemon, in its own process group.
"$PY" -c 'import os, sys; os.setpgid(0, 0); os.execv(sys.argv[1], sys.argv[1:])' \
  "$BIN" up --config "$CONFIG" --state-dir "$STATE" </dev/null >/dev/null 2>"$LOG" &
DAEMON_PID=$!
echo "soak: $BIN, daemon pid $DAEMON_PID, state $STATE, ports $P1/$P2/$P3 -> $B1/$B2/$B3"

ready=0
for _ in $(seq 240); do
  if ! kill -0 "$DAEMON_PID" 2>/dev/null; then
    echo "soak: the daemon exited at start-up:" >&2
    tail -n 30 "$LOG" >&2
    exit 1
  fi
  if "$BIN" status --json --state-dir "$STATE" 2>/dev/null | "$PY" -c '
import json, sys
s = json.load(sys.stdin)["services"]
sys.exit(0 if len(s) == 3 and all(x["state"] == "ready" for x in s) else 1)' 2>/dev/null; then
    ready=1
    break
  fi
  sleep 0.5
done
if [ "$ready" != 1 ]; then
  echo "soak: the services were not ready within 120 s:" >&2
  "$BIN" status --state-dir "$STATE" >&2 || true
  tail -n 30 "$LOG" >&2
  exit 1
fi
echo "soak: 3/3 ready"

opts=()
[ "${SOAK_PROXY_EDITS:-0}" = 1 ] && opts+=(--proxy-edits)
[ "${SOAK_VERBOSE:-0}" = 1 ] && opts+=(--verbose)
set +e
"$PY" scripts/soak_load.py --bin "$BIN" --state-dir "$STATE" --config "$CONFIG" \
  --daemon-pid "$DAEMON_PID" --key "$KEY" --minutes "$MINUTES" --workers "${SOAK_WORKERS:-4}" \
  --service "plain:$P1:0:0" --service "think:$P2:1:1" --service "limited:$P3:1:0" \
  --face "endpoint:$EP" --face "metrics:$MP" --face "control:$CP" \
  --edit-every-s "${SOAK_EDIT_EVERY_S:-30}" --oversize-every-s "${SOAK_OVERSIZE_EVERY_S:-10}" \
  --progress-s "${SOAK_PROGRESS_S:-60}" --report "$TMP/report.json" ${opts[@]+"${opts[@]}"} &
LOAD_PID=$!
wait "$LOAD_PID"
load_rc=$?
LOAD_PID=
set -e

fail=0
[ "$load_rc" -eq 0 ] || fail=1
panics=$(grep -c "panicked" "$LOG" || true)
echo "panics:    $panics in the daemon's log"
if [ "$panics" -gt 0 ]; then
  grep -m 5 -A 3 "panicked" "$LOG" | sed 's/^/  /'
  fail=1
fi
errors=$(grep -cE '\b(ERROR|WARN)\b' "$LOG" || true)
if [ "$errors" -gt 0 ]; then
  echo "log:       $errors ERROR/WARN lines in the daemon's log; the last ones:"
  grep -E '\b(ERROR|WARN)\b' "$LOG" | tail -n 5 | cut -c1-240 | sed 's/^/  /'
fi
if [ "$fail" -ne 0 ]; then
  echo "soak: FAIL"
  exit 1
fi
echo "soak: PASS"
