"""q4_K: 256 weights in 144 bytes = f16 d, f16 dmin, u8 scales[12] (8 x 6-bit scale and
8 x 6-bit min), u8 qs[128]: 4 chunks of 32 bytes whose low nibbles are sub-block 2i and
high nibbles sub-block 2i+1; x = d*sc * q - dmin*min, 8 sub-blocks of 32.
Activations: q8_K (float d, int8 q, per-16 bsums); the mins go through the bsums.

Kernels follow `ggml_gemv_q4_K_8x8_q8_K`, the CPU "repack" path llama.cpp takes for
q4_K weights with a multiple of 8 rows (all of them in practice), so results are equal
bit for bit to it: per super-block the exact integer sums I = sum_j scale_j * (q . x)_j
and M = sum_j min_j * bsum_j, then acc = fma(I, d_w * d_x, acc),
acc_min = fma(M, dmin_w * d_x, acc_min), out = acc - acc_min. Variants, equal bit for bit:
- "one_row": one row per pass, x widened to int16 (the plain reference order);
- "row_pairs": two rows per pass in one 16-lane register (`isa.pairs`), scales of both
  unpacked in vector registers, the four chains (acc, acc_min of two rows) in an f32x4.
Prefill (T > 1) computes every token as decode does; llama.cpp's own prefill GEMMs are
not checked against. Not here: a q4_K quantizer (workbench only reads the format).
"""

import numpy as np
from numba import prange

from workbench.kernels.formats.activations import quantize_rows_q8_k
from workbench.kernels.formats.base import SERIAL, Variant, WeightFormat, f16_field
from workbench.kernels.formats.rows import AHEAD, QK_K, prefetch_bytes, q8_k_scratch
from workbench.kernels.isa.pairs import (
    dot_scaled_pair,
    fma_row_sums,
    mins_pair,
    nibbles_pair,
    pick_k4,
    scales4,
    scales_mins_k4_pair,
)
from workbench.kernels.isa.vectors import add_scaled, dot_mins, fmaf, load_f16, load_u32, pdot_nibble, vsum, zeros_i32
from workbench.kernels.isa.x86 import lane, zeros_f32x4
from workbench.kernels.jit import njit_parallel, njit_serial

GGML_TYPE = 12
BLOCK = 144


