"""q8_0: 32 weights in 34 bytes = f16 d, int8 qs[32]; x = d * q. Activations: q8_0.

Kernels follow llama.cpp's x86 decode path operation for operation, so results are
equal bit for bit to `ggml_vec_dot_q8_0_q8_0` (AVX2): every block adds
fp16(d_w) * d_x * (sum of products 4k..4k+3, k = 0..7) into 8 float32 lanes with fused
multiply-adds, summed as `hsum_float_8` once per row. Variants, equal bit for bit:
- "one_row": one row per pass, x widened to int16 (the plain reference order);
- "row_groups": four rows per pass as two row pairs (`isa.pairs`), the block dots by
  llama.cpp's AVX2 sign trick (|q| unsigned times x with q's sign, `vpmaddubsw`);
- "row_groups_vnni": the same rows, each weight biased by +128 to be unsigned and the dot
  started from -128 * (sum of 4 x), one `vpdpbusd` per block pair (needs 512-bit VNNI);
- "rows16": sixteen rows per pass on weights repacked at load (`q8_0_rows16`), each of
  llama.cpp's eight lanes of sixteen rows in one register.
"""

import numpy as np
from numba import prange

from workbench.kernels.formats import q8_0_rows16
from workbench.kernels.formats.activations import quantize_act_q8_0, quantize_rows_q8_0
from workbench.kernels.formats.base import SERIAL, Variant, WeightFormat, f16_bytes, f16_field, inverse, roundf
from workbench.kernels.formats.rows import AHEAD, QK, ROWS, group_rows, prefetch_bytes, q8_0_scratch, sums_of_4
from workbench.kernels.isa import amx
from workbench.kernels.isa.pairs import (
    dot4_pair,
    dot4_pair_signed,
    fma_pair,
    load_i32x8_twice,
    q8_pair,
    scales_quad,
)
from workbench.kernels.isa.vectors import fma_quads, load_f16, pdot_i8, vsum_quads, zeros_f32, zeros_i32
from workbench.kernels.isa.x86 import hsum_hi, hsum_lo, vscale
from workbench.kernels.jit import njit_parallel, njit_serial

GGML_TYPE = 8
BLOCK = 34


def dequantize(blocks: np.ndarray) -> np.ndarray:
    return f16_field(blocks, 0) * blocks[:, 2:].view(np.int8).astype(np.float32)


def quantize(x: np.ndarray) -> np.ndarray:
    d = np.abs(x).max(axis=-1, keepdims=True) / np.float32(127)
    q = roundf(x * inverse(d)).astype(np.int8)
    return np.concatenate([f16_bytes(d), q.view(np.uint8)], axis=-1)


