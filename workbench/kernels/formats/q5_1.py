"""q5_1: 32 weights in 24 bytes = f16 d, f16 m, u32 qh (bit j: the 5th bit of x_j),
u8 qs[16] (low nibbles x0..15, high x16..31); q = nibble | bit << 4 (0..31), x = d * q + m.
Activations: q8_1 (s = d_x * sum q_x kept as fp16).

q4_1 with q5_0's fifth bit: sum (d q + m) x = d d_x sum q q_x + m s_x. Kernels follow
`ggml_vec_dot_q5_1_q8_1` (AVX2; llama.cpp has no repacked or llamafile kernel for
q5_1) operation for operation, so results are equal bit for bit to llama.cpp's: every
block adds (fp16(d_w) * d_x) * (sum of products 4k..4k+3) into 8 float32 lanes with
fused multiply-adds, summed as `hsum_float_8` once per row, then the row's sum over
blocks of m_w * s_x is added. Variants, equal bit for bit:
- "one_row": one row per pass, x widened to int16 (the plain reference order);
- "row_groups": four rows per pass as two row pairs (`isa.pairs`), the four rows' m
  sums side by side in an f32x8.
"""

import numpy as np
from numba import prange

from workbench.kernels.formats.activations import quantize_rows_q8_1
from workbench.kernels.formats.base import (
    SERIAL,
    Variant,
    WeightFormat,
    f16_bytes,
    f16_field,
    inverse,
    nibbles,
    pack_nibbles,
)
from workbench.kernels.formats.rows import AHEAD, QK, ROWS, group_rows, prefetch_bytes, q8_0_scratch
from workbench.kernels.isa.pairs import dot4_pair_small, fma_pair, q5_pair, scales_mins_quad
from workbench.kernels.isa.vectors import fma_quads, load_f16, load_u32, pdot_q4, vsum_quads, zeros_f32, zeros_i32
from workbench.kernels.isa.x86 import hsum_hi, hsum_lo, lane, vadd, zeros_f32x8
from workbench.kernels.jit import njit_parallel, njit_serial

GGML_TYPE = 7
BLOCK = 24
_BIT = np.arange(QK, dtype=np.uint32)


def dequantize(blocks: np.ndarray) -> np.ndarray:
    qh = blocks[:, 4:8].copy().view(np.uint32)  # (N, 1): bit j is the 5th bit of x_j
    high = ((qh >> _BIT) & np.uint32(1)).astype(np.uint8) << np.uint8(4)
    q = (nibbles(blocks[:, 8:]) | high).astype(np.float32)
    return f16_field(blocks, 0) * q + f16_field(blocks, 2)


def quantize(x: np.ndarray) -> np.ndarray:
    lo = x.min(axis=-1, keepdims=True)
    hi = x.max(axis=-1, keepdims=True)
    d = (hi - lo) / np.float32(31)
    q = np.trunc((x - lo) * inverse(d) + np.float32(0.5)).clip(0, 31).astype(np.uint8)
    qh = ((q >> np.uint8(4)).astype(np.uint32) << _BIT).sum(axis=-1, keepdims=True, dtype=np.uint32)
    return np.concatenate([f16_bytes(d), f16_bytes(lo), qh.view(np.uint8), pack_nibbles(q & np.uint8(0x0F))],
                          axis=-1)


