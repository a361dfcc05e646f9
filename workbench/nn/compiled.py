"""Building blocks of a decode step that runs in one call into compiled code.

Untraced (or traced at step level), a one-token forward of Llama or Gemma 3 does not go
back to Python between ops: the model's own `decode_step` (an njit function in its
file, read top to bottom like its `forward`) runs the embedding, every layer and the
lm_head, calling the same kernels as the layer-by-layer path in the same order, so
logits are equal bit for bit (tests/test_compiled_step.py). Python then costs one call
per token instead of ~15 per layer. What the step reads is packed once per model
(`Products`: the layers' matrices in a typed list, with format codes; the models stack
their norm weights); what it writes are the session's buffers (`DecoderState`), the
quantized activations included (`buffers`), so a step allocates nothing.

Not here: any architecture. A model gets a compiled step only if every matrix is one the
step knows (no bias, a format with a kernel in `kernels.dispatch`); otherwise, and
whenever a trace asks for layers or ops, it runs the instrumented path, one call per op
(`use_compiled`; traces say which path ran in `meta["decode_path"]`).
"""

from __future__ import annotations

import numpy as np
from numba.typed import List

from workbench.kernels.attention import attention_f16kv_parallel
from workbench.kernels.attention_f32 import attention_f32kv_parallel
from workbench.kernels.dispatch import CODES, builtin_defaults, matvec_into
from workbench.kernels.jit import njit_serial
from workbench.nn.linear import Embedding, Linear, LinearGroup

QKV, ATTN_OUTPUT, GATE_UP, DOWN = range(4)  # the matrix slots of a layer in `Products`
MAX_PARTS = 3  # matrices per slot: Q, K, V unfused


@njit_serial
def attend_f16(out, q, k, v, k_cache, v_cache, pos, scale, window, probs, f16):
    """Attention over an f16 (half bits) KV cache; one signature for both cache types."""
    attention_f16kv_parallel(out, q, k, v, k_cache, v_cache, pos, scale, window, probs, f16)


@njit_serial
def attend_f32(out, q, k, v, k_cache, v_cache, pos, scale, window, probs, f16):
    """Attention over a float32 KV cache (f16 unused)."""
    attention_f32kv_parallel(out, q, k, v, k_cache, v_cache, pos, scale, window, probs)


def attention_kernel(cache):
    """The `attend_*` for a KVCache's cell type (passed to a step as a function)."""
    return attend_f16 if cache.k.dtype == np.uint16 else attend_f32


@njit_serial
def products(ws, index, codes, out, x, i8, i32, f32):
    """out (flat) = the outputs of a slot's matrices on x (1, cols), one after another
    (one fused matrix, or Q, K, V / gate, up); scratch i8, i32, f32 as `kernels.scratch`."""
    o = 0
    for p in range(index.shape[0]):
        j = index[p]
        if j < 0:
            break
        w = ws[j]
        n = w.shape[0]
        matvec_into(codes[p], out[o : o + n].reshape((1, n)), w, x, i8, i32, f32)
        o += n


@njit_serial
def scale_(x, s):
    """x *= s for a flat float32 x, as numpy's in-place product rounds it."""
    for i in range(x.shape[0]):
        x[i] *= s


@njit_serial
def add_(x, y):
    """x += y (flat float32): a residual connection."""
    for i in range(x.shape[0]):
        x[i] += y[i]


def kernel_array(a: np.ndarray) -> np.ndarray:
    """A read-only plain view of a weight (numba dispatches np.memmap slowly)."""
    v = a.view(np.ndarray)
    v.flags.writeable = False
    return v


class Products:
    """The matrices of every layer, for `products`: `ws` a typed list of the weights' raw
    bytes (not copied), `index` (layers, 4, 3) into it by slot (QKV, ATTN_OUTPUT,
    GATE_UP, DOWN; -1: none) and `codes` their formats (`kernels.dispatch.CODES`), plus
    the embedding and lm_head with their codes."""

    def __init__(self, layers: list[tuple], embedding: Embedding, output: Linear):
        self.ws = List()
        self.index = np.full((len(layers), 4, MAX_PARTS), -1, np.int64)
        self.codes = np.zeros((len(layers), 4, MAX_PARTS), np.int64)
        for i, slots in enumerate(layers):
            for s, part in enumerate(slots):
                for p, lin in enumerate(_matrices(part)):
                    self.index[i, s, p] = len(self.ws)
                    self.codes[i, s, p] = CODES[lin.fmt]
                    self.ws.append(lin.weight.w)
        self.embd, self.embd_code = kernel_array(embedding.w), CODES[embedding.fmt]
        self.head, self.head_code = output.weight.w, CODES[output.fmt]
        self.formats = {embedding.fmt, output.fmt} | {m.fmt for s in layers for p in s for m in _matrices(p)}

    @classmethod
    def pack(cls, layers: list[tuple], embedding: Embedding, output: Linear) -> Products | None:
        """`layers`: per layer its (qkv, attn_output, gate_up, down) Linear or LinearGroup.
        None if some matrix has a bias or a format the compiled step cannot run."""
        mats = [output] + [m for s in layers for p in s for m in _matrices(p)]
        if (any(m.bias is not None or m.fmt not in CODES for m in mats) or embedding.fmt not in CODES
                or any(len(_matrices(p)) > MAX_PARTS for s in layers for p in s)):
            return None
        return cls(layers, embedding, output)

    def runs(self) -> bool:
        """Whether the registry's defaults are still the kernels the step calls."""
        return builtin_defaults(self.formats)


def _matrices(part) -> list[Linear]:
    if isinstance(part, LinearGroup):
        return [part.fused] if part.fused is not None else list(part.parts)
    return [part]


def buffers(state) -> tuple:
    """What a step writes, from a DecoderState: (x, xn, proj (1, d), att (1, H*hd), fused
    (flat), probs, logits (1, vocab), i8, i32, f32 scratch)."""
    return (state.x[:1], state.xn[:1], state.proj[:1], state.att[:1], state.fused, state.probs, state.logits,
            *state.quant_scratch)


def use_compiled(plan: Products | None, T: int, tracer) -> bool:
    """Whether a forward of T tokens runs the compiled step rather than op by op: one
    token, a packed model whose kernels are still the defaults, and no trace finer than
    steps. A trace records which it was in `meta["decode_path"]`."""
    compiled = T == 1 and plan is not None and tracer.level in (None, "step") and plan.runs()
    if tracer.enabled and T == 1:
        tracer.meta["decode_path"] = ("compiled: one call per decode step" if compiled else
                                      "instrumented: one call per op (slower than untraced decode)")
    return compiled
