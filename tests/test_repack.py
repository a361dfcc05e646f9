"""Weights repacked at load (q4_0, q4_1, q5_0 and q8_0 `rows16`, f32 `rows4`): the file's bytes in another order,
the one kernel that reads them chosen with them, and the model's logits unchanged.

Each repacking kernel equals its format's reference bit for bit on raw blocks of every
shape (`test_formats`, which repacks for the variants that need it); here: the layout
itself, and what the loader and a session do with it.
"""

import numpy as np
import pytest

import workbench
from tests._models import smollm2_path
from tests.test_compiled_step import greedy_logits
from workbench.errors import ParameterError
from workbench.kernels import registry
from workbench.kernels.formats import floats, q4_0_rows16, q4_1_rows16, q5_0_rows16, q8_0_rows16
from workbench.kernels.isa.x86 import cpu_features
from workbench.kernels.table import FORMATS


@pytest.mark.parametrize("mod", [q4_0_rows16, q4_1_rows16, q5_0_rows16, q8_0_rows16],
                         ids=["q4_0", "q4_1", "q5_0", "q8_0"])
@pytest.mark.parametrize("rows", [1, 15, 16, 17, 40, 64])
def test_repack_moves_bytes_and_unpack_puts_them_back(mod, rows):
    rng = np.random.default_rng(rows)
    w = rng.integers(0, 256, (rows, 3 * mod.BLOCK), dtype=np.uint8)
    p = mod.repack(w)
    assert p.shape == w.shape and p.dtype == np.uint8 and p is not w
    assert np.unpackbits(p).sum() == np.unpackbits(w).sum()  # the same bits, moved
    if mod is not q5_0_rows16:  # which moves whole bytes, except q5_0's regrouped 5th bits
        assert np.array_equal(np.sort(p, axis=None), np.sort(w, axis=None))
    assert np.array_equal(mod.unpack(p), w)
    whole = rows // 16 * 16
    assert np.array_equal(p[whole:], w[whole:])  # rows after the last group keep the GGUF layout
    if whole:  # group 0, block 0 starts with the sixteen rows' scales (q4_1: then their mins)
        flat = p.reshape(-1)
        fields = 2 if mod is q4_1_rows16 else 1
        for f in range(fields):
            assert np.array_equal(flat[32 * f : 32 * f + 32].reshape(16, 2), w[:16, 2 * f : 2 * f + 2])
        if mod is not q5_0_rows16:  # then bytes 0..3 of each row's quants (q5_0: its masks first)
            q = 32 * fields
            assert np.array_equal(flat[q : q + 64].reshape(16, 4), w[:16, 2 * fields : 2 * fields + 4])


def test_q5_0_masks_hold_the_fifth_bits_of_a_chunk():
    rng = np.random.default_rng(0)
    w = rng.integers(0, 256, (16, 22), dtype=np.uint8)
    qh = w[:, 2:6].copy().view("<u4")[:, 0].astype(np.int64)
    masks = q5_0_rows16.repack(w).reshape(-1)[32:96].copy().view("<u8").astype(object)
    for k in range(8):  # bit 4r + j of mask k: the 5th bit of value 4k + j of row r
        assert [(masks[k] >> (4 * r + j)) & 1 for r in range(16) for j in range(4)] == \
               [(qh[r] >> (4 * k + j)) & 1 for r in range(16) for j in range(4)]


