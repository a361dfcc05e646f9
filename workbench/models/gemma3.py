"""Gemma 3 decoder (270M, 1B, and the text part of the larger ones).

Follows llama.cpp's gemma3 graph (src/models/gemma3.cpp). Embeddings are scaled by
sqrt(d_model). Per layer: RMSNorm -> Q, K, V -> RMSNorm of each query and key head
(QK-norm) -> NEOX rope with the layer's base -> q * attn_scale -> causal GQA attention
(scale 1), over the last `sliding_window` positions on sliding layers and over all of
them on global ones (every 6th layer) -> output projection -> RMSNorm -> residual;
RMSNorm -> gate, up -> GELU(tanh)(gate) * up -> down -> RMSNorm -> residual. Then the
final RMSNorm and the tied lm_head, for the last position only (soft-capped only for a
file without a sliding window, as llama.cpp's non-SWA Gemma 3 graph does).

Every norm is a plain RMSNorm: Gemma computes x * (1 + w), and the GGUF converter
(or our HF loader) already added the 1 to every norm weight. GELU uses ggml's half-precision table, as
llama.cpp on the CPU does, for GGUF files, and the exact formula for HF directories
(transformers' arithmetic; `ModelConfig.gelu_table`). Not here: rope scaling (Gemma 3 4B and larger scale the
global layers' positions) and vision inputs.

`step` is that forward, compiled: every prompt chunk and every decode token is one call
into it, traced or not (`nn.step`). `plan` lists the ops it marks, in order, for traces.
"""

from __future__ import annotations

from collections import namedtuple
from types import SimpleNamespace

import numpy as np

from workbench.errors import UnsupportedError
from workbench.kernels.activations import GELU_TANH_F16_TABLE
from workbench.kernels.clock import mark
from workbench.kernels.dispatch import get_rows_into
from workbench.kernels.jit import njit_serial
from workbench.kernels.rope import rope_tables
from workbench.models.config import ModelConfig
from workbench.nn import costs
from workbench.nn.state import DecoderState
from workbench.nn.step import (ATTN_OUTPUT, FFN_IN, FFN_OUT, QKV, OpPlan, Products, add_, attend, embedding_code,
                               geglu, kernel_array, linear, lm_head, rmsnorm, rope, run, scale_, store_kv_at, views)
from workbench.trace import NULL_TRACER

Gemma3Weights = namedtuple("Gemma3Weights", "embd embd_fmt embed_scale p norms qk_norms out_norm cos sin rope_of "
                                            "windows eps n_rot attn_scale gelu_table table "
                                            "n_heads n_kv_heads head_dim d_model d_ff")


@njit_serial
def step(ids, pos, w, b, marks):
    """Tokens ids (T,) at positions pos.. through the model; logits of the last in
    b.logits. w: Gemma3Weights; b: `nn.step.Buffers`; marks: cycle counts after each op
    of `Gemma3.plan` (empty: untraced). Returns the number of marks taken."""
    T, H, Hkv, hd, d, d_ff = ids.shape[0], w.n_heads, w.n_kv_heads, w.head_dim, w.d_model, w.d_ff
    x, xn, proj, att, q, k, v, gate, up = views(b, T, d, H, Hkv, hd, d_ff)
    q_heads, k_heads = q.reshape((T * H, hd)), k.reshape((T * Hkv, hd))  # rows of the QK-norm
    m = mark(marks, 0)
    get_rows_into(w.embd_fmt, x, w.embd, ids)
    scale_(x, w.embed_scale)  # sqrt(d_model), rounded to float32 as ggml's sqrtf
    m = mark(marks, m)
    for i in range(w.norms.shape[0]):
        r = w.rope_of[i]  # 0: the global layers' rope base, 1: the sliding layers'
        rmsnorm(xn, x, w.norms[i, 0], w.eps)
        m = mark(marks, m)
        m = linear(w.p, QKV, i, b.fused, xn, b, marks, m)
        rmsnorm(q_heads, q_heads, w.qk_norms[i, 0], w.eps)
        m = mark(marks, m)
        rmsnorm(k_heads, k_heads, w.qk_norms[i, 1], w.eps)
        m = mark(marks, m)
        rope(q, pos, w.cos[r], w.sin[r], w.n_rot, True)
        m = mark(marks, m)
        rope(k, pos, w.cos[r], w.sin[r], w.n_rot, True)
        m = mark(marks, m)
        scale_(q_heads, w.attn_scale)  # before q.k, as llama.cpp does; the attention's scale is 1
        m = mark(marks, m)
        store_kv_at(b, i, k, v, pos)
        m = mark(marks, m)
        attend(b, i, att.reshape((T, H, hd)), q, pos, np.float32(1), w.windows[i])
        m = mark(marks, m)
        m = linear(w.p, ATTN_OUTPUT, i, b.proj, att, b, marks, m)
        rmsnorm(proj, proj, w.norms[i, 1], w.eps)
        m = mark(marks, m)
        add_(x, proj)
        m = mark(marks, m)
        rmsnorm(xn, x, w.norms[i, 2], w.eps)
        m = mark(marks, m)
        m = linear(w.p, FFN_IN, i, b.fused, xn, b, marks, m)
        geglu(gate, gate, up, w.table, w.gelu_table)
        m = mark(marks, m)
        m = linear(w.p, FFN_OUT, i, b.proj, gate, b, marks, m)
        rmsnorm(proj, proj, w.norms[i, 3], w.eps)
        m = mark(marks, m)
        add_(x, proj)
        m = mark(marks, m)
    rmsnorm(xn[:1], x[T - 1 :], w.out_norm, w.eps)  # the last position only
    m = mark(marks, m)
    lm_head(w.p, b.logits, xn[:1], b)
    return mark(marks, m)


