"""Vector building blocks for the block kernels: 16-lane accumulators and block dots.

Why this exists: numba runs LLVM's loop vectorizer but not its SLP vectorizer (off since
numba#8852 after miscompiles), and a 32-iteration loop over one block is fully unrolled
before the loop vectorizer sees it, so `for j in range(32): s += w[j] * x[j]` compiles to
32 scalar multiplies (~1 GB/s). These intrinsics emit LLVM vector IR directly; the x86
backend lowers a block dot to `vpmovzxbw` / `vpmaddwd` and the accumulation to `vfmadd`,
the shape of llama.cpp's AVX2 `acc = _mm256_fmadd_ps(d, mul_sum_i8_pairs_float(x, y), acc)`.

Two numba types, living in registers across loop iterations:
  i32x16  16 int32 lanes: pairwise sums of one block's products (what `vpmaddwd` gives)
  f32x16  16 float32 lanes: a row's running sum, reduced once per row by `vsum`
Block dots (`pdot_*`) return i32x16 whose lane sum is the block's exact integer dot;
`fma_block(acc, d, p)` adds d * float(p) lane by lane (fused, as `vfmadd`).
`fma_quads` / `vsum_quads` keep llama.cpp's AVX2 lane layout instead (8 lanes, each the
running sum of products 4k..4k+3 of every block), for results equal bit for bit.

Contract: every function reads consecutive elements starting at a *flat element offset*
of a C-contiguous array (a byte offset for uint8 weights), with no bounds check; the
wrappers in `linear.py` validate all shapes first. Activations are int16 (q8 values
widened once per call, which saves a shuffle per block) or float32. With
NUMBA_DISABLE_JIT=1 the same names come from `simd_numpy`, for stepping through kernels.

Not here: scales, formats, loops. Each kernel file composes these.
"""

import numba
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, models, register_model

_i8, _i16, _i32 = ir.IntType(8), ir.IntType(16), ir.IntType(32)
_f16, _f32 = ir.HalfType(), ir.FloatType()
LANES = 16


class _Vector(types.Type):
    def __init__(self, name, element, lanes):
        self.element, self.lanes = element, lanes
        super().__init__(name=name)


i32x16 = _Vector("i32x16", _i32, 16)
f32x16 = _Vector("f32x16", _f32, 16)


@register_model(_Vector)
class _VectorModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, ir.VectorType(fe_type.element, fe_type.lanes))


# ---- IR helpers --------------------------------------------------------------------------


def _vt(ty, n=LANES):
    return ir.VectorType(ty, n)


def _const(ty, n, values):
    return ir.Constant(_vt(ty, n), values if isinstance(values, list) else [values] * n)


def _load(context, builder, aryty, ary, offset, elty, n=None):
    """Load `n` x `elty` (a scalar when n is None) at flat element `offset` of `ary`."""
    data = context.make_array(aryty)(context, builder, value=ary).data
    ptr = builder.gep(data, [offset])
    target = elty if n is None else _vt(elty, n)
    return builder.load(builder.bitcast(ptr, target.as_pointer()), align=1)


def _splat(builder, value, n=LANES):
    vty = _vt(value.type, n)
    v = builder.insert_element(ir.Constant(vty, None), value, ir.Constant(_i32, 0))
    return builder.shuffle_vector(v, ir.Constant(vty, None), _const(_i32, n, 0))


def _concat(builder, a, b):
    n = a.type.count
    return builder.shuffle_vector(a, b, _const(_i32, 2 * n, list(range(2 * n))))


def _pairwise_madd(builder, q16, x16):
    """32 x i16 q, 32 x i16 x -> 16 x i32: q[2k]*x[2k] + q[2k+1]*x[2k+1] (`vpmaddwd`)."""
    p = builder.mul(builder.sext(q16, _vt(_i32, 32)), builder.sext(x16, _vt(_i32, 32)))
    even = builder.shuffle_vector(p, p, _const(_i32, LANES, list(range(0, 32, 2))))
    odd = builder.shuffle_vector(p, p, _const(_i32, LANES, list(range(1, 32, 2))))
    return builder.add(even, odd)


def _nibbles16(builder, b16):
    """16 bytes -> 32 x i16: low nibbles (lanes 0..15) then high nibbles (16..31)."""
    w = builder.zext(b16, _vt(_i16, 16))
    lo = builder.and_(w, _const(_i16, 16, 15))
    hi = builder.lshr(w, _const(_i16, 16, 4))
    return _concat(builder, lo, hi)


