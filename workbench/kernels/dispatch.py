"""Weight kernels picked by an integer code inside compiled code.

A compiled step (`workbench.nn.step`) runs every product of a forward without returning
to Python, so it cannot look kernels up in the registry per call, and it must not take
kernels as arguments either: numba's on-disk cache keys a function taking another
compiled function by that function's identity, which changes in every process (a new
cache entry per process, then `ReferenceError: underlying object has vanished`). So a
kernel is data: `matvec_code(fmt)` turns the registry's current default variant of a
format into an integer, chosen once at load (and again whenever the registry changes),
and `matvec_into(code, ...)` branches on it. Every built-in variant has a code, so a
notebook can time two of them in one process. A kernel registered from a notebook (an
njit function `fn(out, w, x)`) gets the code CUSTOM of its format: `matvec_with` then
builds an uncached `matvec_into` that calls it for that code, and the model's step is
recompiled around it (`nn.step.Products.specialize`), so it too runs inside the step.

    code = 8 * format + variant
    formats  F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q4_K Q6_K
    variants ROWS (the row-group kernels, or the float kernels), ROWS_SERIAL,
             V1 / V1_SERIAL (one row per pass), OCT / OCT_SERIAL (q4_0's eight rows),
             CUSTOM (a kernel registered from Python)

Nothing here checks shapes: callers validate every weight when they pack it.
"""

from numba.core.dispatcher import Dispatcher

from workbench.errors import UnsupportedError
from workbench.kernels import get_rows as _rows
from workbench.kernels import matvec_float as _float
from workbench.kernels import matvec_kquants as _kq
from workbench.kernels import matvec_legacy as _lg
from workbench.kernels import matvec_q4_0 as _q4
from workbench.kernels.jit import njit_serial, njit_uncached
from workbench.kernels.registry import default, default_name, version

F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q4_K, Q6_K = range(9)
FORMAT_CODES = {"f32": F32, "f16": F16, "bf16": BF16, "q8_0": Q8_0, "q4_0": Q4_0, "q4_1": Q4_1, "q5_0": Q5_0,
                "q4_k": Q4_K, "q6_k": Q6_K}
ROWS, ROWS_SERIAL, V1, V1_SERIAL, OCT, OCT_SERIAL, CUSTOM = range(7)


def _builtin_codes() -> dict:
    """{the kernel a registry entry runs: its code}, for every built-in variant."""
    codes = {}
    for fmt, mod in (("f32", _float), ("f16", _float), ("bf16", _float)):
        codes[getattr(mod, f"matvec_{fmt}_into")] = 8 * FORMAT_CODES[fmt] + ROWS
        codes[getattr(mod, f"matvec_{fmt}_serial_into")] = 8 * FORMAT_CODES[fmt] + ROWS_SERIAL
    for fmt, mod in (("q8_0", _lg), ("q4_0", _lg), ("q4_1", _lg), ("q5_0", _lg), ("q4_k", _kq), ("q6_k", _kq)):
        base = 8 * FORMAT_CODES[fmt]
        codes[getattr(mod, f"matvec_{fmt}_rows_into")] = base + ROWS
        codes[getattr(mod, f"matvec_{fmt}_rows_serial_into")] = base + ROWS_SERIAL
        codes[getattr(mod, f"matvec_{fmt}_v1")] = base + V1
        codes[getattr(mod, f"matvec_{fmt}_v1_serial")] = base + V1_SERIAL
    codes[_q4.matvec_q4_0_oct_into] = 8 * Q4_0 + OCT
    codes[_q4.matvec_q4_0_oct_serial_into] = 8 * Q4_0 + OCT_SERIAL
    return codes


_CODES = _builtin_codes()


def matvec_code(fmt: str) -> int:
    """The code of the registry's default matvec kernel for `fmt` (CUSTOM: not built in)."""
    fn = default("matvec", fmt)
    code = _CODES.get(getattr(fn, "into", fn))
    if code is not None:
        return code
    if not isinstance(fn, Dispatcher):
        raise UnsupportedError(
            f"the default matvec kernel for {fmt} ({getattr(fn, '__name__', fn)!r}) is not compiled with numba: "
            "a model's compiled step can only call an njit function fn(out, w, x)")
    return 8 * FORMAT_CODES[fmt] + CUSTOM


def matvec_with(kernels: dict):
    """`matvec_into` that runs kernels[code](out, w, x) for the CUSTOM codes in `kernels`,
    compiled without caching (the kernels live in a notebook, not in a file)."""
    fn = matvec_into
    for code, kernel in sorted(kernels.items()):
        fn = _with_kernel(fn, code, kernel)
    return fn


def _with_kernel(inner, custom, kernel):
    def matvec(code, out, w, x, i8, i32, f32):
        if code == custom:
            kernel(out, w, x)
        else:
            inner(code, out, w, x, i8, i32, f32)

    return njit_uncached(matvec)


_VARIANT_NAMES = {ROWS: "row_groups", ROWS_SERIAL: "row_groups, serial", V1: "reference_order_v1",
                  V1_SERIAL: "reference_order_v1, serial", OCT: "row_octets", OCT_SERIAL: "row_octets, serial"}


