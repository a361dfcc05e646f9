"""The `workbench` command (also `python -m workbench`).

    workbench generate SOURCE --prompt TEXT [--max-tokens N] [sampling] [load options]
                       [--chat] [--system TEXT] [--template NAME] [--stop TEXT] [--stream] [--timings] [--json]
    workbench chat SOURCE [--system TEXT] [--template NAME] [sampling] [load options] [--json]
    workbench inspect FILE|DIR [--json]
    workbench convert SRC DST --to {gguf-q8_0,gguf-q4_0,gguf-f16,gguf-f32,hf-f32} [--overwrite] [--json]
    workbench trace SOURCE --prompt TEXT [--max-tokens N] [--level op] [--out chrome.json] [--save trace.json]
                    [--html report.html [--plotlyjs inline|cdn|PATH]] [load options] [--json]
    workbench compare A B [--steps decode] [--sigmas 3] [--html chart.html] [--json]

Load options: --threads N, --ctx N, --profile {baseline,optimized,aggressive},
--quant-threshold N|off, --quant-type {q8_0,q4_0}, --quantize-lm-head/--keep-lm-head,
--requantize, --no-fuse, --kv-type {f16,f32}. SOURCE: a catalog name or derived variant
(smollm2-135m:q4_0), a GGUF file, an HF directory or an HF repo id.
    workbench bench SOURCE... [-m SOURCE] [-p 32] [-n 64] [-pg 32,64] [-d 0,512] [-t 1,2] [-r 5]
                    [--peer llamacpp] [-o md|csv|json|jsonl]
    workbench bench --membw [--refresh] [--json]
    workbench cache info|clear [--all] [--json]
    workbench sweep SOURCE... [-t 1,2] [-p 32] [-n 16] [--quant-threshold off,768] [--quant-type q8_0,q4_0]
                    [--kv-type f16,f32] [--kernel default,serial] [--cpu-kind EPYC,Xeon] [--score TEXTFILE]
                    --out sweep.parquet [--scheduler tcp://HOST:8786] [--resume | --overwrite] [--json]
    workbench twin NAME [--rebuild] [--verify] [--json]

`twin NAME` makes a shape twin (tinyllama-1.1b, gemma3-1b, gpt2-124m: random weights at
the real shapes and formats) into the cache and prints its files; `twin:NAME` as a
SOURCE makes it on first use too (`twin:NAME:gguf` is its GGUF file).

Bad input (a missing file, a bad value, an output that cannot be written, stdout on a
full device) prints one line on stderr and exits with 2; this is the only place in
workbench that prints. Values are checked before the model is loaded, and a bad one is
named by its flag (`--top-p must be in (0, 1]`), not by the Python keyword.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys

from workbench.errors import ParameterError, WorkbenchError

# Python keyword -> the flag that sets it, where the two are not spelled alike
_FLAG_OF = {"n_ctx": "--ctx", "text": "--prompt"}
# errors of writing to a device or disk that cannot take more: one line, exit 2
_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO)


def _positive_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def _threshold(text: str) -> int | None:
    if text.lower() in ("off", "none"):
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or 'off', got {text!r}") from None


def _add_load_args(p: argparse.ArgumentParser) -> None:
    """The options of `workbench.load`; left out, the profile's value holds."""
    from workbench.engine.options import PROFILES
    from workbench.nn.kv_cache import KV_TYPES
    from workbench.nn.options import QUANT_TYPES

    p.add_argument("--threads", "-t", type=_positive_int, default=argparse.SUPPRESS)
    p.add_argument("--ctx", type=_positive_int, default=None, help="context size (KV cache positions)")
    p.add_argument("--profile", choices=list(PROFILES), default=None, help="named option set (default optimized)")
    p.add_argument("--quant-threshold", type=_threshold, default=argparse.SUPPRESS, metavar="N|off",
                   help="quantize float linear layers whose larger dimension is >= N")
    p.add_argument("--quant-type", choices=list(QUANT_TYPES), default=argparse.SUPPRESS)
    p.add_argument("--quantize-lm-head", dest="quantize_lm_head", action="store_true", default=argparse.SUPPRESS,
                   help="quantize the lm_head whatever the threshold")
    p.add_argument("--keep-lm-head", dest="quantize_lm_head", action="store_false", default=argparse.SUPPRESS,
                   help="keep the lm_head in its file format whatever the threshold")
    p.add_argument("--requantize", action="store_true", default=argparse.SUPPRESS,
                   help="also convert weights the file stores quantized")
    p.add_argument("--no-fuse", dest="fuse", action="store_false", default=argparse.SUPPRESS,
                   help="keep Q/K/V and gate/up as separate matrices")
    p.add_argument("--kv-type", choices=list(KV_TYPES), default=argparse.SUPPRESS,
                   help="KV cache precision: f16 (default, llama.cpp's) or f32 (float32 attention, as transformers)")


