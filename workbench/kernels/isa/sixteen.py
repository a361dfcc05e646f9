"""Sixteen rows in sixteen lanes: block dots on weights repacked so that no sum crosses lanes.

For a layout where each block's bytes come as four 64-byte chunks, chunk c holding bytes
4c..4c+3 of sixteen rows side by side (`formats.q4_0_rows16`), one `vpdpbusd` against
four bytes of x broadcast to every lane adds four products of each row into that row's
own lane. Eight of them make a block's exact integer dot for sixteen rows at once, with
no horizontal reduction, and the scales of the sixteen rows are sixteen consecutive
f16: one load, one conversion. With AVX2 the same dots lower to `vpmaddubsw` +
`vpmaddwd` on two 256-bit halves (`x86._dot4`), the same integers.
"""

import numba
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from workbench.kernels.isa.vectors import _f16, _f32, _fma, _i8, _i16, _i32, _const, _load, _splat, _vt, f32x16, i32x16
from workbench.kernels.isa.x86 import _dot4, u8x64

CHUNKS = 4  # 64-byte chunks of nibbles per block of 16 rows


@intrinsic
def nibbles16(typingctx, w, o):
    """The four nibble chunks at byte offset o as eight u8x64: (low, high) of chunk 0, 1,
    2, 3; lane 4r+j of chunk c is row r's byte 4c+j. Unpacked once per block, for the
    dots of every token (`dot16`)."""
    def codegen(context, builder, sig, args):
        w_, o_ = args
        out = []
        for c in range(CHUNKS):
            n = _load(context, builder, sig.args[0], w_, builder.add(o_, ir.Constant(o_.type, 64 * c)), _i8, 64)
            hi = builder.lshr(builder.bitcast(n, _vt(_i16, 32)), _const(_i16, 32, 4))  # word shift: masked below
            out += [builder.and_(n, _const(_i8, 64, 15)),
                    builder.and_(builder.bitcast(hi, _vt(_i8, 64)), _const(_i8, 64, 15))]
        return context.make_tuple(builder, sig.return_type, out)
    return types.UniTuple(u8x64, 2 * CHUNKS)(w, types.intp), codegen


@intrinsic
def dot16(typingctx, acc, nibs, x, xo):
    """acc + the block dots of sixteen rows with 32 int8 x at flat xo: lane r is row r's
    exact sum of q * x (low nibbles against x[0:16], high against x[16:32])."""
    def codegen(context, builder, sig, args):
        acc_, nibs_, x_, xo_ = args
        for c in range(CHUNKS):
            for h in range(2):
                at = builder.add(xo_, ir.Constant(xo_.type, 16 * h + 4 * c))
                word = _load(context, builder, sig.args[2], x_, at, _i32)  # four x bytes, one per product
                xs = builder.bitcast(_splat(builder, word, 16), _vt(_i8, 64))
                acc_ = _dot4(builder, acc_, builder.extract_value(nibs_, 2 * c + h), xs, small=True)
        return acc_
    return i32x16(i32x16, nibs, x, types.intp), codegen


@intrinsic
def fma16(typingctx, acc, p, offset, w, so, dx):
    """acc + float(p - offset) * (d * dx), fused, lane by lane: sixteen scalar chains
    `acc = fmaf(sumi, d_w * d_x, acc)` side by side, d the sixteen f16 at byte so of w."""
    def codegen(context, builder, sig, args):
        acc_, p_, off_, w_, so_, dx_ = args
        d = builder.fpext(builder.bitcast(_load(context, builder, sig.args[3], w_, so_, _i16, 16), _vt(_f16, 16)),
                          _vt(_f32, 16))
        s = builder.fmul(d, _splat(builder, dx_, 16))
        v = builder.sitofp(builder.sub(p_, _splat(builder, builder.trunc(off_, _i32), 16)), _vt(_f32, 16))
        return _fma(builder, v, s, acc_)
    return f32x16(f32x16, i32x16, types.int64, w, types.intp, types.float32), codegen


@intrinsic
def store16(typingctx, out, o, v):
    """out.flat[o:o+16] = v (f32x16)."""
    def codegen(context, builder, sig, args):
        out_, o_, v_ = args
        data = context.make_array(sig.args[0])(context, builder, value=out_).data
        builder.store(v_, builder.bitcast(builder.gep(data, [o_]), v_.type.as_pointer()), align=4)
        return context.get_dummy_value()
    return types.none(out, types.intp, f32x16), codegen


if numba.config.DISABLE_JIT:  # numpy twins of the same names, to step through kernels
    from workbench.kernels.isa.numpy_twins import dot16, fma16, nibbles16, store16  # noqa: F401, F811, E402
