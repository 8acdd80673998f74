#!/usr/bin/env python3
"""The .deb that scripts/release.sh makes, installed into a scratch root (`dpkg -x`): the daemon is in it beside
the app (/usr/bin/mlx-box beside /usr/bin/mlx-box-app), and the app started from it under Xvfb with
PATH=/nonexistent and no MLXBOX_BIN finds that daemon itself, starts it on the demo profile and shows 3/3
services ready (its dashboard, driven by tauri-driver as in app_e2e.py, and the daemon's status).

  scripts/release.sh --debug
  python3 tests/e2e/deb_e2e.py --deb target/dist/mlx-box_0.1.0_amd64.deb [--screenshots target/e2e]

Needs what app_e2e.py needs (Xvfb, dbus-daemon, WebKitWebDriver, tauri-driver), dpkg, and MLXBOX_CACHE_DIR
with the demo's Python environment (made on first use). Talks only to 127.0.0.1. Every process it starts is
killed by process group at the end, the daemon the app started (a session of its own) and its servers
included. Prints `deb e2e: N passed, N failed` last.
"""
import argparse
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import app_e2e as h  # noqa: E402  (the e2e harness: process groups, waits, the WebDriver client)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def processes_running(exe):
    """{pid: argv} of the live processes whose executable is `exe`."""
    exe = os.path.realpath(exe)
    found = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            if os.path.realpath(f"/proc/{pid}/exe") == exe:
                found[int(pid)] = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
        except OSError:
            continue
    return found