def _add_sampling_args(p: argparse.ArgumentParser, max_tokens: int) -> None:
    p.add_argument("--max-tokens", "-n", dest="max_tokens", type=_positive_int,
                   default=max_tokens)
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--top-k", type=_positive_int, default=None)
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--repetition-penalty", type=float, default=1.0)
    p.add_argument("--seed", type=_positive_int, default=None)
    p.add_argument("--stop", action="append", default=None, metavar="TEXT", help="stop at this text (repeatable)")


def _add_chat_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--system", default=None, help="a system prompt (chat)")
    p.add_argument("--template", default=None,
                   help="chat template: a built-in name (chatml, gemma, llama3) instead of the model's own")


def _load(args):
    """workbench.load with the options given on the command line."""
    import workbench

    given = {k: getattr(args, k) for k in ("threads", "quant_threshold", "quant_type", "quantize_lm_head",
                                           "requantize", "fuse", "kv_type") if hasattr(args, k)}
    model = workbench.load(args.source, n_ctx=args.ctx, profile=args.profile, **given)
    if model.load_report.compiled:  # the first run on this CPU: say where the seconds went
        print(f"workbench: compiled for this CPU in {model.load_report.warm_up_seconds:.1f} s "
              f"(first run; cached in {model.load_report.compiled})", file=sys.stderr)
    return model


def _print_load_report(model) -> None:
    for line in model.load_report.lines():
        print(f"[load] {line}", file=sys.stderr)


def _version() -> str:
    """`workbench X.Y.Z (commit abc1234)`: the commit when run from a git checkout."""
    import workbench
    from workbench.provenance import git_commit

    commit = git_commit()
    return f"workbench {workbench.__version__}" + ("" if commit == "unknown" else f" (commit {commit})")


class _VersionAction(argparse.Action):
    """--version, asking git for the commit only when given."""

    def __call__(self, parser, namespace, values, option_string=None):
        print(_version())
        parser.exit()


