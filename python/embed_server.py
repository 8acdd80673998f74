#!/usr/bin/env python3
"""Minimal OpenAI-compatible embeddings server on top of mlx_lm.

    embed_server.py --model DIR --host H --port P [--batch-size N] [--max-seq-length N]

The port is bound first; GET /health answers 503 {"status":"loading"} until the
model is loaded, then 200 {"status":"ok"}.  Embeddings pool the last hidden
states (model.model(...), i.e. after the final norm) as the model's own
sentence-transformers config says -- modules.json and its Pooling module's
config.json: last token (Qwen3-Embedding), CLS, mean or max, then L2-normalised
when a Normalize module is listed -- with the tokenizer's special tokens, as
sentence-transformers tokenizes.  A model without modules.json gets the mean
over its tokens, L2-normalised.  --quantize-bits 8 quantizes the weights after
loading (the original mlx-box's `quantization = true`).  If loading fails the
process exits with 1.

Why not a maintained library's server: mlx-embeddings (0.1.0) is a library with no
server; mlx_vlm.server (>= 0.7) serves its model classes at /v1/embeddings
(--embedding-model), pooled as each class does, not as the model's own
modules.json says. This one reads modules.json and is held to a reference
computed from the same weights (crates/cli/tests/embeddings.rs, cosine >= 0.999).
"""

import argparse
import base64
import json
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STATE = {"model": None, "tokenizer": None, "loaded": False,
         # How to pool and whether to normalise (read_pooling); special tokens as sentence-transformers.
         "pooling": "mean", "normalize": True, "special_tokens": False}
LOCK = threading.Lock()  # one forward pass at a time; mlx is not thread-safe
ARGS = None


def log(msg):
    print(f"embed_server: {msg}", file=sys.stderr, flush=True)


class BadRequest(Exception):
    pass


def parse_inputs(inp):
    """Normalise `input` to a list of strings and/or token-id lists."""
    if isinstance(inp, str):
        return [inp]
    if isinstance(inp, list) and inp:
        if all(isinstance(t, int) for t in inp):
            return [inp]  # a single token array
        if all(isinstance(x, str) for x in inp):
            return inp
        if all(isinstance(x, list) and x and all(isinstance(t, int) for t in x) for x in inp):
            return inp
    raise BadRequest("'input' must be a non-empty string, list of strings, or token arrays")


def model_dir(model):
    """The model's local directory (a path, or its Hugging Face cache snapshot)."""
    import os

    if os.path.isdir(model):
        return model
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(model, local_files_only=True)
    except Exception:
        return None


def read_pooling(directory):
    """(pooling, normalize, special_tokens) from a sentence-transformers model's modules.json."""
    import os

    if not directory or not os.path.exists(os.path.join(directory, "modules.json")):
        return "mean", True, False
    with open(os.path.join(directory, "modules.json")) as f:
        modules = json.load(f)
    pooling, normalize = "mean", False
    for m in modules:
        kind = m.get("type", "")
        if kind.endswith("Pooling"):
            with open(os.path.join(directory, m.get("path", ""), "config.json")) as f:
                cfg = json.load(f)
            for mode, key in (("lasttoken", "pooling_mode_lasttoken"), ("cls", "pooling_mode_cls_token"),
                              ("max", "pooling_mode_max_tokens"), ("mean", "pooling_mode_mean_tokens")):
                if cfg.get(key):
                    pooling = mode
                    break
        elif kind.endswith("Normalize"):
            normalize = True
    return pooling, normalize, True


def pool(h, lengths, how):
    """Pools hidden states h [batch, L, d] (right-padded) over each row's first `lengths` tokens."""
    import mlx.core as mx

    L = h.shape[1]
    m = mx.array([[1.0] * n + [0.0] * (L - n) for n in lengths])[..., None]
    if how == "lasttoken":
        return mx.stack([h[i, n - 1] for i, n in enumerate(lengths)])
    if how == "cls":
        return h[:, 0]
    if how == "max":
        return mx.where(m > 0, h, mx.array(-1e30)).max(axis=1)
    return (h * m).sum(axis=1) / m.sum(axis=1)


