"""Element-wise steps of a block that models would otherwise write inline: the residual
add and the (gated or plain) activation of the FFN, each as one traced op.

They exist so that a traced step accounts for all of its time (an untraced `x += proj`
is time that no op owns) while an untraced one still costs nothing extra: the span and
its attributes are built only when `tracer.ops`.
"""

from __future__ import annotations

import numpy as np

from workbench.trace import NULL_TRACER


def residual_add(x: np.ndarray, y: np.ndarray, tracer=NULL_TRACER, op: str = "residual") -> np.ndarray:
    """x += y in place (x, y (T, d) f32): the residual connection of a block."""
    if tracer.ops:
        with tracer.span(op, kind="op", fmt="f32", shape=x.shape, bytes=3 * x.nbytes, flops=x.size):
            np.add(x, y, out=x)
    else:
        np.add(x, y, out=x)
    return x


def gated_act(kernel, out: np.ndarray, gate: np.ndarray, up: np.ndarray, flops_per_value: int,
              tracer=NULL_TRACER, op: str = "ffn_act") -> np.ndarray:
    """out = act(gate) * up through `kernel(out, gate, up)` (SwiGLU, GeGLU, ...);
    `flops_per_value` is what the activation costs per output value, for the trace."""
    if tracer.ops:
        with tracer.span(op, kind="op", fmt="f32", shape=gate.shape, bytes=3 * gate.nbytes,
                         flops=flops_per_value * gate.size):
            kernel(out, gate, up)
    else:
        kernel(out, gate, up)
    return out


def act(kernel, out: np.ndarray, x: np.ndarray, flops_per_value: int, tracer=NULL_TRACER,
        op: str = "ffn_act") -> np.ndarray:
    """out = act(x) through `kernel(out, x)` (GPT-2's tanh GELU); out may be x."""
    if tracer.ops:
        with tracer.span(op, kind="op", fmt="f32", shape=x.shape, bytes=2 * x.nbytes, flops=flops_per_value * x.size):
            kernel(out, x)
    else:
        kernel(out, x)
    return out
