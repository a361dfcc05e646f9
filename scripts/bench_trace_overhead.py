"""What tracing costs: decode tok/s untraced, traced per layer, and traced per op.

    .venv/bin/python scripts/bench_trace_overhead.py [--model smollm2-135m] [--threads 1]
                     [--tokens 32] [--reps 7] [--json]

One process, one model load; the three modes run interleaved (the order rotates every
repetition) so that drift and other processes' load fall on all three alike. tok/s is
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

MODES = ("untraced", "layer", "op")


def run(model, mode: str, prompt: str, tokens: int) -> float:
    if mode == "untraced":
        gen = model.generate(prompt, max_tokens=tokens)
    else:
        with workbench.trace(mode):
            gen = model.generate(prompt, max_tokens=tokens)
    if len(gen.tokens) < tokens:
        raise SystemExit(f"the model stopped after {len(gen.tokens)} tokens: pick a prompt that runs longer")
    return gen.decode_tok_s


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--tokens", type=int, default=32)
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--prompt", default="Once upon a time")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()

    model = workbench.load(args.model, threads=args.threads, n_ctx=256)
    for mode in MODES:  # warm-up: every kernel loaded, every code path run once
        run(model, mode, args.prompt, 4)
    samples = {m: [] for m in MODES}
    for rep in range(args.reps):
        order = MODES[rep % 3:] + MODES[: rep % 3]
        for mode in order:
            samples[mode].append(run(model, mode, args.prompt, args.tokens))

    median = {m: statistics.median(v) for m, v in samples.items()}
    cost = {m: statistics.median(1 - t / u for t, u in zip(samples[m], samples["untraced"])) for m in MODES}
    record = {
        "model": str(model.path.name), "threads": args.threads, "tokens": args.tokens, "reps": args.reps,
        "cpu": cpu_name(),
        "load_average": os.getloadavg(),
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                 text=True).stdout.strip(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "median_tok_s": median, "median_cost": cost, "samples_tok_s": samples,
    }
    if args.json:
        print(json.dumps(record))
        return
    print(f"{record['model']}, {args.threads} thread(s), {args.tokens} tokens x {args.reps} interleaved reps, "
          f"load average {record['load_average'][0]:.2f}")
    print("| mode | decode tok/s (median) | min..max | cost vs untraced (median of paired reps) |")
    print("|---|---|---|---|")
    for m in MODES:
        print(f"| {m} | {median[m]:.1f} | {min(samples[m]):.1f}..{max(samples[m]):.1f} | "
              f"{'-' if m == 'untraced' else f'{cost[m]:+.1%}'} |")


if __name__ == "__main__":
    main()
