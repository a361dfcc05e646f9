"""Row octets: eight q4_0 rows, one int32 lane each (AVX2, as llama.cpp's repacked gemv)."""

import numba
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from workbench.kernels.isa.vectors import _concat, _const, _f32, _fma, _i8, _i16, _i32, _load, _splat, _Vector, _vt
from workbench.kernels.isa.x86 import AVX2, _madd_ones, _x86, f32x8

# ---- row octets: eight rows, one int32 lane each ----------------------------------------
# For q4_0 as llama.cpp's AVX2 `ggml_gemv_q4_0_8x8_q8_0`, without repacking the weights:
# bytes 0..7 (or 8..15) of four rows side by side in one 256-bit register (row r in bytes
# 8r..8r+7), so that after `vpmaddubsw` each row's products sit in four int16 words, and
# `vphaddw` of the rows 0..3 and rows 4..7 registers then `vpmaddwd` with ones leave the
# eight rows' block sums in one register, in the lane order OCT (lane i holds row OCT[i]
# of the group). The block scales are gathered in that order, so that no per-block
# shuffle moves the sums. Row starts come as an 8-tuple of byte offsets, the group's rows
# in order.

i32x8 = _Vector("i32x8", _i32, 8)
OCT = (0, 1, 4, 5, 2, 3, 6, 7)  # the row of each lane of `dot_oct` / `scales_oct`


def _octet(builder, starts):
    return [builder.extract_value(starts, i) for i in range(8)]


def _x_eighths(context, builder, xty, x, xo):
    """32 int8 of x at flat xo as four registers: bytes 8c..8c+7 in all four 64-bit lanes."""
    i64 = ir.IntType(64)
    parts = []
    for c in range(4):
        v = _load(context, builder, xty, x, builder.add(xo, ir.Constant(xo.type, 8 * c)), i64)
        parts.append(builder.bitcast(_splat(builder, v, 4), _vt(_i8, 32)))
    return parts


def _quad_nibbles(builder, a, b, c, d):
    """16 nibble bytes of rows A..D -> [low, high nibbles of bytes 0..7, low, high of
    bytes 8..15], each 32 u8 with row r in bytes 8r..8r+7 (`vinserti128`, `vpunpck[lh]qdq`)."""
    ac, bd = _concat(builder, a, c), _concat(builder, b, d)
    first = [*range(8), *range(32, 40), *range(16, 24), *range(48, 56)]
    q = []
    for half in (first, [k + 8 for k in first]):
        v = builder.shuffle_vector(ac, bd, _const(_i32, 32, half))
        hi = builder.lshr(builder.bitcast(v, _vt(_i16, 16)), _const(_i16, 16, 4))  # word shift: masked below
        q += [builder.and_(v, _const(_i8, 32, 15)),
              builder.and_(builder.bitcast(hi, _vt(_i8, 32)), _const(_i8, 32, 15))]
    return q


@intrinsic
def dot_oct(typingctx, w, starts, o, x, xo):
    """The 8 rows' q4_0 block dots sum_j q_j x_j (q_j the unsigned nibbles of the 16 bytes
    at starts[r] + o: low nibbles values 0..15, high ones 16..31; x 32 int8 at flat xo),
    exact, row OCT[i] in lane i. Bytes 0..7 of a row pair with x 0..7 (low nibbles) and
    x 16..23 (high), bytes 8..15 with x 8..15 and x 24..31."""
    if not (isinstance(starts, types.UniTuple) and starts.count == 8 and x.dtype == types.int8):
        return None
    def codegen(context, builder, sig, args):
        w_, st_, o_, x_, xo_ = args
        ld = lambda s: _load(context, builder, sig.args[0], w_, builder.add(s, o_), _i8, 16)  # noqa: E731
        rows = [ld(s) for s in _octet(builder, st_)]
        xe = _x_eighths(context, builder, sig.args[3], x_, xo_)
        sums = []
        for quad in (rows[:4], rows[4:]):
            lo0, hi0, lo8, hi8 = _quad_nibbles(builder, *quad)
            pairs = [(lo0, xe[0]), (lo8, xe[1]), (hi0, xe[2]), (hi8, xe[3])]
            if AVX2:  # a word: 4 pair sums, |.| <= 4 * 2 * 15 * 128 = 15360; two add up exactly
                m = [_x86(builder, "llvm.x86.avx2.pmadd.ub.sw", _vt(_i16, 16), [a, b]) for a, b in pairs]
            else:
                m = [builder.mul(builder.zext(a, _vt(_i32, 32)), builder.sext(b, _vt(_i32, 32))) for a, b in pairs]
            sums.append(builder.add(builder.add(m[0], m[1]), builder.add(m[2], m[3])))
        if AVX2:  # words [r0 r0 r1 r1 r4 r4 r5 r5 | r2 r2 r3 r3 r6 r6 r7 r7] -> OCT
            return _madd_ones(builder, _x86(builder, "llvm.x86.avx2.phadd.w", _vt(_i16, 16), sums))
        v = _concat(builder, *sums)  # row r in lanes 8r..8r+7
        parts = [builder.shuffle_vector(v, v, _const(_i32, 8, [8 * r + j for r in OCT])) for j in range(8)]
        while len(parts) > 1:
            parts = [builder.add(parts[k], parts[k + 1]) for k in range(0, len(parts), 2)]
        return parts[0]
    return i32x8(w, starts, types.intp, x, types.intp), codegen


@intrinsic
def scales_oct(typingctx, w, starts, o, dx):
    """The fp16 block scales at starts[r] + o times dx, row OCT[i] in lane i, each lane
    rounded as the scalar float32(d) * dx. The eight fp16 are packed in two 64-bit
    general registers (shifts and ors) and moved over: inserting them one by one into a
    vector took 15 shuffles per block, on the ports the block dots need."""
    if not (isinstance(starts, types.UniTuple) and starts.count == 8):
        return None
    def codegen(context, builder, sig, args):
        w_, st_, o_, dx_ = args
        st, i64 = _octet(builder, st_), ir.IntType(64)
        packed = ir.Constant(_vt(i64, 2), None)
        for h in (0, 1):
            word = ir.Constant(i64, 0)
            for j, r in enumerate(OCT[4 * h : 4 * h + 4]):
                d = builder.zext(_load(context, builder, sig.args[0], w_, builder.add(st[r], o_), _i16), i64)
                word = builder.or_(word, builder.shl(d, ir.Constant(i64, 16 * j)))
            packed = builder.insert_element(packed, word, ir.Constant(_i32, h))
        v = builder.fpext(builder.bitcast(packed, _vt(ir.HalfType(), 8)), _vt(_f32, 8))
        return builder.fmul(v, _splat(builder, dx_, 8))
    return f32x8(w, starts, types.intp, types.float32), codegen


@intrinsic
def fma_oct(typingctx, acc, p, offset, s):
    """acc + s * float(p - offset) lane by lane, fused: eight scalar chains
    `acc = fmaf(sumi, d, acc)` side by side."""
    def codegen(context, builder, sig, args):
        acc_, p_, off_, s_ = args
        sums = builder.sub(p_, _splat(builder, builder.trunc(off_, _i32), 8))
        return _fma(builder, s_, builder.sitofp(sums, _vt(_f32, 8)), acc_)
    return f32x8(f32x8, i32x8, types.int64, f32x8), codegen


if numba.config.DISABLE_JIT:  # numpy twins of the same names, to step through kernels
    from workbench.kernels.isa.numpy_twins import (  # noqa: F401, F811, E402
        OCT,
        dot_oct,
        fma_oct,
        scales_oct,
    )
