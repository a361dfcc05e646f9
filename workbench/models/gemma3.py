"""Gemma 3 decoder (270M, 1B, and the text part of the larger ones).

Follows llama.cpp's gemma3 graph (src/models/gemma3.cpp). Embeddings are scaled by
sqrt(d_model). Per layer: RMSNorm -> Q, K, V -> RMSNorm of each query and key head
(QK-norm) -> NEOX rope with the layer's base -> q * attn_scale -> causal GQA attention
(scale 1), over the last `sliding_window` positions on sliding layers and over all of
them on global ones (every 6th layer) -> output projection -> RMSNorm -> residual;
RMSNorm -> gate, up -> GELU(tanh)(gate) * up -> down -> RMSNorm -> residual. Then the
final RMSNorm and the tied lm_head, for the last position only (soft-capped only for a
file without a sliding window, as llama.cpp's non-SWA Gemma 3 graph does).
`decode_step` is the same forward for one token as one compiled function (see
`nn.compiled`): what an untraced decode step runs, bit for bit equal to `forward`.

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
from workbench.kernels.dispatch import get_rows_into, matvec_into
from workbench.kernels.half import F16_TO_F32
from workbench.kernels.jit import njit_serial
from workbench.kernels.norms import rmsnorm_f32
from workbench.kernels.rope import rope_f32
from workbench.models.config import ModelConfig
from workbench.nn.attention import Rope, attend
from workbench.nn.compiled import (ATTN_OUTPUT, DOWN, GATE_UP, QKV, Products, add_, attention_kernel, buffers,
                                   products, scale_, use_compiled)
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
        # for decode_step: the matrices by slot; norms (layers, 4, d) = attn_norm,
        # post_attention_norm, ffn_norm, post_ffw_norm; QK-norms (layers, 2, head_dim);
        # each layer's rope tables (0 global, 1 sliding) and window
        self.products = Products.pack([(l.qkv, l.attn_output, l.ffn_gate_up, l.ffn_down) for l in self.layers],
                                      self.token_embd, self.output)
        self.norms = np.stack([[l.attn_norm.w, l.post_attention_norm.w, l.ffn_norm.w, l.post_ffw_norm.w]
                               for l in self.layers])
        self.qk_norms = np.stack([[l.q_norm.w, l.k_norm.w] for l in self.layers])
        self.cos = np.stack([self.rope_global.cos, self.rope_local.cos])
        self.sin = np.stack([self.rope_global.sin, self.rope_local.sin])
        self.rope_of = np.array([int(l.rope is self.rope_local) for l in self.layers])
        self.windows = np.array([l.window for l in self.layers])

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
        if use_compiled(self.products, T, tracer):
            p = self.products
            decode_step(ids, pos0, attention_kernel(cache), p.embd, p.embd_code, self.embed_scale, p.ws, p.index,
                        p.codes, self.norms, self.qk_norms, self.output_norm.w, p.head, p.head_code,
                        np.float32(cfg.norm_eps), self.cos, self.sin, self.rope_of, cfg.rope_dims, self.attn_scale,
                        self.windows, cfg.gelu_table, GELU_TANH_F16_TABLE, H, Hkv, hd, cfg.d_ff, cache.k, cache.v,
                        buffers(state))
            cache.n_used = pos0 + T
            return self._softcap(state.logits)[0]

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
        return self._softcap(state.logits)[0]

    def _softcap(self, logits: np.ndarray) -> np.ndarray:
        cap = self.config.final_logit_softcap
        if cap > 0:  # only llama.cpp's graph for Gemma 3 without sliding layers
            logits *= np.float32(1.0 / cap)
            np.tanh(logits, out=logits)
            logits *= np.float32(cap)
        return logits


@njit_serial
def decode_step(ids, pos, attend, embd, embd_code, embed_scale, ws, index, codes, norms, qk_norms, out_norm,
                head, head_code, eps, cos, sin, rope_of, n_rot, attn_scale, windows, gelu_table, table,
                H, Hkv, hd, d_ff, k_cache, v_cache, bufs):
    """`Gemma3.forward` of one token ids (1,) at position pos, in one call: the same
    kernels in the same order. Matrices from `nn.compiled.Products`; norms, qk_norms,
    cos/sin, rope_of, windows as Gemma3 stacks them; bufs from `nn.compiled.buffers`."""
    x, xn, proj, att, fused, probs, logits, i8, i32, f32 = bufs
    q = fused[: H * hd].reshape((1, H, hd))
    k = fused[H * hd : (H + Hkv) * hd].reshape((1, Hkv, hd))
    v = fused[(H + Hkv) * hd : (H + 2 * Hkv) * hd].reshape((1, Hkv, hd))
    gate, up = fused[:d_ff].reshape((1, d_ff)), fused[d_ff : 2 * d_ff].reshape((1, d_ff))
    get_rows_into(embd_code, x, embd, ids)
    scale_(x[0], embed_scale)  # sqrt(d_model)
    for i in range(index.shape[0]):
        rmsnorm_f32(xn, x, norms[i, 0], eps)
        products(ws, index[i, QKV], codes[i, QKV], fused, xn, i8, i32, f32)
        rmsnorm_f32(q.reshape((H, hd)), q.reshape((H, hd)), qk_norms[i, 0], eps)  # QK-norm, per head
        rmsnorm_f32(k.reshape((Hkv, hd)), k.reshape((Hkv, hd)), qk_norms[i, 1], eps)
        rope_f32(q, pos, cos[rope_of[i]], sin[rope_of[i]], n_rot, True)
        rope_f32(k, pos, cos[rope_of[i]], sin[rope_of[i]], n_rot, True)
        scale_(fused[: H * hd], attn_scale)
        attend(att.reshape((1, H, hd)), q, k, v, k_cache[i], v_cache[i], pos, np.float32(1), windows[i], probs,
               F16_TO_F32)
        products(ws, index[i, ATTN_OUTPUT], codes[i, ATTN_OUTPUT], proj[0], att, i8, i32, f32)
        rmsnorm_f32(proj, proj, norms[i, 1], eps)
        add_(x[0], proj[0])
        rmsnorm_f32(xn, x, norms[i, 2], eps)
        products(ws, index[i, GATE_UP], codes[i, GATE_UP], fused, xn, i8, i32, f32)
        if gelu_table:
            geglu_tanh_table_f32(gate, gate, up, table)
        else:
            geglu_tanh_f32(gate, gate, up)
        products(ws, index[i, DOWN], codes[i, DOWN], proj[0], gate, i8, i32, f32)
        rmsnorm_f32(proj, proj, norms[i, 3], eps)
        add_(x[0], proj[0])
    rmsnorm_f32(xn, x, out_norm, eps)
    matvec_into(head_code, logits, head, xn, i8, i32, f32)
