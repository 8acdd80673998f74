#!/usr/bin/env python3
"""mlx-box bench against guidellm and a minimal curl client, on the same load (issue 19). Not run in CI.

    python3 scripts/bench_vs_guidellm.py [--prompt-tokens 256] [--output-tokens 64] [--concurrency 4]
                                         [--requests 32] [--rounds 3] [--write-docs]

What it does, on this machine:
1. `mlx-box up --demo` in a temp state dir (the tiny chat model on the real mlx_lm.server). Once the chat
   server is ready, every thread of it is pinned to CPU 0 and the daemon (which runs mlx-box's benchmark
   client) to CPU 1 (`taskset -a -p`); guidellm and curl run with `taskset -c 1`. The server has a core
   to itself, so a client's CPU use cannot slow the server it measures.
2. The same load three times, against the chat server's own port: prompts of exactly N tokens (the
   model's tokenizer, chat template included) behind a random prefix, exactly M output tokens (EOS
   suppressed), C requests in flight, R requests:
   - mlx-box: `mlx-box bench chat --prompt-tokens N --output-tokens M --concurrency C --requests R`;
   - guidellm (`target/guidellm-venv`, made with `pip install "guidellm==0.8.*"`): `guidellm run
     --profile kind=concurrent,streams=C --constraint kind=max_requests,count=R
     --data kind=synthetic_text,prompt_tokens=N,output_tokens=M`;
   - curl: C curl processes at once, each sending its share of the requests in turn (`--next`), with
     `--trace-ascii --trace-time`; prompts made with the same tokenizer; TTFT = request header sent →
     the first received chunk that carries text (content or reasoning).
3. Prints TTFT p50 and output tok/s of each, each client's CPU seconds (getrusage of its process tree,
   or the daemon's /proc counters for mlx-box's client), and how far mlx-box is from the references.
   With --write-docs, puts the table into docs/BENCHMARK.md between <!-- bench:guidellm --> markers.
"""
import argparse
import json
import os
import pathlib
import random
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
MLXBOX = os.environ.get("MLXBOX_BIN", str(ROOT / "target/release/mlx-box"))
GUIDELLM = ROOT / "target/guidellm-venv/bin/guidellm"


def sh(*args, **kw):
    return subprocess.run(args, check=True, capture_output=True, text=True, **kw)


def status(state):
    return json.loads(sh(MLXBOX, "status", "--json", "--state-dir", state).stdout)


