#!/usr/bin/env python3
"""Build a tiny, randomly initialised Whisper model directory for mlx-audio.

The directory is loadable offline by ``mlx_audio.stt.load`` / ``mlx_audio.server``
(tested with mlx-audio 0.6.2, transformers 5.x) and contains:

  config.json               MLX-format Whisper dims + "model_type": "whisper"
  model.safetensors         float16 weights, MLX key names / layouts
  tokenizer.json            byte-level BPE (256 byte tokens, no merges) + Whisper
  vocab.json, merges.txt    special tokens at their real Whisper ids
  tokenizer_config.json     (WhisperTokenizer)
  special_tokens_map.json
  preprocessor_config.json  (WhisperFeatureExtractor, 80 mels)

Nothing is downloaded; only numpy and the standard library are needed.

Weights are random (numpy, seeded => byte-identical output for a given seed),
except for one deliberate tweak that guarantees fast, bounded decoding: the
final decoder LayerNorm has weight 0 and bias u (a unit vector), and the
embedding rows of <|endoftext|> and of one timestamp token are set to 40*u and
20*u.  The output logits are then constant: greedy decoding always emits
"<|0.00|>" (timestamps are forced first) followed by <|endoftext|>, so every
30 s window decodes in 2 steps, never falls back to higher temperatures and
never loops; the transcript text is "" (empty).  Pass force_eot=False to get
fully random weights (each decode step is still capped at n_text_ctx // 2
tokens, but the output is garbage such as "\x00\x00...", avg_logprob is NaN
in float16, and the temperature-fallback / seek loop may run many times).

The 30 s Whisper window is hard-coded in mlx-audio (3000 mel frames -> conv
stride 2 -> 1500), so n_audio_ctx must be 1500.

multilingual=True (default) uses the real multilingual vocabulary size 51865
(mlx-audio decides "multilingual" by n_vocab >= 51865), so the <|en|> etc.
language tokens are part of the decoder prompt and the `language` request field
is really used; 7.3 MB in total.  multilingual=False packs everything into
1765 ids (English-only model: the language field is accepted and echoed but
not fed to the decoder); 0.9 MB in total.

Name the directory so that no dash-separated part of its name is another
mlx-audio model family (e.g. "parakeet", "moonshine", "kokoro"): mlx-audio
also guesses the architecture from the directory name.
"""

import json
import pathlib
import struct
import sys

import numpy as np
from byte_level import bytes_to_unicode  # beside this script

# Whisper language codes in token order (first 99 = multilingual v1/v2 models).
LANGUAGE_CODES = (
    "en zh de es ru ko fr ja pt tr pl ca nl ar sv it id hi fi vi he uk el ms cs "
    "ro da hu ta no th ur hr bg lt la mi ml cy sk te fa lv bn sr az sl kn et mk "
    "br eu is hy ne mn bs kk sq sw gl mr pa si km sn yo so af oc ka be tg sd gu "
    "am yi lo uz fo ht ps tk nn mt sa lb my bo tl mg as tt haw ln ha ba jw su"
).split()
assert len(LANGUAGE_CODES) == 99

N_TIMESTAMPS = 1501  # <|0.00|> .. <|30.00|>


def _token_layout(multilingual: bool):
    """Return (vocab dict token->id, special token list, timestamp token list, n_vocab)."""
    byte_enc = bytes_to_unicode()
    vocab = {byte_enc[b]: b for b in range(256)}  # ids 0..255, one per byte

    if multilingual:
        first_special = 50257  # same ids as openai/whisper-tiny .. large-v2
        langs = LANGUAGE_CODES
    else:
        first_special = 256  # compact English-only layout
        langs = []
    specials = (
        ["<|endoftext|>", "<|startoftranscript|>"]
        + [f"<|{c}|>" for c in langs]
        + [
            "<|translate|>",
            "<|transcribe|>",
            "<|startoflm|>",
            "<|startofprev|>",
            "<|nocaptions|>",
            "<|notimestamps|>",
        ]
    )
    timestamps = ["<|%.2f|>" % (i * 0.02) for i in range(N_TIMESTAMPS)]
    next_id = first_special
    for tok in specials + timestamps:
        vocab[tok] = next_id
        next_id += 1
    n_vocab = next_id
    if multilingual:
        assert n_vocab == 51865, n_vocab
    return vocab, specials, timestamps, n_vocab


