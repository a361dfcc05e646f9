"""Builds a model's layers from a weight source under the load options, and says what it did.

Models ask a `WeightLoader` for `linear`, `group` (Q/K/V, gate+up), `embedding`,
`tied_head` and `vector` by GGUF tensor name; the loader applies the quantization rule
fusion and repacking (`WeightOptions`) once here, so model code never sees a format. What
it did is counted in a `LoadReport`, whose lines read like rustml's
(`Quantized 73 linear layers F32 -> Q8_0`, `Fused 12 QKV projection triples`, ...).
Repacking comes last, on the matrices a step multiplies (a fused one, not its parts).
Quantizing a float model takes seconds: a tqdm bar shows it (hidden when not a tty).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from workbench.errors import FormatError, UnsupportedError
from workbench.formats.weights import Tensor
from workbench.nn.linear import Embedding, Linear, LinearGroup
from workbench.nn.options import WeightOptions
from workbench.quant.finite import nonfinite_count
from workbench.kernels.isa.x86 import cpu_features
from workbench.kernels.registry import default_name
from workbench.kernels.table import FORMATS, WEIGHT_FORMATS
from workbench.quant.reference import dequantize_ref, quantize_ref

_FLOATS = ("f32", "f16", "bf16")


@dataclass
class LoadReport:
    """What the load did to the weights; `lines()` for people, the fields for tests."""

    quantized: Counter = field(default_factory=Counter)  # (from fmt, to fmt) -> linear layers
    kept_float: int = 0  # float linear layers left float by the rule
    not_quantizable: list = field(default_factory=list)  # rows not a whole number of blocks
    fused_qkv: int = 0
    fused_gate_up: int = 0
    repacked: Counter = field(default_factory=Counter)  # (fmt, layout variant) -> linear layers
    repack_seconds: float = 0.0  # time spent repacking (a 4 GB float model: seconds)
    weight_bytes: int = 0  # bytes of the prepared weights the kernels read
    kv_cache_bytes: int = 0  # filled in by the session that allocates it
    kv_type: str = "f16"  # the session's KV cache type ("f16" or "f32")
    kernels: dict = field(default_factory=dict)  # weight format -> the matvec variant its products run
    warm_up_seconds: float = 0.0  # the load's first prefill and decode step (filled in by the session)
    compiled: str = ""  # where code was compiled into when the warm-up had to compile, else ""

    @property
    def n_quantized(self) -> int:
        return sum(self.quantized.values())

    def lines(self) -> list[str]:
        out = [f"Quantized {n} linear layers {a.upper()} -> {b.upper()}" for (a, b), n in sorted(self.quantized.items())]
        if not self.quantized:
            out.append("Quantized 0 linear layers")
        if self.not_quantizable:
            out.append(f"Kept {len(self.not_quantizable)} linear layers unquantized: rows not a multiple of "
                       f"the block size ({', '.join(self.not_quantizable[:3])}{', ...' if len(self.not_quantizable) > 3 else ''})")
        out.append(f"Fused {self.fused_qkv} QKV projection triples")
        out.append(f"Fused {self.fused_gate_up} gate+up projection pairs")
        out += [f"Repacked {n} linear layers {fmt.upper()} for {layout} (same values, the layout its kernel streams)"
                for (fmt, layout), n in sorted(self.repacked.items())]
        if self.repacked:
            out.append(f"Repacking took {self.repack_seconds:.1f} s")
        out.append(f"Weights {self.weight_bytes / 2**20:.1f} MiB")
        if self.kv_cache_bytes:
            out.append(f"KV cache {self.kv_cache_bytes / 2**20:.1f} MiB ({self.kv_type})")
        if self.kernels:
            out.append("Kernels: " + ", ".join(f"{fmt} {name}" for fmt, name in sorted(self.kernels.items())))
        if self.compiled:
            out.append(f"Compiled for this CPU in {self.warm_up_seconds:.1f} s (first run; cached in {self.compiled})")
        return out


class WeightLoader:
    """A weight source plus the options that decide each linear's final format."""

    def __init__(self, src, options: WeightOptions | None = None, kernels: dict | None = None):
        self.src = src
        self.options = options or WeightOptions()
        self.kernels = dict(kernels or {})  # the session's checked {format: variant} choices
        self.report = LoadReport()
        self._bar = None
        if self.options.quant_threshold is not None or self.options.quantize_lm_head or self.options.requantize:
            self._bar = tqdm(total=src.nbytes, unit="B", unit_scale=True, desc="quantizing", leave=False)

    @property
    def path(self):
        return self.src.path

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def _matrix(self, name: str, rows: int, cols: int) -> Tensor:
        t = self.src.matrix(name, rows, cols)
        if t.fmt not in WEIGHT_FORMATS:
            raise UnsupportedError(f"{t.source}: tensor {name!r} is {t.fmt.upper()}, which workbench does not "
                                   f"support; supported: {', '.join(f.upper() for f in WEIGHT_FORMATS)}")
        # one pass over the bytes (~0.5 ms per MB): a NaN weight would only show up as
        # garbage tokens much later, so it is refused here, by name
        bad = nonfinite_count(t.data, t.fmt)
        if bad:
            what = "values" if t.fmt in _FLOATS else "blocks with a NaN/Inf scale"
            raise FormatError(f"{t.source}: tensor {name!r} has {bad} non-finite {what}")
        return t

    def vector(self, name: str, n: int) -> np.ndarray:
        v = self.src.vector(name, n)
        if not np.isfinite(v).all():
            raise FormatError(f"{self.path}: tensor {name!r} has {int((~np.isfinite(v)).sum())} non-finite values")
        return v

    def _prepare(self, t: Tensor, lm_head: bool = False) -> tuple[np.ndarray, str]:
        """The bytes and format a linear weight runs in, after the quantization rule."""
        rows, cols = t.shape
        opts = self.options
        float_weight = t.fmt in _FLOATS
        if not (float_weight or opts.requantize) or not opts.quantizes(rows, cols, lm_head):
            if float_weight:
                self.report.kept_float += 1
            self.report.weight_bytes += t.data.nbytes
            return t.data, t.fmt
        target = FORMATS[opts.quant_type]
        if t.fmt == target.name:  # already in the target format: nothing to redo
            self.report.weight_bytes += t.data.nbytes
            return t.data, t.fmt
        if cols % target.block_size:  # no whole blocks: the layer stays as it is, and says so
            self.report.not_quantizable.append(t.name)
            self.report.weight_bytes += t.data.nbytes
            return t.data, t.fmt
        values = t.f32() if float_weight else dequantize_ref(t.fmt, t.data)
        data = quantize_ref(target.name, np.ascontiguousarray(values, dtype=np.float32))
        data.flags.writeable = False
        if self._bar is not None:
            self._bar.update(t.data.nbytes)
        self.report.quantized[(t.fmt, target.name)] += 1
        self.report.weight_bytes += data.nbytes
        return data, target.name

    def linear(self, name: str, rows: int, cols: int, op: str, bias: str | None = None,
               lm_head: bool = False) -> Linear:
        """Weight `name` (rows outputs of cols inputs), with the optional bias vector `bias`."""
        return self._repacked(self._linear(name, rows, cols, op, bias, lm_head))

    def _linear(self, name, rows, cols, op, bias=None, lm_head=False) -> Linear:
        data, fmt = self._prepare(self._matrix(name, rows, cols), lm_head)
        b = self.src.vector(bias, rows) if bias is not None else None
        return Linear(name, fmt, data, rows, cols, op, b)

    def _layout(self, fmt: str) -> str:
        """The repacking variant `fmt`'s products run in this session, or "" (GGUF bytes):
        the session's choice if it made one, else the CPU's (`WeightFormat.layout_for`)
        while the registry's default is still the built-in one."""
        f = FORMATS[fmt]
        choice = self.kernels.get(fmt)
        if choice is not None:
            v = f.variants[f.variant_index(choice.removesuffix("_serial"))]
            return v.name if v.repack is not None else ""
        if not self.options.repack or default_name("matvec", fmt) != f.choose(cpu_features()):
            return ""
        v = f.layout_for(cpu_features())
        return v.name if v is not None else ""

    def _repacked(self, lin: Linear) -> Linear:
        layout = self._layout(lin.fmt)
        if not layout:
            return lin
        f = FORMATS[lin.fmt]
        t0 = time.perf_counter()
        data = f.variants[f.variant_index(layout)].repack(lin.w)
        self.report.repack_seconds += time.perf_counter() - t0
        data.flags.writeable = False
        self.report.repacked[(lin.fmt, layout)] += 1
        return Linear(lin.name, lin.fmt, data, lin.rows, lin.cols, lin.op, lin.bias, layout)

    def group(self, names: list[str], rows: list[int], cols: int, op: str, part_ops: list[str]) -> LinearGroup:
        """Linears on the same input, fused into one matrix (traced as `op`) when the
        options allow and their formats agree: Q/K/V ("qkv"), gate+up ("ffn_gate_up")."""
        parts = [self._linear(n, r, cols, o) for n, r, o in zip(names, rows, part_ops)]
        return self._fuse(parts, op)

    def split(self, name: str, rows: list[int], cols: int, op: str, part_ops: list[str],
              bias: str | None = None) -> LinearGroup:
        """A matrix the file stores fused (GPT-2's c_attn: Q, K, V rows stacked) as its
        parts: the quantization rule sees each part's own shape, as it would unfused
        (so GPT-2's 768 x 768 projections stay float at threshold 1024), and the parts
        are fused again under the same conditions as `group` (biases, if every part has
        one, are fused with them)."""
        t = self._matrix(name, sum(rows), cols)
        b = self.src.vector(bias, sum(rows)) if bias is not None else None
        edges = np.cumsum([0] + rows).tolist()
        parts = []
        for (a, z), part_op in zip(zip(edges, edges[1:]), part_ops):
            piece = Tensor(f"{name}[{part_op}]", t.fmt, (z - a, cols), t.data[a:z], t.source)
            data, fmt = self._prepare(piece)
            parts.append(Linear(piece.name, fmt, np.ascontiguousarray(data), z - a, cols, part_op,
                                None if b is None else b[a:z]))
        return self._fuse(parts, op)

    def _fuse(self, parts: list[Linear], op: str) -> LinearGroup:
        biased = {p.bias is not None for p in parts}
        if not self.options.fuse or len({p.fmt for p in parts}) != 1 or len(biased) != 1:
            return LinearGroup([self._repacked(p) for p in parts], None)
        name = "+".join(p.name for p in parts)
        bias = np.concatenate([p.bias for p in parts]) if biased == {True} else None  # GPT-2's c_attn
        if bias is not None:
            bias.flags.writeable = False  # as every bias the file gives (one array type for the step)
        fused = self._repacked(Linear(name, parts[0].fmt, np.concatenate([p.w for p in parts]),
                                      sum(p.rows for p in parts), parts[0].cols, op, bias))
        if op == "qkv":
            self.report.fused_qkv += 1
        else:
            self.report.fused_gate_up += 1
        return LinearGroup(parts, fused)

    def embedding(self, name: str, vocab: int, dim: int, op: str = "embedding_lookup") -> Embedding:
        t = self._matrix(name, vocab, dim)
        self.report.weight_bytes += t.data.nbytes
        return Embedding(name, t.fmt, t.data, vocab, dim, op)

    def tied_head(self, embedding: Embedding) -> Linear:
        """The lm_head of tied embeddings: the same tensor, prepared as a linear layer
        (sharing the embedding's bytes unless the rule quantizes it)."""
        t = Tensor(embedding.name, embedding.fmt, (embedding.vocab, embedding.dim), embedding.w, str(self.path))
        data, fmt = self._prepare(t, lm_head=True)
        head = self._repacked(Linear(embedding.name, fmt, data, embedding.vocab, embedding.dim, "output"))
        if head.w is embedding.w:
            self.report.weight_bytes -= data.nbytes  # counted once, with the embedding
        return head
