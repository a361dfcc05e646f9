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

if numba.config.DISABLE_JIT:  # the same names as numpy functions, to step through kernels
    from workbench.kernels.simd_numpy import (  # noqa: F401, F811, E402
        add_scaled,
        dot2_bf16,
        dot_mins,
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
        sub_offsets,
        vsum,
        vsum4,
        vsum_quads,
        zeros_f32,
        zeros_i32,
    )


# ---- row groups: two rows per 16-lane register, four rows per pass ------------------------
#
# The decode kernels compute several weight rows per pass over x, so that each block of
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

import llvmlite.binding as _llvm  # noqa: E402

u8x64 = _Vector("u8x64", _i8, 64)
i16x32 = _Vector("i16x32", _i16, 32)
f32x8 = _Vector("f32x8", _f32, 8)
f32x4 = _Vector("f32x4", _f32, 4)


def _target_has(*features: str) -> bool:
    """Whether the CPU numba compiles for has all `features` (LLVM names): those of
    NUMBA_CPU_FEATURES when set (as numba's codegen decides), else the host's."""
    if numba.config.CPU_FEATURES is not None:
        named = numba.config.CPU_FEATURES.split(",")
        return all(f"+{f}" in named for f in features)
    host = _llvm.get_host_cpu_features()
    return all(host.get(f, False) for f in features)


VNNI = _target_has("avx512vnni", "avx512bw", "avx512vl")


def _x86(builder, name, ret, args):
    fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ret, [a.type for a in args]), name)
    return builder.call(fn, args)


AVX2 = _target_has("avx2")


def _halves(builder, v):
    """A 64-byte vector as its two 32-byte halves."""
    n = v.type.count // 2
    return [builder.shuffle_vector(v, v, _const(_i32, n, list(range(h * n, (h + 1) * n)))) for h in (0, 1)]


def _madd_ones(builder, w16):
    """16 x i16 -> 8 x i32, adjacent pairs summed (`vpmaddwd` with ones)."""
    return _x86(builder, "llvm.x86.avx2.pmadd.wd", _vt(_i32, 8), [w16, _const(_i16, 16, 1)])


def _maddubs_avx2(builder, q, x):
    """`vpmaddubsw` on each 32-byte half (q <= 127 keeps every pair sum exact)."""
    qs, xs = _halves(builder, q), _halves(builder, x)
    return [_x86(builder, "llvm.x86.avx2.pmadd.ub.sw", _vt(_i16, 16), [a, b]) for a, b in zip(qs, xs)]


def _dot4(builder, acc, q, x, small=False):
    """acc (16 x i32) + sum_{j<4} u8 q[4k+j] * s8 x[4k+j] in lane k (`vpdpbusd`). With
    `small` the caller guarantees q <= 127, and on AVX2 the sums come from llama.cpp's AVX2
    pair `vpmaddubsw` + `vpmaddwd` (exact there: |pair sum| <= 2 * 127 * 128 < 2^15)."""
    vt = acc.type
    if VNNI:
        return _x86(builder, "llvm.x86.avx512.vpdpbusd.512", vt,
                    [acc, builder.bitcast(q, vt), builder.bitcast(x, vt)])
    if AVX2 and small:
        lo, hi = (_madd_ones(builder, h) for h in _maddubs_avx2(builder, q, x))
        return builder.add(acc, _concat(builder, lo, hi))
    p = builder.mul(builder.zext(q, _vt(_i32, 64)), builder.sext(x, _vt(_i32, 64)))
    part = [builder.shuffle_vector(p, p, _const(_i32, LANES, list(range(j, 64, 4)))) for j in range(4)]
    return builder.add(acc, builder.add(builder.add(part[0], part[1]), builder.add(part[2], part[3])))


def _maddubs(builder, q, x):
    """64 u8 q * s8 x, adjacent products summed into 32 x i16 (`vpmaddubsw`; callers keep
    q <= 63, so its saturation never happens)."""
    if VNNI:
        return _x86(builder, "llvm.x86.avx512.pmaddubs.w.512", _vt(_i16, 32), [q, x])
    if AVX2:
        return _concat(builder, *_maddubs_avx2(builder, q, x))
    p = builder.mul(builder.zext(q, _vt(_i16, 64)), builder.sext(x, _vt(_i16, 64)))
    even = builder.shuffle_vector(p, p, _const(_i32, 32, list(range(0, 64, 2))))
    odd = builder.shuffle_vector(p, p, _const(_i32, 32, list(range(1, 64, 2))))
    return builder.add(even, odd)