@pytest.mark.parametrize("rows, cols", [(1, 64), (4, 64), (13, 130), (37, 768), (8, 7)])
def test_f32_rows4_groups_four_rows_chain_by_chain(rows, cols):
    rng = np.random.default_rng(rows * cols)
    dense = rng.standard_normal((rows, cols), dtype=np.float32)
    w = dense.view(np.uint8).reshape(rows, cols * 4)
    p = floats.repack_rows4(w)
    assert p.shape == w.shape and p.dtype == np.uint8 and p is not w
    assert np.array_equal(floats.unpack_rows4(p), w)
    whole, body = rows // 4 * 4, cols // 64 * 64
    assert np.array_equal(p[whole:], w[whole:])  # rows after the last group keep the GGUF layout
    if whole:
        g = p[:4].reshape(-1).view(np.float32)
        if body:  # chain 0 of chunk 0 of rows 0..3, then chunk 1 of chain 0 (or chain 1)
            assert np.array_equal(g[:64].reshape(4, 16), dense[:4, :16])
            nxt = dense[:4, 64:80] if body > 64 else dense[:4, 16:32]
            assert np.array_equal(g[64:128].reshape(4, 16), nxt)
        assert np.array_equal(g[4 * body:].reshape(4, -1), dense[:4, body:])  # then the rows' tails


@pytest.mark.parametrize("rows, cols", [(13, 130), (40, 768), (6, 64)])
def test_f32_rows4_gives_the_reference_bits_for_every_token_count(rows, cols):
    """Decode steps (one token), narrow tiles, full tiles, several token blocks."""
    rng = np.random.default_rng(rows + cols)
    w = rng.standard_normal((rows, cols), dtype=np.float32).view(np.uint8).reshape(rows, cols * 4)
    p = floats.repack_rows4(w)
    for T in (1, 2, 5, 6, 7, 13, 200):
        x = rng.standard_normal((T, cols), dtype=np.float32)
        empty = (np.empty(T * cols, np.int8), np.empty(T * cols, np.int32), np.empty(T * cols, np.float32))
        want = np.full((T, rows), np.nan, np.float32)
        floats.matvec_f32_lanes64_serial(want, w, x, *empty)
        for kernel in (floats.matvec_f32_rows4, floats.matvec_f32_rows4_serial):
            out = np.full((T, rows), np.nan, np.float32)
            kernel(out, p, x, *empty)
            assert np.array_equal(out.view(np.uint32), want.view(np.uint32)), (kernel, T)
        out = np.full((T, rows), np.nan, np.float32)  # with less scratch than x packed needs
        floats.matvec_f32_rows4(out, p, x, empty[0], empty[1], np.empty(1, np.float32))
        assert np.array_equal(out.view(np.uint32), want.view(np.uint32)), T


def test_an_f32_model_repacked_gives_the_same_logits():
    """The tiny GPT-2 (tied lm_head, biased fused c_attn) with f32 rows4 and lanes64."""
    from tests.test_gpt2 import MODEL_DIR

    grouped = workbench.load(MODEL_DIR, threads=1, n_ctx=64, kernels={"f32": "rows4"})
    plain = workbench.load(MODEL_DIR, threads=1, n_ctx=64, kernels={"f32": "lanes64"})
    assert grouped.kernels["f32"] == "rows4" and _repacked_lines(grouped) and not _repacked_lines(plain)
    for a, b in zip(greedy_logits(grouped, None), greedy_logits(plain, None)):
        assert np.array_equal(a.view(np.uint32), b.view(np.uint32))


