#!/usr/bin/env bash
# A/B of two mlx-box binaries' proxies under the same load, in the same run (what a change costs):
#
#   scripts/proxy_ab.sh OLD_BIN NEW_BIN [SECONDS] [ROUNDS]
#
# Each binary runs `mlx-box up` with one service whose backend is a fast nginx upstream of its own (the same
# config: a fixed chat completion, or for `?stream=1` a fixed SSE stream with a think span); wrk (1 thread,
# 32 connections) sends GET /v1/models, a ~400-byte POST /v1/chat/completions and the same POST streamed to
# each frontend in alternating rounds; MLXBOX_AB_FILTER=true turns the service's `filter_reasoning` on.
# Prints the best round of each and the ratio new/old, and each daemon's CPU time per request (user +
# system, all its threads, from /proc; median of the rounds): on this shared machine requests/s swing by
# ±20 % with the neighbours' load, the CPU a request costs much less. Loopback only; everything it starts
# is stopped on exit. Needs nginx, wrk, curl.
set -euo pipefail
OLD=$(realpath "$1")
NEW=$(realpath "$2")
SECS=${3:-5}
ROUNDS=${4:-3}
T=$(mktemp -d "${TMPDIR:-/tmp}/mlxbox-ab.XXXXXX")
chmod 700 "$T"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
BODY='{"id":"chatcmpl-1","object":"chat.completion","model":"m","choices":[{"index":0,"finish_reason":"stop","message":{"role":"assistant","content":"Hello from a fast upstream."}}],"usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12}}'
SSE=$'data: {"choices":[{"index":0,"delta":{"content":"<think>hmm</think>"}}]}\n\ndata: {"choices":[{"index":0,"delta":{"content":"Hello from a fast upstream."}}]}\n\ndata: {"choices":[{"index":0,"finish_reason":"stop","delta":{}}],"usage":{"completion_tokens":7}}\n\ndata: [DONE]\n\n'

cleanup() {
  for d in a b; do
    if [ -f "$T/$d.pid" ]; then kill -TERM "$(cat "$T/$d.pid")" 2>/dev/null || true; fi
  done
  sleep 2
  rm -rf "$T"
}
trap cleanup EXIT

# start NAME BIN FRONT_PORT: a daemon that runs its own upstream nginx as its one service.
start() {
  local up
  up=$(port)
  mkdir -m 700 "$T/$1"
  cat > "$T/$1-up.conf" <<NGINX
worker_processes 1; pid $T/$1-up.pid; error_log $T/$1-up.err warn; events { worker_connections 1024; }
http { access_log off; client_body_temp_path $T/$1-tmp; keepalive_requests 1000000;
  server { listen 127.0.0.1:$up; default_type application/json;
    location = /v1/chat/completions { if (\$arg_stream) { rewrite ^ /sse last; } return 200 '$BODY'; }
    location = /sse { internal; default_type text/event-stream; return 200 '$SSE'; }
    location / { return 200 '$BODY'; } } }
NGINX
  printf '[server]\nhost = "127.0.0.1"\napi_keys = ["bench-key"]\n[services.fast]\nkind = "command"\nport = %s\nbackend_port = %s\nmodel = "bench/model"\nprobe = "/v1/models"\nfilter_reasoning = %s\ncommand = ["nginx", "-c", "%s", "-g", "daemon off;"]\n' \
    "$3" "$up" "${MLXBOX_AB_FILTER:-false}" "$T/$1-up.conf" > "$T/$1.toml"
  DBUS_SESSION_BUS_ADDRESS=disabled: MLXBOX_LOG=warn setsid "$2" up --config "$T/$1.toml" --state-dir "$T/$1/state" >"$T/$1.log" 2>&1 &
  echo $! > "$T/$1.pid"
}

FA=$(port)
FB=$(port)
start a "$OLD" "$FA"
start b "$NEW" "$FB"
for f in "$FA" "$FB"; do
  for _ in $(seq 150); do
    code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer bench-key' "http://127.0.0.1:$f/v1/models" || true)
    [ "$code" = 200 ] && break
    sleep 0.2
  done
done

printf 'wrk.headers["Authorization"] = "Bearer bench-key"\n' > "$T/get.lua"
printf '%s\n' 'wrk.method = "POST"' 'wrk.headers["Authorization"] = "Bearer bench-key"' \
  'wrk.headers["Content-Type"] = "application/json"' \
  'wrk.body = [==[{"model":"bench/model","messages":[{"role":"system","content":"You are a careful assistant. Answer in two short paragraphs, cite nothing you cannot check, and say so when you do not know."},{"role":"user","content":"Explain why the memory a model needs grows with the context length, and what the KV cache is."}],"max_tokens":256,"stream":false}]==]' \
  > "$T/post.lua"

# CPU ticks (user + system) of a daemon, all its threads.
ticks() { awk '{s += $14 + $15} END {print s}' /proc/"$(cat "$T/$1.pid")"/task/*/stat; }
# One round against daemon NAME at PORT: prints "req/s µs-per-request".
round() {
  local before after out
  before=$(ticks "$1")
  out=$(wrk -t1 -c32 -d"${SECS}s" -s "$T/$3.lua" "http://127.0.0.1:$2/v1/$4")
  after=$(ticks "$1")
  echo "$out" | awk -v t=$((after - before)) -v hz="$(getconf CLK_TCK)" \
    '/Requests\/sec/ {r = $2} /requests in/ {n = $1} END {printf "%s %.2f\n", r, t * 1e6 / hz / n}'
}
echo "| request | old req/s | new req/s | new / old | old µs/req | new µs/req | new / old |"
echo "|---|---|---|---|---|---|---|"
for req in "get models" "post chat/completions" "post chat/completions?stream=1"; do
  set -- $req
  round a "$FA" "$1" "$2" >/dev/null
  round b "$FB" "$1" "$2" >/dev/null
  : > "$T/rounds"
  for _ in $(seq "$ROUNDS"); do
    echo "a $(round a "$FA" "$1" "$2")" >> "$T/rounds"
    echo "b $(round b "$FB" "$1" "$2")" >> "$T/rounds"
  done
  python3 - "$T/rounds" "${1^^} /v1/$2" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
rps = {w: max(float(r[1]) for r in rows if r[0] == w) for w in "ab"}
cpu = {w: statistics.median(float(r[2]) for r in rows if r[0] == w) for w in "ab"}
print("| %s | %.0f | %.0f | %.3f | %.2f | %.2f | %.3f |" % (
    sys.argv[2], rps["a"], rps["b"], rps["b"] / rps["a"], cpu["a"], cpu["b"], cpu["b"] / cpu["a"]))
PY
done
