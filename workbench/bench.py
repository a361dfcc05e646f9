"""Prefill and decode tok/s as records with provenance, after llama-bench.

    from workbench.bench import bench
    records = bench(["smollm2-135m"], n_prompt=[32], n_gen=[64], threads=[1, 2], reps=5,
                    peer="llamacpp")

Every combination of source x thread count x test is one test, and one `BenchRecord`:
- `ppN` (prefill): N prompt tokens in one `Model.forward` from an empty cache;
- `tgN` (decode): N single-token forwards after a short prompt (`TG_PROMPT` tokens, not
  timed), each fed the argmax of the one before.
Each test runs once to warm up, then `reps` times; a sample is tokens / seconds of one
repetition, `tok_s` and `stdev` are the mean and the sample standard deviation of the
samples (0 for one). Only the forwards are timed (`perf_counter` around each call):
tokenization happens before, and the argmax between them is left out. The prompt is a
fixed English text through the model's own tokenizer, repeated to length.

With `peer="llamacpp"` the same tests run through llama.cpp's own `llama-bench`
(`workbench.peers.llamacpp`, built by `make peer`) on the same GGUF file, prompt length,
KV depth and thread count, interleaved with ours repetition by repetition (warm-up ours,
warm-up peer, then ours, peer, ours, peer...), so that drift on a busy machine hits both.
llama-bench times its own runs, likewise without tokenization and sampling. The peer runs
GGUF files only; for a shape twin's HF directory it runs the twin's GGUF, which holds the
same weights (`peer_model_path` names the file).

Decode rows also carry the bytes one token reads, the GB/s that makes at the measured
tok/s and its fraction of the machine's read bandwidth (`bench_bytes.py`). Records
(`bench_record.BenchRecord`) carry what makes a number reproducible, as llama-bench's
`struct test` does; the provenance they share with traces comes from `provenance.py`.
`iter_bench` yields each record as its test ends (for progress), `bench` returns the
list, `bench_model` runs the tests on a model loaded by the caller, `records_frame` makes
a DataFrame. Nothing here prints or formats: the `workbench bench` command renders
records as markdown, JSON or CSV.
"""

from __future__ import annotations

import datetime
import statistics
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from workbench.bench_bytes import decode_bytes, kv_bytes, peer_decode_bytes, traffic
from workbench.bench_record import FIELDS, BenchRecord, records_frame
from workbench.errors import ParameterError
from workbench.provenance import build_number, describe, git_commit

# FIELDS, records_frame and kv_bytes are defined beside the record and the byte counts,
# and exported here too: callers find the whole benchmark API in workbench.bench
__all__ = ["FIELDS", "TEXT", "TG_PROMPT", "BenchRecord", "bench", "bench_model", "context_for", "decode_bytes",
           "iter_bench", "kv_bytes", "parse_counts", "peer_decode_bytes", "records_frame", "test_name"]

TG_PROMPT = 8  # tokens fed (untimed) before a decode test, as a chat turn's first few
TEXT = ("The history of computing is a story of people who wanted to calculate faster than they could "
        "by hand, and of the machines they built to do it. ")


