"""q4_0 repacked at load, sixteen rows interleaved: the layout the decode kernel streams best.

The GGUF layout keeps each row's blocks together, so a kernel that reads several rows per
pass must gather them and sum each row's products across lanes, per block. Repacked as
llama.cpp's CPU backend repacks q4_0 for its own kernels (`block_q4_0x8`), each group of
sixteen rows becomes one stream of 288-byte blocks:

    16 f16 scales (rows 0..15) | 4 chunks of 64 bytes: chunk c = bytes 4c..4c+3 of each row

so that one `vpdpbusd` against four x bytes broadcast adds into each row's own lane
(`isa.sixteen`). A matrix keeps its shape, (rows, row_bytes) uint8: rows 16g..16g+15 hold
group g, and the rows after the last whole group stay in the GGUF layout.

Arithmetic per row and token is the reference order of `q4_0.one_row`, so results are
equal bit for bit: per block the exact integer sumi = sum q q_x - 8 sum q_x, then
acc = fmaf(float(sumi), d_w * d_x, acc) from acc = 0, block after block.
"""

import numpy as np
from numba import prange

from workbench.kernels.formats import groups16, rows16_tiles
from workbench.kernels.formats.activations import quantize_rows_q8_0
from workbench.kernels.formats.rows import AHEAD, QK, prefetch_bytes, q8_0_scratch
from workbench.kernels.isa.pairs import scales4
from workbench.kernels.isa.quads import dot4_quad, fma_quad_sums
from workbench.kernels.isa.sixteen import dot16, fma16, nibbles16, store16
from workbench.kernels.isa.vectors import zeros_f32, zeros_i32
from workbench.kernels.isa.x86 import lane, zeros_f32x4
from workbench.kernels.jit import njit_parallel, njit_serial

BLOCK = 18
GROUP = groups16.GROUP  # rows per interleaved group
GROUP_BLOCK = GROUP * BLOCK  # 288 bytes: the group's scales, then its four nibble chunks


def repack(w: np.ndarray) -> np.ndarray:
    """GGUF q4_0 bytes (rows, row_bytes) -> the sixteen-row layout, same shape (a new array)."""
    return groups16.repack_scaled(w, BLOCK)


def unpack(w: np.ndarray) -> np.ndarray:
    """The inverse of `repack`: the GGUF layout again."""
    return groups16.unpack_scaled(w, BLOCK)


