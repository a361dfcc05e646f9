"""Rotary position embeddings, with ggml's rounding.

`rope_tables` builds cos/sin per (position, pair) as ggml's rope cache does: theta
starts at the position and is multiplied by base**(-2/n_dims) once per pair, in float32,
and cos/sin come from libm's cosf/sinf. The rotation uses the fused multiply-adds that
GCC emits for ggml's `x0*cos - x1*sin`, `x0*sin + x1*cos` (checked against llama.cpp's
tensors). Two pairings exist: `normal` rotates adjacent elements (2i, 2i+1) — the order
GGUF Llama files use after the converter permuted Q/K — and `neox` rotates
(i, i + n_dims/2) — Gemma, GPT-NeoX and HF-layout Llama.
"""

import numpy as np
from numba import prange

from workbench.kernels.fpmath import cosf, fmaf, sinf
from workbench.kernels.jit import njit_parallel, njit_serial


@njit_serial
def _fill_tables(cos, sin, theta_scale):
    n_ctx, half = cos.shape
    for p in range(n_ctx):
        theta = np.float32(p)
        for i in range(half):
            cos[p, i] = cosf(theta)
            sin[p, i] = sinf(theta)
            theta = np.float32(theta * theta_scale)


def rope_tables(n_ctx: int, n_dims: int, base: float) -> tuple[np.ndarray, np.ndarray]:
    """cos, sin tables of shape (n_ctx, n_dims // 2), float32."""
    theta_scale = np.float32(np.float32(base) ** np.float32(-2.0 / n_dims))
    cos = np.empty((n_ctx, n_dims // 2), dtype=np.float32)
    sin = np.empty((n_ctx, n_dims // 2), dtype=np.float32)
    _fill_tables(cos, sin, theta_scale)
    return cos, sin


def _rope(x, pos0, cos, sin, n_dims, neox):
    # x (T, H, head_dim) rotated in place; token t sits at position pos0 + t.
    T, H, _ = x.shape
    half = n_dims // 2
    for t in prange(T):
        p = pos0 + t
        for h in range(H):
            for i in range(half):
                if neox:
                    a, b = i, i + half
                else:
                    a, b = 2 * i, 2 * i + 1
                x0 = x[t, h, a]
                x1 = x[t, h, b]
                c = cos[p, i]
                s = sin[p, i]
                x[t, h, a] = fmaf(x0, c, -(x1 * s))
                x[t, h, b] = fmaf(x0, s, x1 * c)


rope_f32 = njit_serial(_rope)
rope_f32_parallel = njit_parallel(_rope)
