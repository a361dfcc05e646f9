"""The vectorized forms of the prefill's attention and activations give the bits of the
plain forms they replaced (which the greedy goldens pin to llama.cpp's)."""

import math

import numpy as np
import pytest

from workbench.kernels.activations import swiglu_f32, swiglu_in_place_f32_parallel
from workbench.kernels.attention import _dot_f16, attn_scores, attn_softmax, attn_values, store_kv
from workbench.kernels.fpmath import (
    _C1, _C2, _C3, _C4, _C5, _EXP_SHIFT, _LN2_HI, _LN2_LO, _LOG2E, _ONE, expf_ggml, fmaf, reduce16,
)
from workbench.kernels.half import F16_TO_F32, f32_to_f16_bits
from workbench.kernels.jit import njit_serial
from workbench.nn.step import swiglu


@njit_serial
def _expf_ldexp(x):
    # ggml_v_expf lane by lane with libm's ldexp for vscalefps (the form before scale2)
    z = fmaf(x, _LOG2E, _EXP_SHIFT)
    n = z - _EXP_SHIFT
    b = fmaf(-n, _LN2_LO, fmaf(-n, _LN2_HI, x))
    u = b * b
    j = fmaf(fmaf(fmaf(_C5, b, _C4), u, fmaf(_C3, b, _C2)), u, fmaf(_C1, b, _ONE))
    if abs(n) > np.float32(192.0):
        return np.float32(0.0) if n <= 0 else np.float32(np.inf)
    return np.float32(math.ldexp(np.float64(j), int(n)))


@njit_serial
def _both(x, a, b):
    for i in range(x.size):
        a[i] = _expf_ldexp(x[i])
    for i in range(x.size):  # this loop vectorizes
        b[i] = expf_ggml(x[i])


def test_expf_without_libm_ldexp_keeps_every_bit():
    rng = np.random.default_rng(0)
    x = np.concatenate([
        rng.uniform(-200, 200, 400_000), rng.uniform(-104, -80, 200_000), rng.uniform(80, 90, 50_000),
        np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 88.72, -87.33, -103.97]),
    ]).astype(np.float32)
    a, b = np.empty_like(x), np.empty_like(x)
    _both(x, a, b)
    same = (a.view(np.uint32) == b.view(np.uint32)) | (np.isnan(a) & np.isnan(b))
    assert same.all(), x[~same][:5]


