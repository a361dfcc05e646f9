"""`linear` and `get_rows`: the validating entry points to the weight kernels.

    linear(out, w, x, fmt, name)   out (T, rows) = x (T, cols) @ W.T
    get_rows(out, w, ids, fmt, name)   out (T, cols) = rows ids of W, dequantized

W is always the raw GGUF bytes of a 2-D weight, uint8 (rows, row_bytes) with
row_bytes = cols / block_size * type_size, C-contiguous (a read-only np.memmap slice is
fine). Everything is checked here, before numba: dtype, ndim, contiguity, block
alignment, byte counts, output shape, index range; a violation raises `ShapeError`
naming the tensor, and an unknown format `UnsupportedError`. The kernels themselves
check nothing and read raw memory, so nothing unchecked may reach them.

Kernels are looked up in `workbench.kernels.registry` under ops "matvec" and
"get_rows" (the built-in ones come from `kernels.table`, the default matvec variant is
the one chosen for this CPU). Threads: whatever `numba.set_num_threads`
(`workbench.kernels.jit.set_threads`) last set.
"""

import numpy as np

from workbench.errors import ShapeError, UnsupportedError
from workbench.kernels.formats.base import WeightFormat
from workbench.kernels.registry import default
from workbench.kernels.scratch import with_scratch
from workbench.kernels.table import FORMATS, WEIGHT_FORMATS


def _weight_format(fmt: str) -> WeightFormat:
    f = FORMATS.get(fmt.lower()) if isinstance(fmt, str) else None
    if f is None or not f.weight:
        raise UnsupportedError(
            f"unknown weight format {fmt!r}; expected one of {', '.join(WEIGHT_FORMATS)}"
        )
    return f


def _check_weight(w: np.ndarray, f: WeightFormat, name: str) -> np.ndarray:
    if not isinstance(w, np.ndarray) or w.dtype != np.uint8 or w.ndim != 2:
        got = f"{w.dtype} {w.shape}" if isinstance(w, np.ndarray) else type(w).__name__
        raise ShapeError(f"{name}: weight must be {f.name} bytes, uint8 (rows, row_bytes), got {got}")
    if not w.flags.c_contiguous:
        raise ShapeError(f"{name}: weight bytes must be C-contiguous")
    if w.shape[1] == 0 or w.shape[1] % f.type_size:
        raise ShapeError(
            f"{name}: {f.name} rows must be a positive multiple of {f.type_size} bytes, "
            f"got {w.shape[1]}"
        )
    return _read_only(w)


def _read_only(a: np.ndarray) -> np.ndarray:
    # A plain, read-only view: numba dispatches np.memmap (and other subclasses) slowly,
    # and one array type for file-backed and in-memory weights means one compilation.
    v = a.view(np.ndarray)
    v.flags.writeable = False
    return v


def _check_f32(a: np.ndarray, what: str, name: str, shape: tuple | None = None) -> None:
    if not isinstance(a, np.ndarray) or a.dtype != np.float32 or a.ndim != 2:
        got = f"{a.dtype} {a.shape}" if isinstance(a, np.ndarray) else type(a).__name__
        want = f"{shape}" if shape else "(T, n)"
        raise ShapeError(f"{name}: {what} must be float32 {want}, got {got}")
    if shape is not None and a.shape != shape:
        raise ShapeError(f"{name}: {what} must have shape {shape}, got {a.shape}")
    if not a.flags.c_contiguous:
        raise ShapeError(f"{name}: {what} must be C-contiguous")


def linear(
    out: np.ndarray, w: np.ndarray, x: np.ndarray, fmt: str, name: str = "weight"
) -> np.ndarray:
    """out (T, rows) float32 = x (T, cols) float32 @ W.T, W given as its raw GGUF bytes.

    w: uint8 (rows, row_bytes), row_bytes = cols / block_size * type_size, C-contiguous
    (may be a read-only np.memmap slice). Works for T == 1 (decode) and T > 1 (prefill,
    each weight row read once for all T tokens). x is quantized to the format's vec_dot
    type first, as llama.cpp does. Returns out.
    """
    f = _weight_format(fmt)
    w = _check_weight(w, f, name)
    _check_f32(x, "x", name)
    T, cols = x.shape
    if cols == 0 or cols % f.block_size:
        raise ShapeError(
            f"{name}: x has {cols} columns, not a positive multiple of the {f.name} "
            f"block size {f.block_size}"
        )
    if w.shape[1] != cols // f.block_size * f.type_size:
        raise ShapeError(
            f"{name}: {f.name} weight has {w.shape[1]} bytes per row, expected "
            f"{cols // f.block_size * f.type_size} for x with {cols} columns"
        )
    _check_f32(out, "out", name, (T, w.shape[0]))
    if not out.flags.writeable:
        raise ShapeError(f"{name}: out must be writeable")
    if np.may_share_memory(out, x) or np.may_share_memory(out, w):
        raise ShapeError(f"{name}: out must not overlap x or the weight")
    if T and w.shape[0]:
        default("matvec", f.name)(out, w, _read_only(x))
    return out


