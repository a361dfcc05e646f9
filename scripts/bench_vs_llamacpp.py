"""Decode and prefill tok/s of workbench beside llama.cpp, same file, same threads, one run.

A thin wrapper over `workbench bench SOURCE --peer llamacpp` (see `workbench.bench` for
what is measured and how: one warm-up, then the two engines interleaved repetition by
repetition; llama.cpp timed by its own perf counters). Kept for its old options:

    python scripts/bench_vs_llamacpp.py --model smollm2-135m --threads 1 2
    # the same as: workbench bench smollm2-135m -p 32 -n 64 -t 1,2 -r 3 --peer llamacpp
"""

from __future__ import annotations

import argparse
import sys

from workbench.cli import main as workbench_main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--prompt-tokens", type=int, default=32)
    ap.add_argument("--gen", type=int, default=64)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--json", action="store_true", help="print the records as JSON instead of the table")
    args = ap.parse_args()
    return workbench_main(["bench", args.model, "-p", str(args.prompt_tokens), "-n", str(args.gen),
                           "-t", ",".join(map(str, args.threads)), "-r", str(args.reps), "--peer", "llamacpp",
                           "--json" if args.json else "--md"])


if __name__ == "__main__":
    sys.exit(main())