@njit_serial
def plain_quad(out, w, xq, xd, xs, t, r0, r1, r2, r3):
    """Token t of GGUF-layout rows r0..r3 (`q4_0.row_groups`' decode pass; here, the rows
    after a repacked matrix's last group)."""
    cols, rb = xq.shape[1], w.shape[1]
    a, b, c, d = r0 * rb, r1 * rb, r2 * rb, r3 * rb
    acc = zeros_f32x4()
    for k in range(cols // QK):
        o = k * BLOCK
        prefetch_bytes(w, a + AHEAD + k * 4 * BLOCK, 4 * BLOCK)
        xo = t * cols + k * QK
        p = dot4_quad(zeros_i32(), w, a + o + 2, b + o + 2, c + o + 2, d + o + 2, xq, xo)
        s = scales4(w, a + o, b + o, c + o, d + o, xd[t, k])
        acc = fma_quad_sums(acc, p, 8 * xs[t, k], s)  # sum q q_x - 8 sum q_x
    out[t, r0], out[t, r1] = lane(acc, 0), lane(acc, 1)
    out[t, r2], out[t, r3] = lane(acc, 2), lane(acc, 3)


@njit_serial
def _one_token(out, w, xq, xd, xs, t, g):
    """Token t of group g's sixteen rows."""
    cols = xq.shape[1]
    base = g * GROUP * w.shape[1]
    acc = zeros_f32()
    for k in range(cols // QK):
        o = base + k * GROUP_BLOCK
        p = dot16(zeros_i32(), nibbles16(w, o + 2 * GROUP), xq, t * cols + k * QK)
        acc = fma16(acc, p, 8 * xs[t, k], w, o, xd[t, k])
    store16(out, t * out.shape[1] + GROUP * g, acc)


@njit_serial
def _four_tokens(out, w, xq, xd, xs, t, g):
    """Tokens t..t+3 of group g: each block's nibbles unpacked once for the four, each
    token's arithmetic exactly `_one_token`'s."""
    cols, n = xq.shape[1], out.shape[1]
    base = g * GROUP * w.shape[1]
    acc0, acc1, acc2, acc3 = zeros_f32(), zeros_f32(), zeros_f32(), zeros_f32()
    for k in range(cols // QK):
        o = base + k * GROUP_BLOCK
        nibs = nibbles16(w, o + 2 * GROUP)
        xo = t * cols + k * QK
        acc0 = fma16(acc0, dot16(zeros_i32(), nibs, xq, xo), 8 * xs[t, k], w, o, xd[t, k])
        acc1 = fma16(acc1, dot16(zeros_i32(), nibs, xq, xo + cols), 8 * xs[t + 1, k], w, o, xd[t + 1, k])
        acc2 = fma16(acc2, dot16(zeros_i32(), nibs, xq, xo + 2 * cols), 8 * xs[t + 2, k], w, o, xd[t + 2, k])
        acc3 = fma16(acc3, dot16(zeros_i32(), nibs, xq, xo + 3 * cols), 8 * xs[t + 3, k], w, o, xd[t + 3, k])
    store16(out, t * n + GROUP * g, acc0)
    store16(out, (t + 1) * n + GROUP * g, acc1)
    store16(out, (t + 2) * n + GROUP * g, acc2)
    store16(out, (t + 3) * n + GROUP * g, acc3)


@njit_serial
def rest(out, w, xq, xd, xs, g, first):
    """Tokens first.. of group g, four at a time (first > 0: those after an AMX pass)."""
    T = xq.shape[0]
    quads = T - (T - first) % 4
    for t in range(first, quads, 4):
        _four_tokens(out, w, xq, xd, xs, t, g)
    for t in range(quads, T):
        _one_token(out, w, xq, xd, xs, t, g)


def _rows16(out, w, x, i8, i32, f32):
    # W (rows16 layout) @ x (T, cols) -> out (T, rows): sixteen rows per pass, four tokens per pass in a prefill
    T, cols = x.shape
    xq, xd, xs = q8_0_scratch(T, cols, i8, i32, f32)
    quantize_rows_q8_0(x, xq, xd, xs)
    groups, last = w.shape[0] // GROUP, w.shape[0] - 1
    for g in prange(groups):
        rest(out, w, xq, xd, xs, g, 0)
    first = GROUP * groups  # the GGUF-layout rows after the last group, four at a time
    for q in range(first, last + 1, 4):
        for t in range(T):
            plain_quad(out, w, xq, xd, xs, t, q, min(q + 1, last), min(q + 2, last), min(q + 3, last))


def _rows16_amx(out, w, x, i8, i32, f32):
    # as _rows16, whole tiles of sixteen tokens on AMX (`rows16_tiles`), the tokens after them as before
    T, cols = x.shape
    xq, xd, xs = q8_0_scratch(T, cols, i8, i32, f32)
    quantize_rows_q8_0(x, xq, xd, xs)
    groups, last = w.shape[0] // GROUP, w.shape[0] - 1
    tiled = T - T % rows16_tiles.TOKENS
    for it in prange(rows16_tiles.items(tiled, groups)):
        rows16_tiles.item(out, w, xq, xd, xd, tiled, it, rows16_tiles.Q4_0)
    for g in prange(groups):
        rest(out, w, xq, xd, xs, g, tiled)
    first = GROUP * groups
    for q in range(first, last + 1, 4):
        for t in range(T):
            plain_quad(out, w, xq, xd, xs, t, q, min(q + 1, last), min(q + 2, last), min(q + 3, last))


rows16, rows16_serial = njit_parallel(_rows16), njit_serial(_rows16)
rows16_amx, rows16_amx_serial = njit_parallel(_rows16_amx), njit_serial(_rows16_amx)