def cpu_seconds_of(pid):
    """utime + stime of a process (its threads included), from /proc."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def pin(pid, cpu):
    sh("taskset", "-a", "-p", "-c", str(cpu), str(pid))


def group_pids(pgid):
    out = []
    for p in pathlib.Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if os.getpgid(int(p.name)) == pgid:
                    out.append(int(p.name))
            except OSError:
                pass
    return out


def p50(xs):
    return statistics.median(xs) if xs else float("nan")


def run_mlxbox(state, daemon_pid, a):
    before = cpu_seconds_of(daemon_pid)
    out = sh(MLXBOX, "bench", "chat", "--state-dir", state, "--concurrency", str(a.concurrency),
             "--requests", str(a.requests), "--prompt-tokens", str(a.prompt_tokens),
             "--output-tokens", str(a.output_tokens), "--no-thinking-check", "--json").stdout
    cpu = cpu_seconds_of(daemon_pid) - before
    r = json.loads(out)
    svc = next(s for s in r["services"] if s["name"] == "chat")
    level = next(l for l in svc["levels"] if l["concurrency"] == a.concurrency)
    return {
        "ttft_p50_ms": level["ttft_ms"]["p50"],
        "output_tok_s": level["output_tok_s"],
        "cpu_s": cpu,
        "requests": level["requests"],
        "prompt_len": level["prompt_len"]["mean"] if level.get("prompt_len") else None,
        "output_len": level["output_len"]["mean"] if level.get("output_len") else None,
    }


def run_guidellm(port, model_dir, a, out_dir):
    if not GUIDELLM.exists():
        print(f"no {GUIDELLM}: make it with python3 -m venv target/guidellm-venv && "
              "target/guidellm-venv/bin/pip install 'guidellm==0.8.*'", file=sys.stderr)
        return None
    out = pathlib.Path(out_dir) / "guidellm.json"
    # guidellm 0.8's registry syntax; the model is named (mlx_lm's /v1/models is not what guidellm reads).
    cmd = ["taskset", "-c", "1", str(GUIDELLM), "run",
           "--backend", f"kind=openai_http,target=http://127.0.0.1:{port},model={model_dir}",
           "--profile", f"kind=concurrent,streams={a.concurrency}",
           "--constraint", f"kind=max_requests,count={a.requests}",
           "--data", f"kind=synthetic_text,prompt_tokens={a.prompt_tokens},output_tokens={a.output_tokens}",
           "--tokenizer", f"kind=huggingface_auto,model={model_dir}",
           "--output", f"kind=json,path={out}", "--disable-console-interactive"]
    before = children_cpu()
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=out_dir,
                       env={**os.environ, "HF_HUB_OFFLINE": "1"})
    cpu = children_cpu() - before
    if p.returncode != 0:
        print(f"guidellm failed ({p.returncode}):\n{p.stderr[-3000:]}", file=sys.stderr)
        return None
    b = json.loads(out.read_text())["benchmarks"][0]
    m = b["metrics"]
    ok = lambda k: m[k]["successful"]
    # Output tok/s as mlx-box and curl count it: every output token / the run's wall time.
    return {
        "ttft_p50_ms": ok("time_to_first_token_ms")["percentiles"]["p50"],
        "output_tok_s": ok("output_token_count")["total_sum"] / b["duration"],
        "cpu_s": cpu,
        "requests": ok("output_token_count")["count"],
        "prompt_len": ok("prompt_token_count")["mean"],
        "output_len": ok("output_token_count")["mean"],
    }


def make_prompts(model_dir, n_tokens, count, template):
    """Prompts of n_tokens − template tokens, as the model's tokenizer counts them."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(pathlib.Path(model_dir) / "tokenizer.json"))
    words = "the time people way water word number day part sound work place year house world line".split()
    want = max(1, n_tokens - template)
    out = []
    for _ in range(count):
        text = f"[request {random.getrandbits(64):016x}]"
        while len(tok.encode(text, add_special_tokens=False).ids) < want:
            text += " " + random.choice(words)
        enc = tok.encode(text, add_special_tokens=False)
        out.append(text[: enc.offsets[want - 1][1]])
    return out


def eos_ids(model_dir):
    ids = set()
    for name in ("config.json", "generation_config.json"):
        p = pathlib.Path(model_dir) / name
        if p.exists():
            v = json.loads(p.read_text()).get("eos_token_id")
            ids.update(v if isinstance(v, list) else [v] if v is not None else [])
    return sorted(ids)


def transfers(trace):
    """Splits a `curl --trace-ascii --trace-time` file of sequential transfers into one list per
    transfer: (sent, [(time, data)…]), `sent` being its request header, each `<= Recv data` with the
    dump's lines joined (non-printable bytes are dots). Times are the trace's own clock in seconds of
    the day (curl's base is second-aligned per process): only differences within a process are used."""
    out, cur, rec = [], None, None
    for line in trace.splitlines():
        m = re.match(r"^(\d\d):(\d\d):(\d\d\.\d+) (\S+) (.*)", line)
        if m:
            if rec is not None and cur is not None:
                cur[1].append(rec)
            rec = None
            t = int(m[1]) * 3600 + int(m[2]) * 60 + float(m[3])
            if m[4] == "=>" and m[5].startswith("Send header"):
                cur = (t, [])
                out.append(cur)
            elif m[4] == "<=" and m[5].startswith("Recv data"):
                rec = (t, "")
            continue
        d = re.match(r"^[0-9a-f]{4}: (.*)$", line)
        if d and rec is not None:
            rec = (rec[0], rec[1] + d[1])
    if rec is not None and cur is not None:
        cur[1].append(rec)
    return out


