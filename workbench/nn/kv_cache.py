"""The key/value cache: preallocated once per session, written in place at `pos`.

K and V are kept as half-precision bits, (layers, kv_heads, n_ctx, head_dim), like
llama.cpp's default f16 cache: half the memory of f32, and the same rounding of keys
and values as the reference. Positions [0, n_used) hold the tokens seen so far.
"""

from __future__ import annotations

import numpy as np


class KVCache:
    __slots__ = ("k", "v", "n_ctx", "n_used")

    def __init__(self, n_layers: int, n_kv_heads: int, n_ctx: int, head_dim: int):
        shape = (n_layers, n_kv_heads, n_ctx, head_dim)
        self.k = np.zeros(shape, dtype=np.uint16)
        self.v = np.zeros(shape, dtype=np.uint16)
        self.n_ctx = n_ctx
        self.n_used = 0

    @property
    def nbytes(self) -> int:
        return self.k.nbytes + self.v.nbytes

    def reset(self) -> None:
        """Forget every position; the memory stays allocated."""
        self.n_used = 0
