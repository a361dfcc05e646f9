"""Tracing: hierarchical spans of a generation, and the one switch that turns them on.

`with tracing("op") as t:` makes `t` the current tracer for the code inside; engine code
asks `current()` once per step and passes the tracer down. Outside any `tracing` block
`current()` is `NULL_TRACER`, whose spans cost one attribute lookup and nothing else,
unless `WORKBENCH_LOG` was set when this package was imported: then it is a `LogTracer`
that writes `[perf]` lines to the "workbench" logger as each step finishes (`debug`:
steps and layers; `trace`: every op too). The environment is read here, once, and
nowhere else. That default tracer is one per process: while it is on, generate from one
thread at a time.

    with tracing("op") as t:
        model.generate("Hello", max_tokens=8)
    t.frame()                      # pandas DataFrame, one row per span
    t.summary()                    # per-step breakdown, per-layer attn/ffn split
    t.roofline(gbps)               # per op: GB/s and fraction of the machine's bandwidth
    t.to_chrome_json("trace.json") # open in https://ui.perfetto.dev or speedscope
    t.save("t.json"); workbench.trace.load("t.json")   # also reads the Chrome export back
"""

from contextlib import contextmanager
from contextvars import ContextVar

from workbench.trace.logs import LogTracer, tracer_from_env
from workbench.trace.spans import LEVELS, NULL_SPAN, NULL_TRACER, NullTracer, Span, Tracer
from workbench.trace.summary import step_summary

_env_tracer = tracer_from_env()
_DEFAULT = _env_tracer if _env_tracer is not None else NULL_TRACER
_current: ContextVar = ContextVar("workbench_tracer", default=_DEFAULT)


def current():
    """The tracer in effect here: the innermost `tracing` block's, else the default
    (`NULL_TRACER`, or the `WORKBENCH_LOG` tracer)."""
    return _current.get()


@contextmanager
def tracing(level: str = "op", meta: dict | None = None):
    """Record everything run inside the block into a new `Tracer` at `level`
    ("step", "layer" or "op"); `meta` is provenance carried into its exports."""
    tracer = Tracer(level, meta)
    token = _current.set(tracer)
    try:
        yield tracer
    finally:
        _current.reset(token)


def load(path) -> Tracer:
    """A trace saved with `Tracer.save` or exported with `to_chrome_json`, read back."""
    return Tracer.load(path)


tracing.load = load  # `workbench.trace` is the `tracing` function: `workbench.trace.load(path)` works too

__all__ = ["LEVELS", "NULL_SPAN", "NULL_TRACER", "LogTracer", "NullTracer", "Span", "Tracer", "current",
           "tracing", "step_summary", "load"]