def _dpwssd(builder, acc, a, b):
    """acc (16 x i32) + a[2k] * b[2k] + a[2k+1] * b[2k+1] in lane k (`vpdpwssd`)."""
    vt = acc.type
    if VNNI:
        return _x86(builder, "llvm.x86.avx512.vpdpwssd.512", vt,
                    [acc, builder.bitcast(a, vt), builder.bitcast(b, vt)])
    if AVX2:
        lo, hi = (_x86(builder, "llvm.x86.avx2.pmadd.wd", _vt(_i32, 8), [u, v])
                  for u, v in zip(_halves(builder, a), _halves(builder, b)))
        return builder.add(acc, _concat(builder, lo, hi))
    p = builder.mul(builder.sext(a, _vt(_i32, 32)), builder.sext(b, _vt(_i32, 32)))
    even = builder.shuffle_vector(p, p, _const(_i32, LANES, list(range(0, 32, 2))))
    odd = builder.shuffle_vector(p, p, _const(_i32, LANES, list(range(1, 32, 2))))
    return builder.add(acc, builder.add(even, odd))


def _permute_words(builder, v, j, pattern):
    """Word k of the result = word j + pattern[k] of v (32 x i16; j an i32 value, pattern
    32 constants; `vpermw`). Without it: one extract per distinct offset, then a shuffle."""
    if VNNI:
        idx = builder.add(_splat(builder, j, 32), _const(_i32, 32, pattern))
        return _x86(builder, "llvm.x86.avx512.permvar.hi.512", v.type, [v, builder.trunc(idx, v.type)])
    offsets = sorted(set(pattern))
    picked = ir.Constant(_vt(_i16, len(offsets)), None)
    for i, c in enumerate(offsets):
        word = builder.extract_element(v, builder.add(j, ir.Constant(_i32, c)))
        picked = builder.insert_element(picked, word, ir.Constant(_i32, i))
    return builder.shuffle_vector(picked, picked, _const(_i32, 32, [offsets.index(c) for c in pattern]))


def _x_twice(context, builder, xty, x, xo):
    """32 int8 of x at flat xo, in both halves of a 64-byte vector."""
    v = _load(context, builder, xty, x, xo, _i8, 32)
    return _concat(builder, v, v)


def _nibbles_pair(context, builder, wty, w, oa, ob):
    """16 bytes at oa and at ob -> 64 x u8: low nibbles of a, high of a, low of b, high of b."""
    a = _load(context, builder, wty, w, oa, _i8, 16)
    b = _load(context, builder, wty, w, ob, _i8, 16)
    aabb = builder.shuffle_vector(a, b, _const(_i32, 64, [*range(16)] * 2 + [*range(16, 32)] * 2))
    # the second copy of each row shifted right by 4 as 16-bit words: the mask below
    # drops the bits a word shift moves across bytes
    words = builder.lshr(builder.bitcast(aabb, _vt(_i16, 32)), _const(_i16, 32, ([0] * 8 + [4] * 8) * 2))
    return builder.and_(builder.bitcast(words, _vt(_i8, 64)), _const(_i8, 64, 15))


def _gather(context, builder, wty, w, offsets, elty):
    """One `elty` at each byte offset of w, as a vector."""
    v = ir.Constant(_vt(elty, len(offsets)), None)
    for i, o in enumerate(offsets):
        v = builder.insert_element(v, _load(context, builder, wty, w, o, elty), ir.Constant(_i32, i))
    return v


def _spread(builder, v, a, b):
    """16 lanes: lane a of v in lanes 0..7, lane b in lanes 8..15."""
    return builder.shuffle_vector(v, v, _const(_i32, LANES, [a] * 8 + [b] * 8))


def _row_sums(builder, ab, cd):
    """Two pair registers (A | B), (C | D) of int32 -> [sum A, sum B, sum C, sum D] (exact)."""
    lo = [*range(0, 4), *range(8, 12), *range(16, 20), *range(24, 28)]
    v = builder.add(builder.shuffle_vector(ab, cd, _const(_i32, 16, lo)),
                    builder.shuffle_vector(ab, cd, _const(_i32, 16, [k + 4 for k in lo])))
    v = builder.add(builder.shuffle_vector(v, v, _const(_i32, 8, [k for k in range(16) if k % 4 < 2])),
                    builder.shuffle_vector(v, v, _const(_i32, 8, [k for k in range(16) if k % 4 >= 2])))
    return builder.add(builder.shuffle_vector(v, v, _const(_i32, 4, [0, 2, 4, 6])),
                       builder.shuffle_vector(v, v, _const(_i32, 4, [1, 3, 5, 7])))


