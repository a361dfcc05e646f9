"""Float32 arithmetic exactly as ggml's x86 CPU code does it, for numba kernels.

Greedy decoding is chaotic: one float rounded differently in layer 3 flips an 8-bit
activation quantum in layer 4 and moves the logits by tenths 26 layers later. To give
llama.cpp's tokens we therefore reproduce its arithmetic *order*, not just its math:
- `fmaf`: one rounding for a*b+c, as `_mm512_fmadd_ps` (LLVM `llvm.fma.f32`);
- `expf_ggml`: the polynomial of ggml's `ggml_v_expf` (AVX-512 version), used by its
  softmax and SiLU instead of libm's expf;
- `reduce16`: the pairing of GCC's `_mm512_reduce_add_ps` over 16 lanes;
- `cosf` / `sinf`: libm's, as ggml's rope cache calls them (numba lowers float32
  `math.cos` to the C library's `cosf`).
Not ggml's: `tanhf`, for the exact-formula GELU of transformers' models. torch's own
tanh is not libm's either (Sleef's vectorized one, within 1 ulp); this one is within
1 ulp and written as plain arithmetic, so that a GELU loop vectorizes (libm's `tanhf`
is a call per value, ~20 ns: a tenth of a Gemma 3 1B prefill, more of GPT-2's).
"""

import math

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from workbench.kernels.jit import njit_serial


@intrinsic
def fmaf(typingctx, a, b, c):
    """a * b + c in float32 with a single rounding."""
    sig = types.float32(types.float32, types.float32, types.float32)

    def codegen(context, builder, signature, args):
        f32 = ir.FloatType()
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(f32, [f32] * 3), "llvm.fma.f32")
        return builder.call(fn, args)

    return sig, codegen


_EXP_SHIFT = np.float32(float.fromhex("0x1.8p23"))
_LOG2E = np.float32(float.fromhex("0x1.715476p+0"))
_LN2_HI = np.float32(float.fromhex("0x1.62e4p-1"))
_LN2_LO = np.float32(float.fromhex("0x1.7f7d1cp-20"))
_C5 = np.float32(float.fromhex("0x1.0e4020p-7"))
_C4 = np.float32(float.fromhex("0x1.573e2ep-5"))
_C3 = np.float32(float.fromhex("0x1.555e66p-3"))
_C2 = np.float32(float.fromhex("0x1.fffdb6p-2"))
_C1 = np.float32(float.fromhex("0x1.ffffecp-1"))
_ONE = np.float32(1.0)


@intrinsic
def scale2(typingctx, j, n):
    """float32(j * 2**n) rounded once, n a whole float32 in [-192, 192]: `vscalefps`'s
    result, computed as a float64 product (exact there) narrowed to float32. Plain IR
    with no call, so that loops of `expf_ggml` vectorize (math.ldexp is a libm call)."""
    sig = types.float32(types.float32, types.float32)

    def codegen(context, builder, signature, args):
        f64, i64 = ir.DoubleType(), ir.IntType(64)
        e = builder.add(builder.fptosi(args[1], i64), ir.Constant(i64, 1023))
        p2 = builder.bitcast(builder.shl(e, ir.Constant(i64, 52)), f64)
        return builder.fptrunc(builder.fmul(builder.fpext(args[0], f64), p2), ir.FloatType())

    return sig, codegen


@njit_serial
def expf_ggml(x):
    """exp(x) for float32 x, bit for bit as ggml_v_expf computes each lane."""
    x = np.float32(x)
    z = fmaf(x, _LOG2E, _EXP_SHIFT)
    n = z - _EXP_SHIFT  # round(x / ln 2) as a float
    b = fmaf(-n, _LN2_LO, fmaf(-n, _LN2_HI, x))  # x - n ln 2, in two steps
    u = b * b
    j = fmaf(fmaf(fmaf(_C5, b, _C4), u, fmaf(_C3, b, _C2)), u, fmaf(_C1, b, _ONE))
    # |n| > 192: 0 or inf, as ggml's fixup; written as selects (NaN passes through) so
    # that a loop over it vectorizes
    nc = n if n > np.float32(-192.0) else np.float32(-192.0)
    r = scale2(j, nc if nc < np.float32(192.0) else np.float32(192.0))
    r = np.float32(0.0) if n < np.float32(-192.0) else r
    return np.float32(np.inf) if n > np.float32(192.0) else r


@njit_serial
def silu_ggml(x):
    """x / (1 + exp(-x)) as ggml_v_silu: the exp is ggml's, the division IEEE."""
    return np.float32(x / (_ONE + expf_ggml(np.float32(0.0) - x)))


@njit_serial
def reduce16(a):
    """Sum of 16 float32 lanes a[0:16] in the order of GCC's _mm512_reduce_add_ps."""
    t0, t1, t2, t3 = a[8] + a[0], a[9] + a[1], a[10] + a[2], a[11] + a[3]
    t4, t5, t6, t7 = a[12] + a[4], a[13] + a[5], a[14] + a[6], a[15] + a[7]
    u0, u1, u2, u3 = t4 + t0, t5 + t1, t6 + t2, t7 + t3
    return np.float32((u0 + u2) + (u1 + u3))


@njit_serial
def cosf(x):
    return math.cos(np.float32(x))


@njit_serial
def sinf(x):
    return math.sin(np.float32(x))


# tanh(t) = t + t^3 P(t^2) for 0 <= t < 1: least squares on the relative error of tanh
# over 8000 Chebyshev-spaced points, at most 1.3e-10 there (float64 evaluation)
_P = (-0.33333333042571117, 0.13333320455347375, -0.05396631538417099, 0.02185519840482658,
      -0.008803193224421727, 0.003436923840760822, -0.0011992982694945446, 0.00031403021923966546,
      -4.3063859862046295e-05)
_P0, _P1, _P2, _P3, _P4, _P5, _P6, _P7, _P8 = _P


@njit_serial
def tanhf(x):
    """tanh(x) for float32 x within 1 ulp (0.94 at most over 25 million values; libm's
    tanhf: 2.1): the polynomial below |x| = 1, else (1 - e) / (1 + e) with
    e = exp(-2|x|) (`expf_ggml`), in float64, then x's sign."""
    t = np.float64(abs(np.float32(x)))
    u = t * t
    p = (((((((_P8 * u + _P7) * u + _P6) * u + _P5) * u + _P4) * u + _P3) * u + _P2) * u + _P1) * u + _P0
    small = t + t * u * p
    e = np.float64(expf_ggml(np.float32(-2.0) * np.float32(t)))
    big = (1.0 - e) / (1.0 + e)
    return np.float32(math.copysign(small if t < 1.0 else big, np.float64(x)))
