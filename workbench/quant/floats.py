"""Reference codecs for the float formats f32, f16 and bf16 (plain numpy).

Each function maps whole arrays: `dequantize_*` takes uint8 blocks (N, type_size) and
returns float32 (N, block_size); `quantize_*` the reverse. Rounding follows ggml:
f16 is IEEE round-to-nearest-even (F16C `vcvtps2ph`, numpy's `astype(float16)`), bf16
is `ggml_compute_fp32_to_bf16` (round-to-nearest-even, NaN forced to a quiet NaN).

Also home to the f16 field helpers the block codecs use (`f16_field`, `f16_bytes`).
Nothing here is fast; the numba kernels do not call it.
"""

import numpy as np


def f16_field(blocks: np.ndarray, offset: int) -> np.ndarray:
    """The little-endian fp16 at byte `offset` of every block, as float32 (N, 1)."""
    return blocks[:, offset : offset + 2].copy().view(np.float16).astype(np.float32)


def f16_bytes(values: np.ndarray) -> np.ndarray:
    """float32 (N, 1) -> its fp16 encoding as uint8 (N, 2), rounded to nearest even."""
    return values.astype(np.float16).view(np.uint8).reshape(-1, 2)


def round_f16(x: np.ndarray) -> np.ndarray:
    """float32 values rounded to the nearest fp16 and widened back to float32."""
    return x.astype(np.float16).astype(np.float32)


def bf16_bits(x: np.ndarray) -> np.ndarray:
    """float32 -> bf16 bit patterns (uint16), as ggml_compute_fp32_to_bf16."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    is_nan = (u & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000)
    rounded = (u.astype(np.uint64) + (0x7FFF + ((u >> 16) & 1))) >> 16
    quiet_nan = (u >> 16) | np.uint32(64)
    return np.where(is_nan, quiet_nan, rounded).astype(np.uint16)


def round_bf16(x: np.ndarray) -> np.ndarray:
    """float32 values rounded to the nearest bf16 and widened back to float32."""
    return (bf16_bits(x).astype(np.uint32) << 16).view(np.float32)


def dequantize_f32(blocks: np.ndarray) -> np.ndarray:
    return blocks.copy().view(np.float32)


def quantize_f32(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float32).view(np.uint8)


def dequantize_f16(blocks: np.ndarray) -> np.ndarray:
    return blocks.copy().view(np.float16).astype(np.float32)


def quantize_f16(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float32).astype(np.float16).view(np.uint8)


def dequantize_bf16(blocks: np.ndarray) -> np.ndarray:
    return (blocks.copy().view(np.uint16).astype(np.uint32) << 16).view(np.float32)


def quantize_bf16(x: np.ndarray) -> np.ndarray:
    return bf16_bits(x).view(np.uint8)