@njit_serial
def get_rows(out, w, ids):
    for t in range(ids.shape[0]):
        row = w[ids[t]]
        for b in range(out.shape[1] // QK):
            d = load_f16(row, BLOCK * b)
            for j in range(QK):
                out[t, QK * b + j] = d * np.float32(np.int8(row[BLOCK * b + 2 + j]))


def _one_row(out, w, x, i8, i32, f32):
    # W (rows, nb*34) @ x (T, cols) -> out (T, rows)
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
                o = b * BLOCK
                p = pdot_i8(row, o + 2, xq, t * cols + b * QK)
                acc = fma_quads(acc, load_f16(row, o) * xd[t, b], p)
            out[t, r] = vsum_quads(acc)


def _row_groups(out, w, x, i8, i32, f32):
    # W (rows, nb*34) @ x (T, cols) -> out (T, rows), four rows per pass; prefill tokens
    # four at a time (each block's weights loaded once for four tokens, each token's
    # arithmetic unchanged)
    T, cols = x.shape
    nb, rb, last = cols // QK, w.shape[1], w.shape[0] - 1
    xq, xd, xs = q8_0_scratch(T, cols, i8, i32, f32)
    quantize_rows_q8_0(x, xq, xd, xs)
    tiled = T - T % 4  # prefill: tokens four at a time, each block's weights loaded once for four
    if tiled:
        for g in prange((last + ROWS) // ROWS):
            r0, r1, r2, r3 = group_rows(g, last)
            for t in range(0, tiled, 4):
                _signed_tokens(out, w, xq, xd, t, r0, r1, r2, r3)
    for g in prange((last + ROWS) // ROWS):
        r0, r1, r2, r3 = group_rows(g, last)
        a, b, c, d = r0 * rb, r1 * rb, r2 * rb, r3 * rb
        for t in range(tiled, T):  # decode, and the last tokens of a prefill
            ab, cd = zeros_f32(), zeros_f32()
            for k in range(nb):
                o = k * BLOCK
                prefetch_bytes(w, a + AHEAD + k * ROWS * BLOCK, ROWS * BLOCK)
                xo = t * cols + k * QK
                sab, scd = scales_quad(w, a + o, b + o, c + o, d + o, xd[t, k])
                qab, qcd = q8_pair(w, a + o + 2, b + o + 2), q8_pair(w, c + o + 2, d + o + 2)
                ab = fma_pair(ab, sab, dot4_pair_signed(zeros_i32(), qab, xq, xo))
                cd = fma_pair(cd, scd, dot4_pair_signed(zeros_i32(), qcd, xq, xo))
            out[t, r0], out[t, r1] = hsum_lo(ab), hsum_hi(ab)
            out[t, r2], out[t, r3] = hsum_lo(cd), hsum_hi(cd)


@njit_serial
def _signed_tokens(out, w, xq, xd, t, r0, r1, r2, r3):
    """Tokens t..t+3 of rows r0..r3 with the AVX2 sign-trick block dots."""
    cols, rb = xq.shape[1], w.shape[1]
    a, b, c, d = r0 * rb, r1 * rb, r2 * rb, r3 * rb
    ab0, cd0, ab1, cd1 = zeros_f32(), zeros_f32(), zeros_f32(), zeros_f32()
    ab2, cd2, ab3, cd3 = zeros_f32(), zeros_f32(), zeros_f32(), zeros_f32()
    for k in range(cols // QK):
        o = k * BLOCK
        prefetch_bytes(w, a + AHEAD + k * ROWS * BLOCK, ROWS * BLOCK)
        qab, qcd = q8_pair(w, a + o + 2, b + o + 2), q8_pair(w, c + o + 2, d + o + 2)
        xo = t * cols + k * QK
        sab, scd = scales_quad(w, a + o, b + o, c + o, d + o, xd[t, k])
        ab0 = fma_pair(ab0, sab, dot4_pair_signed(zeros_i32(), qab, xq, xo))
        cd0 = fma_pair(cd0, scd, dot4_pair_signed(zeros_i32(), qcd, xq, xo))
        sab, scd = scales_quad(w, a + o, b + o, c + o, d + o, xd[t + 1, k])
        ab1 = fma_pair(ab1, sab, dot4_pair_signed(zeros_i32(), qab, xq, xo + cols))
        cd1 = fma_pair(cd1, scd, dot4_pair_signed(zeros_i32(), qcd, xq, xo + cols))
        sab, scd = scales_quad(w, a + o, b + o, c + o, d + o, xd[t + 2, k])
        ab2 = fma_pair(ab2, sab, dot4_pair_signed(zeros_i32(), qab, xq, xo + 2 * cols))
        cd2 = fma_pair(cd2, scd, dot4_pair_signed(zeros_i32(), qcd, xq, xo + 2 * cols))
        sab, scd = scales_quad(w, a + o, b + o, c + o, d + o, xd[t + 3, k])
        ab3 = fma_pair(ab3, sab, dot4_pair_signed(zeros_i32(), qab, xq, xo + 3 * cols))
        cd3 = fma_pair(cd3, scd, dot4_pair_signed(zeros_i32(), qcd, xq, xo + 3 * cols))
    _store(out, t, r0, r1, r2, r3, ab0, cd0, ab1, cd1, ab2, cd2, ab3, cd3)


@njit_serial
def _store(out, t, r0, r1, r2, r3, ab0, cd0, ab1, cd1, ab2, cd2, ab3, cd3):
    """Rows r0..r3 of tokens t..t+n-1 from their pair registers (each half a row's lanes)."""
    out[t, r0], out[t, r1], out[t, r2], out[t, r3] = hsum_lo(ab0), hsum_hi(ab0), hsum_lo(cd0), hsum_hi(cd0)
    out[t + 1, r0], out[t + 1, r1] = hsum_lo(ab1), hsum_hi(ab1)
    out[t + 1, r2], out[t + 1, r3] = hsum_lo(cd1), hsum_hi(cd1)
    out[t + 2, r0], out[t + 2, r1] = hsum_lo(ab2), hsum_hi(ab2)
    out[t + 2, r2], out[t + 2, r3] = hsum_lo(cd2), hsum_hi(cd2)
    out[t + 3, r0], out[t + 3, r1] = hsum_lo(ab3), hsum_hi(ab3)
    out[t + 3, r2], out[t + 3, r3] = hsum_lo(cd3), hsum_hi(cd3)


def _row_groups_vnni(out, w, x, i8, i32, f32):
    # as _row_groups, the block dots of weights biased +128 by `vpdpbusd`
    T, cols = x.shape
    nb, last = cols // QK, w.shape[0] - 1
    xq, xd, xs = q8_0_scratch(T, cols, i8, i32, f32)
    quantize_rows_q8_0(x, xq, xd, xs)
    xc = i32[T * nb : T * nb + T * cols // 4].reshape((T, cols // 4))
    sums_of_4(xq, -128, xc)  # q8_pair adds 128 to every weight
    tiled = T - T % 4  # prefill: tokens four at a time, each block's weights loaded once for four
    if tiled:
        for g in prange((last + 8) // 8):
            for t in range(0, tiled, 4):
                _biased_tokens8(out, w, xq, xd, xc, t, 8 * g, last)
    for g in prange((last + ROWS) // ROWS):
        r0, r1, r2, r3 = group_rows(g, last)
        for t in range(tiled, T):  # decode, and the last tokens of a prefill
            q8_0_rows16.plain_quad(out, w, xq, xd, xc, t, r0, r1, r2, r3)


@njit_serial
def _biased_tokens8(out, w, xq, xd, xc, t, r, last):
    """Tokens t..t+3 of rows r..r+7 (past `last`: the last row again), weights biased
    +128: 16 accumulators in AVX-512's 32 registers, so each block of x is loaded once for
    eight rows and each block of weights once for four tokens. The row scales are taken
    once per block and multiplied by each token's (the same products as `scales_quad`)."""
    cols, rb = xq.shape[1], w.shape[1]
    a, b, c, d = r * rb, min(r + 1, last) * rb, min(r + 2, last) * rb, min(r + 3, last) * rb
    e, f, g, h = min(r + 4, last) * rb, min(r + 5, last) * rb, min(r + 6, last) * rb, min(r + 7, last) * rb
    ab0, cd0, ef0, gh0 = zeros_f32(), zeros_f32(), zeros_f32(), zeros_f32()
    ab1, cd1, ef1, gh1 = zeros_f32(), zeros_f32(), zeros_f32(), zeros_f32()
    ab2, cd2, ef2, gh2 = zeros_f32(), zeros_f32(), zeros_f32(), zeros_f32()
    ab3, cd3, ef3, gh3 = zeros_f32(), zeros_f32(), zeros_f32(), zeros_f32()
    one = np.float32(1.0)
    for k in range(cols // QK):
        o = k * BLOCK
        qab, qcd = q8_pair(w, a + o + 2, b + o + 2), q8_pair(w, c + o + 2, d + o + 2)
        qef, qgh = q8_pair(w, e + o + 2, f + o + 2), q8_pair(w, g + o + 2, h + o + 2)
        sab, scd = scales_quad(w, a + o, b + o, c + o, d + o, one)
        sef, sgh = scales_quad(w, e + o, f + o, g + o, h + o, one)
        xo = t * cols + k * QK
        c0, dx = load_i32x8_twice(xc, xo // 4), xd[t, k]
        ab0 = fma_pair(ab0, vscale(sab, dx), dot4_pair(c0, qab, xq, xo))
        cd0 = fma_pair(cd0, vscale(scd, dx), dot4_pair(c0, qcd, xq, xo))
        ef0 = fma_pair(ef0, vscale(sef, dx), dot4_pair(c0, qef, xq, xo))
        gh0 = fma_pair(gh0, vscale(sgh, dx), dot4_pair(c0, qgh, xq, xo))
        xo += cols
        c0, dx = load_i32x8_twice(xc, xo // 4), xd[t + 1, k]
        ab1 = fma_pair(ab1, vscale(sab, dx), dot4_pair(c0, qab, xq, xo))
        cd1 = fma_pair(cd1, vscale(scd, dx), dot4_pair(c0, qcd, xq, xo))
        ef1 = fma_pair(ef1, vscale(sef, dx), dot4_pair(c0, qef, xq, xo))
        gh1 = fma_pair(gh1, vscale(sgh, dx), dot4_pair(c0, qgh, xq, xo))
        xo += cols
        c0, dx = load_i32x8_twice(xc, xo // 4), xd[t + 2, k]
        ab2 = fma_pair(ab2, vscale(sab, dx), dot4_pair(c0, qab, xq, xo))
        cd2 = fma_pair(cd2, vscale(scd, dx), dot4_pair(c0, qcd, xq, xo))
        ef2 = fma_pair(ef2, vscale(sef, dx), dot4_pair(c0, qef, xq, xo))
        gh2 = fma_pair(gh2, vscale(sgh, dx), dot4_pair(c0, qgh, xq, xo))
        xo += cols
        c0, dx = load_i32x8_twice(xc, xo // 4), xd[t + 3, k]
        ab3 = fma_pair(ab3, vscale(sab, dx), dot4_pair(c0, qab, xq, xo))
        cd3 = fma_pair(cd3, vscale(scd, dx), dot4_pair(c0, qcd, xq, xo))
        ef3 = fma_pair(ef3, vscale(sef, dx), dot4_pair(c0, qef, xq, xo))
        gh3 = fma_pair(gh3, vscale(sgh, dx), dot4_pair(c0, qgh, xq, xo))
    _store(out, t, r, min(r + 1, last), min(r + 2, last), min(r + 3, last), ab0, cd0, ab1, cd1, ab2, cd2, ab3, cd3)
    _store(out, t, min(r + 4, last), min(r + 5, last), min(r + 6, last), min(r + 7, last),
           ef0, gh0, ef1, gh1, ef2, gh2, ef3, gh3)


one_row, one_row_serial = njit_parallel(_one_row), njit_serial(_one_row)
row_groups, row_groups_serial = njit_parallel(_row_groups), njit_serial(_row_groups)
row_groups_vnni, row_groups_vnni_serial = njit_parallel(_row_groups_vnni), njit_serial(_row_groups_vnni)


@njit_serial
def matvec_into(variant, out, w, x, i8, i32, f32):
    """Variant number `variant` of FORMAT.variants (+ SERIAL: its serial twin)."""
    if variant == 0:
        one_row(out, w, x, i8, i32, f32)
    elif variant == 1:
        row_groups(out, w, x, i8, i32, f32)
    elif variant == 2:
        row_groups_vnni(out, w, x, i8, i32, f32)
    elif variant == 3:
        q8_0_rows16.rows16(out, w, x, i8, i32, f32)
    elif variant == 4:
        q8_0_rows16.rows16_amx(out, w, x, i8, i32, f32)
    elif variant == SERIAL + 4:
        q8_0_rows16.rows16_amx_serial(out, w, x, i8, i32, f32)
    elif variant == SERIAL:
        one_row_serial(out, w, x, i8, i32, f32)
    elif variant == SERIAL + 1:
        row_groups_serial(out, w, x, i8, i32, f32)
    elif variant == SERIAL + 2:
        row_groups_vnni_serial(out, w, x, i8, i32, f32)
    else:
        q8_0_rows16.rows16_serial(out, w, x, i8, i32, f32)


VNNI = ("avx512vnni", "avx512bw", "avx512vl")
FORMAT = WeightFormat(
    "q8_0", GGML_TYPE, QK, BLOCK, "q8_0", dequantize, quantize, (0,), get_rows, matvec_into,
    variants=(
        Variant("one_row", one_row, one_row_serial, "one row per pass, x widened to int16", reference=True),
        Variant("row_groups", row_groups, row_groups_serial, "four rows per pass, AVX2 sign-trick block dots"),
        Variant("row_groups_vnni", row_groups_vnni, row_groups_vnni_serial,
                "four rows per pass, biased weights, one vpdpbusd per block pair", needs=VNNI),
        Variant("rows16", q8_0_rows16.rows16, q8_0_rows16.rows16_serial,
                "sixteen rows repacked at load, eight lanes of each in eight registers; prefill two tokens per pass",
                repack=q8_0_rows16.repack),
        Variant("rows16_amx", q8_0_rows16.rows16_amx, q8_0_rows16.rows16_amx_serial,
                "rows16's layout; prefill 32 tokens x 32 rows per pass on AMX tiles, one float chain per row "
                "(within rounding of the reference)", needs=VNNI + amx.NEEDS, repack=q8_0_rows16.repack,
                check=amx.verified),
    ),
    # 1536 x 576 at 1 thread, AVX2 EPYC: row groups 1.5-3x one row; without AVX2 the
    # portable widening dots lose to one row per pass
    prefer=(("row_groups_vnni", VNNI), ("row_groups", ("avx2",))),
    # AMX: written and tested on its emulation (tests/test_amx.py), not yet timed on an AMX CPU
    repacked=(("rows16_amx", VNNI + amx.NEEDS), ("rows16", VNNI)),  # not measured on an AVX2-only CPU, whose vpmaddubsw would saturate on it
    quantize_activation=quantize_act_q8_0,
)
