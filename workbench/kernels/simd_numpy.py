"""numpy twins of `workbench.kernels.simd`, used in its place under NUMBA_DISABLE_JIT=1.

Same names, same arguments, same results (up to the rounding of a fused multiply-add,
emulated here in float64): with them the kernels run as plain Python and can be stepped
through in a debugger or measured for coverage. Vectors are small numpy arrays. Slow;
never used when numba compiles.
"""

import numpy as np

LANES = 16


def _flat(a, offset, n, dtype):
    """`n` values of `dtype` at flat element `offset` of `a` (a byte offset for uint8)."""
    a = a.reshape(-1)
    if a.dtype == np.uint8 and dtype != np.uint8:
        return a[offset : offset + n * np.dtype(dtype).itemsize].view(dtype)
    return a[offset : offset + n].astype(dtype, copy=False)


def _pairs(q, x):
    p = q.astype(np.int32) * x.astype(np.int32)
    return p[0::2] + p[1::2]


def load_f16(buf, offset):
    return np.float32(_flat(buf, offset, 1, np.float16)[0])


def load_u32(buf, offset):
    return np.uint32(_flat(buf, offset, 1, np.uint32)[0])


def load_f32(buf, offset):
    return np.float32(_flat(buf, offset, 1, np.float32)[0])


def load_bf16(buf, offset):
    return (_flat(buf, offset, 1, np.uint16).astype(np.uint32) << 16).view(np.float32)[0]


def fmaf(a, b, c):
    return np.float32(np.float64(a) * np.float64(b) + np.float64(c))


def sub_offsets(p, bsums, bo, w, so, offset):
    bs = _flat(bsums, bo, LANES, np.int32)
    return p - offset * bs * _flat(w, so, LANES, np.int8).astype(np.int32)


def round_f16(x):
    return np.float32(np.float16(x))


def zeros_f32():
    return np.zeros(LANES, np.float32)


def zeros_i32():
    return np.zeros(LANES, np.int32)


def fma_quads(acc, d, p):
    q = p.copy()
    q[0::2] += p[1::2]
    return fma_block(acc, d, q)


def vsum_quads(acc):
    return vsum(acc[0::2])


def fma_block(acc, d, p):
    return (np.float64(d) * p.astype(np.float64) + acc).astype(np.float32)


def vsum(v):
    while v.size > 1:
        v = v[: v.size // 2] + v[v.size // 2 :]
    return v.dtype.type(v[0])


def dot_mins(mins, bsums, bo):
    m = np.array([int(mins) >> (8 * j) & 0xFF for j in range(8)], np.int64)
    bs = _flat(bsums, bo, 16, np.int64)
    return np.int32((m * (bs[0::2] + bs[1::2])).sum())


def vsum4(a0, a1, a2, a3):
    return vsum((a0 + a2) + (a1 + a3))


def pdot_i8(w, wo, x, xo):
    return _pairs(_flat(w, wo, 32, np.int8), _flat(x, xo, 32, np.int32))


def pdot_q4(w, wo, qh, offset, x, xo):
    b = _flat(w, wo, 16, np.uint8).astype(np.int32)
    q = np.concatenate([b & 15, b >> 4]) | (((int(qh) >> np.arange(32)) & 1) << 4)
    return _pairs(q - offset, _flat(x, xo, 32, np.int32))


def pdot_nibble(w, wo, shift, x, xo):
    q = (_flat(w, wo, 32, np.uint8).astype(np.int32) >> shift) & 15
    return _pairs(q, _flat(x, xo, 32, np.int32))


def pdot_q6(w, lo, lo_shift, hi, hi_shift, x, xo):
    low = (_flat(w, lo, 32, np.uint8).astype(np.int32) >> lo_shift) & 15
    high = (_flat(w, hi, 32, np.uint8).astype(np.int32) >> hi_shift) & 3
    return _pairs(low | (high << 4), _flat(x, xo, 32, np.int32))


def add_scaled(acc, p, s0, s1):
    return acc + p * np.repeat(np.array([s0, s1], np.int32), 8)


def _fma_float(dtype, acc, w, wo, x, xo):
    wv = _flat(w, wo, LANES, dtype)
    return (wv.astype(np.float64) * _flat(x, xo, LANES, np.float64) + acc).astype(np.float32)


def dot2_bf16(acc, w, wo, x, xo):
    wv = (_flat(w, wo, 32, np.uint16).astype(np.uint32) << 16).view(np.float32)
    p = wv * _flat(x, xo, 32, np.float32)
    return (acc + p[1::2]) + p[0::2]


def fma_f32(acc, w, wo, x, xo):
    return _fma_float(np.float32, acc, w, wo, x, xo)


def fma_f16(acc, w, wo, x, xo):
    return _fma_float(np.float16, acc, w, wo, x, xo)
