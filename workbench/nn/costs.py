"""What each op of a step must move and compute, for its trace span (`nn.step.OpPlan`).

Each function returns `cost(T, pos, cell) -> attrs` for an op of a forward of T tokens
at cache position pos over a KV cache of `cell`-byte values: `bytes` (weights as the file's tensor table gives them, plus
activations read and written, plus KV cache), `weight_bytes`, `flops` (a multiply-add
counts two), `shape` and `fmt`, and `weight` (the tensor's name) for products. Evaluated
only when a trace is read, never while a step runs.
"""

from __future__ import annotations

F32 = 4  # bytes of an activation value


def linear(lin, last: bool = False):
    """A product y (T, rows) = x (T, cols) @ W.T (+ bias) of `nn.linear.Linear` lin (of the
    last token only when `last`: the lm_head)."""
    w, rows, cols = lin.w.nbytes + (0 if lin.bias is None else lin.bias.nbytes), lin.rows, lin.cols

    def cost(T, pos, cell):
        T = 1 if last else T
        return {"weight": lin.name, "fmt": lin.fmt, "shape": (T, cols, rows), "bytes": w + T * (rows + cols) * F32,
                "weight_bytes": w, "flops": 2 * T * rows * cols}

    return cost


def norm(width: int, weight_bytes: int, flops_per_value: int, rows: int = 1, last: bool = False):
    """A norm of `rows` rows of `width` per token (QK-norm: one row per head), of the last
    token only when `last` (the output norm)."""

    def cost(T, pos, cell):
        T = 1 if last else T
        n = T * rows * width
        return {"fmt": "f32", "shape": (T * rows, width), "bytes": 2 * n * F32 + weight_bytes,
                "weight_bytes": weight_bytes, "flops": flops_per_value * n}

    return cost


def elementwise(width: int, arrays: int, flops_per_value: int):
    """An op over `width` values per token touching `arrays` arrays of them (out included)."""

    def cost(T, pos, cell):
        return {"fmt": "f32", "shape": (T, width), "bytes": arrays * T * width * F32,
                "flops": flops_per_value * T * width}

    return cost


def rope(heads: int, head_dim: int, n_rot: int):
    def cost(T, pos, cell):
        n = T * heads * head_dim
        return {"fmt": "f32", "shape": (T, heads, head_dim), "bytes": 2 * n * F32 + 2 * T * (n_rot // 2) * F32,
                "flops": 6 * T * heads * (n_rot // 2)}

    return cost


def kv_write(kv_heads: int, head_dim: int):
    """Storing this step's k and v rows into the cache."""

    def cost(T, pos, cell):
        n = T * kv_heads * head_dim
        return {"fmt": "f16" if cell == 2 else "f32", "shape": (T, kv_heads, head_dim),
                "bytes": 2 * n * (F32 + cell), "flops": 0}

    return cost


def attention(heads: int, kv_heads: int, head_dim: int, window: int):
    """softmax(q k^T) v of T queries over the keys up to pos + T (the last `window` of
    them on a sliding layer): K and V rows read once per query group, scores written."""

    def cost(T, pos, cell):
        n_keys = pos + T
        if window > 0:
            n_keys = min(n_keys, window + T - 1)
        return {"fmt": "f16" if cell == 2 else "f32", "shape": (T, heads, n_keys),
                "bytes": 2 * kv_heads * n_keys * head_dim * cell + 2 * T * heads * head_dim * F32
                + 2 * T * heads * n_keys * F32,
                "flops": 4 * T * heads * head_dim * n_keys + 5 * T * heads * n_keys}

    return cost


def lookup(emb, width: int):
    """Rows of an embedding table `nn.linear.Embedding`, dequantized."""
    row = emb.w.shape[1]

    def cost(T, pos, cell):
        return {"weight": emb.name, "fmt": emb.fmt, "shape": (T, width), "bytes": T * (row + width * F32),
                "weight_bytes": T * row, "flops": 0}

    return cost
