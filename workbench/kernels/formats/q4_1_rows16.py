"""q4_1 repacked at load, sixteen rows interleaved (as `q4_0_rows16`, for 20-byte blocks with a min).

Each group of sixteen rows becomes one stream of 320-byte blocks:

    16 f16 scales d | 16 f16 mins m | 4 chunks of 64 bytes: chunk c = bytes 4c..4c+3 of each row

A matrix keeps its shape, (rows, row_bytes) uint8: rows 16g..16g+15 hold group g, the
rows after the last whole group stay in the GGUF layout.

The arithmetic is q4_1's reference order (`q4_1.one_row`, llama.cpp's AVX2
`ggml_vec_dot_q4_1_q8_1`): per row eight float lanes, lane k accumulating
fp16(d_w) * d_x * (products 4k..4k+3 of the block) with a fused multiply-add block after
block, summed as `hsum_float_8`, plus the row's sum of m_w * s_x over its blocks (each
product rounded, then added). Here accumulator k holds lane k of sixteen rows and one
more register the sixteen min sums, so results are equal bit for bit.
"""

import numpy as np
from numba import prange

from workbench.kernels.formats import groups16, rows16_tiles
from workbench.kernels.formats.activations import quantize_rows_q8_1
from workbench.kernels.formats.rows import AHEAD, QK, prefetch_bytes, q8_0_scratch
from workbench.kernels.isa.pairs import dot4_pair_small, fma_pair, q4_pair, scales_mins_quad
from workbench.kernels.isa.sixteen import chunks16_q4, fma16_q8, scales16, store16_hsum8_add, zeros16x8
from workbench.kernels.isa.vectors import zeros_f32, zeros_i32
from workbench.kernels.isa.x86 import hsum_hi, hsum_lo, lane, vadd, zeros_f32x8
from workbench.kernels.jit import njit_parallel, njit_serial

BLOCK = 20
GROUP = groups16.GROUP
GROUP_BLOCK = GROUP * BLOCK  # 320 bytes: the group's scales, its mins, then its four nibble chunks
MINS = 2 * GROUP  # byte offset of the mins in a block of sixteen rows
QUANTS = 4 * GROUP  # and of the nibble chunks


def repack(w: np.ndarray) -> np.ndarray:
    """GGUF q4_1 bytes (rows, row_bytes) -> the sixteen-row layout, same shape (a new array)."""
    return groups16.repack_fields(w, BLOCK, 2)


def unpack(w: np.ndarray) -> np.ndarray:
    """The inverse of `repack`: the GGUF layout again."""
    return groups16.unpack_fields(w, BLOCK, 2)


