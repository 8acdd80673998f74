#!/usr/bin/env python3
"""Build a TINY, randomly initialised Qwen2.5-VL (``model_type: qwen2_5_vl``)
model directory that ``mlx_vlm.server`` (mlx-vlm 0.7.10) can load fully offline.

Everything is generated locally (no Hugging Face / GitHub access needed):

  config.json                    mlx-community style Qwen2.5-VL config (tiny dims)
  generation_config.json
  model.safetensors              random bf16 weights, MLX key layout
  model.safetensors.index.json
  tokenizer.json                 byte-level BPE (256 byte tokens, no merges)
                                 + the 22 Qwen2/2.5-VL special tokens
  tokenizer_config.json          Qwen2Tokenizer, eos/pad, chat template
  special_tokens_map.json
  chat_template.json             the real Qwen2.5-VL chat template
  preprocessor_config.json       Qwen2VLImageProcessor settings (patch 14, merge 2)
  video_preprocessor_config.json
  processor_config.json

Only the Python standard library and numpy are needed.  Output is fully
deterministic for a given seed (byte-identical files).

Usage:  python make_tiny_vlm.py OUT_DIR [SEED]
"""

from __future__ import annotations

import json
import pathlib
import struct
import sys

import numpy as np
from byte_level import bytes_to_unicode  # beside this script

# --------------------------------------------------------------------------
# Tiny dimensions
# --------------------------------------------------------------------------
TEXT_HIDDEN = 64
TEXT_LAYERS = 2
TEXT_HEADS = 4  # head_dim = 16
TEXT_KV_HEADS = 2
TEXT_INTERMEDIATE = 128
MROPE_SECTION = [2, 3, 3]  # must sum to head_dim // 2 = 8

VIS_HIDDEN = 32
VIS_DEPTH = 2
VIS_HEADS = 2  # head_dim = 16
VIS_INTERMEDIATE = 64
PATCH = 14
TEMPORAL_PATCH = 2
MERGE = 2
IN_CH = 3

# Image token budget: at most 256 merged image tokens per image
# (Qwen "factor" = patch * merge = 28 px).
MIN_PIXELS = 28 * 28 * 4  # 3136 (Qwen default)
MAX_PIXELS = 28 * 28 * 256  # 200704

# --------------------------------------------------------------------------
# Tokenizer: 256 byte-level tokens (ids 0..255) + Qwen special tokens
# --------------------------------------------------------------------------
SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
    "<tool_call>",
    "</tool_call>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<|fim_pad|>",
    "<|repo_name|>",
    "<|file_sep|>",
]
# Tokens that are "special" (skipped by skip_special_tokens) in the real
# Qwen2.5-VL tokenizer; the tool-call / fim tokens are not special there.
NOT_SPECIAL = {
    "<tool_call>",
    "</tool_call>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<|fim_pad|>",
    "<|repo_name|>",
    "<|file_sep|>",
}
NUM_BYTE_TOKENS = 256
TOKEN_ID = {t: NUM_BYTE_TOKENS + i for i, t in enumerate(SPECIAL_TOKENS)}
VOCAB_SIZE = NUM_BYTE_TOKENS + len(SPECIAL_TOKENS)  # 278

QWEN_PRETOKENIZE_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
    r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# The chat template shipped with Qwen/Qwen2.5-VL-*-Instruct (chat_template.json).
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}"
    "{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n"
    "{% else %}"
    "{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}"
    "{{ content['text'] }}"
    "{% endif %}"
    "{% endfor %}"
    "<|im_end|>\n"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _tokenizer_json() -> dict:
    b2u = bytes_to_unicode()
    vocab = {b2u[b]: b for b in range(256)}
    byte_level = {
        "type": "ByteLevel",
        "add_prefix_space": False,
        "trim_offsets": False,
        "use_regex": False,
    }
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {
                "id": TOKEN_ID[t],
                "content": t,
                "single_word": False,
                "lstrip": False,
                "rstrip": False,
                "normalized": False,
                "special": t not in NOT_SPECIAL,
            }
            for t in SPECIAL_TOKENS
        ],
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [
                {
                    "type": "Split",
                    "pattern": {"Regex": QWEN_PRETOKENIZE_REGEX},
                    "behavior": "Isolated",
                    "invert": False,
                },
                byte_level,
            ],
        },
        "post_processor": dict(byte_level),
        "decoder": dict(byte_level),
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
    }


