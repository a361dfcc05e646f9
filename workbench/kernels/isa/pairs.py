"""Row pairs: two weight rows in one 16-lane register, four rows per pass over x."""

import numba
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from workbench.kernels.isa.vectors import (
    _concat,
    _const,
    _f32,
    _fma,
    _i8,
    _i16,
    _i32,
    _load,
    _splat,
    _vt,
    f32x16,
    i32x16,
)
from workbench.kernels.isa.x86 import (
    _dot4,
    _dpwssd,
    _gather,
    _maddubs,
    _nibbles_pair,
    _permute_words,
    _row_sums,
    _spread,
    _x_twice,
    f32x4,
    f32x8,
    i16x32,
    u8x64,
)

# # The decode kernels compute several weight rows per pass over x, so that each block of
# x is loaded once for all of them and the rows' independent chains hide each other's
# latency. A "pair" register holds two rows: lanes 0..7 row A, lanes 8..15 row B, each
# half exactly llama.cpp's 8 AVX2 lanes for its row (the same integers, the same fused
# multiply-adds in the same order), so the halves never mix until `hsum_lo` / `hsum_hi`
# reduce each as `hsum_float_8`. A row's arithmetic is the same whichever group it is in.
# Block dots take the quants of both rows as 64 unsigned bytes (u8x64) and one block of
# x as int8, copied into both halves:
#   dot4_pair        lane k of a half += sum of products 4k..4k+3 (`vpdpbusd`)
#   dot_scaled_pair  the same with int16 sub-block scales applied (`vpmaddubsw`, `vpdpwssd`)
# Integer sums are exact, so how they are formed is free; where the weights are signed
# (q8_0) they are biased by +128 to be unsigned and the caller starts the dot from
# -128 * (each 4 x values' sum), and q5_0's -16 offset goes the same way.
# With 512-bit VNNI (`VNNI`, decided for the CPU numba compiles for) these are single
# instructions; elsewhere the same integers come from plain widening vector arithmetic.
# Scales of a row group are gathered once per block into one vector (`scales_quad`, ...)
# and converted and multiplied there, each lane rounded as the scalar product it stands
# for. f32x8 / f32x4 hold per-row scalar chains side by side (q4_1's min term; q4_0 and
# q4_K's one fused multiply-add per block), again lane for lane the scalar arithmetic.

@intrinsic
def q8_pair(typingctx, w, oa, ob):
    """q8_0 quants of rows A and B (32 int8 at byte offsets oa, ob) as u8 = q + 128."""
    def codegen(context, builder, sig, args):
        a = _load(context, builder, sig.args[0], args[0], args[1], _i8, 32)
        b = _load(context, builder, sig.args[0], args[0], args[2], _i8, 32)
        return builder.xor(_concat(builder, a, b), _const(_i8, 64, 0x80))
    return u8x64(w, types.intp, types.intp), codegen


@intrinsic
def q4_pair(typingctx, w, oa, ob):
    """q4_0 / q4_1 quants 0..15 of rows A and B from 16 bytes at oa, ob: each row's low
    nibbles (values 0..15 of its block), then its high nibbles (16..31)."""
    def codegen(context, builder, sig, args):
        return _nibbles_pair(context, builder, sig.args[0], *args)
    return u8x64(w, types.intp, types.intp), codegen


@intrinsic
def q5_pair(typingctx, w, oa, ob, qha, qhb):
    """q5_0 quants 0..31 of rows A and B: `q4_pair` | (bit j of the row's qh) << 4."""
    def codegen(context, builder, sig, args):
        i64 = ir.IntType(64)
        q = _nibbles_pair(context, builder, sig.args[0], *args[:3])
        qh_b = builder.shl(builder.zext(args[4], i64), ir.Constant(i64, 32))
        qh = builder.or_(builder.zext(args[3], i64), qh_b)
        high = builder.zext(builder.bitcast(qh, _vt(ir.IntType(1), 64)), _vt(_i8, 64))
        return builder.or_(q, builder.shl(high, _const(_i8, 64, 4)))
    return u8x64(w, types.intp, types.intp, types.uint32, types.uint32), codegen


