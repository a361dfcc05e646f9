"""`fpmath.tanhf`, the tanh of the exact-formula GELU (GPT-2, Gemma from safetensors): a
polynomial and expf_ggml instead of libm's call, within 1 ulp of the true tanh."""

import numpy as np

from workbench.kernels.activations import gelu_tanh_f32
from workbench.kernels.fpmath import tanhf
from workbench.kernels.jit import njit_serial


@njit_serial
def _tanh_all(x, out):
    for i in range(x.size):
        out[i] = tanhf(x[i])


def test_tanhf_is_within_one_ulp_everywhere():
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2**32, 2_000_000, dtype=np.uint64).astype(np.uint32)
    x = np.concatenate([
        bits.view(np.float32), rng.standard_normal(1_000_000).astype(np.float32) * 3,
        np.float32(1.0) + np.arange(-2000, 2000, dtype=np.float32) * np.float32(2**-23),  # the branch point
        np.array([0.0, 1e-30, 1e-45, 0.5, 9.0, 9.1, 88.0, 3e38], np.float32),
    ])
    x = x[np.isfinite(x)]
    x = np.concatenate([x, -x])
    out = np.empty_like(x)
    _tanh_all(x, out)
    true = np.tanh(x.astype(np.float64))
    ulp = np.spacing(np.abs(true.astype(np.float32))).astype(np.float64)
    err = np.abs(out - true) / ulp
    assert err.max() < 1.0, x[err.argmax()]
    assert (np.signbit(out) == np.signbit(x)).all()  # -0.0 stays -0.0


def test_tanhf_special_values():
    x = np.array([np.inf, -np.inf, np.nan, 0.0, -0.0], np.float32)
    out = np.empty_like(x)
    _tanh_all(x, out)
    assert out[0] == 1.0 and out[1] == -1.0 and np.isnan(out[2])
    assert out[3] == 0.0 and not np.signbit(out[3]) and np.signbit(out[4])


def test_gelu_uses_it_in_transformers_order():
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((3, 4096)) * 4).astype(np.float32)
    out = np.empty_like(x)
    gelu_tanh_f32(out, x)
    v = x.astype(np.float64)
    ref = 0.5 * v * (1.0 + np.tanh(np.sqrt(2 / np.pi) * (v + 0.044715 * v**3)))
    assert np.allclose(out, ref, rtol=2e-6, atol=1e-7)
