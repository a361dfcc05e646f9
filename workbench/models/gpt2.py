"""GPT-2 decoder (openai-community/gpt2 and its sizes; any HF GPT-2 directory).

Follows llama.cpp's gpt2 graph (src/models/gpt2.cpp), which is HF's GPT2LMHeadModel:
x = token embedding + learned position embedding (no rope). Per layer: LayerNorm ->
c_attn with bias (`attn_qkv`, rows q | k | v: one product, as the file stores it, unless the
quantization rule gives its parts different formats or fusing is off) -> causal multi-head
attention (scale 1/sqrt(head_dim)) over the KV cache (f16 by default) -> c_proj with bias ->
residual; LayerNorm -> c_fc with bias (`ffn_up`) -> tanh GELU ("gelu_new", exact float32
formula, not ggml's half table) -> c_proj with bias (`ffn_down`) -> residual. Then the
final LayerNorm and the lm_head (tied to the token embeddings unless the file has
`output.weight`), for the last position only.

HF stores every GPT-2 projection as a Conv1D, (in, out): `formats.hf` transposes them at
load, so the weights here are (out, in) like every other model's. Positions are limited
to the model's `n_positions` (its context length): `models.build` caps n_ctx to it.

`step` is that forward, compiled: every prompt chunk and every decode token is one call
into it, traced or not (`nn.step`). `plan` lists the ops it marks, in order, for traces.
"""

from __future__ import annotations

import math
from collections import namedtuple
from types import SimpleNamespace

import numpy as np

from workbench.kernels.clock import mark
from workbench.kernels.dispatch import get_rows_into
from workbench.kernels.jit import njit_serial
from workbench.models.config import ModelConfig
from workbench.nn import costs
from workbench.nn.state import DecoderState
from workbench.nn.step import (ATTN_OUTPUT, FFN_IN, FFN_OUT, QKV, OpPlan, Products, add_, attend, embedding_code,
                               gelu_, kernel_array, layernorm, linear, lm_head, run, store_kv_at, views)
from workbench.trace import NULL_TRACER

GPT2Weights = namedtuple("GPT2Weights", "embd embd_fmt pos_embd pos_fmt positions p norms out_norm eps scale "
                                        "n_heads head_dim d_model d_ff")


@njit_serial
def step(ids, pos, w, b, marks):
    """Tokens ids (T,) at positions pos.. through the model; logits of the last in
    b.logits. w: GPT2Weights (norms (layers, 2, 2, d): attn/ffn LayerNorm weight, bias);
    b: `nn.step.Buffers`; marks: cycle counts after each op of `GPT2.plan` (empty:
    untraced). Returns the number of marks taken."""
    T, H, hd, d, d_ff = ids.shape[0], w.n_heads, w.head_dim, w.d_model, w.d_ff
    x, xn, proj, att, q, k, v, hidden, _ = views(b, T, d, H, H, hd, d_ff)  # hidden: c_fc's output
    m = mark(marks, 0)
    get_rows_into(w.embd_fmt, x, w.embd, ids)
    m = mark(marks, m)
    get_rows_into(w.pos_fmt, proj, w.pos_embd, w.positions[pos : pos + T])
    m = mark(marks, m)
    add_(x, proj)
    m = mark(marks, m)
    for i in range(w.norms.shape[0]):
        layernorm(xn, x, w.norms[i, 0, 0], w.norms[i, 0, 1], w.eps)
        m = mark(marks, m)
        m = linear(w.p, QKV, i, b.fused, xn, b, marks, m)
        store_kv_at(b, i, k, v, pos)
        m = mark(marks, m)
        attend(b, i, att.reshape((T, H, hd)), q, pos, w.scale, 0)
        m = mark(marks, m)
        m = linear(w.p, ATTN_OUTPUT, i, b.proj, att, b, marks, m)
        add_(x, proj)
        m = mark(marks, m)
        layernorm(xn, x, w.norms[i, 1, 0], w.norms[i, 1, 1], w.eps)
        m = mark(marks, m)
        m = linear(w.p, FFN_IN, i, b.fused, xn, b, marks, m)
        gelu_(hidden)  # ~8 flops and a tanh per value
        m = mark(marks, m)
        m = linear(w.p, FFN_OUT, i, b.proj, hidden, b, marks, m)
        add_(x, proj)
        m = mark(marks, m)
    layernorm(xn[:1], x[T - 1 :], w.out_norm[0], w.out_norm[1], w.eps)  # the last position only
    m = mark(marks, m)
    lm_head(w.p, b.logits, xn[:1], b)
    return mark(marks, m)


