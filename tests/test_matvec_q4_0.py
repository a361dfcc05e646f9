"""The eight-row q4_0 kernel against the reference order, bit for bit.

`matvec_q4_0.matvec_q4_0_oct` (eight rows per pass, one int32 lane per row) must keep each output row's arithmetic exactly that of
`matvec_legacy.matvec_q4_0_v1` (llama.cpp's repacked gemv order) and so equal it, and
`matvec_q4_0_rows`, bit for bit, for
- raw random block bytes (every nibble value) with finite fp16 scales, and weights from
  `quantize_ref`;
- row counts that do and do not fill the last group of eight (1..9, 13, 67), one to five
  blocks per row, T in {1, 2, 5} with a zero token and a zero block among them;
- the parallel kernel at 1 and 2 threads and the serial one;
- the code numba emits for Haswell (AVX2's `vpmaddubsw` / `vphaddd`) and for Ivy Bridge
  (no AVX2: plain vector arithmetic), each in a subprocess.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.test_matvec_variants import ROWS, assert_same, raw_weight, run, tokens
from workbench.kernels import matvec_legacy
from workbench.kernels.jit import max_threads, set_threads
from workbench.kernels.matvec_q4_0 import matvec_q4_0_oct, matvec_q4_0_oct_serial
from workbench.quant import quantize_ref

ROOT = Path(__file__).resolve().parents[1]


def test_oct_equals_reference_order_bit_for_bit():
    rng = np.random.default_rng(40)
    for rows in ROWS:
        for blocks in (1, 2, 5):
            w = raw_weight(rng, "q4_0", rows, blocks)
            for T in (1, 2, 5):
                x = tokens(rng, T, blocks * 32, 32)
                want = run(matvec_legacy.matvec_q4_0_v1, w, x)
                assert np.isfinite(want).all()
                what = f"rows={rows} cols={blocks * 32} T={T}"
                assert_same(run(matvec_legacy.matvec_q4_0_rows, w, x), want, what + " rows kernel")
                assert_same(run(matvec_q4_0_oct, w, x), want, what)
                assert_same(run(matvec_q4_0_oct_serial, w, x), want, what + " serial")


def test_oct_equals_reference_order_on_quantized_weights():
    rng = np.random.default_rng(41)
    dense = (rng.standard_normal((37, 640)) * rng.uniform(0.01, 3, (37, 1))).astype(np.float32)
    w = quantize_ref("q4_0", dense)
    w.flags.writeable = False
    x = tokens(rng, 5, 640, 32)
    assert_same(run(matvec_q4_0_oct, w, x), run(matvec_legacy.matvec_q4_0_v1, w, x), "quantize_ref weights")


@pytest.mark.skipif(max_threads() < 2, reason="numba was started with one thread")
def test_oct_at_one_and_two_threads():
    rng = np.random.default_rng(42)
    w = raw_weight(rng, "q4_0", 203, 3)
    x = tokens(rng, 2, 96, 32)
    want = run(matvec_legacy.matvec_q4_0_v1, w, x)
    try:
        for n in (1, 2):
            set_threads(n)
            assert_same(run(matvec_q4_0_oct, w, x), want, f"at {n} threads")
    finally:
        set_threads(max_threads())


@pytest.mark.parametrize("cpu, features, avx2", [
    ("haswell", "+avx,+avx2,+fma,+f16c,+bmi,+bmi2,+popcnt", True),
    ("ivybridge", "+avx,+f16c,+popcnt", False),
])
def test_oct_paths(cpu, features, avx2):
    """Compiled for Haswell the block dots take `vpmaddubsw`, `vpmaddwd` and `vphaddd`;
    for Ivy Bridge the same integers come from widening vector arithmetic and the same
    lane order from plain shuffles. Either way the results equal the reference order."""
    script = f"""
import numpy as np
from workbench.kernels import simd
assert simd.AVX2 == {avx2}
import tests.test_matvec_q4_0 as t
from workbench.kernels import matvec_legacy, matvec_q4_0
rng = np.random.default_rng(43)
for rows in (1, 6, 9, 17):
    w = t.raw_weight(rng, "q4_0", rows, 2)
    for T in (1, 5):
        x = t.tokens(rng, T, 64, 32)
        want = t.run(matvec_legacy.matvec_q4_0_v1, w, x)
        t.assert_same(t.run(matvec_q4_0.matvec_q4_0_oct, w, x), want, f"rows={{rows}} T={{T}}")
print("ok")
"""
    env = dict(os.environ, NUMBA_CPU_NAME=cpu, NUMBA_CPU_FEATURES=features)
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr[-3000:]
