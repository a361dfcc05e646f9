"""Gated activations of the feed-forward block.

`gate_up` is the (T, 2*d_ff) output of the fused gate+up projection, or two separate
arrays; the result is act(gate) * up written into `out` (T, d_ff).
"""

import math

import numpy as np
from numba import prange

from workbench.kernels.jit import njit_parallel, njit_serial

_SQRT_2_OVER_PI = np.float32(math.sqrt(2.0 / math.pi))


def _swiglu(out, gate, up):
    # silu(gate) * up, with silu(x) = x / (1 + exp(-x)) as ggml computes it
    T, n = out.shape
    for t in prange(T):
        for i in range(n):
            g = gate[t, i]
            out[t, i] = (g / (np.float32(1.0) + np.exp(-g))) * up[t, i]


def _geglu_tanh(out, gate, up):
    # gelu_tanh(gate) * up (Gemma), gelu_tanh(x) = 0.5x(1 + tanh(sqrt(2/pi)(x + 0.044715x^3)))
    T, n = out.shape
    for t in prange(T):
        for i in range(n):
            x = gate[t, i]
            inner = _SQRT_2_OVER_PI * x * (np.float32(1.0) + np.float32(0.044715) * x * x)
            out[t, i] = np.float32(0.5) * x * (np.float32(1.0) + np.tanh(inner)) * up[t, i]


swiglu_f32 = njit_serial(_swiglu)
swiglu_f32_parallel = njit_parallel(_swiglu)
geglu_tanh_f32 = njit_serial(_geglu_tanh)
geglu_tanh_f32_parallel = njit_parallel(_geglu_tanh)
