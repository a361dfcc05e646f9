"""Benchmark the q4_0 decode matvec: `matvec_q4_0_rows` against `matvec_q4_0_oct`, GB/s.

    .venv/bin/python scripts/bench_q4_0.py [--reps 41] [--threads 1 2] [--shapes 3072x576 ...]

Weights are `quantize_ref("q4_0", ...)` of Gaussian rows; T = 1. The two kernels run
interleaved call by call in one process, so that drift on a shared machine hits them alike:
  rows   matvec_legacy.matvec_q4_0_rows(out, w, x), x float32 (quantized inside)
  oct    matvec_q4_0.matvec_q4_0_oct(out, w, x), the same work (quantizes, allocates)
GB/s = weight bytes / median seconds per call; each cell also shows the best sample.
"speedup" = rows median time / oct median time. Tensors that fit the caches run faster
than memory: 576x1536 (0.5 MB) and 640x2048 (0.7 MB) fit L2/L3, 49152x576 (16 MB) L3 only.
"""

import argparse
import platform
import subprocess
import time

import numpy as np

from workbench.kernels.jit import max_threads, set_threads
from workbench.kernels.matvec_legacy import matvec_q4_0_rows
from workbench.kernels.matvec_q4_0 import matvec_q4_0_oct
from workbench.quant import quantize_ref

SHAPES = ["3072x576", "576x1536", "49152x576", "640x2048"]
KERNELS = ["rows", "oct"]


def time_interleaved(calls, reps: int, inner: int) -> list[list[float]]:
    """Seconds per call of each of `calls`, `reps` samples each, taken in turn."""
    for call in calls:
        call()  # compile / fault the pages in
    samples = [[] for _ in calls]
    for _ in range(reps):
        for call, s in zip(calls, samples):
            t0 = time.perf_counter()
            for _ in range(inner):
                call()
            s.append((time.perf_counter() - t0) / inner)
    return samples


def measure(shape: str, threads: int, reps: int, rng) -> dict:
    """One record: the raw samples of each kernel on one weight shape at `threads`."""
    rows, cols = map(int, shape.split("x"))
    w = quantize_ref("q4_0", rng.standard_normal((rows, cols)).astype(np.float32))
    x = rng.standard_normal((1, cols)).astype(np.float32)
    outs = [np.empty((1, rows), np.float32) for _ in KERNELS]
    calls = [lambda: matvec_q4_0_rows(outs[0], w, x),
             lambda: matvec_q4_0_oct(outs[1], w, x)]
    set_threads(threads)
    inner = max(1, int(4e6 // w.nbytes))  # a few MB per sample: small tensors repeat
    samples = time_interleaved(calls, reps, inner)
    assert all(np.array_equal(o.view(np.uint32), outs[0].view(np.uint32)) for o in outs[1:])
    return dict(shape=shape, threads=threads, bytes=w.nbytes, samples=dict(zip(KERNELS, samples)))


def markdown(records: list[dict]) -> str:
    lines = ["| shape | MB | threads | " + " | ".join(f"{k} GB/s" for k in KERNELS) + " | speedup |",
             "|---|---|---|" + "---|" * (len(KERNELS) + 1)]
    for r in records:
        s = r["samples"]
        cells = [f"{r['bytes'] / np.median(s[k]) / 1e9:.1f} ({r['bytes'] / min(s[k]) / 1e9:.1f})" for k in KERNELS]
        speedup = np.median(s["rows"]) / np.median(s["oct"])
        lines.append(f"| {r['shape']} | {r['bytes'] / 1e6:.2f} | {r['threads']} | " + " | ".join(cells)
                     + f" | {speedup:.2f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=41)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--shapes", nargs="+", default=SHAPES, help="rows x cols of the weight")
    args = ap.parse_args()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    print(f"# q4_0 matvec, T=1, commit {commit} (+ working tree), {platform.processor() or platform.machine()}")
    print("# cell: median GB/s (best); speedup = rows time / oct time")
    rng = np.random.default_rng(0)
    records = [measure(shape, n, args.reps, rng) for shape in args.shapes for n in args.threads
               if n <= max_threads()]
    set_threads(max_threads())
    print(markdown(records))


if __name__ == "__main__":
    main()
