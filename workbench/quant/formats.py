"""Block formats: the name, GGUF type and byte layout of every weight format we run.

A `BlockFormat` says how many elements one block holds and how many bytes it takes
(checked against ggml's type table at import), and which format llama.cpp's CPU backend
quantizes the activations to before a dot product with it (`vec_dot`, from ggml-cpu's
`type_traits_cpu[...].vec_dot_type`). It does not encode or decode anything: the numpy
reference codecs are in `floats.py`, `legacy.py` and `kquants.py`, the numba kernels in
`workbench/kernels/`.

Block layouts (little endian, as in ggml-common.h):
  q8_0  34 B = f16 d, int8 qs[32]                      x = d * q
  q8_1  36 B = f16 d, f16 s (= d * sum q), int8 qs[32]  activations only
  q4_0  18 B = f16 d, u8 qs[16] (lo nibbles: x0..15, hi: x16..31)   x = d * (q - 8)
  q4_1  20 B = f16 d, f16 m, u8 qs[16]                 x = d * q + m
  q5_0  22 B = f16 d, u32 qh (5th bits), u8 qs[16]     x = d * (q - 16)
  q4_K 144 B = f16 d, f16 dmin, u8 scales[12] (8 x 6-bit scale + 8 x 6-bit min),
               u8 qs[128]; 8 sub-blocks of 32          x = d*sc * q - dmin*m
  q6_K 210 B = u8 ql[128] (low 4 bits), u8 qh[64] (high 2 bits), int8 scales[16],
               f16 d; 16 sub-blocks of 16              x = d*sc * (q - 32)
  q8_K 292 B = f32 d, int8 qs[256], int16 bsums[16]     activations only
"""

from dataclasses import dataclass

from workbench.errors import UnsupportedError
from workbench.formats.ggml_types import GGML_TYPES, ggml_type


@dataclass(frozen=True)
class BlockFormat:
    """A block format: `block_size` elements in `type_size` bytes, GGUF type `ggml_type`."""

    name: str
    ggml_type: int
    block_size: int
    type_size: int
    vec_dot: str  # the format the activations are quantized to for a dot with this one
    weight: bool = True  # False for the activation-only formats q8_1 and q8_K

    def row_bytes(self, n: int) -> int:
        """Bytes in a row of `n` elements; `n` must be a multiple of block_size."""
        if n % self.block_size:
            raise UnsupportedError(
                f"{self.name} rows need a multiple of {self.block_size} elements, got {n}"
            )
        return n // self.block_size * self.type_size


_FORMATS = [
    BlockFormat("f32", 0, 1, 4, vec_dot="f32"),
    BlockFormat("f16", 1, 1, 2, vec_dot="f16"),
    BlockFormat("bf16", 30, 1, 2, vec_dot="bf16"),
    BlockFormat("q8_0", 8, 32, 34, vec_dot="q8_0"),
    BlockFormat("q4_0", 2, 32, 18, vec_dot="q8_0"),
    BlockFormat("q4_1", 3, 32, 20, vec_dot="q8_1"),
    BlockFormat("q5_0", 6, 32, 22, vec_dot="q8_0"),
    BlockFormat("q4_k", 12, 256, 144, vec_dot="q8_k"),
    BlockFormat("q6_k", 14, 256, 210, vec_dot="q8_k"),
    BlockFormat("q8_1", 9, 32, 36, vec_dot="q8_1", weight=False),
    BlockFormat("q8_k", 15, 256, 292, vec_dot="q8_k", weight=False),
]

FORMATS: dict[str, BlockFormat] = {f.name: f for f in _FORMATS}
WEIGHT_FORMATS: tuple[str, ...] = tuple(f.name for f in _FORMATS if f.weight)

# Each layout declared above must agree with ggml's type table.
for _f in _FORMATS:
    _t = GGML_TYPES[_f.ggml_type]
    assert (_f.name, _f.block_size, _f.type_size) == (
        _t.name.lower(),
        _t.block_size,
        _t.type_size,
    ), (_f, _t)
    assert FORMATS[_f.vec_dot].block_size == _f.block_size or _f.block_size == 1, _f
del _f, _t

_BY_GGML_TYPE = {f.ggml_type: f for f in _FORMATS}


def format_named(name: str) -> BlockFormat:
    """The BlockFormat called `name` ("q8_0", "q4_k", ...; case-insensitive)."""
    f = FORMATS.get(name.lower()) if isinstance(name, str) else None
    if f is None:
        raise UnsupportedError(
            f"unknown block format {name!r}; expected one of {', '.join(FORMATS)}"
        )
    return f


def format_of_ggml_type(type_id: int) -> BlockFormat:
    """The BlockFormat of a GGUF tensor type id; UnsupportedError naming the type otherwise."""
    f = _BY_GGML_TYPE.get(type_id)
    if f is None:
        t = ggml_type(type_id)  # raises for ids ggml does not know at all
        raise UnsupportedError(
            f"GGML tensor type {t.name} (id {type_id}) is not supported by workbench; "
            f"supported: {', '.join(n.upper() for n in WEIGHT_FORMATS)}"
        )
    return f
