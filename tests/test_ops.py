"""Parity of the non-matmul kernels (norms, rope, attention, activations, half) with numpy."""

import numpy as np
import pytest

from workbench.kernels.activations import (geglu_tanh_f32, geglu_tanh_in_place_f32, geglu_tanh_in_place_f32_parallel,
                                          swiglu_f32, swiglu_f32_parallel)
from workbench.kernels.attention import (
    attention_f16kv,
    attention_f16kv_parallel,
    attn_scores,
    attn_softmax,
    attn_values,
    store_kv,
)
from workbench.kernels.half import F16_TO_F32, f32_to_f16_bits
from workbench.kernels.isa.vectors import f16_bits
from workbench.kernels.jit import njit_serial
from workbench.kernels.norms import layernorm_f32, rmsnorm_f32, rmsnorm_f32_parallel
from workbench.kernels.rope import rope_f32, rope_f32_parallel, rope_tables

RTOL_F32 = 2e-6  # float32 kernels vs float64 numpy


@njit_serial
def _to_half_bits(a, f16c=False):
    """Half bits of a (float32) by the software rounding, or by F16C (the KV store's)."""
    bits = a.view(np.uint32)
    out = np.empty(a.size, np.uint16)
    for i in range(a.size):
        out[i] = f16_bits(a[i]) if f16c else f32_to_f16_bits(bits[i])
    return out


def test_f16_rounding_equals_numpy():
    rng = np.random.default_rng(0)
    scales = (1e-8, 1e-7, 6e-5, 1e-3, 1.0, 300.0, 6e4, 1e6)
    x = np.concatenate([rng.standard_normal(50_000).astype(np.float32) * np.float32(s) for s in scales])
    specials = [0.0, -0.0, np.inf, -np.inf, np.nan, 65504, 65519.9, 65520, 5.96e-8, 2.98e-8, 2.99e-8, 6.1035e-5]
    x = np.concatenate([x, np.array(specials, np.float32)])
    with np.errstate(over="ignore"):
        ref = x.astype(np.float16)
    got = _to_half_bits(x).view(np.float16)
    same = (ref.view(np.uint16) == got.view(np.uint16)) | (np.isnan(ref) & np.isnan(got))
    assert same.all()
    assert np.array_equal(F16_TO_F32[ref.view(np.uint16)[:1000]], ref[:1000].astype(np.float32))


def test_f16c_conversion_equals_the_software_rounding():
    # the KV cache store converts with F16C: the same bits for every value but nan payloads
    rng = np.random.default_rng(3)
    bits = np.concatenate([rng.integers(0, 2**32, 2_000_000, dtype=np.uint64).astype(np.uint32),
                           np.arange(0x33000000, 0x39000000, 37, dtype=np.uint32),  # subnormal halves, ties
                           np.arange(0x477FE000, 0x47801000, dtype=np.uint32)])  # the overflow edge
    bits = np.concatenate([bits, bits | np.uint32(0x80000000)])
    x = bits.view(np.float32)
    got, ref = _to_half_bits(x, True), _to_half_bits(x)
    nan = np.isnan(x)
    assert np.array_equal(got[~nan], ref[~nan])
    assert np.isnan(got[nan].view(np.float16)).all()


@pytest.mark.parametrize("kernel", [rmsnorm_f32, rmsnorm_f32_parallel])
def test_rmsnorm(kernel):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5, 576)).astype(np.float32)
    w = rng.standard_normal(576).astype(np.float32)
    out = np.empty_like(x)
    kernel(out, x, w, np.float32(1e-5))
    x64 = x.astype(np.float64)
    ref = x64 / np.sqrt((x64**2).mean(axis=1, keepdims=True) + 1e-5) * w
    np.testing.assert_allclose(out, ref, rtol=RTOL_F32 * 10, atol=1e-6)


