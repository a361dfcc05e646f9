"""Llama-family decoder (Llama 2/3, TinyLlama, SmolLM2, Mistral-style GQA).

Per layer: RMSNorm -> Q, K, V -> rope (GGUF's adjacent-pair order: the GGUF
converter, or our HF loader, permuted HF's Q/K rows for it) -> causal GQA attention
over the KV cache (f16 by default) -> output projection -> residual; RMSNorm -> gate,
up -> SwiGLU -> down -> residual. Then the final RMSNorm and the lm_head (the token
embeddings when the file has no `output.weight`), for the last position only.

`decode_step` is the same forward for one token as one compiled function (see
`nn.compiled`): what an untraced decode step runs, bit for bit equal to `forward`.
"""

from __future__ import annotations

import math

import numpy as np

from workbench.kernels.activations import swiglu_f32, swiglu_f32_parallel
from workbench.kernels.dispatch import get_rows_into, matvec_into
from workbench.kernels.half import F16_TO_F32
from workbench.kernels.jit import njit_serial
from workbench.kernels.norms import rmsnorm_f32
from workbench.kernels.rope import rope_f32
from workbench.models.config import ModelConfig
from workbench.nn.attention import Rope, attend
from workbench.nn.compiled import (ATTN_OUTPUT, DOWN, GATE_UP, QKV, Products, add_, attention_kernel, buffers,
                                   products, use_compiled)
from workbench.nn.elementwise import gated_act, residual_add
from workbench.nn.norms import RMSNorm
from workbench.nn.state import DecoderState
from workbench.trace import NULL_TRACER


class LlamaLayer:
    __slots__ = ("attn_norm", "qkv", "attn_output", "ffn_norm", "ffn_gate_up", "ffn_down")

    def __init__(self, ld, cfg: ModelConfig, i: int):
        d, hd = cfg.d_model, cfg.head_dim
        blk = f"blk.{i}."
        self.attn_norm = RMSNorm(ld.vector(blk + "attn_norm.weight", d), cfg.norm_eps, "attn_norm")
        self.qkv = ld.group([blk + "attn_q.weight", blk + "attn_k.weight", blk + "attn_v.weight"],
                            [cfg.n_heads * hd, cfg.n_kv_heads * hd, cfg.n_kv_heads * hd], d, "qkv", ["q", "k", "v"])
        self.attn_output = ld.linear(blk + "attn_output.weight", d, cfg.n_heads * hd, "attn_output")
        self.ffn_norm = RMSNorm(ld.vector(blk + "ffn_norm.weight", d), cfg.norm_eps, "ffn_norm")
        self.ffn_gate_up = ld.group([blk + "ffn_gate.weight", blk + "ffn_up.weight"], [cfg.d_ff, cfg.d_ff], d,
                                    "ffn_gate_up", ["ffn_gate", "ffn_up"])
        self.ffn_down = ld.linear(blk + "ffn_down.weight", d, cfg.d_ff, "ffn_down")