def _sampling_args(args) -> dict:
    """The generation arguments of `generate` and `chat`, checked before any model loads
    (`engine.params.generation_args`, the check every entry point shares) with the
    template name."""
    from workbench.engine.params import generation_args
    from workbench.errors import ParameterError

    generation_args(args.max_tokens, args.temperature, args.top_k, args.top_p, args.repetition_penalty, args.seed,
                    args.stop or ())
    if args.template is not None:
        from workbench.formats.chat import BUILTIN_TEMPLATES

        if args.template not in BUILTIN_TEMPLATES:
            raise ParameterError(f"--template must be one of {', '.join(BUILTIN_TEMPLATES)}, got {args.template!r}")
    return dict(max_new_tokens=args.max_tokens, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                repetition_penalty=args.repetition_penalty, seed=args.seed, stop=args.stop or (),
                template=args.template)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="workbench", description="CPU LLM inference you can trace and see.")
    p.add_argument("--version", action=_VersionAction, nargs=0, help="print the version and commit, and exit")
    sub = p.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", help="generate text from a prompt")
    g.add_argument("source", nargs="?", default=None, help="model (default smollm2-135m); see above")
    g.add_argument("--prompt", "-p", required=True)
    _add_sampling_args(g, max_tokens=64)
    _add_load_args(g)
    g.add_argument("--chat", action="store_true", help="wrap the prompt in the model's chat template")
    _add_chat_args(g)
    g.add_argument("--stream", action="store_true", help="print tokens as they are generated")
    g.add_argument("--timings", action="store_true", help="trace per layer and print the timing summary")
    g.add_argument("--json", action="store_true", help="print one JSON object")

    ch = sub.add_parser("chat", help="talk with a model, turn by turn (stdin lines; an empty line or EOF ends)",
                        description="Each line read is a user turn; the whole conversation goes through the "
                                    "model's chat template and the reply streams to stdout.")
    ch.add_argument("source", nargs="?", default=None, help="model (default smollm2-135m); see above")
    _add_sampling_args(ch, max_tokens=256)
    _add_chat_args(ch)
    _add_load_args(ch)
    ch.add_argument("--json", action="store_true", help="one JSON object per turn instead of the text")

    c = sub.add_parser("convert", help="convert a GGUF model: requantize it, or write an HF F32 directory")
    c.add_argument("src", help="GGUF file or catalog name")
    c.add_argument("dst", help="output file (gguf-*) or directory (hf-f32)")
    c.add_argument("--to", required=True, help="gguf-q8_0, gguf-q4_0, gguf-f16, gguf-f32 or hf-f32")
    c.add_argument("--overwrite", action="store_true", help="replace dst if it exists")
    c.add_argument("--json", action="store_true")

    i = sub.add_parser("inspect", help="print a GGUF or safetensors file's (or an HF directory's) metadata and tensors")
    i.add_argument("file")
    i.add_argument("--json", action="store_true")

    t = sub.add_parser("trace", help="trace a generation: Chrome trace JSON, per-step summary, roofline")
    t.add_argument("source", nargs="?", default=None, help="model (default smollm2-135m); see above")
    t.add_argument("--prompt", "-p", required=True)
    t.add_argument("--max-tokens", "-n", type=_positive_int, default=16)
    _add_load_args(t)
    t.add_argument("--chat", action="store_true", help="wrap the prompt in the model's chat template")
    t.add_argument("--level", choices=["step", "layer", "op"], default="op")
    t.add_argument("--out", "-o", default=None,
                   help="write the Chrome trace-event JSON here (Perfetto, speedscope; workbench.trace.load reads it)")
    t.add_argument("--save", default=None, help="write workbench's own trace JSON here (Tracer.save)")
    t.add_argument("--html", default=None, help="write a standalone HTML report with the charts")
    t.add_argument("--plotlyjs", default="inline", metavar="inline|cdn|PATH",
                   help="--html: inline plotly.js once (default, opens offline), or load it from the CDN or a "
                        "local plotly.min.js")
    t.add_argument("--no-roofline", action="store_true",
                   help="skip the bandwidth roofline (measuring it takes a few seconds the first time)")
    t.add_argument("--json", action="store_true", help="print one JSON object instead of the tables")

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

    cmp = sub.add_parser("compare", help="per-op / per-layer (traces) or per-test (bench files) differences of two "
                                         "runs, flagging those beyond run-to-run noise")
    cmp.add_argument("a", help="trace file (workbench or Chrome JSON) or bench results (-o json|jsonl)")
    cmp.add_argument("b", help="the same kind of file, the run to compare with A")
    cmp.add_argument("--steps", choices=["decode", "prefill", "all"], default="decode", help="traces: which steps")
    cmp.add_argument("--sigmas", type=float, default=3.0, help="noise threshold in standard errors (default 3)")
    cmp.add_argument("--html", default=None, help="also write the chart (plotly.js inlined)")
    cmp.add_argument("--json", action="store_true")

    k = sub.add_parser("cache", help="where numba's compiled code for workbench lives: info, or clear it")
    k.add_argument("action", choices=["info", "clear"])
    k.add_argument("--all", action="store_true", help="clear: also this version's code (recompiled on next use)")
    k.add_argument("--json", action="store_true")
    _add_sweep_parser(sub)
    _add_twin_parser(sub)
    return p


def _compare(args) -> int:
    import workbench

    result = workbench.compare(args.a, args.b, steps=args.steps, sigmas=args.sigmas)
    if args.html:
        result.figure().write_html(args.html, include_plotlyjs=True)
    if args.json:
        print(json.dumps(result.as_dict(), default=str))
    else:
        print(result.markdown(), end="")
    return 0


