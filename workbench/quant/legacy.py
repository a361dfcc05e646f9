"""Reference codecs for ggml's 32-element block formats q8_0, q8_1, q4_0, q4_1, q5_0.

Plain numpy, vectorized over blocks: `dequantize_*` maps uint8 blocks (N, type_size) to
float32 (N, 32), `quantize_*` the reverse. Layouts are in `formats.py`.

Two families of quantizers live here, and they differ on purpose:
- `quantize_*` follow ggml's reference quantizers (`quantize_row_*_ref` in
  ggml-quants.c): scale id = 1/d, `roundf` (halves away from zero) or truncation. They
  make model files and are what `gguf.quants.quantize` reproduces bit for bit.
- `quantize_act_q8_0` / `quantize_act_q8_1` follow what llama.cpp's x86 CPU backend does
  to *activations* before a dot product (`quantize_row_q8_0` / `_q8_1` in
  ggml-cpu/arch/x86/quants.c, AVX path): id = 127/amax and `_mm256_round_ps` with
  `_MM_ROUND_NEAREST`, i.e. halves to even. The numba kernels must match these.
The dequantizers reproduce `gguf.quants.dequantize` bit for bit (same float operations
in the same order).
"""

import numpy as np

from workbench.quant.floats import f16_bytes, f16_field

QK = 32


def _roundf(v: np.ndarray) -> np.ndarray:
    """C `roundf`: nearest integer, halves away from zero (exact, unlike trunc(v + 0.5))."""
    a = np.abs(v)
    r = np.floor(a)
    r += (a - r) >= np.float32(0.5)
    return np.copysign(r, v)


def _inverse(d: np.ndarray) -> np.ndarray:
    """1/d where d != 0, else 0 (ggml's `d ? 1.0f/d : 0.0f`), in float32."""
    with np.errstate(divide="ignore"):
        return np.where(d == 0, np.float32(0), np.float32(1) / d).astype(np.float32)


def _signed_absmax(x: np.ndarray) -> np.ndarray:
    """Per block, the first element of largest magnitude, sign kept: (N, 1)."""
    i = np.abs(x).argmax(axis=-1)[:, None]
    return np.take_along_axis(x, i, axis=-1)


def _nibbles(qs: np.ndarray) -> np.ndarray:
    """u8 (N, 16) -> u8 (N, 32): low nibbles are elements 0..15, high ones 16..31."""
    return np.concatenate([qs & np.uint8(0x0F), qs >> np.uint8(4)], axis=-1)


def _pack_nibbles(q: np.ndarray) -> np.ndarray:
    """u8 (N, 32) values 0..15 -> (N, 16) bytes, inverse of `_nibbles`."""
    return q[:, :16] | (q[:, 16:] << np.uint8(4))


# ---- q8_0 ------------------------------------------------------------------------------


def dequantize_q8_0(blocks: np.ndarray) -> np.ndarray:
    d = f16_field(blocks, 0)
    return d * blocks[:, 2:].view(np.int8).astype(np.float32)


def quantize_q8_0(x: np.ndarray) -> np.ndarray:
    d = np.abs(x).max(axis=-1, keepdims=True) / np.float32(127)
    q = _roundf(x * _inverse(d)).astype(np.int8)
    return np.concatenate([f16_bytes(d), q.view(np.uint8)], axis=-1)


def quantize_act_q8_0(x: np.ndarray) -> np.ndarray:
    amax = np.abs(x).max(axis=-1, keepdims=True)
    d = amax / np.float32(127)
    with np.errstate(divide="ignore"):
        inv = np.where(amax == 0, np.float32(0), np.float32(127) / amax).astype(np.float32)
    q = np.clip(np.rint(x * inv), -128, 127).astype(np.int8)
    return np.concatenate([f16_bytes(d), q.view(np.uint8)], axis=-1)


# ---- q8_1 (activations of q4_1) ----------------------------------------------------------


