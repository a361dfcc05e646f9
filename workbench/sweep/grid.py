"""A sweep's grid and its points: every combination of the axes, each with a stable id.

    grid = Grid(sources=["smollm2-135m", "smollm2-135m:hf-f32"], threads=[1, 2],
                quant_threshold=[None, 768], kernel=["default", "serial"], n_gen=[16])
    points(grid)   # [{"point_id": "3f0c...", "source": ..., "threads": 1, ...}, ...]

A point is a plain JSON-ready dict: it crosses process and machine boundaries (a Dask
task, then a fresh Python process on the worker) and its id keys the results file, so
that a resumed sweep recognises the points it has already run. The id hashes the point's
parameters (the evaluation text by its sha256), not its position in the grid: adding an
axis value later keeps the ids of the points that were there.

Load options left as None take the load profile's value (optimized: quantization off,
f16 KV cache), written into each point so that records say what ran. A `None` inside
`quant_threshold` means "off"; where it is off, `quant_type` has nothing to choose, so
those points collapse into one (quant_type None). Kernel choices are strings,
checked for form here and against the registry on the worker (a worker may have
variants this process does not):
- "default": the registry's defaults for this CPU;
- "NAME": variant NAME of every matvec format that registers one (e.g. "serial",
  "one_row"), the others keep their default;
- "OP:FMT=NAME": that op and format only (e.g. "matvec:q4_1=one_row");
  several joined by "+".
This module checks values and does not run anything, nor import dask.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from workbench.errors import ParameterError

KERNEL_PART = re.compile(r"^(?:[a-z_]+:[a-z0-9_]+=)?[A-Za-z0-9_.-]+$")
# the parameters that make a point what it is (hashed into point_id, in this order)
IDENTITY = ("source", "threads", "n_prompt", "n_gen", "reps", "quant_threshold", "quant_type", "kv_type", "kernel",
            "cpu_kind", "profile", "score_sha256", "score_tokens")


@dataclass(frozen=True)
class Grid:
    """The axes of a sweep (each a list of values; a scalar counts as a list of one)."""

    sources: Sequence[str]
    threads: Sequence[int] = (1,)
    n_prompt: Sequence[int] = (32,)  # ppN: N prompt tokens in one forward (0: no pp test)
    n_gen: Sequence[int] = (16,)  # tgN: N one-token steps (0: no tg test)
    quant_threshold: Sequence[int | None] | None = None  # None: the profile's; None as a value: off
    quant_type: Sequence[str] | None = None  # None: the profile's
    kv_type: Sequence[str] | None = None  # None: the profile's (f16)
    kernel: Sequence[str] = ("default",)
    cpu_kind: Sequence[str | None] = (None,)  # run only on workers whose CPU name or flags contain it
    reps: int = 3  # timed repetitions per test, after one warm-up
    profile: str | None = None  # workbench load profile (default: optimized)
    score: str | Path | None = None  # an evaluation text file: perplexity of each point on it
    score_tokens: int = 128  # tokens of it to score (teacher-forced, one at a time)

    @classmethod
    def of(cls, grid: Grid | Mapping) -> Grid:
        """A Grid from a Grid or a mapping of its fields (unknown keys are an error)."""
        if isinstance(grid, Grid):
            return grid
        if not isinstance(grid, Mapping):
            raise ParameterError(f"a sweep grid is a workbench.sweep.Grid or a dict of its fields, got {grid!r}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(grid) - known)
        if unknown:
            raise ParameterError(f"unknown grid axis {unknown[0]!r}; axes are {', '.join(sorted(known))}")
        return cls(**grid)


def points(grid: Grid | Mapping) -> list[dict]:
    """Every point of the grid, in axis order (sources slowest), duplicates removed."""
    from workbench.engine.options import DEFAULT_PROFILE, PROFILES
    from workbench.nn.kv_cache import KV_TYPES
    from workbench.nn.options import QUANT_TYPES

    g = Grid.of(grid)
    sources = _axis(g.sources, "sources")
    if not sources or any(not isinstance(s, (str, Path)) or not str(s) for s in sources):
        raise ParameterError(f"sources must be a non-empty list of model names or paths, got {g.sources!r}")
    threads = _ints(g.threads, "threads", 1)
    n_prompt, n_gen = _ints(g.n_prompt, "n_prompt", 0), _ints(g.n_gen, "n_gen", 0)
    reps = _ints([g.reps], "reps", 1)[0]
    score_tokens = _ints([g.score_tokens], "score_tokens", 2)[0]
    if g.profile is not None and g.profile not in PROFILES:
        raise ParameterError(f"profile must be one of {', '.join(PROFILES)}, got {g.profile!r}")
    profile = PROFILES[g.profile or DEFAULT_PROFILE]
    thresholds = _axis(profile["quant_threshold"] if g.quant_threshold is None else g.quant_threshold,
                       "quant_threshold")
    for t in thresholds:
        if t is not None and (isinstance(t, bool) or not isinstance(t, (int, np.integer)) or t < 0):
            raise ParameterError(f"quant_threshold values must be integers >= 0 or None (off), got {t!r}")
    quant_types = _choices(profile["quant_type"] if g.quant_type is None else g.quant_type, "quant_type",
                           QUANT_TYPES)
    kv_types = _choices(profile["kv_type"] if g.kv_type is None else g.kv_type, "kv_type", KV_TYPES)
    kernels = [canonical_kernel(k) for k in _axis(g.kernel, "kernel")]
    kinds = _axis(g.cpu_kind, "cpu_kind")
    if any(k is not None and (not isinstance(k, str) or not k.strip()) for k in kinds):
        raise ParameterError(f"cpu_kind values must be non-empty strings or None, got {g.cpu_kind!r}")
    score_name = score_sha = score_text = None
    if g.score is not None:
        score_path = Path(g.score)
        try:
            score_text = score_path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise ParameterError(f"score: cannot read the evaluation text {score_path}: {e}") from None
        score_name, score_sha = score_path.name, hashlib.sha256(score_text.encode()).hexdigest()

    out, seen = [], set()
    for source, t, pp, tg, thr, qt, kv, kernel, kind in itertools.product(
            sources, threads, n_prompt, n_gen, thresholds, quant_types, kv_types, kernels, kinds):
        if pp == 0 and tg == 0:
            continue
        if thr is None:  # quantization off: no type to choose
            qt = None
        point = {"source": str(source), "threads": t, "n_prompt": pp, "n_gen": tg, "reps": reps,
                 "quant_threshold": None if thr is None else int(thr), "quant_type": qt, "kv_type": kv, "kernel": kernel,
                 "cpu_kind": kind, "profile": g.profile, "score_file": score_name, "score_sha256": score_sha,
                 "score_tokens": score_tokens if score_text is not None else None}
        point["point_id"] = point_id(point)
        if point["point_id"] in seen:
            continue
        seen.add(point["point_id"])
        out.append(point | {"score_text": score_text})
    if not out:
        raise ParameterError("the grid has no points: n_prompt and n_gen are both 0 everywhere")
    return out


def point_id(point: Mapping) -> str:
    """16 hex digits of the sha256 of the point's identity (IDENTITY's fields, JSON)."""
    ident = [point.get(k) for k in IDENTITY]
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


def canonical_kernel(spec) -> str:
    """A kernel choice in one spelling: parts sorted, joined by "+"; "default" when empty."""
    if not isinstance(spec, str):
        raise ParameterError(f"a kernel choice is a string such as 'default', 'serial' or "
                             f"'matvec:q4_1=one_row', got {spec!r}")
    parts = sorted({p.strip() for p in spec.split("+") if p.strip() and p.strip() != "default"})
    for p in parts:
        if not KERNEL_PART.match(p):
            raise ParameterError(f"kernel choice {spec!r}: {p!r} is neither a variant name nor OP:FMT=NAME")
    return "+".join(parts) or "default"


def kernel_parts(spec: str) -> list[tuple[str | None, str | None, str]]:
    """"matvec:q4_1=serial+row_groups" -> [("matvec", "q4_1", "serial"), (None, None, "row_groups")]."""
    out = []
    for p in canonical_kernel(spec).split("+"):
        if p == "default":
            continue
        if "=" in p:
            target, name = p.split("=", 1)
            op, fmt = target.split(":", 1)
            out.append((op, fmt, name))
        else:
            out.append((None, None, p))
    return out


def _axis(values, name: str) -> list:
    if values is None or isinstance(values, (str, Path, int, np.integer)):
        values = [values]
    try:
        values = list(values)
    except TypeError:
        raise ParameterError(f"{name} must be a list of values, got {values!r}") from None
    if not values:
        raise ParameterError(f"{name} must have at least one value")
    return list(dict.fromkeys(values))


def _ints(values, name: str, low: int) -> list[int]:
    values = _axis(values, name)
    if any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low for v in values):
        raise ParameterError(f"{name} must be integers >= {low}, got {values!r}")
    return [int(v) for v in values]


def _choices(values, name: str, allowed) -> list:
    values = _axis(values, name)
    bad = [v for v in values if v not in allowed]
    if bad:
        raise ParameterError(f"{name} must be one of {', '.join(allowed)}, got {bad[0]!r}")
    return values
