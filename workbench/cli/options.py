"""The flags several commands share, checked before any model loads, and the load itself.

`generate`, `chat` and `trace` load a model from the same load options (`add_load_args`:
the keywords of `workbench.load` as flags, left out where the profile's value should
hold), and `generate` / `chat` take the same sampling and chat flags. Their values are
checked with the engine's own checks (`check_early`, `sampling_args`) before the seconds
of a load are spent; `cli.main` names a bad one by its flag.
"""

from __future__ import annotations

import argparse
import sys


def positive_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def int_or_off(text: str) -> int | None:
    if text.lower() in ("off", "none"):
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or 'off', got {text!r}") from None


def add_load_args(p: argparse.ArgumentParser) -> None:
    """The options of `workbench.load`; left out, the profile's value holds."""
    from workbench.engine.options import PROFILES
    from workbench.nn.kv_cache import KV_TYPES
    from workbench.nn.options import QUANT_TYPES

    p.add_argument("--threads", "-t", type=positive_int, default=argparse.SUPPRESS)
    p.add_argument("--ctx", type=positive_int, default=None, help="context size (KV cache positions)")
    p.add_argument("--profile", choices=list(PROFILES), default=None, help="named option set (default optimized)")
    p.add_argument("--quant-threshold", type=int_or_off, default=argparse.SUPPRESS, metavar="N|off",
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
    p.add_argument("--no-repack", dest="repack", action="store_false", default=argparse.SUPPRESS,
                   help="keep every weight in the file's layout (no rows16 repacking at load)")
    p.add_argument("--kv-type", choices=list(KV_TYPES), default=argparse.SUPPRESS,
                   help="KV cache precision: f16 (default, llama.cpp's) or f32 (float32 attention, as transformers)")
    p.add_argument("--kernels", type=kernel_choices, default=argparse.SUPPRESS, metavar="FMT=NAME[,...]",
                   help="matvec variant per weight format for this run, e.g. q4_0=one_row "
                        "(see `workbench inspect --kernels`); others run this CPU's choice")


def kernel_choices(text: str) -> dict[str, str]:
    """"q4_0=one_row,q8_0=row_groups" -> {"q4_0": "one_row", "q8_0": "row_groups"}, checked."""
    from workbench.kernels.dispatch import check_choices

    pairs = [part.split("=", 1) for part in text.split(",") if part.strip()]
    if not pairs or any(len(p) != 2 for p in pairs):
        raise argparse.ArgumentTypeError(f"expected FMT=NAME[,FMT=NAME...], got {text!r}")
    try:
        return check_choices({f.strip(): n.strip() for f, n in pairs})
    except ParameterError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_sampling_args(p: argparse.ArgumentParser, max_tokens: int) -> None:
    p.add_argument("--max-tokens", "-n", dest="max_tokens", type=positive_int,
                   default=max_tokens)
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--top-k", type=positive_int, default=None)
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--repetition-penalty", type=float, default=1.0)
    p.add_argument("--seed", type=positive_int, default=None)
    p.add_argument("--stop", action="append", default=None, metavar="TEXT", help="stop at this text (repeatable)")


def add_chat_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--system", default=None, help="a system prompt (chat)")
    p.add_argument("--template", default=None,
                   help="chat template: a built-in name (chatml, gemma, llama3) instead of the model's own")


def load_model(args):
    """workbench.load with the options given on the command line."""
    import workbench

    given = {k: getattr(args, k) for k in ("threads", "quant_threshold", "quant_type", "quantize_lm_head",
                                           "requantize", "fuse", "repack", "kv_type", "kernels")
             if hasattr(args, k)}
    model = workbench.load(args.source, n_ctx=args.ctx, profile=args.profile, **given)
    if model.load_report.compiled:  # the first run on this CPU: say where the seconds went
        print(f"workbench: compiled for this CPU in {model.load_report.warm_up_seconds:.1f} s "
              f"(first run; cached in {model.load_report.compiled})", file=sys.stderr)
    return model


def print_load_report(model) -> None:
    for line in model.load_report.lines():
        print(f"[load] {line}", file=sys.stderr)


def sampling_args(args) -> dict:
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


def check_early(args, sampling: bool) -> None:
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