def dequantize_q8_1(blocks: np.ndarray) -> np.ndarray:
    d = f16_field(blocks, 0)
    return d * blocks[:, 4:].view(np.int8).astype(np.float32)


def _pack_q8_1(d: np.ndarray, q: np.ndarray) -> np.ndarray:
    s = q.astype(np.int32).sum(axis=-1, keepdims=True).astype(np.float32) * d
    return np.concatenate([f16_bytes(d), f16_bytes(s), q.view(np.uint8)], axis=-1)


def quantize_q8_1(x: np.ndarray) -> np.ndarray:
    d = np.abs(x).max(axis=-1, keepdims=True) / np.float32(127)
    return _pack_q8_1(d, _roundf(x * _inverse(d)).astype(np.int8))


def quantize_act_q8_1(x: np.ndarray) -> np.ndarray:
    amax = np.abs(x).max(axis=-1, keepdims=True)
    d = amax / np.float32(127)
    with np.errstate(divide="ignore"):
        inv = np.where(amax == 0, np.float32(0), np.float32(127) / amax).astype(np.float32)
    return _pack_q8_1(d, np.clip(np.rint(x * inv), -128, 127).astype(np.int8))


# ---- q4_0 --------------------------------------------------------------------------------


def dequantize_q4_0(blocks: np.ndarray) -> np.ndarray:
    d = f16_field(blocks, 0)
    q = _nibbles(blocks[:, 2:]).astype(np.int8) - np.int8(8)
    return d * q.astype(np.float32)


def quantize_q4_0(x: np.ndarray) -> np.ndarray:
    d = _signed_absmax(x) / np.float32(-8)
    q = np.trunc(x * _inverse(d) + np.float32(8.5)).clip(0, 15).astype(np.uint8)
    return np.concatenate([f16_bytes(d), _pack_nibbles(q)], axis=-1)


# ---- q4_1 --------------------------------------------------------------------------------


def dequantize_q4_1(blocks: np.ndarray) -> np.ndarray:
    d = f16_field(blocks, 0)
    m = f16_field(blocks, 2)
    q = _nibbles(blocks[:, 4:]).astype(np.float32)
    return d * q + m


def quantize_q4_1(x: np.ndarray) -> np.ndarray:
    lo = x.min(axis=-1, keepdims=True)
    hi = x.max(axis=-1, keepdims=True)
    d = (hi - lo) / np.float32(15)
    q = np.trunc((x - lo) * _inverse(d) + np.float32(0.5)).clip(0, 15).astype(np.uint8)
    return np.concatenate([f16_bytes(d), f16_bytes(lo), _pack_nibbles(q)], axis=-1)


# ---- q5_0 --------------------------------------------------------------------------------

_BIT = np.arange(QK, dtype=np.uint32)


def dequantize_q5_0(blocks: np.ndarray) -> np.ndarray:
    d = f16_field(blocks, 0)
    qh = blocks[:, 2:6].copy().view(np.uint32)  # (N, 1): bit j is the 5th bit of x_j
    high = ((qh >> _BIT) & np.uint32(1)).astype(np.uint8) << np.uint8(4)
    q = (_nibbles(blocks[:, 6:]) | high).astype(np.int8) - np.int8(16)
    return d * q.astype(np.float32)


def quantize_q5_0(x: np.ndarray) -> np.ndarray:
    d = _signed_absmax(x) / np.float32(-16)
    q = np.trunc(x * _inverse(d) + np.float32(16.5)).clip(0, 31).astype(np.uint8)
    qh = (((q >> np.uint8(4)) & np.uint8(1)).astype(np.uint32) << _BIT).sum(
        axis=-1, keepdims=True, dtype=np.uint32
    )
    return np.concatenate(
        [f16_bytes(d), qh.view(np.uint8), _pack_nibbles(q & np.uint8(0x0F))], axis=-1
    )

