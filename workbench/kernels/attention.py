"""Causal grouped-query attention over an f16 KV cache, in llama.cpp's arithmetic.

The cache holds K and V as half bits, (kv_heads, n_ctx, head_dim) per layer, like
llama.cpp's default f16 cache. llama.cpp (non-flash path) computes q.k and p.v as f16
matrix products: the f32 side (q, then the probabilities) is rounded to f16 first, and
the products accumulate in float32 lanes in one of two orders —
- one query row (decode): `ggml_vec_dot_f16`, 4 accumulators of 16 lanes over chunks of
  64 elements, folded (0+2, 1+3, 0+1) and reduced across lanes;
- several rows (prefill): llamafile's tinyBLAS, one 16-lane accumulator per output;
and the softmax uses ggml's exp polynomial, sums 16-lane chunks in float64 and scales by
the float32 reciprocal. Following that order keeps greedy tokens equal to llama.cpp's.

One call stores the new k/v rows at `pos0..pos0+T-1` and attends every query row: a
whole attention block is one crossing from Python.
"""

import numpy as np
from numba import prange

from workbench.kernels.fpmath import expf_ggml, fmaf, reduce16
from workbench.kernels.half import f32_to_f16_bits
from workbench.kernels.jit import njit_parallel, njit_serial


def _attention(out, q, k_new, v_new, k_cache, v_cache, pos0, scale, window, probs, f16):
    # q (T, H, hd), k_new/v_new (T, Hkv, hd) f32; k_cache/v_cache (Hkv, n_ctx, hd) uint16;
    # probs (T*H, n_ctx) f32 scratch; out (T, H, hd). window 0 = full attention.
    T, H, hd = q.shape
    Hkv = k_new.shape[1]
    group = H // Hkv
    batched = T > 1
    kb = k_new.reshape(-1).view(np.uint32)
    vb = v_new.reshape(-1).view(np.uint32)
    for t in range(T):
        for g in range(Hkv):
            base = (t * Hkv + g) * hd
            for d in range(hd):
                k_cache[g, pos0 + t, d] = f32_to_f16_bits(kb[base + d])
                v_cache[g, pos0 + t, d] = f32_to_f16_bits(vb[base + d])
    qb = q.reshape(-1).view(np.uint32)
    n_full = hd - hd % 64  # vec_dot_f16 leaves a tail (< 64) to float64 scalar products
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
        # scores: s_j = (q . k_j) * scale
        lanes = np.zeros((4, 16), dtype=np.float32)
        best = -np.inf
        for j in range(start, n_keys):
            lanes[:] = 0
            limit = hd if batched else n_full
            for d in range(limit):
                a = 0 if batched else (d % 64) // 16
                lanes[a, d % 16] = fmaf(q16[d], f16[k_cache[g, j, d]], lanes[a, d % 16])
            if batched:
                s = np.float64(reduce16(lanes[0]))
            else:
                s = np.float64(reduce16((lanes[0] + lanes[2]) + (lanes[1] + lanes[3])))
                for d in range(n_full, hd):
                    s += np.float64(q16[d] * f16[k_cache[g, j, d]])
            p[j] = np.float32(s) * scale
            if p[j] > best:
                best = p[j]
        # softmax over 16-key chunks counted from cache cell 0, as ggml's kq rows are
        total = 0.0
        chunk = np.zeros(16, dtype=np.float32)
        for c0 in range(start - start % 16, n_keys, 16):
            for l in range(16):
                j = c0 + l
                chunk[l] = expf_ggml(p[j] - best) if start <= j < n_keys else np.float32(0.0)
                if start <= j < n_keys:
                    p[j] = chunk[l]
            total += np.float64(reduce16(chunk))
        inv = np.float32(1.0 / total)
        for j in range(start, n_keys):
            p[j] = p[j] * inv
        pb = p.view(np.uint32)
        # out = p16 . V, accumulated per output dim in the same lane layout
        acc = np.zeros((4, 16, hd), dtype=np.float32)
        for j in range(start, n_keys):
            w = f16[f32_to_f16_bits(pb[j])]
            a = 0 if batched else (j % 64) // 16
            lane = acc[a, j % 16]
            for d in range(hd):
                lane[d] = fmaf(w, f16[v_cache[g, j, d]], lane[d])
        col = np.empty(16, dtype=np.float32)
        for d in range(hd):
            for l in range(16):
                if batched:
                    col[l] = acc[0, l, d]
                else:
                    col[l] = (acc[0, l, d] + acc[2, l, d]) + (acc[1, l, d] + acc[3, l, d])
            out[t, h, d] = reduce16(col)


attention_f16kv = njit_serial(_attention)
attention_f16kv_parallel = njit_parallel(_attention)