def _repacked_lines(model) -> list[str]:
    return [line for line in model.load_report.lines() if line.startswith("Repacked")]


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["q4_0", "q8_0", "q4_1"])
def test_a_repacked_model_gives_the_same_logits_and_keeps_its_kernel(fmt):
    smollm2_path()  # skips without the model package
    source = "smollm2-135m" if fmt == "q4_1" else f"smollm2-135m:{fmt}"  # the file itself: Q4_1, Q8_0 embeddings
    plain_choice = FORMATS[fmt].choose(cpu_features())
    others = {"q8_0": FORMATS["q8_0"].choose(cpu_features())} if fmt == "q4_1" else {}  # only fmt repacked
    rows16 = workbench.load(source, threads=1, n_ctx=128, kernels={fmt: "rows16", **others})
    plain = workbench.load(source, threads=1, n_ctx=128, kernels={fmt: plain_choice, **others})
    assert len(_repacked_lines(rows16)) == 1 and fmt.upper() in _repacked_lines(rows16)[0]
    assert not _repacked_lines(plain)
    assert rows16.kernels[fmt] == "rows16" and plain.kernels[fmt] == plain_choice
    want = greedy_logits(plain, None)
    for a, b in zip(greedy_logits(rows16, None), want):
        assert np.array_equal(a, b)
    with workbench.trace("op") as t:  # the trace names the kernel that ran
        rows16.generate("Hi", max_tokens=2)
    assert t.meta["kernels"][fmt] == "rows16"
    with pytest.raises(ParameterError, match="repacked at load for rows16"):
        rows16.kernels = {fmt: "one_row"}
    assert rows16.kernels[fmt] == "rows16"  # the refused choice changed nothing
    with pytest.raises(ParameterError, match="reads weights repacked at load"):
        plain.kernels = {fmt: "rows16"}
    rows16.kernels = {fmt: "rows16_serial"}
    assert rows16.kernels[fmt] == "rows16_serial"
    for a, b in zip(greedy_logits(rows16, None), want):
        assert np.array_equal(a, b)
    rows16.kernels = {}
    before = registry.default_name("matvec", fmt)
    registry.set_default("matvec", fmt, "one_row")  # a registry kernel reads GGUF bytes: refused, not ignored
    try:
        with pytest.raises(ParameterError, match="load it with repack=False"):
            rows16.generate("Hi", max_tokens=2)
    finally:
        registry.set_default("matvec", fmt, before)
    assert rows16.generate("Hi", max_tokens=2).tokens


@pytest.mark.slow
def test_the_profile_and_the_cpu_decide_whether_to_repack():
    smollm2_path()
    baseline = workbench.load("smollm2-135m:q4_0", profile="baseline", n_ctx=64)
    assert not _repacked_lines(baseline) and baseline.kernels["q4_0"] == FORMATS["q4_0"].choose(cpu_features())
    kept = workbench.load("smollm2-135m:q4_0", n_ctx=64, repack=False)
    assert not _repacked_lines(kept)
    default = workbench.load("smollm2-135m:q4_0", n_ctx=64)
    layout = FORMATS["q4_0"].layout_for(cpu_features())
    assert bool(_repacked_lines(default)) == (layout is not None)
    assert default.kernels["q4_0"] == (layout.name if layout else FORMATS["q4_0"].choose(cpu_features()))


def test_a_repacked_weight_runs_its_own_kernel_and_checks_its_inputs():
    from workbench.errors import ShapeError, UnsupportedError
    from workbench.kernels.linear import Weight
    from workbench.quant import quantize_ref

    rng = np.random.default_rng(4)
    w = quantize_ref("q4_0", rng.standard_normal((40, 64)).astype(np.float32))
    plain, packed = Weight(w, "q4_0"), Weight(q4_0_rows16.repack(w), "q4_0", layout="rows16")
    x = rng.standard_normal((3, 64)).astype(np.float32)
    want = plain.matvec(np.empty((3, 40), np.float32), x)
    # out and x both own their memory (no base): the checked path; out a view: the fast one
    assert np.array_equal(packed.matvec(np.empty((3, 40), np.float32), x).view(np.uint32), want.view(np.uint32))
    buf = np.empty((2, 3, 40), np.float32)
    assert np.array_equal(packed.matvec(buf[0], x).view(np.uint32), want.view(np.uint32))
    with pytest.raises(ShapeError, match="32 columns, expected 64"):
        packed.matvec(np.empty((3, 40), np.float32), np.ones((3, 32), np.float32))
    with pytest.raises(ShapeError, match="out must have shape"):
        packed.matvec(np.empty((3, 41), np.float32), x)
    with pytest.raises(UnsupportedError, match="reads the GGUF layout"):
        Weight(w, "q4_0", layout="row_groups")