def _field32(builder, b32, shift, mask):
    """32 bytes -> 32 x i16: (b >> shift) & mask, shift a runtime i64 value."""
    w = builder.zext(b32, _vt(_i16, 32))
    w = builder.lshr(w, _splat(builder, builder.trunc(shift, _i16), 32))
    return builder.and_(w, _const(_i16, 32, mask))


def _tree_sum(builder, v, add):
    """Sum the lanes pairwise: lane j + lane j + n/2, halving down to one (fixed order)."""
    n = v.type.count
    while n > 1:
        n //= 2
        lo = builder.shuffle_vector(v, v, _const(_i32, n, list(range(n))))
        hi = builder.shuffle_vector(v, v, _const(_i32, n, list(range(n, 2 * n))))
        v = add(lo, hi)
    return builder.extract_element(v, ir.Constant(_i32, 0))


def _reduce_add(builder, v):
    """The exact sum of an integer vector's lanes."""
    fnty = ir.FunctionType(v.type.element, [v.type])
    name = f"llvm.vector.reduce.add.v{v.type.count}i{v.type.element.width}"
    return builder.call(cgutils.get_or_insert_function(builder.module, fnty, name), [v])


def _fma(builder, a, b, c):
    fnty = ir.FunctionType(a.type, [a.type] * 3)
    fn = cgutils.get_or_insert_function(builder.module, fnty, f"llvm.fma.v{a.type.count}f32")
    return builder.call(fn, [a, b, c])


# ---- scalars ---------------------------------------------------------------------------


@intrinsic
def load_f16(typingctx, buf, offset):
    """The fp16 at a byte offset of a uint8 array, widened to float32."""
    def codegen(context, builder, sig, args):
        return builder.fpext(_load(context, builder, sig.args[0], *args, _f16), _f32)
    return types.float32(buf, types.intp), codegen


@intrinsic
def load_u32(typingctx, buf, offset):
    """The little-endian uint32 at a byte offset of a uint8 array."""
    def codegen(context, builder, sig, args):
        return _load(context, builder, sig.args[0], *args, _i32)
    return types.uint32(buf, types.intp), codegen


@intrinsic
def load_f32(typingctx, buf, offset):
    """The float32 at a byte offset of a uint8 array."""
    def codegen(context, builder, sig, args):
        return _load(context, builder, sig.args[0], *args, _f32)
    return types.float32(buf, types.intp), codegen


@intrinsic
def load_bf16(typingctx, buf, offset):
    """The bf16 at a byte offset of a uint8 array, widened to float32."""
    def codegen(context, builder, sig, args):
        h = builder.zext(_load(context, builder, sig.args[0], *args, _i16), _i32)
        return builder.bitcast(builder.shl(h, ir.Constant(_i32, 16)), _f32)
    return types.float32(buf, types.intp), codegen


@intrinsic
def fmaf(typingctx, a, b, c):
    """a * b + c in float32 with one rounding (C's fmaf, x86 `vfmadd`)."""
    def codegen(context, builder, sig, args):
        fnty = ir.FunctionType(_f32, [_f32] * 3)
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.fma.f32")
        return builder.call(fn, args)
    return types.float32(types.float32, types.float32, types.float32), codegen


@intrinsic
def round_f16(typingctx, x):
    """float32 rounded to the nearest fp16 (ties to even, as F16C) and widened back."""
    def codegen(context, builder, sig, args):
        return builder.fpext(builder.fptrunc(args[0], _f16), _f32)
    return types.float32(types.float32), codegen


@intrinsic
def f16_bits(typingctx, x):
    """float32 -> the bits of the nearest fp16 (ties to even), in one F16C conversion:
    `half.f32_to_f16_bits`'s result for every value but a nan's payload (both give a nan)."""
    def codegen(context, builder, sig, args):
        return builder.bitcast(builder.fptrunc(args[0], _f16), _i16)
    return types.uint16(types.float32), codegen


# ---- accumulators ----------------------------------------------------------------------


@intrinsic
def zeros_f32(typingctx):
    def codegen(context, builder, sig, args):
        return _const(_f32, LANES, 0.0)
    return f32x16(), codegen


@intrinsic
def zeros_i32(typingctx):
    def codegen(context, builder, sig, args):
        return _const(_i32, LANES, 0)
    return i32x16(), codegen


