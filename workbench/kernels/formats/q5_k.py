"""q5_K: 256 weights in 176 bytes = f16 d, f16 dmin, u8 scales[12] (8 x 6-bit scale and
8 x 6-bit min, packed as q4_K), u8 qh[32] (bit j of qh[l] is the 5th bit of value
32j + l), u8 qs[128]: 4 chunks of 32 bytes whose low nibbles are sub-block 2i and high
nibbles sub-block 2i+1; q = nibble | bit << 4 (0..31), x = d*sc * q - dmin*min, 8
sub-blocks of 32. Activations: q8_K (float d, int8 q, per-16 bsums); the mins go through
the bsums.

Kernels follow `ggml_vec_dot_q5_K_q8_K` (ggml-cpu/arch/x86/quants.c, AVX2 branch) operation
for operation: llama.cpp's CPU backend has no repacked q5_K gemv for x86 (repack.cpp
offers one only with ARM NEON), so this is what runs at decode, and results are equal
bit for bit to it. Per super-block: 8 integer lanes, lane k the sum over sub-blocks j of
sc_j * (products 4k..4k+3 of sub-block j), fused into 8 float32 lanes with d_x * d_w;
the mins as one exact integer M = sum_j min_j * bsum_j, fused into a scalar chain
summs = fmaf(M, -d_x * dmin_w, summs); out = hsum_float_8(acc) + summs. Variants, equal
bit for bit:
- "one_row": one row per pass, x widened to int16 (the plain reference order);
- "row_groups": four rows per pass as two row pairs (`isa.pairs`: two rows in one
  16-lane register), scales of each pair unpacked in vector registers
  (`scales_mins_k4_pair`, as q4_K), the four min chains side by side in an f32x4.
Prefill (T > 1) computes every token as decode does. llama.cpp multiplies a batch of 8 or
more rows by a q5_K weight with its tiled K-quant GEMM (ggml-cpu/tiled/tiled.cpp), which
sums in another order and is not matched: compare with llama.cpp on prompts fed one token
at a time (scripts/make_goldens.py --prompt-by-token). Not here: a q5_K quantizer (workbench only reads the format; ggml's
`quantize_row_q5_K_ref` is a scale search).
"""

import numba
import numpy as np
from numba import prange, types
from numba.extending import intrinsic

from workbench.kernels.formats.activations import quantize_rows_q8_k
from workbench.kernels.formats.base import SERIAL, Variant, WeightFormat, f16_field
from workbench.kernels.formats.q4_k import scale_min_k4, scales_mins, scales_mins_k4
from workbench.kernels.formats.rows import (
    AHEAD,
    QK_K,
    ROWS,
    group_rows,
    prefetch_bytes,
    q8_k_scratch,
)
from workbench.kernels.isa.pairs import (
    dot_scaled_pair,
    fma_pair,
    fma_row_sums,
    mins_pair,
    pick_k4,
    scales4,
    scales_mins_k4_pair,
    scales_pair,
)
from workbench.kernels.isa.vectors import (
    _concat,
    _const,
    _field32,
    _i8,
    _i16,
    _load,
    _pairwise_madd,
    _splat,
    add_scaled,
    dot_mins,
    fma_quads,
    fmaf,
    i32x16,
    load_f16,
    vsum_quads,
    zeros_f32,
    zeros_i32,
)
from workbench.kernels.isa.x86 import hsum_hi, hsum_lo, lane, u8x64, zeros_f32x4
from workbench.kernels.jit import njit_parallel, njit_serial

GGML_TYPE = 13
BLOCK = 176
QH, QS = 16, 48  # byte offsets of qh[32] and qs[128] in a super-block


def values(blocks: np.ndarray) -> np.ndarray:
    """The 5-bit quants of q5_K super-blocks, 0..31, as uint8 (N, 256)."""
    n = blocks.shape[0]
    # sub-block s: nibble s & 1 of qs chunk s >> 1, 5th bit = bit s of qh[l]
    low = blocks[:, QS:].reshape(n, 4, 1, 32) >> np.array([0, 4], np.uint8).reshape(1, 1, 2, 1)
    high = blocks[:, QH:QS].reshape(n, 1, 32) >> np.arange(8, dtype=np.uint8).reshape(1, 8, 1)
    return ((low & np.uint8(0x0F)).reshape(n, 8, 32) | ((high & np.uint8(1)) << np.uint8(4))).reshape(n, QK_K)


def dequantize(blocks: np.ndarray) -> np.ndarray:
    n = blocks.shape[0]
    d = f16_field(blocks, 0)
    dmin = f16_field(blocks, 2)
    sc, mn = scales_mins(blocks[:, 4:16])
    scale = (d * sc.astype(np.float32)).reshape(n, 8, 1)
    offset = (dmin * mn.astype(np.float32)).reshape(n, 8, 1)
    q = values(blocks).reshape(n, 8, 32).astype(np.float32)
    return (scale * q - offset).reshape(n, QK_K)