def _cache(args) -> int:
    from workbench.kernels import cache

    if args.action == "clear":
        removed = cache.clear(everything=args.all)
        print(json.dumps({"removed": removed}) if args.json else
              "\n".join(f"removed {p}" for p in removed) or "nothing to remove")
        return 0
    info = cache.info()
    if args.json:
        print(json.dumps(info))
    else:
        print(f"directory    {info['directory']}{'  (NUMBA_CACHE_DIR)' if info['user_set'] else ''}")
        print(f"entries      {info['index_files']} compiled functions, {info['data_files']} compiled versions")
        print(f"size         {info['bytes'] / 2**20:.1f} MiB")
        print(f"stale keys   {len(info['other_keys'])} (workbench cache clear removes them)")
    return 0


def _add_sweep_parser(sub) -> None:
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
                   help="kernel choices: default, a variant name (serial, row_groups, reference_order_v1) or "
                        "OP:FMT=NAME, several joined by +")
    s.add_argument("--cpu-kind", default=None, metavar="KIND[,KIND]",
                   help="run each point only on workers whose CPU name or flags contain KIND (EPYC, Xeon, avx512f)")
    s.add_argument("--profile", choices=list(PROFILES), default=None, help="workbench load profile")
    s.add_argument("--score", default=None, metavar="TEXTFILE", help="also measure perplexity on this text")
    s.add_argument("--score-tokens", type=_positive_int, default=128, help="tokens of it to score (default 128)")
    s.add_argument("--out", "-o", required=True, help="results file: .parquet or .jsonl")
    s.add_argument("--scheduler", default=None, metavar="tcp://HOST:8786",
                   help="a running Dask scheduler (workers started with --resources bench=1)")
    s.add_argument("--workers", type=_positive_int, default=1, help="workers of the LocalCluster (default 1)")
    s.add_argument("--timeout", type=float, default=None, help="seconds a point may take before it is killed")
    again = s.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="skip the points --out holds as finished")
    again.add_argument("--overwrite", action="store_true", help="replace --out")
    s.add_argument("--json", action="store_true", help="print this run's records, one JSON object a line")


def _add_twin_parser(sub) -> None:
    w = sub.add_parser("twin", help="make a shape twin (random weights, real shapes) into the cache",
                       description="Shape twins of the models of rustml's trace report, for speed at real size; "
                                   "never for claims about text. Deterministic (fixed seed).")
    w.add_argument("name", help="tinyllama-1.1b, gemma3-1b or gpt2-124m")
    w.add_argument("--rebuild", action="store_true", help="make it again even when a cached copy matches")
    w.add_argument("--verify", action="store_true", help="check the cached files' sha256 (slow for GBs)")
    w.add_argument("--json", action="store_true")


def _twin(args) -> int:
    from workbench.convert.twins import twin_files

    files = twin_files(args.name, progress=not args.json, rebuild=args.rebuild, verify=args.verify)
    if args.json:
        print(json.dumps({k: str(v) for k, v in files.items()}))
        return 0
    for kind, path in files.items():
        size = sum(p.stat().st_size for p in path.rglob("*")) if path.is_dir() else path.stat().st_size
        print(f"{kind:5} {path} ({size / 2**30:.2f} GiB); load it as twin:{args.name}"
              + (":gguf" if kind == "gguf" and "hf" in files else ""))
    return 0


def _check_early(args, sampling: bool) -> None:
    """What can be checked without the model, checked before it is loaded."""
    from workbench.engine.params import check_int, check_prompt, generation_args

    check_prompt(args.prompt)
    if args.ctx is not None:
        check_int("n_ctx", args.ctx, 1)
    if sampling:
        generation_args(args.max_tokens, args.temperature, args.top_k, args.top_p, args.repetition_penalty,
                        args.seed)
    else:
        check_int("max_tokens", args.max_tokens, 1)