def kill_group(pgid):
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--deb", required=True)
    ap.add_argument("--screenshots", help="a directory for the dashboard's screenshot")
    ap.add_argument("--tauri-driver", default=shutil.which("tauri-driver") or os.path.expanduser("~/.cargo/bin/tauri-driver"))
    ap.add_argument("--timeout", type=float, default=300, help="seconds for the demo's services to be ready")
    a = ap.parse_args()
    t_start = time.time()
    tmp = tempfile.mkdtemp(prefix="mlxbox-deb-")
    root = os.path.join(tmp, "root")
    state = os.path.join(tmp, "state")
    app = os.path.join(root, "usr/bin/mlx-box-app")
    daemon = os.path.join(root, "usr/bin/mlx-box")
    results = []
    wd = None
    server_groups = set()
    # The app's environment: no MLXBOX_BIN, a PATH where nothing is. Tools the harness starts (Xvfb, the
    # bus, the drivers) are found on the harness's own PATH and started by full path.
    env = {k: v for k, v in os.environ.items() if k != "MLXBOX_BIN"}
    env.update(PATH="/nonexistent", MLXBOX_STATE_DIR=state, XDG_CONFIG_HOME=os.path.join(tmp, "config"),
               XDG_DATA_HOME=os.path.join(tmp, "data"), NO_AT_BRIDGE="1",
               MLXBOX_CACHE_DIR=os.environ.get("MLXBOX_CACHE_DIR", os.path.join(ROOT, "target/mlxbox-cache")))
    tool = lambda name: shutil.which(name) or sys.exit(f"deb e2e: {name} is missing (scripts/setup.sh installs it)")

    def test(name, f):
        t0 = time.time()
        try:
            f()
            results.append((name, True))
            print(f"ok   {name} ({time.time() - t0:.1f}s)", flush=True)
        except Exception:
            results.append((name, False))
            print(f"FAIL {name} ({time.time() - t0:.1f}s)\n{traceback.format_exc()}", flush=True)
            raise

    def cli(*args):
        """The .deb's own CLI, on the test's state dir."""
        return subprocess.run([daemon, *args, "--state-dir", state], env=env, capture_output=True, text=True,
                              timeout=60)

    def status():
        out = cli("status", "--json")
        if out.returncode != 0:
            raise RuntimeError(out.stderr)
        return json.loads(out.stdout)

    try:
        def unpacked():
            subprocess.run([tool("dpkg"), "-x", a.deb, root], check=True)
            for f in (app, daemon):
                assert os.path.isfile(f) and os.access(f, os.X_OK), f"{f} is not in the .deb, or not executable"
            listing = subprocess.run([tool("dpkg-deb"), "-c", a.deb], capture_output=True, text=True, check=True).stdout
            modes = {l.split()[-1].lstrip("./"): l.split()[0] for l in listing.splitlines() if l.strip()}
            for f in ("usr/bin/mlx-box", "usr/bin/mlx-box-app"):
                assert modes.get(f, "").startswith("-rwxr-xr-x"), f"{f} in the .deb: {modes.get(f)}\n{listing}"
            version = subprocess.run([daemon, "--version"], capture_output=True, text=True, env=env, check=True).stdout
            assert version.startswith("mlx-box "), version
        test("the .deb carries the daemon beside the app (/usr/bin/mlx-box, /usr/bin/mlx-box-app)", unpacked)

        bus = h.start("dbus", [tool("dbus-daemon"), "--session", "--nofork", "--print-address=1"],
                      stdout=subprocess.PIPE, stderr=open(os.path.join(tmp, "dbus.log"), "w"), text=True)
        env["DBUS_SESSION_BUS_ADDRESS"] = bus.stdout.readline().strip()
        # A free display, chosen by Xvfb itself (another test's Xvfb may hold any number we would pick).
        rfd, wfd = os.pipe()
        h.start("xvfb", [tool("Xvfb"), "-displayfd", str(wfd), "-screen", "0", "1400x1000x24", "-nolisten", "tcp"],
                pass_fds=(wfd,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(wfd)
        with os.fdopen(rfd) as r:
            env["DISPLAY"] = ":" + r.readline().strip()

        def started_by_the_app():
            # tauri-driver starts WebKitWebDriver, which starts the app: all three in one process group.
            port, native = h.free_port(), h.free_port()
            h.start("tauri-driver", [a.tauri_driver, "--port", str(port), "--native-port", str(native),
                                     "--native-driver", tool("WebKitWebDriver")],
                    env=env, stdout=open(os.path.join(tmp, "tauri-driver.log"), "w"), stderr=subprocess.STDOUT)
            for p in (port, native):
                h.wait_for(f"port {p}", lambda p=p: socket.create_connection(("127.0.0.1", p), 1).close() or True)
            nonlocal wd
            wd = h.WebDriver(port)
            wd.session(app, ["--open", "dashboard"])
            # No daemon runs on this state dir: the app starts one, found beside itself.
            h.wait_for("a daemon from the .deb", lambda: any(b"up" in argv for argv in processes_running(daemon).values()),
                       timeout=60)
            line = f"mlx-box-app: starting the daemon: {daemon} (beside the app)"
            h.wait_for("daemon.log naming it", lambda: line in open(os.path.join(state, "daemon.log")).read(),
                       timeout=10)
        test("the app, with PATH=/nonexistent, starts the daemon beside it", started_by_the_app)

        def ready():
            def all_ready():
                st = status()
                server_groups.update(s["pid"] for s in st["services"] if s.get("pid"))
                return len(st["services"]) == 3 and all(s["state"] == "ready" for s in st["services"])
            h.wait_for("the demo's 3 services ready", all_ready, timeout=a.timeout, interval=1)
            h.wait_for("the dashboard saying 3/3 ready",
                       lambda: wd.text(wd.find('[data-testid="summary"]')).startswith("3/3 ready"), timeout=30)
            if a.screenshots:
                os.makedirs(a.screenshots, exist_ok=True)
                wd.screenshot(os.path.join(a.screenshots, "deb-dashboard.png"))
        test("the app shows the demo's 3/3 services ready", ready)
    except Exception:
        if not results or results[-1][1]:
            results.append(("setup", False))
            print(f"FAIL setup\n{traceback.format_exc()}", flush=True)
    finally:
        if not all(ok for _, ok in results):
            for log in glob.glob(os.path.join(state, "daemon.log")) + [os.path.join(tmp, "tauri-driver.log")]:
                if os.path.exists(log):
                    print(f"--- {log} (tail)\n" + "".join(open(log).readlines()[-40:]), flush=True)
        if wd:
            wd.quit()
        # The daemon the app started has a session of its own: `down` stops it and its servers; whatever
        # is left (its group, its servers' groups) is killed.
        try:
            cli("down")
        except Exception:
            pass
        h.stop_all()
        deadline = time.time() + 20
        while processes_running(daemon) and time.time() < deadline:
            time.sleep(0.2)
        for pid in processes_running(daemon):
            try:
                kill_group(os.getpgid(pid))  # the app's setsid: the daemon leads its own group
            except ProcessLookupError:
                pass
        for pgid in server_groups:
            if h.group_alive(pgid):
                kill_group(pgid)
        shutil.rmtree(tmp, ignore_errors=True)
    passed = sum(1 for _, ok in results if ok)
    failed = len(results) - passed
    print(f"deb e2e: {passed} passed, {failed} failed ({time.time() - t_start:.0f}s)")
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
