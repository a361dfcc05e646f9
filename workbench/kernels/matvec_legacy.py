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
GEMMs (tinyBLAS, repacked gemm) are not checked against.

How rows are scheduled (none of it changes a row's arithmetic): rows go in groups of
ROWS = 4, split over numba's threads (`prange`); a group reads each block of x once for
its four rows, which run as two row pairs of `workbench.kernels.simd` (rows A | B in one
16-lane register, each half its row's 8 llama.cpp lanes), with the four block scales
gathered, converted and multiplied in one vector (q4_0 instead keeps four rows of 4
lanes in one register, see `dot4_quad`). A last group short of rows repeats the last
row (computed twice alike, stored twice). Each group's weight bytes are prefetched
AHEAD bytes in advance, a fixed number of lines per block: without it a 1-thread pass
over a matrix larger than the caches ran at ~70% of the read bandwidth, with it ~95%.
Each weight row is read from memory once for all T tokens.

`matvec_<fmt>_rows` ("row_groups") is that kernel, `matvec_<fmt>_v1` ("reference_order_v1")
the one before it, one row per pass with x widened to int16, equal bit for bit
(tests/test_matvec_variants.py); `_serial` names the same code without threads. Which of
the two is the registry's default ("parallel", "serial") on this CPU: ROW_GROUPS.
Block layouts are documented in `workbench.quant.formats`.
"""

import numpy as np
from numba import prange

from workbench.kernels.activation_quant import quantize_rows_q8_0, quantize_rows_q8_1
from workbench.kernels.jit import njit_parallel, njit_serial
from workbench.kernels.scratch import with_scratch
from workbench.kernels.simd import (
    AVX2,
    VNNI,
    dot4_pair,
    dot4_pair_signed,
    dot4_pair_small,
    dot4_quad,
    fma_pair,
    fma_quads,
    fma_quad_sums,
    fmaf,
    hsum_hi,
    hsum_lo,
    lane,
    load_f16,
    load_i32x8_twice,
    load_u32,
    pdot_i8,
    pdot_q4,
    prefetch,
    q4_pair,
    q5_pair,
    q8_pair,
    scales4,
    scales_mins_quad,
    scales_quad,
    vadd,
    vsum,
    vsum_quads,
    zeros_f32,
    zeros_f32x4,
    zeros_f32x8,
    zeros_i32,
)

QK = 32
# Which kernel is the default, by format. With 512-bit VNNI the row groups' block dots
# are single instructions. With AVX2 only (an AMD EPYC here) they take llama.cpp's AVX2
# pair `vpmaddubsw` + `vpmaddwd` (q8_0 with its sign trick) and still win (1536 x 576 at
# 1 thread: q4_0 66 vs 117 us, q4_1 42 vs 123, q5_0 94 vs 137). Without AVX2 the
# portable widening dots lose (q4_1 294 vs 112 us), so one row per pass stays the
# default there. Both are registered by name whatever the CPU.
ROW_GROUPS = dict.fromkeys(("q8_0", "q4_0", "q4_1", "q5_0"), VNNI or AVX2)
ROWS = 4  # rows per pass over x: two row pairs (the kernels below are written for 4)
AHEAD = 4096  # bytes of weights prefetched ahead of the rows being computed
LINE = 64  # cache line bytes


@njit_serial
def prefetch_bytes(w, at, n):
    """Prefetch the cache lines of w over flat bytes at..at+n. The kernels call it once per
    block with a constant n, so its loop unrolls: a loop that caught up with the block
    instead (one or two lines, varying from block to block) cost ~20% in mispredictions."""
    for i in range(0, n, LINE):
        prefetch(w, at + i)


@njit_serial
def group_rows(g, last):
    """The rows of group g; past the last row, the last row again (computed alike, stored twice)."""
    r = ROWS * g
    return r, min(r + 1, last), min(r + 2, last), min(r + 3, last)


@njit_serial
def sums_of_4(xq, k, out):
    """out (T, cols / 4) int32 = k * (sum of each 4 consecutive values of xq (T, cols)): the
    start of a dot whose weights carry an offset (q8_0's +128, q5_0's -16)."""
    T, n = xq.shape
    for t in range(T):
        for j in range(n // 4):
            s = np.int32(xq[t, 4 * j]) + np.int32(xq[t, 4 * j + 1])
            out[t, j] = k * (s + np.int32(xq[t, 4 * j + 2]) + np.int32(xq[t, 4 * j + 3]))


@njit_serial
def q8_0_scratch(T, cols, i8, i32, f32):
    """x's q8_0 form in caller-owned scratch (`workbench.kernels.scratch`): values (T, cols)
    int8, block scales (T, nb) float32, block sums (T, nb) int32."""
    nb = cols // QK
    return i8[: T * cols].reshape((T, cols)), f32[: T * nb].reshape((T, nb)), i32[: T * nb].reshape((T, nb))


def _matvec_q8_0(out, w, x, i8, i32, f32):
    # W (rows, nb*34) @ x (T, cols) -> out (T, rows); block = f16 d, i8 q[32]
    T, cols = x.shape
    nb, rb, last = cols // QK, w.shape[1], w.shape[0] - 1
    xq, xd, xs = q8_0_scratch(T, cols, i8, i32, f32)
    quantize_rows_q8_0(x, xq, xd, xs)
    xc = i32[T * nb : T * nb + T * cols // 4].reshape((T, cols // 4))
    sums_of_4(xq, -128, xc)  # q8_pair adds 128 to every weight
    for g in prange((last + ROWS) // ROWS):
        r0, r1, r2, r3 = group_rows(g, last)
        a, b, c, d = r0 * rb, r1 * rb, r2 * rb, r3 * rb
        for t in range(T):
            ab, cd = zeros_f32(), zeros_f32()
            for k in range(nb):
                o = k * 34
                prefetch_bytes(w, a + AHEAD + k * ROWS * 34, ROWS * 34)
                xo = t * cols + k * QK
                sab, scd = scales_quad(w, a + o, b + o, c + o, d + o, xd[t, k])
                qab, qcd = q8_pair(w, a + o + 2, b + o + 2), q8_pair(w, c + o + 2, d + o + 2)
                if VNNI:  # a compile-time constant: one branch is compiled
                    c0 = load_i32x8_twice(xc, xo // 4)
                    pab, pcd = dot4_pair(c0, qab, xq, xo), dot4_pair(c0, qcd, xq, xo)
                else:
                    pab = dot4_pair_signed(zeros_i32(), qab, xq, xo)
                    pcd = dot4_pair_signed(zeros_i32(), qcd, xq, xo)
                ab = fma_pair(ab, sab, pab)
                cd = fma_pair(cd, scd, pcd)
            out[t, r0], out[t, r1] = hsum_lo(ab), hsum_hi(ab)
            out[t, r2], out[t, r3] = hsum_lo(cd), hsum_hi(cd)


def _matvec_q4_0(out, w, x, i8, i32, f32):
    # W (rows, nb*18) @ x (T, cols) -> out (T, rows); block = f16 d, u8 nibbles[16], w = d*(q-8)
    # As llama.cpp's repacked `ggml_gemv_q4_0_8x8_q8_0`, not its vec_dot: one exact integer
    # per block, acc = fma(sum (q - 8) q_x, d_w * d_x, acc); the four rows' chains side by
    # side, their block dots in one register of four 4-lane rows (`dot4_quad`)
    T, cols = x.shape
    nb, rb, last = cols // QK, w.shape[1], w.shape[0] - 1
    xq, xd, xs = q8_0_scratch(T, cols, i8, i32, f32)
    quantize_rows_q8_0(x, xq, xd, xs)
    for g in prange((last + ROWS) // ROWS):
        r0, r1, r2, r3 = group_rows(g, last)
        a, b, c, d = r0 * rb, r1 * rb, r2 * rb, r3 * rb
        for t in range(T):
            acc = zeros_f32x4()
            for k in range(nb):
                o = k * 18
                prefetch_bytes(w, a + AHEAD + k * ROWS * 18, ROWS * 18)
                xo = t * cols + k * QK
                p = dot4_quad(zeros_i32(), w, a + o + 2, b + o + 2, c + o + 2, d + o + 2, xq, xo)
                s = scales4(w, a + o, b + o, c + o, d + o, xd[t, k])
                acc = fma_quad_sums(acc, p, 8 * xs[t, k], s)  # sum q q_x - 8 sum q_x
            out[t, r0], out[t, r1] = lane(acc, 0), lane(acc, 1)
            out[t, r2], out[t, r3] = lane(acc, 2), lane(acc, 3)


def _matvec_q5_0(out, w, x, i8, i32, f32):
    # W (rows, nb*22) @ x (T, cols) -> out (T, rows); block = f16 d, u32 qh, u8 nibbles[16]
    # q = nibble | (bit j of qh) << 4, w = d * (q - 16)
    T, cols = x.shape
    nb, rb, last = cols // QK, w.shape[1], w.shape[0] - 1
    xq, xd, xs = q8_0_scratch(T, cols, i8, i32, f32)
    quantize_rows_q8_0(x, xq, xd, xs)
    xc = i32[T * nb : T * nb + T * cols // 4].reshape((T, cols // 4))
    sums_of_4(xq, -16, xc)  # the dot of q - 16 starts from -16 * (sum of 4 q_x)
    for g in prange((last + ROWS) // ROWS):
        r0, r1, r2, r3 = group_rows(g, last)
        a, b, c, d = r0 * rb, r1 * rb, r2 * rb, r3 * rb
        for t in range(T):
            ab, cd = zeros_f32(), zeros_f32()
            for k in range(nb):
                o = k * 22
                prefetch_bytes(w, a + AHEAD + k * ROWS * 22, ROWS * 22)
                xo = t * cols + k * QK
                c0 = load_i32x8_twice(xc, xo // 4)
                sab, scd = scales_quad(w, a + o, b + o, c + o, d + o, xd[t, k])
                qab = q5_pair(w, a + o + 6, b + o + 6, load_u32(w, a + o + 2), load_u32(w, b + o + 2))
                qcd = q5_pair(w, c + o + 6, d + o + 6, load_u32(w, c + o + 2), load_u32(w, d + o + 2))
                ab = fma_pair(ab, sab, dot4_pair_small(c0, qab, xq, xo))
                cd = fma_pair(cd, scd, dot4_pair_small(c0, qcd, xq, xo))
            out[t, r0], out[t, r1] = hsum_lo(ab), hsum_hi(ab)
            out[t, r2], out[t, r3] = hsum_lo(cd), hsum_hi(cd)


def _matvec_q4_1(out, w, x, i8, i32, f32):
    # W (rows, nb*20) @ x (T, cols) -> out (T, rows); block = f16 d, f16 m, u8 nibbles[16]
    # sum (d q + m) x = d d_x sum q q_x + m s_x, s_x = q8_1's d_x * sum q_x
    T, cols = x.shape
    nb, rb, last = cols // QK, w.shape[1], w.shape[0] - 1
    xq, xd, _ = q8_0_scratch(T, cols, i8, i32, f32)
    xs = f32[T * nb : 2 * T * nb].reshape((T, nb))
    quantize_rows_q8_1(x, xq, xd, xs)
    for g in prange((last + ROWS) // ROWS):
        r0, r1, r2, r3 = group_rows(g, last)
        a, b, c, d = r0 * rb, r1 * rb, r2 * rb, r3 * rb
        for t in range(T):
            ab, cd = zeros_f32(), zeros_f32()
            m = zeros_f32x8()  # odd lanes: each row's sum of m_w * s_x, added in block order
            for k in range(nb):
                o = k * 20
                prefetch_bytes(w, a + AHEAD + k * ROWS * 20, ROWS * 20)
                xo = t * cols + k * QK
                sab, scd, dm = scales_mins_quad(w, a + o, b + o, c + o, d + o, xd[t, k], xs[t, k])
                m = vadd(m, dm)
                ab = fma_pair(ab, sab, dot4_pair_small(zeros_i32(), q4_pair(w, a + o + 4, b + o + 4), xq, xo))
                cd = fma_pair(cd, scd, dot4_pair_small(zeros_i32(), q4_pair(w, c + o + 4, d + o + 4), xq, xo))
            out[t, r0], out[t, r1] = hsum_lo(ab) + lane(m, 1), hsum_hi(ab) + lane(m, 3)
            out[t, r2], out[t, r3] = hsum_lo(cd) + lane(m, 5), hsum_hi(cd) + lane(m, 7)


# ---- reference_order_v1: one row per pass, x widened to int16 ---------------------------


def _matvec_q8_0_v1(out, w, x):
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


def _matvec_q4_0_v1(out, w, x):
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


def _matvec_q5_0_v1(out, w, x):
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


def _matvec_q4_1_v1(out, w, x):
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


# `_into` takes caller-owned scratch (`workbench.kernels.scratch`); the plain names make it per call
matvec_q8_0_rows_into = njit_parallel(_matvec_q8_0)
matvec_q4_0_rows_into = njit_parallel(_matvec_q4_0)
matvec_q4_1_rows_into = njit_parallel(_matvec_q4_1)
matvec_q5_0_rows_into = njit_parallel(_matvec_q5_0)

matvec_q8_0_rows_serial_into = njit_serial(_matvec_q8_0)
matvec_q4_0_rows_serial_into = njit_serial(_matvec_q4_0)
matvec_q4_1_rows_serial_into = njit_serial(_matvec_q4_1)
matvec_q5_0_rows_serial_into = njit_serial(_matvec_q5_0)

matvec_q8_0_rows = with_scratch(matvec_q8_0_rows_into)
matvec_q4_0_rows = with_scratch(matvec_q4_0_rows_into)
matvec_q4_1_rows = with_scratch(matvec_q4_1_rows_into)
matvec_q5_0_rows = with_scratch(matvec_q5_0_rows_into)

matvec_q8_0_rows_serial = with_scratch(matvec_q8_0_rows_serial_into)
matvec_q4_0_rows_serial = with_scratch(matvec_q4_0_rows_serial_into)
matvec_q4_1_rows_serial = with_scratch(matvec_q4_1_rows_serial_into)
matvec_q5_0_rows_serial = with_scratch(matvec_q5_0_rows_serial_into)

matvec_q8_0_v1 = njit_parallel(_matvec_q8_0_v1)
matvec_q4_0_v1 = njit_parallel(_matvec_q4_0_v1)
matvec_q4_1_v1 = njit_parallel(_matvec_q4_1_v1)
matvec_q5_0_v1 = njit_parallel(_matvec_q5_0_v1)

matvec_q8_0_v1_serial = njit_serial(_matvec_q8_0_v1)
matvec_q4_0_v1_serial = njit_serial(_matvec_q4_0_v1)
matvec_q4_1_v1_serial = njit_serial(_matvec_q4_1_v1)
matvec_q5_0_v1_serial = njit_serial(_matvec_q5_0_v1)
