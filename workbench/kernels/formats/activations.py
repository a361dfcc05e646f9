"""Activation formats q8_0 / q8_1 / q8_K: what llama.cpp's x86 CPU backend does to x
before a dot product with a weight, compiled and as numpy references.

Each `quantize_rows_<fmt>` takes float32 x (T, cols) and fills preallocated outputs; the
matvec kernels call them once per call, before their row loop. They match
`workbench.quant.quantize_activation_ref` bit for bit:
- q8_0 / q8_1 (`quantize_row_q8_0` / `_q8_1`, AVX path): d = amax/127 stored as fp16,
  q = round-half-to-even(x * (127/amax)); q8_1 also keeps s = fp16(d * sum q).
- q8_K (`quantize_row_q8_K_ref`, the only x86 path): d = 1/iscale with
  iscale = -127/max (max = first largest-magnitude value, sign kept), q = round-half-even,
  bsums = sums of 16 consecutive q.
- f16 / bf16: x rounded to the weight's precision (ties to even; bf16 as
  `ggml_compute_fp32_to_bf16`), kept as float32.
Quants are written as int16 (the int8 values widened once, so block dots need no
sign-extension shuffle); scales as float32 holding the exact value the block stores (the
fp16-rounded d for q8_0 / q8_1). `quantize_activation(fmt, x)` packs the results into
ggml block bytes, for tests and for notebooks; kernels never call it.

The numpy references `quantize_act_q8_0` / `quantize_act_q8_1` (id = 127/amax, halves to
even, as the AVX path) differ on purpose from the weight quantizers of the same formats
(`quantize_row_*_ref`: id = 1/d, roundf); q8_K has only the one (`quantize_row_q8_K_ref`).
Block layouts:
  q8_1  36 B = f16 d, f16 s (= d * sum q), int8 qs[32]
  q8_K 292 B = f32 d, int8 qs[256], int16 bsums[16]

Serial on purpose: T * cols elements is small next to the weights, and the callers are
themselves parallel kernels.
"""

import numpy as np

from workbench.errors import UnsupportedError
from workbench.kernels.formats.base import WeightFormat, f16_bytes, f16_field, inverse, roundf
from workbench.kernels.isa.vectors import round_f16
from workbench.kernels.jit import njit_serial

QK = 32
QK_K = 256
LOWEST, HIGHEST = np.float32(-128), np.float32(127)  # int8 saturation, as `vpacksswb`


