"""GGUF -> a Hugging Face model directory in float32, readable by transformers and by us.

Contract: `write_hf(gf, out, progress)` fills the existing empty directory `out` with

- `config.json`: a complete transformers config (model_type `llama` or `gemma3_text`)
  derived from `ModelConfig.from_gguf`, so that `ModelConfig.from_hf` of it gives the
  same model (floats are written as the shortest decimal of their float32 value: 1e-05,
  not 9.999999747378752e-06). Gemma's carries both transformers 4 keys (`rope_theta`,
  `rope_local_base_freq`, `sliding_window_pattern`) and 5 keys (`rope_parameters`,
  `layer_types`);
- `model.safetensors`: every tensor dequantized to F32 (`dequantize_ref`) under its HF
  name (the inverse of the tables in `formats.hf`), with the quirks `formats.hf` fixes
  undone: Llama's Q/K rows go back to HF's rotate-half order (`unpermute_rope_rows`),
  Gemma's norms are stored as w where the GGUF holds 1 + w. Reading the directory back
  with `HFDirectory` gives the GGUF's values bit for bit, except a Gemma norm value v
  below 0.5 whose float32 v - 1 rounds (none in Gemma 3 270M);
- `tokenizer.json` (`Tokenizer.to_hf_json`), `tokenizer_config.json` (special tokens,
  add_bos/add_eos, the chat template: the file's own, else the built-in Gemma one for
  Gemma) and `generation_config.json`, whose `eos_token_id` lists every token llama.cpp
  stops at, EOS first, so that generation stops where it does on the GGUF.

Memory: `safetensors.numpy.save_file` takes all tensors at once, so a conversion holds
the whole F32 model (about twice, while serializing): ~2.2 GB for Gemma 3 270M.

It does not write GPT-2 or any architecture without a name table in `formats.hf`, nor
tensors it cannot name (refused, so nothing is silently lost).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file
from tqdm.auto import tqdm

from workbench.errors import UnsupportedError
from workbench.formats.chat import BUILTIN_TEMPLATES
from workbench.formats.gguf import GGUFFile
from workbench.formats.hf import ARCHITECTURES, unpermute_rope_rows
from workbench.formats.tokenizer import Tokenizer
from workbench.models.config import ModelConfig
from workbench.quant.reference import dequantize_ref

# GGUF architecture -> (HF model_type, HF class, HF name -> GGUF name table of formats.hf)
_ARCHS = {
    "llama": ("llama", "LlamaForCausalLM", ARCHITECTURES["llama"][0]),
    "gemma3": ("gemma3_text", "Gemma3ForCausalLM", ARCHITECTURES["gemma3_text"][0]),
}


def write_hf(gf: GGUFFile, out: Path, progress: bool) -> Counter:
    """Write the HF directory for `gf` into `out`; the output formats counted (all F32)."""
    arch = gf.architecture
    if arch not in _ARCHS:
        raise UnsupportedError(f"{gf.path}: converting architecture {arch!r} to an HF directory is not supported "
                               f"(supported: {', '.join(_ARCHS)})")
    model_type, hf_class, table = _ARCHS[arch]
    cfg = ModelConfig.from_gguf(gf)
    tok = Tokenizer.from_gguf(gf)
    names = hf_names(table, cfg.n_layers)
    unknown = [n for n in gf.tensors if n not in names]
    if unknown:
        raise UnsupportedError(f"{gf.path}: tensors {', '.join(unknown[:5])} have no {model_type} name in "
                               "transformers, so the HF directory would lose them")
    config = {"architectures": [hf_class], "model_type": model_type}
    config |= (_llama_config if arch == "llama" else _gemma3_config)(cfg, gf) | _special_ids(tok)

    tensors = {}
    for name in tqdm(gf.tensors, unit="tensor", desc="to HF F32", disable=None if progress else True, leave=False):
        info = gf.tensors[name]
        x = dequantize_ref(info.type_name.lower(), gf.raw(name)).reshape(info.numpy_shape)
        if arch == "llama" and name.endswith(("attn_q.weight", "attn_k.weight")):
            x = unpermute_rope_rows(x, cfg.n_heads if "attn_q" in name else cfg.n_kv_heads)
        elif arch == "gemma3" and name.endswith("norm.weight"):
            x = x - np.float32(1.0)  # the GGUF holds Gemma's 1 + w; HF holds w
        tensors[names[name]] = np.ascontiguousarray(x, dtype=np.float32)
    save_file(tensors, out / "model.safetensors", metadata={"format": "pt"})
    del tensors
    os.chmod(out / "model.safetensors", 0o644)  # safetensors creates it 0600, unlike every other file here

    _write_json(out / "config.json", config)
    (out / "tokenizer.json").write_text(tok.to_hf_json(), encoding="utf-8")
    _write_json(out / "tokenizer_config.json", _tokenizer_config(tok, arch, cfg))
    _write_json(out / "generation_config.json", _generation_config(tok))
    return Counter({"f32": len(gf.tensors)})


def hf_names(table: dict[str, str], n_layers: int) -> dict[str, str]:
    """GGUF name -> the HF name transformers' *ForCausalLM gives it ("model." prefixed)."""
    out = {}
    for hf, gg in table.items():
        prefix = "" if hf.startswith("lm_head") else "model."
        for i in range(n_layers) if "{i}" in gg else [None]:
            out[gg.replace("{i}", str(i))] = prefix + hf.replace("{i}", str(i))
    return out


