"""The numpy reference codecs of every format, through the table: bytes <-> float32 rows.

`dequantize_ref(fmt, raw)`: uint8 (..., row_bytes) -> float32 (..., n), equal bit for
bit to `gguf.quants.dequantize` and ggml's `dequantize_row_*`. `quantize_ref(fmt, x)`:
float32 (..., n) -> uint8 (..., row_bytes) with ggml's reference quantizers
(`quantize_row_*_ref`), as used for model files and load-time requantization.
`quantize_activation_ref(fmt, x)`: what llama.cpp's x86 CPU backend does to activations
before a dot product with a weight whose `vec_dot` is `fmt` (differs from `quantize_ref`
for q8_0 and q8_1 only).

Slow, obviously-correct references for tests and load-time conversion; the kernels never
call them. Each codec lives in its format's module (`workbench.kernels.formats`).
"""

import numpy as np

from workbench.errors import ShapeError, UnsupportedError
from workbench.kernels.formats.base import WeightFormat
from workbench.kernels.table import format_named


def _format(fmt: WeightFormat | str) -> WeightFormat:
    return fmt if isinstance(fmt, WeightFormat) else format_named(fmt)


def dequantize_ref(fmt: WeightFormat | str, raw: np.ndarray) -> np.ndarray:
    """uint8 (..., row_bytes) of format `fmt` -> float32 (..., n), bit-equal to ggml."""
    f = _format(fmt)
    raw = np.asarray(raw)
    if raw.dtype != np.uint8 or raw.ndim < 1 or raw.shape[-1] % f.type_size:
        raise ShapeError(f"dequantize_ref({f.name}): expected uint8 (..., k * {f.type_size}), "
                         f"got {raw.dtype} {raw.shape}")
    blocks = np.ascontiguousarray(raw).reshape(-1, f.type_size)
    n = raw.shape[-1] // f.type_size * f.block_size
    return f.dequantize(blocks).reshape(*raw.shape[:-1], n)


def _quantize(codec, f: WeightFormat, what: str, x: np.ndarray):
    if codec is None:
        raise UnsupportedError(f"{what} for {f.name} is not implemented")
    x = np.asarray(x)
    if x.dtype != np.float32 or x.ndim < 1 or x.shape[-1] % f.block_size:
        raise ShapeError(f"{what}({f.name}): expected float32 (..., k * {f.block_size}), got {x.dtype} {x.shape}")
    blocks = np.ascontiguousarray(x).reshape(-1, f.block_size)
    row_bytes = x.shape[-1] // f.block_size * f.type_size
    return codec(blocks).reshape(*x.shape[:-1], row_bytes)


def quantize_ref(fmt: WeightFormat | str, x: np.ndarray) -> np.ndarray:
    """float32 (..., n) -> uint8 (..., row_bytes) with ggml's reference quantizer for `fmt`."""
    f = _format(fmt)
    return _quantize(f.quantize, f, "quantize_ref", x)


def quantize_activation_ref(fmt: WeightFormat | str, x: np.ndarray) -> np.ndarray:
    """float32 (..., n) -> uint8 (..., row_bytes) as llama.cpp's x86 CPU backend quantizes
    activations to `fmt` (give the weight's `vec_dot` format: q8_0, q8_1, q8_k, f16, ...)."""
    f = _format(fmt)
    return _quantize(f.quantize_activation or f.quantize, f, "quantize_activation_ref", x)
