"""Sixteen rows in sixteen lanes: block dots on weights repacked so that no sum crosses lanes.

For a layout where each block's bytes come as four 64-byte chunks, chunk c holding bytes
4c..4c+3 of sixteen rows side by side (`formats.q4_0_rows16`), one `vpdpbusd` against
four bytes of x broadcast to every lane adds four products of each row into that row's
own lane. Eight of them make a block's exact integer dot for sixteen rows at once, with
no horizontal reduction, and the scales of the sixteen rows are sixteen consecutive
f16: one load, one conversion. With AVX2 the same dots lower to `vpmaddubsw` +
`vpmaddwd` on two 256-bit halves (`x86._dot4`), the same integers.

q8_0 and q5_0 (`formats.rows16_lanes8`) keep llama.cpp's eight float lanes per row, as
their reference order does: eight chunks of 64 bytes, eight accumulators, lane r of
accumulator k holding row r's products 4k..4k+3 of every block.
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


@intrinsic
def scales16(typingctx, w, so, dx):
    """The sixteen f16 block scales at byte so of w, widened, times dx (each product rounded once)."""
    def codegen(context, builder, sig, args):
        w_, so_, dx_ = args
        d = builder.fpext(builder.bitcast(_load(context, builder, sig.args[0], w_, so_, _i16, 16), _vt(_f16, 16)),
                          _vt(_f32, 16))
        return builder.fmul(d, _splat(builder, dx_, 16))
    return f32x16(w, types.intp, types.float32), codegen


@intrinsic
def chunks16_q8(typingctx, w, o):
    """q8_0's eight 64-byte chunks at byte o (chunk k: bytes 4k..4k+3 of sixteen rows),
    each weight biased +128 to be unsigned for `vpdpbusd`."""
    def codegen(context, builder, sig, args):
        w_, o_ = args
        out = [builder.xor(_load(context, builder, sig.args[0], w_, builder.add(o_, ir.Constant(o_.type, 64 * k)),
                                 _i8, 64), _const(_i8, 64, 0x80)) for k in range(8)]
        return context.make_tuple(builder, sig.return_type, out)
    return types.UniTuple(u8x64, 8)(w, types.intp), codegen


@intrinsic
def chunks16_q5(typingctx, w, o):
    """q5_0's values 0..31 of sixteen rows as `chunks16_q8` gives q8_0's (chunk k: values
    4k..4k+3 of each row), from eight 64-bit masks at byte o (mask k, bit 4r + j: the 5th
    bit of value 4k + j of row r) and the four nibble chunks after them (chunk c, low
    nibbles: values 4c..4c+3; high: 16 + 4c..)."""
    def codegen(context, builder, sig, args):
        w_, o_ = args
        at = lambda n: builder.add(o_, ir.Constant(o_.type, n))  # noqa: E731
        out = [None] * 8
        for c in range(CHUNKS):
            n = _load(context, builder, sig.args[0], w_, at(64 + 64 * c), _i8, 64)
            hi = builder.lshr(builder.bitcast(n, _vt(_i16, 32)), _const(_i16, 32, 4))  # word shift: masked below
            nib = [builder.and_(n, _const(_i8, 64, 15)), builder.and_(builder.bitcast(hi, _vt(_i8, 64)),
                                                                     _const(_i8, 64, 15))]
            for h in range(2):
                k = c + 4 * h
                bits = builder.bitcast(_load(context, builder, sig.args[0], w_, at(8 * k), ir.IntType(64)),
                                       _vt(ir.IntType(1), 64))
                out[k] = builder.or_(nib[h], builder.shl(builder.zext(bits, _vt(_i8, 64)), _const(_i8, 64, 4)))
        return context.make_tuple(builder, sig.return_type, out)
    return types.UniTuple(u8x64, 8)(w, types.intp), codegen


@intrinsic
def chunks16_q4(typingctx, w, o):
    """q4_1's values 0..15 of sixteen rows as `chunks16_q8` gives q8_0's (chunk k: values
    4k..4k+3 of each row), from the four nibble chunks at byte o (chunk c, low nibbles:
    values 4c..4c+3; high: 16 + 4c..)."""
    def codegen(context, builder, sig, args):
        w_, o_ = args
        out = [None] * 8
        for c in range(CHUNKS):
            n = _load(context, builder, sig.args[0], w_, builder.add(o_, ir.Constant(o_.type, 64 * c)), _i8, 64)
            hi = builder.lshr(builder.bitcast(n, _vt(_i16, 32)), _const(_i16, 32, 4))  # word shift: masked below
            out[c] = builder.and_(n, _const(_i8, 64, 15))
            out[c + 4] = builder.and_(builder.bitcast(hi, _vt(_i8, 64)), _const(_i8, 64, 15))
        return context.make_tuple(builder, sig.return_type, out)
    return types.UniTuple(u8x64, 8)(w, types.intp), codegen


@intrinsic
def fma16_q8(typingctx, accs, chunks, xc, co, x, xo, s):
    """accs[k] + s * float(products 4k..4k+3 of row r), fused, in lane r, for k < 8: the
    eight AVX2 lanes of llama.cpp's q8_0 dot for sixteen rows. Each dot starts from
    xc[co + k] = -128 * (x[4k] + ... + x[4k+3]), which takes the bias back out exactly."""
    def codegen(context, builder, sig, args):
        accs_, chunks_, xc_, co_, x_, xo_, s_ = args
        out = []
        for k in range(8):
            start = _splat(builder, _load(context, builder, sig.args[2], xc_,
                                          builder.add(co_, ir.Constant(co_.type, k)), _i32), 16)
            word = _load(context, builder, sig.args[4], x_, builder.add(xo_, ir.Constant(xo_.type, 4 * k)), _i32)
            p = _dot4(builder, start, builder.extract_value(chunks_, k),
                      builder.bitcast(_splat(builder, word, 16), _vt(_i8, 64)))
            out.append(_fma(builder, s_, builder.sitofp(p, _vt(_f32, 16)), builder.extract_value(accs_, k)))
        return context.make_tuple(builder, sig.return_type, out)
    return accs(accs, chunks, xc, types.intp, x, types.intp, f32x16), codegen


@intrinsic
def zeros16x8(typingctx):
    """Eight f32x16 zero accumulators (`fma16_q8`'s)."""
    ty = types.UniTuple(f32x16, 8)
    def codegen(context, builder, sig, args):
        return context.make_tuple(builder, ty, [_const(_f32, 16, 0.0)] * 8)
    return ty(), codegen


def _hsum8(builder, accs):
    a = [builder.extract_value(accs, k) for k in range(8)]
    return builder.fadd(builder.fadd(builder.fadd(a[0], a[4]), builder.fadd(a[2], a[6])),
                        builder.fadd(builder.fadd(a[1], a[5]), builder.fadd(a[3], a[7])))


def _store_at(context, builder, aryty, ary, o, v):
    data = context.make_array(aryty)(context, builder, value=ary).data
    builder.store(v, builder.bitcast(builder.gep(data, [o]), v.type.as_pointer()), align=4)


@intrinsic
def store16_hsum8(typingctx, out, o, accs):
    """out.flat[o:o+16] = each lane's eight accumulators summed as llama.cpp's
    `hsum_float_8`: ((a0 + a4) + (a2 + a6)) + ((a1 + a5) + (a3 + a7))."""
    def codegen(context, builder, sig, args):
        out_, o_, accs_ = args
        _store_at(context, builder, sig.args[0], out_, o_, _hsum8(builder, accs_))
        return context.get_dummy_value()
    return types.none(out, types.intp, accs), codegen


@intrinsic
def store16_hsum8_add(typingctx, out, o, accs, extra):
    """out.flat[o:o+16] = `store16_hsum8`'s sums + extra (f32x16), each lane rounded once more
    (q4_1's `hsum_float_8(acc) + summs`)."""
    def codegen(context, builder, sig, args):
        out_, o_, accs_, extra_ = args
        _store_at(context, builder, sig.args[0], out_, o_, builder.fadd(_hsum8(builder, accs_), extra_))
        return context.get_dummy_value()
    return types.none(out, types.intp, accs, f32x16), codegen


if numba.config.DISABLE_JIT:  # numpy twins of the same names, to step through kernels
    from workbench.kernels.isa.numpy_twins import (  # noqa: F401, F811, E402
        chunks16_q4,
        chunks16_q5,
        chunks16_q8,
        dot16,
        fma16,
        fma16_q8,
        nibbles16,
        scales16,
        store16,
        store16_hsum8,
        store16_hsum8_add,
        zeros16x8,
    )