class GPT2:
    def __init__(self, ld, cfg: ModelConfig, n_ctx: int):
        """ld: a `nn.loader.WeightLoader` over the model's tensors (GGUF names)."""
        d, d_ff = cfg.d_model, cfg.d_ff
        assert cfg.n_kv_heads == cfg.n_heads and cfg.n_heads * cfg.head_dim == d  # from_hf guarantees it
        assert n_ctx <= cfg.context_length  # models.build caps it: positions past n_positions have no embedding
        self.config = cfg
        self.n_ctx = n_ctx  # the longest session this instance serves
        self.token_embd = ld.embedding("token_embd.weight", cfg.vocab_size, d)
        self.position_embd = ld.embedding("position_embd.weight", cfg.context_length, d, op="position_embd")

        def norm(name: str) -> np.ndarray:  # (2, d): weight, bias
            return np.stack([ld.vector(name + ".weight", d), ld.vector(name + ".bias", d)]).astype(np.float32)

        def lin(blk: str, name: str, rows: int, cols: int):
            return ld.linear(blk + name + ".weight", rows, cols, name, bias=blk + name + ".bias")

        self.layers = []
        for i in range(cfg.n_layers):
            blk = f"blk.{i}."
            self.layers.append(SimpleNamespace(
                attn_norm=norm(blk + "attn_norm"),
                # c_attn, stored fused: the loader splits it so that the quantization rule sees
                # three d x d projections, as rustml counts them, then fuses them again
                qkv=ld.split(blk + "attn_qkv.weight", [d, d, d], d, "qkv", ["q", "k", "v"], bias=blk + "attn_qkv.bias"),
                attn_output=lin(blk, "attn_output", d, d),  # attn.c_proj
                ffn_norm=norm(blk + "ffn_norm"),
                ffn_up=lin(blk, "ffn_up", d_ff, d),  # mlp.c_fc
                ffn_down=lin(blk, "ffn_down", d, d_ff),  # mlp.c_proj
            ))
        self.output_norm = norm("output_norm")
        if cfg.tied_embeddings:  # GPT-2's lm_head is wte (HF saves no lm_head.weight)
            self.output = ld.tied_head(self.token_embd)
        else:
            self.output = ld.linear("output.weight", cfg.vocab_size, d, "output", lm_head=True)
        self.products = Products([(l.qkv, l.attn_output, l.ffn_up, l.ffn_down) for l in self.layers], self.output)
        self._weights = dict(
            embd=kernel_array(self.token_embd.w), embd_fmt=embedding_code(self.token_embd),
            pos_embd=kernel_array(self.position_embd.w), pos_fmt=embedding_code(self.position_embd),
            positions=np.arange(n_ctx, dtype=np.int64),  # ids of the position embedding rows
            norms=np.stack([[l.attn_norm, l.ffn_norm] for l in self.layers]), out_norm=self.output_norm,
            eps=np.float32(cfg.norm_eps), scale=np.float32(1.0 / math.sqrt(cfg.head_dim)),
            n_heads=cfg.n_heads, head_dim=cfg.head_dim, d_model=d, d_ff=d_ff)
        self.plan = self._plan()

    def weights(self) -> GPT2Weights:
        """What `step` reads, with the kernels the registry names now."""
        return GPT2Weights(p=self.products.record(), **self._weights)

    def _plan(self) -> OpPlan:
        cfg, plan = self.config, OpPlan()
        d, hd, H = cfg.d_model, cfg.head_dim, cfg.n_heads
        plan.add("embedding_lookup", ("embedding",), -1, costs.lookup(self.token_embd, d))
        plan.add("position_embd", ("embedding",), -1, costs.lookup(self.position_embd, d))
        plan.add("position_add", ("embedding",), -1, costs.elementwise(d, 3, 1))
        for i in range(cfg.n_layers):
            attn, ffn = (f"layer[{i}]", "attn"), (f"layer[{i}]", "ffn")
            plan.add("attn_norm", attn, i, costs.norm(d, 8 * d, 7))
            plan.linears(attn, i, self.products, QKV)
            plan.add("kv_cache", attn, i, costs.kv_write(H, hd))
            plan.add("attention", attn, i, costs.attention(H, H, hd, 0))
            plan.linears(attn, i, self.products, ATTN_OUTPUT)
            plan.add("residual", attn, i, costs.elementwise(d, 3, 1))
            plan.add("ffn_norm", ffn, i, costs.norm(d, 8 * d, 7))
            plan.linears(ffn, i, self.products, FFN_IN)
            plan.add("ffn_act", ffn, i, costs.elementwise(cfg.d_ff, 2, 8))
            plan.linears(ffn, i, self.products, FFN_OUT)
            plan.add("residual", ffn, i, costs.elementwise(d, 3, 1))
        plan.add("output_norm", ("output_norm",), -1, costs.norm(d, 8 * d, 7, last=True))
        plan.add("output", ("lm_head",), -1, costs.linear(self.output, last=True))
        return plan

    def new_state(self, n_batch: int = 512, kv_type: str = "f16") -> DecoderState:
        """A session (`nn.state.DecoderState`): n_ctx positions, up to n_batch tokens a forward."""
        return DecoderState(self.config, self.n_ctx, n_batch, kv_type)

    def forward(self, ids: np.ndarray, state: DecoderState, tracer=NULL_TRACER) -> np.ndarray:
        """Run tokens `ids` (T,) at the next free cache positions; logits (vocab,) of the last."""
        return run(self.products.specialize(step), self.weights(), self.plan, ids, state, tracer)[0]