@intrinsic
def prefetch(typingctx, a, o):
    """Hint that the cache line holding flat element `o` of `a` is read soon (`prefetcht0`;
    a prefetch never faults, so `o` may lie past the end)."""
    def codegen(context, builder, sig, args):
        data = context.make_array(sig.args[0])(context, builder, value=args[0]).data
        ptr = builder.bitcast(builder.gep(data, [args[1]]), _i8.as_pointer())
        fnty = ir.FunctionType(ir.VoidType(), [ptr.type, _i32, _i32, _i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
        builder.call(fn, [ptr, ir.Constant(_i32, 0), ir.Constant(_i32, 3), ir.Constant(_i32, 1)])
        return context.get_dummy_value()
    return types.none(a, types.intp), codegen


@intrinsic
def zeros_f32x8(typingctx):
    def codegen(context, builder, sig, args):
        return _const(_f32, 8, 0.0)
    return f32x8(), codegen


@intrinsic
def zeros_f32x4(typingctx):
    def codegen(context, builder, sig, args):
        return _const(_f32, 4, 0.0)
    return f32x4(), codegen


@intrinsic
def vadd(typingctx, a, b):
    """a + b lane by lane (float lanes each rounded as a scalar add)."""
    if a != b or a not in (f32x8, f32x16, i32x16):
        return None
    def codegen(context, builder, sig, args):
        return (builder.fadd if a.element == _f32 else builder.add)(*args)
    return a(a, a), codegen


@intrinsic
def vsub(typingctx, a, b):
    """a - b lane by lane (i32x16)."""
    def codegen(context, builder, sig, args):
        return builder.sub(*args)
    return i32x16(i32x16, i32x16), codegen


@intrinsic
def lane(typingctx, v, k):
    """Lane k of an f32x4 or f32x8."""
    if v not in (f32x4, f32x8):
        return None
    def codegen(context, builder, sig, args):
        return builder.extract_element(args[0], builder.trunc(args[1], _i32))
    return types.float32(v, types.intp), codegen


def _half_sum(lanes):
    @intrinsic
    def hsum_half(typingctx, acc):
        if acc not in (f32x16, i32x16):
            return None
        def codegen(context, builder, sig, args):
            half = builder.shuffle_vector(args[0], args[0], _const(_i32, 8, lanes))
            return _tree_sum(builder, half, builder.fadd if acc == f32x16 else builder.add)
        return (types.float32 if acc == f32x16 else types.int32)(acc), codegen
    return hsum_half


# lanes 0..7 (row A) / 8..15 (row B) of a pair register summed in the order of
# llama.cpp's `hsum_float_8`: ((a0 + a4) + (a2 + a6)) + ((a1 + a5) + (a3 + a7))
hsum_lo = _half_sum(list(range(8)))
hsum_hi = _half_sum(list(range(8, 16)))


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


if numba.config.DISABLE_JIT:  # numpy twins of the row-group functions (see simd_numpy)
    import numpy as _np

    from workbench.kernels.simd_numpy import _flat, vsum as _vsum

    def prefetch(a, o):
        pass

    def zeros_f32x8():
        return _np.zeros(8, _np.float32)

    def zeros_f32x4():
        return _np.zeros(4, _np.float32)

    def vadd(a, b):
        return a + b

    def vsub(a, b):
        return a - b

    def lane(v, k):
        return v[k]

    def hsum_lo(acc):
        return _vsum(acc[:8])

    def hsum_hi(acc):
        return _vsum(acc[8:])

    def _nib(w, o):
        b = _flat(w, o, 16, _np.uint8)
        return _np.concatenate([b & 15, b >> 4])

    def q8_pair(w, oa, ob):
        return _np.concatenate([_flat(w, oa, 32, _np.uint8), _flat(w, ob, 32, _np.uint8)]) ^ 0x80

    def q4_pair(w, oa, ob):
        return _np.concatenate([_nib(w, oa), _nib(w, ob)])

    def q5_pair(w, oa, ob, qha, qhb):
        bits = lambda qh: (((int(qh) >> _np.arange(32)) & 1) << 4).astype(_np.uint8)  # noqa: E731
        return q4_pair(w, oa, ob) | _np.concatenate([bits(qha), bits(qhb)])

    def nibbles_pair(w, oa, ob, shift):
        return (_np.concatenate([_flat(w, oa, 32, _np.uint8), _flat(w, ob, 32, _np.uint8)]) >> shift) & 15

    def q6_pair(w, la, lb, ls, ha, hb, hs):
        lo = (_np.concatenate([_flat(w, la, 32, _np.uint8), _flat(w, lb, 32, _np.uint8)]) >> ls) & 15
        hi = (_np.concatenate([_flat(w, ha, 32, _np.uint8), _flat(w, hb, 32, _np.uint8)]) >> hs) & 3
        return lo | (hi << 4)

    def _x2(x, xo):
        return _np.tile(_flat(x, xo, 32, _np.int64), 2)

    def dot4_pair(acc, q, x, xo):
        p = (q.astype(_np.int64) * _x2(x, xo)).reshape(16, 4).sum(1)
        return (acc + p).astype(_np.int32)

    dot4_pair_small = dot4_pair

    def dot4_pair_signed(acc, q, x, xo):
        p = ((q.astype(_np.int64) - 128) * _x2(x, xo)).reshape(16, 4).sum(1)
        return (acc + p).astype(_np.int32)

    def dot_scaled_pair(acc, q, x, xo, s):
        p = (q.astype(_np.int64) * _x2(x, xo)).reshape(32, 2).sum(1) * s.astype(_np.int64)
        return (acc + p.reshape(16, 2).sum(1)).astype(_np.int32)

    def load_i32x8_twice(a, o):
        return _np.tile(_flat(a, o, 8, _np.int32), 2)

    def _f16s(w, offsets):
        return _np.array([_flat(w, o, 1, _np.float16)[0] for o in offsets], _np.float32)

    def scales_pair(w, oa, ob, dx):
        return _np.repeat(_f16s(w, (oa, ob)) * _np.float32(dx), 8)

    def scales4(w, oa, ob, oc, od, dx):
        return _f16s(w, (oa, ob, oc, od)) * _np.float32(dx)

    def scales_quad(w, oa, ob, oc, od, dx):
        v = scales4(w, oa, ob, oc, od, dx)
        return _np.repeat(v[:2], 8), _np.repeat(v[2:], 8)

    def scales_mins_quad(w, oa, ob, oc, od, dx, sx):
        v = _f16s(w, [o + k for o in (oa, ob, oc, od) for k in (0, 2)])
        v = v * _np.array([dx, sx] * 4, _np.float32)
        return _np.repeat(v[[0, 2]], 8), _np.repeat(v[[4, 6]], 8), v

    def _fma(acc, s, p):
        return (s.astype(_np.float64) * p.astype(_np.float64) + acc).astype(_np.float32)

    def fma_pair(acc, s, p):
        return _fma(acc, s, p)

    def fma_row_sums(acc, ab, cd, offset, s):
        sums = _np.array([ab[:8].sum(), ab[8:].sum(), cd[:8].sum(), cd[8:].sum()], _np.int64) - offset
        return _fma(acc, s, sums)

    def _k4(w, o):
        b = _flat(w, o, 12, _np.uint8).astype(_np.int32)
        sc = _np.concatenate([b[0:4] & 63, (b[8:12] & 15) | ((b[0:4] >> 6) << 4)])
        mn = _np.concatenate([b[4:8] & 63, (b[8:12] >> 4) | ((b[4:8] >> 6) << 4)])
        return sc, mn

    def scales_mins_k4_pair(w, oa, ob):
        (sa, ma), (sb, mb) = _k4(w, oa), _k4(w, ob)
        return _np.concatenate([sa, sb, sa, sb]), _np.concatenate([ma, mb]).astype(_np.int32)

    def pick_k4(s, j):
        return _np.repeat(s[[j, 8 + j]], 16)

    def mins_pair(mins, bsums, bo):
        bs = _flat(bsums, bo, 16, _np.int32)
        return mins * _np.tile(bs[0::2] + bs[1::2], 2)

    def scales_q6_pair(w, sa, sb):
        return _np.concatenate([_flat(w, sa, 16, _np.int8), _flat(w, sb, 16, _np.int8)]).astype(_np.int32)

    def pick_q6(s, g):
        return _np.repeat(s[[g, g + 1, 16 + g, 17 + g]], 8)

    def q6_offsets_pair(bsums, bo, w, sa, sb):
        bs = _flat(bsums, bo, 16, _np.int32)
        halves = [32 * (bs * _flat(w, o, 16, _np.int8).astype(_np.int32)).reshape(8, 2).sum(1) for o in (sa, sb)]
        return _np.concatenate(halves).astype(_np.int32)


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


if numba.config.DISABLE_JIT:
    def dot4_quad(acc, w, oa, ob, oc, od, x, xo):
        q = _np.concatenate([_nib(w, o) for o in (oa, ob, oc, od)]).astype(_np.int64)
        xv = _flat(x, xo, 32, _np.int64)
        return (acc + (q.reshape(4, 32) * xv).reshape(16, 8).sum(1)).astype(_np.int32)

    def fma_quad_sums(acc, p, offset, s):
        return _fma(acc, s, p.astype(_np.int64).reshape(4, 4).sum(1) - offset)


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


if numba.config.DISABLE_JIT:
    def dot_oct(w, starts, o, x, xo):
        xv = _flat(x, xo, 32, _np.int64)
        return _np.array([_nib(w, starts[r] + o).astype(_np.int64) @ xv for r in OCT], _np.int32)

    def scales_oct(w, starts, o, dx):
        return _f16s(w, [starts[r] + o for r in OCT]) * _np.float32(dx)

    def fma_oct(acc, p, offset, s):
        return _fma(acc, s, p.astype(_np.int64) - offset)
