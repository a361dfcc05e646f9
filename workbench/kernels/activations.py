"""Activations of the feed-forward block.

`gate_up` is the (T, 2*d_ff) output of the fused gate+up projection, or two separate
arrays; the result is act(gate) * up written into `out` (T, d_ff). `gelu_tanh_f32` is
the ungated one of GPT-2 (out = gelu_tanh(x), float32, transformers' order of operations).
Their tanh is `fpmath.tanhf` (within 1 ulp, as torch's own; libm's is a call per value).

`geglu_tanh_table_f32` is GELU the way ggml's CPU backend computes it (GGML_GELU_FP16):
gate rounded to half, looked up in a 65,536-entry table of half-rounded results. It
differs from the exact formula by up to a half ulp of gate and of the result, and it is
what makes near-tied Gemma tokens fall like llama.cpp's.
"""

import math

import numpy as np
from numba import prange

from workbench.kernels.half import F16_TO_F32, f32_to_f16_bits
from workbench.kernels.fpmath import silu_ggml, tanhf
from workbench.kernels.jit import njit_parallel, njit_serial

_SQRT_2_OVER_PI = np.float32(math.sqrt(2.0 / math.pi))


def _swiglu(out, gate, up):
    # silu(gate) * up, silu with ggml's exp polynomial (ggml_v_silu) so rounding matches
    # (row views: a loop over 1-d rows vectorizes, ggml's 16 lanes at a time, also in place)
    T, n = out.shape
    for t in prange(T):
        o, g, u = out[t], gate[t], up[t]
        for i in range(n):
            o[i] = silu_ggml(g[i]) * u[i]


def _geglu_tanh(out, gate, up):
    # gelu_tanh(gate) * up (Gemma), gelu_tanh(x) = 0.5x(1 + tanh(sqrt(2/pi)(x + 0.044715x^3)))
    T, n = out.shape
    for t in prange(T):
        for i in range(n):
            x = gate[t, i]
            inner = _SQRT_2_OVER_PI * x * (np.float32(1.0) + np.float32(0.044715) * x * x)
            out[t, i] = np.float32(0.5) * x * (np.float32(1.0) + tanhf(inner)) * up[t, i]


def _geglu_tanh_in_place(gate, up):
    # gate = gelu_tanh(gate) * up, `_geglu_tanh`'s formula on one array (as `_swiglu_in_place`:
    # with `out` being `gate` it ran scalar, 66 us for Gemma 1B's 6912 values against 12)
    T, n = gate.shape
    for t in prange(T):
        g, u = gate[t], up[t]
        for i in range(n):
            x = g[i]
            inner = _SQRT_2_OVER_PI * x * (np.float32(1.0) + np.float32(0.044715) * x * x)
            g[i] = np.float32(0.5) * x * (np.float32(1.0) + tanhf(inner)) * u[i]


def _swiglu_in_place(gate, up):
    # gate = silu(gate) * up: an `out` that is `gate` made LLVM's overlap check fail and
    # the loop run scalar (5x slower); one array read and written at the same index passes
    T, n = gate.shape
    for t in prange(T):
        g, u = gate[t], up[t]
        for i in range(n):
            g[i] = silu_ggml(g[i]) * u[i]


swiglu_f32 = njit_serial(_swiglu)
swiglu_f32_parallel = njit_parallel(_swiglu)
swiglu_in_place_f32 = njit_serial(_swiglu_in_place)
swiglu_in_place_f32_parallel = njit_parallel(_swiglu_in_place)
geglu_tanh_f32 = njit_serial(_geglu_tanh)
geglu_tanh_f32_parallel = njit_parallel(_geglu_tanh)
geglu_tanh_in_place_f32 = njit_serial(_geglu_tanh_in_place)
geglu_tanh_in_place_f32_parallel = njit_parallel(_geglu_tanh_in_place)


