"""x86 building blocks: which vector instructions this CPU has, and the block-dot pieces
that lower to them (`vpdpbusd` with 512-bit VNNI, `vpmaddubsw` + `vpmaddwd` with AVX2,
widening arithmetic elsewhere): the same integers on every CPU, so a kernel built on
them is one kernel whose instructions differ by machine, never its results."""

import functools

import llvmlite.binding as _llvm
import numba
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from workbench.kernels.isa.vectors import (
    LANES,
    _concat,
    _const,
    _f32,
    _i8,
    _i16,
    _i32,
    _load,
    _splat,
    _tree_sum,
    _Vector,
    _vt,
    f32x16,
    i32x16,
)

u8x64 = _Vector("u8x64", _i8, 64)
i16x32 = _Vector("i16x32", _i16, 32)
f32x8 = _Vector("f32x8", _f32, 8)
f32x4 = _Vector("f32x4", _f32, 4)


@functools.cache
def cpu_features() -> frozenset[str]:
    """The features (LLVM names) of the CPU numba compiles for: those of
    NUMBA_CPU_FEATURES when set (as numba's codegen decides), else the host's. Read once:
    numba fixes its target when it starts, and every intrinsic's codegen and every kernel
    code asks."""
    if numba.config.CPU_FEATURES is not None:
        return frozenset(f[1:] for f in numba.config.CPU_FEATURES.split(",") if f.startswith("+"))
    if numba.config.CPU_NAME is not None:  # a named CPU without its features: assume none (portable code)
        return frozenset()
    return frozenset(f for f, on in _llvm.get_host_cpu_features().items() if on)


def _target_has(*features: str) -> bool:
    """Whether the CPU numba compiles for has all `features` (LLVM names)."""
    return all(f in cpu_features() for f in features)


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
def vscale(typingctx, v, s):
    """v * s lane by lane (f32x16 times a float32 scalar, each product rounded once)."""
    def codegen(context, builder, sig, args):
        return builder.fmul(args[0], _splat(builder, args[1], 16))
    return f32x16(f32x16, types.float32), codegen


@intrinsic
def max_f32(typingctx, a, lo, hi):
    """max(a[lo:hi]) of a float32 array (-inf when empty), 16 lanes at a time: a float
    max loop does not vectorize without fast-math, and the max of a set is one value
    whatever the order (NaN is skipped, as Python's max(best, nan) keeps best)."""
    def codegen(context, builder, sig, args):
        ary, lo_, hi_ = args
        data = context.make_array(sig.args[0])(context, builder, value=ary).data
        v16 = _vt(_f32, 16)
        vmax = cgutils.get_or_insert_function(builder.module, ir.FunctionType(v16, [v16, v16]), "llvm.maxnum.v16f32")
        smax = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_f32, [_f32, _f32]), "llvm.maxnum.f32")
        red = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_f32, [v16]),
                                             "llvm.vector.reduce.fmax.v16f32")
        acc = cgutils.alloca_once_value(builder, _const(_f32, 16, float("-inf")))
        n16 = builder.sdiv(builder.sub(hi_, lo_), ir.Constant(hi_.type, 16))
        with cgutils.for_range(builder, n16) as loop:
            at = builder.add(lo_, builder.mul(loop.index, ir.Constant(hi_.type, 16)))
            v = builder.load(builder.bitcast(builder.gep(data, [at]), v16.as_pointer()), align=4)
            builder.store(builder.call(vmax, [builder.load(acc), v]), acc)
        m = cgutils.alloca_once_value(builder, builder.call(red, [builder.load(acc)]))
        tail = builder.add(lo_, builder.mul(n16, ir.Constant(hi_.type, 16)))
        with cgutils.for_range(builder, builder.sub(hi_, tail)) as loop:
            x = builder.load(builder.gep(data, [builder.add(tail, loop.index)]))
            builder.store(builder.call(smax, [builder.load(m), x]), m)
        return builder.load(m)
    return types.float32(a, types.intp, types.intp), codegen


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


if numba.config.DISABLE_JIT:  # numpy twins of the same names, to step through kernels
    from workbench.kernels.isa.numpy_twins import (  # noqa: F401, F811, E402
        hsum_hi,
        hsum_lo,
        lane,
        max_f32,
        prefetch,
        vadd,
        vscale,
        vsub,
        zeros_f32x4,
        zeros_f32x8,
    )
