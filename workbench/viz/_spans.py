"""What the plots read from a trace, and the checks that say what a trace lacks.

Every plot takes its trace through `as_tracer`, picks steps here and aggregates ops
here, so that a trace too coarse or too short for a chart fails with a
`ParameterError` naming what is missing, never with an empty figure. Only a tracer's
`spans`, `level`, `meta` and `frame()` are read; nothing of the engine.
"""

from __future__ import annotations

import numbers
import os

from workbench.errors import ParameterError
from workbench.trace import LEVELS, Tracer

PHASES = ("prefill", "decode")

# One color per part of a step, the same in every chart (plotly's default palette).
COLORS = {"step": "#7f7f7f", "layer": "#c7c7c7", "attn": "#1f77b4", "ffn": "#ff7f0e", "embedding": "#2ca02c",
          "output_norm": "#9467bd", "lm_head": "#d62728", "gaps": "#e0e0e0"}
_SPARE = ["#8c564b", "#e377c2", "#bcbd22", "#17becf"]


def color(category: str) -> str:
    return COLORS.get(category) or _SPARE[sum(map(ord, category)) % len(_SPARE)]


def as_tracer(trace) -> Tracer:
    """`trace` itself if it is a tracer that recorded something, else the trace saved
    at that path (`Tracer.save`)."""
    if isinstance(trace, (str, os.PathLike)):
        try:
            trace = Tracer.load(trace)
        except (OSError, ValueError, KeyError) as e:
            raise ParameterError(f"cannot read trace file {os.fspath(trace)!r}: {e}") from e
    if not getattr(trace, "enabled", False) or not hasattr(trace, "spans"):
        raise ParameterError("trace must be a Tracer from `with workbench.trace(...) as t` (or the path of one "
                             f"saved with t.save), got {type(trace).__name__}")
    if not trace.spans:
        raise ParameterError("trace holds no spans: generate inside the `with workbench.trace(...)` block")
    return trace


def require_level(tracer, level: str, chart: str) -> None:
    """Raise unless `tracer` recorded spans down to `level` ("layer" or "op")."""
    if LEVELS.index(tracer.level) < LEVELS.index(level) or not any(s.kind == level for s in tracer.spans):
        raise ParameterError(f"{chart} needs {level} spans, and this trace was recorded at "
                             f"level={tracer.level!r}: record it with workbench.trace(level={level!r})")


def steps(tracer, phase: str | None = None) -> list[int]:
    """Indices of the step spans, in order; only those of `phase` ("prefill", "decode")."""
    if phase is not None and phase not in PHASES:
        raise ParameterError(f"phase must be one of {PHASES}, got {phase!r}")
    return [i for i, s in enumerate(tracer.spans) if s.kind == "step" and (phase is None or s.name.startswith(phase))]


def require_steps(tracer, phase: str, chart: str) -> list[int]:
    found = steps(tracer, phase)
    if not found:
        hint = " (generate with max_tokens >= 2: the first token comes from prefill)" if phase == "decode" else ""
        raise ParameterError(f"{chart} needs {phase} steps and this trace has none{hint}")
    return found


def pick_step(tracer, step) -> int:
    """The span index of `step`: None for the last decode step, an int for the decode step
    at that position (negative counts from the end), or a step's name ("prefill",
    "decode_step[3]"; the last one of that name when the trace holds several generations)."""
    spans = tracer.spans
    if step is None:
        return require_steps(tracer, "decode", "the default step (the last decode step)")[-1]
    if isinstance(step, int) and not isinstance(step, bool):
        decode = require_steps(tracer, "decode", f"step={step}")
        if not -len(decode) <= step < len(decode):
            raise ParameterError(f"step={step} is out of range: this trace has {len(decode)} decode steps")
        return decode[step]
    named = [i for i in steps(tracer) if spans[i].name == step]
    if not named:
        names = sorted({spans[i].name for i in steps(tracer)})
        raise ParameterError(f"step {step!r} is not in this trace; it has {', '.join(names) or 'no steps'}")
    return named[-1]


