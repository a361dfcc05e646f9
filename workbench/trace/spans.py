"""Hierarchical spans: the one record type every layer of workbench writes into.

A `Tracer`'s `spans` is a flat list of `Span`s (`record.py`) in the order they opened,
each knowing its parent, depth and path (`generate/decode_step[3]/layer[7]/attn/q`).

`NULL_TRACER` is what code sees when nobody traces: its `span()` returns one shared no-op
context manager. Code that opens op spans checks `tracer.ops` (does this tracer record
ops?) before it computes their attributes at all, so an untraced run, or one traced per
layer, allocates nothing per op and reads no clock for it.

The exporters (`frame`, `summary`, `to_chrome_json`, `save`/`load`) are methods here but
live in `export.py`; nothing in this package imports workbench.
"""

from __future__ import annotations

import time

from workbench.trace.record import Span

LEVELS = ("step", "layer", "op")


class _NullSpan:
    __slots__ = ()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


NULL_SPAN = _NullSpan()


_now = time.perf_counter


class _SpanTimer:
    """The context manager of a tracer's newest span. Spans nest strictly, so one timer
    per tracer serves them all: `span()` files the span and pushes it, `__enter__` (which
    must follow at once, as `with tracer.span(...)` does) starts its clock, `__exit__`
    stops the innermost one. It holds the tracer's lists itself: a few attribute lookups
    fewer on the path every op span takes."""

    __slots__ = ("stack", "start", "seconds", "t0", "on_close")

    def __init__(self, tracer: Tracer):
        self.stack, self.start, self.seconds = tracer._stack, tracer._start, tracer._seconds
        self.t0 = tracer._t0
        self.on_close = None  # called with a span's index as it closes (see logs.LogTracer)

    def __enter__(self):
        self.start.append(_now() - self.t0)
        return self

    def __exit__(self, exc_type, exc, tb):
        now = _now() - self.t0
        index = self.stack.pop()
        self.seconds[index] = now - self.start[index]
        if self.on_close is not None:
            self.on_close(index)
        return False