@intrinsic
def nibbles_pair(typingctx, w, oa, ob, shift):
    """q4_K sub-block of rows A and B: (32 bytes at oa | 32 at ob) >> shift & 15, shift 0 or 4."""
    def codegen(context, builder, sig, args):
        a = _load(context, builder, sig.args[0], args[0], args[1], _i8, 32)
        b = _load(context, builder, sig.args[0], args[0], args[2], _i8, 32)
        v = builder.lshr(_concat(builder, a, b), _splat(builder, builder.trunc(args[3], _i8), 64))
        return builder.and_(v, _const(_i8, 64, 15))
    return u8x64(w, types.intp, types.intp, types.intp), codegen


@intrinsic
def q6_pair(typingctx, w, la, lb, ls, ha, hb, hs):
    """q6_K values 0..63 of a 32-value group of rows A and B: ((w[l+j] >> ls) & 15) |
    ((w[h+j] >> hs) & 3) << 4 with l, h = la, ha for row A and lb, hb for row B."""
    def codegen(context, builder, sig, args):
        w_, la_, lb_, ls_, ha_, hb_, hs_ = args
        ld = lambda o: _load(context, builder, sig.args[0], w_, o, _i8, 32)  # noqa: E731
        by = lambda s: _splat(builder, builder.trunc(s, _i8), 64)  # noqa: E731
        lo = builder.and_(builder.lshr(_concat(builder, ld(la_), ld(lb_)), by(ls_)), _const(_i8, 64, 15))
        hi = builder.and_(builder.lshr(_concat(builder, ld(ha_), ld(hb_)), by(hs_)), _const(_i8, 64, 3))
        return builder.or_(lo, builder.shl(hi, _const(_i8, 64, 4)))
    return u8x64(w, types.intp, types.intp, types.intp, types.intp, types.intp, types.intp), codegen


@intrinsic
def dot4_pair(typingctx, acc, q, x, xo):
    """acc + the block dot of q (rows A, B) with 32 int8 x at flat xo: lane k of each half
    adds the exact sum of its row's products 4k..4k+3."""
    def codegen(context, builder, sig, args):
        acc_, q_, x_, xo_ = args
        return _dot4(builder, acc_, q_, _x_twice(context, builder, sig.args[2], x_, xo_))
    return i32x16(i32x16, u8x64, x, types.intp), codegen


@intrinsic
def dot4_pair_small(typingctx, acc, q, x, xo):
    """`dot4_pair` for weights q <= 127 (4- and 5-bit quants), which on AVX2 without VNNI
    may take the faster `vpmaddubsw` path; the same exact sums."""
    def codegen(context, builder, sig, args):
        acc_, q_, x_, xo_ = args
        return _dot4(builder, acc_, q_, _x_twice(context, builder, sig.args[2], x_, xo_), small=True)
    return i32x16(i32x16, u8x64, x, types.intp), codegen


@intrinsic
def dot4_pair_signed(typingctx, acc, qb, x, xo):
    """acc + the block dot of signed q8_0 weights qb - 128 (qb as `q8_pair` gives them)
    with 32 int8 x at flat xo, lane k of each half its row's products 4k..4k+3: llama.cpp's
    AVX2 sign trick, |q| as unsigned times x carrying q's sign, so that `vpmaddubsw` stays
    exact (|pair sum| <= 2 * 128 * 127 < 2^15; x is never -128)."""
    def codegen(context, builder, sig, args):
        acc_, qb_, x_, xo_ = args
        xx = _x_twice(context, builder, sig.args[2], x_, xo_)
        q = builder.xor(qb_, _const(_i8, 64, 128))
        neg = builder.icmp_signed("<", q, _const(_i8, 64, 0))
        aq = builder.select(neg, builder.sub(_const(_i8, 64, 0), q), q)
        sx = builder.select(neg, builder.sub(_const(_i8, 64, 0), xx), xx)
        return _dot4(builder, acc_, aq, sx, small=True)
    return i32x16(i32x16, u8x64, x, types.intp), codegen


