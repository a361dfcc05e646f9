"""The sixteen-row pass shared by q8_0 and q5_0 repacked at load (`q8_0_rows16`, `q5_0_rows16`).

Both formats' reference order (llama.cpp's AVX2 `ggml_vec_dot_q8_0_q8_0` and
`..._q5_0_q8_0`) keeps eight float lanes per row: lane k accumulates
fp16(d_w) * d_x * (products 4k..4k+3 of the block, offset included) with a fused
multiply-add, block after block, summed as `hsum_float_8` at the end. Repacked, a block
of sixteen rows is 32 bytes of scales, then the format's quants, from which
`isa.sixteen` makes eight chunks of unsigned values (lane 4r + j of chunk k: value
4k + j of row r); each dot starts from xc, -bias * (sum of 4 x), which takes the
unsigned values' bias (128 for q8_0, 16 for q5_0) back out exactly.
"""

from workbench.kernels.formats.rows import QK
from workbench.kernels.isa.sixteen import chunks16_q5, chunks16_q8, fma16_q8, scales16, store16_hsum8, zeros16x8
from workbench.kernels.jit import njit_serial

GROUP = 16
SCALES = 2 * GROUP  # bytes of f16 scales at the start of each block of sixteen rows


@njit_serial
def _chunks(w, o, q5):
    if q5:
        return chunks16_q5(w, o + SCALES)
    return chunks16_q8(w, o + SCALES)


@njit_serial
def one_token(out, w, xq, xd, xc, t, g, q5):
    """Token t of group g's sixteen rows."""
    cols, rb = xq.shape[1], w.shape[1]
    base, gb = g * GROUP * rb, rb * GROUP // (cols // QK)  # gb: bytes of a block of sixteen rows
    accs = zeros16x8()
    for k in range(cols // QK):
        o = base + k * gb
        xo = t * cols + k * QK
        accs = fma16_q8(accs, _chunks(w, o, q5), xc, xo // 4, xq, xo, scales16(w, o, xd[t, k]))
    store16_hsum8(out, t * out.shape[1] + GROUP * g, accs)


@njit_serial
def two_tokens(out, w, xq, xd, xc, t, g, q5):
    """Tokens t, t+1 of group g (sixteen accumulators): each block's quants unpacked once
    for both, each token's arithmetic exactly `one_token`'s."""
    cols, rb = xq.shape[1], w.shape[1]
    base, gb = g * GROUP * rb, rb * GROUP // (cols // QK)
    acc0, acc1 = zeros16x8(), zeros16x8()
    for k in range(cols // QK):
        o = base + k * gb
        ch = _chunks(w, o, q5)
        xo = t * cols + k * QK
        acc0 = fma16_q8(acc0, ch, xc, xo // 4, xq, xo, scales16(w, o, xd[t, k]))
        xo += cols
        acc1 = fma16_q8(acc1, ch, xc, xo // 4, xq, xo, scales16(w, o, xd[t + 1, k]))
    store16_hsum8(out, t * out.shape[1] + GROUP * g, acc0)
    store16_hsum8(out, (t + 1) * out.shape[1] + GROUP * g, acc1)


@njit_serial
def group(out, w, xq, xd, xc, g, q5, first):
    """Tokens first.. of group g, two at a time (first > 0: those after an AMX pass)."""
    T = xq.shape[0]
    paired = T - (T - first) % 2
    for t in range(first, paired, 2):
        two_tokens(out, w, xq, xd, xc, t, g, q5)
    if paired < T:
        one_token(out, w, xq, xd, xc, T - 1, g, q5)
