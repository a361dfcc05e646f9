"""q4_0's AVX2 variant "row_octets": eight rows per pass, one int32 lane each.

Contract: a matvec variant's (`base.WeightFormat`), on q4_0 blocks (`q4_0.py`).
Each row's arithmetic is that of `q4_0.one_row` (llama.cpp's repacked
`ggml_gemv_q4_0_8x8_q8_0`): per block one exact integer sumi = sum (q - 8) q_x, then
acc = fma(float(sumi), float(d_w) * d_x, acc) from acc = 0; results are equal bit for bit
(tests/test_formats.py).

Scheduling, which changes no row's arithmetic: rows go in groups of OCT_ROWS = 8, split
over numba's threads; a group reads each block of x once for its eight rows, whose block
dots land one int32 lane per row in one 256-bit register (`isa.octets.dot_oct`, lane i = row
OCT[i]) and whose eight chains run side by side in one f32x8. Where AVX2
`q4_0.row_groups` (four rows of four lanes) reduces each block's 512-bit sums across
lanes and gathers four scales with vector inserts, here one `vphaddw` + `vpmaddwd` reduce
eight rows, and the eight fp16 scales are packed in general registers (`scales_oct`).
A last group short of rows repeats the last row. Weights are prefetched AHEAD bytes
ahead, as in `rows`.

`_serial` names the same code without threads.
"""

from numba import prange

from workbench.kernels.formats.activations import quantize_rows_q8_0
from workbench.kernels.formats.rows import AHEAD, LINE, QK, q8_0_scratch
from workbench.kernels.isa.octets import OCT, dot_oct, fma_oct, scales_oct
from workbench.kernels.isa.x86 import lane, prefetch, zeros_f32x8
from workbench.kernels.jit import njit_parallel, njit_serial

BLOCK = 18  # q4_0 block bytes: f16 d, u8 nibbles[16]
OCT_ROWS = 8
PARTS = 32  # runs of groups per parallel call: split alike over 1, 2, 4, ... 32 threads


@njit_serial
def group_starts(g, last, rb):
    """Byte offsets of group g's eight rows (rb bytes each); past the last row, the last row."""
    r = OCT_ROWS * g
    return (r * rb, min(r + 1, last) * rb, min(r + 2, last) * rb, min(r + 3, last) * rb,
            min(r + 4, last) * rb, min(r + 5, last) * rb, min(r + 6, last) * rb, min(r + 7, last) * rb)


@njit_serial
def oct_groups(out, w, xq, xd, xs, g0, g1, t0):
    # rows 8 g0 .. 8 g1 - 1 of W (rows, nb*18) @ xq (T, cols) -> out (T, rows), tokens t0..
    # block = f16 d, u8 nibbles[16], w = d * (q - 8)
    T, cols = xq.shape
    nb, rb, last = cols // QK, w.shape[1], w.shape[0] - 1
    for g in range(g0, g1):
        starts = group_starts(g, last, rb)
        for t in range(t0, T):
            acc = zeros_f32x8()
            for k in range(nb):
                o = k * BLOCK
                # the group's 8 * 18 bytes a block, 2.25 lines: three prefetches written out
                # (`prefetch_bytes`' loop of three did not unroll here, and cost ~10%)
                a = starts[0] + AHEAD + k * OCT_ROWS * BLOCK
                prefetch(w, a)
                prefetch(w, a + LINE)
                prefetch(w, a + 2 * LINE)
                p = dot_oct(w, starts, o + 2, xq, t * cols + k * QK)
                s = scales_oct(w, starts, o, xd[t, k])
                acc = fma_oct(acc, p, 8 * xs[t, k], s)  # sum q q_x - 8 sum q_x
            for i in range(OCT_ROWS):
                out[t, min(OCT_ROWS * g + OCT[i], last)] = lane(acc, i)


def _octets_from(out, w, xq, xd, xs, t0):
    # W (rows, nb*18) @ xq (T, cols) -> out (T, rows) for tokens t0.., x already quantized.
    # The groups go in PARTS even runs, one `oct_groups` call each: a call per group
    # (numba does not inline it) cost ~13% at 576 columns, and `get_num_threads()` in a
    # kernel keeps numba from caching it
    n = (w.shape[0] + OCT_ROWS - 1) // OCT_ROWS
    parts = min(n, PARTS)
    for p in prange(parts):
        oct_groups(out, w, xq, xd, xs, p * n // parts, (p + 1) * n // parts, t0)


def _matvec_q4_0_oct(out, w, x, i8, i32, f32):
    # W (rows, nb*18) @ x (T, cols) -> out (T, rows); x quantized to q8_0 into the scratch
    T, cols = x.shape
    xq, xd, xs = q8_0_scratch(T, cols, i8, i32, f32)
    quantize_rows_q8_0(x, xq, xd, xs)
    _octets_from(out, w, xq, xd, xs, 0)


# `octets_from` for callers that quantized x themselves (q4_0's prefill tiles, then these)
octets_from, octets_from_serial = njit_parallel(_octets_from), njit_serial(_octets_from)
row_octets = njit_parallel(_matvec_q4_0_oct)
row_octets_serial = njit_serial(_matvec_q4_0_oct)
