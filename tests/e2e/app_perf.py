#!/usr/bin/env python3
"""Measures the menu-bar app against issue 4's targets, on a real daemon, under Xvfb:

- idle CPU of the app (every process of its session) with no window open, over --idle-s seconds;
- "Open dashboard" → a drawn window: the app times it from the moment it is asked (menu click, --open, a
  second launch: the same `windows::open`) to the window's first frame with data (`window_ready`);
- tray latency: from a service's state change in the daemon (its `since_ms`) to the tray's redraw done.

  python3 tests/e2e/app_perf.py --app target/release/mlx-box-app --cli target/release/mlx-box

`--quick` (what scripts/test.sh runs): a 3 s idle window, 2 toggles, a short settle. It fails on errors and
missing timings, never on a target.

The app prints its timings with MLXBOX_APP_TIMINGS=1. Services are the fault server (tiny Python HTTP
servers): the figures are the app's and the daemon's, not a model's. Talks only to 127.0.0.1; every process
started here is killed at the end.
"""
import argparse
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROCS = []


def start(argv, **kw):
    p = subprocess.Popen(argv, start_new_session=True, **kw)
    PROCS.append(p)
    return p


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def session_cpu(sid):
    """{pid: (command, utime + stime in clock ticks)} of every live process of session `sid`."""
    out = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            stat = open(f"/proc/{pid}/stat").read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[3]) == sid:  # field 6: session
            out[pid] = (stat[stat.index("(") + 1:stat.rindex(")")], int(fields[11]) + int(fields[12]))
    return out


