"""Perf lines through Python `logging`, in rustml's form.

    [perf] linear::forward [1, 576]->[576,1536] Q4_1 0.31ms 9.7GB/s blk.0.attn_q.weight
    [perf] transformer[0]::forward attn=0.21ms ffn=0.30ms
    [perf] model::forward embedding=0.01ms layers=14.2ms norm=0.01ms projection=2.41ms total=16.7ms step=decode_step[0]

A `LogTracer` is an ordinary tracer that, as each step closes (or, outside any step,
each top-level span), writes that step's lines to the "workbench" logger at DEBUG, in
the order the spans finished, and then forgets them: memory stays bounded however long
the generation. Lines are written after the step's last timer has stopped, so logging
never inflates a step's own timings.

`WORKBENCH_LOG=debug` (step and layer lines) or `WORKBENCH_LOG=trace` (plus op lines) make
a `LogTracer` the default tracer; the environment is read once, when the trace package
is imported (see `trace/__init__.py`). Nothing here imports workbench.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

from workbench.trace.spans import Tracer

logger = logging.getLogger("workbench")

# WORKBENCH_LOG value -> the trace level whose spans it logs
ENV_LEVELS = {"debug": "layer", "trace": "op"}
_OFF = {"", "0", "off", "none", "false", "no"}

_PARTS = {"embedding": "embedding", "output_norm": "norm", "lm_head": "projection"}


def _ms(seconds: float) -> str:
    ms = seconds * 1e3
    return f"{ms:.1f}ms" if ms >= 10 else f"{ms:.2f}ms" if ms >= 0.1 else f"{ms:.3f}ms"


def op_line(span) -> str:
    """`[perf] linear::forward [1, 576]->[576,1536] Q4_1 0.31ms 9.7GB/s blk.0.attn_q.weight`
    for a linear op (shape (tokens, inputs, outputs)); `[perf] <op>::forward [shape] ...`
    for any other."""
    a = span.attrs
    shape = a.get("shape")
    weight = a.get("weight", "")
    if weight and shape is not None and len(shape) == 3:
        t, n, d = shape
        head = f"linear::forward [{t}, {n}]->[{n},{d}]"
    else:
        dims = ", ".join(str(n) for n in shape) if shape is not None else ""
        head = f"{span.name}::forward [{dims}]"
    parts = [f"[perf] {head}"]
    if a.get("fmt"):
        parts.append(a["fmt"].upper())
    parts.append(_ms(span.seconds))
    if span.gbps:
        parts.append(f"{span.gbps:.1f}GB/s")
    parts.append(weight or (f"layer[{span.layer}]" if span.layer >= 0 else ""))
    return " ".join(p for p in parts if p)


def layer_line(span, children) -> str:
    parts = " ".join(f"{c.name}={_ms(c.seconds)}" for c in children)
    return f"[perf] transformer[{span.layer}]::forward {parts}"


def step_line(span, children) -> str:
    ms = dict.fromkeys(("embedding", "layers", "norm", "projection"), 0.0)
    for c in children:
        if c.kind == "layer":
            ms["layers"] += c.seconds
        elif c.name in _PARTS:
            ms[_PARTS[c.name]] += c.seconds
    parts = " ".join(f"{k}={_ms(v)}" for k, v in ms.items())
    return f"[perf] model::forward {parts} total={_ms(span.seconds)} step={span.name}"


def lines(spans, first: int = 0) -> list[str]:
    """The perf lines of span `first` and its subtree (every span after it, when it is
    the span that just closed), children before parents: the order spans finished."""
    kids: dict[int, list[int]] = {}
    for i in range(first + 1, len(spans)):
        kids.setdefault(spans[i].parent, []).append(i)
    out: list[str] = []

    def visit(i):
        for c in kids.get(i, ()):
            visit(c)
        s = spans[i]
        if s.kind == "op":
            out.append(op_line(s))
        elif s.kind == "layer":
            out.append(layer_line(s, [spans[c] for c in kids.get(i, ())]))
        elif s.kind == "step":
            out.append(step_line(s, [spans[c] for c in kids.get(i, ())]))

    visit(first)
    return out


class LogTracer(Tracer):
    """Logs each step's spans to `log` (the "workbench" logger) as the step closes, then
    drops them."""

    def __init__(self, level: str = "layer", log: logging.Logger | None = None):
        super().__init__(level)
        self.log = log if log is not None else logger
        self._timer.on_close = self._closed

    def _closed(self, index: int) -> None:
        if self._records[index][1] != "step" and self._stack:
            return
        if self.log.isEnabledFor(logging.DEBUG):
            for line in lines(self.spans, self.span_index(index)):
                self.log.debug(line)
        self._truncate(index)  # nothing open refers past `index`: all of it has closed


def tracer_from_env(environ=os.environ) -> LogTracer | None:
    """The tracer that `WORKBENCH_LOG` asks for (None when unset or off). Gives the
    "workbench" logger a stderr handler and DEBUG level when it has none, because setting
    the variable is the user asking to see the lines."""
    value = environ.get("WORKBENCH_LOG", "").strip().lower()
    if value in _OFF:
        return None
    if value not in ENV_LEVELS:
        warnings.warn(f"WORKBENCH_LOG={value!r} is not one of {sorted(ENV_LEVELS)}: perf logging stays off",
                      stacklevel=2)
        return None
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    if logger.level == logging.NOTSET or logger.level > logging.DEBUG:
        logger.setLevel(logging.DEBUG)
    return LogTracer(ENV_LEVELS[value])
