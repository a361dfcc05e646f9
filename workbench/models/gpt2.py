"""GPT-2 decoder (openai-community/gpt2 and its sizes; any HF GPT-2 directory).

Follows llama.cpp's gpt2 graph (src/models/gpt2.cpp), which is HF's GPT2LMHeadModel:
x = token embedding + learned position embedding (no rope). Per layer: LayerNorm ->
c_attn with bias (`attn_qkv`, rows q | k | v, run as three products) -> causal multi-head
attention (scale 1/sqrt(head_dim)) over the KV cache (f16 by default) -> c_proj with bias ->
residual; LayerNorm -> c_fc with bias (`ffn_up`) -> tanh GELU ("gelu_new", exact float32
formula, not ggml's half table) -> c_proj with bias (`ffn_down`) -> residual. Then the
final LayerNorm and the lm_head (tied to the token embeddings unless the file has
`output.weight`), for the last position only.

HF stores every GPT-2 projection as a Conv1D, (in, out): `formats.hf` transposes them at
load, so the weights here are (out, in) like every other model's. Positions are limited
to the model's `n_positions` (its context length): `models.build` caps n_ctx to it.
"""

from __future__ import annotations

import math

import numpy as np

from workbench.kernels.activations import gelu_tanh_f32, gelu_tanh_f32_parallel
from workbench.models.config import ModelConfig
from workbench.nn.attention import attend
from workbench.nn.elementwise import act, residual_add
from workbench.nn.norms import LayerNorm
from workbench.nn.state import DecoderState
from workbench.trace import NULL_TRACER


class GPT2Layer:
    __slots__ = ("attn_norm", "qkv", "attn_output", "ffn_norm", "ffn_up", "ffn_down")

    def __init__(self, ld, cfg: ModelConfig, i: int):
        d, d_ff, eps = cfg.d_model, cfg.d_ff, cfg.norm_eps
        blk = f"blk.{i}."

        def norm(name: str) -> LayerNorm:
            return LayerNorm(ld.vector(blk + name + ".weight", d), ld.vector(blk + name + ".bias", d), eps, name)

        def linear(name: str, rows: int, cols: int):
            return ld.linear(blk + name + ".weight", rows, cols, name, bias=blk + name + ".bias")

        self.attn_norm = norm("attn_norm")
        # c_attn, stored fused: the loader splits it so that the quantization rule sees
        # three d x d projections, as the seed tool counts them
        self.qkv = ld.split(blk + "attn_qkv.weight", [d, d, d], d, "qkv", ["q", "k", "v"], bias=blk + "attn_qkv.bias")
        self.attn_output = linear("attn_output", d, d)  # attn.c_proj
        self.ffn_norm = norm("ffn_norm")
        self.ffn_up = linear("ffn_up", d_ff, d)  # mlp.c_fc
        self.ffn_down = linear("ffn_down", d, d_ff)  # mlp.c_proj


class GPT2:
    def __init__(self, ld, cfg: ModelConfig, n_ctx: int):
        """ld: a `nn.loader.WeightLoader` over the model's tensors (GGUF names)."""
        d = cfg.d_model
        assert cfg.n_kv_heads == cfg.n_heads and cfg.n_heads * cfg.head_dim == d  # from_hf guarantees it
        assert n_ctx <= cfg.context_length  # models.build caps it: positions past n_positions have no embedding
        self.config = cfg
        self.n_ctx = n_ctx  # the longest session this instance serves
        self.token_embd = ld.embedding("token_embd.weight", cfg.vocab_size, d)
        self.position_embd = ld.embedding("position_embd.weight", cfg.context_length, d, op="position_embd")
        self.layers = [GPT2Layer(ld, cfg, i) for i in range(cfg.n_layers)]
        self.output_norm = LayerNorm(ld.vector("output_norm.weight", d), ld.vector("output_norm.bias", d),
                                     cfg.norm_eps, "output_norm")
        if cfg.tied_embeddings:  # GPT-2's lm_head is wte (HF saves no lm_head.weight)
            self.output = ld.tied_head(self.token_embd)
        else:
            self.output = ld.linear("output.weight", cfg.vocab_size, d, "output", lm_head=True)
        self.positions = np.arange(n_ctx, dtype=np.int64)  # ids of the position embedding rows
        self.scale = 1.0 / math.sqrt(cfg.head_dim)
        self.layer_names = [f"layer[{i}]" for i in range(cfg.n_layers)]  # span names, made once

    def new_state(self, n_batch: int = 512, kv_type: str = "f16") -> DecoderState:
        """A session of n_ctx positions taking up to `n_batch` tokens per forward (512,
        llama.cpp's default batch). The FFN hidden (T, d_ff) lives in its `gate` buffer.
        `kv_type` "f32" keeps the KV cache (and attention) in float32, as transformers:
        the f16 default, llama.cpp's, moves logits by ~4e-3 (see KVCache)."""
        return DecoderState(self.config, self.n_ctx, n_batch, kv_type)

    def forward(self, ids: np.ndarray, state: DecoderState, tracer=NULL_TRACER) -> np.ndarray:
        """Run tokens `ids` (T,) at the next free cache positions; logits (vocab,) of the last."""
        cfg, cache = self.config, state.cache
        T = len(ids)
        pos0 = state.begin(T)
        d, H, hd = cfg.d_model, cfg.n_heads, cfg.head_dim
        x, xn, proj = state.x[:T], state.xn[:T], state.proj[:T]
        q, k, v, att = state.q[:T], state.k[:T], state.v[:T], state.att[:T]
        hidden = state.gate[:T]  # (T, d_ff)
        q3, k3, v3 = q.reshape(T, H, hd), k.reshape(T, H, hd), v.reshape(T, H, hd)
        att3 = att.reshape(T, H, hd)
        gelu = gelu_tanh_f32 if T == 1 else gelu_tanh_f32_parallel

        with tracer.span("embedding"):
            self.token_embd(x, ids, tracer)
            self.position_embd(proj, self.positions[pos0 : pos0 + T], tracer)
            residual_add(x, proj, tracer, "position_add")
        for i, layer in enumerate(self.layers):
            with tracer.span(self.layer_names[i], kind="layer", layer=i):
                with tracer.span("attn"):
                    layer.attn_norm(xn, x, tracer)
                    layer.qkv((q, k, v), xn, state.fused, tracer)
                    attend(att3, q3, k3, v3, cache.k[i], cache.v[i], pos0, self.scale, 0, state.probs, tracer)
                    layer.attn_output(proj, att, tracer)
                    residual_add(x, proj, tracer)
                with tracer.span("ffn"):
                    layer.ffn_norm(xn, x, tracer)
                    layer.ffn_up(hidden, xn, tracer)
                    act(gelu, hidden, hidden, 8, tracer)  # in place; ~8 flops and a tanh per value
                    layer.ffn_down(proj, hidden, tracer)
                    residual_add(x, proj, tracer)
        cache.n_used = pos0 + T
        last = xn[:1]
        with tracer.span("output_norm"):
            self.output_norm(last, x[T - 1 : T], tracer)
        with tracer.span("lm_head"):
            self.output(state.logits, last, tracer)
        return state.logits[0]
