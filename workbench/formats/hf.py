"""Hugging Face model directories (config.json + *.safetensors), served under GGUF names.

Contract: `HFDirectory.open(path)` reads `config.json`, finds the weights
(`model.safetensors`, a sharded `model.safetensors.index.json`, or every `*.safetensors`
file), dispatches on `model_type` (gpt2, llama, gemma3, gemma3_text) and maps each HF
tensor name to its GGUF name with one explicit table per architecture. Tensors the
model does not use (a vision tower, GPT-2's causal-mask buffers) are left unread.
`tensor(name)` then serves a `Tensor` exactly as `GGUFWeights` would: F32/F16/BF16
weights go to the float kernels as stored (zero-copy) unless a format quirk must be
fixed, each in one place below:

- Llama Q/K rows are permuted from HF's rotate-half order into GGUF's adjacent-pair
  rope order, as llama.cpp's converter does, so one rope serves both files.
- Gemma norms compute x * (1 + w): the 1 is added here (the GGUF converter adds it too).
- GPT-2's Conv1D weights are stored (in, out): transposed here to (out, in).

It does not build the model config (`ModelConfig.from_hf`) or the tokenizer
(`formats.hf_tokenizer`), and it never downloads: see `catalog.resolve`.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import numpy as np

from workbench.errors import FormatError, UnsupportedError
from workbench.formats.files import require_regular
from workbench.formats.safetensors_file import SafetensorsFile
from workbench.formats.weights import Tensor, WeightSource

_FMT_OF_DTYPE = {"F32": "f32", "F16": "f16", "BF16": "bf16"}

# HF name (prefix stripped, {i} = layer) -> GGUF name, per architecture.
_LLAMA = {
    "embed_tokens.weight": "token_embd.weight",
    "norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
    "layers.{i}.input_layernorm.weight": "blk.{i}.attn_norm.weight",
    "layers.{i}.self_attn.q_proj.weight": "blk.{i}.attn_q.weight",
    "layers.{i}.self_attn.k_proj.weight": "blk.{i}.attn_k.weight",
    "layers.{i}.self_attn.v_proj.weight": "blk.{i}.attn_v.weight",
    "layers.{i}.self_attn.o_proj.weight": "blk.{i}.attn_output.weight",
    "layers.{i}.post_attention_layernorm.weight": "blk.{i}.ffn_norm.weight",
    "layers.{i}.mlp.gate_proj.weight": "blk.{i}.ffn_gate.weight",
    "layers.{i}.mlp.up_proj.weight": "blk.{i}.ffn_up.weight",
    "layers.{i}.mlp.down_proj.weight": "blk.{i}.ffn_down.weight",
}
_GEMMA3 = {
    "embed_tokens.weight": "token_embd.weight",
    "norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
    "layers.{i}.input_layernorm.weight": "blk.{i}.attn_norm.weight",
    "layers.{i}.self_attn.q_proj.weight": "blk.{i}.attn_q.weight",
    "layers.{i}.self_attn.k_proj.weight": "blk.{i}.attn_k.weight",
    "layers.{i}.self_attn.v_proj.weight": "blk.{i}.attn_v.weight",
    "layers.{i}.self_attn.q_norm.weight": "blk.{i}.attn_q_norm.weight",
    "layers.{i}.self_attn.k_norm.weight": "blk.{i}.attn_k_norm.weight",
    "layers.{i}.self_attn.o_proj.weight": "blk.{i}.attn_output.weight",
    "layers.{i}.post_attention_layernorm.weight": "blk.{i}.post_attention_norm.weight",
    "layers.{i}.pre_feedforward_layernorm.weight": "blk.{i}.ffn_norm.weight",
    "layers.{i}.mlp.gate_proj.weight": "blk.{i}.ffn_gate.weight",
    "layers.{i}.mlp.up_proj.weight": "blk.{i}.ffn_up.weight",
    "layers.{i}.mlp.down_proj.weight": "blk.{i}.ffn_down.weight",
    "layers.{i}.post_feedforward_layernorm.weight": "blk.{i}.post_ffw_norm.weight",
}
_GPT2 = {
    "wte.weight": "token_embd.weight",
    "wpe.weight": "position_embd.weight",
    "ln_f.weight": "output_norm.weight",
    "ln_f.bias": "output_norm.bias",
    "lm_head.weight": "output.weight",
    "h.{i}.ln_1.weight": "blk.{i}.attn_norm.weight",
    "h.{i}.ln_1.bias": "blk.{i}.attn_norm.bias",
    "h.{i}.attn.c_attn.weight": "blk.{i}.attn_qkv.weight",
    "h.{i}.attn.c_attn.bias": "blk.{i}.attn_qkv.bias",
    "h.{i}.attn.c_proj.weight": "blk.{i}.attn_output.weight",
    "h.{i}.attn.c_proj.bias": "blk.{i}.attn_output.bias",
    "h.{i}.ln_2.weight": "blk.{i}.ffn_norm.weight",
    "h.{i}.ln_2.bias": "blk.{i}.ffn_norm.bias",
    "h.{i}.mlp.c_fc.weight": "blk.{i}.ffn_up.weight",
    "h.{i}.mlp.c_fc.bias": "blk.{i}.ffn_up.bias",
    "h.{i}.mlp.c_proj.weight": "blk.{i}.ffn_down.weight",
    "h.{i}.mlp.c_proj.bias": "blk.{i}.ffn_down.bias",
}
# model_type -> (name table, prefixes stripped from HF names, longest first)
ARCHITECTURES = {
    "llama": (_LLAMA, ("model.",)),
    "gemma3_text": (_GEMMA3, ("model.language_model.", "language_model.model.", "model.")),
    "gemma3": (_GEMMA3, ("model.language_model.", "language_model.model.", "model.")),
    "gpt2": (_GPT2, ("transformer.",)),
}
GGUF_ARCH = {"llama": "llama", "gemma3_text": "gemma3", "gemma3": "gemma3", "gpt2": "gpt2"}
_CONV1D = re.compile(r"blk\.\d+\.(attn_qkv|attn_output|ffn_up|ffn_down)\.weight$")


def _compile(table: dict[str, str]) -> list[tuple[re.Pattern, str]]:
    out = []
    for hf, gg in table.items():
        pattern = re.escape(hf).replace(r"\{i\}", r"(?P<i>\d+)")
        out.append((re.compile(pattern + "$"), gg))
    return out


def read_json(path: Path) -> dict:
    """A JSON object from `path`; FormatError naming the file otherwise (a FIFO or a
    device is refused before it is opened: reading one would block or never end)."""
    require_regular(path, "JSON file")
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FormatError(f"{path}: file is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FormatError(f"{path}: not a readable JSON file ({e})") from None
    except RecursionError:
        raise FormatError(f"{path}: JSON nested too deeply to be a config") from None
    if not isinstance(value, dict):
        raise FormatError(f"{path}: expected a JSON object, got {type(value).__name__}")
    return value


def is_hf_directory(path: str | os.PathLike) -> bool:
    return Path(path).is_dir() and (Path(path) / "config.json").is_file()


class HFDirectory(WeightSource):
    """An HF model directory's weights under GGUF names; `config` is config.json as a dict."""

    def __init__(self, path: Path, config: dict, shards: dict[str, SafetensorsFile],
                 mapping: dict[str, tuple[str, str]]):
        self.path, self.config, self.shards = path, config, shards
        self.model_type = config["model_type"]
        self.architecture = GGUF_ARCH[self.model_type]
        self._map = mapping  # GGUF name -> (shard file name, HF tensor name)
        self._names = frozenset(mapping)

    @classmethod
    def open(cls, path: str | os.PathLike) -> HFDirectory:
        path = Path(path)
        if not path.is_dir():
            raise FormatError(f"{path}: not a directory")
        config = read_json(path / "config.json")
        model_type = config.get("model_type")
        if model_type not in ARCHITECTURES:
            known = ", ".join(sorted(ARCHITECTURES))
            raise UnsupportedError(f"{path / 'config.json'}: model_type {model_type!r} is not supported "
                                   f"(supported: {known})")
        _check_heads(config, path / "config.json")
        shards = {f: SafetensorsFile.open(path / f) for f in _shard_files(path)}
        table, prefixes = ARCHITECTURES[model_type]
        patterns = _compile(table)
        mapping: dict[str, tuple[str, str]] = {}
        for fname, st in shards.items():
            for hf_name in st.tensors:
                gguf_name = _gguf_name(hf_name, patterns, prefixes)
                if gguf_name is None:
                    continue
                if gguf_name in mapping:
                    raise FormatError(f"{path}: tensor {hf_name!r} appears twice "
                                      f"(in {mapping[gguf_name][0]} and {fname})")
                mapping[gguf_name] = (fname, hf_name)
        if not mapping:
            raise FormatError(f"{path}: no {model_type} tensors found in {', '.join(shards)}")
        return cls(path, config, shards, mapping)

    @property
    def names(self) -> frozenset[str]:
        return self._names

    def tensor(self, name: str) -> Tensor:
        if name not in self._names:
            table, prefixes = ARCHITECTURES[self.model_type]
            hf = [k for k, v in table.items() if re.fullmatch(re.escape(v).replace(r"\{i\}", r"\d+"), name)]
            layer = re.match(r"blk\.(\d+)\.", name)
            hf = [h.replace("{i}", layer.group(1)) if layer else h for h in hf]
            hint = f" (HF name {prefixes[-1]}{hf[0]})" if hf else ""
            raise FormatError(f"{self.path}: tensor {name!r}{hint} is missing from {', '.join(self.shards)}")
        return self._load(name)

    @property
    def nbytes(self) -> int:
        return sum(self.shards[f].tensors[n].n_bytes for f, n in self._map.values())

    def _load(self, name: str) -> Tensor:
        fname, hf_name = self._map[name]
        st = self.shards[fname]
        info = st.tensor(hf_name)
        where = f"{self.path / fname}: tensor {hf_name!r}"
        fmt = _FMT_OF_DTYPE.get(info.dtype)
        if fmt is None:
            raise UnsupportedError(f"{where} is {info.dtype}; workbench reads F32, F16 and BF16")
        if not 1 <= len(info.shape) <= 2 or 0 in info.shape:
            raise FormatError(f"{where} has shape {list(info.shape)}, expected a vector or a matrix")
        a = st.array(hf_name)
        if self.model_type.startswith("gemma3") and name.endswith("norm.weight"):
            a = st.f32(hf_name) + np.float32(1.0)  # Gemma's x * (1 + w), as the GGUF converter stores it
            fmt = "f32"
        elif self.model_type == "llama" and name.endswith(("attn_q.weight", "attn_k.weight")):
            heads = self.config.get("num_attention_heads") if "attn_q" in name else \
                self.config.get("num_key_value_heads", self.config.get("num_attention_heads"))
            a = _permute_rope_rows(a, heads, where)
        elif self.model_type == "gpt2" and _CONV1D.search(name):
            a = np.ascontiguousarray(a.T)  # Conv1D keeps (in, out); kernels want (out, in)
        shape = tuple(int(n) for n in a.shape)
        data = np.ascontiguousarray(a).view(np.uint8).reshape(shape[0] if len(shape) == 2 else 1, -1)
        return Tensor(name, fmt, shape, data, f"{self.path / fname} ({hf_name!r})")

    def __repr__(self) -> str:
        return f"HFDirectory({str(self.path)!r}, model_type={self.model_type!r}, tensors={len(self._names)})"


