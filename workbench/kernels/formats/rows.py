"""How the block kernels walk rows: shared scheduling pieces, no arithmetic of a format.

A row-group kernel computes ROWS = 4 weight rows per pass over x, so that each block of x
is loaded once for all of them; a last group short of rows repeats the last row
(computed alike, stored twice). Weight bytes are prefetched AHEAD bytes in advance, a
fixed number of lines per block: without it a 1-thread pass over a matrix larger than
the caches ran at ~70% of the read bandwidth, with it ~95%.
"""

import numpy as np

from workbench.kernels.isa.x86 import prefetch
from workbench.kernels.jit import njit_serial

QK = 32  # elements in a block of the 32-element formats
QK_K = 256  # elements in a k-quant super-block
ROWS = 4  # rows per pass over x in the row groups (the kernels are written for 4)
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
    """x's q8_0 / q8_1 form in caller-owned scratch: values (T, cols) int8, block scales
    (T, nb) float32, block sums (T, nb) int32."""
    nb = cols // QK
    return i8[: T * cols].reshape((T, cols)), f32[: T * nb].reshape((T, nb)), i32[: T * nb].reshape((T, nb))


@njit_serial
def q8_k_scratch(T, cols, i8, i32, f32):
    """x's q8_K form in caller-owned scratch: values (T, cols) int8, super-block scales
    (T, cols / 256) float32, sums of 16 (T, cols / 16) int32."""
    return (i8[: T * cols].reshape((T, cols)), f32[: T * (cols // QK_K)].reshape((T, cols // QK_K)),
            i32[: T * (cols // 16)].reshape((T, cols // 16)))
