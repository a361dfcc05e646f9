"""Linear layers and embeddings: a weight in its block format plus its kernel.

A `Linear` never dequantizes: it keeps the weight's bytes (memory-mapped when the file
format allows) as (rows, row_bytes) and hands them to the format's kernel; the bias, if
any, is added after. A `LinearGroup` is several linears reading the same input (Q/K/V,
gate+up): one fused matrix whose output is split, or the separate matrices. Shapes are
checked when the loader (`nn.loader`) builds them, so a wrong tensor fails at load,
naming itself. Models call these and never branch on the format.
"""

from __future__ import annotations

import numpy as np

from workbench.kernels.linear import Weight, get_rows
from workbench.trace import NULL_TRACER


class Linear:
    """y (T, rows) = x (T, cols) @ W.T (+ bias), W kept in its block format."""

    __slots__ = ("name", "fmt", "w", "rows", "cols", "op", "weight", "bias", "layout")

    def __init__(self, name: str, fmt: str, w: np.ndarray, rows: int, cols: int, op: str,
                 bias: np.ndarray | None = None, layout: str = ""):
        self.name, self.fmt, self.w, self.rows, self.cols, self.op = name, fmt, w, rows, cols, op
        self.layout = layout  # "": GGUF bytes; else the variant that repacked w at load and alone reads it
        self.weight = Weight(w, fmt, name, layout)  # checked once here, not on every product
        self.bias = bias

    @property
    def nbytes(self) -> int:
        return self.w.nbytes

    def __call__(self, out: np.ndarray, x: np.ndarray, tracer=NULL_TRACER) -> np.ndarray:
        if tracer.ops:
            T = x.shape[0]
            with tracer.span(self.op, kind="op", weight=self.name, fmt=self.fmt, shape=(T, self.cols, self.rows),
                             bytes=self.w.nbytes + x.nbytes + out.nbytes, weight_bytes=self.w.nbytes,
                             flops=2 * T * self.rows * self.cols):
                self.weight.matvec(out, x)
                if self.bias is not None:
                    out += self.bias
                return out
        self.weight.matvec(out, x)
        if self.bias is not None:
            out += self.bias
        return out


class LinearGroup:
    """Linears on one input: `fused` (all rows in one matrix) or the `parts` one by one.

    Fused, the product goes to `scratch` (a flat buffer of at least T x total rows) and is copied out to
    each part's buffer; the copy is a few KB per token, far less than the kernel calls
    it saves. Every output row is the same dot product either way, so results are equal.
    """

    __slots__ = ("parts", "fused", "splits")

    def __init__(self, parts: list[Linear], fused: Linear | None):
        self.parts, self.fused = parts, fused
        self.splits = np.cumsum([0] + [p.rows for p in parts]).tolist()

    @property
    def nbytes(self) -> int:
        return self.fused.nbytes if self.fused is not None else sum(p.nbytes for p in self.parts)

    def __call__(self, outs: tuple, x: np.ndarray, scratch: np.ndarray, tracer=NULL_TRACER) -> None:
        if self.fused is None:
            for part, out in zip(self.parts, outs):
                part(out, x, tracer)
            return
        T, n = x.shape[0], self.splits[-1]
        buf = scratch[: T * n].reshape(T, n)
        self.fused(buf, x, tracer)
        for i, out in enumerate(outs):
            np.copyto(out, buf[:, self.splits[i] : self.splits[i + 1]])


class Embedding:
    """Rows of a (vocab, d) table, dequantized on lookup (traced as `op`)."""

    __slots__ = ("name", "fmt", "w", "vocab", "dim", "op")

    def __init__(self, name: str, fmt: str, w: np.ndarray, vocab: int, dim: int, op: str = "embedding_lookup"):
        self.name, self.fmt, self.w, self.vocab, self.dim, self.op = name, fmt, w, vocab, dim, op

    @property
    def nbytes(self) -> int:
        return self.w.nbytes

    def __call__(self, out: np.ndarray, ids: np.ndarray, tracer=NULL_TRACER) -> np.ndarray:
        if tracer.ops:
            row_bytes = self.w.shape[1]
            with tracer.span(self.op, kind="op", weight=self.name, fmt=self.fmt, shape=(len(ids), self.dim),
                             bytes=len(ids) * row_bytes + out.nbytes, weight_bytes=len(ids) * row_bytes, flops=0):
                return get_rows(out, self.w, ids, self.fmt, self.name)
        return get_rows(out, self.w, ids, self.fmt, self.name)