# model_type -> (heads key, width key, its default heads, its default width), transformers' defaults
_HEADS = {"gpt2": ("n_head", "n_embd", 12, 768), "llama": ("num_attention_heads", "hidden_size", 32, 4096),
          "gemma3_text": ("num_attention_heads", "hidden_size", 8, 2304),
          "gemma3": ("num_attention_heads", "hidden_size", 8, 2304)}


def _check_heads(config: dict, where: Path) -> None:
    """The head counts split the model width: checked here because the config reader
    divides by them (a 0 there was a ZeroDivisionError, not a message)."""
    c = config.get("text_config") or config if config["model_type"] == "gemma3" else config
    if not isinstance(c, dict):
        raise FormatError(f"{where}: text_config must be an object")
    heads_key, width_key, heads_default, width_default = _HEADS[config["model_type"]]
    heads, width = c.get(heads_key, heads_default), c.get(width_key, width_default)
    kv = c.get("num_key_value_heads")
    kv = heads if kv is None else kv
    for key, v in ((heads_key, heads), (width_key, width), ("num_key_value_heads", kv)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0 or int(v) != v:
            raise FormatError(f"{where}: {key} must be a positive integer, got {v!r}")
    heads, width, kv = int(heads), int(width), int(kv)
    if c.get("head_dim") is None and width % heads:
        raise FormatError(f"{where}: {heads_key} {heads} does not divide {width_key} {width} (and no head_dim)")
    if heads % kv:
        raise FormatError(f"{where}: {heads_key} {heads} does not split into num_key_value_heads {kv}")


def _shard_files(path: Path) -> list[str]:
    index = path / "model.safetensors.index.json"
    if index.is_file():
        weight_map = read_json(index).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise FormatError(f"{index}: 'weight_map' must be a non-empty object")
        files = sorted(set(weight_map.values()))
        for f in files:
            if not isinstance(f, str) or "/" in f or "\\" in f or not (path / f).is_file():
                raise FormatError(f"{index}: shard {f!r} is missing from {path}")
        return files
    if (path / "model.safetensors").is_file():
        return ["model.safetensors"]
    files = sorted(p.name for p in path.glob("*.safetensors"))
    if not files:
        raise FormatError(f"{path}: no model.safetensors, model.safetensors.index.json or *.safetensors file")
    return files


def _gguf_name(hf_name: str, patterns, prefixes) -> str | None:
    for p in prefixes:
        if hf_name.startswith(p):
            hf_name = hf_name[len(p):]
            break
    for pattern, gguf in patterns:
        m = pattern.match(hf_name)
        if m:
            return gguf.replace("{i}", m.group("i")) if "{i}" in gguf else gguf
    return None


def _permute_rope_rows(a: np.ndarray, heads, where: str) -> np.ndarray:
    """HF's rotate-half row order -> GGUF's interleaved pairs, per head (llama.cpp's
    convert_hf_to_gguf `permute`): rows (h, 2, hd/2) become (h, hd/2, 2)."""
    if not isinstance(heads, int) or heads <= 0 or a.ndim != 2 or a.shape[0] % (2 * heads):
        raise FormatError(f"{where}: {a.shape[0]} rows do not split into {heads} rope heads")
    rows = a.shape[0]
    return np.ascontiguousarray(a.reshape(heads, 2, rows // heads // 2, a.shape[1]).swapaxes(1, 2).reshape(a.shape))


def unpermute_rope_rows(a: np.ndarray, heads: int) -> np.ndarray:
    """The inverse of `_permute_rope_rows`: GGUF's pairs back to HF's rotate-half order."""
    rows = a.shape[0]
    return np.ascontiguousarray(a.reshape(heads, rows // heads // 2, 2, *a.shape[1:]).swapaxes(1, 2).reshape(a.shape))
