#!/usr/bin/env python3
"""Load and chaos for scripts/soak.sh (stdlib only; 127.0.0.1 only; every connection has a deadline).

Driven by soak.sh, which starts the daemon and cleans up. This process:
  1. warms up (plain load only), then samples the daemon's RSS and open fds with the load paused;
  2. for --minutes runs, through the proxy frontends: chat completions, SSE streams read to the end,
     requests with a bad key, slowloris connections, oversize bodies (> 64 MiB declared), idle keep-alive
     connections; and a chaos loop that SIGKILLs a server's process group every 10-20 s and edits
     settings.toml every ~30 s;
  3. stops the load, waits for every service to be ready, samples RSS and fds again, prints the figures.

Every attempt ends in one class:
  ok                 a 2xx with the expected body (a bad-key request answered 401 counts as expected)
  defined            401/408/413/429/502/503/504 with a body; a body cut short right after its server was
                     SIGKILLed; a slowloris / oversize / idle connection closed by the proxy
  LOST               no status: refused, reset, EOF or timeout before a status line; a body cut short with
                     no kill of its server nearby; a slowloris connection still open after --slowloris-s
  BAD                a 2xx with the wrong body (reasoning leaked, auth bypassed, oversize accepted)
  OTHER              any other status (400, 404, 500, ...) or a defined code without a body
Exit status: 0 when no LOST/BAD/OTHER/harness error and the fd and RSS figures did not climb, else 1.
"""
import argparse
import json
import os
import random
import select
import signal
import socket
import subprocess
import sys
import threading
import time

DEFINED = {401, 408, 413, 429, 502, 503, 504}
MAX_BODY = 64 * 1024 * 1024
CHAT = json.dumps({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}).encode()
STREAM = json.dumps({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 8,
                     "stream": True}).encode()


def now():
    return time.monotonic()


# ---------------------------------------------------------------------------------------------- tallies


class Tally:
    def __init__(self):
        self.lock = threading.Lock()
        self.counts = {}  # (class, detail) -> n
        self.examples = {}  # (class, detail) -> first few descriptions
        self.attempts = 0
        self.answered = 0  # got a status line
        self.away_from_chaos = {}  # 502/503/504 with no kill of that service in the 30 s before: code -> n
        self.slowloris_secs = []  # how long each closed slowloris connection stayed open
        self.idle_secs = []  # how long an idle keep-alive connection stayed open before the proxy closed it
        self.oversize_mib = []  # MiB of an oversize body sent before the proxy answered or closed

    def add(self, cls, detail, answered, what=""):
        with self.lock:
            self.attempts += 1
            if answered:
                self.answered += 1
            k = (cls, detail)
            self.counts[k] = self.counts.get(k, 0) + 1
            if cls in ("LOST", "BAD", "OTHER", "HARNESS") and len(self.examples.setdefault(k, [])) < 5:
                self.examples[k].append(what)

    def total(self, cls):
        with self.lock:
            return sum(n for (c, _), n in self.counts.items() if c == cls)

    def by(self, cls):
        with self.lock:
            return {d: n for (c, d), n in sorted(self.counts.items()) if c == cls}


TALLY = Tally()
STOP = threading.Event()  # end of the run
PAUSE = threading.Event()  # workers idle (quiet sampling)
KILLS = {}  # service -> [monotonic times of SIGKILLs]
KILLS_LOCK = threading.Lock()


def killed_near(svc, t0, t1, before=1.0, after=1.0):
    with KILLS_LOCK:
        return any(t0 - before <= t <= t1 + after for t in KILLS.get(svc, []))


def killed_within(svc, t, window):
    with KILLS_LOCK:
        return any(t - window <= k <= t + 1 for k in KILLS.get(svc, []))


# ----------------------------------------------------------------------------------------- raw HTTP/1.1


class NoStatus(Exception):
    """The connection ended (or the deadline passed) before a status line."""


class Resp:
    def __init__(self, status, headers, body, complete, err):
        self.status, self.headers, self.body, self.complete, self.err = status, headers, body, complete, err


def _recv(sock, deadline):
    rem = deadline - now()
    if rem <= 0:
        raise socket.timeout("deadline")
    sock.settimeout(rem)
    return sock.recv(65536)


def _no_status_reason(e, buf):
    if isinstance(e, socket.timeout):
        return "timeout"
    if isinstance(e, ConnectionResetError):
        return "reset"
    if isinstance(e, BrokenPipeError):
        return "broken-pipe"
    return f"oserror-{getattr(e, 'errno', '?')}"


