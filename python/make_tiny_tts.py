#!/usr/bin/env python
"""Build a TINY, randomly initialised Qwen3-TTS (CustomVoice-style) model dir
that mlx-audio 0.6.2 (``mlx_audio.tts.utils.load`` / ``python -m mlx_audio.server``)
loads fully offline.

    /tmp/av/bin/python make_tiny_tts.py /abs/path/to/tiny-qwen3-tts

Layout written (~1 MB total, float32, byte-for-byte deterministic for a seed):

    config.json              model_type=qwen3_tts, tts_model_type=custom_voice
    model.safetensors        talker (+ code predictor) weights
    generation_config.json   sampling defaults (server/request values override)
    tokenizer.json           byte-level BPE built locally (no hub download)
    tokenizer_config.json
    speech_tokenizer/config.json, speech_tokenizer/model.safetensors
                             tiny 12.5 Hz codec decoder (1920x upsampling, 24 kHz)

Voices  (request "voice", case-insensitive): vivian serena uncle_fu dylan eric
        ryan aiden ono_anna sohee          (same names as Qwen3-TTS CustomVoice)
Language (request "lang_code", case-insensitive): auto chinese english german
        italian portuguese spanish japanese korean french russian
        (anything else, e.g. the server default "a", behaves like "auto").

Weights are random noise, EXCEPT a small hand-wired "length head" in the talker
so generation stops by itself: the codec EOS logit is K*(THETA - m), where m is
a uniform-attention average of a per-token "text indicator" over all positions
seen so far. Result: an utterance of n text tokens (byte-level, ~1 per ASCII
char) stops after about n+4 codec frames (0.08 s each), i.e. it terminates
quickly even when the client does not send max_tokens (server default 1200).
The audio itself is noise.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
from byte_level import bytes_to_unicode  # beside this script

# ---------------------------------------------------------------- dimensions
CODEBOOK = 64                  # codec codebook size (real model: 2048)
NUM_CODE_GROUPS = 4            # codebooks per frame (real model: 16)
VOCAB = CODEBOOK + 1024        # talker codec vocab: codes + 1024 specials (required layout)
HIDDEN = 64
HEAD_DIM = 16
TEXT_HIDDEN = 32
CB_DIM = 132                   # decoder codebook_dim; >128 so 1x1 conv weights survive
                               # mlx_audio's PyTorch->MLX layout heuristic untouched
LATENT = 16
UPSAMPLING_RATIOS = [8, 8, 5, 6]  # product 1920 -> 12.5 frames/s at 24 kHz

# codec special ids, same offsets from CODEBOOK as the real model has from 2048
PAD, BOS, EOS = CODEBOOK + 100, CODEBOOK + 101, CODEBOOK + 102
THINK, NOTHINK, THINK_BOS, THINK_EOS = (CODEBOOK + 106, CODEBOOK + 107,
                                        CODEBOOK + 108, CODEBOOK + 109)
LANGUAGES = ["chinese", "english", "german", "italian", "portuguese", "spanish",
             "japanese", "korean", "french", "russian",
             "beijing_dialect", "sichuan_dialect"]
SPEAKERS = ["vivian", "serena", "uncle_fu", "dylan", "eric", "ryan", "aiden",
            "ono_anna", "sohee"]
SPK_DIALECT = {"dylan": "beijing_dialect", "eric": "sichuan_dialect"}

# length head constants
BIAS_CH, IND_CH, MEAN_CH = 0, 1, 2   # reserved residual channels of the talker
B = 100.0                             # constant value carried in BIAS_CH
THETA, K = 0.5, 2000.0                # stop when mean indicator < THETA
SPECIAL_IND = 4.0                     # indicator weight of <tts_text_bos>/<tts_text_eod>
SILU_GAIN = 20.0                      # silu(20x)/20 ~= x for x in {0,1,4}

# ---------------------------------------------------------------- tokenizer
ASSISTANT_MERGES = [("a", "s"), ("as", "s"), ("ass", "i"), ("assi", "s"),
                    ("assis", "t"), ("assist", "a"), ("assista", "n"),
                    ("assistan", "t")]
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>",
                  "<tts_pad>", "<tts_text_bos>", "<tts_text_eod>"]


def build_tokenizer(out_dir: Path) -> dict[str, int]:
    """Byte-level BPE: 256 byte tokens + merges that make 'assistant' one token
    (Qwen3-TTS slices the chat template by token position, so
    '<|im_start|>assistant\\n' must be exactly 3 tokens) + special tokens."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    b2u = bytes_to_unicode()
    vocab = {b2u[b]: b for b in range(256)}
    for a, b in ASSISTANT_MERGES:
        vocab[a + b] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=ASSISTANT_MERGES))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t in SPECIAL_TOKENS])
    tok.save(str(out_dir / "tokenizer.json"))
    ids = {t: tok.token_to_id(t) for t in SPECIAL_TOKENS}
    ids["__vocab_size__"] = tok.get_vocab_size()
    # sanity: the template slicing used by qwen3_tts must line up
    enc = tok.encode("<|im_start|>assistant\nHi<|im_end|>\n<|im_start|>assistant\n").ids
    assert len(enc) == 3 + 2 + 5, enc

    (out_dir / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": 32768,
        "bos_token": None,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "unk_token": None,
        "add_prefix_space": False,
        "clean_up_tokenization_spaces": False,
        "additional_special_tokens": SPECIAL_TOKENS[1:],
    }, indent=2) + "\n")
    return ids


