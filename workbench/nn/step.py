"""Building blocks of a model's compiled step: the one forward that runs, traced or not.

Every forward of a model (a prompt chunk of T tokens or one decode token) is one call
into numba: the model's `step(ids, pos, w, b, marks)` (an njit function in its own file,
read top to bottom) runs the embedding, every layer and the lm_head without returning to
Python. It takes three records and the timestamps:
- `w`, the model's weights record (a namedtuple of its file), built once at load; the
  matrices of every layer sit in `Products` (a typed list of raw weight bytes, not copied,
  with biases, slots and kernel codes from `kernels.dispatch`);
- `b`, the session's `Buffers` (activations, KV cache, quantized-activation scratch),
  allocated once, so a step allocates nothing;
- `marks`, an int64 array: empty when nobody traces, else the step writes the cycle
  counter into it after each op (`kernels.clock.mark`).

How a trace is recorded inside compiled code: the model lists its ops in the order the
step marks them (`OpPlan`: name, block, layer and what the op moves); after a traced step
the Python side copies the marks and files a deferred record with the tracer
(`Tracer.defer`); spans (step > layer > attn / ffn > op, with bytes, flops and GB/s) are
made from them only when someone reads the trace. The traced program is the untraced one
plus one cycle-counter read per op.

Nothing here knows an architecture; numba's on-disk cache sees only arrays, typed lists,
namedtuples and integers, whose types are the same in every process (never a function).
"""

from __future__ import annotations

import types
from collections import namedtuple

import numpy as np
from numba.typed import List

from workbench.errors import ParameterError
from workbench.kernels.activations import (
    geglu_tanh_f32,
    geglu_tanh_f32_parallel,
    geglu_tanh_in_place_f32,
    geglu_tanh_in_place_f32_parallel,
    geglu_tanh_table_f32,
    geglu_tanh_table_f32_parallel,
    gelu_tanh_in_place_f32,
    gelu_tanh_in_place_f32_parallel,
    swiglu_f32,
    swiglu_f32_parallel,
    swiglu_in_place_f32,
    swiglu_in_place_f32_parallel,
)
from workbench.kernels.attention import attend_f16kv_parallel, store_kv
from workbench.kernels.attention_f32 import attend_f32kv_parallel, store_kv_f32
from workbench.kernels.clock import mark, ticks_per_second
from workbench.kernels.dispatch import (
    CUSTOM,
    describe,
    format_of_code,
    matvec_code,
    matvec_into,
    matvec_with,
    registry_version,
)
from workbench.kernels.half import F16_TO_F32
from workbench.kernels.jit import njit_serial, njit_uncached
from workbench.kernels.norms import layernorm_f32, layernorm_f32_parallel, rmsnorm_f32, rmsnorm_f32_parallel
from workbench.kernels.isa.x86 import cpu_features
from workbench.kernels.registry import default, default_name
from workbench.kernels.rope import rope_f32, rope_f32_parallel
from workbench.kernels.table import FORMATS
from workbench.nn import costs
from workbench.nn.linear import Embedding, Linear, LinearGroup

QKV, ATTN_OUTPUT, FFN_IN, FFN_OUT = range(4)  # the matrix slots of a layer in `Products`
MAX_PARTS = 3  # matrices per slot: Q, K, V unfused

# What a step writes: flat float32 buffers sliced to (T, n) inside the step; KV caches
# of both cell types (the unused pair is empty), probs the attention scratch
Buffers = namedtuple("Buffers", "x xn proj att fused wide probs logits i8 i32 f32 k16 v16 k32 v32")


# ---- compiled helpers a step calls (serial kernels for one token, parallel for more) ----

@njit_serial
def views(b, T, d, H, Hkv, hd, d_ff):
    """A step's (T, n) views of the session's flat buffers: x, xn, proj (T, d); att
    (T, H*hd); q (T, H, hd), k, v (T, Hkv, hd) as the QKV slot writes them (Q | K | V);
    gate, up (T, d_ff) as the FFN_IN slot writes them (gate | up; one (T, d_ff) block
    alone for an ungated FFN)."""
    x, xn, proj = b.x[: T * d].reshape((T, d)), b.xn[: T * d].reshape((T, d)), b.proj[: T * d].reshape((T, d))
    att = b.att[: T * H * hd].reshape((T, H * hd))
    q = b.fused[: T * H * hd].reshape((T, H, hd))
    k = b.fused[T * H * hd : T * (H + Hkv) * hd].reshape((T, Hkv, hd))
    v = b.fused[T * (H + Hkv) * hd : T * (H + 2 * Hkv) * hd].reshape((T, Hkv, hd))
    gate, up = b.fused[: T * d_ff].reshape((T, d_ff)), b.fused[T * d_ff : 2 * T * d_ff].reshape((T, d_ff))
    return x, xn, proj, att, q, k, v, gate, up


