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

Contract: every function reads consecutive elements starting at a *flat element offset*
of a C-contiguous array (a byte offset for uint8 weights), with no bounds check; the
wrappers in `linear.py` validate all shapes first. Activations are int16 (q8 values
widened once per call, which saves a shuffle per block) or float32. With
NUMBA_DISABLE_JIT=1 the same names are numpy functions on small arrays, for debugging.

Not here: scales, formats, loops. Each kernel file composes these.
"""

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, models, register_model

_i8, _i16, _i32 = ir.IntType(8), ir.IntType(16), ir.IntType(32)
_f16, _f32 = ir.HalfType(), ir.FloatType()
LANES = 16


class _Vector(types.Type):
    def __init__(self, name, element):
        self.element = element
        super().__init__(name=name)


i32x16 = _Vector("i32x16", _i32)
f32x16 = _Vector("f32x16", _f32)


@register_model(_Vector)
class _VectorModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, ir.VectorType(fe_type.element, LANES))


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


def _fma(builder, a, b, c):
    fnty = ir.FunctionType(a.type, [a.type] * 3)
    fn = cgutils.get_or_insert_function(builder.module, fnty, f"llvm.fma.v{LANES}f32")
    return builder.call(fn, [a, b, c])


# ---- scalars ---------------------------------------------------------------------------------


@intrinsic
def _load_f16(typingctx, buf, offset):
    """The fp16 at a byte offset of a uint8 array, widened to float32."""
    def codegen(context, builder, sig, args):
        return builder.fpext(_load(context, builder, sig.args[0], *args, _f16), _f32)
    return types.float32(buf, types.intp), codegen


@intrinsic
def _load_u32(typingctx, buf, offset):
    """The little-endian uint32 at a byte offset of a uint8 array."""
    def codegen(context, builder, sig, args):
        return _load(context, builder, sig.args[0], *args, _i32)
    return types.uint32(buf, types.intp), codegen


@intrinsic
def _load_f32(typingctx, buf, offset):
    """The float32 at a byte offset of a uint8 array."""
    def codegen(context, builder, sig, args):
        return _load(context, builder, sig.args[0], *args, _f32)
    return types.float32(buf, types.intp), codegen


@intrinsic
def _load_bf16(typingctx, buf, offset):
    """The bf16 at a byte offset of a uint8 array, widened to float32."""
    def codegen(context, builder, sig, args):
        h = builder.zext(_load(context, builder, sig.args[0], *args, _i16), _i32)
        return builder.bitcast(builder.shl(h, ir.Constant(_i32, 16)), _f32)
    return types.float32(buf, types.intp), codegen


@intrinsic
def _round_f16(typingctx, x):
    """float32 rounded to the nearest fp16 (ties to even, as F16C) and widened back."""
    def codegen(context, builder, sig, args):
        return builder.fpext(builder.fptrunc(args[0], _f16), _f32)
    return types.float32(types.float32), codegen


# ---- accumulators ------------------------------------------------------------------------------


@intrinsic
def _zeros_f32(typingctx):
    def codegen(context, builder, sig, args):
        return _const(_f32, LANES, 0.0)
    return f32x16(), codegen


@intrinsic
def _zeros_i32(typingctx):
    def codegen(context, builder, sig, args):
        return _const(_i32, LANES, 0)
    return i32x16(), codegen


@intrinsic
def _add_i32(typingctx, a, b):
    def codegen(context, builder, sig, args):
        return builder.add(*args)
    return i32x16(i32x16, i32x16), codegen


@intrinsic
def _fma_block(typingctx, acc, d, p):
    """acc + d * float(p), lane by lane, fused: one block's scaled contribution."""
    def codegen(context, builder, sig, args):
        acc_, d_, p_ = args
        pf = builder.sitofp(p_, _vt(_f32))
        return _fma(builder, _splat(builder, d_), pf, acc_)
    return f32x16(f32x16, types.float32, i32x16), codegen


@intrinsic
def _vsum(typingctx, acc):
    """The lanes of an f32x16 summed pairwise (fixed order), or of an i32x16 (exact)."""
    if acc == f32x16:
        def codegen(context, builder, sig, args):
            return _tree_sum(builder, args[0], builder.fadd)
        return types.float32(f32x16), codegen
    if acc == i32x16:
        def codegen(context, builder, sig, args):
            return _tree_sum(builder, args[0], builder.add)
        return types.int32(i32x16), codegen
    return None


