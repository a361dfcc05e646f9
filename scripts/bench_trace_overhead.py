"""What tracing costs: decode tok/s untraced and traced per step, per layer and per op.

    .venv/bin/python scripts/bench_trace_overhead.py [--model smollm2-135m gemma3-270m]
                     [--threads 1 2] [--tokens 48] [--reps 7] [--json]

Every mode runs the same compiled step (a trace only adds a cycle-counter read per op
and a deferred record per forward), so the cost should be small at every level. One
process per model, one load; the four modes run interleaved (the order rotates every
repetition) so that drift and other processes' load fall on all alike. tok/s is
the generator's own decode figure (forward passes only, sampling excluded). The table
gives the median tok/s per mode and the cost of tracing as the median over repetitions
of 1 - traced / untraced within the same repetition (paired, so that slow drift in the
machine's load cancels); the raw samples are in `--json`.
"""

import argparse
import json
import os
import statistics
import subprocess
import time

import workbench
from workbench.machine import cpu_name

MODES = ("untraced", "step", "layer", "op")


def run(model, mode: str, prompt: str, tokens: int) -> float:
    if mode == "untraced":
        gen = model.generate(prompt, max_tokens=tokens)
    else:
        with workbench.trace(mode):
            gen = model.generate(prompt, max_tokens=tokens)
    if len(gen.tokens) < tokens:
        raise SystemExit(f"the model stopped after {len(gen.tokens)} tokens: pick a prompt that runs longer")
    return gen.decode_tok_s


def measure(source: str, threads: int, tokens: int, reps: int, prompt: str) -> dict:
    """Interleaved samples of every mode on one model at one thread count."""
    model = workbench.load(source, threads=threads, n_ctx=256)
    for mode in MODES:  # warm-up: every code path run once
        run(model, mode, prompt, 4)
    samples = {m: [] for m in MODES}
    for rep in range(reps):
        order = MODES[rep % len(MODES):] + MODES[: rep % len(MODES)]
        for mode in order:
            samples[mode].append(run(model, mode, prompt, tokens))
    median = {m: statistics.median(v) for m, v in samples.items()}
    cost = {m: statistics.median(1 - t / u for t, u in zip(samples[m], samples["untraced"])) for m in MODES}
    return {"model": str(model.path.name), "threads": threads, "tokens": tokens, "reps": reps,
            "median_tok_s": median, "median_cost": cost, "samples_tok_s": samples}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", nargs="+", default=["smollm2-135m", "gemma3-270m"])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--tokens", type=int, default=48)
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--prompt", default="Once upon a time")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()

    rows = [measure(m, t, args.tokens, args.reps, args.prompt) for m in args.model for t in args.threads]
    record = {
        "cpu": cpu_name(), "load_average": os.getloadavg(),
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                 text=True).stdout.strip(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"), "rows": rows,
    }
    if args.json:
        print(json.dumps(record))
        return
    print(f"{record['cpu']}, {args.tokens} tokens x {args.reps} interleaved reps, load average "
          f"{record['load_average'][0]:.2f}; decode tok/s (median) and cost vs untraced (median of paired reps)")
    print("| model | threads | untraced | step | layer | op |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        med, cost = r["median_tok_s"], r["median_cost"]
        cells = " | ".join(f"{med[m]:.1f} ({cost[m]:+.1%})" for m in MODES[1:])
        print(f"| {r['model']} | {r['threads']} | {med['untraced']:.1f} | {cells} |")


if __name__ == "__main__":
    main()