@intrinsic
def fma_quads(typingctx, acc, d, p):
    """acc + d * float(q), fused, with q_2k = p_2k + p_2k+1: the sum of products
    4k..4k+3 of a 32-value block, in the even lanes (odd lanes carry junk that
    `vsum_quads` drops). The even lanes are llama.cpp's 8 AVX2 lanes, operation for
    operation: `acc = _mm256_fmadd_ps(d, mul_sum_i8_pairs_float(x, y), acc)`."""
    def codegen(context, builder, sig, args):
        acc_, d_, p_ = args
        # p_2k+1 moved down onto p_2k by a 64-bit shift: no cross-lane shuffle
        wide = builder.bitcast(p_, _vt(ir.IntType(64), 8))
        odd = builder.bitcast(builder.lshr(wide, _const(ir.IntType(64), 8, 32)), _vt(_i32))
        q = builder.sitofp(builder.add(p_, odd), _vt(_f32))
        return _fma(builder, _splat(builder, d_), q, acc_)
    return f32x16(f32x16, types.float32, i32x16), codegen


@intrinsic
def vsum_quads(typingctx, acc):
    """The even lanes of an `fma_quads` accumulator summed in the order of llama.cpp's
    `hsum_float_8`: ((a0 + a4) + (a2 + a6)) + ((a1 + a5) + (a3 + a7))."""
    def codegen(context, builder, sig, args):
        even = builder.shuffle_vector(args[0], args[0], _const(_i32, 8, list(range(0, 16, 2))))
        return _tree_sum(builder, even, builder.fadd)
    return types.float32(f32x16), codegen


@intrinsic
def fma_block(typingctx, acc, d, p):
    """acc + d * float(p), lane by lane, fused: one block's scaled contribution."""
    def codegen(context, builder, sig, args):
        acc_, d_, p_ = args
        pf = builder.sitofp(p_, _vt(_f32))
        return _fma(builder, _splat(builder, d_), pf, acc_)
    return f32x16(f32x16, types.float32, i32x16), codegen


@intrinsic
def vsum4(typingctx, a0, a1, a2, a3):
    """((a0 + a2) + (a1 + a3)) lane by lane, then `vsum`: ggml's GGML_F32x16_REDUCE of its
    four AVX-512 accumulators (`_mm512_reduce_add_ps` pairs lanes as `vsum` does)."""
    def codegen(context, builder, sig, args):
        a0_, a1_, a2_, a3_ = args
        v = builder.fadd(builder.fadd(a0_, a2_), builder.fadd(a1_, a3_))
        return _tree_sum(builder, v, builder.fadd)
    return types.float32(f32x16, f32x16, f32x16, f32x16), codegen


@intrinsic
def vsum(typingctx, acc):
    """The lanes of an f32x16 summed pairwise (fixed order: lane j + lane j+8, then
    j + 4, j + 2, j + 1, as GCC's `_mm512_reduce_add_ps`), or of an i32x16 (exact)."""
    if acc == f32x16:
        def codegen(context, builder, sig, args):
            return _tree_sum(builder, args[0], builder.fadd)
        return types.float32(f32x16), codegen
    if acc == i32x16:
        def codegen(context, builder, sig, args):
            return _tree_sum(builder, args[0], builder.add)
        return types.int32(i32x16), codegen
    return None


