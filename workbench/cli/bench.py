"""`workbench bench` and `workbench sweep`: tok/s records, printed as they come.

`bench` runs `workbench.bench` (llama-bench's tests and flags, optionally beside llama.cpp
itself) or measures the memory bandwidth (--membw); `sweep` runs a grid of bench points on
a Dask cluster. Progress goes to stderr, one line per record; stdout gets the table (or
JSON, CSV) at the end.
"""

from __future__ import annotations

import argparse
import json
import sys

from workbench.cli.options import int_or_off, positive_int


def add_bench(sub) -> None:
    """`workbench bench SOURCE...` (llama-bench's flags) or `workbench bench --membw`"""
    b = sub.add_parser("bench", help="prefill/decode tok/s of models (llama-bench style), or --membw",
                       description="Every SOURCE x thread count x test (ppN: N prompt tokens in one forward; "
                                   "tgN: N one-token steps) runs once to warm up, then -r times.")
    b.add_argument("sources", nargs="*", metavar="SOURCE", help="models to benchmark (catalog names, GGUF files, "
                                                                "HF directories)")
    b.add_argument("-m", "--model", action="append", default=[], metavar="SOURCE",
                   help="a model to benchmark, as llama-bench's -m (repeatable; adds to SOURCE...)")
    b.add_argument("-p", "--n-prompt", default="32", metavar="N[,N...]", help="prompt lengths of ppN tests (0: none)")
    b.add_argument("-n", "--n-gen", default="64", metavar="N[,N...]", help="token counts of tgN tests (0: none)")
    b.add_argument("-pg", action="append", default=[], metavar="PP,TG",
                   help="a prompt of PP tokens then TG generated, timed together (repeatable)")
    b.add_argument("-d", "--n-depth", default=None, metavar="N[,N...]",
                   help="tokens in the KV cache before each test (default: 0 for pp, 8 for tg)")
    b.add_argument("-t", "--threads", default=None, metavar="T[,T...]", help="thread counts (default: all of numba's)")
    b.add_argument("-r", "--repetitions", default="5", metavar="R", help="timed repetitions per test (default 5)")
    b.add_argument("--peer", choices=["llamacpp"], default=None,
                   help="also run each test through llama.cpp's llama-bench (`make peer`) on the same GGUF, "
                        "interleaved")
    from workbench.engine.options import PROFILES

    b.add_argument("--profile", choices=list(PROFILES), default=None,
                   help="workbench load profile (default optimized)")
    out = b.add_mutually_exclusive_group()
    out.add_argument("-o", "--output", choices=["md", "csv", "json", "jsonl"], default=None,
                     help="output format, as llama-bench's -o (default md); records carry llama-bench's keys")
    out.add_argument("--md", dest="output", action="store_const", const="md", help="same as -o md")
    out.add_argument("--json", dest="output", action="store_const", const="json", help="same as -o json")
    out.add_argument("--csv", dest="output", action="store_const", const="csv", help="same as -o csv")
    b.add_argument("--membw", action="store_true", help="STREAM-style memory bandwidth (read, copy, triad)")
    b.add_argument("--refresh", action="store_true", help="with --membw: measure again instead of reading the cache")


