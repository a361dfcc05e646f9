"""Rotary embeddings and causal attention over the KV cache, as layers.

`Rope` holds the cos/sin tables of one rope base (Gemma has two). `attend` stores the
new keys/values in the layer's slice of the cache and attends every query row; the
cache is preallocated by the engine and written in place at `pos0`.
"""

from __future__ import annotations

import numpy as np

from workbench.errors import ParameterError
from workbench.kernels.attention import attention_f16kv, attention_f16kv_parallel
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
    k_cache (Hkv, n_pos, hd) and v_cache (Hkv, hd, n_pos) half bits (see KVCache);
    probs (>= T*H, n_pos + hd) f32 scratch."""
    T = q.shape[0]
    n_ctx = k_cache.shape[1]  # n_pos: the cache's positions rounded up to 64
    if pos0 < 0 or pos0 + T > n_ctx:
        raise ParameterError(f"positions {pos0}..{pos0 + T - 1} do not fit the KV cache of {n_ctx} positions")
    kernel = attention_f16kv if T * q.shape[1] == 1 else attention_f16kv_parallel
    if tracer.ops:
        n_keys = pos0 + T
        if window > 0:  # keys older than the first query's window are never read
            n_keys -= max(0, pos0 + 1 - window)
        kv_read = 2 * k_cache.shape[0] * n_keys * k_cache.shape[2] * k_cache.itemsize
        kv_store = k.nbytes + v.nbytes + (k.size + v.size) * 2  # the new rows, f32 in, half out
        with tracer.span("attn", kind="op", fmt="f16", shape=q.shape,
                         bytes=kv_read + kv_store + q.nbytes + out.nbytes,
                         flops=4 * q.shape[0] * q.shape[1] * q.shape[2] * n_keys):
            kernel(out, q, k, v, k_cache, v_cache, pos0, np.float32(scale), window, probs, F16_TO_F32)
    else:
        kernel(out, q, k, v, k_cache, v_cache, pos0, np.float32(scale), window, probs, F16_TO_F32)
    return out
