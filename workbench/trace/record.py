"""`Span`, the record a trace is made of: one timed, named region of a run.

It has a module of its own because both sides of a trace use it: the tracer that writes
spans (`spans.py`) and the exporters that read them and rebuild them from files
(`export.py`), which the tracer's methods call in turn.

A span knows its parent, depth and path (`generate/decode_step[3]/layer[7]/attn/q`).
Op spans may carry the bytes the op must move and its flops, so GB/s can be derived later:

    weight        the tensor's name in the file (`blk.7.attn_q.weight`)
    fmt           its storage format (`q4_1`, `f32`, ...)
    shape         the op's shape; a linear op's is (tokens, inputs, outputs)
    bytes         everything the op must move: weights + activations read and written + KV
    weight_bytes  the part of `bytes` that is weights (exactly the tensor's bytes, or the
                  rows an embedding lookup reads)
    flops         floating-point operations (a multiply-add counts two)
"""

from __future__ import annotations

from dataclasses import dataclass, field


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

    @property
    def gflops(self) -> float:
        flops = self.attrs.get("flops", 0)
        return flops / self.seconds / 1e9 if self.seconds > 0 and flops else 0.0