def _tokenizer_config() -> dict:
    return {
        "add_bos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": {
            str(TOKEN_ID[t]): {
                "content": t,
                "lstrip": False,
                "normalized": False,
                "rstrip": False,
                "single_word": False,
                "special": t not in NOT_SPECIAL,
            }
            for t in SPECIAL_TOKENS
        },
        "additional_special_tokens": [
            "<|im_start|>",
            "<|im_end|>",
            "<|object_ref_start|>",
            "<|object_ref_end|>",
            "<|box_start|>",
            "<|box_end|>",
            "<|quad_start|>",
            "<|quad_end|>",
            "<|vision_start|>",
            "<|vision_end|>",
            "<|vision_pad|>",
            "<|image_pad|>",
            "<|video_pad|>",
        ],
        "bos_token": None,
        "chat_template": CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "eos_token": "<|im_end|>",
        "errors": "replace",
        "extra_special_tokens": {},
        "model_max_length": 32768,
        "pad_token": "<|endoftext|>",
        "processor_class": "Qwen2_5_VLProcessor",
        "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer",
        "unk_token": None,
    }


def _config() -> dict:
    eos = [TOKEN_ID["<|im_end|>"], TOKEN_ID["<|endoftext|>"]]
    return {
        "architectures": ["Qwen2_5_VLForConditionalGeneration"],
        "model_type": "qwen2_5_vl",
        "attention_dropout": 0.0,
        "bos_token_id": TOKEN_ID["<|endoftext|>"],
        "eos_token_id": eos,
        "pad_token_id": TOKEN_ID["<|endoftext|>"],
        "image_token_id": TOKEN_ID["<|image_pad|>"],
        "video_token_id": TOKEN_ID["<|video_pad|>"],
        "vision_start_token_id": TOKEN_ID["<|vision_start|>"],
        "vision_end_token_id": TOKEN_ID["<|vision_end|>"],
        "vision_token_id": TOKEN_ID["<|vision_pad|>"],
        "hidden_act": "silu",
        # Text model params live at the top level (mlx_vlm copies them into
        # text_config itself; a nested text_config would be ignored).
        "hidden_size": TEXT_HIDDEN,
        "intermediate_size": TEXT_INTERMEDIATE,
        "num_hidden_layers": TEXT_LAYERS,
        "num_attention_heads": TEXT_HEADS,
        "num_key_value_heads": TEXT_KV_HEADS,
        "max_position_embeddings": 32768,
        "max_window_layers": TEXT_LAYERS,
        "rms_norm_eps": 1e-06,
        "rope_theta": 1000000.0,
        "rope_scaling": {
            "type": "mrope",
            "rope_type": "default",
            "mrope_section": MROPE_SECTION,
        },
        "sliding_window": 32768,
        "use_sliding_window": False,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "use_cache": True,
        "vocab_size": VOCAB_SIZE,
        "vision_config": {
            "model_type": "qwen2_5_vl",
            "depth": VIS_DEPTH,
            "hidden_act": "silu",
            "hidden_size": VIS_HIDDEN,
            "intermediate_size": VIS_INTERMEDIATE,
            "num_heads": VIS_HEADS,
            "in_channels": IN_CH,
            "in_chans": IN_CH,
            "out_hidden_size": TEXT_HIDDEN,
            "patch_size": PATCH,
            "spatial_patch_size": PATCH,
            "spatial_merge_size": MERGE,
            "temporal_patch_size": TEMPORAL_PATCH,
            "tokens_per_second": 2,
            "window_size": 112,
            "fullatt_block_indexes": [VIS_DEPTH - 1],
        },
    }