def describe(code: int) -> str:
    """What kernel `code` is, in the registry's variant names (float formats: "float")."""
    fmt, variant = divmod(code, 8)
    if variant == CUSTOM:
        return "python-registered: " + default_name("matvec", [f for f, c in FORMAT_CODES.items() if c == fmt][0])
    if fmt in (F32, F16, BF16):
        return "float" if variant == ROWS else "float, serial"
    return _VARIANT_NAMES[variant]


def registry_version() -> int:
    """Changes whenever a kernel is registered or a default is set: codes are stale then."""
    return version()


@njit_serial
def matvec_into(code, out, w, x, i8, i32, f32):
    """out (T, rows) = x (T, cols) @ W.T with the kernel `code`, scratch from the caller."""
    fmt, variant = code // 8, code % 8
    if fmt == F32:
        if variant == ROWS:
            _float.matvec_f32_into(out, w, x, i8, i32, f32)
        else:
            _float.matvec_f32_serial_into(out, w, x, i8, i32, f32)
    elif fmt == F16:
        if variant == ROWS:
            _float.matvec_f16_into(out, w, x, i8, i32, f32)
        else:
            _float.matvec_f16_serial_into(out, w, x, i8, i32, f32)
    elif fmt == BF16:
        if variant == ROWS:
            _float.matvec_bf16_into(out, w, x, i8, i32, f32)
        else:
            _float.matvec_bf16_serial_into(out, w, x, i8, i32, f32)
    elif fmt == Q8_0:
        if variant == ROWS:
            _lg.matvec_q8_0_rows_into(out, w, x, i8, i32, f32)
        elif variant == ROWS_SERIAL:
            _lg.matvec_q8_0_rows_serial_into(out, w, x, i8, i32, f32)
        elif variant == V1:
            _lg.matvec_q8_0_v1(out, w, x)
        else:
            _lg.matvec_q8_0_v1_serial(out, w, x)
    elif fmt == Q4_0:
        if variant == ROWS:
            _lg.matvec_q4_0_rows_into(out, w, x, i8, i32, f32)
        elif variant == ROWS_SERIAL:
            _lg.matvec_q4_0_rows_serial_into(out, w, x, i8, i32, f32)
        elif variant == OCT:
            _q4.matvec_q4_0_oct_into(out, w, x, i8, i32, f32)
        elif variant == OCT_SERIAL:
            _q4.matvec_q4_0_oct_serial_into(out, w, x, i8, i32, f32)
        elif variant == V1:
            _lg.matvec_q4_0_v1(out, w, x)
        else:
            _lg.matvec_q4_0_v1_serial(out, w, x)
    elif fmt == Q4_1:
        if variant == ROWS:
            _lg.matvec_q4_1_rows_into(out, w, x, i8, i32, f32)
        elif variant == ROWS_SERIAL:
            _lg.matvec_q4_1_rows_serial_into(out, w, x, i8, i32, f32)
        elif variant == V1:
            _lg.matvec_q4_1_v1(out, w, x)
        else:
            _lg.matvec_q4_1_v1_serial(out, w, x)
    elif fmt == Q5_0:
        if variant == ROWS:
            _lg.matvec_q5_0_rows_into(out, w, x, i8, i32, f32)
        elif variant == ROWS_SERIAL:
            _lg.matvec_q5_0_rows_serial_into(out, w, x, i8, i32, f32)
        elif variant == V1:
            _lg.matvec_q5_0_v1(out, w, x)
        else:
            _lg.matvec_q5_0_v1_serial(out, w, x)
    elif fmt == Q4_K:
        if variant == ROWS:
            _kq.matvec_q4_k_rows_into(out, w, x, i8, i32, f32)
        elif variant == ROWS_SERIAL:
            _kq.matvec_q4_k_rows_serial_into(out, w, x, i8, i32, f32)
        elif variant == V1:
            _kq.matvec_q4_k_v1(out, w, x)
        else:
            _kq.matvec_q4_k_v1_serial(out, w, x)
    else:  # Q6_K
        if variant == ROWS:
            _kq.matvec_q6_k_rows_into(out, w, x, i8, i32, f32)
        elif variant == ROWS_SERIAL:
            _kq.matvec_q6_k_rows_serial_into(out, w, x, i8, i32, f32)
        elif variant == V1:
            _kq.matvec_q6_k_v1(out, w, x)
        else:
            _kq.matvec_q6_k_v1_serial(out, w, x)


@njit_serial
def get_rows_into(fmt, out, w, ids):
    """out (T, cols) = rows ids of W in format code `fmt`, dequantized (embedding lookup)."""
    if fmt == Q8_0:
        _rows.get_rows_q8_0(out, w, ids)
    elif fmt == Q4_0:
        _rows.get_rows_q4_0(out, w, ids)
    elif fmt == Q4_1:
        _rows.get_rows_q4_1(out, w, ids)
    elif fmt == Q5_0:
        _rows.get_rows_q5_0(out, w, ids)
    elif fmt == Q4_K:
        _rows.get_rows_q4_k(out, w, ids)
    elif fmt == Q6_K:
        _rows.get_rows_q6_k(out, w, ids)
    elif fmt == F16:
        _rows.get_rows_f16(out, w, ids)
    elif fmt == BF16:
        _rows.get_rows_bf16(out, w, ids)
    else:
        _rows.get_rows_f32(out, w, ids)