class Llama:
    def __init__(self, ld, cfg: ModelConfig, n_ctx: int):
        """ld: a `nn.loader.WeightLoader` over the model's tensors (GGUF names)."""
        self.config = cfg
        self.n_ctx = n_ctx  # the longest session this instance serves
        self.token_embd = ld.embedding("token_embd.weight", cfg.vocab_size, cfg.d_model)
        self.layers = [LlamaLayer(ld, cfg, i) for i in range(cfg.n_layers)]
        self.output_norm = RMSNorm(ld.vector("output_norm.weight", cfg.d_model), cfg.norm_eps, "output_norm")
        if cfg.tied_embeddings:  # SmolLM2 and others reuse token_embd as lm_head
            self.output = ld.tied_head(self.token_embd)
        else:
            self.output = ld.linear("output.weight", cfg.vocab_size, cfg.d_model, "output", lm_head=True)
        self.rope = Rope(n_ctx, cfg.rope_dims, cfg.rope_base, neox=False)
        self.scale = 1.0 / math.sqrt(cfg.head_dim)
        self.layer_names = [f"layer[{i}]" for i in range(cfg.n_layers)]  # span names, made once
        # for decode_step: the matrices by slot, the norms as (layers, 2, d)
        self.products = Products.pack([(l.qkv, l.attn_output, l.ffn_gate_up, l.ffn_down) for l in self.layers],
                                      self.token_embd, self.output)
        self.norms = np.stack([[l.attn_norm.w, l.ffn_norm.w] for l in self.layers])

    def new_state(self, n_batch: int = 512, kv_type: str = "f16") -> DecoderState:
        """A session of n_ctx positions taking up to `n_batch` tokens per forward (512,
        llama.cpp's default batch, so a long prompt splits where it splits there); the KV
        cache holds `kv_type` "f16" (llama.cpp's default) or "f32" (see KVCache)."""
        return DecoderState(self.config, self.n_ctx, n_batch, kv_type)

    def forward(self, ids: np.ndarray, state: DecoderState, tracer=NULL_TRACER) -> np.ndarray:
        """Run tokens `ids` (T,) at the next free cache positions; logits (vocab,) of the last."""
        cfg, cache = self.config, state.cache
        T = len(ids)
        pos0 = state.begin(T)
        H, Hkv, hd = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        if use_compiled(self.products, T, tracer):
            p = self.products
            decode_step(ids, pos0, attention_kernel(cache), p.embd, p.embd_code, p.ws, p.index, p.codes, self.norms,
                        self.output_norm.w, p.head, p.head_code, np.float32(cfg.norm_eps), self.rope.cos,
                        self.rope.sin, cfg.rope_dims, np.float32(self.scale), H, Hkv, hd, cfg.d_ff, cache.k, cache.v,
                        buffers(state))
            cache.n_used = pos0 + T
            return state.logits[0]

        x, xn, proj = state.x[:T], state.xn[:T], state.proj[:T]
        q, k, v, att = state.q[:T], state.k[:T], state.v[:T], state.att[:T]
        gate, up = state.gate[:T], state.up[:T]
        q3, k3, v3 = q.reshape(T, H, hd), k.reshape(T, Hkv, hd), v.reshape(T, Hkv, hd)
        att3 = att.reshape(T, H, hd)
        swiglu = swiglu_f32 if T == 1 else swiglu_f32_parallel

        with tracer.span("embedding"):
            self.token_embd(x, ids, tracer)
        for i, layer in enumerate(self.layers):
            with tracer.span(self.layer_names[i], kind="layer", layer=i):
                with tracer.span("attn"):
                    layer.attn_norm(xn, x, tracer)
                    layer.qkv((q, k, v), xn, state.fused, tracer)
                    self.rope(q3, pos0, tracer, "rope_q")
                    self.rope(k3, pos0, tracer, "rope_k")
                    attend(att3, q3, k3, v3, cache.k[i], cache.v[i], pos0, self.scale, 0, state.probs, tracer)
                    layer.attn_output(proj, att, tracer)
                    residual_add(x, proj, tracer)
                with tracer.span("ffn"):
                    layer.ffn_norm(xn, x, tracer)
                    layer.ffn_gate_up((gate, up), xn, state.fused, tracer)
                    gated_act(swiglu, gate, gate, up, 6, tracer)
                    layer.ffn_down(proj, gate, tracer)
                    residual_add(x, proj, tracer)
        cache.n_used = pos0 + T
        last = xn[:1]
        with tracer.span("output_norm"):
            self.output_norm(last, x[T - 1 : T], tracer)
        with tracer.span("lm_head"):
            self.output(state.logits, last, tracer)
        return state.logits[0]


@njit_serial
def decode_step(ids, pos, attend, embd, embd_code, ws, index, codes, norms, out_norm, head, head_code, eps,
                cos, sin, n_rot, scale, H, Hkv, hd, d_ff, k_cache, v_cache, bufs):
    """`Llama.forward` of one token ids (1,) at position pos, in one call: the same kernels
    in the same order. Matrices from `nn.compiled.Products`; norms (layers, 2, d) =
    attn_norm, ffn_norm; bufs from `nn.compiled.buffers`; logits land in its logits."""
    x, xn, proj, att, fused, probs, logits, i8, i32, f32 = bufs
    q = fused[: H * hd].reshape((1, H, hd))
    k = fused[H * hd : (H + Hkv) * hd].reshape((1, Hkv, hd))
    v = fused[(H + Hkv) * hd : (H + 2 * Hkv) * hd].reshape((1, Hkv, hd))
    gate, up = fused[:d_ff].reshape((1, d_ff)), fused[d_ff : 2 * d_ff].reshape((1, d_ff))
    get_rows_into(embd_code, x, embd, ids)
    for i in range(index.shape[0]):
        rmsnorm_f32(xn, x, norms[i, 0], eps)
        products(ws, index[i, QKV], codes[i, QKV], fused, xn, i8, i32, f32)
        rope_f32(q, pos, cos, sin, n_rot, False)
        rope_f32(k, pos, cos, sin, n_rot, False)
        attend(att.reshape((1, H, hd)), q, k, v, k_cache[i], v_cache[i], pos, scale, 0, probs, F16_TO_F32)
        products(ws, index[i, ATTN_OUTPUT], codes[i, ATTN_OUTPUT], proj[0], att, i8, i32, f32)
        add_(x[0], proj[0])
        rmsnorm_f32(xn, x, norms[i, 1], eps)
        products(ws, index[i, GATE_UP], codes[i, GATE_UP], fused, xn, i8, i32, f32)
        swiglu_f32(gate, gate, up)
        products(ws, index[i, DOWN], codes[i, DOWN], proj[0], gate, i8, i32, f32)
        add_(x[0], proj[0])
    rmsnorm_f32(xn, x, out_norm, eps)
    matvec_into(head_code, logits, head, xn, i8, i32, f32)
