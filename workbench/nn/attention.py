"""Rotary embeddings and causal attention over the KV cache, as layers.

`Rope` holds the cos/sin tables of one rope base (Gemma has two). `attend` stores the
new keys/values in the layer's slice of the cache and attends every query row; the
cache is preallocated by the engine and written in place at `pos0`. Its dtype picks the
kernels: half bits (uint16) run llama.cpp's f16 arithmetic (`kernels.attention`),
float32 runs transformers' (`kernels.attention_f32`); see `KVCache`.
"""

from __future__ import annotations

import numpy as np

from workbench.errors import ParameterError, ShapeError
from workbench.kernels.attention import (
    attention_f16kv,
    attention_f16kv_parallel,
    attn_scores,
    attn_softmax,
    attn_values,
    store_kv,
)
from workbench.kernels.attention_f32 import (
    attention_f32kv,
    attention_f32kv_parallel,
    attn_scores_f32,
    attn_softmax_f32,
    attn_values_f32,
    store_kv_f32,
)
from workbench.kernels.half import F16_TO_F32
from workbench.kernels.rope import rope_f32, rope_f32_parallel, rope_tables
from workbench.trace import NULL_TRACER


class Rope:
    """Rotates the first `n_dims` of each head; `neox` picks the (i, i + n/2) pairing."""

    __slots__ = ("cos", "sin", "n_dims", "neox")

    def __init__(self, n_ctx: int, n_dims: int, base: float, neox: bool):
        self.cos, self.sin = rope_tables(n_ctx, n_dims, base)
        self.n_dims, self.neox = n_dims, neox

    def __call__(self, x: np.ndarray, pos0: int, tracer=NULL_TRACER, op: str = "rope") -> np.ndarray:
        # x (T, heads, head_dim), rotated in place
        kernel = rope_f32 if x.shape[0] == 1 else rope_f32_parallel
        if tracer.ops:
            table = 2 * x.shape[0] * (self.n_dims // 2) * self.cos.itemsize  # cos and sin rows of T positions
            with tracer.span(op, kind="op", shape=x.shape, bytes=2 * x.nbytes + table, flops=6 * x.size):
                kernel(x, pos0, self.cos, self.sin, self.n_dims, self.neox)
        else:
            kernel(x, pos0, self.cos, self.sin, self.n_dims, self.neox)
        return x


def attend(out, q, k, v, k_cache, v_cache, pos0: int, scale: float, window: int, probs, tracer=NULL_TRACER):
    """out (T, H, hd) = softmax(q k^T * scale) v over cache positions [0, pos0 + T).

    q (T, H, hd); k, v (T, Hkv, hd) are this step's rows, stored at pos0.. first;
    k_cache (Hkv, n_pos, hd) and v_cache (Hkv, hd, n_pos), both half bits (uint16) or
    both float32 (see KVCache); probs (>= T*H, n_pos + hd) f32 scratch (`KVCache.scratch`). Untraced, one fused
    kernel; in an op-level trace the four phases run as separate kernels (same
    arithmetic), one span each."""
    T, H, hd = q.shape
    Hkv, n_pos = k_cache.shape[0], k_cache.shape[1]  # n_pos: the context rounded up to 64
    if pos0 < 0 or pos0 + T > n_pos:
        raise ParameterError(f"positions {pos0}..{pos0 + T - 1} do not fit the KV cache of {n_pos} positions")
    if probs.shape[0] < T * H or probs.shape[1] < n_pos + hd or v_cache.shape != (Hkv, hd, n_pos):
        raise ShapeError(f"attention scratch {probs.shape} / V cache {v_cache.shape} do not fit "
                         f"{T * H} query rows over {n_pos} positions (see KVCache.scratch)")
    if k_cache.dtype != v_cache.dtype or k_cache.dtype not in (np.uint16, np.float32):
        raise ShapeError(f"KV cache dtypes {k_cache.dtype} / {v_cache.dtype}: expected both uint16 (f16 bits) "
                         "or both float32")
    f16 = k_cache.dtype == np.uint16
    if not f16 and not (q.flags.c_contiguous and k_cache.flags.c_contiguous and v_cache.flags.c_contiguous):
        raise ShapeError("attention over an f32 KV cache needs C-contiguous q and caches")  # its dots read raw rows
    scale = np.float32(scale)
    if not tracer.ops:
        if f16:
            kernel = attention_f16kv if T * H == 1 else attention_f16kv_parallel
            kernel(out, q, k, v, k_cache, v_cache, pos0, scale, window, probs, F16_TO_F32)
        else:
            kernel = attention_f32kv if T * H == 1 else attention_f32kv_parallel
            kernel(out, q, k, v, k_cache, v_cache, pos0, scale, window, probs)
        return out
    n_keys = pos0 + T
    if window > 0:  # keys older than the first query's window are never read
        n_keys -= max(0, pos0 + 1 - window)
    fmt, size = ("f16", 2) if f16 else ("f32", 4)
    rows = T * H * n_keys  # scores written, read and rewritten per phase
    with tracer.span("kv_cache", kind="op", fmt=fmt, shape=k.shape,
                     bytes=k.nbytes + v.nbytes + (k.size + v.size) * size, flops=0):
        (store_kv if f16 else store_kv_f32)(k_cache, v_cache, k, v, pos0)
    with tracer.span("scores", kind="op", fmt=fmt, shape=(T, H, n_keys),
                     bytes=Hkv * n_keys * hd * size + q.nbytes + rows * 4, flops=2 * T * H * hd * n_keys):
        if f16:
            attn_scores(q, k_cache, pos0, scale, window, probs, F16_TO_F32)
        else:
            attn_scores_f32(q, k_cache, pos0, scale, window, probs)
    with tracer.span("softmax", kind="op", shape=(T, H, n_keys), bytes=2 * rows * 4, flops=5 * rows):
        if f16:
            attn_softmax(probs, T, H, pos0, window, F16_TO_F32)
        else:
            attn_softmax_f32(probs, T, H, pos0, window)
    with tracer.span("attn_v", kind="op", fmt=fmt, shape=(T, H, hd),
                     bytes=Hkv * n_keys * hd * size + rows * 4 + out.nbytes, flops=2 * T * H * hd * n_keys):
        (attn_values if f16 else attn_values_f32)(out, probs, v_cache, pos0, window)
    return out
