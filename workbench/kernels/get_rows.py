"""get_rows kernels: dequantize selected rows of a weight (the embedding lookup).

Contract of every `get_rows_<fmt>(out, w, ids)`:
    out (T, cols) float32 = dequantized rows ids (T,) of W, W given as raw GGUF blocks
    w (rows, row_bytes) uint8, ids int64 in [0, rows); validated by
    `workbench.kernels.linear.get_rows` (these kernels check nothing).
Each value is computed with the same float32 operations in the same order as
`workbench.quant.dequantize_ref` (and `gguf.quants.dequantize`), so the results are
equal bit for bit. Serial and scalar: T rows of a few thousand values are cheap next to
any matvec.
"""

import numpy as np

from workbench.kernels.jit import njit_serial
from workbench.kernels.matvec_kquants import scale_min_k4
from workbench.kernels.simd import load_bf16, load_f16, load_f32, load_u32


@njit_serial
def get_rows_f32(out, w, ids):
    for t in range(ids.shape[0]):
        row = w[ids[t]]
        for j in range(out.shape[1]):
            out[t, j] = load_f32(row, 4 * j)


@njit_serial
def get_rows_f16(out, w, ids):
    for t in range(ids.shape[0]):
        row = w[ids[t]]
        for j in range(out.shape[1]):
            out[t, j] = load_f16(row, 2 * j)


@njit_serial
def get_rows_bf16(out, w, ids):
    for t in range(ids.shape[0]):
        row = w[ids[t]]
        for j in range(out.shape[1]):
            out[t, j] = load_bf16(row, 2 * j)


@njit_serial
def get_rows_q8_0(out, w, ids):
    # block = f16 d, i8 q[32]: x = d * q
    for t in range(ids.shape[0]):
        row = w[ids[t]]
        for b in range(out.shape[1] // 32):
            d = load_f16(row, 34 * b)
            for j in range(32):
                out[t, 32 * b + j] = d * np.float32(np.int8(row[34 * b + 2 + j]))


@njit_serial
def get_rows_q4_0(out, w, ids):
    # block = f16 d, 16 bytes of nibbles (low: x0..15, high: x16..31): x = d * (q - 8)
    for t in range(ids.shape[0]):
        row = w[ids[t]]
        for b in range(out.shape[1] // 32):
            d = load_f16(row, 18 * b)
            for j in range(16):
                q = row[18 * b + 2 + j]
                out[t, 32 * b + j] = d * np.float32(np.int32(q & 15) - 8)
                out[t, 32 * b + 16 + j] = d * np.float32(np.int32(q >> 4) - 8)


@njit_serial
def get_rows_q4_1(out, w, ids):
    # block = f16 d, f16 m, 16 bytes of nibbles: x = d * q + m
    for t in range(ids.shape[0]):
        row = w[ids[t]]
        for b in range(out.shape[1] // 32):
            d = load_f16(row, 20 * b)
            m = load_f16(row, 20 * b + 2)
            for j in range(16):
                q = row[20 * b + 4 + j]
                out[t, 32 * b + j] = d * np.float32(q & 15) + m
                out[t, 32 * b + 16 + j] = d * np.float32(q >> 4) + m


@njit_serial
def get_rows_q5_0(out, w, ids):
    # block = f16 d, u32 qh (5th bits), 16 bytes of nibbles: x = d * (q - 16)
    for t in range(ids.shape[0]):
        row = w[ids[t]]
        for b in range(out.shape[1] // 32):
            d = load_f16(row, 22 * b)
            qh = load_u32(row, 22 * b + 2)
            for j in range(16):
                q = row[22 * b + 6 + j]
                lo = np.int32(q & 15) | np.int32(((qh >> j) & 1) << 4)
                hi = np.int32(q >> 4) | np.int32(((qh >> (j + 16)) & 1) << 4)
                out[t, 32 * b + j] = d * np.float32(lo - 16)
                out[t, 32 * b + 16 + j] = d * np.float32(hi - 16)


@njit_serial
def get_rows_q4_k(out, w, ids):
    # super-block = f16 d, f16 dmin, 12 B scales, 4 x 32 B nibbles (low: sub-block 2i,
    # high: 2i+1): x = (d * sc) * q - (dmin * min)
    for t in range(ids.shape[0]):
        row = w[ids[t]]
        for b in range(out.shape[1] // 256):
            o = 144 * b
            d = load_f16(row, o)
            dmin = load_f16(row, o + 2)
            for s in range(8):
                sc, mn = scale_min_k4(row, o + 4, s)
                scale = d * np.float32(sc)
                offset = dmin * np.float32(mn)
                shift = 4 * (s & 1)
                base = o + 16 + 32 * (s >> 1)
                for j in range(32):
                    q = (row[base + j] >> shift) & 15
                    out[t, 256 * b + 32 * s + j] = scale * np.float32(q) - offset


@njit_serial
def get_rows_q6_k(out, w, ids):
    # super-block = ql[128], qh[64], int8 scales[16], f16 d: x = (d * sc) * (q - 32)
    for t in range(ids.shape[0]):
        row = w[ids[t]]
        for b in range(out.shape[1] // 256):
            o = 210 * b
            d = load_f16(row, o + 208)
            for i in range(256):
                h, k, l = i // 128, (i // 32) % 4, i % 32
                lo = (row[o + 64 * h + 32 * (k & 1) + l] >> (4 * (k >> 1))) & 15
                hi = (row[o + 128 + 32 * h + l] >> (2 * k)) & 3
                q = np.int32(lo | (hi << 4)) - 32
                scale = d * np.float32(np.int8(row[o + 192 + i // 16]))
                out[t, 256 * b + i] = scale * np.float32(q)
