"""Soak and fault test: many generations in one process, bad parameters, kills mid-write.

    python scripts/soak.py              # the full soak (issue 20): ~1,000 generations and more
    python scripts/soak.py --short      # a few seconds' worth (tests/test_soak.py runs this)
    python scripts/soak.py --phases generations,invalid --generations 200 --seed 3

Phases, each a function in `PHASES` that returns one `Row` of the table:
- `generations`: `--generations` generations in this process, from random valid
  argument sets (prompt, max_tokens, temperature, top-k, top-p, repetition penalty,
  seed, chat, stop) across the shipped models (`smollm2-135m`, `gemma3-270m`), thread
  counts 1..2 and KV types f16/f32: half of them are the sets' first runs, the other
  half replays of each set at a random later point among the others and with the other
  thread count, which must give the same tokens (reproducible from its seed alone).
  RSS and open file descriptors are sampled after the first and the last generation:
  they must stay flat (RSS within `RSS_SLACK_MIB`, descriptors equal).
- `invalid`: random combinations of one to three bad arguments to `generate` or `load`;
  each must raise a `ParameterError` naming one of them (its `param` and the start of
  its message), before anything is loaded.
- `kills`: a conversion (`workbench.convert`) or a derived-variant build
  (`workbench.convert.derived`) in a child process, killed with SIGKILL at a random
  moment of its expected duration; then the same write again in this process must
  succeed, leave no partial file, and give the bytes of an undisturbed one, and a
  greedy generation from it the undisturbed tokens.

A new phase is a function `(Soak) -> Row` added to `PHASES` (and to the default list
in `main` if it should run by default). Prints the table and exits 1 on any failure.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import workbench  # noqa: E402
from workbench.errors import ParameterError  # noqa: E402
from workbench.kernels.jit import max_threads  # noqa: E402

MODELS = ("smollm2-135m", "gemma3-270m")
KV_TYPES = ("f16", "f32")
RSS_SLACK_MIB = 64  # allocator warm-up and numba's caches; a leak per generation would be far more
PROMPTS = ["Once upon a time", "The capital of France is", "def add(a, b):", "Water boils at",
           "List three colours:", "Hola, ¿cómo estás?", "1, 2, 3,", "The best way to learn is"]


@dataclass
class Row:
    phase: str
    runs: int = 0
    failures: list[str] = field(default_factory=list)
    rss_mib: tuple[float, float] = (0.0, 0.0)
    fds: tuple[int, int] = (0, 0)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


@dataclass
class Soak:
    """What every phase gets: the counts asked for, one random generator, a scratch directory."""

    rng: random.Random
    tmp: Path
    generations: int
    invalid: int
    kills: int
    models: tuple[str, ...]
    _loaded: dict = field(default_factory=dict)

    def model(self, name: str, kv_type: str):
        """One model per (name, KV type), loaded once for the whole soak."""
        key = (name, kv_type)
        if key not in self._loaded:
            self._loaded[key] = workbench.load(name, kv_type=kv_type, n_ctx=256)
        return self._loaded[key]


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


# -- generations ---------------------------------------------------------------------

def valid_args(rng: random.Random) -> dict:
    """A random valid argument set for `Model.generate`."""
    args = {"prompt": rng.choice(PROMPTS), "max_tokens": rng.randint(1, 8), "seed": rng.randrange(2**32),
            "chat": rng.random() < 0.2}
    if rng.random() < 0.7:
        args["temperature"] = round(rng.uniform(0.05, 1.5), 3)
        if rng.random() < 0.5:
            args["top_k"] = rng.randint(1, 200)
        if rng.random() < 0.5:
            args["top_p"] = round(rng.uniform(0.05, 1.0), 3)
    if rng.random() < 0.3:
        args["repetition_penalty"] = round(rng.uniform(0.8, 1.5), 3)
    if rng.random() < 0.1:
        args["stop"] = [rng.choice([".", "\n", " the", ","])]
    return args


def phase_generations(soak: Soak) -> Row:
    row = Row("generations")
    top = min(2, max_threads())
    runs = [(soak.rng.choice(soak.models), soak.rng.choice(KV_TYPES), soak.rng.randint(1, top),
             valid_args(soak.rng)) for _ in range(soak.generations // 2)]
    # each run once, then again at a random later point with the other thread count
    order = [(i, False) for i in range(len(runs))]
    for i in range(len(runs)):
        order.insert(soak.rng.randint(order.index((i, False)) + 1, len(order)), (i, True))
    for name in soak.models:  # loads are not part of the flatness measure
        for kv in KV_TYPES:
            soak.model(name, kv)
    first_tokens: dict[int, list[int]] = {}
    start = time.perf_counter()
    for n, (i, replay) in enumerate(order):
        name, kv, threads, args = runs[i]
        model = soak.model(name, kv)
        model.threads = (top + 1 - threads) if replay else threads
        try:
            tokens = model.generate(**args).tokens
        except Exception as e:  # noqa: BLE001 - a soak reports every failure and goes on
            row.failures.append(f"{name} {kv} {args}: {type(e).__name__}: {e}")
            continue
        finally:
            row.runs += 1
        if replay:
            if i in first_tokens and tokens != first_tokens[i]:
                row.failures.append(f"{name} {kv} {args}: replay gave {tokens}, first run {first_tokens[i]}")
        else:
            first_tokens[i] = tokens
        if (n + 1) % 100 == 0:
            print(f"generations: {n + 1}/{len(order)}, {len(row.failures)} failures, RSS {rss_mib():.0f} MiB",
                  file=sys.stderr, flush=True)
        if n == 0:
            gc.collect()
            row.rss_mib, row.fds = (rss_mib(), 0.0), (open_fds(), 0)
    gc.collect()
    row.rss_mib, row.fds = (row.rss_mib[0], rss_mib()), (row.fds[0], open_fds())
    row.seconds = time.perf_counter() - start
    if row.rss_mib[1] - row.rss_mib[0] > RSS_SLACK_MIB:
        row.failures.append(f"RSS grew from {row.rss_mib[0]:.0f} to {row.rss_mib[1]:.0f} MiB")
    if row.fds[1] != row.fds[0]:
        row.failures.append(f"open file descriptors went from {row.fds[0]} to {row.fds[1]}")
    return row


# -- invalid parameters --------------------------------------------------------------

# keyword -> values it must refuse
BAD_GENERATE = {
    "prompt": ["", None, 5, "caf\udce9"],
    "max_tokens": [0, -1, 2.5, "8", None, True],
    "temperature": [-1, -0.001, float("nan"), float("inf"), "hot", None],
    "top_k": [0, -5, 2.5, "10", True],
    "top_p": [0, -0.1, 1.5, float("nan"), "0.9"],
    "repetition_penalty": [0, -1, float("nan"), float("inf"), "x"],
    "seed": [-1, 1.5, "7", True],
    "stop": [[""], [3], 5, [None]],
}
BAD_LOAD = {
    "threads": [0, -1, 10**6, 1.5, "2"],
    "n_ctx": [0, -3, "64", 2.5],
    "quant_threshold": [-5, "768", 1.5],
    "quant_type": ["q3_k", "", None],
    "kv_type": ["f8", "", 16],
    "profile": ["turbo", ""],
    "fuse": ["yes", 1],
}


def phase_invalid(soak: Soak) -> Row:
    row = Row("invalid")
    model = soak.model(soak.models[0], "f16")
    gc.collect()
    row.rss_mib, row.fds = (rss_mib(), 0.0), (open_fds(), 0)
    start = time.perf_counter()
    for _ in range(soak.invalid):
        on_load = soak.rng.random() < 0.3
        table = BAD_LOAD if on_load else BAD_GENERATE
        bad = soak.rng.sample(sorted(table), soak.rng.randint(1, 3))
        args = {} if on_load else {k: v for k, v in valid_args(soak.rng).items() if k != "chat"}
        args |= {k: soak.rng.choice(table[k]) for k in bad}
        row.runs += 1
        try:
            if on_load:
                workbench.load(soak.models[0], **args)
            else:
                model.generate(**args)
        except ParameterError as e:
            if e.param not in bad or not str(e).startswith(e.param):
                row.failures.append(f"{args!r}: ParameterError names {e.param!r} ({e}), not one of {bad}")
        except Exception as e:  # noqa: BLE001
            row.failures.append(f"{args!r}: {type(e).__name__}: {e}")
        else:
            row.failures.append(f"{args!r}: accepted")
    gc.collect()
    row.rss_mib, row.fds = (row.rss_mib[0], rss_mib()), (row.fds[0], open_fds())
    row.seconds = time.perf_counter() - start
    return row


# -- kills ---------------------------------------------------------------------------

# (what, how to do it in a child process, variant or target)
WRITES = [
    ("derived", "q8_0"), ("derived", "q4_0"), ("derived", "hf-f32"),
    ("convert", "gguf-q8_0"), ("convert", "gguf-f16"), ("convert", "hf-f32"),
]
_CHILD = {
    "derived": "from workbench.convert import derived; derived({name!r}, {arg!r}, progress=False)",
    "convert": "from workbench.convert import convert; convert({name!r}, {dst!r}, {arg!r}, progress=False, "
               "overwrite=True)",
}


def _do_write(kind: str, name: str, arg: str, dst: Path) -> Path:
    from workbench.convert import convert, derived

    if kind == "derived":
        return derived(name, arg, progress=False)
    return convert(name, dst, arg, progress=False, overwrite=True)


def _fingerprint(path: Path) -> dict[str, str]:
    from workbench.formats.files import sha256

    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return {p.relative_to(path).as_posix() if path.is_dir() else p.name: sha256(p) for p in files}


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if ".partial-" in p.name or ".old-" in p.name)


def phase_kills(soak: Soak) -> Row:
    """Per kind of write: one undisturbed reference, then `kills` killed-and-redone writes
    spread over the kinds, each compared with it."""
    row = Row("kills")
    name = soak.models[0]
    cache = soak.tmp / "cache"
    saved = os.environ.get("WORKBENCH_CACHE")
    os.environ["WORKBENCH_CACHE"] = str(cache)  # children inherit it
    try:
        return _kills(soak, row, name)
    finally:
        if saved is None:
            del os.environ["WORKBENCH_CACHE"]
        else:
            os.environ["WORKBENCH_CACHE"] = saved


def _kills(soak: Soak, row: Row, name: str) -> Row:
    cache = Path(os.environ["WORKBENCH_CACHE"])
    mid_write = 0  # kills that left a partial output behind (the others hit the child's start-up)
    reference: dict[tuple[str, str], tuple[dict, list[int], float]] = {}
    row.rss_mib, row.fds = (rss_mib(), 0.0), (open_fds(), 0)
    start = time.perf_counter()
    for k in range(soak.kills):
        kind, arg = WRITES[k % len(WRITES)]
        dst = soak.tmp / f"out-{arg}" if arg.startswith("hf-") else soak.tmp / f"out-{arg}.gguf"
        if (kind, arg) not in reference:
            t0 = time.perf_counter()
            out = _do_write(kind, name, arg, dst)
            took = time.perf_counter() - t0
            reference[kind, arg] = (_fingerprint(out), _greedy(out), took)
        fingerprint, tokens, took = reference[kind, arg]
        if kind == "derived":  # else the next derived() would find the reference and not write at all
            from workbench.convert import derived_path
            from workbench.formats.files import remove

            out = derived_path(name, arg)
            remove(out)
            remove(out.with_name(out.name + ".json"))
        code = _CHILD[kind].format(name=name, arg=arg, dst=str(dst))
        child = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=dict(os.environ),
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # the child pays ~1-2 s of imports before it writes: kill anywhere in its whole run
        time.sleep(soak.rng.uniform(0.0, took + 2.0))
        child.send_signal(signal.SIGKILL)
        child.wait()
        row.runs += 1
        mid_write += bool(_leftovers(dst.parent if kind == "convert" else cache / "derived"))
        try:
            out = _do_write(kind, name, arg, dst)
            where = out.parent
            problems = []
            if _leftovers(where):
                problems.append(f"left {_leftovers(where)}")
            if _fingerprint(out) != fingerprint:
                problems.append("bytes differ from the undisturbed write")
            if _greedy(out) != tokens:
                problems.append("generates other tokens than the undisturbed write")
            if problems:
                row.failures.append(f"{kind} {arg}: " + "; ".join(problems))
        except Exception as e:  # noqa: BLE001
            row.failures.append(f"{kind} {arg}: {type(e).__name__}: {e}")
    row.rss_mib, row.fds = (row.rss_mib[0], rss_mib()), (row.fds[0], open_fds())
    row.seconds = time.perf_counter() - start
    row.notes.append(f"{mid_write} of {row.runs} kills landed mid-write (a partial output was left)")
    return row


def _greedy(path: Path) -> list[int]:
    model = workbench.load(path, threads=1, n_ctx=64)
    tokens = model.generate(PROMPTS[0], max_tokens=6).tokens
    del model
    gc.collect()
    return tokens


PHASES = {"generations": phase_generations, "invalid": phase_invalid, "kills": phase_kills}


def _run_phase(name: str, soak: Soak) -> Row:
    """The phase's row; a phase that crashes is a row with that failure, and the soak goes on."""
    t0 = time.perf_counter()
    try:
        return PHASES[name](soak)
    except Exception as e:  # noqa: BLE001
        return Row(name, failures=[f"the phase crashed: {type(e).__name__}: {e}"], seconds=time.perf_counter() - t0)


