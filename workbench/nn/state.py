"""The run state of a decoder: KV cache and activation buffers, allocated once per session.

Every architecture writes the same buffers (llama2.c's RunState), handed to its compiled
step as one `nn.step.Buffers` record: flat float32 arrays that the step views as
(T, n) for the T tokens of a forward, the KV cache (of the session's cell type; the
other type's pair is empty), the attention scratch and the quantized-activation scratch
of the matvec kernels, all sized for `n_batch` tokens. `begin(T)` checks that T tokens
fit the batch and the context before any kernel runs, and returns the first free position.
"""

from __future__ import annotations

import numpy as np

from workbench.errors import ParameterError
from workbench.kernels.scratch import scratch
from workbench.nn.kv_cache import KVCache
from workbench.nn.step import Buffers


class DecoderState:
    def __init__(self, cfg, n_ctx: int, n_batch: int, kv_type: str = "f16"):
        """cfg: a ModelConfig (d_model, d_ff, heads, head_dim, layers, vocab_size);
        kv_type: the KV cache's precision, "f16" or "f32" (see KVCache)."""
        d, hd, H, Hkv = cfg.d_model, cfg.head_dim, cfg.n_heads, cfg.n_kv_heads
        self.n_batch = n_batch
        self.cache = cache = KVCache(cfg.n_layers, Hkv, n_ctx, hd, kv_type)
        f32 = np.float32
        fused = n_batch * max((H + 2 * Hkv) * hd, 2 * cfg.d_ff)  # Q | K | V or gate | up, (T, rows) each
        none16, none32 = np.zeros((cfg.n_layers, 0, 0, 0), np.uint16), np.zeros((cfg.n_layers, 0, 0, 0), f32)
        f16_cache = cache.k.dtype == np.uint16
        i8, i32, q32 = scratch(n_batch * max(d, H * hd, cfg.d_ff))  # quantized activations of x
        self.buffers = Buffers(
            x=np.zeros(n_batch * d, f32),  # residual stream
            xn=np.zeros(n_batch * d, f32),  # normed input of a block
            proj=np.zeros(n_batch * d, f32),  # a block's output before its residual add
            att=np.zeros(n_batch * H * hd, f32),  # attention output, input of attn_output
            fused=np.zeros(fused, f32),
            wide=np.zeros(fused, f32),  # a fused product's (T, all rows) before its split (T > 1)
            probs=cache.scratch(n_batch * H),  # attention scores, per query head
            logits=np.zeros((1, cfg.vocab_size), f32),
            i8=i8, i32=i32, f32=q32,
            k16=cache.k if f16_cache else none16, v16=cache.v if f16_cache else none16,
            k32=none32 if f16_cache else cache.k, v32=none32 if f16_cache else cache.v,
        )

        self.marks = np.zeros(0, np.int64)  # a traced step's cycle counts (`nn.step.run` sizes it)
        self.entries: dict = {}  # compiled step -> its entry point for this session's types (`nn.step._call`)

    @property
    def logits(self) -> np.ndarray:
        """(1, vocab): the logits of the last token of the last forward."""
        return self.buffers.logits

    def begin(self, T: int) -> int:
        """The position of the first of T new tokens; ParameterError if they do not fit."""
        if not 0 < T <= self.n_batch:
            raise ParameterError(f"forward takes 1..{self.n_batch} tokens at once, got {T}")
        pos0 = self.cache.n_used
        if pos0 + T > self.cache.n_ctx:
            raise ParameterError(f"{pos0 + T} tokens exceed the context of {self.cache.n_ctx}")
        return pos0
