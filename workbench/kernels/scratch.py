"""Caller-owned scratch for the matvec kernels' quantized activations.

A matvec kernel `kernel(out, w, x, i8, i32, f32)` writes x's vec_dot form (its int8
values, block scales and block sums; or x rounded to f16/bf16) into the front of three
flat buffers instead of allocating them, so that a decode loop that owns its buffers
allocates nothing per token. Each format needs fewer than n = T * cols elements of each
buffer: `scratch(n)` makes them. `with_scratch(kernel)` is the registry's plain
`(out, w, x)` form of such a kernel, allocating its scratch on every call.
"""

import numpy as np


def scratch(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(i8, i32, f32) flat buffers for x of up to n = T * cols values."""
    return np.empty(n, np.int8), np.empty(n, np.int32), np.empty(n, np.float32)


def with_scratch(kernel, needs_scratch: bool = True, name: str | None = None):
    """`kernel(out, w, x, i8, i32, f32)` as `fn(out, w, x)`, with scratch made per call
    (empty buffers for a kernel that `needs_scratch` not, such as f32's)."""

    def matvec(out, w, x):
        kernel(out, w, x, *scratch(x.size if needs_scratch else 0))

    matvec.__name__ = matvec.__qualname__ = name or getattr(kernel, "__name__", "matvec")
    matvec.__doc__ = getattr(kernel, "__doc__", None)
    matvec.into = kernel  # the scratch-taking kernel, for callers that own their buffers
    return matvec