@njit_serial
def get_rows(out, w, ids):
    for t in range(ids.shape[0]):
        row = w[ids[t]]
        for b in range(out.shape[1] // QK):
            d = load_f16(row, BLOCK * b)
            m = load_f16(row, BLOCK * b + 2)
            qh = load_u32(row, BLOCK * b + 4)
            for j in range(16):
                q = row[BLOCK * b + 8 + j]
                lo = np.int32(q & 15) | np.int32(((qh >> j) & 1) << 4)
                hi = np.int32(q >> 4) | np.int32(((qh >> (j + 16)) & 1) << 4)
                out[t, QK * b + j] = d * np.float32(lo) + m
                out[t, QK * b + 16 + j] = d * np.float32(hi) + m


def _one_row(out, w, x, i8, i32, f32):
    # W (rows, nb*24) @ x (T, cols) -> out (T, rows)
    T, cols = x.shape
    nb = cols // QK
    xq = np.empty((T, cols), np.int16)
    xd = np.empty((T, nb), np.float32)
    xs = np.empty((T, nb), np.float32)
    quantize_rows_q8_1(x, xq, xd, xs)
    for r in prange(w.shape[0]):
        row = w[r]
        for t in range(T):
            acc = zeros_f32()
            acc_m = np.float32(0)
            for b in range(nb):
                o = b * BLOCK
                acc_m += load_f16(row, o + 2) * xs[t, b]
                p = pdot_q4(row, o + 8, load_u32(row, o + 4), 0, xq, t * cols + b * QK)
                acc = fma_quads(acc, load_f16(row, o) * xd[t, b], p)
            out[t, r] = vsum_quads(acc) + acc_m


def _row_groups(out, w, x, i8, i32, f32):
    # W (rows, nb*24) @ x (T, cols) -> out (T, rows), four rows per pass
    T, cols = x.shape
    nb, rb, last = cols // QK, w.shape[1], w.shape[0] - 1
    xq, xd, _ = q8_0_scratch(T, cols, i8, i32, f32)
    xs = f32[T * nb : 2 * T * nb].reshape((T, nb))
    quantize_rows_q8_1(x, xq, xd, xs)
    for g in prange((last + ROWS) // ROWS):
        r0, r1, r2, r3 = group_rows(g, last)
        a, b, c, d = r0 * rb, r1 * rb, r2 * rb, r3 * rb
        for t in range(T):
            ab, cd = zeros_f32(), zeros_f32()
            m = zeros_f32x8()  # odd lanes: each row's sum of m_w * s_x, added in block order
            for k in range(nb):
                o = k * BLOCK
                prefetch_bytes(w, a + AHEAD + k * ROWS * BLOCK, ROWS * BLOCK)
                xo = t * cols + k * QK
                sab, scd, dm = scales_mins_quad(w, a + o, b + o, c + o, d + o, xd[t, k], xs[t, k])
                m = vadd(m, dm)
                qab = q5_pair(w, a + o + 8, b + o + 8, load_u32(w, a + o + 4), load_u32(w, b + o + 4))
                qcd = q5_pair(w, c + o + 8, d + o + 8, load_u32(w, c + o + 4), load_u32(w, d + o + 4))
                ab = fma_pair(ab, sab, dot4_pair_small(zeros_i32(), qab, xq, xo))
                cd = fma_pair(cd, scd, dot4_pair_small(zeros_i32(), qcd, xq, xo))
            out[t, r0], out[t, r1] = hsum_lo(ab) + lane(m, 1), hsum_hi(ab) + lane(m, 3)
            out[t, r2], out[t, r3] = hsum_lo(cd) + lane(m, 5), hsum_hi(cd) + lane(m, 7)


one_row, one_row_serial = njit_parallel(_one_row), njit_serial(_one_row)
row_groups, row_groups_serial = njit_parallel(_row_groups), njit_serial(_row_groups)


@njit_serial
def matvec_into(variant, out, w, x, i8, i32, f32):
    """Variant number `variant` of FORMAT.variants (+ SERIAL: its serial twin)."""
    if variant == 0:
        one_row(out, w, x, i8, i32, f32)
    elif variant == 1:
        row_groups(out, w, x, i8, i32, f32)
    elif variant == SERIAL:
        one_row_serial(out, w, x, i8, i32, f32)
    else:
        row_groups_serial(out, w, x, i8, i32, f32)


FORMAT = WeightFormat(
    "q5_1", GGML_TYPE, QK, BLOCK, "q8_1", dequantize, quantize, (0, 2), get_rows, matvec_into,
    variants=(
        Variant("one_row", one_row, one_row_serial, "one row per pass, x widened to int16", reference=True),
        Variant("row_groups", row_groups, row_groups_serial, "four rows per pass as two row pairs"),
    ),
    # AMD EPYC Zen 4, 2048 x 2048 at 1 thread, best of 20: one_row 319 us, row_groups 150 us
    # (1536 x 576: 73 against 35 us); compiled for Haswell, 412 against 219 us. Compiled
    # for Ivy Bridge (no AVX2) row groups also won on this CPU (620 against 413 us at 1536
    # x 576), but that is no real pre-AVX2 machine: the reference stays its choice there
    prefer=(("row_groups", ("avx512vnni", "avx512bw", "avx512vl")), ("row_groups", ("avx2",))),
)