def add_sweep(sub) -> None:
    """`workbench sweep SOURCE... --out FILE`: the grid's axes as comma-separated lists"""
    from workbench.engine.options import PROFILES

    s = sub.add_parser("sweep", help="a grid of bench points on a Dask cluster (a LocalCluster by default)",
                       description="Every SOURCE x value of each list option is one point: a ppN and a tgN test "
                                   "(and perplexity with --score) in a fresh process on a Dask worker, one point "
                                   "per worker at a time. Records stream into --out as points finish.")
    s.add_argument("sources", nargs="+", metavar="SOURCE", help="models (catalog names, GGUF files, HF directories), "
                                                                "resolved on the workers")
    s.add_argument("-t", "--threads", default="1", metavar="T[,T...]", help="thread counts (default 1)")
    s.add_argument("-p", "--n-prompt", default="32", metavar="N[,N...]", help="prompt lengths of ppN (0: none)")
    s.add_argument("-n", "--n-gen", default="16", metavar="N[,N...]", help="token counts of tgN (0: none)")
    s.add_argument("-r", "--repetitions", default="3", metavar="R", help="timed repetitions per test (default 3)")
    s.add_argument("--quant-threshold", default=None, metavar="N|off[,...]",
                   help="load-time quantization thresholds (default: the profile's)")
    s.add_argument("--quant-type", default=None, metavar="TYPE[,TYPE]", help="q8_0, q4_0 (default: the profile's)")
    s.add_argument("--kv-type", default=None, metavar="TYPE[,TYPE]", help="f16, f32 (default: the profile's)")
    s.add_argument("--kernel", default="default", metavar="K[,K...]",
                   help="kernel choices: default, a variant name (serial, row_groups, one_row) or "
                        "OP:FMT=NAME, several joined by +")
    s.add_argument("--cpu-kind", default=None, metavar="KIND[,KIND]",
                   help="run each point only on workers whose CPU name or flags contain KIND (EPYC, Xeon, avx512f)")
    s.add_argument("--profile", choices=list(PROFILES), default=None, help="workbench load profile")
    s.add_argument("--score", default=None, metavar="TEXTFILE", help="also measure perplexity on this text")
    s.add_argument("--score-tokens", type=positive_int, default=128, help="tokens of it to score (default 128)")
    s.add_argument("--out", "-o", required=True, help="results file: .parquet or .jsonl")
    s.add_argument("--scheduler", default=None, metavar="tcp://HOST:8786",
                   help="a running Dask scheduler (workers started with --resources bench=1)")
    s.add_argument("--workers", type=positive_int, default=1, help="workers of the LocalCluster (default 1)")
    s.add_argument("--timeout", type=float, default=None, help="seconds a point may take before it is killed")
    again = s.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="skip the points --out holds as finished")
    again.add_argument("--overwrite", action="store_true", help="replace --out")
    s.add_argument("--json", action="store_true", help="print this run's records, one JSON object a line")


def run_bench(args) -> int:
    from workbench.errors import ParameterError

    args.sources = list(args.sources) + list(args.model)
    if args.membw and args.sources:
        raise ParameterError("bench: give SOURCEs to benchmark or --membw, not both")
    if not args.membw and not args.sources:
        raise ParameterError("bench: give one or more SOURCEs to benchmark, or --membw for the memory bandwidth")
    if args.sources:
        return _bench_models(args)
    from workbench.machine import cache_path, machine_bandwidth

    if args.refresh or not cache_path().is_file():
        print("measuring memory bandwidth (a few seconds; cached for this machine)...", file=sys.stderr)
    bw = machine_bandwidth(refresh=args.refresh)
    if args.output in ("json", "jsonl"):  # --json is -o json
        print(json.dumps(bw.as_dict()))
        return 0
    print(f"{bw.cpu}, {bw.cpus} CPUs, measured {bw.date} ({3 * bw.buffer_mib} MiB, best of {bw.repeats})")
    print(f"{'threads':>7}{'read GB/s':>11}{'copy GB/s':>11}{'triad GB/s':>12}")
    for r in bw.table():
        print(f"{r['threads']:>7}{r['read']:>11.1f}{r['copy']:>11.1f}{r['triad']:>12.1f}")
    print(f"cache: {bw.path}", file=sys.stderr)
    return 0


