"""A prefill on AMX tiles over the sixteen-row layouts (q8_0, q4_0, q4_1 repacked at load).

A block of sixteen repacked rows is already a B tile (VNNI order: 8 tile rows of 64
bytes, row k holding values 4k..4k+3 of the sixteen rows): q8_0's loads as it lies, and
the nibbles of q4_0 (q4_1) are unpacked to q - 8 (q) first, once per block for 32
tokens. A work item is 32 tokens (two A tiles of x quantized to q8_0 or q8_1) by 32 rows
(two groups): per block, four `tdpbssd` make the exact block sums of every pair, and
`fma_tile` adds float(sum) * (d_w * d_x) into the output, block after block (q4_1: then
m_w * s_x, `add_mins_tile`).

That is one float chain per row and token, `acc = fmaf(sumi, d_w * d_x, acc)` from 0:
q4_0's reference order (results equal bit for bit to `q4_0.one_row`); q8_0's and q4_1's
references keep llama.cpp's eight lanes per row (and q4_1 its min terms apart), and the
tiles give the single chain instead, within float rounding of them (tests/test_amx.py
states the bound). Tokens after the last whole tile of sixteen, decode among them, and
rows after the last group go to the format's own sixteen-row kernels, as before.
"""

import numpy as np

from workbench.kernels.formats.groups16 import GROUP
from workbench.kernels.formats.rows import QK
from workbench.kernels.isa.amx import (
    CONFIG,
    add_mins_tile,
    fma_tile,
    tile_config,
    tile_dots,
    tile_release,
    unpack_q4_tile,
)
from workbench.kernels.jit import njit_serial

TOKENS = 16  # tokens in an A tile
SCALES = 2 * GROUP  # bytes of one f16 field of sixteen rows (q4_1: its scales, then its mins)
Q8_0, Q4_0, Q4_1 = 0, 1, 2  # the layouts `item` reads


@njit_serial
def items(tiled, groups):
    """Work items of a pass over `tiled` tokens and `groups` groups: 32 tokens by two groups each."""
    return ((groups + 1) // 2) * ((tiled + 2 * TOKENS - 1) // (2 * TOKENS))


@njit_serial
def item(out, w, xq, xd, xs, tiled, it, kind):
    """Work item `it`: tokens t0..t0+31 (or t0..t0+15 at the end) of rows 32p..32p+31 (or
    16 at the end), p and t0 from `it` (consecutive items share their weights), in the
    layout `kind` (Q8_0, Q4_0, Q4_1; xs: q4_1's s = d_x * sum q_x, unread otherwise)."""
    cols, n, rb = xq.shape[1], out.shape[1], w.shape[1]
    nb, groups = cols // QK, w.shape[0] // GROUP
    tblocks = (tiled + 2 * TOKENS - 1) // (2 * TOKENS)
    g0 = 2 * (it // tblocks)
    g1 = min(g0 + 1, groups - 1)  # a last lone group: computed twice, added once
    t0 = 2 * TOKENS * (it % tblocks)
    t1 = t0 + TOKENS if t0 + TOKENS < tiled else t0
    gb = rb * GROUP // nb  # bytes of a block of sixteen rows
    for t in (t0, t1):
        for r in range(GROUP * g0, GROUP * (g1 + 1)):
            for m in range(TOKENS):
                out[t + m, r] = 0.0
    c = np.empty(4 * TOKENS * GROUP, np.int32)
    b = np.empty(0 if kind == Q8_0 else 2 * 512, np.int8)  # q4's nibbles unpacked; q8_0's tiles load as they lie
    quants = 2 * SCALES if kind == Q4_1 else SCALES
    tile_config(CONFIG)
    for k in range(nb):
        o0, o1 = g0 * GROUP * rb + k * gb, g1 * GROUP * rb + k * gb
        xo0, xo1 = t0 * cols + k * QK, t1 * cols + k * QK
        if kind == Q8_0:
            tile_dots(c, xq, xo0, xo1, cols, w, o0 + quants, o1 + quants)
        else:
            offset = 8 if kind == Q4_0 else 0
            unpack_q4_tile(b, 0, w, o0 + quants, offset)
            unpack_q4_tile(b, 512, w, o1 + quants, offset)
            tile_dots(c, xq, xo0, xo1, cols, b, 0, 512)
        for i in range(4):  # C tiles: (t0, g0), (t0, g1), (t1, g0), (t1, g1); a repeated one added once
            t, g, o = (t0 if i < 2 else t1), (g0 if i % 2 == 0 else g1), (o0 if i % 2 == 0 else o1)
            if (i >= 2 and t1 == t0) or (i % 2 == 1 and g1 == g0):
                continue
            fma_tile(out, t * n + GROUP * g, n, c, 256 * i, xd, t * nb + k, nb, w, o)
            if kind == Q4_1:
                add_mins_tile(out, t * n + GROUP * g, n, xs, t * nb + k, nb, w, o + SCALES)
    tile_release()
