"""q4_1: 32 weights in 20 bytes = f16 d, f16 m, u8 qs[16] (low nibbles x0..15, high
x16..31); x = d * q + m. Activations: q8_1 (s = d_x * sum q_x kept as fp16).

sum (d q + m) x = d d_x sum q q_x + m s_x. Kernels follow `ggml_vec_dot_q4_1_q8_1` (AVX2)
operation for operation, so results are equal bit for bit to llama.cpp's: every block
adds fp16(d_w) * d_x * (sum of products 4k..4k+3) into 8 float32 lanes with fused
multiply-adds, summed as `hsum_float_8` once per row, then the row's sum over blocks of
m_w * s_x is added. Variants, equal bit for bit:
- "one_row": one row per pass, x widened to int16 (the plain reference order);
- "row_groups": four rows per pass as two row pairs (`isa.pairs`), the four rows' m
  sums side by side in an f32x8.
"""

import numpy as np
from numba import prange

from workbench.kernels.formats import q4_1_rows16
from workbench.kernels.formats.activations import quantize_rows_q8_1
from workbench.kernels.formats.base import (
    SERIAL,
    Variant,
    WeightFormat,
    f16_bytes,
    f16_field,
    inverse,
    nibbles,
    pack_nibbles,
)
from workbench.kernels.formats.rows import AHEAD, QK, ROWS, group_rows, prefetch_bytes, q8_0_scratch
from workbench.kernels.isa import amx
from workbench.kernels.isa.pairs import dot4_pair_small, fma_pair, q4_pair, scales_mins_quad
from workbench.kernels.isa.vectors import fma_quads, load_f16, pdot_q4, vsum_quads, zeros_f32, zeros_i32
from workbench.kernels.isa.x86 import hsum_hi, hsum_lo, lane, vadd, zeros_f32x8
from workbench.kernels.jit import njit_parallel, njit_serial

GGML_TYPE = 3
BLOCK = 20


def dequantize(blocks: np.ndarray) -> np.ndarray:
    return f16_field(blocks, 0) * nibbles(blocks[:, 4:]).astype(np.float32) + f16_field(blocks, 2)


def quantize(x: np.ndarray) -> np.ndarray:
    lo = x.min(axis=-1, keepdims=True)
    hi = x.max(axis=-1, keepdims=True)
    d = (hi - lo) / np.float32(15)
    q = np.trunc((x - lo) * inverse(d) + np.float32(0.5)).clip(0, 15).astype(np.uint8)
    return np.concatenate([f16_bytes(d), f16_bytes(lo), pack_nibbles(q)], axis=-1)


