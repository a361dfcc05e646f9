"""Norm layers: weights checked at load, one kernel call per use."""

from __future__ import annotations

import numpy as np

from workbench.kernels.norms import rmsnorm_f32, rmsnorm_f32_parallel
from workbench.trace import NULL_TRACER


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