def run_curl(port, model_dir, a, template):
    """C curl processes at once, each sending its share of the requests one after another (`--next`: no
    process start between two requests), streamed; TTFT from each process's own trace."""
    prompts = make_prompts(model_dir, a.prompt_tokens, a.requests, template)
    bias = {str(i): -100 for i in eos_ids(model_dir)}
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    procs, traces = [], []
    for w in range(a.concurrency):
        trace = tempfile.NamedTemporaryFile(suffix=".trace", delete=False).name
        args = ["taskset", "-c", "1", "curl", "-sS", "-N", "--trace-ascii", trace, "--trace-time"]
        for k, i in enumerate(range(w, a.requests, a.concurrency)):
            body = json.dumps({"messages": [{"role": "user", "content": prompts[i]}],
                               "max_tokens": a.output_tokens, "stream": True, "ignore_eos": True,
                               "logit_bias": bias, "stream_options": {"include_usage": True}})
            if k:
                args.append("--next")
            args += ["-o", "/dev/null", "-H", "Content-Type: application/json", "-d", body, url]
        traces.append(trace)
        procs.append(args)
    before = children_cpu()
    t0 = time.time()
    running = [subprocess.Popen(p, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for p in procs]
    for p in running:
        p.wait()
    wall = time.time() - t0
    cpu = children_cpu() - before
    ttfts, tokens, prompt_lens = [], [], []
    for trace in traces:
        for sent, chunks in transfers(pathlib.Path(trace).read_text()):
            first, n, prompt_n = None, 0, 0
            for stamp, data in chunks:
                for piece in data.split("data: ")[1:]:
                    try:
                        ev = json.loads(piece.rstrip(".").strip())
                    except ValueError:
                        continue
                    delta = (ev.get("choices") or [{}])[0].get("delta") or {}
                    # Text is content or reasoning, as mlx-box and vLLM count TTFT.
                    if first is None and any(delta.get(k) for k in ("content", "reasoning", "reasoning_content")):
                        first = stamp
                    if ev.get("usage"):
                        n = ev["usage"].get("completion_tokens") or n
                        prompt_n = ev["usage"].get("prompt_tokens") or prompt_n
            if first is not None:
                ttfts.append((first - sent) * 1000)
                tokens.append(n)
                prompt_lens.append(prompt_n)
        os.unlink(trace)
    return {"ttft_p50_ms": p50(ttfts), "output_tok_s": sum(tokens) / wall, "cpu_s": cpu,
            "requests": len(ttfts), "prompt_len": statistics.mean(prompt_lens) if prompt_lens else None,
            "output_len": statistics.mean(tokens) if tokens else None}


def median_run(rs):
    """Per figure, the median over rounds."""
    return {k: (statistics.median([r[k] for r in rs]) if all(r[k] is not None for r in rs) else None)
            for k in rs[0]}


def main():
    # The curl reference's prompts need `tokenizers`: run under guidellm's venv, which has it.
    venv_py = ROOT / "target/guidellm-venv/bin/python3"
    try:
        import tokenizers  # noqa: F401
    except ImportError:
        if venv_py.exists() and pathlib.Path(sys.executable) != venv_py:
            os.execv(str(venv_py), [str(venv_py), *sys.argv])
        sys.exit("needs `tokenizers`: make target/guidellm-venv first (see the top of this file)")
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompt-tokens", type=int, default=256)
    ap.add_argument("--output-tokens", type=int, default=64)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--requests", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--write-docs", action="store_true")
    a = ap.parse_args()
    if not pathlib.Path(MLXBOX).exists():
        sh("cargo", "build", "-q", "--release", "-p", "mlx-box", cwd=ROOT)
    state = tempfile.mkdtemp(prefix="mlxbox-vs-guidellm.")
    daemon = subprocess.Popen([MLXBOX, "up", "--demo", "--state-dir", state], stdout=subprocess.DEVNULL,
                              stderr=open(f"{state}/daemon.err", "w"), start_new_session=True,
                              env={**os.environ, "DBUS_SESSION_BUS_ADDRESS": "disabled:"})
    try:
        for _ in range(600):
            try:
                s = status(state)
                chat = next(x for x in s["services"] if x["name"] == "chat")
                if chat["state"] == "ready":
                    break
            except (subprocess.CalledProcessError, StopIteration, json.JSONDecodeError):
                pass
            time.sleep(1)
        else:
            sys.exit("the demo's chat service never got ready")
        port, model_dir = chat["port"], chat["model"]
        for pid in group_pids(chat["pid"]):
            pin(pid, 0)
        pin(daemon.pid, 1)
        # A first run of the load, not counted: the server compiles its kernels for these shapes.
        run_mlxbox(state, daemon.pid, a)
        r = json.loads(sh(MLXBOX, "bench", "--show", "last", "--json", "--state-dir", state).stdout)
        template = next(x for x in r["services"] if x["name"] == "chat").get("prompt_template_tokens") or 0
        # Rounds in turn (the machine drifts); each client's median round is reported.
        runs = {"mb": [], "curl": [], "gl": []}
        for _ in range(a.rounds):
            runs["mb"].append(run_mlxbox(state, daemon.pid, a))
            runs["curl"].append(run_curl(port, model_dir, a, template))
            g = run_guidellm(port, model_dir, a, state)
            if g:
                runs["gl"].append(g)
        mb, curl = median_run(runs["mb"]), median_run(runs["curl"])
        gl = median_run(runs["gl"]) if runs["gl"] else None
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        daemon.wait(timeout=30)
        shutil.rmtree(state, ignore_errors=True)

    rows = [("curl (reference: not CPU-bound)", curl), ("mlx-box bench", mb)]
    if gl:
        rows.append(("guidellm 0.8", gl))
    cmd = (f"python3 scripts/bench_vs_guidellm.py --prompt-tokens {a.prompt_tokens} --output-tokens "
           f"{a.output_tokens} --concurrency {a.concurrency} --requests {a.requests} --rounds {a.rounds}")
    lines = [f"Demo chat model on the real mlx_lm.server, prompts of {a.prompt_tokens} tokens, "
             f"{a.output_tokens} output tokens, concurrency {a.concurrency}, {a.requests} requests; the server "
             f"pinned to CPU 0, every client to CPU 1 (`taskset`); after one uncounted run, {a.rounds} rounds "
             "in turn, each figure the median round.", "",
             "| client | TTFT p50 | output tok/s | mean in/out tokens | client CPU | CPU per request |",
             "|---|---|---|---|---|---|"]
    for name, r in rows:
        per = r["cpu_s"] / max(r["requests"], 1) * 1000
        lens = f"{r['prompt_len'] or 0:.0f}/{r['output_len'] or 0:.0f}"
        lines.append(f"| {name} | {r['ttft_p50_ms']:.1f} ms | {r['output_tok_s']:.1f} | {lens} | "
                     f"{r['cpu_s']:.2f} s | {per:.1f} ms |")
    ttft_d = (mb["ttft_p50_ms"] - curl["ttft_p50_ms"]) / curl["ttft_p50_ms"] * 100
    tok_d = (mb["output_tok_s"] - curl["output_tok_s"]) / curl["output_tok_s"] * 100
    lines += ["", f"mlx-box against curl: TTFT p50 {ttft_d:+.1f} %, output tok/s {tok_d:+.1f} % "
              f"(target: within 10 %: {'met' if abs(ttft_d) <= 10 and abs(tok_d) <= 10 else 'not met'})."]
    if gl:
        ratio = mb["cpu_s"] / gl["cpu_s"] if gl["cpu_s"] > 0 else float("nan")
        lines.append(f"mlx-box's client CPU against guidellm's: {ratio:.3f}× "
                     f"(target ≤ 0.05: {'met' if ratio <= 0.05 else 'not met'}).")
    lines.append(f"\nCommand: `{cmd}`")
    text = "\n".join(lines)
    print(text)
    if a.write_docs:
        doc = ROOT / "docs/BENCHMARK.md"
        d = doc.read_text()
        stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        block = f"<!-- bench:guidellm -->\n_Generated on {stamp}._\n\n{text}\n<!-- /bench:guidellm -->"
        if "<!-- bench:guidellm -->" in d:
            i, j = d.index("<!-- bench:guidellm -->"), d.index("<!-- /bench:guidellm -->") + len("<!-- /bench:guidellm -->")
            d = d[:i] + block + d[j:]
        else:
            d = d.rstrip() + "\n\n## Against guidellm and curl, on the same load\n\n" + block + "\n"
        doc.write_text(d)


if __name__ == "__main__":
    main()
