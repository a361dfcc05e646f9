"""Float weights f32, f16, bf16: codecs, get-rows and matvec kernels, three table rows.


Contract of every matvec kernel (`base.WeightFormat`):
    out (T, rows) float32 = x (T, cols) float32 @ W.T, W given as raw GGUF bytes
    w (rows, cols * 4 or 2) uint8; all arrays C-contiguous and already validated by
    `workbench.kernels.linear` (these kernels check nothing).
As llama.cpp's CPU backend, x is first rounded to the weight's precision for f16 and
bf16 (its vec_dot type), so every product is exact in float32. The sums follow
`ggml_vec_dot_f32` / `ggml_vec_dot_f16` (AVX-512 build without AVX512-FP16, what
llama-cpp-python compiles here): four 16-lane float32 accumulators over chunks of 64
columns with fused multiply-adds, reduced as GGML_F32x16_REDUCE, then the columns past
the last full chunk one by one; bf16 follows `ggml_vec_dot_bf16`'s AVX512-BF16 path
(`vdpbf16ps`: two products per lane, added one at a time). Results are equal bit for bit
to llama.cpp's when cols is a multiple of 64 (all real models; the tail's additions
may round differently where llama.cpp's compiler fuses them). A llama.cpp built for a
CPU without AVX-512 sums in 8-lane accumulators instead; there the two agree to float32
rounding of the sum, not bit for bit (the quantized kernels' order is the same in both).

Each format has one variant, "lanes64" (one row per pass, 64 columns per chunk), its
own reference. The codecs round as ggml: f16 IEEE nearest-even (F16C `vcvtps2ph`,
numpy's `astype(float16)`), bf16 as `ggml_compute_fp32_to_bf16` (nearest-even, NaN
forced quiet).
"""

import numba
import numpy as np
from numba import prange, types
from numba.extending import intrinsic

from workbench.kernels.formats.activations import round_rows_bf16, round_rows_f16
from workbench.kernels.formats.base import SERIAL, Variant, WeightFormat
from workbench.kernels.isa.f32_tile import CHAINS
from workbench.kernels.isa.f32_tile import ROWS as TILE_ROWS
from workbench.kernels.isa.f32_tile import TOKENS as TILE_TOKENS
from workbench.kernels.isa.f32_tile import f32_tile, pack_tile, pack_tiles
from workbench.kernels.isa.vectors import (
    LANES,
    _f16,
    _f32,
    _fma,
    _i16,
    _load,
    _vt,
    f32x16,
    dot2_bf16,
    fma_f16,
    fma_f32,
    load_bf16,
    load_f16,
    load_f32,
    vsum,
    vsum4,
    zeros_f32,
)
from workbench.kernels.jit import njit_parallel, njit_serial

GGML_F32, GGML_F16, GGML_BF16 = 0, 1, 30


# ---- numpy references ---------------------------------------------------------------------

def round_f16_ref(x: np.ndarray) -> np.ndarray:
    """float32 values rounded to the nearest fp16 and widened back to float32."""
    return x.astype(np.float16).astype(np.float32)