def _f32(v: float) -> float:
    """The shortest decimal that is the same float32: 1e-05 for float32(1e-05)."""
    return float(str(np.float32(v)))


def _common(cfg: ModelConfig) -> dict:
    return {
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.d_model,
        "intermediate_size": cfg.d_ff,
        "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.n_kv_heads,
        "head_dim": cfg.head_dim,
        "max_position_embeddings": cfg.context_length,
        "rms_norm_eps": _f32(cfg.norm_eps),
        "tie_word_embeddings": cfg.tied_embeddings,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "initializer_range": 0.02,
        "use_cache": True,
        "dtype": "float32",  # transformers 5
        "torch_dtype": "float32",  # transformers 4
    }


def _llama_config(cfg: ModelConfig, gf: GGUFFile) -> dict:
    if cfg.rope_dims != cfg.head_dim:
        raise UnsupportedError(f"{gf.path}: rope over {cfg.rope_dims} of {cfg.head_dim} head dims has no "
                               "transformers llama equivalent")
    if gf.get("llama.rope.scaling.type", "none") != "none":
        raise UnsupportedError(f"{gf.path}: llama rope scaling {gf.get('llama.rope.scaling.type')!r} is not "
                               "supported by workbench")
    theta = _f32(cfg.rope_base)
    return _common(cfg) | {
        "hidden_act": "silu",
        "mlp_bias": False,
        "pretraining_tp": 1,
        "rope_theta": theta,  # transformers 4
        "rope_scaling": None,
        "rope_parameters": {"rope_type": "default", "rope_theta": theta},  # transformers 5
    }


def _gemma3_config(cfg: ModelConfig, gf: GGUFFile) -> dict:
    swa = cfg.swa_layers or (False,) * cfg.n_layers
    global_theta, local_theta = _f32(cfg.rope_base), _f32(cfg.rope_base_local)
    full = {"rope_type": "default", "rope_theta": global_theta}
    scaling = None
    if cfg.rope_freq_scale != 1.0:
        scaling = {"rope_type": "linear", "factor": _f32(1.0 / cfg.rope_freq_scale)}
        full = scaling | {"rope_theta": global_theta}
    # query_pre_attn_scalar as ModelConfig.from_gguf reads it (llama.cpp's rule by layer count)
    scalar = cfg.d_model // cfg.n_heads if cfg.n_layers == 62 else cfg.head_dim
    config = _common(cfg) | {
        "hidden_activation": "gelu_pytorch_tanh",
        "query_pre_attn_scalar": scalar,
        "sliding_window": cfg.sliding_window or int(gf.get("gemma3.attention.sliding_window", 0)) or 4096,
        "layer_types": ["sliding_attention" if s else "full_attention" for s in swa],
        "final_logit_softcapping": _f32(cfg.final_logit_softcap) if cfg.final_logit_softcap else None,
        "attn_logit_softcapping": None,
        "use_bidirectional_attention": False,
        "rope_theta": global_theta,  # transformers 4
        "rope_local_base_freq": local_theta,  # transformers 4
        "rope_scaling": scaling,
        "rope_parameters": {  # transformers 5
            "full_attention": full,
            "sliding_attention": {"rope_type": "default", "rope_theta": local_theta},
        },
    }
    period = _period(swa)
    if period is not None:  # transformers 4 before layer_types
        config["sliding_window_pattern"] = period
    return config


def _period(swa: tuple[bool, ...]) -> int | None:
    """n such that exactly every n-th layer is global, if the layers follow one."""
    for n in range(1, len(swa) + 1):
        if all(s == ((i + 1) % n != 0) for i, s in enumerate(swa)):
            return n
    return None


def _special_ids(tok: Tokenizer) -> dict:
    return {"bos_token_id": tok.bos_id, "eos_token_id": tok.eos_id, "pad_token_id": tok.pad_id}


def _tokenizer_config(tok: Tokenizer, arch: str, cfg: ModelConfig) -> dict:
    config = {"tokenizer_class": "PreTrainedTokenizerFast"}
    for key, token_id in (("bos_token", tok.bos_id), ("eos_token", tok.eos_id), ("unk_token", tok.unk_id),
                          ("pad_token", tok.pad_id)):
        if token_id is not None:
            config[key] = tok.tokens[token_id]
    template = tok.chat_template or (BUILTIN_TEMPLATES["gemma"] if arch == "gemma3" else None)
    config |= {
        "add_bos_token": tok.add_bos,
        "add_eos_token": tok.add_eos,
        "clean_up_tokenization_spaces": tok.clean_spaces,
        "model_max_length": cfg.context_length,
    }
    if template is not None:
        config["chat_template"] = template
    return config


def _generation_config(tok: Tokenizer) -> dict:
    others = sorted(tok.stop_ids - {tok.eos_id})
    eos = [i for i in (tok.eos_id, *others) if i is not None] if others else tok.eos_id
    return {"bos_token_id": tok.bos_id, "eos_token_id": eos, "pad_token_id": tok.pad_id}


def _write_json(path: Path, value: dict) -> None:
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
