"""`workbench generate` and `workbench chat`: text from a model, printed or streamed.

`generate` runs one prompt (wrapped in the chat template with --chat or --system) and
prints the text, or one JSON object; `chat` reads one user turn per stdin line and
streams each reply. Timings and the load report go to stderr, so stdout holds only what
the model wrote.
"""

from __future__ import annotations

import json
import sys

from workbench.cli.options import (
    add_chat_args,
    add_load_args,
    add_sampling_args,
    check_early,
    load_model,
    print_load_report,
    sampling_args,
)
from workbench.cli.trace import format_summary


def add_generate(sub) -> None:
    """`workbench generate SOURCE --prompt TEXT ...`"""
    g = sub.add_parser("generate", help="generate text from a prompt")
    g.add_argument("source", nargs="?", default=None, help="model (default smollm2-135m); see above")
    g.add_argument("--prompt", "-p", required=True)
    add_sampling_args(g, max_tokens=64)
    add_load_args(g)
    g.add_argument("--chat", action="store_true", help="wrap the prompt in the model's chat template")
    add_chat_args(g)
    g.add_argument("--stream", action="store_true", help="print tokens as they are generated")
    g.add_argument("--timings", action="store_true", help="trace per layer and print the timing summary")
    g.add_argument("--json", action="store_true", help="print one JSON object")


def add_chat(sub) -> None:
    """`workbench chat SOURCE ...`: turns read from stdin"""
    ch = sub.add_parser("chat", help="talk with a model, turn by turn (stdin lines; an empty line or EOF ends)",
                        description="Each line read is a user turn; the whole conversation goes through the "
                                    "model's chat template and the reply streams to stdout.")
    ch.add_argument("source", nargs="?", default=None, help="model (default smollm2-135m); see above")
    add_sampling_args(ch, max_tokens=256)
    add_chat_args(ch)
    add_load_args(ch)
    ch.add_argument("--json", action="store_true", help="one JSON object per turn instead of the text")


def run_generate(args) -> int:
    import workbench
    from workbench.trace import step_summary

    check_early(args, sampling=True)
    sampling = sampling_args(args)
    model = load_model(args)
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
    print_load_report(model)
    print(f"\n[{model.path.name}] prompt {len(gen.prompt_tokens)} tokens at {gen.prefill_tok_s:.1f} tok/s, "
          f"generated {len(gen.tokens)} tokens at {gen.decode_tok_s:.1f} tok/s "
          f"({model.threads} thread{'s' if model.threads > 1 else ''}, stop: {gen.finish_reason})", file=sys.stderr)
    if summary is not None:
        print(format_summary(summary), file=sys.stderr)
    return 0


def run_chat(args) -> int:
    """`workbench chat`: one user turn per stdin line, the reply streamed; the history
    (with --system first) goes through the chat template again at every turn."""
    sampling = sampling_args(args)
    model = load_model(args)
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
