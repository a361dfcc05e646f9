"""Llama-family decoder (Llama 2/3, TinyLlama, SmolLM2, Mistral-style GQA).

Per layer: RMSNorm -> Q, K, V -> rope (GGUF's adjacent-pair order: the GGUF
converter, or our HF loader, permuted HF's Q/K rows for it) -> causal GQA attention
over the KV cache (f16 by default) -> output projection -> residual; RMSNorm -> gate,
up -> SwiGLU -> down -> residual. Then the final RMSNorm and the lm_head (the token
embeddings when the file has no `output.weight`), for the last position only.

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
from workbench.kernels.rope import rope_tables
from workbench.models.config import ModelConfig
from workbench.nn import costs
from workbench.nn.state import DecoderState
from workbench.nn.step import (ATTN_OUTPUT, FFN_IN, FFN_OUT, QKV, OpPlan, Products, add_, attend, embedding_code,
                               kernel_array, linear, lm_head, rmsnorm, rope, run, store_kv_at, swiglu, views)
from workbench.trace import NULL_TRACER

LlamaWeights = namedtuple("LlamaWeights", "embd embd_fmt p norms out_norm cos sin eps n_rot scale "
                                          "n_heads n_kv_heads head_dim d_model d_ff")


@njit_serial
def step(ids, pos, w, b, marks):
    """Tokens ids (T,) at positions pos.. through the model; logits of the last in
    b.logits. w: LlamaWeights; b: `nn.step.Buffers`; marks: cycle counts after each op
    of `Llama.plan` (empty: untraced). Returns the number of marks taken."""
    T, H, Hkv, hd, d, d_ff = ids.shape[0], w.n_heads, w.n_kv_heads, w.head_dim, w.d_model, w.d_ff
    x, xn, proj, att, q, k, v, gate, up = views(b, T, d, H, Hkv, hd, d_ff)
    m = mark(marks, 0)
    get_rows_into(w.embd_fmt, x, w.embd, ids)
    m = mark(marks, m)
    for i in range(w.norms.shape[0]):
        rmsnorm(xn, x, w.norms[i, 0], w.eps)
        m = mark(marks, m)
        m = linear(w.p, QKV, i, b.fused, xn, b, marks, m)
        rope(q, pos, w.cos, w.sin, w.n_rot, False)
        m = mark(marks, m)
        rope(k, pos, w.cos, w.sin, w.n_rot, False)
        m = mark(marks, m)
        store_kv_at(b, i, k, v, pos)
        m = mark(marks, m)
        attend(b, i, att.reshape((T, H, hd)), q, pos, w.scale, 0)
        m = mark(marks, m)
        m = linear(w.p, ATTN_OUTPUT, i, b.proj, att, b, marks, m)
        add_(x, proj)
        m = mark(marks, m)
        rmsnorm(xn, x, w.norms[i, 1], w.eps)
        m = mark(marks, m)
        m = linear(w.p, FFN_IN, i, b.fused, xn, b, marks, m)
        swiglu(gate, gate, up)
        m = mark(marks, m)
        m = linear(w.p, FFN_OUT, i, b.proj, gate, b, marks, m)
        add_(x, proj)
        m = mark(marks, m)
    rmsnorm(xn[:1], x[T - 1 :], w.out_norm, w.eps)  # the last position only
    m = mark(marks, m)
    lm_head(w.p, b.logits, xn[:1], b)
    return mark(marks, m)


class Llama:
    def __init__(self, ld, cfg: ModelConfig, n_ctx: int):
        """ld: a `nn.loader.WeightLoader` over the model's tensors (GGUF names)."""
        self.config = cfg
        self.n_ctx = n_ctx  # the longest session this instance serves
        d, hd, H, Hkv = cfg.d_model, cfg.head_dim, cfg.n_heads, cfg.n_kv_heads
        self.token_embd = ld.embedding("token_embd.weight", cfg.vocab_size, d)
        self.layers = []
        for i in range(cfg.n_layers):
            blk = f"blk.{i}."
            self.layers.append(SimpleNamespace(
                attn_norm=ld.vector(blk + "attn_norm.weight", d),
                qkv=ld.group([blk + "attn_q.weight", blk + "attn_k.weight", blk + "attn_v.weight"],
                                [H * hd, Hkv * hd, Hkv * hd], d, "qkv", ["q", "k", "v"]),
                attn_output=ld.linear(blk + "attn_output.weight", d, H * hd, "attn_output"),
                ffn_norm=ld.vector(blk + "ffn_norm.weight", d),
                ffn_gate_up=ld.group([blk + "ffn_gate.weight", blk + "ffn_up.weight"], [cfg.d_ff, cfg.d_ff], d,
                                        "ffn_gate_up", ["ffn_gate", "ffn_up"]),
                ffn_down=ld.linear(blk + "ffn_down.weight", d, cfg.d_ff, "ffn_down"),
            ))
        self.output_norm = ld.vector("output_norm.weight", d)
        if cfg.tied_embeddings:  # SmolLM2 and others reuse token_embd as lm_head
            self.output = ld.tied_head(self.token_embd)
        else:
            self.output = ld.linear("output.weight", cfg.vocab_size, d, "output", lm_head=True)
        self.products = Products([(l.qkv, l.attn_output, l.ffn_gate_up, l.ffn_down) for l in self.layers],
                                 self.output)
        cos, sin = rope_tables(n_ctx, cfg.rope_dims, cfg.rope_base)
        self._weights = dict(
            embd=kernel_array(self.token_embd.w), embd_fmt=embedding_code(self.token_embd),
            norms=np.stack([[l.attn_norm, l.ffn_norm] for l in self.layers]), out_norm=self.output_norm,
            cos=cos, sin=sin, eps=np.float32(cfg.norm_eps), n_rot=cfg.rope_dims,
            scale=np.float32(1.0 / math.sqrt(hd)), n_heads=H, n_kv_heads=Hkv, head_dim=hd, d_model=d, d_ff=cfg.d_ff)
        self.plan = self._plan()

    def weights(self) -> LlamaWeights:
        """What `step` reads, with the kernels the registry names now."""
        return LlamaWeights(p=self.products.record(), **self._weights)

    def _plan(self) -> OpPlan:
        cfg, plan = self.config, OpPlan()
        d, hd, H, Hkv = cfg.d_model, cfg.head_dim, cfg.n_heads, cfg.n_kv_heads
        plan.add("embedding_lookup", ("embedding",), -1, costs.lookup(self.token_embd, d))
        for i in range(cfg.n_layers):
            attn, ffn = (f"layer[{i}]", "attn"), (f"layer[{i}]", "ffn")
            plan.add("attn_norm", attn, i, costs.norm(d, 4 * d, 4))
            plan.linears(attn, i, self.products, QKV)
            plan.add("rope_q", attn, i, costs.rope(H, hd, cfg.rope_dims))
            plan.add("rope_k", attn, i, costs.rope(Hkv, hd, cfg.rope_dims))
            plan.add("kv_cache", attn, i, costs.kv_write(Hkv, hd))
            plan.add("attention", attn, i, costs.attention(H, Hkv, hd, 0))
            plan.linears(attn, i, self.products, ATTN_OUTPUT)
            plan.add("residual", attn, i, costs.elementwise(d, 3, 1))
            plan.add("ffn_norm", ffn, i, costs.norm(d, 4 * d, 4))
            plan.linears(ffn, i, self.products, FFN_IN)
            plan.add("ffn_act", ffn, i, costs.elementwise(cfg.d_ff, 3, 6))
            plan.linears(ffn, i, self.products, FFN_OUT)
            plan.add("residual", ffn, i, costs.elementwise(d, 3, 1))
        plan.add("output_norm", ("output_norm",), -1, costs.norm(d, 4 * d, 4, last=True))
        plan.add("output", ("lm_head",), -1, costs.linear(self.output, last=True))
        return plan

    def new_state(self, n_batch: int = 512, kv_type: str = "f16") -> DecoderState:
        """A session (`nn.state.DecoderState`): n_ctx positions, up to n_batch tokens a forward."""
        return DecoderState(self.config, self.n_ctx, n_batch, kv_type)

    def forward(self, ids: np.ndarray, state: DecoderState, tracer=NULL_TRACER) -> np.ndarray:
        """Run tokens `ids` (T,) at the next free cache positions; logits (vocab,) of the last."""
        return run(self.products.specialize(step), self.weights(), self.plan, ids, state, tracer)[0]