@njit_serial
def quantize_rows_q8_0(x, xq, xd, xs):
    # x (T, cols) f32 -> xq (T, cols) int16 q, xd (T, cols/32) f32 scale, xs (T, cols/32) i32 sum q
    for t in range(x.shape[0]):
        for b in range(x.shape[1] // QK):
            o = b * QK
            amax = np.float32(0)
            for j in range(QK):
                amax = max(amax, abs(x[t, o + j]))
            xd[t, b] = round_f16(amax / np.float32(127))
            inv = np.float32(127) / amax if amax != 0 else np.float32(0)
            s = 0
            for j in range(QK):
                q = np.int32(min(max(np.rint(x[t, o + j] * inv), LOWEST), HIGHEST))
                xq[t, o + j] = q
                s += q
            xs[t, b] = s


@njit_serial
def quantize_rows_q8_1(x, xq, xd, xs):
    # x (T, cols) f32 -> xq (T, cols) int16 q, xd (T, cols/32) f32 scale, xs (T, cols/32) f32 s
    for t in range(x.shape[0]):
        for b in range(x.shape[1] // QK):
            o = b * QK
            amax = np.float32(0)
            for j in range(QK):
                amax = max(amax, abs(x[t, o + j]))
            d = amax / np.float32(127)
            inv = np.float32(127) / amax if amax != 0 else np.float32(0)
            s = 0
            for j in range(QK):
                q = np.int32(min(max(np.rint(x[t, o + j] * inv), LOWEST), HIGHEST))
                xq[t, o + j] = q
                s += q
            xd[t, b] = round_f16(d)
            xs[t, b] = round_f16(d * np.float32(s))  # from the unrounded d, as ggml


@njit_serial
def quantize_rows_q8_k(x, xq, xd, bsums):
    # x (T, cols) f32 -> xq (T, cols) int16 q, xd (T, cols/256) f32, bsums (T, cols/16) i32
    for t in range(x.shape[0]):
        for b in range(x.shape[1] // QK_K):
            o = b * QK_K
            amax = np.float32(0)
            vmax = np.float32(0)
            for j in range(QK_K):
                a = abs(x[t, o + j])
                if a > amax:
                    amax = a
                    vmax = x[t, o + j]
            if amax == 0:
                xd[t, b] = 0
                xq[t, o : o + QK_K] = 0
                bsums[t, b * 16 : b * 16 + 16] = 0
                continue
            iscale = np.float32(-127) / vmax
            for j in range(QK_K):
                xq[t, o + j] = np.int32(min(np.rint(iscale * x[t, o + j]), HIGHEST))
            for g in range(16):
                s = 0
                for j in range(16):
                    s += np.int32(xq[t, o + g * 16 + j])
                bsums[t, b * 16 + g] = s
            xd[t, b] = np.float32(1) / iscale


@njit_serial
def round_rows_f16(x, xr):
    # x (T, cols) f32 -> xr (T, cols) f32 holding fp16 values
    for t in range(x.shape[0]):
        for j in range(x.shape[1]):
            xr[t, j] = round_f16(x[t, j])


@njit_serial
def round_rows_bf16(x, xr):
    # x (T, cols) f32 -> xr (T, cols) f32 holding bf16 values (ggml_compute_fp32_to_bf16)
    u = x.view(np.uint32)
    r = xr.view(np.uint32)
    for t in range(x.shape[0]):
        for j in range(x.shape[1]):
            b = u[t, j]
            if (b & 0x7FFFFFFF) > 0x7F800000:  # NaN: keep it, force quiet
                r[t, j] = (b & 0xFFFF0000) | 0x00400000
            else:
                r[t, j] = ((np.uint64(b) + 0x7FFF + ((b >> 16) & 1)) >> 16) << 16


def quantize_activation(fmt: str, x: np.ndarray) -> np.ndarray:
    """x float32 (T, cols) -> uint8 (T, row_bytes): the kernels' activation quantization
    for vec_dot format `fmt`, packed as ggml blocks (compare with quantize_activation_ref)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    T, cols = x.shape
    if fmt in ("q8_0", "q8_1"):
        xq = np.empty((T, cols), np.int16)
        xd = np.empty((T, cols // QK), np.float32)
        if fmt == "q8_0":
            xs = np.empty((T, cols // QK), np.int32)
            quantize_rows_q8_0(x, xq, xd, xs)
            fields = [xd.astype(np.float16)[..., None].view(np.uint8)]
        else:
            xs = np.empty((T, cols // QK), np.float32)
            quantize_rows_q8_1(x, xq, xd, xs)
            fields = [f.astype(np.float16)[..., None].view(np.uint8) for f in (xd, xs)]
        qs = xq.astype(np.int8).view(np.uint8).reshape(T, cols // QK, QK)
        return np.concatenate(fields + [qs], axis=-1).reshape(T, -1)
    if fmt == "q8_k":
        xq = np.empty((T, cols), np.int16)
        xd = np.empty((T, cols // QK_K), np.float32)
        bsums = np.empty((T, cols // 16), np.int32)
        quantize_rows_q8_k(x, xq, xd, bsums)
        nb = cols // QK_K
        parts = [
            xd[..., None].view(np.uint8),
            xq.astype(np.int8).view(np.uint8).reshape(T, nb, QK_K),
            bsums.astype(np.int16).reshape(T, nb, 16).view(np.uint8),
        ]
        return np.concatenate(parts, axis=-1).reshape(T, -1)
    if fmt in ("f16", "bf16"):
        xr = np.empty_like(x)
        (round_rows_f16 if fmt == "f16" else round_rows_bf16)(x, xr)
        bits = xr.view(np.uint32)
        if fmt == "f16":
            return xr.astype(np.float16).view(np.uint8)
        return (bits >> 16).astype(np.uint16).view(np.uint8)
    if fmt == "f32":
        return x.view(np.uint8)
    raise UnsupportedError(f"no activation quantizer for {fmt!r}")


# ---- numpy references ---------------------------------------------------------------------


def _act_q8(x):
    """ggml's AVX activation quantizer: d = amax/127, q = round-half-even(x * 127/amax)."""
    amax = np.abs(x).max(axis=-1, keepdims=True)
    with np.errstate(divide="ignore"):
        inv = np.where(amax == 0, np.float32(0), np.float32(127) / amax).astype(np.float32)
    return amax / np.float32(127), np.clip(np.rint(x * inv), -128, 127).astype(np.int8)


def quantize_act_q8_0(x: np.ndarray) -> np.ndarray:
    d, q = _act_q8(x)
    return np.concatenate([f16_bytes(d), q.view(np.uint8)], axis=-1)


def _pack_q8_1(d: np.ndarray, q: np.ndarray) -> np.ndarray:
    s = q.astype(np.int32).sum(axis=-1, keepdims=True).astype(np.float32) * d
    return np.concatenate([f16_bytes(d), f16_bytes(s), q.view(np.uint8)], axis=-1)


def quantize_act_q8_1(x: np.ndarray) -> np.ndarray:
    return _pack_q8_1(*_act_q8(x))


def dequantize_q8_1(blocks: np.ndarray) -> np.ndarray:
    return f16_field(blocks, 0) * blocks[:, 4:].view(np.int8).astype(np.float32)


def quantize_q8_1(x: np.ndarray) -> np.ndarray:
    d = np.abs(x).max(axis=-1, keepdims=True) / np.float32(127)
    return _pack_q8_1(d, roundf(x * inverse(d)).astype(np.int8))


def dequantize_q8_k(blocks: np.ndarray) -> np.ndarray:
    d = blocks[:, 0:4].copy().view(np.float32)
    return d * blocks[:, 4:260].view(np.int8).astype(np.float32)


def quantize_q8_k(x: np.ndarray) -> np.ndarray:
    """ggml `quantize_row_q8_K_ref`: d = max/-127 with max the first largest-magnitude
    value (sign kept), q = nearest_int(x * -127/max) (halves to even), per-16 bsums."""
    n = x.shape[0]
    i = np.abs(x).argmax(axis=-1)[:, None]
    vmax = np.take_along_axis(x, i, axis=-1)
    with np.errstate(divide="ignore"):
        iscale = np.where(vmax == 0, np.float32(0), np.float32(-127) / vmax).astype(np.float32)
        d = np.where(vmax == 0, np.float32(0), np.float32(1) / iscale).astype(np.float32)
    q = np.minimum(np.rint(iscale * x), 127).astype(np.int8)
    bsums = q.reshape(n, 16, 16).astype(np.int16).sum(axis=-1, dtype=np.int16)
    return np.concatenate([d.view(np.uint8), q.view(np.uint8), bsums.view(np.uint8)], axis=-1)


Q8_1 = WeightFormat("q8_1", 9, QK, 36, "q8_1", dequantize_q8_1, quantize_q8_1, (0, 2), weight=False,
                    quantize_activation=quantize_act_q8_1)
Q8_K = WeightFormat("q8_k", 15, QK_K, 292, "q8_k", dequantize_q8_k, quantize_q8_k, (), weight=False)
