"""q6_K: 256 weights in 210 bytes = u8 ql[128] (low 4 bits), u8 qh[64] (high 2 bits),
int8 scales[16], f16 d; 16 sub-blocks of 16; x = d*sc * (q - 32). Value 128h + 32k + l
takes ql[64h + 32(k&1) + l] nibble k>>1 and qh[32h + l] bits 2k..2k+1, scale
(128h + 32k + l) // 16. Activations: q8_K.

Kernels follow `ggml_vec_dot_q6_K_q8_K` (AVX2) operation for operation, so results are
equal bit for bit to llama.cpp's: 8 integer lanes per super-block, lane k the scaled
products 4k..4k+3 of every 32 values minus 32 * (scale . bsum) of its share, fused into 8
float32 lanes with d_w * d_x and summed as `hsum_float_8`. Variants, equal bit for bit:
- "one_row": one row per pass, x widened to int16 (the plain reference order);
- "row_pairs": two rows per pass in one 16-lane register (`isa.pairs`).
Not here: a q6_K quantizer (workbench only reads the format).
"""

import numpy as np
from numba import prange

from workbench.kernels.formats.activations import quantize_rows_q8_k
from workbench.kernels.formats.base import SERIAL, Variant, WeightFormat, f16_field
from workbench.kernels.formats.rows import AHEAD, QK_K, prefetch_bytes, q8_k_scratch
from workbench.kernels.isa.pairs import (
    dot_scaled_pair,
    fma_pair,
    pick_q6,
    q6_offsets_pair,
    q6_pair,
    scales_pair,
    scales_q6_pair,
)
from workbench.kernels.isa.vectors import (
    add_scaled,
    fma_quads,
    load_f16,
    pdot_q6,
    sub_offsets,
    vsum_quads,
    zeros_f32,
    zeros_i32,
)
from workbench.kernels.isa.x86 import hsum_hi, hsum_lo, vsub
from workbench.kernels.jit import njit_parallel, njit_serial

GGML_TYPE = 14
BLOCK = 210


def values(blocks: np.ndarray) -> np.ndarray:
    """The 6-bit quants of q6_K super-blocks, 0..63, as uint8 (N, 256)."""
    n = blocks.shape[0]
    # Each half of 128 values uses ql[64] and qh[32]: value 32*k + l (k = 0..3) takes
    # the low or high nibble of ql[l] / ql[l + 32] and bits 2k..2k+1 of qh[l].
    ql = blocks[:, 0:128].reshape(n, 2, 2, 32)  # (half, ql[l] or ql[l+32], l)
    qh = blocks[:, 128:192].reshape(n, 2, 1, 32)
    low = np.stack([ql & 0x0F, ql >> 4], axis=2).reshape(n, 2, 4, 32)  # k = 0,1,2,3
    high = (qh >> np.array([0, 2, 4, 6], np.uint8).reshape(1, 1, 4, 1)) & np.uint8(3)
    return (low | (high << np.uint8(4))).reshape(n, QK_K)


def dequantize(blocks: np.ndarray) -> np.ndarray:
    n = blocks.shape[0]
    d = f16_field(blocks, 208)
    sc = blocks[:, 192:208].view(np.int8).astype(np.float32)  # one scale per 16 values
    q = (values(blocks).astype(np.int8) - np.int8(32)).astype(np.float32)
    return ((d * sc).reshape(n, 16, 1) * q.reshape(n, 16, 16)).reshape(n, QK_K)


@njit_serial
def get_rows(out, w, ids):
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


