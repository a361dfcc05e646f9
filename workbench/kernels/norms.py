"""Normalization kernels: RMSNorm (Llama, Gemma) and LayerNorm (GPT-2).

Each writes into `out` and trusts its caller (a model's compiled step, over buffers
`nn.state` sized at load) for shapes. As in ggml, each square is rounded to float32 and then summed in float64, so
that the normalized values round the same way as llama.cpp's.
"""

import numpy as np
from numba import prange

from workbench.kernels.jit import njit_parallel, njit_serial


def _rmsnorm(out, x, w, eps):
    # x (T, d), w (d,) -> out (T, d) = x / rms(x) * w
    T, d = x.shape
    for t in prange(T):
        acc = 0.0  # float64 sum of float32 squares, as ggml's rms_norm
        for i in range(d):
            v = x[t, i]
            acc += np.float64(v * v)
        mean = np.float32(acc / d)
        scale = np.float32(1.0) / np.sqrt(mean + np.float32(eps))
        for i in range(d):
            out[t, i] = (x[t, i] * scale) * w[i]


def _layernorm(out, x, w, b, eps):
    # x (T, d), w (d,), b (d,) -> out (T, d) = (x - mean) / std * w + b
    T, d = x.shape
    for t in prange(T):
        s = 0.0
        for i in range(d):
            s += np.float64(x[t, i])
        mean = np.float32(s / d)
        v = 0.0
        for i in range(d):
            c = np.float64(x[t, i] - mean)
            v += c * c
        scale = np.float32(1.0) / np.sqrt(np.float32(v / d) + np.float32(eps))
        for i in range(d):
            out[t, i] = ((x[t, i] - mean) * scale) * w[i] + b[i]


rmsnorm_f32 = njit_serial(_rmsnorm)
rmsnorm_f32_parallel = njit_parallel(_rmsnorm)
layernorm_f32 = njit_serial(_layernorm)
layernorm_f32_parallel = njit_parallel(_layernorm)