def test_layernorm():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 64)).astype(np.float32) + 3
    w, b = rng.standard_normal(64).astype(np.float32), rng.standard_normal(64).astype(np.float32)
    out = np.empty_like(x)
    layernorm_f32(out, x, w, b, np.float32(1e-5))
    x64 = x.astype(np.float64)
    ref = (x64 - x64.mean(1, keepdims=True)) / np.sqrt(x64.var(1, keepdims=True) + 1e-5) * w + b
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


def test_rope_tables_follow_the_iterated_angle():
    cos, sin = rope_tables(100, 64, 100000.0)
    theta = np.arange(100, dtype=np.float64)[:, None] * 100000.0 ** (-2.0 * np.arange(32) / 64)
    np.testing.assert_allclose(cos, np.cos(theta), atol=2e-5)
    np.testing.assert_allclose(sin, np.sin(theta), atol=2e-5)


@pytest.mark.parametrize("neox", [False, True])
@pytest.mark.parametrize("kernel", [rope_f32, rope_f32_parallel])
def test_rope_pairings(kernel, neox):
    rng = np.random.default_rng(3)
    T, H, hd, pos0 = 4, 3, 16, 7
    x = rng.standard_normal((T, H, hd)).astype(np.float32)
    cos, sin = rope_tables(32, hd, 10000.0)
    got = x.copy()
    kernel(got, pos0, cos, sin, hd, neox)
    ref = x.astype(np.float64).copy()
    for t in range(T):
        c, s = cos[pos0 + t], sin[pos0 + t]
        a, b = (np.arange(hd // 2), np.arange(hd // 2) + hd // 2) if neox else (np.arange(0, hd, 2), np.arange(1, hd, 2))
        x0, x1 = x[t][:, a].astype(np.float64), x[t][:, b].astype(np.float64)
        ref[t][:, a] = x0 * c - x1 * s
        ref[t][:, b] = x0 * s + x1 * c
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)


def _attention_reference(q, K, V, n_keys_of, scale, window):
    """float64 attention with llama.cpp's f16 roundings of q and of the probabilities.
    K, V (Hkv, n, hd) hold the cached half values."""
    T, H, hd = q.shape
    Hkv = K.shape[0]
    out = np.zeros((T, H, hd))
    for t in range(T):
        n = n_keys_of(t)
        start = max(0, n - window) if window else 0
        for h in range(H):
            g = h // (H // Hkv)
            qh = q[t, h].astype(np.float16).astype(np.float64)
            s = (K[g, start:n] @ qh) * scale
            p = np.exp(s - s.max())
            p = (p / p.sum()).astype(np.float16).astype(np.float64)
            out[t, h] = p @ V[g, start:n]
    return out


@pytest.mark.parametrize("window", [0, 4])
@pytest.mark.parametrize("T", [1, 5])
@pytest.mark.parametrize("kernel", [attention_f16kv, attention_f16kv_parallel])
def test_attention_matches_reference_and_fills_cache(kernel, T, window):
    rng = np.random.default_rng(4)
    H, Hkv, hd, n_pos, pos0 = 6, 2, 64, 64, 3
    q = rng.standard_normal((T, H, hd)).astype(np.float32)
    k = rng.standard_normal((T, Hkv, hd)).astype(np.float32)
    v = rng.standard_normal((T, Hkv, hd)).astype(np.float32)
    old_k = rng.standard_normal((Hkv, pos0, hd)).astype(np.float16)
    old_v = rng.standard_normal((Hkv, pos0, hd)).astype(np.float16)
    k_cache = np.zeros((Hkv, n_pos, hd), np.uint16)  # half bits, V transposed (see KVCache)
    v_cache = np.zeros((Hkv, hd, n_pos), np.uint16)
    k_cache[:, :pos0] = old_k.view(np.uint16)
    v_cache[:, :, :pos0] = old_v.view(np.uint16).transpose(0, 2, 1)
    probs = np.zeros((T * H, n_pos + hd), np.float32)  # scores, then the query in half (KVCache.scratch)
    out = np.zeros((T, H, hd), np.float32)
    kernel(out, q, k, v, k_cache, v_cache, pos0, np.float32(0.2), window, probs, F16_TO_F32)
    k16, v16 = k.astype(np.float16).transpose(1, 0, 2), v.astype(np.float16).transpose(1, 0, 2)
    assert np.array_equal(k_cache[:, pos0 : pos0 + T], k16.view(np.uint16))
    assert np.array_equal(v_cache[:, :, pos0 : pos0 + T], v16.view(np.uint16).transpose(0, 2, 1))
    K = np.concatenate([old_k, k16], axis=1).astype(np.float64)
    V = np.concatenate([old_v, v16], axis=1).astype(np.float64)
    ref = _attention_reference(q, K, V, lambda t: pos0 + t + 1, 0.2, window)
    np.testing.assert_allclose(out, ref, rtol=1e-3, atol=2e-3)


@pytest.mark.parametrize("window", [0, 70])
@pytest.mark.parametrize("T", [1, 3])
def test_attention_phases_equal_the_fused_kernel(T, window):
    """The op-level trace path (four kernels) must give the fused kernel's bits."""
    rng = np.random.default_rng(6)
    H, Hkv, hd, n_pos, pos0 = 4, 1, 256, 192, 100
    q = rng.standard_normal((T, H, hd)).astype(np.float32)
    k, v = (rng.standard_normal((T, Hkv, hd)).astype(np.float32) for _ in range(2))
    caches = []
    for _ in range(2):
        kc = np.zeros((Hkv, n_pos, hd), np.uint16)
        vc = np.zeros((Hkv, hd, n_pos), np.uint16)
        kc[:, :pos0] = rng.standard_normal((Hkv, pos0, hd)).astype(np.float16).view(np.uint16)
        vc[:, :, :pos0] = rng.standard_normal((Hkv, hd, pos0)).astype(np.float16).view(np.uint16)
        caches.append((kc, vc))
    caches[1] = (caches[0][0].copy(), caches[0][1].copy())
    fused, split = np.zeros((T, H, hd), np.float32), np.zeros((T, H, hd), np.float32)
    probs = np.zeros((T * H, n_pos + hd), np.float32)  # scores, then the query in half (KVCache.scratch)
    attention_f16kv_parallel(fused, q, k, v, *caches[0], pos0, np.float32(0.0625), window, probs, F16_TO_F32)
    kc, vc = caches[1]
    store_kv(kc, vc, k, v, pos0)
    attn_scores(q, kc, pos0, np.float32(0.0625), window, probs, F16_TO_F32)
    attn_softmax(probs, T, H, pos0, window, F16_TO_F32)
    attn_values(split, probs, vc, pos0, window)
    assert np.array_equal(fused, split)
    assert np.array_equal(caches[0][0], kc) and np.array_equal(caches[0][1], vc)


def test_swiglu_and_geglu():
    rng = np.random.default_rng(5)
    g = rng.standard_normal((3, 100)).astype(np.float32) * 4
    u = rng.standard_normal((3, 100)).astype(np.float32)
    for kernel in (swiglu_f32, swiglu_f32_parallel):
        out = np.empty_like(g)
        kernel(out, g, u)
        g64 = g.astype(np.float64)
        np.testing.assert_allclose(out, g64 / (1 + np.exp(-g64)) * u, rtol=1e-5, atol=1e-6)
    out = np.empty_like(g)
    geglu_tanh_f32(out, g, u)
    g64 = g.astype(np.float64)
    ref = 0.5 * g64 * (1 + np.tanh(np.sqrt(2 / np.pi) * (g64 + 0.044715 * g64**3))) * u
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)
    for in_place in (geglu_tanh_in_place_f32, geglu_tanh_in_place_f32_parallel):  # as the gemma3 step runs it
        g2 = g.copy()
        in_place(g2, u)
        np.testing.assert_array_equal(g2, out)