# ---- integer block dots: lanes sum to the exact dot ----------------------------------------------


@intrinsic
def _pdot_i8(typingctx, w, wo, x, xo):
    """q8_0: sum_{j<32} int8(w[wo+j]) * x[xo+j], x int16."""
    def codegen(context, builder, sig, args):
        q = builder.sext(_load(context, builder, sig.args[0], args[0], args[1], _i8, 32), _vt(_i16, 32))
        x = _load(context, builder, sig.args[2], args[2], args[3], _i16, 32)
        return _pairwise_madd(builder, q, x)
    return i32x16(w, types.intp, x, types.intp), codegen


@intrinsic
def _pdot_q4(typingctx, w, wo, qh, x, xo):
    """q4_0 / q4_1 / q5_0: sum_{j<32} q_j * x[xo+j], q_j = nibble j of the 16 bytes at
    w[wo] (low nibbles are j = 0..15, high ones 16..31) | (bit j of qh) << 4."""
    def codegen(context, builder, sig, args):
        w_, wo_, qh_, x_, xo_ = args
        q = _nibbles16(builder, _load(context, builder, sig.args[0], w_, wo_, _i8, 16))
        high = builder.zext(builder.bitcast(qh_, _vt(ir.IntType(1), 32)), _vt(_i16, 32))
        q = builder.or_(q, builder.shl(high, _const(_i16, 32, 4)))
        x = _load(context, builder, sig.args[3], x_, xo_, _i16, 32)
        return _pairwise_madd(builder, q, x)
    return i32x16(w, types.intp, types.uint32, x, types.intp), codegen


@intrinsic
def _pdot_nibble(typingctx, w, wo, shift, x, xo):
    """q4_K sub-block: sum_{j<32} ((w[wo+j] >> shift) & 15) * x[xo+j] (shift 0 or 4)."""
    def codegen(context, builder, sig, args):
        w_, wo_, sh_, x_, xo_ = args
        q = _field32(builder, _load(context, builder, sig.args[0], w_, wo_, _i8, 32), sh_, 15)
        x = _load(context, builder, sig.args[3], x_, xo_, _i16, 32)
        return _pairwise_madd(builder, q, x)
    return i32x16(w, types.intp, types.intp, x, types.intp), codegen


@intrinsic
def _pdot_q6(typingctx, w, lo, lo_shift, hi, hi_shift, x, xo):
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
def _add_scaled(typingctx, acc, p, s0, s1):
    """acc + p * s lane by lane, s = s0 in lanes 0..7 and s1 in lanes 8..15: the sub-block
    scales of a pdot over 32 values (lanes 0..7 hold values 0..15, lanes 8..15 the rest)."""
    def codegen(context, builder, sig, args):
        acc_, p_, s0_, s1_ = args
        half = lambda v: _splat(builder, builder.trunc(v, _i32), 8)  # noqa: E731
        return builder.add(acc_, builder.mul(p_, _concat(builder, half(s0_), half(s1_))))
    return i32x16(i32x16, i32x16, types.int64, types.int64), codegen


# ---- float block dots ------------------------------------------------------------------------


def _make_fma_float(kind):
    @intrinsic
    def fma_float(typingctx, acc, w, wo, x, xo):
        """acc + w_j * x[xo+j] for 16 values of `kind` at byte offset wo of uint8 w."""
        def codegen(context, builder, sig, args):
            acc_, w_, wo_, x_, xo_ = args
            if kind == "f32":
                wv = _load(context, builder, sig.args[1], w_, wo_, _f32, LANES)
            elif kind == "f16":
                h = _load(context, builder, sig.args[1], w_, wo_, _i16, LANES)
                wv = builder.fpext(builder.bitcast(h, _vt(_f16)), _vt(_f32))
            else:  # bf16 is the high half of a float32
                h = _load(context, builder, sig.args[1], w_, wo_, _i16, LANES)
                bits = builder.shl(builder.zext(h, _vt(_i32)), _const(_i32, LANES, 16))
                wv = builder.bitcast(bits, _vt(_f32))
            xv = _load(context, builder, sig.args[3], x_, xo_, _f32, LANES)
            return _fma(builder, wv, xv, acc_)
        return f32x16(f32x16, w, types.intp, x, types.intp), codegen
    return fma_float


# ---- numpy twins for NUMBA_DISABLE_JIT=1 ---------------------------------------------------


