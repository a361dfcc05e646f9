"""Linear layers and embeddings: a weight in its file's block format plus its kernel.

A `Linear` never dequantizes: it keeps the GGUF bytes (memory-mapped) as
(rows, row_bytes) and hands them to the format's kernel. The file's shape is checked
against what the model expects at load, so a wrong tensor fails there, naming itself.
Models call `linear(out, x)` and never branch on the format.
"""

from __future__ import annotations

import numpy as np

from workbench.errors import FormatError, UnsupportedError
from workbench.kernels.linear import Weight, get_rows
from workbench.quant.formats import format_of_ggml_type
from workbench.trace import NULL_TRACER


def _checked_raw(gf, name: str, rows: int, cols: int) -> tuple[np.ndarray, str]:
    info = gf.tensors.get(name)
    if info is None:
        raise FormatError(f"{gf.path}: tensor {name!r} is missing")
    shape = tuple(int(n) for n in info.shape)
    if shape != (cols, rows):
        raise FormatError(f"{gf.path}: tensor {name!r} has GGUF shape {list(shape)}, expected {[cols, rows]}")
    try:
        fmt = format_of_ggml_type(info.type_id)
    except UnsupportedError as e:
        raise UnsupportedError(f"{gf.path}: tensor {name!r}: {e}") from None
    return gf.raw(name), fmt.name


class Linear:
    """y (T, rows) = x (T, cols) @ W.T, W kept in its block format."""

    __slots__ = ("name", "fmt", "w", "rows", "cols", "op", "weight")

    def __init__(self, name: str, fmt: str, w: np.ndarray, rows: int, cols: int, op: str):
        self.name, self.fmt, self.w, self.rows, self.cols, self.op = name, fmt, w, rows, cols, op
        self.weight = Weight(w, fmt, name)  # checked once here, not on every product

    @classmethod
    def from_gguf(cls, gf, name: str, rows: int, cols: int, op: str) -> Linear:
        """The tensor `name` of GGUF file `gf`, which must hold `rows` outputs of `cols` inputs."""
        w, fmt = _checked_raw(gf, name, rows, cols)
        return cls(name, fmt, w, rows, cols, op)

    @property
    def nbytes(self) -> int:
        return self.w.nbytes

    def __call__(self, out: np.ndarray, x: np.ndarray, tracer=NULL_TRACER) -> np.ndarray:
        if tracer.ops:
            T = x.shape[0]
            with tracer.span(self.op, kind="op", weight=self.name, fmt=self.fmt, shape=(T, self.cols, self.rows),
                             bytes=self.w.nbytes + x.nbytes + out.nbytes, weight_bytes=self.w.nbytes,
                             flops=2 * T * self.rows * self.cols):
                return self.weight.matvec(out, x)
        return self.weight.matvec(out, x)


class Embedding:
    """Rows of a (vocab, d) table, dequantized on lookup; doubles as a tied lm_head."""

    __slots__ = ("name", "fmt", "w", "vocab", "dim")

    def __init__(self, gf, name: str, vocab: int, dim: int):
        self.w, self.fmt = _checked_raw(gf, name, vocab, dim)
        self.name, self.vocab, self.dim = name, vocab, dim

    def __call__(self, out: np.ndarray, ids: np.ndarray, tracer=NULL_TRACER) -> np.ndarray:
        if tracer.ops:
            row_bytes = self.w.shape[1]
            with tracer.span("embedding_lookup", kind="op", weight=self.name, fmt=self.fmt, shape=(len(ids), self.dim),
                             bytes=len(ids) * row_bytes + out.nbytes, weight_bytes=len(ids) * row_bytes, flops=0):
                return get_rows(out, self.w, ids, self.fmt, self.name)
        return get_rows(out, self.w, ids, self.fmt, self.name)

    def as_linear(self, op: str = "output") -> Linear:
        """The same bytes as an lm_head (tied embeddings): logits = h @ E.T."""
        return Linear(self.name, self.fmt, self.w, self.vocab, self.dim, op)