# ---------------------------------------------------------------- configs
def build_configs(tok_ids: dict[str, int]) -> tuple[dict, dict]:
    text_vocab = int(math.ceil(tok_ids["__vocab_size__"] / 16) * 16)
    lang_ids = {name: CODEBOOK + 2 + i for i, name in enumerate(LANGUAGES)}
    spk_ids = {name: [CODEBOOK + 800 + i] for i, name in enumerate(SPEAKERS)}
    spk_dialect = {name: SPK_DIALECT.get(name, False) for name in SPEAKERS}
    code_predictor = {
        "vocab_size": CODEBOOK, "hidden_size": HIDDEN, "intermediate_size": 128,
        "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 2,
        "head_dim": HEAD_DIM, "hidden_act": "silu", "max_position_embeddings": 65536,
        "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "attention_bias": False,
        "num_code_groups": NUM_CODE_GROUPS,
    }
    talker = {
        "code_predictor_config": code_predictor,
        "vocab_size": VOCAB, "hidden_size": HIDDEN, "intermediate_size": 128,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "head_dim": HEAD_DIM, "hidden_act": "silu", "max_position_embeddings": 32768,
        "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
        "rope_scaling": {"interleaved": True, "mrope_section": [4, 2, 2],
                         "rope_type": "default"},
        "attention_bias": False, "num_code_groups": NUM_CODE_GROUPS,
        "text_hidden_size": TEXT_HIDDEN, "text_vocab_size": text_vocab,
        "codec_eos_token_id": EOS, "codec_think_id": THINK,
        "codec_nothink_id": NOTHINK, "codec_think_bos_id": THINK_BOS,
        "codec_think_eos_id": THINK_EOS, "codec_pad_id": PAD, "codec_bos_id": BOS,
        "codec_language_id": lang_ids, "spk_id": spk_ids,
        "spk_is_dialect": spk_dialect,
    }
    decoder = {
        "attention_bias": False, "attention_dropout": 0.0,
        "latent_dim": LATENT, "codebook_dim": CB_DIM, "codebook_size": CODEBOOK,
        "decoder_dim": 16, "hidden_act": "silu", "hidden_size": 32,
        "intermediate_size": 64, "layer_scale_initial_scale": 0.01,
        "max_position_embeddings": 8000, "head_dim": 16,
        "num_attention_heads": 2, "num_hidden_layers": 1, "num_key_value_heads": 2,
        "num_quantizers": NUM_CODE_GROUPS, "num_semantic_quantizers": 1,
        "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
        "semantic_codebook_size": CODEBOOK, "sliding_window": 72,
        # no DecoderBlocks (they contain 1x1 convs that would need >64 channels);
        # all 1920x upsampling happens in the ConvTranspose "upsample" stages.
        "upsample_rates": [], "upsampling_ratios": UPSAMPLING_RATIOS,
        "vector_quantization_hidden_dimension": CB_DIM,
    }
    speech_tok = {
        "model_type": "qwen3_tts_tokenizer_12hz",
        "decoder_config": decoder,
        "encoder_valid_num_quantizers": NUM_CODE_GROUPS,
        "input_sample_rate": 24000, "output_sample_rate": 24000,
        "decode_upsample_rate": int(np.prod(UPSAMPLING_RATIOS)),
        "encode_downsample_rate": int(np.prod(UPSAMPLING_RATIOS)),
    }
    config = {
        "architectures": ["Qwen3TTSForConditionalGeneration"],
        "model_type": "qwen3_tts",
        "tts_model_type": "custom_voice",
        "tts_model_size": "1b7",       # "0b6" would make the serial path drop `instruct`
        "tokenizer_type": "qwen3_tts_tokenizer_12hz",
        "im_start_token_id": tok_ids["<|im_start|>"],
        "im_end_token_id": tok_ids["<|im_end|>"],
        "tts_pad_token_id": tok_ids["<tts_pad>"],
        "tts_bos_token_id": tok_ids["<tts_text_bos>"],
        "tts_eos_token_id": tok_ids["<tts_text_eod>"],
        "sample_rate": 24000,
        "talker_config": talker,
        "torch_dtype": "float32",
    }
    return config, speech_tok


