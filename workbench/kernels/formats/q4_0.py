"""q4_0: 32 weights in 18 bytes = f16 d, u8 qs[16] (low nibbles x0..15, high x16..31);
x = d * (q - 8). Activations: q8_0.

Kernels follow llama.cpp's repacked `ggml_gemv_q4_0_8x8_q8_0`, which its CPU backend runs
on q4_0 weights instead of the vec_dot: per block one exact integer
sumi = sum (q - 8) q_x, then acc = fmaf(float(sumi), float(d_w) * d_x, acc) from acc = 0.
Variants, equal bit for bit:
- "one_row": one row per pass, x widened to int16 (the plain reference order);
- "row_groups": four rows per pass, their block dots in one register of four 4-lane rows
  (`isa.quads`), the four chains side by side in an f32x4;
- "row_octets": eight rows per pass, one int32 lane each (`q4_0_octets`, AVX2);
- "rows16": sixteen rows per pass on weights repacked at load (`q4_0_rows16`), no
  sum across lanes.
"""

import numpy as np
from numba import prange

from workbench.kernels.formats import q4_0_octets, q4_0_rows16
from workbench.kernels.formats.activations import quantize_rows_q8_0
from workbench.kernels.formats.base import (
    SERIAL,
    Variant,
    WeightFormat,
    f16_bytes,
    f16_field,
    inverse,
    nibbles,
    pack_nibbles,
    signed_absmax,
)
from workbench.kernels.formats.rows import AHEAD, QK, ROWS, group_rows, prefetch_bytes, q8_0_scratch
from workbench.kernels.isa import amx
from workbench.kernels.isa.pairs import scales4
from workbench.kernels.isa.quads import dot4_quad_nibbles, fma_quad_sums, nibbles_quad
from workbench.kernels.isa.vectors import fmaf, load_f16, pdot_q4, vsum, zeros_i32
from workbench.kernels.isa.x86 import lane, zeros_f32x4
from workbench.kernels.jit import njit_parallel, njit_serial

GGML_TYPE = 2
BLOCK = 18


def dequantize(blocks: np.ndarray) -> np.ndarray:
    q = nibbles(blocks[:, 2:]).astype(np.int8) - np.int8(8)
    return f16_field(blocks, 0) * q.astype(np.float32)


def quantize(x: np.ndarray) -> np.ndarray:
    d = signed_absmax(x) / np.float32(-8)
    q = np.trunc(x * inverse(d) + np.float32(8.5)).clip(0, 15).astype(np.uint8)
    return np.concatenate([f16_bytes(d), pack_nibbles(q)], axis=-1)


