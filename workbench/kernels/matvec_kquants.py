"""matvec kernels for the 256-element k-quant formats q4_K and q6_K.

Contract of every `matvec_<fmt>(out, w, x)`:
    out (T, rows) float32 = x (T, cols) float32 @ W.T, W given as raw GGUF super-blocks
    w (rows, cols / 256 * type_size) uint8; all arrays C-contiguous and already validated
    by `workbench.kernels.linear` (these kernels check nothing).
The arithmetic is llama.cpp's (`ggml_vec_dot_q4_K_q8_K`, `ggml_vec_dot_q6_K_q8_K`):
x is quantized once per call to q8_K (float d, int8 q, per-16 bsums); in each
super-block the sub-block dots are multiplied by their integer scales and summed
exactly, then scaled once by d_w * d_x (fused into 16 float32 lanes). The offsets go
through the bsums: q4_K subtracts dmin_w * d_x * sum_j min_j * bsum_j, q6_K's
-32 * sum_j scale_j * bsum_j joins the super-block's integer sum.

`matvec_<fmt>` is the parallel variant (rows split over numba's threads),
`matvec_<fmt>_serial` the same code without threads. Layouts: `workbench.quant.formats`.
"""

import numpy as np
from numba import prange

from workbench.kernels.activation_quant import quantize_rows_q8_k
from workbench.kernels.jit import njit_parallel, njit_serial
from workbench.kernels.simd import (
    add_scaled,
    fma_block,
    load_f16,
    pdot_nibble,
    pdot_q6,
    vsum,
    zeros_f32,
    zeros_i32,
)

QK_K = 256


@njit_serial
def scale_min_k4(row, base, j):
    """Scale and min of sub-block j (0..7) from the 12 bytes at row[base] (q4_K)."""
    if j < 4:
        return np.int64(row[base + j] & 63), np.int64(row[base + j + 4] & 63)
    lo, hi, packed = np.int64(row[base + j - 4]), np.int64(row[base + j]), np.int64(row[base + j + 4])
    return (packed & 0x0F) | ((lo >> 6) << 4), (packed >> 4) | ((hi >> 6) << 4)


def _matvec_q4_k(out, w, x):
    # W (rows, nb*144) @ x (T, cols) -> out (T, rows)
    # super-block = f16 d, f16 dmin, 12 B scales, 128 B nibbles: 4 x 32 bytes whose low
    # nibbles are sub-block 2i and high nibbles sub-block 2i+1; w = d*sc*q - dmin*min
    T, cols = x.shape
    nb = cols // QK_K
    xq = np.empty((T, cols), np.int16)
    xd = np.empty((T, nb), np.float32)
    bsums = np.empty((T, cols // 16), np.int32)
    quantize_rows_q8_k(x, xq, xd, bsums)
    for r in prange(w.shape[0]):
        row = w[r]
        for t in range(T):
            acc = zeros_f32()
            acc_min = np.float32(0)
            for b in range(nb):
                o = b * 144
                xo = t * cols + b * QK_K
                p = zeros_i32()
                mins = 0
                for i in range(4):
                    sc_lo, mn_lo = scale_min_k4(row, o + 4, 2 * i)
                    sc_hi, mn_hi = scale_min_k4(row, o + 4, 2 * i + 1)
                    q = o + 16 + 32 * i
                    p = add_scaled(p, pdot_nibble(row, q, 0, xq, xo + 64 * i), sc_lo, sc_lo)
                    p = add_scaled(p, pdot_nibble(row, q, 4, xq, xo + 64 * i + 32), sc_hi, sc_hi)
                    g = b * 16 + 4 * i  # bsums come per 16 values: 2 per sub-block
                    mins += mn_lo * (bsums[t, g] + bsums[t, g + 1])
                    mins += mn_hi * (bsums[t, g + 2] + bsums[t, g + 3])
                acc = fma_block(acc, xd[t, b] * load_f16(row, o), p)
                acc_min += (xd[t, b] * load_f16(row, o + 2)) * np.float32(mins)
            out[t, r] = vsum(acc) - acc_min


def _matvec_q6_k(out, w, x):
    # W (rows, nb*210) @ x (T, cols) -> out (T, rows)
    # super-block = 128 B ql (low 4 bits), 64 B qh (high 2 bits), 16 int8 scales, f16 d;
    # value 128h + 32k + l takes ql[64h + 32(k&1) + l] nibble k>>1 and qh[32h + l] bits
    # 2k..2k+1, scale (128h + 32k + l) // 16; w = d * sc * (q - 32)
    T, cols = x.shape
    nb = cols // QK_K
    xq = np.empty((T, cols), np.int16)
    xd = np.empty((T, nb), np.float32)
    bsums = np.empty((T, cols // 16), np.int32)
    quantize_rows_q8_k(x, xq, xd, bsums)
    for r in prange(w.shape[0]):
        row = w[r]
        for t in range(T):
            acc = zeros_f32()
            acc_off = np.float32(0)
            for b in range(nb):
                o = b * 210
                xo = t * cols + b * QK_K
                p = zeros_i32()
                off = 0
                for h in range(2):
                    for k in range(4):
                        g = 8 * h + 2 * k  # scale index of the first 16 values
                        sc0 = np.int64(np.int8(row[o + 192 + g]))
                        sc1 = np.int64(np.int8(row[o + 192 + g + 1]))
                        lo = o + 64 * h + 32 * (k & 1)
                        hi = o + 128 + 32 * h
                        xk = xo + 128 * h + 32 * k
                        p = add_scaled(p, pdot_q6(row, lo, 4 * (k >> 1), hi, 2 * k, xq, xk), sc0, sc1)
                        off += sc0 * bsums[t, b * 16 + g] + sc1 * bsums[t, b * 16 + g + 1]
                d = xd[t, b] * load_f16(row, o + 208)
                acc = fma_block(acc, d, p)
                acc_off += d * np.float32(-32 * off)
            out[t, r] = vsum(acc) + acc_off


matvec_q4_k = njit_parallel(_matvec_q4_k)
matvec_q6_k = njit_parallel(_matvec_q6_k)

matvec_q4_k_serial = njit_serial(_matvec_q4_k)
matvec_q6_k_serial = njit_serial(_matvec_q6_k)