# ---------------------------------------------------------------- weights
def _random_fill(params: dict[str, tuple], rng: np.random.Generator) -> dict[str, np.ndarray]:
    out = {}
    for name in sorted(params):
        shape = params[name]
        leaf = name.rsplit(".", 1)[-1]
        if "norm" in name and leaf == "weight":
            w = np.ones(shape)
        elif leaf == "bias" or leaf in ("alpha", "beta"):
            w = np.zeros(shape)           # snake alpha/beta are log-scale: exp(0)=1
        elif leaf == "scale":
            w = np.full(shape, 0.01)      # LayerScale
        elif leaf == "gamma":
            w = np.full(shape, 0.1)       # ConvNeXt gamma
        elif "embed" in name:
            w = rng.standard_normal(shape)
        else:                             # Linear (out,in) / Conv (out,k,in)
            fan_in = int(np.prod(shape[1:]))
            w = rng.standard_normal(shape) / math.sqrt(fan_in)
        out[name] = w.astype(np.float32)
    return out


def _wire_length_head(w: dict[str, np.ndarray], config: dict, tok_ids: dict) -> None:
    """Hand-set a few talker weights so the codec EOS fires after ~n+4 frames."""
    t = config["talker_config"]
    n_layers, d = t["num_hidden_layers"], HIDDEN
    sqrt_d = math.sqrt(d)
    specials = {tok_ids[s] for s in SPECIAL_TOKENS}

    # text indicator lives in text-embedding column IND_CH
    te = w["talker.model.text_embedding.weight"]
    ind = np.ones(te.shape[0], np.float32)
    ind[list(specials)] = 0.0
    ind[tok_ids["<tts_text_bos>"]] = SPECIAL_IND
    ind[tok_ids["<tts_text_eod>"]] = SPECIAL_IND
    ind[tok_ids["__vocab_size__"]:] = 0.0
    te[:, IND_CH] = ind
    # text_projection (ResizeMLP): residual ch0 = B, ch1 = indicator, ch2 = 0
    fc1, b1 = w["talker.text_projection.linear_fc1.weight"], w["talker.text_projection.linear_fc1.bias"]
    fc2, b2 = w["talker.text_projection.linear_fc2.weight"], w["talker.text_projection.linear_fc2.bias"]
    fc1[IND_CH, :] = 0.0
    fc1[IND_CH, IND_CH] = SILU_GAIN
    b1[IND_CH] = 0.0
    fc1[[i for i in range(fc1.shape[0]) if i != IND_CH], IND_CH] = 0.0
    fc2[[BIAS_CH, IND_CH, MEAN_CH], :] = 0.0
    fc2[IND_CH, IND_CH] = 1.0 / SILU_GAIN
    b2[:] = 0.0
    b2[BIAS_CH] = B
    # codec embeddings never touch the reserved channels
    w["talker.model.codec_embedding.weight"][:, :3] = 0.0
    for g in range(NUM_CODE_GROUPS - 1):
        w[f"talker.code_predictor.model.codec_embedding.{g}.weight"][:, :3] = 0.0
    # no layer writes the reserved channels ...
    for l in range(n_layers):
        p = f"talker.model.layers.{l}."
        w[p + "self_attn.o_proj.weight"][:3, :] = 0.0
        w[p + "mlp.down_proj.weight"][:3, :] = 0.0
    # ... except layer 0 / head 0: uniform causal attention (q=0) averaging the
    # indicator into ch2:  m = sum(indicator) / positions_so_far
    p = "talker.model.layers.0.self_attn."
    w[p + "q_proj.weight"][:HEAD_DIM, :] = 0.0
    w[p + "v_proj.weight"][0, :] = 0.0
    w[p + "v_proj.weight"][0, IND_CH] = 1.0            # reads ind*sqrt(d)/B after RMSNorm
    w[p + "o_proj.weight"][MEAN_CH, 0] = B / sqrt_d    # back to units of the indicator
    # final norm: h0 ~= 1, h1 = 0, h2 ~= m
    g = w["talker.model.norm.weight"]
    g[BIAS_CH], g[IND_CH], g[MEAN_CH] = 1.0 / sqrt_d, 0.0, B / sqrt_d
    # codec head: random for codes, EOS logit = K*(THETA - m), other specials 0
    head = w["talker.codec_head.weight"]
    head[:, :3] = 0.0
    head[CODEBOOK:, :] = 0.0
    head[0, :] = 0.0          # code 0 counts as "padding" when trimming audio length
    head[EOS, BIAS_CH] = K * THETA
    head[EOS, MEAN_CH] = -K