def embed(items):
    import mlx.core as mx

    model, tok = STATE["model"], STATE["tokenizer"]
    vocab = model.args.vocab_size
    seqs = []
    for x in items:
        ids = tok.encode(x, add_special_tokens=STATE["special_tokens"]) if isinstance(x, str) else list(x)
        if not ids:
            raise BadRequest("input must not be empty")
        if any(t < 0 or t >= vocab for t in ids):
            raise BadRequest(f"token ids must be in [0, {vocab})")
        seqs.append(ids[: ARGS.max_seq_length])

    out = []
    with LOCK:
        for i in range(0, len(seqs), ARGS.batch_size):
            batch = seqs[i : i + ARGS.batch_size]
            L = max(map(len, batch))
            # Right padding is exact here: the attention is causal, so pad
            # tokens never influence real positions, and pooling skips them.
            x = mx.array([s + [0] * (L - len(s)) for s in batch])
            h = model.model(x).astype(mx.float32)
            e = pool(h, [len(s) for s in batch], STATE["pooling"])
            if STATE["normalize"]:
                e = e / mx.maximum(mx.linalg.norm(e, axis=-1, keepdims=True), 1e-12)
            out.extend(e.tolist())
    return out, sum(map(len, seqs))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # one line per request on stderr
        log(f"{self.address_string()} {fmt % args}")

    def send_json(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def error(self, code, msg, typ="invalid_request_error"):
        self.send_json(code, {"error": {"message": msg, "type": typ, "param": None, "code": None}})

    def do_GET(self):
        if self.path == "/health":
            if STATE["loaded"]:
                self.send_json(200, {"status": "ok"})
            else:
                self.send_json(503, {"status": "loading"})
        elif self.path.rstrip("/") == "/v1/models":
            self.send_json(200, {"object": "list", "data": [
                {"id": ARGS.model, "object": "model", "created": int(START), "owned_by": "mlx-box"}
            ]})
        else:
            self.error(404, f"unknown path {self.path}")

    def do_POST(self):
        if self.path.rstrip("/") != "/v1/embeddings":
            self.error(404, f"unknown path {self.path}")
            return
        try:
            n = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(n) or b"null")
            if not isinstance(body, dict):
                raise BadRequest("request body must be a JSON object")
            if not STATE["loaded"]:
                self.error(503, "model is still loading", "server_error")
                return
            items = parse_inputs(body.get("input"))
            fmt = body.get("encoding_format") or "float"
            if fmt not in ("float", "base64"):
                raise BadRequest("encoding_format must be 'float' or 'base64'")
            vecs, ntok = embed(items)
        except (BadRequest, ValueError) as e:  # JSONDecodeError is a ValueError
            self.error(400, str(e))
            return
        except Exception as e:
            log(f"internal error: {e!r}")
            self.error(500, f"internal error: {e}", "server_error")
            return
        if fmt == "base64":  # what the official openai client asks for by default
            import array

            vecs = [base64.b64encode(array.array("f", v).tobytes()).decode() for v in vecs]
        self.send_json(200, {
            "object": "list",
            "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vecs)],
            "model": body.get("model") or ARGS.model,
            "usage": {"prompt_tokens": ntok, "total_tokens": ntok},
        })


def main():
    global ARGS, START
    ap = argparse.ArgumentParser(description="OpenAI-compatible embeddings server (mlx_lm)")
    ap.add_argument("--model", required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8081)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-seq-length", type=int, default=512)
    ap.add_argument("--quantize-bits", type=int, choices=[4, 8], default=None)
    ARGS = ap.parse_args()
    START = time.time()

    # SIGTERM -> SystemExit in the main thread, which unwinds the finally below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))

    ThreadingHTTPServer.daemon_threads = True
    httpd = ThreadingHTTPServer((ARGS.host, ARGS.port), Handler)
    # A short poll interval makes httpd.shutdown() (on SIGTERM) return quickly.
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    log(f"listening on {ARGS.host}:{ARGS.port}, loading {ARGS.model}")
    try:
        try:
            from mlx_lm import load

            STATE["model"], STATE["tokenizer"] = load(ARGS.model)
            pooling, normalize, special = read_pooling(model_dir(ARGS.model))
            STATE.update(pooling=pooling, normalize=normalize, special_tokens=special)
            if ARGS.quantize_bits:
                import mlx.nn as nn

                import mlx.core as mx

                nn.quantize(STATE["model"], bits=ARGS.quantize_bits, group_size=64)
                # Evaluated here: lazy arrays belong to this thread's stream, and requests run on others.
                mx.eval(STATE["model"].parameters())
            log(f"pooling: {pooling}, normalize: {normalize}, special tokens: {special}, "
                f"weights: {f'{ARGS.quantize_bits}-bit' if ARGS.quantize_bits else 'as stored'}")
        except Exception as e:
            log(f"failed to load model: {e}")
            return 1
        STATE["loaded"] = True
        log(f"model loaded in {time.time() - START:.1f}s")
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        log("shutting down")
        httpd.shutdown()
        httpd.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