def _flat(a, offset, n, dtype):
    """`n` values of `dtype` at flat element `offset` of `a` (a byte offset for uint8)."""
    a = a.reshape(-1)
    if a.dtype == np.uint8 and dtype != np.uint8:
        return a[offset : offset + n * np.dtype(dtype).itemsize].view(dtype)
    return a[offset : offset + n].astype(dtype, copy=False)


def _pairs(q, x):
    p = q.astype(np.int32) * x.astype(np.int32)
    return p[0::2] + p[1::2]


def _py_fma(acc, d, p):
    exact = np.float64(d) * p.astype(np.float64) + acc.astype(np.float64)
    return exact.astype(np.float32)


def _py_pdot_q4(w, wo, qh, x, xo):
    b = _flat(w, wo, 16, np.uint8).astype(np.int32)
    q = np.concatenate([b & 15, b >> 4]) | (((int(qh) >> np.arange(32)) & 1) << 4)
    return _pairs(q, _flat(x, xo, 32, np.int32))


def _py_pdot_nibble(w, wo, shift, x, xo):
    q = (_flat(w, wo, 32, np.uint8).astype(np.int32) >> shift) & 15
    return _pairs(q, _flat(x, xo, 32, np.int32))


def _py_pdot_q6(w, lo, lo_shift, hi, hi_shift, x, xo):
    low = (_flat(w, lo, 32, np.uint8).astype(np.int32) >> lo_shift) & 15
    high = (_flat(w, hi, 32, np.uint8).astype(np.int32) >> hi_shift) & 3
    return _pairs(low | (high << 4), _flat(x, xo, 32, np.int32))


def _py_add_scaled(acc, p, s0, s1):
    return acc + p * np.repeat(np.array([s0, s1], np.int32), 8)


def _py_fma_float(kind):
    def fma_float(acc, w, wo, x, xo):
        if kind == "bf16":
            wv = (_flat(w, wo, LANES, np.uint16).astype(np.uint32) << 16).view(np.float32)
        else:
            wv = _flat(w, wo, LANES, np.float32 if kind == "f32" else np.float16)
        return _py_fma(acc, 1.0, wv.astype(np.float64) * _flat(x, xo, LANES, np.float64))
    return fma_float


def _py_vsum(v):
    while v.size > 1:
        v = v[: v.size // 2] + v[v.size // 2 :]
    return v.dtype.type(v[0])


if numba.config.DISABLE_JIT:
    load_f16 = lambda buf, o: np.float32(_flat(buf, o, 1, np.float16)[0])  # noqa: E731
    load_u32 = lambda buf, o: np.uint32(_flat(buf, o, 1, np.uint32)[0])  # noqa: E731
    load_f32 = lambda buf, o: np.float32(_flat(buf, o, 1, np.float32)[0])  # noqa: E731
    load_bf16 = lambda buf, o: (_flat(buf, o, 1, np.uint16).astype(np.uint32) << 16).view(np.float32)[0]  # noqa: E731,E501
    round_f16 = lambda x: np.float32(np.float16(x))  # noqa: E731
    zeros_f32 = lambda: np.zeros(LANES, np.float32)  # noqa: E731
    zeros_i32 = lambda: np.zeros(LANES, np.int32)  # noqa: E731
    add_i32 = lambda a, b: a + b  # noqa: E731
    fma_block, vsum = _py_fma, _py_vsum
    pdot_i8 = lambda w, wo, x, xo: _pairs(_flat(w, wo, 32, np.int8), _flat(x, xo, 32, np.int32))  # noqa: E731
    pdot_q4, pdot_nibble, pdot_q6, add_scaled = _py_pdot_q4, _py_pdot_nibble, _py_pdot_q6, _py_add_scaled
    fma_f32, fma_f16, fma_bf16 = (_py_fma_float(k) for k in ("f32", "f16", "bf16"))
else:
    load_f16, load_u32, round_f16 = _load_f16, _load_u32, _round_f16
    load_f32, load_bf16 = _load_f32, _load_bf16
    zeros_f32, zeros_i32, add_i32, fma_block, vsum = _zeros_f32, _zeros_i32, _add_i32, _fma_block, _vsum
    pdot_i8, pdot_q4, pdot_nibble, pdot_q6 = _pdot_i8, _pdot_q4, _pdot_nibble, _pdot_q6
    add_scaled = _add_scaled
    fma_f32, fma_f16, fma_bf16 = (_make_fma_float(k) for k in ("f32", "f16", "bf16"))
