"""Numba options from one place.

Every kernel module compiles through `njit_serial` / `njit_parallel` so that caching
(and where the cache lives: `kernels.cache`), fastmath and the threading layer are
decided here and nowhere else. The threading
layer is named explicitly: with `tbb` installed numba would otherwise pick it, and a
parallel region costs least under `omp` on this kind of machine (see DESIGN.md).
"""

import types

import numba

from workbench.kernels.cache import configure

# Must be set before the first parallel kernel is compiled or run.
numba.config.THREADING_LAYER = "omp"
# Must be set before the first cached function is defined: numba picks a function's
# cache directory when it is decorated (see kernels.cache).
CACHE_DIR = configure()

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


def njit_uncached(fn):
    """Compile `fn` without caching: for code that calls kernels defined elsewhere at run
    time (a notebook's), which numba's on-disk cache cannot key safely."""
    return numba.njit(nogil=True, error_model="numpy")(fn)


def set_threads(n: int) -> None:
    """Use `n` threads in parallel kernels from now on (bounded by numba's pool)."""
    numba.set_num_threads(n)


def max_threads() -> int:
    """The size of numba's thread pool, fixed when numba started."""
    return numba.config.NUMBA_NUM_THREADS
