"""q5_0 repacked at load, sixteen rows interleaved (as `q8_0_rows16`, for 22-byte blocks).

Each group of sixteen rows becomes one stream of 352-byte blocks:

    16 f16 scales | 8 masks of 64 bits | 4 chunks of 64 bytes: chunk c = bytes 4c..4c+3 of each row's nibbles

where bit 4r + j of mask k is the 5th bit of value 4k + j of row r (the row's qh bits,
regrouped so that one mask widens to the 5th bits of a whole chunk, `vpmovm2b`). A matrix
keeps its shape; rows after the last whole group stay in the GGUF layout.

The arithmetic is q5_0's reference order (`q5_0.one_row`, llama.cpp's eight float lanes
per row), shared with q8_0 in `rows16_lanes8`, so results are equal bit for bit.
"""

import numpy as np
from numba import prange

from workbench.kernels.formats import groups16, rows16_lanes8
from workbench.kernels.formats.activations import quantize_rows_q8_0
from workbench.kernels.formats.rows import AHEAD, QK, prefetch_bytes, q8_0_scratch, sums_of_4
from workbench.kernels.isa.pairs import dot4_pair_small, fma_pair, load_i32x8_twice, q5_pair, scales_quad
from workbench.kernels.isa.vectors import load_u32, zeros_f32
from workbench.kernels.isa.x86 import hsum_hi, hsum_lo
from workbench.kernels.jit import njit_parallel, njit_serial

BLOCK = 22
GROUP = groups16.GROUP
GROUP_BLOCK = GROUP * BLOCK  # 352 bytes: scales, masks, nibble chunks


def repack(w: np.ndarray) -> np.ndarray:
    """GGUF q5_0 bytes (rows, row_bytes) -> the sixteen-row layout, same shape (a new array)."""
    b, g = groups16.blocks(w, BLOCK)
    nb = b.shape[2]
    qh = np.ascontiguousarray(b[..., 2:6]).view("<u4")[..., 0].transpose(0, 2, 1)  # (g, nb, 16 rows)
    bits = (qh[..., None] >> np.arange(32, dtype=np.uint32)) & np.uint32(1)  # (g, nb, 16, 32 values)
    bits = bits.reshape(g, nb, GROUP, 8, 4).transpose(0, 1, 3, 2, 4).reshape(g, nb, 8, 64)  # mask k, bit 4r + j
    masks = np.packbits(bits.astype(np.uint8), axis=-1, bitorder="little").reshape(g, nb, 64)
    return groups16.joined(w, g, [groups16.pieces(b, 0, 2, 2), masks, groups16.pieces(b, 6, BLOCK, 4)])


def unpack(w: np.ndarray) -> np.ndarray:
    """The inverse of `repack`: the GGUF layout again."""
    g, nb = w.shape[0] // GROUP, w.shape[1] // BLOCK
    packed = w[: GROUP * g].reshape(g, nb, GROUP_BLOCK)
    bits = np.unpackbits(packed[..., 32:96].reshape(g, nb, 8, 8), axis=-1, bitorder="little")  # (g, nb, 8, 64)
    bits = bits.reshape(g, nb, 8, GROUP, 4).transpose(0, 3, 1, 2, 4).reshape(g, GROUP, nb, 32)
    qh = np.packbits(bits, axis=-1, bitorder="little")  # (g, 16, nb, 4): the u32 qh, little-endian
    return groups16.joined(w, g, [groups16.rows_of(packed[..., :32], 2), qh, groups16.rows_of(packed[..., 96:], 4)])


@njit_serial
def plain_quad(out, w, xq, xd, xc, t, r0, r1, r2, r3):
    """Token t of GGUF-layout rows r0..r3 (`q5_0.row_groups`' pass; here, the rows after a
    repacked matrix's last group)."""
    cols, rb = xq.shape[1], w.shape[1]
    a, b, c, d = r0 * rb, r1 * rb, r2 * rb, r3 * rb
    ab, cd = zeros_f32(), zeros_f32()
    for k in range(cols // QK):
        o = k * BLOCK
        prefetch_bytes(w, a + AHEAD + k * 4 * BLOCK, 4 * BLOCK)
        xo = t * cols + k * QK
        c0 = load_i32x8_twice(xc, xo // 4)
        sab, scd = scales_quad(w, a + o, b + o, c + o, d + o, xd[t, k])
        qab = q5_pair(w, a + o + 6, b + o + 6, load_u32(w, a + o + 2), load_u32(w, b + o + 2))
        qcd = q5_pair(w, c + o + 6, d + o + 6, load_u32(w, c + o + 2), load_u32(w, d + o + 2))
        ab = fma_pair(ab, sab, dot4_pair_small(c0, qab, xq, xo))
        cd = fma_pair(cd, scd, dot4_pair_small(c0, qcd, xq, xo))
    out[t, r0], out[t, r1] = hsum_lo(ab), hsum_hi(ab)
    out[t, r2], out[t, r3] = hsum_lo(cd), hsum_hi(cd)


def _rows16(out, w, x, i8, i32, f32):
    # W (rows16 layout) @ x (T, cols) -> out (T, rows): sixteen rows per pass, two tokens per pass in a prefill
    T, cols = x.shape
    nb = cols // QK
    xq, xd, xs = q8_0_scratch(T, cols, i8, i32, f32)
    quantize_rows_q8_0(x, xq, xd, xs)
    xc = i32[T * nb : T * nb + T * cols // 4].reshape((T, cols // 4))
    sums_of_4(xq, -16, xc)  # the dot of q - 16 starts from -16 * (sum of 4 q_x)
    groups, last = w.shape[0] // GROUP, w.shape[0] - 1
    for g in prange(groups):
        rows16_lanes8.group(out, w, xq, xd, xc, g, True, 0)
    first = GROUP * groups  # the GGUF-layout rows after the last group, four at a time
    for q in range(first, last + 1, 4):
        for t in range(T):
            plain_quad(out, w, xq, xd, xc, t, q, min(q + 1, last), min(q + 2, last), min(q + 3, last))


rows16, rows16_serial = njit_parallel(_rows16), njit_serial(_rows16)
