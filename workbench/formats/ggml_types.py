"""The GGML tensor type table: type id -> name, block size, bytes per block.

This is file-format knowledge (what a GGUF tensor's `type` field means and how many
bytes a row takes), so it lives in `formats/`; `quant/` builds its block layouts on it.
It does not know how to decode any block: that is `quant/`'s job.

The table mirrors ggml's `type_traits` (ggml.c) for every type the `gguf` package
(0.19) names. One deliberate difference from `gguf.GGML_QUANT_SIZES`: Q8_1 is 36 bytes
(fp16 d, fp16 s, 32 x int8), as `sizeof(block_q8_1)` in ggml; gguf-py still lists the
old 40-byte layout with float32 d and s. Q8_1 and Q8_K only ever hold activations
inside ggml, never tensors in a file.
"""

from dataclasses import dataclass

from workbench.errors import UnsupportedError

QK_K = 256  # elements in a k-quant super-block


@dataclass(frozen=True)
class GGMLType:
    """One GGML tensor type: `block_size` elements are stored in `type_size` bytes."""

    type_id: int
    name: str
    block_size: int
    type_size: int

    def row_bytes(self, n: int) -> int:
        """Bytes taken by a row of `n` elements (`n` must be a multiple of block_size)."""
        if n % self.block_size:
            raise UnsupportedError(
                f"{self.name} rows need a multiple of {self.block_size} elements, got {n}"
            )
        return n // self.block_size * self.type_size


_TABLE = [
    # id, name, block size, type size
    (0, "F32", 1, 4),
    (1, "F16", 1, 2),
    (2, "Q4_0", 32, 2 + 16),
    (3, "Q4_1", 32, 2 + 2 + 16),
    (6, "Q5_0", 32, 2 + 4 + 16),
    (7, "Q5_1", 32, 2 + 2 + 4 + 16),
    (8, "Q8_0", 32, 2 + 32),
    (9, "Q8_1", 32, 2 + 2 + 32),
    (10, "Q2_K", QK_K, 16 + 64 + 2 + 2),
    (11, "Q3_K", QK_K, 32 + 64 + 12 + 2),
    (12, "Q4_K", QK_K, 2 + 2 + 12 + 128),
    (13, "Q5_K", QK_K, 2 + 2 + 12 + 32 + 128),
    (14, "Q6_K", QK_K, 128 + 64 + 16 + 2),
    (15, "Q8_K", QK_K, 4 + 256 + 2 * 16),
    (16, "IQ2_XXS", QK_K, 2 + 64),
    (17, "IQ2_XS", QK_K, 2 + 64 + 8),
    (18, "IQ3_XXS", QK_K, 2 + 96),
    (19, "IQ1_S", QK_K, 2 + 32 + 16),
    (20, "IQ4_NL", 32, 2 + 16),
    (21, "IQ3_S", QK_K, 2 + 64 + 32 + 8 + 4),
    (22, "IQ2_S", QK_K, 2 + 64 + 8 + 8),
    (23, "IQ4_XS", QK_K, 2 + 2 + 4 + 128),
    (24, "I8", 1, 1),
    (25, "I16", 1, 2),
    (26, "I32", 1, 4),
    (27, "I64", 1, 8),
    (28, "F64", 1, 8),
    (29, "IQ1_M", QK_K, 32 + 16 + 8),
    (30, "BF16", 1, 2),
    (34, "TQ1_0", QK_K, 48 + 4 + 2),
    (35, "TQ2_0", QK_K, 64 + 2),
    (39, "MXFP4", 32, 1 + 16),
    (40, "NVFP4", 64, 4 + 32),
    (41, "Q1_0", 128, 2 + 16),
]

GGML_TYPES: dict[int, GGMLType] = {t[0]: GGMLType(*t) for t in _TABLE}

# Ids that old files may carry but ggml no longer reads: name them in the error.
_REMOVED = {
    4: "Q4_2",
    5: "Q4_3",
    31: "Q4_0_4_4",
    32: "Q4_0_4_8",
    33: "Q4_0_8_8",
    36: "IQ4_NL_4_4",
    37: "IQ4_NL_4_8",
    38: "IQ4_NL_8_8",
}


def ggml_type(type_id: int) -> GGMLType:
    """The GGMLType of a GGUF tensor type id; UnsupportedError naming the id otherwise."""
    t = GGML_TYPES.get(type_id)
    if t is not None:
        return t
    if type_id in _REMOVED:
        raise UnsupportedError(
            f"GGML tensor type {type_id} ({_REMOVED[type_id]}) was removed from ggml; "
            "requantize the file with a current llama.cpp"
        )
    raise UnsupportedError(f"unknown GGML tensor type id {type_id}")
