#!/usr/bin/env python3
"""A deliberately misbehaving OpenAI-ish server for mlx-box's supervisor tests (stdlib only, starts fast).

Modes:
  ok              serve forever
  slow-ready      sleep --delay seconds, then bind and serve; write time.time() to --ready-file once listening
  crash-at-start  print an error to stderr and exit 1 without binding
  crash-later     serve, then after --delay seconds print to stderr and exit 3
  hang            bind, accept connections, never answer
  ignore-sigterm  serve, ignoring SIGTERM (only SIGKILL stops it)
  hang-later      serve, then after --delay seconds stop answering (alive but wedged: liveness must notice)
  slow            serve, but each chat completion takes --delay seconds (for concurrency limits)

--think makes chat answers carry "<think>…</think>" in content and a "reasoning" field, split across
SSE chunks when the request asks for "stream": true (for the reasoning filter).
--tools makes a chat request that offers `tools` get a call of its first tool, `{"city": "Paris"}`
(streamed in two argument pieces when asked), and one whose last message is a tool result get
"The tool said: RESULT" (a stand-in for a model that calls tools, which the tiny model cannot).
  grandchild      spawn a grandchild (same process group) that serves; the parent only sleeps

A hostile backend, in any serving mode: a chat request whose body has "fault": CASE answers
  huge-index      an SSE stream whose choice index is 100000000000 (with think tags)
  json-for-stream plain JSON (with think tags) although the request asked for a stream
  no-final-blank  an SSE stream whose last event has no blank line after it
  endless-event   one SSE event of 6 MB that never ends
  echo-headers    200 with the request's headers as JSON
  slow-stream     an SSE stream of `chunks` (default 8) content chunks, one every 0.5 s
  grow            keeps `mb` (default 100) MB more of memory for good (a server whose footprint grows), 200
Every answer carries `Access-Control-Allow-Origin: *`, as mlx_lm's does by default.
"""
import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


