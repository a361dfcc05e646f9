"""A float32 GEMM tile that keeps `ggml_vec_dot_f32`'s order for every output.

`ggml_vec_dot_f32` (AVX-512) sums a row against x in four 16-lane accumulators, chain c
taking columns 64m + 16c .. 64m + 16c + 15 of every 64-column chunk m, then reduces
((a0 + a2) + (a1 + a3)) lane by lane and the lanes pairwise. A prefill tile that kept
four chains per output in registers fits only 2 rows x 2 tokens in AVX-512's 32
registers, one load per multiply-add. The chains are independent, so this tile runs
them one after another: for each chain c, ROWS x TOKENS accumulators (24 registers) over
the chunks, each weight vector loaded once for TOKENS products and each x vector once
for ROWS (10 loads per 24 multiply-adds), then parks the chain on the stack; the four
parked chains are reduced at the end. Each output's operations are the one-token
path's, in its order, so its bits are too.

The tile reads x packed (`pack_tiles`): each tile's tokens interleaved chain by chain,
so that a chain's pass reads x as one sequential stream instead of `tokens` rows at a
256-byte stride. AMD EPYC Zen 4, 1 thread, 48-token blocks: 13824 x 1152 from 43 to
66 GFLOP/s, 1152 x 6912 from 45 to 57 (one run, interleaved; the weight rows stay as
GGUF stores them and are reused from L1 across the block's tiles).

The weights may also come grouped (`formats.floats.repack_rows4`, a layout made at load):
four rows interleaved chunk by chunk, chain after chain, so that a chain's pass reads the
weights as one sequential stream too. Same operations, same bits; measured (Zen 4, 1
thread, 32 tokens, interleaved) 1152 x 6912 from 62 to 82 GFLOP/s, 768 x 3072 from 68 to
89, 13824 x 1152 from 67.5 to 69; a decode step (one token, the same tile) reads
1152 x 6912 at 28 GB/s where one row per pass reads 20.
"""

import numba
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from workbench.kernels.isa.vectors import _const, _f32, _fma, _i32, _vt
from workbench.kernels.jit import njit_serial

ROWS, TOKENS = 4, 6  # the tile: 24 accumulators, 4 + 6 vector loads per 16 columns
LANES, CHAINS = 16, 4
STRIDE = 4 * LANES  # bytes of one chain's 16 columns of a row in a chunk
# the prefetch of the next rows goes to L2 (prefetcht1), not L1: AMD EPYC Zen 4, grouped
# rows from DRAM, 32 tokens, interleaved: 13824 x 1152 from 69 to 77 GFLOP/s at 1 thread and
# 116 to 139 at 2, 6 tokens 35 -> 44 / 52 -> 76; L1 fills compete with the tile's own loads.
# A decode step (one token) prefetches nothing: one stream per group, which the hardware
# prefetcher follows, read 26 GB/s without and 20-22 with a prefetch, L1 or L2.
LOCALITY = 2


