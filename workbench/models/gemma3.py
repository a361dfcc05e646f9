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
global layers' positions; `Rope` has no frequency scale yet) and vision inputs.
"""

from __future__ import annotations

from functools import partial

import numpy as np

from workbench.errors import UnsupportedError
from workbench.kernels.activations import (
    GELU_TANH_F16_TABLE,
    geglu_tanh_f32,
    geglu_tanh_f32_parallel,
    geglu_tanh_table_f32,
    geglu_tanh_table_f32_parallel,
)
from workbench.models.config import ModelConfig
from workbench.nn.attention import Rope, attend
from workbench.nn.elementwise import gated_act, residual_add
from workbench.nn.norms import RMSNorm
from workbench.nn.state import DecoderState
from workbench.trace import NULL_TRACER


class Gemma3Layer:
    __slots__ = ("attn_norm", "qkv", "q_norm", "k_norm", "attn_output", "post_attention_norm",
                 "ffn_norm", "ffn_gate_up", "ffn_down", "post_ffw_norm", "window", "rope")

    def __init__(self, ld, cfg: ModelConfig, i: int, rope_global: Rope, rope_local: Rope):
        d, hd, eps = cfg.d_model, cfg.head_dim, cfg.norm_eps
        blk = f"blk.{i}."

        def norm(name: str, n: int, op: str) -> RMSNorm:
            return RMSNorm(ld.vector(blk + name + ".weight", n), eps, op)

        self.attn_norm = norm("attn_norm", d, "attn_norm")
        self.qkv = ld.group([blk + "attn_q.weight", blk + "attn_k.weight", blk + "attn_v.weight"],
                            [cfg.n_heads * hd, cfg.n_kv_heads * hd, cfg.n_kv_heads * hd], d, "qkv", ["q", "k", "v"])
        self.q_norm = norm("attn_q_norm", hd, "q_norm")
        self.k_norm = norm("attn_k_norm", hd, "k_norm")
        self.attn_output = ld.linear(blk + "attn_output.weight", d, cfg.n_heads * hd, "attn_output")
        self.post_attention_norm = norm("post_attention_norm", d, "post_attention_norm")
        self.ffn_norm = norm("ffn_norm", d, "ffn_norm")
        self.ffn_gate_up = ld.group([blk + "ffn_gate.weight", blk + "ffn_up.weight"], [cfg.d_ff, cfg.d_ff], d,
                                    "ffn_gate_up", ["ffn_gate", "ffn_up"])
        self.ffn_down = ld.linear(blk + "ffn_down.weight", d, cfg.d_ff, "ffn_down")
        self.post_ffw_norm = norm("post_ffw_norm", d, "post_ffw_norm")
        sliding = bool(cfg.swa_layers) and cfg.swa_layers[i]
        self.window = cfg.sliding_window if sliding else 0  # 0: attend to every position
        self.rope = rope_local if sliding else rope_global


class Gemma3:
    def __init__(self, ld, cfg: ModelConfig, n_ctx: int):
        """ld: a `nn.loader.WeightLoader` over the model's tensors (GGUF names)."""
        if cfg.rope_freq_scale != 1.0:
            raise UnsupportedError(f"{ld.path}: linear rope scaling (factor {1 / cfg.rope_freq_scale:g}) "
                                   "is not supported yet")
        self.config = cfg
        self.token_embd = ld.embedding("token_embd.weight", cfg.vocab_size, cfg.d_model)
        # global layers use the file's rope base (1e6), sliding ones llama.cpp's 10000
        self.n_ctx = n_ctx  # the longest session this instance serves
        self.rope_global = Rope(n_ctx, cfg.rope_dims, cfg.rope_base, neox=True)
        self.rope_local = Rope(n_ctx, cfg.rope_dims, cfg.rope_base_local, neox=True)
        self.layers = [Gemma3Layer(ld, cfg, i, self.rope_global, self.rope_local) for i in range(cfg.n_layers)]
        self.output_norm = RMSNorm(ld.vector("output_norm.weight", cfg.d_model), cfg.norm_eps, "output_norm")
        if cfg.tied_embeddings:  # Gemma ships no output.weight: token_embd is the lm_head
            self.output = ld.tied_head(self.token_embd)
        else:
            self.output = ld.linear("output.weight", cfg.vocab_size, cfg.d_model, "output", lm_head=True)
        self.embed_scale = np.float32(cfg.embed_scale)
        self.attn_scale = np.float32(cfg.attn_scale)
        if cfg.gelu_table:  # GELU as ggml's CPU backend computes it: through its table of half-rounded values
            self.geglu = partial(geglu_tanh_table_f32, table=GELU_TANH_F16_TABLE)
            self.geglu_parallel = partial(geglu_tanh_table_f32_parallel, table=GELU_TANH_F16_TABLE)
        else:  # exactly, as transformers does (HF directories)
            self.geglu, self.geglu_parallel = geglu_tanh_f32, geglu_tanh_f32_parallel
        self.layer_names = [f"layer[{i}]" for i in range(cfg.n_layers)]  # span names, made once

    def new_state(self, n_batch: int = 512, kv_type: str = "f16") -> DecoderState:
        """A session of n_ctx positions taking up to `n_batch` tokens per forward (512,
        llama.cpp's default batch); the KV cache holds `kv_type` "f16" (llama.cpp's
        default) or "f32" (see KVCache)."""
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
        q_heads, k_heads = q.reshape(T * H, hd), k.reshape(T * Hkv, hd)  # rows for the QK-norm
        att3 = att.reshape(T, H, hd)
        geglu = self.geglu if T == 1 else self.geglu_parallel

        with tracer.span("embedding"):
            self.token_embd(x, ids, tracer)
            x *= self.embed_scale  # sqrt(d_model), rounded to float32 as ggml's sqrtf
        for i, layer in enumerate(self.layers):
            with tracer.span(self.layer_names[i], kind="layer", layer=i):
                with tracer.span("attn"):
                    layer.attn_norm(xn, x, tracer)
                    layer.qkv((q, k, v), xn, state.fused, tracer)
                    layer.q_norm(q_heads, q_heads, tracer)
                    layer.k_norm(k_heads, k_heads, tracer)
                    layer.rope(q3, pos0, tracer, "rope_q")
                    layer.rope(k3, pos0, tracer, "rope_k")
                    q *= self.attn_scale  # scaled before q.k, as llama.cpp does; attention scale is 1
                    attend(att3, q3, k3, v3, cache.k[i], cache.v[i], pos0, 1.0, layer.window, state.probs, tracer)
                    layer.attn_output(proj, att, tracer)
                    layer.post_attention_norm(proj, proj, tracer)
                    residual_add(x, proj, tracer)
                with tracer.span("ffn"):
                    layer.ffn_norm(xn, x, tracer)
                    layer.ffn_gate_up((gate, up), xn, state.fused, tracer)
                    gated_act(geglu, gate, gate, up, 2, tracer)  # a table lookup and a product per value
                    layer.ffn_down(proj, gate, tracer)
                    layer.post_ffw_norm(proj, proj, tracer)
                    residual_add(x, proj, tracer)
        cache.n_used = pos0 + T
        last = xn[:1]
        with tracer.span("output_norm"):
            self.output_norm(last, x[T - 1 : T], tracer)
        with tracer.span("lm_head"):
            self.output(state.logits, last, tracer)
        if cfg.final_logit_softcap > 0:  # only llama.cpp's graph for Gemma 3 without sliding layers
            state.logits *= np.float32(1.0 / cfg.final_logit_softcap)
            np.tanh(state.logits, out=state.logits)
            state.logits *= np.float32(cfg.final_logit_softcap)
        return state.logits[0]