@njit_serial
def linear(p, slot, layer, out, x, b, marks, m):
    """out (flat) = the outputs of one slot's matrices on x (T, cols) in `Products` p, as
    consecutive (T, rows) blocks (Q | K | V, gate | up), biases added; a mark after each
    matrix. Returns the next mark's index."""
    T = x.shape[0]
    index, sizes, codes = p.index[layer, slot], p.sizes[layer, slot], p.codes[layer, slot]
    if T > 1 and index[1] < 0 and sizes[1] > 0:  # one fused matrix: (T, all rows), split after
        j = index[0]
        n = p.ws[j].shape[0]
        y = b.wide[: T * n].reshape((T, n))
        matvec_into(codes[0], y, p.ws[j], x, b.i8, b.i32, b.f32)
        _add_bias(y, p.bs[j])
        o = 0
        for part in range(sizes.shape[0]):
            rows = sizes[part]
            if rows == 0:
                break
            out[T * o : T * (o + rows)].reshape((T, rows))[:, :] = y[:, o : o + rows]
            o += rows
        return mark(marks, m)
    o = 0
    for part in range(index.shape[0]):
        j = index[part]
        if j < 0:
            break
        n = p.ws[j].shape[0]
        y = out[T * o : T * (o + n)].reshape((T, n))
        matvec_into(codes[part], y, p.ws[j], x, b.i8, b.i32, b.f32)
        _add_bias(y, p.bs[j])
        m = mark(marks, m)
        o += n
    return m


@njit_serial
def _add_bias(y, bias):
    if bias.shape[0] > 0:
        for t in range(y.shape[0]):
            for i in range(y.shape[1]):
                y[t, i] += bias[i]


@njit_serial
def lm_head(p, out, x, b):
    """out (1, vocab) = x (1, d) @ lm_head.T."""
    matvec_into(p.head_code, out, p.head, x, b.i8, b.i32, b.f32)


@njit_serial
def rmsnorm(out, x, w, eps):
    if x.shape[0] == 1:
        rmsnorm_f32(out, x, w, eps)
    else:
        rmsnorm_f32_parallel(out, x, w, eps)


@njit_serial
def layernorm(out, x, w, bias, eps):
    if x.shape[0] == 1:
        layernorm_f32(out, x, w, bias, eps)
    else:
        layernorm_f32_parallel(out, x, w, bias, eps)


@njit_serial
def rope(x, pos, cos, sin, n_rot, neox):
    if x.shape[0] == 1:
        rope_f32(x, pos, cos, sin, n_rot, neox)
    else:
        rope_f32_parallel(x, pos, cos, sin, n_rot, neox)


@njit_serial
def swiglu(out, gate, up):
    if out.ctypes.data == gate.ctypes.data:  # in place (the llama step's)
        if gate.shape[0] == 1:
            swiglu_in_place_f32(gate, up)
        else:
            swiglu_in_place_f32_parallel(gate, up)
    elif gate.shape[0] == 1:
        swiglu_f32(out, gate, up)
    else:
        swiglu_f32_parallel(out, gate, up)


@njit_serial
def geglu(out, gate, up, table, use_table):
    """GELU(tanh)(gate) * up, through ggml's half table (GGUF files) or exactly (HF)."""
    if use_table:
        if gate.shape[0] == 1:
            geglu_tanh_table_f32(out, gate, up, table)
        else:
            geglu_tanh_table_f32_parallel(out, gate, up, table)
    elif out.ctypes.data == gate.ctypes.data:  # in place (the gemma3 step's)
        if gate.shape[0] == 1:
            geglu_tanh_in_place_f32(gate, up)
        else:
            geglu_tanh_in_place_f32_parallel(gate, up)
    elif gate.shape[0] == 1:
        geglu_tanh_f32(out, gate, up)
    else:
        geglu_tanh_f32_parallel(out, gate, up)


