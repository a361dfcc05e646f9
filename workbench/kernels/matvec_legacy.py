"""matvec kernels for the 32-element block formats q8_0, q4_0, q4_1, q5_0.

Contract of every `matvec_<fmt>(out, w, x)`:
    out (T, rows) float32 = x (T, cols) float32 @ W.T, W given as raw GGUF blocks
    w (rows, cols / 32 * type_size) uint8; all arrays C-contiguous and already validated
    by `workbench.kernels.linear` (these kernels check nothing).
The arithmetic is llama.cpp's x86 decode path, operation for operation, so results are
equal bit for bit to it (tests/test_kernels.py calls llama.cpp's own kernels). x is
quantized once per call to the weight's vec_dot format (q8_0, or q8_1 for q4_1). Then
q8_0 / q5_0 / q4_1 follow `ggml_vec_dot_<fmt>_<vec_dot>` (AVX2 path): every block adds
fp16(d_w) * d_x * (sum of products 4k..4k+3, k = 0..7) into 8 float32 lanes with fused
multiply-adds, q5_0's offset (q - 16) applied before the products; the lanes are summed
as `hsum_float_8` once per row, and q4_1 then adds its sum over blocks of m_w * s_x
(q8_1's s = d_x * sum q_x, stored as fp16). q4_0 follows the repacked
`ggml_gemv_q4_0_8x8_q8_0` that llama.cpp runs on q4_0 weights instead (see there).
Prefill (T > 1) computes every token exactly as decode would; llama.cpp's own prefill
GEMMs (tinyBLAS, repacked gemm) are not checked against. Rows run in parallel (`prange`,
numba's thread count); each weight row is read once for all T tokens.

`matvec_<fmt>` is the parallel variant, `matvec_<fmt>_serial` the same code compiled
without threads. Block layouts are documented in `workbench.quant.formats`.
"""

import numpy as np
from numba import prange

from workbench.kernels.activation_quant import quantize_rows_q8_0, quantize_rows_q8_1
from workbench.kernels.jit import njit_parallel, njit_serial
from workbench.kernels.simd import (
    fma_quads,
    fmaf,
    load_f16,
    load_u32,
    pdot_i8,
    pdot_q4,
    vsum,
    vsum_quads,
    zeros_f32,
)

QK = 32


def _matvec_q8_0(out, w, x):
    # W (rows, nb*34) @ x (T, cols) -> out (T, rows); block = f16 d, i8 q[32]
    T, cols = x.shape
    nb = cols // QK
    xq = np.empty((T, cols), np.int16)
    xd = np.empty((T, nb), np.float32)
    xs = np.empty((T, nb), np.int32)
    quantize_rows_q8_0(x, xq, xd, xs)
    for r in prange(w.shape[0]):
        row = w[r]
        for t in range(T):
            acc = zeros_f32()
            for b in range(nb):
                o = b * 34
                p = pdot_i8(row, o + 2, xq, t * cols + b * QK)
                acc = fma_quads(acc, load_f16(row, o) * xd[t, b], p)
            out[t, r] = vsum_quads(acc)


def _matvec_q4_0(out, w, x):
    # W (rows, nb*18) @ x (T, cols) -> out (T, rows); block = f16 d, u8 nibbles[16], w = d*(q-8)
    # As llama.cpp's repacked `ggml_gemv_q4_0_8x8_q8_0`, not its vec_dot: one exact integer
    # per block, acc = fma(sum (q - 8) q_x, d_w * d_x, acc)
    T, cols = x.shape
    nb = cols // QK
    xq = np.empty((T, cols), np.int16)
    xd = np.empty((T, nb), np.float32)
    xs = np.empty((T, nb), np.int32)
    quantize_rows_q8_0(x, xq, xd, xs)
    for r in prange(w.shape[0]):
        row = w[r]
        for t in range(T):
            acc = np.float32(0)
            for b in range(nb):
                o = b * 18
                sumi = vsum(pdot_q4(row, o + 2, 0, 8, xq, t * cols + b * QK))
                acc = fmaf(np.float32(sumi), load_f16(row, o) * xd[t, b], acc)
            out[t, r] = acc


def _matvec_q5_0(out, w, x):
    # W (rows, nb*22) @ x (T, cols) -> out (T, rows); block = f16 d, u32 qh, u8 nibbles[16]
    # q = nibble | (bit j of qh) << 4, w = d * (q - 16)
    T, cols = x.shape
    nb = cols // QK
    xq = np.empty((T, cols), np.int16)
    xd = np.empty((T, nb), np.float32)
    xs = np.empty((T, nb), np.int32)
    quantize_rows_q8_0(x, xq, xd, xs)
    for r in prange(w.shape[0]):
        row = w[r]
        for t in range(T):
            acc = zeros_f32()
            for b in range(nb):
                o = b * 22
                p = pdot_q4(row, o + 6, load_u32(row, o + 2), 16, xq, t * cols + b * QK)
                acc = fma_quads(acc, load_f16(row, o) * xd[t, b], p)
            out[t, r] = vsum_quads(acc)


def _matvec_q4_1(out, w, x):
    # W (rows, nb*20) @ x (T, cols) -> out (T, rows); block = f16 d, f16 m, u8 nibbles[16]
    # sum (d q + m) x = d d_x sum q q_x + m s_x, s_x = q8_1's d_x * sum q_x
    T, cols = x.shape
    nb = cols // QK
    xq = np.empty((T, cols), np.int16)
    xd = np.empty((T, nb), np.float32)
    xs = np.empty((T, nb), np.float32)
    quantize_rows_q8_1(x, xq, xd, xs)
    for r in prange(w.shape[0]):
        row = w[r]
        for t in range(T):
            acc = zeros_f32()
            acc_m = np.float32(0)
            for b in range(nb):
                o = b * 20
                acc_m += load_f16(row, o + 2) * xs[t, b]
                p = pdot_q4(row, o + 4, 0, 0, xq, t * cols + b * QK)
                acc = fma_quads(acc, load_f16(row, o) * xd[t, b], p)
            out[t, r] = vsum_quads(acc) + acc_m


matvec_q8_0 = njit_parallel(_matvec_q8_0)
matvec_q4_0 = njit_parallel(_matvec_q4_0)
matvec_q4_1 = njit_parallel(_matvec_q4_1)
matvec_q5_0 = njit_parallel(_matvec_q5_0)

matvec_q8_0_serial = njit_serial(_matvec_q8_0)
matvec_q4_0_serial = njit_serial(_matvec_q4_0)
matvec_q4_1_serial = njit_serial(_matvec_q4_1)
matvec_q5_0_serial = njit_serial(_matvec_q5_0)