@njit_serial
def get_rows(out, w, ids):
    for t in range(ids.shape[0]):
        row = w[ids[t]]
        for b in range(out.shape[1] // QK):
            d = load_f16(row, BLOCK * b)
            m = load_f16(row, BLOCK * b + 2)
            for j in range(16):
                q = row[BLOCK * b + 4 + j]
                out[t, QK * b + j] = d * np.float32(q & 15) + m
                out[t, QK * b + 16 + j] = d * np.float32(q >> 4) + m


def _one_row(out, w, x, i8, i32, f32):
    # W (rows, nb*20) @ x (T, cols) -> out (T, rows)
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
                o = b * BLOCK
                acc_m += load_f16(row, o + 2) * xs[t, b]
                p = pdot_q4(row, o + 4, 0, 0, xq, t * cols + b * QK)
                acc = fma_quads(acc, load_f16(row, o) * xd[t, b], p)
            out[t, r] = vsum_quads(acc) + acc_m


def _row_groups(out, w, x, i8, i32, f32):
    # W (rows, nb*20) @ x (T, cols) -> out (T, rows), four rows per pass; tokens four at a
    # time, so that each block's nibbles are unpacked once for four tokens (prefill)
    T, cols = x.shape
    nb, last = cols // QK, w.shape[0] - 1
    xq, xd, _ = q8_0_scratch(T, cols, i8, i32, f32)
    xs = f32[T * nb : 2 * T * nb].reshape((T, nb))
    quantize_rows_q8_1(x, xq, xd, xs)
    tiled = T - T % 4  # prefill: tokens four at a time, each block's weights loaded once for four
    if tiled:
        for g in prange((last + ROWS) // ROWS):
            r0, r1, r2, r3 = group_rows(g, last)
            for t in range(0, tiled, 4):
                _four_tokens(out, w, xq, xd, xs, t, r0, r1, r2, r3)
    for g in prange((last + ROWS) // ROWS):
        r0, r1, r2, r3 = group_rows(g, last)
        for t in range(tiled, T):  # decode, and the last tokens of a prefill
            q4_1_rows16.plain_quad(out, w, xq, xd, xs, t, r0, r1, r2, r3)


@njit_serial
def _four_tokens(out, w, xq, xd, xs, t, r0, r1, r2, r3):
    """Tokens t..t+3 of rows r0..r3: each token's arithmetic exactly the one-token path's."""
    cols, rb = xq.shape[1], w.shape[1]
    a, b, c, d = r0 * rb, r1 * rb, r2 * rb, r3 * rb
    ab0, cd0, ab1, cd1 = zeros_f32(), zeros_f32(), zeros_f32(), zeros_f32()
    ab2, cd2, ab3, cd3 = zeros_f32(), zeros_f32(), zeros_f32(), zeros_f32()
    m0, m1, m2, m3 = zeros_f32x8(), zeros_f32x8(), zeros_f32x8(), zeros_f32x8()
    for k in range(cols // QK):
        o = k * BLOCK
        prefetch_bytes(w, a + AHEAD + k * ROWS * BLOCK, ROWS * BLOCK)
        qab, qcd = q4_pair(w, a + o + 4, b + o + 4), q4_pair(w, c + o + 4, d + o + 4)
        xo = t * cols + k * QK
        sab, scd, dm = scales_mins_quad(w, a + o, b + o, c + o, d + o, xd[t, k], xs[t, k])
        m0 = vadd(m0, dm)
        ab0 = fma_pair(ab0, sab, dot4_pair_small(zeros_i32(), qab, xq, xo))
        cd0 = fma_pair(cd0, scd, dot4_pair_small(zeros_i32(), qcd, xq, xo))
        sab, scd, dm = scales_mins_quad(w, a + o, b + o, c + o, d + o, xd[t + 1, k], xs[t + 1, k])
        m1 = vadd(m1, dm)
        ab1 = fma_pair(ab1, sab, dot4_pair_small(zeros_i32(), qab, xq, xo + cols))
        cd1 = fma_pair(cd1, scd, dot4_pair_small(zeros_i32(), qcd, xq, xo + cols))
        sab, scd, dm = scales_mins_quad(w, a + o, b + o, c + o, d + o, xd[t + 2, k], xs[t + 2, k])
        m2 = vadd(m2, dm)
        ab2 = fma_pair(ab2, sab, dot4_pair_small(zeros_i32(), qab, xq, xo + 2 * cols))
        cd2 = fma_pair(cd2, scd, dot4_pair_small(zeros_i32(), qcd, xq, xo + 2 * cols))
        sab, scd, dm = scales_mins_quad(w, a + o, b + o, c + o, d + o, xd[t + 3, k], xs[t + 3, k])
        m3 = vadd(m3, dm)
        ab3 = fma_pair(ab3, sab, dot4_pair_small(zeros_i32(), qab, xq, xo + 3 * cols))
        cd3 = fma_pair(cd3, scd, dot4_pair_small(zeros_i32(), qcd, xq, xo + 3 * cols))
    _store(out, t, r0, r1, r2, r3, ab0, cd0, m0)
    _store(out, t + 1, r0, r1, r2, r3, ab1, cd1, m1)
    _store(out, t + 2, r0, r1, r2, r3, ab2, cd2, m2)
    _store(out, t + 3, r0, r1, r2, r3, ab3, cd3, m3)


@njit_serial
def _store(out, t, r0, r1, r2, r3, ab, cd, m):
    out[t, r0], out[t, r1] = hsum_lo(ab) + lane(m, 1), hsum_hi(ab) + lane(m, 3)
    out[t, r2], out[t, r3] = hsum_lo(cd) + lane(m, 5), hsum_hi(cd) + lane(m, 7)


one_row, one_row_serial = njit_parallel(_one_row), njit_serial(_one_row)
row_groups, row_groups_serial = njit_parallel(_row_groups), njit_serial(_row_groups)


@njit_serial
def matvec_into(variant, out, w, x, i8, i32, f32):
    """Variant number `variant` of FORMAT.variants (+ SERIAL: its serial twin)."""
    if variant == 0:
        one_row(out, w, x, i8, i32, f32)
    elif variant == 1:
        row_groups(out, w, x, i8, i32, f32)
    elif variant == 2:
        q4_1_rows16.rows16(out, w, x, i8, i32, f32)
    elif variant == 3:
        q4_1_rows16.rows16_amx(out, w, x, i8, i32, f32)
    elif variant == SERIAL:
        one_row_serial(out, w, x, i8, i32, f32)
    elif variant == SERIAL + 1:
        row_groups_serial(out, w, x, i8, i32, f32)
    elif variant == SERIAL + 2:
        q4_1_rows16.rows16_serial(out, w, x, i8, i32, f32)
    else:
        q4_1_rows16.rows16_amx_serial(out, w, x, i8, i32, f32)


VNNI = ("avx512vnni", "avx512bw", "avx512vl")
FORMAT = WeightFormat(
    "q4_1", GGML_TYPE, QK, BLOCK, "q8_1", dequantize, quantize, (0, 2), get_rows, matvec_into,
    variants=(
        Variant("one_row", one_row, one_row_serial, "one row per pass, x widened to int16", reference=True),
        Variant("row_groups", row_groups, row_groups_serial, "four rows per pass as two row pairs"),
        Variant("rows16", q4_1_rows16.rows16, q4_1_rows16.rows16_serial,
                "sixteen rows repacked at load, eight lanes of each in eight registers and their mins in "
                "one; prefill two tokens per pass", repack=q4_1_rows16.repack),
        Variant("rows16_amx", q4_1_rows16.rows16_amx, q4_1_rows16.rows16_amx_serial,
                "rows16's layout; prefill 32 tokens x 32 rows per pass on AMX tiles, one float chain per row "
                "(within rounding of the reference)", needs=VNNI + amx.NEEDS, repack=q4_1_rows16.repack,
                check=amx.verified),
    ),
    # AVX2 EPYC, 1536 x 576 at 1 thread: 42 against 123 us; without AVX2 one row wins
    prefer=(("row_groups", VNNI), ("row_groups", ("avx2",))),
    # AMD EPYC Zen 4, interleaved, row_groups -> rows16 at 1 thread: decode 3072 x 576 0.070 -> 0.030 ms,
    # 49152 x 576 1.08 -> 0.42; prefill of 512 tokens 576 x 1536 9.7 -> 5.4 ms. AMX: not yet timed on an AMX CPU
    repacked=(("rows16_amx", VNNI + amx.NEEDS), ("rows16", VNNI)),
)
