"""One interface to a model's tensors, whatever file they came from.

Models ask for tensors by their GGUF name (`token_embd.weight`, `blk.3.attn_q.weight`,
...) and get a `Tensor`: its block format, its numpy-order shape and its bytes as
kernels consume them, uint8 (rows, row_bytes). `GGUFWeights` serves a GGUF file as it
is (memory-mapped, nothing copied); `workbench.formats.hf.HFDirectory` serves a Hugging
Face directory under the same names, with each format quirk fixed in its loader. So
model code never knows which file it reads.

What it does not do: decide quantization or fusion (that is `nn.Linear`, at load).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from workbench.errors import FormatError, UnsupportedError
from workbench.formats.ggml_types import ggml_type


@dataclass(frozen=True)
class Tensor:
    """A tensor ready for a kernel: `data` is uint8 (rows, row_bytes) in format `fmt`."""

    name: str
    fmt: str  # lower-case ggml type name: "f32", "f16", "bf16", "q8_0", "q4_k", ...
    shape: tuple[int, ...]  # numpy order: (rows, cols) for a matrix, (n,) for a vector
    data: np.ndarray
    source: str  # the file it came from (and its name there, when that differs), for error messages

    def f32(self) -> np.ndarray:
        """The values as float32 with `shape`; only for float formats (norms, biases)."""
        if self.fmt == "f32":
            return self.data.view(np.float32).reshape(self.shape)
        if self.fmt == "f16":
            return self.data.view(np.float16).astype(np.float32).reshape(self.shape)
        if self.fmt == "bf16":
            return (self.data.view(np.uint16).astype(np.uint32) << 16).view(np.float32).reshape(self.shape)
        raise FormatError(f"{self.source}: tensor {self.name!r} is {self.fmt.upper()}, expected a float format")


class WeightSource:
    """What models read: `path`, `names`, `tensor(name)`, `nbytes`. Subclasses fill `_load`."""

    path: Path

    @property
    def names(self) -> frozenset[str]:
        raise NotImplementedError

    def __contains__(self, name: str) -> bool:
        return name in self.names

    def tensor(self, name: str) -> Tensor:
        if name not in self.names:
            raise FormatError(f"{self.path}: tensor {name!r} is missing")
        return self._load(name)

    def _load(self, name: str) -> Tensor:
        raise NotImplementedError

    def matrix(self, name: str, rows: int, cols: int) -> Tensor:
        """Tensor `name`, which must be a (rows, cols) weight; the error names file and tensor."""
        t = self.tensor(name)
        if t.shape != (rows, cols):
            raise FormatError(f"{t.source}: tensor {name!r} has shape {list(t.shape)}, expected {[rows, cols]}")
        return t

    def vector(self, name: str, n: int) -> np.ndarray:
        """Tensor `name` as n float32 values (norm weights and biases)."""
        t = self.tensor(name)
        if t.shape != (n,):
            raise FormatError(f"{t.source}: tensor {name!r} has shape {list(t.shape)}, expected [{n}]")
        return t.f32()

    @property
    def nbytes(self) -> int:
        raise NotImplementedError


class GGUFWeights(WeightSource):
    """A GGUF file's tensors, zero-copy. GGUF shapes are ne0-first; `Tensor.shape` is numpy order."""

    def __init__(self, gf):
        self.gf, self.path = gf, gf.path
        self._names = frozenset(gf.tensors)

    @property
    def names(self) -> frozenset[str]:
        return self._names

    def _load(self, name: str) -> Tensor:
        info = self.gf.tensors[name]
        try:
            fmt = ggml_type(info.type_id).name.lower()
        except UnsupportedError as e:
            raise UnsupportedError(f"{self.path}: tensor {name!r}: {e}") from None
        data = self.gf.raw(name)
        return Tensor(name, fmt, tuple(int(n) for n in info.numpy_shape), data, str(self.path))

    @property
    def nbytes(self) -> int:
        return sum(t.n_bytes or 0 for t in self.gf.tensors.values())
