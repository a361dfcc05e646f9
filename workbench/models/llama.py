"""Llama-family decoder (Llama 2/3, TinyLlama, SmolLM2, Mistral-style GQA).

Per layer: RMSNorm -> Q, K, V -> rope (GGUF's adjacent-pair order: the GGUF
converter, or our HF loader, permuted HF's Q/K rows for it) -> causal GQA attention
over the KV cache (f16 by default) -> output projection -> residual; RMSNorm -> gate,
up -> SwiGLU -> down -> residual. Then the final RMSNorm and the lm_head (the token
embeddings when the file has no `output.weight`), for the last position only.
"""

from __future__ import annotations

import math

import numpy as np

from workbench.kernels.activations import swiglu_f32, swiglu_f32_parallel
from workbench.models.config import ModelConfig
from workbench.nn.attention import Rope, attend
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