@njit_serial
def get_rows(out, w, ids):
    for t in range(ids.shape[0]):
        row = w[ids[t]]
        for b in range(out.shape[1] // QK):
            d = load_f16(row, BLOCK * b)
            for j in range(16):
                q = row[BLOCK * b + 2 + j]
                out[t, QK * b + j] = d * np.float32(np.int32(q & 15) - 8)
                out[t, QK * b + 16 + j] = d * np.float32(np.int32(q >> 4) - 8)


def _one_row(out, w, x, i8, i32, f32):
    # W (rows, nb*18) @ x (T, cols) -> out (T, rows)
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
                o = b * BLOCK
                sumi = vsum(pdot_q4(row, o + 2, 0, 8, xq, t * cols + b * QK))
                acc = fmaf(np.float32(sumi), load_f16(row, o) * xd[t, b], acc)
            out[t, r] = acc


def _tiles(out, w, xq, xd, xs, tiled):
    # row_groups' prefill tiles for row_octets: tokens 0..tiled-1 four at a time, four rows per pass
    last = w.shape[0] - 1
    for g in prange((last + ROWS) // ROWS):
        r0, r1, r2, r3 = group_rows(g, last)
        for t in range(0, tiled, 4):
            _four_tokens(out, w, xq, xd, xs, t, r0, r1, r2, r3)


def _row_groups(out, w, x, i8, i32, f32):
    # W (rows, nb*18) @ x (T, cols) -> out (T, rows), four rows per pass
    T, cols = x.shape
    last = w.shape[0] - 1
    xq, xd, xs = q8_0_scratch(T, cols, i8, i32, f32)
    quantize_rows_q8_0(x, xq, xd, xs)
    tiled = T - T % 4  # prefill: tokens four at a time, each block's nibbles unpacked once for four
    if tiled:  # eight rows: each block of x loaded once for eight rows (AVX-512's 32 registers)
        for g in prange((last + 8) // 8):
            for t in range(0, tiled, 4):
                _eight_rows(out, w, xq, xd, xs, t, 8 * g, last)
    for g in prange((last + ROWS) // ROWS):
        r0, r1, r2, r3 = group_rows(g, last)
        for t in range(tiled, T):  # decode, and the last tokens of a prefill
            q4_0_rows16.plain_quad(out, w, xq, xd, xs, t, r0, r1, r2, r3)


@njit_serial
def _four_tokens(out, w, xq, xd, xs, t, r0, r1, r2, r3):
    """Tokens t..t+3 of rows r0..r3: each token's arithmetic exactly the one-token path's."""
    cols, rb = xq.shape[1], w.shape[1]
    a, b, c, d = r0 * rb, r1 * rb, r2 * rb, r3 * rb
    acc0, acc1, acc2, acc3 = zeros_f32x4(), zeros_f32x4(), zeros_f32x4(), zeros_f32x4()
    for k in range(cols // QK):
        o = k * BLOCK
        prefetch_bytes(w, a + AHEAD + k * ROWS * BLOCK, ROWS * BLOCK)
        lo, hi = nibbles_quad(w, a + o + 2, b + o + 2, c + o + 2, d + o + 2)
        xo = t * cols + k * QK
        p = dot4_quad_nibbles(zeros_i32(), lo, hi, xq, xo)
        acc0 = fma_quad_sums(acc0, p, 8 * xs[t, k], scales4(w, a + o, b + o, c + o, d + o, xd[t, k]))
        p = dot4_quad_nibbles(zeros_i32(), lo, hi, xq, xo + cols)
        acc1 = fma_quad_sums(acc1, p, 8 * xs[t + 1, k], scales4(w, a + o, b + o, c + o, d + o, xd[t + 1, k]))
        p = dot4_quad_nibbles(zeros_i32(), lo, hi, xq, xo + 2 * cols)
        acc2 = fma_quad_sums(acc2, p, 8 * xs[t + 2, k], scales4(w, a + o, b + o, c + o, d + o, xd[t + 2, k]))
        p = dot4_quad_nibbles(zeros_i32(), lo, hi, xq, xo + 3 * cols)
        acc3 = fma_quad_sums(acc3, p, 8 * xs[t + 3, k], scales4(w, a + o, b + o, c + o, d + o, xd[t + 3, k]))
    _store_quads(out, t, r0, r1, r2, r3, acc0, acc1, acc2, acc3)


@njit_serial
def _eight_rows(out, w, xq, xd, xs, t, r, last):
    """Tokens t..t+3 of rows r..r+7 (past `last`: the last row again), as two quads of
    `_four_tokens` side by side: each token's arithmetic exactly the one-token path's."""
    cols, rb = xq.shape[1], w.shape[1]
    r1, r2, r3 = min(r + 1, last), min(r + 2, last), min(r + 3, last)
    r4, r5, r6, r7 = min(r + 4, last), min(r + 5, last), min(r + 6, last), min(r + 7, last)
    a, b, c, d, e, f, g, h = r * rb, r1 * rb, r2 * rb, r3 * rb, r4 * rb, r5 * rb, r6 * rb, r7 * rb
    acc0, acc1, acc2, acc3 = zeros_f32x4(), zeros_f32x4(), zeros_f32x4(), zeros_f32x4()
    acc4, acc5, acc6, acc7 = zeros_f32x4(), zeros_f32x4(), zeros_f32x4(), zeros_f32x4()
    for k in range(cols // QK):
        o = k * BLOCK
        lo, hi = nibbles_quad(w, a + o + 2, b + o + 2, c + o + 2, d + o + 2)
        lo2, hi2 = nibbles_quad(w, e + o + 2, f + o + 2, g + o + 2, h + o + 2)
        xo = t * cols + k * QK
        for i in range(4):  # unrolled by LLVM: the accumulators stay in registers
            m, dx = 8 * xs[t + i, k], xd[t + i, k]
            p = dot4_quad_nibbles(zeros_i32(), lo, hi, xq, xo + i * cols)
            p2 = dot4_quad_nibbles(zeros_i32(), lo2, hi2, xq, xo + i * cols)
            s = scales4(w, a + o, b + o, c + o, d + o, dx)
            s2 = scales4(w, e + o, f + o, g + o, h + o, dx)
            if i == 0:
                acc0, acc4 = fma_quad_sums(acc0, p, m, s), fma_quad_sums(acc4, p2, m, s2)
            elif i == 1:
                acc1, acc5 = fma_quad_sums(acc1, p, m, s), fma_quad_sums(acc5, p2, m, s2)
            elif i == 2:
                acc2, acc6 = fma_quad_sums(acc2, p, m, s), fma_quad_sums(acc6, p2, m, s2)
            else:
                acc3, acc7 = fma_quad_sums(acc3, p, m, s), fma_quad_sums(acc7, p2, m, s2)
    _store_quads(out, t, r, r1, r2, r3, acc0, acc1, acc2, acc3)
    _store_quads(out, t, r4, r5, r6, r7, acc4, acc5, acc6, acc7)


@njit_serial
def _store_quads(out, t, r0, r1, r2, r3, acc0, acc1, acc2, acc3):
    """Rows r0..r3 of tokens t..t+3 from one f32x4 per token."""
    for i in range(4):
        acc = acc0 if i == 0 else (acc1 if i == 1 else (acc2 if i == 2 else acc3))
        out[t + i, r0], out[t + i, r1], out[t + i, r2], out[t + i, r3] = (lane(acc, 0), lane(acc, 1),
                                                                          lane(acc, 2), lane(acc, 3))


def _row_octets(out, w, x, i8, i32, f32):
    # eight rows per pass for decode (`q4_0_octets`), the four-token tiles for prefill
    T, cols = x.shape
    xq, xd, xs = q8_0_scratch(T, cols, i8, i32, f32)
    quantize_rows_q8_0(x, xq, xd, xs)
    tiled = T - T % 4
    if tiled:
        tiles(out, w, xq, xd, xs, tiled)
    if tiled < T:
        q4_0_octets.octets_from(out, w, xq, xd, xs, tiled)


def _row_octets_serial(out, w, x, i8, i32, f32):
    T, cols = x.shape
    xq, xd, xs = q8_0_scratch(T, cols, i8, i32, f32)
    quantize_rows_q8_0(x, xq, xd, xs)
    tiled = T - T % 4
    if tiled:
        tiles_serial(out, w, xq, xd, xs, tiled)
    if tiled < T:
        q4_0_octets.octets_from_serial(out, w, xq, xd, xs, tiled)


tiles, tiles_serial = njit_parallel(_tiles), njit_serial(_tiles)
one_row, one_row_serial = njit_parallel(_one_row), njit_serial(_one_row)
row_groups, row_groups_serial = njit_parallel(_row_groups), njit_serial(_row_groups)
row_octets, row_octets_serial = njit_serial(_row_octets), njit_serial(_row_octets_serial)


@njit_serial
def matvec_into(variant, out, w, x, i8, i32, f32):
    """Variant number `variant` of FORMAT.variants (+ SERIAL: its serial twin)."""
    if variant == 0:
        one_row(out, w, x, i8, i32, f32)
    elif variant == 1:
        row_groups(out, w, x, i8, i32, f32)
    elif variant == 2:
        row_octets(out, w, x, i8, i32, f32)
    elif variant == SERIAL:
        one_row_serial(out, w, x, i8, i32, f32)
    elif variant == SERIAL + 1:
        row_groups_serial(out, w, x, i8, i32, f32)
    elif variant == 3:
        q4_0_rows16.rows16(out, w, x, i8, i32, f32)
    elif variant == SERIAL + 2:
        row_octets_serial(out, w, x, i8, i32, f32)
    elif variant == 4:
        q4_0_rows16.rows16_amx(out, w, x, i8, i32, f32)
    elif variant == SERIAL + 4:
        q4_0_rows16.rows16_amx_serial(out, w, x, i8, i32, f32)
    else:
        q4_0_rows16.rows16_serial(out, w, x, i8, i32, f32)


FORMAT = WeightFormat(
    "q4_0", GGML_TYPE, QK, BLOCK, "q8_0", dequantize, quantize, (0,), get_rows, matvec_into,
    variants=(
        Variant("one_row", one_row, one_row_serial, "one row per pass, x widened to int16", reference=True),
        Variant("row_groups", row_groups, row_groups_serial, "four rows of 4 lanes in one register"),
        Variant("row_octets", row_octets, row_octets_serial,
                "eight rows, one int32 lane each (AVX2 vphaddw / vpmaddwd); prefill as row_groups"),
        Variant("rows16", q4_0_rows16.rows16, q4_0_rows16.rows16_serial,
                "sixteen rows repacked at load, one int32 lane each; prefill four tokens per pass",
                repack=q4_0_rows16.repack),
        Variant("rows16_amx", q4_0_rows16.rows16_amx, q4_0_rows16.rows16_amx_serial,
                "rows16's layout; prefill 32 tokens x 32 rows per pass on AMX tiles, nibbles unpacked once per "
                "block", needs=("avx512vnni", "avx512bw", "avx512vl") + amx.NEEDS, repack=q4_0_rows16.repack,
                check=amx.verified),
    ),
    # without AVX2, one row per pass. AMD EPYC Zen 4 (AVX-512 VNNI), decode tok/s of the TinyLlama Q4_0 twin (DRAM-bound),
    # interleaved in one process: row groups 24.5 / 41.3 at 1 / 2 threads, octets 17.4 / 30.1
    # (the octets read eight row streams; in the caches they are 25% faster, 4096 x 4096:
    # 0.42 against 0.53 ms, and SmolLM2 Q4_0 decodes alike with both, 161.5 / 162.1).
    # With AVX2 only (an earlier AMD EPYC) the octets were 1.4-1.7x the row groups.
    prefer=(("row_groups", ("avx512vnni", "avx512bw", "avx512vl")), ("row_octets", ("avx2",))),
    # AMD EPYC Zen 4, 1 thread, interleaved: 5632 x 2048 from DRAM 0.374 -> 0.217 ms (17 -> 30 GB/s),
    # 1536 x 576 in cache 0.030 -> 0.009 ms. Not measured on an AVX2-only CPU: there it stays row_octets.
    # AMX: written and tested on its emulation (tests/test_amx.py), not yet timed on an AMX CPU
    repacked=(("rows16_amx", ("avx512vnni", "avx512bw", "avx512vl") + amx.NEEDS),
              ("rows16", ("avx512vnni", "avx512bw", "avx512vl"))),
)