def _preprocessor_config() -> dict:
    return {
        "do_convert_rgb": True,
        "do_normalize": True,
        "do_rescale": True,
        "do_resize": True,
        "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711],
        "image_processor_type": "Qwen2VLImageProcessor",
        "processor_class": "Qwen2_5_VLProcessor",
        "merge_size": MERGE,
        "patch_size": PATCH,
        "temporal_patch_size": TEMPORAL_PATCH,
        "resample": 3,
        "rescale_factor": 0.00392156862745098,
        "min_pixels": MIN_PIXELS,
        "max_pixels": MAX_PIXELS,
        "size": {"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS},
    }


def _video_preprocessor_config() -> dict:
    cfg = _preprocessor_config()
    cfg.pop("image_processor_type")
    cfg["video_processor_type"] = "Qwen2VLVideoProcessor"
    cfg["fps"] = 2.0
    cfg["min_frames"] = 4
    cfg["max_frames"] = 16
    return cfg


# --------------------------------------------------------------------------
# Weights (MLX layout, i.e. what mlx_vlm.convert writes; sanitize() is a no-op)
# --------------------------------------------------------------------------
def _param_shapes() -> list[tuple[str, tuple[int, ...]]]:
    p: list[tuple[str, tuple[int, ...]]] = []
    v = "vision_tower"
    # Conv3d weight in MLX layout (out, T, kH, kW, in).
    p.append((f"{v}.patch_embed.proj.weight", (VIS_HIDDEN, TEMPORAL_PATCH, PATCH, PATCH, IN_CH)))
    for i in range(VIS_DEPTH):
        b = f"{v}.blocks.{i}"
        p += [
            (f"{b}.norm1.weight", (VIS_HIDDEN,)),
            (f"{b}.norm2.weight", (VIS_HIDDEN,)),
            (f"{b}.attn.qkv.weight", (3 * VIS_HIDDEN, VIS_HIDDEN)),
            (f"{b}.attn.qkv.bias", (3 * VIS_HIDDEN,)),
            (f"{b}.attn.proj.weight", (VIS_HIDDEN, VIS_HIDDEN)),
            (f"{b}.attn.proj.bias", (VIS_HIDDEN,)),
            (f"{b}.mlp.gate_proj.weight", (VIS_INTERMEDIATE, VIS_HIDDEN)),
            (f"{b}.mlp.gate_proj.bias", (VIS_INTERMEDIATE,)),
            (f"{b}.mlp.up_proj.weight", (VIS_INTERMEDIATE, VIS_HIDDEN)),
            (f"{b}.mlp.up_proj.bias", (VIS_INTERMEDIATE,)),
            (f"{b}.mlp.down_proj.weight", (VIS_HIDDEN, VIS_INTERMEDIATE)),
            (f"{b}.mlp.down_proj.bias", (VIS_HIDDEN,)),
        ]
    merged = VIS_HIDDEN * MERGE * MERGE
    p += [
        (f"{v}.merger.ln_q.weight", (VIS_HIDDEN,)),
        (f"{v}.merger.mlp.0.weight", (merged, merged)),
        (f"{v}.merger.mlp.0.bias", (merged,)),
        (f"{v}.merger.mlp.2.weight", (TEXT_HIDDEN, merged)),
        (f"{v}.merger.mlp.2.bias", (TEXT_HIDDEN,)),
    ]
    m = "language_model.model"
    head_dim = TEXT_HIDDEN // TEXT_HEADS
    q_out = TEXT_HEADS * head_dim
    kv_out = TEXT_KV_HEADS * head_dim
    p.append((f"{m}.embed_tokens.weight", (VOCAB_SIZE, TEXT_HIDDEN)))
    for i in range(TEXT_LAYERS):
        b = f"{m}.layers.{i}"
        p += [
            (f"{b}.self_attn.q_proj.weight", (q_out, TEXT_HIDDEN)),
            (f"{b}.self_attn.q_proj.bias", (q_out,)),
            (f"{b}.self_attn.k_proj.weight", (kv_out, TEXT_HIDDEN)),
            (f"{b}.self_attn.k_proj.bias", (kv_out,)),
            (f"{b}.self_attn.v_proj.weight", (kv_out, TEXT_HIDDEN)),
            (f"{b}.self_attn.v_proj.bias", (kv_out,)),
            (f"{b}.self_attn.o_proj.weight", (TEXT_HIDDEN, q_out)),
            (f"{b}.mlp.gate_proj.weight", (TEXT_INTERMEDIATE, TEXT_HIDDEN)),
            (f"{b}.mlp.up_proj.weight", (TEXT_INTERMEDIATE, TEXT_HIDDEN)),
            (f"{b}.mlp.down_proj.weight", (TEXT_HIDDEN, TEXT_INTERMEDIATE)),
            (f"{b}.input_layernorm.weight", (TEXT_HIDDEN,)),
            (f"{b}.post_attention_layernorm.weight", (TEXT_HIDDEN,)),
        ]
    p.append((f"{m}.norm.weight", (TEXT_HIDDEN,)))
    # Untied LM head (like Qwen2.5-VL-7B / olmOCR).  With tied embeddings and
    # random weights greedy decoding just echoes the last prompt token forever.
    p.append(("language_model.lm_head.weight", (VOCAB_SIZE, TEXT_HIDDEN)))
    return p


def _to_bf16_bytes(x: np.ndarray) -> bytes:
    """float32 -> bfloat16 (round-to-nearest-even), little-endian raw bytes."""
    u = np.ascontiguousarray(x, dtype="<f4").view("<u4").astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return u.astype("<u2").tobytes()


def _random_weights(seed: int) -> list[tuple[str, tuple[int, ...], bytes]]:
    rng = np.random.default_rng(seed)
    out = []
    for name, shape in _param_shapes():
        if "norm" in name or ".ln_q." in name:
            arr = np.ones(shape, dtype=np.float32)  # RMSNorm scales
        elif name.endswith(".bias"):
            arr = (rng.standard_normal(shape) * 0.02).astype(np.float32)
        elif name.endswith("embed_tokens.weight"):
            arr = rng.standard_normal(shape).astype(np.float32)
        elif name.endswith("lm_head.weight"):
            arr = rng.standard_normal(shape).astype(np.float32)
            # Zero the rows of every token except printable ASCII (0x20-0x7e)
            # and "\n": their logit is then exactly 0 while the max over ~96
            # random logits is > 0, so greedy decoding only ever emits
            # readable ASCII -- never control bytes, partial UTF-8, EOS or
            # special tokens such as <tool_call> / <|vision_start|>.
            keep = np.zeros(shape[0], dtype=bool)
            keep[0x20:0x7F] = True
            keep[0x0A] = True
            arr[~keep] = 0.0
        else:
            fan_in = int(np.prod(shape[1:]))
            arr = (rng.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32)
        out.append((name, shape, _to_bf16_bytes(arr)))
    return out


def _write_safetensors(path: pathlib.Path, tensors, metadata: dict) -> int:
    header: dict = {"__metadata__": metadata}
    offset = 0
    for name, shape, data in tensors:
        header[name] = {
            "dtype": "BF16",
            "shape": list(shape),
            "data_offsets": [offset, offset + len(data)],
        }
        offset += len(data)
    hbytes = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hbytes += b" " * ((8 - len(hbytes) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hbytes)))
        f.write(hbytes)
        for _, _, data in tensors:
            f.write(data)
    return offset