@njit_serial
def gelu_(x):
    """x = gelu_tanh(x), in place (T, d_ff) float32: GPT-2's activation."""
    if x.shape[0] == 1:
        gelu_tanh_in_place_f32(x)
    else:
        gelu_tanh_in_place_f32_parallel(x)


@njit_serial
def store_kv_at(b, layer, k, v, pos):
    """Write this step's k, v (T, Hkv, hd) into layer `layer` of the cache at pos.."""
    if b.k16.shape[1] > 0:
        store_kv(b.k16[layer], b.v16[layer], k, v, pos)
    else:
        store_kv_f32(b.k32[layer], b.v32[layer], k, v, pos)


@njit_serial
def attend(b, layer, out, q, pos, scale, window):
    """out (T, H, hd) = attention of q over layer `layer`'s cache up to pos + T."""
    probs = b.probs
    if b.k16.shape[1] > 0:
        attend_f16kv_parallel(out, q, b.k16[layer], b.v16[layer], pos, scale, window, probs, F16_TO_F32)
    else:
        attend_f32kv_parallel(out, q, b.k32[layer], b.v32[layer], pos, scale, window, probs)


@njit_serial
def add_(x, y):
    """x += y, (T, d) float32: a residual connection."""
    for t in range(x.shape[0]):
        for i in range(x.shape[1]):
            x[t, i] += y[t, i]


@njit_serial
def scale_(x, s):
    """x *= s, (T, n) float32, rounded as numpy's in-place product."""
    for t in range(x.shape[0]):
        for i in range(x.shape[1]):
            x[t, i] *= s


# ---- what a step reads and writes, packed in Python ----

ProductsRecord = namedtuple("ProductsRecord", "ws bs index sizes codes head head_code")


def kernel_array(a: np.ndarray) -> np.ndarray:
    """A read-only plain view of a weight (numba dispatches np.memmap slowly)."""
    v = a.view(np.ndarray)
    v.flags.writeable = False
    return v


