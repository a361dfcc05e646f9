"""Every weight format of the table, every matvec variant, against the format's reference.

For each row of `workbench.kernels.table` (so a new format is covered by adding its row):
- the row agrees with ggml's type table and with gguf-py's block sizes; its reference
  codec round-trips and its compiled get-rows equals the codec bit for bit;
- every variant (parallel and serial twin, through the format's own `matvec_into` and
  through the table's code dispatch) equals the reference variant ("one_row", itself
  checked against llama.cpp in tests/test_kernels.py and the golden files) bit for bit:
  random block bytes (every quant value) with finite fp16 scales, weights from the
  reference quantizer, row counts that do and do not fill a group (1..9, 13, 67), one to
  three blocks per row, T in {1, 2, 5} with a zero token and a zero block, 1 and 2 threads;
- the kernels compiled for other CPUs (Haswell: AVX2 without AVX-512; Ivy Bridge: no
  AVX2) give the same bits, and the choice for each CPU is one the CPU can run.
Variants a CPU lacks the instructions for (`needs`) are checked only where it has them.
"""

import os
import subprocess
import sys
from pathlib import Path

import gguf
import numpy as np
import pytest

from workbench.errors import ParameterError
from workbench.formats.ggml_types import GGML_TYPES
from workbench.kernels import dispatch, table
from workbench.kernels.formats.base import SERIAL
from workbench.kernels.isa.x86 import cpu_features
from workbench.kernels.jit import max_threads, set_threads
from workbench.kernels.scratch import scratch

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = [f for f in table.FORMATS.values() if f.weight]
ROWS = [1, 2, 3, 4, 5, 6, 7, 8, 9, 13, 67]


def raw_weight(rng, f, rows: int, blocks: int) -> np.ndarray:
    """Random block bytes whose fp16 scales are finite (as the loader requires of a model)."""
    if not f.scale_fields:  # floats: random finite values
        x = rng.standard_normal((rows, blocks * f.block_size)).astype(np.float32)
        return f.quantize(x.reshape(-1, 1)).reshape(rows, -1)
    w = rng.integers(0, 256, (rows, blocks, f.type_size), dtype=np.uint8)
    for o in f.scale_fields:
        d = (rng.standard_normal((rows, blocks)) * rng.uniform(1e-3, 2)).astype(np.float16)
        w[:, :, o : o + 2] = d.view(np.uint8).reshape(rows, blocks, 2)
    w = w.reshape(rows, blocks * f.type_size)
    w.flags.writeable = False
    return w


def tokens(rng, T: int, cols: int, block: int) -> np.ndarray:
    # magnitudes kept where q8_1's fp16 s = d * sum q stays finite
    x = (rng.standard_normal((T, cols)) * rng.uniform(0.05, 4)).astype(np.float32)
    if T == 5:
        x[1] = 0  # a zero token: every block scale 0
        x[2, :block] = 0  # one zero block
        x[3, : cols // 2] *= 30  # blocks of very different scales
    return x


def run(kernel, w, x) -> np.ndarray:
    out = np.full((x.shape[0], w.shape[0]), np.nan, np.float32)
    kernel(out, w, x, *scratch(x.size))
    return out


def assert_same(got: np.ndarray, want: np.ndarray, what: str) -> None:
    bad = got.view(np.uint32) != want.view(np.uint32)
    assert not bad.any(), f"{what}: {np.count_nonzero(bad)} of {got.size} differ, max |diff| {np.nanmax(np.abs(got - want))}"


def runnable(v) -> bool:
    return v.runs_on(cpu_features())


def reference(f):
    return next(v for v in f.variants if v.reference)


@pytest.mark.parametrize("f", list(table.FORMATS.values()), ids=lambda f: f.name)
def test_row_agrees_with_ggml_and_gguf(f):
    t = GGML_TYPES[f.ggml_type]
    assert (t.name.lower(), t.block_size, t.type_size) == (f.name, f.block_size, f.type_size)
    assert gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(f.ggml_type)][0] == f.block_size
    assert table.format_of_ggml_type(f.ggml_type) is f and table.format_named(f.name.upper()) is f


@pytest.mark.parametrize("f", WEIGHTS, ids=lambda f: f.name)
def test_variants_are_listed_once_with_one_reference(f):
    names = [v.name for v in f.variants]
    assert len(set(names)) == len(names) and sum(v.reference for v in f.variants) == 1
    assert not reference(f).needs  # the reference runs everywhere
    assert all(name in names for name, _ in f.prefer)
    assert f.choose(cpu_features()) in names and runnable(f.variants[f.variant_index(f.choose(cpu_features()))])


@pytest.mark.parametrize("f", WEIGHTS, ids=lambda f: f.name)
def test_get_rows_equals_the_reference_codec(f):
    rng = np.random.default_rng(5)
    w = raw_weight(rng, f, 9, 3)
    ids = np.array([0, 8, 3, 3, 5], np.int64)
    out = np.full((5, 3 * f.block_size), np.nan, np.float32)
    f.get_rows(out, w, ids)
    assert_same(out, f.dequantize(np.ascontiguousarray(w[ids]).reshape(-1, f.type_size)).reshape(5, -1), f.name)
    out[:] = np.nan
    table.get_rows_into(f.ggml_type, out, w, ids)
    assert_same(out, f.dequantize(np.ascontiguousarray(w[ids]).reshape(-1, f.type_size)).reshape(5, -1), f.name)