def wait_for(what, f, timeout=30):
    t0 = time.time()
    while time.time() - t0 < timeout:
        v = f()
        if v:
            return v
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for {what}")


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--app", required=True)
    ap.add_argument("--cli", required=True)
    ap.add_argument("--idle-s", type=float, default=30)
    ap.add_argument("--toggles", type=int, default=10)
    ap.add_argument("--release-s", type=float, default=5, help="MLXBOX_APP_HIDDEN_RELEASE_S for the app")
    ap.add_argument("--quick", action="store_true", help="a few seconds per measurement (CI): errors only")
    a = ap.parse_args()
    settle = 5
    if a.quick:
        a.idle_s, a.toggles, settle = 3, 2, 1
    tmp = tempfile.mkdtemp(prefix="mlxbox-perf-")
    state = os.path.join(tmp, "state")
    cfg = os.path.join(tmp, "settings.toml")
    fault = os.path.join(ROOT, "python", "fault_server.py")
    with open(cfg, "w") as f:
        for name in ["chat", "embed", "ocr"]:
            f.write(f'[services.{name}]\nkind = "command"\nport = {free_port()}\nprobe = "chat"\n'
                    f'command = ["python3", "{fault}", "--host", "{{host}}", "--port", "{{port}}"]\n\n')
    env = dict(os.environ, MLXBOX_STATE_DIR=state, MLXBOX_BIN=os.path.abspath(a.cli), MLXBOX_APP_TIMINGS="1",
               XDG_CONFIG_HOME=os.path.join(tmp, "config"), XDG_DATA_HOME=os.path.join(tmp, "data"), NO_AT_BRIDGE="1")
    applog = os.path.join(tmp, "app.log")
    try:
        start([a.cli, "up", "--config", cfg, "--state-dir", state], env=env,
              stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, "daemon.log"), "w"))
        status = lambda: json.loads(subprocess.run([a.cli, "status", "--json", "--state-dir", state],
                                                   capture_output=True, text=True).stdout or "{}")
        wait_for("services ready", lambda: status().get("services") and all(
            s["state"] == "ready" for s in status()["services"]))
        bus = start(["dbus-daemon", "--session", "--nofork", "--print-address=1"], stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL, text=True)
        env["DBUS_SESSION_BUS_ADDRESS"] = bus.stdout.readline().strip()
        display = f":{free_port() % 400 + 500}"
        start(["Xvfb", display, "-screen", "0", "1400x1000x24", "-nolisten", "tcp"],
              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        env["DISPLAY"] = display
        time.sleep(0.5)
        hz = os.sysconf("SC_CLK_TCK")
        log = lambda: open(applog).read()

        def launch(release_s):
            """Starts the app (no window asked for: it makes the dashboard ahead, hidden)."""
            e = dict(env, MLXBOX_APP_HIDDEN_RELEASE_S=str(release_s))
            p = start([a.app], env=e, stdout=subprocess.DEVNULL, stderr=open(applog, "a"))
            n = log().count("timing: tray ready") if os.path.exists(applog) else 0
            wait_for("the tray's first redraw", lambda: log().count("timing: tray ready") > n)
            time.sleep(settle)
            return p

        def idle_cpu(sid):
            c0, t0 = session_cpu(sid), time.time()
            time.sleep(a.idle_s)
            c1, t1 = session_cpu(sid), time.time()
            per = {c1[p][0]: (c1[p][1] - c0.get(p, ("", 0))[1]) / hz / (t1 - t0) * 100 for p in c1}
            return sum(per.values()), per

        # 1. Idle CPU with no window open (the daemon's 1 Hz monitor events keep arriving).
        app = launch(a.release_s)
        idle, per = idle_cpu(app.pid)
        rss = int(re.search(r"VmRSS:\s+(\d+)", open(f"/proc/{app.pid}/status").read()).group(1)) * 1024

        # 2. Tray latency over stop/start toggles of one service.
        before = log().count("timing: tray")
        for i in range(a.toggles):
            for verb in ("stop", "start"):
                subprocess.run([a.cli, verb, "chat", "--state-dir", state], capture_output=True, timeout=60)
                time.sleep(0.3)
        time.sleep(1)
        tray = [int(m) for m in re.findall(r"timing: tray \w+ redrawn (\d+) ms", log())][before:]
        os.killpg(app.pid, signal.SIGTERM)
        app.wait(15)

        # 3. Open → drawn: each window the first time (a web process starts), then each again (the window
        #    exists: a show and a refresh, which is also what reopening a closed, hidden window costs).
        app = launch(a.release_s)
        opened = []
        views = ("dashboard", "settings", "bench", "dashboard", "settings", "bench")
        for view in views:
            n = log().count("open→drawn")
            subprocess.run([a.app, "--open", view], env=env, capture_output=True, timeout=30)
            wait_for(f"{view} drawn", lambda: log().count("open→drawn") > n)
            opened.append(float(re.findall(rf"window {view} open→drawn ([\d.]+) ms", log())[-1]))
    except BaseException:
        print("--- app log (tail)\n" + "".join(open(applog).readlines()[-30:]) if os.path.exists(applog) else "")
        raise
    finally:
        for p in reversed(PROCS):
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in reversed(PROCS):
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
    fmt = lambda per: ", ".join(f"{k} {v:.2f} %" for k, v in sorted(per.items(), key=lambda x: -x[1]))
    print(f"idle CPU, no window: {idle:.2f} % of a core over {a.idle_s:.0f} s (target <= 0.5 %): {fmt(per)}; "
          f"app RSS {rss / 2**20:.1f} MB")
    print(f"tray redraw after the daemon's state change: n={len(tray)} p50 {statistics.median(tray):.0f} ms, "
          f"p90 {pct(tray, 90)} ms, max {max(tray)} ms (target <= 200 ms)")
    first, again = opened[:3], opened[3:]
    print("open → drawn window, first time (cold): " + ", ".join(f"{v} {ms:.0f} ms" for v, ms in zip(views, first))
          + "; again: " + ", ".join(f"{v} {ms:.0f} ms" for v, ms in zip(views, again)) + " (target <= 300 ms)")


if __name__ == "__main__":
    sys.exit(main())