def _generate(args) -> int:
    import workbench
    from workbench.trace import step_summary

    _check_early(args, sampling=True)
    sampling = _sampling_args(args)
    model = _load(args)
    on_token = None
    if args.stream and not args.json:
        sys.stdout.write(args.prompt)

        def on_token(piece, _id):
            sys.stdout.write(piece)
            sys.stdout.flush()

    kwargs = dict(sampling, on_token=on_token, chat=args.chat)
    prompt = args.prompt
    if args.system is not None:  # a system prompt makes it a conversation
        prompt = [{"role": "system", "content": args.system}, {"role": "user", "content": args.prompt}]
    if args.timings:
        with workbench.trace("layer") as tracer:
            gen = model.generate(prompt, **kwargs)
        summary = step_summary(tracer)
    else:
        gen = model.generate(prompt, **kwargs)
        summary = None

    if args.json:
        record = {"model": str(model.path), "threads": model.threads, "profile": model.options.profile,
                  "load": model.load_report.lines(), **gen.as_dict()}
        if summary is not None:
            record["timings"] = summary
        print(json.dumps(record))
        return 0
    if args.stream:
        print()
    else:
        print(args.prompt + gen.text)
    _print_load_report(model)
    print(f"\n[{model.path.name}] prompt {len(gen.prompt_tokens)} tokens at {gen.prefill_tok_s:.1f} tok/s, "
          f"generated {len(gen.tokens)} tokens at {gen.decode_tok_s:.1f} tok/s "
          f"({model.threads} thread{'s' if model.threads > 1 else ''}, stop: {gen.finish_reason})", file=sys.stderr)
    if summary is not None:
        print(_format_summary(summary), file=sys.stderr)
    return 0


def _chat(args) -> int:
    """`workbench chat`: one user turn per stdin line, the reply streamed; the history
    (with --system first) goes through the chat template again at every turn."""
    sampling = _sampling_args(args)
    model = _load(args)
    messages = [] if args.system is None else [{"role": "system", "content": args.system}]
    interactive = sys.stdin.isatty() and not args.json
    turn = 0
    while True:
        if interactive:
            print("> ", end="", file=sys.stderr, flush=True)
        line = sys.stdin.readline()
        if not line.strip():
            return 0
        messages.append({"role": "user", "content": line.strip()})
        stream = model.stream(messages, **sampling)
        for piece in stream:
            if not args.json:
                sys.stdout.write(piece)
                sys.stdout.flush()
        gen = stream.generation
        messages.append({"role": "assistant", "content": gen.text})
        turn += 1
        if args.json:
            print(json.dumps({"turn": turn, **gen.as_dict()}), flush=True)
        else:
            print(flush=True)
            print(f"[{len(gen.prompt_tokens)} prompt tokens, {len(gen.tokens)} generated at "
                  f"{gen.decode_tok_s:.1f} tok/s, stop: {gen.finish_reason}]", file=sys.stderr)


def _format_summary(summary: dict) -> str:
    decode = [s for s in summary["steps"] if s["step"].startswith("decode")]
    lines = []
    for s in summary["steps"][:1] + decode[:1]:
        lines.append(f"[perf] {s['step']:<15} embedding={s['embedding_ms']:.2f}ms layers={s['layers_ms']:.2f}ms "
                     f"norm={s['norm_ms']:.2f}ms projection={s['projection_ms']:.2f}ms total={s['total_ms']:.2f}ms")
    if decode:
        n = len(decode)
        mean = {k: sum(s[k] for s in decode) / n for k in ("embedding_ms", "layers_ms", "norm_ms", "projection_ms", "total_ms")}
        lines.append(f"[perf] decode mean of {n:<3} embedding={mean['embedding_ms']:.2f}ms layers={mean['layers_ms']:.2f}ms "
                     f"norm={mean['norm_ms']:.2f}ms projection={mean['projection_ms']:.2f}ms total={mean['total_ms']:.2f}ms")
    for row in summary["layers"]:
        parts = " ".join(f"{k[:-3]}={v:.3f}ms" for k, v in row.items() if k != "layer")
        lines.append(f"[perf] transformer[{row['layer']}]::forward {parts}")
    return "\n".join(lines)


def _convert(args) -> int:
    from dataclasses import asdict

    from workbench.convert import convert_report

    try:
        r = convert_report(args.src, args.dst, args.to, progress=not args.json, overwrite=args.overwrite)
    except ParameterError as e:
        if e.param == "overwrite":
            raise ParameterError(f"{args.dst} already exists; pass --overwrite to replace it") from None
        raise
    if args.json:
        print(json.dumps(asdict(r), default=str))
        return 0
    formats = ", ".join(f"{n} {f.upper()}" for f, n in sorted(r.formats.items()))
    print(f"{r.source} -> {r.path} ({r.to}): {formats}; {r.bytes_written / 2**20:.1f} MiB in {r.seconds:.1f} s")
    for name, fmt in r.fallback.items():
        print(f"  {name}: kept as {fmt.upper()} (rows not a multiple of the block size)")
    return 0