@intrinsic
def f32_tile(typingctx, out, w, r0, xp, t0, chunks, tokens, ahead, grouped):
    """out[t0 + k, r0 + i] = row r0 + i of w (float32 bytes, uint8 (rows, cols * 4)) dot
    token t0 + k of x over the first 64 * chunks columns, reduced as `vsum4`, for
    i < ROWS, k < tokens (1 .. TOKENS: the last tokens of a prompt, or a decode step, take
    a narrower tile); x comes packed by `pack_tiles` in xp (flat float32), the caller adds
    the columns past the last chunk. `ahead`: a full tile also prefetches the next ROWS
    rows over its four chains into L2, for a caller that goes there next. `grouped` (a literal
    bool): rows r0 .. r0 + 3 are in the layout of `formats.floats.repack_rows4` instead of GGUF's."""
    if not isinstance(grouped, types.BooleanLiteral):
        return None
    layout = grouped.literal_value

    def codegen(context, builder, sig, args):
        out_, w_, r0_, xp_, t0_, chunks_, tokens_, ahead_, _ = args
        wa = context.make_array(sig.args[1])(context, builder, value=w_)
        xa = context.make_array(sig.args[3])(context, builder, value=xp_)
        oa = context.make_array(sig.args[0])(context, builder, value=out_)
        intp = r0_.type
        c = lambda n: ir.Constant(intp, n)  # noqa: E731
        rb = cgutils.unpack_tuple(builder, wa.shape, 2)[1]  # bytes per weight row
        n_out = cgutils.unpack_tuple(builder, oa.shape, 2)[1]
        wptr = builder.bitcast(wa.data, ir.IntType(8).as_pointer())
        base = builder.gep(wptr, [builder.mul(r0_, rb)])
        # byte strides of a row, a chain and a chunk: GGUF rows, or `repack_rows4`'s groups
        row_s, chain_s = (c(STRIDE), builder.mul(chunks_, c(ROWS * STRIDE))) if layout else (rb, c(STRIDE))
        chunk_s = c(ROWS * STRIDE) if layout else c(CHAINS * STRIDE)
        xptr = builder.bitcast(xa.data, _f32.as_pointer())
        tile_x = builder.gep(xptr, [builder.mul(builder.mul(t0_, chunks_), c(CHAINS * LANES))])
        optr = builder.bitcast(oa.data, _f32.as_pointer())
        parked = cgutils.alloca_once(builder, _vt(_f32, LANES), size=c(CHAINS * ROWS * TOKENS))
        accs = [cgutils.alloca_once(builder, _vt(_f32, LANES)) for _ in range(ROWS * TOKENS)]
        frame = (base, row_s, chain_s, chunk_s, rb, tile_x, chunks_, t0_, r0_, optr, n_out, parked, accs)
        # one body per token count (and one more for a full tile that prefetches)
        done = builder.append_basic_block("tile.done")
        key = builder.add(tokens_, builder.select(builder.and_(ahead_, builder.icmp_signed("==", tokens_, c(TOKENS))),
                                                  c(TOKENS), c(0)))
        switch = builder.switch(key, done)
        for n_tok, fetch in [(n, False) for n in range(1, TOKENS + 1)] + [(TOKENS, True)]:
            block = builder.append_basic_block(f"tile.{n_tok}.{int(fetch)}")
            switch.add_case(c(n_tok + (TOKENS if fetch else 0)), block)
            builder.position_at_end(block)
            _tile_body(builder, frame, n_tok, fetch)
            builder.branch(done)
        builder.position_at_end(done)
        return context.get_dummy_value()
    sig = types.none(out, w, types.intp, xp, types.intp, types.intp, types.intp, types.boolean, grouped)
    return sig, codegen


