"""`workbench trace` and `workbench compare`: where a generation's time goes, and how two
runs differ.

`trace` generates under a tracer and writes what was asked (Chrome trace JSON, workbench's
own trace file, an HTML report), each through `_Output`: checked before the run, so a bad
path fails at once rather than after minutes, and written to a partial file renamed into
place, so a full disk leaves nothing truncated under the name. Then it prints the
per-step summary and the per-op roofline. `compare` prints the differences of two trace
or bench files beyond run-to-run noise.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from workbench.cli.options import (
    add_load_args,
    check_early,
    load_model,
    positive_int,
    print_load_report,
)
from workbench.errors import ParameterError, WorkbenchError


def add_trace(sub) -> None:
    """`workbench trace SOURCE --prompt TEXT ...`"""
    t = sub.add_parser("trace", help="trace a generation: Chrome trace JSON, per-step summary, roofline")
    t.add_argument("source", nargs="?", default=None, help="model (default smollm2-135m); see above")
    t.add_argument("--prompt", "-p", required=True)
    t.add_argument("--max-tokens", "-n", type=positive_int, default=16)
    add_load_args(t)
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


def add_compare(sub) -> None:
    """`workbench compare A B`"""
    cmp = sub.add_parser("compare", help="per-op / per-layer (traces) or per-test (bench files) differences of two "
                                         "runs, flagging those beyond run-to-run noise")
    cmp.add_argument("a", help="trace file (workbench or Chrome JSON) or bench results (-o json|jsonl)")
    cmp.add_argument("b", help="the same kind of file, the run to compare with A")
    cmp.add_argument("--steps", choices=["decode", "prefill", "all"], default="decode", help="traces: which steps")
    cmp.add_argument("--sigmas", type=float, default=3.0, help="noise threshold in standard errors (default 3)")
    cmp.add_argument("--html", default=None, help="also write the chart (plotly.js inlined)")
    cmp.add_argument("--json", action="store_true")


def run_trace(args) -> int:
    check_early(args, sampling=False)
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

    model = load_model(args)
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
    print_load_report(model)
    print(format_summary(summary))
    if roof is not None:
        print(f"\nper decode step, against {gbps:.1f} GB/s (read, {model.threads} threads; workbench bench --membw):")
        print(f"{'op':<18}{'calls':>6}{'ms':>9}{'MB':>9}{'GB/s':>8}{'roof':>7}{'lost ms':>9}")
        for op, r in roof.iterrows():
            print(f"{op:<18}{r['calls']:>6.0f}{r['ms']:>9.3f}{r['MB']:>9.3f}{r['GB/s']:>8.2f}"
                  f"{r['roofline']:>7.1%}{r['lost_ms']:>9.3f}")
    return 0


def run_compare(args) -> int:
    import workbench

    result = workbench.compare(args.a, args.b, steps=args.steps, sigmas=args.sigmas)
    if args.html:
        result.figure().write_html(args.html, include_plotlyjs=True)
    if args.json:
        print(json.dumps(result.as_dict(), default=str))
    else:
        print(result.markdown(), end="")
    return 0


def format_summary(summary: dict) -> str:
    """`[perf]` lines of a step summary (`Tracer.summary()`): the first step and the first
    decode step, the mean decode step, then each layer (also `generate --timings`)."""
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