@intrinsic
def dot_scaled_pair(typingctx, acc, q, x, xo, s):
    """acc + scaled block dot: lane k of each half adds s[2k] * (products 4k, 4k+1) +
    s[2k+1] * (products 4k+2, 4k+3), x = 32 int8 at flat xo, s int16 words (rows A, B)."""
    def codegen(context, builder, sig, args):
        acc_, q_, x_, xo_, s_ = args
        pairs = _maddubs(builder, q_, _x_twice(context, builder, sig.args[2], x_, xo_))
        return _dpwssd(builder, acc_, pairs, s_)
    return i32x16(i32x16, u8x64, x, types.intp, i16x32), codegen


@intrinsic
def load_i32x8_twice(typingctx, a, o):
    """8 int32 at flat offset o of `a` in both halves: a per-block term of x for two rows."""
    def codegen(context, builder, sig, args):
        v = _load(context, builder, sig.args[0], args[0], args[1], _i32, 8)
        return _concat(builder, v, v)
    return i32x16(a, types.intp), codegen


@intrinsic
def scales_pair(typingctx, w, oa, ob, dx):
    """fp16 at byte oa of w, times dx, in lanes 0..7; the fp16 at ob times dx in 8..15."""
    def codegen(context, builder, sig, args):
        v = _gather(context, builder, sig.args[0], args[0], args[1:3], ir.HalfType())
        v = builder.fmul(builder.fpext(v, _vt(_f32, 2)), _splat(builder, args[3], 2))
        return _spread(builder, v, 0, 1)
    return f32x16(w, types.intp, types.intp, types.float32), codegen


@intrinsic
def scales4(typingctx, w, oa, ob, oc, od, dx):
    """[fp16 at byte oa, ob, oc, od of w] * dx."""
    def codegen(context, builder, sig, args):
        v = _gather(context, builder, sig.args[0], args[0], args[1:5], ir.HalfType())
        return builder.fmul(builder.fpext(v, _vt(_f32, 4)), _splat(builder, args[5], 4))
    return f32x4(w, types.intp, types.intp, types.intp, types.intp, types.float32), codegen


@intrinsic
def scales_quad(typingctx, w, oa, ob, oc, od, dx):
    """The fp16 block scales of rows A..D (byte offsets oa..od) times dx, as the pair
    registers (A | B) and (C | D)."""
    def codegen(context, builder, sig, args):
        v = _gather(context, builder, sig.args[0], args[0], args[1:5], ir.HalfType())
        v = builder.fmul(builder.fpext(v, _vt(_f32, 4)), _splat(builder, args[5], 4))
        pairs = [_spread(builder, v, 0, 1), _spread(builder, v, 2, 3)]
        return context.make_tuple(builder, sig.return_type, pairs)
    sig = types.UniTuple(f32x16, 2)(w, types.intp, types.intp, types.intp, types.intp, types.float32)
    return sig, codegen


@intrinsic
def scales_mins_quad(typingctx, w, oa, ob, oc, od, dx, sx):
    """q4_1's fp16 (d, m) at byte offsets oa..od of rows A..D: d * dx as the pair
    registers (A | B), (C | D), and f32x8 [d_A dx, m_A sx, d_B dx, m_B sx, ...]
    whose odd lanes are the rows' min terms m * s."""
    def codegen(context, builder, sig, args):
        v = _gather(context, builder, sig.args[0], args[0], args[1:5], _i32)
        v = builder.fpext(builder.bitcast(v, _vt(ir.HalfType(), 8)), _vt(_f32, 8))
        ds = builder.insert_element(ir.Constant(_vt(_f32, 2), None), args[5], ir.Constant(_i32, 0))
        ds = builder.insert_element(ds, args[6], ir.Constant(_i32, 1))
        v = builder.fmul(v, builder.shuffle_vector(ds, ds, _const(_i32, 8, [0, 1] * 4)))
        parts = [_spread(builder, v, 0, 2), _spread(builder, v, 4, 6), v]
        return context.make_tuple(builder, sig.return_type, parts)
    sig = types.Tuple([f32x16, f32x16, f32x8])(w, types.intp, types.intp, types.intp, types.intp,
                                                types.float32, types.float32)
    return sig, codegen


