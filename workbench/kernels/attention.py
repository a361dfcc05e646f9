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
`n_pos` is the context rounded up to 64, so a p.v row may be read in whole chunks. The
caller's scratch `probs` has a row of n_pos + head_dim floats per query head: scores and
probabilities, then the query rounded to half (`KVCache.scratch`).

`store_kv` writes the new k/v rows at `pos0..pos0+T-1`; `attend_f16kv_parallel` then
attends every query row (one parallel region over rows x heads). A compiled step calls
the two one after the other, so a trace times the KV write and the attention apart;
`attention_f16kv` does both in one call. The three phases also exist as separate kernels
(`attn_scores`, `attn_softmax`, `attn_values`), for notebooks that time them apart.
"""

import numpy as np
from numba import prange

from workbench.kernels.fpmath import expf_ggml, reduce16
from workbench.kernels.isa.x86 import max_f32, vadd
from workbench.kernels.jit import njit_parallel, njit_serial
from workbench.kernels.isa.vectors import f16_bits, fma_f16, round_f16, store_vsums4, vsum, vsum4, zeros_f32

CHUNK = 64  # vec_dot_f16's step: n_pos is a multiple of it


@njit_serial
def _store(k_cache, v_cache, k_new, v_new, pos0):
    # k_new/v_new (T, Hkv, hd) f32 -> half bits at positions pos0.. (V transposed)
    # (one F16C conversion per value: the branchy software rounding took 11 us of a GPT-2
    # layer's decode step, warm, AMD EPYC Zen 4)
    T, Hkv, hd = k_new.shape
    for t in range(T):
        for g in range(Hkv):
            kr, vr, kc = k_new[t, g], v_new[t, g], k_cache[g, pos0 + t]
            for d in range(hd):
                kc[d] = f16_bits(kr[d])
            for d in range(hd):
                v_cache[g, d, pos0 + t] = f16_bits(vr[d])


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


@njit_serial
def _row(th, H, pos0, window):
    """Query row th = (t, h) of a T x H block: (t, h, first key, keys up to here)."""
    t = th // H
    n_keys = pos0 + t + 1
    start = n_keys - window if 0 < window < n_keys else 0
    return t, th - t * H, start, n_keys


@njit_serial
def _scores(p, q, keys, start, n_keys, scale, batched, f16):
    # p[j] = (half(q) . keys[j]) * scale for j in [start, n_keys); q (hd,) f32. The row p
    # is n_pos + hd long: half(q) goes in its last hd floats, so that nothing is allocated
    hd = q.shape[0]
    q16 = p[p.shape[0] - hd :]
    for d in range(hd):
        q16[d] = round_f16(q[d])
    tail = hd - hd % 16 if batched else hd - hd % CHUNK
    if tail == hd:  # four keys per pass; the rest below
        start = _four_keys(p, q16, keys, start, n_keys, scale, batched)
    for j in range(start, n_keys):
        key = keys[j]
        s = _dot_f16(key, q16, tail, batched)
        for d in range(tail, hd):  # what vec_dot_f16 leaves to float64 scalars
            s += np.float64(q16[d] * f16[key[d]])
        p[j] = np.float32(s) * scale


@njit_serial
def _softmax(p, start, n_keys, batched, f16):
    # p[start:n_keys] -> half(softmax), zeros around it up to whole chunks; returns the
    # span [first, hi) that the p.v product reads
    best = max_f32(p, start, n_keys)
    lo = start - start % 16
    hi = n_keys + (-n_keys) % CHUNK
    first = lo if batched else lo - lo % CHUNK  # p.v starts at the first chunk with a key
    p[first:start] = 0.0
    p[n_keys:hi] = 0.0
    e = p[start:n_keys]  # (loops from 0 over a slice vectorize: no call, no gather)
    for i in range(e.size):
        e[i] = expf_ggml(e[i] - best)
    # sums of 16-key chunks counted from cache cell 0, as ggml's kq rows are
    total = 0.0
    for c0 in range(lo, n_keys, 16):
        total += np.float64(reduce16(p[c0 : c0 + 16]))
    inv = np.float32(1.0 / total)
    for i in range(e.size):
        e[i] = round_f16(e[i] * inv)
    return first, hi


@njit_serial
def _four_keys(p, q16, keys, start, n_keys, scale, batched):
    """Scores of keys start.. four at a time: several query rows (prefill) in tinyBLAS's
    order (`_four_rows16`), one (decode) in vec_dot_f16's (`_four_rows64`, hd a multiple
    of 64). The four keys' sums are independent, so they overlap instead of waiting on one
    another's latency, and their lane sums share shuffles. Returns the first key left over
    (fewer than four)."""
    hd = q16.shape[0]
    j = start
    while j + 4 <= n_keys:
        a = _four_rows16(keys, j * hd, hd, q16, 0, hd) if batched else _four_rows64(keys, j * hd, hd, q16, 0, hd)
        store_vsums4(p, j, a[0], a[1], a[2], a[3])
        for k in range(j, j + 4):
            p[k] = p[k] * scale
        j += 4
    return j


@njit_serial
def _four_rows16(m, o, stride, x, lo, hi):
    """Rows o, o + stride, o + 2 stride, o + 3 stride of half bits m (flat offsets) dot x,
    columns lo..hi (whole 16-element pieces), each in one 16-lane chain (tinyBLAS's
    order): four vectors left to sum by lanes."""
    a0, a1, a2, a3 = zeros_f32(), zeros_f32(), zeros_f32(), zeros_f32()
    for c in range(lo, hi, 16):
        r = o + c - lo
        a0 = fma_f16(a0, m, r, x, c)
        a1 = fma_f16(a1, m, r + stride, x, c)
        a2 = fma_f16(a2, m, r + 2 * stride, x, c)
        a3 = fma_f16(a3, m, r + 3 * stride, x, c)
    return a0, a1, a2, a3


@njit_serial
def _four_rows64(m, o, stride, x, lo, hi):
    """Rows o, o + stride, o + 2 stride, o + 3 stride of half bits m (flat offsets) dot x,
    columns lo..hi (whole 64-element chunks), each in `_dot_f16`'s four chains folded as
    `vsum4` folds them (0 + 2, 1 + 3, then the two): four vectors left to sum by lanes."""
    a0, a1, a2, a3 = zeros_f32(), zeros_f32(), zeros_f32(), zeros_f32()
    b0, b1, b2, b3 = zeros_f32(), zeros_f32(), zeros_f32(), zeros_f32()
    c0, c1, c2, c3 = zeros_f32(), zeros_f32(), zeros_f32(), zeros_f32()
    d0, d1, d2, d3 = zeros_f32(), zeros_f32(), zeros_f32(), zeros_f32()
    for c in range(lo, hi, CHUNK):
        r = o + c - lo
        a0, a1 = fma_f16(a0, m, r, x, c), fma_f16(a1, m, r + 16, x, c + 16)
        a2, a3 = fma_f16(a2, m, r + 32, x, c + 32), fma_f16(a3, m, r + 48, x, c + 48)
        r += stride
        b0, b1 = fma_f16(b0, m, r, x, c), fma_f16(b1, m, r + 16, x, c + 16)
        b2, b3 = fma_f16(b2, m, r + 32, x, c + 32), fma_f16(b3, m, r + 48, x, c + 48)
        r += stride
        c0, c1 = fma_f16(c0, m, r, x, c), fma_f16(c1, m, r + 16, x, c + 16)
        c2, c3 = fma_f16(c2, m, r + 32, x, c + 32), fma_f16(c3, m, r + 48, x, c + 48)
        r += stride
        d0, d1 = fma_f16(d0, m, r, x, c), fma_f16(d1, m, r + 16, x, c + 16)
        d2, d3 = fma_f16(d2, m, r + 32, x, c + 32), fma_f16(d3, m, r + 48, x, c + 48)
    return (vadd(vadd(a0, a2), vadd(a1, a3)), vadd(vadd(b0, b2), vadd(b1, b3)),
            vadd(vadd(c0, c2), vadd(c1, c3)), vadd(vadd(d0, d2), vadd(d1, d3)))


@njit_serial
def _weighted_values(out, p, values, first, hi, batched):
    # out[d] = p . V^T[d] over [first, hi); values (hd, n_pos) half bits
    hd, n_pos = values.shape
    for d0 in range(0, hd - hd % 4, 4):  # four rows of V^T per pass, as `_four_keys`
        o = d0 * n_pos + first
        a = _four_rows16(values, o, n_pos, p, first, hi) if batched else _four_rows64(values, o, n_pos, p, first, hi)
        store_vsums4(out, d0, a[0], a[1], a[2], a[3])
    d0 = hd - hd % 4
    for d in range(d0, hd):
        out[d] = _dot_f16(values[d, first:hi], p[first:hi], hi - first, batched)


def _attend(out, q, k_cache, v_cache, pos0, scale, window, probs, f16):
    # q (T, H, hd) f32 at positions pos0..; k_cache (Hkv, n_pos, hd) and v_cache
    # (Hkv, hd, n_pos) uint16 half bits, already holding this step's rows; probs
    # (T*H, n_pos + hd) f32 scratch; out (T, H, hd). window 0 = full attention.
    # `batched` a constant in each loop: decoded from T at run time, it kept LLVM from
    # specializing the helpers, and a decode step of GPT-2's 12 heads at position 20 took 16 us
    # instead of 7 (AMD EPYC Zen 4, warm cache)
    T, H, hd = q.shape
    if T == 1:
        for h in prange(H):
            _head(out, q, k_cache, v_cache, pos0, scale, window, probs, f16, h, False)
    else:
        for th in prange(T * H):
            _head(out, q, k_cache, v_cache, pos0, scale, window, probs, f16, th, True)


@njit_serial
def _head(out, q, k_cache, v_cache, pos0, scale, window, probs, f16, th, batched):
    """Query row th = (t, h) of `_attend`: scores, softmax, p.v."""
    H = q.shape[1]
    group = H // k_cache.shape[0]
    t, h, start, n_keys = _row(th, H, pos0, window)
    p = probs[th]
    _scores(p, q[t, h], k_cache[h // group], start, n_keys, scale, batched, f16)
    first, hi = _softmax(p, start, n_keys, batched, f16)
    _weighted_values(out[t, h], p, v_cache[h // group], first, hi, batched)


attend_f16kv_parallel = njit_parallel(_attend)


def _attention(out, q, k_new, v_new, k_cache, v_cache, pos0, scale, window, probs, f16):
    # `_attend` after storing k_new/v_new (T, Hkv, hd) f32 at positions pos0..
    _store(k_cache, v_cache, k_new, v_new, pos0)
    attend_f16kv_parallel(out, q, k_cache, v_cache, pos0, scale, window, probs, f16)


# The same three phases as separate parallel kernels, for op-level traces (one span each).


def _attn_scores(q, k_cache, pos0, scale, window, probs, f16):
    T, H, _ = q.shape
    group = H // k_cache.shape[0]
    for th in prange(T * H):
        t, h, start, n_keys = _row(th, H, pos0, window)
        _scores(probs[th], q[t, h], k_cache[h // group], start, n_keys, scale, T > 1, f16)


def _attn_softmax(probs, T, H, pos0, window, f16):
    for th in prange(T * H):
        t, h, start, n_keys = _row(th, H, pos0, window)
        _softmax(probs[th], start, n_keys, T > 1, f16)


def _attn_values(out, probs, v_cache, pos0, window):
    T, H, _ = out.shape
    group = H // v_cache.shape[0]
    for th in prange(T * H):
        t, h, start, n_keys = _row(th, H, pos0, window)
        lo = start - start % 16
        first = lo if T > 1 else lo - lo % CHUNK
        hi = n_keys + (-n_keys) % CHUNK
        _weighted_values(out[t, h], probs[th], v_cache[h // group], first, hi, T > 1)


store_kv = _store
attn_scores = njit_parallel(_attn_scores)
attn_softmax = njit_parallel(_attn_softmax)
attn_values = njit_parallel(_attn_values)
attention_f16kv = njit_serial(_attention)
attention_f16kv_parallel = njit_parallel(_attention)