def scales_mins(scales: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unpack the 12 scale bytes of q4_K super-blocks into 8 scales and 8 mins (N, 8).

    Bytes 0..3 hold the low 6 bits of scales 0..3, bytes 4..7 those of mins 0..3; bytes
    8..11 hold the low 4 bits of scale 4+j and min 4+j, whose top 2 bits sit in the
    spare high bits of bytes j and 4+j (ggml's `get_scale_min_k4`).
    """
    s_lo, m_lo, packed = scales[:, 0:4], scales[:, 4:8], scales[:, 8:12]
    six = np.uint8(0x3F)
    sc = np.concatenate([s_lo & six, (packed & 0x0F) | ((s_lo >> 6) << 4)], axis=-1)
    mn = np.concatenate([m_lo & six, (packed >> 4) | ((m_lo >> 6) << 4)], axis=-1)
    return sc, mn


def dequantize(blocks: np.ndarray) -> np.ndarray:
    n = blocks.shape[0]
    d = f16_field(blocks, 0)
    dmin = f16_field(blocks, 2)
    sc, mn = scales_mins(blocks[:, 4:16])
    # 4 chunks of 32 bytes: low nibbles are sub-block 2i, high nibbles sub-block 2i+1
    qs = blocks[:, 16:].reshape(n, 4, 1, 32) >> np.array([0, 4], np.uint8).reshape(1, 1, 2, 1)
    q = (qs & np.uint8(0x0F)).reshape(n, 8, 32).astype(np.float32)
    scale = (d * sc.astype(np.float32)).reshape(n, 8, 1)
    offset = (dmin * mn.astype(np.float32)).reshape(n, 8, 1)
    return (scale * q - offset).reshape(n, QK_K)


@njit_serial
def scale_min_k4(row, base, j):
    """Scale and min of sub-block j (0..7) from the 12 bytes at row[base] (q4_K)."""
    if j < 4:
        return np.int64(row[base + j] & 63), np.int64(row[base + j + 4] & 63)
    lo, hi = np.int64(row[base + j - 4]), np.int64(row[base + j])
    packed = np.int64(row[base + j + 4])
    return (packed & 0x0F) | ((lo >> 6) << 4), (packed >> 4) | ((hi >> 6) << 4)


@njit_serial
def scales_mins_k4(row, base):
    """All 8 scales and 8 mins of a q4_K super-block, one per byte of two uint64s: bytes
    0..3 hold the low 6 bits of scales / mins 0..3, bytes 8..11 the low 4 bits of both
    for sub-blocks 4..7, whose top 2 bits sit in bits 6..7 of bytes 0..7."""
    a, b, c = load_u32(row, base), load_u32(row, base + 4), load_u32(row, base + 8)
    sc_hi = (c & 0x0F0F0F0F) | (((a >> 6) & 0x03030303) << 4)
    mn_hi = ((c >> 4) & 0x0F0F0F0F) | (((b >> 6) & 0x03030303) << 4)
    scales = np.uint64(a & 0x3F3F3F3F) | (np.uint64(sc_hi) << np.uint64(32))
    mins = np.uint64(b & 0x3F3F3F3F) | (np.uint64(mn_hi) << np.uint64(32))
    return scales, mins


@njit_serial
def get_rows(out, w, ids):
    # super-block = f16 d, f16 dmin, 12 B scales, 4 x 32 B nibbles (low: sub-block 2i,
    # high: 2i+1): x = (d * sc) * q - (dmin * min)
    for t in range(ids.shape[0]):
        row = w[ids[t]]
        for b in range(out.shape[1] // 256):
            o = 144 * b
            d = load_f16(row, o)
            dmin = load_f16(row, o + 2)
            for s in range(8):
                sc, mn = scale_min_k4(row, o + 4, s)
                scale = d * np.float32(sc)
                offset = dmin * np.float32(mn)
                shift = 4 * (s & 1)
                base = o + 16 + 32 * (s >> 1)
                for j in range(32):
                    q = (row[base + j] >> shift) & 15
                    out[t, 256 * b + 32 * s + j] = scale * np.float32(q) - offset


def _one_row(out, w, x, i8, i32, f32):
    # W (rows, nb*144) @ x (T, cols) -> out (T, rows)
    # super-block = f16 d, f16 dmin, 12 B scales, 128 B nibbles: 4 x 32 bytes whose low
    # nibbles are sub-block 2i and high nibbles sub-block 2i+1; w = d*sc*q - dmin*min
    T, cols = x.shape
    nb = cols // QK_K
    xq = np.empty((T, cols), np.int16)
    xd = np.empty((T, nb), np.float32)
    bsums = np.empty((T, cols // 16), np.int32)
    quantize_rows_q8_k(x, xq, xd, bsums)
    for r in prange(w.shape[0]):
        row = w[r]
        for t in range(T):
            acc = np.float32(0)
            acc_min = np.float32(0)
            for b in range(nb):
                o = b * 144
                xo = t * cols + b * QK_K
                scales, mins = scales_mins_k4(row, o + 4)
                p = zeros_i32()
                for i in range(4):
                    q = o + 16 + 32 * i
                    sc_lo = np.int64((scales >> np.uint64(16 * i)) & np.uint64(0xFF))
                    sc_hi = np.int64((scales >> np.uint64(16 * i + 8)) & np.uint64(0xFF))
                    p = add_scaled(p, pdot_nibble(row, q, 0, xq, xo + 64 * i), sc_lo, sc_lo)
                    p = add_scaled(p, pdot_nibble(row, q, 4, xq, xo + 64 * i + 32), sc_hi, sc_hi)
                # sum_j min_j * (q8 values of sub-block j): bsums come 2 per sub-block
                mins = dot_mins(mins, bsums, t * (cols // 16) + b * 16)
                acc = fmaf(np.float32(vsum(p)), load_f16(row, o) * xd[t, b], acc)
                acc_min = fmaf(np.float32(mins), load_f16(row, o + 2) * xd[t, b], acc_min)
            out[t, r] = acc - acc_min


def _row_pairs(out, w, x, i8, i32, f32):
    # W (rows, nb*144) @ x (T, cols) -> out (T, rows)
    # super-block = f16 d, f16 dmin, 12 B scales, 128 B nibbles: 4 x 32 bytes whose low
    # nibbles are sub-block 2i and high nibbles sub-block 2i+1; w = d*sc*q - dmin*min
    T, cols = x.shape
    nb, rb, last = cols // QK_K, w.shape[1], w.shape[0] - 1
    xq, xd, bsums = q8_k_scratch(T, cols, i8, i32, f32)
    quantize_rows_q8_k(x, xq, xd, bsums)
    tiled = T - T % 4  # prefill: tokens four at a time, each super-block unpacked once for four
    if tiled:
        for g in prange((last + 2) // 2):
            for t in range(0, tiled, 4):
                _four_tokens(out, w, xq, xd, bsums, t, 2 * g, min(2 * g + 1, last))
    for g in prange((last + 2) // 2):
        r0, r1 = 2 * g, min(2 * g + 1, last)
        a, b = r0 * rb, r1 * rb
        for t in range(tiled, T):  # decode, and the last tokens of a prefill
            acc = zeros_f32x4()  # [acc A, acc B, acc_min A, acc_min B]
            for k in range(nb):
                o = k * 144
                prefetch_bytes(w, a + AHEAD + k * 2 * 144, 2 * 144)
                xo = t * cols + k * QK_K
                s, mins = scales_mins_k4_pair(w, a + o + 4, b + o + 4)
                p = zeros_i32()  # I of row A (lanes 0..7) and B (8..15)
                for i in range(4):
                    q = o + 16 + 32 * i
                    lo, hi = nibbles_pair(w, a + q, b + q, 0), nibbles_pair(w, a + q, b + q, 4)
                    p = dot_scaled_pair(p, lo, xq, xo + 64 * i, pick_k4(s, 2 * i))
                    p = dot_scaled_pair(p, hi, xq, xo + 64 * i + 32, pick_k4(s, 2 * i + 1))
                # M: sum_j min_j * (q8 values of sub-block j), bsums come 2 per sub-block
                mins = mins_pair(mins, bsums, t * (cols // 16) + k * 16)
                d = scales4(w, a + o, b + o, a + o + 2, b + o + 2, xd[t, k])  # d A, d B, dmin A, dmin B
                acc = fma_row_sums(acc, p, mins, 0, d)
            out[t, r0], out[t, r1] = lane(acc, 0) - lane(acc, 2), lane(acc, 1) - lane(acc, 3)


@njit_serial
def _four_tokens(out, w, xq, xd, bsums, t, r0, r1):
    """Tokens t..t+3 of rows r0, r1: each token's arithmetic exactly the one-token path's."""
    cols, rb = xq.shape[1], w.shape[1]
    a, b, nb16 = r0 * rb, r1 * rb, cols // 16
    acc0, acc1, acc2, acc3 = zeros_f32x4(), zeros_f32x4(), zeros_f32x4(), zeros_f32x4()
    for k in range(cols // QK_K):
        o = k * 144
        prefetch_bytes(w, a + AHEAD + k * 2 * 144, 2 * 144)
        xo = t * cols + k * QK_K
        s, mins = scales_mins_k4_pair(w, a + o + 4, b + o + 4)
        p0, p1, p2, p3 = zeros_i32(), zeros_i32(), zeros_i32(), zeros_i32()
        for i in range(4):
            q = o + 16 + 32 * i
            lo, hi = nibbles_pair(w, a + q, b + q, 0), nibbles_pair(w, a + q, b + q, 4)
            s_lo, s_hi, x = pick_k4(s, 2 * i), pick_k4(s, 2 * i + 1), xo + 64 * i
            p0 = dot_scaled_pair(dot_scaled_pair(p0, lo, xq, x, s_lo), hi, xq, x + 32, s_hi)
            p1 = dot_scaled_pair(dot_scaled_pair(p1, lo, xq, x + cols, s_lo), hi, xq, x + cols + 32, s_hi)
            p2 = dot_scaled_pair(dot_scaled_pair(p2, lo, xq, x + 2 * cols, s_lo), hi, xq, x + 2 * cols + 32, s_hi)
            p3 = dot_scaled_pair(dot_scaled_pair(p3, lo, xq, x + 3 * cols, s_lo), hi, xq, x + 3 * cols + 32, s_hi)
        acc0 = fma_row_sums(acc0, p0, mins_pair(mins, bsums, t * nb16 + k * 16), 0,
                            scales4(w, a + o, b + o, a + o + 2, b + o + 2, xd[t, k]))
        acc1 = fma_row_sums(acc1, p1, mins_pair(mins, bsums, (t + 1) * nb16 + k * 16), 0,
                            scales4(w, a + o, b + o, a + o + 2, b + o + 2, xd[t + 1, k]))
        acc2 = fma_row_sums(acc2, p2, mins_pair(mins, bsums, (t + 2) * nb16 + k * 16), 0,
                            scales4(w, a + o, b + o, a + o + 2, b + o + 2, xd[t + 2, k]))
        acc3 = fma_row_sums(acc3, p3, mins_pair(mins, bsums, (t + 3) * nb16 + k * 16), 0,
                            scales4(w, a + o, b + o, a + o + 2, b + o + 2, xd[t + 3, k]))
    out[t, r0], out[t, r1] = lane(acc0, 0) - lane(acc0, 2), lane(acc0, 1) - lane(acc0, 3)
    out[t + 1, r0], out[t + 1, r1] = lane(acc1, 0) - lane(acc1, 2), lane(acc1, 1) - lane(acc1, 3)
    out[t + 2, r0], out[t + 2, r1] = lane(acc2, 0) - lane(acc2, 2), lane(acc2, 1) - lane(acc2, 3)
    out[t + 3, r0], out[t + 3, r1] = lane(acc3, 0) - lane(acc3, 2), lane(acc3, 1) - lane(acc3, 3)


one_row, one_row_serial = njit_parallel(_one_row), njit_serial(_one_row)
row_pairs, row_pairs_serial = njit_parallel(_row_pairs), njit_serial(_row_pairs)


@njit_serial
def matvec_into(variant, out, w, x, i8, i32, f32):
    """Variant number `variant` of FORMAT.variants (+ SERIAL: its serial twin)."""
    if variant == 0:
        one_row(out, w, x, i8, i32, f32)
    elif variant == 1:
        row_pairs(out, w, x, i8, i32, f32)
    elif variant == SERIAL:
        one_row_serial(out, w, x, i8, i32, f32)
    else:
        row_pairs_serial(out, w, x, i8, i32, f32)


FORMAT = WeightFormat(
    "q4_k", GGML_TYPE, QK_K, BLOCK, "q8_k", dequantize, None, (0, 2), get_rows, matvec_into,
    variants=(
        Variant("one_row", one_row, one_row_serial, "one row per pass, x widened to int16", reference=True),
        Variant("row_pairs", row_pairs, row_pairs_serial, "two rows per pass in one 16-lane register"),
    ),
    # AVX2 EPYC, 2048 x 640 at 1 thread: 58 against 105 us; without AVX2 one row wins
    prefer=(("row_pairs", ("avx512vnni", "avx512bw", "avx512vl")), ("row_pairs", ("avx2",))),
)