def _write_json(path: pathlib.Path, obj):
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _write_safetensors(path: pathlib.Path, tensors: dict):
    """Minimal deterministic safetensors writer (float16 only)."""
    header = {"__metadata__": {"format": "mlx"}}
    offset = 0
    blobs = []
    for name in sorted(tensors):
        arr = np.ascontiguousarray(tensors[name], dtype="<f2")
        data = arr.tobytes()
        header[name] = {
            "dtype": "F16",
            "shape": list(arr.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        offset += len(data)
        blobs.append(data)
    hbytes = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hbytes += b" " * ((8 - len(hbytes) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hbytes)))
        f.write(hbytes)
        for data in blobs:
            f.write(data)


def _make_weights(dims: dict, rng: np.random.Generator, std: float = 0.02):
    w = {}

    def normal(*shape):
        return rng.normal(0.0, std, size=shape).astype(np.float32)

    def linear(prefix, n_in, n_out, bias=True):
        w[f"{prefix}.weight"] = normal(n_out, n_in)
        if bias:
            w[f"{prefix}.bias"] = np.zeros(n_out, np.float32)

    def layernorm(prefix, n):
        w[f"{prefix}.weight"] = np.ones(n, np.float32)
        w[f"{prefix}.bias"] = np.zeros(n, np.float32)

    def block(prefix, n, cross):
        attns = ["attn", "cross_attn"] if cross else ["attn"]
        for a in attns:
            linear(f"{prefix}.{a}.query", n, n)
            linear(f"{prefix}.{a}.key", n, n, bias=False)
            linear(f"{prefix}.{a}.value", n, n)
            linear(f"{prefix}.{a}.out", n, n)
            layernorm(f"{prefix}.{a}_ln", n)
        linear(f"{prefix}.mlp1", n, 4 * n)
        linear(f"{prefix}.mlp2", 4 * n, n)
        layernorm(f"{prefix}.mlp_ln", n)

    na, nt = dims["n_audio_state"], dims["n_text_state"]
    # MLX Conv1d weight layout: (out_channels, kernel_size, in_channels)
    w["encoder.conv1.weight"] = normal(na, 3, dims["n_mels"])
    w["encoder.conv1.bias"] = np.zeros(na, np.float32)
    w["encoder.conv2.weight"] = normal(na, 3, na)
    w["encoder.conv2.bias"] = np.zeros(na, np.float32)
    for i in range(dims["n_audio_layer"]):
        block(f"encoder.blocks.{i}", na, cross=False)
    layernorm("encoder.ln_post", na)
    # (encoder positional embedding is computed, not stored)

    w["decoder.token_embedding.weight"] = normal(dims["n_vocab"], nt)
    w["decoder.positional_embedding"] = normal(dims["n_text_ctx"], nt)
    for i in range(dims["n_text_layer"]):
        block(f"decoder.blocks.{i}", nt, cross=True)
    layernorm("decoder.ln", nt)
    return w


def make_tiny_whisper(
    out_dir: pathlib.Path,
    seed: int = 0,
    *,
    multilingual: bool = True,
    n_state: int = 64,
    n_head: int = 2,
    n_layer: int = 1,
    n_text_ctx: int = 64,
    force_eot: bool = True,
) -> pathlib.Path:
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)

    vocab, specials, timestamps, n_vocab = _token_layout(multilingual)
    dims = {
        "n_mels": 80,
        "n_audio_ctx": 1500,  # fixed by mlx-audio's 30 s / 3000-frame window
        "n_audio_state": n_state,
        "n_audio_head": n_head,
        "n_audio_layer": n_layer,
        "n_vocab": n_vocab,
        "n_text_ctx": n_text_ctx,  # max decoded tokens per window = n_text_ctx // 2
        "n_text_state": n_state,
        "n_text_head": n_head,
        "n_text_layer": n_layer,
    }

    # ---- weights -----------------------------------------------------------
    w = _make_weights(dims, rng)
    if force_eot:
        emb = w["decoder.token_embedding.weight"]
        u = rng.normal(size=n_state).astype(np.float32)
        u /= np.linalg.norm(u)
        eot, ts0 = vocab["<|endoftext|>"], vocab["<|0.00|>"]
        emb[eot] = 40.0 * u
        emb[ts0] = 20.0 * u
        w["decoder.ln.weight"] = np.zeros(n_state, np.float32)
        w["decoder.ln.bias"] = u
        logits = emb.astype(np.float16).astype(np.float32) @ u
        text = logits[:ts0]
        # eot must beat every text token and the whole timestamp mass
        assert text.argmax() == eot and np.sort(text)[-2] < 1.0
        assert logits[ts0:].argmax() == 0 and np.sort(logits[ts0:])[-2] < 1.0
    _write_safetensors(out_dir / "model.safetensors", w)

    _write_json(out_dir / "config.json", {"model_type": "whisper", **dims})

    # ---- tokenizer ---------------------------------------------------------
    added = [
        {
            "id": vocab[t],
            "content": t,
            "single_word": False,
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
            "special": t in specials,
        }
        for t in specials + timestamps
    ]
    byte_level = {"add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    _write_json(
        out_dir / "tokenizer.json",
        {
            "version": "1.0",
            "truncation": None,
            "padding": None,
            "added_tokens": added,
            "normalizer": None,
            "pre_tokenizer": {"type": "ByteLevel", **byte_level},
            "post_processor": {"type": "ByteLevel", **byte_level},
            "decoder": {"type": "ByteLevel", **byte_level},
            "model": {
                "type": "BPE",
                "dropout": None,
                "unk_token": None,
                "continuing_subword_prefix": "",
                "end_of_word_suffix": "",
                "fuse_unk": False,
                "byte_fallback": False,
                "ignore_merges": False,
                "vocab": vocab,
                "merges": [],
            },
        },
    )
    _write_json(out_dir / "vocab.json", vocab)
    (out_dir / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    special_map = {
        "bos_token": "<|endoftext|>",
        "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
        "additional_special_tokens": specials[1:],
    }
    _write_json(out_dir / "special_tokens_map.json", special_map)
    _write_json(
        out_dir / "tokenizer_config.json",
        {
            "tokenizer_class": "WhisperTokenizer",
            "processor_class": "WhisperProcessor",
            "model_max_length": n_text_ctx,
            "add_prefix_space": False,
            "clean_up_tokenization_spaces": False,
            "errors": "replace",
            **special_map,
        },
    )
    _write_json(
        out_dir / "preprocessor_config.json",
        {
            "feature_extractor_type": "WhisperFeatureExtractor",
            "processor_class": "WhisperProcessor",
            "feature_size": 80,
            "sampling_rate": 16000,
            "hop_length": 160,
            "chunk_length": 30,
            "n_fft": 400,
            "n_samples": 480000,
            "nb_max_frames": 3000,
            "padding_side": "right",
            "padding_value": 0.0,
            "return_attention_mask": False,
        },
    )
    return out_dir


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} OUT_DIR")
    print(make_tiny_whisper(pathlib.Path(sys.argv[1])))