def _check_layout_survives_sanitize(weights, sanitize, label):
    import mlx.core as mx
    arrs = {k: mx.array(v) for k, v in weights.items()}
    out = sanitize(dict(arrs))
    for k, v in arrs.items():
        assert k in out and tuple(out[k].shape) == tuple(v.shape), (
            f"{label}: {k} {v.shape} -> {None if k not in out else out[k].shape}")


def _save(weights: dict[str, np.ndarray], path: Path) -> None:
    from safetensors.numpy import save_file
    save_file({k: weights[k] for k in sorted(weights)}, str(path),
              metadata={"format": "mlx"})
    path.chmod(0o644)  # safetensors writes 0600


def make_tiny_tts(out_dir: Path, seed: int = 0) -> Path:
    out_dir = Path(out_dir).expanduser().resolve()
    (out_dir / "speech_tokenizer").mkdir(parents=True, exist_ok=True)

    tok_ids = build_tokenizer(out_dir)
    config, speech_cfg = build_configs(tok_ids)
    (out_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (out_dir / "speech_tokenizer" / "config.json").write_text(
        json.dumps(speech_cfg, indent=2) + "\n")
    (out_dir / "generation_config.json").write_text(json.dumps({
        "do_sample": True, "temperature": 0.9, "top_k": 50, "top_p": 1.0,
        "repetition_penalty": 1.05, "max_new_tokens": 256}, indent=2) + "\n")

    # Parameter names/shapes come from mlx_audio's own modules (no weights loaded).
    from mlx.utils import tree_flatten
    from mlx_audio.tts.models.qwen3_tts.config import (
        ModelConfig, Qwen3TTSTokenizerConfig, Qwen3TTSTokenizerDecoderConfig)
    from mlx_audio.tts.models.qwen3_tts.qwen3_tts import Model
    from mlx_audio.tts.models.qwen3_tts.speech_tokenizer import Qwen3TTSSpeechTokenizer

    rng = np.random.default_rng(seed)
    model = Model(ModelConfig.from_dict(config))
    shapes = {k: tuple(v.shape) for k, v in tree_flatten(model.parameters())}
    weights = _random_fill(shapes, rng)
    _wire_length_head(weights, config, tok_ids)
    _check_layout_survives_sanitize(weights, Model.sanitize, "model")
    _save(weights, out_dir / "model.safetensors")

    st_cfg = Qwen3TTSTokenizerConfig(
        decoder_config=Qwen3TTSTokenizerDecoderConfig(**speech_cfg["decoder_config"]))
    st = Qwen3TTSSpeechTokenizer(st_cfg)
    st_shapes = {k: tuple(v.shape) for k, v in tree_flatten(st.parameters())}
    st_weights = _random_fill(st_shapes, rng)
    # keep the waveform in a sane range (decoder output is clipped to [-1, 1])
    st_weights["decoder.decoder.2.conv.weight"] *= 0.5
    _check_layout_survives_sanitize(st_weights, Qwen3TTSSpeechTokenizer.sanitize,
                                    "speech_tokenizer")
    _save(st_weights, out_dir / "speech_tokenizer" / "model.safetensors")
    return out_dir


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: make_tiny_tts.py OUT_DIR [SEED]")
    d = make_tiny_tts(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 0)
    print(d)