def subtree(spans, index: int) -> range:
    """Indices of span `index` and all its descendants: spans are filed in the order they
    opened and nest strictly, so these are the spans after it that are deeper than it."""
    end = index + 1
    while end < len(spans) and spans[end].depth > spans[index].depth:
        end += 1
    return range(index, end)


def categories(spans, index: int) -> dict[int, str]:
    """For each span under step `index`, the part of the step it belongs to: "step",
    "layer", "attn"/"ffn" (a layer's blocks, by name), or the name of a step's direct
    child outside the layers ("embedding", "output_norm", "lm_head")."""
    out = {}
    for j in subtree(spans, index):
        s = spans[j]
        if j == index:
            out[j] = "step"
        elif s.parent == index:
            out[j] = "layer" if s.kind == "layer" else s.name
        elif out[s.parent] == "layer":
            out[j] = s.name
        else:
            out[j] = out[s.parent]
    return out


def is_positive(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and value > 0


def roof(tracer, roof_gbs: float | None, required: bool, chart: str) -> float | None:
    """`roof_gbs`, else the `read_gbps` the trace's meta records (`workbench trace` puts it
    there), else None, or an error when the chart cannot go without it."""
    value = roof_gbs if roof_gbs is not None else tracer.meta.get("read_gbps")
    if value is None:
        if required:
            raise ParameterError(f"{chart} needs roof_gbs (the machine's read bandwidth, e.g. "
                                 "workbench.machine_bandwidth().gbps('read', model.threads)); this trace's "
                                 "meta records no read_gbps")
        return None
    if not is_positive(value):
        raise ParameterError(f"roof_gbs must be a positive number of GB/s, got {value!r}")
    return float(value)


def op_table(tracer, phase: str, chart: str):
    """The ops of `phase`'s steps, one row per (op, weight format) in the order they first
    ran: calls, ms, MB and flops per step, GB/s and GFLOP/s (totals over total time),
    intensity (flops per byte) and share of the op time."""
    require_level(tracer, "op", chart)
    n_steps = len(require_steps(tracer, phase, chart))
    df = tracer.frame()
    ops = df[(df["kind"] == "op") & df["step"].str.startswith(phase)]
    g = ops.groupby(["op", "dtype"], sort=False).agg(calls=("seconds", "size"), seconds=("seconds", "sum"),
                                                     bytes=("bytes", "sum"), flops=("flops", "sum")).reset_index()
    g = g.rename(columns={"dtype": "fmt"})
    g["label"] = [f"{op} ({fmt})" if (g["op"] == op).sum() > 1 else op for op, fmt in zip(g["op"], g["fmt"])]
    seconds = g["seconds"].where(g["seconds"] > 0)
    g["ms"] = g["seconds"] * 1e3 / n_steps
    g["MB"] = g["bytes"] / 1e6 / n_steps
    g["GB/s"] = (g["bytes"] / seconds / 1e9).fillna(0.0)
    g["GFLOP/s"] = (g["flops"] / seconds / 1e9).fillna(0.0)
    g["intensity"] = (g["flops"] / g["bytes"].where(g["bytes"] > 0)).fillna(0.0)
    g["share"] = g["seconds"] / g["seconds"].sum()
    g["calls"] = g["calls"] / n_steps
    g.attrs["steps"] = n_steps
    return g


def phase_title(tracer, phase: str, n_steps: int) -> str:
    if phase == "prefill":
        tokens = [tracer.spans[i].attrs.get("tokens", 0) for i in steps(tracer, "prefill")]
        return f"prefill ({tokens[0]} tokens)" if n_steps == 1 else f"prefill (mean of {n_steps}, {sum(tokens)} tokens)"
    return f"decode (mean of {n_steps} steps)"
