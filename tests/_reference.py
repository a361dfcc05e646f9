"""A naive numpy forward of Llama, Gemma 3 and GPT-2: the tests' reference for the models.

`reference_logits(source, token_ids)` -> float64 (T, vocab): the logits at every position
of one causal forward over `token_ids` from an empty cache, the whole sequence at once,
with no KV cache, no fusion, no quantized activations and no numba. Written to be read
next to the architecture's paper or llama.cpp graph, not to be fast (a few seconds for a
short prompt on the 270M model).

Independence from the code under test: it reads the weights by their GGUF names through
the format readers only (`GGUFWeights` / `HFDirectory`, then `workbench.quant`'s numpy
`dequantize_ref`) and the hyperparameters through `config_of`; it never touches
`workbench.models`' layer classes, `workbench.nn` or `workbench.kernels`. The readers
already fix each file-format quirk, so the weights seen here are the ones the models see:
- HF Llama Q/K rows arrive permuted into GGUF's adjacent-pair rope order (`formats.hf`,
  as llama.cpp's converter does): Llama ropes pairs (2i, 2i+1) for both file kinds;
- Gemma norm weights arrive as 1 + w (`formats.hf`, and the GGUF converter stores them so):
  every Gemma norm here is a plain x / rms(x) * w;
- GPT-2 Conv1D weights arrive transposed to (out, in) (`formats.hf`), like every matrix.

Deliberate differences from llama.cpp, which a comparing test must budget for: float64
throughout; exact rope angles (ggml builds them in float32 by repeated products); the
exact tanh GELU (ggml's CPU backend looks Gemma's up in a half-precision table, which
`ModelConfig.gelu_table` copies for GGUF files: ~6e-3 of logit); no rounding of the KV
cache to f16 and no quantization of activations before quantized products.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from workbench.formats.gguf import GGUFFile
from workbench.formats.hf import HFDirectory, is_hf_directory
from workbench.formats.weights import GGUFWeights
from workbench.models import config_of
from workbench.quant import dequantize_ref

_LM_HEAD_ROWS = 16384  # vocabulary rows made float64 at a time (Gemma's table is 262144 x 640)


def open_source(source) -> tuple[object, object]:
    """(weights by GGUF name, ModelConfig) of a GGUF file or HF directory path, or of an
    already parsed `GGUFFile` / `HFDirectory`."""
    if isinstance(source, (str, os.PathLike)):
        source = HFDirectory.open(source) if is_hf_directory(source) else GGUFFile.open(Path(source))
    weights = source if isinstance(source, HFDirectory) else GGUFWeights(source)
    return weights, config_of(source)


def load32(weights, name: str) -> np.ndarray:
    """Tensor `name` as float32 in numpy shape, whatever its block format (float ones
    through the reader's `Tensor.f32`, a view of the file for F32: no 1 GB copies)."""
    t = weights.tensor(name)
    if t.fmt in ("f32", "f16", "bf16"):
        return t.f32()
    return dequantize_ref(t.fmt, t.data).reshape(t.shape)


def load64(weights, name: str) -> np.ndarray:
    return load32(weights, name).astype(np.float64)


# --- building blocks, x (T, n) ---------------------------------------------------------


def linear(x, w):
    """x (T, n) @ w (m, n).T -> (T, m). einsum, not `@`: numpy's BLAS would start threads
    that spin against numba's on the two shared cores (6x slower when they are busy)."""
    return np.einsum("tn,mn->tm", x, w)


def rmsnorm(x, w, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def layernorm(x, w, b, eps):
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w + b


def gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)))


def silu(x):
    return x / (1.0 + np.exp(-x))