def bf16_bits(x: np.ndarray) -> np.ndarray:
    """float32 -> bf16 bit patterns (uint16), as ggml_compute_fp32_to_bf16."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    is_nan = (u & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000)
    rounded = (u.astype(np.uint64) + (0x7FFF + ((u >> 16) & 1))) >> 16
    quiet_nan = (u >> 16) | np.uint32(64)
    return np.where(is_nan, quiet_nan, rounded).astype(np.uint16)


def round_bf16(x: np.ndarray) -> np.ndarray:
    """float32 values rounded to the nearest bf16 and widened back to float32."""
    return (bf16_bits(x).astype(np.uint32) << 16).view(np.float32)


def dequantize_f32(blocks: np.ndarray) -> np.ndarray:
    return blocks.copy().view(np.float32)


def quantize_f32(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float32).view(np.uint8)


def dequantize_f16(blocks: np.ndarray) -> np.ndarray:
    return blocks.copy().view(np.float16).astype(np.float32)


def quantize_f16(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float32).astype(np.float16).view(np.uint8)


def dequantize_bf16(blocks: np.ndarray) -> np.ndarray:
    return (blocks.copy().view(np.uint16).astype(np.uint32) << 16).view(np.float32)


def quantize_bf16(x: np.ndarray) -> np.ndarray:
    return bf16_bits(x).view(np.uint8)


# ---- get-rows -------------------------------------------------------------------------------

@njit_serial
def get_rows_f32(out, w, ids):
    for t in range(ids.shape[0]):
        row = w[ids[t]]
        for j in range(out.shape[1]):
            out[t, j] = load_f32(row, 4 * j)


@njit_serial
def get_rows_f16(out, w, ids):
    for t in range(ids.shape[0]):
        row = w[ids[t]]
        for j in range(out.shape[1]):
            out[t, j] = load_f16(row, 2 * j)


@njit_serial
def get_rows_bf16(out, w, ids):
    for t in range(ids.shape[0]):
        row = w[ids[t]]
        for j in range(out.shape[1]):
            out[t, j] = load_bf16(row, 2 * j)


# ---- matvec ---------------------------------------------------------------------------------

STEP = 4 * LANES  # columns per chunk: four accumulators of 16 lanes
# tokens per block of an f32 prefill: AMD EPYC Zen 4, T = 504, x packed, GFLOP/s at 1 / 2
# threads for 13824 x 1152: blocks of 48 at 58 / 111, 96 at 68-76 / 70-126, 192 at 72-78 /
# 93-121, all 504 at 76 / 128; 1152 x 6912: 48 at 52 / 103, 192 at 60-64 / 123-126, 504 at
# 48 / 104 (its block of x, 14 MB, no longer stays in L3 beside the weights); noisy, +-15%
TOKEN_BLOCK = 192
AHEAD = True  # the first tile of a block prefetches the next rows (see f32_tile)


@intrinsic
def load_w(typingctx, w, wo, half):
    """16 weights at byte offset wo of uint8 w as an f32x16: float32, or fp16 widened
    (`half`: a literal bool); loaded once for the products of several tokens."""
    def codegen(context, builder, sig, args):
        w_, wo_, _ = args
        if sig.args[2].literal_value:
            h = _load(context, builder, sig.args[0], w_, wo_, _i16, LANES)
            return builder.fpext(builder.bitcast(h, _vt(_f16)), _vt(_f32))
        return _load(context, builder, sig.args[0], w_, wo_, _f32, LANES)
    if not isinstance(half, types.BooleanLiteral):
        return None
    return f32x16(w, types.intp, half), codegen


@intrinsic
def load_x(typingctx, x, xo):
    """16 float32 at flat element xo of x."""
    def codegen(context, builder, sig, args):
        return _load(context, builder, sig.args[0], args[0], args[1], _f32, LANES)
    return f32x16(x, types.intp), codegen


@intrinsic
def fma_v(typingctx, acc, a, b):
    """acc + a * b lane by lane, fused (`fma_f32` with both operands loaded)."""
    def codegen(context, builder, sig, args):
        return _fma(builder, args[1], args[2], args[0])
    return f32x16(f32x16, f32x16, f32x16), codegen


if numba.config.DISABLE_JIT:  # numpy twins, to step through the kernels as Python
    def load_w(w, wo, half):
        return w[wo : wo + (2 if half else 4) * LANES].view(np.float16 if half else np.float32).astype(np.float32)

    def load_x(x, xo):
        return x.reshape(-1)[xo : xo + LANES].astype(np.float32)

    def fma_v(acc, a, b):
        return (a.astype(np.float64) * b.astype(np.float64) + acc).astype(np.float32)


@njit_serial
def _tile(ra, rb, x, t, half):
    """Rows ra, rb (their bytes) x tokens t, t+1 over the 64-column chunks, each weight and
    x vector loaded once for two products; each (row, token) keeps its four accumulators
    exactly as the one-token path does. Returns the four sums (tails are the caller's)."""
    cols = x.shape[1]
    size = 2 if half else 4
    body = cols - cols % STEP
    a0, a1, a2, a3 = zeros_f32(), zeros_f32(), zeros_f32(), zeros_f32()  # ra, t
    b0, b1, b2, b3 = zeros_f32(), zeros_f32(), zeros_f32(), zeros_f32()  # rb, t
    c0, c1, c2, c3 = zeros_f32(), zeros_f32(), zeros_f32(), zeros_f32()  # ra, t + 1
    d0, d1, d2, d3 = zeros_f32(), zeros_f32(), zeros_f32(), zeros_f32()  # rb, t + 1
    x0, x1 = t * cols, (t + 1) * cols
    for j in range(0, body, STEP):
        u0, u1 = load_w(ra, size * j, half), load_w(ra, size * (j + LANES), half)
        u2, u3 = load_w(ra, size * (j + 2 * LANES), half), load_w(ra, size * (j + 3 * LANES), half)
        v0, v1 = load_w(rb, size * j, half), load_w(rb, size * (j + LANES), half)
        v2, v3 = load_w(rb, size * (j + 2 * LANES), half), load_w(rb, size * (j + 3 * LANES), half)
        y0, y1 = load_x(x, x0 + j), load_x(x, x0 + j + LANES)
        y2, y3 = load_x(x, x0 + j + 2 * LANES), load_x(x, x0 + j + 3 * LANES)
        a0, a1, a2, a3 = fma_v(a0, u0, y0), fma_v(a1, u1, y1), fma_v(a2, u2, y2), fma_v(a3, u3, y3)
        b0, b1, b2, b3 = fma_v(b0, v0, y0), fma_v(b1, v1, y1), fma_v(b2, v2, y2), fma_v(b3, v3, y3)
        y0, y1 = load_x(x, x1 + j), load_x(x, x1 + j + LANES)
        y2, y3 = load_x(x, x1 + j + 2 * LANES), load_x(x, x1 + j + 3 * LANES)
        c0, c1, c2, c3 = fma_v(c0, u0, y0), fma_v(c1, u1, y1), fma_v(c2, u2, y2), fma_v(c3, u3, y3)
        d0, d1, d2, d3 = fma_v(d0, v0, y0), fma_v(d1, v1, y1), fma_v(d2, v2, y2), fma_v(d3, v3, y3)
    return vsum4(a0, a1, a2, a3), vsum4(b0, b1, b2, b3), vsum4(c0, c1, c2, c3), vsum4(d0, d1, d2, d3)


@njit_serial
def _plain_row(out, row, x, r, t0, T):
    """Tokens t0 .. T - 1 of one GGUF-layout row, the reference order (`ggml_vec_dot_f32`)."""
    cols = x.shape[1]
    body = cols - cols % STEP
    for t in range(t0, T):
        a0, a1, a2, a3 = zeros_f32(), zeros_f32(), zeros_f32(), zeros_f32()
        xo = t * cols
        for j in range(0, body, STEP):
            a0 = fma_f32(a0, row, 4 * j, x, xo + j)
            a1 = fma_f32(a1, row, 4 * (j + LANES), x, xo + j + LANES)
            a2 = fma_f32(a2, row, 4 * (j + 2 * LANES), x, xo + j + 2 * LANES)
            a3 = fma_f32(a3, row, 4 * (j + 3 * LANES), x, xo + j + 3 * LANES)
        s = vsum4(a0, a1, a2, a3)
        for j in range(body, cols):
            s += load_f32(row, 4 * j) * x[t, j]
        out[t, r] = s


def _matvec_f32(out, w, x, i8, i32, f32):
    # W (rows, cols*4) @ x (T, cols) -> out (T, rows); f32: room for x packed
    T, cols = x.shape
    body = cols - cols % STEP
    # prefill: tiles of TILE_ROWS rows x TILE_TOKENS tokens (`isa.f32_tile`) on x packed
    # into f32 (or a buffer of its own when the caller gave less), tokens in blocks of
    # TOKEN_BLOCK so that the block of x is reused by every row of the matrix (the last
    # tokens in a narrower tile: one more pass over the weights costs more)
    rows, tiled = w.shape[0] - w.shape[0] % TILE_ROWS, T if T >= TILE_TOKENS else 0
    xp = f32 if f32.size >= tiled * body else np.empty(tiled * body, np.float32)
    if tiled:  # x packed tile by tile across the threads
        for q in prange((tiled + TILE_TOKENS - 1) // TILE_TOKENS):
            pack_tile(xp, x, q * TILE_TOKENS, body // STEP)
    for t0 in range(0, tiled, TOKEN_BLOCK):
        for g in prange(rows // TILE_ROWS):
            r = TILE_ROWS * g
            for t in range(t0, min(t0 + TOKEN_BLOCK, tiled), TILE_TOKENS):
                n = min(TILE_TOKENS, tiled - t)
                f32_tile(out, w, r, xp, t, body // STEP, n, AHEAD and t == t0, False)
                for i in range(TILE_ROWS):  # the columns past the last chunk, one by one
                    for k in range(n):
                        s = out[t + k, r + i]
                        for j in range(body, cols):
                            s += load_f32(w[r + i], 4 * j) * x[t + k, j]
                        out[t + k, r + i] = s
    for r in prange(w.shape[0]):
        _plain_row(out, w[r], x, r, tiled if r < rows else 0, T)


def repack_rows4(w: np.ndarray) -> np.ndarray:
    """GGUF float32 bytes (rows, cols * 4) -> the "rows4" layout, same shape (a new array):
    each group of TILE_ROWS rows becomes one stream, chain c of chunk m of row i (the 16
    columns 64m + 16c ..) at float ((c * chunks + m) * 4 + i) * 16 of the group, then the
    four rows' columns past the last chunk, row after row. Rows after the last whole group
    stay as they are. Done in slices of groups, so that a 1 GB embedding needs no 1 GB
    temporary."""
    rows, nb = w.shape
    cols = nb // 4
    chunks = cols // STEP
    body, groups = chunks * STEP, rows // TILE_ROWS
    out = np.empty_like(w)
    out[groups * TILE_ROWS:] = w[groups * TILE_ROWS:]
    f = w[: groups * TILE_ROWS].view(np.float32).reshape(groups, TILE_ROWS, cols)
    o = out[: groups * TILE_ROWS].view(np.float32).reshape(groups, TILE_ROWS * cols)
    for g in range(0, groups, 4096):
        part = f[g : g + 4096]
        n = part.shape[0]
        o[g : g + n, : TILE_ROWS * body] = (part[:, :, :body].reshape(n, TILE_ROWS, chunks, CHAINS, LANES)
                                            .transpose(0, 3, 2, 1, 4).reshape(n, -1))
        o[g : g + n, TILE_ROWS * body:] = part[:, :, body:].reshape(n, -1)
    return out


def unpack_rows4(w: np.ndarray) -> np.ndarray:
    """The inverse of `repack_rows4`: the GGUF layout again."""
    rows, nb = w.shape
    cols = nb // 4
    chunks = cols // STEP
    body, groups = chunks * STEP, rows // TILE_ROWS
    out = w.copy()
    f = w[: groups * TILE_ROWS].view(np.float32).reshape(groups, TILE_ROWS * cols)
    o = out[: groups * TILE_ROWS].view(np.float32).reshape(groups, TILE_ROWS, cols)
    o[:, :, :body] = (f[:, : TILE_ROWS * body].reshape(groups, CHAINS, chunks, TILE_ROWS, LANES)
                      .transpose(0, 3, 2, 1, 4).reshape(groups, TILE_ROWS, body))
    o[:, :, body:] = f[:, TILE_ROWS * body:].reshape(groups, TILE_ROWS, cols - body)
    return out


def _matvec_f32_rows4(out, w, x, i8, i32, f32):
    # W ("rows4" layout, `repack_rows4`) @ x (T, cols) -> out (T, rows): every token count,
    # a decode step too, runs the tile on the grouped rows (one weight stream per group)
    T, cols = x.shape
    chunks = cols // STEP
    body = chunks * STEP
    groups = w.shape[0] // TILE_ROWS
    wf = w.reshape(-1)
    xp = f32 if f32.size >= T * body else np.empty(T * body, np.float32)
    if T <= TILE_TOKENS:
        pack_tiles(xp, x, chunks)  # a decode step: not worth a parallel region
    else:
        for q in prange((T + TILE_TOKENS - 1) // TILE_TOKENS):
            pack_tile(xp, x, q * TILE_TOKENS, chunks)
    # a decode step has a loop of its own, and the columns past the last chunk (none in any
    # real model's width) a pass of their own: inside the loop over token tiles, with it, a
    # decode step of 262144 x 1152 read 23 GB/s against 31 for lanes64 (AMD EPYC Zen 4, 1
    # thread, interleaved); now both read 30-32
    if T == 1:
        for g in prange(groups):
            f32_tile(out, w, TILE_ROWS * g, xp, 0, chunks, 1, False, True)
    for t0 in range(0, T if T > 1 else 0, TOKEN_BLOCK):
        for g in prange(groups):
            for t in range(t0, min(t0 + TOKEN_BLOCK, T), TILE_TOKENS):
                f32_tile(out, w, TILE_ROWS * g, xp, t, chunks, min(TILE_TOKENS, T - t), AHEAD and t == t0, True)
    if cols > body:  # the columns past the last chunk, one by one
        for g in prange(groups):
            r = TILE_ROWS * g
            tail = r * w.shape[1] + 4 * TILE_ROWS * body  # byte of the group's tails
            for i in range(TILE_ROWS):
                for t in range(T):
                    s = out[t, r + i]
                    for j in range(cols - body):
                        s += load_f32(wf, tail + 4 * (i * (cols - body) + j)) * x[t, body + j]
                    out[t, r + i] = s
    if groups * TILE_ROWS < w.shape[0]:
        for r in prange(groups * TILE_ROWS, w.shape[0]):
            _plain_row(out, w[r], x, r, 0, T)


def _matvec_f16(out, w, x, i8, i32, f32):
    # W (rows, cols*2) @ x (T, cols) -> out (T, rows); x rounded to fp16 first
    T, cols = x.shape
    xr = f32[: T * cols].reshape((T, cols))
    round_rows_f16(x, xr)
    body = cols - cols % STEP
    rows, tiled = w.shape[0] - w.shape[0] % 2, T - T % 2  # prefill: two rows x two tokens per pass
    if tiled:
        for g in prange(rows // 2):
            ra, rb = w[2 * g], w[2 * g + 1]
            for t in range(0, tiled, 2):
                sums = _tile(ra, rb, xr, t, True)
                for i in range(4):
                    row, tok = (ra, rb, ra, rb)[i], t + i // 2
                    s = np.float64(sums[i])  # ggml sums the tail in double here
                    for j in range(body, cols):
                        s += np.float64(load_f16(row, 2 * j) * xr[tok, j])
                    out[tok, 2 * g + i % 2] = np.float32(s)
    for r in prange(w.shape[0]):
        row = w[r]
        for t in range(tiled if r < rows else 0, T):
            a0, a1, a2, a3 = zeros_f32(), zeros_f32(), zeros_f32(), zeros_f32()
            xo = t * cols
            for j in range(0, body, STEP):
                a0 = fma_f16(a0, row, 2 * j, xr, xo + j)
                a1 = fma_f16(a1, row, 2 * (j + LANES), xr, xo + j + LANES)
                a2 = fma_f16(a2, row, 2 * (j + 2 * LANES), xr, xo + j + 2 * LANES)
                a3 = fma_f16(a3, row, 2 * (j + 3 * LANES), xr, xo + j + 3 * LANES)
            s = np.float64(vsum4(a0, a1, a2, a3))  # ggml sums the tail in double here
            for j in range(body, cols):
                s += np.float64(load_f16(row, 2 * j) * xr[t, j])
            out[t, r] = np.float32(s)


def _matvec_bf16(out, w, x, i8, i32, f32):
    # W (rows, cols*2) @ x (T, cols) -> out (T, rows); x rounded to bf16 first
    # ggml_vec_dot_bf16 with AVX512-BF16: two `vdpbf16ps` accumulators per 64 columns,
    # each reduced on its own and added in double, then the tail in double
    T, cols = x.shape
    xr = f32[: T * cols].reshape((T, cols))
    round_rows_bf16(x, xr)
    body = cols - cols % STEP
    for r in prange(w.shape[0]):
        row = w[r]
        for t in range(T):
            c1, c2 = zeros_f32(), zeros_f32()
            xo = t * cols
            for j in range(0, body, STEP):
                c1 = dot2_bf16(c1, row, 2 * j, xr, xo + j)
                c2 = dot2_bf16(c2, row, 2 * (j + 2 * LANES), xr, xo + j + 2 * LANES)
            s = np.float64(vsum(c1)) + np.float64(vsum(c2))
            for j in range(body, cols):
                s += np.float64(load_bf16(row, 2 * j) * xr[t, j])
            out[t, r] = np.float32(s)


matvec_f32_lanes64 = njit_parallel(_matvec_f32)
matvec_f32_rows4 = njit_parallel(_matvec_f32_rows4)
matvec_f32_rows4_serial = njit_serial(_matvec_f32_rows4)
matvec_f16_lanes64 = njit_parallel(_matvec_f16)
matvec_bf16_lanes64 = njit_parallel(_matvec_bf16)
matvec_f32_lanes64_serial = njit_serial(_matvec_f32)
matvec_f16_lanes64_serial = njit_serial(_matvec_f16)
matvec_bf16_lanes64_serial = njit_serial(_matvec_bf16)


@njit_serial
def matvec_f32_into(variant, out, w, x, i8, i32, f32):
    if variant == SERIAL:
        matvec_f32_lanes64_serial(out, w, x, i8, i32, f32)
    elif variant == 1:
        matvec_f32_rows4(out, w, x, i8, i32, f32)
    elif variant == 1 + SERIAL:
        matvec_f32_rows4_serial(out, w, x, i8, i32, f32)
    else:
        matvec_f32_lanes64(out, w, x, i8, i32, f32)


@njit_serial
def matvec_f16_into(variant, out, w, x, i8, i32, f32):
    if variant == SERIAL:
        matvec_f16_lanes64_serial(out, w, x, i8, i32, f32)
    else:
        matvec_f16_lanes64(out, w, x, i8, i32, f32)


@njit_serial
def matvec_bf16_into(variant, out, w, x, i8, i32, f32):
    if variant == SERIAL:
        matvec_bf16_lanes64_serial(out, w, x, i8, i32, f32)
    else:
        matvec_bf16_lanes64(out, w, x, i8, i32, f32)


_SUMMARY = "one row per pass, four 16-lane accumulators over 64 columns (ggml_vec_dot_{})"
F32 = WeightFormat("f32", GGML_F32, 1, 4, "f32", dequantize_f32, quantize_f32, (), get_rows_f32, matvec_f32_into,
                   (Variant("lanes64", matvec_f32_lanes64, matvec_f32_lanes64_serial, _SUMMARY.format("f32"),
                            reference=True),
                    Variant("rows4", matvec_f32_rows4, matvec_f32_rows4_serial,
                            "four rows repacked at load into one stream, the tile's order for every token count",
                            repack=repack_rows4)),
                   # AMD EPYC Zen 4, interleaved, 32 tokens: 1152 x 6912 62 -> 82 GFLOP/s at 1 thread,
                   # 122 -> 162 at 2; decode 1152 x 6912 from DRAM 20 -> 28 GB/s. Not measured without AVX-512.
                   repacked=(("rows4", ("avx512f",)),))
F16 = WeightFormat("f16", GGML_F16, 1, 2, "f16", dequantize_f16, quantize_f16, (), get_rows_f16, matvec_f16_into,
                   (Variant("lanes64", matvec_f16_lanes64, matvec_f16_lanes64_serial, _SUMMARY.format("f16"),
                            reference=True),))
BF16 = WeightFormat("bf16", GGML_BF16, 1, 2, "bf16", dequantize_bf16, quantize_bf16, (), get_rows_bf16,
                    matvec_bf16_into,
                    (Variant("lanes64", matvec_bf16_lanes64, matvec_bf16_lanes64_serial,
                             _SUMMARY.format("bf16") + ", AVX512-BF16 pairs", reference=True),))