@pytest.mark.parametrize("f", WEIGHTS, ids=lambda f: f.name)
def test_every_variant_equals_the_reference_on_raw_blocks(f):
    rng = np.random.default_rng(1)
    ref = reference(f)
    for rows in ROWS:
        for blocks in (1, 3):
            w = raw_weight(rng, f, rows, blocks)
            for T in (1, 2, 5):
                x = tokens(rng, T, blocks * f.block_size, f.block_size)
                want = run(ref.serial, w, x)
                for i, v in enumerate(f.variants):
                    if not runnable(v):
                        continue
                    what = f"{f.name}/{v.name} rows={rows} blocks={blocks} T={T}"
                    wv = v.weights(w)  # in the variant's own layout
                    assert_same(run(v.kernel, wv, x), want, what)
                    assert_same(run(v.serial, wv, x), want, what + " serial")
                    for code in (i, i + SERIAL):  # the compiled switches run the variant they name
                        out = np.full_like(want, np.nan)
                        table.matvec_into(64 * f.ggml_type + code, out, wv, x, *scratch(x.size))
                        assert_same(out, want, f"{what} code {code}")


@pytest.mark.parametrize("f", [f for f in WEIGHTS if f.quantize is not None and f.block_size > 1],
                         ids=lambda f: f.name)
def test_every_variant_equals_the_reference_on_quantized_weights(f):
    rng = np.random.default_rng(7)
    cols = 2 * max(f.block_size, 320)
    dense = (rng.standard_normal((37, cols)) * rng.uniform(0.01, 3, (37, 1))).astype(np.float32)
    w = f.quantize(dense.reshape(-1, f.block_size)).reshape(37, -1)
    x = tokens(rng, 5, cols, f.block_size)
    want = run(reference(f).serial, w, x)
    for v in f.variants:
        if runnable(v):
            assert_same(run(v.kernel, v.weights(w), x), want, f"{f.name}/{v.name}")


@pytest.mark.skipif(max_threads() < 2, reason="numba was started with one thread")
@pytest.mark.parametrize("f", WEIGHTS, ids=lambda f: f.name)
def test_variants_at_one_and_two_threads(f):
    rng = np.random.default_rng(11)
    w = raw_weight(rng, f, 203, 3)
    x = tokens(rng, 2, 3 * f.block_size, f.block_size)
    want = run(reference(f).serial, w, x)
    try:
        for n in (1, 2):
            set_threads(n)
            for v in f.variants:
                if runnable(v):
                    assert_same(run(v.kernel, v.weights(w), x), want, f"{f.name}/{v.name} at {n} threads")
    finally:
        set_threads(max_threads())


def test_session_choices_are_checked_by_name():
    assert dispatch.check_choices({"Q4_0": "one_row"}) == {"q4_0": "one_row"}
    with pytest.raises(ParameterError, match="q4_0 has no variant 'fastest'"):
        dispatch.check_choices({"q4_0": "fastest"})
    with pytest.raises(ParameterError, match="unknown weight format 'q9_9'"):
        dispatch.check_choices({"q9_9": "one_row"})
    if "avx512vnni" not in cpu_features():
        with pytest.raises(ParameterError, match="needs avx512vnni"):
            dispatch.check_choices({"q8_0": "row_groups_vnni"})


@pytest.mark.parametrize("cpu, features", [
    ("haswell", "+avx,+avx2,+fma,+f16c,+bmi,+bmi2,+popcnt"),
    ("ivybridge", "+avx,+f16c,+popcnt"),
])
def test_other_cpus_give_the_same_bits(cpu, features, tmp_path):
    """Compiled for Haswell (AVX2, no AVX-512) the block dots take llama.cpp's AVX2 pairs
    (`vpmaddubsw`, `vpmaddwd`); for Ivy Bridge, plain widening vector arithmetic. Every
    variant the CPU can run equals the reference, and the CPU's choice is one of them."""
    script = """
import numpy as np
import tests.test_formats as t
from workbench.kernels.isa.x86 import cpu_features
rng = np.random.default_rng(3)
for f in t.WEIGHTS:
    assert t.runnable(f.variants[f.variant_index(f.choose(cpu_features()))]), f.name
    for rows in (1, 6, 9, 17):
        w = t.raw_weight(rng, f, rows, 2)
        for T in (1, 5):
            x = t.tokens(rng, T, 2 * f.block_size, f.block_size)
            want = t.run(t.reference(f).serial, w, x)
            for v in f.variants:
                if t.runnable(v):
                    t.assert_same(t.run(v.kernel, v.weights(w), x), want, f"{f.name}/{v.name} rows={rows} T={T}")
print("ok", sorted(f.choose(cpu_features()) for f in t.WEIGHTS))
"""
    env = dict(os.environ, NUMBA_CPU_NAME=cpu, NUMBA_CPU_FEATURES=features, NUMBA_CACHE_DIR=str(tmp_path))
    env.pop("WORKBENCH_CACHE", None)
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr[-3000:]
