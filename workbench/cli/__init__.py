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
--requantize, --no-fuse, --no-repack, --kv-type {f16,f32}. SOURCE: a catalog name or derived variant
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
import os
import sys

from workbench.cli import bench, files, generate, trace
from workbench.errors import ParameterError, WorkbenchError

# Python keyword -> the flag that sets it, where the two are not spelled alike
_FLAG_OF = {"n_ctx": "--ctx", "text": "--prompt"}
# errors of writing to a device or disk that cannot take more: one line, exit 2
_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO)


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


# command -> (add its parser, run it), in the order `workbench --help` lists them
_COMMANDS = {
    "generate": (generate.add_generate, generate.run_generate),
    "chat": (generate.add_chat, generate.run_chat),
    "convert": (files.add_convert, files.run_convert),
    "inspect": (files.add_inspect, files.run_inspect),
    "trace": (trace.add_trace, trace.run_trace),
    "bench": (bench.add_bench, bench.run_bench),
    "compare": (trace.add_compare, trace.run_compare),
    "cache": (files.add_cache, files.run_cache),
    "sweep": (bench.add_sweep, bench.run_sweep),
    "twin": (files.add_twin, files.run_twin),
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="workbench", description="CPU LLM inference you can trace and see.")
    p.add_argument("--version", action=_VersionAction, nargs=0, help="print the version and commit, and exit")
    sub = p.add_subparsers(dest="command", required=True)
    for add_parser, _ in _COMMANDS.values():
        add_parser(sub)
    return p


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
        _, run = _COMMANDS[args.command]
        code = run(args)
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
