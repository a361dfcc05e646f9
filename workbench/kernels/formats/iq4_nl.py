"""iq4_nl: 32 weights in 18 bytes = f16 d, u8 qs[16] (low nibbles x0..15, high x16..31);
x = d * KVALUES[nibble], a fixed non-linear table of 16 int8. Activations: q8_0.

Kernels follow llama.cpp's repacked `ggml_gemv_iq4_nl_8x8_q8_0` (ggml-cpu/arch/x86/
repack.cpp, `gemv_q4_b32_8x8_q8_0_lut_avx`, q4_0's kernel with this table), which its CPU
backend runs on iq4_nl weights of a multiple of 8 rows on any AVX2 CPU instead of the
vec_dot: per block one exact integer sumi = sum K[q] q_x, then
acc = fmaf(float(sumi), float(d_w) * d_x, acc) from acc = 0. Variants, equal bit for bit:
- "one_row": one row per pass, the table looked up per block, x widened to int16 (the
  plain reference order);
- "row_groups": four rows per pass in one register of four 4-lane rows (as q4_0's),
  their block dots by `dot4_quad_iq4nl` below, the four chains side by side in an f32x4.

The table lookup is `vpshufb` (16 entries fit one 128-bit lane), in the widest form the
CPU numba compiles for has, else a tree of selects on the index bits. The looked-up values
are signed (down to -127), so the unsigned-times-signed block dots take them either
biased by +128, the dot started from -128 * (sum of x) (512-bit VNNI, `vpdpbusd`), or
by llama.cpp's sign trick, |K[q]| times x carrying K[q]'s sign (`vpmaddubsw` exact:
|pair sum| <= 2 * 127 * 127 < 2^15). Same integers either way.

Not here: llama.cpp's `ggml_vec_dot_iq4_nl_q8_0` (two 8-lane accumulators, its own float
order), which it runs only on matrices whose row count is not a multiple of 8, without
AVX2, or with its repacking turned off.
"""

import numba
import numpy as np
from llvmlite import ir
from numba import prange, types
from numba.extending import intrinsic

from workbench.kernels.formats.activations import quantize_rows_q8_0
from workbench.kernels.formats.base import SERIAL, Variant, WeightFormat, f16_bytes, f16_field, nibbles, pack_nibbles
from workbench.kernels.formats.rows import AHEAD, QK, ROWS, group_rows, prefetch_bytes, q8_0_scratch
from workbench.kernels.isa.pairs import scales4
from workbench.kernels.isa.quads import _x_four, fma_quad_sums
from workbench.kernels.isa.vectors import (
    _concat,
    _const,
    _i8,
    _i16,
    _i32,
    _load,
    _pairwise_madd,
    _splat,
    _vt,
    fmaf,
    i32x16,
    load_f16,
    vsum,
    zeros_i32,
)
from workbench.kernels.isa.x86 import AVX2, VNNI, _dot4, _target_has, _x86, lane, zeros_f32x4
from workbench.kernels.jit import njit_parallel, njit_serial

GGML_TYPE = 20
BLOCK = 18
KVALUES = np.array([-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113], np.int8)
_KF = KVALUES.astype(np.float32)
GROUP_MAX_EPS = np.float32(1e-15)  # ggml: a block whose |x| stays below this gets d = 0


def dequantize(blocks: np.ndarray) -> np.ndarray:
    return f16_field(blocks, 0) * _KF[nibbles(blocks[:, 2:])]


def _best_index(v: np.ndarray) -> np.ndarray:
    """ggml's `best_index_int8`: the index of the table value nearest v, float32 compares
    (the upper one on a tie); 0 at or below K[0], 15 at or above K[15]."""
    mu = np.searchsorted(_KF, v, side="right").clip(1, 15)  # K[mu - 1] <= v < K[mu] inside
    lo, hi = _KF[mu - 1], _KF[mu]
    i = np.where(v - lo < hi - v, mu - 1, mu)
    return np.where(v <= _KF[0], 0, np.where(v >= _KF[15], 15, i)).astype(np.uint8)


def quantize(x: np.ndarray) -> np.ndarray:
    """ggml's `quantize_row_iq4_nl_ref` (no importance weights, no scale search: ntry = -1):
    quants for d0 = max / K[0], then d = the least-squares scale for those quants weighted
    by x^2, sums in float32 in element order as ggml (no fused multiply-adds). A block with
    every |x| < 1e-15 gets d = 0 and, as in ggml, the quants of the block before it (of
    this call; ggml leaves the first block's uninitialized, here 0)."""
    i = np.abs(x).argmax(axis=-1)[:, None]
    mx = np.take_along_axis(x, i, axis=-1)  # first largest magnitude, sign kept
    live = np.abs(mx[:, 0]) >= GROUP_MAX_EPS
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        L = _best_index(x * (np.float32(1) / (mx / _KF[0])))
        q, w = _KF[L], x * x
        sumqx, sumq2 = np.zeros(len(x), np.float32), np.zeros(len(x), np.float32)
        for j in range(QK):
            wq = w[:, j] * q[:, j]
            sumqx += wq * x[:, j]
            sumq2 += wq * q[:, j]
        d = np.where(live & (sumq2 > 0), sumqx / sumq2, np.float32(0)).astype(np.float32)
    last = np.maximum.accumulate(np.where(live, np.arange(len(x)), -1))  # stale quants of dead blocks
    L = np.where((last >= 0)[:, None], L[last.clip(0)], 0).astype(np.uint8)
    return np.concatenate([f16_bytes(d[:, None]), pack_nibbles(L)], axis=-1)