@njit_serial
def plain_quad(out, w, xq, xd, xs, t, r0, r1, r2, r3):
    """Token t of GGUF-layout rows r0..r3 (`q4_1.row_groups`' decode pass; here, also the
    rows after a repacked matrix's last group)."""
    cols, rb = xq.shape[1], w.shape[1]
    a, b, c, d = r0 * rb, r1 * rb, r2 * rb, r3 * rb
    ab, cd = zeros_f32(), zeros_f32()
    m = zeros_f32x8()  # odd lanes: each row's sum of m_w * s_x, added in block order
    for k in range(cols // QK):
        o = k * BLOCK
        prefetch_bytes(w, a + AHEAD + k * 4 * BLOCK, 4 * BLOCK)
        xo = t * cols + k * QK
        sab, scd, dm = scales_mins_quad(w, a + o, b + o, c + o, d + o, xd[t, k], xs[t, k])
        m = vadd(m, dm)
        ab = fma_pair(ab, sab, dot4_pair_small(zeros_i32(), q4_pair(w, a + o + 4, b + o + 4), xq, xo))
        cd = fma_pair(cd, scd, dot4_pair_small(zeros_i32(), q4_pair(w, c + o + 4, d + o + 4), xq, xo))
    out[t, r0], out[t, r1] = hsum_lo(ab) + lane(m, 1), hsum_hi(ab) + lane(m, 3)
    out[t, r2], out[t, r3] = hsum_lo(cd) + lane(m, 5), hsum_hi(cd) + lane(m, 7)


@njit_serial
def one_token(out, w, xq, xd, xs, xc, t, g):
    """Token t of group g's sixteen rows (xc: zeros, the start of every block dot)."""
    cols = xq.shape[1]
    base = g * GROUP * w.shape[1]
    accs, m = zeros16x8(), zeros_f32()
    for k in range(cols // QK):
        o = base + k * GROUP_BLOCK
        xo = t * cols + k * QK
        m = vadd(m, scales16(w, o + MINS, xs[t, k]))
        accs = fma16_q8(accs, chunks16_q4(w, o + QUANTS), xc, xo // 4, xq, xo, scales16(w, o, xd[t, k]))
    store16_hsum8_add(out, t * out.shape[1] + GROUP * g, accs, m)


@njit_serial
def two_tokens(out, w, xq, xd, xs, xc, t, g):
    """Tokens t, t+1 of group g: each block's nibbles unpacked once for both, each token's
    arithmetic exactly `one_token`'s."""
    cols, n = xq.shape[1], out.shape[1]
    base = g * GROUP * w.shape[1]
    acc0, acc1, m0, m1 = zeros16x8(), zeros16x8(), zeros_f32(), zeros_f32()
    for k in range(cols // QK):
        o = base + k * GROUP_BLOCK
        ch = chunks16_q4(w, o + QUANTS)
        xo = t * cols + k * QK
        m0 = vadd(m0, scales16(w, o + MINS, xs[t, k]))
        acc0 = fma16_q8(acc0, ch, xc, xo // 4, xq, xo, scales16(w, o, xd[t, k]))
        m1 = vadd(m1, scales16(w, o + MINS, xs[t + 1, k]))
        acc1 = fma16_q8(acc1, ch, xc, (xo + cols) // 4, xq, xo + cols, scales16(w, o, xd[t + 1, k]))
    store16_hsum8_add(out, t * n + GROUP * g, acc0, m0)
    store16_hsum8_add(out, (t + 1) * n + GROUP * g, acc1, m1)


@njit_serial
def activations(x, i8, i32, f32):
    """x as q8_1 in the caller's scratch (values, scales d, sums s = d * sum q), and the
    zeros every block dot starts from (q4_1's nibbles carry no bias)."""
    T, cols = x.shape
    nb = cols // QK
    xq, xd, _ = q8_0_scratch(T, cols, i8, i32, f32)
    xs = f32[T * nb : 2 * T * nb].reshape((T, nb))
    quantize_rows_q8_1(x, xq, xd, xs)
    xc = i32[: T * cols // 4].reshape((T, cols // 4))
    xc[:] = 0
    return xq, xd, xs, xc


@njit_serial
def rest(out, w, xq, xd, xs, xc, g, first):
    """Tokens first.. of group g, two at a time (first > 0: those after an AMX pass)."""
    T = xq.shape[0]
    paired = T - (T - first) % 2
    for t in range(first, paired, 2):
        two_tokens(out, w, xq, xd, xs, xc, t, g)
    if paired < T:
        one_token(out, w, xq, xd, xs, xc, T - 1, g)


def _rows16(out, w, x, i8, i32, f32):
    # W (rows16 layout) @ x (T, cols) -> out (T, rows): sixteen rows per pass, two tokens per pass in a prefill
    T = x.shape[0]
    xq, xd, xs, xc = activations(x, i8, i32, f32)
    groups, last = w.shape[0] // GROUP, w.shape[0] - 1
    for g in prange(groups):
        rest(out, w, xq, xd, xs, xc, g, 0)
    for q in range(GROUP * groups, last + 1, 4):  # the GGUF-layout rows after the last group
        for t in range(T):
            plain_quad(out, w, xq, xd, xs, t, q, min(q + 1, last), min(q + 2, last), min(q + 3, last))


def _rows16_amx(out, w, x, i8, i32, f32):
    # as _rows16, whole tiles of sixteen tokens on AMX (`rows16_tiles`), the tokens after them as before
    T = x.shape[0]
    xq, xd, xs, xc = activations(x, i8, i32, f32)
    groups, last = w.shape[0] // GROUP, w.shape[0] - 1
    tiled = T - T % rows16_tiles.TOKENS
    for it in prange(rows16_tiles.items(tiled, groups)):
        rows16_tiles.item(out, w, xq, xd, xs, tiled, it, rows16_tiles.Q4_1)
    for g in prange(groups):
        rest(out, w, xq, xd, xs, xc, g, tiled)
    for q in range(GROUP * groups, last + 1, 4):
        for t in range(T):
            plain_quad(out, w, xq, xd, xs, t, q, min(q + 1, last), min(q + 2, last), min(q + 3, last))


rows16, rows16_serial = njit_parallel(_rows16), njit_serial(_rows16)
rows16_amx, rows16_amx_serial = njit_parallel(_rows16_amx), njit_serial(_rows16_amx)
