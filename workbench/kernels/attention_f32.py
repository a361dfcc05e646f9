"""Causal grouped-query attention over an f32 KV cache, in float32 like transformers.

The f16 cache (`attention.py`) follows llama.cpp bit for bit; this one follows torch's
float32 eager attention instead, for HF models checked against transformers at 1e-4
(the f16 cache alone costs ~4e-3 there: q, k, v and the probabilities each rounded to
half). Same layout as the f16 cache, float32 values: K (kv_heads, n_pos, head_dim), V
transposed (kv_heads, head_dim, n_pos), so both products read contiguous rows.

Arithmetic, per query row (nothing is rounded to half):
- scores: q.k as a float32 dot (16 fused lanes, then a scalar tail), then `* scale`, as
  transformers' `matmul(q, k^T) * scaling`;
- softmax: `s - max` and `exp` in float32, as torch's `_vec_softmax_lastdim`, the sum of
  the exps in float64, then `p * float32(1 / sum)` as torch multiplies by its float32
  reciprocal. torch sums in float32 vector lanes whose width depends on the CPU it
  dispatches to (AVX2 or AVX-512), so its order cannot be copied; a float64 sum is the
  exact sum rounded once, so what is left between us is torch's own rounding. Measured
  against torch.softmax on random rows of 7..2048 keys: mean max-relative distance
  6.4e-8 with the float64 sum, 2.3e-7 with a sequential float32 one (a float64 exp too
  gains nothing more: 6.1e-8);
- values: p.v as a float32 dot over the row's keys [start, n_keys), 16 fused lanes.
Decode and prefill use the same order, so a row's result does not depend on how many
tokens came with it.

`store_kv_f32` writes the new k/v rows at `pos0..pos0+T-1` and `attend_f32kv_parallel`
attends every query row; `attention_f32kv` does both. The phases also exist as separate
kernels (`attn_scores_f32`, `attn_softmax_f32`, `attn_values_f32`), same bits. The
caller's buffers are C-contiguous by construction (`nn.state`); the dots read raw rows.
"""

import numpy as np
from numba import prange

from workbench.kernels.attention import _row  # the same causal / sliding-window rows as the f16 cache
from workbench.kernels.jit import njit_parallel, njit_serial
from workbench.kernels.isa.vectors import LANES, fma_f32, vsum, zeros_f32


@njit_serial
def _store(k_cache, v_cache, k_new, v_new, pos0):
    # k_new/v_new (T, Hkv, hd) f32 -> positions pos0.. of the caches (V transposed)
    T, Hkv, hd = k_new.shape
    for t in range(T):
        for g in range(Hkv):
            for d in range(hd):
                k_cache[g, pos0 + t, d] = k_new[t, g, d]
                v_cache[g, d, pos0 + t] = v_new[t, g, d]


@njit_serial
def _dot(a, ao, b, bo, n):
    """sum_i a[ao+i] * b[bo+i] for i < n, in float32: 16 fused lanes, then the tail."""
    n16 = n - n % LANES
    acc = zeros_f32()
    for c in range(0, n16, LANES):
        acc = fma_f32(acc, a, ao + c, b, bo + c)
    s = vsum(acc)
    for i in range(n16, n):
        s += a[ao + i] * b[bo + i]
    return s


@njit_serial
def _scores(p, q, keys, start, n_keys, scale):
    # p[j] = (q . keys[j]) * scale for j in [start, n_keys); q (hd,), keys (n_pos, hd)
    hd = q.shape[0]
    for j in range(start, n_keys):
        p[j] = _dot(keys[j], 0, q, 0, hd) * scale


@njit_serial
def _softmax(p, start, n_keys):
    # p[start:n_keys] -> softmax, in place (module docstring: float32 exp, float64 sum)
    best = np.float32(-np.inf)
    for j in range(start, n_keys):
        best = max(best, p[j])
    total = 0.0
    for j in range(start, n_keys):
        e = np.exp(p[j] - best)
        p[j] = e
        total += e
    inv = np.float32(1.0 / total)
    for j in range(start, n_keys):
        p[j] = p[j] * inv


@njit_serial
def _weighted_values(out, p, values, start, n_keys):
    # out[d] = p[start:n_keys] . V^T[d, start:n_keys]; values (hd, n_pos)
    for d in range(out.shape[0]):
        out[d] = _dot(values[d], start, p, start, n_keys - start)


def _attend(out, q, k_cache, v_cache, pos0, scale, window, probs):
    # q (T, H, hd) at positions pos0..; k_cache (Hkv, n_pos, hd) and v_cache
    # (Hkv, hd, n_pos) f32, already holding this step's rows; probs (T*H, n_pos) f32
    # scratch; out (T, H, hd). window 0 = full attention.
    T, H, hd = q.shape
    group = H // k_cache.shape[0]
    for th in prange(T * H):
        t, h, start, n_keys = _row(th, H, pos0, window)
        p = probs[th]
        _scores(p, q[t, h], k_cache[h // group], start, n_keys, scale)
        _softmax(p, start, n_keys)
        _weighted_values(out[t, h], p, v_cache[h // group], start, n_keys)


attend_f32kv_parallel = njit_parallel(_attend)


def _attention(out, q, k_new, v_new, k_cache, v_cache, pos0, scale, window, probs):
    # `_attend` after storing k_new/v_new (T, Hkv, hd) f32 at positions pos0..
    _store(k_cache, v_cache, k_new, v_new, pos0)
    attend_f32kv_parallel(out, q, k_cache, v_cache, pos0, scale, window, probs)


# The same three phases as separate parallel kernels, for op-level traces (one span each).


def _attn_scores(q, k_cache, pos0, scale, window, probs):
    T, H, _ = q.shape
    group = H // k_cache.shape[0]
    for th in prange(T * H):
        t, h, start, n_keys = _row(th, H, pos0, window)
        _scores(probs[th], q[t, h], k_cache[h // group], start, n_keys, scale)


def _attn_softmax(probs, T, H, pos0, window):
    for th in prange(T * H):
        t, h, start, n_keys = _row(th, H, pos0, window)
        _softmax(probs[th], start, n_keys)


def _attn_values(out, probs, v_cache, pos0, window):
    T, H, _ = out.shape
    group = H // v_cache.shape[0]
    for th in prange(T * H):
        t, h, start, n_keys = _row(th, H, pos0, window)
        _weighted_values(out[t, h], probs[th], v_cache[h // group], start, n_keys)


store_kv_f32 = _store
attn_scores_f32 = njit_parallel(_attn_scores)
attn_softmax_f32 = njit_parallel(_attn_softmax)
attn_values_f32 = njit_parallel(_attn_values)
attention_f32kv = njit_serial(_attention)
attention_f32kv_parallel = njit_parallel(_attention)
