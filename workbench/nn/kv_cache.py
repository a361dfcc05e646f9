"""The key/value cache: preallocated once per session, written in place at `pos`.

K as (layers, kv_heads, n_pos, head_dim) and V transposed as (layers, kv_heads,
head_dim, n_pos), llama.cpp's layout, so that q.k and p.v both read contiguous rows.
`kv_type` picks what a cell holds:
- "f16" (the default): half-precision bits (uint16), like llama.cpp's default f16
  cache; attention then runs llama.cpp's arithmetic, for greedy tokens equal to it;
- "f32": float32 values; attention runs in float32 like transformers (nothing rounded
  to half), for logits within 1e-4 of it, at twice the cache's memory.
`n_pos` is the context rounded up to 64 (the f16 kernel reads whole 64-element chunks).
Positions [0, n_used) hold the tokens seen so far.
"""

from __future__ import annotations

import numpy as np

from workbench.errors import ParameterError

CHUNK = 64
KV_TYPES = {"f16": np.uint16, "f32": np.float32}  # kv_type -> the dtype of a cache cell


def check_kv_type(kv_type) -> str:
    """`kv_type` if it names a cache type, else ParameterError naming the option."""
    if not isinstance(kv_type, str) or kv_type not in KV_TYPES:
        raise ParameterError(f"kv_type must be one of {', '.join(KV_TYPES)}, got {kv_type!r}")
    return kv_type


class KVCache:
    __slots__ = ("k", "v", "n_ctx", "n_used", "kv_type")

    def __init__(self, n_layers: int, n_kv_heads: int, n_ctx: int, head_dim: int, kv_type: str = "f16"):
        self.kv_type = check_kv_type(kv_type)
        n_pos = n_ctx + (-n_ctx) % CHUNK
        dtype = KV_TYPES[kv_type]
        self.k = np.zeros((n_layers, n_kv_heads, n_pos, head_dim), dtype=dtype)
        self.v = np.zeros((n_layers, n_kv_heads, head_dim, n_pos), dtype=dtype)
        self.n_ctx = n_ctx
        self.n_used = 0

    @property
    def n_pos(self) -> int:
        return self.k.shape[2]

    @property
    def nbytes(self) -> int:
        return self.k.nbytes + self.v.nbytes

    def scratch(self, rows: int) -> np.ndarray:
        """The attention kernels' float32 scratch for `rows` query heads: each row holds the
        head's scores over n_pos positions, then its query rounded to half (head_dim)."""
        return np.zeros((rows, self.n_pos + self.k.shape[3]), dtype=np.float32)

    def reset(self) -> None:
        """Forget every position; the memory stays allocated."""
        self.n_used = 0
