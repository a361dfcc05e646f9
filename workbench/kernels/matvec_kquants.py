"""matvec kernels for the 256-element k-quant formats q4_K and q6_K.

Contract of every `matvec_<fmt>(out, w, x)`:
    out (T, rows) float32 = x (T, cols) float32 @ W.T, W given as raw GGUF super-blocks
    w (rows, cols / 256 * type_size) uint8; all arrays C-contiguous and already validated
    by `workbench.kernels.linear` (these kernels check nothing).
The arithmetic is llama.cpp's x86 decode path, operation for operation, so results are
equal bit for bit to it: x is quantized once per call to q8_K (float d, int8 q, per-16
bsums); the offsets go through the bsums.
- q4_K as `ggml_gemv_q4_K_8x8_q8_K` (the CPU "repack" path llama.cpp takes for q4_K
  weights with a multiple of 8 rows, i.e. all of them in practice): per super-block the
  exact integer sums I = sum_j scale_j * (q . x)_j and M = sum_j min_j * bsum_j, then
  acc = fma(I, d_w * d_x, acc), acc_min = fma(M, dmin_w * d_x, acc_min), out = acc - acc_min.
- q6_K as `ggml_vec_dot_q6_K_q8_K` (AVX2): 8 integer lanes per super-block, lane k the
  scaled products 4k..4k+3 of every 32 values minus 32 * (scale . bsum) of its share,
  fused into 8 float32 lanes with d_w * d_x and summed as `hsum_float_8`.

Prefill (T > 1) computes every token exactly as decode would; llama.cpp's own prefill
paths (repacked gemm for q4_K, the "tiled" GEMM for q6_K at 8+ tokens) are not checked.

How rows are scheduled (none of it changes a row's arithmetic): rows go in pairs, split
over numba's threads (`prange`), two rows in one 16-lane register of
`workbench.kernels.simd` (each half its row's lanes); a pair reads each super-block of x
once, unpacks both rows' scales in vector registers, and its weight bytes are prefetched
AHEAD bytes in advance. q4_K's four scalar chains (acc and acc_min of two rows) run side
by side in one f32x4. A last pair short of a row computes the last row twice.

`matvec_<fmt>_rows` ("row_groups") is that kernel (rows split over numba's threads),
`matvec_<fmt>_v1` ("reference_order_v1") the one-row-per-pass kernel before row pairs,
equal bit for bit (tests/test_matvec_variants.py); `_serial` names the same code without
threads. Which of the two is the registry's default on this CPU: ROW_GROUPS.
Layouts: `workbench.quant.formats`.
"""

import numpy as np
from numba import prange

from workbench.kernels.activation_quant import quantize_rows_q8_k
from workbench.kernels.jit import njit_parallel, njit_serial
from workbench.kernels.matvec_legacy import AHEAD, prefetch_bytes
from workbench.kernels.scratch import with_scratch
from workbench.kernels.simd import (
    AVX2,
    VNNI,
    add_scaled,
    dot_mins,
    dot_scaled_pair,
    fma_pair,
    fma_quads,
    fma_row_sums,
    fmaf,
    hsum_hi,
    hsum_lo,
    lane,
    load_f16,
    load_u32,
    mins_pair,
    nibbles_pair,
    pdot_nibble,
    pdot_q6,
    pick_k4,
    pick_q6,
    q6_offsets_pair,
    q6_pair,
    scales4,
    scales_mins_k4_pair,
    scales_pair,
    scales_q6_pair,
    sub_offsets,
    vsub,
    vsum,
    vsum_quads,
    zeros_f32,
    zeros_f32x4,
    zeros_i32,
)

QK_K = 256
# Which kernel is the default: row pairs wherever their block dots are VNNI or AVX2
# instructions (AVX2, 2048 x 640 at 1 thread: q4_K 58 vs 105 us, q6_K 137 vs 144 us);
# one row per pass on older CPUs, where the portable widening arithmetic is slow. Both
# are registered by name whatever the CPU.
ROW_GROUPS = {"q4_k": VNNI or AVX2, "q6_k": VNNI or AVX2}


