"""The frozen description of a model's shape, built only by loaders.

`ModelConfig.from_gguf` reads the `{arch}.*` metadata keys of a GGUF file; derived
fields (head_dim, group size, rope dims) are computed here once, and the whole config is
checked for consistency so that model code can trust it. Runtime choices (threads,
quantization, fusion, tracing) are not here: see `workbench.engine.options`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from workbench.errors import FormatError, UnsupportedError
from workbench.models.config_checks import check_config


@dataclass(frozen=True)
class ModelConfig:
    arch: str
    n_layers: int
    d_model: int
    d_ff: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    vocab_size: int
    context_length: int
    norm_eps: float
    rope_base: float
    rope_dims: int
    tied_embeddings: bool
    # Gemma-style extras; the defaults describe a model without them (Llama).
    attn_scale: float = 0.0  # q is multiplied by this before q.k; from_gguf sets it (1/sqrt(head_dim))
    embed_scale: float = 1.0  # token embeddings are multiplied by this (Gemma: sqrt(d_model))
    sliding_window: int = 0  # keys a sliding layer sees, its own included; 0: no sliding layers
    swa_layers: tuple[bool, ...] = ()  # per layer, True where attention slides (empty: none)
    rope_base_local: float = 10000.0  # rope base of the sliding layers
    rope_freq_scale: float = 1.0  # linear rope scaling of the global layers: 1 / scaling factor
    final_logit_softcap: float = 0.0  # logits = c * tanh(logits / c) when > 0
    # GELU through ggml's table of half-rounded values, as llama.cpp's CPU backend (the
    # reference for GGUF files); HF directories are held to transformers, which computes
    # it exactly (the table alone moves Gemma's logits by ~6e-3)
    gelu_table: bool = True

    @property
    def group_size(self) -> int:
        """Query heads per KV head (grouped-query attention)."""
        return self.n_heads // self.n_kv_heads

    @classmethod
    def from_gguf(cls, gf) -> ModelConfig:
        """Read the architecture's hyperparameters from a parsed GGUF file."""
        arch = gf.get("general.architecture")
        p = f"{arch}."
        n_heads = int(gf.get(p + "attention.head_count"))
        d_model = int(gf.get(p + "embedding_length"))
        head_dim = int(gf.get(p + "attention.key_length", d_model // max(n_heads, 1)))
        tokens = gf.metadata.get("tokenizer.ggml.tokens")
        vocab = int(gf.get(p + "vocab_size", len(tokens) if tokens is not None else 0))
        n_layers = int(gf.get(p + "block_count"))
        extras = {"attn_scale": float(np.float32(1.0) / np.sqrt(np.float32(head_dim)))}
        if arch == "gemma3":
            extras |= _gemma3_extras(gf, p, n_layers, d_model, n_heads)
        cfg = cls(
            arch=arch,
            n_layers=n_layers,
            d_model=d_model,
            d_ff=int(gf.get(p + "feed_forward_length")),
            n_heads=n_heads,
            n_kv_heads=int(gf.get(p + "attention.head_count_kv", n_heads)),
            head_dim=head_dim,
            vocab_size=vocab,
            context_length=int(gf.get(p + "context_length")),
            norm_eps=float(gf.get(p + "attention.layer_norm_rms_epsilon")),
            rope_base=float(gf.get(p + "rope.freq_base", 10000.0)),
            rope_dims=int(gf.get(p + "rope.dimension_count", head_dim)),
            tied_embeddings="output.weight" not in gf.tensors,
            **extras,
        )
        cfg.check(str(gf.path))
        return cfg

    @classmethod
    def from_hf(cls, config: dict, source: str, has_output: bool) -> ModelConfig:
        """Read an HF `config.json` (as a dict). Missing keys take transformers' defaults for
        the model type, since `save_pretrained` leaves out values equal to them.
        `has_output`: whether the weights hold a separate lm_head."""
        model_type = config.get("model_type")
        reader = {"llama": _llama_hf, "gemma3": _gemma3_hf, "gemma3_text": _gemma3_hf, "gpt2": _gpt2_hf}.get(model_type)
        if reader is None:
            raise UnsupportedError(f"{source}: model_type {model_type!r} is not supported")
        try:
            fields = reader(config.get("text_config") or config if model_type == "gemma3" else config, source)
        except (TypeError, ValueError) as e:
            raise FormatError(f"{source}: malformed config value ({e})") from None
        cfg = cls(tied_embeddings=not has_output, **fields)
        cfg.check(source)
        return cfg

    def check(self, source: str) -> None:
        """Raise FormatError naming `source` if the hyperparameters cannot form a model."""
        positive = ("n_layers", "d_model", "d_ff", "n_heads", "n_kv_heads", "head_dim", "vocab_size", "context_length")
        for name in positive:
            if getattr(self, name) <= 0:
                raise FormatError(f"{source}: {name} must be positive, got {getattr(self, name)}")
        if self.n_heads % self.n_kv_heads:
            raise FormatError(f"{source}: {self.n_heads} heads do not split into {self.n_kv_heads} KV heads")
        if self.rope_dims > self.head_dim or self.rope_dims % 2:
            raise FormatError(f"{source}: rope dimension {self.rope_dims} does not fit head_dim {self.head_dim}")
        if not self.attn_scale > 0 or not self.rope_freq_scale > 0:
            raise FormatError(f"{source}: attention scale and rope frequency scale must be positive")
        if self.swa_layers and (len(self.swa_layers) != self.n_layers or self.sliding_window <= 0):
            raise FormatError(f"{source}: sliding-window pattern of {len(self.swa_layers)} layers "
                              f"(window {self.sliding_window}) does not fit {self.n_layers} layers")
        check_config(self, source)  # the float hyperparameters the kernels divide by or take powers of


def _gemma3_extras(gf, p: str, n_layers: int, d_model: int, n_heads: int) -> dict:
    """Gemma 3's hyperparameters as llama.cpp's loader derives them (LLM_ARCH_GEMMA3).

    The converter writes the window but not the layer pattern nor the local rope base:
    llama.cpp fills in period 6 (layers 5, 11, 17, ... global) and base 10000. Without a
    window every layer is global and llama.cpp's non-SWA graph soft-caps the logits."""
    window = int(gf.get(p + "attention.sliding_window", 0))
    pattern = gf.get(p + "attention.sliding_window_pattern", 6)
    if window <= 0:
        swa = ()
    elif isinstance(pattern, (list, tuple)):  # one flag per layer, True = sliding
        swa = tuple(bool(b) for b in pattern)
    else:  # period n: the last layer of every n is global (n = 0: all slide)
        n = int(pattern)
        swa = tuple(n == 0 or i % n < n - 1 for i in range(n_layers))
    # gemma_pytorch's query_pre_attn_scalar: d_model / n_heads for the 27B (62 layers),
    # head_dim for the others; llama.cpp picks it by layer count, as here.
    if n_layers == 62:
        attn_scale = float(np.float32(1.0) / np.sqrt(np.float32(d_model // n_heads)))
    else:
        attn_scale = float(np.float32(1.0) / np.sqrt(np.float32(int(gf.get(p + "attention.key_length")))))
    scaling, factor = gf.get(p + "rope.scaling.type", "none"), float(gf.get(p + "rope.scaling.factor", 0.0))
    if scaling not in ("none", "linear"):
        raise UnsupportedError(f"{gf.path}: gemma3 rope scaling {scaling!r} is not supported (only linear)")
    return {
        "attn_scale": attn_scale,
        "embed_scale": math.sqrt(d_model),  # float32(sqrt(d)) is what ggml's sqrtf gives
        "sliding_window": window if swa else 0,
        "swa_layers": swa,
        "rope_base_local": float(gf.get(p + "rope.freq_base_swa", 10000.0)),
        "rope_freq_scale": 1.0 / factor if factor > 0 else 1.0,
        "final_logit_softcap": 0.0 if swa else float(gf.get(p + "final_logit_softcapping", 30.0)),
    }


def _int(c: dict, key: str, default=None) -> int:
    v = c.get(key, default)
    if v is None or isinstance(v, bool) or not isinstance(v, (int, float)) or int(v) != v:
        raise ValueError(f"{key} must be an integer, got {v!r}")
    return int(v)


def _rope_theta(c: dict, default: float, layer_type: str = "full_attention") -> float:
    """rope base from transformers 4 (`rope_theta`) or 5 (`rope_parameters`) configs."""
    params = c.get("rope_parameters")
    if isinstance(params, dict):
        if layer_type in params and isinstance(params[layer_type], dict):
            params = params[layer_type]
        if "rope_theta" in params:
            return float(params["rope_theta"])
    return float(c.get("rope_theta", default))


def _rope_scaling(c: dict, source: str, layer_type: str = "full_attention") -> float:
    """The linear rope factor (1 when unscaled); other scalings are not implemented."""
    scaling = c.get("rope_scaling")
    params = c.get("rope_parameters")
    if isinstance(params, dict):
        scaling = params.get(layer_type, params) if isinstance(params.get(layer_type), dict) else params
    if not isinstance(scaling, dict):
        return 1.0
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    if kind == "default":
        return 1.0
    if kind == "linear":
        return float(scaling.get("factor", 1.0))
    raise UnsupportedError(f"{source}: rope scaling {kind!r} is not supported (only linear)")


def _llama_hf(c: dict, source: str) -> dict:
    d, heads = _int(c, "hidden_size", 4096), _int(c, "num_attention_heads", 32)
    head_dim = _int(c, "head_dim", d // heads) if c.get("head_dim") is not None else d // heads
    if _rope_scaling(c, source) != 1.0:
        raise UnsupportedError(f"{source}: llama rope scaling is not supported")
    return dict(
        arch="llama", n_layers=_int(c, "num_hidden_layers", 32), d_model=d, d_ff=_int(c, "intermediate_size", 11008),
        n_heads=heads, n_kv_heads=_int(c, "num_key_value_heads", heads) if c.get("num_key_value_heads") else heads,
        head_dim=head_dim, vocab_size=_int(c, "vocab_size", 32000),
        context_length=_int(c, "max_position_embeddings", 2048), norm_eps=float(c.get("rms_norm_eps", 1e-6)),
        rope_base=_rope_theta(c, 10000.0), rope_dims=head_dim,
        attn_scale=float(np.float32(1.0) / np.sqrt(np.float32(head_dim))),
    )


def _gemma3_hf(c: dict, source: str) -> dict:
    """transformers' Gemma3TextConfig defaults; layer types from `layer_types` (v5) or
    `sliding_window_pattern` (v4: every n-th layer global)."""
    n_layers, d = _int(c, "num_hidden_layers", 26), _int(c, "hidden_size", 2304)
    heads, head_dim = _int(c, "num_attention_heads", 8), _int(c, "head_dim", 256)
    window = _int(c, "sliding_window", 4096)
    if isinstance(c.get("layer_types"), list):
        swa = tuple(t == "sliding_attention" for t in c["layer_types"])
    else:
        n = _int(c, "sliding_window_pattern", 6)
        swa = tuple(n == 0 or (i + 1) % n != 0 for i in range(n_layers))
    softcap = c.get("final_logit_softcapping")
    factor = _rope_scaling(c, source)
    return dict(
        arch="gemma3", n_layers=n_layers, d_model=d, d_ff=_int(c, "intermediate_size", 9216),
        n_heads=heads, n_kv_heads=_int(c, "num_key_value_heads", 4), head_dim=head_dim,
        vocab_size=_int(c, "vocab_size", 262208), context_length=_int(c, "max_position_embeddings", 131072),
        norm_eps=float(c.get("rms_norm_eps", 1e-6)), rope_base=_rope_theta(c, 1_000_000.0), rope_dims=head_dim,
        attn_scale=float(np.float32(1.0) / np.sqrt(np.float32(float(c.get("query_pre_attn_scalar", 256))))),
        embed_scale=math.sqrt(d), sliding_window=window if any(swa) else 0, swa_layers=swa if any(swa) else (),
        rope_base_local=float(c.get("rope_local_base_freq", _rope_theta(c, 10000.0, "sliding_attention"))),
        rope_freq_scale=1.0 / factor, final_logit_softcap=float(softcap) if softcap else 0.0, gelu_table=False,
    )


def _gpt2_hf(c: dict, source: str) -> dict:
    """GPT-2: learned positions (no rope), LayerNorm, d_ff = n_inner or 4 * n_embd."""
    d, heads = _int(c, "n_embd", 768), _int(c, "n_head", 12)
    if c.get("activation_function", "gelu_new") not in ("gelu_new", "gelu_pytorch_tanh"):
        raise UnsupportedError(f"{source}: GPT-2 activation {c['activation_function']!r} is not supported "
                               "(only the tanh GELU, gelu_new)")
    return dict(
        arch="gpt2", n_layers=_int(c, "n_layer", 12), d_model=d,
        d_ff=_int(c, "n_inner") if c.get("n_inner") is not None else 4 * d,
        n_heads=heads, n_kv_heads=heads, head_dim=d // heads, vocab_size=_int(c, "vocab_size", 50257),
        context_length=_int(c, "n_positions", 1024), norm_eps=float(c.get("layer_norm_epsilon", 1e-5)),
        rope_base=0.0, rope_dims=0, attn_scale=float(np.float32(1.0) / np.sqrt(np.float32(d // heads))),
    )
