"""The `workbench` command (also `python -m workbench`).

    workbench generate SOURCE --prompt TEXT [--max-tokens N] [sampling] [--threads N]
                       [--chat] [--stream] [--timings] [--json]
    workbench inspect FILE [--json]

Bad input (a missing file, a bad value) prints one line on stderr and exits with 2;
this is the only place in workbench that prints.
"""

from __future__ import annotations

import argparse
import json
import sys

from workbench.errors import WorkbenchError


def _positive_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="workbench", description="CPU LLM inference you can trace and see.")
    sub = p.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", help="generate text from a prompt")
    g.add_argument("source", nargs="?", default=None, help="catalog name (default smollm2-135m) or GGUF path")
    g.add_argument("--prompt", "-p", required=True)
    g.add_argument("--max-tokens", "-n", type=_positive_int, default=64)
    g.add_argument("--temperature", type=float, default=0.0)
    g.add_argument("--top-k", type=_positive_int, default=None)
    g.add_argument("--top-p", type=float, default=None)
    g.add_argument("--repetition-penalty", type=float, default=1.0)
    g.add_argument("--seed", type=_positive_int, default=None)
    g.add_argument("--threads", "-t", type=_positive_int, default=None)
    g.add_argument("--ctx", type=_positive_int, default=None, help="context size (KV cache positions)")
    g.add_argument("--chat", action="store_true", help="wrap the prompt in the model's chat template")
    g.add_argument("--stream", action="store_true", help="print tokens as they are generated")
    g.add_argument("--timings", action="store_true", help="trace per layer and print the timing summary")
    g.add_argument("--json", action="store_true", help="print one JSON object")

    i = sub.add_parser("inspect", help="print a GGUF or safetensors file's metadata and tensor table")
    i.add_argument("file")
    i.add_argument("--json", action="store_true")
    return p


def _generate(args) -> int:
    import workbench
    from workbench.trace import step_summary

    model = workbench.load(args.source, threads=args.threads, n_ctx=args.ctx)
    on_token = None
    if args.stream and not args.json:
        def on_token(piece, _id):
            sys.stdout.write(piece)
            sys.stdout.flush()

    kwargs = dict(max_tokens=args.max_tokens, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                  repetition_penalty=args.repetition_penalty, seed=args.seed, on_token=on_token, chat=args.chat)
    if args.timings:
        with workbench.trace("layer") as tracer:
            gen = model.generate(args.prompt, **kwargs)
        summary = step_summary(tracer)
    else:
        gen = model.generate(args.prompt, **kwargs)
        summary = None

    if args.json:
        record = {"model": str(model.path), "threads": model.threads, **gen.as_dict()}
        if summary is not None:
            record["timings"] = summary
        print(json.dumps(record))
        return 0
    if args.stream:
        print()
    else:
        print(args.prompt + gen.text)
    print(f"\n[{model.path.name}] prompt {len(gen.prompt_tokens)} tokens at {gen.prefill_tok_s:.1f} tok/s, "
          f"generated {len(gen.tokens)} tokens at {gen.decode_tok_s:.1f} tok/s "
          f"({model.threads} thread{'s' if model.threads > 1 else ''}, stop: {gen.finish_reason})", file=sys.stderr)
    if summary is not None:
        print(_format_summary(summary), file=sys.stderr)
    return 0


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


def _inspect(args) -> int:
    from pathlib import Path

    from workbench.errors import FormatError

    path = Path(args.file)
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
    if args.json:
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


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return {"generate": _generate, "inspect": _inspect}[args.command](args)
    except WorkbenchError as e:
        print(f"workbench: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("workbench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