# ---- block dots: the 5th bit joined to the nibbles -----------------------------------------


@intrinsic
def pdot_q5(typingctx, w, qs, shift, qh, bit, x, xo):
    """q5_K sub-block: sum_{j<32} q_j * x[xo+j] with q_j = ((w[qs+j] >> shift) & 15)
    | ((w[qh+j] >> bit) & 1) << 4, x int16 (lanes as `pdot_nibble`)."""
    def codegen(context, builder, sig, args):
        w_, qs_, sh_, qh_, bit_, x_, xo_ = args
        wty = sig.args[0]
        low = _field32(builder, _load(context, builder, wty, w_, qs_, _i8, 32), sh_, 15)
        high = _field32(builder, _load(context, builder, wty, w_, qh_, _i8, 32), bit_, 1)
        q = builder.or_(low, builder.shl(high, _const(_i16, 32, 4)))
        return _pairwise_madd(builder, q, _load(context, builder, sig.args[5], x_, xo_, _i16, 32))
    return i32x16(w, types.intp, types.intp, types.intp, types.intp, x, types.intp), codegen


@intrinsic
def q5_k_pair(typingctx, w, qa, qb, shift, ha, hb, bit):
    """q5_K quants 0..31 of a sub-block of rows A and B (u8x64, for `dot_scaled_pair`):
    ((w[q+j] >> shift) & 15) | ((w[h+j] >> bit) & 1) << 4, q, h = qa, ha (A) or qb, hb (B)."""
    def codegen(context, builder, sig, args):
        w_, qa_, qb_, sh_, ha_, hb_, bit_ = args
        ld = lambda o: _load(context, builder, sig.args[0], w_, o, _i8, 32)
        by = lambda s: _splat(builder, builder.trunc(s, _i8), 64)
        lo = builder.and_(builder.lshr(_concat(builder, ld(qa_), ld(qb_)), by(sh_)), _const(_i8, 64, 15))
        hi = builder.and_(builder.lshr(_concat(builder, ld(ha_), ld(hb_)), by(bit_)), _const(_i8, 64, 1))
        return builder.or_(lo, builder.shl(hi, _const(_i8, 64, 4)))
    return u8x64(w, types.intp, types.intp, types.intp, types.intp, types.intp, types.intp), codegen


if numba.config.DISABLE_JIT:  # numpy twins, to step through the kernels as plain Python
    from workbench.kernels.isa.numpy_twins import _flat, _pairs

    def pdot_q5(w, qs, shift, qh, bit, x, xo):
        low = (_flat(w, qs, 32, np.uint8).astype(np.int32) >> shift) & 15
        high = (_flat(w, qh, 32, np.uint8).astype(np.int32) >> bit) & 1
        return _pairs(low | (high << 4), _flat(x, xo, 32, np.int32))

    def q5_k_pair(w, qa, qb, shift, ha, hb, bit):
        lo = (np.concatenate([_flat(w, qa, 32, np.uint8), _flat(w, qb, 32, np.uint8)]) >> shift) & 15
        hi = (np.concatenate([_flat(w, ha, 32, np.uint8), _flat(w, hb, 32, np.uint8)]) >> bit) & 1
        return lo | (hi << 4)


# ---- kernels -------------------------------------------------------------------------------