@pytest.mark.parametrize("T", [1, 2, 7])
def test_attention_tiles_keep_the_per_key_order(T):
    """Four keys (scores) and four rows of V^T (values) per pass give each output the
    bits of its own 16-lane chain and `vsum` (tinyBLAS's order, prefill), or of its four
    chains over 64-element chunks and `vsum4` (vec_dot_f16's, decode), ragged ends included."""
    rng = np.random.default_rng(T)
    H, Hkv, hd, n_pos, pos0 = 4, 2, 72, 192, 37  # hd = 72: four rows of V^T, and a 16-lane tail
    for hd in (64, 72):
        q = rng.standard_normal((T, H, hd)).astype(np.float32)
        k, v = (rng.standard_normal((T, Hkv, hd)).astype(np.float32) for _ in range(2))
        kc, vc = np.zeros((Hkv, n_pos, hd), np.uint16), np.zeros((Hkv, hd, n_pos), np.uint16)
        kc[:, :pos0] = rng.standard_normal((Hkv, pos0, hd)).astype(np.float16).view(np.uint16)
        vc[:, :, :pos0] = rng.standard_normal((Hkv, hd, pos0)).astype(np.float16).view(np.uint16)
        store_kv(kc, vc, k, v, pos0)
        probs = np.zeros((T * H, n_pos + hd), np.float32)
        scale = np.float32(0.125)
        attn_scores(q, kc, pos0, scale, 0, probs, F16_TO_F32)
        batched = T > 1
        tail = hd - hd % (16 if batched else 64)
        for t in range(T):
            for h in range(H):
                p, keys = probs[t * H + h], kc[h // (H // Hkv)]
                q16 = p[n_pos + hd - hd:]
                for j in range(pos0 + t + 1):
                    s = _dot_f16(keys[j], q16, tail, batched)
                    s += sum(np.float64(q16[d] * F16_TO_F32[keys[j, d]]) for d in range(tail, hd))
                    assert np.float32(np.float32(s) * scale).view(np.uint32) == p[j].view(np.uint32), (t, h, j)
        attn_softmax(probs, T, H, pos0, 0, F16_TO_F32)
        out = np.zeros((T, H, hd), np.float32)
        attn_values(out, probs, vc, pos0, 0)
        for t in range(T):
            for h in range(H):
                p, values, hi = probs[t * H + h], vc[h // (H // Hkv)], pos0 + t + 1 + (-(pos0 + t + 1)) % 64
                want = [np.float32(_dot_f16(values[d, 0:hi], p[0:hi], hi, batched)) for d in range(hd)]
                assert np.array_equal(np.array(want, np.float32).view(np.uint32), out[t, h].view(np.uint32))


@njit_serial
def _softmax_before(p, start, n_keys, f16):
    # the batched softmax before its loops were made to vectorize: exps chunk by chunk
    # with libm's ldexp, probabilities through the bit conversion and the half table
    best = -np.inf
    for j in range(start, n_keys):
        best = max(best, p[j])
    lo = start - start % 16
    hi = n_keys + (-n_keys) % 64
    p[lo:start] = 0.0
    p[n_keys:hi] = 0.0
    total = 0.0
    for c0 in range(lo, n_keys, 16):
        for j in range(max(c0, start), min(c0 + 16, n_keys)):
            p[j] = _expf_ldexp(p[j] - best)
        total += np.float64(reduce16(p[c0 : c0 + 16]))
    inv = np.float32(1.0 / total)
    pbits = p.view(np.uint32)
    for j in range(start, n_keys):
        p[j] = p[j] * inv
        p[j] = f16[f32_to_f16_bits(pbits[j])]


@pytest.mark.parametrize("window", [0, 45])
def test_softmax_gives_the_bits_of_its_scalar_form(window):
    rng = np.random.default_rng(3)
    T, H, n_pos, hd, pos0 = 3, 2, 128, 64, 60
    probs = (rng.standard_normal((T * H, n_pos + hd)) * 8).astype(np.float32)
    probs[0, 5] = -120.0  # an exp below float32's normal range
    got, want = probs.copy(), probs.copy()
    attn_softmax(got, T, H, pos0, window, F16_TO_F32)
    for r in range(T * H):
        n = pos0 + r // H + 1
        _softmax_before(want[r], n - window if 0 < window < n else 0, n, F16_TO_F32)
    assert np.array_equal(want.view(np.uint32), got.view(np.uint32))


def test_swiglu_in_place_equals_out_of_place():
    rng = np.random.default_rng(9)
    gu = (rng.standard_normal(2 * 5 * 200) * 6).astype(np.float32)
    g, u = gu[:1000].reshape(5, 200), gu[1000:].reshape(5, 200)
    want = np.empty_like(g)
    swiglu_f32(want, g, u)
    for kernel in (swiglu_in_place_f32_parallel, lambda g_, u_: swiglu(g_, g_, u_)):
        g2 = g.copy()
        kernel(g2, u)
        assert np.array_equal(want.view(np.uint32), g2.view(np.uint32))


@pytest.mark.parametrize("rows, cols, T", [(4, 64, 6), (7, 100, 13), (33, 1152, 60), (9, 200, 97), (8, 128, 32), (5, 64, 5)])
def test_f32_prefill_tiles_give_each_token_the_bits_of_decode(rows, cols, T):
    """The f32 prefill (4 x 6 tiles, the last tokens in a narrower one, the four chains one
    after another, token blocks of 48, columns past the last 64 one by one) against
    one-token calls of the same kernel."""
    from workbench.kernels.formats.floats import matvec_f32_lanes64, matvec_f32_lanes64_serial

    rng = np.random.default_rng(rows * cols + T)
    w = rng.standard_normal((rows, cols), dtype=np.float32).view(np.uint8).reshape(rows, 4 * cols)
    x = rng.standard_normal((T, cols), dtype=np.float32)
    empty = (np.empty(0, np.int8), np.empty(0, np.int32), np.empty(0, np.float32))
    want = np.empty((T, rows), np.float32)
    for t in range(T):
        matvec_f32_lanes64_serial(want[t : t + 1], w, x[t : t + 1], *empty)
    for kernel in (matvec_f32_lanes64, matvec_f32_lanes64_serial):
        got = np.full((T, rows), np.nan, np.float32)
        kernel(got, w, x, *empty)
        assert np.array_equal(got.view(np.uint32), want.view(np.uint32))
