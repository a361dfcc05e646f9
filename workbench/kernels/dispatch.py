"""Weight kernels picked by a format code inside compiled code.

A compiled decode step (`workbench.nn.compiled`) runs the products of a whole step
without returning to Python, so it cannot look kernels up in the registry per call: it
passes each weight's format as an integer `CODES[fmt]`, and `matvec_into` /
`get_rows_into` branch on it to the kernel that is the registry's built-in default for
that format (the row-group kernels for quantized weights, q4_0's eight-row kernel on AVX2; which kernel that is was
decided in `workbench.kernels.linear`). `builtin_defaults(fmts)` says whether the registry
still has those defaults, so that a step never bypasses a variant a user made default.
Nothing here checks shapes: callers validate every weight when they pack it.
"""

from workbench.kernels import get_rows as _rows
from workbench.kernels import matvec_float as _float
from workbench.kernels import matvec_kquants as _kquants
from workbench.kernels import matvec_legacy as _legacy
from workbench.kernels import matvec_q4_0 as _q4_0
from workbench.kernels.jit import njit_serial
from workbench.kernels.registry import default

F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q4_K, Q6_K = range(9)
CODES = {"f32": F32, "f16": F16, "bf16": BF16, "q8_0": Q8_0, "q4_0": Q4_0, "q4_1": Q4_1, "q5_0": Q5_0,
         "q4_k": Q4_K, "q6_k": Q6_K}
_MATVEC = {"f32": _float.matvec_f32_into, "f16": _float.matvec_f16_into, "bf16": _float.matvec_bf16_into,
           "q8_0": _legacy.matvec_q8_0_rows_into,
           "q4_0": _q4_0.matvec_q4_0_oct_into if _q4_0.DEFAULT else _legacy.matvec_q4_0_rows_into,
           "q4_1": _legacy.matvec_q4_1_rows_into, "q5_0": _legacy.matvec_q5_0_rows_into,
           "q4_k": _kquants.matvec_q4_k_rows_into, "q6_k": _kquants.matvec_q6_k_rows_into}


def builtin_defaults(fmts) -> bool:
    """Whether the registry's default matvec and get_rows of every format in `fmts` are the
    kernels that `matvec_into` and `get_rows_into` run."""
    return all(
        getattr(default("matvec", f), "into", None) is _MATVEC[f]
        and default("get_rows", f) is getattr(_rows, f"get_rows_{f}")
        for f in fmts
    )


@njit_serial
def matvec_into(code, out, w, x, i8, i32, f32):
    """out (T, rows) = x (T, cols) @ W.T for W in format `code`, scratch from the caller."""
    if code == Q8_0:
        _legacy.matvec_q8_0_rows_into(out, w, x, i8, i32, f32)
    elif code == Q4_0:
        if _q4_0.DEFAULT:  # a constant when compiled: one branch is
            _q4_0.matvec_q4_0_oct_into(out, w, x, i8, i32, f32)
        else:
            _legacy.matvec_q4_0_rows_into(out, w, x, i8, i32, f32)
    elif code == Q4_1:
        _legacy.matvec_q4_1_rows_into(out, w, x, i8, i32, f32)
    elif code == Q5_0:
        _legacy.matvec_q5_0_rows_into(out, w, x, i8, i32, f32)
    elif code == Q4_K:
        _kquants.matvec_q4_k_rows_into(out, w, x, i8, i32, f32)
    elif code == Q6_K:
        _kquants.matvec_q6_k_rows_into(out, w, x, i8, i32, f32)
    elif code == F16:
        _float.matvec_f16_into(out, w, x, i8, i32, f32)
    elif code == BF16:
        _float.matvec_bf16_into(out, w, x, i8, i32, f32)
    else:
        _float.matvec_f32_into(out, w, x, i8, i32, f32)


@njit_serial
def get_rows_into(code, out, w, ids):
    """out (T, cols) = rows ids of W in format `code`, dequantized (embedding lookup)."""
    if code == Q8_0:
        _rows.get_rows_q8_0(out, w, ids)
    elif code == Q4_0:
        _rows.get_rows_q4_0(out, w, ids)
    elif code == Q4_1:
        _rows.get_rows_q4_1(out, w, ids)
    elif code == Q5_0:
        _rows.get_rows_q5_0(out, w, ids)
    elif code == Q4_K:
        _rows.get_rows_q4_k(out, w, ids)
    elif code == Q6_K:
        _rows.get_rows_q6_k(out, w, ids)
    elif code == F16:
        _rows.get_rows_f16(out, w, ids)
    elif code == BF16:
        _rows.get_rows_bf16(out, w, ids)
    else:
        _rows.get_rows_f32(out, w, ids)
