"""The table of weight formats: one row per GGML block type, as ggml's `type_traits`.

Each row (`formats.base.WeightFormat`) comes from the format's own module and names its
layout, reference codec, get-rows and matvec kernels and their variants. Everything
else reads formats from here: the GGUF loader (which types it can run), the reference
codecs (`workbench.quant`), the finite check, the kernel dispatch, the load report.

Inside compiled code a kernel is an integer, `code = 64 * ggml_type + variant` (see
`kernels.dispatch`), and `matvec_into` / `get_rows_into` branch on the type, one line per
format: numba's on-disk cache cannot key a function that takes another function.

To add a format: write its module (see `formats/q4_1.py`), add its row to `_ROWS` and a
line to each of the two chains below.
"""

from workbench.errors import UnsupportedError
from workbench.formats.ggml_types import GGML_TYPES, ggml_type
from workbench.kernels.formats import activations, floats, iq4_nl, q4_0, q4_1, q4_k, q5_0, q5_1, q5_k, q6_k, q8_0
from workbench.kernels.formats.base import WeightFormat
from workbench.kernels.jit import njit_serial

_ROWS = (
    floats.F32, floats.F16, floats.BF16,
    q8_0.FORMAT, q4_0.FORMAT, q4_1.FORMAT, q5_0.FORMAT, q5_1.FORMAT,
    q4_k.FORMAT, q5_k.FORMAT, q6_k.FORMAT, iq4_nl.FORMAT,
    activations.Q8_1, activations.Q8_K,
)

FORMATS: dict[str, WeightFormat] = {f.name: f for f in _ROWS}
BY_GGML_TYPE: dict[int, WeightFormat] = {f.ggml_type: f for f in _ROWS}
WEIGHT_FORMATS: tuple[str, ...] = tuple(f.name for f in _ROWS if f.weight)

for _f in _ROWS:  # each row's layout must agree with ggml's type table, and its kernels with the contract
    _t = GGML_TYPES[_f.ggml_type]
    assert (_f.name, _f.block_size, _f.type_size) == (_t.name.lower(), _t.block_size, _t.type_size), (_f, _t)
    assert _f.block_size == 1 or FORMATS[_f.vec_dot].block_size == _f.block_size, _f.name
    assert not _f.weight or (_f.get_rows and _f.matvec_into and sum(v.reference for v in _f.variants) == 1), _f.name
del _f, _t


def format_named(name: str) -> WeightFormat:
    """The row called `name` ("q8_0", "q4_k", ...; case-insensitive)."""
    f = FORMATS.get(name.lower()) if isinstance(name, str) else None
    if f is None:
        raise UnsupportedError(f"unknown block format {name!r}; expected one of {', '.join(FORMATS)}")
    return f


def format_of_ggml_type(type_id: int) -> WeightFormat:
    """The row of a GGUF tensor type id; UnsupportedError naming the type otherwise."""
    f = BY_GGML_TYPE.get(type_id)
    if f is None:
        t = ggml_type(type_id)  # raises for ids ggml does not know at all
        raise UnsupportedError(f"GGML tensor type {t.name} (id {type_id}) is not supported by workbench; "
                               f"supported: {', '.join(n.upper() for n in WEIGHT_FORMATS)}")
    return f


@njit_serial
def matvec_into(code, out, w, x, i8, i32, f32):
    """out (T, rows) = x (T, cols) @ W.T with kernel `code`, scratch from the caller."""
    t, variant = code // 64, code % 64
    if t == q4_0.GGML_TYPE:
        q4_0.matvec_into(variant, out, w, x, i8, i32, f32)
    elif t == q4_1.GGML_TYPE:
        q4_1.matvec_into(variant, out, w, x, i8, i32, f32)
    elif t == q8_0.GGML_TYPE:
        q8_0.matvec_into(variant, out, w, x, i8, i32, f32)
    elif t == q5_0.GGML_TYPE:
        q5_0.matvec_into(variant, out, w, x, i8, i32, f32)
    elif t == q5_1.GGML_TYPE:
        q5_1.matvec_into(variant, out, w, x, i8, i32, f32)
    elif t == q4_k.GGML_TYPE:
        q4_k.matvec_into(variant, out, w, x, i8, i32, f32)
    elif t == q5_k.GGML_TYPE:
        q5_k.matvec_into(variant, out, w, x, i8, i32, f32)
    elif t == q6_k.GGML_TYPE:
        q6_k.matvec_into(variant, out, w, x, i8, i32, f32)
    elif t == iq4_nl.GGML_TYPE:
        iq4_nl.matvec_into(variant, out, w, x, i8, i32, f32)
    elif t == floats.GGML_F16:
        floats.matvec_f16_into(variant, out, w, x, i8, i32, f32)
    elif t == floats.GGML_BF16:
        floats.matvec_bf16_into(variant, out, w, x, i8, i32, f32)
    else:
        floats.matvec_f32_into(variant, out, w, x, i8, i32, f32)


@njit_serial
def get_rows_into(t, out, w, ids):
    """out (T, cols) = rows ids of W of GGML type `t`, dequantized (embedding lookup)."""
    if t == q4_0.GGML_TYPE:
        q4_0.get_rows(out, w, ids)
    elif t == q4_1.GGML_TYPE:
        q4_1.get_rows(out, w, ids)
    elif t == q8_0.GGML_TYPE:
        q8_0.get_rows(out, w, ids)
    elif t == q5_0.GGML_TYPE:
        q5_0.get_rows(out, w, ids)
    elif t == q5_1.GGML_TYPE:
        q5_1.get_rows(out, w, ids)
    elif t == q4_k.GGML_TYPE:
        q4_k.get_rows(out, w, ids)
    elif t == q5_k.GGML_TYPE:
        q5_k.get_rows(out, w, ids)
    elif t == q6_k.GGML_TYPE:
        q6_k.get_rows(out, w, ids)
    elif t == iq4_nl.GGML_TYPE:
        iq4_nl.get_rows(out, w, ids)
    elif t == floats.GGML_F16:
        floats.get_rows_f16(out, w, ids)
    elif t == floats.GGML_BF16:
        floats.get_rows_bf16(out, w, ids)
    else:
        floats.get_rows_f32(out, w, ids)
