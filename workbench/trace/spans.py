"""Hierarchical spans: the one record type every layer of workbench writes into.

A `Tracer` keeps a flat list of finished `Span`s, each knowing its parent, depth and
path (`generate/decode_step[3]/layer[7]/attn/qkv`). Op spans may carry the bytes the op
must move and its flops, so GB/s can be derived later. `NULL_TRACER` is what code sees
when nobody traces: its `span()` returns one shared no-op context manager, so an
untraced run allocates nothing and reads no clock.

This module imports nothing of workbench: every other layer may record into it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

LEVELS = ("step", "layer", "op")


@dataclass(slots=True)
class Span:
    name: str
    path: str
    depth: int
    parent: int  # index into Tracer.spans, -1 for a root
    start: float  # seconds since the tracer was created
    seconds: float = 0.0
    kind: str = "block"  # "root", "step", "layer", "block" or "op"
    layer: int = -1
    attrs: dict = field(default_factory=dict)

    @property
    def gbps(self) -> float:
        """Bytes the op must move over its time, in GB/s (0 where unknown)."""
        nbytes = self.attrs.get("bytes", 0)
        return nbytes / self.seconds / 1e9 if self.seconds > 0 and nbytes else 0.0


class _NullSpan:
    __slots__ = ()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


NULL_SPAN = _NullSpan()


class _OpenSpan:
    """Context manager that times one span and files it with its tracer on exit."""

    __slots__ = ("tracer", "index", "t0")

    def __init__(self, tracer: Tracer, index: int):
        self.tracer = tracer
        self.index = index

    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        span = self.tracer.spans[self.index]
        span.seconds = time.perf_counter() - self.t0
        self.tracer._stack.pop()
        return False


class Tracer:
    """Records spans down to `level`: "step" (generate/prefill/decode steps), "layer"
    (adds embedding, layers, attn/ffn blocks, output), or "op" (adds every kernel call)."""

    enabled = True

    def __init__(self, level: str = "op"):
        if level not in LEVELS:
            raise ValueError(f"trace level must be one of {LEVELS}, got {level!r}")
        self.level = level
        self._depth_limit = LEVELS.index(level)
        self.spans: list[Span] = []
        self._stack: list[int] = []
        self._t0 = time.perf_counter()

    def span(self, name: str, kind: str = "block", layer: int = -1, **attrs):
        """Open a child span of the innermost open span; use as a context manager."""
        if _KIND_LEVEL[kind] > self._depth_limit:
            return NULL_SPAN
        parent = self._stack[-1] if self._stack else -1
        path = f"{self.spans[parent].path}/{name}" if parent >= 0 else name
        if layer < 0 and parent >= 0:
            layer = self.spans[parent].layer
        index = len(self.spans)
        self.spans.append(
            Span(name, path, len(self._stack), parent, time.perf_counter() - self._t0, 0.0, kind, layer, attrs)
        )
        self._stack.append(index)
        return _OpenSpan(self, index)

    def children(self, index: int) -> list[Span]:
        return [s for s in self.spans if s.parent == index]


class NullTracer:
    """The tracer of untraced code: every span is the same shared no-op."""

    enabled = False
    level = None

    def span(self, name, kind="block", layer=-1, **attrs):
        return NULL_SPAN


_KIND_LEVEL = {"root": 0, "step": 0, "layer": 1, "block": 1, "op": 2}
NULL_TRACER = NullTracer()