@njit_serial
def get_rows(out, w, ids):
    # super-block = f16 d, f16 dmin, 12 B scales, 32 B qh, 4 x 32 B nibbles (low: sub-block
    # 2i, high: 2i+1), bit s of qh[l] the 5th bit of sub-block s: x = (d * sc) * q - (dmin * min)
    for t in range(ids.shape[0]):
        row = w[ids[t]]
        for b in range(out.shape[1] // QK_K):
            o = BLOCK * b
            d = load_f16(row, o)
            dmin = load_f16(row, o + 2)
            for s in range(8):
                sc, mn = scale_min_k4(row, o + 4, s)
                scale = d * np.float32(sc)
                offset = dmin * np.float32(mn)
                shift = 4 * (s & 1)
                base = o + QS + 32 * (s >> 1)
                for j in range(32):
                    q = ((row[base + j] >> shift) & 15) | (((row[o + QH + j] >> s) & 1) << 4)
                    out[t, QK_K * b + 32 * s + j] = scale * np.float32(q) - offset


@njit_serial
def dot_pair(w, a, b, xq, xo, s):
    """The scaled integer lanes of a super-block of rows A (lanes 0..7) and B (8..15), at
    byte offsets a, b of w, with x from flat xo, s their scales from `scales_mins_k4_pair`.
    A function of its own so that LLVM unrolls its 8 sub-blocks (constant shifts) before
    inlining it: written out inside `_row_groups` the loop stayed rolled, ~40% slower."""
    p = zeros_i32()
    for j in range(8):
        qs = QS + 32 * (j >> 1)
        q = q5_k_pair(w, a + qs, b + qs, 4 * (j & 1), a + QH, b + QH, j)
        p = dot_scaled_pair(p, q, xq, xo + 32 * j, pick_k4(s, j))
    return p


def _one_row(out, w, x, i8, i32, f32):
    # W (rows, nb*176) @ x (T, cols) -> out (T, rows)
    # super-block = f16 d, f16 dmin, 12 B scales, 32 B qh, 128 B nibbles: 4 x 32 bytes whose
    # low nibbles are sub-block 2i and high nibbles 2i+1, bit s of qh[l] the 5th bit of
    # sub-block s; w = d*sc*q - dmin*min
    T, cols = x.shape
    nb = cols // QK_K
    xq = np.empty((T, cols), np.int16)
    xd = np.empty((T, nb), np.float32)
    bsums = np.empty((T, cols // 16), np.int32)
    quantize_rows_q8_k(x, xq, xd, bsums)
    for r in prange(w.shape[0]):
        row = w[r]
        for t in range(T):
            acc = zeros_f32()
            summs = np.float32(0)
            for b in range(nb):
                o = b * BLOCK
                xo = t * cols + b * QK_K
                scales, mins = scales_mins_k4(row, o + 4)
                # M = sum_j min_j * (q8 values of sub-block j): bsums come 2 per sub-block
                m = dot_mins(mins, bsums, t * (cols // 16) + b * 16)
                summs = fmaf(np.float32(m), -xd[t, b] * load_f16(row, o + 2), summs)
                p = zeros_i32()
                for s in range(8):
                    sc = np.int64((scales >> np.uint64(8 * s)) & np.uint64(0xFF))
                    q = pdot_q5(row, o + QS + 32 * (s >> 1), 4 * (s & 1), o + QH, s, xq, xo + 32 * s)
                    p = add_scaled(p, q, sc, sc)
                acc = fma_quads(acc, xd[t, b] * load_f16(row, o), p)
            out[t, r] = vsum_quads(acc) + summs


def _row_groups(out, w, x, i8, i32, f32):
    # W (rows, nb*176) @ x (T, cols) -> out (T, rows), four rows per pass as two row pairs
    T, cols = x.shape
    nb, rb, last = cols // QK_K, w.shape[1], w.shape[0] - 1
    xq, xd, bsums = q8_k_scratch(T, cols, i8, i32, f32)
    quantize_rows_q8_k(x, xq, xd, bsums)
    for g in prange((last + ROWS) // ROWS):
        r0, r1, r2, r3 = group_rows(g, last)
        a, b, c, d = r0 * rb, r1 * rb, r2 * rb, r3 * rb
        for t in range(T):
            ab, cd = zeros_f32(), zeros_f32()
            summs = zeros_f32x4()  # the four rows' min chains side by side
            for k in range(nb):
                o = k * BLOCK
                prefetch_bytes(w, a + AHEAD + k * ROWS * BLOCK, ROWS * BLOCK)
                xo, bo, dx = t * cols + k * QK_K, t * (cols // 16) + k * 16, xd[t, k]
                s_ab, m_ab = scales_mins_k4_pair(w, a + o + 4, b + o + 4)
                s_cd, m_cd = scales_mins_k4_pair(w, c + o + 4, d + o + 4)
                m_ab, m_cd = mins_pair(m_ab, bsums, bo), mins_pair(m_cd, bsums, bo)
                dmin = scales4(w, a + o + 2, b + o + 2, c + o + 2, d + o + 2, -dx)  # -d_x * dmin of A..D
                summs = fma_row_sums(summs, m_ab, m_cd, 0, dmin)
                p_ab = dot_pair(w, a + o, b + o, xq, xo, s_ab)
                p_cd = dot_pair(w, c + o, d + o, xq, xo, s_cd)
                ab = fma_pair(ab, scales_pair(w, a + o, b + o, dx), p_ab)
                cd = fma_pair(cd, scales_pair(w, c + o, d + o, dx), p_cd)
            out[t, r0], out[t, r1] = hsum_lo(ab) + lane(summs, 0), hsum_hi(ab) + lane(summs, 1)
            out[t, r2], out[t, r3] = hsum_lo(cd) + lane(summs, 2), hsum_hi(cd) + lane(summs, 3)


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
    "q5_k", GGML_TYPE, QK_K, BLOCK, "q8_k", dequantize, None, (0, 2), get_rows, matvec_into,
    variants=(
        Variant("one_row", one_row, one_row_serial, "one row per pass, x widened to int16", reference=True),
        Variant("row_groups", row_groups, row_groups_serial, "four rows per pass as two row pairs"),
    ),
    # EPYC Zen 4 (AVX-512 VNNI), 2048 x 2048 at 1 thread, best of 20: 136 against 220 us
    # (two rows per pass instead: 145 us); compiled for Haswell on the same machine 249
    # against 387 us; compiled for Ivy Bridge (no AVX2) one row wins, 975 against 1097 us
    prefer=(("row_groups", ("avx512vnni", "avx512bw", "avx512vl")), ("row_groups", ("avx2",))),
)