def _gelu_tanh(out, x):
    # out (T, n) = gelu_tanh(x) (GPT-2's "gelu_new"), ungated, every step in float32 and in
    # transformers' NewGELUActivation order, 0.5x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3))),
    # so values round as torch's do (x^3 as x*x*x, as torch.pow(x, 3.0) computes it)
    T, n = out.shape
    for t in prange(T):
        for i in range(n):
            v = x[t, i]
            inner = _SQRT_2_OVER_PI * (v + np.float32(0.044715) * (v * v * v))
            out[t, i] = np.float32(0.5) * v * (np.float32(1.0) + tanhf(inner))


def _gelu_tanh_in_place(x):
    # x = gelu_tanh(x), the same formula: with `out` being `x`, LLVM's overlap check failed
    # and `_gelu_tanh` ran scalar, 21 us for GPT-2's 3072 values against 5.6 (AMD EPYC
    # Zen 4, 1 thread); one array read and written at the same index vectorizes
    T, n = x.shape
    for t in prange(T):
        r = x[t]
        for i in range(n):
            v = r[i]
            inner = _SQRT_2_OVER_PI * (v + np.float32(0.044715) * (v * v * v))
            r[i] = np.float32(0.5) * v * (np.float32(1.0) + tanhf(inner))


gelu_tanh_f32 = njit_serial(_gelu_tanh)
gelu_tanh_f32_parallel = njit_parallel(_gelu_tanh)
gelu_tanh_in_place_f32 = njit_serial(_gelu_tanh_in_place)
gelu_tanh_in_place_f32_parallel = njit_parallel(_gelu_tanh_in_place)


def _gelu_tanh_f16_table() -> np.ndarray:
    # ggml_cpu_init: table[h] = f16(gelu(f32(h))) for every half h, evaluated as GCC
    # compiles ggml_gelu_f32: 1 + a*x*x contracted to fma(a*x, x, 1), tanhf correctly
    # rounded, the rest plain float32 (checked bit for bit against libggml-cpu's table).
    x = F16_TO_F32
    with np.errstate(all="ignore"):
        inner = ((np.float32(0.044715) * x).astype(np.float64) * x + 1.0).astype(np.float32)
        th = np.tanh((_SQRT_2_OVER_PI * x * inner).astype(np.float64)).astype(np.float32)
        y = np.float32(0.5) * x * (np.float32(1.0) + th)
    return y.astype(np.float16).astype(np.float32)


# half bits of x -> gelu_tanh(x) as ggml's table gives it, float32 (256 KiB)
GELU_TANH_F16_TABLE = _gelu_tanh_f16_table()


def _geglu_tanh_table(out, gate, up, table):
    # gate, up, out (T, n) C-contiguous; ggml_vec_geglu_f32: saturate beyond |x| >= 10,
    # else look up the half-rounded gate in `table` (GELU_TANH_F16_TABLE)
    T, n = out.shape
    bits = gate.reshape(-1).view(np.uint32)
    for t in prange(T):
        for i in range(n):
            x = gate[t, i]
            if x <= np.float32(-10.0):
                out[t, i] = np.float32(0.0)
            elif x >= np.float32(10.0):
                out[t, i] = x * up[t, i]
            else:
                b = bits[t * n + i]
                a = b & np.uint32(0x7FFFFFFF)
                if a >= np.uint32(0x38800000):  # a normal half (|x| >= 2**-14): rebias, round to even
                    h = (a - np.uint32(0x38000000) + np.uint32(0x0FFF) + ((a >> np.uint32(13)) & np.uint32(1)))
                    h = (h >> np.uint32(13)) | ((b >> np.uint32(16)) & np.uint32(0x8000))
                else:  # tiny (or nan): the general conversion
                    h = np.uint32(f32_to_f16_bits(b))
                out[t, i] = table[h] * up[t, i]


geglu_tanh_table_f32 = njit_serial(_geglu_tanh_table)
geglu_tanh_table_f32_parallel = njit_parallel(_geglu_tanh_table)
