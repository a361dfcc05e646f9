"""What a weight format module provides: one `WeightFormat` row, as ggml's `type_traits`.

A format module (`q4_0.py`, `q5_k.py`, ...) holds everything about one GGML block type:
its byte layout (in the docstring), the numpy reference codec, the compiled get-rows
(embedding lookup) and matvec kernels, and a `FORMAT` row that lists them. The table
(`workbench.kernels.table`) collects the rows, keyed by name and GGML type; nothing else
in workbench names a block layout. Adding a format is its module plus one line there.

Contracts of what a row names (all arrays C-contiguous, validated by the caller,
`workbench.kernels.linear`; kernels check nothing):
- `dequantize(blocks)`: uint8 (N, type_size) -> float32 (N, block_size), numpy, equal bit
  for bit to ggml's `dequantize_row_*` (and `gguf.quants.dequantize`).
- `quantize(x)`: float32 (N, block_size) -> uint8 (N, type_size), ggml's reference
  quantizer `quantize_row_*_ref`; None where workbench never writes the format.
- `get_rows(out, w, ids)`: compiled; out (T, cols) float32 = rows ids of W dequantized,
  equal bit for bit to `dequantize`.
- a variant's `kernel(out, w, x, i8, i32, f32)`: compiled; out (T, rows) float32 =
  x (T, cols) @ W.T with W its raw blocks (rows, cols / block_size * type_size) uint8;
  x is quantized to `vec_dot` into the caller's flat scratch i8 / i32 / f32 (at least
  T * cols elements each). `serial` is the same code without threads.
- `matvec_into(variant, out, w, x, i8, i32, f32)`: compiled; runs variant number
  `variant` (its index in `variants`, parallel) or `variant + SERIAL` (its serial twin).
- `prefer`: (variant name, CPU features) pairs, best first; at load the first whose
  features this CPU has is chosen, else the reference variant (data, not a module
  global: a session may choose another variant, if the CPU has what it `needs`).
- a variant with a `repack` reads W in its own layout, not the GGUF one: `repack(w)`
  (numpy, same shape and dtype) makes it, once, when a model loads (`nn.loader`). Such a
  variant is never a registry default (those take GGUF bytes); `repacked` says on which
  CPUs the loader repacks for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from workbench.errors import UnsupportedError

SERIAL = 32  # matvec_into(variant + SERIAL, ...) runs variant's serial twin


@dataclass(frozen=True)
class Variant:
    """One matvec kernel of a format: parallel `kernel`, its `serial` twin, what it does,
    the CPU features (LLVM names) it needs, and whether it is the plain reference order."""

    name: str
    kernel: Callable
    serial: Callable
    summary: str
    needs: tuple[str, ...] = ()
    reference: bool = False
    repack: Callable[[np.ndarray], np.ndarray] | None = None  # GGUF bytes -> this variant's layout
    # what the CPU's features cannot tell (AMX: the OS's grant and a self-test), asked only
    # where the features are there
    check: Callable[[], bool] | None = None

    def runs_on(self, features: frozenset[str] | set[str]) -> bool:
        """Whether a CPU with `features` (LLVM names) runs this variant, here."""
        return all(n in features for n in self.needs) and (self.check is None or self.check())

    def weights(self, w: np.ndarray) -> np.ndarray:
        """GGUF bytes `w` in the layout this variant reads (w itself for most)."""
        return w if self.repack is None else self.repack(w)


@dataclass(frozen=True)
class WeightFormat:
    """One GGML block type: `block_size` elements in `type_size` bytes, and its kernels."""

    name: str  # lower case, as in the table and in load reports: "q4_0", "q5_k"
    ggml_type: int
    block_size: int
    type_size: int
    vec_dot: str  # the activation format x is quantized to for a dot with this one
    dequantize: Callable[[np.ndarray], np.ndarray]
    quantize: Callable[[np.ndarray], np.ndarray] | None
    # byte offsets of the f16 scale fields of a block (workbench.quant.finite); () for floats
    scale_fields: tuple[int, ...]
    get_rows: Callable | None = None
    matvec_into: Callable | None = None
    variants: tuple[Variant, ...] = ()
    prefer: tuple[tuple[str, tuple[str, ...]], ...] = ()
    # (variant with a `repack`, CPU features) pairs, best first, as `prefer`: where the
    # repacked layout was measured faster, so that the loader repacks (`layout_for`)
    repacked: tuple[tuple[str, tuple[str, ...]], ...] = ()
    weight: bool = True  # False for the activation-only formats q8_1 and q8_K
    # how llama.cpp's x86 backend quantizes activations to this format, where that differs
    # from `quantize` (q8_0 and q8_1: 127/amax and halves to even); None: `quantize`
    quantize_activation: Callable[[np.ndarray], np.ndarray] | None = None

    def row_bytes(self, n: int) -> int:
        """Bytes in a row of `n` elements; `n` must be a multiple of block_size."""
        if n % self.block_size:
            raise UnsupportedError(f"{self.name} rows need a multiple of {self.block_size} elements, got {n}")
        return n // self.block_size * self.type_size

    def variant_index(self, name: str) -> int:
        """The number of variant `name` (its index in `variants`)."""
        for i, v in enumerate(self.variants):
            if v.name == name:
                return i
        raise UnsupportedError(f"{self.name} has no matvec variant {name!r}; have {[v.name for v in self.variants]}")

    def choose(self, features: frozenset[str] | set[str]) -> str:
        """The variant to run on a CPU with `features` (LLVM names): the first of `prefer`
        whose features it has, else the reference."""
        for name, wanted in self.prefer:
            if all(f in features for f in wanted):
                return name
        return next(v.name for v in self.variants if v.reference)

    def layout_for(self, features: frozenset[str] | set[str]) -> Variant | None:
        """The repacking variant a model loaded on a CPU with `features` runs, if any."""
        for name, wanted in self.repacked:
            v = self.variants[self.variant_index(name)]
            if all(f in features for f in wanted) and v.runs_on(features):
                return v
        return None


# ---- numpy helpers the reference codecs share ---------------------------------------------


def f16_field(blocks: np.ndarray, offset: int) -> np.ndarray:
    """The little-endian fp16 at byte `offset` of every block, as float32 (N, 1)."""
    return blocks[:, offset : offset + 2].copy().view(np.float16).astype(np.float32)


def f16_bytes(values: np.ndarray) -> np.ndarray:
    """float32 (N, 1) -> its fp16 encoding as uint8 (N, 2), rounded to nearest even."""
    return values.astype(np.float16).view(np.uint8).reshape(-1, 2)


def roundf(v: np.ndarray) -> np.ndarray:
    """C `roundf`: nearest integer, halves away from zero (exact, unlike trunc(v + 0.5))."""
    a = np.abs(v)
    r = np.floor(a)
    r += (a - r) >= np.float32(0.5)
    return np.copysign(r, v)


def inverse(d: np.ndarray) -> np.ndarray:
    """1/d where d != 0, else 0 (ggml's `d ? 1.0f/d : 0.0f`), in float32."""
    with np.errstate(divide="ignore"):
        return np.where(d == 0, np.float32(0), np.float32(1) / d).astype(np.float32)


def signed_absmax(x: np.ndarray) -> np.ndarray:
    """Per block, the first element of largest magnitude, sign kept: (N, 1)."""
    i = np.abs(x).argmax(axis=-1)[:, None]
    return np.take_along_axis(x, i, axis=-1)


def nibbles(qs: np.ndarray) -> np.ndarray:
    """u8 (N, 16) -> u8 (N, 32): low nibbles are elements 0..15, high ones 16..31."""
    return np.concatenate([qs & np.uint8(0x0F), qs >> np.uint8(4)], axis=-1)


def pack_nibbles(q: np.ndarray) -> np.ndarray:
    """u8 (N, 32) values 0..15 -> (N, 16) bytes, inverse of `nibbles`."""
    return q[:, :16] | (q[:, 16:] << np.uint8(4))