@njit_serial
def scale_min_k4(row, base, j):
    """Scale and min of sub-block j (0..7) from the 12 bytes at row[base] (q4_K)."""
    if j < 4:
        return np.int64(row[base + j] & 63), np.int64(row[base + j + 4] & 63)
    lo, hi = np.int64(row[base + j - 4]), np.int64(row[base + j])
    packed = np.int64(row[base + j + 4])
    return (packed & 0x0F) | ((lo >> 6) << 4), (packed >> 4) | ((hi >> 6) << 4)


@njit_serial
def scales_mins_k4(row, base):
    """All 8 scales and 8 mins of a q4_K super-block, one per byte of two uint64s: bytes
    0..3 hold the low 6 bits of scales / mins 0..3, bytes 8..11 the low 4 bits of both
    for sub-blocks 4..7, whose top 2 bits sit in bits 6..7 of bytes 0..7."""
    a, b, c = load_u32(row, base), load_u32(row, base + 4), load_u32(row, base + 8)
    sc_hi = (c & 0x0F0F0F0F) | (((a >> 6) & 0x03030303) << 4)
    mn_hi = ((c >> 4) & 0x0F0F0F0F) | (((b >> 6) & 0x03030303) << 4)
    scales = np.uint64(a & 0x3F3F3F3F) | (np.uint64(sc_hi) << np.uint64(32))
    mins = np.uint64(b & 0x3F3F3F3F) | (np.uint64(mn_hi) << np.uint64(32))
    return scales, mins