HOG = []  # what `grow` keeps
ARGS = None  # the parsed command line (handlers read --mode, --delay, --think)
WEDGED = threading.Event()  # hang-later: once set, requests are accepted but never answered


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def handle_one_request(self):
        if WEDGED.is_set():
            time.sleep(3600)
        super().handle_one_request()

    def log_message(self, fmt, *args):
        sys.stderr.write("fault_server: " + (fmt % args) + "\n")

    def end_headers(self):
        self.send_header("Access-Control-Allow-Origin", "*")
        super().end_headers()

    def _json(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/health":
            self._json(200, {"status": "ok"})
        elif self.path == "/v1/models":
            self._json(200, {"object": "list", "data": [{"id": "fault", "object": "model"}]})
        else:
            self._json(404, {"error": {"message": "not found"}})

    def _sse(self, chunks):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(b": keepalive 1/1\n\n")
        for delta in chunks:
            ev = {"object": "chat.completion.chunk", "model": "fault",
                  "choices": [{"index": 0, "finish_reason": None, "delta": delta}]}
            self.wfile.write(b"data: " + json.dumps(ev).encode() + b"\n\n")
            self.wfile.flush()
        end = {"object": "chat.completion.chunk", "model": "fault",
               "choices": [{"index": 0, "finish_reason": "stop", "delta": {}}]}
        if ARGS.usage:
            end["usage"] = {"prompt_tokens": 1, "completion_tokens": len(chunks),
                            "total_tokens": 1 + len(chunks)}
        self.wfile.write(b"data: " + json.dumps(end).encode() + b"\n\ndata: [DONE]\n\n")
        self.close_connection = True

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}") if length else {}
        fault = body.get("fault") if isinstance(body, dict) else None
        if fault:
            return self._hostile(fault, body)
        if self.path == "/v1/chat/completions" and ARGS.mode == "slow":
            time.sleep(ARGS.delay)
        if self.path == "/v1/chat/completions" and ARGS.tools and isinstance(body, dict):
            return self._tools(body)
        if self.path == "/v1/chat/completions" and ARGS.think and body.get("stream"):
            self._sse([{"role": "assistant", "reasoning": "hmm"}, {"content": "<th"}, {"content": "ink>hid"},
                       {"content": "den</thi"}, {"content": "nk>An"}, {"content": "swer"}])
        elif self.path == "/v1/chat/completions" and ARGS.think:
            self._json(200, {
                "id": "chatcmpl-fault", "object": "chat.completion", "model": body.get("model", "fault"),
                "choices": [{"index": 0, "finish_reason": "stop", "message": {
                    "role": "assistant", "content": "<think>hidden</think>Answer", "reasoning": "hmm"}}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 3, "total_tokens": 4},
            })
        elif self.path == "/v1/chat/completions":
            self._json(200, {
                "id": "chatcmpl-fault", "object": "chat.completion", "created": int(time.time()),
                "model": "fault",
                "choices": [{"index": 0, "finish_reason": "length",
                             "message": {"role": "assistant", "content": "ok"}}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            })
        elif self.path == "/v1/embeddings":
            self._json(200, {"object": "list", "model": "fault",
                             "data": [{"object": "embedding", "index": 0, "embedding": [0.6, 0.8]}],
                             "usage": {"prompt_tokens": 1, "total_tokens": 1}})
        else:
            self._json(404, {"error": {"message": "not found"}})


    def _tools(self, body):
        msgs = body.get("messages") or [{}]
        last = msgs[-1] if isinstance(msgs[-1], dict) else {}
        tools = body.get("tools") or []
        usage = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
        if last.get("role") == "tool":
            content = last.get("content")
            if isinstance(content, list):
                content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
            text = f"The tool said: {content}"
            if body.get("stream"):
                return self._sse([{"role": "assistant", "content": text}])
            return self._json(200, {"id": "chatcmpl-tools", "object": "chat.completion", "model": "fault",
                                    "choices": [{"index": 0, "finish_reason": "stop",
                                                 "message": {"role": "assistant", "content": text}}],
                                    "usage": usage})
        if not tools:
            text = "no tools"
            return self._json(200, {"id": "chatcmpl-tools", "object": "chat.completion", "model": "fault",
                                    "choices": [{"index": 0, "finish_reason": "stop",
                                                 "message": {"role": "assistant", "content": text}}],
                                    "usage": usage})
        name = (tools[0].get("function") or {}).get("name", "tool")
        call = {"id": "call_fault_1", "type": "function",
                "function": {"name": name, "arguments": json.dumps({"city": "Paris"})}}
        if not body.get("stream"):
            return self._json(200, {"id": "chatcmpl-tools", "object": "chat.completion", "model": "fault",
                                    "choices": [{"index": 0, "finish_reason": "tool_calls",
                                                 "message": {"role": "assistant", "content": None,
                                                             "tool_calls": [call]}}],
                                    "usage": usage})
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        first = dict(call, index=0, function={"name": name, "arguments": '{"city": '})
        deltas = [{"role": "assistant", "content": None, "tool_calls": [first]},
                  {"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}]
        for i, d in enumerate(deltas):
            ev = {"object": "chat.completion.chunk", "model": "fault",
                  "choices": [{"index": 0, "finish_reason": None, "delta": d}]}
            self.wfile.write(b"data: " + json.dumps(ev).encode() + b"\n\n")
        end = {"object": "chat.completion.chunk", "model": "fault", "usage": usage,
               "choices": [{"index": 0, "finish_reason": "tool_calls", "delta": {}}]}
        self.wfile.write(b"data: " + json.dumps(end).encode() + b"\n\ndata: [DONE]\n\n")

    def _hostile(self, fault, body):
        if fault == "grow":
            HOG.append(b"\x01" * (int(body.get("mb", 100)) << 20))
            return self._json(200, {"object": "chat.completion", "model": "fault", "held_mb": len(HOG)})
        think = {"role": "assistant", "content": "<think>hidden</think>Answer", "reasoning": "hmm"}
        if fault == "echo-headers":
            return self._json(200, {"headers": {k.lower(): v for k, v in self.headers.items()},
                                    "model": body.get("model")})
        if fault == "json-for-stream":
            return self._json(200, {"object": "chat.completion", "model": "fault",
                                    "choices": [{"index": 0, "finish_reason": "stop", "message": think}]})
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        if fault == "slow-stream":
            for i in range(int(body.get("chunks", 8))):
                ev = {"object": "chat.completion.chunk", "choices": [
                    {"index": 0, "finish_reason": None, "delta": {"content": f"t{i} "}}]}
                self.wfile.write(b"data: " + json.dumps(ev).encode() + b"\n\n")
                self.wfile.flush()
                time.sleep(0.5)
            self.wfile.write(b"data: [DONE]\n\n")
            return
        if fault == "endless-event":
            self.wfile.write(b"data: ")
            for _ in range(6 * 16):
                self.wfile.write(b"x" * 65536)
            return
        index = 100000000000 if fault == "huge-index" else 0
        for content in ["<think>hid", "den</think>An", "swer"]:
            ev = {"object": "chat.completion.chunk", "choices": [
                {"index": index, "finish_reason": None, "delta": {"content": content}}]}
            self.wfile.write(b"data: " + json.dumps(ev).encode() + b"\n\n")
            self.wfile.flush()
        last = {"object": "chat.completion.chunk", "choices": [
            {"index": index, "finish_reason": "stop", "delta": {"content": "!"}}]}
        # no-final-blank: the last event ends the stream without its blank line.
        self.wfile.write(b"data: " + json.dumps(last).encode() + (b"" if fault == "no-final-blank" else b"\n\n"))


class Server(ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True


def serve(host, port, ready_file=None):
    srv = Server((host, port), Handler)
    if ready_file:  # written atomically, so a reader never sees a partial number
        with open(ready_file + ".tmp", "w") as f:
            f.write(repr(time.time()))
        os.replace(ready_file + ".tmp", ready_file)
    print(f"fault_server listening on {host}:{port}", flush=True)
    srv.serve_forever()


def hang(host, port):
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, port))
    s.listen(64)
    held = []
    while True:
        conn, _ = s.accept()
        held.append(conn)  # never answered, never closed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", default="ok")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--delay", type=float, default=1.0)
    ap.add_argument("--ready-file")
    ap.add_argument("--think", action="store_true")
    # Accepted and ignored: what a model server is started with (the served-vs-configured check reads it).
    ap.add_argument("--model")
    # Streams end with `usage` (as mlx_lm.server's do with stream_options), for the benchmark.
    ap.add_argument("--usage", action="store_true")
    ap.add_argument("--tools", action="store_true")
    a = ap.parse_args()
    global ARGS
    ARGS = a
    # The start time (unix s) lets a test order spawns against other events.
    print(f"fault_server mode={a.mode} pid={os.getpid()} t={time.time():.3f}", flush=True)

    if a.mode == "ok":
        serve(a.host, a.port)
    elif a.mode == "slow-ready":
        time.sleep(a.delay)
        serve(a.host, a.port, a.ready_file)
    elif a.mode == "crash-at-start":
        print("fault_server: simulated crash at load: out of memory", file=sys.stderr, flush=True)
        sys.exit(1)
    elif a.mode == "crash-later":
        def crash():
            time.sleep(a.delay)
            print("fault_server: simulated crash after serving", file=sys.stderr, flush=True)
            os._exit(3)
        threading.Thread(target=crash, daemon=True).start()
        serve(a.host, a.port)
    elif a.mode == "slow":
        serve(a.host, a.port)
    elif a.mode == "hang-later":
        threading.Timer(a.delay, WEDGED.set).start()
        serve(a.host, a.port)
    elif a.mode == "hang":
        hang(a.host, a.port)
    elif a.mode == "ignore-sigterm":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        serve(a.host, a.port)
    elif a.mode == "grandchild":
        child = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--mode", "ok",
                                  "--host", a.host, "--port", str(a.port)])
        print(f"fault_server grandchild pid={child.pid}", flush=True)
        while True:
            time.sleep(3600)
    else:
        print(f"fault_server: unknown mode {a.mode}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