class Products:
    """The matrices of every layer: `ws` a typed list of the weights' raw bytes (not
    copied) and `bs` of their biases (empty: none); `index` (layers, 4, 3) into them by
    slot (QKV, ATTN_OUTPUT, FFN_IN, FFN_OUT; -1: none); `sizes` the rows of each logical
    part of a slot (Q, K, V even when fused); plus the lm_head. `record()` is what a step
    takes, with each matrix's kernel code: the session's `choices` ({format: variant},
    `dispatch.check_choices`) where it made one, else the registry's default now."""

    def __init__(self, layers: list[tuple], output: Linear, choices: dict | None = None):
        self.choices = dict(choices or {})
        self.ws, self.bs = List(), List()
        self.index = np.full((len(layers), 4, MAX_PARTS), -1, np.int64)
        self.sizes = np.zeros((len(layers), 4, MAX_PARTS), np.int64)
        self.formats = np.empty((len(layers), 4, MAX_PARTS), object)
        self.layouts: dict[str, str] = {output.fmt: output.layout}  # format -> its matrices' layout
        self.linears: list[list[list[Linear]]] = []
        no_bias = np.zeros(0, np.float32)
        for i, slots in enumerate(layers):
            self.linears.append([])
            for s, part in enumerate(slots):
                mats = _matrices(part)
                if len(mats) > MAX_PARTS:
                    raise ParameterError(f"slot {s} of layer {i} has {len(mats)} matrices (at most {MAX_PARTS})")
                self.linears[i].append(mats)
                rows = [q.rows for q in part.parts] if isinstance(part, LinearGroup) else [part.rows]
                self.sizes[i, s, : len(rows)] = rows
                for j, lin in enumerate(mats):
                    self.index[i, s, j] = len(self.ws)
                    self.formats[i, s, j] = lin.fmt
                    if self.layouts.setdefault(lin.fmt, lin.layout) != lin.layout:
                        raise ParameterError(f"{lin.name}: {lin.fmt} matrices in two layouts "
                                             f"({self.layouts[lin.fmt] or 'GGUF'}, {lin.layout or 'GGUF'})")
                    self.ws.append(kernel_array(lin.weight.w))
                    self.bs.append(no_bias if lin.bias is None else np.ascontiguousarray(lin.bias, np.float32))
        self.output = output
        self._version, self._record = -1, None
        self._custom: dict[int, object] = {}  # CUSTOM code -> the Python-registered kernel it runs
        self._specialized: dict = {}  # (step, kernels) -> the step recompiled around them

    def choose(self, choices: dict[str, str]) -> None:
        """Run variant choices[fmt] for the products of format fmt (checked by
        `dispatch.check_choices`), the registry's default for the others. A choice that
        cannot read its weights' layout raises here, and changes nothing."""
        for fmt, layout in self.layouts.items():
            matvec_code(fmt, choices.get(fmt), layout)
        self.choices = dict(choices)
        self._version = -1  # codes are remade on the next record()

    def kernel_names(self) -> dict[str, str]:
        """Weight format -> the matvec kernel its products run now (`dispatch.describe`)."""
        fmts = {f for f in self.formats.ravel() if f is not None} | {self.output.fmt}
        return {f: describe(self._code(f)) for f in sorted(fmts)}

    def _code(self, fmt: str) -> int:
        return matvec_code(fmt, self.choices.get(fmt), self.layouts.get(fmt, ""))

    def record(self) -> ProductsRecord:
        """The step's view, kernel codes refreshed whenever the registry changed."""
        if self._version != registry_version():
            for fmt, layout in self.layouts.items():
                name = default_name("matvec", fmt)
                if layout and fmt not in self.choices and name != FORMATS[fmt].choose(cpu_features()):
                    raise ParameterError(f"the registry's default {fmt} kernel is now {name!r}, which reads the "
                                         f"GGUF layout, but this model's {fmt} weights were repacked at load for "
                                         f"{layout}: load it with repack=False to run the registry's kernels")
            codes = np.zeros(self.index.shape, np.int64)
            for at in zip(*np.nonzero(self.index >= 0)):
                codes[at] = self._code(self.formats[at])
            head = self._code(self.output.fmt)
            self._record = ProductsRecord(self.ws, self.bs, self.index, self.sizes, codes,
                                          kernel_array(self.output.weight.w), head)
            self._custom = {int(c): default("matvec", format_of_code(int(c)))
                            for c in {*codes[self.index >= 0].tolist(), head} if c % 64 == CUSTOM}
            self._version = registry_version()
        return self._record

    def specialize(self, step):
        """`step` itself, or, when a format's default kernel was registered from Python, the
        step recompiled (uncached) so that its products call that kernel: the program a
        trace then times is the one that runs."""
        self.record()
        if not self._custom:
            return step
        key = (step, tuple(sorted((c, id(k)) for c, k in self._custom.items())))
        if key not in self._specialized:
            matvec = matvec_with(self._custom)
            lin = njit_uncached(_rebind(linear.py_func, matvec_into=matvec))
            head = njit_uncached(_rebind(lm_head.py_func, matvec_into=matvec))
            self._specialized[key] = njit_uncached(_rebind(step.py_func, linear=lin, lm_head=head))
        return self._specialized[key]


def _rebind(fn, **names):
    """A copy of Python function `fn` whose globals `names` are replaced."""
    return types.FunctionType(fn.__code__, {**fn.__globals__, **names}, fn.__name__, fn.__defaults__, fn.__closure__)


def _matrices(part) -> list[Linear]:
    if isinstance(part, LinearGroup):
        return [part.fused] if part.fused is not None else list(part.parts)
    return [part]


def embedding_code(embedding: Embedding) -> int:
    """The get_rows code of an embedding table: its GGML type."""
    return FORMATS[embedding.fmt].ggml_type


# ---- tracing: the ops a step marks, in order, and the spans made from the marks ----