def rope(x, base, n_rot, neox):
    """Rotate x (T, heads, head_dim) for positions 0..T-1 over its first n_rot dims.
    Pair i turns by pos * base**(-2i/n_rot). Its two elements are (2i, 2i+1) in GGUF's
    Llama order, (i, i + n_rot/2) in NEOX order (Gemma)."""
    T, half = x.shape[0], n_rot // 2
    angle = np.arange(T)[:, None] * base ** (-2.0 * np.arange(half) / n_rot)  # (T, half)
    cos, sin = np.cos(angle)[:, None, :], np.sin(angle)[:, None, :]  # broadcast over heads
    out = x.copy()
    if neox:
        a, b = x[..., :half], x[..., half:n_rot]
        out[..., :half], out[..., half:n_rot] = a * cos - b * sin, a * sin + b * cos
    else:
        a, b = x[..., 0:n_rot:2], x[..., 1:n_rot:2]
        out[..., 0:n_rot:2], out[..., 1:n_rot:2] = a * cos - b * sin, a * sin + b * cos
    return out


def attention(q, k, v, scale, window=0):
    """Causal attention. q (T, H, hd), k and v (T, Hkv, hd); query head h reads KV head
    h // (H / Hkv). window > 0: position p sees keys p - window + 1 .. p (its own
    included), as llama.cpp's and transformers' sliding masks. -> (T, H * hd)."""
    T, H, hd = q.shape
    group = H // k.shape[1]
    pos = np.arange(T)
    visible = pos[None, :] <= pos[:, None]  # (query, key)
    if window > 0:
        visible &= pos[None, :] > pos[:, None] - window
    out = np.empty((T, H, hd))
    for h in range(H):
        scores = np.where(visible, linear(q[:, h], k[:, h // group]) * scale, -np.inf)  # (query, key)
        p = np.exp(scores - scores.max(axis=1, keepdims=True))
        out[:, h] = np.einsum("qk,kd->qd", p / p.sum(axis=1, keepdims=True), v[:, h // group])
    return out.reshape(T, H * hd)


def lm_head(x, table32):
    """x (T, d) @ table (vocab, d).T in float64, a slice of the table at a time."""
    return np.concatenate([linear(x, table32[i : i + _LM_HEAD_ROWS].astype(np.float64))
                           for i in range(0, table32.shape[0], _LM_HEAD_ROWS)], axis=1)


# --- the three architectures ----------------------------------------------------------


def _llama(w, cfg, ids):
    H, Hkv, hd, eps = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, cfg.norm_eps
    T = len(ids)
    embd = load32(w, "token_embd.weight")
    x = embd[ids].astype(np.float64)
    for i in range(cfg.n_layers):
        W = lambda name: load64(w, f"blk.{i}.{name}.weight")  # noqa: E731
        xn = rmsnorm(x, W("attn_norm"), eps)
        q = linear(xn, W("attn_q")).reshape(T, H, hd)
        k = linear(xn, W("attn_k")).reshape(T, Hkv, hd)
        v = linear(xn, W("attn_v")).reshape(T, Hkv, hd)
        q, k = rope(q, cfg.rope_base, cfg.rope_dims, neox=False), rope(k, cfg.rope_base, cfg.rope_dims, neox=False)
        x = x + linear(attention(q, k, v, 1.0 / np.sqrt(hd)), W("attn_output"))
        xn = rmsnorm(x, W("ffn_norm"), eps)
        x = x + linear(silu(linear(xn, W("ffn_gate"))) * linear(xn, W("ffn_up")), W("ffn_down"))
    x = rmsnorm(x, load64(w, "output_norm.weight"), eps)
    return lm_head(x, embd if cfg.tied_embeddings else load32(w, "output.weight"))


def _gemma3(w, cfg, ids):
    assert cfg.rope_freq_scale == 1.0, "rope scaling is not in the reference"
    H, Hkv, hd, eps = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, cfg.norm_eps
    T = len(ids)
    embd = load32(w, "token_embd.weight")
    x = embd[ids].astype(np.float64) * np.sqrt(cfg.d_model)
    for i in range(cfg.n_layers):
        W = lambda name: load64(w, f"blk.{i}.{name}.weight")  # noqa: E731
        sliding = bool(cfg.swa_layers) and cfg.swa_layers[i]  # every 6th layer is global in Gemma 3
        base = cfg.rope_base_local if sliding else cfg.rope_base
        xn = rmsnorm(x, W("attn_norm"), eps)
        q = rmsnorm(linear(xn, W("attn_q")).reshape(T, H, hd), W("attn_q_norm"), eps)  # QK-norm, per head
        k = rmsnorm(linear(xn, W("attn_k")).reshape(T, Hkv, hd), W("attn_k_norm"), eps)
        v = linear(xn, W("attn_v")).reshape(T, Hkv, hd)
        q, k = rope(q, base, cfg.rope_dims, neox=True), rope(k, base, cfg.rope_dims, neox=True)
        # attn_scale is 1/sqrt(query_pre_attn_scalar), head_dim for all but the 27B
        att = attention(q, k, v, cfg.attn_scale, cfg.sliding_window if sliding else 0)
        x = x + rmsnorm(linear(att, W("attn_output")), W("post_attention_norm"), eps)
        xn = rmsnorm(x, W("ffn_norm"), eps)
        hidden = gelu_tanh(linear(xn, W("ffn_gate"))) * linear(xn, W("ffn_up"))
        x = x + rmsnorm(linear(hidden, W("ffn_down")), W("post_ffw_norm"), eps)
    x = rmsnorm(x, load64(w, "output_norm.weight"), eps)
    logits = lm_head(x, embd if cfg.tied_embeddings else load32(w, "output.weight"))
    cap = cfg.final_logit_softcap  # 0 for Gemma 3 with sliding layers (llama.cpp's graph)
    return cap * np.tanh(logits / cap) if cap > 0 else logits


def _gpt2(w, cfg, ids):
    d, H, hd, eps = cfg.d_model, cfg.n_heads, cfg.head_dim, cfg.norm_eps
    T = len(ids)
    embd = load32(w, "token_embd.weight")
    x = embd[ids].astype(np.float64) + load64(w, "position_embd.weight")[:T]  # learned positions 0..T-1
    for i in range(cfg.n_layers):
        W = lambda name: load64(w, f"blk.{i}.{name}")  # noqa: E731
        xn = layernorm(x, W("attn_norm.weight"), W("attn_norm.bias"), eps)
        qkv = linear(xn, W("attn_qkv.weight")) + W("attn_qkv.bias")  # c_attn: columns q | k | v
        q, k, v = (qkv[:, j * d : (j + 1) * d].reshape(T, H, hd) for j in range(3))
        x = x + linear(attention(q, k, v, 1.0 / np.sqrt(hd)), W("attn_output.weight")) + W("attn_output.bias")
        xn = layernorm(x, W("ffn_norm.weight"), W("ffn_norm.bias"), eps)
        hidden = gelu_tanh(linear(xn, W("ffn_up.weight")) + W("ffn_up.bias"))
        x = x + linear(hidden, W("ffn_down.weight")) + W("ffn_down.bias")
    x = layernorm(x, load64(w, "output_norm.weight"), load64(w, "output_norm.bias"), eps)
    return lm_head(x, embd if cfg.tied_embeddings else load32(w, "output.weight"))


FORWARDS = {"llama": _llama, "gemma3": _gemma3, "gpt2": _gpt2}


def reference_logits(source, token_ids) -> np.ndarray:
    """float64 (T, vocab): logits at every position of a causal forward over token_ids
    (positions 0..T-1). source: a GGUF file or HF directory (path), or a parsed one."""
    weights, cfg = open_source(source)
    ids = np.asarray(token_ids, dtype=np.int64)
    assert ids.ndim == 1 and ids.size and 0 <= ids.min() and ids.max() < cfg.vocab_size, ids
    return FORWARDS[cfg.arch](weights, cfg, ids)