def _dump(path: pathlib.Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def make_tiny_vlm(out_dir: pathlib.Path, seed: int = 0) -> pathlib.Path:
    out_dir = pathlib.Path(out_dir).expanduser().resolve()
    out_dir.mkdir(parents=True, exist_ok=True)

    _dump(out_dir / "config.json", _config())
    _dump(
        out_dir / "generation_config.json",
        {
            "bos_token_id": TOKEN_ID["<|endoftext|>"],
            "pad_token_id": TOKEN_ID["<|endoftext|>"],
            "do_sample": False,
            "eos_token_id": [TOKEN_ID["<|im_end|>"], TOKEN_ID["<|endoftext|>"]],
        },
    )

    tensors = _random_weights(seed)
    nbytes = _write_safetensors(out_dir / "model.safetensors", tensors, {"format": "mlx"})
    _dump(
        out_dir / "model.safetensors.index.json",
        {
            "metadata": {"total_size": nbytes},
            "weight_map": {name: "model.safetensors" for name, _, _ in tensors},
        },
    )

    _dump(out_dir / "tokenizer.json", _tokenizer_json())
    _dump(out_dir / "tokenizer_config.json", _tokenizer_config())
    _dump(
        out_dir / "special_tokens_map.json",
        {
            "additional_special_tokens": _tokenizer_config()["additional_special_tokens"],
            "eos_token": "<|im_end|>",
            "pad_token": "<|endoftext|>",
        },
    )
    _dump(out_dir / "chat_template.json", {"chat_template": CHAT_TEMPLATE})
    _dump(out_dir / "preprocessor_config.json", _preprocessor_config())
    _dump(out_dir / "video_preprocessor_config.json", _video_preprocessor_config())
    _dump(out_dir / "processor_config.json", {"processor_class": "Qwen2_5_VLProcessor"})
    return out_dir


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(f"usage: {sys.argv[0]} OUT_DIR [SEED]")
    d = make_tiny_vlm(pathlib.Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 0)
    print(d)