def table(rows: list[Row]) -> str:
    head = "| phase | runs | failures | RSS first MiB | RSS last MiB | fds first | fds last | wall s |"
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r.phase} | {r.runs} | {len(r.failures)} | {r.rss_mib[0]:.0f} | {r.rss_mib[1]:.0f} | "
                     f"{r.fds[0]} | {r.fds[1]} | {r.seconds:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--short", action="store_true", help="a few seconds: 8 generations of SmolLM2, 60 bad sets")
    p.add_argument("--phases", default=",".join(PHASES), help=f"comma-separated, of {', '.join(PHASES)}")
    p.add_argument("--generations", type=int, default=1000, help="in all, replays included")
    p.add_argument("--invalid", type=int, default=500)
    p.add_argument("--kills", type=int, default=12)
    p.add_argument("--seed", type=int, default=20)
    args = p.parse_args(argv)
    if args.short:
        args.generations, args.invalid, args.kills = 8, 60, 0
    phases = [s.strip() for s in args.phases.split(",") if s.strip()]
    unknown = [s for s in phases if s not in PHASES]
    if unknown:
        p.error(f"unknown phases {unknown}; known: {', '.join(PHASES)}")
    with tempfile.TemporaryDirectory(prefix="workbench-soak-") as tmp:
        soak = Soak(random.Random(args.seed), Path(tmp), args.generations, args.invalid, args.kills,
                    MODELS[:1] if args.short else MODELS)
        t0 = time.perf_counter()
        rows = []
        for name in phases:
            if name == "kills" and args.kills == 0:
                continue
            rows.append(_run_phase(name, soak))
            print(table(rows[-1:]).splitlines()[-1], file=sys.stderr, flush=True)  # each row as it is done
        total = time.perf_counter() - t0
    print(table(rows))
    print(f"\nseed {args.seed}, {max_threads()} numba threads, {total:.0f} s in all")
    for r in rows:
        for note in r.notes:
            print(f"{r.phase}: {note}")
    failures = [f for r in rows for f in r.failures]
    for f in failures[:50]:
        print(f"FAIL {f}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
