"""The row-group matvec kernels against the one-row-per-pass kernels.

`matvec_<fmt>_rows` (rows in groups, row pairs in 16-lane registers, VNNI dots, prefetch) must
keep every output row's arithmetic exactly that of `matvec_<fmt>_v1` ("reference_order_v1",
llama.cpp's order, itself checked against llama.cpp in tests/test_kernels.py): results
equal bit for bit, for
- raw random block bytes (every quant value, q8_0's -128 included) with finite fp16
  scales, and weights from `quantize_ref`;
- row counts that do and do not fill the last group (1..9, 13, 67), one to five blocks
  per row, T in {1, 2, 5} with zero tokens and zero blocks among them;
- the parallel variant at 1 and 2 threads and the serial variant (which of the two
  kernels is a CPU's default, `matvec_<fmt>`, is the registry's business);
- the portable code path numba takes on a CPU without 512-bit VNNI (a subprocess that
  compiles for Haswell).
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from workbench.kernels import matvec_kquants, matvec_legacy
from workbench.kernels.jit import max_threads, set_threads
from workbench.quant import FORMATS, quantize_ref

ROOT = Path(__file__).resolve().parents[1]
MODULES = {"q8_0": matvec_legacy, "q4_0": matvec_legacy, "q4_1": matvec_legacy, "q5_0": matvec_legacy,
           "q4_k": matvec_kquants, "q6_k": matvec_kquants}
SCALE_BYTES = {"q8_0": [0], "q4_0": [0], "q4_1": [0, 2], "q5_0": [0], "q4_k": [0, 2], "q6_k": [208]}
ROWS = [1, 2, 3, 4, 5, 6, 7, 8, 9, 13, 67]


def raw_weight(rng, fmt: str, rows: int, blocks: int) -> np.ndarray:
    """Random block bytes whose fp16 scales are finite (as `linear` requires of a model)."""
    f = FORMATS[fmt]
    w = rng.integers(0, 256, (rows, blocks, f.type_size), dtype=np.uint8)
    for o in SCALE_BYTES[fmt]:
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
    kernel(out, w, x)
    return out


def assert_same(got: np.ndarray, want: np.ndarray, what: str) -> None:
    assert np.array_equal(got.view(np.uint32), want.view(np.uint32)), (
        f"{what}: {np.count_nonzero(got.view(np.uint32) != want.view(np.uint32))} of {got.size} differ, "
        f"max |diff| {np.nanmax(np.abs(got - want))}"
    )


@pytest.mark.parametrize("fmt", list(MODULES))
def test_row_groups_equal_reference_order_bit_for_bit(fmt):
    module, block = MODULES[fmt], FORMATS[fmt].block_size
    new, serial, v1 = (getattr(module, f"matvec_{fmt}{s}") for s in ("_rows", "_rows_serial", "_v1"))
    rng = np.random.default_rng(list(MODULES).index(fmt))
    for rows in ROWS:
        for blocks in (1, 2, 5):
            w = raw_weight(rng, fmt, rows, blocks)
            for T in (1, 2, 5):
                x = tokens(rng, T, blocks * block, block)
                want = run(v1, w, x)
                assert np.isfinite(want).all()
                what = f"{fmt} rows={rows} cols={blocks * block} T={T}"
                assert_same(run(new, w, x), want, what)
                assert_same(run(serial, w, x), want, what + " serial")


@pytest.mark.parametrize("fmt", [f for f in MODULES if not f.endswith("_k")])
def test_row_groups_equal_reference_order_on_quantized_weights(fmt):
    module = MODULES[fmt]
    rng = np.random.default_rng(7)
    dense = (rng.standard_normal((37, 640)) * rng.uniform(0.01, 3, (37, 1))).astype(np.float32)
    w = quantize_ref(fmt, dense)
    w.flags.writeable = False
    x = tokens(rng, 5, 640, 32)
    want = run(getattr(module, f"matvec_{fmt}_v1"), w, x)
    assert_same(run(getattr(module, f"matvec_{fmt}_rows"), w, x), want, fmt)


@pytest.mark.skipif(max_threads() < 2, reason="numba was started with one thread")
@pytest.mark.parametrize("fmt", list(MODULES))
def test_row_groups_at_one_and_two_threads(fmt):
    module, block = MODULES[fmt], FORMATS[fmt].block_size
    rng = np.random.default_rng(11)
    w = raw_weight(rng, fmt, 203, 3)
    x = tokens(rng, 2, 3 * block, block)
    want = run(getattr(module, f"matvec_{fmt}_v1"), w, x)
    try:
        for n in (1, 2):
            set_threads(n)
            assert_same(run(getattr(module, f"matvec_{fmt}_rows"), w, x), want, f"{fmt} at {n} threads")
    finally:
        set_threads(max_threads())


@pytest.mark.parametrize("cpu, features, avx2", [
    ("haswell", "+avx,+avx2,+fma,+f16c,+bmi,+bmi2,+popcnt", True),
    ("ivybridge", "+avx,+f16c,+popcnt", False),
])
def test_paths_without_vnni(cpu, features, avx2):
    """Compiled for Haswell (AVX2, no AVX-512) the kernels build their integer dots from
    llama.cpp's AVX2 pairs (`vpmaddubsw`, `vpmaddwd`) where the weights allow it, and for
    Ivy Bridge (no AVX2) from plain widening vector arithmetic; either way the results
    stay equal to the reference order."""
    script = f"""
import numpy as np
from workbench.kernels import simd
assert not simd.VNNI and simd.AVX2 == {avx2}
import tests.test_matvec_variants as t
rng = np.random.default_rng(3)
for fmt, module in t.MODULES.items():
    block = t.FORMATS[fmt].block_size
    for rows in (1, 6, 9):
        w = t.raw_weight(rng, fmt, rows, 2)
        for T in (1, 5):
            x = t.tokens(rng, T, 2 * block, block)
            want = t.run(getattr(module, f"matvec_{{fmt}}_v1"), w, x)
            t.assert_same(t.run(getattr(module, f"matvec_{{fmt}}_rows"), w, x), want, fmt)
print("ok")
"""
    env = dict(os.environ, NUMBA_CPU_NAME=cpu, NUMBA_CPU_FEATURES=features)
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr[-3000:]
