"""Norm layers: weights checked at load, one kernel call per use."""

from __future__ import annotations

import numpy as np

from workbench.errors import FormatError, ShapeError
from workbench.kernels.norms import layernorm_f32, layernorm_f32_parallel, rmsnorm_f32, rmsnorm_f32_parallel
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


class LayerNorm:
    """out = (x - mean(x)) / sqrt(var(x) + eps) * w + b, per row (GPT-2).

    The kernel (`kernels.norms`) sums in float64 as ggml_norm does (the mean, then the
    squares of the float32-centred values): within 2e-6 of torch's float32 layer_norm and
    of the exact result, where float32 sums drift further once the mean is large
    (measured at d=768, mean 30: 1.1e-6 from exact against 1.9e-6). `w`, `b` are checked
    here at load; each call checks x/out against them (a few attribute reads), so nothing
    of the wrong shape or dtype reaches the kernel."""

    __slots__ = ("w", "b", "eps", "op")

    def __init__(self, w: np.ndarray, b: np.ndarray, eps: float, op: str):
        if w.ndim != 1 or w.shape != b.shape or w.dtype != np.float32 or b.dtype != np.float32:
            raise FormatError(f"{op}: LayerNorm weight {w.dtype} {w.shape} and bias {b.dtype} {b.shape} "
                              "must be float32 vectors of one length")
        if not eps > 0:
            raise FormatError(f"{op}: LayerNorm epsilon must be positive, got {eps}")
        self.w, self.b, self.eps, self.op = np.ascontiguousarray(w), np.ascontiguousarray(b), np.float32(eps), op

    def __call__(self, out: np.ndarray, x: np.ndarray, tracer=NULL_TRACER) -> np.ndarray:
        if (x.ndim != 2 or out.shape != x.shape or x.shape[1] != self.w.shape[0] or x.dtype != np.float32
                or out.dtype != np.float32 or not out.flags.c_contiguous):
            raise ShapeError(f"{self.op}: LayerNorm of width {self.w.shape[0]} takes float32 (T, "
                             f"{self.w.shape[0]}) x and C-contiguous out, got x {x.dtype} {x.shape}, "
                             f"out {out.dtype} {out.shape}")
        kernel = layernorm_f32 if x.shape[0] == 1 else layernorm_f32_parallel
        if tracer.ops:
            with tracer.span(self.op, kind="op", fmt="f32", shape=x.shape, bytes=2 * x.nbytes + 2 * self.w.nbytes,
                             weight_bytes=2 * self.w.nbytes, flops=7 * x.size):
                kernel(out, x, self.w, self.b, self.eps)
        else:
            kernel(out, x, self.w, self.b, self.eps)
        return out
