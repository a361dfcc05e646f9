"""Numba options from one place.

Every kernel module compiles through `njit_serial` / `njit_parallel` so that caching,
fastmath and the threading layer are decided here and nowhere else. The threading
layer is named explicitly: with `tbb` installed numba would otherwise pick it, and a
parallel region costs least under `omp` on this kind of machine (see DESIGN.md).
"""

import types

import numba

# Must be set before the first parallel kernel is compiled or run.
numba.config.THREADING_LAYER = "omp"

# fastmath stays off: reductions must keep a fixed, llama.cpp-like order so that greedy
# tokens are reproducible; the integer dot products need no reassociation to vectorize.
_OPTIONS = dict(cache=True, nogil=True, error_model="numpy")


def njit_serial(fn):
    """Compile `fn` as a serial kernel (`prange` runs as `range`)."""
    return numba.njit(**_OPTIONS)(fn)


def njit_parallel(fn):
    """Compile `fn` with `parallel=True`: its `prange` loops split over numba's threads.

    Compiled from a twin of `fn` named `<name>_parallel`: numba's cache keys compiled code
    by module, qualified name and line, not by options, so `njit_serial(f)` and
    `njit_parallel(f)` would otherwise load each other's code from the cache (seen: a
    "parallel" matvec running serially at 2 threads, a serial one paying for threads)."""
    twin = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + "_parallel", fn.__defaults__,
                              fn.__closure__)
    twin.__qualname__, twin.__module__, twin.__doc__ = fn.__qualname__ + "_parallel", fn.__module__, fn.__doc__
    return numba.njit(parallel=True, **_OPTIONS)(twin)


def set_threads(n: int) -> None:
    """Use `n` threads in parallel kernels from now on (bounded by numba's pool)."""
    numba.set_num_threads(n)


def max_threads() -> int:
    """The size of numba's thread pool, fixed when numba started."""
    return numba.config.NUMBA_NUM_THREADS
