"""q8_0 repacked at load, sixteen rows interleaved (as `q4_0_rows16`, for 34-byte blocks).

Each group of sixteen rows becomes one stream of 544-byte blocks:

    16 f16 scales (rows 0..15) | 8 chunks of 64 bytes: chunk k = bytes 4k..4k+3 of each row

A matrix keeps its shape, (rows, row_bytes) uint8: rows 16g..16g+15 hold group g, the
rows after the last whole group stay in the GGUF layout.

The arithmetic is q8_0's reference order (`q8_0.one_row`): per row eight float lanes,
lane k accumulating fp16(d_w) * d_x * (products 4k..4k+3 of the block) with a fused
multiply-add block after block, summed as `hsum_float_8` at the end. Here accumulator k
holds lane k of sixteen rows (`rows16_lanes8`, shared with q5_0), so results are equal
bit for bit.
"""

import numpy as np
from numba import prange

from workbench.kernels.formats import groups16, rows16_lanes8, rows16_tiles
from workbench.kernels.formats.activations import quantize_rows_q8_0
from workbench.kernels.formats.rows import AHEAD, QK, prefetch_bytes, q8_0_scratch, sums_of_4
from workbench.kernels.isa.pairs import dot4_pair, fma_pair, load_i32x8_twice, q8_pair, scales_quad
from workbench.kernels.isa.vectors import zeros_f32
from workbench.kernels.isa.x86 import hsum_hi, hsum_lo
from workbench.kernels.jit import njit_parallel, njit_serial

BLOCK = 34
GROUP = groups16.GROUP
GROUP_BLOCK = GROUP * BLOCK  # 544 bytes: the group's scales, then its eight chunks


def repack(w: np.ndarray) -> np.ndarray:
    """GGUF q8_0 bytes (rows, row_bytes) -> the sixteen-row layout, same shape (a new array)."""
    return groups16.repack_scaled(w, BLOCK)


def unpack(w: np.ndarray) -> np.ndarray:
    """The inverse of `repack`: the GGUF layout again."""
    return groups16.unpack_scaled(w, BLOCK)


@njit_serial
def plain_quad(out, w, xq, xd, xc, t, r0, r1, r2, r3):
    """Token t of GGUF-layout rows r0..r3, weights biased +128 (`q8_0.row_groups_vnni`'s
    decode pass; here, the rows after a repacked matrix's last group)."""
    cols, rb = xq.shape[1], w.shape[1]
    a, b, c, d = r0 * rb, r1 * rb, r2 * rb, r3 * rb
    ab, cd = zeros_f32(), zeros_f32()
    for k in range(cols // QK):
        o = k * BLOCK
        prefetch_bytes(w, a + AHEAD + k * 4 * BLOCK, 4 * BLOCK)
        xo = t * cols + k * QK
        sab, scd = scales_quad(w, a + o, b + o, c + o, d + o, xd[t, k])
        qab, qcd = q8_pair(w, a + o + 2, b + o + 2), q8_pair(w, c + o + 2, d + o + 2)
        c0 = load_i32x8_twice(xc, xo // 4)
        ab = fma_pair(ab, sab, dot4_pair(c0, qab, xq, xo))
        cd = fma_pair(cd, scd, dot4_pair(c0, qcd, xq, xo))
    out[t, r0], out[t, r1] = hsum_lo(ab), hsum_hi(ab)
    out[t, r2], out[t, r3] = hsum_lo(cd), hsum_hi(cd)


def _rows16(out, w, x, i8, i32, f32):
    # W (rows16 layout) @ x (T, cols) -> out (T, rows): sixteen rows per pass, two tokens per pass in a prefill
    T, cols = x.shape
    nb = cols // QK
    xq, xd, xs = q8_0_scratch(T, cols, i8, i32, f32)
    quantize_rows_q8_0(x, xq, xd, xs)
    xc = i32[T * nb : T * nb + T * cols // 4].reshape((T, cols // 4))
    sums_of_4(xq, -128, xc)  # the weights are biased +128 for vpdpbusd
    groups, last = w.shape[0] // GROUP, w.shape[0] - 1
    for g in prange(groups):
        rows16_lanes8.group(out, w, xq, xd, xc, g, False, 0)
    first = GROUP * groups  # the GGUF-layout rows after the last group, four at a time
    for q in range(first, last + 1, 4):
        for t in range(T):
            plain_quad(out, w, xq, xd, xc, t, q, min(q + 1, last), min(q + 2, last), min(q + 3, last))


def _rows16_amx(out, w, x, i8, i32, f32):
    # as _rows16, whole tiles of sixteen tokens on AMX (`rows16_tiles`), the tokens after them as before
    T, cols = x.shape
    nb = cols // QK
    xq, xd, xs = q8_0_scratch(T, cols, i8, i32, f32)
    quantize_rows_q8_0(x, xq, xd, xs)
    xc = i32[T * nb : T * nb + T * cols // 4].reshape((T, cols // 4))
    sums_of_4(xq, -128, xc)
    groups, last = w.shape[0] // GROUP, w.shape[0] - 1
    tiled = T - T % rows16_tiles.TOKENS
    for it in prange(rows16_tiles.items(tiled, groups)):
        rows16_tiles.item(out, w, xq, xd, xd, tiled, it, rows16_tiles.Q8_0)
    for g in prange(groups):
        rows16_lanes8.group(out, w, xq, xd, xc, g, False, tiled)
    first = GROUP * groups
    for q in range(first, last + 1, 4):
        for t in range(T):
            plain_quad(out, w, xq, xd, xc, t, q, min(q + 1, last), min(q + 2, last), min(q + 3, last))


rows16, rows16_serial = njit_parallel(_rows16), njit_serial(_rows16)
rows16_amx, rows16_amx_serial = njit_parallel(_rows16_amx), njit_serial(_rows16_amx)