@intrinsic
def fma_pair(typingctx, acc, s, p):
    """acc + s * float(p) lane by lane, fused (`_mm256_fmadd_ps(d, q, acc)` of each row)."""
    def codegen(context, builder, sig, args):
        acc_, s_, p_ = args
        return _fma(builder, s_, builder.sitofp(p_, _vt(_f32)), acc_)
    return f32x16(f32x16, f32x16, i32x16), codegen


@intrinsic
def fma_row_sums(typingctx, acc, ab, cd, offset, s):
    """acc + s * float(row sum - offset), fused, for rows [A, B, C, D] of the int32 pair
    registers ab, cd: four scalar chains `acc = fmaf(sumi, d, acc)` side by side."""
    def codegen(context, builder, sig, args):
        acc_, ab_, cd_, off_, s_ = args
        sums = builder.sub(_row_sums(builder, ab_, cd_), _splat(builder, builder.trunc(off_, _i32), 4))
        return _fma(builder, s_, builder.sitofp(sums, _vt(_f32, 4)), acc_)
    return f32x4(f32x4, i32x16, i32x16, types.int64, f32x4), codegen


@intrinsic
def scales_mins_k4_pair(typingctx, w, oa, ob):
    """The 6-bit scales and mins of a q4_K super-block of rows A and B (12 bytes at oa,
    ob): scales as int16 words 0..7 (A) and 8..15 (B), for `pick_k4`; mins as int32 lanes
    0..7 (A) and 8..15 (B). Sub-blocks 0..3 keep the low 6 bits of bytes 0..3 (scales)
    and 4..7 (mins); 4..7 take 4 bits from bytes 8..11 and 2 from bits 6..7 of 0..7."""
    def codegen(context, builder, sig, args):
        va = _load(context, builder, sig.args[0], args[0], args[1], _i32, 4)
        vb = _load(context, builder, sig.args[0], args[0], args[2], _i32, 4)
        a, b, c = (builder.shuffle_vector(va, vb, _const(_i32, 2, [k, 4 + k])) for k in range(3))
        k = lambda v: _const(_i32, 2, v)  # noqa: E731
        top2 = lambda v: builder.shl(builder.and_(builder.lshr(v, k(6)), k(0x03030303)), k(4))  # noqa: E731
        sc_lo, mn_lo = builder.and_(a, k(0x3F3F3F3F)), builder.and_(b, k(0x3F3F3F3F))
        sc_hi = builder.or_(builder.and_(c, k(0x0F0F0F0F)), top2(a))
        mn_hi = builder.or_(builder.and_(builder.lshr(c, k(4)), k(0x0F0F0F0F)), top2(b))
        rows = lambda lo, hi: builder.bitcast(  # noqa: E731  [lo A, hi A, lo B, hi B] as bytes
            builder.shuffle_vector(lo, hi, _const(_i32, 4, [0, 2, 1, 3])), _vt(_i8, 16))
        sc = builder.zext(rows(sc_lo, sc_hi), _vt(_i16, 16))
        mn = builder.zext(rows(mn_lo, mn_hi), _vt(_i32, 16))
        return context.make_tuple(builder, sig.return_type, [_concat(builder, sc, sc), mn])
    return types.Tuple([i16x32, i32x16])(w, types.intp, types.intp), codegen


