"""q5_0: 32 weights in 22 bytes = f16 d, u32 qh (bit j: the 5th bit of x_j), u8 qs[16]
(low nibbles x0..15, high x16..31); q = nibble | bit << 4, x = d * (q - 16).
Activations: q8_0.

Kernels follow `ggml_vec_dot_q5_0_q8_0` (AVX2) operation for operation, so results are
equal bit for bit to llama.cpp's: the offset (q - 16) applied before the products, every
block adds fp16(d_w) * d_x * (sum of products 4k..4k+3) into 8 float32 lanes with fused
multiply-adds, summed as `hsum_float_8` once per row. Variants, equal bit for bit:
- "one_row": one row per pass, x widened to int16 (the plain reference order);
- "row_groups": four rows per pass as two row pairs (`isa.pairs`), the dot of q - 16
  started from -16 * (sum of 4 x);
- "rows16": sixteen rows per pass on weights repacked at load (`q5_0_rows16`).
"""

import numpy as np
from numba import prange

from workbench.kernels.formats import q5_0_rows16
from workbench.kernels.formats.activations import quantize_rows_q8_0
from workbench.kernels.formats.base import (
    SERIAL,
    Variant,
    WeightFormat,
    f16_bytes,
    f16_field,
    inverse,
    nibbles,
    pack_nibbles,
    signed_absmax,
)
from workbench.kernels.formats.rows import QK, ROWS, group_rows, q8_0_scratch, sums_of_4
from workbench.kernels.isa.vectors import fma_quads, load_f16, load_u32, pdot_q4, vsum_quads, zeros_f32
from workbench.kernels.jit import njit_parallel, njit_serial

GGML_TYPE = 6
BLOCK = 22
_BIT = np.arange(QK, dtype=np.uint32)


def dequantize(blocks: np.ndarray) -> np.ndarray:
    qh = blocks[:, 2:6].copy().view(np.uint32)  # (N, 1): bit j is the 5th bit of x_j
    high = ((qh >> _BIT) & np.uint32(1)).astype(np.uint8) << np.uint8(4)
    q = (nibbles(blocks[:, 6:]) | high).astype(np.int8) - np.int8(16)
    return f16_field(blocks, 0) * q.astype(np.float32)


def quantize(x: np.ndarray) -> np.ndarray:
    d = signed_absmax(x) / np.float32(-16)
    q = np.trunc(x * inverse(d) + np.float32(16.5)).clip(0, 31).astype(np.uint8)
    qh = (((q >> np.uint8(4)) & np.uint8(1)).astype(np.uint32) << _BIT).sum(axis=-1, keepdims=True, dtype=np.uint32)
    return np.concatenate([f16_bytes(d), qh.view(np.uint8), pack_nibbles(q & np.uint8(0x0F))], axis=-1)


@njit_serial
def get_rows(out, w, ids):
    for t in range(ids.shape[0]):
        row = w[ids[t]]
        for b in range(out.shape[1] // QK):
            d = load_f16(row, BLOCK * b)
            qh = load_u32(row, BLOCK * b + 2)
            for j in range(16):
                q = row[BLOCK * b + 6 + j]
                lo = np.int32(q & 15) | np.int32(((qh >> j) & 1) << 4)
                hi = np.int32(q >> 4) | np.int32(((qh >> (j + 16)) & 1) << 4)
                out[t, QK * b + j] = d * np.float32(lo - 16)
                out[t, QK * b + 16 + j] = d * np.float32(hi - 16)


def _one_row(out, w, x, i8, i32, f32):
    # W (rows, nb*22) @ x (T, cols) -> out (T, rows)
    T, cols = x.shape
    nb = cols // QK
    xq = np.empty((T, cols), np.int16)
    xd = np.empty((T, nb), np.float32)
    xs = np.empty((T, nb), np.int32)
    quantize_rows_q8_0(x, xq, xd, xs)
    for r in prange(w.shape[0]):
        row = w[r]
        for t in range(T):
            acc = zeros_f32()
            for b in range(nb):
                o = b * BLOCK
                p = pdot_q4(row, o + 6, load_u32(row, o + 2), 16, xq, t * cols + b * QK)
                acc = fma_quads(acc, load_f16(row, o) * xd[t, b], p)
            out[t, r] = vsum_quads(acc)


def _row_groups(out, w, x, i8, i32, f32):
    # W (rows, nb*22) @ x (T, cols) -> out (T, rows), four rows per pass
    T, cols = x.shape
    nb, last = cols // QK, w.shape[0] - 1
    xq, xd, xs = q8_0_scratch(T, cols, i8, i32, f32)
    quantize_rows_q8_0(x, xq, xd, xs)
    xc = i32[T * nb : T * nb + T * cols // 4].reshape((T, cols // 4))
    sums_of_4(xq, -16, xc)  # the dot of q - 16 starts from -16 * (sum of 4 q_x)
    for g in prange((last + ROWS) // ROWS):
        r0, r1, r2, r3 = group_rows(g, last)
        for t in range(T):
            q5_0_rows16.plain_quad(out, w, xq, xd, xc, t, r0, r1, r2, r3)


one_row, one_row_serial = njit_parallel(_one_row), njit_serial(_one_row)
row_groups, row_groups_serial = njit_parallel(_row_groups), njit_serial(_row_groups)


@njit_serial
def matvec_into(variant, out, w, x, i8, i32, f32):
    """Variant number `variant` of FORMAT.variants (+ SERIAL: its serial twin)."""
    if variant == 0:
        one_row(out, w, x, i8, i32, f32)
    elif variant == 1:
        row_groups(out, w, x, i8, i32, f32)
    elif variant == 2:
        q5_0_rows16.rows16(out, w, x, i8, i32, f32)
    elif variant == SERIAL:
        one_row_serial(out, w, x, i8, i32, f32)
    elif variant == SERIAL + 1:
        row_groups_serial(out, w, x, i8, i32, f32)
    else:
        q5_0_rows16.rows16_serial(out, w, x, i8, i32, f32)


FORMAT = WeightFormat(
    "q5_0", GGML_TYPE, QK, BLOCK, "q8_0", dequantize, quantize, (0,), get_rows, matvec_into,
    variants=(
        Variant("one_row", one_row, one_row_serial, "one row per pass, x widened to int16", reference=True),
        Variant("row_groups", row_groups, row_groups_serial, "four rows per pass as two row pairs"),
        Variant("rows16", q5_0_rows16.rows16, q5_0_rows16.rows16_serial,
                "sixteen rows repacked at load, 5th bits as masks; prefill two tokens per pass",
                repack=q5_0_rows16.repack),
    ),
    # AVX2 EPYC, 1536 x 576 at 1 thread: 94 against 137 us; without AVX2 one row wins
    prefer=(("row_groups", ("avx512vnni", "avx512bw", "avx512vl")), ("row_groups", ("avx2",))),
    repacked=(("rows16", ("avx512vnni", "avx512bw", "avx512vl")),),  # measured on AVX-512 only
)
