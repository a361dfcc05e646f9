"""Causal grouped-query attention over an f16 KV cache, in llama.cpp's arithmetic.

The cache holds half-precision bits like llama.cpp's default f16 cache, and in its
layout: K as (kv_heads, n_pos, head_dim), V transposed as (kv_heads, head_dim, n_pos),
so that both products below read contiguous rows. llama.cpp (non-flash path) computes
q.k and p.v as f16 matrix products: the f32 side (q, then the probabilities) is rounded
to f16 first, and the products accumulate in float32 lanes in one of two orders —
- one query row (decode): `ggml_vec_dot_f16`, 4 accumulators of 16 lanes over chunks of
  64 elements, folded (0+2, 1+3, 0+1) and reduced across lanes (a tail shorter than 64
  goes to float64 scalar products);
- several rows (prefill): llamafile's tinyBLAS, one 16-lane accumulator per output;
and the softmax uses ggml's exp polynomial, sums 16-lane chunks in float64 and scales by
the float32 reciprocal. Following that order keeps greedy tokens equal to llama.cpp's.
`n_pos` is the context rounded up to 64, so a p.v row may be read in whole chunks.

One call stores the new k/v rows at `pos0..pos0+T-1` and attends every query row: a
whole attention block is one crossing from Python.
"""

import numpy as np
from numba import prange

from workbench.kernels.fpmath import expf_ggml, reduce16
from workbench.kernels.half import f32_to_f16_bits
from workbench.kernels.jit import njit_parallel, njit_serial
from workbench.kernels.simd import fma_f16, vsum, vsum4, zeros_f32

CHUNK = 64  # vec_dot_f16's step: n_pos is a multiple of it


@njit_serial
def _store(k_cache, v_cache, k_new, v_new, pos0):
    # k_new/v_new (T, Hkv, hd) f32 -> half bits at positions pos0.. (V transposed)
    T, Hkv, hd = k_new.shape
    kb = k_new.reshape(-1).view(np.uint32)
    vb = v_new.reshape(-1).view(np.uint32)
    for t in range(T):
        for g in range(Hkv):
            base = (t * Hkv + g) * hd
            for d in range(hd):
                k_cache[g, pos0 + t, d] = f32_to_f16_bits(kb[base + d])
                v_cache[g, d, pos0 + t] = f32_to_f16_bits(vb[base + d])


@njit_serial
def _dot_f16(row, x, n, batched):
    """sum_i half(row[i]) * x[i], i < n (n a multiple of 16), in ggml's order."""
    if batched:
        acc = zeros_f32()
        for c in range(0, n, 16):
            acc = fma_f16(acc, row, c, x, c)
        return np.float64(vsum(acc))
    n_full = n - n % CHUNK
    a0, a1, a2, a3 = zeros_f32(), zeros_f32(), zeros_f32(), zeros_f32()
    for c in range(0, n_full, CHUNK):
        a0 = fma_f16(a0, row, c, x, c)
        a1 = fma_f16(a1, row, c + 16, x, c + 16)
        a2 = fma_f16(a2, row, c + 32, x, c + 32)
        a3 = fma_f16(a3, row, c + 48, x, c + 48)
    return np.float64(vsum4(a0, a1, a2, a3))


def _attention(out, q, k_new, v_new, k_cache, v_cache, pos0, scale, window, probs, f16):
    # q (T, H, hd), k_new/v_new (T, Hkv, hd) f32; k_cache (Hkv, n_pos, hd) and v_cache
    # (Hkv, hd, n_pos) uint16 half bits; probs (T*H, n_pos + hd) f32 scratch;
    # out (T, H, hd). window 0 = full attention.
    T, H, hd = q.shape
    group = H // k_new.shape[1]
    batched = T > 1
    _store(k_cache, v_cache, k_new, v_new, pos0)
    qbits = q.reshape(-1).view(np.uint32)
    for th in prange(T * H):
        t = th // H
        h = th - t * H
        g = h // group
        n_keys = pos0 + t + 1
        start = 0
        if window > 0 and n_keys > window:
            start = n_keys - window
        row = probs[th]
        q16 = row[row.shape[0] - hd :]  # the scratch row's tail holds q rounded to half
        for d in range(hd):
            q16[d] = f16[f32_to_f16_bits(qbits[th * hd + d])]
        tail = hd - hd % 16 if batched else hd - hd % CHUNK
        p = row[: row.shape[0] - hd]
        best = -np.inf
        for j in range(start, n_keys):
            key = k_cache[g, j]
            s = _dot_f16(key, q16, tail, batched)
            for d in range(tail, hd):  # what vec_dot_f16 leaves to float64 scalars
                s += np.float64(q16[d] * f16[key[d]])
            p[j] = np.float32(s) * scale
            best = max(best, p[j])
        # softmax over 16-key chunks counted from cache cell 0, as ggml's kq rows are
        lo = start - start % 16
        hi = n_keys + (-n_keys) % CHUNK
        first = lo if batched else lo - lo % CHUNK  # p.v starts at the first chunk with a key
        p[first:start] = 0.0
        p[n_keys:hi] = 0.0
        total = 0.0
        for c0 in range(lo, n_keys, 16):
            for j in range(max(c0, start), min(c0 + 16, n_keys)):
                p[j] = expf_ggml(p[j] - best)
            total += np.float64(reduce16(p[c0 : c0 + 16]))
        inv = np.float32(1.0 / total)
        pbits = p.view(np.uint32)
        for j in range(start, n_keys):
            p[j] = p[j] * inv
            p[j] = f16[f32_to_f16_bits(pbits[j])]
        # out[d] = half(p) . V^T[d]
        for d in range(hd):
            out[t, h, d] = _dot_f16(v_cache[g, d, first:hi], p[first:hi], hi - first, batched)


attention_f16kv = njit_serial(_attention)
attention_f16kv_parallel = njit_parallel(_attention)