def _one_row(out, w, x, i8, i32, f32):
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
            for b in range(nb):
                o = b * 210
                xo = t * cols + b * QK_K
                p = zeros_i32()
                for h in range(2):
                    for k in range(4):
                        g = 8 * h + 2 * k  # scale index of the first 16 values
                        sc0 = np.int64(np.int8(row[o + 192 + g]))
                        sc1 = np.int64(np.int8(row[o + 192 + g + 1]))
                        lo = o + 64 * h + 32 * (k & 1)
                        hi = o + 128 + 32 * h
                        xk = xo + 128 * h + 32 * k
                        q = pdot_q6(row, lo, 4 * (k >> 1), hi, 2 * k, xq, xk)
                        p = add_scaled(p, q, sc0, sc1)
                p = sub_offsets(p, bsums, t * (cols // 16) + b * 16, row, o + 192, 32)
                acc = fma_quads(acc, xd[t, b] * load_f16(row, o + 208), p)
            out[t, r] = vsum_quads(acc)


def _row_pairs(out, w, x, i8, i32, f32):
    # W (rows, nb*210) @ x (T, cols) -> out (T, rows)
    # super-block = 128 B ql (low 4 bits), 64 B qh (high 2 bits), 16 int8 scales, f16 d;
    # value 128h + 32k + l takes ql[64h + 32(k&1) + l] nibble k>>1 and qh[32h + l] bits
    # 2k..2k+1, scale (128h + 32k + l) // 16; w = d * sc * (q - 32)
    T, cols = x.shape
    nb, rb, last = cols // QK_K, w.shape[1], w.shape[0] - 1
    xq, xd, bsums = q8_k_scratch(T, cols, i8, i32, f32)
    quantize_rows_q8_k(x, xq, xd, bsums)
    tiled = T - T % 4  # prefill: tokens four at a time, each super-block unpacked once for four
    if tiled:
        for g in prange((last + 2) // 2):
            for t in range(0, tiled, 4):
                _four_tokens(out, w, xq, xd, bsums, t, 2 * g, min(2 * g + 1, last))
    for g in prange((last + 2) // 2):
        r0, r1 = 2 * g, min(2 * g + 1, last)
        a, b = r0 * rb, r1 * rb
        for t in range(tiled, T):  # decode, and the last tokens of a prefill
            acc = zeros_f32()
            for k in range(nb):
                o = k * 210
                prefetch_bytes(w, a + AHEAD + k * 2 * 210, 2 * 210)
                xo = t * cols + k * QK_K
                s = scales_q6_pair(w, a + o + 192, b + o + 192)
                p = zeros_i32()
                for h in range(2):
                    for j in range(4):
                        lo = o + 64 * h + 32 * (j & 1)
                        hi = o + 128 + 32 * h
                        q = q6_pair(w, a + lo, b + lo, 4 * (j >> 1), a + hi, b + hi, 2 * j)
                        p = dot_scaled_pair(p, q, xq, xo + 128 * h + 32 * j, pick_q6(s, 8 * h + 2 * j))
                p = vsub(p, q6_offsets_pair(bsums, t * (cols // 16) + k * 16, w, a + o + 192, b + o + 192))
                acc = fma_pair(acc, scales_pair(w, a + o + 208, b + o + 208, xd[t, k]), p)
            out[t, r0], out[t, r1] = hsum_lo(acc), hsum_hi(acc)


@njit_serial
def _four_tokens(out, w, xq, xd, bsums, t, r0, r1):
    """Tokens t..t+3 of rows r0, r1: each token's arithmetic exactly the one-token path's."""
    cols, rb = xq.shape[1], w.shape[1]
    a, b, nb16 = r0 * rb, r1 * rb, cols // 16
    acc0, acc1, acc2, acc3 = zeros_f32(), zeros_f32(), zeros_f32(), zeros_f32()
    for k in range(cols // QK_K):
        o = k * 210
        prefetch_bytes(w, a + AHEAD + k * 2 * 210, 2 * 210)
        xo = t * cols + k * QK_K
        s = scales_q6_pair(w, a + o + 192, b + o + 192)
        p0, p1, p2, p3 = zeros_i32(), zeros_i32(), zeros_i32(), zeros_i32()
        for h in range(2):
            for j in range(4):
                lo = o + 64 * h + 32 * (j & 1)
                hi = o + 128 + 32 * h
                q = q6_pair(w, a + lo, b + lo, 4 * (j >> 1), a + hi, b + hi, 2 * j)
                sc, x = pick_q6(s, 8 * h + 2 * j), xo + 128 * h + 32 * j
                p0 = dot_scaled_pair(p0, q, xq, x, sc)
                p1 = dot_scaled_pair(p1, q, xq, x + cols, sc)
                p2 = dot_scaled_pair(p2, q, xq, x + 2 * cols, sc)
                p3 = dot_scaled_pair(p3, q, xq, x + 3 * cols, sc)
        p0 = vsub(p0, q6_offsets_pair(bsums, t * nb16 + k * 16, w, a + o + 192, b + o + 192))
        p1 = vsub(p1, q6_offsets_pair(bsums, (t + 1) * nb16 + k * 16, w, a + o + 192, b + o + 192))
        p2 = vsub(p2, q6_offsets_pair(bsums, (t + 2) * nb16 + k * 16, w, a + o + 192, b + o + 192))
        p3 = vsub(p3, q6_offsets_pair(bsums, (t + 3) * nb16 + k * 16, w, a + o + 192, b + o + 192))
        acc0 = fma_pair(acc0, scales_pair(w, a + o + 208, b + o + 208, xd[t, k]), p0)
        acc1 = fma_pair(acc1, scales_pair(w, a + o + 208, b + o + 208, xd[t + 1, k]), p1)
        acc2 = fma_pair(acc2, scales_pair(w, a + o + 208, b + o + 208, xd[t + 2, k]), p2)
        acc3 = fma_pair(acc3, scales_pair(w, a + o + 208, b + o + 208, xd[t + 3, k]), p3)
    out[t, r0], out[t, r1] = hsum_lo(acc0), hsum_hi(acc0)
    out[t + 1, r0], out[t + 1, r1] = hsum_lo(acc1), hsum_hi(acc1)
    out[t + 2, r0], out[t + 2, r1] = hsum_lo(acc2), hsum_hi(acc2)
    out[t + 3, r0], out[t + 3, r1] = hsum_lo(acc3), hsum_hi(acc3)


one_row, one_row_serial = njit_parallel(_one_row), njit_serial(_one_row)
row_pairs, row_pairs_serial = njit_parallel(_row_pairs), njit_serial(_row_pairs)


@njit_serial
def matvec_into(variant, out, w, x, i8, i32, f32):
    """Variant number `variant` of FORMAT.variants (+ SERIAL: its serial twin)."""
    if variant == 0:
        one_row(out, w, x, i8, i32, f32)
    elif variant == 1:
        row_pairs(out, w, x, i8, i32, f32)
    elif variant == SERIAL:
        one_row_serial(out, w, x, i8, i32, f32)
    else:
        row_pairs_serial(out, w, x, i8, i32, f32)


FORMAT = WeightFormat(
    "q6_k", GGML_TYPE, QK_K, BLOCK, "q8_k", dequantize, None, (208,), get_rows, matvec_into,
    variants=(
        Variant("one_row", one_row, one_row_serial, "one row per pass, x widened to int16", reference=True),
        Variant("row_pairs", row_pairs, row_pairs_serial, "two rows per pass in one 16-lane register"),
    ),
    # AVX2 EPYC, 2048 x 640 at 1 thread: 137 against 144 us; without AVX2 one row wins
    prefer=(("row_pairs", ("avx512vnni", "avx512bw", "avx512vl")), ("row_pairs", ("avx2",))),
)