class Weight:
    """A weight validated once, for the many products of a decode loop.

    `linear` checks everything on every call (~9 µs, a few percent of a small model's
    step over ~200 calls). A `Weight` checks the weight's format and byte layout at
    construction; `matvec` then checks only what can change between calls (the dtype,
    shape and layout of x and out) and otherwise defers to `linear`, whose errors name
    the problem. The kernel is looked up in the registry on each call, so a new default
    variant takes effect at once.
    """

    __slots__ = ("w", "fmt", "name", "rows", "cols", "layout", "_kernel")

    def __init__(self, w: np.ndarray, fmt: str, name: str = "weight", layout: str = ""):
        f = _weight_format(fmt)
        self.w = _check_weight(w, f, name)
        self.fmt, self.name = f.name, name
        self.rows, self.cols = w.shape[0], w.shape[1] // f.type_size * f.block_size
        # "": the GGUF bytes, run by the registry's default; else the name of the variant
        # whose `repack` made w, the one kernel that can read it
        self.layout, self._kernel = layout, None
        if layout:
            v = f.variants[f.variant_index(layout)]
            if v.repack is None:
                raise UnsupportedError(f"{name}: {f.name} variant {layout!r} reads the GGUF layout, not a repacked one")
            self._kernel = with_scratch(v.kernel, True, v.name)

    def matvec(self, out: np.ndarray, x: np.ndarray) -> np.ndarray:
        """out (T, rows) = x (T, cols) @ W.T, as `linear`."""
        if (
            x.dtype == np.float32 and out.dtype == np.float32 and x.ndim == 2
            and x.shape[1] == self.cols and out.shape == (x.shape[0], self.rows) and x.shape[0]
            and x.flags.c_contiguous and out.flags.c_contiguous and out.flags.writeable
            and out.base is not x.base
        ):
            (self._kernel or default("matvec", self.fmt))(out, self.w, x)
            return out
        if self._kernel is None:
            return linear(out, self.w, x, self.fmt, self.name)
        _check_f32(x, "x", self.name)  # a repacked weight: its own kernel, after the checks `linear` makes
        if x.shape[1] != self.cols:
            raise ShapeError(f"{self.name}: x has {x.shape[1]} columns, expected {self.cols}")
        _check_f32(out, "out", self.name, (x.shape[0], self.rows))
        if not out.flags.writeable or np.may_share_memory(out, x):
            raise ShapeError(f"{self.name}: out must be writeable and must not overlap x")
        if x.shape[0]:
            self._kernel(out, self.w, _read_only(x))
        return out


def get_rows(
    out: np.ndarray, w: np.ndarray, ids: np.ndarray, fmt: str, name: str = "weight"
) -> np.ndarray:
    """out (T, cols) float32 = dequantized rows ids (T,) of W (embedding lookup).

    w: uint8 (rows, row_bytes) raw GGUF bytes as for `linear`; ids: integers (T,) in
    [0, rows). Values equal `workbench.quant.dequantize_ref` bit for bit. Returns out.
    """
    f = _weight_format(fmt)
    w = _check_weight(w, f, name)
    ids = np.asarray(ids)
    if ids.ndim != 1 or ids.dtype.kind not in "iu":
        raise ShapeError(f"{name}: ids must be a 1-D integer array, got {ids.dtype} {ids.shape}")
    rows = w.shape[0]
    if ids.size and (ids.min() < 0 or ids.max() >= rows):
        bad = ids[(ids < 0) | (ids >= rows)][0]
        raise ShapeError(f"{name}: row id {bad} out of range [0, {rows})")
    cols = w.shape[1] // f.type_size * f.block_size
    _check_f32(out, "out", name, (ids.shape[0], cols))
    if not out.flags.writeable:
        raise ShapeError(f"{name}: out must be writeable")
    if np.may_share_memory(out, w):
        raise ShapeError(f"{name}: out must not overlap the weight")
    if ids.size:
        default("get_rows", f.name)(out, w, _read_only(ids.astype(np.int64, copy=False)))
    return out
