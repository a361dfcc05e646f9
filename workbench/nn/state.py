"""The run state of a decoder: KV cache and activation buffers, allocated once per session.

Llama and Gemma 3 write the same buffers (llama2.c's RunState); each forward takes views
of their first T rows. `begin(T)` checks that T tokens fit the batch and the context
before any kernel runs, and returns the first free position.
"""

from __future__ import annotations

import numpy as np

from workbench.errors import ParameterError
from workbench.kernels.scratch import scratch
from workbench.nn.kv_cache import KVCache


class DecoderState:
    def __init__(self, cfg, n_ctx: int, n_batch: int, kv_type: str = "f16"):
        """cfg: a ModelConfig (d_model, d_ff, heads, head_dim, layers, vocab_size);
        kv_type: the KV cache's precision, "f16" or "f32" (see KVCache)."""
        d, hd, H, Hkv = cfg.d_model, cfg.head_dim, cfg.n_heads, cfg.n_kv_heads
        self.n_batch = n_batch
        self.cache = KVCache(cfg.n_layers, Hkv, n_ctx, hd, kv_type)
        f32 = np.float32
        self.x = np.zeros((n_batch, d), f32)  # residual stream
        self.xn = np.zeros((n_batch, d), f32)  # normed input of a block
        self.q = np.zeros((n_batch, H * hd), f32)
        self.k = np.zeros((n_batch, Hkv * hd), f32)
        self.v = np.zeros((n_batch, Hkv * hd), f32)
        self.att = np.zeros((n_batch, H * hd), f32)
        self.proj = np.zeros((n_batch, d), f32)  # a block's output before its residual add
        self.gate = np.zeros((n_batch, cfg.d_ff), f32)
        self.up = np.zeros((n_batch, cfg.d_ff), f32)
        # output of a fused Q/K/V or gate+up product, before it is split into the above
        self.fused = np.zeros(n_batch * max((H + 2 * Hkv) * hd, 2 * cfg.d_ff), f32)  # flat: any (T, rows)
        self.probs = self.cache.scratch(n_batch * H)  # attention scores, per query head
        self.logits = np.zeros((1, cfg.vocab_size), f32)
        # quantized activations of one token's products, for the compiled decode step (nn.compiled)
        self.quant_scratch = scratch(max(d, H * hd, cfg.d_ff))

    def begin(self, T: int) -> int:
        """The position of the first of T new tokens; ParameterError if they do not fit."""
        if not 0 < T <= self.n_batch:
            raise ParameterError(f"forward takes 1..{self.n_batch} tokens at once, got {T}")
        pos0 = self.cache.n_used
        if pos0 + T > self.cache.n_ctx:
            raise ParameterError(f"{pos0 + T} tokens exceed the context of {self.cache.n_ctx}")
        return pos0
