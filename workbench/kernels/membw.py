"""STREAM-style memory bandwidth: the roof that a decode step's GB/s is measured against.

Three kernels over arrays far larger than the caches (256 MiB each by default, three
of them), each split into chunks over numba's threads:

    read   s = sum(a)          bytes = 8n   (what a matvec does to its weights)
    copy   b = a               bytes = 16n
    triad  a = b + s * c       bytes = 24n

Bytes are counted as STREAM counts them: arrays read plus arrays written, without the
write-allocate reads a store may cause. Each kernel runs `repeats` times after one
warm-up pass; the best time is kept, as STREAM does, and every sample is returned.

`read` sums int64 so that LLVM may reorder the additions and vectorize them (a float
sum without fastmath stays one scalar chain, which measures the adder, not memory).
"""

from __future__ import annotations

import time

import numba
import numpy as np
from numba import prange

from workbench.kernels.jit import njit_parallel, set_threads

KERNELS = ("read", "copy", "triad")
_BYTES_PER_ELEMENT = {"read": 8, "copy": 16, "triad": 24}
_CHUNKS = 256  # chunks per pass: enough to balance any thread count we run with


# Each chunk is sliced out first so that the inner loop counts from 0: numba then knows
# the index is never negative, drops its wraparound check, and LLVM vectorizes the loop
# (an inner `range(lo, hi)` ran 2-3x slower, even from DRAM).


def _read(a, partial):
    # a (n,) int64 -> partial (chunks,) int64: one sum per chunk
    n, k = a.size, partial.size
    step = (n + k - 1) // k
    for c in prange(k):
        src = a[c * step : min(n, (c + 1) * step)]
        s = 0
        for i in range(src.size):
            s += src[i]
        partial[c] = s


def _copy(b, a, chunks):
    # a, b (n,) float64: b = a
    n = a.size
    step = (n + chunks - 1) // chunks
    for c in prange(chunks):
        lo, hi = c * step, min(n, (c + 1) * step)
        src, dst = a[lo:hi], b[lo:hi]
        for i in range(src.size):
            dst[i] = src[i]


def _triad(a, b, c, s, chunks):
    # a, b, c (n,) float64: a = b + s * c
    n = a.size
    step = (n + chunks - 1) // chunks
    for k in prange(chunks):
        lo, hi = k * step, min(n, (k + 1) * step)
        dst, x, y = a[lo:hi], b[lo:hi], c[lo:hi]
        for i in range(dst.size):
            dst[i] = x[i] + s * y[i]


def _fill(a, value, chunks):
    # first touch in parallel, so pages land near the threads that use them
    n = a.size
    step = (n + chunks - 1) // chunks
    for c in prange(chunks):
        dst = a[c * step : min(n, (c + 1) * step)]
        for i in range(dst.size):
            dst[i] = value


read_i64 = njit_parallel(_read)
copy_f64 = njit_parallel(_copy)
triad_f64 = njit_parallel(_triad)
fill_f64 = njit_parallel(_fill)


def stream(threads: list[int], buffer_mib: int = 256, repeats: int = 5) -> dict:
    """{kernel: {threads: [GB/s of each repeat]}} for each thread count in `threads`.
    Allocates three `buffer_mib` arrays for the duration of the call; leaves numba's
    thread count as it found it."""
    n = buffer_mib * 2**20 // 8
    a, b, c = np.empty(n), np.empty(n), np.empty(n)
    partial = np.empty(_CHUNKS, np.int64)
    before = numba.get_num_threads()
    runs = {
        "read": lambda: read_i64(a.view(np.int64), partial),
        "copy": lambda: copy_f64(b, a, _CHUNKS),
        "triad": lambda: triad_f64(a, b, c, 3.0, _CHUNKS),
    }
    out = {k: {} for k in KERNELS}
    try:
        for t in threads:
            set_threads(t)
            for arr, value in ((a, 1.0), (b, 2.0), (c, 0.5)):
                fill_f64(arr, value, _CHUNKS)
            for kernel, run in runs.items():
                run()  # warm-up: compiled, pages mapped, caches in a steady state
                samples = []
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    run()
                    samples.append(_BYTES_PER_ELEMENT[kernel] * n / (time.perf_counter() - t0) / 1e9)
                out[kernel][t] = samples
    finally:
        set_threads(before)
    return out