class Tracer:
    """Records spans down to `level`: "step" (generate/prefill/decode steps), "layer"
    (adds embedding, layers, attn/ffn blocks, output, sampling), or "op" (adds every
    kernel call). `meta` is free-form provenance (model, threads, machine) that travels
    with `save` and the Chrome trace.

    While recording, a span is one tuple of plain values plus two floats, never an object
    that Python's cycle collector must keep visiting: with `Span` objects and attribute
    dicts, a few thousand op spans set off full collections of the whole heap (numba's
    included) that stopped a decode step for ~70 ms. `spans` builds the `Span` list when
    it is asked for (and keeps it until the next span opens or closes)."""

    enabled = True  # records something (NULL_TRACER: nothing)

    def __init__(self, level: str = "op", meta: dict | None = None):
        if level not in LEVELS:
            raise ValueError(f"trace level must be one of {LEVELS}, got {level!r}")
        self.level = level
        self._depth_limit = LEVELS.index(level)
        self.ops = level == "op"  # records op spans: the hot-path check
        self.meta = dict(meta or {})
        self._records: list[tuple] = []  # (name, kind, layer, parent, attr names, *attr values)
        self._start: list[float] = []  # seconds since _t0
        self._seconds: list[float] = []
        self._stack: list[int] = []  # indices of the open spans, innermost last
        self._cache: tuple = (-1, -1, ([], []))  # (len(_records), len(_stack), (spans, where)): `_built`
        self._t0 = time.perf_counter()
        self._timer = _SpanTimer(self)

    def span(self, name: str, kind: str = "block", layer: int = -1, **attrs):
        """Open a child span of the innermost open span; use as a context manager."""
        if _KIND_LEVEL[kind] > self._depth_limit:
            return NULL_SPAN
        stack, records = self._stack, self._records
        parent = stack[-1] if stack else -1
        stack.append(len(records))
        # one flat tuple, built after everything in it, so that the collector untracks it
        # on its first pass; attribute names apart from their values: one tuple, not one per pair
        records.append((name, kind, layer, parent, tuple(attrs), *attrs.values()))
        self._seconds.append(0.0)
        return self._timer

    @property
    def spans(self) -> list[Span]:
        """Every span recorded so far, parents before children (open ones with 0 seconds)."""
        return self._built()[0]

    def _built(self) -> tuple[list[Span], list[int]]:
        # Opening a span adds a record, closing one pops the stack: between truncations the
        # two lengths together change whenever anything does.
        n, depth, cached = self._cache
        if n != len(self._records) or depth != len(self._stack):
            cached = _build(self._records, self._start, self._seconds)
            self._cache = (len(self._records), len(self._stack), cached)
        return cached

    def span_index(self, record: int) -> int:
        """Where the span opened as record `record` sits in `spans`."""
        return self._built()[1][record]

    def defer(self, expand) -> None:
        """Children of the innermost open span, made later: `expand()` returns them as
        (name, kind, layer, parent, start, seconds, attrs) tuples, parent -1 for the open
        span itself or an index into that list. A compiled step files its op timestamps
        this way, so that the step pays for an array copy and not for hundreds of spans."""
        self._records.append((None, "deferred", -1, self._stack[-1] if self._stack else -1, (), expand))
        self._start.append(0.0)
        self._seconds.append(0.0)

    def now(self) -> float:
        """Seconds since the tracer was created, on the clock its spans use."""
        return _now() - self._t0

    def _truncate(self, index: int) -> None:
        """Forget span `index` and everything after it (all closed)."""
        del self._records[index:], self._start[index:], self._seconds[index:]
        self._cache = (-1, -1, ([], []))

    def _append(self, span: Span) -> None:
        """File a finished span as it is (Tracer.load)."""
        a = span.attrs
        self._records.append((span.name, span.kind, span.layer, span.parent, tuple(a), *a.values()))
        self._start.append(span.start)
        self._seconds.append(span.seconds)

    def children(self, index: int) -> list[Span]:
        """The spans whose parent is `spans[index]`."""
        return [s for s in self.spans if s.parent == index]

    def __repr__(self) -> str:
        steps = sum(r[1] == "step" for r in self._records)
        return f"Tracer(level={self.level!r}, {len(self._records)} spans, {steps} steps)"

    # Views and files; see export.py.
    def frame(self, bandwidth_gbps: float | None = None):
        """One row per span as a pandas DataFrame (see `export.frame`)."""
        from workbench.trace.export import frame

        return frame(self, bandwidth_gbps)

    def roofline(self, bandwidth_gbps: float, steps: str = "decode"):
        """Per op: time, bytes, GB/s and the fraction of `bandwidth_gbps` it reaches."""
        from workbench.trace.export import roofline

        return roofline(self, bandwidth_gbps, steps)

    def summary(self) -> dict:
        """The per-step breakdown and the per-layer attn/ffn split (`step_summary`)."""
        from workbench.trace.summary import step_summary

        return step_summary(self)

    def to_chrome_json(self, path=None) -> dict:
        """Chrome trace-event JSON (Perfetto, speedscope, chrome://tracing); written to
        `path` when given. Returns the JSON object."""
        from workbench.trace.export import chrome_trace

        return chrome_trace(self, path)

    def save(self, path) -> None:
        """Write every span and `meta` to a JSON file that `Tracer.load` reads back."""
        from workbench.trace.export import save

        save(self, path)

    @classmethod
    def load(cls, path) -> Tracer:
        from workbench.trace.export import load

        return load(cls, path)


class NullTracer:
    """The tracer of untraced code: every span is the same shared no-op."""

    enabled = False
    ops = False
    level = None

    def span(self, name, kind="block", layer=-1, **attrs):
        return NULL_SPAN


_KIND_LEVEL = {"root": 0, "step": 0, "layer": 1, "block": 1, "op": 2}
NULL_TRACER = NullTracer()


def _build(records, start, seconds) -> tuple[list[Span], list[int]]:
    """`Span`s from a tracer's records, with paths, depths and inherited layers filled in
    and deferred records expanded; and where each record's span landed in that list."""
    out: list[Span] = []
    where: list[int] = []

    def add(name, kind, layer, parent, t0, dt, attrs):
        if parent >= 0:
            up = out[parent]
            path, depth = f"{up.path}/{name}", up.depth + 1
            if layer < 0:
                layer = up.layer
        else:
            path, depth = name, 0
        out.append(Span(name, path, depth, parent, t0, dt, kind, layer, attrs))

    for (name, kind, layer, parent, keys, *values), t0, dt in zip(records, start, seconds):
        up = where[parent] if parent >= 0 else -1
        where.append(len(out))
        if kind == "deferred":
            base = len(out)
            for c_name, c_kind, c_layer, c_parent, c_t0, c_dt, c_attrs in values[0]():
                add(c_name, c_kind, c_layer, up if c_parent < 0 else base + c_parent, c_t0, c_dt, c_attrs)
        else:
            add(name, kind, layer, up, t0, dt, dict(zip(keys, values)))
    return out, where
