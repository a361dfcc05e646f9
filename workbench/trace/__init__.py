"""Tracing: hierarchical spans of a generation, and the one switch that turns them on.

`with tracing("op") as t:` makes `t` the current tracer for the code inside; engine code
asks `current()` once per step and passes the tracer down. Outside any `tracing` block
`current()` is `NULL_TRACER`, whose spans cost one attribute lookup and nothing else.
"""

from contextlib import contextmanager
from contextvars import ContextVar

from workbench.trace.spans import LEVELS, NULL_SPAN, NULL_TRACER, NullTracer, Span, Tracer
from workbench.trace.summary import step_summary

_current: ContextVar = ContextVar("workbench_tracer", default=NULL_TRACER)


def current():
    """The tracer in effect here: the innermost `tracing` block's, or `NULL_TRACER`."""
    return _current.get()


@contextmanager
def tracing(level: str = "op"):
    """Record everything run inside the block into a new `Tracer` at `level`."""
    tracer = Tracer(level)
    token = _current.set(tracer)
    try:
        yield tracer
    finally:
        _current.reset(token)


__all__ = ["LEVELS", "NULL_SPAN", "NULL_TRACER", "NullTracer", "Span", "Tracer", "current", "tracing", "step_summary"]
