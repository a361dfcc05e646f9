"""Causal grouped-query attention over an f16 KV cache.

The cache holds K and V as half bits, (kv_heads, n_ctx, head_dim) per layer, like
llama.cpp's default f16 cache. The arithmetic follows llama.cpp's non-flash path so that
near-ties fall the same way: q is rounded to f16 before q.k (ggml converts the f32 side
of an f16 matmul to f16), the softmax runs in f32 with a float64 sum, and the
probabilities are rounded to f16 before they weight V.

One call stores the new k/v rows at `pos0..pos0+T-1` and attends every query row: it is
a whole attention block in one crossing from Python.
"""

import numpy as np
from numba import prange

from workbench.kernels.half import f32_to_f16_bits
from workbench.kernels.jit import njit_parallel, njit_serial


def _attention(out, q, k_new, v_new, k_cache, v_cache, pos0, scale, window, probs, f16):
    # q (T, H, hd), k_new/v_new (T, Hkv, hd) f32; k_cache/v_cache (Hkv, n_ctx, hd) uint16;
    # probs (T*H, n_ctx) f32 scratch; out (T, H, hd). window 0 = full attention.
    T, H, hd = q.shape
    Hkv = k_new.shape[1]
    group = H // Hkv
    kb = k_new.reshape(-1).view(np.uint32)
    vb = v_new.reshape(-1).view(np.uint32)
    for t in range(T):
        for g in range(Hkv):
            base = (t * Hkv + g) * hd
            for d in range(hd):
                k_cache[g, pos0 + t, d] = f32_to_f16_bits(kb[base + d])
                v_cache[g, pos0 + t, d] = f32_to_f16_bits(vb[base + d])
    qb = q.reshape(-1).view(np.uint32)
    for th in prange(T * H):
        t = th // H
        h = th - t * H
        g = h // group
        n_keys = pos0 + t + 1
        start = 0
        if window > 0 and n_keys > window:
            start = n_keys - window
        q16 = np.empty(hd, dtype=np.float32)
        for d in range(hd):
            q16[d] = f16[f32_to_f16_bits(qb[th * hd + d])]
        p = probs[th]
        best = -np.inf
        for j in range(start, n_keys):
            s = np.float32(0.0)
            for d in range(hd):
                s += q16[d] * f16[k_cache[g, j, d]]
            s = s * scale
            p[j] = s
            if s > best:
                best = s
        total = 0.0
        for j in range(start, n_keys):
            e = np.exp(p[j] - best)
            p[j] = e
            total += np.float64(e)
        inv = np.float32(1.0 / total)
        for j in range(start, n_keys):
            p[j] = p[j] * inv
        pb = p.view(np.uint32)
        acc = np.zeros(hd, dtype=np.float32)
        for j in range(start, n_keys):
            w = f16[f32_to_f16_bits(pb[j])]
            for d in range(hd):
                acc[d] += w * f16[v_cache[g, j, d]]
        for d in range(hd):
            out[t, h, d] = acc[d]


attention_f16kv = njit_serial(_attention)
attention_f16kv_parallel = njit_parallel(_attention)
