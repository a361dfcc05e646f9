"""matvec kernels for float weights: f32, f16, bf16.

Contract of every `matvec_<fmt>(out, w, x)`:
    out (T, rows) float32 = x (T, cols) float32 @ W.T, W given as raw GGUF bytes
    w (rows, cols * 4 or 2) uint8; all arrays C-contiguous and already validated by
    `workbench.kernels.linear` (these kernels check nothing).
As llama.cpp's CPU backend, x is first rounded to the weight's precision for f16 and
bf16 (its vec_dot type), so every product is exact in float32; products are summed in
16 float32 lanes with fused multiply-adds (16 columns at a time, the tail one by one)
and the lanes pairwise at the end of the row.

`matvec_<fmt>` is the parallel variant, `matvec_<fmt>_serial` the same code without
threads.
"""

import numpy as np
from numba import prange

from workbench.kernels.activation_quant import round_rows_bf16, round_rows_f16
from workbench.kernels.jit import njit_parallel, njit_serial
from workbench.kernels.simd import (
    LANES,
    fma_bf16,
    fma_f16,
    fma_f32,
    load_bf16,
    load_f16,
    load_f32,
    vsum,
    zeros_f32,
)


def _matvec_f32(out, w, x):
    # W (rows, cols*4) @ x (T, cols) -> out (T, rows)
    T, cols = x.shape
    body = cols - cols % LANES
    for r in prange(w.shape[0]):
        row = w[r]
        for t in range(T):
            acc = zeros_f32()
            for j in range(0, body, LANES):
                acc = fma_f32(acc, row, 4 * j, x, t * cols + j)
            s = vsum(acc)
            for j in range(body, cols):
                s += load_f32(row, 4 * j) * x[t, j]
            out[t, r] = s


def _matvec_f16(out, w, x):
    # W (rows, cols*2) @ x (T, cols) -> out (T, rows); x rounded to fp16 first
    T, cols = x.shape
    xr = np.empty_like(x)
    round_rows_f16(x, xr)
    body = cols - cols % LANES
    for r in prange(w.shape[0]):
        row = w[r]
        for t in range(T):
            acc = zeros_f32()
            for j in range(0, body, LANES):
                acc = fma_f16(acc, row, 2 * j, xr, t * cols + j)
            s = vsum(acc)
            for j in range(body, cols):
                s += load_f16(row, 2 * j) * xr[t, j]
            out[t, r] = s


def _matvec_bf16(out, w, x):
    # W (rows, cols*2) @ x (T, cols) -> out (T, rows); x rounded to bf16 first
    T, cols = x.shape
    xr = np.empty_like(x)
    round_rows_bf16(x, xr)
    body = cols - cols % LANES
    for r in prange(w.shape[0]):
        row = w[r]
        for t in range(T):
            acc = zeros_f32()
            for j in range(0, body, LANES):
                acc = fma_bf16(acc, row, 2 * j, xr, t * cols + j)
            s = vsum(acc)
            for j in range(body, cols):
                s += load_bf16(row, 2 * j) * xr[t, j]
            out[t, r] = s


matvec_f32 = njit_parallel(_matvec_f32)
matvec_f16 = njit_parallel(_matvec_f16)
matvec_bf16 = njit_parallel(_matvec_bf16)

matvec_f32_serial = njit_serial(_matvec_f32)
matvec_f16_serial = njit_serial(_matvec_f16)
matvec_bf16_serial = njit_serial(_matvec_bf16)
