"""Attention over an f32 KV cache (`kernels/attention_f32.py`) against float64 numpy.

The f32 kernels keep every value in float32 (no half rounding) and sum the softmax in
float64, so they must sit within float32 rounding of an all-float64 attention: measured
max |error| 6e-7 on these cases (unit-variance q, k, v), bounded by `F32_ATOL`. The
op-trace path (four kernels) must give the fused kernel's bits, and decode must not
depend on how many tokens came with a query row.
"""

import numpy as np
import pytest

from workbench.errors import ParameterError
from workbench.kernels.attention import attend_f16kv_parallel, store_kv
from workbench.kernels.attention_f32 import (
    attend_f32kv_parallel,
    attention_f32kv,
    attention_f32kv_parallel,
    attn_scores_f32,
    attn_softmax_f32,
    attn_values_f32,
    store_kv_f32,
)
from workbench.kernels.half import F16_TO_F32
from workbench.nn.kv_cache import KVCache

F32_ATOL = 5e-6  # float32 dots over <= 256 values of unit variance vs float64 (measured 6e-7)


def attention_ref(q, K, V, pos0, scale, window):
    """float64 causal GQA attention; q (T, H, hd), K, V (Hkv, n, hd) every cached row.
    Query t sits at position pos0 + t and sees keys [max(0, n - window), n), n = pos0 + t + 1."""
    T, H, hd = q.shape
    group = H // K.shape[0]
    out = np.zeros((T, H, hd))
    for t in range(T):
        n = pos0 + t + 1
        start = max(0, n - window) if window else 0
        for h in range(H):
            s = K[h // group, start:n] @ q[t, h].astype(np.float64) * scale
            p = np.exp(s - s.max())
            out[t, h] = (p / p.sum()) @ V[h // group, start:n]
    return out


def make_case(seed, T, H, Hkv, hd, n_pos, pos0):
    """Random q, new k/v and an f32 cache whose first pos0 positions are already filled."""
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((T, H, hd)).astype(np.float32)
    k, v = (rng.standard_normal((T, Hkv, hd)).astype(np.float32) for _ in range(2))
    old_k, old_v = (rng.standard_normal((Hkv, pos0, hd)).astype(np.float32) for _ in range(2))
    k_cache, v_cache = np.zeros((Hkv, n_pos, hd), np.float32), np.zeros((Hkv, hd, n_pos), np.float32)
    k_cache[:, :pos0], v_cache[:, :, :pos0] = old_k, old_v.transpose(0, 2, 1)  # V transposed (see KVCache)
    K = np.concatenate([old_k, k.transpose(1, 0, 2)], axis=1).astype(np.float64)
    V = np.concatenate([old_v, v.transpose(1, 0, 2)], axis=1).astype(np.float64)
    return q, k, v, k_cache, v_cache, K, V


# (T, H, Hkv, hd, n_pos, pos0, window): decode and prefill, GQA groups of 3, a head_dim
# with a 16-lane tail (40), Gemma's shape (4 heads on 1 KV head, head_dim 256) with a
# window that cuts keys off, and a window wider than the context
CASES = [
    (1, 6, 2, 64, 64, 3, 0),
    (5, 6, 2, 64, 64, 3, 0),
    (1, 6, 2, 64, 64, 3, 4),
    (5, 6, 2, 64, 64, 3, 4),
    (3, 6, 3, 40, 64, 20, 0),
    (1, 4, 1, 256, 192, 100, 70),
    (7, 4, 1, 256, 192, 100, 70),
    (7, 4, 1, 256, 192, 100, 512),
    (64, 2, 1, 64, 64, 0, 0),  # a whole prefill from position 0, every row a different length
]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("kernel", [attention_f32kv, attention_f32kv_parallel])
def test_attention_f32_matches_float64_and_fills_cache(kernel, case):
    T, H, Hkv, hd, n_pos, pos0, window = case
    q, k, v, k_cache, v_cache, K, V = make_case(4, T, H, Hkv, hd, n_pos, pos0)
    probs = np.zeros((T * H, n_pos), np.float32)
    out = np.zeros((T, H, hd), np.float32)
    kernel(out, q, k, v, k_cache, v_cache, pos0, np.float32(0.125), window, probs)
    assert np.array_equal(k_cache[:, pos0 : pos0 + T], k.transpose(1, 0, 2))  # stored as they are: no rounding
    assert np.array_equal(v_cache[:, :, pos0 : pos0 + T], v.transpose(1, 2, 0))
    ref = attention_ref(q, K, V, pos0, 0.125, window)
    np.testing.assert_allclose(out, ref, rtol=0, atol=F32_ATOL)


@pytest.mark.parametrize("case", CASES)
def test_attention_f32_phases_equal_the_fused_kernel(case):
    """The op-level trace path (four kernels) must give the fused kernel's bits."""
    T, H, Hkv, hd, n_pos, pos0, window = case
    q, k, v, k_cache, v_cache, _, _ = make_case(6, T, H, Hkv, hd, n_pos, pos0)
    kc, vc = k_cache.copy(), v_cache.copy()
    fused, split = np.zeros((T, H, hd), np.float32), np.zeros((T, H, hd), np.float32)
    probs = np.zeros((T * H, n_pos), np.float32)
    scale = np.float32(0.0625)
    attention_f32kv_parallel(fused, q, k, v, k_cache, v_cache, pos0, scale, window, probs)
    serial = np.zeros_like(fused)
    attention_f32kv(serial, q, k, v, kc.copy(), vc.copy(), pos0, scale, window, probs)
    store_kv_f32(kc, vc, k, v, pos0)
    attn_scores_f32(q, kc, pos0, scale, window, probs)
    attn_softmax_f32(probs, T, H, pos0, window)
    attn_values_f32(split, probs, vc, pos0, window)
    assert np.array_equal(fused, split) and np.array_equal(fused, serial)
    assert np.array_equal(k_cache, kc) and np.array_equal(v_cache, vc)


def test_decode_rows_equal_prefill_rows():
    """One order for 1 and for T rows: feeding tokens one by one gives the prefill's bits."""
    T, H, Hkv, hd, n_pos, pos0, window = 6, 4, 2, 64, 64, 2, 3
    q, k, v, k_cache, v_cache, _, _ = make_case(8, T, H, Hkv, hd, n_pos, pos0)
    kc, vc = k_cache.copy(), v_cache.copy()
    probs = np.zeros((T * H, n_pos), np.float32)
    batch, steps = np.zeros((T, H, hd), np.float32), np.zeros((T, H, hd), np.float32)
    attention_f32kv_parallel(batch, q, k, v, k_cache, v_cache, pos0, np.float32(0.125), window, probs)
    for t in range(T):
        attention_f32kv(steps[t : t + 1], q[t : t + 1], k[t : t + 1], v[t : t + 1], kc, vc, pos0 + t,
                        np.float32(0.125), window, probs)
    assert np.array_equal(batch, steps)


@pytest.mark.parametrize("T", [1, 5])
def test_f32_cache_is_closer_to_float64_than_the_f16_cache(T):
    """The two caches a step can hold: float32 keeps attention within F32_ATOL of float64;
    the half cache rounds q, k, v and the probabilities (llama.cpp's arithmetic)."""
    H, Hkv, hd, n_ctx, pos0 = 6, 2, 64, 50, 3
    q, k, v, _, _, K, V = make_case(10, T, H, Hkv, hd, 64, pos0)
    results = {}
    for kv_type in ("f16", "f32"):
        cache = KVCache(1, Hkv, n_ctx, hd, kv_type)
        out, probs = np.zeros((T, H, hd), np.float32), cache.scratch(T * H)
        if kv_type == "f32":
            cache.k[0, :, :pos0], cache.v[0, :, :, :pos0] = K[:, :pos0], V[:, :pos0].transpose(0, 2, 1)
            store_kv_f32(cache.k[0], cache.v[0], k, v, pos0)
            attend_f32kv_parallel(out, q, cache.k[0], cache.v[0], pos0, np.float32(0.125), 0, probs)
        else:
            cache.k[0, :, :pos0] = K[:, :pos0].astype(np.float16).view(np.uint16)
            cache.v[0, :, :, :pos0] = V[:, :pos0].astype(np.float16).view(np.uint16).transpose(0, 2, 1)
            store_kv(cache.k[0], cache.v[0], k, v, pos0)
            attend_f16kv_parallel(out, q, cache.k[0], cache.v[0], pos0, np.float32(0.125), 0, probs, F16_TO_F32)
        results[kv_type] = out
    ref = attention_ref(q, K, V, pos0, 0.125, 0)
    f32_err = np.abs(results["f32"] - ref).max()
    f16_err = np.abs(results["f16"] - ref).max()
    assert f32_err < F32_ATOL < f16_err


def test_kv_cache_types():
    f16, f32 = KVCache(2, 3, 100, 64), KVCache(2, 3, 100, 64, "f32")
    assert f16.kv_type == "f16" and f16.k.dtype == np.uint16 and f16.v.dtype == np.uint16
    assert f32.kv_type == "f32" and f32.k.dtype == np.float32 and f32.v.shape == (2, 3, 64, 128)
    assert f32.nbytes == 2 * f16.nbytes and f32.n_pos == f16.n_pos == 128
    for bad in ("bf16", "F32", None, 32):
        with pytest.raises(ParameterError, match="kv_type"):
            KVCache(2, 3, 100, 64, bad)