@intrinsic
def store_vsums4(typingctx, out, o, a0, a1, a2, a3):
    """out[o + k] = vsum(ak), k < 4, each sum in `vsum`'s pairing (lane j + j+8, + j+4,
    + j+2, + j+1): the four trees run side by side in shared registers, 14 shuffles and
    7 adds instead of 16 shuffles and 16 adds."""
    def codegen(context, builder, sig, args):
        out_, o_, *acc = args

        def halve(x, y, n):  # x, y: n groups each; -> the groups' lo + hi halves, x's then y's
            m = x.type.count // n  # lanes per group
            lo = [g * m + j for g in range(n) for j in range(m // 2)]
            hi = [g * m + m // 2 + j for g in range(n) for j in range(m // 2)]
            cat = lambda idx: idx + [i + x.type.count for i in idx]
            if x is y:
                return builder.fadd(builder.shuffle_vector(x, x, _const(_i32, len(lo), lo)),
                                    builder.shuffle_vector(x, x, _const(_i32, len(hi), hi)))
            return builder.fadd(builder.shuffle_vector(x, y, _const(_i32, 2 * len(lo), cat(lo))),
                                builder.shuffle_vector(x, y, _const(_i32, 2 * len(hi), cat(hi))))

        ab, cd = halve(acc[0], acc[1], 1), halve(acc[2], acc[3], 1)  # 2 x 8 lanes each
        v = halve(ab, cd, 2)  # 4 groups of 4
        v = halve(v, v, 4)  # 4 groups of 2
        v = halve(v, v, 4)  # the 4 sums
        data = context.make_array(sig.args[0])(context, builder, value=out_).data
        builder.store(v, builder.bitcast(builder.gep(data, [o_]), v.type.as_pointer()), align=4)
        return context.get_dummy_value()
    return types.none(out, types.intp, f32x16, f32x16, f32x16, f32x16), codegen


# ---- integer block dots: lanes sum to the exact dot ------------------------------------


@intrinsic
def pdot_i8(typingctx, w, wo, x, xo):
    """q8_0: sum_{j<32} int8(w[wo+j]) * x[xo+j], x int16."""
    def codegen(context, builder, sig, args):
        q = _load(context, builder, sig.args[0], args[0], args[1], _i8, 32)
        x = _load(context, builder, sig.args[2], args[2], args[3], _i16, 32)
        return _pairwise_madd(builder, builder.sext(q, _vt(_i16, 32)), x)
    return i32x16(w, types.intp, x, types.intp), codegen


@intrinsic
def pdot_q4(typingctx, w, wo, qh, offset, x, xo):
    """q4_0 / q4_1 / q5_0: sum_{j<32} (q_j - offset) * x[xo+j], q_j = nibble j of the 16
    bytes at w[wo] (low nibbles are j = 0..15, high ones 16..31) | (bit j of qh) << 4."""
    def codegen(context, builder, sig, args):
        w_, wo_, qh_, off_, x_, xo_ = args
        q = _nibbles16(builder, _load(context, builder, sig.args[0], w_, wo_, _i8, 16))
        high = builder.zext(builder.bitcast(qh_, _vt(ir.IntType(1), 32)), _vt(_i16, 32))
        q = builder.or_(q, builder.shl(high, _const(_i16, 32, 4)))
        q = builder.sub(q, _splat(builder, builder.trunc(off_, _i16), 32))
        x = _load(context, builder, sig.args[4], x_, xo_, _i16, 32)
        return _pairwise_madd(builder, q, x)
    return i32x16(w, types.intp, types.uint32, types.intp, x, types.intp), codegen


@intrinsic
def pdot_nibble(typingctx, w, wo, shift, x, xo):
    """q4_K sub-block: sum_{j<32} ((w[wo+j] >> shift) & 15) * x[xo+j] (shift 0 or 4)."""
    def codegen(context, builder, sig, args):
        w_, wo_, sh_, x_, xo_ = args
        q = _field32(builder, _load(context, builder, sig.args[0], w_, wo_, _i8, 32), sh_, 15)
        x = _load(context, builder, sig.args[3], x_, xo_, _i16, 32)
        return _pairwise_madd(builder, q, x)
    return i32x16(w, types.intp, types.intp, x, types.intp), codegen


@intrinsic
def pdot_q6(typingctx, w, lo, lo_shift, hi, hi_shift, x, xo):
    """q6_K: sum_{j<32} q_j * x[xo+j] with q_j = ((w[lo+j] >> lo_shift) & 15)
    | ((w[hi+j] >> hi_shift) & 3) << 4, in 0..63 (the -32 offset is the caller's)."""
    def codegen(context, builder, sig, args):
        w_, lo_, ls_, hi_, hs_, x_, xo_ = args
        wty = sig.args[0]
        low = _field32(builder, _load(context, builder, wty, w_, lo_, _i8, 32), ls_, 15)
        high = _field32(builder, _load(context, builder, wty, w_, hi_, _i8, 32), hs_, 3)
        q = builder.or_(low, builder.shl(high, _const(_i16, 32, 4)))
        x = _load(context, builder, sig.args[5], x_, xo_, _i16, 32)
        return _pairwise_madd(builder, q, x)
    sig = i32x16(w, types.intp, types.intp, types.intp, types.intp, x, types.intp)
    return sig, codegen


@intrinsic
def add_scaled(typingctx, acc, p, s0, s1):
    """acc + p * s lane by lane, s = s0 in lanes 0..7 and s1 in lanes 8..15: the sub-block
    scales of a pdot over 32 values (lanes 0..7 hold values 0..15, lanes 8..15 the rest)."""
    def codegen(context, builder, sig, args):
        acc_, p_, s0_, s1_ = args
        half = lambda v: _splat(builder, builder.trunc(v, _i32), 8)  # noqa: E731
        return builder.add(acc_, builder.mul(p_, _concat(builder, half(s0_), half(s1_))))
    return i32x16(i32x16, i32x16, types.int64, types.int64), codegen


@intrinsic
def sub_offsets(typingctx, p, bsums, bo, w, so, offset):
    """p - offset * bsums[bo+j] * int8(w[so+j]) lane by lane (j < 16): q6_K's -32 offset,
    sum_j 32 * bsum_j * scale_j, spread so that lanes 2k, 2k+1 hold sub-block k's share."""
    def codegen(context, builder, sig, args):
        p_, bs_, bo_, w_, so_, off_ = args
        bs = _load(context, builder, sig.args[1], bs_, bo_, _i32, LANES)
        sc = builder.sext(_load(context, builder, sig.args[3], w_, so_, _i8, LANES), _vt(_i32))
        off = _splat(builder, builder.trunc(off_, _i32))
        return builder.sub(p_, builder.mul(off, builder.mul(bs, sc)))
    return i32x16(i32x16, bsums, types.intp, w, types.intp, types.int64), codegen


@intrinsic
def dot_mins(typingctx, mins, bsums, bo):
    """sum_{j<8} byte j of `mins` * (bsums[bo+2j] + bsums[bo+2j+1]): q4_K's min term, the
    8 sub-block mins packed in a uint64 against the 16 per-16-value sums of x."""
    def codegen(context, builder, sig, args):
        mins_, bs_, bo_ = args
        m = builder.zext(builder.bitcast(mins_, _vt(_i8, 8)), _vt(_i32, 8))
        bs = _load(context, builder, sig.args[1], bs_, bo_, _i32, 16)
        even = builder.shuffle_vector(bs, bs, _const(_i32, 8, list(range(0, 16, 2))))
        odd = builder.shuffle_vector(bs, bs, _const(_i32, 8, list(range(1, 16, 2))))
        return _reduce_add(builder, builder.mul(m, builder.add(even, odd)))
    return types.int32(types.uint64, bsums, types.intp), codegen


# ---- float block dots ------------------------------------------------------------------


def _make_fma_float(kind):
    @intrinsic
    def fma_float(typingctx, acc, w, wo, x, xo):
        """acc + w_j * x[xo+j] for 16 values of `kind` at byte offset wo of uint8 w."""
        def codegen(context, builder, sig, args):
            acc_, w_, wo_, x_, xo_ = args
            if kind == "f32":
                wv = _load(context, builder, sig.args[1], w_, wo_, _f32, LANES)
            else:
                h = _load(context, builder, sig.args[1], w_, wo_, _i16, LANES)
                wv = builder.fpext(builder.bitcast(h, _vt(_f16)), _vt(_f32))
            xv = _load(context, builder, sig.args[3], x_, xo_, _f32, LANES)
            return _fma(builder, wv, xv, acc_)
        return f32x16(f32x16, w, types.intp, x, types.intp), codegen
    return fma_float


@intrinsic
def dot2_bf16(typingctx, acc, w, wo, x, xo):
    """AVX512-BF16 `vdpbf16ps`: lane j of acc += w_2j+1 * x_2j+1, then += w_2j * x_2j
    (each product exact, each add rounded), for 32 bf16 weights at byte offset wo and
    32 float32 x holding bf16 values."""
    def codegen(context, builder, sig, args):
        acc_, w_, wo_, x_, xo_ = args
        h = _load(context, builder, sig.args[1], w_, wo_, _i16, 32)
        bits = builder.shl(builder.zext(h, _vt(_i32, 32)), _const(_i32, 32, 16))
        xv = _load(context, builder, sig.args[3], x_, xo_, _f32, 32)
        p = builder.fmul(builder.bitcast(bits, _vt(_f32, 32)), xv)
        odd = builder.shuffle_vector(p, p, _const(_i32, LANES, list(range(1, 32, 2))))
        even = builder.shuffle_vector(p, p, _const(_i32, LANES, list(range(0, 32, 2))))
        return builder.fadd(builder.fadd(acc_, odd), even)
    return f32x16(f32x16, w, types.intp, x, types.intp), codegen


# acc + w_j * x_j for 16 weights read at a *byte* offset of a uint8 array; x float32,
# already rounded to f16 for f16 weights (each product is then exact)
fma_f32 = _make_fma_float("f32")
fma_f16 = _make_fma_float("f16")

if numba.config.DISABLE_JIT:  # numpy twins of the same names, to step through kernels
    from workbench.kernels.isa.numpy_twins import (  # noqa: F401, F811, E402
        add_scaled,
        dot2_bf16,
        dot_mins,
        f16_bits,
        fma_block,
        fma_f16,
        fma_f32,
        fma_quads,
        fmaf,
        load_bf16,
        load_f16,
        load_f32,
        load_u32,
        pdot_i8,
        pdot_nibble,
        pdot_q4,
        pdot_q6,
        round_f16,
        store_vsums4,
        sub_offsets,
        vsum,
        vsum4,
        vsum_quads,
        zeros_f32,
        zeros_i32,
    )
