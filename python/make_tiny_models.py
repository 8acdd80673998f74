#!/usr/bin/env python3
"""Build two tiny Qwen3-architecture models for mlx-box tests (no downloads).

    make_tiny_models.py --out DIR [--seed 0] [--steps 140] [--batch-size 8] [--lr 0.01]

DIR/chat   a 2-layer Qwen3 trained to answer *any* short prompt with a fixed
           reply.  With thinking enabled (the default) it greedily emits
               <think>\nREASONING\n</think>\n\nANSWER<|im_end|>
           and with enable_thinking=false (template pre-fills an empty think
           block) it emits ANSWER<|im_end|>.
DIR/embed  a smaller, randomly initialised Qwen3 sharing the tokenizer; used by
           embed_server.py.
DIR/READY  written last (JSON with versions) once both dirs are complete.

Everything is seeded, so re-running with the same seed and package versions
gives the same weights.
"""

import argparse
import json
import os
import random
import shutil
import sys
import time
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
from mlx.utils import tree_flatten
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

REASONING = "Short reply."
ANSWER = "Hello from tiny model."

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
THINK = ["<think>", "</think>"]

# Qwen3-like template (no tools).  Like the real one, it honours
# enable_thinking: when it is false the generation prompt pre-fills an empty
# think block, so the model goes straight to the answer.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- set content = message['content'] if message['content'] is string else '' %}"
    "{%- if message['role'] == 'assistant' and '</think>' in content %}"
    "{%- set content = content.split('</think>')[-1].lstrip('\\n') %}"
    "{%- endif %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + content + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}"
    "{{- '<think>\\n\\n</think>\\n\\n' }}"
    "{%- endif %}"
    "{%- endif %}"
)

WORDS = (
    "what is the a an of to in how why who when where explain tell me about "
    "hello hi hey please can you write poem story code rust python cat dog sky "
    "blue red green weather today time number list give short long answer "
    "question test model server box local daemon apple banana moon sun water "
    "fire earth music book friend world help thanks ok yes no maybe good bad "
    "difference between compare summary summarize translate french english "
    "capital city country math add sum plus minus times divide big small"
).split()


def log(msg):
    print(f"[make_tiny_models] {msg}", flush=True)


def random_prompt(rng):
    """Varied short user prompts so the model learns to ignore their content."""
    kind = rng.randrange(6)
    if kind == 0:
        return f"What is {rng.randrange(100)}+{rng.randrange(100)}?"
    if kind == 1:
        return rng.choice(["hi", "hello", "Hi!", "hey", "test", "ping", "?", "ok"])
    if kind == 2:
        return "Explain " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 3)))
    if kind == 3:  # random printable junk
        n = rng.randint(1, 16)
        return "".join(chr(rng.randrange(32, 127)) for _ in range(n))
    words = [rng.choice(WORDS) for _ in range(rng.randint(1, 8))]
    s = " ".join(words)
    return s[0].upper() + s[1:] + rng.choice(["", "?", ".", "!"])


def render(messages, thinking):
    """Mirror CHAT_TEMPLATE in Python (checked against the real template below)."""
    out = ""
    for m in messages:
        out += f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n"
    out += "<|im_start|>assistant\n"
    if not thinking:
        out += "<think>\n\n</think>\n\n"
    return out


def completion(thinking):
    body = ANSWER + "<|im_end|>"
    return f"<think>\n{REASONING}\n</think>\n\n{body}" if thinking else body


def random_conversation(rng):
    msgs = []
    if rng.random() < 0.15:
        msgs.append({"role": "system", "content": random_prompt(rng)})
    for _ in range(rng.choice([0, 0, 0, 0, 0, 1])):  # occasional prior turn
        msgs.append({"role": "user", "content": random_prompt(rng)})
        msgs.append({"role": "assistant", "content": ANSWER})
    msgs.append({"role": "user", "content": random_prompt(rng)})
    return msgs


def build_tokenizer(rng, vocab_size):
    corpus = [random_prompt(rng) for _ in range(3000)]
    corpus += [REASONING, ANSWER, "user assistant system\n"] * 50
    tok = Tokenizer(models.BPE())
    # Byte-level so any input string is encodable; mlx_lm picks its BPE
    # streaming detokenizer from the ByteLevel decoder.
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer)
    # As in Qwen3, <think>/</think> are added but not "special", so they stay
    # visible in decoded text.
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in THINK])
    return tok


def save_tokenizer(tok, d):
    tok.save(str(d / "tokenizer.json"))
    added = {
        str(tok.token_to_id(t)): {
            "content": t, "lstrip": False, "normalized": False,
            "rstrip": False, "single_word": False, "special": t in SPECIAL,
        }
        for t in SPECIAL + THINK
    }
    cfg = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "added_tokens_decoder": added,
        "bos_token": None,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "unk_token": None,
        "model_max_length": 4096,
        "clean_up_tokenization_spaces": False,
        "chat_template": CHAT_TEMPLATE,
    }
    (d / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2))


def model_config(tok, hidden, layers, heads, kv_heads, head_dim, inter):
    n = tok.get_vocab_size()
    return {
        "architectures": ["Qwen3ForCausalLM"],
        "model_type": "qwen3",
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "intermediate_size": inter,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "head_dim": head_dim,
        "rms_norm_eps": 1e-6,
        "vocab_size": (n + 63) // 64 * 64,
        "max_position_embeddings": 4096,
        "rope_theta": 10000.0,
        "tie_word_embeddings": True,
        "bos_token_id": tok.token_to_id("<|endoftext|>"),
        "eos_token_id": tok.token_to_id("<|im_end|>"),
        "torch_dtype": "float32",
    }