def _bench_models(args) -> int:
    """`workbench bench SOURCE...`: records from workbench.bench, progress on stderr."""
    from workbench.bench import iter_bench, parse_counts
    from workbench.errors import ParameterError
    from workbench.kernels.jit import max_threads

    threads = parse_counts(args.threads, "-t/--threads", 1) if args.threads is not None else [max_threads()]
    reps = parse_counts(args.repetitions, "-r/--repetitions", 1)
    if len(reps) != 1:
        raise ParameterError(f"-r/--repetitions takes one count, got {args.repetitions!r}")
    records = []
    pg = []
    for text in args.pg:
        parts = text.split(",")
        if len(parts) != 2:
            raise ParameterError(f"-pg takes PP,TG (two counts), got {text!r}")
        pg.append(tuple(parse_counts(part, "-pg", 0)[0] for part in parts))
    depth = None if args.n_depth is None else parse_counts(args.n_depth, "-d/--n-depth")
    for r in iter_bench(args.sources, n_prompt=parse_counts(args.n_prompt, "-p/--n-prompt"),
                        n_gen=parse_counts(args.n_gen, "-n/--n-gen"), threads=threads, reps=reps[0],
                        peer=args.peer, profile=args.profile, n_pg=pg, n_depth=depth):
        peer = f" | llama.cpp {r.peer_tok_s:.2f} ± {r.peer_stdev:.2f}, ratio {r.ratio:.2f}" if r.peer else ""
        gbps = f", {r.gbps:.1f} GB/s" if r.gbps is not None else ""
        print(f"[bench] {r.model} {r.test} t={r.threads}: {r.tok_s:.2f} ± {r.stdev:.2f} tok/s{gbps}{peer}",
              file=sys.stderr)
        records.append(r)
    from workbench.llama_bench import render

    print(render(records, args.output or "md"), end="")
    return 0


def run_sweep(args) -> int:
    """`workbench sweep SOURCE...`: progress on stderr, a table (or JSON lines) of this run's records."""
    from workbench.bench import parse_counts
    from workbench.errors import ParameterError
    from workbench.sweep import Grid, run

    def words(text):
        return None if text is None else [w.strip() for w in text.split(",") if w.strip()]

    def threshold(word):
        try:
            return int_or_off(word)
        except argparse.ArgumentTypeError as e:
            raise ParameterError(f"--quant-threshold: {e}") from None

    reps = parse_counts(args.repetitions, "-r/--repetitions", 1)
    if len(reps) != 1:
        raise ParameterError(f"-r/--repetitions takes one count, got {args.repetitions!r}")
    grid = Grid(sources=args.sources, threads=parse_counts(args.threads, "-t/--threads", 1),
                n_prompt=parse_counts(args.n_prompt, "-p/--n-prompt"), n_gen=parse_counts(args.n_gen, "-n/--n-gen"),
                quant_threshold=None if args.quant_threshold is None else [threshold(w) for w in
                                                                           words(args.quant_threshold)],
                quant_type=words(args.quant_type), kv_type=words(args.kv_type), kernel=words(args.kernel),
                cpu_kind=words(args.cpu_kind) or [None], reps=reps[0], profile=args.profile, score=args.score,
                score_tokens=args.score_tokens)
    result = run(grid, args.out, scheduler=args.scheduler, n_workers=args.workers, timeout=args.timeout,
                 resume=args.resume, overwrite=args.overwrite)
    if args.json:
        for r in result.records:
            print(json.dumps(r, default=str))
    elif result.records:
        print(_sweep_markdown(result.records))
    print(f"[sweep] {result.ok} ok, {result.failed} failed, {len(result.skipped)} finished earlier "
          f"({result.points} points) -> {args.out} in {result.seconds:.1f} s", file=sys.stderr)
    for r in result.records:
        if r.get("status") != "ok":
            print(f"[sweep] failed: {r['source']} t={r['threads']} kernel={r['kernel']}: {r['error']}", file=sys.stderr)
    return 1 if result.failed else 0


def _sweep_markdown(records) -> str:
    def num(value, fmt):
        return "" if value is None or value != value else format(value, fmt)

    head = ["model", "quant", "threshold", "kv", "kernel", "threads", "pp t/s", "tg t/s", "ppl", "host", "status"]
    lines = ["| " + " | ".join(head) + " |", "|---|---|---:|---|---|---:|---:|---:|---:|---|---|"]
    for r in records:
        quant = (r.get("quant") or "") + (f" ({r['converted']} at load)" if r.get("converted") else "")
        lines.append("| " + " | ".join([
            str(r.get("model") or r["source"]), quant, "off" if r.get("quant_threshold") is None else
            f"{r['quant_threshold']} {r.get('quant_type')}", str(r.get("kv_type")), str(r.get("kernel")),
            str(r.get("threads")), num(r.get("pp_tok_s"), ".1f"), num(r.get("tg_tok_s"), ".1f"),
            num(r.get("perplexity"), ".2f"), str(r.get("host") or ""), r.get("status", "")]) + " |")
    return "\n".join(lines)
