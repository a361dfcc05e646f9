"""`workbench.compare(a, b)` and `workbench compare A B`: what changed between two runs.

Two traces (`Tracer`s, or files from `Tracer.save` / `to_chrome_json`) compare per op
and per layer (`trace.compare.diff`: decode steps as samples); two bench results (lists
of `BenchRecord`, or `workbench bench -o json|jsonl` files, llama-bench's own included)
compare per test, matched by model, test, depth, threads and engine, with each test's
repetitions as samples (`samples_ts`). A difference counts as beyond run-to-run noise
when it exceeds `sigmas` standard errors of the difference (3 by default); with one
sample a side there is no noise estimate and `beyond_noise` is None.

The result is a `Comparison` record: its tables (pandas), the provenance keys that
differ between the two, `markdown()` for a terminal and `figure()` for a notebook
(`viz.comparison`).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from workbench.errors import ParameterError
from workbench.trace.compare import COLUMNS, SIGMAS, diff, meta_diff, sample_diff

BENCH_KEY = ("model_type", "test", "n_depth", "n_threads", "engine")


@dataclass
class Comparison:
    kind: str  # "trace" or "bench"
    a: str  # names of the two sides (paths, or "a" / "b")
    b: str
    table: object  # DataFrame: per op (traces) or per test (bench)
    layers: object = None  # DataFrame per layer (traces)
    meta: dict = field(default_factory=dict)  # provenance keys that differ: {key: (a, b)}
    sigmas: float = SIGMAS

    @property
    def flagged(self):
        """The rows whose difference is beyond run-to-run noise."""
        return self.table[self.table["beyond_noise"] == True]  # noqa: E712 (None is not flagged)

    def figure(self):
        from workbench.viz import comparison

        return comparison(self)

    def markdown(self) -> str:
        unit = "ms" if self.kind == "trace" else "t/s"
        parts = [f"A = {self.a}", f"B = {self.b}", ""]
        for title, df in [("per op, ms per decode step" if self.kind == "trace" else "per test, tok/s", self.table),
                          ("per layer, ms per decode step", self.layers)]:
            if df is None or not len(df):
                continue
            parts += [f"{title} (* beyond {self.sigmas:g} standard errors of run-to-run noise)",
                      f"| {'key':<28} | {'A ' + unit:>10} | {'B ' + unit:>10} | {'B-A':>10} | {'B/A':>6} | "
                      f"{'noise':>8} |   |", "|" + "|".join(["-" * 30, "-" * 11 + ":", "-" * 11 + ":",
                                                              "-" * 11 + ":", "-" * 7 + ":", "-" * 9 + ":", "---"])
                      + "|"]
            for r in df.itertuples():
                parts.append(f"| {str(r.key):<28} | {_num(r[2]):>10} | {_num(r[3]):>10} | {_num(r.delta, '+.3f'):>10} "
                             f"| {_num(r.ratio, '.3f'):>6} | {_num(r.noise):>8} | {'*' if r.beyond_noise else ' '} |")
            parts.append("")
        if self.meta:
            parts.append("provenance that differs:")
            parts += [f"  {k}: {_short(va)} -> {_short(vb)}" for k, (va, vb) in self.meta.items()]
        return "\n".join(parts).rstrip() + "\n"

    def as_dict(self) -> dict:
        def rows(df):
            return None if df is None else json.loads(df.to_json(orient="records"))

        return {"kind": self.kind, "a": self.a, "b": self.b, "sigmas": self.sigmas, "table": rows(self.table),
                "layers": rows(self.layers), "meta": {k: list(v) for k, v in self.meta.items()}}

    def _repr_html_(self) -> str:
        return self.table.to_html(index=False)


def compare(a, b, *, steps: str = "decode", sigmas: float = SIGMAS) -> Comparison:
    """Compare two traces or two bench results (see the module docstring)."""
    kind_a, kind_b = _kind(a), _kind(b)
    if kind_a != kind_b:
        raise ParameterError(f"compare needs two traces or two bench results, got a {kind_a} and a {kind_b}")
    name_a, name_b = _name(a, "a"), _name(b, "b")
    if kind_a == "trace":
        ta, tb = _trace(a), _trace(b)
        return Comparison("trace", name_a, name_b, diff(ta, tb, "op", steps, sigmas),
                          diff(ta, tb, "layer", steps, sigmas), meta_diff(ta, tb), sigmas)
    return _compare_bench(_bench_rows(a), _bench_rows(b), name_a, name_b, sigmas)


def _kind(x) -> str:
    if hasattr(x, "spans"):
        return "trace"
    if isinstance(x, (list, tuple)):
        return "bench"
    if isinstance(x, (str, os.PathLike)):
        path = Path(x)
        if not path.is_file():
            raise ParameterError(f"compare: {path}: no such file")
        head = path.read_text()[:4096].lstrip()
        if '"traceEvents"' in head or '"workbench-trace"' in head:
            return "trace"
        if head.startswith(("[", "{")):
            return "bench"
        raise ParameterError(f"compare: {path} is neither a trace (JSON) nor bench results (JSON or JSON lines)")
    raise ParameterError(f"compare takes traces, bench records or their files, got {type(x).__name__}")


def _name(x, default: str) -> str:
    return os.fspath(x) if isinstance(x, (str, os.PathLike)) else default


def _trace(x):
    if hasattr(x, "spans"):
        return x
    from workbench.trace import Tracer

    try:
        return Tracer.load(x)
    except (OSError, ValueError, KeyError) as e:
        raise ParameterError(f"compare: cannot read trace {os.fspath(x)!r}: {e}") from None


def _bench_rows(x) -> list[dict]:
    if isinstance(x, (list, tuple)):
        if x and hasattr(x[0], "as_dict"):
            from workbench.llama_bench import records

            return records(x)
        return list(x)
    text = Path(x).read_text()
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        try:
            data = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as e:
            raise ParameterError(f"compare: {os.fspath(x)}: not JSON or JSON lines: {e}") from None
    return data if isinstance(data, list) else [data]


def _bench_key(row: dict) -> tuple:
    return tuple(str(row.get(k, "workbench" if k == "engine" else "")) for k in BENCH_KEY)


def _compare_bench(rows_a, rows_b, name_a, name_b, sigmas) -> Comparison:
    import pandas as pd

    by_a = {_bench_key(r): r for r in rows_a}
    by_b = {_bench_key(r): r for r in rows_b}
    out = []
    for key in [k for k in by_a if k in by_b] + [k for k in by_b if k not in by_a] + \
               [k for k in by_a if k not in by_b]:
        xa = (by_a.get(key) or {}).get("samples_ts") or []
        xb = (by_b.get(key) or {}).get("samples_ts") or []
        model, test, depth, threads, engine = key
        label = f"{engine} {model} {test}" + (f" @ d{depth}" if depth not in ("", "0") else "") + f" t={threads}"
        out.append({"key": label, **sample_diff(xa, xb, sigmas)})
    if not out:
        raise ParameterError("compare: the bench results hold no records with samples_ts")
    meta = {}
    for k in ("build_commit", "cpu_info", "model_filename", "type_k"):
        va, vb = {str(r.get(k)) for r in rows_a}, {str(r.get(k)) for r in rows_b}
        if va != vb:
            meta[k] = (", ".join(sorted(va)), ", ".join(sorted(vb)))
    return Comparison("bench", name_a, name_b, pd.DataFrame(out, columns=COLUMNS), None, meta, sigmas)


def _num(value, fmt: str = ".3f") -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, fmt)


def _short(value) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else value
    return text if len(text) <= 100 else text[:97] + "..."