def _inspect(args) -> int:
    from pathlib import Path

    from workbench.errors import FormatError

    path = Path(args.file)
    if path.is_dir():
        from workbench.formats.hf import HFDirectory

        hf = HFDirectory.open(path)
        info = {"metadata": {"model_type": hf.model_type, **{k: v for k, v in hf.config.items() if k != "model_type"}},
                "tensors": [{"name": n, "type": t.fmt.upper(), "shape": list(t.shape), "bytes": t.data.nbytes}
                            for n in sorted(hf.names) for t in [hf.tensor(n)]]}
        return _print_info(path, info, args.json)
    if not path.is_file():
        raise FormatError(f"{path}: no such file")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic == b"GGUF":
        from workbench.formats.gguf import GGUFFile, describe

        info = describe(GGUFFile.open(path))
    else:
        from workbench.formats.safetensors_file import SafetensorsFile, describe

        info = describe(SafetensorsFile.open(path))
    return _print_info(path, info, args.json)


def _print_info(path, info: dict, as_json: bool) -> int:
    if as_json:
        print(json.dumps(info, default=str))
        return 0
    print(f"{path}")
    for key, value in info.get("metadata", {}).items():
        print(f"  {key} = {value}")
    tensors = info.get("tensors", [])
    print(f"\n  {len(tensors)} tensors")
    for t in tensors:
        print(f"  {t['name']:<40} {t['type']:<6} {str(t['shape']):<20} {t.get('bytes') or 0:>12,}")
    return 0


def _trace(args) -> int:
    from pathlib import Path

    _check_early(args, sampling=False)
    if args.plotlyjs not in ("inline", "cdn") and not args.plotlyjs.endswith(".js"):
        raise ParameterError(f"--plotlyjs must be inline, cdn or the path of a .js file, got {args.plotlyjs!r}")
    outputs = {}
    try:
        for flag in ("out", "save", "html"):  # only the files asked for
            if getattr(args, flag) is not None:
                outputs[flag] = _Output(f"--{flag}", Path(getattr(args, flag)))
        return _trace_to(args, outputs)
    finally:
        for o in outputs.values():
            o.discard()


class _Output:
    """A file the CLI writes after a long run: checked (and its partial file created)
    before the run, so that a directory, a read-only place or a missing parent fails at
    once; written to the partial file and renamed, so that a full disk leaves no
    truncated file under the name."""

    def __init__(self, flag: str, path: Path):
        from workbench.formats.files import partial_path, sweep_partials

        self.flag, self.path = flag, path
        if path.is_dir():
            raise ParameterError(f"{flag} {path} is a directory; give a file path")
        if path.exists() and not path.is_file():
            raise ParameterError(f"{flag} {path} is not a regular file")
        if not path.parent.is_dir():
            raise ParameterError(f"{flag} {path}: directory {path.parent} does not exist")
        sweep_partials(path)
        self.partial = partial_path(path)
        try:
            self.partial.open("xb").close()
        except OSError as e:
            raise ParameterError(f"{flag} {path}: cannot write in {path.parent} ({e.strerror or e})") from None

    def write(self, write_to) -> None:
        """`write_to(partial path)`, then the rename; an OSError becomes one line."""
        try:
            write_to(self.partial)
            os.replace(self.partial, self.path)
        except OSError as e:
            raise WorkbenchError(f"{self.flag} {self.path}: writing failed ({e.strerror or e}); "
                                 "nothing was written there") from None

    def discard(self) -> None:
        from workbench.formats.files import remove

        remove(self.partial)


