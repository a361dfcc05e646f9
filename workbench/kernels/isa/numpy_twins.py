"""numpy twins of the intrinsics in `workbench.kernels.isa`, used in its place under NUMBA_DISABLE_JIT=1.

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


def f16_bits(x):
    return np.float16(x).view(np.uint16)


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


def store_vsums4(out, o, a0, a1, a2, a3):
    for k, a in enumerate((a0, a1, a2, a3)):
        out[o + k] = vsum(a)


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


_np, _vsum = np, vsum


# ---- x86 helpers and row pairs (isa.x86, isa.pairs) ----



def prefetch(a, o):
    pass


def max_f32(a, lo, hi):
    v = a[lo:hi]
    v = v[~np.isnan(v)]
    return np.float32(v.max()) if v.size else np.float32(-np.inf)


def vscale(v, s):
    return (v * np.float32(s)).astype(np.float32)

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


# ---- row quads (isa.quads) ----

def dot4_quad(acc, w, oa, ob, oc, od, x, xo):
    q = _np.concatenate([_nib(w, o) for o in (oa, ob, oc, od)]).astype(_np.int64)
    xv = _flat(x, xo, 32, _np.int64)
    return (acc + (q.reshape(4, 32) * xv).reshape(16, 8).sum(1)).astype(_np.int32)

def nibbles_quad(w, oa, ob, oc, od):
    q = _np.concatenate([_nib(w, o) for o in (oa, ob, oc, od)]).astype(_np.int64)
    return q, q  # the twin of `dot4_quad_nibbles` reads the four rows' 32 values from the first


def dot4_quad_nibbles(acc, lo, hi, x, xo):
    xv = _flat(x, xo, 32, _np.int64)
    return (acc + (lo.reshape(4, 32) * xv).reshape(16, 8).sum(1)).astype(_np.int32)


def fma_quad_sums(acc, p, offset, s):
    return _fma(acc, s, p.astype(_np.int64).reshape(4, 4).sum(1) - offset)


# ---- row octets (isa.octets) ----

OCT = (0, 1, 4, 5, 2, 3, 6, 7)

def dot_oct(w, starts, o, x, xo):
    xv = _flat(x, xo, 32, _np.int64)
    return _np.array([_nib(w, starts[r] + o).astype(_np.int64) @ xv for r in OCT], _np.int32)

def scales_oct(w, starts, o, dx):
    return _f16s(w, [starts[r] + o for r in OCT]) * _np.float32(dx)

def fma_oct(acc, p, offset, s):
    return _fma(acc, s, p.astype(_np.int64) - offset)



# ---- sixteen rows in sixteen lanes (isa.sixteen) ----

def nibbles16(w, o):
    chunks = [_flat(w, o + 64 * c, 64, _np.uint8) for c in range(4)]
    return tuple(v for n in chunks for v in (n & 15, n >> 4))

def dot16(acc, nibs, x, xo):
    p = acc.astype(_np.int64)
    for c in range(4):
        for h in range(2):
            xv = _flat(x, xo + 16 * h + 4 * c, 4, _np.int64)
            p = p + (nibs[2 * c + h].astype(_np.int64).reshape(16, 4) * xv).sum(1)
    return p.astype(_np.int32)

def fma16(acc, p, offset, w, so, dx):
    return _fma(acc, _flat(w, so, 16, _np.float16).astype(_np.float32) * _np.float32(dx), p.astype(_np.int64) - offset)

def store16(out, o, v):
    out.reshape(-1)[o : o + 16] = v

def scales16(w, so, dx):
    return _flat(w, so, 16, _np.float16).astype(_np.float32) * _np.float32(dx)

def chunks16_q8(w, o):
    return tuple(_flat(w, o + 64 * k, 64, _np.uint8) ^ 0x80 for k in range(8))

def fma16_q8(accs, chunks, xc, co, x, xo, s):
    out = []
    for k in range(8):
        xv = _flat(x, xo + 4 * k, 4, _np.int64)
        p = int(xc.reshape(-1)[co + k]) + (chunks[k].astype(_np.int64).reshape(16, 4) * xv).sum(1)
        out.append(_fma(accs[k], s, p))
    return tuple(out)

def zeros16x8():
    return tuple(_np.zeros(16, _np.float32) for _ in range(8))

def store16_hsum8(out, o, a):
    out.reshape(-1)[o : o + 16] = ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]))

def store16_hsum8_add(out, o, a, extra):
    out.reshape(-1)[o : o + 16] = (((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]))) + extra

def chunks16_q4(w, o):
    n = [_flat(w, o + 64 * c, 64, _np.uint8) for c in range(4)]
    return tuple([v & 15 for v in n] + [v >> 4 for v in n])

def chunks16_q5(w, o):
    out = [None] * 8
    for c in range(4):
        n = _flat(w, o + 64 + 64 * c, 64, _np.uint8)
        for h, nib in enumerate((n & 15, n >> 4)):
            k = c + 4 * h
            mask = int(_flat(w, o + 8 * k, 1, _np.uint64)[0])
            bits = ((mask >> _np.arange(64, dtype=_np.uint64)) & 1).astype(_np.uint8)
            out[k] = nib | (bits << 4)
    return tuple(out)

def f32_tile(out, w, r0, xp, t0, chunks, tokens, ahead=False, grouped=False):
    tile = xp[t0 * chunks * 64 : (t0 + tokens) * chunks * 64].reshape(4, chunks, tokens, 16)
    if grouped:  # rows r0..r0+3 as `repack_rows4` groups them: (chain, chunk, row, 16)
        body = w[r0 : r0 + 4].reshape(-1).view(_np.float32)[: 4 * chunks * 64].reshape(4, chunks, 4, 16)
        rows = body.transpose(2, 1, 0, 3).reshape(4, chunks * 64)
    else:
        rows = [w[r0 + i].view(_np.float32) for i in range(4)]
    for i in range(4):
        row = rows[i]
        for k in range(tokens):
            acc = [_np.zeros(16, _np.float32) for _ in range(4)]
            for m in range(chunks):
                for c in range(4):
                    j = 64 * m + 16 * c
                    acc[c] = _fma(acc[c], row[j : j + 16], tile[c, m, k])
            out[t0 + k, r0 + i] = vsum((acc[0] + acc[2]) + (acc[1] + acc[3]))
