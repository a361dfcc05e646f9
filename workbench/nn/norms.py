"""Norm layers: weights checked at load, one kernel call per use."""

from __future__ import annotations

import numpy as np

from workbench.errors import FormatError
from workbench.kernels.norms import rmsnorm_f32, rmsnorm_f32_parallel
from workbench.trace import NULL_TRACER


def f32_vector(gf, name: str, n: int) -> np.ndarray:
    """The F32 tensor `name` of GGUF file `gf`, which must hold exactly `n` values."""
    info = gf.tensors.get(name)
    if info is None:
        raise FormatError(f"{gf.path}: tensor {name!r} is missing")
    if tuple(info.shape) != (n,) or info.type_name.upper() != "F32":
        raise FormatError(f"{gf.path}: tensor {name!r} is {info.type_name} {list(info.shape)}, expected F32 [{n}]")
    return gf.f32(name)


class RMSNorm:
    """out = x / rms(x) * w, per row."""

    __slots__ = ("w", "eps", "op")

    def __init__(self, w: np.ndarray, eps: float, op: str):
        self.w, self.eps, self.op = w, np.float32(eps), op

    def __call__(self, out: np.ndarray, x: np.ndarray, tracer=NULL_TRACER) -> np.ndarray:
        kernel = rmsnorm_f32 if x.shape[0] == 1 else rmsnorm_f32_parallel
        if tracer.ops:
            with tracer.span(self.op, kind="op", fmt="f32", shape=x.shape, bytes=2 * x.nbytes + self.w.nbytes,
                             weight_bytes=self.w.nbytes, flops=4 * x.size):
                kernel(out, x, self.w, self.eps)
        else:
            kernel(out, x, self.w, self.eps)
        return out
