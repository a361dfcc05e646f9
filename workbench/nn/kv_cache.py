"""The key/value cache: preallocated once per session, written in place at `pos`.

K and V are half-precision bits, like llama.cpp's default f16 cache and in its layout:
K as (layers, kv_heads, n_pos, head_dim) and V transposed as (layers, kv_heads,
head_dim, n_pos), so that q.k and p.v both read contiguous rows. `n_pos` is the context
rounded up to 64 (the attention kernel reads whole 64-element chunks). Positions
[0, n_used) hold the tokens seen so far.
"""

from __future__ import annotations

import numpy as np

CHUNK = 64


class KVCache:
    __slots__ = ("k", "v", "n_ctx", "n_used")

    def __init__(self, n_layers: int, n_kv_heads: int, n_ctx: int, head_dim: int):
        n_pos = n_ctx + (-n_ctx) % CHUNK
        self.k = np.zeros((n_layers, n_kv_heads, n_pos, head_dim), dtype=np.uint16)
        self.v = np.zeros((n_layers, n_kv_heads, head_dim, n_pos), dtype=np.uint16)
        self.n_ctx = n_ctx
        self.n_used = 0

    @property
    def n_pos(self) -> int:
        return self.k.shape[2]

    @property
    def nbytes(self) -> int:
        return self.k.nbytes + self.v.nbytes

    def scratch(self, rows: int) -> np.ndarray:
        """The attention kernels' float32 scratch: a row of scores for each of `rows` query heads."""
        return np.zeros((rows, self.n_pos), dtype=np.float32)

    def reset(self) -> None:
        """Forget every position; the memory stays allocated."""
        self.n_used = 0