def _trace_to(args, outputs: dict) -> int:
    import workbench
    from workbench.trace import tracing

    model = _load(args)
    # Untraced warm-up: the first call of each kernel loads it from numba's cache, which
    # is not what a trace should show.
    model.generate(args.prompt, max_tokens=2, chat=args.chat)
    meta = {"model": str(model.path), "threads": model.threads, "prompt": args.prompt, "max_tokens": args.max_tokens,
            "kernels": model.load_report.kernels}
    gbps = None
    if not args.no_roofline and args.level == "op":
        from workbench.machine import cache_path

        if not cache_path().is_file():
            print("measuring memory bandwidth once for this machine (workbench bench --membw)...", file=sys.stderr)
        bw = workbench.machine_bandwidth()
        gbps = bw.gbps("read", model.threads)
        meta |= {"cpu": bw.cpu, "read_gbps": gbps}
    with tracing(args.level, meta) as tracer:
        gen = model.generate(args.prompt, max_tokens=args.max_tokens, chat=args.chat)
    writers = {"out": tracer.to_chrome_json, "save": tracer.save}
    if "html" in outputs:
        from workbench.viz import report_html

        writers["html"] = lambda path: report_html(tracer, path, gbps, plotlyjs=args.plotlyjs)
    written = []
    for flag, output in outputs.items():
        output.write(writers[flag])
        written.append(str(output.path))
    summary = tracer.summary()
    roof = tracer.roofline(gbps) if gbps else None

    if args.json:
        record = {**tracer.meta, "out": args.out, "written": written, "level": args.level, **gen.as_dict(),
                  "timings": summary}
        if roof is not None:
            record["roofline"] = [{"op": op, **row} for op, row in roof.round(6).iterrows()]
        print(json.dumps(record, default=float))
        return 0
    print(f"[{model.path.name}] {len(gen.prompt_tokens)} prompt tokens, {len(gen.tokens)} generated at "
          f"{gen.decode_tok_s:.1f} tok/s traced ({model.threads} thread{'s' if model.threads > 1 else ''}); "
          f"{len(tracer.spans)} spans" + (f" -> {', '.join(written)}" if written else ""))
    _print_load_report(model)
    print(_format_summary(summary))
    if roof is not None:
        print(f"\nper decode step, against {gbps:.1f} GB/s (read, {model.threads} threads; workbench bench --membw):")
        print(f"{'op':<18}{'calls':>6}{'ms':>9}{'MB':>9}{'GB/s':>8}{'roof':>7}{'lost ms':>9}")
        for op, r in roof.iterrows():
            print(f"{op:<18}{r['calls']:>6.0f}{r['ms']:>9.3f}{r['MB']:>9.3f}{r['GB/s']:>8.2f}"
                  f"{r['roofline']:>7.1%}{r['lost_ms']:>9.3f}")
    return 0


def _bench(args) -> int:
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


def _sweep(args) -> int:
    """`workbench sweep SOURCE...`: progress on stderr, a table (or JSON lines) of this run's records."""
    from workbench.bench import parse_counts
    from workbench.errors import ParameterError
    from workbench.sweep import Grid, run

    def words(text):
        return None if text is None else [w.strip() for w in text.split(",") if w.strip()]

    def threshold(word):
        try:
            return _threshold(word)
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


def _flags(parser: argparse.ArgumentParser, command: str) -> dict[str, str]:
    """Python keyword -> CLI flag, for the options of `command`."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    flags = {a.dest: max(a.option_strings, key=len) for a in sub._actions if a.option_strings}
    return flags | {k: v for k, v in _FLAG_OF.items() if v in flags.values()}


def _quiet_stdout() -> None:
    """Point stdout at devnull, so that the interpreter's last flush cannot fail again."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        commands = {"generate": _generate, "chat": _chat, "inspect": _inspect, "trace": _trace, "bench": _bench,
                    "convert": _convert, "cache": _cache, "sweep": _sweep, "twin": _twin, "compare": _compare}
        code = commands[args.command](args)
        sys.stdout.flush()  # a full device shows here, inside the try, not at exit
        return code
    except ParameterError as e:
        flag = _flags(parser, args.command).get(e.param or "")
        print(f"workbench: error: {e.renamed(flag) if flag else e}", file=sys.stderr)
        return 2
    except WorkbenchError as e:
        print(f"workbench: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("workbench: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `workbench inspect FILE | head`: the reader left, not an error
        _quiet_stdout()
        return 0
    except OSError as e:
        if e.errno not in _FULL:
            raise
        print(f"workbench: error: writing the output failed: {e.strerror} (stdout or a file on a full device)",
              file=sys.stderr)
        _quiet_stdout()
        return 2


if __name__ == "__main__":
    sys.exit(main())