def _tile_body(builder, frame, n_tok, fetch):
    """The tile for n_tok tokens: each chain's pass over the chunks, then the reductions."""
    base, row_s, chain_s, chunk_s, rb, tile_x, chunks_, t0_, r0_, optr, n_out, parked, accs = frame
    intp = rb.type
    c = lambda n: ir.Constant(intp, n)  # noqa: E731
    v16 = _vt(_f32, LANES)
    accs = accs[: ROWS * n_tok]
    pfty = ir.FunctionType(ir.VoidType(), [ir.IntType(8).as_pointer(), _i32, _i32, _i32])
    pf = cgutils.get_or_insert_function(builder.module, pfty, "llvm.prefetch.p0")
    w_rows = [builder.gep(base, [builder.mul(row_s, c(i))]) for i in range(ROWS)]
    step = c(n_tok * LANES)  # floats per chunk of one chain in the packed x
    for chain in range(CHAINS):
        chain_x = builder.gep(tile_x, [builder.mul(builder.mul(chunks_, step), c(chain))])
        chain_w = [builder.gep(p, [builder.mul(chain_s, c(chain))]) for p in w_rows]
        for a in accs:
            builder.store(_const(_f32, LANES, 0.0), a)
        with cgutils.for_range(builder, chunks_) as loop:
            at_w = [builder.gep(p, [builder.mul(loop.index, chunk_s)]) for p in chain_w]
            wv = [builder.load(builder.bitcast(p, v16.as_pointer()), align=4) for p in at_w]
            chunk_x = builder.gep(chain_x, [builder.mul(loop.index, step)])
            if fetch:
                for p in at_w:
                    builder.call(pf, [builder.gep(p, [builder.mul(rb, c(ROWS))]),
                                      ir.Constant(_i32, 0), ir.Constant(_i32, LOCALITY), ir.Constant(_i32, 1)])
            for k in range(n_tok):
                xv = builder.load(builder.bitcast(builder.gep(chunk_x, [c(k * LANES)]), v16.as_pointer()), align=4)
                for i in range(ROWS):
                    a = accs[i * n_tok + k]
                    builder.store(_fma(builder, wv[i], xv, builder.load(a)), a)
        for j, a in enumerate(accs):
            builder.store(builder.load(a), builder.gep(parked, [c(chain * ROWS * n_tok + j)]))
    # each output's four chains as vsum4: (a0 + a2) + (a1 + a3), then its lanes
    # pairwise, 16 outputs at once (`_lane_sums`); outputs token by token, so that each
    # token's ROWS sums land side by side in out
    sums = []
    for k in range(n_tok):
        for i in range(ROWS):
            j = i * n_tok + k
            a0, a1, a2, a3 = (builder.load(builder.gep(parked, [c(ch * ROWS * n_tok + j)])) for ch in range(4))
            sums.append(builder.fadd(builder.fadd(a0, a2), builder.fadd(a1, a3)))
    v4 = _vt(_f32, ROWS)
    for q, v in enumerate(_lane_sums(builder, sums)):
        for part in range(LANES // ROWS):
            k = (q * LANES) // ROWS + part
            if k >= n_tok:
                break
            quad = builder.shuffle_vector(v, v, _const(_i32, ROWS, list(range(part * ROWS, part * ROWS + ROWS))))
            at = builder.add(builder.mul(builder.add(t0_, c(k)), n_out), r0_)
            builder.store(quad, builder.bitcast(builder.gep(optr, [at]), v4.as_pointer()), align=4)


def _lane_sums(builder, vecs):
    """The lane sums of 16-lane vectors, as `_tree_sum` adds them (lane j + lane j + n/2,
    halving), computed for 16 vectors at a time: each step pairs two vectors whose
    outputs hold g lanes each into one whose outputs hold g/2, one add for all of them.
    Returns ceil(len / 16) vectors, output o in lane o % 16 of vector o // 16."""
    g = LANES
    while g > 1:
        if len(vecs) % 2:
            vecs = vecs + [_const(_f32, LANES, 0.0)]
        per = LANES // g  # outputs per vector
        lo = [q * g + j for q in range(per) for j in range(g // 2)]
        lo = lo + [LANES + i for i in lo]
        hi = [i + g // 2 for i in lo]
        vecs = [builder.fadd(builder.shuffle_vector(a, b, _const(_i32, LANES, lo)),
                             builder.shuffle_vector(a, b, _const(_i32, LANES, hi)))
                for a, b in zip(vecs[::2], vecs[1::2])]
        g //= 2
    return vecs


@njit_serial
def pack_tile(xp, x, t0, chunks):
    """One tile of `pack_tiles`: tokens t0 .. t0 + n - 1 of x (t0 a multiple of TOKENS,
    n = min(TOKENS, T - t0)), so that callers can pack tiles in parallel."""
    n = min(TOKENS, x.shape[0] - t0)
    base = t0 * chunks * CHAINS * LANES
    for c in range(CHAINS):
        for m in range(chunks):
            o = base + (c * chunks + m) * n * LANES
            for k in range(n):
                src = x[t0 + k]
                for lane in range(LANES):
                    xp[o + k * LANES + lane] = src[64 * m + 16 * c + lane]


@njit_serial
def pack_tiles(xp, x, chunks):
    """x (T, cols) float32 -> xp (flat, at least T * 64 * chunks): the tile of tokens
    t0 .. t0 + n - 1 (t0 a multiple of TOKENS, n = min(TOKENS, T - t0)) starts at
    t0 * 64 * chunks and holds, for chain c, chunk m, token k, the 16 columns
    64m + 16c .. 64m + 16c + 15 of token t0 + k at (c * chunks + m) * n * 16 + k * 16."""
    for t0 in range(0, x.shape[0], TOKENS):
        pack_tile(xp, x, t0, chunks)


if numba.config.DISABLE_JIT:  # numpy twin of the same name, to step through kernels
    from workbench.kernels.isa.numpy_twins import f32_tile  # noqa: F401, F811, E402
