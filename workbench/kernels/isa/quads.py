"""Row quads: four q4_0 rows of four lanes each in one 16-lane register."""

import numba
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from workbench.kernels.isa.vectors import _concat, _const, _f32, _fma, _i8, _i16, _i32, _load, _splat, _vt, i32x16
from workbench.kernels.isa.x86 import _dot4, f32x4, u8x64

# ---- row quads: four rows per 16-lane register -------------------------------------------
# For q4_0, whose rows add one exact integer per block (llama.cpp's repacked gemv), the
# 16 lanes hold four rows of 4 lanes each (row r in lanes 4r..4r+3): one load of the four
# rows' 16 nibble bytes, and a per-block reduction to [A, B, C, D] of two shuffles, where
# two pair registers take three.


def _x_four(context, builder, xty, x, xo):
    """16 int8 of x at flat xo, in all four 128-bit lanes."""
    v = _load(context, builder, xty, x, xo, _i8, 16)
    return builder.shuffle_vector(v, v, _const(_i32, 64, list(range(16)) * 4))


@intrinsic
def dot4_quad(typingctx, acc, w, oa, ob, oc, od, x, xo):
    """acc + the block dots of rows A..D (16 nibble bytes at byte offsets oa..od: values
    0..15 low nibbles, 16..31 high) with 32 int8 x at flat xo; lanes 4r..4r+3 hold row r's
    exact partial sums (`vpdpbusd` twice)."""
    def codegen(context, builder, sig, args):
        acc_, w_, oa_, ob_, oc_, od_, x_, xo_ = args
        ld = lambda o: _load(context, builder, sig.args[1], w_, o, _i8, 16)  # noqa: E731
        n = _concat(builder, _concat(builder, ld(oa_), ld(ob_)), _concat(builder, ld(oc_), ld(od_)))
        lo = builder.and_(n, _const(_i8, 64, 15))
        hi = builder.lshr(builder.bitcast(n, _vt(_i16, 32)), _const(_i16, 32, 4))  # word shift: masked below
        hi = builder.and_(builder.bitcast(hi, _vt(_i8, 64)), _const(_i8, 64, 15))
        acc_ = _dot4(builder, acc_, lo, _x_four(context, builder, sig.args[6], x_, xo_), small=True)
        xo16 = builder.add(xo_, ir.Constant(xo_.type, 16))
        return _dot4(builder, acc_, hi, _x_four(context, builder, sig.args[6], x_, xo16), small=True)
    return i32x16(i32x16, w, types.intp, types.intp, types.intp, types.intp, x, types.intp), codegen


@intrinsic
def nibbles_quad(typingctx, w, oa, ob, oc, od):
    """The nibbles of rows A..D (16 bytes at byte offsets oa..od) as `dot4_quad` takes
    them: (low nibbles, high nibbles), u8x64 each, row r in bytes 16r..16r+15; unpacked
    once, for the dots of several tokens (`dot4_quad_nibbles`)."""
    def codegen(context, builder, sig, args):
        w_, oa_, ob_, oc_, od_ = args
        ld = lambda o: _load(context, builder, sig.args[0], w_, o, _i8, 16)  # noqa: E731
        n = _concat(builder, _concat(builder, ld(oa_), ld(ob_)), _concat(builder, ld(oc_), ld(od_)))
        lo = builder.and_(n, _const(_i8, 64, 15))
        hi = builder.lshr(builder.bitcast(n, _vt(_i16, 32)), _const(_i16, 32, 4))  # word shift: masked below
        hi = builder.and_(builder.bitcast(hi, _vt(_i8, 64)), _const(_i8, 64, 15))
        return context.make_tuple(builder, sig.return_type, [lo, hi])
    return types.UniTuple(u8x64, 2)(w, types.intp, types.intp, types.intp, types.intp), codegen


@intrinsic
def dot4_quad_nibbles(typingctx, acc, lo, hi, x, xo):
    """`dot4_quad` from `nibbles_quad`'s (lo, hi): the same exact partial sums."""
    def codegen(context, builder, sig, args):
        acc_, lo_, hi_, x_, xo_ = args
        acc_ = _dot4(builder, acc_, lo_, _x_four(context, builder, sig.args[3], x_, xo_), small=True)
        xo16 = builder.add(xo_, ir.Constant(xo_.type, 16))
        return _dot4(builder, acc_, hi_, _x_four(context, builder, sig.args[3], x_, xo16), small=True)
    return i32x16(i32x16, u8x64, u8x64, x, types.intp), codegen


@intrinsic
def fma_quad_sums(typingctx, acc, p, offset, s):
    """acc + s * float(row sum - offset), fused, rows [A, B, C, D] of a `dot4_quad`
    register: four scalar chains `acc = fmaf(sumi, d, acc)` side by side."""
    def codegen(context, builder, sig, args):
        acc_, p_, off_, s_ = args
        v = builder.add(p_, builder.shuffle_vector(p_, p_, _const(_i32, 16, [k ^ 2 for k in range(16)])))
        v = builder.add(v, builder.shuffle_vector(v, v, _const(_i32, 16, [k ^ 1 for k in range(16)])))
        sums = builder.shuffle_vector(v, v, _const(_i32, 4, [0, 4, 8, 12]))
        sums = builder.sub(sums, _splat(builder, builder.trunc(off_, _i32), 4))
        return _fma(builder, s_, builder.sitofp(sums, _vt(_f32, 4)), acc_)
    return f32x4(f32x4, i32x16, types.int64, f32x4), codegen


if numba.config.DISABLE_JIT:  # numpy twins of the same names, to step through kernels
    from workbench.kernels.isa.numpy_twins import (  # noqa: F401, F811, E402
        dot4_quad,
        dot4_quad_nibbles,
        fma_quad_sums,
        nibbles_quad,
    )