# ---- intrinsics: the table lookup and the block dots ------------------------------------

_PSHUFB = ((64, _target_has("avx512bw"), "llvm.x86.avx512.pshuf.b.512"),
           (32, AVX2, "llvm.x86.avx2.pshuf.b"),
           (16, _target_has("ssse3") or _target_has("avx"), "llvm.x86.ssse3.pshuf.b.128"))  # avx implies ssse3


def _lookup(builder, idx, table):
    """table[idx] for every byte of idx (values 0..15), table 16 ints taken as bytes."""
    n = idx.type.count
    for width, has, name in _PSHUFB:
        if has and n % width == 0:
            lut = _const(_i8, width, [v & 0xFF for v in table] * (width // 16))
            parts = [_x86(builder, name, _vt(_i8, width), [lut, builder.shuffle_vector(
                idx, idx, _const(_i32, width, list(range(k, k + width))))]) for k in range(0, n, width)]
            while len(parts) > 1:
                parts = [_concat(builder, parts[k], parts[k + 1]) for k in range(0, len(parts), 2)]
            return parts[0]
    values = [_const(_i8, n, v & 0xFF) for v in table]
    for bit in range(4):  # halve the candidates on each index bit, lowest first
        on = builder.icmp_unsigned("!=", builder.and_(idx, _const(_i8, n, 1 << bit)), _const(_i8, n, 0))
        values = [builder.select(on, values[k + 1], values[k]) for k in range(0, len(values), 2)]
    return values[0]


def _nibble_indices(builder, b):
    """n bytes -> two n-byte vectors: their low nibbles, their high nibbles."""
    n = b.type.count
    hi = builder.lshr(builder.bitcast(b, _vt(_i16, n // 2)), _const(_i16, n // 2, 4))  # word shift: masked
    mask = _const(_i8, n, 15)
    return builder.and_(b, mask), builder.and_(builder.bitcast(hi, _vt(_i8, n)), mask)


@intrinsic
def pdot_iq4nl(typingctx, w, wo, x, xo):
    """sum_{j<32} K[q_j] * x[xo+j], x int16, q_j nibble j of the 16 bytes at w[wo] (low
    nibbles j = 0..15, high ones 16..31); lanes sum to the exact dot."""
    def codegen(context, builder, sig, args):
        lo, hi = _nibble_indices(builder, _load(context, builder, sig.args[0], args[0], args[1], _i8, 16))
        k = _lookup(builder, _concat(builder, lo, hi), KVALUES.tolist())
        xv = _load(context, builder, sig.args[2], args[2], args[3], _i16, 32)
        return _pairwise_madd(builder, builder.sext(k, _vt(_i16, 32)), xv)
    return i32x16(w, types.intp, x, types.intp), codegen


@intrinsic
def dot4_quad_iq4nl(typingctx, acc, w, oa, ob, oc, od, x, xo, xsum):
    """acc + the block dots of rows A..D (16 nibble bytes at byte offsets oa..od) with the
    32 int8 x at flat xo, whose sum is xsum; lanes 4r..4r+3 hold row r's exact partial
    sums. With 512-bit VNNI the values are looked up biased by +128 and each row starts
    from -128 * xsum (`vpdpbusd` twice); elsewhere |K[q]| meets x carrying K[q]'s sign."""
    def codegen(context, builder, sig, args):
        acc_, w_, oa_, ob_, oc_, od_, x_, xo_, xs_ = args
        ld = lambda o: _load(context, builder, sig.args[1], w_, o, _i8, 16)  # noqa: E731
        n = _concat(builder, _concat(builder, ld(oa_), ld(ob_)), _concat(builder, ld(oc_), ld(od_)))
        xs = [_x_four(context, builder, sig.args[6], x_, xo_),
              _x_four(context, builder, sig.args[6], x_, builder.add(xo_, ir.Constant(xo_.type, 16)))]
        if VNNI:
            start = builder.mul(_splat(builder, builder.trunc(xs_, _i32)), _const(_i32, 16, [-128, 0, 0, 0] * 4))
            acc_ = builder.add(acc_, start)
            for idx, xv in zip(_nibble_indices(builder, n), xs):
                acc_ = _dot4(builder, acc_, _lookup(builder, idx, (KVALUES.astype(np.int32) + 128).tolist()), xv)
            return acc_
        zero = _const(_i8, 64, 0)
        for idx, xv in zip(_nibble_indices(builder, n), xs):
            k = _lookup(builder, idx, KVALUES.tolist())
            neg = builder.icmp_signed("<", k, zero)
            aq = builder.select(neg, builder.sub(zero, k), k)
            acc_ = _dot4(builder, acc_, aq, builder.select(neg, builder.sub(zero, xv), xv), small=True)
        return acc_
    sig = i32x16(i32x16, w, types.intp, types.intp, types.intp, types.intp, x, types.intp, types.int32)
    return sig, codegen


if numba.config.DISABLE_JIT:  # numpy twins of the two intrinsics, to step through kernels
    from workbench.kernels.isa.numpy_twins import _flat, _pairs

    def _values(w, o):
        return KVALUES[nibbles(_flat(w, o, 16, np.uint8)[None])[0]].astype(np.int64)

    def pdot_iq4nl(w, wo, x, xo):
        return _pairs(_values(w, wo), _flat(x, xo, 32, np.int32))

    def dot4_quad_iq4nl(acc, w, oa, ob, oc, od, x, xo, xsum):
        k = np.stack([_values(w, o) for o in (oa, ob, oc, od)])
        return (acc + (k * _flat(x, xo, 32, np.int64)).reshape(16, 8).sum(1)).astype(np.int32)


# ---- kernels ------------------------------------------------------------------------------


@njit_serial
def get_rows(out, w, ids):
    for t in range(ids.shape[0]):
        row = w[ids[t]]
        for b in range(out.shape[1] // QK):
            d = load_f16(row, BLOCK * b)
            for j in range(16):
                q = row[BLOCK * b + 2 + j]
                out[t, QK * b + j] = d * np.float32(KVALUES[q & 15])
                out[t, QK * b + 16 + j] = d * np.float32(KVALUES[q >> 4])


def _one_row(out, w, x, i8, i32, f32):
    # W (rows, nb*18) @ x (T, cols) -> out (T, rows)
    T, cols = x.shape
    nb = cols // QK
    xq = np.empty((T, cols), np.int16)
    xd = np.empty((T, nb), np.float32)
    xs = np.empty((T, nb), np.int32)
    quantize_rows_q8_0(x, xq, xd, xs)
    for r in prange(w.shape[0]):
        row = w[r]
        for t in range(T):
            acc = np.float32(0)
            for b in range(nb):
                o = b * BLOCK
                sumi = vsum(pdot_iq4nl(row, o + 2, xq, t * cols + b * QK))
                acc = fmaf(np.float32(sumi), load_f16(row, o) * xd[t, b], acc)
            out[t, r] = acc


def _row_groups(out, w, x, i8, i32, f32):
    # W (rows, nb*18) @ x (T, cols) -> out (T, rows), four rows per pass
    T, cols = x.shape
    nb, rb, last = cols // QK, w.shape[1], w.shape[0] - 1
    xq, xd, xs = q8_0_scratch(T, cols, i8, i32, f32)
    quantize_rows_q8_0(x, xq, xd, xs)
    for g in prange((last + ROWS) // ROWS):
        r0, r1, r2, r3 = group_rows(g, last)
        a, b, c, d = r0 * rb, r1 * rb, r2 * rb, r3 * rb
        for t in range(T):
            acc = zeros_f32x4()
            for k in range(nb):
                o = k * BLOCK
                prefetch_bytes(w, a + AHEAD + k * ROWS * BLOCK, ROWS * BLOCK)
                xo = t * cols + k * QK
                p = dot4_quad_iq4nl(zeros_i32(), w, a + o + 2, b + o + 2, c + o + 2, d + o + 2, xq, xo, xs[t, k])
                s = scales4(w, a + o, b + o, c + o, d + o, xd[t, k])
                acc = fma_quad_sums(acc, p, 0, s)
            out[t, r0], out[t, r1] = lane(acc, 0), lane(acc, 1)
            out[t, r2], out[t, r3] = lane(acc, 2), lane(acc, 3)


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
    "iq4_nl", GGML_TYPE, QK, BLOCK, "q8_0", dequantize, quantize, (0,), get_rows, matvec_into,
    variants=(
        Variant("one_row", one_row, one_row_serial, "one row per pass, x widened to int16", reference=True),
        Variant("row_groups", row_groups, row_groups_serial, "four rows of 4 lanes in one register"),
    ),
    # AMD EPYC Zen 4, 2048 x 2048 at 1 thread, best of 20 (machine shared): one_row 323 us,
    # row_groups 140 us; compiled for Haswell (AVX2) 314 / 197 us; for Ivy Bridge (no AVX2)
    # 411 / 1248 us, so there one row per pass wins
    prefer=(("row_groups", ("avx512vnni", "avx512bw", "avx512vl")), ("row_groups", ("avx2",))),
)