def read_response(sock, buf, deadline):
    """Reads one response. Returns (Resp, leftover bytes). Raises NoStatus before a status line."""
    while b"\r\n\r\n" not in buf:
        try:
            d = _recv(sock, deadline)
        except OSError as e:
            raise NoStatus(_no_status_reason(e, buf))
        if not d:
            raise NoStatus("eof" if not buf else "eof-in-head")
        buf += d
    head, buf = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split()
    if len(parts) < 2 or not parts[1].isdigit():
        raise NoStatus("garbled-status")
    status = int(parts[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    body = bytearray()
    try:
        if status in (204, 304) or 100 <= status < 200:
            return Resp(status, headers, b"", True, None), buf
        if "chunked" in headers.get("transfer-encoding", "").lower():
            while True:
                while b"\r\n" not in buf:
                    d = _recv(sock, deadline)
                    if not d:
                        return Resp(status, headers, bytes(body), False, "eof-in-chunk"), b""
                    buf += d
                size_line, buf = buf.split(b"\r\n", 1)
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:  # trailers, then an empty line
                    while not (buf.startswith(b"\r\n") or b"\r\n\r\n" in buf):
                        d = _recv(sock, deadline)
                        if not d:
                            break  # the last chunk arrived: the body is whole
                        buf += d
                    if buf.startswith(b"\r\n"):
                        buf = buf[2:]
                    elif b"\r\n\r\n" in buf:
                        buf = buf.split(b"\r\n\r\n", 1)[1]
                    return Resp(status, headers, bytes(body), True, None), buf
                while len(buf) < size + 2:
                    d = _recv(sock, deadline)
                    if not d:
                        body += buf[:size]
                        return Resp(status, headers, bytes(body), False, "eof-in-chunk"), b""
                    buf += d
                body += buf[:size]
                buf = buf[size + 2:]
        elif "content-length" in headers:
            n = int(headers["content-length"])
            while len(buf) < n:
                d = _recv(sock, deadline)
                if not d:
                    return Resp(status, headers, bytes(buf), False, "eof-in-body"), b""
                buf += d
            return Resp(status, headers, bytes(buf[:n]), True, None), buf[n:]
        else:  # until the connection closes
            while True:
                d = _recv(sock, deadline)
                if not d:
                    return Resp(status, headers, bytes(buf), True, None), b""
                buf += d
    except (OSError, ValueError) as e:
        return Resp(status, headers, bytes(body or buf), False, _no_status_reason(e, buf)), b""


def request_bytes(method, path, headers, body, keep_alive):
    h = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1",
         f"Connection: {'keep-alive' if keep_alive else 'close'}", f"Content-Length: {len(body)}"]
    h += [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(h) + "\r\n\r\n").encode() + body


def connect(port, timeout=5.0):
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def exchange(sock, data, deadline, buf=b""):
    """Sends a request on an open connection and reads the answer. Raises NoStatus."""
    try:
        sock.settimeout(max(0.1, deadline - now()))
        sock.sendall(data)
    except OSError as e:
        # The proxy may have answered and closed: read what it sent.
        try:
            return read_response(sock, buf, min(deadline, now() + 2))
        except NoStatus:
            raise NoStatus("send-" + _no_status_reason(e, b""))
    return read_response(sock, buf, deadline)


# ------------------------------------------------------------------------------------------ the checks


class Svc:
    def __init__(self, name, port, think, filtered):
        self.name, self.port, self.think, self.filtered = name, port, think, filtered

    def expected_text(self):
        if not self.think:
            return "ok"
        return "Answer" if self.filtered else "<think>hidden</think>Answer"


def auth(key):
    return [("Authorization", f"Bearer {key}"), ("Content-Type", "application/json")]


def check_chat(svc, r):
    """None when the 2xx body is right, else what is wrong."""
    try:
        v = json.loads(r.body)
        msg = v["choices"][0]["message"]
    except Exception:
        return "chat-body-not-json"
    if msg.get("content") != svc.expected_text():
        return f"chat-content {msg.get('content')!r}"
    if svc.filtered and "reasoning" in msg:
        return "chat-reasoning-leaked"
    return None


def check_stream(svc, r):
    text = r.body.decode("utf-8", "replace")
    if "text/event-stream" not in r.headers.get("content-type", ""):
        return check_chat(svc, r)  # a server without --think answers JSON even to a stream request
    if "data: [DONE]" not in text:
        return "stream-no-done"
    content = ""
    for line in text.splitlines():
        if line.startswith("data: ") and line != "data: [DONE]":
            try:
                d = json.loads(line[6:])["choices"][0]["delta"]
            except Exception:
                return "stream-bad-event"
            content += d.get("content") or ""
            if svc.filtered and "reasoning" in d:
                return "stream-reasoning-leaked"
    if content != svc.expected_text():
        return f"stream-content {content!r}"
    return None


def classify(kind, svc, t0, r, check=None, expect=None):
    """Files one answered request."""
    t1 = now()
    s = r.status
    what = f"{kind} {svc.name} -> {s} {r.err or ''} {r.body[:160]!r}"
    if expect is not None:  # a bad key
        if s == expect and r.body:
            TALLY.add("ok", f"{kind}->{s}", True)
        elif 200 <= s < 300:
            TALLY.add("BAD", f"{kind}-accepted", True, what)
        else:
            TALLY.add("OTHER", f"{kind}-{s}", True, what)
        return
    if 200 <= s < 300:
        if not r.complete:
            if killed_near(svc.name, t0, t1):
                TALLY.add("defined", f"{kind}-cut-by-kill", True)
            else:
                TALLY.add("LOST", f"{kind}-body-cut-{r.err}", True, what)
            return
        wrong = check(svc, r) if check else None
        if wrong:
            TALLY.add("BAD", f"{kind}: {wrong.split(' ')[0]}", True, what)
        else:
            TALLY.add("ok", kind, True)
    elif s in DEFINED and r.body:
        TALLY.add("defined", str(s), True)
        if s in (502, 503, 504) and not killed_within(svc.name, t0, 30):
            with TALLY.lock:
                TALLY.away_from_chaos[s] = TALLY.away_from_chaos.get(s, 0) + 1
    else:
        TALLY.add("OTHER", f"{kind}-{s}{'' if r.body else '-nobody'}", True, what)


def one_shot(kind, svc, method, path, headers, body, timeout, check=None, expect=None):
    t0 = now()
    deadline = t0 + timeout
    try:
        sock = connect(svc.port, timeout=min(5.0, timeout))
    except socket.timeout:
        TALLY.add("LOST", f"{kind}-connect-timeout", False, f"{kind} {svc.name}")
        return
    except OSError as e:
        TALLY.add("LOST", f"{kind}-connect-{type(e).__name__}", False, f"{kind} {svc.name}: {e}")
        return
    try:
        r, _ = exchange(sock, request_bytes(method, path, headers, body, False), deadline)
        classify(kind, svc, t0, r, check, expect)
    except NoStatus as e:
        TALLY.add("LOST", f"{kind}-{e}", False, f"{kind} {svc.name}: no status ({e}) after {now() - t0:.1f} s")
    finally:
        sock.close()


# --------------------------------------------------------------------------------------- load threads


def guarded(fn):
    def run(*a):
        while not STOP.is_set():
            try:
                fn(*a)
                return
            except Exception as e:  # a bug of this script: counted, shown, and the loop goes on
                TALLY.add("HARNESS", type(e).__name__, False, f"{fn.__name__}: {e!r}")
                time.sleep(1)
    return run


def worker(i, services, key, timeout, pace):
    rnd = random.Random(1000 + i)
    while not STOP.is_set():
        if PAUSE.is_set():
            time.sleep(0.1)
            continue
        svc = rnd.choice(services)
        r = rnd.random()
        if r < 0.45:
            one_shot("chat", svc, "POST", "/v1/chat/completions", auth(key), CHAT, timeout, check_chat)
        elif r < 0.80:
            one_shot("stream", svc, "POST", "/v1/chat/completions", auth(key), STREAM, timeout, check_stream)
        elif r < 0.93:
            one_shot("badkey", svc, "POST", "/v1/chat/completions", auth("wrong-" + key), CHAT, timeout,
                     expect=401)
        else:
            one_shot("nokey", svc, "POST", "/v1/chat/completions", [("Content-Type", "application/json")],
                     CHAT, timeout, expect=401)
        time.sleep(rnd.uniform(0.5, 1.5) * pace)


def faces(faces, key, timeout):
    """The daemon's other listeners (issue 27: every one is built by the gate): `/metrics` is scraped, a chat
    goes through the one endpoint by model name, and a silent socket to each face must be closed by the
    gate (a request head within 10 s, a TLS handshake within 5 s), never held."""
    rnd = random.Random(5000)
    by = {f.name: f for f in faces}
    while not STOP.wait(rnd.uniform(0.5, 1.5)):
        if "metrics" in by:
            one_shot("scrape", by["metrics"], "GET", "/metrics", [], b"", timeout)
        if "endpoint" in by:
            body = json.dumps({"model": "plain", "messages": [{"role": "user", "content": "hi"}],
                               "max_tokens": 8}).encode()
            one_shot("endpoint", by["endpoint"], "POST", "/v1/chat/completions", auth(key), body, timeout)
        f = rnd.choice(faces)
        t0 = now()
        try:
            sock = connect(f.port)
        except OSError as e:
            TALLY.add("LOST", f"face-connect-{type(e).__name__}", False, f"silent {f.name}: {e}")
            continue
        try:
            # Readable within 16 s: closed by the gate (or answered, then closed).
            r, _, _ = select.select([sock], [], [], 16)
        except OSError:
            r = [sock]
        finally:
            sock.close()
        if r:
            TALLY.add("defined", f"silent-{f.name}-closed", False)
        else:
            TALLY.add("LOST", f"silent-{f.name}-held", False, f"silent {f.name}: open {now() - t0:.1f} s")


def slowloris(i, services, limit):
    """Opens a connection, sends a request head a byte a second, never finishing it. The proxy must close it
    (or answer 408) within `limit` seconds."""
    rnd = random.Random(2000 + i)
    while not STOP.wait(rnd.uniform(1, 3)):
        svc = rnd.choice(services)
        t0 = now()
        try:
            sock = connect(svc.port)
        except OSError as e:
            TALLY.add("LOST", f"slowloris-connect-{type(e).__name__}", False, f"slowloris {svc.name}: {e}")
            continue
        head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "
        outcome = None
        try:
            sock.sendall(head)
            while outcome is None:
                if now() - t0 > limit:
                    outcome = ("LOST", "slowloris-not-closed", False)
                    break
                ready, _, _ = select.select([sock], [], [], 1.0)
                if ready:
                    try:
                        d = sock.recv(65536)
                    except OSError:
                        d = b""
                    if not d:
                        outcome = ("defined", "slowloris-closed", False)
                    elif svc.name == "control" and not d.startswith(b"HTTP/"):
                        # A TLS port answers a plaintext head with a TLS alert, then closes.
                        outcome = ("defined", "slowloris-tls-alert", False)
                    else:
                        code = d.split(b" ", 2)[1].decode("latin-1", "replace") if d.startswith(b"HTTP/") else "?"
                        outcome = ("defined", f"slowloris-{code}", True) if code.isdigit() and int(code) in DEFINED \
                            else ("OTHER", f"slowloris-{code}", True)
                    break
                try:
                    sock.send(b"a")
                except OSError:
                    outcome = ("defined", "slowloris-closed", False)
        finally:
            sock.close()
        cls, detail, answered = outcome
        TALLY.add(cls, detail, answered, f"slowloris {svc.name}: open {now() - t0:.1f} s")
        if cls == "defined":
            with TALLY.lock:
                TALLY.slowloris_secs.append(now() - t0)


def oversize(services, key, every):
    """Declares a body over 64 MiB and sends it as fast as the proxy reads: 413 (or a close) must follow."""
    rnd = random.Random(3000)
    declared = MAX_BODY + 4 * 1024 * 1024
    chunk = b" " * (256 * 1024)
    while not STOP.wait(rnd.uniform(0.7, 1.3) * every):
        svc = rnd.choice(services)
        t0 = now()
        deadline = t0 + 60
        try:
            sock = connect(svc.port)
        except OSError as e:
            TALLY.add("LOST", f"oversize-connect-{type(e).__name__}", False, f"oversize {svc.name}: {e}")
            continue
        try:
            head = request_bytes("POST", "/v1/chat/completions", auth(key), b"", False)
            head = head.replace(b"Content-Length: 0", f"Content-Length: {declared}".encode())
            sent = 0
            data = memoryview(head)
            try:
                sock.setblocking(False)
                # Non-blocking: stop sending as soon as the proxy answers or stops reading for 10 s.
                stalled = now()
                while sent < declared and now() < deadline and now() - stalled < 10:
                    r, w, _ = select.select([sock], [sock], [], 1.0)
                    if r:
                        break  # an answer (or a close) already
                    if not w:
                        continue
                    if not data:
                        data = memoryview(chunk)[:min(len(chunk), declared - sent)]
                        sent += len(data)
                    n = sock.send(data)
                    data = data[n:]
                    stalled = now()
            except OSError:
                pass  # refused mid-body: read what the proxy said
            try:
                r, _ = read_response(sock, b"", min(deadline, now() + 30))
            except NoStatus as e:
                if str(e) == "timeout":
                    TALLY.add("LOST", "oversize-no-answer", False,
                              f"oversize {svc.name}: sent {sent >> 20} MiB, no answer, no close")
                else:
                    TALLY.add("defined", "oversize-closed", False)
                    with TALLY.lock:
                        TALLY.oversize_mib.append(sent / 2**20)
                continue
            with TALLY.lock:
                TALLY.oversize_mib.append(sent / 2**20)
            if r.status == 413 or (r.status in DEFINED and r.body):
                TALLY.add("defined", f"oversize-{r.status}", True)
            elif 200 <= r.status < 300:
                TALLY.add("BAD", "oversize-accepted", True, f"oversize {svc.name} -> {r.status}")
            else:
                TALLY.add("OTHER", f"oversize-{r.status}", True, f"oversize {svc.name} -> {r.status} {r.body[:100]!r}")
        finally:
            sock.close()


def idle_keepalive(i, services, key, timeout):
    """One request on a keep-alive connection, 5-30 s idle, then another on the same connection (or the
    proxy closed it meanwhile: an idle timeout, fine)."""
    rnd = random.Random(4000 + i)
    while not STOP.wait(rnd.uniform(0.5, 2)):
        svc = rnd.choice(services)
        t0 = now()
        try:
            sock = connect(svc.port)
        except OSError as e:
            TALLY.add("LOST", f"idle-connect-{type(e).__name__}", False, f"idle {svc.name}: {e}")
            continue
        try:
            data = request_bytes("POST", "/v1/chat/completions", auth(key), CHAT, True)
            try:
                r, buf = exchange(sock, data, t0 + timeout)
            except NoStatus as e:
                TALLY.add("LOST", f"idle-first-{e}", False, f"idle {svc.name}: {e}")
                continue
            classify("idle-first", svc, t0, r, check_chat)
            if not r.complete or r.headers.get("connection", "").lower() == "close":
                continue
            idle_from = now()
            idle_until = idle_from + rnd.uniform(5, 30)
            closed = False
            while now() < idle_until and not STOP.is_set():
                ready, _, _ = select.select([sock], [], [], 0.5)
                if ready:
                    try:
                        d = sock.recv(65536, socket.MSG_PEEK)
                    except OSError:
                        d = b""
                    if not d:
                        closed = True
                    else:
                        TALLY.add("OTHER", "idle-unsolicited-bytes", True, f"idle {svc.name}: {d[:80]!r}")
                        closed = True
                    break
            if closed:
                TALLY.add("defined", "idle-closed-by-proxy", False)
                with TALLY.lock:
                    TALLY.idle_secs.append(now() - idle_from)
                continue
            t1 = now()
            try:
                r, _ = exchange(sock, request_bytes("POST", "/v1/chat/completions", auth(key), CHAT, False),
                                t1 + timeout, buf)
            except NoStatus as e:
                TALLY.add("LOST", f"idle-reuse-{e}", False,
                          f"idle {svc.name}: reuse after {t1 - t0:.1f} s: no status ({e})")
                continue
            classify("idle-reuse", svc, t1, r, check_chat)
        finally:
            sock.close()


# ---------------------------------------------------------------------------------- daemon and chaos


class Daemon:
    def __init__(self, binary, state_dir, pid):
        self.bin, self.state_dir, self.pid = binary, state_dir, pid
        self.status_failures = 0
        self.seen_pgids = set()
        self.invalid_config_seen = 0
        self.rss_max = 0

    def alive(self):
        try:
            with open(f"/proc/{self.pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
        except FileNotFoundError:
            return False
        except OSError:
            try:
                os.kill(self.pid, 0)
                return True
            except OSError:
                return False

    def status(self):
        try:
            out = subprocess.run([self.bin, "status", "--json", "--state-dir", self.state_dir],
                                 capture_output=True, timeout=15)
        except subprocess.TimeoutExpired:
            self.status_failures += 1
            return None
        if out.returncode != 0:
            self.status_failures += 1
            return None
        try:
            st = json.loads(out.stdout)
        except ValueError:
            self.status_failures += 1
            return None
        for s in st.get("services", []):
            if s.get("pid"):
                self.seen_pgids.add(s["pid"])
        if not st.get("config", {}).get("valid", True):
            self.invalid_config_seen += 1
        return st

    def rss_kb(self):
        try:
            with open(f"/proc/{self.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except OSError:
            pass
        out = subprocess.run(["ps", "-o", "rss=", "-p", str(self.pid)], capture_output=True, text=True)
        return int(out.stdout.strip() or 0)

    def fds(self):
        try:
            return len(os.listdir(f"/proc/{self.pid}/fd"))
        except OSError:
            out = subprocess.run(["lsof", "-p", str(self.pid)], capture_output=True, text=True)
            return max(0, len(out.stdout.splitlines()) - 1)

    def wait_all_ready(self, names, timeout):
        t0 = now()
        st = None
        while now() - t0 < timeout:
            st = self.status()
            if st:
                states = {s["name"]: s["state"] for s in st["services"]}
                if all(states.get(n) == "ready" for n in names):
                    return True, st
            time.sleep(0.5)
        return False, st


def is_fault_server(pid, script):
    """Whether pid runs this run's copy of fault_server.py (never signal a recycled pid)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return script.encode() in f.read()
    except FileNotFoundError:
        return False
    except OSError:
        return True  # no /proc (macOS): trust the status


def edit_config(path, n, proxy_edits):
    """An editor's save (write a temp file, rename it over): toggles a comment or `max_tokens` of the first
    service. Neither changes a process (the commands use no {max_tokens}) nor the proxy. With proxy_edits,
    every third edit toggles [server] request_timeout_s instead, which makes the daemon restart its
    frontend listeners."""
    with open(path) as f:
        text = f.read()
    if proxy_edits and n % 3 == 2:
        if "request_timeout_s = 10\n" in text:
            text = text.replace("request_timeout_s = 10\n", "request_timeout_s = 11\n", 1)
        else:
            text = text.replace("request_timeout_s = 11\n", "request_timeout_s = 10\n", 1)
        what = "request_timeout_s"
    elif n % 2 == 0:
        marker = "# soak: edited\n"
        text = text.replace(marker, "") if marker in text else marker + text
        what = "comment"
    else:
        if "max_tokens = 100\n" in text:
            text = text.replace("max_tokens = 100\n", "max_tokens = 200\n", 1)
        else:
            text = text.replace("max_tokens = 200\n", "max_tokens = 100\n", 1)
        what = "max_tokens"
    tmp = path + ".soak-tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)
    return what


def chaos(d, config, names, kill_every, edit_every, proxy_edits, log):
    rnd = random.Random(5000)
    next_kill = now() + rnd.uniform(*kill_every)
    next_edit = now() + edit_every
    edits = 0
    while not STOP.wait(2):
        d.edits = edits
        st = d.status()
        d.rss_max = max(d.rss_max, d.rss_kb())
        if not d.alive():
            log("chaos: the daemon is gone")
            STOP.set()
            return
        t = now()
        if st and t >= next_kill:
            ready = [s for s in st["services"] if s["state"] == "ready" and s.get("pid")]
            if ready:
                s = rnd.choice(ready)
                pid = s["pid"]
                if is_fault_server(pid, os.path.join(os.path.dirname(os.path.abspath(d.state_dir)),
                                                     "fault_server.py")):
                    try:
                        pgid = os.getpgid(pid)
                        if pgid == os.getpgid(0):
                            raise ProcessLookupError  # never our own group
                        os.killpg(pgid, signal.SIGKILL)
                        with KILLS_LOCK:
                            KILLS.setdefault(s["name"], []).append(now())
                        log(f"chaos: SIGKILL process group {pgid} of {s['name']}")
                    except ProcessLookupError:
                        pass
            next_kill = t + rnd.uniform(*kill_every)
        if t >= next_edit:
            what = edit_config(config, edits, proxy_edits)
            edits += 1
            d.edits = edits
            log(f"chaos: edited settings.toml ({what})")
            next_edit = t + rnd.uniform(0.8, 1.2) * edit_every
    d.edits = edits


# ------------------------------------------------------------------------------------------------ main


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--state-dir", required=True)
    ap.add_argument("--config", required=True)
    ap.add_argument("--daemon-pid", type=int, required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--service", action="append", required=True,
                    help="NAME:PORT:think(0|1):filtered(0|1)")
    ap.add_argument("--face", action="append", default=[],
                    help="NAME:PORT of another listener (metrics, endpoint, control): scraped, used, held silent")
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--warmup-s", type=float, default=None)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--pace-s", type=float, default=0.1, help="mean pause between a worker's requests")
    ap.add_argument("--timeout-s", type=float, default=30, help="client deadline of one request")
    ap.add_argument("--slowloris", type=int, default=2)
    ap.add_argument("--slowloris-s", type=float, default=15)
    ap.add_argument("--idle", type=int, default=2)
    ap.add_argument("--oversize-every-s", type=float, default=10)
    ap.add_argument("--kill-every-s", default="10,20")
    ap.add_argument("--edit-every-s", type=float, default=30)
    ap.add_argument("--proxy-edits", action="store_true",
                    help="also edit a key that restarts the proxy's listeners (request_timeout_s)")
    ap.add_argument("--progress-s", type=float, default=60, help="print a progress line this often")
    ap.add_argument("--report", help="write the figures here as JSON")
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args()

    def log(msg):
        if a.verbose:
            print(f"[soak {time.strftime('%H:%M:%S')}] {msg}", flush=True)

    services = []
    for spec in a.service:
        name, port, think, filtered = spec.split(":")
        services.append(Svc(name, int(port), think == "1", filtered == "1"))
    names = [s.name for s in services]
    d = Daemon(a.bin, a.state_dir, a.daemon_pid)
    d.edits = 0
    kill_every = tuple(float(x) for x in a.kill_every_s.split(","))
    run_s = a.minutes * 60
    warmup = a.warmup_s if a.warmup_s is not None else min(30.0, max(10.0, run_s / 10))

    # 1. Warm-up: plain load only; then a quiet moment and the first sample.
    threads = [threading.Thread(target=guarded(worker), args=(i, services, a.key, a.timeout_s, a.pace_s),
                                daemon=True) for i in range(a.workers)]
    for t in threads:
        t.start()
    print(f"soak: warm-up {warmup:.0f} s", flush=True)
    time.sleep(warmup)
    PAUSE.set()
    time.sleep(3)
    rss0, fds0 = d.rss_kb(), d.fds()
    d.rss_max = rss0
    PAUSE.clear()
    warm = TALLY.attempts
    print(f"soak: start: daemon RSS {rss0 / 1024:.1f} MB, {fds0} fds; running {a.minutes:g} min", flush=True)

    # 2. The run: everything at once, plus chaos.
    extra = [threading.Thread(target=guarded(slowloris), args=(i, services, a.slowloris_s), daemon=True)
             for i in range(a.slowloris)]
    extra += [threading.Thread(target=guarded(idle_keepalive), args=(i, services, a.key, a.timeout_s),
                               daemon=True) for i in range(a.idle)]
    gate_faces = [Svc(n, int(p), False, False) for n, p in (f.split(":") for f in a.face)]
    if gate_faces:
        extra.append(threading.Thread(target=guarded(faces), args=(gate_faces, a.key, a.timeout_s), daemon=True))
        # Slowloris on them too (the TLS face closes a plaintext head at once).
        extra += [threading.Thread(target=guarded(slowloris), args=(100 + i, gate_faces, a.slowloris_s), daemon=True)
                  for i in range(1)]
    if a.oversize_every_s > 0:
        extra.append(threading.Thread(target=guarded(oversize), args=(services, a.key, a.oversize_every_s),
                                      daemon=True))
    ch = threading.Thread(target=chaos, args=(d, a.config, names, kill_every, a.edit_every_s, a.proxy_edits, log), daemon=True)
    for t in extra + [ch]:
        t.start()
    t_end = now() + run_s
    last_print = now()
    while now() < t_end and not STOP.is_set():
        time.sleep(1)
        if now() - last_print >= a.progress_s:
            last_print = now()
            print(f"soak: {TALLY.attempts} attempts, {TALLY.answered} answered, "
                  f"LOST {TALLY.total('LOST')}, kills {sum(len(v) for v in KILLS.values())}, "
                  f"daemon RSS {d.rss_kb() / 1024:.1f} MB, {d.fds()} fds", flush=True)
    daemon_died = not d.alive()
    STOP.set()

    # 3. Drain (every thread has a deadline), settle, sample again.
    for t in threads + extra + [ch]:
        t.join(timeout=a.timeout_s + a.slowloris_s + 35)
    stuck = [t.name for t in threads + extra + [ch] if t.is_alive()]
    all_ready, st = (False, None) if daemon_died else d.wait_all_ready(names, 90)
    time.sleep(5)
    rss1, fds1 = (d.rss_kb(), d.fds()) if d.alive() else (0, 0)
    restarts = {s["name"]: s["restarts"] for s in (st or {}).get("services", [])}
    kills = {n: len(v) for n, v in KILLS.items()}

    # 4. Figures and verdict.
    lost, bad, other, harness = (TALLY.total(c) for c in ("LOST", "BAD", "OTHER", "HARNESS"))
    okd = TALLY.by("ok")
    defined = TALLY.by("defined")
    slow_secs = TALLY.slowloris_secs
    print()
    print(f"requests:  {TALLY.attempts} attempts, {TALLY.answered} answered with a status "
          f"({warm} of them in the warm-up)")
    print("ok:        " + ", ".join(f"{k} {v}" for k, v in okd.items()))
    print("defined:   " + (", ".join(f"{k} {v}" for k, v in defined.items()) or "none"))
    if slow_secs:
        print(f"slowloris: closed after {min(slow_secs):.1f}-{max(slow_secs):.1f} s")
    if TALLY.idle_secs:
        print(f"idle:      keep-alive connections closed by the proxy after "
              f"{min(TALLY.idle_secs):.1f}-{max(TALLY.idle_secs):.1f} s idle")
    if TALLY.oversize_mib:
        print(f"oversize:  {MAX_BODY / 2**20 + 4:.0f} MiB declared; the proxy answered or closed after "
              f"{min(TALLY.oversize_mib):.1f}-{max(TALLY.oversize_mib):.1f} MiB sent")
    if TALLY.away_from_chaos:
        print("note:      502/503/504 with no kill of that service in the 30 s before: "
              + ", ".join(f"{k} {v}" for k, v in sorted(TALLY.away_from_chaos.items())))
    print(f"LOST:      {lost}" + ("  (" + ", ".join(f"{k} {v}" for k, v in TALLY.by('LOST').items()) + ")" if lost else ""))
    if bad:
        print(f"BAD:       {bad}  (" + ", ".join(f"{k} {v}" for k, v in TALLY.by("BAD").items()) + ")")
    if other:
        print(f"OTHER:     {other}  (" + ", ".join(f"{k} {v}" for k, v in TALLY.by("OTHER").items()) + ")")
    if harness:
        print(f"HARNESS:   {harness}  (" + ", ".join(f"{k} {v}" for k, v in TALLY.by("HARNESS").items()) + ")")
    for (cls, detail), ex in sorted(TALLY.examples.items()):
        for e in ex[:3]:
            print(f"  e.g. {cls} {detail}: {e}")
    print(f"daemon:    RSS {rss0 / 1024:.1f} MB -> {rss1 / 1024:.1f} MB (max {d.rss_max / 1024:.1f} MB), "
          f"fds {fds0} -> {fds1}")
    print(f"chaos:     {sum(kills.values())} SIGKILLs {kills}, {d.edits} config edits; "
          f"restarts {restarts} (total {sum(restarts.values())})")
    if d.status_failures:
        print(f"status:    `mlx-box status` failed {d.status_failures} times")
    if d.invalid_config_seen:
        print(f"config:    reported invalid {d.invalid_config_seen} times")

    fails = []
    if daemon_died:
        fails.append("the daemon exited during the run")
    if lost:
        fails.append(f"{lost} LOST")
    if bad:
        fails.append(f"{bad} BAD answers")
    if other:
        fails.append(f"{other} unexpected statuses")
    if harness:
        fails.append(f"{harness} harness errors")
    if not daemon_died and fds1 > fds0 + 16:
        fails.append(f"fds climbed {fds0} -> {fds1}")
    if not daemon_died and rss1 > 1.5 * rss0 + 20 * 1024:
        fails.append(f"RSS climbed {rss0 / 1024:.1f} -> {rss1 / 1024:.1f} MB")
    if not daemon_died and not all_ready:
        fails.append("not every service was ready again 90 s after the run")
    if sum(restarts.values()) > sum(kills.values()):
        print(f"note:      more restarts ({sum(restarts.values())}) than SIGKILLs ({sum(kills.values())})")
    if stuck:
        fails.append(f"threads did not finish: {stuck}")
    if a.report:
        with open(a.report, "w") as f:
            json.dump({"attempts": TALLY.attempts, "answered": TALLY.answered, "ok": okd, "defined": defined,
                       "lost": TALLY.by("LOST"), "bad": TALLY.by("BAD"), "other": TALLY.by("OTHER"),
                       "rss_kb": [rss0, rss1, d.rss_max], "fds": [fds0, fds1], "kills": kills,
                       "edits": d.edits, "restarts": restarts, "pgids": sorted(d.seen_pgids),
                       "fails": fails}, f, indent=1)
    if fails:
        print("FAIL (load): " + "; ".join(fails))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