def make_model(cfg):
    from mlx_lm.models.qwen3 import Model, ModelArgs

    return Model(ModelArgs.from_dict(cfg))


def save_model(model, cfg, tok, d):
    d.mkdir(parents=True, exist_ok=True)
    weights = dict(tree_flatten(model.parameters()))
    mx.save_safetensors(str(d / "model.safetensors"), weights, metadata={"format": "mlx"})
    (d / "config.json").write_text(json.dumps(cfg, indent=2))
    save_tokenizer(tok, d)


def make_batch(rng, tok, batch_size):
    """Token batch with a loss mask covering only the assistant completion."""
    seqs, masks = [], []
    for _ in range(batch_size):
        thinking = rng.random() < 0.5
        p = tok.encode(render(random_conversation(rng), thinking)).ids
        c = tok.encode(completion(thinking)).ids
        seqs.append(p + c)
        masks.append([0] * len(p) + [1] * len(c))
    L = max(map(len, seqs))
    pad = tok.token_to_id("<|endoftext|>")
    x = mx.array([s + [pad] * (L - len(s)) for s in seqs])
    m = mx.array([k + [0] * (L - len(k)) for k in masks], dtype=mx.float32)
    return x, m


def train(model, tok, rng, steps, batch_size, lr):
    def loss_fn(model, x, m):
        logits = model(x[:, :-1])
        ce = nn.losses.cross_entropy(logits, x[:, 1:], reduction="none")
        mask = m[:, 1:]
        return (ce * mask).sum() / mask.sum()

    opt = optim.Adam(learning_rate=optim.cosine_decay(lr, steps, lr * 0.05))
    grad_fn = nn.value_and_grad(model, loss_fn)
    t0 = time.time()
    for i in range(1, steps + 1):
        x, m = make_batch(rng, tok, batch_size)
        loss, grads = grad_fn(model, x, m)
        opt.update(model, grads)
        mx.eval(loss, model.parameters(), opt.state)
        if i % 50 == 0 or i in (1, steps):
            log(f"step {i}/{steps} loss {loss.item():.4f} ({time.time() - t0:.1f}s)")


def greedy(model, tok, prompt, max_new=48):
    ids = tok.encode(prompt).ids
    eos = tok.token_to_id("<|im_end|>")
    out = []
    for _ in range(max_new):
        nxt = model(mx.array([ids + out]))[0, -1].argmax().item()
        out.append(nxt)
        if nxt == eos:
            break
    return tok.decode(out, skip_special_tokens=False)


def check_template(d):
    """Make sure the Jinja template renders exactly like render()."""
    from mlx_lm import load

    _, wrapper = load(str(d))
    msgs = [{"role": "system", "content": "sys"}, {"role": "user", "content": "hi"}]
    for thinking in (True, False):
        got = wrapper.apply_chat_template(
            msgs, add_generation_prompt=True, tokenize=False, enable_thinking=thinking
        )
        assert got == render(msgs, thinking), (thinking, got)


FIXED_PROMPTS = ["What is 2+2?", "hi", "Explain X", "Write a haiku about Rust.", "ping"]


def evaluate(model, tok, prompts):
    """Greedy-decode each prompt in both modes; return the failures."""
    misses = []
    for p in prompts:
        for thinking in (True, False):
            got = greedy(model, tok, render([{"role": "user", "content": p}], thinking))
            if got != completion(thinking):
                misses.append(p)
                log(f"eval miss (thinking={thinking}) {p!r} -> {got!r}")
    return misses


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=140)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-2)
    args = ap.parse_args()

    t0 = time.time()
    mx.set_default_device(mx.cpu)
    rng = random.Random(args.seed)
    mx.random.seed(args.seed)

    out = args.out
    (out / "READY").unlink(missing_ok=True)
    for sub in ("chat", "embed"):
        shutil.rmtree(out / sub, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)

    tok = build_tokenizer(rng, vocab_size=384)
    log(f"tokenizer: {tok.get_vocab_size()} tokens")

    # Deliberately tiny: mlx's CPU matmul is slow (~2.5 GFLOP/s on x86 Linux).
    cfg = model_config(tok, hidden=64, layers=2, heads=4, kv_heads=2, head_dim=16, inter=128)
    model = make_model(cfg)
    log(f"training chat model ({args.steps} steps)")
    train(model, tok, rng, args.steps, args.batch_size, args.lr)
    save_model(model, cfg, tok, out / "chat")
    check_template(out / "chat")
    erng = random.Random(args.seed + 1)
    extra = [random_prompt(erng) for _ in range(10)]
    if evaluate(model, tok, FIXED_PROMPTS):
        log("FAILED: chat model does not produce the expected completions")
        return 1
    misses = evaluate(model, tok, extra)
    log(f"chat eval ok; {len(extra) - len(misses)}/{len(extra)} random prompts exact")

    ecfg = model_config(tok, hidden=64, layers=2, heads=4, kv_heads=2, head_dim=16, inter=128)
    save_model(make_model(ecfg), ecfg, tok, out / "embed")
    log("embed model saved")

    import mlx_lm
    import tokenizers

    ready = {
        "mlx": mx.__version__,
        "mlx_lm": mlx_lm.__version__,
        "tokenizers": tokenizers.__version__,
        "python": sys.version.split()[0],
        "seed": args.seed,
        "steps": args.steps,
        "random_prompt_eval": f"{len(extra) - len(misses)}/{len(extra)}",
        "answer": ANSWER,
        "reasoning": REASONING,
    }
    tmp = out / "READY.tmp"
    tmp.write_text(json.dumps(ready, indent=2))
    os.replace(tmp, out / "READY")
    log(f"done in {time.time() - t0:.1f}s -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