@njit_serial
def q8_k_scratch(T, cols, i8, i32, f32):
    """x's q8_K form in caller-owned scratch (`workbench.kernels.scratch`): values (T, cols)
    int8, super-block scales (T, cols / 256) float32, sums of 16 (T, cols / 16) int32."""
    return (i8[: T * cols].reshape((T, cols)), f32[: T * (cols // QK_K)].reshape((T, cols // QK_K)),
            i32[: T * (cols // 16)].reshape((T, cols // 16)))


def _matvec_q4_k(out, w, x, i8, i32, f32):
    # W (rows, nb*144) @ x (T, cols) -> out (T, rows)
    # super-block = f16 d, f16 dmin, 12 B scales, 128 B nibbles: 4 x 32 bytes whose low
    # nibbles are sub-block 2i and high nibbles sub-block 2i+1; w = d*sc*q - dmin*min
    T, cols = x.shape
    nb, rb, last = cols // QK_K, w.shape[1], w.shape[0] - 1
    xq, xd, bsums = q8_k_scratch(T, cols, i8, i32, f32)
    quantize_rows_q8_k(x, xq, xd, bsums)
    for g in prange((last + 2) // 2):
        r0, r1 = 2 * g, min(2 * g + 1, last)
        a, b = r0 * rb, r1 * rb
        for t in range(T):
            acc = zeros_f32x4()  # [acc A, acc B, acc_min A, acc_min B]
            for k in range(nb):
                o = k * 144
                prefetch_bytes(w, a + AHEAD + k * 2 * 144, 2 * 144)
                xo = t * cols + k * QK_K
                s, mins = scales_mins_k4_pair(w, a + o + 4, b + o + 4)
                p = zeros_i32()  # I of row A (lanes 0..7) and B (8..15)
                for i in range(4):
                    q = o + 16 + 32 * i
                    lo, hi = nibbles_pair(w, a + q, b + q, 0), nibbles_pair(w, a + q, b + q, 4)
                    p = dot_scaled_pair(p, lo, xq, xo + 64 * i, pick_k4(s, 2 * i))
                    p = dot_scaled_pair(p, hi, xq, xo + 64 * i + 32, pick_k4(s, 2 * i + 1))
                # M: sum_j min_j * (q8 values of sub-block j), bsums come 2 per sub-block
                mins = mins_pair(mins, bsums, t * (cols // 16) + k * 16)
                d = scales4(w, a + o, b + o, a + o + 2, b + o + 2, xd[t, k])  # d A, d B, dmin A, dmin B
                acc = fma_row_sums(acc, p, mins, 0, d)
            out[t, r0], out[t, r1] = lane(acc, 0) - lane(acc, 2), lane(acc, 1) - lane(acc, 3)


def _matvec_q6_k(out, w, x, i8, i32, f32):
    # W (rows, nb*210) @ x (T, cols) -> out (T, rows)
    # super-block = 128 B ql (low 4 bits), 64 B qh (high 2 bits), 16 int8 scales, f16 d;
    # value 128h + 32k + l takes ql[64h + 32(k&1) + l] nibble k>>1 and qh[32h + l] bits
    # 2k..2k+1, scale (128h + 32k + l) // 16; w = d * sc * (q - 32)
    T, cols = x.shape
    nb, rb, last = cols // QK_K, w.shape[1], w.shape[0] - 1
    xq, xd, bsums = q8_k_scratch(T, cols, i8, i32, f32)
    quantize_rows_q8_k(x, xq, xd, bsums)
    for g in prange((last + 2) // 2):
        r0, r1 = 2 * g, min(2 * g + 1, last)
        a, b = r0 * rb, r1 * rb
        for t in range(T):
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


# ---- reference_order_v1: one row per pass, x widened to int16 ---------------------------


def _matvec_q4_k_v1(out, w, x):
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
            acc = np.float32(0)
            acc_min = np.float32(0)
            for b in range(nb):
                o = b * 144
                xo = t * cols + b * QK_K
                scales, mins = scales_mins_k4(row, o + 4)
                p = zeros_i32()
                for i in range(4):
                    q = o + 16 + 32 * i
                    sc_lo = np.int64((scales >> np.uint64(16 * i)) & np.uint64(0xFF))
                    sc_hi = np.int64((scales >> np.uint64(16 * i + 8)) & np.uint64(0xFF))
                    p = add_scaled(p, pdot_nibble(row, q, 0, xq, xo + 64 * i), sc_lo, sc_lo)
                    p = add_scaled(p, pdot_nibble(row, q, 4, xq, xo + 64 * i + 32), sc_hi, sc_hi)
                # sum_j min_j * (q8 values of sub-block j): bsums come 2 per sub-block
                mins = dot_mins(mins, bsums, t * (cols // 16) + b * 16)
                acc = fmaf(np.float32(vsum(p)), load_f16(row, o) * xd[t, b], acc)
                acc_min = fmaf(np.float32(mins), load_f16(row, o + 2) * xd[t, b], acc_min)
            out[t, r] = acc - acc_min


def _matvec_q6_k_v1(out, w, x):
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


# `_into` takes caller-owned scratch (`workbench.kernels.scratch`); the plain names make it per call
matvec_q4_k_rows_into = njit_parallel(_matvec_q4_k)
matvec_q6_k_rows_into = njit_parallel(_matvec_q6_k)

matvec_q4_k_rows_serial_into = njit_serial(_matvec_q4_k)
matvec_q6_k_rows_serial_into = njit_serial(_matvec_q6_k)

matvec_q4_k_rows = with_scratch(matvec_q4_k_rows_into)
matvec_q6_k_rows = with_scratch(matvec_q6_k_rows_into)

matvec_q4_k_rows_serial = with_scratch(matvec_q4_k_rows_serial_into)
matvec_q6_k_rows_serial = with_scratch(matvec_q6_k_rows_serial_into)

matvec_q4_k_v1 = njit_parallel(_matvec_q4_k_v1)
matvec_q6_k_v1 = njit_parallel(_matvec_q6_k_v1)

matvec_q4_k_v1_serial = njit_serial(_matvec_q4_k_v1)
matvec_q6_k_v1_serial = njit_serial(_matvec_q6_k_v1)