class OpPlan:
    """The ops of a model's step in the order it marks them. Each op: its name, the
    blocks that enclose it (("embedding",), ("layer[3]", "attn"), ("lm_head",)), its
    layer, and its cost (`nn.costs`: bytes moved, weight_bytes, flops, shape, fmt, weight
    for a forward of T tokens at position pos)."""

    def __init__(self):
        self.ops: list[tuple] = []  # (name, blocks, layer, cost)

    def add(self, name: str, blocks: tuple, layer: int, cost) -> None:
        self.ops.append((name, blocks, layer, cost))

    def linears(self, blocks: tuple, layer: int, products: Products, slot: int) -> None:
        """The products of a slot: one op per matrix (`qkv` fused; `q`, `k`, `v` not)."""
        for lin in products.linears[layer][slot]:
            self.add(lin.op, blocks, layer, costs.linear(lin))

    def __len__(self) -> int:
        return len(self.ops) + 1  # the marks a step takes: one before the first op, one after each

    def spans(self, level: str, marks: np.ndarray, t0: float, T: int, pos: int, cell: int) -> list[tuple]:
        """Child spans of a step that started at t0 (tracer seconds), from its marks:
        blocks at "layer" level, blocks and ops at "op" level (see `Tracer.defer`)."""
        tick = 1.0 / ticks_per_second()
        at = (marks - marks[0]) * tick + t0
        out: list[tuple] = []
        open_blocks: list[tuple] = []  # (name, index in out) of the blocks enclosing the current op
        for j, (name, blocks, layer, cost) in enumerate(self.ops):
            keep = 0
            while keep < len(open_blocks) and keep < len(blocks) and open_blocks[keep][0] == blocks[keep]:
                keep += 1
            del open_blocks[keep:]
            for depth in range(keep, len(blocks)):
                parent = open_blocks[-1][1] if open_blocks else -1
                kind = "layer" if blocks[depth].startswith("layer[") else "block"
                out.append([blocks[depth], kind, layer if depth == 0 and kind == "layer" else -1, parent,
                            at[j], 0.0, {}])
                open_blocks.append((blocks[depth], len(out) - 1))
            for _, i in open_blocks:  # every enclosing block ends where its last op ends
                out[i][5] = at[j + 1] - out[i][4]
            if level == "op":
                parent = open_blocks[-1][1] if open_blocks else -1
                out.append([name, "op", -1, parent, at[j], at[j + 1] - at[j], cost(T, pos, cell)])
        return [tuple(s) for s in out]


NO_MARKS = np.zeros(0, np.int64)  # an untraced step's marks: no clock is read


def run(step, w, plan: OpPlan, ids: np.ndarray, state, tracer) -> np.ndarray:
    """Run a model's compiled `step` on tokens ids (T,) at the session's next positions,
    traced into `tracer` when it asks for layers or ops; the logits (1, vocab) of the last."""
    vocab = state.buffers.logits.shape[1]
    if not (isinstance(ids, np.ndarray) and ids.ndim == 1 and ids.dtype == np.int64 and ids.flags.c_contiguous):
        raise ParameterError(f"token ids must be a 1-D int64 array, got {getattr(ids, 'dtype', type(ids))}")
    if len(ids) and (ids.min() < 0 or ids.max() >= vocab):  # a row past the embedding table: never read it
        raise ParameterError(f"token ids must lie in [0, {vocab}), got {ids.min()}..{ids.max()}")
    T = len(ids)
    pos = state.begin(T)
    traced = tracer.enabled and tracer.level != "step"
    if not traced:
        _call(step, state, ids, pos, w, NO_MARKS)
        state.cache.n_used = pos + T
        return state.buffers.logits
    if state.marks.shape[0] != len(plan):
        state.marks = np.zeros(len(plan), np.int64)
    t0 = tracer.now()
    taken = _call(step, state, ids, pos, w, state.marks)
    state.cache.n_used = pos + T
    if taken != len(plan):  # the step and its plan disagree: a bug, never the user's input
        raise RuntimeError(f"the step took {taken} marks, its op plan has {len(plan)}")
    tracer.meta.setdefault("decode_path", "compiled: one call into numba per forward, ops timed from inside")
    marks, level, cell = state.marks.copy(), tracer.level, state.cache.k.itemsize
    tracer.defer(lambda: plan.spans(level, marks, t0, T, pos, cell))
    return state.buffers.logits


def _call(step, state, ids, pos, w, marks) -> int:
    """step(ids, pos, w, state.buffers, marks) through its compiled entry point once known.
    numba's dispatcher types every argument on every call, and typing the records (a
    Python typeof per array in them) cost ~300 us per forward (measured: SmolLM2, 1
    thread, 3% of a decode step); the entry point of the compiled signature unboxes them
    for ~60. The records' types are fixed per model and session and ids are checked above,
    so the signature found on the first call holds for every later one."""
    args = (ids, pos, w, state.buffers, marks)
    entry = state.entries.get(step)
    if entry is not None:
        return entry(*args)
    taken = step(*args)  # loads (or compiles) and runs it
    overloads = getattr(step, "overloads", {})  # a plain function (a test's wrapper) is called as it is
    compiled = overloads.get(tuple(step.typeof_pyval(a) for a in args)) if overloads else None
    if compiled is not None:
        state.entries[step] = compiled.entry_point
    return taken