def parse_counts(text: str, name: str = "counts", low: int = 0) -> list[int]:
    """"32,64" -> [32, 64], llama-bench style; `ParameterError` naming `name` otherwise."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise ParameterError(f"{name} must be a comma-separated list of integers, got {text!r}") from None
    bad = [v for v in values if v < low]
    if bad:
        raise ParameterError(f"{name} values must be >= {low}, got {bad[0]} in {text!r}")
    return list(dict.fromkeys(values))


def iter_bench(
    sources: Sequence[str | Path],
    *,
    n_prompt: Sequence[int] = (32,),
    n_gen: Sequence[int] = (64,),
    threads: Sequence[int] = (1,),
    reps: int = 5,
    peer: str | None = None,
    profile: str | None = None,
    roof: bool = True,
    n_pg: Sequence[tuple[int, int]] = (),
    n_depth: Sequence[int] | None = None,
) -> Iterator[BenchRecord]:
    """Run every source x thread count x test, yielding one record per test as it ends.
    A count of 0 in `n_prompt` or `n_gen` skips that test. `n_pg`: (pp, tg) pairs timed
    together (llama-bench's `-pg`: a prompt then that many tokens, tok/s over both);
    `n_depth`: tokens put in the KV cache (untimed) before every test (llama-bench's
    `-d`); left None, ppN runs on an empty cache and tgN after `TG_PROMPT` tokens.
    Everything is checked (sources resolved, thread counts, peer installed, peer files
    GGUF) before anything runs. `roof=False` leaves out the machine's bandwidth
    (measured on first use otherwise)."""
    import workbench
    from workbench.formats.catalog import resolve
    from workbench.kernels.jit import max_threads

    if not sources:
        raise ParameterError("bench needs at least one model source")
    tests = _tests(n_prompt, n_gen, n_pg, n_depth)
    if peer is not None and (n_pg or n_depth is not None):
        raise ParameterError(f"--peer {peer} runs ppN and tgN at the default depth; leave out -pg and -d")
    threads = _counts(threads, "threads", 1)
    if max(threads) > max_threads():
        raise ParameterError(f"threads must be between 1 and {max_threads()}, the threads numba was started with "
                             f"(set NUMBA_NUM_THREADS before starting Python for more), got {max(threads)}")
    if isinstance(reps, bool) or not isinstance(reps, (int, np.integer)) or reps < 1:
        raise ParameterError(f"reps must be an integer >= 1, got {reps!r}")
    if peer is not None:
        from workbench.peers import PEERS

        if peer not in PEERS:
            raise ParameterError(f"peer must be one of {', '.join(PEERS)}, got {peer!r}")
    # Derived variants ("smollm2-135m:q4_0") are made by load; everything else must resolve now.
    paths = [None if _is_variant(str(s)) else resolve(s) for s in sources]
    for s, p in zip(sources, paths):
        _peer_file(peer, s, p)
    peer_about = {}
    if peer is not None:
        from workbench.peers import peer_build, peer_version

        peer_about = {"peer": peer_version(peer), "peer_build": peer_build(peer)}

    n_ctx = _context(tests)
    env = _env()
    for source, path in zip(sources, paths):
        model = workbench.load(source if path is None else path, n_ctx=n_ctx, profile=profile)
        peer_path = _peer_file(peer, source, model.path)
        yield from _model_records(model, source, tests, threads, reps, env, roof, peer, peer_path, peer_about)
        del model  # free its weights and cache before the next source loads


def bench_model(model, source=None, *, n_prompt: Sequence[int] = (32,), n_gen: Sequence[int] = (64,),
                threads: Sequence[int] | None = None, reps: int = 5, roof: bool = False) -> Iterator[BenchRecord]:
    """`iter_bench`'s tests on a model the caller loaded (with any load options), without a
    peer: for callers that do more with the same weights, such as a sweep point that also
    scores the model. `source` names it in the records (default: its path). The model's
    context must hold the tests (`context_for(n_prompt, n_gen)` positions); thread counts
    default to the model's own."""
    tests = _tests(n_prompt, n_gen)
    threads = _counts(threads if threads is not None else [model.threads], "threads", 1)
    if isinstance(reps, bool) or not isinstance(reps, (int, np.integer)) or reps < 1:
        raise ParameterError(f"reps must be an integer >= 1, got {reps!r}")
    if model.n_ctx < _context(tests):
        raise ParameterError(f"the model was loaded with n_ctx={model.n_ctx}; these tests need {_context(tests)}")
    env = _env()
    yield from _model_records(model, model.path if source is None else source, tests, threads, reps, env, roof)


def context_for(n_prompt: Sequence[int], n_gen: Sequence[int]) -> int:
    """The KV cache positions the ppN and tgN tests of these counts need."""
    return _context(_tests(n_prompt, n_gen))


def _model_records(model, source, tests, threads, reps, env, roof, peer=None, peer_path=None,
                   peer_about=None) -> Iterator[BenchRecord]:
    """One record per thread count x test of one loaded model (and its peer's file)."""
    import workbench
    from workbench.peers import open_peer

    n_ctx = _context(tests)
    about = {"model": _name(source, model.path), "model_path": str(Path(model.path).resolve()),
             **describe(model.source), "profile": model.options.profile,
             "converted": ", ".join(f"{a.upper()}->{b.upper()}" for a, b in sorted(model.load_report.quantized)),
             "weight_bytes": model.weight_bytes, "kv_type": model.options.kv_type, "n_batch": model.state.n_batch}
    prompt = _prompt(model, max(n_ctx, TG_PROMPT))
    bandwidth = None
    for t in threads:
        model.threads = t
        other = open_peer(peer, peer_path, threads=t, n_ctx=n_ctx) if peer is not None else None
        try:
            for n_p, n_g, depth in tests:
                ours, theirs = _run_test(model, other, prompt, n_p, n_g, depth, reps)
                pp = n_g == 0
                record = dict(about, test=test_name(n_p, n_g), n_prompt=n_p, n_gen=n_g, n_depth=depth, threads=t,
                              kernels=", ".join(f"{f} {k}" for f, k in sorted(model.kernels.items())),
                              **_stats(ours), **env, timestamp=_now())
                if not pp:
                    if roof and bandwidth is None:
                        bandwidth = workbench.machine_bandwidth()
                    mean_depth = depth + n_p + n_g / 2  # positions of KV cache a step reads, on average
                    record |= traffic("", decode_bytes(model, mean_depth), record["tok_s"], bandwidth, t)
                if other is not None:
                    peer_stats = _stats(theirs)
                    record |= {**peer_about, "peer_model_path": str(Path(peer_path).resolve()),
                               "peer_tok_s": peer_stats["tok_s"], "peer_stdev": peer_stats["stdev"],
                               "peer_samples": peer_stats["samples"],
                               "ratio": record["tok_s"] / peer_stats["tok_s"]}
                    if not pp:
                        record |= traffic("peer_", peer_decode_bytes(peer_path, model, mean_depth),
                                           peer_stats["tok_s"], bandwidth, t)
                yield BenchRecord(**record)
        finally:
            if other is not None:
                other.close()


def _tests(n_prompt, n_gen, n_pg=(), n_depth=None) -> list[tuple[int, int, int]]:
    """(n_prompt, n_gen, depth) of each test, in llama-bench's order: depth, then pp, tg, pg."""
    pp = [n for n in _counts(n_prompt, "n_prompt") if n > 0]
    tg = [n for n in _counts(n_gen, "n_gen") if n > 0]
    pg = []
    for pair in n_pg:
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise ParameterError(f"n_pg must hold (n_prompt, n_gen) pairs, got {pair!r}")
        a, b = (_counts([v], "n_pg", 0)[0] for v in pair)
        if a or b:
            pg.append((a, b))
    if n_depth is None:
        tests = [(n, 0, 0) for n in pp] + [(0, n, TG_PROMPT) for n in tg] + [(a, b, 0) for a, b in pg]
    else:
        tests = [test for d in _counts(n_depth, "n_depth") for test in
                 [(n, 0, d) for n in pp] + [(0, n, d) for n in tg] + [(a, b, d) for a, b in pg]]
    if not tests:
        raise ParameterError("n_prompt and n_gen are both 0: nothing to run")
    return tests


def test_name(n_prompt: int, n_gen: int) -> str:
    """"pp512", "tg128" or "pp512+tg128", as llama-bench names its tests (without the depth)."""
    if n_prompt and n_gen:
        return f"pp{n_prompt}+tg{n_gen}"
    return f"pp{n_prompt}" if n_prompt else f"tg{n_gen}"


def _context(tests) -> int:
    return max(depth + n_p + n_g for n_p, n_g, depth in tests)


def bench(sources: Sequence[str | Path], **kwargs) -> list[BenchRecord]:
    """All records of `iter_bench(sources, **kwargs)`."""
    return list(iter_bench(sources, **kwargs))


# -- the measurements ---------------------------------------------------------------

def _run_test(model, peer, prompt: list[int], n_p: int, n_g: int, depth: int,
              reps: int) -> tuple[list[float], list[float]]:
    """tok/s samples of ours and the peer's, one warm-up each first, interleaved."""
    ours, theirs = [], []
    n = n_p + n_g
    if n_g == 0 and depth == 0:
        ids = prompt[:n]
        run_ours, run_peer = (lambda: _prefill(model, ids)), (lambda: peer.prefill(ids))
    elif n_p == 0 and depth == TG_PROMPT:
        ids = prompt[:TG_PROMPT]
        run_ours, run_peer = (lambda: _decode(model, ids, n)), (lambda: peer.decode(ids, n))
    else:  # at another depth, or pp+tg: ours only (iter_bench refuses them with a peer)
        run_ours, run_peer = (lambda: _at_depth(model, prompt, n_p, n_g, depth)), None
    for rep in range(reps + 1):
        seconds = run_ours()
        if rep:
            ours.append(n / seconds)
        if peer is not None:
            seconds = run_peer()
            if rep:
                theirs.append(n / seconds)
    return ours, theirs


def _prefill(model, ids: list[int]) -> float:
    """Seconds of one forward of `ids` from an empty cache."""
    model.reset()
    t0 = time.perf_counter()
    model.forward(ids)
    return time.perf_counter() - t0


def _decode(model, prompt: list[int], n: int) -> float:
    """Seconds of `n` one-token forwards after `prompt`, each fed the last argmax."""
    model.reset()
    tok = int(np.argmax(model.forward(prompt)))
    seconds = 0.0
    for _ in range(n):
        t0 = time.perf_counter()
        logits = model.forward([tok])
        seconds += time.perf_counter() - t0
        tok = int(np.argmax(logits))
    return seconds


def _at_depth(model, prompt: list[int], n_p: int, n_g: int, depth: int) -> float:
    """Seconds of a prompt of `n_p` tokens then `n_g` one-token steps (each fed the last
    argmax), after `depth` tokens put in the cache untimed. Without a prompt or depth the
    steps start from the first prompt token (the BOS), as llama-bench's tg does."""
    model.reset()
    if depth:
        model.forward(prompt[:depth])
    seconds = 0.0
    tok = prompt[depth]
    if n_p:
        t0 = time.perf_counter()
        logits = model.forward(prompt[depth: depth + n_p])
        seconds += time.perf_counter() - t0
        tok = int(np.argmax(logits))
    for _ in range(n_g):
        t0 = time.perf_counter()
        logits = model.forward([tok])
        seconds += time.perf_counter() - t0
        tok = int(np.argmax(logits))
    return seconds


def _stats(samples: list[float]) -> dict:
    return {"tok_s": statistics.mean(samples), "stdev": statistics.stdev(samples) if len(samples) > 1 else 0.0,
            "samples": list(samples)}


# -- inputs and environment ---------------------------------------------------------

def _prompt(model, n: int) -> list[int]:
    """n token ids: BOS (where the model adds one) then TEXT's tokens, repeated."""
    ids = model.tokenizer.encode(TEXT, add_special=True)
    body = model.tokenizer.encode(TEXT, add_special=False) or ids
    while len(ids) < n:
        ids += body
    return ids[:n]


def _is_variant(text: str) -> bool:
    name, sep, _ = text.partition(":")
    return bool(sep) and not Path(text).exists() and "/" not in name and "\\" not in name


def _peer_file(peer: str | None, source, path: Path | None) -> Path | None:
    """The GGUF file the peer runs for `path`: itself, or a twin directory's GGUF."""
    if peer is None or path is None or not path.is_dir():
        return path
    from workbench.convert.twins import gguf_twin

    twin = gguf_twin(path)
    if twin is None:
        raise ParameterError(f"--peer {peer} runs GGUF files only; {source} is an HF directory ({path})")
    return twin


def _name(source, path: Path) -> str:
    text = str(source)
    return path.name if Path(text).expanduser().exists() else text


def _counts(values, name: str, low: int = 0) -> list[int]:
    values = [values] if isinstance(values, (int, np.integer)) else list(values)
    if not values or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low for v in values):
        raise ParameterError(f"{name} must be a non-empty list of integers >= {low}, got {values!r}")
    return list(dict.fromkeys(int(v) for v in values))


def _env() -> dict:
    import workbench
    from workbench.machine import cpu_name
    from workbench.peers.llamacpp import cpu_flags

    return {"commit": git_commit(), "cpu": cpu_name(), "cpu_flags": " ".join(cpu_flags()),
            "workbench": workbench.__version__, "build_number": build_number()}


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