@intrinsic
def pick_k4(typingctx, s, j):
    """Scale j of row A in words 0..15 and of row B in words 16..31 (s from
    `scales_mins_k4_pair`)."""
    def codegen(context, builder, sig, args):
        return _permute_words(builder, args[0], builder.trunc(args[1], _i32), [0] * 16 + [8] * 16)
    return i16x32(i16x32, types.intp), codegen


@intrinsic
def mins_pair(typingctx, mins, bsums, bo):
    """mins * (bsums[bo+2j] + bsums[bo+2j+1]) in lane j and 8 + j: q4_K's min terms of
    rows A and B, summed per row by `fma_row_sums`."""
    def codegen(context, builder, sig, args):
        bs = _load(context, builder, sig.args[1], args[1], args[2], _i32, 16)
        even = builder.shuffle_vector(bs, bs, _const(_i32, 16, list(range(0, 16, 2)) * 2))
        odd = builder.shuffle_vector(bs, bs, _const(_i32, 16, list(range(1, 16, 2)) * 2))
        return builder.mul(args[0], builder.add(even, odd))
    return i32x16(i32x16, bsums, types.intp), codegen


@intrinsic
def scales_q6_pair(typingctx, w, sa, sb):
    """The 16 int8 q6_K scales at byte sa (row A) and sb (row B) as int16 words 0..15, 16..31."""
    def codegen(context, builder, sig, args):
        a = _load(context, builder, sig.args[0], args[0], args[1], _i8, 16)
        b = _load(context, builder, sig.args[0], args[0], args[2], _i8, 16)
        return builder.sext(_concat(builder, a, b), _vt(_i16, 32))
    return i16x32(w, types.intp, types.intp), codegen


@intrinsic
def pick_q6(typingctx, s, g):
    """Words: scale g of row A x8, g+1 of A x8, g of B x8, g+1 of B x8 (a 32-value
    group's two scales per row, as llama.cpp's `get_scale_shuffle`)."""
    def codegen(context, builder, sig, args):
        return _permute_words(builder, args[0], builder.trunc(args[1], _i32),
                              [0] * 8 + [1] * 8 + [16] * 8 + [17] * 8)
    return i16x32(i16x32, types.intp), codegen


@intrinsic
def q6_offsets_pair(typingctx, bsums, bo, w, sa, sb):
    """q6_K's -32 offset of rows A and B: lane k of each half = 32 * (bsums[bo+2k] sc[2k]
    + bsums[bo+2k+1] sc[2k+1]), sc the row's 16 int8 scales at byte sa (A) or sb (B)."""
    def codegen(context, builder, sig, args):
        bs_, bo_, w_, sa_, sb_ = args
        bs = _load(context, builder, sig.args[0], bs_, bo_, _i32, 16)
        halves = []
        for o in (sa_, sb_):
            sc = builder.sext(_load(context, builder, sig.args[2], w_, o, _i8, 16), _vt(_i32, 16))
            p = builder.mul(bs, sc)
            even = builder.shuffle_vector(p, p, _const(_i32, 8, list(range(0, 16, 2))))
            odd = builder.shuffle_vector(p, p, _const(_i32, 8, list(range(1, 16, 2))))
            halves.append(builder.shl(builder.add(even, odd), _const(_i32, 8, 5)))
        return _concat(builder, *halves)
    return i32x16(bsums, types.intp, w, types.intp, types.intp), codegen


if numba.config.DISABLE_JIT:  # numpy twins of the same names, to step through kernels
    from workbench.kernels.isa.numpy_twins import (  # noqa: F401, F811, E402
        dot4_pair,
        dot4_pair_signed,
        dot4_pair_small,
        dot_scaled_pair,
        fma_pair,
        fma_row_sums,
        load_i32x8_twice,
        mins_pair,
        nibbles_pair,
        pick_k4,
        pick_q6,
        q4_pair,
        q5_pair,
        q6_offsets_pair,
        q6_pair,
        q8_pair,
        scales4,
        scales_mins_k4_pair,
        scales_mins_quad,
        scales_pair,
        scales_q6_pair,
        scales_quad,
    )
