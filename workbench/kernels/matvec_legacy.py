"""matvec kernels for the 32-element block formats q8_0, q4_0, q4_1, q5_0.

Contract of every `matvec_<fmt>(out, w, x)`:
    out (T, rows) float32 = x (T, cols) float32 @ W.T, W given as raw GGUF blocks
    w (rows, cols / 32 * type_size) uint8; all arrays C-contiguous and already validated
    by `workbench.kernels.linear` (these kernels check nothing).
The arithmetic is llama.cpp's (`ggml_vec_dot_<fmt>_<vec_dot>` in ggml-cpu/arch/x86):
x is quantized once per call to the weight's vec_dot format (q8_0, or q8_1 for q4_1),
then each block adds d_w * d_x * (pairwise integer sums) into 16 float32 lanes with a
fused multiply-add, the lanes are summed once per row; q4_1 adds m_w * s_x, q4_0 / q5_0
d_w * (d_x * offset * sum q_x) with offset -8 / -16, precomputed per activation block. Rows run in parallel
(`prange`, numba's thread count); each weight row is read once for all T tokens.

`matvec_<fmt>` is the parallel variant, `matvec_<fmt>_serial` the same code compiled
without threads. Block layouts are documented in `workbench.quant.formats`.
"""

import numpy as np
from numba import prange

from workbench.kernels.activation_quant import quantize_rows_q8_0, quantize_rows_q8_1
from workbench.kernels.jit import njit_parallel, njit_serial
from workbench.kernels.simd import fma_block, load_f16, load_u32, pdot_i8, pdot_q4, vsum, zeros_f32

QK = 32


@njit_serial
def _block_offsets(xd, xs, offset):
    # d_x * (offset * sum q_x) per block, (T, nb) float32: the constant part of sum (q_w + offset) x
    out = np.empty(xd.shape, np.float32)
    for t in range(xd.shape[0]):
        for b in range(xd.shape[1]):
            out[t, b] = xd[t, b] * np.float32(offset * xs[t, b])
    return out


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
                acc = fma_block(acc, load_f16(row, o) * xd[t, b], p)
            out[t, r] = vsum(acc)


def _matvec_q4_0(out, w, x):
    # W (rows, nb*18) @ x (T, cols) -> out (T, rows); block = f16 d, u8 nibbles[16], w = d*(q-8)
    T, cols = x.shape
    nb = cols // QK
    xq = np.empty((T, cols), np.int16)
    xd = np.empty((T, nb), np.float32)
    xs = np.empty((T, nb), np.int32)
    quantize_rows_q8_0(x, xq, xd, xs)
    x_off = _block_offsets(xd, xs, -8)
    for r in prange(w.shape[0]):
        row = w[r]
        for t in range(T):
            acc = zeros_f32()
            acc_off = np.float32(0)
            for b in range(nb):
                o = b * 18
                # sum d (q - 8) x = d sum q x + d * (-8 sum x)
                d = load_f16(row, o)
                acc = fma_block(acc, d * xd[t, b], pdot_q4(row, o + 2, 0, xq, t * cols + b * QK))
                acc_off += d * x_off[t, b]
            out[t, r] = vsum(acc) + acc_off


def _matvec_q5_0(out, w, x):
    # W (rows, nb*22) @ x (T, cols) -> out (T, rows); block = f16 d, u32 qh, u8 nibbles[16]
    T, cols = x.shape
    nb = cols // QK
    xq = np.empty((T, cols), np.int16)
    xd = np.empty((T, nb), np.float32)
    xs = np.empty((T, nb), np.int32)
    quantize_rows_q8_0(x, xq, xd, xs)
    x_off = _block_offsets(xd, xs, -16)
    for r in prange(w.shape[0]):
        row = w[r]
        for t in range(T):
            acc = zeros_f32()
            acc_off = np.float32(0)
            for b in range(nb):
                o = b * 22
                # q = nibble | (bit j of qh) << 4; sum d (q - 16) x = d sum q x + d * (-16 sum x)
                d = load_f16(row, o)
                p = pdot_q4(row, o + 6, load_u32(row, o + 2), xq, t * cols + b * QK)
                acc = fma_block(acc, d * xd[t, b], p)
                acc_off += d * x_off[t, b]
            out[t, r] = vsum(acc) + acc_off


def _matvec_q4_1(out, w, x):
    # W (rows, nb*20) @ x (T, cols) -> out (T, rows); block = f16 d, f16 m, u8 nibbles[16]
    T, cols = x.shape
    nb = cols // QK
    xq = np.empty((T, cols), np.int16)
    xd = np.empty((T, nb), np.float32)
    xs = np.empty((T, nb), np.float32)  # q8_1's s = d_x * sum q_x
    quantize_rows_q8_1(x, xq, xd, xs)
    for r in prange(w.shape[0]):
        row = w[r]
        for t in range(T):
            acc = zeros_f32()
            acc_m = np.float32(0)
            for b in range(nb):
                o = b * 20
                # sum (d q + m) x = d d_x sum q q_x + m s_x
                p = pdot_q4(row, o + 4, 0, xq, t * cols + b * QK)
                acc = fma_block(acc, load_f16(row, o) * xd[t, b], p)
                acc_m += load_f16(row, o + 2) * xs[t, b]
            out[t, r] = vsum(acc) + acc_m


matvec_q8_0 = njit_parallel(_matvec_q8_0)
matvec_q4_0 = njit_parallel(_matvec_q4_0)
matvec_q4_1 = njit_parallel(_matvec_q4_1)
matvec_q5_0 = njit_parallel(_matvec_q5_0)

matvec_q8_0_serial = njit_serial(_matvec_q8_0)
matvec_q4_0_serial = njit_serial(_matvec_q4_0)
matvec_q4_1_serial = njit_serial(_matvec_q4_1)
matvec_q5_0_serial = njit_serial(_matvec_q5_0)
