"""Dispatch for the numpy reference codecs: bytes <-> float32 rows, any block format.

`dequantize_ref(fmt, raw)`: uint8 (..., row_bytes) -> float32 (..., n), equal bit for
bit to `gguf.quants.dequantize`. `quantize_ref(fmt, x)`: float32 (..., n) -> uint8
(..., row_bytes) with ggml's reference quantizers (`quantize_row_*_ref`), as used for
model files and load-time requantization. `quantize_activation_ref(fmt, x)`: what
llama.cpp's x86 CPU backend does to activations before a dot product with a weight of
format `fmt.vec_dot` (differs from `quantize_ref` for q8_0 and q8_1 only).

These are slow, obviously-correct references for tests and load-time conversion; the
kernels in `workbench/kernels/` never call them.
"""

from typing import Callable

import numpy as np

from workbench.errors import ShapeError, UnsupportedError
from workbench.quant import floats, kquants, legacy
from workbench.quant.formats import BlockFormat, format_named

Codec = Callable[[np.ndarray], np.ndarray]

_DEQUANTIZE: dict[str, Codec] = {
    "f32": floats.dequantize_f32,
    "f16": floats.dequantize_f16,
    "bf16": floats.dequantize_bf16,
    "q8_0": legacy.dequantize_q8_0,
    "q8_1": legacy.dequantize_q8_1,
    "q4_0": legacy.dequantize_q4_0,
    "q4_1": legacy.dequantize_q4_1,
    "q5_0": legacy.dequantize_q5_0,
    "q4_k": kquants.dequantize_q4_k,
    "q6_k": kquants.dequantize_q6_k,
    "q8_k": kquants.dequantize_q8_k,
}

_QUANTIZE: dict[str, Codec] = {
    "f32": floats.quantize_f32,
    "f16": floats.quantize_f16,
    "bf16": floats.quantize_bf16,
    "q8_0": legacy.quantize_q8_0,
    "q8_1": legacy.quantize_q8_1,
    "q4_0": legacy.quantize_q4_0,
    "q4_1": legacy.quantize_q4_1,
    "q5_0": legacy.quantize_q5_0,
    "q8_k": kquants.quantize_q8_k,
}

_QUANTIZE_ACTIVATION: dict[str, Codec] = {
    **_QUANTIZE,
    "q8_0": legacy.quantize_act_q8_0,
    "q8_1": legacy.quantize_act_q8_1,
}


def _format(fmt: BlockFormat | str) -> BlockFormat:
    return fmt if isinstance(fmt, BlockFormat) else format_named(fmt)


def dequantize_ref(fmt: BlockFormat | str, raw: np.ndarray) -> np.ndarray:
    """uint8 (..., row_bytes) of format `fmt` -> float32 (..., n), bit-equal to gguf-py."""
    f = _format(fmt)
    raw = np.asarray(raw)
    if raw.dtype != np.uint8 or raw.ndim < 1 or raw.shape[-1] % f.type_size:
        raise ShapeError(
            f"dequantize_ref({f.name}): expected uint8 (..., k * {f.type_size}), "
            f"got {raw.dtype} {raw.shape}"
        )
    blocks = np.ascontiguousarray(raw).reshape(-1, f.type_size)
    n = raw.shape[-1] // f.type_size * f.block_size
    return _DEQUANTIZE[f.name](blocks).reshape(*raw.shape[:-1], n)


def _quantize(table: dict[str, Codec], what: str, fmt: BlockFormat | str, x: np.ndarray):
    f = _format(fmt)
    codec = table.get(f.name)
    if codec is None:
        raise UnsupportedError(f"{what} for {f.name} is not implemented")
    x = np.asarray(x)
    if x.dtype != np.float32 or x.ndim < 1 or x.shape[-1] % f.block_size:
        raise ShapeError(
            f"{what}({f.name}): expected float32 (..., k * {f.block_size}), "
            f"got {x.dtype} {x.shape}"
        )
    blocks = np.ascontiguousarray(x).reshape(-1, f.block_size)
    row_bytes = x.shape[-1] // f.block_size * f.type_size
    return codec(blocks).reshape(*x.shape[:-1], row_bytes)


def quantize_ref(fmt: BlockFormat | str, x: np.ndarray) -> np.ndarray:
    """float32 (..., n) -> uint8 (..., row_bytes) with ggml's reference quantizer for `fmt`."""
    return _quantize(_QUANTIZE, "quantize_ref", fmt, x)


def quantize_activation_ref(fmt: BlockFormat | str, x: np.ndarray) -> np.ndarray:
    """float32 (..., n) -> uint8 (..., row_bytes) as llama.cpp's x86 CPU backend quantizes
    activations to `fmt` (give the weight's `vec_dot` format: q8_0, q8_1, q8_k, f16, ...)."""
    return _quantize(_QUANTIZE_ACTIVATION, "quantize_activation_ref", fmt, x)