class Gemma3:
    def __init__(self, ld, cfg: ModelConfig, n_ctx: int):
        """ld: a `nn.loader.WeightLoader` over the model's tensors (GGUF names)."""
        if cfg.rope_freq_scale != 1.0:
            raise UnsupportedError(f"{ld.path}: linear rope scaling (factor {1 / cfg.rope_freq_scale:g}) "
                                   "is not supported yet")
        self.config = cfg
        self.n_ctx = n_ctx  # the longest session this instance serves
        d, hd, H, Hkv = cfg.d_model, cfg.head_dim, cfg.n_heads, cfg.n_kv_heads
        self.token_embd = ld.embedding("token_embd.weight", cfg.vocab_size, d)
        self.layers = []
        for i in range(cfg.n_layers):
            blk = f"blk.{i}."
            sliding = bool(cfg.swa_layers) and cfg.swa_layers[i]
            self.layers.append(SimpleNamespace(
                attn_norm=ld.vector(blk + "attn_norm.weight", d),
                qkv=ld.group([blk + "attn_q.weight", blk + "attn_k.weight", blk + "attn_v.weight"],
                             [H * hd, Hkv * hd, Hkv * hd], d, "qkv", ["q", "k", "v"]),
                q_norm=ld.vector(blk + "attn_q_norm.weight", hd),
                k_norm=ld.vector(blk + "attn_k_norm.weight", hd),
                attn_output=ld.linear(blk + "attn_output.weight", d, H * hd, "attn_output"),
                post_attention_norm=ld.vector(blk + "post_attention_norm.weight", d),
                ffn_norm=ld.vector(blk + "ffn_norm.weight", d),
                ffn_gate_up=ld.group([blk + "ffn_gate.weight", blk + "ffn_up.weight"], [cfg.d_ff, cfg.d_ff], d,
                                     "ffn_gate_up", ["ffn_gate", "ffn_up"]),
                ffn_down=ld.linear(blk + "ffn_down.weight", d, cfg.d_ff, "ffn_down"),
                post_ffw_norm=ld.vector(blk + "post_ffw_norm.weight", d),
                window=cfg.sliding_window if sliding else 0,  # 0: attend to every position
                sliding=sliding,
            ))
        self.output_norm = ld.vector("output_norm.weight", d)
        if cfg.tied_embeddings:  # Gemma ships no output.weight: token_embd is the lm_head
            self.output = ld.tied_head(self.token_embd)
        else:
            self.output = ld.linear("output.weight", cfg.vocab_size, d, "output", lm_head=True)
        self.products = Products([(l.qkv, l.attn_output, l.ffn_gate_up, l.ffn_down) for l in self.layers],
                                 self.output)
        # global layers use the file's rope base (1e6), sliding ones llama.cpp's 10000
        tables = [rope_tables(n_ctx, cfg.rope_dims, base) for base in (cfg.rope_base, cfg.rope_base_local)]
        self._weights = dict(
            embd=kernel_array(self.token_embd.w), embd_fmt=embedding_code(self.token_embd),
            embed_scale=np.float32(cfg.embed_scale),
            norms=np.stack([[l.attn_norm, l.post_attention_norm, l.ffn_norm, l.post_ffw_norm] for l in self.layers]),
            qk_norms=np.stack([[l.q_norm, l.k_norm] for l in self.layers]), out_norm=self.output_norm,
            cos=np.stack([c for c, _ in tables]), sin=np.stack([s for _, s in tables]),
            rope_of=np.array([int(l.sliding) for l in self.layers], np.int64),
            windows=np.array([l.window for l in self.layers], np.int64),
            eps=np.float32(cfg.norm_eps), n_rot=cfg.rope_dims, attn_scale=np.float32(cfg.attn_scale),
            gelu_table=cfg.gelu_table, table=GELU_TANH_F16_TABLE,
            n_heads=H, n_kv_heads=Hkv, head_dim=hd, d_model=d, d_ff=cfg.d_ff)
        self.plan = self._plan()

    def weights(self) -> Gemma3Weights:
        """What `step` reads, with the kernels the registry names now."""
        return Gemma3Weights(p=self.products.record(), **self._weights)

    def _plan(self) -> OpPlan:
        cfg, plan = self.config, OpPlan()
        d, hd, H, Hkv = cfg.d_model, cfg.head_dim, cfg.n_heads, cfg.n_kv_heads
        plan.add("embedding_lookup", ("embedding",), -1, costs.lookup(self.token_embd, d))
        for i, layer in enumerate(self.layers):
            attn, ffn = (f"layer[{i}]", "attn"), (f"layer[{i}]", "ffn")
            plan.add("attn_norm", attn, i, costs.norm(d, 4 * d, 4))
            plan.linears(attn, i, self.products, QKV)
            plan.add("q_norm", attn, i, costs.norm(hd, 4 * hd, 4, rows=H))
            plan.add("k_norm", attn, i, costs.norm(hd, 4 * hd, 4, rows=Hkv))
            plan.add("rope_q", attn, i, costs.rope(H, hd, cfg.rope_dims))
            plan.add("rope_k", attn, i, costs.rope(Hkv, hd, cfg.rope_dims))
            plan.add("q_scale", attn, i, costs.elementwise(H * hd, 2, 1))
            plan.add("kv_cache", attn, i, costs.kv_write(Hkv, hd))
            plan.add("attention", attn, i, costs.attention(H, Hkv, hd, layer.window))
            plan.linears(attn, i, self.products, ATTN_OUTPUT)
            plan.add("post_attention_norm", attn, i, costs.norm(d, 4 * d, 4))
            plan.add("residual", attn, i, costs.elementwise(d, 3, 1))
            plan.add("ffn_norm", ffn, i, costs.norm(d, 4 * d, 4))
            plan.linears(ffn, i, self.products, FFN_IN)
            plan.add("ffn_act", ffn, i, costs.elementwise(cfg.d_ff, 3, 2))  # a table lookup and a product
            plan.linears(ffn, i, self.products, FFN_OUT)
            plan.add("post_ffw_norm", ffn, i, costs.norm(d, 4 * d, 4))
            plan.add("residual", ffn, i, costs.elementwise(d, 3, 1))
        plan.add("output_norm", ("output_norm",), -1, costs.norm(d, 4 * d, 4, last=True))
        plan.add("output", ("lm_head",), -1, costs.linear(self.output, last=True))
        return plan

    def new_state(self, n_batch: int = 512, kv_type: str = "f16") -> DecoderState:
        """A session (`nn.state.DecoderState`): n_ctx positions, up to n_batch tokens a forward."""
        return DecoderState(self.config, self.n_ctx, n_batch, kv_type)

    def forward(self, ids: np.ndarray, state: DecoderState, tracer=NULL_TRACER) -> np.ndarray:
        """Run tokens `ids` (T,) at the next free cache positions; logits (vocab,) of the last."""
        logits = run(self.products.specialize(step), self.weights(), self.plan, ids, state, tracer)
        cap = self.config.final_logit_softcap
        if cap > 0:  # only llama.cpp's graph for Gemma 3 without sliding layers
            logits *= np.float32(1.0 / cap)
            np.tanh(logits, out=logits)
            logits *= np.float32(cap)
        return logits[0]
